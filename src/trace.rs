//! Tracing: the span each layer opens for a request, and the [`RequestId`] that ties a
//! request's spans together.
//!
//! Every layer opens one `INFO` span per request on its module's target (so
//! `RUST_LOG=tenant_guard=info` selects them all) and records what it decided:
//!
//! | span | fields |
//! |------|--------|
//! | `tenant_guard.tenant` | `request_id`, `tenant` (once served: never a name a client made up), `outcome` (`ok`, `missing`, `invalid`, `unknown`) |
//! | `tenant_guard.session` | `cookie` (`none`, `valid`, `invalid`, `other-tenant`), `saved` (`kept`, `set`, `removed`, `failed`, `skipped`) |
//! | `tenant_guard.rate_limit` | `decision` (`allowed`, `denied`, `exempt`, `deny-list`), `source`, `rule`, `remaining` |
//! | `tenant_guard.token_budget` | `tokens` (the estimate), `outcome` (`reserved`, `refused`, `rejected`, `exempt`); routes with a budget only |
//! | `tenant_guard.concurrency` | `outcome` (`admitted`, `refused`, `exempt`); when a cap is configured only |
//! | `tenant_guard.cache` | `category`, `status` (`hit-l1`, `hit-l2`, `stale`, `miss`, `coalesced`, `bypass`, `error`) |
//!
//! `rule` is the rule that refused the request (or, when it was allowed, the one with the
//! fewest units left). No field ever holds a value a client sent unchecked: the tenant is
//! recorded once validated, and no user id, cookie or path is recorded at all.
//!
//! The outermost of these layers that a request meets records its `request_id`: the
//! request's `x-request-id` header when there is exactly one and it is a plausible id (1 to
//! [`MAX_REQUEST_ID`] bytes of letters, digits, `-`, `_`, `.`, `:`; what tower-http's
//! `SetRequestIdLayer` or a load balancer sets), otherwise one it makes up and writes to that
//! header (replacing what was there), so the handler and the layers inside log the same
//! id. The id is also in the request's extensions ([`RequestId`]). When no subscriber wants
//! these spans, no id is made and the header is left as it came. An id is for following a
//! request in the logs, never for deciding anything: a client that reaches the service
//! without a proxy that sets its own may choose it (and name another's request). A cache
//! never stores `x-request-id` with an answer.
//!
//! ```
//! use http::HeaderValue;
//! use tenant_guard::trace::RequestId;
//!
//! let id = RequestId::parse(&HeaderValue::from_static("req-42")).unwrap();
//! assert_eq!(id.as_str(), "req-42");
//! assert!(RequestId::parse(&HeaderValue::from_static("a b")).is_none());
//! assert_eq!(RequestId::generate().as_str().len(), 16);
//! ```

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::HeaderName;
use http::request::Parts;
use http::{Extensions, HeaderMap, HeaderValue, Request};
use tracing::Span;

/// The request header that carries a request's id.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{body::Body, routing::get, Router};
/// use tower::ServiceExt;
/// use tenant_guard::tenant::{TenantLayer, TenantResolver};
/// use tenant_guard::trace::REQUEST_ID_HEADER;
///
/// // With a subscriber listening, the layers keep a plausible id the request came with.
/// let _listening = tracing::subscriber::set_default(tracing_subscriber::registry());
/// let app: Router = Router::new()
///     .route("/", get(|req: http::Request<Body>| async move { req.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_string() }))
///     .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
/// let req = http::Request::get("/").header("x-tenant-id", "acme").header(REQUEST_ID_HEADER, "lb-7f3c").body(Body::empty())?;
/// let body = axum::body::to_bytes(app.oneshot(req).await?.into_body(), 1024).await?;
/// assert_eq!(&body[..], b"lb-7f3c");
/// # Ok(()) }
/// ```
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `x-request-id` taken as the request's id (longer ones are replaced).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{body::Body, routing::get, Router};
/// use tower::ServiceExt;
/// use tenant_guard::tenant::{TenantLayer, TenantResolver};
/// use tenant_guard::trace::{MAX_REQUEST_ID, REQUEST_ID_HEADER};
///
/// let _listening = tracing::subscriber::set_default(tracing_subscriber::registry());
/// let app: Router = Router::new()
///     .route("/", get(|req: http::Request<Body>| async move { req.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_string() }))
///     .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
/// // One byte too long: replaced by an id of the layer's own.
/// let long = "a".repeat(MAX_REQUEST_ID + 1);
/// let req = http::Request::get("/").header("x-tenant-id", "acme").header(REQUEST_ID_HEADER, long.as_str()).body(Body::empty())?;
/// let body = axum::body::to_bytes(app.oneshot(req).await?.into_body(), 1024).await?;
/// assert_eq!(body.len(), 16);
/// # Ok(()) }
/// ```
pub const MAX_REQUEST_ID: usize = 128;

