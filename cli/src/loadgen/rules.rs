//! Client-side rule checks (`load --rule`, and the demo's rules): the units each tenant (or
//! each of its users) was admitted in any window of a rule's length, against its limit.

use std::time::Duration;

use tenant_guard::ratelimit::{EndpointPattern, Policy, Quota, Rule, Scope};
use tenant_guard::tenant::TenantId;

use super::endpoint::{Cost, matches_request};
use super::{Endpoint, Report};

/// A server rule the client checks its admissions against (`load --rule`, and every rule of
/// the demo's configuration: [`RuleCheck::from_policy`]).
///
/// ```
/// use std::time::Duration;
/// use tenant_guard_cli::loadgen::RuleCheck;
/// // The text of a RATE_LIMIT_ENDPOINTS entry: a per-user rule for the endpoint.
/// let r = RuleCheck::parse("ai: POST /api/ai/{*rest} = 5/5s").unwrap();
/// assert_eq!((r.name.as_str(), r.limit, r.window, r.per_user), ("ai", 5, Duration::from_secs(5), true));
/// assert_eq!(r.endpoints[0].to_string(), "POST /api/ai/{*rest}");
/// // A rule over every request, per tenant unless it says `per user`.
/// let t = RuleCheck::parse("per-tenant = 50/5s").unwrap();
/// assert!(t.endpoints.is_empty() && !t.per_user);
/// assert!(RuleCheck::parse("per-user = 100/15m per user").unwrap().per_user);
/// assert!(RuleCheck::parse("nolimit").is_err());
/// let err = RuleCheck::parse("ai=5/5s:user@POST:/api/ai/complete").unwrap_err();
/// assert_eq!(err, "`ai=5/5s:user@POST:/api/ai/complete` is the old form; write `ai: POST /api/ai/complete = 5/5s`");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCheck {
    /// The rule's name (as in the 429 bodies).
    pub name: String,
    /// Units per window.
    pub limit: u32,
    /// Window length.
    pub window: Duration,
    /// Counted per user (else per tenant).
    pub per_user: bool,
    /// Counted per endpoint too (the server keeps a counter per method and route).
    pub per_endpoint: bool,
    /// Only requests matching one of these count (empty: every request); matched against
    /// the requests sent by [`matches_request`](super::matches_request).
    pub endpoints: Vec<EndpointPattern>,
    /// Only this tenant's admissions are checked (its plan's quota); `None`: every tenant's.
    pub tenant: Option<String>,
    /// A token budget: the units are the tokens each answer reports using
    /// (`usage.total_tokens`), not request costs.
    pub tokens: bool,
}

impl RuleCheck {
    /// The accepted form.
    pub const FORM: &'static str = "`[NAME:] METHOD /path = LIMIT/WINDOW` (a RATE_LIMIT_ENDPOINTS \
         entry, counted per user) or `NAME = LIMIT/WINDOW` (every request, counted per tenant), \
         either optionally followed by `per user` or `per tenant`, and `per endpoint`; e.g. \
         `ai: POST /api/ai/{*rest} = 5/5s`, `per-tenant = 50/5s`";

