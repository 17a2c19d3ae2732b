//! The Redis path of a check: the deny cache in front, one script call, what its answer
//! teaches the deny cache and the outage memory, and the outage mode when Redis fails
//! (with the charge-back of units admitted in process once Redis is back).

use std::time::{Duration, Instant};

use super::Inner;
use super::{Applied, build, counted_method};
use crate::backend::BackendError;
use crate::keys::RedisKey;
use crate::ratelimit::algo::Rules;
use crate::ratelimit::outage::LocalRule;
use crate::ratelimit::store::{Reply, Request};
use crate::ratelimit::{Check, Decision, OutageMode, RateLimiter, RuleDecision, Source};

impl RateLimiter {
    /// The Redis path: deny cache, then one script call; the outage mode on failure.
    pub(super) async fn decide_remote(
        &self,
        c: &Check<'_>,
        applied: Rules<Applied<'_>>,
        commit: bool,
    ) -> Decision {
        let inner = &*self.inner;
        let cost = self.cost(c);
        let endpoint = format!("{} {}", counted_method(c.method), c.route);
        let mut keys: Vec<RedisKey> = applied
            .iter()
            .map(|a| self.redis_key(a, c, &endpoint))
            .collect();
        // Seeded hashes of the keys: the deny cache's and the outage memory's keys.
        let hashes: Rules<u64> = if inner.deny.is_some() || inner.outage_mem.is_some() {
            keys.iter().map(|k| self.deny_hash(k)).collect()
        } else {
            Rules::new()
        };

        // Known repeat offenders: answered without a round trip (never an admission).
        // (`peek` always asks the store: it reports every rule's state.)
        if let Some(deny) = inner.deny.as_ref().filter(|_| commit) {
            let now = Instant::now();
            for (a, &h) in applied.iter().zip(&hashes) {
                if a.spec.shadow {
                    continue;
                }
                if let Some(wait) = deny.denied_for(h, now) {
                    let fits = cost <= a.limit();
                    return Decision {
                        allowed: false,
                        source: Source::DenyCache,
                        cost,
                        rules: vec![RuleDecision {
                            name: a.name,
                            limit: a.limit(),
                            window: a.window(),
                            remaining: 0,
                            reset: wait,
                            retry_after: fits.then_some(wait),
                            allowed: false,
                            shadow: false,
                            blocked: false,
                            period: None,
                        }],
                        at_ms: None,
                        overflowed: 0,
                    };
                }
            }
        }

        // Units this instance admitted in process during an outage go back to Redis with
        // this call, before the request is decided (not while the breaker is open: the
        // call would not be sent).
        let mem = inner.outage_mem.as_ref();
        let charges: Rules<u32> = match mem {
            Some(m)
                if commit
                    && m.pending() > 0
                    && inner.backend.health().is_none_or(|h| h.allows()) =>
            {
                m.begin_charge(&hashes, Instant::now())
            }
            _ => Rules::new(),
        };
        // Kept for a call whose task dies with the request: its reserved charges must be
        // released as failed (they go back with a later call).
        let charges_sent = charges.clone();
        // Leased counters (every rule of the check leased): the units to reserve with
        // this check (none while outage charge-backs ride on it).
        let lease_rules = match &inner.leases {
            Some(_) if commit && charges.is_empty() => {
                let rules = self.mem_rules(c);
                self.lease_rules(&rules)
            }
            _ => None,
        };
        let asked: Rules<u32> = match (&inner.leases, &lease_rules) {
            (Some(l), Some(r)) => l.plan(r, cost, Instant::now()),
            _ => Rules::new(),
        };
        let leasing = asked.iter().any(|&u| u > 0);
        // The blocks of the rules that block (RATE_LIMIT_BLOCK), after the counters.
        keys.extend(
            applied
                .iter()
                .filter(|a| a.spec.block_ms > 0)
                .map(|a| self.block_key(a, c, &endpoint)),
        );
        let request = Request {
            specs: applied.iter().map(|a| a.spec).collect(),
            keys,
            cost,
            mode: match (commit, leasing) {
                (true, true) => "lease",
                (true, false) => "check",
                _ => "peek",
            },
            nonce: self.nonce(applied.len()),
            charges: if leasing { asked.clone() } else { charges },
        };
        let sent = Instant::now();
        let (request, result) = match &inner.batcher {
            Some(b) => match b.call(request).await {
                Ok(answer) => answer,
                // The call's task died: decide as on any failed call.
                Err(e) => {
                    let keys = applied
                        .iter()
                        .map(|a| self.redis_key(a, c, &endpoint))
                        .collect();
                    let lost = Request {
                        keys,
                        charges: charges_sent.clone(),
                        ..Request::empty()
                    };
                    (lost, Err(e))
                }
            },
            None => {
                let result = decide_one(inner, &request).await;
                (request, result)
            }
        };
        let Request { keys, specs, .. } = request;
        let charges = charges_sent;
        if let (Some(leases), Some(rules), true) = (&inner.leases, &lease_rules, leasing) {
            match &result {
                Ok((_, outs, redis_ms)) => {
                    let reserved: u64 = outs.iter().map(|o| u64::from(o.reserved)).sum();
                    inner.metrics.ratelimit_lease_reserved.inc_by(reserved);
                    let (granted, unused) =
                        leases.grant(rules, &asked, outs, &keys, &specs, sent, *redis_ms);
                    self.lease_timers(granted);
                    self.give_back_soon(unused);
                }
                Err(_) => leases.abort(rules, &asked),
            }
        }
        match result {
            Ok((allowed, outs, redis_ms)) => {
                let now = Instant::now();
                if let Some(deny) = &inner.deny {
                    for ((a, &h), o) in applied.iter().zip(&hashes).zip(&outs) {
                        // A calendar quota's window outlasts its period: its waits are
                        // the period's end, which the deny cache does not know.
                        if !a.spec.shadow && a.rule.period.is_none() {
                            deny.learn(h, o, sent);
                        }
                    }
                }
                if let Some(m) = mem {
                    for ((a, &h), o) in applied.iter().zip(&hashes).zip(&outs) {
                        let used = a.spec.limit.saturating_sub(o.remaining);
                        m.record(h, redis_ms, used, Duration::from_millis(o.reset_ms), now);
                    }
                    for (&h, _) in hashes.iter().zip(&charges).filter(|&(_, &u)| u > 0) {
                        m.end_charge(h, true, now);
                    }
                    self.charge_back_soon();
                }
                build(
                    &applied,
                    allowed,
                    &outs,
                    Source::Redis,
                    cost,
                    Some(redis_ms),
                )
            }
            Err(e) => {
                if let Some(m) = mem {
                    let now = Instant::now();
                    for (&h, _) in hashes.iter().zip(&charges).filter(|&(_, &u)| u > 0) {
                        m.end_charge(h, false, now);
                    }
                }
                self.outage(&applied, &keys, &hashes, cost, commit, &e)
            }
        }
    }

