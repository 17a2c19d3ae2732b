//! Rules: what is limited, per whom, how much, and the compact syntax used in env vars.
//!
//! ```text
//! quota      LIMIT/WINDOW                         100/15m   1000/60   10/1s
//! endpoint   METHOD /route/template               POST /api/ai/{*rest}   GET /users/{id}   * /x
//! rule       [name:] METHOD /route = LIMIT/WINDOW ai: POST /api/ai/{*rest} = 10/1m
//! cost       METHOD /route = N                    POST /api/ai/complete = 5
//! ```
//!
//! This is the one way to name an endpoint, in `RATE_LIMIT_ENDPOINTS`, `RATE_LIMIT_COSTS`
//! and the load tool's `--endpoint`, `--rule` and `--cost` flags and scenario files (which
//! call these parsers). A trailing `{*name}` segment matches every route under the prefix;
//! anything else matches the route template exactly (the template axum matched, e.g.
//! `/users/{id}`, never the raw path). `*` (or `ANY`, or no method at all: `/health`)
//! matches every method. The load tool's former `GET:/path` form is refused with a message
//! that shows the form to write instead.

use std::fmt;
use std::num::NonZeroU32;

use http::Method;

use crate::parse::InvalidValue;

pub use super::block::Block;
pub(crate) use super::block::parse_blocks;
pub use super::lease::Lease;
pub(crate) use super::lease::parse_leases;
pub use super::quota::Quota;

/// Largest limit of an exact-log rule: its sorted set holds one member per admitted unit.
///
/// ```
/// use tenant_guard::ratelimit::{Algorithm, Policy, Quota, Rule, Scope, MAX_EXACT_LIMIT};
/// let big = Quota::parse(&format!("{}/1m", MAX_EXACT_LIMIT + 1)).unwrap();
/// let err = Policy::builder()
///     .rule(Rule::new("per-tenant", Scope::Tenant, big).algorithm(Algorithm::Exact))
///     .build();
/// assert!(err.is_err());
/// ```
pub const MAX_EXACT_LIMIT: u32 = 100_000;

/// Sub-windows of the compact algorithm (microsecond resolution). With `N` buckets the
/// compact window admits about `N / (N + 1)` of what the exact log admits under steady
/// overload: 96.8% for 30 (at least 95% for windows of 30 ms and more).
///
/// ```
/// assert_eq!(tenant_guard::ratelimit::COMPACT_BUCKETS, 30);
/// ```
pub const COMPACT_BUCKETS: u64 = 30;

/// How a rule counts.
///
/// ```
/// use tenant_guard::ratelimit::{Algorithm, Quota, Rule, Scope};
///
/// assert_eq!("gcra".parse::<Algorithm>().unwrap(), Algorithm::Gcra);
/// // 10 requests per second with bursts of 20, for one rule (others keep the default).
/// let rule = Rule::new("search", Scope::Caller, Quota::parse("20/2s").unwrap())
///     .algorithm(Algorithm::Gcra);
/// assert_eq!(rule.algorithm, Some(Algorithm::Gcra));
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, strum::EnumString, strum::Display,
)]
///
/// ```
/// use tenant_guard::ratelimit::Algorithm;
/// assert_eq!("compact".parse::<Algorithm>().unwrap(), Algorithm::Compact);
/// assert_eq!("log".parse::<Algorithm>().unwrap(), Algorithm::Exact);
/// assert_eq!(Algorithm::Gcra.to_string(), "gcra");
/// assert_eq!(Algorithm::default(), Algorithm::Compact);
/// ```
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
pub enum Algorithm {
    /// A sorted-set log of admissions: exact, one member per admitted unit (capped at the
    /// limit), so memory grows with the limit.
    #[strum(to_string = "exact", serialize = "log")]
    Exact,
    /// 30 sub-window buckets counted conservatively: bounded memory per key (under 200
    /// bytes in Redis), never over-admits, admits at least 95% of what `Exact` admits.
    /// The default: memory per key does not grow with the limit.
    #[default]
    #[strum(to_string = "compact", serialize = "window", serialize = "sliding")]
    Compact,
    /// GCRA, for "rate + burst" rules: `LIMIT/WINDOW` is a burst of `LIMIT` units at once
    /// that refills at one unit every `WINDOW / LIMIT` (a token bucket, kept as one
    /// timestamp per key). 10 per second with bursts of 20 is `20/2s`. Unlike the two
    /// sliding windows it admits up to `LIMIT + t * LIMIT / WINDOW` in any time `t` — up
    /// to twice the limit in one window's length — in exchange for smooth spacing.
    Gcra,
}

