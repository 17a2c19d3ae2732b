//! Storage backends: Redis (single node or cluster) and in-memory, behind one [`Backend`].
//!
//! The layers talk to [`Backend`]; its operations mean the same on both stores (one
//! conformance suite in `tests/` runs against memory, Redis and a 3-node cluster).

mod config;
mod health;
mod memory;
mod pubsub;
#[cfg(feature = "redis")]
mod redis;
mod report;

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

#[cfg(feature = "redis")]
pub use self::redis::{Deployment, LuaScript, RedisStore};
pub use config::{BreakerConfig, MemoryConfig, RedisConfig, RedisMode, TlsCa, default_pool_size};
pub use health::{BreakerState, Health};
pub(crate) use memory::Txn;
pub use memory::{MemoryStats, MemoryStore};
pub use pubsub::PubSubEvent;

use crate::keys::{KeyPattern, RedisKey};
use crate::metrics::{BackendLabels, Metrics};

/// The future a store method returns (the storage traits of the session and cache layers).
///
/// ```
/// use tenant_guard::backend::{Backend, MemoryStore, StoreFuture};
/// use tenant_guard::{keys::{Keys, RedisKey}, tenant::TenantId};
///
/// // A store method written as a trait object would write it: a boxed future.
/// fn load<'a>(backend: &'a Backend, key: &'a RedisKey) -> StoreFuture<'a, Option<bytes::Bytes>> {
///     Box::pin(backend.get(key))
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = Backend::Memory(MemoryStore::new(Default::default()));
/// let key = Keys::default().query(&TenantId::new("acme")?, "h");
/// backend.set(&key, b"rows", None).await?;
/// assert_eq!(load(&backend, &key).await?.as_deref(), Some(&b"rows"[..]));
/// # Ok(()) }
/// ```
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// Errors of backend operations.
///
/// ```
/// use std::num::NonZeroU64;
/// use tenant_guard::backend::{BackendError, MemoryStore};
/// use tenant_guard::{config::MemoryConfig, keys::Keys, tenant::TenantId};
///
/// let mut bounds = MemoryConfig::default();
/// bounds.max_bytes = NonZeroU64::new(64).unwrap();
/// let store = MemoryStore::new(bounds);
/// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
/// let err = store.set(&key, vec![0; 100].into(), None).unwrap_err();
/// assert!(matches!(err, BackendError::TooLarge { limit: 64, .. }));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Redis is considered down (circuit breaker open); nothing was sent.
    #[error("Redis unavailable (circuit breaker open; last error: {0})")]
    Unavailable(String),
    /// A command did not complete within the command timeout.
    #[error("Redis command timed out after {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[cfg(feature = "redis")]
    #[error("Redis error: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The value is larger than the memory backend may hold.
    #[error("entry of {size} bytes exceeds the memory backend's limit of {limit} bytes")]
    TooLarge {
        /// Bytes of key and value.
        size: u64,
        /// `TG_MEMORY_MAX_BYTES`.
        limit: u64,
    },
    /// The memory backend holds as many live entries of this kind as it may, and does not
    /// evict live ones of it (sessions): the write is refused.
    #[error("memory backend full: {what} at their bound of {limit} with live entries only")]
    Full {
        /// `sessions` (`TG_MEMORY_MAX_SESSIONS`) or `bytes` (`TG_MEMORY_MAX_BYTES`).
        what: &'static str,
        /// The bound.
        limit: u64,
    },
    /// The operation is not available on this backend or configuration.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

impl BackendError {
    /// Whether the error means the backend is unreachable (as opposed to a rejected
    /// command), i.e. whether an outage policy should apply.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::backend::BackendError;
    ///
    /// assert!(BackendError::Timeout(Duration::from_secs(1)).is_outage());
    /// assert!(BackendError::Unavailable("connection refused".into()).is_outage());
    /// assert!(!BackendError::TooLarge { size: 100, limit: 64 }.is_outage());
    /// ```
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::Timeout(_) => true,
            #[cfg(feature = "redis")]
            Self::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_cluster_error()
            }
            Self::TooLarge { .. } | Self::Full { .. } | Self::Unsupported(_) => false,
        }
    }
}

/// Remaining lifetime of a key (`PTTL`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tenant_guard::backend::{Backend, KeyTtl, MemoryStore};
/// use tenant_guard::{keys::Keys, tenant::TenantId};
///
/// let backend = Backend::Memory(MemoryStore::new(Default::default()));
/// let key = Keys::default().query(&TenantId::new("acme")?, "h");
/// assert_eq!(backend.ttl(&key).await?, KeyTtl::Missing);
/// backend.set(&key, b"rows", None).await?;
/// assert_eq!(backend.ttl(&key).await?, KeyTtl::Persistent);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// The key does not exist.
    Missing,
    /// The key exists and never expires.
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

