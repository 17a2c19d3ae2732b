//! [`RateLimiter`]: decides a request against every applicable rule in one step.

mod keys;
mod lease;
mod local;
mod overrides;
mod quota;
mod remote;
mod reset;
mod settle;

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use http::Method;
use prometheus_client::metrics::counter::Counter;

use super::burst::Burst;
use super::deny_cache::DenyCache;
use super::outage::{OutageMemory, OutageMode};
use super::policy::Policy;
use crate::tenant::{Identity, TenantId};

use super::algo::Rules;
use super::algo::{Outcome, Spec};
use super::decision::{Decision, Source, rule_decision};
use super::rules::{Quota, Rule};
use super::store::batch::Batcher;
use super::store::memory::MemoryLimiter;
use super::store::{self, SharedCounters};
use crate::backend::Backend;
use crate::keys::Keys;
use crate::metrics::{DecisionLabels, Metrics, RuleLabels};
use governor::Quota as GQuota;
pub use overrides::LimitWatch;
use overrides::Specs;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

/// One request to check.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tenant_guard::backend::{Backend, MemoryStore};
/// use tenant_guard::ratelimit::{Check, Identity, Policy, Quota, RateLimiter, Rule, Scope};
/// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
/// # let policy = Policy::builder().rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("2/1m")?)).build()?;
/// # let limiter = RateLimiter::new(Backend::Memory(MemoryStore::new(Default::default())), Keys::default(),
/// #     policy, Default::default(), &Metrics::new());
/// let (acme, who) = (TenantId::new("acme")?, Identity::Unknown);
/// let check = Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/", cost: None, plan: None };
/// assert!(limiter.check(&check).await.allowed);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The tenant.
    pub tenant: &'a TenantId,
    /// Who, for user-scoped rules.
    pub identity: &'a Identity,
    /// Request method.
    pub method: &'a Method,
    /// Matched route template (`/users/{id}`), never the raw path.
    pub route: &'a str,
    /// Units the request costs (`None`: from the policy's costs, default 1).
    pub cost: Option<u32>,
    /// Plan tier of the tenant (`None`: the policy's tenant plans, else base quotas).
    pub plan: Option<&'a str>,
}

static GET: Method = Method::GET;

/// The method as written in per-endpoint counter keys: the standard methods as they are,
/// every other one (`FOO`, `X1`, ... — a client can invent any token) as `OTHER`. Rules and
/// costs still see the real method; only the counters are shared, so a route that answers
/// any method (`any(..)`, a proxy) gives no fresh counter per invented method.
fn counted_method(m: &Method) -> &str {
    match *m {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS
        | Method::CONNECT
        | Method::PATCH
        | Method::TRACE => m.as_str(),
        _ => "OTHER",
    }
}

/// The check as decided: a `HEAD` is the `GET` it runs (axum routes `HEAD` to the `GET`
/// handler); anything else as it is.
fn as_get<'a>(c: &Check<'a>) -> Check<'a> {
    if c.method == Method::HEAD {
        Check { method: &GET, ..*c }
    } else {
        *c
    }
}

/// Options of a limiter beyond its rules.
///
/// ```
/// let options = tenant_guard::ratelimit::LimiterOptions::default();
/// assert_eq!(options.outage, tenant_guard::ratelimit::OutageMode::Local);
/// assert_eq!(options.memory_max_keys, 1_000_000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LimiterOptions {
    /// Behaviour while Redis is unusable.
    pub outage: OutageMode,
    /// App instances (divides limits in `local` mode).
    pub instances: NonZeroU32,
    /// Per-tenant in-process cap in front of Redis.
    pub burst: Option<Quota>,
    /// Deny-cache capacity (0: off).
    pub deny_cache: u64,
    /// Most rate-limit counters of identities the memory backend keeps
    /// (`TG_MEMORY_MAX_COUNTERS`). Live counters are never evicted: when all are live, new
    /// identities share one overflow counter per rule.
    pub memory_max_keys: usize,
    /// Most counters whose last Redis answer (and units admitted during an outage) this
    /// instance remembers for the `local` outage mode.
    pub outage_keys: usize,
    /// The clock calendar quotas take their periods from (`None`: the memory backend's
    /// clock, else the system clock).
    pub clock: Option<Arc<dyn crate::clock::Clock>>,
}

impl Default for LimiterOptions {
    fn default() -> Self {
        Self {
            outage: OutageMode::Local,
            instances: NonZeroU32::MIN,
            burst: None,
            deny_cache: 10_000,
            memory_max_keys: 1_000_000,
            outage_keys: 100_000,
            clock: None,
        }
    }
}

