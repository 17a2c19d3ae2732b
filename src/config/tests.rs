use super::*;

fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(vars.iter().copied())
}

#[test]
fn defaults_match_existing_deployments() {
    let c = cfg(&[]).unwrap();
    assert_eq!(c.redis.mode, RedisMode::Disabled);
    assert_eq!(c.session.ttl, Duration::from_secs(86_400));
    assert_eq!(c.cache.query_ttl, Duration::from_secs(300));
    assert_eq!(c.cache.ai_ttl, Duration::from_secs(1800));
    assert_eq!(c.cache.default_ttl, Duration::from_secs(3600));
    assert_eq!(c.rate_limit.max.get(), 100);
    assert_eq!(c.rate_limit.window, Duration::from_secs(900));
    assert_eq!(c.key_prefix.as_str(), "tg");
    assert!(c.warnings().is_empty());
}

#[test]
fn plain_seconds_and_units() {
    let c = cfg(&[
        ("SESSION_TTL", "86400"),
        ("QUERY_CACHE_TTL", "5m"),
        ("REDIS_COMMAND_TIMEOUT", "250ms"),
        ("CACHE_TTL_REPORTS", "7200"),
        ("CACHE_TTL_USER_PROFILE", "2h"),
    ])
    .unwrap();
    assert_eq!(c.session.ttl, Duration::from_secs(86_400));
    assert_eq!(c.cache.query_ttl, Duration::from_secs(300));
    assert_eq!(c.redis.command_timeout, Duration::from_millis(250));
    assert_eq!(c.cache.ttl_for("reports"), Duration::from_secs(7200));
    assert_eq!(c.cache.ttl_for("user_profile"), Duration::from_secs(7200));
}

#[test]
fn every_problem_is_reported_with_var_and_form() {
    let err = cfg(&[
        ("RATE_LIMIT_WINDOW", "abc"),
        ("REDIS_PORT", "99999"),
        ("RATE_LIMIT_MAX", "0"),
        ("REDIS_ENABLED", "maybe"),
        ("CACHE_TTL_BAD-NAME", "5m"),
        ("CACHE_TTL_OK", "soon"),
    ])
    .unwrap_err();
    let vars: Vec<&str> = err.problems().iter().map(|p| p.var.as_str()).collect();
    for v in [
        "RATE_LIMIT_WINDOW",
        "REDIS_PORT",
        "RATE_LIMIT_MAX",
        "REDIS_ENABLED",
        "CACHE_TTL_BAD-NAME",
        "CACHE_TTL_OK",
    ] {
        assert!(vars.contains(&v), "{v} missing from {vars:?}");
    }
    let text = err.to_string();
    assert!(text.contains("RATE_LIMIT_WINDOW=\"abc\""), "{text}");
    assert!(text.contains("`5m`"), "{text}");
    assert!(text.contains("1 to 65535"), "{text}");
    assert!(
        text.starts_with("invalid configuration (6 problems)"),
        "{text}"
    );
}

#[test]
fn redis_url_and_discrete_vars() {
    let c = cfg(&[("REDIS_URL", "redis://:pw@cache:6380/3")]).unwrap();
    let RedisMode::Single(u) = &c.redis.mode else {
        panic!("{:?}", c.redis.mode)
    };
    assert_eq!(u.host_port(), "cache:6380");

    let c = cfg(&[
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_PORT", "6390"),
        ("REDIS_PASSWORD", "p@ss:w/rd"),
        ("REDIS_DB", "2"),
    ])
    .unwrap();
    let RedisMode::Single(u) = &c.redis.mode else {
        panic!()
    };
    assert_eq!(u.to_string(), "redis://:[redacted]@cache.internal:6390/2");
    assert!(u.expose().contains("p%40ss%3Aw%2Frd"), "{}", u.expose());

    // URL wins over discrete vars, with a warning rather than silently.
    let c = cfg(&[("REDIS_URL", "redis://a:1"), ("REDIS_HOST", "b")]).unwrap();
    assert!(c.warnings()[0].contains("REDIS_HOST"), "{:?}", c.warnings());

    // REDIS_ENABLED=false wins over everything.
    let c = cfg(&[("REDIS_URL", "redis://a:1"), ("REDIS_ENABLED", "false")]).unwrap();
    assert_eq!(c.redis.mode, RedisMode::Disabled);

    // Enabled with nothing else: the conventional local server.
    let c = cfg(&[("REDIS_ENABLED", "true")]).unwrap();
    let RedisMode::Single(u) = &c.redis.mode else {
        panic!()
    };
    assert_eq!(u.host_port(), "127.0.0.1:6379");
}

