//! The HTTP layer on every backend, and its per-request TTL hook.

use super::*;

pub(super) async fn http_layer(kind: Kind) {
    let f = fixture(kind, &[("CACHE_MAX_BODY_BYTES", "1000")]);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let count = move || {
        c.fetch_add(1, Ordering::SeqCst);
    };
    let (c1, c2, c3, c4, c5) = (
        count.clone(),
        count.clone(),
        count.clone(),
        count.clone(),
        count.clone(),
    );
    let app: Router = Router::new()
        .route(
            "/reports/{day}",
            get(move || async move {
                c1();
                axum::Json(json!({"rows": 42}))
            }),
        )
        .route(
            "/ai",
            post(move |body: String| async move {
                c2();
                format!("completion for {} bytes", body.len())
            }),
        )
        .route(
            "/cookie",
            get(move || async move {
                c3();
                ([("set-cookie", "a=b")], "with cookie")
            }),
        )
        .route(
            "/private",
            get(move || async move {
                c4();
                ([("cache-control", "private, max-age=60")], "mine")
            }),
        )
        .route(
            "/big",
            get(move || async move {
                c5();
                "x".repeat(5000)
            }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "nope") }),
        )
        .route_layer(CacheLayer::query(f.cache.clone()))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    let ai_app: Router = Router::new()
        .route(
            "/ai",
            post(|body: String| async move { format!("completion for {} bytes", body.len()) }),
        )
        .route_layer(CacheLayer::ai(f.cache.clone()))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    let t = common::unique_tenant("http");
    let u = common::unique_tenant("http2");
    let send =
        |app: &Router, method: &str, path: &str, tenant: &str, cc: Option<&str>, body: &str| {
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("x-tenant-id", tenant);
            if let Some(cc) = cc {
                req = req.header("cache-control", cc);
            }
            let req = req
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let app = app.clone();
            async move {
                let res = app.oneshot(req).await.unwrap();
                let x = res
                    .headers()
                    .get("x-cache")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let age = res.headers().get("age").is_some();
                let status = res.status();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (status, x, age, String::from_utf8_lossy(&body).into_owned())
            }
        };
    let (s, x, age, body) = send(&app, "GET", "/reports/1?b=2&a=1", t.as_str(), None, "").await;
    assert_eq!((s, x.as_str(), age), (StatusCode::OK, "MISS", false));
    let (_, x, age, body2) = send(&app, "GET", "/reports/1?a=1&b=2", t.as_str(), None, "").await;
    assert_eq!((x.as_str(), age, body2), ("HIT", true, body.clone()));
    // Path parameters are part of the key; so is the tenant.
    assert_eq!(
        send(&app, "GET", "/reports/2?a=1&b=2", t.as_str(), None, "")
            .await
            .1,
        "MISS"
    );
    assert_eq!(
        send(&app, "GET", "/reports/1?a=1&b=2", u.as_str(), None, "")
            .await
            .1,
        "MISS"
    );
    // Request no-cache: no read (MISS) but the write happens; no-store: no write.
    assert_eq!(
        send(
            &app,
            "GET",
            "/reports/1?a=1&b=2",
            t.as_str(),
            Some("max-age=0, no-cache"),
            ""
        )
        .await
        .1,
        "MISS"
    );
    assert_eq!(
        send(&app, "GET", "/reports/3", t.as_str(), Some("no-store"), "")
            .await
            .1,
        "MISS"
    );
    assert_eq!(
        send(&app, "GET", "/reports/3", t.as_str(), None, "")
            .await
            .1,
        "MISS"
    );
    assert_eq!(
        send(&app, "GET", "/reports/3", t.as_str(), None, "")
            .await
            .1,
        "HIT"
    );
    assert_eq!(
        send(
            &app,
            "GET",
            "/reports/3",
            t.as_str(),
            Some("no-store, no-cache"),
            ""
        )
        .await
        .1,
        "BYPASS"
    );
    // Never stored: Set-Cookie, private, non-200, bodies over the limit.
    for path in ["/cookie", "/private", "/big", "/missing"] {
        for _ in 0..2 {
            let (_, x, _, body) = send(&app, "GET", path, t.as_str(), None, "").await;
            assert_eq!(x, "BYPASS", "{path}");
            if path == "/big" {
                assert_eq!(body.len(), 5000, "big body cut");
            }
        }
    }
    // JSON bodies: key order and whitespace do not matter.
    let (_, x, _, _) = send(
        &app,
        "POST",
        "/ai",
        t.as_str(),
        None,
        r#"{"a":1,"b":[1,2]}"#,
    )
    .await;
    assert_eq!(x, "MISS");
    let (_, x, _, _) = send(
        &app,
        "POST",
        "/ai",
        t.as_str(),
        None,
        "{ \"b\": [1, 2],\n \"a\": 1 }",
    )
    .await;
    assert_eq!(x, "HIT");
    // AI: request ids are not part of the key; the model, the parameters and whether
    // the answer is streamed are.
    let base = r#"{"model":"gpt-x","prompt":"hi","temperature":0.1}"#;
    assert_eq!(
        send(&ai_app, "POST", "/ai", t.as_str(), None, base).await.1,
        "MISS"
    );
    let same =
        r#"{"temperature":0.1,"stream":false,"request_id":"r-9","prompt":"hi","model":"gpt-x"}"#;
    assert_eq!(
        send(&ai_app, "POST", "/ai", t.as_str(), None, same).await.1,
        "HIT"
    );
    let streamed = r#"{"model":"gpt-x","prompt":"hi","temperature":0.1,"stream":true}"#;
    assert_eq!(
        send(&ai_app, "POST", "/ai", t.as_str(), None, streamed)
            .await
            .1,
        "MISS"
    );
    let hotter = r#"{"model":"gpt-x","prompt":"hi","temperature":0.9}"#;
    assert_eq!(
        send(&ai_app, "POST", "/ai", t.as_str(), None, hotter)
            .await
            .1,
        "MISS"
    );
    let other_model = r#"{"model":"gpt-y","prompt":"hi","temperature":0.1}"#;
    assert_eq!(
        send(&ai_app, "POST", "/ai", t.as_str(), None, other_model)
            .await
            .1,
        "MISS"
    );
    let ai_keys = f
        .backend
        .delete_matching(&Keys::default().prefix_pattern(
            tenant_guard::keys::KeyKind::Ai,
            &t,
            &["gpt-x"],
        ))
        .await
        .unwrap();
    // base, hotter and the streamed answer (another model elsewhere).
    assert_eq!(ai_keys, 3, "AI entries live under ai:{{tenant}}:<model>:");
    assert!(calls.load(Ordering::SeqCst) >= 8);
}

#[tokio::test]
async fn http_ttl_hook_decides_per_request() {
    let f = fixture(Kind::Memory, &[]);
    let app: Router = Router::new()
        .route("/reports/{day}", get(|| async { "rows" }))
        .route_layer(
            CacheLayer::query(f.cache.clone()).ttl_with(|parts, status| {
                assert_eq!(status, StatusCode::OK);
                // Today's report lives 1 s (several times what the MISS-then-HIT below can
                // take), others the category TTL.
                parts
                    .uri
                    .path()
                    .ends_with("/today")
                    .then(|| Duration::from_secs(1))
            }),
        );
    let x = |path: &'static str| {
        let app = app.clone();
        async move {
            let res = app
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            res.headers()["x-cache"].to_str().unwrap().to_string()
        }
    };
    for path in ["/reports/today", "/reports/2020-01-01"] {
        assert_eq!(x(path).await, "MISS");
        assert_eq!(x(path).await, "HIT");
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        x("/reports/today").await,
        "MISS",
        "the hook's TTL was not used"
    );
    assert_eq!(x("/reports/2020-01-01").await, "HIT");
}
