//! Memory of the `local` outage mode: what Redis last told this instance about each counter,
//! and the units admitted in process while Redis was unusable, until they are charged back.
//!
//! * **Seeds.** Every answer of the script leaves, per counter, the units Redis counted in
//!   the window and when the last of them leaves it (`used`, `reset`). While Redis is
//!   unusable a counter starts from that, not from zero: the instance may admit
//!   `(limit - used) / instances` more units per window until the seed has left, then
//!   `limit / instances` (at least 1 when nothing was used). With one instance, usage
//!   before and during the outage together stays within the limit in any window.
//! * **Local counters.** Admissions during the outage go into a compact sliding window of
//!   [`BUCKETS`] sub-windows, counted whole (never fewer than the true count).
//! * **Charge-back.** When Redis answers again, the units still in a counter's window are
//!   added to the Redis counter (with the next script call for that key, or by a sweep),
//!   so the window that spans the return does not admit them twice.
//!
//! Memory is bounded: at most `capacity` counters, kept in two generations. When the
//! current one is full it becomes the old one and the old one is dropped; a counter used
//! again is moved to the current one. So a counter survives while it is used at least once
//! per `capacity / 2` newly seen counters; hostile clients inventing ids can only push out
//! counters not used for that long. A forgotten counter starts from zero in an outage (its
//! instance may then admit `limit / instances` on top of what Redis admitted in the window)
//! and its uncharged local units are lost (Redis then counts less than was admitted).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nohash_hasher::BuildNoHashHasher;

use super::memory::{Rules, Spec};
use crate::keys::RedisKey;

/// Sub-windows of a local counter's window.
pub(crate) const BUCKETS: u64 = 10;
/// Buckets a counter keeps: the window's and the one partly outside it.
const SLOTS: usize = BUCKETS as usize + 1;

type Map = HashMap<u64, Entry, BuildNoHashHasher<u64>>;

/// One counter as this instance knows it.
#[derive(Debug)]
struct Entry {
    /// Redis `TIME` (ms) of the answer: a late answer never replaces a newer one.
    redis_ms: u64,
    /// Units Redis counted in the window as of the answer.
    used: u32,
    /// When they have all left the window (the answer's arrival + its reset).
    until: Instant,
    /// Units admitted in process while Redis was unusable, not yet charged back.
    local: Option<Box<LocalCounter>>,
}

impl Entry {
    fn empty(now: Instant) -> Self {
        Self {
            redis_ms: 0,
            used: 0,
            until: now,
            local: None,
        }
    }

    /// The seed's units still counted at `now`.
    fn seed(&self, now: Instant) -> u32 {
        if now < self.until {
            self.used
        } else {
            0
        }
    }
}

/// Units admitted in process for one counter, in a sliding window of [`BUCKETS`] buckets.
#[derive(Debug)]
struct LocalCounter {
    /// The Redis counter they are charged to.
    key: RedisKey,
    /// Its rule as applied (algorithm, limit, window).
    spec: Spec,
    bucket_ns: u64,
    /// Index of the newest bucket (since the memory's origin).
    head: u64,
    /// Counts by bucket index modulo [`SLOTS`].
    counts: [u32; SLOTS],
    /// Whether a script call is charging these units to Redis now.
    in_flight: bool,
    /// Units admitted while that call runs (not part of its charge).
    during_flight: u32,
}

impl LocalCounter {
    fn new(key: RedisKey, spec: Spec) -> Self {
        let window_ns = spec.window_ms.max(1).saturating_mul(1_000_000);
        Self {
            key,
            spec,
            bucket_ns: window_ns.div_ceil(BUCKETS).max(1),
            head: 0,
            counts: [0; SLOTS],
            in_flight: false,
            during_flight: 0,
        }
    }

    fn bucket(&self, since_origin: Duration) -> u64 {
        u64::try_from(since_origin.as_nanos()).unwrap_or(u64::MAX) / self.bucket_ns
    }

    /// Moves the newest bucket to `cur`, emptying the buckets that start again.
    fn advance(&mut self, cur: u64) {
        if cur <= self.head {
            return;
        }
        let steps = (cur - self.head).min(SLOTS as u64);
        for j in cur + 1 - steps..=cur {
            self.counts[(j % SLOTS as u64) as usize] = 0;
        }
        self.head = cur;
    }

    /// Units in buckets that overlap the window ending in bucket `cur` (every bucket from
    /// `cur - BUCKETS` on: an admission is counted at least one full window).
    fn count_at(&self, cur: u64) -> u64 {
        let cur = cur.max(self.head);
        let from = cur.saturating_sub(BUCKETS);
        let oldest = self.head.saturating_sub(SLOTS as u64 - 1);
        (from.max(oldest)..=self.head)
            .map(|j| u64::from(self.counts[(j % SLOTS as u64) as usize]))
            .sum()
    }

    /// When (since the origin) bucket `j` has left every window.
    fn leaves(&self, j: u64) -> Duration {
        Duration::from_nanos((j + BUCKETS + 1).saturating_mul(self.bucket_ns))
    }

