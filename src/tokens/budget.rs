//! [`TokenBudget`]: reserves a request's estimated tokens on every applicable budget in
//! one atomic step, and settles the [`Reservation`] with the real usage once the response
//! is over.

use std::sync::Arc;

use http::Method;

use super::TokenConfig;
use crate::backend::{Backend, BackendError};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::ratelimit::{Check, Decision, LimiterOptions, PolicyError, RateLimiter};
use crate::tenant::{Identity, TenantId};

/// Token budgets over a backend: a rate limiter whose units are tokens, reserved before
/// the request runs and settled after its response. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::backend::{Backend, MemoryStore};
/// use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
/// use tenant_guard::{keys::Keys, metrics::Metrics, ratelimit::Identity, tenant::TenantId};
///
/// let config = TokenConfig::default()
///     .rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
/// let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
///     Keys::default(), config, Default::default(), &Metrics::new()).unwrap();
/// let (acme, who) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()));
/// let post = http::Method::POST;
/// let r = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 800).await.unwrap();
/// // 800 reserved: another 800 does not fit while the first is pending...
/// assert!(budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 800).await.is_err());
/// // ...and does once the first settles at its real usage (300 used, 500 refunded).
/// r.settle(300).await.unwrap();
/// let second = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 700).await.unwrap();
/// assert_eq!(second.decision().rules[0].remaining, 0);
/// # }
/// ```
#[derive(Clone)]
pub struct TokenBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limiter: RateLimiter,
    config: TokenConfig,
    metrics: Metrics,
}

impl std::fmt::Debug for TokenBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBudget")
            .field("limiter", &self.inner.limiter)
            .finish_non_exhaustive()
    }
}

impl TokenBudget {
    /// Budgets of `config` on `backend`, counted under `keys` (as rate-limit counters named
    /// after the budgets). `options` says what happens while Redis is unusable (the outage
    /// mode); its burst cap and deny cache are not used (a refund frees tokens before a
    /// cached denial would expire).
    ///
    /// ```
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
    /// use tenant_guard::{keys::Keys, metrics::Metrics};
    ///
    /// let memory = || Backend::Memory(MemoryStore::new(Default::default()));
    /// let one = TokenConfig::default().rule(parse_token_rule("tenant: POST /api/ai/{*rest} = 100000/1m").unwrap());
    /// assert!(TokenBudget::new(memory(), Keys::default(), one, Default::default(), &Metrics::new()).is_ok());
    /// // Two unnamed budgets of one scope would share a name: refused.
    /// let two = TokenConfig::default()
    ///     .rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap())
    ///     .rule(parse_token_rule("user: POST /api/embed = 5000/1m").unwrap());
    /// assert!(TokenBudget::new(memory(), Keys::default(), two, Default::default(), &Metrics::new()).is_err());
    /// ```
    pub fn new(
        backend: Backend,
        keys: Keys,
        config: TokenConfig,
        options: LimiterOptions,
        metrics: &Metrics,
    ) -> Result<Self, PolicyError> {
        let policy = config.policy()?;
        let options = LimiterOptions {
            burst: None,
            deny_cache: 0,
            ..options
        };
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: RateLimiter::new(backend, keys, policy, options, metrics),
                config,
                metrics: metrics.clone(),
            }),
        })
    }

    /// The settings.
    ///
    /// ```
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tokens::TokenBudget};
    ///
    /// let config = Config::from_vars([
    ///     ("REDIS_ENABLED", "false"),
    ///     ("RATE_LIMIT_TOKENS", "tenant: POST /api/ai/{*rest} = 100000/1m"),
    ///     ("RATE_LIMIT_TOKENS_DEFAULT_MAX", "512"),
    /// ])
    /// .unwrap();
    /// let metrics = Metrics::new();
    /// let budget = TokenBudget::new(Backend::from_config(&config, &metrics).unwrap(), Default::default(),
    ///     config.tokens.clone(), Default::default(), &metrics).unwrap();
    /// assert_eq!(budget.config().default_max_tokens, 512);
    /// assert_eq!(budget.config().rules[0].name, "tokens-tenant");
    /// ```
    pub fn config(&self) -> &TokenConfig {
        &self.inner.config
    }

    /// Whether any budget counts requests to `method` + route `template`.
    ///
    /// ```
    /// use http::Method;
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
    ///
    /// let config = TokenConfig::default().rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
    /// let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
    ///     Default::default(), config, Default::default(), &Default::default()).unwrap();
    /// assert!(budget.applies(&Method::POST, "/api/ai/{*rest}"));
    /// assert!(!budget.applies(&Method::GET, "/api/ai/{*rest}"));
    /// assert!(!budget.applies(&Method::POST, "/api/users"));
    /// ```
    pub fn applies(&self, method: &Method, template: &str) -> bool {
        self.inner
            .config
            .rules
            .iter()
            .any(|r| r.applies(method, template))
    }

    /// Reserves `estimate` tokens (at least 1) on every budget that applies, all or none:
    /// the reservation counts as used until it is settled. `Err` is the decision that
    /// refused it (the budget that denied, when it frees up).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tenant_guard::backend::{Backend, MemoryStore};
    /// # use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
    /// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
    /// // `budget`: "user: POST /api/ai/{*rest} = 1000/1m", on memory.
    /// # let config = TokenConfig::default().rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
    /// # let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
    /// #     Default::default(), config, Default::default(), &Default::default()).unwrap();
    /// let (acme, who, post) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()), http::Method::POST);
    /// let first = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 600).await.unwrap();
    /// let refused = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 600).await.unwrap_err();
    /// assert_eq!(refused.denied_by().unwrap().name, "tokens-user");
    /// assert!(refused.retry_after().is_some());
    /// first.refund().await.unwrap();
    /// # }
    /// ```
    pub async fn reserve(
        &self,
        tenant: &TenantId,
        who: &Identity,
        method: &Method,
        route: &str,
        estimate: u32,
    ) -> Result<Reservation, Decision> {
        let check = Check {
            tenant,
            identity: who,
            method,
            route,
            cost: Some(estimate.max(1)),
            plan: None,
        };
        let decision = self.inner.limiter.check(&check).await;
        if !decision.allowed {
            return Err(decision);
        }
        self.inner
            .metrics
            .tokens_reserved
            .inc_by(u64::from(decision.cost));
        Ok(Reservation {
            keep: false,
            pending: Some(Pending {
                budget: self.clone(),
                tenant: tenant.clone(),
                who: who.clone(),
                method: method.clone(),
                route: route.into(),
                decision,
            }),
        })
    }
}

