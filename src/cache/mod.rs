//! Response and query caching: hashed, tenant-prefixed keys, per-category TTLs,
//! single-flight, an in-process L1 in front of Redis, and invalidation that reaches every
//! instance.
//!
//! * [`Cache`] is the programmatic API: [`get_or_compute`](Cache::get_or_compute) with serde
//!   values, [`invalidate`](Cache::invalidate), [`invalidate_category`](Cache::invalidate_category)
//!   and [`invalidate_tenant`](Cache::invalidate_tenant); entries stored with
//!   [`CacheTags`] are dropped by [`invalidate_tag`](Cache::invalidate_tag).
//! * [`CacheLayer`] caches HTTP responses of the routes it wraps (feature `axum`).
//!
//! Keys are `query:{tenant}:<sha256>`, `ai:{tenant}:<model>:<sha256>` and
//! `cache:{tenant}:<category>:<sha256>`: the tenant is a required argument of every way to
//! build one. Entries are stored with `SET ... PX` in a versioned envelope; one that does
//! not decode is a miss.
//!
//! **Single-flight.** Concurrent misses of one key in one process run the upstream once;
//! the others wait for its result (an error is shared with them, never cached). Across
//! processes a short Redis lease (`SET NX PX`, released by compare-and-delete) makes other
//! instances wait for the filler, or serve a stale entry when `CACHE_STALE_TTL` allows.
//!
//! **L1 + L2.** With Redis, a bounded in-process L1 (moka) answers repeated reads. Every
//! invalidation is published on a Redis channel that each instance subscribes to; L1 is
//! flushed whenever that subscription (re)connects, since messages sent while it was down
//! are lost. A fill that started before an invalidation never lands in L1 after it.
//!
//! **Outage.** With Redis unusable the cache runs L1-only: a lookup waits at most the
//! command timeout, and not at all while the circuit breaker is open.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tenant_guard::cache::{Cache, CacheStatus, Category};
//! use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
//!
//! let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
//! let metrics = Metrics::new();
//! let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
//! let acme = TenantId::new("acme")?;
//! let query = serde_json::json!({ "sql": "select * from rooms where floor = ?", "args": [3] });
//!
//! let first = cache
//!     .get_or_compute(&acme, &Category::query(), &query, || async { Ok::<_, String>(vec![301, 302]) })
//!     .await?;
//! assert_eq!(first.status, CacheStatus::Miss);
//! let second = cache
//!     .get_or_compute(&acme, &Category::query(), &query, || async { Ok::<_, String>(vec![0]) })
//!     .await?;
//! assert_eq!((second.value, second.status), (vec![301, 302], CacheStatus::HitL2));
//! # Ok(()) }
//! ```

// Without Redis there is no L1 and no subscription: their parts are unused.
#![cfg_attr(not(feature = "redis"), allow(dead_code, unused_imports))]

mod config;
mod engine;
mod entry;
#[cfg(feature = "axum")]
mod fill;
mod flight;
#[cfg(test)]
mod hostile_store_tests;
mod invalidation;
mod key;
mod l1;
#[cfg(feature = "axum")]
mod layer;
mod recording;
#[cfg(feature = "axum")]
mod service;
mod status;
mod store;
#[cfg(feature = "axum")]
mod stream;
mod tags;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use config::CacheConfig;
pub(crate) use entry::Entry;
pub use key::{
    CacheScope, Category, HttpKeyInput, MAX_MODEL_IN_KEY, canonical_json, http_key, model_component,
};
#[cfg(feature = "axum")]
pub use layer::CacheLayer;
#[cfg(feature = "axum")]
pub use service::CacheService;
pub use status::{CacheError, CacheStatus, Cached};
pub use store::{BusHandler, CacheBus, CacheStore};
pub use tags::{CacheTags, InvalidTags, TAGS_HEADER, valid_tag};

use crate::backend::Backend;
use crate::keys::{Keys, RedisKey};
use crate::metrics::Metrics;
use crate::tenant::TenantId;
pub(crate) use engine::{Computed, Served};
use flight::SharedFailure;

