//! The only place Redis keys are formatted.
//!
//! ```text
//! <prefix>:<kind>:{<tenant>}:<component>:<component>...
//! tg:ratelimit:{acme}:per-user:user:u-42:GET /api/reports
//! tg:session:{acme}:<session-id>        tg:session-index:{acme}:<user-id>
//! tg:query:{acme}:<sha256-hex>          tg:ai:{acme}:gpt-4o:<sha256-hex>
//! tg:cache:{acme}:<category>:<id>
//! ```
//!
//! * The tenant is written in braces: a Redis Cluster hash tag. Every key of a tenant hashes
//!   to one slot, so one Lua script can touch all of a request's counters atomically on a
//!   cluster, and a tenant-wide SCAN needs to visit one node only.
//! * The tenant is a validated [`TenantId`] and cannot contain `{`, `}`, `:` or globs.
//! * Every other component is percent-escaped: `%`, `:`, `{`, `}`, `*`, `?`, `[`, `]`, `\`,
//!   control characters and non-ASCII bytes become `%XX`. So no input can add a segment,
//!   move the key to another slot, or widen a SCAN pattern.
//!
//! ```
//! use tenant_guard::keys::Keys;
//! use tenant_guard::tenant::TenantId;
//!
//! let keys = Keys::default();
//! let acme = TenantId::new("acme").unwrap();
//! let k = keys.cache(&acme, "reports", "2026-11-22");
//! assert_eq!(k.as_str(), "tg:cache:{acme}:reports:2026-11-22");
//! let evil = keys.cache(&acme, "reports", "x:*}{other}");
//! assert_eq!(evil.as_str(), "tg:cache:{acme}:reports:x%3A%2A%7D%7Bother%7D");
//! assert_eq!(evil.slot(), k.slot());
//! ```

use std::fmt;
use std::sync::Arc;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::tenant::TenantId;

/// Bytes escaped in key components (non-ASCII bytes are always escaped).
const ESCAPE: &AsciiSet = &CONTROLS
    .add(b'%')
    .add(b':')
    .add(b'{')
    .add(b'}')
    .add(b'*')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'\\');

/// Number of Redis Cluster hash slots.
///
/// ```
/// use tenant_guard::{keys::{Keys, SLOTS}, tenant::TenantId};
/// let k = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
/// assert!(k.slot() < SLOTS);
/// ```
pub const SLOTS: u16 = 16384;

/// The validated prefix of every key (`TG_KEY_PREFIX`, default `tg`).
///
/// ```
/// use tenant_guard::keys::KeyPrefix;
/// assert!(KeyPrefix::new("myapp:tg").is_ok());
/// assert!(KeyPrefix::new("bad{prefix}").is_err());
/// assert!(KeyPrefix::new("x*").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(Arc<str>);

impl KeyPrefix {
    /// Accepted form, as shown in errors.
    ///
    /// ```
    /// let err = tenant_guard::keys::KeyPrefix::new("no spaces").unwrap_err();
    /// assert!(!tenant_guard::keys::KeyPrefix::FORM.is_empty());
    /// # let _ = err;
    /// ```
    pub const FORM: &'static str =
        "1-64 ASCII letters, digits, `-`, `_`, `.` or `:`, e.g. `tg` or `myapp:tg`";

    /// Validates a prefix.
    ///
    /// ```
    /// use tenant_guard::keys::KeyPrefix;
    /// assert_eq!(KeyPrefix::new(" app1 ").unwrap().as_str(), "app1"); // trimmed
    /// assert!(KeyPrefix::new(":tg").is_err());
    /// ```
    pub fn new(prefix: &str) -> Result<Self, crate::InvalidValue> {
        let p = prefix.trim();
        if p.is_empty() || p.len() > 64 {
            return Err(format!("{} bytes long", p.len()).into());
        }
        if let Some(c) = p
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(format!("contains {c:?}").into());
        }
        if p.starts_with(':') || p.ends_with(':') {
            return Err("starts or ends with `:`".into());
        }
        Ok(Self(Arc::from(p)))
    }

    /// The prefix.
    ///
    /// ```
    /// assert_eq!(tenant_guard::keys::KeyPrefix::default().as_str(), "tg");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self(Arc::from("tg"))
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPrefix({})", &self.0)
    }
}

