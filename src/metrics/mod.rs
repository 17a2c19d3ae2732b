//! One Prometheus registry for the whole crate, exposed at `GET /metrics`.
//!
//! Labels are bounded by construction: operation names, backend names and states, never
//! tenant or user ids.

use std::sync::{Arc, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

mod top;
pub use top::{TOP_MAX_ROWS, TOP_MINUTES, TenantTop, TopReport, TopRow};

/// Labels of Redis command metrics: the operation (bounded set of names).
///
/// ```
/// use prometheus_client::metrics::{counter::Counter, family::Family};
/// use tenant_guard::metrics::{Metrics, OpLabels};
///
/// // A component of its own counting per operation, with the same label as the Redis metrics.
/// let metrics = Metrics::new();
/// let calls: Family<OpLabels, Counter> = Family::default();
/// metrics.register("example_calls", "Example calls by operation", calls.clone());
/// calls.get_or_create(&OpLabels { op: "get" }).inc();
/// assert!(metrics.render().contains(r#"tenant_guard_example_calls_total{op="get"} 1"#));
/// ```
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// `get`, `set`, `eval`, `scan`, `ping`, ...
    pub op: &'static str,
}

/// Labels of the backend gauge.
///
/// ```
/// use tenant_guard::{backend::Backend, config::Config, metrics::Metrics};
///
/// let metrics = Metrics::new();
/// let config = Config::from_vars([("REDIS_ENABLED", "false")]).unwrap();
/// let _backend = Backend::from_config(&config, &metrics).unwrap();
/// assert!(metrics.render().contains(r#"tenant_guard_backend{backend="memory"} 1"#));
/// ```
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// `redis`, `redis-cluster` or `memory`.
    pub backend: &'static str,
}

/// Labels of rate-limit decisions.
///
/// ```
/// use prometheus_client::metrics::{counter::Counter, family::Family};
/// use tenant_guard::metrics::{DecisionLabels, Metrics};
///
/// let metrics = Metrics::new();
/// let decisions: Family<DecisionLabels, Counter> = Family::default();
/// metrics.register("example_decisions", "Example decisions", decisions.clone());
/// decisions.get_or_create(&DecisionLabels { outcome: "denied", source: "memory" }).inc();
/// assert!(metrics
///     .render()
///     .contains(r#"tenant_guard_example_decisions_total{outcome="denied",source="memory"} 1"#));
/// ```
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allowed` or `denied`.
    pub outcome: &'static str,
    /// Who decided: `redis`, `memory`, `deny-cache`, `burst`, `local`, `outage-open`, ...
    pub source: &'static str,
}

/// Labels naming a concurrency scope (`tenant` or `user`: a bounded set).
///
/// ```
/// use prometheus_client::metrics::{counter::Counter, family::Family};
/// use tenant_guard::metrics::{Metrics, ScopeLabels};
///
/// let metrics = Metrics::new();
/// let refused: Family<ScopeLabels, Counter> = Family::default();
/// metrics.register("example_refused", "Example refusals by scope", refused.clone());
/// refused.get_or_create(&ScopeLabels { scope: "tenant" }).inc();
/// assert!(metrics.render().contains(r#"tenant_guard_example_refused_total{scope="tenant"} 1"#));
/// ```
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    /// `tenant` or `user`.
    pub scope: &'static str,
}

/// Labels naming a rate-limit rule (names come from configuration: a bounded set).
///
/// ```
/// use prometheus_client::metrics::{counter::Counter, family::Family};
/// use tenant_guard::metrics::{Metrics, RuleLabels};
///
/// let metrics = Metrics::new();
/// let denied: Family<RuleLabels, Counter> = Family::default();
/// metrics.register("example_denied", "Example denials by rule", denied.clone());
/// denied.get_or_create(&RuleLabels { rule: "per-tenant".into() }).inc();
/// assert!(metrics.render().contains(r#"tenant_guard_example_denied_total{rule="per-tenant"} 1"#));
/// ```
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// Rule name.
    pub rule: String,
}

