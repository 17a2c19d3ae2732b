//! Where sessions live: the [`SessionBackend`] seam, its memory and Redis implementations,
//! and [`SessionStore`], which puts the outage policy, metrics and limits in front.

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "redis")]
use super::SessionOutage;
use super::{SessionConfig, SessionError, SessionId};
#[cfg(feature = "redis")]
use crate::backend::MemoryConfig;
use crate::backend::{Backend, BackendError, MemoryStore};
use crate::keys::{Keys, RedisKey};
use crate::metrics::{Metrics, SessionEventLabels};
use crate::tenant::TenantId;

mod backend;
mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use backend::{
    Lifetimes, SaveOutcome, SessionBackend, SessionKeys, SessionRecord, SessionWrite, StoreFuture,
    UserChange, UserIndex, WriteMode,
};

/// One live session of a user, as listed by [`SessionStore::list_user_sessions`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
/// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
/// # let metrics = Metrics::new();
/// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
/// use tenant_guard::{session::{Session, SessionStore}, tenant::TenantId};
/// // `store`: a `SessionStore` on memory, default settings (24 h idle timeout).
/// let acme = TenantId::new("acme")?;
/// let session = Session::detached(acme.clone(), store.clone());
/// session.set_user_id(Some("alice")).await?;
/// let id = session.save().await?.unwrap();
/// let listed = store.list_user_sessions(&acme, "alice").await?;
/// assert_eq!(listed[0].id, id);
/// assert!(listed[0].expires_in <= std::time::Duration::from_secs(24 * 3600));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session id (a credential: show users only a prefix).
    pub id: SessionId,
    /// Time until the session expires, unless used again.
    pub expires_in: Duration,
}

