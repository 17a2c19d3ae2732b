//! Reads the variables of Redis connection (`REDIS_*`), the memory backend's bounds (`TG_MEMORY_*`), the circuit breaker (`TG_BREAKER_*`).

use std::num::{NonZeroU32, NonZeroU64};

use super::{BreakerConfig, Config, MemoryConfig, Reader, RedisConfig, RedisMode, TlsCa};
use crate::parse;
use crate::parse::{BOOL_FORM, BYTES_FORM, fmt_duration};
use crate::secret::{RedisUrl, Secret};

const URL_FORM: &str =
    "redis://[user:password@]host[:port][/db], rediss://... for TLS, or unix:///path/to/redis.sock";
const HOST_FORM: &str = "a host name or IP address without scheme or port, e.g. `cache.internal`";
const NODES_FORM: &str =
    "a comma-separated list of host:port or redis:// URLs, e.g. `10.0.0.1:7000,10.0.0.2:7000`";

pub(super) fn read_redis(r: &mut Reader) -> RedisConfig {
    let defaults = RedisConfig::default();
    let enabled = r.parse("REDIS_ENABLED", parse::boolean, BOOL_FORM);
    let tls = r
        .parse("REDIS_USE_TLS", parse::boolean, BOOL_FORM)
        .unwrap_or(false);
    let port = r.parse("REDIS_PORT", parse::port, "an integer from 1 to 65535");
    let db = r.parse(
        "REDIS_DB",
        parse::integer::<u32>,
        "a database number, 0 or more (usually 0-15)",
    );
    let host = r.parse(
        "REDIS_HOST",
        |v| {
            let v = v.trim();
            if v.contains("://")
                || v.contains('/')
                || v.contains('@')
                || v.contains(char::is_whitespace)
            {
                Err("not a bare host name".into())
            } else {
                Ok(v.to_string())
            }
        },
        HOST_FORM,
    );
    let username = r.get("REDIS_USERNAME").map(str::to_string);
    let password = r.get("REDIS_PASSWORD").map(Secret::new);

    let build = |host: &str, port: u16| -> Result<RedisUrl, String> {
        let scheme = if tls { "rediss" } else { "redis" };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]") // bare IPv6
        } else {
            host.to_string()
        };
        let mut url = url::Url::parse(&format!("{scheme}://{host}:{port}/{}", db.unwrap_or(0)))
            .map_err(|e| format!("cannot form a URL ({e})"))?;
        if let Some(user) = &username {
            url.set_username(user)
                .map_err(|()| "REDIS_USERNAME cannot be used in a URL".to_string())?;
        }
        if let Some(pw) = &password {
            url.set_password(Some(pw.expose()))
                .map_err(|()| "REDIS_PASSWORD cannot be used in a URL".to_string())?;
        }
        RedisUrl::parse(url.as_str()).map_err(String::from)
    };

    // REDIS_URL may carry a password: its raw value is never echoed in problems.
    let url = match r.get("REDIS_URL").map(str::to_string) {
        Some(raw) => match RedisUrl::parse(raw.trim()) {
            Ok(u) => Some(u),
            Err(reason) => {
                r.problem("REDIS_URL", None, reason.into(), URL_FORM);
                None
            }
        },
        None => None,
    };
    let nodes = match r.get("REDIS_CLUSTER_NODES").map(str::to_string) {
        Some(raw) => {
            let mut out = Vec::new();
            for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let parsed = if part.contains("://") {
                    RedisUrl::parse(part).map_err(String::from)
                } else {
                    match part.rsplit_once(':') {
                        Some((h, p)) => parse::port(p).and_then(|p| build(h, p)),
                        None => build(part, 6379),
                    }
                };
                match parsed {
                    Ok(u) => out.push(u),
                    Err(reason) => {
                        r.problem(
                            "REDIS_CLUSTER_NODES",
                            None,
                            format!("node `{}`: {reason}", redact_userinfo(part)),
                            NODES_FORM,
                        );
                    }
                }
            }
            if out.is_empty() && !r.problems.iter().any(|p| p.var == "REDIS_CLUSTER_NODES") {
                r.problem(
                    "REDIS_CLUSTER_NODES",
                    Some(&raw),
                    "no nodes listed".into(),
                    NODES_FORM,
                );
            }
            Some(out)
        }
        None => None,
    };

    let discrete_set = [
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_DB",
        "REDIS_PASSWORD",
        "REDIS_USERNAME",
    ]
    .into_iter()
    .filter(|v| r.get(v).is_some())
    .collect::<Vec<_>>();

    if url.is_some() && nodes.is_some() {
        r.problem(
            "REDIS_CLUSTER_NODES",
            None,
            "both REDIS_URL and REDIS_CLUSTER_NODES are set".into(),
            "only one of them: REDIS_URL for a single server, REDIS_CLUSTER_NODES for a cluster",
        );
    }
    if let Some(u) = &url {
        if !discrete_set.is_empty() {
            r.warnings.push(format!(
                "REDIS_URL is set, so {} {} ignored",
                discrete_set.join(", "),
                if discrete_set.len() == 1 { "is" } else { "are" }
            ));
        }
        if tls && !u.is_tls() {
            r.problem(
                "REDIS_USE_TLS",
                Some("true"),
                "REDIS_URL uses redis:// (plain TCP)".into(),
                "a rediss:// REDIS_URL when REDIS_USE_TLS=true, or REDIS_USE_TLS unset",
            );
        }
    }

    let wants_tls = tls || url.as_ref().is_some_and(RedisUrl::is_tls);
    if wants_tls && !cfg!(feature = "tls") {
        r.problem(
            if tls { "REDIS_USE_TLS" } else { "REDIS_URL" },
            None,
            "TLS was requested but this build has no TLS support".into(),
            "a build with the `tls` feature (cargo build --features tls), or a redis:// URL",
        );
    }

    let configured = url.is_some()
        || nodes.is_some()
        || r.get("REDIS_HOST").is_some()
        || r.get("REDIS_PORT").is_some();
    if !configured && enabled.is_none() {
        let stray: Vec<&str> = [
            "REDIS_PASSWORD",
            "REDIS_USERNAME",
            "REDIS_DB",
            "REDIS_USE_TLS",
            "REDIS_TLS_CA_FILE",
        ]
        .into_iter()
        .filter(|v| r.get(v).is_some())
        .collect();
        if !stray.is_empty() {
            r.warnings.push(format!(
                "{} set but no Redis is configured (set REDIS_URL, REDIS_HOST or REDIS_CLUSTER_NODES); using the in-memory backend",
                stray.join(", ")
            ));
        }
    }
    let mode = match enabled {
        Some(false) => RedisMode::Disabled,
        Some(true) | None if configured || enabled == Some(true) => {
            if let Some(nodes) = nodes {
                RedisMode::Cluster(nodes)
            } else if let Some(url) = url {
                RedisMode::Single(url)
            } else {
                let h = host.unwrap_or_else(|| "127.0.0.1".into());
                match build(&h, port.unwrap_or(6379)) {
                    Ok(u) => RedisMode::Single(u),
                    Err(reason) => {
                        r.problem("REDIS_HOST", Some(&h), reason, HOST_FORM);
                        RedisMode::Disabled
                    }
                }
            }
        }
        _ => RedisMode::Disabled,
    };

    const CA_FORM: &str = "a path to a PEM file of the CA certificate(s) that sign the Redis \
        server's certificate, used with rediss:// (or REDIS_USE_TLS=true)";
    let tls_ca = r.parse(
        "REDIS_TLS_CA_FILE",
        |v| TlsCa::read(v.trim()).map_err(String::from),
        CA_FORM,
    );
    if tls_ca.is_some() {
        let plain = match &mode {
            RedisMode::Disabled => false,
            RedisMode::Single(u) => !u.is_tls(),
            RedisMode::Cluster(nodes) => nodes.iter().any(|u| !u.is_tls()),
        };
        if plain {
            r.problem(
                "REDIS_TLS_CA_FILE",
                None,
                "set, but the Redis connection is plain TCP (redis://)".into(),
                "a rediss:// REDIS_URL or REDIS_USE_TLS=true with REDIS_TLS_CA_FILE",
            );
        } else if matches!(mode, RedisMode::Cluster(_)) {
            // The redis crate takes custom roots for a cluster only with rustls; this build
            // uses native-tls (OpenSSL), which reads SSL_CERT_FILE instead.
            r.problem(
                "REDIS_TLS_CA_FILE",
                None,
                "not supported with REDIS_CLUSTER_NODES".into(),
                "the CA in the system trust store, or SSL_CERT_FILE=<ca.pem> for OpenSSL, for a cluster",
            );
        }
    }

    let max_retries = r
        .parse(
            "REDIS_MAX_RETRIES",
            parse::integer::<u32>,
            "a whole number, 0 or more",
        )
        .unwrap_or(defaults.max_retries);
    let pool_size = r
        .parse(
            "REDIS_POOL_SIZE",
            |raw| {
                parse::integer::<usize>(raw).and_then(|n| match n {
                    1..=64 => Ok(std::num::NonZeroUsize::new(n).expect("n >= 1")),
                    _ => Err("must be 1 to 64".into()),
                })
            },
            "a whole number from 1 to 64",
        )
        .unwrap_or(defaults.pool_size);
    RedisConfig {
        mode,
        connect_timeout: r.duration("REDIS_CONNECT_TIMEOUT", defaults.connect_timeout, true),
        command_timeout: r.duration("REDIS_COMMAND_TIMEOUT", defaults.command_timeout, true),
        max_retries,
        tls_ca,
        pool_size,
    }
}

