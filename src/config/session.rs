//! Reads the variables of sessions (`SESSION_*`).

use super::{Config, Reader, read_secret};
use crate::parse;
use crate::parse::{BOOL_FORM, BYTES_FORM, fmt_duration};
use crate::session::{SameSite, SessionConfig, SessionOutage};

pub(super) fn read_session(r: &mut Reader) -> SessionConfig {
    let d = SessionConfig::default();
    let ttl = r.duration("SESSION_TTL", d.ttl, true);
    let max_lifetime = r.duration("SESSION_MAX_LIFETIME", d.max_lifetime, true);
    let renew_interval = r.duration("SESSION_RENEW_INTERVAL", d.renew_interval, false);
    let secret = match r.get("SESSION_SECRET").map(str::to_string) {
        Some(s) => read_secret(r, "SESSION_SECRET", &s),
        None => None,
    };
    let mut previous_secrets = Vec::new();
    if let Some(list) = r.get("SESSION_SECRET_PREVIOUS").map(str::to_string) {
        for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(s) = read_secret(r, "SESSION_SECRET_PREVIOUS", s) {
                previous_secrets.push(s);
            }
        }
    }
    if secret.is_none() && !previous_secrets.is_empty() {
        r.problem(
            "SESSION_SECRET_PREVIOUS",
            None,
            "set without SESSION_SECRET".into(),
            "old secrets only verify: set SESSION_SECRET to the secret that signs",
        );
    }
    let cookie_name = r
        .parse(
            "SESSION_COOKIE_NAME",
            |v| {
                let v = v.trim();
                if v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    Ok(v.to_string())
                } else {
                    Err("not a valid cookie name".into())
                }
            },
            "1-64 characters from A-Z a-z 0-9 - _ .",
        )
        .unwrap_or(d.cookie_name);
    let cookie_secure = r
        .parse("SESSION_COOKIE_SECURE", parse::boolean, BOOL_FORM)
        .unwrap_or(d.cookie_secure);
    let cookie_same_site = r
        .parse(
            "SESSION_COOKIE_SAMESITE",
            parse::choice::<SameSite>,
            "`lax`, `strict` or `none`",
        )
        .unwrap_or(d.cookie_same_site);
    let cookie_domain = r.parse(
        "SESSION_COOKIE_DOMAIN",
        |v| {
            let v = v.trim().trim_start_matches('.');
            if !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                Ok(v.to_ascii_lowercase())
            } else {
                Err("not a domain name".into())
            }
        },
        "a domain such as `example.com`",
    );
    let explicit_prefix = r.parse("SESSION_COOKIE_HOST_PREFIX", parse::boolean, BOOL_FORM);
    let cookie_host_prefix = explicit_prefix.unwrap_or(cookie_secure && cookie_domain.is_none());
    if explicit_prefix == Some(true) && (!cookie_secure || cookie_domain.is_some()) {
        r.problem(
            "SESSION_COOKIE_HOST_PREFIX",
            None,
            "the `__Host-` prefix needs Secure and no Domain".into(),
            "false, or SESSION_COOKIE_SECURE=true and SESSION_COOKIE_DOMAIN unset",
        );
    }
    if cookie_same_site == SameSite::None && !cookie_secure {
        r.problem(
            "SESSION_COOKIE_SAMESITE",
            Some("none"),
            "browsers reject SameSite=None without Secure".into(),
            "`lax` or `strict`, or SESSION_COOKIE_SECURE=true",
        );
    }
    let cookie_encrypt = r
        .parse("SESSION_COOKIE_ENCRYPT", parse::boolean, BOOL_FORM)
        .unwrap_or(d.cookie_encrypt);
    let max_bytes = r
        .parse(
            "SESSION_MAX_BYTES",
            |v| {
                parse::bytes(v).and_then(|n| {
                    if n == 0 {
                        Err("must be at least 1".into())
                    } else {
                        Ok(n)
                    }
                })
            },
            BYTES_FORM,
        )
        .unwrap_or(d.max_bytes);
    let outage = r
        .parse(
            "SESSION_OUTAGE",
            parse::choice::<SessionOutage>,
            "`closed` or `local`",
        )
        .unwrap_or(d.outage);
    SessionConfig {
        ttl,
        max_lifetime,
        renew_interval,
        secret,
        previous_secrets,
        cookie_name,
        cookie_secure,
        cookie_same_site,
        cookie_domain,
        cookie_host_prefix,
        cookie_encrypt,
        max_bytes,
        outage,
    }
}

/// The effective values of these variables, as `tenant-guard config` prints them.
pub(super) fn effective(c: &Config, push: &mut impl FnMut(&str, String)) {
    let se = &c.session;
    push("SESSION_TTL", fmt_duration(se.ttl));
    push("SESSION_MAX_LIFETIME", fmt_duration(se.max_lifetime));
    push("SESSION_RENEW_INTERVAL", fmt_duration(se.renew_interval));
    push(
        "SESSION_SECRET",
        match &se.secret {
            Some(s) => format!("[redacted] ({} bytes)", s.len()),
            None => "(unset: random per process, sessions end on restart)".into(),
        },
    );
    push(
        "SESSION_SECRET_PREVIOUS",
        format!("{} secret(s), [redacted]", se.previous_secrets.len()),
    );
    push("SESSION_COOKIE_NAME", se.cookie_name.clone());
    push("SESSION_COOKIE_SECURE", se.cookie_secure.to_string());
    push("SESSION_COOKIE_SAMESITE", se.cookie_same_site.to_string());
    push(
        "SESSION_COOKIE_DOMAIN",
        se.cookie_domain
            .clone()
            .unwrap_or_else(|| "(none: host-only)".into()),
    );
    push(
        "SESSION_COOKIE_HOST_PREFIX",
        se.cookie_host_prefix.to_string(),
    );
    push("SESSION_COOKIE_ENCRYPT", se.cookie_encrypt.to_string());
    push("SESSION_MAX_BYTES", se.max_bytes.to_string());
    push("SESSION_OUTAGE", se.outage.to_string());
}
