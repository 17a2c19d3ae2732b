//! Exact sliding log: one timestamp per admitted unit, capped at the limit.

use std::collections::VecDeque;

use super::{Outcome, Spec, State, Work};

#[inline]
pub(super) fn decide(
    spec: &Spec,
    state: Option<&mut State>,
    now: u64,
    cost: u64,
) -> (Work, Outcome) {
    let limit = u64::from(spec.limit);
    let from = now.saturating_sub(spec.window_ms);
    let times: &[u64] = match state {
        Some(State::Log(q)) => {
            while q
                .front()
                .is_some_and(|&t| t <= from && now >= spec.window_ms)
            {
                q.pop_front();
            }
            q.make_contiguous()
        }
        _ => &[],
    };
    let count = times.len() as u64;
    let allowed = count + cost <= limit;
    let leave = |rank: u64| times[rank as usize] + spec.window_ms - now;
    let retry_ms = if cost > limit {
        None
    } else if allowed {
        Some(0)
    } else {
        Some(leave(count + cost - limit - 1))
    };
    let free1_ms = if count < limit {
        0
    } else {
        leave(count - limit)
    };
    let reset_ms = times.last().map_or(0, |&t| t + spec.window_ms - now);
    (
        Work { count, cur: 0 },
        Outcome {
            allowed,
            remaining: 0,
            reset_ms,
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
    if fresh || !matches!(state, State::Log(_)) {
        *state = State::Log(VecDeque::new());
    }
    if let State::Log(q) = state {
        for _ in 0..cost {
            q.push_back(now);
        }
        // Hard cap, as in the script.
        while q.len() as u64 > u64::from(spec.limit) {
            q.pop_front();
        }
        if w.count + u64::from(cost) >= u64::from(spec.limit) {
            out.free1_ms = q.front().map_or(0, |&t| t + spec.window_ms - now);
        }
    }
    out.reset_ms = spec.window_ms;
    now + spec.window_ms
}
