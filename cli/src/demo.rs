//! The demo multi-tenant app behind `tenant-guard serve` and `tenant-guard demo`.
//!
//! Routes (tenant from `X-Tenant-ID` unless `TG_TENANT_SOURCE` says otherwise, user from
//! `X-User-ID`):
//!
//! | route | what it does |
//! |-------|--------------|
//! | `GET /api/items` | a plain rate-limited endpoint |
//! | `GET /api/reports/{day}` | simulated database query (a few ms), cached (query category) |
//! | `POST /api/ai/complete` | simulated model (`DEMO_MODEL_LATENCY`, default 20 ms) answering with `usage` ([`usage`]), cached (AI category); cost-weighted and token-budgeted in the demo; with `"stream": true` an event stream, one event per token `DEMO_TOKEN_LATENCY` (default 10 ms) apart, then the usage and `[DONE]` ([`stream_events`]) |
//! | `POST /login` | body `{"user": "alice"}`: binds the session to the user (new session id) |
//! | `POST /logout` | ends the session |
//! | `GET /me` | the tenant, the session's user and the rate-limit decision |
//! | `DELETE /api/cache` | invalidates every cache entry of the tenant (all instances); needs `Authorization: Bearer $TG_ADMIN_TOKEN`, refused (403) when that is unset |
//! | `DELETE /api/cache/tags/{tag}` | invalidates the tenant's entries tagged `tag` (reports are tagged `reports` and `day:<day>`); same token |
//! | `/health`, `/health/ready`, `/cache/status`, `/metrics` | ops routes (the last two behind `TG_OPS_TOKEN` when set) |
//!
//! The session layer puts the logged-in user in front of the rate limiter, so logged-in
//! traffic is limited per user and anonymous traffic per `X-User-ID` or client IP. Reports
//! are cached in the query category with a TTL by the day's age ([`report_ttl`]); AI
//! completions in the AI category (model and parameters from the JSON body).

use std::time::Duration;

use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use tenant_guard::TenantGuard;
use tenant_guard::backend::BackendError;
use tenant_guard::cache::{Cache, CacheLayer, CacheTags, valid_tag};
use tenant_guard::config::{Config, Secret};
use tenant_guard::guard::GuardError;
use tenant_guard::metrics::Metrics;
use tenant_guard::ops;
use tenant_guard::problem::Problem;
use tenant_guard::ratelimit::Decision;
use tenant_guard::session::{Session, SessionError};
use tenant_guard::tenant::TenantId;

/// Simulated latency of the reports "database".
pub const REPORT_LATENCY: Duration = Duration::from_millis(3);
/// Simulated latency of the AI "model" unless `DEMO_MODEL_LATENCY` says otherwise.
pub const MODEL_LATENCY: Duration = Duration::from_millis(20);

/// Delay between two tokens of a streamed completion unless `DEMO_TOKEN_LATENCY` says
/// otherwise.
pub const TOKEN_LATENCY: Duration = Duration::from_millis(10);

/// A duration from the environment (such as `20ms`, or plain seconds), else `default`.
fn env_duration(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            let v = v.trim();
            v.parse::<u64>()
                .map(Duration::from_secs)
                .ok()
                .or_else(|| humantime::parse_duration(v).ok())
        })
        .unwrap_or(default)
}

/// How the demo model answers: its latency before the first token (`DEMO_MODEL_LATENCY`,
/// default [`MODEL_LATENCY`]) and between two streamed tokens (`DEMO_TOKEN_LATENCY`,
/// default [`TOKEN_LATENCY`]).
#[derive(Debug, Clone, Copy)]
struct Model {
    latency: Duration,
    token_latency: Duration,
}

impl Model {
    fn from_env() -> Self {
        Self {
            latency: env_duration("DEMO_MODEL_LATENCY", MODEL_LATENCY),
            token_latency: env_duration("DEMO_TOKEN_LATENCY", TOKEN_LATENCY),
        }
    }
}

