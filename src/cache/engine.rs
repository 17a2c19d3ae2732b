//! The engine of a cache call: lookup (L1, then one `MGET` of the entry, its
//! generations and the tag epoch; one more of its tags' generations when it has tags), single-flight, the cross-instance lease (`SET NX PX`, released by
//! compare-and-delete; waiters poll with backoff or serve a stale entry), compute, store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::flight::{self, Flight, FlightGuard, Registered, SharedFailure};
use super::invalidation::Generations;
use super::recording::{End, Recording};
use super::{Cache, CacheKey, CacheStatus, Entry, Inner, entry};
use crate::keys::KeyKind;
use crate::metrics::CacheLabels;

/// What a compute step produced.
pub(crate) enum Computed<R> {
    /// Store this entry (with this TTL) and share it; the leader returns `R`.
    Store(Entry, Duration, R),
    /// A response streaming to the leader as it is recorded: stored (with this TTL) once
    /// complete; callers of the same key meanwhile replay it live.
    Stream(Arc<Recording>, Duration, R),
    /// Share this error with waiters; never cached.
    Share(SharedFailure, R),
    /// Not cacheable and not shareable.
    Private(R),
}

/// What a call gets.
pub(crate) enum Served<R> {
    Cached(Arc<Entry>, CacheStatus),
    /// Joined a streamed miss of the same key: replay it (coalesced).
    Stream(Arc<Recording>),
    /// Past its TTL, within its stale-while-revalidate window: serve it now (stale); the
    /// caller starts a refresh when `true` (no refresh of the key runs in this process).
    Revalidate(Arc<Entry>, bool),
    Own(R),
    SharedError(SharedFailure),
    Retry,
}

pub(super) enum Lookup {
    Fresh(Arc<Entry>, CacheStatus),
    Stale(Arc<Entry>),
    Miss { l2_down: bool },
}

fn jitter(ttl: Duration, percent: u8) -> Duration {
    if percent == 0 {
        return ttl;
    }
    let mut b = [0u8; 8];
    let r = if getrandom::fill(&mut b).is_ok() {
        u64::from_le_bytes(b)
    } else {
        entry::now_ms()
    };
    // Saturating: CACHE_TTL may be any duration the environment spells.
    let max_extra = u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(u64::from(percent))
        / 100;
    ttl.saturating_add(Duration::from_millis(if max_extra == 0 {
        0
    } else {
        r % max_extra.saturating_add(1)
    }))
}

/// Whether a call looks the key up first (`Lookup`), or is the background refresh of a
/// stale-while-revalidate entry (`Refresh`: computes and stores, unless a fill of the key
/// already runs here or on another instance, which it then leaves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Lookup,
    Refresh,
}

impl Cache {
    /// The core: lookup, single-flight, lease, compute, store.
    pub(crate) async fn serve<R, F, Fut>(
        &self,
        key: &CacheKey,
        read: bool,
        write: bool,
        compute: F,
    ) -> Served<R>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Computed<R>>,
    {
        self.serve_in(Mode::Lookup, key, read, write, compute).await
    }

