//! GCRA: a theoretical arrival time (TAT); a burst of `limit` units, then one unit per
//! emission interval (`spec.bucket_us`).

use super::{Outcome, Spec, State, Work};

#[inline]
pub(super) fn decide(
    spec: &Spec,
    state: Option<&mut State>,
    now: u64,
    cost: u64,
) -> (Work, Outcome) {
    let limit = u64::from(spec.limit);
    let now_us = now * 1000;
    // `cur` holds max(TAT, now): when the burst is back to full.
    let t = spec.bucket_us;
    let tat = match state {
        Some(State::Tat(tat)) => (*tat).max(now_us),
        _ => now_us,
    };
    let cap = limit * t;
    let ahead = tat - now_us;
    let allowed = ahead + cost * t <= cap;
    let retry_ms = if cost > limit {
        None
    } else {
        Some((ahead + cost * t).saturating_sub(cap).div_ceil(1000))
    };
    (
        Work {
            count: ahead.div_ceil(t),
            cur: tat,
        },
        Outcome {
            allowed,
            remaining: 0,
            reset_ms: ahead.div_ceil(1000),
            retry_ms,
            free1_ms: (ahead + t).saturating_sub(cap).div_ceil(1000),
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
    w: &Work,
    cost: u32,
    now: u64,
    out: &mut Outcome,
) -> u64 {
    let now_us = now * 1000;
    let t = spec.bucket_us;
    let tat = w.cur + u64::from(cost) * t;
    *state = State::Tat(tat);
    let ahead = tat - now_us;
    out.reset_ms = ahead.div_ceil(1000);
    out.free1_ms = (ahead + t)
        .saturating_sub(u64::from(spec.limit) * t)
        .div_ceil(1000);
    now + ahead.div_ceil(1000).max(1)
}
