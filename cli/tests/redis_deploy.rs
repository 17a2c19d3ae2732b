//! Real Redis deployments: an ACL user limited to the commands in `docs/redis-acl.conf`,
//! `rename-command` hiding `KEYS` / `FLUSHALL`, a `maxmemory-policy` that may evict counters
//! and sessions (a warning in `/health/ready`, read on every primary of a cluster), and —
//! with `--features tls` — `rediss://` to a server whose certificate a CA made in the test
//! signs (`REDIS_TLS_CA_FILE`).
//!
//! Every test drives the demo app in-process (rate limits, sessions, both caches, tenant
//! invalidation, the ops routes) against a redis-server the harness starts, and checks in
//! Redis itself that the state is there and that the server's `ACL LOG` is empty.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tenant_guard::config::Config;
use tenant_guard::session::SessionStore;
use tenant_guard::tenant::TenantId;
use tower::ServiceExt;

const SECRET: &str = "redis-deploy-test-secret-0123456789abcdefgh";
const APP_PASSWORD: &str = "tg-app-test-password-9f3a";

/// The ACL line the README prints, with the test's password.
fn acl_line() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/redis-acl.conf");
    let text = std::fs::read_to_string(&path).expect("docs/redis-acl.conf");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "docs/redis-acl.conf holds one ACL line");
    assert!(lines[0].contains(">CHANGE-ME"), "{}", lines[0]);
    lines[0].replace(">CHANGE-ME", &format!(">{APP_PASSWORD}"))
}

/// An aclfile with the app's user and the harness' own (the default user, which the
/// harness' readiness check and these tests' inspections use).
fn write_aclfile(dir: &Path, app_line: &str) -> PathBuf {
    let path = dir.join("users.acl");
    std::fs::write(
        &path,
        format!("user default on nopass ~* &* +@all\n{app_line}\n"),
    )
    .expect("write aclfile");
    path
}

/// The demo's admin token (`DELETE /api/cache`).
const ADMIN: &str = "redis-deploy-admin-token-0123456789abcdef";

fn config(vars: &[(&str, String)]) -> Config {
    let mut all: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    all.push(("SESSION_SECRET".into(), SECRET.into()));
    all.push(("SESSION_COOKIE_SECURE".into(), "false".into()));
    all.push(("TG_ADMIN_TOKEN".into(), ADMIN.into()));
    Config::from_vars(all).expect("config")
}

fn app(vars: &[(&str, String)]) -> Router {
    tenant_guard_cli::demo::app(&config(vars)).expect("demo app")
}

struct Reply {
    status: StatusCode,
    body: Value,
    cookie: Option<String>,
    x_cache: Option<String>,
}

