//! Where sessions live: Redis (Lua scripts, one hash per session) or memory (the same
//! steps under one lock), with the outage policy in front.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{SessionConfig, SessionOutage};
use super::{SessionError, SessionId};
use crate::backend::MemoryConfig;
use crate::backend::{Backend, BackendError, KeyTtl, MemoryStore};
#[cfg(feature = "redis")]
use crate::backend::{LuaScript, RedisStore};
use crate::keys::{Keys, RedisKey};
use crate::metrics::{Metrics, SessionEventLabels};
use crate::tenant::TenantId;

mod memory;
#[cfg(feature = "redis")]
mod redis;

use memory::{mem_index, mem_load, mem_save};
#[cfg(feature = "redis")]
use redis::{redis_load, redis_save};

/// A session as loaded from the store.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The store's clock at load time, ms.
    pub now_ms: u64,
    /// Remaining TTL at load time.
    pub pttl_ms: Option<u64>,
    /// Creation time on the store's clock, ms.
    pub created_ms: u64,
    pub user: Option<String>,
    /// Session key -> JSON text.
    pub fields: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Create,
    Update,
    Destroy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserOp<'a> {
    Keep,
    Set(&'a str),
    Unset,
}

/// The changes of one request.
#[derive(Debug)]
pub(crate) struct Save<'a> {
    pub mode: Mode,
    pub id: &'a SessionId,
    pub rename_from: Option<&'a SessionId>,
    pub user_before: Option<&'a str>,
    pub user_after: Option<&'a str>,
    pub user_op: UserOp<'a>,
    pub clear: bool,
    pub set: Vec<(&'a str, &'a str)>,
    pub del: Vec<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saved {
    /// Written.
    Ok,
    /// The session no longer exists (expired or destroyed meanwhile); nothing written.
    Gone,
    /// The target id exists already: retry with a fresh one.
    Collision,
}

/// One live session of a user, as listed by [`SessionStore::list_user_sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session id (a credential: show users only a prefix).
    pub id: SessionId,
    /// Time until the session expires, unless used again.
    pub expires_in: Duration,
}

