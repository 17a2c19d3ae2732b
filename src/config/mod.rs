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

mod assemble;
mod backend;
mod cache;
mod concurrency;
mod ops;
mod rate_limit;
mod session;
mod tenant;
mod tokens;
mod vars;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::keys::KeyPrefix;

pub use crate::backend::{BreakerConfig, MemoryConfig, RedisConfig, RedisMode, TlsCa};
pub use crate::cache::CacheConfig;
pub use crate::concurrency::ConcurrencyConfig;
use crate::parse::{self, DURATION_FORM, fmt_duration};
pub use crate::ratelimit::RateLimitConfig;
use crate::ratelimit::rules as rl;
pub use crate::secret::{RedisUrl, Secret};
pub use crate::session::{SameSite, SessionConfig, SessionOutage};
pub use crate::tenant::{TenantConfig, TenantSource};
pub use crate::tokens::TokenConfig;
pub use ops::OpsConfig;
pub use vars::{VARS, VarDoc, vars_markdown};

/// Minimum length of `SESSION_SECRET`, in bytes.
///
/// ```
/// use tenant_guard::config::{Config, MIN_SESSION_SECRET_LEN};
/// let short = "s".repeat(MIN_SESSION_SECRET_LEN - 1);
/// let err = Config::from_vars([("SESSION_SECRET", short.as_str())]).unwrap_err();
/// assert_eq!(err.problems()[0].var, "SESSION_SECRET");
/// assert_eq!(err.problems()[0].value, None); // a secret is never echoed
/// let long_enough = "s".repeat(MIN_SESSION_SECRET_LEN);
/// assert!(Config::from_vars([("SESSION_SECRET", long_enough.as_str())]).is_ok());
/// ```
pub const MIN_SESSION_SECRET_LEN: usize = 32;

/// The whole configuration of tenant-guard.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::config::{Config, RedisMode};
///
/// let c = Config::from_vars([("REDIS_ENABLED", "false"), ("SESSION_TTL", "30m"), ("TG_KEY_PREFIX", "app1")]).unwrap();
/// assert_eq!(c.redis.mode, RedisMode::Disabled);
/// assert_eq!(c.session.ttl, Duration::from_secs(1800));
/// assert_eq!(c.key_prefix.as_str(), "app1");
/// // In code: start from the defaults and change fields.
/// let mut c = Config::default();
/// c.session.ttl = Duration::from_secs(600);
/// ```
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
    /// Caps on requests in flight.
    pub concurrency: ConcurrencyConfig,
    /// Token budgets.
    pub tokens: TokenConfig,
    /// Access to the ops and admin routes.
    pub ops: OpsConfig,
    warnings: Vec<String>,
}

/// One invalid environment value.
///
/// ```
/// use tenant_guard::config::Config;
/// let err = Config::from_vars([("RATE_LIMIT_WINDOW", "soon")]).unwrap_err();
/// let p = &err.problems()[0];
/// assert_eq!((p.var.as_str(), p.value.as_deref()), ("RATE_LIMIT_WINDOW", Some("soon")));
/// assert!(p.to_string().starts_with(r#"RATE_LIMIT_WINDOW="soon": "#));
/// ```
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
///
/// ```
/// use tenant_guard::config::Config;
/// // Every invalid value at once, not the first one only.
/// let err = Config::from_vars([("RATE_LIMIT_WINDOW", "soon"), ("SESSION_TTL", "-1")]).unwrap_err();
/// assert_eq!(err.problems().len(), 2);
/// let text = err.to_string();
/// assert!(text.contains("RATE_LIMIT_WINDOW") && text.contains("SESSION_TTL"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    problems: Vec<VarProblem>,
}

