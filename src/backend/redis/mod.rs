//! The Redis backend: one handle for a single node and for a cluster.
//!
//! * Single node: `REDIS_POOL_SIZE` `ConnectionManager`s (each a multiplexed connection
//!   that reconnects by itself) used in turn, created lazily so the app starts while Redis
//!   is down. By default one per CPU core (2 to 8): one connection puts every command of
//!   the process through one driver task, more than the cores split the same commands
//!   into more, smaller socket writes (the session bench on 2 cores, read + write against
//!   tower-sessions' requests/s: 0.98-1.06x with 2 connections, 0.79-0.82x with 4).
//! * Cluster: `cluster_async::ClusterConnection`, connected on first use and kept; it follows
//!   MOVED/ASK and reconnects to nodes by itself.
//! * Every command runs under `REDIS_COMMAND_TIMEOUT` and through the circuit breaker in
//!   [`Health`]: while it is open, commands fail at once and a background probe waits for
//!   Redis to come back.
//! * Lua scripts (see [`LuaScript`]) run by EVALSHA; on NOSCRIPT the script is loaded
//!   (`SCRIPT LOAD` goes to every primary of a cluster) and run again.

mod commands;
mod deployment;
mod scan;
mod script;

use std::future::Future;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use tokio::sync::OnceCell;

use super::BackendError;
use super::health::Health;

