//! [`CacheLayer`]: caches the HTTP responses of the routes it wraps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::HeaderName;
use http::request::Parts;
use tower_layer::Layer;

use super::service::CacheService;
use super::{Cache, CacheScope, Category};
use crate::tenant::TenantId;

pub(super) type TtlFn = dyn Fn(&Parts, StatusCode) -> Option<Duration> + Send + Sync;

/// How the layer names the category of a request.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Fixed(Category),
    /// AI: the model is read from the JSON body's `model` field.
    Ai,
}

/// Caches responses of the wrapped routes under one category.
///
/// The key is the SHA-256 of a canonical form of the method, the matched route and the
/// path, the sorted query pairs, the declared `Vary` headers and the body (JSON bodies
/// canonicalized: key order and whitespace do not matter; for the AI category the
/// configured fields such as `stream` are left out and the `model` goes into the key
/// name). The tenant from [`TenantLayer`](crate::tenant::TenantLayer) is always part of the
/// key (`global` without one).
///
/// **Scope.** With credentials on the request — a [`UserId`](crate::tenant::UserId)
/// (the session layer's user, or your auth middleware's), `Authorization`, a session or
/// any cookie — an entry is keyed per caller under the default [`CacheScope::Auto`]; only
/// requests without credentials share entries across the tenant. `CACHE_SCOPE` /
/// `CACHE_SCOPE_<CATEGORY>` or [`scope`](Self::scope) change that.
///
/// **Vary.** A response's `Vary` is honoured: `Vary: *` is never stored; a response that
/// varies on a request header the key does not hold yet is not stored, and the layer learns
/// the header (per route template, bounded) so that later requests are keyed on it.
///
/// Only `200` is stored by default ([`statuses`](Self::statuses) adds others); responses
/// with `Set-Cookie` or `Cache-Control: no-store` / `private` never are. Request
/// `Cache-Control: no-store` skips the write, `no-cache` the read. Bodies over
/// `CACHE_MAX_BODY_BYTES` pass through uncached. Responses carry `X-Cache: HIT | MISS |
/// STALE | BYPASS` and, on hits, `Age`, and the [`CacheStatus`](super::CacheStatus) as a
/// response extension (which layers outside trust; a header can come from anywhere). Put it
/// inside the session layer so that no session cookie is ever stored.
///
/// ```
/// use axum::{routing::get, Router};
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
/// use tenant_guard::cache::{Cache, CacheLayer};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # let _g = rt.enter();
/// let config = Config::from_vars([("REDIS_ENABLED", "false")]).unwrap();
/// let metrics = Metrics::new();
/// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
/// let app: Router = Router::new()
///     .route("/api/reports/{day}", get(|| async { "rows" }))
///     .route_layer(CacheLayer::query(cache.clone()));
/// ```
#[derive(Clone)]
#[must_use]
pub struct CacheLayer {
    pub(super) shared: Arc<Settings>,
}

#[derive(Clone)]
pub(super) struct Settings {
    pub(super) cache: Cache,
    pub(super) kind: Kind,
    pub(super) vary: Vec<HeaderName>,
    pub(super) statuses: Vec<StatusCode>,
    pub(super) excluded_fields: Vec<String>,
    pub(super) ttl: Option<Arc<TtlFn>>,
    pub(super) max_body: usize,
    pub(super) global: TenantId,
    pub(super) scope: CacheScope,
    /// Request headers responses were seen to vary on, per route template.
    /// Read by every request of the wrapped routes, written only when a response names a
    /// new header: a read-write lock, so readers never wait on each other.
    pub(super) learned_vary: Arc<std::sync::RwLock<HashMap<String, Vec<HeaderName>>>>,
}

/// Route templates whose learned `Vary` headers are kept (templates come from the router,
/// a bounded set; requests outside any route share one slot).
pub(super) const MAX_LEARNED_ROUTES: usize = 1024;
/// Learned `Vary` headers per route.
pub(super) const MAX_LEARNED_HEADERS: usize = 16;

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("kind", &self.shared.kind)
            .field("vary", &self.shared.vary)
            .field("statuses", &self.shared.statuses)
            .finish_non_exhaustive()
    }
}

impl CacheLayer {
    fn with_kind(cache: Cache, kind: Kind) -> Self {
        let max_body = usize::try_from(cache.config().max_body).unwrap_or(usize::MAX);
        let scope = cache.config().scope_for(match &kind {
            Kind::Fixed(c) => c.name(),
            Kind::Ai => "ai",
        });
        Self {
            shared: Arc::new(Settings {
                cache,
                kind,
                vary: Vec::new(),
                statuses: vec![StatusCode::OK],
                excluded_fields: vec!["request_id".into()],
                ttl: None,
                max_body,
                global: TenantId::new(crate::tenant::GLOBAL_TENANT)
                    .expect("the global tenant id is valid"),
                scope,
                learned_vary: Arc::default(),
            }),
        }
    }

