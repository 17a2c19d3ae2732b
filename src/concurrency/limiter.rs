//! [`ConcurrencyLimiter`]: takes a lease per request in every scope that caps it (the
//! tenant's, the user's) at once, all or nothing; a [`Lease`] gives it back when dropped.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use prometheus_client::metrics::gauge::Gauge;

use super::store::{self, Acquired, LeaseStore, MemoryLeases};
use super::{CapScope, ConcurrencyConfig};
use crate::backend::{Backend, BackendError};
use crate::keys::{KeyKind, Keys, RedisKey};
use crate::metrics::{Metrics, ScopeLabels};
use crate::ratelimit::OutageMode;
use crate::tenant::{Identity, TenantId};

/// Caps requests in flight per tenant and per user, and per route, across instances on
/// Redis (leases that expire, so a crashed instance's requests stop counting after
/// `RATE_LIMIT_CONCURRENCY_LEASE`) and in process on memory. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::num::NonZeroU32;
/// use tenant_guard::backend::{Backend, MemoryStore};
/// use tenant_guard::concurrency::{ConcurrencyConfig, ConcurrencyLimiter};
/// use tenant_guard::keys::Keys;
/// use tenant_guard::ratelimit::OutageMode;
/// use tenant_guard::tenant::{Identity, TenantId};
///
/// let config = ConcurrencyConfig::default().per_user(NonZeroU32::new(1).unwrap());
/// let limiter = ConcurrencyLimiter::new(Backend::Memory(MemoryStore::new(Default::default())),
///                                       config, Keys::default(), OutageMode::Open,
///                                       &tenant_guard::metrics::Metrics::new());
/// let (acme, ann) = (TenantId::new("acme").unwrap(), Identity::User("ann".into()));
/// let first = limiter.acquire(&acme, &ann).await.unwrap();
/// let refused = limiter.acquire(&acme, &ann).await.unwrap_err();
/// assert_eq!((refused.scope, refused.limit), ("user", 1));
/// drop(first);
/// assert!(limiter.acquire(&acme, &ann).await.is_ok());
/// # }
/// ```
#[derive(Clone)]
pub struct ConcurrencyLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn LeaseStore>,
    /// In-process leases while the shared store is down (`RATE_LIMIT_OUTAGE=local`).
    fallback: Option<Arc<MemoryLeases>>,
    config: ConcurrencyConfig,
    keys: Keys,
    outage: OutageMode,
    metrics: Metrics,
}

impl std::fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("config", &self.inner.config)
            .field("outage", &self.inner.outage)
            .finish_non_exhaustive()
    }
}

/// A request refused by a concurrency cap (or, with `RATE_LIMIT_OUTAGE=closed`, because
/// the lease store is unreachable).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::num::NonZeroU32;
/// use tenant_guard::backend::{Backend, MemoryStore};
/// use tenant_guard::concurrency::{ConcurrencyConfig, ConcurrencyLimiter};
/// use tenant_guard::{ratelimit::OutageMode, tenant::{Identity, TenantId}};
///
/// let config = ConcurrencyConfig::default().per_tenant(NonZeroU32::new(1).unwrap());
/// let limiter = ConcurrencyLimiter::new(Backend::Memory(MemoryStore::new(Default::default())),
///     config, Default::default(), OutageMode::Open, &Default::default());
/// let acme = TenantId::new("acme").unwrap();
/// let _running = limiter.acquire(&acme, &Identity::User("ann".into())).await.unwrap();
/// let denied = limiter.acquire(&acme, &Identity::User("bob".into())).await.unwrap_err();
/// assert_eq!((denied.scope, denied.endpoint.as_deref(), denied.limit), ("tenant", None, 1));
/// assert_eq!(denied.retry_after, std::time::Duration::from_secs(1));
/// assert!(!denied.unavailable); // a 429, not a 503
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConcurrencyDenied {
    /// `tenant` or `user`: the scope that is full.
    pub scope: &'static str,
    /// The endpoint pattern of a per-route cap (`None`: the cap on every request).
    pub endpoint: Option<String>,
    /// Its cap.
    pub limit: u32,
    /// When to try again (1 s: a place frees whenever a request in flight ends).
    pub retry_after: Duration,
    /// The store was unreachable and the outage mode is `closed` (a 503, not a 429).
    pub unavailable: bool,
}

