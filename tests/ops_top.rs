//! `GET /ops/top`: who is being throttled. A `TenantGuard` app on memory and on a
//! redis-server the test starts; one tenant throttled, one busy but within its limit,
//! thousands of invented tenants; the route ranks the first two, stays bounded, never
//! exports a tenant as a metric label, and sits behind `TG_OPS_TOKEN`.

#[macro_use]
mod common;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use http_body_util::BodyExt;
use tower::ServiceExt;

use tenant_guard::TenantGuard;

const TOKEN: &str = "ops-top-token-0123456789abcdef0123456789abcd";

on_each_backend!(the_throttled_tenant_tops_the_list_among_invented_ones);

async fn call(app: &Router, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let req = common::loopback_get(path, headers);
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn the_throttled_tenant_tops_the_list_among_invented_ones(mut vars: Vec<(&str, String)>) {
    vars.push(("RATE_LIMIT_TENANT", "5/1m".into()));
    vars.push(("TG_OPS_TOKEN", TOKEN.into()));
    let guard = TenantGuard::from_vars(vars).unwrap();
    let app: Router = Router::new()
        .route("/api/items", get(|| async { "items" }))
        .layer(guard.layer())
        .merge(guard.ops_router());
    // acme: 5 admitted, 25 throttled. globex: 4 admitted, none throttled.
    for _ in 0..30 {
        call(&app, "/api/items", &[("x-tenant-id", "acme")]).await;
    }
    for _ in 0..4 {
        let (s, _) = call(&app, "/api/items", &[("x-tenant-id", "globex")]).await;
        assert_eq!(s, 200);
    }
    // 3 000 invented tenants, one admitted request each: more than the structure keeps.
    for i in 0..3000 {
        let t = format!("zz-invented-{i}");
        call(&app, "/api/items", &[("x-tenant-id", t.as_str())]).await;
    }
    let auth = format!("Bearer {TOKEN}");
    let (s, _) = call(&app, "/ops/top", &[]).await;
    assert_eq!(s, 401, "behind the ops token");
    let (s, body) = call(
        &app,
        "/ops/top?minutes=2&rows=3",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["minutes"], 2);
    let throttled = report["throttled"].as_array().unwrap();
    assert_eq!(throttled[0]["tenant"], "acme", "{report}");
    assert_eq!(
        (
            throttled[0]["count"].as_u64(),
            throttled[0]["error"].as_u64()
        ),
        (Some(25), Some(0))
    );
    let admitted = report["admitted"].as_array().unwrap();
    assert_eq!(admitted.len(), 3, "rows=3 is honoured: {report}");
    // Admissions are spread over 3 000 tenants: the ranking is approximate (no tenant
    // here has more than 1/64 of them), but no row ever claims more than it can have
    // had: count - error is at most the largest true count (acme's 5).
    for row in admitted {
        let (c, e) = (
            row["count"].as_u64().unwrap(),
            row["error"].as_u64().unwrap(),
        );
        assert!(c >= e && c - e <= 5, "{row}");
    }
    // Bad queries get a problem, not a default.
    for q in [
        "minutes=0",
        "minutes=16",
        "rows=51",
        "rows=x",
        "tenant=acme",
    ] {
        let (s, body) = call(&app, &format!("/ops/top?{q}"), &[("authorization", &auth)]).await;
        assert_eq!(s, 400, "{q}: {body}");
    }
    // The tenants never became metric labels.
    let (_, metrics) = call(&app, "/metrics", &[("authorization", &auth)]).await;
    assert!(!metrics.contains("zz-invented") && !metrics.contains("acme"));
    guard.shutdown().await;
}