/// What a key holds; the second segment of every key.
///
/// ```
/// use tenant_guard::keys::KeyKind;
/// assert_eq!(KeyKind::Session.as_str(), "session");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// Rate-limit counters.
    RateLimit,
    /// Blocks of identities a rule denied (`RATE_LIMIT_BLOCK`), one per counter.
    RateLimitBlock,
    /// Session data.
    Session,
    /// Per-user index of session ids.
    SessionIndex,
    /// Cached query results.
    Query,
    /// Cached AI responses.
    Ai,
    /// General cache entries.
    Cache,
    /// Short-lived locks (single-flight leases and the like).
    Lock,
    /// Cache generations of a tenant and its categories (bumped to invalidate).
    CacheGen,
    /// Leases of requests in flight (concurrency limits).
    Concurrency,
    /// Tenants' limits changed at runtime (`tenant-guard limits`).
    Limits,
}

impl KeyKind {
    /// The kind of a key this module made: the segment before the tenant's `{`. The
    /// prefix cannot contain `{`, so the first one opens the tenant.
    ///
    /// ```
    /// use tenant_guard::{keys::{KeyKind, KeyPrefix, Keys}, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// let keys = Keys::new(KeyPrefix::new("app:tg").unwrap());
    /// assert_eq!(KeyKind::of(keys.session(&t, "abc").as_str()), Some(KeyKind::Session));
    /// assert_eq!(KeyKind::of(keys.query(&t, "h").as_str()), Some(KeyKind::Query));
    /// assert_eq!(KeyKind::of("no-kind-here"), None);
    /// // A prefix may hold `:` and kind names; the segment before the tenant decides.
    /// let odd = Keys::new(KeyPrefix::new("session:x").unwrap());
    /// assert_eq!(KeyKind::of(odd.query(&t, "h").as_str()), Some(KeyKind::Query));
    /// ```
    pub fn of(key: &str) -> Option<Self> {
        let b = key.as_bytes();
        let open = b.iter().position(|&c| c == b'{')?;
        let head = b[..open].strip_suffix(b":")?;
        let start = head.iter().rposition(|&c| c == b':').map_or(0, |i| i + 1);
        Some(match &head[start..] {
            b"ratelimit" => Self::RateLimit,
            b"ratelimit-block" => Self::RateLimitBlock,
            b"session" => Self::Session,
            b"session-index" => Self::SessionIndex,
            b"query" => Self::Query,
            b"ai" => Self::Ai,
            b"cache" => Self::Cache,
            b"lock" => Self::Lock,
            b"cache-gen" => Self::CacheGen,
            b"concurrency" => Self::Concurrency,
            b"limits" => Self::Limits,
            _ => return None,
        })
    }

    /// The segment written in keys.
    ///
    /// ```
    /// use tenant_guard::keys::KeyKind;
    /// assert_eq!(KeyKind::RateLimit.as_str(), "ratelimit");
    /// assert_eq!(KeyKind::SessionIndex.as_str(), "session-index");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimit => "ratelimit",
            Self::RateLimitBlock => "ratelimit-block",
            Self::Session => "session",
            Self::SessionIndex => "session-index",
            Self::Query => "query",
            Self::Ai => "ai",
            Self::Cache => "cache",
            Self::Concurrency => "concurrency",
            Self::Limits => "limits",
            Self::Lock => "lock",
            Self::CacheGen => "cache-gen",
        }
    }
}

/// A fully formed Redis key. Only [`Keys`] makes them.
///
/// ```
/// use tenant_guard::{keys::Keys, tenant::TenantId};
/// let t = TenantId::new("acme").unwrap();
/// let k = Keys::default().cache(&t, "reports", "7");
/// assert_eq!(k.to_string(), "tg:cache:{acme}:reports:7");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RedisKey(String);

