//! The lease table: per hot counter, the slice of a counter's remaining
//! quota reserved in the script call of a check (mode `lease`), then admitted from in
//! process until spent or the lease ends, when unused units go back to Redis (a `refund` at
//! the reservation's time, from the bucket that holds it).
//!
//! Why nothing over-admits: a reservation is charged to the compact bucket of its time; a
//! lease ends before that bucket does (and before `ttl`), measured from when the call was
//! sent, which precedes the script's clock. A window that holds a leased admission therefore
//! overlaps that bucket, and the compact window counts every bucket it overlaps: it counts
//! the reservation, which covers the admission. Reserved units are admitted units.
//!
//! The table is bounded ([`MAX_LEASED`] counters): a flood of distinct identities on a leased
//! rule fills it with entries that hold nothing, swept at most every 100 ms; while it is full,
//! new counters simply ask Redis on every check, as without leases.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::keys::RedisKey;
use crate::ratelimit::Lease;
use crate::ratelimit::algo::{Outcome, Rules, Spec};

/// Most counters the table tracks.
pub(crate) const MAX_LEASED: usize = 10_000;

/// A reservation in flight older than this is taken as lost (its check was dropped).
const STALE_REFILL: Duration = Duration::from_secs(2);

/// One rule of a check, as leases see it.
#[derive(Debug, Clone, Copy)]
pub(in crate::ratelimit::limiter) struct LeaseRule<'a> {
    /// Seeded hash of the counter (as the in-process store names it).
    pub(in crate::ratelimit::limiter) hash: u64,
    pub(in crate::ratelimit::limiter) lease: &'a Lease,
}

/// What a check took from one lease.
#[derive(Debug, Clone, Copy)]
pub(in crate::ratelimit::limiter) struct Taken {
    /// Units left: in Redis after the reservation, plus in this lease.
    pub(in crate::ratelimit::limiter) remaining: u32,
    pub(in crate::ratelimit::limiter) reset: Duration,
    /// The store's time of the reservation, ms.
    pub(in crate::ratelimit::limiter) at_ms: u64,
}

/// Units of an ended lease to give back: the counter, its rule, when they were reserved.
#[derive(Debug)]
pub(in crate::ratelimit::limiter) struct Unused {
    pub(in crate::ratelimit::limiter) key: RedisKey,
    pub(in crate::ratelimit::limiter) spec: Spec,
    pub(in crate::ratelimit::limiter) at_ms: u64,
    pub(in crate::ratelimit::limiter) units: u32,
}

/// A lease granted by a reply, for its expiry timer.
#[derive(Debug, Clone, Copy)]
pub(in crate::ratelimit::limiter) struct Granted {
    pub(in crate::ratelimit::limiter) hash: u64,
    pub(in crate::ratelimit::limiter) generation: u64,
    pub(in crate::ratelimit::limiter) until: Instant,
}

#[derive(Debug)]
struct Held {
    generation: u64,
    left: u32,
    granted: u32,
    until: Instant,
    at_ms: u64,
    /// Units Redis had left after the reservation.
    remote: u32,
    reset_at: Instant,
    key: RedisKey,
    spec: Spec,
}

#[derive(Debug)]
struct Entry {
    held: Option<Held>,
    /// Units asked of this counter through the store since `since` (its demand).
    seen: u32,
    since: Instant,
    /// The slice the next reservation asks for (adapted to what leases used).
    next: u32,
    /// A reservation is in flight (since then).
    refilling: Option<Instant>,
}

impl Entry {
    fn idle(&self, now: Instant, ttl: Duration) -> bool {
        self.held.is_none()
            && self.refilling.is_none()
            && now.saturating_duration_since(self.since) > ttl
    }
}

/// The leases of one limiter.
#[derive(Debug)]
pub(in crate::ratelimit::limiter) struct Leases {
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    entries: HashMap<u64, Entry>,
    next_gen: u64,
    last_sweep: Option<Instant>,
    /// Longest lease of any rule (entries idle longer are swept).
    ttl: Duration,
}