/// The demo model's usage for a request body: `prompt_tokens` = ceil(prompt bytes / 4)
/// (the `prompt` field, else the whole body), `completion_tokens` = half of `max_tokens`
/// (default 64) — so a token budget's reservation (body / 4 + `max_tokens`) is partly
/// refunded.
///
/// ```
/// let u = tenant_guard_cli::demo::usage(r#"{"prompt":"hello","max_tokens":64}"#);
/// assert_eq!((u.0, u.1), (2, 32));
/// ```
pub fn usage(body: &str) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let prompt = v["prompt"].as_str().map_or(body.len(), str::len) as u64;
    let max = v["max_tokens"].as_u64().unwrap_or(64);
    (prompt.div_ceil(4), max / 2)
}

/// Builds the demo app from a configuration. Must run inside a Tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config = tenant_guard::config::Config::default();
/// let app = tenant_guard_cli::demo::app(&config).unwrap();
/// # }
/// ```
pub fn app(config: &Config) -> Result<Router, BackendError> {
    app_with(config, Metrics::new())
}

/// Like [`app`], reporting to `metrics` (to export them elsewhere too, e.g. over OTLP).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let metrics = tenant_guard::metrics::Metrics::new();
/// let config = tenant_guard::config::Config::default();
/// let app = tenant_guard_cli::demo::app_with(&config, metrics.clone()).unwrap();
/// assert!(metrics.render().contains("tenant_guard_ratelimit_decisions"));
/// # }
/// ```
pub fn app_with(config: &Config, metrics: Metrics) -> Result<Router, BackendError> {
    let guard = TenantGuard::builder()
        .config(config.clone())
        .metrics(metrics)
        .build()
        .map_err(|e| match e {
            GuardError::Backend(b) => b,
            // Config::from_vars validated the budgets; only one built in code can fail here.
            _ => BackendError::Unsupported("invalid configuration"),
        })?;
    // Logs deployment warnings (an evicting maxmemory-policy) at start-up when Redis is up;
    // /health/ready retries otherwise.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let check = guard.backend().clone();
        rt.spawn(async move { check.check_deployment().await });
    }
    let cache = guard.cache().clone();
    let routes = Router::new()
        .route("/api/items", get(items))
        .route(
            "/api/reports/{day}",
            get(report).layer(CacheLayer::query(cache.clone()).ttl_with(|parts, _| {
                let day = parts.uri.path().rsplit('/').next()?;
                Some(report_ttl(day, unix_day_now()))
            })),
        )
        .route(
            "/api/ai/complete",
            post({
                let model = Model::from_env();
                move |tenant, body| complete(tenant, body, model)
            })
            .layer(CacheLayer::ai(cache.clone())),
        )
        .route(
            "/api/cache",
            axum::routing::delete({
                let admin = config.ops.admin_token.clone();
                move |tenant, cache, headers| drop_cache(tenant, cache, headers, admin)
            }),
        )
        .route(
            "/api/cache/tags/{tag}",
            axum::routing::delete({
                let admin = config.ops.admin_token.clone();
                move |tenant, cache, tag, headers| drop_tag(tenant, cache, tag, headers, admin)
            }),
        )
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me));
    // Tenant, session (the logged-in user in front of the rate limiter), rate limit, token
    // budgets (RATE_LIMIT_TOKENS: outside the cache, whose hits are refunded) and
    // concurrency caps (RATE_LIMIT_CONCURRENCY_*: a request the rate limit refuses takes
    // no lease): one layer. The guard (and its watch of runtime limits, `tenant-guard
    // limits set`) lives as long as the router.
    Ok(routes
        .layer(guard.layer())
        .layer(Extension(cache))
        .merge(guard.ops_router())
        .layer(Extension(guard))
        // Turn handlers into routes once, here, rather than on every in-process call
        // (`into_make_service` does the same for served routers).
        .with_state(()))
}

/// Upstream computations of this process (reports and completions), so a response tells
/// which process computed it and when: identical bodies from several instances mean one
/// computation was shared.
static COMPUTATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn computed() -> serde_json::Value {
    let n = COMPUTATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    json!({ "pid": std::process::id(), "n": n })
}

