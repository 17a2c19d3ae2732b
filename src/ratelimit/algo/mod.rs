//! The three algorithms as pure state transitions: given a counter's state, the time and
//! a cost, what a rule decides ([`decide`]), the state after a charge ([`charge`]) and
//! after a refund ([`refund`]).
//! No locks, no maps, no clock: the memory store ([`super::memory`]) owns those, and
//! `lua/ratelimit.lua` mirrors these functions line for line (same buckets, same
//! rounding), so both backends decide alike; the conformance suite checks that.
//!
//! Times are milliseconds (`now`) and, where the algorithm needs them, microseconds
//! (`now_us = now * 1000`).

mod compact;
mod exact;
mod gcra;

use std::collections::VecDeque;

use smallvec::SmallVec;

use super::rules::Algorithm;

pub(crate) use compact::MAX_SLOTS;

/// Per-rule values of one check, inline for up to 4 rules (no heap allocation).
pub(crate) type Rules<T> = SmallVec<[T; 4]>;

/// One rule as the algorithms see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) algo: Algorithm,
    pub(crate) limit: u32,
    pub(crate) window_ms: u64,
    /// Compact buckets are in microseconds, so short windows still get all their buckets.
    pub(crate) bucket_us: u64,
    pub(crate) n: u64,
    pub(crate) shadow: bool,
    /// `RATE_LIMIT_BLOCK`: the first block's length and the longest, ms (0: no block).
    pub(crate) block_ms: u64,
    pub(crate) block_max_ms: u64,
}

impl Spec {
    pub(crate) fn new(algo: Algorithm, limit: u32, window_ms: u64, shadow: bool) -> Self {
        let window_ms = window_ms.max(1);
        let window_us = window_ms.saturating_mul(1000);
        let (bucket_us, n) = match algo {
            // GCRA: `bucket_us` is the emission interval (rounded up: never faster).
            Algorithm::Gcra => (window_us.div_ceil(u64::from(limit.max(1))).max(1), 0),
            _ => {
                let bucket_us = window_us.div_ceil(super::rules::COMPACT_BUCKETS).max(1);
                (bucket_us, window_us.div_ceil(bucket_us))
            }
        };
        Self {
            algo,
            limit,
            window_ms,
            bucket_us,
            n,
            shadow,
            block_ms: 0,
            block_max_ms: 0,
        }
    }

    /// With the rule's block (none for shadow rules: they never refuse).
    pub(crate) fn with_block(mut self, block: Option<super::rules::Block>) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        if let Some(b) = block.filter(|_| !self.shadow) {
            self.block_ms = ms(b.first);
            self.block_max_ms = ms(b.max);
        }
        self
    }

    /// The same rule without its block: for calls that only charge or refund.
    pub(crate) fn without_block(self) -> Self {
        Self {
            block_ms: 0,
            block_max_ms: 0,
            ..self
        }
    }

    /// The length (ms) of the `strike`-th block in a row: doubled per strike, capped.
    pub(crate) fn block_for(&self, strike: u32) -> u64 {
        let shift = strike.saturating_sub(1).min(62);
        self.block_ms
            .checked_shl(shift)
            .filter(|&d| d >> shift == self.block_ms)
            .unwrap_or(u64::MAX)
            .min(self.block_max_ms)
    }
}

/// What one rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) allowed: bool,
    pub(crate) remaining: u32,
    pub(crate) reset_ms: u64,
    /// `None`: never (cost above the limit).
    pub(crate) retry_ms: Option<u64>,
    pub(crate) free1_ms: u64,
    /// The identity had no counter and the table was full of live ones: the rule's shared
    /// overflow counter decided.
    pub(crate) overflow: bool,
    /// Refused because the rule blocks the identity (`RATE_LIMIT_BLOCK`): now, or from this
    /// denial on.
    pub(crate) blocked: bool,
    /// Units reserved for a lease with the admission, beyond its cost (a shared store's
    /// mode `lease`; 0 otherwise).
    pub(crate) reserved: u32,
}

/// A counter's state.
#[derive(Debug)]
pub(crate) enum State {
    /// Exact: the times (ms) of the admitted units, oldest first.
    Log(VecDeque<u64>),
    /// GCRA: the theoretical arrival time (microseconds) of the next unit.
    Tat(u64),
    /// Compact: `total` is the sum of `counts[..=n]`, kept current so a check need not
    /// add up 31 buckets.
    Win {
        base: u64,
        total: u64,
        counts: [u32; MAX_SLOTS],
    },
}

impl State {
    /// The state of a counter that holds nothing yet.
    pub(crate) fn empty() -> Self {
        Self::Log(VecDeque::new())
    }
}

/// What [`decide`] learnt that [`charge`] needs: units counted before this check, and the
/// algorithm's current position (compact: the current bucket; GCRA: max(TAT, now)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Work {
    pub(crate) count: u64,
    pub(crate) cur: u64,
}

/// Decides one rule. `state` is the live counter's state (`None`: no counter, or an
/// expired one). Stored state is normalised in place (old log entries dropped, buckets
/// shifted to the current one): that changes no count, and avoids copying bucket arrays.
#[inline]
pub(crate) fn decide(
    spec: &Spec,
    state: Option<&mut State>,
    now: u64,
    cost: u64,
    overflow: bool,
) -> (Work, Outcome) {
    let (w, mut out) = match spec.algo {
        Algorithm::Exact => exact::decide(spec, state, now, cost),
        Algorithm::Gcra => gcra::decide(spec, state, now, cost),
        Algorithm::Compact => compact::decide(spec, state, now, cost),
    };
    out.overflow = overflow;
    (w, out)
}

/// Charges `cost` units to a counter that [`decide`] allowed; `fresh` if its previous
/// state had expired. Updates `out`'s reset and free-unit times and returns the counter's
/// new expiry (ms).
#[inline]
pub(crate) fn charge(
    spec: &Spec,
    state: &mut State,
    fresh: bool,
    w: &Work,
    cost: u32,
    now: u64,
    out: &mut Outcome,
) -> u64 {
    match spec.algo {
        Algorithm::Exact => exact::charge(spec, state, fresh, w, cost, now, out),
        Algorithm::Gcra => gcra::charge(spec, state, w, cost, now, out),
        Algorithm::Compact => compact::charge(spec, state, fresh, w, cost, now, out),
    }
}

/// Takes up to `units` back from what a counter was charged at `at` (ms): compact
/// windows only (the counters of token budgets, which settle after the response); the
/// others keep what they were charged. Returns the units taken back.
#[inline]
pub(crate) fn refund(spec: &Spec, state: &mut State, at: u64, units: u32) -> u32 {
    match spec.algo {
        Algorithm::Compact => compact::refund(spec, state, at, units),
        _ => 0,
    }
}

/// The reset time (ms) of a live counter that was not charged: only the compact window
/// computes it from its buckets (the others set it in [`decide`]).
#[inline]
pub(crate) fn reset_uncharged(spec: &Spec, state: &State, w: &Work, now: u64) -> Option<u64> {
    match spec.algo {
        Algorithm::Compact => compact::reset_uncharged(spec, state, w, now),
        _ => None,
    }
}
