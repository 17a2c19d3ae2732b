//! The local cache of counters Redis reported full: a repeat offender is answered without
//! a round trip until its first unit frees.
//!
//! Entries exist only for keys Redis reported with no unit left and expire when the first
//! unit frees, so the cache never allows anything and never outlasts Redis' own denial.
//! Bounded (`RATE_LIMIT_DENY_CACHE` entries, least recently used go first); keyed by the
//! seeded hash of the counter's key.

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::algo::Outcome;

/// Counter-key hash -> the instant its first unit frees.
#[derive(Debug, Clone)]
pub(crate) struct DenyCache {
    entries: moka::sync::Cache<u64, Instant>,
}

impl DenyCache {
    /// A cache of at most `capacity` counters; `evicted` counts the denials still in force
    /// it does not keep for lack of room — dropped, or not admitted because the counters it
    /// holds are seen more often (moka's TinyLFU reports both as size evictions): more
    /// identities are denied than it holds, so some repeats reach Redis.
    pub(crate) fn new(capacity: u64, evicted: Counter) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                // Entries hold their own deadline; this only bounds stale ones.
                .time_to_live(Duration::from_secs(3600))
                .eviction_listener(move |_, until: Instant, cause| {
                    if cause == moka::notification::RemovalCause::Size && until > Instant::now() {
                        evicted.inc();
                    }
                })
                .build(),
        }
    }

    /// How long the counter `hash` stays full, if it is known to be full now.
    pub(crate) fn denied_for(&self, hash: u64, now: Instant) -> Option<Duration> {
        self.entries
            .get(&hash)
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Learns from a script answer sent at `sent`: a counter with no unit left is full
    /// until its first unit frees.
    pub(crate) fn learn(&self, hash: u64, outcome: &Outcome, sent: Instant) {
        if outcome.remaining == 0 && outcome.free1_ms > 0 {
            // A block is held at most a second: lifted (a reset, new limits) on another
            // instance, it must not stay in force here until its end.
            let hold = if outcome.blocked {
                outcome.free1_ms.min(1000)
            } else {
                outcome.free1_ms
            };
            self.entries
                .insert(hash, sent + Duration::from_millis(hold));
        }
    }

    /// Forgets one counter (its units were given back).
    pub(crate) fn forget(&self, hash: u64) {
        self.entries.invalidate(&hash);
    }

    /// Forgets everything (the cache is keyed by hashes, so one identity's entries cannot
    /// be picked out; it refills from the next Redis answers).
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(remaining: u32, free1_ms: u64) -> Outcome {
        Outcome {
            allowed: false,
            remaining,
            reset_ms: 0,
            retry_ms: Some(free1_ms),
            free1_ms,
            overflow: false,
            reserved: 0,
            blocked: false,
        }
    }

    #[test]
    fn only_full_counters_are_remembered_until_their_first_unit_frees() {
        let cache = DenyCache::new(10, Counter::default());
        let sent = Instant::now();
        cache.learn(1, &outcome(0, 500), sent);
        cache.learn(2, &outcome(3, 500), sent); // units left: not full
        cache.learn(3, &outcome(0, 0), sent); // a unit is free already
        assert_eq!(cache.denied_for(1, sent), Some(Duration::from_millis(500)));
        assert_eq!(cache.denied_for(2, sent), None);
        assert_eq!(cache.denied_for(3, sent), None);
        assert_eq!(cache.denied_for(1, sent + Duration::from_millis(500)), None);
        cache.clear();
        assert_eq!(cache.denied_for(1, sent), None);
    }

    #[test]
    fn live_denials_dropped_for_room_are_counted() {
        let evicted = Counter::<u64>::default();
        let cache = DenyCache::new(100, evicted.clone());
        let sent = Instant::now();
        // Stale ones (their unit freed) are not a loss.
        for h in 0..300 {
            cache.learn(h, &outcome(0, 1), sent - Duration::from_secs(1));
        }
        cache.entries.run_pending_tasks();
        assert_eq!(evicted.get(), 0);
        // A flood of distinct identities denied for a minute: most are forgotten.
        for h in 1000..2000 {
            cache.learn(h, &outcome(0, 60_000), sent);
        }
        cache.entries.run_pending_tasks();
        assert!(evicted.get() >= 800, "{}", evicted.get());
        assert!(cache.entries.entry_count() <= 100);
    }
}
