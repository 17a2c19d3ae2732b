//! The session storage seam: what [`SessionStore`](super::SessionStore) asks of a store,
//! with the memory and Redis implementations beside this file and room for a user's own.

use std::collections::HashMap;
use std::time::Duration;

use crate::keys::{Keys, RedisKey};
use crate::session::SessionId;
use crate::tenant::TenantId;

use super::SessionInfo;

pub use crate::backend::StoreFuture;

/// Where sessions are kept. [`SessionStore`](super::SessionStore) calls it with
/// tenant-prefixed keys and keeps cookies, the outage policy, metrics and size limits on
/// its side; a store only keeps records.
///
/// The crate implements it for [`MemoryStore`](crate::backend::MemoryStore) and
/// [`RedisStore`](crate::backend::RedisStore); implement it to keep sessions elsewhere (a
/// SQL table, say) and pass it to [`SessionStore::with_backend`](super::SessionStore::with_backend).
/// Every method must be atomic for its key(s): two requests of one session may save
/// different fields at once, and both must be kept.
///
/// The contract, checked by `middleware-examples/custom-session-store`:
///
/// - **load**: the record at `key`, or `None` when absent or when `now >= created +
///   lifetimes.max` (then delete it; `SessionStore` also refuses such a record itself).
///   `created_ms` is the time `save` stamped at creation, `now_ms` the time of this load on
///   a clock close to it (the Redis store: this process's clock; Redis itself caps every TTL
///   at the deadline); `pttl_ms` is the time left before the record expires unless used:
///   it decides renewals, and `None` means "never renew on a read" (a store that enforces
///   an idle timeout should give it, or read-only sessions expire while in use).
/// - **save** by [`SessionWrite::mode`]: `Create` refuses a taken id
///   ([`SaveOutcome::Collision`]) and stamps `created_ms = now`; `Update` of a missing record
///   is [`SaveOutcome::Gone`]; with `rename_from`, the record moves to the new key (missing
///   source -> `Gone`, taken target -> `Collision`); `Destroy` deletes. Then `clear` drops
///   every field, `set`/`del` change the named ones, `user` changes the owner, the record
///   expires after `idle` (never past `created + max`; with [`SessionWrite::keep_ttl`] a
///   plain update may keep its current expiry), and the user index
///   ([`SessionKeys::index_after`] / `index_before`) gains or loses the id.
/// - **user_sessions**: the live sessions in an index; with `revoke`, deletes them and the
///   index and returns how many.
/// - **delete**: removes one record; whether it existed.
///
/// ```
/// use tenant_guard::session::{SessionBackend, SessionStore, SessionConfig};
/// use tenant_guard::{backend::{MemoryStore, MemoryConfig}, keys::Keys, metrics::Metrics};
///
/// fn assert_store<S: SessionBackend>(_: &S) {}
/// let memory = MemoryStore::new(MemoryConfig::default());
/// assert_store(&memory);
/// let store = SessionStore::with_backend(memory, &SessionConfig::default(), Keys::default(), &Metrics::new());
/// # let _ = store;
/// ```
pub trait SessionBackend: Send + Sync + 'static {
    /// A short name for logs and `Debug` (`memory`, `redis`, ...).
    fn name(&self) -> &'static str;

    /// The session at `key`, unless missing or past `lifetimes.max` since its creation.
    fn load<'a>(
        &'a self,
        key: &'a RedisKey,
        lifetimes: Lifetimes,
    ) -> StoreFuture<'a, Option<SessionRecord>>;

    /// Applies one request's changes atomically.
    fn save<'a>(
        &'a self,
        keys: &'a SessionKeys,
        write: &'a SessionWrite<'a>,
        lifetimes: Lifetimes,
    ) -> StoreFuture<'a, SaveOutcome>;

    /// Lists (or, with `revoke`, deletes) the live sessions of one user: the listed sessions
    /// and how many were deleted.
    fn user_sessions<'a>(
        &'a self,
        index: &'a UserIndex<'a>,
        revoke: bool,
    ) -> StoreFuture<'a, (Vec<SessionInfo>, u64)>;

    /// Deletes one session record; whether it existed.
    fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool>;
}

