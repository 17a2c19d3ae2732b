//! Operations routes to merge into an app: liveness, readiness, cache status, metrics.
//!
//! | route | answers |
//! |-------|---------|
//! | `GET /health` | 200 while the process serves requests (liveness) |
//! | `GET /health/ready` | 200 when the configured backend is usable, with the measured Redis PING latency, Redis' `maxmemory_policy` and `warnings` about the deployment (a policy that may evict counters and sessions: still 200); 503 when it is not (at once while the circuit breaker is open) |
//! | `GET /cache/health` | the seed deployments' check: `{"healthy": true, "backend": "redis", "message": "Cache is healthy using redis backend"}`, 200 when the backend is usable, 503 (`healthy: false`) when not |
//! | `GET /cache/status` | backend in use (`redis` / `redis-cluster` / `memory`), state (`ok` / `degraded`), key counts, breaker state, last latency and error, cache hits (L1/L2/stale), misses and hit ratio; and the seeds' fields: `type`, `available`, `redisInfo.connected`, `redisInfo.keys`, `latencyMs`, `hitRatio` |
//! | `GET /metrics` | Prometheus / OpenMetrics text |
//! | `GET /ops/top?minutes=5&rows=10` | the tenants with the most throttled and admitted requests over the last minutes (1-15), from a bounded top-k ([`Metrics::tenant_top`]): who is being throttled, without a tenant label |
//!
//! These routes sit outside any tenant: merge them next to (not under) the
//! [`TenantLayer`](crate::tenant::TenantLayer).
//!
//! `/cache/status`, `/metrics` and `/ops/top` show the Redis target, its last error and traffic
//! figures: with a token ([`router_with_token`], `TG_OPS_TOKEN`) they answer 401 without
//! `Authorization: Bearer <token>`. `/health` and `/health/ready` stay open for probes and
//! never show an address, a credential or an error text.

// Without Redis, the readiness and status handlers have one arm and need less.
#![cfg_attr(not(feature = "redis"), allow(unused_imports, dead_code))]

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::backend::Backend;
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::secret::Secret;

#[derive(Clone, Debug)]
struct OpsState {
    backend: Backend,
    metrics: Metrics,
    token: Option<Secret>,
}

