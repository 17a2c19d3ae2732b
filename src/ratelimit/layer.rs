//! [`RateLimitLayer`]: checks every request before the inner service runs.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::headers;
use super::identity::{ClientAddr, IdentityConfig};
use super::limiter::{Check, RateLimiter};
use crate::tenant::TenantId;
use crate::tenant::{Identity, GLOBAL_TENANT};

type IdentifyFn = dyn Fn(&Parts) -> BoxFuture<'static, Option<Identity>> + Send + Sync;
type CostFn = dyn Fn(&Parts) -> Option<u32> + Send + Sync;

/// Route used for requests whose matched route template is unknown (no axum
/// `MatchedPath`): they share one counter per method, never one per raw path.
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
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer {
    limiter: RateLimiter,
    identity: IdentityConfig,
    identify: Option<Arc<IdentifyFn>>,
    cost: Option<Arc<CostFn>>,
    legacy_headers: bool,
    global: TenantId,
    per_client: Option<RateLimiter>,
}

/// Counter buckets of the per-client rule: its keys carry `clients-<n>` as their hash tag,
/// so that they spread over this many Redis Cluster slots instead of one.
const CLIENT_BUCKETS: u64 = 1024;

/// The tenant (hash tag) of a client's per-client counter.
fn client_bucket(who: &Identity) -> TenantId {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x7467).build_hasher();
    h.write(who.parts().1.as_bytes());
    TenantId::new(&format!("clients-{}", h.finish() % CLIENT_BUCKETS)).expect("a valid tenant id")
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("identity", &self.identity)
            .field("legacy_headers", &self.legacy_headers)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A layer around `limiter`, identities from [`UserId`](super::UserId) or the peer IP.
    pub fn new(limiter: RateLimiter) -> Self {
        Self {
            limiter,
            identity: IdentityConfig::default(),
            identify: None,
            cost: None,
            legacy_headers: false,
            global: TenantId::new(GLOBAL_TENANT).expect("valid tenant id"),
            per_client: None,
        }
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
        self.per_client = Some(limiter);
        self
    }

    /// How identities are found (user header, trusted proxies).
    pub fn identity(mut self, identity: IdentityConfig) -> Self {
        self.identity = identity;
        self
    }

    /// An async function giving the identity (e.g. from an API key); `None` falls back to
    /// the default rules (user id, header, client IP).
    pub fn identify_with<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Identity>> + Send + 'static,
    {
        self.identify = Some(Arc::new(move |p: &Parts| Box::pin(f(p))));
        self
    }

    /// A function giving a request's cost (e.g. from a header or the body size); `None`
    /// falls back to the policy's costs.
    pub fn cost_with<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Option<u32> + Send + Sync + 'static,
    {
        self.cost = Some(Arc::new(f));
        self
    }

    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.legacy_headers = on;
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimitService<S> {
    inner: S,
    /// Shared, so a request clones one pointer rather than the settings (proxy lists...).
    layer: Arc<RateLimitLayer>,
}

impl<S> RateLimitService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn peer(parts: &Parts) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(ci) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(ci.0);
    }
    parts.extensions.get::<SocketAddr>().copied()
}

/// The matched route template: a clone of axum's `MatchedPath` (an `Arc<str>` inside: no
/// copy of the string), else [`UNMATCHED_ROUTE`].
#[derive(Clone)]
struct Route(#[cfg(feature = "axum")] Option<axum::extract::MatchedPath>);

impl Route {
    #[cfg_attr(not(feature = "axum"), allow(unused_variables))]
    fn of(parts: &Parts) -> Self {
        Self(
            #[cfg(feature = "axum")]
            parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .cloned(),
        )
    }

    fn as_str(&self) -> &str {
        #[cfg(feature = "axum")]
        if let Some(m) = &self.0 {
            return m.as_str();
        }
        UNMATCHED_ROUTE
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The ready inner service is the one to call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let tenant = parts
                .extensions
                .get::<TenantId>()
                .cloned()
                .unwrap_or_else(|| layer.global.clone());
            let identity = match &layer.identify {
                Some(f) => f(&parts).await,
                None => None,
            }
            .unwrap_or_else(|| layer.identity.identify(&parts, peer(&parts)));
            let route = Route::of(&parts);
            if let Some(per_client) = &layer.per_client {
                let who = match layer.identity.client(&parts, peer(&parts)) {
                    ClientAddr::Ip(ip) => Identity::from_ip(ip),
                    ClientAddr::InvalidForwarding => Identity::InvalidForwarding,
                    ClientAddr::Unknown => Identity::Unknown,
                };
                let bucket = client_bucket(&who);
                let check = Check {
                    tenant: &bucket,
                    identity: &who,
                    method: &parts.method,
                    route: route.as_str(),
                    cost: None,
                    plan: None,
                };
                let d = per_client.check(&check).await;
                if !d.allowed {
                    return Ok(headers::denied(&d, layer.legacy_headers));
                }
            }
            let cost = layer.cost.as_ref().and_then(|f| f(&parts));
            let check = Check {
                tenant: &tenant,
                identity: &identity,
                method: &parts.method,
                route: route.as_str(),
                cost,
                plan: None,
            };
            let decision = layer.limiter.check(&check).await;
            if !decision.allowed {
                return Ok(headers::denied(&decision, layer.legacy_headers));
            }
            // Headers first, so the decision can move into the extensions without a clone.
            let mut rate_headers = http::HeaderMap::new();
            headers::apply(&mut rate_headers, &decision, layer.legacy_headers);
            parts.extensions.insert(decision);
            let mut res = inner.call(Request::from_parts(parts, body)).await?;
            res.headers_mut().extend(rate_headers);
            Ok(res)
        })
    }
}
