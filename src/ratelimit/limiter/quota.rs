//! Calendar quotas in the limiter: each period counted under a counter of its own (named
//! after the period in Redis keys, hashed with its start in process), and a decision's
//! reset and retry times pointed at the period's end.

use std::borrow::Cow;
use std::time::Duration;

use crate::ratelimit::{Check, Decision, RateLimiter, Rule};
use crate::tenant::TenantId;

impl RateLimiter {
    /// The counter name of `rule` (interned as `name`) for `tenant` now: a calendar quota's
    /// is its name and period (`quota-tenant@month-2026-11-01`), so the next period starts empty.
    pub(super) fn counter_name<'a>(
        &self,
        rule: &Rule,
        name: &'a str,
        tenant: &TenantId,
    ) -> Cow<'a, str> {
        match (rule.period, &self.inner.quotas) {
            (Some(p), Some(q)) => match q.now(p, tenant.as_str()) {
                Some((span, _)) => Cow::Owned(format!("{name}@{}", span.label)),
                None => Cow::Borrowed(name),
            },
            _ => Cow::Borrowed(name),
        }
    }

    /// The in-process counter key of `rule` for `tenant` now: `key` itself, or (a calendar
    /// quota) mixed with the period's start.
    pub(super) fn counter_hash(&self, rule: &Rule, key: u64, tenant: &TenantId) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let (Some(p), Some(q)) = (rule.period, &self.inner.quotas) else {
            return key;
        };
        let Some((span, _)) = q.now(p, tenant.as_str()) else {
            return key;
        };
        let mut h = self.inner.seed.build_hasher();
        h.write_u64(key);
        h.write_u64(span.start_ms);
        h.finish()
    }

    /// Points a decision's calendar quotas at their period's end: `reset` (when the count
    /// starts again) and, for a refusal that would fit a whole period, `retry_after`.
    #[inline]
    pub(super) fn quota_times(&self, c: &Check<'_>, d: &mut Decision) {
        let Some(q) = &self.inner.quotas else {
            return;
        };
        let policy = &self.inner.policy;
        for r in &mut d.rules {
            let Some(p) = policy
                .rules()
                .iter()
                .zip(&self.inner.rule_names)
                .find(|&(_, &n)| n == r.name)
                .and_then(|(rule, _)| rule.period)
            else {
                continue;
            };
            let Some((span, now)) = q.now(p, c.tenant.as_str()) else {
                continue;
            };
            let left = Duration::from_millis(span.end_ms.saturating_sub(now).max(1));
            r.period = Some(p);
            r.reset = left;
            if !r.allowed && !r.blocked {
                r.retry_after = (d.cost <= r.limit).then_some(left);
            }
        }
    }
}
