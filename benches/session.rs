//! The session layer in process (no sockets): a request that never touches its session,
//! one that reads an existing session, and one that writes a value — on the memory
//! backend and on a redis-server this bench starts on a free loopback port. The baseline is
//! the same route without the layer.
//!
//! Run: `cargo bench --bench session` (needs redis-server and redis-cli on PATH).

#[path = "../tests/common/mod.rs"]
mod common;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::session::{Session, SessionLayer, SessionStore};
use tower::ServiceExt;

fn app(config: &Config) -> Router {
    let metrics = Metrics::new();
    let backend = Backend::from_config(config, &metrics).expect("backend");
    let store = SessionStore::from_config(config, backend, &metrics);
    Router::new()
        .route("/noop", get(|| async { "ok" }))
        .route(
            "/read",
            get(|s: Session| async move {
                s.get::<String>("a")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }),
        )
        .route(
            "/write",
            post(|s: Session| async move {
                let n = s.get::<u64>("n").await.ok().flatten().unwrap_or(0);
                let _ = s.insert("n", &(n + 1)).await;
                "ok"
            }),
        )
        .layer(SessionLayer::from_config(&config.session, store))
}

async fn call(app: &Router, method: &str, path: &str, cookie: Option<&str>) -> Option<String> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert!(res.status().is_success());
    res.headers().get("set-cookie").map(|v| {
        v.to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("pair")
            .to_string()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = common::RedisServer::start();
    let secret = (
        "SESSION_SECRET",
        "session-bench-secret-0123456789abcdefghij",
    );
    let setups = [
        ("memory", Config::from_vars([secret]).expect("config")),
        (
            "redis",
            Config::from_vars([secret, ("REDIS_URL", server.url().as_str())]).expect("config"),
        ),
    ];
    let mut group = c.benchmark_group("session");
    let _guard = rt.enter();
    let bare: Router = Router::new().route("/noop", get(|| async { "ok" }));
    group.bench_function("no layer", |b| {
        b.iter(|| rt.block_on(call(&bare, "GET", "/noop", None)));
    });
    for (name, config) in &setups {
        let app = app(config);
        let cookie = rt
            .block_on(call(&app, "POST", "/write", None))
            .expect("session created");
        group.bench_function(format!("{name}: untouched, with cookie"), |b| {
            b.iter(|| rt.block_on(call(&app, "GET", "/noop", Some(&cookie))));
        });
        group.bench_function(format!("{name}: read existing session"), |b| {
            b.iter(|| rt.block_on(call(&app, "GET", "/read", Some(&cookie))));
        });
        group.bench_function(format!("{name}: read + write one value"), |b| {
            b.iter(|| rt.block_on(call(&app, "POST", "/write", Some(&cookie))));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
