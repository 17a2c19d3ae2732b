//! Operations routes to merge into an app: liveness, readiness, cache status, metrics.
//!
//! | route | answers |
//! |-------|---------|
//! | `GET /health` | 200 while the process serves requests (liveness) |
//! | `GET /health/ready` | 200 when the configured backend is usable, with the measured Redis PING latency, Redis' `maxmemory_policy` and `warnings` about the deployment (a policy that may evict counters and sessions: still 200); 503 when it is not (at once while the circuit breaker is open) |
//! | `GET /cache/status` | backend in use (`redis` / `redis-cluster` / `memory`), state (`ok` / `degraded`), key counts, breaker state, last latency and error, cache hits (L1/L2/stale), misses and hit ratio |
//! | `GET /metrics` | Prometheus / OpenMetrics text |
//!
//! These routes sit outside any tenant: merge them next to (not under) the
//! [`TenantLayer`](crate::tenant::TenantLayer).

// Without Redis, the readiness and status handlers have one arm and need less.
#![cfg_attr(not(feature = "redis"), allow(unused_imports, dead_code))]

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::backend::{Backend, BackendKind, BreakerState};
use crate::metrics::Metrics;

#[derive(Clone, Debug)]
struct OpsState {
    backend: Backend,
    metrics: Metrics,
}

/// The ops router.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tower::ServiceExt;
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, ops};
///
/// let metrics = Metrics::new();
/// let backend = Backend::from_config(&Config::default(), &metrics).unwrap();
/// let app = ops::router(backend, metrics);
/// let res = app
///     .oneshot(http::Request::get("/health/ready").body(axum::body::Body::empty()).unwrap())
///     .await
///     .unwrap();
/// assert_eq!(res.status(), 200);
/// # }
/// ```
pub fn router<S>(backend: Backend, metrics: Metrics) -> Router<S> {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/cache/status", get(status))
        .route("/metrics", get(render_metrics))
        .with_state(OpsState { backend, metrics })
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

async fn ready(State(st): State<OpsState>) -> Response {
    let kind = st.backend.kind();
    match &st.backend {
        Backend::Memory(_) => Json(json!({ "status": "ready", "backend": kind })).into_response(),
        #[cfg(feature = "redis")]
        Backend::Redis(r) => {
            let health = r.health();
            if health.state() == BreakerState::Open {
                // Known down: answer now, the background probe will notice recovery.
                let body = json!({
                    "status": "unavailable",
                    "backend": kind,
                    "breaker": BreakerState::Open,
                    "error": health.last_error(),
                });
                return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            }
            match r.ping().await {
                Ok(latency) => {
                    // Kept after the first answer; a failure here leaves it for next time.
                    let deployment = r.check_deployment().await.ok();
                    Json(json!({
                        "status": "ready",
                        "backend": kind,
                        "breaker": health.state(),
                        "redis_latency_ms": ms(latency),
                        "maxmemory_policy": deployment.and_then(|d| d.maxmemory_policy.clone()),
                        "warnings": deployment.map_or(&[][..], |d| &d.warnings[..]),
                    }))
                    .into_response()
                }
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({
                        "status": "unavailable",
                        "backend": kind,
                        "breaker": health.state(),
                        "error": e.to_string(),
                    })),
                )
                    .into_response(),
            }
        }
    }
}

fn cache_stats(metrics: &Metrics) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let t = metrics.cache_totals();
    json!({
        "hits_l1": t.hits_l1.load(Relaxed),
        "hits_l2": t.hits_l2.load(Relaxed),
        "stale": t.stale.load(Relaxed),
        "misses": t.misses.load(Relaxed),
        "hit_ratio": t.hit_ratio(),
    })
}

async fn status(State(st): State<OpsState>) -> Json<serde_json::Value> {
    let kind = st.backend.kind();
    let cache = cache_stats(&st.metrics);
    match &st.backend {
        Backend::Memory(m) => Json(json!({
            "cache": cache,
            "backend": kind,
            "state": "ok",
            "keys": m.len(),
            "memory": {
                "entries": m.len(),
                "bytes": m.bytes(),
                "evictions": m.evictions(),
            },
        })),
        #[cfg(feature = "redis")]
        Backend::Redis(r) => {
            let health = r.health();
            let open = health.state() == BreakerState::Open;
            let keys = if open { None } else { r.db_size().await.ok() };
            let degraded = open || keys.is_none();
            Json(json!({
                "cache": cache,
                "backend": kind,
                "state": if degraded { "degraded" } else { "ok" },
                "keys": keys,
                "redis": {
                    "target": r.description(),
                    "cluster": kind == BackendKind::RedisCluster,
                    "breaker": health.state(),
                    "consecutive_failures": health.consecutive_failures(),
                    "last_latency_ms": health.last_latency().map(ms),
                    "last_error": health.last_error(),
                },
            }))
        }
    }
}

async fn render_metrics(State(st): State<OpsState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}
