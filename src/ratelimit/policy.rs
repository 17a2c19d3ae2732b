//! A rule set: rules, plan-tier overrides, request costs. Built from env vars or in code.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::time::Duration;

use http::Method;

use super::RateLimitConfig;
use super::rules::{Algorithm, Block, EndpointPattern, Lease, MAX_EXACT_LIMIT, Quota, Rule, Scope};
use crate::tenant::TenantId;

/// All rate-limit rules of an app.
///
/// ```
/// use tenant_guard::ratelimit::{EndpointPattern, Policy, Quota, Rule, Scope};
///
/// let policy = Policy::builder()
///     .rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("1000/1m").unwrap()))
///     .rule(Rule::new("per-user", Scope::Caller, Quota::parse("100/15m").unwrap()))
///     .rule(
///         Rule::new("ai", Scope::Caller, Quota::parse("10/1m").unwrap())
///             .for_endpoint(EndpointPattern::parse("POST /api/ai/{*rest}").unwrap()),
///     )
///     .cost(EndpointPattern::parse("POST /api/ai/complete").unwrap(), 5)
///     .plan("pro", [("per-tenant", Quota::parse("5000/1m").unwrap())])
///     .tenant_plan("acme", "pro")
///     .build()
///     .unwrap();
/// assert_eq!(policy.rules().len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    rules: Vec<Rule>,
    algorithm: Algorithm,
    costs: Vec<(EndpointPattern, NonZeroU32)>,
    plans: HashMap<String, HashMap<String, Quota>>,
    tenant_plans: HashMap<String, String>,
    calendar: super::QuotaCalendar,
}

/// Builds a [`Policy`]; [`build`](PolicyBuilder::build) validates it.
///
/// ```
/// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
/// let policy = Policy::builder()
///     .rule(Rule::new("per-user", Scope::Caller, Quota::parse("100/15m").unwrap()))
///     .build()
///     .unwrap();
/// assert_eq!(policy.rules()[0].name, "per-user");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct PolicyBuilder {
    policy: Policy,
    shadow: Vec<String>,
    blocks: Vec<(String, Block)>,
    leases: Vec<(String, Lease)>,
}

