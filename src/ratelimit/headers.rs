//! Response headers: draft-ietf-httpapi-ratelimit-headers-11, legacy `X-RateLimit-*`,
//! `Retry-After`, and the 429 / 503 problem bodies.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use smallvec::SmallVec;

use super::decision::{Decision, RuleDecision, Source};
use crate::future::{Finish, Step};
use crate::problem::Problem;

/// Whole seconds, rounded up (a client waiting the floor would come back too early).
fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The rate-limit fields of one rule: `RateLimit-Policy`, `RateLimit` and, with `legacy`,
/// the three `X-RateLimit-*` (on the heap: they are opt-in, and this value is moved with the
/// request's future).
type Fields = SmallVec<[(HeaderName, HeaderValue); 2]>;

const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The rate-limit headers of an allowed request, made before the inner call (its
/// [`Decision`] then moves into the request's extensions) and put on the response after
/// it: `RateLimit-Policy: "per-user";q=100;w=900` and `RateLimit: "per-user";r=42;t=17` for
/// the most restrictive enforced rule; with `legacy`, also `X-RateLimit-*`.
pub struct RateHeaders {
    fields: Fields,
}

impl RateHeaders {
    pub(crate) fn of(decision: &Decision, legacy: bool) -> Self {
        Self {
            fields: decision
                .most_restrictive()
                .map_or_else(Fields::new, |r| rule_headers(r, legacy)),
        }
    }

    /// No headers (an exempt request).
    pub(crate) fn none() -> Self {
        Self {
            fields: Fields::new(),
        }
    }

    /// Puts them on `res`: they replace any of the same name, except that the
    /// `RateLimit-Policy` and `RateLimit` items an inner layer added (token budgets) stay
    /// in the lists, after ours.
    pub(crate) fn put_on(self, res: &mut HeaderMap) {
        for (name, v) in self.fields {
            let theirs: SmallVec<[HeaderValue; 2]> = if name == POLICY || name == RATELIMIT {
                res.get_all(&name).iter().cloned().collect()
            } else {
                SmallVec::new()
            };
            res.insert(name.clone(), v);
            for t in theirs {
                res.append(name.clone(), t);
            }
        }
    }
}

impl<B, E> Finish<Response<B>, B, E> for RateHeaders {
    fn finish(self, mut res: Response<B>) -> Step<B, E> {
        self.put_on(res.headers_mut());
        Step::Done(res)
    }
}

/// `"<name>";<a>=<x>;<b>=<y>` without the formatting machinery (this runs on every
/// allowed request), written on the stack and copied once into the value.
fn rule_value(name: &str, a: u8, x: u64, b: u8, y: u64) -> Option<HeaderValue> {
    let mut ints = itoa::Buffer::new();
    let mut s: SmallVec<[u8; 96]> = SmallVec::new();
    s.push(b'"');
    s.extend_from_slice(name.as_bytes());
    s.extend_from_slice(b"\";");
    s.extend_from_slice(&[a, b'=']);
    s.extend_from_slice(ints.format(x).as_bytes());
    s.extend_from_slice(&[b';', b, b'=']);
    s.extend_from_slice(ints.format(y).as_bytes());
    HeaderValue::from_bytes(&s).ok()
}

/// The `RateLimit-Policy` and `RateLimit` values of one rule.
fn rule_fields(r: &RuleDecision) -> impl Iterator<Item = (HeaderName, HeaderValue)> + use<> {
    // Rule names were validated: no quotes, backslashes or control characters.
    let name = r.name;
    [
        (
            POLICY,
            rule_value(name, b'q', u64::from(r.limit), b'w', secs_ceil(r.window)),
        ),
        (
            RATELIMIT,
            rule_value(name, b'r', u64::from(r.remaining), b't', secs_ceil(r.reset)),
        ),
    ]
    .into_iter()
    .filter_map(|(name, v)| Some((name, v?)))
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
        headers.append(name, v);
    }
}

fn rule_headers(r: &RuleDecision, legacy: bool) -> Fields {
    let mut out: Fields = rule_fields(r).collect();
    if legacy {
        out.extend([
            (
                HeaderName::from_static("x-ratelimit-limit"),
                HeaderValue::from(r.limit),
            ),
            (
                HeaderName::from_static("x-ratelimit-remaining"),
                HeaderValue::from(r.remaining),
            ),
            (
                HeaderName::from_static("x-ratelimit-reset"),
                HeaderValue::from(secs_ceil(r.reset)),
            ),
        ]);
    }
    out
}

fn write_rule(headers: &mut HeaderMap, r: &RuleDecision, legacy: bool) {
    for (name, v) in rule_headers(r, legacy) {
        headers.insert(name, v);
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