    /// [`serve`](Self::serve), or a refresh (`Mode::Refresh`, read and write): its
    /// `Served::Retry` means another fill of the key runs, and nothing was computed.
    pub(crate) async fn serve_in<R, F, Fut>(
        &self,
        mode: Mode,
        key: &CacheKey,
        read: bool,
        write: bool,
        compute: F,
    ) -> Served<R>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Computed<R>>,
    {
        let inner = &*self.inner;
        let cat = key.category.name();
        let gen0 = inner.generation.load(Ordering::SeqCst);
        let refresh = mode == Mode::Refresh;
        let mut stale = None;
        let mut l2_down = false;
        // The generations read with the entry; a new entry is stored with them.
        let mut gens = None;
        if read && !refresh {
            match inner.lookup(key, gen0, &mut gens).await {
                Lookup::Fresh(e, status) => {
                    inner.count(cat, status);
                    return Served::Cached(e, status);
                }
                Lookup::Stale(e) => {
                    let swr =
                        u64::try_from(inner.config.swr_for(cat).as_millis()).unwrap_or(u64::MAX);
                    if e.fresh_until_ms.saturating_add(swr) > entry::now_ms() {
                        inner.count(cat, CacheStatus::Stale);
                        let running = inner
                            .flights
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get(key.key.as_str())
                            .is_some_and(|f| !f.superseded);
                        return Served::Revalidate(e, !running);
                    }
                    stale = Some(e);
                }
                Lookup::Miss { l2_down: d } => l2_down = d,
            }
        }
        let mut guard = FlightGuard {
            inner,
            key: None,
            tx: None,
        };
        // Set when this call supersedes a flight of this process: the lease it would wait
        // for is that flight's.
        let mut own_lease_only = false;
        if read {
            loop {
                let waiting = {
                    let mut flights = inner
                        .flights
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match flights.get(key.key.as_str()) {
                        Some(f) if !f.superseded => Some(f.rx.clone()),
                        // None, or one that started before an invalidation of its key (its
                        // answer may predate it): lead anew. The older one's lease is
                        // its own: not waited for.
                        found => {
                            own_lease_only = found.is_some();
                            let (tx, rx) = watch::channel(None);
                            let id = flight::next_id();
                            let registered = Registered {
                                id,
                                superseded: false,
                                rx,
                            };
                            flights.insert(key.key.as_str().to_string(), registered);
                            guard.key = Some((key.key.as_str().to_string(), id));
                            guard.tx = Some(tx);
                            None
                        }
                    }
                };
                let Some(mut rx) = waiting else { break };
                if refresh {
                    // A fill of this key runs here already.
                    return Served::Retry;
                }
                let flight = rx.wait_for(Option::is_some).await.map(|v| v.clone());
                match flight {
                    Ok(Some(Flight::Entry(e))) => {
                        inner.count(cat, CacheStatus::Coalesced);
                        return Served::Cached(e, CacheStatus::Coalesced);
                    }
                    Ok(Some(Flight::Stream(rec))) => {
                        if matches!(rec.ended(), Some(End::Overflow | End::Failed)) {
                            // Too big to record, or cut short: nothing whole to replay.
                            return Served::Retry;
                        }
                        inner.count(cat, CacheStatus::Coalesced);
                        return Served::Stream(rec);
                    }
                    Ok(Some(Flight::Error(failure))) => return Served::SharedError(failure),
                    Ok(Some(Flight::Private)) => return Served::Retry,
                    // The leader was dropped mid-way: take over.
                    Ok(None) | Err(_) => continue,
                }
            }
        }
        // Leader. Across instances: a lease, so others wait for this fill (only with a
        // shared, reachable L2; the key and token are made only then).
        let mut lease = None;
        if read && write && !l2_down && inner.shares_l2() && !own_lease_only {
            let lock_key = inner
                .keys
                .key(KeyKind::Lock, &key.tenant, &["cache", cat, &key.hash]);
            let token = crate::secret::random_token();
            let mut leased = false;
            match inner
                .store
                .set_nx(&lock_key, token.as_bytes(), inner.config.lease)
                .await
            {
                Ok(true) => leased = true,
                // Another instance fills (or refreshes) this key.
                Ok(false) if refresh => return Served::Retry,
                Ok(false) => {
                    if let Some(e) = stale.take() {
                        inner.count(cat, CacheStatus::Stale);
                        guard.finish(Flight::Entry(e.clone()));
                        return Served::Cached(e, CacheStatus::Stale);
                    }
                    let deadline = Instant::now() + inner.config.lease;
                    // Backing off (10 ms doubling to 100 ms): fills take seconds (AI answers),
                    // and every poll is two commands for one waiting request.
                    let mut pause = Duration::from_millis(10);
                    while Instant::now() < deadline {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(100));
                        match inner.lookup_l2(key, gen0, &mut gens).await {
                            Lookup::Fresh(e, _) => {
                                inner.count(cat, CacheStatus::Coalesced);
                                guard.finish(Flight::Entry(e.clone()));
                                return Served::Cached(e, CacheStatus::Coalesced);
                            }
                            Lookup::Miss { l2_down: true } => break,
                            _ => {}
                        }
                        // The filler gave up (error or uncacheable): take over.
                        if let Ok(true) = inner
                            .store
                            .set_nx(&lock_key, token.as_bytes(), inner.config.lease)
                            .await
                        {
                            leased = true;
                            break;
                        }
                    }
                }
                Err(_) => {}
            }
            if leased {
                lease = Some((lock_key, token));
            }
        }
        if read && !refresh {
            inner.count(cat, CacheStatus::Miss);
        }
        if refresh {
            inner.event(cat, "refresh");
        }
        // The generations an entry carries are had BEFORE the upstream runs (made first if
        // absent): read after it, a fill that computed before an invalidation would carry
        // the new generation and be served (a `no-cache` request reads nothing before).
        if write {
            gens = Some(inner.generations(key, gens).await);
        }
        let served = match compute().await {
            Computed::Store(mut e, ttl, own) => {
                let ttl = jitter(ttl, inner.config.jitter_percent);
                let now = entry::now_ms();
                e.stored_ms = now;
                e.fresh_until_ms =
                    now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
                let g = gens.unwrap_or(Generations::NONE);
                let keep = write && {
                    e.gens = g.entry;
                    let lifetime = ttl.saturating_add(inner.config.stale_for(cat));
                    inner.stamp_tags(key, &mut e, g.tag_epoch, lifetime).await
                };
                let e = Arc::new(e);
                if keep {
                    inner.store(key, cat, &e, ttl, gen0).await;
                }
                guard.finish(Flight::Entry(e));
                Served::Own(own)
            }
            Computed::Stream(rec, ttl, own) => {
                // Callers of this key join the stream live, until it ends: the flight and
                // the lease are the finisher's now.
                guard.finish(Flight::Stream(rec.clone()));
                let flight = guard.key.take();
                let lease = lease.take();
                let (cache, key, cat) = (self.clone(), key.clone(), cat.to_string());
                let gens = gens.unwrap_or(Generations::NONE);
                rec.set_finish(Box::new(move |entry| {
                    Box::pin(async move {
                        let inner = &*cache.inner;
                        if let (Some(mut e), true) = (entry, write) {
                            let ttl = jitter(ttl, inner.config.jitter_percent);
                            let now = entry::now_ms();
                            e.stored_ms = now;
                            e.fresh_until_ms = now
                                .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
                            e.gens = gens.entry;
                            let lifetime = ttl.saturating_add(inner.config.stale_for(&cat));
                            if inner
                                .stamp_tags(&key, &mut e, gens.tag_epoch, lifetime)
                                .await
                            {
                                inner.store(&key, &cat, &Arc::new(e), ttl, gen0).await;
                            }
                        }
                        // Stored first: a caller arriving now finds the entry.
                        if let Some((k, id)) = flight {
                            flight::unregister(inner, &k, id);
                        }
                        if let Some((lock_key, token)) = lease {
                            let _ = inner.store.delete_if_eq(&lock_key, token.as_bytes()).await;
                        }
                    })
                }));
                Served::Own(own)
            }
            Computed::Share(failure, own) => {
                inner.event(cat, "upstream_error");
                guard.finish(Flight::Error(failure));
                Served::Own(own)
            }
            Computed::Private(own) => {
                guard.finish(Flight::Private);
                Served::Own(own)
            }
        };
        if let Some((lock_key, token)) = lease {
            let _ = inner.store.delete_if_eq(&lock_key, token.as_bytes()).await;
        }
        served
    }
}

