//! The `tenant-guard` command.
//!
//! ```text
//! tenant-guard demo      serve the demo app on a free loopback port, load it for ~15 s
//!                        with three tenants (under, at, far over their limit), print the table
//! tenant-guard serve     the demo multi-tenant app, configured by env vars
//! tenant-guard load      open-loop load against a server, table at the end
//! tenant-guard config    validate the environment and print the effective configuration
//! tenant-guard size      fill a Redis with N tenants' keys and report the memory they take
//! ```
//!
//! The demo app, the load generator and the sizing fill are this crate's library
//! (`tenant_guard_cli`); each subcommand's arguments and driver are in `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

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
    Demo(cmd::demo::DemoArgs),
    /// Serve the demo multi-tenant app (every variable of `tenant-guard config` applies).
    Serve(cmd::serve::ServeArgs),
    /// Open-loop load: a fixed arrival rate per tenant, whatever the server does.
    Load(cmd::load::LoadArgs),
    /// Fill a Redis with N tenants' keys (three rate-limit counters, a session and a cached
    /// query each, written through the crate's own code) and report used memory, bytes
    /// per tenant and per kind of key, and how tenants spread over hash slots.
    ///
    /// Use an empty server you started for it: the keys are left there, nothing is flushed.
    Size(cmd::size::SizeArgs),
    /// Validate the environment and print the effective configuration (secrets redacted).
    ///
    /// Exits 0 when the configuration is valid, 2 when any variable is invalid (all
    /// problems are listed).
    Config(cmd::config::ConfigArgs),
    /// Change a tenant's rate limits at runtime, in Redis: every instance applies them
    /// within a second (`set TENANT per-tenant=5000/1m plan=pro`, `get`, `clear`, `list`).
    Limits(cmd::limits::LimitsArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Load(args) => cmd::load::run(args),
        Command::Size(args) => cmd::size::run(args),
        Command::Config(args) => cmd::config::run(args),
        Command::Limits(args) => cmd::limits::run(args),
    }
}
