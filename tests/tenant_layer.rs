//! TenantLayer through axum: every resolver, default tenants, and hostile input sent as raw
//! bytes over a real loopback socket.

use std::io::{Read, Write};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

use tenant_guard::config::Config;
use tenant_guard::tenant::{TenantError, TenantId, TenantLayer, TenantResolver};

fn app(layer: TenantLayer) -> Router {
    Router::new()
        .route("/whoami", get(|t: TenantId| async move { t.to_string() }))
        .route(
            "/t/{tenant}/whoami",
            get(|t: TenantId| async move { t.to_string() }),
        )
        .route(
            "/maybe",
            get(|t: Option<TenantId>| async move { format!("{t:?}") }),
        )
        .layer(layer)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), ct)
}

fn req(path: &str, headers: &[(&str, &[u8])]) -> Request<Body> {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, http::HeaderValue::from_bytes(v).unwrap());
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn header_resolver() {
    let app = app(TenantLayer::new(TenantResolver::default()));
    let (s, body, _) = send(&app, req("/whoami", &[("x-tenant-id", b"acme")])).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "acme"));

    let (s, body, ct) = send(&app, req("/whoami", &[])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["title"], "Missing tenant");
    assert_eq!(json["status"], 400);
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("`X-Tenant-ID` header"),
        "{json}"
    );
}

#[tokio::test]
async fn hostile_header_values_are_400_and_never_echoed() {
    let app = app(TenantLayer::new(TenantResolver::default()));
    let big = vec![b'a'; 10 * 1024];
    let hostile: Vec<&[u8]> = vec![
        b"*",
        b":",
        b"{",
        b"}",
        b"acme:other",
        b"{acme}",
        b"ac*me",
        b"a?b",
        b"[a]",
        b"a b",
        b"\xff\xfe",
        b"acme\xc3\xa9",
        &big,
    ];
    for v in hostile {
        let (s, body, ct) = send(&app, req("/whoami", &[("x-tenant-id", v)])).await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(v)
        );
        assert_eq!(ct.as_deref(), Some("application/problem+json"));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["title"], "Invalid tenant");
        assert!(
            body.len() < 600,
            "body echoes the input: {} bytes",
            body.len()
        );
    }
    // Twice the header: ambiguous, rejected.
    let (s, _, _) = send(
        &app,
        req("/whoami", &[("x-tenant-id", b"a"), ("x-tenant-id", b"b")]),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn default_tenant_applies_only_when_missing() {
    let layer = TenantLayer::new(TenantResolver::default())
        .default_tenant(TenantId::new("public").unwrap());
    let app = app(layer);
    let (s, body, _) = send(&app, req("/whoami", &[])).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "public"));
    // An invalid tenant is an error, not a silent fallback to the default.
    let (s, _, _) = send(&app, req("/whoami", &[("x-tenant-id", b"bad*id")])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn subdomain_resolver() {
    let app = app(TenantLayer::new(TenantResolver::subdomain("example.com")));
    let (s, body, _) = send(&app, req("/whoami", &[("host", b"Acme.example.com:8080")])).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "acme"));
    for host in [
        &b"example.com"[..],
        b"a.b.example.com",
        b"evil.org",
        b"x*.example.com",
    ] {
        let (s, _, _) = send(&app, req("/whoami", &[("host", host)])).await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(host)
        );
    }
}

#[tokio::test]
async fn path_resolvers() {
    let app = app(TenantLayer::new(TenantResolver::path_prefix("/t")));
    let (s, body, _) = send(&app, req("/t/acme/whoami", &[])).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "acme"));
    let (s, _, _) = send(&app, req("/t/a%2A/whoami", &[])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Stripping: wrap the router so routing sees the rewritten path.
    let inner = Router::new().route("/whoami", get(|t: TenantId| async move { t.to_string() }));
    let svc = TenantLayer::new(TenantResolver::path_prefix_stripped("/t")).layer(inner);
    let res = svc.oneshot(req("/t/beta/whoami", &[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"beta");
}

#[tokio::test]
async fn custom_async_resolver() {
    let resolver = TenantResolver::custom("an API key in `X-Api-Key`", |parts| {
        let key = parts.headers.get("x-api-key").cloned();
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await; // a lookup
            match key.as_ref().map(|k| k.as_bytes()) {
                Some(b"key-acme") => Ok(Some(TenantId::new("acme")?)),
                Some(_) => Err(TenantError::Invalid("unknown API key".into())),
                None => Ok(None),
            }
        }
    });
    let app = app(TenantLayer::new(resolver));
    let (s, body, _) = send(&app, req("/whoami", &[("x-api-key", b"key-acme")])).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "acme"));
    let (s, body, _) = send(&app, req("/whoami", &[("x-api-key", b"nope")])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown API key"), "{body}");
    let (s, body, _) = send(&app, req("/whoami", &[])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("X-Api-Key"), "{body}");
}

#[tokio::test]
async fn layer_from_config() {
    let cfg = Config::from_vars([
        ("TG_TENANT_SOURCE", "header:X-Org"),
        ("TG_DEFAULT_TENANT", "shared"),
    ])
    .unwrap();
    let app = app(TenantLayer::from_config(&cfg.tenant));
    let (_, body, _) = send(&app, req("/whoami", &[("x-org", b"org1")])).await;
    assert_eq!(body, "org1");
    let (_, body, _) = send(&app, req("/whoami", &[])).await;
    assert_eq!(body, "shared");
}

#[tokio::test]
async fn extractor_without_layer_is_a_clear_server_error() {
    let app: Router = Router::new().route("/x", get(|t: TenantId| async move { t.to_string() }));
    let (s, body, ct) = send(&app, req("/x", &[])).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    assert!(body.contains("no TenantLayer"), "{body}");
}

/// Raw bytes over a real socket: what a hostile client actually sends.
#[tokio::test]
async fn raw_http_hostile_bytes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app(TenantLayer::new(TenantResolver::default())))
            .await
            .unwrap();
    });
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"acme".to_vec(), 200),
        (b"ac\xffme".to_vec(), 400),
        (b"acme\x01".to_vec(), 400),
        (b"{acme}:*".to_vec(), 400),
        (vec![b'a'; 10 * 1024], 400),
    ];
    for (value, want) in cases {
        let got = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req =
                b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Tenant-ID: "
                    .to_vec();
            req.extend_from_slice(&value);
            req.extend_from_slice(b"\r\n\r\n");
            s.write_all(&req).unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            let head = String::from_utf8_lossy(&out).into_owned();
            head.split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
        })
        .await
        .unwrap();
        assert_eq!(got, Some(want));
    }
    server.abort();
}
