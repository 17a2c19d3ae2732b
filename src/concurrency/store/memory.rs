//! Leases in this process: a count per scope under one lock. Nothing can crash away from
//! its leases here, so they never expire; a scope's entry is removed when its count drops
//! to 0 (the table holds only scopes with requests in flight).

use std::collections::HashMap;
use std::future::ready;
use std::sync::Mutex;
use std::time::Duration;

use super::{Acquired, LeaseStore};
use crate::backend::StoreFuture;
use crate::keys::RedisKey;

/// In-flight counts per scope.
#[derive(Debug, Default)]
pub(crate) struct MemoryLeases {
    counts: Mutex<HashMap<RedisKey, u32>>,
}

impl MemoryLeases {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<RedisKey, u32>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one unit in every scope if each has room (the store's step, synchronous).
    pub(crate) fn try_acquire(&self, keys: &[(RedisKey, u32)]) -> Acquired {
        let mut counts = self.counts();
        for (index, (key, cap)) in keys.iter().enumerate() {
            if counts.get(key).copied().unwrap_or(0) >= *cap {
                return Acquired::Full { index };
            }
        }
        for (key, _) in keys {
            *counts.entry(key.clone()).or_insert(0) += 1;
        }
        Acquired::Held
    }

    /// Gives one unit back in every scope.
    pub(crate) fn give_back(&self, keys: &[(RedisKey, u32)]) {
        let mut counts = self.counts();
        for (key, _) in keys {
            if let Some(n) = counts.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
    }

    /// Scopes with requests in flight.
    #[cfg(test)]
    pub(crate) fn scopes(&self) -> usize {
        self.counts().len()
    }
}

impl LeaseStore for MemoryLeases {
    fn acquire<'a>(
        &'a self,
        keys: &'a [(RedisKey, u32)],
        _marker: &'a RedisKey,
        _id: &'a str,
        _lease: Duration,
    ) -> StoreFuture<'a, Acquired> {
        Box::pin(ready(Ok(self.try_acquire(keys))))
    }

    fn renew<'a>(
        &'a self,
        _keys: &'a [(RedisKey, u32)],
        _marker: &'a RedisKey,
        _id: &'a str,
        _lease: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(ready(Ok(())))
    }

    fn release<'a>(
        &'a self,
        keys: &'a [(RedisKey, u32)],
        _marker: &'a RedisKey,
        _id: &'a str,
        _lease: Duration,
    ) -> StoreFuture<'a, ()> {
        self.give_back(keys);
        Box::pin(ready(Ok(())))
    }

    fn expires(&self) -> bool {
        false
    }

    fn release_now(&self, keys: &[(RedisKey, u32)]) -> bool {
        self.give_back(keys);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{Acquired, MemoryLeases};
    use crate::keys::{KeyKind, Keys};
    use crate::tenant::TenantId;

    #[test]
    fn all_or_nothing_and_nothing_left_behind() {
        let m = MemoryLeases::default();
        let t = TenantId::new("acme").unwrap();
        let keys = Keys::default();
        let tenant = (keys.key(KeyKind::Concurrency, &t, &["tenant"]), 3);
        let scope = |u: &str| (keys.key(KeyKind::Concurrency, &t, &["user", u]), 1);
        let ann = [tenant.clone(), scope("ann")];
        assert_eq!(m.try_acquire(&ann), Acquired::Held);
        // ann's own scope is full: the tenant's is not charged for the refusal.
        assert!(matches!(
            m.try_acquire(&ann),
            Acquired::Full { index: 1, .. }
        ));
        let bob = [tenant.clone(), scope("bob")];
        let cyd = [tenant.clone(), scope("cyd")];
        assert_eq!(m.try_acquire(&bob), Acquired::Held);
        assert_eq!(m.try_acquire(&cyd), Acquired::Held);
        assert!(matches!(
            m.try_acquire(&[tenant.clone(), scope("dan")]),
            Acquired::Full { index: 0, .. }
        ));
        for who in [&ann, &bob, &cyd] {
            m.give_back(who);
        }
        // A flood of distinct identities leaves no entry once their requests end.
        for i in 0..10_000 {
            let k = [scope(&format!("u{i}"))];
            assert_eq!(m.try_acquire(&k), Acquired::Held);
            m.give_back(&k);
        }
        assert_eq!(m.scopes(), 0);
    }
}
