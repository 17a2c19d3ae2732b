//! Tags: a handler names what a cached response was built from (`rooms`, `floor:3`), and
//! [`Cache::invalidate_tag`] drops every entry of a tenant carrying a tag in O(1), by
//! generation. Each `(tenant, tag)` has a generation key; an entry stores the generation
//! of each of its tags, and a read of a tagged entry compares them (one more `MGET`, only
//! for tagged entries). The tags are known only once the response is, so a per-tenant tag
//! epoch, read before the upstream runs and bumped first by every tag invalidation, keeps a
//! fill that ran across an invalidation from being stored.

use std::time::Duration;

use super::invalidation::{Invalidation, first_generation, generation};
use super::{Cache, CacheKey, Entry, Inner};
use crate::backend::BackendError;
use crate::keys::{KeyKind, RedisKey};
use crate::tenant::TenantId;

/// The response header a handler (or an upstream behind a proxy) tags a response with:
/// a comma-separated list, stripped by the layer whatever it holds.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{body::Body, routing::get, Router};
/// use tower::ServiceExt;
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
/// use tenant_guard::cache::{Cache, CacheLayer, TAGS_HEADER};
///
/// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
/// let metrics = Metrics::new();
/// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
/// let app = Router::new()
///     .route("/rooms", get(|| async { ([(TAGS_HEADER, "rooms, floor:3")], "301, 302") }))
///     .route_layer(CacheLayer::query(cache.clone()));
/// let ask = || http::Request::get("/rooms").body(Body::empty()).unwrap();
/// let first = app.clone().oneshot(ask()).await?;
/// assert!(first.headers().get(TAGS_HEADER).is_none()); // stripped: clients never see it
/// assert_eq!(app.clone().oneshot(ask()).await?.headers()["x-cache"], "HIT");
/// cache.invalidate_tag(&tenant_guard::tenant::TenantId::new("global")?, "floor:3").await?;
/// assert_eq!(app.clone().oneshot(ask()).await?.headers()["x-cache"], "MISS");
/// # Ok(()) }
/// ```
pub const TAGS_HEADER: &str = "x-cache-tags";

/// The tags a cached response or value carries, for [`Cache::invalidate_tag`]: at most
/// [`MAX_TAGS`](Self::MAX_TAGS), each 1 to [`MAX_TAG_LEN`](Self::MAX_TAG_LEN) bytes of
/// `A-Z a-z 0-9 . _ : / -`; sorted, without duplicates. A handler behind
/// [`CacheLayer`](super::CacheLayer) returns them as a response extension
/// (`Extension(tags)`) or in the `X-Cache-Tags` header.
///
/// ```
/// use tenant_guard::cache::CacheTags;
/// let tags = CacheTags::new(["rooms", "floor:3", "rooms"]).unwrap();
/// assert_eq!(tags.iter().collect::<Vec<_>>(), ["floor:3", "rooms"]);
/// assert_eq!(CacheTags::parse(" rooms , floor:3 ").unwrap(), tags);
/// assert!(CacheTags::new(["two words"]).is_err());
/// assert!(CacheTags::new((0..17).map(|i| format!("t{i}"))).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheTags(Vec<String>);

/// Why tags were refused (the response is then not cached).
///
/// ```
/// use tenant_guard::cache::{CacheTags, InvalidTags};
/// assert_eq!(CacheTags::new(["a b"]), Err(InvalidTags::Tag("a b".into())));
/// let many = CacheTags::new((0..20).map(|i| format!("t{i}")));
/// assert_eq!(many, Err(InvalidTags::TooMany(20)));
/// assert_eq!(InvalidTags::TooMany(20).to_string(), "20 cache tags; at most 16");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTags {
    /// A tag is empty, too long, or holds a byte outside `A-Z a-z 0-9 . _ : / -`.
    #[error("invalid cache tag {0:?}: 1 to 64 bytes of A-Z a-z 0-9 . _ : / -")]
    Tag(String),
    /// More than [`CacheTags::MAX_TAGS`] distinct tags.
    #[error("{0} cache tags; at most 16")]
    TooMany(usize),
}