    fn edit(self, f: impl FnOnce(&mut Settings)) -> Self {
        let mut s = (*self.shared).clone();
        f(&mut s);
        Self {
            shared: Arc::new(s),
        }
    }

    /// Caches in a named category (`cache:{tenant}:<name>:<hash>`, `CACHE_TTL_<NAME>`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{body::Body, routing::{get, post}, Router};
    /// # use tower::ServiceExt;
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # use tenant_guard::cache::{Cache, CacheLayer, Category};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # async fn x_cache(app: &Router, req: http::Request<Body>) -> String {
    /// #     let res = app.clone().oneshot(req).await.unwrap();
    /// #     res.headers().get("x-cache").map_or("-".into(), |v| v.to_str().unwrap().to_string())
    /// # }
    /// # let get_ = |path: &str| http::Request::get(path).body(Body::empty()).unwrap();
    /// // `cache`: a `Cache` on memory; `x_cache` sends a request and returns its `X-Cache`.
    /// let app = Router::new()
    ///     .route("/reports/{day}", get(|| async { "rows" }))
    ///     .route_layer(CacheLayer::new(cache, Category::named("reports")));
    /// assert_eq!(x_cache(&app, get_("/reports/2026-12-07")).await, "MISS");
    /// assert_eq!(x_cache(&app, get_("/reports/2026-12-07")).await, "HIT");
    /// assert_eq!(x_cache(&app, get_("/reports/2026-12-06")).await, "MISS"); // another path
    /// # Ok(()) }
    /// ```
    pub fn new(cache: Cache, category: Category) -> Self {
        Self::with_kind(cache, Kind::Fixed(category))
    }

    /// Caches in the query category (`QUERY_CACHE_TTL`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{body::Body, routing::{get, post}, Router};
    /// # use tower::ServiceExt;
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # use tenant_guard::cache::{Cache, CacheLayer, Category};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # async fn x_cache(app: &Router, req: http::Request<Body>) -> String {
    /// #     let res = app.clone().oneshot(req).await.unwrap();
    /// #     res.headers().get("x-cache").map_or("-".into(), |v| v.to_str().unwrap().to_string())
    /// # }
    /// # let get_ = |path: &str| http::Request::get(path).body(Body::empty()).unwrap();
    /// // `cache`: a `Cache` on memory; `x_cache` sends a request and returns its `X-Cache`.
    /// let app = Router::new()
    ///     .route("/items", get(|| async { "rows" }))
    ///     .route_layer(CacheLayer::query(cache.clone()));
    /// assert_eq!(x_cache(&app, get_("/items?page=1&size=10")).await, "MISS");
    /// assert_eq!(x_cache(&app, get_("/items?size=10&page=1")).await, "HIT"); // same pairs, sorted
    /// assert_eq!(cache.config().ttl_for("query"), std::time::Duration::from_secs(300)); // QUERY_CACHE_TTL
    /// # Ok(()) }
    /// ```
    pub fn query(cache: Cache) -> Self {
        Self::new(cache, Category::Query)
    }

    /// Caches AI responses (`AI_CACHE_TTL`): the model (JSON field `model`) and every
    /// generation parameter are part of the key, except [`exclude_fields`](Self::exclude_fields)
    /// (default `request_id`). `stream: true` and a whole answer are always kept apart.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{body::Body, routing::{get, post}, Router};
    /// # use tower::ServiceExt;
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # use tenant_guard::cache::{Cache, CacheLayer, Category};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # async fn x_cache(app: &Router, req: http::Request<Body>) -> String {
    /// #     let res = app.clone().oneshot(req).await.unwrap();
    /// #     res.headers().get("x-cache").map_or("-".into(), |v| v.to_str().unwrap().to_string())
    /// # }
    /// # let get_ = |path: &str| http::Request::get(path).body(Body::empty()).unwrap();
    /// // `cache`: a `Cache` on memory; `x_cache` sends a request and returns its `X-Cache`.
    /// let app = Router::new()
    ///     .route("/api/ai/complete", post(|| async { r#"{"text":"hello"}"# }))
    ///     .route_layer(CacheLayer::ai(cache));
    /// let ask = |body: &'static str| {
    ///     http::Request::post("/api/ai/complete").header("content-type", "application/json").body(Body::from(body)).unwrap()
    /// };
    /// assert_eq!(x_cache(&app, ask(r#"{"model":"m1","prompt":"hi"}"#)).await, "MISS");
    /// assert_eq!(x_cache(&app, ask(r#"{ "prompt": "hi", "model": "m1" }"#)).await, "HIT");
    /// assert_eq!(x_cache(&app, ask(r#"{"model":"m2","prompt":"hi"}"#)).await, "MISS"); // another model
    /// # Ok(()) }
    /// ```
    pub fn ai(cache: Cache) -> Self {
        Self::with_kind(cache, Kind::Ai)
    }

