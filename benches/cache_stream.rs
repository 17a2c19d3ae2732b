//! Streamed AI answers through the cache, in process (no sockets):
//!
//! * **time to first byte** of a streamed miss (`text/event-stream`, 20 events) through
//!   `CacheLayer` — memory backend, and Redis — against the same route without the layer,
//!   and of a streamed hit (replayed from L1 and from Redis);
//! * **compression**: the bytes a streamed answer of 300 chunks and a 150-room JSON list
//!   take in Redis (`STRLEN`, `MEMORY USAGE`) with `CACHE_COMPRESS_MIN_BYTES` off and at
//!   its default, printed, and the time of an L2 hit of each (decompression included).
//!
//! The Redis server is started by the bench on a free loopback port.
//! Run: `cargo bench --bench cache_stream` (needs redis-server and redis-cli on PATH).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::cache::{Cache, CacheLayer};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::tenant::TenantLayer;

/// One OpenAI-style chunk per word of a fixed text, then `[DONE]`.
fn chunks(words: usize) -> Vec<String> {
    const TEXT: &[&str] = &[
        "the",
        "guest",
        "room",
        "is",
        "ready",
        "for",
        "check-in",
        "after",
        "housekeeping",
        "has",
        "cleaned",
        "it",
        "and",
        "breakfast",
        "is",
        "served",
        "from",
        "seven",
        "in",
        "the",
        "lobby",
        "restaurant",
        "please",
        "ask",
        "the",
        "front",
        "desk",
    ];
    let mut out: Vec<String> = (0..words)
        .map(|i| {
            let chunk = serde_json::json!({
                "id": "chatcmpl-9x2", "object": "chat.completion.chunk", "created": 1765000000,
                "model": "gpt-4o-mini",
                "choices": [{ "index": 0, "delta": { "content": format!("{} ", TEXT[(i * 7) % TEXT.len()]) } }],
            });
            format!("data: {chunk}\n\n")
        })
        .collect();
    out.push("data: [DONE]\n\n".into());
    out
}

fn rooms_json() -> String {
    let rooms: Vec<serde_json::Value> = (0..150)
        .map(|i| {
            let kind = ["single", "double", "suite"][i % 3];
            let status = ["clean", "occupied", "dirty", "out-of-order"][i % 4];
            serde_json::json!({
                "id": format!("room-{:04}", 100 + i), "floor": 1 + i / 20,
                "type": kind,
                "status": status,
                "beds": 1 + i % 2, "rate": { "currency": "EUR", "amount": 89 + (i % 7) * 10 },
                "updatedAt": format!("2026-12-06T08:{:02}:00Z", i % 60),
            })
        })
        .collect();
    serde_json::json!({ "tenant": "hotel-a", "rooms": rooms }).to_string()
}

/// `POST /api/ai/complete` answering an event stream of `events` chunks (one frame each),
/// `POST /api/rooms` a JSON list; behind `CacheLayer::ai` when `cache` is given.
fn app(cache: Option<Cache>, events: usize) -> Router {
    let stream = chunks(events);
    let rooms = rooms_json();
    let ai = Router::new().route(
        "/api/ai/complete",
        post(move || {
            let stream = stream.clone();
            async move {
                let frames = futures_util::stream::iter(
                    stream
                        .into_iter()
                        .map(|c| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(c))),
                );
                (
                    [(http::header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(frames),
                )
            }
        }),
    );
    let rooms = Router::new().route(
        "/api/rooms",
        post(move || {
            let rooms = rooms.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], rooms) }
        }),
    );
    let (ai, rooms) = match cache {
        Some(c) => (
            ai.route_layer(CacheLayer::ai(c.clone())),
            rooms.route_layer(CacheLayer::query(c)),
        ),
        None => (ai, rooms),
    };
    ai.merge(rooms)
        .layer(TenantLayer::from_config(&Default::default()))
}

fn cache(vars: &[(&str, &str)]) -> Cache {
    let config = Config::from_vars(vars.iter().copied()).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    Cache::from_config(&config, backend, &metrics)
}

fn request(path: &str, tenant: &str, prompt: u64) -> Request<Body> {
    Request::post(path)
        .header("x-tenant-id", tenant)
        .header("content-type", "application/json")
        .body(Body::from(format!(
            r#"{{"model":"gpt-4o-mini","stream":true,"prompt":"question {prompt}"}}"#
        )))
        .expect("request")
}

/// Sends one request: the time to its first body byte, its `X-Cache`, and (read to the end,
/// not timed) its body's length.
async fn first_byte(app: &Router, req: Request<Body>) -> (Duration, String, usize) {
    let start = Instant::now();
    let res = app.clone().oneshot(req).await.expect("infallible");
    assert!(res.status().is_success());
    let x = res
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    let mut body = res.into_body();
    let mut len = 0;
    let mut first = None;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.expect("frame").data_ref() {
            first.get_or_insert_with(|| start.elapsed());
            len += d.len();
        }
    }
    (first.expect("a body"), x, len)
}

