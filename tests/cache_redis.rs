//! The cache with several instances on one Redis (and on the cluster): cross-instance
//! single-flight, invalidation reaching other instances' L1 (timed), L1 flushed when the
//! subscription drops, the fill/invalidation race, stale serving, and Redis killed
//! mid-test.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tenant_guard::backend::Backend;
use tenant_guard::cache::{Cache, CacheStatus, Category};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;

/// One "instance": its own backend (connections), L1 and subscription.
fn instance(target: (&str, String), extra: &[(&str, &str)]) -> Cache {
    let mut vars: Vec<(String, String)> = vec![(target.0.to_string(), target.1)];
    vars.push(("TG_BREAKER_THRESHOLD".into(), "1".into()));
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_vars(vars).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    Cache::from_config(&config, backend, &metrics)
}

async fn wait_subscribed(caches: &[&Cache]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !caches.iter().all(|c| c.is_subscribed()) {
        assert!(Instant::now() < deadline, "subscriptions not live");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn get(
    cache: &Cache,
    t: &tenant_guard::tenant::TenantId,
    value: &str,
    calls: &Arc<AtomicUsize>,
) -> (String, CacheStatus) {
    let calls = calls.clone();
    let value = value.to_string();
    let r = cache
        .get_or_compute(t, &Category::query(), &"rooms on floor 3", || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, String>(value)
        })
        .await
        .unwrap();
    (r.value, r.status)
}

async fn three_instances_one_upstream_call(target: (&str, String)) {
    // The breaker at its default: with a threshold of 1, one slow command while the whole
    // suite loads the machine reads as "Redis down", and an instance then computes on its
    // own (by design) - not what this test is about.
    let instances: Vec<Cache> = (0..3)
        .map(|_| instance(target.clone(), &[("TG_BREAKER_THRESHOLD", "3")]))
        .collect();
    let t = common::unique_tenant("multi");
    // Each instance connected (and, on the cluster, its slot map loaded) before the burst.
    let warm = Arc::new(AtomicUsize::new(0));
    for cache in &instances {
        let r = cache
            .get_or_compute(&t, &Category::query(), &"warm-up", || {
                let warm = warm.clone();
                async move {
                    warm.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(1u8)
                }
            })
            .await
            .unwrap();
        assert_eq!(r.value, 1);
    }
    assert_eq!(
        warm.load(Ordering::SeqCst),
        1,
        "the warm-up value was shared"
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let cache = instances[i % 3].clone();
        let t = t.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(
            async move { get(&cache, &t, "v", &calls).await },
        ));
    }
    let mut statuses = std::collections::HashMap::new();
    for task in tasks {
        let (v, s) = task.await.unwrap();
        assert_eq!(v, "v");
        *statuses.entry(format!("{s:?}")).or_insert(0) += 1;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_one_upstream_call_single_node() {
    let server = common::RedisServer::start();
    three_instances_one_upstream_call(("REDIS_URL", server.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_one_upstream_call_cluster() {
    three_instances_one_upstream_call((
        "REDIS_CLUSTER_NODES",
        common::shared_cluster().nodes_var.clone(),
    ))
    .await;
}

async fn invalidation_reaches_other_instances(target: (&str, String)) {
    let a = instance(target.clone(), &[]);
    let b = instance(target, &[]);
    wait_subscribed(&[&a, &b]).await;
    let t = common::unique_tenant("pubsub");
    let calls = Arc::new(AtomicUsize::new(0));
    get(&a, &t, "old", &calls).await;
    assert_eq!(
        get(&b, &t, "x", &calls).await,
        ("old".into(), CacheStatus::HitL2)
    );
    assert_eq!(
        get(&b, &t, "x", &calls).await,
        ("old".into(), CacheStatus::HitL1)
    );
    // Invalidate on A; B's L1 must drop the entry within a short time.
    let started = Instant::now();
    a.invalidate(&t, &Category::query(), &"rooms on floor 3")
        .await
        .unwrap();
    loop {
        if b.l1_len() == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "invalidation did not reach B"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    println!(
        "invalidation reached the other instance's L1 in {:?}",
        started.elapsed()
    );
    assert_eq!(
        get(&b, &t, "new", &calls).await,
        ("new".into(), CacheStatus::Miss)
    );
    // A category invalidation too.
    assert_eq!(get(&a, &t, "y", &calls).await.1, CacheStatus::HitL2);
    a.invalidate_category(&t, &Category::query()).await.unwrap();
    let started = Instant::now();
    while b.l1_len() != 0 {
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidation_reaches_other_instances_single_node() {
    let server = common::RedisServer::start();
    invalidation_reaches_other_instances(("REDIS_URL", server.url())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidation_reaches_other_instances_cluster() {
    invalidation_reaches_other_instances((
        "REDIS_CLUSTER_NODES",
        common::shared_cluster().nodes_var.clone(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn l1_is_flushed_when_the_subscription_drops() {
    let server = common::RedisServer::start();
    let b = instance(("REDIS_URL", server.url()), &[]);
    wait_subscribed(&[&b]).await;
    let t = common::unique_tenant("drop");
    let calls = Arc::new(AtomicUsize::new(0));
    get(&b, &t, "v", &calls).await;
    assert_eq!(get(&b, &t, "v", &calls).await.1, CacheStatus::HitL1);
    assert_eq!(b.l1_len(), 1);
    // Messages sent while disconnected would be lost: the drop must flush L1.
    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let started = Instant::now();
    while b.l1_len() != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "L1 kept entries after the drop"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // It resubscribes by itself.
    wait_subscribed(&[&b]).await;
    assert_eq!(get(&b, &t, "v", &calls).await.1, CacheStatus::HitL2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fill_that_raced_an_invalidation_does_not_land_in_l1() {
    let server = common::RedisServer::start();
    let a = instance(("REDIS_URL", server.url()), &[]);
    let b = instance(("REDIS_URL", server.url()), &[]);
    wait_subscribed(&[&a, &b]).await;
    let t = common::unique_tenant("race");
    // Ordered by events, not sleeps: B's fill has read its data when A invalidates, and
    // finishes only after B has received A's invalidation.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (proceed_tx, proceed_rx) = tokio::sync::oneshot::channel::<()>();
    let fill = {
        let b = b.clone();
        let t = t.clone();
        tokio::spawn(async move {
            b.get_or_compute(&t, &Category::query(), &"rooms on floor 3", || async move {
                let _ = started_tx.send(());
                let _ = proceed_rx.await;
                Ok::<_, String>("old".to_string())
            })
            .await
            .map(|r| r.status)
            .unwrap()
        })
    };
    started_rx.await.unwrap();
    let seen = b.applied_invalidations();
    a.invalidate(&t, &Category::query(), &"rooms on floor 3")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.applied_invalidations() == seen {
        assert!(
            Instant::now() < deadline,
            "B never received the invalidation"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    proceed_tx.send(()).unwrap();
    assert_eq!(fill.await.unwrap(), CacheStatus::Miss);
    // ...so B's L1 must not serve the old value.
    assert_eq!(
        b.l1_len(),
        0,
        "an old value landed in L1 after an invalidation"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_entries_are_served_while_another_instance_refills() {
    let server = common::RedisServer::start();
    let extra = [
        ("QUERY_CACHE_TTL", "300ms"),
        ("CACHE_STALE_TTL", "10s"),
        ("CACHE_L1_MAX_BYTES", "0"),
    ];
    let a = instance(("REDIS_URL", server.url()), &extra);
    let b = instance(("REDIS_URL", server.url()), &extra);
    let t = common::unique_tenant("stale");
    let calls = Arc::new(AtomicUsize::new(0));
    get(&a, &t, "v1", &calls).await;
    // Past the 300 ms TTL (waiting longer only makes it staler), within the stale window.
    tokio::time::sleep(Duration::from_millis(600)).await;
    // A refills and holds the lease until told to finish; B asks meanwhile and gets the
    // stale value without waiting for the refill.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (proceed_tx, proceed_rx) = tokio::sync::oneshot::channel::<()>();
    let refill = {
        let a = a.clone();
        let t = t.clone();
        let calls = calls.clone();
        tokio::spawn(async move {
            a.get_or_compute(&t, &Category::query(), &"rooms on floor 3", || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = started_tx.send(());
                let _ = proceed_rx.await;
                Ok::<_, String>("v2".to_string())
            })
            .await
            .map(|r| (r.value, r.status))
            .unwrap()
        })
    };
    started_rx.await.unwrap(); // A holds the lease now
    assert_eq!(
        get(&b, &t, "never", &calls).await,
        ("v1".into(), CacheStatus::Stale)
    );
    assert!(!refill.is_finished(), "B waited for the refill");
    proceed_tx.send(()).unwrap();
    assert_eq!(refill.await.unwrap(), ("v2".into(), CacheStatus::Miss));
    assert_eq!(
        get(&b, &t, "never", &calls).await,
        ("v2".into(), CacheStatus::HitL2)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_mid_test_requests_still_served() {
    let mut server = common::RedisServer::start();
    let cache = instance(
        ("REDIS_URL", server.url()),
        &[("REDIS_COMMAND_TIMEOUT", "200ms")],
    );
    wait_subscribed(&[&cache]).await;
    let t = common::unique_tenant("down");
    let calls = Arc::new(AtomicUsize::new(0));
    get(&cache, &t, "v", &calls).await;
    server.kill();
    // The subscription drops with the server, and L1 is flushed (messages could be lost).
    let started = Instant::now();
    while cache.is_subscribed() {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(cache.l1_len(), 0);
    // The value is recomputed and kept in L1 only, without waiting on Redis longer than
    // the command timeout.
    let started = Instant::now();
    assert_eq!(
        get(&cache, &t, "v-local", &calls).await,
        ("v-local".into(), CacheStatus::Miss)
    );
    // (A bound against hanging, ten times the command timeout; not a performance figure.)
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The L1 copy serves from then on (no Redis command for an L1 hit).
    for _ in 0..20 {
        let (v, s) = get(&cache, &t, "v-other", &calls).await;
        assert_eq!(v, "v-local");
        assert_eq!(s, CacheStatus::HitL1);
    }
    // Another key still computes, in L1.
    let other = common::unique_tenant("down2");
    assert_eq!(
        get(&cache, &other, "w", &calls).await,
        ("w".into(), CacheStatus::Miss)
    );
    assert_eq!(
        get(&cache, &other, "z", &calls).await,
        ("w".into(), CacheStatus::HitL1)
    );
}

/// The filler's lease is released by `lua/compare_and_delete.lua` as soon as the entry is
/// stored: no lock key is left for other instances to wait on.
#[tokio::test]
async fn a_fill_releases_its_lease() {
    let server = common::RedisServer::start();
    let cache = instance(("REDIS_URL", server.url()), &[]);
    let t = common::unique_tenant("lease");
    let r = cache
        .get_or_compute(&t, &Category::query(), &"q", || async {
            Ok::<_, String>(7u8)
        })
        .await
        .unwrap();
    assert_eq!((r.value, r.status), (7, CacheStatus::Miss));
    let stats = server.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_evalsha"), "no release ran: {stats}");
    let locks = server.cli(&["--scan", "--pattern", "tg:lock:*"]);
    assert!(locks.trim().is_empty(), "lease left behind: {locks}");
}
