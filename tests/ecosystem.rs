//! `guard.layer()` among the layers axum users stack around it — tower-http's `TraceLayer`,
//! `CompressionLayer` (outside the cache and inside it, where `Vary: Accept-Encoding`
//! must keep gzip answers from clients that did not ask for them), `TimeoutLayer` (a
//! request cut off releases its concurrency lease), a `tower::ServiceBuilder` stack over a
//! plain `service_fn`, and axum `middleware::from_fn` before and after the guard — on the
//! memory backend and on a redis-server the test starts.

#[macro_use]
mod common;

use std::convert::Infallible;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use tenant_guard::TenantGuard;
use tenant_guard::cache::CacheLayer;
use tenant_guard::tenant::TenantId;

on_each_backend!(
    trace_layer_outside_sees_every_decision,
    compression_outside_the_cache_encodes_each_answer_from_one_entry,
    compression_inside_the_cache_never_serves_gzip_to_a_client_without_it,
    a_timed_out_request_releases_its_concurrency_lease,
    service_builder_over_a_plain_tower_service,
    from_fn_before_the_guard_supplies_the_tenant_after_it_sees_it,
);

/// A report large enough for tower-http to compress (it skips bodies under 32 bytes).
fn report() -> String {
    let rows: Vec<String> = (0..40)
        .map(|i| format!("{{\"room\":{i},\"status\":\"clean\"}}"))
        .collect();
    format!("[{}]", rows.join(","))
}

use common::loopback_get as request;

async fn send<S>(svc: &S, req: Request) -> (StatusCode, HeaderMap, Vec<u8>)
where
    S: Service<Request, Response = Response<Body>, Error = Infallible> + Clone,
{
    let res = svc.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("a gzip body");
    out
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn trace_layer_outside_sees_every_decision(mut vars: Vec<(&str, String)>) {
    vars.push(("RATE_LIMIT_TENANT", "2/1m".into()));
    let guard = TenantGuard::from_vars(vars).unwrap();
    let seen: Arc<Mutex<Vec<u16>>> = Arc::default();
    let record = seen.clone();
    let app: Router = Router::new()
        .route("/api/items", get(|| async { "items" }))
        .layer(guard.layer())
        .layer(TraceLayer::new_for_http().on_response(
            move |res: &Response<Body>, _: Duration, _: &tracing::Span| {
                record.lock().unwrap().push(res.status().as_u16());
            },
        ));
    let acme = [("x-tenant-id", "acme")];
    let (no_tenant, h, _) = send(&app, request("/api/items", &[])).await;
    assert_eq!(no_tenant, 400);
    assert_eq!(header(&h, "content-type"), Some("application/problem+json"));
    for _ in 0..2 {
        assert_eq!(send(&app, request("/api/items", &acme)).await.0, 200);
    }
    let (refused, h, _) = send(&app, request("/api/items", &acme)).await;
    assert_eq!(refused, 429);
    assert!(header(&h, "retry-after").is_some(), "{h:?}");
    // The trace layer outside saw the guard's own answers as well as the handler's.
    assert_eq!(*seen.lock().unwrap(), vec![400, 200, 200, 429]);
    guard.shutdown().await;
}

async fn compression_outside_the_cache_encodes_each_answer_from_one_entry(
    vars: Vec<(&str, String)>,
) {
    let guard = TenantGuard::from_vars(vars).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app: Router = Router::new()
        .route(
            "/api/report",
            get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { report() }
            }),
        )
        .route_layer(CacheLayer::query(guard.cache().clone()))
        .layer(guard.layer())
        .layer(CompressionLayer::new());
    let gzip = [("x-tenant-id", "acme"), ("accept-encoding", "gzip")];
    let plain = [("x-tenant-id", "acme")];

    let (s, h, body) = send(&app, request("/api/report", &gzip)).await;
    assert_eq!((s, header(&h, "x-cache")), (StatusCode::OK, Some("MISS")));
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&body), report());

    let (s, h, body) = send(&app, request("/api/report", &gzip)).await;
    assert_eq!((s, header(&h, "x-cache")), (StatusCode::OK, Some("HIT")));
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&body), report());

    // The same entry, not encoded, for a client that did not ask for gzip.
    let (s, h, body) = send(&app, request("/api/report", &plain)).await;
    assert_eq!((s, header(&h, "x-cache")), (StatusCode::OK, Some("HIT")));
    assert_eq!(header(&h, "content-encoding"), None);
    assert_eq!(String::from_utf8(body).unwrap(), report());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one entry served all three"
    );
    guard.shutdown().await;
}

