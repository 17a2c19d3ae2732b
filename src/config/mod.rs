//! Typed configuration, read from environment variables or built in code.
//!
//! [`Config::from_env`] is the only place in the crate that reads the process environment.
//! [`Config::from_vars`] takes any key/value iterator (tests, `.env` loaders, secrets
//! managers). Both validate every variable and report **all** problems at once: each names
//! the variable, what is wrong with its value, and the accepted form. Nothing falls back to a
//! default after a parse failure.
//!
//! Empty values (`REDIS_URL=`) count as unset, as `.env` files commonly write them.
//! The full list of variables with their defaults is in `.env.example` and the README.
//!
//! ```
//! use std::time::Duration;
//! use tenant_guard::config::{Config, RedisMode};
//!
//! let cfg = Config::from_vars([
//!     ("REDIS_URL", "redis://:pw@127.0.0.1:6379/0"),
//!     ("RATE_LIMIT_WINDOW", "15m"),
//!     ("CACHE_TTL_REPORTS", "2h"),
//! ])
//! .unwrap();
//! assert!(matches!(cfg.redis.mode, RedisMode::Single(_)));
//! assert_eq!(cfg.rate_limit.window, Duration::from_secs(900));
//! assert_eq!(cfg.cache.ttl_for("reports"), Duration::from_secs(7200));
//! assert!(!format!("{cfg:?}").contains("pw@"));
//!
//! let err = Config::from_vars([("RATE_LIMIT_WINDOW", "abc"), ("REDIS_PORT", "99999")])
//!     .unwrap_err();
//! assert_eq!(err.problems().len(), 2);
//! ```

mod parse;
mod secret;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

pub(crate) use parse::duration as parse_duration;
pub use secret::{RedisUrl, Secret};

use crate::keys::KeyPrefix;
use crate::ratelimit::{rules as rl, Algorithm, OutageMode, Policy, Quota, Rule, Scope};
use crate::tenant::TenantId;
use parse::{fmt_duration, BOOL_FORM, BYTES_FORM, DURATION_FORM};

/// Minimum length of `SESSION_SECRET`, in bytes.
pub const MIN_SESSION_SECRET_LEN: usize = 32;

/// The whole configuration of tenant-guard.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Config {
    /// Redis connection settings.
    pub redis: RedisConfig,
    /// Prefix of every key written (`TG_KEY_PREFIX`, default `tg`).
    pub key_prefix: KeyPrefix,
    /// Limits of the in-memory backend.
    pub memory: MemoryConfig,
    /// Circuit breaker in front of Redis.
    pub breaker: BreakerConfig,
    /// How requests are mapped to tenants.
    pub tenant: TenantConfig,
    /// Session settings.
    pub session: SessionConfig,
    /// Cache TTLs per category.
    pub cache: CacheConfig,
    /// Default rate limit.
    pub rate_limit: RateLimitConfig,
    /// Access to the ops and admin routes.
    pub ops: OpsConfig,
    warnings: Vec<String>,
}

/// Who may read the ops routes and use the demo's admin route.
///
/// ```
/// let cfg = tenant_guard::config::Config::from_vars([
///     ("TG_OPS_TOKEN", "an-ops-token-of-at-least-32-bytes!!"),
/// ]).unwrap();
/// assert!(cfg.ops.token.is_some());
/// assert!(cfg.ops.admin_token.is_none()); // the admin route is refused
/// assert!(!format!("{cfg:?}").contains("an-ops-token"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OpsConfig {
    /// Bearer token required by `/metrics` and `/cache/status` (`TG_OPS_TOKEN`; unset: open,
    /// for a port only the monitoring network reaches). `/health` and `/health/ready` stay
    /// open for probes.
    pub token: Option<Secret>,
    /// Bearer token of the demo app's admin route, `DELETE /api/cache` (`TG_ADMIN_TOKEN`;
    /// unset: the route is refused).
    pub admin_token: Option<Secret>,
}

/// Where Redis is, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// No Redis: everything runs on the in-memory backend.
    Disabled,
    /// One Redis server.
    Single(RedisUrl),
    /// A Redis Cluster, reached through these seed nodes.
    Cluster(Vec<RedisUrl>),
}

/// Redis connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Single node, cluster, or disabled.
    pub mode: RedisMode,
    /// Time allowed to open a TCP connection (`REDIS_CONNECT_TIMEOUT`, default 5 s).
    pub connect_timeout: Duration,
    /// Deadline of every command (`REDIS_COMMAND_TIMEOUT`, default 1 s).
    pub command_timeout: Duration,
    /// Reconnect attempts per outage before waiting for the next command
    /// (`REDIS_MAX_RETRIES`, default 3).
    pub max_retries: u32,
    /// CA certificate(s) that sign the server's TLS certificate, when it is not in the
    /// system trust store (`REDIS_TLS_CA_FILE`, default none: the system roots).
    pub tls_ca: Option<TlsCa>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            mode: RedisMode::Disabled,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(1),
            max_retries: 3,
            tls_ca: None,
        }
    }
}

/// Largest CA file read from `REDIS_TLS_CA_FILE` (a bundle of a few hundred roots fits).
const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// PEM CA certificates read from `REDIS_TLS_CA_FILE`: the roots a `rediss://` connection
/// trusts instead of the system's.
///
/// ```
/// use tenant_guard::config::TlsCa;
///
/// let pem = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n";
/// let ca = TlsCa::from_pem("ca.pem", pem.as_bytes().to_vec()).unwrap();
/// assert_eq!(ca.path(), std::path::Path::new("ca.pem"));
/// assert!(TlsCa::from_pem("key.pem", b"not a certificate".to_vec()).is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCa {
    path: std::path::PathBuf,
    pem: Vec<u8>,
}

impl TlsCa {
    /// Reads a PEM file of one or more CA certificates (at most 1 MiB).
    ///
    /// ```
    /// let err = tenant_guard::config::TlsCa::read("/nonexistent/ca.pem").unwrap_err();
    /// assert!(err.contains("cannot read"));
    /// ```
    pub fn read(path: impl Into<std::path::PathBuf>) -> Result<Self, String> {
        use std::io::Read;
        let path = path.into();
        // Checked before opening: opening a FIFO would wait for a writer, and a device
        // (`/dev/zero`) would never end.
        let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read the file ({e})"))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let file = std::fs::File::open(&path).map_err(|e| format!("cannot read the file ({e})"))?;
        let mut pem = Vec::new();
        file.take(MAX_CA_FILE_BYTES + 1)
            .read_to_end(&mut pem)
            .map_err(|e| format!("cannot read the file ({e})"))?;
        if pem.len() as u64 > MAX_CA_FILE_BYTES {
            return Err(format!("larger than {MAX_CA_FILE_BYTES} bytes"));
        }
        Self::from_pem(path, pem)
    }

