//! Settings of the backends (Redis connection, memory bounds, circuit breaker): the type [`crate::config::Config`] assembles from the environment
//! and code can build directly.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use crate::secret::RedisUrl;

/// Where Redis is, if anywhere.
///
/// ```
/// use tenant_guard::config::{Config, RedisMode};
///
/// assert_eq!(Config::from_vars([("REDIS_ENABLED", "false")]).unwrap().redis.mode, RedisMode::Disabled);
/// let single = Config::from_vars([("REDIS_URL", "redis://cache:6379")]).unwrap();
/// assert!(matches!(&single.redis.mode, RedisMode::Single(url) if url.host_port() == "cache:6379"));
/// let cluster = Config::from_vars([("REDIS_CLUSTER_NODES", "node-1:6379,node-2:6379,node-3:6379")]).unwrap();
/// assert!(matches!(&cluster.redis.mode, RedisMode::Cluster(nodes) if nodes.len() == 3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// No Redis: everything runs on the in-memory backend.
    Disabled,
    /// One Redis server.
    Single(RedisUrl),
    /// A Redis Cluster, reached through these seed nodes.
    Cluster(Vec<RedisUrl>),
}

/// Redis connection settings.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::config::{Config, RedisConfig, RedisMode};
///
/// let c = Config::from_vars([("REDIS_URL", "redis://cache:6379"), ("REDIS_COMMAND_TIMEOUT", "250ms")]).unwrap();
/// assert_eq!(c.redis.command_timeout, Duration::from_millis(250));
/// assert_eq!(c.redis.connect_timeout, Duration::from_secs(5)); // the default
/// // Built in code.
/// let mut redis = RedisConfig::default();
/// assert_eq!(redis.mode, RedisMode::Disabled);
/// redis.max_retries = 5;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Single node, cluster, or disabled.
    pub mode: RedisMode,
    /// Time allowed to open a TCP connection (`REDIS_CONNECT_TIMEOUT`, default 5 s).
    pub connect_timeout: Duration,
    /// Deadline of every command (`REDIS_COMMAND_TIMEOUT`, default 1 s).
    pub command_timeout: Duration,
    /// Reconnect attempts per outage before waiting for the next command
    /// (`REDIS_MAX_RETRIES`, default 3).
    pub max_retries: u32,
    /// CA certificate(s) that sign the server's TLS certificate, when it is not in the
    /// system trust store (`REDIS_TLS_CA_FILE`, default none: the system roots).
    pub tls_ca: Option<TlsCa>,
    /// Connections to a single node, used in turn, each multiplexed (`REDIS_POOL_SIZE`,
    /// 1 to 64, default [`default_pool_size`]: one per CPU core, 2 to 8; a cluster keeps
    /// one per node). One connection carries every command of the process in turn through
    /// one driver task; several let requests that wait for Redis at the same time go out
    /// and come back on more than one; more than the cores split the same commands into
    /// more, smaller socket writes (the session bench on 2 cores: 4 connections served
    /// 0.79-0.89x what 2 did).
    pub pool_size: std::num::NonZeroUsize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            mode: RedisMode::Disabled,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(1),
            max_retries: 3,
            tls_ca: None,
            pool_size: default_pool_size(),
        }
    }
}

/// The default `REDIS_POOL_SIZE`: one connection per CPU core this process may use, at
/// least 2 and at most 8.
///
/// ```
/// let n = tenant_guard::backend::default_pool_size().get();
/// assert!((2..=8).contains(&n));
/// ```
pub fn default_pool_size() -> std::num::NonZeroUsize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    std::num::NonZeroUsize::new(cores.clamp(2, 8)).expect("clamped to 2 or more")
}

/// Largest CA file read from `REDIS_TLS_CA_FILE` (a bundle of a few hundred roots fits).
const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// PEM CA certificates read from `REDIS_TLS_CA_FILE`: the roots a `rediss://` connection
/// trusts instead of the system's.
///
/// ```
/// use tenant_guard::config::TlsCa;
///
/// let pem = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n";
/// let ca = TlsCa::from_pem("ca.pem", pem.as_bytes().to_vec()).unwrap();
/// assert_eq!(ca.path(), std::path::Path::new("ca.pem"));
/// assert!(TlsCa::from_pem("key.pem", b"not a certificate".to_vec()).is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCa {
    path: std::path::PathBuf,
    pem: Vec<u8>,
}

impl TlsCa {
    /// Reads a PEM file of one or more CA certificates (at most 1 MiB).
    ///
    /// ```
    /// let err = tenant_guard::config::TlsCa::read("/nonexistent/ca.pem").unwrap_err();
    /// assert!(err.reason().contains("cannot read"));
    /// ```
    pub fn read(path: impl Into<std::path::PathBuf>) -> Result<Self, crate::InvalidValue> {
        use std::io::Read;
        let path = path.into();
        // Checked before opening: opening a FIFO would wait for a writer, and a device
        // (`/dev/zero`) would never end.
        let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read the file ({e})"))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let file = std::fs::File::open(&path).map_err(|e| format!("cannot read the file ({e})"))?;
        let mut pem = Vec::new();
        file.take(MAX_CA_FILE_BYTES + 1)
            .read_to_end(&mut pem)
            .map_err(|e| format!("cannot read the file ({e})"))?;
        if pem.len() as u64 > MAX_CA_FILE_BYTES {
            return Err(format!("larger than {MAX_CA_FILE_BYTES} bytes").into());
        }
        Self::from_pem(path, pem)
    }

