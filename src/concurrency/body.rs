//! [`ConcurrencyBody`]: the response body that holds its request's lease until the body has
//! been sent to its end, failed, or been dropped (a client that went away). At the end the
//! lease is given back *before* the last frame goes out: a client that sends its next
//! request once this response is complete finds its place free.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::HttpBody;
use http_body::{Frame, SizeHint};

use super::Lease;
use super::limiter::ReleaseFuture;

pin_project_lite::pin_project! {
    /// A response body holding the request's [`Lease`] while it is sent.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::body::Body;
    /// use http_body_util::BodyExt;
    /// use tower::{Layer, ServiceExt};
    /// use tenant_guard::{concurrency::{ConcurrencyBody, ConcurrencyLayer}, tenant::TenantId};
    ///
    /// let guard = tenant_guard::TenantGuard::from_vars([
    ///     ("REDIS_ENABLED", "false"), ("RATE_LIMIT_CONCURRENCY_TENANT", "1"),
    /// ])?;
    /// let svc = ConcurrencyLayer::new(guard.concurrency().clone()).layer(tower::service_fn(
    ///     |_req: http::Request<Body>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("answer")))
    ///     },
    /// ));
    /// let ask = || {
    ///     let mut req = http::Request::new(Body::empty());
    ///     req.extensions_mut().insert(TenantId::new("acme").unwrap());
    ///     req
    /// };
    /// let first: http::Response<ConcurrencyBody<Body>> = svc.clone().oneshot(ask()).await?;
    /// // Its body not sent yet: the tenant's one place is taken.
    /// assert_eq!(svc.clone().oneshot(ask()).await?.status(), 429);
    /// assert_eq!(first.into_body().collect().await?.to_bytes(), "answer"); // sent: place free
    /// assert_eq!(svc.clone().oneshot(ask()).await?.status(), 200);
    /// # Ok(()) }
    /// ```
    pub struct ConcurrencyBody<B: HttpBody> {
        #[pin]
        inner: B,
        lease: Option<Lease>,
        // The release under way, and the frame (or end) it holds back.
        releasing: Option<ReleaseFuture>,
        last: Option<Option<Result<Frame<B::Data>, B::Error>>>,
    }

    impl<B: HttpBody> PinnedDrop for ConcurrencyBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped while giving the lease back (the client went away meanwhile): the
            // release finishes on its own.
            if let Some(release) = this.project().releasing.take() {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(release);
                }
            }
        }
    }
}

impl<B: HttpBody> ConcurrencyBody<B> {
    pub(super) fn new(inner: B, lease: Option<Lease>) -> Self {
        Self {
            inner,
            lease,
            releasing: None,
            last: None,
        }
    }
}

/// A body of its own (a problem an outer layer answers with): no lease to give back.
impl<B: HttpBody + From<String>> From<String> for ConcurrencyBody<B> {
    fn from(s: String) -> Self {
        Self::new(B::from(s), None)
    }
}

impl<B: HttpBody + std::fmt::Debug> std::fmt::Debug for ConcurrencyBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyBody")
            .field("inner", &self.inner)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl<B: HttpBody> HttpBody for ConcurrencyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        loop {
            if let Some(release) = this.releasing.as_mut() {
                ready!(release.as_mut().poll(cx));
                *this.releasing = None;
                return Poll::Ready(this.last.take().flatten());
            }
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            // The end, a failure, or the last frame: the request is over.
            let over = !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream();
            if over {
                if let Some(release) = this.lease.take().and_then(Lease::finish) {
                    *this.releasing = Some(release);
                    *this.last = Some(frame);
                    continue;
                }
            }
            return Poll::Ready(frame);
        }
    }

    fn is_end_stream(&self) -> bool {
        // While a lease is held the body is polled to its end (even an empty one), so that
        // the lease is given back before the response counts as complete.
        self.lease.is_none()
            && self.releasing.is_none()
            && self.last.is_none()
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
