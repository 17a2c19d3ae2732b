use super::*;
use crate::keys::Keys;
use crate::ratelimit::rules::Algorithm;
use crate::tenant::TenantId;

fn key(i: u32) -> RedisKey {
    Keys::default().ratelimit(
        &TenantId::new("acme").unwrap(),
        "r",
        "user",
        &i.to_string(),
        None,
    )
}

fn spec(limit: u32, window_ms: u64) -> Spec {
    Spec::new(Algorithm::Compact, limit, window_ms, false)
}

fn admit(m: &OutageMemory, h: u64, k: &RedisKey, s: &Spec, n: u32, at: Instant) -> bool {
    let rule = LocalRule {
        hash: h,
        key: k,
        spec: s,
    };
    m.decide(&[rule], 1, true, n, at).0
}

fn admitted(m: &OutageMemory, h: u64, k: &RedisKey, s: &Spec, n: u32, at: Instant) -> u32 {
    (0..1000).map(|_| u32::from(admit(m, h, k, s, n, at))).sum()
}

#[test]
fn a_seed_counts_until_its_reset_then_the_share_is_whole_again() {
    let m = OutageMemory::new(100);
    let t0 = Instant::now();
    let (k, s) = (key(1), spec(50, 5_000));
    // Redis said: 40 of 50 used, the last of them leaves in 3 s.
    m.record(1, 10, 40, Duration::from_secs(3), t0);
    assert_eq!(admitted(&m, 1, &k, &s, 1, t0), 10);
    // After the seed left, the local units (10, counted whole for a window) remain.
    let t1 = t0 + Duration::from_millis(3_100);
    assert_eq!(admitted(&m, 1, &k, &s, 1, t1), 40);
    // Two instances: each gets half of what is left.
    let m = OutageMemory::new(100);
    m.record(1, 10, 30, Duration::from_secs(3), t0);
    assert_eq!(admitted(&m, 1, &k, &s, 2, t0), 10);
}

/// Most of the sorted `times` in any window `(t - window, t]`.
fn max_in_window(times: &[Duration], window: Duration) -> usize {
    (0..times.len())
        .map(|hi| hi + 1 - times.partition_point(|&t| t + window <= times[hi]))
        .max()
        .unwrap_or(0)
}

#[test]
fn max_in_window_counts_the_busiest_window() {
    let ms = |v: &[u64]| {
        v.iter()
            .map(|&m| Duration::from_millis(m))
            .collect::<Vec<_>>()
    };
    let second = Duration::from_secs(1);
    assert_eq!(max_in_window(&ms(&[0, 100, 999, 1000, 1001]), second), 4);
    assert_eq!(max_in_window(&ms(&[0, 1000, 2000]), second), 1);
    assert_eq!(max_in_window(&[], second), 0);
}

#[test]
fn no_window_holds_more_than_the_limit_with_one_instance() {
    let m = OutageMemory::new(100);
    let t0 = Instant::now();
    let (k, s) = (key(1), spec(50, 5_000));
    m.record(1, 10, 50, Duration::from_millis(4_000), t0);
    // One attempt every 10 ms for 20 s; the seed's 50 units count until 4 s.
    // On a time line where t0 is 1 s: Redis admitted its 50 at 0 s at the latest.
    let mut times: Vec<Duration> = vec![Duration::ZERO; 50];
    for i in 0..2_000u64 {
        let at = Duration::from_millis(i * 10);
        if admit(&m, 1, &k, &s, 1, t0 + at) {
            times.push(at + Duration::from_secs(1));
        }
    }
    times.sort();
    let most = max_in_window(&times, Duration::from_secs(5));
    assert!(most <= 50, "{most}");
    assert!(times.len() > 150, "{} admitted", times.len());
}

#[test]
fn a_late_answer_does_not_replace_a_newer_one() {
    let m = OutageMemory::new(100);
    let t0 = Instant::now();
    let (k, s) = (key(1), spec(10, 60_000));
    m.record(1, 20, 9, Duration::from_secs(60), t0);
    m.record(1, 19, 1, Duration::from_secs(60), t0);
    assert_eq!(admitted(&m, 1, &k, &s, 1, t0), 1);
}

