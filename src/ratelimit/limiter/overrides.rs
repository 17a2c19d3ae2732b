//! Limits changed at runtime: a tenant's own rule parameters (from [`TenantLimits`]),
//! looked up per check when any tenant has some, and replaced as a whole when the
//! store's table changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Inner;
use crate::parse::InvalidValue;
use crate::ratelimit::LimitStore;
use crate::ratelimit::algo::Spec;
use crate::ratelimit::{AccessList, Identity, RateLimiter, TenantLimits};
use crate::tenant::TenantId;

/// The rule parameters of a check: the policy's (a plan's or the base ones), or a tenant's
/// own.
pub(super) enum Specs<'a> {
    Policy(&'a [Spec]),
    Tenant(Arc<[Spec]>),
}

impl std::ops::Deref for Specs<'_> {
    type Target = [Spec];

    fn deref(&self) -> &[Spec] {
        match self {
            Self::Policy(s) => s,
            Self::Tenant(s) => s,
        }
    }
}

/// Exempt and deny lists set at runtime.
#[derive(Default)]
pub(super) struct RuntimeLists {
    pub(super) exempt: AccessList,
    pub(super) deny: AccessList,
}

/// Tenants' runtime limits, as given and as rule parameters.
#[derive(Default)]
pub(super) struct Overrides {
    pub(super) by_tenant: HashMap<String, (TenantLimits, Arc<[Spec]>)>,
}

impl RateLimiter {
    /// The tenant's own rule parameters, if it has runtime limits.
    pub(super) fn tenant_specs(&self, tenant: &TenantId) -> Option<Arc<[Spec]>> {
        let inner = &*self.inner;
        if !inner.any_overrides.load(Ordering::Acquire) {
            return None;
        }
        let o = inner
            .overrides
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        o.by_tenant.get(tenant.as_str()).map(|(_, s)| s.clone())
    }

    /// Sets the exempt and deny lists that apply on top of the rate-limit layer's
    /// (`RATE_LIMIT_EXEMPT` / `RATE_LIMIT_DENY`), here; logged when they change.
    ///
    /// ```
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// use tenant_guard::ratelimit::{AccessList, RateLimiter};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "100/1m")]).unwrap();
    /// let m = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &m).unwrap(), &m);
    /// limiter.set_access_lists(AccessList::parse("tenant:acme").unwrap(), AccessList::parse("user:scraper-9").unwrap());
    /// let (exempt, deny) = limiter.access_lists();
    /// assert_eq!((exempt.to_env(), deny.to_env()), ("tenant:acme".into(), "user:scraper-9".into()));
    /// ```
    pub fn set_access_lists(&self, exempt: AccessList, deny: AccessList) {
        let inner = &*self.inner;
        let mut l = inner
            .lists
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if l.exempt != exempt || l.deny != deny {
            tracing::info!(exempt = %exempt.to_env(), deny = %deny.to_env(), "runtime exempt and deny lists changed");
        }
        let any = !exempt.is_empty() || !deny.is_empty();
        l.exempt = exempt;
        l.deny = deny;
        inner.any_lists.store(any, Ordering::Release);
    }

    /// The runtime exempt and deny lists in force here.
    ///
    /// ```
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// use tenant_guard::ratelimit::{AccessList, RateLimiter};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "100/1m")]).unwrap();
    /// let m = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &m).unwrap(), &m);
    /// let (exempt, deny) = limiter.access_lists();
    /// assert!(exempt.is_empty() && deny.is_empty()); // none set at runtime yet
    /// limiter.set_access_lists(AccessList::default(), AccessList::parse("ip:198.51.100.0/24").unwrap());
    /// assert!(limiter.access_lists().1.has_addresses());
    /// ```
    pub fn access_lists(&self) -> (AccessList, AccessList) {
        let l = self
            .inner
            .lists
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (l.exempt.clone(), l.deny.clone())
    }

