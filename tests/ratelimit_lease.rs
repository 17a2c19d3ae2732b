//! Leases of hot counters (`RATE_LIMIT_LEASE`) on a real redis-server: a hot tenant is
//! admitted mostly in process, with far fewer script calls than checks; several instances
//! leasing the same counters never admit more than the limit in any window; unused units go
//! back, so (nearly) the whole limit stays usable; bad lease settings are refused.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenant_guard::config::Config;
use tenant_guard::ratelimit::{Identity, RateLimiter, Source};

fn vars(server: &common::RedisServer, v: &[(&str, &str)]) -> Vec<(String, String)> {
    vars_on(&("REDIS_URL".into(), server.url()), v)
}

/// `v` on `target` (`REDIS_URL` or `REDIS_CLUSTER_NODES`), closed on a Redis outage.
fn vars_on(target: &(String, String), v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = v
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    all.push(target.clone());
    common::strict_on_redis(&mut all);
    all
}

/// `calls` of EVALSHA on `server` so far.
fn script_calls(server: &common::RedisServer) -> u64 {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split([':', ',']).find_map(|f| f.strip_prefix("calls=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A hot tenant: 3000 checks of one user, every rule leased, nearly all admitted from
/// leases (at least 5 admissions per script call, leases included); after the leases end,
/// Redis counts exactly the admitted units (what was reserved and not used came back).
#[tokio::test]
async fn a_hot_tenant_is_admitted_from_leases() {
    let server = common::RedisServer::start();
    let (limiter, _, metrics) = common::build_limiter(vars(
        &server,
        &[
            ("RATE_LIMIT_TENANT", "100000/1m"),
            ("RATE_LIMIT_MAX", "100000"),
            ("RATE_LIMIT_WINDOW", "60"),
            (
                "RATE_LIMIT_LEASE",
                "per-tenant=50/200ms, per-endpoint=50/200ms",
            ),
        ],
    ));
    let t = common::unique_tenant("hot");
    let who = Identity::User("u1".into());
    let c = common::get_check(&t, &who, "/api/items", None);
    let before = script_calls(&server);
    let (mut admitted, mut leased) = (0u64, 0u64);
    for _ in 0..3000 {
        let d = limiter.check(&c).await;
        assert!(d.allowed, "{d:?}");
        admitted += 1;
        if d.source == Source::Lease {
            leased += 1;
            assert!(d.rules.iter().all(|r| r.allowed && r.remaining <= 100_000));
        }
    }
    let calls = script_calls(&server) - before;
    eprintln!("{admitted} admitted, {leased} from leases, {calls} script calls");
    assert!(
        leased > admitted * 9 / 10,
        "{leased} of {admitted} from leases"
    );
    assert!(
        calls * 5 <= admitted,
        "{calls} script calls for {admitted} checks"
    );
    let text = metrics.render();
    assert!(
        text.contains(
            "tenant_guard_ratelimit_decisions_total{outcome=\"allowed\",source=\"lease\"}"
        ),
        "{text}"
    );
    // Every lease ended: what is left of them goes back, and Redis counts what was admitted.
    limiter.end_leases().await;
    let d = limiter.peek(&c).await;
    for r in &d.rules {
        assert_eq!(
            u64::from(r.remaining),
            100_000 - admitted,
            "{}: Redis counts exactly the admitted units once the leases end",
            r.name
        );
    }
}

/// Three instances leasing the same tenant's counter, 24 concurrent clients, demand far
/// above the limit for 2.5 windows: no window of the limit's length holds more than the
/// limit, counting leased admissions at the moment they were decided in process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_never_over_admit_across_instances() {
    let server = common::RedisServer::start();
    never_over_admit(("REDIS_URL".into(), server.url())).await;
}

/// The same on the 3-master cluster (a tenant's counters share its slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_never_over_admit_on_the_cluster() {
    never_over_admit((
        "REDIS_CLUSTER_NODES".into(),
        common::shared_cluster().nodes_var.clone(),
    ))
    .await;
}

async fn never_over_admit(target: (String, String)) {
    let limit = 200usize;
    let window = Duration::from_secs(1);
    let build = || {
        Arc::new(
            common::build_limiter(vars_on(
                &target,
                &[
                    ("RATE_LIMIT_TENANT", "200/1s"),
                    ("RATE_LIMIT_MAX", "1000000"),
                    ("RATE_LIMIT_WINDOW", "1"),
                    (
                        "RATE_LIMIT_LEASE",
                        "per-tenant=40/100ms, per-endpoint=40/100ms",
                    ),
                ],
            ))
            .0,
        )
    };
    let instances: Vec<Arc<RateLimiter>> = (0..3).map(|_| build()).collect();
    let t = Arc::new(common::unique_tenant("leased"));
    let start = Instant::now();
    let stop = start + Duration::from_millis(2500);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let l = instances[i % 3].clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let who = Identity::User(format!("u{}", i % 4).as_str().into());
            let c = common::get_check(&t, &who, "/api/items", None);
            // (decided at, longest a decision took), sources of admissions
            let mut times = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut leased = 0usize;
            while Instant::now() < stop {
                let before = Instant::now();
                let d = l.check(&c).await;
                let after = Instant::now();
                slowest = slowest.max(after - before);
                if d.allowed {
                    times.push(after - start);
                    leased += usize::from(d.source == Source::Lease);
                }
                if !d.allowed {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            (times, slowest, leased)
        }));
    }
    let mut times = Vec::new();
    let (mut slowest, mut leased) = (Duration::ZERO, 0);
    for task in tasks {
        let (t, s, l) = task.await.unwrap();
        times.extend(t);
        slowest = slowest.max(s);
        leased += l;
    }
    times.sort();
    // An admission happened between a check's start and the time recorded (its end): a
    // window shortened by the slowest check holds only admissions of one true window.
    let shortened = window.saturating_sub(slowest);
    let most = common::max_in_window(&times, shortened);
    eprintln!(
        "{} admitted ({leased} from leases) in 2.5 s, at most {most} in any {shortened:?} \
         (slowest check {slowest:?})",
        times.len()
    );
    assert!(leased > 0, "some admissions came from leases");
    assert!(
        most <= limit,
        "{most} admissions in one window of {window:?}: over the limit"
    );
    for l in &instances {
        l.end_leases().await;
    }
}

