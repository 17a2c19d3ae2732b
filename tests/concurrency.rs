//! Concurrency limits on every backend (memory, a single Redis node, the 3-master cluster):
//! caps held across three instances sharing Redis, leases freed when the response body ends
//! or is dropped, renewed while a request runs, and expired when an instance dies.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::BodyExt;
use tenant_guard::backend::Backend;
use tenant_guard::concurrency::{ConcurrencyLayer, ConcurrencyLimiter};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
use tenant_guard::tenant::{Identity, TenantId, TenantLayer, TenantResolver};
use tokio::sync::Notify;
use tower::ServiceExt;

use common::Target as Kind;

/// An app instance: tenant -> rate limit (huge, for its identity) -> concurrency -> a
/// handler whose body ends only when `gate` is notified.
fn instance(vars: &[(String, String)], gate: Arc<Notify>) -> Router {
    let mut all = vars.to_vec();
    all.push(("RATE_LIMIT_MAX".into(), "1000000".into()));
    all.push(("RATE_LIMIT_USER_HEADER".into(), "x-user".into()));
    let config = Config::from_vars(all).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    let limiter = RateLimiter::from_config(&config, backend.clone(), &metrics);
    let concurrency = ConcurrencyLimiter::from_config(&config, backend, &metrics);
    let slow = move || {
        let gate = gate.clone();
        async move {
            let body = futures_util::stream::once(async move {
                gate.notified().await;
                Ok::<_, std::convert::Infallible>(Bytes::from_static(b"done"))
            });
            Body::from_stream(body)
        }
    };
    Router::new()
        .route("/generate", get(slow))
        .route("/quick", get(|| async { "quick" }))
        .layer(ConcurrencyLayer::new(concurrency))
        .layer(RateLimitLayer::from_config(&config, limiter))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")))
}

fn req(path: &str, tenant: &str, user: &str) -> Request<Body> {
    Request::get(path)
        .header("x-tenant-id", tenant)
        .header("x-user", user)
        .body(Body::empty())
        .unwrap()
}

async fn status(app: &Router, path: &str, tenant: &str, user: &str) -> (StatusCode, String) {
    let res = app.clone().oneshot(req(path, tenant, user)).await.unwrap();
    let s = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (s, String::from_utf8_lossy(&body).into_owned())
}

/// Waits (bounded) until `path` is admitted for `user` again: on Redis a lease is given back
/// by a task after the body ends.
async fn admitted_soon(app: &Router, tenant: &str, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, body) = status(app, "/quick", tenant, user).await;
        if s == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never admitted again: {s} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three instances on Redis (they share the caps); one on memory (in process).
fn instances(
    kind: Kind,
    vars: &[(&str, &str)],
    gate: &Arc<Notify>,
) -> (Vec<Router>, Option<common::RedisServer>) {
    let (all, server) = common::target_vars(kind, vars);
    let n = if kind == Kind::Memory { 1 } else { 3 };
    (
        (0..n).map(|_| instance(&all, gate.clone())).collect(),
        server,
    )
}

mod checks {
    use super::*;

