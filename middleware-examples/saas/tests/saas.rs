//! The SaaS example against a real Redis the test starts: login / cycle_id / logout,
//! logout everywhere, per-user limits from the session's user, tenant isolation.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Browser {
    app: Router,
    host: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &Router, tenant: &str) -> Self {
        Self {
            app: app.clone(),
            host: format!("{tenant}.saas.localhost"),
            cookie: None,
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let mut req = req.body(Body::from(body.to_string())).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let res = self.app.clone().oneshot(req).await.unwrap();
        if let Some(sc) = res.headers().get("set-cookie") {
            let sc = sc.to_str().unwrap();
            self.cookie =
                (!sc.contains("Max-Age=0")).then(|| sc.split(';').next().unwrap().to_string());
        }
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn app(redis: &common::RedisServer) -> Router {
    let config = example_saas::config([
        ("REDIS_URL".to_string(), redis.url()),
        (
            "SESSION_SECRET".to_string(),
            "saas-example-test-secret-0123456789abcdef".to_string(),
        ),
        (
            "RATE_LIMIT_ENDPOINTS".to_string(),
            "projects: GET /api/projects = 3/1m".to_string(),
        ),
    ])
    .unwrap();
    example_saas::app(&config).unwrap()
}

#[tokio::test]
async fn login_logout_and_cycle_id() {
    let redis = common::RedisServer::start();
    let app = app(&redis);
    let mut b = Browser::new(&app, "acme");
    assert!(b.send("GET", "/me", "").await.1.contains(r#""user":null"#));
    let (s, body) = b.send("POST", "/login", r#"{"user":"alice"}"#).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let first = b.cookie.clone().unwrap();
    assert!(
        b.send("GET", "/me", "")
            .await
            .1
            .contains(r#""user":"alice""#)
    );
    // Logging in again (privilege change) gives a new id; the old one is dead.
    b.send("POST", "/login", r#"{"user":"alice"}"#).await;
    assert_ne!(b.cookie.as_ref(), Some(&first));
    let mut stale = Browser::new(&app, "acme");
    stale.cookie = Some(first);
    assert!(
        stale
            .send("GET", "/me", "")
            .await
            .1
            .contains(r#""user":null"#)
    );
    // The same cookie on another tenant's subdomain is nobody there.
    let mut elsewhere = Browser::new(&app, "globex");
    elsewhere.cookie = b.cookie.clone();
    assert!(
        elsewhere
            .send("GET", "/me", "")
            .await
            .1
            .contains(r#""user":null"#)
    );
    // Logout.
    assert_eq!(
        b.send("POST", "/logout", "").await.0,
        StatusCode::NO_CONTENT
    );
    assert!(b.cookie.is_none());
    assert_eq!(
        b.send("POST", "/login", "not json").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn logout_everywhere_and_per_user_limits() {
    let redis = common::RedisServer::start();
    let app = app(&redis);
    let mut laptop = Browser::new(&app, "acme");
    let mut phone = Browser::new(&app, "acme");
    laptop.send("POST", "/login", r#"{"user":"bob"}"#).await;
    phone.send("POST", "/login", r#"{"user":"bob"}"#).await;
    let (_, list) = laptop.send("GET", "/sessions", "").await;
    assert_eq!(list.matches(r#""id""#).count(), 2, "{list}");
    assert_eq!(list.matches(r#""current":true"#).count(), 1, "{list}");

    // Per-user limit (3/min here): bob's two devices share it, carol has her own.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(laptop.send("GET", "/api/projects", "").await.0);
        statuses.push(phone.send("GET", "/api/projects", "").await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let mut carol = Browser::new(&app, "acme");
    carol.send("POST", "/login", r#"{"user":"carol"}"#).await;
    assert_eq!(
        carol.send("GET", "/api/projects", "").await.0,
        StatusCode::OK
    );

    let (_, revoked) = phone.send("POST", "/logout-everywhere", "").await;
    assert!(revoked.contains(r#""revoked":2"#), "{revoked}");
    assert!(
        laptop
            .send("GET", "/me", "")
            .await
            .1
            .contains(r#""user":null"#)
    );
    assert!(
        carol
            .send("GET", "/me", "")
            .await
            .1
            .contains(r#""user":"carol""#)
    );
    // The keys in Redis carry the tenant as a hash tag.
    let keys = redis.cli(&["--scan", "--pattern", "tg:session*"]);
    assert!(keys.lines().all(|k| k.contains("{acme}")), "{keys}");
}
