//! Test harness: real `redis-server` processes on free loopback ports.
//!
//! * [`RedisServer::start`] — one node, owned by the test: killed on drop (also when the
//!   test panics), and by the kernel if the test process dies (PR_SET_PDEATHSIG).
//! * [`RedisCluster::start`] — three masters made into a cluster with
//!   `redis-cli --cluster create`; [`shared_cluster`] gives one per test binary.
//! * kill / pause (SIGSTOP) / resume / restart helpers, so tests can stage outages.
//!
//! Nothing here touches the machine's Redis on 6379: ports come from a private range, are
//! checked free (with the cluster bus port, +10000) and reserved for this test process by a
//! lock file before use, and a server counts as started only when the process answering on
//! the port is the one this harness spawned (`INFO server` names its pid).

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "redis-server (and redis-cli) must be on PATH for the Redis tests. \
Install them with `sudo apt-get install -y redis-server redis-tools` (Debian/Ubuntu) or \
`brew install redis` (macOS). The tests start their own servers on free loopback ports and \
never use the Redis on 6379.";

fn require_redis() {
    for bin in ["redis-server", "redis-cli"] {
        let found = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "`{bin}` not found. {INSTALL_HINT}");
    }
}

fn port_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// Reserves `p` for this process: an exclusive `flock` on a lock file per port, held until
/// the process exits (the kernel releases it even when the process is killed). Two test
/// processes therefore never pick the same port between "checked free" and "bound"; a
/// program outside the tests can still take it, which [`wait_ready`]'s pid check catches.
#[allow(unsafe_code)]
fn reserve(p: u16) -> bool {
    use std::os::fd::AsRawFd;
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("tenant-guard-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(p.to_string()))
    else {
        return false;
    };
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false;
    }
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(file);
    true
}

/// A free port whose cluster-bus port (+10000) is free too. The start of the range is
/// spread by process id so parallel test processes rarely probe the same ports.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 2_000) as u16 * 10,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        if p >= 55_000 {
            NEXT.store(20_000, Ordering::SeqCst);
            continue;
        }
        if p != 6379 && port_free(p) && port_free(p + 10_000) && reserve(p) {
            return p;
        }
    }
}

/// Sends one command in RESP and returns the raw reply (enough for readiness checks).
pub fn raw_command(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().ok()?,
        Duration::from_millis(200),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// If the test process dies without running destructors (SIGKILL, abort, a crashed test
/// run), the kernel kills the child too (PR_SET_PDEATHSIG), so no redis-server, `serve` or
/// `redis-cli MONITOR` outlives the tests. The signal follows the spawning *thread*: spawn
/// from a thread that lives as long as the child should.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn spawn_redis(port: u16, dir: &Path, extra: &[String], env: &[(String, String)]) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut cmd);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}. {INSTALL_HINT}"))
}

