//! Invalidation that reaches every instance: by key (`DEL`), or by category or tenant in
//! O(1) through generations (one `INCR`; every entry carries the generations it was stored
//! under and every read compares them). Each is applied to this L1 first and published on
//! a Redis channel for the others' L1s; the subscription flushes L1 whenever it
//! (re)connects or drops, since messages published meanwhile are lost.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::{Cache, CacheKey, Category, Inner, entry};
use crate::backend::{BackendError, PubSubEvent};
use crate::keys::{KeyKind, RedisKey};
use crate::tenant::TenantId;

/// A message on the invalidation channel, and what applying it here does to L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalidation {
    /// One entry, by its Redis key.
    Key(String),
    /// Every entry whose key starts with this prefix.
    Prefix(String),
    /// Every entry whose key starts with `prefix` and that carries `tag`.
    Tag { prefix: String, tag: String },
    /// All of L1.
    Flush,
}

impl Invalidation {
    /// The text published on the channel.
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::Key(k) => format!("k {k}"),
            Self::Prefix(p) => format!("p {p}"),
            // A tag holds no blank: it comes first.
            Self::Tag { prefix, tag } => format!("t {tag} {prefix}"),
            Self::Flush => "flush".into(),
        }
    }

    /// A message read from the channel; anything unknown flushes (safe whatever it meant).
    pub(crate) fn decode(text: &str) -> Self {
        if let Some(k) = text.strip_prefix("k ") {
            Self::Key(k.to_string())
        } else if let Some(p) = text.strip_prefix("p ") {
            Self::Prefix(p.to_string())
        } else if let Some((tag, prefix)) = text
            .strip_prefix("t ")
            .and_then(|r| r.split_once(' '))
            .filter(|(tag, _)| super::valid_tag(tag))
        {
            Self::Tag {
                prefix: prefix.to_string(),
                tag: tag.to_string(),
            }
        } else {
            Self::Flush
        }
    }
}

/// A first generation: random, so that a generation key that was lost (evicted, deleted)
/// and made again never takes a value that entries already carry. Between 2^40 and 2^52
/// (exact in a double, never 0).
pub(super) fn first_generation() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        b = entry::now_ms().to_le_bytes();
    }
    (u64::from_le_bytes(b) & ((1 << 52) - 1)) | (1 << 40)
}

/// The generations a fill reads before its upstream runs: the tenant's and the
/// category's (the entry carries them) and the tenant's tag epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Generations {
    pub entry: [u64; 2],
    pub tag_epoch: u64,
}

impl Generations {
    /// None to be had: an entry stored with them is never served.
    pub(super) const NONE: Self = Self {
        entry: [0, 0],
        tag_epoch: 0,
    };

    /// From the values of `[tenant, category, tag epoch, ..]`.
    pub(super) fn read(raw: Vec<Option<Bytes>>) -> Self {
        let at = |i: usize| generation(raw.get(i).and_then(Option::as_ref));
        Self {
            entry: [at(0), at(1)],
            tag_epoch: at(2),
        }
    }
}

