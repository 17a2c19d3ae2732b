//! What a check decided: [`Decision`], per rule [`RuleDecision`], and who decided
//! ([`Source`]).

use std::time::Duration;

use super::algo::{Outcome, Spec};

/// Who decided.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
/// use tenant_guard::ratelimit::{Check, Identity, RateLimiter, Source};
/// let config = Config::from_vars([("RATE_LIMIT_MAX", "5")]).unwrap();
/// let metrics = Metrics::new();
/// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
/// let (tenant, who) = (TenantId::new("acme").unwrap(), Identity::from_ip("192.0.2.7".parse().unwrap()));
/// let check = Check { tenant: &tenant, identity: &who, method: &http::Method::GET, route: "/items", cost: None, plan: None };
/// assert_eq!(limiter.check(&check).await.source, Source::Memory);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The Lua script on Redis.
    Redis,
    /// The in-memory backend.
    Memory,
    /// The local cache of identities known to be denied (no Redis call).
    DenyCache,
    /// The per-tenant in-process burst cap (no Redis call).
    Burst,
    /// In process, from units this instance reserved in Redis for a hot counter
    /// (`RATE_LIMIT_LEASE`; no Redis call).
    Lease,
    /// Redis unusable, outage mode `local`: decided in process.
    Local,
    /// Redis unusable, outage mode `open`: allowed without counting.
    OutageOpen,
    /// Redis unusable, outage mode `closed`: refused.
    OutageClosed,
    /// No rule applies.
    NoRules,
    /// The tenant, user or address is in `RATE_LIMIT_EXEMPT`: allowed, nothing counted.
    Exempt,
    /// The tenant, user or address is in `RATE_LIMIT_DENY`: refused with 403.
    DenyList,
}

impl Source {
    pub(crate) const COUNT: usize = 11;
    pub(crate) const ALL: [Source; Self::COUNT] = [
        Self::Redis,
        Self::Memory,
        Self::DenyCache,
        Self::Burst,
        Self::Lease,
        Self::Local,
        Self::OutageOpen,
        Self::OutageClosed,
        Self::NoRules,
        Self::Exempt,
        Self::DenyList,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Memory => "memory",
            Self::DenyCache => "deny-cache",
            Self::Burst => "burst",
            Self::Lease => "lease",
            Self::Local => "local",
            Self::OutageOpen => "outage-open",
            Self::OutageClosed => "outage-closed",
            Self::NoRules => "no-rules",
            Self::Exempt => "exempt",
            Self::DenyList => "deny-list",
        }
    }
}

/// One rule's part of a decision.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
/// use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
/// let config = Config::from_vars([("RATE_LIMIT_MAX", "5"), ("RATE_LIMIT_WINDOW", "1m")]).unwrap();
/// let metrics = Metrics::new();
/// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
/// let (tenant, who) = (TenantId::new("acme").unwrap(), Identity::from_ip("192.0.2.7".parse().unwrap()));
/// let check = Check { tenant: &tenant, identity: &who, method: &http::Method::GET, route: "/items", cost: None, plan: None };
/// let d = limiter.check(&check).await;
/// let rule = &d.rules[0];
/// assert_eq!((rule.name, rule.limit, rule.remaining), ("per-endpoint", 5, 4));
/// assert_eq!(rule.window, std::time::Duration::from_secs(60));
/// assert!(rule.allowed && rule.retry_after.is_none());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleDecision {
    /// Rule name (interned: rule names come from configuration, a bounded set).
    pub name: &'static str,
    /// Units allowed per window (after plan overrides).
    pub limit: u32,
    /// Window length.
    pub window: Duration,
    /// Units left after this request.
    pub remaining: u32,
    /// Time until all counted usage has left the window.
    pub reset: Duration,
    /// When denied: time until this request's cost would fit (`None`: never, or allowed).
    pub retry_after: Option<Duration>,
    /// Whether this rule allowed the request.
    pub allowed: bool,
    /// Shadow rule: recorded, not enforced.
    pub shadow: bool,
    /// The rule blocks this identity (`RATE_LIMIT_BLOCK`): it refused it earlier, or
    /// refused it now and blocks it from now on; `retry_after` is the block's end.
    pub blocked: bool,
    /// A calendar quota's period (`reset` and `retry_after` then point at its end).
    pub period: Option<super::Period>,
}

