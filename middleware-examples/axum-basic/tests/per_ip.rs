//! Each client IP gets its own 5 requests per endpoint.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use tower::ServiceExt;

async fn get(app: &axum::Router, path: &str, ip: &str) -> http::Response<Body> {
    let mut req = http::Request::get(path).body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(
        format!("{ip}:1234").parse::<SocketAddr>().unwrap(),
    ));
    app.clone().oneshot(req).await.unwrap()
}

#[tokio::test]
async fn five_per_ip_and_endpoint() {
    let app = example_axum_basic::app();
    for _ in 0..5 {
        let res = get(&app, "/hello", "192.0.2.1").await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("ratelimit"));
    }
    let res = get(&app, "/hello", "192.0.2.1").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // Another endpoint and another client are unaffected.
    assert_eq!(get(&app, "/slow", "192.0.2.1").await.status(), 200);
    assert_eq!(get(&app, "/hello", "192.0.2.2").await.status(), 200);
}
