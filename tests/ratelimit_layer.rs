//! RateLimitLayer in an axum app: headers, 429 bodies, route templates, identities.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension};
use axum::routing::{get, post};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Decision, RateLimitLayer, RateLimiter, UserId};
use tenant_guard::tenant::TenantLayer;

/// Which store the app under test uses; a test's servers live as long as its `App`.
#[derive(Clone, Copy, Debug)]
enum Store {
    Memory,
    Redis,
    Cluster,
}

struct App {
    router: Router,
    _server: Option<common::RedisServer>,
}

impl std::ops::Deref for App {
    type Target = Router;
    fn deref(&self) -> &Router {
        &self.router
    }
}

fn app_on(store: Store, vars: &[(&str, &str)]) -> App {
    let mut all: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut server = None;
    match store {
        Store::Memory => {}
        Store::Redis => {
            let s = common::RedisServer::start();
            all.push(("REDIS_URL".into(), s.url()));
            server = Some(s);
            common::strict_on_redis(&mut all);
        }
        Store::Cluster => {
            all.push((
                "REDIS_CLUSTER_NODES".into(),
                common::shared_cluster().nodes_var.clone(),
            ));
            common::strict_on_redis(&mut all);
        }
    }
    App {
        router: router(all),
        _server: server,
    }
}

