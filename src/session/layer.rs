//! [`SessionLayer`]: puts a lazy [`Session`] in every request and saves it afterwards.

use std::sync::Arc;

use tower_layer::Layer;

use super::SessionConfig;
use super::cookie::CookieCodec;
use super::service::SessionService;
use super::store::SessionStore;
use crate::tenant::GLOBAL_TENANT;
use crate::tenant::TenantId;

/// Server-side sessions for the wrapped service.
///
/// Put it inside the [`TenantLayer`](crate::tenant::TenantLayer) (so the tenant is known;
/// without one, sessions live under the tenant `global`). With
/// [`expose_user`](Self::expose_user), requests that carry a session cookie have the
/// session's user put in the extensions as a [`UserId`](crate::tenant::UserId) before the inner service runs, so a
/// [`RateLimitLayer`](crate::ratelimit::RateLimitLayer) inside this layer limits per user.
///
/// ```
/// use axum::{routing::get, Router};
/// use tenant_guard::{backend::{Backend, MemoryStore}, config::SessionConfig, keys::Keys, metrics::Metrics};
/// use tenant_guard::session::{Session, SessionLayer, SessionStore};
///
/// async fn visits(session: Session) -> Result<String, tenant_guard::session::SessionError> {
///     let n = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
///     session.insert("visits", &n).await?;
///     Ok(format!("visit {n}"))
/// }
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # let _g = rt.enter();
/// let config = SessionConfig::default();
/// let backend = Backend::Memory(MemoryStore::new(Default::default()));
/// let store = SessionStore::new(backend, &config, Keys::default(), &Metrics::new());
/// let app: Router = Router::new()
///     .route("/", get(visits))
///     .layer(SessionLayer::from_config(&config, store));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SessionLayer {
    pub(super) shared: Arc<Settings>,
}

#[derive(Debug)]
pub(super) struct Settings {
    pub(super) store: SessionStore,
    pub(super) codec: CookieCodec,
    pub(super) expose_user: bool,
    pub(super) global: TenantId,
}

impl SessionLayer {
    /// A layer over `store` with the cookie settings of `config`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::session::{SessionLayer, SessionStore};
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// let config = Config::from_vars([("SESSION_SECRET", "0123456789abcdef0123456789abcdef")])?;
    /// # let metrics = Metrics::new();
    /// let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let layer = SessionLayer::from_config(&config.session, store);
    /// use tower::{Layer, ServiceExt};
    /// let svc = layer.layer(tower::service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// }));
    /// let res = svc.oneshot(http::Request::new(String::new())).await?;
    /// assert!(!res.headers().contains_key("set-cookie")); // an untouched session sets none
    /// # Ok(()) }
    /// ```
    pub fn from_config(config: &SessionConfig, store: SessionStore) -> Self {
        Self::new(store, CookieCodec::from_config(config))
    }

    /// A layer over `store` with an explicit cookie codec.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::session::{SessionLayer, SessionStore};
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// let config = Config::from_vars([("SESSION_SECRET", "0123456789abcdef0123456789abcdef")])?;
    /// # let metrics = Metrics::new();
    /// let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// use tenant_guard::session::CookieCodec;
    /// let layer = SessionLayer::new(store, CookieCodec::from_config(&config.session));
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    pub fn new(store: SessionStore, codec: CookieCodec) -> Self {
        Self {
            shared: Arc::new(Settings {
                store,
                codec,
                expose_user: false,
                global: TenantId::new(GLOBAL_TENANT).expect("the global tenant id is valid"),
            }),
        }
    }

    /// Loads the session of every request that carries a session cookie before the inner
    /// service runs and puts its user in the extensions as a [`UserId`](crate::tenant::UserId) (for per-user rate
    /// limits). Costs one store round trip on those requests, which otherwise happens only
    /// when the handler touches the session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::session::{SessionLayer, SessionStore};
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// let config = Config::from_vars([("SESSION_SECRET", "0123456789abcdef0123456789abcdef")])?;
    /// # let metrics = Metrics::new();
    /// let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let layer = SessionLayer::from_config(&config.session, store).expose_user(true);
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    pub fn expose_user(self, on: bool) -> Self {
        let s = &*self.shared;
        Self {
            shared: Arc::new(Settings {
                store: s.store.clone(),
                codec: s.codec.clone(),
                expose_user: on,
                global: s.global.clone(),
            }),
        }
    }

    /// The store behind this layer (for listing and revoking sessions).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::session::{SessionLayer, SessionStore};
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
    /// let config = Config::from_vars([("SESSION_SECRET", "0123456789abcdef0123456789abcdef")])?;
    /// # let metrics = Metrics::new();
    /// let store = SessionStore::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let layer = SessionLayer::from_config(&config.session, store.clone());
    /// let same: &SessionStore = layer.store();
    /// # let _ = same;
    /// # Ok(()) }
    /// ```
    pub fn store(&self) -> &SessionStore {
        &self.shared.store
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}
