//! The open-loop load generator against real loopback servers, and the demo end to end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tenant_guard::config::Config;
use tenant_guard_cli::loadgen::{
    self, Endpoint, LoadPlan, Target, TenantLoad, max_in_window, schedule,
};

/// A server whose every request takes `delay`; counts requests and peak concurrency.
async fn slow_server(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let (n, p, t) = (now.clone(), peak.clone(), total.clone());
    let app = Router::new().route(
        "/x",
        get(move || {
            let (n, p, t) = (n.clone(), p.clone(), t.clone());
            async move {
                t.fetch_add(1, Ordering::SeqCst);
                let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(c, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                n.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, peak, total)
}

fn plan(target: SocketAddr, rate: f64, secs: u64, max_in_flight: usize) -> LoadPlan {
    LoadPlan {
        target: Target::Http(target),
        duration: Duration::from_secs(secs),
        max_in_flight,
        tenant_header: "x-tenant-id".into(),
        user_header: "x-user-id".into(),
        tenants: vec![TenantLoad {
            tenant: "t".into(),
            rate,
            users: 3,
            endpoints: vec![Endpoint {
                method: http::Method::GET,
                path: "/x".into(),
                weight: 1,
            }],
        }],
        stream_share: 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_does_not_lower_the_send_rate() {
    // Each request takes 500 ms; a closed loop with one connection would manage 2 in 1 s.
    let (addr, peak, total) = slow_server(Duration::from_millis(500)).await;
    let report = loadgen::run(&plan(addr, 40.0, 1, 1000)).await.unwrap();
    let t = &report.tenants[0];
    assert_eq!(t.sent, 40, "every scheduled request was sent");
    assert_eq!(t.ok, 40);
    assert_eq!(total.load(Ordering::SeqCst), 40);
    // Requests overlapped at the server: the schedule did not wait for responses.
    assert!(
        peak.load(Ordering::SeqCst) >= 5,
        "peak concurrency {}",
        peak.load(Ordering::SeqCst)
    );
    // Latency counts from the scheduled time, so it includes the 500 ms.
    assert!(t.latency_us.value_at_quantile(0.5) >= 500_000);
    // The client saw at least as many out at once as the server had in flight.
    assert!(
        t.max_in_flight >= peak.load(Ordering::SeqCst) as u64 && t.max_in_flight <= 40,
        "max in flight {}, server peak {}",
        t.max_in_flight,
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(
        report.to_json(None)["tenants"][0]["max_in_flight"],
        t.max_in_flight
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_cap_skips_instead_of_waiting() {
    let (addr, peak, _) = slow_server(Duration::from_secs(2)).await;
    let report = loadgen::run(&plan(addr, 50.0, 1, 5)).await.unwrap();
    let t = &report.tenants[0];
    assert_eq!(t.sent + t.skipped, 50);
    assert_eq!(t.sent, 5);
    assert!(peak.load(Ordering::SeqCst) <= 5);
    assert_eq!(t.max_in_flight, 5, "the cap's worth out at once");
}

#[tokio::test]
async fn unreachable_target_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The listener is dropped: nothing accepts there now.
    let err = loadgen::run(&plan(port, 1.0, 1, 1)).await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!("cannot reach {port}")),
        "{err}"
    );
}

#[test]
fn schedule_follows_rates_users_and_weights() {
    let t = |name: &str, rate| TenantLoad {
        tenant: name.into(),
        rate,
        users: 4,
        endpoints: vec![
            Endpoint {
                method: http::Method::GET,
                path: "/a".into(),
                weight: 3,
            },
            Endpoint {
                method: http::Method::POST,
                path: "/b".into(),
                weight: 1,
            },
        ],
    };
    let s = schedule(&[t("x", 20.0), t("y", 5.0)], Duration::from_secs(4));
    assert_eq!(s.iter().filter(|p| p.tenant == 0).count(), 80);
    assert_eq!(s.iter().filter(|p| p.tenant == 1).count(), 20);
    assert!(s.windows(2).all(|w| w[0].at <= w[1].at), "in send order");
    let a = s
        .iter()
        .filter(|p| p.tenant == 0 && p.endpoint == 0)
        .count();
    assert_eq!(a, 60, "weights 3:1");
    assert!((0..4).all(|u| s.iter().any(|p| p.tenant == 0 && p.user == u)));
}

#[test]
fn window_maximum() {
    let ms = |v: &[u64]| {
        v.iter()
            .map(|&m| Duration::from_millis(m))
            .collect::<Vec<_>>()
    };
    let w = Duration::from_millis(1000);
    // (t - 1000, t]: 0 and 1000 are never in one window.
    assert_eq!(max_in_window(&ms(&[0, 1000]), w), 1);
    assert_eq!(max_in_window(&ms(&[0, 999]), w), 2);
    // (1100, 2100] holds 1500, 1600, 1700, 1800 and 2100.
    assert_eq!(
        max_in_window(&ms(&[0, 10, 20, 1500, 1600, 1700, 1800, 2100]), w),
        5
    );
    assert_eq!(max_in_window(&ms(&[5, 5, 5]), w), 3);
}

/// The demo app under a flood: the limit holds in every window, seen from the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_app_holds_the_flood_to_its_limit() {
    let config = Config::from_vars([
        ("RATE_LIMIT_TENANT", "20/2s"),
        ("RATE_LIMIT_MAX", "100000"),
        ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
    ])
    .unwrap();
    let app = tenant_guard_cli::demo::app(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let endpoints = vec![
        Endpoint {
            method: http::Method::GET,
            path: "/api/items".into(),
            weight: 2,
        },
        Endpoint {
            method: http::Method::GET,
            path: "/api/reports/2026-11-22".into(),
            weight: 1,
        },
    ];
    let tenant = |name: &str, rate| TenantLoad {
        tenant: name.into(),
        rate,
        users: 3,
        endpoints: endpoints.clone(),
    };
    let plan = LoadPlan {
        target: Target::Http(target),
        duration: Duration::from_secs(4),
        max_in_flight: 256,
        tenant_header: "X-Tenant-ID".into(),
        user_header: "X-User-ID".into(),
        tenants: vec![tenant("calm", 4.0), tenant("flood", 40.0)],
        stream_share: 0.0,
    };
    let report = loadgen::run(&plan).await.unwrap();
    let table = report.table(Some((20, Duration::from_secs(2))));
    eprintln!("{table}");
    let calm = &report.tenants[0];
    let flood = &report.tenants[1];
    assert_eq!(calm.throttled, 0, "calm stays under its limit");
    assert!(flood.throttled > 0);
    // Client-side receive times carry response jitter; windows 250 ms shorter than the
    // rule's absorb it, while a limiter that over-admitted (a fixed window admits up to
    // twice the limit across a boundary) would still show far more than 20.
    assert!(max_in_window(&flood.admitted_at, Duration::from_millis(1750)) <= 20);
    assert_eq!(flood.other + flood.errors, 0);
    assert!(table.contains("flood"));

    // JSON and chart carry the same numbers.
    let json = report.to_json(Some((20, Duration::from_secs(2))));
    assert_eq!(json["tenants"][1]["tenant"], "flood");
    assert_eq!(json["tenants"][1]["throttled"], flood.throttled);
    let series = &json["tenants"][1]["series"]["admitted"];
    let sum: u64 = series
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sum, flood.ok);
    let svg = report.svg_chart(Some((20, Duration::from_secs(2))), "demo <test>");
    assert!(svg.starts_with("<svg"));
    assert_eq!(
        svg.matches("<polyline").count(),
        4,
        "admitted + throttled per tenant"
    );
    assert!(svg.contains("demo &lt;test&gt;"), "titles are escaped");
}

/// `--in-process`: the demo router as a tower service, no sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_target() {
    // A window far longer than the run: exactly 10 admissions, whatever the timing.
    let config = Config::from_vars([
        ("RATE_LIMIT_TENANT", "10/1m"),
        ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
    ])
    .unwrap();
    let app = tenant_guard_cli::demo::app(&config).unwrap();
    let plan = LoadPlan {
        target: Target::InProcess(app),
        duration: Duration::from_secs(2),
        max_in_flight: 64,
        tenant_header: "X-Tenant-ID".into(),
        user_header: "X-User-ID".into(),
        tenants: vec![TenantLoad {
            tenant: "acme".into(),
            rate: 20.0,
            users: 2,
            endpoints: vec![Endpoint {
                method: http::Method::GET,
                path: "/api/items".into(),
                weight: 1,
            }],
        }],
        stream_share: 0.0,
    };
    let report = loadgen::run(&plan).await.unwrap();
    let t = &report.tenants[0];
    assert_eq!(t.sent, 40);
    assert_eq!(t.ok, 10, "the per-tenant limit holds in process too");
    assert_eq!(t.throttled, 30);
}

/// `--stream`: half the completions ask for `"stream": true`; the demo answers those as
/// event streams (20 ms to the first token, then 31 more 10 ms apart), and the report
/// times their first and last byte, cache misses and hits apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answers_report_first_and_last_byte() {
    let app = tenant_guard_cli::demo::app(&Config::default()).unwrap();
    let plan = LoadPlan {
        target: Target::InProcess(app),
        duration: Duration::from_secs(2),
        max_in_flight: 64,
        tenant_header: "X-Tenant-ID".into(),
        user_header: "X-User-ID".into(),
        tenants: vec![TenantLoad {
            tenant: "acme".into(),
            rate: 10.0,
            users: 2,
            endpoints: vec![Endpoint {
                method: http::Method::POST,
                path: "/api/ai/complete".into(),
                weight: 1,
            }],
        }],
        stream_share: 0.5,
    };
    let report = loadgen::run(&plan).await.unwrap();
    let t = &report.tenants[0];
    assert_eq!((t.sent, t.ok), (20, 20));
    let (miss, hit) = (&t.streamed_miss, &t.streamed_hit);
    assert_eq!(
        miss.ttfb_us.len() + hit.ttfb_us.len(),
        10,
        "half were streamed"
    );
    assert!(!miss.ttfb_us.is_empty() && !hit.ttfb_us.is_empty());
    // The first miss waited for every token; a hit replays them at once.
    assert!(miss.ttlb_us.max() >= 300_000, "{}", miss.ttlb_us.max());
    assert!(miss.ttfb_us.max() >= 20_000, "{}", miss.ttfb_us.max());
    assert!(miss.ttfb_us.min() < miss.ttlb_us.max());
    // Every answer, streamed or not, reported its usage.
    assert_eq!(t.tokens.len(), 20);
    let table = report.stream_table();
    assert!(table.starts_with("streamed"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    let json = report.to_json(None);
    assert_eq!(
        json["tenants"][0]["streamed"]["hit"]["answers"],
        hit.ttfb_us.len()
    );
}

#[test]
fn demo_command_runs_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("demo.svg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args(["demo", "--duration", "3s", "--chart"])
        .arg(&chart)
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("memory backend"), "{stdout}");
    for t in ["calm", "steady", "flood"] {
        assert!(stdout.contains(t), "{stdout}");
    }
    assert!(
        stdout.contains("every tenant held to at most 50 admissions"),
        "{stdout}"
    );
    // Rows per rule: the 429s each rule sent, and the units admitted per window, checked.
    assert!(
        stdout.contains("rule `per-tenant` (50/5s): 429 x"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule `ai` (5/5s per user, POST /api/ai/complete)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every rule held in every window, counted in units"),
        "{stdout}"
    );
    // Sessions and caching show in the demo too.
    assert!(
        stdout.contains("each cookie reaches its tenant's session and no other: yes"),
        "{stdout}"
    );
    let cache = stdout
        .lines()
        .find(|l| l.starts_with("cache: "))
        .unwrap_or("");
    let hits: u64 = cache
        .trim_start_matches("cache: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(hits > 0, "no cache hits in the demo: {stdout}");
}

/// The demo's client-side checks are the effective configuration's rules and costs: with a
/// per-tenant limit and an AI cost from the environment (which win over the demo's own),
/// those are what the table checks, and every rule holds.
#[test]
fn demo_checks_the_rules_the_environment_sets() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args(["demo", "--duration", "3s", "--chart"])
        .arg(dir.path().join("demo.svg"))
        .env_clear()
        .env("RATE_LIMIT_TENANT", "100/5s")
        .env("RATE_LIMIT_COSTS", "POST /api/ai/complete = 2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("per-tenant limit 100/5s"), "{stdout}");
    assert!(stdout.contains("AI completions cost 2"), "{stdout}");
    assert!(
        stdout.contains("rule `per-tenant` (100/5s): 429 x"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule `ai` (5/5s per user, POST /api/ai/complete)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every tenant held to at most 100 admissions"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every rule held in every window, counted in units"),
        "{stdout}"
    );
    assert!(!stdout.contains("EXCEEDED"), "{stdout}");
}

#[test]
fn scenario_file_in_process() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args(["load", "--in-process", "--duration", "2s", "--scenario"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/scenario-demo.json"
        ))
        .env_clear()
        .env("RATE_LIMIT_TENANT", "50/5s")
        .env("RATE_LIMIT_USER_HEADER", "X-User-ID")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in ["calm", "steady", "flood"] {
        assert!(stdout.contains(t), "{stdout}");
    }
    assert!(
        stdout.contains("max/5s"),
        "the scenario's limit is used: {stdout}"
    );
}

#[test]
fn bad_scenario_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{ "tenants": [ { "tenant": "a*b", "rate": 5, "endpoints": [ "GET /x" ] } ] }"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args(["load", "--in-process", "--scenario"])
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tenant `a*b`"), "{err}");
}

/// A scenario in the former object form names the string to write instead.
#[test]
fn old_scenario_endpoints_name_the_new_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.json");
    std::fs::write(
        &path,
        r#"{ "tenants": [ { "tenant": "acme", "rate": 5,
             "endpoints": [ { "method": "POST", "path": "/api/ai/complete", "weight": 2 } ] } ] }"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args(["load", "--in-process", "--scenario"])
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"is the old form; write "POST /api/ai/complete = 2""#),
        "{err}"
    );
}
