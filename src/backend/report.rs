//! What the backend says about itself for the ops routes: readiness (`/health/ready`) and
//! status (`/cache/status`), as JSON objects whose shape the routes keep stable.

use serde_json::{Value, json};

use super::Backend;
#[cfg(feature = "redis")]
use super::{BackendKind, BreakerState};

/// Milliseconds with microsecond precision.
#[cfg(feature = "redis")]
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Backend {
    /// Whether the backend can serve now, and the details `/health/ready` shows: on Redis
    /// one `PING` (none while the breaker is open) and the deployment check's warnings.
    /// No error text: it may name the address, and the readiness route is open.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// let (ready, body) = Backend::Memory(MemoryStore::new(Default::default())).readiness().await;
    /// assert!(ready);
    /// assert_eq!(body["backend"], "memory");
    /// # }
    /// ```
    pub async fn readiness(&self) -> (bool, Value) {
        let kind = self.kind();
        match self {
            Self::Memory(_) => (true, json!({ "status": "ready", "backend": kind })),
            #[cfg(feature = "redis")]
            Self::Redis(r) => {
                let health = r.health();
                if health.state() == BreakerState::Open {
                    // Known down: answer now, the background probe will notice recovery.
                    let body = json!({
                        "status": "unavailable",
                        "backend": kind,
                        "breaker": BreakerState::Open,
                    });
                    return (false, body);
                }
                match r.ping().await {
                    Ok(latency) => {
                        // Kept after the first answer; a failure here leaves it for next time.
                        let deployment = r.check_deployment().await.ok();
                        (
                            true,
                            json!({
                                "status": "ready",
                                "backend": kind,
                                "breaker": health.state(),
                                "redis_latency_ms": ms(latency),
                                "maxmemory_policy": deployment.and_then(|d| d.maxmemory_policy.clone()),
                                "warnings": deployment.map_or(&[][..], |d| &d.warnings[..]),
                            }),
                        )
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "readiness probe failed");
                        (
                            false,
                            json!({
                                "status": "unavailable",
                                "backend": kind,
                                "breaker": health.state(),
                            }),
                        )
                    }
                }
            }
        }
    }

    /// The backend's part of `/cache/status`: `backend`, `state` (`ok` or `degraded`),
    /// `keys`, and `memory` (entries, bytes, evictions) or `redis` (target, breaker,
    /// failures, last latency and error).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// let status = Backend::Memory(MemoryStore::new(Default::default())).status().await;
    /// assert_eq!((status["state"].as_str(), status["keys"].as_u64()), (Some("ok"), Some(0)));
    /// # }
    /// ```
    pub async fn status(&self) -> Value {
        let kind = self.kind();
        match self {
            Self::Memory(m) => json!({
                "backend": kind,
                "state": "ok",
                "keys": m.len(),
                "memory": {
                    "entries": m.len(),
                    "bytes": m.bytes(),
                    "evictions": m.evictions(),
                },
            }),
            #[cfg(feature = "redis")]
            Self::Redis(r) => {
                let health = r.health();
                let open = health.state() == BreakerState::Open;
                let keys = if open { None } else { r.db_size().await.ok() };
                let degraded = open || keys.is_none();
                json!({
                    "backend": kind,
                    "state": if degraded { "degraded" } else { "ok" },
                    "keys": keys,
                    "redis": {
                        "target": r.description(),
                        "cluster": kind == BackendKind::RedisCluster,
                        "breaker": health.state(),
                        "consecutive_failures": health.consecutive_failures(),
                        "last_latency_ms": health.last_latency().map(ms),
                        "last_error": health.last_error(),
                    },
                })
            }
        }
    }
}
