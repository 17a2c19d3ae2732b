//! The `tenant-guard` binary run as a process with a controlled environment: the `config`
//! command, and the endpoint grammar of the `load` flags.

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

/// `load --endpoint`, `--rule` and `--cost` take the text of the environment's entries
/// (`RATE_LIMIT_ENDPOINTS`, `RATE_LIMIT_COSTS`): here the very same strings configure the
/// in-process app and its client-side checks, and every rule holds.
#[test]
fn load_flags_take_the_environment_entries_text() {
    let rule = "ai: POST /api/ai/{*rest} = 5/5s";
    let cost = "POST /api/ai/{*rest} = 5";
    let out = run(
        &[
            ("RATE_LIMIT_TENANT", "50/5s"),
            ("RATE_LIMIT_USER_HEADER", "X-User-ID"),
            ("RATE_LIMIT_ENDPOINTS", rule),
            ("RATE_LIMIT_COSTS", cost),
        ],
        &[
            "load",
            "--in-process",
            "--duration",
            "2s",
            "--tenant",
            "acme:40:2",
            "--endpoint",
            "GET /api/items = 3",
            "--endpoint",
            "post /api/ai/complete",
            "--rule",
            "per-tenant = 50/5s",
            "--rule",
            rule,
            "--cost",
            cost,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rule `ai` (5/5s per user, POST /api/ai/{*rest}): 429 x"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule `per-tenant` (50/5s): 429 x"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every checked rule held in every window"),
        "{stdout}"
    );
}

/// Each flag's former form is refused before anything runs, naming the form to write.
#[test]
fn old_load_flag_forms_name_the_new_form() {
    for (flag, old, new) in [
        ("--endpoint", "GET:/api/items:5", "GET /api/items = 5"),
        ("--endpoint", "GET:/api/items", "GET /api/items"),
        (
            "--rule",
            "ai=5/5s:user@POST:/api/ai/complete",
            "ai: POST /api/ai/complete = 5/5s",
        ),
        (
            "--rule",
            "per-user=100/15m:user",
            "per-user = 100/15m per user",
        ),
        (
            "--cost",
            "POST:/api/ai/complete=5",
            "POST /api/ai/complete = 5",
        ),
    ] {
        let out = run(
            &[],
            &["load", "--in-process", "--tenant", "acme:1", flag, old],
        );
        assert_eq!(out.status.code(), Some(2), "{flag} {old}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("`{old}` is the old form; write `{new}`")),
            "{flag} {old}: {err}"
        );
    }
}

/// `--endpoint` sends requests: it needs a method and a path, not `*` or a route template.
#[test]
fn endpoint_flag_needs_a_method_and_a_path() {
    for (value, says) in [
        ("* /api/items", "a request needs one, e.g. `GET /api/items`"),
        ("GET /api/reports/{day}", "is a route template"),
        ("GET /api/items = 0", "weight must be at least 1"),
    ] {
        let out = run(
            &[],
            &[
                "load",
                "--in-process",
                "--tenant",
                "acme:1",
                "--endpoint",
                value,
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{value}: {err}");
    }
}
