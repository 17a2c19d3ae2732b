//! Three masters made into a Redis Cluster, and the one each test binary shares.

use std::process::Command;
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use super::*;

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
