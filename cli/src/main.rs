//! The `tenant-guard` command.
//!
//! ```text
//! tenant-guard demo      serve the demo app on a free loopback port, load it for ~15 s
//!                        with three tenants (under, at, far over their limit), print the table
//! tenant-guard serve     the demo multi-tenant app, configured by env vars
//! tenant-guard load      open-loop load against a server, table at the end
//! tenant-guard config    validate the environment and print the effective configuration
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tenant_guard::config::Config;
use tenant_guard::ratelimit::Quota;
use tenant_guard_cli::loadgen::{self, Endpoint, LoadPlan, RuleCheck, Target, TenantLoad};

/// Tower layers for multi-tenant services: rate limits, sessions and caching on Redis.
#[derive(Debug, Parser)]
#[command(name = "tenant-guard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the `load` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the demo app on a free loopback port and load it for ~15 s with three tenants
    /// (one under, one at, one far over its limit); prints the per-tenant table.
    ///
    /// Memory backend unless REDIS_URL / REDIS_CLUSTER_NODES are set. Exits 1 if any
    /// window admitted more than the limit.
    Demo {
        /// Length of the load.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Where to write the chart (SVG).
        #[arg(long, default_value = "tenant-guard-demo.svg")]
        chart: PathBuf,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Serve the demo multi-tenant app (every variable of `tenant-guard config` applies).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Log as JSON lines (filter with RUST_LOG).
        #[arg(long)]
        json_logs: bool,
    },
    /// Open-loop load: a fixed arrival rate per tenant, whatever the server does.
    Load {
        /// Server address (loopback unless you name another explicitly).
        #[arg(
            long,
            required_unless_present = "in_process",
            conflicts_with = "in_process"
        )]
        target: Option<SocketAddr>,
        /// Drive the demo app (configured by env vars) in this process as a tower service,
        /// without sockets: measures the middleware alone.
        #[arg(long)]
        in_process: bool,
        /// How long to send (default 30s, or the scenario's).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Tenant traffic as NAME:RATE[:USERS] (requests per second), repeatable.
        #[arg(long = "tenant", required_unless_present = "scenario", value_parser = parse_tenant)]
        tenants: Vec<(String, f64, u32)>,
        /// A JSON scenario file (tenants, rates, users, endpoint mixes, duration, limit);
        /// flags given too take precedence over its duration and limit.
        #[arg(long, conflicts_with = "tenants")]
        scenario: Option<PathBuf>,
        /// Endpoint as METHOD:/path[:WEIGHT], repeatable (default GET:/api/items).
        #[arg(long = "endpoint", value_parser = parse_endpoint)]
        endpoints: Vec<Endpoint>,
        /// Most requests in flight; more are counted as skipped.
        #[arg(long, default_value_t = 512)]
        max_in_flight: usize,
        /// The limit to check the results against, LIMIT/WINDOW (e.g. the per-tenant rule).
        #[arg(long, value_parser = Quota::parse)]
        limit: Option<Quota>,
        /// A server rule to check per tenant, repeatable:
        /// NAME=LIMIT/WINDOW[:user][@METHOD:/path] (e.g. ai=5/5s:user@POST:/api/ai/complete).
        #[arg(long = "rule", value_parser = RuleCheck::parse)]
        rules: Vec<RuleCheck>,
        /// Units a request costs, for the rule checks: METHOD:/path=N, repeatable.
        #[arg(long = "cost", value_parser = parse_cost)]
        costs: Vec<Cost>,
        /// Header carrying the tenant.
        #[arg(long, default_value = "X-Tenant-ID")]
        tenant_header: String,
        /// Header carrying the user.
        #[arg(long, default_value = "X-User-ID")]
        user_header: String,
        /// Write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a chart of admitted and throttled requests per second (SVG).
        #[arg(long)]
        chart: Option<PathBuf>,
    },
    /// Fill a Redis with N tenants' keys (three rate-limit counters, a session and a cached
    /// query each, written through the crate's own code) and report used memory, bytes
    /// per tenant and per kind of key, and how tenants spread over hash slots.
    ///
    /// Use an empty server you started for it: the keys are left there, nothing is flushed.
    Size {
        /// The server: `redis://host:port[/db]` or `host:port`.
        #[arg(long)]
        target: String,
        /// Tenants to create.
        #[arg(long, default_value_t = 10_000)]
        tenants: u64,
        /// Concurrent writers.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Run even if the database already holds keys.
        #[arg(long)]
        allow_nonempty: bool,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Validate the environment and print the effective configuration (secrets redacted).
    ///
    /// Exits 0 when the configuration is valid, 2 when any variable is invalid (all
    /// problems are listed).
    Config {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

type Cost = ((http::Method, String), u32);

fn parse_cost(s: &str) -> Result<Cost, String> {
    let (ep, n) = s
        .rsplit_once('=')
        .ok_or("expected METHOD:/path=N, e.g. POST:/api/ai/complete=5")?;
    let (m, p) = ep.split_once(':').ok_or("expected METHOD:/path=N")?;
    let m = http::Method::from_bytes(m.as_bytes()).map_err(|_| format!("bad method `{m}`"))?;
    let n: u32 = n.trim().parse().map_err(|_| "N must be a whole number")?;
    Ok(((m, p.to_string()), n))
}

fn parse_tenant(s: &str) -> Result<(String, f64, u32), String> {
    let mut parts = s.split(':');
    let name = parts.next().unwrap_or_default().to_string();
    tenant_guard::tenant::TenantId::new(&name).map_err(|e| e.to_string())?;
    let rate: f64 = parts
        .next()
        .ok_or("expected NAME:RATE[:USERS], e.g. acme:20:5")?
        .parse()
        .map_err(|_| "RATE must be a number of requests per second")?;
    if !(rate > 0.0 && rate <= 100_000.0) {
        return Err("RATE must be above 0 and at most 100000".into());
    }
    let users = match parts.next() {
        Some(u) => u.parse().map_err(|_| "USERS must be a whole number")?,
        None => 1,
    };
    Ok((name, rate, users))
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let (method, rest) = s
        .split_once(':')
        .ok_or("expected METHOD:/path[:WEIGHT], e.g. GET:/api/items:3")?;
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let (path, weight) = match rest.rsplit_once(':') {
        Some((p, w)) if w.bytes().all(|b| b.is_ascii_digit()) && !w.is_empty() => {
            (p, w.parse().map_err(|_| "WEIGHT must be a whole number")?)
        }
        _ => (rest, 1),
    };
    if !path.starts_with('/') {
        return Err(format!("path `{path}` must start with `/`"));
    }
    Ok(Endpoint {
        method,
        path: path.to_string(),
        weight,
    })
}

/// What a scenario file gives: tenant loads, and optionally a duration and a limit.
type ScenarioParts = (Vec<TenantLoad>, Option<Duration>, Option<Quota>);

/// Reads a JSON scenario.
fn read_scenario(path: &Path) -> Result<ScenarioParts, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let s: loadgen::Scenario = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let limit = s
        .limit
        .as_deref()
        .map(Quota::parse)
        .transpose()
        .map_err(|e| format!("limit: {e}"))?;
    Ok((s.validate()?, s.duration, limit))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { json } => config(json),
        Command::Size {
            target,
            tenants,
            concurrency,
            allow_nonempty,
            json,
        } => runtime(size(target, tenants, concurrency, allow_nonempty, json)),
        Command::Serve { addr, json_logs } => runtime(serve(addr, json_logs)),
        Command::Load {
            target,
            in_process,
            duration,
            tenants,
            scenario,
            endpoints,
            max_in_flight,
            limit,
            rules,
            costs,
            tenant_header,
            user_header,
            json,
            chart,
        } => {
            let endpoints = if endpoints.is_empty() {
                vec![Endpoint {
                    method: http::Method::GET,
                    path: "/api/items".into(),
                    weight: 1,
                }]
            } else {
                endpoints
            };
            let (loads, duration, limit) = match scenario {
                Some(path) => match read_scenario(&path) {
                    Ok((loads, d, l)) => (
                        loads,
                        duration.or(d).unwrap_or(Duration::from_secs(30)),
                        limit.or(l),
                    ),
                    Err(e) => {
                        eprintln!("error: {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                },
                None => (
                    tenants
                        .into_iter()
                        .map(|(tenant, rate, users)| TenantLoad {
                            tenant,
                            rate,
                            users,
                            endpoints: endpoints.clone(),
                        })
                        .collect::<Vec<_>>(),
                    duration.unwrap_or(Duration::from_secs(30)),
                    limit,
                ),
            };
            let target = match (target, in_process) {
                (Some(addr), _) => Target::Http(addr),
                (None, _) => {
                    let cfg = match Config::from_env() {
                        Ok(cfg) => cfg,
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(2);
                        }
                    };
                    // The demo app needs a runtime to build (background tasks): one for it.
                    let rt = match tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::FAILURE;
                        }
                    };
                    let plan_target = {
                        let _g = rt.enter();
                        match tenant_guard_cli::demo::app(&cfg) {
                            Ok(app) => Target::InProcess(app),
                            Err(e) => {
                                eprintln!("error: {e}");
                                return ExitCode::FAILURE;
                            }
                        }
                    };
                    let plan = LoadPlan {
                        target: plan_target,
                        duration,
                        max_in_flight,
                        tenant_header,
                        user_header,
                        tenants: loads,
                    };
                    let out = Outputs {
                        json,
                        chart,
                        rules,
                        costs,
                    };
                    return rt.block_on(load(plan, limit, out));
                }
            };
            let plan = LoadPlan {
                target,
                duration,
                max_in_flight,
                tenant_header,
                user_header,
                tenants: loads,
            };
            let out = Outputs {
                json,
                chart: chart.clone(),
                rules,
                costs,
            };
            runtime(load(plan, limit, out))
        }
        Command::Demo {
            duration,
            chart,
            json,
        } => runtime(demo(
            duration,
            Outputs {
                json,
                chart: Some(chart),
                rules: Vec::new(),
                costs: Vec::new(),
            },
        )),
    }
}

