//! `tenant-guard serve`: the demo app on an address, configured by the environment, until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::serve::ListenerExt;
use clap::Args;
use tenant_guard::config::Config;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed on
    /// stdout as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Log as JSON lines (filter with RUST_LOG).
    #[arg(long)]
    json_logs: bool,
}

pub(crate) fn run(args: ServeArgs) -> ExitCode {
    super::runtime(serve(args.addr, args.json_logs))
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
    let metrics = tenant_guard::metrics::Metrics::new();
    let _telemetry = super::logs::init(json_logs, Some("info"), &metrics);
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
    let app = match tenant_guard_cli::demo::app_with(&cfg, metrics) {
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
    // The bound address on stdout, so a caller that asked for port 0 learns the port the
    // process bound itself (no free-port race); the log line says the same.
    let addr = listener.local_addr().unwrap_or(addr);
    println!("listening on {addr}");
    tracing::info!(%addr, "tenant-guard demo app listening");
    let served = axum::serve(
        // Small writes (one event of a streamed answer) go out at once, not after the
        // client's delayed ACK.
        listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
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