    /// Wraps PEM text already in memory; `path` only names it in messages.
    pub fn from_pem(path: impl Into<std::path::PathBuf>, pem: Vec<u8>) -> Result<Self, String> {
        let has_cert = pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----");
        if !has_cert {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
        }
        Ok(Self {
            path: path.into(),
            pem,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The PEM bytes.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

impl fmt::Debug for TlsCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCa")
            .field("path", &self.path)
            .field("bytes", &self.pem.len())
            .finish()
    }
}

/// Bounds of the in-memory backend.
///
/// Each kind of state has its own bound, so a flood of one kind cannot push out another:
/// cache entries are evicted least recently used first; sessions and rate-limit counters
/// that are still live are never evicted (a new session is refused, a new identity shares
/// its rule's overflow counter). Expired state of any kind may always go.
///
/// ```
/// use std::num::NonZeroU64;
/// use tenant_guard::config::{Config, MemoryConfig};
///
/// // From the environment, the per-kind bounds default to TG_MEMORY_MAX_ENTRIES.
/// let c = Config::from_vars([("TG_MEMORY_MAX_ENTRIES", "5000"), ("TG_MEMORY_MAX_SESSIONS", "800")]).unwrap();
/// assert_eq!(c.memory.max_entries.get(), 5000);
/// assert_eq!(c.memory.max_sessions.get(), 800);
/// assert_eq!(c.memory.max_counters.get(), 5000);
///
/// // In code, start from the defaults and change fields.
/// let mut m = MemoryConfig::default();
/// m.max_sessions = NonZeroU64::new(10_000).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Most cache entries kept: cached queries, AI responses, named cache entries and
    /// their fill locks; the least recently used go first (`TG_MEMORY_MAX_ENTRIES`,
    /// default 100 000; also the default of the two bounds below when read from the
    /// environment).
    pub max_entries: NonZeroU64,
    /// Most live sessions kept (`TG_MEMORY_MAX_SESSIONS`, default `TG_MEMORY_MAX_ENTRIES`).
    /// Per-user session indexes come on top (at most one per logged-in user). When all
    /// are live, creating a new session fails with 503; existing ones are untouched.
    pub max_sessions: NonZeroU64,
    /// Most rate-limit counters of identities kept (`TG_MEMORY_MAX_COUNTERS`, default
    /// `TG_MEMORY_MAX_ENTRIES`). When all are live, a new identity is counted on its
    /// rule's shared overflow counter (one per rule and plan tier, on top of this bound).
    pub max_counters: NonZeroU64,
    /// Most bytes of keys and values of cache entries and sessions together
    /// (`TG_MEMORY_MAX_BYTES`, default 64 MiB). Cache entries give way first; a session
    /// write that would still not fit is refused.
    pub max_bytes: NonZeroU64,
    /// How often expired entries are purged (`TG_MEMORY_PURGE_INTERVAL`, default 1 s).
    pub purge_interval: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_entries: NonZeroU64::new(100_000).expect("nonzero"),
            max_sessions: NonZeroU64::new(100_000).expect("nonzero"),
            max_counters: NonZeroU64::new(100_000).expect("nonzero"),
            max_bytes: NonZeroU64::new(64 << 20).expect("nonzero"),
            purge_interval: Duration::from_secs(1),
        }
    }
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (`TG_BREAKER_THRESHOLD`, default 3).
    pub failure_threshold: NonZeroU32,
    /// Pause between probes while open (`TG_BREAKER_PROBE_INTERVAL`, default 500 ms).
    pub probe_interval: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: NonZeroU32::new(3).expect("nonzero"),
            probe_interval: Duration::from_millis(500),
        }
    }
}

/// Where the tenant of a request comes from (`TG_TENANT_SOURCE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSource {
    /// A request header (`header` or `header:X-Org-Id`).
    Header(String),
    /// The first label of `Host` under a base domain (`subdomain:example.com`).
    Subdomain(String),
    /// The first path segment after a prefix (`path` or `path:/t`).
    PathPrefix(String),
}

/// Tenant resolution settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantConfig {
    /// Where the tenant comes from (default: header `X-Tenant-ID`).
    pub source: TenantSource,
    /// Tenant used when a request names none (`TG_DEFAULT_TENANT`, default: none, i.e. 400).
    pub default_tenant: Option<TenantId>,
    /// The only tenants served (`TG_TENANTS`, a comma list; default: any valid id). Others
    /// get 404 and nothing is written for them.
    pub known: Option<Vec<TenantId>>,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            source: TenantSource::Header("X-Tenant-ID".into()),
            default_tenant: None,
            known: None,
        }
    }
}

/// `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`: never sent on cross-site requests.
    Strict,
    /// `SameSite=Lax` (the default): sent on top-level navigations, not on cross-site
    /// subrequests or POSTs.
    Lax,
    /// `SameSite=None`: sent everywhere (requires `Secure`).
    None,
}

impl std::str::FromStr for SameSite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strict" => Ok(Self::Strict),
            "lax" => Ok(Self::Lax),
            "none" => Ok(Self::None),
            other => Err(format!("unknown SameSite value `{other}`")),
        }
    }
}

impl fmt::Display for SameSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Strict => "strict",
            Self::Lax => "lax",
            Self::None => "none",
        })
    }
}

/// What the session layer does while Redis is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutage {
    /// Requests that touch the session get `503` (the default): no session is silently
    /// lost or forked. Requests that do not touch it are unaffected.
    Closed,
    /// Sessions are served from a per-process memory store until Redis is back. Users are
    /// logged out when the outage starts and again when it ends (the local sessions are
    /// not copied to Redis); `tenant_guard_session_events_total{event="fallback"}` counts it.
    Local,
}

impl std::str::FromStr for SessionOutage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "closed" => Ok(Self::Closed),
            "local" => Ok(Self::Local),
            other => Err(format!("unknown outage mode `{other}`")),
        }
    }
}

impl fmt::Display for SessionOutage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Local => "local",
        })
    }
}

/// Session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Inactivity expiry (`SESSION_TTL`, default 24 h).
    pub ttl: Duration,
    /// Absolute expiry counted from creation, however active the session is
    /// (`SESSION_MAX_LIFETIME`, default 7 days).
    pub max_lifetime: Duration,
    /// A session that is read but not changed has its inactivity TTL renewed (one
    /// `PEXPIRE`, no data rewritten) at most once per this interval
    /// (`SESSION_RENEW_INTERVAL`, default 60 s).
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

/// Cache TTLs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// General cache TTL (`CACHE_TTL`, default 1 h).
    pub default_ttl: Duration,
    /// Query cache TTL (`QUERY_CACHE_TTL`, default 5 min).
    pub query_ttl: Duration,
    /// AI response cache TTL (`AI_CACHE_TTL`, default 30 min).
    pub ai_ttl: Duration,
    /// Named categories (`CACHE_TTL_<NAME>`; names lowercased).
    pub categories: BTreeMap<String, Duration>,
    /// Random extra TTL, up to this percentage, so entries filled together do not expire
    /// together (`CACHE_TTL_JITTER`, default 0).
    pub jitter_percent: u8,
    /// How long past its TTL an entry may still be served while another instance refills
    /// it (`CACHE_STALE_TTL`, default 0: never stale).
    pub stale: Duration,
    /// Lease a filler holds so other instances wait instead of calling the upstream too
    /// (`CACHE_LEASE_TTL`, default 5 s); also how long they wait at most.
    pub lease: Duration,
    /// Bytes of the in-process L1 in front of Redis (`CACHE_L1_MAX_BYTES`, default 32 MiB;
    /// 0 turns L1 off).
    pub l1_max_bytes: u64,
    /// Largest response body the HTTP layer stores (`CACHE_MAX_BODY_BYTES`, default 1 MiB);
    /// larger ones pass through uncached.
    pub max_body: u64,
    /// Whose responses an HTTP entry may serve (`CACHE_SCOPE`, default `auto`).
    pub scope: crate::cache::CacheScope,
    /// Scopes of single categories (`CACHE_SCOPE_<CATEGORY>`; names lowercased).
    pub scopes: BTreeMap<String, crate::cache::CacheScope>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(3600),
            query_ttl: Duration::from_secs(300),
            ai_ttl: Duration::from_secs(1800),
            categories: BTreeMap::new(),
            jitter_percent: 0,
            stale: Duration::ZERO,
            lease: Duration::from_secs(5),
            l1_max_bytes: 32 * 1024 * 1024,
            max_body: 1024 * 1024,
            scope: crate::cache::CacheScope::Auto,
            scopes: BTreeMap::new(),
        }
    }
}

impl CacheConfig {
    /// Scope of a category's HTTP entries: `CACHE_SCOPE_<CATEGORY>`, else `CACHE_SCOPE`.
    ///
    /// ```
    /// use tenant_guard::cache::CacheScope;
    /// let cfg = tenant_guard::config::Config::from_vars([
    ///     ("CACHE_SCOPE", "tenant"),
    ///     ("CACHE_SCOPE_AI", "user"),
    /// ]).unwrap();
    /// assert_eq!(cfg.cache.scope_for("ai"), CacheScope::User);
    /// assert_eq!(cfg.cache.scope_for("query"), CacheScope::Tenant);
    /// ```
    pub fn scope_for(&self, category: &str) -> crate::cache::CacheScope {
        self.scopes.get(category).copied().unwrap_or(self.scope)
    }