/// Unique prompts: every timed miss is a new key.
static PROMPT: AtomicU64 = AtomicU64::new(0);

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let server = common::RedisServer::start();
    let url = server.url();
    let redis = [("REDIS_URL", url.as_str())];
    let apps = [
        ("no layer", app(None, 20)),
        ("miss, memory", app(Some(cache(&[])), 20)),
        ("miss, redis", app(Some(cache(&redis)), 20)),
    ];
    // Let the Redis cache's subscription come up (it flushes L1 once when live).
    rt.block_on(tokio::time::sleep(Duration::from_millis(300)));

    let mut g = c.benchmark_group("cache_stream/ttfb");
    g.measurement_time(Duration::from_secs(5));
    for (name, app) in &apps {
        let (_, x, _) = rt.block_on(first_byte(
            app,
            request(
                "/api/ai/complete",
                "acme",
                PROMPT.fetch_add(1, Ordering::Relaxed),
            ),
        ));
        assert_eq!(x, if *name == "no layer" { "" } else { "MISS" }, "{name}");
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let n = PROMPT.fetch_add(1, Ordering::Relaxed);
                        total += first_byte(app, request("/api/ai/complete", "acme", n))
                            .await
                            .0;
                    }
                    total
                })
            })
        });
    }
    // Hits: one key, replayed (from L1 with Redis; from Redis with L1 off).
    let hits = [
        ("hit, redis L1", app(Some(cache(&redis)), 20)),
        (
            "hit, redis L2 (L1 off)",
            app(
                Some(cache(&[
                    ("REDIS_URL", url.as_str()),
                    ("CACHE_L1_MAX_BYTES", "0"),
                ])),
                20,
            ),
        ),
    ];
    rt.block_on(tokio::time::sleep(Duration::from_millis(300)));
    for (name, app) in &hits {
        let fill = |tenant| request("/api/ai/complete", tenant, 0);
        rt.block_on(first_byte(app, fill("hits")));
        rt.block_on(first_byte(app, fill("hits")));
        assert_eq!(
            rt.block_on(first_byte(app, fill("hits"))).1,
            "HIT",
            "{name}"
        );
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += first_byte(app, fill("hits")).await.0;
                    }
                    total
                })
            })
        });
    }
    g.finish();

    // Compression: the same answers stored with it off and on, each read back from Redis.
    let mut g = c.benchmark_group("cache_stream/compression");
    eprintln!(
        "\nentry (tenant)             body bytes  STRLEN off -> on   MEMORY USAGE off -> on   saved"
    );
    for (what, path) in [("ai-stream", "/api/ai/complete"), ("rooms", "/api/rooms")] {
        let mut sizes = Vec::new();
        for min in ["0", "1KiB"] {
            let tenant = format!("{what}-{}", if min == "0" { "plain" } else { "zstd" });
            let app = app(
                Some(cache(&[
                    ("REDIS_URL", url.as_str()),
                    ("CACHE_L1_MAX_BYTES", "0"),
                    ("CACHE_COMPRESS_MIN_BYTES", min),
                ])),
                300,
            );
            let (_, x, len) = rt.block_on(first_byte(&app, request(path, &tenant, 0)));
            assert_eq!(x, "MISS");
            let (_, x, again) = rt.block_on(first_byte(&app, request(path, &tenant, 0)));
            assert_eq!((x.as_str(), again), ("HIT", len), "{tenant}: served whole");
            let keys = server.cli(&["--scan", "--pattern", &format!("*{{{tenant}}}*")]);
            let key = keys
                .lines()
                .find(|k| !k.contains("cache-gen") && !k.contains("lock"))
                .expect("the entry")
                .to_string();
            let n = |args: &[&str]| server.cli(args).parse::<u64>().expect("a number");
            sizes.push((
                len,
                n(&["STRLEN", &key]),
                n(&["MEMORY", "USAGE", &key, "SAMPLES", "0"]),
            ));
            let label = format!(
                "L2 hit {what} ({len} B), {}",
                if min == "0" { "plain" } else { "zstd" }
            );
            g.bench_function(label, |b| {
                b.iter(|| rt.block_on(first_byte(&app, request(path, &tenant, 0))))
            });
        }
        let (off, on) = (sizes[0], sizes[1]);
        eprintln!(
            "{what:<26} {:>10} {:>8} -> {:<8} {:>10} -> {:<10} {:>5.1}%",
            off.0,
            off.1,
            on.1,
            off.2,
            on.2,
            100.0 * (1.0 - on.2 as f64 / off.2 as f64)
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
