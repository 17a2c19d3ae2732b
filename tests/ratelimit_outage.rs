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
        // Two connections: a probe that reconnected only one of them let one check in two
        // fail after the breaker closed.
        ("REDIS_POOL_SIZE".into(), "2".into()),
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
    // Outage: each instance enforces its share of what Redis last reported left:
    // (10 - 1) / 2 = 4 in process.
    let mut allowed = 0;
    for _ in 0..20 {
        let d = l.check(&check(&t, &u)).await;
        assert_eq!(d.source, Source::Local, "{d:?}");
        allowed += u32::from(d.allowed);
    }
    assert_eq!(allowed, 4);
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
    // A fresh server (its data died with it), but the 4 units admitted in process were
    // charged back with this call, before it was decided: 10 - 4 - 1.
    assert_eq!(d.most_restrictive().unwrap().remaining, 5);
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
    use axum::{Router, body::Body, routing::get};
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

/// Drives `instances` limiters (app instances sharing one Redis) with one tenant at 4 times
/// its 50/5s limit for 18 s, Redis paused (SIGSTOP) from 6 s to 12 s; returns when each
/// admitted request was decided (test-clock time) and the sources of the decisions.
async fn paused_redis_under_load(instances: usize) -> (Vec<Duration>, Vec<Source>) {
    let server = common::RedisServer::start();
    let n = instances.to_string();
    let limiters: Vec<(RateLimiter, Backend)> = (0..instances)
        .map(|_| {
            limiter(
                &server,
                &[
                    ("RATE_LIMIT_TENANT", "50/5s"),
                    ("RATE_LIMIT_MAX", "100000"),
                    ("RATE_LIMIT_WINDOW", "1m"),
                    ("RATE_LIMIT_OUTAGE", "local"),
                    ("RATE_LIMIT_INSTANCES", &n),
                ],
            )
        })
        .collect();
    let t = common::unique_tenant("paused");
    let u = Identity::User("u".into());
    // 40 requests/s (the limit is 10/s), spread round robin over the instances, on an
    // open-loop schedule: a request late because of a timeout is sent at once.
    let step = Duration::from_millis(25);
    let start = Instant::now();
    let (mut paused, mut resumed) = (false, false);
    let mut admitted = Vec::new();
    let mut sources = Vec::new();
    for i in 0u32.. {
        let due = step * i;
        if due >= Duration::from_secs(18) {
            break;
        }
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let at = start.elapsed();
        if !paused && at >= Duration::from_secs(6) {
            server.pause();
            paused = true;
        }
        if !resumed && at >= Duration::from_secs(12) {
            server.resume();
            resumed = true;
        }
        let (l, _) = &limiters[i as usize % instances];
        let d = l.check(&check(&t, &u)).await;
        if d.allowed {
            admitted.push(at);
        }
        sources.push(d.source);
    }
    server.resume();
    (admitted, sources)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_does_not_open_the_limit_one_instance() {
    let (admitted, sources) = paused_redis_under_load(1).await;
    let worst = common::max_in_window(&admitted, Duration::from_secs(5));
    let local = sources.iter().filter(|s| **s == Source::Local).count();
    eprintln!(
        "one instance: {} admitted of {}, {local} decided in process; most in one 5 s window: {worst}",
        admitted.len(),
        sources.len()
    );
    // The pause was an outage for the limiter, and it ended.
    assert!(local > 0, "{sources:?}");
    assert!(
        sources[sources.len() - 40..]
            .iter()
            .all(|s| matches!(s, Source::Redis | Source::DenyCache)),
        "not back on Redis: {:?}",
        &sources[sources.len() - 40..]
    );
    // Before seeding and charge-back this load saw 117 (a fresh local window on top of
    // what Redis had just admitted, and Redis unaware of the local admissions after).
    assert!(worst <= 60, "{worst} admissions in one 5 s window");
    // Still admitting: the limit holds, it is not turned into a denial of service.
    assert!(admitted.len() >= 150, "only {} admitted", admitted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_does_not_open_the_limit_two_instances() {
    let (admitted, sources) = paused_redis_under_load(2).await;
    let worst = common::max_in_window(&admitted, Duration::from_secs(5));
    let local = sources.iter().filter(|s| **s == Source::Local).count();
    eprintln!(
        "two instances: {} admitted of {}, {local} decided in process; most in one 5 s window: {worst}",
        admitted.len(),
        sources.len()
    );
    assert!(local > 0, "{sources:?}");
    // Both instances had a fresh answer for the tenant's counter: together they stay near
    // the limit (the bound for N instances is in the README).
    assert!(worst <= 60, "{worst} admissions in one 5 s window");
}

#[tokio::test]
async fn units_admitted_in_process_reach_redis_for_every_algorithm() {
    for algo in ["exact", "compact", "gcra"] {
        let mut server = common::RedisServer::start();
        let vars = [
            ("RATE_LIMIT_MAX", "10"),
            ("RATE_LIMIT_WINDOW", "1m"),
            ("RATE_LIMIT_ALGORITHM", algo),
            ("RATE_LIMIT_OUTAGE", "local"),
        ];
        let (a, backend) = limiter(&server, &vars);
        let t = common::unique_tenant("charge");
        let (u, v) = (Identity::User("u".into()), Identity::User("v".into()));
        assert_eq!(a.check(&check(&t, &u)).await.source, Source::Redis);
        server.kill();
        let mut allowed = 0;
        for _ in 0..20 {
            allowed += u32::from(a.check(&check(&t, &u)).await.allowed);
        }
        assert_eq!(allowed, 9, "{algo}: 10 - the 1 Redis last reported");
        server.restart();
        wait_breaker(&backend, BreakerState::Closed).await;
        // Instance `a` is back on Redis through another counter: that starts charging the
        // units of `u`'s counter, which `a` does not check again.
        assert_eq!(a.check(&check(&t, &v)).await.source, Source::Redis);
        // Another instance (nothing in process) sees them once they arrive.
        let (b, _) = limiter(&server, &vars);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let d = b.peek(&check(&t, &u)).await;
            assert_eq!(d.source, Source::Redis);
            let left = d.most_restrictive().unwrap().remaining;
            if left < 10 {
                // Charged once, all of it: 10 - 9.
                assert_eq!(left, 1, "{algo}: {d:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{algo}: never charged back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