fn redact_userinfo(s: &str) -> String {
    match s.rsplit_once('@') {
        Some((_, rest)) => format!("[redacted]@{rest}"),
        None => s.to_string(),
    }
}

pub(super) fn read_memory(r: &mut Reader) -> MemoryConfig {
    let d = MemoryConfig::default();
    let count = |r: &mut Reader, var: &str, default: NonZeroU64| {
        r.parse(
            var,
            |v| {
                parse::integer::<u64>(v)
                    .and_then(|n| NonZeroU64::new(n).ok_or_else(|| "must be at least 1".into()))
            },
            "a whole number of entries, at least 1",
        )
        .unwrap_or(default)
    };
    let max_entries = count(r, "TG_MEMORY_MAX_ENTRIES", d.max_entries);
    MemoryConfig {
        max_entries,
        max_sessions: count(r, "TG_MEMORY_MAX_SESSIONS", max_entries),
        max_counters: count(r, "TG_MEMORY_MAX_COUNTERS", max_entries),
        max_bytes: r
            .parse(
                "TG_MEMORY_MAX_BYTES",
                |v| {
                    parse::bytes(v)
                        .and_then(|n| NonZeroU64::new(n).ok_or_else(|| "must be at least 1".into()))
                },
                BYTES_FORM,
            )
            .unwrap_or(d.max_bytes),
        purge_interval: r.duration("TG_MEMORY_PURGE_INTERVAL", d.purge_interval, true),
    }
}

