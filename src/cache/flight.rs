//! Single-flight inside one process: concurrent misses of one key run the upstream once;
//! the others wait for the leader's result (an entry, a shared error, or "compute it
//! yourself"). Across processes the Redis lease in [`super::engine`] does the same.

use super::*;

/// Result of a flight, shared with the callers that waited for it.
#[derive(Clone)]
pub(super) enum Flight {
    Entry(Arc<Entry>),
    Error(Arc<dyn Any + Send + Sync>, Arc<str>),
    /// The leader's result may not be shared (uncacheable response): compute yourself.
    Private,
}

/// Removes the flight when the leader finishes or is dropped (waiters then retry).
pub(super) struct FlightGuard<'a> {
    pub(super) inner: &'a Inner,
    pub(super) key: Option<String>,
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
        if let Some(k) = self.key.take() {
            self.inner
                .flights
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&k);
        }
    }
}