/// One capped scope of a request.
struct Scope {
    scope: CapScope,
    endpoint: Option<String>,
    key: RedisKey,
    limit: u32,
}

impl ConcurrencyLimiter {
    /// A limiter on `backend`; `outage` decides a request while Redis is unreachable
    /// (`open`: admitted uncounted, `closed`: refused, `local`: counted in this process).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// use tenant_guard::concurrency::ConcurrencyLimiter;
    /// use tenant_guard::{keys::Keys, ratelimit::OutageMode, tenant::{Identity, TenantId}};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_CONCURRENCY_USER", "2")])?;
    /// let metrics = Metrics::new();
    /// let limiter = ConcurrencyLimiter::new(Backend::from_config(&config, &metrics)?,
    ///     config.concurrency.clone(), Keys::default(), OutageMode::Closed, &metrics);
    /// let (acme, ann) = (TenantId::new("acme")?, Identity::User("ann".into()));
    /// let _a = limiter.acquire(&acme, &ann).await.unwrap();
    /// let _b = limiter.acquire(&acme, &ann).await.unwrap();
    /// assert!(limiter.acquire(&acme, &ann).await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn new(
        backend: Backend,
        config: ConcurrencyConfig,
        keys: Keys,
        outage: OutageMode,
        metrics: &Metrics,
    ) -> Self {
        let store = store::on(&backend);
        let fallback = (store.expires() && outage == OutageMode::Local)
            .then(|| Arc::new(MemoryLeases::default()));
        Self {
            inner: Arc::new(Inner {
                store,
                fallback,
                config,
                keys,
                outage,
                metrics: metrics.clone(),
            }),
        }
    }

    /// The caps.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::concurrency::{ConcurrencyConfig, ConcurrencyLimiter};
    /// use tenant_guard::ratelimit::OutageMode;
    ///
    /// let config = ConcurrencyConfig::default().per_user(NonZeroU32::new(3).unwrap());
    /// let limiter = ConcurrencyLimiter::new(Backend::Memory(MemoryStore::new(Default::default())),
    ///     config.clone(), Default::default(), OutageMode::Open, &Default::default());
    /// assert_eq!(limiter.config(), &config);
    /// assert_eq!(limiter.config().user.map(NonZeroU32::get), Some(3));
    /// ```
    pub fn config(&self) -> &ConcurrencyConfig {
        &self.inner.config
    }

    /// The key of one scope's lease set: `[route:<pattern>:]tenant` or
    /// `[route:<pattern>:]<kind>:<identity>` (components escaped by [`Keys`]).
    fn scope_key(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        scope: CapScope,
        route: Option<&str>,
    ) -> RedisKey {
        let (kind, value) = identity.parts();
        let mut parts: Vec<&str> = Vec::with_capacity(4);
        if let Some(r) = route {
            parts.extend(["route", r]);
        }
        match scope {
            CapScope::Tenant => parts.push("tenant"),
            CapScope::User => parts.extend([kind, value]),
        }
        self.inner.keys.key(KeyKind::Concurrency, tenant, &parts)
    }

    /// The scopes that cap a request of `identity` in `tenant`, to `method` on the matched
    /// route template of `endpoint` (`None`: the caps on every request only).
    fn scopes(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        endpoint: Option<(&Method, &str)>,
    ) -> Vec<Scope> {
        let c = &self.inner.config;
        let mut out = Vec::with_capacity(2);
        for (scope, cap) in [(CapScope::Tenant, c.tenant), (CapScope::User, c.user)] {
            if let Some(n) = cap {
                out.push(Scope {
                    scope,
                    endpoint: None,
                    key: self.scope_key(tenant, identity, scope, None),
                    limit: n.get(),
                });
            }
        }
        if let Some((method, route)) = endpoint {
            for r in c.routes.iter().filter(|r| r.pattern.matches(method, route)) {
                let pattern = r.pattern.to_string();
                out.push(Scope {
                    scope: r.scope,
                    key: self.scope_key(tenant, identity, r.scope, Some(&pattern)),
                    endpoint: Some(pattern),
                    limit: r.limit.get(),
                });
            }
        }
        out
    }

    /// Takes a lease for one request under the caps on every request (per tenant, per
    /// user): in every capped scope at once, or in none. Hold the [`Lease`] while the
    /// request runs (the layer holds it until the response body ends or is dropped).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::num::NonZeroU32;
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::concurrency::{ConcurrencyConfig, ConcurrencyLimiter};
    /// use tenant_guard::{ratelimit::OutageMode, tenant::{Identity, TenantId}};
    ///
    /// let config = ConcurrencyConfig::default().per_user(NonZeroU32::new(1).unwrap());
    /// let limiter = ConcurrencyLimiter::new(Backend::Memory(MemoryStore::new(Default::default())),
    ///     config, Default::default(), OutageMode::Open, &Default::default());
    /// let acme = TenantId::new("acme").unwrap();
    /// let ann = limiter.acquire(&acme, &Identity::User("ann".into())).await.unwrap();
    /// assert!(ann.is_held());
    /// // One user's request in flight does not hold back another's.
    /// assert!(limiter.acquire(&acme, &Identity::User("bob".into())).await.is_ok());
    /// assert!(limiter.acquire(&acme, &Identity::User("ann".into())).await.is_err());
    /// # }
    /// ```
    pub async fn acquire(
        &self,
        tenant: &TenantId,
        identity: &Identity,
    ) -> Result<Lease, ConcurrencyDenied> {
        self.take(tenant, self.scopes(tenant, identity, None)).await
    }

    /// Like [`acquire`](Self::acquire), with the per-route caps that match `method` on the
    /// matched route template `route` (e.g. `/api/reports/{day}`) too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use http::Method;
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::concurrency::{ConcurrencyConfig, ConcurrencyLimiter, RouteCap};
    /// use tenant_guard::{ratelimit::OutageMode, tenant::{Identity, TenantId}};
    ///
    /// let config = ConcurrencyConfig::default().route(RouteCap::parse("user: POST /api/ai/{*rest} = 1").unwrap());
    /// let limiter = ConcurrencyLimiter::new(Backend::Memory(MemoryStore::new(Default::default())),
    ///     config, Default::default(), OutageMode::Open, &Default::default());
    /// let (acme, ann) = (TenantId::new("acme").unwrap(), Identity::User("ann".into()));
    /// let _running = limiter.acquire_for(&acme, &ann, &Method::POST, "/api/ai/{*rest}").await.unwrap();
    /// let denied = limiter.acquire_for(&acme, &ann, &Method::POST, "/api/ai/{*rest}").await.unwrap_err();
    /// assert_eq!(denied.endpoint.as_deref(), Some("POST /api/ai/{*rest}"));
    /// // Other routes are not capped.
    /// assert!(!limiter.acquire_for(&acme, &ann, &Method::GET, "/api/items").await.unwrap().is_held());
    /// # }
    /// ```
    pub async fn acquire_for(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        method: &Method,
        route: &str,
    ) -> Result<Lease, ConcurrencyDenied> {
        self.take(tenant, self.scopes(tenant, identity, Some((method, route))))
            .await
    }

    async fn take(
        &self,
        tenant: &TenantId,
        scopes: Vec<Scope>,
    ) -> Result<Lease, ConcurrencyDenied> {
        if scopes.is_empty() {
            return Ok(Lease::none());
        }
        let id = crate::secret::random_token();
        let ticket = Ticket {
            store: self.inner.store.clone(),
            keys: scopes.iter().map(|s| (s.key.clone(), s.limit)).collect(),
            marker: Arc::new(
                self.inner
                    .keys
                    .key(KeyKind::Concurrency, tenant, &["released", &id]),
            ),
            id: id.into(),
            lease: self.inner.config.lease,
        };
        let pending = Pending(Some(ticket));
        let t = pending.0.as_ref().expect("armed");
        let acquired = t.store.acquire(&t.keys, &t.marker, &t.id, t.lease).await;
        let result = match acquired {
            Ok(Acquired::Held) => Ok(Lease::held(pending.disarm(), self.in_flight())),
            Ok(Acquired::Full { index }) => {
                pending.disarm();
                Err(full(&scopes, index))
            }
            // Released before the acquire ran: this process gave up on it already.
            Ok(Acquired::Released) => Ok(Lease::none()),
            Err(e) => {
                // The script may still run later: its lease is released (or marked).
                let keys = t.keys.to_vec();
                drop(pending);
                self.outage(&scopes, tenant, keys, &e)
            }
        };
        if let Err(d) = &result {
            if !d.unavailable {
                self.inner
                    .metrics
                    .concurrency_denied
                    .get_or_create(&ScopeLabels { scope: d.scope })
                    .inc();
            }
        }
        result
    }

    fn in_flight(&self) -> Gauge {
        self.inner.metrics.concurrency_in_flight.clone()
    }

    /// A request while the store fails, by the outage mode.
    fn outage(
        &self,
        scopes: &[Scope],
        tenant: &TenantId,
        keys: Vec<(RedisKey, u32)>,
        error: &BackendError,
    ) -> Result<Lease, ConcurrencyDenied> {
        tracing::debug!(error = %error, mode = ?self.inner.outage, "concurrency lease store failed");
        match (&self.inner.fallback, self.inner.outage) {
            (Some(mem), _) => match mem.try_acquire(&keys) {
                Acquired::Held => {
                    let id = crate::secret::random_token();
                    let ticket = Ticket {
                        store: mem.clone(),
                        keys: keys.into(),
                        marker: Arc::new(self.inner.keys.key(
                            KeyKind::Concurrency,
                            tenant,
                            &["released", &id],
                        )),
                        id: id.into(),
                        lease: self.inner.config.lease,
                    };
                    Ok(Lease::held(ticket, self.in_flight()))
                }
                Acquired::Full { index } => Err(full(scopes, index)),
                Acquired::Released => Ok(Lease::none()),
            },
            (None, OutageMode::Closed) => Err(ConcurrencyDenied {
                scope: scopes.first().map_or("tenant", |s| s.scope.as_str()),
                endpoint: None,
                limit: scopes.first().map_or(0, |s| s.limit),
                retry_after: Duration::from_secs(1),
                unavailable: true,
            }),
            (None, _) => Ok(Lease::none()),
        }
    }
}