impl LimiterOptions {
    /// With calendar quotas' periods taken from `clock` (tests move it across a boundary).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tenant_guard::{clock::ManualClock, ratelimit::LimiterOptions};
    /// let options = LimiterOptions::default().with_clock(Arc::new(ManualClock::new()));
    /// assert!(options.clock.is_some());
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn crate::clock::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
}

struct Inner {
    backend: Backend,
    keys: Keys,
    policy: Policy,
    options: LimiterOptions,
    memory: Option<MemoryLimiter>,
    /// Outage mode `local`: last answers and local counters (`None` in other modes).
    outage_mem: Option<OutageMemory>,
    /// Whether a charge-back task runs.
    charging_back: std::sync::atomic::AtomicBool,
    burst: Option<Burst>,
    deny: Option<DenyCache>,
    /// Checks waiting for Redis at the same time go in one script call (single node).
    batcher: Option<Batcher>,
    /// The shared store of the counters (Redis); `None` on the memory backend.
    shared: Option<Arc<dyn SharedCounters>>,
    /// Leases of hot counters (`RATE_LIMIT_LEASE`; `None`: no rule is leased, or the
    /// memory backend, where every check is in process already).
    leases: Option<lease::Leases>,
    /// Per-process random seed of in-process counter keys (64-bit hashes of tenant, rule,
    /// identity and endpoint: a collision, ~1e-8 over a million counters, merges two
    /// counters, which can only make a limit stricter).
    seed: foldhash::fast::RandomState,
    metrics: Metrics,
    /// Decision counters by [allowed][source], fetched once: no label lookup per check.
    decisions: [[Counter; Source::COUNT]; 2],
    /// Overflow-counter uses by rule position (memory backend), fetched once.
    overflows: Vec<Counter>,
    /// Store-clock time of the last overflow warning, ms (warned at most every 10 s).
    overflow_warned_ms: std::sync::atomic::AtomicU64,
    rule_names: Vec<&'static str>,
    /// Seeded hash of each rule's name, part of its in-process counter keys.
    rule_hashes: Vec<u64>,
    /// Whether any rule counts per endpoint (then checks hash the endpoint).
    any_per_endpoint: bool,
    /// Tenants' limits changed at runtime, and whether there are any (checks skip the
    /// lock when there are none).
    overrides: std::sync::RwLock<overrides::Overrides>,
    any_overrides: std::sync::atomic::AtomicBool,
    /// Exempt and deny lists changed at runtime (`tenant-guard limits exempt|deny`), on
    /// top of the layer's; whether any is set.
    lists: std::sync::RwLock<overrides::RuntimeLists>,
    any_lists: std::sync::atomic::AtomicBool,
    /// The current periods of calendar quotas (`None`: the policy has none).
    quotas: Option<super::calendar::QuotaClock>,
    /// Algorithm parameters of each rule's base quota.
    base_specs: Vec<Spec>,
    /// The same under each plan tier's overrides, computed once: a check copies nothing.
    plan_specs: HashMap<String, Vec<Spec>>,
}

/// The rate limiter: rules + backend + outage policy. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics, tenant::TenantId};
/// use tenant_guard::ratelimit::{Check, Identity, RateLimiter};
///
/// let config = Config::from_vars([("RATE_LIMIT_MAX", "2"), ("RATE_LIMIT_WINDOW", "1m")]).unwrap();
/// let metrics = Metrics::new();
/// let backend = Backend::from_config(&config, &metrics).unwrap();
/// let limiter = RateLimiter::from_config(&config, backend, &metrics);
/// let tenant = TenantId::new("acme").unwrap();
/// let who = Identity::from_ip("192.0.2.7".parse().unwrap());
/// let check = Check { tenant: &tenant, identity: &who, method: &http::Method::GET,
///                     route: "/items", cost: None, plan: None };
/// assert!(limiter.check(&check).await.allowed);
/// assert!(limiter.check(&check).await.allowed);
/// let third = limiter.check(&check).await;
/// assert!(!third.allowed);
/// assert_eq!(third.denied_by().unwrap().name, "per-endpoint");
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("backend", &self.inner.backend.kind())
            .field("rules", &self.inner.rule_names)
            .field("outage", &self.inner.options.outage)
            .finish()
    }
}

/// Outcome of the in-process part of a decision.
// A return value consumed at once (never stored): boxing the larger variant would cost an
// allocation per Redis check for nothing.
#[allow(clippy::large_enum_variant)]
enum Local<'p> {
    /// Decided.
    Done(Decision),
    /// Needs Redis, for these rules.
    Remote(Rules<Applied<'p>>),
}

