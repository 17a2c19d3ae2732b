//! [`TokenService`]: reads the request body (bounded), reserves its estimated tokens,
//! answers 429 when a budget has no room, and hands the reservation to the response body.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use tower_service::Service;
use tracing::Instrument;
use tracing::field::Empty;

use super::body::Settlement;
use super::{CacheHits, TokenBody, TokenBudget, UsageScan};
use crate::future::{MapBody, ResponseFuture};
use crate::problem::Problem;
use crate::ratelimit::{Decision, GLOBAL_TENANT, Source, UNMATCHED_ROUTE};
use crate::tenant::TenantId;

/// The response header a handler sets to report the tokens a request used
/// (`X-Usage-Tokens: 1234`); it wins over the body's `usage`.
///
/// ```
/// assert_eq!(tenant_guard::tokens::USAGE_HEADER, "x-usage-tokens");
/// ```
pub const USAGE_HEADER: &str = "x-usage-tokens";

/// Estimates a request's tokens from its head and body.
///
/// ```
/// use std::sync::Arc;
/// let by_length: tenant_guard::tokens::EstimateFn = Arc::new(|_head, body| (body.len() / 4) as u32);
/// let head = http::Request::new(()).into_parts().0;
/// assert_eq!(by_length(&head, b"12345678"), 2);
/// ```
pub type EstimateFn = Arc<dyn Fn(&http::request::Parts, &[u8]) -> u32 + Send + Sync>;

/// The service made by [`TokenLayer`](super::TokenLayer).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::Layer;
/// # let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("SESSION_SECRET", "0123456789abcdef0123456789abcdef")])?;
/// let inner = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
/// });
/// let svc: tenant_guard::tokens::TokenService<_> = tenant_guard::tokens::TokenLayer::new(guard.tokens().clone()).layer(inner);
/// let _inner = svc.get_ref(); // get_mut, into_inner: as tower's middleware
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenService<S> {
    pub(super) inner: S,
    pub(super) budget: TokenBudget,
    pub(super) estimate: Option<EstimateFn>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for TokenService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("inner", &self.inner)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

crate::macros::inner_service_accessors!(
    TokenService,
    "tenant_guard::tokens::TokenLayer::new(guard.tokens().clone())"
);

/// The body, read whole up to `limit` bytes; else the response to send instead.
async fn read_body<B: From<String>>(body: Body, limit: usize) -> Result<Bytes, Response<B>> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(
                Problem::new(StatusCode::BAD_REQUEST, "Unreadable request body")
                    .detail("the request body could not be read to its end")
                    .into_response(),
            );
        };
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn too_large<B: From<String>>(limit: usize) -> Response<B> {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
        .detail(format!(
            "token budgets read at most {limit} bytes of a request body to estimate its tokens"
        ))
        .with("max_body_bytes", limit)
        .into_response()
}

/// The scanner of a 2xx body whose usage is to be read: JSON (where text the client
/// influenced sits in strings, its quotes escaped) and server-sent events (whose JSON
/// events are the same). A `text/plain` or HTML answer may echo a client's own text, and an
/// error's body the request: those are settled from the header, at the estimate, or (an
/// error) at nothing.
fn scanner(res: &http::response::Parts) -> Option<UsageScan> {
    if !res.status.is_success() {
        return None;
    }
    let ct = res
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())?;
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        Some(UsageScan::for_json())
    } else if mime == "text/event-stream" {
        Some(UsageScan::for_events())
    } else {
        None
    }
}

