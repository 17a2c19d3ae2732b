//! [`TokenBody`]: the response body that settles its request's token reservation once it
//! has been sent to its end (with the usage the response reported), failed, or been
//! dropped (a client that went away: refunded only if none of the answer had gone out). As with concurrency leases, the settlement runs
//! *before* the last frame goes out: a client that sends its next request once this
//! response is complete finds the refunded tokens there.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::HttpBody;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::{Reservation, UsageScan};

/// How a response's usage is learnt, and the reservation it settles.
#[derive(Debug)]
pub(super) struct Settlement {
    pub(super) reservation: Reservation,
    /// The handler's `X-Usage-Tokens` header, if it set one.
    pub(super) reported: Option<u64>,
    /// A 2xx response.
    pub(super) success: bool,
    /// A cache hit that costs nothing (`RATE_LIMIT_TOKENS_CACHE_HITS=free`).
    pub(super) free: bool,
    /// The body's `usage.total_tokens` (JSON and event-stream 2xx bodies only).
    pub(super) scan: Option<UsageScan>,
    /// Some of the body has gone out to the client.
    pub(super) sent: bool,
}

impl Settlement {
    /// Tokens used (at most `u32::MAX`): nothing for a cache hit that is free; else the
    /// handler's header; else, for a body cut short (it failed, or its client went away),
    /// the reservation if any of the answer went out (the model worked: leaving before the
    /// usage event is no way to get an answer for free) and nothing if none did; else
    /// nothing for an error status (its body is not read: it may echo the request); else
    /// the body's `usage.total_tokens`, or the reservation if it reports none.
    fn used(&self, complete: bool) -> u64 {
        let reserved = u64::from(self.reservation.reserved());
        let used = if self.free {
            0
        } else if let Some(n) = self.reported {
            n
        } else if !complete {
            if self.sent { reserved } else { 0 }
        } else if !self.success {
            0
        } else {
            self.scan
                .as_ref()
                .and_then(UsageScan::finish)
                .unwrap_or(reserved)
        };
        used.min(u64::from(u32::MAX))
    }

    fn finish(self, complete: bool) -> impl Future<Output = ()> + Send + 'static {
        let used = self.used(complete);
        let settle = self.reservation.settle_later(used);
        async move {
            // A failure is counted and logged where it happens.
            let _ = settle.await;
        }
    }
}

type Settling = Pin<Box<dyn Future<Output = ()> + Send>>;

pin_project_lite::pin_project! {
    /// A response body that settles the request's token [`Reservation`] when it ends.
    ///
    /// Until then the whole estimate stays reserved; at the end only what was used counts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, routing::post, Router};
    /// use http_body_util::BodyExt;
    /// use tower::ServiceExt;
    /// use tenant_guard::{tenant::TenantId, tokens::TokenLayer};
    ///
    /// let guard = tenant_guard::TenantGuard::from_vars([
    ///     ("REDIS_ENABLED", "false"), ("RATE_LIMIT_TOKENS", "tenant: POST /v1/chat = 1000/1m"),
    /// ])?;
    /// // Every request is estimated at 800 tokens; the model reports 120 used.
    /// let app = Router::new()
    ///     .route("/v1/chat", post(|| async { ([("x-usage-tokens", "120")], "answer") }))
    ///     .route_layer(TokenLayer::new(guard.tokens().clone()).estimate_with(|_, _| 800));
    /// let ask = || {
    ///     let mut req = http::Request::post("/v1/chat").body(Body::empty()).unwrap();
    ///     req.extensions_mut().insert(TenantId::new("acme").unwrap());
    ///     req
    /// };
    /// // (the router boxes the `TokenBody` into its own `Body`)
    /// let first = app.clone().oneshot(ask()).await?;
    /// assert_eq!(app.clone().oneshot(ask()).await?.status(), 429); // 800 of 1000 held
    /// first.into_body().collect().await?; // the end: settled at 120
    /// assert_eq!(app.clone().oneshot(ask()).await?.status(), 200);
    /// # Ok(()) }
    /// ```
    pub struct TokenBody<B: HttpBody> {
        #[pin]
        inner: B,
        settlement: Option<Box<Settlement>>,
        // The settlement under way, and the frame (or end) it holds back.
        settling: Option<Settling>,
        last: Option<Option<Result<Frame<B::Data>, B::Error>>>,
    }

    impl<B: HttpBody> PinnedDrop for TokenBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let task = match (this.settling.take(), this.settlement.take()) {
                (Some(running), _) => Some(running),
                // Dropped before the end: the client went away.
                (None, Some(s)) => Some(Box::pin(s.finish(false)) as Settling),
                (None, None) => None,
            };
            if let (Some(task), Ok(rt)) = (task, tokio::runtime::Handle::try_current()) {
                rt.spawn(task);
            }
        }
    }
}

impl<B: HttpBody> TokenBody<B> {
    pub(super) fn new(inner: B, settlement: Option<Settlement>) -> Self {
        Self {
            inner,
            settlement: settlement.map(Box::new),
            settling: None,
            last: None,
        }
    }
}

/// A body of its own (a problem an outer layer answers with): nothing to settle.
impl<B: HttpBody + From<String>> From<String> for TokenBody<B> {
    fn from(s: String) -> Self {
        Self::new(B::from(s), None)
    }
}

impl<B: HttpBody + std::fmt::Debug> std::fmt::Debug for TokenBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBody")
            .field("inner", &self.inner)
            .field("settlement", &self.settlement)
            .finish_non_exhaustive()
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for TokenBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        loop {
            if let Some(settling) = this.settling.as_mut() {
                ready!(settling.as_mut().poll(cx));
                *this.settling = None;
                return Poll::Ready(this.last.take().flatten());
            }
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            if let (Some(s), Some(Ok(f))) = (this.settlement.as_mut(), &frame) {
                if let Some(data) = f.data_ref().filter(|d| !d.is_empty()) {
                    s.sent = true;
                    if let Some(scan) = s.scan.as_mut() {
                        scan.feed(data);
                    }
                }
            }
            // The end, a failure, or the last frame: the response is over.
            let over = !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream();
            if over {
                if let Some(s) = this.settlement.take() {
                    let complete = !matches!(frame, Some(Err(_)));
                    *this.settling = Some(Box::pin(s.finish(complete)));
                    *this.last = Some(frame);
                    continue;
                }
            }
            return Poll::Ready(frame);
        }
    }

    fn is_end_stream(&self) -> bool {
        // While a reservation is pending the body is polled to its end (even an empty
        // one), so that it is settled before the response counts as complete.
        self.settlement.is_none()
            && self.settling.is_none()
            && self.last.is_none()
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
