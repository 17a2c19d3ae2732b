//! Configurations and limiters pointed at memory, a server or the cluster; unique tenants.

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use super::*;

/// A tenant id no other test uses, so tests can share a server without interfering.
pub fn unique_tenant(label: &str) -> tenant_guard::tenant::TenantId {
    static N: AtomicU16 = AtomicU16::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    tenant_guard::tenant::TenantId::new(&format!("{label}-{}-{n}-{nanos}", std::process::id()))
        .expect("valid tenant")
}

/// Makes a configuration on Redis fail loudly: rate-limit checks answer 503 instead of
/// falling back to the in-process limiter (`RATE_LIMIT_OUTAGE=closed`, unless the test sets
/// an outage mode itself), so a broken script or Redis path cannot pass for a working one.
pub fn strict_on_redis(vars: &mut Vec<(String, String)>) {
    if !vars.iter().any(|(k, _)| k == "RATE_LIMIT_OUTAGE") {
        vars.push(("RATE_LIMIT_OUTAGE".into(), "closed".into()));
    }
    if !vars.iter().any(|(k, _)| k == "SESSION_OUTAGE") {
        vars.push(("SESSION_OUTAGE".into(), "closed".into()));
    }
}

/// A rate limiter (with its backend and metrics) built from env-style variables, as an app
/// would build it.
pub fn build_limiter(
    vars: Vec<(String, String)>,
) -> (
    tenant_guard::ratelimit::RateLimiter,
    tenant_guard::backend::Backend,
    tenant_guard::metrics::Metrics,
) {
    let config = tenant_guard::config::Config::from_vars(vars).expect("config");
    let metrics = tenant_guard::metrics::Metrics::new();
    let backend = tenant_guard::backend::Backend::from_config(&config, &metrics).expect("backend");
    let limiter =
        tenant_guard::ratelimit::RateLimiter::from_config(&config, backend.clone(), &metrics);
    (limiter, backend, metrics)
}

/// A `GET route` check for `who` in tenant `t`.
pub fn get_check<'a>(
    t: &'a tenant_guard::tenant::TenantId,
    who: &'a tenant_guard::ratelimit::Identity,
    route: &'a str,
    cost: Option<u32>,
) -> tenant_guard::ratelimit::Check<'a> {
    static GET: http::Method = http::Method::GET;
    tenant_guard::ratelimit::Check {
        tenant: t,
        identity: who,
        method: &GET,
        route,
        cost,
        plan: None,
    }
}

/// Where a conformance suite runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Memory,
    Redis,
    Cluster,
}

/// `vars` plus what points a configuration at `target`, and the single-node server the
/// caller must keep alive for the test (the cluster is the shared one).
pub fn target_vars(
    target: Target,
    vars: &[(&str, &str)],
) -> (Vec<(String, String)>, Option<RedisServer>) {
    let mut all: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut server = None;
    match target {
        Target::Memory => {}
        Target::Redis => {
            let s = RedisServer::start();
            all.push(("REDIS_URL".into(), s.url()));
            server = Some(s);
            strict_on_redis(&mut all);
        }
        Target::Cluster => {
            all.push((
                "REDIS_CLUSTER_NODES".into(),
                shared_cluster().nodes_var.clone(),
            ));
            strict_on_redis(&mut all);
        }
    }
    (all, server)
}

/// Most of the sorted `times` in any window `(t - window, t]`: a client-side check that a
/// limit held (the load tool's `max_in_window`, for the library's own tests).
pub fn max_in_window(times: &[Duration], window: Duration) -> usize {
    (0..times.len())
        .map(|hi| hi + 1 - times.partition_point(|&t| t + window <= times[hi]))
        .max()
        .unwrap_or(0)
}

/// A GET of `path` with `headers` from 127.0.0.1 (axum's `ConnectInfo`: the address
/// per-IP rules count), for services driven in process with `oneshot`.
pub fn loopback_get(path: &str, headers: &[(&str, &str)]) -> axum::extract::Request {
    let mut b = http::Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(axum::body::Body::empty()).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))));
    req
}
