//! The rate limiter's semantics on every backend — memory, a single Redis node and the
//! 3-master cluster — and with every algorithm (the two sliding windows and GCRA).

mod common;

use std::time::Duration;

use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Identity, RateLimiter, Source};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    Redis,
    Cluster,
}

struct Fixture {
    limiter: RateLimiter,
    metrics: Metrics,
    expect: Source,
    server: Option<common::RedisServer>,
    cluster_ports: Vec<u16>,
}

fn fixture(kind: Kind, vars: &[(&str, &str)]) -> Fixture {
    let mut all: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut server = None;
    let mut cluster_ports = Vec::new();
    match kind {
        Kind::Memory => {}
        Kind::Redis => {
            let s = common::RedisServer::start();
            all.push(("REDIS_URL".into(), s.url()));
            server = Some(s);
            common::strict_on_redis(&mut all);
        }
        Kind::Cluster => {
            let c = common::shared_cluster();
            all.push(("REDIS_CLUSTER_NODES".into(), c.nodes_var.clone()));
            cluster_ports = c.ports.clone();
            common::strict_on_redis(&mut all);
        }
    }
    let (limiter, _, metrics) = common::build_limiter(all);
    Fixture {
        limiter,
        metrics,
        expect: if matches!(kind, Kind::Memory) {
            Source::Memory
        } else {
            Source::Redis
        },
        server,
        cluster_ports,
    }
}

fn user(id: &str) -> Identity {
    Identity::User(id.into())
}

use common::get_check as check;

mod checks {
    use super::*;

    pub(super) async fn limit_and_decision_fields(kind: Kind, algo: &str) {
        let f = fixture(
            kind,
            &[
                ("RATE_LIMIT_MAX", "3"),
                ("RATE_LIMIT_WINDOW", "1m"),
                ("RATE_LIMIT_ALGORITHM", algo),
            ],
        );
        let t = common::unique_tenant("lim");
        let u = user("u1");
        // The sliding windows: everything leaves a minute after the last request. GCRA
        // (3 per minute = one unit back every 20 s): the burst is full again 20 s per unit
        // used, and the next unit frees in 20 s.
        let gcra = algo == "gcra";
        for (used, want_remaining) in [(1u64, 2), (2, 1), (3, 0)] {
            let d = f.limiter.check(&check(&t, &u, "/items", None)).await;
            assert!(d.allowed, "{d:?}");
            assert_eq!(d.source, f.expect);
            let r = d.most_restrictive().unwrap();
            assert_eq!(
                (r.name, r.limit, r.remaining),
                ("per-endpoint", 3, want_remaining)
            );
            let full = if gcra { 20 * used } else { 60 };
            assert!(
                r.reset > Duration::from_secs(full - 5) && r.reset <= Duration::from_secs(full + 3),
                "{r:?}"
            );
        }
        let d = f.limiter.check(&check(&t, &u, "/items", None)).await;
        assert!(!d.allowed);
        let r = d.denied_by().unwrap();
        assert_eq!(r.name, "per-endpoint");
        let retry = d.retry_after().unwrap();
        let wait = if gcra { 20 } else { 60 };
        assert!(
            retry > Duration::from_secs(wait - 10) && retry <= Duration::from_secs(wait + 3),
            "{retry:?}"
        );
        // Per endpoint: another route has its own counter.
        assert!(
            f.limiter
                .check(&check(&t, &u, "/other", None))
                .await
                .allowed
        );
    }

