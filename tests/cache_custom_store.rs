//! The cache on a store and bus of the user's own ([`CacheStore`], [`CacheBus`]): two
//! instances share a table and tell each other about invalidations over an in-process
//! channel. Shows what the seam promises: L2 reads and fill leases go through the store, an
//! L1 sits in front only with a bus, and an invalidation on one instance reaches the
//! other's L1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tenant_guard::backend::{BackendError, PubSubEvent, StoreFuture};
use tenant_guard::cache::{
    BusHandler, Cache, CacheBus, CacheConfig, CacheStatus, CacheStore, Category,
};
use tenant_guard::keys::{Keys, RedisKey};
use tenant_guard::metrics::Metrics;
use tenant_guard::tenant::TenantId;
use tokio::sync::broadcast;

/// A table with deadlines, counting the calls made to it; clones share it.
#[derive(Clone, Default)]
struct TableStore(Arc<Table>);

impl std::ops::Deref for TableStore {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.0
    }
}

#[derive(Default)]
struct Table {
    rows: Mutex<HashMap<String, (Bytes, Instant)>>,
    reads: AtomicUsize,
    leases: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

impl Table {
    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Bytes, Instant)>> {
        let mut rows = self.rows.lock().unwrap();
        let now = Instant::now();
        rows.retain(|_, (_, until)| *until > now);
        rows
    }

    fn check(&self) -> Result<(), BackendError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("table offline".into()));
        }
        Ok(())
    }
}

const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

impl CacheStore for TableStore {
    fn name(&self) -> &'static str {
        "table"
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn get_many<'a>(&'a self, keys: &'a [&'a RedisKey]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            self.check()?;
            self.reads.fetch_add(1, Ordering::SeqCst);
            let rows = self.rows();
            Ok(keys
                .iter()
                .map(|k| rows.get(k.as_str()).map(|(v, _)| v.clone()))
                .collect())
        })
    }

    fn set<'a>(&'a self, key: &'a RedisKey, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            let row = (Bytes::copy_from_slice(value), Instant::now() + ttl);
            self.rows().insert(key.as_str().to_string(), row);
            Ok(())
        })
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a RedisKey,
        value: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.check()?;
            self.leases.fetch_add(1, Ordering::SeqCst);
            let mut rows = self.rows();
            if rows.contains_key(key.as_str()) {
                return Ok(false);
            }
            let row = (Bytes::copy_from_slice(value), Instant::now() + ttl);
            rows.insert(key.as_str().to_string(), row);
            Ok(true)
        })
    }

    fn delete_if_eq<'a>(&'a self, key: &'a RedisKey, expected: &'a [u8]) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.check()?;
            let mut rows = self.rows();
            let held = rows
                .get(key.as_str())
                .is_some_and(|(v, _)| v[..] == *expected);
            if held {
                rows.remove(key.as_str());
            }
            Ok(held)
        })
    }

    fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.check()?;
            Ok(self.rows().remove(key.as_str()).is_some())
        })
    }

    fn expire<'a>(&'a self, key: &'a RedisKey, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.check()?;
            Ok(match self.rows().get_mut(key.as_str()) {
                Some(row) => {
                    row.1 = Instant::now() + ttl;
                    true
                }
                None => false,
            })
        })
    }

    fn incr<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            self.check()?;
            let mut rows = self.rows();
            let (value, until) = rows
                .get(key.as_str())
                .cloned()
                .unwrap_or((Bytes::from_static(b"0"), Instant::now() + FOREVER));
            let n = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            rows.insert(
                key.as_str().to_string(),
                (Bytes::from(n.to_string()), until),
            );
            Ok(n)
        })
    }
}

/// Every subscriber of the process hears every message.
#[derive(Clone)]
struct LocalBus(broadcast::Sender<String>);

impl CacheBus for LocalBus {
    fn publish<'a>(&'a self, _channel: &'a str, message: &'a str) -> StoreFuture<'a, u64> {
        let n = self.0.send(message.to_string()).unwrap_or(0) as u64;
        Box::pin(std::future::ready(Ok(n)))
    }

    fn subscribe(
        &self,
        _channel: String,
        mut handler: BusHandler,
    ) -> Option<tokio::task::AbortHandle> {
        let mut rx = self.0.subscribe();
        let task = tokio::spawn(async move {
            if !handler(PubSubEvent::Live) {
                return;
            }
            while let Ok(m) = rx.recv().await {
                if !handler(PubSubEvent::Message(&m)) {
                    return;
                }
            }
        });
        Some(task.abort_handle())
    }
}