impl PolicyBuilder {
    /// Adds a rule.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// let q = Quota::parse("100/1m").unwrap();
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, q))
    ///     .rule(Rule::new("per-user", Scope::Caller, q))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.rules().len(), 2);
    /// ```
    pub fn rule(mut self, rule: Rule) -> Self {
        self.policy.rules.push(rule);
        self
    }

    /// Default algorithm of rules that do not pick one.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Algorithm, Policy, Quota, Rule, Scope};
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-user", Scope::Caller, Quota::parse("100/1m").unwrap()))
    ///     .algorithm(Algorithm::Exact)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.algorithm(), Algorithm::Exact);
    /// ```
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.policy.algorithm = algorithm;
        self
    }

    /// Requests matching `pattern` cost `cost` units (default 1). The first match wins.
    ///
    /// # Panics
    /// If `cost` is 0.
    ///
    /// ```
    /// use http::Method;
    /// use tenant_guard::ratelimit::{EndpointPattern, Policy, Quota, Rule, Scope};
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-user", Scope::Caller, Quota::parse("100/1m").unwrap()))
    ///     .cost(EndpointPattern::parse("POST /api/ai/{*rest}").unwrap(), 5)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.cost(&Method::POST, "/api/ai/complete"), 5);
    /// assert_eq!(policy.cost(&Method::GET, "/api/items"), 1);
    /// ```
    pub fn cost(mut self, pattern: EndpointPattern, cost: u32) -> Self {
        let cost = NonZeroU32::new(cost).expect("cost must be at least 1");
        self.policy.costs.push((pattern, cost));
        self
    }

    /// A plan tier: quotas that replace the named rules' quotas for tenants on the plan.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{Check, Identity, Policy, Quota, RateLimiter, Rule, Scope};
    /// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
    ///
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("100/1m").unwrap()))
    ///     .plan("pro", [("per-tenant", Quota::parse("5000/1m").unwrap())])
    ///     .build()
    ///     .unwrap();
    /// let limiter = RateLimiter::new(Backend::Memory(MemoryStore::new(Default::default())), Keys::default(),
    ///     policy, Default::default(), &Metrics::new());
    /// let (acme, who) = (TenantId::new("acme").unwrap(), Identity::Unknown);
    /// let check = |plan| Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/", cost: None, plan };
    /// assert_eq!(limiter.check(&check(None)).await.rules[0].limit, 100);
    /// assert_eq!(limiter.check(&check(Some("pro"))).await.rules[0].limit, 5000);
    /// # }
    /// ```
    pub fn plan<'a>(
        mut self,
        name: &str,
        overrides: impl IntoIterator<Item = (&'a str, Quota)>,
    ) -> Self {
        let map = overrides
            .into_iter()
            .map(|(r, q)| (r.to_string(), q))
            .collect();
        self.policy.plans.insert(name.to_string(), map);
        self
    }

    /// Puts a tenant on a plan. (For many tenants, pass a plan with each check instead.)
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// use tenant_guard::tenant::TenantId;
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("100/1m").unwrap()))
    ///     .plan("pro", [("per-tenant", Quota::parse("5000/1m").unwrap())])
    ///     .tenant_plan("acme", "pro")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.plan_of(&TenantId::new("acme").unwrap()), Some("pro"));
    /// assert_eq!(policy.plan_of(&TenantId::new("other").unwrap()), None);
    /// ```
    pub fn tenant_plan(mut self, tenant: &str, plan: &str) -> Self {
        self.policy
            .tenant_plans
            .insert(tenant.to_string(), plan.to_string());
        self
    }

    /// Makes a named rule shadow-only (dry run).
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-user", Scope::Caller, Quota::parse("100/1m").unwrap()))
    ///     .shadow("per-user")
    ///     .build()
    ///     .unwrap();
    /// assert!(policy.rules()[0].shadow);
    /// ```
    pub fn shadow(mut self, rule: &str) -> Self {
        self.shadow.push(rule.to_string());
        self
    }

    /// Where the periods of calendar quotas fall ([`Rule::calendar`]): time zone and
    /// billing anchor days (default: UTC, months from the 1st).
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, QuotaCalendar, Rule, Scope};
    /// let calendar = QuotaCalendar::new("America/New_York").unwrap().anchor("acme", 15).unwrap();
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-user", Scope::Caller, Quota::parse("100/1m").unwrap()))
    ///     .quota_calendar(calendar)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.quota_calendar().time_zone(), "America/New_York");
    /// assert_eq!(policy.quota_calendar().anchor_of("acme"), 15);
    /// ```
    pub fn quota_calendar(mut self, calendar: super::QuotaCalendar) -> Self {
        self.policy.calendar = calendar;
        self
    }

    /// Makes a named rule keep refusing an identity it denied, for `block`
    /// (`RATE_LIMIT_BLOCK`).
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Block, Policy, Quota, Rule, Scope};
    /// let block = Block::parse("1m..1h").unwrap();
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-user", Scope::Caller, Quota::parse("100/1m").unwrap()))
    ///     .block("per-user", block)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.rules()[0].block, Some(block));
    /// ```
    pub fn block(mut self, rule: &str, block: Block) -> Self {
        self.blocks.push((rule.to_string(), block));
        self
    }

    /// Lets instances lease hot counters of a named rule ([`Lease`], `RATE_LIMIT_LEASE`).
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Lease, Policy, PolicyProblem, Quota, Rule, Scope};
    /// let q = Quota::parse("10000/1m").unwrap();
    /// let lease = Lease::parse("100/50ms").unwrap();
    /// let p = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, q))
    ///     .lease("per-tenant", lease)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(p.rules()[0].lease, Some(lease));
    /// // Only compact windows can be leased.
    /// let err = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, q).algorithm(tenant_guard::ratelimit::Algorithm::Gcra))
    ///     .lease("per-tenant", lease)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(&err.problems()[0], PolicyProblem::BadLease { rule, .. } if rule == "per-tenant"));
    /// ```
    pub fn lease(mut self, rule: &str, lease: Lease) -> Self {
        self.leases.push((rule.to_string(), lease));
        self
    }

    /// Validates and returns the policy; the error lists every problem found, each naming
    /// the offending rule, plan or tenant.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, PolicyProblem, Quota, Rule, Scope};
    ///
    /// let q = Quota::parse("10/1m").unwrap();
    /// let err = Policy::builder()
    ///     .rule(Rule::new("per-user", Scope::Caller, q))
    ///     .shadow("nope")
    ///     .tenant_plan("acme", "gold")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.problems().len(), 2);
    /// assert!(matches!(&err.problems()[0], PolicyProblem::UnknownShadow { rule } if rule == "nope"));
    /// ```
    pub fn build(mut self) -> Result<Policy, PolicyError> {
        let p = &mut self.policy;
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        for r in &p.rules {
            if !names.insert(r.name.as_str()) {
                problems.push(PolicyProblem::DuplicateRule {
                    rule: r.name.clone(),
                });
            }
            if r.name.is_empty()
                || r.name.contains(['"', '\\'])
                || r.name.chars().any(char::is_control)
            {
                problems.push(PolicyProblem::BadRuleName {
                    rule: r.name.clone(),
                });
            }
        }
        for s in &self.shadow {
            match p.rules.iter_mut().find(|r| &r.name == s) {
                Some(rule) => rule.shadow = true,
                None => problems.push(PolicyProblem::UnknownShadow { rule: s.clone() }),
            }
        }
        for (name, block) in &self.blocks {
            match p.rules.iter_mut().find(|r| &r.name == name) {
                Some(rule) => rule.block = Some(*block),
                None => problems.push(PolicyProblem::UnknownBlock { rule: name.clone() }),
            }
        }
        for (name, lease) in &self.leases {
            match p.rules.iter_mut().find(|r| &r.name == name) {
                Some(rule) => rule.lease = Some(*lease),
                None => problems.push(PolicyProblem::UnknownLease { rule: name.clone() }),
            }
        }
        for r in p.rules.iter().filter(|r| r.lease.is_some()) {
            let lease = r.lease.expect("filtered");
            let why = if r.algorithm.unwrap_or(p.algorithm) != Algorithm::Compact {
                Some("only compact windows can be leased")
            } else if r.shadow {
                Some("a shadow rule never refuses: there is nothing to lease")
            } else if r.block.is_some() {
                Some("a blocking rule must see every denial in Redis")
            } else if !lease.valid() {
                Some("a lease is held between 1ms and 10s")
            } else {
                None
            };
            if let Some(why) = why {
                problems.push(PolicyProblem::BadLease {
                    rule: r.name.clone(),
                    why,
                });
            }
        }
        for r in p.rules.iter().filter(|r| r.block.is_some()) {
            let b = r.block.expect("filtered");
            // A tenant's block refuses all its users: any client naming the tenant could
            // lock it out. Blocks are for the identities a user rule counts.
            if r.scope == Scope::Tenant {
                problems.push(PolicyProblem::TenantBlock {
                    rule: r.name.clone(),
                });
            }
            // `Block`'s fields are public: one built in code skips `Block::parse`.
            let ms = Duration::from_millis(1);
            if b.first < ms || b.max > Quota::MAX_WINDOW || b.max < b.first {
                problems.push(PolicyProblem::BadBlock {
                    rule: r.name.clone(),
                });
            }
        }
        let mut plans: Vec<_> = p.plans.iter().collect();
        plans.sort_by(|a, b| a.0.cmp(b.0));
        for (plan, overrides) in plans {
            let mut rules: Vec<&String> = overrides.keys().collect();
            rules.sort();
            for rule in rules {
                if !p.rules.iter().any(|r| &r.name == rule) {
                    problems.push(PolicyProblem::UnknownPlanRule {
                        plan: plan.clone(),
                        rule: rule.clone(),
                    });
                }
            }
        }
        let mut tenant_plans: Vec<_> = p.tenant_plans.iter().collect();
        tenant_plans.sort();
        for (tenant, plan) in tenant_plans {
            if !p.plans.contains_key(plan) {
                problems.push(PolicyProblem::UnknownTenantPlan {
                    tenant: tenant.clone(),
                    plan: plan.clone(),
                });
            }
        }
        let algo = p.algorithm;
        for r in &p.rules {
            let mut quotas = vec![r.quota];
            quotas.extend(p.plans.values().filter_map(|o| o.get(&r.name)).copied());
            // `Quota`'s fields are public: a quota built in code skips `Quota::parse`.
            if quotas
                .iter()
                .any(|q| q.window < Duration::from_millis(1) || q.window > Quota::MAX_WINDOW)
            {
                problems.push(PolicyProblem::BadWindow {
                    rule: r.name.clone(),
                });
            }
            if r.algorithm.unwrap_or(algo) == Algorithm::Exact
                && quotas.iter().any(|q| q.limit.get() > MAX_EXACT_LIMIT)
            {
                problems.push(PolicyProblem::ExactLimitTooHigh {
                    rule: r.name.clone(),
                });
            }
        }
        if problems.is_empty() {
            Ok(self.policy)
        } else {
            Err(PolicyError { problems })
        }
    }
}