    /// Wraps PEM text already in memory; `path` only names it in messages.
    ///
    /// ```
    /// use tenant_guard::config::TlsCa;
    /// let pem = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n".to_vec();
    /// let ca = TlsCa::from_pem("ca.pem", pem).unwrap();
    /// assert_eq!(ca.path().to_str(), Some("ca.pem"));
    /// let err = TlsCa::from_pem("ca.pem", b"hello".to_vec()).unwrap_err();
    /// assert!(err.reason().contains("holds no PEM certificate"));
    /// ```
    pub fn from_pem(
        path: impl Into<std::path::PathBuf>,
        pem: Vec<u8>,
    ) -> Result<Self, crate::InvalidValue> {
        let has_cert = pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----");
        if !has_cert {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
        }
        Ok(Self {
            path: path.into(),
            pem,
        })
    }

    /// The file it was read from.
    ///
    /// ```
    /// use std::path::Path;
    /// use tenant_guard::config::TlsCa;
    /// let pem = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n".to_vec();
    /// let ca = TlsCa::from_pem("/etc/redis/ca.pem", pem).unwrap();
    /// assert_eq!(ca.path(), Path::new("/etc/redis/ca.pem"));
    /// ```
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The PEM bytes.
    ///
    /// ```
    /// use tenant_guard::config::TlsCa;
    /// let pem = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n".to_vec();
    /// let ca = TlsCa::from_pem("ca.pem", pem.clone()).unwrap();
    /// assert_eq!(ca.pem(), pem.as_slice());
    /// // Debug shows the size, not the certificates.
    /// assert_eq!(format!("{ca:?}"), format!(r#"TlsCa {{ path: "ca.pem", bytes: {} }}"#, pem.len()));
    /// ```
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

impl fmt::Debug for TlsCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCa")
            .field("path", &self.path)
            .field("bytes", &self.pem.len())
            .finish()
    }
}

/// Bounds of the in-memory backend.
///
/// Each kind of state has its own bound, so a flood of one kind cannot push out another:
/// cache entries are evicted least recently used first; sessions and rate-limit counters
/// that are still live are never evicted (a new session is refused, a new identity shares
/// its rule's overflow counter). Expired state of any kind may always go.
///
/// ```
/// use std::num::NonZeroU64;
/// use tenant_guard::config::{Config, MemoryConfig};
///
/// // From the environment, the per-kind bounds default to TG_MEMORY_MAX_ENTRIES.
/// let c = Config::from_vars([("TG_MEMORY_MAX_ENTRIES", "5000"), ("TG_MEMORY_MAX_SESSIONS", "800")]).unwrap();
/// assert_eq!(c.memory.max_entries.get(), 5000);
/// assert_eq!(c.memory.max_sessions.get(), 800);
/// assert_eq!(c.memory.max_counters.get(), 5000);
///
/// // In code, start from the defaults and change fields.
/// let mut m = MemoryConfig::default();
/// m.max_sessions = NonZeroU64::new(10_000).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Most cache entries kept: cached queries, AI responses, named cache entries and
    /// their fill locks; the least recently used go first (`TG_MEMORY_MAX_ENTRIES`,
    /// default 100 000; also the default of the two bounds below when read from the
    /// environment).
    pub max_entries: NonZeroU64,
    /// Most live sessions kept (`TG_MEMORY_MAX_SESSIONS`, default `TG_MEMORY_MAX_ENTRIES`).
    /// Per-user session indexes come on top (at most one per logged-in user). When all
    /// are live, creating a new session fails with 503; existing ones are untouched.
    pub max_sessions: NonZeroU64,
    /// Most rate-limit counters of identities kept (`TG_MEMORY_MAX_COUNTERS`, default
    /// `TG_MEMORY_MAX_ENTRIES`). When all are live, a new identity is counted on its
    /// rule's shared overflow counter (one per rule and plan tier, on top of this bound).
    pub max_counters: NonZeroU64,
    /// Most bytes of keys and values of cache entries and sessions together
    /// (`TG_MEMORY_MAX_BYTES`, default 64 MiB). Cache entries give way first; a session
    /// write that would still not fit is refused.
    pub max_bytes: NonZeroU64,
    /// How often expired entries are purged (`TG_MEMORY_PURGE_INTERVAL`, default 1 s).
    pub purge_interval: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_entries: NonZeroU64::new(100_000).expect("nonzero"),
            max_sessions: NonZeroU64::new(100_000).expect("nonzero"),
            max_counters: NonZeroU64::new(100_000).expect("nonzero"),
            max_bytes: NonZeroU64::new(64 << 20).expect("nonzero"),
            purge_interval: Duration::from_secs(1),
        }
    }
}

/// Circuit breaker settings.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::config::{BreakerConfig, Config};
///
/// let c = Config::from_vars([("TG_BREAKER_THRESHOLD", "5"), ("TG_BREAKER_PROBE_INTERVAL", "2s")]).unwrap();
/// assert_eq!(c.breaker.failure_threshold.get(), 5);
/// assert_eq!(c.breaker.probe_interval, Duration::from_secs(2));
/// assert_eq!(BreakerConfig::default().failure_threshold.get(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (`TG_BREAKER_THRESHOLD`, default 3).
    pub failure_threshold: NonZeroU32,
    /// Pause between probes while open (`TG_BREAKER_PROBE_INTERVAL`, default 500 ms).
    pub probe_interval: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: NonZeroU32::new(3).expect("nonzero"),
            probe_interval: Duration::from_millis(500),
        }
    }
}