    /// TTL of a category: `query`, `ai`, a `CACHE_TTL_<NAME>` category, else `CACHE_TTL`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = tenant_guard::config::CacheConfig::default();
    /// assert_eq!(cache.ttl_for("query"), Duration::from_secs(300));
    /// assert_eq!(cache.ttl_for("anything-else"), Duration::from_secs(3600));
    /// ```
    pub fn ttl_for(&self, category: &str) -> Duration {
        if let Some(ttl) = self.categories.get(category) {
            return *ttl;
        }
        match category {
            "query" => self.query_ttl,
            "ai" => self.ai_ttl,
            _ => self.default_ttl,
        }
    }
}

/// Rate-limit settings. `RATE_LIMIT_MAX` per `RATE_LIMIT_WINDOW` is the default rule of
/// existing deployments (per user and endpoint); the other variables add rules, plans, costs
/// and the outage behaviour. The parsed rules are in [`policy`](Self::policy).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Requests allowed per window by the default rule (default 100).
    pub max: NonZeroU32,
    /// Window of the default rule (default 900 s).
    pub window: Duration,
    /// Every rule, plan and cost.
    pub policy: Policy,
    /// What happens while Redis is unusable (`RATE_LIMIT_OUTAGE`, default `local`).
    pub outage: OutageMode,
    /// App instances sharing the limits, dividing limits in `local` outage mode
    /// (`RATE_LIMIT_INSTANCES`, default 1).
    pub instances: NonZeroU32,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` are believed
    /// (`RATE_LIMIT_TRUSTED_PROXIES`, default none).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one forwarding header believed from trusted proxies
    /// (`RATE_LIMIT_FORWARDED_HEADER`, default `x-forwarded-for`).
    pub forwarded_header: crate::ratelimit::ForwardedHeader,
    /// Header with a user id set by a trusted gateway (`RATE_LIMIT_USER_HEADER`).
    pub user_header: Option<String>,
    /// Also send `X-RateLimit-Limit/Remaining/Reset` (`RATE_LIMIT_LEGACY_HEADERS`).
    pub legacy_headers: bool,
    /// Per-tenant in-process cap in front of Redis (`RATE_LIMIT_BURST`, e.g. `200/1s`).
    pub burst: Option<Quota>,
    /// Requests per client address across every tenant (`RATE_LIMIT_IP`, e.g. `300/1m`):
    /// one client cycling tenant ids is limited too.
    pub per_ip: Option<Quota>,
    /// Entries of the local cache of identities known to be denied (`RATE_LIMIT_DENY_CACHE`,
    /// default 10000; 0 turns it off).
    pub deny_cache: u64,
    /// Most counters whose last Redis answer each instance remembers for the `local`
    /// outage mode (`RATE_LIMIT_OUTAGE_KEYS`, default 100000, at least 2).
    pub outage_keys: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let max = NonZeroU32::new(100).expect("nonzero");
        let window = Duration::from_secs(900);
        Self {
            max,
            window,
            policy: Policy::builder()
                .rule(default_rule(max, window))
                .build()
                .expect("the default policy is valid"),
            outage: OutageMode::Local,
            instances: NonZeroU32::MIN,
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
            user_header: None,
            legacy_headers: false,
            burst: None,
            per_ip: None,
            deny_cache: 10_000,
            outage_keys: 100_000,
        }
    }
}

fn default_rule(max: NonZeroU32, window: Duration) -> Rule {
    Rule::new("per-endpoint", Scope::User, Quota { limit: max, window }).per_endpoint()
}

/// One invalid environment value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarProblem {
    /// The variable, e.g. `RATE_LIMIT_WINDOW`.
    pub var: String,
    /// The value as given (`None` for secrets, which are never echoed).
    pub value: Option<String>,
    /// Why it was rejected.
    pub reason: String,
    /// The accepted form.
    pub expected: String,
}

impl fmt::Display for VarProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(
                f,
                "{}={v:?}: {}; expected {}",
                self.var, self.reason, self.expected
            ),
            None => write!(
                f,
                "{}: {}; expected {}",
                self.var, self.reason, self.expected
            ),
        }
    }
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    problems: Vec<VarProblem>,
}

impl ConfigError {
    /// The individual problems, in the order the variables were checked.
    pub fn problems(&self) -> &[VarProblem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Variables with the `TG_` prefix that this version understands (others get a warning,
/// which catches typos).
const KNOWN_TG_VARS: &[&str] = &[
    "TG_KEY_PREFIX",
    "TG_MEMORY_MAX_ENTRIES",
    "TG_MEMORY_MAX_SESSIONS",
    "TG_MEMORY_MAX_COUNTERS",
    "TG_MEMORY_MAX_BYTES",
    "TG_MEMORY_PURGE_INTERVAL",
    "TG_BREAKER_THRESHOLD",
    "TG_BREAKER_PROBE_INTERVAL",
    "TG_TENANT_SOURCE",
    "TG_DEFAULT_TENANT",
    "TG_TENANTS",
    "TG_OPS_TOKEN",
    "TG_ADMIN_TOKEN",
];

/// Reads variables, records problems, and remembers which secrets it saw.
struct Reader {
    vars: HashMap<String, String>,
    problems: Vec<VarProblem>,
    warnings: Vec<String>,
}

impl Reader {
    fn get(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn problem(&mut self, var: &str, value: Option<&str>, reason: String, expected: &str) {
        self.problems.push(VarProblem {
            var: var.to_string(),
            value: value.map(str::to_string),
            reason,
            expected: expected.to_string(),
        });
    }

    /// Parses `var` if set; on error records a problem and returns `None`.
    fn parse<T>(
        &mut self,
        var: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
        expected: &str,
    ) -> Option<T> {
        let raw = self.get(var)?.to_string();
        match f(&raw) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.problem(var, Some(&raw), reason, expected);
                None
            }
        }
    }

    fn duration(&mut self, var: &str, default: Duration, nonzero: bool) -> Duration {
        let f = if nonzero {
            parse::nonzero_duration
        } else {
            parse::duration
        };
        let d = self.parse(var, f, DURATION_FORM).unwrap_or(default);
        // Plain numbers are seconds; a large one was probably meant as milliseconds
        // (ioredis' connectTimeout is in ms). Say so instead of guessing.
        if let Some(raw) = self.get(var) {
            if raw.trim().bytes().all(|b| b.is_ascii_digit())
                && d > Duration::from_secs(3600)
                && var.starts_with("REDIS_")
            {
                let msg = format!(
                    "{var}={raw} is read as {raw} seconds ({}); write {raw}ms if milliseconds were meant",
                    fmt_duration(d)
                );
                self.warnings.push(msg);
            }
        }
        d
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// Variables that are not valid UTF-8 are reported as problems, not ignored.
    ///
    /// ```no_run
    /// let config = tenant_guard::config::Config::from_env()?;
    /// # Ok::<(), tenant_guard::config::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut vars = Vec::new();
        let mut bad = Vec::new();
        for (k, v) in std::env::vars_os() {
            match (k.into_string(), v.into_string()) {
                (Ok(k), Ok(v)) => vars.push((k, v)),
                (Ok(k), Err(_)) if is_ours(&k) => bad.push(k),
                _ => {}
            }
        }
        let mut result = Self::from_vars(vars);
        if !bad.is_empty() {
            let mut problems = match result {
                Ok(_) => Vec::new(),
                Err(e) => e.problems,
            };
            for k in bad {
                problems.push(VarProblem {
                    var: k,
                    value: None,
                    reason: "not valid UTF-8".into(),
                    expected: "a UTF-8 string".into(),
                });
            }
            result = Err(ConfigError { problems });
        }
        result
    }

    /// Builds the configuration from key/value pairs, as if they were the environment.
    ///
    /// ```
    /// let cfg = tenant_guard::config::Config::from_vars([("RATE_LIMIT_MAX", "50")]).unwrap();
    /// assert_eq!(cfg.rate_limit.max.get(), 50);
    /// ```
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut r = Reader {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let redis = read_redis(&mut r);
        let key_prefix = r
            .parse("TG_KEY_PREFIX", KeyPrefix::new, KeyPrefix::FORM)
            .unwrap_or_default();
        let memory = read_memory(&mut r);
        let breaker = read_breaker(&mut r);
        let tenant = read_tenant(&mut r);
        let session = read_session(&mut r);
        if session.secret.is_none() && !matches!(redis.mode, RedisMode::Disabled) {
            r.warnings.push(
                "SESSION_SECRET is unset: cookies are signed with a random per-process key, so \
                 sessions stored in Redis are unreachable after a restart and from other \
                 instances"
                    .into(),
            );
        }
        let cache = read_cache(&mut r);
        let rate_limit = read_rate_limit(&mut r);
        let ops = read_ops(&mut r);

        let mut unknown: Vec<&String> = r
            .vars
            .keys()
            .filter(|k| k.starts_with("TG_") && !KNOWN_TG_VARS.contains(&k.as_str()))
            .collect();
        unknown.sort();
        let unknown: Vec<String> = unknown
            .into_iter()
            .map(|k| format!("{k} is not a tenant-guard variable (typo?); it is ignored"))
            .collect();
        r.warnings.extend(unknown);

        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Self {
            redis,
            key_prefix,
            memory,
            breaker,
            tenant,
            session,
            cache,
            rate_limit,
            ops,
            warnings: r.warnings,
        })
    }

    /// Things that are valid but probably not what was meant (e.g. `REDIS_HOST` ignored
    /// because `REDIS_URL` is set). `tenant-guard config` prints them; apps should log them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The effective configuration as `(variable, value)` pairs, secrets redacted — what
    /// `tenant-guard config` prints.
    ///
    /// ```
    /// let cfg = tenant_guard::config::Config::from_vars([
    ///     ("SESSION_SECRET", "0123456789abcdef0123456789abcdef"),
    /// ]).unwrap();
    /// let lines = cfg.effective();
    /// assert!(lines.iter().any(|(k, v)| k == "SESSION_SECRET" && v == "[redacted] (32 bytes)"));
    /// ```
    pub fn effective(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: String| out.push((k.to_string(), v));
        match &self.redis.mode {
            RedisMode::Disabled => {
                push("REDIS_ENABLED", "false (in-memory backend)".into());
            }
            RedisMode::Single(url) => {
                push("REDIS_ENABLED", "true".into());
                push("REDIS_URL", url.to_string());
            }
            RedisMode::Cluster(nodes) => {
                push("REDIS_ENABLED", "true".into());
                let list: Vec<String> = nodes.iter().map(ToString::to_string).collect();
                push("REDIS_CLUSTER_NODES", list.join(","));
            }
        }
        push(
            "REDIS_CONNECT_TIMEOUT",
            fmt_duration(self.redis.connect_timeout),
        );
        push(
            "REDIS_COMMAND_TIMEOUT",
            fmt_duration(self.redis.command_timeout),
        );
        push("REDIS_MAX_RETRIES", self.redis.max_retries.to_string());
        push(
            "REDIS_TLS_CA_FILE",
            self.redis.tls_ca.as_ref().map_or_else(
                || "(none: system trust store)".into(),
                |ca| ca.path().display().to_string(),
            ),
        );
        push("TG_KEY_PREFIX", self.key_prefix.to_string());
        push("TG_MEMORY_MAX_ENTRIES", self.memory.max_entries.to_string());
        push(
            "TG_MEMORY_MAX_SESSIONS",
            self.memory.max_sessions.to_string(),
        );
        push(
            "TG_MEMORY_MAX_COUNTERS",
            self.memory.max_counters.to_string(),
        );
        push("TG_MEMORY_MAX_BYTES", self.memory.max_bytes.to_string());
        push(
            "TG_MEMORY_PURGE_INTERVAL",
            fmt_duration(self.memory.purge_interval),
        );
        push(
            "TG_BREAKER_THRESHOLD",
            self.breaker.failure_threshold.to_string(),
        );
        push(
            "TG_BREAKER_PROBE_INTERVAL",
            fmt_duration(self.breaker.probe_interval),
        );
        let source = match &self.tenant.source {
            TenantSource::Header(h) => format!("header:{h}"),
            TenantSource::Subdomain(d) => format!("subdomain:{d}"),
            TenantSource::PathPrefix(p) => format!("path:{p}"),
        };
        push("TG_TENANT_SOURCE", source);
        push(
            "TG_TENANTS",
            self.tenant.known.as_ref().map_or_else(
                || "(any valid id)".into(),
                |k| k.iter().map(TenantId::as_str).collect::<Vec<_>>().join(","),
            ),
        );
        push(
            "TG_DEFAULT_TENANT",
            self.tenant.default_tenant.as_ref().map_or_else(
                || "(none: requests without a tenant get 400)".into(),
                |t| t.to_string(),
            ),
        );
        let se = &self.session;
        push("SESSION_TTL", fmt_duration(se.ttl));
        push("SESSION_MAX_LIFETIME", fmt_duration(se.max_lifetime));
        push("SESSION_RENEW_INTERVAL", fmt_duration(se.renew_interval));
        push(
            "SESSION_SECRET",
            match &se.secret {
                Some(s) => format!("[redacted] ({} bytes)", s.len()),
                None => "(unset: random per process, sessions end on restart)".into(),
            },
        );
        push(
            "SESSION_SECRET_PREVIOUS",
            format!("{} secret(s), [redacted]", se.previous_secrets.len()),
        );
        push("SESSION_COOKIE_NAME", se.cookie_name.clone());
        push("SESSION_COOKIE_SECURE", se.cookie_secure.to_string());
        push("SESSION_COOKIE_SAMESITE", se.cookie_same_site.to_string());
        push(
            "SESSION_COOKIE_DOMAIN",
            se.cookie_domain
                .clone()
                .unwrap_or_else(|| "(none: host-only)".into()),
        );
        push(
            "SESSION_COOKIE_HOST_PREFIX",
            se.cookie_host_prefix.to_string(),
        );
        push("SESSION_COOKIE_ENCRYPT", se.cookie_encrypt.to_string());
        push("SESSION_MAX_BYTES", se.max_bytes.to_string());
        push("SESSION_OUTAGE", se.outage.to_string());
        push("CACHE_TTL", fmt_duration(self.cache.default_ttl));
        push("QUERY_CACHE_TTL", fmt_duration(self.cache.query_ttl));
        push("AI_CACHE_TTL", fmt_duration(self.cache.ai_ttl));
        push(
            "CACHE_TTL_JITTER",
            format!("{}%", self.cache.jitter_percent),
        );
        push("CACHE_STALE_TTL", fmt_duration(self.cache.stale));
        push("CACHE_LEASE_TTL", fmt_duration(self.cache.lease));
        push("CACHE_L1_MAX_BYTES", self.cache.l1_max_bytes.to_string());
        push("CACHE_MAX_BODY_BYTES", self.cache.max_body.to_string());
        push("CACHE_SCOPE", self.cache.scope.to_string());
        for (name, scope) in &self.cache.scopes {
            push(
                &format!("CACHE_SCOPE_{}", name.to_ascii_uppercase()),
                scope.to_string(),
            );
        }
        for (name, ttl) in &self.cache.categories {
            push(
                &format!("CACHE_TTL_{}", name.to_ascii_uppercase().replace('-', "_")),
                fmt_duration(*ttl),
            );
        }
        push("RATE_LIMIT_MAX", self.rate_limit.max.to_string());
        push("RATE_LIMIT_WINDOW", fmt_duration(self.rate_limit.window));
        let rl = &self.rate_limit;
        let rules: Vec<String> = rl
            .policy
            .rules()
            .iter()
            .map(|r| {
                let scope = match r.scope {
                    Scope::Tenant => "tenant",
                    Scope::User => "user",
                };
                let ep = r
                    .endpoint
                    .as_ref()
                    .map_or_else(String::new, |e| format!(" {e}"));
                let per = if r.per_endpoint { " per endpoint" } else { "" };
                let shadow = if r.shadow { " (shadow)" } else { "" };
                format!("{} = {} per {scope}{ep}{per}{shadow}", r.name, r.quota)
            })
            .collect();
        push(
            "(rate-limit rules)",
            if rules.is_empty() {
                "(none: RATE_LIMIT_ENABLED=false)".into()
            } else {
                rules.join("; ")
            },
        );
        push(
            "RATE_LIMIT_ALGORITHM",
            format!("{:?}", rl.policy.algorithm()).to_lowercase(),
        );
        push("RATE_LIMIT_OUTAGE", rl.outage.to_string());
        push("RATE_LIMIT_INSTANCES", rl.instances.to_string());
        let proxies: Vec<String> = rl.trusted_proxies.iter().map(ToString::to_string).collect();
        push(
            "RATE_LIMIT_TRUSTED_PROXIES",
            if proxies.is_empty() {
                "(none: forwarding headers ignored)".into()
            } else {
                proxies.join(",")
            },
        );
        push(
            "RATE_LIMIT_FORWARDED_HEADER",
            rl.forwarded_header.to_string(),
        );
        push(
            "RATE_LIMIT_USER_HEADER",
            rl.user_header.clone().unwrap_or_else(|| "(none)".into()),
        );
        push("RATE_LIMIT_LEGACY_HEADERS", rl.legacy_headers.to_string());
        push(
            "RATE_LIMIT_BURST",
            rl.burst.map_or_else(|| "(none)".into(), |q| q.to_string()),
        );
        push(
            "RATE_LIMIT_IP",
            rl.per_ip.map_or_else(|| "(none)".into(), |q| q.to_string()),
        );
        push("RATE_LIMIT_DENY_CACHE", rl.deny_cache.to_string());
        push("RATE_LIMIT_OUTAGE_KEYS", rl.outage_keys.to_string());
        let token = |t: &Option<Secret>, unset: &str| {
            t.as_ref().map_or_else(
                || unset.to_string(),
                |s| format!("[redacted] ({} bytes)", s.len()),
            )
        };
        push(
            "TG_OPS_TOKEN",
            token(
                &self.ops.token,
                "(unset: /metrics and /cache/status are open)",
            ),
        );
        push(
            "TG_ADMIN_TOKEN",
            token(&self.ops.admin_token, "(unset: admin routes refused)"),
        );
        out
    }
}