/// One thing wrong with a rule set, found by [`PolicyBuilder::build`].
///
/// ```
/// use tenant_guard::ratelimit::{Policy, PolicyProblem, Quota, Rule, Scope};
/// let err = Policy::builder()
///     .rule(Rule::new("per-user", Scope::Caller, Quota::parse("1/1s").unwrap()))
///     .tenant_plan("acme", "gold")
///     .build()
///     .unwrap_err();
/// assert!(matches!(&err.problems()[0], PolicyProblem::UnknownTenantPlan { plan, .. } if plan == "gold"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyProblem {
    /// Two rules share a name.
    #[error("rule name `{rule}` is used twice")]
    DuplicateRule {
        /// The name.
        rule: String,
    },
    /// A rule name is empty or has quotes, backslashes or control characters.
    #[error("rule name `{rule}` is empty or has quotes, backslashes or control characters")]
    BadRuleName {
        /// The name.
        rule: String,
    },
    /// A shadow rule that no rule is named.
    #[error("no rule is named `{rule}`")]
    UnknownShadow {
        /// The name given.
        rule: String,
    },
    /// A block on a tenant-wide rule: any client naming the tenant could lock it out.
    #[error(
        "rule `{rule}` counts a whole tenant: blocking it would let any client lock the tenant out; block user rules"
    )]
    TenantBlock {
        /// The rule.
        rule: String,
    },
    /// A block shorter than 1 ms, longer than 10 years, or whose longest is shorter than
    /// its first.
    #[error("the block of rule `{rule}` is not between 1ms and 10 years, first <= longest")]
    BadBlock {
        /// The rule.
        rule: String,
    },
    /// A block (`RATE_LIMIT_BLOCK`) for a rule that does not exist.
    #[error("RATE_LIMIT_BLOCK names `{rule}`, which no rule is named")]
    UnknownBlock {
        /// The name given.
        rule: String,
    },
    /// A lease (`RATE_LIMIT_LEASE`) for a rule that does not exist.
    #[error("RATE_LIMIT_LEASE names `{rule}`, which no rule is named")]
    UnknownLease {
        /// The name given.
        rule: String,
    },
    /// A lease on a rule that cannot have one.
    #[error("rule `{rule}` cannot be leased: {why}")]
    BadLease {
        /// The rule.
        rule: String,
        /// Why not.
        why: &'static str,
    },
    /// A plan overrides a rule that does not exist.
    #[error("plan `{plan}` overrides `{rule}`, which is not a rule")]
    UnknownPlanRule {
        /// The plan.
        plan: String,
        /// The rule it names.
        rule: String,
    },
    /// A tenant is put on a plan that does not exist.
    #[error("tenant `{tenant}` is on plan `{plan}`, which is not defined")]
    UnknownTenantPlan {
        /// The tenant.
        tenant: String,
        /// The plan it names.
        plan: String,
    },
    /// A window under 1 ms or over 10 years (only a quota built in code can have one).
    #[error("rule `{rule}` has a window under 1ms or over 10 years")]
    BadWindow {
        /// The rule.
        rule: String,
    },
    /// The exact algorithm keeps one entry per request: limits above
    /// `100000` need the compact one.
    #[error(
        "rule `{rule}` uses the exact algorithm with a limit above {MAX_EXACT_LIMIT}; use the compact one"
    )]
    ExactLimitTooHigh {
        /// The rule.
        rule: String,
    },
}

