//! The in-process L1 in front of Redis: bounded by bytes (keys and entries weighed),
//! entries expire when they stop being fresh, and nothing lands in it after an
//! invalidation it may predate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::CacheConfig;
use super::{Entry, Inner, entry};
use crate::keys::RedisKey;
use crate::metrics::{CacheLabels, Metrics};

/// The L1 of a cache in front of a store that other instances share and tell about
/// invalidations (`announced`): none otherwise (a store in process already would only be
/// copied; without a bus, another instance's invalidation would not reach it), or when
/// `CACHE_L1_MAX_BYTES` is 0.
pub(super) fn build(
    announced: bool,
    config: &CacheConfig,
    metrics: &Metrics,
) -> Option<moka::sync::Cache<String, Arc<Entry>>> {
    if !announced || config.l1_max_bytes == 0 {
        return None;
    }
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

impl Inner {
    pub(super) fn l1_remove(&self, key: &str) {
        if let Some(l1) = &self.l1 {
            l1.invalidate(key);
        }
    }

    /// Puts an entry in L1 unless an invalidation happened since `gen0` (which could mean
    /// this entry is older than it).
    pub(super) fn fill_l1(&self, key: &RedisKey, e: &Arc<Entry>, gen0: u64) {
        if let Some(l1) = &self.l1 {
            if self.generation.load(Ordering::SeqCst) == gen0 {
                l1.insert(key.as_str().to_string(), e.clone());
            }
        }
    }
}
