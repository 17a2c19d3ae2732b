//! `tenant-guard size`: fill a Redis with N tenants' keys through the crate's own code
//! paths and measure what they cost — the numbers behind the README's "Sizing" section.
//!
//! Per tenant it writes what one active tenant with one logged-in user typically leaves:
//! a rate-limit check against three rules (per-tenant, per-user, per-endpoint: three
//! compact counters), one session (user id plus three small values, and its entry in the
//! user's index) and one cached query result (1 KiB of JSON, with the tenant's and the
//! category's cache generation keys and the tenant's tag epoch its first fill makes). It
//! then reads `INFO memory` and `MEMORY USAGE` of sampled keys of each kind, and computes
//! how the tenants spread over the 16 384 hash slots and over three masters holding equal
//! slot ranges.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use tenant_guard::backend::{Backend, BackendError};
use tenant_guard::cache::{Cache, Category};
use tenant_guard::config::Config;
use tenant_guard::keys::{KeyKind, Keys, hash_slot};
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
use tenant_guard::session::{Session, SessionStore};
use tenant_guard::tenant::TenantId;

/// Settings of a sizing run.
#[derive(Debug, Clone)]
pub struct SizingPlan {
    /// `redis://host:port` of a server to fill (use an empty one: it is not flushed).
    pub url: String,
    /// Tenants to create.
    pub tenants: u64,
    /// Concurrent writers.
    pub concurrency: usize,
}

/// Memory of one kind of key.
#[derive(Debug, Clone, Serialize)]
pub struct KindSize {
    /// What the keys hold.
    pub kind: &'static str,
    /// Keys of this kind per tenant.
    pub keys_per_tenant: u32,
    /// Mean `MEMORY USAGE` of one key (bytes, sampled).
    pub bytes_per_key: f64,
    /// Example key.
    pub example_key: String,
}

/// The results.
#[derive(Debug, Clone, Serialize)]
pub struct SizingReport {
    /// Tenants written.
    pub tenants: u64,
    /// Keys in the database afterwards (`DBSIZE`).
    pub keys: u64,
    /// `used_memory` before and after, bytes.
    pub used_memory_before: u64,
    /// `used_memory` after the fill.
    pub used_memory_after: u64,
    /// (after - before) / tenants.
    pub bytes_per_tenant: f64,
    /// Sum of the kinds' `MEMORY USAGE` per tenant (without Redis' per-key dictionary
    /// overhead, which `bytes_per_tenant` includes).
    pub sampled_bytes_per_tenant: f64,
    /// Per kind.
    pub kinds: Vec<KindSize>,
    /// Tenants per hash slot: min, mean, max.
    pub slot_min: u64,
    /// Mean tenants per slot.
    pub slot_mean: f64,
    /// Most tenants in one slot.
    pub slot_max: u64,
    /// Share of tenants on each of three masters with equal slot ranges.
    pub master_share: [f64; 3],
    /// How long the fill took.
    pub fill_seconds: f64,
}

fn tenant(i: u64) -> TenantId {
    TenantId::new(&format!("t{i:07}")).expect("valid tenant id")
}

async fn info_used_memory(url: &str) -> Result<u64, BackendError> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

async fn memory_usage(url: &str, keys: &[String]) -> Result<f64, BackendError> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let mut total = 0u64;
    let mut n = 0u64;
    for k in keys {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(k)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut c)
            .await?;
        if let Some(b) = bytes {
            total += b;
            n += 1;
        }
    }
    Ok(if n == 0 { 0.0 } else { total as f64 / n as f64 })
}

