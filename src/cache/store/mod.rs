//! The cache's storage seams: [`CacheStore`] (the shared L2: entries, generations, fill
//! leases) and [`CacheBus`] (invalidation messages to other instances' L1), with the memory
//! and Redis implementations beside this file and room for a user's own.

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::backend::{Backend, PubSubEvent, StoreFuture};
use crate::keys::RedisKey;

/// Where the cache keeps entries: the L2 behind the in-process L1. Every method is one
/// atomic operation on its key(s); keys of one call share the tenant's slot.
///
/// The crate implements it for [`MemoryStore`](crate::backend::MemoryStore) and
/// [`RedisStore`](crate::backend::RedisStore); implement it to keep entries elsewhere and
/// pass it to [`Cache::with_store`](super::Cache::with_store). Values are opaque bytes
/// (entries, and generations written as decimal text that [`incr`](Self::incr) counts on).
///
/// ```
/// use tenant_guard::backend::{MemoryConfig, MemoryStore};
/// use tenant_guard::cache::{Cache, CacheConfig, CacheStore};
/// use tenant_guard::{keys::Keys, metrics::Metrics};
///
/// fn assert_store<S: CacheStore>(_: &S) {}
/// let memory = MemoryStore::new(MemoryConfig::default());
/// assert_store(&memory);
/// let cache = Cache::with_store(memory, None, CacheConfig::default(), Keys::default(), &Metrics::new());
/// # let _ = cache;
/// ```
pub trait CacheStore: Send + Sync + 'static {
    /// A short name for logs and `Debug` (`memory`, `redis`, ...).
    fn name(&self) -> &'static str;

    /// Whether other app instances read the same entries: only then does a fill take a
    /// lease, and may an L1 sit in front (with a [`CacheBus`] to keep it honest).
    fn is_shared(&self) -> bool;

    /// The values of `keys`, in order (`None`: absent or expired).
    fn get_many<'a>(&'a self, keys: &'a [&'a RedisKey]) -> StoreFuture<'a, Vec<Option<Bytes>>>;

    /// Writes `value` at `key`, expiring after `ttl`, replacing any value and TTL.
    fn set<'a>(&'a self, key: &'a RedisKey, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()>;

    /// Writes `value` at `key` only if absent, expiring after `ttl`; whether it wrote.
    fn set_nx<'a>(
        &'a self,
        key: &'a RedisKey,
        value: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Deletes `key` only if it holds `expected` (releasing a lease); whether it did.
    fn delete_if_eq<'a>(&'a self, key: &'a RedisKey, expected: &'a [u8]) -> StoreFuture<'a, bool>;

    /// Deletes `key`; whether it existed.
    fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool>;

    /// Sets the TTL of `key`; whether it exists.
    fn expire<'a>(&'a self, key: &'a RedisKey, ttl: Duration) -> StoreFuture<'a, bool>;

    /// Adds one to the decimal integer at `key` (absent: 0), keeping its TTL; the new value.
    fn incr<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, u64>;
}

/// How instances tell each other about invalidations, so each drops what its L1 holds.
/// Messages are best effort: a subscriber that was away reports [`PubSubEvent::Live`] again
/// and the cache then empties its L1.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::backend::{MemoryConfig, MemoryStore};
/// use tenant_guard::cache::CacheBus;
/// let memory = MemoryStore::new(MemoryConfig::default());
/// // One process: nobody to tell.
/// assert_eq!(CacheBus::publish(&memory, "chan", "flush").await.unwrap(), 0);
/// assert!(CacheBus::subscribe(&memory, "chan".into(), Box::new(|_| true)).is_none());
/// # }
/// ```
pub trait CacheBus: Send + Sync + 'static {
    /// Publishes `message` on `channel`; how many subscribers received it.
    fn publish<'a>(&'a self, channel: &'a str, message: &'a str) -> StoreFuture<'a, u64>;

    /// Calls `handler` with every [`PubSubEvent`] of `channel` from a background task until
    /// it returns false or the task is aborted through the returned handle (`None`: no
    /// subscription, nothing to hear).
    fn subscribe(&self, channel: String, handler: BusHandler) -> Option<tokio::task::AbortHandle>;
}

/// What [`CacheBus::subscribe`] calls with each event; `false` ends the subscription.
///
/// ```
/// use tenant_guard::backend::PubSubEvent;
/// use tenant_guard::cache::BusHandler;
///
/// // A handler that counts messages and ends the subscription at `stop`.
/// let mut seen = 0;
/// let mut handler: BusHandler = Box::new(move |event| match event {
///     PubSubEvent::Message("stop") => false,
///     PubSubEvent::Message(_) => { seen += 1; true }
///     PubSubEvent::Live | PubSubEvent::Lost | PubSubEvent::Unreachable => true,
/// });
/// assert!(handler(PubSubEvent::Live));
/// assert!(handler(PubSubEvent::Message("k tg:query:{acme}:abc")));
/// assert!(!handler(PubSubEvent::Message("stop")));
/// ```
pub type BusHandler = Box<dyn FnMut(PubSubEvent<'_>) -> bool + Send + 'static>;

/// The cache's store and bus on `backend` (the only place the cache looks inside it).
pub(super) fn on(backend: Backend) -> (Arc<dyn CacheStore>, Option<Arc<dyn CacheBus>>) {
    match backend {
        // One process: nobody to tell.
        Backend::Memory(m) => (Arc::new(m), None),
        #[cfg(feature = "redis")]
        Backend::Redis(r) => {
            let r = Arc::new(r);
            (r.clone(), Some(r))
        }
    }
}
