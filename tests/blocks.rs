//! `RATE_LIMIT_BLOCK` on every backend (memory, a single Redis node, the 3-master cluster):
//! once a rule denies an identity it keeps refusing it for the block, even after its window
//! has room again; `Retry-After` says until when; a repeat doubles the block up to its
//! longest; other identities are not touched; shadow rules and peeks never block; a reset
//! lifts the block.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http_body_util::BodyExt;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Identity, RateLimitLayer, RateLimiter};
use tenant_guard::tenant::{TenantLayer, TenantResolver};
use tower::ServiceExt;

use common::Target as Kind;

/// An app whose `per-user` rule allows 3 per 400 ms and blocks for 1.2 s, doubling up to
/// 2.4 s; and its limiter (for resets and peeks).
fn app(kind: Kind, extra: &[(&str, &str)]) -> (Router, RateLimiter, Option<common::RedisServer>) {
    let mut vars = vec![
        ("RATE_LIMIT_USER", "3/400ms"),
        ("RATE_LIMIT_BLOCK", "per-user=1200ms..2400ms"),
        ("RATE_LIMIT_MAX", "100000"),
        ("RATE_LIMIT_USER_HEADER", "x-user"),
        // Every check goes to the store (no cached denials in front of it).
        ("RATE_LIMIT_DENY_CACHE", "0"),
    ];
    vars.extend_from_slice(extra);
    let (all, server) = common::target_vars(kind, &vars);
    let config = Config::from_vars(all).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    let router = Router::new()
        .route("/r", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(&config, limiter.clone()))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    (router, limiter, server)
}

