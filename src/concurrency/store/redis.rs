//! Leases on Redis: `lua/concurrency.lua`, one sorted set of leases per scope, scored with
//! their expiry on the Redis clock; its wire format lives here only.

use std::time::Duration;

use super::{Acquired, LeaseStore};
use crate::backend::{BackendError, LuaScript, RedisStore, StoreFuture};
use crate::keys::RedisKey;

fn script() -> &'static LuaScript {
    static S: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| LuaScript::new("concurrency", include_str!("../../../lua/concurrency.lua")))
}

async fn call(
    r: &RedisStore,
    keys: &[(RedisKey, u32)],
    marker: &RedisKey,
    mode: &str,
    id: &str,
    lease: Duration,
) -> Result<Vec<i64>, BackendError> {
    let mut key_refs: Vec<&RedisKey> = keys.iter().map(|(k, _)| k).collect();
    key_refs.push(marker);
    let lease = lease.as_millis().max(1).to_string();
    let caps: Vec<String> = keys.iter().map(|(_, c)| c.to_string()).collect();
    let mut args: Vec<&[u8]> = vec![mode.as_bytes(), id.as_bytes(), lease.as_bytes()];
    args.extend(caps.iter().map(|c| c.as_bytes()));
    r.eval(script(), &key_refs, &args).await
}

impl LeaseStore for RedisStore {
    fn acquire<'a>(
        &'a self,
        keys: &'a [(RedisKey, u32)],
        marker: &'a RedisKey,
        id: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, Acquired> {
        Box::pin(async move {
            let v = call(self, keys, marker, "acquire", id, lease).await?;
            Ok(match v.as_slice() {
                [1] => Acquired::Held,
                [2] => Acquired::Released,
                [0, i] => Acquired::Full {
                    index: usize::try_from(*i - 1).unwrap_or(0),
                },
                _ => {
                    return Err(BackendError::Unsupported(
                        "unexpected reply from the concurrency script",
                    ));
                }
            })
        })
    }

    fn renew<'a>(
        &'a self,
        keys: &'a [(RedisKey, u32)],
        marker: &'a RedisKey,
        id: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            call(self, keys, marker, "renew", id, lease).await?;
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a [(RedisKey, u32)],
        marker: &'a RedisKey,
        id: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            call(self, keys, marker, "release", id, lease).await?;
            Ok(())
        })
    }

    fn expires(&self) -> bool {
        true
    }
}
