//! The ops routes the deployments this crate replaces check: `/cache/health` (`healthy`,
//! `backend`, `message`; 200 or 503, open like the other health routes) and their fields
//! of `/cache/status` (`type`, `available`, `redisInfo.connected`, `redisInfo.keys`,
//! `latencyMs`, `hitRatio`, behind `TG_OPS_TOKEN` like the rest of the status).

mod common;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ops;
use tower::ServiceExt;

const TOKEN: &str = "ops-compat-token-0123456789abcdef0123456789";

fn app(vars: &[(&str, &str)]) -> (Router, Backend) {
    let config = Config::from_vars(vars.iter().copied()).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let router = ops::router_with_token(backend.clone(), metrics, config.ops.token.clone());
    (router, backend)
}

async fn get(app: &Router, path: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn memory_backend_answers_the_seeds_checks() {
    let (app, _) = app(&[]);
    let (status, body) = get(&app, "/cache/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({ "healthy": true, "backend": "memory", "message": "Cache is healthy using memory backend" })
    );
    let (_, body) = get(&app, "/cache/status", None).await;
    assert_eq!(
        (body["type"].as_str(), body["available"].as_bool()),
        (Some("memory"), Some(true)),
        "{body}"
    );
    // No cache traffic yet: no ratio (null), but the field is there.
    assert!(
        body["redisInfo"].is_null() && body.get("hitRatio").is_some(),
        "{body}"
    );
    // Ours stay beside them.
    assert_eq!(body["backend"], "memory");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_health_follows_the_server_and_status_needs_the_token() {
    let mut server = common::RedisServer::start();
    let url = server.url();
    let (app, backend) = app(&[
        ("REDIS_URL", url.as_str()),
        ("TG_OPS_TOKEN", TOKEN),
        ("REDIS_COMMAND_TIMEOUT", "500ms"),
    ]);
    let key = tenant_guard::keys::Keys::default()
        .session(&tenant_guard::tenant::TenantId::new("acme").unwrap(), "s");
    backend.set(&key, b"v", None).await.unwrap();
    let (status, body) = get(&app, "/cache/health", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "health stays open without the token"
    );
    assert_eq!(
        body,
        serde_json::json!({ "healthy": true, "backend": "redis", "message": "Cache is healthy using redis backend" })
    );
    let (status, _) = get(&app, "/cache/status", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, body) = get(&app, "/cache/status", Some(TOKEN)).await;
    assert_eq!(
        (body["type"].as_str(), body["available"].as_bool()),
        (Some("redis"), Some(true)),
        "{body}"
    );
    assert_eq!(body["redisInfo"]["connected"], true, "{body}");
    assert_eq!(body["redisInfo"]["keys"], 1, "{body}");
    assert!(body["latencyMs"].is_number(), "{body}");

    server.kill();
    let (status, body) = get(&app, "/cache/health", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        (body["healthy"].as_bool(), body["backend"].as_str()),
        (Some(false), Some("redis")),
        "{body}"
    );
    let (_, body) = get(&app, "/cache/status", Some(TOKEN)).await;
    assert_eq!(body["available"], false, "{body}");
    assert_eq!(body["redisInfo"]["connected"], false, "{body}");
}
