//! Reads the variables of concurrency limits (`RATE_LIMIT_CONCURRENCY_TENANT`,
//! `RATE_LIMIT_CONCURRENCY_USER`, `RATE_LIMIT_CONCURRENCY_LEASE`).

use std::num::NonZeroU32;

use super::{Config, Reader};
use crate::concurrency::{ConcurrencyConfig, RouteCap};
use crate::parse::{self, fmt_duration};

pub(super) fn read_concurrency(r: &mut Reader) -> ConcurrencyConfig {
    let d = ConcurrencyConfig::default();
    let cap = |r: &mut Reader, var: &str| {
        r.parse(
            var,
            |v| {
                parse::integer::<u32>(v)
                    .and_then(|n| NonZeroU32::new(n).ok_or_else(|| "must be at least 1".into()))
            },
            "a whole number of requests in flight, 1 or more",
        )
    };
    let tenant = cap(r, "RATE_LIMIT_CONCURRENCY_TENANT");
    let user = cap(r, "RATE_LIMIT_CONCURRENCY_USER");
    let lease = r.duration("RATE_LIMIT_CONCURRENCY_LEASE", d.lease, true);
    if lease < std::time::Duration::from_secs(1) {
        r.problem(
            "RATE_LIMIT_CONCURRENCY_LEASE",
            Some(&fmt_duration(lease)),
            "shorter than 1 s".into(),
            "a duration of 1 s or more, e.g. `30s`",
        );
    }
    let routes = r
        .parse(
            "RATE_LIMIT_CONCURRENCY_ENDPOINTS",
            |v| RouteCap::parse_list(v).map_err(String::from),
            "`tenant:` or `user:` then `METHOD /route = N`, entries separated by `;`, e.g. `user: POST /api/ai/{*rest} = 2`",
        )
        .unwrap_or_default();
    ConcurrencyConfig {
        tenant,
        user,
        lease,
        routes,
    }
}

/// The effective values of these variables, as `tenant-guard config` prints them.
pub(super) fn effective(c: &Config, push: &mut impl FnMut(&str, String)) {
    let cap = |n: Option<NonZeroU32>| n.map_or_else(|| "(none)".into(), |n| n.to_string());
    push("RATE_LIMIT_CONCURRENCY_TENANT", cap(c.concurrency.tenant));
    push("RATE_LIMIT_CONCURRENCY_USER", cap(c.concurrency.user));
    let routes: Vec<String> = c
        .concurrency
        .routes
        .iter()
        .map(|r| format!("{}: {} = {}", r.scope.as_str(), r.pattern, r.limit))
        .collect();
    push(
        "RATE_LIMIT_CONCURRENCY_ENDPOINTS",
        if routes.is_empty() {
            "(none)".into()
        } else {
            routes.join("; ")
        },
    );
    push(
        "RATE_LIMIT_CONCURRENCY_LEASE",
        fmt_duration(c.concurrency.lease),
    );
}
