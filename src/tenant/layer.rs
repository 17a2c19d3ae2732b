//! [`TenantLayer`]: resolves the tenant before the inner service runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{TenantError, TenantId, TenantResolver};
use crate::config::TenantConfig;
use crate::problem::Problem;

/// Puts the request's [`TenantId`] into its extensions, or answers
/// `400 application/problem+json` when the tenant is missing or invalid.
///
/// A missing tenant falls back to the default tenant when one is set; an *invalid* one
/// never does (a typo in a tenant id must not silently land in another tenant).
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
    resolver: TenantResolver,
    default: Option<TenantId>,
}

impl TenantLayer {
    /// A layer using `resolver`, with no default tenant.
    pub fn new(resolver: TenantResolver) -> Self {
        Self {
            resolver,
            default: None,
        }
    }

    /// The layer described by configuration (`TG_TENANT_SOURCE`, `TG_DEFAULT_TENANT`).
    ///
    /// ```
    /// let cfg = tenant_guard::config::Config::default();
    /// let layer = tenant_guard::tenant::TenantLayer::from_config(&cfg.tenant);
    /// ```
    pub fn from_config(config: &TenantConfig) -> Self {
        Self {
            resolver: TenantResolver::from_config(config),
            default: config.default_tenant.clone(),
        }
    }

    /// Tenant used for requests that name none.
    pub fn default_tenant(mut self, tenant: TenantId) -> Self {
        self.default = Some(tenant);
        self
    }
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`TenantLayer`].
#[derive(Debug, Clone)]
pub struct TenantService<S> {
    inner: S,
    layer: TenantLayer,
}

impl<S> TenantService<S> {
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

fn decide(
    layer: &TenantLayer,
    result: Result<Option<TenantId>, TenantError>,
) -> Result<TenantId, Problem> {
    let expected = layer.resolver.expectation();
    match result {
        Ok(Some(t)) => Ok(t),
        Ok(None) | Err(TenantError::Missing) => layer.default.clone().ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST, "Missing tenant")
                .detail(format!("expected {expected}"))
                .with("expected", expected.clone())
        }),
        Err(TenantError::Invalid(why)) => {
            tracing::debug!(reason = %why, "rejected tenant");
            Err(Problem::new(StatusCode::BAD_REQUEST, "Invalid tenant")
                .detail(format!("{why}; expected {expected} ({})", TenantId::FORM))
                .with("expected", expected.clone()))
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TenantService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        match self.layer.resolver.resolve_now(&mut parts) {
            Some(result) => match decide(&self.layer, result) {
                Ok(tenant) => {
                    parts.extensions.insert(tenant);
                    ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)))
                }
                Err(problem) => ResponseFuture::ready(problem.into_response()),
            },
            None => {
                // Async resolver: the inner service was made ready by poll_ready, so it is
                // the one to call; leave a fresh clone in its place (tower's usual dance).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let layer = self.layer.clone();
                ResponseFuture::boxed(Box::pin(async move {
                    let result = layer.resolver.resolve(&mut parts).await;
                    match decide(&layer, result) {
                        Ok(tenant) => {
                            parts.extensions.insert(tenant);
                            inner.call(Request::from_parts(parts, body)).await
                        }
                        Err(problem) => Ok(problem.into_response()),
                    }
                }))
            }
        }
    }
}

pin_project! {
    /// Response future of [`TenantService`].
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] fut: F },
        Ready { res: Option<Response<B>> },
        Boxed { fut: BoxFuture<'static, Result<Response<B>, E>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    fn inner(fut: F) -> Self {
        Self {
            kind: Kind::Inner { fut },
        }
    }
    fn ready(res: Response<B>) -> Self {
        Self {
            kind: Kind::Ready { res: Some(res) },
        }
    }
    fn boxed(fut: BoxFuture<'static, Result<Response<B>, E>>) -> Self {
        Self {
            kind: Kind::Boxed { fut },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx),
            KindProj::Ready { res } => Poll::Ready(Ok(res
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Boxed { fut } => fut.as_mut().poll(cx),
        }
    }
}
