//! Cache invalidation and the session index while a tenant's slot migrates between two
//! masters of a cluster this test starts (the keys of one tenant split over two nodes for a
//! while). The demo app under a failover and a migration is in
//! `cli/tests/cluster_change.rs`.

mod common;

use tenant_guard::config::Config;
use tenant_guard::keys::hash_slot;

fn tenant_where(prefix: &str, wanted: impl Fn(u16) -> bool) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|t| wanted(hash_slot(format!("{{{t}}}").as_bytes())))
        .expect("a tenant in the wanted slots")
}

/// Invalidation by generation while a tenant's slot migrates (half of its entries on the
/// importing node already): the generation bump lands on whichever node holds the slot's
/// generation key (ASK redirect), and once the slot has moved no entry of either half is
/// served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_during_a_migration_reaches_both_nodes() {
    use tenant_guard::cache::{Cache, Category};
    let cluster = common::RedisCluster::start();
    let masters = cluster.masters();
    let (from_port, a, b) = masters[0];
    let to_port = masters
        .iter()
        .map(|m| m.0)
        .find(|p| *p != from_port)
        .unwrap();
    let tenant = tenant_where("inv", |s| (a..=b).contains(&s));
    let slot = hash_slot(format!("{{{tenant}}}").as_bytes()).to_string();
    let node = |port: u16| cluster.nodes.iter().find(|n| n.port == port).unwrap();
    let config =
        Config::from_vars([("REDIS_CLUSTER_NODES", cluster.nodes_var().as_str())]).unwrap();
    let metrics = tenant_guard::metrics::Metrics::new();
    let backend = tenant_guard::backend::Backend::from_config(&config, &metrics).unwrap();
    let cache = Cache::from_config(&config, backend, &metrics);
    let t = tenant_guard::tenant::TenantId::new(&tenant).unwrap();
    for i in 0..6 {
        cache
            .get_or_compute(
                &t,
                &Category::query(),
                &i,
                || async move { Ok::<_, String>(i) },
            )
            .await
            .unwrap();
    }
    let (from, to) = (node(from_port), node(to_port));
    let from_id = from.cli(&["CLUSTER", "MYID"]);
    let to_id = to.cli(&["CLUSTER", "MYID"]);
    to.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
    from.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    let keys = from.cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
    let keys: Vec<&str> = keys.lines().collect();
    // 6 entries and the generation keys their fills made: the tenant's, the category's
    // and the tenant's tag epoch.
    assert_eq!(keys.len(), 9);
    let port = to_port.to_string();
    let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
    args.extend_from_slice(&keys[..3]);
    assert!(from.cli(&args).contains("OK"));
    let count = |n: &common::RedisServer| -> u64 {
        n.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot])
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!((count(from), count(to)), (6, 3));
    assert!(cache.invalidate_tenant(&t).await.unwrap() > 0);
    // Finish the migration: the rest of the slot's keys move, the slot changes owner.
    let rest = from.cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
    let rest: Vec<&str> = rest.lines().collect();
    if !rest.is_empty() {
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend_from_slice(&rest);
        assert!(from.cli(&args).contains("OK"));
    }
    for n in &cluster.nodes {
        n.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
    // 6 entries + the tenant's, the category's and the tag epoch's generation keys, all on
    // the new owner.
    assert_eq!((count(from), count(to)), (0, 9));
    for i in 0..6 {
        let r = cache
            .get_or_compute(&t, &Category::query(), &i, || async move {
                Ok::<_, String>(100 + i)
            })
            .await
            .unwrap();
        assert_eq!(r.value, 100 + i, "entry {i} served after its invalidation");
    }
}