/// Whose usage a rule counts.
///
/// ```
/// use tenant_guard::ratelimit::{Quota, Rule, Scope};
/// // One counter for the whole tenant, and one per caller within it.
/// let tenant = Rule::new("per-tenant", Scope::Tenant, Quota::parse("1000/1m").unwrap());
/// let caller = Rule::new("per-user", Scope::Caller, Quota::parse("100/15m").unwrap());
/// assert_eq!(serde_json::to_string(&caller.scope).unwrap(), "\"user\"");
/// # let _ = tenant;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Scope {
    /// All requests of the tenant together.
    #[serde(rename = "tenant")]
    Tenant,
    /// Each caller within the tenant: the authenticated user id when a session or an
    /// upstream layer published one, else the client IP (so an anonymous client is counted
    /// by address, and a rule of this scope doubles as a per-IP rule). Named `User` until
    /// 0.1.0; the environment and JSON vocabulary keep `user` (`per-user`, `"scope": "user"`).
    #[serde(rename = "user")]
    Caller,
}

/// Matches requests by method and route template.
///
/// ```
/// use http::Method;
/// use tenant_guard::ratelimit::EndpointPattern;
/// let p = EndpointPattern::parse("POST /api/ai/{*rest}").unwrap();
/// assert!(p.matches(&Method::POST, "/api/ai/complete"));
/// assert!(!p.matches(&Method::GET, "/api/ai/complete"));
/// assert_eq!(p.to_string(), "POST /api/ai/{*rest}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPattern {
    method: Option<Method>,
    template: String,
    /// `Some(prefix)` for a trailing `{*rest}` pattern.
    prefix: Option<String>,
}

