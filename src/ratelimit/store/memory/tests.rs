use super::*;
use crate::clock::ManualClock;
use crate::ratelimit::rules::Algorithm;
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
    let rules: Vec<MemRule> = keys
        .iter()
        .zip(owners)
        .zip(specs)
        .enumerate()
        .map(|(idx, ((&key, &owner), spec))| MemRule {
            key,
            owner,
            spec: *spec,
            idx,
        })
        .collect();
    let mut outs = Rules::new();
    let (ok, _) = l.decide(&rules, cost, commit, &mut outs);
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

/// Index, slots and expiry heap agree.
fn assert_consistent(l: &MemoryLimiter) {
    let slab = l.slots.lock().unwrap();
    for (i, slot) in slab.slots.iter().enumerate() {
        assert_eq!(slab.index[&slot.key], i);
    }
    assert_eq!(slab.index.len(), slab.slots.len());
    assert_eq!(slab.expiry.len(), slab.slots.len());
    assert_eq!(
        slab.overflow,
        slab.slots.iter().filter(|s| s.overflow).count()
    );
}

#[test]
fn counters_stay_within_max_keys() {
    let clock = ManualClock::new();
    let l = MemoryLimiter::new(Arc::new(clock.clone()), 5);
    let spec = Spec::new(Algorithm::Compact, 1000, 1000, false);
    for k in 0..100u64 {
        assert!(decide(&l, &[k], &[k], &[spec], 1, true).0);
        clock.advance(std::time::Duration::from_millis(1));
        let slab = l.slots.lock().unwrap();
        assert!(slab.identities() <= 5);
        // Plus one overflow counter for the one rule.
        assert!(slab.slots.len() <= 6);
    }
    // The first five kept their counters; the other 95 shared the overflow one.
    let (_, outs) = decide(&l, &[0], &[0], &[spec], 1, false);
    assert_eq!((outs[0].remaining, outs[0].overflow), (999, false));
    let (_, outs) = decide(&l, &[99], &[99], &[spec], 1, false);
    assert_eq!((outs[0].remaining, outs[0].overflow), (905, true));
    assert_consistent(&l);
    // Once windows pass, expired counters make room again: a new identity gets its
    // own counter.
    clock.advance(std::time::Duration::from_secs(2));
    let (ok, outs) = decide(&l, &[500], &[500], &[spec], 1, true);
    assert!(ok);
    assert_eq!((outs[0].remaining, outs[0].overflow), (999, false));
    assert_consistent(&l);
}

#[test]
fn a_flood_of_new_identities_resets_no_live_counter() {
    // Regression: a full table used to evict the live counter expiring soonest, so a
    // client inventing identities could wipe its own exhausted counter.
    let clock = ManualClock::new();
    let l = MemoryLimiter::new(Arc::new(clock.clone()), 100);
    let spec = Spec::new(Algorithm::Exact, 3, 60_000, false);
    for _ in 0..3 {
        assert!(decide(&l, &[1], &[1], &[spec], 1, true).0);
    }
    assert!(!decide(&l, &[1], &[1], &[spec], 1, true).0);
    // Later identities expire later than counter 1: under the old policy it was the
    // first to go.
    clock.advance(std::time::Duration::from_millis(10));
    for k in 1_000..11_000u64 {
        decide(&l, &[k], &[k], &[spec], 1, true);
        let (ok, outs) = decide(&l, &[1], &[1], &[spec], 1, true);
        assert!(!ok, "counter 1 was reset after {k}");
        assert_eq!(outs[0].remaining, 0);
    }
    assert!(l.slots.lock().unwrap().identities() <= 100);
    assert_consistent(&l);
}

