//! One `redis-server` process owned by a test: start, kill, pause, restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

pub fn spawn_redis(port: u16, dir: &Path, extra: &[String], env: &[(String, String)]) -> Child {
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

pub fn wait_ready(port: u16, child: &mut Child, dir: &Path) -> bool {
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
