//! Who is calling, as the layers tell each other through request extensions: the
//! authenticated [`UserId`], the [`Identity`] a user-scoped limit counts against, and the
//! [`SessionCredential`] a verified session cookie carried. They live here, beside
//! [`TenantId`](super::TenantId), so that layers depend on `tenant` and not on each other.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// Tenant used when no [`TenantLayer`](super::TenantLayer) ran (single-tenant apps).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::get, Router};
/// use tower::ServiceExt;
/// use tenant_guard::{backend::{Backend, MemoryStore}, config::SessionConfig, keys::Keys, metrics::Metrics};
/// use tenant_guard::session::{Session, SessionLayer, SessionStore};
/// use tenant_guard::tenant::{TenantId, GLOBAL_TENANT};
///
/// let memory = MemoryStore::new(Default::default());
/// let config = SessionConfig::default();
/// let store = SessionStore::new(Backend::Memory(memory.clone()), &config, Keys::default(), &Metrics::new());
/// // No `TenantLayer` outside: the session is kept under the tenant `global`.
/// let app: Router = Router::new()
///     .route("/", get(|s: Session| async move { s.insert("seen", &true).await.map(|()| "ok") }))
///     .layer(SessionLayer::from_config(&config, store));
/// app.oneshot(http::Request::get("/").body(axum::body::Body::empty())?).await?;
/// let global = TenantId::new(GLOBAL_TENANT)?;
/// assert_eq!(memory.delete_matching(&Keys::default().tenant_pattern(&global)), 1);
/// # Ok(()) }
/// ```
pub const GLOBAL_TENANT: &str = "global";

/// An authenticated user id, put into request extensions by the session layer or by the
/// application's auth middleware; rate limits then count per user instead of per IP.
///
/// ```
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(tenant_guard::tenant::UserId::new("u-42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Wraps a user id (any string: key components are escaped).
    ///
    /// ```
    /// use tenant_guard::tenant::UserId;
    /// let id = UserId::new(String::from("u-42"));
    /// assert_eq!(id, UserId::new("u-42"));
    /// // Any string: escaped where it becomes part of a key.
    /// assert_eq!(UserId::new("alice@example.com").as_str(), "alice@example.com");
    /// ```
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The id.
    ///
    /// ```
    /// use tenant_guard::tenant::UserId;
    /// let mut req = http::Request::new(());
    /// req.extensions_mut().insert(UserId::new("u-42"));
    /// assert_eq!(req.extensions().get::<UserId>().map(UserId::as_str), Some("u-42"));
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, shared (no copy).
    pub(crate) fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

/// The identity a user-scoped rule counts against.
///
/// ```
/// use tenant_guard::tenant::Identity;
///
/// let user = Identity::User("u-42".into());
/// let ip = Identity::from_ip("192.0.2.7".parse().unwrap());
/// assert_eq!(user.to_string(), "user:u-42");
/// assert_eq!(ip.to_string(), "ip:192.0.2.7");
/// assert_eq!(Identity::Unknown.to_string(), "ip:unknown");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An authenticated user.
    User(Arc<str>),
    /// A client address (IPv4, or an IPv6 /64 written `2001:db8::/64`).
    Ip(Arc<str>),
    /// No user and no known address (no peer address available): all such requests share
    /// one counter.
    Unknown,
    /// A trusted proxy sent a forwarding header that names no usable client address: all
    /// such requests share one counter (`ip:invalid-forwarding`).
    InvalidForwarding,
}

impl Identity {
    /// `(kind, value)` as written in keys.
    ///
    /// ```
    /// use tenant_guard::tenant::Identity;
    /// assert_eq!(Identity::User("u-42".into()).parts(), ("user", "u-42"));
    /// assert_eq!(Identity::InvalidForwarding.parts(), ("ip", "invalid-forwarding"));
    /// ```
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::User(u) => ("user", u),
            Self::Ip(ip) => ("ip", ip),
            Self::Unknown => ("ip", "unknown"),
            Self::InvalidForwarding => ("ip", "invalid-forwarding"),
        }
    }

    /// The identity of an address, IPv6 grouped by /64.
    ///
    /// ```
    /// use tenant_guard::tenant::Identity;
    /// let a = Identity::from_ip("2001:db8:1:2:aaaa::1".parse().unwrap());
    /// let b = Identity::from_ip("2001:db8:1:2:bbbb::2".parse().unwrap());
    /// assert_eq!(a, b);
    /// assert_eq!(a.parts(), ("ip", "2001:db8:1:2::/64"));
    /// assert_eq!(Identity::from_ip("::ffff:10.1.2.3".parse().unwrap()).parts(), ("ip", "10.1.2.3"));
    /// ```
    pub fn from_ip(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => Self::Ip(Arc::from(v4.to_string())),
            IpAddr::V6(v6) => {
                let seg = v6.segments();
                let net = Ipv6Addr::new(seg[0], seg[1], seg[2], seg[3], 0, 0, 0, 0);
                Self::Ip(Arc::from(format!("{net}/64")))
            }
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (k, v) = self.parts();
        write!(f, "{k}:{v}")
    }
}

