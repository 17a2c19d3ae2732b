//! The Redis backend: one handle for a single node and for a cluster.
//!
//! * Single node: a `ConnectionManager` (one multiplexed connection that reconnects by
//!   itself), created lazily so the app starts while Redis is down.
//! * Cluster: `cluster_async::ClusterConnection`, connected on first use and kept; it follows
//!   MOVED/ASK and reconnects to nodes by itself.
//! * Every command runs under `REDIS_COMMAND_TIMEOUT` and through the circuit breaker in
//!   [`Health`]: while it is open, commands fail at once and a background probe waits for
//!   Redis to come back.
//! * Lua scripts (see [`LuaScript`]) run by EVALSHA; on NOSCRIPT the script is loaded
//!   (`SCRIPT LOAD` goes to every primary of a cluster) and run again.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

use super::health::Health;
use super::{BackendError, KeyTtl};
use super::{RedisConfig, RedisMode, TlsCa};
use crate::keys::{KeyPattern, RedisKey};
use crate::metrics::{BackendLabels, OpLabels};

/// A Lua script shipped in `lua/`, run by EVALSHA with reload on NOSCRIPT.
///
/// ```
/// use tenant_guard::backend::LuaScript;
/// let script = LuaScript::new("echo", "return ARGV[1]");
/// assert_eq!(script.name(), "echo");
/// assert_eq!(script.sha1().len(), 40);
/// ```
#[derive(Debug, Clone)]
pub struct LuaScript {
    name: &'static str,
    script: redis::Script,
}

impl LuaScript {
    /// A script with a name (for metrics and errors) and its source.
    pub fn new(name: &'static str, source: &str) -> Self {
        Self {
            name,
            script: redis::Script::new(source),
        }
    }

    /// The script's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The SHA1 Redis knows the script by.
    pub fn sha1(&self) -> &str {
        self.script.get_hash()
    }

    pub(crate) fn script(&self) -> &redis::Script {
        &self.script
    }
}

/// `lua/compare_and_delete.lua`: deletes a key only if it holds the expected value.
pub(crate) fn compare_and_delete_script() -> &'static LuaScript {
    static SCRIPT: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        LuaScript::new(
            "compare_and_delete",
            include_str!("../../lua/compare_and_delete.lua"),
        )
    })
}

/// A connection to either kind of deployment.
#[derive(Clone)]
pub(crate) enum AnyConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for AnyConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

enum Conn {
    Single(ConnectionManager),
    // Boxed: the cluster client is much larger than a ConnectionManager.
    Cluster(Box<ClusterConn>),
}

struct ClusterConn {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

struct Inner {
    conn: Conn,
    health: Health,
    command_timeout: Duration,
    connect_timeout: Duration,
    description: String,
    pubsub_clients: Vec<redis::Client>,
    /// What [`RedisStore::check_deployment`] found, once it got an answer.
    deployment: OnceCell<Deployment>,
}

/// What the store found out about the Redis deployment it talks to
/// ([`RedisStore::check_deployment`]).
///
/// ```
/// let d = tenant_guard::backend::Deployment::default();
/// assert!(d.maxmemory_policy.is_none() && d.warnings.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deployment {
    /// `maxmemory-policy` of the server (the first evicting one found on a cluster's
    /// primaries); `None` when `INFO` is not allowed for the user.
    pub maxmemory_policy: Option<String>,
    /// Settings that can break the crate's guarantees, one sentence each.
    pub warnings: Vec<String>,
}

/// The warning for a `maxmemory-policy` that evicts keys: every key tenant-guard writes has
/// a TTL, so the `volatile-*` policies may evict them as well as the `allkeys-*` ones.
fn eviction_warning(policy: &str) -> Option<String> {
    let evicts = policy.starts_with("allkeys-") || policy.starts_with("volatile-");
    evicts.then(|| {
        format!(
            "maxmemory-policy {policy} may evict rate-limit counters and sessions when Redis \
             reaches maxmemory (a limit starts over, users are logged out); use noeviction for \
             the Redis that holds them (volatile-* evicts them too: every tenant-guard key has \
             a TTL)"
        )
    })
}

/// Every `maxmemory_policy:` value in an `INFO memory` reply (one per node on a cluster).
fn policies_in(v: &Value, out: &mut Vec<String>) {
    let mut text = |s: &str| {
        out.extend(s.lines().filter_map(|l| {
            l.strip_prefix("maxmemory_policy:")
                .map(|p| p.trim().to_string())
        }));
    };
    match v {
        Value::BulkString(b) => text(&String::from_utf8_lossy(b)),
        Value::SimpleString(s) => text(s),
        Value::VerbatimString { text: t, .. } => text(t),
        Value::Array(items) | Value::Set(items) => {
            for i in items {
                policies_in(i, out);
            }
        }
        Value::Map(pairs) => {
            for (_, i) in pairs {
                policies_in(i, out);
            }
        }
        _ => {}
    }
}

