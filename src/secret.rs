//! Values that must never be printed: passwords and signing secrets.

use std::fmt;

/// A string that never shows up in `Debug` or `Display` output.
///
/// Used for `REDIS_PASSWORD`, the password inside `REDIS_URL` and `SESSION_SECRET`, so that
/// `tracing::debug!(?config)` or `tenant-guard config` cannot leak them.
///
/// ```
/// use tenant_guard::config::Secret;
///
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret([redacted])");
/// assert_eq!(s.to_string(), "[redacted]");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    ///
    /// ```
    /// use tenant_guard::config::Secret;
    /// let s = Secret::new(String::from("hunter2"));
    /// assert_eq!(s, Secret::new("hunter2"));
    /// assert_eq!(format!("password={s}"), "password=[redacted]");
    /// ```
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret itself. Call this only where the value is used, never to log it.
    ///
    /// ```
    /// use tenant_guard::config::Secret;
    /// let s = Secret::new("hunter2");
    /// // Only where the value is used: here, to compare a submitted password.
    /// assert_eq!(s.expose().as_bytes(), b"hunter2");
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length of the secret in bytes (safe to print).
    ///
    /// ```
    /// use tenant_guard::config::Config;
    /// // A session secret's length may be checked and printed; its value never is.
    /// let c = Config::from_vars([("SESSION_SECRET", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]).unwrap();
    /// assert_eq!(c.session.secret.as_ref().map(|s| s.len()), Some(64));
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    ///
    /// ```
    /// use tenant_guard::config::Secret;
    /// assert!(Secret::new("").is_empty());
    /// assert!(!Secret::new("hunter2").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A Redis connection URL whose password is redacted whenever it is printed.
///
/// ```
/// use tenant_guard::config::RedisUrl;
///
/// let url = RedisUrl::parse("redis://:s3cret@cache.internal:6380/2").unwrap();
/// assert_eq!(url.to_string(), "redis://:[redacted]@cache.internal:6380/2");
/// assert!(!format!("{url:?}").contains("s3cret"));
/// assert!(url.expose().contains("s3cret"));
///
/// // Credentials anywhere in the URL: user-info and the query of a unix-socket URL.
/// let url = RedisUrl::parse("unix:///run/redis.sock?db=2&user=app&pass=s3cret").unwrap();
/// assert_eq!(url.to_string(), "unix:///run/redis.sock?db=2&user=[redacted]&pass=[redacted]");
/// let url = RedisUrl::parse("redis://app:s3cret@cache:6379").unwrap();
/// assert!(!url.to_string().contains("app") && !url.to_string().contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    url: url::Url,
}

impl RedisUrl {
    /// Parses and validates a `redis://`, `rediss://` or `unix://` URL.
    ///
    /// ```
    /// use tenant_guard::config::RedisUrl;
    /// assert!(RedisUrl::parse("redis://cache.internal:6380/2").is_ok());
    /// assert!(RedisUrl::parse("unix:///run/redis.sock").is_ok());
    /// let err = RedisUrl::parse("http://cache.internal").unwrap_err();
    /// assert_eq!(err.reason(), "unsupported scheme `http`");
    /// assert!(RedisUrl::parse("redis://cache.internal/reports").is_err()); // not a database number
    /// ```
    pub fn parse(s: &str) -> Result<Self, crate::InvalidValue> {
        let url = url::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        match url.scheme() {
            "redis" | "rediss" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err("the URL has no host".into());
                }
                let db = url.path().trim_start_matches('/');
                if !db.is_empty() && db.parse::<u32>().is_err() {
                    return Err(format!("the path `/{db}` is not a database number").into());
                }
            }
            "unix" | "redis+unix" => {}
            other => return Err(format!("unsupported scheme `{other}`").into()),
        }
        Ok(Self { url })
    }

    /// Whether the URL asks for TLS (`rediss://`).
    ///
    /// ```
    /// use tenant_guard::config::RedisUrl;
    /// assert!(RedisUrl::parse("rediss://cache.internal:6380").unwrap().is_tls());
    /// assert!(!RedisUrl::parse("redis://cache.internal:6379").unwrap().is_tls());
    /// ```
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "rediss"
    }

    /// The full URL including the password, for handing to the Redis client only.
    ///
    /// ```
    /// use tenant_guard::config::RedisUrl;
    /// let url = RedisUrl::parse("redis://:s3cret@cache.internal:6379").unwrap();
    /// // For the Redis client only: it carries the password.
    /// assert_eq!(url.expose(), "redis://:s3cret@cache.internal:6379");
    /// ```
    pub fn expose(&self) -> &str {
        self.url.as_str()
    }

    /// Host and port, for logs and status output (no credentials).
    ///
    /// ```
    /// use tenant_guard::config::RedisUrl;
    /// assert_eq!(RedisUrl::parse("redis://:s3cret@cache.internal:6380/2").unwrap().host_port(), "cache.internal:6380");
    /// assert_eq!(RedisUrl::parse("redis://cache.internal").unwrap().host_port(), "cache.internal:6379");
    /// assert_eq!(RedisUrl::parse("unix:///run/redis.sock").unwrap().host_port(), "/run/redis.sock");
    /// ```
    pub fn host_port(&self) -> String {
        match (self.url.host_str(), self.url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => format!("{h}:6379"),
            _ => self.url.path().to_string(),
        }
    }

    fn redacted(&self) -> String {
        let mut u = self.url.clone();
        // Setting user-info only fails for URLs that cannot have one (unix sockets), which
        // then carry credentials, if any, in the query (below).
        if u.password().is_some() {
            let _ = u.set_password(Some(REDACTED));
        }
        if !u.username().is_empty() {
            let _ = u.set_username(REDACTED);
        }
        // The redis crate also reads credentials from the query (`unix:///s.sock?pass=..`).
        if u.query().is_some() {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let secret = CREDENTIAL_PARAMS.iter().any(|c| k.eq_ignore_ascii_case(c));
                    let v = if secret {
                        REDACTED.to_string()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        // `url` percent-encodes the brackets; show them plainly.
        u.as_str().replace("%5Bredacted%5D", REDACTED)
    }
}

const REDACTED: &str = "[redacted]";

/// Query parameters that carry credentials (the redis crate reads `user` and `pass` from
/// unix-socket URLs; `password`/`username` are common spellings).
const CREDENTIAL_PARAMS: &[&str] = &["pass", "password", "user", "username", "auth", "token"];

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

/// 128 random bits in hex: a lease's token, unique among the holders of one key (when the
/// system's randomness fails, the time and a counter keep it unique in this process).
pub(crate) fn random_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        b[..8].copy_from_slice(&now.to_le_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