    pub(super) async fn user_cap_held_across_instances_until_bodies_end(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &[("RATE_LIMIT_CONCURRENCY_USER", "2")], &gate);
        let t = common::unique_tenant("conc");
        let t = t.as_str();
        let app = |i: usize| &apps[i % apps.len()];
        // Two generations in flight (headers sent, bodies pending) on two instances.
        let a = app(0)
            .clone()
            .oneshot(req("/generate", t, "ann"))
            .await
            .unwrap();
        let b = app(1)
            .clone()
            .oneshot(req("/generate", t, "ann"))
            .await
            .unwrap();
        assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
        // A third, on a third instance: refused, naming the rule.
        let (s, body) = status(app(2), "/quick", t, "ann").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["rule"], "concurrency", "{body}");
        assert_eq!(problem["scope"], "user", "{body}");
        assert_eq!(problem["limit"], 2, "{body}");
        // Another user of the tenant is not capped by ann's requests.
        assert_eq!(status(app(2), "/quick", t, "bob").await.0, StatusCode::OK);
        // One body ends: a unit frees.
        gate.notify_one();
        assert_eq!(
            &a.into_body().collect().await.unwrap().to_bytes()[..],
            b"done"
        );
        admitted_soon(app(2), t, "ann").await;
        // Still one in flight: a second extra request is refused again.
        let c = app(0)
            .clone()
            .oneshot(req("/generate", t, "ann"))
            .await
            .unwrap();
        assert_eq!(c.status(), StatusCode::OK);
        assert_eq!(
            status(app(1), "/quick", t, "ann").await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        gate.notify_waiters();
        drop((b, c));
    }

    pub(super) async fn dropped_body_frees_its_lease(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &[("RATE_LIMIT_CONCURRENCY_USER", "1")], &gate);
        let t = common::unique_tenant("drop");
        let t = t.as_str();
        let a = apps[0]
            .clone()
            .oneshot(req("/generate", t, "ann"))
            .await
            .unwrap();
        assert_eq!(a.status(), StatusCode::OK);
        assert_eq!(
            status(&apps[0], "/quick", t, "ann").await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        // The client goes away: its response body is dropped unread.
        drop(a);
        admitted_soon(&apps[apps.len() - 1], t, "ann").await;
    }

    pub(super) async fn route_caps_count_their_endpoints_only(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(
            kind,
            &[(
                "RATE_LIMIT_CONCURRENCY_ENDPOINTS",
                "user: GET /generate = 1; tenant: * /generate = 2",
            )],
            &gate,
        );
        let t = common::unique_tenant("route");
        let t = t.as_str();
        let last = apps.len() - 1;
        let a = apps[0]
            .clone()
            .oneshot(req("/generate", t, "ann"))
            .await
            .unwrap();
        assert_eq!(a.status(), StatusCode::OK);
        // ann's second generation: her per-route cap.
        let second = apps[last]
            .clone()
            .oneshot(req("/generate", t, "ann"))
            .await
            .unwrap();
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
        let body = second.into_body().collect().await.unwrap().to_bytes();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["endpoint"], "GET /generate", "{problem}");
        assert_eq!(problem["scope"], "user", "{problem}");
        // Other routes are not capped; another user has a place, a third user hits the
        // tenant's cap on the route.
        assert_eq!(
            status(&apps[last], "/quick", t, "ann").await.0,
            StatusCode::OK
        );
        let b = apps[last]
            .clone()
            .oneshot(req("/generate", t, "bob"))
            .await
            .unwrap();
        assert_eq!(b.status(), StatusCode::OK);
        let c = apps[0]
            .clone()
            .oneshot(req("/generate", t, "cyd"))
            .await
            .unwrap();
        assert_eq!(c.status(), StatusCode::TOO_MANY_REQUESTS);
        let body = c.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("\"scope\":\"tenant\""));
        gate.notify_waiters();
        drop((a, b));
    }

    pub(super) async fn tenant_cap_spans_its_users_only(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &[("RATE_LIMIT_CONCURRENCY_TENANT", "2")], &gate);
        let t = common::unique_tenant("tcap");
        let other = common::unique_tenant("tcap-other");
        let (t, other) = (t.as_str(), other.as_str());
        let a = apps[0]
            .clone()
            .oneshot(req("/generate", t, "ann"))
            .await
            .unwrap();
        let b = apps[apps.len() - 1]
            .clone()
            .oneshot(req("/generate", t, "bob"))
            .await
            .unwrap();
        assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
        let (s, body) = status(&apps[0], "/quick", t, "cyd").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(body.contains("\"scope\":\"tenant\""), "{body}");
        // Another tenant is its own.
        assert_eq!(
            status(&apps[0], "/quick", other, "ann").await.0,
            StatusCode::OK
        );
        gate.notify_waiters();
        drop((a, b));
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Memory).await } )*
        }
        mod redis_single {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Redis).await } )*
        }
        mod redis_cluster {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Cluster).await } )*
        }
    };
}

conformance!(
    user_cap_held_across_instances_until_bodies_end,
    dropped_body_frees_its_lease,
    tenant_cap_spans_its_users_only,
    route_caps_count_their_endpoints_only,
);

fn limiter_on(url: &str, lease: &str) -> ConcurrencyLimiter {
    let config = Config::from_vars([
        ("REDIS_URL", url),
        ("RATE_LIMIT_CONCURRENCY_USER", "1"),
        ("RATE_LIMIT_CONCURRENCY_LEASE", lease),
        ("RATE_LIMIT_OUTAGE", "closed"),
    ])
    .unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    ConcurrencyLimiter::from_config(&config, backend, &metrics)
}