/// Tokens reserved for one request, until it is settled: [`settle`](Self::settle) with
/// the real usage, or [`refund`](Self::refund). Dropped unsettled (the request failed or
/// its client went away), it is refunded in the background.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tenant_guard::backend::{Backend, MemoryStore};
/// # use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
/// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
/// // `budget`: "user: POST /api/ai/{*rest} = 1000/1m", on memory.
/// # let config = TokenConfig::default().rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
/// # let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
/// #     Default::default(), config, Default::default(), &Default::default()).unwrap();
/// let (acme, who, post) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()), http::Method::POST);
/// let reservation = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 1000).await.unwrap();
/// drop(reservation); // the request failed before the model ran: refunded in the background
/// tokio::time::sleep(std::time::Duration::from_millis(10)).await;
/// assert!(budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 1000).await.is_ok());
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a reservation dropped unsettled is refunded"]
pub struct Reservation {
    pending: Option<Pending>,
    /// Dropped unsettled: keep the reservation (the upstream ran) instead of refunding it.
    keep: bool,
}

#[derive(Debug)]
struct Pending {
    budget: TokenBudget,
    tenant: TenantId,
    who: Identity,
    method: Method,
    route: Box<str>,
    decision: Decision,
}

/// What a settlement did.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tenant_guard::backend::{Backend, MemoryStore};
/// # use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
/// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
/// // `budget`: "user: POST /api/ai/{*rest} = 1000/1m", on memory.
/// # let config = TokenConfig::default().rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
/// # let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
/// #     Default::default(), config, Default::default(), &Default::default()).unwrap();
/// let (acme, who, post) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()), http::Method::POST);
/// let r = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 800).await.unwrap();
/// let settled = r.settle(300).await.unwrap();
/// assert_eq!((settled.reserved, settled.used), (800, 300));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settled {
    /// Tokens reserved.
    pub reserved: u32,
    /// Tokens used.
    pub used: u64,
}

impl Settled {
    /// Tokens used beyond the reservation (charged after the fact).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tenant_guard::backend::{Backend, MemoryStore};
    /// # use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
    /// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
    /// // `budget`: "user: POST /api/ai/{*rest} = 1000/1m", on memory.
    /// # let config = TokenConfig::default().rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
    /// # let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
    /// #     Default::default(), config, Default::default(), &Default::default()).unwrap();
    /// let (acme, who, post) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()), http::Method::POST);
    /// let r = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 100).await.unwrap();
    /// assert_eq!(r.settle(150).await.unwrap().overshoot(), 50); // charged after the fact
    /// let r = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 100).await.unwrap();
    /// assert_eq!(r.settle(40).await.unwrap().overshoot(), 0);
    /// # }
    /// ```
    pub fn overshoot(&self) -> u64 {
        self.used.saturating_sub(u64::from(self.reserved))
    }
}

impl Reservation {
    /// The decision that admitted the request (each budget's state after the reservation).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tenant_guard::backend::{Backend, MemoryStore};
    /// # use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
    /// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
    /// // `budget`: "user: POST /api/ai/{*rest} = 1000/1m", on memory.
    /// # let config = TokenConfig::default().rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
    /// # let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
    /// #     Default::default(), config, Default::default(), &Default::default()).unwrap();
    /// let (acme, who, post) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()), http::Method::POST);
    /// let r = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 800).await.unwrap();
    /// let rule = &r.decision().rules[0];
    /// assert_eq!((rule.name, rule.limit, rule.remaining), ("tokens-user", 1000, 200));
    /// r.settle(800).await.unwrap();
    /// # }
    /// ```
    pub fn decision(&self) -> &Decision {
        &self
            .pending
            .as_ref()
            .expect("pending until settled")
            .decision
    }