#[test]
fn cluster_nodes() {
    let c = cfg(&[
        (
            "REDIS_CLUSTER_NODES",
            "10.0.0.1:7000, 10.0.0.2:7001,redis://h:7002",
        ),
        ("REDIS_PASSWORD", "pw"),
    ])
    .unwrap();
    let RedisMode::Cluster(nodes) = &c.redis.mode else {
        panic!()
    };
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[1].host_port(), "10.0.0.2:7001");
    assert!(nodes[0].expose().contains(":pw@"));

    let err = cfg(&[("REDIS_CLUSTER_NODES", "a:1,b:notaport")]).unwrap_err();
    assert!(err.to_string().contains("node `b:notaport`"), "{err}");
    let err = cfg(&[("REDIS_CLUSTER_NODES", "a:1"), ("REDIS_URL", "redis://b")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("both REDIS_URL and REDIS_CLUSTER_NODES")
    );
}

#[test]
fn secrets_never_printed() {
    let secret = "correct-horse-battery-staple-0123456789";
    let c = cfg(&[
        ("REDIS_URL", "redis://user:topsecretpw@cache:6379"),
        ("SESSION_SECRET", secret),
    ])
    .unwrap();
    let dbg = format!("{c:?}");
    let eff = format!("{:?}", c.effective());
    for out in [&dbg, &eff] {
        assert!(!out.contains("topsecretpw"), "{out}");
        assert!(!out.contains(secret), "{out}");
    }
    // A bad REDIS_URL is reported without echoing it.
    let err = cfg(&[("REDIS_URL", "http://u:leakme@x")]).unwrap_err();
    assert!(!err.to_string().contains("leakme"), "{err}");
    assert!(err.to_string().contains("unsupported scheme"), "{err}");
    // A short secret is reported by length only.
    let err = cfg(&[("SESSION_SECRET", "shortsecret")]).unwrap_err();
    assert!(!err.to_string().contains("shortsecret"), "{err}");
    assert!(err.to_string().contains("too short (11 bytes)"), "{err}");
}

#[test]
fn tls_is_explicit() {
    let r = cfg(&[("REDIS_HOST", "h"), ("REDIS_USE_TLS", "true")]);
    if cfg!(feature = "tls") {
        let c = r.unwrap();
        let RedisMode::Single(u) = &c.redis.mode else {
            panic!()
        };
        assert!(u.is_tls());
    } else {
        let err = r.unwrap_err();
        assert_eq!(err.problems()[0].var, "REDIS_USE_TLS");
        assert!(err.to_string().contains("--features tls"));
    }
    let err = cfg(&[("REDIS_URL", "redis://h"), ("REDIS_USE_TLS", "yes")]).unwrap_err();
    assert!(err.problems().iter().any(|p| p.var == "REDIS_USE_TLS"));
}

#[test]
fn tenant_source_and_default() {
    let c = cfg(&[
        ("TG_TENANT_SOURCE", "subdomain:Example.COM"),
        ("TG_DEFAULT_TENANT", "public"),
    ])
    .unwrap();
    assert_eq!(
        c.tenant.source,
        TenantSource::Subdomain("example.com".into())
    );
    assert_eq!(c.tenant.default_tenant.unwrap().as_str(), "public");
    let err = cfg(&[("TG_TENANT_SOURCE", "cookie"), ("TG_DEFAULT_TENANT", "a*b")]).unwrap_err();
    assert_eq!(err.problems().len(), 2);
}

