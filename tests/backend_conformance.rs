//! One conformance suite for every backend: memory, a single Redis node and a 3-master
//! Redis Cluster (servers started by `tests/common`). Each check runs against all three.

mod common;

use std::time::Duration;

use tenant_guard::backend::{Backend, KeyTtl};
use tenant_guard::config::Config;
use tenant_guard::keys::{KeyKind, Keys};
use tenant_guard::metrics::Metrics;

/// A backend plus whatever keeps its servers alive.
struct Fixture {
    backend: Backend,
    keys: Keys,
    _server: Option<common::RedisServer>,
}

fn backend(vars: &[(&str, &str)]) -> Backend {
    let config = Config::from_vars(vars.iter().copied()).expect("config");
    Backend::from_config(&config, &Metrics::new()).expect("backend")
}

fn memory() -> Fixture {
    Fixture {
        backend: backend(&[]),
        keys: Keys::default(),
        _server: None,
    }
}

fn redis() -> Fixture {
    let server = common::RedisServer::start();
    Fixture {
        backend: backend(&[("REDIS_URL", &server.url())]),
        keys: Keys::default(),
        _server: Some(server),
    }
}

fn cluster() -> Fixture {
    let info = common::shared_cluster();
    Fixture {
        backend: backend(&[("REDIS_CLUSTER_NODES", &info.nodes_var)]),
        keys: Keys::default(),
        _server: None,
    }
}

mod checks {
    use super::*;

    pub(super) async fn roundtrip(f: &Fixture) {
        let t = common::unique_tenant("rt");
        let k = f.keys.cache(&t, "reports", "day-1");
        assert_eq!(f.backend.get(&k).await.unwrap(), None);
        let binary: Vec<u8> = (0..=255u8).collect();
        f.backend.set(&k, &binary, None).await.unwrap();
        assert_eq!(
            f.backend.get(&k).await.unwrap().as_deref(),
            Some(&binary[..])
        );
        f.backend.set(&k, b"second", None).await.unwrap();
        assert_eq!(
            f.backend.get(&k).await.unwrap().as_deref(),
            Some(&b"second"[..])
        );
        f.backend.set(&k, b"", None).await.unwrap();
        assert_eq!(f.backend.get(&k).await.unwrap().as_deref(), Some(&b""[..]));
    }

    pub(super) async fn ttl_semantics(f: &Fixture) {
        let t = common::unique_tenant("ttl");
        let k = f.keys.query(&t, "h1");
        assert_eq!(f.backend.ttl(&k).await.unwrap(), KeyTtl::Missing);
        f.backend
            .set(&k, b"v", Some(Duration::from_secs(300)))
            .await
            .unwrap();
        match f.backend.ttl(&k).await.unwrap() {
            KeyTtl::Expires(d) => assert!(
                d <= Duration::from_secs(300) && d > Duration::from_secs(290),
                "{d:?}"
            ),
            other => panic!("{other:?}"),
        }
        // A plain SET clears the TTL, as in Redis.
        f.backend.set(&k, b"v", None).await.unwrap();
        assert_eq!(f.backend.ttl(&k).await.unwrap(), KeyTtl::Persistent);
        assert!(f.backend.expire(&k, Duration::from_secs(60)).await.unwrap());
        assert!(matches!(
            f.backend.ttl(&k).await.unwrap(),
            KeyTtl::Expires(_)
        ));
        let missing = f.keys.query(&t, "nope");
        assert!(
            !f.backend
                .expire(&missing, Duration::from_secs(60))
                .await
                .unwrap()
        );
    }

