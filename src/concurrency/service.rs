//! [`ConcurrencyService`]: takes a lease per request, answers 429 (or 503) when a cap is
//! full, and hands the lease to the response body.

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode};
use tower_service::Service;
use tracing::Instrument;
use tracing::field::Empty;

use super::{ConcurrencyBody, ConcurrencyDenied, ConcurrencyLimiter};
use crate::future::{MapBody, ResponseFuture};
use crate::problem::Problem;
use crate::ratelimit::{Decision, GLOBAL_TENANT, Source};
use crate::tenant::TenantId;

/// The service made by [`ConcurrencyLayer`](super::ConcurrencyLayer).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::Layer;
/// # let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("SESSION_SECRET", "0123456789abcdef0123456789abcdef")])?;
/// let inner = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
/// });
/// let svc: tenant_guard::concurrency::ConcurrencyService<_> = tenant_guard::concurrency::ConcurrencyLayer::new(guard.concurrency().clone()).layer(inner);
/// let _inner = svc.get_ref(); // get_mut, into_inner: as tower's middleware
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConcurrencyService<S> {
    pub(super) inner: S,
    pub(super) limiter: ConcurrencyLimiter,
}

crate::macros::inner_service_accessors!(
    ConcurrencyService,
    "tenant_guard::concurrency::ConcurrencyLayer::new(guard.concurrency().clone())"
);

fn refused<B: From<String>>(d: &ConcurrencyDenied) -> Response<B> {
    let secs = d.retry_after.as_secs().max(1);
    let mut res: Response<B> = if d.unavailable {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Concurrency limiter unavailable",
        )
        .detail("the lease store is unreachable and the outage mode is `closed`; try again shortly")
        .into_response()
    } else {
        let on = d
            .endpoint
            .as_deref()
            .map_or_else(String::new, |e| format!(" to `{e}`"));
        let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
            .detail(format!(
                "rule `concurrency` allows {} requests in flight{on} per {}; retry in {secs} s",
                d.limit, d.scope
            ))
            .with("rule", "concurrency")
            .with("scope", d.scope)
            .with("limit", d.limit);
        if let Some(e) = &d.endpoint {
            p = p.with("endpoint", e.clone());
        }
        p.into_response()
    };
    res.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ConcurrencyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: axum::body::HttpBody + From<String> + Send + 'static,
{
    type Response = Response<ConcurrencyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<
        S::Future,
        ConcurrencyBody<ResBody>,
        S::Error,
        MapBody<ResBody, ConcurrencyBody<ResBody>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if self.limiter.config().is_empty() {
            // No cap configured: the inner call alone, unboxed.
            let plain = MapBody(|b| ConcurrencyBody::new(b, None));
            return ResponseFuture::inner(self.inner.call(req), plain);
        }
        let mut inner = crate::future::take_ready(&mut self.inner);
        let limiter = self.limiter.clone();
        let span = tracing::info_span!(
            "tenant_guard.concurrency",
            request_id = Empty,
            outcome = Empty
        );
        let mut req = req;
        crate::trace::record_request_id(&mut req, &span);
        let here = span.clone();
        let fut = async move {
            let tenant = req
                .extensions()
                .get::<TenantId>()
                .cloned()
                .unwrap_or_else(|| {
                    TenantId::new(GLOBAL_TENANT).expect("the global tenant is valid")
                });
            // An identity exempt from limits (`RATE_LIMIT_EXEMPT`) takes no lease.
            let exempt = req
                .extensions()
                .get::<Decision>()
                .is_some_and(|d| d.source == Source::Exempt);
            if exempt {
                here.record("outcome", "exempt");
                let res = inner.call(req).await?;
                return Ok(res.map(|b| ConcurrencyBody::new(b, None)));
            }
            let who = crate::tenant::request_identity(&req);
            let route = req
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map_or(crate::ratelimit::UNMATCHED_ROUTE, |m| m.as_str());
            let acquired = limiter
                .acquire_for(&tenant, &who, req.method(), route)
                .await;
            let lease = match acquired {
                Ok(lease) => {
                    here.record("outcome", "admitted");
                    lease
                }
                Err(d) => {
                    here.record("outcome", "refused");
                    return Ok(refused::<ResBody>(&d).map(|b| ConcurrencyBody::new(b, None)));
                }
            };
            let res = inner.call(req).await?;
            Ok(res.map(|b| ConcurrencyBody::new(b, Some(lease))))
        };
        ResponseFuture::boxed(Box::pin(fut.instrument(span)))
    }
}