    /// Parses [`FORM`](Self::FORM). A rule with an endpoint is read by the library's
    /// [`Rule::parse_endpoint`], the parser of `RATE_LIMIT_ENDPOINTS`: the same text checks
    /// the same rule. `tenant-guard config` prints each rule in this form (`(rate-limit
    /// rules)`). The former form (`ai=5/5s:user@POST:/api/ai/complete`) is refused with the
    /// text to write instead.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(new) = old_rule(s) {
            return Err(format!("`{s}` is the old form; write `{new}`"));
        }
        let (entry, scope, per_endpoint) = split_scope(s);
        let (lhs, quota) = entry
            .rsplit_once('=')
            .ok_or_else(|| format!("`{s}`: expected {}", Self::FORM))?;
        let (name, quota, rule_scope, endpoints) = if lhs.contains('/') {
            let rule = Rule::parse_endpoint(entry)?;
            (
                rule.name,
                rule.quota,
                rule.scope,
                rule.endpoint.into_iter().collect(),
            )
        } else {
            let name = lhs.trim();
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':') {
                return Err(format!(
                    "`{s}`: a rule over every request is written `NAME = LIMIT/WINDOW`, \
                     one with an endpoint `NAME: METHOD /path = LIMIT/WINDOW`"
                ));
            }
            let q = Quota::parse(quota).map_err(|e| format!("`{s}`: {e}"))?;
            (name.to_string(), q, Scope::Tenant, Vec::new())
        };
        Ok(Self {
            name,
            limit: quota.limit.get(),
            window: quota.window,
            per_user: scope.unwrap_or(rule_scope) == Scope::Caller,
            per_endpoint,
            endpoints,
            tenant: None,
            tokens: false,
        })
    }

    /// Parses a token budget, a `RATE_LIMIT_TOKENS` entry (`tenant: POST /api/ai/{*rest} =
    /// 100000/1m`), read by the library's own parser: checked in the tokens admitted
    /// answers report using.
    ///
    /// ```
    /// use tenant_guard_cli::loadgen::RuleCheck;
    /// let b = RuleCheck::parse_tokens("user: POST /api/ai/{*rest} = 20000/1m").unwrap();
    /// assert_eq!((b.name.as_str(), b.limit, b.per_user, b.tokens), ("tokens-user", 20000, true, true));
    /// assert!(RuleCheck::parse_tokens("POST /api/ai/{*rest} = 10/1m").is_err());
    /// ```
    pub fn parse_tokens(s: &str) -> Result<Self, String> {
        let rule = tenant_guard::tokens::parse_token_rule(s).map_err(String::from)?;
        Ok(Self {
            name: rule.name,
            limit: rule.quota.limit.get(),
            window: rule.quota.window,
            per_user: rule.scope == Scope::Caller,
            per_endpoint: false,
            endpoints: rule.endpoint.into_iter().collect(),
            tenant: None,
            tokens: true,
        })
    }

    /// The checks of every token budget of `config` (`RATE_LIMIT_TOKENS`), for traffic
    /// from `tenants` to `mix` (as [`from_policy`](Self::from_policy)).
    pub fn from_budgets(
        config: &tenant_guard::tokens::TokenConfig,
        mix: &[(Endpoint, &str)],
        tenants: &[&str],
    ) -> Vec<Self> {
        let Ok(policy) = config.policy() else {
            return Vec::new();
        };
        let mut checks = Self::from_policy(&policy, mix, tenants);
        for c in &mut checks {
            c.tokens = true;
        }
        checks
    }

    /// The checks of every rule `policy` enforces, for traffic from `tenants` to `mix`: each
    /// endpoint with the route template it matches on the server (what rules and costs are
    /// written against, e.g. `/api/reports/{day}` for `/api/reports/2026-11-22`).
    ///
    /// Shadow rules are left out (they never deny, so nothing holds them to their limit),
    /// and so are rules for endpoints outside `mix`. Where a tenant's plan changes a rule's
    /// quota, that tenant gets a check of its own.
    ///
    /// ```
    /// use tenant_guard::config::Config;
    /// use tenant_guard_cli::loadgen::{Endpoint, RuleCheck};
    /// let cfg = Config::from_vars([
    ///     ("RATE_LIMIT_TENANT", "50/5s"),
    ///     ("RATE_LIMIT_ENDPOINTS", "ai: POST /api/ai/{*rest} = 5/5s"),
    /// ]).unwrap();
    /// let ai = Endpoint { method: http::Method::POST, path: "/api/ai/complete".into(), weight: 1 };
    /// let checks = RuleCheck::from_policy(&cfg.rate_limit.policy, &[(ai, "/api/ai/complete")], &["acme"]);
    /// let names: Vec<_> = checks.iter().map(|c| c.name.as_str()).collect();
    /// assert_eq!(names, ["per-tenant", "ai", "per-endpoint"]);
    /// assert_eq!((checks[1].limit, checks[1].per_user), (5, true));
    /// assert_eq!(checks[1].endpoints[0].to_string(), "POST /api/ai/complete");
    /// ```
    pub fn from_policy(policy: &Policy, mix: &[(Endpoint, &str)], tenants: &[&str]) -> Vec<Self> {
        let mut out = Vec::new();
        for rule in policy.rules().iter().filter(|r| !r.shadow) {
            let endpoints: Vec<EndpointPattern> = mix
                .iter()
                .filter(|(ep, template)| {
                    rule.endpoint.is_some() && rule.applies(&ep.method, template)
                })
                .filter_map(|(ep, _)| exact(ep))
                .collect();
            if rule.endpoint.is_some() && endpoints.is_empty() {
                continue;
            }
            let quota_of = |tenant: &str| {
                let plan = TenantId::new(tenant)
                    .ok()
                    .and_then(|t| policy.plan_of(&t).map(str::to_string));
                policy.quota(rule, plan.as_deref())
            };
            let check = |quota: Quota, tenant: Option<&str>| Self {
                name: rule.name.clone(),
                limit: quota.limit.get(),
                window: quota.window,
                per_user: rule.scope == Scope::Caller,
                per_endpoint: rule.per_endpoint,
                endpoints: endpoints.clone(),
                tenant: tenant.map(str::to_string),
                tokens: false,
            };
            let quotas: Vec<Quota> = tenants.iter().map(|t| quota_of(t)).collect();
            if quotas.windows(2).all(|w| w[0] == w[1]) {
                out.push(check(quotas.first().copied().unwrap_or(rule.quota), None));
            } else {
                for (t, q) in tenants.iter().zip(quotas) {
                    out.push(check(q, Some(t)));
                }
            }
        }
        out
    }

    fn checks(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }
}

