//! Attacker's pass over the hostile-client fixes: each test names the weakness it shows.
//! Tests that pass on this branch were fixed here; the others are open findings.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::{any, get, post};
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::cache::{Cache, CacheLayer, Category};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{RateLimitLayer, RateLimiter};
use tenant_guard::tenant::{TenantId, TenantLayer};

fn cache_of(vars: &[(&str, &str)]) -> Cache {
    let config = Config::from_vars(vars.iter().copied()).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    Cache::from_config(&config, backend, &metrics)
}

async fn send(app: &Router, req: http::Request<Body>) -> (u16, String, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let x = res
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, x, String::from_utf8_lossy(&body).into_owned())
}

fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> http::Request<Body> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("x-tenant-id", "acme");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut r = b.body(Body::from(body.to_string())).unwrap();
    let peer: SocketAddr = "198.51.100.1:4000".parse().unwrap();
    r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    r
}

/// WEAKNESS (cache poisoning, medium): a `Vary` header (declared or learned) was keyed on
/// its FIRST value only, while the handler sees every value (HTTP: several lines are one
/// comma list). An anonymous client sending `Accept-Language: en` twice with another value
/// second stored its answer under the plain `en` key, served to every `en` caller.
#[tokio::test]
async fn vary_headers_are_keyed_on_every_value() {
    let app = Router::new()
        .route(
            "/api/greeting",
            get(|h: http::HeaderMap| async move {
                let langs: Vec<&str> = h
                    .get_all("accept-language")
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                format!("greeting for {}", langs.join(", "))
            }),
        )
        .route_layer(CacheLayer::query(cache_of(&[])).vary([http::header::ACCEPT_LANGUAGE]))
        .layer(TenantLayer::from_config(&Default::default()));
    let attacker = req(
        "GET",
        "/api/greeting",
        &[("accept-language", "en"), ("accept-language", "xx-evil")],
        "",
    );
    let (_, x, body) = send(&app, attacker).await;
    assert_eq!(
        (x.as_str(), body.as_str()),
        ("MISS", "greeting for en, xx-evil")
    );
    let victim = req("GET", "/api/greeting", &[("accept-language", "en")], "");
    let (_, _, body) = send(&app, victim).await;
    assert_eq!(
        body, "greeting for en",
        "the victim got the attacker's entry"
    );
}

/// WEAKNESS (stale data after invalidation, low-medium): with `Cache-Control: no-cache`
/// (read skipped, write kept) the generations an entry is stored with were read AFTER the
/// upstream answered, so a fill that computed before an invalidation landed after it with
/// the new generation and was served until its TTL ("a fill racing an invalidation cannot
/// land" did not hold for those requests; a client can send `no-cache` at will).
#[tokio::test]
async fn a_no_cache_fill_racing_an_invalidation_does_not_land() {
    let cache = cache_of(&[]);
    let version = Arc::new(AtomicU32::new(1));
    let gate = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let (v, g, e) = (version.clone(), gate.clone(), entered.clone());
    let app = Router::new()
        .route(
            "/api/price",
            get(move |h: http::HeaderMap| {
                let (v, g, e) = (v.clone(), g.clone(), e.clone());
                async move {
                    let seen = v.load(Ordering::SeqCst);
                    if h.contains_key("x-slow") {
                        e.notify_one();
                        g.notified().await;
                    }
                    format!("price v{seen}")
                }
            }),
        )
        .route_layer(CacheLayer::query(cache.clone()))
        .layer(TenantLayer::from_config(&Default::default()));
    let slow = {
        let app = app.clone();
        tokio::spawn(async move {
            send(
                &app,
                req(
                    "GET",
                    "/api/price",
                    &[("cache-control", "no-cache"), ("x-slow", "1")],
                    "",
                ),
            )
            .await
        })
    };
    entered.notified().await;
    // The price changes and the operator invalidates while the slow fill is in flight.
    version.store(2, Ordering::SeqCst);
    let acme = TenantId::new("acme").unwrap();
    cache
        .invalidate_category(&acme, &Category::query())
        .await
        .unwrap();
    gate.notify_one();
    let (_, _, body) = slow.await.unwrap();
    assert_eq!(body, "price v1");
    let (_, x, body) = send(&app, req("GET", "/api/price", &[], "")).await;
    assert_eq!(body, "price v2", "an invalidated answer was served ({x})");
}

