//! The counters of the memory backend: one table of every rule's and identity's state,
//! all rules of a check decided and charged under one lock (all or nothing). The
//! algorithms themselves are in [`crate::ratelimit::algo`].
//!
//! Bounds: at most `max_keys` counters of identities. A counter whose window has passed
//! holds nothing and may be dropped; a live one never is (dropping it would hand its
//! identity a full quota again). A new identity arriving at a table full of live counters
//! is charged to an overflow counter of the rule instead, shared by every such identity
//! (they are limited together: stricter, never looser). Dropping expired counters costs
//! O(log n) each through an expiry heap: no scan of the table under its lock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::ratelimit::algo::{self, Outcome, Rules, Spec, State, Work};

/// One rule of a check: its counter's key, owner and parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemRule {
    /// Hash of (tenant, rule, identity, endpoint).
    pub(crate) key: u64,
    /// Hash of (tenant, rule, identity): what `reset` matches.
    pub(crate) owner: u64,
    pub(crate) spec: Spec,
    /// The rule's position in its policy (for the caller; unused here).
    pub(crate) idx: usize,
}

#[derive(Debug)]
struct Slot {
    key: u64,
    state: State,
    expires_at: u64,
    /// Hash of (tenant, rule, identity) without the endpoint, so `reset` can find every
    /// per-endpoint counter of an identity.
    owner: u64,
    /// A rule's shared overflow counter (not counted against `max_keys`).
    overflow: bool,
    /// `RATE_LIMIT_BLOCK`: refused until then (ms); blocks in a row so far, remembered
    /// until `strikes_until` (the block's end plus the longest block). The slot lives at
    /// least that long.
    block_until: u64,
    strikes: u32,
    strikes_until: u64,
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
    /// Min-heap of (expiry, key), exactly one entry per slot. The expiry recorded is a
    /// lower bound of the slot's own: checks extend `expires_at` without touching the
    /// heap (the hot path stays a hash lookup), and an entry found outdated when it
    /// reaches the top is pushed again with the slot's current expiry.
    expiry: BinaryHeap<Reverse<(u64, u64)>>,
    /// Overflow counters among `slots`.
    overflow: usize,
}

impl Slab {
    fn find(&self, key: u64) -> Option<usize> {
        self.index.get(&key).copied()
    }

    /// The slot of `key`, inserting an empty (already expired) one if there is none.
    /// Its heap entry records `now`: a lower bound of the expiry a charge gives it (and
    /// past by the next check if none does), later than older slots' entries, so those
    /// come out first.
    fn get_or_insert(&mut self, key: u64, owner: u64, overflow: bool, now: u64) -> usize {
        let slots = &mut self.slots;
        let heap = &mut self.expiry;
        let added = &mut self.overflow;
        *self.index.entry(key).or_insert_with(|| {
            slots.push(Slot {
                key,
                state: State::empty(),
                expires_at: 0,
                owner,
                overflow,
                block_until: 0,
                strikes: 0,
                strikes_until: 0,
            });
            heap.push(Reverse((now, key)));
            *added += usize::from(overflow);
            slots.len() - 1
        })
    }

    /// Removes slot `i`; its heap entry must be gone already (popped, or the heap rebuilt).
    fn remove_at(&mut self, i: usize) {
        let gone = self.slots.swap_remove(i);
        self.index.remove(&gone.key);
        self.overflow -= usize::from(gone.overflow);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key, i);
        }
    }

    /// Drops up to `want` expired counters, soonest expired first; returns how many. Each
    /// costs O(log n), as does each outdated heap entry met on the way (pushed again with
    /// its slot's current expiry, so it comes back at most once per extension).
    fn reclaim(&mut self, now: u64, want: usize) -> usize {
        let mut got = 0;
        while got < want {
            let Some(&Reverse((at, key))) = self.expiry.peek() else {
                break;
            };
            if at > now {
                // Every slot expires at or after its recorded time: all are live.
                break;
            }
            self.expiry.pop();
            let Some(&i) = self.index.get(&key) else {
                continue;
            };
            let expires_at = self.slots[i].expires_at;
            if expires_at <= now {
                self.remove_at(i);
                got += 1;
            } else {
                self.expiry.push(Reverse((expires_at, key)));
            }
        }
        got
    }

    /// Counters of identities (overflow counters not included).
    fn identities(&self) -> usize {
        self.slots.len() - self.overflow
    }
}

/// The key of rule `idx`'s overflow counter under `spec` (one per rule and plan tier:
/// tiers differ in parameters, and one counter holds one set). Unseeded, unlike identity
/// keys: a collision with one of those is as likely (~n / 2^64) as any other.
fn overflow_key(idx: usize, spec: &Spec) -> u64 {
    // splitmix64 finalizer over the rule's position and parameters.
    let mut z = 0x6f76_6572_666c_6f77_u64
        ^ (idx as u64).rotate_left(48)
        ^ u64::from(spec.limit).rotate_left(16)
        ^ spec.window_ms.rotate_left(32)
        ^ (spec.algo as u64);
    for _ in 0..2 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    z
}

