//! The layered tower service, called directly.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};

fn req(tenant: Option<&str>) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::get("/anything");
    if let Some(t) = tenant {
        b = b.header("x-tenant-id", t);
    }
    b.body(Full::default()).unwrap()
}

#[tokio::test]
async fn tenants_and_limits_without_axum() {
    let mut svc = example_tower_service::service::<Full<Bytes>>();
    for _ in 0..3 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(req(Some("acme")))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "hello acme\n"
        );
    }
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(req(Some("acme")))
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(req(Some("beta")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = svc.ready().await.unwrap().call(req(None)).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}
