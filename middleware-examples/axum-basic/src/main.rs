//! Serves the example on 127.0.0.1:3001. See `src/lib.rs`.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    // ConnectInfo gives the limiter each client's address.
    axum::serve(
        listener,
        example_axum_basic::app().into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
