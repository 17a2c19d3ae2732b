//! Delete-by-pattern: `SCAN` + `UNLINK`, never `KEYS`, on the node that holds the tenant's
//! slot (and, during a slot migration, on the other masters too).

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use super::AnyConn;
use crate::backend::{BackendError, RedisStore};
use crate::keys::KeyPattern;

impl RedisStore {
    /// Deletes every key matching a tenant-confined pattern with SCAN + UNLINK in batches
    /// (never KEYS). On a cluster only the node that owns the tenant's slot is scanned: every
    /// key of a tenant lives there. Returns how many keys were deleted.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let keys = Keys::default();
    /// let (acme, globex) = (TenantId::new("acme")?, TenantId::new("globex")?);
    /// store.set(&keys.query(&acme, "a"), b"1", None).await?;
    /// store.set(&keys.query(&globex, "a"), b"2", None).await?;
    /// assert!(store.delete_matching(&keys.tenant_pattern(&acme)).await? >= 1);
    /// assert!(store.get(&keys.query(&globex, "a")).await?.is_some()); // other tenants untouched
    /// # Ok(()) }
    /// ```
    pub async fn delete_matching(&self, pattern: &KeyPattern) -> Result<u64, BackendError> {
        let slot = pattern.slot();
        // Every key of a tenant lives in the tenant's slot, so the slot's master holds them
        // all — except while that slot migrates, when some are on the importing node
        // already. On a cluster every master is therefore scanned (one SCAN each when
        // they hold nothing of the tenant), the slot's owner first.
        let mut targets = vec![SingleNodeRoutingInfo::SpecificNode(Route::new(
            slot,
            SlotAddr::Master,
        ))];
        if self.is_cluster() {
            targets.extend(self.other_masters(slot).await?);
        }
        let mut deleted = 0u64;
        for target in targets {
            deleted += self.delete_matching_on(pattern, target).await?;
        }
        Ok(deleted)
    }

    /// Masters of the cluster other than the one serving `slot`, by address.
    pub(super) async fn other_masters(
        &self,
        slot: u16,
    ) -> Result<Vec<SingleNodeRoutingInfo>, BackendError> {
        let nodes: String = self
            .run("cluster-nodes", |c| async move {
                match c {
                    AnyConn::Single(_) => Ok(String::new()),
                    AnyConn::Cluster(mut c) => {
                        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                            Route::new(slot, SlotAddr::Master),
                        ));
                        let v = c
                            .route_command(redis::cmd("CLUSTER").arg("NODES").clone(), route)
                            .await?;
                        Ok(redis::from_redis_value(v)?)
                    }
                }
            })
            .await?;
        let mut out = Vec::new();
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            // <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slots...>
            if f.len() < 8
                || !f[2].contains("master")
                || f[2].contains("fail")
                || f[2].contains("myself")
            {
                continue;
            }
            let addr = f[1].split(['@', ',']).next().unwrap_or("");
            if let Some((host, port)) = addr.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    out.push(SingleNodeRoutingInfo::ByAddress {
                        host: host.to_string(),
                        port,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn delete_matching_on(
        &self,
        pattern: &KeyPattern,
        target: SingleNodeRoutingInfo,
    ) -> Result<u64, BackendError> {
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let target = target.clone();
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run("scan", |c| async move {
                    let mut cmd = redis::cmd("SCAN");
                    cmd.arg(cursor)
                        .arg("MATCH")
                        .arg(pattern.as_str())
                        .arg("COUNT")
                        .arg(1000);
                    match c {
                        AnyConn::Single(mut c) => cmd.query_async(&mut c).await,
                        AnyConn::Cluster(mut c) => {
                            let v = c
                                .route_command(cmd, RoutingInfo::SingleNode(target))
                                .await?;
                            Ok(redis::from_redis_value(v)?)
                        }
                    }
                })
                .await?;
            if !keys.is_empty() {
                let keys = &keys;
                deleted += self
                    .run("del", |mut c| async move {
                        redis::cmd("UNLINK")
                            .arg(keys)
                            .query_async::<u64>(&mut c)
                            .await
                    })
                    .await?;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(deleted);
            }
        }
    }
}
