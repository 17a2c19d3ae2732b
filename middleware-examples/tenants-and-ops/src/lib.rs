//! # Example: tenants and ops routes
//!
//! What it shows: an axum app whose tenant comes from configuration (`TG_TENANT_SOURCE`,
//! default the `X-Tenant-ID` header), with the ops routes (`/health`, `/health/ready`,
//! `/cache/status`, `/metrics`) merged beside the tenant-scoped routes, and a handler that
//! writes and reads tenant-prefixed keys through the configured backend.
//!
//! Run it (memory backend, no Redis needed):
//!
//! ```text
//! cargo run -p example-tenants-and-ops
//! curl -H 'X-Tenant-ID: acme' -X POST localhost:3000/notes/hello -d 'world'
//! curl -H 'X-Tenant-ID: acme' localhost:3000/notes/hello     # world
//! curl -H 'X-Tenant-ID: beta' localhost:3000/notes/hello     # 404: other tenant
//! curl localhost:3000/notes/hello                            # 400 problem+json
//! curl localhost:3000/cache/status
//! ```
//!
//! With Redis: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p example-tenants-and-ops`.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::keys::Keys;
use tenant_guard::metrics::Metrics;
use tenant_guard::ops;
use tenant_guard::tenant::{TenantId, TenantLayer};

#[derive(Clone)]
struct AppState {
    backend: Backend,
    keys: Keys,
    ttl: Duration,
}

/// Builds the app from a configuration.
pub fn app(config: &Config) -> Result<Router, Box<dyn std::error::Error>> {
    let metrics = Metrics::new();
    let backend = Backend::from_config(config, &metrics)?;
    let state = AppState {
        backend: backend.clone(),
        keys: Keys::new(config.key_prefix.clone()),
        ttl: config.cache.ttl_for("notes"),
    };
    Ok(Router::new()
        .route("/notes/{id}", get(read_note).post(write_note))
        .with_state(state)
        .layer(TenantLayer::from_config(&config.tenant))
        .merge(ops::router_with_token(
            backend,
            metrics,
            config.ops.token.clone(),
        )))
}

async fn write_note(
    tenant: TenantId,
    Path(id): Path<String>,
    State(st): State<AppState>,
    body: String,
) -> Result<StatusCode, (StatusCode, String)> {
    let key = st.keys.cache(&tenant, "notes", &id);
    st.backend
        .set(&key, body.as_bytes(), Some(st.ttl))
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(StatusCode::CREATED)
}

async fn read_note(
    tenant: TenantId,
    Path(id): Path<String>,
    State(st): State<AppState>,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let key = st.keys.cache(&tenant, "notes", &id);
    match st.backend.get(&key).await {
        Ok(Some(v)) => Ok(v.to_vec()),
        Ok(None) => Err((StatusCode::NOT_FOUND, "no such note".into())),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}
