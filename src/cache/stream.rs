//! Streamed misses: [`lead`] makes the leader's response body — a task of its own (the
//! pump) reads the upstream into the recording as fast as it answers, and the leader reads
//! the recording like [`replay`], the body of a caller who asked for the same key
//! meanwhile: no client's pace holds another back. A complete stream is stored before its
//! end goes out (a client that asks again once it has the whole answer finds it cached); a
//! failed or oversized one never is, nor one that nobody reads to its end.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::BoxError;
use axum::body::{Body, HttpBody};
use bytes::Bytes;
use http_body::Frame;
use tokio::sync::{oneshot, watch};

use super::recording::{End, Next, Recording};

/// Whether a response is an event stream (`text/event-stream`): those stream through the
/// cache on a miss instead of being read whole first.
pub(super) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// What the pump hands the leader when the recording outgrew the cap: every chunk read so
/// far (the leader skips those it has sent) and the rest of the upstream body.
struct Handoff {
    chunks: Vec<Bytes>,
    rest: Body,
}

/// Starting the pump: what it takes, held by the leader's body until its first poll (by
/// then the engine has set what runs at the end).
struct Start {
    upstream: Body,
    handoff: oneshot::Sender<Handoff>,
    gone: oneshot::Receiver<()>,
}

/// The leader's body on a streamed miss: the recording, read like a caller who joined
/// reads it, fed by a task of its own (the pump, [`pump`]) as fast as the upstream answers
/// — whatever the pace of the leader's client, so a client that reads slowly (or not at
/// all) holds no one else back. Past the cap, the rest of the upstream comes straight to
/// the leader.
struct Lead {
    rec: Arc<Recording>,
    rx: watch::Receiver<()>,
    /// The next chunk of the recording to send.
    i: usize,
    start: Option<Start>,
    handoff: Option<oneshot::Receiver<Handoff>>,
    /// After an overflow: the recorded chunks not sent yet, then the upstream.
    direct: Option<(VecDeque<Bytes>, Body)>,
    done: bool,
    /// Dropped with this body: tells the pump the leader's client is gone.
    _gone: oneshot::Sender<()>,
}

/// The leader's body of a streamed miss of `upstream`, recorded into `rec`.
pub(super) fn lead(upstream: Body, rec: Arc<Recording>) -> Body {
    let (handoff_tx, handoff_rx) = oneshot::channel();
    let (gone_tx, gone_rx) = oneshot::channel();
    let state = Lead {
        rx: rec.subscribe(),
        rec,
        i: 0,
        start: Some(Start {
            upstream,
            handoff: handoff_tx,
            gone: gone_rx,
        }),
        handoff: Some(handoff_rx),
        direct: None,
        done: false,
        _gone: gone_tx,
    };
    Body::from_stream(futures_util::stream::unfold(state, |mut lead| async move {
        let item = lead.next().await?;
        Some((item, lead))
    }))
}

impl Lead {
    async fn next(&mut self) -> Option<Result<Bytes, BoxError>> {
        if let Some(start) = self.start.take() {
            tokio::spawn(pump(self.rec.clone(), start));
        }
        loop {
            if self.done {
                return None;
            }
            if let Some((sent, rest)) = &mut self.direct {
                if let Some(c) = sent.pop_front() {
                    return Some(Ok(c));
                }
                match frame(rest).await {
                    None => self.done = true,
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e.into()));
                    }
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            if !d.is_empty() {
                                return Some(Ok(d));
                            }
                        }
                    }
                }
                continue;
            }
            self.rx.borrow_and_update();
            match self.rec.next(self.i) {
                Next::Chunk(c) => {
                    self.i += 1;
                    return Some(Ok(c));
                }
                Next::Ended(End::Complete) => self.done = true,
                Next::Ended(End::Overflow) => {
                    let handoff = match self.handoff.take() {
                        Some(rx) => rx.await.ok(),
                        None => None,
                    };
                    let Some(Handoff { chunks, rest }) = handoff else {
                        self.done = true;
                        return Some(Err("the streamed answer was cut short".into()));
                    };
                    let unsent = chunks.into_iter().skip(self.i).collect();
                    self.direct = Some((unsent, rest));
                }
                Next::Ended(End::Failed) => {
                    self.done = true;
                    return Some(Err("the upstream stream failed".into()));
                }
                Next::Wait => {
                    // The sender lives in `rec`, which we hold: this only wakes on a tick.
                    let _ = self.rx.changed().await;
                }
            }
        }
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        // Dropped before its first poll (the client went away at once): nothing was read,
        // the recording fails and the engine's end runs (flight, lease).
        if self.start.take().is_some() {
            self.rec.end(End::Failed);
            if let (Some(finish), Ok(rt)) = (
                self.rec.take_finish(),
                tokio::runtime::Handle::try_current(),
            ) {
                rt.spawn(finish(None));
            }
        }
    }
}

/// Reads the upstream into the recording. When it ends whole, the entry is stored (the
/// engine's end) before the recording is marked complete, so that a client that asks again
/// once it has the answer finds it cached. A failure ends it; past the cap the recording
/// ends (`Overflow`) and the rest goes to the leader. Once the leader's client is gone it
/// goes on only while callers follow the recording.
async fn pump(rec: Arc<Recording>, start: Start) {
    enum Step {
        Frame(Option<Result<Frame<Bytes>, axum::Error>>),
        LeaderGone,
    }
    let Start {
        mut upstream,
        handoff,
        mut gone,
    } = start;
    let mut leader = true;
    loop {
        let step = if leader {
            tokio::select! {
                // The leader's leaving first: with both ready (a client gone as the rest of
                // the stream arrives), a random pick could read the stream to its end and
                // store an answer nobody took whole.
                biased;
                _ = &mut gone => Step::LeaderGone,
                f = frame(&mut upstream) => Step::Frame(f),
            }
        } else {
            Step::Frame(frame(&mut upstream).await)
        };
        let frame = match step {
            Step::LeaderGone => {
                leader = false;
                None
            }
            Step::Frame(f) => Some(f),
        };
        // The leader's body is a reader too: none left means nobody takes the answer,
        // whichever the select saw first.
        if rec.readers() == 0 {
            // Nobody reads it any more: never stored.
            rec.end(End::Failed);
            finish(&rec, None).await;
            return;
        }
        match frame {
            // The leader's client left; callers follow: read on for them.
            None => {}
            Some(None) => {
                let entry = rec.entry();
                finish(&rec, entry).await;
                rec.end(End::Complete);
                return;
            }
            Some(Some(Err(_))) => {
                rec.end(End::Failed);
                finish(&rec, None).await;
                return;
            }
            Some(Some(Ok(f))) => {
                let Ok(data) = f.into_data() else { continue };
                if let Some(mut chunks) = rec.push(&data) {
                    // Past the cap: the followers' copies end (nothing whole to share).
                    chunks.push(data);
                    if leader {
                        let _ = handoff.send(Handoff {
                            chunks,
                            rest: upstream,
                        });
                    }
                    finish(&rec, None).await;
                    return;
                }
            }
        }
    }
}

/// The next frame of a body.
async fn frame(body: &mut Body) -> Option<Result<Frame<Bytes>, axum::Error>> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await
}

/// Runs the engine's end (store, flight, lease) once.
async fn finish(rec: &Recording, entry: Option<super::Entry>) {
    if let Some(f) = rec.take_finish() {
        f(entry).await;
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
