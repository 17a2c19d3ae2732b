//! [`TenantGuard`]: everything the configuration describes, built once — backend, metrics,
//! rate limiter, session store, cache, concurrency caps, token budgets and the watch of
//! runtime limits — and one tower [`Layer`] ([`GuardLayer`]) that applies the request
//! layers in their order: tenant, then session, then rate limit, then token budget, then
//! concurrency cap. The top of the crate: it only assembles what the modules below offer.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//! use tenant_guard::TenantGuard;
//!
//! let guard = TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "2/1m")])?;
//! let app: Router = Router::new()
//!     .route("/api/items", get(|| async { "items" }))
//!     .layer(guard.layer())
//!     .merge(guard.ops_router());
//!
//! use tower::ServiceExt;
//! let ask = || http::Request::get("/api/items").header("x-tenant-id", "acme").body(axum::body::Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(ask()).await?.status(), 200);
//! assert_eq!(app.clone().oneshot(ask()).await?.status(), 200);
//! assert_eq!(app.clone().oneshot(ask()).await?.status(), 429);
//! // No tenant: a problem+json 400.
//! let none = http::Request::get("/api/items").body(axum::body::Body::empty())?;
//! assert_eq!(app.clone().oneshot(none).await?.status(), 400);
//! guard.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use tower_layer::Layer;

use crate::backend::{Backend, BackendError};
use crate::cache::Cache;
use crate::concurrency::{ConcurrencyLayer, ConcurrencyLimiter, ConcurrencyService};
use crate::config::{Config, ConfigError};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::ratelimit::{
    LimitStore, LimitWatch, PolicyError, RateLimitLayer, RateLimitService, RateLimiter,
};
use crate::session::{SessionLayer, SessionService, SessionStore};
use crate::tenant::{TenantLayer, TenantService};
use crate::tokens::{TokenBudget, TokenLayer, TokenService};

/// How often the guard reads the runtime limits (`tenant-guard limits set`) on a shared
/// backend.
const LIMITS_EVERY: Duration = Duration::from_millis(500);

/// Why a [`TenantGuard`] could not be built.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::{guard::GuardError, TenantGuard};
/// match TenantGuard::from_vars([("RATE_LIMIT_WINDOW", "soon")]) {
///     Err(GuardError::Config(e)) => assert_eq!(e.problems()[0].var, "RATE_LIMIT_WINDOW"),
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The environment (or the variables given) holds invalid settings; every problem is
    /// listed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backend could not be set up (an invalid Redis URL, TLS without the feature).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A token budget does not make a valid rule.
    #[error(transparent)]
    Budget(#[from] PolicyError),
}

/// Every component of the configuration, built once; cheap to clone (clones share them).
/// See the [module docs](self).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
/// let for_a_task = guard.clone(); // the same limiter, store and cache
/// assert!(std::ptr::eq(guard.cache(), for_a_task.cache()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TenantGuard {
    parts: Arc<Parts>,
}

struct Parts {
    config: Config,
    metrics: Metrics,
    backend: Backend,
    limiter: RateLimiter,
    sessions: SessionStore,
    cache: Cache,
    concurrency: ConcurrencyLimiter,
    tokens: TokenBudget,
    /// The watch of runtime limits (shared backends only), until [`TenantGuard::shutdown`].
    watch: Mutex<Option<LimitWatch>>,
}

impl std::fmt::Debug for TenantGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantGuard")
            .field("shared_backend", &self.parts.backend.is_shared())
            .finish_non_exhaustive()
    }
}

impl TenantGuard {
    /// Everything the process environment describes (see the README's variable table).
    /// Must run inside a Tokio runtime (background tasks: the runtime limits' watch, the
    /// cache's invalidation subscription, the memory backend's purge).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tenant_guard::guard::GuardError> {
    /// // REDIS_URL=redis://127.0.0.1:6379 RATE_LIMIT_TENANT=1000/1m ./my-service
    /// let guard = tenant_guard::TenantGuard::from_env()?;
    /// println!("backend shared between instances: {}", guard.backend().is_shared());
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Self, GuardError> {
        Self::from_config(Config::from_env()?)
    }

