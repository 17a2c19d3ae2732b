//! Every environment variable tenant-guard reads, with its default and meaning: the one
//! table the README's configuration table is rendered from. Tests check it against what
//! [`Config::from_vars`](super::Config::from_vars) reads, what
//! [`Config::effective`](super::Config::effective) prints and what `.env.example` lists, so
//! a variable cannot be added in one place and forgotten in another.

/// One row of the table: a variable (or a pair read together, e.g. `REDIS_HOST` /
/// `REDIS_PORT`), its default and what it does. Names with `<...>` are patterns.
///
/// ```
/// use tenant_guard::config::VARS;
/// let ttl = VARS.iter().find(|v| v.names == ["SESSION_TTL"]).unwrap();
/// assert_eq!(ttl.default, "`24h`");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VarDoc {
    /// The variable(s) of this row.
    pub names: &'static [&'static str],
    /// The default, in Markdown.
    pub default: &'static str,
    /// What it does, in Markdown.
    pub meaning: &'static str,
}

impl VarDoc {
    /// Whether `var` is one of this row's names, or matches its pattern
    /// (`CACHE_TTL_<NAME>` matches `CACHE_TTL_REPORTS`).
    ///
    /// ```
    /// use tenant_guard::config::VARS;
    /// let ttl = VARS.iter().find(|v| v.names.contains(&"CACHE_TTL_<NAME>")).unwrap();
    /// assert!(ttl.matches("CACHE_TTL_REPORTS"));
    /// assert!(!ttl.matches("CACHE_TTL_")); // the pattern needs a name
    /// let host = VARS.iter().find(|v| v.matches("REDIS_PORT")).unwrap();
    /// assert_eq!(host.names, ["REDIS_HOST", "REDIS_PORT"]);
    /// ```
    pub fn matches(&self, var: &str) -> bool {
        self.names.iter().any(|n| match n.split_once('<') {
            Some((prefix, _)) => var.len() > prefix.len() && var.starts_with(prefix),
            None => *n == var,
        })
    }
}