impl EndpointPattern {
    /// The method and path of the former `METHOD:/path` form (no whitespace), which every
    /// parser refuses with the text to write instead; for tools that read variants of it.
    ///
    /// ```
    /// use tenant_guard::ratelimit::EndpointPattern;
    /// assert_eq!(EndpointPattern::former_form("GET:/api/items"), Some(("GET", "/api/items")));
    /// assert_eq!(EndpointPattern::former_form("GET /api/items"), None);
    /// ```
    pub fn former_form(s: &str) -> Option<(&str, &str)> {
        let s = s.trim();
        let (m, p) = s.split_once(':')?;
        let method_like = m == "*" || (!m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()));
        (method_like && p.starts_with('/') && !s.contains(char::is_whitespace)).then_some((m, p))
    }

    /// Accepted form, for error messages.
    ///
    /// ```
    /// use tenant_guard::ratelimit::EndpointPattern;
    /// assert!(EndpointPattern::FORM.starts_with("METHOD /route/template"));
    /// ```
    pub const FORM: &'static str = "METHOD /route/template (`*` for any method), e.g. `POST /api/ai/{*rest}`, `GET /users/{id}` or `* /health`";

    /// Parses `POST /api/ai/{*rest}`.
    ///
    /// ```
    /// use tenant_guard::ratelimit::EndpointPattern;
    /// let p = EndpointPattern::parse("POST /api/ai/{*rest}").unwrap();
    /// assert!(p.matches(&http::Method::POST, "/api/ai/complete"));
    /// assert!(p.matches(&http::Method::POST, "/api/ai/{*rest}"));
    /// assert!(!p.matches(&http::Method::GET, "/api/ai/complete"));
    /// assert!(!p.matches(&http::Method::POST, "/api/aix"));
    /// // `*` matches every method; the former `METHOD:/path` form is refused.
    /// assert!(EndpointPattern::parse("* /health").unwrap().matches(&http::Method::HEAD, "/health"));
    /// let err = EndpointPattern::parse("GET:/api/items").unwrap_err();
    /// assert_eq!(err.reason(), "`GET:/api/items` is the old form; write `GET /api/items`");
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let s = s.trim();
        if let Some((m, p)) = EndpointPattern::former_form(s) {
            return Err(format!("`{s}` is the old form; write `{m} {p}`").into());
        }
        let (method, path) = match s.split_once(char::is_whitespace) {
            Some((m, p)) => (Some(m), p.trim()),
            None => (None, s),
        };
        let method = match method {
            None | Some("*") | Some("ANY") => None,
            Some(m) => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("`{m}` is not an HTTP method"))?,
            ),
        };
        if !path.starts_with('/') {
            return Err(format!("route `{path}` does not start with `/`").into());
        }
        if path.contains(char::is_whitespace) || path.contains('?') {
            return Err(format!("route `{path}` contains whitespace or a query").into());
        }
        let prefix = match path.rfind("/{*") {
            Some(i) if path.ends_with('}') => Some(path[..=i].to_string()),
            _ => None,
        };
        Ok(Self {
            method,
            template: path.to_string(),
            prefix,
        })
    }

    /// Parses `METHOD /route = N`: an endpoint and a whole number of at least 1. One entry
    /// of `RATE_LIMIT_COSTS` (`what` is `"cost"`), and the load tool's `--cost` and
    /// `--endpoint` values (`what` names the number in error messages).
    ///
    /// ```
    /// use tenant_guard::ratelimit::EndpointPattern;
    /// let (p, n) = EndpointPattern::parse_numbered("POST /api/ai/complete = 5", "cost").unwrap();
    /// assert_eq!((p.to_string().as_str(), n.get()), ("POST /api/ai/complete", 5));
    /// assert!(EndpointPattern::parse_numbered("POST /x = 0", "cost").is_err());
    /// let err = EndpointPattern::parse_numbered("POST:/api/ai/complete=5", "cost").unwrap_err();
    /// assert_eq!(err.reason(), "`POST:/api/ai/complete=5` is the old form; write `POST /api/ai/complete = 5`");
    /// ```
    pub fn parse_numbered(s: &str, what: &str) -> Result<(Self, NonZeroU32), InvalidValue> {
        let s = s.trim();
        let (pat, n) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("`{s}` has no `= {}`", what.to_ascii_uppercase()))?;
        if let Some((m, p)) = EndpointPattern::former_form(pat) {
            return Err(format!("`{s}` is the old form; write `{m} {p} = {}`", n.trim()).into());
        }
        let pattern = Self::parse(pat)?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{what} `{}` is not a whole number", n.trim()))?;
        let n = NonZeroU32::new(n).ok_or_else(|| format!("{what} must be at least 1"))?;
        Ok((pattern, n))
    }

    /// The method matched, `None` for every method (`*`).
    ///
    /// ```
    /// use tenant_guard::ratelimit::EndpointPattern;
    /// assert_eq!(EndpointPattern::parse("post /x").unwrap().method(), Some(&http::Method::POST));
    /// assert_eq!(EndpointPattern::parse("* /x").unwrap().method(), None);
    /// ```
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The route template as written, e.g. `/api/ai/{*rest}`.
    ///
    /// ```
    /// use tenant_guard::ratelimit::EndpointPattern;
    /// assert_eq!(EndpointPattern::parse("POST /api/ai/{*rest}").unwrap().template(), "/api/ai/{*rest}");
    /// ```
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Whether a request with `method` whose matched route is `template` matches.
    ///
    /// ```
    /// use http::Method;
    /// use tenant_guard::ratelimit::EndpointPattern;
    /// let any = EndpointPattern::parse("* /health").unwrap();
    /// assert!(any.matches(&Method::GET, "/health"));
    /// assert!(any.matches(&Method::HEAD, "/health"));
    /// assert!(!any.matches(&Method::GET, "/healthz"));
    /// ```
    pub fn matches(&self, method: &Method, template: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        match &self.prefix {
            Some(p) => template.starts_with(p.as_str()) || template == self.template,
            None => template == self.template,
        }
    }
}

