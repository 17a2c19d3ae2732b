//! An open-loop HTTP load generator for watching limits hold (`tenant-guard load` / `demo`).
//!
//! Requests go out on a fixed schedule — each tenant at its own constant rate — whatever
//! the server does, and latency is measured from the **scheduled** send time, so a stalling
//! server shows up as latency instead of silently lowering the load (no coordinated
//! omission). A cap on requests in flight keeps the client bounded: a request that would
//! exceed it is counted as `skipped`, not delayed. The run always ends: after the schedule,
//! stragglers get a bounded grace period.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

/// One endpoint of the traffic mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP method.
    pub method: Method,
    /// Path (and query) to request.
    pub path: String,
    /// Relative weight in the mix.
    pub weight: u32,
}

/// The traffic of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLoad {
    /// Tenant id sent in the tenant header.
    pub tenant: String,
    /// Requests per second.
    pub rate: f64,
    /// Distinct users (sent in the user header, round robin).
    pub users: u32,
    /// The mix of endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// Where the requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A server over HTTP (loopback, or an address the user named explicitly).
    Http(SocketAddr),
    /// An axum router called as a tower service in this process, without sockets: the
    /// middleware alone, without the network.
    InProcess(axum::Router),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(a) => write!(f, "{a}"),
            Self::InProcess(_) => f.write_str("the in-process router"),
        }
    }
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Where the requests go.
    pub target: Target,
    /// How long to send.
    pub duration: Duration,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// Header carrying the tenant.
    pub tenant_header: String,
    /// Header carrying the user.
    pub user_header: String,
    /// Per-tenant traffic.
    pub tenants: Vec<TenantLoad>,
}

/// A traffic mix read from a small JSON file (`tenant-guard load --scenario FILE`).
///
/// ```
/// let s: tenant_guard_cli::loadgen::Scenario = serde_json::from_str(r#"{
///     "duration": "30s",
///     "limit": "50/5s",
///     "tenants": [
///         { "tenant": "calm", "rate": 5, "users": 5 },
///         { "tenant": "flood", "rate": 40, "users": 5,
///           "endpoints": [ { "method": "POST", "path": "/api/ai/complete", "weight": 1 } ] }
///     ],
///     "endpoints": [ { "path": "/api/items", "weight": 3 }, { "path": "/api/reports/1" } ]
/// }"#).unwrap();
/// let tenants = s.tenant_loads();
/// assert_eq!(tenants[0].endpoints.len(), 2);   // the default mix
/// assert_eq!(tenants[1].endpoints[0].path, "/api/ai/complete");
/// ```
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// How long to send, e.g. `"30s"` (overridden by `--duration`).
    #[serde(default, with = "opt_duration")]
    pub duration: Option<Duration>,
    /// The limit to check results against, `LIMIT/WINDOW` (overridden by `--limit`).
    #[serde(default)]
    pub limit: Option<String>,
    /// Per-tenant traffic.
    pub tenants: Vec<ScenarioTenant>,
    /// The default endpoint mix of tenants that name none.
    #[serde(default)]
    pub endpoints: Vec<ScenarioEndpoint>,
}

/// One tenant of a [`Scenario`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioTenant {
    /// Tenant id.
    pub tenant: String,
    /// Requests per second.
    pub rate: f64,
    /// Distinct users (default 1).
    #[serde(default = "one")]
    pub users: u32,
    /// This tenant's endpoint mix (default: the scenario's).
    #[serde(default)]
    pub endpoints: Vec<ScenarioEndpoint>,
}

/// One endpoint of a [`Scenario`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioEndpoint {
    /// HTTP method (default GET).
    #[serde(default = "get")]
    pub method: String,
    /// Path to request.
    pub path: String,
    /// Weight in the mix (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

fn get() -> String {
    "GET".into()
}

mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Scenario {
    /// Checks the scenario and turns it into tenant loads; errors say which tenant or
    /// endpoint is wrong.
    pub fn validate(&self) -> Result<Vec<TenantLoad>, String> {
        if self.tenants.is_empty() {
            return Err("the scenario lists no tenants".into());
        }
        let convert = |eps: &[ScenarioEndpoint]| -> Result<Vec<Endpoint>, String> {
            eps.iter()
                .map(|e| {
                    let method = Method::from_bytes(e.method.to_ascii_uppercase().as_bytes())
                        .map_err(|_| format!("`{}` is not an HTTP method", e.method))?;
                    if !e.path.starts_with('/') {
                        return Err(format!("path `{}` must start with `/`", e.path));
                    }
                    Ok(Endpoint {
                        method,
                        path: e.path.clone(),
                        weight: e.weight.max(1),
                    })
                })
                .collect()
        };
        let default = convert(&self.endpoints)?;
        self.tenants
            .iter()
            .map(|t| {
                tenant_guard::tenant::TenantId::new(&t.tenant)
                    .map_err(|e| format!("tenant `{}`: {e}", t.tenant))?;
                if !(t.rate > 0.0 && t.rate <= 100_000.0) {
                    return Err(format!(
                        "tenant `{}`: rate must be above 0 and at most 100000",
                        t.tenant
                    ));
                }
                let endpoints = if t.endpoints.is_empty() {
                    default.clone()
                } else {
                    convert(&t.endpoints)?
                };
                if endpoints.is_empty() {
                    return Err(format!(
                        "tenant `{}` has no endpoints (and the scenario sets no default)",
                        t.tenant
                    ));
                }
                Ok(TenantLoad {
                    tenant: t.tenant.clone(),
                    rate: t.rate,
                    users: t.users.max(1),
                    endpoints,
                })
            })
            .collect()
    }

    /// Like [`validate`](Self::validate), panicking on an invalid scenario (for tests and
    /// examples).
    pub fn tenant_loads(&self) -> Vec<TenantLoad> {
        self.validate().expect("valid scenario")
    }
}

/// One scheduled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Send time, from the start of the run.
    pub at: Duration,
    /// Index into [`LoadPlan::tenants`].
    pub tenant: usize,
    /// User number within the tenant.
    pub user: u32,
    /// Index into the tenant's endpoints.
    pub endpoint: usize,
}

/// The whole schedule, in send order: tenant `t` sends request `k` at `k / rate_t`.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard_cli::loadgen::{schedule, Endpoint, TenantLoad};
///
/// let t = TenantLoad { tenant: "a".into(), rate: 10.0, users: 2,
///     endpoints: vec![Endpoint { method: http::Method::GET, path: "/x".into(), weight: 1 }] };
/// let s = schedule(&[t], Duration::from_secs(2));
/// assert_eq!(s.len(), 20);
/// assert_eq!(s[1].at, Duration::from_millis(100));
/// assert_eq!((s[0].user, s[1].user, s[2].user), (0, 1, 0));
/// ```
pub fn schedule(tenants: &[TenantLoad], duration: Duration) -> Vec<Planned> {
    let mut out = Vec::new();
    for (ti, t) in tenants.iter().enumerate() {
        if t.rate <= 0.0 || t.endpoints.is_empty() {
            continue;
        }
        // The weighted mix as a repeating cycle of endpoint indexes: endpoint i takes
        // `weight` consecutive places. Only the cumulative weights are kept (a cycle
        // written out would be as long as the weights sum to: 4 G entries for one
        // endpoint of weight u32::MAX in a scenario file).
        let ends: Vec<u64> = t
            .endpoints
            .iter()
            .scan(0u64, |sum, e| {
                *sum += u64::from(e.weight.max(1));
                Some(*sum)
            })
            .collect();
        let cycle_len = ends.last().copied().unwrap_or(1);
        let n = (t.rate * duration.as_secs_f64()).floor() as u64;
        for k in 0..n {
            out.push(Planned {
                at: Duration::from_secs_f64(k as f64 / t.rate),
                tenant: ti,
                user: (k % u64::from(t.users.max(1))) as u32,
                endpoint: ends.partition_point(|&end| end <= k % cycle_len),
            });
        }
    }
    out.sort_by_key(|p| (p.at, p.tenant));
    out
}

