//! Limits changed at runtime (`tenant-guard limits`, `LimitStore`, `set_tenant_limits`):
//! a tenant's quota or plan changed without a deploy — at once on the instance that
//! changed it, within a second on every other instance watching the store (one Redis node,
//! the cluster) — refused when it names a rule or plan that does not exist, and cleared.

mod common;

use std::time::Duration;

use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::keys::Keys;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Identity, LimitStore, RateLimiter, TenantLimits};
use tenant_guard::tenant::TenantId;

use common::Target as Kind;

const VARS: &[(&str, &str)] = &[
    ("RATE_LIMIT_TENANT", "2/1m"),
    ("RATE_LIMIT_MAX", "100000"),
    ("RATE_LIMIT_PLANS", "pro: per-tenant=4/1m"),
];

fn instance(vars: &[(String, String)]) -> (RateLimiter, LimitStore) {
    let config = Config::from_vars(vars.to_vec()).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    let store = LimitStore::new(backend.clone(), &Keys::new(config.key_prefix.clone()));
    (RateLimiter::from_config(&config, backend, &metrics), store)
}

/// How many of `n` checks of the tenant are admitted.
async fn admitted(l: &RateLimiter, t: &TenantId, n: usize) -> usize {
    let who = Identity::User("u".into());
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(
            l.check(&common::get_check(t, &who, "/r", None))
                .await
                .allowed,
        );
    }
    ok
}

#[tokio::test]
async fn memory_changes_apply_at_once_and_bad_ones_are_refused() {
    let vars: Vec<(String, String)> = VARS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (l, _store) = instance(&vars);
    let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
    l.set_tenant_limits(&a, Some(TenantLimits::parse("per-tenant=5/1m").unwrap()))
        .unwrap();
    assert_eq!(admitted(&l, &a, 10).await, 5);
    assert_eq!(
        admitted(&l, &b, 10).await,
        2,
        "other tenants keep the configuration's"
    );
    let err = l
        .set_tenant_limits(&b, Some(TenantLimits::parse("nope=5/1m").unwrap()))
        .unwrap_err();
    assert_eq!(err.reason(), "no rule is named `nope`");
    let err = l
        .set_tenant_limits(&b, Some(TenantLimits::parse("plan=gold").unwrap()))
        .unwrap_err();
    assert_eq!(err.reason(), "no plan is named `gold`");
    assert_eq!(
        l.tenant_limits(&b),
        None,
        "a refused change changes nothing"
    );
    let c = TenantId::new("c").unwrap();
    l.set_tenant_limits(&c, Some(TenantLimits::parse("plan=pro").unwrap()))
        .unwrap();
    assert_eq!(admitted(&l, &c, 10).await, 4, "the plan changed at runtime");
    l.set_tenant_limits(&c, None).unwrap();
    assert_eq!(l.tenant_limits(&c), None);
}

mod checks {
    use super::*;

    /// Three instances watch the store; a change written to it (as `tenant-guard limits
    /// set` does) is in force on all of them a second later, and so is clearing it.
    pub(super) async fn a_change_reaches_every_instance_within_a_second(kind: Kind) {
        let (vars, _server) = common::target_vars(kind, VARS);
        let instances: Vec<(RateLimiter, LimitStore)> = (0..3).map(|_| instance(&vars)).collect();
        let _watches: Vec<_> = instances
            .iter()
            .map(|(l, s)| l.watch_limits(s.clone(), Duration::from_millis(500)))
            .collect();
        let store = &instances[0].1;
        let t = common::unique_tenant("limits");
        let raise = TenantLimits::parse("per-tenant=6/1m").unwrap();
        store.set(&t, &raise).await.unwrap();
        assert_eq!(store.get(&t).await.unwrap(), Some(raise.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (i, (l, _)) in instances.iter().enumerate() {
            assert_eq!(l.tenant_limits(&t), Some(raise.clone()), "instance {i}");
        }
        // The counters are shared: 6 in all, across the instances.
        let mut ok = 0;
        for (l, _) in &instances {
            ok += admitted(l, &t, 3).await;
        }
        assert_eq!(ok, 6);
        assert!(store.clear(&t).await.unwrap());
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (l, _) in &instances {
            assert_eq!(l.tenant_limits(&t), None);
        }
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod redis_single {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Redis).await } )*
        }
        mod redis_cluster {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Cluster).await } )*
        }
    };
}

conformance!(a_change_reaches_every_instance_within_a_second);