/// A request's id (see the [module docs](self)); in the request's extensions once a layer
/// recorded it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{body::Body, routing::get, Extension, Router};
/// use tower::ServiceExt;
/// use tenant_guard::tenant::{TenantLayer, TenantResolver};
/// use tenant_guard::trace::RequestId;
///
/// // A handler logs with the id the layers' spans carry.
/// let _listening = tracing::subscriber::set_default(tracing_subscriber::registry());
/// let app: Router = Router::new()
///     .route("/", get(|Extension(id): Extension<RequestId>| async move { id.to_string() }))
///     .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
/// let req = http::Request::get("/").header("x-tenant-id", "acme").header("x-request-id", "req-42").body(Body::empty())?;
/// let body = axum::body::to_bytes(app.oneshot(req).await?.into_body(), 1024).await?;
/// assert_eq!(&body[..], b"req-42");
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// `value` as a request id, if it is 1 to [`MAX_REQUEST_ID`] bytes of ASCII letters,
    /// digits, `-`, `_`, `.` or `:`.
    ///
    /// ```
    /// use http::HeaderValue;
    /// use tenant_guard::trace::RequestId;
    /// assert!(RequestId::parse(&HeaderValue::from_static("7f3c:1")).is_some());
    /// assert!(RequestId::parse(&HeaderValue::from_static("")).is_none());
    /// let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
    /// assert!(RequestId::parse(&long).is_none());
    /// ```
    pub fn parse(value: &HeaderValue) -> Option<Self> {
        let b = value.as_bytes();
        let plausible = (1..=MAX_REQUEST_ID).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'));
        plausible.then(|| Self(value.clone()))
    }

    /// A new id: 16 hex digits, a keyed hash (SipHash, with a key drawn at random once per
    /// process) of a counter — distinct in practice, and one id tells nothing of the next.
    ///
    /// ```
    /// use tenant_guard::trace::RequestId;
    /// assert_ne!(RequestId::generate(), RequestId::generate());
    /// ```
    pub fn generate() -> Self {
        use std::hash::BuildHasher;
        static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = KEY
            .get_or_init(std::collections::hash_map::RandomState::new)
            .hash_one(NEXT.fetch_add(1, Ordering::Relaxed));
        let mut hex = [0u8; 16];
        for (i, h) in hex.iter_mut().enumerate() {
            *h = b"0123456789abcdef"[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        Self(HeaderValue::from_bytes(&hex).expect("hex digits are a valid header value"))
    }

    /// The id as text.
    ///
    /// ```
    /// use tenant_guard::trace::RequestId;
    /// assert!(RequestId::generate().as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    /// ```
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever accepted or generated.
        self.0.to_str().unwrap_or_default()
    }
}

/// Whether a subscriber records `span`. A span is enabled, yet goes to no one, on a thread
/// without a subscriber while another thread has one of its own (`set_default`): that
/// thread's no-op dispatcher is asked last.
fn listened(span: &Span) -> bool {
    !span.is_disabled()
        && !tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

/// Records the request's id on `span` if this layer is the first of the crate's to see the
/// request (no [`RequestId`] in its extensions yet): the plausible `x-request-id` it came
/// with (exactly one such header), else a new one written to that header, replacing
/// whatever was there. Nothing when no subscriber listens.
fn record(headers: &mut HeaderMap, extensions: &mut Extensions, span: &Span) {
    if !listened(span) || extensions.get::<RequestId>().is_some() {
        return;
    }
    let mut sent = headers.get_all(&REQUEST_ID_HEADER).iter();
    // Two ids (a client's, then a proxy's appended) name no one request: neither is taken.
    let adopted = match (sent.next(), sent.next()) {
        (Some(v), None) => RequestId::parse(v),
        _ => None,
    };
    let id = match adopted {
        Some(id) => id,
        None => {
            let id = RequestId::generate();
            headers.insert(REQUEST_ID_HEADER, id.0.clone());
            id
        }
    };
    span.record("request_id", id.as_str());
    extensions.insert(id);
}

/// [`record`] for a request in parts.
pub(crate) fn record_request_id_parts(parts: &mut Parts, span: &Span) {
    record(&mut parts.headers, &mut parts.extensions, span);
}

/// [`record`] for a whole request.
pub(crate) fn record_request_id<B>(req: &mut Request<B>, span: &Span) {
    if !listened(span) {
        return;
    }
    let mut extensions = std::mem::take(req.extensions_mut());
    record(req.headers_mut(), &mut extensions, span);
    *req.extensions_mut() = extensions;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct_and_plausible() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = RequestId::generate();
            assert!(RequestId::parse(&id.0).is_some());
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn hostile_ids_are_not_taken() {
        for bad in ["", "a b", "a\"b", "<script>", "a/b", "ä"] {
            if let Ok(v) = HeaderValue::from_str(bad) {
                assert!(RequestId::parse(&v).is_none(), "{bad:?}");
            }
        }
        let long = HeaderValue::from_str(&"x".repeat(MAX_REQUEST_ID + 1)).unwrap();
        assert!(RequestId::parse(&long).is_none());
        let max = HeaderValue::from_str(&"x".repeat(MAX_REQUEST_ID)).unwrap();
        assert!(RequestId::parse(&max).is_some());
    }

    #[test]
    fn a_disabled_span_leaves_the_request_alone() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        record_request_id_parts(&mut parts, &Span::none());
        assert!(parts.headers.is_empty());
        assert!(parts.extensions.get::<RequestId>().is_none());
    }
}
