//! Floods against the memory backend: a client inventing identities, sessions or cache
//! keys must not reset a rate limit, log a user out, or push one kind of state out with
//! another. Driven through the public API (and an axum app for sessions) on a manual
//! clock: nothing here depends on timing.

use std::num::NonZeroU64;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use tenant_guard::backend::{Backend, MemoryStore};
use tenant_guard::cache::{Cache, Category};
use tenant_guard::clock::ManualClock;
use tenant_guard::config::{Config, MemoryConfig};
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
use tenant_guard::session::{Session, SessionError, SessionLayer, SessionStore};
use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
use tower::ServiceExt;

const SECRET: &str = "memory-flood-secret-0123456789abcdef-0123";

/// Config from `vars`, and a memory backend with its bounds on a manual clock.
fn setup(vars: &[(&str, &str)]) -> (Config, Backend, ManualClock, Metrics) {
    let mut all: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("SESSION_SECRET".into(), SECRET.into()));
    let config = Config::from_vars(all).expect("config");
    let clock = ManualClock::new();
    let backend = Backend::Memory(MemoryStore::with_clock(config.memory, clock.clone()));
    (config, backend, clock, Metrics::new())
}

fn metric(metrics: &Metrics, line_prefix: &str) -> u64 {
    metrics
        .render()
        .lines()
        .find_map(|l| {
            l.strip_prefix(line_prefix)
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0)
}

fn check<'a>(t: &'a TenantId, who: &'a Identity) -> Check<'a> {
    static GET: http::Method = http::Method::GET;
    Check {
        tenant: t,
        identity: who,
        method: &GET,
        route: "/api/items",
        cost: None,
        plan: None,
    }
}

fn ip(n: u32) -> Identity {
    Identity::from_ip(std::net::Ipv4Addr::from(0x0a00_0000 + n).into())
}

const OVERFLOW: &str = "tenant_guard_ratelimit_memory_overflow_total{rule=\"per-endpoint\"} ";

#[tokio::test]
async fn an_exhausted_counter_survives_a_flood_of_new_identities() {
    // Regression: at a full table the limiter evicted the live counter expiring soonest,
    // so the flooding client's own exhausted counter went first and it got a full quota.
    let (config, backend, clock, metrics) = setup(&[
        ("RATE_LIMIT_MAX", "3"),
        ("RATE_LIMIT_WINDOW", "1m"),
        ("TG_MEMORY_MAX_COUNTERS", "100"),
    ]);
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    let t = TenantId::new("acme").unwrap();
    let attacker = ip(1);
    for _ in 0..3 {
        assert!(limiter.check(&check(&t, &attacker)).await.allowed);
    }
    assert!(!limiter.check(&check(&t, &attacker)).await.allowed);
    clock.advance(Duration::from_millis(1));
    // Ten times the table's capacity of invented identities, the attacker retrying
    // in between.
    let mut retry = Duration::ZERO;
    for n in 2..1_002 {
        limiter.check(&check(&t, &ip(n))).await;
        let d = limiter.check(&check(&t, &attacker)).await;
        assert!(
            !d.allowed,
            "the exhausted counter was reset after {n} identities"
        );
        assert_eq!(d.rules[0].remaining, 0);
        retry = d.rules[0].retry_after.unwrap();
    }
    // Identities beyond the table shared the overflow counter, and it was counted.
    assert!(metric(&metrics, OVERFLOW) >= 900);
    // Its Retry-After passes: the attacker may come back.
    clock.advance(retry);
    let d = limiter.check(&check(&t, &attacker)).await;
    assert!(d.allowed, "{d:?}");
}

#[tokio::test]
async fn new_identities_at_a_full_table_are_limited_together() {
    let (config, backend, _clock, metrics) = setup(&[
        ("RATE_LIMIT_MAX", "5"),
        ("RATE_LIMIT_WINDOW", "1m"),
        ("TG_MEMORY_MAX_COUNTERS", "10"),
    ]);
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    let t = TenantId::new("acme").unwrap();
    for n in 0..10 {
        assert!(limiter.check(&check(&t, &ip(n))).await.allowed);
    }
    assert_eq!(metric(&metrics, OVERFLOW), 0);
    // The table is full of live counters: identities 100.. share one counter of 5.
    for n in 100..105 {
        let d = limiter.check(&check(&t, &ip(n))).await;
        assert!(d.allowed, "new identity {n}");
    }
    let d = limiter.check(&check(&t, &ip(105))).await;
    assert!(!d.allowed, "the sixth new identity shares the five units");
    assert!(d.rules[0].retry_after.is_some());
    assert_eq!(metric(&metrics, OVERFLOW), 6);
    // Known identities keep their own counters.
    let d = limiter.check(&check(&t, &ip(0))).await;
    assert!(d.allowed);
    assert_eq!(d.rules[0].remaining, 3);
    assert_eq!(metric(&metrics, OVERFLOW), 6);
    // No tenant or identity in the metric's labels.
    let text = metrics.render();
    let line = text
        .lines()
        .find(|l| l.starts_with("tenant_guard_ratelimit_memory_overflow_total{"))
        .unwrap();
    assert!(!line.contains("acme") && !line.contains("10.0."), "{line}");
}

fn session_app(config: &Config, store: SessionStore) -> Router {
    async fn login(
        session: Session,
        Path(user): Path<String>,
    ) -> Result<&'static str, SessionError> {
        session.cycle_id().await?;
        session.set_user_id(Some(&user)).await?;
        Ok("in")
    }
    async fn me(session: Session) -> Result<String, SessionError> {
        Ok(session.user_id().await?.unwrap_or_default())
    }
    async fn visit(session: Session) -> Result<&'static str, SessionError> {
        session.insert("seen", &true).await?;
        Ok("hello")
    }
    Router::new()
        .route("/login/{user}", post(login))
        .route("/me", get(me))
        .route("/visit", get(visit))
        .layer(SessionLayer::from_config(&config.session, store))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")))
}