/// Every problem of a rule set, from [`PolicyBuilder::build`].
///
/// ```
/// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
/// let q = Quota::parse("1/1s").unwrap();
/// let err = Policy::builder()
///     .rule(Rule::new("a", Scope::Caller, q))
///     .rule(Rule::new("a", Scope::Tenant, q))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "rule name `a` is used twice");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    problems: Vec<PolicyProblem>,
}

impl PolicyError {
    /// The problems, in the order they were checked.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// let q = Quota::parse("1/1s").unwrap();
    /// let err = Policy::builder()
    ///     .rule(Rule::new("a", Scope::Caller, q))
    ///     .rule(Rule::new("a", Scope::Caller, q))
    ///     .shadow("b")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.problems().len(), 2);
    /// ```
    pub fn problems(&self) -> &[PolicyProblem] {
        &self.problems
    }
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Policy {
    /// A builder.
    ///
    /// ```
    /// let policy = tenant_guard::ratelimit::Policy::builder().build().unwrap();
    /// assert!(policy.rules().is_empty());
    /// ```
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// The policy described by configuration (see `RATE_LIMIT_*` in the README).
    ///
    /// ```
    /// let cfg = tenant_guard::config::Config::from_vars([("RATE_LIMIT_TENANT", "1000/1m")]).unwrap();
    /// let policy = tenant_guard::ratelimit::Policy::from_config(&cfg.rate_limit);
    /// let names: Vec<_> = policy.rules().iter().map(|r| r.name.as_str()).collect();
    /// assert_eq!(names, ["per-tenant", "per-endpoint"]);
    /// ```
    pub fn from_config(cfg: &RateLimitConfig) -> Self {
        // The configuration was validated when it was read.
        cfg.policy.clone()
    }

    /// Where the periods of calendar quotas fall.
    ///
    /// ```
    /// let policy = tenant_guard::ratelimit::Policy::builder().build().unwrap();
    /// assert_eq!(policy.quota_calendar().time_zone(), "UTC");
    /// ```
    pub fn quota_calendar(&self) -> &super::QuotaCalendar {
        &self.calendar
    }

    /// The rules.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("1000/1m").unwrap()))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.rules()[0].quota.to_string(), "1000/1m");
    /// ```
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The default algorithm.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Algorithm, Policy};
    /// assert_eq!(Policy::builder().build().unwrap().algorithm(), Algorithm::default());
    /// ```
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Cost of a request (first matching cost pattern, else 1).
    ///
    /// ```
    /// use http::Method;
    /// use tenant_guard::ratelimit::{EndpointPattern, Policy};
    /// let policy = Policy::builder()
    ///     .cost(EndpointPattern::parse("POST /api/reports").unwrap(), 10)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.cost(&Method::POST, "/api/reports"), 10);
    /// assert_eq!(policy.cost(&Method::GET, "/api/reports"), 1);
    /// ```
    pub fn cost(&self, method: &Method, template: &str) -> u32 {
        self.costs
            .iter()
            .find(|(p, _)| p.matches(method, template))
            .map_or(1, |(_, c)| c.get())
    }