impl MemoryLimiter {
    pub(crate) fn new(clock: Arc<dyn Clock>, max_keys: usize) -> Self {
        // `max_keys` counts identities' counters; overflow ones (a few per rule) come on top.
        Self {
            slots: Mutex::new(Slab::default()),
            clock,
            max_keys: max_keys.max(1),
        }
    }

    /// The counters of `backend` if it is the memory backend (on its clock); `None` on
    /// Redis, whose script keeps them.
    pub(crate) fn on(backend: &crate::backend::Backend, max_keys: usize) -> Option<Self> {
        match backend {
            crate::backend::Backend::Memory(m) => Some(Self::new(m.clock_arc(), max_keys)),
            #[cfg(feature = "redis")]
            crate::backend::Backend::Redis(_) => None,
        }
    }

    /// The clock's time, ms.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Decides all rules; charges every allowing rule if `commit` and no enforced rule
    /// denies. Returns whether all enforced rules allow, and the time decided at (ms);
    /// per-rule outcomes go to `outs` (an out-parameter: returning it would copy it).
    pub(crate) fn decide(
        &self,
        rules: &[MemRule],
        cost: u32,
        commit: bool,
        outs: &mut Rules<Outcome>,
    ) -> (bool, u64) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Read under the lock: a time read before waiting for it could be older than the
        // one another check already stored.
        let now = self.clock.now_ms().max(slots.last_now);
        slots.last_now = now;
        let cost64 = u64::from(cost);
        // Each rule's slot, found before anything moves: dropping an expired counter to
        // make room moves another one into its place.
        let mut found: Rules<Option<usize>> = Rules::new();
        let mut missing = 0;
        let resolve = |slots: &Slab, found: &mut Rules<Option<usize>>, missing: &mut usize| {
            found.clear();
            *missing = 0;
            for r in rules {
                let i = slots.find(r.key);
                *missing += usize::from(i.is_none());
                found.push(i);
            }
        };
        resolve(&slots, &mut found, &mut missing);
        let mut room = self.max_keys.saturating_sub(slots.identities());
        while missing > room {
            // Full: only counters whose window has passed may go (they hold nothing).
            if slots.reclaim(now, missing - room) == 0 {
                break;
            }
            resolve(&slots, &mut found, &mut missing);
            room = self.max_keys.saturating_sub(slots.identities());
        }
        // (slot, overflow) per rule: identities without a counter get a new one while
        // there is room, else share their rule's overflow counter.
        let mut at: Rules<(Option<usize>, bool)> = Rules::new();
        for (r, i) in rules.iter().zip(&found) {
            at.push(match i {
                Some(i) => (Some(*i), false),
                None if room > 0 => {
                    room -= 1;
                    (
                        commit.then(|| slots.get_or_insert(r.key, r.owner, false, now)),
                        false,
                    )
                }
                None => {
                    let k = overflow_key(r.idx, &r.spec);
                    let i = if commit {
                        Some(slots.get_or_insert(k, k, true, now))
                    } else {
                        slots.find(k)
                    };
                    (i, true)
                }
            });
        }
        let mut work: Rules<(Work, Option<usize>)> = Rules::new();
        let mut all = true;
        outs.clear();
        for (MemRule { spec, .. }, &(idx, overflow)) in rules.iter().zip(&at) {
            // A block in force: denied without counting (never on an overflow counter,
            // which identities share).
            let blocked = idx
                .filter(|_| spec.block_ms > 0 && !overflow)
                .map(|i| slots.slots[i].block_until)
                .filter(|&until| until > now);
            if let Some(until) = blocked {
                let left = until - now;
                all = false;
                let w = Work {
                    count: u64::from(spec.limit),
                    cur: 0,
                };
                // No slot: nothing of it is charged or read again below.
                work.push((w, None));
                outs.push(Outcome {
                    allowed: false,
                    remaining: 0,
                    reset_ms: left,
                    retry_ms: Some(left),
                    free1_ms: left,
                    overflow,
                    blocked: true,
                    reserved: 0,
                });
                continue;
            }
            let state = idx
                .map(|i| &mut slots.slots[i])
                .filter(|s| s.expires_at > now)
                .map(|s| &mut s.state);
            let (w, out) = algo::decide(spec, state, now, cost64, overflow);
            if !out.allowed && !spec.shadow {
                all = false;
            }
            work.push((w, idx));
            outs.push(out);
        }

