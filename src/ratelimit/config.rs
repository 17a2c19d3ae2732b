//! Settings of rate limiting: the type [`crate::config::Config`] assembles from the environment
//! and code can build directly.

use std::num::NonZeroU32;
use std::time::Duration;

use super::{OutageMode, Policy, Quota, Rule, Scope};

/// Rate-limit settings. `RATE_LIMIT_MAX` per `RATE_LIMIT_WINDOW` is the default rule of
/// existing deployments (per user and endpoint); the other variables add rules, plans, costs
/// and the outage behaviour. The parsed rules are in [`policy`](Self::policy).
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::config::Config;
/// use tenant_guard::ratelimit::OutageMode;
///
/// let c = Config::from_vars([("RATE_LIMIT_MAX", "50"), ("RATE_LIMIT_WINDOW", "30s"), ("RATE_LIMIT_TENANT", "1000/1m")]).unwrap();
/// let rl = &c.rate_limit;
/// assert_eq!((rl.max.get(), rl.window), (50, Duration::from_secs(30)));
/// assert_eq!(rl.outage, OutageMode::Local);
/// let names: Vec<&str> = rl.policy.rules().iter().map(|r| r.name.as_str()).collect();
/// assert!(names.contains(&"per-tenant"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Requests allowed per window by the default rule (default 100).
    pub max: NonZeroU32,
    /// Window of the default rule (default 900 s).
    pub window: Duration,
    /// Every rule, plan and cost.
    pub policy: Policy,
    /// What happens while Redis is unusable (`RATE_LIMIT_OUTAGE`, default `local`).
    pub outage: OutageMode,
    /// App instances sharing the limits, dividing limits in `local` outage mode
    /// (`RATE_LIMIT_INSTANCES`, default 1).
    pub instances: NonZeroU32,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` are believed
    /// (`RATE_LIMIT_TRUSTED_PROXIES`, default none).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one forwarding header believed from trusted proxies
    /// (`RATE_LIMIT_FORWARDED_HEADER`, default `x-forwarded-for`).
    pub forwarded_header: crate::ratelimit::ForwardedHeader,
    /// Header with a user id set by a trusted gateway (`RATE_LIMIT_USER_HEADER`).
    pub user_header: Option<String>,
    /// Also send `X-RateLimit-Limit/Remaining/Reset` (`RATE_LIMIT_LEGACY_HEADERS`).
    pub legacy_headers: bool,
    /// Per-tenant in-process cap in front of Redis (`RATE_LIMIT_BURST`, e.g. `200/1s`).
    pub burst: Option<Quota>,
    /// Requests per client address across every tenant (`RATE_LIMIT_IP`, e.g. `300/1m`):
    /// one client cycling tenant ids is limited too.
    pub per_ip: Option<Quota>,
    /// Entries of the local cache of identities known to be denied (`RATE_LIMIT_DENY_CACHE`,
    /// default 10000; 0 turns it off).
    pub deny_cache: u64,
    /// Most counters whose last Redis answer each instance remembers for the `local`
    /// outage mode (`RATE_LIMIT_OUTAGE_KEYS`, default 100000, at least 2).
    pub outage_keys: u64,
    /// Tenants, users and address ranges that skip every limit (`RATE_LIMIT_EXEMPT`).
    pub exempt: crate::ratelimit::AccessList,
    /// Tenants, users and address ranges refused with 403 (`RATE_LIMIT_DENY`).
    pub deny: crate::ratelimit::AccessList,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let max = NonZeroU32::new(100).expect("nonzero");
        let window = Duration::from_secs(900);
        Self {
            max,
            window,
            policy: Policy::builder()
                .rule(default_rule(max, window))
                .build()
                .expect("the default policy is valid"),
            outage: OutageMode::Local,
            instances: NonZeroU32::MIN,
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
            user_header: None,
            legacy_headers: false,
            burst: None,
            per_ip: None,
            deny_cache: 10_000,
            outage_keys: 100_000,
            exempt: Default::default(),
            deny: Default::default(),
        }
    }
}

pub(crate) fn default_rule(max: NonZeroU32, window: Duration) -> Rule {
    Rule::new("per-endpoint", Scope::Caller, Quota { limit: max, window }).per_endpoint()
}
