//! [`CacheService`]: serves cached responses, and records and stores cacheable ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, HttpBody};
use axum::extract::MatchedPath;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use tower_service::Service;
use tracing::Instrument;

use super::entry::{Entry, now_ms};
use super::fill::{AnyBody, Fill};
use super::flight::SharedFailure;
use super::key::{HttpKeyInput, http_key};
use super::layer::{Kind, MAX_LEARNED_HEADERS, MAX_LEARNED_ROUTES, Settings};
use super::recording::Recording;
use super::stream::replay;
use super::{CacheScope, CacheStatus, Category, Served};
use crate::problem::Problem;
use crate::tenant::TenantId;

/// The service made by [`CacheLayer`](super::CacheLayer).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::{service_fn, Layer, ServiceExt};
/// use tenant_guard::{backend::Backend, cache::{Cache, CacheLayer}, config::Config, metrics::Metrics};
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
/// let metrics = Metrics::new();
/// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
/// // A plain tower service, no router.
/// let upstream = service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from("rows")))
/// });
/// let svc = CacheLayer::query(cache).layer(upstream);
/// let ask = || http::Request::get("/items").body(axum::body::Body::empty()).unwrap();
/// assert_eq!(svc.clone().oneshot(ask()).await?.headers()["x-cache"], "MISS");
/// assert_eq!(svc.clone().oneshot(ask()).await?.headers()["x-cache"], "HIT");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CacheService<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Settings>,
}

impl<S> std::fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService").finish_non_exhaustive()
    }
}

crate::macros::inner_service_accessors!(
    CacheService,
    "tenant_guard::cache::CacheLayer::query(guard.cache().clone())"
);

/// `Cache-Control` directives of a header, lowercased, as a comma list.
pub(super) fn directives(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            d.split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|d| !d.is_empty())
        .collect()
}

pub(super) fn with_status(
    mut res: Response<Body>,
    status: CacheStatus,
    age: Option<Duration>,
) -> Response<Body> {
    // The status itself too, for the layers outside (token budgets refund what the
    // cache answered): unlike the header, nothing upstream can forge it.
    res.extensions_mut().insert(status);
    let h = res.headers_mut();
    h.insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(status.header()),
    );
    if let Some(age) = age {
        h.insert(header::AGE, HeaderValue::from(age.as_secs()));
    }
    res
}

pub(super) fn from_entry(e: &Entry, status: CacheStatus) -> Response<Body> {
    let mut res = Response::new(Body::from(e.body.clone()));
    *res.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::OK);
    append_headers(&mut res, &e.headers);
    let age = matches!(
        status,
        CacheStatus::HitL1 | CacheStatus::HitL2 | CacheStatus::Stale
    )
    .then(|| Duration::from_millis(now_ms().saturating_sub(e.stored_ms)));
    with_status(res, status, age)
}

/// A caller who joined a streamed miss: the leader's head, and the recording replayed live.
fn from_recording(rec: Arc<Recording>) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::from_u16(rec.status).unwrap_or(StatusCode::OK);
    append_headers(&mut res, &rec.headers);
    *res.body_mut() = replay(rec);
    with_status(res, CacheStatus::Coalesced, None)
}

fn append_headers(res: &mut Response<Body>, headers: &[(String, String)]) {
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            res.headers_mut().append(k, v);
        }
    }
}

/// The headers stored with an entry (as text).
pub(super) fn kept_headers(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| stored_header(k))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Reads a body up to `limit` bytes; past it, gives back a body that replays what was read
/// followed by the rest.
pub(super) async fn buffer(body: Body, limit: usize) -> Result<Bytes, Body> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                buf.extend_from_slice(&c);
                if buf.len() > limit {
                    let head = futures_util::stream::once(async move {
                        Ok::<Bytes, axum::Error>(buf.freeze())
                    });
                    return Err(Body::from_stream(head.chain(stream)));
                }
            }
            Err(e) => {
                let head =
                    futures_util::stream::once(
                        async move { Ok::<Bytes, axum::Error>(buf.freeze()) },
                    );
                let err = futures_util::stream::once(async move { Err::<Bytes, _>(e) });
                return Err(Body::from_stream(head.chain(err)));
            }
        }
    }
    Ok(buf.freeze())
}

