//! The regression tests of the hostile-input review (see the library's `tests/hostile.rs`)
//! that drive the demo app: its admin and ops routes, the session layer in front of the
//! cache, tenant allow-lists and the per-client rule on every layer at once, and metrics
//! labels under invented tenants.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use tower::ServiceExt;

use tenant_guard::config::Config;

/// Status, `X-Cache` and body of one request.
async fn send(app: &Router, req: http::Request<Body>) -> (u16, String, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let x = res
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, x, String::from_utf8_lossy(&body).into_owned())
}

/// A GET for tenant `acme` with extra headers.
fn get_req(path: &str, headers: &[(&str, &str)]) -> http::Request<Body> {
    let mut b = http::Request::get(path).header("x-tenant-id", "acme");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

/// `GET /api/items` for `tenant` from one client address.
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

/// Finding 15: `/metrics` and `/cache/status` were open to anyone and showed the Redis
/// address and last error. Finding 10 (in part): the demo's `DELETE /api/cache` was open.
#[tokio::test]
async fn ops_and_admin_routes_need_their_tokens() {
    const OPS: &str = "ops-token-0123456789abcdef0123456789";
    const ADMIN: &str = "admin-token-0123456789abcdef012345678";
    async fn call(app: &Router, method: &str, path: &str, auth: Option<&str>) -> u16 {
        let mut b = http::Request::builder()
            .method(method)
            .uri(path)
            .header("x-tenant-id", "acme");
        if let Some(a) = auth {
            b = b.header("authorization", format!("Bearer {a}"));
        }
        let req = b.body(Body::empty()).unwrap();
        app.clone().oneshot(req).await.unwrap().status().as_u16()
    }
    let config = Config::from_vars([("TG_OPS_TOKEN", OPS), ("TG_ADMIN_TOKEN", ADMIN)]).unwrap();
    let app = tenant_guard_cli::demo::app(&config).unwrap();
    for route in ["/metrics", "/cache/status"] {
        assert_eq!(call(&app, "GET", route, None).await, 401, "{route}");
        assert_eq!(call(&app, "GET", route, Some(ADMIN)).await, 401, "{route}");
        assert_eq!(call(&app, "GET", route, Some(OPS)).await, 200, "{route}");
    }
    for route in ["/health", "/health/ready"] {
        assert_eq!(call(&app, "GET", route, None).await, 200, "{route}");
    }
    assert_eq!(call(&app, "DELETE", "/api/cache", None).await, 401);
    assert_eq!(call(&app, "DELETE", "/api/cache", Some(OPS)).await, 401);
    assert_eq!(call(&app, "DELETE", "/api/cache", Some(ADMIN)).await, 200);
    let tag = "/api/cache/tags/reports";
    assert_eq!(call(&app, "DELETE", tag, None).await, 401);
    assert_eq!(call(&app, "DELETE", tag, Some(OPS)).await, 401);
    assert_eq!(call(&app, "DELETE", tag, Some(ADMIN)).await, 200);
    // Not a tag: a clear 400, and only for the admin (others learn nothing).
    let bad = "/api/cache/tags/two%20words";
    assert_eq!(call(&app, "DELETE", bad, Some(ADMIN)).await, 400);
    assert_eq!(call(&app, "DELETE", bad, None).await, 401);

    // Without TG_ADMIN_TOKEN the admin routes are refused outright.
    let app = tenant_guard_cli::demo::app(&Config::default()).unwrap();
    assert_eq!(call(&app, "DELETE", "/api/cache", None).await, 403);
    assert_eq!(call(&app, "DELETE", tag, Some(ADMIN)).await, 403);
    assert_eq!(
        call(&app, "DELETE", "/api/cache", Some("anything")).await,
        403
    );

    // Short tokens are configuration errors.
    let err = Config::from_vars([("TG_OPS_TOKEN", "short")]).unwrap_err();
    assert!(err.to_string().contains("TG_OPS_TOKEN"), "{err}");
}

/// The demo tags reports `reports` and `day:<day>`: the admin's tag route drops them, for
/// its tenant only, and the tags never reach the client.
#[tokio::test]
async fn the_demo_tag_route_drops_tagged_reports() {
    const ADMIN: &str = "admin-token-0123456789abcdef012345678";
    let config = Config::from_vars([("TG_ADMIN_TOKEN", ADMIN)]).unwrap();
    let app = tenant_guard_cli::demo::app(&config).unwrap();
    let report = |tenant: &str, day: &str| {
        http::Request::get(format!("/api/reports/{day}"))
            .header("x-tenant-id", tenant)
            .body(Body::empty())
            .unwrap()
    };
    let drop_tag = |tag: &str| {
        http::Request::delete(format!("/api/cache/tags/{tag}"))
            .header("x-tenant-id", "acme")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap()
    };
    for (tenant, day) in [
        ("acme", "2020-01-01"),
        ("acme", "2020-01-02"),
        ("globex", "2020-01-01"),
    ] {
        assert_eq!(send(&app, report(tenant, day)).await.1, "MISS");
        let res = app.clone().oneshot(report(tenant, day)).await.unwrap();
        assert_eq!(res.headers()["x-cache"], "HIT");
        assert!(!res.headers().contains_key("x-cache-tags"));
    }
    assert_eq!(send(&app, drop_tag("day:2020-01-01")).await.0, 200);
    assert_eq!(send(&app, report("acme", "2020-01-01")).await.1, "MISS");
    assert_eq!(send(&app, report("acme", "2020-01-02")).await.1, "HIT");
    assert_eq!(send(&app, report("globex", "2020-01-01")).await.1, "HIT");
    assert_eq!(send(&app, drop_tag("reports")).await.0, 200);
    assert_eq!(send(&app, report("acme", "2020-01-02")).await.1, "MISS");
    assert_eq!(send(&app, report("globex", "2020-01-01")).await.1, "HIT");
}

/// Finding 5: with the session layer in front, two logged-in users of one tenant never
/// share an entry; the session's user keys it.
#[tokio::test]
async fn logged_in_users_never_share_entries() {
    let config = Config::from_vars([("SESSION_COOKIE_SECURE", "false")]).unwrap();
    let app = tenant_guard_cli::demo::app(&config).unwrap();
    let login = |user: &str| {
        http::Request::post("/login")
            .header("x-tenant-id", "acme")
            .body(Body::from(format!(r#"{{"user":"{user}"}}"#)))
            .unwrap()
    };
    let mut cookies = Vec::new();
    for user in ["alice", "bob"] {
        let res = app.clone().oneshot(login(user)).await.unwrap();
        let c = res.headers()["set-cookie"].to_str().unwrap();
        cookies.push(c.split(';').next().unwrap().to_string());
    }
    let report = |cookie: &str| get_req("/api/reports/2020-01-01", &[("cookie", cookie)]);
    assert_eq!(send(&app, report(&cookies[0])).await.1, "MISS");
    assert_eq!(send(&app, report(&cookies[0])).await.1, "HIT");
    assert_eq!(send(&app, report(&cookies[1])).await.1, "MISS");
    assert_eq!(send(&app, report(&cookies[1])).await.1, "HIT");
}

/// Finding 9: tenant ids were self-declared and unlimited; each invented id created
/// keys. With `TG_TENANTS`, an unknown tenant gets 404 and nothing is written.
#[tokio::test]
async fn unknown_tenants_get_404_and_write_nothing() {
    let server = common::RedisServer::start();
    let config = Config::from_vars([
        ("REDIS_URL", server.url().as_str()),
        ("TG_TENANTS", "acme, globex"),
        ("RATE_LIMIT_OUTAGE", "closed"),
    ])
    .unwrap();
    let app = tenant_guard_cli::demo::app(&config).unwrap();
    for i in 0..200 {
        let res = app
            .clone()
            .oneshot(tenant_req(&format!("invented-{i}")))
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(
        server.cli(&["DBSIZE"]).trim(),
        "0",
        "keys written for unknown tenants"
    );
    let res = app.clone().oneshot(tenant_req("acme")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_ne!(server.cli(&["DBSIZE"]).trim(), "0");
    // The list is checked against the default tenant too.
    let err =
        Config::from_vars([("TG_TENANTS", "acme"), ("TG_DEFAULT_TENANT", "other")]).unwrap_err();
    assert!(err.to_string().contains("TG_DEFAULT_TENANT"), "{err}");
}

/// Finding 9: one client cycling tenant (and user) ids was never limited.
/// `RATE_LIMIT_IP` counts the client address across every tenant.
#[tokio::test]
async fn one_client_cycling_tenants_is_limited() {
    for target in [common::Target::Memory, common::Target::Redis] {
        let (vars, _server) = common::target_vars(
            target,
            &[
                ("RATE_LIMIT_IP", "5/1m"),
                ("RATE_LIMIT_MAX", "1000"),
                ("RATE_LIMIT_USER_HEADER", "x-user-id"),
                ("RATE_LIMIT_OUTAGE", "closed"),
            ],
        );
        let app = tenant_guard_cli::demo::app(&Config::from_vars(vars).unwrap()).unwrap();
        let mut statuses = Vec::new();
        for i in 0..10 {
            let mut req = tenant_req(&format!("t{i}"));
            req.headers_mut()
                .insert("x-user-id", format!("u{i}").parse().unwrap());
            statuses.push(app.clone().oneshot(req).await.unwrap().status().as_u16());
        }
        assert_eq!(
            statuses,
            [200, 200, 200, 200, 200, 429, 429, 429, 429, 429],
            "{target:?}"
        );
        // Another client is not affected.
        let mut req = tenant_req("t0");
        let peer: SocketAddr = "198.51.100.10:1000".parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
    }
}

/// Metrics never carry client-chosen values as labels: 1000 invented tenants (with 429s,
/// sessions and cache traffic) leave no tenant id in `/metrics`, and the output stays small.
#[tokio::test]
async fn metrics_never_label_by_tenant() {
    let config = Config::from_vars([
        ("RATE_LIMIT_TENANT", "1/1m"),
        ("SESSION_COOKIE_SECURE", "false"),
    ])
    .unwrap();
    let app = tenant_guard_cli::demo::app(&config).unwrap();
    for i in 0..1000 {
        for path in ["/api/items", "/api/items", "/api/reports/2020-01-01"] {
            let req = http::Request::get(path)
                .header("x-tenant-id", format!("zz-tenant-{i}"))
                .body(Body::empty())
                .unwrap();
            let _ = app.clone().oneshot(req).await.unwrap();
        }
    }
    let res = app
        .clone()
        .oneshot(http::Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("tenant_guard_"), "{text}");
    assert!(!text.contains("zz-tenant"), "a tenant id in a label");
    assert!(text.len() < 64 * 1024, "{} bytes of metrics", text.len());
}