struct Reply {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

async fn call(app: &Router, tenant: &str, user: &str) -> Reply {
    let req = http::Request::get("/r")
        .header("x-tenant-id", tenant)
        .header("x-user", user)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends until the first 429 (at most 10 requests); returns it.
async fn until_refused(app: &Router, tenant: &str, user: &str) -> Reply {
    for _ in 0..10 {
        let r = call(app, tenant, user).await;
        if r.status == 429 {
            return r;
        }
        assert_eq!(r.status, 200, "{}", r.body);
    }
    panic!("never refused");
}

mod checks {
    use super::*;

    /// Refused once, blocked for 1.2 s although the 400 ms window has room again after
    /// 500 ms; then admitted. Another user of the tenant is never blocked.
    pub(super) async fn a_denied_user_stays_blocked_until_the_block_ends(kind: Kind) {
        let (app, _limiter, _server) = app(kind, &[]);
        let t = common::unique_tenant("blk");
        let t = t.as_str();
        let first = until_refused(&app, t, "ann").await;
        let v: serde_json::Value = serde_json::from_str(&first.body).unwrap();
        assert_eq!(
            (v["rule"].as_str(), v["blocked"].as_bool()),
            (Some("per-user"), Some(true)),
            "{v}"
        );
        assert!(
            first.body.contains("blocks a client it refused"),
            "{}",
            first.body
        );
        assert_eq!(first.retry_after, Some(2), "1.2 s, rounded up");
        assert_eq!(
            call(&app, t, "bob").await.status,
            200,
            "another user is not blocked"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = call(&app, t, "ann").await;
        assert_eq!(
            during.status, 429,
            "the window has room, the block holds: {}",
            during.body
        );
        assert_eq!(during.retry_after, Some(1));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(call(&app, t, "ann").await.status, 200, "the block ended");
    }

    /// A second denial within the longest block of the first block's end doubles the block
    /// (2.4 s, the cap).
    pub(super) async fn a_repeat_doubles_the_block_up_to_its_cap(kind: Kind) {
        let (app, _limiter, _server) = app(kind, &[]);
        let t = common::unique_tenant("blk");
        let t = t.as_str();
        assert_eq!(until_refused(&app, t, "ann").await.retry_after, Some(2));
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let again = until_refused(&app, t, "ann").await;
        assert_eq!(again.retry_after, Some(3), "2.4 s: {}", again.body);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let third = until_refused(&app, t, "ann").await;
        assert_eq!(
            third.retry_after,
            Some(3),
            "capped at 2.4 s: {}",
            third.body
        );
    }

    /// Peeks never start a block, and a shadow rule never blocks; a reset lifts a block.
    pub(super) async fn peeks_shadows_and_resets(kind: Kind) {
        let (app, limiter, _server) = app(kind, &[]);
        let tenant = common::unique_tenant("blk");
        let t = tenant.as_str();
        let ann = Identity::User("ann".into());
        for _ in 0..3 {
            assert_eq!(call(&app, t, "ann").await.status, 200);
        }
        let check = common::get_check(&tenant, &ann, "/r", None);
        for _ in 0..5 {
            assert!(!limiter.peek(&check).await.allowed);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            call(&app, t, "ann").await.status,
            200,
            "peeks blocked nobody"
        );
        let blocked = until_refused(&app, t, "ann").await;
        assert_eq!(blocked.retry_after, Some(2));
        limiter.reset(&tenant, &ann).await.unwrap();
        assert_eq!(
            call(&app, t, "ann").await.status,
            200,
            "the reset lifted the block"
        );

        let (shadow, _l, _s) = app_shadow(kind);
        let t2 = common::unique_tenant("blk");
        for _ in 0..6 {
            assert_eq!(call(&shadow, t2.as_str(), "ann").await.status, 200);
        }
    }
}

fn app_shadow(kind: Kind) -> (Router, RateLimiter, Option<common::RedisServer>) {
    app(kind, &[("RATE_LIMIT_SHADOW", "per-user")])
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
    a_denied_user_stays_blocked_until_the_block_ends,
    a_repeat_doubles_the_block_up_to_its_cap,
    peeks_shadows_and_resets,
);

/// A block is kept in Redis: a second instance sharing it refuses the blocked user too.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_a_block_reaches_every_instance() {
    let (a, _la, server) = app(Kind::Redis, &[]);
    let server = server.unwrap();
    let config = Config::from_vars([
        ("REDIS_URL", server.url().as_str()),
        ("RATE_LIMIT_USER", "3/400ms"),
        ("RATE_LIMIT_BLOCK", "per-user=1200ms..2400ms"),
        ("RATE_LIMIT_MAX", "100000"),
        ("RATE_LIMIT_USER_HEADER", "x-user"),
        ("RATE_LIMIT_OUTAGE", "closed"),
    ])
    .unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let b = Router::new()
        .route("/r", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(
            &config,
            RateLimiter::from_config(&config, backend, &metrics),
        ))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    until_refused(&a, "acme", "ann").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = call(&b, "acme", "ann").await;
    assert_eq!(other.status, 429, "{}", other.body);
    assert!(other.body.contains("\"blocked\":true"), "{}", other.body);
}

/// A block on a tenant-wide rule would let any client naming the tenant lock it out: the
/// configuration refuses it, as it refuses blocks built in code outside 1 ms..10 years.
#[test]
fn tenant_rules_and_unbounded_blocks_are_refused() {
    let err = Config::from_vars([
        ("RATE_LIMIT_TENANT", "5/1m"),
        ("RATE_LIMIT_BLOCK", "per-tenant=5m"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("RATE_LIMIT_BLOCK") && err.contains("lock the tenant out"),
        "{err}"
    );
    use tenant_guard::ratelimit::{Block, Policy, Quota, Rule, Scope};
    let unbounded = Block {
        first: Duration::from_secs(60),
        max: Duration::MAX,
    };
    let err = Policy::builder()
        .rule(Rule::new("per-user", Scope::Caller, Quota::parse("5/1m").unwrap()).block(unbounded))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("block"), "{err}");
}

/// With the deny cache on (the default), a reset on one instance lifts a block on another
/// within about a second: a blocked answer is cached for at most 1 s.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_a_reset_reaches_other_instances_deny_caches() {
    let server = common::RedisServer::start();
    let url = server.url();
    let make = || {
        let config = Config::from_vars([
            ("REDIS_URL", url.as_str()),
            ("RATE_LIMIT_USER", "3/400ms"),
            ("RATE_LIMIT_BLOCK", "per-user=1h"),
            ("RATE_LIMIT_MAX", "100000"),
            ("RATE_LIMIT_USER_HEADER", "x-user"),
            ("RATE_LIMIT_OUTAGE", "closed"),
        ])
        .unwrap();
        let metrics = Metrics::new();
        let limiter = RateLimiter::from_config(
            &config,
            Backend::from_config(&config, &metrics).unwrap(),
            &metrics,
        );
        let router = Router::new()
            .route("/r", get(|| async { "ok" }))
            .layer(RateLimitLayer::from_config(&config, limiter.clone()))
            .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
        (router, limiter)
    };
    let (a, la) = make();
    let (b, _lb) = make();
    until_refused(&b, "acme", "ann").await;
    assert_eq!(
        call(&b, "acme", "ann").await.status,
        429,
        "cached or not, blocked"
    );
    let t = tenant_guard::tenant::TenantId::new("acme").unwrap();
    la.reset(&t, &Identity::User("ann".into())).await.unwrap();
    assert_eq!(call(&a, "acme", "ann").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        call(&b, "acme", "ann").await.status,
        200,
        "B's cached block ended"
    );
}
