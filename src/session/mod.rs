//! Server-side sessions behind a signed cookie, bound to the tenant.
//!
//! * [`SessionLayer`] reads the session cookie (verified against `SESSION_SECRET` and any
//!   `SESSION_SECRET_PREVIOUS`), puts a lazy [`Session`] handle in the request extensions
//!   and, after the handler, saves what changed and sets or clears the cookie.
//! * [`Session`] is what handlers use (an axum extractor): typed `get` / `insert` /
//!   `remove`, `clear`, `cycle_id` (call it on login), `destroy`, and the user id.
//! * [`SessionStore`] keeps sessions in the [`Backend`](crate::backend::Backend): one Redis
//!   hash per session under `tg:session:{tenant}:<id>` (one field per value, so concurrent
//!   requests changing different values never lose each other's updates) and a per-user
//!   index `tg:session-index:{tenant}:<user>` for "log out everywhere".
//!
//! Guarantees:
//!
//! * **Lazy.** Nothing is read unless the handler touches the session (one round trip: one
//!   `HGETALL` on Redis); nothing is written unless something changed, and never after a
//!   5xx. A session in use gets its inactivity TTL renewed at most once per
//!   `SESSION_RENEW_INTERVAL` (by a read, never rewriting its data, or by a write), so a
//!   busy session costs no TTL command per request.
//! * **Expiry.** Inactivity (`SESSION_TTL`) and absolute (`SESSION_MAX_LIFETIME`, counted
//!   from creation): every TTL written is capped by the absolute deadline, on the Redis
//!   clock.
//! * **Ids.** 192 bits from the OS RNG, created with a collision check (the create and
//!   rename steps refuse an id that exists and retry). A client-supplied id is never adopted.
//! * **Tenant binding.** The store key contains the tenant, so a valid cookie issued on
//!   tenant A finds no session on tenant B.
//! * **Bad input** — missing, tampered, truncated, wrongly signed, oversized or non-UTF-8
//!   cookies — means "no session" (and the bad cookie is cleared), never an error response.
//!
//! ```
//! use axum::{routing::{get, post}, Router};
//! use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
//! use tenant_guard::session::{Session, SessionLayer, SessionStore};
//! use tenant_guard::tenant::TenantLayer;
//!
//! async fn login(session: Session) -> Result<&'static str, tenant_guard::session::SessionError> {
//!     session.cycle_id().await?; // new id on privilege change
//!     session.set_user_id(Some("u-42")).await?;
//!     session.insert("theme", &"dark").await?;
//!     Ok("welcome")
//! }
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # let _g = rt.enter();
//! let config = Config::from_vars([("TG_DEFAULT_TENANT", "acme")]).unwrap();
//! let metrics = Metrics::new();
//! let backend = Backend::from_config(&config, &metrics).unwrap();
//! let store = SessionStore::from_config(&config, backend, &metrics);
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .layer(SessionLayer::from_config(&config.session, store))
//!     .layer(TenantLayer::from_config(&config.tenant));
//! ```

mod config;
mod cookie;
mod handle;
mod layer;
mod quick;
mod service;
mod store;

use std::fmt;

use base64::Engine as _;
use http::StatusCode;

pub use self::cookie::CookieCodec;
pub use config::{SameSite, SessionConfig, SessionOutage};
pub use handle::Session;
pub use layer::SessionLayer;
pub use service::SessionService;
pub use store::{
    Lifetimes, SaveOutcome, SessionBackend, SessionInfo, SessionKeys, SessionRecord, SessionStore,
    SessionWrite, StoreFuture, UserChange, UserIndex, WriteMode,
};

use crate::backend::BackendError;
use crate::problem::Problem;

/// Random bytes in a session id (192 bits).
const ID_BYTES: usize = 24;
/// Characters of an encoded session id (base64url without padding).
const ID_LEN: usize = 32;

