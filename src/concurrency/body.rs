//! [`ConcurrencyBody`]: the response body that holds its request's lease until the body has
//! been sent to its end, failed, or been dropped (a client that went away).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::HttpBody;
use http_body::{Frame, SizeHint};

use super::Lease;

pin_project_lite::pin_project! {
    /// A response body holding the request's [`Lease`] while it is sent.
    pub struct ConcurrencyBody<B> {
        #[pin]
        inner: B,
        lease: Option<Lease>,
    }
}

impl<B> ConcurrencyBody<B> {
    pub(super) fn new(inner: B, lease: Option<Lease>) -> Self {
        Self { inner, lease }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ConcurrencyBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyBody")
            .field("inner", &self.inner)
            .field("lease", &self.lease)
            .finish()
    }
}

impl<B: HttpBody> HttpBody for ConcurrencyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // The end, or a failure: the request is over.
            this.lease.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