/// A session as a store returns it.
///
/// ```
/// use tenant_guard::session::SessionRecord;
/// let mut r = SessionRecord::new(1_000, 400);
/// r.user = Some("u-42".into());
/// r.fields.insert("theme".into(), "\"dark\"".into());
/// assert_eq!(r.created_ms, 400);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The time of this load, ms since the Unix epoch (see [`SessionBackend`]).
    pub now_ms: u64,
    /// Time left before the record expires unless used, ms (`None`: never renewed on a
    /// read).
    pub pttl_ms: Option<u64>,
    /// Creation time on the store's clock, ms.
    pub created_ms: u64,
    /// The logged-in user, if any.
    pub user: Option<String>,
    /// Session key -> JSON text.
    pub fields: HashMap<String, String>,
}

impl SessionRecord {
    /// An empty record created at `created_ms`, loaded at `now_ms`.
    ///
    /// ```
    /// use tenant_guard::session::SessionRecord;
    ///
    /// // A store of your own builds the record it read back from its table.
    /// let mut r = SessionRecord::new(1_700_000_060_000, 1_700_000_000_000);
    /// r.pttl_ms = Some(86_340_000);
    /// r.user = Some("alice".into());
    /// assert!(r.fields.is_empty());
    /// assert_eq!(r.now_ms - r.created_ms, 60_000); // created a minute ago
    /// ```
    pub fn new(now_ms: u64, created_ms: u64) -> Self {
        Self {
            now_ms,
            pttl_ms: None,
            created_ms,
            user: None,
            fields: HashMap::new(),
        }
    }
}

/// What a save does to the record.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::{Arc, Mutex};
/// # use tenant_guard::{backend::MemoryStore, keys::{Keys, RedisKey}, metrics::Metrics, tenant::TenantId};
/// # use tenant_guard::session::*;
/// # #[derive(Clone)]
/// # struct Spy { memory: MemoryStore, log: Arc<Mutex<Vec<String>>> }
/// # impl Spy {
/// #     fn note(&self, s: String) { self.log.lock().unwrap().push(s) }
/// #     fn seen(&self, what: &str) -> Vec<String> {
/// #         let log = self.log.lock().unwrap();
/// #         log.iter().filter_map(|l| l.strip_prefix(what)).map(String::from).collect()
/// #     }
/// # }
/// # impl SessionBackend for Spy {
/// #     fn name(&self) -> &'static str { "spy" }
/// #     fn load<'a>(&'a self, key: &'a RedisKey, l: Lifetimes) -> StoreFuture<'a, Option<SessionRecord>> {
/// #         SessionBackend::load(&self.memory, key, l)
/// #     }
/// #     fn save<'a>(&'a self, keys: &'a SessionKeys, w: &'a SessionWrite<'a>, l: Lifetimes) -> StoreFuture<'a, SaveOutcome> {
/// #         self.note(format!("mode={:?}", w.mode));
/// #         self.note(format!("user={:?}", w.user));
/// #         self.note(format!("set={:?}", w.set));
/// #         self.note(format!("session={}", keys.session));
/// #         self.note(format!("index_after={:?}", keys.index_after.as_ref().map(|k| k.to_string())));
/// #         self.note(format!("lifetimes={:?}/{:?}", l.idle, l.max));
/// #         Box::pin(async move {
/// #             let out = SessionBackend::save(&self.memory, keys, w, l).await?;
/// #             self.note(format!("outcome={out:?}"));
/// #             Ok(out)
/// #         })
/// #     }
/// #     fn user_sessions<'a>(&'a self, index: &'a UserIndex<'a>, revoke: bool) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
/// #         self.note(format!("index={}", index.key));
/// #         Box::pin(async move {
/// #             let r = SessionBackend::user_sessions(&self.memory, index, revoke).await?;
/// #             for s in &r.0 { self.note(format!("listed={}", index.session_key(&s.id))); }
/// #             Ok(r)
/// #         })
/// #     }
/// #     fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
/// #         SessionBackend::delete(&self.memory, key)
/// #     }
/// # }
/// # let spy = Spy { memory: MemoryStore::new(Default::default()), log: Default::default() };
/// # let store = SessionStore::with_backend(spy.clone(), &SessionConfig::default(), Keys::default(), &Metrics::new());
/// // `spy`: a `SessionBackend` that notes what it is given, then defers to a `MemoryStore`.
/// let session = Session::detached(TenantId::new("acme")?, store.clone());
/// session.insert("theme", "dark").await?;
/// session.save().await?;
/// session.insert("theme", "light").await?;
/// session.save().await?;
/// session.destroy().await?;
/// session.save().await?;
/// assert_eq!(spy.seen("mode="), ["Create", "Update", "Destroy"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A new session: refused when the id is taken.
    Create,
    /// Changes to an existing session (or a rename, with `rename_from`).
    Update,
    /// Deletes the session.
    Destroy,
}

