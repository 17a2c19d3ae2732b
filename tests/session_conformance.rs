//! The session layer's semantics on every backend — memory, a single Redis node and the
//! 3-master cluster — driven through an axum app in process, with a cookie-jar client.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tenant_guard::backend::{Backend, MemoryStore};
use tenant_guard::clock::ManualClock;
use tenant_guard::config::{Config, MemoryConfig};
use tenant_guard::metrics::Metrics;
use tenant_guard::session::{Session, SessionError, SessionLayer, SessionStore};
use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
use tower::ServiceExt;

use common::Target as Kind;

const SECRET: &str = "session-conformance-secret-0123456789abcdef";

struct Fixture {
    app: Router,
    store: SessionStore,
    metrics: Metrics,
    clock: Option<ManualClock>,
    _server: Option<common::RedisServer>,
}

impl Fixture {
    async fn advance(&self, d: Duration) {
        match &self.clock {
            Some(c) => c.advance(d),
            None => tokio::time::sleep(d).await,
        }
    }

    fn events(&self, event: &str) -> u64 {
        let needle = format!("tenant_guard_session_events_total{{event=\"{event}\"}} ");
        self.metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&needle).map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0)
    }
}

fn fixture(kind: Kind, vars: &[(&str, &str)]) -> Fixture {
    let (mut all, server) = common::target_vars(kind, vars);
    all.push(("SESSION_SECRET".into(), SECRET.into()));
    let config = Config::from_vars(all).expect("config");
    let metrics = Metrics::new();
    let (backend, clock) = if kind == Kind::Memory {
        let clock = ManualClock::new();
        (
            Backend::Memory(MemoryStore::with_clock(
                MemoryConfig::default(),
                clock.clone(),
            )),
            Some(clock),
        )
    } else {
        (Backend::from_config(&config, &metrics).unwrap(), None)
    };
    let store = SessionStore::from_config(&config, backend, &metrics);
    Fixture {
        app: app(&config, store.clone()),
        store,
        metrics,
        clock,
        _server: server,
    }
}

fn app(config: &Config, store: SessionStore) -> Router {
    async fn login(
        session: Session,
        Path(user): Path<String>,
    ) -> Result<&'static str, SessionError> {
        session.cycle_id().await?;
        session.set_user_id(Some(&user)).await?;
        Ok("in")
    }
    async fn logout(session: Session) -> Result<&'static str, SessionError> {
        session.destroy().await?;
        Ok("out")
    }
    async fn me(session: Session) -> Result<String, SessionError> {
        Ok(session.user_id().await?.unwrap_or_default())
    }
    async fn set(
        session: Session,
        Path((k, v)): Path<(String, String)>,
    ) -> Result<&'static str, SessionError> {
        session.insert(&k, &v).await?;
        Ok("set")
    }
    async fn get_key(session: Session, Path(k): Path<String>) -> Result<String, SessionError> {
        Ok(session.get::<String>(&k).await?.unwrap_or_default())
    }
    async fn del(session: Session, Path(k): Path<String>) -> Result<String, SessionError> {
        Ok(session.remove::<String>(&k).await?.unwrap_or_default())
    }
    async fn keys(session: Session) -> Result<String, SessionError> {
        Ok(session.keys().await?.join(","))
    }
    async fn clear(session: Session) -> Result<&'static str, SessionError> {
        session.clear().await?;
        Ok("cleared")
    }
    async fn fail(session: Session, Path(k): Path<String>) -> axum::response::Response {
        if let Err(e) = session.insert(&k, &"x").await {
            return e.into_response();
        }
        (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
    }
    async fn big(session: Session, Path(n): Path<usize>) -> Result<&'static str, SessionError> {
        session.insert("big", &"x".repeat(n)).await?;
        Ok("stored")
    }
    Router::new()
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/set/{k}/{v}", post(set))
        .route("/get/{k}", get(get_key))
        .route("/del/{k}", post(del))
        .route("/keys", get(keys))
        .route("/clear", post(clear))
        .route("/fail/{k}", post(fail))
        .route("/big/{n}", post(big))
        .route("/noop", get(|| async { "noop" }))
        .layer(SessionLayer::from_config(&config.session, store))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")))
}

/// A browser-like client: one tenant, one cookie.
#[derive(Clone)]
struct Client {
    app: Router,
    tenant: TenantId,
    cookie: Option<String>,
}