#[test]
fn millisecond_looking_timeouts_warn() {
    let c = cfg(&[("REDIS_CONNECT_TIMEOUT", "10000")]).unwrap();
    assert_eq!(c.redis.connect_timeout, Duration::from_secs(10_000));
    assert!(c.warnings()[0].contains("10000ms"), "{:?}", c.warnings());
}

#[test]
fn unknown_tg_vars_warn() {
    let c = cfg(&[("TG_KEY_PREFIXX", "x")]).unwrap();
    assert!(c.warnings()[0].contains("TG_KEY_PREFIXX"));
}

#[test]
fn empty_values_are_unset() {
    let c = cfg(&[("REDIS_URL", ""), ("RATE_LIMIT_MAX", "  ")]).unwrap();
    assert_eq!(c.redis.mode, RedisMode::Disabled);
    assert_eq!(c.rate_limit.max.get(), 100);
}

#[test]
fn session_settings_and_errors() {
    let old = "old-secret-old-secret-old-secret-0123";
    let c = cfg(&[
        ("SESSION_SECRET", "new-secret-new-secret-new-secret-0123"),
        ("SESSION_SECRET_PREVIOUS", old),
        ("SESSION_MAX_LIFETIME", "12h"),
        ("SESSION_RENEW_INTERVAL", "5m"),
        ("SESSION_COOKIE_NAME", "app_sid"),
        ("SESSION_COOKIE_SAMESITE", "Strict"),
        ("SESSION_COOKIE_HOST_PREFIX", "true"),
        ("SESSION_COOKIE_ENCRYPT", "yes"),
        ("SESSION_MAX_BYTES", "16KiB"),
        ("SESSION_OUTAGE", "local"),
    ])
    .unwrap();
    let s = &c.session;
    assert_eq!(s.max_lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(s.renew_interval, Duration::from_secs(300));
    assert_eq!(s.previous_secrets.len(), 1);
    assert_eq!(s.cookie_name, "app_sid");
    assert_eq!(s.cookie_same_site, SameSite::Strict);
    assert!(s.cookie_host_prefix && s.cookie_encrypt && s.cookie_secure);
    assert_eq!(s.max_bytes, 16 * 1024);
    assert_eq!(s.outage, SessionOutage::Local);
    assert!(!format!("{:?}", c.effective()).contains(old));
    let d = cfg(&[]).unwrap().session;
    assert_eq!(d.max_lifetime, Duration::from_secs(7 * 86_400));
    assert_eq!((d.cookie_name.as_str(), d.cookie_secure), ("sid", true));
    assert_eq!(d.outage, SessionOutage::Closed);

    let err = cfg(&[
        ("SESSION_COOKIE_SAMESITE", "sometimes"),
        ("SESSION_COOKIE_NAME", "bad name;"),
        ("SESSION_OUTAGE", "panic"),
        ("SESSION_SECRET_PREVIOUS", "short"),
        ("SESSION_MAX_BYTES", "0"),
    ])
    .unwrap_err()
    .to_string();
    for var in [
        "SESSION_COOKIE_SAMESITE",
        "SESSION_COOKIE_NAME",
        "SESSION_OUTAGE",
        "SESSION_SECRET_PREVIOUS",
        "SESSION_MAX_BYTES",
    ] {
        assert!(err.contains(var), "{var} missing from: {err}");
    }
    assert!(!err.contains("short\""), "{err}");
    let err = cfg(&[
        ("SESSION_COOKIE_HOST_PREFIX", "true"),
        ("SESSION_COOKIE_SECURE", "false"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("__Host-"), "{err}");
    let err = cfg(&[
        ("SESSION_COOKIE_SAMESITE", "none"),
        ("SESSION_COOKIE_SECURE", "false"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("without Secure"), "{err}");
}

#[test]
fn cache_settings_and_errors() {
    let c = cfg(&[
        ("CACHE_TTL_JITTER", "10%"),
        ("CACHE_STALE_TTL", "30s"),
        ("CACHE_LEASE_TTL", "2s"),
        ("CACHE_L1_MAX_BYTES", "0"),
        ("CACHE_MAX_BODY_BYTES", "256KiB"),
    ])
    .unwrap();
    assert_eq!(c.cache.jitter_percent, 10);
    assert_eq!(c.cache.stale, Duration::from_secs(30));
    assert_eq!(c.cache.lease, Duration::from_secs(2));
    assert_eq!((c.cache.l1_max_bytes, c.cache.max_body), (0, 256 * 1024));
    // The jitter variable is not mistaken for a category.
    assert!(c.cache.categories.is_empty());
    let err = cfg(&[
        ("CACHE_TTL_JITTER", "150"),
        ("CACHE_STALE_TTL", "soon"),
        ("CACHE_LEASE_TTL", "0"),
        ("CACHE_L1_MAX_BYTES", "lots"),
    ])
    .unwrap_err()
    .to_string();
    for var in [
        "CACHE_TTL_JITTER",
        "CACHE_STALE_TTL",
        "CACHE_LEASE_TTL",
        "CACHE_L1_MAX_BYTES",
    ] {
        assert!(err.contains(var), "{var} missing from: {err}");
    }
    assert!(err.contains("percentage from 0 to 100"), "{err}");
}

#[test]
fn outage_memory_size() {
    assert_eq!(cfg(&[]).unwrap().rate_limit.outage_keys, 100_000);
    let c = cfg(&[("RATE_LIMIT_OUTAGE_KEYS", "5000")]).unwrap();
    assert_eq!(c.rate_limit.outage_keys, 5000);
    let err = cfg(&[("RATE_LIMIT_OUTAGE_KEYS", "1")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("RATE_LIMIT_OUTAGE_KEYS=\"1\": must be at least 2"),
        "{err}"
    );
}

#[test]
fn tls_ca_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let pem = pem.to_str().unwrap();
    let problem = |vars: &[(&str, &str)]| {
        let err = cfg(vars).unwrap_err();
        let p = err
            .problems()
            .iter()
            .find(|p| p.var == "REDIS_TLS_CA_FILE")
            .unwrap_or_else(|| panic!("no REDIS_TLS_CA_FILE problem in {err}"))
            .clone();
        p.reason
    };
    let missing = dir.path().join("missing.pem");
    assert!(
        problem(&[
            ("REDIS_URL", "rediss://h"),
            ("REDIS_TLS_CA_FILE", missing.to_str().unwrap())
        ])
        .contains("cannot read")
    );
    assert!(
        problem(&[
            ("REDIS_URL", "rediss://h"),
            ("REDIS_TLS_CA_FILE", "/dev/zero")
        ])
        .contains("not a regular file")
    );
    // A FIFO is refused without opening it (opening would wait for a writer).
    let fifo = dir.path().join("ca.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        assert!(
            problem(&[
                ("REDIS_URL", "rediss://h"),
                ("REDIS_TLS_CA_FILE", fifo.to_str().unwrap())
            ])
            .contains("not a regular file")
        );
    }
    // A CA with a plain connection means TLS was meant but is not on.
    assert!(problem(&[("REDIS_URL", "redis://h"), ("REDIS_TLS_CA_FILE", pem)]).contains("plain"));
    assert!(
        problem(&[
            ("REDIS_CLUSTER_NODES", "rediss://a:7000,rediss://b:7000"),
            ("REDIS_TLS_CA_FILE", pem)
        ])
        .contains("not supported")
    );
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'x'; (1 << 20) + 1]).unwrap();
    assert!(
        problem(&[
            ("REDIS_URL", "rediss://h"),
            ("REDIS_TLS_CA_FILE", big.to_str().unwrap())
        ])
        .contains("larger than")
    );
    if cfg!(feature = "tls") {
        let c = cfg(&[("REDIS_URL", "rediss://h"), ("REDIS_TLS_CA_FILE", pem)]).unwrap();
        let ca = c.redis.tls_ca.as_ref().unwrap();
        assert!(ca.pem().starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert!(!format!("{c:?}").contains("MIIB"), "PEM bytes in Debug");
        assert!(
            c.effective()
                .iter()
                .any(|(k, v)| k == "REDIS_TLS_CA_FILE" && v == pem)
        );
    }
}

#[test]
fn rate_limit_windows_are_at_most_ten_years() {
    assert!(cfg(&[("RATE_LIMIT_WINDOW", "10y")]).is_ok());
    for (var, value) in [
        ("RATE_LIMIT_WINDOW", "11y"),
        ("RATE_LIMIT_WINDOW", "18446744073709551615"),
        ("RATE_LIMIT_TENANT", "1/11y"),
        ("RATE_LIMIT_BURST", "1/500000000000y"),
        ("RATE_LIMIT_ENDPOINTS", "GET /a = 1/11y"),
    ] {
        let err = cfg(&[(var, value)]).unwrap_err();
        assert_eq!(err.problems()[0].var, var, "{err}");
        assert!(err.to_string().contains("10 years"), "{var}={value}: {err}");
    }
}

#[test]
fn memory_bounds_per_kind_default_to_max_entries() {
    let c = cfg(&[]).unwrap();
    assert_eq!(
        (
            c.memory.max_entries.get(),
            c.memory.max_sessions.get(),
            c.memory.max_counters.get()
        ),
        (100_000, 100_000, 100_000)
    );
    // Lowering TG_MEMORY_MAX_ENTRIES still bounds everything, as it did before the split.
    let c = cfg(&[("TG_MEMORY_MAX_ENTRIES", "500")]).unwrap();
    assert_eq!(
        (c.memory.max_sessions.get(), c.memory.max_counters.get()),
        (500, 500)
    );
    let c = cfg(&[
        ("TG_MEMORY_MAX_ENTRIES", "500"),
        ("TG_MEMORY_MAX_SESSIONS", "20"),
        ("TG_MEMORY_MAX_COUNTERS", "1000000"),
    ])
    .unwrap();
    assert_eq!(
        (
            c.memory.max_entries.get(),
            c.memory.max_sessions.get(),
            c.memory.max_counters.get()
        ),
        (500, 20, 1_000_000)
    );
    assert!(c.warnings().is_empty());
    let printed = c.effective();
    assert!(printed.contains(&("TG_MEMORY_MAX_SESSIONS".into(), "20".into())));
    let err = cfg(&[
        ("TG_MEMORY_MAX_SESSIONS", "0"),
        ("TG_MEMORY_MAX_COUNTERS", "lots"),
    ])
    .unwrap_err();
    let vars: Vec<&str> = err.problems().iter().map(|p| p.var.as_str()).collect();
    assert_eq!(vars, ["TG_MEMORY_MAX_SESSIONS", "TG_MEMORY_MAX_COUNTERS"]);
}

/// Every variable `effective()` lists rejects a malformed value with a problem that names
/// it (none is silently ignored or defaulted).
#[test]
fn every_variable_rejects_a_malformed_value() {
    let names: Vec<String> = Config::default()
        .effective()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.starts_with('('))
        .collect();
    assert!(names.len() > 50, "{names:?}");
    for var in &names {
        let err = cfg(&[(var.as_str(), "@@not-valid@@")])
            .expect_err(&format!("{var} accepted a malformed value"));
        assert!(
            err.problems().iter().any(|p| &p.var == var),
            "{var}: the problem does not name it: {err}"
        );
    }
    // The category variables too.
    for var in ["CACHE_TTL_REPORTS", "CACHE_SCOPE_AI"] {
        let err = cfg(&[(var, "@@not-valid@@")]).unwrap_err();
        assert!(err.problems().iter().any(|p| p.var == var), "{err}");
    }
}

/// The rule set's cross-checks (done once, by `PolicyBuilder::build`) are each blamed on
/// the variable that names the offending thing, all reported together.
#[test]
fn policy_problems_name_their_variable() {
    let err = Config::from_vars([
        ("RATE_LIMIT_TENANT", "10/1s"),
        ("RATE_LIMIT_ENDPOINTS", "per-tenant: GET /a = 5/1s"),
        ("RATE_LIMIT_SHADOW", "ghost"),
        ("RATE_LIMIT_PLANS", "gold: phantom=5/1s"),
        ("RATE_LIMIT_TENANT_PLANS", "acme=platinum"),
    ])
    .unwrap_err();
    let vars: Vec<&str> = err.problems().iter().map(|p| p.var.as_str()).collect();
    for want in [
        "RATE_LIMIT_ENDPOINTS",
        "RATE_LIMIT_SHADOW",
        "RATE_LIMIT_PLANS",
        "RATE_LIMIT_TENANT_PLANS",
    ] {
        assert!(vars.contains(&want), "{want} missing: {err}");
    }
    let err = Config::from_vars([
        ("RATE_LIMIT_ALGORITHM", "exact"),
        ("RATE_LIMIT_MAX", "200000"),
    ])
    .unwrap_err();
    assert_eq!(err.problems()[0].var, "RATE_LIMIT_ALGORITHM", "{err}");
}

/// The string enums of the settings (strum derives): every value prints as the name the
/// environment accepts, parses back case-insensitively with whitespace around it, and an
/// unknown name is a problem naming the variable.
#[test]
fn string_enums_round_trip_through_the_environment() {
    use crate::cache::CacheScope;
    use crate::ratelimit::{Algorithm, ForwardedHeader, OutageMode};
    use crate::session::{SameSite, SessionOutage};
    fn round_trip<T>(values: &[T])
    where
        T: std::str::FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
    {
        for v in values {
            let text = v.to_string();
            assert_eq!(parse::choice::<T>(&text).ok().as_ref(), Some(v), "{text}");
            let shouted = format!("  {}  ", text.to_ascii_uppercase());
            assert_eq!(
                parse::choice::<T>(&shouted).ok().as_ref(),
                Some(v),
                "{shouted}"
            );
        }
        assert!(parse::choice::<T>("no-such-value").is_err());
    }
    round_trip(&[CacheScope::Auto, CacheScope::Tenant, CacheScope::User]);
    round_trip(&[Algorithm::Exact, Algorithm::Compact, Algorithm::Gcra]);
    round_trip(&[
        ForwardedHeader::XForwardedFor,
        ForwardedHeader::Forwarded,
        ForwardedHeader::XRealIp,
    ]);
    round_trip(&[OutageMode::Open, OutageMode::Closed, OutageMode::Local]);
    round_trip(&[SameSite::Strict, SameSite::Lax, SameSite::None]);
    round_trip(&[SessionOutage::Closed, SessionOutage::Local]);
    assert_eq!(ForwardedHeader::XRealIp.to_string(), "x-real-ip");
    assert_eq!(
        parse::choice::<Algorithm>("sliding"),
        Ok(Algorithm::Compact)
    );
    assert_eq!(parse::choice::<Algorithm>("log"), Ok(Algorithm::Exact));
    let err = Config::from_vars([("SESSION_COOKIE_SAMESITE", "sometimes")]).unwrap_err();
    assert_eq!(err.problems()[0].var, "SESSION_COOKIE_SAMESITE");
}

#[test]
fn redis_pool_size_is_one_to_sixty_four() {
    // Default: one connection per core, 2 to 8.
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(cfg(&[]).unwrap().redis.pool_size.get(), cores.clamp(2, 8));
    assert_eq!(
        cfg(&[("REDIS_POOL_SIZE", "1")])
            .unwrap()
            .redis
            .pool_size
            .get(),
        1
    );
    assert_eq!(
        cfg(&[("REDIS_POOL_SIZE", "64")])
            .unwrap()
            .redis
            .pool_size
            .get(),
        64
    );
    for bad in ["0", "65", "-1", "many"] {
        let err = cfg(&[("REDIS_POOL_SIZE", bad)]).unwrap_err();
        assert_eq!(err.problems()[0].var, "REDIS_POOL_SIZE", "{bad}");
    }
}
