//! Outage modes with a real server killed and restarted: `local`, `open`, `closed`.

mod common;

use std::time::{Duration, Instant};

use tenant_guard::backend::{Backend, BreakerState};
use tenant_guard::ratelimit::{Check, Identity, RateLimiter, Source};
use tenant_guard::tenant::TenantId;

fn limiter(server: &common::RedisServer, vars: &[(&str, &str)]) -> (RateLimiter, Backend) {
    let mut all: Vec<(String, String)> = vec![
        ("REDIS_URL".into(), server.url()),
        ("REDIS_COMMAND_TIMEOUT".into(), "300ms".into()),
        ("TG_BREAKER_PROBE_INTERVAL".into(), "100ms".into()),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (limiter, backend, _) = common::build_limiter(all);
    (limiter, backend)
}

fn check<'a>(t: &'a TenantId, who: &'a Identity) -> Check<'a> {
    common::get_check(t, who, "/items", None)
}

async fn wait_breaker(backend: &Backend, want: BreakerState) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while backend.health().unwrap().state() != want {
        assert!(Instant::now() < deadline, "breaker never became {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn local_mode_divides_the_limit_and_returns_to_redis() {
    let mut server = common::RedisServer::start();
    let (l, backend) = limiter(
        &server,
        &[
            ("RATE_LIMIT_MAX", "10"),
            ("RATE_LIMIT_WINDOW", "1m"),
            ("RATE_LIMIT_OUTAGE", "local"),
            ("RATE_LIMIT_INSTANCES", "2"),
        ],
    );
    let t = common::unique_tenant("local");
    let u = Identity::User("u".into());
    assert_eq!(l.check(&check(&t, &u)).await.source, Source::Redis);

    server.kill();
    // Outage: each instance enforces 10 / 2 = 5 in process.
    let mut allowed = 0;
    for _ in 0..20 {
        let d = l.check(&check(&t, &u)).await;
        assert_eq!(d.source, Source::Local, "{d:?}");
        allowed += u32::from(d.allowed);
    }
    assert_eq!(allowed, 5);
    wait_breaker(&backend, BreakerState::Open).await;
    // With the breaker open a check never waits on the network.
    let start = Instant::now();
    for _ in 0..1000 {
        l.check(&check(&t, &u)).await;
    }
    eprintln!(
        "local-mode check with breaker open: {:?} each",
        start.elapsed() / 1000
    );

    server.restart();
    wait_breaker(&backend, BreakerState::Closed).await;
    let d = l.check(&check(&t, &u)).await;
    assert_eq!(d.source, Source::Redis, "back on Redis by itself");
    // A fresh server: the counter restarted (usage during the outage was local).
    assert_eq!(d.most_restrictive().unwrap().remaining, 9);
}

#[tokio::test]
async fn open_mode_allows_during_the_outage() {
    let mut server = common::RedisServer::start();
    let (l, _) = limiter(
        &server,
        &[("RATE_LIMIT_MAX", "1"), ("RATE_LIMIT_OUTAGE", "open")],
    );
    let t = common::unique_tenant("open");
    let u = Identity::User("u".into());
    assert!(l.check(&check(&t, &u)).await.allowed);
    assert!(!l.check(&check(&t, &u)).await.allowed);
    server.kill();
    // An identity already known to be over its limit stays denied (the deny cache knows
    // Redis would say no); everyone else is let through uncounted.
    assert_eq!(l.check(&check(&t, &u)).await.source, Source::DenyCache);
    let v = Identity::User("v".into());
    for _ in 0..5 {
        let d = l.check(&check(&t, &v)).await;
        assert!(d.allowed);
        assert_eq!(d.source, Source::OutageOpen);
    }
}

#[tokio::test]
async fn closed_mode_answers_503_through_the_layer() {
    use axum::{body::Body, routing::get, Router};
    use tower::ServiceExt;

    let mut server = common::RedisServer::start();
    let (l, _) = limiter(&server, &[("RATE_LIMIT_OUTAGE", "closed")]);
    let app: Router = Router::new()
        .route("/items", get(|| async { "ok" }))
        .layer(tenant_guard::ratelimit::RateLimitLayer::new(l));
    let req = || http::Request::get("/items").body(Body::empty()).unwrap();
    assert_eq!(app.clone().oneshot(req()).await.unwrap().status(), 200);
    server.kill();
    let res = app.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["retry-after"], "1");
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if app.clone().oneshot(req()).await.unwrap().status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deny_cache_answers_repeat_offenders_without_redis() {
    let server = common::RedisServer::start();
    let (l, _) = limiter(
        &server,
        &[("RATE_LIMIT_MAX", "2"), ("RATE_LIMIT_WINDOW", "1m")],
    );
    let t = common::unique_tenant("deny");
    let u = Identity::User("u".into());
    assert!(l.check(&check(&t, &u)).await.allowed);
    assert!(l.check(&check(&t, &u)).await.allowed); // last unit: Redis reports 0 left
    let before = server.cli(&["INFO", "commandstats"]);
    for _ in 0..50 {
        let d = l.check(&check(&t, &u)).await;
        assert!(!d.allowed);
        assert_eq!(d.source, Source::DenyCache);
        assert!(d.retry_after().unwrap() > Duration::from_secs(50));
    }
    let after = server.cli(&["INFO", "commandstats"]);
    let calls = |s: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with("cmdstat_evalsha:"))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(calls(&before), calls(&after), "deny cache hit Redis");
    // Other identities are unaffected.
    let v = Identity::User("v".into());
    assert_eq!(l.check(&check(&t, &v)).await.source, Source::Redis);
}
