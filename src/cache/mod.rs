//! Response and query caching: hashed, tenant-prefixed keys, per-category TTLs,
//! single-flight, an in-process L1 in front of Redis, and invalidation that reaches every
//! instance.
//!
//! * [`Cache`] is the programmatic API: [`get_or_compute`](Cache::get_or_compute) with serde
//!   values, [`invalidate`](Cache::invalidate), [`invalidate_category`](Cache::invalidate_category)
//!   and [`invalidate_tenant`](Cache::invalidate_tenant).
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
mod entry;
mod key;
#[cfg(feature = "axum")]
mod layer;

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

pub use config::CacheConfig;
pub(crate) use entry::Entry;
pub use key::{
    canonical_json, http_key, model_component, CacheScope, Category, HttpKeyInput, MAX_MODEL_IN_KEY,
};
#[cfg(feature = "axum")]
pub use layer::{CacheLayer, CacheService};

use crate::backend::{Backend, BackendError};
use crate::keys::{KeyKind, Keys, RedisKey};
use crate::metrics::{CacheLabels, Metrics};
use crate::tenant::TenantId;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheStatus {
    /// From the in-process L1.
    HitL1,
    /// From Redis (or the memory backend).
    HitL2,
    /// A stale entry, served while another instance refills it.
    Stale,
    /// Computed by this call.
    Miss,
    /// Computed by a concurrent call (here or on another instance) this one waited for.
    Coalesced,
    /// The cache was not used (request `no-store`/`no-cache`, uncacheable response, ...).
    Bypass,
}

impl CacheStatus {
    /// The `X-Cache` header value: `HIT`, `MISS`, `STALE` or `BYPASS` (a coalesced wait is a
    /// `MISS`: the value was not in the cache when asked for).
    pub fn header(self) -> &'static str {
        match self {
            Self::HitL1 | Self::HitL2 => "HIT",
            Self::Stale => "STALE",
            Self::Miss | Self::Coalesced => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Cached<T> {
    /// The value.
    pub value: T,
    /// Hit, miss, ...
    pub status: CacheStatus,
    /// Time since the value was computed.
    pub age: Duration,
}

/// Errors of [`Cache::get_or_compute`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError<E> {
    /// The upstream failed (for this call, or for the concurrent call it waited for).
    /// Errors are never cached.
    #[error("upstream failed: {0}")]
    Upstream(E),
    /// The concurrent call this one waited for failed with an error of another type.
    #[error("upstream failed (in a concurrent call): {0}")]
    SharedUpstream(String),
    /// The computed value could not be serialized.
    #[error("value not serializable: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Result of a flight, shared with the callers that waited for it.
#[derive(Clone)]
enum Flight {
    Entry(Arc<Entry>),
    Error(Arc<dyn Any + Send + Sync>, Arc<str>),
    /// The leader's result may not be shared (uncacheable response): compute yourself.
    Private,
}

/// What a compute step produced.
pub(crate) enum Computed<R> {
    /// Store this entry (with this TTL) and share it; the leader returns `R`.
    Store(Entry, Duration, R),
    /// Share this error with waiters; never cached.
    Share(Arc<dyn Any + Send + Sync>, Arc<str>, R),
    /// Not cacheable and not shareable.
    Private(R),
}

/// What a call gets.
pub(crate) enum Served<R> {
    Cached(Arc<Entry>, CacheStatus),
    Own(R),
    SharedError(Arc<dyn Any + Send + Sync>, Arc<str>),
    Retry,
}

/// A fully built cache key: tenant, category, hash and the Redis key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheKey {
    pub tenant: TenantId,
    pub category: Category,
    pub hash: String,
    pub key: RedisKey,
    /// The tenant's generation key and the category's (same slot as `key`).
    pub gens: [RedisKey; 2],
}

/// The cache. Cheap to clone; clones share L1, flights and the subscription.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    keys: Keys,
    config: CacheConfig,
    l1: Option<moka::sync::Cache<String, Arc<Entry>>>,
    /// Bumped by every invalidation applied here (local or received) and every L1 flush.
    generation: AtomicU64,
    flights: Mutex<HashMap<String, watch::Receiver<Option<Flight>>>>,
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
            .field("backend", &self.inner.backend.kind())
            .field("l1", &self.inner.l1.is_some())
            .finish_non_exhaustive()
    }
}

