//! The memory store's tables: one per kind of state (cache entries, sessions, rate-limit
//! counters), each an LRU map with an expiry index, and the byte and entry bounds applied
//! when an entry goes in.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hashlink::LinkedHashMap;
use hashlink::linked_hash_map::RawEntryMut;

use super::{Bounds, Part};
use crate::backend::{BackendError, KeyTtl};

#[derive(Debug, Default)]
pub(super) struct Table {
    /// Entries in least-recently-used-first order: a get moves its entry to the back in
    /// O(1), eviction pops the front.
    pub(super) map: LinkedHashMap<Arc<str>, Entry>,
    /// (expires_at_ms, key) of entries with a TTL, so the next expiry is first.
    pub(super) expiries: BTreeSet<(u64, Arc<str>)>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) tables: [Table; 3],
    pub(super) bytes: u64,
    pub(super) evictions: u64,
    pub(super) refused: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) value: Bytes,
    pub(super) expires_at: Option<u64>,
}

pub(super) fn ttl_ms(ttl: Duration) -> u64 {
    // Redis rounds PX to whole milliseconds; a sub-millisecond TTL still lives 1 ms.
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl State {
    pub(super) fn table(&mut self, key: &str) -> &mut Table {
        &mut self.tables[Part::of(key) as usize]
    }

    pub(super) fn remove(&mut self, key: &str) -> Option<Entry> {
        self.remove_in(Part::of(key), key)
    }

    pub(super) fn remove_in(&mut self, part: Part, key: &str) -> Option<Entry> {
        let t = &mut self.tables[part as usize];
        let (k, e) = t.map.remove_entry(key)?;
        if let Some(at) = e.expires_at {
            t.expiries.remove(&(at, k.clone()));
        }
        self.bytes -= (k.len() + e.value.len()) as u64;
        Some(e)
    }

    /// Looks a key up, dropping it first if it has expired; `touch` also marks it most
    /// recently used (reads do, bookkeeping like TTL queries does not).
    pub(super) fn live(&mut self, key: &str, now: u64, touch: bool) -> Option<&mut Entry> {
        self.live_in(Part::of(key), key, now, touch)
    }

    pub(super) fn live_in(
        &mut self,
        part: Part,
        key: &str,
        now: u64,
        touch: bool,
    ) -> Option<&mut Entry> {
        let t = &mut self.tables[part as usize];
        let entry = if touch {
            t.map.to_back(key)
        } else {
            t.map.get_mut(key)
        };
        let expired = entry?.expires_at.is_some_and(|at| at <= now);
        if expired {
            self.remove_in(part, key);
            return None;
        }
        self.tables[part as usize].map.get_mut(key)
    }

    /// Drops the soonest expired entry of `part`, if one has expired; O(log n).
    pub(super) fn drop_expired(&mut self, part: Part, now: u64) -> bool {
        let t = &mut self.tables[part as usize];
        match t.expiries.first() {
            Some((at, _)) if *at <= now => {}
            _ => return false,
        }
        if let Some((_, k)) = t.expiries.pop_first() {
            self.remove_in(part, &k);
        }
        true
    }

    /// Checks that writing `new_len` bytes of value under `key` keeps sessions and bytes
    /// within bounds, making room by dropping expired entries and evicting cache entries
    /// (never a live session). Cache writes always pass: the cache evicts after writing.
    pub(super) fn admit(
        &mut self,
        part: Part,
        key: &str,
        new_len: u64,
        b: &Bounds,
        now: u64,
    ) -> Result<(), BackendError> {
        if part == Part::Cache {
            return Ok(());
        }
        // An expired entry under `key` goes now: `old` must stay accurate while expired
        // entries are dropped below.
        self.live_in(part, key, now, false);
        let old = self.tables[part as usize]
            .map
            .get(key)
            .map(|e| e.value.len() as u64);
        if old.is_none() && part == Part::Sessions {
            while self.tables[part as usize].map.len() as u64 >= b.max_sessions {
                if !self.drop_expired(part, now) {
                    self.refused += 1;
                    return Err(BackendError::Full {
                        what: "sessions",
                        limit: b.max_sessions,
                    });
                }
            }
        }
        let after = |st: &Self| match old {
            Some(old) => st.bytes - old + new_len,
            None => st.bytes + key.len() as u64 + new_len,
        };
        while after(self) > b.max_bytes {
            // Anything expired first, then the least recently used cache entry.
            if self.drop_expired(Part::Cache, now)
                || self.drop_expired(Part::Sessions, now)
                || self.drop_expired(Part::SessionIndexes, now)
            {
                continue;
            }
            if !self.evict_lru_cache() {
                self.refused += 1;
                return Err(BackendError::Full {
                    what: "bytes",
                    limit: b.max_bytes,
                });
            }
        }
        Ok(())
    }

    pub(super) fn evict_lru_cache(&mut self) -> bool {
        let Some(k) = self.tables[Part::Cache as usize]
            .map
            .front()
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        self.remove_in(Part::Cache, &k);
        self.evictions += 1;
        true
    }

    /// Writes an entry within bounds: see [`admit`](Self::admit).
    pub(super) fn insert(
        &mut self,
        key: &str,
        value: Bytes,
        expires_at: Option<u64>,
        b: &Bounds,
        now: u64,
    ) -> Result<(), BackendError> {
        let part = Part::of(key);
        self.admit(part, key, value.len() as u64, b, now)?;
        self.put(part, key, value, expires_at);
        if part == Part::Cache || self.bytes > b.max_bytes {
            self.evict_cache_to(b, now);
        }
        Ok(())
    }

    /// Writes an entry, bounds unchecked.
    pub(super) fn put(&mut self, part: Part, key: &str, value: Bytes, expires_at: Option<u64>) {
        let new_len = value.len() as u64;
        let t = &mut self.tables[part as usize];
        match t.map.raw_entry_mut().from_key(key) {
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
                        t.expiries.remove(&(at, k.clone()));
                    }
                    if let Some(at) = expires_at {
                        t.expiries.insert((at, k));
                    }
                }
            }
            RawEntryMut::Vacant(v) => {
                let k: Arc<str> = Arc::from(key);
                self.bytes += k.len() as u64 + new_len;
                if let Some(at) = expires_at {
                    t.expiries.insert((at, k.clone()));
                }
                v.insert(k, Entry { value, expires_at });
            }
        }
    }

    /// Remaining lifetime of a live key (`PTTL`), without marking it used.
    pub(super) fn ttl(&mut self, key: &str, now: u64) -> KeyTtl {
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

    /// Brings the cache within its entry bound and everything within the byte bound,
    /// taking only cache entries: expired ones first, then the least recently used.
    pub(super) fn evict_cache_to(&mut self, b: &Bounds, now: u64) {
        let over = |st: &Self| {
            st.tables[Part::Cache as usize].map.len() as u64 > b.max_entries
                || st.bytes > b.max_bytes
        };
        while over(self) && self.drop_expired(Part::Cache, now) {}
        while over(self) && self.evict_lru_cache() {}
    }

    /// Drops up to `budget` expired entries; returns how many.
    pub(super) fn purge(&mut self, now: u64, budget: usize) -> usize {
        let mut n = 0;
        for part in [Part::Cache, Part::Sessions, Part::SessionIndexes] {
            while n < budget && self.drop_expired(part, now) {
                n += 1;
            }
        }
        n
    }

    pub(super) fn len(&self) -> usize {
        self.tables.iter().map(|t| t.map.len()).sum()
    }
}