/// What a save does to the session's user.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::{Arc, Mutex};
/// # use tenant_guard::{backend::MemoryStore, keys::{Keys, RedisKey}, metrics::Metrics, tenant::TenantId};
/// # use tenant_guard::session::*;
/// # #[derive(Clone)]
/// # struct Spy { memory: MemoryStore, log: Arc<Mutex<Vec<String>>> }
/// # impl Spy {
/// #     fn note(&self, s: String) { self.log.lock().unwrap().push(s) }
/// #     fn seen(&self, what: &str) -> Vec<String> {
/// #         let log = self.log.lock().unwrap();
/// #         log.iter().filter_map(|l| l.strip_prefix(what)).map(String::from).collect()
/// #     }
/// # }
/// # impl SessionBackend for Spy {
/// #     fn name(&self) -> &'static str { "spy" }
/// #     fn load<'a>(&'a self, key: &'a RedisKey, l: Lifetimes) -> StoreFuture<'a, Option<SessionRecord>> {
/// #         SessionBackend::load(&self.memory, key, l)
/// #     }
/// #     fn save<'a>(&'a self, keys: &'a SessionKeys, w: &'a SessionWrite<'a>, l: Lifetimes) -> StoreFuture<'a, SaveOutcome> {
/// #         self.note(format!("mode={:?}", w.mode));
/// #         self.note(format!("user={:?}", w.user));
/// #         self.note(format!("set={:?}", w.set));
/// #         self.note(format!("session={}", keys.session));
/// #         self.note(format!("index_after={:?}", keys.index_after.as_ref().map(|k| k.to_string())));
/// #         self.note(format!("lifetimes={:?}/{:?}", l.idle, l.max));
/// #         Box::pin(async move {
/// #             let out = SessionBackend::save(&self.memory, keys, w, l).await?;
/// #             self.note(format!("outcome={out:?}"));
/// #             Ok(out)
/// #         })
/// #     }
/// #     fn user_sessions<'a>(&'a self, index: &'a UserIndex<'a>, revoke: bool) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
/// #         self.note(format!("index={}", index.key));
/// #         Box::pin(async move {
/// #             let r = SessionBackend::user_sessions(&self.memory, index, revoke).await?;
/// #             for s in &r.0 { self.note(format!("listed={}", index.session_key(&s.id))); }
/// #             Ok(r)
/// #         })
/// #     }
/// #     fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
/// #         SessionBackend::delete(&self.memory, key)
/// #     }
/// # }
/// # let spy = Spy { memory: MemoryStore::new(Default::default()), log: Default::default() };
/// # let store = SessionStore::with_backend(spy.clone(), &SessionConfig::default(), Keys::default(), &Metrics::new());
/// // `spy`: a `SessionBackend` that notes what it is given, then defers to a `MemoryStore`.
/// let session = Session::detached(TenantId::new("acme")?, store.clone());
/// session.set_user_id(Some("alice")).await?; // login
/// session.save().await?;
/// session.set_user_id(None).await?; // logout
/// session.save().await?;
/// assert_eq!(spy.seen("user="), [r#"Set("alice")"#, "Unset"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange<'a> {
    /// Leaves it as it is.
    Keep,
    /// Logs this user in.
    Set(&'a str),
    /// Logs out.
    Unset,
}

