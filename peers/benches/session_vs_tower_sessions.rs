//! Sessions on Redis against tower-sessions with its Redis store (tower-sessions-redis-store,
//! on fred), in one run on one redis-server this bench starts: the same axum routes in
//! process (no sockets), 32 concurrent clients each with a logged-in session, interleaved
//! rounds:
//!
//! - `read`: `GET /me` reads one value from the session;
//! - `read + write`: `POST /me` reads it and writes it back changed.
//!
//! For each: requests/s (median of the rounds), the Redis time per request from `INFO
//! commandstats` (every command, server side), and the ratio to tower-sessions. Then the
//! memory of one session holding the same value (`MEMORY USAGE`).
//!
//! Run: `cargo bench -p tenant-guard-peers --bench session_vs_tower_sessions` (needs redis-server and redis-cli).
//! `TG_BENCH_ROUNDS` (default 6) and `TG_BENCH_ROUND_SECS` (default 2) set its length;
//! `REDIS_POOL_SIZE`, when set, tenant-guard's connections (default: one per core, 2-8).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::session::{Session, SessionLayer, SessionStore};
use tower::ServiceExt;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config as FredConfig, Pool};

const CLIENTS: usize = 32;
const VALUE: &str = "alice@example.com";

fn tenant_guard_app(url: &str) -> Router {
    // `REDIS_POOL_SIZE` from the bench's environment when set, to compare pool sizes.
    let pool = std::env::var("REDIS_POOL_SIZE").ok();
    let mut vars = vec![
        ("REDIS_URL", url),
        (
            "SESSION_SECRET",
            "session-bench-secret-0123456789abcdef0123",
        ),
        ("SESSION_COOKIE_SECURE", "false"),
    ];
    if let Some(pool) = &pool {
        vars.push(("REDIS_POOL_SIZE", pool));
    }
    let config = Config::from_vars(vars).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    let store = SessionStore::from_config(&config, backend, &metrics);
    Router::new()
        .route(
            "/me",
            get(|s: Session| async move {
                s.get::<String>("user")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            })
            .post(|s: Session| async move {
                let v = s
                    .get::<String>("user")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let next = if v.ends_with('!') {
                    VALUE.to_string()
                } else {
                    format!("{v}!")
                };
                let _ = s.insert("user", &next).await;
                next
            }),
        )
        .route(
            "/login",
            axum::routing::post(|s: Session| async move {
                let _ = s.insert("user", VALUE).await;
                "in"
            }),
        )
        .layer(SessionLayer::from_config(&config.session, store))
}

async fn tower_sessions_app(url: &str) -> Router {
    use tower_sessions::{Expiry, Session, SessionManagerLayer};
    let pool = Pool::new(
        FredConfig::from_url(url).expect("fred config"),
        None,
        None,
        None,
        6,
    )
    .expect("fred pool");
    pool.init().await.expect("fred connect");
    let layer = SessionManagerLayer::new(tower_sessions_redis_store::RedisStore::new(pool))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(24)));
    Router::new()
        .route(
            "/me",
            get(|s: Session| async move {
                s.get::<String>("user")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            })
            .post(|s: Session| async move {
                let v = s
                    .get::<String>("user")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let next = if v.ends_with('!') {
                    VALUE.to_string()
                } else {
                    format!("{v}!")
                };
                let _ = s.insert("user", &next).await;
                next
            }),
        )
        .route(
            "/login",
            axum::routing::post(|s: Session| async move {
                let _ = s.insert("user", VALUE).await;
                "in"
            }),
        )
        .layer(layer)
}

async fn call(
    app: &Router,
    method: &str,
    cookie: Option<&str>,
    path: &str,
) -> (String, Option<String>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert!(res.status().is_success(), "{}", res.status());
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    (String::from_utf8_lossy(&body).into_owned(), cookie)
}

/// Logs `CLIENTS` sessions in; their cookies.
async fn sessions(app: &Router) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..CLIENTS {
        let (_, cookie) = call(app, "POST", None, "/login").await;
        let cookie = cookie.expect("a session cookie");
        assert_eq!(call(app, "GET", Some(&cookie), "/me").await.0, VALUE);
        out.push(cookie);
    }
    out
}