/// Results of one tenant.
#[derive(Debug)]
pub struct TenantReport {
    /// Tenant id.
    pub tenant: String,
    /// Requests sent.
    pub sent: u64,
    /// 2xx responses.
    pub ok: u64,
    /// 429 responses.
    pub throttled: u64,
    /// Other statuses.
    pub other: u64,
    /// Transport errors.
    pub errors: u64,
    /// Not sent because `max_in_flight` requests were already out.
    pub skipped: u64,
    /// When each 2xx response arrived, from the start of the run (sorted).
    pub admitted_at: Vec<Duration>,
    /// When each 429 response arrived, from the start of the run (sorted).
    pub throttled_at: Vec<Duration>,
    /// 429 responses by the rule their problem body names (`rule`).
    pub throttled_by: std::collections::BTreeMap<String, u64>,
    /// Every 2xx: when it arrived, the user number and the endpoint index (sorted by time).
    pub admissions: Vec<(Duration, u32, usize)>,
    /// The tenant's endpoint mix (what `admissions` index into).
    pub endpoints: Vec<Endpoint>,
    /// Latency from the scheduled send time, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// The result of a run.
#[derive(Debug)]
pub struct Report {
    /// Per tenant, in plan order.
    pub tenants: Vec<TenantReport>,
    /// Time from the first scheduled send to the last response.
    pub elapsed: Duration,
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Nothing accepts connections at the target.
    #[error("cannot reach {target}: {source}")]
    Unreachable {
        /// The target.
        target: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Most events in any window `(t - window, t]` of sorted times.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard_cli::loadgen::max_in_window;
/// let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
/// assert_eq!(max_in_window(&ms(&[0, 100, 999, 1000, 1001]), Duration::from_secs(1)), 4);
/// assert_eq!(max_in_window(&[], Duration::from_secs(1)), 0);
/// ```
pub fn max_in_window(sorted: &[Duration], window: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[lo] + window <= sorted[hi] {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

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

/// The rule a 429 problem body names (`{"rule": "per-tenant", ...}`).
fn denying_rule(status: u16, body: Option<&[u8]>) -> Option<String> {
    if status != 429 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body?).ok()?;
    v.get("rule")?.as_str().map(str::to_string)
}

struct Outcome {
    tenant: usize,
    user: u32,
    endpoint: usize,
    status: Option<u16>,
    /// For a 429: the rule the problem body names.
    rule: Option<String>,
    latency: Duration,
    done_at: Duration,
}

/// Counters updated while a run is going, for progress displays.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests sent.
    pub sent: std::sync::atomic::AtomicU64,
    /// 2xx responses.
    pub ok: std::sync::atomic::AtomicU64,
    /// 429 responses.
    pub throttled: std::sync::atomic::AtomicU64,
    /// Other statuses, transport errors and skipped sends.
    pub errors: std::sync::atomic::AtomicU64,
}

/// Runs the plan against its target and collects the report.
pub async fn run(plan: &LoadPlan) -> Result<Report, LoadError> {
    run_with(plan, &Live::default()).await
}

/// Like [`run`], updating `live` as responses come in.
pub async fn run_with(plan: &LoadPlan, live: &Live) -> Result<Report, LoadError> {
    if let Target::Http(addr) = &plan.target {
        tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| LoadError::Unreachable {
                target: *addr,
                source,
            })?;
    }
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(plan.max_in_flight)
        .build(connector);
    let schedule = schedule(&plan.tenants, plan.duration);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut skipped = vec![0u64; plan.tenants.len()];
    let mut sent = vec![0u64; plan.tenants.len()];
    let start = Instant::now();

    for p in &schedule {
        let at = start + p.at;
        tokio::time::sleep_until(at).await;
        if in_flight.load(Ordering::Acquire) >= plan.max_in_flight {
            skipped[p.tenant] += 1;
            live.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        sent[p.tenant] += 1;
        live.sent.fetch_add(1, Ordering::Relaxed);
        in_flight.fetch_add(1, Ordering::AcqRel);
        let t = &plan.tenants[p.tenant];
        let ep = &t.endpoints[p.endpoint];
        let builder = Request::builder()
            .method(ep.method.clone())
            .header(plan.tenant_header.as_str(), t.tenant.as_str())
            .header(plan.user_header.as_str(), format!("user-{}", p.user));
        let body = Bytes::from_static(b"{\"prompt\":\"hello\"}");
        let call: futures_util::future::BoxFuture<'static, Option<(u16, Option<String>)>> =
            match &plan.target {
                Target::Http(addr) => {
                    let req = builder
                        .uri(format!("http://{addr}{}", ep.path))
                        .body(Full::new(body));
                    let client = client.clone();
                    Box::pin(async move {
                        let res = client.request(req.ok()?).await.ok()?;
                        let status = res.status().as_u16();
                        // Drain the body so the connection goes back to the pool.
                        let body = res.into_body().collect().await.map(|b| b.to_bytes());
                        Some((status, denying_rule(status, body.ok().as_deref())))
                    })
                }
                Target::InProcess(router) => {
                    let req = builder
                        .uri(ep.path.as_str())
                        .body(axum::body::Body::from(body));
                    let router = router.clone();
                    Box::pin(async move {
                        use tower::ServiceExt;
                        let res = router.oneshot(req.ok()?).await.ok()?;
                        let status = res.status().as_u16();
                        let body = res.into_body().collect().await.map(|b| b.to_bytes());
                        Some((status, denying_rule(status, body.ok().as_deref())))
                    })
                }
            };
        let tx = tx.clone();
        let in_flight = in_flight.clone();
        let tenant = p.tenant;
        let (user, endpoint) = (p.user, p.endpoint);
        tokio::spawn(async move {
            let result = call.await;
            let now = Instant::now();
            in_flight.fetch_sub(1, Ordering::AcqRel);
            let (status, rule) = match result {
                Some((s, r)) => (Some(s), r),
                None => (None, None),
            };
            let _ = tx.send(Outcome {
                tenant,
                user,
                endpoint,
                status,
                rule,
                latency: now.saturating_duration_since(at),
                done_at: now.saturating_duration_since(start),
            });
        });
    }
    drop(tx);

    let mut reports: Vec<TenantReport> = plan
        .tenants
        .iter()
        .zip(sent.iter().zip(&skipped))
        .map(|(t, (&sent, &skipped))| TenantReport {
            tenant: t.tenant.clone(),
            sent,
            ok: 0,
            throttled: 0,
            other: 0,
            errors: 0,
            skipped,
            admitted_at: Vec::new(),
            throttled_at: Vec::new(),
            throttled_by: std::collections::BTreeMap::new(),
            admissions: Vec::new(),
            endpoints: t.endpoints.clone(),
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
        })
        .collect();
    // Stragglers get a bounded grace period: the run always ends.
    let grace = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(grace);
    let mut last = Duration::ZERO;
    loop {
        tokio::select! {
            o = rx.recv() => {
                let Some(o) = o else { break };
                let r = &mut reports[o.tenant];
                let counter = match o.status {
                    Some(s) if (200..300).contains(&s) => &live.ok,
                    Some(429) => &live.throttled,
                    _ => &live.errors,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                match o.status {
                    Some(s) if (200..300).contains(&s) => {
                        r.ok += 1;
                        r.admitted_at.push(o.done_at);
                        r.admissions.push((o.done_at, o.user, o.endpoint));
                    }
                    Some(429) => {
                        r.throttled += 1;
                        r.throttled_at.push(o.done_at);
                        let rule = o.rule.unwrap_or_else(|| "(unnamed)".into());
                        *r.throttled_by.entry(rule).or_insert(0) += 1;
                    }
                    Some(_) => r.other += 1,
                    None => r.errors += 1,
                }
                let us = u64::try_from(o.latency.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
                let _ = r.latency_us.record(us);
                last = last.max(o.done_at);
            }
            () = &mut grace => break,
        }
    }
    for r in &mut reports {
        r.admitted_at.sort();
        r.throttled_at.sort();
        r.admissions.sort_by_key(|a| a.0);
    }
    Ok(Report {
        tenants: reports,
        elapsed: last,
    })
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// Per-second counts of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Series {
    /// Tenant id.
    pub tenant: String,
    /// 2xx responses in each second of the run.
    pub admitted: Vec<u64>,
    /// 429 responses in each second of the run.
    pub throttled: Vec<u64>,
}

fn per_second(times: &[Duration], secs: usize) -> Vec<u64> {
    let mut v = vec![0u64; secs];
    for t in times {
        let i = (t.as_secs() as usize).min(secs.saturating_sub(1));
        if let Some(slot) = v.get_mut(i) {
            *slot += 1;
        }
    }
    v
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Report {
    /// Admitted and throttled responses per second, per tenant.
    pub fn series(&self) -> Vec<Series> {
        let secs = (self.elapsed.as_secs() as usize + 1).max(1);
        self.tenants
            .iter()
            .map(|t| Series {
                tenant: t.tenant.clone(),
                admitted: per_second(&t.admitted_at, secs),
                throttled: per_second(&t.throttled_at, secs),
            })
            .collect()
    }

    /// The report as JSON (counts, latency percentiles in ms, window maximum, series).
    pub fn to_json(&self, limit: Option<(u32, Duration)>) -> serde_json::Value {
        let p = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let tenants: Vec<serde_json::Value> = self
            .tenants
            .iter()
            .zip(self.series())
            .map(|(t, s)| {
                serde_json::json!({
                    "tenant": t.tenant,
                    "sent": t.sent,
                    "ok": t.ok,
                    "throttled": t.throttled,
                    "other": t.other,
                    "errors": t.errors,
                    "skipped": t.skipped,
                    "throttled_by_rule": t.throttled_by,
                    "admitted_per_second": t.ok as f64 / self.elapsed.as_secs_f64().max(1e-9),
                    "max_admitted_in_window": limit.map(|(_, w)| max_in_window(&t.admitted_at, w)),
                    "latency_ms": {
                        "p50": p(&t.latency_us, 0.5), "p90": p(&t.latency_us, 0.9),
                        "p99": p(&t.latency_us, 0.99), "p99.9": p(&t.latency_us, 0.999),
                        "max": t.latency_us.max() as f64 / 1000.0,
                    },
                    "series": s,
                })
            })
            .collect();
        serde_json::json!({
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "limit": limit.map(|(l, w)| serde_json::json!({ "limit": l, "window_seconds": w.as_secs_f64() })),
            "tenants": tenants,
        })
    }

    /// An SVG line chart: admitted (solid) and throttled (dashed) requests per second per
    /// tenant over time, with the limit's rate as a grey line.
    pub fn svg_chart(&self, limit: Option<(u32, Duration)>, title: &str) -> String {
        let series = self.series();
        let (w, h) = (900.0_f64, 460.0_f64);
        let (left, right, top, bottom) = (60.0, 170.0, 40.0, 50.0);
        let pw = w - left - right;
        let ph = h - top - bottom;
        let secs = series.first().map_or(1, |s| s.admitted.len()).max(2);
        let limit_rate = limit.map(|(l, win)| f64::from(l) / win.as_secs_f64());
        let ymax = series
            .iter()
            .flat_map(|s| s.admitted.iter().chain(&s.throttled))
            .copied()
            .max()
            .unwrap_or(1) as f64;
        let ymax = ymax.max(limit_rate.unwrap_or(0.0)).max(1.0) * 1.1;
        let x = |i: usize| left + pw * (i as f64 + 0.5) / secs as f64;
        let y = |v: f64| top + ph * (1.0 - v / ymax);
        let mut out = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="24" font-size="15">{}</text>
"#,
            esc(title)
        );
        // Axes and grid.
        for k in 0..=5 {
            let v = ymax * f64::from(k) / 5.0;
            let yy = y(v);
            out.push_str(&format!(
                "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>\n",
                left + pw,
                left - 6.0,
                yy + 4.0
            ));
        }
        let step = (secs / 10).max(1);
        for i in (0..secs).step_by(step) {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{i}s</text>\n",
                x(i),
                top + ph + 18.0
            ));
        }
        out.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds since start</text>\n<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">requests per second</text>\n",
            top + ph,
            left + pw,
            top + ph,
            left + pw / 2.0,
            h - 12.0,
            top + ph / 2.0,
            top + ph / 2.0
        ));
        if let Some(r) = limit_rate {
            out.push_str(&format!(
                "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-width=\"2\" stroke-dasharray=\"8 4\"/>\n",
                y(r),
                left + pw,
                y(r)
            ));
        }
        let points = |v: &[u64]| {
            v.iter()
                .enumerate()
                .map(|(i, c)| format!("{:.1},{:.1}", x(i), y(*c as f64)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut ly = top + 10.0;
        for (i, s) in series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            out.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\" points=\"{}\"/>\n",
                points(&s.admitted),
                points(&s.throttled)
            ));
            let lx = left + pw + 15.0;
            out.push_str(&format!(
                "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{:.1}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{} admitted</text>\n<line x1=\"{lx}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{c}\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{:.1}\">{} 429</text>\n",
                lx + 25.0,
                lx + 30.0,
                ly + 4.0,
                esc(&s.tenant),
                ly + 16.0,
                lx + 25.0,
                ly + 16.0,
                lx + 30.0,
                ly + 20.0,
                esc(&s.tenant)
            ));
            ly += 38.0;
        }
        if limit_rate.is_some() {
            let lx = left + pw + 15.0;
            out.push_str(&format!(
                "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{:.1}\" y2=\"{ly}\" stroke=\"#888\" stroke-width=\"2\" stroke-dasharray=\"8 4\"/><text x=\"{:.1}\" y=\"{:.1}\">limit</text>\n",
                lx + 25.0,
                lx + 30.0,
                ly + 4.0
            ));
        }
        out.push_str("</svg>\n");
        out
    }