/// Labels of session events.
///
/// ```
/// use prometheus_client::metrics::{counter::Counter, family::Family};
/// use tenant_guard::metrics::{Metrics, SessionEventLabels};
///
/// let metrics = Metrics::new();
/// let events: Family<SessionEventLabels, Counter> = Family::default();
/// metrics.register("example_session_events", "Example session events", events.clone());
/// events.get_or_create(&SessionEventLabels { event: "create" }).inc();
/// assert!(metrics
///     .render()
///     .contains(r#"tenant_guard_example_session_events_total{event="create"} 1"#));
/// ```
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionEventLabels {
    /// `load`, `miss`, `create`, `save`, `renew`, `cycle`, `destroy`, `expired`,
    /// `invalid_cookie`, `store_error`, `store_full` (memory backend: a new session refused
    /// while every session is live), `fallback`.
    pub event: &'static str,
}

/// Labels of cache events.
///
/// ```
/// use prometheus_client::metrics::{counter::Counter, family::Family};
/// use tenant_guard::metrics::{CacheLabels, Metrics};
///
/// let metrics = Metrics::new();
/// let events: Family<CacheLabels, Counter> = Family::default();
/// metrics.register("example_cache_events", "Example cache events", events.clone());
/// events.get_or_create(&CacheLabels { category: "reports".into(), event: "hit_l1" }).inc();
/// assert!(metrics
///     .render()
///     .contains(r#"tenant_guard_example_cache_events_total{category="reports",event="hit_l1"} 1"#));
/// ```
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `query`, `ai` or a named category (from configuration or code: a bounded set).
    pub category: String,
    /// `hit_l1`, `hit_l2`, `miss`, `stale`, `bypass`, `coalesced`, `store`, `eviction`,
    /// `invalidation`, `upstream_error`.
    pub event: &'static str,
}

/// Running totals behind the hit ratio of `/cache/status`.
///
/// ```
/// use std::sync::atomic::Ordering::Relaxed;
/// use tenant_guard::metrics::CacheTotals;
///
/// let totals = CacheTotals::default();
/// totals.hits_l1.store(2, Relaxed);
/// totals.hits_l2.store(1, Relaxed);
/// totals.misses.store(1, Relaxed);
/// assert_eq!(totals.hit_ratio(), Some(0.75));
/// ```
#[derive(Debug, Default)]
pub struct CacheTotals {
    /// Hits served from the in-process L1.
    pub hits_l1: std::sync::atomic::AtomicU64,
    /// Hits served from Redis / the memory store.
    pub hits_l2: std::sync::atomic::AtomicU64,
    /// Misses (the upstream ran, or a coalesced wait for it).
    pub misses: std::sync::atomic::AtomicU64,
    /// Stale entries served.
    pub stale: std::sync::atomic::AtomicU64,
}