/// Session storage on a [`Backend`], with the configured outage policy. Cheap to clone.
///
/// Besides serving [`SessionLayer`](super::SessionLayer), it lists and revokes the
/// sessions of one user ("log out everywhere").
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
/// use tenant_guard::session::SessionStore;
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
/// let metrics = Metrics::new();
/// let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
/// let acme = TenantId::new("acme")?;
/// assert!(store.list_user_sessions(&acme, "u-42").await?.is_empty());
/// assert_eq!(store.revoke_user_sessions(&acme, "u-42").await?, 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// Per-process store used while Redis is down (`SESSION_OUTAGE=local`).
    fallback: Option<MemoryStore>,
    keys: Keys,
    ttl: Duration,
    max_lifetime: Duration,
    renew_interval: Duration,
    max_bytes: u64,
    metrics: Metrics,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("backend", &self.inner.backend.kind())
            .field("ttl", &self.inner.ttl)
            .field("max_lifetime", &self.inner.max_lifetime)
            .field("fallback", &self.inner.fallback.is_some())
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SessionStore {
    /// A store on `backend` with the given settings and key prefix.
    pub fn new(backend: Backend, config: &SessionConfig, keys: Keys, metrics: &Metrics) -> Self {
        // Only Redis can be down: the memory backend never needs a fallback.
        let fallback = (!matches!(backend, Backend::Memory(_))
            && config.outage == SessionOutage::Local)
            .then(|| MemoryStore::new(MemoryConfig::default()));
        Self {
            inner: Arc::new(Inner {
                backend,
                fallback,
                keys,
                ttl: config.ttl,
                max_lifetime: config.max_lifetime,
                renew_interval: config.renew_interval,
                max_bytes: config.max_bytes,
                metrics: metrics.clone(),
            }),
        }
    }

    pub(crate) fn event(&self, event: &'static str) {
        self.inner
            .metrics
            .session_events
            .get_or_create(&SessionEventLabels { event })
            .inc();
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    pub(crate) fn max_lifetime(&self) -> Duration {
        self.inner.max_lifetime
    }

    pub(crate) fn renew_interval(&self) -> Duration {
        self.inner.renew_interval
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    fn session_key(&self, tenant: &TenantId, id: &SessionId) -> RedisKey {
        self.inner.keys.session(tenant, id.as_str())
    }

    fn index_key(&self, tenant: &TenantId, user: &str) -> RedisKey {
        self.inner.keys.session_index(tenant, user)
    }

    /// The memory store to use after `e`, or the error to return.
    #[cfg(feature = "redis")]
    fn after_error(&self, e: BackendError) -> Result<&MemoryStore, SessionError> {
        if !e.is_outage() {
            self.event("store_error");
            return Err(SessionError::Store(e));
        }
        match &self.inner.fallback {
            Some(m) => {
                self.event("fallback");
                Ok(m)
            }
            None => {
                self.event("store_error");
                Err(SessionError::Unavailable(e))
            }
        }
    }

    pub(crate) async fn load(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<Loaded>, SessionError> {
        let key = self.session_key(tenant, id);
        let max = ms(self.inner.max_lifetime);
        let loaded = match &self.inner.backend {
            Backend::Memory(m) => mem_load(m, &key, max),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => match redis_load(r, &key, max).await {
                Ok(l) => l,
                Err(e) => mem_load(self.after_error(e)?, &key, max),
            },
        };
        self.event(if loaded.is_some() { "load" } else { "miss" });
        Ok(loaded)
    }

    pub(crate) async fn save(
        &self,
        tenant: &TenantId,
        op: &Save<'_>,
    ) -> Result<Saved, SessionError> {
        let keys = SaveKeys {
            session: self.session_key(tenant, op.id),
            index_after: op.user_after.map(|u| self.index_key(tenant, u)),
            index_before: op.user_before.map(|u| self.index_key(tenant, u)),
            rename_from: op.rename_from.map(|id| self.session_key(tenant, id)),
        };
        let (idle, max) = (ms(self.inner.ttl), ms(self.inner.max_lifetime));
        let saved = match &self.inner.backend {
            Backend::Memory(m) => mem_save(m, &keys, op, idle, max),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => match redis_save(r, &keys, op, idle, max).await {
                Ok(s) => Ok(s),
                Err(e) => mem_save(self.after_error(e)?, &keys, op, idle, max),
            },
        };
        if let Err(SessionError::Unavailable(BackendError::Full { .. })) = &saved {
            self.event("store_full");
        }
        saved
    }

    /// The live sessions of `user` in `tenant`. Index entries of sessions that expired or
    /// were destroyed are dropped on the way, so the index stays consistent with expiry.
    pub async fn list_user_sessions(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<Vec<SessionInfo>, SessionError> {
        let idx = self.index_key(tenant, user);
        match &self.inner.backend {
            Backend::Memory(m) => {
                Ok(mem_index(m, &idx, |id| self.session_key(tenant, id), false).0)
            }
            #[cfg(feature = "redis")]
            Backend::Redis(r) => match self.redis_index(r, tenant, &idx, false).await {
                Ok((flat, _)) => Ok(flat
                    .chunks_exact(2)
                    .filter_map(|p| {
                        Some(SessionInfo {
                            id: SessionId::parse(&p[0])?,
                            expires_in: Duration::from_millis(p[1].parse().unwrap_or(0)),
                        })
                    })
                    .collect()),
                Err(e) => Ok(mem_index(
                    self.after_error(e)?,
                    &idx,
                    |id| self.session_key(tenant, id),
                    false,
                )
                .0),
            },
        }
    }

    /// Deletes every session of `user` in `tenant` ("log out everywhere"); returns how many.
    pub async fn revoke_user_sessions(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<u64, SessionError> {
        let idx = self.index_key(tenant, user);
        let n = match &self.inner.backend {
            Backend::Memory(m) => mem_index(m, &idx, |id| self.session_key(tenant, id), true).1,
            #[cfg(feature = "redis")]
            Backend::Redis(r) => match self.redis_index(r, tenant, &idx, true).await {
                Ok((_, n)) => n,
                Err(e) => {
                    mem_index(
                        self.after_error(e)?,
                        &idx,
                        |id| self.session_key(tenant, id),
                        true,
                    )
                    .1
                }
            },
        };
        for _ in 0..n {
            self.event("destroy");
        }
        Ok(n)
    }

    /// Deletes one session; returns whether it existed. Its index entry goes at the next
    /// listing.
    pub async fn revoke(&self, tenant: &TenantId, id: &SessionId) -> Result<bool, SessionError> {
        let key = self.session_key(tenant, id);
        let existed = match &self.inner.backend {
            Backend::Memory(m) => m.delete(&key),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => match r.delete(&key).await {
                Ok(b) => b,
                Err(e) => self.after_error(e)?.delete(&key),
            },
        };
        if existed {
            self.event("destroy");
        }
        Ok(existed)
    }
}

struct SaveKeys {
    session: RedisKey,
    index_after: Option<RedisKey>,
    index_before: Option<RedisKey>,
    rename_from: Option<RedisKey>,
}
