//! The cache's hot paths: key hashing of a 4 KB JSON body, and a cached response through
//! `CacheLayer` in process (no sockets) — an L1 hit (Redis backend, entry in the
//! in-process L1), an L2 hit (Redis, L1 off), a hit on the memory backend — next to the same
//! route without the layer. The Redis server is started by the bench on a free loopback
//! port.
//!
//! Run: `cargo bench --bench cache` (needs redis-server and redis-cli on PATH).

#[path = "../tests/common/mod.rs"]
mod common;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tenant_guard::backend::Backend;
use tenant_guard::cache::{Cache, CacheLayer, HttpKeyInput, http_key};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tower::ServiceExt;

/// A chat-completion request of about 4 KB.
fn body_4k() -> Vec<u8> {
    let mut messages = Vec::new();
    loop {
        let i = messages.len();
        messages.push(serde_json::json!({
            "role": if i % 2 == 0 { "user" } else { "assistant" },
            "content": format!("message number {i} with some text in it, padded {}", "x".repeat(40)),
        }));
        let v = serde_json::json!({ "model": "gpt-4o", "temperature": 0.2, "max_tokens": 512, "stream": true, "messages": messages });
        let bytes = serde_json::to_vec(&v).expect("json");
        if bytes.len() >= 4000 {
            return bytes;
        }
    }
}

fn report_json() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "tenant": "acme", "day": "2026-11-22", "rows": 42 }))
}

fn routed(config: &Config, layered: bool) -> Router {
    let metrics = Metrics::new();
    let backend = Backend::from_config(config, &metrics).expect("backend");
    let cache = Cache::from_config(config, backend, &metrics);
    let r = Router::new().route("/api/reports/{day}", get(|| async { report_json() }));
    if layered {
        r.route_layer(CacheLayer::query(cache))
    } else {
        r
    }
}

async fn call(app: &Router) -> Option<String> {
    let res = app
        .clone()
        .oneshot(
            Request::get("/api/reports/2026-11-22")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert!(res.status().is_success());
    res.headers()
        .get("x-cache")
        .map(|v| v.to_str().expect("ascii").to_string())
}

fn bench(c: &mut Criterion) {
    let body = body_4k();
    let excluded = vec!["stream".to_string()];
    let mut g = c.benchmark_group("cache");
    g.bench_function(format!("http_key_json_body_{}B", body.len()), |b| {
        b.iter(|| {
            http_key(&HttpKeyInput {
                method: "POST",
                route: "/api/ai/complete /api/ai/complete",
                query: None,
                vary: vec![],
                body: &body,
                json: true,
                excluded_fields: &excluded,
                caller: None,
            })
        });
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let server = common::RedisServer::start();
    let url = server.url();
    let setups = [
        ("no layer", Config::default(), false),
        ("memory hit", Config::default(), true),
        (
            "redis L1 hit",
            Config::from_vars([("REDIS_URL", url.as_str())]).expect("config"),
            true,
        ),
        (
            "redis L2 hit (L1 off)",
            Config::from_vars([("REDIS_URL", url.as_str()), ("CACHE_L1_MAX_BYTES", "0")])
                .expect("config"),
            true,
        ),
    ];
    for (name, config, layered) in &setups {
        let app = routed(config, *layered);
        // Fill, then let the L1 subscription come up (it flushes L1 once when live).
        rt.block_on(call(&app));
        rt.block_on(tokio::time::sleep(std::time::Duration::from_millis(300)));
        rt.block_on(call(&app));
        let x = rt.block_on(call(&app));
        if *layered {
            assert_eq!(x.as_deref(), Some("HIT"), "{name}");
        }
        g.bench_function(*name, |b| b.iter(|| rt.block_on(call(&app))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
