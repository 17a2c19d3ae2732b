//! Calendar quotas (`RATE_LIMIT_QUOTA_TENANT=10000/month`): units per day, ISO week or
//! month in a time zone, reset at the calendar boundary (a tenant's billing anchor day for
//! months) rather than sliding.
//!
//! A quota is counted like any rule, in a compact window at least as long as its longest
//! period, under a key that names the period (`quota-tenant@month-2026-11-01`): within a period
//! nothing leaves the window, and at the boundary the next period's key starts from zero.
//! The periods come from the app's clock (every instance computes the same boundary, up to
//! their clocks' skew); [`QuotaClock`] remembers the current one of each kind and anchor.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::clock::Clock;
use crate::parse::InvalidValue;

/// The calendar period of a quota.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
/// use tenant_guard::ratelimit::{Check, Identity, Period, RateLimiter};
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_QUOTA_TENANT", "10000/month")])?;
/// let metrics = Metrics::new();
/// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
/// let (acme, who) = (TenantId::new("acme")?, Identity::User("u-1".into()));
/// let check = Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/items", cost: None, plan: None };
/// let d = limiter.check(&check).await;
/// let quota = d.rules.iter().find(|r| r.period.is_some()).unwrap();
/// assert_eq!((quota.period, quota.limit, quota.remaining), (Some(Period::Month), 10000, 9999));
/// assert_eq!(Period::Month.to_string(), "month");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// From midnight to midnight.
    Day,
    /// ISO weeks, Monday to Monday.
    Week,
    /// From a day of the month (the tenant's billing anchor, default 1) to the same day of
    /// the next month (the month's last day when it has fewer days).
    Month,
}