impl ConfigError {
    /// The individual problems, in the order the variables were checked.
    ///
    /// ```
    /// use tenant_guard::config::Config;
    /// let err = Config::from_vars([("TG_MEMORY_MAX_ENTRIES", "0"), ("REDIS_PORT", "http")]).unwrap_err();
    /// let vars: Vec<&str> = err.problems().iter().map(|p| p.var.as_str()).collect();
    /// assert!(vars.contains(&"TG_MEMORY_MAX_ENTRIES") && vars.contains(&"REDIS_PORT"));
    /// ```
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

/// Reads variables, records problems, and remembers which secrets it saw.
struct Reader {
    vars: HashMap<String, String>,
    problems: Vec<VarProblem>,
    warnings: Vec<String>,
    /// Every variable asked for, set or not (checked against [`VARS`] by the tests).
    asked: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Reader {
    fn new(vars: HashMap<String, String>) -> Self {
        Self {
            vars,
            problems: Vec::new(),
            warnings: Vec::new(),
            asked: Default::default(),
        }
    }

    fn get(&self, var: &str) -> Option<&str> {
        if !self.asked.borrow().contains(var) {
            self.asked.borrow_mut().insert(var.to_string());
        }
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
        let mut r = Reader::new(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        let config = Self::read(&mut r);
        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Self {
            warnings: r.warnings,
            ..config
        })
    }

    /// Reads every section; problems and warnings stay in `r`.
    fn read(r: &mut Reader) -> Self {
        let redis = backend::read_redis(r);
        let key_prefix = r
            .parse(
                "TG_KEY_PREFIX",
                |v| KeyPrefix::new(v).map_err(String::from),
                KeyPrefix::FORM,
            )
            .unwrap_or_default();
        let memory = backend::read_memory(r);
        let breaker = backend::read_breaker(r);
        let tenant = tenant::read_tenant(r);
        let session = session::read_session(r);
        if session.secret.is_none() && !matches!(redis.mode, RedisMode::Disabled) {
            r.warnings.push(
                "SESSION_SECRET is unset: cookies are signed with a random per-process key, so \
                 sessions stored in Redis are unreachable after a restart and from other \
                 instances"
                    .into(),
            );
        }
        let cache = cache::read_cache(r);
        let rate_limit = rate_limit::read_rate_limit(r);
        let concurrency = concurrency::read_concurrency(r);
        let tokens = tokens::read_tokens(r, &rate_limit);
        let ops = ops::read_ops(r);

        let mut unknown: Vec<&String> = r
            .vars
            .keys()
            .filter(|k| k.starts_with("TG_") && !vars::documented(k))
            .collect();
        unknown.sort();
        let unknown: Vec<String> = unknown
            .into_iter()
            .map(|k| format!("{k} is not a tenant-guard variable (typo?); it is ignored"))
            .collect();
        r.warnings.extend(unknown);
        Self {
            redis,
            key_prefix,
            memory,
            breaker,
            tenant,
            session,
            cache,
            rate_limit,
            concurrency,
            tokens,
            ops,
            warnings: Vec::new(),
        }
    }

    /// Things that are valid but probably not what was meant (e.g. `REDIS_HOST` ignored
    /// because `REDIS_URL` is set). `tenant-guard config` prints them; apps should log them.
    ///
    /// ```
    /// use tenant_guard::config::Config;
    /// let c = Config::from_vars([("REDIS_URL", "redis://cache:6379"), ("REDIS_HOST", "other")]).unwrap();
    /// assert!(c.warnings().iter().any(|w| w == "REDIS_URL is set, so REDIS_HOST is ignored"));
    /// assert!(Config::default().warnings().is_empty());
    /// ```
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
        backend::effective_redis(self, &mut push);
        push("TG_KEY_PREFIX", self.key_prefix.to_string());
        backend::effective_memory(self, &mut push);
        tenant::effective(self, &mut push);
        session::effective(self, &mut push);
        cache::effective(self, &mut push);
        rate_limit::effective(self, &mut push);
        concurrency::effective(self, &mut push);
        tokens::effective(self, &mut push);
        ops::effective(self, &mut push);
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

#[cfg(test)]
mod tests;