impl CacheTags {
    /// Most tags one entry carries (each costs a generation read on every L2 hit).
    ///
    /// ```
    /// use tenant_guard::cache::CacheTags;
    /// assert!(CacheTags::new((0..CacheTags::MAX_TAGS).map(|i| format!("t{i}"))).is_ok());
    /// assert!(CacheTags::new((0..=CacheTags::MAX_TAGS).map(|i| format!("t{i}"))).is_err());
    /// ```
    pub const MAX_TAGS: usize = 16;
    /// Longest tag, in bytes.
    ///
    /// ```
    /// use tenant_guard::cache::CacheTags;
    /// assert!(CacheTags::new(["x".repeat(CacheTags::MAX_TAG_LEN)]).is_ok());
    /// assert!(CacheTags::new(["x".repeat(CacheTags::MAX_TAG_LEN + 1)]).is_err());
    /// ```
    pub const MAX_TAG_LEN: usize = 64;

    /// Tags from names (duplicates merged).
    ///
    /// ```
    /// use tenant_guard::cache::CacheTags;
    /// let tags = CacheTags::new(vec!["report/2026-12".to_string(), "tenant-wide".to_string()]).unwrap();
    /// assert_eq!(tags.iter().count(), 2);
    /// assert!(CacheTags::new(["café"]).is_err()); // ASCII only
    /// ```
    pub fn new<I, S>(tags: I) -> Result<Self, InvalidTags>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = Vec::new();
        for t in tags {
            let t = t.into();
            if !valid_tag(&t) {
                // A hostile name is reported by a bounded prefix only.
                let end = t
                    .char_indices()
                    .map(|(i, c)| i + c.len_utf8())
                    .take_while(|&end| end <= Self::MAX_TAG_LEN)
                    .last()
                    .unwrap_or(0);
                return Err(InvalidTags::Tag(t[..end].to_string()));
            }
            out.push(t);
            // Counted as they come (duplicates too): a header of a million names stops
            // here.
            if out.len() > 4 * Self::MAX_TAGS {
                return Err(InvalidTags::TooMany(out.len()));
            }
        }
        out.sort_unstable();
        out.dedup();
        if out.len() > Self::MAX_TAGS {
            return Err(InvalidTags::TooMany(out.len()));
        }
        Ok(Self(out))
    }

    /// Tags from a header value: names separated by commas, blanks around them ignored.
    ///
    /// ```
    /// use tenant_guard::cache::CacheTags;
    /// let tags = CacheTags::parse("floor:3, rooms,,rooms").unwrap();
    /// assert_eq!(tags.iter().collect::<Vec<_>>(), ["floor:3", "rooms"]);
    /// assert!(CacheTags::parse("").unwrap().is_empty());
    /// ```
    pub fn parse(value: &str) -> Result<Self, InvalidTags> {
        Self::new(
            value
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        )
    }

    /// The tags, sorted.
    ///
    /// ```
    /// use tenant_guard::cache::CacheTags;
    /// let tags = CacheTags::new(["rooms", "floor:3", "building:a"]).unwrap();
    /// assert_eq!(tags.iter().collect::<Vec<_>>().join(","), "building:a,floor:3,rooms"); // sorted
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether there are none.
    ///
    /// ```
    /// use tenant_guard::cache::CacheTags;
    /// assert!(CacheTags::default().is_empty());
    /// assert!(!CacheTags::new(["rooms"]).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags as an entry carries them (generations filled in when it is stored).
    pub(crate) fn unstamped(&self) -> Vec<(String, u64)> {
        self.0.iter().map(|t| (t.clone(), 0)).collect()
    }
}

