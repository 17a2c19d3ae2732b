//! # tenant-guard
//!
//! Tower layers for multi-tenant HTTP services (axum first, any tower stack second):
//! sliding-window rate limits, server-side sessions and response caching behind one tenant
//! model, on Redis (single node or cluster) or on an in-memory backend that needs no setup.
//!
//! Contents:
//!
//! * [`config`] — one typed [`Config`](config::Config), from environment variables
//!   ([`Config::from_env`](config::Config::from_env)) or code, that reports every invalid
//!   value at once and never prints a secret.
//! * [`tenant`] — the validated [`TenantId`](tenant::TenantId), resolvers (header,
//!   subdomain, path prefix, async fn), [`TenantLayer`](tenant::TenantLayer) and the axum
//!   extractor.
//! * [`keys`] — the only place Redis keys are formatted: tenant as a cluster hash tag, every
//!   other component escaped.
//! * [`backend`] — Redis (lazy, reconnecting, with timeouts, Lua scripts and a circuit
//!   breaker) and a bounded, expiring memory store, behind one [`Backend`](backend::Backend).
//! * [`ops`] — `/health`, `/health/ready`, `/cache/status` and `/metrics` routes.
//! * [`ratelimit`] — per-tenant / user / endpoint sliding windows decided in one atomic
//!   step, as a tower layer; calendar quotas (per day, week or month, billing anchors),
//!   blocks that outlast a denial, exempt and deny lists, and limits changed at runtime
//!   (`tenant-guard limits`, [`ratelimit::LimitStore`]).
//! * [`concurrency`] — caps on requests in flight per tenant, user and route, across
//!   instances (leases that expire when their instance dies), as a tower layer.
//! * [`tokens`] — token budgets for AI gateways: the estimate reserved on every budget at
//!   once, settled with the real usage when the response (streamed or not) ends.
//! * [`cache`] — query / AI / named-category caching: `get_or_compute` with single-flight,
//!   an L1 in front of Redis kept coherent by pub/sub invalidation, and an HTTP layer.
//! * [`session`] — server-side sessions behind a signed cookie, bound to the tenant, lazy,
//!   with per-field storage, absolute expiry and "log out everywhere".
//! * [`trace`] — one span per layer per request with what it decided, tied by a request
//!   id; `otel` (feature `otel`) exports them and the metrics over OTLP.
//! * [`guard`] — [`TenantGuard`]: all of the above from the environment, one layer.
//! * [`recipes`] — runnable set-ups: a SaaS app, an AI gateway, a plain tower service, a
//!   custom tenant resolver, a custom store.
//!
//! The `tenant-guard` command (demo app, open-loop load generator, Redis sizing) is another
//! crate of the workspace, `tenant-guard-cli`: none of its dependencies are built with this
//! library.
//!
//! ## Quick start
//!
//! One guard built from the environment (`REDIS_URL`, `RATE_LIMIT_*`, `SESSION_*`, ... —
//! the README lists them; with no `REDIS_URL` it runs on memory), one layer, the ops routes:
//!
//! ```
//! use axum::{routing::get, Router};
//! use tenant_guard::{tenant::TenantId, TenantGuard};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # /*
//! let guard = TenantGuard::from_env()?;
//! # */
//! # let guard = TenantGuard::from_vars([("REDIS_ENABLED", "false")])?; // whatever this machine's env says
//! let app: Router = Router::new()
//!     .route("/hello", get(|t: TenantId| async move { format!("hello, {t}") }))
//!     .layer(guard.layer())
//!     .merge(guard.ops_router());
//!
//! use tower::ServiceExt;
//! let req = http::Request::get("/hello").header("x-tenant-id", "acme").body(axum::body::Body::empty())?;
//! assert_eq!(app.oneshot(req).await?.status(), 200);
//! guard.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Each layer also stands alone ([`tenant::TenantLayer`], [`session::SessionLayer`],
//! [`ratelimit::RateLimitLayer`], [`cache::CacheLayer`], ...), with quick constructors such
//! as [`RateLimitLayer::per_ip`](ratelimit::RateLimitLayer::per_ip); [`recipes`] has more.
//!
//! ## Feature flags
//!
//! | flag | default | what it adds |
//! |------|---------|--------------|
//! | `redis` | yes | the Redis backend (single node and cluster) |
//! | `axum` | yes | the axum extractor and the ops router |
//! | `tls` | no | `rediss://` / `REDIS_USE_TLS` through native-tls |
//! | `otel` | no | `otel::Otel`: spans and metrics exported over OTLP (HTTP) |
//!
//! The memory backend is always built: it is the fallback that needs no setup.

// docs.rs builds with every feature and marks feature-gated items with their feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod future;
mod macros;

pub mod backend;
pub mod cache;
pub mod clock;
pub mod concurrency;
pub mod config;
#[cfg(feature = "axum")]
pub mod guard;
pub mod keys;
pub mod metrics;
#[cfg(feature = "axum")]
pub mod ops;
#[cfg(feature = "otel")]
pub mod otel;
pub(crate) mod parse;
pub mod problem;
pub mod ratelimit;
#[cfg(feature = "axum")]
pub mod recipes;
pub mod secret;
pub mod session;
pub mod tenant;
pub mod tokens;
pub mod trace;

pub use future::ResponseFuture;
#[cfg(feature = "axum")]
pub use guard::TenantGuard;
pub use parse::InvalidValue;