fn wait_ready(port: u16, child: &mut Child, dir: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false; // exited: port taken, bad args...
        }
        if let Some(info) = raw_command(port, &["INFO", "server"]) {
            // Ours only if the server answering is the process we spawned; another
            // program that took the port first means: try again elsewhere.
            let pid = info
                .lines()
                .find_map(|l| l.strip_prefix("process_id:"))
                .and_then(|v| v.trim().parse::<u32>().ok());
            if pid == Some(child.id()) {
                return true;
            }
            if pid.is_some() {
                return false;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    panic!("redis-server on port {port} not ready after 10 s; log:\n{log}");
}

/// One redis-server process owned by a test.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl RedisServer {
    /// Starts a single node.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a node with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// Starts a node with extra arguments and environment variables (e.g. `LD_PRELOAD` of
    /// libfaketime, to set its clock).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        require_redis();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("tempdir");
            let mut child = spawn_redis(port, dir.path(), &extra, &env);
            if wait_ready(port, &mut child, dir.path()) {
                return Self {
                    port,
                    child: Some(child),
                    dir,
                    extra,
                    env,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start redis-server on a free port after 5 attempts");
    }

    /// Starts a single node on a given port (e.g. one a backend was pointed at while
    /// nothing listened there).
    pub fn start_on(port: u16) -> Self {
        require_redis();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = spawn_redis(port, dir.path(), &[], &[]);
        assert!(
            wait_ready(port, &mut child, dir.path()),
            "redis-server could not start on port {port}"
        );
        Self {
            port,
            child: Some(child),
            dir,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, like a crash. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.resume_pid(c.id()); // a stopped process still dies, but be tidy
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (and data dir, so a cluster node keeps
    /// its identity).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !port_free(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut child = spawn_redis(self.port, self.dir.path(), &self.extra, &self.env);
        assert!(
            wait_ready(self.port, &mut child, self.dir.path()),
            "redis-server did not come back on port {}",
            self.port
        );
        self.child = Some(child);
    }

    fn signal(&self, pid: u32, sig: &str) {
        let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
    }

    fn resume_pid(&self, pid: u32) {
        self.signal(pid, "-CONT");
    }

    /// SIGSTOP: the server holds its connections but answers nothing (a hung Redis).
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            self.signal(pid, "-STOP");
        }
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            self.resume_pid(pid);
        }
    }

    /// Runs `redis-cli -p <port> args...` and returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli: {e}. {INSTALL_HINT}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Three masters sharing the 16384 slots.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with_replicas(0, 2000)
    }

    /// Three masters with `replicas` replicas each; `node_timeout_ms` is how long a master
    /// may be silent before its replica takes over.
    pub fn start_with_replicas(replicas: usize, node_timeout_ms: u32) -> Self {
        Self::start_with_args(replicas, node_timeout_ms, &[])
    }

    /// Like [`start_with_replicas`](Self::start_with_replicas), every node also started
    /// with `extra` arguments (e.g. an `--aclfile`).
    pub fn start_with_args(replicas: usize, node_timeout_ms: u32, extra: &[&str]) -> Self {
        require_redis();
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &timeout,
                    // Replicas sync at once (the default waits 5 s for more replicas).
                    "--repl-diskless-sync-delay",
                    "0",
                ];
                args.extend_from_slice(extra);
                RedisServer::start_with(&args)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}. {INSTALL_HINT}"));
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_ok();
        // A replica that never finished its first sync cannot take over: wait for all.
        let deadline = Instant::now() + Duration::from_secs(30);
        while replicas > 0
            && !cluster.nodes.iter().all(|n| {
                let info = n.cli(&["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        {
            assert!(Instant::now() < deadline, "replicas not in sync after 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `(port, first slot, last slot)` of every slot range of a live master, from
    /// `CLUSTER NODES` as a live node sees it.
    pub fn masters(&self) -> Vec<(u16, u16, u16)> {
        let Some(n) = self.nodes.iter().find(|n| n.pid().is_some()) else {
            return Vec::new();
        };
        let nodes = n.cli(&["CLUSTER", "NODES"]);
        let mut masters = Vec::new();
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port: u16 = f[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            for range in &f[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    masters.push((port, a, b));
                }
            }
        }
        masters
    }

    /// Waits until every live node reports `cluster_state:ok` and knows every node.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        loop {
            let ok = self.nodes.iter().filter(|n| n.pid().is_some()).all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains(&known)
            });
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                let states: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|n| n.pid().is_some())
                    .map(|n| {
                        let info = n.cli(&["CLUSTER", "INFO"]);
                        let pick = |k: &str| {
                            info.lines()
                                .find(|l| l.starts_with(k))
                                .unwrap_or("")
                                .trim()
                                .to_string()
                        };
                        format!(
                            "{}: {} {}",
                            n.port,
                            pick("cluster_state"),
                            pick("cluster_known_nodes")
                        )
                    })
                    .collect();
                panic!("cluster not ok after 30 s: {states:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port,host:port,...` for `REDIS_CLUSTER_NODES`.
    pub fn nodes_var(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}

/// One cluster per test binary, started on first use. It is owned by a thread that lives
/// as long as the test process, so the servers' parent-death signal fires exactly when the
/// process exits (PR_SET_PDEATHSIG follows the spawning *thread*).
pub fn shared_cluster() -> &'static ClusterInfo {
    static CLUSTER: OnceLock<ClusterInfo> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let cluster = RedisCluster::start();
            let info = ClusterInfo {
                nodes_var: cluster.nodes_var(),
                ports: cluster.ports(),
            };
            tx.send(info).expect("send cluster info");
            // Keep the servers (and this thread) alive until the process exits.
            let _keep = cluster;
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("cluster keeper thread died")
    })
}

#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub nodes_var: String,
    pub ports: Vec<u16>,
}

/// A tenant id no other test uses, so tests can share a server without interfering.
pub fn unique_tenant(label: &str) -> tenant_guard::tenant::TenantId {
    static N: AtomicU16 = AtomicU16::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    tenant_guard::tenant::TenantId::new(&format!("{label}-{}-{n}-{nanos}", std::process::id()))
        .expect("valid tenant")
}