fn app(vars: &[(&str, &str)]) -> Router {
    router(
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn router(vars: Vec<(String, String)>) -> Router {
    let config = Config::from_vars(vars).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    Router::new()
        .route("/items", get(|| async { "items" }))
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/remaining",
            get(|Extension(d): Extension<Decision>| async move {
                d.most_restrictive().unwrap().remaining.to_string()
            }),
        )
        .route("/api/ai/complete", post(|| async { "done" }))
        .layer(RateLimitLayer::from_config(&config, limiter))
        .layer(TenantLayer::from_config(&config.tenant))
}

struct Req {
    path: &'static str,
    method: http::Method,
    tenant: String,
    peer: &'static str,
    headers: Vec<(&'static str, String)>,
    user: Option<&'static str>,
}

impl Req {
    fn get(path: &'static str) -> Self {
        Self {
            path,
            method: http::Method::GET,
            tenant: "acme".into(),
            peer: "192.0.2.10:5000",
            headers: vec![],
            user: None,
        }
    }
    fn tenant(mut self, t: &tenant_guard::tenant::TenantId) -> Self {
        self.tenant = t.to_string();
        self
    }
    fn peer(mut self, p: &'static str) -> Self {
        self.peer = p;
        self
    }
    fn header(mut self, k: &'static str, v: &str) -> Self {
        self.headers.push((k, v.to_string()));
        self
    }
    fn build(self) -> Request<Body> {
        let mut b = Request::builder()
            .method(self.method)
            .uri(self.path)
            .header("x-tenant-id", self.tenant.as_str());
        for (k, v) in &self.headers {
            b = b.header(*k, v);
        }
        let mut req = b.body(Body::empty()).unwrap();
        let peer: SocketAddr = self.peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(u) = self.user {
            req.extensions_mut().insert(UserId::new(u));
        }
        req
    }
}

async fn send(app: &Router, req: Req) -> (StatusCode, http::HeaderMap, String) {
    let res = app.clone().oneshot(req.build()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn headers_and_429_problem() {
    let app = app(&[
        ("RATE_LIMIT_MAX", "2"),
        ("RATE_LIMIT_WINDOW", "15m"),
        ("RATE_LIMIT_LEGACY_HEADERS", "true"),
    ]);
    let (s, h, _) = send(&app, Req::get("/items")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["ratelimit-policy"], "\"per-endpoint\";q=2;w=900");
    let rl = h["ratelimit"].to_str().unwrap();
    assert!(rl.starts_with("\"per-endpoint\";r=1;t="), "{rl}");
    assert_eq!(h["x-ratelimit-limit"], "2");
    assert_eq!(h["x-ratelimit-remaining"], "1");
    send(&app, Req::get("/items")).await;
    let (s, h, body) = send(&app, Req::get("/items")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h["content-type"], "application/problem+json");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    // Compact windows free units one bucket (W/30 = 30 s) at a time: up to W + 30 s.
    assert!((890..=931).contains(&retry), "{retry}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["rule"], "per-endpoint");
    assert_eq!(json["limit"], 2);
    assert_eq!(json["window_seconds"], 900);
    assert_eq!(json["status"], 429);
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("allows 2 per 15m"),
        "{json}"
    );
}

#[tokio::test]
async fn handlers_see_the_decision() {
    let app = app(&[("RATE_LIMIT_MAX", "5")]);
    let (_, _, body) = send(&app, Req::get("/remaining")).await;
    assert_eq!(body, "4");
}

mod on_every_store {
    use super::*;

    pub(super) async fn counters_follow_route_templates_not_raw_paths(store: Store) {
        let app = app_on(store, &[("RATE_LIMIT_MAX", "2")]);
        let t = common::unique_tenant("rt");
        assert_eq!(
            send(&app, Req::get("/users/1").tenant(&t)).await.0,
            StatusCode::OK
        );
        assert_eq!(
            send(&app, Req::get("/users/2").tenant(&t)).await.0,
            StatusCode::OK
        );
        // A third id is the same endpoint: GET /users/{id}.
        assert_eq!(
            send(&app, Req::get("/users/3").tenant(&t)).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            send(&app, Req::get("/items").tenant(&t)).await.0,
            StatusCode::OK
        );
    }

    pub(super) async fn ipv6_clients_are_grouped_by_64(store: Store) {
        let app = app_on(store, &[("RATE_LIMIT_MAX", "2")]);
        let t = common::unique_tenant("v6");
        let a = Req::get("/items").tenant(&t).peer("[2001:db8:1:2::a]:1");
        assert_eq!(send(&app, a).await.0, StatusCode::OK);
        let b = Req::get("/items")
            .tenant(&t)
            .peer("[2001:db8:1:2:ffff::b]:2");
        assert_eq!(send(&app, b).await.0, StatusCode::OK);
        let c = Req::get("/items").tenant(&t).peer("[2001:db8:1:2::c]:3");
        assert_eq!(send(&app, c).await.0, StatusCode::TOO_MANY_REQUESTS);
        let other64 = Req::get("/items").tenant(&t).peer("[2001:db8:1:3::a]:1");
        assert_eq!(send(&app, other64).await.0, StatusCode::OK);
    }

    pub(super) async fn spoofed_forwarded_for_from_untrusted_peer_is_ignored(store: Store) {
        let app = app_on(
            store,
            &[
                ("RATE_LIMIT_MAX", "2"),
                ("RATE_LIMIT_TRUSTED_PROXIES", "10.0.0.0/8"),
            ],
        );
        let t = common::unique_tenant("xff");
        // An untrusted client rotating X-Forwarded-For still hits its own counter.
        for (i, want) in [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
        ]
        .into_iter()
        .enumerate()
        {
            let r = Req::get("/items")
                .tenant(&t)
                .peer("198.51.100.9:1")
                .header("x-forwarded-for", &format!("203.0.113.{i}"));
            assert_eq!(send(&app, r).await.0, want);
        }
        // Behind the trusted proxy, the forwarded client is the identity.
        for ip in ["203.0.113.50", "203.0.113.51"] {
            for _ in 0..2 {
                let r = Req::get("/items")
                    .tenant(&t)
                    .peer("10.0.0.2:1")
                    .header("x-forwarded-for", &format!("6.6.6.6, {ip}"));
                assert_eq!(send(&app, r).await.0, StatusCode::OK, "{ip}");
            }
        }
    }

    pub(super) async fn headers_and_retry_after(store: Store) {
        let app = app_on(
            store,
            &[("RATE_LIMIT_MAX", "1"), ("RATE_LIMIT_WINDOW", "1m")],
        );
        let t = common::unique_tenant("hdr");
        let (s, h, _) = send(&app, Req::get("/items").tenant(&t)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["ratelimit-policy"], "\"per-endpoint\";q=1;w=60");
        let (s, h, body) = send(&app, Req::get("/items").tenant(&t)).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((55..=63).contains(&retry), "{retry}");
        assert!(body.contains("\"rule\":\"per-endpoint\""), "{body}");
    }
}

macro_rules! on_every_store {
    ($($check:ident),* $(,)?) => {
        $(
            mod $check {
                #[tokio::test] async fn memory() { super::on_every_store::$check(super::Store::Memory).await }
                #[tokio::test] async fn redis() { super::on_every_store::$check(super::Store::Redis).await }
                #[tokio::test] async fn cluster() { super::on_every_store::$check(super::Store::Cluster).await }
            }
        )*
    };
}

on_every_store!(
    counters_follow_route_templates_not_raw_paths,
    ipv6_clients_are_grouped_by_64,
    spoofed_forwarded_for_from_untrusted_peer_is_ignored,
    headers_and_retry_after,
);

#[tokio::test]
async fn user_ids_and_costs() {
    let app = app(&[
        ("RATE_LIMIT_MAX", "100"),
        ("RATE_LIMIT_ENDPOINTS", "ai: POST /api/ai/{*rest} = 10/1m"),
        ("RATE_LIMIT_COSTS", "POST /api/ai/complete = 4"),
    ]);
    let ai = |user| {
        let mut r = Req::get("/api/ai/complete");
        r.method = http::Method::POST;
        r.user = Some(user);
        r
    };
    assert_eq!(send(&app, ai("alice")).await.0, StatusCode::OK);
    assert_eq!(send(&app, ai("alice")).await.0, StatusCode::OK);
    let (s, _, body) = send(&app, ai("alice")).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "8 of 10 used, a cost of 4 does not fit"
    );
    assert!(body.contains("\"rule\":\"ai\""), "{body}");
    assert!(body.contains("\"cost\":4"), "{body}");
    // Another user of the same IP is counted separately.
    assert_eq!(send(&app, ai("bob")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn without_tenant_layer_everything_is_one_global_tenant() {
    let config = Config::from_vars([("RATE_LIMIT_MAX", "1")]).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    let app: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(&config, limiter));
    let req = || {
        let mut r = Request::get("/").body(Body::empty()).unwrap();
        r.extensions_mut()
            .insert(ConnectInfo("192.0.2.1:1".parse::<SocketAddr>().unwrap()));
        r
    };
    assert_eq!(
        app.clone().oneshot(req()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone().oneshot(req()).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Over a real socket with ConnectInfo, on Redis.
#[tokio::test]
async fn real_http_server_on_redis() {
    let server = common::RedisServer::start();
    let app = app(&[
        ("REDIS_URL", &server.url()),
        ("RATE_LIMIT_MAX", "3"),
        ("RATE_LIMIT_WINDOW", "1m"),
        // A failing script answers 503 here, never the in-process limit.
        ("RATE_LIMIT_OUTAGE", "closed"),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let mut codes = Vec::new();
    for _ in 0..5 {
        let code = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(
                b"GET /items HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: acme\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out.split_whitespace().nth(1).unwrap().to_string()
        })
        .await
        .unwrap();
        codes.push(code);
    }
    assert_eq!(codes, ["200", "200", "200", "429", "429"]);
    srv.abort();
}