/// The admin routes' check: `Authorization: Bearer $TG_ADMIN_TOKEN`, and none at all
/// (403) while that is unset.
fn admin_only(headers: &axum::http::HeaderMap, admin: Option<&Secret>) -> Result<(), Problem> {
    let Some(admin) = admin else {
        return Err(Problem::new(StatusCode::FORBIDDEN, "Admin route disabled")
            .detail("set TG_ADMIN_TOKEN to enable the DELETE /api/cache routes"));
    };
    if !ops::bearer_matches(headers, admin) {
        return Err(Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized")
            .detail("DELETE /api/cache needs `Authorization: Bearer <TG_ADMIN_TOKEN>`"));
    }
    Ok(())
}

fn cache_unavailable(e: BackendError) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Cache unavailable").detail(e.to_string())
}

async fn drop_cache(
    tenant: TenantId,
    Extension(cache): Extension<Cache>,
    headers: axum::http::HeaderMap,
    admin: Option<Secret>,
) -> Result<Json<serde_json::Value>, Problem> {
    admin_only(&headers, admin.as_ref())?;
    let generation = cache
        .invalidate_tenant(&tenant)
        .await
        .map_err(cache_unavailable)?;
    Ok(Json(json!({ "tenant": tenant, "generation": generation })))
}

async fn drop_tag(
    tenant: TenantId,
    Extension(cache): Extension<Cache>,
    Path(tag): Path<String>,
    headers: axum::http::HeaderMap,
    admin: Option<Secret>,
) -> Result<Json<serde_json::Value>, Problem> {
    admin_only(&headers, admin.as_ref())?;
    if !valid_tag(&tag) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "Invalid tag")
            .detail("a tag is 1 to 64 bytes of A-Z a-z 0-9 . _ : / -"));
    }
    let generation = cache
        .invalidate_tag(&tenant, &tag)
        .await
        .map_err(cache_unavailable)?;
    Ok(Json(
        json!({ "tenant": tenant, "tag": tag, "generation": generation }),
    ))
}

/// TTL of a cached report by the age of its day: today's data still changes (15 s), last
/// week's rarely (3 min), older days never (10 min). Unparseable days, and years outside
/// 0..=9999, get 15 s; no input overflows.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard_cli::demo::report_ttl;
/// let today = 20_414; // 2025-11-22 as days since 1970-01-01
/// assert_eq!(report_ttl("2025-11-22", today), Duration::from_secs(15));
/// assert_eq!(report_ttl("2025-11-18", today), Duration::from_secs(180));
/// assert_eq!(report_ttl("2024-01-01", today), Duration::from_secs(600));
/// ```
pub fn report_ttl(day: &str, today: i64) -> Duration {
    match days_from_date(day).map(|d| today.saturating_sub(d)) {
        Some(age) if age >= 7 => Duration::from_secs(600),
        Some(age) if age >= 1 => Duration::from_secs(180),
        _ => Duration::from_secs(15),
    }
}

