//! # Example: everything from environment variables, with a `.env` file
//!
//! What it shows: the twelve-factor way. Settings come from the process environment and,
//! for local development, from a `.env` file; the environment wins over the file. Every
//! value is validated at start-up and all problems are reported together, naming the
//! variable and the accepted form. The app itself has no settings in code.
//!
//! Run it:
//!
//! ```text
//! cp middleware-examples/env-config/.env.sample .env
//! cargo run -p example-env-config            # prints the effective config, then serves
//! curl -si -H 'X-Org: acme' localhost:3003/api/items
//! RATE_LIMIT_WINDOW=abc cargo run -p example-env-config   # error naming RATE_LIMIT_WINDOW
//! ```

use std::path::Path;

use axum::Router;
use axum::routing::get;
use tenant_guard::TenantGuard;
use tenant_guard::config::{Config, ConfigError};
use tenant_guard::tenant::TenantId;

/// Errors of loading the configuration.
#[derive(Debug)]
pub enum LoadError {
    /// The `.env` file exists but cannot be read or parsed.
    DotEnv(String),
    /// A variable is invalid.
    Config(ConfigError),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DotEnv(e) => write!(f, "{e}"),
            Self::Config(e) => write!(f, "{e}"),
        }
    }
}

/// Reads `dotenv` (if it exists) under `env`: variables in `env` win.
pub fn load(
    dotenv: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, LoadError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    if dotenv.exists() {
        let iter = dotenvy::from_path_iter(dotenv)
            .map_err(|e| LoadError::DotEnv(format!("{}: {e}", dotenv.display())))?;
        for item in iter {
            vars.push(item.map_err(|e| LoadError::DotEnv(format!("{}: {e}", dotenv.display())))?);
        }
    }
    for (k, v) in env {
        vars.retain(|(name, _)| name != &k);
        vars.push((k, v));
    }
    Config::from_vars(vars).map_err(LoadError::Config)
}

/// The app: two tenant-scoped routes plus the ops routes, all configured by `config`:
/// one [`TenantGuard`] (tenant, session, limits) around the routes.
pub fn app(config: &Config) -> Router {
    let guard = TenantGuard::from_config(config.clone()).expect("the parts of a valid config");
    Router::new()
        .route(
            "/api/items",
            get(|t: TenantId| async move { format!("items of {t}\n") }),
        )
        .route(
            "/api/reports/{day}",
            get(|t: TenantId| async move { format!("report of {t}\n") }),
        )
        .layer(guard.layer())
        .merge(guard.ops_router())
}
