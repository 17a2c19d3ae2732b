//! Settings of concurrency limits: the type [`crate::config::Config`] assembles from the
//! environment (`RATE_LIMIT_CONCURRENCY_TENANT`, `RATE_LIMIT_CONCURRENCY_USER`,
//! `RATE_LIMIT_CONCURRENCY_LEASE`).

use std::num::NonZeroU32;
use std::time::Duration;

use crate::parse::InvalidValue;
use crate::ratelimit::EndpointPattern;

/// Who a concurrency cap counts together.
///
/// ```
/// use tenant_guard::concurrency::{CapScope, RouteCap};
///
/// let cap = RouteCap::parse("tenant: GET /api/reports/{day} = 5").unwrap();
/// assert_eq!(cap.scope, CapScope::Tenant);
/// assert_eq!(RouteCap::parse("user: GET /export = 1").unwrap().scope, CapScope::User);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapScope {
    /// Every request of a tenant.
    Tenant,
    /// Every request of one user (or client address) within a tenant.
    User,
}

impl CapScope {
    /// `tenant` or `user`.
    ///
    /// ```
    /// use tenant_guard::concurrency::CapScope;
    /// // The word of `RATE_LIMIT_CONCURRENCY_ENDPOINTS` and of a refusal's `scope`.
    /// assert_eq!(CapScope::Tenant.as_str(), "tenant");
    /// assert_eq!(CapScope::User.as_str(), "user");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::User => "user",
        }
    }
}

/// A cap on the requests in flight to the endpoints a pattern matches.
///
/// ```
/// use std::num::NonZeroU32;
/// use http::Method;
/// use tenant_guard::concurrency::{CapScope, ConcurrencyConfig, RouteCap};
/// use tenant_guard::ratelimit::EndpointPattern;
///
/// let cap = RouteCap {
///     scope: CapScope::User,
///     pattern: EndpointPattern::parse("POST /api/ai/{*rest}").unwrap(),
///     limit: NonZeroU32::new(2).unwrap(),
/// };
/// assert!(cap.pattern.matches(&Method::POST, "/api/ai/{*rest}"));
/// assert_eq!(cap, RouteCap::parse("user: POST /api/ai/{*rest} = 2").unwrap());
/// let config = ConcurrencyConfig::default().route(cap);
/// assert!(config.is_enabled());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCap {
    /// Whose requests count together.
    pub scope: CapScope,
    /// The endpoints.
    pub pattern: EndpointPattern,
    /// Requests in flight at most.
    pub limit: NonZeroU32,
}

impl RouteCap {
    /// Parses `tenant: METHOD /route = N` or `user: METHOD /route = N`.
    ///
    /// ```
    /// use tenant_guard::concurrency::{CapScope, RouteCap};
    /// let cap = RouteCap::parse("user: POST /api/ai/{*rest} = 2").unwrap();
    /// assert_eq!((cap.scope, cap.limit.get()), (CapScope::User, 2));
    /// assert_eq!(cap.pattern.to_string(), "POST /api/ai/{*rest}");
    /// assert!(RouteCap::parse("POST /api/ai/{*rest} = 2").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let s = s.trim();
        let (scope, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` names no `tenant:` or `user:` scope"))?;
        let scope = match scope.trim() {
            "tenant" => CapScope::Tenant,
            "user" => CapScope::User,
            other => {
                return Err(format!("`{s}`: unknown scope `{other}` (`tenant` or `user`)").into());
            }
        };
        let (pattern, limit) = EndpointPattern::parse_numbered(rest, "limit")?;
        Ok(Self {
            scope,
            pattern,
            limit,
        })
    }

    /// Parses `;`-separated caps (`RATE_LIMIT_CONCURRENCY_ENDPOINTS`).
    ///
    /// ```
    /// use tenant_guard::concurrency::RouteCap;
    ///
    /// let caps = RouteCap::parse_list("user: POST /api/ai/{*rest} = 2; tenant: GET /export = 1").unwrap();
    /// assert_eq!(caps.len(), 2);
    /// assert_eq!(caps[1].limit.get(), 1);
    /// assert!(RouteCap::parse_list("user: POST /api/ai/{*rest} = none").is_err());
    /// ```
    pub fn parse_list(s: &str) -> Result<Vec<Self>, InvalidValue> {
        s.split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Self::parse)
            .collect()
    }
}

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
    /// Caps on the requests in flight to some endpoints
    /// (`RATE_LIMIT_CONCURRENCY_ENDPOINTS`, e.g. `user: POST /api/ai/{*rest} = 2`).
    pub routes: Vec<RouteCap>,
}

impl ConcurrencyConfig {
    /// Whether no cap is set: the layer then lets every request through untouched.
    ///
    /// ```
    /// use tenant_guard::concurrency::ConcurrencyConfig;
    /// assert!(ConcurrencyConfig::default().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tenant.is_none() && self.user.is_none() && self.routes.is_empty()
    }
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            tenant: None,
            user: None,
            lease: Duration::from_secs(30),
            routes: Vec::new(),
        }
    }
}

impl ConcurrencyConfig {
    /// With a cap per tenant.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tenant_guard::concurrency::ConcurrencyConfig;
    ///
    /// let c = ConcurrencyConfig::default().per_tenant(NonZeroU32::new(50).unwrap());
    /// assert_eq!(c.tenant.map(NonZeroU32::get), Some(50));
    /// assert_eq!(c.user, None);
    /// ```
    #[must_use]
    pub fn per_tenant(mut self, limit: NonZeroU32) -> Self {
        self.tenant = Some(limit);
        self
    }

    /// With a cap per user (or client address).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tenant_guard::concurrency::ConcurrencyConfig;
    ///
    /// let c = ConcurrencyConfig::default().per_user(NonZeroU32::new(4).unwrap());
    /// assert_eq!(c.user.map(NonZeroU32::get), Some(4));
    /// assert!(c.is_enabled());
    /// ```
    #[must_use]
    pub fn per_user(mut self, limit: NonZeroU32) -> Self {
        self.user = Some(limit);
        self
    }

    /// With leases of `lease` (at least 1 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::concurrency::ConcurrencyConfig;
    ///
    /// let c = ConcurrencyConfig::default().lease(Duration::from_secs(10));
    /// assert_eq!(c.lease, Duration::from_secs(10));
    /// // Never under a second.
    /// assert_eq!(ConcurrencyConfig::default().lease(Duration::from_millis(10)).lease, Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// With a cap on some endpoints.
    ///
    /// ```
    /// use tenant_guard::concurrency::{ConcurrencyConfig, RouteCap};
    ///
    /// let c = ConcurrencyConfig::default()
    ///     .route(RouteCap::parse("user: POST /api/ai/{*rest} = 2").unwrap())
    ///     .route(RouteCap::parse("tenant: GET /export = 1").unwrap());
    /// assert_eq!(c.routes.len(), 2);
    /// assert!(c.tenant.is_none() && c.user.is_none());
    /// ```
    #[must_use]
    pub fn route(mut self, cap: RouteCap) -> Self {
        self.routes.push(cap);
        self
    }

    /// Whether any cap is set.
    ///
    /// ```
    /// use tenant_guard::config::Config;
    ///
    /// let c = Config::from_vars([("RATE_LIMIT_CONCURRENCY_TENANT", "20")]).unwrap();
    /// assert!(c.concurrency.is_enabled());
    /// assert!(!Config::from_vars([("REDIS_ENABLED", "false")]).unwrap().concurrency.is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.tenant.is_some() || self.user.is_some() || !self.routes.is_empty()
    }
}
