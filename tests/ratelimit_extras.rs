//! Redis memory per counter, plan tiers, the burst cap, async identities and the
//! configuration errors of the rate-limit variables.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Check, Identity, RateLimitLayer, RateLimiter, Source};
use tenant_guard::tenant::TenantId;

fn build(vars: Vec<(String, String)>) -> RateLimiter {
    common::build_limiter(vars).0
}

fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn check<'a>(t: &'a TenantId, who: &'a Identity, route: &'a str) -> Check<'a> {
    common::get_check(t, who, route, None)
}

/// `MEMORY USAGE` of one active counter, key included: a typical key, usage spread over
/// every sub-window bucket (a 3 s window, one request every 100 ms).
#[tokio::test]
async fn redis_memory_per_counter() {
    let server = common::RedisServer::start();
    // (algorithm, limit, cost per request, tenant)
    let cases = [
        ("compact", "100", 1u32, "acme-corp"),
        ("compact", "100000", 1000, "acme-heavy"),
        ("exact", "100", 1, "acme-exact"),
        // GCRA at 100/3s refills a unit every 30 ms: cost 5 every 100 ms keeps its key alive.
        ("gcra", "100", 5, "acme-gcra"),
    ];
    let runs = cases.iter().map(|&(algo, limit, cost, tenant)| {
        let mut v = vars(&[
            ("RATE_LIMIT_MAX", limit),
            ("RATE_LIMIT_WINDOW", "3s"),
            ("RATE_LIMIT_ALGORITHM", algo),
        ]);
        v.push(("REDIS_URL".into(), server.url()));
        let l = build(v);
        let port = server.port;
        async move {
            let t = TenantId::new(tenant).unwrap();
            let u = Identity::User("user-1234567".into());
            for _ in 0..30 {
                let mut c = check(&t, &u, "/api/reports/{day}");
                c.cost = Some(cost);
                assert!(l.check(&c).await.allowed);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let key = format!(
                "tg:ratelimit:{{{t}}}:per-endpoint:user:user-1234567:GET /api/reports/%7Bday%7D"
            );
            let bytes: u64 = common::cli(port, &["MEMORY", "USAGE", &key])
                .parse()
                .unwrap_or_else(|_| panic!("no key {key}"));
            (algo, limit, cost, key.len(), bytes)
        }
    });
    let results = futures_util::future::join_all(runs).await;
    for (algo, limit, cost, klen, bytes) in &results {
        eprintln!("MEMORY USAGE {algo} limit {limit} cost {cost}: {bytes} bytes ({klen}-byte key)");
    }
    // Figures, not assertions: `MEMORY USAGE` depends on the Redis version and allocator
    // (the README quotes this output). Every counter exists and holds something.
    for (algo, _, _, klen, bytes) in &results {
        assert!(
            *bytes as usize > *klen,
            "{algo}: {bytes} bytes for a {klen}-byte key"
        );
    }
}

#[tokio::test]
async fn plan_tiers_override_quotas() {
    let l = build(vars(&[
        ("RATE_LIMIT_TENANT", "2/1m"),
        ("RATE_LIMIT_MAX", "100"),
        ("RATE_LIMIT_PLANS", "pro: per-tenant=5/1m"),
        ("RATE_LIMIT_TENANT_PLANS", "acme=pro"),
    ]));
    let u = Identity::User("u".into());
    let acme = TenantId::new("acme").unwrap();
    let free = TenantId::new("globex").unwrap();
    let allowed = |t: &'static TenantId| {
        let l = l.clone();
        let u = u.clone();
        async move {
            let mut n = 0;
            for _ in 0..10 {
                n += u32::from(l.check(&check(t, &u, "/x")).await.allowed);
            }
            n
        }
    };
    let acme: &'static TenantId = Box::leak(Box::new(acme));
    let free: &'static TenantId = Box::leak(Box::new(free));
    assert_eq!(allowed(acme).await, 5);
    assert_eq!(allowed(free).await, 2);
    // A plan passed with the check (for tenants from a database) wins.
    let beta = TenantId::new("beta").unwrap();
    let mut c = check(&beta, &u, "/x");
    c.plan = Some("pro");
    let d = l.check(&c).await;
    assert_eq!(d.rules[0].limit, 5);
}

