//! Scenario files (`tenant-guard load --scenario FILE`): a traffic mix as JSON, checked and
//! turned into [`TenantLoad`]s.

use std::time::Duration;

use super::{Endpoint, TenantLoad};

/// A traffic mix read from a small JSON file (`tenant-guard load --scenario FILE`).
///
/// ```
/// let s: tenant_guard_cli::loadgen::Scenario = serde_json::from_str(r#"{
///     "duration": "30s",
///     "limit": "50/5s",
///     "tenants": [
///         { "tenant": "calm", "rate": 5, "users": 5 },
///         { "tenant": "flood", "rate": 40, "users": 5, "endpoints": [ "POST /api/ai/complete" ] }
///     ],
///     "endpoints": [ "GET /api/items = 3", "GET /api/reports/1" ]
/// }"#).unwrap();
/// let tenants = s.tenant_loads();
/// assert_eq!(tenants[0].endpoints.len(), 2);   // the default mix
/// assert_eq!(tenants[0].endpoints[0].weight, 3);
/// assert_eq!(tenants[1].endpoints[0].path, "/api/ai/complete");
///
/// // The former object form is refused with the text to write.
/// let old = r#"{ "tenants": [ { "tenant": "a", "rate": 1,
///     "endpoints": [ { "method": "GET", "path": "/api/items", "weight": 3 } ] } ] }"#;
/// let err = serde_json::from_str::<tenant_guard_cli::loadgen::Scenario>(old).unwrap_err();
/// assert!(err.to_string().contains(r#"is the old form; write "GET /api/items = 3""#), "{err}");
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

/// One endpoint of a [`Scenario`]: a string in the form of `load --endpoint`,
/// `METHOD /path [= WEIGHT]` (read by [`Endpoint::parse`]), e.g. `"GET /api/items = 3"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioEndpoint(pub Endpoint);

impl<'de> serde::Deserialize<'de> for ScenarioEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::Value;
        match Value::deserialize(d)? {
            Value::String(s) => Endpoint::parse(&s).map(Self).map_err(D::Error::custom),
            // The former form: `{ "method": "GET", "path": "/x", "weight": 3 }`.
            Value::Object(o) if o.contains_key("path") => {
                let text = |k: &str| {
                    o.get(k)
                        .map(|v| v.as_str().map_or(v.to_string(), str::to_string))
                };
                let method = text("method").unwrap_or_else(|| "GET".into());
                let path = text("path").unwrap_or_default();
                let weight = text("weight")
                    .map(|w| format!(" = {w}"))
                    .unwrap_or_default();
                Err(D::Error::custom(format!(
                    "endpoint `{}` is the old form; write \"{method} {path}{weight}\"",
                    Value::Object(o)
                )))
            }
            other => Err(D::Error::custom(format!(
                "endpoint `{other}`: expected a string {}",
                Endpoint::FORM
            ))),
        }
    }
}

fn one() -> u32 {
    1
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
    /// Checks the scenario and turns it into tenant loads; errors say which tenant is wrong.
    /// (Endpoints are checked as the file is read: [`ScenarioEndpoint`].)
    pub fn validate(&self) -> Result<Vec<TenantLoad>, String> {
        if self.tenants.is_empty() {
            return Err("the scenario lists no tenants".into());
        }
        let convert = |eps: &[ScenarioEndpoint]| -> Vec<Endpoint> {
            eps.iter().map(|e| e.0.clone()).collect()
        };
        let default = convert(&self.endpoints);
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
                    convert(&t.endpoints)
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
