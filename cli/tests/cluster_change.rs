//! The three layers while the cluster changes under load, driven through the demo app: a
//! master is killed (SIGKILL) and its replica takes over, on a 3-master + 3-replica cluster
//! this test starts; a slot migrates while a tenant on it is busy. (Cache invalidation and
//! the session index during a migration, which need no demo app, are in the library's
//! `tests/cluster_migration.rs`.)
//!
//! What a user sees during the seconds before the replica is promoted: requests for tenants
//! on the dead master's slots are limited in process (`RATE_LIMIT_OUTAGE=local`), their
//! session reads get 503 (`SESSION_OUTAGE=closed`), their cache runs on L1; because the
//! circuit breaker is per store, not per node, tenants on healthy masters see the same
//! while it is open. No request gets a 500, and nothing stored on other masters is lost.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tenant_guard::config::Config;
use tenant_guard::keys::hash_slot;
use tower::ServiceExt;

const LIMIT: usize = 50;
const WINDOW: Duration = Duration::from_secs(5);

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    tenant: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, Option<String>, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-tenant-id", tenant)
        .header("x-user-id", "u-1")
        .header("content-type", "application/json");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let set_cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        set_cookie,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The demo app's configuration on `cluster`, limited to 50 units per 5 s per tenant.
fn demo_app(cluster: &common::RedisCluster, command_timeout: &str) -> Router {
    let config = Config::from_vars([
        ("REDIS_CLUSTER_NODES", cluster.nodes_var().as_str()),
        ("REDIS_COMMAND_TIMEOUT", command_timeout),
        (
            "SESSION_SECRET",
            "cluster-change-test-secret-0123456789abcd",
        ),
        ("SESSION_OUTAGE", "closed"),
        ("RATE_LIMIT_TENANT", "50/5s"),
        ("RATE_LIMIT_MAX", "100000"),
        ("RATE_LIMIT_WINDOW", "1m"),
        ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
    ])
    .unwrap();
    tenant_guard_cli::demo::app(&config).unwrap()
}

