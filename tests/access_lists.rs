//! `RATE_LIMIT_EXEMPT` and `RATE_LIMIT_DENY`: listed tenants, users and client address
//! ranges skip every limit or get 403, counted in the decisions metric; a client cannot
//! list itself with a forwarding header, and deny wins over exempt.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http_body_util::BodyExt;
use tenant_guard::backend::Backend;
use tenant_guard::concurrency::{ConcurrencyLayer, ConcurrencyLimiter};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
use tenant_guard::tenant::{TenantLayer, TenantResolver};
use tower::ServiceExt;

fn app(vars: &[(&str, &str)]) -> (Router, Metrics) {
    let mut all: Vec<(&str, &str)> = vec![
        ("RATE_LIMIT_MAX", "1"),
        ("RATE_LIMIT_WINDOW", "1h"),
        ("RATE_LIMIT_USER_HEADER", "x-user"),
        ("RATE_LIMIT_CONCURRENCY_USER", "1"),
    ];
    all.extend_from_slice(vars);
    let config = Config::from_vars(all).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let limiter = RateLimiter::from_config(&config, backend.clone(), &metrics);
    let router = Router::new()
        .route("/r", get(|| async { "ok" }))
        .layer(ConcurrencyLayer::new(ConcurrencyLimiter::from_config(
            &config, backend, &metrics,
        )))
        .layer(RateLimitLayer::from_config(&config, limiter))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    (router, metrics)
}

async fn call(
    app: &Router,
    tenant: &str,
    user: Option<&str>,
    peer: &str,
    xff: Option<&str>,
) -> (u16, String) {
    let mut b = http::Request::get("/r").header("x-tenant-id", tenant);
    if let Some(u) = user {
        b = b.header("x-user", u);
    }
    if let Some(x) = xff {
        b = b.header("x-forwarded-for", x);
    }
    let mut req = b.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn statuses(
    app: &Router,
    tenant: &str,
    user: Option<&str>,
    peer: &str,
    n: usize,
) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(call(app, tenant, user, peer, None).await.0);
    }
    out
}

#[tokio::test]
async fn exempt_tenants_users_and_ranges_skip_every_limit() {
    let (app, metrics) = app(&[(
        "RATE_LIMIT_EXEMPT",
        "tenant:internal, user:ops-bot, ip:10.0.0.0/8, ip:2001:db8::/32",
    )]);
    assert_eq!(
        statuses(&app, "internal", None, "192.0.2.1:1", 4).await,
        [200; 4]
    );
    assert_eq!(
        statuses(&app, "acme", Some("ops-bot"), "192.0.2.1:1", 4).await,
        [200; 4]
    );
    assert_eq!(
        statuses(&app, "acme", None, "10.9.8.7:1", 4).await,
        [200; 4]
    );
    assert_eq!(
        statuses(&app, "acme", None, "[2001:db8::5]:1", 4).await,
        [200; 4]
    );
    // Everyone else is limited (1 per hour).
    assert_eq!(
        statuses(&app, "acme", Some("ann"), "192.0.2.1:1", 2).await,
        [200, 429]
    );
    assert_eq!(
        statuses(&app, "acme", None, "192.0.2.9:1", 2).await,
        [200, 429]
    );
    let text = metrics.render();
    assert!(
        text.contains(
            r#"tenant_guard_ratelimit_decisions_total{outcome="allowed",source="exempt"} 16"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn denied_identities_get_403_and_deny_wins_over_exempt() {
    let (app, metrics) = app(&[
        (
            "RATE_LIMIT_DENY",
            "user:spammer, ip:203.0.113.0/24, tenant:banned",
        ),
        ("RATE_LIMIT_EXEMPT", "user:spammer"),
    ]);
    let (s, body) = call(&app, "acme", Some("spammer"), "192.0.2.1:1", None).await;
    assert_eq!(s, 403, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["rule"], "deny-list");
    assert_eq!(problem["matched"], "user");
    assert!(
        !body.contains("spammer"),
        "the listed value is not echoed: {body}"
    );
    assert_eq!(
        call(&app, "acme", None, "203.0.113.77:1", None).await.0,
        403
    );
    assert_eq!(call(&app, "banned", None, "192.0.2.1:1", None).await.0, 403);
    assert_eq!(
        call(&app, "acme", Some("ann"), "192.0.2.1:1", None).await.0,
        200
    );
    let text = metrics.render();
    assert!(
        text.contains(
            r#"tenant_guard_ratelimit_decisions_total{outcome="denied",source="deny-list"} 3"#
        ),
        "{text}"
    );
}

/// Without trusted proxies a forwarding header is the client's own word: it can neither
/// put the client in an exempt range nor take it out of a denied one.
#[tokio::test]
async fn a_forwarding_header_cannot_list_or_unlist_a_client() {
    let (app, _) = app(&[
        ("RATE_LIMIT_EXEMPT", "ip:10.0.0.0/8"),
        ("RATE_LIMIT_DENY", "ip:203.0.113.0/24"),
    ]);
    let forged = |peer: &'static str, xff: &'static str| {
        let app = app.clone();
        async move { call(&app, "acme", None, peer, Some(xff)).await.0 }
    };
    assert_eq!(forged("192.0.2.50:1", "10.1.1.1").await, 200);
    assert_eq!(
        forged("192.0.2.50:1", "10.1.1.1").await,
        429,
        "exempted by a forged header"
    );
    assert_eq!(
        forged("203.0.113.9:1", "192.0.2.1").await,
        403,
        "unlisted by a forged header"
    );
}

/// Behind a trusted proxy the forwarded client address is the one listed.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_listed() {
    let (app, _) = app(&[
        ("RATE_LIMIT_TRUSTED_PROXIES", "127.0.0.1"),
        ("RATE_LIMIT_EXEMPT", "ip:10.0.0.0/8"),
    ]);
    for _ in 0..3 {
        assert_eq!(
            call(&app, "acme", None, "127.0.0.1:1", Some("10.1.1.1"))
                .await
                .0,
            200
        );
    }
    assert_eq!(
        call(&app, "acme", None, "127.0.0.1:1", Some("192.0.2.4"))
            .await
            .0,
        200
    );
    assert_eq!(
        call(&app, "acme", None, "127.0.0.1:1", Some("192.0.2.4"))
            .await
            .0,
        429
    );
}

#[test]
fn malformed_lists_name_their_variable() {
    for (var, bad) in [
        ("RATE_LIMIT_EXEMPT", "acme"),
        ("RATE_LIMIT_EXEMPT", "ip:10.0.0.0/33"),
        ("RATE_LIMIT_DENY", "host:example.com"),
        ("RATE_LIMIT_DENY", "tenant:has space"),
        ("RATE_LIMIT_DENY", "user:"),
    ] {
        let err = Config::from_vars([(var, bad)]).unwrap_err();
        assert_eq!(err.problems()[0].var, var, "{bad}: {err}");
    }
    let ok = Config::from_vars([("RATE_LIMIT_EXEMPT", " tenant:a ,, ip:10.0.0.1 ")]).unwrap();
    assert_eq!(ok.rate_limit.exempt.to_env(), "ip:10.0.0.1/32, tenant:a");
}