/// Same race without `no-cache`: the first fill of a tenant whose generation keys do not
/// exist yet read them after the upstream answered.
#[tokio::test]
async fn a_first_fill_racing_the_first_invalidation_does_not_land() {
    let cache = cache_of(&[]);
    let version = Arc::new(AtomicU32::new(1));
    let gate = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let (v, g, e) = (version.clone(), gate.clone(), entered.clone());
    let app = Router::new()
        .route(
            "/api/price",
            get(move |h: http::HeaderMap| {
                let (v, g, e) = (v.clone(), g.clone(), e.clone());
                async move {
                    let seen = v.load(Ordering::SeqCst);
                    if h.contains_key("x-slow") {
                        e.notify_one();
                        g.notified().await;
                    }
                    format!("price v{seen}")
                }
            }),
        )
        .route_layer(CacheLayer::query(cache.clone()))
        .layer(TenantLayer::from_config(&Default::default()));
    let slow = {
        let app = app.clone();
        tokio::spawn(
            async move { send(&app, req("GET", "/api/price", &[("x-slow", "1")], "")).await },
        )
    };
    entered.notified().await;
    version.store(2, Ordering::SeqCst);
    let acme = TenantId::new("acme").unwrap();
    cache.invalidate_tenant(&acme).await.unwrap();
    gate.notify_one();
    let (_, _, body) = slow.await.unwrap();
    assert_eq!(body, "price v1");
    let (_, x, body) = send(&app, req("GET", "/api/price", &[], "")).await;
    assert_eq!(body, "price v2", "an invalidated answer was served ({x})");
}

