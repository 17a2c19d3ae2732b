//! Single-flight inside one process: concurrent misses of one key run the upstream once;
//! the others wait for the leader's result (an entry, a shared error, or "compute it
//! yourself"). Across processes the Redis lease in [`super::engine`] does the same.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::recording::Recording;
use super::{Entry, Inner};

/// A failure a leader shares with the callers that waited for it; never cached.
#[derive(Clone)]
pub(crate) enum SharedFailure {
    /// An upstream error response (`CACHE_SHARE_ERRORS`): waiters of the layer replay it.
    Response(Arc<Entry>),
    /// A [`Cache::get_or_compute`](super::Cache::get_or_compute) error. Callers on one key may
    /// name different error types, so the value is kept as `Any`: a waiter whose `E` matches
    /// gets it back ([`Self::error`]), any other its message.
    Error {
        value: Arc<dyn Any + Send + Sync>,
        message: Arc<str>,
    },
}

impl SharedFailure {
    /// A `get_or_compute` error to share.
    pub(crate) fn error<E: std::fmt::Display + Send + Sync + 'static>(e: E) -> Self {
        Self::Error {
            message: Arc::from(e.to_string()),
            value: Arc::new(e),
        }
    }

    /// The shared error as `E`, when the leader's error had that type.
    pub(crate) fn downcast<E: Clone + 'static>(&self) -> Option<E> {
        match self {
            Self::Error { value, .. } => value.downcast_ref::<E>().cloned(),
            Self::Response(_) => None,
        }
    }

    /// What went wrong, for a waiter that cannot take the value itself.
    pub(crate) fn message(&self) -> String {
        match self {
            Self::Error { message, .. } => message.to_string(),
            Self::Response(e) => format!("upstream answered {}", e.status),
        }
    }
}

/// Result of a flight, shared with the callers that waited for it.
#[derive(Clone)]
pub(super) enum Flight {
    Entry(Arc<Entry>),
    /// A response streaming to the leader: waiters replay its recording live.
    Stream(Arc<Recording>),
    Error(SharedFailure),
    /// The leader's result may not be shared (uncacheable response): compute yourself.
    Private,
}

/// A flight in the registry: who leads it (`id`), whether an invalidation that covers its
/// key was applied here since it started (`superseded`: its answer may predate it, so a
/// caller who arrives now leads a flight of its own instead of joining), and where its
/// result comes.
pub(super) struct Registered {
    pub(super) id: u64,
    pub(super) superseded: bool,
    pub(super) rx: watch::Receiver<Option<Flight>>,
}

/// A new flight's id.
pub(super) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Removes flight `id` of `key` from the registry (not a newer one of the same key).
pub(super) fn unregister(inner: &Inner, key: &str, id: u64) {
    let mut flights = inner
        .flights
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if flights.get(key).is_some_and(|f| f.id == id) {
        flights.remove(key);
    }
}

/// Removes the flight when the leader finishes or is dropped (waiters then retry).
pub(super) struct FlightGuard<'a> {
    pub(super) inner: &'a Inner,
    /// The key and the flight's id, while registered.
    pub(super) key: Option<(String, u64)>,
    pub(super) tx: Option<watch::Sender<Option<Flight>>>,
}

impl FlightGuard<'_> {
    pub(super) fn finish(&mut self, flight: Flight) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(flight));
        }
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if let Some((k, id)) = self.key.take() {
            unregister(self.inner, &k, id);
        }
    }
}