    pub(super) async fn all_or_nothing(kind: Kind, algo: &str) {
        let f = fixture(
            kind,
            &[
                ("RATE_LIMIT_TENANT", "5/1m"),
                ("RATE_LIMIT_USER", "2/1m"),
                ("RATE_LIMIT_MAX", "100"),
                ("RATE_LIMIT_ALGORITHM", algo),
            ],
        );
        let t = common::unique_tenant("aon");
        let (a, b, c) = (user("a"), user("b"), user("c"));
        assert!(f.limiter.check(&check(&t, &a, "/x", None)).await.allowed);
        assert!(f.limiter.check(&check(&t, &a, "/x", None)).await.allowed);
        let d = f.limiter.check(&check(&t, &a, "/x", None)).await;
        assert!(!d.allowed);
        assert_eq!(d.denied_by().unwrap().name, "per-user");
        // The denied request charged nothing: the tenant has 3 left, not 2.
        let p = f.limiter.peek(&check(&t, &b, "/x", None)).await;
        let tenant_rule = p.rules.iter().find(|r| r.name == "per-tenant").unwrap();
        assert_eq!(tenant_rule.remaining, 3, "{p:?}");
        for _ in 0..2 {
            assert!(f.limiter.check(&check(&t, &b, "/x", None)).await.allowed);
        }
        assert!(f.limiter.check(&check(&t, &c, "/x", None)).await.allowed); // tenant: 5 of 5
        let d = f.limiter.check(&check(&t, &c, "/x", None)).await;
        assert!(!d.allowed);
        assert_eq!(d.denied_by().unwrap().name, "per-tenant");
        // ...and c's own per-user counter was not charged by the denial: 1 used, 1 left.
        let p = f.limiter.peek(&check(&t, &c, "/x", None)).await;
        let per_user = p.rules.iter().find(|r| r.name == "per-user").unwrap();
        assert_eq!(per_user.remaining, 1, "{p:?}");
    }

    pub(super) async fn weights(kind: Kind, algo: &str) {
        let f = fixture(
            kind,
            &[
                ("RATE_LIMIT_MAX", "5"),
                ("RATE_LIMIT_WINDOW", "1m"),
                ("RATE_LIMIT_ALGORITHM", algo),
            ],
        );
        let t = common::unique_tenant("w");
        let u = user("u");
        let d = f.limiter.check(&check(&t, &u, "/ai", Some(3))).await;
        assert!(d.allowed);
        assert_eq!(d.most_restrictive().unwrap().remaining, 2);
        assert!(
            !f.limiter
                .check(&check(&t, &u, "/ai", Some(3)))
                .await
                .allowed
        );
        assert!(
            f.limiter
                .check(&check(&t, &u, "/ai", Some(2)))
                .await
                .allowed
        );
        let d = f.limiter.check(&check(&t, &u, "/ai", Some(6))).await;
        assert!(!d.allowed);
        assert_eq!(d.retry_after(), None, "a cost above the limit never fits");
        assert_eq!(d.cost, 6);
    }

    pub(super) async fn peek_and_reset(kind: Kind, algo: &str) {
        let f = fixture(
            kind,
            &[
                ("RATE_LIMIT_MAX", "2"),
                ("RATE_LIMIT_WINDOW", "1m"),
                ("RATE_LIMIT_USER", "10/1m"),
                ("RATE_LIMIT_ALGORITHM", algo),
            ],
        );
        let t = common::unique_tenant("pr");
        let u = user("u");
        for _ in 0..5 {
            assert!(f.limiter.peek(&check(&t, &u, "/a", None)).await.allowed);
        }
        assert!(f.limiter.check(&check(&t, &u, "/a", None)).await.allowed);
        assert!(f.limiter.check(&check(&t, &u, "/a", None)).await.allowed);
        assert!(f.limiter.check(&check(&t, &u, "/b", None)).await.allowed);
        assert!(!f.limiter.peek(&check(&t, &u, "/a", None)).await.allowed);
        assert!(!f.limiter.check(&check(&t, &u, "/a", None)).await.allowed);
        let other = user("other");
        assert!(
            f.limiter
                .check(&check(&t, &other, "/a", None))
                .await
                .allowed
        );
        // per-user (1 key) + per-endpoint for /a and /b (2 keys).
        assert_eq!(f.limiter.reset(&t, &u).await.unwrap(), 3);
        let d = f.limiter.check(&check(&t, &u, "/a", None)).await;
        assert!(d.allowed, "{d:?}");
        let per_user = d.rules.iter().find(|r| r.name == "per-user").unwrap();
        assert_eq!(per_user.remaining, 9);
        // The other identity kept its usage.
        let p = f.limiter.peek(&check(&t, &other, "/a", None)).await;
        assert_eq!(
            p.rules
                .iter()
                .find(|r| r.name == "per-endpoint")
                .unwrap()
                .remaining,
            1
        );
    }