fn is_ours(var: &str) -> bool {
    [
        "REDIS_",
        "TG_",
        "SESSION_",
        "CACHE_",
        "QUERY_CACHE_TTL",
        "AI_CACHE_TTL",
        "RATE_LIMIT_",
    ]
    .iter()
    .any(|p| var.starts_with(p))
}

const URL_FORM: &str =
    "redis://[user:password@]host[:port][/db], rediss://... for TLS, or unix:///path/to/redis.sock";
const HOST_FORM: &str = "a host name or IP address without scheme or port, e.g. `cache.internal`";
const NODES_FORM: &str =
    "a comma-separated list of host:port or redis:// URLs, e.g. `10.0.0.1:7000,10.0.0.2:7000`";

fn read_redis(r: &mut Reader) -> RedisConfig {
    let defaults = RedisConfig::default();
    let enabled = r.parse("REDIS_ENABLED", parse::boolean, BOOL_FORM);
    let tls = r
        .parse("REDIS_USE_TLS", parse::boolean, BOOL_FORM)
        .unwrap_or(false);
    let port = r.parse("REDIS_PORT", parse::port, "an integer from 1 to 65535");
    let db = r.parse(
        "REDIS_DB",
        parse::integer::<u32>,
        "a database number, 0 or more (usually 0-15)",
    );
    let host = r.parse(
        "REDIS_HOST",
        |v| {
            let v = v.trim();
            if v.contains("://")
                || v.contains('/')
                || v.contains('@')
                || v.contains(char::is_whitespace)
            {
                Err("not a bare host name".into())
            } else {
                Ok(v.to_string())
            }
        },
        HOST_FORM,
    );
    let username = r.get("REDIS_USERNAME").map(str::to_string);
    let password = r.get("REDIS_PASSWORD").map(Secret::new);

    let build = |host: &str, port: u16| -> Result<RedisUrl, String> {
        let scheme = if tls { "rediss" } else { "redis" };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]") // bare IPv6
        } else {
            host.to_string()
        };
        let mut url = url::Url::parse(&format!("{scheme}://{host}:{port}/{}", db.unwrap_or(0)))
            .map_err(|e| format!("cannot form a URL ({e})"))?;
        if let Some(user) = &username {
            url.set_username(user)
                .map_err(|()| "REDIS_USERNAME cannot be used in a URL".to_string())?;
        }
        if let Some(pw) = &password {
            url.set_password(Some(pw.expose()))
                .map_err(|()| "REDIS_PASSWORD cannot be used in a URL".to_string())?;
        }
        RedisUrl::parse(url.as_str())
    };

    // REDIS_URL may carry a password: its raw value is never echoed in problems.
    let url = match r.get("REDIS_URL").map(str::to_string) {
        Some(raw) => match RedisUrl::parse(raw.trim()) {
            Ok(u) => Some(u),
            Err(reason) => {
                r.problem("REDIS_URL", None, reason, URL_FORM);
                None
            }
        },
        None => None,
    };
    let nodes = match r.get("REDIS_CLUSTER_NODES").map(str::to_string) {
        Some(raw) => {
            let mut out = Vec::new();
            for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let parsed = if part.contains("://") {
                    RedisUrl::parse(part)
                } else {
                    match part.rsplit_once(':') {
                        Some((h, p)) => parse::port(p).and_then(|p| build(h, p)),
                        None => build(part, 6379),
                    }
                };
                match parsed {
                    Ok(u) => out.push(u),
                    Err(reason) => {
                        r.problem(
                            "REDIS_CLUSTER_NODES",
                            None,
                            format!("node `{}`: {reason}", redact_userinfo(part)),
                            NODES_FORM,
                        );
                    }
                }
            }
            if out.is_empty() && !r.problems.iter().any(|p| p.var == "REDIS_CLUSTER_NODES") {
                r.problem(
                    "REDIS_CLUSTER_NODES",
                    Some(&raw),
                    "no nodes listed".into(),
                    NODES_FORM,
                );
            }
            Some(out)
        }
        None => None,
    };

    let discrete_set = [
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_DB",
        "REDIS_PASSWORD",
        "REDIS_USERNAME",
    ]
    .into_iter()
    .filter(|v| r.get(v).is_some())
    .collect::<Vec<_>>();

    if url.is_some() && nodes.is_some() {
        r.problem(
            "REDIS_CLUSTER_NODES",
            None,
            "both REDIS_URL and REDIS_CLUSTER_NODES are set".into(),
            "only one of them: REDIS_URL for a single server, REDIS_CLUSTER_NODES for a cluster",
        );
    }
    if let Some(u) = &url {
        if !discrete_set.is_empty() {
            r.warnings.push(format!(
                "REDIS_URL is set, so {} {} ignored",
                discrete_set.join(", "),
                if discrete_set.len() == 1 { "is" } else { "are" }
            ));
        }
        if tls && !u.is_tls() {
            r.problem(
                "REDIS_USE_TLS",
                Some("true"),
                "REDIS_URL uses redis:// (plain TCP)".into(),
                "a rediss:// REDIS_URL when REDIS_USE_TLS=true, or REDIS_USE_TLS unset",
            );
        }
    }

    let wants_tls = tls || url.as_ref().is_some_and(RedisUrl::is_tls);
    if wants_tls && !cfg!(feature = "tls") {
        r.problem(
            if tls { "REDIS_USE_TLS" } else { "REDIS_URL" },
            None,
            "TLS was requested but this build has no TLS support".into(),
            "a build with the `tls` feature (cargo build --features tls), or a redis:// URL",
        );
    }

    let configured = url.is_some()
        || nodes.is_some()
        || r.get("REDIS_HOST").is_some()
        || r.get("REDIS_PORT").is_some();
    if !configured && enabled.is_none() {
        let stray: Vec<&str> = [
            "REDIS_PASSWORD",
            "REDIS_USERNAME",
            "REDIS_DB",
            "REDIS_USE_TLS",
            "REDIS_TLS_CA_FILE",
        ]
        .into_iter()
        .filter(|v| r.get(v).is_some())
        .collect();
        if !stray.is_empty() {
            r.warnings.push(format!(
                "{} set but no Redis is configured (set REDIS_URL, REDIS_HOST or REDIS_CLUSTER_NODES); using the in-memory backend",
                stray.join(", ")
            ));
        }
    }
    let mode = match enabled {
        Some(false) => RedisMode::Disabled,
        Some(true) | None if configured || enabled == Some(true) => {
            if let Some(nodes) = nodes {
                RedisMode::Cluster(nodes)
            } else if let Some(url) = url {
                RedisMode::Single(url)
            } else {
                let h = host.unwrap_or_else(|| "127.0.0.1".into());
                match build(&h, port.unwrap_or(6379)) {
                    Ok(u) => RedisMode::Single(u),
                    Err(reason) => {
                        r.problem("REDIS_HOST", Some(&h), reason, HOST_FORM);
                        RedisMode::Disabled
                    }
                }
            }
        }
        _ => RedisMode::Disabled,
    };

    const CA_FORM: &str = "a path to a PEM file of the CA certificate(s) that sign the Redis \
        server's certificate, used with rediss:// (or REDIS_USE_TLS=true)";
    let tls_ca = r.parse("REDIS_TLS_CA_FILE", |v| TlsCa::read(v.trim()), CA_FORM);
    if tls_ca.is_some() {
        let plain = match &mode {
            RedisMode::Disabled => false,
            RedisMode::Single(u) => !u.is_tls(),
            RedisMode::Cluster(nodes) => nodes.iter().any(|u| !u.is_tls()),
        };
        if plain {
            r.problem(
                "REDIS_TLS_CA_FILE",
                None,
                "set, but the Redis connection is plain TCP (redis://)".into(),
                "a rediss:// REDIS_URL or REDIS_USE_TLS=true with REDIS_TLS_CA_FILE",
            );
        } else if matches!(mode, RedisMode::Cluster(_)) {
            // The redis crate takes custom roots for a cluster only with rustls; this build
            // uses native-tls (OpenSSL), which reads SSL_CERT_FILE instead.
            r.problem(
                "REDIS_TLS_CA_FILE",
                None,
                "not supported with REDIS_CLUSTER_NODES".into(),
                "the CA in the system trust store, or SSL_CERT_FILE=<ca.pem> for OpenSSL, for a cluster",
            );
        }
    }

    let max_retries = r
        .parse(
            "REDIS_MAX_RETRIES",
            parse::integer::<u32>,
            "a whole number, 0 or more",
        )
        .unwrap_or(defaults.max_retries);
    RedisConfig {
        mode,
        connect_timeout: r.duration("REDIS_CONNECT_TIMEOUT", defaults.connect_timeout, true),
        command_timeout: r.duration("REDIS_COMMAND_TIMEOUT", defaults.command_timeout, true),
        max_retries,
        tls_ca,
    }
}

