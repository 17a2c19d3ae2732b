//! The [`Session`] handle handlers use.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use super::cookie::CookieState;
use super::store::{SaveOutcome, SessionRecord, SessionStore, SessionWrite, UserChange, WriteMode};
use super::{SessionError, SessionId};
use crate::tenant::TenantId;

/// How many fresh ids to try when the store reports a collision.
const ID_ATTEMPTS: usize = 5;

/// The session of the current request, put in the request extensions by
/// [`SessionLayer`](super::SessionLayer). Clones share one state.
///
/// Lazy: the first method call loads the session (one round trip); changes are kept in the
/// handle and saved by the layer after the handler returns (not after a 5xx). Concurrent
/// requests on one session only write the keys they changed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
/// # use tenant_guard::session::{Session, SessionStore};
/// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
/// # let metrics = Metrics::new();
/// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
/// let session = Session::detached(TenantId::new("acme")?, store); // normally: the extractor
/// assert_eq!(session.get::<u32>("visits").await?, None);
/// session.insert("visits", &1u32).await?;
/// assert_eq!(session.get::<u32>("visits").await?, Some(1));
/// assert_eq!(session.remove::<u32>("visits").await?, Some(1));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

struct Shared {
    tenant: TenantId,
    store: SessionStore,
    cookie: CookieState,
    state: Mutex<State>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("tenant", &self.shared.tenant)
            .finish_non_exhaustive()
    }
}

/// What the store held when loaded.
#[derive(Debug, Clone)]
struct Stored {
    id: SessionId,
    user: Option<String>,
    created_ms: u64,
    now_ms: u64,
    pttl_ms: Option<u64>,
}

impl Stored {
    /// The creation time as loaded; `None` for a session this handle created (its time is
    /// Redis's, unknown here: stored as 0), so a later save has the store read it.
    fn created(&self) -> Option<u64> {
        (self.created_ms > 0).then_some(self.created_ms)
    }

    /// Whether the inactivity TTL has run down by a renew interval since it was last set
    /// (`false` when the store gives no time left: it never renews).
    fn renewal_due(&self, store: &SessionStore) -> bool {
        let Some(pttl) = self.pttl_ms else {
            return false;
        };
        let ttl = ms(store.ttl());
        let deadline = self
            .created_ms
            .saturating_add(ms(store.max_lifetime()))
            .saturating_sub(self.now_ms);
        let full = ttl.min(deadline);
        // Never more than half the TTL: an interval as long as the TTL would let a session
        // in use expire.
        let interval = ms(store.renew_interval()).min(ttl / 2).max(1);
        full.saturating_sub(pttl) >= interval
    }
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    stored: Option<Stored>,
    /// Current id: the stored one, a new one (create), or the target of a rename.
    id: Option<SessionId>,
    create: bool,
    rename_from: Option<SessionId>,
    /// A stored session destroyed by this request (deleted at commit).
    destroyed: Option<Stored>,
    fields: HashMap<String, String>,
    bytes: u64,
    set: HashSet<String>,
    del: HashSet<String>,
    cleared: bool,
    user: Option<String>,
    user_changed: bool,
}

impl State {
    fn changed(&self) -> bool {
        !self.set.is_empty()
            || !self.del.is_empty()
            || self.cleared
            || self.user_changed
            || self.rename_from.is_some()
    }

    fn ensure_id(&mut self) {
        if self.id.is_none() {
            self.id = Some(SessionId::generate());
            self.create = true;
        }
    }
}

/// What the layer should do with the cookie after a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieAction {
    Keep,
    Set(SessionId),
    Remove,
}

fn field_bytes(k: &str, v: &str) -> u64 {
    (k.len() + v.len()) as u64
}

