//! [`CacheLayer`]: caches the HTTP responses of the routes it wraps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::request::Parts;
use http::StatusCode;
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
    pub fn new(cache: Cache, category: Category) -> Self {
        Self::with_kind(cache, Kind::Fixed(category))
    }

    /// Caches in the query category (`QUERY_CACHE_TTL`).
    pub fn query(cache: Cache) -> Self {
        Self::new(cache, Category::Query)
    }

    /// Caches AI responses (`AI_CACHE_TTL`): the model (JSON field `model`) and every
    /// generation parameter are part of the key, except [`exclude_fields`](Self::exclude_fields)
    /// (default `request_id`). `stream: true` and a whole answer are always kept apart.
    pub fn ai(cache: Cache) -> Self {
        Self::with_kind(cache, Kind::Ai)
    }

    /// Request headers whose values are part of the key (e.g. `Accept-Language`).
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
    pub fn statuses(self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        let statuses: Vec<StatusCode> = statuses.into_iter().collect();
        self.edit(|s| s.statuses = statuses)
    }

    /// Top-level JSON body fields left out of the key.
    pub fn exclude_fields(self, fields: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        self.edit(|s| s.excluded_fields = fields)
    }

    /// Chooses the TTL per request (e.g. from the path: today's report 15 s, older ones
    /// 10 min); `None` falls back to the category's TTL.
    pub fn ttl_with(
        self,
        f: impl Fn(&Parts, StatusCode) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        let f: Arc<TtlFn> = Arc::new(f);
        self.edit(|s| s.ttl = Some(f))
    }

    /// Largest body (request or response) cached; larger ones pass through uncached.
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