    pub(super) async fn expiry(f: &Fixture) {
        let t = common::unique_tenant("exp");
        let k = f.keys.cache(&t, "c", "short");
        f.backend
            .set(&k, b"v", Some(Duration::from_millis(400)))
            .await
            .unwrap();
        // Real time on Redis: margins of several times the TTL either way.
        assert!(f.backend.get(&k).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(f.backend.get(&k).await.unwrap(), None);
        assert_eq!(f.backend.ttl(&k).await.unwrap(), KeyTtl::Missing);
    }

    pub(super) async fn set_nx(f: &Fixture) {
        let t = common::unique_tenant("nx");
        let k = f.keys.key(KeyKind::Lock, &t, &["fill", "abc"]);
        assert!(
            f.backend
                .set_nx(&k, b"a", Some(Duration::from_millis(400)))
                .await
                .unwrap()
        );
        assert!(
            !f.backend
                .set_nx(&k, b"b", Some(Duration::from_millis(400)))
                .await
                .unwrap()
        );
        assert_eq!(f.backend.get(&k).await.unwrap().as_deref(), Some(&b"a"[..]));
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(
            f.backend.set_nx(&k, b"c", None).await.unwrap(),
            "NX after expiry"
        );
    }

    pub(super) async fn delete_and_compare_and_delete(f: &Fixture) {
        let t = common::unique_tenant("del");
        let k = f.keys.key(KeyKind::Lock, &t, &["lease"]);
        assert!(!f.backend.delete(&k).await.unwrap());
        f.backend.set(&k, b"token-1", None).await.unwrap();
        assert!(!f.backend.delete_if_eq(&k, b"token-2").await.unwrap());
        assert!(f.backend.get(&k).await.unwrap().is_some());
        assert!(f.backend.delete_if_eq(&k, b"token-1").await.unwrap());
        assert!(f.backend.get(&k).await.unwrap().is_none());
        f.backend.set(&k, b"x", None).await.unwrap();
        assert!(f.backend.delete(&k).await.unwrap());
        assert!(!f.backend.delete_if_eq(&k, b"x").await.unwrap());
    }

    pub(super) async fn delete_matching_is_confined(f: &Fixture) {
        let a = common::unique_tenant("pa");
        let b = common::unique_tenant("pb");
        // Enough keys to need several SCAN batches.
        for i in 0..1500 {
            let id = i.to_string();
            f.backend
                .set(
                    &f.keys.cache(&a, "reports", &id),
                    b"x",
                    Some(Duration::from_secs(60)),
                )
                .await
                .unwrap();
        }
        f.backend
            .set(&f.keys.cache(&a, "users", "1"), b"x", None)
            .await
            .unwrap();
        f.backend
            .set(&f.keys.cache(&a, "reports*", "1"), b"x", None)
            .await
            .unwrap();
        f.backend
            .set(&f.keys.cache(&b, "reports", "1"), b"x", None)
            .await
            .unwrap();
        f.backend
            .set(&f.keys.session(&a, "s1"), b"x", None)
            .await
            .unwrap();

        // A hostile category cannot widen the pattern: it matches only its literal self.
        let hostile = f.keys.prefix_pattern(KeyKind::Cache, &a, &["*"]);
        assert_eq!(f.backend.delete_matching(&hostile).await.unwrap(), 0);

        let p = f.keys.prefix_pattern(KeyKind::Cache, &a, &["reports"]);
        assert_eq!(f.backend.delete_matching(&p).await.unwrap(), 1500);
        assert!(
            f.backend
                .get(&f.keys.cache(&a, "reports", "7"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            f.backend
                .get(&f.keys.cache(&a, "users", "1"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            f.backend
                .get(&f.keys.cache(&a, "reports*", "1"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            f.backend
                .get(&f.keys.cache(&b, "reports", "1"))
                .await
                .unwrap()
                .is_some()
        );

        // Whole tenant: everything of A, nothing of B.
        assert_eq!(
            f.backend
                .delete_matching(&f.keys.tenant_pattern(&a))
                .await
                .unwrap(),
            3
        );
        assert!(
            f.backend
                .get(&f.keys.session(&a, "s1"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            f.backend
                .get(&f.keys.cache(&b, "reports", "1"))
                .await
                .unwrap()
                .is_some()
        );
    }

    pub(super) async fn tenants_are_isolated(f: &Fixture) {
        let a = common::unique_tenant("ia");
        let b = common::unique_tenant("ib");
        let ka = f.keys.ai(&a, "gpt-4o", "samehash");
        let kb = f.keys.ai(&b, "gpt-4o", "samehash");
        f.backend.set(&ka, b"answer for a", None).await.unwrap();
        assert_eq!(f.backend.get(&kb).await.unwrap(), None);
        f.backend.set(&kb, b"answer for b", None).await.unwrap();
        assert_eq!(
            f.backend.get(&ka).await.unwrap().as_deref(),
            Some(&b"answer for a"[..])
        );
    }

    pub(super) async fn hostile_components_stay_in_their_key(f: &Fixture) {
        let t = common::unique_tenant("hc");
        let evil = ["x}:{other", "*", "a\nb", "ü", "GET /users/{id}", "%3A"];
        for (i, e) in evil.iter().enumerate() {
            let k = f.keys.cache(&t, "c", e);
            f.backend
                .set(&k, i.to_string().as_bytes(), None)
                .await
                .unwrap();
        }
        for (i, e) in evil.iter().enumerate() {
            let k = f.keys.cache(&t, "c", e);
            assert_eq!(
                f.backend.get(&k).await.unwrap().as_deref(),
                Some(i.to_string().as_bytes())
            );
        }
        assert_eq!(
            f.backend
                .delete_matching(&f.keys.tenant_pattern(&t))
                .await
                .unwrap(),
            evil.len() as u64
        );
    }

    /// `INCR`: counts from an absent key, keeps the key's TTL (the cache's generation keys
    /// rely on it: made with a TTL, moved on by invalidations, never left without one).
    pub(super) async fn incr_counts_and_keeps_ttl(f: &Fixture) {
        let t = common::unique_tenant("incr");
        let fresh = f.keys.key(KeyKind::CacheGen, &t, &["fresh"]);
        assert_eq!(f.backend.incr(&fresh).await.unwrap(), 1);
        assert_eq!(f.backend.incr(&fresh).await.unwrap(), 2);
        assert_eq!(f.backend.ttl(&fresh).await.unwrap(), KeyTtl::Persistent);
        let timed = f.keys.key(KeyKind::CacheGen, &t, &["timed"]);
        f.backend
            .set(&timed, b"41", Some(Duration::from_secs(300)))
            .await
            .unwrap();
        assert_eq!(f.backend.incr(&timed).await.unwrap(), 42);
        match f.backend.ttl(&timed).await.unwrap() {
            KeyTtl::Expires(left) => assert!(left > Duration::from_secs(200), "{left:?}"),
            other => panic!("INCR dropped the TTL: {other:?}"),
        }
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test] async fn $check() { super::checks::$check(&super::memory()).await } )*
        }
        mod redis_single {
            $( #[tokio::test] async fn $check() { super::checks::$check(&super::redis()).await } )*
        }
        mod redis_cluster {
            $( #[tokio::test] async fn $check() { super::checks::$check(&super::cluster()).await } )*
        }
    };
}

conformance!(
    roundtrip,
    ttl_semantics,
    expiry,
    set_nx,
    delete_and_compare_and_delete,
    delete_matching_is_confined,
    tenants_are_isolated,
    hostile_components_stay_in_their_key,
    incr_counts_and_keeps_ttl,
);

/// A single node is reached over `REDIS_POOL_SIZE` connections used in turn: that many
/// clients appear on the server, each of them used.
#[tokio::test]
async fn pool_spreads_commands_over_its_connections() {
    for size in [1usize, 3] {
        let server = common::RedisServer::start();
        let b = backend(&[
            ("REDIS_URL", &server.url()),
            ("REDIS_POOL_SIZE", &size.to_string()),
        ]);
        let t = common::unique_tenant("pool");
        let k = Keys::default().query(&t, "h");
        for _ in 0..(4 * size) {
            b.get(&k).await.unwrap();
        }
        let clients = server.cli(&["CLIENT", "LIST"]);
        let used = clients.lines().filter(|l| l.contains("cmd=get")).count();
        assert_eq!(used, size, "{clients}");
    }
}

/// The harness' tenant ids are distinct across calls (tests share servers and rely on it).
#[test]
fn harness_tenant_ids_are_distinct() {
    let ids: std::collections::HashSet<String> = (0..1000)
        .map(|_| common::unique_tenant("x").as_str().to_string())
        .collect();
    assert_eq!(ids.len(), 1000);
}