/// Makes a configuration on Redis fail loudly: rate-limit checks answer 503 instead of
/// falling back to the in-process limiter (`RATE_LIMIT_OUTAGE=closed`, unless the test sets
/// an outage mode itself), so a broken script or Redis path cannot pass for a working one.
pub fn strict_on_redis(vars: &mut Vec<(String, String)>) {
    if !vars.iter().any(|(k, _)| k == "RATE_LIMIT_OUTAGE") {
        vars.push(("RATE_LIMIT_OUTAGE".into(), "closed".into()));
    }
    if !vars.iter().any(|(k, _)| k == "SESSION_OUTAGE") {
        vars.push(("SESSION_OUTAGE".into(), "closed".into()));
    }
}

/// A rate limiter (with its backend and metrics) built from env-style variables, as an app
/// would build it.
pub fn build_limiter(
    vars: Vec<(String, String)>,
) -> (
    tenant_guard::ratelimit::RateLimiter,
    tenant_guard::backend::Backend,
    tenant_guard::metrics::Metrics,
) {
    let config = tenant_guard::config::Config::from_vars(vars).expect("config");
    let metrics = tenant_guard::metrics::Metrics::new();
    let backend = tenant_guard::backend::Backend::from_config(&config, &metrics).expect("backend");
    let limiter =
        tenant_guard::ratelimit::RateLimiter::from_config(&config, backend.clone(), &metrics);
    (limiter, backend, metrics)
}

/// A `GET route` check for `who` in tenant `t`.
pub fn get_check<'a>(
    t: &'a tenant_guard::tenant::TenantId,
    who: &'a tenant_guard::ratelimit::Identity,
    route: &'a str,
    cost: Option<u32>,
) -> tenant_guard::ratelimit::Check<'a> {
    static GET: http::Method = http::Method::GET;
    tenant_guard::ratelimit::Check {
        tenant: t,
        identity: who,
        method: &GET,
        route,
        cost,
        plan: None,
    }
}

/// Where a conformance suite runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Memory,
    Redis,
    Cluster,
}

/// `vars` plus what points a configuration at `target`, and the single-node server the
/// caller must keep alive for the test (the cluster is the shared one).
pub fn target_vars(
    target: Target,
    vars: &[(&str, &str)],
) -> (Vec<(String, String)>, Option<RedisServer>) {
    let mut all: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut server = None;
    match target {
        Target::Memory => {}
        Target::Redis => {
            let s = RedisServer::start();
            all.push(("REDIS_URL".into(), s.url()));
            server = Some(s);
            strict_on_redis(&mut all);
        }
        Target::Cluster => {
            all.push((
                "REDIS_CLUSTER_NODES".into(),
                shared_cluster().nodes_var.clone(),
            ));
            strict_on_redis(&mut all);
        }
    }
    (all, server)
}

/// A `tenant-guard serve` process (`bin`: `env!("CARGO_BIN_EXE_tenant-guard")`) with only
/// `env` (and `PATH`) set; killed on drop. It binds port 0 itself and prints the address it
/// bound (`listening on ADDR`), which this reads: no port is picked before it is bound.
pub struct ServeProcess {
    child: Child,
    pub port: u16,
}

impl ServeProcess {
    pub fn start(bin: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--addr", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start tenant-guard serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the address, then drains the rest (logs) so the child never blocks on a
        // full pipe; ends when the child exits.
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not report a listening address within 20 s");
            }
        };
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unreadable address {addr:?}"));
        Self { child, port }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response read by [`http`].
pub struct HttpReply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpReply {
    /// A header's value (first occurrence).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The `name=value` pair of `Set-Cookie`, if any.
    pub fn cookie_pair(&self) -> Option<String> {
        self.header("set-cookie")
            .map(|c| c.split(';').next().unwrap_or("").to_string())
    }
}

/// One HTTP/1.1 request to a loopback port over a fresh connection (`Connection: close`),
/// JSON content type; blocking, for tests that drive real server processes.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(head.as_bytes()).expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    HttpReply {
        status: headers
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line"),
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

/// Most of the sorted `times` in any window `(t - window, t]`: a client-side check that a
/// limit held (the load tool's `max_in_window`, for the library's own tests).
pub fn max_in_window(times: &[Duration], window: Duration) -> usize {
    (0..times.len())
        .map(|hi| hi + 1 - times.partition_point(|&t| t + window <= times[hi]))
        .max()
        .unwrap_or(0)
}