    /// Whether runtime lists are set, and whether they hold addresses (the layer then
    /// resolves the client address).
    pub(crate) fn runtime_lists(&self) -> Option<bool> {
        if !self.inner.any_lists.load(Ordering::Acquire) {
            return None;
        }
        let l = self
            .inner
            .lists
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(l.exempt.has_addresses() || l.deny.has_addresses())
    }

    /// The runtime lists' verdict on a request: the deny entry kind that matches, else the
    /// exempt entry kind that does.
    pub(crate) fn runtime_match(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        client: Option<std::net::IpAddr>,
    ) -> (Option<&'static str>, Option<&'static str>) {
        let l = self
            .inner
            .lists
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            l.deny.matches(tenant, identity, client),
            l.exempt.matches(tenant, identity, client),
        )
    }

    /// The runtime limits of `tenant` in force here.
    ///
    /// ```
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::ratelimit::{RateLimiter, TenantLimits};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "100/1m")]).unwrap();
    /// let m = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &m).unwrap(), &m);
    /// let acme = TenantId::new("acme").unwrap();
    /// assert_eq!(limiter.tenant_limits(&acme), None);
    /// limiter.set_tenant_limits(&acme, Some(TenantLimits::parse("per-tenant=5000/1m").unwrap())).unwrap();
    /// assert_eq!(limiter.tenant_limits(&acme).unwrap().to_string(), "per-tenant=5000/60s");
    /// ```
    pub fn tenant_limits(&self, tenant: &TenantId) -> Option<TenantLimits> {
        let o = self
            .inner
            .overrides
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        o.by_tenant.get(tenant.as_str()).map(|(l, _)| l.clone())
    }

    /// Checks `limits` against the policy (rules and plans it names must exist) and
    /// returns the rule parameters they give.
    pub(crate) fn specs_for(
        &self,
        tenant: Option<&TenantId>,
        limits: &TenantLimits,
    ) -> Result<Arc<[Spec]>, InvalidValue> {
        specs_for(&self.inner, tenant, limits)
    }

    /// Whether `limits` fit this limiter's policy: every rule and plan it names exists.
    ///
    /// ```
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// use tenant_guard::ratelimit::{RateLimiter, TenantLimits};
    /// let config = Config::from_vars([("RATE_LIMIT_TENANT", "100/1m")]).unwrap();
    /// let m = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &m).unwrap(), &m);
    /// assert!(limiter.check_limits(&TenantLimits::parse("per-tenant=5/1s").unwrap()).is_ok());
    /// let err = limiter.check_limits(&TenantLimits::parse("nope=5/1s").unwrap()).unwrap_err();
    /// assert_eq!(err.reason(), "no rule is named `nope`");
    /// ```
    pub fn check_limits(&self, limits: &TenantLimits) -> Result<(), InvalidValue> {
        self.specs_for(None, limits).map(|_| ())
    }

    /// Sets (or, with `None` or empty limits, clears) one tenant's runtime limits here.
    /// Each change is logged with what changed. Refused (nothing changes) if `limits`
    /// names a rule or plan the policy does not have.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::ratelimit::{Check, Identity, RateLimiter, TenantLimits};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "100/1m")])?;
    /// let m = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &m)?, &m);
    /// let (acme, who) = (TenantId::new("acme")?, Identity::User("u-1".into()));
    /// limiter.set_tenant_limits(&acme, Some(TenantLimits::parse("per-tenant=5000/1m")?))?;
    /// let check = Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/items", cost: None, plan: None };
    /// assert_eq!(limiter.check(&check).await.rules[0].limit, 5000);
    /// // A rule the policy does not have: refused, nothing changes.
    /// assert!(limiter.set_tenant_limits(&acme, Some(TenantLimits::parse("nope=1/1s")?)).is_err());
    /// limiter.set_tenant_limits(&acme, None)?; // back to the configured 100/1m
    /// assert_eq!(limiter.check(&check).await.rules[0].limit, 100);
    /// # Ok(()) }
    /// ```
    pub fn set_tenant_limits(
        &self,
        tenant: &TenantId,
        limits: Option<TenantLimits>,
    ) -> Result<(), InvalidValue> {
        let limits = limits.filter(|l| !l.is_empty());
        let specs = limits
            .as_ref()
            .map(|l| self.specs_for(Some(tenant), l))
            .transpose()?;
        let inner = &*self.inner;
        let mut o = inner
            .overrides
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = o.by_tenant.get(tenant.as_str()).map(|(l, _)| l.to_string());
        match limits.zip(specs) {
            Some((l, s)) => {
                tracing::info!(tenant = %tenant, before = ?before, after = %l, "rate limits of a tenant changed");
                o.by_tenant.insert(tenant.as_str().to_string(), (l, s));
            }
            None => {
                if o.by_tenant.remove(tenant.as_str()).is_some() {
                    tracing::info!(tenant = %tenant, before = ?before, "rate limits of a tenant cleared");
                }
            }
        }
        inner
            .any_overrides
            .store(!o.by_tenant.is_empty(), Ordering::Release);
        Ok(())
    }

    /// Replaces every tenant's runtime limits with `table` (what the store holds), logging
    /// each tenant whose limits changed; entries that name unknown rules or plans are
    /// skipped (and logged). Returns how many tenants' limits changed.
    ///
    /// ```
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::ratelimit::{RateLimiter, TenantLimits};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "100/1m")]).unwrap();
    /// let m = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &m).unwrap(), &m);
    /// let (acme, globex) = (TenantId::new("acme").unwrap(), TenantId::new("globex").unwrap());
    /// limiter.set_tenant_limits(&acme, Some(TenantLimits::parse("per-tenant=5000/1m").unwrap())).unwrap();
    /// // The table now lists globex only: acme's limits go, globex's come.
    /// let table = [(globex.clone(), TenantLimits::parse("per-tenant=10/1m").unwrap())];
    /// assert_eq!(limiter.replace_tenant_limits(&table), 2);
    /// assert_eq!(limiter.tenant_limits(&acme), None);
    /// assert!(limiter.tenant_limits(&globex).is_some());
    /// ```
    pub fn replace_tenant_limits(&self, table: &[(TenantId, TenantLimits)]) -> usize {
        self.replace_keeping(table, &[])
    }

    /// [`replace_tenant_limits`](Self::replace_tenant_limits), keeping what is in force for
    /// the tenants in `keep` (whose entries this version cannot read).
    fn replace_keeping(&self, table: &[(TenantId, TenantLimits)], keep: &[String]) -> usize {
        let current: HashMap<String, TenantLimits> = {
            let o = self
                .inner
                .overrides
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            o.by_tenant
                .iter()
                .map(|(t, (l, _))| (t.clone(), l.clone()))
                .collect()
        };
        let mut changed = 0;
        for (t, l) in table {
            if current.get(t.as_str()) != Some(l) {
                match self.set_tenant_limits(t, Some(l.clone())) {
                    Ok(()) => changed += 1,
                    Err(e) => {
                        tracing::warn!(tenant = %t, limits = %l, error = %e, "runtime limits ignored")
                    }
                }
            }
        }
        let listed: std::collections::HashSet<&str> =
            table.iter().map(|(t, _)| t.as_str()).collect();
        for t in current.keys() {
            if !listed.contains(t.as_str()) && !keep.contains(t) {
                if let Ok(t) = TenantId::new(t) {
                    let _ = self.set_tenant_limits(&t, None);
                    changed += 1;
                }
            }
        }
        changed
    }
}

