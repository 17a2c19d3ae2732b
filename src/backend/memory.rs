//! The in-memory backend: bounded, expiring, with an injectable clock.
//!
//! Modelled on mini-redis' `db.rs`: mutex-protected maps plus expiry indexes; a
//! background task purges expired entries and stops when the last handle is dropped.
//! Reads also check expiry, so an entry is never visible after its TTL even between purges.
//!
//! Bounds, per kind of key, so that a flood of one kind cannot push out another:
//!
//! - cache entries (queries, AI responses, named entries, fill locks — every kind but
//!   sessions): at most `max_entries`; when a write would exceed it (or the byte bound),
//!   expired entries go first, then the least recently used (Redis' `allkeys-lru`, exact
//!   rather than sampled: a linked hash map keeps the order);
//! - sessions: at most `max_sessions`, never evicted while live. A new session at a full
//!   table is refused ([`BackendError::Full`]) once expired ones are dropped: evicting a
//!   live one would log a user out on behalf of whoever floods the store;
//! - per-user session indexes: not evicted either (losing one would hide sessions from
//!   "log out everywhere"); the session code keeps at most one per user with a session;
//! - bytes of keys and values of all of them: at most `max_bytes`, cache entries giving way
//!   first; a session write that still does not fit is refused.
//!
//! Every eviction costs O(log n) or O(1) (expiry index, LRU list): no scan under the lock.

mod state;

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use state::{Entry, State, ttl_ms};
use tokio::sync::Notify;

use super::{BackendError, KeyTtl, MemoryConfig};
use crate::clock::{Clock, SystemClock};
use crate::keys::{KeyKind, KeyPattern, RedisKey};

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
    bounds: Bounds,
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

#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_entries: u64,
    max_sessions: u64,
    max_bytes: u64,
}

/// Which table a key lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Evictable: everything but sessions.
    Cache = 0,
    Sessions = 1,
    SessionIndexes = 2,
}

impl Part {
    fn of(key: &str) -> Self {
        match KeyKind::of(key) {
            Some(KeyKind::Session) => Self::Sessions,
            Some(KeyKind::SessionIndex) => Self::SessionIndexes,
            // Runtime limits are configuration: never evicted for cache entries.
            Some(KeyKind::Limits) => Self::Sessions,
            _ => Self::Cache,
        }
    }
}

/// Snapshot of what a [`MemoryStore`] holds.
///
/// ```
/// let store = tenant_guard::backend::MemoryStore::new(Default::default());
/// let stats = store.stats();
/// assert_eq!((stats.cache_entries, stats.sessions, stats.refused), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Cache entries (every key but sessions and session indexes), expired ones included
    /// until purged.
    pub cache_entries: u64,
    /// Sessions, expired ones included until purged.
    pub sessions: u64,
    /// Per-user session indexes.
    pub session_indexes: u64,
    /// Bytes of keys and values held.
    pub bytes: u64,
    /// Live cache entries evicted to stay within bounds since the store was made.
    pub evictions: u64,
    /// Session writes refused because sessions (or bytes) were at their bound with live
    /// entries only.
    pub refused: u64,
}