/// The table, in the order the README shows it.
///
/// ```
/// use tenant_guard::config::VARS;
/// // Every variable read is documented once: e.g. whether a name is one at all.
/// let known = |var: &str| VARS.iter().any(|v| v.matches(var));
/// assert!(known("REDIS_URL") && known("SESSION_SECRET") && known("CACHE_TTL_REPORTS"));
/// assert!(!known("REDIS_URI"));
/// ```
pub const VARS: &[VarDoc] = &[
    VarDoc {
        names: &["REDIS_URL"],
        default: "—",
        meaning: "`redis://[user:pass@]host[:port][/db]`, `rediss://` for TLS, `unix://`",
    },
    VarDoc {
        names: &["REDIS_HOST", "REDIS_PORT"],
        default: "`127.0.0.1` / `6379`",
        meaning: "the same in parts (ignored, with a warning, if `REDIS_URL` is set)",
    },
    VarDoc {
        names: &["REDIS_USERNAME", "REDIS_PASSWORD"],
        default: "—",
        meaning: "credentials (never printed)",
    },
    VarDoc {
        names: &["REDIS_DB"],
        default: "`0`",
        meaning: "database number",
    },
    VarDoc {
        names: &["REDIS_USE_TLS"],
        default: "`false`",
        meaning: "`rediss://` (build with `--features tls`)",
    },
    VarDoc {
        names: &["REDIS_TLS_CA_FILE"],
        default: "— (system trust store)",
        meaning: "PEM CA certificate(s) of a private CA for `rediss://` (single node)",
    },
    VarDoc {
        names: &["REDIS_CLUSTER_NODES"],
        default: "—",
        meaning: "comma list of `host:port` / URLs: cluster mode",
    },
    VarDoc {
        names: &["REDIS_ENABLED"],
        default: "on if any of the above is set",
        meaning: "`false` forces the memory backend",
    },
    VarDoc {
        names: &["REDIS_CONNECT_TIMEOUT"],
        default: "`5s`",
        meaning: "TCP connect deadline",
    },
    VarDoc {
        names: &["REDIS_COMMAND_TIMEOUT"],
        default: "`1s`",
        meaning: "deadline of every command",
    },
    VarDoc {
        names: &["REDIS_MAX_RETRIES"],
        default: "`3`",
        meaning: "reconnect attempts (single node) / retries (cluster)",
    },
    VarDoc {
        names: &["REDIS_POOL_SIZE"],
        default: "one per CPU core, 2-8",
        meaning: "connections to a single node, used in turn (1-64)",
    },
    VarDoc {
        names: &["TG_KEY_PREFIX"],
        default: "`tg`",
        meaning: "prefix of every key",
    },
    VarDoc {
        names: &["TG_MEMORY_MAX_ENTRIES"],
        default: "`100000`",
        meaning: "memory backend: cache entries (LRU-evicted); default of the two below",
    },
    VarDoc {
        names: &["TG_MEMORY_MAX_SESSIONS"],
        default: "`TG_MEMORY_MAX_ENTRIES`",
        meaning: "memory backend: live sessions (never evicted; a new one beyond → 503)",
    },
    VarDoc {
        names: &["TG_MEMORY_MAX_COUNTERS"],
        default: "`TG_MEMORY_MAX_ENTRIES`",
        meaning: "memory backend: rate-limit counters (live ones never evicted; new identities beyond share an overflow counter per rule)",
    },
    VarDoc {
        names: &["TG_MEMORY_MAX_BYTES"],
        default: "`64MiB`",
        meaning: "memory backend: bytes of cache entries + sessions (cache gives way first)",
    },
    VarDoc {
        names: &["TG_MEMORY_PURGE_INTERVAL"],
        default: "`1s`",
        meaning: "background purge of expired entries",
    },
    VarDoc {
        names: &["TG_BREAKER_THRESHOLD"],
        default: "`3`",
        meaning: "consecutive Redis failures that open the circuit breaker",
    },
    VarDoc {
        names: &["TG_BREAKER_PROBE_INTERVAL"],
        default: "`500ms`",
        meaning: "PING interval while the breaker is open",
    },
    VarDoc {
        names: &["TG_TENANT_SOURCE"],
        default: "`header:X-Tenant-ID`",
        meaning: "`header[:Name]`, `subdomain:<base.domain>`, `path[:/prefix]`",
    },
    VarDoc {
        names: &["TG_DEFAULT_TENANT"],
        default: "—",
        meaning: "tenant for requests naming none (else 400)",
    },
    VarDoc {
        names: &["TG_TENANTS"],
        default: "— (any valid id)",
        meaning: "comma list of the only tenants served; others get 404 and nothing is written",
    },
    VarDoc {
        names: &["TG_OPS_TOKEN"],
        default: "— (open)",
        meaning: "bearer token required by `/metrics`, `/cache/status` and `/ops/top` (≥ 32 bytes)",
    },
    VarDoc {
        names: &["TG_ADMIN_TOKEN"],
        default: "— (refused)",
        meaning: "bearer token of the demo's `DELETE /api/cache` and `DELETE /api/cache/tags/{tag}` (≥ 32 bytes)",
    },
    VarDoc {
        names: &["SESSION_TTL"],
        default: "`24h`",
        meaning: "session inactivity expiry",
    },
    VarDoc {
        names: &["SESSION_MAX_LIFETIME"],
        default: "`7d`",
        meaning: "absolute expiry from creation, however active",
    },
    VarDoc {
        names: &["SESSION_RENEW_INTERVAL"],
        default: "`60s`",
        meaning: "a session's inactivity TTL is renewed (by a read or a write) at most this often (taken as at most half of `SESSION_TTL`)",
    },
    VarDoc {
        names: &["SESSION_SECRET"],
        default: "random per process",
        meaning: "cookie signing secret, ≥ 32 bytes",
    },
    VarDoc {
        names: &["SESSION_SECRET_PREVIOUS"],
        default: "—",
        meaning: "comma list of old secrets that still verify (rotation)",
    },
    VarDoc {
        names: &["SESSION_COOKIE_NAME"],
        default: "`sid`",
        meaning: "cookie name",
    },
    VarDoc {
        names: &["SESSION_COOKIE_SECURE"],
        default: "`true`",
        meaning: "`false` only for local plain-http development",
    },
    VarDoc {
        names: &["SESSION_COOKIE_SAMESITE"],
        default: "`lax`",
        meaning: "`lax`, `strict`, `none` (needs Secure)",
    },
    VarDoc {
        names: &["SESSION_COOKIE_DOMAIN"],
        default: "— (host-only)",
        meaning: "`Domain` attribute",
    },
    VarDoc {
        names: &["SESSION_COOKIE_HOST_PREFIX"],
        default: "`true` when Secure and no Domain",
        meaning: "name the cookie `__Host-<name>` (needs Secure, no Domain)",
    },
    VarDoc {
        names: &["SESSION_COOKIE_ENCRYPT"],
        default: "`false`",
        meaning: "encrypt the cookie (AES-256-GCM) instead of only signing it",
    },
    VarDoc {
        names: &["SESSION_MAX_BYTES"],
        default: "`64KiB`",
        meaning: "most session data; larger inserts are refused (413 problem)",
    },
    VarDoc {
        names: &["SESSION_OUTAGE"],
        default: "`closed`",
        meaning: "while Redis is unusable: `closed` (503 where the session is used) or `local` (per-process memory)",
    },
    VarDoc {
        names: &["CACHE_TTL"],
        default: "`1h`",
        meaning: "general cache",
    },
    VarDoc {
        names: &["QUERY_CACHE_TTL"],
        default: "`5m`",
        meaning: "query cache",
    },
    VarDoc {
        names: &["AI_CACHE_TTL"],
        default: "`30m`",
        meaning: "AI response cache",
    },
    VarDoc {
        names: &["CACHE_TTL_<NAME>"],
        default: "—",
        meaning: "any named category, e.g. `CACHE_TTL_REPORTS=2h`",
    },
    VarDoc {
        names: &["CACHE_TTL_JITTER"],
        default: "`0`",
        meaning: "random extra TTL up to this percentage (`10` or `10%`)",
    },
    VarDoc {
        names: &["CACHE_STALE_TTL"],
        default: "`0`",
        meaning: "how long past its TTL an entry may be served while another instance refills it",
    },
    VarDoc {
        names: &["CACHE_SWR"],
        default: "`0` (off)",
        meaning: "stale-while-revalidate: past its TTL, an entry is served at once (`X-Cache: STALE`) for this long while one refresh runs in the background",
    },
    VarDoc {
        names: &["CACHE_SWR_<CATEGORY>"],
        default: "`CACHE_SWR`",
        meaning: "the same for one category, e.g. `CACHE_SWR_AI=10m`",
    },
    VarDoc {
        names: &["CACHE_LEASE_TTL"],
        default: "`5s`",
        meaning: "cross-instance fill lease; also the longest wait for another instance's fill",
    },
    VarDoc {
        names: &["CACHE_L1_MAX_BYTES"],
        default: "`32MiB`",
        meaning: "in-process L1 in front of Redis (`0`: off)",
    },
    VarDoc {
        names: &["CACHE_MAX_BODY_BYTES"],
        default: "`1MiB`",
        meaning: "larger request or response bodies pass through uncached",
    },
    VarDoc {
        names: &["CACHE_COMPRESS_MIN_BYTES"],
        default: "`1KiB`",
        meaning: "entries at least this big (up to `CACHE_MAX_BODY_BYTES`) are stored zstd-compressed in Redis (`0`: off)",
    },
    VarDoc {
        names: &["CACHE_SCOPE"],
        default: "`auto`",
        meaning: "whose responses an HTTP entry serves: `auto` (per caller when the request has credentials), `tenant`, `user`",
    },
    VarDoc {
        names: &["CACHE_SCOPE_<CATEGORY>"],
        default: "—",
        meaning: "the same for one category, e.g. `CACHE_SCOPE_AI=user`",
    },
    VarDoc {
        names: &["RATE_LIMIT_MAX", "RATE_LIMIT_WINDOW"],
        default: "`100` / `900`",
        meaning: "default rule `per-endpoint`: requests per window per user and endpoint",
    },
    VarDoc {
        names: &["RATE_LIMIT_ENABLED"],
        default: "`true`",
        meaning: "`false`: no rules at all",
    },
    VarDoc {
        names: &["RATE_LIMIT_TENANT"],
        default: "—",
        meaning: "rule `per-tenant`, e.g. `1000/1m` for all of a tenant's requests",
    },
    VarDoc {
        names: &["RATE_LIMIT_USER"],
        default: "—",
        meaning: "rule `per-user`, e.g. `100/15m` per user across endpoints",
    },
    VarDoc {
        names: &["RATE_LIMIT_ENDPOINTS"],
        default: "—",
        meaning: "per-user rules for routes, `[name:] METHOD /route = LIMIT/WINDOW` (`*` for any method): `ai: POST /api/ai/{*rest} = 10/1m; GET /api/reports/{day} = 30/1m`",
    },
    VarDoc {
        names: &["RATE_LIMIT_COSTS"],
        default: "—",
        meaning: "request weights, `METHOD /route = COST`: `POST /api/ai/complete = 5`",
    },
    VarDoc {
        names: &["RATE_LIMIT_PLANS"],
        default: "—",
        meaning: "quota overrides per plan: `pro: per-tenant=5000/1m, per-user=500/15m; free: per-tenant=100/1m`",
    },
    VarDoc {
        names: &["RATE_LIMIT_TENANT_PLANS"],
        default: "—",
        meaning: "`acme=pro,globex=free` (or pass the plan with each check)",
    },
    VarDoc {
        names: &["RATE_LIMIT_SHADOW"],
        default: "—",
        meaning: "rules in dry-run: recorded, never enforced, e.g. `per-tenant`",
    },
    VarDoc {
        names: &["RATE_LIMIT_QUOTA_TENANT"],
        default: "—",
        meaning: "calendar quota per tenant, reset at the boundary: `10000/month` (`day`, `week`: ISO, from Monday)",
    },
    VarDoc {
        names: &["RATE_LIMIT_QUOTA_USER"],
        default: "—",
        meaning: "calendar quota per user (or client address), e.g. `500/day`",
    },
    VarDoc {
        names: &["RATE_LIMIT_QUOTA_TZ"],
        default: "`UTC`",
        meaning: "IANA time zone of the quotas' days, weeks and months",
    },
    VarDoc {
        names: &["RATE_LIMIT_QUOTA_ANCHORS"],
        default: "—",
        meaning: "billing anchor days: monthly quotas of `acme=15` run from the 15th (the month's last day when shorter)",
    },
    VarDoc {
        names: &["RATE_LIMIT_BLOCK"],
        default: "—",
        meaning: "once a rule denies an identity, refuse it for a while: `per-user=5m, ai=1m..1h` (doubling on repeat up to the second)",
    },
    VarDoc {
        names: &["RATE_LIMIT_LEASE"],
        default: "—",
        meaning: "hot counters an instance may reserve slices of and admit from in process: `per-tenant=200/100ms` (most units per reservation / longest lease; compact rules only)",
    },
    VarDoc {
        names: &["RATE_LIMIT_ALGORITHM"],
        default: "`compact`",
        meaning: "`compact` (bounded memory), `exact` (sorted-set log) or `gcra` (rate + burst)",
    },
    VarDoc {
        names: &["RATE_LIMIT_EXEMPT"],
        default: "—",
        meaning: "`tenant:NAME`, `user:ID`, `ip:CIDR` entries that skip every limit",
    },
    VarDoc {
        names: &["RATE_LIMIT_DENY"],
        default: "—",
        meaning: "entries of the same form refused with 403",
    },
    VarDoc {
        names: &["RATE_LIMIT_CONCURRENCY_TENANT"],
        default: "—",
        meaning: "requests in flight per tenant, across instances",
    },
    VarDoc {
        names: &["RATE_LIMIT_CONCURRENCY_USER"],
        default: "—",
        meaning: "requests in flight per user (or client address)",
    },
    VarDoc {
        names: &["RATE_LIMIT_CONCURRENCY_ENDPOINTS"],
        default: "—",
        meaning: "per-route caps in flight, e.g. `user: POST /api/ai/{*rest} = 2` (`;`-separated)",
    },
    VarDoc {
        names: &["RATE_LIMIT_CONCURRENCY_LEASE"],
        default: "`30s`",
        meaning: "lifetime of an in-flight lease unless renewed (a crashed instance's end after this)",
    },
    VarDoc {
        names: &["RATE_LIMIT_TOKENS"],
        default: "—",
        meaning: "token budgets, reserved before and settled after each response, e.g. `user: POST /api/ai/{*rest} = 20000/1m` (`;`-separated)",
    },
    VarDoc {
        names: &["RATE_LIMIT_TOKENS_DEFAULT_MAX"],
        default: "`256`",
        meaning: "completion tokens reserved for a request body naming no `max_tokens`",
    },
    VarDoc {
        names: &["RATE_LIMIT_TOKENS_MAX_BODY"],
        default: "`1048576`",
        meaning: "most request body bytes read to estimate tokens (larger: 413)",
    },
    VarDoc {
        names: &["RATE_LIMIT_TOKENS_CACHE_HITS"],
        default: "`free`",
        meaning: "whether a cache hit costs tokens: `free` (refunded) or `charged`",
    },
    VarDoc {
        names: &["RATE_LIMIT_OUTAGE"],
        default: "`local`",
        meaning: "while Redis is unusable: `open`, `closed` (503) or `local`",
    },
    VarDoc {
        names: &["RATE_LIMIT_INSTANCES"],
        default: "`1`",
        meaning: "app instances; `local` mode gives each `(limit - used) / instances`",
    },
    VarDoc {
        names: &["RATE_LIMIT_OUTAGE_KEYS"],
        default: "`100000`",
        meaning: "counters whose last Redis answer each instance remembers for `local` mode (at least 2)",
    },
    VarDoc {
        names: &["RATE_LIMIT_TRUSTED_PROXIES"],
        default: "—",
        meaning: "`10.0.0.0/8, 127.0.0.1`: whose forwarding header to believe",
    },
    VarDoc {
        names: &["RATE_LIMIT_FORWARDED_HEADER"],
        default: "`x-forwarded-for`",
        meaning: "the one forwarding header believed from them: `x-forwarded-for`, `forwarded` or `x-real-ip`",
    },
    VarDoc {
        names: &["RATE_LIMIT_IP"],
        default: "—",
        meaning: "rule `per-ip`: requests per client address across every tenant, e.g. `300/1m`",
    },
    VarDoc {
        names: &["RATE_LIMIT_USER_HEADER"],
        default: "—",
        meaning: "user id header set by a trusted gateway, e.g. `X-User-ID`",
    },
    VarDoc {
        names: &["RATE_LIMIT_LEGACY_HEADERS"],
        default: "`false`",
        meaning: "also send `X-RateLimit-Limit/Remaining/Reset`",
    },
    VarDoc {
        names: &["RATE_LIMIT_BURST"],
        default: "—",
        meaning: "per-tenant in-process cap in front of Redis, e.g. `200/1s`",
    },
    VarDoc {
        names: &["RATE_LIMIT_DENY_CACHE"],
        default: "`10000`",
        meaning: "entries of the local cache of denied identities (`0`: off)",
    },
];