fn redact_userinfo(s: &str) -> String {
    match s.rsplit_once('@') {
        Some((_, rest)) => format!("[redacted]@{rest}"),
        None => s.to_string(),
    }
}

fn read_memory(r: &mut Reader) -> MemoryConfig {
    let d = MemoryConfig::default();
    let count = |r: &mut Reader, var: &str, default: NonZeroU64| {
        r.parse(
            var,
            |v| {
                parse::integer::<u64>(v)
                    .and_then(|n| NonZeroU64::new(n).ok_or_else(|| "must be at least 1".into()))
            },
            "a whole number of entries, at least 1",
        )
        .unwrap_or(default)
    };
    let max_entries = count(r, "TG_MEMORY_MAX_ENTRIES", d.max_entries);
    MemoryConfig {
        max_entries,
        max_sessions: count(r, "TG_MEMORY_MAX_SESSIONS", max_entries),
        max_counters: count(r, "TG_MEMORY_MAX_COUNTERS", max_entries),
        max_bytes: r
            .parse(
                "TG_MEMORY_MAX_BYTES",
                |v| {
                    parse::bytes(v)
                        .and_then(|n| NonZeroU64::new(n).ok_or_else(|| "must be at least 1".into()))
                },
                BYTES_FORM,
            )
            .unwrap_or(d.max_bytes),
        purge_interval: r.duration("TG_MEMORY_PURGE_INTERVAL", d.purge_interval, true),
    }
}