impl Inner {
    pub(super) fn event(&self, category: &str, event: &'static str) {
        self.metrics
            .cache_events
            .get_or_create(&CacheLabels {
                category: category.to_string(),
                event,
            })
            .inc();
    }

    pub(super) fn count(&self, category: &str, status: CacheStatus) {
        let t = &self.metrics.cache_totals;
        let (counter, event) = match status {
            CacheStatus::HitL1 => (Some(&t.hits_l1), "hit_l1"),
            CacheStatus::HitL2 => (Some(&t.hits_l2), "hit_l2"),
            CacheStatus::Stale => (Some(&t.stale), "stale"),
            CacheStatus::Miss => (Some(&t.misses), "miss"),
            CacheStatus::Coalesced => (Some(&t.misses), "coalesced"),
            CacheStatus::Bypass => (None, "bypass"),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.event(category, event);
    }

    /// When entries are stored compressed (`CACHE_COMPRESS_MIN_BYTES`, up to
    /// `CACHE_MAX_BODY_BYTES`).
    pub(super) fn compression(&self) -> entry::Compression {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        entry::Compression {
            min: size(self.config.compress_min),
            max: size(self.config.max_body),
        }
    }

    /// Whether other instances see the same L2 (Redis): only then is a lease useful.
    pub(super) fn shares_l2(&self) -> bool {
        self.store.is_shared()
    }

    pub(super) async fn lookup(
        &self,
        key: &CacheKey,
        gen0: u64,
        gens: &mut Option<Generations>,
    ) -> Lookup {
        if let Some(l1) = &self.l1 {
            if let Some(e) = l1.get(key.key.as_str()) {
                if e.fresh_until_ms > entry::now_ms() {
                    return Lookup::Fresh(e, CacheStatus::HitL1);
                }
            }
        }
        self.lookup_l2(key, gen0, gens).await
    }

    /// One round trip (`MGET` of the two generations and the entry, one slot); an entry of
    /// older generations is a miss, never served, not even stale.
    pub(super) async fn lookup_l2(
        &self,
        ck: &CacheKey,
        gen0: u64,
        gens: &mut Option<Generations>,
    ) -> Lookup {
        let key = &ck.key;
        let [t, c] = &ck.gens;
        let got = self
            .store
            .get_many(&[t, c, &ck.tag_epoch, key])
            .await
            .map(|mut v| {
                let raw = v.pop().flatten();
                let current = Generations::read(v);
                *gens = Some(current);
                (raw, current.entry)
            });
        match got {
            Ok((Some(raw), current)) => {
                let e = Entry::decode(&raw, self.compression())
                    .filter(|e| e.gens == current && !current.contains(&0));
                let e = match e {
                    Some(e) => match self.tags_current(ck, &e).await {
                        Ok(true) => Some(e),
                        Ok(false) => None,
                        Err(err) => {
                            tracing::debug!(error = %err, "cache L2 unavailable; L1 only");
                            return Lookup::Miss { l2_down: true };
                        }
                    },
                    None => None,
                };
                match e {
                    Some(e) => {
                        let now = entry::now_ms();
                        let e = Arc::new(e);
                        if e.fresh_until_ms > now {
                            self.fill_l1(key, &e, gen0);
                            Lookup::Fresh(e, CacheStatus::HitL2)
                        } else if e.fresh_until_ms.saturating_add(
                            // Saturating: the stored time is whatever the store holds, and
                            // CACHE_STALE_TTL any duration the environment spells.
                            u64::try_from(self.config.stale_for(ck.category.name()).as_millis())
                                .unwrap_or(u64::MAX),
                        ) > now
                        {
                            Lookup::Stale(e)
                        } else {
                            Lookup::Miss { l2_down: false }
                        }
                    }
                    // Not an envelope of this version, or invalidated (its tenant, category
                    // or a tag moved on): a miss, never an error.
                    None => Lookup::Miss { l2_down: false },
                }
            }
            Ok((None, _)) => Lookup::Miss { l2_down: false },
            Err(e) => {
                tracing::debug!(error = %e, "cache L2 unavailable; L1 only");
                Lookup::Miss { l2_down: true }
            }
        }
    }

    pub(super) async fn store(
        &self,
        ck: &CacheKey,
        category: &str,
        e: &Arc<Entry>,
        ttl: Duration,
        gen0: u64,
    ) {
        let key = &ck.key;
        let raw = e.encode(self.compression());
        let lifetime = ttl.saturating_add(self.config.stale_for(category));
        match self.store.set(key, &raw, lifetime).await {
            Ok(()) => {
                self.event(category, "store");
                // The generations live at least as long as the entries that carry them.
                let gen_ttl = self.generation_ttl(lifetime);
                let [t, c] = &ck.gens;
                let _ = futures_util::future::join3(
                    self.store.expire(t, gen_ttl),
                    self.store.expire(c, gen_ttl),
                    self.keep_tags(ck, e, lifetime),
                )
                .await;
            }
            Err(err) => tracing::debug!(error = %err, "cache entry not stored in L2"),
        }
        self.fill_l1(key, e, gen0);
    }
}
