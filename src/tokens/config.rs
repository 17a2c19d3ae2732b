//! Settings of token budgets: the type [`crate::config::Config`] assembles from the
//! environment (`RATE_LIMIT_TOKENS`, `RATE_LIMIT_TOKENS_DEFAULT_MAX`,
//! `RATE_LIMIT_TOKENS_MAX_BODY`, `RATE_LIMIT_TOKENS_CACHE_HITS`).

use crate::parse::InvalidValue;
use crate::ratelimit::{Algorithm, Policy, PolicyError, Rule, Scope};

/// Parses one token rule, `tenant: METHOD /route = LIMIT/WINDOW` or `user: ...`, with an
/// optional name after the scope (`user: embed: POST /api/embed = 5000/1m`). Unnamed rules
/// are called `tokens-tenant` and `tokens-user` (names must differ: give the second rule of
/// a scope a name).
///
/// ```
/// use tenant_guard::ratelimit::Scope;
/// use tenant_guard::tokens::parse_token_rule;
/// let r = parse_token_rule("tenant: POST /api/ai/{*rest} = 100000/1m").unwrap();
/// assert_eq!((r.name.as_str(), r.scope), ("tokens-tenant", Scope::Tenant));
/// assert_eq!(r.quota.to_string(), "100000/1m");
/// assert!(r.applies(&http::Method::POST, "/api/ai/complete"));
/// let named = parse_token_rule("user: embed: POST /api/embed = 5000/1m").unwrap();
/// assert_eq!((named.name.as_str(), named.scope), ("embed", Scope::Caller));
/// assert!(parse_token_rule("POST /api/ai/{*rest} = 10/1m").is_err());
/// ```
pub fn parse_token_rule(s: &str) -> Result<Rule, InvalidValue> {
    let s = s.trim();
    let (scope, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` names no `tenant:` or `user:` scope"))?;
    let scope = match scope.trim() {
        "tenant" => Scope::Tenant,
        "user" => Scope::Caller,
        other => return Err(format!("`{s}`: unknown scope `{other}` (`tenant` or `user`)").into()),
    };
    let mut rule = Rule::parse_endpoint(rest)?;
    let pattern = rule.endpoint.as_ref().map(ToString::to_string);
    if pattern.as_deref() == Some(rule.name.as_str()) {
        rule.name = match scope {
            Scope::Tenant => "tokens-tenant".into(),
            Scope::Caller => "tokens-user".into(),
        };
    }
    rule.scope = scope;
    Ok(rule.algorithm(Algorithm::Compact))
}

/// Parses `;`-separated token rules (`RATE_LIMIT_TOKENS`).
///
/// ```
/// let rules = tenant_guard::tokens::parse_token_rules(
///     "tenant: POST /api/ai/{*rest} = 100000/1m; user: POST /api/ai/{*rest} = 20000/1m").unwrap();
/// assert_eq!(rules.len(), 2);
/// ```
pub fn parse_token_rules(s: &str) -> Result<Vec<Rule>, InvalidValue> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_token_rule)
        .collect()
}

/// Whether a response the cache answered (`X-Cache: HIT` or `STALE`) costs tokens.
///
/// ```
/// use tenant_guard::{config::Config, tokens::CacheHits};
///
/// assert_eq!("charged".parse::<CacheHits>().unwrap(), CacheHits::Charged);
/// assert_eq!(CacheHits::Free.to_string(), "free");
/// let c = Config::from_vars([("RATE_LIMIT_TOKENS_CACHE_HITS", "charged")]).unwrap();
/// assert_eq!(c.tokens.cache_hits, CacheHits::Charged);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum CacheHits {
    /// Refunded in full (no model ran).
    Free,
    /// Settled like any other response (its `usage`, else the estimate).
    Charged,
}

/// Token budgets: what the layer reserves per request and how it learns the real usage.
///
/// ```
/// use tenant_guard::tokens::{parse_token_rule, TokenConfig};
/// let c = TokenConfig::default()
///     .rule(parse_token_rule("user: POST /api/ai/{*rest} = 20000/1m").unwrap());
/// assert!(c.is_enabled());
/// assert_eq!(c.default_max_tokens, 256);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenConfig {
    /// The budgets (`RATE_LIMIT_TOKENS`), always counted in compact sliding windows (an
    /// exact log would keep one entry per token).
    pub rules: Vec<Rule>,
    /// Completion tokens assumed for a request whose body names no `max_tokens`
    /// (`RATE_LIMIT_TOKENS_DEFAULT_MAX`, default 256).
    pub default_max_tokens: u32,
    /// Most request body bytes read to estimate (`RATE_LIMIT_TOKENS_MAX_BODY`, default
    /// 1 MiB): a longer body is refused with 413 before anything is reserved.
    pub max_body: usize,
    /// Whether cache hits cost tokens (`RATE_LIMIT_TOKENS_CACHE_HITS`, default `free`).
    pub cache_hits: CacheHits,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default_max_tokens: 256,
            max_body: 1 << 20,
            cache_hits: CacheHits::Free,
        }
    }
}

impl TokenConfig {
    /// With one more budget (see [`parse_token_rule`]); its algorithm is set to compact.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Algorithm, Rule, Scope, Quota};
    /// use tenant_guard::tokens::TokenConfig;
    ///
    /// let rule = Rule::new("tokens-tenant", Scope::Tenant, Quota::parse("100000/1m").unwrap());
    /// let c = TokenConfig::default().rule(rule);
    /// assert_eq!(c.rules[0].algorithm, Some(Algorithm::Compact));
    /// ```
    #[must_use]
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule.algorithm(Algorithm::Compact));
        self
    }

    /// Whether any budget is set.
    ///
    /// ```
    /// use tenant_guard::tokens::{parse_token_rule, TokenConfig};
    ///
    /// assert!(!TokenConfig::default().is_enabled());
    /// let c = TokenConfig::default().rule(parse_token_rule("tenant: POST /api/ai/{*rest} = 100000/1m").unwrap());
    /// assert!(c.is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The budgets as a rate-limit policy (every rule compact).
    ///
    /// ```
    /// use tenant_guard::ratelimit::Algorithm;
    /// use tenant_guard::tokens::{parse_token_rules, TokenConfig};
    ///
    /// let mut c = TokenConfig::default();
    /// c.rules = parse_token_rules("tenant: POST /api/ai/{*rest} = 100000/1m; user: POST /api/ai/{*rest} = 20000/1m").unwrap();
    /// let policy = c.policy().unwrap();
    /// assert_eq!(policy.rules().len(), 2);
    /// assert_eq!(policy.algorithm(), Algorithm::Compact);
    /// ```
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        self.rules
            .iter()
            .cloned()
            .fold(Policy::builder().algorithm(Algorithm::Compact), |b, r| {
                b.rule(r.algorithm(Algorithm::Compact))
            })
            .build()
    }
}