/// A full scope. Its retry time is a second: a place frees whenever a request ends (held
/// leases are renewed, so the oldest one's expiry says nothing).
fn full(scopes: &[Scope], index: usize) -> ConcurrencyDenied {
    let s = scopes.get(index);
    ConcurrencyDenied {
        scope: s.map_or("tenant", |s| s.scope.as_str()),
        endpoint: s.and_then(|s| s.endpoint.clone()),
        limit: s.map_or(0, |s| s.limit),
        retry_after: Duration::from_secs(1),
        unavailable: false,
    }
}

/// What names one lease in its store: given back by a [`Lease`], or by a [`Pending`] guard
/// when its acquire did not come back.
struct Ticket {
    store: Arc<dyn LeaseStore>,
    keys: Arc<[(RedisKey, u32)]>,
    marker: Arc<RedisKey>,
    id: Arc<str>,
    lease: Duration,
}

impl Ticket {
    /// Gives the lease back: at once in process, else the future that does it (a failure
    /// leaves the lease to end at its TTL).
    fn release(self) -> Option<ReleaseFuture> {
        if self.store.release_now(&self.keys) {
            return None;
        }
        Some(Box::pin(async move {
            let _ = self
                .store
                .release(&self.keys, &self.marker, &self.id, self.lease)
                .await;
        }))
    }

