//! The `tenant-guard config` command, run as a process with a controlled environment.

use std::process::{Command, Output};

fn run(vars: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .env_clear()
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .expect("run tenant-guard")
}

#[test]
fn invalid_environment_names_every_variable_and_form() {
    let out = run(
        &[("RATE_LIMIT_WINDOW", "abc"), ("REDIS_PORT", "99999")],
        &["config"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RATE_LIMIT_WINDOW=\"abc\""), "{err}");
    assert!(err.contains("`500ms`, `30s`, `5m`, `24h`"), "{err}");
    assert!(err.contains("REDIS_PORT=\"99999\""), "{err}");
    assert!(err.contains("1 to 65535"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn valid_environment_prints_effective_config_with_secrets_redacted() {
    let secret = "s3ss10n-secret-that-is-long-enough-000";
    let out = run(
        &[
            ("REDIS_URL", "redis://app:hunter2pw@cache.internal:6380/1"),
            ("SESSION_SECRET", secret),
            ("RATE_LIMIT_MAX", "250"),
            ("CACHE_TTL_REPORTS", "2h"),
        ],
        &["config"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("hunter2pw"), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(
        text.contains("redis://[redacted]:[redacted]@cache.internal:6380/1"),
        "{text}"
    );
    assert!(text.contains("RATE_LIMIT_MAX"), "{text}");
    assert!(text.contains("250"), "{text}");
    assert!(text.contains("CACHE_TTL_REPORTS"), "{text}");

    let out = run(&[("REDIS_PASSWORD", "pw-in-json")], &["config", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["config"]["REDIS_ENABLED"], "false (in-memory backend)");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pw-in-json"));
}
