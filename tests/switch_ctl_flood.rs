//! Idle connections to a switch's control socket, by anyone allowed to connect, must not lock
//! out the clients that come after them: a vdeplug-fast switch under a low descriptor limit
//! (64) keeps at most a few idle connections (the oldest goes first, each has 5 s to send its
//! request), survives running out of descriptors, does not spin meanwhile, and accepts again
//! once the attacker leaves. On both engines. Before, the switch accepted until EMFILE and then
//! hung every new client (io_uring: for ever, even after the attacker left; epoll: spinning at
//! 99% CPU).

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const ATTACK: usize = 300;

/// Joins the switch with a vdens-fast client that only checks its tap; true when it got in
/// within `secs`.
fn client_joins(d: &TempDir, sw: &std::path::Path, secs: u64) -> bool {
    let vnl = format!("vde://{}", sw.display());
    let mut c = vdens_fast(Who::Root, d, &[&vnl, "ip", "link", "show", "vde0"]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().expect("vdens-fast client");
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st.success();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A connection to `path` that does not wait when the listener's backlog is full.
fn connect_nonblocking(path: &std::path::Path) -> Option<std::os::fd::OwnedFd> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let s = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&s), &UnixAddr::new(path).ok()?).ok()?;
    Some(s)
}

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime), counted from 1 before the command name.
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn flood(engine: &str) {
    let d = TempDir::new(&format!("ctlflood-{engine}"));
    let sw = d.join("sw");
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=64:64", "--"])
        .arg(env!("CARGO_BIN_EXE_vdeplug-fast"))
        .args(["--engine", engine, "null://"])
        .arg(format!("switch://{}", sw.display()));
    let mut host = Daemon::start("switch host", cmd);
    assert!(wait_path(&sw.join("ctl"), 10), "the switch did not start");
    assert!(
        client_joins(&d, &sw, 20),
        "{engine}: a client joins before the attack"
    );

    // The attack: connections that never send a request, kept open.
    let mut idle = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while idle.len() < ATTACK && Instant::now() < end {
        match connect_nonblocking(&sw.join("ctl")) {
            Some(s) => idle.push(s),
            // The backlog is full: give the switch a moment to take connections.
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    assert!(
        idle.len() > 64,
        "{engine}: the attack got {} connections in",
        idle.len()
    );
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_secs(host.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_secs(host.pid()) - before;
    assert!(
        spent < 0.5,
        "{engine}: the switch spins under the attack ({spent:.2} s of CPU in 1 s)"
    );
    assert!(
        client_joins(&d, &sw, 20),
        "{engine}: a client joins while {} idle connections are open",
        idle.len()
    );
    drop(idle);
    assert!(
        client_joins(&d, &sw, 20),
        "{engine}: a client joins after the attack"
    );
    assert!(host.alive(), "{engine}: the switch host is still running");
}

#[test]
fn idle_control_connections_do_not_lock_out_clients_uring() {
    flood("uring");
}

#[test]
fn idle_control_connections_do_not_lock_out_clients_poll() {
    flood("poll");
}