    /// The request weights, in the order they are matched.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{EndpointPattern, Policy};
    /// let policy = Policy::builder()
    ///     .cost(EndpointPattern::parse("POST /api/reports").unwrap(), 10)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.costs()[0].1.get(), 10);
    /// ```
    pub fn costs(&self) -> &[(EndpointPattern, NonZeroU32)] {
        &self.costs
    }

    /// Names of the plan tiers.
    pub(crate) fn plan_names(&self) -> impl Iterator<Item = &str> {
        self.plans.keys().map(String::as_str)
    }

    /// Every plan's quota overrides (plan -> rule -> quota), sorted by name.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("100/1m").unwrap()))
    ///     .plan("pro", [("per-tenant", Quota::parse("5000/1m").unwrap())])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.plans()["pro"]["per-tenant"].to_string(), "5000/1m");
    /// ```
    pub fn plans(&self) -> BTreeMap<&str, BTreeMap<&str, Quota>> {
        self.plans
            .iter()
            .map(|(p, o)| {
                (
                    p.as_str(),
                    o.iter().map(|(r, q)| (r.as_str(), *q)).collect(),
                )
            })
            .collect()
    }

    /// The plan assigned to each tenant by configuration, sorted by tenant.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("100/1m").unwrap()))
    ///     .plan("pro", [("per-tenant", Quota::parse("5000/1m").unwrap())])
    ///     .tenant_plan("acme", "pro")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.tenant_plans()["acme"], "pro");
    /// ```
    pub fn tenant_plans(&self) -> BTreeMap<&str, &str> {
        self.tenant_plans
            .iter()
            .map(|(t, p)| (t.as_str(), p.as_str()))
            .collect()
    }

