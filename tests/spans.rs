//! The spans the layers open per request, captured by a subscriber of the test's own: one
//! per layer, nested in the layers' order, each with what its layer decided (tenant,
//! session, rate limit with rule and decision, cache with category and status), and the
//! request id recorded once, on the outermost — the one the request came with when it is
//! plausible, otherwise one made up and handed to the handler. On the memory backend and on
//! a redis-server the test starts.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use http::HeaderMap;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use tenant_guard::TenantGuard;
use tenant_guard::cache::CacheLayer;

/// A closed span of the crate's: its name, its parent's name and its fields as text.
#[derive(Debug, Clone)]
struct Closed {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

impl Closed {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default, Clone)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

/// Keeps every `tenant_guard.*` span when it closes.
#[derive(Default, Clone)]
struct Capture(Arc<Mutex<Vec<Closed>>>);

impl Capture {
    fn take(&self) -> Vec<Closed> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        ctx.span(id).unwrap().extensions_mut().insert(f);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut ext = span.extensions_mut();
        values.record(ext.get_mut::<Fields>().unwrap());
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        if !span.name().starts_with("tenant_guard.") {
            return;
        }
        let fields = span
            .extensions()
            .get::<Fields>()
            .cloned()
            .unwrap_or_default();
        self.0.lock().unwrap().push(Closed {
            name: span.name(),
            parent: span.parent().map(|p| p.name()),
            fields: fields.0,
        });
    }
}

async fn get_of(app: &Router, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
    let res = app
        .clone()
        .oneshot(common::loopback_get(path, headers))
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The closed spans of one request, by name.
fn by_name(spans: &[Closed]) -> BTreeMap<&'static str, Closed> {
    let mut out = BTreeMap::new();
    for s in spans {
        assert!(
            out.insert(s.name, s.clone()).is_none(),
            "one {} span per request: {spans:#?}",
            s.name
        );
    }
    out
}

