//! [`SessionLayer`]: puts a lazy [`Session`] in every request and saves it afterwards.

use std::sync::Arc;

use tower_layer::Layer;

use super::cookie::CookieCodec;
use super::service::SessionService;
use super::store::SessionStore;
use super::SessionConfig;
use crate::tenant::TenantId;
use crate::tenant::GLOBAL_TENANT;

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
    pub fn from_config(config: &SessionConfig, store: SessionStore) -> Self {
        Self::new(store, CookieCodec::from_config(config))
    }

    /// A layer over `store` with an explicit cookie codec.
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
