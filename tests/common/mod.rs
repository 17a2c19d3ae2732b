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

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    unused_imports,
    unused_macros
)]

/// `on_each_backend!(a, b)`: for each `async fn a(vars: Vec<(&str, String)>)` of the test
/// file, a test `memory::a` (no variables: the memory backend) and a test
/// `redis_single::a` (`REDIS_URL` of a redis-server started for it). Needs
/// `#[macro_use] mod common;`.
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(Vec::new()).await;
            })*
        }
        mod redis_single {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let server = crate::common::RedisServer::start();
                super::$name(vec![("REDIS_URL", server.url())]).await;
            })*
        }
    };
}

mod cluster;
mod fixtures;
mod ports;
mod serve;
mod server;

pub use cluster::{ClusterInfo, RedisCluster, shared_cluster};
pub use fixtures::{
    Target, build_limiter, get_check, loopback_get, max_in_window, strict_on_redis, target_vars,
    unique_tenant,
};
pub use ports::{
    INSTALL_HINT, die_with_parent, free_port, port_free, raw_command, require_redis, reserve,
};
pub use serve::{HttpReply, ServeProcess, http};
pub use server::{RedisServer, cli, spawn_redis, wait_ready};
