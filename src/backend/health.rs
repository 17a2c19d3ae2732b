//! Shared health state of the Redis connection and its circuit breaker.
//!
//! The breaker opens after `failure_threshold` consecutive failed commands. While it is
//! open, every command fails at once with [`BackendError::Unavailable`](super::BackendError)
//! — a dead Redis costs a request a few atomic loads, not a timeout — and one background
//! probe PINGs Redis every `probe_interval` until it answers, then closes the breaker.
//! The layers' outage policies (`open`, `closed`, `local`) build on this state.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::BreakerConfig;
use crate::metrics::Metrics;

/// State of the circuit breaker.
///
/// ```
/// use tenant_guard::backend::{BreakerState, Health};
///
/// let health = Health::new(Default::default(), Default::default());
/// assert_eq!(health.state(), BreakerState::Closed);
/// // As `/health` reports it.
/// assert_eq!(serde_json::to_string(&BreakerState::Open).unwrap(), r#""open""#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BreakerState {
    /// Commands go to Redis.
    Closed,
    /// Redis is considered down: commands fail fast while a probe waits for it.
    Open,
}

/// Shared health of one Redis backend. Clones share the state.
///
/// ```
/// use tenant_guard::backend::{BreakerState, Health};
/// use tenant_guard::config::BreakerConfig;
///
/// let health = Health::new(BreakerConfig::default(), Default::default());
/// assert_eq!(health.state(), BreakerState::Closed);
/// for _ in 0..3 {
///     health.record_failure("connection refused");
/// }
/// assert_eq!(health.state(), BreakerState::Open);
/// health.record_success(std::time::Duration::from_micros(300));
/// assert_eq!(health.state(), BreakerState::Closed);
/// ```
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
struct Inner {
    open: AtomicBool,
    consecutive_failures: AtomicU32,
    last_latency_us: AtomicU64,
    last_error: Mutex<Option<(String, SystemTime)>>,
    opened_at_ms: AtomicU64,
    probing: AtomicBool,
    config: BreakerConfig,
    metrics: Metrics,
}