impl Leases {
    pub(in crate::ratelimit::limiter) fn new(ttl: Duration) -> Self {
        Self {
            table: Mutex::new(Table {
                entries: HashMap::new(),
                next_gen: 1,
                last_sweep: None,
                ttl,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a check of `cost` from the leases of all its `rules`, if each holds a live
    /// one with `cost` units left: all or nothing.
    pub(in crate::ratelimit::limiter) fn take(
        &self,
        rules: &[LeaseRule<'_>],
        cost: u32,
        now: Instant,
    ) -> Option<Rules<Taken>> {
        let mut t = self.lock();
        for r in rules {
            let h = t.entries.get(&r.hash)?.held.as_ref()?;
            if h.left < cost || now >= h.until {
                return None;
            }
        }
        let mut out = Rules::new();
        for r in rules {
            let h = t
                .entries
                .get_mut(&r.hash)
                .and_then(|e| e.held.as_mut())
                .expect("checked above");
            h.left -= cost;
            out.push(Taken {
                remaining: h.remote.saturating_add(h.left),
                reset: h.reset_at.saturating_duration_since(now),
                at_ms: h.at_ms,
            });
        }
        Some(out)
    }

    /// For a check of `cost` going to the store: the units to reserve per rule (all 0: a
    /// plain check). Counts the demand, and marks the counters whose reservation is now in
    /// flight. A counter asked for once per lease length reserves nothing.
    pub(in crate::ratelimit::limiter) fn plan(
        &self,
        rules: &[LeaseRule<'_>],
        cost: u32,
        now: Instant,
    ) -> Rules<u32> {
        let mut t = self.lock();
        if t.entries.len() >= MAX_LEASED {
            t.sweep(now);
        }
        let mut out = Rules::new();
        for r in rules {
            let ttl = r.lease.ttl;
            let full = t.entries.len() >= MAX_LEASED;
            let e = match t.entries.get_mut(&r.hash) {
                Some(e) => e,
                None if full => {
                    out.push(0);
                    continue;
                }
                None => t.entries.entry(r.hash).or_insert(Entry {
                    held: None,
                    seen: 0,
                    since: now,
                    next: 0,
                    refilling: None,
                }),
            };
            if now.saturating_duration_since(e.since) > ttl {
                e.seen = 0;
                e.since = now;
            }
            e.seen = e.seen.saturating_add(cost);
            let in_flight = e
                .refilling
                .is_some_and(|s| now.saturating_duration_since(s) < STALE_REFILL);
            let usable = e
                .held
                .as_ref()
                .is_some_and(|h| h.left >= cost && now < h.until);
            // Demand: more than the check's own cost within one lease length.
            let want = if in_flight || usable || e.seen <= cost {
                0
            } else {
                e.next.max(e.seen).min(r.lease.units.get())
            };
            if want > 0 {
                e.refilling = Some(now);
            }
            out.push(want);
        }
        out
    }

    /// Installs the leases a reply granted (`reserved` units per rule, `asked` of them),
    /// each until the earliest of `ttl` and the end of its reservation's compact bucket,
    /// counted from `sent`. Returns the leases granted (for their expiry) and the unused
    /// units of leases they replace (to give back).
    #[allow(clippy::too_many_arguments)]
    pub(in crate::ratelimit::limiter) fn grant(
        &self,
        rules: &[LeaseRule<'_>],
        asked: &[u32],
        outs: &[Outcome],
        keys: &[RedisKey],
        specs: &[Spec],
        sent: Instant,
        redis_ms: u64,
    ) -> (Rules<Granted>, Vec<Unused>) {
        let mut t = self.lock();
        let mut granted = Rules::new();
        let mut unused = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if asked.get(i).copied().unwrap_or(0) == 0 {
                continue;
            }
            let generation = t.next_gen;
            t.next_gen += 1;
            let Some(e) = t.entries.get_mut(&r.hash) else {
                continue;
            };
            e.refilling = None;
            let (Some(o), Some(key), Some(spec)) = (outs.get(i), keys.get(i), specs.get(i)) else {
                continue;
            };
            if o.reserved == 0 {
                continue;
            }
            // The slice adapts: doubled after a lease that ran out, what was used otherwise.
            if let Some(old) = e.held.take() {
                e.next = if old.left == 0 {
                    old.granted.saturating_mul(2)
                } else {
                    old.granted - old.left
                };
                if old.left > 0 {
                    unused.push(Unused {
                        key: old.key,
                        spec: old.spec,
                        at_ms: old.at_ms,
                        units: old.left,
                    });
                }
            } else {
                e.next = o.reserved;
            }
            let bucket_left = bucket_left(spec, redis_ms);
            let until = sent + r.lease.ttl.min(bucket_left);
            e.held = Some(Held {
                generation,
                left: o.reserved,
                granted: o.reserved,
                until,
                at_ms: redis_ms,
                remote: o.remaining,
                reset_at: sent + Duration::from_millis(o.reset_ms),
                key: key.clone(),
                spec: *spec,
            });
            granted.push(Granted {
                hash: r.hash,
                generation,
                until,
            });
        }
        (granted, unused)
    }

    /// A check that asked for reservations failed: none is in flight any more.
    pub(in crate::ratelimit::limiter) fn abort(&self, rules: &[LeaseRule<'_>], asked: &[u32]) {
        let mut t = self.lock();
        for (r, &a) in rules.iter().zip(asked) {
            if a > 0 {
                if let Some(e) = t.entries.get_mut(&r.hash) {
                    e.refilling = None;
                }
            }
        }
    }

    /// Ends lease `generation` of counter `hash` if it is still the one held: its unused units.
    pub(in crate::ratelimit::limiter) fn end(&self, hash: u64, generation: u64) -> Option<Unused> {
        let mut t = self.lock();
        let e = t.entries.get_mut(&hash)?;
        if e.held.as_ref()?.generation != generation {
            return None;
        }
        let old = e.held.take()?;
        e.next = if old.left == 0 {
            old.granted.saturating_mul(2)
        } else {
            old.granted - old.left
        };
        (old.left > 0).then_some(Unused {
            key: old.key,
            spec: old.spec,
            at_ms: old.at_ms,
            units: old.left,
        })
    }

    /// Ends every lease now (shutdown, a reset): their unused units.
    pub(in crate::ratelimit::limiter) fn end_all(&self) -> Vec<Unused> {
        let mut t = self.lock();
        t.entries
            .values_mut()
            .filter_map(|e| e.held.take())
            .filter(|h| h.left > 0)
            .map(|h| Unused {
                key: h.key,
                spec: h.spec,
                at_ms: h.at_ms,
                units: h.left,
            })
            .collect()
    }

    /// Counters tracked (tests and sizing).
    #[cfg(test)]
    pub(in crate::ratelimit::limiter) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Table {
    /// Drops entries that hold nothing and saw no demand for a lease length, at most
    /// every 100 ms (a full table of live entries is not rescanned per check).
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|s| now.saturating_duration_since(s) < Duration::from_millis(100))
        {
            return;
        }
        self.last_sweep = Some(now);
        let ttl = self.ttl;
        self.entries.retain(|_, e| !e.idle(now, ttl));
    }
}

/// Time from `now_ms` (the store's clock) to the end of the compact bucket that holds it.
fn bucket_left(spec: &Spec, now_ms: u64) -> Duration {
    let now_us = now_ms.saturating_mul(1000);
    let b = spec.bucket_us.max(1);
    let end_us = (now_us / b + 1).saturating_mul(b);
    // Whole milliseconds, rounded down: the store's clock has ms resolution here.
    Duration::from_millis((end_us - now_us) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Algorithm;
    use std::num::NonZeroU32;

    fn lease(units: u32, ttl_ms: u64) -> Lease {
        Lease {
            units: NonZeroU32::new(units).unwrap(),
            ttl: Duration::from_millis(ttl_ms),
        }
    }

    fn key() -> RedisKey {
        let t = crate::tenant::TenantId::new("t").unwrap();
        crate::keys::Keys::new(Default::default()).ratelimit(&t, "r", "tenant", "all", None)
    }

    fn granted_out(remaining: u32, reserved: u32) -> Outcome {
        Outcome {
            allowed: true,
            remaining,
            reset_ms: 1000,
            retry_ms: Some(0),
            free1_ms: 0,
            overflow: false,
            blocked: false,
            reserved,
        }
    }

    #[test]
    fn a_lease_ends_with_its_bucket() {
        // 1 s window: 30 buckets of 33,334 us; at 10 ms into a bucket, ~23 ms are left.
        let spec = Spec::new(Algorithm::Compact, 100, 1000, false);
        let start = 3 * spec.bucket_us / 1000;
        let left = bucket_left(&spec, start + 10);
        assert!(
            left <= Duration::from_millis(24) && left >= Duration::from_millis(22),
            "{left:?}"
        );
        assert!(bucket_left(&spec, start) <= Duration::from_millis(34));
    }

    #[test]
    fn demand_decides_whether_to_reserve_and_the_slice_adapts() {
        let leases = Leases::new(Duration::from_millis(100));
        let l = lease(50, 100);
        let rules = [LeaseRule { hash: 7, lease: &l }];
        let now = Instant::now();
        // A counter asked for once reserves nothing; the second ask within a lease does.
        assert_eq!(leases.plan(&rules, 1, now).as_slice(), &[0]);
        let want = leases.plan(&rules, 1, now);
        assert_eq!(want.as_slice(), &[2]);
        // While that reservation is in flight, no other is asked.
        assert_eq!(leases.plan(&rules, 1, now).as_slice(), &[0]);
        let spec = Spec::new(Algorithm::Compact, 1000, 60_000, false);
        let key = key();
        let (g, unused) = leases.grant(
            &rules,
            &want,
            &[granted_out(900, 2)],
            &[key],
            &[spec],
            now,
            0,
        );
        assert_eq!((g.len(), unused.len()), (1, 0));
        assert!(leases.take(&rules, 1, now).is_some());
        assert!(leases.take(&rules, 1, now).is_some());
        assert!(leases.take(&rules, 1, now).is_none(), "spent");
        // Ran out: the next slice is twice the last.
        let want = leases.plan(&rules, 1, now);
        assert_eq!(want.as_slice(), &[4]);
        assert_eq!(leases.len(), 1);
    }

    #[test]
    fn unused_units_come_back_once() {
        let leases = Leases::new(Duration::from_millis(100));
        let l = lease(10, 100);
        let rules = [LeaseRule { hash: 1, lease: &l }];
        let now = Instant::now();
        leases.plan(&rules, 1, now);
        let want = leases.plan(&rules, 1, now);
        let spec = Spec::new(Algorithm::Compact, 1000, 60_000, false);
        let key = key();
        let (g, _) = leases.grant(
            &rules,
            &want,
            &[granted_out(900, 2)],
            &[key],
            &[spec],
            now,
            0,
        );
        assert!(leases.take(&rules, 1, now).is_some());
        let u = leases.end(1, g[0].generation).expect("one unit unused");
        assert_eq!(u.units, 1);
        assert!(leases.end(1, g[0].generation).is_none(), "given back once");
        assert!(leases.take(&rules, 1, now).is_none(), "ended");
    }

    #[test]
    fn a_flood_of_counters_stays_bounded() {
        let leases = Leases::new(Duration::from_millis(100));
        let l = lease(10, 100);
        let now = Instant::now();
        for h in 0..(MAX_LEASED as u64 + 5_000) {
            leases.plan(&[LeaseRule { hash: h, lease: &l }], 1, now);
        }
        assert!(leases.len() <= MAX_LEASED);
        // Once they are idle, a later flood replaces them.
        let later = now + Duration::from_millis(500);
        for h in 1_000_000..1_000_100u64 {
            leases.plan(&[LeaseRule { hash: h, lease: &l }], 1, later);
        }
        assert!(leases.len() <= MAX_LEASED);
        assert!(leases.lock().entries.contains_key(&1_000_050));
    }
}
