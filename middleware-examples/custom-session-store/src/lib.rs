//! # Example: sessions in a store of your own
//!
//! tower-sessions users keep sessions in SQL tables; here a [`SessionBackend`] does the
//! same. [`TableStore`] holds two tables, as a SQL schema would:
//!
//! ```text
//! sessions   (key TEXT PRIMARY KEY, created_ms, expires_ms, user_id NULL, fields JSON)
//! user_index (key TEXT, session_id TEXT, expires_ms, PRIMARY KEY (key, session_id))
//! ```
//!
//! Each method runs as one transaction (here: under one mutex), which is all the contract
//! asks: [`SessionBackend`] documents it, and the tests in `tests/` run this store through
//! the session layer — login, concurrent writes of different fields, id rotation, expiry,
//! "log out everywhere" — over HTTP. Swap the `Mutex<Tables>` for a connection pool and
//! each method body for its SQL statement, and nothing else in the app changes.
//!
//! Run it (cookies are `Secure` by default; plain-http curl needs them relaxed):
//!
//! ```text
//! SESSION_COOKIE_SECURE=false cargo run -p example-custom-session-store
//! curl -si -c jar -d alice localhost:3006/login
//! curl -s  -b jar localhost:3006/me
//! curl -s  -b jar -X POST localhost:3006/logout-everywhere
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use tenant_guard::backend::BackendError;
use tenant_guard::keys::{Keys, RedisKey};
use tenant_guard::metrics::Metrics;
use tenant_guard::session::{
    Lifetimes, SaveOutcome, Session, SessionBackend, SessionConfig, SessionError, SessionInfo,
    SessionKeys, SessionLayer, SessionRecord, SessionStore, SessionWrite, StoreFuture, UserChange,
    UserIndex, WriteMode,
};

/// Milliseconds since the Unix epoch; replaceable so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// One row of `sessions`.
#[derive(Debug, Clone)]
struct Row {
    created_ms: u64,
    expires_ms: u64,
    user: Option<String>,
    fields: HashMap<String, String>,
}

/// Both tables.
#[derive(Debug, Default)]
struct Tables {
    sessions: HashMap<String, Row>,
    /// Index key -> session id -> expiry.
    user_index: HashMap<String, BTreeMap<String, u64>>,
}

impl Tables {
    /// The live row at `key`; an expired one is deleted on the way (as `DELETE ... WHERE
    /// expires_ms <= now` would).
    fn live(&mut self, key: &str, now: u64) -> Option<&mut Row> {
        if self.sessions.get(key).is_some_and(|r| r.expires_ms <= now) {
            self.sessions.remove(key);
        }
        self.sessions.get_mut(key)
    }

    fn unindex(&mut self, index: Option<&RedisKey>, id: &str) {
        if let Some(ix) = index {
            if let Some(ids) = self.user_index.get_mut(ix.as_str()) {
                ids.remove(id);
            }
        }
    }
}

/// Sessions in two tables behind one lock: the shape of a SQL store.
#[derive(Clone)]
pub struct TableStore {
    tables: Arc<Mutex<Tables>>,
    clock: Clock,
}

