//! `tenant-guard demo`: the demo app on a free loopback port, loaded for a while by three
//! tenants (under, at and far over their limit); sessions and caching shown too; the table
//! and the client-side check that every rule held.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::Args;
use http::Method;
use tenant_guard::config::Config;
use tenant_guard::ratelimit::{Policy, Scope};
use tenant_guard::tenant::TenantId;
use tenant_guard_cli::loadgen::{self, Endpoint, LoadPlan, RuleCheck, Target, TenantLoad};

use super::report::{Outputs, run_with_progress};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Length of the load.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Where to write the chart (SVG).
    #[arg(long, default_value = "tenant-guard-demo.svg")]
    chart: PathBuf,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) fn run(args: DemoArgs) -> ExitCode {
    super::runtime(demo(
        args.duration,
        Outputs {
            json: args.json,
            chart: Some(args.chart),
            rules: Vec::new(),
            costs: Vec::new(),
        },
    ))
}

/// The demo scenario's settings; variables already in the environment win, so
/// `REDIS_URL=... tenant-guard demo` runs the same scenario on Redis.
const DEMO_VARS: &[(&str, &str)] = &[
    ("RATE_LIMIT_TENANT", "50/5s"),
    ("RATE_LIMIT_MAX", "100000"),
    ("RATE_LIMIT_WINDOW", "1m"),
    ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
    // An AI completion costs 5 units of the per-tenant quota, and each user may ask for
    // at most one completion per 5 s (rule `ai`).
    ("RATE_LIMIT_COSTS", "POST /api/ai/complete = 5"),
    ("RATE_LIMIT_ENDPOINTS", "ai: POST /api/ai/complete = 5/5s"),
    // At most 4 requests of a tenant in flight at once (the table's `inflight` column
    // shows the most the client had out).
    ("RATE_LIMIT_CONCURRENCY_TENANT", "4"),
    // Completions are metered in tokens too: a tenant may use 200 per 5 s. Each asks for
    // `max_tokens` 64 and reserves 73 (body / 4 + 64); the model uses 34, so more than half
    // of each reservation comes back. Answers from the cache are charged here (the default,
    // `free`, refunds them) so that the budget meters every completion a tenant receives.
    (
        "RATE_LIMIT_TOKENS",
        "tenant: POST /api/ai/complete = 200/5s",
    ),
    ("RATE_LIMIT_TOKENS_CACHE_HITS", "charged"),
];

/// The demo's tenants: at half the per-tenant limit's rate, at it, and at four times it.
const TENANTS: [&str; 3] = ["calm", "steady", "flood"];

/// The demo app's AI completion route.
const AI_ROUTE: &str = "/api/ai/complete";

/// The demo's traffic mix, each endpoint with the route it matches in the demo app (what
/// rules and costs are written against).
fn mix() -> Vec<(Endpoint, &'static str)> {
    let ep = |method, path: &str, weight| Endpoint {
        method,
        path: path.into(),
        weight,
    };
    vec![
        (ep(Method::GET, "/api/items", 3), "/api/items"),
        (
            ep(Method::GET, "/api/reports/2026-11-22", 2),
            "/api/reports/{day}",
        ),
        (ep(Method::POST, "/api/ai/complete", 1), AI_ROUTE),
    ]
}

/// What the configuration says of AI completions: their cost, and the rules that count
/// them alone (`AI completions cost 5 (rule `ai`: 5/5s per user)`).
fn ai_summary(policy: &Policy) -> String {
    let rules: Vec<String> = policy
        .rules()
        .iter()
        .filter(|r| !r.shadow && r.endpoint.is_some() && r.applies(&Method::POST, AI_ROUTE))
        .map(|r| {
            let scope = if r.scope == Scope::Caller {
                " per user"
            } else {
                ""
            };
            format!("rule `{}`: {}{scope}", r.name, r.quota)
        })
        .collect();
    let cost = policy.cost(&Method::POST, AI_ROUTE);
    if rules.is_empty() {
        format!("AI completions cost {cost}")
    } else {
        format!("AI completions cost {cost} ({})", rules.join(", "))
    }
}