impl RedisKey {
    /// The key.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// assert_eq!(Keys::default().query(&t, "abc").as_str(), "tg:query:{acme}:abc");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's bytes.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// assert_eq!(Keys::default().query(&t, "abc").as_bytes(), b"tg:query:{acme}:abc");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The Redis Cluster hash slot of the key (that of its tenant).
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// let keys = Keys::default();
    /// // Every key of a tenant lives in the tenant's slot: one cluster node, multi-key scripts work.
    /// assert_eq!(keys.session(&t, "s1").slot(), keys.ratelimit(&t, "per-user", "user", "u", None).slot());
    /// ```
    pub fn slot(&self) -> u16 {
        hash_slot(self.0.as_bytes())
    }
}

impl fmt::Display for RedisKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedisKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisKey({})", &self.0)
    }
}

/// A SCAN `MATCH` pattern confined to one tenant. Only [`Keys`] makes them; the only glob
/// character in it is the trailing `*`.
///
/// ```
/// use tenant_guard::{keys::Keys, tenant::TenantId};
/// let t = TenantId::new("acme").unwrap();
/// let p = Keys::default().tenant_pattern(&t);
/// assert_eq!(p.as_str(), "tg:*:{acme}*");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyPattern {
    pattern: String,
    slot: u16,
}

impl KeyPattern {
    /// The pattern.
    ///
    /// ```
    /// use tenant_guard::{keys::{KeyKind, Keys}, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// assert_eq!(Keys::default().kind_pattern(KeyKind::Query, &t).as_str(), "tg:query:{acme}:*");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The slot every matching key lives in (the tenant's).
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// let keys = Keys::default();
    /// assert_eq!(keys.tenant_pattern(&t).slot(), keys.query(&t, "h").slot()); // SCAN one node
    /// ```
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// Whether `key` matches, with Redis glob semantics for the `*`/`?` this module emits
    /// (everything else in a pattern is literal, since components are escaped).
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let keys = Keys::default();
    /// let acme = TenantId::new("acme").unwrap();
    /// let p = keys.tenant_pattern(&acme);
    /// assert!(p.matches(keys.session(&acme, "abc").as_str()));
    /// assert!(!p.matches(keys.session(&TenantId::new("acme2").unwrap(), "abc").as_str()));
    /// ```
    pub fn matches(&self, key: &str) -> bool {
        glob_match(self.pattern.as_bytes(), key.as_bytes())
    }
}

impl fmt::Debug for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPattern({})", self.pattern)
    }
}

impl fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard matching with backtracking to the last `*`.
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Redis Cluster's `HASH_SLOT`: CRC16 (XMODEM) of the hash tag if the key has a non-empty
/// `{...}`, else of the whole key, modulo 16384.
///
/// ```
/// use tenant_guard::keys::hash_slot;
/// assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
/// assert_eq!(hash_slot(b"foo"), 12182); // CLUSTER KEYSLOT foo
/// ```
pub fn hash_slot(key: &[u8]) -> u16 {
    let tag = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16::State::<crc16::XMODEM>::calculate(tag) % SLOTS
}

/// Whether a byte must be escaped in a component (must agree with [`ESCAPE`]).
fn needs_escape(b: u8) -> bool {
    !(0x20..0x7f).contains(&b)
        || matches!(
            b,
            b'%' | b':' | b'{' | b'}' | b'*' | b'?' | b'[' | b']' | b'\\'
        )
}

fn push_escaped(out: &mut String, component: &str) {
    // Most components (ids, hashes, route templates) need no escaping: copy them whole.
    if component.bytes().any(needs_escape) {
        out.extend(utf8_percent_encode(component, ESCAPE));
    } else {
        out.push_str(component);
    }
}

/// Escapes one key component (see the module docs).
///
/// ```
/// assert_eq!(tenant_guard::keys::escape("GET /users/{id}"), "GET /users/%7Bid%7D");
/// ```
pub fn escape(component: &str) -> String {
    utf8_percent_encode(component, ESCAPE).to_string()
}

/// Formats keys and patterns under one prefix.
///
/// ```
/// use tenant_guard::{keys::Keys, tenant::TenantId};
/// let t = TenantId::new("acme").unwrap();
/// let keys = Keys::default(); // prefix `tg` (`TG_KEY_PREFIX`)
/// assert_eq!(keys.ai(&t, "gpt-4o", "f00d").as_str(), "tg:ai:{acme}:gpt-4o:f00d");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    prefix: KeyPrefix,
}