/// What the session layer found in a request's cookies: the verified session id, or none
/// (an invalid cookie, another tenant's, or only other cookies). The session layer puts it
/// into the extensions of every request that carries cookies; its presence says the
/// cookies were looked at by the session layer. The id is a credential (never
/// logged): layers that must tell callers apart, such as the cache's
/// [`CacheScope`](crate::cache::CacheScope), read it.
///
/// ```
/// use tenant_guard::tenant::SessionCredential;
/// let c = SessionCredential::new("Zm9vYmFy");
/// assert_eq!(c.id(), Some("Zm9vYmFy"));
/// assert!(!format!("{c:?}").contains("Zm9v"));
/// assert_eq!(SessionCredential::none().id(), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCredential(Option<Arc<str>>);

impl SessionCredential {
    /// A verified session id.
    ///
    /// ```
    /// use tenant_guard::tenant::SessionCredential;
    /// let c = SessionCredential::new("Zm9vYmFyYmF6");
    /// assert_eq!(c.id(), Some("Zm9vYmFyYmF6"));
    /// assert_eq!(format!("{c:?}"), "SessionCredential([redacted])");
    /// ```
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Some(Arc::from(id.as_ref())))
    }

    /// No usable session cookie.
    ///
    /// ```
    /// use tenant_guard::tenant::SessionCredential;
    /// // Cookies were looked at, none carried a usable session.
    /// let c = SessionCredential::none();
    /// assert_eq!(c.id(), None);
    /// assert_eq!(format!("{c:?}"), "SessionCredential(None)");
    /// ```
    pub fn none() -> Self {
        Self(None)
    }

    /// The session id, if the cookie carried a valid one.
    ///
    /// ```
    /// use tenant_guard::tenant::SessionCredential;
    /// let mut req = http::Request::new(());
    /// req.extensions_mut().insert(SessionCredential::new("Zm9vYmFyYmF6"));
    /// let id = req.extensions().get::<SessionCredential>().and_then(SessionCredential::id);
    /// assert_eq!(id, Some("Zm9vYmFyYmF6"));
    /// ```
    pub fn id(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Debug for SessionCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "SessionCredential([redacted])",
            None => "SessionCredential(None)",
        })
    }
}

/// Who a request is, for the layers inside the rate-limit layer (concurrency caps, token
/// budgets): the [`Identity`] the rate-limit layer resolved, else the session's
/// [`UserId`], else the client address.
#[cfg(feature = "axum")]
pub(crate) fn of_request<B>(req: &http::Request<B>) -> Identity {
    let ext = req.extensions();
    if let Some(i) = ext.get::<Identity>() {
        return i.clone();
    }
    if let Some(u) = ext.get::<UserId>() {
        return Identity::User(u.as_str().into());
    }
    let peer = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| ext.get::<std::net::SocketAddr>().copied());
    peer.map_or(Identity::Unknown, |p| Identity::from_ip(p.ip()))
}