    /// Gives the lease back from a drop: the release runs as a task.
    fn release_detached(self) {
        if let Some(f) = self.release() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(f);
            }
        }
    }
}

/// A release in flight.
pub(crate) type ReleaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Armed while an acquire waits for the store: if the acquire is cancelled (the request
/// went away) or fails (a timeout: the script may still run later), the lease it may have
/// taken is released; a release that overtakes its acquire leaves a marker that makes the
/// acquire take nothing.
struct Pending(Option<Ticket>);

impl Pending {
    fn disarm(mut self) -> Ticket {
        self.0.take().expect("armed until disarmed")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Only a store that keeps leases on its own can hold one this process gave up on;
        // in process an acquire either ran (and answered) or did not.
        if let Some(t) = self.0.take().filter(|t| t.store.expires()) {
            t.release_detached();
        }
    }
}

/// One request's place in flight: given back when dropped (at once in process; on Redis by
/// a short task, or when the lease expires if that fails), or, by the layer, before the
/// response's last frame goes out. While held on Redis it is renewed every third of its
/// lifetime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::num::NonZeroU32;
/// use tenant_guard::backend::{Backend, MemoryStore};
/// use tenant_guard::concurrency::{ConcurrencyConfig, ConcurrencyLimiter};
/// use tenant_guard::{ratelimit::OutageMode, tenant::{Identity, TenantId}};
///
/// let config = ConcurrencyConfig::default().per_tenant(NonZeroU32::new(1).unwrap());
/// let limiter = ConcurrencyLimiter::new(Backend::Memory(MemoryStore::new(Default::default())),
///     config, Default::default(), OutageMode::Open, &Default::default());
/// let (acme, ann) = (TenantId::new("acme").unwrap(), Identity::User("ann".into()));
/// {
///     let _lease = limiter.acquire(&acme, &ann).await.unwrap();
///     assert!(limiter.acquire(&acme, &ann).await.is_err()); // the place is taken...
/// }
/// assert!(limiter.acquire(&acme, &ann).await.is_ok()); // ...and free once the lease is dropped
/// # }
/// ```
#[must_use = "the request counts as in flight only while its lease is held"]
pub struct Lease {
    held: Option<Held>,
}

struct Held {
    ticket: Ticket,
    /// This instance's leases held (decremented when this one ends).
    in_flight: Gauge,
    renewal: Option<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("held", &self.held.is_some())
            .finish()
    }
}

