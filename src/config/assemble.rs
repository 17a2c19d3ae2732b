//! Components built from a [`Config`]: each layer's `from_config` constructor.
//!
//! They live here, not beside their types, so that dependencies run one way: the modules
//! below `config` know only their own settings types (`RateLimitConfig`, `SessionConfig`,
//! ...); this file is where the whole configuration meets them. Each constructor only picks
//! the sections it needs and calls the component's own public constructor.

use crate::backend::{Backend, BackendError};
use crate::cache::Cache;
use crate::concurrency::ConcurrencyLimiter;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::ratelimit::{
    IdentityConfig, LimiterOptions, Policy, RateLimitLayer, RateLimiter, Rule, Scope,
};
use crate::session::SessionStore;
use crate::tokens::TokenBudget;

use super::Config;

impl Backend {
    /// The backend the configuration asks for. Redis is connected lazily: this succeeds
    /// while Redis is down.
    ///
    /// ```
    /// use tenant_guard::backend::{Backend, BackendKind};
    /// use tenant_guard::{config::Config, metrics::Metrics};
    ///
    /// let metrics = Metrics::new();
    /// let memory = Config::from_vars([("REDIS_ENABLED", "false")]).unwrap();
    /// assert_eq!(Backend::from_config(&memory, &metrics).unwrap().kind(), BackendKind::Memory);
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # let _in_runtime = rt.enter();
    /// // Redis is not connected yet: this succeeds while it is down.
    /// let redis = Config::from_vars([("REDIS_URL", "redis://redis.invalid:6379")]).unwrap();
    /// assert_eq!(Backend::from_config(&redis, &metrics).unwrap().kind(), BackendKind::Redis);
    /// ```
    pub fn from_config(config: &Config, metrics: &Metrics) -> Result<Self, BackendError> {
        Self::new(&config.redis, config.memory, config.breaker, metrics)
    }
}

/// The limiter options of `config` (outage, burst, deny cache, memory bounds).
fn options_of(config: &Config) -> LimiterOptions {
    let rl = &config.rate_limit;
    LimiterOptions {
        outage: rl.outage,
        instances: rl.instances,
        burst: rl.burst,
        deny_cache: rl.deny_cache,
        memory_max_keys: usize::try_from(config.memory.max_counters.get()).unwrap_or(usize::MAX),
        outage_keys: usize::try_from(rl.outage_keys).unwrap_or(usize::MAX),
        clock: None,
    }
}

impl RateLimiter {
    /// The limiter described by configuration.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_MAX", "3"), ("RATE_LIMIT_WINDOW", "1m")])?;
    /// let metrics = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let (acme, who) = (TenantId::new("acme")?, Identity::User("u-1".into()));
    /// let check = Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/items", cost: None, plan: None };
    /// let d = limiter.check(&check).await;
    /// assert_eq!((d.rules[0].limit, d.rules[0].remaining), (3, 2));
    /// # Ok(()) }
    /// ```
    pub fn from_config(config: &Config, backend: Backend, metrics: &Metrics) -> Self {
        Self::new(
            backend,
            Keys::new(config.key_prefix.clone()),
            Policy::from_config(&config.rate_limit),
            options_of(config),
            metrics,
        )
    }

    /// The limiter of `RATE_LIMIT_IP` (one rule, `per-ip`: requests per client address
    /// across every tenant), if that is set. [`RateLimitLayer::from_config`]
    /// builds it; the layer checks it before the tenant's rules.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # let _g = rt.enter();
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, ratelimit::RateLimiter};
    /// let config = Config::from_vars([("RATE_LIMIT_IP", "300/1m")]).unwrap();
    /// let metrics = Metrics::new();
    /// let backend = Backend::from_config(&config, &metrics).unwrap();
    /// let per_ip = RateLimiter::per_client_from_config(&config, backend, &metrics).unwrap();
    /// assert_eq!(per_ip.policy().rules()[0].name, "per-ip");
    /// ```
    pub fn per_client_from_config(
        config: &Config,
        backend: Backend,
        metrics: &Metrics,
    ) -> Option<Self> {
        let quota = config.rate_limit.per_ip?;
        let policy = Policy::builder()
            .rule(Rule::new("per-ip", Scope::Caller, quota))
            .build()
            .ok()?;
        Some(Self::new(
            backend,
            Keys::new(config.key_prefix.clone()),
            policy,
            LimiterOptions {
                // A per-tenant cap means nothing for a rule across tenants.
                burst: None,
                ..options_of(config)
            },
            metrics,
        ))
    }
}

impl RateLimitLayer {
    /// A layer with the identity and header settings of `config`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{routing::get, Router};
    /// use tower::ServiceExt;
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_MAX", "1")])?;
    /// let metrics = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let app = Router::new().route("/items", get(|| async { "ok" })).layer(RateLimitLayer::from_config(&config, limiter));
    /// let ask = || {
    ///     let mut req = http::Request::get("/items").body(axum::body::Body::empty()).unwrap();
    ///     let peer: std::net::SocketAddr = "192.0.2.1:5000".parse().unwrap();
    ///     req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    ///     req
    /// };
    /// assert_eq!(app.clone().oneshot(ask()).await?.status(), 200);
    /// let denied = app.clone().oneshot(ask()).await?;
    /// assert_eq!(denied.status(), 429);
    /// assert!(denied.headers().contains_key("retry-after"));
    /// # Ok(()) }
    /// ```
    pub fn from_config(config: &Config, limiter: RateLimiter) -> Self {
        let rl = &config.rate_limit;
        let identity = IdentityConfig {
            user_header: rl
                .user_header
                .as_deref()
                .and_then(|h| http::HeaderName::try_from(h).ok()),
            trusted_proxies: rl.trusted_proxies.clone(),
            forwarded_header: rl.forwarded_header,
        };
        let per_client = RateLimiter::per_client_from_config(
            config,
            limiter.backend().clone(),
            limiter.metrics(),
        );
        let layer = Self::new(limiter)
            .identity(identity)
            .legacy_headers(rl.legacy_headers)
            .exempt(rl.exempt.clone())
            .deny(rl.deny.clone());
        match per_client {
            Some(p) => layer.per_client(p),
            None => layer,
        }
    }
}