#[test]
fn overflow_counter_limits_new_identities_together_per_rule() {
    let clock = ManualClock::new();
    let l = MemoryLimiter::new(Arc::new(clock.clone()), 3);
    let tenant = Spec::new(Algorithm::Compact, 100, 60_000, false);
    let user = Spec::new(Algorithm::Gcra, 3, 60_000, false);
    // One tenant (key 1), two users (keys 10, 11): three counters, the table is full.
    assert!(decide(&l, &[1, 10], &[1, 10], &[tenant, user], 1, true).0);
    assert!(decide(&l, &[1, 11], &[1, 11], &[tenant, user], 1, true).0);
    let total = |l: &MemoryLimiter| l.slots.lock().unwrap().slots.len();
    assert_eq!(total(&l), 3);
    // New users share the user rule's overflow counter (limit 3 between them);
    // the tenant keeps its own counter.
    for (n, k) in (20..23u64).enumerate() {
        let (ok, outs) = decide(&l, &[1, k], &[1, k], &[tenant, user], 1, true);
        assert!(ok, "new user {n}");
        assert!(!outs[0].overflow && outs[1].overflow);
        assert_eq!(outs[1].remaining, 2 - n as u32);
    }
    let (ok, outs) = decide(&l, &[1, 99], &[1, 99], &[tenant, user], 1, true);
    assert!(!ok && outs[1].overflow && !outs[1].allowed);
    // A peek reports the same.
    let (ok, outs) = decide(&l, &[1, 98], &[1, 98], &[tenant, user], 1, false);
    assert!(!ok && outs[1].overflow);
    // Known users are unaffected, and resetting one leaves the overflow counter.
    let (ok, outs) = decide(&l, &[1, 10], &[1, 10], &[tenant, user], 1, true);
    assert!(ok && !outs[1].overflow);
    assert_eq!(l.reset_owners(&[10]), 1);
    assert_consistent(&l);
    assert_eq!(total(&l), 3); // 2 identities + 1 overflow
    // The freed place goes to the next new identity.
    let (ok, outs) = decide(&l, &[1, 30], &[1, 30], &[tenant, user], 1, true);
    assert!(ok && !outs[1].overflow);
    assert_consistent(&l);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn bounded_and_consistent_under_any_arrivals(
        max in 1usize..8,
        ops in proptest::collection::vec((0u64..20, 0u64..300, any::<bool>(), 0u8..10), 1..300),
    ) {
        let clock = ManualClock::new();
        let l = MemoryLimiter::new(Arc::new(clock.clone()), max);
        let specs = [
            Spec::new(Algorithm::Exact, 2, 100, false),
            Spec::new(Algorithm::Compact, 3, 250, false),
            Spec::new(Algorithm::Gcra, 2, 50, false),
        ];
        for (key, gap, commit, op) in ops {
            clock.advance(std::time::Duration::from_millis(gap));
            if op == 0 {
                l.reset_owners(&[key]);
            } else {
                let spec = specs[usize::from(op) % 3];
                decide(&l, &[key], &[key], &[spec], 1, commit);
            }
            prop_assert!(l.slots.lock().unwrap().identities() <= max);
            assert_consistent(&l);
        }
    }
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
fn gcra_outcomes_are_exact_at_any_start_time() {
    // Found by mutation testing: every figure of every outcome, away from time zero
    // (where `now + x` and `now * x` look alike). 20 per 2 s: T = 100 ms.
    let (l, clock) = limiter();
    clock.set_ms(1_000_000);
    let spec = Spec::new(Algorithm::Gcra, 20, 2_000, false);
    for i in 0..20u64 {
        let (ok, outs) = decide(&l, &[1], &[1], &[spec], 1, true);
        let o = &outs[0];
        assert!(ok && o.allowed, "burst unit {i}");
        assert_eq!(o.retry_ms, Some(0));
        assert_eq!(u64::from(o.remaining), 19 - i);
        // Charged: full again (i + 1) * T from now; one unit short only at the end.
        assert_eq!(o.reset_ms, (i + 1) * 100, "unit {i}");
        assert_eq!(o.free1_ms, if i == 19 { 100 } else { 0 }, "unit {i}");
    }
    // Denied (nothing charged): the same figures, read before any commit.
    let (ok, outs) = decide(&l, &[1], &[1], &[spec], 1, true);
    let o = &outs[0];
    assert!(!ok && !o.allowed);
    assert_eq!(
        (o.remaining, o.reset_ms, o.retry_ms, o.free1_ms),
        (0, 2_000, Some(100), 100)
    );
    // A peek after 250 ms: 2.5 units back.
    clock.advance(std::time::Duration::from_millis(250));
    let (ok, outs) = decide(&l, &[1], &[1], &[spec], 3, false);
    let o = &outs[0];
    assert!(!ok);
    assert_eq!(
        (o.remaining, o.reset_ms, o.retry_ms, o.free1_ms),
        (2, 1_750, Some(50), 0)
    );
    // The whole limit fits again exactly when the burst is full again, not 1 ms before.
    clock.advance(std::time::Duration::from_millis(1_749));
    assert!(!decide(&l, &[1], &[1], &[spec], 20, false).0);
    clock.advance(std::time::Duration::from_millis(1));
    let (ok, outs) = decide(&l, &[1], &[1], &[spec], 20, true);
    assert!(ok);
    assert_eq!((outs[0].remaining, outs[0].reset_ms), (0, 2_000));
    // A cost of exactly the limit fits a fresh counter.
    let (ok, outs) = decide(&l, &[2], &[2], &[spec], 20, true);
    assert!(ok);
    assert_eq!((outs[0].retry_ms, outs[0].free1_ms), (Some(0), 100));
}

/// `(allowed, remaining, reset_ms, retry_ms, free1_ms)` of a one-rule check.
fn figures(
    l: &MemoryLimiter,
    spec: Spec,
    cost: u32,
    commit: bool,
) -> (bool, u32, u64, Option<u64>, u64) {
    let (ok, outs) = decide(l, &[1], &[1], &[spec], cost, commit);
    let o = &outs[0];
    assert_eq!(ok, o.allowed);
    (o.allowed, o.remaining, o.reset_ms, o.retry_ms, o.free1_ms)
}

#[test]
fn exact_log_outcomes_are_exact_at_any_start_time() {
    // Found by mutation testing: every figure, away from time zero. 3 per second.
    let (l, clock) = limiter();
    let t0 = 1_000_000;
    clock.set_ms(t0);
    let spec = Spec::new(Algorithm::Exact, 3, 1_000, false);
    let at = |ms: u64| clock.set_ms(t0 + ms);
    assert_eq!(figures(&l, spec, 1, true), (true, 2, 1_000, Some(0), 0));
    at(100);
    assert_eq!(figures(&l, spec, 1, true), (true, 1, 1_000, Some(0), 0));
    at(200);
    // The last unit: the first one frees at t0 + 1000.
    assert_eq!(figures(&l, spec, 1, true), (true, 0, 1_000, Some(0), 800));
    at(300);
    assert_eq!(figures(&l, spec, 1, true), (false, 0, 900, Some(700), 700));
    // Two units wait for the second-oldest entry.
    assert_eq!(figures(&l, spec, 2, false), (false, 0, 900, Some(800), 700));
    at(999);
    assert_eq!(figures(&l, spec, 1, false), (false, 0, 201, Some(1), 1));
    // An entry leaves the window exactly `window` after it came.
    at(1_000);
    assert_eq!(figures(&l, spec, 1, false), (true, 1, 200, Some(0), 0));
    assert_eq!(figures(&l, spec, 2, false), (false, 1, 200, Some(100), 0));
}

#[test]
fn compact_outcomes_are_exact_at_any_start_time() {
    // Found by mutation testing. 3 per second in 30 buckets of 33.334 ms (31 with
    // the current one); t0 starts bucket 30000 exactly.
    let (l, clock) = limiter();
    let t0 = 1_000_020;
    clock.set_ms(t0);
    let spec = Spec::new(Algorithm::Compact, 3, 1_000, false);
    assert_eq!((spec.bucket_us, spec.n), (33_334, 30));
    let at = |ms: u64| clock.set_ms(t0 + ms);
    // Bucket 30000: the window ends 31 buckets on (1033.354 ms).
    assert_eq!(figures(&l, spec, 1, true), (true, 2, 1_034, Some(0), 0));
    at(34); // bucket 30001
    assert_eq!(figures(&l, spec, 1, true), (true, 1, 1_033, Some(0), 0));
    // Bucket 30002, full: one unit is free when bucket 30000 leaves (at 30031).
    at(67);
    assert_eq!(figures(&l, spec, 1, true), (true, 0, 1_034, Some(0), 967));
    assert_eq!(
        figures(&l, spec, 1, true),
        (false, 0, 1_034, Some(967), 967)
    );
    // Two units: when bucket 30001 leaves too.
    assert_eq!(
        figures(&l, spec, 2, false),
        (false, 0, 1_034, Some(1_000), 967)
    );
    // Honest to the millisecond.
    at(67 + 966);
    assert!(!figures(&l, spec, 1, false).0);
    at(67 + 967);
    assert_eq!(figures(&l, spec, 1, false), (true, 1, 67, Some(0), 0));
    // The counter lives until its last bucket (30002) leaves the window: until
    // t0 + 67 + 1034 ms, 31 buckets on (ceil), not 30.
    at(1_080);
    assert_eq!(figures(&l, spec, 1, false), (true, 2, 21, Some(0), 0));
    at(1_101);
    assert_eq!(figures(&l, spec, 1, false), (true, 3, 0, Some(0), 0));
}

#[test]
fn new_identities_of_one_check_share_the_last_room() {
    // Found by mutation testing: room for one counter, two rules of one check without
    // a counter: the first gets it, the second the overflow counter.
    let clock = ManualClock::new();
    let l = MemoryLimiter::new(Arc::new(clock.clone()), 1);
    let spec = Spec::new(Algorithm::Exact, 5, 1_000, false);
    let (ok, outs) = decide(&l, &[1, 2], &[1, 2], &[spec, spec], 1, true);
    assert!(ok);
    assert_eq!((outs[0].overflow, outs[1].overflow), (false, true));
    assert_eq!(l.slots.lock().unwrap().identities(), 1);
    assert_consistent(&l);
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
