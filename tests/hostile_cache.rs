//! Regression tests for what a hostile client tried against the cache (findings of the
//! hostile-input review about the cache's scope and invalidation): each failed before its
//! fix. The rate-limit, tenant and outage findings are in `tests/hostile.rs`.

mod common;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;

mod cache {
    use super::*;
    use axum::routing::post;
    use tenant_guard::cache::{Cache, CacheLayer};
    use tenant_guard::tenant::TenantLayer;

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

    fn get_req(path: &str, headers: &[(&str, &str)]) -> http::Request<Body> {
        let mut b = http::Request::get(path).header("x-tenant-id", "acme");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    /// Echoes the caller's credentials, as a per-user endpoint would.
    fn whoami_app(cache: Cache) -> Router {
        Router::new()
            .route(
                "/me/profile",
                get(|h: http::HeaderMap| async move {
                    let auth = h
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string());
                    let cookie = h.get("cookie").map(|v| v.to_str().unwrap().to_string());
                    format!("{auth:?} {cookie:?}")
                }),
            )
            .route_layer(CacheLayer::query(cache))
            .layer(TenantLayer::from_config(&Default::default()))
    }

    /// Finding 5: one caller's cached response was served to another caller of the same
    /// tenant with other credentials.
    #[tokio::test]
    async fn responses_are_kept_per_caller_when_credentials_are_sent() {
        let app = whoami_app(cache_of(&[]));
        let alice = [("authorization", "Bearer alice-token")];
        let bob = [("authorization", "Bearer bob-token")];
        let (_, x, body) = send(&app, get_req("/me/profile", &alice)).await;
        assert_eq!(x, "MISS");
        assert!(body.contains("alice"), "{body}");
        let (_, x, body) = send(&app, get_req("/me/profile", &bob)).await;
        assert_eq!(x, "MISS", "bob got alice's entry: {body}");
        assert!(body.contains("bob"), "{body}");
        let (_, x, body) = send(&app, get_req("/me/profile", &alice)).await;
        assert_eq!((x.as_str(), body.contains("alice")), ("HIT", true));
        // Cookies of an unknown scheme: per caller too.
        let (_, x, _) = send(&app, get_req("/me/profile", &[("cookie", "auth=c1")])).await;
        assert_eq!(x, "MISS");
        let (_, x, body) = send(&app, get_req("/me/profile", &[("cookie", "auth=c2")])).await;
        assert_eq!(x, "MISS", "{body}");
        assert!(body.contains("c2"));
        // Anonymous requests share one entry.
        assert_eq!(send(&app, get_req("/me/profile", &[])).await.1, "MISS");
        assert_eq!(send(&app, get_req("/me/profile", &[])).await.1, "HIT");

        // CACHE_SCOPE=tenant: public data, one entry for everyone (the operator's choice).
        let app = whoami_app(cache_of(&[("CACHE_SCOPE", "tenant")]));
        assert_eq!(send(&app, get_req("/me/profile", &alice)).await.1, "MISS");
        assert_eq!(send(&app, get_req("/me/profile", &bob)).await.1, "HIT");
        // CACHE_SCOPE_QUERY=user wins over CACHE_SCOPE for that category.
        let app = whoami_app(cache_of(&[
            ("CACHE_SCOPE", "tenant"),
            ("CACHE_SCOPE_QUERY", "user"),
        ]));
        assert_eq!(send(&app, get_req("/me/profile", &alice)).await.1, "MISS");
        assert_eq!(send(&app, get_req("/me/profile", &bob)).await.1, "MISS");
    }

    /// Finding 5: the response's `Vary` was ignored.
    #[tokio::test]
    async fn response_vary_is_honoured() {
        let app = Router::new()
            .route(
                "/greeting",
                get(|h: http::HeaderMap| async move {
                    let lang = h
                        .get("accept-language")
                        .map_or("none", |v| v.to_str().unwrap())
                        .to_string();
                    ([("vary", "Accept-Language")], format!("hello in {lang}"))
                }),
            )
            .route("/star", get(|| async { ([("vary", "*")], "anything") }))
            .route_layer(CacheLayer::query(cache_of(&[])))
            .layer(TenantLayer::from_config(&Default::default()));
        let lang = |l: &str| get_req("/greeting", &[("accept-language", l)]);
        // The first answer teaches the layer the header; it is not stored (BYPASS) under a
        // key that lacks it.
        assert_eq!(send(&app, lang("en")).await.1, "BYPASS");

        assert_eq!(send(&app, lang("de")).await.1, "MISS");
        assert_eq!(send(&app, lang("en")).await.1, "MISS");
        let (_, x, body) = send(&app, lang("de")).await;
        assert_eq!((x.as_str(), body.as_str()), ("HIT", "hello in de"));
        let (_, x, body) = send(&app, lang("en")).await;
        assert_eq!((x.as_str(), body.as_str()), ("HIT", "hello in en"));
        // `Vary: *` is never stored.
        for _ in 0..3 {
            assert_eq!(send(&app, get_req("/star", &[])).await.1, "BYPASS");
        }
    }

