//! Cache keys: categories, canonical key material and SHA-256.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::keys::{KeyKind, Keys, RedisKey};
use crate::tenant::TenantId;

/// What is cached, which decides the key shape and the TTL.
///
/// ```
/// use tenant_guard::cache::Category;
/// assert_eq!(Category::query().name(), "query");
/// assert_eq!(Category::ai("gpt-4o").name(), "ai");
/// assert_eq!(Category::named("reports").name(), "reports");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Category {
    /// Database query results: `query:{tenant}:<hash>`, `QUERY_CACHE_TTL`.
    Query,
    /// AI (LLM) responses of one model: `ai:{tenant}:<model>:<hash>`, `AI_CACHE_TTL`.
    Ai(String),
    /// Anything else, by name: `cache:{tenant}:<name>:<hash>`, `CACHE_TTL_<NAME>` or
    /// `CACHE_TTL`.
    Named(String),
}

impl Category {
    /// The query category.
    ///
    /// ```
    /// use tenant_guard::cache::Category;
    /// assert_eq!(Category::query(), Category::Query);
    /// assert_eq!(Category::query().name(), "query"); // its TTL: QUERY_CACHE_TTL
    /// ```
    pub fn query() -> Self {
        Self::Query
    }

    /// The AI category for one model.
    ///
    /// ```
    /// use tenant_guard::cache::Category;
    /// // One category per model, all named `ai` for TTLs and metrics.
    /// assert_eq!(Category::ai("gpt-4o"), Category::Ai("gpt-4o".into()));
    /// assert_ne!(Category::ai("gpt-4o"), Category::ai("claude-3.5"));
    /// ```
    pub fn ai(model: impl Into<String>) -> Self {
        Self::Ai(model.into())
    }

    /// A named category (`reports`, `user-profile`, ...); names are lowercased.
    ///
    /// ```
    /// use tenant_guard::cache::Category;
    /// assert_eq!(Category::named("Reports"), Category::Named("reports".into()));
    /// assert_eq!(Category::named("User-Profile").name(), "user-profile");
    /// ```
    pub fn named(name: impl Into<String>) -> Self {
        Self::Named(name.into().to_ascii_lowercase())
    }

    /// The name used for TTLs and metrics: `query`, `ai` or the category's name.
    ///
    /// ```
    /// use tenant_guard::cache::Category;
    /// use tenant_guard::config::Config;
    ///
    /// // The name picks the TTL: CACHE_TTL_<NAME>, else CACHE_TTL.
    /// let c = Config::from_vars([("CACHE_TTL_REPORTS", "10m")]).unwrap();
    /// assert_eq!(Category::named("reports").name(), "reports");
    /// assert_eq!(c.cache.ttl_for(Category::named("reports").name()), std::time::Duration::from_secs(600));
    /// ```
    pub fn name(&self) -> &str {
        match self {
            Self::Query => "query",
            Self::Ai(_) => "ai",
            Self::Named(n) => n,
        }
    }

    pub(crate) fn key(&self, keys: &Keys, tenant: &TenantId, hash: &str) -> RedisKey {
        match self {
            Self::Query => keys.query(tenant, hash),
            Self::Ai(model) => keys.ai(tenant, &model_component(model), hash),
            Self::Named(n) => keys.cache(tenant, n, hash),
        }
    }

    /// What names this category's generation key (for `Ai`, per model).
    pub(crate) fn generation_name(&self) -> String {
        match self {
            Self::Query => "query".into(),
            Self::Ai(model) => format!("ai:{}", model_component(model)),
            Self::Named(n) => format!("cache:{n}"),
        }
    }

    /// The SCAN pattern of every entry of this category (for `Ai`, of this model).
    pub(crate) fn pattern(&self, keys: &Keys, tenant: &TenantId) -> crate::keys::KeyPattern {
        match self {
            Self::Query => keys.kind_pattern(KeyKind::Query, tenant),
            Self::Ai(model) => keys.prefix_pattern(KeyKind::Ai, tenant, &[&model_component(model)]),
            Self::Named(n) => keys.prefix_pattern(KeyKind::Cache, tenant, &[n]),
        }
    }
}

/// Longest model name written into a key as it is.
///
/// ```
/// use tenant_guard::cache::{model_component, MAX_MODEL_IN_KEY};
/// let longest = "m".repeat(MAX_MODEL_IN_KEY);
/// assert_eq!(model_component(&longest), longest.as_str());
/// assert!(model_component(&format!("{longest}m")).starts_with("h-")); // one more: hashed
/// ```
pub const MAX_MODEL_IN_KEY: usize = 128;