    /// Indices of the buckets holding units, oldest first.
    fn nonempty(&self) -> impl Iterator<Item = u64> + '_ {
        let oldest = self.head.saturating_sub(SLOTS as u64 - 1);
        (oldest..=self.head).filter(|j| self.counts[(*j % SLOTS as u64) as usize] > 0)
    }

    fn add(&mut self, cur: u64, units: u32) {
        self.advance(cur);
        let slot = &mut self.counts[(self.head % SLOTS as u64) as usize];
        *slot = slot.saturating_add(units);
    }
}

/// One rule of a request decided in process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalRule<'a> {
    /// Seeded hash of the Redis key.
    pub(crate) hash: u64,
    pub(crate) key: &'a RedisKey,
    pub(crate) spec: &'a Spec,
}

/// What a rule decided in process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalOutcome {
    pub(crate) allowed: bool,
    /// This instance's share of the limit: `max(1, limit / instances)`.
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    /// Until the seed and the local units have all left the window.
    pub(crate) reset: Duration,
    /// Until the request would fit (`None`: not in process, the cost is above the share).
    pub(crate) retry: Option<Duration>,
}

#[derive(Debug, Default)]
struct Gens {
    cur: Map,
    old: Map,
}

/// Seeds and local counters of every rate-limit counter this instance used recently.
#[derive(Debug)]
pub(crate) struct OutageMemory {
    gens: Mutex<Gens>,
    /// Entries per generation.
    gen_cap: usize,
    /// Entries holding local units (skips the lock on the Redis path when 0).
    pending: AtomicUsize,
    origin: Instant,
}

