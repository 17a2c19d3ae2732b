//! [`TenantLayer`]: resolves the tenant before the inner service runs.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tower_layer::Layer;

use super::TenantConfig;
use super::service::TenantService;
use super::{TenantId, TenantResolver};

/// Puts the request's [`TenantId`] into its extensions, or answers
/// `400 application/problem+json` when the tenant is missing or invalid.
///
/// A missing tenant falls back to the default tenant when one is set; an *invalid* one
/// never does (a typo in a tenant id must not silently land in another tenant).
///
/// Tenant ids are whatever the client sends. To serve only tenants you know, give the list
/// ([`known_tenants`](Self::known_tenants), `TG_TENANTS`) or an async check
/// ([`validate_with`](Self::validate_with), e.g. a database lookup, its answers cached with
/// a bound and a TTL): any other tenant gets `404` problem+json and the inner service —
/// rate limiter, session, cache — never runs, so nothing is written for it.
///
/// ```
/// use axum::{routing::get, Router};
/// use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
///
/// let app: Router = Router::new()
///     .route("/", get(|t: TenantId| async move { format!("hello {t}") }))
///     .layer(
///         TenantLayer::new(TenantResolver::subdomain("example.com"))
///             .default_tenant(TenantId::new("public").unwrap()),
///     );
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TenantLayer {
    pub(super) shared: Arc<Settings>,
}

/// What the layer and its services share.
#[derive(Debug, Clone, Default)]
pub(super) struct Settings {
    pub(super) resolver: TenantResolver,
    pub(super) default: Option<TenantId>,
    known: Option<Arc<HashSet<TenantId>>>,
    validator: Option<Arc<Validator>>,
}

pub(super) type ValidateFn = dyn Fn(TenantId) -> BoxFuture<'static, bool> + Send + Sync;

pub(super) type Check = futures_util::future::Shared<BoxFuture<'static, bool>>;

/// An async tenant check and its cached answers.
pub(super) struct Validator {
    pub(super) check: Arc<ValidateFn>,
    pub(super) answers: moka::sync::Cache<TenantId, bool>,
    /// Checks running now, so that concurrent requests for one id (a new id, or one whose
    /// answer just expired) wait for one check instead of each making one. Holds at most
    /// one entry per request in flight: a waiter removes it however it ends.
    pub(super) running: std::sync::Mutex<std::collections::HashMap<TenantId, Check>>,
}

impl Validator {
    fn new(check: Arc<ValidateFn>, answers: moka::sync::Cache<TenantId, bool>) -> Self {
        Self {
            check,
            answers,
            running: std::sync::Mutex::default(),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<TenantId, Check>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn ask(&self, tenant: &TenantId) -> bool {
        use futures_util::FutureExt;
        let check = self
            .running()
            .entry(tenant.clone())
            .or_insert_with(|| (self.check)(tenant.clone()).shared())
            .clone();
        struct Done<'a>(&'a Validator, &'a TenantId);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.running().remove(self.1);
            }
        }
        let _done = Done(self, tenant);
        let answer = check.await;
        self.answers.insert(tenant.clone(), answer);
        answer
    }
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("cached", &self.answers.entry_count())
            .finish_non_exhaustive()
    }
}

/// Answers of [`TenantLayer::validate_with`] kept by default.
///
/// ```
/// assert_eq!(tenant_guard::tenant::VALIDATION_CACHE_ENTRIES, 10_000);
/// ```
pub const VALIDATION_CACHE_ENTRIES: u64 = 10_000;
/// How long an answer of [`TenantLayer::validate_with`] is kept by default.
///
/// ```
/// assert_eq!(tenant_guard::tenant::VALIDATION_CACHE_TTL.as_secs(), 60);
/// ```
pub const VALIDATION_CACHE_TTL: Duration = Duration::from_secs(60);

