//! Reads the variables of rate limiting (`RATE_LIMIT_*`).

use std::num::NonZeroU32;

use super::{Config, Reader, rl};
use crate::parse;
use crate::parse::{BOOL_FORM, DURATION_FORM, fmt_duration};
use crate::ratelimit::{
    ACCESS_LIST_FORM, AccessList, Algorithm, OutageMode, Policy, PolicyProblem, Quota,
    RateLimitConfig, Rule, Scope, default_rule,
};
use crate::tenant::TenantId;

const QUOTA_VARS_FORM: &str = Quota::FORM;

pub(super) fn read_rate_limit(r: &mut Reader) -> RateLimitConfig {
    let d = RateLimitConfig::default();
    let max = r
        .parse(
            "RATE_LIMIT_MAX",
            |v| {
                parse::integer::<u32>(v)
                    .and_then(|n| NonZeroU32::new(n).ok_or_else(|| "must be at least 1".into()))
            },
            "a whole number of requests per window, at least 1",
        )
        .unwrap_or(d.max);
    let mut window = r.duration("RATE_LIMIT_WINDOW", d.window, true);
    if window > Quota::MAX_WINDOW {
        let raw = r.get("RATE_LIMIT_WINDOW").map(str::to_string);
        r.problem(
            "RATE_LIMIT_WINDOW",
            raw.as_deref(),
            "longer than 10 years".into(),
            DURATION_FORM,
        );
        window = d.window;
    }
    let enabled = r
        .parse("RATE_LIMIT_ENABLED", parse::boolean, BOOL_FORM)
        .unwrap_or(true);
    let tenant = r.parse("RATE_LIMIT_TENANT", parse_quota, QUOTA_VARS_FORM);
    let user = r.parse("RATE_LIMIT_USER", parse_quota, QUOTA_VARS_FORM);
    let calendar_form = "a whole number, `/` and `day`, `week` or `month`, e.g. `10000/month`";
    let calendar_quota = |v: &str| crate::ratelimit::parse_calendar_quota(v).map_err(String::from);
    let quota_tenant = r.parse("RATE_LIMIT_QUOTA_TENANT", calendar_quota, calendar_form);
    let quota_user = r.parse("RATE_LIMIT_QUOTA_USER", calendar_quota, calendar_form);
    let mut calendar = r
        .parse(
            "RATE_LIMIT_QUOTA_TZ",
            |v| crate::ratelimit::QuotaCalendar::new(v).map_err(String::from),
            "an IANA time zone name, e.g. `UTC` or `America/New_York`",
        )
        .unwrap_or_default();
    let anchors = r
        .parse(
            "RATE_LIMIT_QUOTA_ANCHORS",
            |v| {
                let mut out = Vec::new();
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (t, d) = part
                        .split_once('=')
                        .ok_or_else(|| format!("`{part}` is not TENANT=DAY"))?;
                    let t = TenantId::new(t.trim()).map_err(|e| format!("`{part}`: {e}"))?;
                    let d: u8 = d
                        .trim()
                        .parse()
                        .map_err(|_| format!("`{part}`: the day is not a whole number"))?;
                    out.push((t, d));
                }
                Ok(out)
            },
            "`TENANT=DAY` entries (day of the month, 1 to 31) separated by `,`, e.g. `acme=15`",
        )
        .unwrap_or_default();
    for (t, d) in anchors {
        match calendar.clone().anchor(t.as_str(), d) {
            Ok(c) => calendar = c,
            Err(e) => r.problem(
                "RATE_LIMIT_QUOTA_ANCHORS",
                None,
                e.reason().to_string(),
                "days of the month between 1 and 31",
            ),
        }
    }
    let endpoints = r
        .parse(
            "RATE_LIMIT_ENDPOINTS",
            rl::parse_endpoint_rules,
            "`[name:] METHOD /route = LIMIT/WINDOW` entries separated by `;` (`*` for any method), e.g. `ai: POST /api/ai/{*rest} = 10/1m`",
        )
        .unwrap_or_default();
    let costs = r
        .parse(
            "RATE_LIMIT_COSTS",
            rl::parse_costs,
            "`METHOD /route = COST` entries separated by `;` (`*` for any method), e.g. `POST /api/ai/complete = 5`",
        )
        .unwrap_or_default();
    let algorithm = r
        .parse(
            "RATE_LIMIT_ALGORITHM",
            parse::choice::<Algorithm>,
            "`compact`, `exact` or `gcra`",
        )
        .unwrap_or_default();
    let plans = r
        .parse(
            "RATE_LIMIT_PLANS",
            |v| {
                let mut out = Vec::new();
                for part in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                    let (name, rest) = part
                        .split_once(':')
                        .ok_or_else(|| format!("`{part}` has no `PLAN:`"))?;
                    out.push((name.trim().to_string(), rl::parse_overrides(rest)?));
                }
                Ok(out)
            },
            "`PLAN: RULE=LIMIT/WINDOW, ...` entries separated by `;`, e.g. `pro: per-tenant=5000/1m, per-user=500/15m`",
        )
        .unwrap_or_default();
    let tenant_plans = r
        .parse(
            "RATE_LIMIT_TENANT_PLANS",
            |v| {
                let mut out = Vec::new();
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (t, p) = part
                        .split_once('=')
                        .ok_or_else(|| format!("`{part}` is not TENANT=PLAN"))?;
                    let t = TenantId::new(t.trim()).map_err(|e| format!("`{part}`: {e}"))?;
                    out.push((t, p.trim().to_string()));
                }
                Ok(out)
            },
            "`TENANT=PLAN` entries separated by `,`, e.g. `acme=pro,globex=free`",
        )
        .unwrap_or_default();
    let shadow: Vec<String> = r
        .get("RATE_LIMIT_SHADOW")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let blocks = r
        .parse(
            "RATE_LIMIT_BLOCK",
            crate::ratelimit::rules::parse_blocks,
            "`RULE=DURATION` or `RULE=FIRST..MAX` entries separated by `,`, e.g. `per-user=5m, ai=1m..1h`",
        )
        .unwrap_or_default();

    let leases = r
        .parse(
            "RATE_LIMIT_LEASE",
            crate::ratelimit::rules::parse_leases,
            "`RULE=UNITS/DURATION` entries separated by `,`, e.g. `per-tenant=200/100ms`",
        )
        .unwrap_or_default();

    let mut rules = Vec::new();
    if enabled {
        if let Some(q) = tenant {
            rules.push(Rule::new("per-tenant", Scope::Tenant, q));
        }
        if let Some(q) = user {
            rules.push(Rule::new("per-user", Scope::Caller, q));
        }
        if let Some((n, p)) = quota_tenant {
            rules.push(Rule::calendar("quota-tenant", Scope::Tenant, n.get(), p));
        }
        if let Some((n, p)) = quota_user {
            rules.push(Rule::calendar("quota-user", Scope::Caller, n.get(), p));
        }
        rules.extend(endpoints);
        rules.push(default_rule(max, window));
    }
    let names: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
    let mut b = Policy::builder()
        .algorithm(algorithm)
        .quota_calendar(calendar);
    for rule in rules {
        b = b.rule(rule);
    }
    for (p, c) in costs {
        b = b.cost(p, c.get());
    }
    for (name, overrides) in &plans {
        b = b.plan(name, overrides.iter().map(|(r, q)| (r.as_str(), *q)));
    }
    for (t, p) in &tenant_plans {
        b = b.tenant_plan(t.as_str(), p);
    }
    for s in &shadow {
        b = b.shadow(s);
    }
    for (rule, block) in &blocks {
        b = b.block(rule, *block);
    }
    for (rule, lease) in &leases {
        b = b.lease(rule, *lease);
    }
    // The builder checks the rule set; each problem is blamed on the variable that names
    // the missing or offending thing.
    let policy = match b.build() {
        Ok(p) => p,
        Err(e) => {
            for problem in e.problems() {
                let (var, value, expected) = match problem {
                    PolicyProblem::UnknownShadow { rule } => (
                        "RATE_LIMIT_SHADOW",
                        Some(rule.as_str()),
                        format!("a comma list of rule names: {}", names.join(", ")),
                    ),
                    PolicyProblem::UnknownBlock { rule }
                    | PolicyProblem::TenantBlock { rule }
                    | PolicyProblem::BadBlock { rule } => (
                        "RATE_LIMIT_BLOCK",
                        Some(rule.as_str()),
                        format!("blocks of user rules named: {}", names.join(", ")),
                    ),
                    PolicyProblem::UnknownLease { rule } | PolicyProblem::BadLease { rule, .. } => (
                        "RATE_LIMIT_LEASE",
                        Some(rule.as_str()),
                        format!(
                            "leases of compact, enforced, non-blocking rules named: {}",
                            names.join(", ")
                        ),
                    ),
                    PolicyProblem::UnknownPlanRule { .. } => (
                        "RATE_LIMIT_PLANS",
                        None,
                        "overrides of existing rules (per-tenant, per-user, per-endpoint or a \
                         RATE_LIMIT_ENDPOINTS name)"
                            .into(),
                    ),
                    PolicyProblem::UnknownTenantPlan { .. } => (
                        "RATE_LIMIT_TENANT_PLANS",
                        None,
                        "plans defined in RATE_LIMIT_PLANS".into(),
                    ),
                    PolicyProblem::DuplicateRule { .. } | PolicyProblem::BadRuleName { .. } => (
                        "RATE_LIMIT_ENDPOINTS",
                        None,
                        "rule names other than per-tenant, per-user and per-endpoint, each used once"
                            .into(),
                    ),
                    PolicyProblem::ExactLimitTooHigh { .. } | PolicyProblem::BadWindow { .. } => (
                        "RATE_LIMIT_ALGORITHM",
                        None,
                        "`compact` for limits above 100000".into(),
                    ),
                };
                r.problem(var, value, problem.to_string(), &expected);
            }
            Policy::default()
        }
    };

    let outage = r
        .parse(
            "RATE_LIMIT_OUTAGE",
            parse::choice::<OutageMode>,
            "`open`, `closed` or `local`",
        )
        .unwrap_or(d.outage);
    let instances = r
        .parse(
            "RATE_LIMIT_INSTANCES",
            |v| {
                parse::integer::<u32>(v)
                    .and_then(|n| NonZeroU32::new(n).ok_or_else(|| "must be at least 1".into()))
            },
            "the number of app instances, at least 1",
        )
        .unwrap_or(d.instances);
    let trusted_proxies = r
        .parse(
            "RATE_LIMIT_TRUSTED_PROXIES",
            |v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<ipnet::IpNet>()
                            .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| format!("`{p}` is not an IP address or CIDR block"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            },
            "a comma list of IPs or CIDR blocks, e.g. `10.0.0.0/8, 127.0.0.1`",
        )
        .unwrap_or_default();
    let forwarded_header = r
        .parse(
            "RATE_LIMIT_FORWARDED_HEADER",
            parse::choice::<crate::ratelimit::ForwardedHeader>,
            crate::ratelimit::ForwardedHeader::FORM,
        )
        .unwrap_or_default();
    let user_header = r.parse(
        "RATE_LIMIT_USER_HEADER",
        |v| {
            http::HeaderName::try_from(v.trim())
                .map(|_| v.trim().to_string())
                .map_err(|_| "not a valid header name".to_string())
        },
        "a header name, e.g. `X-User-ID`",
    );
    let legacy_headers = r
        .parse("RATE_LIMIT_LEGACY_HEADERS", parse::boolean, BOOL_FORM)
        .unwrap_or(false);
    let burst = r.parse("RATE_LIMIT_BURST", parse_quota, QUOTA_VARS_FORM);
    let per_ip = r.parse("RATE_LIMIT_IP", parse_quota, QUOTA_VARS_FORM);
    let deny_cache = r
        .parse(
            "RATE_LIMIT_DENY_CACHE",
            parse::integer::<u64>,
            "a whole number of entries (0 turns the cache off)",
        )
        .unwrap_or(d.deny_cache);
    let outage_keys = r
        .parse(
            "RATE_LIMIT_OUTAGE_KEYS",
            |v| {
                parse::integer::<u64>(v).and_then(|n| {
                    if n >= 2 {
                        Ok(n)
                    } else {
                        Err("must be at least 2".into())
                    }
                })
            },
            "a whole number of counters, at least 2",
        )
        .unwrap_or(d.outage_keys);
    let list = |r: &mut Reader, var: &str| {
        r.parse(
            var,
            |v| AccessList::parse(v).map_err(String::from),
            ACCESS_LIST_FORM,
        )
        .unwrap_or_default()
    };
    let exempt = list(r, "RATE_LIMIT_EXEMPT");
    let deny = list(r, "RATE_LIMIT_DENY");
    RateLimitConfig {
        max,
        window,
        policy,
        outage,
        instances,
        trusted_proxies,
        forwarded_header,
        user_header,
        legacy_headers,
        burst,
        per_ip,
        deny_cache,
        outage_keys,
        exempt,
        deny,
    }
}

