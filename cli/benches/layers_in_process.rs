//! The demo router with every layer (tenant, session, rate limit; memory backend) driven
//! in process as a tower service, next to the same handler without layers: the layers'
//! own cost per request, without sockets.
//!
//! Run: `cargo bench --bench layers_in_process`

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use std::net::SocketAddr;
use tower::ServiceExt;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let config = tenant_guard::config::Config::from_vars([
        ("RATE_LIMIT_TENANT", "1000000000/1h"),
        ("RATE_LIMIT_USER", "1000000000/1h"),
        ("RATE_LIMIT_MAX", "1000000000"),
        ("RATE_LIMIT_WINDOW", "1h"),
        ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
    ])
    .unwrap();
    let layered = tenant_guard_cli::demo::app(&config).unwrap();
    let bare: Router = Router::new().route(
        "/api/items",
        get(|| async {
            axum::Json(serde_json::json!({ "tenant": "acme", "items": ["alpha", "beta", "gamma"] }))
        }),
    );
    let mut i = 0u64;
    for (name, app) in [("bare", bare), ("layered", layered)] {
        c.bench_function(&format!("layers_in_process/{name}"), |b| {
            b.iter(|| {
                i += 1;
                let mut req = http::Request::get("/api/items")
                    .header("x-tenant-id", "acme")
                    .header("x-user-id", format!("user-{}", i % 1000))
                    .body(Body::empty())
                    .unwrap();
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
                rt.block_on(async {
                    let r = app.clone().oneshot(req).await.unwrap();
                    assert!(r.status().is_success());
                    let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                })
            })
        });
    }
}
criterion_group!(benches, bench);
criterion_main!(benches);
