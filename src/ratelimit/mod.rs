//! Rate limiting: per-tenant, per-user and per-endpoint sliding windows, every applicable
//! rule decided in one atomic step (one Lua script call on Redis, one lock in memory).
//!
//! * **Rules** ([`Rule`], [`Policy`]): a scope (tenant or user), a [`Quota`]
//!   (`100/15m`), optionally an endpoint pattern (`POST /api/ai/{*rest}`), a separate
//!   counter per endpoint, an algorithm, shadow (dry-run) mode. Plans override quotas per
//!   tenant tier; costs weigh requests.
//! * **Atomic**: if any enforced rule denies, no rule is charged. Time comes from Redis
//!   `TIME`; every key written gets its TTL inside the script.
//! * **Sliding windows**, never over-admitting: the exact log (sorted set, capped at the
//!   limit) or the compact window (30 sub-window buckets counted conservatively, under 200
//!   bytes per key in Redis, ≥ 95% of the exact log's admissions). Compact is the
//!   default: its memory per key does not grow with the limit.
//! * **Identity** ([`IdentityConfig`]): [`UserId`] from the session/auth layer, a trusted
//!   header, or the client IP behind trusted proxies, IPv6 grouped by /64.
//! * **Outages** ([`OutageMode`]): `open`, `closed` or `local` (in process, from the last
//!   answer Redis gave for each counter, the rest divided by the instance count; what was
//!   admitted is charged back to Redis when it returns); with the circuit breaker open a
//!   check costs microseconds.
//! * **Deny cache**: identities Redis reported full are answered locally until the first
//!   unit frees; **burst**: an optional per-tenant governor cap in front of Redis.
//! * **Leases** ([`Lease`], opt-in per rule): a hot counter's instance reserves a slice of
//!   the remaining quota in the same script call and admits from it in process until it
//!   is spent or a short lease ends; unused units go back. Reserved units count as
//!   admitted, so no window exceeds the limit, and one tenant is no longer capped by what
//!   one Redis core runs of the script.

mod access;
mod algo;
mod block;
mod burst;
mod calendar;
mod config;
mod decision;
mod deny_cache;
pub(crate) mod headers;
mod identity;
mod layer;
mod lease;
mod limiter;
mod limits;
mod outage;
mod policy;
mod quick;
mod quota;
pub mod rules;
mod service;
mod store;

/// Re-exported from [`tenant`](crate::tenant), where the identity types live.
pub use crate::tenant::{GLOBAL_TENANT, Identity, UserId};
pub(crate) use access::ACCESS_LIST_FORM;
pub use access::AccessList;
pub use calendar::{Period, QuotaCalendar, parse_calendar_quota};
pub use config::RateLimitConfig;
pub(crate) use config::default_rule;
pub use decision::{Decision, RuleDecision, Source};
pub use identity::{ClientAddr, ForwardedHeader, IdentityConfig, MAX_HEADER_USER_LEN};
pub use layer::{RateLimitLayer, UNMATCHED_ROUTE};
pub use limiter::LimitWatch;
pub use limiter::{Check, LimiterOptions, RateLimiter};
pub use limits::TenantLimits;
pub use outage::OutageMode;
pub use policy::{Policy, PolicyBuilder, PolicyError, PolicyProblem};
pub use rules::{
    Algorithm, Block, COMPACT_BUCKETS, EndpointPattern, Lease, MAX_EXACT_LIMIT, Quota, Rule, Scope,
};
pub use service::RateLimitService;
pub use store::limits::LimitStore;
