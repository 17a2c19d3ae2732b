//! Where leases live: [`LeaseStore`], with the memory store (counts under one lock, in this
//! process) and the Redis store (`lua/concurrency.lua`: a sorted set of leases per scope,
//! shared by every instance) beside this file.

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use memory::MemoryLeases;

use crate::backend::{Backend, StoreFuture};
use crate::keys::RedisKey;

/// What an acquire found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lease is held in every scope.
    Held,
    /// Scope `index` (of the keys given) is full.
    Full { index: usize },
    /// The lease was released before its acquire ran (the caller gave up waiting): nothing
    /// was taken. (Only a store shared with Redis can tell.)
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Released,
}

/// A store of leases: each call is atomic over the keys of one request.
pub(crate) trait LeaseStore: Send + Sync + 'static {
    /// Takes lease `id` in every set of `keys` if each holds fewer than its cap, else none;
    /// none either if `marker` says the lease was released already.
    fn acquire<'a>(
        &'a self,
        keys: &'a [(RedisKey, u32)],
        marker: &'a RedisKey,
        id: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, Acquired>;

    /// Moves the end of lease `id` to `lease` from now where it is still held.
    fn renew<'a>(
        &'a self,
        keys: &'a [(RedisKey, u32)],
        marker: &'a RedisKey,
        id: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, ()>;

    /// Gives lease `id` back; if it is not there (its acquire has not run yet), leaves
    /// `marker` for `lease` so that the acquire takes nothing.
    fn release<'a>(
        &'a self,
        keys: &'a [(RedisKey, u32)],
        marker: &'a RedisKey,
        id: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, ()>;

    /// Whether leases must be renewed while held (they expire in the store).
    fn expires(&self) -> bool;

    /// Gives a lease back without waiting, if this store can (in process); false when
    /// [`release`](Self::release) must run instead.
    fn release_now(&self, keys: &[(RedisKey, u32)]) -> bool {
        let _ = keys;
        false
    }
}

/// The lease store on `backend`.
pub(crate) fn on(backend: &Backend) -> Arc<dyn LeaseStore> {
    match backend {
        Backend::Memory(_) => Arc::new(MemoryLeases::default()),
        #[cfg(feature = "redis")]
        Backend::Redis(r) => Arc::new(r.clone()),
    }
}