    pub(super) async fn tenants_are_isolated(kind: Kind, algo: &str) {
        let f = fixture(
            kind,
            &[
                ("RATE_LIMIT_TENANT", "3/1m"),
                ("RATE_LIMIT_MAX", "100"),
                ("RATE_LIMIT_ALGORITHM", algo),
            ],
        );
        let a = common::unique_tenant("ta");
        let b = common::unique_tenant("tb");
        let u = user("same-user");
        for _ in 0..3 {
            assert!(f.limiter.check(&check(&a, &u, "/x", None)).await.allowed);
        }
        assert!(!f.limiter.check(&check(&a, &u, "/x", None)).await.allowed);
        let d = f.limiter.check(&check(&b, &u, "/x", None)).await;
        assert!(d.allowed);
        assert_eq!(
            d.rules
                .iter()
                .find(|r| r.name == "per-tenant")
                .unwrap()
                .remaining,
            2
        );
    }

    pub(super) async fn window_slides(kind: Kind, algo: &str) {
        let f = fixture(
            kind,
            &[
                ("RATE_LIMIT_MAX", "2"),
                // Real time on Redis: a window several times longer than three checks
                // could ever take here, so the third always lands in it.
                ("RATE_LIMIT_WINDOW", "2s"),
                ("RATE_LIMIT_ALGORITHM", algo),
            ],
        );
        let t = common::unique_tenant("ws");
        let u = user("u");
        assert!(f.limiter.check(&check(&t, &u, "/x", None)).await.allowed);
        assert!(f.limiter.check(&check(&t, &u, "/x", None)).await.allowed);
        let d = f.limiter.check(&check(&t, &u, "/x", None)).await;
        assert!(!d.allowed);
        let retry = d.retry_after().unwrap();
        // At most the window plus one compact bucket (W/30).
        assert!(retry <= Duration::from_millis(2_100), "{retry:?}");
        tokio::time::sleep(retry + Duration::from_millis(100)).await;
        assert!(f.limiter.check(&check(&t, &u, "/x", None)).await.allowed);
    }

    pub(super) async fn shadow_rules(kind: Kind, algo: &str) {
        let f = fixture(
            kind,
            &[
                ("RATE_LIMIT_USER", "1/1m"),
                ("RATE_LIMIT_SHADOW", "per-user"),
                ("RATE_LIMIT_MAX", "100"),
                ("RATE_LIMIT_ALGORITHM", algo),
            ],
        );
        let t = common::unique_tenant("sh");
        let u = user("u");
        assert!(f.limiter.check(&check(&t, &u, "/x", None)).await.allowed);
        let d = f.limiter.check(&check(&t, &u, "/x", None)).await;
        assert!(d.allowed, "shadow rules never block");
        let shadow = d.rules.iter().find(|r| r.name == "per-user").unwrap();
        assert!(shadow.shadow && !shadow.allowed);
        assert!(
            f.metrics
                .render()
                .contains("tenant_guard_ratelimit_shadow_denied_total{rule=\"per-user\"} 1")
        );
    }

