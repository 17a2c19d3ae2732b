//! `tenant-guard size`: fill a Redis with N tenants' keys through the library's own code and
//! report the memory they take.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct SizeArgs {
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
}

pub(crate) fn run(a: SizeArgs) -> ExitCode {
    super::runtime(size(
        a.target,
        a.tenants,
        a.concurrency,
        a.allow_nonempty,
        a.json,
    ))
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