    /// Request headers whose values are part of the key (e.g. `Accept-Language`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{body::Body, routing::{get, post}, Router};
    /// # use tower::ServiceExt;
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # use tenant_guard::cache::{Cache, CacheLayer, Category};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # async fn x_cache(app: &Router, req: http::Request<Body>) -> String {
    /// #     let res = app.clone().oneshot(req).await.unwrap();
    /// #     res.headers().get("x-cache").map_or("-".into(), |v| v.to_str().unwrap().to_string())
    /// # }
    /// # let get_ = |path: &str| http::Request::get(path).body(Body::empty()).unwrap();
    /// // `cache`: a `Cache` on memory; `x_cache` sends a request and returns its `X-Cache`.
    /// use http::header::ACCEPT_LANGUAGE;
    /// let app = Router::new()
    ///     .route("/help", get(|| async { "text" }))
    ///     .route_layer(CacheLayer::new(cache, Category::named("help")).vary([ACCEPT_LANGUAGE]));
    /// let in_lang = |lang: &str| http::Request::get("/help").header(ACCEPT_LANGUAGE, lang).body(Body::empty()).unwrap();
    /// assert_eq!(x_cache(&app, in_lang("en")).await, "MISS");
    /// assert_eq!(x_cache(&app, in_lang("en")).await, "HIT");
    /// assert_eq!(x_cache(&app, in_lang("fr")).await, "MISS"); // an entry per language
    /// # Ok(()) }
    /// ```
    pub fn vary(self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        let headers: Vec<HeaderName> = headers.into_iter().collect();
        self.edit(|s| s.vary = headers)
    }

