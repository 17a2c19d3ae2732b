//! Regression tests for what a hostile client tried against the layers (one test or more per
//! finding of the hostile-input review): each failed before its fix.
//! The tests of the review that drive the demo app are in `cli/tests/hostile_demo.rs`, those
//! about the cache in `tests/hostile_cache.rs`.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};

/// An app with the rate-limit layer built from `vars`, as `from_config` users build it.
fn limited_app(vars: &[(&str, &str)]) -> Router {
    let config = Config::from_vars(vars.iter().copied()).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    Router::new()
        .route("/api/reports", get(|| async { "report" }))
        .route("/api/other", get(|| async { "other" }))
        .layer(RateLimitLayer::from_config(&config, limiter))
}

fn request(method: &str, path: &str, peer: &str, headers: &[(&str, &str)]) -> http::Request<Body> {
    let mut b = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    req
}

async fn statuses(app: &Router, reqs: Vec<http::Request<Body>>) -> Vec<u16> {
    let mut out = Vec::new();
    for r in reqs {
        out.push(app.clone().oneshot(r).await.unwrap().status().as_u16());
    }
    out
}

/// Finding 6: `HEAD` (axum runs the `GET` handler) escaped `GET` endpoint rules.
#[tokio::test]
async fn head_counts_as_get_for_endpoint_rules_and_costs() {
    let app = limited_app(&[
        ("RATE_LIMIT_ENDPOINTS", "reports: GET /api/reports = 2/1m"),
        ("RATE_LIMIT_MAX", "1000"),
    ]);
    let peer = "198.51.100.1:4000";
    let got = statuses(
        &app,
        (0..5)
            .map(|_| request("HEAD", "/api/reports", peer, &[]))
            .collect(),
    )
    .await;
    assert_eq!(got, [200, 200, 429, 429, 429]);
    // HEAD and GET share the counter: the GET that follows is denied too.
    let got = statuses(&app, vec![request("GET", "/api/reports", peer, &[])]).await;
    assert_eq!(got, [429]);

    // Costs: a HEAD costs what the GET costs.
    let app = limited_app(&[
        ("RATE_LIMIT_MAX", "6"),
        ("RATE_LIMIT_COSTS", "GET /api/reports = 3"),
    ]);
    let got = statuses(
        &app,
        (0..3)
            .map(|_| request("HEAD", "/api/reports", peer, &[]))
            .collect(),
    )
    .await;
    assert_eq!(got, [200, 200, 429]);
}