/// A session id: 192 random bits from the OS, base64url-encoded. `Debug` and `Display`
/// show only a short prefix: the full id is a bearer credential.
///
/// ```
/// let id = tenant_guard::session::SessionId::generate();
/// assert_eq!(id.as_str().len(), 32);
/// assert_ne!(id, tenant_guard::session::SessionId::generate());
/// assert!(tenant_guard::session::SessionId::parse(id.as_str()).is_some());
/// assert!(tenant_guard::session::SessionId::parse("short").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id from the operating system's RNG.
    ///
    /// # Panics
    ///
    /// If the OS has no entropy source at all (`getrandom` fails), which no supported
    /// platform does once booted; a session id must never come from a weaker source.
    ///
    /// ```
    /// use tenant_guard::session::SessionId;
    /// let (a, b) = (SessionId::generate(), SessionId::generate());
    /// assert_ne!(a, b);
    /// assert_eq!(a.as_str().len(), 32);
    /// ```
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts a string of the exact id form (32 characters of `A-Z a-z 0-9 - _`).
    ///
    /// ```
    /// use tenant_guard::session::SessionId;
    /// let id = SessionId::generate();
    /// assert_eq!(SessionId::parse(id.as_str()), Some(id));
    /// assert_eq!(SessionId::parse("too-short"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(s.to_string()))
    }

    /// The full id.
    ///
    /// ```
    /// let id = tenant_guard::session::SessionId::parse("abcdefghijklmnopqrstuvwxyz012345").unwrap();
    /// assert_eq!(id.as_str(), "abcdefghijklmnopqrstuvwxyz012345");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.0[..6])
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.0[..6])
    }
}

/// Errors of session operations.
///
/// As an axum response: `Unavailable` is 503, `TooLarge` 413, the others 500.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
/// use tenant_guard::session::{Session, SessionError, SessionStore};
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
/// let metrics = Metrics::new();
/// let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
/// let session = Session::detached(TenantId::new("acme")?, store);
/// session.insert("count", &3u32).await?;
/// // A stored value read as a type it is not:
/// match session.get::<String>("count").await {
///     Err(SessionError::Serde { key, .. }) => assert_eq!(key, "count"),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store is unusable and `SESSION_OUTAGE=closed`.
    #[error("session store unavailable: {0}")]
    Unavailable(#[source] BackendError),
    /// The store refused the operation.
    #[error("session store error: {0}")]
    Store(#[source] BackendError),
    /// The session data would exceed `SESSION_MAX_BYTES`.
    #[error(
        "session data of {size} bytes would exceed the limit of {limit} bytes (SESSION_MAX_BYTES)"
    )]
    TooLarge {
        /// Bytes the session would hold.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A value could not be serialized, or a stored value does not decode as the type asked for.
    #[error("session value `{key}`: {source}")]
    Serde {
        /// The session key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// No free session id after several attempts (practically impossible with 192 bits:
    /// it means the store answers oddly).
    #[error("could not allocate a unique session id")]
    IdCollision,
}

impl SessionError {
    /// The problem+json response for this error.
    ///
    /// ```
    /// use tenant_guard::session::SessionError;
    /// let p = SessionError::TooLarge { size: 70_000, limit: 65_536 }.to_problem();
    /// assert_eq!(p.status().as_u16(), 413);
    /// ```
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Unavailable(_) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Session store unavailable")
                    .detail("sessions cannot be read or saved right now; retry shortly")
            }
            Self::TooLarge { size, limit } => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "Session data too large")
                    .detail(self.to_string())
                    .with("size", *size)
                    .with("limit", *limit)
            }
            Self::Store(_) | Self::Serde { .. } | Self::IdCollision => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Session error")
                    .detail(self.to_string())
            }
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for SessionError {
    fn into_response(self) -> axum::response::Response {
        if matches!(self, Self::Store(_) | Self::IdCollision) {
            tracing::error!(error = %self, "session error");
        }
        self.to_problem().into_response()
    }
}
