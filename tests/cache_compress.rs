//! Compressed entries (`CACHE_COMPRESS_MIN_BYTES`) on a real redis-server: realistic JSON,
//! a streamed AI answer and a whole one are stored zstd-compressed, served byte for byte by
//! another instance (from Redis, not its L1), and take less Redis memory (`MEMORY USAGE`,
//! printed: `cargo test --test cache_compress -- --nocapture`); small entries and
//! compression turned off store the body as it is.

mod common;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::cache::{Cache, CacheLayer, CacheStatus};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::tenant::TenantLayer;

/// A tiny xorshift: the same "text" every run.
struct Rng(u64);

impl Rng {
    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        words[(self.0 % words.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
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
    "served",
    "from",
    "seven",
    "until",
    "ten",
    "in",
    "lobby",
    "restaurant",
    "please",
    "contact",
    "front",
    "desk",
    "if",
    "you",
    "need",
    "late",
    "checkout",
    "parking",
    "available",
    "on",
    "request",
    "our",
    "spa",
    "opens",
    "at",
    "nine",
    "towels",
    "are",
    "provided",
    "by",
    "pool",
    "wifi",
    "password",
    "printed",
    "card",
];

/// ~300 words of generated prose.
fn prose() -> Vec<&'static str> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    (0..300).map(|_| rng.pick(WORDS)).collect()
}

/// A hotel's room list: 150 rooms as a JSON API returns them.
fn rooms_json() -> String {
    let rooms: Vec<serde_json::Value> = (0..150)
        .map(|i| {
            let kind = ["single", "double", "suite"][i % 3];
            let status = ["clean", "occupied", "dirty", "out-of-order"][i % 4];
            serde_json::json!({
                "id": format!("room-{:04}", 100 + i),
                "floor": 1 + i / 20,
                "type": kind,
                "status": status,
                "beds": 1 + i % 2,
                "rate": { "currency": "EUR", "amount": 89 + (i % 7) * 10 },
                "updatedAt": format!("2026-12-06T08:{:02}:00Z", i % 60),
            })
        })
        .collect();
    serde_json::json!({ "tenant": "hotel-a", "rooms": rooms }).to_string()
}

/// A streamed chat completion: one OpenAI-style chunk per word, then `[DONE]`.
fn ai_stream() -> String {
    let mut out = String::new();
    for w in prose() {
        let chunk = serde_json::json!({
            "id": "chatcmpl-9x2", "object": "chat.completion.chunk", "created": 1765000000,
            "model": "gpt-4o-mini",
            "choices": [{ "index": 0, "delta": { "content": format!("{w} ") } }],
        });
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// The same answer whole.
fn ai_whole() -> String {
    serde_json::json!({
        "id": "chatcmpl-9x2", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": prose().join(" ") } }],
        "usage": { "prompt_tokens": 40, "completion_tokens": 300, "total_tokens": 340 },
    })
    .to_string()
}

fn app(url: &str, compress: &str) -> Router {
    let config =
        Config::from_vars([("REDIS_URL", url), ("CACHE_COMPRESS_MIN_BYTES", compress)]).unwrap();
    let metrics = Metrics::new();
    let cache = Cache::from_config(
        &config,
        Backend::from_config(&config, &metrics).unwrap(),
        &metrics,
    );
    Router::new()
        .route(
            "/api/rooms",
            get(|| async { ([("content-type", "application/json")], rooms_json()) }),
        )
        .route("/api/small", get(|| async { "{\"ok\":true}" }))
        .route_layer(CacheLayer::query(cache.clone()))
        .merge(
            Router::new()
                .route(
                    "/api/ai/complete",
                    post(|body: String| async move {
                        if body.contains("\"stream\":true") {
                            ([("content-type", "text/event-stream")], ai_stream())
                        } else {
                            ([("content-type", "application/json")], ai_whole())
                        }
                    }),
                )
                .route_layer(CacheLayer::ai(cache)),
        )
        .layer(TenantLayer::from_config(&Default::default()))
}

fn request(what: &str) -> http::Request<Body> {
    let b = http::Request::builder().header("x-tenant-id", what);
    match what {
        "rooms" => b.uri("/api/rooms").body(Body::empty()),
        "small" => b.uri("/api/small").body(Body::empty()),
        _ => b
            .method("POST")
            .uri("/api/ai/complete")
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"model":"gpt-4o-mini","prompt":"hotel info","stream":{}}}"#,
                what == "ai-stream"
            ))),
    }
    .unwrap()
}

async fn send(app: &Router, what: &str) -> (CacheStatus, Vec<u8>) {
    let res = app.clone().oneshot(request(what)).await.unwrap();
    assert_eq!(res.status(), 200);
    let status = *res.extensions().get::<CacheStatus>().unwrap();
    (
        status,
        res.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

/// `MEMORY USAGE`, `STRLEN` and the value (as text) of the one cache entry of tenant
/// `what`.
fn stored(server: &common::RedisServer, what: &str) -> (u64, u64, String) {
    let keys = server.cli(&["--scan", "--pattern", &format!("*{{{what}}}*")]);
    let key = keys
        .lines()
        .find(|k| !k.contains("cache-gen") && !k.contains("lock"))
        .unwrap_or_else(|| panic!("no entry of {what} in {keys}"));
    let n = |args: &[&str]| server.cli(args).parse::<u64>().unwrap();
    (
        n(&["MEMORY", "USAGE", key, "SAMPLES", "0"]),
        n(&["STRLEN", key]),
        server.cli(&["GET", key]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_stored_compressed_and_served_whole() {
    let payloads = ["rooms", "ai-stream", "ai-whole", "small"];
    let mut sizes = Vec::new();
    for compress in ["0", "1KiB"] {
        let server = common::RedisServer::start();
        let (a, b) = (app(&server.url(), compress), app(&server.url(), compress));
        for what in payloads {
            let (status, fresh) = send(&a, what).await;
            assert_eq!(status, CacheStatus::Miss, "{what}");
            // Another instance: its L1 is empty, so this is read from Redis and decoded.
            let (status, hit) = send(&b, what).await;
            assert_eq!(status, CacheStatus::HitL2, "{what}");
            assert_eq!(hit, fresh, "{what}: served byte for byte");
            let (memory, len, raw) = stored(&server, what);
            let plain = raw.contains(String::from_utf8_lossy(&fresh).trim());
            sizes.push((compress, what, fresh.len(), memory, len, plain));
        }
    }
    eprintln!("entry             body bytes   Redis MEMORY USAGE (off -> 1KiB)   saved");
    for what in payloads {
        let off = sizes.iter().find(|s| s.0 == "0" && s.1 == what).unwrap();
        let on = sizes.iter().find(|s| s.0 == "1KiB" && s.1 == what).unwrap();
        eprintln!(
            "{what:<16} {:>11} {:>14} -> {:<10} {:>5.1}%",
            off.2,
            off.3,
            on.3,
            100.0 * (1.0 - on.3 as f64 / off.3 as f64)
        );
        assert!(off.5, "{what}: stored as it is when compression is off");
        if what == "small" {
            // (Not by its length: the generations it carries are random, of 13 to 16 digits.)
            assert!(on.5, "a small entry is stored as it is");
        } else {
            assert!(!on.5, "{what}: stored compressed");
            assert!(
                on.4 * 2 < off.4,
                "{what}: {} bytes compressed vs {} plain",
                on.4,
                off.4
            );
        }
    }
}
