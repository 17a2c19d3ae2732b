//! Serves the example on 127.0.0.1:3006. See `src/lib.rs`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3006").await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, example_custom_session_store::app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
