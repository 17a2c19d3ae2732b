//! Key formatting and tenant validation: on the path of every request.
//!
//! Run: `cargo bench --bench keys`

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tenant_guard::keys::{KeyKind, Keys, hash_slot};
use tenant_guard::tenant::TenantId;

fn keys(c: &mut Criterion) {
    let keys = Keys::default();
    let tenant = TenantId::new("acme-corp").expect("tenant");
    let mut g = c.benchmark_group("keys");
    g.bench_function("tenant_id_validate", |b| {
        b.iter(|| TenantId::new(black_box("550e8400-e29b-41d4-a716-446655440000")))
    });
    g.bench_function("ratelimit_key", |b| {
        b.iter(|| {
            keys.ratelimit(
                black_box(&tenant),
                "per-user",
                "user",
                black_box("u-42"),
                Some(black_box("GET /api/reports/{day}")),
            )
        })
    });
    g.bench_function("session_key", |b| {
        b.iter(|| keys.session(black_box(&tenant), black_box("Qm9vdHN0cmFwLXNlc3Npb24taWQ")))
    });
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    g.bench_function("ai_key_sha256", |b| {
        b.iter(|| keys.ai(black_box(&tenant), black_box("gpt-4o"), black_box(hash)))
    });
    g.bench_function("cache_key_hostile_component", |b| {
        b.iter(|| keys.cache(black_box(&tenant), "reports", black_box("x:*}{other}\n[é]")))
    });
    g.bench_function("prefix_pattern", |b| {
        b.iter(|| keys.prefix_pattern(KeyKind::Cache, black_box(&tenant), &["reports"]))
    });
    let k = keys.session(&tenant, "abc");
    g.bench_function("hash_slot", |b| {
        b.iter(|| hash_slot(black_box(k.as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, keys);
criterion_main!(benches);