/// Which backend is configured.
///
/// ```
/// use tenant_guard::backend::{Backend, BackendKind};
/// use tenant_guard::{config::Config, metrics::Metrics};
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false")]).unwrap();
/// let backend = Backend::from_config(&config, &Metrics::new()).unwrap();
/// assert_eq!(backend.kind(), BackendKind::Memory);
/// // As `/health` reports it.
/// assert_eq!(serde_json::to_string(&BackendKind::RedisCluster).unwrap(), r#""redis-cluster""#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// In-process memory.
    Memory,
    /// One Redis server.
    Redis,
    /// A Redis Cluster.
    RedisCluster,
}

/// The store the layers use: memory or Redis. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tenant_guard::{backend::Backend, config::Config, keys::Keys, metrics::Metrics, tenant::TenantId};
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
/// let backend = Backend::from_config(&config, &Metrics::new())?;
/// let key = Keys::default().query(&TenantId::new("acme")?, "abc123");
/// backend.set(&key, b"rows", Some(Duration::from_secs(300))).await?;
/// assert_eq!(backend.get(&key).await?.as_deref(), Some(&b"rows"[..]));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub enum Backend {
    /// The in-memory store.
    Memory(MemoryStore),
    /// Redis, single node or cluster.
    #[cfg(feature = "redis")]
    Redis(RedisStore),
}

impl Backend {
    /// The backend `redis` asks for: memory (bounded by `memory`) when Redis is disabled,
    /// else Redis behind a circuit breaker (`breaker`). Redis is connected lazily: this
    /// succeeds while Redis is down.
    ///
    /// ```
    /// use tenant_guard::backend::{Backend, BackendKind, RedisConfig};
    /// let b = Backend::new(&RedisConfig::default(), Default::default(), Default::default(),
    ///                      &tenant_guard::metrics::Metrics::new()).unwrap();
    /// assert_eq!(b.kind(), BackendKind::Memory);
    /// ```
    pub fn new(
        redis: &RedisConfig,
        memory: MemoryConfig,
        breaker: BreakerConfig,
        metrics: &Metrics,
    ) -> Result<Self, BackendError> {
        match &redis.mode {
            RedisMode::Disabled => {
                metrics
                    .backend
                    .get_or_create(&BackendLabels { backend: "memory" })
                    .set(1);
                Ok(Self::Memory(MemoryStore::new(memory)))
            }
            #[cfg(feature = "redis")]
            RedisMode::Single(_) | RedisMode::Cluster(_) => {
                let health = Health::new(breaker, metrics.clone());
                Ok(Self::Redis(RedisStore::new(redis, health)?))
            }
            #[cfg(not(feature = "redis"))]
            RedisMode::Single(_) | RedisMode::Cluster(_) => {
                let _ = breaker;
                Err(BackendError::Unsupported(
                    "Redis is configured but this build lacks the `redis` feature",
                ))
            }
        }
    }

