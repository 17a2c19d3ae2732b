//! The example's own store through the session layer, over HTTP: the contract of
//! `SessionBackend` as a user's store must keep it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use example_custom_session_store::{TableStore, app_with};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tenant_guard::secret::Secret;
use tenant_guard::session::SessionConfig;
use tower::ServiceExt;

struct Browser {
    app: Router,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &Router) -> Self {
        Self {
            app: app.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        if let Some(sc) = res.headers().get("set-cookie") {
            let sc = sc.to_str().unwrap();
            self.cookie =
                (!sc.contains("Max-Age=0")).then(|| sc.split(';').next().unwrap().to_string());
        }
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

struct World {
    app: Router,
    store: TableStore,
    now: Arc<AtomicU64>,
}

fn world(ttl: Duration, max_lifetime: Duration) -> World {
    let now = Arc::new(AtomicU64::new(1_700_000_000_000));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let store = TableStore::new(clock);
    let mut config = SessionConfig::default();
    config.secret = Some(Secret::new("custom-store-test-secret-0123456789abcdef"));
    config.ttl = ttl;
    config.max_lifetime = max_lifetime;
    config.renew_interval = Duration::ZERO;
    World {
        app: app_with(store.clone(), &config),
        store,
        now,
    }
}

impl World {
    fn advance(&self, d: Duration) {
        self.now
            .fetch_add(u64::try_from(d.as_millis()).unwrap(), Ordering::SeqCst);
    }
}

#[tokio::test]
async fn login_read_and_write_fields_through_the_custom_store() {
    let w = world(Duration::from_secs(3600), Duration::from_secs(86_400));
    let mut b = Browser::new(&w.app);
    assert_eq!(b.send("POST", "/login", "alice").await.1, "alice");
    let first = b.cookie.clone().expect("a session cookie");
    assert_eq!(w.store.rows(), 1);
    assert_eq!(
        b.send("POST", "/note?theme=dark", "").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(b.send("GET", "/me", "").await.1, "alice theme=dark");
    // Login again: the id rotates, the data moves with it, the old cookie is worthless.
    b.send("POST", "/login", "alice").await;
    assert_ne!(b.cookie.as_deref(), Some(first.as_str()));
    assert_eq!(b.send("GET", "/me", "").await.1, "alice theme=dark");
    let mut stale = Browser::new(&w.app);
    stale.cookie = Some(first);
    assert_eq!(stale.send("GET", "/me", "").await.1, " ");
    assert_eq!(w.store.rows(), 1);
}

#[tokio::test]
async fn concurrent_writes_of_different_fields_are_all_kept() {
    let w = world(Duration::from_secs(3600), Duration::from_secs(86_400));
    let mut b = Browser::new(&w.app);
    b.send("POST", "/login", "bob").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut tab = Browser::new(&w.app);
        tab.cookie = b.cookie.clone();
        tasks.push(tokio::spawn(async move {
            tab.send("POST", &format!("/note?k{i:02}={i}"), "").await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::NO_CONTENT);
    }
    let (_, me) = b.send("GET", "/me", "").await;
    let expected: Vec<String> = (0..16).map(|i| format!("k{i:02}={i}")).collect();
    assert_eq!(me, format!("bob {}", expected.join(",")));
}

#[tokio::test]
async fn idle_and_absolute_expiry_end_the_session() {
    let w = world(Duration::from_secs(60), Duration::from_secs(150));
    let mut b = Browser::new(&w.app);
    b.send("POST", "/login", "carol").await;
    // Used every 50 s: the idle timeout never fires...
    for _ in 0..2 {
        w.advance(Duration::from_secs(50));
        assert_eq!(b.send("GET", "/me", "").await.1, "carol ");
    }
    // ...but the absolute lifetime does (created + 150 s).
    w.advance(Duration::from_secs(55));
    assert_eq!(b.send("GET", "/me", "").await.1, " ");
    // A new session, left alone past the idle timeout, is gone too.
    b.send("POST", "/login", "carol").await;
    w.advance(Duration::from_secs(61));
    assert_eq!(b.send("GET", "/me", "").await.1, " ");
}

#[tokio::test]
async fn logout_everywhere_revokes_every_session_of_the_user_only() {
    let w = world(Duration::from_secs(3600), Duration::from_secs(86_400));
    let (mut laptop, mut phone, mut other) = (
        Browser::new(&w.app),
        Browser::new(&w.app),
        Browser::new(&w.app),
    );
    laptop.send("POST", "/login", "dave").await;
    phone.send("POST", "/login", "dave").await;
    other.send("POST", "/login", "erin").await;
    assert_eq!(phone.send("POST", "/logout-everywhere", "").await.1, "2");
    assert_eq!(laptop.send("GET", "/me", "").await.1, " ");
    assert_eq!(phone.send("GET", "/me", "").await.1, " ");
    assert_eq!(other.send("GET", "/me", "").await.1, "erin ");
}
