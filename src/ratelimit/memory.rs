//! The two algorithms in process, for the memory backend. They mirror `lua/ratelimit.lua`
//! line for line (same buckets, same rounding), so both backends decide alike; the
//! conformance suite checks that.

use std::collections::{HashMap, VecDeque};

use smallvec::SmallVec;

/// Per-rule values of one check, inline for up to 4 rules (no heap allocation).
pub(crate) type Rules<T> = SmallVec<[T; 4]>;
use std::sync::{Arc, Mutex};

use super::rules::Algorithm;
use crate::clock::Clock;

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
}

/// Most buckets a compact window can have (ceil(W / ceil(W / N)) <= N), plus the
/// current one.
const MAX_SLOTS: usize = super::rules::COMPACT_BUCKETS as usize + 1;

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
        }
    }
}

/// One rule of a check: its counter's key, owner and parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemRule<'s> {
    /// Hash of (tenant, rule, identity, endpoint).
    pub(crate) key: u64,
    /// Hash of (tenant, rule, identity): what `reset` matches.
    pub(crate) owner: u64,
    pub(crate) spec: &'s Spec,
    /// The rule's position in its policy (for the caller; unused here).
    pub(crate) idx: usize,
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
}

#[derive(Debug)]
enum State {
    Log(VecDeque<u64>),
    /// GCRA: the theoretical arrival time (microseconds) of the next unit.
    Tat(u64),
    /// `total` is the sum of `counts[..=n]`, kept current so a check need not add up
    /// 31 buckets.
    Win {
        base: u64,
        total: u64,
        counts: [u32; MAX_SLOTS],
    },
}

#[derive(Debug)]
struct Slot {
    key: u64,
    state: State,
    expires_at: u64,
    /// Hash of (tenant, rule, identity) without the endpoint, so `reset` can find every
    /// per-endpoint counter of an identity.
    owner: u64,
}

/// Counters of all rules and identities in this process.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    slots: Mutex<Slab>,
    clock: Arc<dyn Clock>,
    max_keys: usize,
}

/// Counters in a vector, found through one index lookup: a check looks each key up once
/// and reaches it again by position when it charges.
#[derive(Debug, Default)]
struct Slab {
    /// Keys are already seeded 64-bit hashes: used as they are, not hashed again.
    index: HashMap<u64, usize, nohash_hasher::BuildNoHashHasher<u64>>,
    slots: Vec<Slot>,
    /// Latest time any check used: time read under the lock never goes back, even if
    /// the clock source does (a stale time would shift a window back and wipe counts).
    last_now: u64,
}

impl Slab {
    fn find(&self, key: u64) -> Option<usize> {
        self.index.get(&key).copied()
    }

    /// The slot of `key`, inserting an empty (already expired) one if there is none.
    fn get_or_insert(&mut self, key: u64, owner: u64) -> usize {
        let slots = &mut self.slots;
        *self.index.entry(key).or_insert_with(|| {
            slots.push(Slot {
                key,
                state: State::Log(VecDeque::new()),
                expires_at: 0,
                owner,
            });
            slots.len() - 1
        })
    }