/// The methods of RFC 9110 (and PATCH), as written in the former `METHOD:/path` form: a
/// `RATE_LIMIT_ENDPOINTS` entry starting `GET:/` is that form, not a rule named `GET`.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

impl fmt::Display for EndpointPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.method {
            Some(m) => write!(f, "{m} {}", self.template),
            None => f.write_str(&self.template),
        }
    }
}

/// One rule.
///
/// ```
/// use tenant_guard::ratelimit::{Quota, Rule, Scope};
/// let rule = Rule::new("per-user", Scope::Caller, Quota::parse("100/15m").unwrap()).per_endpoint();
/// assert_eq!(rule.name, "per-user");
/// assert!(rule.per_endpoint);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Name in headers, problem bodies, metrics and keys (`per-user`).
    pub name: String,
    /// Whose usage is counted.
    pub scope: Scope,
    /// How much.
    pub quota: Quota,
    /// Only requests matching this pattern are counted (all if `None`).
    pub endpoint: Option<EndpointPattern>,
    /// A separate counter per matched endpoint (method + route template).
    pub per_endpoint: bool,
    /// Counting algorithm (`None`: the rule set's default).
    pub algorithm: Option<Algorithm>,
    /// Shadow (dry-run): decisions are recorded, never enforced.
    pub shadow: bool,
    /// Once this rule denies an identity, it refuses it for this long
    /// (`RATE_LIMIT_BLOCK`; `None`: only while over the limit).
    pub block: Option<Block>,
    /// A calendar quota: the limit holds per day, week or month (in the policy's
    /// [`QuotaCalendar`](super::QuotaCalendar)), reset at the boundary, instead of per
    /// sliding window.
    pub period: Option<super::Period>,
    /// Hot counters of this rule may be leased to an instance (`RATE_LIMIT_LEASE`; `None`:
    /// every check asks the store).
    pub lease: Option<Lease>,
}

impl Rule {
    /// A rule counting every request of the scope.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Quota, Rule, Scope};
    /// let r = Rule::new("per-user", Scope::Caller, Quota::parse("100/15m").unwrap());
    /// assert!(!r.shadow);
    /// ```
    pub fn new(name: impl Into<String>, scope: Scope, quota: Quota) -> Self {
        Self {
            name: name.into(),
            scope,
            quota,
            endpoint: None,
            per_endpoint: false,
            algorithm: None,
            shadow: false,
            block: None,
            period: None,
            lease: None,
        }
    }

    /// A calendar quota: `limit` units per `period` of the policy's calendar, for `scope`.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Period, Rule, Scope};
    /// let r = Rule::calendar("quota-tenant", Scope::Tenant, 10_000, Period::Month);
    /// assert_eq!((r.quota.limit.get(), r.period), (10_000, Some(Period::Month)));
    /// ```
    ///
    /// # Panics
    /// If `limit` is 0.
    pub fn calendar(
        name: impl Into<String>,
        scope: Scope,
        limit: u32,
        period: super::Period,
    ) -> Self {
        let mut r = Self::new(name, scope, Quota::new(limit, period.window()));
        // Counted in a compact window at least as long as the period (see `calendar`).
        r.algorithm = Some(Algorithm::Compact);
        r.period = Some(period);
        r
    }

