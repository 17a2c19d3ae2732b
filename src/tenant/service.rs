//! [`TenantService`]: resolves (and, when configured, validates) the tenant of each request,
//! answering 400/404 problem+json or calling the inner service with the [`TenantId`] in the
//! request's extensions.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::Settings;
use super::{TenantError, TenantId};
use crate::problem::Problem;

/// The service made by [`TenantLayer`](super::TenantLayer).
#[derive(Debug, Clone)]
pub struct TenantService<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Settings>,
}

crate::macros::inner_service_accessors!(TenantService);

pub(super) fn unknown(tenant: &TenantId) -> Problem {
    tracing::debug!(%tenant, "unknown tenant");
    Problem::new(StatusCode::NOT_FOUND, "Unknown tenant")
        .detail(format!("tenant `{tenant}` is not served here"))
}

pub(super) fn decide(
    layer: &Settings,
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
        match self.shared.resolver.resolve_now(&mut parts) {
            Some(result) => match decide(&self.shared, result) {
                Ok(tenant) => match self.shared.known_now(&tenant) {
                    Some(true) => {
                        parts.extensions.insert(tenant);
                        ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)))
                    }
                    Some(false) => ResponseFuture::ready(unknown(&tenant).into_response()),
                    None => {
                        let clone = self.inner.clone();
                        let mut inner = std::mem::replace(&mut self.inner, clone);
                        let layer = self.shared.clone();
                        ResponseFuture::boxed(Box::pin(async move {
                            if !layer.known(&tenant).await {
                                return Ok(unknown(&tenant).into_response());
                            }
                            parts.extensions.insert(tenant);
                            inner.call(Request::from_parts(parts, body)).await
                        }))
                    }
                },
                Err(problem) => ResponseFuture::ready(problem.into_response()),
            },
            None => {
                // Async resolver: the inner service was made ready by poll_ready, so it is
                // the one to call; leave a fresh clone in its place (tower's usual dance).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let layer = self.shared.clone();
                ResponseFuture::boxed(Box::pin(async move {
                    let result = layer.resolver.resolve(&mut parts).await;
                    match decide(&layer, result) {
                        Ok(tenant) if !layer.known(&tenant).await => {
                            Ok(unknown(&tenant).into_response())
                        }
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
