//! The cache on every backend — memory, a single Redis node and the 3-master cluster:
//! the programmatic API and the HTTP layer.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::json;
use tenant_guard::backend::Backend;
use tenant_guard::cache::{Cache, CacheError, CacheLayer, CacheStatus, Category};
use tenant_guard::config::Config;
use tenant_guard::keys::Keys;
use tenant_guard::metrics::Metrics;
use tenant_guard::tenant::{TenantLayer, TenantResolver};
use tower::ServiceExt;

use common::Target as Kind;

struct Fixture {
    cache: Cache,
    backend: Backend,
    metrics: Metrics,
    _server: Option<common::RedisServer>,
}

fn fixture(kind: Kind, vars: &[(&str, &str)]) -> Fixture {
    let (all, server) = common::target_vars(kind, vars);
    let config = Config::from_vars(all).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    Fixture {
        cache: Cache::from_config(&config, backend.clone(), &metrics),
        backend,
        metrics,
        _server: server,
    }
}

async fn rows(
    cache: &Cache,
    tenant: &tenant_guard::tenant::TenantId,
    material: &serde_json::Value,
    calls: &Arc<AtomicUsize>,
    value: u32,
) -> (u32, CacheStatus) {
    let calls = calls.clone();
    let r = cache
        .get_or_compute(tenant, &Category::query(), material, || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(value)
        })
        .await
        .unwrap();
    (r.value, r.status)
}

mod checks {
    use super::*;

    pub(super) async fn hit_miss_and_isolation(kind: Kind) {
        let f = fixture(kind, &[]);
        let a = common::unique_tenant("ca");
        let b = common::unique_tenant("cb");
        let calls = Arc::new(AtomicUsize::new(0));
        let q = json!({"sql": "select 1", "args": [1, 2], "opts": {"x": 1, "y": 2}});
        let reordered = json!({"opts": {"y": 2, "x": 1}, "args": [1, 2], "sql": "select 1"});
        assert_eq!(
            rows(&f.cache, &a, &q, &calls, 7).await,
            (7, CacheStatus::Miss)
        );
        let (v, s) = rows(&f.cache, &a, &reordered, &calls, 8).await;
        assert_eq!(v, 7, "key order changed the key");
        assert!(
            matches!(s, CacheStatus::HitL1 | CacheStatus::HitL2),
            "{s:?}"
        );
        // Tenant B never sees A's entry for the identical query.
        assert_eq!(
            rows(&f.cache, &b, &q, &calls, 9).await,
            (9, CacheStatus::Miss)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Stored under the tenant's query key with the query TTL.
        let status = f.metrics.render();
        assert!(status.contains("event=\"store\""), "{status}");
    }

    pub(super) async fn ttls_per_category_and_hook(kind: Kind) {
        let f = fixture(
            kind,
            &[("QUERY_CACHE_TTL", "1s"), ("CACHE_TTL_REPORTS", "1h")],
        );
        let t = common::unique_tenant("ttl");
        let calls = Arc::new(AtomicUsize::new(0));
        let q = json!("q");
        rows(&f.cache, &t, &q, &calls, 1).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            rows(&f.cache, &t, &q, &calls, 2).await,
            (2, CacheStatus::Miss)
        );
        // A named category lives by its own TTL; the hook overrides it from the value.
        let reports = Category::named("reports");
        for day in ["today", "2026-01-01"] {
            let r = f
                .cache
                .get_or_compute_with_ttl(
                    &t,
                    &reports,
                    &day,
                    || async move { Ok::<_, String>(day.to_string()) },
                    |d: &String| {
                        if d == "today" {
                            Duration::from_millis(300)
                        } else {
                            Duration::from_secs(600)
                        }
                    },
                )
                .await
                .unwrap();
            assert_eq!(r.status, CacheStatus::Miss);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let again = |day: &'static str| {
            let cache = f.cache.clone();
            let t = t.clone();
            let reports = reports.clone();
            async move {
                cache
                    .get_or_compute(&t, &reports, &day, || async {
                        Ok::<_, String>("fresh".to_string())
                    })
                    .await
                    .unwrap()
                    .value
            }
        };
        assert_eq!(
            again("today").await,
            "fresh",
            "today's report outlived its 300 ms"
        );
        assert_eq!(again("2026-01-01").await, "2026-01-01");
    }