    // Finding 5 (`stream: true` and `stream: false` shared one AI entry) is tested on the
    // memory backend and on Redis in tests/cache_stream.rs
    // (`streamed_and_whole_answers_never_cross`).

    /// Finding 1: 800 KB `model` strings and random tenants grew the process far past
    /// `CACHE_L1_MAX_BYTES`: keys were not weighed and the model went into the key at any
    /// length. Now L1 weighs keys and long or unusual models are hashed into the key.
    #[tokio::test]
    async fn hostile_model_names_keep_l1_and_keys_bounded() {
        let server = common::RedisServer::start();
        let url = server.url();
        let cache = cache_of(&[
            ("REDIS_URL", url.as_str()),
            ("CACHE_L1_MAX_BYTES", "64KiB"),
            ("CACHE_MAX_BODY_BYTES", "2MiB"),
        ]);
        let app = Router::new()
            .route("/api/ai/complete", post(|| async { "ok" }))
            .route_layer(CacheLayer::ai(cache.clone()))
            .layer(TenantLayer::from_config(&Default::default()));
        for i in 0..40 {
            let model = format!("{i}-{}", "m".repeat(100_000));
            let req = http::Request::post("/api/ai/complete")
                .header("x-tenant-id", format!("t{i}"))
                .body(Body::from(format!(r#"{{"model":"{model}","prompt":"p"}}"#)))
                .unwrap();
            assert_eq!(send(&app, req).await.0, 200);
        }
        assert!(
            cache.l1_weighted_bytes() <= 64 * 1024,
            "L1 holds {} bytes",
            cache.l1_weighted_bytes()
        );
        let keys = server.cli(&["--scan", "--pattern", "tg:ai:*"]);
        let keys: Vec<&str> = keys.lines().collect();
        assert_eq!(keys.len(), 40);
        let longest = keys.iter().map(|k| k.len()).max().unwrap();
        assert!(longest < 200, "a key of {longest} bytes");
        // Short, ordinary model names stay readable in the key.
        let req = http::Request::post("/api/ai/complete")
            .header("x-tenant-id", "plain")
            .body(Body::from(r#"{"model":"gpt-4o","prompt":"p"}"#))
            .unwrap();
        send(&app, req).await;
        assert!(
            server
                .cli(&["--scan", "--pattern", "tg:ai:{plain}:gpt-4o:*"])
                .contains("gpt-4o")
        );
    }
}

/// Finding 10: invalidating a tenant ran SCAN over the whole keyspace (seconds with 1M
/// keys). Now it is one INCR of the tenant's generation, whatever the number of keys.
#[tokio::test]
async fn tenant_invalidation_is_one_command_without_scan() {
    use tenant_guard::cache::{Cache, CacheStatus, Category};
    let server = common::RedisServer::start();
    let config = Config::from_vars([("REDIS_URL", server.url())]).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let cache = Cache::from_config(&config, backend, &metrics);
    let t = tenant_guard::tenant::TenantId::new("big").unwrap();
    for i in 0..300u32 {
        cache
            .get_or_compute(
                &t,
                &Category::query(),
                &i,
                || async move { Ok::<_, String>(i) },
            )
            .await
            .unwrap();
    }
    // Other tenants' keys: a SCAN would have to walk them too.
    server.cli(&["DEBUG", "POPULATE", "20000", "other:key"]);
    server.cli(&["CONFIG", "RESETSTAT"]);
    assert!(cache.invalidate_tenant(&t).await.unwrap() > 0);
    let stats = server.cli(&["INFO", "commandstats"]);
    assert!(!stats.contains("cmdstat_scan"), "{stats}");
    assert!(!stats.contains("cmdstat_keys"), "{stats}");
    assert!(!stats.contains("cmdstat_unlink"), "{stats}");
    // SET NX (the generation exists already: a no-op) and INCR.
    assert!(stats.contains("cmdstat_incr:calls=1,"), "{stats}");
    assert!(stats.contains("cmdstat_set:calls=1,"), "{stats}");
    for i in [0u32, 150, 299] {
        let r = cache
            .get_or_compute(&t, &Category::query(), &i, || async move {
                Ok::<_, String>(i + 1000)
            })
            .await
            .unwrap();
        assert_eq!((r.value, r.status), (i + 1000, CacheStatus::Miss));
    }
    // A generation key that is lost (evicted, deleted) revives nothing: entries of the old
    // generations stay misses, and the key is made again with a random first value.
    server.cli(&["DEL", "tg:cache-gen:{big}"]);
    let r = cache
        .get_or_compute(&t, &Category::query(), &1u32, || async move {
            Ok::<_, String>(2000)
        })
        .await
        .unwrap();
    assert_eq!((r.value, r.status), (2000, CacheStatus::Miss));
    let again = cache
        .get_or_compute(&t, &Category::query(), &1u32, || async move {
            Ok::<_, String>(3000)
        })
        .await
        .unwrap();
    assert_eq!(again.value, 2000);
}
