//! # Example: a SaaS app — tenant from the subdomain, sessions, per-user and per-tenant limits, Redis
//!
//! What it shows:
//!
//! * the tenant comes from the subdomain (`acme.saas.localhost` -> `acme`);
//! * `POST /login` binds the session to a user and calls `cycle_id()` (a session id known
//!   before login is worthless after it), `POST /logout` destroys the session,
//!   `POST /logout-everywhere` revokes every session of the user in this tenant,
//!   `GET /sessions` lists them;
//! * the session layer hands the logged-in user to the rate limiter, so `GET /api/projects`
//!   is limited per user (rule `projects` in `RATE_LIMIT_ENDPOINTS`, 20 per minute here;
//!   `RATE_LIMIT_USER`, 300 per minute across routes) and per tenant (`RATE_LIMIT_TENANT`,
//!   100 per minute); anonymous callers are counted per client IP;
//! * everything lives in Redis (`REDIS_URL`), so sessions survive restarts and are shared
//!   by every instance. Without `REDIS_URL` it runs on the memory backend.
//!
//! Run it (cookies are `Secure` by default; plain-http curl needs them relaxed):
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 SESSION_SECRET=$(openssl rand -base64 48) \
//!   SESSION_COOKIE_SECURE=false cargo run -p example-saas
//! curl -si -c jar -H 'Host: acme.saas.localhost' -d '{"user":"alice"}' localhost:3002/login
//! curl -s  -b jar -H 'Host: acme.saas.localhost' localhost:3002/me
//! curl -s  -b jar -H 'Host: acme.saas.localhost' localhost:3002/sessions
//! curl -si -b jar -H 'Host: acme.saas.localhost' -X POST localhost:3002/logout-everywhere
//! ```

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tenant_guard::TenantGuard;
use tenant_guard::config::Config;
use tenant_guard::guard::GuardError;
use tenant_guard::problem::Problem;
use tenant_guard::ratelimit::Decision;
use tenant_guard::session::{Session, SessionError, SessionStore};
use tenant_guard::tenant::TenantId;

/// Settings this example uses unless the environment says otherwise.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("TG_TENANT_SOURCE", "subdomain:saas.localhost"),
    ("RATE_LIMIT_TENANT", "100/1m"),
    ("RATE_LIMIT_USER", "300/1m"),
    (
        "RATE_LIMIT_ENDPOINTS",
        "projects: GET /api/projects = 20/1m",
    ),
    ("RATE_LIMIT_ENABLED", "true"),
];

/// The configuration: [`DEFAULTS`] overridden by `vars` (the process environment in `main`).
pub fn config(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, String> {
    let mut all: Vec<(String, String)> = DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.extend(vars);
    Config::from_vars(all).map_err(|e| e.to_string())
}

/// The app. Must be called inside a Tokio runtime.
pub fn app(config: &Config) -> Result<Router, GuardError> {
    // Tenant (from the subdomain), session (its user handed to the limiter), limits: one
    // guard, one layer.
    let guard = TenantGuard::from_config(config.clone())?;
    Ok(Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/sessions", get(list_sessions))
        .route("/me", get(me))
        .route("/api/projects", get(projects))
        .layer(guard.layer())
        .layer(Extension(guard.sessions().clone()))
        .merge(guard.ops_router()))
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(session: Session, body: String) -> Response {
    let Ok(Login { user }) = serde_json::from_str::<Login>(&body) else {
        return Problem::new(StatusCode::BAD_REQUEST, "Invalid login")
            .detail(r#"expected {"user": "<name>"}"#)
            .into_response();
    };
    if user.is_empty() || user.len() > 64 || user.contains(char::is_control) {
        return Problem::new(StatusCode::BAD_REQUEST, "Invalid user").into_response();
    }
    // (A real app checks a password or an identity provider here.)
    let result = async {
        session.cycle_id().await?;
        session.set_user_id(Some(&user)).await
    }
    .await;
    match result {
        Ok(()) => Json(json!({ "tenant": session.tenant(), "user": user })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn logout(session: Session) -> Result<StatusCode, SessionError> {
    session.destroy().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout_everywhere(
    session: Session,
    Extension(store): Extension<SessionStore>,
) -> Result<Json<serde_json::Value>, SessionError> {
    let Some(user) = session.user_id().await? else {
        return Ok(Json(json!({ "revoked": 0 })));
    };
    let revoked = store.revoke_user_sessions(session.tenant(), &user).await?;
    Ok(Json(json!({ "revoked": revoked })))
}

async fn list_sessions(
    session: Session,
    Extension(store): Extension<SessionStore>,
) -> Result<Json<serde_json::Value>, SessionError> {
    let Some(user) = session.user_id().await? else {
        return Ok(Json(json!({ "sessions": [] })));
    };
    let current = session.id().await?;
    let list: Vec<serde_json::Value> = store
        .list_user_sessions(session.tenant(), &user)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                // Never show a full id: it is a credential.
                "id": s.id.to_string(),
                "current": Some(&s.id) == current.as_ref(),
                "expires_in_s": s.expires_in.as_secs(),
            })
        })
        .collect();
    Ok(Json(json!({ "user": user, "sessions": list })))
}

async fn me(tenant: TenantId, session: Session) -> Result<Json<serde_json::Value>, SessionError> {
    Ok(Json(
        json!({ "tenant": tenant, "user": session.user_id().await? }),
    ))
}

async fn projects(
    tenant: TenantId,
    Extension(decision): Extension<Decision>,
) -> Json<serde_json::Value> {
    Json(json!({ "tenant": tenant, "projects": ["apollo", "gemini"], "rate_limit": decision }))
}
