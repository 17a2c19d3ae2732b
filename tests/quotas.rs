//! Calendar quotas (`RATE_LIMIT_QUOTA_TENANT`, `RATE_LIMIT_QUOTA_USER`) on every backend
//! (memory, a single Redis node, the 3-master cluster), on a manual clock: the quota holds
//! for the period, `Retry-After` and the reset point at the boundary, the count starts
//! again there — in the quota's time zone, and on a tenant's billing anchor day — and a new
//! instance on Redis sees the period's usage so far.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http_body_util::BodyExt;
use tenant_guard::backend::{Backend, MemoryStore};
use tenant_guard::clock::ManualClock;
use tenant_guard::config::{Config, MemoryConfig};
use tenant_guard::keys::Keys;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{
    Decision, Identity, LimiterOptions, OutageMode, Period, Policy, RateLimitLayer, RateLimiter,
};
use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
use tower::ServiceExt;

use common::Target as Kind;

fn ms(rfc3339: &str) -> u64 {
    let t: jiff::Timestamp = rfc3339.parse().unwrap();
    u64::try_from(t.as_millisecond()).unwrap()
}

/// A limiter (and its config) with `vars` on `kind`, its periods (and, on memory, its
/// counters) on `clock`.
fn limiter(
    kind: Kind,
    vars: &[(&str, &str)],
    clock: &ManualClock,
) -> (RateLimiter, Config, Option<common::RedisServer>) {
    let mut all = vec![("RATE_LIMIT_MAX", "100000"), ("RATE_LIMIT_WINDOW", "1s")];
    all.extend_from_slice(vars);
    let (all, server) = common::target_vars(kind, &all);
    let config = Config::from_vars(all).expect("config");
    let metrics = Metrics::new();
    let backend = match kind {
        Kind::Memory => Backend::Memory(MemoryStore::with_clock(
            MemoryConfig::default(),
            clock.clone(),
        )),
        _ => Backend::from_config(&config, &metrics).unwrap(),
    };
    let mut options = LimiterOptions::default().with_clock(Arc::new(clock.clone()));
    options.outage = OutageMode::Closed;
    let limiter = RateLimiter::new(
        backend,
        Keys::new(config.key_prefix.clone()),
        Policy::from_config(&config.rate_limit),
        options,
        &metrics,
    );
    (limiter, config, server)
}

async fn check(l: &RateLimiter, t: &TenantId, user: &str) -> Decision {
    let who = Identity::User(user.into());
    l.check(&common::get_check(t, &who, "/r", None)).await
}

fn quota(d: &Decision, name: &str) -> (bool, Duration, Option<Duration>, Option<Period>) {
    let r = d
        .rules
        .iter()
        .find(|r| r.name == name)
        .expect("the quota applies");
    (r.allowed, r.reset, r.retry_after, r.period)
}

mod checks {
    use super::*;

    /// 3 per month: the 4th request of November is refused until December (60 s away),
    /// another tenant has its own quota, and December starts from zero.
    pub(super) async fn a_monthly_quota_resets_at_the_boundary(kind: Kind) {
        let clock = ManualClock::new();
        clock.set_ms(ms("2026-11-30T23:59:00Z"));
        let (l, _c, _s) = limiter(kind, &[("RATE_LIMIT_QUOTA_TENANT", "3/month")], &clock);
        let t = common::unique_tenant("quota");
        for i in 0..3 {
            let d = check(&l, &t, &format!("u{i}")).await;
            assert!(d.allowed, "{d:?}");
        }
        let d = check(&l, &t, "u9").await;
        assert!(!d.allowed);
        let minute = Duration::from_secs(60);
        assert_eq!(
            quota(&d, "quota-tenant"),
            (false, minute, Some(minute), Some(Period::Month))
        );
        let other = common::unique_tenant("quota");
        assert!(check(&l, &other, "u1").await.allowed);
        clock.set_ms(ms("2026-12-01T00:00:00Z"));
        let d = check(&l, &t, "u9").await;
        assert!(d.allowed, "December starts from zero: {d:?}");
        assert_eq!(
            quota(&d, "quota-tenant").1,
            Duration::from_secs(31 * 24 * 3600)
        );
    }