#[tokio::test]
async fn burst_cap_answers_without_the_store() {
    let l = build(vars(&[
        ("RATE_LIMIT_BURST", "3/1m"),
        ("RATE_LIMIT_MAX", "100"),
    ]));
    let t = TenantId::new("acme").unwrap();
    let mut sources = Vec::new();
    for i in 0..5 {
        let u = Identity::User(format!("u{i}").into());
        sources.push(l.check(&check(&t, &u, "/x")).await.source);
    }
    assert_eq!(
        sources,
        [
            Source::Memory,
            Source::Memory,
            Source::Memory,
            Source::Burst,
            Source::Burst
        ]
    );
}

#[tokio::test]
async fn async_identity_function() {
    let config = Config::from_vars([("RATE_LIMIT_MAX", "1")]).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    let layer = RateLimitLayer::new(limiter).identify_with(|parts| {
        let key = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        async move { key.map(|k| Identity::User(Arc::from(format!("key:{k}")))) }
    });
    let app: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    let req = |k: &str| {
        http::Request::get("/")
            .header("x-api-key", k)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(app.clone().oneshot(req("a")).await.unwrap().status(), 200);
    assert_eq!(app.clone().oneshot(req("b")).await.unwrap().status(), 200);
    assert_eq!(app.clone().oneshot(req("a")).await.unwrap().status(), 429);
}

#[test]
fn invalid_rules_name_the_variable_and_fragment() {
    let err = Config::from_vars([
        ("RATE_LIMIT_TENANT", "1000 per minute"),
        (
            "RATE_LIMIT_ENDPOINTS",
            "ai: POST /api/ai = 10/1m; GET nope = 1/1s",
        ),
        ("RATE_LIMIT_COSTS", "POST /x = zero"),
        ("RATE_LIMIT_OUTAGE", "maybe"),
        ("RATE_LIMIT_TRUSTED_PROXIES", "10.0.0.0/8, bogus"),
        ("RATE_LIMIT_SHADOW", "no-such-rule"),
        ("RATE_LIMIT_TENANT_PLANS", "acme=gold"),
    ])
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "RATE_LIMIT_TENANT=\"1000 per minute\"",
        "`GET nope = 1/1s`",
        "`POST /x = zero`",
        "RATE_LIMIT_OUTAGE=\"maybe\"",
        "`bogus` is not an IP address",
        "no rule is named `no-such-rule`",
        "plan `gold`",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

/// `RATE_LIMIT_ENABLED=false`: no rule at all, every request passes, nothing is written.
#[tokio::test]
async fn disabled_limits_admit_everything_and_write_nothing() {
    let server = common::RedisServer::start();
    let mut v = vars(&[("RATE_LIMIT_ENABLED", "false"), ("RATE_LIMIT_MAX", "1")]);
    v.push(("REDIS_URL".into(), server.url()));
    let l = build(v);
    assert!(l.policy().rules().is_empty());
    let t = TenantId::new("acme").unwrap();
    let u = Identity::User("u".into());
    for _ in 0..20 {
        assert!(l.check(&check(&t, &u, "/x")).await.allowed);
    }
    assert_eq!(common::cli(server.port, &["DBSIZE"]).trim(), "0");
}

/// Requests no route matched share one `<unmatched>` endpoint: scanning random paths
/// neither escapes the per-endpoint limit nor makes a key per path.
#[tokio::test]
async fn unmatched_paths_share_one_endpoint() {
    let server = common::RedisServer::start();
    let config = Config::from_vars([
        ("REDIS_URL", server.url().as_str()),
        ("RATE_LIMIT_MAX", "3"),
        ("RATE_LIMIT_OUTAGE", "closed"),
    ])
    .unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    let app: Router = Router::new()
        .route("/known", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(&config, limiter));
    let mut statuses = Vec::new();
    for i in 0..6 {
        let mut req = http::Request::get(format!("/scan/{i}/x"))
            .body(Body::empty())
            .unwrap();
        let peer: std::net::SocketAddr = "198.51.100.3:1".parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        statuses.push(app.clone().oneshot(req).await.unwrap().status().as_u16());
    }
    // 404s from the router, but only three get that far: the rest are limited first.
    assert_eq!(statuses, [404, 404, 404, 429, 429, 429]);
    let keys = common::cli(server.port, &["--scan", "--pattern", "tg:ratelimit:*"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].ends_with(tenant_guard::ratelimit::UNMATCHED_ROUTE),
        "{keys:?}"
    );
}

/// The deny cache: with it, an exhausted identity is answered in process until its first
/// unit frees; with `RATE_LIMIT_DENY_CACHE=0` every answer comes from Redis; `peek` always
/// asks Redis.
#[tokio::test]
async fn deny_cache_on_off_and_peek() {
    let server = common::RedisServer::start();
    let t = TenantId::new("acme").unwrap();
    let u = Identity::User("u".into());
    for (size, expect) in [("10000", Source::DenyCache), ("0", Source::Redis)] {
        let mut v = vars(&[
            ("RATE_LIMIT_MAX", "2"),
            ("RATE_LIMIT_WINDOW", "1m"),
            ("RATE_LIMIT_DENY_CACHE", size),
            ("RATE_LIMIT_OUTAGE", "closed"),
        ]);
        v.push(("REDIS_URL".into(), server.url()));
        v.push(("TG_KEY_PREFIX".into(), format!("dc{size}")));
        let l = build(v);
        assert!(l.check(&check(&t, &u, "/x")).await.allowed);
        assert!(l.check(&check(&t, &u, "/x")).await.allowed);
        // The admission that took the last unit told the deny cache (when there is one).
        for _ in 0..3 {
            let denied = l.check(&check(&t, &u, "/x")).await;
            assert!(!denied.allowed);
            assert_eq!(denied.source, expect, "deny cache {size}");
        }
        let peek = l.peek(&check(&t, &u, "/x")).await;
        assert_eq!((peek.allowed, peek.source), (false, Source::Redis));
    }
}

/// Concurrent checks share script calls (the limiter batches checks that wait for Redis at
/// the same time) and the limit stays exact: of 400 simultaneous checks of one user, as many
/// as the limit pass, whichever call decided them, in fewer than 400 script calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_share_script_calls_and_stay_exact() {
    let server = common::RedisServer::start();
    for algo in ["compact", "exact", "gcra"] {
        server.cli(&["CONFIG", "RESETSTAT"]);
        let limiter = Arc::new(build(vars(&[
            ("REDIS_URL", &server.url()),
            ("RATE_LIMIT_ALGORITHM", algo),
            ("RATE_LIMIT_MAX", "50"),
            ("RATE_LIMIT_WINDOW", "1h"),
            ("RATE_LIMIT_DENY_CACHE", "0"),
        ])));
        let tenant = TenantId::new(&format!("batch-{algo}")).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..400 {
            let (limiter, tenant) = (limiter.clone(), tenant.clone());
            tasks.push(tokio::spawn(async move {
                let who = Identity::User("u-1".into());
                let d = limiter.check(&check(&tenant, &who, "/x")).await;
                assert_eq!(d.source, Source::Redis, "{algo}: decided by the script");
                d.allowed
            }));
        }
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 50, "{algo}: exactly the limit admitted");
        let stats = server.cli(&["INFO", "commandstats"]);
        let calls: usize = stats
            .lines()
            .find(|l| l.starts_with("cmdstat_evalsha:"))
            .and_then(|l| l.split([':', ',']).find_map(|f| f.strip_prefix("calls=")))
            .and_then(|v| v.parse().ok())
            .expect("EVALSHA calls");
        assert!(
            calls < 400,
            "{algo}: 400 concurrent checks took {calls} script calls: none were batched"
        );
        eprintln!("{algo}: 400 concurrent checks in {calls} script calls");
    }
}

