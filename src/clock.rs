//! Time for the in-memory backend: the real monotonic clock, or a manual one for tests.
//!
//! Redis-backed code never uses this: Lua scripts read Redis `TIME`, so all app instances
//! agree on one clock.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic clock in milliseconds since an arbitrary origin.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use tenant_guard::{backend::MemoryStore, clock::Clock, keys::Keys, tenant::TenantId};
///
/// // A clock of your own: here, one that moves 1 s at every read.
/// #[derive(Debug, Default)]
/// struct Ticking(AtomicU64);
/// impl Clock for Ticking {
///     fn now_ms(&self) -> u64 {
///         self.0.fetch_add(1000, Ordering::SeqCst)
///     }
/// }
/// let store = MemoryStore::with_clock(Default::default(), Ticking::default());
/// let key = Keys::default().query(&TenantId::new("acme").unwrap(), "h");
/// store.set(&key, "v".into(), Some(Duration::from_millis(1500))).unwrap();
/// assert!(store.get(&key).is_some()); // 1 s later
/// assert!(store.get(&key).is_none()); // 2 s later: expired
/// ```
pub trait Clock: Debug + Send + Sync + 'static {
    /// Milliseconds since the clock's origin. Never goes backwards.
    fn now_ms(&self) -> u64;
}

/// The system's monotonic clock, read through the CPU's time-stamp counter where it is
/// invariant (via [`quanta`], as governor does): about 12 ns a read on an x86 VM where
/// `Instant::now` costs about 30 ns. Falls back to the OS monotonic clock elsewhere.
///
/// ```
/// use tenant_guard::clock::{Clock, SystemClock};
/// let c = SystemClock::new();
/// let a = c.now_ms();
/// std::thread::sleep(std::time::Duration::from_millis(5));
/// assert!(c.now_ms() >= a + 5);
/// ```
#[derive(Debug, Clone)]
pub struct SystemClock {
    clock: quanta::Clock,
    origin: u64,
}

impl SystemClock {
    /// A clock whose origin is now.
    ///
    /// ```
    /// use tenant_guard::clock::{Clock, SystemClock};
    /// let clock = SystemClock::new();
    /// assert!(clock.now_ms() < 1_000); // its origin is now
    /// ```
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        Self { clock, origin }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin, self.clock.raw()) / 1_000_000
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let view = clock.clone();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(view.now_ms(), 2000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    ///
    /// ```
    /// use tenant_guard::clock::{Clock, ManualClock};
    /// assert_eq!(ManualClock::new().now_ms(), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::clock::{Clock, ManualClock};
    /// let clock = ManualClock::new();
    /// clock.advance(Duration::from_millis(1500));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(clock.now_ms(), 2500);
    /// ```
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the time (ignored if it would go backwards).
    ///
    /// ```
    /// use tenant_guard::clock::{Clock, ManualClock};
    /// let clock = ManualClock::new();
    /// clock.set_ms(10_000);
    /// assert_eq!(clock.now_ms(), 10_000);
    /// clock.set_ms(5_000); // never backwards
    /// assert_eq!(clock.now_ms(), 10_000);
    /// ```
    pub fn set_ms(&self, ms: u64) {
        self.now.fetch_max(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}
