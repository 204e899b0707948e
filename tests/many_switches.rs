//! Many nodes in one vdens-fast under the default locked-memory limit: `--multi` with 200
//! `switch://` hosts. Unprivileged io_uring rings and their pinned buffers count against
//! RLIMIT_MEMLOCK (8 MiB here and on Debian by default), and a ring per node fitted about 37
//! nodes (vdens-fast first ended with "io_uring_setup: Out of memory" after about 40, where
//! classic vdens runs 200; then the rest ran on epoll). Nodes now share their thread's ring,
//! with a thread per CPU at most: all 200 run on io_uring. Where even that memory cannot be
//! had, the nodes run on the epoll node, said once on stderr, and carry frames like the
//! others, their host taps (opened with offload for io_uring) included.

mod common;
use common::*;
use std::process::Command;

const SWITCHES: usize = 200;
const MEMLOCK: &str = "--memlock=8388608:8388608";
/// Less than one ring takes.
const TINY_MEMLOCK: &str = "--memlock=65536:65536";

/// Locked memory is counted per user (`nobody` here, for all its processes) against each
/// process's limit: these tests hold the lock, so that one's rings do not count in another's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// `c` run under prlimit with the memlock limit `limit` (only for that process tree).
fn with_memlock(c: &Command, limit: &str) -> Command {
    let mut p = Command::new("prlimit");
    p.arg(limit).arg("--").arg(c.get_program()).args(c.get_args());
    p.env_clear();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            p.env(k, v);
        }
    }
    if let Some(d) = c.get_current_dir() {
        p.current_dir(d);
    }
    p
}

/// Starts a vdens-fast hosting `n` switches under the memlock `limit`; pings and moves TCP
/// between the host's tap and a vdens-fast client of the first and of the last switch.
fn switches_carry_frames(d: &TempDir, n: usize, limit: &str) -> Node {
    let vnls: Vec<String> = (0..n)
        .map(|i| format!("switch://{}", d.join(&format!("s{i}")).display()))
        .collect();
    let mut args: Vec<&str> = vec!["-m"];
    args.extend(vnls.iter().map(|s| s.as_str()));
    args.extend(["--", "sh", "-s"]);
    let mut host = Node::start("host", with_memlock(&vdens_fast(Who::Nobody, d, &args), limit));
    let last = n - 1;
    assert!(
        wait_path(&d.join(&format!("s{last}")).join("ctl"), 20),
        "the last switch did not appear; stderr: {}",
        host.stderr()
    );
    let links = host.sh("ip -o link | grep -c ': vde'", 10);
    assert_eq!(links.trim(), n.to_string(), "one tap per switch");
    // The first switch and the last (on the other thread, its last node) both carry frames
    // between the host's tap and a client.
    for (k, i) in [0usize, last].into_iter().enumerate() {
        let vnl = format!("vde://{}", d.join(&format!("s{i}")).display());
        let mut client = ns_node(&format!("client{i}"), Impl::Fast, d, &[&vnl]);
        let net = 60 + k;
        host.up(&format!("vde{i}"), &format!("10.{net}.0.1/24"), None);
        client.up("vde0", &format!("10.{net}.0.2/24"), None);
        client.ping(&format!("10.{net}.0.1"), 3, None);
        // A TCP transfer from the host's tap: super-frames from the offloading tap are cut
        // on whichever engine runs the node.
        tcp_transfer(&mut host, &mut client, &format!("10.{net}.0.2"), d, 1 << 20);
    }
    host
}

/// The CPUs this process may run on (vdens-fast's threads per kind at most).
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn two_hundred_switches_under_the_default_memlock_limit() {
    let _one = one_at_a_time();
    let d = TempDir::new("many-sw");
    let host = switches_carry_frames(&d, SWITCHES, MEMLOCK);
    let err = host.stderr();
    assert!(
        !err.contains("no memory for io_uring"),
        "every node runs on io_uring; stderr: {err}"
    );
    assert_eq!(
        rings(host.pid()),
        cpus().min(SWITCHES),
        "the nodes share a ring per thread, a thread per CPU"
    );
}

#[test]
fn nodes_fall_back_to_epoll_without_memory_for_a_ring() {
    let _one = one_at_a_time();
    let d = TempDir::new("many-sw-tiny");
    let host = switches_carry_frames(&d, 4, TINY_MEMLOCK);
    assert_eq!(rings(host.pid()), 0, "no ring fits in 64 KiB");
    // Said once: by the nodes' threads, with the limit; or, when what the user's other
    // processes hold leaves not even the probe's small ring room (locked memory is counted
    // per user), by the probe, before any thread starts.
    let err = host.stderr();
    let nodes = err.matches("no memory for io_uring").count();
    let probe = err
        .matches("io_uring unavailable (io_uring_setup: Out of memory)")
        .count();
    assert_eq!(nodes + probe, 1, "the fall-back is said once: {err}");
    assert!(
        probe == 1 || (err.contains("run on the poll engine") && err.contains("64 KiB")),
        "with the limit: {err}"
    );
}

/// Nodes of every kind sharing a thread's ring (three nodes: the third shares the first's
/// thread on two CPUs): a hub, a seqpacket ptp listener and a switch, each with a client,
/// each carrying pings while the others do.
#[test]
fn nodes_of_each_kind_share_a_ring() {
    let _one = one_at_a_time();
    let d = TempDir::new("shared-ring");
    let hub = format!("hub://{}", d.join("h").display());
    let ptp = format!("ptp://{}[seqpacket]", d.join("p").display());
    let sw = format!("switch://{}", d.join("s").display());
    let args = ["-m", &hub, &ptp, &sw, "--", "sh", "-s"];
    let mut host = Node::start("host", vdens_fast(Who::Nobody, &d, &args));
    assert!(
        wait_path(&d.join("s").join("ctl"), 20),
        "stderr: {}",
        host.stderr()
    );
    // The node threads make their rings while the command already runs (the ctl socket is
    // there before them): counted until they are all there, or the deadline.
    let want = cpus().min(3);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rings(host.pid()) < want && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(rings(host.pid()), want, "a ring per thread, a thread per CPU");
    let peers = [
        format!("vde://{}", d.join("h").display()),
        format!("ptp://{}", d.join("p").display()),
        format!("vde://{}", d.join("s").display()),
    ];
    let mut clients: Vec<Node> = Vec::new();
    for (i, vnl) in peers.iter().enumerate() {
        let mut c = ns_node(&format!("client{i}"), Impl::Fast, &d, &[vnl]);
        host.up(&format!("vde{i}"), &format!("10.{}.0.1/24", 70 + i), None);
        c.up("vde0", &format!("10.{}.0.2/24", 70 + i), None);
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.ping(&format!("10.{}.0.1", 70 + i), 3, None);
    }
    tcp_transfer(&mut host, &mut clients[2], "10.72.0.2", &d, 1 << 20);
    // A client leaves and another joins the switch (the third node) while the others run.
    drop(clients.remove(2));
    let mut again = ns_node("client2b", Impl::Fast, &d, &[&peers[2]]);
    again.up("vde0", "10.72.0.3/24", None);
    again.ping("10.72.0.1", 3, None);
    clients[0].ping("10.70.0.1", 2, None);
    clients[1].ping("10.71.0.1", 2, None);
    let out = host.finish(10);
    assert!(
        !out.stderr.contains("did not finish at stop"),
        "every operation reaped at stop: {}",
        out.stderr
    );
}