/// WEAKNESS (AI cache poisoning, medium): only `"stream": true` counted as streamed.
/// OpenAI-compatible servers built on pydantic (vLLM, LiteLLM, ...) read `"stream": "yes"`,
/// `"true"`, `1` or `"on"` as true and stream; that streamed answer was stored under the
/// key of the whole answer and served to callers that did not ask for a stream.
#[tokio::test]
async fn truthy_non_boolean_stream_flags_never_share_the_whole_answer() {
    let app = Router::new()
        .route(
            "/v1/chat",
            post(|body: String| async move {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                // Lax truthiness, as pydantic's `bool` coercion.
                let streamed = match v.get("stream") {
                    Some(serde_json::Value::Bool(b)) => *b,
                    Some(serde_json::Value::Number(n)) => n.as_f64() != Some(0.0),
                    Some(serde_json::Value::String(s)) => {
                        matches!(
                            s.to_ascii_lowercase().as_str(),
                            "true" | "yes" | "on" | "1" | "y" | "t"
                        )
                    }
                    _ => false,
                };
                if streamed {
                    "data: {\"delta\":\"hi\"}\n\ndata: [DONE]\n\n".to_string()
                } else {
                    "{\"answer\":\"hi\"}".to_string()
                }
            }),
        )
        .route_layer(CacheLayer::ai(cache_of(&[])))
        .layer(TenantLayer::from_config(&Default::default()));
    let json = [("content-type", "application/json")];
    for (i, flag) in [r#""yes""#, r#""true""#, "1", r#""on""#]
        .into_iter()
        .enumerate()
    {
        let attacker = format!(r#"{{"model":"m","prompt":"p-{i}","stream":{flag}}}"#);
        let (_, _, body) = send(&app, req("POST", "/v1/chat", &json, &attacker)).await;
        assert!(body.starts_with("data:"), "{body}");
        let victim = format!(r#"{{"model":"m","prompt":"p-{i}"}}"#);
        let (_, x, body) = send(&app, req("POST", "/v1/chat", &json, &victim)).await;
        assert_eq!(
            body, "{\"answer\":\"hi\"}",
            "stream={flag}: the victim got the streamed answer ({x})"
        );
    }
}

/// WEAKNESS (rate-limit bypass, medium): the per-endpoint counter is keyed on the raw
/// method, so on a route that answers any method (`any(...)`, a proxy, a fallback) a client
/// inventing method names (`A`, `B`, ...) got a fresh counter per name — with the default
/// rules (`RATE_LIMIT_MAX` per user per endpoint) that is no limit at all, and one Redis key
/// per invented method.
#[tokio::test]
async fn invented_methods_do_not_get_fresh_counters() {
    for target in [common::Target::Memory, common::Target::Redis] {
        let (vars, _server) = common::target_vars(
            target,
            &[
                ("RATE_LIMIT_MAX", "3"),
                ("RATE_LIMIT_WINDOW", "1m"),
                ("RATE_LIMIT_OUTAGE", "closed"),
            ],
        );
        let config = Config::from_vars(vars).unwrap();
        let metrics = Metrics::new();
        let backend = Backend::from_config(&config, &metrics).unwrap();
        let limiter = RateLimiter::from_config(&config, backend, &metrics);
        let app = Router::new()
            .route("/api/proxy", any(|| async { "proxied" }))
            .layer(RateLimitLayer::from_config(&config, limiter));
        let mut allowed = 0;
        for i in 0..20 {
            let r = req(&format!("X{i}"), "/api/proxy", &[], "");
            if app.clone().oneshot(r).await.unwrap().status() == 200 {
                allowed += 1;
            }
        }
        assert_eq!(
            allowed, 3,
            "{target:?}: {allowed} of 20 requests with invented methods were let through"
        );
        // The standard methods keep their own counters.
        let r = req("POST", "/api/proxy", &[], "");
        assert_eq!(
            app.clone().oneshot(r).await.unwrap().status(),
            200,
            "{target:?}"
        );
    }
}

/// WEAKNESS (cache confusion, low): query values were decoded lossily, so `%FF` and `%FE`
/// (any invalid UTF-8) became the same U+FFFD and shared one entry, while the handler sees
/// different raw queries.
#[tokio::test]
async fn query_values_that_are_not_utf8_stay_apart() {
    let app = Router::new()
        .route(
            "/api/file",
            get(|uri: http::Uri| async move { format!("file {}", uri.query().unwrap_or("")) }),
        )
        .route_layer(CacheLayer::query(cache_of(&[])))
        .layer(TenantLayer::from_config(&Default::default()));
    let (_, _, a) = send(&app, req("GET", "/api/file?id=%FE", &[], "")).await;
    assert_eq!(a, "file id=%FE");
    let (_, x, b) = send(&app, req("GET", "/api/file?id=%FF", &[], "")).await;
    assert_eq!(b, "file id=%FF", "two raw queries shared one entry ({x})");
}

/// WEAKNESS (cross-user read, medium, configuration-dependent): behind a gateway that
/// authenticates and passes the user in `RATE_LIMIT_USER_HEADER` (the setting exists for
/// exactly that), the cache's `auto` scope did not see a caller: a per-user answer was
/// stored for the whole tenant and served to the next user.
#[tokio::test]
async fn the_gateway_user_header_scopes_cached_answers() {
    let vars = [("RATE_LIMIT_USER_HEADER", "x-user-id")];
    let config = Config::from_vars(vars).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let cache = Cache::from_config(&config, backend.clone(), &metrics);
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    let app = Router::new()
        .route(
            "/me/orders",
            get(|h: http::HeaderMap| async move {
                format!("orders of {}", h["x-user-id"].to_str().unwrap())
            }),
        )
        .route_layer(CacheLayer::query(cache))
        .layer(RateLimitLayer::from_config(&config, limiter))
        .layer(TenantLayer::from_config(&config.tenant));
    let (_, _, a) = send(
        &app,
        req("GET", "/me/orders", &[("x-user-id", "alice")], ""),
    )
    .await;
    assert_eq!(a, "orders of alice");
    let (_, x, b) = send(&app, req("GET", "/me/orders", &[("x-user-id", "bob")], "")).await;
    assert_eq!(b, "orders of bob", "bob got alice's orders ({x})");
}

/// WEAKNESS (Redis memory, medium): cache generation keys have no TTL and one is made per
/// (tenant, category) — for AI, per MODEL NAME, which the client writes in the body. A client
/// sending invented model names to an AI gateway that answers 200 for them (wildcard routes,
/// a default model) leaves one key per name in Redis forever; with the `noeviction` policy
/// the README asks for, Redis fills up and every counter and session write fails.
#[tokio::test]
async fn invented_model_names_leave_no_permanent_keys() {
    let server = common::RedisServer::start();
    let cache = cache_of(&[("REDIS_URL", server.url().as_str())]);
    let app = Router::new()
        .route("/v1/chat", post(|| async { "{\"answer\":\"hi\"}" }))
        .route_layer(CacheLayer::ai(cache))
        .layer(TenantLayer::from_config(&Default::default()));
    let json = [("content-type", "application/json")];
    for i in 0..50 {
        let body = format!(r#"{{"model":"invented-{i}","prompt":"p"}}"#);
        let (status, _, _) = send(&app, req("POST", "/v1/chat", &json, &body)).await;
        assert_eq!(status, 200);
    }
    let keys = server.cli(&["--scan", "--pattern", "tg:cache-gen:*"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert!(keys.len() >= 50, "{keys:?}");
    let permanent: Vec<&&str> = keys
        .iter()
        .filter(|k| server.cli(&["PTTL", k]).trim() == "-1")
        .collect();
    assert!(
        permanent.is_empty(),
        "{} of {} generation keys never expire, e.g. {:?}",
        permanent.len(),
        keys.len(),
        permanent.first()
    );
}

/// WEAKNESS (validator storm, low): `validate_with` answers are cached, but
/// concurrent requests for an id whose answer is not cached (new, or expired after the TTL)
/// each call the validator — "one check per new id" holds only for requests one after the
/// other. Every TTL, a busy tenant's concurrent requests all hit the database at once.
#[tokio::test]
async fn concurrent_requests_for_one_unknown_id_ask_the_validator_once() {
    use std::sync::atomic::AtomicUsize;
    use tenant_guard::tenant::TenantResolver;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app: Router = Router::new()
        .route("/api/items", get(|| async { "ok" }))
        .layer(
            TenantLayer::new(TenantResolver::header("x-tenant-id")).validate_with(
                move |t: TenantId| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        // A database round trip.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        t.as_str().starts_with("cust-")
                    }
                },
            ),
        );
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let r = http::Request::get("/api/items")
                .header("x-tenant-id", "cust-storm")
                .body(Body::empty())
                .unwrap();
            app.oneshot(r).await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "validator calls for one id"
    );
}

/// WEAKNESS (Redis load amplification, low-medium): an instance waiting for another
/// instance's fill (the Redis lease) polled Redis every 10 ms — an `MGET` and a `SET NX`
/// each time — for up to `CACHE_LEASE_TTL` (5 s): up to ~1000 commands per waiting request.
/// AI answers take seconds, so a client sending the same slow prompts to two instances made
/// each of its requests cost Redis hundreds of commands.
#[tokio::test]
async fn waiting_for_another_instance_polls_redis_with_backoff() {
    let server = common::RedisServer::start();
    let vars = [
        ("REDIS_URL", server.url()),
        ("CACHE_L1_MAX_BYTES", "0".to_string()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b) = (cache_of(&vars), cache_of(&vars));
    let acme = TenantId::new("acme").unwrap();
    let material = serde_json::json!({"prompt": "slow"});
    let calls = |server: &common::RedisServer| -> u64 {
        let info = server.cli(&["INFO", "commandstats"]);
        ["cmdstat_mget:", "cmdstat_set:"]
            .iter()
            .filter_map(|name| {
                let line = info.lines().find(|l| l.starts_with(name))?;
                let calls = line.split("calls=").nth(1)?.split(',').next()?;
                calls.parse::<u64>().ok()
            })
            .sum()
    };
    let (acme2, material2) = (acme.clone(), material.clone());
    // Ordered by an event: the filler's compute runs only once it holds the lease, and
    // tells the test so before it starts its ~2 s of work.
    let (computing_tx, computing_rx) = tokio::sync::oneshot::channel::<()>();
    let filler = tokio::spawn(async move {
        a.get_or_compute(&acme2, &Category::query(), &material2, || async move {
            let _ = computing_tx.send(());
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            Ok::<_, String>("answer".to_string())
        })
        .await
        .unwrap()
    });
    computing_rx.await.expect("the filler never computed");
    let before = calls(&server);
    let waited = b
        .get_or_compute(&acme, &Category::query(), &material, || async {
            Ok::<_, String>("computed again".to_string())
        })
        .await
        .unwrap();
    let used = calls(&server) - before;
    assert_eq!(filler.await.unwrap().value, "answer");
    assert_eq!(
        waited.value, "answer",
        "the waiter took over instead of waiting"
    );
    assert!(
        used < 100,
        "{used} MGET/SET commands while waiting ~2 s for one fill"
    );
}