impl CacheTotals {
    /// Hits (L1 + L2 + stale) over lookups, if there were any.
    ///
    /// ```
    /// let t = tenant_guard::metrics::CacheTotals::default();
    /// assert_eq!(t.hit_ratio(), None);
    /// ```
    pub fn hit_ratio(&self) -> Option<f64> {
        use std::sync::atomic::Ordering::Relaxed;
        let hits =
            self.hits_l1.load(Relaxed) + self.hits_l2.load(Relaxed) + self.stale.load(Relaxed);
        let total = hits + self.misses.load(Relaxed);
        (total > 0).then(|| hits as f64 / total as f64)
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s, doubling.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The registry and the foundation's own metrics. Clones share everything.
///
/// ```
/// let metrics = tenant_guard::metrics::Metrics::new();
/// let text = metrics.render();
/// assert!(text.contains("tenant_guard_redis_circuit_open"));
/// assert!(text.ends_with("# EOF\n"));
/// ```
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    /// Latency of Redis commands, by operation, in seconds.
    pub(crate) redis_latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    /// Failed Redis commands (errors and timeouts), by operation.
    pub(crate) redis_errors: Family<OpLabels, Counter>,
    /// Commands refused without trying because the breaker was open, by operation.
    pub(crate) redis_short_circuited: Family<OpLabels, Counter>,
    /// 1 while the circuit breaker is open.
    pub(crate) breaker_open: Gauge,
    /// Times the breaker opened.
    pub(crate) breaker_opened: Counter,
    /// 1 for the configured backend.
    pub(crate) backend: Family<BackendLabels, Gauge>,
    /// Rate-limit decisions by outcome and source.
    pub(crate) ratelimit_decisions: Family<DecisionLabels, Counter>,
    /// Requests denied, by the enforced rule that denied.
    pub(crate) ratelimit_rule_denied: Family<RuleLabels, Counter>,
    /// Requests a shadow rule would have denied.
    pub(crate) ratelimit_shadow_denied: Family<RuleLabels, Counter>,
    /// Checks decided by a rule's shared overflow counter (memory backend, counter table
    /// full of live counters).
    pub(crate) ratelimit_memory_overflow: Family<RuleLabels, Counter>,
    /// Units reserved for leases of hot counters, and unused units given back.
    pub(crate) ratelimit_lease_reserved: Counter,
    pub(crate) ratelimit_lease_returned: Counter,
    /// Denials still in force the deny cache did not keep because it was full (evicted, or
    /// refused by its admission policy).
    pub(crate) ratelimit_deny_cache_evicted: Counter,
    /// Requests refused by a concurrency cap, by scope.
    pub(crate) concurrency_denied: Family<ScopeLabels, Counter>,
    /// Leases this instance holds (requests in flight under a concurrency cap).
    pub(crate) concurrency_in_flight: Gauge,
    /// Token budgets: tokens reserved at admission, used (settled), refunded, and used
    /// beyond the estimate; settlements the store did not take.
    pub(crate) tokens_reserved: Counter,
    pub(crate) tokens_used: Counter,
    pub(crate) tokens_refunded: Counter,
    pub(crate) tokens_overshoot: Counter,
    pub(crate) tokens_settle_failed: Counter,
    /// Session events.
    pub(crate) session_events: Family<SessionEventLabels, Counter>,
    /// Cache events by category.
    pub(crate) cache_events: Family<CacheLabels, Counter>,
    /// Cache totals for the hit ratio.
    pub(crate) cache_totals: Arc<CacheTotals>,
    /// The tenants with the most admitted and throttled requests of the last minutes
    /// (bounded: no tenant id is ever a label).
    pub(crate) tenant_top: Arc<TenantTop>,
    /// What was registered (a family shows in the text only once it has a sample).
    families: Arc<RwLock<Vec<(String, MetricKind)>>>,
}

/// The kind of a registered metric family ([`Metrics::families`]).
///
/// ```
/// use tenant_guard::metrics::{MetricKind, Metrics};
///
/// let families = Metrics::new().families();
/// let kind_of = |name: &str| families.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
/// assert_eq!(kind_of("tenant_guard_redis_circuit_open"), Some(MetricKind::Gauge));
/// assert_eq!(kind_of("tenant_guard_session_events"), Some(MetricKind::Counter));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// A counter (exported as `<name>_total`).
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram (`<name>_bucket`, `_sum`, `_count`).
    Histogram,
    /// Another OpenMetrics type.
    Other,
}