/// A request whose own counter breaks the script (a key of another type, as an algorithm
/// change can leave) fails alone, and writes nothing: the checks batched with it are decided
/// by Redis, once. Limit 1 and a first check for every other tenant: a check counted twice
/// (a failed call's writes kept, then the check retried) would be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_counter_fails_only_its_own_checks() {
    let server = common::RedisServer::start();
    let limiter = Arc::new(build(vars(&[
        ("REDIS_URL", &server.url()),
        ("RATE_LIMIT_ALGORITHM", "exact"),
        ("RATE_LIMIT_MAX", "1"),
        ("RATE_LIMIT_WINDOW", "1h"),
        ("RATE_LIMIT_OUTAGE", "closed"),
        ("RATE_LIMIT_DENY_CACHE", "0"),
    ])));
    // The exact log is a sorted set; a string there would make the script fail (WRONGTYPE).
    server.cli(&[
        "SET",
        "tg:ratelimit:{evil}:per-endpoint:user:broken:GET /x",
        "not a sorted set",
    ]);
    let evil = TenantId::new("evil").unwrap();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (limiter, evil) = (limiter.clone(), evil.clone());
        tasks.push(tokio::spawn(async move {
            if i % 5 == 0 {
                let who = Identity::User("broken".into());
                let d = limiter.check(&check(&evil, &who, "/x")).await;
                (None, d.source, d.allowed)
            } else {
                let t = TenantId::new(&format!("good-{i}")).unwrap();
                let who = Identity::User(format!("u-{i}").into());
                let d = limiter.check(&check(&t, &who, "/x")).await;
                (Some(i), d.source, d.allowed)
            }
        }));
    }
    let mut wrong = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (None, source, _) => {
                assert_ne!(
                    source,
                    Source::Redis,
                    "the broken counter was decided by Redis"
                )
            }
            (Some(i), source, allowed) => {
                if source != Source::Redis || !allowed {
                    wrong.push((i, source));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} first checks of other tenants not admitted by Redis: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // The broken key was left as it was.
    assert_eq!(
        server.cli(&[
            "TYPE",
            "tg:ratelimit:{evil}:per-endpoint:user:broken:GET /x"
        ]),
        "string"
    );
}