/// The units a request to each endpoint of `mix` costs under `policy` (see
/// [`RuleCheck::from_policy`] for `mix`), for [`Report::rule_rows`].
pub fn costs_from_policy(policy: &Policy, mix: &[(Endpoint, &str)]) -> Vec<Cost> {
    mix.iter()
        .filter_map(|(ep, template)| Some((exact(ep)?, policy.cost(&ep.method, template))))
        .collect()
}

/// The pattern matching exactly the requests to `ep` (its method and path).
fn exact(ep: &Endpoint) -> Option<EndpointPattern> {
    let path = ep.path.split_once('?').map_or(ep.path.as_str(), |(p, _)| p);
    EndpointPattern::parse(&format!("{} {path}", ep.method)).ok()
}

/// The former `--rule` form `NAME=LIMIT/WINDOW[:user][@METHOD:/path]`, as the form to write
/// instead; `None` if `s` is not in it (`NAME=LIMIT/WINDOW` alone is in both forms).
fn old_rule(s: &str) -> Option<String> {
    let (name, rest) = s.split_once('=')?;
    if name.contains('/') {
        return None;
    }
    let (spec, endpoint) = match rest.split_once('@') {
        Some((a, b)) => (a, Some(EndpointPattern::former_form(b)?)),
        None => (rest, None),
    };
    let (quota, per_user) = match spec.trim_end().strip_suffix(":user") {
        Some(q) => (q.trim(), true),
        None => (spec.trim(), false),
    };
    let name = name.trim();
    match (endpoint, per_user) {
        (Some((m, p)), true) => Some(format!("{name}: {m} {p} = {quota}")),
        (Some((m, p)), false) => Some(format!("{name}: {m} {p} = {quota} per tenant")),
        (None, true) => Some(format!("{name} = {quota} per user")),
        (None, false) => None,
    }
}

/// Splits the trailing `per user` or `per tenant`, and `per endpoint`, off a `--rule` value
/// (in either order): the rest, the scope, whether counted per endpoint.
fn split_scope(s: &str) -> (&str, Option<Scope>, bool) {
    let strip = |t: &'_ str, word: &str| -> Option<usize> {
        let r = t.strip_suffix(word)?;
        let r = r.strip_suffix(char::is_whitespace)?.trim_end();
        let r = r.strip_suffix("per")?;
        r.ends_with(char::is_whitespace).then_some(r.len())
    };
    let mut rest = s.trim_end();
    let (mut scope, mut per_endpoint) = (None, false);
    loop {
        if let Some(n) = strip(rest, "endpoint").filter(|_| !per_endpoint) {
            per_endpoint = true;
            rest = rest[..n].trim_end();
        } else if let Some(n) = strip(rest, "user").filter(|_| scope.is_none()) {
            scope = Some(Scope::Caller);
            rest = rest[..n].trim_end();
        } else if let Some(n) = strip(rest, "tenant").filter(|_| scope.is_none()) {
            scope = Some(Scope::Tenant);
            rest = rest[..n].trim_end();
        } else {
            return (rest, scope, per_endpoint);
        }
    }
}

