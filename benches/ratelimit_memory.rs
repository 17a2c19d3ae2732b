//! The in-memory rate-limit path: one check against three rules (per-tenant, per-user,
//! per-endpoint) next to governor's keyed `check_key` on one key, in one group.
//!
//! Run: `cargo bench --bench ratelimit_memory`

use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use governor::{Quota as GQuota, RateLimiter as Governor};
use std::hint::black_box;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
use tenant_guard::tenant::TenantId;

fn bench(c: &mut Criterion) {
    // Limits high enough that nothing is denied: the bench measures the bookkeeping.
    let config = Config::from_vars([
        ("RATE_LIMIT_TENANT", "1000000000/1h"),
        ("RATE_LIMIT_USER", "1000000000/1h"),
        ("RATE_LIMIT_MAX", "1000000000"),
        ("RATE_LIMIT_WINDOW", "1h"),
    ])
    .expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    let tenant = TenantId::new("acme").expect("tenant");
    let who = Identity::User("u-42".into());
    let method = http::Method::GET;

    let gov = Governor::keyed(
        GQuota::with_period(Duration::from_nanos(1))
            .expect("quota")
            .allow_burst(NonZeroU32::new(1_000_000_000).expect("nonzero")),
    );
    let key = String::from("u-42");

    let mut g = c.benchmark_group("ratelimit_memory");
    g.bench_function("governor_check_key_one_key", |b| {
        b.iter(|| black_box(gov.check_key(black_box(&key))).is_ok())
    });
    g.bench_function("tenant_guard_check_three_rules", |b| {
        b.iter(|| {
            let check = Check {
                tenant: &tenant,
                identity: &who,
                method: &method,
                route: "/api/reports/{day}",
                cost: None,
                plan: None,
            };
            let d = limiter
                .check(black_box(&check))
                .now_or_never()
                .expect("the memory path never waits");
            black_box(d.allowed)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
