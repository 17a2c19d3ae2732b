//! Feature `otel`: the layers' spans and the metrics registry exported over OTLP/HTTP to a
//! collector this test runs on a loopback port, decoded from the protobuf it receives: a
//! throttled request's spans nested tenant > session > rate limit with the decision as
//! attributes, and the decision counters with their labels.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

use tenant_guard::TenantGuard;
use tenant_guard::otel::Otel;

type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An OTLP/HTTP collector on a free loopback port that keeps every body it is sent.
async fn collector() -> (String, Received) {
    let got: Received = Arc::default();
    let keep = |path: &'static str| {
        move |State(got): State<Received>, body: Bytes| async move {
            got.lock().unwrap().push((path.to_owned(), body));
            ""
        }
    };
    let app = Router::new()
        .route("/v1/traces", post(keep("traces")))
        .route("/v1/metrics", post(keep("metrics")))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_otlp_collector() {
    let (url, got) = collector().await;
    let otel = Arc::new(Otel::builder("tg-test").endpoint(&url).build().unwrap());
    // Exported before any family has a sample: a family is exported from its first one on.
    let metrics = tenant_guard::metrics::Metrics::new();
    otel.export_metrics(&metrics);
    let config = tenant_guard::config::Config::from_vars([
        ("REDIS_ENABLED", "false"),
        ("RATE_LIMIT_TENANT", "1/1m"),
    ])
    .unwrap();
    let guard = TenantGuard::builder()
        .config(config)
        .metrics(metrics)
        .build()
        .unwrap();
    let app: Router = Router::new()
        .route("/api/items", get(|| async { "items" }))
        .layer(guard.layer());
    {
        // Requests run on this thread (oneshot), so a thread-local subscriber sees them.
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(otel.layer()));
        for want in [200, 429] {
            let req = common::loopback_get(
                "/api/items",
                &[("x-tenant-id", "acme"), ("x-request-id", "req-7")],
            );
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), want);
        }
    }
    let flushing = otel.clone();
    tokio::task::spawn_blocking(move || flushing.flush())
        .await
        .unwrap()
        .unwrap();

    let bodies = got.lock().unwrap().clone();
    let spans: Vec<Span> = bodies
        .iter()
        .filter(|(p, _)| p == "traces")
        .flat_map(|(_, b)| {
            ExportTraceServiceRequest::decode(b.clone())
                .unwrap()
                .resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    let denied = spans
        .iter()
        .find(|s| {
            s.name == "tenant_guard.rate_limit" && attr(&s.attributes, "decision") == Some("denied")
        })
        .unwrap_or_else(|| panic!("no denied rate-limit span in {spans:#?}"));
    assert_eq!(attr(&denied.attributes, "rule"), Some("per-tenant"));
    let parent = |s: &Span| {
        spans
            .iter()
            .find(|p| p.span_id == s.parent_span_id)
            .unwrap()
    };
    let session = parent(denied);
    assert_eq!(session.name, "tenant_guard.session");
    let tenant = parent(session);
    assert_eq!(tenant.name, "tenant_guard.tenant");
    assert_eq!(attr(&tenant.attributes, "request_id"), Some("req-7"));
    assert_eq!(attr(&tenant.attributes, "tenant"), Some("acme"));
    assert_eq!(denied.trace_id, tenant.trace_id, "one trace per request");

    let metrics: Vec<_> = bodies
        .iter()
        .filter(|(p, _)| p == "metrics")
        .flat_map(|(_, b)| {
            ExportMetricsServiceRequest::decode(b.clone())
                .unwrap()
                .resource_metrics
        })
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .collect();
    let decisions = metrics
        .iter()
        .find(|m| m.name == "tenant_guard_ratelimit_decisions")
        .unwrap_or_else(|| {
            panic!(
                "no decisions counter in {:?}",
                metrics.iter().map(|m| &m.name).collect::<Vec<_>>()
            )
        });
    let Some(Data::Sum(sum)) = &decisions.data else {
        panic!("a counter is a monotonic sum: {decisions:?}");
    };
    assert!(sum.is_monotonic);
    let count = |outcome: &str| {
        sum.data_points
            .iter()
            .filter(|p| attr(&p.attributes, "outcome") == Some(outcome))
            .map(|p| match p.value {
                Some(
                    opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v),
                ) => v,
                _ => 0.0,
            })
            .sum::<f64>()
    };
    assert_eq!((count("allowed"), count("denied")), (1.0, 1.0));
    assert!(
        metrics
            .iter()
            .any(|m| m.name == "tenant_guard_backend_up" || matches!(m.data, Some(Data::Gauge(_))))
    );
    otel.shutdown();
    guard.shutdown().await;
}
