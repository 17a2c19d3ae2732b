//! Who is being throttled: the tenants with the most admitted and the most throttled
//! requests over the last minutes, kept in a bounded structure instead of a metric label
//! per tenant (a client can invent any number of tenant ids).
//!
//! One slot per minute for the last [`TOP_MINUTES`] minutes; each holds two Space-Saving
//! summaries (admitted, throttled) of at most [`CAPACITY`] tenants. A tenant new to a full
//! summary takes the place of the one with the smallest count and inherits that count as
//! its possible overcount (`error`): every tenant with more than `1/CAPACITY` of a minute's
//! requests is always in it, and no count is ever under the true one. Memory is bounded by
//! `TOP_MINUTES x 2 x CAPACITY` entries whatever the traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Minutes a report can look back over.
///
/// ```
/// use tenant_guard::metrics::{Metrics, TOP_MINUTES};
/// // Asked for more, a report looks back over the minutes it keeps.
/// assert_eq!(Metrics::new().tenant_top().report(60, 10).minutes, TOP_MINUTES);
/// ```
pub const TOP_MINUTES: u64 = 15;
/// Most rows a report lists per ranking.
///
/// ```
/// use tenant_guard::metrics::{Metrics, TOP_MAX_ROWS};
/// let report = Metrics::new().tenant_top().report(5, 1_000); // clamped to TOP_MAX_ROWS
/// assert!(report.admitted.len() <= TOP_MAX_ROWS);
/// ```
pub const TOP_MAX_ROWS: usize = 50;
/// Tenants each minute's summary keeps (per ranking).
pub(crate) const CAPACITY: usize = 64;

/// One minute's Space-Saving summary: tenant -> (count, possible overcount).
#[derive(Default)]
struct Summary {
    counts: HashMap<Box<str>, (u64, u64)>,
}

impl Summary {
    fn add(&mut self, tenant: &str) {
        if let Some(c) = self.counts.get_mut(tenant) {
            c.0 += 1;
            return;
        }
        if self.counts.len() < CAPACITY {
            self.counts.insert(tenant.into(), (1, 0));
            return;
        }
        // Full: the smallest count gives its place to the newcomer, which may have been
        // it all along (it inherits the count as its error bound).
        let (min_key, min) = self
            .counts
            .iter()
            .min_by_key(|(_, c)| c.0)
            .map(|(k, c)| (k.clone(), c.0))
            .expect("a full summary is not empty");
        self.counts.remove(&min_key);
        self.counts.insert(tenant.into(), (min + 1, min));
    }

    /// The count a tenant absent from this summary may still have had.
    fn floor(&self) -> u64 {
        if self.counts.len() < CAPACITY {
            0
        } else {
            self.counts.values().map(|c| c.0).min().unwrap_or(0)
        }
    }
}

#[derive(Default)]
struct Slot {
    /// Minutes since the Unix epoch this slot counts (`u64::MAX`: never used).
    minute: u64,
    admitted: Summary,
    throttled: Summary,
}

/// The bounded per-tenant usage of the last minutes ([`Metrics::tenant_top`](super::Metrics::tenant_top)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::get, Router};
/// use tower::ServiceExt;
/// use tenant_guard::TenantGuard;
///
/// let guard = TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_MAX", "1")])?;
/// let app: Router = Router::new().route("/items", get(|| async { "ok" })).layer(guard.layer());
/// for _ in 0..3 {
///     let req = http::Request::get("/items").header("x-tenant-id", "acme").body(axum::body::Body::empty())?;
///     app.clone().oneshot(req).await?;
/// }
/// let report = guard.metrics().tenant_top().report(1, 10);
/// assert_eq!((report.admitted[0].tenant.as_str(), report.admitted[0].count), ("acme", 1));
/// assert_eq!((report.throttled[0].tenant.as_str(), report.throttled[0].count), ("acme", 2));
/// guard.shutdown().await;
/// # Ok(()) }
/// ```
pub struct TenantTop {
    slots: Mutex<Vec<Slot>>,
}

