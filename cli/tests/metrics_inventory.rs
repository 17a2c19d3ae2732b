//! Every metric the demo app exports, with its type and label names, against the list
//! below: a metric added, renamed or given a new label fails this test until the list (and
//! the README's metrics table) says so. Before reading `/metrics`, the app is driven with
//! what a hostile client varies — invented tenants, users, paths, models and cookies,
//! refused requests — and every label must keep a small, fixed set of values: no label
//! grows with what clients send (Prometheus conventions: `_total` counters, units in the
//! names of histograms, bounded labels).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Body;
use tower::ServiceExt;

use tenant_guard::config::Config;

/// (family, OpenMetrics type, label names) of every exported metric.
const INVENTORY: &[(&str, &str, &[&str])] = &[
    ("tenant_guard_backend", "gauge", &["backend"]),
    (
        "tenant_guard_cache_events",
        "counter",
        &["category", "event"],
    ),
    ("tenant_guard_concurrency_in_flight", "gauge", &[]),
    (
        "tenant_guard_ratelimit_decisions",
        "counter",
        &["outcome", "source"],
    ),
    ("tenant_guard_ratelimit_denied", "counter", &["rule"]),
    ("tenant_guard_ratelimit_deny_cache_evicted", "counter", &[]),
    ("tenant_guard_ratelimit_lease_reserved", "counter", &[]),
    ("tenant_guard_ratelimit_lease_returned", "counter", &[]),
    (
        "tenant_guard_ratelimit_memory_overflow",
        "counter",
        &["rule"],
    ),
    ("tenant_guard_redis_circuit_open", "gauge", &[]),
    ("tenant_guard_redis_circuit_opened", "counter", &[]),
    (
        "tenant_guard_redis_command_duration_seconds",
        "histogram",
        &["op"],
    ),
    ("tenant_guard_session_events", "counter", &["event"]),
    ("tenant_guard_tokens_overshoot", "counter", &[]),
    ("tenant_guard_tokens_refunded", "counter", &[]),
    ("tenant_guard_tokens_reserved", "counter", &[]),
    ("tenant_guard_tokens_settle_failed", "counter", &[]),
    ("tenant_guard_tokens_used", "counter", &[]),
];

/// Registered too, but shown only once they have a sample, which this traffic does not
/// give (Redis errors and refusals by an open breaker, shadow rules, concurrency caps):
/// (family, type, label names) from their label types in `src/metrics/mod.rs`.
const SAMPLED_ON_FAULTS: &[(&str, &str, &[&str])] = &[
    ("tenant_guard_concurrency_denied", "counter", &["scope"]),
    ("tenant_guard_ratelimit_shadow_denied", "counter", &["rule"]),
    ("tenant_guard_redis_command_errors", "counter", &["op"]),
    ("tenant_guard_redis_short_circuited", "counter", &["op"]),
];

/// Most values any one label may take after the traffic below (which invents hundreds of
/// tenants, users, paths and models).
const MAX_VALUES_PER_LABEL: usize = 16;

async fn send(app: &Router, req: http::Request<Body>) -> (u16, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A family of the exposition with its type and the values each label took.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// Families of an OpenMetrics text: `# TYPE` lines name them; each sample is given to
/// the family whose name is the longest prefix of its own (`_total`, `_bucket`, ...).
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a TYPE line names a type");
            out.entry(name.to_string()).or_default().kind = kind.to_string();
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).expect("a sample has a value");
        let name = &line[..name_end];
        let family = out
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .cloned()
            .unwrap_or_else(|| panic!("sample {name} outside any TYPE"));
        let Some(labels) = line[name_end..]
            .strip_prefix('{')
            .and_then(|l| l.split_once('}'))
            .map(|(l, _)| l)
        else {
            continue;
        };
        // Label values never hold `",` here (they are fixed names): split on it.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
            if key == "le" {
                // A histogram's bucket bound, not a label of the metric.
                continue;
            }
            out.get_mut(&family)
                .unwrap()
                .labels
                .entry(key.to_string())
                .or_default()
                .insert(value.trim_end_matches('"').to_string());
        }
    }
    out
}

