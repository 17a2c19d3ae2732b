//! Settling a check after the fact: the units a request was charged at admission (an
//! estimate: a token budget's reservation) corrected once its real usage is known, in one
//! store call.

use super::counted_method;
use crate::backend::BackendError;
use crate::keys::RedisKey;
use crate::ratelimit::algo::Rules;
use crate::ratelimit::store::Request;
use crate::ratelimit::{Check, Decision, RateLimiter, Source};

impl RateLimiter {
    /// Corrects what `decision` (this limiter's answer to `c`, admitted) charged by
    /// `delta` units on every rule it charged: `delta > 0` charges them now past the limit
    /// if need be (the usage happened; the overshoot is the caller's to report), at most a
    /// limit's worth and never leaving a compact window above twice its limit; `delta < 0`
    /// takes them back from the bucket the admission charged (compact counters; nothing
    /// once that bucket has left the window). A decision not made by the counters (an
    /// outage mode, no rules) has nothing to settle. One call to the store (a check
    /// admitted from leases too: its refund comes from the bucket of its earliest
    /// reservation, never later than the units it corrects).
    pub(crate) async fn settle(
        &self,
        c: &Check<'_>,
        decision: &Decision,
        delta: i64,
    ) -> Result<(), BackendError> {
        let Some(at_ms) = decision.at_ms.filter(|_| decision.allowed && delta != 0) else {
            return Ok(());
        };
        let units = u32::try_from(delta.unsigned_abs()).unwrap_or(u32::MAX);
        let refund_at = (delta < 0).then_some(at_ms);
        // Only the rules the admission charged (an enforced rule allowed, or a shadow rule
        // that itself allowed), by name: the rules that apply to `c` are the same ones.
        let charged = |name: &str| decision.rules.iter().any(|r| r.name == name && r.allowed);
        if let Some(mem) = &self.inner.memory {
            let rules = self.mem_rules(c);
            let per_rule: Rules<u32> = rules
                .iter()
                .map(|r| {
                    if charged(self.inner.rule_names[r.idx]) {
                        units
                    } else {
                        0
                    }
                })
                .collect();
            // Where the admission charged a shared overflow counter, so does the settlement.
            let overflowed: Rules<bool> = (0..rules.len())
                .map(|i| i < 64 && decision.overflowed & (1 << i) != 0)
                .collect();
            mem.adjust(&rules, &per_rule, &overflowed, refund_at);
            return Ok(());
        }
        let applied = self.applied(c);
        let endpoint = format!("{} {}", counted_method(c.method), c.route);
        let keys: Vec<RedisKey> = applied
            .iter()
            .map(|a| self.redis_key(a, c, &endpoint))
            .collect();
        let request = Request {
            // A settlement starts no block: no block key is sent.
            specs: applied.iter().map(|a| a.spec.without_block()).collect(),
            keys,
            cost: 1,
            mode: if refund_at.is_some() {
                "refund"
            } else {
                "charge"
            },
            nonce: refund_at.unwrap_or_else(|| self.nonce(applied.len())),
            charges: applied
                .iter()
                .map(|a| if charged(a.name) { units } else { 0 })
                .collect(),
        };
        debug_assert!(matches!(decision.source, Source::Redis | Source::Lease));
        match &self.inner.shared {
            Some(store) => store.decide_one(&request).await.map(|_| ()),
            None => Err(BackendError::Unsupported("no shared counter store")),
        }
    }
}