impl Period {
    /// The window a quota of this period is counted in: at least its longest period
    /// (a day is 25 h across a daylight-saving change; a month 31 days).
    pub(crate) fn window(self) -> Duration {
        Duration::from_secs(match self {
            Self::Day => 25 * 3600,
            Self::Week => 7 * 24 * 3600 + 3600,
            Self::Month => 31 * 24 * 3600 + 3600,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `N/day`, `N/week` or `N/month`.
///
/// ```
/// use tenant_guard::ratelimit::{parse_calendar_quota, Period};
/// let (n, p) = parse_calendar_quota("10000/month").unwrap();
/// assert_eq!((n.get(), p), (10000, Period::Month));
/// assert!(parse_calendar_quota("10/fortnight").is_err());
/// assert!(parse_calendar_quota("0/day").is_err());
/// ```
pub fn parse_calendar_quota(s: &str) -> Result<(std::num::NonZeroU32, Period), InvalidValue> {
    let (n, p) = s
        .split_once('/')
        .ok_or_else(|| format!("`{}` has no `/`", s.trim()))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a whole number", n.trim()))?;
    let n = std::num::NonZeroU32::new(n).ok_or("the quota must be at least 1")?;
    let p = match p.trim() {
        "day" => Period::Day,
        "week" => Period::Week,
        "month" => Period::Month,
        other => return Err(format!("`{other}` is not `day`, `week` or `month`").into()),
    };
    Ok((n, p))
}

/// Where periods fall: the time zone (`RATE_LIMIT_QUOTA_TZ`) and the tenants' billing anchor
/// days (`RATE_LIMIT_QUOTA_ANCHORS`).
///
/// ```
/// use tenant_guard::ratelimit::QuotaCalendar;
/// let c = QuotaCalendar::new("Europe/Paris").unwrap().anchor("acme", 15).unwrap();
/// assert_eq!(c.anchor_of("acme"), 15);
/// assert_eq!(c.anchor_of("globex"), 1);
/// assert!(QuotaCalendar::new("Mars/Olympus").is_err());
/// assert!(QuotaCalendar::utc().anchor("acme", 32).is_err());
/// ```
#[derive(Clone, PartialEq)]
pub struct QuotaCalendar {
    tz_name: String,
    tz: TimeZone,
    anchors: HashMap<String, i8>,
}

impl fmt::Debug for QuotaCalendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaCalendar")
            .field("tz", &self.tz_name)
            .field("anchors", &self.anchors)
            .finish()
    }
}

impl Default for QuotaCalendar {
    fn default() -> Self {
        Self::utc()
    }
}

impl QuotaCalendar {
    /// Periods in UTC, months from the 1st.
    ///
    /// ```
    /// use tenant_guard::ratelimit::QuotaCalendar;
    /// let c = QuotaCalendar::utc();
    /// assert_eq!(c.time_zone(), "UTC");
    /// assert_eq!(c, QuotaCalendar::default());
    /// ```
    pub fn utc() -> Self {
        Self {
            tz_name: "UTC".into(),
            tz: TimeZone::UTC,
            anchors: HashMap::new(),
        }
    }

    /// Periods in the IANA time zone `tz` (e.g. `America/New_York`).
    ///
    /// ```
    /// use tenant_guard::config::Config;
    /// use tenant_guard::ratelimit::QuotaCalendar;
    ///
    /// assert_eq!(QuotaCalendar::new("America/New_York").unwrap().time_zone(), "America/New_York");
    /// assert!(QuotaCalendar::new("EST5EDT-ish").is_err());
    /// // From the environment: RATE_LIMIT_QUOTA_TZ.
    /// let c = Config::from_vars([("RATE_LIMIT_QUOTA_TENANT", "100/day"), ("RATE_LIMIT_QUOTA_TZ", "Asia/Tokyo")]).unwrap();
    /// assert_eq!(c.rate_limit.policy.quota_calendar().time_zone(), "Asia/Tokyo");
    /// ```
    pub fn new(tz: &str) -> Result<Self, InvalidValue> {
        let zone = TimeZone::get(tz.trim())
            .map_err(|e| format!("`{}` is not a known time zone: {e}", tz.trim()))?;
        Ok(Self {
            tz_name: tz.trim().to_string(),
            tz: zone,
            anchors: HashMap::new(),
        })
    }

    /// Monthly periods of `tenant` start on `day` (1 to 31; in a shorter month, its last day).
    ///
    /// ```
    /// use tenant_guard::ratelimit::QuotaCalendar;
    /// // acme is billed from the 15th, globex from the 31st (the last day of shorter months).
    /// let c = QuotaCalendar::utc().anchor("acme", 15).unwrap().anchor("globex", 31).unwrap();
    /// assert_eq!((c.anchor_of("acme"), c.anchor_of("globex")), (15, 31));
    /// assert!(QuotaCalendar::utc().anchor("acme", 0).is_err());
    /// ```
    pub fn anchor(mut self, tenant: &str, day: u8) -> Result<Self, InvalidValue> {
        if !(1..=31).contains(&day) {
            return Err(format!("anchor day {day} of `{tenant}` is not between 1 and 31").into());
        }
        self.anchors
            .insert(tenant.to_string(), i8::try_from(day).unwrap_or(1));
        Ok(self)
    }

    /// The time zone's name.
    ///
    /// ```
    /// use tenant_guard::ratelimit::QuotaCalendar;
    /// assert_eq!(QuotaCalendar::new(" Europe/Paris ").unwrap().time_zone(), "Europe/Paris");
    /// ```
    pub fn time_zone(&self) -> &str {
        &self.tz_name
    }

    /// The tenants' anchor days.
    ///
    /// ```
    /// use tenant_guard::ratelimit::QuotaCalendar;
    /// let c = QuotaCalendar::utc().anchor("acme", 15).unwrap().anchor("globex", 3).unwrap();
    /// let mut anchors: Vec<(&str, u8)> = c.anchors().collect();
    /// anchors.sort();
    /// assert_eq!(anchors, [("acme", 15), ("globex", 3)]);
    /// ```
    pub fn anchors(&self) -> impl Iterator<Item = (&str, u8)> {
        self.anchors
            .iter()
            .map(|(t, &d)| (t.as_str(), d.unsigned_abs()))
    }

    /// The billing anchor day of `tenant` (1 unless set).
    ///
    /// ```
    /// use tenant_guard::config::Config;
    /// let c = Config::from_vars([("RATE_LIMIT_QUOTA_TENANT", "10000/month"), ("RATE_LIMIT_QUOTA_ANCHORS", "acme=15")]).unwrap();
    /// let calendar = c.rate_limit.policy.quota_calendar();
    /// assert_eq!(calendar.anchor_of("acme"), 15);
    /// assert_eq!(calendar.anchor_of("globex"), 1); // months from the 1st unless set
    /// ```
    pub fn anchor_of(&self, tenant: &str) -> u8 {
        self.anchors.get(tenant).map_or(1, |d| d.unsigned_abs())
    }

    /// The period of kind `p` (anchored on `anchor` for months) that holds `now_ms`: its
    /// start and end (ms) and its first day (`2026-11-15`).
    pub(crate) fn period(&self, p: Period, anchor: u8, now_ms: u64) -> Option<Span> {
        let now = Timestamp::from_millisecond(i64::try_from(now_ms).ok()?).ok()?;
        let today = now.to_zoned(self.tz.clone()).date();
        let (start, end) = match p {
            Period::Day => (today, today.tomorrow().ok()?),
            Period::Week => {
                let back = i64::from(today.weekday().to_monday_zero_offset());
                let monday = today.checked_sub(back.days()).ok()?;
                (monday, monday.checked_add(7.days()).ok()?)
            }
            Period::Month => {
                let anchor = i8::try_from(anchor).unwrap_or(1);
                let in_month = |d: Date| -> Option<Date> {
                    Date::new(d.year(), d.month(), anchor.min(d.days_in_month())).ok()
                };
                let this = in_month(today)?;
                let start = if this <= today {
                    this
                } else {
                    in_month(today.first_of_month().checked_sub(1.month()).ok()?)?
                };
                let end = in_month(start.first_of_month().checked_add(1.month()).ok()?)?;
                (start, end)
            }
        };
        let ms = |d: Date| -> Option<u64> {
            let z = d.to_zoned(self.tz.clone()).ok()?;
            u64::try_from(z.timestamp().as_millisecond()).ok()
        };
        Some(Span {
            start_ms: ms(start)?,
            end_ms: ms(end)?,
            label: Arc::from(format!("{}-{start}", p.as_str())),
        })
    }
}

/// One period: its bounds (ms) and its name in keys (its first day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    pub(crate) label: Arc<str>,
}

/// The current period of each kind and anchor, recomputed when the clock leaves it.
pub(crate) struct QuotaClock {
    calendar: QuotaCalendar,
    clock: Arc<dyn Clock>,
    current: Mutex<HashMap<(Period, u8), Span>>,
}

impl fmt::Debug for QuotaClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaClock")
            .field("calendar", &self.calendar)
            .finish_non_exhaustive()
    }
}