    /// Parses one entry of `RATE_LIMIT_ENDPOINTS`, `[name:] METHOD /route = LIMIT/WINDOW`:
    /// a per-user rule for the endpoint, named `name` (else after the pattern). The load
    /// tool's `--rule` reads the same text with this function.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Rule, Scope};
    /// let r = Rule::parse_endpoint("ai: POST /api/ai/{*rest} = 5/5s").unwrap();
    /// assert_eq!((r.name.as_str(), r.scope, r.quota.to_string().as_str()), ("ai", Scope::Caller, "5/5s"));
    /// assert!(r.applies(&http::Method::POST, "/api/ai/complete"));
    /// assert_eq!(Rule::parse_endpoint("GET /api/reports/{day} = 30/1m").unwrap().name, "GET /api/reports/{day}");
    /// let err = Rule::parse_endpoint("GET:/api/items = 5/5s").unwrap_err();
    /// assert_eq!(err.reason(), "`GET:/api/items = 5/5s` is the old form; write `GET /api/items = 5/5s`");
    /// // Methods are case-insensitive in the old form too: not a rule named `post`.
    /// assert!(Rule::parse_endpoint("post:/api/x = 5/5s").unwrap_err().reason().contains("old form"));
    /// ```
    pub fn parse_endpoint(s: &str) -> Result<Self, InvalidValue> {
        let part = s.trim();
        let (lhs, q) = part
            .rsplit_once('=')
            .ok_or_else(|| format!("`{part}` has no `= LIMIT/WINDOW`"))?;
        let lhs = lhs.trim();
        if let Some((m, p)) = EndpointPattern::former_form(lhs)
            .filter(|(m, _)| STANDARD_METHODS.iter().any(|s| s.eq_ignore_ascii_case(m)))
        {
            return Err(format!("`{part}` is the old form; write `{m} {p} = {}`", q.trim()).into());
        }
        let quota = Quota::parse(q).map_err(|e| format!("`{part}`: {e}"))?;
        let (name, pat) = match lhs.split_once(':') {
            Some((n, p)) if !n.contains('/') && !n.contains(' ') => (Some(n.trim()), p.trim()),
            _ => (None, lhs),
        };
        let pattern = EndpointPattern::parse(pat).map_err(|e| format!("`{part}`: {e}"))?;
        let name = name.map_or_else(|| pattern.to_string(), str::to_string);
        Ok(Rule::new(name, Scope::Caller, quota).for_endpoint(pattern))
    }

    /// Counts only requests matching `pattern`.
    ///
    /// ```
    /// use http::Method;
    /// use tenant_guard::ratelimit::{EndpointPattern, Quota, Rule, Scope};
    /// let ai = Rule::new("ai", Scope::Caller, Quota::parse("10/1m").unwrap())
    ///     .for_endpoint(EndpointPattern::parse("POST /api/ai/{*rest}").unwrap());
    /// assert!(ai.applies(&Method::POST, "/api/ai/complete"));
    /// assert!(!ai.applies(&Method::GET, "/api/items"));
    /// ```
    #[must_use]
    pub fn for_endpoint(mut self, pattern: EndpointPattern) -> Self {
        self.endpoint = Some(pattern);
        self
    }