/// A rule as applied to one request.
struct Applied<'p> {
    rule: &'p Rule,
    name: &'static str,
    /// Algorithm parameters of the effective quota (after plan and tenant overrides).
    spec: Spec,
}

impl Applied<'_> {
    fn limit(&self) -> u32 {
        self.spec.limit
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.spec.window_ms)
    }

    fn per_endpoint(&self) -> bool {
        self.rule.per_endpoint
    }
}

impl RateLimiter {
    /// A limiter over `backend` with `policy`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{Check, Identity, Policy, Quota, RateLimiter, Rule, Scope};
    /// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
    /// # let policy = Policy::builder().rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("2/1m")?)).build()?;
    /// # let limiter = RateLimiter::new(Backend::Memory(MemoryStore::new(Default::default())), Keys::default(),
    /// #     policy, Default::default(), &Metrics::new());
    /// let (acme, who) = (TenantId::new("acme")?, Identity::Unknown);
    /// let check = Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/", cost: None, plan: None };
    /// assert!(limiter.check(&check).await.allowed);
    /// assert!(limiter.check(&check).await.allowed);
    /// assert!(!limiter.check(&check).await.allowed); // 2 per minute
    /// # Ok(()) }
    /// ```
    pub fn new(
        backend: Backend,
        keys: Keys,
        policy: Policy,
        options: LimiterOptions,
        metrics: &Metrics,
    ) -> Self {
        let memory = MemoryLimiter::on(&backend, options.memory_max_keys);
        let burst = options
            .burst
            .and_then(|q| governor_quota(q.limit.get(), q.window))
            .map(Burst::new);
        let deny = (options.deny_cache > 0 && memory.is_none()).then(|| {
            DenyCache::new(
                options.deny_cache,
                metrics.ratelimit_deny_cache_evicted.clone(),
            )
        });
        let outage_mem = (options.outage == OutageMode::Local && memory.is_none())
            .then(|| OutageMemory::new(options.outage_keys));
        let rule_names = policy.rules().iter().map(|r| intern(&r.name)).collect();
        let any_per_endpoint = policy.rules().iter().any(|r| r.per_endpoint);
        let seed = foldhash::fast::RandomState::default();
        let rule_hashes = policy
            .rules()
            .iter()
            .map(|r| seed.hash_one(r.name.as_str()))
            .collect();
        let specs = |plan: Option<&str>| -> Vec<Spec> {
            policy
                .rules()
                .iter()
                .map(|r| {
                    let algo = r.algorithm.unwrap_or(policy.algorithm());
                    let q = policy.quota(r, plan);
                    Spec::new(algo, q.limit.get(), r.window_ms(&q), r.shadow).with_block(r.block)
                })
                .collect()
        };
        let base_specs = specs(None);
        // Only the memory backend has overflow counters (no idle series on Redis).
        let overflows = policy
            .rules()
            .iter()
            .filter(|_| memory.is_some())
            .map(|r| {
                metrics
                    .ratelimit_memory_overflow
                    .get_or_create(&RuleLabels {
                        rule: r.name.clone(),
                    })
                    .clone()
            })
            .collect();
        let plan_specs = policy
            .plan_names()
            .map(|p| (p.to_string(), specs(Some(p))))
            .collect();
        let shared = store::shared(&backend);
        let batcher = shared.as_ref().and_then(Batcher::for_store);
        let leases = policy
            .rules()
            .iter()
            .filter_map(|r| r.lease.map(|l| l.ttl))
            .max()
            .filter(|_| shared.is_some())
            .map(lease::Leases::new);
        let quotas = policy.rules().iter().any(|r| r.period.is_some()).then(|| {
            let clock = options
                .clock
                .clone()
                .or_else(|| match &backend {
                    Backend::Memory(m) => Some(m.clock_arc()),
                    #[cfg(feature = "redis")]
                    Backend::Redis(_) => None,
                })
                .unwrap_or_else(|| Arc::new(crate::clock::SystemClock::new()));
            super::calendar::QuotaClock::new(policy.quota_calendar().clone(), clock)
        });
        Self {
            inner: Arc::new(Inner {
                backend,
                keys,
                policy,
                options,
                memory,
                outage_mem,
                charging_back: std::sync::atomic::AtomicBool::new(false),
                burst,
                deny,
                batcher,
                shared,
                leases,
                seed,
                decisions: [false, true].map(|allowed| {
                    Source::ALL.map(|source| {
                        metrics
                            .ratelimit_decisions
                            .get_or_create(&DecisionLabels {
                                outcome: if allowed { "allowed" } else { "denied" },
                                source: source.label(),
                            })
                            .clone()
                    })
                }),
                overflows,
                overflow_warned_ms: std::sync::atomic::AtomicU64::new(0),
                metrics: metrics.clone(),
                rule_names,
                rule_hashes,
                any_per_endpoint,
                overrides: Default::default(),
                any_overrides: std::sync::atomic::AtomicBool::new(false),
                lists: Default::default(),
                any_lists: std::sync::atomic::AtomicBool::new(false),
                quotas,
                base_specs,
                plan_specs,
            }),
        }
    }