/// The outcome of a check; also put into request extensions by the layer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
/// use tenant_guard::ratelimit::{Check, Identity, RateLimiter, Source};
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_MAX", "10")]).unwrap();
/// let metrics = Metrics::new();
/// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
/// let (acme, who) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()));
/// let check = Check { tenant: &acme, identity: &who, method: &http::Method::POST, route: "/import", cost: Some(4), plan: None };
/// let d = limiter.check(&check).await;
/// assert!(d.allowed);
/// assert_eq!((d.source, d.cost, d.rules[0].remaining), (Source::Memory, 4, 6));
/// assert_eq!(serde_json::to_value(&d).unwrap()["source"], "memory");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Who decided.
    pub source: Source,
    /// Units this request cost.
    pub cost: u32,
    /// Per-rule outcomes (for the deny cache and burst sources: the denying rule only).
    pub rules: Vec<RuleDecision>,
    /// The store's clock (ms) when the counters decided (memory or Redis): where a token
    /// budget's refund finds the units it charged. `None` for every other source.
    #[serde(skip)]
    pub(crate) at_ms: Option<u64>,
    /// Memory backend: bit `i` set if rule `i` of `rules` was decided (and charged) by its
    /// shared overflow counter, where a settlement must go too.
    #[serde(skip)]
    pub(crate) overflowed: u64,
}

impl Decision {
    /// The enforced rule with the least quota left (ties: the longest reset) — the one
    /// reported in `RateLimit` headers.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
    /// let config = Config::from_vars([("RATE_LIMIT_TENANT", "100/1m"), ("RATE_LIMIT_MAX", "3")]).unwrap();
    /// let metrics = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// let (tenant, who) = (TenantId::new("acme").unwrap(), Identity::from_ip("192.0.2.7".parse().unwrap()));
    /// let check = Check { tenant: &tenant, identity: &who, method: &http::Method::GET, route: "/items", cost: None, plan: None };
    /// let d = limiter.check(&check).await;
    /// assert_eq!(d.most_restrictive().unwrap().name, "per-endpoint");
    /// # }
    /// ```
    pub fn most_restrictive(&self) -> Option<&RuleDecision> {
        self.rules
            .iter()
            .filter(|r| !r.shadow)
            .min_by(|a, b| a.remaining.cmp(&b.remaining).then(b.reset.cmp(&a.reset)))
    }

    /// The enforced rule that denied, waiting longest if several did.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
    /// let config = Config::from_vars([("RATE_LIMIT_MAX", "1")]).unwrap();
    /// let metrics = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// let (tenant, who) = (TenantId::new("acme").unwrap(), Identity::from_ip("192.0.2.7".parse().unwrap()));
    /// let check = Check { tenant: &tenant, identity: &who, method: &http::Method::GET, route: "/items", cost: None, plan: None };
    /// assert!(limiter.check(&check).await.denied_by().is_none());
    /// assert_eq!(limiter.check(&check).await.denied_by().unwrap().name, "per-endpoint");
    /// # }
    /// ```
    pub fn denied_by(&self) -> Option<&RuleDecision> {
        self.rules
            .iter()
            .filter(|r| !r.shadow && !r.allowed)
            .max_by_key(|r| r.retry_after.unwrap_or(Duration::MAX))
    }

    /// How long until the request would be allowed (longest wait of the denying rules);
    /// `None` if allowed or never.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
    /// let config = Config::from_vars([("RATE_LIMIT_MAX", "1"), ("RATE_LIMIT_WINDOW", "1m")]).unwrap();
    /// let metrics = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// let (tenant, who) = (TenantId::new("acme").unwrap(), Identity::from_ip("192.0.2.7".parse().unwrap()));
    /// let check = Check { tenant: &tenant, identity: &who, method: &http::Method::GET, route: "/items", cost: None, plan: None };
    /// assert_eq!(limiter.check(&check).await.retry_after(), None);
    /// let wait = limiter.check(&check).await.retry_after().unwrap();
    /// assert!(wait > std::time::Duration::ZERO);
    /// # }
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        if self.allowed {
            return None;
        }
        self.denied_by().and_then(|r| r.retry_after)
    }
}

/// A rule's part of a decision from its store's outcome.
pub(crate) fn rule_decision(name: &'static str, spec: &Spec, o: &Outcome) -> RuleDecision {
    RuleDecision {
        name,
        limit: spec.limit,
        window: Duration::from_millis(spec.window_ms),
        remaining: o.remaining,
        reset: Duration::from_millis(o.reset_ms),
        retry_after: if o.allowed {
            None
        } else {
            o.retry_ms.map(|ms| Duration::from_millis(ms.max(1)))
        },
        allowed: o.allowed,
        shadow: spec.shadow,
        blocked: o.blocked,
        period: None,
    }
}

/// The decision when no rule applies.
/// A request an access list decided (`Exempt` or `DenyList`), with no rule counted.
pub(crate) fn listed(source: Source) -> Decision {
    Decision {
        allowed: source != Source::DenyList,
        source,
        cost: 0,
        rules: Vec::new(),
        at_ms: None,
        overflowed: 0,
    }
}

pub(crate) fn no_rules(cost: u32) -> Decision {
    Decision {
        allowed: true,
        source: Source::NoRules,
        cost,
        rules: Vec::new(),
        at_ms: None,
        overflowed: 0,
    }
}
