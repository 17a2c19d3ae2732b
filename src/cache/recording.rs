//! [`Recording`]: a response being streamed on a cache miss, recorded as it passes (up to
//! the size cap) so that the callers who asked for the same key meanwhile replay it live,
//! and so that a complete one is stored once it ends.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::entry::Entry;

/// What a recorded chunk costs beyond its bytes (its `Bytes` handle and its place in the
/// list), counted against the cap.
const CHUNK_OVERHEAD: usize = 32;

/// Chunks smaller than this are copied out of the buffer they were read into.
const COPY_BELOW: usize = 4096;

/// What runs when the recorded stream is over: with the entry to store (a complete
/// stream within the cap), or `None` (it failed, was cut short, or outgrew the cap). Set by
/// the engine (it stores, ends the flight and gives the lease back).
pub(crate) type Finisher = Box<dyn FnOnce(Option<Entry>) -> BoxFuture<'static, ()> + Send>;

/// How a recorded stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The upstream sent all of it.
    Complete,
    /// The upstream failed, or the leader's body was dropped before its end.
    Failed,
    /// It outgrew the cap: not recorded any more (what was recorded is dropped).
    Overflow,
}

/// What a reader gets at its position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Chunk(Bytes),
    Wait,
    Ended(End),
}

#[derive(Debug)]
struct State {
    chunks: Vec<Bytes>,
    size: usize,
    end: Option<End>,
}

/// A streamed miss being recorded: the response head, the chunks so far, and how it ended.
pub(crate) struct Recording {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    /// The tags the response carries (see [`CacheTags`](super::CacheTags)).
    tags: Vec<(String, u64)>,
    cap: usize,
    state: Mutex<State>,
    /// Ticks on every chunk and at the end (readers wait on it).
    tick: watch::Sender<()>,
    finish: Mutex<Option<Finisher>>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("status", &self.status)
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl Recording {
    /// A recording of a response with this head and tags, holding at most `cap` body
    /// bytes.
    pub(crate) fn new(
        status: u16,
        headers: Vec<(String, String)>,
        tags: Vec<(String, u64)>,
        cap: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            status,
            headers,
            tags,
            cap,
            state: Mutex::new(State {
                chunks: Vec::new(),
                size: 0,
                end: None,
            }),
            tick: watch::Sender::new(()),
            finish: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a chunk read from the upstream. Past the cap the recording ends
    /// (`Overflow`) and hands back what it held (the leader still needs it); `None`
    /// otherwise.
    pub(crate) fn push(&self, data: &Bytes) -> Option<Vec<Bytes>> {
        if data.is_empty() {
            return None;
        }
        let overflowed = {
            let mut s = self.lock();
            if s.end.is_some() {
                return None;
            }
            // Each chunk is charged its handle too, and a small one is copied (it would
            // otherwise keep the whole read buffer it is a slice of): an upstream that
            // sends one byte at a time cannot make a recording hold more than the cap.
            let cost = data.len().saturating_add(CHUNK_OVERHEAD);
            if s.size.saturating_add(cost) > self.cap {
                s.end = Some(End::Overflow);
                s.size = 0;
                Some(std::mem::take(&mut s.chunks))
            } else {
                s.size += cost;
                let kept = if data.len() < COPY_BELOW {
                    Bytes::copy_from_slice(data)
                } else {
                    data.clone()
                };
                s.chunks.push(kept);
                None
            }
        };
        self.tick.send_replace(());
        overflowed
    }

    /// How many readers follow it (the leader's body and the callers who joined).
    pub(crate) fn readers(&self) -> usize {
        self.tick.receiver_count()
    }

    /// Ends the recording (the first end counts).
    pub(crate) fn end(&self, end: End) {
        {
            let mut s = self.lock();
            if s.end.is_some() {
                return;
            }
            s.end = Some(end);
        }
        self.tick.send_replace(());
    }

    /// How it ended, if it has.
    pub(crate) fn ended(&self) -> Option<End> {
        self.lock().end
    }

    /// The chunk at `i`, or that the reader must wait, or the end (once every chunk has
    /// been read; a failure or an overflow at once).
    pub(crate) fn next(&self, i: usize) -> Next {
        let s = self.lock();
        match s.end {
            Some(End::Failed) => Next::Ended(End::Failed),
            Some(End::Overflow) => Next::Ended(End::Overflow),
            _ => match s.chunks.get(i) {
                Some(c) => Next::Chunk(c.clone()),
                None => s.end.map_or(Next::Wait, Next::Ended),
            },
        }
    }

    /// A receiver that sees every later chunk and the end.
    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.tick.subscribe()
    }

    /// Waits until the recording has ended.
    pub(crate) async fn wait_end(&self) -> End {
        let mut rx = self.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(e) = self.ended() {
                return e;
            }
            // The sender lives as long as `self`: this never fails while we wait.
            let _ = rx.changed().await;
        }
    }

