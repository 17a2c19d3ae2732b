//! Streamed misses: [`TeeBody`], the leader's response body, passes each chunk on as it
//! arrives and records it; [`replay`] is the body of a caller who asked for the same key
//! meanwhile, reading the recording live. A complete stream is stored before its end goes
//! out (a client that asks again once it has the whole answer finds it cached); a failed,
//! dropped or oversized one never is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::{Body, HttpBody};
use axum::BoxError;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::recording::{End, Next, Recording};

type Finishing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Whether a response is an event stream (`text/event-stream`): those stream through the
/// cache on a miss instead of being read whole first.
pub(super) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}

pin_project_lite::pin_project! {
    /// The leader's body on a streamed miss: each chunk goes out as it arrives and into
    /// the [`Recording`].
    pub(super) struct TeeBody {
        #[pin]
        inner: Body,
        rec: Arc<Recording>,
        // The store under way, and the frame (or end) it holds back.
        finishing: Option<Finishing>,
        last: Option<Option<Result<Frame<Bytes>, axum::Error>>>,
        done: bool,
    }

    impl PinnedDrop for TeeBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let task = match this.finishing.take() {
                Some(running) => Some(running),
                None if !*this.done => {
                    // Dropped before its end (the client went away): never stored.
                    this.rec.end(End::Failed);
                    this.rec.take_finish().map(|f| f(None))
                }
                None => None,
            };
            if let (Some(task), Ok(rt)) = (task, tokio::runtime::Handle::try_current()) {
                rt.spawn(task);
            }
        }
    }
}

impl TeeBody {
    pub(super) fn new(inner: Body, rec: Arc<Recording>) -> Self {
        Self {
            inner,
            rec,
            finishing: None,
            last: None,
            done: false,
        }
    }
}

impl HttpBody for TeeBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        loop {
            if let Some(f) = this.finishing.as_mut() {
                ready!(f.as_mut().poll(cx));
                *this.finishing = None;
                return Poll::Ready(this.last.take().flatten());
            }
            if *this.done {
                return Poll::Ready(this.last.take().flatten());
            }
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            if let Some(Ok(f)) = &frame {
                if let Some(data) = f.data_ref() {
                    this.rec.push(data);
                }
            }
            let over = !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream();
            if !over {
                return Poll::Ready(frame);
            }
            *this.done = true;
            this.rec.end(if matches!(frame, Some(Err(_))) {
                End::Failed
            } else {
                End::Complete
            });
            let entry = this.rec.entry();
            *this.last = Some(frame);
            if let Some(finish) = this.rec.take_finish() {
                *this.finishing = Some(finish(entry));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Polled to its end even when empty: the store runs before the end goes out.
        self.done && self.finishing.is_none() && self.last.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body of a caller who joined a streamed miss: the recording from its start, then
/// live, to its end. A recording that fails (or outgrows the cap) ends this body with an
/// error: the answer it was part of is incomplete.
pub(super) fn replay(rec: Arc<Recording>) -> Body {
    let rx = rec.subscribe();
    let chunks = futures_util::stream::unfold(Some((rec, rx, 0usize)), |state| async move {
        let (rec, mut rx, i) = state?;
        loop {
            rx.borrow_and_update();
            match rec.next(i) {
                Next::Chunk(c) => return Some((Ok(c), Some((rec, rx, i + 1)))),
                Next::Ended(End::Complete) => return None,
                Next::Ended(end) => {
                    let e: BoxError =
                        format!("the streamed answer did not complete ({end:?})").into();
                    return Some((Err(e), None));
                }
                Next::Wait => {
                    // The sender lives in `rec`, which we hold: this only wakes on a tick.
                    let _ = rx.changed().await;
                }
            }
        }
    });
    Body::from_stream(chunks)
}