struct L1Expiry;

impl moka::Expiry<String, Arc<Entry>> for L1Expiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            value.fresh_until_ms.saturating_sub(entry::now_ms()),
        ))
    }

    fn expire_after_update(
        &self,
        key: &String,
        value: &Arc<Entry>,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, updated_at)
    }
}

fn random_token() -> String {
    let mut b = [0u8; 16];
    // A lease token only needs to be unique among concurrent fillers.
    if getrandom::fill(&mut b).is_err() {
        b[..8].copy_from_slice(&entry::now_ms().to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A first generation: random, so that a generation key that was lost (evicted, deleted)
/// and made again never takes a value that entries already carry. Between 2^40 and 2^52
/// (exact in a double, never 0).
fn first_generation() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        b = entry::now_ms().to_le_bytes();
    }
    (u64::from_le_bytes(b) & ((1 << 52) - 1)) | (1 << 40)
}

fn jitter(ttl: Duration, percent: u8) -> Duration {
    if percent == 0 {
        return ttl;
    }
    let mut b = [0u8; 8];
    let r = if getrandom::fill(&mut b).is_ok() {
        u64::from_le_bytes(b)
    } else {
        entry::now_ms()
    };
    // Saturating: CACHE_TTL may be any duration the environment spells.
    let max_extra = u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(u64::from(percent))
        / 100;
    ttl.saturating_add(Duration::from_millis(if max_extra == 0 {
        0
    } else {
        r % max_extra.saturating_add(1)
    }))
}

/// Removes the flight when the leader finishes or is dropped (waiters then retry).
struct FlightGuard<'a> {
    inner: &'a Inner,
    key: Option<String>,
    tx: Option<watch::Sender<Option<Flight>>>,
}

impl FlightGuard<'_> {
    fn finish(&mut self, flight: Flight) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(flight));
        }
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.inner
                .flights
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&k);
        }
    }
}

enum Lookup {
    Fresh(Arc<Entry>, CacheStatus),
    Stale(Arc<Entry>),
    Miss { l2_down: bool },
}

