//! [`TokenService`]: reads the request body (bounded), reserves its estimated tokens,
//! answers 429 when a budget has no room, and hands the reservation to the response body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::body::Settlement;
use super::{CacheHits, TokenBody, TokenBudget, UsageScan};
use crate::problem::Problem;
use crate::ratelimit::{Decision, Source, GLOBAL_TENANT, UNMATCHED_ROUTE};
use crate::tenant::TenantId;

/// The response header a handler sets to report the tokens a request used
/// (`X-Usage-Tokens: 1234`); it wins over the body's `usage`.
pub const USAGE_HEADER: &str = "x-usage-tokens";

/// Estimates a request's tokens from its head and body.
pub type EstimateFn = Arc<dyn Fn(&http::request::Parts, &[u8]) -> u32 + Send + Sync>;

/// The service made by [`TokenLayer`](super::TokenLayer).
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

crate::macros::inner_service_accessors!(TokenService);

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

/// Whether the body's `"total_tokens"` is to be trusted: JSON (where text the client
/// influenced sits in strings, its quotes escaped) and server-sent events (whose JSON
/// events are the same). A `text/plain` or HTML answer may echo a client's own
/// `"total_tokens": 0`: it is settled from the header or at the estimate instead.
fn scannable(res: &http::response::Parts) -> bool {
    let Some(ct) = res
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || mime.ends_with("+json") || mime == "text/event-stream"
}

fn cache_hit(res: &http::response::Parts) -> bool {
    res.headers
        .get("x-cache")
        .is_some_and(|v| v == "HIT" || v == "STALE")
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
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let budget = self.budget.clone();
        let estimate = self.estimate.clone();
        let req = req.map(Body::new);
        Box::pin(async move {
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
            if exempt || !budget.applies(req.method(), &route) {
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
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > config.max_body as u64) {
                return Ok(too_large(config.max_body).map(plain));
            }
            let bytes = match read_body(body, config.max_body).await {
                Ok(b) => b,
                Err(res) => return Ok(res.map(plain)),
            };
            let tokens = match &estimate {
                Some(f) => f(&parts, &bytes),
                None => super::estimate(&bytes, config.default_max_tokens),
            };
            let reservation = match budget
                .reserve(&tenant, &who, &parts.method, &route, tokens)
                .await
            {
                Ok(r) => r,
                Err(d) => {
                    let res: Response<ResBody> = crate::ratelimit::headers::denied(&d, false);
                    return Ok(res.map(plain));
                }
            };
            let free_hits = config.cache_hits == CacheHits::Free;
            let decision = reservation.decision().clone();
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
                free: free_hits && cache_hit(&head),
                scan: scannable(&head).then(UsageScan::default),
                sent: false,
            };
            Ok(Response::from_parts(
                head,
                TokenBody::new(body, Some(settlement)),
            ))
        })
    }
}
