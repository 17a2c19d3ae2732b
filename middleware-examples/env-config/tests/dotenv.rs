//! `.env` under the environment, validated as one configuration.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use tower::ServiceExt;

fn dotenv(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[tokio::test]
async fn settings_from_the_file_drive_the_app() {
    let (_dir, path) = dotenv(include_str!("../.env.sample"));
    let config = example_env_config::load(&path, Vec::new()).unwrap();
    assert_eq!(config.cache.ttl_for("reports"), Duration::from_secs(7200));
    let app = example_env_config::app(&config);
    let req = || {
        let mut r = http::Request::get("/api/items")
            .header("x-org", "acme")
            .body(Body::empty())
            .unwrap();
        r.extensions_mut()
            .insert(ConnectInfo("192.0.2.1:9".parse::<SocketAddr>().unwrap()));
        r
    };
    for _ in 0..5 {
        let res = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["x-ratelimit-limit"],
            "5",
            "legacy headers from the file"
        );
    }
    assert_eq!(app.clone().oneshot(req()).await.unwrap().status(), 429);
}

#[test]
fn the_environment_wins_over_the_file() {
    let (_dir, path) = dotenv("RATE_LIMIT_MAX=5\nCACHE_TTL=10m\n");
    let env = vec![("RATE_LIMIT_MAX".to_string(), "9".to_string())];
    let config = example_env_config::load(&path, env).unwrap();
    assert_eq!(config.rate_limit.max.get(), 9);
    assert_eq!(config.cache.default_ttl, Duration::from_secs(600));
}

#[test]
fn bad_values_in_the_file_are_named() {
    let (_dir, path) = dotenv("RATE_LIMIT_WINDOW=abc\nREDIS_PORT=99999\n");
    let err = example_env_config::load(&path, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("RATE_LIMIT_WINDOW=\"abc\""), "{err}");
    assert!(err.contains("REDIS_PORT=\"99999\""), "{err}");
}
