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

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The server (loopback, or an address the user named explicitly).
    pub target: SocketAddr,
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
/// use tenant_guard::loadgen::{schedule, Endpoint, TenantLoad};
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
        // The weighted mix as a repeating cycle of endpoint indexes.
        let cycle: Vec<usize> = t
            .endpoints
            .iter()
            .enumerate()
            .flat_map(|(i, e)| std::iter::repeat_n(i, e.weight.max(1) as usize))
            .collect();
        let n = (t.rate * duration.as_secs_f64()).floor() as u64;
        for k in 0..n {
            out.push(Planned {
                at: Duration::from_secs_f64(k as f64 / t.rate),
                tenant: ti,
                user: (k % u64::from(t.users.max(1))) as u32,
                endpoint: cycle[(k as usize) % cycle.len()],
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
/// use tenant_guard::loadgen::max_in_window;
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

struct Outcome {
    tenant: usize,
    status: Option<u16>,
    latency: Duration,
    done_at: Duration,
}

/// Runs the plan against its target and collects the report.
pub async fn run(plan: &LoadPlan) -> Result<Report, LoadError> {
    tokio::net::TcpStream::connect(plan.target)
        .await
        .map_err(|source| LoadError::Unreachable {
            target: plan.target,
            source,
        })?;
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
            continue;
        }
        sent[p.tenant] += 1;
        in_flight.fetch_add(1, Ordering::AcqRel);
        let t = &plan.tenants[p.tenant];
        let ep = &t.endpoints[p.endpoint];
        let req = Request::builder()
            .method(ep.method.clone())
            .uri(format!("http://{}{}", plan.target, ep.path))
            .header(plan.tenant_header.as_str(), t.tenant.as_str())
            .header(plan.user_header.as_str(), format!("user-{}", p.user))
            .body(Full::new(Bytes::from_static(b"{\"prompt\":\"hello\"}")));
        let client = client.clone();
        let tx = tx.clone();
        let in_flight = in_flight.clone();
        let tenant = p.tenant;
        tokio::spawn(async move {
            let status = match req {
                Ok(req) => match client.request(req).await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        // Drain the body so the connection goes back to the pool.
                        let _ = res.into_body().collect().await;
                        Some(status)
                    }
                    Err(_) => None,
                },
                Err(_) => None,
            };
            let now = Instant::now();
            in_flight.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(Outcome {
                tenant,
                status,
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
                match o.status {
                    Some(s) if (200..300).contains(&s) => {
                        r.ok += 1;
                        r.admitted_at.push(o.done_at);
                    }
                    Some(429) => r.throttled += 1,
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
    }
    Ok(Report {
        tenants: reports,
        elapsed: last,
    })
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

impl Report {
    /// A text table: per tenant, counts, admitted rate against the limit, the most
    /// admissions seen in any window of the limit's length (a client-side check that the
    /// limit held), and latency percentiles in milliseconds.
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
