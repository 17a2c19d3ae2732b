//! The cache on the memory backend: its entries in the process's bounded store; no bus
//! (one process: nobody to tell).

use std::future::ready;
use std::time::Duration;

use bytes::Bytes;

use super::{BusHandler, CacheBus, CacheStore};
use crate::backend::{MemoryStore, StoreFuture};
use crate::keys::RedisKey;

impl CacheStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn get_many<'a>(&'a self, keys: &'a [&'a RedisKey]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(ready(Ok(keys.iter().map(|k| self.get(k)).collect())))
    }

    fn set<'a>(&'a self, key: &'a RedisKey, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(ready(MemoryStore::set(
            self,
            key,
            Bytes::copy_from_slice(value),
            Some(ttl),
        )))
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a RedisKey,
        value: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(ready(MemoryStore::set_nx(
            self,
            key,
            Bytes::copy_from_slice(value),
            Some(ttl),
        )))
    }

    fn delete_if_eq<'a>(&'a self, key: &'a RedisKey, expected: &'a [u8]) -> StoreFuture<'a, bool> {
        Box::pin(ready(Ok(MemoryStore::delete_if_eq(self, key, expected))))
    }

    fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
        Box::pin(ready(Ok(MemoryStore::delete(self, key))))
    }

    fn expire<'a>(&'a self, key: &'a RedisKey, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(ready(Ok(MemoryStore::expire(self, key, ttl))))
    }

    fn incr<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, u64> {
        Box::pin(ready(MemoryStore::incr(self, key)))
    }
}

impl CacheBus for MemoryStore {
    fn publish<'a>(&'a self, _channel: &'a str, _message: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(ready(Ok(0)))
    }

    fn subscribe(
        &self,
        _channel: String,
        _handler: BusHandler,
    ) -> Option<tokio::task::AbortHandle> {
        None
    }
}