/// The changes of one request, as [`SessionBackend::save`] receives them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::{Arc, Mutex};
/// # use tenant_guard::{backend::MemoryStore, keys::{Keys, RedisKey}, metrics::Metrics, tenant::TenantId};
/// # use tenant_guard::session::*;
/// # #[derive(Clone)]
/// # struct Spy { memory: MemoryStore, log: Arc<Mutex<Vec<String>>> }
/// # impl Spy {
/// #     fn note(&self, s: String) { self.log.lock().unwrap().push(s) }
/// #     fn seen(&self, what: &str) -> Vec<String> {
/// #         let log = self.log.lock().unwrap();
/// #         log.iter().filter_map(|l| l.strip_prefix(what)).map(String::from).collect()
/// #     }
/// # }
/// # impl SessionBackend for Spy {
/// #     fn name(&self) -> &'static str { "spy" }
/// #     fn load<'a>(&'a self, key: &'a RedisKey, l: Lifetimes) -> StoreFuture<'a, Option<SessionRecord>> {
/// #         SessionBackend::load(&self.memory, key, l)
/// #     }
/// #     fn save<'a>(&'a self, keys: &'a SessionKeys, w: &'a SessionWrite<'a>, l: Lifetimes) -> StoreFuture<'a, SaveOutcome> {
/// #         self.note(format!("mode={:?}", w.mode));
/// #         self.note(format!("user={:?}", w.user));
/// #         self.note(format!("set={:?}", w.set));
/// #         self.note(format!("session={}", keys.session));
/// #         self.note(format!("index_after={:?}", keys.index_after.as_ref().map(|k| k.to_string())));
/// #         self.note(format!("lifetimes={:?}/{:?}", l.idle, l.max));
/// #         Box::pin(async move {
/// #             let out = SessionBackend::save(&self.memory, keys, w, l).await?;
/// #             self.note(format!("outcome={out:?}"));
/// #             Ok(out)
/// #         })
/// #     }
/// #     fn user_sessions<'a>(&'a self, index: &'a UserIndex<'a>, revoke: bool) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
/// #         self.note(format!("index={}", index.key));
/// #         Box::pin(async move {
/// #             let r = SessionBackend::user_sessions(&self.memory, index, revoke).await?;
/// #             for s in &r.0 { self.note(format!("listed={}", index.session_key(&s.id))); }
/// #             Ok(r)
/// #         })
/// #     }
/// #     fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
/// #         SessionBackend::delete(&self.memory, key)
/// #     }
/// # }
/// # let spy = Spy { memory: MemoryStore::new(Default::default()), log: Default::default() };
/// # let store = SessionStore::with_backend(spy.clone(), &SessionConfig::default(), Keys::default(), &Metrics::new());
/// // `spy`: a `SessionBackend` that notes what it is given, then defers to a `MemoryStore`.
/// let session = Session::detached(TenantId::new("acme")?, store.clone());
/// session.insert("theme", "dark").await?;
/// session.save().await?;
/// // Fields arrive as JSON text.
/// assert_eq!(spy.seen("set="), [r#"[("theme", "\"dark\"")]"#]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct SessionWrite<'a> {
    /// Create, update or destroy.
    pub mode: WriteMode,
    /// The session's id (after a rename, the new one).
    pub id: &'a SessionId,
    /// The id the record had before this request renamed it.
    pub rename_from: Option<&'a SessionId>,
    /// The user before this request (whose index loses the id when it changes).
    pub user_before: Option<&'a str>,
    /// The user after this request (whose index gains the id).
    pub user_after: Option<&'a str>,
    /// The change to the user field.
    pub user: UserChange<'a>,
    /// Drop every field before `set`.
    pub clear: bool,
    /// Fields to write (name, JSON text), each name once.
    pub set: Vec<(&'a str, &'a str)>,
    /// Fields to delete.
    pub del: Vec<&'a str>,
    /// The record's creation time as this request loaded it (ms), for a store that caps the
    /// TTL at the absolute deadline without reading the record again; `None` when not
    /// loaded (create, destroy).
    pub created_ms: Option<u64>,
    /// The record's inactivity TTL was set less than a renew interval ago
    /// (`SESSION_RENEW_INTERVAL`): a plain field update may leave it as it is, as a read
    /// does (the Redis store then sends no TTL command but the one that expires a fragment
    /// of a session destroyed meanwhile). Renewing anyway is correct too.
    pub keep_ttl: bool,
}

