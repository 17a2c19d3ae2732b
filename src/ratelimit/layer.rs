//! [`RateLimitLayer`]: checks every request before the inner service runs.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::request::Parts;
use tower_layer::Layer;

use super::access::AccessList;
use super::identity::IdentityConfig;
use super::limiter::RateLimiter;
use super::service::RateLimitService;
use crate::tenant::TenantId;
use crate::tenant::{GLOBAL_TENANT, Identity};

pub(super) type IdentifyFn = dyn Fn(&Parts) -> BoxFuture<'static, Option<Identity>> + Send + Sync;
pub(super) type CostFn = dyn Fn(&Parts) -> Option<u32> + Send + Sync;

/// Route used for requests whose matched route template is unknown (no axum
/// `MatchedPath`): they share one counter per method, never one per raw path.
///
/// ```
/// assert_eq!(tenant_guard::ratelimit::UNMATCHED_ROUTE, "<unmatched>");
/// ```
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// Rate-limits requests: 429 `application/problem+json` with `Retry-After` when a rule
/// denies, `RateLimit` / `RateLimit-Policy` headers on allowed responses, and the
/// [`Decision`](super::Decision) in request extensions for handlers.
///
/// Put it inside the [`TenantLayer`](crate::tenant::TenantLayer) (added after it with
/// `Router::layer`, so the tenant is known) and apply it with `Router::layer` so that axum's
/// matched route template is available.
///
/// ```
/// use axum::{routing::get, Router};
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
/// use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
/// use tenant_guard::tenant::TenantLayer;
///
/// let config = Config::from_vars([("RATE_LIMIT_MAX", "10"), ("RATE_LIMIT_WINDOW", "1m")]).unwrap();
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # let _g = rt.enter();
/// let metrics = Metrics::new();
/// let backend = Backend::from_config(&config, &metrics).unwrap();
/// let limiter = RateLimiter::from_config(&config, backend, &metrics);
/// let app: Router = Router::new()
///     .route("/items", get(|| async { "ok" }))
///     .layer(RateLimitLayer::from_config(&config, limiter))
///     .layer(TenantLayer::from_config(&config.tenant));
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RateLimitLayer {
    pub(super) shared: Arc<Settings>,
}

/// What the layer and its services share.
#[derive(Clone)]
pub(super) struct Settings {
    pub(super) limiter: RateLimiter,
    pub(super) identity: IdentityConfig,
    pub(super) identify: Option<Arc<IdentifyFn>>,
    pub(super) cost: Option<Arc<CostFn>>,
    pub(super) legacy_headers: bool,
    pub(super) global: TenantId,
    pub(super) per_client: Option<RateLimiter>,
    /// `RATE_LIMIT_EXEMPT`: skip every limit.
    pub(super) exempt: AccessList,
    /// `RATE_LIMIT_DENY`: 403.
    pub(super) deny: AccessList,
}

/// Counter buckets of the per-client rule: its keys carry `clients-<n>` as their hash tag,
/// so that they spread over this many Redis Cluster slots instead of one.
pub(super) const CLIENT_BUCKETS: u64 = 1024;

