//! The Redis rate-limit path against what users would pick instead, in one run, on one
//! redis-server this bench starts on a free loopback port.
//!
//! Traffic: 64 checks in flight, 10 tenants x 100 users x 10 endpoints drawn uniformly.
//! Rules: per-endpoint 1000 per 10 s (the one rule of the 1-rule runs), per-user 10 000 per
//! 10 s and per-tenant 100 000 per 5 s (the 3-rule runs): at the rates reached here
//! (up to ~20 checks per key and second) checks are admitted, and the bench measures the
//! common path. (The reference never refuses: it only counts.)
//!
//! 1. A criterion group: tenant-guard's 3-rule compact check (64 tasks x 100 checks).
//! 2. A comparison in interleaved rounds (the machine drifts between runs, not within one):
//!    - `reference`: the fixed-window script of the common Node limiter (`SET key 0 PX w
//!      NX`, `INCRBY`, `PTTL`), written here, driven through the same redis client
//!      (a multiplexed connection) with the same concurrency: one call per check;
//!    - tenant-guard with 1 and 3 rules, compact, exact and GCRA (`RateLimiter::check`,
//!      the whole client path);
//!    - `redis-benchmark -c 50` driving tenant-guard's 3-rule compact script by EVALSHA.
//!
//!    For each: checks/s (median of the rounds) and the Redis time per call from `INFO
//!    commandstats` (server side), then the ratios against the reference.
//!
//! 3. A hot tenant (`RATE_LIMIT_LEASE`), in interleaved rounds: every check of one tenant,
//!    one user and one route (its per-tenant and per-endpoint keys are hot), with and
//!    without leases of both rules: checks/s, script calls per admitted check, Redis time
//!    per check; then the same with demand above a 20 000/1 s tenant limit: admitted per
//!    window against the limit (never above it; at least 95% of it used).
//!
//! Run: `cargo bench --bench ratelimit_redis` (needs redis-server, redis-cli and
//! redis-benchmark on PATH). `TG_BENCH_ROUNDS` (default 5) and `TG_BENCH_ROUND_SECS`
//! (default 2) set the comparison's length.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Method;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Check, Identity, RateLimiter, Source};
use tenant_guard::tenant::TenantId;

const TASKS: usize = 64;
const PER_TASK: usize = 100;
const TENANTS: usize = 10;
const USERS: usize = 100;
const ENDPOINTS: usize = 10;

/// The Node limiter's fixed window (rate-limiter-flexible's Redis store), as one script.
const REFERENCE: &str = "redis.call('SET', KEYS[1], 0, 'PX', ARGV[2], 'NX') \
    local consumed = redis.call('INCRBY', KEYS[1], ARGV[1]) \
    local ttl = redis.call('PTTL', KEYS[1]) \
    return {consumed, ttl}";

/// A small xorshift: uniform draws without a shared generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

struct Traffic {
    tenants: Vec<TenantId>,
    users: Vec<Identity>,
    routes: Vec<String>,
}

impl Traffic {
    fn new() -> Self {
        Self {
            tenants: (0..TENANTS)
                .map(|t| TenantId::new(&format!("tenant-{t}")).expect("tenant"))
                .collect(),
            users: (0..USERS)
                .map(|u| Identity::User(format!("user-{u}").into()))
                .collect(),
            routes: (0..ENDPOINTS).map(|e| format!("/api/e{e}")).collect(),
        }
    }
}

fn limiter(rt: &tokio::runtime::Runtime, url: &str, algorithm: &str, rules: usize) -> RateLimiter {
    let mut vars = vec![
        ("RATE_LIMIT_MAX", "1000".to_string()),
        ("RATE_LIMIT_WINDOW", "10s".into()),
        ("RATE_LIMIT_ALGORITHM", algorithm.into()),
        // Each variant its own keys (an exact log is a sorted set, the others strings).
        ("TG_KEY_PREFIX", format!("{algorithm}{rules}")),
    ];
    if rules == 3 {
        // (The exact log holds at most 100 000 members per key.)
        vars.push(("RATE_LIMIT_TENANT", "100000/5s".into()));
        vars.push(("RATE_LIMIT_USER", "10000/10s".into()));
    }
    limiter_with(rt, url, vars)
}

