//! Sessions against a real Redis: round trips counted with `MONITOR`, collision
//! refusal in the scripts, and outage modes with a killed server. (A login that survives a
//! restart of the app server process, through the `tenant-guard serve` binary, is in
//! `cli/tests/session_restart.rs`.)

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::session::{Session, SessionError, SessionLayer, SessionStore};
use tenant_guard::tenant::{TenantLayer, TenantResolver};
use tower::ServiceExt;

const SECRET: &str = "session-redis-test-secret-0123456789abcdefgh";

fn app(vars: &[(&str, String)]) -> (Router, Metrics) {
    let mut all: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    all.push(("SESSION_SECRET".into(), SECRET.into()));
    all.push(("TG_BREAKER_THRESHOLD".into(), "1".into()));
    let config = Config::from_vars(all).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let store = SessionStore::from_config(&config, backend, &metrics);
    async fn get_a(session: Session) -> Result<String, SessionError> {
        Ok(session.get::<String>("a").await?.unwrap_or_default())
    }
    async fn set_a(session: Session) -> Result<&'static str, SessionError> {
        session.insert("a", &"1").await?;
        Ok("ok")
    }
    async fn login(session: Session) -> Result<&'static str, SessionError> {
        session.cycle_id().await?;
        session.set_user_id(Some("erin")).await?;
        Ok("in")
    }
    async fn me(session: Session) -> Result<String, SessionError> {
        Ok(session.user_id().await?.unwrap_or_default())
    }
    let router = Router::new()
        .route("/a", get(get_a).post(set_a))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/noop", get(|| async { "noop" }))
        .layer(SessionLayer::from_config(&config.session, store))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    (router, metrics)
}

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
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
    let sc = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), sc)
}

/// `MONITOR` on a server: every command a client sends, in order. Commands run inside a
/// script are shown with a `lua` tag and are not round trips; they are left out.
struct Monitor {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    port: u16,
    marks: u32,
}

impl Monitor {
    fn start(port: u16) -> Self {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "MONITOR"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        common::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("redis-cli MONITOR");
        let out = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut m = Self {
            child,
            lines,
            port,
            marks: 0,
        };
        m.take(); // waits until MONITOR is live
        m
    }