fn tenant_where(prefix: &str, wanted: impl Fn(u16) -> bool) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|t| wanted(hash_slot(format!("{{{t}}}").as_bytes())))
        .expect("a tenant in the wanted slots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_failover_under_load() {
    let mut cluster = common::RedisCluster::start_with_replicas(1, 1000);
    let masters = cluster.masters();
    let victim = masters[0].0;
    let on_victim = |slot: u16| {
        masters
            .iter()
            .any(|(p, a, b)| *p == victim && (*a..=*b).contains(&slot))
    };
    let busy = tenant_where("busy", on_victim);
    let calm = tenant_where("calm", |s| !on_victim(s));
    let app = demo_app(&cluster, "300ms");

    // Before: a session and a cache entry of the calm tenant (on a healthy master).
    let (s, cookie, _) = send(&app, "POST", "/login", &calm, None, r#"{"user":"ivy"}"#).await;
    assert_eq!(s, 200);
    let cookie = cookie.unwrap();
    let (_, _, report) = send(&app, "GET", "/api/reports/2020-01-01", &calm, None, "").await;

    // Load: the busy tenant at up to 40 requests/s (over its 10/s), the calm tenant's
    // session and report every 12th request; the busy tenant's master dies once Redis has
    // refused the busy tenant (its limit reached on Redis: phases follow the requests, not
    // the clock), and the load goes on for 10 s after that.
    let started = Instant::now();
    let mut admitted = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    let mut killed_at: Option<Duration> = None;
    let mut refused_before_kill = false;
    let mut unavailable = Vec::new();
    let mut tick = 0u32;
    while killed_at.is_none_or(|k| started.elapsed() < k + Duration::from_secs(10)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the busy tenant was never refused before the failover: {statuses:?}"
        );
        if killed_at.is_none() && refused_before_kill {
            let node = cluster.nodes.iter_mut().find(|n| n.port == victim).unwrap();
            node.kill();
            killed_at = Some(started.elapsed());
        }
        let (s, _, body) = send(&app, "GET", "/api/items", &busy, None, "").await;
        if killed_at.is_none() && s == 429 {
            refused_before_kill = true;
        }
        assert_ne!(s, 500, "{body}");
        *statuses.entry(format!("busy {s}")).or_insert(0) += 1;
        if s == 200 {
            admitted.push(started.elapsed());
        }
        if tick % 12 == 0 {
            let (s, _, body) = send(&app, "GET", "/me", &calm, Some(&cookie), "").await;
            assert!(s == 200 || s == 503 || s == 429, "{s} {body}");
            *statuses.entry(format!("calm /me {s}")).or_insert(0) += 1;
            if s == 503 {
                unavailable.push(started.elapsed());
            }
            let (s, _, body) = send(&app, "GET", "/api/reports/2020-01-01", &calm, None, "").await;
            assert!(s == 200 || s == 429, "{s} {body}");
        }
        tick += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    println!(
        "failover at {killed_at:?}: {statuses:?}; session 503s between {:?} and {:?}",
        unavailable.first(),
        unavailable.last()
    );

    // The documented bound: in any window, what Redis admitted plus what the in-process
    // fallback admitted while Redis was unusable — at most twice the limit.
    let worst = tenant_guard_cli::loadgen::max_in_window(&admitted, WINDOW);
    println!("most admissions in one {WINDOW:?} window: {worst} (limit {LIMIT})");
    assert!(worst <= 2 * LIMIT, "{worst} admissions in one window");
    // ... and the limit was enforced at all: the busy tenant sent four times its quota.
    assert!(
        statuses.get("busy 429").copied().unwrap_or(0) > 0,
        "no 429 for a tenant at 4x its limit: {statuses:?}"
    );
    assert!(
        worst >= LIMIT / 2,
        "the busy tenant barely got through: {worst}"
    );
    // Per layer, as documented: rate limits fall back in process (never a 503 for a route
    // that only the limiter guards); the session answers 200 or 503 (`closed`), never 500.
    for (k, n) in &statuses {
        if let Some(code) = k.strip_prefix("busy ") {
            assert!(
                code == "200" || code == "429",
                "busy {code} x{n}: {statuses:?}"
            );
        }
        if let Some(code) = k.strip_prefix("calm /me ") {
            assert!(code == "200" || code == "503", "calm /me {code} x{n}");
        }
    }

    // The replica took over: every live node agrees the cluster is ok.
    cluster.wait_ok();
    // Decisions come from Redis again (scripts reloaded on the promoted node).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _, body) = send(&app, "GET", "/me", &busy, None, "").await;
        if s == 200 && body.contains(r#""source":"redis""#) {
            break;
        }
        assert!(Instant::now() < deadline, "never back on Redis: {s} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing of the calm tenant was lost.
    let (s, _, me) = send(&app, "GET", "/me", &calm, Some(&cookie), "").await;
    assert_eq!(s, 200);
    assert!(me.contains(r#""user":"ivy""#), "{me}");
    let (_, _, again) = send(&app, "GET", "/api/reports/2020-01-01", &calm, None, "").await;
    assert_eq!(again, report, "the calm tenant's cache entry changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_migration_under_load() {
    let cluster = common::RedisCluster::start();
    let masters = cluster.masters();
    let (from_port, a, b) = masters[0];
    let to_port = masters
        .iter()
        .map(|m| m.0)
        .find(|p| *p != from_port)
        .unwrap();
    let busy = tenant_where("mig", |s| (a..=b).contains(&s));
    let slot = hash_slot(format!("{{{busy}}}").as_bytes()).to_string();
    let node = |port: u16| cluster.nodes.iter().find(|n| n.port == port).unwrap();
    let from_id = node(from_port).cli(&["CLUSTER", "MYID"]);
    let to_id = node(to_port).cli(&["CLUSTER", "MYID"]);
    let app = demo_app(&cluster, "500ms");
    let (s, cookie, _) = send(&app, "POST", "/login", &busy, None, r#"{"user":"jo"}"#).await;
    assert_eq!(s, 200);
    let cookie = cookie.unwrap();

    // Phases follow the load (requests sent), not the clock.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let app = app.clone();
        let busy = busy.clone();
        let cookie = cookie.clone();
        let sent = sent.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut admitted = Vec::new();
            let mut statuses = std::collections::BTreeMap::new();
            let mut tick = 0u32;
            // Until the test says stop (after the move), with a hard bound for a hung run.
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(120)
            {
                let (s, _, body) = send(&app, "GET", "/api/items", &busy, None, "").await;
                assert_ne!(s, 500, "{body}");
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if s == 200 {
                    admitted.push(started.elapsed());
                }
                *statuses.entry(format!("items {s}")).or_insert(0) += 1;
                if tick % 10 == 0 {
                    let (s, _, body) = send(&app, "GET", "/me", &busy, Some(&cookie), "").await;
                    assert!(s != 500, "{body}");
                    *statuses.entry(format!("me {s}")).or_insert(0) += 1;
                }
                tick += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (admitted, statuses)
        })
    };

    // Migrate the busy tenant's slot while the load runs: mark it, move half of its keys,
    // hold that state (the keys are split between two nodes: TRYAGAIN for the scripts),
    // move the rest, hand the slot over.
    let test_deadline = Instant::now() + Duration::from_secs(120);
    let wait_sent = |n: usize| {
        let sent = sent.clone();
        async move {
            while sent.load(std::sync::atomic::Ordering::SeqCst) < n {
                assert!(
                    Instant::now() < test_deadline,
                    "the load stopped before {n} requests"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // The limit is exhausted before the move (50 per 5 s; the load sends ~40/s).
    wait_sent(60).await;
    let to = node(to_port);
    let from = node(from_port);
    to.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
    from.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    let keys = from.cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert!(keys.len() >= 3, "{keys:?}");
    let migrate = |ks: &[&str]| {
        if ks.is_empty() {
            return;
        }
        let port = to_port.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend_from_slice(ks);
        let out = from.cli(&args);
        assert!(out.contains("OK") || out.contains("NOKEY"), "{out}");
    };
    migrate(&keys[..keys.len() / 2]);
    // Hold the split state while 30 more requests go through it.
    let now = sent.load(std::sync::atomic::Ordering::SeqCst);
    wait_sent(now + 30).await;
    let rest = from.cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]);
    migrate(&rest.lines().collect::<Vec<_>>());
    for n in &cluster.nodes {
        n.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
    // Some load after the move too, then stop.
    let now = sent.load(std::sync::atomic::Ordering::SeqCst);
    wait_sent(now + 120).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    let (admitted, statuses) = load.await.unwrap();
    println!("slot {slot} moved {from_port} -> {to_port}: {statuses:?}");
    let worst = tenant_guard_cli::loadgen::max_in_window(&admitted, WINDOW);
    println!("most admissions in one {WINDOW:?} window: {worst} (limit {LIMIT})");
    assert!(worst <= 2 * LIMIT, "{worst} admissions in one window");
    assert!(
        statuses.get("items 429").copied().unwrap_or(0) > 0,
        "no 429 for a tenant at 4x its limit: {statuses:?}"
    );
    assert!(
        worst >= LIMIT / 2,
        "the busy tenant barely got through: {worst}"
    );
    for (k, n) in &statuses {
        if let Some(code) = k.strip_prefix("items ") {
            assert!(
                code == "200" || code == "429",
                "items {code} x{n}: {statuses:?}"
            );
        }
    }
    // After the move: decisions from Redis on the new owner, the session intact.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _, body) = send(&app, "GET", "/me", &busy, Some(&cookie), "").await;
        if s == 200 && body.contains(r#""source":"redis""#) {
            assert!(body.contains(r#""user":"jo""#), "session lost: {body}");
            break;
        }
        assert!(Instant::now() < deadline, "never back on Redis: {s} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on_new = to.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]);
    assert!(on_new.trim().parse::<u64>().unwrap() >= 3, "{on_new}");
}
