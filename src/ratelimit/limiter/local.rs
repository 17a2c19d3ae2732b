//! The in-process part of a check: the per-tenant burst cap, and the whole decision on the
//! memory backend (with its overflow counters).

use std::time::Duration;

use smallvec::SmallVec;

use super::Local;
use crate::ratelimit::algo::Rules;
use crate::ratelimit::decision::{no_rules, rule_decision};
use crate::ratelimit::store::memory::{MemRule, MemoryLimiter};
use crate::ratelimit::{Check, Decision, RateLimiter, RuleDecision, Source};

impl RateLimiter {
    /// Everything decided in process (no rules, burst cap, memory backend); otherwise hands
    /// the applicable rules to the Redis path.
    pub(super) fn decide_local<'p>(&'p self, c: &Check<'_>, commit: bool) -> Local<'p> {
        let cost = self.cost(c);
        if let Some(mem) = &self.inner.memory {
            return Local::Done(self.decide_memory(mem, c, cost, commit));
        }
        let applied = self.applied(c);
        if applied.is_empty() {
            return Local::Done(no_rules(cost));
        }
        if let Some(d) = self.burst(c, cost, commit) {
            return Local::Done(d);
        }
        // A hot counter leased to this instance: admitted in process while leases last.
        if commit && self.inner.leases.is_some() && applied.iter().all(|a| a.rule.lease.is_some()) {
            if let Some(d) = self.decide_leased(c, cost) {
                return Local::Done(d);
            }
        }
        Local::Remote(applied)
    }

    /// The per-tenant in-process cap, if configured and exceeded.
    pub(super) fn burst(&self, c: &Check<'_>, cost: u32, commit: bool) -> Option<Decision> {
        let burst = self.inner.burst.as_ref().filter(|_| commit)?;
        let wait = burst.check(c.tenant).err()?;
        let q = self.inner.options.burst.expect("burst configured");
        Some(Decision {
            allowed: false,
            source: Source::Burst,
            cost,
            rules: vec![RuleDecision {
                name: "burst",
                limit: q.limit.get(),
                window: q.window,
                remaining: 0,
                reset: wait,
                retry_after: Some(wait.max(Duration::from_millis(1))),
                allowed: false,
                shadow: false,
                blocked: false,
                period: None,
            }],
            at_ms: None,
            overflowed: 0,
        })
    }

    /// The memory backend's whole decision. The hot path of in-process limiting: rules
    /// are referred to by position (nothing per rule is copied but two hashes), and each
    /// string of the check is hashed once.
    pub(super) fn decide_memory(
        &self,
        mem: &MemoryLimiter,
        c: &Check<'_>,
        cost: u32,
        commit: bool,
    ) -> Decision {
        let inner = &*self.inner;
        let rules = self.mem_rules(c);
        if rules.is_empty() {
            return no_rules(cost);
        }
        if let Some(d) = self.burst(c, cost, commit) {
            return d;
        }
        let mut outs = Rules::new();
        let (allowed, at_ms) = mem.decide(&rules, cost, commit, &mut outs);
        let mut decisions = Vec::with_capacity(rules.len());
        let mut overflowed = 0u64;
        for (i, (r, o)) in rules.iter().zip(&outs).enumerate() {
            if o.overflow && i < 64 {
                overflowed |= 1 << i;
            }
            if o.overflow && commit {
                self.overflowed(mem, r.idx);
            }
            decisions.push(rule_decision(inner.rule_names[r.idx], &r.spec, o));
        }
        Decision {
            allowed,
            source: Source::Memory,
            cost,
            rules: decisions,
            at_ms: Some(at_ms),
            overflowed,
        }
    }

    /// The in-process counters of the rules that apply to a check.
    pub(super) fn mem_rules(&self, c: &Check<'_>) -> Rules<MemRule> {
        let inner = &*self.inner;
        let specs = self.specs(c);
        let parts = self.key_parts(c, inner.any_per_endpoint);
        let mut rules: Rules<MemRule> = SmallVec::new();
        for (idx, (rule, spec)) in inner.policy.rules().iter().zip(specs.iter()).enumerate() {
            if rule.applies(c.method, c.route) {
                let (key, owner) = self.mem_key(rule, inner.rule_hashes[idx], &parts);
                let key = self.counter_hash(rule, key, c.tenant);
                rules.push(MemRule {
                    key,
                    owner,
                    spec: *spec,
                    idx,
                });
            }
        }
        rules
    }

    /// Counts a check decided by rule `idx`'s overflow counter, and warns (at most every
    /// 10 s): the operator should know new identities are being limited together.
    #[cold]
    pub(super) fn overflowed(&self, mem: &MemoryLimiter, idx: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        const EVERY_MS: u64 = 10_000;
        let inner = &*self.inner;
        inner.overflows[idx].inc();
        let now = mem.now_ms();
        let last = inner.overflow_warned_ms.load(Relaxed);
        if (last == 0 || now.saturating_sub(last) >= EVERY_MS)
            && inner
                .overflow_warned_ms
                .compare_exchange(last, now.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(
                rule = inner.rule_names[idx],
                max_counters = inner.options.memory_max_keys,
                "rate-limit counter table full of live counters: new identities share one \
                 overflow counter per rule and are limited together (raise \
                 TG_MEMORY_MAX_COUNTERS, or use Redis); see \
                 tenant_guard_ratelimit_memory_overflow_total"
            );
        }
    }
}