/// Whether the [`CacheLayer`](crate::cache::CacheLayer) inside answered without running the
/// handler: a hit, a stale entry, or a wait for a concurrent request's answer. Read from
/// the status it attaches to the response, never from an `X-Cache` header (an upstream's
/// own cache, or the handler, may send one).
fn cache_answered(res: &http::response::Parts) -> bool {
    use crate::cache::CacheStatus as C;
    matches!(
        res.extensions.get::<C>(),
        Some(C::HitL1 | C::HitL2 | C::Stale | C::Coalesced)
    )
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TokenService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: HttpBody<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<axum::BoxError>,
    ResBody: HttpBody<Data = Bytes> + From<String> + Send + 'static,
{
    type Response = Response<TokenBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<
        S::Future,
        TokenBody<ResBody>,
        S::Error,
        MapBody<ResBody, TokenBody<ResBody>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let req = req.map(Body::new);
        let applies = {
            let route = req
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map_or(UNMATCHED_ROUTE, |m| m.as_str());
            self.budget.applies(req.method(), route)
        };
        if !applies {
            // No budget for this route: the inner call alone, unboxed.
            return ResponseFuture::inner(
                self.inner.call(req),
                MapBody(|b| TokenBody::new(b, None)),
            );
        }
        let mut inner = crate::future::take_ready(&mut self.inner);
        let budget = self.budget.clone();
        let estimate = self.estimate.clone();
        let span = tracing::info_span!(
            "tenant_guard.token_budget",
            request_id = Empty,
            tokens = Empty,
            outcome = Empty,
        );
        let mut req = req;
        crate::trace::record_request_id(&mut req, &span);
        let here = span.clone();
        let fut = async move {
            let plain = |b: ResBody| TokenBody::new(b, None);
            let route = req
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map_or(UNMATCHED_ROUTE, |m| m.as_str())
                .to_owned();
            // An identity exempt from limits (`RATE_LIMIT_EXEMPT`) reserves nothing.
            let exempt = req
                .extensions()
                .get::<Decision>()
                .is_some_and(|d| d.source == Source::Exempt);
            if exempt {
                here.record("outcome", "exempt");
                return Ok(inner.call(req).await?.map(plain));
            }
            let tenant = req
                .extensions()
                .get::<TenantId>()
                .cloned()
                .unwrap_or_else(|| {
                    TenantId::new(GLOBAL_TENANT).expect("the global tenant is valid")
                });
            let who = crate::tenant::request_identity(&req);
            let config = budget.config();
            let (parts, body) = req.into_parts();
            // A compressed body cannot be estimated from its bytes.
            let encoded = parts
                .headers
                .get(http::header::CONTENT_ENCODING)
                .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
            if encoded {
                let p = Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Compressed request body")
                    .detail("requests to token-budgeted routes are estimated from their bytes: send them uncompressed");
                here.record("outcome", "rejected");
                return Ok(p.into_response().map(plain));
            }
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > config.max_body as u64) {
                here.record("outcome", "rejected");
                return Ok(too_large(config.max_body).map(plain));
            }
            let bytes = match read_body(body, config.max_body).await {
                Ok(b) => b,
                Err(res) => {
                    here.record("outcome", "rejected");
                    return Ok(res.map(plain));
                }
            };
            let tokens = match &estimate {
                Some(f) => f(&parts, &bytes),
                None => match super::estimate(&bytes, config.default_max_tokens) {
                    Ok(n) => n,
                    Err(e) => {
                        let p = Problem::new(StatusCode::BAD_REQUEST, "Unreadable token limit")
                            .detail(format!(
                                "{e}: the token budget cannot tell what this request may use"
                            ));
                        here.record("outcome", "rejected");
                        return Ok(p.into_response().map(plain));
                    }
                },
            };
            here.record("tokens", tokens);
            let mut reservation = match budget
                .reserve(&tenant, &who, &parts.method, &route, tokens)
                .await
            {
                Ok(r) => {
                    here.record("outcome", "reserved");
                    r
                }
                Err(d) => {
                    here.record("outcome", "refused");
                    let res: Response<ResBody> = crate::ratelimit::headers::denied(&d, false);
                    return Ok(res.map(plain));
                }
            };
            let free_hits = config.cache_hits == CacheHits::Free;
            let decision = reservation.decision().clone();
            // From here on the upstream works: a client that goes away before the answer's
            // first byte still pays the estimate.
            reservation.keep_if_dropped();
            let res = inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await?;
            let (mut head, body) = res.into_parts();
            crate::ratelimit::headers::append(&mut head.headers, &decision);
            let reported = head
                .headers
                .get(USAGE_HEADER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
            let settlement = Settlement {
                reservation,
                reported,
                success: head.status.is_success(),
                free: free_hits && cache_answered(&head),
                scan: scanner(&head),
                sent: false,
            };
            Ok(Response::from_parts(
                head,
                TokenBody::new(body, Some(settlement)),
            ))
        };
        ResponseFuture::boxed(Box::pin(fut.instrument(span)))
    }
}
