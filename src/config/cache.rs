//! Reads the variables of the cache (`CACHE_*`, `QUERY_CACHE_TTL`, `AI_CACHE_TTL`).

use std::collections::{BTreeMap, HashSet};

use super::{CacheConfig, Config, Reader};
use crate::parse;
use crate::parse::{BYTES_FORM, DURATION_FORM, fmt_duration};

pub(super) fn read_cache(r: &mut Reader) -> CacheConfig {
    let d = CacheConfig::default();
    let default_ttl = r.duration("CACHE_TTL", d.default_ttl, true);
    let query_ttl = r.duration("QUERY_CACHE_TTL", d.query_ttl, true);
    let ai_ttl = r.duration("AI_CACHE_TTL", d.ai_ttl, true);
    let mut names: Vec<String> = r
        .vars
        .keys()
        .filter(|k| k.starts_with("CACHE_TTL_") && k.as_str() != "CACHE_TTL_JITTER")
        .cloned()
        .collect();
    names.sort();
    let mut categories = BTreeMap::new();
    let mut seen = HashSet::new();
    for var in names {
        let name = var["CACHE_TTL_".len()..].to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let val = r.get(&var).map(str::to_string);
            r.problem(
                &var,
                val.as_deref(),
                "the category name after CACHE_TTL_ is empty or has characters other than letters, digits and _".into(),
                "CACHE_TTL_<NAME>=<duration> with NAME made of A-Z, 0-9 and _",
            );
            continue;
        }
        if r.get(&var).is_none() || !seen.insert(name.clone()) {
            continue;
        }
        if let Some(ttl) = r.parse(&var, parse::nonzero_duration, DURATION_FORM) {
            categories.insert(name, ttl);
        }
    }
    let jitter_percent = r
        .parse(
            "CACHE_TTL_JITTER",
            |v| {
                let n: u8 = parse::integer(v.trim().trim_end_matches('%'))?;
                if n > 100 {
                    return Err("more than 100%".into());
                }
                Ok(n)
            },
            "a percentage from 0 to 100, e.g. `10` or `10%`",
        )
        .unwrap_or(d.jitter_percent);
    let stale = r.duration("CACHE_STALE_TTL", d.stale, false);
    let swr = r.duration("CACHE_SWR", d.swr, false);
    let mut swr_vars: Vec<String> = r
        .vars
        .keys()
        .filter(|k| k.starts_with("CACHE_SWR_"))
        .cloned()
        .collect();
    swr_vars.sort();
    let mut swrs = BTreeMap::new();
    for var in swr_vars {
        let name = var["CACHE_SWR_".len()..].to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let val = r.get(&var).map(str::to_string);
            r.problem(
                &var,
                val.as_deref(),
                "the category name after CACHE_SWR_ is empty or has characters other than letters, digits and _".into(),
                "CACHE_SWR_<CATEGORY>=<duration> with CATEGORY made of A-Z, 0-9 and _",
            );
            continue;
        }
        if let Some(d) = r.parse(&var, parse::duration, DURATION_FORM) {
            swrs.insert(name, d);
        }
    }
    let lease = r.duration("CACHE_LEASE_TTL", d.lease, true);
    let l1_max_bytes = r
        .parse("CACHE_L1_MAX_BYTES", parse::bytes, BYTES_FORM)
        .unwrap_or(d.l1_max_bytes);
    let max_body = r
        .parse("CACHE_MAX_BODY_BYTES", parse::bytes, BYTES_FORM)
        .unwrap_or(d.max_body);
    let compress_min = r
        .parse("CACHE_COMPRESS_MIN_BYTES", parse::bytes, BYTES_FORM)
        .unwrap_or(d.compress_min);
    let scope = r
        .parse(
            "CACHE_SCOPE",
            parse::choice::<crate::cache::CacheScope>,
            crate::cache::CacheScope::FORM,
        )
        .unwrap_or_default();
    let mut scope_vars: Vec<String> = r
        .vars
        .keys()
        .filter(|k| k.starts_with("CACHE_SCOPE_"))
        .cloned()
        .collect();
    scope_vars.sort();
    let mut scopes = BTreeMap::new();
    for var in scope_vars {
        let name = var["CACHE_SCOPE_".len()..].to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let val = r.get(&var).map(str::to_string);
            r.problem(
                &var,
                val.as_deref(),
                "the category name after CACHE_SCOPE_ is empty or has characters other than letters, digits and _".into(),
                "CACHE_SCOPE_<CATEGORY>=auto|tenant|user with CATEGORY made of A-Z, 0-9 and _",
            );
            continue;
        }
        if let Some(s) = r.parse(
            &var,
            parse::choice::<crate::cache::CacheScope>,
            crate::cache::CacheScope::FORM,
        ) {
            scopes.insert(name, s);
        }
    }
    CacheConfig {
        default_ttl,
        query_ttl,
        ai_ttl,
        categories,
        jitter_percent,
        stale,
        swr,
        swrs,
        lease,
        l1_max_bytes,
        max_body,
        compress_min,
        scope,
        scopes,
    }
}

/// The effective values of these variables, as `tenant-guard config` prints them.
pub(super) fn effective(c: &Config, push: &mut impl FnMut(&str, String)) {
    push("CACHE_TTL", fmt_duration(c.cache.default_ttl));
    push("QUERY_CACHE_TTL", fmt_duration(c.cache.query_ttl));
    push("AI_CACHE_TTL", fmt_duration(c.cache.ai_ttl));
    push("CACHE_TTL_JITTER", format!("{}%", c.cache.jitter_percent));
    push("CACHE_STALE_TTL", fmt_duration(c.cache.stale));
    push("CACHE_SWR", fmt_duration(c.cache.swr));
    for (name, d) in &c.cache.swrs {
        push(
            &format!("CACHE_SWR_{}", name.to_ascii_uppercase()),
            fmt_duration(*d),
        );
    }
    push("CACHE_LEASE_TTL", fmt_duration(c.cache.lease));
    push("CACHE_L1_MAX_BYTES", c.cache.l1_max_bytes.to_string());
    push("CACHE_MAX_BODY_BYTES", c.cache.max_body.to_string());
    push("CACHE_COMPRESS_MIN_BYTES", c.cache.compress_min.to_string());
    push("CACHE_SCOPE", c.cache.scope.to_string());
    for (name, scope) in &c.cache.scopes {
        push(
            &format!("CACHE_SCOPE_{}", name.to_ascii_uppercase()),
            scope.to_string(),
        );
    }
    for (name, ttl) in &c.cache.categories {
        push(
            &format!("CACHE_TTL_{}", name.to_ascii_uppercase().replace('-', "_")),
            fmt_duration(*ttl),
        );
    }
}
