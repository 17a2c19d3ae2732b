//! What a cache call returns: the value and where it came from, or why it failed.

use std::time::Duration;

/// Where a value came from.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tenant_guard::cache::CacheError<String>> {
/// use tenant_guard::backend::MemoryStore;
/// use tenant_guard::cache::{Cache, CacheConfig, CacheStatus, Category};
/// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
///
/// let cache = Cache::with_store(MemoryStore::new(Default::default()), None,
///                               CacheConfig::default(), Keys::default(), &Metrics::new());
/// let acme = TenantId::new("acme").unwrap();
/// let query = Category::query();
/// let get = || cache.get_or_compute(&acme, &query, &"q", || async { Ok::<_, String>(1) });
/// assert_eq!(get().await?.status, CacheStatus::Miss);
/// assert_eq!(get().await?.status, CacheStatus::HitL2);
/// assert_eq!(serde_json::to_string(&CacheStatus::HitL2).unwrap(), r#""hit-l2""#);
/// # Ok(()) }
/// ```
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
    ///
    /// ```
    /// use tenant_guard::cache::CacheStatus;
    /// assert_eq!(CacheStatus::HitL1.header(), "HIT");
    /// assert_eq!(CacheStatus::HitL2.header(), "HIT");
    /// assert_eq!(CacheStatus::Coalesced.header(), "MISS");
    /// assert_eq!(CacheStatus::Bypass.header(), "BYPASS");
    /// ```
    pub fn header(self) -> &'static str {
        match self {
            Self::HitL1 | Self::HitL2 => "HIT",
            Self::Stale => "STALE",
            Self::Miss | Self::Coalesced => "MISS",
            Self::Bypass => "BYPASS",
        }
    }

    /// A name for logs and spans: `hit-l1`, `hit-l2`, `stale`, `miss`, `coalesced` or
    /// `bypass`.
    ///
    /// ```
    /// use tenant_guard::cache::CacheStatus;
    /// assert_eq!(CacheStatus::HitL2.label(), "hit-l2");
    /// assert_eq!(CacheStatus::Coalesced.header(), "MISS");
    /// ```
    pub fn label(self) -> &'static str {
        match self {
            Self::HitL1 => "hit-l1",
            Self::HitL2 => "hit-l2",
            Self::Stale => "stale",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Bypass => "bypass",
        }
    }
}

/// A value and where it came from.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tenant_guard::cache::CacheError<String>> {
/// use std::time::Duration;
/// use tenant_guard::backend::MemoryStore;
/// use tenant_guard::cache::{Cache, CacheConfig, CacheStatus, Category};
/// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
///
/// let cache = Cache::with_store(MemoryStore::new(Default::default()), None,
///                               CacheConfig::default(), Keys::default(), &Metrics::new());
/// let acme = TenantId::new("acme").unwrap();
/// let rows = cache.get_or_compute(&acme, &Category::query(), &("orders", 7), || async {
///     Ok::<_, String>(vec!["order-1".to_string()])
/// }).await?;
/// assert_eq!(rows.value, ["order-1"]);
/// assert_eq!(rows.status, CacheStatus::Miss);
/// assert!(rows.age < Duration::from_secs(1)); // computed just now
/// # Ok(()) }
/// ```
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

/// Errors of [`Cache::get_or_compute`](super::Cache::get_or_compute).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::backend::MemoryStore;
/// use tenant_guard::cache::{Cache, CacheConfig, CacheError, Category};
/// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
///
/// let cache = Cache::with_store(MemoryStore::new(Default::default()), None,
///                               CacheConfig::default(), Keys::default(), &Metrics::new());
/// let acme = TenantId::new("acme").unwrap();
/// let failed = cache.get_or_compute(&acme, &Category::query(), &"q", || async {
///     Err::<u32, _>("database down".to_string())
/// }).await;
/// assert!(matches!(failed, Err(CacheError::Upstream(ref e)) if e == "database down"));
/// // Errors are not cached: the next call computes again.
/// let ok = cache.get_or_compute(&acme, &Category::query(), &"q", || async { Ok::<_, String>(7) }).await;
/// assert_eq!(ok.unwrap().value, 7);
/// # }
/// ```
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
