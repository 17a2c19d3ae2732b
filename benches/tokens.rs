//! Token budgets on Redis: what a reservation and its settlement cost next to a plain
//! check of the same budgets (the peer: a request-count limiter), on one redis-server this
//! bench starts. Criterion times each from the client; then, counted by Redis itself
//! (`INFO commandstats`), the script calls and the Redis time per operation:
//!
//! - `check`: one check of two budgets (tenant and user), cost 100;
//! - `reserve + refund`: reserve 100, settle at 40 (the bucket's units taken back);
//! - `reserve + exact`: reserve 100, settle at 100 (nothing to send: no call).
//!
//! Run: `cargo bench --bench tokens` (needs redis-server and redis-cli).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
use tenant_guard::tenant::TenantId;
use tenant_guard::tokens::TokenBudget;

const BUDGETS: &str =
    "tenant: POST /ai/{mode} = 2000000000/1h; user: POST /ai/{mode} = 2000000000/1h";

/// (script calls, Redis microseconds) of EVALSHA so far.
fn evalsha(server: &common::RedisServer) -> (u64, u64) {
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

fn bench(c: &mut Criterion) {
    let server = common::RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let config = Config::from_vars([
        ("REDIS_URL", url.as_str()),
        ("RATE_LIMIT_TOKENS", BUDGETS),
        ("RATE_LIMIT_OUTAGE", "closed"),
    ])
    .expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    let budget = TokenBudget::from_config(&config, backend.clone(), &metrics).expect("budget");
    // The peer: the same two rules as request counters, checked with the same cost.
    let counts = Config::from_vars([
        ("REDIS_URL", url.as_str()),
        ("RATE_LIMIT_TENANT", "2000000000/1h"),
        ("RATE_LIMIT_USER", "2000000000/1h"),
        ("RATE_LIMIT_ENABLED", "true"),
        ("RATE_LIMIT_MAX", "2000000000"),
        ("RATE_LIMIT_WINDOW", "1h"),
        ("RATE_LIMIT_OUTAGE", "closed"),
        ("RATE_LIMIT_DENY_CACHE", "0"),
    ])
    .expect("config");
    let limiter = RateLimiter::from_config(&counts, backend, &metrics);
    let tenant = TenantId::new("acme").expect("tenant");
    let who = Identity::User("u-1".into());
    let post = http::Method::POST;
    let route = "/ai/{mode}";

    let check = || async {
        let c = Check {
            tenant: &tenant,
            identity: &who,
            method: &post,
            route,
            cost: Some(100),
            plan: None,
        };
        black_box(limiter.check(&c).await.allowed)
    };
    let reserve_settle = |used: u64| {
        let (budget, tenant, who, post) = (&budget, &tenant, &who, &post);
        async move {
            let r = budget
                .reserve(tenant, who, post, route, 100)
                .await
                .expect("room");
            black_box(r.settle(used).await.expect("settled"));
        }
    };

    let mut g = c.benchmark_group("tokens_redis");
    g.bench_function("check (2 rules, cost 100)", |b| {
        b.iter(|| rt.block_on(check()));
    });
    g.bench_function("reserve + refund (2 budgets)", |b| {
        b.iter(|| rt.block_on(reserve_settle(40)));
    });
    g.bench_function("reserve + exact (2 budgets)", |b| {
        b.iter(|| rt.block_on(reserve_settle(100)));
    });
    g.finish();

    // Counted by Redis: script calls and Redis time per operation.
    const N: u64 = 2000;
    let per_op = |label: &str, f: &dyn Fn()| {
        let (c0, u0) = evalsha(&server);
        for _ in 0..N {
            f();
        }
        let (c1, u1) = evalsha(&server);
        println!(
            "{label:<30} {:.2} script calls/op, {:.2} us Redis/op",
            (c1 - c0) as f64 / N as f64,
            (u1 - u0) as f64 / N as f64
        );
    };
    per_op("check (2 rules, cost 100)", &|| {
        rt.block_on(check());
    });
    per_op("reserve + refund (2 budgets)", &|| {
        rt.block_on(reserve_settle(40))
    });
    per_op("reserve + exact (2 budgets)", &|| {
        rt.block_on(reserve_settle(100))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