/// Whether `headers` carry `Authorization: Bearer <expected>`, compared in constant time
/// (both sides hashed first, so neither the length nor a common prefix shows in the time).
///
/// ```
/// use tenant_guard::{config::Secret, ops::bearer_matches};
/// let secret = Secret::new("s3cret-token");
/// let mut headers = http::HeaderMap::new();
/// assert!(!bearer_matches(&headers, &secret));
/// headers.insert("authorization", "Bearer s3cret-token".parse().unwrap());
/// assert!(bearer_matches(&headers, &secret));
/// headers.insert("authorization", "Bearer s3cret-tokem".parse().unwrap());
/// assert!(!bearer_matches(&headers, &secret));
/// ```
pub fn bearer_matches(headers: &http::HeaderMap, expected: &Secret) -> bool {
    use sha2::{Digest, Sha256};
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    let a = Sha256::digest(given.trim_ascii());
    let b = Sha256::digest(expected.expose().as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn unauthorized() -> Response {
    let mut res: Response = Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized")
        .detail("this route needs `Authorization: Bearer <TG_OPS_TOKEN>`")
        .into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    res
}

fn allowed(st: &OpsState, headers: &http::HeaderMap) -> bool {
    st.token.as_ref().is_none_or(|t| bearer_matches(headers, t))
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
    router_with_token(backend, metrics, None)
}

/// The ops router with `/cache/status` and `/metrics` behind a bearer token
/// (`config.ops.token`, from `TG_OPS_TOKEN`); `None` leaves them open.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tower::ServiceExt;
/// use tenant_guard::{backend::Backend, config::{Config, Secret}, metrics::Metrics, ops};
///
/// let metrics = Metrics::new();
/// let backend = Backend::from_config(&Config::default(), &metrics).unwrap();
/// let app = ops::router_with_token(backend, metrics, Some(Secret::new("t0ken")));
/// let get = |path: &str, auth: Option<&str>| {
///     let mut req = http::Request::get(path);
///     if let Some(a) = auth {
///         req = req.header("authorization", a);
///     }
///     app.clone().oneshot(req.body(axum::body::Body::empty()).unwrap())
/// };
/// assert_eq!(get("/metrics", None).await.unwrap().status(), 401);
/// assert_eq!(get("/metrics", Some("Bearer t0ken")).await.unwrap().status(), 200);
/// assert_eq!(get("/health/ready", None).await.unwrap().status(), 200);
/// # }
/// ```
pub fn router_with_token<S>(
    backend: Backend,
    metrics: Metrics,
    token: Option<Secret>,
) -> Router<S> {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/cache/health", get(cache_health))
        .route("/cache/status", get(status))
        .route("/metrics", get(render_metrics))
        .route("/ops/top", get(top))
        .with_state(OpsState {
            backend,
            metrics,
            token,
        })
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(st): State<OpsState>) -> Response {
    let (ready, body) = st.backend.readiness().await;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// The seeds' `type` of a backend: `redis` (a cluster too) or `memory`.
fn seed_type(kind: &serde_json::Value) -> &'static str {
    match kind.as_str() {
        Some("memory") => "memory",
        _ => "redis",
    }
}

/// `/cache/health` as the deployments this crate replaces check it: open like
/// `/health/ready` (it says no more than that), 200 or 503.
async fn cache_health(State(st): State<OpsState>) -> Response {
    let (ready, body) = st.backend.readiness().await;
    let backend = seed_type(&body["backend"]);
    let (code, message) = if ready {
        (
            StatusCode::OK,
            format!("Cache is healthy using {backend} backend"),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Cache is unavailable: the {backend} backend is not usable"),
        )
    };
    (
        code,
        Json(json!({ "healthy": ready, "backend": backend, "message": message })),
    )
        .into_response()
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

async fn status(State(st): State<OpsState>, headers: http::HeaderMap) -> Response {
    if !allowed(&st, &headers) {
        return unauthorized();
    }
    let mut body = st.backend.status().await;
    body["cache"] = cache_stats(&st.metrics);
    // The seed deployments' fields, beside ours (their monitoring reads these).
    let kind = seed_type(&body["backend"]);
    let available = body["state"] == "ok";
    body["type"] = json!(kind);
    body["available"] = json!(available);
    body["redisInfo"] = if kind == "redis" {
        json!({ "connected": available, "keys": body["keys"].clone() })
    } else {
        serde_json::Value::Null
    };
    body["latencyMs"] = body["redis"]["last_latency_ms"].clone();
    body["hitRatio"] = body["cache"]["hit_ratio"].clone();
    Json(body).into_response()
}

async fn render_metrics(State(st): State<OpsState>, headers: http::HeaderMap) -> Response {
    if !allowed(&st, &headers) {
        return unauthorized();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// `GET /ops/top?minutes=5&rows=10`: the tenants with the most throttled and admitted
/// requests over the last minutes (1 to 15, default 5; rows 1 to 50, default 10), from the
/// bounded structure behind [`Metrics::tenant_top`]. Behind `TG_OPS_TOKEN` like `/metrics`.
async fn top(State(st): State<OpsState>, headers: http::HeaderMap, uri: http::Uri) -> Response {
    if !allowed(&st, &headers) {
        return unauthorized();
    }
    let (mut minutes, mut rows) = (5u64, 10usize);
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let ok = match k {
            "minutes" => v
                .parse()
                .ok()
                .filter(|m| (1..=crate::metrics::TOP_MINUTES).contains(m))
                .map(|m| minutes = m),
            "rows" => v
                .parse()
                .ok()
                .filter(|r| (1..=crate::metrics::TOP_MAX_ROWS).contains(r))
                .map(|r| rows = r),
            _ => None,
        };
        if ok.is_none() {
            return Problem::new(StatusCode::BAD_REQUEST, "Bad query")
                .detail(format!(
                    "`/ops/top` takes `minutes` (1 to {}) and `rows` (1 to {})",
                    crate::metrics::TOP_MINUTES,
                    crate::metrics::TOP_MAX_ROWS
                ))
                .into_response();
        }
    }
    Json(st.metrics.tenant_top().report(minutes, rows)).into_response()
}