    /// Client commands since the last call (the lowercase command names).
    fn take(&mut self) -> Vec<String> {
        self.marks += 1;
        let mark = format!("tg-mark-{}", self.marks);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            common::cli(self.port, &["ECHO", &mark]);
            std::thread::sleep(Duration::from_millis(20));
            let mut lines = self.lines.lock().unwrap();
            if let Some(pos) = lines.iter().position(|l| l.contains(&mark)) {
                let seen: Vec<String> = lines.drain(..=pos).collect();
                lines.clear();
                return seen
                    .iter()
                    .filter(|l| !l.contains(" lua]") && !l.contains("tg-mark-") && l != &"OK")
                    .filter_map(|l| l.split('"').nth(1).map(str::to_ascii_lowercase))
                    .filter(|c| {
                        !["ping", "client", "hello", "select", "echo"].contains(&c.as_str())
                    })
                    .collect();
            }
            drop(lines);
            assert!(Instant::now() < deadline, "MONITOR did not show the mark");
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trips_counted_by_monitor() {
    let server = common::RedisServer::start();
    let (app, _) = app(&[
        ("REDIS_URL", server.url()),
        ("SESSION_RENEW_INTERVAL", "1h".into()),
    ]);
    let (_, _, cookie) = send(&app, "POST", "/a", None).await;
    let cookie = cookie.unwrap();
    // Warm up (script loads), then watch.
    send(&app, "GET", "/a", Some(&cookie)).await;
    let mut monitor = Monitor::start(server.port);

    // A request that does not touch the session: no command at all.
    let (s, body, sc) = send(&app, "GET", "/noop", Some(&cookie)).await;
    assert_eq!((s, body.as_str(), sc), (StatusCode::OK, "noop", None));
    assert_eq!(
        monitor.take(),
        Vec::<String>::new(),
        "untouched session sent commands"
    );

    // A request that reads an existing session: one command, no script.
    let (_, body, _) = send(&app, "GET", "/a", Some(&cookie)).await;
    assert_eq!(body, "1");
    assert_eq!(monitor.take(), vec!["hgetall"]);

    // A request that changes it: the load and one save (the script).
    send(&app, "POST", "/login", Some(&cookie)).await;
    assert_eq!(monitor.take(), vec!["hgetall", "evalsha"]);

    // INFO commandstats agrees: those, the save script's own commands, nothing else.
    let stats = server.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_evalsha:calls="));
    assert!(stats.contains("cmdstat_hgetall:calls="));
    assert!(!stats.contains("cmdstat_get:"), "{stats}");
}

#[tokio::test]
async fn stored_layout_and_ttls() {
    let server = common::RedisServer::start();
    let (app, _) = app(&[
        ("REDIS_URL", server.url()),
        ("SESSION_TTL", "1h".into()),
        ("SESSION_MAX_LIFETIME", "2h".into()),
    ]);
    let (_, _, cookie) = send(&app, "POST", "/login", None).await;
    assert!(cookie.is_some());
    let keys = server.cli(&["--scan", "--pattern", "tg:session*"]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].starts_with("tg:session-index:{acme}:erin"),
        "{keys:?}"
    );
    assert!(keys[1].starts_with("tg:session:{acme}:"), "{keys:?}");
    assert_eq!(server.cli(&["TYPE", keys[1]]).trim(), "hash");
    assert_eq!(server.cli(&["HGET", keys[1], "_u"]).trim(), "erin");
    let ttl: i64 = server.cli(&["PTTL", keys[1]]).trim().parse().unwrap();
    assert!((3_500_000..=3_600_000).contains(&ttl), "session TTL {ttl}");
    let ttl: i64 = server.cli(&["PTTL", keys[0]]).trim().parse().unwrap();
    assert!(ttl > 3_500_000, "index TTL {ttl}");
}

#[test]
fn scripts_refuse_taken_ids() {
    let server = common::RedisServer::start();
    let script = include_str!("../lua/session_save.lua");
    let k = "tg:session:{acme}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let old = "tg:session:{acme}:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    let args = |mode: &str, rename: &str, key_from: &str| -> Vec<String> {
        [
            "EVAL",
            script,
            "4",
            k,
            k,
            k,
            key_from,
            mode,
            "60000",
            "600000",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            rename,
            "0",
            "0",
            "",
            "",
            "0",
            "1",
            "f:x",
            "\"1\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        server.cli(&a)
    };
    // Create on a free id works; a second create on the same id is refused (-1).
    assert_eq!(run(args("create", "", k)).lines().next(), Some("1"));
    assert_eq!(run(args("create", "", k)).lines().next(), Some("-1"));
    assert_eq!(server.cli(&["HGET", k, "f:x"]).trim(), "\"1\"");
    // Renaming another session onto a taken id is refused too, and loses nothing.
    server.cli(&["HSET", old, "_c", "1", "f:y", "2"]);
    server.cli(&["PEXPIRE", old, "60000"]);
    assert_eq!(
        run(args("update", "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", old))
            .lines()
            .next(),
        Some("-1")
    );
    assert_eq!(server.cli(&["HGET", old, "f:y"]).trim(), "2");
    // Updating a session that no longer exists resurrects nothing (0).
    server.cli(&["DEL", k]);
    assert_eq!(run(args("update", "", k)).lines().next(), Some("0"));
    assert_eq!(server.cli(&["EXISTS", k]).trim(), "0");
}

#[tokio::test]
async fn outage_closed_answers_503_only_where_the_session_is_used() {
    let mut server = common::RedisServer::start();
    let (app, _) = app(&[
        ("REDIS_URL", server.url()),
        ("REDIS_COMMAND_TIMEOUT", "300ms".into()),
    ]);
    let (_, _, cookie) = send(&app, "POST", "/a", None).await;
    let cookie = cookie.unwrap();
    server.kill();
    let started = Instant::now();
    let (s, body, _) = send(&app, "GET", "/a", Some(&cookie)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("Session store unavailable"));
    assert!(started.elapsed() < Duration::from_secs(5));
    let (s, body, _) = send(&app, "GET", "/noop", Some(&cookie)).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "noop"));
    // Back up: sessions work again (the killed server lost its data: a fresh session).
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, _) = send(&app, "POST", "/a", None).await;
        if s == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "sessions did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn outage_local_falls_back_to_memory_and_says_so() {
    let mut server = common::RedisServer::start();
    let (app, metrics) = app(&[
        ("REDIS_URL", server.url()),
        ("REDIS_COMMAND_TIMEOUT", "300ms".into()),
        ("SESSION_OUTAGE", "local".into()),
    ]);
    server.kill();
    let (s, body, cookie) = send(&app, "POST", "/login", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let cookie = cookie.expect("a local session was created");
    let (s, user, _) = send(&app, "GET", "/me", Some(&cookie)).await;
    assert_eq!((s, user.as_str()), (StatusCode::OK, "erin"));
    assert!(
        metrics
            .render()
            .lines()
            .any(|l| l.starts_with("tenant_guard_session_events_total{event=\"fallback\"}")),
        "fallback not visible in metrics"
    );
}