/// The keys one save touches, tenant-prefixed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::{Arc, Mutex};
/// # use tenant_guard::{backend::MemoryStore, keys::{Keys, RedisKey}, metrics::Metrics, tenant::TenantId};
/// # use tenant_guard::session::*;
/// # #[derive(Clone)]
/// # struct Spy { memory: MemoryStore, log: Arc<Mutex<Vec<String>>> }
/// # impl Spy {
/// #     fn note(&self, s: String) { self.log.lock().unwrap().push(s) }
/// #     fn seen(&self, what: &str) -> Vec<String> {
/// #         let log = self.log.lock().unwrap();
/// #         log.iter().filter_map(|l| l.strip_prefix(what)).map(String::from).collect()
/// #     }
/// # }
/// # impl SessionBackend for Spy {
/// #     fn name(&self) -> &'static str { "spy" }
/// #     fn load<'a>(&'a self, key: &'a RedisKey, l: Lifetimes) -> StoreFuture<'a, Option<SessionRecord>> {
/// #         SessionBackend::load(&self.memory, key, l)
/// #     }
/// #     fn save<'a>(&'a self, keys: &'a SessionKeys, w: &'a SessionWrite<'a>, l: Lifetimes) -> StoreFuture<'a, SaveOutcome> {
/// #         self.note(format!("mode={:?}", w.mode));
/// #         self.note(format!("user={:?}", w.user));
/// #         self.note(format!("set={:?}", w.set));
/// #         self.note(format!("session={}", keys.session));
/// #         self.note(format!("index_after={:?}", keys.index_after.as_ref().map(|k| k.to_string())));
/// #         self.note(format!("lifetimes={:?}/{:?}", l.idle, l.max));
/// #         Box::pin(async move {
/// #             let out = SessionBackend::save(&self.memory, keys, w, l).await?;
/// #             self.note(format!("outcome={out:?}"));
/// #             Ok(out)
/// #         })
/// #     }
/// #     fn user_sessions<'a>(&'a self, index: &'a UserIndex<'a>, revoke: bool) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
/// #         self.note(format!("index={}", index.key));
/// #         Box::pin(async move {
/// #             let r = SessionBackend::user_sessions(&self.memory, index, revoke).await?;
/// #             for s in &r.0 { self.note(format!("listed={}", index.session_key(&s.id))); }
/// #             Ok(r)
/// #         })
/// #     }
/// #     fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
/// #         SessionBackend::delete(&self.memory, key)
/// #     }
/// # }
/// # let spy = Spy { memory: MemoryStore::new(Default::default()), log: Default::default() };
/// # let store = SessionStore::with_backend(spy.clone(), &SessionConfig::default(), Keys::default(), &Metrics::new());
/// // `spy`: a `SessionBackend` that notes what it is given, then defers to a `MemoryStore`.
/// let session = Session::detached(TenantId::new("acme")?, store.clone());
/// session.set_user_id(Some("alice")).await?;
/// let id = session.save().await?.unwrap();
/// assert_eq!(spy.seen("session="), [format!("tg:session:{{acme}}:{}", id.as_str())]);
/// assert_eq!(spy.seen("index_after="), [r#"Some("tg:session-index:{acme}:alice")"#]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct SessionKeys {
    /// The session record.
    pub session: RedisKey,
    /// The index of the user after the save, if any.
    pub index_after: Option<RedisKey>,
    /// The index of the user before the save, if any.
    pub index_before: Option<RedisKey>,
    /// The record's key before a rename.
    pub rename_from: Option<RedisKey>,
}