/// An entry the store holds that this instance's policy cannot apply (written by an
/// instance with other rules) is skipped, the others applied.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_unknown_rules_in_the_store_are_skipped() {
    let (vars, _server) = common::target_vars(Kind::Redis, VARS);
    let (l, store) = instance(&vars);
    let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
    store
        .set(&a, &TenantLimits::parse("ghost=1/1m").unwrap())
        .await
        .unwrap();
    store
        .set(&b, &TenantLimits::parse("per-tenant=3/1m").unwrap())
        .await
        .unwrap();
    let _watch = l.watch_limits(store, Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(l.tenant_limits(&a), None);
    assert_eq!(admitted(&l, &b, 5).await, 3);
}

/// Runtime limits that name no plan keep the tenant's configured plan as their base: a
/// change to another rule lifts no plan restriction.
#[tokio::test]
async fn memory_runtime_limits_keep_the_configured_plan() {
    let mut vars: Vec<(String, String)> = VARS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.retain(|(k, _)| k != "RATE_LIMIT_PLANS");
    vars.push(("RATE_LIMIT_PLANS".into(), "free: per-tenant=1/1m".into()));
    vars.push(("RATE_LIMIT_TENANT_PLANS".into(), "c=free".into()));
    vars.push(("RATE_LIMIT_USER".into(), "100/1m".into()));
    let (l, _store) = instance(&vars);
    let c = TenantId::new("c").unwrap();
    l.set_tenant_limits(&c, Some(TenantLimits::parse("per-user=50/1m").unwrap()))
        .unwrap();
    assert_eq!(admitted(&l, &c, 10).await, 1, "still on the free plan");
}

/// A table this version cannot read is an error, never an empty table; an entry it cannot
/// read leaves the limits in force for that tenant.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_unreadable_entries_keep_the_limits_in_force() {
    let (vars, server) = common::target_vars(Kind::Redis, VARS);
    let server = server.unwrap();
    let (l, store) = instance(&vars);
    let b = TenantId::new("b").unwrap();
    store
        .set(&b, &TenantLimits::parse("per-tenant=3/1m").unwrap())
        .await
        .unwrap();
    let _watch = l.watch_limits(store.clone(), Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(l.tenant_limits(&b).is_some());
    server.cli(&["HSET", "tg:limits:{global}:tenants", "b", "per-tenant"]);
    server.cli(&["INCR", "tg:limits:{global}:version"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        l.tenant_limits(&b).unwrap().to_string(),
        "per-tenant=3/60s",
        "kept"
    );
}

#[tokio::test]
async fn memory_a_corrupt_table_is_an_error() {
    let config = Config::default();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let store = LimitStore::new(backend.clone(), &Keys::default());
    let key = Keys::default().key(
        tenant_guard::keys::KeyKind::Limits,
        &TenantId::new("global").unwrap(),
        &["tenants"],
    );
    backend.set(&key, b"{not json", None).await.unwrap();
    assert!(store.all().await.is_err());
}

/// Exempt and deny lists changed at runtime reach every watching instance within a second,
/// on top of the configuration's lists, and can be emptied again.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_runtime_access_lists_reach_every_instance() {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tenant_guard::ratelimit::{AccessList, RateLimitLayer};
    use tenant_guard::tenant::{TenantLayer, TenantResolver};
    use tower::ServiceExt;

    let (mut vars, _server) = common::target_vars(Kind::Redis, VARS);
    vars.push(("RATE_LIMIT_USER_HEADER".into(), "x-user".into()));
    let apps: Vec<(Router, LimitStore, tenant_guard::ratelimit::LimitWatch)> = (0..2)
        .map(|_| {
            let config = Config::from_vars(vars.clone()).unwrap();
            let (l, store) = instance(&vars);
            let watch = l.watch_limits(store.clone(), Duration::from_millis(500));
            let router = Router::new()
                .route("/r", get(|| async { "ok" }))
                .layer(RateLimitLayer::from_config(&config, l))
                .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
            (router, store, watch)
        })
        .collect();
    let status = |i: usize, tenant: &str, user: &str| {
        let app = apps[i].0.clone();
        let req = http::Request::get("/r")
            .header("x-tenant-id", tenant)
            .header("x-user", user)
            .body(Body::empty())
            .unwrap();
        async move { app.oneshot(req).await.unwrap().status().as_u16() }
    };
    let store = &apps[0].1;
    store
        .set_lists(
            &AccessList::parse("tenant:internal").unwrap(),
            &AccessList::parse("user:spammer").unwrap(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..2 {
        assert_eq!(
            status(i, "acme", "spammer").await,
            403,
            "instance {i} denies"
        );
    }
    // `internal` is exempt from its 2/1m: never refused.
    for n in 0..6 {
        assert_eq!(status(n % 2, "internal", "u").await, 200);
    }
    store
        .set_lists(&AccessList::default(), &AccessList::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        status(1, "acme", "spammer").await,
        200,
        "the deny list was emptied"
    );
}
