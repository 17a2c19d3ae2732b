//! [`SessionLayer`]: puts a lazy [`Session`] in every request and saves it afterwards.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::cookie::{CookieCodec, CookieState};
use super::handle::{CookieAction, Session};
use super::store::SessionStore;
use super::SessionConfig;
use crate::tenant::TenantId;
use crate::tenant::{SessionCredential, UserId, GLOBAL_TENANT};

/// Server-side sessions for the wrapped service.
///
/// Put it inside the [`TenantLayer`](crate::tenant::TenantLayer) (so the tenant is known;
/// without one, sessions live under the tenant `global`). With
/// [`expose_user`](Self::expose_user), requests that carry a session cookie have the
/// session's user put in the extensions as a [`UserId`] before the inner service runs, so a
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
    shared: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    store: SessionStore,
    codec: CookieCodec,
    expose_user: bool,
    global: TenantId,
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
    /// service runs and puts its user in the extensions as a [`UserId`] (for per-user rate
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

/// The service made by [`SessionLayer`].
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Settings>,
}

impl<S> SessionService<S> {
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let settings = self.shared.clone();
        let tenant = req
            .extensions()
            .get::<TenantId>()
            .cloned()
            .unwrap_or_else(|| settings.global.clone());
        let cookie = settings.codec.decode(req.headers(), &tenant);
        let session = Session::new(tenant, settings.store.clone(), cookie);
        req.extensions_mut().insert(session.clone());
        req.extensions_mut().insert(
            session
                .cookie_id()
                .map_or_else(SessionCredential::none, |id| {
                    SessionCredential::new(id.as_str())
                }),
        );
        // The inner service was made ready by poll_ready: call that one, leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if settings.expose_user && matches!(session.cookie(), CookieState::Valid(_)) {
                match session.user_id().await {
                    Ok(Some(user)) => {
                        req.extensions_mut().insert(UserId::new(user));
                    }
                    Ok(None) => {}
                    // The handler will see the same error if it touches the session; the
                    // rate limiter falls back to the client IP.
                    Err(e) => tracing::debug!(error = %e, "session user not available"),
                }
            }
            let mut res = inner.call(req).await?;
            if res.status().is_server_error() {
                // Never persist what a failing handler left behind.
                return Ok(res);
            }
            let set_cookie: Option<HeaderValue> = match session.commit().await {
                Ok(CookieAction::Keep) => None,
                Ok(CookieAction::Set(id)) => Some(settings.codec.encode(session.tenant(), &id)),
                Ok(CookieAction::Remove) => Some(settings.codec.removal()),
                Err(e) => {
                    tracing::warn!(error = %e, "session not saved");
                    return Ok(e.to_problem().into_response());
                }
            };
            if let Some(v) = set_cookie {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(res)
        })
    }
}