impl Health {
    /// Fresh state: breaker closed.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tenant_guard::{backend::Health, config::BreakerConfig, metrics::Metrics};
    ///
    /// let mut config = BreakerConfig::default();
    /// config.failure_threshold = NonZeroU32::new(1).unwrap();
    /// let health = Health::new(config, Metrics::new());
    /// assert!(health.allows());
    /// assert!(health.record_failure("connection refused")); // one failure is enough now
    /// assert!(!health.allows());
    /// ```
    pub fn new(config: BreakerConfig, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                open: AtomicBool::new(false),
                consecutive_failures: AtomicU32::new(0),
                last_latency_us: AtomicU64::new(0),
                last_error: Mutex::new(None),
                opened_at_ms: AtomicU64::new(0),
                probing: AtomicBool::new(false),
                config,
                metrics,
            }),
        }
    }

    /// The breaker's state.
    ///
    /// ```
    /// use tenant_guard::backend::{BreakerState, Health};
    ///
    /// let health = Health::new(Default::default(), Default::default());
    /// assert_eq!(health.state(), BreakerState::Closed);
    /// for _ in 0..3 {
    ///     health.record_failure("timed out");
    /// }
    /// assert_eq!(health.state(), BreakerState::Open);
    /// ```
    pub fn state(&self) -> BreakerState {
        if self.inner.open.load(Ordering::Acquire) {
            BreakerState::Open
        } else {
            BreakerState::Closed
        }
    }

    /// Whether commands may go to Redis now.
    ///
    /// ```
    /// use tenant_guard::backend::Health;
    ///
    /// let health = Health::new(Default::default(), Default::default());
    /// assert!(health.allows());
    /// for _ in 0..3 {
    ///     health.record_failure("connection refused");
    /// }
    /// assert!(!health.allows()); // commands now fail fast with `BackendError::Unavailable`
    /// ```
    pub fn allows(&self) -> bool {
        !self.inner.open.load(Ordering::Acquire)
    }

    /// Records a successful command (or probe); closes the breaker.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::backend::Health;
    ///
    /// let health = Health::new(Default::default(), Default::default());
    /// health.record_failure("timed out");
    /// health.record_success(Duration::from_micros(250));
    /// assert_eq!(health.consecutive_failures(), 0);
    /// assert_eq!(health.last_latency(), Some(Duration::from_micros(250)));
    /// ```
    pub fn record_success(&self, latency: Duration) {
        self.inner.last_latency_us.store(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.inner.consecutive_failures.store(0, Ordering::Relaxed);
        if self.inner.open.swap(false, Ordering::AcqRel) {
            self.inner.metrics.breaker_open.set(0);
            tracing::info!("Redis is reachable again; circuit breaker closed");
        }
    }

    /// Records a failed command; returns true if this failure opened the breaker.
    ///
    /// ```
    /// use tenant_guard::backend::Health;
    ///
    /// // The default threshold: three consecutive failures.
    /// let health = Health::new(Default::default(), Default::default());
    /// assert!(!health.record_failure("timed out"));
    /// assert!(!health.record_failure("timed out"));
    /// assert!(health.record_failure("timed out")); // this one opened the breaker
    /// assert!(!health.record_failure("timed out")); // already open
    /// ```
    pub fn record_failure(&self, error: &str) -> bool {
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((error.to_string(), SystemTime::now()));
        let n = self
            .inner
            .consecutive_failures
            .fetch_add(1, Ordering::AcqRel)
            + 1;
        if n >= self.inner.config.failure_threshold.get()
            && !self.inner.open.swap(true, Ordering::AcqRel)
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
            self.inner.opened_at_ms.store(now, Ordering::Relaxed);
            self.inner.metrics.breaker_open.set(1);
            self.inner.metrics.breaker_opened.inc();
            tracing::warn!(
                error,
                failures = n,
                "Redis unavailable; circuit breaker open"
            );
            return true;
        }
        false
    }

    /// Latency of the last successful command or probe.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::backend::Health;
    ///
    /// let health = Health::new(Default::default(), Default::default());
    /// assert_eq!(health.last_latency(), None);
    /// health.record_success(Duration::from_millis(2));
    /// assert_eq!(health.last_latency(), Some(Duration::from_millis(2)));
    /// ```
    pub fn last_latency(&self) -> Option<Duration> {
        match self.inner.last_latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The last error seen, if any.
    ///
    /// ```
    /// use tenant_guard::backend::Health;
    ///
    /// let health = Health::new(Default::default(), Default::default());
    /// assert_eq!(health.last_error(), None);
    /// health.record_failure("connection refused");
    /// assert_eq!(health.last_error().as_deref(), Some("connection refused"));
    /// ```
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(e, _)| e.clone())
    }

    /// Consecutive failures so far.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::backend::Health;
    ///
    /// let health = Health::new(Default::default(), Default::default());
    /// health.record_failure("timed out");
    /// health.record_failure("timed out");
    /// assert_eq!(health.consecutive_failures(), 2);
    /// health.record_success(Duration::from_millis(1));
    /// assert_eq!(health.consecutive_failures(), 0);
    /// ```
    pub fn consecutive_failures(&self) -> u32 {
        self.inner.consecutive_failures.load(Ordering::Relaxed)
    }

    /// The breaker settings.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::{backend::Health, config::BreakerConfig};
    ///
    /// let health = Health::new(BreakerConfig::default(), Default::default());
    /// assert_eq!(health.config().failure_threshold.get(), 3);
    /// assert_eq!(health.config().probe_interval, Duration::from_millis(500));
    /// ```
    pub fn config(&self) -> BreakerConfig {
        self.inner.config
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Claims the single prober slot; false if a probe is already running.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn start_probing(&self) -> bool {
        !self.inner.probing.swap(true, Ordering::AcqRel)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn stop_probing(&self) {
        self.inner.probing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn health(threshold: u32) -> Health {
        let config = BreakerConfig {
            failure_threshold: NonZeroU32::new(threshold).unwrap(),
            ..BreakerConfig::default()
        };
        Health::new(config, Metrics::new())
    }

    /// The breaker is driven by events, not time: it opens on the threshold-th consecutive
    /// failure, a success in between starts the count again, and a success (a command or
    /// the probe's PING) closes it.
    #[test]
    fn opens_on_consecutive_failures_and_closes_on_success() {
        let h = health(3);
        assert!(h.allows());
        assert!(!h.record_failure("a"));
        assert!(!h.record_failure("b"));
        h.record_success(Duration::from_micros(300));
        assert_eq!(h.consecutive_failures(), 0);
        assert!(!h.record_failure("c"));
        assert!(!h.record_failure("d"));
        assert!(
            h.allows(),
            "two failures after a success are under the threshold"
        );
        assert!(
            h.record_failure("e"),
            "the third consecutive failure opens it"
        );
        assert_eq!(h.state(), BreakerState::Open);
        assert!(!h.allows());
        assert!(!h.record_failure("f"), "already open: not opened again");
        assert_eq!(h.last_error().as_deref(), Some("f"));
        h.record_success(Duration::from_millis(1));
        assert_eq!(h.state(), BreakerState::Closed);
        assert_eq!(h.last_latency(), Some(Duration::from_millis(1)));
        // Clones share one state (every store and the probe see the same breaker).
        let clone = h.clone();
        for _ in 0..3 {
            clone.record_failure("g");
        }
        assert!(!h.allows());
    }
}