pub(super) fn content_length(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

// A panic elsewhere cannot leave a learned-header list half-written: use it either way.
pub(super) fn read_lock<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn write_lock<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Who an entry is for under `scope`: `None` shares it with the tenant. `user_header` is
/// the trusted gateway's (`RATE_LIMIT_USER_HEADER`).
pub(super) fn caller_scope(
    scope: CacheScope,
    parts: &Parts,
    user_header: Option<&HeaderName>,
) -> Option<Vec<u8>> {
    use sha2::{Digest, Sha256};
    if scope == CacheScope::Tenant {
        return None;
    }
    if let Some(user) = parts.extensions.get::<crate::tenant::UserId>() {
        let mut out = b"user:".to_vec();
        out.extend_from_slice(user.as_str().as_bytes());
        return Some(out);
    }
    let credential = |label: &[u8], secret: &[u8]| {
        let mut out = label.to_vec();
        out.extend_from_slice(&Sha256::digest(secret));
        Some(out)
    };
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
        return credential(b"auth:", auth.as_bytes());
    }
    // The gateway authenticated the caller and wrote the user here (the rate limiter counts
    // per this user): an answer for one user is not the tenant's.
    if let Some(user) = user_header.and_then(|h| parts.headers.get(h)) {
        return credential(b"gateway-user:", user.as_bytes());
    }
    if let Some(session) = parts.extensions.get::<crate::tenant::SessionCredential>() {
        // The session layer read the cookie: its session id is the credential (other
        // cookies are the browser's business).
        return match session.id() {
            Some(id) => credential(b"session:", id.as_bytes()),
            None if scope == CacheScope::User => Some(b"anonymous".to_vec()),
            None => None,
        };
    }
    let mut cookies = parts.headers.get_all(header::COOKIE).iter().peekable();
    if cookies.peek().is_some() {
        // Cookies of an auth scheme this crate does not know: each caller apart.
        let mut h = Sha256::new();
        for c in cookies {
            h.update(c.as_bytes());
            h.update(b"\n");
        }
        let mut out = b"cookie:".to_vec();
        out.extend_from_slice(&h.finalize());
        return Some(out);
    }
    (scope == CacheScope::User).then(|| b"anonymous".to_vec())
}

/// Whether the response's `Vary` names only headers the key already holds (`keyed`);
/// `Vary: *` never is. Headers it lacks are handed to `missing` (to be learned).
pub(super) fn vary_covered(
    headers: &http::HeaderMap,
    keyed: &[HeaderName],
    missing: impl FnOnce(Vec<HeaderName>),
) -> bool {
    let mut lacking = Vec::new();
    for value in headers.get_all(header::VARY) {
        let Ok(text) = value.to_str() else {
            return false;
        };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return false;
            }
            match HeaderName::try_from(name) {
                Ok(h) if keyed.contains(&h) => {}
                Ok(h) => lacking.push(h),
                Err(_) => return false,
            }
        }
    }
    if lacking.is_empty() {
        return true;
    }
    missing(lacking);
    false
}

pub(super) fn learn_vary(
    learned: &std::sync::RwLock<HashMap<String, Vec<HeaderName>>>,
    template: &str,
    headers: Vec<HeaderName>,
) {
    let mut map = write_lock(learned);
    if !map.contains_key(template) && map.len() >= MAX_LEARNED_ROUTES {
        return;
    }
    let list = map.entry(template.to_string()).or_default();
    for h in headers {
        if list.len() < MAX_LEARNED_HEADERS && !list.contains(&h) {
            list.push(h);
        }
    }
}

/// Headers that are not stored with an entry.
pub(super) fn stored_header(name: &HeaderName) -> bool {
    ![
        header::SET_COOKIE,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
        header::AGE,
        header::DATE,
    ]
    .contains(name)
        && name.as_str() != "x-cache"
        && name.as_str() != super::TAGS_HEADER
        // A handler that echoes the request id must not hand one client's id to the next.
        && *name != crate::trace::REQUEST_ID_HEADER
}

