//! `TenantGuard` over real HTTP (a loopback server, a raw HTTP/1.1 client), on the memory
//! backend and on a redis-server the test starts: one `layer()` gives the demo's behaviour
//! — tenant required (problem+json 400), sessions bound to their tenant, limits per tenant
//! with `RateLimit` headers and 429 problem bodies naming the rule, the logged-in user
//! limited on its own — and `ops_router()` answers without a tenant.

#[macro_use]
mod common;

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::json;

use tenant_guard::TenantGuard;
use tenant_guard::session::Session;
use tenant_guard::tenant::TenantId;

async fn login(session: Session, body: String) -> Json<serde_json::Value> {
    session.cycle_id().await.unwrap();
    session.set_user_id(Some(body.trim())).await.unwrap();
    Json(json!({ "user": body.trim() }))
}

async fn me(tenant: TenantId, session: Session) -> Json<serde_json::Value> {
    Json(json!({ "tenant": tenant, "user": session.user_id().await.unwrap() }))
}

/// The app, served on a free loopback port until the test ends.
async fn serve(guard: &TenantGuard) -> u16 {
    let app: Router = Router::new()
        .route("/api/items", get(|| async { "items" }))
        .route("/login", post(login))
        .route("/me", get(me))
        .layer(guard.layer())
        .merge(guard.ops_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    port
}

/// One request (blocking client, off the runtime's threads).
async fn http(
    port: u16,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
) -> common::HttpReply {
    tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::http(port, method, path, &h, body)
    })
    .await
    .unwrap()
}

fn header(reply: &common::HttpReply, name: &str) -> Option<String> {
    reply.headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn tenant(t: &str) -> Vec<(&'static str, String)> {
    vec![("X-Tenant-ID", t.to_string())]
}

on_each_backend!(
    a_tenant_is_required_and_ops_routes_need_none,
    limits_hold_per_tenant_with_headers_and_problem_bodies,
    sessions_are_bound_to_their_tenant_and_limit_their_user,
);

async fn a_tenant_is_required_and_ops_routes_need_none(vars: Vec<(&str, String)>) {
    let guard = TenantGuard::from_vars(vars).unwrap();
    let port = serve(&guard).await;
    let none = http(port, "GET", "/api/items", vec![], "").await;
    assert_eq!(none.status, 400, "{}", none.body);
    assert_eq!(
        header(&none, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let ok = http(port, "GET", "/api/items", tenant("acme"), "").await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "items"));
    for path in ["/health", "/health/ready", "/cache/health", "/metrics"] {
        assert_eq!(
            http(port, "GET", path, vec![], "").await.status,
            200,
            "{path}"
        );
    }
    guard.shutdown().await;
}

async fn limits_hold_per_tenant_with_headers_and_problem_bodies(mut vars: Vec<(&str, String)>) {
    vars.push(("RATE_LIMIT_TENANT", "3/1m".into()));
    let guard = TenantGuard::from_vars(vars).unwrap();
    let port = serve(&guard).await;
    for _ in 0..3 {
        let r = http(port, "GET", "/api/items", tenant("acme"), "").await;
        assert_eq!(r.status, 200);
        assert!(header(&r, "ratelimit").is_some(), "{}", r.headers);
    }
    let refused = http(port, "GET", "/api/items", tenant("acme"), "").await;
    assert_eq!(refused.status, 429);
    assert!(
        header(&refused, "retry-after").is_some(),
        "{}",
        refused.headers
    );
    let problem: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(problem["rule"], "per-tenant", "{problem}");
    // Another tenant has its own quota.
    let other = http(port, "GET", "/api/items", tenant("globex"), "").await;
    assert_eq!(other.status, 200);
}

async fn sessions_are_bound_to_their_tenant_and_limit_their_user(mut vars: Vec<(&str, String)>) {
    vars.push(("SESSION_COOKIE_SECURE", "false".into()));
    vars.push(("RATE_LIMIT_USER", "2/1m".into()));
    let guard = TenantGuard::from_vars(vars).unwrap();
    let port = serve(&guard).await;
    let login = http(port, "POST", "/login", tenant("acme"), "alice").await;
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = header(&login, "set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let with_cookie = |t: &str| {
        let mut h = tenant(t);
        h.push(("Cookie", cookie.clone()));
        h
    };
    let me = http(port, "GET", "/me", with_cookie("acme"), "").await;
    let v: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(
        (v["tenant"].as_str(), v["user"].as_str()),
        (Some("acme"), Some("alice"))
    );
    // The cookie names no session of another tenant.
    let there = http(port, "GET", "/me", with_cookie("globex"), "").await;
    let v: serde_json::Value = serde_json::from_str(&there.body).unwrap();
    assert_eq!(v["user"], serde_json::Value::Null, "{v}");
    // Alice is limited as herself (2 per minute), not per address: her third request is
    // refused, while the address (which logged in anonymously) still has one left.
    assert_eq!(
        http(port, "GET", "/me", with_cookie("acme"), "")
            .await
            .status,
        200
    );
    let refused = http(port, "GET", "/me", with_cookie("acme"), "").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let anonymous = http(port, "GET", "/api/items", tenant("acme"), "").await;
    assert_eq!(anonymous.status, 200);
}