async fn compression_inside_the_cache_never_serves_gzip_to_a_client_without_it(
    vars: Vec<(&str, String)>,
) {
    let guard = TenantGuard::from_vars(vars).unwrap();
    let app: Router = Router::new()
        .route("/api/report", get(|| async { report() }))
        .route_layer(
            ServiceBuilder::new()
                .layer(CacheLayer::query(guard.cache().clone()))
                .layer(CompressionLayer::new()),
        )
        .layer(guard.layer());
    let gzip = [("x-tenant-id", "acme"), ("accept-encoding", "gzip")];
    let plain = [("x-tenant-id", "acme")];
    let identity = [("x-tenant-id", "acme"), ("accept-encoding", "identity")];
    let mut hits = (0, 0);
    // The cache stores what the compressor made: gzip for one client, plain text for the
    // next, under keys that hold `Accept-Encoding` once the first `Vary` taught it so.
    for round in 0..4 {
        let (s, h, body) = send(&app, request("/api/report", &gzip)).await;
        assert_eq!(s, 200);
        assert_eq!(
            header(&h, "content-encoding"),
            Some("gzip"),
            "round {round}"
        );
        assert!(
            header(&h, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding"))
        );
        assert_eq!(gunzip(&body), report(), "round {round}");
        hits.0 += usize::from(header(&h, "x-cache") == Some("HIT"));
        for who in [&plain[..], &identity[..]] {
            let (s, h, body) = send(&app, request("/api/report", who)).await;
            assert_eq!(s, 200);
            assert_eq!(header(&h, "content-encoding"), None, "round {round}: {h:?}");
            assert_eq!(String::from_utf8(body).unwrap(), report(), "round {round}");
            hits.1 += usize::from(header(&h, "x-cache") == Some("HIT"));
        }
    }
    // It is still a cache: both kinds of answer come from it once keyed.
    assert!(hits.0 >= 2 && hits.1 >= 4, "hits {hits:?}");
    guard.shutdown().await;
}

async fn a_timed_out_request_releases_its_concurrency_lease(mut vars: Vec<(&str, String)>) {
    vars.push(("RATE_LIMIT_CONCURRENCY_TENANT", "1".into()));
    // Far longer than the test: only the release can free the one slot in time.
    vars.push(("RATE_LIMIT_CONCURRENCY_LEASE", "5m".into()));
    let guard = TenantGuard::from_vars(vars).unwrap();
    let app: Router = Router::new()
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/api/fast", get(|| async { "fast" }))
        .layer(guard.layer())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_millis(100),
        ));
    let acme = [("x-tenant-id", "acme")];
    // While the slow one runs, the tenant's one slot is taken.
    let slow = tokio::spawn({
        let app = app.clone();
        async move { send(&app, request("/api/slow", &acme)).await.0 }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(send(&app, request("/api/fast", &acme)).await.0, 429);
    assert_eq!(slow.await.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    // The timeout dropped the guarded future: its lease goes back (an async release on
    // Redis, so allow it a moment).
    let start = Instant::now();
    loop {
        let (s, _, body) = send(&app, request("/api/fast", &acme)).await;
        if s == 200 {
            assert_eq!(body, b"fast");
            break;
        }
        assert_eq!(s, 429);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the timed-out request kept its lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    guard.shutdown().await;
}

async fn service_builder_over_a_plain_tower_service(mut vars: Vec<(&str, String)>) {
    vars.push(("RATE_LIMIT_TENANT", "2/1m".into()));
    let guard = TenantGuard::from_vars(vars).unwrap();
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(5),
        ))
        .map_response(|res: Response<_>| res.map(Body::new))
        .layer(guard.layer())
        .service_fn(|req: Request| async move {
            let tenant = req.extensions().get::<TenantId>().cloned();
            let body = format!("tenant {}", tenant.map_or("none".into(), |t| t.to_string()));
            Ok::<_, Infallible>(Response::new(Body::from(body)))
        });
    let acme = [("x-tenant-id", "acme")];
    let (s, _, body) = send(&svc, request("/anything", &acme)).await;
    assert_eq!((s, body.as_slice()), (StatusCode::OK, &b"tenant acme"[..]));
    assert_eq!(send(&svc, request("/anything", &acme)).await.0, 200);
    let (s, h, _) = send(&svc, request("/anything", &acme)).await;
    assert_eq!(s, 429);
    assert!(header(&h, "ratelimit").is_some(), "{h:?}");
    assert_eq!(send(&svc, request("/anything", &[])).await.0, 400);
    guard.shutdown().await;
}

async fn from_fn_before_the_guard_supplies_the_tenant_after_it_sees_it(
    mut vars: Vec<(&str, String)>,
) {
    vars.push(("RATE_LIMIT_TENANT", "2/1m".into()));
    let guard = TenantGuard::from_vars(vars).unwrap();
    let statuses: Arc<Mutex<Vec<u16>>> = Arc::default();
    let outer_seen = statuses.clone();
    let app: Router = Router::new()
        .route("/api/items", get(|| async { "items" }))
        // After the guard: the tenant it resolved is on the request.
        .layer(middleware::from_fn(|req: Request, next: Next| async move {
            let tenant = req.extensions().get::<TenantId>().map(ToString::to_string);
            let mut res = next.run(req).await;
            let seen = HeaderValue::from_str(&tenant.unwrap_or_default()).unwrap();
            res.headers_mut().insert("x-seen-tenant", seen);
            res
        }))
        .layer(guard.layer())
        // Before it: an auth middleware that maps its own header to the tenant header,
        // and sees every answer, the guard's refusals included.
        .layer(middleware::from_fn(move |mut req: Request, next: Next| {
            let outer_seen = outer_seen.clone();
            async move {
                if let Some(org) = req.headers().get("x-org").cloned() {
                    req.headers_mut().insert("x-tenant-id", org);
                }
                let res = next.run(req).await;
                outer_seen.lock().unwrap().push(res.status().as_u16());
                res
            }
        }));
    let org = [("x-org", "globex")];
    for _ in 0..2 {
        let (s, h, body) = send(&app, request("/api/items", &org)).await;
        assert_eq!((s, body.as_slice()), (StatusCode::OK, &b"items"[..]));
        assert_eq!(header(&h, "x-seen-tenant"), Some("globex"));
    }
    let (s, h, _) = send(&app, request("/api/items", &org)).await;
    assert_eq!(s, 429);
    // A refusal never reached the inner middleware.
    assert_eq!(header(&h, "x-seen-tenant"), None);
    assert_eq!(send(&app, request("/api/items", &[])).await.0, 400);
    assert_eq!(*statuses.lock().unwrap(), vec![200, 200, 429, 400]);
    guard.shutdown().await;
}
