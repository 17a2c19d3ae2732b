//! Token budgets: AI gateways sell and protect tokens, not requests
//! (`RATE_LIMIT_TOKENS="tenant: POST /api/ai/{*rest} = 100000/1m; user: ... = 20000/1m"`).
//!
//! * **Reserve, then settle.** A request reserves its estimated tokens (body bytes / 4 plus
//!   its `max_tokens`, or your estimator) on every budget that applies, in one atomic step
//!   (one Lua call on Redis: all budgets or none). Its response settles the reservation in
//!   one more call when it ends, with the real usage; the difference is given back, or
//!   charged.
//! * **The bound.** A pending reservation counts as used, so no window admits more than
//!   the limit while every estimate covers its request's real usage; a response that uses
//!   more is charged the excess after the fact (the only way a window exceeds its limit, by
//!   at most that excess; `tenant_guard_tokens_overshoot_total` reports it).
//! * **Failures refund.** An error status, a client gone before the request reached the
//!   handler or with none of the answer sent, and what the cache answered without the
//!   handler give the whole reservation back (unless `RATE_LIMIT_TOKENS_CACHE_HITS=charged`
//!   for the cache). A client that leaves while the model works or part-way through a
//!   stream pays the estimate. A reservation whose instance died is never settled: it
//!   counts as used until its window passes, like any usage — the window is its expiry.
//! * Budgets are counted in compact sliding windows (see
//!   [`Algorithm::Compact`](crate::ratelimit::Algorithm::Compact)), on the rate limiter's
//!   store and outage mode; a request admitted by an outage mode is not settled.

#[cfg(feature = "axum")]
mod body;
mod budget;
mod config;
mod estimate;
#[cfg(feature = "axum")]
mod layer;
#[cfg(feature = "axum")]
mod service;
mod usage;

#[cfg(feature = "axum")]
pub use body::TokenBody;
pub use budget::{Reservation, Settled, TokenBudget};
pub use config::{CacheHits, TokenConfig, parse_token_rule, parse_token_rules};
pub use estimate::{EstimateError, estimate};
#[cfg(feature = "axum")]
pub use layer::TokenLayer;
#[cfg(feature = "axum")]
pub use service::{EstimateFn, TokenService, USAGE_HEADER};
pub use usage::UsageScan;
