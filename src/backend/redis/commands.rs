//! The key-value commands of the store, one round trip each, every one through
//! [`RedisStore::run`] (deadline, breaker, metrics).

use std::time::Duration;

use bytes::Bytes;

use super::{compare_and_delete_script, px};
use crate::backend::{BackendError, KeyTtl, RedisStore};
use crate::keys::RedisKey;

impl RedisStore {
    /// `GET`.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let key = Keys::default().cache(&TenantId::new("acme")?, "reports", "1");
    /// store.set(&key, b"pdf", None).await?;
    /// assert_eq!(store.get(&key).await?.as_deref(), Some(&b"pdf"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: &RedisKey) -> Result<Option<Bytes>, BackendError> {
        self.run("get", |mut c| async move {
            let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut c).await?;
            Ok(v.map(Bytes::from))
        })
        .await
    }

    /// `MGET key...` (keys of one tenant: one slot).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let acme = TenantId::new("acme")?;
    /// let (a, b) = (Keys::default().query(&acme, "a"), Keys::default().query(&acme, "b"));
    /// store.set(&a, b"1", None).await?;
    /// store.delete(&b).await?;
    /// let values = store.get_many(&[&a, &b]).await?; // one MGET: both keys in acme's slot
    /// assert_eq!(values, vec![Some(bytes::Bytes::from_static(b"1")), None]);
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let key = Keys::default().cache(&TenantId::new("acme")?, "counters", "logins");
    /// store.delete(&key).await?;
    /// assert_eq!(store.incr(&key).await?, 1);
    /// assert_eq!(store.incr(&key).await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn incr(&self, key: &RedisKey) -> Result<u64, BackendError> {
        self.run("incr", |mut c| async move {
            redis::cmd("INCR").arg(key).query_async(&mut c).await
        })
        .await
    }

    /// `SET key value [PX ttl]`.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use std::time::Duration;
    /// use tenant_guard::{backend::KeyTtl, keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let key = Keys::default().query(&TenantId::new("acme")?, "h");
    /// store.set(&key, b"rows", Some(Duration::from_secs(300))).await?;
    /// assert!(matches!(store.ttl(&key).await?, KeyTtl::Expires(left) if left <= Duration::from_secs(300)));
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use std::time::Duration;
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let lock = Keys::default().cache(&TenantId::new("acme")?, "locks", "report-1");
    /// store.delete(&lock).await?;
    /// let ttl = Some(Duration::from_secs(10));
    /// assert!(store.set_nx(&lock, b"instance-a", ttl).await?);
    /// assert!(!store.set_nx(&lock, b"instance-b", ttl).await?); // held by instance-a
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let lock = Keys::default().cache(&TenantId::new("acme")?, "locks", "report-1");
    /// store.set(&lock, b"instance-a", None).await?;
    /// assert!(!store.delete_if_eq(&lock, b"instance-b").await?); // not its lock: kept
    /// assert!(store.delete_if_eq(&lock, b"instance-a").await?);
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let key = Keys::default().query(&TenantId::new("acme")?, "h");
    /// store.set(&key, b"rows", None).await?;
    /// assert!(store.delete(&key).await?);
    /// assert!(!store.delete(&key).await?);
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: &RedisKey) -> Result<bool, BackendError> {
        self.run("del", |mut c| async move {
            let n: i64 = redis::cmd("UNLINK").arg(key).query_async(&mut c).await?;
            Ok(n > 0)
        })
        .await
    }

    /// `PEXPIRE`; returns false if the key does not exist.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use std::time::Duration;
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let key = Keys::default().query(&TenantId::new("acme")?, "h");
    /// store.delete(&key).await?;
    /// assert!(!store.expire(&key, Duration::from_secs(30)).await?); // no such key
    /// store.set(&key, b"rows", None).await?;
    /// assert!(store.expire(&key, Duration::from_secs(30)).await?);
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use tenant_guard::{backend::KeyTtl, keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let key = Keys::default().query(&TenantId::new("acme")?, "h");
    /// store.delete(&key).await?;
    /// assert_eq!(store.ttl(&key).await?, KeyTtl::Missing);
    /// store.set(&key, b"rows", None).await?;
    /// assert_eq!(store.ttl(&key).await?, KeyTtl::Persistent);
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let receivers = store.publish("example:announcements", "hello").await?;
    /// println!("{receivers} subscriber(s) got it"); // 0 when nobody listens
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let before = store.db_size().await?;
    /// store.set(&Keys::default().query(&TenantId::new("acme")?, "new"), b"rows", None).await?;
    /// assert!(store.db_size().await? >= before); // others may write or expire keys meanwhile
    /// # Ok(()) }
    /// ```
    pub async fn db_size(&self) -> Result<u64, BackendError> {
        self.run("dbsize", |mut c| async move {
            redis::cmd("DBSIZE").query_async::<u64>(&mut c).await
        })
        .await
    }
}