impl Keys {
    /// Keys under `prefix`.
    ///
    /// ```
    /// use tenant_guard::keys::{KeyPrefix, Keys};
    /// let keys = Keys::new(KeyPrefix::new("app1").unwrap());
    /// ```
    pub fn new(prefix: KeyPrefix) -> Self {
        Self { prefix }
    }

    /// The prefix.
    ///
    /// ```
    /// use tenant_guard::keys::{KeyPrefix, Keys};
    /// assert_eq!(Keys::new(KeyPrefix::new("app1").unwrap()).prefix().as_str(), "app1");
    /// ```
    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    fn head(&self, kind: KeyKind, tenant: &TenantId, extra: usize) -> String {
        let mut s = String::with_capacity(self.prefix.0.len() + tenant.as_str().len() + 16 + extra);
        s.push_str(&self.prefix.0);
        s.push(':');
        s.push_str(kind.as_str());
        s.push_str(":{");
        s.push_str(tenant.as_str());
        s.push('}');
        s
    }

    /// A key of `kind` for `tenant` with escaped `components` — the building block of the
    /// typed helpers below.
    ///
    /// ```
    /// use tenant_guard::{keys::{Keys, KeyKind}, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// let k = Keys::default().key(KeyKind::Lock, &t, &["fill", "a:b"]);
    /// assert_eq!(k.as_str(), "tg:lock:{acme}:fill:a%3Ab");
    /// ```
    pub fn key(&self, kind: KeyKind, tenant: &TenantId, components: &[&str]) -> RedisKey {
        let extra: usize = components.iter().map(|c| c.len() + 1).sum();
        let mut s = self.head(kind, tenant, extra);
        for c in components {
            s.push(':');
            push_escaped(&mut s, c);
        }
        RedisKey(s)
    }

    /// `tg:ratelimit:{tenant}:<rule>:<identity kind>:<identity>[:<endpoint>]`.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// let k = Keys::default().ratelimit(&t, "per-user", "user", "u-42", Some("GET /api/reports"));
    /// assert_eq!(k.as_str(), "tg:ratelimit:{acme}:per-user:user:u-42:GET /api/reports");
    /// ```
    pub fn ratelimit(
        &self,
        tenant: &TenantId,
        rule: &str,
        identity_kind: &str,
        identity: &str,
        endpoint: Option<&str>,
    ) -> RedisKey {
        self.counter(
            KeyKind::RateLimit,
            tenant,
            rule,
            identity_kind,
            identity,
            endpoint,
        )
    }

    /// The block of the counter [`ratelimit`](Self::ratelimit) names with the same parts:
    /// `tg:ratelimit-block:{tenant}:<rule>:<kind>:<id>[:<endpoint>]`.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// let k = Keys::default().ratelimit_block(&t, "per-user", "user", "u-1", None);
    /// assert_eq!(k.as_str(), "tg:ratelimit-block:{acme}:per-user:user:u-1");
    /// ```
    pub fn ratelimit_block(
        &self,
        tenant: &TenantId,
        rule: &str,
        identity_kind: &str,
        identity: &str,
        endpoint: Option<&str>,
    ) -> RedisKey {
        self.counter(
            KeyKind::RateLimitBlock,
            tenant,
            rule,
            identity_kind,
            identity,
            endpoint,
        )
    }

    /// A rate-limit counter's key (or its block's): rule, identity, endpoint if any.
    fn counter(
        &self,
        kind: KeyKind,
        tenant: &TenantId,
        rule: &str,
        identity_kind: &str,
        identity: &str,
        endpoint: Option<&str>,
    ) -> RedisKey {
        match endpoint {
            Some(e) => self.key(kind, tenant, &[rule, identity_kind, identity, e]),
            None => self.key(kind, tenant, &[rule, identity_kind, identity]),
        }
    }

    /// `tg:session:{tenant}:<session-id>`.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// assert_eq!(Keys::default().session(&t, "s1").as_str(), "tg:session:{acme}:s1");
    /// ```
    pub fn session(&self, tenant: &TenantId, session_id: &str) -> RedisKey {
        self.key(KeyKind::Session, tenant, &[session_id])
    }