impl Session {
    pub(crate) fn new(tenant: TenantId, store: SessionStore, cookie: CookieState) -> Self {
        Self {
            shared: Arc::new(Shared {
                tenant,
                store,
                cookie,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// A session handle with no cookie, outside any request (tests, background jobs that
    /// prepare a session). Changes are saved by [`Session::save`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("prepared", &true).await?;
    /// let id = session.save().await?.expect("created");
    /// assert_eq!(id.as_str().len(), 32);
    /// # Ok(()) }
    /// ```
    pub fn detached(tenant: TenantId, store: SessionStore) -> Self {
        Self::new(tenant, store, CookieState::Absent)
    }

    /// The tenant this session belongs to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// assert_eq!(session.tenant().as_str(), "acme");
    /// # Ok(()) }
    /// ```
    pub fn tenant(&self) -> &TenantId {
        &self.shared.tenant
    }

    pub(crate) fn cookie(&self) -> &CookieState {
        &self.shared.cookie
    }

    /// The session id the request's cookie carried for this tenant, if it verified (what
    /// the layer publishes as [`SessionCredential`](crate::tenant::SessionCredential)).
    pub(crate) fn cookie_id(&self) -> Option<&SessionId> {
        match &self.shared.cookie {
            CookieState::Valid(id) => Some(id),
            _ => None,
        }
    }

    async fn loaded(&self) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        let mut st = self.shared.state.lock().await;
        if !st.loaded {
            if let CookieState::Valid(id) = &self.shared.cookie {
                if let Some(l) = self.shared.store.load(&self.shared.tenant, id).await? {
                    let SessionRecord {
                        now_ms,
                        pttl_ms,
                        created_ms,
                        user,
                        fields,
                    } = l;
                    st.bytes = fields.iter().map(|(k, v)| field_bytes(k, v)).sum();
                    st.fields = fields;
                    st.user.clone_from(&user);
                    st.id = Some(id.clone());
                    st.stored = Some(Stored {
                        id: id.clone(),
                        user,
                        created_ms,
                        now_ms,
                        pttl_ms,
                    });
                } else {
                    self.shared.store.event("expired");
                }
            }
            st.loaded = true;
        }
        Ok(st)
    }

    /// The value under `key`, if any.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("cart", &vec!["apple", "pear"]).await?;
    /// let cart: Option<Vec<String>> = session.get("cart").await?;
    /// assert_eq!(cart.unwrap(), ["apple", "pear"]);
    /// assert_eq!(session.get::<u32>("missing").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let st = self.loaded().await?;
        st.fields
            .get(key)
            .map(|raw| {
                serde_json::from_str(raw).map_err(|source| SessionError::Serde {
                    key: key.to_string(),
                    source,
                })
            })
            .transpose()
    }

    /// Stores `value` under `key` (creating the session if there is none). Refused with
    /// [`SessionError::TooLarge`] if the session would exceed `SESSION_MAX_BYTES`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("theme", "dark").await?;
    /// assert_eq!(session.get::<String>("theme").await?.as_deref(), Some("dark"));
    /// // Past SESSION_MAX_BYTES (64 KiB by default): refused, nothing stored.
    /// let big = "x".repeat(100_000);
    /// assert!(session.insert("big", &big).await.is_err());
    /// assert_eq!(session.get::<String>("big").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn insert<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), SessionError> {
        let raw = serde_json::to_string(value).map_err(|source| SessionError::Serde {
            key: key.to_string(),
            source,
        })?;
        let mut st = self.loaded().await?;
        let old = st.fields.get(key).map_or(0, |v| field_bytes(key, v));
        let size = st.bytes - old + field_bytes(key, &raw);
        let limit = self.shared.store.max_bytes();
        if size > limit {
            return Err(SessionError::TooLarge { size, limit });
        }
        if st.fields.get(key) == Some(&raw) {
            return Ok(());
        }
        st.ensure_id();
        st.bytes = size;
        st.del.remove(key);
        st.set.insert(key.to_string());
        st.fields.insert(key.to_string(), raw);
        Ok(())
    }

    /// Removes `key`, returning its value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("flash", "saved!").await?;
    /// assert_eq!(session.remove::<String>("flash").await?.as_deref(), Some("saved!"));
    /// assert_eq!(session.remove::<String>("flash").await?, None); // shown once
    /// # Ok(()) }
    /// ```
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut st = self.loaded().await?;
        let Some(raw) = st.fields.remove(key) else {
            return Ok(None);
        };
        st.bytes -= field_bytes(key, &raw);
        st.set.remove(key);
        if st.stored.is_some() {
            st.del.insert(key.to_string());
        }
        serde_json::from_str(&raw)
            .map(Some)
            .map_err(|source| SessionError::Serde {
                key: key.to_string(),
                source,
            })
    }