/// A plain update (a field written, nothing else) of a session due for renewal is one
/// transaction of plain commands, no script, and Redis still holds both lifetimes on its
/// own clock: the idle TTL is renewed, the absolute deadline (`PEXPIREAT .. LT`) would cap
/// it, and the user's index outlives the session. (A session whose deadline comes before
/// its idle TTL is never due: renewing cannot move it.)
#[tokio::test]
async fn plain_update_is_one_transaction_and_keeps_both_lifetimes() {
    let server = common::RedisServer::start();
    let (app, _) = app(&[
        ("REDIS_URL", server.url()),
        ("SESSION_TTL", "60s".into()),
        ("SESSION_MAX_LIFETIME", "1h".into()),
        ("SESSION_RENEW_INTERVAL", "0".into()),
    ]);
    let (_, _, cookie) = send(&app, "POST", "/login", None).await;
    let cookie = cookie.unwrap();
    send(&app, "GET", "/a", Some(&cookie)).await;
    let mut monitor = Monitor::start(server.port);
    // Renewal due (interval 0, and time has passed since the last save).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, _, _) = send(&app, "POST", "/a", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let indexed = [
        "hgetall",
        "multi",
        "hset",
        "pexpire",
        "pexpireat",
        "zadd",
        "pexpire",
        "exec",
    ];
    assert_eq!(monitor.take(), indexed);
    let key = server.cli(&["--scan", "--pattern", "tg:session:{acme}:*"]);
    let key = key.trim();
    assert_eq!(server.cli(&["HGET", key, "f:a"]).trim(), "\"1\"");
    let ttl: i64 = server.cli(&["PTTL", key]).trim().parse().unwrap();
    assert!(
        (55_000..=60_000).contains(&ttl),
        "idle TTL not renewed: {ttl}"
    );
    let index = server.cli(&["--scan", "--pattern", "tg:session-index:{acme}:*"]);
    let index_ttl: i64 = server.cli(&["PTTL", index.trim()]).trim().parse().unwrap();
    assert!(
        index_ttl >= ttl,
        "index {index_ttl} expires before its session {ttl}"
    );
    assert_eq!(send(&app, "GET", "/me", Some(&cookie)).await.1, "erin");
}

/// A plain update of a session renewed less than a renew interval ago writes only the
/// fields: `HSET` and `PEXPIRE .. NX` in one transaction (no `_r`, no `PEXPIREAT`, no index
/// command); the TTL is not moved, the index is untouched, the field lands.
#[tokio::test]
async fn plain_update_within_the_renew_interval_keeps_the_ttl() {
    let server = common::RedisServer::start();
    let (app, _) = app(&[
        ("REDIS_URL", server.url()),
        ("SESSION_TTL", "1h".into()),
        ("SESSION_RENEW_INTERVAL", "1h".into()),
    ]);
    let (_, _, cookie) = send(&app, "POST", "/login", None).await;
    let cookie = cookie.unwrap();
    let key = server.cli(&["--scan", "--pattern", "tg:session:{acme}:*"]);
    let key = key.trim().to_string();
    let index = server.cli(&["--scan", "--pattern", "tg:session-index:{acme}:*"]);
    let index = index.trim().to_string();
    // Lower both TTLs a little by hand (less than the renew interval, here half the TTL):
    // a renewing write would raise them again.
    server.cli(&["PEXPIRE", &key, "3500000"]);
    server.cli(&["PEXPIRE", &index, "3550000"]);
    let saved = server.cli(&["HGET", &key, "_r"]);
    let mut monitor = Monitor::start(server.port);
    let (status, _, _) = send(&app, "POST", "/a", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        monitor.take(),
        ["hgetall", "multi", "hset", "pexpire", "exec"]
    );
    assert_eq!(server.cli(&["HGET", &key, "f:a"]).trim(), "\"1\"");
    assert_eq!(server.cli(&["HGET", &key, "_r"]), saved, "_r moved");
    let ttl: i64 = server.cli(&["PTTL", &key]).trim().parse().unwrap();
    assert!((1..=3_500_000).contains(&ttl), "the TTL moved: {ttl}");
    let index_ttl: i64 = server.cli(&["PTTL", &index]).trim().parse().unwrap();
    assert!(
        (1..=3_550_000).contains(&index_ttl),
        "the index TTL moved: {index_ttl}"
    );
    assert_eq!(send(&app, "GET", "/a", Some(&cookie)).await.1, "1");
    assert_eq!(send(&app, "GET", "/me", Some(&cookie)).await.1, "erin");
}

