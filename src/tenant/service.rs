//! [`TenantService`]: resolves (and, when configured, validates) the tenant of each request,
//! answering 400/404 problem+json or calling the inner service with the [`TenantId`] in the
//! request's extensions.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;
use tracing::field::Empty;
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

use super::layer::Settings;
use super::{TenantError, TenantId};
use crate::future::{ResponseFuture, Unchanged};
use crate::problem::Problem;

/// The service made by [`TenantLayer`](super::TenantLayer).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::Layer;
/// # let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("SESSION_SECRET", "0123456789abcdef0123456789abcdef")])?;
/// let inner = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
/// });
/// let svc: tenant_guard::tenant::TenantService<_> = tenant_guard::tenant::TenantLayer::new(tenant_guard::tenant::TenantResolver::header("x-tenant-id")).layer(inner);
/// let _inner = svc.get_ref(); // get_mut, into_inner: as tower's middleware
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TenantService<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Settings>,
}

crate::macros::inner_service_accessors!(
    TenantService,
    "tenant_guard::tenant::TenantLayer::new(tenant_guard::tenant::TenantResolver::header(\"x-tenant-id\"))"
);

pub(super) fn unknown(tenant: &TenantId) -> Problem {
    tracing::debug!(%tenant, "unknown tenant");
    Problem::new(StatusCode::NOT_FOUND, "Unknown tenant")
        .detail(format!("tenant `{tenant}` is not served here"))
}

/// Records the outcome (and, when there is one, the validated tenant) on the layer's span.
fn record(span: &Span, outcome: &'static str, tenant: Option<&TenantId>) {
    if span.is_disabled() {
        return;
    }
    span.record("outcome", outcome);
    if let Some(t) = tenant {
        span.record("tenant", t.as_str());
    }
}

pub(super) fn decide(
    layer: &Settings,
    result: Result<Option<TenantId>, TenantError>,
    span: &Span,
) -> Result<TenantId, Problem> {
    match result {
        Ok(Some(t)) => Ok(t),
        Ok(None) | Err(TenantError::Missing) => layer.default.clone().ok_or_else(|| {
            // Built only for a refusal: it allocates, and most requests name a tenant.
            let expected = layer.resolver.expectation();
            record(span, "missing", None);
            Problem::new(StatusCode::BAD_REQUEST, "Missing tenant")
                .detail(format!("expected {expected}"))
                .with("expected", expected)
        }),
        Err(TenantError::Invalid(why)) => {
            let expected = layer.resolver.expectation();
            tracing::debug!(reason = %why, "rejected tenant");
            record(span, "invalid", None);
            Err(Problem::new(StatusCode::BAD_REQUEST, "Invalid tenant")
                .detail(format!("{why}; expected {expected} ({})", TenantId::FORM))
                .with("expected", expected))
        }
    }
}

/// Whether `tenant` is served, recorded on the span: `ok` with the tenant, or `unknown`
/// without it (a name a client made up is not recorded: any number of them may come).
fn known(span: &Span, tenant: &TenantId, known: bool) -> bool {
    if known {
        record(span, "ok", Some(tenant));
    } else {
        record(span, "unknown", None);
    }
    known
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
    type Future = ResponseFuture<Instrumented<S::Future>, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = tracing::info_span!(
            "tenant_guard.tenant",
            request_id = Empty,
            tenant = Empty,
            outcome = Empty,
        );
        let (mut parts, body) = req.into_parts();
        crate::trace::record_request_id_parts(&mut parts, &span);
        match self.shared.resolver.resolve_now(&mut parts) {
            Some(result) => match decide(&self.shared, result, &span) {
                Ok(tenant) => match self.shared.known_now(&tenant) {
                    Some(true) => {
                        known(&span, &tenant, true);
                        parts.extensions.insert(tenant);
                        // Inside the span: the inner layers' spans are its children.
                        let fut = {
                            let _in = span.enter();
                            self.inner.call(Request::from_parts(parts, body))
                        };
                        ResponseFuture::inner(fut.instrument(span), Unchanged)
                    }
                    Some(false) => {
                        known(&span, &tenant, false);
                        ResponseFuture::ready(unknown(&tenant).into_response())
                    }
                    None => {
                        let mut inner = crate::future::take_ready(&mut self.inner);
                        let layer = self.shared.clone();
                        let here = span.clone();
                        ResponseFuture::boxed(Box::pin(
                            async move {
                                if !known(&here, &tenant, layer.known(&tenant).await) {
                                    return Ok(unknown(&tenant).into_response());
                                }
                                parts.extensions.insert(tenant);
                                inner.call(Request::from_parts(parts, body)).await
                            }
                            .instrument(span),
                        ))
                    }
                },
                Err(problem) => ResponseFuture::ready(problem.into_response()),
            },
            None => {
                // Async resolver: the inner service is called from a future.
                let mut inner = crate::future::take_ready(&mut self.inner);
                let layer = self.shared.clone();
                let here = span.clone();
                ResponseFuture::boxed(Box::pin(
                    async move {
                        let result = layer.resolver.resolve(&mut parts).await;
                        match decide(&layer, result, &here) {
                            Ok(tenant) if !known(&here, &tenant, layer.known(&tenant).await) => {
                                Ok(unknown(&tenant).into_response())
                            }
                            Ok(tenant) => {
                                parts.extensions.insert(tenant);
                                inner.call(Request::from_parts(parts, body)).await
                            }
                            Err(problem) => Ok(problem.into_response()),
                        }
                    }
                    .instrument(span),
                ))
            }
        }
    }
}