fn instance(store: &TableStore, bus: Option<&LocalBus>) -> Cache {
    let bus = bus.map(|b| Arc::new(b.clone()) as Arc<dyn CacheBus>);
    Cache::with_store(
        store.clone(),
        bus,
        CacheConfig::default(),
        Keys::default(),
        &Metrics::new(),
    )
}

async fn read(cache: &Cache, tenant: &TenantId, q: &str, value: u32) -> (u32, CacheStatus) {
    let got = cache
        .get_or_compute(tenant, &Category::query(), &q, || async move {
            Ok::<_, String>(value)
        })
        .await
        .unwrap();
    (got.value, got.status)
}

async fn subscribed(cache: &Cache) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cache.is_subscribed() {
        assert!(Instant::now() < deadline, "the bus never reported Live");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn instances_share_the_store_and_hear_invalidations_on_the_bus() {
    let store = TableStore::default();
    let bus = LocalBus(broadcast::channel(64).0);
    let (a, b) = (instance(&store, Some(&bus)), instance(&store, Some(&bus)));
    subscribed(&a).await;
    subscribed(&b).await;
    let acme = TenantId::new("acme").unwrap();

    assert_eq!(read(&a, &acme, "q", 1).await, (1, CacheStatus::Miss));
    assert!(
        store.leases.load(Ordering::SeqCst) >= 1,
        "a shared store's fill takes a lease"
    );
    // B finds A's entry in the shared table, then keeps it in its L1.
    assert_eq!(read(&b, &acme, "q", 2).await, (1, CacheStatus::HitL2));
    let reads = store.reads.load(Ordering::SeqCst);
    assert_eq!(read(&b, &acme, "q", 2).await, (1, CacheStatus::HitL1));
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        reads,
        "an L1 hit asks the store nothing"
    );

    // A invalidates: B's L1 drops the entry when the message arrives.
    let before = b.applied_invalidations();
    assert!(a.invalidate(&acme, &Category::query(), &"q").await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.applied_invalidations() == before {
        assert!(Instant::now() < deadline, "B never heard the invalidation");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(read(&b, &acme, "q", 3).await, (3, CacheStatus::Miss));

    // A category invalidation (a generation in the store) reaches B too.
    assert_eq!(read(&b, &acme, "q", 4).await.1, CacheStatus::HitL1);
    let before = b.applied_invalidations();
    a.invalidate_category(&acme, &Category::query())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.applied_invalidations() == before {
        assert!(
            Instant::now() < deadline,
            "B never heard the category invalidation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(read(&b, &acme, "q", 5).await, (5, CacheStatus::Miss));
    // Another tenant's entry of the same material is its own.
    let globex = TenantId::new("globex").unwrap();
    assert_eq!(read(&a, &globex, "q", 6).await, (6, CacheStatus::Miss));
}

#[tokio::test]
async fn without_a_bus_there_is_no_l1_so_nothing_invalidated_elsewhere_is_served() {
    let store = TableStore::default();
    let (a, b) = (instance(&store, None), instance(&store, None));
    let acme = TenantId::new("acme").unwrap();
    assert_eq!(read(&a, &acme, "q", 1).await, (1, CacheStatus::Miss));
    assert_eq!(read(&b, &acme, "q", 2).await, (1, CacheStatus::HitL2));
    assert_eq!(read(&b, &acme, "q", 2).await, (1, CacheStatus::HitL2));
    assert_eq!(b.l1_len(), 0);
    a.invalidate(&acme, &Category::query(), &"q").await.unwrap();
    assert_eq!(read(&b, &acme, "q", 3).await, (3, CacheStatus::Miss));
}

#[tokio::test]
async fn a_store_that_fails_leaves_the_upstream_answering() {
    let store = TableStore::default();
    let cache = instance(&store, None);
    let acme = TenantId::new("acme").unwrap();
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(read(&cache, &acme, "q", 7).await, (7, CacheStatus::Miss));
    assert_eq!(read(&cache, &acme, "q", 8).await, (8, CacheStatus::Miss));
    store.down.store(false, Ordering::SeqCst);
    assert_eq!(read(&cache, &acme, "q", 9).await, (9, CacheStatus::Miss));
    assert_eq!(read(&cache, &acme, "q", 10).await, (9, CacheStatus::HitL2));
}
