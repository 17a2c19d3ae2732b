//! Every parser of outside input answers a value or an error, never a panic: environment
//! values (and the components built from an accepted configuration), forwarding headers,
//! tenant ids and tenant resolvers, endpoint patterns and quotas. (The load tool's scenario
//! files and rule checks: `cli/tests/parsers_never_panic.rs`.) Cookies and cache envelopes
//! are private parsers; their properties are unit tests next to them (`session::cookie`,
//! `cache::entry`, `cache`).
//!
//! Inputs are arbitrary bytes and strings, plus strings assembled from each grammar's own
//! tokens so that the deep branches are reached too. A bounded number of cases keeps the
//! whole file at a few seconds; failures are kept in
//! `proptest-regressions/parsers_never_panic.txt`.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::{HeaderName, HeaderValue, Method, Request};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tenant_guard::config::Config;
use tenant_guard::ratelimit::{Algorithm, EndpointPattern, ForwardedHeader, IdentityConfig, Quota};
use tenant_guard::tenant::{TenantId, TenantResolver};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/parsers_never_panic.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Strings made of `tokens` and a few arbitrary characters: reaches the branches that a
/// purely random string never does.
fn grammar(tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(tokens).prop_map(str::to_string),
            1 => any::<char>().prop_map(|c| c.to_string()),
            1 => "[0-9]{1,25}",
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

/// Arbitrary text: any Unicode, printable ASCII, or the grammar's tokens.
fn text(tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,64}",
        grammar(tokens),
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// Every variable the configuration reads (plus a category TTL and an unknown `TG_`).
const VARS: &[&str] = &[
    "AI_CACHE_TTL",
    "CACHE_L1_MAX_BYTES",
    "CACHE_LEASE_TTL",
    "CACHE_MAX_BODY_BYTES",
    "CACHE_STALE_TTL",
    "CACHE_TTL",
    "CACHE_TTL_JITTER",
    "CACHE_TTL_REPORTS",
    "CACHE_TTL_",
    "QUERY_CACHE_TTL",
    "RATE_LIMIT_ALGORITHM",
    "RATE_LIMIT_BURST",
    "RATE_LIMIT_COSTS",
    "RATE_LIMIT_DENY_CACHE",
    "RATE_LIMIT_ENABLED",
    "RATE_LIMIT_ENDPOINTS",
    "RATE_LIMIT_INSTANCES",
    "RATE_LIMIT_LEGACY_HEADERS",
    "RATE_LIMIT_MAX",
    "RATE_LIMIT_OUTAGE",
    "RATE_LIMIT_PLANS",
    "RATE_LIMIT_SHADOW",
    "RATE_LIMIT_TENANT",
    "RATE_LIMIT_TENANT_PLANS",
    "RATE_LIMIT_TRUSTED_PROXIES",
    "RATE_LIMIT_USER",
    "RATE_LIMIT_USER_HEADER",
    "RATE_LIMIT_WINDOW",
    "REDIS_CLUSTER_NODES",
    "REDIS_COMMAND_TIMEOUT",
    "REDIS_CONNECT_TIMEOUT",
    "REDIS_DB",
    "REDIS_ENABLED",
    "REDIS_HOST",
    "REDIS_MAX_RETRIES",
    "REDIS_PASSWORD",
    "REDIS_PORT",
    "REDIS_TLS_CA_FILE",
    "REDIS_URL",
    "REDIS_USERNAME",
    "REDIS_USE_TLS",
    "SESSION_COOKIE_DOMAIN",
    "SESSION_COOKIE_ENCRYPT",
    "SESSION_COOKIE_HOST_PREFIX",
    "SESSION_COOKIE_NAME",
    "SESSION_COOKIE_SAMESITE",
    "SESSION_COOKIE_SECURE",
    "SESSION_MAX_BYTES",
    "SESSION_MAX_LIFETIME",
    "SESSION_OUTAGE",
    "SESSION_RENEW_INTERVAL",
    "SESSION_SECRET",
    "SESSION_SECRET_PREVIOUS",
    "SESSION_TTL",
    "TG_BREAKER_PROBE_INTERVAL",
    "TG_BREAKER_THRESHOLD",
    "TG_DEFAULT_TENANT",
    "TG_KEY_PREFIX",
    "TG_MEMORY_MAX_BYTES",
    "TG_MEMORY_MAX_ENTRIES",
    "TG_MEMORY_PURGE_INTERVAL",
    "TG_TENANT_SOURCE",
    "TG_NOT_A_VARIABLE",
];

/// Tokens of every value grammar the configuration knows.
const CONFIG_TOKENS: &[&str] = &[
    "0",
    "1",
    "100",
    "18446744073709551615",
    "4294967296",
    "99999999999999999999",
    "ms",
    "s",
    "m",
    "h",
    "d",
    "y",
    "KiB",
    "MiB",
    "GiB",
    "kb",
    " ",
    "/",
    ",",
    ";",
    "=",
    ":",
    "@",
    "*",
    "{",
    "}",
    "{*rest}",
    "{id}",
    "[",
    "]",
    "::1",
    "127.0.0.1",
    "10.0.0.0/8",
    "::/0",
    "/33",
    "GET",
    "POST",
    "ANY",
    "/api",
    "/users/",
    "redis://",
    "rediss://",
    "unix://",
    "h:6379",
    "user:pw@",
    "true",
    "false",
    "yes",
    "local",
    "open",
    "closed",
    "strict",
    "lax",
    "none",
    "exact",
    "compact",
    "gcra",
    "header",
    "subdomain",
    "path",
    "example.com",
    "x-user",
    "free",
    "pro",
    "tenant",
    "user",
    "acme",
    "-",
    "_",
    ".",
    "%",
    "\"",
    "\n",
    "\t",
    "0123456789abcdef0123456789abcdef",
];

/// Tokens of `Forwarded` and `X-Forwarded-For`.
const FORWARD_TOKENS: &[&str] = &[
    "for=",
    "For=",
    "by=",
    "proto=https",
    "host=x",
    ";",
    ",",
    " ",
    "\"",
    "[",
    "]",
    ":",
    "::",
    "::1",
    "::ffff:",
    "127.0.0.1",
    "10.0.0.7",
    "203.0.113.9",
    "2001:db8::1",
    "%eth0",
    "unknown",
    "_hidden",
    ":8080",
    "1.2.3",
    "256.1.1.1",
    "=",
    "\t",
];

/// Tokens of hosts, paths and tenant ids.
const TENANT_TOKENS: &[&str] = &[
    "acme",
    "Acme",
    "example.com",
    ".",
    "..",
    ":",
    ":8443",
    "/",
    "//",
    "/t/",
    "t",
    "%2F",
    "%",
    "-",
    "_",
    "*",
    "?",
    "#",
    "[",
    "]",
    "@",
    "{",
    "}",
    "x",
    "0",
];

/// Tokens of endpoint patterns and quotas.
const RULE_TOKENS: &[&str] = &[
    "GET",
    "get",
    "POST",
    "*",
    "ANY",
    "X-CUSTOM",
    " ",
    "/",
    "/api",
    "/{id}",
    "/{*rest}",
    "{",
    "}",
    "{*",
    "?",
    "=",
    ";",
    ",",
    ":",
    "@",
    "ai",
    "1",
    "0",
    "4294967295",
    "4294967296",
    "/1s",
    "/15m",
    "/0",
    "ms",
    "d",
    ":user",
    "=5/5s",
    " = ",
    "per user",
    "GET:/api/items",
    "@POST:/api/ai/complete",
];

/// Values at the edges of each grammar: the largest numbers, durations and quotas.
const EXTREMES: &[&str] = &[
    "0",
    "1",
    "18446744073709551615",
    "18446744073709551616",
    "18446744073709551615ms",
    "18446744073709551615s",
    "584942417355y",
    "500000000000y",
    "1ns",
    "10y",
    "3652d 12h",
    "11y",
    "4294967295/10y",
    "1/10y",
    "GET /{*rest} = 4294967295/10y",
    "4294967295",
    "4294967295/1ms",
    "1/18446744073709551615",
    "1/500000000000y",
    "4294967295/18446744073709551615",
    "18446744073709551615GiB",
    "17179869184GiB",
    "100",
    "101",
    "255",
    "65535",
    "GET /{*rest} = 4294967295/1ms",
    "POST /a = 4294967295",
    "free: per-user=1/18446744073709551615",
    "a=free, b=pro",
];

fn vars_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop::sample::select(VARS).prop_map(str::to_string),
            prop_oneof![
                3 => text(CONFIG_TOKENS),
                1 => prop::sample::select(EXTREMES).prop_map(str::to_string),
            ],
        ),
        0..8,
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What an accepted configuration builds: the printed table, the cookie codec, the tenant
/// resolver, and on the in-memory backend the limiter (one check) and the cache (a miss
/// that stores, then a hit).
fn use_config(cfg: &Config, rt: &tokio::runtime::Runtime) {
    let _ = cfg.effective();
    let _ = format!("{cfg:?}");
    let codec = tenant_guard::session::CookieCodec::from_config(&cfg.session);
    let tenant = TenantId::new("acme").unwrap();
    let _ = codec.encode(&tenant, &tenant_guard::session::SessionId::generate());
    let _ = codec.removal();
    let _ = TenantResolver::from_config(&cfg.tenant).expectation();
    if !matches!(cfg.redis.mode, tenant_guard::config::RedisMode::Disabled) {
        return; // nothing to connect to here
    }
    rt.block_on(async {
        let metrics = tenant_guard::metrics::Metrics::new();
        let backend =
            tenant_guard::backend::Backend::from_config(cfg, &metrics).expect("memory backend");
        let limiter =
            tenant_guard::ratelimit::RateLimiter::from_config(cfg, backend.clone(), &metrics);
        let t = TenantId::new("acme").unwrap();
        let who = tenant_guard::ratelimit::Identity::User("u".into());
        let check = tenant_guard::ratelimit::Check {
            tenant: &t,
            identity: &who,
            method: &Method::GET,
            route: "/api/items",
            cost: None,
            plan: None,
        };
        let _ = limiter.check(&check).await;
        let cache = tenant_guard::cache::Cache::from_config(cfg, backend, &metrics);
        for _ in 0..2 {
            let _ = cache
                .get_or_compute(
                    &t,
                    &tenant_guard::cache::Category::query(),
                    &"k",
                    || async { Ok::<_, String>(1u8) },
                )
                .await;
        }
    });
}