/// Sends a request; returns the status, the body and the `name=value` of a `Set-Cookie`.
async fn send(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    use http_body_util::BodyExt;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-tenant-id", "acme");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), cookie)
}

#[tokio::test]
async fn a_logged_in_user_survives_floods_of_sessions_and_cache_entries() {
    // Regression: sessions shared one LRU with the cache, so new anonymous sessions or
    // cached responses evicted a logged-in user's session.
    let (config, backend, _clock, metrics) = setup(&[
        ("TG_MEMORY_MAX_ENTRIES", "50"),
        ("TG_MEMORY_MAX_SESSIONS", "20"),
    ]);
    let store = SessionStore::from_config(&config, backend.clone(), &metrics);
    let app = session_app(&config, store);
    let (status, _, cookie) = send(&app, "POST", "/login/alice", None).await;
    assert_eq!(status, StatusCode::OK);
    let alice = cookie.expect("login sets a cookie");

    // Anonymous clients creating sessions: the table fills, then new ones are refused
    // with 503 (retry later) rather than logging anybody out.
    let mut created = 0;
    let mut refused = 0;
    for _ in 0..200 {
        let (status, _, cookie) = send(&app, "GET", "/visit", None).await;
        match status {
            StatusCode::OK => {
                assert!(cookie.is_some());
                created += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(cookie.is_none(), "no cookie for a session never stored");
                refused += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((created, refused), (19, 181));
    assert_eq!(
        metric(
            &metrics,
            "tenant_guard_session_events_total{event=\"store_full\"} "
        ),
        181
    );

    // A cache flood, far beyond TG_MEMORY_MAX_ENTRIES.
    let cache = Cache::from_config(&config, backend.clone(), &metrics);
    let t = TenantId::new("acme").unwrap();
    for i in 0..500 {
        let v = cache
            .get_or_compute(&t, &Category::query(), &i, || async { Ok::<_, String>(i) })
            .await
            .unwrap();
        assert_eq!(v.value, i);
    }

    let (status, body, _) = send(&app, "GET", "/me", Some(&alice)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
    let Backend::Memory(m) = &backend else {
        unreachable!()
    };
    let stats = m.stats();
    assert_eq!(stats.sessions, 20);
    assert_eq!(stats.session_indexes, 1);
    assert!(stats.cache_entries <= 50);
    assert!(stats.evictions >= 450);
    // Alice's sessions are still listed for "log out everywhere".
    let listed = SessionStore::from_config(&config, backend.clone(), &metrics)
        .list_user_sessions(&t, "alice")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn a_cache_flood_evicts_no_counter() {
    let (config, backend, _clock, metrics) = setup(&[
        ("RATE_LIMIT_MAX", "2"),
        ("RATE_LIMIT_WINDOW", "1m"),
        ("TG_MEMORY_MAX_ENTRIES", "10"),
    ]);
    let limiter = RateLimiter::from_config(&config, backend.clone(), &metrics);
    let cache = Cache::from_config(&config, backend, &metrics);
    let t = TenantId::new("acme").unwrap();
    let who = ip(7);
    assert!(limiter.check(&check(&t, &who)).await.allowed);
    assert!(limiter.check(&check(&t, &who)).await.allowed);
    assert!(!limiter.check(&check(&t, &who)).await.allowed);
    for i in 0..1_000 {
        cache
            .get_or_compute(&t, &Category::named("reports"), &i, || async {
                Ok::<_, String>(i)
            })
            .await
            .unwrap();
    }
    assert!(!limiter.check(&check(&t, &who)).await.allowed);
}

#[test]
fn memory_config_bounds_are_separate() {
    // The per-kind bounds are fields of their own in code too.
    let mut m = MemoryConfig::default();
    m.max_sessions = NonZeroU64::new(7).unwrap();
    m.max_counters = NonZeroU64::new(9).unwrap();
    assert_eq!(m.max_entries.get(), 100_000);
}