impl OutageMemory {
    /// A memory of at most `capacity` counters (at least 2).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            gens: Mutex::new(Gens::default()),
            gen_cap: (capacity / 2).max(1),
            pending: AtomicUsize::new(0),
            origin: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gens> {
        self.gens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn since_origin(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    /// Counters held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let g = self.lock();
        g.cur.len() + g.old.len()
    }

    /// Counters with local units not yet charged back.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Makes `hash` current (moving it from the old generation, or inserting an empty
    /// entry if `insert`); returns whether it is there.
    fn touch(&self, g: &mut Gens, hash: u64, insert: bool, now: Instant) -> bool {
        if g.cur.contains_key(&hash) {
            return true;
        }
        let entry = match g.old.remove(&hash) {
            Some(e) => e,
            None if insert => Entry::empty(now),
            None => return false,
        };
        if g.cur.len() >= self.gen_cap {
            let dropped = std::mem::replace(&mut g.old, std::mem::take(&mut g.cur));
            let lost = dropped.values().filter(|e| e.local.is_some()).count();
            if lost > 0 {
                self.pending.fetch_sub(lost, Ordering::AcqRel);
                tracing::warn!(
                    counters = lost,
                    "rate-limit outage memory full: units admitted locally were not charged back"
                );
            }
        }
        g.cur.insert(hash, entry);
        true
    }

    /// Records Redis' answer for a counter: `used` units in the window, all gone `reset`
    /// after `now`; `redis_ms` is the answer's Redis time.
    pub(crate) fn record(
        &self,
        hash: u64,
        redis_ms: u64,
        used: u32,
        reset: Duration,
        now: Instant,
    ) {
        let mut g = self.lock();
        self.touch(&mut g, hash, true, now);
        let e = g.cur.get_mut(&hash).expect("touched");
        if redis_ms >= e.redis_ms {
            e.redis_ms = redis_ms;
            e.used = used;
            e.until = now + reset;
        }
    }

    /// Decides a request in process: every enforced rule must allow (shadow rules never
    /// block); then, if `commit`, each rule that allows is charged `cost` — the same
    /// all-or-nothing rule as the script. `instances` divides each limit.
    pub(crate) fn decide(
        &self,
        rules: &[LocalRule<'_>],
        cost: u32,
        commit: bool,
        instances: u32,
        now: Instant,
    ) -> (bool, Rules<LocalOutcome>) {
        let since = self.since_origin(now);
        let instances = instances.max(1);
        let cost64 = u64::from(cost);
        let mut g = self.lock();
        let mut outs: Rules<LocalOutcome> = Rules::new();
        let mut all = true;
        for r in rules {
            let entry = if self.touch(&mut g, r.hash, commit, now) {
                g.cur.get(&r.hash)
            } else {
                None
            };
            let seed = entry.map_or(0, |e| e.seed(now));
            let local = entry.and_then(|e| e.local.as_deref());
            let limit = r.spec.limit;
            let budget = |seed: u32| -> u64 {
                if seed == 0 {
                    u64::from((limit / instances).max(1))
                } else {
                    u64::from(limit.saturating_sub(seed) / instances)
                }
            };
            let bucket_of = |d: Duration| -> u64 {
                let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
                let bucket_ns = local.map_or(1, |c| c.bucket_ns);
                ns / bucket_ns
            };
            let count_at = |d: Duration| local.map_or(0, |c| c.count_at(bucket_of(d)));
            let count = count_at(since);
            let allowed = count + cost64 <= budget(seed);
            // Times at which something leaves: the seed's end and each bucket's.
            let seed_end = entry
                .filter(|e| e.used > 0 && now < e.until)
                .map(|e| self.since_origin(e.until));
            let mut ends: Rules<Duration> = local
                .map(|c| c.nonempty().map(|j| c.leaves(j)).collect())
                .unwrap_or_default();
            ends.extend(seed_end);
            ends.sort_unstable();
            let reset = ends
                .last()
                .map_or(Duration::ZERO, |e| e.saturating_sub(since));
            // None when allowed, or when the cost never fits in process.
            let retry = if allowed || cost64 > budget(0) {
                None
            } else {
                ends.iter()
                    .find(|&&t| {
                        let seed = seed_end
                            .filter(|&e| t < e)
                            .map_or(0, |_| entry.map_or(0, |e| e.used));
                        count_at(t) + cost64 <= budget(seed)
                    })
                    .map(|t| t.saturating_sub(since).max(Duration::from_millis(1)))
            };
            if !allowed && !r.spec.shadow {
                all = false;
            }
            let charged = commit && allowed;
            let remaining = budget(seed).saturating_sub(count + if charged { cost64 } else { 0 });
            outs.push(LocalOutcome {
                allowed,
                limit: (limit / instances).max(1),
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset,
                retry,
            });
        }
        if commit && all {
            for (r, o) in rules.iter().zip(&outs) {
                if !o.allowed {
                    continue;
                }
                // Touched again: touching a later rule may have aged this one.
                self.touch(&mut g, r.hash, true, now);
                let e = g.cur.get_mut(&r.hash).expect("touched");
                let c = e.local.get_or_insert_with(|| {
                    self.pending.fetch_add(1, Ordering::AcqRel);
                    Box::new(LocalCounter::new(r.key.clone(), *r.spec))
                });
                let cur = c.bucket(since);
                c.add(cur, cost);
                if c.in_flight {
                    c.during_flight = c.during_flight.saturating_add(cost);
                }
            }
        }
        (all, outs)
    }

    /// Starts charging the local counters of `hashes` back: returns the units each holds
    /// in its window (0: none, or already being charged by another call). The counters
    /// stay in place while the call runs, so decisions made meanwhile still see them;
    /// finish with [`end_charge`](Self::end_charge).
    pub(crate) fn begin_charge(&self, hashes: &[u64], now: Instant) -> Rules<u32> {
        let since = self.since_origin(now);
        let mut g = self.lock();
        let Gens { cur, old } = &mut *g;
        let mut out = Rules::new();
        for h in hashes {
            let e = cur.get_mut(h).or_else(|| old.get_mut(h));
            out.push(e.map_or(0, |e| self.begin(e, since)));
        }
        out
    }

    fn begin(&self, e: &mut Entry, since: Duration) -> u32 {
        let Some(c) = e.local.as_deref_mut().filter(|c| !c.in_flight) else {
            return 0;
        };
        let units = c.count_at(c.bucket(since));
        if units == 0 {
            // Everything admitted locally has left the window: nothing to charge.
            e.local = None;
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return 0;
        }
        c.in_flight = true;
        c.during_flight = 0;
        u32::try_from(units).unwrap_or(u32::MAX)
    }

    /// Like [`begin_charge`](Self::begin_charge) for up to `max` counters of any keys (the
    /// sweep after Redis returns): (hash, key, rule, units).
    pub(crate) fn begin_charge_some(
        &self,
        max: usize,
        now: Instant,
    ) -> Vec<(u64, RedisKey, Spec, u32)> {
        let since = self.since_origin(now);
        let mut g = self.lock();
        let Gens { cur, old } = &mut *g;
        let mut out = Vec::new();
        for (h, e) in cur.iter_mut().chain(old.iter_mut()) {
            if out.len() >= max {
                break;
            }
            let units = self.begin(e, since);
            if let (Some(c), true) = (&e.local, units > 0) {
                out.push((*h, c.key.clone(), c.spec, units));
            }
        }
        out
    }

    /// Ends a charge begun for `hash`: if Redis took it (`ok`), the counter keeps only
    /// what was admitted locally while the call ran (nothing: it goes); otherwise it is
    /// kept whole for a later charge.
    pub(crate) fn end_charge(&self, hash: u64, ok: bool, now: Instant) {
        let since = self.since_origin(now);
        let mut g = self.lock();
        let Gens { cur, old } = &mut *g;
        let Some(e) = cur.get_mut(&hash).or_else(|| old.get_mut(&hash)) else {
            return; // forgotten meanwhile
        };
        let Some(c) = e.local.as_deref_mut().filter(|c| c.in_flight) else {
            return;
        };
        c.in_flight = false;
        if !ok {
            return;
        }
        let kept = std::mem::take(&mut c.during_flight);
        if kept == 0 {
            e.local = None;
            self.pending.fetch_sub(1, Ordering::AcqRel);
        } else {
            c.counts = [0; SLOTS];
            let cur = c.bucket(since);
            c.add(cur, kept);
        }
    }
}

#[cfg(test)]
mod tests {
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
}