/// Every variable at every extreme value, under each algorithm: a configuration or a
/// problem, and an accepted one is usable.
#[test]
fn every_variable_at_its_extremes() {
    let rt = runtime();
    for algorithm in ["exact", "compact", "gcra"] {
        for var in VARS {
            for value in EXTREMES {
                let vars = [("RATE_LIMIT_ALGORITHM", algorithm), (var, value)];
                if let Ok(cfg) = Config::from_vars(vars) {
                    use_config(&cfg, &rt);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(384))]

    /// Arbitrary values of every variable: a configuration or a list of problems; and an
    /// accepted configuration is usable.
    #[test]
    fn config_values(vars in vars_strategy()) {
        if let Ok(cfg) = Config::from_vars(vars) {
            use_config(&cfg, &runtime());
        }
    }

    /// `Forwarded` / `X-Forwarded-For` / user header bytes (whatever `http` accepts as a
    /// header value), from a trusted and from an untrusted peer.
    #[test]
    fn forwarding_headers(
        forwarded in prop::collection::vec(
            prop_oneof![any::<Vec<u8>>(), grammar(FORWARD_TOKENS).prop_map(String::into_bytes)],
            0..3,
        ),
        xff in prop::collection::vec(
            prop_oneof![any::<Vec<u8>>(), grammar(FORWARD_TOKENS).prop_map(String::into_bytes)],
            0..3,
        ),
        user in any::<Vec<u8>>(),
        peer_ip in any::<IpAddr>(),
        port in any::<u16>(),
        trust_all in any::<bool>(),
    ) {
        let mut req = Request::builder().uri("/");
        for (name, values) in [("forwarded", &forwarded), ("x-forwarded-for", &xff), ("x-real-ip", &xff)] {
            for v in values {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    req = req.header(name, v);
                }
            }
        }
        if let Ok(v) = HeaderValue::from_bytes(&user) {
            req = req.header("x-user", v);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let trusted = if trust_all {
            vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]
        } else {
            vec!["10.0.0.0/8".parse().unwrap()]
        };
        let with_user = IdentityConfig {
            user_header: Some(HeaderName::from_static("x-user")),
            trusted_proxies: trusted.clone(),
            ..Default::default()
        };
        let configs: Vec<IdentityConfig> = [
            ForwardedHeader::XForwardedFor,
            ForwardedHeader::Forwarded,
            ForwardedHeader::XRealIp,
        ]
        .into_iter()
        .map(|forwarded_header| IdentityConfig {
            trusted_proxies: trusted.clone(),
            forwarded_header,
            ..Default::default()
        })
        .chain([with_user])
        .collect();
        let peer = Some(SocketAddr::new(peer_ip, port));
        for cfg in &configs {
            let _ = cfg.client(&parts, peer);
            let _ = cfg.identify(&parts, peer).to_string();
            let _ = cfg.client_ip(&parts, peer);
            let _ = cfg.identify(&parts, None);
        }
    }

    /// Tenant ids from strings and bytes.
    #[test]
    fn tenant_ids(s in text(TENANT_TOKENS), b in any::<Vec<u8>>()) {
        if let Ok(t) = TenantId::new(&s) {
            prop_assert_eq!(t.as_str(), s.as_str());
        }
        let _ = TenantId::from_bytes(&b).map(|t| t.to_string());
        let _ = TenantId::from_str(&s);
    }

    /// Every resolver (with an arbitrary base domain or prefix from configuration) on an
    /// arbitrary `Host`, path and tenant header.
    #[test]
    fn tenant_resolvers(
        host in prop_oneof![any::<Vec<u8>>(), grammar(TENANT_TOKENS).prop_map(String::into_bytes)],
        path in text(TENANT_TOKENS),
        header in prop::collection::vec(any::<Vec<u8>>(), 0..3),
        base in text(TENANT_TOKENS),
        prefix in text(TENANT_TOKENS),
        source in text(&["header", "header:", "subdomain:", "path", "path:", "x-org", ":", "/t"]),
    ) {
        let mut resolvers = vec![
            TenantResolver::default(),
            TenantResolver::subdomain(&base),
            TenantResolver::path_prefix(&prefix),
            TenantResolver::path_prefix_stripped(&prefix),
        ];
        if let Ok(r) = TenantResolver::try_header(&base) {
            resolvers.push(r);
        }
        if let Ok(cfg) = Config::from_vars([("TG_TENANT_SOURCE", source.as_str())]) {
            resolvers.push(TenantResolver::from_config(&cfg.tenant));
        }
        let uri = format!("/{}", path.trim_start_matches('/'));
        let mut req = Request::builder();
        req = match http::Uri::try_from(uri.as_str()) {
            Ok(u) => req.uri(u),
            Err(_) => req.uri("/"),
        };
        if let Ok(v) = HeaderValue::from_bytes(&host) {
            req = req.header("host", v);
        }
        for h in &header {
            if let Ok(v) = HeaderValue::from_bytes(h) {
                req = req.header("x-tenant-id", v);
            }
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let rt = runtime();
        for r in &resolvers {
            let mut p = parts.clone();
            let _ = rt.block_on(r.resolve(&mut p)).map_err(|e| e.to_string());
            let _ = r.expectation();
        }
    }

    /// Endpoint patterns, quotas and algorithms; a parsed pattern matches arbitrary routes.
    #[test]
    fn endpoint_patterns_and_quotas(
        s in text(RULE_TOKENS),
        route in text(RULE_TOKENS),
        method in prop::sample::select(&["GET", "POST", "HEAD", "X-CUSTOM"][..]),
    ) {
        if let Ok(p) = EndpointPattern::parse(&s) {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let _ = p.matches(&m, &route);
            let again = EndpointPattern::parse(&p.to_string());
            prop_assert!(again.is_ok(), "{p} does not parse back");
        }
        if let Ok(q) = Quota::parse(&s) {
            let _ = q.to_string();
        }
        let _ = Algorithm::from_str(&s);
        // The same grammars as environment values (rules, costs, plans, burst).
        for var in [
            "RATE_LIMIT_ENDPOINTS",
            "RATE_LIMIT_COSTS",
            "RATE_LIMIT_PLANS",
            "RATE_LIMIT_TENANT_PLANS",
            "RATE_LIMIT_BURST",
        ] {
            let _ = Config::from_vars([(var, s.as_str())]);
        }
    }
}