fn read_breaker(r: &mut Reader) -> BreakerConfig {
    let d = BreakerConfig::default();
    BreakerConfig {
        failure_threshold: r
            .parse(
                "TG_BREAKER_THRESHOLD",
                |v| {
                    parse::integer::<u32>(v)
                        .and_then(|n| NonZeroU32::new(n).ok_or_else(|| "must be at least 1".into()))
                },
                "a whole number of consecutive failures, at least 1",
            )
            .unwrap_or(d.failure_threshold),
        probe_interval: r.duration("TG_BREAKER_PROBE_INTERVAL", d.probe_interval, true),
    }
}

const SOURCE_FORM: &str =
    "`header`, `header:<Header-Name>`, `subdomain:<base.domain>`, `path` or `path:/<prefix>`";

fn read_tenant(r: &mut Reader) -> TenantConfig {
    let d = TenantConfig::default();
    let source = r
        .parse(
            "TG_TENANT_SOURCE",
            |v| {
                let v = v.trim();
                let (kind, arg) = v.split_once(':').unwrap_or((v, ""));
                match kind {
                    "header" => {
                        let name = if arg.is_empty() { "X-Tenant-ID" } else { arg };
                        http::HeaderName::try_from(name)
                            .map_err(|_| format!("`{name}` is not a valid header name"))?;
                        Ok(TenantSource::Header(name.to_string()))
                    }
                    "subdomain" => {
                        let base = arg.trim_matches('.').to_ascii_lowercase();
                        if base.is_empty()
                            || !base
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                        {
                            return Err(format!("`{arg}` is not a base domain"));
                        }
                        Ok(TenantSource::Subdomain(base))
                    }
                    "path" => {
                        let prefix = arg.trim_end_matches('/');
                        if !prefix.is_empty() && !prefix.starts_with('/') {
                            return Err(format!("path prefix `{arg}` must start with `/`"));
                        }
                        Ok(TenantSource::PathPrefix(prefix.to_string()))
                    }
                    other => Err(format!("unknown source `{other}`")),
                }
            },
            SOURCE_FORM,
        )
        .unwrap_or(d.source);
    let default_tenant = r.parse(
        "TG_DEFAULT_TENANT",
        |v| TenantId::new(v.trim()).map_err(|e| e.to_string()),
        TenantId::FORM,
    );
    let known = r.parse(
        "TG_TENANTS",
        |v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| TenantId::new(t).map_err(|e| format!("`{t}`: {e}")))
                .collect::<Result<Vec<_>, _>>()
        },
        "a comma list of tenant ids, e.g. `acme,globex`",
    );
    if let (Some(known), Some(d)) = (&known, &default_tenant) {
        if !known.contains(d) {
            r.problem(
                "TG_DEFAULT_TENANT",
                Some(d.as_str()),
                "not in TG_TENANTS".into(),
                "one of the tenants of TG_TENANTS",
            );
        }
    }
    TenantConfig {
        source,
        default_tenant,
        known,
    }
}

fn read_secret(r: &mut Reader, var: &str, raw: &str) -> Option<Secret> {
    if raw.len() < MIN_SESSION_SECRET_LEN {
        r.problem(
            var,
            None,
            format!("too short ({} bytes)", raw.len()),
            "at least 32 random bytes, e.g. the output of `openssl rand -base64 48`",
        );
        return None;
    }
    Some(Secret::new(raw))
}

fn read_ops(r: &mut Reader) -> OpsConfig {
    let mut token = |var: &str| {
        let raw = r.get(var)?.to_string();
        read_secret(r, var, &raw)
    };
    OpsConfig {
        token: token("TG_OPS_TOKEN"),
        admin_token: token("TG_ADMIN_TOKEN"),
    }
}

