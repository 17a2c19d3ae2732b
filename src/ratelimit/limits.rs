//! [`TenantLimits`]: one tenant's limits changed at runtime (`tenant-guard limits set`),
//! without a deploy: its plan tier, and the quotas of named rules.

use std::fmt;

use super::rules::Quota;
use crate::parse::InvalidValue;

/// One tenant's runtime limits: a plan tier (one of the policy's plans) and quotas that
/// replace named rules' quotas, on top of the plan's. Rules are named as in the
/// configuration; an endpoint rule must have a name (`ai: POST /api/ai/{*rest} = ...`) to
/// be set here. A calendar quota takes its limit only: its period stays.
///
/// ```
/// use tenant_guard::ratelimit::TenantLimits;
/// let l = TenantLimits::parse("plan=pro, per-tenant=5000/1m ai=20/1m").unwrap();
/// assert_eq!(l.plan.as_deref(), Some("pro"));
/// assert_eq!(l.quotas.len(), 2);
/// assert_eq!(l.to_string(), "plan=pro per-tenant=5000/60s ai=20/60s");
/// // What is written reads back, whatever the window.
/// let odd = TenantLimits::parse("per-tenant=100/90s ai=1/1500ms").unwrap();
/// assert_eq!(TenantLimits::parse(&odd.to_string()).unwrap(), odd);
/// assert!(TenantLimits::parse("per-tenant").is_err());
/// assert!(TenantLimits::parse("").unwrap().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TenantLimits {
    /// The tenant's plan tier (`None`: the policy's `RATE_LIMIT_TENANT_PLANS`, if any).
    pub plan: Option<String>,
    /// Quotas replacing named rules' quotas (`per-tenant=5000/1m`).
    pub quotas: Vec<(String, Quota)>,
}

impl TenantLimits {
    /// Accepted form, for error messages.
    ///
    /// ```
    /// use tenant_guard::ratelimit::TenantLimits;
    /// let err = TenantLimits::parse("per-tenant").unwrap_err();
    /// let message = format!("{}; expected {}", err.reason(), TenantLimits::FORM);
    /// assert!(message.starts_with("`per-tenant` is not RULE=LIMIT/WINDOW or plan=NAME; expected"));
    /// ```
    pub const FORM: &'static str = "`RULE=LIMIT/WINDOW` and `plan=NAME` entries separated by spaces or commas, e.g. `per-tenant=5000/1m plan=pro`";

    /// Parses `RULE=LIMIT/WINDOW` and `plan=NAME` entries, separated by spaces or commas.
    ///
    /// ```
    /// use tenant_guard::ratelimit::TenantLimits;
    /// let l = TenantLimits::parse("per-tenant=100/1m, per-tenant=200/1m").unwrap();
    /// assert_eq!(l.quotas.len(), 1); // the last one given counts
    /// assert_eq!(l.quotas[0].1.limit.get(), 200);
    /// assert_eq!(TenantLimits::parse("plan=").unwrap_err().reason(), "`plan=` names no plan");
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let mut out = Self::default();
        for part in s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not RULE=LIMIT/WINDOW or plan=NAME"))?;
            if k == "plan" {
                if v.is_empty() {
                    return Err("`plan=` names no plan".into());
                }
                out.plan = Some(v.to_string());
            } else {
                let q = Quota::parse(v).map_err(|e| format!("`{part}`: {e}"))?;
                out.quotas.retain(|(r, _)| r != k);
                out.quotas.push((k.to_string(), q));
            }
        }
        Ok(out)
    }

    /// With the plan tier `plan`.
    ///
    /// ```
    /// use tenant_guard::ratelimit::TenantLimits;
    /// let l = TenantLimits::default().plan("enterprise");
    /// assert_eq!(l.plan.as_deref(), Some("enterprise"));
    /// assert_eq!(l, TenantLimits::parse("plan=enterprise").unwrap());
    /// ```
    #[must_use]
    pub fn plan(mut self, plan: &str) -> Self {
        self.plan = Some(plan.to_string());
        self
    }

    /// With `rule`'s quota replaced by `quota`.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Quota, TenantLimits};
    /// let l = TenantLimits::default()
    ///     .quota("per-tenant", Quota::parse("100/1m").unwrap())
    ///     .quota("per-tenant", Quota::parse("5000/1m").unwrap()); // replaces the first
    /// assert_eq!(l.to_string(), "per-tenant=5000/60s");
    /// ```
    #[must_use]
    pub fn quota(mut self, rule: &str, quota: Quota) -> Self {
        self.quotas.retain(|(r, _)| r != rule);
        self.quotas.push((rule.to_string(), quota));
        self
    }

    /// Whether nothing is changed.
    ///
    /// ```
    /// use tenant_guard::ratelimit::TenantLimits;
    /// assert!(TenantLimits::default().is_empty());
    /// assert!(!TenantLimits::default().plan("pro").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.plan.is_none() && self.quotas.is_empty()
    }
}

impl fmt::Display for TenantLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { " " };
            first = false;
            f.write_str(s)
        };
        if let Some(p) = &self.plan {
            sep(f)?;
            write!(f, "plan={p}")?;
        }
        for (r, q) in &self.quotas {
            sep(f)?;
            // One unit, no spaces (`90s`, not `1m 30s`): what is written reads back.
            let ms = q.window.as_millis();
            if ms % 1000 == 0 {
                write!(f, "{r}={}/{}s", q.limit, ms / 1000)?;
            } else {
                write!(f, "{r}={}/{ms}ms", q.limit)?;
            }
        }
        Ok(())
    }
}
