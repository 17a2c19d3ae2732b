//! Sending the schedule: open loop, an in-flight cap, latency from the scheduled time, a
//! bounded grace period for stragglers; the outcomes collected into a [`Report`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::report::histogram;
use super::{LoadPlan, Report, StreamTimes, Target, TenantReport, schedule};

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

/// The tokens a 2xx answer reports using: its JSON `usage.total_tokens`, or for an event
/// stream the last event's that has one.
fn tokens_used(status: u16, body: Option<&[u8]>) -> Option<u64> {
    if !(200..300).contains(&status) {
        return None;
    }
    let usage = |v: serde_json::Value| v.get("usage")?.get("total_tokens")?.as_u64();
    let body = body?;
    if let Ok(v) = serde_json::from_slice(body) {
        return usage(v);
    }
    std::str::from_utf8(body)
        .ok()?
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|d| serde_json::from_str(d.trim()).ok().and_then(usage))
}

/// What a response said: status, the rule a 429 names, the tokens a 2xx used, and for an
/// event stream when its first byte came.
struct Answer {
    status: u16,
    rule: Option<String>,
    tokens: Option<u64>,
    first_byte: Option<Instant>,
    /// `X-Cache: HIT` or `STALE`.
    cache_hit: bool,
    /// When the response head came: the server had decided by then (for a streamed
    /// answer, long before its end).
    head_at: Instant,
}

/// Reads a response to its end (so the connection goes back to the pool), noting when the
/// first body byte of an event stream came.
async fn answer<B>(res: http::Response<B>) -> Answer
where
    B: axum::body::HttpBody<Data = Bytes>,
{
    let head_at = Instant::now();
    let status = res.status().as_u16();
    let cache_hit = res
        .headers()
        .get("x-cache")
        .is_some_and(|v| v == "HIT" || v == "STALE");
    let streamed = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut body = std::pin::pin!(res.into_body());
    let mut buf = bytes::BytesMut::new();
    let mut first_byte = None;
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            complete = false;
            break;
        };
        if let Some(d) = frame.data_ref() {
            if streamed && first_byte.is_none() && !d.is_empty() {
                first_byte = Some(Instant::now());
            }
            buf.extend_from_slice(d);
        }
    }
    let body = complete.then_some(&buf[..]);
    Answer {
        status,
        rule: denying_rule(status, body),
        tokens: tokens_used(status, body),
        first_byte: first_byte.filter(|_| complete && (200..300).contains(&status)),
        cache_hit,
        head_at,
    }
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
    /// For a 2xx event stream: time to its first byte, from the scheduled send time, and
    /// whether the cache answered it.
    first_byte: Option<(Duration, bool)>,
    latency: Duration,
    /// When the response head came, from the start of the run (what admission times are).
    decided_at: Duration,
    done_at: Duration,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 60_000_000)
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
    let mut posts = 0u64;

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
        // An AI-style request: a prompt and the completion tokens asked for; streamed or not.
        let stream = ep.method == http::Method::POST && plan.streams(posts);
        posts += u64::from(ep.method == http::Method::POST);
        let body = Bytes::from_static(if stream {
            b"{\"prompt\":\"hello\",\"max_tokens\":64,\"stream\":true}"
        } else {
            b"{\"prompt\":\"hello\",\"max_tokens\":64}"
        });
        let call: futures_util::future::BoxFuture<'static, Option<Answer>> = match &plan.target {
            Target::Http(addr) => {
                let req = builder
                    .uri(format!("http://{addr}{}", ep.path))
                    .body(Full::new(body));
                let client = client.clone();
                Box::pin(async move {
                    let res = client.request(req.ok()?).await.ok()?;
                    Some(answer(res).await)
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
                    Some(answer(res).await)
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
            let (status, rule, tokens, first_byte, head_at) = match result {
                Some(a) => (
                    Some(a.status),
                    a.rule,
                    a.tokens,
                    a.first_byte
                        .map(|f| (f.saturating_duration_since(at), a.cache_hit)),
                    a.head_at,
                ),
                None => (None, None, None, None, now),
            };
            let _ = tx.send(Outcome {
                tenant,
                user,
                endpoint,
                status,
                rule,
                tokens,
                first_byte,
                latency: now.saturating_duration_since(at),
                decided_at: head_at.saturating_duration_since(start),
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
            latency_us: histogram(),
            streamed_miss: StreamTimes::default(),
            streamed_hit: StreamTimes::default(),
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
                        r.admitted_at.push(o.decided_at);
                        r.admissions.push((o.decided_at, o.user, o.endpoint));
                        if let Some(n) = o.tokens {
                            r.tokens.push((o.decided_at, o.user, o.endpoint, n));
                        }
                    }
                    Some(429) => {
                        r.throttled += 1;
                        r.throttled_at.push(o.decided_at);
                        let rule = o.rule.unwrap_or_else(|| "(unnamed)".into());
                        *r.throttled_by.entry(rule).or_insert(0) += 1;
                    }
                    Some(_) => r.other += 1,
                    None => r.errors += 1,
                }
                let _ = r.latency_us.record(micros(o.latency));
                if let Some((first, hit)) = o.first_byte {
                    let s = if hit { &mut r.streamed_hit } else { &mut r.streamed_miss };
                    let _ = s.ttfb_us.record(micros(first));
                    let _ = s.ttlb_us.record(micros(o.latency));
                }
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