    /// Keeps one counter per endpoint (method + route template).
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Quota, Rule, Scope};
    /// let rule = Rule::new("per-endpoint", Scope::Caller, Quota::parse("20/1m").unwrap()).per_endpoint();
    /// assert!(rule.per_endpoint);
    /// ```
    #[must_use]
    pub fn per_endpoint(mut self) -> Self {
        self.per_endpoint = true;
        self
    }

    /// Uses a specific algorithm.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Algorithm, Quota, Rule, Scope};
    /// let rule = Rule::new("burst", Scope::Caller, Quota::parse("20/1s").unwrap()).algorithm(Algorithm::Gcra);
    /// assert_eq!(rule.algorithm, Some(Algorithm::Gcra));
    /// ```
    #[must_use]
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// Dry-run: record, never block.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Quota, Rule, Scope};
    /// let rule = Rule::new("trial", Scope::Caller, Quota::parse("5/1m").unwrap()).shadow(true);
    /// assert!(rule.shadow);
    /// ```
    #[must_use]
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Keeps refusing an identity for `block` once this rule has denied it.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Block, Quota, Rule, Scope};
    /// let block = Block::parse("5m").unwrap();
    /// let rule = Rule::new("login", Scope::Caller, Quota::parse("5/1m").unwrap()).block(block);
    /// assert_eq!(rule.block, Some(block));
    /// ```
    #[must_use]
    pub fn block(mut self, block: Block) -> Self {
        self.block = Some(block);
        self
    }

    /// Lets an instance reserve slices of this rule's hot counters and admit from them in
    /// process ([`Lease`]).
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Lease, Quota, Rule, Scope};
    /// let r = Rule::new("per-tenant", Scope::Tenant, Quota::parse("100000/1m").unwrap())
    ///     .lease(Lease::parse("200/100ms").unwrap());
    /// assert_eq!(r.lease.unwrap().units.get(), 200);
    /// ```
    #[must_use]
    pub fn lease(mut self, lease: Lease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The window `quota` is counted in under this rule: its own, except for a calendar
    /// quota, whose window is its period's (a plan or runtime limit changes only its limit).
    pub(crate) fn window_ms(&self, quota: &Quota) -> u64 {
        match self.period {
            Some(p) => u64::try_from(p.window().as_millis()).unwrap_or(u64::MAX),
            None => quota.window_ms(),
        }
    }

    /// Whether the rule applies to a request.
    ///
    /// ```
    /// use http::Method;
    /// use tenant_guard::ratelimit::{Quota, Rule, Scope};
    ///
    /// let all = Rule::new("per-user", Scope::Caller, Quota::parse("100/1m").unwrap());
    /// assert!(all.applies(&Method::DELETE, "/anything")); // no endpoint: every request
    /// let ai = Rule::parse_endpoint("ai: POST /api/ai/{*rest} = 20/1m").unwrap();
    /// assert!(ai.applies(&Method::POST, "/api/ai/{*rest}"));
    /// assert!(!ai.applies(&Method::GET, "/api/items"));
    /// ```
    pub fn applies(&self, method: &Method, template: &str) -> bool {
        self.endpoint
            .as_ref()
            .is_none_or(|p| p.matches(method, template))
    }
}

/// Parses `NAME=QUOTA, NAME=QUOTA` (a plan's overrides).
pub(crate) fn parse_overrides(s: &str) -> Result<Vec<(String, Quota)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, q) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not RULE=LIMIT/WINDOW"))?;
        let q = Quota::parse(q).map_err(|e| format!("`{part}`: {e}"))?;
        out.push((name.trim().to_string(), q));
    }
    Ok(out)
}

/// Parses `[name:] METHOD /route = LIMIT/WINDOW; ...` into per-user endpoint rules (each
/// entry by [`Rule::parse_endpoint`]).
pub(crate) fn parse_endpoint_rules(s: &str) -> Result<Vec<Rule>, String> {
    let mut out: Vec<Rule> = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let rule = Rule::parse_endpoint(part)?;
        if out.iter().any(|r| r.name == rule.name) {
            return Err(format!("rule name `{}` is used twice", rule.name));
        }
        out.push(rule);
    }
    Ok(out)
}