    fn remove_at(&mut self, i: usize) {
        let gone = self.slots.swap_remove(i);
        self.index.remove(&gone.key);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key, i);
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) {
        let mut i = self.slots.len();
        while i > 0 {
            i -= 1;
            if !keep(&self.slots[i]) {
                self.remove_at(i);
            }
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// Per-rule working state between the decision and the commit (the outcome itself is
/// written in place in the caller's buffer).
struct Work {
    count: u64,
    cur: u64,
    slot: Option<usize>,
}

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

impl MemoryLimiter {
    pub(crate) fn new(clock: Arc<dyn Clock>, max_keys: usize) -> Self {
        Self {
            slots: Mutex::new(Slab::default()),
            clock,
            max_keys: max_keys.max(1),
        }
    }

    /// Decides all rules; charges every allowing rule if `commit` and no enforced rule
    /// denies. Returns whether all enforced rules allow; per-rule outcomes go to `outs`
    /// (an out-parameter: returning it would copy it).
    ///
    /// Stored state is normalised in place (old log entries dropped, buckets shifted to
    /// the current one): that changes no count, and avoids copying bucket arrays.
    pub(crate) fn decide(
        &self,
        rules: &[MemRule<'_>],
        cost: u32,
        commit: bool,
        outs: &mut Rules<Outcome>,
    ) -> bool {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Read under the lock: a time read before waiting for it could be older than the
        // one another check already stored.
        let now = self.clock.now_ms().max(slots.last_now);
        slots.last_now = now;
        let now_us = now * 1000;
        let cost64 = u64::from(cost);
        if commit && slots.len() + rules.len() > self.max_keys {
            slots.retain(|s| s.expires_at > now);
            while slots.len() + rules.len() > self.max_keys {
                // Still full of live counters: drop the one expiring soonest (it has the
                // least usage left to forget).
                let Some(i) = (0..slots.len()).min_by_key(|&i| slots.slots[i].expires_at) else {
                    break;
                };
                slots.remove_at(i);
            }
        }
        let mut work: Rules<Work> = SmallVec::new();
        let mut all = true;
        outs.clear();
        for MemRule {
            key, owner, spec, ..
        } in rules
        {
            // A check that may charge makes room now, so the commit needs no second lookup.
            let idx = if commit {
                Some(slots.get_or_insert(*key, *owner))
            } else {
                slots.find(*key)
            };
            let slot = idx
                .map(|i| &mut slots.slots[i])
                .filter(|s| s.expires_at > now);
            let limit = u64::from(spec.limit);
            let (w, out) = match spec.algo {
                Algorithm::Exact => {
                    let from = now.saturating_sub(spec.window_ms);
                    let times: &[u64] = match slot {
                        Some(Slot {
                            state: State::Log(q),
                            ..
                        }) => {
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
                    let allowed = count + cost64 <= limit;
                    let leave = |rank: u64| times[rank as usize] + spec.window_ms - now;
                    let retry_ms = if cost64 > limit {
                        None
                    } else if allowed {
                        Some(0)
                    } else {
                        Some(leave(count + cost64 - limit - 1))
                    };
                    let free1_ms = if count < limit {
                        0
                    } else {
                        leave(count - limit)
                    };
                    let reset_ms = times.last().map_or(0, |&t| t + spec.window_ms - now);
                    (
                        Work {
                            count,
                            cur: 0,
                            slot: idx,
                        },
                        Outcome {
                            allowed,
                            remaining: 0,
                            reset_ms,
                            retry_ms,
                            free1_ms,
                        },
                    )
                }
                Algorithm::Gcra => {
                    // `cur` holds max(TAT, now): when the burst is back to full.
                    let t = spec.bucket_us;
                    let tat = match slot {
                        Some(Slot {
                            state: State::Tat(tat),
                            ..
                        }) => (*tat).max(now_us),
                        _ => now_us,
                    };
                    let cap = limit * t;
                    let ahead = tat - now_us;
                    let allowed = ahead + cost64 * t <= cap;
                    let retry_ms = if cost64 > limit {
                        None
                    } else {
                        Some((ahead + cost64 * t).saturating_sub(cap).div_ceil(1000))
                    };
                    (
                        Work {
                            count: ahead.div_ceil(t),
                            cur: tat,
                            slot: idx,
                        },
                        Outcome {
                            allowed,
                            remaining: 0,
                            reset_ms: ahead.div_ceil(1000),
                            retry_ms,
                            free1_ms: (ahead + t).saturating_sub(cap).div_ceil(1000),
                        },
                    )
                }
                Algorithm::Compact => {
                    // Still in the stored current bucket (the common case): no division.
                    let cur = match slot.as_deref() {
                        Some(Slot {
                            state: State::Win { base, .. },
                            ..
                        }) if (base * spec.bucket_us..(base + 1) * spec.bucket_us)
                            .contains(&now_us) =>
                        {
                            *base
                        }
                        _ => now_us / spec.bucket_us,
                    };
                    let n = spec.n as usize;
                    let (counts, total): (&[u32], u64) = match slot {
                        Some(Slot {
                            state:
                                State::Win {
                                    base,
                                    total,
                                    counts,
                                },
                            ..
                        }) => {
                            let shift = cur.wrapping_sub(*base);
                            if cur < *base || shift > spec.n {
                                counts[..=n].fill(0);
                                *total = 0;
                            } else if shift > 0 {
                                let shift = shift as usize;
                                let dropped: u64 =
                                    counts[..shift].iter().map(|&c| u64::from(c)).sum();
                                *total -= dropped;
                                counts.copy_within(shift..=n, 0);
                                counts[n + 1 - shift..=n].fill(0);
                            }
                            *base = cur;
                            (&counts[..=n], *total)
                        }
                        _ => (&[0; MAX_SLOTS][..=n], 0),
                    };
                    let allowed = total + cost64 <= limit;
                    let wait = |target: i64| {
                        win_wait(counts, spec.n, total, target, cur, spec.bucket_us, now_us)
                    };
                    let retry_ms = if cost64 > limit {
                        None
                    } else {
                        wait(limit as i64 - cost64 as i64)
                    };
                    let free1_ms = wait(limit as i64 - 1).unwrap_or(0);
                    // `reset_ms` scans the buckets: computed after the commit, where a
                    // charge makes it plain arithmetic.
                    let reset_ms = 0;
                    (
                        Work {
                            count: total,
                            cur,
                            slot: idx,
                        },
                        Outcome {
                            allowed,
                            remaining: 0,
                            reset_ms,
                            retry_ms,
                            free1_ms,
                        },
                    )
                }
            };
            if !out.allowed && !spec.shadow {
                all = false;
            }
            work.push(w);
            outs.push(out);
        }

        let commit = commit && all;
        for ((MemRule { owner, spec, .. }, w), out) in
            rules.iter().zip(&mut work).zip(outs.iter_mut())
        {
            let charged = commit && out.allowed;
            if let (true, Some(i)) = (charged, w.slot) {
                let slot = &mut slots.slots[i];
                let fresh = slot.expires_at <= now;
                match spec.algo {
                    Algorithm::Exact => {
                        if fresh || !matches!(slot.state, State::Log(_)) {
                            slot.state = State::Log(VecDeque::new());
                        }
                        if let State::Log(q) = &mut slot.state {
                            for _ in 0..cost {
                                q.push_back(now);
                            }
                            // Hard cap, as in the script.
                            while q.len() as u64 > u64::from(spec.limit) {
                                q.pop_front();
                            }
                            if w.count + cost64 >= u64::from(spec.limit) {
                                out.free1_ms = q.front().map_or(0, |&t| t + spec.window_ms - now);
                            }
                        }
                        slot.expires_at = now + spec.window_ms;
                        out.reset_ms = spec.window_ms;
                    }
                    Algorithm::Gcra => {
                        let t = spec.bucket_us;
                        let tat = w.cur + cost64 * t;
                        slot.state = State::Tat(tat);
                        let ahead = tat - now_us;
                        slot.expires_at = now + ahead.div_ceil(1000).max(1);
                        out.reset_ms = ahead.div_ceil(1000);
                        out.free1_ms = (ahead + t)
                            .saturating_sub(u64::from(spec.limit) * t)
                            .div_ceil(1000);
                    }
                    Algorithm::Compact => {
                        let n = spec.n as usize;
                        if fresh || !matches!(slot.state, State::Win { .. }) {
                            slot.state = State::Win {
                                base: w.cur,
                                total: 0,
                                counts: [0; MAX_SLOTS],
                            };
                        }
                        if let State::Win { counts, total, .. } = &mut slot.state {
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
                        slot.expires_at = now + ((spec.n + 1) * spec.bucket_us).div_ceil(1000);
                        out.reset_ms = ((w.cur + spec.n + 1) * spec.bucket_us)
                            .saturating_sub(now_us)
                            .div_ceil(1000);
                    }
                }
                slot.owner = *owner;
                w.count += cost64;
            }
            if !charged && spec.algo == Algorithm::Compact {
                if let Some(Slot {
                    state: State::Win { counts, .. },
                    expires_at,
                    ..
                }) = w.slot.map(|i| &slots.slots[i])
                {
                    if *expires_at > now {
                        let n = spec.n as usize;
                        out.reset_ms = win_wait(
                            &counts[..=n],
                            spec.n,
                            w.count,
                            0,
                            w.cur,
                            spec.bucket_us,
                            now_us,
                        )
                        .unwrap_or(0);
                    }
                }
            }
            let remaining = u64::from(spec.limit).saturating_sub(w.count);
            out.remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
        }
        all
    }

    /// Forgets every counter whose owner (tenant, rule, identity) is in `owners`; returns
    /// how many live ones there were.
    pub(crate) fn reset_owners(&self, owners: &[u64]) -> u64 {
        let now = self.clock.now_ms();
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut n = 0;
        slots.retain(|s| {
            let doomed = owners.contains(&s.owner);
            if doomed && s.expires_at > now {
                n += 1;
            }
            !doomed
        });
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;

    /// `decide` returning the outcomes, for terse tests.
    fn decide(
        l: &MemoryLimiter,
        keys: &[u64],
        owners: &[u64],
        specs: &[Spec],
        cost: u32,
        commit: bool,
    ) -> (bool, Rules<Outcome>) {
        let rules: Vec<MemRule<'_>> = keys
            .iter()
            .zip(owners)
            .zip(specs)
            .enumerate()
            .map(|(idx, ((&key, &owner), spec))| MemRule {
                key,
                owner,
                spec,
                idx,
            })
            .collect();
        let mut outs = Rules::new();
        let ok = l.decide(&rules, cost, commit, &mut outs);
        (ok, outs)
    }

    fn limiter() -> (MemoryLimiter, ManualClock) {
        let clock = ManualClock::new();
        (MemoryLimiter::new(Arc::new(clock.clone()), 1000), clock)
    }

    /// Feeds `(gap ms, cost)` arrivals to one rule on a fresh limiter and returns the
    /// admissions as `(time ms, cost)`; every denial must name a positive retry time.
    fn admissions(
        spec: Spec,
        arrivals: &[(u64, u32)],
    ) -> Result<Vec<(u64, u32)>, proptest::test_runner::TestCaseError> {
        let (l, clock) = limiter();
        let mut admitted = Vec::new();
        for &(gap, cost) in arrivals {
            clock.advance(std::time::Duration::from_millis(gap));
            let (ok, outs) = decide(&l, &[1], &[1], &[spec], cost, true);
            prop_assert_eq!(ok, outs[0].allowed);
            if ok {
                admitted.push((clock.now_ms(), cost));
            } else if let Some(retry) = outs[0].retry_ms {
                prop_assert!(retry > 0);
            }
        }
        Ok(admitted)
    }

    /// Largest sum of admitted cost over any window (t - w, t].
    fn max_in_window(admitted: &[(u64, u32)], w: u64) -> u64 {
        let mut best = 0u64;
        let mut lo = 0;
        let mut sum = 0u64;
        for hi in 0..admitted.len() {
            sum += u64::from(admitted[hi].1);
            while admitted[lo].0 + w <= admitted[hi].0 {
                sum -= u64::from(admitted[lo].1);
                lo += 1;
            }
            best = best.max(sum);
        }
        best
    }

    fn algo() -> impl Strategy<Value = Algorithm> {
        prop_oneof![Just(Algorithm::Exact), Just(Algorithm::Compact)]
    }

    fn any_algo() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::Exact),
            Just(Algorithm::Compact),
            Just(Algorithm::Gcra)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn gcra_admits_at_most_the_burst_plus_the_rate(
            limit in 1u32..30,
            window in 1u64..5_000,
            arrivals in proptest::collection::vec((0u64..400, 1u32..4), 1..300),
        ) {
            // In any span of d ms, GCRA admits at most limit + d / T units
            // (T = window / limit, rounded up to a microsecond).
            let spec = Spec::new(Algorithm::Gcra, limit, window, false);
            let t_us = spec.bucket_us;
            let admitted = admissions(spec, &arrivals)?;
            for i in 0..admitted.len() {
                let mut units = 0u64;
                for j in i..admitted.len() {
                    units += u64::from(admitted[j].1);
                    let span_us = (admitted[j].0 - admitted[i].0) * 1000;
                    prop_assert!(
                        units * t_us <= span_us + u64::from(limit) * t_us,
                        "{} units in {} us (limit {}, T {} us)", units, span_us, limit, t_us
                    );
                }
            }
        }

        #[test]
        fn no_window_ever_admits_more_than_the_limit(
            algo in algo(),
            limit in 1u32..30,
            window in 1u64..5_000,
            arrivals in proptest::collection::vec((0u64..400, 1u32..4), 1..400),
        ) {
            let admitted = admissions(Spec::new(algo, limit, window, false), &arrivals)?;
            let worst = max_in_window(&admitted, window);
            prop_assert!(worst <= u64::from(limit), "{} admitted in a window of {} ms (limit {})", worst, window, limit);
        }

        #[test]
        fn retry_after_is_honest(
            algo in any_algo(),
            limit in 1u32..20,
            window in 10u64..3_000,
            arrivals in proptest::collection::vec(0u64..200, 1..100),
        ) {
            // Waiting exactly retry_ms makes the same request fit (and not earlier by 1 ms
            // for the exact log, whose waits are exact).
            let (l, clock) = limiter();
            let spec = Spec::new(algo, limit, window, false);
            for gap in arrivals {
                clock.advance(std::time::Duration::from_millis(gap));
                let (ok, outs) = decide(&l, &[7], &[7], &[spec], 1, true);
                if !ok {
                    let retry = outs[0].retry_ms.expect("cost 1 always fits eventually");
                    clock.advance(std::time::Duration::from_millis(retry));
                    let (ok2, _) = decide(&l, &[7], &[7], &[spec], 1, false);
                    prop_assert!(ok2, "still denied after retry_ms={}", retry);
                }
            }
        }
    }

    #[test]
    fn all_or_nothing_across_rules() {
        let (l, _) = limiter();
        let tenant = Spec::new(Algorithm::Compact, 5, 60_000, false);
        let user = Spec::new(Algorithm::Exact, 2, 60_000, false);
        assert!(decide(&l, &[1, 2], &[1, 2], &[tenant, user], 1, true).0);
        assert!(decide(&l, &[1, 2], &[1, 2], &[tenant, user], 1, true).0);
        let (ok, outs) = decide(&l, &[1, 2], &[1, 2], &[tenant, user], 1, true);
        assert!(!ok);
        assert!(outs[0].allowed && !outs[1].allowed);
        // The tenant rule was not charged by the denied request.
        let (_, outs) = decide(&l, &[1, 3], &[1, 3], &[tenant, user], 1, false);
        assert_eq!(outs[0].remaining, 3);
    }

    #[test]
    fn shadow_rules_record_but_do_not_block() {
        let (l, _) = limiter();
        let shadow = Spec::new(Algorithm::Compact, 1, 60_000, true);
        let real = Spec::new(Algorithm::Compact, 10, 60_000, false);
        assert!(decide(&l, &[1, 2], &[1, 2], &[shadow, real], 1, true).0);
        let (ok, outs) = decide(&l, &[1, 2], &[1, 2], &[shadow, real], 1, true);
        assert!(ok);
        assert!(!outs[0].allowed);
        assert_eq!(outs[1].remaining, 8);
    }

    #[test]
    fn compact_admits_at_least_95_percent_of_exact_under_overload() {
        for (limit, window) in [(100u32, 60_000u64), (10, 1_000), (1000, 900_000), (7, 333)] {
            let mut totals = Vec::new();
            for algo in [Algorithm::Exact, Algorithm::Compact] {
                let (l, clock) = limiter();
                let spec = Spec::new(algo, limit, window, false);
                // Steady overload: 10x the limit's rate, for 50 windows.
                let step = (window / u64::from(limit) / 10).max(1);
                let mut admitted = 0u64;
                let end = window * 50;
                while clock.now_ms() < end {
                    if decide(&l, &[1], &[1], &[spec], 1, true).0 {
                        admitted += 1;
                    }
                    clock.advance(std::time::Duration::from_millis(step));
                }
                totals.push(admitted);
            }
            let ratio = totals[1] as f64 / totals[0] as f64;
            eprintln!(
                "limit {limit}/{window}ms: exact {} compact {} ratio {ratio:.4}",
                totals[0], totals[1]
            );
            assert!(
                ratio >= 0.95,
                "compact admitted {ratio:.4} of exact for {limit}/{window}ms"
            );
        }
    }

    #[test]
    fn counters_stay_within_max_keys() {
        let clock = ManualClock::new();
        let l = MemoryLimiter::new(Arc::new(clock.clone()), 5);
        let spec = Spec::new(Algorithm::Compact, 10, 1000, false);
        for k in 0..100u64 {
            assert!(decide(&l, &[k], &[k], &[spec], 1, true).0);
            clock.advance(std::time::Duration::from_millis(1));
            assert!(l.slots.lock().unwrap().len() <= 5);
        }
        // The most recent counters survived and still count.
        let (_, outs) = decide(&l, &[99], &[99], &[spec], 1, false);
        assert_eq!(outs[0].remaining, 9);
        // Index and slots agree after all the swap-removes.
        let slab = l.slots.lock().unwrap();
        for (i, slot) in slab.slots.iter().enumerate() {
            assert_eq!(slab.index[&slot.key], i);
        }
        assert_eq!(slab.index.len(), slab.slots.len());
    }

    /// A clock source that can go back (as a TSC read on another core, or a time read
    /// before a long wait for the lock, can look).
    #[derive(Debug, Default)]
    struct Wobbly(std::sync::atomic::AtomicU64);

    impl Clock for Wobbly {
        fn now_ms(&self) -> u64 {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn a_clock_going_back_wipes_no_counts() {
        let clock = Arc::new(Wobbly::default());
        let l = MemoryLimiter::new(clock.clone(), 100);
        for algo in [Algorithm::Exact, Algorithm::Compact] {
            let key = algo as u64 + 1;
            let spec = Spec::new(algo, 3, 1000, false);
            clock.0.store(5_000, std::sync::atomic::Ordering::SeqCst);
            assert!(decide(&l, &[key], &[key], &[spec], 2, true).0);
            // 300 ms back: earlier than the counter's current bucket.
            clock.0.store(4_700, std::sync::atomic::Ordering::SeqCst);
            let (ok, outs) = decide(&l, &[key], &[key], &[spec], 2, true);
            assert!(
                !ok,
                "{algo:?}: the 2 units charged at 5000 ms were forgotten"
            );
            assert_eq!(outs[0].remaining, 1);
        }
    }

    #[test]
    fn gcra_is_a_burst_then_one_unit_per_interval() {
        let (l, clock) = limiter();
        // 10 per second, bursts of 20: 20/2s.
        let spec = Spec::new(Algorithm::Gcra, 20, 2_000, false);
        for i in 0..20 {
            let (ok, outs) = decide(&l, &[1], &[1], &[spec], 1, true);
            assert!(ok, "burst unit {i}");
            assert_eq!(outs[0].remaining, 19 - i);
        }
        let (ok, outs) = decide(&l, &[1], &[1], &[spec], 1, true);
        assert!(!ok);
        assert_eq!(outs[0].retry_ms, Some(100));
        assert_eq!(outs[0].reset_ms, 2_000);
        // One unit back every 100 ms, not the whole window at once.
        clock.advance(std::time::Duration::from_millis(100));
        assert!(decide(&l, &[1], &[1], &[spec], 1, true).0);
        assert!(!decide(&l, &[1], &[1], &[spec], 1, true).0);
        clock.advance(std::time::Duration::from_millis(350));
        let (_, outs) = decide(&l, &[1], &[1], &[spec], 1, false);
        assert_eq!(outs[0].remaining, 3);
        // Weighted: 3.5 units are back, so 3 fit and 4 do in 50 ms.
        let (ok, outs) = decide(&l, &[1], &[1], &[spec], 4, false);
        assert!(!ok);
        assert_eq!(outs[0].retry_ms, Some(50));
        assert!(decide(&l, &[1], &[1], &[spec], 3, true).0);
    }

    #[test]
    fn cost_above_limit_never_fits() {
        let (l, _) = limiter();
        for algo in [Algorithm::Exact, Algorithm::Compact, Algorithm::Gcra] {
            let spec = Spec::new(algo, 3, 1000, false);
            let (ok, outs) = decide(&l, &[9], &[9], &[spec], 4, true);
            assert!(!ok);
            assert_eq!(outs[0].retry_ms, None);
        }
    }
}