async fn send(app: &Router, method: &str, path: &str, cookie: Option<&str>, body: &str) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-tenant-id", "acme")
        .header("content-type", "application/json");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if method == "DELETE" {
        req = req.header("authorization", format!("Bearer {ADMIN}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let header = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let cookie = header("set-cookie").map(|c| c.split(';').next().unwrap_or("").to_string());
    let x_cache = header("x-cache");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        body,
        cookie,
        x_cache,
    }
}

/// Keys under `tg:` in the servers on `ports` (SCAN through redis-cli as the default user:
/// works with `KEYS` renamed away).
fn keys(ports: &[u16]) -> Vec<String> {
    let mut k: Vec<String> = ports
        .iter()
        .flat_map(|&port| {
            common::cli(port, &["--scan", "--pattern", "tg:*"])
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    k.sort();
    k
}

/// Waits until the app's cache subscribed to its invalidation channel (SUBSCRIBE worked)
/// on one of `ports`.
fn wait_subscribed(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out: Vec<String> = ports
            .iter()
            .map(|&port| common::cli(port, &["PUBSUB", "NUMSUB", "tg:cache-invalidate"]))
            .collect();
        if out
            .iter()
            .any(|o| o.lines().nth(1).is_some_and(|n| n.trim() != "0"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never subscribed: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs every Redis path of the crate through the demo app and checks each came from
/// Redis; returns the `/health/ready` body, and the app (whose connections stay open).
/// `ports` are plain ports of the server (every node of a cluster), for inspection as the
/// default user.
async fn exercise(vars: &[(&str, String)], ports: &[u16]) -> (Value, Router) {
    let router = self::app(vars);
    let app = &router;
    let ready = send(app, "GET", "/health/ready", None, "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["status"], "ready");

    // Sessions: login (cycle id, save), read back, logout.
    let login = send(app, "POST", "/login", None, r#"{"user":"alice"}"#).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let first_cookie = login.cookie.expect("a session cookie");
    // Logging in again on that session gives it a new id (the script renames it).
    let again = send(
        app,
        "POST",
        "/login",
        Some(&first_cookie),
        r#"{"user":"alice"}"#,
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let cookie = again.cookie.expect("a new session cookie");
    assert_ne!(cookie, first_cookie);
    let me = send(app, "GET", "/me", Some(&cookie), "").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["user"], "alice");
    assert!(me.body["login_at"].is_u64(), "{}", me.body);
    // The rate limit was decided by the script on Redis.
    assert_eq!(me.body["rate_limit"]["source"], "redis", "{}", me.body);

    // Query cache: a miss, then a hit.
    let first = send(app, "GET", "/api/reports/2024-01-01", None, "").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.x_cache.as_deref(), Some("MISS"));
    let second = send(app, "GET", "/api/reports/2024-01-01", None, "").await;
    assert_eq!(second.body, first.body);
    assert!(
        second
            .x_cache
            .as_deref()
            .is_some_and(|c| c.starts_with("HIT")),
        "{:?}",
        second.x_cache
    );
    // AI cache.
    let ai = send(app, "POST", "/api/ai/complete", None, r#"{"prompt":"hi"}"#).await;
    assert_eq!(ai.status, StatusCode::OK, "{}", ai.body);

    let stored = keys(ports);
    for kind in [
        "tg:ratelimit:{acme}:",
        "tg:session:{acme}:",
        "tg:query:{acme}:",
    ] {
        assert!(
            stored.iter().any(|k| k.starts_with(kind)),
            "no {kind}* key in {stored:?}"
        );
    }
    assert!(stored.iter().any(|k| k.starts_with("tg:ai:{acme}:")));

    // Invalidation: an INCR of the tenant's cache generation, and a PUBLISH to the other
    // instances (after the subscription is live, so the message has a receiver).
    wait_subscribed(ports);
    let dropped = send(app, "DELETE", "/api/cache", None, "").await;
    assert_eq!(dropped.status, StatusCode::OK, "{}", dropped.body);
    assert!(
        dropped.body["generation"].as_u64() >= Some(1),
        "{}",
        dropped.body
    );
    let stored = keys(ports);
    assert!(stored.iter().any(|k| k.starts_with("tg:cache-gen:{acme}")));
    let after = send(app, "GET", "/api/reports/2024-01-01", None, "").await;
    assert_eq!(after.x_cache.as_deref(), Some("MISS"), "{}", after.body);

    // The user's session index (list, then "log out everywhere") runs its script too.
    let config = config(vars);
    let metrics = tenant_guard::metrics::Metrics::new();
    let backend = tenant_guard::backend::Backend::from_config(&config, &metrics).unwrap();
    let store = SessionStore::from_config(&config, backend, &metrics);
    let acme = TenantId::new("acme").unwrap();
    let listed = store.list_user_sessions(&acme, "alice").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let login2 = send(app, "POST", "/login", None, r#"{"user":"alice"}"#).await;
    let cookie2 = login2.cookie.expect("a second session");
    assert_eq!(store.revoke_user_sessions(&acme, "alice").await.unwrap(), 2);
    let gone = send(app, "GET", "/me", Some(&cookie2), "").await;
    assert_eq!(gone.body["user"], Value::Null, "{}", gone.body);
    assert!(
        !keys(ports)
            .iter()
            .any(|k| k.starts_with("tg:session:{acme}:"))
    );

    // Status (DBSIZE) and logout (of a session that is gone: nothing to destroy).
    let status = send(app, "GET", "/cache/status", None, "").await;
    assert_eq!(status.body["state"], "ok", "{}", status.body);
    assert!(status.body["keys"].as_u64() > Some(0), "{}", status.body);
    let out = send(app, "POST", "/logout", Some(&cookie), "").await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert_eq!(out.body["logged_out"], false);

    (
        send(app, "GET", "/health/ready", None, "").await.body,
        router,
    )
}

fn assert_acl_log_empty(ports: &[u16]) {
    for &port in ports {
        let log = common::cli(port, &["ACL", "LOG"]);
        assert!(log.is_empty(), "commands were denied on {port}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_with_the_documented_commands_runs_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let aclfile = write_aclfile(dir.path(), &acl_line());
    let server = common::RedisServer::start_with(&["--aclfile", aclfile.to_str().unwrap()]);
    let url = format!("redis://tg-app:{APP_PASSWORD}@127.0.0.1:{}", server.port);
    let (ready, _app) = exercise(&[("REDIS_URL", url)], &[server.port]).await;
    assert_eq!(ready["maxmemory_policy"], "noeviction", "{ready}");
    assert_eq!(ready["warnings"], serde_json::json!([]), "{ready}");
    assert_acl_log_empty(&[server.port]);

    // The user really is limited: what the crate never needs is refused.
    let as_app = |args: &[&str]| {
        let mut all = vec![
            "--user",
            "tg-app",
            "--pass",
            APP_PASSWORD,
            "--no-auth-warning",
        ];
        all.extend_from_slice(args);
        server.cli(&all)
    };
    for denied in [
        &["FLUSHALL"][..],
        &["KEYS", "*"],
        &["CONFIG", "GET", "maxmemory"],
        &["GET", "other:key"],
        &["EVAL", "return 1", "0"],
    ] {
        let out = as_app(denied);
        assert!(out.contains("NOPERM"), "{denied:?} was allowed: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_on_a_cluster_runs_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let aclfile = write_aclfile(dir.path(), &acl_line());
    let cluster =
        common::RedisCluster::start_with_args(0, 2000, &["--aclfile", aclfile.to_str().unwrap()]);
    let nodes: Vec<String> = cluster
        .ports()
        .iter()
        .map(|p| format!("redis://tg-app:{APP_PASSWORD}@127.0.0.1:{p}"))
        .collect();
    let vars = [("REDIS_CLUSTER_NODES", nodes.join(","))];
    let (ready, _app) = exercise(&vars, &cluster.ports()).await;
    assert_eq!(ready["backend"], "redis-cluster", "{ready}");
    assert_eq!(ready["maxmemory_policy"], "noeviction", "{ready}");
    assert_acl_log_empty(&cluster.ports());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_keys_and_flushall_are_never_needed() {
    let server = common::RedisServer::start_with(&[
        "--rename-command",
        "KEYS",
        "",
        "--rename-command",
        "FLUSHALL",
        "",
    ]);
    assert!(server.cli(&["KEYS", "*"]).contains("unknown command"));
    let (ready, _app) = exercise(&[("REDIS_URL", server.url())], &[server.port]).await;
    assert_eq!(ready["warnings"], serde_json::json!([]), "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_maxmemory_policy_is_a_readiness_warning() {
    for policy in ["allkeys-lru", "volatile-ttl"] {
        let server = common::RedisServer::start_with(&["--maxmemory-policy", policy]);
        let app = app(&[("REDIS_URL", server.url())]);
        let ready = send(&app, "GET", "/health/ready", None, "").await;
        // Still ready: a warning, not an outage.
        assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
        assert_eq!(ready.body["status"], "ready");
        assert_eq!(ready.body["maxmemory_policy"], policy);
        let warnings = ready.body["warnings"].as_array().expect("warnings");
        assert_eq!(warnings.len(), 1, "{}", ready.body);
        let w = warnings[0].as_str().unwrap();
        assert!(w.contains(policy) && w.contains("noeviction"), "{w}");
        // Kept: a second probe says the same without asking again.
        let again = send(&app, "GET", "/health/ready", None, "").await;
        assert_eq!(again.body["warnings"], ready.body["warnings"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_policy_is_read_on_every_primary() {
    // Its own cluster: one primary is changed below.
    let cluster = common::RedisCluster::start();
    let vars = [("REDIS_CLUSTER_NODES", cluster.nodes_var())];
    let ready = send(&app(&vars), "GET", "/health/ready", None, "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(
        ready.body["maxmemory_policy"], "noeviction",
        "{}",
        ready.body
    );
    assert_eq!(ready.body["warnings"], serde_json::json!([]));
    // One primary of three evicts: that is the one reported.
    let last = cluster.nodes.last().unwrap();
    assert_eq!(
        last.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]),
        "OK"
    );
    let ready = send(&app(&vars), "GET", "/health/ready", None, "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(
        ready.body["maxmemory_policy"], "allkeys-lfu",
        "{}",
        ready.body
    );
    assert_eq!(ready.body["warnings"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_unknown_when_info_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let line = acl_line().replace(" +info", "");
    assert!(!line.contains("+info"));
    let aclfile = write_aclfile(dir.path(), &line);
    let server = common::RedisServer::start_with(&[
        "--aclfile",
        aclfile.to_str().unwrap(),
        "--maxmemory-policy",
        "allkeys-lru",
    ]);
    let url = format!("redis://tg-app:{APP_PASSWORD}@127.0.0.1:{}", server.port);
    let app = app(&[("REDIS_URL", url)]);
    let ready = send(&app, "GET", "/health/ready", None, "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(
        ready.body["maxmemory_policy"],
        Value::Null,
        "{}",
        ready.body
    );
    assert_eq!(ready.body["warnings"], serde_json::json!([]));
    // Everything else still works for that user.
    let me = send(&app, "GET", "/me", None, "").await;
    assert_eq!(me.body["rate_limit"]["source"], "redis", "{}", me.body);
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use std::process::Command;

    /// A CA and a server certificate for 127.0.0.1 / localhost signed by it, made with the
    /// `openssl` command in `dir`: `(ca.pem, server.pem, server.key)`.
    fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| {
                    panic!("`openssl` not found ({e}): install it (apt-get install openssl)")
                });
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tenant-guard test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        )
    }

    /// A server with a TLS port (the plain one stays, for the harness and inspection),
    /// the app's ACL user and `KEYS` / `FLUSHALL` renamed away: a production-like Redis.
    fn tls_server(dir: &Path) -> (common::RedisServer, u16, PathBuf) {
        let (ca, cert, key) = make_certs(dir);
        let aclfile = write_aclfile(dir, &acl_line());
        let tls_port = common::free_port();
        let server = common::RedisServer::start_with(&[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            ca.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
            "--aclfile",
            aclfile.to_str().unwrap(),
            "--rename-command",
            "KEYS",
            "",
            "--rename-command",
            "FLUSHALL",
            "",
        ]);
        (server, tls_port, ca)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rediss_with_a_ca_file_an_acl_user_and_renamed_commands() {
        let dir = tempfile::tempdir().unwrap();
        let (server, tls_port, ca) = tls_server(dir.path());
        let url = format!("rediss://tg-app:{APP_PASSWORD}@127.0.0.1:{tls_port}");
        let vars = [
            ("REDIS_URL", url),
            ("REDIS_TLS_CA_FILE", ca.to_str().unwrap().to_string()),
        ];
        let (ready, _app) = exercise(&vars, &[server.port]).await;
        assert_eq!(ready["warnings"], serde_json::json!([]), "{ready}");
        assert_acl_log_empty(&[server.port]);
        // The app's connections are the TLS ones (the plain port only saw redis-cli).
        let clients = server.cli(&["CLIENT", "LIST"]);
        let app_conns: Vec<&str> = clients
            .lines()
            .filter(|l| l.contains("user=tg-app"))
            .collect();
        assert!(!app_conns.is_empty(), "{clients}");
        assert!(
            app_conns
                .iter()
                .all(|l| l.contains(&format!("laddr=127.0.0.1:{tls_port}"))),
            "{clients}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rediss_without_the_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (server, tls_port, _ca) = tls_server(dir.path());
        let url = format!("rediss://tg-app:{APP_PASSWORD}@127.0.0.1:{tls_port}");
        // The test CA is in no trust store: the certificate does not verify.
        let app = app(&[("REDIS_URL", url), ("REDIS_CONNECT_TIMEOUT", "2s".into())]);
        let ready = send(&app, "GET", "/health/ready", None, "").await;
        assert_eq!(
            ready.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            ready.body
        );
        assert!(keys(&[server.port]).is_empty());
    }

    #[test]
    fn ca_file_problems_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _, key) = make_certs(dir.path());
        let ok = Config::from_vars([
            ("REDIS_URL", "rediss://127.0.0.1:6380"),
            ("REDIS_TLS_CA_FILE", ca.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(ok.redis.tls_ca.as_ref().unwrap().path(), ca);
        // A key is not a certificate.
        let err = Config::from_vars([
            ("REDIS_URL", "rediss://127.0.0.1:6380"),
            ("REDIS_TLS_CA_FILE", key.to_str().unwrap()),
        ])
        .unwrap_err();
        assert_eq!(err.problems()[0].var, "REDIS_TLS_CA_FILE");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