/// Whether `tag` is a tag: 1 to 64 bytes of `A-Z a-z 0-9 . _ : / -`.
///
/// ```
/// use tenant_guard::cache::valid_tag;
/// assert!(valid_tag("floor:3") && valid_tag("report/2025-11-22"));
/// assert!(!valid_tag("") && !valid_tag("a b") && !valid_tag(&"x".repeat(65)));
/// ```
pub fn valid_tag(tag: &str) -> bool {
    (1..=CacheTags::MAX_TAG_LEN).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

impl Cache {
    /// Invalidates every entry of `tenant` that carries `tag` (any category), here, in
    /// Redis and in every instance's L1, in O(1): the tenant's tag epoch then the tag's
    /// generation are moved on (one `INCR` each); entries stored under the old generation
    /// are never served again and leave Redis at their TTL. Returns the tag's new
    /// generation.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::cache::{Cache, CacheStatus, CacheTags, Category};
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false")])?;
    /// let metrics = Metrics::new();
    /// let cache = Cache::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let acme = TenantId::new("acme")?;
    /// let tags = CacheTags::new(["rooms"])?;
    /// let rooms = || async { Ok::<_, String>(vec![301, 302]) };
    /// let q = Category::query();
    /// cache.get_or_compute_tagged(&acme, &q, &"rooms", &tags, rooms).await?;
    /// assert_eq!(cache.get_or_compute_tagged(&acme, &q, &"rooms", &tags, rooms).await?.status, CacheStatus::HitL2);
    /// cache.invalidate_tag(&acme, "rooms").await?;
    /// assert_eq!(cache.get_or_compute_tagged(&acme, &q, &"rooms", &tags, rooms).await?.status, CacheStatus::Miss);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_tag(&self, tenant: &TenantId, tag: &str) -> Result<u64, BackendError> {
        if !valid_tag(tag) {
            return Err(BackendError::Unsupported(
                "invalid cache tag: 1 to 64 bytes of A-Z a-z 0-9 . _ : / -",
            ));
        }
        let inner = &*self.inner;
        let messages = [KeyKind::Query, KeyKind::Ai, KeyKind::Cache].map(|k| Invalidation::Tag {
            prefix: inner
                .keys
                .kind_pattern(k, tenant)
                .as_str()
                .trim_end_matches('*')
                .to_string(),
            tag: tag.to_string(),
        });
        // L1 here first (a local fill that started before is refused from L1 by the
        // local generation counter), then the epoch (a fill running now is not stored),
        // then the tag's generation (what is stored is not served), then the others.
        for m in &messages {
            inner.apply(m);
        }
        inner.event("tag", "invalidation");
        inner.bump(&inner.tag_epoch_key(tenant)).await?;
        let generation = inner.bump(&inner.tag_key(tenant, tag)).await?;
        for m in &messages {
            self.publish(m).await;
        }
        Ok(generation)
    }
}

impl Inner {
    /// `tg:cachegen:{tenant}:tag:<tag>`: the tag's generation (the tenant's slot).
    pub(super) fn tag_key(&self, tenant: &TenantId, tag: &str) -> RedisKey {
        self.keys.key(KeyKind::CacheGen, tenant, &["tag", tag])
    }

    /// `tg:cachegen:{tenant}:tags`: the tenant's tag epoch, moved on by every tag
    /// invalidation.
    pub(super) fn tag_epoch_key(&self, tenant: &TenantId) -> RedisKey {
        self.keys.key(KeyKind::CacheGen, tenant, &["tags"])
    }

    /// Moves a generation on: made random first if absent (never a value an entry
    /// carries), then `INCR`.
    pub(super) async fn bump(&self, key: &RedisKey) -> Result<u64, BackendError> {
        self.store
            .set_nx(
                key,
                first_generation().to_string().as_bytes(),
                self.generation_ttl(Duration::ZERO),
            )
            .await?;
        self.store.incr(key).await
    }