/// How long a record may live.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::{Arc, Mutex};
/// # use tenant_guard::{backend::MemoryStore, keys::{Keys, RedisKey}, metrics::Metrics, tenant::TenantId};
/// # use tenant_guard::session::*;
/// # #[derive(Clone)]
/// # struct Spy { memory: MemoryStore, log: Arc<Mutex<Vec<String>>> }
/// # impl Spy {
/// #     fn note(&self, s: String) { self.log.lock().unwrap().push(s) }
/// #     fn seen(&self, what: &str) -> Vec<String> {
/// #         let log = self.log.lock().unwrap();
/// #         log.iter().filter_map(|l| l.strip_prefix(what)).map(String::from).collect()
/// #     }
/// # }
/// # impl SessionBackend for Spy {
/// #     fn name(&self) -> &'static str { "spy" }
/// #     fn load<'a>(&'a self, key: &'a RedisKey, l: Lifetimes) -> StoreFuture<'a, Option<SessionRecord>> {
/// #         SessionBackend::load(&self.memory, key, l)
/// #     }
/// #     fn save<'a>(&'a self, keys: &'a SessionKeys, w: &'a SessionWrite<'a>, l: Lifetimes) -> StoreFuture<'a, SaveOutcome> {
/// #         self.note(format!("mode={:?}", w.mode));
/// #         self.note(format!("user={:?}", w.user));
/// #         self.note(format!("set={:?}", w.set));
/// #         self.note(format!("session={}", keys.session));
/// #         self.note(format!("index_after={:?}", keys.index_after.as_ref().map(|k| k.to_string())));
/// #         self.note(format!("lifetimes={:?}/{:?}", l.idle, l.max));
/// #         Box::pin(async move {
/// #             let out = SessionBackend::save(&self.memory, keys, w, l).await?;
/// #             self.note(format!("outcome={out:?}"));
/// #             Ok(out)
/// #         })
/// #     }
/// #     fn user_sessions<'a>(&'a self, index: &'a UserIndex<'a>, revoke: bool) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
/// #         self.note(format!("index={}", index.key));
/// #         Box::pin(async move {
/// #             let r = SessionBackend::user_sessions(&self.memory, index, revoke).await?;
/// #             for s in &r.0 { self.note(format!("listed={}", index.session_key(&s.id))); }
/// #             Ok(r)
/// #         })
/// #     }
/// #     fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
/// #         SessionBackend::delete(&self.memory, key)
/// #     }
/// # }
/// # let spy = Spy { memory: MemoryStore::new(Default::default()), log: Default::default() };
/// # let store = SessionStore::with_backend(spy.clone(), &SessionConfig::default(), Keys::default(), &Metrics::new());
/// // `spy`: a `SessionBackend` that notes what it is given, then defers to a `MemoryStore`.
/// let session = Session::detached(TenantId::new("acme")?, store.clone());
/// session.insert("theme", "dark").await?;
/// session.save().await?;
/// // `SessionConfig::default()`: 24 h idle, 7 days at most.
/// assert_eq!(spy.seen("lifetimes="), ["86400s/604800s"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lifetimes {
    /// Inactivity timeout: the record expires this long after its last save.
    pub idle: Duration,
    /// Absolute lifetime from creation.
    pub max: Duration,
}

impl Lifetimes {
    pub(crate) fn new(idle: Duration, max: Duration) -> Self {
        Self { idle, max }
    }
}

/// One user's session index, and how to name the sessions it lists.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::{Arc, Mutex};
/// # use tenant_guard::{backend::MemoryStore, keys::{Keys, RedisKey}, metrics::Metrics, tenant::TenantId};
/// # use tenant_guard::session::*;
/// # #[derive(Clone)]
/// # struct Spy { memory: MemoryStore, log: Arc<Mutex<Vec<String>>> }
/// # impl Spy {
/// #     fn note(&self, s: String) { self.log.lock().unwrap().push(s) }
/// #     fn seen(&self, what: &str) -> Vec<String> {
/// #         let log = self.log.lock().unwrap();
/// #         log.iter().filter_map(|l| l.strip_prefix(what)).map(String::from).collect()
/// #     }
/// # }
/// # impl SessionBackend for Spy {
/// #     fn name(&self) -> &'static str { "spy" }
/// #     fn load<'a>(&'a self, key: &'a RedisKey, l: Lifetimes) -> StoreFuture<'a, Option<SessionRecord>> {
/// #         SessionBackend::load(&self.memory, key, l)
/// #     }
/// #     fn save<'a>(&'a self, keys: &'a SessionKeys, w: &'a SessionWrite<'a>, l: Lifetimes) -> StoreFuture<'a, SaveOutcome> {
/// #         self.note(format!("mode={:?}", w.mode));
/// #         self.note(format!("user={:?}", w.user));
/// #         self.note(format!("set={:?}", w.set));
/// #         self.note(format!("session={}", keys.session));
/// #         self.note(format!("index_after={:?}", keys.index_after.as_ref().map(|k| k.to_string())));
/// #         self.note(format!("lifetimes={:?}/{:?}", l.idle, l.max));
/// #         Box::pin(async move {
/// #             let out = SessionBackend::save(&self.memory, keys, w, l).await?;
/// #             self.note(format!("outcome={out:?}"));
/// #             Ok(out)
/// #         })
/// #     }
/// #     fn user_sessions<'a>(&'a self, index: &'a UserIndex<'a>, revoke: bool) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
/// #         self.note(format!("index={}", index.key));
/// #         Box::pin(async move {
/// #             let r = SessionBackend::user_sessions(&self.memory, index, revoke).await?;
/// #             for s in &r.0 { self.note(format!("listed={}", index.session_key(&s.id))); }
/// #             Ok(r)
/// #         })
/// #     }
/// #     fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
/// #         SessionBackend::delete(&self.memory, key)
/// #     }
/// # }
/// # let spy = Spy { memory: MemoryStore::new(Default::default()), log: Default::default() };
/// # let store = SessionStore::with_backend(spy.clone(), &SessionConfig::default(), Keys::default(), &Metrics::new());
/// // `spy`: a `SessionBackend` that notes what it is given, then defers to a `MemoryStore`.
/// let session = Session::detached(TenantId::new("acme")?, store.clone());
/// session.set_user_id(Some("alice")).await?;
/// session.save().await?;
/// assert_eq!(store.list_user_sessions(&TenantId::new("acme")?, "alice").await?.len(), 1);
/// assert_eq!(spy.seen("index="), ["tg:session-index:{acme}:alice"]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct UserIndex<'a> {
    /// The index key.
    pub key: RedisKey,
    tenant: &'a TenantId,
    keys: &'a Keys,
}