pub(super) fn read_breaker(r: &mut Reader) -> BreakerConfig {
    let d = BreakerConfig::default();
    BreakerConfig {
        failure_threshold: r
            .parse(
                "TG_BREAKER_THRESHOLD",
                |v| {
                    parse::integer::<u32>(v)
                        .and_then(|n| NonZeroU32::new(n).ok_or_else(|| "must be at least 1".into()))
                },
                "a whole number of consecutive failures, at least 1",
            )
            .unwrap_or(d.failure_threshold),
        probe_interval: r.duration("TG_BREAKER_PROBE_INTERVAL", d.probe_interval, true),
    }
}

/// The effective values of these variables, as `tenant-guard config` prints them.
pub(super) fn effective_redis(c: &Config, push: &mut impl FnMut(&str, String)) {
    match &c.redis.mode {
        RedisMode::Disabled => {
            push("REDIS_ENABLED", "false (in-memory backend)".into());
        }
        RedisMode::Single(url) => {
            push("REDIS_ENABLED", "true".into());
            push("REDIS_URL", url.to_string());
        }
        RedisMode::Cluster(nodes) => {
            push("REDIS_ENABLED", "true".into());
            let list: Vec<String> = nodes.iter().map(ToString::to_string).collect();
            push("REDIS_CLUSTER_NODES", list.join(","));
        }
    }
    push(
        "REDIS_CONNECT_TIMEOUT",
        fmt_duration(c.redis.connect_timeout),
    );
    push(
        "REDIS_COMMAND_TIMEOUT",
        fmt_duration(c.redis.command_timeout),
    );
    push("REDIS_MAX_RETRIES", c.redis.max_retries.to_string());
    push("REDIS_POOL_SIZE", c.redis.pool_size.to_string());
    push(
        "REDIS_TLS_CA_FILE",
        c.redis.tls_ca.as_ref().map_or_else(
            || "(none: system trust store)".into(),
            |ca| ca.path().display().to_string(),
        ),
    );
}

/// The effective values of these variables, as `tenant-guard config` prints them.
pub(super) fn effective_memory(c: &Config, push: &mut impl FnMut(&str, String)) {
    push("TG_MEMORY_MAX_ENTRIES", c.memory.max_entries.to_string());
    push("TG_MEMORY_MAX_SESSIONS", c.memory.max_sessions.to_string());
    push("TG_MEMORY_MAX_COUNTERS", c.memory.max_counters.to_string());
    push("TG_MEMORY_MAX_BYTES", c.memory.max_bytes.to_string());
    push(
        "TG_MEMORY_PURGE_INTERVAL",
        fmt_duration(c.memory.purge_interval),
    );
    push(
        "TG_BREAKER_THRESHOLD",
        c.breaker.failure_threshold.to_string(),
    );
    push(
        "TG_BREAKER_PROBE_INTERVAL",
        fmt_duration(c.breaker.probe_interval),
    );
}