    /// `tg:session-index:{tenant}:<user-id>`: the set of a user's session ids.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// assert_eq!(Keys::default().session_index(&t, "alice").as_str(), "tg:session-index:{acme}:alice");
    /// ```
    pub fn session_index(&self, tenant: &TenantId, user_id: &str) -> RedisKey {
        self.key(KeyKind::SessionIndex, tenant, &[user_id])
    }

    /// `tg:query:{tenant}:<hash>`.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// assert_eq!(Keys::default().query(&t, "9f2c").as_str(), "tg:query:{acme}:9f2c");
    /// ```
    pub fn query(&self, tenant: &TenantId, hash: &str) -> RedisKey {
        self.key(KeyKind::Query, tenant, &[hash])
    }

    /// `tg:ai:{tenant}:<model>:<hash>`.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// // A hostile model name cannot reach another key space: `:` and `{` are escaped.
    /// assert_eq!(Keys::default().ai(&t, "m:{x}", "h").as_str(), "tg:ai:{acme}:m%3A%7Bx%7D:h");
    /// ```
    pub fn ai(&self, tenant: &TenantId, model: &str, hash: &str) -> RedisKey {
        self.key(KeyKind::Ai, tenant, &[model, hash])
    }

    /// `tg:cache:{tenant}:<category>:<id>`.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// assert_eq!(Keys::default().cache(&t, "user", "42").as_str(), "tg:cache:{acme}:user:42");
    /// ```
    pub fn cache(&self, tenant: &TenantId, category: &str, id: &str) -> RedisKey {
        self.key(KeyKind::Cache, tenant, &[category, id])
    }

    /// Every key of a tenant: `tg:*:{tenant}:*`.
    ///
    /// ```
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// let p = Keys::default().tenant_pattern(&t);
    /// assert!(p.matches(Keys::default().session(&t, "s1").as_str()));
    /// assert!(!p.matches(Keys::default().session(&TenantId::new("acme2").unwrap(), "s1").as_str()));
    /// ```
    pub fn tenant_pattern(&self, tenant: &TenantId) -> KeyPattern {
        let mut s = String::new();
        s.push_str(&self.prefix.0);
        s.push_str(":*:{");
        s.push_str(tenant.as_str());
        s.push_str("}*");
        self.pattern(s)
    }

    /// Every key of one kind of a tenant: `tg:<kind>:{tenant}:*`.
    ///
    /// ```
    /// use tenant_guard::{keys::{KeyKind, Keys}, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// let p = Keys::default().kind_pattern(KeyKind::Session, &t);
    /// assert_eq!(p.as_str(), "tg:session:{acme}:*");
    /// ```
    pub fn kind_pattern(&self, kind: KeyKind, tenant: &TenantId) -> KeyPattern {
        let mut s = self.head(kind, tenant, 2);
        s.push_str(":*");
        self.pattern(s)
    }

    /// Keys of `kind` for `tenant` whose leading components are exactly `components`:
    /// `tg:cache:{acme}:reports:*`.
    ///
    /// ```
    /// use tenant_guard::{keys::{Keys, KeyKind}, tenant::TenantId};
    /// let t = TenantId::new("acme").unwrap();
    /// let p = Keys::default().prefix_pattern(KeyKind::Cache, &t, &["rep*"]);
    /// assert_eq!(p.as_str(), "tg:cache:{acme}:rep%2A:*");
    /// ```
    pub fn prefix_pattern(
        &self,
        kind: KeyKind,
        tenant: &TenantId,
        components: &[&str],
    ) -> KeyPattern {
        let RedisKey(mut s) = self.key(kind, tenant, components);
        s.push_str(":*");
        self.pattern(s)
    }

    fn pattern(&self, pattern: String) -> KeyPattern {
        let slot = hash_slot(pattern.as_bytes());
        KeyPattern { pattern, slot }
    }
}

#[cfg(feature = "redis")]
impl redis::ToRedisArgs for RedisKey {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.0.as_bytes());
    }
}

#[cfg(feature = "redis")]
impl redis::ToSingleRedisArg for RedisKey {}

#[cfg(test)]
mod tests;
