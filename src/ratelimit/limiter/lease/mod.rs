//! Leases of hot counters ([`Lease`](crate::ratelimit::Lease), `RATE_LIMIT_LEASE`): a check
//! admitted in process from them, the reservation a check that reaches Redis asks for, and
//! the unused units given back when a lease ends. The table itself is in `table.rs`.

mod table;

use std::time::Instant;

use table::{Granted, Unused};
pub(super) use table::{LeaseRule, Leases};

use crate::ratelimit::algo::Rules;
use crate::ratelimit::store::Request;
use crate::ratelimit::store::memory::MemRule;
use crate::ratelimit::{Check, Decision, RateLimiter, RuleDecision, Source};

impl RateLimiter {
    /// The leases of a check's counters (`rules`: as the in-process store names them), if
    /// every rule it meets is leased.
    pub(super) fn lease_rules<'p>(&'p self, rules: &[MemRule]) -> Option<Rules<LeaseRule<'p>>> {
        let policy = self.inner.policy.rules();
        rules
            .iter()
            .map(|m| {
                Some(LeaseRule {
                    hash: m.key,
                    lease: policy[m.idx].lease.as_ref()?,
                })
            })
            .collect()
    }

    /// A check admitted from the leases of all its counters, when each holds `cost`
    /// units (no Redis call); `None` otherwise.
    pub(super) fn decide_leased(&self, c: &Check<'_>, cost: u32) -> Option<Decision> {
        let leases = self.inner.leases.as_ref()?;
        let rules = self.mem_rules(c);
        let lrules = self.lease_rules(&rules)?;
        let taken = leases.take(&lrules, cost, Instant::now())?;
        let decisions = rules
            .iter()
            .zip(&taken)
            .map(|(m, t)| RuleDecision {
                name: self.inner.rule_names[m.idx],
                limit: m.spec.limit,
                window: std::time::Duration::from_millis(m.spec.window_ms),
                remaining: t.remaining,
                reset: t.reset,
                retry_after: None,
                allowed: true,
                shadow: false,
                blocked: false,
                period: None,
            })
            .collect();
        Some(Decision {
            allowed: true,
            source: Source::Lease,
            cost,
            rules: decisions,
            // The earliest reservation: a settlement's refund taken from its bucket is
            // never later than what it corrects.
            at_ms: taken.iter().map(|t| t.at_ms).min(),
            overflowed: 0,
        })
    }

    /// Starts one timer per lease granted: at its end, its unused units go back.
    pub(super) fn lease_timers(&self, granted: Rules<Granted>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to wait on: the units go back when the lease is replaced, or
            // with `end_leases`.
            return;
        };
        for g in granted {
            let this = self.clone();
            rt.spawn(async move {
                tokio::time::sleep_until(g.until.into()).await;
                let unused = this
                    .inner
                    .leases
                    .as_ref()
                    .and_then(|l| l.end(g.hash, g.generation));
                if let Some(u) = unused {
                    this.give_back_unused(vec![u]).await;
                }
            });
        }
    }

    /// Gives unused leased units back in the background.
    pub(super) fn give_back_soon(&self, unused: Vec<Unused>) {
        if unused.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let this = self.clone();
            rt.spawn(async move { this.give_back_unused(unused).await });
        }
    }

    /// Takes unused leased units back from the buckets that hold their reservations, one
    /// call each (what fails stays charged until it leaves the window: never an
    /// over-admission). Returns the units given back.
    async fn give_back_unused(&self, unused: Vec<Unused>) -> u64 {
        let Some(store) = &self.inner.shared else {
            return 0;
        };
        let mut back = 0;
        for u in unused {
            let request = Request {
                specs: std::iter::once(u.spec.without_block()).collect(),
                keys: vec![u.key],
                cost: 1,
                mode: "refund",
                nonce: u.at_ms,
                charges: std::iter::once(u.units).collect(),
            };
            if store.decide_one(&request).await.is_ok() {
                back += u64::from(u.units);
                self.inner
                    .metrics
                    .ratelimit_lease_returned
                    .inc_by(u64::from(u.units));
                // This instance may have learnt the counter was full: it is not any more.
                if let Some(deny) = &self.inner.deny {
                    deny.forget(self.deny_hash(&request.keys[0]));
                }
            }
        }
        back
    }

    /// Ends every lease this instance holds and gives their unused units back to Redis
    /// (before a shutdown: otherwise they stay charged until they leave their window).
    /// Returns the units given back.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// use tenant_guard::ratelimit::RateLimiter;
    /// let config = Config::from_vars([("RATE_LIMIT_TENANT", "1000/1m"),
    ///                                 ("RATE_LIMIT_LEASE", "per-tenant=100/100ms")]).unwrap();
    /// let metrics = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// // On the memory backend checks are in process already: nothing is ever leased.
    /// assert_eq!(limiter.end_leases().await, 0);
    /// # }
    /// ```
    pub async fn end_leases(&self) -> u64 {
        match &self.inner.leases {
            Some(l) => self.give_back_unused(l.end_all()).await,
            None => 0,
        }
    }
}