    pub(super) async fn thousand_concurrent_misses_one_upstream_call(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("sf");
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let cache = f.cache.clone();
            let t = t.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute(&t, &Category::ai("m"), &"same prompt", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, String>("answer".to_string())
                    })
                    .await
                    .unwrap()
                    .value
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), "answer");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    pub(super) async fn errors_are_shared_never_cached(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("err");
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let cache = f.cache.clone();
            let t = t.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute(&t, &Category::query(), &"boom", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Long enough (many times a task's start-up and lookup) that every
                        // task joins this one failing fill; a later one would compute again.
                        tokio::time::sleep(Duration::from_millis(1_000)).await;
                        Err::<String, _>("database down".to_string())
                    })
                    .await
            }));
        }
        for task in tasks {
            match task.await.unwrap() {
                Err(CacheError::Upstream(e)) => assert_eq!(e, "database down"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let r = f
            .cache
            .get_or_compute(&t, &Category::query(), &"boom", || async {
                Ok::<_, String>("ok".to_string())
            })
            .await
            .unwrap();
        assert_eq!((r.value.as_str(), r.status), ("ok", CacheStatus::Miss));
    }

    pub(super) async fn invalidation(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("inv");
        let other = common::unique_tenant("keep");
        let calls = Arc::new(AtomicUsize::new(0));
        let (q1, q2) = (json!("q1"), json!("q2"));
        rows(&f.cache, &t, &q1, &calls, 1).await;
        rows(&f.cache, &t, &q2, &calls, 2).await;
        rows(&f.cache, &other, &q1, &calls, 3).await;
        assert!(f
            .cache
            .invalidate(&t, &Category::query(), &q1)
            .await
            .unwrap());
        assert_eq!(
            rows(&f.cache, &t, &q1, &calls, 10).await,
            (10, CacheStatus::Miss)
        );
        assert_eq!(rows(&f.cache, &t, &q2, &calls, 20).await.0, 2);
        // A whole category of a tenant, by generation (O(1), no SCAN): other tenants and
        // other categories untouched.
        f.cache
            .get_or_compute(&t, &Category::named("reports"), &"r", || async {
                Ok::<_, String>(1)
            })
            .await
            .unwrap();
        let first = f
            .cache
            .invalidate_category(&t, &Category::query())
            .await
            .unwrap();
        assert!(first > 0);
        assert_eq!(
            rows(&f.cache, &t, &q2, &calls, 21).await,
            (21, CacheStatus::Miss)
        );
        assert_eq!(
            rows(&f.cache, &t, &q1, &calls, 22).await,
            (22, CacheStatus::Miss)
        );
        assert_eq!(rows(&f.cache, &other, &q1, &calls, 30).await.0, 3);
        let report = f
            .cache
            .get_or_compute(&t, &Category::named("reports"), &"r", || async {
                Ok::<_, String>(2)
            })
            .await
            .unwrap();
        assert_eq!((report.value, report.status.header()), (1, "HIT"));
        // Entries computed after the bump are cached again.
        assert_eq!(rows(&f.cache, &t, &q2, &calls, 23).await.0, 21);
        // A whole tenant: every kind of entry.
        f.cache
            .get_or_compute(&t, &Category::ai("m"), &"p", || async {
                Ok::<_, String>(1)
            })
            .await
            .unwrap();
        let g1 = f.cache.invalidate_tenant(&t).await.unwrap();
        assert_eq!(f.cache.invalidate_tenant(&t).await.unwrap(), g1 + 1);
        for (category, material) in [
            (Category::query(), "q2"),
            (Category::ai("m"), "p"),
            (Category::named("reports"), "r"),
        ] {
            let r = f
                .cache
                .get_or_compute(&t, &category, &material, || async { Ok::<_, String>(9) })
                .await
                .unwrap();
            assert_eq!((r.value, r.status), (9, CacheStatus::Miss), "{category:?}");
        }
        assert_eq!(rows(&f.cache, &other, &q1, &calls, 31).await.0, 3);
    }

    pub(super) async fn undecodable_entry_is_a_miss(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("garbage");
        let calls = Arc::new(AtomicUsize::new(0));
        let q = json!("q");
        rows(&f.cache, &t, &q, &calls, 1).await;
        // Overwrite every query entry of the tenant with junk, behind the cache's back.
        let pattern = Keys::default().kind_pattern(tenant_guard::keys::KeyKind::Query, &t);
        let mut junked = 0;
        f.backend.delete_matching(&pattern).await.unwrap();
        // The key is the SHA-256 of the canonical material (length-prefixed parts).
        let key = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            let canon = b"\"q\"";
            h.update((8u64).to_le_bytes());
            h.update(b"material");
            h.update((canon.len() as u64).to_le_bytes());
            h.update(canon);
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            Keys::default().query(&t, &hex)
        };
        for junk in [&b"TGC1\xff\xff\xff\xffjunk"[..], b"not an envelope", b""] {
            f.backend
                .set(&key, junk, Some(Duration::from_secs(60)))
                .await
                .unwrap();
            junked += 1;
            let (v, s) = rows(&f.cache, &t, &q, &calls, 100 + junked).await;
            assert_eq!((v, s), (100 + junked, CacheStatus::Miss), "junk #{junked}");
            // The recomputed value replaced the junk.
            assert!(f
                .backend
                .get(&key)
                .await
                .unwrap()
                .unwrap()
                .starts_with(b"TGC1"));
            if kind != Kind::Memory {
                // Drop L1 so the next read goes to the store again.
                f.cache
                    .invalidate(&t, &Category::query(), &q)
                    .await
                    .unwrap();
            } else {
                f.backend.delete(&key).await.unwrap();
            }
        }
    }

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
        let (_, x, age, body2) =
            send(&app, "GET", "/reports/1?a=1&b=2", t.as_str(), None, "").await;
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
        let same = r#"{"temperature":0.1,"stream":false,"request_id":"r-9","prompt":"hi","model":"gpt-x"}"#;
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
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Memory).await } )*
        }
        mod redis_single {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Redis).await } )*
        }
        mod redis_cluster {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Cluster).await } )*
        }
    };
}

conformance!(
    hit_miss_and_isolation,
    ttls_per_category_and_hook,
    thousand_concurrent_misses_one_upstream_call,
    errors_are_shared_never_cached,
    invalidation,
    undecodable_entry_is_a_miss,
    http_layer,
);

#[tokio::test]
async fn hit_ratio_in_cache_status() {
    let f = fixture(Kind::Memory, &[]);
    let t = common::unique_tenant("ratio");
    let calls = Arc::new(AtomicUsize::new(0));
    let q = json!("q");
    for _ in 0..4 {
        rows(&f.cache, &t, &q, &calls, 1).await;
    }
    let ops = tenant_guard::ops::router(f.backend.clone(), f.metrics.clone());
    let res = ops
        .oneshot(Request::get("/cache/status").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["cache"]["misses"], 1, "{v}");
    assert_eq!(v["cache"]["hits_l2"], 3, "{v}");
    assert_eq!(v["cache"]["hit_ratio"], 0.75, "{v}");
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