    /// Like [`from_env`](Self::from_env), from the variables given (nothing else is read).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = tenant_guard::TenantGuard::from_vars([("RATE_LIMIT_MAX", "nope")]);
    /// assert!(guard.unwrap_err().to_string().contains("RATE_LIMIT_MAX"));
    /// # }
    /// ```
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, GuardError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::from_config(Config::from_vars(vars)?)
    }

    /// Everything `config` describes, with metrics of its own.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{config::Config, TenantGuard};
    /// let mut config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// config.session.cookie_name = "app_session".into(); // settle in code what env cannot
    /// let guard = TenantGuard::from_config(config)?;
    /// assert_eq!(guard.config().session.cookie_name, "app_session");
    /// # Ok(()) }
    /// ```
    pub fn from_config(config: Config) -> Result<Self, GuardError> {
        Self::builder().config(config).build()
    }

    /// A builder: the configuration and, optionally, the metrics registry or backend to
    /// share with other parts of the service.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{config::Config, metrics::Metrics, TenantGuard};
    /// let metrics = Metrics::new();
    /// let guard = TenantGuard::builder()
    ///     .config(Config::from_vars([("RATE_LIMIT_TENANT", "100/1m")])?)
    ///     .metrics(metrics.clone())
    ///     .build()?;
    /// assert_eq!(guard.config().rate_limit.policy.rules().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn builder() -> TenantGuardBuilder {
        TenantGuardBuilder::default()
    }

    /// The one layer that applies tenant, session, rate limit, token budget and concurrency
    /// cap, in that order, to the routes it wraps (`Router::layer`): tenant required (a
    /// problem+json 400 without one, 404 outside `TG_TENANTS`), sessions on
    /// `SESSION_COOKIE_NAME` with the logged-in user exposed to the rate limiter, limits
    /// with `RateLimit` headers and 429 problem bodies. Budgets and caps that the
    /// configuration does not set pass every request.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// use axum::{routing::get, Router};
    /// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(guard.layer());
    /// use tower::ServiceExt;
    /// let no_tenant = http::Request::get("/").body(axum::body::Body::empty())?;
    /// assert_eq!(app.oneshot(no_tenant).await?.status(), 400);
    /// # Ok(()) }
    /// ```
    pub fn layer(&self) -> GuardLayer {
        let p = &self.parts;
        GuardLayer {
            tenant: TenantLayer::from_config(&p.config.tenant),
            session: SessionLayer::from_config(&p.config.session, p.sessions.clone())
                .expose_user(true),
            limit: RateLimitLayer::from_config(&p.config, p.limiter.clone()),
            tokens: TokenLayer::new(p.tokens.clone()),
            concurrency: ConcurrencyLayer::new(p.concurrency.clone()),
        }
    }

    /// The ops routes: `/health`, `/health/ready`, `/cache/health`, `/cache/status` and
    /// `/metrics` (the last two behind `TG_OPS_TOKEN` when it is set). Merge it outside
    /// [`layer`](Self::layer): ops routes need no tenant.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// use axum::Router;
    /// let app: Router = Router::new().merge(guard.ops_router());
    /// use tower::ServiceExt;
    /// let health = http::Request::get("/cache/health").body(axum::body::Body::empty())?;
    /// let res = app.oneshot(health).await?;
    /// assert_eq!(res.status(), 200);
    /// # Ok(()) }
    /// ```
    pub fn ops_router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let p = &self.parts;
        crate::ops::router_with_token(
            p.backend.clone(),
            p.metrics.clone(),
            p.config.ops.token.clone(),
        )
    }

    /// The cache, for `CacheLayer::query(guard.cache().clone())` on a route and
    /// [`Cache::get_or_compute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// use tenant_guard::{cache::Category, tenant::TenantId};
    /// let acme = TenantId::new("acme")?;
    /// let hit = guard.cache().get_or_compute(&acme, &Category::query(), &"top-10", || async {
    ///     Ok::<_, String>(vec![1, 2, 3])
    /// }).await?;
    /// assert_eq!(hit.value, vec![1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn cache(&self) -> &Cache {
        &self.parts.cache
    }

    /// The rate limiter, for checks of your own ([`RateLimiter::check`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "1/1m")])?;
    /// use tenant_guard::ratelimit::{Check, Identity};
    /// use tenant_guard::tenant::TenantId;
    /// let tenant = TenantId::new("acme")?;
    /// let who = Identity::from_ip("192.0.2.7".parse()?);
    /// let check = Check { tenant: &tenant, identity: &who, method: &http::Method::POST,
    ///                     route: "/export", cost: None, plan: None };
    /// assert!(guard.limiter().check(&check).await.allowed);
    /// assert!(!guard.limiter().check(&check).await.allowed); // 1 per minute
    /// # Ok(()) }
    /// ```
    pub fn limiter(&self) -> &RateLimiter {
        &self.parts.limiter
    }

    /// The session store (log a user out everywhere, look sessions up).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// use tenant_guard::tenant::TenantId;
    /// let acme = TenantId::new("acme")?;
    /// // "Log out everywhere" for a user whose password changed: no session of theirs here yet.
    /// assert_eq!(guard.sessions().revoke_user_sessions(&acme, "alice").await?, 0);
    /// assert!(guard.sessions().list_user_sessions(&acme, "alice").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn sessions(&self) -> &SessionStore {
        &self.parts.sessions
    }

    /// The concurrency limiter (`RATE_LIMIT_CONCURRENCY_*`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_CONCURRENCY_TENANT", "1")])?;
    /// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
    /// let acme = TenantId::new("acme")?;
    /// let who = Identity::from_ip("192.0.2.7".parse()?);
    /// let lease = guard.concurrency().acquire(&acme, &who).await.expect("a place");
    /// assert!(guard.concurrency().acquire(&acme, &who).await.is_err()); // 1 in flight per tenant
    /// drop(lease);
    /// # Ok(()) }
    /// ```
    pub fn concurrency(&self) -> &ConcurrencyLimiter {
        &self.parts.concurrency
    }

    /// The token budgets (`RATE_LIMIT_TOKENS`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TOKENS", "tenant: POST /v1/chat = 1000/1m")])?;
    /// use tenant_guard::{ratelimit::Identity, tenant::TenantId};
    /// let acme = TenantId::new("acme")?;
    /// let who = Identity::from_ip("192.0.2.7".parse()?);
    /// let r = guard.tokens().reserve(&acme, &who, &http::Method::POST, "/v1/chat", 800).await.expect("fits");
    /// r.settle(120).await?; // the model used 120: the other 680 are back
    /// assert!(guard.tokens().reserve(&acme, &who, &http::Method::POST, "/v1/chat", 800).await.is_ok());
    /// # Ok(()) }
    /// ```
    pub fn tokens(&self) -> &TokenBudget {
        &self.parts.tokens
    }

    /// The metrics registry every component reports to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// assert!(guard.metrics().render().contains("tenant_guard_ratelimit_decisions_total"));
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> &Metrics {
        &self.parts.metrics
    }

    /// The backend (memory or Redis) every component stores in.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// assert!(!guard.backend().is_shared()); // memory: this process only
    /// # Ok(()) }
    /// ```
    pub fn backend(&self) -> &Backend {
        &self.parts.backend
    }

    /// The configuration it was built from.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// assert_eq!(guard.config().session.ttl, std::time::Duration::from_secs(24 * 3600));
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &Config {
        &self.parts.config
    }

    /// Stops the guard's background work: the watch of runtime limits and the cache's
    /// invalidation subscription. Requests still served afterwards keep working (limits
    /// as last read; the cache without another instance's invalidations, so its L1 is
    /// flushed). Other tasks end with the last handle of what they serve.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// let app: axum::Router = axum::Router::new().layer(guard.layer());
    /// // ... serve `app` until a signal, then:
    /// guard.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) {
        let watch = self
            .parts
            .watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(watch);
        self.parts.cache.stop_subscription();
        tokio::task::yield_now().await;
    }
}