    /// Fills in the generations of a tagged entry about to be stored (tag keys that do not
    /// exist yet are made, to live as long as the entry: `lifetime`). False — do not
    /// store — when a tag of the tenant was invalidated since `epoch` was read (before the
    /// upstream ran), when there was no epoch to read, or when Redis fails.
    pub(super) async fn stamp_tags(
        &self,
        ck: &CacheKey,
        e: &mut Entry,
        epoch: u64,
        lifetime: Duration,
    ) -> bool {
        if e.tags.is_empty() {
            return true;
        }
        if epoch == 0 {
            return false;
        }
        let tag_keys: Vec<RedisKey> = e
            .tags
            .iter()
            .map(|(t, _)| self.tag_key(&ck.tenant, t))
            .collect();
        let all: Vec<&RedisKey> = std::iter::once(&ck.tag_epoch)
            .chain(tag_keys.iter())
            .collect();
        for round in 0..2 {
            let Ok(v) = self.store.get_many(&all).await else {
                return false;
            };
            if generation(v.first().and_then(Option::as_ref)) != epoch {
                self.event(ck.category.name(), "tag_race");
                return false;
            }
            let gens: Vec<u64> = v[1..].iter().map(|g| generation(g.as_ref())).collect();
            if !gens.contains(&0) {
                for ((_, g), now) in e.tags.iter_mut().zip(gens) {
                    *g = now;
                }
                return true;
            }
            if round == 1 {
                return false;
            }
            for (k, g) in tag_keys.iter().zip(gens) {
                if g == 0 {
                    let first = first_generation().to_string();
                    if self
                        .store
                        .set_nx(k, first.as_bytes(), lifetime)
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
            }
        }
        false
    }

    /// Whether every tag of an entry read from L2 still has the generation it was stored
    /// with (untagged entries: no round trip).
    pub(super) async fn tags_current(
        &self,
        ck: &CacheKey,
        e: &Entry,
    ) -> Result<bool, BackendError> {
        if e.tags.is_empty() {
            return Ok(true);
        }
        let tag_keys: Vec<RedisKey> = e
            .tags
            .iter()
            .map(|(t, _)| self.tag_key(&ck.tenant, t))
            .collect();
        let refs: Vec<&RedisKey> = tag_keys.iter().collect();
        let now = self.store.get_many(&refs).await?;
        Ok(now.len() == e.tags.len()
            && e.tags
                .iter()
                .zip(&now)
                .all(|((_, g), n)| *g != 0 && generation(n.as_ref()) == *g))
    }

    /// The tag keys of an entry, kept as long as it lives (a tag key that expires before an
    /// older entry carrying it only makes that entry a miss).
    pub(super) async fn keep_tags(&self, ck: &CacheKey, e: &Entry, ttl: Duration) {
        let keys: Vec<RedisKey> = e
            .tags
            .iter()
            .map(|(t, _)| self.tag_key(&ck.tenant, t))
            .collect();
        futures_util::future::join_all(keys.iter().map(|k| self.store.expire(k, ttl))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_tag_lists_are_refused_and_bounded() {
        assert_eq!(CacheTags::parse("").unwrap(), CacheTags::default());
        assert_eq!(
            CacheTags::parse("a,,b , a")
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        // Duplicates of one name are one tag; a flood of them is refused, unread.
        let some = vec!["t"; 40].join(",");
        assert_eq!(CacheTags::parse(&some).unwrap().iter().count(), 1);
        let flood = vec!["t"; 100_000].join(",");
        assert!(matches!(
            CacheTags::parse(&flood),
            Err(InvalidTags::TooMany(65))
        ));
        let distinct: String = (0..100_000).map(|i| format!("t{i},")).collect();
        assert!(matches!(
            CacheTags::parse(&distinct),
            Err(InvalidTags::TooMany(n)) if n <= 4 * CacheTags::MAX_TAGS + 1
        ));
        let long = "é".repeat(10_000);
        match CacheTags::parse(&long) {
            Err(InvalidTags::Tag(shown)) => assert!(shown.len() <= CacheTags::MAX_TAG_LEN),
            other => panic!("{other:?}"),
        }
        for bad in ["a b", "a\nb", "{x}", "*", "x".repeat(65).as_str()] {
            assert!(CacheTags::new([bad]).is_err(), "{bad:?}");
        }
    }
}
