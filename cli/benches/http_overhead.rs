//! Over HTTP on loopback: requests per second of the demo router with every layer
//! (tenant, session, rate limit; memory backend) next to the same routes without layers,
//! measured side by side in one run. Limits are set high so nothing is throttled: the
//! bench measures the layers' cost, not 429s.
//!
//! Run: `cargo bench --bench http_overhead`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

/// One batch: CONCURRENCY keep-alive clients sending PER_TASK requests each.
async fn batch(
    client: &Arc<Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>>,
    addr: SocketAddr,
) {
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for task in 0..CONCURRENCY {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let req = http::Request::get(format!("http://{addr}/api/items"))
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
        let layered = tenant_guard_cli::demo::app(&config).expect("demo app");
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
                    rt.block_on(batch(&client, addr));
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();

    // Side by side, interleaved: batches alternate between the two servers, so drift in
    // the machine's speed (a shared VM) hits both alike. The median of the per-round
    // ratios is the figure to quote.
    let mut ratios = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        rt.block_on(batch(&client, without));
        let bare = t.elapsed();
        let t = Instant::now();
        rt.block_on(batch(&client, with_layers));
        let layered = t.elapsed();
        ratios.push(bare.as_secs_f64() / layered.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let n = (CONCURRENCY * PER_TASK) as f64;
    println!(
        "interleaved, 15 rounds of {n} requests each: with every layer = {:.1}% of the \
         requests/s without (median; min {:.1}%, max {:.1}%)",
        ratios[7] * 100.0,
        ratios[0] * 100.0,
        ratios[14] * 100.0
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
