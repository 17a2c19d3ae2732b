//! What the store checks about the Redis deployment it talks to: settings that can break
//! the crate's guarantees (today, a `maxmemory-policy` that evicts keys).

use redis::Value;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};

use super::{AnyConn, is_outage};
use crate::backend::{BackendError, RedisStore};

/// What the store found out about the Redis deployment it talks to
/// ([`RedisStore::check_deployment`]).
///
/// ```
/// let d = tenant_guard::backend::Deployment::default();
/// assert!(d.maxmemory_policy.is_none() && d.warnings.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deployment {
    /// `maxmemory-policy` of the server (the first evicting one found on a cluster's
    /// primaries); `None` when `INFO` is not allowed for the user.
    pub maxmemory_policy: Option<String>,
    /// Settings that can break the crate's guarantees, one sentence each.
    pub warnings: Vec<String>,
}

/// The warning for a `maxmemory-policy` that evicts keys: every key tenant-guard writes has
/// a TTL, so the `volatile-*` policies may evict them as well as the `allkeys-*` ones.
fn eviction_warning(policy: &str) -> Option<String> {
    let evicts = policy.starts_with("allkeys-") || policy.starts_with("volatile-");
    evicts.then(|| {
        format!(
            "maxmemory-policy {policy} may evict rate-limit counters and sessions when Redis \
             reaches maxmemory (a limit starts over, users are logged out); use noeviction for \
             the Redis that holds them (volatile-* evicts them too: every tenant-guard key has \
             a TTL)"
        )
    })
}

/// Every `maxmemory_policy:` value in an `INFO memory` reply (one per node on a cluster).
fn policies_in(v: &Value, out: &mut Vec<String>) {
    let mut text = |s: &str| {
        out.extend(s.lines().filter_map(|l| {
            l.strip_prefix("maxmemory_policy:")
                .map(|p| p.trim().to_string())
        }));
    };
    match v {
        Value::BulkString(b) => text(&String::from_utf8_lossy(b)),
        Value::SimpleString(s) => text(s),
        Value::VerbatimString { text: t, .. } => text(t),
        Value::Array(items) | Value::Set(items) => {
            for i in items {
                policies_in(i, out);
            }
        }
        Value::Map(pairs) => {
            for (_, i) in pairs {
                policies_in(i, out);
            }
        }
        _ => {}
    }
}

impl RedisStore {
    /// Reads the settings of the Redis deployment that can break the crate's guarantees
    /// (today: a `maxmemory-policy` that evicts keys) and logs a warning for each. Runs
    /// once: after the first answer the result is kept and returned at once. Fails (and
    /// runs again next time) only while Redis cannot be reached; a user whose ACL denies
    /// `INFO` gets a result with the policy unknown.
    ///
    /// The readiness route calls it, so its warnings show in `/health/ready`; apps may
    /// call it at start-up to log them early.
    ///
    /// ```no_run
    /// # async fn demo(store: tenant_guard::backend::RedisStore) {
    /// if let Ok(d) = store.check_deployment().await {
    ///     for w in &d.warnings {
    ///         eprintln!("Redis: {w}");
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn check_deployment(&self) -> Result<&Deployment, BackendError> {
        self.inner
            .deployment
            .get_or_try_init(|| async {
                let reply = self
                    .run("info", |c| async move {
                        let mut cmd = redis::cmd("INFO");
                        cmd.arg("memory");
                        match c {
                            AnyConn::Single(mut c) => cmd.query_async::<Value>(&mut c).await,
                            AnyConn::Cluster(mut c) => {
                                let all = RoutingInfo::MultiNode((
                                    MultipleNodeRoutingInfo::AllMasters,
                                    Some(ResponsePolicy::Special),
                                ));
                                c.route_command(cmd, all).await
                            }
                        }
                    })
                    .await;
                let mut policies = Vec::new();
                match reply {
                    Ok(v) => policies_in(&v, &mut policies),
                    // Denied (NOPERM) or renamed away: Redis answered, the policy is unknown.
                    Err(BackendError::Redis(e)) if !is_outage(&e) => {
                        tracing::info!(
                            error = %e,
                            "cannot read Redis' maxmemory-policy (INFO denied?); not checked"
                        );
                    }
                    Err(e) => return Err(e),
                }
                let evicting = policies.iter().find(|p| eviction_warning(p).is_some());
                let policy = evicting.or(policies.first()).cloned();
                let warnings: Vec<String> = policy
                    .as_deref()
                    .and_then(eviction_warning)
                    .into_iter()
                    .collect();
                for w in &warnings {
                    tracing::warn!(target: "tenant_guard::backend", "Redis {}: {w}", self.description());
                }
                Ok(Deployment {
                    maxmemory_policy: policy,
                    warnings,
                })
            })
            .await
    }
}
