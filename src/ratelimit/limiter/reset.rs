//! Forgetting an identity: its counters and blocks of every user-scoped rule (a support
//! agent unblocking a user).

use http::Method;

use crate::backend::BackendError;
use crate::keys::KeyKind;
use crate::ratelimit::{Check, Identity, RateLimiter, Scope};
use crate::tenant::TenantId;

impl RateLimiter {
    /// Forgets one identity's usage of every user-scoped rule of a tenant, and its blocks
    /// (`RATE_LIMIT_BLOCK`; e.g. after a support agent unblocks a user). Returns how many
    /// counters were removed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
    /// use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
    ///
    /// let config = Config::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_MAX", "1")])?;
    /// let metrics = Metrics::new();
    /// let limiter = RateLimiter::from_config(&config, Backend::from_config(&config, &metrics)?, &metrics);
    /// let (acme, ann) = (TenantId::new("acme")?, Identity::User("ann".into()));
    /// let check = Check { tenant: &acme, identity: &ann, method: &http::Method::GET, route: "/items", cost: None, plan: None };
    /// assert!(limiter.check(&check).await.allowed);
    /// assert!(!limiter.check(&check).await.allowed);
    /// // A support agent lets ann in again.
    /// assert!(limiter.reset(&acme, &ann).await? >= 1);
    /// assert!(limiter.check(&check).await.allowed);
    /// # Ok(()) }
    /// ```
    pub async fn reset(&self, tenant: &TenantId, identity: &Identity) -> Result<u64, BackendError> {
        let (kind, id) = identity.parts();
        let rules = self.inner.policy.rules().iter().zip(&self.inner.rule_names);
        if let Some(mem) = &self.inner.memory {
            let method = Method::GET;
            let check = Check {
                tenant,
                identity,
                method: &method,
                route: "",
                cost: None,
                plan: None,
            };
            // The owner hash does not depend on the endpoint.
            let parts = self.key_parts(&check, false);
            let owners: Vec<u64> = rules
                .zip(&self.inner.rule_hashes)
                .filter(|((r, _), _)| r.scope == Scope::Caller)
                .map(|((r, _), &hash)| self.mem_key(r, hash, &parts).1)
                .collect();
            return Ok(mem.reset_owners(&owners));
        }
        let mut n = 0;
        let keys = &self.inner.keys;
        for (r, name) in rules.filter(|(r, _)| r.scope == Scope::Caller) {
            // A calendar quota's counter of the current period.
            let name = &*self.counter_name(r, name, tenant);
            // The counters, and their blocks (not counted in `n`).
            if r.per_endpoint {
                for kind_of in [KeyKind::RateLimit, KeyKind::RateLimitBlock] {
                    let p = keys.prefix_pattern(kind_of, tenant, &[name, kind, id]);
                    let gone = self.inner.backend.delete_matching(&p).await?;
                    n += if kind_of == KeyKind::RateLimit {
                        gone
                    } else {
                        0
                    };
                }
            } else {
                let k = keys.ratelimit(tenant, name, kind, id, None);
                n += u64::from(self.inner.backend.delete(&k).await?);
                let b = keys.ratelimit_block(tenant, name, kind, id, None);
                self.inner.backend.delete(&b).await?;
            }
        }
        if let Some(deny) = &self.inner.deny {
            // Cached denials of this identity must go too.
            deny.clear();
        }
        Ok(n)
    }
}
