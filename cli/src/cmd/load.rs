//! `tenant-guard load`: open-loop load against a server (or the demo app in process), a
//! per-tenant table at the end, optional rule checks, JSON and chart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tenant_guard::config::Config;
use tenant_guard::ratelimit::Quota;
use tenant_guard_cli::loadgen::{self, Cost, Endpoint, LoadPlan, RuleCheck, Target, TenantLoad};

use super::report::{Outputs, run_with_progress};

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
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
    /// An endpoint of the traffic mix, `METHOD /path [= WEIGHT]` (quoted), repeatable, e.g.
    /// "GET /api/items = 3" (default "GET /api/items").
    #[arg(long = "endpoint", value_parser = Endpoint::parse)]
    endpoints: Vec<Endpoint>,
    /// Most requests in flight; more are counted as skipped.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Share (0 to 1) of the POST requests sent with `"stream": true`; the streamed
    /// answers' time to first and last byte are reported per tenant (p50, p99).
    #[arg(long = "stream", default_value_t = 0.0, value_parser = parse_share)]
    stream_share: f64,
    /// The limit to check the results against, LIMIT/WINDOW (e.g. the per-tenant rule).
    #[arg(long, value_parser = Quota::parse)]
    limit: Option<Quota>,
    /// A server rule to check per tenant, repeatable: a RATE_LIMIT_ENDPOINTS entry,
    /// `[NAME:] METHOD /path = LIMIT/WINDOW` (per user), or `NAME = LIMIT/WINDOW` (every
    /// request, per tenant); `per user` or `per tenant` at the end says whose requests count.
    /// E.g. "ai: POST /api/ai/{*rest} = 5/5s", "per-tenant = 50/5s".
    #[arg(long = "rule", value_parser = RuleCheck::parse)]
    rules: Vec<RuleCheck>,
    /// A token budget to check per tenant, repeatable: a RATE_LIMIT_TOKENS entry, e.g.
    /// `tenant: POST /api/ai/{*rest} = 100000/1m`, checked in the tokens the 2xx answers
    /// report using (`usage.total_tokens`).
    #[arg(long = "tokens", value_parser = RuleCheck::parse_tokens)]
    budgets: Vec<RuleCheck>,
    /// Units a request costs, for the rule checks: a RATE_LIMIT_COSTS entry,
    /// `METHOD /path = N`, repeatable, e.g. "POST /api/ai/complete = 5".
    #[arg(long = "cost", value_parser = loadgen::parse_cost)]
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
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a share between 0 and 1")),
    }
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

pub(crate) fn run(args: LoadArgs) -> ExitCode {
    let LoadArgs {
        target,
        in_process,
        duration,
        tenants,
        scenario,
        endpoints,
        max_in_flight,
        stream_share,
        limit,
        mut rules,
        budgets,
        costs,
        tenant_header,
        user_header,
        json,
        chart,
    } = args;
    // Token budgets are checked like rules, in tokens.
    rules.extend(budgets);
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
                stream_share,
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
        stream_share,
    };
    let out = Outputs {
        json,
        chart: chart.clone(),
        rules,
        costs,
    };
    super::runtime(load(plan, limit, out))
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
