//! Reads the variables of token budgets (`RATE_LIMIT_TOKENS`,
//! `RATE_LIMIT_TOKENS_DEFAULT_MAX`, `RATE_LIMIT_TOKENS_MAX_BODY`,
//! `RATE_LIMIT_TOKENS_CACHE_HITS`).

use super::{Config, Reader};
use crate::parse;
use crate::ratelimit::{Policy, RateLimitConfig};
use crate::tokens::{TokenConfig, parse_token_rules};

pub(super) fn read_tokens(r: &mut Reader, rate_limit: &RateLimitConfig) -> TokenConfig {
    let d = TokenConfig::default();
    let rules = r
        .parse(
            "RATE_LIMIT_TOKENS",
            |v| {
                let rules = parse_token_rules(v).map_err(String::from)?;
                let budgets = TokenConfig {
                    rules,
                    ..TokenConfig::default()
                };
                budgets.policy().map_err(|e| e.to_string())?;
                // Budgets count under rate-limit keys named after them: a request rule of
                // the same name would share their counters.
                let requests = Policy::from_config(rate_limit);
                if let Some(clash) = budgets
                    .rules
                    .iter()
                    .find(|t| requests.rules().iter().any(|q| q.name == t.name))
                {
                    return Err(format!(
                        "budget `{}` has the name of a request rule; name it (`user: NAME: METHOD /route = ...`)",
                        clash.name
                    ));
                }
                Ok(budgets.rules)
            },
            "`tenant:` or `user:`, an optional `NAME:`, then `METHOD /route = LIMIT/WINDOW`, entries separated by `;`, e.g. `user: POST /api/ai/{*rest} = 20000/1m`",
        )
        .unwrap_or_default();
    let default_max_tokens = r
        .parse(
            "RATE_LIMIT_TOKENS_DEFAULT_MAX",
            parse::integer::<u32>,
            "a whole number of tokens",
        )
        .unwrap_or(d.default_max_tokens);
    let max_body = r
        .parse(
            "RATE_LIMIT_TOKENS_MAX_BODY",
            |v| {
                parse::bytes(v).and_then(|n| match usize::try_from(n) {
                    Ok(n) if (1..=64 << 20).contains(&n) => Ok(n),
                    _ => Err("must be between 1 byte and 64 MiB".into()),
                })
            },
            "a size such as `1MiB` or `65536`",
        )
        .unwrap_or(d.max_body);
    let cache_hits = r
        .parse(
            "RATE_LIMIT_TOKENS_CACHE_HITS",
            parse::choice,
            "`free` or `charged`",
        )
        .unwrap_or(d.cache_hits);
    TokenConfig {
        rules,
        default_max_tokens,
        max_body,
        cache_hits,
    }
}

/// The effective values of these variables, as `tenant-guard config` prints them.
pub(super) fn effective(c: &Config, push: &mut impl FnMut(&str, String)) {
    let t = &c.tokens;
    let rules: Vec<String> = t
        .rules
        .iter()
        .map(|r| {
            let scope = match r.scope {
                crate::ratelimit::Scope::Tenant => "tenant",
                crate::ratelimit::Scope::Caller => "user",
            };
            let pattern = r
                .endpoint
                .as_ref()
                .map_or_else(|| "* /{*any}".into(), ToString::to_string);
            format!("{scope}: {}: {pattern} = {}", r.name, r.quota)
        })
        .collect();
    push(
        "RATE_LIMIT_TOKENS",
        if rules.is_empty() {
            "(none)".into()
        } else {
            rules.join("; ")
        },
    );
    push(
        "RATE_LIMIT_TOKENS_DEFAULT_MAX",
        t.default_max_tokens.to_string(),
    );
    push("RATE_LIMIT_TOKENS_MAX_BODY", t.max_body.to_string());
    push("RATE_LIMIT_TOKENS_CACHE_HITS", t.cache_hits.to_string());
}