/// The effective values of these variables, as `tenant-guard config` prints them.
pub(super) fn effective(c: &Config, push: &mut impl FnMut(&str, String)) {
    push("RATE_LIMIT_MAX", c.rate_limit.max.to_string());
    push("RATE_LIMIT_WINDOW", fmt_duration(c.rate_limit.window));
    let rl = &c.rate_limit;
    let rules: Vec<String> = rl
        .policy
        .rules()
        .iter()
        .map(|r| {
            let scope = match r.scope {
                Scope::Tenant => "tenant",
                Scope::Caller => "user",
            };
            // The form `tenant-guard load --rule` reads (a RATE_LIMIT_ENDPOINTS entry for
            // endpoint rules, unnamed if named after its pattern), with whose requests count.
            let head = match &r.endpoint {
                Some(e) if r.name == e.to_string() => r.name.clone(),
                Some(e) => format!("{}: {e}", r.name),
                None => r.name.clone(),
            };
            let per = if r.per_endpoint { " per endpoint" } else { "" };
            let shadow = if r.shadow { " (shadow)" } else { "" };
            let block = r
                .block
                .map_or_else(String::new, |b| format!(" (blocks for {b})"));
            let block = match r.period {
                Some(p) => format!(" per {p} (calendar){block}"),
                None => block,
            };
            let lease = r
                .lease
                .map_or_else(String::new, |l| format!(" (leased {l})"));
            format!(
                "{head} = {} per {scope}{per}{shadow}{block}{lease}",
                r.quota
            )
        })
        .collect();
    push(
        "(rate-limit rules)",
        if rules.is_empty() {
            "(none: RATE_LIMIT_ENABLED=false)".into()
        } else {
            rules.join("; ")
        },
    );
    let costs: Vec<String> = rl
        .policy
        .costs()
        .iter()
        .map(|(p, c)| format!("{p} = {c}"))
        .collect();
    push("RATE_LIMIT_COSTS", none_or(costs.join("; ")));
    let plans: Vec<String> = rl
        .policy
        .plans()
        .iter()
        .map(|(plan, quotas)| {
            let q: Vec<String> = quotas.iter().map(|(r, q)| format!("{r}={q}")).collect();
            format!("{plan}: {}", q.join(", "))
        })
        .collect();
    push("RATE_LIMIT_PLANS", none_or(plans.join("; ")));
    let tenants: Vec<String> = rl
        .policy
        .tenant_plans()
        .iter()
        .map(|(t, p)| format!("{t}={p}"))
        .collect();
    push("RATE_LIMIT_TENANT_PLANS", none_or(tenants.join(",")));
    let cal = rl.policy.quota_calendar();
    push("RATE_LIMIT_QUOTA_TZ", cal.time_zone().to_string());
    let mut anchors: Vec<String> = cal.anchors().map(|(t, d)| format!("{t}={d}")).collect();
    anchors.sort();
    push("RATE_LIMIT_QUOTA_ANCHORS", none_or(anchors.join(",")));
    push(
        "RATE_LIMIT_ALGORITHM",
        format!("{:?}", rl.policy.algorithm()).to_lowercase(),
    );
    push("RATE_LIMIT_OUTAGE", rl.outage.to_string());
    push("RATE_LIMIT_INSTANCES", rl.instances.to_string());
    let proxies: Vec<String> = rl.trusted_proxies.iter().map(ToString::to_string).collect();
    push(
        "RATE_LIMIT_TRUSTED_PROXIES",
        if proxies.is_empty() {
            "(none: forwarding headers ignored)".into()
        } else {
            proxies.join(",")
        },
    );
    push(
        "RATE_LIMIT_FORWARDED_HEADER",
        rl.forwarded_header.to_string(),
    );
    push(
        "RATE_LIMIT_USER_HEADER",
        rl.user_header.clone().unwrap_or_else(|| "(none)".into()),
    );
    push("RATE_LIMIT_LEGACY_HEADERS", rl.legacy_headers.to_string());
    push(
        "RATE_LIMIT_BURST",
        rl.burst.map_or_else(|| "(none)".into(), |q| q.to_string()),
    );
    push(
        "RATE_LIMIT_IP",
        rl.per_ip.map_or_else(|| "(none)".into(), |q| q.to_string()),
    );
    push("RATE_LIMIT_DENY_CACHE", rl.deny_cache.to_string());
    push("RATE_LIMIT_OUTAGE_KEYS", rl.outage_keys.to_string());
    let list = |l: &AccessList| {
        if l.is_empty() {
            "(none)".to_string()
        } else {
            l.to_env()
        }
    };
    push("RATE_LIMIT_EXEMPT", list(&rl.exempt));
    push("RATE_LIMIT_DENY", list(&rl.deny));
}

fn none_or(s: String) -> String {
    if s.is_empty() { "(none)".into() } else { s }
}

fn parse_quota(raw: &str) -> Result<Quota, String> {
    Quota::parse(raw).map_err(String::from)
}
