//! Settings of concurrency limits: the type [`crate::config::Config`] assembles from the
//! environment (`RATE_LIMIT_CONCURRENCY_TENANT`, `RATE_LIMIT_CONCURRENCY_USER`,
//! `RATE_LIMIT_CONCURRENCY_LEASE`).

use std::num::NonZeroU32;
use std::time::Duration;

/// How many requests may be in flight at once, per tenant and per user, across instances.
///
/// ```
/// use std::num::NonZeroU32;
/// use tenant_guard::concurrency::ConcurrencyConfig;
/// let c = ConcurrencyConfig::default().per_user(NonZeroU32::new(2).unwrap());
/// assert!(c.is_enabled());
/// assert!(!ConcurrencyConfig::default().is_enabled());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConcurrencyConfig {
    /// Requests in flight per tenant (`RATE_LIMIT_CONCURRENCY_TENANT`, default none).
    pub tenant: Option<NonZeroU32>,
    /// Requests in flight per user or client address (`RATE_LIMIT_CONCURRENCY_USER`,
    /// default none).
    pub user: Option<NonZeroU32>,
    /// How long a lease lives unless renewed (`RATE_LIMIT_CONCURRENCY_LEASE`, default
    /// 30 s): a request in flight renews its lease every third of this, so only a crashed
    /// instance's leases run out, after at most this long.
    pub lease: Duration,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            tenant: None,
            user: None,
            lease: Duration::from_secs(30),
        }
    }
}

impl ConcurrencyConfig {
    /// With a cap per tenant.
    #[must_use]
    pub fn per_tenant(mut self, limit: NonZeroU32) -> Self {
        self.tenant = Some(limit);
        self
    }

    /// With a cap per user (or client address).
    #[must_use]
    pub fn per_user(mut self, limit: NonZeroU32) -> Self {
        self.user = Some(limit);
        self
    }

    /// With leases of `lease` (at least 1 s).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// Whether any cap is set.
    pub fn is_enabled(&self) -> bool {
        self.tenant.is_some() || self.user.is_some()
    }
}