async fn spans_follow_each_request(mut vars: Vec<(&str, String)>) {
    let capture = Capture::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    vars.push(("RATE_LIMIT_TENANT", "3/1m".into()));
    let guard = TenantGuard::from_vars(vars).unwrap();
    let source = if guard.backend().is_shared() {
        "redis"
    } else {
        "memory"
    };
    // The handler answers with the request id it was given.
    let echo = |h: HeaderMap| async move {
        h.get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let app: Router = Router::new()
        .route("/api/items", get(echo))
        .route(
            "/api/report",
            get(|| async { "[1,2,3]" }).route_layer(CacheLayer::query(guard.cache().clone())),
        )
        .layer(guard.layer());
    let acme = ("x-tenant-id", "acme");

    // Allowed, with an id from upstream: every layer's span, nested in order.
    let (status, _, body) = get_of(&app, "/api/items", &[acme, ("x-request-id", "req-1")]).await;
    assert_eq!((status, body.as_str()), (200, "req-1"));
    let spans = by_name(&capture.take());
    let names: Vec<_> = spans.keys().copied().collect();
    assert_eq!(
        names,
        [
            "tenant_guard.rate_limit",
            "tenant_guard.session",
            "tenant_guard.tenant"
        ]
    );
    let tenant = &spans["tenant_guard.tenant"];
    assert_eq!(tenant.field("request_id"), Some("req-1"));
    assert_eq!(tenant.field("tenant"), Some("acme"));
    assert_eq!(tenant.field("outcome"), Some("ok"));
    let session = &spans["tenant_guard.session"];
    assert_eq!(session.parent, Some("tenant_guard.tenant"));
    assert_eq!(session.field("cookie"), Some("none"));
    assert_eq!(session.field("saved"), Some("kept"));
    assert_eq!(
        session.field("request_id"),
        None,
        "recorded once, outermost"
    );
    let limit = &spans["tenant_guard.rate_limit"];
    assert_eq!(limit.parent, Some("tenant_guard.session"));
    assert_eq!(limit.field("decision"), Some("allowed"));
    assert_eq!(limit.field("source"), Some(source));
    assert_eq!(limit.field("rule"), Some("per-tenant"));
    assert_eq!(limit.field("remaining"), Some("2"));

    // Throttled: the rule that refused, nothing left; no id sent, so one was made up.
    for _ in 0..2 {
        assert_eq!(get_of(&app, "/api/items", &[acme]).await.0, 200);
    }
    capture.take();
    let (status, _, _) = get_of(&app, "/api/items", &[acme]).await;
    assert_eq!(status, 429);
    let spans = by_name(&capture.take());
    let limit = &spans["tenant_guard.rate_limit"];
    assert_eq!(limit.field("decision"), Some("denied"));
    assert_eq!(limit.field("rule"), Some("per-tenant"));
    assert_eq!(limit.field("remaining"), Some("0"));
    let made_up = spans["tenant_guard.tenant"].field("request_id").unwrap();
    assert_eq!(made_up.len(), 16, "{made_up}");

    // An implausible id from a client is replaced; the handler sees the replacement.
    let guard2 = TenantGuard::from_vars([("REDIS_ENABLED", "false")]).unwrap();
    let app2: Router = Router::new()
        .route("/api/items", get(echo))
        .layer(guard2.layer());
    let hostile = "x".repeat(5000);
    for bad in ["a b<script>", hostile.as_str()] {
        let (status, _, seen) = get_of(&app2, "/api/items", &[acme, ("x-request-id", bad)]).await;
        assert_eq!(status, 200);
        let spans = by_name(&capture.take());
        let recorded = spans["tenant_guard.tenant"].field("request_id").unwrap();
        assert_eq!(recorded, seen, "the handler logs the id the spans carry");
        assert_eq!(recorded.len(), 16);
        assert_ne!(recorded, bad);
    }
    // Two ids (a client's and a proxy's appended): neither is taken, one is made up, and
    // the handler sees that one alone.
    let two = [
        acme,
        ("x-request-id", "client-1"),
        ("x-request-id", "proxy-1"),
    ];
    let (status, _, seen) = get_of(&app2, "/api/items", &two).await;
    assert_eq!(status, 200);
    let spans = by_name(&capture.take());
    let recorded = spans["tenant_guard.tenant"].field("request_id").unwrap();
    assert_eq!((recorded, recorded.len()), (seen.as_str(), 16));

    // A tenant not served: its made-up name is not recorded (any number may come).
    let guard3 =
        TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("TG_TENANTS", "acme")]).unwrap();
    let app3: Router = Router::new()
        .route("/api/items", get(echo))
        .layer(guard3.layer());
    let (status, _, _) = get_of(&app3, "/api/items", &[("x-tenant-id", "invented-42")]).await;
    assert_eq!(status, 404);
    let spans = by_name(&capture.take());
    assert_eq!(
        spans["tenant_guard.tenant"].field("outcome"),
        Some("unknown")
    );
    assert_eq!(spans["tenant_guard.tenant"].field("tenant"), None);

    // No tenant: the tenant span says why, and no layer inside ran.
    let (status, _, _) = get_of(&app, "/api/items", &[]).await;
    assert_eq!(status, 400);
    let spans = by_name(&capture.take());
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(
        spans["tenant_guard.tenant"].field("outcome"),
        Some("missing")
    );
    let (status, _, _) = get_of(&app, "/api/items", &[("x-tenant-id", "no tenant")]).await;
    assert_eq!(status, 400);
    let spans = by_name(&capture.take());
    assert_eq!(
        spans["tenant_guard.tenant"].field("outcome"),
        Some("invalid")
    );
    assert_eq!(spans["tenant_guard.tenant"].field("tenant"), None);

    // The cache's span, inside the rate limit's: a miss, then a hit.
    let beta = ("x-tenant-id", "beta");
    for want in ["miss", "hit-"] {
        let (status, _, _) = get_of(&app, "/api/report", &[beta]).await;
        assert_eq!(status, 200);
        let spans = by_name(&capture.take());
        let cache = &spans["tenant_guard.cache"];
        assert_eq!(cache.parent, Some("tenant_guard.rate_limit"));
        assert_eq!(cache.field("category"), Some("query"));
        let got = cache.field("status").unwrap();
        assert!(got.starts_with(want), "{got}");
    }

    // A handler that echoes the request id: the cache never hands one client's id to the
    // next (the entry is stored without it).
    let echoing: Router = Router::new()
        .route(
            "/api/echo",
            get(|h: HeaderMap| async move {
                let id = h.get("x-request-id").cloned().unwrap();
                ([("x-request-id", id)], "[1]")
            })
            .route_layer(CacheLayer::query(guard.cache().clone())),
        )
        .layer(guard.layer());
    let (status, _, _) = get_of(
        &echoing,
        "/api/echo",
        &[("x-tenant-id", "gamma"), ("x-request-id", "first-1")],
    )
    .await;
    assert_eq!(status, 200);
    let (_, second, _) = get_of(
        &echoing,
        "/api/echo",
        &[("x-tenant-id", "gamma"), ("x-request-id", "second-2")],
    )
    .await;
    assert_eq!(second.get("x-cache").unwrap(), "HIT");
    assert!(second.get("x-request-id").is_none(), "{second:?}");
    capture.take();
    guard.shutdown().await;
    guard2.shutdown().await;
    guard3.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn memory_spans_follow_each_request() {
    spans_follow_each_request(vec![("REDIS_ENABLED", "false".into())]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn redis_spans_follow_each_request() {
    let server = common::RedisServer::start();
    spans_follow_each_request(vec![("REDIS_URL", server.url())]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_subscriber_nothing_is_made_up() {
    let guard = TenantGuard::from_vars([("REDIS_ENABLED", "false")]).unwrap();
    let echo = |h: HeaderMap| async move { format!("{:?}", h.get("x-request-id")) };
    let app: Router = Router::new()
        .route("/api/items", get(echo))
        .layer(guard.layer());
    let (status, _, seen) = get_of(&app, "/api/items", &[("x-tenant-id", "acme")]).await;
    assert_eq!((status, seen.as_str()), (200, "None"));
    guard.shutdown().await;
}