/// `lua/session_index.lua` declares every session key it touches. While a tenant's slot
/// migrates with the user's index already on the importing node and the session still on
/// the old one, the script that built `prefix .. id` without declaring it was sent to the
/// importing node (ASK, for the index), saw no session there (PTTL -2) and dropped the
/// live session from the index. Declared keys make Redis refuse (TRYAGAIN: the keys are
/// split) instead, and the listing is right once the slot has moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_index_during_a_migration_never_drops_a_live_session() {
    use tenant_guard::session::{Session, SessionStore};
    let cluster = common::RedisCluster::start();
    let masters = cluster.masters();
    let (from_port, a, b) = masters[0];
    let to_port = masters
        .iter()
        .map(|m| m.0)
        .find(|p| *p != from_port)
        .unwrap();
    let tenant = tenant_where("idx", |s| (a..=b).contains(&s));
    let slot = hash_slot(format!("{{{tenant}}}").as_bytes()).to_string();
    let node = |port: u16| cluster.nodes.iter().find(|n| n.port == port).unwrap();
    let config = Config::from_vars([
        ("REDIS_CLUSTER_NODES", cluster.nodes_var().as_str()),
        ("SESSION_OUTAGE", "closed"),
    ])
    .unwrap();
    let metrics = tenant_guard::metrics::Metrics::new();
    let backend = tenant_guard::backend::Backend::from_config(&config, &metrics).unwrap();
    let store = SessionStore::from_config(&config, backend, &metrics);
    let t = tenant_guard::tenant::TenantId::new(&tenant).unwrap();
    let session = Session::detached(t.clone(), store.clone());
    session.set_user_id(Some("alice")).await.unwrap();
    session.insert("k", "v").await.unwrap();
    let id = session.save().await.unwrap().expect("saved");
    assert_eq!(
        store.list_user_sessions(&t, "alice").await.unwrap().len(),
        1
    );

    let (from, to) = (node(from_port), node(to_port));
    let from_id = from.cli(&["CLUSTER", "MYID"]);
    let to_id = to.cli(&["CLUSTER", "MYID"]);
    to.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
    from.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    let keys = from.cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
    let index_key = keys
        .lines()
        .find(|k| !k.ends_with(id.as_str()))
        .expect("the index key")
        .to_string();
    assert_eq!(keys.lines().count(), 2, "{keys}");
    let port = to_port.to_string();
    let args = [
        "MIGRATE",
        "127.0.0.1",
        &port,
        "",
        "0",
        "5000",
        "KEYS",
        &index_key,
    ];
    assert!(from.cli(&args).contains("OK"));

    // Mid-migration: an error (Redis refuses a script whose keys are split) or the live
    // session — never an empty list. The client retries TRYAGAIN a bounded number of
    // times (REDIS_MAX_RETRIES, 3 by default), then answers: counted on the servers.
    for n in [from, to] {
        n.cli(&["CONFIG", "RESETSTAT"]);
    }
    let mid = store.list_user_sessions(&t, "alice").await;
    let tryagain: u64 = [from, to]
        .iter()
        .map(|n| {
            let stats = n.cli(&["INFO", "errorstats"]);
            stats
                .lines()
                .find_map(|l| l.strip_prefix("errorstat_TRYAGAIN:count="))
                .map_or(0, |c| c.trim().parse().unwrap())
        })
        .sum();
    println!("mid-migration listing: {mid:?} after {tryagain} TRYAGAIN replies");
    assert!(
        tryagain <= 8,
        "{tryagain} TRYAGAIN replies: the retries are not bounded"
    );
    // The keys stay split while the slot is held half-migrated: Redis answers TRYAGAIN,
    // the client retries within REDIS_COMMAND_TIMEOUT, then the call fails (nothing hangs,
    // nothing wrong is listed).
    assert!(tryagain >= 1, "the split keys never met TRYAGAIN: {mid:?}");
    assert!(mid.is_err(), "{mid:?}");
    if let Ok(list) = mid {
        assert_eq!(
            list.len(),
            1,
            "a live session vanished from the list: {list:?}"
        );
    }
    // Finish the migration: the index moves too, the slot changes owner.
    let rest: Vec<String> = from
        .cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(rest.len(), 1, "{rest:?}");
    let args = [
        "MIGRATE",
        "127.0.0.1",
        &port,
        "",
        "0",
        "5000",
        "KEYS",
        &rest[0],
    ];
    assert!(from.cli(&args).contains("OK"));
    for n in &cluster.nodes {
        n.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
    let list = store.list_user_sessions(&t, "alice").await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].id, id);
    assert_eq!(store.revoke_user_sessions(&t, "alice").await.unwrap(), 1);
    assert!(
        store
            .list_user_sessions(&t, "alice")
            .await
            .unwrap()
            .is_empty()
    );
}
