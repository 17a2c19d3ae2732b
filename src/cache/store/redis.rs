//! The cache on Redis: entries and generations as strings (`MGET` of an entry with its two
//! generations, `SET PX`, `SET NX PX` leases released by compare-and-delete), invalidations
//! on a pub/sub channel through the backend's subscription (reconnect, breaker).

use std::time::Duration;

use bytes::Bytes;

use super::{BusHandler, CacheBus, CacheStore};
use crate::backend::{RedisStore, StoreFuture};
use crate::keys::RedisKey;

impl CacheStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn get_many<'a>(&'a self, keys: &'a [&'a RedisKey]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(RedisStore::get_many(self, keys))
    }

    fn set<'a>(&'a self, key: &'a RedisKey, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(RedisStore::set(self, key, value, Some(ttl)))
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a RedisKey,
        value: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(RedisStore::set_nx(self, key, value, Some(ttl)))
    }

    fn delete_if_eq<'a>(&'a self, key: &'a RedisKey, expected: &'a [u8]) -> StoreFuture<'a, bool> {
        Box::pin(RedisStore::delete_if_eq(self, key, expected))
    }

    fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
        Box::pin(RedisStore::delete(self, key))
    }

    fn expire<'a>(&'a self, key: &'a RedisKey, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(RedisStore::expire(self, key, ttl))
    }

    fn incr<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, u64> {
        Box::pin(RedisStore::incr(self, key))
    }
}

impl CacheBus for RedisStore {
    fn publish<'a>(&'a self, channel: &'a str, message: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(RedisStore::publish(self, channel, message))
    }

    fn subscribe(&self, channel: String, handler: BusHandler) -> Option<tokio::task::AbortHandle> {
        RedisStore::subscribe(self, channel, handler)
    }
}