    /// Every key the script wrote has a TTL (Redis only: SCAN the tenant's node).
    /// Redis only (the memory backend has no keys to read back): generated for the Redis
    /// and cluster targets below, not by the conformance macro.
    pub(super) async fn ttl_on_every_key(kind: Kind, algo: &str) {
        assert!(!matches!(kind, Kind::Memory), "a Redis-only check");
        let f = fixture(
            kind,
            &[
                ("RATE_LIMIT_TENANT", "100/1m"),
                ("RATE_LIMIT_USER", "50/1m"),
                ("RATE_LIMIT_ENDPOINTS", "ai: /ai/{*rest} = 5/30s"),
                ("RATE_LIMIT_MAX", "20"),
                ("RATE_LIMIT_ALGORITHM", algo),
            ],
        );
        let t = common::unique_tenant("ttl");
        for i in 0..10 {
            let u = user(&format!("u{i}"));
            for route in ["/ai/complete", "/items"] {
                f.limiter.check(&check(&t, &u, route, None)).await;
            }
        }
        let pattern = format!("tg:ratelimit:{{{t}}}:*");
        let ports: Vec<u16> = match &f.server {
            Some(s) => vec![s.port],
            None => f.cluster_ports.clone(),
        };
        let mut seen = 0;
        for p in ports {
            let keys = common::cli(p, &["--scan", "--pattern", &pattern]);
            for k in keys.lines().filter(|l| !l.is_empty()) {
                let ttl: i64 = common::cli(p, &["PTTL", k]).parse().unwrap();
                assert!(ttl > 0, "{k} has PTTL {ttl}");
                seen += 1;
            }
        }
        // 1 tenant key + 10 per-user + 10 ai + 20 per-endpoint.
        assert_eq!(seen, 41);
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(
                mod $check {
                    #[tokio::test] async fn compact() { super::super::checks::$check(super::super::Kind::Memory, "compact").await }
                    #[tokio::test] async fn exact() { super::super::checks::$check(super::super::Kind::Memory, "exact").await }
                    #[tokio::test] async fn gcra() { super::super::checks::$check(super::super::Kind::Memory, "gcra").await }
                }
            )*
        }
        mod redis_single {
            $(
                mod $check {
                    #[tokio::test] async fn compact() { super::super::checks::$check(super::super::Kind::Redis, "compact").await }
                    #[tokio::test] async fn exact() { super::super::checks::$check(super::super::Kind::Redis, "exact").await }
                    #[tokio::test] async fn gcra() { super::super::checks::$check(super::super::Kind::Redis, "gcra").await }
                }
            )*
        }
        mod redis_cluster {
            $(
                mod $check {
                    #[tokio::test] async fn compact() { super::super::checks::$check(super::super::Kind::Cluster, "compact").await }
                    #[tokio::test] async fn exact() { super::super::checks::$check(super::super::Kind::Cluster, "exact").await }
                    #[tokio::test] async fn gcra() { super::super::checks::$check(super::super::Kind::Cluster, "gcra").await }
                }
            )*
        }
    };
}

conformance!(
    limit_and_decision_fields,
    all_or_nothing,
    weights,
    peek_and_reset,
    tenants_are_isolated,
    window_slides,
    shadow_rules,
);

mod ttl_on_every_key {
    use super::{Kind, checks::ttl_on_every_key};
    #[tokio::test]
    async fn redis_compact() {
        ttl_on_every_key(Kind::Redis, "compact").await
    }
    #[tokio::test]
    async fn redis_exact() {
        ttl_on_every_key(Kind::Redis, "exact").await
    }
    #[tokio::test]
    async fn redis_gcra() {
        ttl_on_every_key(Kind::Redis, "gcra").await
    }
    #[tokio::test]
    async fn cluster_compact() {
        ttl_on_every_key(Kind::Cluster, "compact").await
    }
    #[tokio::test]
    async fn cluster_exact() {
        ttl_on_every_key(Kind::Cluster, "exact").await
    }
    #[tokio::test]
    async fn cluster_gcra() {
        ttl_on_every_key(Kind::Cluster, "gcra").await
    }
}
