//! Sessions against a real Redis through real HTTP: a login survives a restart of the app
//! server process (the `tenant-guard serve` binary), and its cookie stays bound to its tenant.

#[path = "../../tests/common/mod.rs"]
mod common;

const SECRET: &str = "session-redis-test-secret-0123456789abcdefgh";

fn start_serve(redis_url: &str) -> common::ServeProcess {
    common::ServeProcess::start(
        env!("CARGO_BIN_EXE_tenant-guard"),
        &[("REDIS_URL", redis_url), ("SESSION_SECRET", SECRET)],
    )
}

/// Status, `Set-Cookie` pair and body of one request with a tenant and maybe a cookie.
fn http(
    port: u16,
    method: &str,
    path: &str,
    tenant: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, Option<String>, String) {
    let mut headers = vec![("X-Tenant-ID", tenant)];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    let r = common::http(port, method, path, &headers, body);
    (r.status, r.cookie_pair(), r.body)
}

#[test]
fn login_survives_an_app_server_restart() {
    let redis = common::RedisServer::start();
    let serve = start_serve(&redis.url());
    let port = serve.port;
    let (status, cookie, body) = http(port, "POST", "/login", "acme", None, r#"{"user":"frank"}"#);
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.expect("login sets the session cookie");
    let (_, _, me) = http(port, "GET", "/me", "acme", Some(&cookie), "");
    assert!(me.contains(r#""user":"frank""#), "{me}");

    drop(serve); // the app process is killed
    let serve = start_serve(&redis.url());
    let port = serve.port;
    let (status, _, me) = http(port, "GET", "/me", "acme", Some(&cookie), "");
    assert_eq!(status, 200, "{me}");
    assert!(
        me.contains(r#""user":"frank""#),
        "session lost across the restart: {me}"
    );
    // The same cookie on another tenant reaches no session, and is left alone there
    // (clearing it would log the user out of acme).
    let (_, set_cookie, me) = http(port, "GET", "/me", "globex", Some(&cookie), "");
    assert!(me.contains(r#""user":null"#), "{me}");
    assert_eq!(set_cookie, None, "another tenant's cookie was cleared");
    let (_, _, me) = http(port, "GET", "/me", "acme", Some(&cookie), "");
    assert!(me.contains(r#""user":"frank""#), "{me}");
    // Logout ends it for good.
    let (status, _, _) = http(port, "POST", "/logout", "acme", Some(&cookie), "");
    assert_eq!(status, 200);
    let (_, _, me) = http(port, "GET", "/me", "acme", Some(&cookie), "");
    assert!(me.contains(r#""user":null"#), "{me}");
}