/// Any request body in (it is read into the key), any response body from the inner
/// service; out comes an axum [`Body`].
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: HttpBody<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let settings = self.shared.clone();
        let mut inner = AnyBody(crate::future::take_ready(&mut self.inner));
        let span = tracing::info_span!(
            "tenant_guard.cache",
            request_id = tracing::field::Empty,
            category = match &self.shared.kind {
                Kind::Fixed(c) => c.name(),
                Kind::Ai => "ai",
            },
            status = tracing::field::Empty,
        );
        let mut req = req;
        crate::trace::record_request_id(&mut req, &span);
        let req = req.map(Body::new);
        let fut = async move {
            let (parts, body) = req.into_parts();
            let req_cc = directives(&parts.headers);
            let read = !req_cc.iter().any(|d| d == "no-cache");
            let write = !req_cc.iter().any(|d| d == "no-store");
            let cache = &settings.cache;
            let cat_name = match &settings.kind {
                Kind::Fixed(c) => c.name().to_string(),
                Kind::Ai => "ai".to_string(),
            };
            let bypass = |res: Response<Body>| {
                cache.event(&cat_name, "bypass");
                with_status(res, CacheStatus::Bypass, None)
            };
            if !read && !write {
                let res = inner.call(Request::from_parts(parts, body)).await?;
                return Ok(bypass(res));
            }
            // The request body is part of the key: read it (bounded).
            if content_length(&parts.headers).is_some_and(|n| n > settings.max_body) {
                let res = inner.call(Request::from_parts(parts, body)).await?;
                return Ok(bypass(res));
            }
            let body = match buffer(body, settings.max_body).await {
                Ok(b) => b,
                Err(replay) => {
                    let res = inner.call(Request::from_parts(parts, replay)).await?;
                    return Ok(bypass(res));
                }
            };
            let tenant = parts
                .extensions
                .get::<TenantId>()
                .cloned()
                .unwrap_or_else(|| settings.global.clone());
            let template = parts
                .extensions
                .get::<MatchedPath>()
                .map_or("", MatchedPath::as_str)
                .to_string();
            let route = format!("{template} {}", parts.uri.path());
            let json = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("json"))
                || matches!(settings.kind, Kind::Ai);
            let mut vary_names: Vec<HeaderName> = settings.vary.clone();
            if let Some(learned) = read_lock(&settings.learned_vary).get(&template) {
                vary_names.extend(learned.iter().cloned());
            }
            vary_names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            vary_names.dedup();
            // Every value of a header, not only the first: the handler sees them all (one
            // comma list), so two requests whose first values agree are not one answer.
            // Values cannot hold `\n`, so the join is unambiguous.
            let vary_values: Vec<Vec<u8>> = vary_names
                .iter()
                .map(|h| {
                    let mut out = Vec::new();
                    for (i, v) in parts.headers.get_all(h).iter().enumerate() {
                        if i > 0 {
                            out.push(b'\n');
                        }
                        out.extend_from_slice(v.as_bytes());
                    }
                    out
                })
                .collect();
            let vary: Vec<(&str, &[u8])> = vary_names
                .iter()
                .zip(&vary_values)
                .map(|(h, v)| (h.as_str(), v.as_slice()))
                .collect();
            let caller = caller_scope(settings.scope, &parts, cache.user_header());
            let (hash, model) = http_key(&HttpKeyInput {
                method: parts.method.as_str(),
                route: &route,
                query: parts.uri.query(),
                vary,
                body: &body,
                json,
                excluded_fields: &settings.excluded_fields,
                caller: caller.as_deref(),
            });
            let category = match &settings.kind {
                Kind::Fixed(c) => c.clone(),
                Kind::Ai => Category::ai(model.unwrap_or_else(|| "unknown".into())),
            };
            let key = cache.key(&tenant, &category, hash);
            let ttl_default = cache.config().ttl_for(category.name());
            let fill = Fill {
                settings: settings.clone(),
                vary_names,
                template,
                ttl_default,
            };
            // A stale-while-revalidate refresh sends the request again, later.
            let again = (read && write && !cache.config().swr_for(category.name()).is_zero())
                .then(|| (parts.clone(), body.clone()));
            let mut slot = Some(Request::from_parts(parts, Body::from(body.clone())));
            let served = cache
                .serve(&key, read, write, || async {
                    let req = slot.take().expect("the request is sent once");
                    fill.run(&mut inner, req).await
                })
                .await;
            match served {
                Served::Cached(e, status) => Ok(from_entry(&e, status)),
                Served::Revalidate(e, start) => {
                    if let (true, Some((head, body))) = (start, again) {
                        let (cache, mut inner) = (cache.clone(), AnyBody(inner.0.clone()));
                        tokio::spawn(async move {
                            let mut head = head;
                            // The refresh is not the request that started it (which has
                            // ended): it logs under an id of its own, if any.
                            head.headers.remove(crate::trace::REQUEST_ID_HEADER);
                            head.extensions.remove::<crate::trace::RequestId>();
                            let req = Request::from_parts(head, Body::from(body));
                            fill.refresh(&cache, &key, &mut inner, req).await;
                        });
                    }
                    Ok(from_entry(&e, CacheStatus::Stale))
                }
                Served::Stream(rec) => Ok(from_recording(rec)),
                Served::Own(r) => r,
                Served::SharedError(SharedFailure::Response(e)) => {
                    Ok(from_entry(&e, CacheStatus::Miss))
                }
                // A get_or_compute caller led this key: say what failed.
                Served::SharedError(failure) => {
                    Ok(Problem::new(StatusCode::BAD_GATEWAY, "Upstream failed")
                        .detail(failure.message())
                        .into_response())
                }
                Served::Retry => {
                    // The concurrent leader's response was not shareable: send our own.
                    let req = slot.take().expect("not sent yet");
                    let res = inner.call(req).await?;
                    Ok(bypass(res))
                }
            }
        };
        Box::pin(
            async move {
                let res = fut.await;
                let status = match &res {
                    Ok(r) => r
                        .extensions()
                        .get::<CacheStatus>()
                        .map_or("error", |s| s.label()),
                    Err(_) => "error",
                };
                tracing::Span::current().record("status", status);
                res
            }
            .instrument(span),
        )
    }
}