/// Builds a [`TenantGuard`] ([`TenantGuard::builder`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let guard = tenant_guard::TenantGuard::builder()
///     .config(tenant_guard::config::Config::from_vars([("REDIS_ENABLED", "false")])?)
///     .build()?;
/// # let _ = guard;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct TenantGuardBuilder {
    config: Option<Config>,
    metrics: Option<Metrics>,
    backend: Option<Backend>,
}

impl std::fmt::Debug for TenantGuardBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantGuardBuilder").finish_non_exhaustive()
    }
}

impl TenantGuardBuilder {
    /// The configuration (default: [`Config::from_env`] at [`build`](Self::build)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{config::Config, TenantGuard};
    /// let guard = TenantGuard::builder().config(Config::from_vars([("REDIS_ENABLED", "false")])?).build()?;
    /// assert!(!guard.backend().is_shared());
    /// # Ok(()) }
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// A metrics registry to report to (default: a new one).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{config::Config, metrics::Metrics, TenantGuard};
    /// let metrics = Metrics::new(); // the service's own registry, rendered at /metrics
    /// let guard = TenantGuard::builder()
    ///     .config(Config::from_vars([("REDIS_ENABLED", "false")])?)
    ///     .metrics(metrics.clone())
    ///     .build()?;
    /// assert!(metrics.render().contains("tenant_guard_"));
    /// # Ok(()) }
    /// ```
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A backend to share (default: the one the configuration describes).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryConfig, MemoryStore};
    /// use tenant_guard::{config::Config, TenantGuard};
    /// let backend = Backend::Memory(MemoryStore::new(MemoryConfig::default()));
    /// let guard = TenantGuard::builder()
    ///     .config(Config::from_vars([("REDIS_ENABLED", "false")])?)
    ///     .backend(backend.clone()) // also used by the app for keys of its own
    ///     .build()?;
    /// assert_eq!(guard.backend().kind(), backend.kind());
    /// # Ok(()) }
    /// ```
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Builds every component. Must run inside a Tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{config::Config, TenantGuard};
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "50/1m")])?;
    /// let guard = TenantGuard::builder().config(config).build()?;
    /// assert!(guard.limiter().policy().rules().iter().any(|r| r.name == "per-tenant"));
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<TenantGuard, GuardError> {
        let config = match self.config {
            Some(c) => c,
            None => Config::from_env()?,
        };
        let metrics = self.metrics.unwrap_or_default();
        let backend = match self.backend {
            Some(b) => b,
            None => Backend::from_config(&config, &metrics)?,
        };
        let limiter = RateLimiter::from_config(&config, backend.clone(), &metrics);
        let watch = backend.is_shared().then(|| {
            let store = LimitStore::new(backend.clone(), &Keys::new(config.key_prefix.clone()));
            limiter.watch_limits(store, LIMITS_EVERY)
        });
        let sessions = SessionStore::from_config(&config, backend.clone(), &metrics);
        let cache = Cache::from_config(&config, backend.clone(), &metrics);
        let concurrency = ConcurrencyLimiter::from_config(&config, backend.clone(), &metrics);
        let tokens = TokenBudget::from_config(&config, backend.clone(), &metrics)?;
        Ok(TenantGuard {
            parts: Arc::new(Parts {
                config,
                metrics,
                backend,
                limiter,
                sessions,
                cache,
                concurrency,
                tokens,
                watch: Mutex::new(watch),
            }),
        })
    }
}