/// Checks queued behind the calls in flight wait at most half the command timeout, then go
/// to the outage mode, instead of being sent late one batch after another: with Redis
/// stopped (SIGSTOP) and the breaker kept closed, 2000 concurrent checks are all decided
/// within a few timeouts (sent late, 4 calls of 32 at a time, they would take ~16 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_checks_wait_at_most_half_the_command_timeout() {
    let server = common::RedisServer::start();
    let limiter = Arc::new(build(vars(&[
        ("REDIS_URL", &server.url()),
        ("RATE_LIMIT_ALGORITHM", "compact"),
        ("RATE_LIMIT_MAX", "100000"),
        ("RATE_LIMIT_WINDOW", "1h"),
        ("RATE_LIMIT_OUTAGE", "open"),
        ("RATE_LIMIT_DENY_CACHE", "0"),
        ("REDIS_COMMAND_TIMEOUT", "500ms"),
        // Every call reaches the stopped server: no breaker answering in its place.
        ("TG_BREAKER_THRESHOLD", "1000000"),
    ])));
    let t = TenantId::new("slow").unwrap();
    let who = Identity::User("w".into());
    assert_eq!(
        limiter.check(&check(&t, &who, "/x")).await.source,
        Source::Redis
    );
    server.pause();
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let (limiter, t) = (limiter.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let who = Identity::User(format!("u-{i}").into());
            limiter.check(&check(&t, &who, "/x")).await.source
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Source::OutageOpen);
    }
    let took = start.elapsed();
    server.resume();
    assert!(
        took < std::time::Duration::from_secs(5),
        "2000 checks against a stopped Redis took {took:?} with a 500 ms command timeout"
    );
}

/// One call may decide requests under different quotas of the same rule (tenants on
/// different plans, batched together): each is held to its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_checks_under_different_plans_each_keep_their_quota() {
    let server = common::RedisServer::start();
    let limiter = Arc::new(build(vars(&[
        ("REDIS_URL", &server.url()),
        ("RATE_LIMIT_TENANT", "3/1h"),
        ("RATE_LIMIT_MAX", "1000"),
        ("RATE_LIMIT_PLANS", "pro: per-tenant=7/1h"),
        (
            "RATE_LIMIT_TENANT_PLANS",
            "pro-0=pro,pro-1=pro,pro-2=pro,pro-3=pro,pro-4=pro",
        ),
        ("RATE_LIMIT_DENY_CACHE", "0"),
    ])));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move {
            let tenant = if i % 2 == 0 {
                format!("pro-{}", i % 5)
            } else {
                format!("free-{}", i % 5)
            };
            let t = TenantId::new(&tenant).unwrap();
            let who = Identity::User(format!("u-{i}").into());
            let d = limiter.check(&check(&t, &who, "/x")).await;
            assert_eq!(d.source, Source::Redis);
            (tenant, d.allowed)
        }));
    }
    let mut admitted = std::collections::BTreeMap::new();
    for t in tasks {
        let (tenant, allowed) = t.await.unwrap();
        *admitted.entry(tenant).or_insert(0) += u32::from(allowed);
    }
    for (tenant, n) in &admitted {
        let quota = if tenant.starts_with("pro-") { 7 } else { 3 };
        assert_eq!(*n, quota, "{tenant}: {admitted:?}");
    }
    assert_eq!(admitted.len(), 10);
}