/// Most units in any window `(t - window, t]` of `(time, units)` sorted by time.
fn max_units_in_window(events: &[(Duration, u64)], window: Duration) -> u64 {
    let mut best = 0;
    let mut lo = 0;
    let mut sum = 0;
    for hi in 0..events.len() {
        sum += events[hi].1;
        while events[hi].0 >= events[lo].0 + window {
            sum -= events[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best
}

impl Report {
    /// Per tenant and rule: the 429s the rule sent and, for rules in `rules`, the units
    /// admitted per second and the most units admitted in any window of the rule's length
    /// (per user for per-user rules: the busiest user; likewise per endpoint), with request
    /// costs from `costs` (`(method, path) -> units`, default 1). Returns, per tenant, its
    /// name, the lines and whether every window stayed within its rule's limit.
    pub fn rule_rows(
        &self,
        rules: &[RuleCheck],
        costs: &[Cost],
    ) -> Vec<(String, Vec<String>, bool)> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = Vec::new();
        for t in &self.tenants {
            let mut lines = Vec::new();
            let mut held = true;
            let cost_of = |ep: &Endpoint| {
                costs
                    .iter()
                    .find(|(p, _)| matches_request(p, &ep.method, &ep.path))
                    .map_or(1, |(_, c)| u64::from(*c))
            };
            for r in rules.iter().filter(|r| r.checks(&t.tenant)) {
                let relevant = |e: usize| {
                    r.endpoints.is_empty()
                        || t.endpoints.get(e).is_some_and(|ep| {
                            r.endpoints
                                .iter()
                                .any(|p| matches_request(p, &ep.method, &ep.path))
                        })
                };
                // One count per user and per endpoint where the rule counts them apart.
                let mut counts: std::collections::BTreeMap<(u32, usize), Vec<(Duration, u64)>> =
                    std::collections::BTreeMap::new();
                // Units: a request's cost, or (token budgets) the tokens its answer used.
                let events: Vec<(Duration, u32, usize, u64)> = if r.tokens {
                    t.tokens.clone()
                } else {
                    t.admissions
                        .iter()
                        .map(|&(at, user, e)| (at, user, e, cost_of(&t.endpoints[e])))
                        .collect()
                };
                for (at, user, e, units) in events {
                    if relevant(e) {
                        let key = (
                            if r.per_user { user } else { 0 },
                            if r.per_endpoint { e } else { 0 },
                        );
                        counts.entry(key).or_default().push((at, units));
                    }
                }
                let (worst, rate) = counts.values().fold((0u64, 0f64), |(w, rt), ev| {
                    let units: u64 = ev.iter().map(|e| e.1).sum();
                    (
                        w.max(max_units_in_window(ev, r.window)),
                        rt.max(units as f64 / secs),
                    )
                });
                held &= worst <= u64::from(r.limit);
                let scope = match (r.per_user, r.per_endpoint) {
                    (true, true) => " per user per endpoint",
                    (true, false) => " per user",
                    (false, true) => " per endpoint",
                    (false, false) => "",
                };
                let ep: String = r.endpoints.iter().map(|p| format!(", {p}")).collect();
                let busiest = match (r.per_user, r.per_endpoint) {
                    (true, true) => " (busiest user and endpoint)",
                    (true, false) => " (busiest user)",
                    (false, true) => " (busiest endpoint)",
                    (false, false) => "",
                };
                let (what, units) = if r.tokens {
                    ("budget", "tokens")
                } else {
                    ("rule", "units")
                };
                lines.push(format!(
                    "{what} `{}` ({}/{}{scope}{ep}): 429 x{}, admitted {rate:.1} {units}/s{busiest} vs limit {:.1}/s, most in any {} window {worst} of {}",
                    r.name,
                    r.limit,
                    humantime::format_duration(r.window),
                    t.throttled_by.get(&r.name).copied().unwrap_or(0),
                    f64::from(r.limit) / r.window.as_secs_f64(),
                    humantime::format_duration(r.window),
                    r.limit,
                ));
            }
            for (rule, n) in &t.throttled_by {
                if !rules.iter().any(|r| &r.name == rule && r.checks(&t.tenant)) {
                    lines.push(format!("rule `{rule}`: 429 x{n}"));
                }
            }
            out.push((t.tenant.clone(), lines, held));
        }
        out
    }

    /// [`table`](Self::table) with rows per rule under each tenant (see
    /// [`rule_rows`](Self::rule_rows)); also returns whether every rule held.
    pub fn table_with_rules(
        &self,
        limit: Option<(u32, Duration)>,
        rules: &[RuleCheck],
        costs: &[Cost],
    ) -> (String, bool) {
        let base = self.table(limit);
        let rows = self.rule_rows(rules, costs);
        let mut out = String::new();
        let mut held = true;
        let mut lines = base.lines();
        if let Some(header) = lines.next() {
            out.push_str(header);
            out.push('\n');
        }
        for (line, (_, rule_lines, ok)) in lines.zip(&rows) {
            out.push_str(line);
            out.push('\n');
            for l in rule_lines {
                out.push_str("  └ ");
                out.push_str(l);
                out.push('\n');
            }
            held &= ok;
        }
        out.push_str(&self.stream_table());
        (out, held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use tenant_guard::config::Config;

    fn ep(method: Method, path: &str) -> Endpoint {
        Endpoint {
            method,
            path: path.into(),
            weight: 1,
        }
    }

    #[test]
    fn checks_follow_the_policy_rules_templates_shadows_and_plans() {
        let cfg = Config::from_vars([
            ("RATE_LIMIT_TENANT", "100/5s"),
            (
                "RATE_LIMIT_ENDPOINTS",
                "reports: GET /api/reports/{day} = 7/1m; admin: DELETE /api/cache = 1/1m; \
                 dry: /api/items = 1/1s",
            ),
            ("RATE_LIMIT_SHADOW", "dry"),
            ("RATE_LIMIT_COSTS", "GET /api/reports/{day} = 3"),
            ("RATE_LIMIT_PLANS", "pro: per-tenant=500/5s"),
            ("RATE_LIMIT_TENANT_PLANS", "big=pro"),
        ])
        .unwrap();
        let policy = &cfg.rate_limit.policy;
        let mix = [
            (ep(Method::GET, "/api/items"), "/api/items"),
            (
                ep(Method::GET, "/api/reports/2026-01-02"),
                "/api/reports/{day}",
            ),
        ];
        let checks = RuleCheck::from_policy(policy, &mix, &["small", "big"]);
        let names: Vec<(&str, u32, Option<&str>)> = checks
            .iter()
            .map(|c| (c.name.as_str(), c.limit, c.tenant.as_deref()))
            .collect();
        // `admin` matches no endpoint of the mix, `dry` is a shadow rule: neither is checked.
        // The per-tenant quota differs by plan: a check per tenant.
        assert_eq!(
            names,
            [
                ("per-tenant", 100, Some("small")),
                ("per-tenant", 500, Some("big")),
                ("reports", 7, None),
                ("per-endpoint", 100, None),
            ]
        );
        let reports = &checks[2];
        assert_eq!(
            reports.endpoints,
            [EndpointPattern::parse("GET /api/reports/2026-01-02").unwrap()]
        );
        assert!(reports.per_user && !reports.per_endpoint);
        assert!(checks[3].per_endpoint && checks[3].endpoints.is_empty());
        let costs = costs_from_policy(policy, &mix);
        assert_eq!(costs[0].1, 1);
        assert_eq!(costs[1].1, 3, "the cost is matched on the route template");
    }

    #[test]
    fn rule_texts_scopes_and_old_forms() {
        let r = RuleCheck::parse("ai: POST /api/ai/complete = 5/5s per tenant").unwrap();
        assert!(!r.per_user);
        assert_eq!(r.endpoints[0].to_string(), "POST /api/ai/complete");
        let r = RuleCheck::parse("GET /api/reports/{day} = 30/1m").unwrap();
        assert_eq!(r.name, "GET /api/reports/{day}", "named after the pattern");
        assert!(r.per_user);
        let r = RuleCheck::parse("burst = 10/1s per  user").unwrap();
        assert!(r.per_user && r.endpoints.is_empty() && !r.per_endpoint);
        let r = RuleCheck::parse("per-endpoint = 100/15m per user per endpoint").unwrap();
        assert!(r.per_user && r.per_endpoint);
        let r = RuleCheck::parse("x = 1/1h 30m per endpoint per tenant").unwrap();
        assert!(!r.per_user && r.per_endpoint);
        assert_eq!(r.window, Duration::from_secs(5400));
        assert!(RuleCheck::parse("x = 1/1s per user per user").is_err());
        // `per user` needs its spaces; anything else is a quota problem.
        assert!(RuleCheck::parse("x = 10/1sper user").is_err());
        assert!(RuleCheck::parse("x y = 10/1s").is_err());
        assert!(RuleCheck::parse(" = 10/1s").is_err());
        for (old, new) in [
            (
                "ai=5/5s:user@POST:/api/ai/complete",
                "ai: POST /api/ai/complete = 5/5s",
            ),
            (
                "ai=5/5s@POST:/api/ai/complete",
                "ai: POST /api/ai/complete = 5/5s per tenant",
            ),
            ("per-user=100/15m:user", "per-user = 100/15m per user"),
        ] {
            assert_eq!(
                RuleCheck::parse(old).unwrap_err(),
                format!("`{old}` is the old form; write `{new}`")
            );
            let again = RuleCheck::parse(new).unwrap();
            assert_eq!(again.name, old.split('=').next().unwrap());
        }
        // In an endpoint rule's text, an old endpoint names its new form too.
        let err = RuleCheck::parse("ai: POST:/api/ai/complete = 5/5s").unwrap_err();
        assert!(err.contains("write `POST /api/ai/complete`"), "{err}");
    }

    /// One parser: the text of a `RATE_LIMIT_ENDPOINTS` or `RATE_LIMIT_COSTS` entry, given
    /// to `--rule` or `--cost`, is the rule or cost the server runs; old forms are refused
    /// on both sides with the same new form.
    #[test]
    fn env_entries_and_flags_read_the_same_text() {
        let rule = "ai: POST /api/ai/{*rest} = 5/5s";
        let cost = "POST /api/ai/{*rest} = 5";
        let cfg = Config::from_vars([("RATE_LIMIT_ENDPOINTS", rule), ("RATE_LIMIT_COSTS", cost)])
            .unwrap();
        let policy = &cfg.rate_limit.policy;
        let server = policy.rules().iter().find(|r| r.name == "ai").unwrap();
        let check = RuleCheck::parse(rule).unwrap();
        assert_eq!(check.endpoints, [server.endpoint.clone().unwrap()]);
        assert_eq!(
            (check.limit, check.window, check.per_user),
            (server.quota.limit.get(), server.quota.window, true)
        );
        let (pattern, units) = super::super::parse_cost(cost).unwrap();
        assert_eq!(policy.cost(&Method::POST, "/api/ai/complete"), units);
        assert!(matches_request(&pattern, &Method::POST, "/api/ai/complete"));

        let old = "POST:/api/ai/complete=5";
        let new = "write `POST /api/ai/complete = 5`";
        let env = Config::from_vars([("RATE_LIMIT_COSTS", old)])
            .unwrap_err()
            .to_string();
        assert!(env.contains(new), "{env}");
        assert!(super::super::parse_cost(old).unwrap_err().contains(new));
        let old = "GET:/api/items = 5/5s";
        let env = Config::from_vars([("RATE_LIMIT_ENDPOINTS", old)])
            .unwrap_err()
            .to_string();
        assert!(env.contains("write `GET /api/items = 5/5s`"), "{env}");
        assert!(
            RuleCheck::parse(old)
                .unwrap_err()
                .contains("write `GET /api/items = 5/5s`")
        );
    }

    /// `tenant-guard config` prints each rule as `--rule` reads it: the printed text is
    /// the rule the server runs (name, quota, scope, per endpoint, pattern).
    #[test]
    fn rules_printed_by_config_read_back_as_rule_checks() {
        let cfg = Config::from_vars([
            ("RATE_LIMIT_TENANT", "1000/1m"),
            ("RATE_LIMIT_USER", "100/15m"),
            (
                "RATE_LIMIT_ENDPOINTS",
                "ai: POST /api/ai/{*rest} = 10/1m; GET /api/reports/{day} = 30/1m; any: /x = 1/1s",
            ),
        ])
        .unwrap();
        let printed = cfg
            .effective()
            .into_iter()
            .find(|(k, _)| k == "(rate-limit rules)")
            .unwrap()
            .1;
        let texts: Vec<&str> = printed.split("; ").collect();
        let rules = cfg.rate_limit.policy.rules();
        assert_eq!(texts.len(), rules.len(), "{printed}");
        for (text, rule) in texts.iter().zip(rules) {
            let check = RuleCheck::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(check.name, rule.name, "{text}");
            assert_eq!(
                (check.limit, check.window),
                (rule.quota.limit.get(), rule.quota.window),
                "{text}"
            );
            assert_eq!(check.per_user, rule.scope == Scope::Caller, "{text}");
            assert_eq!(check.per_endpoint, rule.per_endpoint, "{text}");
            assert_eq!(check.endpoints.first(), rule.endpoint.as_ref(), "{text}");
        }
        assert!(
            printed.contains("ai: POST /api/ai/{*rest} = 10/1m per user"),
            "{printed}"
        );
    }
}
