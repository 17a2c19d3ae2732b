//! Redis outages against real servers: lazy connect, kill and restart, a hung (SIGSTOPped)
//! server, script reload after SCRIPT FLUSH, and the ops routes that report all of it.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use tenant_guard::backend::{Backend, BackendError, BreakerState};
use tenant_guard::config::Config;
use tenant_guard::keys::{KeyKind, Keys, hash_slot};
use tenant_guard::metrics::Metrics;
use tenant_guard::ops;

fn backend(vars: &[(&str, &str)]) -> (Backend, Metrics) {
    let config = Config::from_vars(vars.iter().copied()).expect("config");
    let metrics = Metrics::new();
    (
        Backend::from_config(&config, &metrics).expect("backend"),
        metrics,
    )
}

async fn get(app: &Router, path: &str) -> (StatusCode, serde_json::Value) {
    let res = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Polls readiness until it has the wanted status; returns how many polls that took.
async fn poll_ready(app: &Router, want: StatusCode, limit: Duration) -> (u32, Vec<Duration>) {
    let start = Instant::now();
    let mut polls = 0;
    let mut took = Vec::new();
    loop {
        let t = Instant::now();
        let (status, _) = get(app, "/health/ready").await;
        took.push(t.elapsed());
        polls += 1;
        if status == want {
            return (polls, took);
        }
        assert!(
            start.elapsed() < limit,
            "/health/ready still not {want} after {limit:?} ({polls} polls)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn app_starts_while_redis_is_down_and_connects_when_it_appears() {
    let port = common::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let (backend, metrics) = backend(&[
        ("REDIS_URL", &url),
        ("REDIS_COMMAND_TIMEOUT", "300ms"),
        ("TG_BREAKER_PROBE_INTERVAL", "50ms"),
    ]);
    let app = ops::router(backend.clone(), metrics);
    let key = Keys::default().cache(&common::unique_tenant("lazy"), "c", "1");
    assert!(backend.get(&key).await.unwrap_err().is_outage());
    let (status, body) = get(&app, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let _server = common::RedisServer::start_on(port);
    poll_ready(&app, StatusCode::OK, Duration::from_secs(15)).await;
    backend.set(&key, b"v", None).await.unwrap();
    assert_eq!(backend.get(&key).await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn readiness_follows_a_killed_and_restarted_server() {
    let mut server = common::RedisServer::start();
    let (backend, metrics) = backend(&[
        ("REDIS_URL", &server.url()),
        ("REDIS_COMMAND_TIMEOUT", "500ms"),
        ("TG_BREAKER_PROBE_INTERVAL", "100ms"),
    ]);
    let app = ops::router(backend.clone(), metrics.clone());
    let (status, body) = get(&app, "/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["redis_latency_ms"].as_f64().is_some(), "{body}");

    server.kill();
    let (_, took) = poll_ready(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;
    // Keep polling until the breaker opens; from then on 503 comes without touching Redis.
    let health = backend.health().unwrap().clone();
    for _ in 0..20 {
        if health.state() == BreakerState::Open {
            break;
        }
        let (status, _) = get(&app, "/health/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(health.state(), BreakerState::Open);
    let mut open_times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let (status, body) = get(&app, "/health/ready").await;
        open_times.push(t.elapsed());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["breaker"], "open", "{body}");
    }
    let key = Keys::default().cache(&common::unique_tenant("k"), "c", "1");
    assert!(matches!(
        backend.get(&key).await,
        Err(BackendError::Unavailable(_))
    ));
    // Figures for the README (not asserted: timings stay out of assertions).
    eprintln!(
        "first 503 after kill: {:?}; 503 with breaker open: max {:?} over {} polls",
        took.last().unwrap(),
        open_times.iter().max().unwrap(),
        open_times.len()
    );

    let (_, body) = get(&app, "/cache/status").await;
    assert_eq!(body["state"], "degraded", "{body}");
    assert_eq!(body["redis"]["breaker"], "open", "{body}");

    let restarted = Instant::now();
    server.restart();
    poll_ready(&app, StatusCode::OK, Duration::from_secs(15)).await;
    eprintln!("ready again {:?} after restart", restarted.elapsed());
    assert_eq!(health.state(), BreakerState::Closed);
    backend.set(&key, b"back", None).await.unwrap();

    let text = metrics.render();
    assert!(
        text.contains("tenant_guard_redis_circuit_opened_total 1"),
        "{text}"
    );
    assert!(text.contains("tenant_guard_redis_circuit_open 0"), "{text}");
    assert!(
        text.contains("tenant_guard_redis_short_circuited_total{op=\"get\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_hung_server_costs_the_command_timeout_then_nothing() {
    let server = common::RedisServer::start();
    let (backend, _) = backend(&[
        ("REDIS_URL", &server.url()),
        ("REDIS_COMMAND_TIMEOUT", "200ms"),
        ("TG_BREAKER_THRESHOLD", "2"),
        ("TG_BREAKER_PROBE_INTERVAL", "100ms"),
    ]);
    let key = Keys::default().cache(&common::unique_tenant("hung"), "c", "1");
    backend.set(&key, b"v", None).await.unwrap();

    server.pause();
    for _ in 0..2 {
        let err = backend.get(&key).await.unwrap_err();
        assert!(matches!(err, BackendError::Timeout(_)), "{err}");
    }
    assert_eq!(backend.health().unwrap().state(), BreakerState::Open);
    assert!(matches!(
        backend.get(&key).await,
        Err(BackendError::Unavailable(_))
    ));

    server.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    while backend.health().unwrap().state() == BreakerState::Open {
        assert!(
            Instant::now() < deadline,
            "breaker did not close after resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backend.get(&key).await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn rejected_commands_do_not_trip_the_breaker() {
    let server = common::RedisServer::start();
    let (backend, _) = backend(&[("REDIS_URL", &server.url()), ("TG_BREAKER_THRESHOLD", "1")]);
    let t = common::unique_tenant("wrongtype");
    let key = Keys::default().cache(&t, "c", "1");
    server.cli(&["RPUSH", key.as_str(), "x"]);
    let err = backend.get(&key).await.unwrap_err();
    assert!(!err.is_outage(), "{err}");
    assert_eq!(backend.health().unwrap().state(), BreakerState::Closed);
}

#[tokio::test]
async fn scripts_are_reloaded_after_script_flush_single_node() {
    let server = common::RedisServer::start();
    let (backend, _) = backend(&[("REDIS_URL", &server.url())]);
    let key = Keys::default().key(KeyKind::Lock, &common::unique_tenant("s"), &["l"]);
    backend.set(&key, b"tok", None).await.unwrap();
    assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
    assert!(backend.delete_if_eq(&key, b"tok").await.unwrap());
}

#[tokio::test]
async fn scripts_are_reloaded_on_every_cluster_node() {
    let info = common::shared_cluster();
    let (backend, _) = backend(&[("REDIS_CLUSTER_NODES", &info.nodes_var)]);
    let keys = Keys::default();
    // Tenants spread over the nodes: run the script on keys of many slots.
    let tenants: Vec<_> = (0..12)
        .map(|i| common::unique_tenant(&format!("n{i}")))
        .collect();
    for p in &info.ports {
        assert_eq!(common::cli(*p, &["SCRIPT", "FLUSH"]), "OK");
    }
    for t in &tenants {
        let key = keys.key(KeyKind::Lock, t, &["l"]);
        backend.set(&key, b"tok", None).await.unwrap();
        assert!(backend.delete_if_eq(&key, b"tok").await.unwrap());
    }
    // NOSCRIPT made the client load the script on every primary.
    let sha = tenant_guard::backend::LuaScript::new(
        "compare_and_delete",
        include_str!("../lua/compare_and_delete.lua"),
    )
    .sha1()
    .to_string();
    for p in &info.ports {
        assert_eq!(
            common::cli(*p, &["SCRIPT", "EXISTS", &sha]),
            "1",
            "node {p}"
        );
    }
}

#[test]
fn key_slots_match_cluster_keyslot() {
    // CLUSTER KEYSLOT needs cluster mode.
    let port = common::shared_cluster().ports[0];
    let keys = Keys::default();
    let t = tenant_guard::tenant::TenantId::new("acme").unwrap();
    let samples = [
        keys.session(&t, "abc"),
        keys.cache(&t, "x}{y", "{z}"),
        keys.ratelimit(&t, "r", "ip", "::1", Some("GET /users/{id}")),
        keys.ai(&t, "model*", "h"),
    ];
    for k in samples {
        let reply = common::cli(port, &["CLUSTER", "KEYSLOT", k.as_str()]);
        let redis_slot: u16 = reply
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {k}: {reply}"));
        assert_eq!(k.slot(), redis_slot, "{k}");
        assert_eq!(k.slot(), hash_slot(b"acme"));
    }
}

#[tokio::test]
async fn ops_routes_report_redis() {
    let server = common::RedisServer::start();
    let (backend, metrics) = backend(&[("REDIS_URL", &server.url())]);
    let app = ops::router(backend.clone(), metrics);
    let key = Keys::default().cache(&common::unique_tenant("ops"), "c", "1");
    backend.set(&key, b"v", None).await.unwrap();
    backend.get(&key).await.unwrap();

    let (status, body) = get(&app, "/health").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = get(&app, "/cache/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["backend"], "redis", "{body}");
    assert_eq!(body["state"], "ok", "{body}");
    assert_eq!(body["keys"], 1, "{body}");
    assert!(!body.to_string().contains("password"));

    let res = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        text.contains("tenant_guard_redis_command_duration_seconds_count{op=\"get\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tenant_guard_backend{backend=\"redis\"} 1"),
        "{text}"
    );
}