impl SessionInfo {
    /// A listed session (for [`SessionBackend::user_sessions`] implementations).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::session::{SessionId, SessionInfo};
    ///
    /// // What a store of your own lists, from its index and each record's time left.
    /// let id = SessionId::parse("0123456789abcdef0123456789abcdef").unwrap();
    /// let info = SessionInfo::new(id.clone(), Duration::from_secs(3600));
    /// assert_eq!((info.id, info.expires_in), (id, Duration::from_secs(3600)));
    /// ```
    pub fn new(id: SessionId, expires_in: Duration) -> Self {
        Self { id, expires_in }
    }
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
    store: Arc<dyn SessionBackend>,
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
            .field("backend", &self.inner.store.name())
            .field("ttl", &self.inner.ttl)
            .field("max_lifetime", &self.inner.max_lifetime)
            .field("fallback", &self.inner.fallback.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionStore {
    /// A store on `backend` with the given settings and key prefix.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tenant_guard::{backend::{Backend, MemoryStore}, keys::{KeyPrefix, Keys}, metrics::Metrics};
    /// use tenant_guard::{session::{Session, SessionConfig, SessionStore}, tenant::TenantId};
    ///
    /// let mut config = SessionConfig::default();
    /// config.ttl = Duration::from_secs(1800);
    /// let memory = MemoryStore::new(Default::default());
    /// let keys = Keys::new(KeyPrefix::new("app1")?);
    /// let store = SessionStore::new(Backend::Memory(memory.clone()), &config, keys, &Metrics::new());
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("theme", "dark").await?;
    /// let id = session.save().await?.unwrap();
    /// let key = Keys::new(KeyPrefix::new("app1")?).session(&TenantId::new("acme")?, id.as_str());
    /// assert!(memory.get(&key).is_some()); // under the prefix, with the configured TTL
    /// assert!(matches!(memory.ttl(&key), tenant_guard::backend::KeyTtl::Expires(t) if t <= Duration::from_secs(1800)));
    /// # Ok(()) }
    /// ```
    pub fn new(backend: Backend, config: &SessionConfig, keys: Keys, metrics: &Metrics) -> Self {
        let store: Arc<dyn SessionBackend> = match backend {
            Backend::Memory(m) => Arc::new(m),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => {
                // Only Redis can be down: the memory backend never needs a fallback.
                let fallback = (config.outage == SessionOutage::Local)
                    .then(|| MemoryStore::new(MemoryConfig::default()));
                return Self::build(Arc::new(r), fallback, config, keys, metrics);
            }
        };
        Self::build(store, None, config, keys, metrics)
    }

    /// A store on a [`SessionBackend`] of your own (a SQL table, say): sessions are kept
    /// there with the settings of `config`. An outage error from it (see
    /// [`BackendError::is_outage`]) answers 503 where a session is used; `SESSION_OUTAGE=local`
    /// applies to Redis only.
    ///
    /// ```
    /// use tenant_guard::session::{SessionConfig, SessionStore};
    /// use tenant_guard::{backend::{MemoryConfig, MemoryStore}, keys::Keys, metrics::Metrics};
    ///
    /// // Any `SessionBackend`; here the crate's own memory store.
    /// let store = SessionStore::with_backend(
    ///     MemoryStore::new(MemoryConfig::default()),
    ///     &SessionConfig::default(),
    ///     Keys::default(),
    ///     &Metrics::new(),
    /// );
    /// assert!(format!("{store:?}").contains("memory"));
    /// ```
    pub fn with_backend(
        store: impl SessionBackend,
        config: &SessionConfig,
        keys: Keys,
        metrics: &Metrics,
    ) -> Self {
        Self::build(Arc::new(store), None, config, keys, metrics)
    }

    fn build(
        store: Arc<dyn SessionBackend>,
        fallback: Option<MemoryStore>,
        config: &SessionConfig,
        keys: Keys,
        metrics: &Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
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

    /// The memory store to retry on after `e`: the fallback, for an outage, when there is
    /// one; otherwise the error to return.
    fn after_error(&self, e: BackendError) -> Result<&MemoryStore, SessionError> {
        match &self.inner.fallback {
            Some(m) if e.is_outage() => {
                self.event("fallback");
                Ok(m)
            }
            _ => Err(self.failure(e)),
        }
    }

    /// The error a caller sees: an outage or a full memory store is a 503 (the user can
    /// retry; no live session was evicted), anything else a store error.
    fn failure(&self, e: BackendError) -> SessionError {
        if let BackendError::Full { .. } = e {
            self.event("store_full");
            return SessionError::Unavailable(e);
        }
        self.event("store_error");
        if e.is_outage() {
            SessionError::Unavailable(e)
        } else {
            SessionError::Store(e)
        }
    }

    pub(crate) async fn load(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let key = self.session_key(tenant, id);
        let lifetimes = Lifetimes::new(self.inner.ttl, self.inner.max_lifetime);
        let loaded = match self.inner.store.load(&key, lifetimes).await {
            Ok(l) => l,
            Err(e) => self
                .after_error(e)?
                .load(&key, lifetimes)
                .await
                .map_err(|e| self.failure(e))?,
        };
        // The absolute lifetime, whatever the store checked (a store of a user's own may
        // forget): a record past it is no session.
        let max = backend::ms(self.inner.max_lifetime);
        let loaded = loaded.filter(|r| r.now_ms < r.created_ms.saturating_add(max));
        self.event(if loaded.is_some() { "load" } else { "miss" });
        Ok(loaded)
    }

    pub(crate) async fn save(
        &self,
        tenant: &TenantId,
        write: &SessionWrite<'_>,
    ) -> Result<SaveOutcome, SessionError> {
        let keys = SessionKeys {
            session: self.session_key(tenant, write.id),
            index_after: write
                .user_after
                .map(|u| self.inner.keys.session_index(tenant, u)),
            index_before: write
                .user_before
                .map(|u| self.inner.keys.session_index(tenant, u)),
            rename_from: write.rename_from.map(|id| self.session_key(tenant, id)),
        };
        let lifetimes = Lifetimes::new(self.inner.ttl, self.inner.max_lifetime);
        match self.inner.store.save(&keys, write, lifetimes).await {
            Ok(s) => Ok(s),
            Err(e) => {
                let fallback = self.after_error(e)?;
                (fallback.save(&keys, write, lifetimes).await).map_err(|e| self.failure(e))
            }
        }
    }

    /// The live sessions of `user` in `tenant`. Index entries of sessions that expired or
    /// were destroyed are dropped on the way, so the index stays consistent with expiry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// use tenant_guard::{session::{Session, SessionStore}, tenant::TenantId};
    /// // `store`: a `SessionStore` on memory.
    /// let acme = TenantId::new("acme")?;
    /// for _device in ["laptop", "phone"] {
    ///     let session = Session::detached(acme.clone(), store.clone());
    ///     session.set_user_id(Some("alice")).await?;
    ///     session.save().await?;
    /// }
    /// assert_eq!(store.list_user_sessions(&acme, "alice").await?.len(), 2);
    /// assert!(store.list_user_sessions(&TenantId::new("globex")?, "alice").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn list_user_sessions(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<Vec<SessionInfo>, SessionError> {
        Ok(self.user_sessions(tenant, user, false).await?.0)
    }

    /// Deletes every session of `user` in `tenant` ("log out everywhere"); returns how many.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// use tenant_guard::{session::{Session, SessionStore}, tenant::TenantId};
    /// // `store`: a `SessionStore` on memory.
    /// let acme = TenantId::new("acme")?;
    /// for _device in ["laptop", "phone"] {
    ///     let session = Session::detached(acme.clone(), store.clone());
    ///     session.set_user_id(Some("alice")).await?;
    ///     session.save().await?;
    /// }
    /// assert_eq!(store.revoke_user_sessions(&acme, "alice").await?, 2); // log out everywhere
    /// assert!(store.list_user_sessions(&acme, "alice").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn revoke_user_sessions(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<u64, SessionError> {
        let n = self.user_sessions(tenant, user, true).await?.1;
        for _ in 0..n {
            self.event("destroy");
        }
        Ok(n)
    }

    async fn user_sessions(
        &self,
        tenant: &TenantId,
        user: &str,
        revoke: bool,
    ) -> Result<(Vec<SessionInfo>, u64), SessionError> {
        let index = UserIndex::new(&self.inner.keys, tenant, user);
        match self.inner.store.user_sessions(&index, revoke).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let fallback = self.after_error(e)?;
                (fallback.user_sessions(&index, revoke).await).map_err(|e| self.failure(e))
            }
        }
    }

    /// Deletes one session; returns whether it existed. Its index entry goes at the next
    /// listing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// use tenant_guard::{session::{Session, SessionStore}, tenant::TenantId};
    /// // `store`: a `SessionStore` on memory.
    /// let acme = TenantId::new("acme")?;
    /// let session = Session::detached(acme.clone(), store.clone());
    /// session.set_user_id(Some("alice")).await?;
    /// let id = session.save().await?.unwrap();
    /// assert!(store.revoke(&acme, &id).await?);
    /// assert!(!store.revoke(&acme, &id).await?); // already gone
    /// assert!(store.list_user_sessions(&acme, "alice").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self, tenant: &TenantId, id: &SessionId) -> Result<bool, SessionError> {
        let key = self.session_key(tenant, id);
        let existed = match self.inner.store.delete(&key).await {
            Ok(b) => b,
            Err(e) => SessionBackend::delete(self.after_error(e)?, &key)
                .await
                .map_err(|e| self.failure(e))?,
        };
        if existed {
            self.event("destroy");
        }
        Ok(existed)
    }
}