/// A plain update that lands after the session was destroyed (here: deleted between the
/// request's load and its save) resurrects nothing: the request ends the session's cookie,
/// no key is left, and the user's index lists nothing.
#[tokio::test]
async fn plain_update_of_a_destroyed_session_leaves_nothing() {
    let server = common::RedisServer::start();
    let port = server.port;
    let config = Config::from_vars([
        ("REDIS_URL", server.url()),
        ("SESSION_SECRET", SECRET.to_string()),
    ])
    .unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let store = SessionStore::from_config(&config, backend, &metrics);
    let login = |session: Session| async move {
        session.cycle_id().await?;
        session.set_user_id(Some("erin")).await?;
        Ok::<_, SessionError>("in")
    };
    // Reads the session, has it deleted behind its back, then writes a field.
    let racing = move |session: Session| async move {
        session.get::<String>("a").await?;
        for key in common::cli(port, &["--scan", "--pattern", "tg:session:{acme}:*"]).lines() {
            common::cli(port, &["DEL", key]);
        }
        session.insert("a", &"late").await?;
        Ok::<_, SessionError>("written")
    };
    let app = Router::new()
        .route("/login", post(login))
        .route("/race", post(racing))
        .layer(SessionLayer::from_config(&config.session, store.clone()))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    let (_, _, cookie) = send(&app, "POST", "/login", None).await;
    let (status, _, set_cookie) = send(&app, "POST", "/race", Some(&cookie.unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        set_cookie.is_some_and(|c| c.ends_with('=')),
        "the cookie of a session gone meanwhile is removed"
    );
    assert_eq!(
        server.cli(&["--scan", "--pattern", "tg:session:{acme}:*"]),
        "",
        "a destroyed session was resurrected"
    );
    let acme = tenant_guard::tenant::TenantId::new("acme").unwrap();
    assert!(
        store
            .list_user_sessions(&acme, "erin")
            .await
            .unwrap()
            .is_empty()
    );
}

/// On a server that refuses the plain update (here an ACL without `PEXPIREAT`, as a server
/// before 7.0 refuses its `LT`; an update that keeps the TTL takes the same way when such a
/// server refuses `PEXPIRE .. NX`), a field write falls back to the save script: nothing
/// lost.
#[tokio::test]
async fn plain_update_refused_falls_back_to_the_script() {
    let server = common::RedisServer::start();
    server.cli(&[
        "ACL",
        "SETUSER",
        "tg",
        "on",
        ">tg-pass",
        "~*",
        "&*",
        "+@all",
        "-pexpireat",
    ]);
    let url = format!("redis://tg:tg-pass@127.0.0.1:{}", server.port);
    // Interval 0: the update renews (the way that sends `PEXPIREAT`).
    let (app, _) = app(&[("REDIS_URL", url), ("SESSION_RENEW_INTERVAL", "0".into())]);
    let (_, _, cookie) = send(&app, "POST", "/login", None).await;
    let cookie = cookie.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let scripts = |stats: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|v| v.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    let before = scripts(&server.cli(&["INFO", "commandstats"]));
    let (status, _, _) = send(&app, "POST", "/a", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let after = scripts(&server.cli(&["INFO", "commandstats"]));
    assert_eq!(
        after,
        before + 1,
        "the refused update was not saved by the script"
    );
    assert_eq!(send(&app, "GET", "/a", Some(&cookie)).await.1, "1");
    assert_eq!(send(&app, "GET", "/me", Some(&cookie)).await.1, "erin");
}

/// An id rotation that lands after the session was destroyed and a plain update left a
/// record without a creation time in its place: the rename refuses it (the session is
/// gone, its cookie cleared) instead of moving the fragment to a new id that nothing can
/// load.
#[tokio::test]
async fn rotation_refuses_a_record_without_a_creation_time() {
    let server = common::RedisServer::start();
    let port = server.port;
    let config = Config::from_vars([
        ("REDIS_URL", server.url()),
        ("SESSION_SECRET", SECRET.to_string()),
    ])
    .unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let store = SessionStore::from_config(&config, backend, &metrics);
    let start = |session: Session| async move {
        session.insert("a", &"1").await?;
        Ok::<_, SessionError>("started")
    };
    // Loads the session, which is then replaced behind its back by a fragment (what a
    // plain update writes after a logout), then rotates its id.
    let racing = move |session: Session| async move {
        session.get::<String>("a").await?;
        let keys = common::cli(port, &["--scan", "--pattern", "tg:session:{acme}:*"]);
        for key in keys.lines() {
            common::cli(port, &["DEL", key]);
            common::cli(port, &["HSET", key, "f:a", "\"late\""]);
        }
        session.cycle_id().await?;
        Ok::<_, SessionError>("rotated")
    };
    let app = Router::new()
        .route("/start", post(start))
        .route("/rotate", post(racing))
        .layer(SessionLayer::from_config(&config.session, store))
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    let (_, _, cookie) = send(&app, "POST", "/start", None).await;
    let (status, _, set_cookie) = send(&app, "POST", "/rotate", Some(&cookie.unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        set_cookie.as_deref().is_some_and(|c| c.ends_with('=')),
        "a new id was issued for a destroyed session: {set_cookie:?}"
    );
    let left = server.cli(&["--scan", "--pattern", "tg:session:{acme}:*"]);
    // Only the planted fragment remains, under its old id: nothing moved to a new one.
    assert_eq!(left.lines().count(), 1, "{left}");
    assert_eq!(server.cli(&["HEXISTS", left.trim(), "_c"]), "0");
}

/// A handle that creates a session and saves it, then changes it and saves again (a
/// detached session, or a handler calling `save()` before its last change): the second
/// save keeps the session. It used to send a creation time of 0 (unknown to the handle),
/// from which the plain update's `PEXPIREAT created+max LT` made a 1970 deadline and Redis
/// deleted the session while the save reported success.
#[tokio::test]
async fn second_save_of_a_new_session_keeps_it() {
    let server = common::RedisServer::start();
    let config = Config::from_vars([
        ("REDIS_URL", server.url()),
        ("SESSION_SECRET", SECRET.to_string()),
    ])
    .unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let store = SessionStore::from_config(&config, backend, &metrics);
    let acme = tenant_guard::tenant::TenantId::new("acme").unwrap();
    let session = Session::detached(acme, store);
    session.insert("a", &1).await.unwrap();
    let id = session.save().await.unwrap().expect("created");
    session.insert("b", &2).await.unwrap();
    assert_eq!(session.save().await.unwrap(), Some(id.clone()));
    let key = format!("tg:session:{{acme}}:{}", id.as_str());
    assert_eq!(
        server.cli(&["EXISTS", &key]).trim(),
        "1",
        "the session is gone"
    );
    assert_eq!(server.cli(&["HGET", &key, "f:b"]).trim(), "2");
    let ttl: i64 = server.cli(&["PTTL", &key]).trim().parse().unwrap();
    assert!(ttl > 0, "no TTL: {ttl}");
}

/// A renewal stamped a little ahead of this process's clock (ordinary skew against
/// Redis's `TIME`, here 5 s on a 1 h TTL) is taken as just renewed: reads send one
/// `HGETALL` each, not a renewal each (a client cannot make every request a write).
#[tokio::test]
async fn a_renewal_stamp_slightly_ahead_renews_nothing() {
    let server = common::RedisServer::start();
    let (app, _) = app(&[
        ("REDIS_URL", server.url()),
        ("SESSION_TTL", "1h".into()),
        ("SESSION_RENEW_INTERVAL", "1m".into()),
    ]);
    let (_, _, cookie) = send(&app, "POST", "/login", None).await;
    let cookie = cookie.unwrap();
    let key = server.cli(&["--scan", "--pattern", "tg:session:{acme}:*"]);
    let key = key.trim().to_string();
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 5_000;
    server.cli(&["HSET", &key, "_r", &ahead.to_string()]);
    let mut monitor = Monitor::start(server.port);
    for _ in 0..5 {
        assert_eq!(send(&app, "GET", "/me", Some(&cookie)).await.1, "erin");
    }
    assert_eq!(monitor.take(), ["hgetall"; 5]);
}