/// Parses `METHOD /route = COST; ...` (each entry by [`EndpointPattern::parse_numbered`]).
pub(crate) fn parse_costs(s: &str) -> Result<Vec<(EndpointPattern, NonZeroU32)>, String> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            EndpointPattern::parse_numbered(part, "cost").map_err(|e| {
                let e = String::from(e);
                if e.starts_with(&format!("`{part}`")) {
                    e
                } else {
                    format!("`{part}`: {e}")
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quotas() {
        assert_eq!(
            Quota::parse("100/900").unwrap().window,
            Duration::from_secs(900)
        );
        assert_eq!(
            Quota::parse(" 5 / 250ms ").unwrap().window,
            Duration::from_millis(250)
        );
        for bad in ["", "100", "0/1m", "x/1m", "10/abc", "10/0", "-1/1m"] {
            assert!(Quota::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns() {
        let p = EndpointPattern::parse("get /users/{id}").unwrap();
        assert!(p.matches(&Method::GET, "/users/{id}"));
        assert!(!p.matches(&Method::GET, "/users/42"));
        let any = EndpointPattern::parse("/health").unwrap();
        assert!(any.matches(&Method::POST, "/health"));
        assert!(EndpointPattern::parse("GET users").is_err());
        assert!(EndpointPattern::parse("G@T /x").is_err());
    }

    #[test]
    fn endpoint_rules() {
        let rules =
            parse_endpoint_rules("ai: POST /api/ai/{*rest} = 10/1m; GET /api/reports/{day}=30/1m")
                .unwrap();
        assert_eq!(rules[0].name, "ai");
        assert_eq!(rules[1].name, "GET /api/reports/{day}");
        assert!(rules[0].applies(&Method::POST, "/api/ai/complete"));
        let err = parse_endpoint_rules("POST /x = ten/1m").unwrap_err();
        assert!(err.contains("`POST /x = ten/1m`"), "{err}");
        assert!(parse_endpoint_rules("a: /x=1/1s; a: /y=1/1s").is_err());
    }

    #[test]
    fn old_endpoint_forms_name_the_new_one() {
        let err = parse_endpoint_rules("GET:/api/items = 5/5s").unwrap_err();
        assert_eq!(
            err,
            "`GET:/api/items = 5/5s` is the old form; write `GET /api/items = 5/5s`"
        );
        let err = parse_endpoint_rules("ai: POST:/api/ai/{*rest} = 5/5s").unwrap_err();
        assert!(
            err.ends_with("`POST:/api/ai/{*rest}` is the old form; write `POST /api/ai/{*rest}`"),
            "{err}"
        );
        // A rule name before a bare route is not the old form.
        let rules = parse_endpoint_rules("ai:/api/ai/{*rest} = 5/5s").unwrap();
        assert_eq!(rules[0].name, "ai");
        let err = parse_costs("POST:/api/ai/complete=5").unwrap_err();
        assert_eq!(
            err,
            "`POST:/api/ai/complete=5` is the old form; write `POST /api/ai/complete = 5`"
        );
        let err = EndpointPattern::parse("*:/x").unwrap_err();
        assert_eq!(err.reason(), "`*:/x` is the old form; write `* /x`");
    }

    #[test]
    fn rule_entries_and_cost_entries_are_one_grammar() {
        let text = "POST /api/ai/{*rest}";
        let rule = Rule::parse_endpoint(&format!("{text} = 5/5s")).unwrap();
        let (cost, _) = EndpointPattern::parse_numbered(&format!("{text} = 5"), "cost").unwrap();
        assert_eq!(rule.endpoint.as_ref(), Some(&cost));
        assert_eq!(Some(&cost), EndpointPattern::parse(text).ok().as_ref());
        let star = EndpointPattern::parse("* /x").unwrap();
        assert_eq!(star, EndpointPattern::parse("/x").unwrap());
        assert_eq!(star, EndpointPattern::parse("ANY /x").unwrap());
        assert_eq!(star.method(), None);
    }

    #[test]
    fn costs_and_overrides() {
        let c = parse_costs("POST /api/ai/{*rest}=5").unwrap();
        assert_eq!(c[0].1.get(), 5);
        assert!(parse_costs("/x=0").is_err());
        let o = parse_overrides("per-tenant=5000/1m, per-user=500/15m").unwrap();
        assert_eq!(o.len(), 2);
        assert!(parse_overrides("per-tenant").is_err());
    }
}