/// Fills the server and measures. `progress` is called with the tenants written so far.
pub async fn run(
    plan: &SizingPlan,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<SizingReport, BackendError> {
    let config = Config::from_vars([
        ("REDIS_URL", plan.url.as_str()),
        ("RATE_LIMIT_TENANT", "1000/1m"),
        ("RATE_LIMIT_USER", "100/15m"),
        ("RATE_LIMIT_MAX", "100"),
        ("RATE_LIMIT_WINDOW", "900"),
        ("CACHE_L1_MAX_BYTES", "0"),
        ("SESSION_SECRET", "sizing-run-secret-0123456789abcdefghijkl"),
    ])
    .map_err(|e| BackendError::Unsupported(Box::leak(e.to_string().into_boxed_str())))?;
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics)?;
    let limiter = RateLimiter::from_config(&config, backend.clone(), &metrics);
    let sessions = SessionStore::from_config(&config, backend.clone(), &metrics);
    let cache = Cache::from_config(&config, backend.clone(), &metrics);
    let before = info_used_memory(&plan.url).await?;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(progress);
    let query_rows: Vec<serde_json::Value> = (0..16)
        .map(|i| serde_json::json!({ "id": i, "name": format!("room-{i:03}"), "floor": i / 4, "free": i % 3 == 0 }))
        .collect();
    let query_rows = Arc::new(query_rows);
    let mut tasks = Vec::new();
    for _ in 0..plan.concurrency.max(1) {
        let (limiter, sessions, cache) = (limiter.clone(), sessions.clone(), cache.clone());
        let (next, done, progress, rows) = (
            next.clone(),
            done.clone(),
            progress.clone(),
            query_rows.clone(),
        );
        let total = plan.tenants;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), BackendError>(());
                }
                let t = tenant(i);
                let user = Identity::User("u-1".into());
                limiter
                    .check(&Check {
                        tenant: &t,
                        identity: &user,
                        method: &http::Method::GET,
                        route: "/api/items",
                        cost: None,
                        plan: None,
                    })
                    .await;
                let s = Session::detached(t.clone(), sessions.clone());
                let saved: Result<(), tenant_guard::session::SessionError> = async {
                    s.set_user_id(Some("u-1")).await?;
                    s.insert("theme", "dark").await?;
                    s.insert("locale", "en-GB").await?;
                    s.insert("login_at", &1_795_000_000u64).await?;
                    s.save().await?;
                    Ok(())
                }
                .await;
                if let Err(e) = saved {
                    return Err(BackendError::Unsupported(Box::leak(
                        e.to_string().into_boxed_str(),
                    )));
                }
                let rows = rows.clone();
                let _ = cache
                    .get_or_compute(&t, &Category::query(), &"rooms", || async move {
                        Ok::<_, String>(rows)
                    })
                    .await;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 10_000 == 0 {
                    progress(n);
                }
            }
        }));
    }
    for task in tasks {
        task.await
            .map_err(|_| BackendError::Unsupported("a writer task panicked"))??;
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    // Let lazy frees settle before reading memory.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = info_used_memory(&plan.url).await?;
    let keys_total = match &backend {
        Backend::Redis(r) => r.db_size().await?,
        Backend::Memory(m) => m.len() as u64,
    };

    // Sample up to 500 keys of each kind with one SCAN pass (never KEYS).
    let keys = Keys::default();
    let kinds_wanted = [
        (
            KeyKind::RateLimit,
            "rate-limit counter (compact, one per rule)",
            3u32,
        ),
        (KeyKind::Session, "session (user + 3 values)", 1),
        (KeyKind::SessionIndex, "per-user session index", 1),
        (KeyKind::Query, "cached query result (1 KiB JSON)", 1),
        (
            KeyKind::CacheGen,
            "cache generations (tenant + category + tag epoch)",
            3,
        ),
    ];
    let prefixes: Vec<String> = kinds_wanted
        .iter()
        .map(|(k, _, _)| format!("{}:{}:", keys.prefix().as_str(), k.as_str()))
        .collect();
    let mut samples: Vec<Vec<String>> = vec![Vec::new(); kinds_wanted.len()];
    let url = plan.url.clone();
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        for k in batch {
            if let Some(i) = prefixes.iter().position(|p| k.starts_with(p.as_str())) {
                if samples[i].len() < 500 {
                    samples[i].push(k);
                }
            }
        }
        if next == 0 || samples.iter().all(|s| s.len() >= 500) {
            break;
        }
        cursor = next;
    }
    let mut kinds = Vec::new();
    for ((_, label, per), names) in kinds_wanted.iter().zip(&samples) {
        let bytes = memory_usage(&url, names).await?;
        kinds.push(KindSize {
            kind: label,
            keys_per_tenant: *per,
            bytes_per_key: bytes,
            example_key: names.first().cloned().unwrap_or_default(),
        });
    }
    let sampled: f64 = kinds
        .iter()
        .map(|k| k.bytes_per_key * f64::from(k.keys_per_tenant))
        .sum();

    // Slot spread of the tenants (every key of a tenant is in its tenant's slot).
    let mut per_slot = vec![0u64; 16_384];
    for i in 0..plan.tenants {
        let t = format!("{{t{i:07}}}");
        per_slot[usize::from(hash_slot(t.as_bytes()))] += 1;
    }
    let mut masters = [0u64; 3];
    for (slot, n) in per_slot.iter().enumerate() {
        let m = match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        masters[m] += n;
    }
    let n = plan.tenants.max(1) as f64;
    Ok(SizingReport {
        tenants: plan.tenants,
        keys: keys_total,
        used_memory_before: before,
        used_memory_after: after,
        bytes_per_tenant: after.saturating_sub(before) as f64 / n,
        sampled_bytes_per_tenant: sampled,
        kinds,
        slot_min: per_slot.iter().copied().min().unwrap_or(0),
        slot_mean: n / 16_384.0,
        slot_max: per_slot.iter().copied().max().unwrap_or(0),
        master_share: masters.map(|m| m as f64 / n),
        fill_seconds,
    })
}

impl SizingReport {
    /// The report as a text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<46} {:>8} {:>12} {:>14}\n",
            "kind", "keys/t", "bytes/key", "bytes/tenant"
        ));
        for k in &self.kinds {
            out.push_str(&format!(
                "{:<46} {:>8} {:>12.0} {:>14.0}\n",
                k.kind,
                k.keys_per_tenant,
                k.bytes_per_key,
                k.bytes_per_key * f64::from(k.keys_per_tenant)
            ));
        }
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        out.push_str(&format!(
            "sum of MEMORY USAGE per tenant: {:.0} bytes\n\
             used_memory: {:.1} MiB -> {:.1} MiB for {} tenants ({} keys): {:.0} bytes per tenant\n\
             fill: {:.1} s ({:.0} tenants/s)\n\
             hash slots: {:.1} tenants per slot on average, min {}, max {}; \
             three equal masters hold {:.2}% / {:.2}% / {:.2}%\n",
            self.sampled_bytes_per_tenant,
            mib(self.used_memory_before),
            mib(self.used_memory_after),
            self.tenants,
            self.keys,
            self.bytes_per_tenant,
            self.fill_seconds,
            self.tenants as f64 / self.fill_seconds.max(1e-9),
            self.slot_mean,
            self.slot_min,
            self.slot_max,
            self.master_share[0] * 100.0,
            self.master_share[1] * 100.0,
            self.master_share[2] * 100.0,
        ));
        out
    }
}