impl TenantLayer {
    /// A layer using `resolver`, with no default tenant.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
    /// use tower::{Layer, ServiceExt};
    /// let svc = TenantLayer::new(TenantResolver::header("x-tenant-id")).layer(tower::service_fn(
    ///     |req: http::Request<String>| async move {
    ///         let t = req.extensions().get::<TenantId>().unwrap().to_string();
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(t))
    ///     },
    /// ));
    /// let res = svc.clone().oneshot(http::Request::get("/").header("x-tenant-id", "acme").body(String::new())?).await?;
    /// assert_eq!(res.into_body(), "acme");
    /// let none = svc.oneshot(http::Request::new(String::new())).await?;
    /// assert_eq!(none.status(), 400); // no default tenant
    /// # Ok(()) }
    /// ```
    pub fn new(resolver: TenantResolver) -> Self {
        Self {
            shared: Arc::new(Settings {
                resolver,
                ..Settings::default()
            }),
        }
    }

    /// The settings, to change while building (copied if a service already shares them).
    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.shared)
    }

    /// The layer described by configuration (`TG_TENANT_SOURCE`, `TG_DEFAULT_TENANT`,
    /// `TG_TENANTS`).
    ///
    /// ```
    /// let cfg = tenant_guard::config::Config::default();
    /// let layer = tenant_guard::tenant::TenantLayer::from_config(&cfg.tenant);
    /// ```
    pub fn from_config(config: &TenantConfig) -> Self {
        let mut layer = Self::new(TenantResolver::from_config(config));
        layer.settings().default.clone_from(&config.default_tenant);
        match &config.known {
            Some(known) => layer.known_tenants(known.iter().cloned()),
            None => layer,
        }
    }

    /// Serves only these tenants; any other gets `404` (`TG_TENANTS`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{routing::get, Router};
    /// use tower::ServiceExt;
    /// use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
    ///
    /// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(
    ///     TenantLayer::new(TenantResolver::header("x-tenant-id"))
    ///         .known_tenants(["acme", "globex"].map(|t| TenantId::new(t).unwrap())),
    /// );
    /// let req = |t: &str| http::Request::get("/").header("x-tenant-id", t).body(axum::body::Body::empty()).unwrap();
    /// assert_eq!(app.clone().oneshot(req("acme")).await.unwrap().status(), 200);
    /// assert_eq!(app.clone().oneshot(req("invented-42")).await.unwrap().status(), 404);
    /// # }
    /// ```
    pub fn known_tenants(mut self, tenants: impl IntoIterator<Item = TenantId>) -> Self {
        self.settings().known = Some(Arc::new(tenants.into_iter().collect()));
        self
    }

    /// Serves only tenants for which `check` answers `true` (e.g. a database lookup);
    /// others get `404`. Answers are cached — at most [`VALIDATION_CACHE_ENTRIES`], each
    /// for [`VALIDATION_CACHE_TTL`] ([`validation_cache`](Self::validation_cache) changes
    /// both) — so a client inventing ids costs one check per new id, and memory stays
    /// bounded.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{routing::get, Router};
    /// use tower::ServiceExt;
    /// use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
    ///
    /// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(
    ///     TenantLayer::new(TenantResolver::header("x-tenant-id"))
    ///         .validate_with(|t: TenantId| async move { t.as_str().starts_with("cust-") }),
    /// );
    /// let req = |t: &str| http::Request::get("/").header("x-tenant-id", t).body(axum::body::Body::empty()).unwrap();
    /// assert_eq!(app.clone().oneshot(req("cust-1")).await.unwrap().status(), 200);
    /// assert_eq!(app.clone().oneshot(req("other")).await.unwrap().status(), 404);
    /// # }
    /// ```
    pub fn validate_with<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn(TenantId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let check: Arc<ValidateFn> = Arc::new(move |t| Box::pin(check(t)));
        self.settings().validator = Some(Arc::new(Validator::new(
            check,
            answers_cache(VALIDATION_CACHE_ENTRIES, VALIDATION_CACHE_TTL),
        )));
        self
    }

    /// Bounds of the cache of [`validate_with`](Self::validate_with)'s answers (call it
    /// after `validate_with`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
    /// let layer = TenantLayer::new(TenantResolver::header("x-tenant-id"))
    ///     .validate_with(|_t: TenantId| async { true })
    ///     .validation_cache(1_000, Duration::from_secs(5));
    /// ```
    pub fn validation_cache(mut self, max_entries: u64, ttl: Duration) -> Self {
        if let Some(v) = &self.shared.validator {
            let check = v.check.clone();
            self.settings().validator = Some(Arc::new(Validator::new(
                check,
                answers_cache(max_entries, ttl),
            )));
        }
        self
    }

    /// Tenant used for requests that name none.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
    /// use tower::{Layer, ServiceExt};
    /// let layer = TenantLayer::new(TenantResolver::header("x-tenant-id"))
    ///     .default_tenant(TenantId::new("public")?);
    /// let svc = layer.layer(tower::service_fn(|req: http::Request<String>| async move {
    ///     let t = req.extensions().get::<TenantId>().unwrap().to_string();
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(t))
    /// }));
    /// assert_eq!(svc.oneshot(http::Request::new(String::new())).await?.into_body(), "public");
    /// # Ok(()) }
    /// ```
    pub fn default_tenant(mut self, tenant: TenantId) -> Self {
        self.settings().default = Some(tenant);
        self
    }
}

impl Settings {
    /// Whether `tenant` is served, if that is known without waiting.
    pub(super) fn known_now(&self, tenant: &TenantId) -> Option<bool> {
        if self.known.as_ref().is_some_and(|k| !k.contains(tenant)) {
            return Some(false);
        }
        match &self.validator {
            None => Some(true),
            Some(v) => v.answers.get(tenant),
        }
    }

    /// Whether `tenant` is served, asking the validator when the answer is not cached.
    pub(super) async fn known(&self, tenant: &TenantId) -> bool {
        if let Some(answer) = self.known_now(tenant) {
            return answer;
        }
        let Some(v) = &self.validator else {
            return true;
        };
        v.ask(tenant).await
    }
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

pub(super) fn answers_cache(max_entries: u64, ttl: Duration) -> moka::sync::Cache<TenantId, bool> {
    moka::sync::Cache::builder()
        .max_capacity(max_entries)
        .time_to_live(ttl)
        .build()
}
