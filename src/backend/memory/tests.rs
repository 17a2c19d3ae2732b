use super::*;
use crate::clock::ManualClock;
use crate::keys::Keys;
use crate::tenant::TenantId;
use std::num::NonZeroU64;

fn key(id: &str) -> RedisKey {
    Keys::default().cache(&TenantId::new("t").unwrap(), "c", id)
}

fn session(id: &str) -> RedisKey {
    Keys::default().session(&TenantId::new("t").unwrap(), id)
}

fn index(user: &str) -> RedisKey {
    Keys::default().session_index(&TenantId::new("t").unwrap(), user)
}

fn bounded(entries: u64, bytes: u64) -> (MemoryStore, ManualClock) {
    bounded3(entries, 1_000, bytes)
}

fn bounded3(entries: u64, sessions: u64, bytes: u64) -> (MemoryStore, ManualClock) {
    let clock = ManualClock::new();
    let cfg = MemoryConfig {
        max_entries: NonZeroU64::new(entries).unwrap(),
        max_sessions: NonZeroU64::new(sessions).unwrap(),
        max_bytes: NonZeroU64::new(bytes).unwrap(),
        ..MemoryConfig::default()
    };
    (MemoryStore::with_clock(cfg, clock.clone()), clock)
}

const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

#[test]
fn a_cache_flood_evicts_no_session_nor_index() {
    // Regression: one LRU over every key let a flood of cache entries push out
    // sessions (users logged out) and session indexes ("log out everywhere" missed
    // sessions).
    let (s, _) = bounded3(10, 10, 1 << 20);
    s.set(&session("alice"), "a".into(), HOUR).unwrap();
    s.set(&index("alice"), "i".into(), HOUR).unwrap();
    for i in 0..1_000 {
        s.set(&key(&i.to_string()), "v".into(), HOUR).unwrap();
    }
    assert_eq!(s.get(&session("alice")).as_deref(), Some(&b"a"[..]));
    assert_eq!(s.get(&index("alice")).as_deref(), Some(&b"i"[..]));
    let st = s.stats();
    assert_eq!(
        (st.cache_entries, st.sessions, st.session_indexes),
        (10, 1, 1)
    );
    assert_eq!(st.evictions, 990);
}

#[test]
fn a_cache_flood_by_bytes_evicts_no_session() {
    let klen = session("alice").as_str().len() as u64;
    let (s, _) = bounded3(1_000, 10, 4 * (klen + 100));
    s.set(&session("alice"), vec![1u8; 100].into(), HOUR)
        .unwrap();
    for i in 0..100 {
        s.set(&key(&i.to_string()), vec![0u8; 100].into(), HOUR)
            .unwrap();
    }
    assert!(s.get(&session("alice")).is_some());
    assert!(s.bytes() <= 4 * (klen + 100));
    // A session write makes room from the cache.
    s.set(&session("bob"), vec![1u8; 100].into(), HOUR).unwrap();
    assert!(s.get(&session("alice")).is_some());
    assert!(s.bytes() <= 4 * (klen + 100));
}

#[test]
fn a_session_flood_is_refused_not_evicting() {
    let (s, clock) = bounded3(100, 3, 1 << 20);
    s.set(&session("alice"), "a".into(), HOUR).unwrap();
    s.set(&session("s1"), "x".into(), Some(Duration::from_secs(10)))
        .unwrap();
    s.set(&session("s2"), "x".into(), HOUR).unwrap();
    for i in 0..100 {
        let err = s.set(&session(&format!("new{i}")), "x".into(), HOUR);
        assert!(
            matches!(
                err,
                Err(BackendError::Full {
                    what: "sessions",
                    limit: 3
                })
            ),
            "{err:?}"
        );
    }
    assert_eq!(s.stats().refused, 100);
    // Updating an existing session is no new session: allowed.
    s.set(&session("alice"), "a2".into(), HOUR).unwrap();
    assert_eq!(s.get(&session("alice")).as_deref(), Some(&b"a2"[..]));
    // Once one expires, its place is free.
    clock.advance(Duration::from_secs(10));
    s.set(&session("late"), "x".into(), HOUR).unwrap();
    assert!(s.get(&session("alice")).is_some());
    assert_eq!(s.stats().sessions, 3);
}

#[test]
fn sessions_alone_over_the_byte_bound_are_refused() {
    let klen = session("a").as_str().len() as u64;
    let (s, _) = bounded3(100, 100, 2 * (klen + 10));
    s.set(&key("c"), vec![0u8; 10].into(), HOUR).unwrap();
    s.set(&session("a"), vec![0u8; 10].into(), HOUR).unwrap();
    s.set(&session("b"), vec![0u8; 10].into(), HOUR).unwrap();
    // The cache entry made room; now only live sessions are left.
    assert!(s.get(&key("c")).is_none());
    let err = s.set(&session("c"), vec![0u8; 10].into(), HOUR);
    assert!(matches!(err, Err(BackendError::Full { what: "bytes", .. })));
    // Cache writes still succeed, by evicting themselves: sessions stay.
    s.set(&key("d"), vec![0u8; 10].into(), HOUR).unwrap();
    assert!(s.get(&session("a")).is_some() && s.get(&session("b")).is_some());
}

