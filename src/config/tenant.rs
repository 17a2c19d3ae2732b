//! Reads the variables of tenant resolution (`TG_TENANT_SOURCE`, `TG_DEFAULT_TENANT`, `TG_TENANTS`).

use super::{Config, Reader};
use crate::tenant::{TenantConfig, TenantId, TenantSource};

const SOURCE_FORM: &str =
    "`header`, `header:<Header-Name>`, `subdomain:<base.domain>`, `path` or `path:/<prefix>`";

pub(super) fn read_tenant(r: &mut Reader) -> TenantConfig {
    let d = TenantConfig::default();
    let source = r
        .parse(
            "TG_TENANT_SOURCE",
            |v| {
                let v = v.trim();
                let (kind, arg) = v.split_once(':').unwrap_or((v, ""));
                match kind {
                    "header" => {
                        let name = if arg.is_empty() { "X-Tenant-ID" } else { arg };
                        http::HeaderName::try_from(name)
                            .map_err(|_| format!("`{name}` is not a valid header name"))?;
                        Ok(TenantSource::Header(name.to_string()))
                    }
                    "subdomain" => {
                        let base = arg.trim_matches('.').to_ascii_lowercase();
                        if base.is_empty()
                            || !base
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                        {
                            return Err(format!("`{arg}` is not a base domain"));
                        }
                        Ok(TenantSource::Subdomain(base))
                    }
                    "path" => {
                        let prefix = arg.trim_end_matches('/');
                        if !prefix.is_empty() && !prefix.starts_with('/') {
                            return Err(format!("path prefix `{arg}` must start with `/`"));
                        }
                        Ok(TenantSource::PathPrefix(prefix.to_string()))
                    }
                    other => Err(format!("unknown source `{other}`")),
                }
            },
            SOURCE_FORM,
        )
        .unwrap_or(d.source);
    let default_tenant = r.parse(
        "TG_DEFAULT_TENANT",
        |v| TenantId::new(v.trim()).map_err(|e| e.to_string()),
        TenantId::FORM,
    );
    let known = r.parse(
        "TG_TENANTS",
        |v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| TenantId::new(t).map_err(|e| format!("`{t}`: {e}")))
                .collect::<Result<Vec<_>, _>>()
        },
        "a comma list of tenant ids, e.g. `acme,globex`",
    );
    if let (Some(known), Some(d)) = (&known, &default_tenant) {
        if !known.contains(d) {
            r.problem(
                "TG_DEFAULT_TENANT",
                Some(d.as_str()),
                "not in TG_TENANTS".into(),
                "one of the tenants of TG_TENANTS",
            );
        }
    }
    TenantConfig {
        source,
        default_tenant,
        known,
    }
}

/// The effective values of these variables, as `tenant-guard config` prints them.
pub(super) fn effective(c: &Config, push: &mut impl FnMut(&str, String)) {
    let source = match &c.tenant.source {
        TenantSource::Header(h) => format!("header:{h}"),
        TenantSource::Subdomain(d) => format!("subdomain:{d}"),
        TenantSource::PathPrefix(p) => format!("path:{p}"),
    };
    push("TG_TENANT_SOURCE", source);
    push(
        "TG_TENANTS",
        c.tenant.known.as_ref().map_or_else(
            || "(any valid id)".into(),
            |k| k.iter().map(TenantId::as_str).collect::<Vec<_>>().join(","),
        ),
    );
    push(
        "TG_DEFAULT_TENANT",
        c.tenant.default_tenant.as_ref().map_or_else(
            || "(none: requests without a tenant get 400)".into(),
            |t| t.to_string(),
        ),
    );
}