/// Expired entries dropped per lock hold by the purge: a backlog is cleared in steps,
/// letting requests in between.
const PURGE_BATCH: usize = 1024;

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
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::{backend::MemoryStore, clock::ManualClock, keys::Keys, tenant::TenantId};
    ///
    /// let clock = ManualClock::new();
    /// let store = MemoryStore::with_clock(Default::default(), clock.clone());
    /// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
    /// store.set(&key, "rows".into(), Some(Duration::from_millis(100))).unwrap();
    /// clock.advance(Duration::from_millis(99));
    /// assert!(store.get(&key).is_some());
    /// clock.advance(Duration::from_millis(1));
    /// assert!(store.get(&key).is_none());
    /// ```
    pub fn with_clock(config: MemoryConfig, clock: impl Clock) -> Self {
        let shutdown = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            clock: Arc::new(clock),
            bounds: Bounds {
                max_entries: config.max_entries.get(),
                max_sessions: config.max_sessions.get(),
                max_bytes: config.max_bytes.get(),
            },
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
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::{backend::MemoryStore, clock::{Clock, ManualClock}};
    ///
    /// let clock = ManualClock::new();
    /// let store = MemoryStore::with_clock(Default::default(), clock.clone());
    /// clock.advance(Duration::from_secs(3));
    /// assert_eq!(store.clock().now_ms(), 3000);
    /// ```
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    pub(crate) fn clock_arc(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// Reads a value.
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::new(Default::default());
    /// let key = Keys::default().cache(&TenantId::new("acme").unwrap(), "reports", "1");
    /// assert_eq!(store.get(&key), None);
    /// store.set(&key, "pdf".into(), None).unwrap();
    /// assert_eq!(store.get(&key).as_deref(), Some(&b"pdf"[..]));
    /// ```
    pub fn get(&self, key: &RedisKey) -> Option<Bytes> {
        let now = self.now();
        let mut st = self.state();
        Some(st.live(key.as_str(), now, true)?.value.clone())
    }

    fn check_size(&self, key: &RedisKey, value: &Bytes) -> Result<(), BackendError> {
        check_size(key, value, &self.inner.bounds)
    }

    /// Writes a value, replacing any previous one and its TTL (`SET key value [PX ttl]`).
    ///
    /// Fails with [`BackendError::Full`] for a new session while every session is live
    /// (or sessions alone fill the byte bound).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::backend::{KeyTtl, MemoryStore};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::new(Default::default());
    /// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
    /// store.set(&key, "old".into(), Some(Duration::from_secs(60))).unwrap();
    /// store.set(&key, "new".into(), None).unwrap(); // value and TTL replaced
    /// assert_eq!(store.get(&key).as_deref(), Some(&b"new"[..]));
    /// assert_eq!(store.ttl(&key), KeyTtl::Persistent);
    /// ```
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
            &self.inner.bounds,
            now,
        )
    }

    /// Writes only if the key does not exist (`SET key value NX [PX ttl]`); returns whether
    /// it wrote.
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::new(Default::default());
    /// let key = Keys::default().cache(&TenantId::new("acme").unwrap(), "locks", "report-1");
    /// assert!(store.set_nx(&key, "a".into(), None).unwrap());
    /// assert!(!store.set_nx(&key, "b".into(), None).unwrap());
    /// assert_eq!(store.get(&key).as_deref(), Some(&b"a"[..]));
    /// ```
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
            &self.inner.bounds,
            now,
        )?;
        Ok(true)
    }

    /// Deletes a key if its value equals `expected` (the compare-and-delete used to release
    /// leases); returns whether it deleted.
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::new(Default::default());
    /// let key = Keys::default().cache(&TenantId::new("acme").unwrap(), "locks", "report-1");
    /// store.set(&key, "lease-a".into(), None).unwrap();
    /// assert!(!store.delete_if_eq(&key, b"lease-b")); // someone else's lease: kept
    /// assert!(store.delete_if_eq(&key, b"lease-a"));
    /// assert!(store.is_empty());
    /// ```
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
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::new(Default::default());
    /// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
    /// store.set(&key, "rows".into(), None).unwrap();
    /// assert!(store.delete(&key));
    /// assert!(!store.delete(&key));
    /// ```
    pub fn delete(&self, key: &RedisKey) -> bool {
        let now = self.now();
        let mut st = self.state();
        let existed = st.live(key.as_str(), now, false).is_some();
        st.remove(key.as_str());
        existed
    }

    /// Sets a key's TTL; returns false if the key does not exist (`PEXPIRE`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::backend::{KeyTtl, MemoryStore};
    /// use tenant_guard::{clock::ManualClock, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::with_clock(Default::default(), ManualClock::new());
    /// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
    /// assert!(!store.expire(&key, Duration::from_secs(30)));
    /// store.set(&key, "rows".into(), None).unwrap();
    /// assert!(store.expire(&key, Duration::from_secs(30)));
    /// assert_eq!(store.ttl(&key), KeyTtl::Expires(Duration::from_secs(30)));
    /// ```
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
        let t = st.table(k);
        let arc = t.map.get_key_value(k).map(|(a, _)| a.clone());
        if let Some(a) = arc {
            if let Some(old) = old {
                t.expiries.remove(&(old, a.clone()));
            }
            t.expiries.insert((at, a));
        }
        true
    }

    /// Adds one to the decimal integer at `key` (absent or not a number: 0) and returns
    /// the new value, keeping the key's TTL as Redis `INCR` does.
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    /// let store = MemoryStore::new(Default::default());
    /// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "n");
    /// assert_eq!(store.incr(&key).unwrap(), 1);
    /// assert_eq!(store.incr(&key).unwrap(), 2);
    /// ```
    pub fn incr(&self, key: &RedisKey) -> Result<u64, BackendError> {
        self.transact(|txn| {
            let n = txn
                .get(key)
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            let ttl = match txn.ttl(key) {
                KeyTtl::Expires(left) => Some(left),
                KeyTtl::Missing | KeyTtl::Persistent => None,
            };
            txn.set(key, Bytes::from(n.to_string()), ttl)?;
            Ok(n)
        })
    }

    /// A key's remaining time to live (`PTTL`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::backend::{KeyTtl, MemoryStore};
    /// use tenant_guard::{clock::ManualClock, keys::Keys, tenant::TenantId};
    ///
    /// let clock = ManualClock::new();
    /// let store = MemoryStore::with_clock(Default::default(), clock.clone());
    /// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
    /// assert_eq!(store.ttl(&key), KeyTtl::Missing);
    /// store.set(&key, "rows".into(), Some(Duration::from_secs(10))).unwrap();
    /// clock.advance(Duration::from_secs(4));
    /// assert_eq!(store.ttl(&key), KeyTtl::Expires(Duration::from_secs(6)));
    /// ```
    pub fn ttl(&self, key: &RedisKey) -> KeyTtl {
        let now = self.now();
        self.state().ttl(key.as_str(), now)
    }

    /// Deletes every key matching a tenant-confined pattern; returns how many.
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::new(Default::default());
    /// let keys = Keys::default();
    /// let (acme, globex) = (TenantId::new("acme").unwrap(), TenantId::new("globex").unwrap());
    /// store.set(&keys.query(&acme, "a"), "1".into(), None).unwrap();
    /// store.set(&keys.query(&acme, "b"), "2".into(), None).unwrap();
    /// store.set(&keys.query(&globex, "a"), "3".into(), None).unwrap();
    /// assert_eq!(store.delete_matching(&keys.tenant_pattern(&acme)), 2);
    /// assert_eq!(store.len(), 1);
    /// ```
    pub fn delete_matching(&self, pattern: &KeyPattern) -> u64 {
        let mut st = self.state();
        let doomed: Vec<Arc<str>> = st
            .tables
            .iter()
            .flat_map(|t| t.map.keys())
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
    /// Lua script (the session store uses it for multi-key updates). Each write is
    /// checked against the bounds as it happens.
    pub(crate) fn transact<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        let now = self.now();
        let mut st = self.state();
        let mut tx = Txn {
            st: &mut st,
            now,
            bounds: &self.inner.bounds,
            undo: None,
        };
        f(&mut tx)
    }

    /// Like [`transact`](Self::transact), but all or nothing: if `f` fails, every write
    /// it made is undone (a session is never left half-saved when a bound refuses a
    /// write).
    pub(crate) fn transact_all<T, E>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let now = self.now();
        let mut st = self.state();
        let mut tx = Txn {
            st: &mut st,
            now,
            bounds: &self.inner.bounds,
            undo: Some(Vec::new()),
        };
        let r = f(&mut tx);
        if r.is_err() {
            tx.rollback();
        }
        r
    }

    /// Removes expired entries now; returns how many. The background task calls this.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::{backend::MemoryStore, clock::ManualClock, keys::Keys, tenant::TenantId};
    ///
    /// let clock = ManualClock::new();
    /// let store = MemoryStore::with_clock(Default::default(), clock.clone());
    /// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
    /// store.set(&key, "rows".into(), Some(Duration::from_secs(1))).unwrap();
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(store.len(), 1); // expired, still held until purged
    /// assert_eq!(store.purge_expired(), 1);
    /// assert_eq!(store.len(), 0);
    /// ```
    pub fn purge_expired(&self) -> usize {
        let mut total = 0;
        loop {
            let now = self.now();
            let n = self.state().purge(now, PURGE_BATCH);
            total += n;
            if n < PURGE_BATCH {
                return total;
            }
        }
    }

    /// Entries held, including expired ones not yet purged.
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::new(Default::default());
    /// let acme = TenantId::new("acme").unwrap();
    /// store.set(&Keys::default().query(&acme, "a"), "1".into(), None).unwrap();
    /// store.set(&Keys::default().query(&acme, "b"), "2".into(), None).unwrap();
    /// assert_eq!(store.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.state().len()
    }

    /// Whether the store holds no entries.
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::new(Default::default());
    /// assert!(store.is_empty());
    /// store.set(&Keys::default().query(&TenantId::new("acme").unwrap(), "h"), "1".into(), None).unwrap();
    /// assert!(!store.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of keys and values held.
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    ///
    /// let store = MemoryStore::new(Default::default());
    /// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
    /// store.set(&key, "rows".into(), None).unwrap();
    /// assert_eq!(store.bytes(), (key.as_str().len() + 4) as u64);
    /// ```
    pub fn bytes(&self) -> u64 {
        self.state().bytes
    }

    /// Live cache entries evicted to stay within bounds since the store was made.
    ///
    /// ```
    /// use std::num::NonZeroU64;
    /// use tenant_guard::{backend::MemoryStore, config::MemoryConfig, keys::Keys, tenant::TenantId};
    ///
    /// let mut bounds = MemoryConfig::default();
    /// bounds.max_entries = NonZeroU64::new(2).unwrap();
    /// let store = MemoryStore::new(bounds);
    /// let acme = TenantId::new("acme").unwrap();
    /// for h in ["a", "b", "c"] {
    ///     store.set(&Keys::default().query(&acme, h), "v".into(), None).unwrap();
    /// }
    /// assert_eq!(store.evictions(), 1); // "a", the least recently used, made room for "c"
    /// assert_eq!(store.get(&Keys::default().query(&acme, "a")), None);
    /// ```
    pub fn evictions(&self) -> u64 {
        self.state().evictions
    }

    /// What the store holds, by kind, and what it evicted or refused.
    ///
    /// ```
    /// use tenant_guard::{backend::MemoryStore, keys::Keys, tenant::TenantId};
    /// let store = MemoryStore::new(Default::default());
    /// let t = TenantId::new("acme").unwrap();
    /// store.set(&Keys::default().query(&t, "h"), "v".into(), None).unwrap();
    /// assert_eq!(store.stats().cache_entries, 1);
    /// assert_eq!(store.stats().sessions, 0);
    /// ```
    pub fn stats(&self) -> MemoryStats {
        let st = self.state();
        let len = |p: Part| st.tables[p as usize].map.len() as u64;
        MemoryStats {
            cache_entries: len(Part::Cache),
            sessions: len(Part::Sessions),
            session_indexes: len(Part::SessionIndexes),
            bytes: st.bytes,
            evictions: st.evictions,
            refused: st.refused,
        }
    }
}