    /// The metrics this limiter records to.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The policy.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{Check, Identity, Policy, Quota, RateLimiter, Rule, Scope};
    /// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
    /// # let policy = Policy::builder().rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("2/1m")?)).build()?;
    /// # let limiter = RateLimiter::new(Backend::Memory(MemoryStore::new(Default::default())), Keys::default(),
    /// #     policy, Default::default(), &Metrics::new());
    /// let (acme, who) = (TenantId::new("acme")?, Identity::Unknown);
    /// let check = Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/", cost: None, plan: None };
    /// assert_eq!(limiter.policy().rules()[0].name, "per-tenant");
    /// # let _ = check;
    /// # Ok(()) }
    /// ```
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// A value unique to one script call (names the exact log's members).
    pub(super) fn nonce(&self, salt: usize) -> u64 {
        use std::hash::BuildHasher;
        self.inner
            .seed
            .hash_one((std::time::Instant::now(), std::thread::current().id(), salt))
    }

    /// Whether every check is decided in process (the memory backend): [`check`](Self::check)
    /// then never waits.
    pub(crate) fn in_process(&self) -> bool {
        self.inner.memory.is_some()
    }

    /// The backend.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{Check, Identity, Policy, Quota, RateLimiter, Rule, Scope};
    /// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
    /// # let policy = Policy::builder().rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("2/1m")?)).build()?;
    /// # let limiter = RateLimiter::new(Backend::Memory(MemoryStore::new(Default::default())), Keys::default(),
    /// #     policy, Default::default(), &Metrics::new());
    /// let (acme, who) = (TenantId::new("acme")?, Identity::Unknown);
    /// let check = Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/", cost: None, plan: None };
    /// assert!(!limiter.backend().is_shared()); // the memory backend
    /// # Ok(()) }
    /// ```
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Algorithm parameters of every rule for the check: its plan tier's, or the tenant's
    /// runtime limits (`limits set`) unless the check names a plan.
    fn specs(&self, c: &Check<'_>) -> Specs<'_> {
        let inner = &*self.inner;
        if c.plan.is_none() {
            if let Some(own) = self.tenant_specs(c.tenant) {
                return Specs::Tenant(own);
            }
        }
        Specs::Policy(
            c.plan
                .or_else(|| inner.policy.plan_of(c.tenant))
                .and_then(|p| inner.plan_specs.get(p))
                .unwrap_or(&inner.base_specs),
        )
    }

    fn applied<'p>(&'p self, c: &Check<'_>) -> Rules<Applied<'p>> {
        let inner = &*self.inner;
        let policy = &inner.policy;
        let specs = self.specs(c);
        let mut out = Rules::new();
        let rules = policy.rules().iter().zip(&inner.rule_names);
        for ((rule, &name), spec) in rules.zip(specs.iter()) {
            if rule.applies(c.method, c.route) {
                out.push(Applied {
                    rule,
                    name,
                    spec: *spec,
                });
            }
        }
        out
    }

    /// Checks a request and, if every enforced rule allows it, charges its cost to every
    /// rule that allows it — all in one step (one Lua call on Redis).
    ///
    /// `HEAD` is checked as `GET` (axum and hyper run the `GET` handler for it), so
    /// `HEAD` requests meet the `GET` endpoint rules and costs and share their counters.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{Check, Identity, Policy, Quota, RateLimiter, Rule, Scope};
    /// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
    /// # let policy = Policy::builder().rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("2/1m")?)).build()?;
    /// # let limiter = RateLimiter::new(Backend::Memory(MemoryStore::new(Default::default())), Keys::default(),
    /// #     policy, Default::default(), &Metrics::new());
    /// let (acme, who) = (TenantId::new("acme")?, Identity::Unknown);
    /// let check = Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/", cost: None, plan: None };
    /// let d = limiter.check(&check).await;
    /// assert!(d.allowed);
    /// assert_eq!(d.rules[0].remaining, 1);
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, c: &Check<'_>) -> Decision {
        let c = &as_get(c);
        // The match ends before the await: only the boxed Redis future lives across it,
        // so the future of an in-process check stays a few words (it is moved around).
        let remote = match self.decide_local(c, true) {
            Local::Done(mut d) => {
                self.quota_times(c, &mut d);
                self.record(&d);
                return d;
            }
            // Boxed: the Redis path's large state machine is built only when needed.
            Local::Remote(applied) => Box::pin(self.decide_remote(c, applied, true)),
        };
        let mut d = remote.await;
        self.quota_times(c, &mut d);
        self.record(&d);
        d
    }

