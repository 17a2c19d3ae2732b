//! The in-memory backend: bounded, expiring, with an injectable clock.
//!
//! Modelled on mini-redis' `db.rs`: one mutex-protected map plus an expiry index; a
//! background task purges expired entries and stops when the last handle is dropped.
//! Reads also check expiry, so an entry is never visible after its TTL even between purges.
//!
//! Bounds: at most `max_entries` entries and `max_bytes` bytes of keys plus values. When a
//! write would exceed them, entries already expired go first, then the least recently used
//! (Redis' `allkeys-lru`, exact rather than sampled: a linked hash map keeps the order).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use hashlink::linked_hash_map::RawEntryMut;
use hashlink::LinkedHashMap;
use tokio::sync::Notify;

use super::{BackendError, KeyTtl};
use crate::clock::{Clock, SystemClock};
use crate::config::MemoryConfig;
use crate::keys::{KeyPattern, RedisKey};

/// The in-memory store. Clones share the same data.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::backend::MemoryStore;
/// use tenant_guard::clock::ManualClock;
/// use tenant_guard::config::MemoryConfig;
/// use tenant_guard::keys::Keys;
/// use tenant_guard::tenant::TenantId;
///
/// let clock = ManualClock::new();
/// let store = MemoryStore::with_clock(MemoryConfig::default(), clock.clone());
/// let key = Keys::default().cache(&TenantId::new("acme").unwrap(), "reports", "1");
/// store.set(&key, b"v".as_slice().into(), Some(Duration::from_secs(5))).unwrap();
/// assert_eq!(store.get(&key).as_deref(), Some(&b"v"[..]));
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(store.get(&key), None);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    max_entries: u64,
    max_bytes: u64,
    /// Wakes the purge task so it can exit; the task holds its own `Arc` of this.
    shutdown: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The purge task only holds a Weak<Inner>: tell it to stop now rather than at
        // its next tick.
        self.shutdown.notify_one();
    }
}

#[derive(Debug, Default)]
struct State {
    /// Entries in least-recently-used-first order: a get moves its entry to the back in
    /// O(1), eviction pops the front.
    map: LinkedHashMap<Arc<str>, Entry>,
    /// (expires_at_ms, key) of entries with a TTL, so the next expiry is first.
    expiries: BTreeSet<(u64, Arc<str>)>,
    bytes: u64,
    evictions: u64,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires_at: Option<u64>,
}

