//! The results of a run: per-tenant counts, admission times and latency histograms, as a
//! table or JSON; and the window maximum that checks a limit held.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::Endpoint;

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
    /// The most of this tenant's requests out at once (sent, response not yet complete),
    /// seen from the client: an upper bound of what the server had in flight.
    pub max_in_flight: u64,
    /// When each 2xx response's head arrived, from the start of the run (sorted).
    pub admitted_at: Vec<Duration>,
    /// When each 429 response's head arrived, from the start of the run (sorted).
    pub throttled_at: Vec<Duration>,
    /// 429 responses by the rule their problem body names (`rule`).
    pub throttled_by: std::collections::BTreeMap<String, u64>,
    /// Every 2xx: when its head arrived, the user number and the endpoint index (sorted by time).
    pub admissions: Vec<(Duration, u32, usize)>,
    /// Every 2xx whose body reported token usage (`usage.total_tokens`): when it arrived,
    /// the user number, the endpoint index and the tokens (sorted by time).
    pub tokens: Vec<(Duration, u32, usize, u64)>,
    /// The tenant's endpoint mix (what `admissions` index into).
    pub endpoints: Vec<Endpoint>,
    /// Latency from the scheduled send time, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Streamed 2xx answers (event streams) the cache did not answer (`X-Cache` other
    /// than `HIT` / `STALE`, or none).
    pub streamed_miss: StreamTimes,
    /// Streamed 2xx answers the cache answered (`X-Cache: HIT` or `STALE`).
    pub streamed_hit: StreamTimes,
}

/// Times of streamed answers, from the scheduled send time, in microseconds.
#[derive(Debug, Clone)]
pub struct StreamTimes {
    /// To the first body byte.
    pub ttfb_us: Histogram<u64>,
    /// To the last.
    pub ttlb_us: Histogram<u64>,
}

impl Default for StreamTimes {
    fn default() -> Self {
        Self {
            ttfb_us: histogram(),
            ttlb_us: histogram(),
        }
    }
}

/// Microseconds up to 60 s, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The result of a run.
#[derive(Debug)]
pub struct Report {
    /// Per tenant, in plan order.
    pub tenants: Vec<TenantReport>,
    /// Time from the first scheduled send to the last response.
    pub elapsed: Duration,
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

/// A tenant's streamed answers as JSON: misses and hits, counts and p50 / p99 in ms.
fn streamed(t: &TenantReport) -> serde_json::Value {
    let p = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let times = |s: &StreamTimes| {
        serde_json::json!({
            "answers": s.ttfb_us.len(),
            "ttfb_ms": { "p50": p(&s.ttfb_us, 0.5), "p99": p(&s.ttfb_us, 0.99) },
            "ttlb_ms": { "p50": p(&s.ttlb_us, 0.5), "p99": p(&s.ttlb_us, 0.99) },
        })
    };
    serde_json::json!({ "miss": times(&t.streamed_miss), "hit": times(&t.streamed_hit) })
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
                    "max_in_flight": t.max_in_flight,
                    "tokens_used": t.tokens.iter().map(|e| e.3).sum::<u64>(),
                    "throttled_by_rule": t.throttled_by,
                    "admitted_per_second": t.ok as f64 / self.elapsed.as_secs_f64().max(1e-9),
                    "max_admitted_in_window": limit.map(|(_, w)| max_in_window(&t.admitted_at, w)),
                    "latency_ms": {
                        "p50": p(&t.latency_us, 0.5), "p90": p(&t.latency_us, 0.9),
                        "p99": p(&t.latency_us, 0.99), "p99.9": p(&t.latency_us, 0.999),
                        "max": t.latency_us.max() as f64 / 1000.0,
                    },
                    "streamed": streamed(t),
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

    /// A text table (without rule rows): per tenant, counts, the most requests out at once,
    /// admitted rate against the limit, the most admissions seen in any window of the limit's length (a client-side
    /// check that the limit held), and latency percentiles in milliseconds.
    pub fn table(&self, limit: Option<(u32, Duration)>) -> String {
        let mut out = String::new();
        let window_label = limit.map_or_else(
            || "max/window".to_string(),
            |(_, w)| format!("max/{}", humantime::format_duration(w)),
        );
        out.push_str(&format!(
            "{:<10} {:>6} {:>6} {:>6} {:>6} {:>5} {:>7} {:>8} {:>10} {:>8} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
            "tenant", "sent", "2xx", "429", "other", "err", "skipped", "inflight", "admitted/s", "limit/s", window_label,
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
                "{:<10} {:>6} {:>6} {:>6} {:>6} {:>5} {:>7} {:>8} {:>10.1} {:>8} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
                t.tenant,
                t.sent,
                t.ok,
                t.throttled,
                t.other,
                t.errors,
                t.skipped,
                t.max_in_flight,
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

    /// Streamed answers per tenant, misses and cache hits apart (only when there were
    /// any): time to the first and to the last byte, p50 and p99 in milliseconds.
    pub fn stream_table(&self) -> String {
        let any = |t: &TenantReport| {
            !(t.streamed_miss.ttfb_us.is_empty() && t.streamed_hit.ttfb_us.is_empty())
        };
        if !self.tenants.iter().any(any) {
            return String::new();
        }
        let mut out = format!(
            "{:<10} {:<5} {:>7} {:>10} {:>10} {:>10} {:>10}\n",
            "streamed", "cache", "answers", "ttfb p50ms", "ttfb p99ms", "ttlb p50ms", "ttlb p99ms"
        );
        for t in &self.tenants {
            for (what, s) in [("miss", &t.streamed_miss), ("hit", &t.streamed_hit)] {
                let (f, l) = (&s.ttfb_us, &s.ttlb_us);
                out.push_str(&format!(
                    "{:<10} {:<5} {:>7} {:>10} {:>10} {:>10} {:>10}\n",
                    t.tenant,
                    what,
                    f.len(),
                    ms(f.value_at_quantile(0.5)),
                    ms(f.value_at_quantile(0.99)),
                    ms(l.value_at_quantile(0.5)),
                    ms(l.value_at_quantile(0.99)),
                ));
            }
        }
        out
    }
}
