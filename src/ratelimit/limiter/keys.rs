//! What a check's counters are called: Redis keys (through [`Keys`](crate::keys::Keys))
//! and the in-process store's seeded 64-bit hashes.

use std::hash::{BuildHasher, Hasher};

use super::{Applied, counted_method};
use crate::keys::RedisKey;
use crate::ratelimit::{Check, RateLimiter, Rule, Scope};

/// Hashes of a check's tenant, (tenant, identity) and endpoint.
pub(super) struct KeyParts {
    pub(super) tenant: u64,
    pub(super) user: u64,
    pub(super) endpoint: u64,
}

impl RateLimiter {
    pub(super) fn identity_parts<'a>(rule: &Rule, c: &'a Check<'_>) -> (&'static str, &'a str) {
        match rule.scope {
            Scope::Tenant => ("tenant", "all"),
            Scope::Caller => c.identity.parts(),
        }
    }

    pub(super) fn redis_key(&self, a: &Applied<'_>, c: &Check<'_>, endpoint: &str) -> RedisKey {
        let (kind, id) = Self::identity_parts(a.rule, c);
        self.inner.keys.ratelimit(
            c.tenant,
            &self.counter_name(a.rule, a.name, c.tenant),
            kind,
            id,
            a.per_endpoint().then_some(endpoint),
        )
    }

    /// Hashes of the parts of a check that in-process counter keys are made of; the
    /// endpoint only if `endpoint` (some rule counts per endpoint).
    pub(super) fn key_parts(&self, c: &Check<'_>, endpoint: bool) -> KeyParts {
        let seed = &self.inner.seed;
        let mut h = seed.build_hasher();
        h.write(c.tenant.as_str().as_bytes());
        let tenant = h.finish();
        let (kind, id) = c.identity.parts();
        let mut h = seed.build_hasher();
        h.write_u64(tenant);
        h.write(kind.as_bytes());
        h.write_u8(0xff);
        h.write(id.as_bytes());
        let user = h.finish();
        let endpoint = if endpoint {
            let mut h = seed.build_hasher();
            h.write(counted_method(c.method).as_bytes());
            h.write_u8(b' ');
            h.write(c.route.as_bytes());
            h.finish()
        } else {
            0
        };
        KeyParts {
            tenant,
            user,
            endpoint,
        }
    }

    /// (key, owner) hashes of a rule's in-process counter: no string formatting on the
    /// hot path, and each string of the check hashed once whatever the number of rules.
    /// The owner leaves out the endpoint, so `reset` finds every per-endpoint counter.
    pub(super) fn mem_key(&self, rule: &Rule, rule_hash: u64, p: &KeyParts) -> (u64, u64) {
        let seed = &self.inner.seed;
        let mut h = seed.build_hasher();
        match rule.scope {
            Scope::Tenant => h.write_u64(p.tenant),
            Scope::Caller => h.write_u64(p.user),
        }
        h.write_u8(rule.scope as u8);
        h.write_u64(rule_hash);
        let owner = h.finish();
        if !rule.per_endpoint {
            return (owner, owner);
        }
        let mut h = seed.build_hasher();
        h.write_u64(owner);
        h.write_u64(p.endpoint);
        (h.finish(), owner)
    }

    pub(super) fn deny_hash(&self, key: &RedisKey) -> u64 {
        self.inner.seed.hash_one(key.as_str())
    }
}