fn ttl_ms(ttl: Duration) -> u64 {
    // Redis rounds PX to whole milliseconds; a sub-millisecond TTL still lives 1 ms.
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl State {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let (k, e) = self.map.remove_entry(key)?;
        if let Some(at) = e.expires_at {
            self.expiries.remove(&(at, k.clone()));
        }
        self.bytes -= (k.len() + e.value.len()) as u64;
        Some(e)
    }

    /// Looks a key up, dropping it first if it has expired; `touch` also marks it most
    /// recently used (reads do, bookkeeping like TTL queries does not).
    fn live(&mut self, key: &str, now: u64, touch: bool) -> Option<&mut Entry> {
        let entry = if touch {
            self.map.to_back(key)
        } else {
            self.map.get_mut(key)
        };
        let expired = entry?.expires_at.is_some_and(|at| at <= now);
        if expired {
            self.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    fn insert(&mut self, key: &str, value: Bytes, expires_at: Option<u64>) {
        let new_len = value.len() as u64;
        match self.map.raw_entry_mut().from_key(key) {
            RawEntryMut::Occupied(mut o) => {
                // Overwrite in place: keeps the key's allocation, moves it to the back.
                o.to_back();
                let k = o.key().clone();
                let e = o.get_mut();
                let old_len = e.value.len() as u64;
                let old_at = std::mem::replace(&mut e.expires_at, expires_at);
                e.value = value;
                self.bytes = self.bytes - old_len + new_len;
                if old_at != expires_at {
                    if let Some(at) = old_at {
                        self.expiries.remove(&(at, k.clone()));
                    }
                    if let Some(at) = expires_at {
                        self.expiries.insert((at, k));
                    }
                }
            }
            RawEntryMut::Vacant(v) => {
                let k: Arc<str> = Arc::from(key);
                self.bytes += k.len() as u64 + new_len;
                if let Some(at) = expires_at {
                    self.expiries.insert((at, k.clone()));
                }
                v.insert(k, Entry { value, expires_at });
            }
        }
    }

    /// Remaining lifetime of a live key (`PTTL`), without marking it used.
    fn ttl(&mut self, key: &str, now: u64) -> KeyTtl {
        match self.live(key, now, false) {
            None => KeyTtl::Missing,
            Some(Entry {
                expires_at: None, ..
            }) => KeyTtl::Persistent,
            Some(Entry {
                expires_at: Some(at),
                ..
            }) => KeyTtl::Expires(Duration::from_millis(*at - now)),
        }
    }

    fn evict_to(&mut self, max_entries: u64, max_bytes: u64, now: u64) {
        // Expired entries go first: dropping them loses nothing.
        while (self.map.len() as u64 > max_entries || self.bytes > max_bytes)
            && self.expiries.first().is_some_and(|(at, _)| *at <= now)
        {
            if let Some((_, k)) = self.expiries.pop_first() {
                self.remove(&k);
            }
        }
        while self.map.len() as u64 > max_entries || self.bytes > max_bytes {
            let Some(k) = self.map.front().map(|(k, _)| k.clone()) else {
                break;
            };
            self.remove(&k);
            self.evictions += 1;
        }
    }

    fn purge(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some((at, k)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.remove(&k);
            n += 1;
        }
        n
    }
}

impl MemoryStore {
    /// A store on the system clock. If called inside a Tokio runtime, a background task
    /// purges expired entries every `config.purge_interval` until the store is dropped.
    ///
    /// ```
    /// let store = tenant_guard::backend::MemoryStore::new(Default::default());
    /// assert!(store.is_empty());
    /// ```
    pub fn new(config: MemoryConfig) -> Self {
        Self::with_clock(config, SystemClock::new())
    }

    /// A store on the given clock (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn with_clock(config: MemoryConfig, clock: impl Clock) -> Self {
        let shutdown = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            clock: Arc::new(clock),
            max_entries: config.max_entries.get(),
            max_bytes: config.max_bytes.get(),
            shutdown: shutdown.clone(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(purge_task(
                Arc::downgrade(&inner),
                shutdown,
                config.purge_interval,
            ));
        }
        Self { inner }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the cache, so recover the guard.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// The clock this store runs on.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    pub(crate) fn clock_arc(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// Reads a value.
    pub fn get(&self, key: &RedisKey) -> Option<Bytes> {
        let now = self.now();
        let mut st = self.state();
        Some(st.live(key.as_str(), now, true)?.value.clone())
    }

    fn check_size(&self, key: &RedisKey, value: &Bytes) -> Result<(), BackendError> {
        let size = (key.as_str().len() + value.len()) as u64;
        if size > self.inner.max_bytes {
            return Err(BackendError::TooLarge {
                size,
                limit: self.inner.max_bytes,
            });
        }
        Ok(())
    }

    /// Writes a value, replacing any previous one and its TTL (`SET key value [PX ttl]`).
    pub fn set(
        &self,
        key: &RedisKey,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.check_size(key, &value)?;
        let now = self.now();
        let mut st = self.state();
        st.insert(
            key.as_str(),
            value,
            ttl.map(|t| now.saturating_add(ttl_ms(t))),
        );
        st.evict_to(self.inner.max_entries, self.inner.max_bytes, now);
        Ok(())
    }

    /// Writes only if the key does not exist (`SET key value NX [PX ttl]`); returns whether
    /// it wrote.
    pub fn set_nx(
        &self,
        key: &RedisKey,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        self.check_size(key, &value)?;
        let now = self.now();
        let mut st = self.state();
        if st.live(key.as_str(), now, false).is_some() {
            return Ok(false);
        }
        st.insert(
            key.as_str(),
            value,
            ttl.map(|t| now.saturating_add(ttl_ms(t))),
        );
        st.evict_to(self.inner.max_entries, self.inner.max_bytes, now);
        Ok(true)
    }

    /// Deletes a key if its value equals `expected` (the compare-and-delete used to release
    /// leases); returns whether it deleted.
    pub fn delete_if_eq(&self, key: &RedisKey, expected: &[u8]) -> bool {
        let now = self.now();
        let mut st = self.state();
        let matches = st
            .live(key.as_str(), now, false)
            .is_some_and(|e| e.value.as_ref() == expected);
        if matches {
            st.remove(key.as_str());
        }
        matches
    }

    /// Deletes a key; returns whether it existed.
    pub fn delete(&self, key: &RedisKey) -> bool {
        let now = self.now();
        let mut st = self.state();
        let existed = st.live(key.as_str(), now, false).is_some();
        st.remove(key.as_str());
        existed
    }

    /// Sets a key's TTL; returns false if the key does not exist (`PEXPIRE`).
    pub fn expire(&self, key: &RedisKey, ttl: Duration) -> bool {
        let now = self.now();
        let mut st = self.state();
        let k = key.as_str();
        let Some(e) = st.live(k, now, false) else {
            return false;
        };
        let old = e.expires_at;
        let at = now.saturating_add(ttl_ms(ttl));
        e.expires_at = Some(at);
        let arc = st.map.get_key_value(k).map(|(a, _)| a.clone());
        if let Some(a) = arc {
            if let Some(old) = old {
                st.expiries.remove(&(old, a.clone()));
            }
            st.expiries.insert((at, a));
        }
        true
    }

    /// A key's remaining time to live (`PTTL`).
    pub fn ttl(&self, key: &RedisKey) -> KeyTtl {
        let now = self.now();
        self.state().ttl(key.as_str(), now)
    }

    /// Deletes every key matching a tenant-confined pattern; returns how many.
    pub fn delete_matching(&self, pattern: &KeyPattern) -> u64 {
        let mut st = self.state();
        let doomed: Vec<Arc<str>> = st
            .map
            .keys()
            .filter(|k| pattern.matches(k))
            .cloned()
            .collect();
        let now = self.now();
        let mut n = 0;
        for k in doomed {
            if st.live(&k, now, false).is_some() {
                n += 1;
            }
            st.remove(&k);
        }
        n
    }

    /// Runs `f` with several reads and writes under one lock: the memory counterpart of a
    /// Lua script (the session store uses it for multi-key updates). Bounds are enforced
    /// once `f` returns.
    pub(crate) fn transact<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        let now = self.now();
        let mut st = self.state();
        let mut tx = Txn {
            st: &mut st,
            now,
            max_bytes: self.inner.max_bytes,
        };
        let r = f(&mut tx);
        st.evict_to(self.inner.max_entries, self.inner.max_bytes, now);
        r
    }

    /// Removes expired entries now; returns how many. The background task calls this.
    pub fn purge_expired(&self) -> usize {
        let now = self.now();
        self.state().purge(now)
    }

    /// Entries held, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.state().map.len()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> u64 {
        self.state().bytes
    }

    /// Entries evicted to stay within bounds since the store was made.
    pub fn evictions(&self) -> u64 {
        self.state().evictions
    }
}

