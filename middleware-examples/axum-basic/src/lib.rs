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

use axum::Router;
use axum::routing::get;
use tenant_guard::ratelimit::RateLimitLayer;

/// The app: `GET /hello` and `GET /slow`, each limited per client IP.
pub fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .route("/slow", get(|| async { "slow\n" }))
        .layer(RateLimitLayer::per_ip_and_endpoint("5/10s").expect("a valid quota"))
}
