//! The cache on every backend — memory, a single Redis node and the 3-master cluster:
//! the programmatic API and the HTTP layer.

#[path = "../common/mod.rs"]
mod common;
mod http;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
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
        assert!(
            f.cache
                .invalidate(&t, &Category::query(), &q1)
                .await
                .unwrap()
        );
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
            assert!(
                f.backend
                    .get(&key)
                    .await
                    .unwrap()
                    .unwrap()
                    .starts_with(b"TGC1")
            );
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

    pub(super) use super::http::http_layer;
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