#[test]
fn a_charge_takes_the_units_in_the_window_and_keeps_those_admitted_meanwhile() {
    let m = OutageMemory::new(100);
    let t0 = Instant::now();
    let (k, s) = (key(1), spec(100, 1_000));
    for _ in 0..7 {
        assert!(admit(&m, 1, &k, &s, 1, t0));
    }
    assert_eq!(m.pending(), 1);
    // Nothing to charge for an unknown key; the 7 for the known one.
    assert_eq!(m.begin_charge(&[1, 2], t0).as_slice(), [7, 0]);
    // While the call runs: not charged twice, and still counted locally.
    assert_eq!(m.begin_charge(&[1], t0).as_slice(), [0]);
    assert!(m.begin_charge_some(10, t0).is_empty());
    assert_eq!(admitted(&m, 1, &k, &s, 1, t0), 93);
    // The call failed: everything stays for the next one.
    m.end_charge(1, false, t0);
    assert_eq!(m.begin_charge(&[1], t0).as_slice(), [100]);
    // This one succeeded: nothing was admitted meanwhile, so the counter goes.
    m.end_charge(1, true, t0);
    assert_eq!(m.pending(), 0);
    assert_eq!(admitted(&m, 1, &k, &s, 1, t0), 100);
    // Admissions during a successful call are kept for the next charge.
    let (h, _, _, units) = m.begin_charge_some(10, t0).pop().unwrap();
    assert_eq!((h, units), (1, 100));
    m.decide(
        &[LocalRule {
            hash: 1,
            key: &k,
            spec: &s,
        }],
        1,
        true,
        1,
        t0 + Duration::from_millis(1_200),
    );
    m.end_charge(1, true, t0 + Duration::from_millis(1_200));
    assert_eq!(m.pending(), 1);
    let later = t0 + Duration::from_millis(1_300);
    assert_eq!(m.begin_charge(&[1], later).as_slice(), [1]);
    // Units that left the window are not charged: the counter just goes.
    m.end_charge(1, false, later);
    assert_eq!(
        m.begin_charge(&[1], later + Duration::from_secs(2))
            .as_slice(),
        [0]
    );
    assert_eq!(m.pending(), 0);
}

#[test]
fn memory_is_bounded_and_recently_used_counters_survive() {
    let m = OutageMemory::new(1_000);
    let t0 = Instant::now();
    m.record(u64::MAX, 1, 10, Duration::from_secs(60), t0);
    for i in 0..100_000u64 {
        m.record(i, 1, 1, Duration::from_secs(60), t0);
        if i % 400 == 0 {
            // The legitimate counter is answered now and then.
            m.record(u64::MAX, 2, 10, Duration::from_secs(60), t0);
        }
        assert!(m.len() <= 1_000);
    }
    let (k, s) = (key(9), spec(10, 60_000));
    assert_eq!(admitted(&m, u64::MAX, &k, &s, 1, t0), 0, "seed kept");
    // A counter invented long ago is forgotten: it starts from zero.
    assert_eq!(admitted(&m, 3, &k, &s, 1, t0), 10);
}

#[test]
fn all_or_nothing_across_rules() {
    let m = OutageMemory::new(100);
    let t0 = Instant::now();
    let (k1, k2) = (key(1), key(2));
    let (wide, narrow) = (spec(100, 1_000), spec(2, 1_000));
    let rules = [
        LocalRule {
            hash: 1,
            key: &k1,
            spec: &wide,
        },
        LocalRule {
            hash: 2,
            key: &k2,
            spec: &narrow,
        },
    ];
    let allowed: Vec<bool> = (0..4).map(|_| m.decide(&rules, 1, true, 1, t0).0).collect();
    assert_eq!(allowed, [true, true, false, false]);
    let (_, outs) = m.decide(&rules, 1, false, 1, t0);
    assert_eq!(outs[0].remaining, 98, "denied requests charged nothing");
    assert!(outs[1].retry.unwrap() > Duration::from_millis(900));
}
