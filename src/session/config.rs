//! Settings of sessions and their cookie: the type [`crate::config::Config`] assembles from the environment
//! and code can build directly.

use std::time::Duration;

use crate::secret::Secret;

/// `SameSite` attribute of the session cookie.
///
/// ```
/// use tenant_guard::config::{Config, SameSite, SessionConfig};
/// assert_eq!("strict".parse::<SameSite>().unwrap(), SameSite::Strict);
/// assert_eq!(SessionConfig::default().cookie_same_site, SameSite::Lax);
/// let c = Config::from_vars([("SESSION_COOKIE_SAMESITE", "Strict")]).unwrap();
/// assert_eq!(c.session.cookie_same_site, SameSite::Strict);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::Display)]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
pub enum SameSite {
    /// `SameSite=Strict`: never sent on cross-site requests.
    Strict,
    /// `SameSite=Lax` (the default): sent on top-level navigations, not on cross-site
    /// subrequests or POSTs.
    Lax,
    /// `SameSite=None`: sent everywhere (requires `Secure`).
    None,
}

/// What the session layer does while Redis is unusable.
///
/// ```
/// use tenant_guard::config::{Config, SessionOutage};
/// assert_eq!(Config::default().session.outage, SessionOutage::Closed);
/// let c = Config::from_vars([("SESSION_OUTAGE", "local")]).unwrap();
/// assert_eq!(c.session.outage, SessionOutage::Local);
/// assert_eq!(SessionOutage::Local.to_string(), "local");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::Display)]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
pub enum SessionOutage {
    /// Requests that touch the session get `503` (the default): no session is silently
    /// lost or forked. Requests that do not touch it are unaffected.
    Closed,
    /// Sessions are served from a per-process memory store until Redis is back. Users are
    /// logged out when the outage starts and again when it ends (the local sessions are
    /// not copied to Redis); `tenant_guard_session_events_total{event="fallback"}` counts it.
    Local,
}

/// Session settings.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::config::{Config, SessionConfig};
///
/// let c = Config::from_vars([("SESSION_TTL", "2h"), ("SESSION_MAX_LIFETIME", "1d")]).unwrap();
/// assert_eq!((c.session.ttl, c.session.max_lifetime), (Duration::from_secs(7200), Duration::from_secs(86400)));
/// assert!(!format!("{:?}", c.session).contains("SESSION_SECRET"));
/// // In code: start from the defaults.
/// let mut s = SessionConfig::default();
/// s.cookie_name = "app_session".into();
/// assert!(s.cookie_secure && s.cookie_host_prefix);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Inactivity expiry (`SESSION_TTL`, default 24 h).
    pub ttl: Duration,
    /// Absolute expiry counted from creation, however active the session is
    /// (`SESSION_MAX_LIFETIME`, default 7 days).
    pub max_lifetime: Duration,
    /// A session in use has its inactivity TTL renewed at most once per this interval
    /// (`SESSION_RENEW_INTERVAL`, default 60 s): a read renews it (no data rewritten) when
    /// the TTL has run down by this much, a field write within the interval leaves it as
    /// it is (on Redis: no TTL command but the one that expires a fragment of a session
    /// destroyed meanwhile). Taken as at most half of `ttl`, so that a session in use
    /// never expires.
    pub renew_interval: Duration,
    /// Cookie signing secret (`SESSION_SECRET`, at least 32 bytes); `None` means a random
    /// per-process secret, so sessions do not survive a restart.
    pub secret: Option<Secret>,
    /// Earlier secrets that still verify cookies but never sign
    /// (`SESSION_SECRET_PREVIOUS`, comma-separated): rotate by moving the old secret here.
    pub previous_secrets: Vec<Secret>,
    /// Cookie name (`SESSION_COOKIE_NAME`, default `sid`: no framework fingerprint).
    pub cookie_name: String,
    /// `Secure` attribute (`SESSION_COOKIE_SECURE`, default true; turn it off only for
    /// local plain-http development).
    pub cookie_secure: bool,
    /// `SameSite` attribute (`SESSION_COOKIE_SAMESITE`, default `lax`).
    pub cookie_same_site: SameSite,
    /// `Domain` attribute (`SESSION_COOKIE_DOMAIN`, default none: host-only).
    pub cookie_domain: Option<String>,
    /// Prefix the name with `__Host-` (`SESSION_COOKIE_HOST_PREFIX`, default true when the
    /// cookie is `Secure` with no `Domain`, which the prefix needs; ignored otherwise).
    pub cookie_host_prefix: bool,
    /// Encrypt the cookie value instead of only signing it (`SESSION_COOKIE_ENCRYPT`).
    pub cookie_encrypt: bool,
    /// Most bytes of session data (names plus JSON values) (`SESSION_MAX_BYTES`, default
    /// 64 KiB); inserts beyond it are refused with an error.
    pub max_bytes: u64,
    /// Behaviour while Redis is unusable (`SESSION_OUTAGE`, default `closed`).
    pub outage: SessionOutage,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
            max_lifetime: Duration::from_secs(7 * 24 * 3600),
            renew_interval: Duration::from_secs(60),
            secret: None,
            previous_secrets: Vec::new(),
            cookie_name: "sid".into(),
            cookie_secure: true,
            cookie_same_site: SameSite::Lax,
            cookie_domain: None,
            cookie_host_prefix: true,
            cookie_encrypt: false,
            max_bytes: 64 * 1024,
            outage: SessionOutage::Closed,
        }
    }
}
