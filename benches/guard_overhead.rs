//! What `guard.layer()` adds to a request in process, on the memory backend: tenant +
//! untouched session + three-rule limit (per-tenant, per-user, per-endpoint), next to the
//! same router without it, driven as a tower service (no sockets). Also counts the heap
//! allocations per request with a counting global allocator: the layers' own, beside the
//! bare router's.
//!
//! Run: `cargo bench --bench guard_overhead` (criterion figures, then a side-by-side table:
//! interleaved rounds, medians).

#![allow(unsafe_code)] // the counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use tenant_guard::TenantGuard;
use tower::ServiceExt;

/// The system allocator, counting allocations.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn routes() -> Router {
    Router::new().route("/api/items", get(|| async { "items" }))
}

fn request(i: u64) -> http::Request<Body> {
    let mut req = http::Request::get("/api/items")
        .header("x-tenant-id", "acme")
        .header("x-user-id", USERS[(i % USERS.len() as u64) as usize])
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
    req
}

/// Callers of the per-user rule, made before the runs (their ids are not the layers' cost).
const USERS: [&str; 8] = [
    "user-1", "user-2", "user-3", "user-4", "user-5", "user-6", "user-7", "user-8",
];

/// One request through `app`, to the end of its body.
async fn once(app: &Router, i: u64) {
    let r = app.clone().oneshot(request(i)).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let _ = http_body_util::BodyExt::collect(r.into_body()).await;
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let guard = TenantGuard::from_vars([
        ("REDIS_ENABLED", "false"),
        ("RATE_LIMIT_TENANT", "1000000000/1h"),
        ("RATE_LIMIT_USER", "1000000000/1h"),
        ("RATE_LIMIT_MAX", "1000000000"),
        ("RATE_LIMIT_WINDOW", "3600"),
        ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
    ])
    .unwrap();
    assert_eq!(guard.limiter().policy().rules().len(), 3, "three rules");
    let bare = routes();
    let guarded = routes().layer(guard.layer());

    let mut i = 0u64;
    for (name, app) in [("bare", &bare), ("guard", &guarded)] {
        c.bench_function(&format!("guard_overhead/{name}"), |b| {
            b.iter(|| {
                i += 1;
                rt.block_on(once(app, i));
            })
        });
    }

    // Side by side: rounds alternate between the two, medians of each.
    const N: u64 = 20_000;
    let mut per = [Vec::new(), Vec::new()];
    let mut allocs = [0u64; 2];
    for _ in 0..9 {
        for (k, app) in [&bare, &guarded].into_iter().enumerate() {
            let a0 = ALLOCS.load(Ordering::Relaxed);
            let t = Instant::now();
            rt.block_on(async {
                for j in 0..N {
                    once(app, j).await;
                }
            });
            per[k].push(t.elapsed().as_nanos() as f64 / N as f64);
            allocs[k] = (ALLOCS.load(Ordering::Relaxed) - a0) / N;
        }
    }
    for v in &mut per {
        v.sort_by(f64::total_cmp);
    }
    let (b, g) = (per[0][4], per[1][4]);
    println!(
        "\nguard_overhead (memory backend, in process, 9 interleaved rounds of {N}, medians):"
    );
    println!("{:<44} {:>10} {:>14}", "", "ns/request", "allocs/request");
    println!("{:<44} {:>10.0} {:>14}", "bare router", b, allocs[0]);
    println!(
        "{:<44} {:>10.0} {:>14}",
        "guard.layer(): tenant + session + 3 rules", g, allocs[1]
    );
    println!(
        "added by the guard: {:.2} us and {} allocations per request",
        (g - b) / 1000.0,
        allocs[1].saturating_sub(allocs[0])
    );
    rt.block_on(guard.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