fn runtime(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(json: bool) -> ExitCode {
    let cfg = match Config::from_env() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("(see .env.example or the README for every variable and its default)");
            return ExitCode::from(2);
        }
    };
    let lines = cfg.effective();
    if json {
        let map: serde_json::Map<String, serde_json::Value> = lines
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::from(v)))
            .collect();
        let out = serde_json::json!({ "config": map, "warnings": cfg.warnings() });
        println!("{out:#}");
    } else {
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        println!("# effective tenant-guard configuration (secrets redacted)");
        for (k, v) in &lines {
            println!("{k:<width$}  {v}");
        }
        for w in cfg.warnings() {
            eprintln!("warning: {w}");
        }
    }
    ExitCode::SUCCESS
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

async fn serve(addr: SocketAddr, json_logs: bool) -> ExitCode {
    init_logs(json_logs);
    let cfg = match Config::from_env() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let app = match tenant_guard_cli::demo::app(&cfg) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(%addr, "tenant-guard demo app listening");
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Files a run writes besides the table.
struct Outputs {
    json: Option<PathBuf>,
    chart: Option<PathBuf>,
    /// Rules to check per tenant, and request costs for them.
    rules: Vec<RuleCheck>,
    costs: Vec<Cost>,
}

impl Outputs {
    fn write(&self, report: &loadgen::Report, limit: Option<(u32, Duration)>, title: &str) -> bool {
        let mut ok = true;
        let mut put = |path: &Path, text: String, what: &str| match std::fs::write(path, text) {
            Ok(()) => println!("{what} written to {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ok = false;
            }
        };
        if let Some(p) = &self.json {
            let mut j = report.to_json(limit);
            let rows = report.rule_rows(&self.rules, &self.costs);
            if let Some(tenants) = j["tenants"].as_array_mut() {
                for (t, (_, lines, held)) in tenants.iter_mut().zip(rows) {
                    t["rules"] = serde_json::json!({ "lines": lines, "held": held });
                }
            }
            let text = format!("{j:#}\n");
            put(p, text, "results");
        }
        if let Some(p) = &self.chart {
            put(p, report.svg_chart(limit, title), "chart");
        }
        ok
    }
}

/// Runs the plan with a live progress bar on stderr (hidden when stderr is not a terminal).
async fn run_with_progress(plan: &LoadPlan) -> Result<loadgen::Report, loadgen::LoadError> {
    use std::sync::atomic::Ordering::Relaxed;
    let live = std::sync::Arc::new(loadgen::Live::default());
    let bar = indicatif::ProgressBar::new(plan.duration.as_secs().max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ticker = {
        let live = live.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(bar.elapsed().as_secs());
                bar.set_message(format!(
                    "sent {} allowed {} throttled {} errors {}",
                    live.sent.load(Relaxed),
                    live.ok.load(Relaxed),
                    live.throttled.load(Relaxed),
                    live.errors.load(Relaxed)
                ));
            }
        })
    };
    let result = loadgen::run_with(plan, &live).await;
    ticker.abort();
    bar.finish_and_clear();
    result
}