fn specs_for(
    inner: &Inner,
    tenant: Option<&TenantId>,
    limits: &TenantLimits,
) -> Result<Arc<[Spec]>, InvalidValue> {
    let policy = &inner.policy;
    // The plan given, else the one the configuration puts the tenant on.
    let plan = limits
        .plan
        .as_deref()
        .or_else(|| tenant.and_then(|t| policy.plan_of(t)));
    let base: &[Spec] = match plan {
        Some(p) => inner
            .plan_specs
            .get(p)
            .ok_or_else(|| format!("no plan is named `{p}`"))?,
        None => &inner.base_specs,
    };
    for (r, _) in &limits.quotas {
        if !policy.rules().iter().any(|rule| &rule.name == r) {
            return Err(format!("no rule is named `{r}`").into());
        }
    }
    let specs: Vec<Spec> = policy
        .rules()
        .iter()
        .zip(base)
        .map(
            |(rule, spec)| match limits.quotas.iter().find(|(r, _)| r == &rule.name) {
                Some((_, q)) => Spec::new(spec.algo, q.limit.get(), rule.window_ms(q), rule.shadow)
                    .with_block(rule.block),
                None => *spec,
            },
        )
        .collect();
    Ok(specs.into())
}

/// A running watch of a [`LimitStore`] ([`RateLimiter::watch_limits`]): stops when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use tenant_guard::{backend::Backend, config::Config, keys::Keys, metrics::Metrics, tenant::TenantId};
/// use tenant_guard::ratelimit::{LimitStore, RateLimiter, TenantLimits};
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "100/1m")]).unwrap();
/// let metrics = Metrics::new();
/// let backend = Backend::from_config(&config, &metrics).unwrap();
/// let limiter = RateLimiter::from_config(&config, backend.clone(), &metrics);
/// let store = LimitStore::new(backend, &Keys::default());
/// let watch = limiter.watch_limits(store.clone(), Duration::from_millis(20));
/// drop(watch); // stops watching: later changes in the store are not applied here
/// let acme = TenantId::new("acme").unwrap();
/// store.set(&acme, &TenantLimits::parse("per-tenant=5000/1m").unwrap()).await.unwrap();
/// tokio::time::sleep(Duration::from_millis(100)).await;
/// assert_eq!(limiter.tenant_limits(&acme), None);
/// # }
/// ```
#[derive(Debug)]
pub struct LimitWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LimitWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RateLimiter {
    /// Applies the limits in `store` now and whenever they change, until the returned
    /// handle is dropped: the store's version is read every `every` (one `GET`), and its
    /// table when the version moved, so a change made on any instance (or by
    /// `tenant-guard limits set`) is in force everywhere within `every` plus a round trip.
    /// While the store is unreachable the limits in force stay. Must be called inside a
    /// Tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::ratelimit::{LimitStore, RateLimiter, TenantLimits};
    /// let config = Config::from_vars([("RATE_LIMIT_TENANT", "100/1m")]).unwrap();
    /// let metrics = Metrics::new();
    /// let backend = Backend::from_config(&config, &metrics).unwrap();
    /// let limiter = RateLimiter::from_config(&config, backend.clone(), &metrics);
    /// let store = LimitStore::new(backend, &tenant_guard::keys::Keys::default());
    /// let _watch = limiter.watch_limits(store.clone(), Duration::from_millis(50));
    /// let acme = TenantId::new("acme").unwrap();
    /// store.set(&acme, &TenantLimits::parse("per-tenant=5000/1m").unwrap()).await.unwrap();
    /// tokio::time::sleep(Duration::from_millis(200)).await;
    /// assert_eq!(limiter.tenant_limits(&acme).unwrap().to_string(), "per-tenant=5000/60s");
    /// # }
    /// ```
    pub fn watch_limits(&self, store: LimitStore, every: std::time::Duration) -> LimitWatch {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut seen: Option<u64> = None;
            loop {
                if let Ok(v) = store.version().await {
                    if seen != Some(v) {
                        match store.table().await {
                            Ok((table, unparsed)) => {
                                for t in &unparsed {
                                    tracing::warn!(tenant = %t, "runtime limits not readable here: the limits in force stay");
                                }
                                this.replace_keeping(&table, &unparsed);
                                match store.lists().await {
                                    Ok((exempt, deny)) => this.set_access_lists(exempt, deny),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "runtime exempt and deny lists not readable here: the lists in force stay")
                                    }
                                }
                                seen = Some(v);
                            }
                            Err(e) => tracing::debug!(error = %e, "runtime limits not read"),
                        }
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        LimitWatch { task }
    }
}