fn read_session(r: &mut Reader) -> SessionConfig {
    let d = SessionConfig::default();
    let ttl = r.duration("SESSION_TTL", d.ttl, true);
    let max_lifetime = r.duration("SESSION_MAX_LIFETIME", d.max_lifetime, true);
    let renew_interval = r.duration("SESSION_RENEW_INTERVAL", d.renew_interval, false);
    let secret = match r.get("SESSION_SECRET").map(str::to_string) {
        Some(s) => read_secret(r, "SESSION_SECRET", &s),
        None => None,
    };
    let mut previous_secrets = Vec::new();
    if let Some(list) = r.get("SESSION_SECRET_PREVIOUS").map(str::to_string) {
        for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(s) = read_secret(r, "SESSION_SECRET_PREVIOUS", s) {
                previous_secrets.push(s);
            }
        }
    }
    if secret.is_none() && !previous_secrets.is_empty() {
        r.problem(
            "SESSION_SECRET_PREVIOUS",
            None,
            "set without SESSION_SECRET".into(),
            "old secrets only verify: set SESSION_SECRET to the secret that signs",
        );
    }
    let cookie_name = r
        .parse(
            "SESSION_COOKIE_NAME",
            |v| {
                let v = v.trim();
                if v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    Ok(v.to_string())
                } else {
                    Err("not a valid cookie name".into())
                }
            },
            "1-64 characters from A-Z a-z 0-9 - _ .",
        )
        .unwrap_or(d.cookie_name);
    let cookie_secure = r
        .parse("SESSION_COOKIE_SECURE", parse::boolean, BOOL_FORM)
        .unwrap_or(d.cookie_secure);
    let cookie_same_site = r
        .parse(
            "SESSION_COOKIE_SAMESITE",
            str::parse::<SameSite>,
            "`lax`, `strict` or `none`",
        )
        .unwrap_or(d.cookie_same_site);
    let cookie_domain = r.parse(
        "SESSION_COOKIE_DOMAIN",
        |v| {
            let v = v.trim().trim_start_matches('.');
            if !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                Ok(v.to_ascii_lowercase())
            } else {
                Err("not a domain name".into())
            }
        },
        "a domain such as `example.com`",
    );
    let explicit_prefix = r.parse("SESSION_COOKIE_HOST_PREFIX", parse::boolean, BOOL_FORM);
    let cookie_host_prefix = explicit_prefix.unwrap_or(cookie_secure && cookie_domain.is_none());
    if explicit_prefix == Some(true) && (!cookie_secure || cookie_domain.is_some()) {
        r.problem(
            "SESSION_COOKIE_HOST_PREFIX",
            None,
            "the `__Host-` prefix needs Secure and no Domain".into(),
            "false, or SESSION_COOKIE_SECURE=true and SESSION_COOKIE_DOMAIN unset",
        );
    }
    if cookie_same_site == SameSite::None && !cookie_secure {
        r.problem(
            "SESSION_COOKIE_SAMESITE",
            Some("none"),
            "browsers reject SameSite=None without Secure".into(),
            "`lax` or `strict`, or SESSION_COOKIE_SECURE=true",
        );
    }
    let cookie_encrypt = r
        .parse("SESSION_COOKIE_ENCRYPT", parse::boolean, BOOL_FORM)
        .unwrap_or(d.cookie_encrypt);
    let max_bytes = r
        .parse(
            "SESSION_MAX_BYTES",
            |v| {
                parse::bytes(v).and_then(|n| {
                    if n == 0 {
                        Err("must be at least 1".into())
                    } else {
                        Ok(n)
                    }
                })
            },
            BYTES_FORM,
        )
        .unwrap_or(d.max_bytes);
    let outage = r
        .parse(
            "SESSION_OUTAGE",
            str::parse::<SessionOutage>,
            "`closed` or `local`",
        )
        .unwrap_or(d.outage);
    SessionConfig {
        ttl,
        max_lifetime,
        renew_interval,
        secret,
        previous_secrets,
        cookie_name,
        cookie_secure,
        cookie_same_site,
        cookie_domain,
        cookie_host_prefix,
        cookie_encrypt,
        max_bytes,
        outage,
    }
}

fn read_cache(r: &mut Reader) -> CacheConfig {
    let d = CacheConfig::default();
    let default_ttl = r.duration("CACHE_TTL", d.default_ttl, true);
    let query_ttl = r.duration("QUERY_CACHE_TTL", d.query_ttl, true);
    let ai_ttl = r.duration("AI_CACHE_TTL", d.ai_ttl, true);
    let mut names: Vec<String> = r
        .vars
        .keys()
        .filter(|k| k.starts_with("CACHE_TTL_") && k.as_str() != "CACHE_TTL_JITTER")
        .cloned()
        .collect();
    names.sort();
    let mut categories = BTreeMap::new();
    let mut seen = HashSet::new();
    for var in names {
        let name = var["CACHE_TTL_".len()..].to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let val = r.get(&var).map(str::to_string);
            r.problem(
                &var,
                val.as_deref(),
                "the category name after CACHE_TTL_ is empty or has characters other than letters, digits and _".into(),
                "CACHE_TTL_<NAME>=<duration> with NAME made of A-Z, 0-9 and _",
            );
            continue;
        }
        if r.get(&var).is_none() || !seen.insert(name.clone()) {
            continue;
        }
        if let Some(ttl) = r.parse(&var, parse::nonzero_duration, DURATION_FORM) {
            categories.insert(name, ttl);
        }
    }
    let jitter_percent = r
        .parse(
            "CACHE_TTL_JITTER",
            |v| {
                let n: u8 = parse::integer(v.trim().trim_end_matches('%'))?;
                if n > 100 {
                    return Err("more than 100%".into());
                }
                Ok(n)
            },
            "a percentage from 0 to 100, e.g. `10` or `10%`",
        )
        .unwrap_or(d.jitter_percent);
    let stale = r.duration("CACHE_STALE_TTL", d.stale, false);
    let lease = r.duration("CACHE_LEASE_TTL", d.lease, true);
    let l1_max_bytes = r
        .parse("CACHE_L1_MAX_BYTES", parse::bytes, BYTES_FORM)
        .unwrap_or(d.l1_max_bytes);
    let max_body = r
        .parse("CACHE_MAX_BODY_BYTES", parse::bytes, BYTES_FORM)
        .unwrap_or(d.max_body);
    let scope = r
        .parse(
            "CACHE_SCOPE",
            str::parse::<crate::cache::CacheScope>,
            crate::cache::CacheScope::FORM,
        )
        .unwrap_or_default();
    let mut scope_vars: Vec<String> = r
        .vars
        .keys()
        .filter(|k| k.starts_with("CACHE_SCOPE_"))
        .cloned()
        .collect();
    scope_vars.sort();
    let mut scopes = BTreeMap::new();
    for var in scope_vars {
        let name = var["CACHE_SCOPE_".len()..].to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let val = r.get(&var).map(str::to_string);
            r.problem(
                &var,
                val.as_deref(),
                "the category name after CACHE_SCOPE_ is empty or has characters other than letters, digits and _".into(),
                "CACHE_SCOPE_<CATEGORY>=auto|tenant|user with CATEGORY made of A-Z, 0-9 and _",
            );
            continue;
        }
        if let Some(s) = r.parse(
            &var,
            str::parse::<crate::cache::CacheScope>,
            crate::cache::CacheScope::FORM,
        ) {
            scopes.insert(name, s);
        }
    }
    CacheConfig {
        default_ttl,
        query_ttl,
        ai_ttl,
        categories,
        jitter_percent,
        stale,
        lease,
        l1_max_bytes,
        max_body,
        scope,
        scopes,
    }
}

const QUOTA_VARS_FORM: &str = Quota::FORM;