/// The README's configuration table (Markdown).
///
/// ```
/// let table = tenant_guard::config::vars_markdown();
/// assert!(table.starts_with("| variable | default | meaning |"));
/// assert!(table.contains("| `RATE_LIMIT_MAX` / `RATE_LIMIT_WINDOW` | `100` / `900` |"));
/// ```
pub fn vars_markdown() -> String {
    let mut out =
        String::from("| variable | default | meaning |\n|----------|---------|---------|\n");
    for v in VARS {
        let names: Vec<String> = v.names.iter().map(|n| format!("`{n}`")).collect();
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            names.join(" / "),
            v.default,
            v.meaning
        ));
    }
    out
}

/// Whether `var` is documented in [`VARS`].
pub(super) fn documented(var: &str) -> bool {
    VARS.iter().any(|v| v.matches(var))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::{Config, Reader};
    use super::{VARS, documented, vars_markdown};

    /// Environments that between them take every branch that asks for a variable.
    fn reading_environments() -> Vec<Vec<(&'static str, &'static str)>> {
        vec![
            vec![],
            vec![("REDIS_URL", "redis://127.0.0.1:6379")],
            vec![("REDIS_HOST", "127.0.0.1")],
            vec![("REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1:7001")],
            vec![("CACHE_TTL_REPORTS", "2h"), ("CACHE_SCOPE_AI", "user")],
            vec![
                ("SESSION_SECRET", "0123456789abcdef0123456789abcdef"),
                (
                    "SESSION_SECRET_PREVIOUS",
                    "fedcba9876543210fedcba9876543210",
                ),
                ("RATE_LIMIT_ENABLED", "true"),
            ],
        ]
    }

    fn concrete_vars() -> BTreeSet<&'static str> {
        VARS.iter()
            .flat_map(|v| v.names.iter().copied())
            .filter(|n| !n.contains('<'))
            .collect()
    }

    #[test]
    fn every_variable_read_is_documented_and_every_documented_one_is_read() {
        let mut asked = BTreeSet::new();
        for env in reading_environments() {
            let mut r = Reader::new(
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            let _ = Config::read(&mut r);
            asked.extend(r.asked.into_inner());
        }
        let undocumented: Vec<&String> = asked.iter().filter(|v| !documented(v)).collect();
        assert!(
            undocumented.is_empty(),
            "read but not in VARS: {undocumented:?}"
        );
        let unread: Vec<&str> = concrete_vars()
            .into_iter()
            .filter(|v| !asked.contains(*v))
            .collect();
        assert!(unread.is_empty(), "in VARS but never read: {unread:?}");
    }

    /// Variables `effective()` shows folded into another line: the Redis URL's parts in
    /// `REDIS_URL`, the rule variables in the assembled rule list.
    const FOLDED: &[(&str, &str)] = &[
        ("REDIS_HOST", "REDIS_URL"),
        ("REDIS_PORT", "REDIS_URL"),
        ("REDIS_DB", "REDIS_URL"),
        ("REDIS_USERNAME", "REDIS_URL"),
        ("REDIS_PASSWORD", "REDIS_URL"),
        ("REDIS_USE_TLS", "REDIS_URL"),
        ("RATE_LIMIT_ENABLED", "(rate-limit rules)"),
        ("RATE_LIMIT_TENANT", "(rate-limit rules)"),
        ("RATE_LIMIT_USER", "(rate-limit rules)"),
        ("RATE_LIMIT_ENDPOINTS", "(rate-limit rules)"),
        ("RATE_LIMIT_SHADOW", "(rate-limit rules)"),
        ("RATE_LIMIT_BLOCK", "(rate-limit rules)"),
        ("RATE_LIMIT_LEASE", "(rate-limit rules)"),
        ("RATE_LIMIT_QUOTA_TENANT", "(rate-limit rules)"),
        ("RATE_LIMIT_QUOTA_USER", "(rate-limit rules)"),
    ];

    #[test]
    fn every_documented_variable_is_printed_by_effective() {
        let printed_plans = Config::from_vars([
            ("RATE_LIMIT_TENANT", "100/1m"),
            ("RATE_LIMIT_PLANS", "pro: per-tenant=5000/1m"),
            ("RATE_LIMIT_TENANT_PLANS", "acme=pro"),
            ("RATE_LIMIT_COSTS", "POST /api/ai/complete = 5"),
        ])
        .unwrap()
        .effective();
        for line in [
            ("RATE_LIMIT_PLANS", "pro: per-tenant=5000/1m"),
            ("RATE_LIMIT_TENANT_PLANS", "acme=pro"),
            ("RATE_LIMIT_COSTS", "POST /api/ai/complete = 5"),
        ] {
            assert!(
                printed_plans.contains(&(line.0.to_string(), line.1.to_string())),
                "{line:?} not in {printed_plans:?}"
            );
        }
        let mut printed = BTreeSet::new();
        for env in reading_environments() {
            printed.extend(
                Config::from_vars(env)
                    .unwrap()
                    .effective()
                    .into_iter()
                    .map(|(k, _)| k),
            );
        }
        let shown = |v: &str| {
            printed.contains(v)
                || FOLDED
                    .iter()
                    .any(|(var, line)| *var == v && printed.contains(*line))
        };
        let missing: Vec<&str> = concrete_vars().into_iter().filter(|v| !shown(v)).collect();
        assert!(
            missing.is_empty(),
            "not printed by effective(): {missing:?}"
        );
        let extra: Vec<&String> = printed
            .iter()
            .filter(|v| !v.starts_with('(') && !documented(v))
            .collect();
        assert!(extra.is_empty(), "printed but not in VARS: {extra:?}");
    }

    #[test]
    fn the_readme_table_is_rendered_from_vars() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&vars_markdown()),
            "README's configuration table differs from config::VARS; paste vars_markdown():\n{}",
            vars_markdown()
        );
    }

    #[test]
    fn env_example_lists_every_variable() {
        let example = include_str!("../../.env.example");
        let missing: Vec<&str> = concrete_vars()
            .into_iter()
            .filter(|v| !example.contains(&format!("{v}=")))
            .collect();
        assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    }
}
