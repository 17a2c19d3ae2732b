//! Compact sliding window: the window cut into `COMPACT_BUCKETS` buckets (microsecond
//! resolution) plus the current one; a unit leaves when its whole bucket has left the
//! window, so no window ever admits more than the limit.

use super::{Outcome, Spec, State, Work};

/// Most buckets a compact window can have (ceil(W / ceil(W / N)) <= N), plus the
/// current one.
pub(crate) const MAX_SLOTS: usize = crate::ratelimit::rules::COMPACT_BUCKETS as usize + 1;

/// Milliseconds (rounded up) until dropping the oldest buckets leaves `total - dropped <=
/// target`; `None` if never. `now_us` and `bucket_us` in microseconds.
fn win_wait(
    counts: &[u32],
    n: u64,
    total: u64,
    target: i64,
    cur: u64,
    bucket_us: u64,
    now_us: u64,
) -> Option<u64> {
    if (total as i64) <= target {
        return Some(0);
    }
    let mut dropped = 0u64;
    for k in 1..=n + 1 {
        dropped += u64::from(counts[(k - 1) as usize]);
        if (total as i64 - dropped as i64) <= target {
            return Some(
                ((cur + k) * bucket_us)
                    .saturating_sub(now_us)
                    .div_ceil(1000),
            );
        }
    }
    None
}

#[inline]
pub(super) fn decide(
    spec: &Spec,
    state: Option<&mut State>,
    now: u64,
    cost: u64,
) -> (Work, Outcome) {
    let limit = u64::from(spec.limit);
    let now_us = now * 1000;
    // Still in the stored current bucket (the common case): no division.
    let cur = match state.as_deref() {
        Some(State::Win { base, .. })
            if (base * spec.bucket_us..(base + 1) * spec.bucket_us).contains(&now_us) =>
        {
            *base
        }
        _ => now_us / spec.bucket_us,
    };
    let n = spec.n as usize;
    let (counts, total): (&[u32], u64) = match state {
        Some(State::Win {
            base,
            total,
            counts,
        }) => {
            let shift = cur.wrapping_sub(*base);
            if cur < *base || shift > spec.n {
                counts[..=n].fill(0);
                *total = 0;
            } else if shift > 0 {
                let shift = shift as usize;
                let dropped: u64 = counts[..shift].iter().map(|&c| u64::from(c)).sum();
                *total -= dropped;
                counts.copy_within(shift..=n, 0);
                counts[n + 1 - shift..=n].fill(0);
            }
            *base = cur;
            (&counts[..=n], *total)
        }
        _ => (&[0; MAX_SLOTS][..=n], 0),
    };
    let allowed = total + cost <= limit;
    let wait = |target: i64| win_wait(counts, spec.n, total, target, cur, spec.bucket_us, now_us);
    let retry_ms = if cost > limit {
        None
    } else {
        wait(limit as i64 - cost as i64)
    };
    let free1_ms = wait(limit as i64 - 1).unwrap_or(0);
    // `reset_ms` scans the buckets: computed after the commit, where a charge makes it
    // plain arithmetic.
    (
        Work { count: total, cur },
        Outcome {
            allowed,
            remaining: 0,
            reset_ms: 0,
            retry_ms,
            free1_ms,
            overflow: false,
            reserved: 0,
            blocked: false,
        },
    )
}

#[inline]
pub(super) fn charge(
    spec: &Spec,
    state: &mut State,
    fresh: bool,
    w: &Work,
    cost: u32,
    now: u64,
    out: &mut Outcome,
) -> u64 {
    let now_us = now * 1000;
    let cost64 = u64::from(cost);
    let n = spec.n as usize;
    if fresh || !matches!(state, State::Win { .. }) {
        *state = State::Win {
            base: w.cur,
            total: 0,
            counts: [0; MAX_SLOTS],
        };
    }
    if let State::Win { counts, total, .. } = state {
        counts[n] += cost;
        *total += cost64;
        if w.count + cost64 >= u64::from(spec.limit) {
            out.free1_ms = win_wait(
                &counts[..=n],
                spec.n,
                w.count + cost64,
                i64::from(spec.limit) - 1,
                w.cur,
                spec.bucket_us,
                now_us,
            )
            .unwrap_or(0);
        }
    }
    out.reset_ms = ((w.cur + spec.n + 1) * spec.bucket_us)
        .saturating_sub(now_us)
        .div_ceil(1000);
    now + ((spec.n + 1) * spec.bucket_us).div_ceil(1000)
}

#[inline]
pub(super) fn reset_uncharged(spec: &Spec, state: &State, w: &Work, now: u64) -> Option<u64> {
    let State::Win { counts, .. } = state else {
        return None;
    };
    let n = spec.n as usize;
    Some(
        win_wait(
            &counts[..=n],
            spec.n,
            w.count,
            0,
            w.cur,
            spec.bucket_us,
            now * 1000,
        )
        .unwrap_or(0),
    )
}

/// Takes up to `units` back from the bucket that held `at` (ms) — a charge made then and
/// settled lower now. Nothing if that bucket has left the window (its units already
/// count for nothing). Returns the units taken back.
pub(super) fn refund(spec: &Spec, state: &mut State, at: u64, units: u32) -> u32 {
    let State::Win {
        base,
        total,
        counts,
    } = state
    else {
        return 0;
    };
    let at_bucket = at * 1000 / spec.bucket_us;
    let Some(back) = base.checked_sub(at_bucket).filter(|&b| b <= spec.n) else {
        return 0;
    };
    let slot = &mut counts[(spec.n - back) as usize];
    let take = units.min(*slot);
    *slot -= take;
    *total -= u64::from(take);
    take
}
