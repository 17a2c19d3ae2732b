//! [`Lease`]: how much of a hot counter's quota an instance may reserve in one Redis call
//! and then admit in process (`RATE_LIMIT_LEASE`).

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::parse::InvalidValue;

/// How much of a rule's remaining quota an app instance may reserve at once, and for how
/// long, for counters that are hot (`RATE_LIMIT_LEASE`, `per-tenant=50/100ms`).
///
/// With a lease a check that reaches Redis also reserves up to `units` more units of the
/// counter (never more than are left), in the same atomic script call; the instance then
/// admits the next checks of that counter in process until the reserved units are spent or
/// `ttl` has passed (never past the end of the compact bucket that holds the reservation,
/// so every window holding a leased admission holds its reservation: nothing over-admits).
/// Unused units go back when the lease ends. A check is answered from leases only when
/// every rule it meets holds one; the slice adapts to demand (a counter checked once per
/// lease length reserves nothing). Compact rules only, not shadow, not blocking.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::ratelimit::Lease;
/// let l = Lease::parse("50/100ms").unwrap();
/// assert_eq!((l.units.get(), l.ttl), (50, Duration::from_millis(100)));
/// assert_eq!(l.to_string(), "50/100ms");
/// assert!(Lease::parse("0/100ms").is_err());
/// assert!(Lease::parse("50/20s").is_err(), "a lease is held at most 10s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Most units one reservation takes beyond the check's own cost.
    pub units: NonZeroU32,
    /// Longest time a reservation is admitted from (1 ms to 10 s).
    pub ttl: Duration,
}

impl Lease {
    /// Accepted form, for error messages.
    ///
    /// ```
    /// use tenant_guard::ratelimit::Lease;
    /// let err = Lease::parse("lots").unwrap_err();
    /// let message = format!("RATE_LIMIT_LEASE: {}; expected {}", err.reason(), Lease::FORM);
    /// assert!(message.contains("e.g. `50/100ms`"));
    /// ```
    pub const FORM: &'static str = "UNITS/DURATION: most units one reservation takes, held at most DURATION (1ms..10s), e.g. `50/100ms`";

    /// Longest lease.
    ///
    /// ```
    /// use tenant_guard::ratelimit::Lease;
    /// assert_eq!(Lease::parse("50/10s").unwrap().ttl, Lease::MAX_TTL);
    /// assert!(Lease::parse("50/11s").is_err());
    /// ```
    pub const MAX_TTL: Duration = Duration::from_secs(10);

    /// Parses `50/100ms`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::ratelimit::Lease;
    /// let l = Lease::parse(" 200/50ms ").unwrap();
    /// assert_eq!((l.units.get(), l.ttl), (200, Duration::from_millis(50)));
    /// assert!(Lease::parse("200").is_err()); // no duration
    /// assert!(Lease::parse("-1/50ms").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let s = s.trim();
        let (u, d) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not UNITS/DURATION"))?;
        let units = u
            .trim()
            .parse::<NonZeroU32>()
            .map_err(|_| format!("`{}` is not a whole number of units above 0", u.trim()))?;
        let ttl = crate::parse::duration(d).map_err(|e| format!("`{}`: {e}", d.trim()))?;
        let lease = Self { units, ttl };
        if !lease.valid() {
            return Err(format!("`{}` is not between 1ms and 10s", d.trim()).into());
        }
        Ok(lease)
    }

    /// Whether the fields are in range (they are public: a lease built in code skips
    /// [`parse`](Self::parse)).
    pub(crate) fn valid(&self) -> bool {
        self.ttl >= Duration::from_millis(1) && self.ttl <= Self::MAX_TTL
    }
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.units, humantime::format_duration(self.ttl))
    }
}

/// Parses `RULE=UNITS/DURATION, ...` (`RATE_LIMIT_LEASE`).
pub(crate) fn parse_leases(s: &str) -> Result<Vec<(String, Lease)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, l) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not RULE=UNITS/DURATION"))?;
        let l = Lease::parse(l).map_err(|e| format!("`{part}`: {e}"))?;
        out.push((name.trim().to_string(), l));
    }
    Ok(out)
}
