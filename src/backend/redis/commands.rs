//! The key-value commands of the store, one round trip each, every one through
//! [`RedisStore::run`] (deadline, breaker, metrics).

use std::time::Duration;

use bytes::Bytes;

use super::{compare_and_delete_script, px};
use crate::backend::{BackendError, KeyTtl, RedisStore};
use crate::keys::RedisKey;

impl RedisStore {
    /// `GET`.
    pub async fn get(&self, key: &RedisKey) -> Result<Option<Bytes>, BackendError> {
        self.run("get", |mut c| async move {
            let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut c).await?;
            Ok(v.map(Bytes::from))
        })
        .await
    }

    /// `MGET key...` (keys of one tenant: one slot).
    pub async fn get_many(&self, keys: &[&RedisKey]) -> Result<Vec<Option<Bytes>>, BackendError> {
        self.run("mget", |mut c| async move {
            let mut cmd = redis::cmd("MGET");
            for k in keys {
                cmd.arg(*k);
            }
            let v: Vec<Option<Vec<u8>>> = cmd.query_async(&mut c).await?;
            Ok(v.into_iter().map(|b| b.map(Bytes::from)).collect())
        })
        .await
    }

    /// `INCR key`.
    pub async fn incr(&self, key: &RedisKey) -> Result<u64, BackendError> {
        self.run("incr", |mut c| async move {
            redis::cmd("INCR").arg(key).query_async(&mut c).await
        })
        .await
    }

    /// `SET key value [PX ttl]`.
    pub async fn set(
        &self,
        key: &RedisKey,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.run("set", |mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(px(ttl));
            }
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    /// `SET key value NX [PX ttl]`; returns whether it wrote.
    pub async fn set_nx(
        &self,
        key: &RedisKey,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        self.run("set", |mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("NX");
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(px(ttl));
            }
            let v: Option<String> = cmd.query_async(&mut c).await?;
            Ok(v.is_some())
        })
        .await
    }

    /// Deletes `key` if it holds `expected` (Lua compare-and-delete); returns whether it did.
    pub async fn delete_if_eq(
        &self,
        key: &RedisKey,
        expected: &[u8],
    ) -> Result<bool, BackendError> {
        let n: i64 = self
            .eval(compare_and_delete_script(), &[key], &[expected])
            .await?;
        Ok(n == 1)
    }

    /// `UNLINK`; returns whether the key existed.
    pub async fn delete(&self, key: &RedisKey) -> Result<bool, BackendError> {
        self.run("del", |mut c| async move {
            let n: i64 = redis::cmd("UNLINK").arg(key).query_async(&mut c).await?;
            Ok(n > 0)
        })
        .await
    }

    /// `PEXPIRE`; returns false if the key does not exist.
    pub async fn expire(&self, key: &RedisKey, ttl: Duration) -> Result<bool, BackendError> {
        self.run("expire", |mut c| async move {
            let n: i64 = redis::cmd("PEXPIRE")
                .arg(key)
                .arg(px(ttl))
                .query_async(&mut c)
                .await?;
            Ok(n == 1)
        })
        .await
    }

    /// `PTTL`.
    pub async fn ttl(&self, key: &RedisKey) -> Result<KeyTtl, BackendError> {
        self.run("ttl", |mut c| async move {
            let ms: i64 = redis::cmd("PTTL").arg(key).query_async(&mut c).await?;
            Ok(match ms {
                -2 => KeyTtl::Missing,
                -1 => KeyTtl::Persistent,
                ms => KeyTtl::Expires(Duration::from_millis(ms.max(0).unsigned_abs())),
            })
        })
        .await
    }

    /// `PUBLISH channel message`; returns how many subscribers received it.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<u64, BackendError> {
        self.run("publish", |mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// `DBSIZE` (summed over primaries on a cluster): every key in the database, including
    /// keys that are not tenant-guard's.
    pub async fn db_size(&self) -> Result<u64, BackendError> {
        self.run("dbsize", |mut c| async move {
            redis::cmd("DBSIZE").query_async::<u64>(&mut c).await
        })
        .await
    }
}
