//! Response headers: draft-ietf-httpapi-ratelimit-headers-11, legacy `X-RateLimit-*`,
//! `Retry-After`, and the 429 / 503 problem bodies.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::decision::{Decision, RuleDecision, Source};
use crate::problem::Problem;

/// Whole seconds, rounded up (a client waiting the floor would come back too early).
fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn value(s: String) -> Option<HeaderValue> {
    HeaderValue::try_from(s).ok()
}

/// `RateLimit-Policy: "per-user";q=100;w=900` and `RateLimit: "per-user";r=42;t=17` for
/// the most restrictive enforced rule; with `legacy`, also `X-RateLimit-*`.
pub(crate) fn apply(headers: &mut HeaderMap, decision: &Decision, legacy: bool) {
    let Some(r) = decision.most_restrictive() else {
        return;
    };
    write_rule(headers, r, legacy);
}

/// `"<name>";<a>=<x>;<b>=<y>` without the formatting machinery (this runs on every
/// allowed request).
fn rule_value(name: &str, a: char, x: u64, b: char, y: u64) -> Option<HeaderValue> {
    let mut ints = itoa::Buffer::new();
    let mut s = String::with_capacity(name.len() + 32);
    s.push('"');
    s.push_str(name);
    s.push_str("\";");
    s.push(a);
    s.push('=');
    s.push_str(ints.format(x));
    s.push(';');
    s.push(b);
    s.push('=');
    s.push_str(ints.format(y));
    value(s)
}

/// The `RateLimit-Policy` and `RateLimit` values of one rule.
fn rule_fields(r: &RuleDecision) -> [(HeaderName, Option<HeaderValue>); 2] {
    // Rule names were validated: no quotes, backslashes or control characters.
    let name = r.name;
    [
        (
            HeaderName::from_static("ratelimit-policy"),
            rule_value(name, 'q', u64::from(r.limit), 'w', secs_ceil(r.window)),
        ),
        (
            HeaderName::from_static("ratelimit"),
            rule_value(name, 'r', u64::from(r.remaining), 't', secs_ceil(r.reset)),
        ),
    ]
}

/// Adds the most restrictive rule of a second limiter's `decision` (token budgets) to the
/// `RateLimit-Policy` and `RateLimit` fields already there: both are lists, one item per
/// policy, so each goes on a line of its own.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) fn append(headers: &mut HeaderMap, decision: &Decision) {
    let Some(r) = decision.most_restrictive() else {
        return;
    };
    for (name, v) in rule_fields(r) {
        if let Some(v) = v {
            headers.append(name, v);
        }
    }
}

/// Puts a response's rate-limit headers (`ours`, from [`apply`]) on `res`: they replace
/// any of the same name, except that the `RateLimit-Policy` and `RateLimit` items an inner
/// layer added (token budgets) stay in the lists, after ours.
pub(crate) fn merge(res: &mut HeaderMap, mut ours: HeaderMap) {
    for name in ["ratelimit-policy", "ratelimit"] {
        if res.contains_key(name) && ours.contains_key(name) {
            for v in res.get_all(name) {
                ours.append(name, v.clone());
            }
        }
    }
    res.extend(ours);
}

fn write_rule(headers: &mut HeaderMap, r: &RuleDecision, legacy: bool) {
    for (name, v) in rule_fields(r) {
        if let Some(v) = v {
            headers.insert(name, v);
        }
    }
    if legacy {
        headers.insert(
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderValue::from(r.limit),
        );
        headers.insert(
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderValue::from(r.remaining),
        );
        headers.insert(
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderValue::from(secs_ceil(r.reset)),
        );
    }
}

/// The response for a denied request: 429 (503 for outage mode `closed`).
pub(crate) fn denied<B: From<String>>(decision: &Decision, legacy: bool) -> Response<B> {
    if decision.source == Source::OutageClosed {
        let mut res: Response<B> = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Rate limiter unavailable")
            .detail("the rate-limit store is unreachable and the outage mode is `closed`; try again shortly")
            .into_response();
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(1u64));
        return res;
    }
    let rule = decision.denied_by();
    let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    let mut retry = None;
    if let Some(r) = rule {
        let window = match r.period {
            // A calendar quota: per day, week or month (the window only holds it).
            Some(p) => p.to_string(),
            None => humantime::format_duration(r.window).to_string(),
        };
        retry = r.retry_after.map(|d| secs_ceil(d).max(1));
        let detail = match retry {
            Some(s) if r.blocked => format!(
                "rule `{}` allows {} per {window} and blocks a client it refused; retry in {s} s",
                r.name, r.limit
            ),
            Some(s) => format!(
                "rule `{}` allows {} per {window}; retry in {s} s",
                r.name, r.limit
            ),
            None => format!(
                "rule `{}` allows {} per {window}; this request costs {} and can never fit",
                r.name, r.limit, decision.cost
            ),
        };
        p = p
            .detail(detail)
            .with("rule", r.name.to_string())
            .with("limit", r.limit)
            .with("window_seconds", secs_ceil(r.window))
            .with("cost", decision.cost);
        if let Some(s) = retry {
            p = p.with("retry_after_seconds", s);
        }
        if r.blocked {
            p = p.with("blocked", true);
        }
    }
    let mut res: Response<B> = p.into_response();
    if let Some(s) = retry {
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(s));
    }
    if let Some(r) = rule {
        write_rule(res.headers_mut(), r, legacy);
    }
    res
}