    /// The plan configured for a tenant, if any.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// use tenant_guard::tenant::TenantId;
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("100/1m").unwrap()))
    ///     .plan("pro", [("per-tenant", Quota::parse("5000/1m").unwrap())])
    ///     .tenant_plan("acme", "pro")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.plan_of(&TenantId::new("acme").unwrap()), Some("pro"));
    /// ```
    pub fn plan_of(&self, tenant: &TenantId) -> Option<&str> {
        if self.tenant_plans.is_empty() {
            return None;
        }
        self.tenant_plans.get(tenant.as_str()).map(String::as_str)
    }

    /// The quota of `rule` under `plan`.
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// let policy = Policy::builder()
    ///     .rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("100/1m").unwrap()))
    ///     .plan("pro", [("per-tenant", Quota::parse("5000/1m").unwrap())])
    ///     .build()
    ///     .unwrap();
    /// let rule = &policy.rules()[0];
    /// assert_eq!(policy.quota(rule, Some("pro")).to_string(), "5000/1m");
    /// assert_eq!(policy.quota(rule, None).to_string(), "100/1m");
    /// ```
    pub fn quota(&self, rule: &Rule, plan: Option<&str>) -> Quota {
        plan.and_then(|p| self.plans.get(p))
            .and_then(|o| o.get(&rule.name))
            .copied()
            .unwrap_or(rule.quota)
    }

    /// Whether any rule counts per user (then requests need an identity).
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Policy, Quota, Rule, Scope};
    /// let q = Quota::parse("100/1m").unwrap();
    /// let tenant_only = Policy::builder().rule(Rule::new("t", Scope::Tenant, q)).build().unwrap();
    /// assert!(!tenant_only.has_user_rules());
    /// let per_user = Policy::builder().rule(Rule::new("u", Scope::Caller, q)).build().unwrap();
    /// assert!(per_user.has_user_rules());
    /// ```
    pub fn has_user_rules(&self) -> bool {
        self.rules.iter().any(|r| r.scope == Scope::Caller)
    }
}
