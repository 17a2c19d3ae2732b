//! Endpoints as the load tool reads them, in the library's one grammar (`METHOD /path`, `*`
//! for any method, parsed by [`EndpointPattern`]): `--endpoint` and scenario entries
//! (`GET /api/items = 3`), `--cost` (`POST /api/ai/complete = 5`, a `RATE_LIMIT_COSTS`
//! entry); and how a pattern is matched against the requests the tool sends. The former
//! forms (`GET:/api/items:3`, `POST:/api/ai/complete=5`) are refused with the text to write.

use http::Method;
use tenant_guard::ratelimit::EndpointPattern;

use super::Endpoint;

/// Units a request costs, for the rule checks: requests matching the pattern cost this many
/// (`--cost`, and the costs of a configuration: [`costs_from_policy`](super::costs_from_policy)).
pub type Cost = (EndpointPattern, u32);

impl Endpoint {
    /// The accepted form.
    pub const FORM: &'static str =
        "`METHOD /path [= WEIGHT]`, e.g. `GET /api/items = 3` or `POST /api/ai/complete`";

    /// Parses `METHOD /path [= WEIGHT]` (weight 1 if left out): an endpoint of a traffic mix.
    /// The method and path are read by [`EndpointPattern::parse`], the weight like a
    /// `RATE_LIMIT_COSTS` cost ([`EndpointPattern::parse_numbered`]); a request needs a
    /// method (not `*`) and a path (not a route template).
    ///
    /// ```
    /// use tenant_guard_cli::loadgen::Endpoint;
    /// let e = Endpoint::parse("GET /api/items = 3").unwrap();
    /// assert_eq!((e.method.as_str(), e.path.as_str(), e.weight), ("GET", "/api/items", 3));
    /// assert_eq!(Endpoint::parse("post /api/ai/complete").unwrap().weight, 1);
    /// let err = Endpoint::parse("GET:/api/items:3").unwrap_err();
    /// assert_eq!(err, "`GET:/api/items:3` is the old form; write `GET /api/items = 3`");
    /// assert!(Endpoint::parse("* /api/items").is_err());
    /// assert!(Endpoint::parse("GET /api/reports/{day}").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some((m, p, w)) = old_endpoint_with_weight(s) {
            let weight = w.map(|w| format!(" = {w}")).unwrap_or_default();
            return Err(format!("`{s}` is the old form; write `{m} {p}{weight}`"));
        }
        let (pattern, weight) = if s.contains('=') {
            let (p, w) = EndpointPattern::parse_numbered(s, "weight")?;
            (p, w.get())
        } else {
            (EndpointPattern::parse(s)?, 1)
        };
        let path = pattern.template();
        let method = pattern.method().cloned().ok_or_else(|| {
            format!("`{s}` names no method; a request needs one, e.g. `GET {path}`")
        })?;
        if path.contains(['{', '}']) {
            return Err(format!(
                "`{path}` is a route template; name a path to request, e.g. `/api/reports/1` \
                 (rules and costs take templates)"
            ));
        }
        Ok(Self {
            method,
            path: path.to_string(),
            weight,
        })
    }
}

impl std::fmt::Display for Endpoint {
    /// The text [`Endpoint::parse`] reads back: `GET /api/items = 3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} = {}", self.method, self.path, self.weight)
    }
}

/// Parses `--cost`: `METHOD /path = N`, exactly a `RATE_LIMIT_COSTS` entry (the library's
/// [`EndpointPattern::parse_numbered`]).
///
/// ```
/// let (pattern, cost) = tenant_guard_cli::loadgen::parse_cost("POST /api/ai/{*rest} = 5").unwrap();
/// assert_eq!((pattern.to_string().as_str(), cost), ("POST /api/ai/{*rest}", 5));
/// let err = tenant_guard_cli::loadgen::parse_cost("POST:/api/ai/complete=5").unwrap_err();
/// assert_eq!(err, "`POST:/api/ai/complete=5` is the old form; write `POST /api/ai/complete = 5`");
/// ```
pub fn parse_cost(s: &str) -> Result<Cost, String> {
    let (pattern, n) = EndpointPattern::parse_numbered(s, "cost")?;
    Ok((pattern, n.get()))
}

