//! `TokenBudget` on its own (no HTTP): refunds on the memory store's overflow counter, a
//! dead instance's reservation ending with its window, a late refund taking nothing from
//! newer usage, and one script call per reservation and per settlement.

mod common;

use std::time::{Duration, Instant};

use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::tenant::{Identity, TenantId};
use tenant_guard::tokens::TokenBudget;

/// Token budgets from env-style variables (an app's way), and their metrics.
fn budget_from(vars: &[(&str, &str)]) -> (TokenBudget, Metrics) {
    let config = Config::from_vars(vars.iter().copied()).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let budget = TokenBudget::from_config(&config, backend, &metrics).unwrap();
    (budget, metrics)
}

/// Memory backend with a counter table full of live counters: a reservation charged to the
/// rule's shared overflow counter is refunded there (not to a counter the identity gets
/// later), so overflow identities are not starved by estimates never given back.
#[tokio::test(flavor = "multi_thread")]
async fn memory_refunds_reach_the_overflow_counter() {
    let (budget, _metrics) = budget_from(&[
        ("TG_MEMORY_MAX_COUNTERS", "1"),
        ("RATE_LIMIT_TOKENS", "user: POST /ai/{mode} = 1000/1m"),
    ]);
    let t = TenantId::new("acme").unwrap();
    let post = http::Method::POST;
    let who = |u: &str| Identity::User(u.into());
    let _ann = budget
        .reserve(&t, &who("ann"), &post, "/ai/{mode}", 10)
        .await
        .unwrap();
    let bob = budget
        .reserve(&t, &who("bob"), &post, "/ai/{mode}", 900)
        .await
        .unwrap();
    bob.refund().await.unwrap();
    let cid = budget
        .reserve(&t, &who("cid"), &post, "/ai/{mode}", 900)
        .await;
    assert!(
        cid.is_ok(),
        "the overflow counter kept bob's 900: {:?}",
        cid.err()
    );
}

/// An instance that dies holding a reservation (never settled) leaks nothing beyond the
/// window: the reservation counts as used until the window has passed, then it is gone.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_crashed_instance_reservation_ends_with_its_window() {
    let server = common::RedisServer::start();
    let (budget, _metrics) = budget_from(&[
        ("REDIS_URL", server.url().as_str()),
        ("RATE_LIMIT_TOKENS", "user: POST /ai/{mode} = 1000/1s"),
        ("RATE_LIMIT_OUTAGE", "closed"),
    ]);
    let (t, ann, post) = (
        TenantId::new("acme").unwrap(),
        Identity::User("ann".into()),
        http::Method::POST,
    );
    let held = budget
        .reserve(&t, &ann, &post, "/ai/{mode}", 900)
        .await
        .unwrap();
    // The instance dies: no settlement, no refund task.
    std::mem::forget(held);
    assert!(
        budget
            .reserve(&t, &ann, &post, "/ai/{mode}", 200)
            .await
            .is_err()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(r) = budget.reserve(&t, &ann, &post, "/ai/{mode}", 1000).await {
            r.settle(1000).await.unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead reservation never left its window"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reservation whose bucket has left the window refunds nothing (its units count for
/// nothing already), and a refund takes back at most what the bucket holds: the refund of
/// an old reservation cannot eat a newer one's units.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_late_refund_takes_nothing_from_newer_usage() {
    let server = common::RedisServer::start();
    let (budget, _metrics) = budget_from(&[
        ("REDIS_URL", server.url().as_str()),
        ("RATE_LIMIT_TOKENS", "user: POST /ai/{mode} = 1000/1s"),
        ("RATE_LIMIT_OUTAGE", "closed"),
    ]);
    let (t, ann, post) = (
        TenantId::new("acme").unwrap(),
        Identity::User("ann".into()),
        http::Method::POST,
    );
    let old = budget
        .reserve(&t, &ann, &post, "/ai/{mode}", 600)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let new = budget
        .reserve(&t, &ann, &post, "/ai/{mode}", 900)
        .await
        .unwrap();
    old.refund().await.unwrap();
    // The newer 900 still count: 200 does not fit.
    assert!(
        budget
            .reserve(&t, &ann, &post, "/ai/{mode}", 200)
            .await
            .is_err()
    );
    new.settle(900).await.unwrap();
}

/// A reservation is one script call and its settlement one more, whatever the number of
/// budgets: counted by Redis itself (`INFO commandstats`).
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_reserve_and_settle_are_one_call_each() {
    let server = common::RedisServer::start();
    let (budget, _metrics) = budget_from(&[
        ("REDIS_URL", server.url().as_str()),
        (
            "RATE_LIMIT_TOKENS",
            "tenant: POST /ai/{mode} = 100000/1m; user: POST /ai/{mode} = 20000/1m",
        ),
        ("RATE_LIMIT_OUTAGE", "closed"),
    ]);
    let (t, ann, post) = (
        TenantId::new("acme").unwrap(),
        Identity::User("ann".into()),
        http::Method::POST,
    );
    // Loads the script (its first call may go through EVAL).
    let warm = budget
        .reserve(&t, &ann, &post, "/ai/{mode}", 10)
        .await
        .unwrap();
    warm.settle(10).await.unwrap();
    server.cli(&["CONFIG", "RESETSTAT"]);
    let calls = || {
        let stats = server.cli(&["INFO", "commandstats"]);
        stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_eval"))
            .map(|l| {
                l.split([':', ','])
                    .find_map(|f| f.strip_prefix("calls="))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum::<u64>()
    };
    let before = calls();
    let r = budget
        .reserve(&t, &ann, &post, "/ai/{mode}", 500)
        .await
        .unwrap();
    assert_eq!(r.decision().rules.len(), 2);
    let reserved = calls();
    r.settle(120).await.unwrap();
    let settled = calls();
    let r = budget
        .reserve(&t, &ann, &post, "/ai/{mode}", 100)
        .await
        .unwrap();
    r.settle(900).await.unwrap();
    let charged = calls();
    assert_eq!(reserved - before, 1, "a reservation is one call");
    assert_eq!(settled - reserved, 1, "a refund is one call");
    assert_eq!(
        charged - settled,
        2,
        "a reservation and an excess charge: two calls"
    );
}