/// Parses a generation value (absent or unreadable: 0).
fn generation(raw: Option<&Bytes>) -> u64 {
    raw.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

impl Cache {
    /// A cache on `backend`. With Redis (and `l1_max_bytes > 0`) it keeps an L1 and, when
    /// called inside a Tokio runtime, subscribes to the invalidation channel.
    pub fn new(backend: Backend, config: CacheConfig, keys: Keys, metrics: &Metrics) -> Self {
        Self::build(backend, config, keys, metrics, None)
    }

    pub(crate) fn build(
        backend: Backend,
        config: CacheConfig,
        keys: Keys,
        metrics: &Metrics,
        user_header: Option<http::HeaderName>,
    ) -> Self {
        let l1 = match &backend {
            // The memory backend is in process already: an L1 would only copy it.
            Backend::Memory(_) => None,
            #[cfg(feature = "redis")]
            Backend::Redis(_) if config.l1_max_bytes == 0 => None,
            #[cfg(feature = "redis")]
            Backend::Redis(_) => {
                let m = metrics.clone();
                Some(
                    moka::sync::Cache::builder()
                        .max_capacity(config.l1_max_bytes)
                        // The key counts too: a client picks its length.
                        .weigher(|k: &String, v: &Arc<Entry>| {
                            v.weight()
                                .saturating_add(u32::try_from(k.len()).unwrap_or(u32::MAX))
                        })
                        .expire_after(L1Expiry)
                        .support_invalidation_closures()
                        .eviction_listener(move |_k, _v, cause| {
                            if cause == moka::notification::RemovalCause::Size {
                                m.cache_events
                                    .get_or_create(&CacheLabels {
                                        category: "l1".into(),
                                        event: "eviction",
                                    })
                                    .inc();
                            }
                        })
                        .build(),
                )
            }
        };
        let channel = format!("{}:cache-invalidate", keys.prefix().as_str());
        let inner = Arc::new(Inner {
            backend,
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
        #[cfg(feature = "redis")]
        if inner.l1.is_some() {
            if let (Backend::Redis(r), Ok(rt)) =
                (&inner.backend, tokio::runtime::Handle::try_current())
            {
                let task = rt.spawn(subscriber(
                    Arc::downgrade(&inner),
                    r.pubsub_clients().to_vec(),
                    r.connect_timeout(),
                    inner.channel.clone(),
                ));
                *inner
                    .subscriber
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task.abort_handle());
            }
        }
        Self { inner }
    }

    /// The header a trusted gateway writes the user in (`RATE_LIMIT_USER_HEADER`).
    #[cfg(feature = "axum")]
    pub(crate) fn user_header(&self) -> Option<&http::HeaderName> {
        self.inner.user_header.as_ref()
    }

    /// The settings.
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
    pub fn is_subscribed(&self) -> bool {
        self.inner.subscribed.load(Ordering::SeqCst)
    }

    /// Entries in L1 (0 without L1). Pending maintenance is run first.
    pub fn l1_len(&self) -> u64 {
        self.inner.l1.as_ref().map_or(0, |l1| {
            l1.run_pending_tasks();
            l1.entry_count()
        })
    }

    /// Bytes L1 holds by its own weighing (keys, headers and bodies; 0 without L1), the
    /// figure `CACHE_L1_MAX_BYTES` bounds. Pending maintenance is run first.
    pub fn l1_weighted_bytes(&self) -> u64 {
        self.inner.l1.as_ref().map_or(0, |l1| {
            l1.run_pending_tasks();
            l1.weighted_size()
        })
    }

    pub(crate) fn event(&self, category: &str, event: &'static str) {
        self.inner.event(category, event);
    }

    pub(crate) fn key(&self, tenant: &TenantId, category: &Category, hash: String) -> CacheKey {
        CacheKey {
            key: category.key(&self.inner.keys, tenant, &hash),
            gens: self.inner.generation_keys(tenant, category),
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
        let key = self
            .material_key(tenant, category, key_material)
            .map_err(CacheError::Encode)?;
        let mut compute = Some(compute);
        let mut ttl = Some(ttl);
        for _ in 0..3 {
            let served = self
                .serve(&key, true, true, || async {
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
                                };
                                Computed::Store(e, ttl, Ok(v))
                            }
                            Err(e) => Computed::Private(Err(CacheError::Encode(e))),
                        },
                        Err(e) => {
                            let msg: Arc<str> = Arc::from(e.to_string());
                            Computed::Share(Arc::new(e.clone()), msg, Err(CacheError::Upstream(e)))
                        }
                    }
                })
                .await;
            match served {
                Served::Cached(e, status) => match serde_json::from_slice::<T>(&e.body) {
                    Ok(value) => {
                        return Ok(Cached {
                            value,
                            status,
                            age: Duration::from_millis(entry::now_ms().saturating_sub(e.stored_ms)),
                        })
                    }
                    // A value of another shape under this key: treat as a miss.
                    Err(_) if compute.is_some() => {
                        self.inner.l1_remove(key.key.as_str());
                        let _ = self.inner.backend.delete(&key.key).await;
                        continue;
                    }
                    Err(e) => return Err(CacheError::SharedUpstream(e.to_string())),
                },
                Served::Own(r) => {
                    return r.map(|value| Cached {
                        value,
                        status: CacheStatus::Miss,
                        age: Duration::ZERO,
                    })
                }
                Served::SharedError(any, msg) => {
                    return Err(match any.downcast_ref::<E>() {
                        Some(e) => CacheError::Upstream(e.clone()),
                        None => CacheError::SharedUpstream(msg.to_string()),
                    })
                }
                Served::Retry => continue,
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

    /// Removes one entry (here, in Redis, and in every instance's L1). Returns whether it
    /// existed in Redis / the store.
    pub async fn invalidate(
        &self,
        tenant: &TenantId,
        category: &Category,
        key_material: &impl Serialize,
    ) -> Result<bool, BackendError> {
        let key = self
            .material_key(tenant, category, key_material)
            .map_err(|_| BackendError::Unsupported("key material is not serializable"))?;
        self.invalidate_key(&key).await
    }

    pub(crate) async fn invalidate_key(&self, key: &CacheKey) -> Result<bool, BackendError> {
        self.inner.apply(&format!("k {}", key.key.as_str()));
        self.event(key.category.name(), "invalidation");
        let existed = self.inner.backend.delete(&key.key).await;
        self.publish(&format!("k {}", key.key.as_str())).await;
        existed
    }

    /// Invalidates every entry of a category of one tenant (for [`Category::Ai`], of one
    /// model) in O(1): one `INCR` of the category's generation, which every entry carries
    /// and every read compares; every instance's L1 follows by pub/sub. The old entries
    /// are never served again and leave Redis at their TTL (no SCAN). Returns the
    /// category's new generation.
    pub async fn invalidate_category(
        &self,
        tenant: &TenantId,
        category: &Category,
    ) -> Result<u64, BackendError> {
        let [_, gen_key] = self.inner.generation_keys(tenant, category);
        let pattern = category.pattern(&self.inner.keys, tenant);
        self.invalidate_generation(category.name(), &gen_key, &[pattern])
            .await
    }

    /// Invalidates every cache entry of one tenant (query, AI and named categories) in
    /// O(1), like [`invalidate_category`](Self::invalidate_category) with the tenant's
    /// generation. Returns the tenant's new generation.
    pub async fn invalidate_tenant(&self, tenant: &TenantId) -> Result<u64, BackendError> {
        let gen_key = self.inner.keys.key(KeyKind::CacheGen, tenant, &[]);
        let patterns = [KeyKind::Query, KeyKind::Ai, KeyKind::Cache]
            .map(|k| self.inner.keys.kind_pattern(k, tenant));
        self.invalidate_generation("tenant", &gen_key, &patterns)
            .await
    }

    async fn invalidate_generation(
        &self,
        category: &str,
        gen_key: &RedisKey,
        patterns: &[crate::keys::KeyPattern],
    ) -> Result<u64, BackendError> {
        let prefixes: Vec<String> = patterns
            .iter()
            .map(|p| p.as_str().trim_end_matches('*').to_string())
            .collect();
        // L1 here first, then the generation (a fill that read the old one is refused from
        // L1 by the local generation counter), then the other instances.
        for p in &prefixes {
            self.inner.apply(&format!("p {p}"));
        }
        self.event(category, "invalidation");
        // Made random first if absent, then moved on: never a value an entry carries.
        self.inner
            .backend
            .set_nx(
                gen_key,
                first_generation().to_string().as_bytes(),
                Some(self.inner.generation_ttl(Duration::ZERO)),
            )
            .await?;
        let generation = self.inner.backend.incr(gen_key).await?;
        for p in &prefixes {
            self.publish(&format!("p {p}")).await;
        }
        Ok(generation)
    }

    async fn publish(&self, message: &str) {
        #[cfg(feature = "redis")]
        if let Backend::Redis(r) = &self.inner.backend {
            if let Err(e) = r.publish(&self.inner.channel, message).await {
                tracing::warn!(error = %e, "cache invalidation not published");
            }
        }
        #[cfg(not(feature = "redis"))]
        let _ = message;
    }

    /// The core: lookup, single-flight, lease, compute, store.
    pub(crate) async fn serve<R, F, Fut>(
        &self,
        key: &CacheKey,
        read: bool,
        write: bool,
        compute: F,
    ) -> Served<R>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Computed<R>>,
    {
        let inner = &*self.inner;
        let cat = key.category.name();
        let gen0 = inner.generation.load(Ordering::SeqCst);
        let mut stale = None;
        let mut l2_down = false;
        // The generations read with the entry; a new entry is stored with them.
        let mut gens = None;
        if read {
            match inner.lookup(key, gen0, &mut gens).await {
                Lookup::Fresh(e, status) => {
                    inner.count(cat, status);
                    return Served::Cached(e, status);
                }
                Lookup::Stale(e) => stale = Some(e),
                Lookup::Miss { l2_down: d } => l2_down = d,
            }
        }
        let mut guard = FlightGuard {
            inner,
            key: None,
            tx: None,
        };
        if read {
            loop {
                let waiting = {
                    let mut flights = inner
                        .flights
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match flights.get(key.key.as_str()) {
                        Some(rx) => Some(rx.clone()),
                        None => {
                            let (tx, rx) = watch::channel(None);
                            flights.insert(key.key.as_str().to_string(), rx);
                            guard.key = Some(key.key.as_str().to_string());
                            guard.tx = Some(tx);
                            None
                        }
                    }
                };
                let Some(mut rx) = waiting else { break };
                let flight = rx.wait_for(Option::is_some).await.map(|v| v.clone());
                match flight {
                    Ok(Some(Flight::Entry(e))) => {
                        inner.count(cat, CacheStatus::Coalesced);
                        return Served::Cached(e, CacheStatus::Coalesced);
                    }
                    Ok(Some(Flight::Error(any, msg))) => return Served::SharedError(any, msg),
                    Ok(Some(Flight::Private)) => return Served::Retry,
                    // The leader was dropped mid-way: take over.
                    Ok(None) | Err(_) => continue,
                }
            }
        }
        // Leader. Across instances: a lease, so others wait for this fill (only with a
        // shared, reachable L2; the key and token are made only then).
        let mut lease = None;
        if read && write && !l2_down && inner.shares_l2() {
            let lock_key = inner
                .keys
                .key(KeyKind::Lock, &key.tenant, &["cache", cat, &key.hash]);
            let token = random_token();
            let mut leased = false;
            match inner
                .backend
                .set_nx(&lock_key, token.as_bytes(), Some(inner.config.lease))
                .await
            {
                Ok(true) => leased = true,
                Ok(false) => {
                    if let Some(e) = stale.take() {
                        inner.count(cat, CacheStatus::Stale);
                        guard.finish(Flight::Entry(e.clone()));
                        return Served::Cached(e, CacheStatus::Stale);
                    }
                    let deadline = Instant::now() + inner.config.lease;
                    // Backing off (10 ms doubling to 100 ms): fills take seconds (AI answers),
                    // and every poll is two commands for one waiting request.
                    let mut pause = Duration::from_millis(10);
                    while Instant::now() < deadline {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(100));
                        match inner.lookup_l2(key, gen0, &mut gens).await {
                            Lookup::Fresh(e, _) => {
                                inner.count(cat, CacheStatus::Coalesced);
                                guard.finish(Flight::Entry(e.clone()));
                                return Served::Cached(e, CacheStatus::Coalesced);
                            }
                            Lookup::Miss { l2_down: true } => break,
                            _ => {}
                        }
                        // The filler gave up (error or uncacheable): take over.
                        if let Ok(true) = inner
                            .backend
                            .set_nx(&lock_key, token.as_bytes(), Some(inner.config.lease))
                            .await
                        {
                            leased = true;
                            break;
                        }
                    }
                }
                Err(_) => {}
            }
            if leased {
                lease = Some((lock_key, token));
            }
        }
        if read {
            inner.count(cat, CacheStatus::Miss);
        }
        // The generations an entry carries are had BEFORE the upstream runs (made first if
        // absent): read after it, a fill that computed before an invalidation would carry
        // the new generation and be served (a `no-cache` request reads nothing before).
        if write {
            gens = Some(inner.generations(key, gens).await);
        }
        let served = match compute().await {
            Computed::Store(mut e, ttl, own) => {
                let ttl = jitter(ttl, inner.config.jitter_percent);
                let now = entry::now_ms();
                e.stored_ms = now;
                e.fresh_until_ms =
                    now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
                if write {
                    e.gens = gens.unwrap_or([0, 0]);
                }
                let e = Arc::new(e);
                if write {
                    inner.store(key, cat, &e, ttl, gen0).await;
                }
                guard.finish(Flight::Entry(e));
                Served::Own(own)
            }
            Computed::Share(any, msg, own) => {
                inner.event(cat, "upstream_error");
                guard.finish(Flight::Error(any, msg));
                Served::Own(own)
            }
            Computed::Private(own) => {
                guard.finish(Flight::Private);
                Served::Own(own)
            }
        };
        if let Some((lock_key, token)) = lease {
            let _ = inner
                .backend
                .delete_if_eq(&lock_key, token.as_bytes())
                .await;
        }
        served
    }
}

impl Inner {
    fn event(&self, category: &str, event: &'static str) {
        self.metrics
            .cache_events
            .get_or_create(&CacheLabels {
                category: category.to_string(),
                event,
            })
            .inc();
    }

    fn count(&self, category: &str, status: CacheStatus) {
        let t = &self.metrics.cache_totals;
        let (counter, event) = match status {
            CacheStatus::HitL1 => (Some(&t.hits_l1), "hit_l1"),
            CacheStatus::HitL2 => (Some(&t.hits_l2), "hit_l2"),
            CacheStatus::Stale => (Some(&t.stale), "stale"),
            CacheStatus::Miss => (Some(&t.misses), "miss"),
            CacheStatus::Coalesced => (Some(&t.misses), "coalesced"),
            CacheStatus::Bypass => (None, "bypass"),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.event(category, event);
    }

    /// Whether other instances see the same L2 (Redis): only then is a lease useful.
    fn shares_l2(&self) -> bool {
        !matches!(self.backend, Backend::Memory(_))
    }

    fn l1_remove(&self, key: &str) {
        if let Some(l1) = &self.l1 {
            l1.invalidate(key);
        }
    }

    /// Applies an invalidation message: `k <key>` or `p <key prefix>`, or `flush`.
    fn apply(&self, message: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let Some(l1) = &self.l1 else { return };
        if let Some(k) = message.strip_prefix("k ") {
            l1.invalidate(k);
        } else if let Some(p) = message.strip_prefix("p ") {
            let p = p.to_string();
            if l1
                .invalidate_entries_if(move |k, _| k.starts_with(&p))
                .is_err()
            {
                l1.invalidate_all();
            }
        } else {
            l1.invalidate_all();
        }
    }

    /// The generation keys of a category of a tenant: the tenant's and the category's.
    fn generation_keys(&self, tenant: &TenantId, category: &Category) -> [RedisKey; 2] {
        [
            self.keys.key(KeyKind::CacheGen, tenant, &[]),
            self.keys
                .key(KeyKind::CacheGen, tenant, &[&category.generation_name()]),
        ]
    }

    /// The generations to store an entry with: those read with the lookup, else read now;
    /// a generation key that does not exist yet is made (random, `SET NX`) first. When
    /// they cannot be had, `[0, 0]`: reads never serve an entry with a 0 generation.
    async fn generations(&self, key: &CacheKey, read: Option<[u64; 2]>) -> [u64; 2] {
        if let Some(g) = read.filter(|g| !g.contains(&0)) {
            return g;
        }
        let [t, c] = &key.gens;
        let read = |raw: Vec<Option<Bytes>>| {
            [
                generation(raw.first().and_then(Option::as_ref)),
                generation(raw.get(1).and_then(Option::as_ref)),
            ]
        };
        let Ok(current) = self.backend.get_many(&[t, c]).await.map(read) else {
            return [0, 0];
        };
        if !current.contains(&0) {
            return current;
        }
        for (k, g) in [t, c].into_iter().zip(current) {
            if g == 0 {
                let first = first_generation().to_string();
                if self
                    .backend
                    .set_nx(
                        k,
                        first.as_bytes(),
                        Some(self.generation_ttl(Duration::ZERO)),
                    )
                    .await
                    .is_err()
                {
                    return [0, 0];
                }
            }
        }
        self.backend.get_many(&[t, c]).await.map_or([0, 0], read)
    }

    async fn lookup(&self, key: &CacheKey, gen0: u64, gens: &mut Option<[u64; 2]>) -> Lookup {
        if let Some(l1) = &self.l1 {
            if let Some(e) = l1.get(key.key.as_str()) {
                if e.fresh_until_ms > entry::now_ms() {
                    return Lookup::Fresh(e, CacheStatus::HitL1);
                }
            }
        }
        self.lookup_l2(key, gen0, gens).await
    }

    /// One round trip (`MGET` of the two generations and the entry, one slot); an entry of
    /// older generations is a miss, never served, not even stale.
    async fn lookup_l2(&self, ck: &CacheKey, gen0: u64, gens: &mut Option<[u64; 2]>) -> Lookup {
        let key = &ck.key;
        let [t, c] = &ck.gens;
        let got = self.backend.get_many(&[t, c, key]).await.map(|mut v| {
            let current = [
                generation(v.first().and_then(Option::as_ref)),
                generation(v.get(1).and_then(Option::as_ref)),
            ];
            *gens = Some(current);
            (v.pop().flatten(), current)
        });
        match got {
            Ok((Some(raw), current)) => {
                match Entry::decode(&raw).filter(|e| e.gens == current && !current.contains(&0)) {
                    Some(e) => {
                        let now = entry::now_ms();
                        let e = Arc::new(e);
                        if e.fresh_until_ms > now {
                            self.fill_l1(key, &e, gen0);
                            Lookup::Fresh(e, CacheStatus::HitL2)
                        } else if e.fresh_until_ms.saturating_add(
                            // Saturating: the stored time is whatever the store holds, and
                            // CACHE_STALE_TTL any duration the environment spells.
                            u64::try_from(self.config.stale.as_millis()).unwrap_or(u64::MAX),
                        ) > now
                        {
                            Lookup::Stale(e)
                        } else {
                            Lookup::Miss { l2_down: false }
                        }
                    }
                    // Not an envelope of this version, or invalidated: a miss, never an error.
                    None => Lookup::Miss { l2_down: false },
                }
            }
            Ok((None, _)) => Lookup::Miss { l2_down: false },
            Err(e) => {
                tracing::debug!(error = %e, "cache L2 unavailable; L1 only");
                Lookup::Miss { l2_down: true }
            }
        }
    }

    /// Puts an entry in L1 unless an invalidation happened since `gen0` (which could mean
    /// this entry is older than it).
    fn fill_l1(&self, key: &RedisKey, e: &Arc<Entry>, gen0: u64) {
        if let Some(l1) = &self.l1 {
            if self.generation.load(Ordering::SeqCst) == gen0 {
                l1.insert(key.as_str().to_string(), e.clone());
            }
        }
    }

    async fn store(&self, ck: &CacheKey, category: &str, e: &Arc<Entry>, ttl: Duration, gen0: u64) {
        let key = &ck.key;
        let raw = e.encode();
        let lifetime = ttl.saturating_add(self.config.stale);
        match self.backend.set(key, &raw, Some(lifetime)).await {
            Ok(()) => {
                self.event(category, "store");
                // The generations live at least as long as the entries that carry them.
                let gen_ttl = self.generation_ttl(lifetime);
                let [t, c] = &ck.gens;
                let _ = futures_util::future::join(
                    self.backend.expire(t, gen_ttl),
                    self.backend.expire(c, gen_ttl),
                )
                .await;
            }
            Err(err) => tracing::debug!(error = %err, "cache entry not stored in L2"),
        }
        self.fill_l1(key, e, gen0);
    }

    /// How long a generation key is kept: at least the longest lifetime (TTL, jitter and
    /// stale time) of any configured category, and `lifetime`. Generation keys are made
    /// for whatever tenants and (AI) model names clients send, so they must expire like
    /// every other key; one that expires is safe to lose (a missing generation serves
    /// nothing and a new one starts at a random value).
    fn generation_ttl(&self, lifetime: Duration) -> Duration {
        let c = &self.config;
        let longest = c
            .categories
            .values()
            .chain([&c.default_ttl, &c.query_ttl, &c.ai_ttl])
            .max()
            .copied()
            .unwrap_or_default();
        let jitter = u32::from(c.jitter_percent);
        let longest = longest
            .saturating_add(longest.checked_mul(jitter).map_or(longest, |d| d / 100))
            .saturating_add(c.stale);
        // Redis refuses expiry times past ~2^62 ms; a century is forever for a cache.
        longest
            .max(lifetime)
            .min(Duration::from_secs(100 * 365 * 24 * 3600))
    }
}

/// Keeps the invalidation subscription alive; flushes L1 whenever it (re)connects or
/// drops, since messages published meanwhile are lost.
#[cfg(feature = "redis")]
async fn subscriber(
    inner: Weak<Inner>,
    clients: Vec<redis::Client>,
    connect_timeout: Duration,
    channel: String,
) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut pubsub = None;
        for client in &clients {
            if let Ok(Ok(ps)) =
                tokio::time::timeout(connect_timeout, client.get_async_pubsub()).await
            {
                pubsub = Some(ps);
                break;
            }
        }
        let Some(mut ps) = pubsub else {
            if inner.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        if ps.subscribe(&channel).await.is_err() {
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        {
            let Some(i) = inner.upgrade() else { return };
            i.apply("flush");
            i.subscribed.store(true, Ordering::SeqCst);
            tracing::debug!("cache invalidation subscription live; L1 flushed");
        }
        let mut messages = ps.on_message();
        while let Some(msg) = messages.next().await {
            let Some(i) = inner.upgrade() else { return };
            if let Ok(text) = msg.get_payload::<String>() {
                i.apply(&text);
            }
        }
        drop(messages);
        let Some(i) = inner.upgrade() else { return };
        i.subscribed.store(false, Ordering::SeqCst);
        i.apply("flush");
        tracing::warn!("cache invalidation subscription dropped; L1 flushed, reconnecting");
        tokio::time::sleep(backoff).await;
    }
}

#[cfg(test)]
mod hostile_store_tests {
    use super::*;
    use crate::config::Config;
    use proptest::prelude::*;

    /// Milliseconds around now, far past and far future, and the extremes.
    fn instant_ms() -> impl Strategy<Value = u64> {
        let now = entry::now_ms();
        prop_oneof![
            Just(0),
            Just(u64::MAX),
            any::<u64>(),
            (0..120_000u64).prop_map(move |d| now - 60_000 + d),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 128,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "proptest-regressions/cache/mod.txt",
                ),
            )),
            ..ProptestConfig::default()
        })]

        /// Whatever the store holds under a key (an envelope with any times, status,
        /// headers and body, or raw bytes), with any TTL, jitter and stale window from the
        /// environment: a lookup answers a value, never a panic (L1 on, so a decoded entry
        /// is also put there; a miss stores what it computed).
        #[test]
        fn any_stored_value_is_served_or_recomputed(
            stored_ms in instant_ms(),
            fresh_until_ms in instant_ms(),
            status in any::<u16>(),
            json_body in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..40),
            raw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..60)),
            stale in prop_oneof![
                Just("0".to_string()),
                Just("10s".to_string()),
                Just("18446744073709551".to_string()),
                (0..u64::MAX / 1000).prop_map(|s| s.to_string()),
            ],
            ttl in prop_oneof![
                Just("5m".to_string()),
                Just("18446744073709551615".to_string()),
                any::<u64>().prop_map(|s| s.to_string()),
                // Milliseconds that fit a u64 but not when added to now.
                (u64::MAX / 1000 - 1_000_000_000..=u64::MAX / 1000).prop_map(|s| s.to_string()),
            ],
            jitter in prop_oneof![Just("0"), Just("10"), Just("100")],
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let served: Result<serde_json::Value, String> = rt.block_on(async {
                let config = Config::from_vars([
                    ("REDIS_ENABLED", "false"),
                    ("CACHE_STALE_TTL", stale.as_str()),
                    ("QUERY_CACHE_TTL", ttl.as_str()),
                    ("CACHE_TTL_JITTER", jitter),
                ])
                .map_err(|e| e.to_string())?;
                let metrics = Metrics::new();
                let backend = Backend::from_config(&config, &metrics).map_err(|e| e.to_string())?;
                let cache = Cache::from_config(&config, backend.clone(), &metrics);
                let t = TenantId::new("acme").unwrap();
                let key = cache
                    .material_key(&t, &Category::query(), &"k")
                    .map_err(|e| e.to_string())?;
                let stored = match &raw {
                    Some(raw) => raw.clone(),
                    None => Entry {
                        stored_ms,
                        fresh_until_ms,
                        status,
                        headers: vec![("content-type".into(), "application/json".into())],
                        body: if json_body {
                            Bytes::from_static(b"{\"from\":\"store\"}")
                        } else {
                            Bytes::from(body.clone())
                        },
                        gens: [0, 0],
                    }
                    .encode(),
                };
                backend
                    .set(&key.key, &stored, None)
                    .await
                    .map_err(|e| e.to_string())?;
                // Twice: the second lookup may be served from L1.
                let mut last = serde_json::Value::Null;
                for _ in 0..2 {
                    last = cache
                        .get_or_compute(&t, &Category::query(), &"k", || async {
                            Ok::<_, String>(serde_json::json!({ "from": "compute" }))
                        })
                        .await
                        .map_err(|e| e.to_string())?
                        .value;
                }
                Ok(last)
            });
            let v = served.map_err(TestCaseError::fail)?;
            prop_assert!(v["from"] == "store" || v["from"] == "compute", "{v}");
        }
    }
}