/// The model as written into AI keys: as it is when short and made of `A-Z a-z 0-9 . _ -
/// / :` (`gpt-4o`, `anthropic/claude-3.5`, `llama3:8b`), else `h-` and the first 32 hex
/// digits of its SHA-256 — a client's model string cannot make a key (and so L1 and
/// Redis memory) grow with its length.
///
/// ```
/// use tenant_guard::cache::model_component;
/// assert_eq!(model_component("gpt-4o"), "gpt-4o");
/// let long = "m".repeat(800_000);
/// let k = model_component(&long);
/// assert!(k.starts_with("h-") && k.len() == 34);
/// assert_ne!(model_component("a b"), "a b");
/// ```
pub fn model_component(model: &str) -> std::borrow::Cow<'_, str> {
    let safe = !model.is_empty()
        && model.len() <= MAX_MODEL_IN_KEY
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b));
    if safe {
        std::borrow::Cow::Borrowed(model)
    } else {
        let mut h = KeyHasher::default();
        h.part("model", model.as_bytes());
        let mut hex = h.finish();
        hex.truncate(32);
        std::borrow::Cow::Owned(format!("h-{hex}"))
    }
}

/// Whose responses an HTTP cache entry may be served to (`CACHE_SCOPE`,
/// `CACHE_SCOPE_<CATEGORY>`).
///
/// ```
/// use tenant_guard::cache::CacheScope;
/// assert_eq!("auto".parse::<CacheScope>().unwrap(), CacheScope::Auto);
/// assert_eq!(CacheScope::default(), CacheScope::Auto);
/// assert_eq!(CacheScope::User.to_string(), "user");
/// assert!("everyone".parse::<CacheScope>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumString, strum::Display)]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
pub enum CacheScope {
    /// A request with credentials (an authenticated user, `Authorization`, a session or any
    /// cookie) is keyed per caller; one without is shared by the tenant (default).
    #[default]
    Auto,
    /// Shared by everyone in the tenant, credentials or not (public data only).
    Tenant,
    /// Always per caller; requests without credentials share one anonymous scope.
    User,
}

impl CacheScope {
    /// Accepted values, for error messages.
    ///
    /// ```
    /// use tenant_guard::{cache::CacheScope, config::Config};
    /// let err = Config::from_vars([("CACHE_SCOPE", "everyone")]).unwrap_err();
    /// assert!(err.problems().iter().any(|p| p.var == "CACHE_SCOPE" && p.expected == CacheScope::FORM));
    /// ```
    pub const FORM: &'static str = "`auto`, `tenant` or `user`";
}