    /// A text table: per tenant, counts, admitted rate against the limit, the most
    /// admissions seen in any window of the limit's length (a client-side check that the
    /// limit held), and latency percentiles in milliseconds.
    /// Per tenant and rule: the 429s the rule sent and, for rules in `rules`, the units
    /// admitted per second and the most units admitted in any window of the rule's length
    /// (per user for per-user rules: the busiest user), with request costs from `costs`
    /// (`(method, path) -> units`, default 1). Returns the text and whether every window
    /// stayed within its rule's limit.
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

    /// The per-tenant table (without rule rows).
    pub fn table(&self, limit: Option<(u32, Duration)>) -> String {
        let mut out = String::new();
        let window_label = limit.map_or_else(
            || "max/window".to_string(),
            |(_, w)| format!("max/{}", humantime::format_duration(w)),
        );
        out.push_str(&format!(
            "{:<10} {:>6} {:>6} {:>6} {:>6} {:>5} {:>7} {:>10} {:>8} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
            "tenant", "sent", "2xx", "429", "other", "err", "skipped", "admitted/s", "limit/s", window_label,
            "p50ms", "p90ms", "p99ms", "p99.9ms", "maxms"
        ));
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        for t in &self.tenants {
            let (limit_rate, max_win) = match limit {
                Some((l, w)) => (
                    format!("{:.1}", f64::from(l) / w.as_secs_f64()),
                    format!("{} of {l}", max_in_window(&t.admitted_at, w)),
                ),
                None => ("-".into(), "-".into()),
            };
            let h = &t.latency_us;
            out.push_str(&format!(
                "{:<10} {:>6} {:>6} {:>6} {:>6} {:>5} {:>7} {:>10.1} {:>8} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
                t.tenant,
                t.sent,
                t.ok,
                t.throttled,
                t.other,
                t.errors,
                t.skipped,
                t.ok as f64 / secs,
                limit_rate,
                max_win,
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.9)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
            ));
        }
        out
    }
}
