//! The AI gateway: single-flight, cache keys that ignore `stream` and key order, tenant
//! isolation, and the cost-weighted tenant limit.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn gateway(vars: &[(&str, &str)]) -> Router {
    let config =
        example_ai_gateway::config(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .unwrap();
    example_ai_gateway::app(&config).unwrap()
}

async fn send(
    app: &Router,
    tenant: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, String, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-tenant-id", tenant)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50000))));
    let res = app.clone().oneshot(req).await.unwrap();
    let x = res
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, x, String::from_utf8_lossy(&body).into_owned())
}

const PROMPT: &str =
    r#"{"model":"small","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_identical_requests_call_the_model_once() {
    let app = gateway(&[
        ("RATE_LIMIT_TENANT", "100000/1m"),
        (
            "RATE_LIMIT_CONCURRENCY_ENDPOINTS",
            "tenant: POST /v1/chat/completions = 1000",
        ),
        // Each waiting request holds its reservation until its answer has been sent (a hit
        // is refunded then): 100 at once reserve 100 estimates.
        (
            "RATE_LIMIT_TOKENS",
            "tenant: POST /v1/chat/completions = 1000000/1m",
        ),
    ]);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            send(&app, "acme", "POST", "/v1/chat/completions", PROMPT).await
        }));
    }
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("You said: hi"), "{body}");
    }
    assert_eq!(
        send(&app, "acme", "GET", "/upstream-calls", "").await.2,
        "1"
    );
    // Same request with other key order (and `stream: false`, the default): a hit. A
    // streamed request is another response: never served this one.
    let same = r#"{"messages":[{"content":"hi","role":"user"}],"stream":false,"temperature":0,"model":"small"}"#;
    assert_eq!(
        send(&app, "acme", "POST", "/v1/chat/completions", same)
            .await
            .1,
        "HIT"
    );
    // Another tenant, or another parameter: the model runs again.
    assert_eq!(
        send(&app, "globex", "POST", "/v1/chat/completions", PROMPT)
            .await
            .1,
        "MISS"
    );
    let warmer = PROMPT.replace("\"temperature\":0", "\"temperature\":0.7");
    assert_eq!(
        send(&app, "acme", "POST", "/v1/chat/completions", &warmer)
            .await
            .1,
        "MISS"
    );
    assert_eq!(
        send(&app, "acme", "GET", "/upstream-calls", "").await.2,
        "3"
    );
}

#[tokio::test]
async fn completions_cost_five_units() {
    let app = gateway(&[("RATE_LIMIT_TENANT", "12/1m")]);
    // 12 units: two completions (10 units), then one 1-unit call fits, the third
    // completion does not.
    for _ in 0..2 {
        assert_eq!(
            send(&app, "acme", "POST", "/v1/chat/completions", PROMPT)
                .await
                .0,
            StatusCode::OK
        );
    }
    assert_eq!(
        send(&app, "acme", "GET", "/upstream-calls", "").await.0,
        StatusCode::OK
    );
    let (status, _, body) = send(&app, "acme", "POST", "/v1/chat/completions", PROMPT).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("per-tenant"), "{body}");
    // Another tenant has its own quota.
    assert_eq!(
        send(&app, "globex", "POST", "/v1/chat/completions", PROMPT)
            .await
            .0,
        StatusCode::OK
    );
}

/// At most 3 (here) completions of a tenant in flight: of 10 distinct prompts sent at once,
/// 3 run and 7 get 429 naming the rule; another tenant has its own places, and a place frees
/// when an answer has been sent.
#[tokio::test(flavor = "multi_thread")]
async fn completions_in_flight_are_capped_per_tenant() {
    let app = gateway(&[(
        "RATE_LIMIT_CONCURRENCY_ENDPOINTS",
        "tenant: POST /v1/chat/completions = 3",
    )]);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let app = app.clone();
        let prompt = PROMPT.replace("hi", &format!("hi {i}"));
        tasks.push(tokio::spawn(async move {
            send(&app, "acme", "POST", "/v1/chat/completions", &prompt).await
        }));
    }
    // Meanwhile another tenant runs.
    let (status, _, _) = send(&app, "globex", "POST", "/v1/chat/completions", PROMPT).await;
    assert_eq!(status, StatusCode::OK);
    let mut ok = 0;
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => assert!(body.contains("concurrency"), "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(ok, 3, "completions in flight at once");
    // All ended: the places are free again.
    assert_eq!(
        send(&app, "acme", "POST", "/v1/chat/completions", PROMPT)
            .await
            .0,
        StatusCode::OK
    );
}

/// Completions reserve their estimate and give back what they did not use: ten distinct
/// completions (each reserving about 130 tokens, using about 10) fit in a budget of 300; a
/// repeated one is a cache hit and costs nothing; one asking for more than the budget is
/// refused naming it.
#[tokio::test]
async fn token_budget_meters_what_completions_use() {
    let app = gateway(&[(
        "RATE_LIMIT_TOKENS",
        "tenant: POST /v1/chat/completions = 300/1m",
    )]);
    let ask = |i: usize, max: u32| {
        format!(
            r#"{{"model":"small","max_tokens":{max},"messages":[{{"role":"user","content":"question {i}"}}]}}"#
        )
    };
    for i in 0..10 {
        let (s, x, body) = send(&app, "acme", "POST", "/v1/chat/completions", &ask(i, 100)).await;
        assert_eq!((s, x.as_str()), (StatusCode::OK, "MISS"), "{i}: {body}");
        assert!(body.contains("\"total_tokens\""), "{body}");
    }
    for _ in 0..5 {
        let (s, x, _) = send(&app, "acme", "POST", "/v1/chat/completions", &ask(0, 100)).await;
        assert_eq!((s, x.as_str()), (StatusCode::OK, "HIT"));
    }
    let (s, _, body) = send(&app, "acme", "POST", "/v1/chat/completions", &ask(99, 1000)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body.contains("tokens-tenant") && body.contains("can never fit"),
        "{body}"
    );
    // Ten answers used about 10 tokens each: a completion reserving about 130 still fits.
    let (s, _, body) = send(&app, "acme", "POST", "/v1/chat/completions", &ask(11, 100)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}