/// A client for `url` that trusts `ca` (when set) instead of the system roots.
pub(crate) fn open_client(url: &str, ca: Option<&TlsCa>) -> RedisResult<redis::Client> {
    #[cfg(feature = "tls")]
    if let Some(ca) = ca {
        return redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.pem().to_vec()),
            },
        );
    }
    // Without TLS support the configuration rejects a CA file (and rediss:// URLs).
    let _ = ca;
    redis::Client::open(url)
}

/// The Redis store. Clones share one connection (or cluster connection).
///
/// ```no_run
/// use tenant_guard::backend::{Health, RedisStore};
/// use tenant_guard::config::Config;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_vars([("REDIS_URL", "redis://127.0.0.1:6379")])?;
/// let health = Health::new(config.breaker, Default::default());
/// let store = RedisStore::new(&config.redis, health)?; // does not connect yet
/// let latency = store.ping().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.inner.description)
            .field("breaker", &self.inner.health.state())
            .finish()
    }
}

/// Whether an error means Redis (or the way to it) is unusable, as opposed to a command
/// that Redis rejected (wrong type, script error): only the former trip the breaker.
fn is_outage(e: &RedisError) -> bool {
    use redis::{ErrorKind as K, ServerErrorKind as S};
    match e.kind() {
        K::Server(S::BusyLoading | S::ClusterDown | S::MasterDown | S::TryAgain) => true,
        K::Server(_) | K::Parse | K::UnexpectedReturnType | K::Extension => false,
        _ => true,
    }
}