    /// Which backend this is.
    ///
    /// ```
    /// use tenant_guard::backend::{Backend, BackendKind, MemoryStore};
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// assert_eq!(backend.kind(), BackendKind::Memory);
    /// ```
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Memory(_) => BackendKind::Memory,
            #[cfg(feature = "redis")]
            Self::Redis(r) if r.is_cluster() => BackendKind::RedisCluster,
            #[cfg(feature = "redis")]
            Self::Redis(_) => BackendKind::Redis,
        }
    }

    /// Whether other app instances see the same state (Redis): only then do leases,
    /// an L1 in front and invalidation messages make sense.
    ///
    /// ```
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// assert!(!Backend::Memory(MemoryStore::new(Default::default())).is_shared());
    /// ```
    pub fn is_shared(&self) -> bool {
        !matches!(self, Self::Memory(_))
    }

    /// Redis health, if this is Redis.
    ///
    /// ```
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// // Memory has no connection to watch; Redis returns its circuit breaker.
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// assert!(backend.health().is_none());
    /// ```
    pub fn health(&self) -> Option<&Health> {
        match self {
            Self::Memory(_) => None,
            #[cfg(feature = "redis")]
            Self::Redis(r) => Some(r.health()),
        }
    }

    /// Warnings about the deployment behind the backend (on Redis: a `maxmemory-policy`
    /// that may evict counters and sessions), each also logged once; see
    /// [`RedisStore::check_deployment`]. Memory has none.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// let backend = Backend::from_config(&Config::default(), &Metrics::new()).unwrap();
    /// assert!(backend.check_deployment().await.unwrap().is_empty());
    /// # }
    /// ```
    pub async fn check_deployment(&self) -> Result<Vec<String>, BackendError> {
        match self {
            Self::Memory(_) => Ok(Vec::new()),
            #[cfg(feature = "redis")]
            Self::Redis(r) => Ok(r.check_deployment().await?.warnings.clone()),
        }
    }

    /// Reads a value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::{Backend, MemoryStore}, keys::Keys, tenant::TenantId};
    ///
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// let key = Keys::default().cache(&TenantId::new("acme")?, "reports", "1");
    /// assert_eq!(backend.get(&key).await?, None);
    /// backend.set(&key, b"pdf", None).await?;
    /// assert_eq!(backend.get(&key).await?.as_deref(), Some(&b"pdf"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: &RedisKey) -> Result<Option<Bytes>, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.get(key)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.get(key).await,
        }
    }

    /// Reads several keys of one tenant (one `MGET`: they share the tenant's slot).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::{Backend, MemoryStore}, keys::Keys, tenant::TenantId};
    ///
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// let acme = TenantId::new("acme")?;
    /// let (a, b) = (Keys::default().query(&acme, "a"), Keys::default().query(&acme, "b"));
    /// backend.set(&a, b"1", None).await?;
    /// let values = backend.get_many(&[&a, &b]).await?;
    /// assert_eq!(values[0].as_deref(), Some(&b"1"[..]));
    /// assert_eq!(values[1], None);
    /// # Ok(()) }
    /// ```
    pub async fn get_many(&self, keys: &[&RedisKey]) -> Result<Vec<Option<Bytes>>, BackendError> {
        match self {
            Self::Memory(m) => Ok(keys.iter().map(|k| m.get(k)).collect()),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.get_many(keys).await,
        }
    }

    /// Adds one to an integer key (absent: 0), keeping its TTL; returns the new value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::{Backend, MemoryStore}, keys::Keys, tenant::TenantId};
    ///
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// let key = Keys::default().cache(&TenantId::new("acme")?, "counters", "logins");
    /// assert_eq!(backend.incr(&key).await?, 1);
    /// assert_eq!(backend.incr(&key).await?, 2);
    /// assert_eq!(backend.get(&key).await?.as_deref(), Some(&b"2"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn incr(&self, key: &RedisKey) -> Result<u64, BackendError> {
        match self {
            Self::Memory(m) => m.incr(key),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.incr(key).await,
        }
    }

    /// Writes a value with an optional TTL, replacing any previous value and TTL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tenant_guard::backend::{Backend, KeyTtl, MemoryStore};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    ///
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// let key = Keys::default().query(&TenantId::new("acme")?, "h");
    /// backend.set(&key, b"old", Some(Duration::from_secs(60))).await?;
    /// backend.set(&key, b"new", None).await?; // replaces the value and drops the TTL
    /// assert_eq!(backend.get(&key).await?.as_deref(), Some(&b"new"[..]));
    /// assert_eq!(backend.ttl(&key).await?, KeyTtl::Persistent);
    /// # Ok(()) }
    /// ```
    pub async fn set(
        &self,
        key: &RedisKey,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        match self {
            Self::Memory(m) => m.set(key, Bytes::copy_from_slice(value), ttl),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.set(key, value, ttl).await,
        }
    }

    /// Writes only if the key is absent; returns whether it wrote.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::{Backend, MemoryStore}, keys::Keys, tenant::TenantId};
    ///
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// let key = Keys::default().cache(&TenantId::new("acme")?, "locks", "report-1");
    /// assert!(backend.set_nx(&key, b"instance-a", None).await?);
    /// assert!(!backend.set_nx(&key, b"instance-b", None).await?);
    /// assert_eq!(backend.get(&key).await?.as_deref(), Some(&b"instance-a"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn set_nx(
        &self,
        key: &RedisKey,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        match self {
            Self::Memory(m) => m.set_nx(key, Bytes::copy_from_slice(value), ttl),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.set_nx(key, value, ttl).await,
        }
    }

    /// Deletes a key if it holds `expected`; returns whether it did (atomic on both).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::{Backend, MemoryStore}, keys::Keys, tenant::TenantId};
    ///
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// let key = Keys::default().cache(&TenantId::new("acme")?, "locks", "report-1");
    /// backend.set(&key, b"instance-a", None).await?;
    /// assert!(!backend.delete_if_eq(&key, b"instance-b").await?); // not its lock
    /// assert!(backend.delete_if_eq(&key, b"instance-a").await?);
    /// assert_eq!(backend.get(&key).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn delete_if_eq(
        &self,
        key: &RedisKey,
        expected: &[u8],
    ) -> Result<bool, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.delete_if_eq(key, expected)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.delete_if_eq(key, expected).await,
        }
    }

    /// Deletes a key; returns whether it existed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::{Backend, MemoryStore}, keys::Keys, tenant::TenantId};
    ///
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// let key = Keys::default().query(&TenantId::new("acme")?, "h");
    /// backend.set(&key, b"rows", None).await?;
    /// assert!(backend.delete(&key).await?);
    /// assert!(!backend.delete(&key).await?);
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: &RedisKey) -> Result<bool, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.delete(key)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.delete(key).await,
        }
    }

    /// Sets a key's TTL; false if the key does not exist.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tenant_guard::backend::{Backend, KeyTtl, MemoryStore};
    /// use tenant_guard::{clock::ManualClock, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::with_clock(Default::default(), ManualClock::new());
    /// let backend = Backend::Memory(store);
    /// let key = Keys::default().query(&TenantId::new("acme")?, "h");
    /// assert!(!backend.expire(&key, Duration::from_secs(30)).await?); // no such key
    /// backend.set(&key, b"rows", None).await?;
    /// assert!(backend.expire(&key, Duration::from_secs(30)).await?);
    /// assert_eq!(backend.ttl(&key).await?, KeyTtl::Expires(Duration::from_secs(30)));
    /// # Ok(()) }
    /// ```
    pub async fn expire(&self, key: &RedisKey, ttl: Duration) -> Result<bool, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.expire(key, ttl)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.expire(key, ttl).await,
        }
    }

    /// A key's remaining lifetime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tenant_guard::backend::{Backend, KeyTtl, MemoryStore};
    /// use tenant_guard::{clock::ManualClock, keys::Keys, tenant::TenantId};
    ///
    /// let clock = ManualClock::new();
    /// let backend = Backend::Memory(MemoryStore::with_clock(Default::default(), clock.clone()));
    /// let key = Keys::default().query(&TenantId::new("acme")?, "h");
    /// backend.set(&key, b"rows", Some(Duration::from_secs(10))).await?;
    /// clock.advance(Duration::from_secs(4));
    /// assert_eq!(backend.ttl(&key).await?, KeyTtl::Expires(Duration::from_secs(6)));
    /// clock.advance(Duration::from_secs(6));
    /// assert_eq!(backend.ttl(&key).await?, KeyTtl::Missing);
    /// # Ok(()) }
    /// ```
    pub async fn ttl(&self, key: &RedisKey) -> Result<KeyTtl, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.ttl(key)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.ttl(key).await,
        }
    }

    /// Deletes every key matching a tenant-confined pattern (SCAN + UNLINK on Redis).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::{Backend, MemoryStore}, keys::Keys, tenant::TenantId};
    ///
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// let keys = Keys::default();
    /// let (acme, globex) = (TenantId::new("acme")?, TenantId::new("globex")?);
    /// backend.set(&keys.query(&acme, "a"), b"1", None).await?;
    /// backend.set(&keys.query(&acme, "b"), b"2", None).await?;
    /// backend.set(&keys.query(&globex, "a"), b"3", None).await?;
    /// assert_eq!(backend.delete_matching(&keys.tenant_pattern(&acme)).await?, 2);
    /// assert_eq!(backend.key_count().await?, 1); // globex's key is untouched
    /// # Ok(()) }
    /// ```
    pub async fn delete_matching(&self, pattern: &KeyPattern) -> Result<u64, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.delete_matching(pattern)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.delete_matching(pattern).await,
        }
    }

    /// Number of keys: exact for memory; `DBSIZE` for Redis (all keys of the database).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::{Backend, MemoryStore}, keys::Keys, tenant::TenantId};
    ///
    /// let backend = Backend::Memory(MemoryStore::new(Default::default()));
    /// let acme = TenantId::new("acme")?;
    /// backend.set(&Keys::default().query(&acme, "a"), b"1", None).await?;
    /// backend.set(&Keys::default().query(&acme, "b"), b"2", None).await?;
    /// assert_eq!(backend.key_count().await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn key_count(&self) -> Result<u64, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.len() as u64),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.db_size().await,
        }
    }
}
