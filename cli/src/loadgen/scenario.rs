//! Scenario files (`tenant-guard load --scenario FILE`): a traffic mix as JSON, checked and
//! turned into [`TenantLoad`]s.

use std::time::Duration;

use http::Method;

use super::{Endpoint, TenantLoad};

/// A traffic mix read from a small JSON file (`tenant-guard load --scenario FILE`).
///
/// ```
/// let s: tenant_guard_cli::loadgen::Scenario = serde_json::from_str(r#"{
///     "duration": "30s",
///     "limit": "50/5s",
///     "tenants": [
///         { "tenant": "calm", "rate": 5, "users": 5 },
///         { "tenant": "flood", "rate": 40, "users": 5,
///           "endpoints": [ { "method": "POST", "path": "/api/ai/complete", "weight": 1 } ] }
///     ],
///     "endpoints": [ { "path": "/api/items", "weight": 3 }, { "path": "/api/reports/1" } ]
/// }"#).unwrap();
/// let tenants = s.tenant_loads();
/// assert_eq!(tenants[0].endpoints.len(), 2);   // the default mix
/// assert_eq!(tenants[1].endpoints[0].path, "/api/ai/complete");
/// ```
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// How long to send, e.g. `"30s"` (overridden by `--duration`).
    #[serde(default, with = "opt_duration")]
    pub duration: Option<Duration>,
    /// The limit to check results against, `LIMIT/WINDOW` (overridden by `--limit`).
    #[serde(default)]
    pub limit: Option<String>,
    /// Per-tenant traffic.
    pub tenants: Vec<ScenarioTenant>,
    /// The default endpoint mix of tenants that name none.
    #[serde(default)]
    pub endpoints: Vec<ScenarioEndpoint>,
}

/// One tenant of a [`Scenario`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioTenant {
    /// Tenant id.
    pub tenant: String,
    /// Requests per second.
    pub rate: f64,
    /// Distinct users (default 1).
    #[serde(default = "one")]
    pub users: u32,
    /// This tenant's endpoint mix (default: the scenario's).
    #[serde(default)]
    pub endpoints: Vec<ScenarioEndpoint>,
}

/// One endpoint of a [`Scenario`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioEndpoint {
    /// HTTP method (default GET).
    #[serde(default = "get")]
    pub method: String,
    /// Path to request.
    pub path: String,
    /// Weight in the mix (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

fn get() -> String {
    "GET".into()
}

mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Scenario {
    /// Checks the scenario and turns it into tenant loads; errors say which tenant or
    /// endpoint is wrong.
    pub fn validate(&self) -> Result<Vec<TenantLoad>, String> {
        if self.tenants.is_empty() {
            return Err("the scenario lists no tenants".into());
        }
        let convert = |eps: &[ScenarioEndpoint]| -> Result<Vec<Endpoint>, String> {
            eps.iter()
                .map(|e| {
                    let method = Method::from_bytes(e.method.to_ascii_uppercase().as_bytes())
                        .map_err(|_| format!("`{}` is not an HTTP method", e.method))?;
                    if !e.path.starts_with('/') {
                        return Err(format!("path `{}` must start with `/`", e.path));
                    }
                    Ok(Endpoint {
                        method,
                        path: e.path.clone(),
                        weight: e.weight.max(1),
                    })
                })
                .collect()
        };
        let default = convert(&self.endpoints)?;
        self.tenants
            .iter()
            .map(|t| {
                tenant_guard::tenant::TenantId::new(&t.tenant)
                    .map_err(|e| format!("tenant `{}`: {e}", t.tenant))?;
                if !(t.rate > 0.0 && t.rate <= 100_000.0) {
                    return Err(format!(
                        "tenant `{}`: rate must be above 0 and at most 100000",
                        t.tenant
                    ));
                }
                let endpoints = if t.endpoints.is_empty() {
                    default.clone()
                } else {
                    convert(&t.endpoints)?
                };
                if endpoints.is_empty() {
                    return Err(format!(
                        "tenant `{}` has no endpoints (and the scenario sets no default)",
                        t.tenant
                    ));
                }
                Ok(TenantLoad {
                    tenant: t.tenant.clone(),
                    rate: t.rate,
                    users: t.users.max(1),
                    endpoints,
                })
            })
            .collect()
    }

    /// Like [`validate`](Self::validate), panicking on an invalid scenario (for tests and
    /// examples).
    pub fn tenant_loads(&self) -> Vec<TenantLoad> {
        self.validate().expect("valid scenario")
    }
}