    /// Starts charging every counter's locally admitted units back to Redis, unless that
    /// is already running or there are none (after a successful script call: Redis is
    /// back). Counters used again are charged by their next check anyway; this reaches
    /// the others, so other instances see those units too.
    pub(super) fn charge_back_soon(&self) {
        use std::sync::atomic::Ordering;
        let inner = &*self.inner;
        let Some(m) = &inner.outage_mem else { return };
        if m.pending() == 0 || inner.charging_back.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            inner.charging_back.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            let n = this.charge_back().await;
            tracing::info!(
                counters = n,
                "units admitted during the Redis outage charged back"
            );
            this.inner.charging_back.store(false, Ordering::Release);
        });
    }

    /// Charges every local counter back, one script call each, until none is left or a
    /// call fails (then what is left waits for the next success). Returns how many
    /// counters were charged.
    pub(super) async fn charge_back(&self) -> usize {
        let Some(m) = &self.inner.outage_mem else {
            return 0;
        };
        let mut done = 0;
        loop {
            let batch = m.begin_charge_some(64, Instant::now());
            if batch.is_empty() {
                return done;
            }
            let mut rest = batch.into_iter();
            while let Some((h, key, spec, units)) = rest.next() {
                let request = Request {
                    // A charge-back starts no block: no block key is sent.
                    specs: std::iter::once(spec.without_block()).collect(),
                    keys: vec![key.clone()],
                    cost: 1,
                    mode: "charge",
                    nonce: self.nonce(1),
                    charges: std::iter::once(units).collect(),
                };
                let res = decide_one(&self.inner, &request).await;
                let now = Instant::now();
                match res {
                    Ok((_, outs, redis_ms)) => {
                        done += 1;
                        if let Some(o) = outs.first() {
                            let used = spec.limit.saturating_sub(o.remaining);
                            let reset = Duration::from_millis(o.reset_ms);
                            m.record(h, redis_ms, used, reset, now);
                        }
                        m.end_charge(h, true, now);
                    }
                    Err(_) => {
                        m.end_charge(h, false, now);
                        for (h, ..) in rest {
                            m.end_charge(h, false, now);
                        }
                        return done;
                    }
                }
            }
        }
    }

    /// The block key of a rule's counter for a check (`RATE_LIMIT_BLOCK`).
    fn block_key(&self, a: &Applied<'_>, c: &Check<'_>, endpoint: &str) -> RedisKey {
        let (kind, id) = Self::identity_parts(a.rule, c);
        self.inner.keys.ratelimit_block(
            c.tenant,
            &self.counter_name(a.rule, a.name, c.tenant),
            kind,
            id,
            a.per_endpoint().then_some(endpoint),
        )
    }

    pub(super) fn outage(
        &self,
        applied: &[Applied<'_>],
        keys: &[RedisKey],
        hashes: &[u64],
        cost: u32,
        commit: bool,
        error: &BackendError,
    ) -> Decision {
        tracing::debug!(%error, mode = %self.inner.options.outage, "rate limit decided without Redis");
        let unknown = |a: &Applied<'_>, allowed: bool| RuleDecision {
            name: a.name,
            limit: a.limit(),
            window: a.window(),
            remaining: if allowed { a.limit() } else { 0 },
            reset: Duration::ZERO,
            retry_after: (!allowed).then_some(Duration::from_secs(1)),
            allowed,
            shadow: a.spec.shadow,
            blocked: false,
            period: None,
        };
        match (self.inner.options.outage, &self.inner.outage_mem) {
            (OutageMode::Local, Some(m)) => {
                let rules: Rules<LocalRule<'_>> = applied
                    .iter()
                    .zip(keys)
                    .zip(hashes)
                    .map(|((a, key), &hash)| LocalRule {
                        hash,
                        key,
                        spec: &a.spec,
                    })
                    .collect();
                let instances = self.inner.options.instances.get();
                let (allowed, outs) = m.decide(&rules, cost, commit, instances, Instant::now());
                Decision {
                    allowed,
                    source: Source::Local,
                    cost,
                    rules: applied
                        .iter()
                        .zip(&outs)
                        .map(|(a, o)| RuleDecision {
                            name: a.name,
                            limit: o.limit,
                            window: a.window(),
                            remaining: o.remaining,
                            reset: o.reset,
                            retry_after: o.retry,
                            allowed: o.allowed,
                            shadow: a.spec.shadow,
                            blocked: false,
                            period: None,
                        })
                        .collect(),
                    at_ms: None,
                    overflowed: 0,
                }
            }
            (OutageMode::Closed, _) => Decision {
                allowed: false,
                source: Source::OutageClosed,
                cost,
                rules: applied.iter().map(|a| unknown(a, false)).collect(),
                at_ms: None,
                overflowed: 0,
            },
            _ => Decision {
                allowed: true,
                source: Source::OutageOpen,
                cost,
                rules: applied.iter().map(|a| unknown(a, true)).collect(),
                at_ms: None,
                overflowed: 0,
            },
        }
    }
}

/// One request in its own call to the shared store (the Redis path runs only when there
/// is one).
async fn decide_one(inner: &Inner, request: &Request) -> Result<Reply, BackendError> {
    match &inner.shared {
        Some(store) => store.decide_one(request).await,
        None => Err(BackendError::Unsupported("no shared counter store")),
    }
}