impl QuotaClock {
    pub(crate) fn new(calendar: QuotaCalendar, clock: Arc<dyn Clock>) -> Self {
        Self {
            calendar,
            clock,
            current: Mutex::new(HashMap::new()),
        }
    }

    /// The period of kind `p` for `tenant` now, and now (ms).
    pub(crate) fn now(&self, p: Period, tenant: &str) -> Option<(Span, u64)> {
        let now = self.clock.now_ms();
        let anchor = if p == Period::Month {
            self.calendar.anchor_of(tenant)
        } else {
            1
        };
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = current.get(&(p, anchor)) {
            if (s.start_ms..s.end_ms).contains(&now) {
                return Some((s.clone(), now));
            }
        }
        let s = self.calendar.period(p, anchor, now)?;
        // At most 3 kinds x 31 anchors.
        current.insert((p, anchor), s.clone());
        Some((s, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> u64 {
        u64::try_from(s.parse::<Timestamp>().unwrap().as_millisecond()).unwrap()
    }

    fn span(c: &QuotaCalendar, p: Period, anchor: u8, now: &str) -> (String, u64, u64) {
        let s = c.period(p, anchor, at(now)).unwrap();
        let (kind, day) = s.label.split_once('-').unwrap();
        assert_eq!(kind, p.to_string(), "the label names the kind of period");
        (day.to_string(), s.start_ms, s.end_ms)
    }

    #[test]
    fn periods_follow_the_calendar_in_the_time_zone() {
        let utc = QuotaCalendar::utc();
        assert_eq!(
            span(&utc, Period::Day, 1, "2026-11-30T23:59:59Z"),
            (
                "2026-11-30".into(),
                at("2026-11-30T00:00:00Z"),
                at("2026-12-01T00:00:00Z")
            )
        );
        // 2026-11-26 is a Thursday: its ISO week started on Monday the 23rd.
        assert_eq!(
            span(&utc, Period::Week, 1, "2026-11-26T12:00:00Z").0,
            "2026-11-23"
        );
        assert_eq!(
            span(&utc, Period::Month, 1, "2026-12-01T00:00:00Z"),
            (
                "2026-12-01".into(),
                at("2026-12-01T00:00:00Z"),
                at("2027-01-01T00:00:00Z")
            )
        );
        // Anchored on the 15th: before it, the period started last month.
        assert_eq!(
            span(&utc, Period::Month, 15, "2026-11-10T00:00:00Z"),
            (
                "2026-10-15".into(),
                at("2026-10-15T00:00:00Z"),
                at("2026-11-15T00:00:00Z")
            )
        );
        // Anchored on the 31st: the last day of shorter months.
        assert_eq!(
            span(&utc, Period::Month, 31, "2027-02-28T10:00:00Z").0,
            "2027-02-28"
        );
        assert_eq!(
            span(&utc, Period::Month, 31, "2027-02-27T10:00:00Z").0,
            "2027-01-31"
        );
        // New York: the day ends at 05:00Z in winter, and the day of the DST change is 25 h.
        let ny = QuotaCalendar::new("America/New_York").unwrap();
        assert_eq!(
            span(&ny, Period::Day, 1, "2026-12-01T04:59:59Z").0,
            "2026-11-30"
        );
        let (_, s, e) = span(&ny, Period::Day, 1, "2026-11-01T12:00:00Z");
        assert_eq!(e - s, 25 * 3600 * 1000);
        assert!(e - s <= u64::try_from(Period::Day.window().as_millis()).unwrap());
    }
}