impl TableStore {
    /// An empty store on `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            tables: Arc::default(),
            clock,
        }
    }

    /// Rows in `sessions`, expired ones included (what a `SELECT count(*)` would say).
    pub fn rows(&self) -> usize {
        self.lock().sessions.len()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves whole rows: keep serving.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load_now(&self, key: &RedisKey, lifetimes: Lifetimes) -> Option<SessionRecord> {
        let now = (self.clock)();
        let mut t = self.lock();
        let row = t.live(key.as_str(), now)?.clone();
        if now >= row.created_ms.saturating_add(ms(lifetimes.max)) {
            t.sessions.remove(key.as_str());
            return None;
        }
        let mut record = SessionRecord::new(now, row.created_ms);
        record.pttl_ms = Some(row.expires_ms - now);
        record.user = row.user;
        record.fields = row.fields;
        Some(record)
    }

    fn save_now(&self, keys: &SessionKeys, w: &SessionWrite<'_>, l: Lifetimes) -> SaveOutcome {
        let now = (self.clock)();
        let mut t = self.lock();
        let key = keys.session.as_str();
        if w.mode == WriteMode::Destroy {
            t.sessions.remove(key);
            t.unindex(keys.index_before.as_ref(), w.id.as_str());
            return SaveOutcome::Written;
        }
        let mut old_id = w.id.as_str();
        let mut row = match (&keys.rename_from, w.rename_from) {
            (Some(from), Some(from_id)) => {
                let Some(row) = t.live(from.as_str(), now).cloned() else {
                    return SaveOutcome::Gone;
                };
                if t.live(key, now).is_some() {
                    return SaveOutcome::Collision;
                }
                t.sessions.remove(from.as_str());
                old_id = from_id.as_str();
                row
            }
            _ if w.mode == WriteMode::Create => {
                if t.live(key, now).is_some() {
                    return SaveOutcome::Collision;
                }
                Row {
                    created_ms: now,
                    expires_ms: now,
                    user: None,
                    fields: HashMap::new(),
                }
            }
            _ => match t.live(key, now) {
                Some(row) => row.clone(),
                None => return SaveOutcome::Gone,
            },
        };
        let deadline = row.created_ms.saturating_add(ms(l.max));
        row.expires_ms = now.saturating_add(ms(l.idle)).min(deadline);
        t.unindex(keys.index_before.as_ref(), old_id);
        if row.expires_ms <= now {
            t.sessions.remove(key);
            return SaveOutcome::Gone;
        }
        if w.clear {
            row.fields.clear();
        }
        for (k, v) in &w.set {
            row.fields.insert((*k).to_owned(), (*v).to_owned());
        }
        for k in &w.del {
            row.fields.remove(*k);
        }
        match w.user {
            UserChange::Keep => {}
            UserChange::Set(u) => row.user = Some(u.to_owned()),
            UserChange::Unset => row.user = None,
        }
        if let Some(ix) = &keys.index_after {
            let ids = t.user_index.entry(ix.as_str().to_owned()).or_default();
            ids.insert(w.id.as_str().to_owned(), row.expires_ms);
            ids.retain(|_, at| *at > now);
        }
        t.sessions.insert(key.to_owned(), row);
        SaveOutcome::Written
    }

    fn user_sessions_now(&self, index: &UserIndex<'_>, revoke: bool) -> (Vec<SessionInfo>, u64) {
        let now = (self.clock)();
        let mut t = self.lock();
        let ids = t.user_index.remove(index.key.as_str()).unwrap_or_default();
        let (mut listed, mut deleted, mut kept) = (Vec::new(), 0, BTreeMap::new());
        for (id, at) in ids {
            let Some(sid) = tenant_guard::session::SessionId::parse(&id) else {
                continue;
            };
            let key = index.session_key(&sid);
            let Some(row) = t.live(key.as_str(), now) else {
                continue;
            };
            let left = Duration::from_millis(row.expires_ms - now);
            if revoke {
                t.sessions.remove(key.as_str());
                deleted += 1;
            } else {
                listed.push(SessionInfo::new(sid, left));
                kept.insert(id, at);
            }
        }
        if !kept.is_empty() {
            t.user_index.insert(index.key.as_str().to_owned(), kept);
        }
        (listed, deleted)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ready<'a, T: Send + 'a>(v: T) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(Ok::<_, BackendError>(v)))
}

impl SessionBackend for TableStore {
    fn name(&self) -> &'static str {
        "tables"
    }

    fn load<'a>(
        &'a self,
        key: &'a RedisKey,
        lifetimes: Lifetimes,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        ready(self.load_now(key, lifetimes))
    }

    fn save<'a>(
        &'a self,
        keys: &'a SessionKeys,
        write: &'a SessionWrite<'a>,
        lifetimes: Lifetimes,
    ) -> StoreFuture<'a, SaveOutcome> {
        ready(self.save_now(keys, write, lifetimes))
    }

    fn user_sessions<'a>(
        &'a self,
        index: &'a UserIndex<'a>,
        revoke: bool,
    ) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
        ready(self.user_sessions_now(index, revoke))
    }

    fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
        ready(self.lock().sessions.remove(key.as_str()).is_some())
    }
}

/// The app on `store` with session settings `config`.
pub fn app_with(store: TableStore, config: &SessionConfig) -> Router {
    let sessions = SessionStore::with_backend(store, config, Keys::default(), &Metrics::new());
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/note", post(note))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(SessionLayer::from_config(config, sessions.clone()))
        .layer(Extension(sessions))
}

/// The app on a fresh [`TableStore`] with the session settings of the environment
/// (`SESSION_*`).
pub fn app() -> Router {
    let vars = std::env::vars().filter(|(k, _)| k.starts_with("SESSION_"));
    let config = tenant_guard::config::Config::from_vars(vars).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    app_with(TableStore::new(system_clock()), &config.session)
}

/// `POST /login` with the user name as the body.
async fn login(session: Session, user: String) -> Result<String, SessionError> {
    if user.is_empty() || user.len() > 64 || user.contains(char::is_control) {
        return Ok("invalid user".into());
    }
    session.cycle_id().await?;
    session.set_user_id(Some(&user)).await?;
    Ok(user)
}

/// `GET /me`: the user and the session's notes.
async fn me(session: Session) -> Result<String, SessionError> {
    let user = session.user_id().await?.unwrap_or_default();
    let mut keys = session.keys().await?;
    keys.sort();
    let mut notes = Vec::new();
    for k in keys {
        notes.push(format!(
            "{k}={}",
            session.get::<String>(&k).await?.unwrap_or_default()
        ));
    }
    Ok(format!("{user} {}", notes.join(",")))
}

/// `POST /note?k=v`: stores one field.
async fn note(session: Session, uri: axum::http::Uri) -> Result<StatusCode, SessionError> {
    let q = uri.query().unwrap_or_default();
    let (k, v) = q.split_once('=').unwrap_or((q, ""));
    session.insert(k, v).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /logout-everywhere`: revokes every session of the user.
async fn logout_everywhere(
    session: Session,
    Extension(store): Extension<SessionStore>,
) -> Result<String, SessionError> {
    let Some(user) = session.user_id().await? else {
        return Ok("0".into());
    };
    let n = store.revoke_user_sessions(session.tenant(), &user).await?;
    Ok(n.to_string())
}