fn check_size(key: &RedisKey, value: &Bytes, b: &Bounds) -> Result<(), BackendError> {
    let size = (key.as_str().len() + value.len()) as u64;
    if size > b.max_bytes {
        return Err(BackendError::TooLarge {
            size,
            limit: b.max_bytes,
        });
    }
    Ok(())
}

/// Access to the store inside [`MemoryStore::transact`]; every call sees the same instant.
pub(crate) struct Txn<'a> {
    st: &'a mut State,
    now: u64,
    bounds: &'a Bounds,
    /// For [`MemoryStore::transact_all`]: each key written, with what it held before
    /// (first write of the key only), in order.
    undo: Option<Vec<(Arc<str>, Option<Entry>)>>,
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

    /// Records what `key` holds before its first write, when undo is on.
    fn journal(&mut self, key: &str) {
        let Some(undo) = &mut self.undo else {
            return;
        };
        if undo.iter().any(|(k, _)| &**k == key) {
            return;
        }
        let before = self.st.live(key, self.now, false).map(|e| Entry::clone(e));
        if let Some(undo) = &mut self.undo {
            undo.push((Arc::from(key), before));
        }
    }

    /// Writes a value with an optional TTL; fails as [`MemoryStore::set`] does.
    pub(crate) fn set(
        &mut self,
        key: &RedisKey,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        check_size(key, &value, self.bounds)?;
        self.journal(key.as_str());
        let at = ttl.map(|t| self.now.saturating_add(ttl_ms(t)));
        self.st
            .insert(key.as_str(), value, at, self.bounds, self.now)
    }

    /// Deletes a key; returns whether it was live.
    pub(crate) fn delete(&mut self, key: &RedisKey) -> bool {
        self.journal(key.as_str());
        let existed = self.st.live(key.as_str(), self.now, false).is_some();
        self.st.remove(key.as_str());
        existed
    }

    /// Puts back what every journaled key held (latest first). What was there fitted the
    /// bounds, and nothing but cache entries has been added since.
    fn rollback(&mut self) {
        for (key, before) in self.undo.take().unwrap_or_default().into_iter().rev() {
            self.st.remove(&key);
            if let Some(e) = before {
                self.st.put(Part::of(&key), &key, e.value, e.expires_at);
            }
        }
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
        let store = MemoryStore { inner };
        let purged = store.purge_expired();
        if purged > 0 {
            tracing::trace!(purged, "memory backend purged expired entries");
        }
    }
}

#[cfg(test)]
mod tests;