/// Writes `v` as canonical JSON: object keys sorted, no whitespace — so key order and
/// formatting never change a cache key.
///
/// ```
/// let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": [true, {"y":2,"x":1}]}"#).unwrap();
/// let mut out = Vec::new();
/// tenant_guard::cache::canonical_json(&a, &mut out);
/// assert_eq!(out, br#"{"a":[true,{"x":1,"y":2}],"b":1}"#);
/// ```
pub fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Serializing a string cannot fail.
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                canonical_json(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(v, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// SHA-256 over length-prefixed parts, hex-encoded: parts can never run into each other.
#[derive(Default)]
pub(crate) struct KeyHasher(Sha256);

impl KeyHasher {
    pub(crate) fn part(&mut self, label: &str, bytes: &[u8]) -> &mut Self {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub(crate) fn finish(self) -> String {
        let digest = self.0.finalize();
        let mut s = String::with_capacity(64);
        for b in digest {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s
    }
}

/// The hash of a programmatic key material (canonical JSON of any serde value).
pub(crate) fn material_hash(material: &Value) -> String {
    let mut buf = Vec::new();
    canonical_json(material, &mut buf);
    let mut h = KeyHasher::default();
    h.part("material", &buf);
    h.finish()
}

/// What the HTTP layer hashes for one request (see [`http_key`]).
///
/// ```
/// use tenant_guard::cache::{http_key, HttpKeyInput};
///
/// let get = |query: Option<&'static str>, caller: Option<&'static [u8]>| HttpKeyInput {
///     method: "GET", route: "/reports/{day}", query, vary: vec![("accept-language", b"en")],
///     body: b"", json: false, excluded_fields: &[], caller,
/// };
/// // Query pairs are sorted: the same request either way.
/// assert_eq!(http_key(&get(Some("a=1&b=2"), None)).0, http_key(&get(Some("b=2&a=1"), None)).0);
/// // Scoped per caller: another entry.
/// assert_ne!(http_key(&get(None, None)).0, http_key(&get(None, Some(b"user:u-42"))).0);
/// ```
#[derive(Debug, Clone)]
pub struct HttpKeyInput<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The matched route template and the path.
    pub route: &'a str,
    /// The raw query string, if any (pairs are sorted before hashing).
    pub query: Option<&'a str>,
    /// Declared `Vary` headers and their values.
    pub vary: Vec<(&'a str, &'a [u8])>,
    /// The request body.
    pub body: &'a [u8],
    /// Whether the body is JSON (canonicalized before hashing).
    pub json: bool,
    /// Top-level JSON fields left out of the key (never `stream`: a streamed and a whole
    /// answer are different responses).
    pub excluded_fields: &'a [String],
    /// Who the entry is for (see [`CacheScope`]): `None` for the whole tenant.
    pub caller: Option<&'a [u8]>,
}

/// Hashes a request canonically: method, matched route, sorted query pairs, declared Vary
/// headers, the caller (when scoped), and the body (canonical JSON minus excluded top-level
/// fields when it is JSON; a JSON object's `stream` flag always counts). Returns the hash
/// and, for JSON bodies, the `model` field if there is one.
///
/// ```
/// use tenant_guard::cache::{http_key, HttpKeyInput};
/// let input = |body: &'static str| HttpKeyInput {
///     method: "POST", route: "/api/ai/complete", query: None, vary: vec![],
///     body: body.as_bytes(), json: true, excluded_fields: &[], caller: None,
/// };
/// let (a, model) = http_key(&input(r#"{"model":"m","prompt":"hi"}"#));
/// let (b, _) = http_key(&input(r#"{ "prompt": "hi", "model": "m" }"#));
/// assert_eq!((a.len(), a == b, model.as_deref()), (64, true, Some("m")));
/// let (s, _) = http_key(&input(r#"{"model":"m","prompt":"hi","stream":true}"#));
/// assert_ne!(a, s);
/// ```
pub fn http_key(input: &HttpKeyInput<'_>) -> (String, Option<String>) {
    let mut h = KeyHasher::default();
    h.part("method", input.method.as_bytes());
    h.part("route", input.route.as_bytes());
    // Decoded to bytes, not lossily to strings: `%FE` and `%FF` (any invalid UTF-8) must not
    // both become U+FFFD and share an entry. Same splitting as `form_urlencoded::parse`.
    let decode = |s: &str| -> Vec<u8> {
        percent_encoding::percent_decode_str(&s.replace('+', " ")).collect()
    };
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = input
        .query
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    for (k, v) in &pairs {
        h.part("q", k);
        h.part("v", v);
    }
    for (name, value) in &input.vary {
        h.part("h", name.as_bytes());
        h.part("hv", value);
    }
    if let Some(caller) = input.caller {
        h.part("caller", caller);
    }
    let mut model = None;
    let parsed = if input.json && !input.body.is_empty() {
        serde_json::from_slice::<Value>(input.body).ok()
    } else {
        None
    };
    match parsed {
        Some(mut v) => {
            if let Value::Object(map) = &mut v {
                // Streamed or whole: never the same response, whatever is excluded.
                // Only absent, `false` and `null` are a whole answer: servers that coerce
                // (pydantic: `"yes"`, `"true"`, `1`, `"on"` are true) stream for others, so
                // any other value is its own part of the key.
                match map.remove("stream") {
                    None | Some(Value::Bool(false) | Value::Null) => h.part("stream", b"0"),
                    Some(Value::Bool(true)) => h.part("stream", b"1"),
                    Some(other) => {
                        let mut buf = Vec::new();
                        canonical_json(&other, &mut buf);
                        h.part("stream-value", &buf)
                    }
                };
                for f in input.excluded_fields {
                    map.remove(f);
                }
                model = map.get("model").and_then(Value::as_str).map(str::to_string);
            }
            let mut buf = Vec::new();
            canonical_json(&v, &mut buf);
            h.part("json", &buf);
        }
        None => {
            h.part("body", input.body);
        }
    }
    (h.finish(), model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str, query: Option<&str>) -> String {
        http_key(&HttpKeyInput {
            method: "POST",
            route: "/api/ai/complete",
            query,
            vary: vec![],
            body: body.as_bytes(),
            json: true,
            excluded_fields: &["stream".to_string(), "request_id".to_string()],
            caller: None,
        })
        .0
    }

    #[test]
    fn json_order_whitespace_and_excluded_fields_do_not_matter() {
        let a = key(r#"{"model":"m","prompt":"hi","temperature":0.2}"#, None);
        let b = key(
            "{ \"temperature\": 0.2,\n \"prompt\": \"hi\", \"model\": \"m\" }",
            None,
        );
        let c = key(
            r#"{"model":"m","prompt":"hi","temperature":0.2,"stream":false,"request_id":"r-1"}"#,
            None,
        );
        assert_eq!(a, b);
        assert_eq!(a, c);
        // A streamed answer is another response, even with `stream` excluded.
        let streamed = key(
            r#"{"model":"m","prompt":"hi","temperature":0.2,"stream":true}"#,
            None,
        );
        assert_ne!(a, streamed);
        assert_ne!(
            a,
            key(r#"{"model":"m","prompt":"hi","temperature":0.3}"#, None)
        );
        assert_ne!(
            a,
            key(r#"{"model":"n","prompt":"hi","temperature":0.2}"#, None)
        );
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn query_pairs_are_sorted_and_parts_do_not_run_together() {
        assert_eq!(key("", Some("a=1&b=2")), key("", Some("b=2&a=1")));
        assert_ne!(key("", Some("a=1&b=2")), key("", Some("a=12")));
        assert_ne!(key("", Some("a=1")), key("a=1", None));
    }

    #[test]
    fn the_model_is_found() {
        let (_, model) = http_key(&HttpKeyInput {
            method: "POST",
            route: "/r",
            query: None,
            vary: vec![],
            body: br#"{"model":"gpt-4o"}"#,
            json: true,
            excluded_fields: &[],
            caller: None,
        });
        assert_eq!(model.as_deref(), Some("gpt-4o"));
    }
}
