//! The Redis path decides by Redis `TIME`, never by the app's clock.
//!
//! Two app instances share one redis-server: this test process, and a copy of it whose
//! wall clock libfaketime moves two hours ahead (`FAKETIME=+2h`; the monotonic clock is left
//! alone so tokio's timers still work). The first uses up a rule's limit; the second must be
//! refused too, with a retry within the window. A script fed the app's clock would see the
//! first instance's requests two hours in the past, outside every window, and admit it.
//!
//! Needs libfaketime (Debian package `faketime`; `.ci/run` installs it when missing).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tenant_guard::ratelimit::{Identity, Source};
use tenant_guard::tenant::TenantId;

const SKEW: Duration = Duration::from_secs(2 * 3600);

fn libfaketime() -> PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("libfaketime not found: install the `faketime` package (apt-get install faketime)")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn vars(url: &str, algo: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("REDIS_URL", url),
        ("RATE_LIMIT_MAX", "5"),
        ("RATE_LIMIT_WINDOW", "10s"),
        ("RATE_LIMIT_ALGORITHM", algo),
        // Every check goes to Redis: no local memory of who was denied.
        ("RATE_LIMIT_DENY_CACHE", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    common::strict_on_redis(&mut vars);
    vars
}

/// One check, as the skewed instance makes it: printed as `DECISION allowed=.. source=..
/// retry_ms=..` for the parent. Runs only when the parent starts it (`--ignored`, with the
/// variables set); it first proves its own clock is the skewed one.
#[tokio::test]
#[ignore = "the second instance of skewed_app_clock_changes_no_decision; it starts this"]
async fn skewed_instance() {
    let get = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let parent_ms: u64 = get("TG_TIME_PARENT_MS").parse().unwrap();
    let own_ms = unix_ms();
    assert!(
        own_ms >= parent_ms + SKEW.as_millis() as u64 - 60_000,
        "libfaketime did not move this process's clock: {own_ms} vs parent {parent_ms}"
    );
    let (limiter, _backend, _metrics) =
        common::build_limiter(vars(&get("TG_TIME_REDIS_URL"), &get("TG_TIME_ALGO")));
    let tenant = TenantId::new(&get("TG_TIME_TENANT")).unwrap();
    let who = Identity::User(get("TG_TIME_USER").as_str().into());
    let d = limiter
        .check(&common::get_check(&tenant, &who, "/items", None))
        .await;
    println!(
        "DECISION allowed={} source={:?} retry_ms={}",
        d.allowed,
        d.source,
        d.retry_after().map_or(0, |r| r.as_millis())
    );
}

async fn skewed_clock_changes_no_decision(algo: &str) {
    let server = common::RedisServer::start();
    let (limiter, _backend, _metrics) = common::build_limiter(vars(&server.url(), algo));
    let tenant = common::unique_tenant("clock");
    let who = Identity::User("u1".into());
    for i in 0..5 {
        let d = limiter
            .check(&common::get_check(&tenant, &who, "/items", None))
            .await;
        assert!(d.allowed, "check {i}: {d:?}");
        assert_eq!(d.source, Source::Redis);
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "skewed_instance", "--nocapture"])
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", format!("+{}s", SKEW.as_secs()))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_NO_CACHE", "1")
        .env("TG_TIME_PARENT_MS", unix_ms().to_string())
        .env("TG_TIME_REDIS_URL", server.url())
        .env("TG_TIME_ALGO", algo)
        .env("TG_TIME_TENANT", tenant.as_str())
        .env("TG_TIME_USER", "u1")
        .output()
        .expect("run the skewed instance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "skewed instance failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DECISION "))
        .unwrap_or_else(|| panic!("no decision printed:\n{stdout}"));
    assert!(
        line.contains("source=Redis"),
        "the skewed instance did not decide on Redis: {line}"
    );
    assert!(
        line.contains("allowed=false"),
        "an app clock two hours ahead reset the window ({algo}): {line}"
    );
    let retry_ms: u64 = line
        .split("retry_ms=")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(
        retry_ms > 0 && retry_ms <= 11_000,
        "retry {retry_ms} ms is not within the 10 s window ({algo})"
    );
    // And back in this (unskewed) instance, the skewed check changed nothing it should not.
    let d = limiter
        .check(&common::get_check(&tenant, &who, "/items", None))
        .await;
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.source, Source::Redis);
}

#[tokio::test]
async fn skewed_app_clock_changes_no_decision_compact() {
    skewed_clock_changes_no_decision("compact").await;
}

#[tokio::test]
async fn skewed_app_clock_changes_no_decision_exact() {
    skewed_clock_changes_no_decision("exact").await;
}

#[tokio::test]
async fn skewed_app_clock_changes_no_decision_gcra() {
    skewed_clock_changes_no_decision("gcra").await;
}
