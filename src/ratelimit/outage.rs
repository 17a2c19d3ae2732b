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
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nohash_hasher::BuildNoHashHasher;

/// What the limiter does while Redis is unusable (errors, timeouts, breaker open).
///
/// ```
/// use tenant_guard::config::Config;
/// use tenant_guard::ratelimit::OutageMode;
/// assert_eq!(OutageMode::default(), OutageMode::Local);
/// assert_eq!("open".parse::<OutageMode>().unwrap(), OutageMode::Open);
/// let c = Config::from_vars([("RATE_LIMIT_OUTAGE", "closed")]).unwrap();
/// assert_eq!(c.rate_limit.outage, OutageMode::Closed);
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, strum::EnumString, strum::Display,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
pub enum OutageMode {
    /// Allow every request (logged and counted).
    Open,
    /// Refuse every request with 503.
    Closed,
    /// Enforce each rule in process (a sliding window per counter), starting from the
    /// last answer Redis gave this instance for that counter: each instance may admit
    /// `(limit - used) / RATE_LIMIT_INSTANCES` per window while Redis' `used` units are
    /// still in it, then `limit / RATE_LIMIT_INSTANCES`. Units admitted in process are
    /// charged to Redis when it answers again. The default: limits keep holding.
    #[default]
    Local,
}

use super::algo::Rules;
use super::algo::Spec;
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
        if now < self.until { self.used } else { 0 }
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
mod tests;