/// Finding 2: behind a trusted proxy that appends `X-Forwarded-For`, a client-sent
/// `Forwarded` header minted a fresh identity per request.
#[tokio::test]
async fn client_forwarded_header_cannot_mint_identities_behind_an_xff_proxy() {
    let app = limited_app(&[
        ("RATE_LIMIT_MAX", "3"),
        ("RATE_LIMIT_WINDOW", "1m"),
        ("RATE_LIMIT_TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    let reqs = (0..8)
        .map(|i| {
            let fake = format!("for=192.0.2.{i}");
            request(
                "GET",
                "/api/reports",
                "10.0.0.1:4000",
                &[("forwarded", &fake), ("x-forwarded-for", "203.0.113.7")],
            )
        })
        .collect();
    let got = statuses(&app, reqs).await;
    assert_eq!(got, [200, 200, 200, 429, 429, 429, 429, 429]);

    // With `forwarded` chosen, X-Forwarded-For is the one ignored.
    let app = limited_app(&[
        ("RATE_LIMIT_MAX", "3"),
        ("RATE_LIMIT_WINDOW", "1m"),
        ("RATE_LIMIT_TRUSTED_PROXIES", "10.0.0.0/8"),
        ("RATE_LIMIT_FORWARDED_HEADER", "forwarded"),
    ]);
    let reqs = (0..8)
        .map(|i| {
            let fake = format!("192.0.2.{i}");
            request(
                "GET",
                "/api/reports",
                "10.0.0.1:4000",
                &[("x-forwarded-for", &fake), ("forwarded", "for=203.0.113.7")],
            )
        })
        .collect();
    let got = statuses(&app, reqs).await;
    assert_eq!(got, [200, 200, 200, 429, 429, 429, 429, 429]);
}

/// Finding 3: garbage in `X-Forwarded-For` from a trusted proxy counted against the
/// proxy's own address, so a few such requests throttled every direct client.
#[tokio::test]
async fn garbage_forwarding_does_not_throttle_the_proxy_address() {
    let app = limited_app(&[
        ("RATE_LIMIT_MAX", "2"),
        ("RATE_LIMIT_WINDOW", "1m"),
        ("RATE_LIMIT_TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    let proxy = "10.0.0.1:4000";
    let garbage = ["unknown", "not-an-ip", "caf\u{e9}", ""];
    let mut reqs = Vec::new();
    for g in garbage {
        let mut r = request("GET", "/api/reports", proxy, &[]);
        r.headers_mut().insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(g.as_bytes()).unwrap(),
        );
        reqs.push(r);
    }
    // The garbage senders share one identity: 2 admitted, the rest denied.
    assert_eq!(statuses(&app, reqs).await, [200, 200, 429, 429]);
    // The proxy's own requests (no forwarding header) and a real client behind it are
    // untouched.
    let got = statuses(
        &app,
        vec![
            request("GET", "/api/reports", proxy, &[]),
            request(
                "GET",
                "/api/reports",
                proxy,
                &[("x-forwarded-for", "198.51.100.20")],
            ),
        ],
    )
    .await;
    assert_eq!(got, [200, 200]);
}

#[test]
fn forwarded_header_variable_is_validated() {
    let err = Config::from_vars([("RATE_LIMIT_FORWARDED_HEADER", "via")]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("RATE_LIMIT_FORWARDED_HEADER"), "{text}");
    assert!(text.contains("x-real-ip"), "{text}");
    let cfg = Config::from_vars([("RATE_LIMIT_FORWARDED_HEADER", "X-Real-IP")]).unwrap();
    assert!(
        cfg.effective()
            .iter()
            .any(|(k, v)| k == "RATE_LIMIT_FORWARDED_HEADER" && v == "x-real-ip")
    );
}

/// A compact limiter of `max` per minute on `server`, every answer from the script (no
/// local deny cache).
fn compact_limiter(server: &common::RedisServer, max: u32) -> tenant_guard::ratelimit::RateLimiter {
    let (limiter, _backend, _metrics) = common::build_limiter(vec![
        ("REDIS_URL".into(), server.url()),
        ("RATE_LIMIT_MAX".into(), max.to_string()),
        ("RATE_LIMIT_WINDOW".into(), "1m".into()),
        ("RATE_LIMIT_ALGORITHM".into(), "compact".into()),
        ("RATE_LIMIT_OUTAGE".into(), "closed".into()),
        ("RATE_LIMIT_DENY_CACHE".into(), "0".into()),
    ]);
    limiter
}

/// Rewrites the compact counter at `key` as a node whose clock is `buckets` buckets ahead
/// would have written it (layout in lua/ratelimit.lua: a width byte, then the newest
/// bucket's index, u32 LE); returns that index.
async fn move_counter_ahead(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    buckets: u32,
) -> u32 {
    let raw: Vec<u8> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    assert!(raw.len() >= 9, "compact counter layout: {raw:?}");
    let ahead = u32::from_le_bytes(raw[1..5].try_into().unwrap()).wrapping_add(buckets);
    let mut moved = raw.clone();
    moved[1..5].copy_from_slice(&ahead.to_le_bytes());
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(moved)
        .arg("KEEPTTL")
        .query_async(conn)
        .await
        .unwrap();
    ahead
}

/// Finding 11: a Redis clock step backwards (failover to a node whose clock is behind)
/// wrapped the compact counter's bucket shift and wiped the counter. The test writes the
/// counter as a node with a clock 10 s ahead would have, then checks on this node.
#[tokio::test]
async fn compact_counter_survives_a_clock_step_back() {
    use tenant_guard::ratelimit::{Identity, Source};
    let server = common::RedisServer::start();
    let limiter = compact_limiter(&server, 3);
    let t = tenant_guard::tenant::TenantId::new("clock").unwrap();
    let who = Identity::User("u-1".into());
    let check = common::get_check(&t, &who, "/x", None);
    for _ in 0..3 {
        let d = limiter.check(&check).await;
        assert!(d.allowed);
        assert_eq!(d.source, Source::Redis);
    }
    assert!(!limiter.check(&check).await.allowed);

    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // 60 s / 30 buckets = 2 s a bucket: five buckets = 10 s ahead.
    move_counter_ahead(
        &mut conn,
        "tg:ratelimit:{clock}:per-endpoint:user:u-1:GET /x",
        5,
    )
    .await;
    let d = limiter.check(&check).await;
    assert_eq!(d.source, Source::Redis);
    assert!(!d.allowed, "the clock step restored the quota: {d:?}");
    assert_eq!(d.rules[0].remaining, 0);
}

/// A counter written by a node whose clock is ahead, then charged here: the script stays on
/// the counter's (later) bucket. It once moved to as many buckets *before* this clock
/// instead, and since the in-place write rewrites the bucket index, the next check found
/// the counts out of the window: 11 of 20 admitted where 5 units were left.
#[tokio::test]
async fn an_admission_on_a_counter_ahead_of_the_clock_keeps_its_counts() {
    use tenant_guard::ratelimit::{Identity, Source};
    let server = common::RedisServer::start();
    let limiter = compact_limiter(&server, 10);
    let t = tenant_guard::tenant::TenantId::new("ahead").unwrap();
    let who = Identity::User("u-1".into());
    let check = common::get_check(&t, &who, "/x", None);
    for _ in 0..5 {
        assert!(limiter.check(&check).await.allowed);
    }
    let key = "tg:ratelimit:{ahead}:per-endpoint:user:u-1:GET /x";
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // 2 s buckets: 40 buckets (80 s) ahead, beyond the whole 60 s window.
    let ahead = move_counter_ahead(&mut conn, key, 40).await;
    let mut admitted = 0;
    for _ in 0..20 {
        let d = limiter.check(&check).await;
        assert_eq!(d.source, Source::Redis);
        admitted += usize::from(d.allowed);
    }
    assert_eq!(admitted, 5, "10 per window, 5 counted before");
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stored = u32::from_le_bytes(raw[1..5].try_into().unwrap());
    assert_eq!(stored, ahead, "the counter stays on its own bucket");
}

/// Finding 4: `REDIS_URL=unix:///...sock?pass=...` printed the password in `config`,
/// `config --json` and `/cache/status`.
#[tokio::test]
async fn credentials_in_any_url_part_are_redacted() {
    let urls = [
        "unix:///run/redis/redis.sock?db=1&pass=hunter2-secret&user=appuser-secret",
        "redis+unix:///run/redis.sock?password=hunter2-secret",
        "redis://appuser-secret:hunter2-secret@127.0.0.1:1/0",
        "redis://127.0.0.1:1/0?password=hunter2-secret",
    ];
    for url in urls {
        let config = Config::from_vars([("REDIS_URL", url)]).unwrap();
        let effective = format!("{:?}", config.effective());
        let debug = format!("{config:?}");
        for text in [&effective, &debug] {
            assert!(!text.contains("hunter2"), "{url}: {text}");
            assert!(!text.contains("appuser"), "{url}: {text}");
        }
        let metrics = Metrics::new();
        let backend = Backend::from_config(&config, &metrics).unwrap();
        let ops = tenant_guard::ops::router::<()>(backend, metrics);
        for route in ["/cache/status", "/health/ready", "/health", "/metrics"] {
            let res = ops
                .clone()
                .oneshot(http::Request::get(route).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(!body.contains("hunter2"), "{url} {route}: {body}");
            assert!(!body.contains("appuser"), "{url} {route}: {body}");
        }
    }
}

/// Finding 15: the open readiness route shows no address and no error text.
#[tokio::test]
async fn readiness_shows_no_address_or_error_text() {
    let server = common::RedisServer::start();
    let url = server.url().replace("redis://", "redis://:pw-secret@");
    let config = Config::from_vars([
        ("REDIS_URL", url.as_str()),
        ("REDIS_CONNECT_TIMEOUT", "200ms"),
        ("REDIS_COMMAND_TIMEOUT", "200ms"),
    ])
    .unwrap();
    drop(server); // nothing listens there any more
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let ops = tenant_guard::ops::router::<()>(backend, metrics);
    for _ in 0..3 {
        let res = ops
            .clone()
            .oneshot(
                http::Request::get("/health/ready")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            !body.contains("127.0.0.1") && !body.contains("pw-secret"),
            "{body}"
        );
        assert!(!body.contains("error"), "{body}");
    }
    // The failures are counted where operators look for them (the README's metric names).
    let res = ops
        .clone()
        .oneshot(http::Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let errors = text
        .lines()
        .find(|l| l.starts_with("tenant_guard_redis_command_errors_total{"))
        .unwrap_or_else(|| panic!("no command error counter in:\n{text}"));
    let n: f64 = errors.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{errors}");
    assert!(text.contains("tenant_guard_redis_circuit_open"), "{text}");
}

mod tenants {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};

    fn tenant_req(tenant: &str) -> http::Request<Body> {
        let mut req = http::Request::get("/api/items")
            .header("x-tenant-id", tenant)
            .body(Body::empty())
            .unwrap();
        let peer: SocketAddr = "198.51.100.9:1000".parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    }

    /// `validate_with`: an async check (a database, say), its answers cached.
    #[tokio::test]
    async fn validated_tenants_ask_once_per_id() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app: Router = Router::new()
            .route("/api/items", get(|| async { "ok" }))
            .layer(
                TenantLayer::new(TenantResolver::header("x-tenant-id")).validate_with(
                    move |t: TenantId| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async move { t.as_str().starts_with("cust-") }
                    },
                ),
            );
        for _ in 0..20 {
            assert_eq!(
                app.clone()
                    .oneshot(tenant_req("cust-1"))
                    .await
                    .unwrap()
                    .status(),
                200
            );
            assert_eq!(
                app.clone()
                    .oneshot(tenant_req("nope"))
                    .await
                    .unwrap()
                    .status(),
                404
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "answers are cached");
    }
}