fn read_rate_limit(r: &mut Reader) -> RateLimitConfig {
    let d = RateLimitConfig::default();
    let max = r
        .parse(
            "RATE_LIMIT_MAX",
            |v| {
                parse::integer::<u32>(v)
                    .and_then(|n| NonZeroU32::new(n).ok_or_else(|| "must be at least 1".into()))
            },
            "a whole number of requests per window, at least 1",
        )
        .unwrap_or(d.max);
    let mut window = r.duration("RATE_LIMIT_WINDOW", d.window, true);
    if window > Quota::MAX_WINDOW {
        let raw = r.get("RATE_LIMIT_WINDOW").map(str::to_string);
        r.problem(
            "RATE_LIMIT_WINDOW",
            raw.as_deref(),
            "longer than 10 years".into(),
            DURATION_FORM,
        );
        window = d.window;
    }
    let enabled = r
        .parse("RATE_LIMIT_ENABLED", parse::boolean, BOOL_FORM)
        .unwrap_or(true);
    let tenant = r.parse("RATE_LIMIT_TENANT", Quota::parse, QUOTA_VARS_FORM);
    let user = r.parse("RATE_LIMIT_USER", Quota::parse, QUOTA_VARS_FORM);
    let endpoints = r
        .parse(
            "RATE_LIMIT_ENDPOINTS",
            rl::parse_endpoint_rules,
            "`[name:] [METHOD] /route = LIMIT/WINDOW` entries separated by `;`, e.g. `ai: POST /api/ai/{*rest} = 10/1m`",
        )
        .unwrap_or_default();
    let costs = r
        .parse(
            "RATE_LIMIT_COSTS",
            rl::parse_costs,
            "`[METHOD] /route = COST` entries separated by `;`, e.g. `POST /api/ai/complete = 5`",
        )
        .unwrap_or_default();
    let algorithm = r
        .parse(
            "RATE_LIMIT_ALGORITHM",
            str::parse::<Algorithm>,
            "`compact`, `exact` or `gcra`",
        )
        .unwrap_or_default();
    let plans = r
        .parse(
            "RATE_LIMIT_PLANS",
            |v| {
                let mut out = Vec::new();
                for part in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                    let (name, rest) = part
                        .split_once(':')
                        .ok_or_else(|| format!("`{part}` has no `PLAN:`"))?;
                    out.push((name.trim().to_string(), rl::parse_overrides(rest)?));
                }
                Ok(out)
            },
            "`PLAN: RULE=LIMIT/WINDOW, ...` entries separated by `;`, e.g. `pro: per-tenant=5000/1m, per-user=500/15m`",
        )
        .unwrap_or_default();
    let tenant_plans = r
        .parse(
            "RATE_LIMIT_TENANT_PLANS",
            |v| {
                let mut out = Vec::new();
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (t, p) = part
                        .split_once('=')
                        .ok_or_else(|| format!("`{part}` is not TENANT=PLAN"))?;
                    let t = TenantId::new(t.trim()).map_err(|e| format!("`{part}`: {e}"))?;
                    out.push((t, p.trim().to_string()));
                }
                Ok(out)
            },
            "`TENANT=PLAN` entries separated by `,`, e.g. `acme=pro,globex=free`",
        )
        .unwrap_or_default();
    let shadow: Vec<String> = r
        .get("RATE_LIMIT_SHADOW")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();

    let mut rules = Vec::new();
    if enabled {
        if let Some(q) = tenant {
            rules.push(Rule::new("per-tenant", Scope::Tenant, q));
        }
        if let Some(q) = user {
            rules.push(Rule::new("per-user", Scope::User, q));
        }
        rules.extend(endpoints);
        rules.push(default_rule(max, window));
    }
    // Cross-checks, each blamed on the variable that names the missing thing.
    for s in &shadow {
        if !rules.iter().any(|rule| &rule.name == s) {
            let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
            r.problem(
                "RATE_LIMIT_SHADOW",
                Some(s),
                format!("no rule is named `{s}`"),
                &format!("a comma list of rule names: {}", names.join(", ")),
            );
        }
    }
    for (plan, overrides) in &plans {
        for (rule, _) in overrides {
            if !rules.iter().any(|x| &x.name == rule) {
                r.problem(
                    "RATE_LIMIT_PLANS",
                    None,
                    format!("plan `{plan}` overrides `{rule}`, which is not a rule"),
                    "overrides of existing rules (per-tenant, per-user, per-endpoint or a RATE_LIMIT_ENDPOINTS name)",
                );
            }
        }
    }
    for (t, p) in &tenant_plans {
        if !plans.iter().any(|(name, _)| name == p) {
            r.problem(
                "RATE_LIMIT_TENANT_PLANS",
                None,
                format!("tenant `{t}` is on plan `{p}`, which RATE_LIMIT_PLANS does not define"),
                "plans defined in RATE_LIMIT_PLANS",
            );
        }
    }
    let mut b = Policy::builder().algorithm(algorithm);
    for rule in rules {
        b = b.rule(rule);
    }
    for (p, c) in costs {
        b = b.cost(p, c.get());
    }
    for (name, overrides) in &plans {
        b = b.plan(name, overrides.iter().map(|(r, q)| (r.as_str(), *q)));
    }
    for (t, p) in &tenant_plans {
        b = b.tenant_plan(t.as_str(), p);
    }
    for s in &shadow {
        b = b.shadow(s);
    }
    let has_problems = r.problems.iter().any(|p| p.var.starts_with("RATE_LIMIT_"));
    let policy = match b.build() {
        Ok(p) => p,
        Err(e) => {
            if !has_problems {
                r.problem(
                    "RATE_LIMIT_ALGORITHM",
                    None,
                    e,
                    "`compact` for limits above 100000",
                );
            }
            Policy::default()
        }
    };

    let outage = r
        .parse(
            "RATE_LIMIT_OUTAGE",
            str::parse::<OutageMode>,
            "`open`, `closed` or `local`",
        )
        .unwrap_or(d.outage);
    let instances = r
        .parse(
            "RATE_LIMIT_INSTANCES",
            |v| {
                parse::integer::<u32>(v)
                    .and_then(|n| NonZeroU32::new(n).ok_or_else(|| "must be at least 1".into()))
            },
            "the number of app instances, at least 1",
        )
        .unwrap_or(d.instances);
    let trusted_proxies = r
        .parse(
            "RATE_LIMIT_TRUSTED_PROXIES",
            |v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<ipnet::IpNet>()
                            .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| format!("`{p}` is not an IP address or CIDR block"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            },
            "a comma list of IPs or CIDR blocks, e.g. `10.0.0.0/8, 127.0.0.1`",
        )
        .unwrap_or_default();
    let forwarded_header = r
        .parse(
            "RATE_LIMIT_FORWARDED_HEADER",
            str::parse::<crate::ratelimit::ForwardedHeader>,
            crate::ratelimit::ForwardedHeader::FORM,
        )
        .unwrap_or_default();
    let user_header = r.parse(
        "RATE_LIMIT_USER_HEADER",
        |v| {
            http::HeaderName::try_from(v.trim())
                .map(|_| v.trim().to_string())
                .map_err(|_| "not a valid header name".to_string())
        },
        "a header name, e.g. `X-User-ID`",
    );
    let legacy_headers = r
        .parse("RATE_LIMIT_LEGACY_HEADERS", parse::boolean, BOOL_FORM)
        .unwrap_or(false);
    let burst = r.parse("RATE_LIMIT_BURST", Quota::parse, QUOTA_VARS_FORM);
    let per_ip = r.parse("RATE_LIMIT_IP", Quota::parse, QUOTA_VARS_FORM);
    let deny_cache = r
        .parse(
            "RATE_LIMIT_DENY_CACHE",
            parse::integer::<u64>,
            "a whole number of entries (0 turns the cache off)",
        )
        .unwrap_or(d.deny_cache);
    let outage_keys = r
        .parse(
            "RATE_LIMIT_OUTAGE_KEYS",
            |v| {
                parse::integer::<u64>(v).and_then(|n| {
                    if n >= 2 {
                        Ok(n)
                    } else {
                        Err("must be at least 2".into())
                    }
                })
            },
            "a whole number of counters, at least 2",
        )
        .unwrap_or(d.outage_keys);
    RateLimitConfig {
        max,
        window,
        policy,
        outage,
        instances,
        trusted_proxies,
        forwarded_header,
        user_header,
        legacy_headers,
        burst,
        per_ip,
        deny_cache,
        outage_keys,
    }
}

#[cfg(test)]
mod tests;