/// A fully built cache key: tenant, category, hash and the Redis key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheKey {
    pub tenant: TenantId,
    pub category: Category,
    pub hash: String,
    pub key: RedisKey,
    /// The tenant's generation key and the category's (same slot as `key`).
    pub gens: [RedisKey; 2],
    /// The tenant's tag epoch (same slot).
    pub tag_epoch: RedisKey,
}

/// The cache. Cheap to clone; clones share L1, flights and the subscription.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tenant_guard::{backend::Backend, cache::{Cache, CacheStatus, Category}, config::Config, metrics::Metrics};
/// use tenant_guard::tenant::TenantId;
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
/// let metrics = Metrics::new();
/// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
/// let acme = TenantId::new("acme")?;
/// let profile = Category::named("user-profile");
/// let load = || async { Ok::<_, String>(serde_json::json!({ "name": "Ann" })) };
/// assert_eq!(cache.get_or_compute(&acme, &profile, &("user", 42), load).await?.status, CacheStatus::Miss);
/// let again = cache.clone(); // clones share everything
/// assert_eq!(again.get_or_compute(&acme, &profile, &("user", 42), load).await?.value["name"], "Ann");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn CacheStore>,
    /// Invalidations to and from other instances (`None`: nobody to tell).
    bus: Option<Arc<dyn CacheBus>>,
    keys: Keys,
    config: CacheConfig,
    l1: Option<moka::sync::Cache<String, Arc<Entry>>>,
    /// Bumped by every invalidation applied here (local or received) and every L1 flush.
    generation: AtomicU64,
    flights: Mutex<HashMap<String, flight::Registered>>,
    metrics: Metrics,
    channel: String,
    subscribed: AtomicBool,
    subscriber: Mutex<Option<tokio::task::AbortHandle>>,
    /// `RATE_LIMIT_USER_HEADER`: a caller's credential for the HTTP layer's scope.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    user_header: Option<http::HeaderName>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self
            .subscriber
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.inner.store.name())
            .field("l1", &self.inner.l1.is_some())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache on `backend`. With Redis (and `l1_max_bytes > 0`) it keeps an L1 and, when
    /// called inside a Tokio runtime, subscribes to the invalidation channel.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::cache::{Cache, CacheConfig, Category};
    /// use tenant_guard::{keys::{KeyPrefix, Keys}, metrics::Metrics, tenant::TenantId};
    ///
    /// let mut config = CacheConfig::default();
    /// config.query_ttl = Duration::from_secs(60);
    /// let memory = MemoryStore::new(Default::default());
    /// let cache = Cache::new(Backend::Memory(memory.clone()), config, Keys::new(KeyPrefix::new("app1")?), &Metrics::new());
    /// let acme = TenantId::new("acme")?;
    /// cache.get_or_compute(&acme, &Category::query(), &"select 1", || async { Ok::<_, String>(1) }).await?;
    /// // The entry is in the store, under the prefix.
    /// assert_eq!(memory.delete_matching(&Keys::new(KeyPrefix::new("app1")?).kind_pattern(tenant_guard::keys::KeyKind::Query, &acme)), 1);
    /// # Ok(()) }
    /// ```
    pub fn new(backend: Backend, config: CacheConfig, keys: Keys, metrics: &Metrics) -> Self {
        Self::on_backend(backend, config, keys, metrics, None)
    }

    pub(crate) fn on_backend(
        backend: Backend,
        config: CacheConfig,
        keys: Keys,
        metrics: &Metrics,
        user_header: Option<http::HeaderName>,
    ) -> Self {
        let (store, bus) = store::on(backend);
        Self::build(store, bus, config, keys, metrics, user_header)
    }

    /// A cache on a [`CacheStore`] of your own, with a [`CacheBus`] if other instances share
    /// it (then, with `l1_max_bytes > 0`, an L1 sits in front and invalidations travel on
    /// the bus; without a bus there is no L1, so no instance serves what another
    /// invalidated).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tenant_guard::cache::CacheError<String>> {
    /// use tenant_guard::backend::{MemoryConfig, MemoryStore};
    /// use tenant_guard::cache::{Cache, CacheConfig, CacheStatus, Category};
    /// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
    ///
    /// let cache = Cache::with_store(MemoryStore::new(MemoryConfig::default()), None,
    ///                               CacheConfig::default(), Keys::default(), &Metrics::new());
    /// let acme = TenantId::new("acme").unwrap();
    /// let first = cache.get_or_compute(&acme, &Category::query(), &"q", || async {
    ///     Ok::<_, String>(42)
    /// }).await?;
    /// assert_eq!(first.status, CacheStatus::Miss);
    /// let again = cache.get_or_compute(&acme, &Category::query(), &"q", || async {
    ///     Ok::<_, String>(0)
    /// }).await?;
    /// assert_eq!((again.value, again.status), (42, CacheStatus::HitL2));
    /// # Ok(()) }
    /// ```
    pub fn with_store(
        store: impl CacheStore,
        bus: Option<Arc<dyn CacheBus>>,
        config: CacheConfig,
        keys: Keys,
        metrics: &Metrics,
    ) -> Self {
        Self::build(Arc::new(store), bus, config, keys, metrics, None)
    }

    pub(crate) fn build(
        store: Arc<dyn CacheStore>,
        bus: Option<Arc<dyn CacheBus>>,
        config: CacheConfig,
        keys: Keys,
        metrics: &Metrics,
        user_header: Option<http::HeaderName>,
    ) -> Self {
        let l1 = l1::build(store.is_shared() && bus.is_some(), &config, metrics);
        let channel = format!("{}:cache-invalidate", keys.prefix().as_str());
        let inner = Arc::new(Inner {
            store,
            bus,
            keys,
            config,
            l1,
            generation: AtomicU64::new(0),
            flights: Mutex::new(HashMap::new()),
            metrics: metrics.clone(),
            channel,
            subscribed: AtomicBool::new(false),
            subscriber: Mutex::new(None),
            user_header,
        });
        if let (Some(_), Some(bus)) = (&inner.l1, &inner.bus) {
            let weak = Arc::downgrade(&inner);
            let task = bus.subscribe(
                inner.channel.clone(),
                Box::new(move |event| invalidation::on_event(&weak, event)),
            );
            *inner
                .subscriber
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = task;
        }
        Self { inner }
    }

    /// The header a trusted gateway writes the user in (`RATE_LIMIT_USER_HEADER`).
    #[cfg(feature = "axum")]
    pub(crate) fn user_header(&self) -> Option<&http::HeaderName> {
        self.inner.user_header.as_ref()
    }

    /// The settings.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::{backend::Backend, cache::Cache, config::Config, metrics::Metrics};
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("CACHE_TTL", "10m"), ("AI_CACHE_TTL", "1h")]).unwrap();
    /// let metrics = Metrics::new();
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// assert_eq!(cache.config().ttl_for("reports"), Duration::from_secs(600)); // CACHE_TTL
    /// assert_eq!(cache.config().ttl_for("ai"), Duration::from_secs(3600));
    /// ```
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// How many invalidations (made here or received from other instances) and L1 flushes
    /// this instance has applied: tests and operators can tell that a message arrived.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::{backend::Backend, cache::{Cache, Category}, config::Config, metrics::Metrics};
    /// let (config, metrics) = (Config::default(), Metrics::new());
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// let t = tenant_guard::tenant::TenantId::new("acme").unwrap();
    /// let before = cache.applied_invalidations();
    /// cache.invalidate(&t, &Category::query(), &"q").await.unwrap();
    /// assert_eq!(cache.applied_invalidations(), before + 1);
    /// # }
    /// ```
    pub fn applied_invalidations(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// Whether the invalidation subscription is live (always false without Redis or L1).
    ///
    /// ```
    /// use tenant_guard::{backend::Backend, cache::Cache, config::Config, metrics::Metrics};
    /// // On memory there is one process: nothing to subscribe to.
    /// let config = Config::from_vars([("REDIS_ENABLED", "false")]).unwrap();
    /// let metrics = Metrics::new();
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// assert!(!cache.is_subscribed());
    /// ```
    pub fn is_subscribed(&self) -> bool {
        self.inner.subscribed.load(Ordering::SeqCst)
    }

    /// Entries in L1 (0 without L1). Pending maintenance is run first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, cache::{Cache, Category}, config::Config, metrics::Metrics};
    /// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// let metrics = Metrics::new();
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let acme = tenant_guard::tenant::TenantId::new("acme")?;
    /// cache.get_or_compute(&acme, &Category::query(), &"q", || async { Ok::<_, String>(1) }).await?;
    /// // No L1 in front of the memory store: the store itself is in process.
    /// assert_eq!(cache.l1_len(), 0);
    /// # Ok(()) }
    /// ```
    pub fn l1_len(&self) -> u64 {
        self.inner.l1.as_ref().map_or(0, |l1| {
            l1.run_pending_tasks();
            l1.entry_count()
        })
    }

    /// Bytes L1 holds by its own weighing (keys, headers and bodies; 0 without L1), the
    /// figure `CACHE_L1_MAX_BYTES` bounds. Pending maintenance is run first.
    ///
    /// ```
    /// use tenant_guard::{backend::Backend, cache::Cache, config::Config, metrics::Metrics};
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("CACHE_L1_MAX_BYTES", "1048576")]).unwrap();
    /// let metrics = Metrics::new();
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// assert_eq!(cache.config().l1_max_bytes, 1 << 20); // the bound of L1 in front of Redis
    /// assert_eq!(cache.l1_weighted_bytes(), 0); // on memory there is no L1
    /// ```
    pub fn l1_weighted_bytes(&self) -> u64 {
        self.inner.l1.as_ref().map_or(0, |l1| {
            l1.run_pending_tasks();
            l1.weighted_size()
        })
    }

    /// Stops the invalidation subscription and flushes L1 (at shutdown).
    pub(crate) fn stop_subscription(&self) {
        if let Some(h) = self
            .inner
            .subscriber
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
        self.inner.subscribed.store(false, Ordering::SeqCst);
        self.inner.apply(&invalidation::Invalidation::Flush);
    }

    pub(crate) fn event(&self, category: &str, event: &'static str) {
        self.inner.event(category, event);
    }

    pub(crate) fn key(&self, tenant: &TenantId, category: &Category, hash: String) -> CacheKey {
        CacheKey {
            key: category.key(&self.inner.keys, tenant, &hash),
            gens: self.inner.generation_keys(tenant, category),
            tag_epoch: self.inner.tag_epoch_key(tenant),
            tenant: tenant.clone(),
            category: category.clone(),
            hash,
        }
    }

    fn material_key(
        &self,
        tenant: &TenantId,
        category: &Category,
        material: &impl Serialize,
    ) -> Result<CacheKey, serde_json::Error> {
        let v = serde_json::to_value(material)?;
        Ok(self.key(tenant, category, key::material_hash(&v)))
    }

    /// The cached value for `key_material` in `tenant` and `category`, or the result of
    /// `compute` (stored with the category's TTL). Concurrent calls for one key run
    /// `compute` once. The key is the SHA-256 of the material's canonical JSON, so field
    /// order does not matter. The error type is `Clone` because a failure is handed to
    /// every waiter (wrap non-`Clone` errors in an `Arc`); it is never cached.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use tenant_guard::{backend::Backend, cache::{Cache, CacheStatus, Category}, config::Config, metrics::Metrics};
    /// use tenant_guard::tenant::TenantId;
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// let metrics = Metrics::new();
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let (acme, query) = (TenantId::new("acme")?, Category::query());
    /// let calls = AtomicU32::new(0);
    /// let orders = || async { calls.fetch_add(1, Ordering::SeqCst); Ok::<_, String>(vec![1, 2, 3]) };
    /// // Key material as JSON: field order does not matter.
    /// let a = serde_json::json!({ "table": "orders", "status": "open" });
    /// let b = serde_json::json!({ "status": "open", "table": "orders" });
    /// assert_eq!(cache.get_or_compute(&acme, &query, &a, orders).await?.status, CacheStatus::Miss);
    /// assert_eq!(cache.get_or_compute(&acme, &query, &b, orders).await?.value, [1, 2, 3]);
    /// assert_eq!(calls.load(Ordering::SeqCst), 1);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_compute<T, E, F, Fut>(
        &self,
        tenant: &TenantId,
        category: &Category,
        key_material: &impl Serialize,
        compute: F,
    ) -> Result<Cached<T>, CacheError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: Clone + Send + Sync + std::fmt::Display + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let ttl = self.inner.config.ttl_for(category.name());
        self.get_or_compute_with_ttl(tenant, category, key_material, compute, move |_| ttl)
            .await
    }

    /// Like [`get_or_compute`](Self::get_or_compute), with the TTL chosen from the value
    /// (e.g. today's report 15 s, last week's 3 min).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::cache::{Cache, CacheStatus, Category};
    /// use tenant_guard::{clock::ManualClock, keys::Keys, metrics::Metrics, tenant::TenantId};
    ///
    /// let clock = ManualClock::new();
    /// let memory = MemoryStore::with_clock(Default::default(), clock.clone());
    /// let cache = Cache::new(Backend::Memory(memory), Default::default(), Keys::default(), &Metrics::new());
    /// let (acme, reports) = (TenantId::new("acme")?, Category::named("reports"));
    /// let report = |day: &'static str| move || async move { Ok::<_, String>(format!("report of {day}")) };
    /// // Today's report for 15 s, older ones for 3 minutes.
    /// let ttl = |r: &String| if r.ends_with("2026-12-07") { Duration::from_secs(15) } else { Duration::from_secs(180) };
    /// cache.get_or_compute_with_ttl(&acme, &reports, &"2026-12-07", report("2026-12-07"), ttl).await?;
    /// cache.get_or_compute_with_ttl(&acme, &reports, &"2026-12-01", report("2026-12-01"), ttl).await?;
    /// clock.advance(Duration::from_secs(20));
    /// let today = cache.get_or_compute_with_ttl(&acme, &reports, &"2026-12-07", report("2026-12-07"), ttl).await?;
    /// assert_eq!(today.status, CacheStatus::Miss); // expired, computed again
    /// let older = cache.get_or_compute_with_ttl(&acme, &reports, &"2026-12-01", report("2026-12-01"), ttl).await?;
    /// assert_eq!(older.status, CacheStatus::HitL2);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_compute_with_ttl<T, E, F, Fut, TtlFn>(
        &self,
        tenant: &TenantId,
        category: &Category,
        key_material: &impl Serialize,
        compute: F,
        ttl: TtlFn,
    ) -> Result<Cached<T>, CacheError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: Clone + Send + Sync + std::fmt::Display + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        TtlFn: FnOnce(&T) -> Duration,
    {
        self.compute_cached(
            tenant,
            category,
            key_material,
            &CacheTags::default(),
            compute,
            ttl,
        )
        .await
    }

    /// Like [`get_or_compute`](Self::get_or_compute), the value stored with `tags`:
    /// [`invalidate_tag`](Self::invalidate_tag) of any of them drops it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::cache::{Cache, CacheStatus, CacheTags, Category};
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// let metrics = Metrics::new();
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let acme = TenantId::new("acme")?;
    /// let q = Category::query();
    /// let floor = || async { Ok::<_, String>(vec![301, 302]) };
    /// let lobby = || async { Ok::<_, String>(vec![1]) };
    /// cache.get_or_compute_tagged(&acme, &q, &"floor-3", &CacheTags::new(["rooms", "floor:3"])?, floor).await?;
    /// cache.get_or_compute_tagged(&acme, &q, &"lobby", &CacheTags::new(["rooms", "floor:0"])?, lobby).await?;
    /// cache.invalidate_tag(&acme, "floor:3").await?;
    /// let tags = CacheTags::new(["rooms", "floor:3"])?;
    /// assert_eq!(cache.get_or_compute_tagged(&acme, &q, &"floor-3", &tags, floor).await?.status, CacheStatus::Miss);
    /// let tags = CacheTags::new(["rooms", "floor:0"])?;
    /// assert_eq!(cache.get_or_compute_tagged(&acme, &q, &"lobby", &tags, lobby).await?.status, CacheStatus::HitL2);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_compute_tagged<T, E, F, Fut>(
        &self,
        tenant: &TenantId,
        category: &Category,
        key_material: &impl Serialize,
        tags: &CacheTags,
        compute: F,
    ) -> Result<Cached<T>, CacheError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: Clone + Send + Sync + std::fmt::Display + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let ttl = self.inner.config.ttl_for(category.name());
        self.compute_cached(tenant, category, key_material, tags, compute, move |_| ttl)
            .await
    }

    async fn compute_cached<T, E, F, Fut, TtlFn>(
        &self,
        tenant: &TenantId,
        category: &Category,
        key_material: &impl Serialize,
        tags: &CacheTags,
        compute: F,
        ttl: TtlFn,
    ) -> Result<Cached<T>, CacheError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: Clone + Send + Sync + std::fmt::Display + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        TtlFn: FnOnce(&T) -> Duration,
    {
        let key = self
            .material_key(tenant, category, key_material)
            .map_err(CacheError::Encode)?;
        let mut compute = Some(compute);
        let mut ttl = Some(ttl);
        // A stale-while-revalidate entry: refreshed in line (the compute step is the
        // caller's, it cannot outlive this call); served when another fill runs.
        let (mut mode, mut stale) = (engine::Mode::Lookup, None::<Arc<Entry>>);
        for _ in 0..3 {
            let mut served = self
                .serve_in(mode, &key, true, true, || async {
                    let f = compute.take().expect("compute runs once");
                    match f().await {
                        Ok(v) => match serde_json::to_vec(&v) {
                            Ok(body) => {
                                let ttl = (ttl.take().expect("ttl runs once"))(&v);
                                let now = entry::now_ms();
                                let e = Entry {
                                    stored_ms: now,
                                    fresh_until_ms: now,
                                    status: 0,
                                    headers: Vec::new(),
                                    body: Bytes::from(body),
                                    gens: [0, 0],
                                    tags: tags.unstamped(),
                                };
                                Computed::Store(e, ttl, Ok(v))
                            }
                            Err(e) => Computed::Private(Err(CacheError::Encode(e))),
                        },
                        Err(e) => Computed::Share(
                            SharedFailure::error(e.clone()),
                            Err(CacheError::Upstream(e)),
                        ),
                    }
                })
                .await;
            if let (Served::Retry, Some(e)) = (&served, &stale) {
                served = Served::Cached(e.clone(), CacheStatus::Stale);
            }
            match served {
                Served::Revalidate(e, _) => {
                    (mode, stale) = (engine::Mode::Refresh, Some(e));
                    continue;
                }
                Served::Cached(e, status) => match serde_json::from_slice::<T>(&e.body) {
                    Ok(value) => {
                        return Ok(Cached {
                            value,
                            status,
                            age: Duration::from_millis(entry::now_ms().saturating_sub(e.stored_ms)),
                        });
                    }
                    // A value of another shape under this key: treat as a miss.
                    Err(_) if compute.is_some() => {
                        self.inner.l1_remove(key.key.as_str());
                        let _ = self.inner.store.delete(&key.key).await;
                        continue;
                    }
                    Err(e) => return Err(CacheError::SharedUpstream(e.to_string())),
                },
                Served::Own(r) => {
                    return r.map(|value| Cached {
                        value,
                        status: CacheStatus::Miss,
                        age: Duration::ZERO,
                    });
                }
                Served::SharedError(failure) => {
                    return Err(match failure.downcast::<E>() {
                        Some(e) => CacheError::Upstream(e),
                        None => CacheError::SharedUpstream(failure.message()),
                    });
                }
                Served::Retry => continue,
                // An HTTP response streaming under this key (not a value of ours): once it
                // has ended, look again.
                Served::Stream(rec) => {
                    rec.wait_end().await;
                    continue;
                }
            }
        }
        // Three rounds of leaders that could not share: compute without the cache.
        match compute.take() {
            Some(f) => f()
                .await
                .map(|value| Cached {
                    value,
                    status: CacheStatus::Bypass,
                    age: Duration::ZERO,
                })
                .map_err(CacheError::Upstream),
            None => Err(CacheError::SharedUpstream("no result".into())),
        }
    }
}