impl RedisStore {
    /// Builds the store from configuration without connecting: the first command (or
    /// readiness probe) connects. Fails only on configuration that cannot work at all.
    pub fn new(config: &RedisConfig, health: Health) -> Result<Self, BackendError> {
        let mut pubsub_clients = Vec::new();
        let (conn, description, label) = match &config.mode {
            RedisMode::Disabled => {
                return Err(BackendError::Unsupported(
                    "Redis is disabled in the configuration",
                ))
            }
            RedisMode::Single(url) => {
                let client = open_client(url.expose(), config.tls_ca.as_ref())?;
                let cm_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.command_timeout))
                    .set_number_of_retries(config.max_retries as usize)
                    .set_max_delay(Duration::from_secs(2));
                pubsub_clients.push(client.clone());
                let cm = ConnectionManager::new_lazy_with_config(client, cm_config)?;
                (Conn::Single(cm), url.to_string(), "redis")
            }
            RedisMode::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.iter().map(|u| u.expose().to_string()))
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.command_timeout)
                    .retries(config.max_retries)
                    .build()?;
                let list: Vec<String> = nodes.iter().map(ToString::to_string).collect();
                for u in nodes {
                    pubsub_clients.push(open_client(u.expose(), config.tls_ca.as_ref())?);
                }
                (
                    Conn::Cluster(Box::new(ClusterConn {
                        client,
                        conn: OnceCell::new(),
                    })),
                    format!("cluster {}", list.join(",")),
                    "redis-cluster",
                )
            }
        };
        health
            .metrics()
            .backend
            .get_or_create(&BackendLabels { backend: label })
            .set(1);
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                health,
                command_timeout: config.command_timeout,
                connect_timeout: config.connect_timeout,
                description,
                pubsub_clients,
                deployment: OnceCell::new(),
            }),
        })
    }

    /// Where the store points (credentials redacted).
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// Clients for a dedicated pub/sub connection, one per node (with the TLS roots of the
    /// configuration). On a cluster any node will do: classic pub/sub messages reach every
    /// node.
    pub(super) fn pubsub_clients(&self) -> &[redis::Client] {
        &self.inner.pubsub_clients
    }

    /// Reads the settings of the Redis deployment that can break the crate's guarantees
    /// (today: a `maxmemory-policy` that evicts keys) and logs a warning for each. Runs
    /// once: after the first answer the result is kept and returned at once. Fails (and
    /// runs again next time) only while Redis cannot be reached; a user whose ACL denies
    /// `INFO` gets a result with the policy unknown.
    ///
    /// The readiness route calls it, so its warnings show in `/health/ready`; apps may
    /// call it at start-up to log them early.
    ///
    /// ```no_run
    /// # async fn demo(store: tenant_guard::backend::RedisStore) {
    /// if let Ok(d) = store.check_deployment().await {
    ///     for w in &d.warnings {
    ///         eprintln!("Redis: {w}");
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn check_deployment(&self) -> Result<&Deployment, BackendError> {
        self.inner
            .deployment
            .get_or_try_init(|| async {
                let reply = self
                    .run("info", |c| async move {
                        let mut cmd = redis::cmd("INFO");
                        cmd.arg("memory");
                        match c {
                            AnyConn::Single(mut c) => cmd.query_async::<Value>(&mut c).await,
                            AnyConn::Cluster(mut c) => {
                                let all = RoutingInfo::MultiNode((
                                    MultipleNodeRoutingInfo::AllMasters,
                                    Some(ResponsePolicy::Special),
                                ));
                                c.route_command(cmd, all).await
                            }
                        }
                    })
                    .await;
                let mut policies = Vec::new();
                match reply {
                    Ok(v) => policies_in(&v, &mut policies),
                    // Denied (NOPERM) or renamed away: Redis answered, the policy is unknown.
                    Err(BackendError::Redis(e)) if !is_outage(&e) => {
                        tracing::info!(
                            error = %e,
                            "cannot read Redis' maxmemory-policy (INFO denied?); not checked"
                        );
                    }
                    Err(e) => return Err(e),
                }
                let evicting = policies.iter().find(|p| eviction_warning(p).is_some());
                let policy = evicting.or(policies.first()).cloned();
                let warnings: Vec<String> = policy
                    .as_deref()
                    .and_then(eviction_warning)
                    .into_iter()
                    .collect();
                for w in &warnings {
                    tracing::warn!(target: "tenant_guard::backend", "Redis {}: {w}", self.description());
                }
                Ok(Deployment {
                    maxmemory_policy: policy,
                    warnings,
                })
            })
            .await
    }

    /// The result of [`check_deployment`](Self::check_deployment), if it has run.
    pub fn deployment(&self) -> Option<&Deployment> {
        self.inner.deployment.get()
    }

    /// The connect timeout.
    pub(super) fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.conn, Conn::Cluster(_))
    }

    /// The shared health state.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    async fn connection(inner: &Inner) -> RedisResult<AnyConn> {
        match &inner.conn {
            Conn::Single(cm) => Ok(AnyConn::Single(cm.clone())),
            Conn::Cluster(cc) => {
                let ClusterConn { client, conn } = &**cc;
                let c = conn
                    .get_or_try_init(|| client.get_async_connection())
                    .await?;
                Ok(AnyConn::Cluster(c.clone()))
            }
        }
    }

    /// Runs `f` on a connection under the command timeout and the breaker.
    pub(crate) async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, BackendError>
    where
        F: FnOnce(AnyConn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let metrics = self.inner.health.metrics();
        if !self.inner.health.allows() {
            metrics
                .redis_short_circuited
                .get_or_create(&OpLabels { op })
                .inc();
            return Err(BackendError::Unavailable(
                self.inner
                    .health
                    .last_error()
                    .unwrap_or_else(|| "circuit breaker open".into()),
            ));
        }
        let start = Instant::now();
        // The first command on a cluster also has to connect: allow for that.
        let deadline = self.inner.command_timeout
            + match &self.inner.conn {
                Conn::Cluster(cc) if !cc.conn.initialized() => self.inner.connect_timeout,
                _ => Duration::ZERO,
            };
        let inner = &*self.inner;
        let result = tokio::time::timeout(deadline, async move {
            let conn = Self::connection(inner).await?;
            f(conn).await
        })
        .await;
        let elapsed = start.elapsed();
        match result {
            Ok(Ok(v)) => {
                metrics
                    .redis_latency
                    .get_or_create(&OpLabels { op })
                    .observe(elapsed.as_secs_f64());
                self.inner.health.record_success(elapsed);
                Ok(v)
            }
            Ok(Err(e)) if e.is_timeout() => {
                // The client's own response timeout (same length as ours) fired first.
                self.failed(op, &format!("{op} timed out after {deadline:?}"));
                Err(BackendError::Timeout(deadline))
            }
            Ok(Err(e)) => {
                if is_outage(&e) {
                    self.failed(op, &e.to_string());
                } else {
                    // Redis answered: it is up, even if it disliked the command.
                    self.inner.health.record_success(elapsed);
                }
                Err(BackendError::Redis(e))
            }
            Err(_) => {
                self.failed(op, &format!("{op} timed out after {deadline:?}"));
                Err(BackendError::Timeout(deadline))
            }
        }
    }

    fn failed(&self, op: &'static str, error: &str) {
        let health = &self.inner.health;
        health
            .metrics()
            .redis_errors
            .get_or_create(&OpLabels { op })
            .inc();
        if health.record_failure(error) {
            self.spawn_probe();
        }
    }

    /// While the breaker is open, PING every probe interval until Redis answers.
    fn spawn_probe(&self) {
        let health = self.inner.health.clone();
        if !health.start_probing() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            health.stop_probing();
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        rt.spawn(async move {
            let every = health.config().probe_interval;
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else {
                    break; // the store is gone
                };
                if health.allows() {
                    break; // closed by a command that got through
                }
                let start = Instant::now();
                let deadline = inner.command_timeout.max(inner.connect_timeout);
                let ping = tokio::time::timeout(deadline, async {
                    let mut conn = Self::connection(&inner).await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                })
                .await;
                match ping {
                    Ok(Ok(_)) => {
                        health.record_success(start.elapsed());
                        break;
                    }
                    Ok(Err(e)) => {
                        health.record_failure(&e.to_string());
                    }
                    Err(_) => {
                        health.record_failure("probe PING timed out");
                    }
                }
            }
            health.stop_probing();
        });
    }

    /// `PING`; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, BackendError> {
        let start = Instant::now();
        self.run("ping", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await?;
        Ok(start.elapsed())
    }

    /// `GET`.
    pub async fn get(&self, key: &RedisKey) -> Result<Option<Bytes>, BackendError> {
        self.run("get", |mut c| async move {
            let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut c).await?;
            Ok(v.map(Bytes::from))
        })
        .await
    }

    /// `MGET key...` (keys of one tenant: one slot).
    pub async fn get_many(&self, keys: &[&RedisKey]) -> Result<Vec<Option<Bytes>>, BackendError> {
        self.run("mget", |mut c| async move {
            let mut cmd = redis::cmd("MGET");
            for k in keys {
                cmd.arg(*k);
            }
            let v: Vec<Option<Vec<u8>>> = cmd.query_async(&mut c).await?;
            Ok(v.into_iter().map(|b| b.map(Bytes::from)).collect())
        })
        .await
    }

    /// `INCR key`.
    pub async fn incr(&self, key: &RedisKey) -> Result<u64, BackendError> {
        self.run("incr", |mut c| async move {
            redis::cmd("INCR").arg(key).query_async(&mut c).await
        })
        .await
    }

    /// `SET key value [PX ttl]`.
    pub async fn set(
        &self,
        key: &RedisKey,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.run("set", |mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(px(ttl));
            }
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    /// `SET key value NX [PX ttl]`; returns whether it wrote.
    pub async fn set_nx(
        &self,
        key: &RedisKey,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, BackendError> {
        self.run("set", |mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("NX");
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(px(ttl));
            }
            let v: Option<String> = cmd.query_async(&mut c).await?;
            Ok(v.is_some())
        })
        .await
    }

    /// Deletes `key` if it holds `expected` (Lua compare-and-delete); returns whether it did.
    pub async fn delete_if_eq(
        &self,
        key: &RedisKey,
        expected: &[u8],
    ) -> Result<bool, BackendError> {
        let n: i64 = self
            .eval(compare_and_delete_script(), &[key], &[expected])
            .await?;
        Ok(n == 1)
    }

    /// `UNLINK`; returns whether the key existed.
    pub async fn delete(&self, key: &RedisKey) -> Result<bool, BackendError> {
        self.run("del", |mut c| async move {
            let n: i64 = redis::cmd("UNLINK").arg(key).query_async(&mut c).await?;
            Ok(n > 0)
        })
        .await
    }

    /// `PEXPIRE`; returns false if the key does not exist.
    pub async fn expire(&self, key: &RedisKey, ttl: Duration) -> Result<bool, BackendError> {
        self.run("expire", |mut c| async move {
            let n: i64 = redis::cmd("PEXPIRE")
                .arg(key)
                .arg(px(ttl))
                .query_async(&mut c)
                .await?;
            Ok(n == 1)
        })
        .await
    }

    /// `PTTL`.
    pub async fn ttl(&self, key: &RedisKey) -> Result<KeyTtl, BackendError> {
        self.run("ttl", |mut c| async move {
            let ms: i64 = redis::cmd("PTTL").arg(key).query_async(&mut c).await?;
            Ok(match ms {
                -2 => KeyTtl::Missing,
                -1 => KeyTtl::Persistent,
                ms => KeyTtl::Expires(Duration::from_millis(ms.max(0).unsigned_abs())),
            })
        })
        .await
    }

    /// `PUBLISH channel message`; returns how many subscribers received it.
    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<u64, BackendError> {
        self.run("publish", |mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// Runs a Lua script by EVALSHA (loading it on NOSCRIPT). All keys must share the
    /// tenant's hash tag, which every key from [`Keys`](crate::keys::Keys) does.
    pub async fn eval<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        keys: &[&RedisKey],
        args: &[&[u8]],
    ) -> Result<T, BackendError> {
        self.run("eval", |mut c| async move {
            let mut inv = script.script().prepare_invoke();
            for k in keys {
                inv.key(*k);
            }
            for a in args {
                inv.arg(*a);
            }
            inv.invoke_async(&mut c).await
        })
        .await
    }

    /// Deletes every key matching a tenant-confined pattern with SCAN + UNLINK in batches
    /// (never KEYS). On a cluster only the node that owns the tenant's slot is scanned: every
    /// key of a tenant lives there. Returns how many keys were deleted.
    pub async fn delete_matching(&self, pattern: &KeyPattern) -> Result<u64, BackendError> {
        let slot = pattern.slot();
        // Every key of a tenant lives in the tenant's slot, so the slot's master holds them
        // all — except while that slot migrates, when some are on the importing node
        // already. On a cluster every master is therefore scanned (one SCAN each when
        // they hold nothing of the tenant), the slot's owner first.
        let mut targets = vec![SingleNodeRoutingInfo::SpecificNode(Route::new(
            slot,
            SlotAddr::Master,
        ))];
        if self.is_cluster() {
            targets.extend(self.other_masters(slot).await?);
        }
        let mut deleted = 0u64;
        for target in targets {
            deleted += self.delete_matching_on(pattern, target).await?;
        }
        Ok(deleted)
    }

    /// Masters of the cluster other than the one serving `slot`, by address.
    async fn other_masters(&self, slot: u16) -> Result<Vec<SingleNodeRoutingInfo>, BackendError> {
        let nodes: String = self
            .run("cluster-nodes", |c| async move {
                match c {
                    AnyConn::Single(_) => Ok(String::new()),
                    AnyConn::Cluster(mut c) => {
                        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                            Route::new(slot, SlotAddr::Master),
                        ));
                        let v = c
                            .route_command(redis::cmd("CLUSTER").arg("NODES").clone(), route)
                            .await?;
                        Ok(redis::from_redis_value(v)?)
                    }
                }
            })
            .await?;
        let mut out = Vec::new();
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            // <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slots...>
            if f.len() < 8
                || !f[2].contains("master")
                || f[2].contains("fail")
                || f[2].contains("myself")
            {
                continue;
            }
            let addr = f[1].split(['@', ',']).next().unwrap_or("");
            if let Some((host, port)) = addr.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    out.push(SingleNodeRoutingInfo::ByAddress {
                        host: host.to_string(),
                        port,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn delete_matching_on(
        &self,
        pattern: &KeyPattern,
        target: SingleNodeRoutingInfo,
    ) -> Result<u64, BackendError> {
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let target = target.clone();
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run("scan", |c| async move {
                    let mut cmd = redis::cmd("SCAN");
                    cmd.arg(cursor)
                        .arg("MATCH")
                        .arg(pattern.as_str())
                        .arg("COUNT")
                        .arg(1000);
                    match c {
                        AnyConn::Single(mut c) => cmd.query_async(&mut c).await,
                        AnyConn::Cluster(mut c) => {
                            let v = c
                                .route_command(cmd, RoutingInfo::SingleNode(target))
                                .await?;
                            Ok(redis::from_redis_value(v)?)
                        }
                    }
                })
                .await?;
            if !keys.is_empty() {
                let keys = &keys;
                deleted += self
                    .run("del", |mut c| async move {
                        redis::cmd("UNLINK")
                            .arg(keys)
                            .query_async::<u64>(&mut c)
                            .await
                    })
                    .await?;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(deleted);
            }
        }
    }

    /// `DBSIZE` (summed over primaries on a cluster): every key in the database, including
    /// keys that are not tenant-guard's.
    pub async fn db_size(&self) -> Result<u64, BackendError> {
        self.run("dbsize", |mut c| async move {
            redis::cmd("DBSIZE").query_async::<u64>(&mut c).await
        })
        .await
    }
}

fn px(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
