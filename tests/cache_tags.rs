//! Cache tags on the memory backend and on a real redis-server: a handler tags a response
//! (the `CacheTags` extension or the `X-Cache-Tags` header, which never reaches the
//! client); `invalidate_tag` drops every entry of that tenant carrying the tag, and only
//! those, in every category, here and in another instance's L1; a fill that ran across an
//! invalidation is not stored; invalid tag lists are never stored.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::cache::{Cache, CacheLayer, CacheStatus, CacheTags, Category};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::tenant::{TenantId, TenantLayer};

/// The upstream: answers `<path> v<n>` for its n-th call of a path; `/api/slow` waits for
/// the gate.
#[derive(Default)]
struct Upstream {
    calls: Mutex<HashMap<String, usize>>,
    gate: watch::Sender<bool>,
}

impl Upstream {
    fn next(&self, path: &str) -> String {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.entry(path.to_string()).or_default();
        *n += 1;
        format!("{path} v{n}")
    }
}

type Up = State<Arc<Upstream>>;

async fn rooms(State(up): Up, Path(floor): Path<String>) -> impl IntoResponse {
    let tags = CacheTags::new(["rooms".to_string(), format!("floor:{floor}")]).unwrap();
    (Extension(tags), up.next(&format!("rooms/{floor}")))
}

async fn staff(State(up): Up) -> impl IntoResponse {
    ([("x-cache-tags", "staff, people")], up.next("staff"))
}

async fn plain(State(up): Up) -> String {
    up.next("plain")
}

async fn bad(State(up): Up, Path(which): Path<String>) -> impl IntoResponse {
    let value = match which.as_str() {
        "blank" => "rooms, two words".to_string(),
        "long" => "x".repeat(65),
        _ => (0..17)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(","),
    };
    ([("x-cache-tags", value)], up.next(&which))
}

async fn slow(State(up): Up) -> impl IntoResponse {
    let _ = up.gate.subscribe().wait_for(|open| *open).await;
    (
        Extension(CacheTags::new(["rooms"]).unwrap()),
        up.next("slow"),
    )
}

fn cache(vars: &[(&str, String)]) -> Cache {
    let config = Config::from_vars(vars.iter().cloned()).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    Cache::from_config(&config, backend, &metrics)
}

fn app(cache: Cache, up: &Arc<Upstream>) -> Router {
    Router::new()
        .route("/api/rooms/{floor}", get(rooms))
        .route("/api/staff", get(staff))
        .route("/api/plain", get(plain))
        .route("/api/bad/{which}", get(bad))
        .route("/api/slow", get(slow))
        .with_state(up.clone())
        .route_layer(CacheLayer::query(cache))
        .layer(TenantLayer::from_config(&Default::default()))
}

/// One request: where it came from and its body; no tag ever reaches the client.
async fn send(app: &Router, tenant: &str, path: &str) -> (CacheStatus, String) {
    send_with(app, tenant, path, &[]).await
}

