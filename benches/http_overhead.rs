//! Over HTTP on loopback: requests per second of the demo router with every layer
//! (tenant, session, rate limit; memory backend) next to the same routes without layers,
//! measured side by side in one run. Limits are set high so nothing is throttled: the
//! bench measures the layers' cost, not 429s.
//!
//! Run: `cargo bench --bench http_overhead`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tenant_guard::config::Config;

const CONCURRENCY: usize = 32;
const PER_TASK: usize = 100;

async fn start(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    addr
}

/// The demo's `/api/items` handler without any layer.
fn bare() -> Router {
    Router::new().route(
        "/api/items",
        get(|| async {
            axum::Json(serde_json::json!({ "tenant": "acme", "items": ["alpha", "beta", "gamma"] }))
        }),
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = Config::from_vars([
        ("RATE_LIMIT_TENANT", "1000000000/1h"),
        ("RATE_LIMIT_USER", "1000000000/1h"),
        ("RATE_LIMIT_MAX", "1000000000"),
        ("RATE_LIMIT_WINDOW", "1h"),
        ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
    ])
    .expect("config");
    let (with_layers, without) = rt.block_on(async {
        let layered = tenant_guard::demo::app(&config).expect("demo app");
        (start(layered).await, start(bare()).await)
    });
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build_http();
    let client = Arc::new(client);

    let mut g = c.benchmark_group("http_overhead");
    g.throughput(Throughput::Elements((CONCURRENCY * PER_TASK) as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    for (name, addr) in [
        ("without_layers", without),
        ("with_every_layer", with_layers),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    rt.block_on(async {
                        let mut tasks = Vec::with_capacity(CONCURRENCY);
                        for task in 0..CONCURRENCY {
                            let client = client.clone();
                            tasks.push(tokio::spawn(async move {
                                for i in 0..PER_TASK {
                                    let req =
                                        http::Request::get(format!("http://{addr}/api/items"))
                                            .header("x-tenant-id", "acme")
                                            .header(
                                                "x-user-id",
                                                format!("user-{}", (task * PER_TASK + i) % 1000),
                                            )
                                            .body(Empty::new())
                                            .expect("request");
                                    let res = client.request(req).await.expect("response");
                                    assert_eq!(res.status(), 200);
                                    let _ = res.into_body().collect().await;
                                }
                            }));
                        }
                        for t in tasks {
                            t.await.expect("task");
                        }
                    });
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