    /// Like [`check`](Self::check) but never charges anything: what would happen now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{Check, Identity, Policy, Quota, RateLimiter, Rule, Scope};
    /// use tenant_guard::{keys::Keys, metrics::Metrics, tenant::TenantId};
    /// # let policy = Policy::builder().rule(Rule::new("per-tenant", Scope::Tenant, Quota::parse("2/1m")?)).build()?;
    /// # let limiter = RateLimiter::new(Backend::Memory(MemoryStore::new(Default::default())), Keys::default(),
    /// #     policy, Default::default(), &Metrics::new());
    /// let (acme, who) = (TenantId::new("acme")?, Identity::Unknown);
    /// let check = Check { tenant: &acme, identity: &who, method: &http::Method::GET, route: "/", cost: None, plan: None };
    /// assert_eq!(limiter.peek(&check).await.rules[0].remaining, 2);
    /// assert_eq!(limiter.peek(&check).await.rules[0].remaining, 2); // nothing charged
    /// assert_eq!(limiter.check(&check).await.rules[0].remaining, 1);
    /// # Ok(()) }
    /// ```
    pub async fn peek(&self, c: &Check<'_>) -> Decision {
        let c = &as_get(c);
        let remote = match self.decide_local(c, false) {
            Local::Done(mut d) => {
                self.quota_times(c, &mut d);
                return d;
            }
            Local::Remote(applied) => Box::pin(self.decide_remote(c, applied, false)),
        };
        let mut d = remote.await;
        self.quota_times(c, &mut d);
        d
    }

    /// Counts a request an access list decided (in the decisions metric, by its source).
    pub(crate) fn record_listed(&self, d: &Decision) {
        self.inner.decisions[usize::from(d.allowed)][d.source.index()].inc();
    }

    fn record(&self, d: &Decision) {
        let m = &self.inner.metrics;
        self.inner.decisions[usize::from(d.allowed)][d.source.index()].inc();
        for r in &d.rules {
            if !r.allowed {
                let fam = if r.shadow {
                    &m.ratelimit_shadow_denied
                } else {
                    &m.ratelimit_rule_denied
                };
                fam.get_or_create(&RuleLabels {
                    rule: r.name.to_string(),
                })
                .inc();
            }
        }
    }

    fn cost(&self, c: &Check<'_>) -> u32 {
        c.cost
            .unwrap_or_else(|| self.inner.policy.cost(c.method, c.route))
            .max(1)
    }
}

fn governor_quota(limit: u32, window: Duration) -> Option<GQuota> {
    let limit = NonZeroU32::new(limit)?;
    // governor counts in u64 nanoseconds and overflows (panics) when a period times the
    // burst passes 584 years. A window longer than ~146 years (any duration the
    // environment spells) is the same limit for any run of a process: clamp to that.
    let max_period = Duration::from_nanos((u64::MAX / 4 / u64::from(limit.get())).max(1));
    let period = (window / limit.get()).clamp(Duration::from_nanos(1), max_period);
    GQuota::with_period(period).map(|q| q.allow_burst(limit))
}

/// Interns a rule name: decisions then carry a `&'static str` (no reference counting per
/// check). Rule names come from configuration, so the set (and what it keeps) is bounded
/// by the distinct names a process ever configures.
fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::OnceLock<Mutex<std::collections::HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    let mut set = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = set.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

fn build(
    applied: &[Applied<'_>],
    allowed: bool,
    outs: &[Outcome],
    source: Source,
    cost: u32,
    at_ms: Option<u64>,
) -> Decision {
    let mut rules = Vec::with_capacity(applied.len());
    for (a, o) in applied.iter().zip(outs) {
        rules.push(rule_decision(a.name, &a.spec, o));
    }
    Decision {
        allowed,
        source,
        cost,
        rules,
        at_ms,
        overflowed: 0,
    }
}

#[cfg(test)]
mod tests;