impl Default for TenantTop {
    fn default() -> Self {
        let slots = (0..TOP_MINUTES)
            .map(|_| Slot {
                minute: u64::MAX,
                ..Slot::default()
            })
            .collect();
        Self {
            slots: Mutex::new(slots),
        }
    }
}

impl std::fmt::Debug for TenantTop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTop").finish_non_exhaustive()
    }
}

/// One tenant of a ranking.
///
/// ```
/// use tenant_guard::metrics::TopRow;
///
/// // A row as `GET /ops/top` lists it: 120 requests, of which at most 3 may be overcount.
/// let row = TopRow { tenant: "acme".into(), count: 120, error: 3 };
/// assert_eq!(
///     serde_json::to_value(&row).unwrap(),
///     serde_json::json!({ "tenant": "acme", "count": 120, "error": 3 })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopRow {
    /// The tenant.
    pub tenant: String,
    /// Requests counted for it over the report's minutes (never less than the true count).
    pub count: u64,
    /// How much of `count` may be overcount (0: exact).
    pub error: u64,
}

/// The tenants with the most admitted and throttled requests ([`TenantTop::report`]).
///
/// ```
/// use tenant_guard::metrics::Metrics;
///
/// let report = Metrics::new().tenant_top().report(5, 10);
/// assert_eq!(
///     serde_json::to_value(&report).unwrap(),
///     serde_json::json!({ "minutes": 5, "throttled": [], "admitted": [] })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopReport {
    /// Minutes looked back over (the current one included).
    pub minutes: u64,
    /// Most throttled first.
    pub throttled: Vec<TopRow>,
    /// Most admitted first.
    pub admitted: Vec<TopRow>,
}

