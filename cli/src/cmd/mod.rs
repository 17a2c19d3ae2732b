//! One module per subcommand: its arguments (clap) and what it runs.

use std::process::ExitCode;

pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod limits;
pub(crate) mod load;
mod logs;
mod report;
pub(crate) mod serve;
pub(crate) mod size;

/// Runs `f` to completion on a multi-threaded Tokio runtime.
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
