//! [`ConcurrencyLimiter`]: takes a lease per request in every scope that caps it (the
//! tenant's, the user's) at once, all or nothing; a [`Lease`] gives it back when dropped.

use std::sync::Arc;
use std::time::Duration;

use super::store::{self, Acquired, LeaseStore, MemoryLeases};
use super::ConcurrencyConfig;
use crate::backend::{Backend, BackendError};
use crate::keys::{KeyKind, Keys, RedisKey};
use crate::ratelimit::OutageMode;
use crate::tenant::{Identity, TenantId};

/// Caps requests in flight per tenant and per user, across instances on Redis (leases that
/// expire, so a crashed instance's requests stop counting after `RATE_LIMIT_CONCURRENCY_LEASE`)
/// and in process on memory. Cheap to clone.
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
///                                       config, Keys::default(), OutageMode::Open);
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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConcurrencyDenied {
    /// `tenant` or `user`: the scope that is full.
    pub scope: &'static str,
    /// Its cap.
    pub limit: u32,
    /// A time after which a unit may be free (a lease's end on Redis, 1 s in process).
    pub retry_after: Duration,
    /// The store was unreachable and the outage mode is `closed` (a 503, not a 429).
    pub unavailable: bool,
}

impl ConcurrencyLimiter {
    /// A limiter on `backend`; `outage` decides a request while Redis is unreachable
    /// (`open`: admitted uncounted, `closed`: refused, `local`: counted in this process).
    pub fn new(
        backend: Backend,
        config: ConcurrencyConfig,
        keys: Keys,
        outage: OutageMode,
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
            }),
        }
    }

    /// The caps.
    pub fn config(&self) -> &ConcurrencyConfig {
        &self.inner.config
    }

    /// The scopes that cap a request of `identity` in `tenant`, with their caps.
    fn scopes(&self, tenant: &TenantId, identity: &Identity) -> Vec<(&'static str, RedisKey, u32)> {
        let c = &self.inner.config;
        let mut out = Vec::with_capacity(2);
        if let Some(n) = c.tenant {
            let key = self
                .inner
                .keys
                .key(KeyKind::Concurrency, tenant, &["tenant"]);
            out.push(("tenant", key, n.get()));
        }
        if let Some(n) = c.user {
            let (kind, value) = identity.parts();
            let key = self
                .inner
                .keys
                .key(KeyKind::Concurrency, tenant, &[kind, value]);
            out.push(("user", key, n.get()));
        }
        out
    }

    /// Takes a lease for one request: in every capped scope at once, or in none. Hold the
    /// [`Lease`] while the request runs (the layer holds it until the response body ends or
    /// is dropped).
    pub async fn acquire(
        &self,
        tenant: &TenantId,
        identity: &Identity,
    ) -> Result<Lease, ConcurrencyDenied> {
        let scopes = self.scopes(tenant, identity);
        if scopes.is_empty() {
            return Ok(Lease::none());
        }
        let names: Vec<&'static str> = scopes.iter().map(|(s, ..)| *s).collect();
        let keys: Vec<(RedisKey, u32)> = scopes.into_iter().map(|(_, k, n)| (k, n)).collect();
        let id = crate::secret::random_token();
        let lease = self.inner.config.lease;
        let store = self.inner.store.clone();
        match store.acquire(&keys, &id, lease).await {
            Ok(Acquired::Held) => Ok(Lease::held(store, keys, id, lease)),
            Ok(Acquired::Full { index, wait }) => Err(full(&names, &keys, index, wait)),
            Err(e) => self.outage(&names, keys, id, &e),
        }
    }

    /// A request while the store fails, by the outage mode.
    fn outage(
        &self,
        names: &[&'static str],
        keys: Vec<(RedisKey, u32)>,
        id: String,
        error: &BackendError,
    ) -> Result<Lease, ConcurrencyDenied> {
        tracing::debug!(error = %error, mode = ?self.inner.outage, "concurrency lease store failed");
        match (&self.inner.fallback, self.inner.outage) {
            (Some(mem), _) => match mem.try_acquire(&keys) {
                Acquired::Held => {
                    let store: Arc<dyn LeaseStore> = mem.clone();
                    Ok(Lease::held(store, keys, id, self.inner.config.lease))
                }
                Acquired::Full { index, wait } => Err(full(names, &keys, index, wait)),
            },
            (None, OutageMode::Closed) => Err(ConcurrencyDenied {
                scope: names.first().copied().unwrap_or("tenant"),
                limit: keys.first().map_or(0, |(_, n)| *n),
                retry_after: Duration::from_secs(1),
                unavailable: true,
            }),
            (None, _) => Ok(Lease::none()),
        }
    }
}

fn full(
    names: &[&'static str],
    keys: &[(RedisKey, u32)],
    index: usize,
    wait: Duration,
) -> ConcurrencyDenied {
    ConcurrencyDenied {
        scope: names.get(index).copied().unwrap_or("tenant"),
        limit: keys.get(index).map_or(0, |(_, n)| *n),
        retry_after: wait.max(Duration::from_secs(1)),
        unavailable: false,
    }
}

/// One request's place in flight: given back when dropped (at once in process; on Redis by
/// a short task, or when the lease expires if that fails). While held on Redis it is renewed
/// every third of its lifetime.
#[must_use = "the request counts as in flight only while its lease is held"]
pub struct Lease {
    held: Option<Held>,
}

struct Held {
    store: Arc<dyn LeaseStore>,
    keys: Arc<[(RedisKey, u32)]>,
    id: Arc<str>,
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

    fn held(
        store: Arc<dyn LeaseStore>,
        keys: Vec<(RedisKey, u32)>,
        id: String,
        lease: Duration,
    ) -> Self {
        let keys: Arc<[(RedisKey, u32)]> = keys.into();
        let id: Arc<str> = id.into();
        let renewal = store
            .expires()
            .then(|| tokio::runtime::Handle::try_current().ok())
            .flatten()
            .map(|rt| {
                let (store, keys, id) = (store.clone(), keys.clone(), id.clone());
                rt.spawn(async move {
                    loop {
                        tokio::time::sleep(lease / 3).await;
                        // A failed renewal is tried again; the lease ends at its TTL at worst.
                        let _ = store.renew(&keys, &id, lease).await;
                    }
                })
                .abort_handle()
            });
        Self {
            held: Some(Held {
                store,
                keys,
                id,
                renewal,
            }),
        }
    }

    /// Whether this lease counts in a store (false when no cap applies or the store was
    /// down with `RATE_LIMIT_OUTAGE=open`).
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Stops renewing without giving the lease back, as a crashed instance would: it ends at
    /// its TTL. For tests of crash safety.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        if let Some(h) = self.held.take() {
            if let Some(r) = h.renewal {
                r.abort();
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(h) = self.held.take() else { return };
        if let Some(r) = &h.renewal {
            r.abort();
        }
        if h.store.release_now(&h.keys) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                // Failed: the lease ends at its TTL.
                let _ = h.store.release(&h.keys, &h.id).await;
            });
        }
    }
}