/// Parses a generation value (absent or unreadable: 0).
pub(super) fn generation(raw: Option<&Bytes>) -> u64 {
    raw.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

impl Cache {
    /// Removes one entry (here, in Redis, and in every instance's L1). Returns whether it
    /// existed in Redis / the store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, cache::{Cache, CacheStatus, Category}, config::Config, metrics::Metrics};
    /// use tenant_guard::tenant::TenantId;
    ///
    /// let (config, metrics) = (Config::from_vars([("REDIS_ENABLED", "false")])?, Metrics::new());
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let acme = TenantId::new("acme")?;
    /// let reports = Category::named("reports");
    /// let report = || cache.get_or_compute(&acme, &reports, &"r-1", || async { Ok::<_, String>("pdf".to_string()) });
    /// report().await?;
    /// assert!(cache.invalidate(&acme, &reports, &"r-1").await?);
    /// assert_eq!(report().await?.status, CacheStatus::Miss); // computed again
    /// assert!(!cache.invalidate(&acme, &reports, &"never-cached").await?);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate(
        &self,
        tenant: &TenantId,
        category: &Category,
        key_material: &impl Serialize,
    ) -> Result<bool, BackendError> {
        let key = self
            .material_key(tenant, category, key_material)
            .map_err(|_| BackendError::Unsupported("key material is not serializable"))?;
        self.invalidate_key(&key).await
    }

    pub(crate) async fn invalidate_key(&self, key: &CacheKey) -> Result<bool, BackendError> {
        let message = Invalidation::Key(key.key.as_str().to_string());
        self.inner.apply(&message);
        self.event(key.category.name(), "invalidation");
        let existed = self.inner.store.delete(&key.key).await;
        self.publish(&message).await;
        existed
    }

    /// Invalidates every entry of a category of one tenant (for [`Category::Ai`], of one
    /// model) in O(1): one `INCR` of the category's generation, which every entry carries
    /// and every read compares; every instance's L1 follows by pub/sub. The old entries
    /// are never served again and leave Redis at their TTL (no SCAN). Returns the
    /// category's new generation.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, cache::{Cache, CacheStatus, Category}, config::Config, metrics::Metrics};
    /// use tenant_guard::tenant::TenantId;
    ///
    /// let (config, metrics) = (Config::from_vars([("REDIS_ENABLED", "false")])?, Metrics::new());
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let acme = TenantId::new("acme")?;
    /// let get = |c: Category, k: &'static str| {
    ///     let cache = cache.clone();
    ///     let acme = acme.clone();
    ///     async move { cache.get_or_compute(&acme, &c, &k, || async { Ok::<_, String>(1) }).await }
    /// };
    /// get(Category::named("reports"), "a").await?;
    /// get(Category::query(), "a").await?;
    /// let new_generation = cache.invalidate_category(&acme, &Category::named("reports")).await?;
    /// assert!(new_generation > 0);
    /// assert_eq!(get(Category::named("reports"), "a").await?.status, CacheStatus::Miss);
    /// assert_eq!(get(Category::query(), "a").await?.status, CacheStatus::HitL2); // other categories kept
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_category(
        &self,
        tenant: &TenantId,
        category: &Category,
    ) -> Result<u64, BackendError> {
        let [_, gen_key] = self.inner.generation_keys(tenant, category);
        let pattern = category.pattern(&self.inner.keys, tenant);
        self.invalidate_generation(category.name(), &gen_key, &[pattern])
            .await
    }

    /// Invalidates every cache entry of one tenant (query, AI and named categories) in
    /// O(1), like [`invalidate_category`](Self::invalidate_category) with the tenant's
    /// generation. Returns the tenant's new generation.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, cache::{Cache, CacheStatus, Category}, config::Config, metrics::Metrics};
    /// use tenant_guard::tenant::TenantId;
    ///
    /// let (config, metrics) = (Config::from_vars([("REDIS_ENABLED", "false")])?, Metrics::new());
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let get = |t: &'static str| {
    ///     let cache = cache.clone();
    ///     async move {
    ///         let t = TenantId::new(t).unwrap();
    ///         cache.get_or_compute(&t, &Category::query(), &"q", || async { Ok::<_, String>(1) }).await
    ///     }
    /// };
    /// get("acme").await?;
    /// get("globex").await?;
    /// cache.invalidate_tenant(&TenantId::new("acme")?).await?;
    /// assert_eq!(get("acme").await?.status, CacheStatus::Miss);
    /// assert_eq!(get("globex").await?.status, CacheStatus::HitL2); // other tenants kept
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_tenant(&self, tenant: &TenantId) -> Result<u64, BackendError> {
        let gen_key = self.inner.keys.key(KeyKind::CacheGen, tenant, &[]);
        let patterns = [KeyKind::Query, KeyKind::Ai, KeyKind::Cache]
            .map(|k| self.inner.keys.kind_pattern(k, tenant));
        self.invalidate_generation("tenant", &gen_key, &patterns)
            .await
    }

    pub(super) async fn invalidate_generation(
        &self,
        category: &str,
        gen_key: &RedisKey,
        patterns: &[crate::keys::KeyPattern],
    ) -> Result<u64, BackendError> {
        let prefixes: Vec<String> = patterns
            .iter()
            .map(|p| p.as_str().trim_end_matches('*').to_string())
            .collect();
        // L1 here first, then the generation (a fill that read the old one is refused from
        // L1 by the local generation counter), then the other instances.
        let messages: Vec<Invalidation> = prefixes.into_iter().map(Invalidation::Prefix).collect();
        for m in &messages {
            self.inner.apply(m);
        }
        self.event(category, "invalidation");
        let generation = self.inner.bump(gen_key).await?;
        for m in &messages {
            self.publish(m).await;
        }
        Ok(generation)
    }

    pub(super) async fn publish(&self, message: &Invalidation) {
        let Some(bus) = &self.inner.bus else { return };
        if let Err(e) = bus.publish(&self.inner.channel, &message.encode()).await {
            tracing::warn!(error = %e, "cache invalidation not published");
        }
    }
}