/// The request layers of a [`TenantGuard`], outermost first: tenant, session, rate
/// limit, token budget, concurrency cap ([`TenantGuard::layer`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
/// let layer: tenant_guard::guard::GuardLayer = guard.layer();
/// let app: axum::Router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" })).layer(layer);
/// # let _ = app;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GuardLayer {
    tenant: TenantLayer,
    session: SessionLayer,
    limit: RateLimitLayer,
    tokens: TokenLayer,
    concurrency: ConcurrencyLayer,
}

impl std::fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardLayer")
            .field("tenant", &self.tenant)
            .field("session", &self.session)
            .field("limit", &self.limit)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl GuardLayer {
    /// Replaces the tenant layer (by default [`TenantLayer::from_config`]): a custom
    /// resolver, a check against your tenant table, a default tenant.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{routing::get, Router};
    /// use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
    /// use tower::ServiceExt;
    ///
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// let layer = guard.layer().tenant(TenantLayer::new(TenantResolver::path_prefix("/t")));
    /// let app: Router = Router::new()
    ///     .route("/t/{tenant}/hi", get(|t: TenantId| async move { t.to_string() }))
    ///     .layer(layer);
    /// let res = app.oneshot(http::Request::get("/t/acme/hi").body(axum::body::Body::empty())?).await?;
    /// assert_eq!(res.status(), 200);
    /// # Ok(()) }
    /// ```
    pub fn tenant(mut self, tenant: TenantLayer) -> Self {
        self.tenant = tenant;
        self
    }
}

/// The service a [`GuardLayer`] makes of `S`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::Layer;
/// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
/// let inner = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
/// });
/// let svc: tenant_guard::guard::GuardService<_> = guard.layer().layer(inner);
/// # let _ = svc;
/// # Ok(()) }
/// ```
pub type GuardService<S> =
    TenantService<SessionService<RateLimitService<TokenService<ConcurrencyService<S>>>>>;

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = self.concurrency.layer(inner);
        let inner = self.tokens.layer(inner);
        let inner = self.limit.layer(inner);
        let inner = self.session.layer(inner);
        self.tenant.layer(inner)
    }
}