fn now_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl TenantTop {
    /// Counts one decision of the rate limiter for `tenant` (a validated tenant id: this
    /// module sits below `tenant/` and takes it as text).
    pub(crate) fn record(&self, tenant: &str, allowed: bool) {
        self.record_at(tenant, allowed, now_minute());
    }

    fn record_at(&self, tenant: &str, allowed: bool, minute: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[(minute % TOP_MINUTES) as usize];
        if slot.minute != minute {
            *slot = Slot {
                minute,
                ..Slot::default()
            };
        }
        if allowed {
            slot.admitted.add(tenant);
        } else {
            slot.throttled.add(tenant);
        }
    }

    /// The `rows` tenants (at most [`TOP_MAX_ROWS`]) with the most throttled and the most
    /// admitted requests over the last `minutes` (1 to [`TOP_MINUTES`], the current minute
    /// included; values outside are clamped).
    ///
    /// ```
    /// use tenant_guard::metrics::Metrics;
    /// let report = Metrics::new().tenant_top().report(5, 10);
    /// assert_eq!(report.minutes, 5);
    /// ```
    pub fn report(&self, minutes: u64, rows: usize) -> TopReport {
        self.report_at(minutes, rows, now_minute())
    }

    fn report_at(&self, minutes: u64, rows: usize, now: u64) -> TopReport {
        let minutes = minutes.clamp(1, TOP_MINUTES);
        let rows = rows.clamp(1, TOP_MAX_ROWS);
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let window: Vec<&Slot> = slots
            .iter()
            .filter(|s| s.minute <= now && now - s.minute < minutes)
            .collect();
        let rank = |pick: fn(&Slot) -> &Summary| {
            let mut merged: HashMap<&str, (u64, u64)> = HashMap::new();
            for slot in &window {
                for (tenant, c) in &pick(slot).counts {
                    let e = merged.entry(tenant).or_default();
                    e.0 += c.0;
                    e.1 += c.1;
                }
            }
            // A tenant missing from a full minute may have had up to that minute's floor.
            for slot in &window {
                let s = pick(slot);
                let floor = s.floor();
                if floor > 0 {
                    for (tenant, e) in merged.iter_mut() {
                        if !s.counts.contains_key(*tenant) {
                            e.0 += floor;
                            e.1 += floor;
                        }
                    }
                }
            }
            let mut out: Vec<TopRow> = merged
                .into_iter()
                .map(|(tenant, (count, error))| TopRow {
                    tenant: tenant.to_string(),
                    count,
                    error,
                })
                .collect();
            out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.tenant.cmp(&b.tenant)));
            out.truncate(rows);
            out
        };
        TopReport {
            minutes,
            throttled: rank(|s| &s.throttled),
            admitted: rank(|s| &s.admitted),
        }
    }

    /// Entries held over every minute and ranking (at most `TOP_MINUTES x 2 x CAPACITY`).
    #[cfg(test)]
    fn held(&self) -> usize {
        let slots = self.slots.lock().unwrap();
        slots
            .iter()
            .map(|s| s.admitted.counts.len() + s.throttled.counts.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_throttled_and_admitted_exactly_while_few_tenants() {
        let top = TenantTop::default();
        for _ in 0..30 {
            top.record_at("acme", false, 100);
        }
        for _ in 0..5 {
            top.record_at("globex", false, 100);
        }
        for _ in 0..50 {
            top.record_at("globex", true, 100);
        }
        top.record_at("acme", true, 101);
        let r = top.report_at(5, 10, 101);
        assert_eq!(
            r.throttled,
            vec![
                TopRow {
                    tenant: "acme".into(),
                    count: 30,
                    error: 0
                },
                TopRow {
                    tenant: "globex".into(),
                    count: 5,
                    error: 0
                },
            ]
        );
        assert_eq!(
            r.admitted[0],
            TopRow {
                tenant: "globex".into(),
                count: 50,
                error: 0
            }
        );
        assert_eq!(
            r.admitted[1],
            TopRow {
                tenant: "acme".into(),
                count: 1,
                error: 0
            }
        );
    }

    #[test]
    fn invented_tenants_stay_bounded_and_never_hide_the_heavy_one() {
        let top = TenantTop::default();
        // 5 000 invented tenants a minute, one request each, for twice the window; the
        // heavy tenant sends a tenth of the traffic, interleaved.
        for minute in 0..TOP_MINUTES * 2 {
            for i in 0..5_000u64 {
                top.record_at(&format!("zz-{minute}-{i}"), false, minute);
                if i % 9 == 0 {
                    top.record_at("victim", false, minute);
                }
            }
        }
        assert!(
            top.held() <= TOP_MINUTES as usize * 2 * CAPACITY,
            "{}",
            top.held()
        );
        let now = TOP_MINUTES * 2 - 1;
        let r = top.report_at(TOP_MINUTES, 5, now);
        assert_eq!(r.throttled[0].tenant, "victim");
        // Never under the true count (556 a minute), the overcount bounded by `error`.
        let truth = 556 * TOP_MINUTES;
        let v = &r.throttled[0];
        assert!(v.count >= truth && v.count - v.error <= truth, "{v:?}");
    }

    #[test]
    fn old_minutes_leave_the_window() {
        let top = TenantTop::default();
        top.record_at("acme", false, 10);
        top.record_at("globex", false, 14);
        let r = top.report_at(1, 10, 14);
        assert_eq!(r.throttled.len(), 1);
        assert_eq!(r.throttled[0].tenant, "globex");
        assert_eq!(top.report_at(5, 10, 14).throttled.len(), 2);
        // The slot of minute 10 is reused at minute 10 + TOP_MINUTES: acme is gone.
        top.record_at("initech", false, 10 + TOP_MINUTES);
        let r = top.report_at(TOP_MINUTES, 10, 10 + TOP_MINUTES);
        assert!(r.throttled.iter().all(|row| row.tenant != "acme"), "{r:?}");
        // Out-of-range arguments are clamped, not refused here (the route refuses them).
        assert_eq!(top.report_at(0, 0, 14).minutes, 1);
        assert_eq!(top.report_at(999, 999, 14).minutes, TOP_MINUTES);
    }
}