/// Waits (bounded by `within`) until a lease for `who` is had again; fails with `why`.
async fn acquired_within(
    limiter: &ConcurrencyLimiter,
    t: &TenantId,
    who: &Identity,
    within: Duration,
    why: &str,
) {
    let deadline = Instant::now() + within;
    while limiter.acquire(t, who).await.is_err() {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An instance that dies holding a lease (no release, no more renewals) stops counting once
/// the lease runs out: nothing leaks.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_crashed_instance_lease_expires() {
    let server = common::RedisServer::start();
    let limiter = limiter_on(&server.url(), "1s");
    let (t, ann) = (TenantId::new("acme").unwrap(), Identity::User("ann".into()));
    let lease = limiter.acquire(&t, &ann).await.unwrap();
    assert!(lease.is_held());
    lease.abandon();
    let refused = limiter.acquire(&t, &ann).await.unwrap_err();
    assert_eq!(refused.scope, "user");
    assert!(refused.retry_after <= Duration::from_secs(1), "{refused:?}");
    let why = "the abandoned lease never expired";
    acquired_within(&limiter, &t, &ann, Duration::from_secs(5), why).await;
}

/// A request that runs longer than the lease keeps its place: it is renewed while held.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_long_request_keeps_its_lease() {
    let server = common::RedisServer::start();
    let limiter = limiter_on(&server.url(), "1s");
    let (t, ann) = (TenantId::new("acme").unwrap(), Identity::User("ann".into()));
    let held = limiter.acquire(&t, &ann).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        limiter.acquire(&t, &ann).await.is_err(),
        "a lease in use expired (not renewed)"
    );
    drop(held);
    let why = "the released lease still counts";
    acquired_within(&limiter, &t, &ann, Duration::from_secs(5), why).await;
}

/// With `RATE_LIMIT_OUTAGE=closed` a request is refused (503 kind) while Redis is down, and
/// admitted again once it is back.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_outage_closed_refuses_then_recovers() {
    let mut server = common::RedisServer::start();
    let limiter = limiter_on(&server.url(), "5s");
    let (t, ann) = (TenantId::new("acme").unwrap(), Identity::User("ann".into()));
    drop(limiter.acquire(&t, &ann).await.unwrap());
    server.kill();
    let refused = limiter.acquire(&t, &ann).await.unwrap_err();
    assert!(refused.unavailable, "{refused:?}");
    server.restart();
    let why = "never admitted after Redis came back";
    acquired_within(&limiter, &t, &ann, Duration::from_secs(15), why).await;
}

/// An identity in `RATE_LIMIT_EXEMPT` takes no lease: its requests in flight are not capped.
#[tokio::test(flavor = "multi_thread")]
async fn memory_exempt_identities_take_no_lease() {
    let gate = Arc::new(Notify::new());
    let (apps, _server) = instances(
        Kind::Memory,
        &[
            ("RATE_LIMIT_CONCURRENCY_USER", "1"),
            ("RATE_LIMIT_EXEMPT", "user:ops"),
        ],
        &gate,
    );
    let a = apps[0]
        .clone()
        .oneshot(req("/generate", "acme", "ops"))
        .await
        .unwrap();
    let b = apps[0]
        .clone()
        .oneshot(req("/generate", "acme", "ops"))
        .await
        .unwrap();
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let c = apps[0]
        .clone()
        .oneshot(req("/generate", "acme", "ann"))
        .await
        .unwrap();
    assert_eq!(c.status(), StatusCode::OK);
    assert_eq!(
        status(&apps[0], "/quick", "acme", "ann").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    gate.notify_waiters();
    drop((a, b, c));
}

/// The metrics: refusals by scope, and the leases this instance holds.
#[tokio::test]
async fn memory_metrics_count_refusals_and_leases_in_flight() {
    let config = Config::from_vars([("RATE_LIMIT_CONCURRENCY_USER", "1")]).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let limiter = ConcurrencyLimiter::from_config(&config, backend, &metrics);
    let (t, ann) = (TenantId::new("acme").unwrap(), Identity::User("ann".into()));
    let held = limiter.acquire(&t, &ann).await.unwrap();
    assert!(limiter.acquire(&t, &ann).await.is_err());
    let text = metrics.render();
    assert!(
        text.contains("tenant_guard_concurrency_in_flight 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"tenant_guard_concurrency_denied_total{scope="user"} 1"#),
        "{text}"
    );
    drop(held);
    assert!(
        metrics
            .render()
            .contains("tenant_guard_concurrency_in_flight 0")
    );
}