use super::{RedisConfig, RedisMode, TlsCa};
use crate::metrics::{BackendLabels, OpLabels};
pub use deployment::Deployment;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
pub use script::LuaScript;
pub(crate) use script::compare_and_delete_script;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

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
    /// Connections used in turn (each multiplexed), and the next one's number.
    Single(Box<[ConnectionManager]>, std::sync::atomic::AtomicUsize),
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // (Inside a Tokio runtime: the Redis client spawns a task of its own at once.)
    /// use tenant_guard::backend::{BackendError, Health, RedisStore};
    /// use tenant_guard::config::{Config, RedisConfig};
    ///
    /// // Nothing is connected yet: this succeeds whether or not the server is up.
    /// let config = Config::from_vars([("REDIS_URL", "redis://redis.invalid:6379")]).unwrap();
    /// let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()));
    /// assert!(store.is_ok());
    /// // Redis disabled is a configuration this store cannot serve.
    /// let disabled = RedisStore::new(&RedisConfig::default(), Health::new(Default::default(), Default::default()));
    /// assert!(matches!(disabled, Err(BackendError::Unsupported(_))));
    /// # }
    /// ```
    pub fn new(config: &RedisConfig, health: Health) -> Result<Self, BackendError> {
        let mut pubsub_clients = Vec::new();
        let (conn, description, label) = match &config.mode {
            RedisMode::Disabled => {
                return Err(BackendError::Unsupported(
                    "Redis is disabled in the configuration",
                ));
            }
            RedisMode::Single(url) => {
                let client = open_client(url.expose(), config.tls_ca.as_ref())?;
                let cm_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.command_timeout))
                    .set_number_of_retries(config.max_retries as usize)
                    .set_max_delay(Duration::from_secs(2));
                pubsub_clients.push(client.clone());
                let pool = (0..config.pool_size.get())
                    .map(|_| {
                        ConnectionManager::new_lazy_with_config(client.clone(), cm_config.clone())
                    })
                    .collect::<Result<Box<[_]>, _>>()?;
                (
                    Conn::Single(pool, std::sync::atomic::AtomicUsize::new(0)),
                    url.to_string(),
                    "redis",
                )
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // (Inside a Tokio runtime: the Redis client spawns a task of its own at once.)
    /// use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    ///
    /// let config = Config::from_vars([("REDIS_URL", "redis://:s3cret@redis.invalid:6380/2")]).unwrap();
    /// let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default())).unwrap();
    /// assert_eq!(store.description(), "redis://:[redacted]@redis.invalid:6380/2");
    /// # }
    /// ```
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// Clients for a dedicated pub/sub connection, one per node (with the TLS roots of the
    /// configuration). On a cluster any node will do: classic pub/sub messages reach every
    /// node.
    pub(super) fn pubsub_clients(&self) -> &[redis::Client] {
        &self.inner.pubsub_clients
    }

    /// The result of [`check_deployment`](Self::check_deployment), if it has run.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // (Inside a Tokio runtime: the Redis client spawns a task of its own at once.)
    /// use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    ///
    /// let config = Config::from_vars([("REDIS_URL", "redis://redis.invalid:6379")]).unwrap();
    /// let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default())).unwrap();
    /// // Nothing known until `check_deployment` got an answer from the server.
    /// assert!(store.deployment().is_none());
    /// # }
    /// ```
    pub fn deployment(&self) -> Option<&Deployment> {
        self.inner.deployment.get()
    }

    /// The connect timeout.
    pub(super) fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// The deadline of every command (`REDIS_COMMAND_TIMEOUT`).
    pub(crate) fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }

    /// Whether this is a cluster.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // (Inside a Tokio runtime: the Redis client spawns a task of its own at once.)
    /// use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    ///
    /// let health = || Health::new(Default::default(), Default::default());
    /// let single = Config::from_vars([("REDIS_URL", "redis://redis.invalid:6379")]).unwrap();
    /// assert!(!RedisStore::new(&single.redis, health()).unwrap().is_cluster());
    /// let cluster = Config::from_vars([(
    ///     "REDIS_CLUSTER_NODES",
    ///     "redis://node-1.invalid:6379,redis://node-2.invalid:6379",
    /// )])
    /// .unwrap();
    /// assert!(RedisStore::new(&cluster.redis, health()).unwrap().is_cluster());
    /// # }
    /// ```
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.conn, Conn::Cluster(_))
    }

    /// The shared health state.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // (Inside a Tokio runtime: the Redis client spawns a task of its own at once.)
    /// use tenant_guard::backend::{BreakerState, Health, RedisStore};
    /// use tenant_guard::config::Config;
    ///
    /// let config = Config::from_vars([("REDIS_URL", "redis://redis.invalid:6379")]).unwrap();
    /// let health = Health::new(config.breaker, Default::default());
    /// let store = RedisStore::new(&config.redis, health.clone()).unwrap();
    /// assert_eq!(store.health().state(), BreakerState::Closed);
    /// health.record_failure("connection refused");
    /// assert_eq!(store.health().consecutive_failures(), 1); // the same shared state
    /// # }
    /// ```
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    async fn connection(inner: &Inner) -> RedisResult<AnyConn> {
        match &inner.conn {
            Conn::Single(pool, next) => {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % pool.len();
                Ok(AnyConn::Single(pool[i].clone()))
            }
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
                let ping =
                    tokio::time::timeout(deadline, Self::ping_every_connection(&inner)).await;
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

    /// The probe's `PING`, on every connection of a single node's pool: the breaker closes
    /// only once each has reconnected, so the first commands after an outage do not fail
    /// on a connection still down (with 2 connections, one check in two did).
    async fn ping_every_connection(inner: &Inner) -> RedisResult<()> {
        if let Conn::Single(pool, _) = &inner.conn {
            for c in pool.iter() {
                let mut conn = AnyConn::Single(c.clone());
                redis::cmd("PING").query_async::<String>(&mut conn).await?;
            }
            return Ok(());
        }
        let mut conn = Self::connection(inner).await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }

    /// `PING`; returns the round-trip time.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let rtt = store.ping().await?;
    /// assert!(rtt < config.redis.command_timeout);
    /// assert_eq!(store.health().last_latency().is_some(), true);
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, BackendError> {
        let start = Instant::now();
        self.run("ping", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await?;
        Ok(start.elapsed())
    }
}

fn px(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
