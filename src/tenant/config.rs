//! Settings of tenant resolution: the type [`crate::config::Config`] assembles from the environment
//! and code can build directly.

use super::TenantId;

/// Where the tenant of a request comes from (`TG_TENANT_SOURCE`).
///
/// ```
/// use tenant_guard::config::{Config, TenantSource};
/// let c = Config::from_vars([("TG_TENANT_SOURCE", "subdomain:example.com")]).unwrap();
/// assert_eq!(c.tenant.source, TenantSource::Subdomain("example.com".into()));
/// let c = Config::from_vars([("TG_TENANT_SOURCE", "header:X-Org-Id")]).unwrap();
/// assert_eq!(c.tenant.source, TenantSource::Header("X-Org-Id".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSource {
    /// A request header (`header` or `header:X-Org-Id`).
    Header(String),
    /// The first label of `Host` under a base domain (`subdomain:example.com`).
    Subdomain(String),
    /// The first path segment after a prefix (`path` or `path:/t`).
    PathPrefix(String),
}

/// Tenant resolution settings.
///
/// ```
/// use tenant_guard::config::{Config, TenantConfig, TenantSource};
/// use tenant_guard::tenant::TenantId;
///
/// let c = Config::from_vars([("TG_DEFAULT_TENANT", "acme"), ("TG_TENANTS", "acme,globex")]).unwrap();
/// assert_eq!(c.tenant.default_tenant, Some(TenantId::new("acme").unwrap()));
/// assert_eq!(c.tenant.known.as_ref().map(Vec::len), Some(2));
/// assert_eq!(TenantConfig::default().source, TenantSource::Header("X-Tenant-ID".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantConfig {
    /// Where the tenant comes from (default: header `X-Tenant-ID`).
    pub source: TenantSource,
    /// Tenant used when a request names none (`TG_DEFAULT_TENANT`, default: none, i.e. 400).
    pub default_tenant: Option<TenantId>,
    /// The only tenants served (`TG_TENANTS`, a comma list; default: any valid id). Others
    /// get 404 and nothing is written for them.
    pub known: Option<Vec<TenantId>>,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            source: TenantSource::Header("X-Tenant-ID".into()),
            default_tenant: None,
            known: None,
        }
    }
}