    /// Tokens reserved.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tenant_guard::backend::{Backend, MemoryStore};
    /// # use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
    /// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
    /// // `budget`: "user: POST /api/ai/{*rest} = 1000/1m", on memory.
    /// # let config = TokenConfig::default().rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
    /// # let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
    /// #     Default::default(), config, Default::default(), &Default::default()).unwrap();
    /// let (acme, who, post) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()), http::Method::POST);
    /// let r = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 250).await.unwrap();
    /// assert_eq!(r.reserved(), 250);
    /// let empty = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 0).await.unwrap();
    /// assert_eq!(empty.reserved(), 1); // every request reserves at least one token
    /// # r.refund().await.unwrap();
    /// # empty.refund().await.unwrap();
    /// # }
    /// ```
    pub fn reserved(&self) -> u32 {
        self.decision().cost
    }

    /// Settles with the real usage (at most `u32::MAX`), in one store call: what was
    /// reserved beyond it is given back; usage beyond the reservation is charged at once,
    /// past the limit if need be (it happened) but never leaving a window more than twice
    /// its limit, and reported in `tenant_guard_tokens_overshoot_total`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tenant_guard::backend::{Backend, MemoryStore};
    /// # use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
    /// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
    /// // `budget`: "user: POST /api/ai/{*rest} = 1000/1m", on memory.
    /// # let config = TokenConfig::default().rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
    /// # let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
    /// #     Default::default(), config, Default::default(), &Default::default()).unwrap();
    /// let (acme, who, post) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()), http::Method::POST);
    /// let r = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 900).await.unwrap();
    /// r.settle(400).await.unwrap(); // 500 of the 900 given back
    /// let next = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 600).await.unwrap();
    /// assert_eq!(next.decision().rules[0].remaining, 0);
    /// # next.refund().await.unwrap();
    /// # }
    /// ```
    pub async fn settle(mut self, used: u64) -> Result<Settled, BackendError> {
        let p = self.pending.take().expect("pending until settled");
        p.settle(used).await
    }

    /// Gives the whole reservation back (the request used nothing).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tenant_guard::backend::{Backend, MemoryStore};
    /// # use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig};
    /// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
    /// // `budget`: "user: POST /api/ai/{*rest} = 1000/1m", on memory.
    /// # let config = TokenConfig::default().rule(parse_token_rule("user: POST /api/ai/{*rest} = 1000/1m").unwrap());
    /// # let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
    /// #     Default::default(), config, Default::default(), &Default::default()).unwrap();
    /// let (acme, who, post) = (TenantId::new("acme").unwrap(), Identity::User("u-1".into()), http::Method::POST);
    /// let r = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 1000).await.unwrap();
    /// assert_eq!(r.refund().await.unwrap().used, 0);
    /// // All 1000 are free again.
    /// assert!(budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 1000).await.is_ok());
    /// # }
    /// ```
    pub async fn refund(self) -> Result<Settled, BackendError> {
        self.settle(0).await
    }

    /// From now on, dropped unsettled means used as reserved (the upstream has started),
    /// not refunded.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn keep_if_dropped(&mut self) {
        self.keep = true;
    }

    /// The settlement as a task of its own (`'static`): for a body dropped mid-response.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn settle_later(
        mut self,
        used: u64,
    ) -> impl std::future::Future<Output = Result<Settled, BackendError>> + Send + 'static {
        let p = self.pending.take().expect("pending until settled");
        p.settle(used)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            let used = if self.keep {
                u64::from(p.decision.cost)
            } else {
                0
            };
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(p.settle(used));
            }
        }
    }
}

impl Pending {
    async fn settle(self, used: u64) -> Result<Settled, BackendError> {
        let inner = &*self.budget.inner;
        let reserved = self.decision.cost;
        let m = &inner.metrics;
        // Beyond any window's worth, and no metric can wrap.
        let used = used.min(u64::from(u32::MAX));
        if self.decision.at_ms.is_none() {
            // Admitted by an outage mode: nothing was counted, nothing to settle.
            return Ok(Settled { reserved, used });
        }
        m.tokens_used.inc_by(used);
        let delta = i64::try_from(used)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::from(reserved));
        if delta < 0 {
            m.tokens_refunded.inc_by(delta.unsigned_abs());
        } else if delta > 0 {
            m.tokens_overshoot.inc_by(delta.unsigned_abs());
            tracing::debug!(
                tenant = %self.tenant,
                reserved,
                used,
                "a response used more tokens than its reservation: the excess is charged now"
            );
        }
        let check = Check {
            tenant: &self.tenant,
            identity: &self.who,
            method: &self.method,
            route: &self.route,
            cost: Some(reserved),
            plan: None,
        };
        let settled = inner.limiter.settle(&check, &self.decision, delta).await;
        if let Err(e) = &settled {
            m.tokens_settle_failed.inc();
            tracing::warn!(error = %e, tenant = %self.tenant, "token settlement failed: the reservation stays counted until its window passes");
        }
        settled.map(|()| Settled { reserved, used })
    }
}
