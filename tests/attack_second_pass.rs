//! The second attacker's pass (concurrency limits, access lists, plain session updates): one
//! test per finding, each failed before its fix.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tenant_guard::backend::Backend;
use tenant_guard::concurrency::{ConcurrencyLayer, ConcurrencyLimiter};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{AccessList, RateLimitLayer, RateLimiter};
use tenant_guard::session::{Session, SessionError, SessionLayer, SessionStore};
use tenant_guard::tenant::{Identity, TenantId, TenantLayer, TenantResolver};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------
// Concurrency limits
// ---------------------------------------------------------------------------------------

fn limiter_on(url: &str, extra: &[(&str, &str)]) -> ConcurrencyLimiter {
    let mut vars = vec![("REDIS_URL", url), ("RATE_LIMIT_CONCURRENCY_USER", "1")];
    if !extra
        .iter()
        .any(|(k, _)| *k == "RATE_LIMIT_CONCURRENCY_LEASE")
    {
        vars.push(("RATE_LIMIT_CONCURRENCY_LEASE", "30s"));
    }
    vars.extend_from_slice(extra);
    let config = Config::from_vars(vars).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    ConcurrencyLimiter::from_config(&config, backend, &metrics)
}

/// Only the concurrency layer: tenant and identity put in the request by the caller.
fn conc_app(limiter: ConcurrencyLimiter) -> Router {
    Router::new()
        .route("/quick", get(|| async { "quick" }))
        .layer(ConcurrencyLayer::new(limiter))
}

fn conc_req(user: &str) -> Request<Body> {
    let mut req = Request::get("/quick").body(Body::empty()).unwrap();
    req.extensions_mut().insert(TenantId::new("acme").unwrap());
    req.extensions_mut().insert(Identity::User(user.into()));
    req
}

async fn conc_status(app: &Router, user: &str) -> StatusCode {
    let res = app.clone().oneshot(conc_req(user)).await.unwrap();
    let s = res.status();
    res.into_body().collect().await.unwrap();
    s
}

