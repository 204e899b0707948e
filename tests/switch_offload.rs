//! Segmentation offload on a hosted switch's own tap (vdens-fast switch://D, on either
//! driver of the node's loop): the host's tap is opened with a virtio-net header and TSO/USO, super-frames read
//! from it are cut into standard frames before the forwarding decision, and frames to it are
//! coalesced. A classic vdens client and a vdens-fast client exchange checked TCP transfers
//! with the host both ways (MTU 1500 and 9000), ping; the host's --stats show super-frames on
//! its tap (a hub host too, and on the epoll driver); --no-offload keeps the tap plain. Every address
//! lives inside namespaces these tests create.

mod common;
use common::*;

/// Host + classic client + fast client on switch://; returns the host's final stats JSON.
fn scenario(tag: &str, net: u8, mtu: Option<u32>, host_args: &[&str]) -> String {
    scenario_on("switch", tag, net, mtu, host_args)
}

/// [`scenario`] on a `scheme://` node (switch or hub).
fn scenario_on(scheme: &str, tag: &str, net: u8, mtu: Option<u32>, host_args: &[&str]) -> String {
    let d = TempDir::new(tag);
    let (mut h, dir, stats) = node_host(&d, scheme, host_args);
    let vnl = format!("vde://{}", dir.display());
    let mut a = ns_node("classic", Impl::Classic, &d, &[&vnl]);
    let mut b = ns_node("fast", Impl::Fast, &d, &[&vnl]);
    let ip = |i: u8| format!("10.{net}.0.{i}");
    h.up("vde0", &format!("{}/24", ip(1)), mtu);
    a.up("vde0", &format!("{}/24", ip(2)), mtu);
    b.up("vde0", &format!("{}/24", ip(3)), mtu);
    let offload = !host_args.contains(&"--no-offload");
    assert_eq!(has_vnet_hdr(&mut h), offload, "host's tap flags");
    let big = mtu.map(|m| m - 28);
    a.ping(&ip(1), 3, big);
    b.ping(&ip(1), 3, big);
    h.ping(&ip(2), 3, big);
    h.ping(&ip(3), 3, big);
    a.ping(&ip(3), 2, big);
    let n = 8 << 20;
    tcp_transfer(&mut h, &mut a, &ip(2), &d, n);
    tcp_transfer(&mut a, &mut h, &ip(1), &d, n);
    tcp_transfer(&mut h, &mut b, &ip(3), &d, n);
    tcp_transfer(&mut b, &mut h, &ip(1), &d, n);
    // Clients among themselves still cross the switch (standard frames only).
    tcp_transfer(&mut a, &mut b, &ip(3), &d, 1 << 20);
    let o = h.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
    drop(a);
    drop(b);
    std::fs::read_to_string(&stats).expect("host's stats")
}

#[test]
fn switch_host_tap_offloads() {
    let j = scenario("swoff", 131, None, &[]);
    assert!(
        stat_sum(&j, "super_frames") > 0 && stat_sum(&j, "segments") > stat_sum(&j, "super_frames"),
        "no offload on the host's tap: {j}"
    );
}

#[test]
fn switch_host_tap_offloads_at_mtu_9000() {
    let j = scenario("swoff-jumbo", 132, Some(9000), &[]);
    assert!(
        stat_sum(&j, "super_frames") > 0,
        "no offload on the host's tap: {j}"
    );
}

#[test]
fn switch_host_no_offload_keeps_the_tap_plain() {
    let j = scenario("swoff-plain", 133, None, &["--no-offload"]);
    assert_eq!(
        (stat_sum(&j, "super_frames"), stat_sum(&j, "segments")),
        (0, 0),
        "--no-offload still offloaded: {j}"
    );
}

#[test]
fn switch_host_tap_offloads_on_the_epoll_driver() {
    let j = scenario("swoff-poll", 134, None, &["--engine", "poll"]);
    assert!(
        stat_sum(&j, "super_frames") > 0,
        "no offload on the host's tap with --engine poll: {j}"
    );
}

#[test]
fn hub_host_tap_offloads() {
    let j = scenario_on("hub", "huboff", 135, None, &[]);
    assert!(
        stat_sum(&j, "super_frames") > 0,
        "no offload on the hub host's tap: {j}"
    );
}

/// The write-type syscalls (`syscw` of /proc/PID/task/TID/io) of the thread named `name` of
/// process `pid`.
fn thread_syscw(pid: i32, name: &str) -> u64 {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let io = std::fs::read_to_string(t.path().join("io")).unwrap();
        return io
            .lines()
            .find_map(|l| l.strip_prefix("syscw:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no syscw in {io}"));
    }
    panic!("no thread {name} in process {pid}");
}

/// Frames a hosted switch passes through to its offloading tap as they are (ICMP here: nothing
/// to coalesce) are io_uring writes from their receive buffers, batched with the rest of the
/// turn, not a writev(2) each: the node thread makes (almost) no write syscall for 300 pings
/// from a client, and every ping is answered.
#[test]
fn pass_through_frames_reach_the_host_tap_through_the_ring() {
    let d = TempDir::new("swring");
    let (mut h, dir, _stats) = node_host(&d, "switch", &["--engine", "uring"]);
    let vnl = format!("vde://{}", dir.display());
    let mut b = ns_node("fast", Impl::Fast, &d, &[&vnl]);
    h.up("vde0", "10.137.0.1/24", None);
    b.up("vde0", "10.137.0.2/24", None);
    assert!(has_vnet_hdr(&mut h), "host's tap flags");
    b.ping("10.137.0.1", 2, None);
    let before = thread_syscw(h.pid(), "vdens-node0");
    let out = b.sh("ping -n -q -c 300 -i 0.002 -w 20 10.137.0.1", 30);
    let after = thread_syscw(h.pid(), "vdens-node0");
    assert!(out.contains("300 received"), "{out}");
    assert!(
        after - before < 30,
        "{} write syscalls for 300 frames to the tap",
        after - before
    );
    let o = h.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}
