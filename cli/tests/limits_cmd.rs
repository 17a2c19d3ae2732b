//! `tenant-guard limits` against a real redis-server, with two `tenant-guard serve`
//! instances watching it: a tenant's quota raised by the command is in force on both
//! within a second, printed back by `get` and `list`, refused when it names a rule the
//! configuration does not have, and cleared.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};
use std::time::Duration;

const VARS: &[(&str, &str)] = &[
    ("RATE_LIMIT_TENANT", "2/10m"),
    ("RATE_LIMIT_MAX", "100000"),
    ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
];

fn limits(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .env_clear()
        .envs(VARS.iter().copied())
        .env("REDIS_URL", url)
        .arg("limits")
        .args(args)
        .output()
        .expect("run tenant-guard limits")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn limits_set_reaches_every_serving_instance() {
    let server = common::RedisServer::start();
    let url = server.url();
    let mut env: Vec<(&str, &str)> = VARS.to_vec();
    env.push(("REDIS_URL", url.as_str()));
    let apps: Vec<common::ServeProcess> = (0..2)
        .map(|_| common::ServeProcess::start(env!("CARGO_BIN_EXE_tenant-guard"), &env))
        .collect();
    let tenant = "acme";
    let admitted = |n: usize| -> usize {
        (0..n)
            .filter(|i| {
                let port = apps[i % apps.len()].port;
                common::http(port, "GET", "/api/items", &[("X-Tenant-ID", tenant)], "").status
                    == 200
            })
            .count()
    };

    let set = limits(&url, &["set", tenant, "per-tenant=5/10m"]);
    assert!(set.status.success(), "{}", text(&set));
    assert_eq!(
        String::from_utf8_lossy(&set.stdout).trim(),
        "acme: per-tenant=5/600s"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(admitted(10), 5, "both instances apply the raised quota");

    let get = limits(&url, &["get", tenant]);
    assert_eq!(
        String::from_utf8_lossy(&get.stdout).trim(),
        "acme: per-tenant=5/600s"
    );
    let list = limits(&url, &["list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("acme: per-tenant=5/600s"));

    let bad = limits(&url, &["set", tenant, "nope=1/1m"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains("no rule is named `nope`"),
        "{}",
        text(&bad)
    );
    let bad = limits(&url, &["set", tenant, "per-tenant"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));

    let deny = limits(&url, &["deny", "user:spammer"]);
    assert!(deny.status.success(), "{}", text(&deny));
    let lists = limits(&url, &["lists"]);
    assert!(
        String::from_utf8_lossy(&lists.stdout).contains("deny: user:spammer"),
        "{}",
        text(&lists)
    );
    std::thread::sleep(Duration::from_millis(1200));
    let r = common::http(
        apps[1].port,
        "GET",
        "/api/items",
        &[("X-Tenant-ID", "other"), ("X-User-ID", "spammer")],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let bad = limits(&url, &["exempt", "planet:mars"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));

    let clear = limits(&url, &["clear", tenant]);
    assert_eq!(
        String::from_utf8_lossy(&clear.stdout).trim(),
        "acme: cleared"
    );
    let get = limits(&url, &["get", tenant]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "");
}

#[test]
fn limits_need_redis() {
    let out = Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .env_clear()
        .args(["limits", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("REDIS_URL"), "{}", text(&out));
}
