//! The in-memory backend's get/set, the fallback store of every layer.
//!
//! Run: `cargo bench --bench memory`

use std::num::NonZeroU64;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tenant_guard::backend::MemoryStore;
use tenant_guard::config::MemoryConfig;
use tenant_guard::keys::{Keys, RedisKey};
use tenant_guard::tenant::TenantId;

const N: usize = 10_000;

fn setup(max_entries: u64) -> (MemoryStore, Vec<RedisKey>) {
    // Config structs are non-exhaustive: start from the defaults and change fields.
    let mut cfg = MemoryConfig::default();
    cfg.max_entries = NonZeroU64::new(max_entries).expect("nonzero");
    let store = MemoryStore::new(cfg);
    let keys = Keys::default();
    let tenant = TenantId::new("acme").expect("tenant");
    let ks: Vec<RedisKey> = (0..N)
        .map(|i| keys.query(&tenant, &format!("{i:064x}")))
        .collect();
    (store, ks)
}

fn memory(c: &mut Criterion) {
    let value = Bytes::from(vec![7u8; 256]);
    let ttl = Some(Duration::from_secs(300));
    let mut g = c.benchmark_group("memory");

    let (store, ks) = setup(100_000);
    for k in &ks {
        store.set(k, value.clone(), ttl).expect("set");
    }
    let mut i = 0usize;
    g.bench_function("get_hit_256B", |b| {
        b.iter(|| {
            i = (i + 1) % N;
            black_box(store.get(&ks[i]))
        })
    });
    let miss = Keys::default().query(&TenantId::new("other").expect("tenant"), "missing");
    g.bench_function("get_miss", |b| b.iter(|| black_box(store.get(&miss))));
    g.bench_function("set_overwrite_256B_ttl", |b| {
        b.iter(|| {
            i = (i + 1) % N;
            store.set(&ks[i], value.clone(), ttl).expect("set")
        })
    });

    // At capacity: every insert of a new key evicts the least recently used one.
    let (full, ks) = setup(N as u64 / 2);
    for k in &ks[..N / 2] {
        full.set(k, value.clone(), ttl).expect("set");
    }
    g.bench_function("set_new_key_with_lru_eviction", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % N;
                ks[i].clone()
            },
            |k| full.set(&k, value.clone(), ttl).expect("set"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, memory);
criterion_main!(benches);