/// One HTTP/1.1 request on a fresh loopback connection: status, `Set-Cookie` pair, body.
async fn http1(
    addr: SocketAddr,
    method: &str,
    path: &str,
    tenant: &str,
    cookie: Option<&str>,
    body: &str,
) -> Option<(u16, Option<String>, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nX-Tenant-ID: {tenant}\r\n{cookie}\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let set_cookie = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("set-cookie")
            .then(|| v.trim().split(';').next().unwrap_or("").to_string())
    });
    Some((status, set_cookie, body.to_string()))
}

/// Logs in on each tenant and checks each cookie reaches its own tenant's session only.
async fn demo_sessions(addr: SocketAddr, tenants: &[&str]) -> bool {
    let mut ok = true;
    for (i, t) in tenants.iter().enumerate() {
        let login = http1(addr, "POST", "/login", t, None, r#"{"user":"admin"}"#).await;
        let Some((200, Some(cookie), _)) = login else {
            println!("sessions: login on {t} failed: {login:?}");
            return false;
        };
        let me = http1(addr, "GET", "/me", t, Some(&cookie), "").await;
        let mine = me
            .as_ref()
            .is_some_and(|(_, _, b)| b.contains(r#""user":"admin""#));
        let other = tenants[(i + 1) % tenants.len()];
        let there = http1(addr, "GET", "/me", other, Some(&cookie), "").await;
        let isolated = there
            .as_ref()
            .is_some_and(|(_, _, b)| b.contains(r#""user":null"#));
        ok &= mine && isolated;
    }
    println!(
        "sessions: logged in on {} (POST /login); each cookie reaches its tenant's session and \
         no other: {}",
        tenants.join(", "),
        if ok { "yes" } else { "NO" }
    );
    ok
}

/// Prints the cache line of the demo from `/cache/status`.
async fn demo_cache_summary(addr: SocketAddr) {
    let Some((200, _, body)) = http1(addr, "GET", "/cache/status", "-", None, "").await else {
        println!("cache: status unavailable");
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let c = &v["cache"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    println!(
        "cache: {} hits ({} from L1, {} from the store), {} misses, hit ratio {:.0}% \
         (reports: query category, TTL by the day's age; AI completions: AI category)",
        n("hits_l1") + n("hits_l2") + n("stale"),
        n("hits_l1"),
        n("hits_l2"),
        n("misses"),
        c["hit_ratio"].as_f64().unwrap_or(0.0) * 100.0
    );
}

async fn demo(duration: Duration, mut out: Outputs) -> ExitCode {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    for (k, v) in DEMO_VARS {
        if !vars.iter().any(|(name, _)| name == k) {
            vars.push((k.to_string(), v.to_string()));
        }
    }
    let cfg = match Config::from_vars(vars) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Every figure and check below comes from the effective configuration: the demo's
    // settings, or what the environment put in their place.
    let policy = &cfg.rate_limit.policy;
    let per_tenant = policy
        .rules()
        .iter()
        .find(|r| r.name == "per-tenant" && !r.shadow);
    let limit = per_tenant.map(|r| r.quota);
    // A tenant's plan may replace the per-tenant quota.
    let limit_of = |tenant: &str| {
        let plan = TenantId::new(tenant)
            .ok()
            .and_then(|t| policy.plan_of(&t).map(str::to_string));
        per_tenant.map(|r| policy.quota(r, plan.as_deref()))
    };
    let mix = mix();
    // RUST_LOG=tenant_guard=info prints each layer's span as it closes (on stderr).
    let metrics = tenant_guard::metrics::Metrics::new();
    let _telemetry = super::logs::init(false, None, &metrics);
    let app = match tenant_guard_cli::demo::app_with(&cfg, metrics) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on loopback: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(target) = listener.local_addr() else {
        return ExitCode::FAILURE;
    };
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            // Small writes (one event of a streamed answer) go out at once, not after the
            // client's delayed ACK.
            listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            }),
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let backend = match &cfg.redis.mode {
        tenant_guard::config::RedisMode::Disabled => "memory backend".to_string(),
        tenant_guard::config::RedisMode::Single(u) => format!("Redis at {}", u.host_port()),
        tenant_guard::config::RedisMode::Cluster(n) => {
            format!("Redis Cluster ({} seed nodes)", n.len())
        }
    };
    let limit_text = limit.map_or_else(|| "none".into(), |q| q.to_string());
    let in_flight = cfg.concurrency.tenant.map_or_else(String::new, |n| {
        format!(", at most {n} in flight per tenant")
    });
    let budgets: String = cfg
        .tokens
        .rules
        .iter()
        .map(|r| format!(", token budget `{}` {}", r.name, r.quota))
        .collect();
    println!(
        "tenant-guard demo: app on http://{target} ({backend}), per-tenant limit {limit_text}, \
         {}{in_flight}{budgets}",
        ai_summary(policy)
    );
    let sessions_ok = demo_sessions(target, &TENANTS).await;
    let endpoints: Vec<Endpoint> = mix.iter().map(|(ep, _)| ep.clone()).collect();
    // At the limit's rate, half of it, and four times it.
    let at = limit.map_or(10.0, |q| f64::from(q.limit.get()) / q.window.as_secs_f64());
    let tenants = TENANTS
        .into_iter()
        .zip([at / 2.0, at, at * 4.0])
        .map(|(name, rate)| TenantLoad {
            tenant: name.into(),
            rate,
            users: 5,
            endpoints: endpoints.clone(),
        })
        .collect();
    let plan = LoadPlan {
        target: Target::Http(target),
        duration,
        max_in_flight: 256,
        tenant_header: "X-Tenant-ID".into(),
        user_header: cfg
            .rate_limit
            .user_header
            .clone()
            .unwrap_or_else(|| "X-User-ID".into()),
        tenants,
        // Half the completions ask for a stream: the table shows their first and last
        // byte, misses against cache hits.
        stream_share: 0.5,
    };
    println!(
        "sending for {}: calm {:.0}/s, steady {:.0}/s, flood {:.0}/s (open loop) ...",
        humantime::format_duration(duration),
        at / 2.0,
        at,
        at * 4.0
    );
    let report = match run_with_progress(&plan).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let limit_pair = limit.map(|q| (q.limit.get(), q.window));
    // Every rule of the configuration, checked client-side in units (with its costs).
    out.rules = RuleCheck::from_policy(policy, &mix, &TENANTS);
    // And every token budget, in the tokens the answers report using.
    out.rules
        .extend(RuleCheck::from_budgets(&cfg.tokens, &mix, &TENANTS));
    out.costs = loadgen::costs_from_policy(policy, &mix);
    let (table, rules_held) = report.table_with_rules(limit_pair, &out.rules, &out.costs);
    print!("{table}");
    demo_cache_summary(target).await;
    server.abort();
    let mut held = true;
    if let Some(q) = limit {
        let mut plans_differ = false;
        for t in &report.tenants {
            let Some(tq) = limit_of(&t.tenant) else {
                continue;
            };
            plans_differ |= tq != q;
            let (l, w) = (tq.limit.get(), tq.window);
            let worst = loadgen::max_in_window(&t.admitted_at, w);
            if worst > l as usize {
                held = false;
                println!(
                    "LIMIT EXCEEDED: {} had {worst} admissions in one {} window (limit {l})",
                    t.tenant,
                    humantime::format_duration(w)
                );
            }
        }
        if held && plans_differ {
            println!(
                "every tenant held to its plan's per-tenant limit in every window (client-side check)"
            );
        } else if held {
            println!(
                "every tenant held to at most {} admissions in any {} window (client-side check)",
                q.limit,
                humantime::format_duration(q.window)
            );
        }
    }
    let title = format!("tenant-guard demo ({backend}, per-tenant limit {limit_text})");
    if rules_held {
        println!("every rule held in every window, counted in units (client-side check)");
    } else {
        held = false;
        println!("RULE EXCEEDED: a window admitted more units than its rule allows");
    }
    let written = out.write(&report, limit_pair, &title);
    if held && written && sessions_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
