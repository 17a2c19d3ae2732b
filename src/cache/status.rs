//! What a cache call returns: the value and where it came from, or why it failed.

use std::time::Duration;

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