impl<'a> UserIndex<'a> {
    pub(crate) fn new(keys: &'a Keys, tenant: &'a TenantId, user: &str) -> Self {
        Self {
            key: keys.session_index(tenant, user),
            tenant,
            keys,
        }
    }

    /// The record key of session `id` in this index's tenant.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::sync::{Arc, Mutex};
    /// # use tenant_guard::{backend::MemoryStore, keys::{Keys, RedisKey}, metrics::Metrics, tenant::TenantId};
    /// # use tenant_guard::session::*;
    /// # #[derive(Clone)]
    /// # struct Spy { memory: MemoryStore, log: Arc<Mutex<Vec<String>>> }
    /// # impl Spy {
    /// #     fn note(&self, s: String) { self.log.lock().unwrap().push(s) }
    /// #     fn seen(&self, what: &str) -> Vec<String> {
    /// #         let log = self.log.lock().unwrap();
    /// #         log.iter().filter_map(|l| l.strip_prefix(what)).map(String::from).collect()
    /// #     }
    /// # }
    /// # impl SessionBackend for Spy {
    /// #     fn name(&self) -> &'static str { "spy" }
    /// #     fn load<'a>(&'a self, key: &'a RedisKey, l: Lifetimes) -> StoreFuture<'a, Option<SessionRecord>> {
    /// #         SessionBackend::load(&self.memory, key, l)
    /// #     }
    /// #     fn save<'a>(&'a self, keys: &'a SessionKeys, w: &'a SessionWrite<'a>, l: Lifetimes) -> StoreFuture<'a, SaveOutcome> {
    /// #         self.note(format!("mode={:?}", w.mode));
    /// #         self.note(format!("user={:?}", w.user));
    /// #         self.note(format!("set={:?}", w.set));
    /// #         self.note(format!("session={}", keys.session));
    /// #         self.note(format!("index_after={:?}", keys.index_after.as_ref().map(|k| k.to_string())));
    /// #         self.note(format!("lifetimes={:?}/{:?}", l.idle, l.max));
    /// #         Box::pin(async move {
    /// #             let out = SessionBackend::save(&self.memory, keys, w, l).await?;
    /// #             self.note(format!("outcome={out:?}"));
    /// #             Ok(out)
    /// #         })
    /// #     }
    /// #     fn user_sessions<'a>(&'a self, index: &'a UserIndex<'a>, revoke: bool) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
    /// #         self.note(format!("index={}", index.key));
    /// #         Box::pin(async move {
    /// #             let r = SessionBackend::user_sessions(&self.memory, index, revoke).await?;
    /// #             for s in &r.0 { self.note(format!("listed={}", index.session_key(&s.id))); }
    /// #             Ok(r)
    /// #         })
    /// #     }
    /// #     fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
    /// #         SessionBackend::delete(&self.memory, key)
    /// #     }
    /// # }
    /// # let spy = Spy { memory: MemoryStore::new(Default::default()), log: Default::default() };
    /// # let store = SessionStore::with_backend(spy.clone(), &SessionConfig::default(), Keys::default(), &Metrics::new());
    /// // `spy`: a `SessionBackend` that notes what it is given, then defers to a `MemoryStore`.
    /// let acme = TenantId::new("acme")?;
    /// let session = Session::detached(acme.clone(), store.clone());
    /// session.set_user_id(Some("alice")).await?;
    /// let id = session.save().await?.unwrap();
    /// store.list_user_sessions(&acme, "alice").await?;
    /// assert_eq!(spy.seen("listed="), [Keys::default().session(&acme, id.as_str()).to_string()]);
    /// # Ok(()) }
    /// ```
    pub fn session_key(&self, id: &SessionId) -> RedisKey {
        self.keys.session(self.tenant, id.as_str())
    }
}