/// Access to the store inside [`MemoryStore::transact`]; every call sees the same instant.
pub(crate) struct Txn<'a> {
    st: &'a mut State,
    now: u64,
    max_bytes: u64,
}

impl Txn<'_> {
    /// The store clock's time of this transaction, in ms.
    pub(crate) fn now_ms(&self) -> u64 {
        self.now
    }

    /// Reads a live value (marks it recently used).
    pub(crate) fn get(&mut self, key: &RedisKey) -> Option<Bytes> {
        Some(self.st.live(key.as_str(), self.now, true)?.value.clone())
    }

    /// Remaining lifetime of a live key.
    pub(crate) fn ttl(&mut self, key: &RedisKey) -> KeyTtl {
        self.st.ttl(key.as_str(), self.now)
    }

    /// Writes a value with an optional TTL.
    pub(crate) fn set(
        &mut self,
        key: &RedisKey,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        let size = (key.as_str().len() + value.len()) as u64;
        if size > self.max_bytes {
            return Err(BackendError::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        let at = ttl.map(|t| self.now.saturating_add(ttl_ms(t)));
        self.st.insert(key.as_str(), value, at);
        Ok(())
    }

    /// Deletes a key; returns whether it was live.
    pub(crate) fn delete(&mut self, key: &RedisKey) -> bool {
        let existed = self.st.live(key.as_str(), self.now, false).is_some();
        self.st.remove(key.as_str());
        existed
    }
}

async fn purge_task(inner: Weak<Inner>, shutdown: Arc<Notify>, every: Duration) {
    loop {
        tokio::select! {
            () = shutdown.notified() => return,
            () = tokio::time::sleep(every) => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let now = inner.clock.now_ms();
        let purged = inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .purge(now);
        if purged > 0 {
            tracing::trace!(purged, "memory backend purged expired entries");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::keys::Keys;
    use crate::tenant::TenantId;
    use std::num::NonZeroU64;

    fn key(id: &str) -> RedisKey {
        Keys::default().cache(&TenantId::new("t").unwrap(), "c", id)
    }

    fn bounded(entries: u64, bytes: u64) -> (MemoryStore, ManualClock) {
        let clock = ManualClock::new();
        let cfg = MemoryConfig {
            max_entries: NonZeroU64::new(entries).unwrap(),
            max_bytes: NonZeroU64::new(bytes).unwrap(),
            ..MemoryConfig::default()
        };
        (MemoryStore::with_clock(cfg, clock.clone()), clock)
    }

    #[test]
    fn lru_eviction_by_count() {
        let (s, _) = bounded(2, 1 << 20);
        s.set(&key("a"), "1".into(), None).unwrap();
        s.set(&key("b"), "2".into(), None).unwrap();
        assert!(s.get(&key("a")).is_some()); // a is now more recent than b
        s.set(&key("c"), "3".into(), None).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.get(&key("b")).is_none());
        assert!(s.get(&key("a")).is_some());
        assert!(s.get(&key("c")).is_some());
        assert_eq!(s.evictions(), 1);
    }

    #[test]
    fn eviction_by_bytes_and_too_large() {
        let klen = key("a").as_str().len() as u64;
        let (s, _) = bounded(100, 2 * (klen + 10));
        s.set(&key("a"), vec![0u8; 10].into(), None).unwrap();
        s.set(&key("b"), vec![0u8; 10].into(), None).unwrap();
        s.set(&key("c"), vec![0u8; 10].into(), None).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.bytes() <= 2 * (klen + 10));
        let err = s.set(&key("d"), vec![0u8; 1000].into(), None).unwrap_err();
        assert!(matches!(err, BackendError::TooLarge { .. }));
        // The failed write lost nothing.
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let (s, clock) = bounded(2, 1 << 20);
        s.set(&key("short"), "1".into(), Some(Duration::from_secs(1)))
            .unwrap();
        s.set(&key("long"), "2".into(), None).unwrap();
        clock.advance(Duration::from_secs(2));
        s.set(&key("new"), "3".into(), None).unwrap();
        assert!(s.get(&key("long")).is_some());
        assert_eq!(s.evictions(), 0);
    }

    #[test]
    fn purge_removes_only_expired() {
        let (s, clock) = bounded(100, 1 << 20);
        s.set(&key("a"), "1".into(), Some(Duration::from_millis(10)))
            .unwrap();
        s.set(&key("b"), "1".into(), Some(Duration::from_millis(30)))
            .unwrap();
        s.set(&key("c"), "1".into(), None).unwrap();
        clock.advance(Duration::from_millis(20));
        assert_eq!(s.purge_expired(), 1);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.bytes(),
            (key("b").as_str().len() + key("c").as_str().len() + 2) as u64
        );
    }

    #[tokio::test(start_paused = true)]
    async fn purge_task_runs_and_stops_on_drop() {
        let cfg = MemoryConfig {
            purge_interval: Duration::from_millis(100),
            ..MemoryConfig::default()
        };
        let s = MemoryStore::new(cfg);
        s.set(&key("a"), "1".into(), Some(Duration::from_millis(50)))
            .unwrap();
        assert_eq!(s.len(), 1);
        // The paused runtime auto-advances tokio time, but SystemClock reads real time:
        // give it a real 60 ms so the entry has expired when the task ticks.
        std::thread::sleep(Duration::from_millis(60));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(s.len(), 0, "background purge did not run");

        let weak = Arc::downgrade(&s.inner);
        drop(s);
        assert!(weak.upgrade().is_none());
        // The task got the shutdown notification; yielding lets it finish.
        tokio::task::yield_now().await;
    }
}