/// The demo app on `config` driven with what hostile clients vary; its `/metrics` text.
async fn driven_metrics(vars: Vec<(&'static str, String)>) -> String {
    let mut all = vec![
        ("RATE_LIMIT_TENANT", "6/1m".to_string()),
        ("SESSION_COOKIE_SECURE", "false".to_string()),
        ("DEMO_MODEL_LATENCY", "0ms".to_string()),
    ];
    all.extend(vars);
    let config = Config::from_vars(all).unwrap();
    let app = tenant_guard_cli::demo::app(&config).unwrap();
    for i in 0..300 {
        let tenant = format!("zz-tenant-{i}");
        let get = |path: String, cookie: Option<&str>| {
            let mut b = http::Request::get(path).header("x-tenant-id", tenant.as_str());
            if let Some(c) = cookie {
                b = b.header("cookie", c);
            }
            b.body(Body::empty()).unwrap()
        };
        // A login of an invented user, and an AI completion naming an invented model.
        let login = http::Request::post("/login")
            .header("x-tenant-id", tenant.as_str())
            .header("content-type", "application/json")
            .body(Body::from(format!(r#"{{"user": "zz-user-{i}"}}"#)))
            .unwrap();
        send(&app, login).await;
        let complete = http::Request::post("/api/ai/complete")
            .header("x-tenant-id", tenant.as_str())
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"model": "zz-model-{i}", "prompt": "hi", "max_tokens": 8}}"#
            )))
            .unwrap();
        send(&app, complete).await;
        // Cached, unmatched, forged-cookie and plain requests, the last ones refused
        // (past 6 per minute).
        send(
            &app,
            get(format!("/api/reports/2020-01-{:02}", i % 28 + 1), None),
        )
        .await;
        send(&app, get(format!("/zz-path-{i}/x"), None)).await;
        send(
            &app,
            get("/me".into(), Some(&format!("tg_session=zz-cookie-{i}"))),
        )
        .await;
        for _ in 0..3 {
            send(&app, get("/api/items".into(), None)).await;
        }
    }
    // A request without a tenant (400).
    send(
        &app,
        http::Request::get("/api/items")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let (status, text) = send(
        &app,
        http::Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !text.contains("zz-"),
        "a client's value in /metrics:\n{text}"
    );
    text
}

/// On the memory backend and on a Redis node this test starts: together they export every
/// metric (the Redis ones only with Redis).
#[tokio::test]
async fn every_metric_is_listed_with_bounded_labels() {
    let server = common::RedisServer::start();
    let memory = driven_metrics(vec![]).await;
    let redis = driven_metrics(vec![("REDIS_URL", server.url())]).await;
    let mut found = families(&memory);
    for (name, family) in families(&redis) {
        let entry = found.entry(name).or_default();
        entry.kind = family.kind;
        for (label, values) in family.labels {
            entry.labels.entry(label).or_default().extend(values);
        }
    }
    let text = format!("{memory}\n{redis}");

    let mut listed = BTreeMap::new();
    for (name, kind, labels) in INVENTORY {
        listed.insert(name.to_string(), (kind.to_string(), labels.to_vec()));
    }
    let mut missing_from_list = Vec::new();
    for (name, family) in &found {
        let labels: Vec<&str> = family.labels.keys().map(String::as_str).collect();
        match listed.get(name) {
            None => missing_from_list.push(format!(
                "    (\"{name}\", \"{}\", &{labels:?}),",
                family.kind
            )),
            Some((kind, want)) => {
                assert_eq!(&family.kind, kind, "{name}: type");
                // A family with no sample yet shows no labels.
                if !labels.is_empty() {
                    assert_eq!(&labels, want, "{name}: label names");
                }
            }
        }
        assert!(name.starts_with("tenant_guard_"), "{name}: not prefixed");
        match family.kind.as_str() {
            "histogram" => assert!(
                name.ends_with("_seconds"),
                "{name}: a histogram names its unit"
            ),
            "counter" => assert!(
                text.contains(&format!("{name}_total")),
                "{name}: counter samples end in _total"
            ),
            _ => {}
        }
        for (label, values) in &family.labels {
            assert!(
                !["tenant", "tenant_id", "user", "user_id", "id", "path", "ip"]
                    .contains(&label.as_str()),
                "{name}: a label named {label} would grow with clients"
            );
            assert!(
                values.len() <= MAX_VALUES_PER_LABEL,
                "{name}: label {label} took {} values: {values:?}",
                values.len()
            );
        }
    }
    assert!(
        missing_from_list.is_empty(),
        "metrics exported but not in INVENTORY (add them, and to the README):\n{}",
        missing_from_list.join("\n")
    );
    for name in listed.keys() {
        assert!(
            found.contains_key(name),
            "{name} is listed but not exported"
        );
    }
}

/// Every family the library registers (`Metrics::families`, with a sample yet or not, and
/// `metrics.register("name", ..)` by components in `src/`) is in one of the two lists: a
/// new metric cannot skip the inventory by having no sample here.
#[test]
fn every_registered_name_is_listed() {
    let mut registered: BTreeSet<String> = tenant_guard::metrics::Metrics::new()
        .families()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                // Components registering through `Metrics::register`; comment lines (doc
                // examples register `example_*` names of their own) are left out.
                let text: String = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .map(|line| format!("{line}\n"))
                    .collect();
                for part in text.split("metrics.register(").skip(1) {
                    if let Some(name) = part.trim_start().strip_prefix('"') {
                        let name = name.split('"').next().unwrap();
                        registered.insert(format!("tenant_guard_{name}"));
                    }
                }
            }
        }
    }
    assert!(registered.len() >= 15, "found only {registered:?}");
    let listed: BTreeSet<String> = INVENTORY
        .iter()
        .chain(SAMPLED_ON_FAULTS)
        .map(|(n, _, _)| n.to_string())
        .collect();
    assert_eq!(registered, listed, "registered metrics against the lists");
}