fn unix_day_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs() / 86_400).unwrap_or(0))
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian), years 0..=9999
/// only: the arithmetic below then stays far from `i64`'s bounds.
fn days_from_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(0..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

async fn items(tenant: TenantId) -> Json<serde_json::Value> {
    Json(json!({ "tenant": tenant, "items": ["alpha", "beta", "gamma"] }))
}

/// A day's report, tagged `reports` and `day:<day>` (when the day makes a tag): `DELETE
/// /api/cache/tags/reports` drops every cached report of the tenant.
async fn report(tenant: TenantId, Path(day): Path<String>) -> impl IntoResponse {
    tokio::time::sleep(REPORT_LATENCY).await;
    let day_tag = format!("day:{day}");
    let tags = CacheTags::new(
        std::iter::once("reports").chain(valid_tag(&day_tag).then_some(day_tag.as_str())),
    )
    .unwrap_or_default();
    (
        Extension(tags),
        Json(json!({ "tenant": tenant, "day": day, "rows": 42, "computed": computed() })),
    )
}

/// A completion: a JSON answer after the model's latency, or with `"stream": true` an event
/// stream ([`stream_events`]).
async fn complete(tenant: TenantId, body: String, model: Model) -> Response {
    let (prompt, completion) = usage(&body);
    let streamed = serde_json::from_str::<serde_json::Value>(&body)
        .is_ok_and(|v| v["stream"] == serde_json::Value::Bool(true));
    if streamed {
        let events = stream_events(prompt, completion, model.latency, model.token_latency);
        return (
            [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
            axum::body::Body::from_stream(events),
        )
            .into_response();
    }
    tokio::time::sleep(model.latency).await;
    Json(json!({
        "tenant": tenant,
        "completion": format!("echo: {}", body.len()),
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "computed": computed(),
    }))
    .into_response()
}

/// A streamed completion as server-sent events: one event per token (`{"index": i,
/// "token": "..."}`), the first after `latency` and each next `token_latency` later, then
/// one with the `usage` (what token budgets settle with) and `[DONE]`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use futures_util::StreamExt;
/// use std::time::Duration;
/// let events = tenant_guard_cli::demo::stream_events(2, 3, Duration::ZERO, Duration::ZERO);
/// let all: Vec<String> = events
///     .map(|e| String::from_utf8(e.unwrap().to_vec()).unwrap())
///     .collect()
///     .await;
/// assert_eq!(all.len(), 5);
/// assert_eq!(all[0], "data: {\"index\":0,\"token\":\"tok0 \"}\n\n");
/// assert!(all[3].contains(r#""total_tokens":5"#));
/// assert_eq!(all[4], "data: [DONE]\n\n");
/// # }
/// ```
pub fn stream_events(
    prompt: u64,
    completion: u64,
    latency: Duration,
    token_latency: Duration,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> + Send {
    futures_util::stream::unfold(0u64, move |i| async move {
        let event = match i {
            _ if i > completion.saturating_add(1) => return None,
            _ if i < completion => {
                tokio::time::sleep(if i == 0 { latency } else { token_latency }).await;
                json!({ "index": i, "token": format!("tok{i} ") }).to_string()
            }
            _ if i == completion => {
                if i == 0 {
                    tokio::time::sleep(latency).await;
                }
                json!({ "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                }, "computed": computed() })
                .to_string()
            }
            _ => "[DONE]".to_string(),
        };
        Some((Ok(bytes::Bytes::from(format!("data: {event}\n\n"))), i + 1))
    })
}

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

async fn login(session: Session, body: String) -> Response {
    let user =
        match serde_json::from_str::<Login>(&body) {
            Ok(l) if valid_user(&l.user) => l.user,
            _ => return Problem::new(StatusCode::BAD_REQUEST, "Invalid login")
                .detail(
                    r#"expected a JSON body {"user": "<1-64 characters of A-Z a-z 0-9 . _ @ ->"}"#,
                )
                .into_response(),
        };
    let result: Result<(), SessionError> = async {
        // A new id on login: an id planted before login (fixation) is worthless after it.
        session.cycle_id().await?;
        session.set_user_id(Some(&user)).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        session.insert("login_at", &now).await
    }
    .await;
    match result {
        Ok(()) => Json(json!({ "tenant": session.tenant(), "user": user })).into_response(),
        Err(e) => e.into_response(),
    }
}

fn valid_user(user: &str) -> bool {
    (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

async fn logout(session: Session) -> Result<Json<serde_json::Value>, SessionError> {
    let user = session.user_id().await?;
    session.destroy().await?;
    Ok(Json(json!({ "logged_out": user.is_some() })))
}

async fn me(
    tenant: TenantId,
    session: Session,
    Extension(decision): Extension<Decision>,
) -> Result<Json<serde_json::Value>, SessionError> {
    let user = session.user_id().await?;
    let login_at = session.get::<u64>("login_at").await?;
    Ok(Json(json!({
        "tenant": tenant,
        "user": user,
        "login_at": login_at,
        "rate_limit": decision,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_days_do_not_overflow() {
        let today = 20_414;
        for day in [
            "9223372036854775807-01-01",
            "-9223372036854775808-12-31",
            "99999-01-01",
            "-1-01-01",
            "18446744073709551616-01-01",
        ] {
            assert_eq!(report_ttl(day, today), Duration::from_secs(15), "{day}");
        }
        assert_eq!(report_ttl("9999-12-31", i64::MIN), Duration::from_secs(15));
        assert_eq!(report_ttl("0000-01-01", i64::MAX), Duration::from_secs(600));
    }
}
