//! The `tenant-guard` command.
//!
//! ```text
//! tenant-guard config          validate the environment and print the effective config
//! ```
//!
//! Later releases add `serve` (demo app) and `load` (load generator).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tenant_guard::config::Config;

/// Tower layers for multi-tenant services: rate limits, sessions and caching on Redis.
#[derive(Debug, Parser)]
#[command(name = "tenant-guard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { json } => config(json),
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