struct Reply {
    status: StatusCode,
    body: String,
    set_cookie: Option<String>,
}

impl Client {
    fn new(f: &Fixture, tenant: &TenantId) -> Self {
        Self {
            app: f.app.clone(),
            tenant: tenant.clone(),
            cookie: None,
        }
    }

    async fn send_raw(&self, method: &str, path: &str, cookie: Option<&[u8]>) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("x-tenant-id", self.tenant.as_str());
        if let Some(c) = cookie {
            req = req.header("cookie", http::HeaderValue::from_bytes(c).unwrap());
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let set_cookie = res
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            set_cookie,
        }
    }

    /// Sends with the jar's cookie and updates the jar from `Set-Cookie`.
    async fn send(&mut self, method: &str, path: &str) -> Reply {
        let cookie = self.cookie.clone();
        let r = self
            .send_raw(method, path, cookie.as_deref().map(str::as_bytes))
            .await;
        if let Some(sc) = &r.set_cookie {
            let pair = sc.split(';').next().unwrap().to_string();
            if sc.contains("Max-Age=0") {
                self.cookie = None;
            } else {
                self.cookie = Some(pair);
            }
        }
        r
    }
}

mod checks {
    use super::*;

    pub(super) async fn lazy_lifecycle(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("ses");
        let mut c = Client::new(&f, &t);
        // No cookie, nothing touched or only read: no session, no cookie.
        let r = c.send("GET", "/noop").await;
        assert!(r.set_cookie.is_none());
        let r = c.send("GET", "/get/a").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, ""));
        assert!(
            r.set_cookie.is_none(),
            "reading an absent session created one"
        );
        assert_eq!(f.events("create"), 0);
        // A write creates the session and sets the cookie.
        let r = c.send("POST", "/set/a/1").await;
        assert_eq!(r.status, StatusCode::OK);
        let sc = r.set_cookie.expect("cookie on create");
        assert!(sc.contains("HttpOnly") && sc.contains("SameSite=Lax") && sc.contains("Path=/"));
        assert!(sc.starts_with("__Host-sid="), "{sc}");
        assert_eq!(c.send("GET", "/get/a").await.body, "1");
        // Reads and untouched requests with a cookie send no cookie back.
        assert!(c.send("GET", "/get/a").await.set_cookie.is_none());
        assert!(c.send("GET", "/noop").await.set_cookie.is_none());
        // Updates keep the id: no new cookie.
        let r = c.send("POST", "/set/b/2").await;
        assert!(r.set_cookie.is_none());
        assert_eq!(c.send("GET", "/keys").await.body, "a,b");
        assert_eq!(c.send("POST", "/del/a").await.body, "1");
        assert_eq!(c.send("GET", "/keys").await.body, "b");
        c.send("POST", "/clear").await;
        assert_eq!(c.send("GET", "/keys").await.body, "");
        assert_eq!(f.events("create"), 1);
        assert!(f.events("save") >= 3);
    }

    pub(super) async fn tenant_binding(kind: Kind) {
        let f = fixture(kind, &[]);
        let a = common::unique_tenant("sa");
        let b = common::unique_tenant("sb");
        let mut on_a = Client::new(&f, &a);
        on_a.send("POST", "/set/secret/a-data").await;
        assert!(on_a.cookie.is_some());
        // The same (valid, signed) cookie presented on tenant B reaches nothing there.
        let mut on_b = Client {
            tenant: b.clone(),
            ..on_a.clone()
        };
        let r = on_b.send("GET", "/get/secret").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, ""));
        // ... and is left alone: clearing it would log the user out of A.
        assert_eq!(r.set_cookie, None, "another tenant's cookie was cleared");
        assert_eq!(on_a.send("GET", "/get/secret").await.body, "a-data");
        // Writing on B starts B's own session with a fresh id, never A's id.
        let mut on_b = Client {
            cookie: on_a.cookie.clone(),
            ..on_b
        };
        on_b.send("POST", "/set/secret/b-data").await;
        assert_ne!(on_b.cookie, on_a.cookie);
        // A is untouched.
        assert_eq!(on_a.send("GET", "/get/secret").await.body, "a-data");
        assert_eq!(on_b.send("GET", "/get/secret").await.body, "b-data");
    }

    pub(super) async fn login_cycles_id_and_logout(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("login");
        let mut c = Client::new(&f, &t);
        c.send("POST", "/set/cart/3-items").await;
        let before = c.cookie.clone().unwrap();
        let r = c.send("POST", "/login/alice").await;
        assert_eq!(r.status, StatusCode::OK);
        let after = c.cookie.clone().unwrap();
        assert_ne!(before, after, "login must issue a new id");
        // Data survived the id change; the user is set.
        assert_eq!(c.send("GET", "/get/cart").await.body, "3-items");
        assert_eq!(c.send("GET", "/me").await.body, "alice");
        // The pre-login id is dead.
        let mut old = Client {
            cookie: Some(before),
            ..c.clone()
        };
        assert_eq!(old.send("GET", "/get/cart").await.body, "");
        // The user's index lists exactly the new session.
        let list = f.store.list_user_sessions(&t, "alice").await.unwrap();
        assert_eq!(list.len(), 1);
        assert!(
            after.ends_with(list[0].id.as_str()),
            "index holds the new id"
        );
        assert!(list[0].expires_in > Duration::from_secs(3600));
        assert_eq!(f.events("cycle"), 1);
        // Logout: cookie removed, session and index entry gone.
        let r = c.send("POST", "/logout").await;
        assert!(r.set_cookie.unwrap().contains("Max-Age=0"));
        assert!(c.cookie.is_none());
        let mut replay = Client {
            cookie: Some(after),
            ..c.clone()
        };
        assert_eq!(replay.send("GET", "/me").await.body, "");
        assert!(
            f.store
                .list_user_sessions(&t, "alice")
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub(super) async fn logout_everywhere(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("everywhere");
        let mut devices = Vec::new();
        for _ in 0..3 {
            let mut c = Client::new(&f, &t);
            c.send("POST", "/login/bob").await;
            devices.push(c);
        }
        let mut other = Client::new(&f, &t);
        other.send("POST", "/login/carol").await;
        assert_eq!(
            f.store.list_user_sessions(&t, "bob").await.unwrap().len(),
            3
        );
        // One session ends on its own: the index follows.
        devices[0].send("POST", "/logout").await;
        assert_eq!(
            f.store.list_user_sessions(&t, "bob").await.unwrap().len(),
            2
        );
        assert_eq!(f.store.revoke_user_sessions(&t, "bob").await.unwrap(), 2);
        for d in &mut devices {
            assert_eq!(d.send("GET", "/me").await.body, "");
        }
        assert!(
            f.store
                .list_user_sessions(&t, "bob")
                .await
                .unwrap()
                .is_empty()
        );
        // Another user of the tenant is untouched.
        assert_eq!(other.send("GET", "/me").await.body, "carol");
        // Revoking one session by id.
        let id = f.store.list_user_sessions(&t, "carol").await.unwrap()[0]
            .id
            .clone();
        assert!(f.store.revoke(&t, &id).await.unwrap());
        assert_eq!(other.send("GET", "/me").await.body, "");
    }

    pub(super) async fn concurrent_updates_are_not_lost(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("conc");
        let mut c = Client::new(&f, &t);
        c.send("POST", "/set/seed/0").await;
        let mut tasks = Vec::new();
        for i in 0..24 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let cookie = c.cookie.clone().unwrap();
                let r = c
                    .send_raw("POST", &format!("/set/k{i}/v{i}"), Some(cookie.as_bytes()))
                    .await;
                assert_eq!(r.status, StatusCode::OK);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let keys = c.send("GET", "/keys").await.body;
        let mut want: Vec<String> = (0..24).map(|i| format!("k{i}")).collect();
        want.push("seed".into());
        want.sort();
        assert_eq!(keys, want.join(","), "an update was lost");
    }

    pub(super) async fn no_save_on_server_error(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("fail");
        let mut c = Client::new(&f, &t);
        // A failing request never creates a session...
        let r = c.send("POST", "/fail/x").await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.set_cookie.is_none());
        // ...nor changes an existing one.
        c.send("POST", "/set/a/1").await;
        c.send("POST", "/fail/a").await;
        assert_eq!(c.send("GET", "/get/a").await.body, "1");
        assert_eq!(c.send("GET", "/keys").await.body, "a");
    }

    pub(super) async fn bad_cookies_mean_no_session(kind: Kind) {
        let f = fixture(kind, &[]);
        let t = common::unique_tenant("bad");
        let mut good = Client::new(&f, &t);
        good.send("POST", "/set/a/1").await;
        let pair = good.cookie.clone().unwrap();
        let value = pair.strip_prefix("__Host-sid=").unwrap().to_string();
        let mut flipped = value.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let other_secret = {
            let mut cfg = tenant_guard::config::SessionConfig::default();
            cfg.secret = Some(tenant_guard::config::Secret::new(
                "a-completely-different-secret-of-32-bytes+",
            ));
            let codec = tenant_guard::session::CookieCodec::from_config(&cfg);
            let id = tenant_guard::session::SessionId::generate();
            let sc = codec.encode(&t, &id);
            sc.to_str().unwrap().split(';').next().unwrap().to_string()
        };
        let cases: Vec<Vec<u8>> = vec![
            format!("__Host-sid={flipped}").into_bytes(),
            format!("__Host-sid={}", &value[..value.len() - 4]).into_bytes(),
            format!("__Host-sid={}", &value[10..]).into_bytes(),
            b"__Host-sid=".to_vec(),
            b"__Host-sid=garbage".to_vec(),
            format!("__Host-sid={}", "A".repeat(10_000)).into_bytes(),
            b"__Host-sid=\xff\xfe\xfd".to_vec(),
            other_secret.into_bytes(),
        ];
        for cookie in cases {
            let r = good.send_raw("GET", "/get/a", Some(&cookie)).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{:?}",
                String::from_utf8_lossy(&cookie)
            );
            assert_eq!(r.body, "", "a bad cookie reached a session");
            assert!(
                r.set_cookie
                    .as_deref()
                    .is_some_and(|s| s.contains("Max-Age=0")),
                "bad cookie not cleared"
            );
            // Writing with a bad cookie issues a fresh session, not the good one.
            let r = good.send_raw("POST", "/set/z/9", Some(&cookie)).await;
            assert_eq!(r.status, StatusCode::OK);
            let fresh = r.set_cookie.expect("new session cookie");
            assert!(!fresh.contains("Max-Age=0"));
            assert_ne!(fresh.split(';').next().unwrap(), pair);
        }
        // The good session is unaffected.
        assert_eq!(good.send("GET", "/keys").await.body, "a");
        assert!(f.events("invalid_cookie") >= 1);
    }

    pub(super) async fn oversized_data_is_refused(kind: Kind) {
        let f = fixture(kind, &[("SESSION_MAX_BYTES", "1000")]);
        let t = common::unique_tenant("big");
        let mut c = Client::new(&f, &t);
        c.send("POST", "/set/a/1").await;
        assert_eq!(c.send("POST", "/big/500").await.status, StatusCode::OK);
        let r = c.send("POST", "/big/2000").await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.body.contains("SESSION_MAX_BYTES"), "{}", r.body);
        // Nothing was lost.
        assert_eq!(c.send("GET", "/keys").await.body, "a,big");
        assert_eq!(c.send("GET", "/get/a").await.body, "1");
    }

    pub(super) async fn inactivity_expiry_and_renewal(kind: Kind) {
        let f = fixture(
            kind,
            &[("SESSION_TTL", "1s"), ("SESSION_RENEW_INTERVAL", "100ms")],
        );
        let t = common::unique_tenant("idle");
        let mut c = Client::new(&f, &t);
        c.send("POST", "/set/a/1").await;
        // Reads keep it alive: each read after 600 ms renews the TTL (an expire, no write).
        for _ in 0..3 {
            f.advance(Duration::from_millis(600)).await;
            assert_eq!(c.send("GET", "/get/a").await.body, "1");
        }
        assert!(f.events("renew") >= 3, "renewals: {}", f.events("renew"));
        // Idle past the TTL: gone.
        f.advance(Duration::from_millis(1200)).await;
        assert_eq!(c.send("GET", "/get/a").await.body, "");
    }

    pub(super) async fn renewal_at_most_once_per_interval(kind: Kind) {
        let f = fixture(kind, &[("SESSION_RENEW_INTERVAL", "1h")]);
        let t = common::unique_tenant("renew");
        let mut c = Client::new(&f, &t);
        c.send("POST", "/set/a/1").await;
        for _ in 0..5 {
            f.advance(Duration::from_millis(20)).await;
            c.send("GET", "/get/a").await;
        }
        assert_eq!(f.events("renew"), 0);
        assert_eq!(f.events("save"), 0);
    }

    /// Writes move the inactivity TTL as reads do, at most once per renew interval: a
    /// write soon after the last renewal leaves the expiry where it was (the session ends
    /// one TTL after that renewal), writes spaced past the interval keep it alive.
    pub(super) async fn writes_renew_at_most_once_per_interval(kind: Kind) {
        let f = fixture(
            kind,
            &[("SESSION_TTL", "1s"), ("SESSION_RENEW_INTERVAL", "500ms")],
        );
        let t = common::unique_tenant("wrenew");
        let mut c = Client::new(&f, &t);
        c.send("POST", "/set/a/0").await;
        // 300 ms after the save: not due, the TTL stays (the session ends at 1 s).
        f.advance(Duration::from_millis(300)).await;
        assert_eq!(c.send("POST", "/set/a/1").await.body, "set");
        f.advance(Duration::from_millis(850)).await;
        assert_eq!(
            c.send("GET", "/get/a").await.body,
            "",
            "a write within the renew interval moved the TTL"
        );
        // Writes every 600 ms (past the interval): each renews, the session outlives its TTL.
        let mut c = Client::new(&f, &t);
        c.send("POST", "/set/a/0").await;
        for i in 1..=4 {
            f.advance(Duration::from_millis(600)).await;
            assert_eq!(c.send("POST", &format!("/set/a/{i}")).await.body, "set");
        }
        assert_eq!(c.send("GET", "/get/a").await.body, "4");
    }

    /// A renew interval longer than the TTL is taken as half the TTL: a session in use
    /// (reads or writes every 400 ms, TTL 1 s, interval 1 h) outlives its TTL.
    pub(super) async fn renew_interval_is_at_most_half_the_ttl(kind: Kind) {
        let f = fixture(
            kind,
            &[("SESSION_TTL", "1s"), ("SESSION_RENEW_INTERVAL", "1h")],
        );
        let t = common::unique_tenant("halfttl");
        let mut c = Client::new(&f, &t);
        c.send("POST", "/set/a/0").await;
        for i in 1..=5 {
            f.advance(Duration::from_millis(400)).await;
            if i % 2 == 0 {
                assert_eq!(c.send("GET", "/get/a").await.body, "0", "read {i}");
            } else {
                assert_eq!(c.send("POST", "/set/b/1").await.body, "set", "write {i}");
            }
        }
        assert_eq!(c.send("GET", "/get/a").await.body, "0");
    }

    pub(super) async fn absolute_expiry(kind: Kind) {
        let f = fixture(
            kind,
            &[
                ("SESSION_TTL", "1s"),
                ("SESSION_MAX_LIFETIME", "2s"),
                ("SESSION_RENEW_INTERVAL", "0"),
            ],
        );
        let t = common::unique_tenant("abs");
        let mut c = Client::new(&f, &t);
        c.send("POST", "/login/dave").await;
        // Active every 400 ms: alive until the absolute deadline, however active.
        for _ in 0..4 {
            f.advance(Duration::from_millis(400)).await;
            assert_eq!(c.send("GET", "/me").await.body, "dave");
            c.send("POST", "/set/touch/1").await;
        }
        f.advance(Duration::from_millis(500)).await;
        assert_eq!(
            c.send("GET", "/me").await.body,
            "",
            "outlived SESSION_MAX_LIFETIME"
        );
        assert!(
            f.store
                .list_user_sessions(&t, "dave")
                .await
                .unwrap()
                .is_empty()
        );
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test] async fn $check() { super::checks::$check(super::Kind::Memory).await } )*
        }
        mod redis_single {
            $( #[tokio::test] async fn $check() { super::checks::$check(super::Kind::Redis).await } )*
        }
        mod redis_cluster {
            $( #[tokio::test] async fn $check() { super::checks::$check(super::Kind::Cluster).await } )*
        }
    };
}

conformance!(
    lazy_lifecycle,
    tenant_binding,
    login_cycles_id_and_logout,
    logout_everywhere,
    concurrent_updates_are_not_lost,
    no_save_on_server_error,
    bad_cookies_mean_no_session,
    oversized_data_is_refused,
    inactivity_expiry_and_renewal,
    renewal_at_most_once_per_interval,
    writes_renew_at_most_once_per_interval,
    renew_interval_is_at_most_half_the_ttl,
    absolute_expiry,
);