/// A limiter on `url` with `vars` (and no local deny cache: every check it cannot admit in
/// process goes to Redis).
fn limiter_with(
    rt: &tokio::runtime::Runtime,
    url: &str,
    mut vars: Vec<(&'static str, String)>,
) -> RateLimiter {
    vars.extend([
        ("REDIS_URL", url.to_string()),
        ("RATE_LIMIT_DENY_CACHE", "0".into()),
    ]);
    let config = Config::from_vars(vars).expect("config");
    let _g = rt.enter();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    RateLimiter::from_config(&config, backend, &metrics)
}

/// The hot tenant's limiter: per-tenant and per-endpoint rules of `tenant_limit` and
/// `endpoint_limit` per `window`, both leased `lease` (`None`: not leased).
fn hot_limiter(
    rt: &tokio::runtime::Runtime,
    url: &str,
    prefix: &str,
    tenant: &str,
    endpoint: (&str, &str),
    lease: Option<&str>,
) -> RateLimiter {
    let mut vars = vec![
        ("RATE_LIMIT_TENANT", tenant.to_string()),
        ("RATE_LIMIT_MAX", endpoint.0.to_string()),
        ("RATE_LIMIT_WINDOW", endpoint.1.to_string()),
        ("TG_KEY_PREFIX", prefix.to_string()),
    ];
    if let Some(l) = lease {
        vars.push((
            "RATE_LIMIT_LEASE",
            format!("per-tenant={l}, per-endpoint={l}"),
        ));
    }
    limiter_with(rt, url, vars)
}

/// Runs `TASKS` loops of `one` for `secs`; checks per second.
fn drive<F, Fut>(rt: &tokio::runtime::Runtime, secs: f64, one: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let (stop, done, one) = (stop.clone(), done.clone(), one.clone());
            handles.push(tokio::spawn(async move {
                let mut seed = 0x9E37_79B9_7F4A_7C15_u64
                    ^ (task as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
                while !stop.load(Ordering::Relaxed) {
                    seed = seed.wrapping_add(1);
                    one(seed).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.await.expect("task");
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// `calls` and `usec` of EVALSHA since the last `CONFIG RESETSTAT`.
fn evalsha_stats(server: &common::RedisServer) -> (u64, u64) {
    let stats = server.cli(&["INFO", "commandstats"]);
    let line = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .unwrap_or("");
    let field = |name: &str| {
        line.split([':', ','])
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("calls="), field("usec="))
}

#[derive(Default)]
struct Tally {
    rates: Vec<f64>,
    /// Checks decided (script calls may decide several).
    checks: u64,
    calls: u64,
    usec: u64,
}

impl Tally {
    fn median(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    }

    fn usec_per_check(&self) -> f64 {
        self.usec as f64 / self.checks.max(1) as f64
    }
}

fn bench(c: &mut Criterion) {
    let server = common::RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let traffic = Arc::new(Traffic::new());

    // 1. Criterion: the 3-rule compact check.
    let compact3 = Arc::new(limiter(&rt, &url, "compact", 3));
    let mut g = c.benchmark_group("ratelimit_redis");
    g.throughput(Throughput::Elements((TASKS * PER_TASK) as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("check_3_rules_64_tasks", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for iter in 0..iters {
                let start = Instant::now();
                rt.block_on(async {
                    let mut handles = Vec::with_capacity(TASKS);
                    for task in 0..TASKS {
                        let (limiter, t) = (compact3.clone(), traffic.clone());
                        handles.push(tokio::spawn(async move {
                            let mut rng = Rng(iter.wrapping_mul(7919) ^ (task as u64 + 1) << 20);
                            let method = Method::GET;
                            for _ in 0..PER_TASK {
                                let check = Check {
                                    tenant: &t.tenants[rng.next(TENANTS)],
                                    identity: &t.users[rng.next(USERS)],
                                    method: &method,
                                    route: &t.routes[rng.next(ENDPOINTS)],
                                    cost: None,
                                    plan: None,
                                };
                                limiter.check(&check).await;
                            }
                        }));
                    }
                    for h in handles {
                        h.await.expect("task");
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();

    // 2. The comparison.
    let rounds: usize = std::env::var("TG_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let secs: f64 = std::env::var("TG_BENCH_ROUND_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let reference_conn = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("client");
        redis::aio::ConnectionManager::new(client)
            .await
            .expect("connection")
    });
    let reference_script = Arc::new(redis::Script::new(REFERENCE));
    let mut variants: Vec<(&str, Option<Arc<RateLimiter>>)> = vec![("reference, 1 rule", None)];
    for (name, algo, rules) in [
        ("compact, 1 rule", "compact", 1),
        ("compact, 3 rules", "compact", 3),
        ("exact, 1 rule", "exact", 1),
        ("exact, 3 rules", "exact", 3),
        ("gcra, 1 rule", "gcra", 1),
        ("gcra, 3 rules", "gcra", 3),
    ] {
        variants.push((name, Some(Arc::new(limiter(&rt, &url, algo, rules)))));
    }
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for _ in 0..rounds {
        for (name, lim) in &variants {
            server.cli(&["CONFIG", "RESETSTAT"]);
            let t = traffic.clone();
            let rate = match lim {
                None => {
                    let (conn, script) = (reference_conn.clone(), reference_script.clone());
                    drive(&rt, secs, move |seed| {
                        let (mut conn, script, t) = (conn.clone(), script.clone(), t.clone());
                        async move {
                            let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
                            let key = format!(
                                "ref:{{{}}}:per-endpoint:{}:GET {}",
                                t.tenants[rng.next(TENANTS)],
                                rng.next(USERS),
                                t.routes[rng.next(ENDPOINTS)]
                            );
                            let _: (i64, i64) = script
                                .key(key)
                                .arg(1)
                                .arg(10_000)
                                .invoke_async(&mut conn)
                                .await
                                .expect("reference script");
                        }
                    })
                }
                Some(limiter) => {
                    let limiter = limiter.clone();
                    drive(&rt, secs, move |seed| {
                        let (limiter, t) = (limiter.clone(), t.clone());
                        async move {
                            let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
                            let method = Method::GET;
                            let check = Check {
                                tenant: &t.tenants[rng.next(TENANTS)],
                                identity: &t.users[rng.next(USERS)],
                                method: &method,
                                route: &t.routes[rng.next(ENDPOINTS)],
                                cost: None,
                                plan: None,
                            };
                            let d = limiter.check(&check).await;
                            // A failed script call would be decided locally: no figure then.
                            assert_eq!(d.source, Source::Redis, "{d:?}");
                        }
                    })
                }
            };
            let (calls, usec) = evalsha_stats(&server);
            let tally = tallies.entry(name).or_default();
            tally.rates.push(rate);
            tally.checks += (rate * secs) as u64;
            tally.calls += calls;
            tally.usec += usec;
        }
    }

    // redis-benchmark -c 50 on tenant-guard's 3-rule compact script.
    server.cli(&["CONFIG", "RESETSTAT"]);
    let script = include_str!("../lua/ratelimit.lua");
    let sha = server.cli(&["SCRIPT", "LOAD", script]);
    let rule = |limit: &'static str, window: &'static str, bucket_us: &'static str| {
        ["win", limit, window, bucket_us, "30", "0", "0", "0"]
    };
    let mut args: Vec<String> = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        server.port.to_string(),
        "-c".into(),
        "50".into(),
        "-n".into(),
        "200000".into(),
        "-r".into(),
        (TENANTS * USERS * ENDPOINTS).to_string(),
        "-q".into(),
        "EVALSHA".into(),
        sha,
        "3".into(),
        "tg:ratelimit:{tenant-1}:per-tenant:tenant:all".into(),
        "tg:ratelimit:{tenant-1}:per-user:user:__rand_int__".into(),
        "tg:ratelimit:{tenant-1}:per-endpoint:user:__rand_int__:GET /api/e1".into(),
        // One request; three rules, listed once.
        "1".into(),
        "3".into(),
    ];
    for (limit, window, bucket_us) in [
        ("100000", "5000", "166667"),
        ("10000", "10000", "333334"),
        ("1000", "10000", "333334"),
    ] {
        args.extend(rule(limit, window, bucket_us).iter().map(|s| s.to_string()));
    }
    // The request: three rules, check, cost 1, a nonce, no charge-backs, rules 1, 2, 3.
    for a in ["3", "check", "1", "benchnonce", "0", "1", "2", "3"] {
        args.push(a.into());
    }
    let redis_benchmark = match Command::new("redis-benchmark").args(&args).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            // `EVALSHA ...: 12345.67 requests per second, p50=...`
            text.split(['\r', '\n'])
                .rfind(|l| l.contains("requests per second"))
                .and_then(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    let at = words.iter().position(|w| *w == "requests")?;
                    words.get(at.checked_sub(1)?)?.parse::<f64>().ok()
                })
        }
        Err(e) => {
            println!("redis-benchmark not run: {e} (install redis-tools)");
            None
        }
    };
    let (rb_calls, rb_usec) = evalsha_stats(&server);

    let reference = &tallies["reference, 1 rule"];
    let (ref_rate, ref_usec) = (reference.median(), reference.usec_per_check());
    println!(
        "\nratelimit_redis comparison: {rounds} interleaved rounds of {secs} s, {TASKS} checks in \
         flight, {TENANTS} tenants x {USERS} users x {ENDPOINTS} endpoints"
    );
    println!(
        "(Redis time from INFO commandstats: per check = all EVALSHA time / checks decided; \
         a call decides several checks when they wait together)"
    );
    println!(
        "{:<22} {:>10} {:>15} {:>14} {:>15} {:>15}",
        "", "checks/s", "Redis us/check", "checks/call", "x reference /s", "x reference us"
    );
    for (name, _) in &variants {
        let t = &tallies[name];
        println!(
            "{:<22} {:>10.0} {:>15.2} {:>14.1} {:>15.2} {:>15.2}",
            name,
            t.median(),
            t.usec_per_check(),
            t.checks as f64 / t.calls.max(1) as f64,
            t.median() / ref_rate,
            t.usec_per_check() / ref_usec
        );
    }
    if let Some(rb) = redis_benchmark {
        let ours = tallies["compact, 3 rules"].median();
        println!(
            "redis-benchmark -c 50, compact 3-rule script: {rb:.0} checks/s at {:.1} us/call; \
             tenant-guard's client: {:.2}x that",
            rb_usec as f64 / rb_calls.max(1) as f64,
            ours / rb
        );
    }

    // 3. The hot tenant.
    hot_tenant(&rt, &server, rounds, secs);
}

/// One run of `TASKS` loops checking one tenant, one user, one route for `secs`: (checks/s,
/// admission times since the start, the slowest check).
fn drive_hot(
    rt: &tokio::runtime::Runtime,
    limiter: &Arc<RateLimiter>,
    tenant: &TenantId,
    secs: f64,
) -> (f64, Vec<Duration>, Duration) {
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(secs);
    let (times, slowest, checks) = rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..TASKS {
            let (limiter, tenant) = (limiter.clone(), tenant.clone());
            handles.push(tokio::spawn(async move {
                let (who, method) = (Identity::User("hot-user".into()), Method::GET);
                let check = Check {
                    tenant: &tenant,
                    identity: &who,
                    method: &method,
                    route: "/api/hot",
                    cost: None,
                    plan: None,
                };
                let (mut times, mut slowest, mut checks) = (Vec::new(), Duration::ZERO, 0u64);
                while Instant::now() < stop {
                    let before = Instant::now();
                    let d = limiter.check(&check).await;
                    let after = Instant::now();
                    assert!(
                        matches!(d.source, Source::Redis | Source::Lease),
                        "decided without Redis: {d:?}"
                    );
                    slowest = slowest.max(after - before);
                    checks += 1;
                    if d.allowed {
                        times.push(after - start);
                    } else {
                        // A refused client backs off a little (as the lease test does).
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                (times, slowest, checks)
            }));
        }
        let (mut times, mut slowest, mut checks) = (Vec::new(), Duration::ZERO, 0);
        for h in handles {
            let (t, s, c) = h.await.expect("task");
            times.extend(t);
            slowest = slowest.max(s);
            checks += c;
        }
        times.sort();
        (times, slowest, checks)
    });
    (
        checks as f64 / start.elapsed().as_secs_f64(),
        times,
        slowest,
    )
}

/// Part 3: a hot tenant with and without leases (see the crate docs above).
fn hot_tenant(
    rt: &tokio::runtime::Runtime,
    server: &common::RedisServer,
    rounds: usize,
    secs: f64,
) {
    let url = server.url();
    let lease = std::env::var("TG_BENCH_LEASE").unwrap_or_else(|_| "5000/100ms".into());
    // (a) Throughput: limits far above the demand, every check admitted.
    let open = (
        hot_limiter(
            rt,
            &url,
            "hot-open",
            "100000000/10s",
            ("100000000", "10s"),
            None,
        ),
        hot_limiter(
            rt,
            &url,
            "hot-open-leased",
            "100000000/10s",
            ("100000000", "10s"),
            Some(&lease),
        ),
    );
    // (b) Demand above a 20 000 per 1 s tenant limit.
    let limit = 20_000usize;
    let window = Duration::from_secs(1);
    let capped = (
        hot_limiter(
            rt,
            &url,
            "hot-capped",
            "20000/1s",
            ("100000000", "10s"),
            None,
        ),
        hot_limiter(
            rt,
            &url,
            "hot-capped-leased",
            "20000/1s",
            ("100000000", "10s"),
            Some(&lease),
        ),
    );
    #[derive(Default)]
    struct Hot {
        tally: Tally,
        admitted: u64,
        most: usize,
        used: Vec<f64>,
    }
    let mut hot: BTreeMap<&str, Hot> = BTreeMap::new();
    let variants = [
        ("open, no lease", Arc::new(open.0), false),
        ("open, leased", Arc::new(open.1), false),
        ("capped, no lease", Arc::new(capped.0), true),
        ("capped, leased", Arc::new(capped.1), true),
    ];
    for round in 0..rounds {
        for (name, limiter, capped) in &variants {
            // A fresh tenant each round: the capped runs start with an empty window.
            let tenant = TenantId::new(&format!("hot-{round}")).expect("tenant");
            server.cli(&["CONFIG", "RESETSTAT"]);
            let (rate, times, slowest) = drive_hot(rt, limiter, &tenant, secs);
            rt.block_on(limiter.end_leases());
            let (calls, usec) = evalsha_stats(server);
            let h = hot.entry(name).or_default();
            h.tally.rates.push(rate);
            h.tally.checks += times.len() as u64;
            h.tally.calls += calls;
            h.tally.usec += usec;
            h.admitted += times.len() as u64;
            if *capped {
                // An admission happened between its check's start and the time recorded:
                // a window shortened by the slowest check holds admissions of one true
                // window only.
                let most = common::max_in_window(&times, window.saturating_sub(slowest));
                h.most = h.most.max(most);
                // Of the limit over the run's whole windows.
                h.used
                    .push(times.len() as f64 / (limit as f64 * secs.floor().max(1.0)));
            }
        }
    }
    println!(
        "\nhot tenant: {TASKS} checks in flight on one tenant, one user, one route \
         (per-tenant and per-endpoint keys), leases `{lease}` of both rules, {rounds} \
         interleaved rounds of {secs} s"
    );
    println!(
        "{:<18} {:>10} {:>16} {:>16} {:>15}",
        "", "checks/s", "calls/admitted", "Redis us/admit", "x no lease /s"
    );
    for (name, base) in [
        ("open, no lease", "open, no lease"),
        ("open, leased", "open, no lease"),
        ("capped, no lease", "capped, no lease"),
        ("capped, leased", "capped, no lease"),
    ] {
        let (h, b) = (&hot[name], &hot[base]);
        println!(
            "{:<18} {:>10.0} {:>16.4} {:>16.2} {:>15.2}",
            name,
            h.tally.median(),
            h.tally.calls as f64 / h.admitted.max(1) as f64,
            h.tally.usec_per_check(),
            h.tally.median() / b.tally.median()
        );
    }
    for name in ["capped, no lease", "capped, leased"] {
        let h = &hot[name];
        let mut used = h.used.clone();
        used.sort_by(f64::total_cmp);
        println!(
            "{name}: at most {} admitted in any window of {window:?} (limit {limit}{}); \
             {:.1}%..{:.1}% of the limit used per round",
            h.most,
            if h.most <= limit {
                ", never over"
            } else {
                ": OVER THE LIMIT"
            },
            used.first().copied().unwrap_or(0.0) * 100.0,
            used.last().copied().unwrap_or(0.0) * 100.0,
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