/// How a save ended.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::{Arc, Mutex};
/// # use tenant_guard::{backend::MemoryStore, keys::{Keys, RedisKey}, metrics::Metrics, tenant::TenantId};
/// # use tenant_guard::session::*;
/// # #[derive(Clone)]
/// # struct Spy { memory: MemoryStore, log: Arc<Mutex<Vec<String>>> }
/// # impl Spy {
/// #     fn note(&self, s: String) { self.log.lock().unwrap().push(s) }
/// #     fn seen(&self, what: &str) -> Vec<String> {
/// #         let log = self.log.lock().unwrap();
/// #         log.iter().filter_map(|l| l.strip_prefix(what)).map(String::from).collect()
/// #     }
/// # }
/// # impl SessionBackend for Spy {
/// #     fn name(&self) -> &'static str { "spy" }
/// #     fn load<'a>(&'a self, key: &'a RedisKey, l: Lifetimes) -> StoreFuture<'a, Option<SessionRecord>> {
/// #         SessionBackend::load(&self.memory, key, l)
/// #     }
/// #     fn save<'a>(&'a self, keys: &'a SessionKeys, w: &'a SessionWrite<'a>, l: Lifetimes) -> StoreFuture<'a, SaveOutcome> {
/// #         self.note(format!("mode={:?}", w.mode));
/// #         self.note(format!("user={:?}", w.user));
/// #         self.note(format!("set={:?}", w.set));
/// #         self.note(format!("session={}", keys.session));
/// #         self.note(format!("index_after={:?}", keys.index_after.as_ref().map(|k| k.to_string())));
/// #         self.note(format!("lifetimes={:?}/{:?}", l.idle, l.max));
/// #         Box::pin(async move {
/// #             let out = SessionBackend::save(&self.memory, keys, w, l).await?;
/// #             self.note(format!("outcome={out:?}"));
/// #             Ok(out)
/// #         })
/// #     }
/// #     fn user_sessions<'a>(&'a self, index: &'a UserIndex<'a>, revoke: bool) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
/// #         self.note(format!("index={}", index.key));
/// #         Box::pin(async move {
/// #             let r = SessionBackend::user_sessions(&self.memory, index, revoke).await?;
/// #             for s in &r.0 { self.note(format!("listed={}", index.session_key(&s.id))); }
/// #             Ok(r)
/// #         })
/// #     }
/// #     fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
/// #         SessionBackend::delete(&self.memory, key)
/// #     }
/// # }
/// # let spy = Spy { memory: MemoryStore::new(Default::default()), log: Default::default() };
/// # let store = SessionStore::with_backend(spy.clone(), &SessionConfig::default(), Keys::default(), &Metrics::new());
/// // `spy`: a `SessionBackend` that notes what it is given, then defers to a `MemoryStore`.
/// let session = Session::detached(TenantId::new("acme")?, store.clone());
/// session.insert("theme", "dark").await?;
/// session.save().await?;
/// assert_eq!(spy.seen("outcome="), ["Written"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Written.
    Written,
    /// The session no longer exists (expired or destroyed meanwhile); nothing written.
    Gone,
    /// The target id exists already: the caller retries with a fresh one.
    Collision,
}

/// This process's wall clock, ms since the Unix epoch (the Redis store's reads and plain
/// updates).
#[cfg(feature = "redis")]
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