/// Requests per second of `CLIENTS` loops of `method /me` for `secs`.
fn drive(
    rt: &tokio::runtime::Runtime,
    app: &Router,
    cookies: &[String],
    method: &'static str,
    secs: f64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for cookie in cookies {
            let (app, cookie, stop, done) =
                (app.clone(), cookie.clone(), stop.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (body, _) = call(&app, method, Some(&cookie), "/me").await;
                    assert!(body.starts_with(VALUE), "session lost: {body:?}");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("client");
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Total `usec` over every command since the last `CONFIG RESETSTAT`, and the commands.
fn redis_usec(server: &common::RedisServer) -> (u64, String) {
    let stats = server.cli(&["INFO", "commandstats"]);
    let mut total = 0;
    let mut names = Vec::new();
    for line in stats.lines().filter(|l| l.starts_with("cmdstat_")) {
        let usec: u64 = line
            .split([':', ','])
            .find_map(|f| f.strip_prefix("usec="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // The bench's own INFO / CONFIG are not the session's.
        if line.starts_with("cmdstat_info:") || line.starts_with("cmdstat_config") {
            continue;
        }
        total += usec;
        names.push(
            line.split(':')
                .next()
                .unwrap_or("")
                .trim_start_matches("cmdstat_")
                .to_string(),
        );
    }
    (total, names.join(" "))
}

#[derive(Default)]
struct Tally {
    rates: Vec<f64>,
    requests: f64,
    usec: u64,
    commands: String,
}

impl Tally {
    fn median(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    }
    fn usec_per_request(&self) -> f64 {
        self.usec as f64 / self.requests.max(1.0)
    }
}

fn bench(c: &mut Criterion) {
    let server = common::RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (tg, ts) = rt.block_on(async { (tenant_guard_app(&url), tower_sessions_app(&url).await) });
    let (tg_cookies, ts_cookies) =
        rt.block_on(async { (sessions(&tg).await, sessions(&ts).await) });

    // Criterion: one read each, for the record.
    let mut g = c.benchmark_group("session_vs_tower_sessions");
    g.sample_size(30);
    g.bench_function("tenant_guard_read", |b| {
        b.iter(|| rt.block_on(call(&tg, "GET", Some(&tg_cookies[0]), "/me")))
    });
    g.bench_function("tower_sessions_read", |b| {
        b.iter(|| rt.block_on(call(&ts, "GET", Some(&ts_cookies[0]), "/me")))
    });
    g.finish();

    let rounds: usize = std::env::var("TG_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let secs: f64 = std::env::var("TG_BENCH_ROUND_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let variants: [(&str, &Router, &[String], &'static str); 4] = [
        ("tenant-guard, read", &tg, &tg_cookies, "GET"),
        ("tower-sessions, read", &ts, &ts_cookies, "GET"),
        ("tenant-guard, read + write", &tg, &tg_cookies, "POST"),
        ("tower-sessions, read + write", &ts, &ts_cookies, "POST"),
    ];
    let mut tallies: Vec<Tally> = (0..variants.len()).map(|_| Tally::default()).collect();
    for _ in 0..rounds {
        for (i, (_, app, cookies, method)) in variants.iter().enumerate() {
            server.cli(&["CONFIG", "RESETSTAT"]);
            let rate = drive(&rt, app, cookies, method, secs);
            let (usec, commands) = redis_usec(&server);
            let t = &mut tallies[i];
            t.rates.push(rate);
            t.requests += rate * secs;
            t.usec += usec;
            t.commands = commands;
        }
    }
    println!(
        "\nsession_vs_tower_sessions: {rounds} interleaved rounds of {secs} s, {CLIENTS} clients in \
         process, one redis-server"
    );
    println!(
        "{:<30} {:>10} {:>16} {:>18}  commands",
        "", "requests/s", "Redis us/request", "x tower-sessions"
    );
    for (i, (name, ..)) in variants.iter().enumerate() {
        let peer = &tallies[i | 1];
        let t = &tallies[i];
        println!(
            "{:<30} {:>10.0} {:>16.2} {:>18.2}  {}",
            name,
            t.median(),
            t.usec_per_request(),
            t.median() / peer.median(),
            t.commands
        );
    }

    // Memory of one session with the same value.
    let keys = server.cli(&["KEYS", "*"]);
    let usage = |key: &str| -> u64 {
        server
            .cli(&["MEMORY", "USAGE", key])
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for key in keys.lines().map(str::trim).filter(|k| !k.is_empty()) {
        if key.starts_with("tg:session:") {
            ours.push(usage(key));
        } else if !key.starts_with("tg:") {
            theirs.push(usage(key));
        }
    }
    let avg = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    println!(
        "MEMORY USAGE per session holding {:?}: tenant-guard {:.0} B ({} sessions), tower-sessions \
         {:.0} B ({} sessions): {:.2}x",
        VALUE,
        avg(&ours),
        ours.len(),
        avg(&theirs),
        theirs.len(),
        avg(&ours) / avg(&theirs).max(1.0)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
