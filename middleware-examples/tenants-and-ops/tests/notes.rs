//! The example's routes on the memory backend.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn notes_are_per_tenant() {
    let config = tenant_guard::config::Config::from_vars([("REDIS_ENABLED", "false")]).unwrap();
    let app = example_tenants_and_ops::app(&config).unwrap();
    let post = Request::post("/notes/hello")
        .header("x-tenant-id", "acme")
        .body(Body::from("world"))
        .unwrap();
    assert_eq!(call(&app, post).await.0, StatusCode::CREATED);
    let get = |t: &str| {
        Request::get("/notes/hello")
            .header("x-tenant-id", t)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        call(&app, get("acme")).await,
        (StatusCode::OK, "world".into())
    );
    assert_eq!(call(&app, get("beta")).await.0, StatusCode::NOT_FOUND);
    let (status, body) = call(
        &app,
        Request::get("/notes/hello").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("X-Tenant-ID"));
    let (status, body) = call(
        &app,
        Request::get("/cache/status").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"memory\""), "{body}");
}
