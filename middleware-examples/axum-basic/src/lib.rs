//! # Example: per-IP rate limits in a plain axum app (memory backend)
//!
//! What it shows: the smallest useful setup. No tenants, no Redis, no configuration: every
//! client IP may call each endpoint 5 times per 10 seconds, in process. Responses carry the
//! `RateLimit` / `RateLimit-Policy` headers; the sixth call gets a 429 problem+json with
//! `Retry-After`.
//!
//! Run it:
//!
//! ```text
//! cargo run -p example-axum-basic
//! for i in 1 2 3 4 5 6; do curl -si localhost:3001/hello | head -1; done
//! ```

use axum::routing::get;
use axum::Router;
use tenant_guard::backend::{Backend, MemoryStore};
use tenant_guard::keys::Keys;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{
    LimiterOptions, Policy, Quota, RateLimitLayer, RateLimiter, Rule, Scope,
};

/// The app: `GET /hello` and `GET /slow`, each limited per client IP.
pub fn app() -> Router {
    let policy = Policy::builder()
        .rule(
            Rule::new(
                "per-ip",
                Scope::User,
                Quota::parse("5/10s").expect("valid quota"),
            )
            .per_endpoint(),
        )
        .build()
        .expect("valid policy");
    let backend = Backend::Memory(MemoryStore::new(Default::default()));
    let limiter = RateLimiter::new(
        backend,
        Keys::default(),
        policy,
        LimiterOptions::default(),
        &Metrics::new(),
    );
    Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .route("/slow", get(|| async { "slow\n" }))
        .layer(RateLimitLayer::new(limiter))
}