        if commit && !all {
            // A refused check starts a block on each blocking rule that denied it.
            for ((r, &(idx, overflow)), out) in rules.iter().zip(&at).zip(outs.iter_mut()) {
                let Some(i) = idx.filter(|_| r.spec.block_ms > 0 && !overflow) else {
                    continue;
                };
                if out.allowed || out.blocked {
                    continue;
                }
                let slot = &mut slots.slots[i];
                slot.strikes = if slot.strikes_until > now {
                    slot.strikes.saturating_add(1)
                } else {
                    1
                };
                let dur = r.spec.block_for(slot.strikes);
                slot.block_until = now.saturating_add(dur);
                slot.strikes_until = slot.block_until.saturating_add(r.spec.block_max_ms);
                // Pinned until the block ends; the strike count after that is soft state
                // (a full table may drop it: the next block is then the first again).
                slot.expires_at = slot.expires_at.max(slot.block_until);
                out.retry_ms = out.retry_ms.map(|ms| ms.max(dur));
                out.free1_ms = out.free1_ms.max(dur);
                out.blocked = true;
            }
        }
        let commit = commit && all;
        for ((MemRule { owner, spec, .. }, (w, idx)), out) in
            rules.iter().zip(&mut work).zip(outs.iter_mut())
        {
            let charged = commit && out.allowed;
            if let (true, Some(i)) = (charged, *idx) {
                let slot = &mut slots.slots[i];
                let fresh = slot.expires_at <= now;
                slot.expires_at = algo::charge(spec, &mut slot.state, fresh, w, cost, now, out)
                    .max(slot.block_until);
                if !slot.overflow {
                    slot.owner = *owner;
                }
                w.count += cost64;
            }
            if !charged {
                if let Some(slot) = idx.map(|i| &slots.slots[i]).filter(|s| s.expires_at > now) {
                    if let Some(reset) = algo::reset_uncharged(spec, &slot.state, w, now) {
                        out.reset_ms = reset;
                    }
                }
            }
            let remaining = u64::from(spec.limit).saturating_sub(w.count);
            out.remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
        }
        (all, now)
    }

    /// Settles what rules were charged earlier, rule by rule (`units[i]` for `rules[i]`):
    /// with `refund_at`, takes the units back from the bucket that held that time (see
    /// [`algo::refund`]); else charges them now, whatever the limit (usage beyond an
    /// estimate already happened; at most the limit, and never leaving a compact window above
    /// twice its limit, as the script caps it). A counter that is gone (expired, or never made: the
    /// table was full) gets nothing back; a charge to an identity the full table has no
    /// room for goes to the rule's overflow counter, as a check's would.
    pub(crate) fn adjust(
        &self,
        rules: &[MemRule],
        units: &[u32],
        overflowed: &[bool],
        refund_at: Option<u64>,
    ) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.clock.now_ms().max(slots.last_now);
        slots.last_now = now;
        for ((r, &u), &over) in rules.iter().zip(units).zip(overflowed) {
            if u == 0 {
                continue;
            }
            let key = if over {
                overflow_key(r.idx, &r.spec)
            } else {
                r.key
            };
            let live = slots.find(key).filter(|&i| slots.slots[i].expires_at > now);
            if let Some(at) = refund_at {
                if let Some(i) = live {
                    algo::refund(&r.spec, &mut slots.slots[i].state, at, u);
                }
                continue;
            }
            // As the script does: a charge is at most a full window's worth.
            let u = u.min(r.spec.limit);
            let i = match slots.find(key) {
                Some(i) => i,
                None if !over
                    && (self.max_keys > slots.identities() || slots.reclaim(now, 1) > 0) =>
                {
                    slots.get_or_insert(key, r.owner, false, now)
                }
                None => {
                    let k = overflow_key(r.idx, &r.spec);
                    slots.get_or_insert(k, k, true, now)
                }
            };
            let slot = &mut slots.slots[i];
            let fresh = slot.expires_at <= now;
            let state = (!fresh).then_some(&mut slot.state);
            let (w, mut out) = algo::decide(&r.spec, state, now, u64::from(u), false);
            // A compact window never holds more than twice its limit (nor more than a
            // 4-byte count): the script caps it the same way.
            let u = if r.spec.algo == crate::ratelimit::Algorithm::Compact {
                let cap = (2 * u64::from(r.spec.limit)).min(u64::from(u32::MAX));
                u32::try_from(u64::from(u).min(cap.saturating_sub(w.count))).unwrap_or(0)
            } else {
                u
            };
            if u > 0 {
                slot.expires_at =
                    algo::charge(&r.spec, &mut slot.state, fresh, &w, u, now, &mut out)
                        .max(slot.block_until);
            }
        }
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
        // An operator's call, not a client's: a scan is fine here. (Overflow counters
        // have owners no identity hashes to.)
        let mut i = slots.slots.len();
        while i > 0 {
            i -= 1;
            let s = &slots.slots[i];
            if owners.contains(&s.owner) && !s.overflow {
                n += u64::from(s.expires_at > now);
                slots.remove_at(i);
            }
        }
        let heap = slots
            .slots
            .iter()
            .map(|s| Reverse((s.expires_at, s.key)))
            .collect();
        slots.expiry = heap;
        n
    }
}

#[cfg(test)]
mod tests;