    /// Removes every value (the session, its id and its user stay).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("a", &1).await?;
    /// session.set_user_id(Some("alice")).await?;
    /// session.clear().await?;
    /// assert!(session.keys().await?.is_empty());
    /// assert_eq!(session.user_id().await?.as_deref(), Some("alice"));
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<(), SessionError> {
        let mut st = self.loaded().await?;
        st.fields.clear();
        st.set.clear();
        st.del.clear();
        st.bytes = 0;
        st.cleared = st.stored.is_some();
        Ok(())
    }

    /// The keys present.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("b", &2).await?;
    /// session.insert("a", &1).await?;
    /// let mut keys = session.keys().await?;
    /// keys.sort();
    /// assert_eq!(keys, ["a", "b"]);
    /// # Ok(()) }
    /// ```
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        let st = self.loaded().await?;
        let mut keys: Vec<String> = st.fields.keys().cloned().collect();
        keys.sort();
        Ok(keys)
    }

    /// Gives the session a new id and keeps its data: call it on login and on any
    /// privilege change, so an id known before (session fixation) is worthless after.
    /// The old id stops working when the response is sent.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("cart", &3).await?;
    /// let before = session.save().await?.expect("created");
    /// session.cycle_id().await?; // on login
    /// let after = session.save().await?.expect("kept");
    /// assert_ne!(before, after);
    /// assert_eq!(session.get::<u32>("cart").await?, Some(3));
    /// # Ok(()) }
    /// ```
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let mut st = self.loaded().await?;
        if st.create {
            st.id = Some(SessionId::generate());
        } else if let Some(stored) = st.stored.clone() {
            if st.rename_from.is_none() {
                st.rename_from = Some(stored.id);
            }
            st.id = Some(SessionId::generate());
        }
        Ok(())
    }

    /// Ends the session: its data is deleted and the cookie removed when the response is
    /// sent. Values inserted afterwards start a fresh session with a fresh id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("a", &1).await?;
    /// session.save().await?;
    /// session.destroy().await?; // on logout
    /// assert_eq!(session.get::<u32>("a").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn destroy(&self) -> Result<(), SessionError> {
        let mut st = self.loaded().await?;
        let destroyed = st.stored.take().or_else(|| st.destroyed.take());
        *st = State {
            loaded: true,
            destroyed,
            ..State::default()
        };
        Ok(())
    }

    /// The user this session belongs to, once [`set_user_id`](Self::set_user_id) ran.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// assert_eq!(session.user_id().await?, None); // anonymous
    /// session.set_user_id(Some("alice")).await?;
    /// assert_eq!(session.user_id().await?.as_deref(), Some("alice"));
    /// # Ok(()) }
    /// ```
    pub async fn user_id(&self) -> Result<Option<String>, SessionError> {
        Ok(self.loaded().await?.user.clone())
    }

    /// Binds the session to a user (login; `None` unbinds it). The session is listed in
    /// the user's index, for [`SessionStore::list_user_sessions`] and
    /// [`SessionStore::revoke_user_sessions`]. Call [`cycle_id`](Self::cycle_id) too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.cycle_id().await?;
    /// session.set_user_id(Some("alice")).await?; // login
    /// session.save().await?;
    /// let acme = TenantId::new("acme")?;
    /// assert_eq!(session.set_user_id(None).await?, ()); // logout, keeping the data
    /// # let _ = acme;
    /// # Ok(()) }
    /// ```
    pub async fn set_user_id(&self, user: Option<&str>) -> Result<(), SessionError> {
        let mut st = self.loaded().await?;
        if st.user.as_deref() == user {
            return Ok(());
        }
        if user.is_some() {
            st.ensure_id();
        }
        st.user = user.map(str::to_string);
        st.user_changed = true;
        Ok(())
    }

    /// The session's id, if it has one (after loading; a new session has its id at once).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// assert_eq!(session.id().await?, None); // nothing stored yet
    /// session.insert("a", &1).await?;
    /// assert!(session.id().await?.is_some()); // a new session has its id at once
    /// # Ok(()) }
    /// ```
    pub async fn id(&self) -> Result<Option<SessionId>, SessionError> {
        Ok(self.loaded().await?.id.clone())
    }

    /// Saves pending changes now (the layer does this after the handler; call it yourself
    /// only for [`detached`](Self::detached) sessions). Returns the session id, if any.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::{Session, SessionStore};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let session = Session::detached(TenantId::new("acme")?, store);
    /// session.insert("a", &1).await?;
    /// let id = session.save().await?;
    /// assert!(id.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn save(&self) -> Result<Option<SessionId>, SessionError> {
        self.commit().await?;
        self.id().await
    }

    /// [`commit`](Self::commit) when it has nothing to write — the handler never loaded
    /// the session nor destroyed one — which is most requests: no future, no lock wait.
    /// `None` when there is something to save (or another task holds the handle's lock).
    pub(crate) fn commit_now(&self) -> Option<CookieAction> {
        let st = self.shared.state.try_lock().ok()?;
        (!st.loaded && st.destroyed.is_none()).then(|| self.unloaded(CookieAction::Keep))
    }

    /// The cookie of a session never loaded: removed if it was tampered with.
    fn unloaded(&self, action: CookieAction) -> CookieAction {
        if self.shared.cookie == CookieState::Invalid {
            self.shared.store.event("invalid_cookie");
            return CookieAction::Remove;
        }
        action
    }

    /// Writes what changed; tells the layer what to do with the cookie.
    pub(crate) async fn commit(&self) -> Result<CookieAction, SessionError> {
        let store = &self.shared.store;
        let tenant = &self.shared.tenant;
        let mut st = self.shared.state.lock().await;
        let mut action = CookieAction::Keep;
        if let Some(old) = st.destroyed.take() {
            let op = SessionWrite {
                mode: WriteMode::Destroy,
                id: &old.id,
                rename_from: None,
                user_before: old.user.as_deref(),
                user_after: None,
                user: UserChange::Keep,
                clear: false,
                set: Vec::new(),
                del: Vec::new(),
                created_ms: None,
                keep_ttl: false,
            };
            store.save(tenant, &op).await?;
            store.event("destroy");
            action = CookieAction::Remove;
        }
        if !st.loaded {
            return Ok(self.unloaded(action));
        }
        if st.create {
            for _ in 0..ID_ATTEMPTS {
                let id = st.id.clone().expect("a session being created has an id");
                let set: Vec<(&str, &str)> = st
                    .fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let op = SessionWrite {
                    mode: WriteMode::Create,
                    id: &id,
                    rename_from: None,
                    user_before: None,
                    user_after: st.user.as_deref(),
                    user: st.user.as_deref().map_or(UserChange::Keep, UserChange::Set),
                    clear: false,
                    set,
                    del: Vec::new(),
                    created_ms: None,
                    keep_ttl: false,
                };
                match store.save(tenant, &op).await? {
                    SaveOutcome::Written => {
                        store.event("create");
                        st.create = false;
                        st.stored = Some(Stored {
                            id: id.clone(),
                            user: st.user.clone(),
                            created_ms: 0,
                            now_ms: 0,
                            pttl_ms: None,
                        });
                        reset_changes(&mut st);
                        return Ok(CookieAction::Set(id));
                    }
                    SaveOutcome::Collision | SaveOutcome::Gone => {
                        st.id = Some(SessionId::generate())
                    }
                }
            }
            return Err(SessionError::IdCollision);
        }
        let Some(stored) = st.stored.clone() else {
            if action == CookieAction::Keep
                && matches!(
                    self.shared.cookie,
                    CookieState::Valid(_) | CookieState::Invalid
                )
            {
                // A cookie of this tenant that reached no session (expired, revoked) or a
                // tampered one: clear it. Another tenant's cookie is left alone.
                if self.shared.cookie == CookieState::Invalid {
                    store.event("invalid_cookie");
                }
                action = CookieAction::Remove;
            }
            return Ok(action);
        };
        if st.changed() {
            for _ in 0..ID_ATTEMPTS {
                let id = st.id.clone().expect("a stored session has an id");
                let user_op = match (st.user_changed, st.user.as_deref()) {
                    (false, _) => UserChange::Keep,
                    (true, Some(u)) => UserChange::Set(u),
                    (true, None) => UserChange::Unset,
                };
                let set: Vec<(&str, &str)> = st
                    .set
                    .iter()
                    .filter_map(|k| st.fields.get(k).map(|v| (k.as_str(), v.as_str())))
                    .collect();
                let op = SessionWrite {
                    mode: WriteMode::Update,
                    id: &id,
                    rename_from: st.rename_from.as_ref(),
                    user_before: stored.user.as_deref(),
                    user_after: st.user.as_deref(),
                    user: user_op,
                    clear: st.cleared,
                    set,
                    del: st.del.iter().map(String::as_str).collect(),
                    created_ms: stored.created(),
                    // Field writes move the inactivity TTL as reads do: at most once per
                    // renew interval.
                    keep_ttl: stored.pttl_ms.is_some() && !stored.renewal_due(store),
                };
                match store.save(tenant, &op).await? {
                    SaveOutcome::Written => {
                        store.event("save");
                        let renamed = st.rename_from.is_some();
                        if renamed {
                            store.event("cycle");
                        }
                        let kept = op.keep_ttl;
                        st.stored = Some(Stored {
                            id: id.clone(),
                            user: st.user.clone(),
                            // Renewed by this save: not again from this handle.
                            pttl_ms: stored.pttl_ms.filter(|_| kept),
                            ..stored
                        });
                        reset_changes(&mut st);
                        return Ok(if renamed {
                            CookieAction::Set(id)
                        } else {
                            action
                        });
                    }
                    SaveOutcome::Gone => {
                        // Expired or destroyed by another request meanwhile: do not
                        // resurrect it.
                        store.event("expired");
                        *st = State {
                            loaded: true,
                            ..State::default()
                        };
                        return Ok(CookieAction::Remove);
                    }
                    SaveOutcome::Collision if st.rename_from.is_some() => {
                        st.id = Some(SessionId::generate());
                    }
                    SaveOutcome::Collision => return Err(SessionError::IdCollision),
                }
            }
            return Err(SessionError::IdCollision);
        }
        // Read only: renew the inactivity TTL if it has run down by a renew interval.
        if stored.renewal_due(store) {
            let op = SessionWrite {
                mode: WriteMode::Update,
                id: &stored.id,
                rename_from: None,
                user_before: None,
                user_after: stored.user.as_deref(),
                user: UserChange::Keep,
                clear: false,
                set: Vec::new(),
                del: Vec::new(),
                created_ms: stored.created(),
                keep_ttl: false,
            };
            if store.save(tenant, &op).await? == SaveOutcome::Written {
                store.event("renew");
                // Renew at most once per interval even if the handle is committed again.
                if let Some(s) = st.stored.as_mut() {
                    s.pttl_ms = None;
                }
            }
        }
        Ok(action)
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn reset_changes(st: &mut State) {
    st.set.clear();
    st.del.clear();
    st.cleared = false;
    st.user_changed = false;
    st.rename_from = None;
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::StatusCode;
    use http::request::Parts;

    use super::Session;
    use crate::problem::Problem;

    /// Extracts the [`Session`] that [`SessionLayer`](crate::session::SessionLayer) put in
    /// the request.
    impl<S: Send + Sync> FromRequestParts<S> for Session {
        type Rejection = Problem;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<Session>().cloned().ok_or_else(|| {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Session layer missing")
                    .detail("this route extracts Session but no SessionLayer runs in front of it")
            })
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Session>().cloned())
        }
    }
}