impl Inner {
    /// Applies an invalidation here: counts it, marks the flights of the keys it covers
    /// superseded (no caller joins them any more), and drops what it names from L1.
    pub(super) fn apply(&self, message: &Invalidation) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let covers = |k: &str| match message {
            Invalidation::Key(key) => k == key,
            Invalidation::Prefix(p) | Invalidation::Tag { prefix: p, .. } => k.starts_with(p),
            // A flush re-reads L2 (whose generations tell what was invalidated).
            Invalidation::Flush => false,
        };
        for (k, f) in self
            .flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter_mut()
        {
            if covers(k) {
                f.superseded = true;
            }
        }
        let Some(l1) = &self.l1 else { return };
        match message {
            Invalidation::Key(k) => l1.invalidate(k),
            Invalidation::Prefix(p) => {
                let p = p.clone();
                if l1
                    .invalidate_entries_if(move |k, _| k.starts_with(&p))
                    .is_err()
                {
                    l1.invalidate_all();
                }
            }
            Invalidation::Tag { prefix, tag } => {
                let (p, tag) = (prefix.clone(), tag.clone());
                if l1
                    .invalidate_entries_if(move |k, e| {
                        k.starts_with(&p) && e.tags.iter().any(|(t, _)| *t == tag)
                    })
                    .is_err()
                {
                    l1.invalidate_all();
                }
            }
            Invalidation::Flush => l1.invalidate_all(),
        }
    }

    /// The generation keys of a category of a tenant: the tenant's and the category's.
    pub(super) fn generation_keys(&self, tenant: &TenantId, category: &Category) -> [RedisKey; 2] {
        [
            self.keys.key(KeyKind::CacheGen, tenant, &[]),
            self.keys
                .key(KeyKind::CacheGen, tenant, &[&category.generation_name()]),
        ]
    }

    /// The generations to store an entry with: those read with the lookup, else read now;
    /// a generation key that does not exist yet is made (random, `SET NX`) first. When
    /// they cannot be had, `[0, 0]`: reads never serve an entry with a 0 generation. The
    /// tenant's tag epoch comes with them, made the same way (a tagged entry is stored only
    /// when the epoch had a value before its upstream ran, and still has it).
    pub(super) async fn generations(
        &self,
        key: &CacheKey,
        read: Option<Generations>,
    ) -> Generations {
        let whole = |g: &Generations| !g.entry.contains(&0) && g.tag_epoch != 0;
        if let Some(g) = read.filter(whole) {
            return g;
        }
        let [t, c] = &key.gens;
        let keys = [t, c, &key.tag_epoch];
        let Ok(current) = self.store.get_many(&keys).await.map(Generations::read) else {
            return Generations::NONE;
        };
        if whole(&current) {
            return current;
        }
        let [gt, gc] = current.entry;
        for (k, g) in keys.into_iter().zip([gt, gc, current.tag_epoch]) {
            if g == 0 {
                let first = first_generation().to_string();
                if self
                    .store
                    .set_nx(k, first.as_bytes(), self.generation_ttl(Duration::ZERO))
                    .await
                    .is_err()
                {
                    return Generations::NONE;
                }
            }
        }
        self.store
            .get_many(&keys)
            .await
            .map_or(Generations::NONE, Generations::read)
    }

    /// How long a generation key is kept: at least the longest lifetime (TTL, jitter and
    /// stale time) of any configured category, and `lifetime`. Generation keys are made
    /// for whatever tenants and (AI) model names clients send, so they must expire like
    /// every other key; one that expires is safe to lose (a missing generation serves
    /// nothing and a new one starts at a random value).
    pub(super) fn generation_ttl(&self, lifetime: Duration) -> Duration {
        let c = &self.config;
        let longest = c
            .categories
            .values()
            .chain([&c.default_ttl, &c.query_ttl, &c.ai_ttl])
            .max()
            .copied()
            .unwrap_or_default();
        let jitter = u32::from(c.jitter_percent);
        let longest = longest
            .saturating_add(longest.checked_mul(jitter).map_or(longest, |d| d / 100))
            .saturating_add(
                c.swrs
                    .values()
                    .chain([&c.stale, &c.swr])
                    .max()
                    .copied()
                    .unwrap_or_default(),
            );
        // Redis refuses expiry times past ~2^62 ms; a century is forever for a cache.
        longest
            .max(lifetime)
            .min(Duration::from_secs(100 * 365 * 24 * 3600))
    }
}

/// What the invalidation subscription does with each event: a message is applied to L1;
/// L1 is flushed whenever the subscription (re)connects or drops, since messages published
/// meanwhile are lost. Returns false once the cache is gone (the subscription then ends).
pub(super) fn on_event(inner: &Weak<Inner>, event: PubSubEvent<'_>) -> bool {
    let Some(i) = inner.upgrade() else {
        return false;
    };
    match event {
        PubSubEvent::Live => {
            i.apply(&Invalidation::Flush);
            i.subscribed.store(true, Ordering::SeqCst);
            tracing::debug!("cache invalidation subscription live; L1 flushed");
        }
        PubSubEvent::Message(text) => i.apply(&Invalidation::decode(text)),
        PubSubEvent::Lost => {
            i.subscribed.store(false, Ordering::SeqCst);
            i.apply(&Invalidation::Flush);
            tracing::warn!("cache invalidation subscription dropped; L1 flushed, reconnecting");
        }
        PubSubEvent::Unreachable => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::Invalidation;

    #[test]
    fn messages_round_trip_and_unknown_ones_flush() {
        for m in [
            Invalidation::Key("tg:query:{acme}:ab".into()),
            Invalidation::Prefix("tg:cache:{acme}:".into()),
            Invalidation::Tag {
                prefix: "tg:cache:{a b}:".into(),
                tag: "floor:3".into(),
            },
            Invalidation::Flush,
        ] {
            assert_eq!(Invalidation::decode(&m.encode()), m);
        }
        for unknown in ["x whatever", "t a{b} tg:", "t rooms"] {
            assert_eq!(Invalidation::decode(unknown), Invalidation::Flush);
        }
    }
}