    /// Whose responses an entry may serve (default: `CACHE_SCOPE_<CATEGORY>`, else
    /// `CACHE_SCOPE`, else [`CacheScope::Auto`]).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # let _g = rt.enter();
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// use tenant_guard::cache::{Cache, CacheLayer, CacheScope, Category};
    /// let (config, metrics) = (Config::default(), Metrics::new());
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics).unwrap(), &metrics);
    /// // Public price lists: one entry for everyone in the tenant, logged in or not.
    /// let layer = CacheLayer::new(cache, Category::named("prices")).scope(CacheScope::Tenant);
    /// ```
    pub fn scope(self, scope: CacheScope) -> Self {
        self.edit(|s| s.scope = scope)
    }

    /// Response statuses that may be stored (default only `200`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{body::Body, routing::{get, post}, Router};
    /// # use tower::ServiceExt;
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # use tenant_guard::cache::{Cache, CacheLayer, Category};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # async fn x_cache(app: &Router, req: http::Request<Body>) -> String {
    /// #     let res = app.clone().oneshot(req).await.unwrap();
    /// #     res.headers().get("x-cache").map_or("-".into(), |v| v.to_str().unwrap().to_string())
    /// # }
    /// # let get_ = |path: &str| http::Request::get(path).body(Body::empty()).unwrap();
    /// // `cache`: a `Cache` on memory; `x_cache` sends a request and returns its `X-Cache`.
    /// use http::StatusCode;
    /// let missing = || async { (StatusCode::NOT_FOUND, "no such item") };
    /// let app = Router::new()
    ///     .route("/items/{id}", get(missing))
    ///     .route_layer(CacheLayer::query(cache).statuses([StatusCode::OK, StatusCode::NOT_FOUND]));
    /// assert_eq!(x_cache(&app, get_("/items/9")).await, "MISS");
    /// assert_eq!(x_cache(&app, get_("/items/9")).await, "HIT"); // the 404 was stored too
    /// # Ok(()) }
    /// ```
    pub fn statuses(self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        let statuses: Vec<StatusCode> = statuses.into_iter().collect();
        self.edit(|s| s.statuses = statuses)
    }

    /// Top-level JSON body fields left out of the key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{body::Body, routing::{get, post}, Router};
    /// # use tower::ServiceExt;
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # use tenant_guard::cache::{Cache, CacheLayer, Category};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # async fn x_cache(app: &Router, req: http::Request<Body>) -> String {
    /// #     let res = app.clone().oneshot(req).await.unwrap();
    /// #     res.headers().get("x-cache").map_or("-".into(), |v| v.to_str().unwrap().to_string())
    /// # }
    /// # let get_ = |path: &str| http::Request::get(path).body(Body::empty()).unwrap();
    /// // `cache`: a `Cache` on memory; `x_cache` sends a request and returns its `X-Cache`.
    /// let app = Router::new()
    ///     .route("/api/ai/complete", post(|| async { r#"{"text":"hello"}"# }))
    ///     .route_layer(CacheLayer::ai(cache).exclude_fields(["trace_id", "user"]));
    /// let ask = |body: &'static str| {
    ///     http::Request::post("/api/ai/complete").header("content-type", "application/json").body(Body::from(body)).unwrap()
    /// };
    /// assert_eq!(x_cache(&app, ask(r#"{"model":"m","prompt":"hi","trace_id":"t-1"}"#)).await, "MISS");
    /// assert_eq!(x_cache(&app, ask(r#"{"model":"m","prompt":"hi","trace_id":"t-2"}"#)).await, "HIT");
    /// # Ok(()) }
    /// ```
    pub fn exclude_fields(self, fields: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        self.edit(|s| s.excluded_fields = fields)
    }

    /// Chooses the TTL per request (e.g. from the path: today's report 15 s, older ones
    /// 10 min); `None` falls back to the category's TTL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{body::Body, routing::{get, post}, Router};
    /// # use tower::ServiceExt;
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # use tenant_guard::cache::{Cache, CacheLayer, Category};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # async fn x_cache(app: &Router, req: http::Request<Body>) -> String {
    /// #     let res = app.clone().oneshot(req).await.unwrap();
    /// #     res.headers().get("x-cache").map_or("-".into(), |v| v.to_str().unwrap().to_string())
    /// # }
    /// # let get_ = |path: &str| http::Request::get(path).body(Body::empty()).unwrap();
    /// // `cache`: a `Cache` on memory; `x_cache` sends a request and returns its `X-Cache`.
    /// use std::time::Duration;
    /// let app = Router::new()
    ///     .route("/reports/{day}", get(|| async { "rows" }))
    ///     .route_layer(CacheLayer::new(cache, Category::named("reports")).ttl_with(|parts, _status| {
    ///         // Today's report changes: 50 ms. Older ones: the category's TTL.
    ///         parts.uri.path().ends_with("/today").then(|| Duration::from_millis(50))
    ///     }));
    /// x_cache(&app, get_("/reports/today")).await;
    /// x_cache(&app, get_("/reports/2026-01-01")).await;
    /// tokio::time::sleep(Duration::from_millis(120)).await;
    /// assert_eq!(x_cache(&app, get_("/reports/today")).await, "MISS"); // expired
    /// assert_eq!(x_cache(&app, get_("/reports/2026-01-01")).await, "HIT");
    /// # Ok(()) }
    /// ```
    pub fn ttl_with(
        self,
        f: impl Fn(&Parts, StatusCode) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        let f: Arc<TtlFn> = Arc::new(f);
        self.edit(|s| s.ttl = Some(f))
    }

    /// Largest body (request or response) cached; larger ones pass through uncached.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{body::Body, routing::{get, post}, Router};
    /// # use tower::ServiceExt;
    /// # use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// # use tenant_guard::cache::{Cache, CacheLayer, Category};
    /// # let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// # let metrics = Metrics::new();
    /// # let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// # async fn x_cache(app: &Router, req: http::Request<Body>) -> String {
    /// #     let res = app.clone().oneshot(req).await.unwrap();
    /// #     res.headers().get("x-cache").map_or("-".into(), |v| v.to_str().unwrap().to_string())
    /// # }
    /// # let get_ = |path: &str| http::Request::get(path).body(Body::empty()).unwrap();
    /// // `cache`: a `Cache` on memory; `x_cache` sends a request and returns its `X-Cache`.
    /// let app = Router::new()
    ///     .route("/small", get(|| async { "ok" }))
    ///     .route("/large", get(|| async { "x".repeat(100) }))
    ///     .route_layer(CacheLayer::query(cache).max_body(16));
    /// x_cache(&app, get_("/small")).await;
    /// x_cache(&app, get_("/large")).await;
    /// assert_eq!(x_cache(&app, get_("/small")).await, "HIT");
    /// assert_ne!(x_cache(&app, get_("/large")).await, "HIT"); // 100 bytes: passed through uncached
    /// # Ok(()) }
    /// ```
    pub fn max_body(self, bytes: usize) -> Self {
        self.edit(|s| s.max_body = bytes)
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService {
            inner,
            shared: self.shared.clone(),
        }
    }
}