    /// The entry of what was recorded, unless it failed or outgrew the cap (times and
    /// generations are the engine's). Taken once the upstream has ended, before the
    /// recording is marked complete: it is stored before its end goes out.
    pub(crate) fn entry(&self) -> Option<Entry> {
        let s = self.lock();
        if matches!(s.end, Some(End::Failed | End::Overflow)) {
            return None;
        }
        let mut body = BytesMut::with_capacity(s.chunks.iter().map(Bytes::len).sum());
        for c in &s.chunks {
            body.extend_from_slice(c);
        }
        Some(Entry {
            stored_ms: 0,
            fresh_until_ms: 0,
            status: self.status,
            headers: self.headers.clone(),
            body: body.freeze(),
            gens: [0, 0],
            tags: self.tags.clone(),
        })
    }

    /// Sets what runs at the end (the engine, before the leader's body is read).
    pub(crate) fn set_finish(&self, f: Finisher) {
        *self.finish.lock().unwrap_or_else(PoisonError::into_inner) = Some(f);
    }

    /// Takes what runs at the end (once).
    pub(crate) fn take_finish(&self) -> Option<Finisher> {
        self.finish
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_chunks_then_the_end_and_the_cap_ends_it() {
        let r = Recording::new(200, vec![], vec![], 50);
        assert_eq!(r.next(0), Next::Wait);
        assert_eq!(r.push(&Bytes::from_static(b"data: a")), None);
        assert_eq!(r.next(0), Next::Chunk(Bytes::from_static(b"data: a")));
        assert_eq!(r.next(1), Next::Wait);
        r.end(End::Complete);
        assert_eq!(r.next(1), Next::Ended(End::Complete));
        assert_eq!(&r.entry().expect("complete").body[..], b"data: a");
        // Past the cap: what it held is handed back, readers told at once, no entry.
        let r = Recording::new(200, vec![], vec![], 50);
        r.push(&Bytes::from_static(b"data: a"));
        assert_eq!(
            r.push(&Bytes::from_static(b"data: b")),
            Some(vec![Bytes::from_static(b"data: a")])
        );
        assert_eq!(r.next(0), Next::Ended(End::Overflow));
        r.end(End::Complete);
        assert_eq!(r.ended(), Some(End::Overflow), "the first end counts");
        assert!(r.entry().is_none());
        // A failure: readers stop at once, no entry.
        let r = Recording::new(200, vec![], vec![], 50);
        r.push(&Bytes::from_static(b"x"));
        r.end(End::Failed);
        assert_eq!(r.next(0), Next::Ended(End::Failed));
        assert!(r.entry().is_none());
    }

    #[test]
    fn one_byte_chunks_are_charged_their_handle() {
        let r = Recording::new(200, vec![], vec![], 1000);
        let mut kept = 0;
        while r.push(&Bytes::from_static(b"x")).is_none() {
            kept += 1;
        }
        assert_eq!(kept, 1000 / (1 + CHUNK_OVERHEAD));
        assert_eq!(r.ended(), Some(End::Overflow));
    }
}