async fn load(plan: LoadPlan, limit: Option<Quota>, out: Outputs) -> ExitCode {
    eprintln!(
        "open-loop load on {} for {}: {}",
        plan.target,
        humantime::format_duration(plan.duration),
        plan.tenants
            .iter()
            .map(|t| format!("{} {}/s", t.tenant, t.rate))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match run_with_progress(&plan).await {
        Ok(report) => {
            let limit = limit.map(|q| (q.limit.get(), q.window));
            let (table, held) = report.table_with_rules(limit, &out.rules, &out.costs);
            print!("{table}");
            if !out.rules.is_empty() {
                println!(
                    "{}",
                    if held {
                        "every checked rule held in every window (client-side check)"
                    } else {
                        "RULE EXCEEDED: a window admitted more than its rule's limit"
                    }
                );
            }
            let title = format!("tenant-guard load on {}", plan.target);
            if out.write(&report, limit, &title) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn size(
    target: String,
    tenants: u64,
    concurrency: usize,
    allow_nonempty: bool,
    json: Option<PathBuf>,
) -> ExitCode {
    let raw = if target.contains("://") {
        target
    } else {
        format!("redis://{target}")
    };
    // The config module's URL type: validated, and printed with the password redacted.
    let target = match tenant_guard::config::RedisUrl::parse(&raw) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: --target: {e}; expected redis://host:port[/db] or host:port");
            return ExitCode::from(2);
        }
    };
    let url = target.expose().to_string();
    let keys: Result<u64, redis::RedisError> = async {
        let client = redis::Client::open(url.as_str())?;
        let mut c = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
        redis::cmd("DBSIZE").query_async(&mut c).await
    }
    .await;
    match keys {
        Err(e) => {
            eprintln!("error: cannot reach {target}: {e}");
            return ExitCode::FAILURE;
        }
        Ok(n) if n > 0 && !allow_nonempty => {
            eprintln!(
                "error: the database holds {n} keys; point --target at an empty server (or pass \
                 --allow-nonempty: the figures then include other writers)"
            );
            return ExitCode::FAILURE;
        }
        Ok(_) => {}
    }
    println!("filling {target} with {tenants} tenants ...");
    let plan = tenant_guard_cli::sizing::SizingPlan {
        url,
        tenants,
        concurrency,
    };
    let report = match tenant_guard_cli::sizing::run(&plan, move |n| {
        eprintln!("  {n} / {tenants} tenants");
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.table());
    if let Some(path) = json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) if std::fs::write(&path, &s).is_ok() => {
                println!("results written to {}", path.display());
            }
            _ => {
                eprintln!("error: cannot write {}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
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
];

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
    let limit = cfg
        .rate_limit
        .policy
        .rules()
        .iter()
        .find(|r| r.name == "per-tenant")
        .map(|r| r.quota);
    let app = match tenant_guard_cli::demo::app(&cfg) {
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
            listener,
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
    println!(
        "tenant-guard demo: app on http://{target} ({backend}), per-tenant limit {limit_text}, \
         AI completions cost 5 (rule `ai`: one per user per 5 s)"
    );
    let sessions_ok = demo_sessions(target, &["calm", "steady", "flood"]).await;
    let endpoints = vec![
        Endpoint {
            method: http::Method::GET,
            path: "/api/items".into(),
            weight: 3,
        },
        Endpoint {
            method: http::Method::GET,
            path: "/api/reports/2026-11-22".into(),
            weight: 2,
        },
        Endpoint {
            method: http::Method::POST,
            path: "/api/ai/complete".into(),
            weight: 1,
        },
    ];
    // At the limit's rate, half of it, and four times it.
    let at = limit.map_or(10.0, |q| f64::from(q.limit.get()) / q.window.as_secs_f64());
    let tenants = [("calm", at / 2.0), ("steady", at), ("flood", at * 4.0)]
        .into_iter()
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
        user_header: "X-User-ID".into(),
        tenants,
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
    // The demo's rules, checked client-side in units (an AI completion costs 5).
    let ai = (http::Method::POST, "/api/ai/complete".to_string());
    out.costs = vec![(ai, 5)];
    out.rules = ["per-tenant=50/5s", "ai=5/5s:user@POST:/api/ai/complete"]
        .iter()
        .filter_map(|r| RuleCheck::parse(r).ok())
        .collect();
    let (table, rules_held) = report.table_with_rules(limit_pair, &out.rules, &out.costs);
    print!("{table}");
    demo_cache_summary(target).await;
    server.abort();
    let mut held = true;
    if let Some((l, w)) = limit_pair {
        for t in &report.tenants {
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
        if held {
            println!(
                "every tenant held to at most {l} admissions in any {} window (client-side check)",
                humantime::format_duration(w)
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