async fn admitted_within(app: &Router, user: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if conc_status(app, user).await == StatusCode::OK {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A request whose future is dropped while its acquire is on the wire (the client went
/// away: connection reset, HTTP/2 RST_STREAM) leaves its lease in Redis: nobody releases
/// it, so it counts for the whole lease (30 s) with nothing in flight.
#[tokio::test(flavor = "multi_thread")]
async fn concurrency_cancelled_acquire_leaves_a_phantom_lease() {
    let server = common::RedisServer::start();
    let app = conc_app(limiter_on(&server.url(), &[("REDIS_POOL_SIZE", "1")]));
    assert_eq!(conc_status(&app, "ann").await, StatusCode::OK);
    assert!(admitted_within(&app, "ann", Duration::from_secs(5)).await);
    // The command is written to the socket, then the client goes away.
    server.pause();
    let gone = tokio::time::timeout(
        Duration::from_millis(200),
        app.clone().oneshot(conc_req("ann")),
    )
    .await;
    assert!(
        gone.is_err(),
        "the request should still be waiting for Redis"
    );
    server.resume();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Nothing of ann's is in flight, yet:
    assert!(
        admitted_within(&app, "ann", Duration::from_secs(3)).await,
        "a cancelled request's lease still counts: {}",
        server.cli(&[
            "ZRANGE",
            "tg:concurrency:{acme}:user:ann",
            "0",
            "-1",
            "WITHSCORES"
        ])
    );
}

/// An acquire that times out on the client (slow Redis) but runs on Redis later: the
/// request is admitted uncounted (`open`) AND a lease nobody holds refuses the next ones.
#[tokio::test(flavor = "multi_thread")]
async fn concurrency_timed_out_acquire_leaves_a_phantom_lease() {
    let server = common::RedisServer::start();
    let limiter = limiter_on(
        &server.url(),
        &[
            ("REDIS_POOL_SIZE", "1"),
            ("REDIS_COMMAND_TIMEOUT", "200ms"),
            ("RATE_LIMIT_OUTAGE", "open"),
        ],
    );
    let (t, ann) = (TenantId::new("acme").unwrap(), Identity::User("ann".into()));
    drop(limiter.acquire(&t, &ann).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.pause();
    let uncounted = limiter.acquire(&t, &ann).await.unwrap();
    assert!(!uncounted.is_held(), "timed out: admitted uncounted");
    drop(uncounted);
    server.resume();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = limiter.acquire(&t, &ann).await;
    assert!(
        next.is_ok(),
        "refused by a lease that was never handed out: {next:?}"
    );
}

/// A client that waits for each response before sending the next one never has two
/// requests in flight, yet with a cap of 1 on Redis it is refused: the lease is given back
/// by a task spawned when the body ends, which may reach Redis after the next acquire.
#[tokio::test(flavor = "multi_thread")]
async fn concurrency_sequential_client_at_its_cap_is_refused() {
    let server = common::RedisServer::start();
    let app = conc_app(limiter_on(&server.url(), &[]));
    let mut refused = 0;
    for _ in 0..200 {
        if conc_status(&app, "ann").await != StatusCode::OK {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 0,
        "{refused} of 200 one-at-a-time requests got 429"
    );
}

/// Two instances with different `RATE_LIMIT_CONCURRENCY_LEASE` (a rolling change): each
/// acquire sets the whole set's TTL to its own lease, so the short one expires the set
/// under the long one's live lease, and the tenant cap is exceeded.
#[tokio::test(flavor = "multi_thread")]
async fn concurrency_mixed_lease_lifetimes_drop_live_leases() {
    let server = common::RedisServer::start();
    let cap = [("RATE_LIMIT_CONCURRENCY_TENANT", "2")];
    let long = limiter_on(
        &server.url(),
        &[cap[0], ("RATE_LIMIT_CONCURRENCY_LEASE", "60s")],
    );
    let short = limiter_on(
        &server.url(),
        &[cap[0], ("RATE_LIMIT_CONCURRENCY_LEASE", "1s")],
    );
    let t = TenantId::new("acme").unwrap();
    let who = |u: &str| Identity::User(u.into());
    let a = long.acquire(&t, &who("a")).await.unwrap(); // in flight throughout
    drop(short.acquire(&t, &who("b")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let c = short.acquire(&t, &who("c")).await;
    let d = short.acquire(&t, &who("d")).await;
    assert!(
        c.is_err() || d.is_err(),
        "three requests in flight under a tenant cap of 2"
    );
    drop((a, c, d));
}

// ---------------------------------------------------------------------------------------
// Access lists
// ---------------------------------------------------------------------------------------

fn rl_app(vars: &[(&str, &str)]) -> Router {
    let mut all: Vec<(&str, &str)> = vec![("RATE_LIMIT_MAX", "1"), ("RATE_LIMIT_WINDOW", "1h")];
    all.extend_from_slice(vars);
    let config = Config::from_vars(all).expect("config");
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let limiter = RateLimiter::from_config(&config, backend, &metrics);
    Router::new()
        .route("/r", get(|| async { "ok" }))
        .layer(RateLimitLayer::from_config(&config, limiter))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")))
}

async fn rl_call(app: &Router, tenant: &str, peer: &str, xff: Option<&str>) -> u16 {
    let mut b = Request::get("/r").header("x-tenant-id", tenant);
    if let Some(x) = xff {
        b = b.header("x-forwarded-for", x);
    }
    let mut req = b.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

/// A `tenant:` exemption matches the tenant the request *names* (header, path, subdomain),
/// which any anonymous client chooses: naming the exempt tenant also skips `per-ip`, the
/// one rule meant to limit a client "whatever tenant or user they name".
#[tokio::test]
async fn access_list_exempt_tenant_lets_any_client_skip_the_per_ip_rule() {
    let app = rl_app(&[
        ("RATE_LIMIT_IP", "2/1h"),
        ("RATE_LIMIT_EXEMPT", "tenant:internal"),
    ]);
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(rl_call(&app, "internal", "198.51.100.7:1", None).await);
    }
    assert_eq!(
        codes,
        [200, 200, 429, 429],
        "an anonymous client escaped its per-ip limit by naming the exempt tenant"
    );
}

/// An `ip:` entry written IPv4-mapped (as a dual-stack socket logs clients:
/// `::ffff:203.0.113.9`) parses but can never match: clients are compared as IPv4.
#[test]
fn access_list_ipv4_mapped_entry_never_matches() {
    let deny = AccessList::parse("ip:::ffff:203.0.113.0/120").expect("accepted");
    let t = TenantId::new("acme").unwrap();
    let anon = Identity::Ip("203.0.113.9".into());
    for client in ["::ffff:203.0.113.9", "203.0.113.9"] {
        assert_eq!(
            deny.matches(&t, &anon, Some(client.parse().unwrap())),
            Some("ip"),
            "{client} escapes a deny entry it is inside of"
        );
    }
}

/// A trusted proxy's own address counts as the client when its forwarding header is
/// missing; with the proxy inside an exempt range (`ip:10.0.0.0/8`, proxies in 10/8) any
/// request that reaches the app without the header (a proxy that honours
/// `Connection: X-Forwarded-For`, a misrouted path) skips every limit.
#[tokio::test]
async fn access_list_trusted_proxy_without_header_is_exempt() {
    let app = rl_app(&[
        ("RATE_LIMIT_TRUSTED_PROXIES", "10.0.0.0/8"),
        ("RATE_LIMIT_EXEMPT", "ip:10.0.0.0/8"),
    ]);
    let codes = [
        rl_call(&app, "acme", "10.0.0.5:1", None).await,
        rl_call(&app, "acme", "10.0.0.5:1", None).await,
        rl_call(&app, "acme", "10.0.0.5:1", None).await,
    ];
    assert_eq!(
        codes,
        [200, 429, 429],
        "headerless proxied requests are exempt"
    );
}

// ---------------------------------------------------------------------------------------
// Plain session updates
// ---------------------------------------------------------------------------------------

const SECRET: &str = "attack-new-code-test-secret-0123456789abcdefgh";
const SKEW_BACK: Duration = Duration::from_secs(300);

fn libfaketime() -> PathBuf {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("libfaketime not found (apt-get install faketime)")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (String, Option<String>) {
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
    let sc = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8_lossy(&body).into_owned(), sc)
}

/// The instance run by `plain_updates_on_a_lagging_clock_hide_sessions_from_logout`, with
/// its wall clock 5 min behind Redis's: it logs in, keeps the session alive with field
/// writes (plain updates), then "logs out everywhere" and checks the session is gone.
#[tokio::test]
#[ignore = "started by plain_updates_on_a_lagging_clock_hide_sessions_from_logout"]
async fn lagging_instance() {
    let parent_ms: u64 = std::env::var("TG_PARENT_MS").unwrap().parse().unwrap();
    assert!(
        unix_ms() + SKEW_BACK.as_millis() as u64 - 60_000 <= parent_ms,
        "libfaketime did not move this clock back"
    );
    let config = Config::from_vars([
        ("REDIS_URL", std::env::var("TG_REDIS_URL").unwrap()),
        ("SESSION_SECRET", SECRET.to_string()),
        ("SESSION_TTL", "3s".to_string()),
        ("SESSION_MAX_LIFETIME", "1h".to_string()),
        ("SESSION_RENEW_INTERVAL", "1h".to_string()),
    ])
    .unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let store = SessionStore::from_config(&config, backend, &metrics);
    async fn login(session: Session) -> Result<&'static str, SessionError> {
        session.cycle_id().await?;
        session.set_user_id(Some("erin")).await?;
        Ok("in")
    }
    async fn touch(session: Session) -> Result<&'static str, SessionError> {
        let n = session.get::<u64>("n").await?.unwrap_or(0);
        session.insert("n", &(n + 1)).await?;
        Ok("ok")
    }
    async fn me(session: Session) -> Result<String, SessionError> {
        Ok(session.user_id().await?.unwrap_or_default())
    }
    let app = Router::new()
        .route("/login", post(login))
        .route("/touch", post(touch))
        .route("/me", get(me))
        .layer(SessionLayer::from_config(&config.session, store.clone()))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    let cookie = send(&app, "POST", "/login", None).await.1.unwrap();
    // The user keeps working: a field written every second for 6 s (twice the idle TTL).
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(send(&app, "POST", "/touch", Some(&cookie)).await.0, "ok");
    }
    assert_eq!(
        send(&app, "GET", "/me", Some(&cookie)).await.0,
        "erin",
        "alive"
    );
    let acme = TenantId::new("acme").unwrap();
    let listed = store.list_user_sessions(&acme, "erin").await.unwrap().len();
    let revoked = store.revoke_user_sessions(&acme, "erin").await.unwrap();
    let after = send(&app, "GET", "/me", Some(&cookie)).await.0;
    println!("RESULT listed={listed} revoked={revoked} after={after:?}");
    assert_eq!(listed, 1, "a live session is missing from its user's index");
    assert_eq!(after, "", "the session survived \"log out everywhere\"");
}

/// A plain update scores the user's index entry on the app's clock (`ZADD XX GT`,
/// +60 s slack), the scripts and the pruning on Redis's. An instance whose clock is more
/// than 60 s behind keeps sessions alive while their index entries fall out: listings
/// miss them and "log out everywhere" leaves them logged in.
#[tokio::test]
async fn plain_updates_on_a_lagging_clock_hide_sessions_from_logout() {
    let server = common::RedisServer::start();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "lagging_instance", "--nocapture"])
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", format!("-{}s", SKEW_BACK.as_secs()))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_NO_CACHE", "1")
        .env("TG_PARENT_MS", unix_ms().to_string())
        .env("TG_REDIS_URL", server.url())
        .output()
        .expect("run the lagging instance");
    assert!(
        out.status.success(),
        "lagging instance failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