/// The tenant (hash tag) of a client's per-client counter.
pub(super) fn client_bucket(who: &Identity) -> TenantId {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x7467).build_hasher();
    h.write(who.parts().1.as_bytes());
    TenantId::new(&format!("clients-{}", h.finish() % CLIENT_BUCKETS)).expect("a valid tenant id")
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("limiter", &self.limiter)
            .field("identity", &self.identity)
            .field("legacy_headers", &self.legacy_headers)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A layer around `limiter`, identities from [`UserId`](super::UserId) or the peer IP.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # let config = Config::from_vars([("RATE_LIMIT_MAX", "5"), ("RATE_LIMIT_WINDOW", "60")])?;
    /// # let metrics = Metrics::new();
    /// # let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # let ok = || tower::service_fn(|_req: http::Request<String>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
    /// use tower::{Layer, ServiceExt};
    /// let svc = RateLimitLayer::new(limiter).layer(ok());
    /// let res = svc.oneshot(http::Request::new(String::new())).await?;
    /// assert_eq!(res.status(), 200);
    /// assert!(res.headers().contains_key("ratelimit"));
    /// # Ok(()) }
    /// ```
    pub fn new(limiter: RateLimiter) -> Self {
        Self {
            shared: Arc::new(Settings {
                limiter,
                identity: IdentityConfig::default(),
                identify: None,
                cost: None,
                legacy_headers: false,
                global: TenantId::new(GLOBAL_TENANT).expect("valid tenant id"),
                per_client: None,
                exempt: AccessList::default(),
                deny: AccessList::default(),
            }),
        }
    }

    /// The settings, to change while building (copied if a service already shares them).
    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.shared)
    }

    /// A limiter checked first, for the client address across every tenant
    /// (`RATE_LIMIT_IP`; see [`RateLimiter::per_client_from_config`]): its user-scoped
    /// rules count the client's IP (from the peer and trusted proxies), never a user id or
    /// a tenant, so a client cycling tenant or user ids is limited as one.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # let _g = rt.enter();
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
    /// let config = Config::from_vars([("RATE_LIMIT_IP", "300/1m")]).unwrap();
    /// let metrics = Metrics::new();
    /// let backend = Backend::from_config(&config, &metrics).unwrap();
    /// let limiter = RateLimiter::from_config(&config, backend.clone(), &metrics);
    /// let per_ip = RateLimiter::per_client_from_config(&config, backend, &metrics).unwrap();
    /// let layer = RateLimitLayer::new(limiter).per_client(per_ip); // what from_config does
    /// ```
    pub fn per_client(mut self, limiter: RateLimiter) -> Self {
        self.settings().per_client = Some(limiter);
        self
    }

    /// How identities are found (user header, trusted proxies).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # let config = Config::from_vars([("RATE_LIMIT_MAX", "5"), ("RATE_LIMIT_WINDOW", "60")])?;
    /// # let metrics = Metrics::new();
    /// # let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # let ok = || tower::service_fn(|_req: http::Request<String>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// use tenant_guard::ratelimit::{IdentityConfig, RateLimitLayer, RateLimiter};
    /// use tower::{Layer, ServiceExt};
    /// let identity = IdentityConfig { user_header: Some(http::HeaderName::from_static("x-user-id")), ..Default::default() };
    /// let svc = RateLimitLayer::new(limiter).identity(identity).layer(ok());
    /// let req = http::Request::get("/").header("x-user-id", "alice").body(String::new())?;
    /// assert_eq!(svc.oneshot(req).await?.status(), 200);
    /// # Ok(()) }
    /// ```
    pub fn identity(mut self, identity: IdentityConfig) -> Self {
        self.settings().identity = identity;
        self
    }

    /// An async function giving the identity (e.g. from an API key); `None` falls back to
    /// the default rules (user id, header, client IP).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # let config = Config::from_vars([("RATE_LIMIT_MAX", "5"), ("RATE_LIMIT_WINDOW", "60")])?;
    /// # let metrics = Metrics::new();
    /// # let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # let ok = || tower::service_fn(|_req: http::Request<String>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
    /// use tenant_guard::tenant::Identity;
    /// use tower::{Layer, ServiceExt};
    /// let svc = RateLimitLayer::new(limiter)
    ///     .identify_with(|parts: &http::request::Parts| {
    ///         let key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    ///         async move { key.map(|k| Identity::User(k.into())) }
    ///     })
    ///     .layer(ok());
    /// let req = http::Request::get("/").header("x-api-key", "k-1").body(String::new())?;
    /// let res = svc.oneshot(req).await?;
    /// assert!(res.headers()["ratelimit"].to_str()?.starts_with(r#""per-endpoint";r=4;"#));
    /// # Ok(()) }
    /// ```
    pub fn identify_with<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Identity>> + Send + 'static,
    {
        self.settings().identify = Some(Arc::new(move |p: &Parts| Box::pin(f(p))));
        self
    }

    /// A function giving a request's cost (e.g. from a header or the body size); `None`
    /// falls back to the policy's costs.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # let config = Config::from_vars([("RATE_LIMIT_MAX", "5"), ("RATE_LIMIT_WINDOW", "60")])?;
    /// # let metrics = Metrics::new();
    /// # let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # let ok = || tower::service_fn(|_req: http::Request<String>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
    /// use tower::{Layer, ServiceExt};
    /// let svc = RateLimitLayer::new(limiter)
    ///     .cost_with(|parts: &http::request::Parts| parts.headers.contains_key("x-bulk").then_some(3))
    ///     .layer(ok());
    /// let req = http::Request::get("/").header("x-bulk", "1").body(String::new())?;
    /// // 5 per minute, this request cost 3: 2 left.
    /// let res = svc.oneshot(req).await?;
    /// assert!(res.headers()["ratelimit"].to_str()?.starts_with(r#""per-endpoint";r=2;"#));
    /// # Ok(()) }
    /// ```
    pub fn cost_with<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Option<u32> + Send + Sync + 'static,
    {
        self.settings().cost = Some(Arc::new(f));
        self
    }

    /// Tenants, users and client address ranges that skip every limit (this layer's and
    /// a [`ConcurrencyLayer`](crate::concurrency::ConcurrencyLayer) inside it); their
    /// requests are counted in the decisions metric as `source="exempt"`.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # let _g = rt.enter();
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// use tenant_guard::ratelimit::{AccessList, RateLimitLayer, RateLimiter};
    /// let config = Config::default();
    /// let metrics = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// let layer = RateLimitLayer::new(limiter)
    ///     .exempt(AccessList::parse("tenant:internal, ip:10.0.0.0/8").unwrap())
    ///     .deny(AccessList::parse("user:spammer").unwrap());
    /// ```
    pub fn exempt(mut self, list: AccessList) -> Self {
        self.settings().exempt = list;
        self
    }

    /// Tenants, users and client address ranges refused with 403 problem+json, before any
    /// limit is checked (a listed identity that is also exempt is refused).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # let config = Config::from_vars([("RATE_LIMIT_MAX", "5"), ("RATE_LIMIT_WINDOW", "60")])?;
    /// # let metrics = Metrics::new();
    /// # let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # let ok = || tower::service_fn(|_req: http::Request<String>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// use tenant_guard::ratelimit::{AccessList, RateLimitLayer, RateLimiter};
    /// use tower::{Layer, ServiceExt};
    /// let svc = RateLimitLayer::new(limiter)
    ///     .identity(tenant_guard::ratelimit::IdentityConfig { user_header: Some(http::HeaderName::from_static("x-user-id")), ..Default::default() })
    ///     .deny(AccessList::parse("user:spammer")?)
    ///     .layer(ok());
    /// let req = http::Request::get("/").header("x-user-id", "spammer").body(String::new())?;
    /// assert_eq!(svc.oneshot(req).await?.status(), 403);
    /// # Ok(()) }
    /// ```
    pub fn deny(mut self, list: AccessList) -> Self {
        self.settings().deny = list;
        self
    }

    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # let config = Config::from_vars([("RATE_LIMIT_MAX", "5"), ("RATE_LIMIT_WINDOW", "60")])?;
    /// # let metrics = Metrics::new();
    /// # let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # let ok = || tower::service_fn(|_req: http::Request<String>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
    /// use tower::{Layer, ServiceExt};
    /// let svc = RateLimitLayer::new(limiter).legacy_headers(true).layer(ok());
    /// let res = svc.oneshot(http::Request::new(String::new())).await?;
    /// assert_eq!(res.headers()["x-ratelimit-limit"], "5");
    /// assert_eq!(res.headers()["x-ratelimit-remaining"], "4");
    /// # Ok(()) }
    /// ```
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.settings().legacy_headers = on;
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            shared: self.shared.clone(),
        }
    }
}
