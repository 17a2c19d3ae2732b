//! Settings of the cache: the type [`crate::config::Config`] assembles from the environment
//! and code can build directly.

use std::collections::BTreeMap;
use std::time::Duration;

/// Cache TTLs.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::cache::CacheConfig;
/// use tenant_guard::config::Config;
///
/// let c = Config::from_vars([("CACHE_TTL_REPORTS", "10m"), ("CACHE_STALE_TTL", "30s")]).unwrap();
/// assert_eq!(c.cache.categories["reports"], Duration::from_secs(600));
/// assert_eq!(c.cache.stale, Duration::from_secs(30));
/// // In code: start from the defaults.
/// let mut cache = CacheConfig::default();
/// cache.ai_ttl = Duration::from_secs(6 * 3600);
/// assert_eq!(cache.ttl_for("ai"), Duration::from_secs(6 * 3600));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// General cache TTL (`CACHE_TTL`, default 1 h).
    pub default_ttl: Duration,
    /// Query cache TTL (`QUERY_CACHE_TTL`, default 5 min).
    pub query_ttl: Duration,
    /// AI response cache TTL (`AI_CACHE_TTL`, default 30 min).
    pub ai_ttl: Duration,
    /// Named categories (`CACHE_TTL_<NAME>`; names lowercased).
    pub categories: BTreeMap<String, Duration>,
    /// Random extra TTL, up to this percentage, so entries filled together do not expire
    /// together (`CACHE_TTL_JITTER`, default 0).
    pub jitter_percent: u8,
    /// How long past its TTL an entry may still be served while another instance refills
    /// it (`CACHE_STALE_TTL`, default 0: never stale).
    pub stale: Duration,
    /// Stale-while-revalidate: how long past its TTL an entry is still served at once
    /// (`X-Cache: STALE`) while one refresh runs in the background (`CACHE_SWR`, default 0:
    /// off).
    pub swr: Duration,
    /// The same for single categories (`CACHE_SWR_<CATEGORY>`; names lowercased).
    pub swrs: BTreeMap<String, Duration>,
    /// Lease a filler holds so other instances wait instead of calling the upstream too
    /// (`CACHE_LEASE_TTL`, default 5 s); also how long they wait at most.
    pub lease: Duration,
    /// Bytes of the in-process L1 in front of Redis (`CACHE_L1_MAX_BYTES`, default 32 MiB;
    /// 0 turns L1 off).
    pub l1_max_bytes: u64,
    /// Largest response body the HTTP layer stores (`CACHE_MAX_BODY_BYTES`, default 1 MiB);
    /// larger ones pass through uncached.
    pub max_body: u64,
    /// Entries whose body is at least this many bytes (and at most `max_body`) are stored
    /// zstd-compressed in Redis when that makes them smaller (`CACHE_COMPRESS_MIN_BYTES`,
    /// default 1 KiB; 0 turns compression off). L1 keeps them decompressed.
    pub compress_min: u64,
    /// Whose responses an HTTP entry may serve (`CACHE_SCOPE`, default `auto`).
    pub scope: crate::cache::CacheScope,
    /// Scopes of single categories (`CACHE_SCOPE_<CATEGORY>`; names lowercased).
    pub scopes: BTreeMap<String, crate::cache::CacheScope>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(3600),
            query_ttl: Duration::from_secs(300),
            ai_ttl: Duration::from_secs(1800),
            categories: BTreeMap::new(),
            jitter_percent: 0,
            stale: Duration::ZERO,
            swr: Duration::ZERO,
            swrs: BTreeMap::new(),
            lease: Duration::from_secs(5),
            l1_max_bytes: 32 * 1024 * 1024,
            max_body: 1024 * 1024,
            compress_min: 1024,
            scope: crate::cache::CacheScope::Auto,
            scopes: BTreeMap::new(),
        }
    }
}

impl CacheConfig {
    /// Scope of a category's HTTP entries: `CACHE_SCOPE_<CATEGORY>`, else `CACHE_SCOPE`.
    ///
    /// ```
    /// use tenant_guard::cache::CacheScope;
    /// let cfg = tenant_guard::config::Config::from_vars([
    ///     ("CACHE_SCOPE", "tenant"),
    ///     ("CACHE_SCOPE_AI", "user"),
    /// ]).unwrap();
    /// assert_eq!(cfg.cache.scope_for("ai"), CacheScope::User);
    /// assert_eq!(cfg.cache.scope_for("query"), CacheScope::Tenant);
    /// ```
    pub fn scope_for(&self, category: &str) -> crate::cache::CacheScope {
        self.scopes.get(category).copied().unwrap_or(self.scope)
    }

    /// Stale-while-revalidate window of a category: `CACHE_SWR_<CATEGORY>`, else
    /// `CACHE_SWR`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = tenant_guard::config::Config::from_vars([
    ///     ("CACHE_SWR", "30s"),
    ///     ("CACHE_SWR_AI", "10m"),
    /// ]).unwrap();
    /// assert_eq!(cfg.cache.swr_for("ai"), Duration::from_secs(600));
    /// assert_eq!(cfg.cache.swr_for("query"), Duration::from_secs(30));
    /// ```
    pub fn swr_for(&self, category: &str) -> Duration {
        self.swrs.get(category).copied().unwrap_or(self.swr)
    }

    /// How long past its TTL an entry of `category` is kept and may be served (the
    /// longer of `stale` and its stale-while-revalidate window).
    pub(crate) fn stale_for(&self, category: &str) -> Duration {
        self.stale.max(self.swr_for(category))
    }

    /// TTL of a category: `query`, `ai`, a `CACHE_TTL_<NAME>` category, else `CACHE_TTL`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = tenant_guard::config::CacheConfig::default();
    /// assert_eq!(cache.ttl_for("query"), Duration::from_secs(300));
    /// assert_eq!(cache.ttl_for("anything-else"), Duration::from_secs(3600));
    /// ```
    pub fn ttl_for(&self, category: &str) -> Duration {
        if let Some(ttl) = self.categories.get(category) {
            return *ttl;
        }
        match category {
            "query" => self.query_ttl,
            "ai" => self.ai_ttl,
            _ => self.default_ttl,
        }
    }
}
