//! Loopback ports reserved for this test process, raw RESP, and children that die with it.

#![allow(unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

pub const INSTALL_HINT: &str = "redis-server (and redis-cli) must be on PATH for the Redis tests. \
Install them with `sudo apt-get install -y redis-server redis-tools` (Debian/Ubuntu) or \
`brew install redis` (macOS). The tests start their own servers on free loopback ports and \
never use the Redis on 6379.";

pub fn require_redis() {
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

pub fn port_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// Reserves `p` for this process: an exclusive `flock` on a lock file per port, held until
/// the process exits (the kernel releases it even when the process is killed). Two test
/// processes therefore never pick the same port between "checked free" and "bound"; a
/// program outside the tests can still take it, which [`wait_ready`]'s pid check catches.
#[allow(unsafe_code)]
pub fn reserve(p: u16) -> bool {
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
