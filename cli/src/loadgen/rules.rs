//! Client-side rule checks (`load --rule`, and the demo's rules): the units each tenant (or
//! each of its users) was admitted in any window of a rule's length, against its limit.

use std::time::Duration;

use http::Method;
use tenant_guard::ratelimit::{Policy, Quota, Scope};
use tenant_guard::tenant::TenantId;

use super::{Endpoint, Report};

/// A server rule the client checks its admissions against (`load --rule`, and every rule of
/// the demo's configuration: [`RuleCheck::from_policy`]).
///
/// ```
/// use std::time::Duration;
/// use tenant_guard_cli::loadgen::RuleCheck;
/// let r = RuleCheck::parse("ai=5/5s:user@POST:/api/ai/complete").unwrap();
/// assert_eq!((r.name.as_str(), r.limit, r.window, r.per_user), ("ai", 5, Duration::from_secs(5), true));
/// let endpoints: Vec<_> = r.endpoints.iter().map(|(m, p)| (m.as_str(), p.as_str())).collect();
/// assert_eq!(endpoints, [("POST", "/api/ai/complete")]);
/// assert!(RuleCheck::parse("per-tenant=50/5s").unwrap().endpoints.is_empty());
/// assert!(RuleCheck::parse("nolimit").is_err());
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
    /// Only requests to these methods and paths count (empty: every request).
    pub endpoints: Vec<(Method, String)>,
    /// Only this tenant's admissions are checked (its plan's quota); `None`: every tenant's.
    pub tenant: Option<String>,
}

impl RuleCheck {
    /// The accepted form.
    pub const FORM: &'static str =
        "NAME=LIMIT/WINDOW[:user][@METHOD:/path], e.g. ai=5/5s:user@POST:/api/ai/complete";

    /// Parses [`FORM`](Self::FORM).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("expected {}", Self::FORM))?;
        let (spec, endpoint) = match rest.split_once('@') {
            Some((a, b)) => (a, Some(b)),
            None => (rest, None),
        };
        let (quota, per_user) = match spec.strip_suffix(":user") {
            Some(q) => (q, true),
            None => (spec, false),
        };
        let q = Quota::parse(quota).map_err(|e| e.to_string())?;
        let endpoints = match endpoint {
            Some(e) => {
                let (m, p) = e
                    .split_once(':')
                    .ok_or_else(|| format!("endpoint `{e}`: expected METHOD:/path"))?;
                let m =
                    Method::from_bytes(m.as_bytes()).map_err(|_| format!("bad method `{m}`"))?;
                vec![(m, p.to_string())]
            }
            None => Vec::new(),
        };
        Ok(Self {
            name: name.trim().to_string(),
            limit: q.limit.get(),
            window: q.window,
            per_user,
            per_endpoint: false,
            endpoints,
            tenant: None,
        })
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
    /// assert_eq!(checks[1].endpoints[0].1, "/api/ai/complete");
    /// ```
    pub fn from_policy(policy: &Policy, mix: &[(Endpoint, &str)], tenants: &[&str]) -> Vec<Self> {
        let mut out = Vec::new();
        for rule in policy.rules().iter().filter(|r| !r.shadow) {
            let endpoints: Vec<(Method, String)> = mix
                .iter()
                .filter(|(ep, template)| {
                    rule.endpoint.is_some() && rule.applies(&ep.method, template)
                })
                .map(|(ep, _)| (ep.method.clone(), ep.path.clone()))
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
                per_user: rule.scope == Scope::User,
                per_endpoint: rule.per_endpoint,
                endpoints: endpoints.clone(),
                tenant: tenant.map(str::to_string),
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
pub fn costs_from_policy(
    policy: &Policy,
    mix: &[(Endpoint, &str)],
) -> Vec<((Method, String), u32)> {
    mix.iter()
        .map(|(ep, template)| {
            (
                (ep.method.clone(), ep.path.clone()),
                policy.cost(&ep.method, template),
            )
        })
        .collect()
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
        costs: &[((Method, String), u32)],
    ) -> Vec<(String, Vec<String>, bool)> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = Vec::new();
        for t in &self.tenants {
            let mut lines = Vec::new();
            let mut held = true;
            let cost_of = |ep: &Endpoint| {
                costs
                    .iter()
                    .find(|((m, p), _)| *m == ep.method && *p == ep.path)
                    .map_or(1, |(_, c)| u64::from(*c))
            };
            for r in rules.iter().filter(|r| r.checks(&t.tenant)) {
                let relevant = |e: usize| {
                    r.endpoints.is_empty()
                        || t.endpoints.get(e).is_some_and(|ep| {
                            r.endpoints
                                .iter()
                                .any(|(m, p)| ep.method == *m && ep.path == *p)
                        })
                };
                // One count per user and per endpoint where the rule counts them apart.
                let mut counts: std::collections::BTreeMap<(u32, usize), Vec<(Duration, u64)>> =
                    std::collections::BTreeMap::new();
                for &(at, user, e) in &t.admissions {
                    if relevant(e) {
                        let key = (
                            if r.per_user { user } else { 0 },
                            if r.per_endpoint { e } else { 0 },
                        );
                        counts
                            .entry(key)
                            .or_default()
                            .push((at, cost_of(&t.endpoints[e])));
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
                let ep: String = r
                    .endpoints
                    .iter()
                    .map(|(m, p)| format!(", {m} {p}"))
                    .collect();
                let busiest = match (r.per_user, r.per_endpoint) {
                    (true, true) => " (busiest user and endpoint)",
                    (true, false) => " (busiest user)",
                    (false, true) => " (busiest endpoint)",
                    (false, false) => "",
                };
                lines.push(format!(
                    "rule `{}` ({}/{}{scope}{ep}): 429 x{}, admitted {rate:.1} units/s{busiest} vs limit {:.1}/s, most in any {} window {worst} of {}",
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
        costs: &[((Method, String), u32)],
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
        (out, held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            [(Method::GET, "/api/reports/2026-01-02".to_string())]
        );
        assert!(reports.per_user && !reports.per_endpoint);
        assert!(checks[3].per_endpoint && checks[3].endpoints.is_empty());
        let costs = costs_from_policy(policy, &mix);
        assert_eq!(costs[0].1, 1);
        assert_eq!(costs[1].1, 3, "the cost is matched on the route template");
    }
}