#[test]
fn transact_all_undoes_every_write_when_one_is_refused() {
    let (s, _) = bounded3(100, 2, 1 << 20);
    s.set(&session("old"), "o".into(), HOUR).unwrap();
    s.set(&index("u"), "i".into(), HOUR).unwrap();
    let r: Result<(), BackendError> = s.transact_all(|tx| {
        tx.delete(&session("old"));
        tx.set(&index("u"), "changed".into(), HOUR)?;
        tx.set(&session("n1"), "1".into(), HOUR)?;
        tx.set(&session("n2"), "2".into(), HOUR)?;
        tx.set(&session("n3"), "3".into(), HOUR)?; // the third live session: refused
        Ok(())
    });
    assert!(matches!(r, Err(BackendError::Full { .. })));
    assert_eq!(s.get(&session("old")).as_deref(), Some(&b"o"[..]));
    assert_eq!(s.get(&index("u")).as_deref(), Some(&b"i"[..]));
    assert!(s.get(&session("n1")).is_none() && s.get(&session("n2")).is_none());
    assert_eq!(
        s.ttl(&session("old")),
        KeyTtl::Expires(Duration::from_secs(3600))
    );
    let st = s.stats();
    assert_eq!((st.sessions, st.session_indexes), (1, 1));
    assert_eq!(
        st.bytes,
        (session("old").as_str().len() + index("u").as_str().len() + 2) as u64
    );
}

#[test]
fn purge_clears_a_backlog_in_batches() {
    let (s, clock) = bounded(10_000, 1 << 24);
    for i in 0..3 * PURGE_BATCH + 5 {
        s.set(
            &key(&i.to_string()),
            "v".into(),
            Some(Duration::from_millis(5)),
        )
        .unwrap();
    }
    s.set(&session("a"), "v".into(), Some(Duration::from_millis(5)))
        .unwrap();
    s.set(&key("live"), "v".into(), None).unwrap();
    clock.advance(Duration::from_millis(5));
    assert_eq!(s.purge_expired(), 3 * PURGE_BATCH + 6);
    assert_eq!(s.len(), 1);
}

#[test]
fn lru_eviction_by_count() {
    let (s, _) = bounded(2, 1 << 20);
    s.set(&key("a"), "1".into(), None).unwrap();
    s.set(&key("b"), "2".into(), None).unwrap();
    assert!(s.get(&key("a")).is_some()); // a is now more recent than b
    s.set(&key("c"), "3".into(), None).unwrap();
    assert_eq!(s.len(), 2);
    assert!(s.get(&key("b")).is_none());
    assert!(s.get(&key("a")).is_some());
    assert!(s.get(&key("c")).is_some());
    assert_eq!(s.evictions(), 1);
}

#[test]
fn eviction_by_bytes_and_too_large() {
    let klen = key("a").as_str().len() as u64;
    let (s, _) = bounded(100, 2 * (klen + 10));
    s.set(&key("a"), vec![0u8; 10].into(), None).unwrap();
    s.set(&key("b"), vec![0u8; 10].into(), None).unwrap();
    s.set(&key("c"), vec![0u8; 10].into(), None).unwrap();
    assert_eq!(s.len(), 2);
    assert!(s.bytes() <= 2 * (klen + 10));
    let err = s.set(&key("d"), vec![0u8; 1000].into(), None).unwrap_err();
    assert!(matches!(err, BackendError::TooLarge { .. }));
    // The failed write lost nothing.
    assert_eq!(s.len(), 2);
}

#[test]
fn expired_entries_are_evicted_before_live_ones() {
    let (s, clock) = bounded(2, 1 << 20);
    s.set(&key("short"), "1".into(), Some(Duration::from_secs(1)))
        .unwrap();
    s.set(&key("long"), "2".into(), None).unwrap();
    clock.advance(Duration::from_secs(2));
    s.set(&key("new"), "3".into(), None).unwrap();
    assert!(s.get(&key("long")).is_some());
    assert_eq!(s.evictions(), 0);
}

#[test]
fn purge_removes_only_expired() {
    let (s, clock) = bounded(100, 1 << 20);
    s.set(&key("a"), "1".into(), Some(Duration::from_millis(10)))
        .unwrap();
    s.set(&key("b"), "1".into(), Some(Duration::from_millis(30)))
        .unwrap();
    s.set(&key("c"), "1".into(), None).unwrap();
    clock.advance(Duration::from_millis(20));
    assert_eq!(s.purge_expired(), 1);
    assert_eq!(s.len(), 2);
    assert_eq!(
        s.bytes(),
        (key("b").as_str().len() + key("c").as_str().len() + 2) as u64
    );
}

#[tokio::test(start_paused = true)]
async fn purge_task_runs_and_stops_on_drop() {
    let cfg = MemoryConfig {
        purge_interval: Duration::from_millis(100),
        ..MemoryConfig::default()
    };
    let s = MemoryStore::new(cfg);
    s.set(&key("a"), "1".into(), Some(Duration::from_millis(50)))
        .unwrap();
    assert_eq!(s.len(), 1);
    // The paused runtime auto-advances tokio time, but SystemClock reads real time:
    // give it a real 60 ms so the entry has expired when the task ticks.
    std::thread::sleep(Duration::from_millis(60));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.len(), 0, "background purge did not run");

    let weak = Arc::downgrade(&s.inner);
    drop(s);
    assert!(weak.upgrade().is_none());
    // The task got the shutdown notification; yielding lets it finish.
    tokio::task::yield_now().await;
}