impl ConcurrencyLimiter {
    /// A limiter with the caps of `config.concurrency`, keys under `config.key_prefix`,
    /// and `RATE_LIMIT_OUTAGE` for when Redis is unreachable.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, concurrency::ConcurrencyLimiter, config::Config,
    ///                    metrics::Metrics, tenant::{Identity, TenantId}};
    /// let config = Config::from_vars([("RATE_LIMIT_CONCURRENCY_TENANT", "2")])?;
    /// let metrics = Metrics::new();
    /// let limiter = ConcurrencyLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let acme = TenantId::new("acme")?;
    /// let _a = limiter.acquire(&acme, &Identity::User("a".into())).await.unwrap();
    /// let _b = limiter.acquire(&acme, &Identity::User("b".into())).await.unwrap();
    /// assert!(limiter.acquire(&acme, &Identity::User("c".into())).await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_config(config: &Config, backend: Backend, metrics: &Metrics) -> Self {
        Self::new(
            backend,
            config.concurrency.clone(),
            Keys::new(config.key_prefix.clone()),
            config.rate_limit.outage,
            metrics,
        )
    }
}

impl TokenBudget {
    /// The budgets of `config.tokens` (`RATE_LIMIT_TOKENS`), keys under
    /// `config.key_prefix`, and the rate limiter's outage mode and memory bounds. `Err`
    /// only for budgets built in code that [`Config`] would have refused.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics,
    ///                    tenant::{Identity, TenantId}, tokens::TokenBudget};
    /// let config = Config::from_vars([("RATE_LIMIT_TOKENS", "tenant: POST /api/ai/{*rest} = 1000/1m")])?;
    /// let metrics = Metrics::new();
    /// let budget = TokenBudget::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics)?;
    /// let (acme, who, post) = (TenantId::new("acme")?, Identity::User("u".into()), http::Method::POST);
    /// let held = budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 900).await.unwrap();
    /// assert!(budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 200).await.is_err());
    /// held.refund().await?;
    /// assert!(budget.reserve(&acme, &who, &post, "/api/ai/{*rest}", 200).await.is_ok());
    /// # Ok(()) }
    /// ```
    pub fn from_config(
        config: &Config,
        backend: Backend,
        metrics: &Metrics,
    ) -> Result<Self, crate::ratelimit::PolicyError> {
        Self::new(
            backend,
            Keys::new(config.key_prefix.clone()),
            config.tokens.clone(),
            options_of(config),
            metrics,
        )
    }
}

impl Cache {
    /// A cache configured from `config.cache` and `config.key_prefix`. The user header of
    /// a trusted gateway (`RATE_LIMIT_USER_HEADER`) counts as a caller's credential for the
    /// HTTP layer's [`CacheScope`](crate::cache::CacheScope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, cache::{Cache, CacheStatus, Category}, config::Config, metrics::Metrics};
    /// use tenant_guard::tenant::TenantId;
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("QUERY_CACHE_TTL", "5m")])?;
    /// let metrics = Metrics::new();
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// assert_eq!(cache.config().ttl_for("query"), std::time::Duration::from_secs(300));
    /// let acme = TenantId::new("acme")?;
    /// let query = Category::query();
    /// let rows = || cache.get_or_compute(&acme, &query, &"select 1", || async { Ok::<_, String>(1) });
    /// assert_eq!(rows().await?.status, CacheStatus::Miss);
    /// assert_eq!(rows().await?.status, CacheStatus::HitL2);
    /// # Ok(()) }
    /// ```
    pub fn from_config(config: &Config, backend: Backend, metrics: &Metrics) -> Self {
        Self::on_backend(
            backend,
            config.cache.clone(),
            Keys::new(config.key_prefix.clone()),
            metrics,
            config
                .rate_limit
                .user_header
                .as_deref()
                .and_then(|h| http::HeaderName::try_from(h).ok()),
        )
    }
}

impl SessionStore {
    /// A store configured from `config.session` and `config.key_prefix`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::session::{Session, SessionStore};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("SESSION_TTL", "30m")])?;
    /// let metrics = Metrics::new();
    /// let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let acme = TenantId::new("acme")?;
    /// let session = Session::detached(acme.clone(), store.clone());
    /// session.set_user_id(Some("alice")).await?;
    /// session.save().await?;
    /// let listed = store.list_user_sessions(&acme, "alice").await?;
    /// assert!(listed[0].expires_in <= Duration::from_secs(1800));
    /// # Ok(()) }
    /// ```
    pub fn from_config(config: &Config, backend: Backend, metrics: &Metrics) -> Self {
        Self::new(
            backend,
            &config.session,
            Keys::new(config.key_prefix.clone()),
            metrics,
        )
    }
}
