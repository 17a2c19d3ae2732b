//! Token budgets on every backend (memory, a single Redis node, the 3-master cluster):
//! reservations all or none, settled with the usage the response reports (JSON `usage`, a
//! streamed event's, the `X-Usage-Tokens` header), refunded on error, abort and cache hit,
//! charged beyond the estimate, and windows that never pass the limit while estimates cover
//! the usage — across three instances sharing Redis.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
use tenant_guard::tenant::{Identity, TenantLayer, TenantResolver};
use tenant_guard::tokens::{TokenBudget, TokenLayer, estimate};
use tokio::sync::Notify;
use tower::ServiceExt;

use common::Target as Kind;

const RULE: &str = "user: POST /ai/{mode} = 1000/1m";

/// The model: answers `use` tokens as its body asks — as JSON `usage`, as a header, as the
/// last of a stream of events, or fails; `gate` holds a streamed answer open.
async fn model(gate: Arc<Notify>, body: Bytes) -> Response {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let used = v["use"].as_u64().unwrap_or(0);
    let flag = |k: &str| v[k].as_bool() == Some(true);
    if flag("fail") {
        return (StatusCode::BAD_GATEWAY, "model failed").into_response();
    }
    if flag("header") {
        return (
            [("x-usage-tokens", used.to_string())],
            "no usage in the body",
        )
            .into_response();
    }
    if flag("hit") {
        // As a CacheLayer answers: the status rides along as a response extension.
        let json = format!(r#"{{"usage":{{"total_tokens":{used}}}}}"#);
        let mut res = ([("x-cache", "HIT"), JSON], json).into_response();
        res.extensions_mut()
            .insert(tenant_guard::cache::CacheStatus::HitL2);
        return res;
    }
    if flag("forged_hit") {
        // Only a header: an upstream cache's, or a handler's, which nothing vouches for.
        let json = format!(r#"{{"usage":{{"total_tokens":{used}}}}}"#);
        return ([("x-cache", "HIT"), JSON], json).into_response();
    }
    if flag("invalid") {
        // An error that echoes the request, usage-shaped parts included.
        let echo = String::from_utf8_lossy(&body).into_owned();
        let json = format!(r#"{{"error":"invalid","input":{echo}}}"#);
        return (StatusCode::UNPROCESSABLE_ENTITY, [JSON], json).into_response();
    }
    if flag("slow") {
        gate.notified().await;
    }
    if flag("echo") {
        // Plain text that repeats what the client sent, usage text included.
        return String::from_utf8_lossy(&body).into_owned().into_response();
    }
    if flag("stream") || flag("hold") {
        let hold = flag("hold");
        let events = async_stream(gate, used, hold);
        return (
            [("content-type", "text/event-stream")],
            Body::from_stream(events),
        )
            .into_response();
    }
    let json = format!(r#"{{"id":"x","usage":{{"prompt_tokens":1,"total_tokens":{used}}}}}"#);
    ([JSON], json).into_response()
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// Three token events, then (unless `hold`: then the stream waits on `gate` forever) the
/// usage and `[DONE]`.
fn async_stream(
    gate: Arc<Notify>,
    used: u64,
    hold: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let first = futures_util::stream::iter(
        ["a", "b", "c"].map(|t| Ok(Bytes::from(format!("data: {{\"text\":\"{t}\"}}\n\n")))),
    );
    let rest = futures_util::stream::once(async move {
        if hold {
            gate.notified().await;
        }
        Ok(Bytes::from(format!(
            "data: {{\"usage\":{{\"total_tokens\":{used}}}}}\n\ndata: [DONE]\n\n"
        )))
    });
    futures_util::StreamExt::chain(first, rest)
}

/// An app instance: tenant -> rate limit (huge, for its identity) -> token budgets -> model.
fn instance(vars: &[(String, String)], gate: Arc<Notify>) -> (Router, Metrics) {
    let mut all = vars.to_vec();
    all.push(("RATE_LIMIT_MAX".into(), "1000000".into()));
    all.push(("RATE_LIMIT_USER_HEADER".into(), "x-user".into()));
    all.push(("RATE_LIMIT_TOKENS".into(), RULE.into()));
    let config = Config::from_vars(all).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).expect("backend");
    let limiter = RateLimiter::from_config(&config, backend.clone(), &metrics);
    let budget = TokenBudget::from_config(&config, backend, &metrics).expect("budgets");
    let handler = move |body: Bytes| model(gate.clone(), body);
    let app = Router::new()
        .route("/ai/{mode}", post(handler))
        .layer(TokenLayer::new(budget))
        .layer(RateLimitLayer::from_config(&config, limiter))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    (app, metrics)
}

/// Three instances on Redis (they share the budgets); one on memory.
fn instances(
    kind: Kind,
    gate: &Arc<Notify>,
) -> (Vec<(Router, Metrics)>, Option<common::RedisServer>) {
    let (all, server) = common::target_vars(kind, &[]);
    let n = if kind == Kind::Memory { 1 } else { 3 };
    (
        (0..n).map(|_| instance(&all, gate.clone())).collect(),
        server,
    )
}

fn ask(tenant: &str, user: &str, body: &str) -> Request<Body> {
    Request::post("/ai/complete")
        .header("x-tenant-id", tenant)
        .header("x-user", user)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// The tokens a budget has left after a response, from its `RateLimit` field.
fn tokens_left(res: &Response) -> Option<u64> {
    let v = res
        .headers()
        .get_all("ratelimit")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("\"tokens-user\""))?;
    let r = v.split(';').find_map(|p| p.strip_prefix("r="))?;
    r.parse().ok()
}

struct Answer {
    status: StatusCode,
    left: Option<u64>,
    body: String,
}

async fn send(app: &Router, tenant: &str, user: &str, body: &str) -> Answer {
    let res = app.clone().oneshot(ask(tenant, user, body)).await.unwrap();
    let (status, left) = (res.status(), tokens_left(&res));
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        left,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A request asking for `max` completion tokens, whose answer reports `used` (the extra
/// fields say how); and the tokens it reserves.
fn body(max: u64, used: u64, extra: &str) -> (String, u64) {
    let b = format!(r#"{{"prompt":"hello","max_tokens":{max},"use":{used}{extra}}}"#);
    let e = u64::from(estimate(b.as_bytes(), 256).unwrap());
    (b, e)
}

/// Waits (bounded) until a request reserving `want` fits again for `user`.
async fn fits_soon(app: &Router, tenant: &str, user: &str, want: u64) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (b, _) = body(want.saturating_sub(30), 0, "");
        let a = send(app, tenant, user, &b).await;
        if a.status == StatusCode::OK {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "never fits again: {} {}",
            a.status,
            a.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

mod checks {
    use super::*;

    /// Sequential requests reserving `e` and using 40 each: the budget admits exactly as
    /// many as fit when each settles at 40 (refunds work), and the next is refused with
    /// 429 problem+json naming the budget.
    pub(super) async fn refunds_admit_exactly_what_fits(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &gate);
        let t = common::unique_tenant("tok");
        let (b, e) = body(80, 40, "");
        // Admitted while 40 per earlier request + e <= 1000.
        let expected = (1000 - e) / 40 + 1;
        let mut admitted = 0;
        for i in 0.. {
            let a = send(&apps[i % apps.len()].0, t.as_str(), "ann", &b).await;
            if a.status != StatusCode::OK {
                assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
                assert!(a.body.contains("tokens-user"), "{}", a.body);
                break;
            }
            admitted += 1;
            assert_eq!(
                a.left,
                Some(1000 - (admitted - 1) * 40 - e),
                "request {admitted}"
            );
        }
        assert_eq!(admitted, expected);
        // Another user of the tenant has a budget of their own.
        assert_eq!(
            send(&apps[0].0, t.as_str(), "bob", &b).await.status,
            StatusCode::OK
        );
    }

    /// 60 requests at once over the instances, each reserving `e` and using 40 while its
    /// answer is held: the sum of what admitted requests used never passes the limit.
    pub(super) async fn concurrent_requests_never_pass_the_limit(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &gate);
        let t = common::unique_tenant("tok");
        let (b, e) = body(200, 150, r#","stream":true"#);
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let app = apps[i % apps.len()].0.clone();
                let (t, b) = (t.as_str().to_owned(), b.clone());
                tokio::spawn(async move { send(&app, &t, "ann", &b).await.status })
            })
            .collect();
        let mut ok = 0u64;
        for task in tasks {
            let s = task.await.unwrap();
            assert!(
                s == StatusCode::OK || s == StatusCode::TOO_MANY_REQUESTS,
                "{s}"
            );
            ok += u64::from(s == StatusCode::OK);
        }
        assert!(ok * 150 <= 1000, "{ok} admitted, each using 150");
        assert!(ok >= 1000 / e, "only {ok} admitted (each reserving {e})");
    }

    /// A failed answer, a cache hit and a stream the client drops give the reservation
    /// back; a streamed answer's last event and the usage header settle it.
    pub(super) async fn failures_refund_and_reports_settle(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &gate);
        let app = &apps[0].0;
        let t = common::unique_tenant("tok");
        let t = t.as_str();
        let (fail, e) = body(100, 0, r#","fail":true"#);
        let a = send(app, t, "ann", &fail).await;
        assert_eq!(
            (a.status, a.left),
            (StatusCode::BAD_GATEWAY, Some(1000 - e))
        );
        // Refunded: the next reservation sees the whole budget.
        let (hit, e2) = body(100, 500, r#","hit":true"#);
        let a = send(app, t, "ann", &hit).await;
        assert_eq!((a.status, a.left), (StatusCode::OK, Some(1000 - e2)));
        let (streamed, e3) = body(100, 70, r#","stream":true"#);
        let a = send(app, t, "ann", &streamed).await;
        assert_eq!(a.left, Some(1000 - e3), "the cache hit was free");
        assert!(a.body.starts_with("data: {\"text\":\"a\"}") && a.body.ends_with("[DONE]\n\n"));
        let (header, e4) = body(100, 30, r#","header":true"#);
        let a = send(app, t, "ann", &header).await;
        assert_eq!(
            a.left,
            Some(1000 - 70 - e4),
            "the stream settled at its usage"
        );
        // A client that goes away before any of the answer: refunded.
        let (held, e5) = body(100, 90, r#","hold":true"#);
        let res = app.clone().oneshot(ask(t, "ann", &held)).await.unwrap();
        assert_eq!(
            tokens_left(&res),
            Some(1000 - 70 - 30 - e5),
            "the header settled"
        );
        drop(res);
        fits_soon(app, t, "ann", 1000 - 70 - 30).await;
        // One that leaves after some of the answer, before the usage event: it got an
        // answer, so it pays the estimate (leaving early is no way to get one for free).
        let res = app.clone().oneshot(ask(t, "ann", &held)).await.unwrap();
        let mut res_body = res.into_body();
        let first = res_body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(res_body);
        let (small, e6) = body(10, 0, "");
        let a = send(app, t, "ann", &small).await;
        assert_eq!(
            a.left,
            Some(1000 - 70 - 30 - e5 - e6),
            "the aborted stream kept its estimate"
        );
    }

    /// Usage is read from JSON and event-stream bodies only: a plain-text answer that echoes
    /// the client's own `"total_tokens": 0` is settled at the estimate, not refunded.
    pub(super) async fn echoed_usage_text_is_not_believed(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &gate);
        let app = &apps[0].0;
        let t = common::unique_tenant("tok");
        let t = t.as_str();
        let (echo, e) = body(100, 0, r#","echo":true,"note":{"total_tokens": 0}"#);
        let a = send(app, t, "ann", &echo).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body.contains(r#""total_tokens": 0"#), "{}", a.body);
        let (small, e2) = body(10, 0, "");
        let a = send(app, t, "ann", &small).await;
        assert_eq!(
            a.left,
            Some(1000 - e - e2),
            "the echo was charged its estimate"
        );
    }

    /// An `X-Cache: HIT` header alone (an upstream's cache, a handler) is no proof of a
    /// cache hit: charged as usual. An error's body is not read for usage: one that echoes
    /// a made-up `usage` of 99999999999 tokens charges nothing.
    pub(super) async fn forged_hits_and_error_echoes_pay_as_usual(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &gate);
        let app = &apps[0].0;
        let t = common::unique_tenant("tok");
        let t = t.as_str();
        let (forged, _) = body(100, 100, r#","forged_hit":true"#);
        assert_eq!(send(app, t, "ann", &forged).await.status, StatusCode::OK);
        let (small, e2) = body(10, 0, "");
        let a = send(app, t, "ann", &small).await;
        assert_eq!(a.left, Some(1000 - 100 - e2), "the forged hit was charged");
        let (invalid, _) = body(
            10,
            0,
            r#","invalid":true,"x":{"usage":{"total_tokens":99999999999}}"#,
        );
        let a = send(app, t, "bob", &invalid).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
        let a = send(app, t, "bob", &small).await;
        assert_eq!(a.left, Some(1000 - e2), "the echoed usage was not believed");
    }

    /// A completion limit the upstream might read differently (given twice, as a string)
    /// is refused with 400, a compressed body with 415: nothing is reserved for either.
    pub(super) async fn unreadable_limits_and_compressed_bodies_are_refused(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &gate);
        let app = &apps[0].0;
        let t = common::unique_tenant("tok");
        let t = t.as_str();
        for bad in [
            r#"{"prompt":"x","max_tokens":1,"max_tokens":100000}"#,
            r#"{"prompt":"x","max_tokens":"100000"}"#,
        ] {
            let a = send(app, t, "ann", bad).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.body);
            assert!(a.body.contains("max_tokens"), "{}", a.body);
        }
        let (b, _) = body(10, 0, "");
        let mut req = ask(t, "ann", &b);
        req.headers_mut()
            .insert("content-encoding", http::HeaderValue::from_static("gzip"));
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (small, e) = body(10, 0, "");
        assert_eq!(send(app, t, "ann", &small).await.left, Some(1000 - e));
    }

    /// A client that goes away while the model works (before the answer's first byte) still
    /// pays the estimate: the upstream spent it.
    pub(super) async fn a_client_gone_while_the_model_works_pays_the_estimate(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &gate);
        let app = &apps[0].0;
        let t = common::unique_tenant("tok");
        let t = t.as_str();
        let (slow, e) = body(100, 0, r#","slow":true"#);
        let call = app.clone().oneshot(ask(t, "ann", &slow));
        let gone = tokio::time::timeout(Duration::from_millis(200), call).await;
        assert!(gone.is_err(), "the model answered");
        let (small, e2) = body(10, 0, "");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let a = send(app, t, "ann", &small).await;
            if a.left == Some(1000 - e - e2) {
                break;
            }
            assert!(Instant::now() < deadline, "left {:?}", a.left);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Settlements far beyond any limit neither panic nor wrap a counter: the budget stays
    /// spent.
    pub(super) async fn huge_settlements_saturate(kind: Kind) {
        let (vars, _server) = common::target_vars(
            kind,
            &[("RATE_LIMIT_TOKENS", "user: POST /ai/{mode} = 3000000000/1m")],
        );
        let config = Config::from_vars(vars).unwrap();
        let metrics = Metrics::new();
        let budget = TokenBudget::from_config(
            &config,
            Backend::from_config(&config, &metrics).unwrap(),
            &metrics,
        )
        .unwrap();
        let t = common::unique_tenant("tok");
        let (ann, post) = (Identity::User("ann".into()), http::Method::POST);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                budget
                    .reserve(&t, &ann, &post, "/ai/{mode}", 1)
                    .await
                    .unwrap(),
            );
        }
        for r in held {
            r.settle(u64::MAX).await.unwrap();
        }
        assert!(
            budget
                .reserve(&t, &ann, &post, "/ai/{mode}", 1)
                .await
                .is_err()
        );
        assert!(
            metrics
                .render()
                .contains("tenant_guard_tokens_used_total 12884901885")
        );
    }

    /// A response that uses more than its reservation is charged the excess (and it is
    /// reported); a request that can never fit, or whose body is too large, is refused.
    pub(super) async fn overshoot_is_charged_and_bad_requests_refused(kind: Kind) {
        let gate = Arc::new(Notify::new());
        let (apps, _server) = instances(kind, &gate);
        let (app, metrics) = &apps[0];
        let t = common::unique_tenant("tok");
        let t = t.as_str();
        let (over, e) = body(10, 300, "");
        assert_eq!(send(app, t, "ann", &over).await.status, StatusCode::OK);
        let (small, e2) = body(10, 0, "");
        let a = send(app, t, "ann", &small).await;
        assert_eq!(
            a.left,
            Some(1000 - 300 - e2),
            "the excess over {e} was charged"
        );
        let excess = 300 - e;
        assert!(
            metrics
                .render()
                .contains(&format!("tenant_guard_tokens_overshoot_total {excess}")),
            "{}",
            metrics.render()
        );
        let (never, _) = body(5000, 0, "");
        let a = send(app, t, "ann", &never).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(a.body.contains("can never fit"), "{}", a.body);
        let huge = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(2 << 20));
        let a = send(app, t, "ann", &huge).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
        // Nothing of the refused requests was kept.
        let a = send(app, t, "ann", &small).await;
        assert_eq!(
            a.left,
            Some(1000 - 300 - e2),
            "refused requests reserved nothing"
        );
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Memory).await } )*
        }
        mod redis_single {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Redis).await } )*
        }
        mod redis_cluster {
            $( #[tokio::test(flavor = "multi_thread")] async fn $check() { super::checks::$check(super::Kind::Cluster).await } )*
        }
    };
}

conformance!(
    refunds_admit_exactly_what_fits,
    concurrent_requests_never_pass_the_limit,
    failures_refund_and_reports_settle,
    overshoot_is_charged_and_bad_requests_refused,
    echoed_usage_text_is_not_believed,
    forged_hits_and_error_echoes_pay_as_usual,
    unreadable_limits_and_compressed_bodies_are_refused,
    a_client_gone_while_the_model_works_pays_the_estimate,
    huge_settlements_saturate,
);
