//! Client-side rule checks (`load --rule`, and the demo's rules): the units each tenant (or
//! each of its users) was admitted in any window of a rule's length, against its limit.

use std::time::Duration;

use http::Method;

use super::{Endpoint, Report};

/// A server rule the client checks its admissions against (`load --rule`).
///
/// ```
/// use std::time::Duration;
/// use tenant_guard_cli::loadgen::RuleCheck;
/// let r = RuleCheck::parse("ai=5/5s:user@POST:/api/ai/complete").unwrap();
/// assert_eq!((r.name.as_str(), r.limit, r.window, r.per_user), ("ai", 5, Duration::from_secs(5), true));
/// assert_eq!(r.endpoint.as_ref().map(|(m, p)| (m.as_str(), p.as_str())), Some(("POST", "/api/ai/complete")));
/// assert!(RuleCheck::parse("per-tenant=50/5s").unwrap().endpoint.is_none());
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
    /// Only requests to this method and path count (else all).
    pub endpoint: Option<(Method, String)>,
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
        let q = tenant_guard::ratelimit::Quota::parse(quota).map_err(|e| e.to_string())?;
        let endpoint = match endpoint {
            Some(e) => {
                let (m, p) = e
                    .split_once(':')
                    .ok_or_else(|| format!("endpoint `{e}`: expected METHOD:/path"))?;
                let m =
                    Method::from_bytes(m.as_bytes()).map_err(|_| format!("bad method `{m}`"))?;
                Some((m, p.to_string()))
            }
            None => None,
        };
        Ok(Self {
            name: name.trim().to_string(),
            limit: q.limit.get(),
            window: q.window,
            per_user,
            endpoint,
        })
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
    /// (per user for per-user rules: the busiest user), with request costs from `costs`
    /// (`(method, path) -> units`, default 1). Returns, per tenant, its name, the lines and
    /// whether every window stayed within its rule's limit.
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
            for r in rules {
                let relevant = |e: usize| {
                    r.endpoint.as_ref().is_none_or(|(m, p)| {
                        t.endpoints
                            .get(e)
                            .is_some_and(|ep| ep.method == *m && ep.path == *p)
                    })
                };
                let mut by_user: std::collections::BTreeMap<u32, Vec<(Duration, u64)>> =
                    std::collections::BTreeMap::new();
                for &(at, user, e) in &t.admissions {
                    if relevant(e) {
                        let key = if r.per_user { user } else { 0 };
                        by_user
                            .entry(key)
                            .or_default()
                            .push((at, cost_of(&t.endpoints[e])));
                    }
                }
                let (worst, rate) = by_user.values().fold((0u64, 0f64), |(w, rt), ev| {
                    let units: u64 = ev.iter().map(|e| e.1).sum();
                    (
                        w.max(max_units_in_window(ev, r.window)),
                        rt.max(units as f64 / secs),
                    )
                });
                held &= worst <= u64::from(r.limit);
                let scope = if r.per_user { " per user" } else { "" };
                let ep = r
                    .endpoint
                    .as_ref()
                    .map_or_else(String::new, |(m, p)| format!(", {m} {p}"));
                let busiest = if r.per_user { " (busiest user)" } else { "" };
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
                if !rules.iter().any(|r| &r.name == rule) {
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