/// Registers `metric` as `name` (prefixed) and notes its family and kind.
fn register(
    registry: &mut Registry,
    families: &mut Vec<(String, MetricKind)>,
    name: &str,
    help: &str,
    metric: impl Metric,
) {
    use prometheus_client::metrics::MetricType;
    let kind = match metric.metric_type() {
        MetricType::Counter => MetricKind::Counter,
        MetricType::Gauge => MetricKind::Gauge,
        MetricType::Histogram => MetricKind::Histogram,
        _ => MetricKind::Other,
    };
    families.push((format!("tenant_guard_{name}"), kind));
    registry.register(name, help, metric);
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the foundation's metrics registered under the `tenant_guard` prefix.
    ///
    /// ```
    /// use tenant_guard::metrics::Metrics;
    ///
    /// let metrics = Metrics::new();
    /// let text = metrics.render();
    /// assert!(text.contains("# TYPE tenant_guard_redis_circuit_open gauge"));
    /// assert!(text.contains("tenant_guard_redis_circuit_open 0"));
    /// ```
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tenant_guard");
        let mut families = Vec::new();
        let m = Self {
            registry: Arc::new(RwLock::new(Registry::default())),
            redis_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            redis_errors: Family::default(),
            redis_short_circuited: Family::default(),
            breaker_open: Gauge::default(),
            breaker_opened: Counter::default(),
            backend: Family::default(),
            ratelimit_decisions: Family::default(),
            ratelimit_rule_denied: Family::default(),
            ratelimit_shadow_denied: Family::default(),
            ratelimit_memory_overflow: Family::default(),
            ratelimit_lease_reserved: Counter::default(),
            ratelimit_lease_returned: Counter::default(),
            ratelimit_deny_cache_evicted: Counter::default(),
            concurrency_denied: Family::default(),
            concurrency_in_flight: Gauge::default(),
            tokens_reserved: Counter::default(),
            tokens_used: Counter::default(),
            tokens_refunded: Counter::default(),
            tokens_overshoot: Counter::default(),
            tokens_settle_failed: Counter::default(),
            session_events: Family::default(),
            cache_events: Family::default(),
            cache_totals: Arc::default(),
            tenant_top: Arc::default(),
            families: Arc::default(),
        };
        register(
            &mut registry,
            &mut families,
            "redis_command_duration_seconds",
            "Latency of Redis commands, by operation",
            m.redis_latency.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "redis_command_errors",
            "Failed Redis commands (errors and timeouts), by operation",
            m.redis_errors.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "redis_short_circuited",
            "Redis commands refused at once because the circuit breaker was open",
            m.redis_short_circuited.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "redis_circuit_open",
            "1 while the Redis circuit breaker is open (Redis considered down)",
            m.breaker_open.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "redis_circuit_opened",
            "Times the Redis circuit breaker opened",
            m.breaker_opened.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "backend",
            "The configured backend (value 1)",
            m.backend.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "ratelimit_decisions",
            "Rate-limit decisions by outcome and by who decided",
            m.ratelimit_decisions.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "ratelimit_denied",
            "Requests denied, by the enforced rule that denied them",
            m.ratelimit_rule_denied.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "ratelimit_shadow_denied",
            "Requests a shadow (dry-run) rule would have denied",
            m.ratelimit_shadow_denied.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "ratelimit_memory_overflow",
            "Checks of new identities decided by their rule's shared overflow counter, \
             because the memory backend's counter table was full of live counters \
             (TG_MEMORY_MAX_COUNTERS), by rule",
            m.ratelimit_memory_overflow.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "ratelimit_lease_reserved",
            "Units of hot counters reserved in Redis for leases (RATE_LIMIT_LEASE), admitted \
             in process from then on",
            m.ratelimit_lease_reserved.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "ratelimit_lease_returned",
            "Leased units unused when their lease ended, given back to Redis",
            m.ratelimit_lease_returned.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "ratelimit_deny_cache_evicted",
            "Denials still in force that the deny cache (RATE_LIMIT_DENY_CACHE) did not keep \
             because it was full (dropped for room, or not admitted over the counters it \
             sees more often): their repeats go to Redis",
            m.ratelimit_deny_cache_evicted.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "concurrency_denied",
            "Requests refused by a concurrency cap (RATE_LIMIT_CONCURRENCY_*), by scope \
             (tenant or user)",
            m.concurrency_denied.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "concurrency_in_flight",
            "Requests in flight holding a concurrency lease on this instance",
            m.concurrency_in_flight.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "tokens_reserved",
            "Tokens reserved by token budgets (RATE_LIMIT_TOKENS) when requests were admitted",
            m.tokens_reserved.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "tokens_used",
            "Tokens admitted requests used, as settled after their responses",
            m.tokens_used.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "tokens_refunded",
            "Reserved tokens given back when responses used fewer (or failed, were aborted, \
             or came from the cache)",
            m.tokens_refunded.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "tokens_overshoot",
            "Tokens responses used beyond their reservation (charged after the fact: the \
             bound by which a token window may exceed its limit)",
            m.tokens_overshoot.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "tokens_settle_failed",
            "Token settlements the store did not take (Redis unusable): the reservation \
             stays counted until its window passes",
            m.tokens_settle_failed.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "session_events",
            "Session loads, misses, creations, saves, renewals, id cycles, destroys, \
             expirations, invalid cookies, store errors and outage fallbacks",
            m.session_events.clone(),
        );
        register(
            &mut registry,
            &mut families,
            "cache_events",
            "Cache hits (L1, L2), misses, stale serves, bypasses, coalesced waits, stores, \
             L1 evictions, invalidations and upstream errors, by category",
            m.cache_events.clone(),
        );
        Self {
            registry: Arc::new(RwLock::new(registry)),
            families: Arc::new(RwLock::new(families)),
            ..m
        }
    }

    /// Registers a metric of another component (the layers add theirs this way).
    /// `name` gets the `tenant_guard_` prefix.
    ///
    /// ```
    /// use prometheus_client::metrics::counter::Counter;
    /// let metrics = tenant_guard::metrics::Metrics::new();
    /// let hits: Counter = Counter::default();
    /// metrics.register("example_hits", "Example counter", hits.clone());
    /// hits.inc();
    /// assert!(metrics.render().contains("tenant_guard_example_hits_total 1"));
    /// ```
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut families = self
            .families
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        register(&mut registry, &mut families, name, help, metric);
    }

    /// Every family registered, by its exported name (`tenant_guard_...`, without a
    /// counter's `_total`), whether or not it has a sample yet.
    ///
    /// ```
    /// use tenant_guard::metrics::{MetricKind, Metrics};
    /// let families = Metrics::new().families();
    /// assert!(families.contains(&("tenant_guard_ratelimit_decisions".into(), MetricKind::Counter)));
    /// assert!(families.contains(&("tenant_guard_redis_command_duration_seconds".into(), MetricKind::Histogram)));
    /// ```
    pub fn families(&self) -> Vec<(String, MetricKind)> {
        self.families
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Cache totals (hit ratio) of every cache using this registry.
    ///
    /// ```
    /// use tenant_guard::metrics::Metrics;
    ///
    /// // No cache has looked anything up yet.
    /// let metrics = Metrics::new();
    /// assert_eq!(metrics.cache_totals().hit_ratio(), None);
    /// ```
    pub fn cache_totals(&self) -> &CacheTotals {
        &self.cache_totals
    }

    /// The tenants with the most admitted and throttled requests of the last minutes, as
    /// the rate-limit layers using this registry saw them (`GET /ops/top`).
    ///
    /// ```
    /// use tenant_guard::metrics::Metrics;
    /// let metrics = Metrics::new();
    /// let report = metrics.tenant_top().report(5, 10);
    /// assert!(report.throttled.is_empty() && report.admitted.is_empty());
    /// ```
    pub fn tenant_top(&self) -> &TenantTop {
        &self.tenant_top
    }

    /// The OpenMetrics text exposition.
    ///
    /// ```
    /// use tenant_guard::backend::Health;
    /// use tenant_guard::metrics::Metrics;
    ///
    /// let metrics = Metrics::new();
    /// let health = Health::new(Default::default(), metrics.clone());
    /// for _ in 0..3 {
    ///     health.record_failure("connection refused");
    /// }
    /// let text = metrics.render();
    /// assert!(text.contains("tenant_guard_redis_circuit_open 1"));
    /// assert!(text.ends_with("# EOF\n"));
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}
