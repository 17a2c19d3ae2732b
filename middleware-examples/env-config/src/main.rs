//! Loads `.env` + the environment, prints the effective configuration, serves on
//! 127.0.0.1:3003. See `src/lib.rs`.

use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match example_env_config::load(std::path::Path::new(".env"), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for (k, v) in config.effective() {
        eprintln!("{k:<28} {v}");
    }
    let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:3003").await else {
        eprintln!("error: cannot listen on 127.0.0.1:3003");
        return ExitCode::FAILURE;
    };
    eprintln!("listening on http://127.0.0.1:3003");
    let app = example_env_config::app(&config).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    if served.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
