//! Reads the variables of access to the ops and admin routes (`TG_OPS_TOKEN`, `TG_ADMIN_TOKEN`).

use super::{Config, Reader, read_secret};
use crate::secret::Secret;

/// Who may read the ops routes and use the demo's admin route.
///
/// ```
/// let cfg = tenant_guard::config::Config::from_vars([
///     ("TG_OPS_TOKEN", "an-ops-token-of-at-least-32-bytes!!"),
/// ]).unwrap();
/// assert!(cfg.ops.token.is_some());
/// assert!(cfg.ops.admin_token.is_none()); // the admin route is refused
/// assert!(!format!("{cfg:?}").contains("an-ops-token"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OpsConfig {
    /// Bearer token required by `/metrics` and `/cache/status` (`TG_OPS_TOKEN`; unset: open,
    /// for a port only the monitoring network reaches). `/health` and `/health/ready` stay
    /// open for probes.
    pub token: Option<Secret>,
    /// Bearer token of the demo app's admin route, `DELETE /api/cache` (`TG_ADMIN_TOKEN`;
    /// unset: the route is refused).
    pub admin_token: Option<Secret>,
}

pub(super) fn read_ops(r: &mut Reader) -> OpsConfig {
    let mut token = |var: &str| {
        let raw = r.get(var)?.to_string();
        read_secret(r, var, &raw)
    };
    OpsConfig {
        token: token("TG_OPS_TOKEN"),
        admin_token: token("TG_ADMIN_TOKEN"),
    }
}

/// The effective values of these variables, as `tenant-guard config` prints them.
pub(super) fn effective(c: &Config, push: &mut impl FnMut(&str, String)) {
    let token = |t: &Option<Secret>, unset: &str| {
        t.as_ref().map_or_else(
            || unset.to_string(),
            |s| format!("[redacted] ({} bytes)", s.len()),
        )
    };
    push(
        "TG_OPS_TOKEN",
        token(&c.ops.token, "(unset: /metrics and /cache/status are open)"),
    );
    push(
        "TG_ADMIN_TOKEN",
        token(&c.ops.admin_token, "(unset: admin routes refused)"),
    );
}
