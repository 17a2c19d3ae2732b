//! `tenant-guard config`: validate the environment and print the effective configuration.

use std::process::ExitCode;

use clap::Args;
use tenant_guard::config::Config;

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(ConfigArgs { json }: ConfigArgs) -> ExitCode {
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
