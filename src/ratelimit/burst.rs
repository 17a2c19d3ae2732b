//! The per-tenant in-process burst cap (`RATE_LIMIT_BURST`): governor's keyed GCRA, pruned.
//!
//! governor keeps one state (~82 bytes with its map entry) per key it has ever seen and
//! never forgets one by itself. Tenant ids come from clients (headers, subdomains), so
//! without pruning a client inventing ids grows this map without bound. Every so many
//! checks the map drops the keys whose state is indistinguishable from a fresh one
//! (`retain_recent`: their theoretical arrival time is past) and gives back the memory
//! (`shrink_to_fit`). The interval grows with what the map holds after a prune, so the
//! prune's walk costs O(1) amortized per check, and the map never holds more than
//! `live + max(PRUNE_EVERY, live)` keys, `live` being the tenants seen within about one
//! burst window before the last prune. Dropping a key whose state is fresh changes no
//! decision.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota as GQuota, RateLimiter as Governor};

use crate::tenant::TenantId;

/// Fewest checks between two prunes.
pub(crate) const PRUNE_EVERY: u64 = 1024;

type Keyed<C> =
    Governor<TenantId, DefaultKeyedStateStore<TenantId>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A keyed governor limiter over tenants that prunes itself.
pub(crate) struct Burst<C: Clock = DefaultClock> {
    limiter: Keyed<C>,
    clock: C,
    /// Checks so far.
    checks: AtomicU64,
    /// The check count at which the next prune is due (`u64::MAX` while one runs).
    next_prune: AtomicU64,
}

impl Burst<DefaultClock> {
    /// A cap of `quota` per tenant on the monotonic clock.
    pub(crate) fn new(quota: GQuota) -> Self {
        Self::with_clock(quota, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Burst<C> {
    /// A cap of `quota` per tenant on `clock`.
    pub(crate) fn with_clock(quota: GQuota, clock: C) -> Self {
        Self {
            limiter: Governor::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
            checks: AtomicU64::new(0),
            next_prune: AtomicU64::new(PRUNE_EVERY),
        }
    }

    /// Charges one request of `tenant`; `Err(wait)` if it is over the cap.
    pub(crate) fn check(&self, tenant: &TenantId) -> Result<(), Duration> {
        let res = self
            .limiter
            .check_key(tenant)
            .map_err(|nu| nu.wait_time_from(self.clock.now()));
        self.maybe_prune();
        res
    }

    fn maybe_prune(&self) {
        let n = self.checks.fetch_add(1, Ordering::Relaxed) + 1;
        let due = self.next_prune.load(Ordering::Relaxed);
        // One pruner at a time: whoever swaps the due count out runs it.
        if n < due
            || self
                .next_prune
                .compare_exchange(due, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let live = self.prune() as u64;
        self.next_prune
            .store(n.saturating_add(live.max(PRUNE_EVERY)), Ordering::Release);
    }

    /// Drops the tenants whose state is fresh again; returns how many are left.
    pub(crate) fn prune(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }

    /// Tenants the map holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn tenant(i: u64) -> TenantId {
        TenantId::new(&format!("t{i}")).unwrap()
    }

    /// 10 per 10 ms: one unit back every millisecond.
    fn burst(clock: &FakeRelativeClock) -> Burst<FakeRelativeClock> {
        let q = GQuota::with_period(Duration::from_millis(1))
            .unwrap()
            .allow_burst(NonZeroU32::new(10).unwrap());
        Burst::with_clock(q, clock.clone())
    }

    #[test]
    fn a_flood_of_invented_tenants_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let b = burst(&clock);
        // 100 000 tenants, each seen once, one every 100 µs: each is fresh again
        // 2 ms after its check, so about 20 are live at any time.
        let mut most = 0;
        for i in 0..100_000 {
            assert!(b.check(&tenant(i)).is_ok());
            clock.advance(Duration::from_micros(100));
            most = most.max(b.len());
        }
        // Unpruned, the map would hold all 100 000.
        assert!(most <= 2 * PRUNE_EVERY as usize, "{most} tenants held");
    }

    #[test]
    fn a_prune_keeps_exactly_the_tenants_still_limited() {
        let clock = FakeRelativeClock::default();
        let b = burst(&clock);
        for i in 0..5_000 {
            assert!(b.check(&tenant(i)).is_ok());
        }
        // 3 ms later all of them are fresh again; then t7 uses its whole burst.
        clock.advance(Duration::from_millis(3));
        let busy = tenant(7);
        while b.check(&busy).is_ok() {}
        assert_eq!(b.prune(), 1, "only t7 is still limited");
        // Its state survived the prune: still over the cap.
        assert!(b.check(&busy).is_err());
        clock.advance(Duration::from_millis(20));
        assert_eq!(b.prune(), 0);
        assert!(b.check(&busy).is_ok());
    }

    #[test]
    fn prunes_come_by_themselves_and_their_interval_follows_the_live_keys() {
        let clock = FakeRelativeClock::default();
        let b = burst(&clock);
        // 10 000 distinct tenants at one instant: all live, nothing can go.
        for i in 0..10_000 {
            b.check(&tenant(i)).unwrap();
        }
        assert_eq!(b.len(), 10_000);
        // Once they are fresh again, repeated checks of one tenant trigger a prune within
        // at most max(PRUNE_EVERY, live at the last prune) checks.
        clock.advance(Duration::from_millis(50));
        let one = tenant(1);
        for _ in 0..20_000 {
            let _ = b.check(&one);
        }
        assert!(b.len() <= 1, "{} tenants left", b.len());
    }
}