/// Whether a request the tool sends (`method`, `path`) falls under `pattern` the way the
/// server's router would match it: a `{name}` segment matches any one non-empty segment, a
/// trailing `{*name}` everything below its prefix, other segments themselves; a query is
/// ignored. (On the server, patterns are matched against the route template the router
/// chose; the tool sees only paths.)
///
/// ```
/// use tenant_guard::ratelimit::EndpointPattern;
/// use tenant_guard_cli::loadgen::matches_request;
/// let reports = EndpointPattern::parse("GET /api/reports/{day}").unwrap();
/// assert!(matches_request(&reports, &http::Method::GET, "/api/reports/2026-11-22"));
/// assert!(!matches_request(&reports, &http::Method::GET, "/api/reports/2026-11-22/x"));
/// let ai = EndpointPattern::parse("* /api/ai/{*rest}").unwrap();
/// assert!(matches_request(&ai, &http::Method::POST, "/api/ai/complete"));
/// assert!(!matches_request(&ai, &http::Method::POST, "/api/aix"));
/// ```
pub fn matches_request(pattern: &EndpointPattern, method: &Method, path: &str) -> bool {
    if pattern.method().is_some_and(|m| m != method) {
        return false;
    }
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let mut want = pattern.template().split('/').peekable();
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), g) if w.starts_with("{*") && w.ends_with('}') && want.peek().is_none() => {
                return g.is_some();
            }
            (Some(w), Some(g)) if w.len() > 2 && w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// The former `--endpoint` form `METHOD:/path[:WEIGHT]`: method, path and weight.
fn old_endpoint_with_weight(s: &str) -> Option<(&str, &str, Option<&str>)> {
    let (m, rest) = EndpointPattern::former_form(s)?;
    Some(match rest.rsplit_once(':') {
        Some((p, w)) if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => (m, p, Some(w)),
        _ => (m, rest, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> EndpointPattern {
        EndpointPattern::parse(s).unwrap()
    }

    #[test]
    fn requests_match_templates_segment_by_segment() {
        let get = Method::GET;
        let p = pattern("GET /users/{id}/posts");
        assert!(matches_request(&p, &get, "/users/42/posts"));
        assert!(matches_request(&p, &get, "/users/42/posts?page=2"));
        assert!(!matches_request(&p, &get, "/users//posts"));
        assert!(!matches_request(&p, &get, "/users/42"));
        assert!(!matches_request(&p, &Method::POST, "/users/42/posts"));
        let exact = pattern("GET /api/items");
        assert!(matches_request(&exact, &get, "/api/items"));
        assert!(!matches_request(&exact, &get, "/api/items/1"));
        assert!(!matches_request(&exact, &get, "/api/item"));
        // A catch-all matches below its prefix, as the library's patterns do on templates.
        let all = pattern("/api/ai/{*rest}");
        assert!(matches_request(&all, &Method::PUT, "/api/ai/a/b/c"));
        assert!(matches_request(&all, &get, "/api/ai/"));
        assert!(!matches_request(&all, &get, "/api/ai"));
    }

    #[test]
    fn endpoints_print_back_as_they_parse() {
        for text in ["GET /api/items = 3", "DELETE /x = 1"] {
            assert_eq!(Endpoint::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Endpoint::parse("GET:/api/items").unwrap_err(),
            "`GET:/api/items` is the old form; write `GET /api/items`"
        );
        let err = Endpoint::parse("GET /x = 0").unwrap_err();
        assert!(err.contains("weight must be at least 1"), "{err}");
        let err = Endpoint::parse("/x").unwrap_err();
        assert!(err.contains("e.g. `GET /x`"), "{err}");
    }
}