impl Lease {
    /// A lease of nothing (no cap applies, or the store is down with `open`).
    fn none() -> Self {
        Self { held: None }
    }

    fn held(ticket: Ticket, in_flight: Gauge) -> Self {
        in_flight.inc();
        let renewal = ticket
            .store
            .expires()
            .then(|| tokio::runtime::Handle::try_current().ok())
            .flatten()
            .map(|rt| {
                let store = ticket.store.clone();
                let (keys, marker, id) = (
                    ticket.keys.clone(),
                    ticket.marker.clone(),
                    ticket.id.clone(),
                );
                let lease = ticket.lease;
                rt.spawn(async move {
                    loop {
                        tokio::time::sleep(lease / 3).await;
                        // A failed renewal is tried again; the lease ends at its TTL at worst.
                        let _ = store.renew(&keys, &marker, &id, lease).await;
                    }
                })
                .abort_handle()
            });
        Self {
            held: Some(Held {
                ticket,
                in_flight,
                renewal,
            }),
        }
    }

    /// Whether this lease counts in a store (false when no cap applies or the store was
    /// down with `RATE_LIMIT_OUTAGE=open`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::num::NonZeroU32;
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::concurrency::{ConcurrencyConfig, ConcurrencyLimiter};
    /// use tenant_guard::{ratelimit::OutageMode, tenant::{Identity, TenantId}};
    ///
    /// let memory = || Backend::Memory(MemoryStore::new(Default::default()));
    /// let (acme, ann) = (TenantId::new("acme").unwrap(), Identity::User("ann".into()));
    /// let capped = ConcurrencyConfig::default().per_user(NonZeroU32::new(5).unwrap());
    /// let limiter = ConcurrencyLimiter::new(memory(), capped, Default::default(), OutageMode::Open, &Default::default());
    /// assert!(limiter.acquire(&acme, &ann).await.unwrap().is_held());
    /// // No cap applies: a lease of nothing.
    /// let uncapped = ConcurrencyLimiter::new(memory(), ConcurrencyConfig::default(), Default::default(),
    ///     OutageMode::Open, &Default::default());
    /// assert!(!uncapped.acquire(&acme, &ann).await.unwrap().is_held());
    /// # }
    /// ```
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Ends the lease: given back at once in process; on Redis the future that gives it
    /// back, to await before the request counts as over (a client that sends its next
    /// request when this response ends must find the place free).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn finish(mut self) -> Option<ReleaseFuture> {
        let h = self.held.take()?;
        h.in_flight.dec();
        if let Some(r) = &h.renewal {
            r.abort();
        }
        h.ticket.release()
    }

    /// Stops renewing without giving the lease back, as a crashed instance would: it ends at
    /// its TTL. For tests of crash safety.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        if let Some(h) = self.held.take() {
            h.in_flight.dec();
            if let Some(r) = h.renewal {
                r.abort();
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(h) = self.held.take() else { return };
        h.in_flight.dec();
        if let Some(r) = &h.renewal {
            r.abort();
        }
        h.ticket.release_detached();
    }
}