/// Reserved but unused units come back when leases end: three instances drain a tenant's
/// limit (a long window: nothing leaves it), then, after their leases have ended, drain it
/// again; all of it (at least 95%) was admitted, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_leased_units_go_back() {
    let server = common::RedisServer::start();
    units_go_back(("REDIS_URL".into(), server.url())).await;
}

/// The same on the 3-master cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_leased_units_go_back_on_the_cluster() {
    units_go_back((
        "REDIS_CLUSTER_NODES".into(),
        common::shared_cluster().nodes_var.clone(),
    ))
    .await;
}

async fn units_go_back(target: (String, String)) {
    let limit = 600u32;
    let build = || {
        Arc::new(
            common::build_limiter(vars_on(
                &target,
                &[
                    ("RATE_LIMIT_TENANT", "600/1m"),
                    ("RATE_LIMIT_MAX", "1000000"),
                    ("RATE_LIMIT_WINDOW", "60"),
                    (
                        "RATE_LIMIT_LEASE",
                        "per-tenant=20/100ms, per-endpoint=20/100ms",
                    ),
                ],
            ))
            .0,
        )
    };
    let instances: Vec<Arc<RateLimiter>> = (0..3).map(|_| build()).collect();
    let t = Arc::new(common::unique_tenant("drain"));
    // Until 20 refusals in a row.
    async fn drain(
        l: Arc<RateLimiter>,
        t: Arc<tenant_guard::tenant::TenantId>,
        user: String,
    ) -> u32 {
        let who = Identity::User(user.as_str().into());
        let c = common::get_check(&t, &who, "/api/items", None);
        let (mut admitted, mut refused) = (0, 0);
        while refused < 20 {
            if l.check(&c).await.allowed {
                admitted += 1;
                refused = 0;
            } else {
                refused += 1;
            }
        }
        admitted
    }
    let mut admitted = 0;
    for round in 0..2 {
        let tasks: Vec<_> = (0..12)
            .map(|i| tokio::spawn(drain(instances[i % 3].clone(), t.clone(), format!("u{i}"))))
            .collect();
        for task in tasks {
            admitted += task.await.unwrap();
        }
        eprintln!("after round {round}: {admitted} of {limit} admitted");
        // Every lease (100 ms at most) has ended and given its unused units back.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        admitted <= limit,
        "{admitted} admitted: over the limit of {limit}"
    );
    assert!(
        admitted * 100 >= limit * 95,
        "{admitted} of {limit} admitted: leases kept units from use"
    );
}

/// Leases only where they hold: compact, enforced, non-blocking rules; the variable's
/// errors name it.
#[test]
fn bad_leases_are_refused_by_name() {
    let err = |v: &[(&str, &str)]| {
        Config::from_vars(v.iter().copied())
            .unwrap_err()
            .to_string()
    };
    let e = err(&[("RATE_LIMIT_LEASE", "nope=10/100ms")]);
    assert!(e.contains("RATE_LIMIT_LEASE") && e.contains("nope"), "{e}");
    let e = err(&[
        ("RATE_LIMIT_ALGORITHM", "exact"),
        ("RATE_LIMIT_LEASE", "per-endpoint=10/100ms"),
    ]);
    assert!(e.contains("RATE_LIMIT_LEASE"), "{e}");
    let e = err(&[
        ("RATE_LIMIT_BLOCK", "per-endpoint=1m"),
        ("RATE_LIMIT_LEASE", "per-endpoint=10/100ms"),
    ]);
    assert!(e.contains("RATE_LIMIT_LEASE"), "{e}");
    for bad in ["10", "0/100ms", "10/0ms", "10/1m", "x/100ms"] {
        let e = err(&[("RATE_LIMIT_LEASE", &format!("per-endpoint={bad}"))]);
        assert!(e.contains("RATE_LIMIT_LEASE"), "{bad}: {e}");
    }
    let ok = Config::from_vars([("RATE_LIMIT_LEASE", "per-endpoint=10/100ms")]).unwrap();
    assert!(ok.rate_limit.policy.rules()[0].lease.is_some());
}
