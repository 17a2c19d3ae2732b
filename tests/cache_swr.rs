//! Stale-while-revalidate (`CACHE_SWR`, `CACHE_SWR_<CATEGORY>`) on the memory backend and
//! on a real redis-server: past its TTL and within the window an entry is served at once
//! (`X-Cache: STALE`) while one refresh runs in the background — one per key, here and
//! across instances — and the refreshed answer replaces it; past the window it is a miss.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::cache::{Cache, CacheLayer, CacheStatus, Category};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::tenant::{TenantId, TenantLayer};

/// The upstream: answers `v<n>` for its n-th call; every call after the first waits for
/// the gate.
struct Upstream {
    calls: AtomicUsize,
    gate: watch::Sender<bool>,
}

async fn rooms(State(up): State<Arc<Upstream>>) -> String {
    let n = up.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n > 1 {
        let _ = up.gate.subscribe().wait_for(|open| *open).await;
    }
    format!("v{n}")
}

fn cache(vars: &[(&str, String)]) -> Cache {
    let config = Config::from_vars(vars.iter().cloned()).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    Cache::from_config(&config, backend, &metrics)
}

fn app(cache: Cache, up: &Arc<Upstream>) -> Router {
    Router::new()
        .route("/api/rooms", get(rooms))
        .with_state(up.clone())
        .route_layer(CacheLayer::query(cache))
        .layer(TenantLayer::from_config(&Default::default()))
}

/// One request (within 5 s: a stale answer does not wait for the refresh, which waits for
/// the gate): where it came from and its body.
async fn send(app: &Router) -> (CacheStatus, String) {
    let req = http::Request::get("/api/rooms")
        .header("x-tenant-id", "acme")
        .body(Body::empty())
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(req))
        .await
        .expect("answered without waiting for the upstream")
        .unwrap();
    let status = *res.extensions().get::<CacheStatus>().unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn upstream() -> Arc<Upstream> {
    Arc::new(Upstream {
        calls: AtomicUsize::new(0),
        gate: watch::Sender::new(false),
    })
}

/// Requests until the answer is `want` (the refresh stored it), at most 5 s.
async fn until(app: &Router, want: &str) -> CacheStatus {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = send(app).await;
        if body == want {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{want} never served (last {body})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_each_backend!(
    stale_is_served_at_once_while_one_refresh_runs,
    past_the_window_it_is_a_miss,
    get_or_compute_refreshes_in_line,
);

async fn stale_is_served_at_once_while_one_refresh_runs(mut vars: Vec<(&str, String)>) {
    vars.push(("QUERY_CACHE_TTL", "1".into()));
    vars.push(("CACHE_SWR_QUERY", "30s".into()));
    let up = upstream();
    let app = app(cache(&vars), &up);
    assert_eq!(send(&app).await, (CacheStatus::Miss, "v1".into()));
    assert_eq!(send(&app).await.1, "v1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Past the TTL: served at once, and the refresh (blocked on the gate) runs once.
    for _ in 0..10 {
        assert_eq!(send(&app).await, (CacheStatus::Stale, "v1".into()));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        up.calls.load(Ordering::SeqCst),
        2,
        "one refresh for the key"
    );
    up.gate.send_replace(true);
    let status = until(&app, "v2").await;
    assert!(
        matches!(status, CacheStatus::HitL1 | CacheStatus::HitL2),
        "{status:?}"
    );
    assert_eq!(up.calls.load(Ordering::SeqCst), 2);
}

async fn past_the_window_it_is_a_miss(mut vars: Vec<(&str, String)>) {
    vars.push(("QUERY_CACHE_TTL", "1".into()));
    vars.push(("CACHE_SWR", "1s".into()));
    let up = upstream();
    up.gate.send_replace(true);
    let app = app(cache(&vars), &up);
    assert_eq!(send(&app).await, (CacheStatus::Miss, "v1".into()));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(send(&app).await, (CacheStatus::Miss, "v2".into()));
}

/// `get_or_compute` cannot refresh in the background (its compute step is the caller's):
/// past the TTL it refreshes in line, as without the window.
async fn get_or_compute_refreshes_in_line(mut vars: Vec<(&str, String)>) {
    vars.push(("QUERY_CACHE_TTL", "1".into()));
    vars.push(("CACHE_SWR", "30s".into()));
    let cache = cache(&vars);
    let t = TenantId::new("acme").unwrap();
    let calls = AtomicUsize::new(0);
    let get = || async {
        cache
            .get_or_compute(&t, &Category::query(), &"rooms", || async {
                Ok::<_, String>(calls.fetch_add(1, Ordering::SeqCst) + 1)
            })
            .await
            .unwrap()
    };
    assert_eq!(get().await.value, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get().await;
    assert_eq!((r.value, r.status), (2, CacheStatus::Miss));
    assert_eq!(get().await.value, 2);
}

/// Two instances on one Redis, both past the TTL: both serve stale, and one of them
/// refreshes (the lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_across_instances() {
    let server = common::RedisServer::start();
    let vars = vec![
        ("REDIS_URL", server.url()),
        ("QUERY_CACHE_TTL", "1".into()),
        ("CACHE_SWR", "30s".into()),
    ];
    let up = upstream();
    let (a, b) = (app(cache(&vars), &up), app(cache(&vars), &up));
    assert_eq!(send(&a).await, (CacheStatus::Miss, "v1".into()));
    assert_eq!(send(&b).await, (CacheStatus::HitL2, "v1".into()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..5 {
        assert_eq!(send(&a).await, (CacheStatus::Stale, "v1".into()));
        assert_eq!(send(&b).await, (CacheStatus::Stale, "v1".into()));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        up.calls.load(Ordering::SeqCst),
        2,
        "one refresh for both instances"
    );
    up.gate.send_replace(true);
    until(&a, "v2").await;
    until(&b, "v2").await;
    assert_eq!(up.calls.load(Ordering::SeqCst), 2);
}
