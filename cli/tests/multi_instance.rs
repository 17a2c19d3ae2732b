//! Three app instances — separate `tenant-guard serve` processes, each with its own
//! connections — against one Redis and against the 3-master cluster: limits hold across
//! instances, a session created on one is seen on the others, concurrent identical cache
//! misses on all three compute once, and an invalidation on one reaches the others' L1.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

const SECRET: &str = "multi-instance-test-secret-0123456789abcdef";
const ADMIN: &str = "multi-instance-admin-token-0123456789abcdef";

fn start(target: (&str, &str)) -> common::ServeProcess {
    common::ServeProcess::start(
        env!("CARGO_BIN_EXE_tenant-guard"),
        &[
            target,
            ("SESSION_SECRET", SECRET),
            ("TG_ADMIN_TOKEN", ADMIN),
            ("RATE_LIMIT_TENANT", "100000/10m"),
            ("RATE_LIMIT_ENDPOINTS", "items: GET /api/items = 30/10m"),
            ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
        ],
    )
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    tenant: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> common::HttpReply {
    let mut headers = vec![("X-Tenant-ID", tenant)];
    headers.extend_from_slice(extra);
    common::http(port, method, path, &headers, body)
}

fn three_instances(target: (&str, &str)) {
    let apps: Vec<common::ServeProcess> = (0..3).map(|_| start(target)).collect();
    let ports: Vec<u16> = apps.iter().map(|a| a.port).collect();
    let tenant = format!("mi{}", std::process::id());

    // 1. One user's limit (30 per 10 min on GET /api/items) holds across the instances.
    let mut admitted = 0;
    for i in 0..90 {
        let r = http(
            ports[i % 3],
            "GET",
            "/api/items",
            &tenant,
            &[("X-User-ID", "u-1")],
            "",
        );
        match r.status {
            200 => admitted += 1,
            429 => {}
            s => panic!("unexpected status {s}: {}", r.body),
        }
    }
    assert_eq!(admitted, 30, "admissions across three instances");

    // 2. A session created on one instance is seen by the others.
    let login = http(
        ports[0],
        "POST",
        "/login",
        &tenant,
        &[],
        r#"{"user":"grace"}"#,
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login.header("set-cookie").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    for &p in &ports[1..] {
        let me = http(p, "GET", "/me", &tenant, &[("Cookie", &cookie)], "");
        assert!(me.body.contains(r#""user":"grace""#), "{}", me.body);
    }

    // 3. Concurrent identical misses on all three instances compute once.
    let body = r#"{"model":"demo","prompt":"the same question","temperature":0}"#;
    let handles: Vec<_> = (0..30)
        .map(|i| {
            let port = ports[i % 3];
            let tenant = tenant.clone();
            std::thread::spawn(move || http(port, "POST", "/api/ai/complete", &tenant, &[], body))
        })
        .collect();
    let replies: Vec<common::HttpReply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let first = &replies[0].body;
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(&r.body, first, "two computations: {} vs {first}", r.body);
    }

    // 4. An invalidation on one instance reaches another's L1.
    let path = "/api/reports/2020-01-01";
    let filled = http(ports[1], "GET", path, &tenant, &[], "");
    assert_eq!(filled.header("x-cache").as_deref(), Some("MISS"));
    assert_eq!(
        http(ports[1], "GET", path, &tenant, &[], "")
            .header("x-cache")
            .as_deref(),
        Some("HIT")
    );
    // The admin route needs the admin token.
    let refused = http(ports[0], "DELETE", "/api/cache", &tenant, &[], "");
    assert_eq!(refused.status, 401, "{}", refused.body);
    let auth = format!("Bearer {ADMIN}");
    let dropped = http(
        ports[0],
        "DELETE",
        "/api/cache",
        &tenant,
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(dropped.status, 200, "{}", dropped.body);
    let started = Instant::now();
    loop {
        let r = http(ports[1], "GET", path, &tenant, &[], "");
        if r.header("x-cache").as_deref() == Some("MISS") {
            assert_ne!(r.body, filled.body, "the old entry came back");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "invalidation never reached instance 2"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn three_instances_on_one_redis() {
    let server = common::RedisServer::start();
    three_instances(("REDIS_URL", &server.url()));
}

#[test]
fn three_instances_on_the_cluster() {
    let nodes = common::shared_cluster().nodes_var.clone();
    three_instances(("REDIS_CLUSTER_NODES", &nodes));
}