async fn send_with(
    app: &Router,
    tenant: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (CacheStatus, String) {
    let mut req = http::Request::get(path).header("x-tenant-id", tenant);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Body::empty()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(req))
        .await
        .expect("answered")
        .unwrap();
    assert!(!res.headers().contains_key("x-cache-tags"), "{path}");
    let status = *res.extensions().get::<CacheStatus>().unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn hit(s: CacheStatus) -> bool {
    matches!(s, CacheStatus::HitL1 | CacheStatus::HitL2)
}

on_each_backend!(
    a_tag_drops_what_carries_it_and_nothing_else,
    tags_are_per_tenant,
    invalid_tag_lists_are_never_stored,
    a_fill_across_an_invalidation_is_not_stored,
    a_caller_after_an_invalidation_does_not_join_an_older_fill,
    values_of_every_category_carry_tags,
    tags_never_reach_the_client_on_a_bypass,
);

async fn a_tag_drops_what_carries_it_and_nothing_else(vars: Vec<(&str, String)>) {
    let cache = cache(&vars);
    let up = Arc::new(Upstream::default());
    let app = app(cache.clone(), &up);
    let acme = TenantId::new("acme").unwrap();
    for path in ["/api/rooms/3", "/api/rooms/4", "/api/staff", "/api/plain"] {
        assert_eq!(
            send(&app, "acme", path).await.0,
            CacheStatus::Miss,
            "{path}"
        );
        assert!(hit(send(&app, "acme", path).await.0), "{path}");
    }
    cache.invalidate_tag(&acme, "floor:3").await.unwrap();
    assert_eq!(
        send(&app, "acme", "/api/rooms/3").await,
        (CacheStatus::Miss, "rooms/3 v2".into())
    );
    for path in ["/api/rooms/4", "/api/staff", "/api/plain"] {
        let (status, body) = send(&app, "acme", path).await;
        assert!(
            hit(status) && body.ends_with("v1"),
            "{path}: {status:?} {body}"
        );
    }
    // One tag of two (from the header) is enough.
    cache.invalidate_tag(&acme, "people").await.unwrap();
    assert_eq!(
        send(&app, "acme", "/api/staff").await,
        (CacheStatus::Miss, "staff v2".into())
    );
    cache.invalidate_tag(&acme, "rooms").await.unwrap();
    assert_eq!(
        send(&app, "acme", "/api/rooms/3").await,
        (CacheStatus::Miss, "rooms/3 v3".into())
    );
    assert_eq!(
        send(&app, "acme", "/api/rooms/4").await,
        (CacheStatus::Miss, "rooms/4 v2".into())
    );
    assert!(hit(send(&app, "acme", "/api/plain").await.0));
    assert!(hit(send(&app, "acme", "/api/rooms/4").await.0));
    // A tag nobody carries, and one that is not a tag.
    cache.invalidate_tag(&acme, "nobody").await.unwrap();
    assert!(cache.invalidate_tag(&acme, "two words").await.is_err());
    assert!(cache.invalidate_tag(&acme, "").await.is_err());
    assert!(hit(send(&app, "acme", "/api/rooms/4").await.0));
}

async fn tags_are_per_tenant(vars: Vec<(&str, String)>) {
    let cache = cache(&vars);
    let up = Arc::new(Upstream::default());
    let app = app(cache.clone(), &up);
    for tenant in ["acme", "globex"] {
        assert_eq!(
            send(&app, tenant, "/api/rooms/3").await.0,
            CacheStatus::Miss
        );
    }
    cache
        .invalidate_tag(&TenantId::new("acme").unwrap(), "rooms")
        .await
        .unwrap();
    assert_eq!(
        send(&app, "acme", "/api/rooms/3").await.0,
        CacheStatus::Miss
    );
    assert!(hit(send(&app, "globex", "/api/rooms/3").await.0));
}

async fn invalid_tag_lists_are_never_stored(vars: Vec<(&str, String)>) {
    let up = Arc::new(Upstream::default());
    let app = app(cache(&vars), &up);
    for which in ["blank", "long", "many"] {
        let path = format!("/api/bad/{which}");
        for n in 1..=2 {
            assert_eq!(
                send(&app, "acme", &path).await,
                (CacheStatus::Bypass, format!("{which} v{n}")),
                "{path}"
            );
        }
    }
}

/// Without the tenant's tag epoch, the fill (whose tags are known only once it answers)
/// would read the tag's new generation and store what it computed before the invalidation.
async fn a_fill_across_an_invalidation_is_not_stored(vars: Vec<(&str, String)>) {
    let cache = cache(&vars);
    let up = Arc::new(Upstream::default());
    let app = app(cache.clone(), &up);
    let acme = TenantId::new("acme").unwrap();
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "acme", "/api/slow").await }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.gate.receiver_count() == 0 {
        assert!(Instant::now() < deadline, "the upstream never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache.invalidate_tag(&acme, "rooms").await.unwrap();
    up.gate.send_replace(true);
    assert_eq!(
        first.await.unwrap(),
        (CacheStatus::Miss, "slow v1".into()),
        "the caller still gets its answer"
    );
    assert_eq!(
        send(&app, "acme", "/api/slow").await,
        (CacheStatus::Miss, "slow v2".into()),
        "computed before the invalidation: not stored"
    );
    assert!(hit(send(&app, "acme", "/api/slow").await.0));
}

/// A fill that started before an invalidation is not joined by a caller who arrives after
/// it (that caller's answer would predate the invalidation it came after).
async fn a_caller_after_an_invalidation_does_not_join_an_older_fill(vars: Vec<(&str, String)>) {
    let cache = cache(&vars);
    let up = Arc::new(Upstream::default());
    let app = app(cache.clone(), &up);
    let spawn_send = || {
        let app = app.clone();
        tokio::spawn(async move { send(&app, "acme", "/api/slow").await })
    };
    let first = spawn_send();
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.gate.receiver_count() == 0 {
        assert!(Instant::now() < deadline, "the upstream never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache
        .invalidate_tag(&TenantId::new("acme").unwrap(), "rooms")
        .await
        .unwrap();
    let second = spawn_send();
    tokio::time::sleep(Duration::from_millis(50)).await;
    up.gate.send_replace(true);
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(a.0, CacheStatus::Miss);
    assert_eq!(b.0, CacheStatus::Miss, "the second joined the older fill");
    assert_ne!(a.1, b.1, "one upstream answer for both");
}

/// Requests the cache does not touch (`no-cache, no-store`) still lose the tags header.
async fn tags_never_reach_the_client_on_a_bypass(vars: Vec<(&str, String)>) {
    let up = Arc::new(Upstream::default());
    let app = app(cache(&vars), &up);
    let no = [("cache-control", "no-cache, no-store")];
    for path in ["/api/staff", "/api/rooms/3", "/api/bad/blank"] {
        let (status, _) = send_with(&app, "acme", path, &no).await;
        assert_eq!(status, CacheStatus::Bypass, "{path}");
    }
}

async fn values_of_every_category_carry_tags(vars: Vec<(&str, String)>) {
    let cache = cache(&vars);
    let acme = TenantId::new("acme").unwrap();
    let tags = CacheTags::new(["rooms"]).unwrap();
    let categories = [
        Category::query(),
        Category::ai("gpt-4o"),
        Category::named("reports"),
    ];
    let get = |c: Category, n: u32| {
        let (cache, acme, tags) = (cache.clone(), acme.clone(), tags.clone());
        async move {
            cache
                .get_or_compute_tagged(&acme, &c, &"rooms", &tags, || async { Ok::<_, String>(n) })
                .await
                .unwrap()
        }
    };
    for c in &categories {
        assert_eq!(get(c.clone(), 1).await.status, CacheStatus::Miss);
        assert_eq!(get(c.clone(), 2).await.value, 1);
    }
    cache.invalidate_tag(&acme, "rooms").await.unwrap();
    for c in &categories {
        let r = get(c.clone(), 3).await;
        assert_eq!((r.value, r.status), (3, CacheStatus::Miss), "{c:?}");
    }
}

/// Two instances on one Redis, each with its L1: a tag invalidation on one drops the
/// other's L1 entries carrying the tag (by pub/sub), and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidation_reaches_another_instances_l1() {
    let server = common::RedisServer::start();
    let vars = vec![("REDIS_URL", server.url())];
    let (ca, cb) = (cache(&vars), cache(&vars));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(ca.is_subscribed() && cb.is_subscribed()) {
        assert!(Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let up = Arc::new(Upstream::default());
    let (a, b) = (app(ca.clone(), &up), app(cb.clone(), &up));
    for path in ["/api/rooms/3", "/api/plain"] {
        assert_eq!(send(&a, "acme", path).await.0, CacheStatus::Miss);
        assert_eq!(send(&b, "acme", path).await.0, CacheStatus::HitL2);
        assert_eq!(send(&b, "acme", path).await.0, CacheStatus::HitL1);
    }
    let before = cb.applied_invalidations();
    ca.invalidate_tag(&TenantId::new("acme").unwrap(), "floor:3")
        .await
        .unwrap();
    while cb.applied_invalidations() == before {
        assert!(Instant::now() < deadline, "the invalidation never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let every message of the invalidation arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        send(&b, "acme", "/api/rooms/3").await,
        (CacheStatus::Miss, "rooms/3 v2".into())
    );
    assert_eq!(send(&b, "acme", "/api/plain").await.0, CacheStatus::HitL1);
}

/// The tag epoch key expiring (here: deleted) while a tagged fill runs across a tag
/// invalidation never lets that fill be stored: the fill made the epoch before it ran, so
/// a missing one reads as a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_tag_epoch_lets_no_older_fill_in() {
    let server = common::RedisServer::start();
    let cache = cache(&[("REDIS_URL", server.url())]);
    let up = Arc::new(Upstream::default());
    let app = app(cache.clone(), &up);
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "acme", "/api/slow").await }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.gate.receiver_count() == 0 {
        assert!(Instant::now() < deadline, "the upstream never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache
        .invalidate_tag(&TenantId::new("acme").unwrap(), "rooms")
        .await
        .unwrap();
    assert_eq!(server.cli(&["DEL", "tg:cache-gen:{acme}:tags"]), "1");
    up.gate.send_replace(true);
    assert_eq!(first.await.unwrap().1, "slow v1");
    assert_eq!(
        send(&app, "acme", "/api/slow").await,
        (CacheStatus::Miss, "slow v2".into()),
        "computed before the invalidation: not stored"
    );
}

/// A tag key lives as long as the entries carrying it, not the longest lifetime of any
/// category (1 h and more): a client-chosen tag leaves nothing behind for longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_keys_live_as_long_as_their_entries() {
    let server = common::RedisServer::start();
    let vars = [
        ("REDIS_URL", server.url()),
        ("QUERY_CACHE_TTL", "2".to_string()),
        ("CACHE_STALE_TTL", "0".to_string()),
        ("CACHE_TTL_JITTER", "0".to_string()),
    ];
    let up = Arc::new(Upstream::default());
    let app = app(cache(&vars), &up);
    assert_eq!(
        send(&app, "acme", "/api/rooms/3").await.0,
        CacheStatus::Miss
    );
    for tag in ["rooms", "floor%3A3"] {
        let pttl: i64 = server
            .cli(&["PTTL", &format!("tg:cache-gen:{{acme}}:tag:{tag}")])
            .parse()
            .unwrap();
        assert!((1..=2_000).contains(&pttl), "{tag}: {pttl} ms");
    }
}
