//! Where the limiter's counters live: the memory store (one table under one lock, the
//! algorithms of [`super::algo`] applied to it) and the shared stores behind
//! [`SharedCounters`] (Redis: one Lua script that mirrors those algorithms; batch.rs puts
//! checks that wait at the same time in one call). The limiter picks one per check; no
//! other file knows either's layout.
//!
//! The memory store is not behind the trait on purpose: it decides synchronously, under
//! its lock, on counters named by 64-bit hashes of the check's parts (no key string is
//! built), which is what keeps in-process limiting within reach of governor; a shared store
//! is a round trip away, named by [`RedisKey`]s, and decides many checks per call.

pub(crate) mod batch;
pub(crate) mod limits;
pub(crate) mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, BackendError, StoreFuture};
use crate::keys::RedisKey;
use crate::ratelimit::algo::{Outcome, Rules, Spec};

/// A store of counters that instances share: decides checks in atomic calls.
pub(crate) trait SharedCounters: Send + Sync + 'static {
    /// Decides `requests` in order in one atomic call, each all or nothing. A request the
    /// store could not decide (a counter of another type) gets its own error, nothing of it
    /// written; `Err` when the call failed as a whole.
    fn decide<'a>(
        &'a self,
        requests: &'a [&'a Request],
    ) -> StoreFuture<'a, Vec<Result<Reply, BackendError>>>;

    /// The time one call may take, when one call may decide checks of different tenants
    /// (then checks that wait at the same time are coalesced); `None` otherwise.
    fn batch_timeout(&self) -> Option<Duration>;
}

impl dyn SharedCounters {
    /// Decides one request in its own call.
    pub(crate) async fn decide_one(&self, request: &Request) -> Result<Reply, BackendError> {
        let mut replies = self.decide(&[request]).await?;
        replies.pop().unwrap_or(Err(BackendError::Unsupported(
            "unexpected reply from the rate-limit store",
        )))
    }
}

/// The shared store on `backend` (none on the memory backend).
pub(crate) fn shared(backend: &Backend) -> Option<Arc<dyn SharedCounters>> {
    match backend {
        Backend::Memory(_) => None,
        #[cfg(feature = "redis")]
        Backend::Redis(r) => Some(Arc::new(r.clone())),
    }
}

/// One check as a shared store decides it: its rules, their counters, and what to do.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Request {
    pub(crate) specs: Rules<Spec>,
    /// The counters of `specs`, then the block keys of those with a block
    /// (`Spec::block_ms > 0`), in the same order.
    pub(crate) keys: Vec<RedisKey>,
    pub(crate) cost: u32,
    /// `check`, `peek`, `lease` (a check that also reserves `charges` units per rule for
    /// a lease), `charge` or `refund`.
    pub(crate) mode: &'static str,
    /// Unique per request: names the exact log's members. Mode `refund`: the store's
    /// time (ms) of the admission whose units are taken back.
    pub(crate) nonce: u64,
    /// Units per rule charged first (units admitted in process during an outage, or
    /// usage beyond a token estimate), taken back in mode `refund`, or reserved after the
    /// admission in mode `lease` (empty: none).
    pub(crate) charges: Rules<u32>,
}

impl Request {
    /// A request with no rules (the base of struct updates).
    pub(crate) fn empty() -> Self {
        Self {
            specs: Rules::new(),
            keys: Vec::new(),
            cost: 1,
            mode: "peek",
            nonce: 0,
            charges: Rules::new(),
        }
    }
}

/// A shared store's answer for one request: all enforced rules allowed, each rule's
/// outcome, the store's clock (ms).
pub(crate) type Reply = (bool, Rules<Outcome>, u64);
