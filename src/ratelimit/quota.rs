//! [`Quota`]: `limit` units per sliding `window` (`100/15m`).

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::parse::InvalidValue;

/// `limit` units per sliding `window`.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::ratelimit::Quota;
///
/// let q = Quota::parse("100/15m").unwrap();
/// assert_eq!((q.limit.get(), q.window), (100, Duration::from_secs(900)));
/// assert_eq!(q, Quota::new(100, Duration::from_secs(900)));
/// assert_eq!(Quota::parse(&q.to_string()).unwrap(), q); // written back, it reads the same
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Units (requests, or cost) allowed in any window.
    pub limit: NonZeroU32,
    /// Window length (at least 1 ms, at most [`Quota::MAX_WINDOW`]).
    pub window: Duration,
}

impl Quota {
    /// Accepted form, for error messages.
    ///
    /// ```
    /// use tenant_guard::config::Config;
    /// use tenant_guard::ratelimit::Quota;
    /// let err = Config::from_vars([("RATE_LIMIT_TENANT", "lots")]).unwrap_err();
    /// assert_eq!(err.problems()[0].expected, Quota::FORM);
    /// ```
    pub const FORM: &'static str = "LIMIT/WINDOW with a whole LIMIT >= 1 and a duration WINDOW, e.g. `100/15m`, `1000/60`, `10/1s`";

    /// Longest window: 10 years. Longer ones are refused rather than carried into time
    /// arithmetic that has to fit in 64 bits (microseconds, governor's nanoseconds).
    ///
    /// ```
    /// let ten_years = tenant_guard::ratelimit::Quota::MAX_WINDOW;
    /// assert!(tenant_guard::ratelimit::Quota::parse("1/10y").is_ok());
    /// assert!(tenant_guard::ratelimit::Quota::parse("1/11y").is_err());
    /// # let _ = ten_years;
    /// ```
    pub const MAX_WINDOW: Duration = Duration::from_secs(315_576_000);

    /// `limit` per `window`.
    ///
    /// # Panics
    /// If `limit` is 0 or `window` is under 1 ms or over [`Quota::MAX_WINDOW`] (use
    /// [`Quota::parse`] for input).
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = tenant_guard::ratelimit::Quota::new(100, Duration::from_secs(900));
    /// assert_eq!(q.to_string(), "100/15m");
    /// ```
    pub fn new(limit: u32, window: Duration) -> Self {
        assert!(window >= Duration::from_millis(1), "window under 1 ms");
        assert!(window <= Self::MAX_WINDOW, "window over 10 years");
        Self {
            limit: NonZeroU32::new(limit).expect("limit must be at least 1"),
            window,
        }
    }

    /// Parses `100/15m`.
    ///
    /// ```
    /// let q = tenant_guard::ratelimit::Quota::parse("10/1m").unwrap();
    /// assert_eq!(q.limit.get(), 10);
    /// assert!(tenant_guard::ratelimit::Quota::parse("10 per minute").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let (l, w) = s
            .split_once('/')
            .ok_or_else(|| format!("`{}` has no `/`", s.trim()))?;
        let limit: u32 = l
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a whole number", l.trim()))?;
        let limit = NonZeroU32::new(limit).ok_or("the limit must be at least 1")?;
        let window =
            crate::parse::duration(w).map_err(|e| format!("window `{}`: {e}", w.trim()))?;
        if window < Duration::from_millis(1) {
            return Err("the window must be at least 1ms".into());
        }
        if window > Self::MAX_WINDOW {
            return Err("the window must be at most 10 years".into());
        }
        Ok(Self { limit, window })
    }

    pub(crate) fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.limit,
            humantime::format_duration(self.window)
        )
    }
}
