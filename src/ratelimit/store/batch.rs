//! Coalescing of script calls: checks that wait for Redis at the same time go in one call
//! of `lua/ratelimit.lua`, which decides them in order, each all or nothing. Redis then
//! runs the script's fixed costs (its invocation, `TIME`, the reply) once per call instead
//! of once per check, and the client sends one command instead of many.
//!
//! No check waits for a batch to fill: a check whose call can start at once (fewer than
//! [`MAX_IN_FLIGHT`] calls running) starts it; the checks that arrive while every call is
//! running queue, and the next call takes them together. A call runs in its own task, so a
//! caller that goes away (a dropped request) takes nobody's answer with it.
//!
//! Bounds: a check waits in the queue at most half the command timeout (then it is answered
//! as a timed-out call, and the outage mode decides it), so a decision never takes more than
//! 1.5 × `REDIS_COMMAND_TIMEOUT`; at most [`MAX_QUEUED`] checks queue (more are answered as
//! unavailable at once). A request whose counter breaks the script (one left in another
//! type by an algorithm change) is answered with its own error by the script, before
//! anything of it is written; a call that fails as a whole fails all its requests, never
//! retried one by one (Redis keeps what a failed script wrote, so a retry would count some
//! twice).
//!
//! Only on a single node: a cluster call's keys must share a slot, and checks of different
//! tenants do not.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{Reply, Request, SharedCounters};
use crate::backend::BackendError;

/// Most requests in one script call.
pub(crate) const MAX_BATCH: usize = 32;
/// Script calls running at once; checks that arrive meanwhile go in the next ones.
pub(crate) const MAX_IN_FLIGHT: usize = 4;
/// Most checks waiting for a call.
pub(crate) const MAX_QUEUED: usize = 8192;

/// A request with its answer: the request comes back (its keys serve the outage path).
pub(crate) type Answer = (Request, Result<Reply, BackendError>);

struct Pending {
    request: Request,
    /// Past this, the request is answered as timed out instead of sent.
    deadline: Instant,
    tx: oneshot::Sender<Answer>,
}

/// The queue of one limiter's script calls. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Batcher {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn SharedCounters>,
    /// The command timeout: how long a call may take.
    timeout: Duration,
    queue: Mutex<VecDeque<Pending>>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("queued", &self.shared.queue().len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Pending>> {
        // Pending requests stay whole whatever panicked elsewhere.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Batcher {
    /// Calls on `store`, when it can take batched calls (a single Redis node).
    pub(crate) fn for_store(store: &Arc<dyn SharedCounters>) -> Option<Self> {
        store.batch_timeout().map(|timeout| Self {
            shared: Arc::new(Shared {
                store: store.clone(),
                timeout,
                queue: Mutex::new(VecDeque::new()),
                permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            }),
        })
    }

    /// Decides `request` in the next script call. `Err` only if the call's task died
    /// without answering (a panic): the request is lost with it.
    pub(crate) async fn call(&self, request: Request) -> Result<Answer, BackendError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.queue();
            if q.len() >= MAX_QUEUED {
                drop(q);
                let full = BackendError::Unavailable(format!(
                    "{MAX_QUEUED} rate-limit checks already wait for Redis"
                ));
                return Ok((request, Err(full)));
            }
            q.push_back(Pending {
                request,
                deadline: Instant::now() + self.shared.timeout / 2,
                tx,
            });
        }
        if let Ok(permit) = self.shared.permits.clone().try_acquire_owned() {
            tokio::spawn(send(self.shared.clone(), permit));
        }
        rx.await.map_err(|_| {
            BackendError::Unavailable("the rate-limit script call ended without an answer".into())
        })
    }
}

/// Script calls with the oldest queued requests, until none are left that another call
/// does not take.
async fn send(shared: Arc<Shared>, mut permit: OwnedSemaphorePermit) {
    loop {
        let batch: Vec<Pending> = {
            let mut q = shared.queue();
            let now = Instant::now();
            let mut batch = Vec::with_capacity(q.len().min(MAX_BATCH));
            while batch.len() < MAX_BATCH {
                let Some(p) = q.pop_front() else { break };
                if p.deadline <= now {
                    // Queued too long: decided by the outage mode, not sent late.
                    let late = BackendError::Timeout(shared.timeout);
                    let _ = p.tx.send((p.request, Err(late)));
                } else {
                    batch.push(p);
                }
            }
            batch
        };
        if !batch.is_empty() {
            let requests: Vec<&Request> = batch.iter().map(|p| &p.request).collect();
            match shared.store.decide(&requests).await {
                Ok(replies) => {
                    for (p, reply) in batch.into_iter().zip(replies) {
                        let _ = p.tx.send((p.request, reply));
                    }
                }
                Err(e) => {
                    for p in batch {
                        let _ = p.tx.send((p.request, Err(e.clone())));
                    }
                }
            }
        }
        // Release before looking at the queue: a request queued after the look finds this
        // permit free and starts its own call, so none is left waiting.
        drop(permit);
        if shared.queue().is_empty() {
            return;
        }
        match shared.permits.clone().try_acquire_owned() {
            Ok(p) => permit = p,
            // Every call is running: the last to finish takes them.
            Err(_) => return,
        }
    }
}
