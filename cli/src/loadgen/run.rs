//! Sending the schedule: open loop, an in-flight cap, latency from the scheduled time, a
//! bounded grace period for stragglers; the outcomes collected into a [`Report`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::{schedule, LoadPlan, Report, Target, TenantReport};

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

/// The rule a 429 problem body names (`{"rule": "per-tenant", ...}`).
fn denying_rule(status: u16, body: Option<&[u8]>) -> Option<String> {
    if status != 429 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body?).ok()?;
    v.get("rule")?.as_str().map(str::to_string)
}

/// The tokens a 2xx answer reports using (its JSON `usage.total_tokens`).
fn tokens_used(status: u16, body: Option<&[u8]>) -> Option<u64> {
    if !(200..300).contains(&status) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body?).ok()?;
    v.get("usage")?.get("total_tokens")?.as_u64()
}

/// What a response said: status, the rule a 429 names, the tokens a 2xx used.
type Answer = (u16, Option<String>, Option<u64>);

fn answer(status: u16, body: Option<&[u8]>) -> Answer {
    (
        status,
        denying_rule(status, body),
        tokens_used(status, body),
    )
}

struct Outcome {
    tenant: usize,
    user: u32,
    endpoint: usize,
    status: Option<u16>,
    /// For a 429: the rule the problem body names.
    rule: Option<String>,
    /// For a 2xx: the tokens its body reports using.
    tokens: Option<u64>,
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
    // Per tenant: requests out now, and the most seen out at once.
    let out: Arc<Vec<(AtomicUsize, AtomicUsize)>> = Arc::new(
        (0..plan.tenants.len())
            .map(|_| (AtomicUsize::new(0), AtomicUsize::new(0)))
            .collect(),
    );
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
        let now_out = out[p.tenant].0.fetch_add(1, Ordering::AcqRel) + 1;
        out[p.tenant].1.fetch_max(now_out, Ordering::AcqRel);
        let t = &plan.tenants[p.tenant];
        let ep = &t.endpoints[p.endpoint];
        let builder = Request::builder()
            .method(ep.method.clone())
            .header(plan.tenant_header.as_str(), t.tenant.as_str())
            .header(plan.user_header.as_str(), format!("user-{}", p.user));
        // An AI-style request: a prompt and the completion tokens asked for.
        let body = Bytes::from_static(b"{\"prompt\":\"hello\",\"max_tokens\":64}");
        let call: futures_util::future::BoxFuture<'static, Option<Answer>> = match &plan.target {
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
                    Some(answer(status, body.ok().as_deref()))
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
                    Some(answer(status, body.ok().as_deref()))
                })
            }
        };
        let tx = tx.clone();
        let in_flight = in_flight.clone();
        let out = out.clone();
        let tenant = p.tenant;
        let (user, endpoint) = (p.user, p.endpoint);
        tokio::spawn(async move {
            let result = call.await;
            let now = Instant::now();
            in_flight.fetch_sub(1, Ordering::AcqRel);
            out[tenant].0.fetch_sub(1, Ordering::AcqRel);
            let (status, rule, tokens) = match result {
                Some((s, r, t)) => (Some(s), r, t),
                None => (None, None, None),
            };
            let _ = tx.send(Outcome {
                tenant,
                user,
                endpoint,
                status,
                rule,
                tokens,
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
            max_in_flight: 0,
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
            tokens: Vec::new(),
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
                        if let Some(n) = o.tokens {
                            r.tokens.push((o.done_at, o.user, o.endpoint, n));
                        }
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
    for (r, (_, max)) in reports.iter_mut().zip(out.iter()) {
        r.max_in_flight = max.load(Ordering::Acquire) as u64;
        r.admitted_at.sort();
        r.throttled_at.sort();
        r.admissions.sort_by_key(|a| a.0);
        r.tokens.sort_by_key(|a| a.0);
    }
    Ok(Report {
        tenants: reports,
        elapsed: last,
    })
}