    /// A daily user quota in New York: the day ends at 05:00 UTC in winter. A monthly quota
    /// of a tenant anchored on the 15th ends at midnight before the 15th.
    pub(super) async fn time_zones_and_anchors_move_the_boundary(kind: Kind) {
        let clock = ManualClock::new();
        clock.set_ms(ms("2026-12-01T04:59:30Z"));
        let vars = [
            ("RATE_LIMIT_QUOTA_USER", "2/day"),
            ("RATE_LIMIT_QUOTA_TZ", "America/New_York"),
        ];
        let (l, _c, _s) = limiter(kind, &vars, &clock);
        let t = common::unique_tenant("quota");
        assert!(check(&l, &t, "ann").await.allowed);
        assert!(check(&l, &t, "ann").await.allowed);
        let d = check(&l, &t, "ann").await;
        assert_eq!(quota(&d, "quota-user").2, Some(Duration::from_secs(30)));
        assert!(check(&l, &t, "bob").await.allowed, "per user");
        clock.set_ms(ms("2026-12-01T05:00:00Z"));
        assert!(check(&l, &t, "ann").await.allowed, "a new day in New York");

        let anchored = common::unique_tenant("quota");
        let anchor = format!("{}=15", anchored.as_str());
        let vars = [
            ("RATE_LIMIT_QUOTA_TENANT", "1/month"),
            ("RATE_LIMIT_QUOTA_ANCHORS", anchor.as_str()),
        ];
        let clock = ManualClock::new();
        clock.set_ms(ms("2026-11-14T23:59:50Z"));
        let (l, _c, _s) = limiter(kind, &vars, &clock);
        assert!(check(&l, &anchored, "ann").await.allowed);
        let d = check(&l, &anchored, "ann").await;
        assert_eq!(
            quota(&d, "quota-tenant").2,
            Some(Duration::from_secs(10)),
            "{d:?}"
        );
        clock.set_ms(ms("2026-11-15T00:00:00Z"));
        assert!(
            check(&l, &anchored, "ann").await.allowed,
            "the billing month turned"
        );
    }

    /// Over HTTP: 429 problem+json naming the quota "per day", `Retry-After` at midnight.
    pub(super) async fn refusals_say_when_the_period_ends(kind: Kind) {
        let clock = ManualClock::new();
        clock.set_ms(ms("2026-11-26T23:00:00Z"));
        let (l, config, _s) = limiter(
            kind,
            &[
                ("RATE_LIMIT_QUOTA_TENANT", "1/day"),
                ("RATE_LIMIT_DENY_CACHE", "0"),
            ],
            &clock,
        );
        let app = Router::new()
            .route("/r", get(|| async { "ok" }))
            .layer(RateLimitLayer::from_config(&config, l))
            .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
        let t = common::unique_tenant("quota");
        let send = || {
            let req = http::Request::get("/r")
                .header("x-tenant-id", t.as_str())
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(req)
        };
        assert_eq!(send().await.unwrap().status(), 200);
        let res = send().await.unwrap();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "3600");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("rule `quota-tenant` allows 1 per day"),
            "{body}"
        );
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Memory).await } )*
        }
        mod redis_single {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Redis).await } )*
        }
        mod redis_cluster {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Cluster).await } )*
        }
    };
}

conformance!(
    a_monthly_quota_resets_at_the_boundary,
    time_zones_and_anchors_move_the_boundary,
    refusals_say_when_the_period_ends,
);

/// Kept in Redis: an instance started mid-period (a restart, a new replica) sees what the
/// period used so far.
#[tokio::test(flavor = "multi_thread")]
async fn redis_single_a_new_instance_sees_the_period_so_far() {
    let clock = ManualClock::new();
    clock.set_ms(ms("2026-11-26T12:00:00Z"));
    let (a, config, server) = limiter(
        Kind::Redis,
        &[("RATE_LIMIT_QUOTA_TENANT", "3/week")],
        &clock,
    );
    let t = TenantId::new("acme").unwrap();
    assert!(check(&a, &t, "ann").await.allowed);
    assert!(check(&a, &t, "bob").await.allowed);
    drop(a);
    let metrics = Metrics::new();
    let mut options = LimiterOptions::default().with_clock(Arc::new(clock.clone()));
    options.outage = OutageMode::Closed;
    let b = RateLimiter::new(
        Backend::from_config(&config, &metrics).unwrap(),
        Keys::new(config.key_prefix.clone()),
        Policy::from_config(&config.rate_limit),
        options,
        &metrics,
    );
    assert!(check(&b, &t, "cid").await.allowed);
    let d = check(&b, &t, "dan").await;
    assert!(!d.allowed, "{d:?}");
    // 2026-11-26 is a Thursday: the ISO week ends on Monday the 30th at midnight.
    assert_eq!(
        quota(&d, "quota-tenant").2,
        Some(Duration::from_secs(3 * 24 * 3600 + 12 * 3600))
    );
    drop(server);
}

/// A runtime limit on a calendar quota changes its limit, never its period: set to `5/1h`,
/// a monthly quota still holds for the month.
#[tokio::test]
async fn memory_runtime_limits_keep_a_quota_period() {
    let clock = ManualClock::new();
    clock.set_ms(ms("2026-12-01T00:00:00Z"));
    let (l, _c, _s) = limiter(
        Kind::Memory,
        &[("RATE_LIMIT_QUOTA_TENANT", "2/month")],
        &clock,
    );
    let t = TenantId::new("acme").unwrap();
    l.set_tenant_limits(
        &t,
        Some(tenant_guard::ratelimit::TenantLimits::parse("quota-tenant=5/1h").unwrap()),
    )
    .unwrap();
    let mut ok = 0;
    for i in 0..8 {
        ok += usize::from(check(&l, &t, &format!("u{i}")).await.allowed);
    }
    assert_eq!(ok, 5);
    clock.set_ms(ms("2026-12-01T02:00:00Z"));
    assert!(!check(&l, &t, "u9").await.allowed, "still December's quota");
}
