//! Concurrency limits: how many requests of a tenant, and of a user, may be in flight at
//! once, across every instance (`RATE_LIMIT_CONCURRENCY_TENANT`,
//! `RATE_LIMIT_CONCURRENCY_USER`). AI gateways cap parallel generations this way, whatever
//! the request rate.
//!
//! * **Leases**: an admitted request takes a lease in each capped scope in one atomic step
//!   (all or none); it holds it until its response body has been sent to the end, failed, or
//!   been dropped (a client that went away).
//! * **Crash-safe on Redis**: a lease is a member of a sorted set scored with its expiry on
//!   the Redis clock; a request in flight renews it every third of
//!   `RATE_LIMIT_CONCURRENCY_LEASE` (default 30 s), so an instance that dies stops counting
//!   after at most that long. On memory the counts live in the process and need no expiry.
//! * **Outages** follow `RATE_LIMIT_OUTAGE`: `open` admits uncounted, `closed` answers 503,
//!   `local` counts in this process with the same caps.

#[cfg(feature = "axum")]
mod body;
mod config;
#[cfg(feature = "axum")]
mod layer;
mod limiter;
#[cfg(feature = "axum")]
mod service;
mod store;

#[cfg(feature = "axum")]
pub use body::ConcurrencyBody;
pub use config::{CapScope, ConcurrencyConfig, RouteCap};
#[cfg(feature = "axum")]
pub use layer::ConcurrencyLayer;
pub use limiter::{ConcurrencyDenied, ConcurrencyLimiter, Lease};
#[cfg(feature = "axum")]
pub use service::ConcurrencyService;
