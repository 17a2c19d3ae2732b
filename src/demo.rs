//! The demo multi-tenant app behind `tenant-guard serve` and `tenant-guard demo`.
//!
//! Routes (tenant from `X-Tenant-ID` unless `TG_TENANT_SOURCE` says otherwise, user from
//! `X-User-ID`):
//!
//! | route | what it does |
//! |-------|--------------|
//! | `GET /api/items` | a plain rate-limited endpoint |
//! | `GET /api/reports/{day}` | simulated database query (a few ms) |
//! | `POST /api/ai/complete` | simulated slow model; cost-weighted in the demo scenario |
//! | `GET /me` | the tenant and identity the layers saw, and the rate-limit decision |
//! | `/health`, `/health/ready`, `/cache/status`, `/metrics` | ops routes |
//!
//! Sessions and caching join these routes as their layers land.

use std::time::Duration;

use axum::extract::{Extension, Path};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::backend::{Backend, BackendError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::ops;
use crate::ratelimit::{Decision, RateLimitLayer, RateLimiter};
use crate::tenant::{TenantId, TenantLayer};

/// Simulated latency of the reports "database".
pub const REPORT_LATENCY: Duration = Duration::from_millis(3);
/// Simulated latency of the AI "model".
pub const MODEL_LATENCY: Duration = Duration::from_millis(20);

/// Builds the demo app from a configuration. Must run inside a Tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config = tenant_guard::config::Config::default();
/// let app = tenant_guard::demo::app(&config).unwrap();
/// # }
/// ```
pub fn app(config: &Config) -> Result<Router, BackendError> {
    let metrics = Metrics::new();
    let backend = Backend::from_config(config, &metrics)?;
    let limiter = RateLimiter::from_config(config, backend.clone(), &metrics);
    Ok(Router::new()
        .route("/api/items", get(items))
        .route("/api/reports/{day}", get(report))
        .route("/api/ai/complete", post(complete))
        .route("/me", get(me))
        .layer(RateLimitLayer::from_config(config, limiter))
        .layer(TenantLayer::from_config(&config.tenant))
        .merge(ops::router(backend, metrics)))
}

async fn items(tenant: TenantId) -> Json<serde_json::Value> {
    Json(json!({ "tenant": tenant, "items": ["alpha", "beta", "gamma"] }))
}

async fn report(tenant: TenantId, Path(day): Path<String>) -> Json<serde_json::Value> {
    tokio::time::sleep(REPORT_LATENCY).await;
    Json(json!({ "tenant": tenant, "day": day, "rows": 42 }))
}

async fn complete(tenant: TenantId, body: String) -> Json<serde_json::Value> {
    tokio::time::sleep(MODEL_LATENCY).await;
    Json(json!({ "tenant": tenant, "completion": format!("echo: {}", body.len()) }))
}

async fn me(tenant: TenantId, Extension(decision): Extension<Decision>) -> Json<serde_json::Value> {
    Json(json!({ "tenant": tenant, "rate_limit": decision }))
}
