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

#[cfg(feature = "redis")]
fn load_script() -> &'static LuaScript {
    static S: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| LuaScript::new("session_load", include_str!("../../lua/session_load.lua")))
}

#[cfg(feature = "redis")]
fn save_script() -> &'static LuaScript {
    static S: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| LuaScript::new("session_save", include_str!("../../lua/session_save.lua")))
}

#[cfg(feature = "redis")]
fn index_script() -> &'static LuaScript {
    static S: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| LuaScript::new("session_index", include_str!("../../lua/session_index.lua")))
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

    /// Runs `lua/session_index.lua`: reads the index, then lists or revokes with every
    /// session key declared to the script (cluster-safe). Entries added in between are
    /// picked up by another round. Returns the flat `id, ttl` list and the number deleted.
    #[cfg(feature = "redis")]
    async fn redis_index(
        &self,
        r: &crate::backend::RedisStore,
        tenant: &TenantId,
        idx: &RedisKey,
        revoke: bool,
    ) -> Result<(Vec<String>, u64), BackendError> {
        /// Rounds before giving up on an index that keeps growing while it is revoked.
        const ROUNDS: usize = 8;
        let mode: &[u8] = if revoke { b"revoke" } else { b"list" };
        let mut deleted = 0;
        let mut listed = Vec::new();
        for _ in 0..ROUNDS {
            let ids: Vec<String> = r
                .run("zrange", |mut c| async move {
                    redis::cmd("ZRANGE")
                        .arg(idx.as_str())
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let ids: Vec<SessionId> = ids.iter().filter_map(|i| SessionId::parse(i)).collect();
            let session_keys: Vec<RedisKey> =
                ids.iter().map(|id| self.session_key(tenant, id)).collect();
            let mut keys = vec![idx];
            keys.extend(session_keys.iter());
            let mut args = vec![mode];
            args.extend(ids.iter().map(|id| id.as_str().as_bytes()));
            let mut reply: Vec<String> = r.eval(index_script(), &keys, &args).await?;
            let undeclared: u64 = reply.first().and_then(|u| u.parse().ok()).unwrap_or(0);
            if revoke {
                deleted += reply
                    .get(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            } else {
                reply.remove(0);
                listed = reply;
            }
            if undeclared == 0 {
                break;
            }
        }
        Ok((listed, deleted))
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

// ---- Redis -------------------------------------------------------------------------------

#[cfg(feature = "redis")]
async fn redis_load(
    r: &RedisStore,
    key: &RedisKey,
    max_ms: u64,
) -> Result<Option<Loaded>, BackendError> {
    let max = max_ms.to_string();
    let flat: Option<Vec<String>> = r.eval(load_script(), &[key], &[max.as_bytes()]).await?;
    let Some(flat) = flat else {
        return Ok(None);
    };
    if flat.len() < 2 {
        return Ok(None);
    }
    let now_ms = flat[0].parse().unwrap_or(0);
    let pttl: i64 = flat[1].parse().unwrap_or(-1);
    let mut loaded = Loaded {
        now_ms,
        pttl_ms: u64::try_from(pttl).ok(),
        created_ms: now_ms,
        user: None,
        fields: HashMap::new(),
    };
    for pair in flat[2..].chunks_exact(2) {
        match pair[0].as_str() {
            "_c" => loaded.created_ms = pair[1].parse().unwrap_or(now_ms),
            "_u" => loaded.user = Some(pair[1].clone()),
            f => {
                if let Some(name) = f.strip_prefix("f:") {
                    loaded.fields.insert(name.to_string(), pair[1].clone());
                }
            }
        }
    }
    Ok(Some(loaded))
}

#[cfg(feature = "redis")]
async fn redis_save(
    r: &RedisStore,
    keys: &SaveKeys,
    op: &Save<'_>,
    idle_ms: u64,
    max_ms: u64,
) -> Result<Saved, BackendError> {
    let s = &keys.session;
    let redis_keys = [
        s,
        keys.index_after.as_ref().unwrap_or(s),
        keys.index_before.as_ref().unwrap_or(s),
        keys.rename_from.as_ref().unwrap_or(s),
    ];
    let mode: &[u8] = match op.mode {
        Mode::Create => b"create",
        Mode::Update => b"update",
        Mode::Destroy => b"destroy",
    };
    let (idle, max) = (idle_ms.to_string(), max_ms.to_string());
    let (user_op, user): (&[u8], &str) = match op.user_op {
        UserOp::Keep => (b"", ""),
        UserOp::Set(u) => (b"s", u),
        UserOp::Unset => (b"u", ""),
    };
    let n = op.set.len().to_string();
    let set: Vec<(String, &str)> = op.set.iter().map(|(k, v)| (format!("f:{k}"), *v)).collect();
    let del: Vec<String> = op.del.iter().map(|k| format!("f:{k}")).collect();
    let mut args: Vec<&[u8]> = vec![
        mode,
        idle.as_bytes(),
        max.as_bytes(),
        op.id.as_str().as_bytes(),
        op.rename_from.map_or(&b""[..], |id| id.as_str().as_bytes()),
        if op.user_after.is_some() { b"1" } else { b"0" },
        if op.user_before.is_some() { b"1" } else { b"0" },
        user_op,
        user.as_bytes(),
        if op.clear { b"1" } else { b"0" },
        n.as_bytes(),
    ];
    for (k, v) in &set {
        args.push(k.as_bytes());
        args.push(v.as_bytes());
    }
    for k in &del {
        args.push(k.as_bytes());
    }
    let res: Vec<i64> = r.eval(save_script(), &redis_keys, &args).await?;
    Ok(match res.first() {
        Some(1) => Saved::Ok,
        Some(-1) => Saved::Collision,
        _ => Saved::Gone,
    })
}

// ---- Memory ------------------------------------------------------------------------------

/// A session in the memory backend (one entry, JSON-encoded; updated field by field under
/// the store's lock, so concurrent updates of different fields are kept, as on Redis).
#[derive(Debug, Default, Serialize, Deserialize)]
struct MemRecord {
    c: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    #[serde(default)]
    f: BTreeMap<String, String>,
}

fn mem_load(m: &MemoryStore, key: &RedisKey, max_ms: u64) -> Option<Loaded> {
    m.transact(|tx| {
        let raw = tx.get(key)?;
        let Ok(rec) = serde_json::from_slice::<MemRecord>(&raw) else {
            tx.delete(key);
            return None;
        };
        let now = tx.now_ms();
        if now >= rec.c.saturating_add(max_ms) {
            tx.delete(key);
            return None;
        }
        let pttl_ms = match tx.ttl(key) {
            KeyTtl::Expires(d) => Some(ms(d)),
            _ => None,
        };
        Some(Loaded {
            now_ms: now,
            pttl_ms,
            created_ms: rec.c,
            user: rec.u,
            fields: rec.f.into_iter().collect(),
        })
    })
}

fn read_index(raw: Option<Bytes>) -> BTreeMap<String, u64> {
    raw.and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_index(
    tx: &mut crate::backend::Txn<'_>,
    key: &RedisKey,
    idx: &BTreeMap<String, u64>,
) -> Result<(), BackendError> {
    let now = tx.now_ms();
    match idx.values().max() {
        Some(&last) if last > now => tx.set(
            key,
            Bytes::from(serde_json::to_vec(idx).unwrap_or_default()),
            Some(Duration::from_millis(last - now)),
        ),
        _ => {
            tx.delete(key);
            Ok(())
        }
    }
}

fn mem_save(
    m: &MemoryStore,
    keys: &SaveKeys,
    op: &Save<'_>,
    idle_ms: u64,
    max_ms: u64,
) -> Result<Saved, SessionError> {
    m.transact_all(|tx| {
        let now = tx.now_ms();
        let key = &keys.session;
        let remove_from_index = |tx: &mut crate::backend::Txn<'_>, member: &str| {
            if let Some(ik) = &keys.index_before {
                let mut idx = read_index(tx.get(ik));
                if idx.remove(member).is_some() {
                    write_index(tx, ik, &idx)?;
                }
            }
            Ok::<_, BackendError>(())
        };
        if op.mode == Mode::Destroy {
            tx.delete(key);
            remove_from_index(tx, op.id.as_str()).map_err(store_error)?;
            return Ok(Saved::Ok);
        }
        let mut old_member = op.id.as_str();
        let mut rec = if let (Some(from), Some(from_id)) = (&keys.rename_from, op.rename_from) {
            let Some(raw) = tx.get(from) else {
                return Ok(Saved::Gone);
            };
            if tx.get(key).is_some() {
                return Ok(Saved::Collision);
            }
            tx.delete(from);
            old_member = from_id.as_str();
            serde_json::from_slice::<MemRecord>(&raw).unwrap_or_default()
        } else if op.mode == Mode::Create {
            if tx.get(key).is_some() {
                return Ok(Saved::Collision);
            }
            MemRecord {
                c: now,
                ..MemRecord::default()
            }
        } else {
            match tx.get(key) {
                Some(raw) => serde_json::from_slice::<MemRecord>(&raw).unwrap_or_default(),
                None => return Ok(Saved::Gone),
            }
        };
        let ttl = idle_ms.min(rec.c.saturating_add(max_ms).saturating_sub(now));
        if ttl == 0 {
            tx.delete(key);
            remove_from_index(tx, old_member).map_err(store_error)?;
            return Ok(Saved::Gone);
        }
        if op.clear {
            rec.f.clear();
        }
        for (k, v) in &op.set {
            rec.f.insert((*k).to_string(), (*v).to_string());
        }
        for k in &op.del {
            rec.f.remove(*k);
        }
        match op.user_op {
            UserOp::Keep => {}
            UserOp::Set(u) => rec.u = Some(u.to_string()),
            UserOp::Unset => rec.u = None,
        }
        let body = Bytes::from(serde_json::to_vec(&rec).unwrap_or_default());
        tx.set(key, body, Some(Duration::from_millis(ttl)))
            .map_err(store_error)?;
        remove_from_index(tx, old_member).map_err(store_error)?;
        if let Some(ik) = &keys.index_after {
            let mut idx = read_index(tx.get(ik));
            idx.insert(op.id.as_str().to_string(), now + ttl);
            idx.retain(|_, at| *at > now);
            write_index(tx, ik, &idx).map_err(store_error)?;
        }
        Ok(Saved::Ok)
    })
}

/// A memory-store write error as a session error: a full store (every session live) is
/// a 503 like an unavailable one — the user can retry; no live session was evicted.
fn store_error(e: BackendError) -> SessionError {
    match e {
        BackendError::Full { .. } => SessionError::Unavailable(e),
        e => SessionError::Store(e),
    }
}

/// Lists (`revoke == false`) or revokes the sessions of one index; returns the live
/// sessions listed and how many were revoked.
fn mem_index(
    m: &MemoryStore,
    idx_key: &RedisKey,
    session_key: impl Fn(&SessionId) -> RedisKey,
    revoke: bool,
) -> (Vec<SessionInfo>, u64) {
    m.transact(|tx| {
        let now = tx.now_ms();
        let mut idx = read_index(tx.get(idx_key));
        idx.retain(|_, at| *at > now);
        let mut out = Vec::new();
        let mut n = 0;
        let mut live = BTreeMap::new();
        for (id, at) in idx {
            let Some(sid) = SessionId::parse(&id) else {
                continue;
            };
            let key = session_key(&sid);
            match tx.ttl(&key) {
                KeyTtl::Missing => {}
                _ if revoke => {
                    tx.delete(&key);
                    n += 1;
                }
                ttl => {
                    let expires_in = match ttl {
                        KeyTtl::Expires(d) => d,
                        _ => Duration::ZERO,
                    };
                    out.push(SessionInfo {
                        id: sid,
                        expires_in,
                    });
                    live.insert(id, at);
                }
            }
        }
        if revoke {
            tx.delete(idx_key);
        } else if let Err(e) = write_index(tx, idx_key, &live) {
            tracing::debug!(error = %e, "session index not rewritten");
        }
        (out, n)
    })
}
