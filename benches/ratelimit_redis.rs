//! The Redis rate-limit path, no HTTP: 64 concurrent tasks, 10 000 identities, three rules
//! per check (per-tenant, per-user, per-endpoint), against a redis-server this bench starts
//! on a free loopback port. After the criterion group it runs `redis-benchmark -c 50`
//! with the same script by EVALSHA against the same server and prints both rates.
//!
//! Run: `cargo bench --bench ratelimit_redis` (needs redis-server, redis-cli and
//! redis-benchmark on PATH).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::Method;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
use tenant_guard::tenant::TenantId;

const TASKS: usize = 64;
const PER_TASK: usize = 100;
const IDENTITIES: usize = 10_000;

fn bench(c: &mut Criterion) {
    let server = common::RedisServer::start();
    let config = Config::from_vars([
        ("REDIS_URL", server.url().as_str()),
        // Nothing is denied: the bench measures the script round trip.
        ("RATE_LIMIT_TENANT", "1000000000/1h"),
        ("RATE_LIMIT_USER", "1000000/1h"),
        ("RATE_LIMIT_MAX", "1000000"),
        ("RATE_LIMIT_WINDOW", "1h"),
    ])
    .expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let limiter = {
        let _g = rt.enter();
        let metrics = Metrics::new();
        let backend = Backend::from_config(&config, &metrics).expect("backend");
        Arc::new(RateLimiter::from_config(&config, backend, &metrics))
    };
    let identities: Arc<Vec<Identity>> = Arc::new(
        (0..IDENTITIES)
            .map(|i| Identity::User(format!("user-{i}").into()))
            .collect(),
    );
    let tenant = TenantId::new("acme").expect("tenant");

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
                        let limiter = limiter.clone();
                        let ids = identities.clone();
                        let tenant = tenant.clone();
                        handles.push(tokio::spawn(async move {
                            let method = Method::GET;
                            for i in 0..PER_TASK {
                                let who =
                                    &ids[(iter as usize * 7919 + task * PER_TASK + i) % IDENTITIES];
                                let check = Check {
                                    tenant: &tenant,
                                    identity: who,
                                    method: &method,
                                    route: "/api/reports/{day}",
                                    cost: None,
                                    plan: None,
                                };
                                assert!(limiter.check(&check).await.allowed);
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
    // Redis time per call of the crate's checks (server side, not client time).
    let usec = |stats: &str| {
        stats
            .lines()
            .find(|l| l.starts_with("cmdstat_evalsha:"))
            .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("usec_per_call=")))
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "tenant-guard checks: Redis time per EVALSHA {} us (INFO commandstats)",
        usec(&server.cli(&["INFO", "commandstats"]))
    );
    server.cli(&["CONFIG", "RESETSTAT"]);

    // The same script, keys and arguments through redis-benchmark.
    let script = include_str!("../lua/ratelimit.lua");
    let sha = server.cli(&["SCRIPT", "LOAD", script]);
    let port = server.port.to_string();
    let rule = |limit: &'static str| ["win", limit, "3600000", "120000000", "30", "0"];
    let mut args: Vec<String> = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port,
        "-c".into(),
        "50".into(),
        "-n".into(),
        "200000".into(),
        "-r".into(),
        IDENTITIES.to_string(),
        "-q".into(),
        "EVALSHA".into(),
        sha,
        "3".into(),
        "tg:ratelimit:{acme}:per-tenant:tenant:all".into(),
        "tg:ratelimit:{acme}:per-user:user:__rand_int__".into(),
        "tg:ratelimit:{acme}:per-endpoint:user:__rand_int__:GET /api/reports/%7Bday%7D".into(),
        "check".into(),
        "1".into(),
        "benchnonce".into(),
    ];
    for limit in ["1000000000", "1000000", "1000000"] {
        args.extend(rule(limit).iter().map(|s| s.to_string()));
    }
    match Command::new("redis-benchmark").args(&args).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .split(['\r', '\n'])
                .rfind(|l| l.contains("requests per second"))
                .unwrap_or("(no result)")
                .trim()
                .to_string();
            println!("redis-benchmark -c 50, same script by EVALSHA, 3 keys: {line}");
            println!(
                "redis-benchmark: Redis time per EVALSHA {} us (INFO commandstats)",
                usec(&server.cli(&["INFO", "commandstats"]))
            );
        }
        Err(e) => println!("redis-benchmark not run: {e} (install redis-tools)"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
