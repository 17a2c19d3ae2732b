//! # Example: an AI gateway — response cache with single-flight, cost-weighted limits, token budgets
//!
//! What it shows: a `POST /v1/chat/completions` proxy in front of a slow model (simulated:
//! 300 ms per call).
//!
//! * `CacheLayer::ai` caches completions per tenant under `ai:{tenant}:<model>:<sha256>`:
//!   the model, every generation parameter and whether the answer is streamed are part of
//!   the key, `request_id` is not, and JSON key order does not matter. Concurrent identical
//!   requests call the model once (single-flight); the others wait for that answer.
//! * Each completion costs 5 units of the tenant's quota (`RATE_LIMIT_COSTS`), other calls
//!   1 (`RATE_LIMIT_TENANT`, 100 units per minute here): a cache hit is cheap for the
//!   gateway, but it still counts against the tenant.
//! * At most 8 completions of a tenant run at once, across gateway instances
//!   (`RATE_LIMIT_CONCURRENCY_ENDPOINTS`): a ninth gets 429 naming the rule `concurrency`
//!   until one ends. A completion holds its place until its answer has been sent (or the
//!   client went away), however long the model takes.
//! * Tokens are metered per tenant (`RATE_LIMIT_TOKENS`, 20 000 per minute here): a
//!   completion reserves its estimate (body bytes / 4 plus `max_tokens`) before the model
//!   runs and is settled with the `usage` the model reports when the answer has been sent,
//!   so what it did not use comes back at once; a cache hit costs no tokens, and a request
//!   that asks for more than the budget gets 429 naming `tokens-tenant`.
//! * `GET /upstream-calls` tells how many times the model really ran.
//!
//! Memory backend by default; set `REDIS_URL` to share the cache between gateway instances.
//!
//! Run it:
//!
//! ```text
//! cargo run -p example-ai-gateway
//! for i in 1 2 3; do curl -s -H 'X-Tenant-ID: acme' -H 'content-type: application/json' \
//!   -d '{"model":"small","messages":[{"role":"user","content":"hi"}]}' \
//!   -D - localhost:3003/v1/chat/completions | grep -i -e x-cache -e ratelimit; done
//! curl -s localhost:3003/upstream-calls
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tenant_guard::TenantGuard;
use tenant_guard::cache::CacheLayer;
use tenant_guard::config::Config;
use tenant_guard::guard::GuardError;

/// Settings this example uses unless the environment says otherwise.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("RATE_LIMIT_TENANT", "100/1m"),
    ("RATE_LIMIT_COSTS", "POST /v1/chat/completions = 5"),
    ("RATE_LIMIT_MAX", "100000"),
    (
        "RATE_LIMIT_CONCURRENCY_ENDPOINTS",
        "tenant: POST /v1/chat/completions = 8",
    ),
    (
        "RATE_LIMIT_TOKENS",
        "tenant: POST /v1/chat/completions = 20000/1m",
    ),
    ("AI_CACHE_TTL", "30m"),
];

/// How long the simulated model takes.
pub const MODEL_LATENCY: Duration = Duration::from_millis(300);

/// The configuration: [`DEFAULTS`] overridden by `vars` (the process environment in `main`).
pub fn config(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, String> {
    let mut all: Vec<(String, String)> = DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.extend(vars);
    Config::from_vars(all).map_err(|e| e.to_string())
}

/// The gateway. Must be called inside a Tokio runtime.
pub fn app(config: &Config) -> Result<Router, GuardError> {
    // Tenant, rate limit (costs), token budget and concurrency cap, in that order: one
    // guard, one layer. The token budget sits outside the cache (hits are refunded) and the
    // cap inside the rate limit (a refused request takes no place in flight).
    let guard = TenantGuard::from_config(config.clone())?;
    let calls = Arc::new(AtomicU64::new(0));
    Ok(Router::new()
        .route(
            "/v1/chat/completions",
            post(complete).layer(CacheLayer::ai(guard.cache().clone())),
        )
        .route("/upstream-calls", get(upstream_calls))
        .with_state(calls)
        .layer(guard.layer()))
}

/// The "model": slow, and counted.
async fn complete(State(calls): State<Arc<AtomicU64>>, Json(req): Json<Value>) -> Json<Value> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(MODEL_LATENCY).await;
    let prompt = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let answer = format!("You said: {prompt}");
    // About 4 bytes per token, as the usual tokenizers count English.
    let (p, c) = (prompt.len().div_ceil(4), answer.len().div_ceil(4));
    Json(json!({
        "model": req["model"],
        "choices": [{ "message": { "role": "assistant", "content": answer } }],
        "usage": { "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c },
        "upstream_call": n,
    }))
}

async fn upstream_calls(State(calls): State<Arc<AtomicU64>>) -> String {
    calls.load(Ordering::SeqCst).to_string()
}
