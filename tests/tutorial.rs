//! The seed tutorial (vdens's) with vdens-fast, and the interop matrix against Debian's classic
//! vdens, vde_plug and vde_switch. Every address lives inside namespaces these tests create.

mod common;
use common::*;
use std::process::Command;

fn cmd(prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new(prog);
    c.args(args);
    c
}

/// vdeplug4's in-process switch, hosted by a classic `vde_plug null:// switch://DIR`.
fn vdeplug4_switch(d: &TempDir, name: &str) -> (Daemon, String) {
    let dir = d.join(name);
    let dm = Daemon::start(
        "vdeplug4-switch",
        cmd("vde_plug", &["null://", &format!("switch://{}", dir.display())]),
    );
    assert!(wait_path(&dir.join("ctl"), 10), "switch ctl did not appear");
    (dm, dir.display().to_string())
}

/// vde2's classic vde_switch.
fn vde2_switch(d: &TempDir, name: &str) -> (Daemon, String) {
    let dir = d.join(name);
    let dm = Daemon::start("vde_switch", cmd("vde_switch", &["-s", dir.to_str().unwrap()]));
    assert!(wait_path(&dir.join("ctl"), 10), "vde_switch ctl did not appear");
    (dm, dir.display().to_string())
}

/// Two nodes on one network: addresses, ping both ways, a checked TCP transfer both ways.
fn pair_talks(a: &mut Node, b: &mut Node, net: u8, d: &TempDir, mtu: Option<u32>) {
    let (ia, ib) = (format!("10.{net}.0.1"), format!("10.{net}.0.2"));
    a.up("vde0", &format!("{ia}/24"), mtu);
    b.up("vde0", &format!("{ib}/24"), mtu);
    a.ping(&ib, 3, None);
    b.ping(&ia, 3, None);
    if let Some(m) = mtu {
        // A full-size frame with DF set: no fragmentation anywhere on the path.
        a.ping(&ib, 2, Some(m - 28));
        b.ping(&ia, 2, Some(m - 28));
    }
    tcp_transfer(a, b, &ib, d, 2 << 20);
    tcp_transfer(b, a, &ia, d, 2 << 20);
}

fn ptp_pair(first: Impl, second: Impl, net: u8, mtu: Option<u32>) {
    let d = TempDir::new("ptp");
    let p = format!("ptp://{}", d.join("p").display());
    let mut a = ns_node("first", first, &d, &[&p]);
    let mut b = ns_node("second", second, &d, &[&p]);
    pair_talks(&mut a, &mut b, net, &d, mtu);
    a.finish(10);
    b.finish(10);
}

fn switch_pair(a_impl: Impl, b_impl: Impl, vde2: bool, net: u8, mtu: Option<u32>) {
    let d = TempDir::new("sw");
    let (_sw, dir) = if vde2 {
        vde2_switch(&d, "sw")
    } else {
        vdeplug4_switch(&d, "sw")
    };
    let vnl = format!("vde://{dir}");
    let mut a = ns_node("a", a_impl, &d, &[&vnl]);
    let mut b = ns_node("b", b_impl, &d, &[&vnl]);
    pair_talks(&mut a, &mut b, net, &d, mtu);
}

// ---- the tutorial ----

#[test]
fn tutorial_localhost_namespace() {
    let d = TempDir::new("tlo");
    let mut n = ns_node("lo", Impl::Fast, &d, &[]);
    n.sh("ip link set lo up", 10);
    n.ping("127.0.0.1", 2, None);
    assert_eq!(n.sh("ip -o link | wc -l", 5).trim(), "1");
}

#[test]
fn tutorial_two_namespaces_on_a_vdeplug4_switch() {
    switch_pair(Impl::Fast, Impl::Fast, false, 11, None);
}

#[test]
fn tutorial_ptp_with_a_classic_peer_as_the_vm() {
    // vde_plug stands in for the VM's end (qemu -nic vde,sock=ptp://...): a classic ptp opener
    // bridged to a tap in a "VM" namespace of the test.
    let d = TempDir::new("tvm");
    let vm = NetNs::new("vm");
    let p = format!("ptp://{}", d.join("p").display());
    assert_eq!(vm.sh("ip tuntap add vmtap mode tap", 10).code, Some(0));
    let mut node = ns_node("ns", Impl::Fast, &d, &[&p]);
    let _plug = Daemon::start("vde_plug", {
        let mut c = vm.cmd("vde_plug");
        c.args([&p, "tap://vmtap"]);
        c
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let setup = "ip link set lo up && ip addr add 10.12.0.2/24 dev vmtap && ip link set vmtap up";
    assert_eq!(vm.sh(setup, 10).code, Some(0));
    node.up("vde0", "10.12.0.1/24", None);
    node.ping("10.12.0.2", 3, None);
    let o = vm.sh("ping -n -q -c 3 -i 0.2 -w 10 10.12.0.1", 15);
    assert_eq!(o.code, Some(0), "vm -> ns ping: {o:#?}");
}

#[test]
fn tutorial_multi_switch_and_ptp_in_argument_order() {
    let d = TempDir::new("tmulti");
    let (_sw, dir) = vdeplug4_switch(&d, "sw");
    let sw = format!("vde://{dir}");
    let p = format!("ptp://{}", d.join("p").display());
    let mut r = ns_node("multi", Impl::Fast, &d, &[&sw, &p]);
    let mut on_sw = ns_node("on-switch", Impl::Fast, &d, &[&sw]);
    let mut on_ptp = ns_node("on-ptp", Impl::Fast, &d, &[&p]);
    r.up("vde0", "10.13.1.1/24", None);
    r.up("vde1", "10.13.2.1/24", None);
    on_sw.up("vde0", "10.13.1.2/24", None);
    on_ptp.up("vde0", "10.13.2.2/24", None);
    // vde0 reaches the switch's node, vde1 the ptp peer: argument order.
    r.sh("ping -n -q -c 3 -i 0.2 -w 10 -I vde0 10.13.1.2", 15);
    r.sh("ping -n -q -c 3 -i 0.2 -w 10 -I vde1 10.13.2.2", 15);
    on_sw.ping("10.13.1.1", 2, None);
    on_ptp.ping("10.13.2.1", 2, None);
}

#[test]
fn tutorial_nat_router() {
    // host namespace: tap0 10.14.0.254/24. Router: vdens-fast --multi ptp://P tap://tap0, started
    // in the host namespace; vde1 (tap0's peer) 10.14.0.1, vde0 192.168.14.1 towards the client.
    let d = TempDir::new("tnat");
    let host = NetNs::new("host");
    let p = format!("ptp://{}", d.join("p").display());
    let sh = |s: &str| host.sh(s, 10);
    assert_eq!(sh("ip link set lo up && ip tuntap add tap0 mode tap && ip addr add 10.14.0.254/24 dev tap0 && ip link set tap0 up").code, Some(0));
    let mut router = Node::start("router", {
        let prog = if std::env::var_os("VDF_FAST_AS_CLASSIC").is_some() {
            "vdens".to_string()
        } else {
            binary().display().to_string()
        };
        let mut c = host.cmd(&prog);
        c.args(["--multi", &p, "tap://tap0", "--", "sh", "-s"])
            .env("SHELL", "/bin/sh");
        c
    });
    router.up("vde0", "192.168.14.1/24", None);
    router.up("vde1", "10.14.0.1/24", None);
    router.sh(
        "echo 1 > /proc/sys/net/ipv4/ip_forward && \
         iptables -t nat -A POSTROUTING -o vde1 -j MASQUERADE",
        10,
    );
    let mut client = ns_node("client", Impl::Fast, &d, &[&p]);
    client.up("vde0", "192.168.14.2/24", None);
    client.sh("ip route add default via 192.168.14.1", 5);
    // The host sees the router's address as the source of the client's traffic.
    let cap = d.join("cap.txt");
    let tcpdump = Daemon::start("tcpdump", {
        let mut c = host.cmd("sh");
        c.args([
            "-c",
            &format!(
                "timeout 20 tcpdump -l -n -i tap0 -c 2 icmp > {} 2>/dev/null",
                cap.display()
            ),
        ]);
        c
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    client.ping("10.14.0.254", 3, None);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&cap)
        .map(|s| s.lines().count() < 2)
        .unwrap_or(true)
        && std::time::Instant::now() < end
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(tcpdump);
    let seen = std::fs::read_to_string(&cap).unwrap_or_default();
    assert!(seen.contains("10.14.0.1 > 10.14.0.254"), "host capture: {seen:?}");
    assert!(
        !seen.contains("192.168.14.2"),
        "the client's own address leaked: {seen:?}"
    );
    // TCP through MASQUERADE, sha256-exact: 8 MiB from the client to a listener on the host
    // (its TCP super-frames cross the ptp link and then the host's tap).
    let (src, dst) = (d.join("nat-tx.bin"), d.join("nat-rx.bin"));
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let data: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&src, &data).unwrap();
    let mut rx = Daemon::start("nc -l", {
        let mut c = host.cmd("sh");
        c.args([
            "-c",
            &format!("timeout 60 nc -l 10.14.0.254 5091 > {}", dst.display()),
        ]);
        c
    });
    assert_eq!(
        sh("for i in $(seq 100); do ss -ltn | grep -q ':5091 ' && exit 0; sleep 0.05; done; exit 1").code,
        Some(0),
        "the host's listener did not start"
    );
    client.sh(
        &format!("timeout 60 nc -N -w 10 10.14.0.254 5091 < {}", src.display()),
        70,
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while rx.alive() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let got = std::fs::read(&dst).unwrap_or_default();
    assert_eq!(got.len(), data.len(), "bytes through the NAT router");
    assert!(
        got == data,
        "what crossed the NAT router differs from what was sent"
    );
}

// ---- interop matrix ----

#[test]
fn interop_ptp_fast_first_classic_second() {
    ptp_pair(Impl::Fast, Impl::Classic, 21, None);
}

#[test]
fn interop_ptp_classic_first_fast_second() {
    ptp_pair(Impl::Classic, Impl::Fast, 22, None);
}

#[test]
fn interop_vdeplug4_switch_fast_and_classic() {
    switch_pair(Impl::Fast, Impl::Classic, false, 23, None);
}

#[test]
fn interop_vde2_switch_fast_and_classic() {
    switch_pair(Impl::Fast, Impl::Classic, true, 24, None);
}

#[test]
fn interop_stream_through_classic_vde_plug() {
    let d = TempDir::new("stream");
    let (_sw, dir) = vdeplug4_switch(&d, "sw");
    let eq = format!("=vde_plug vde://{dir}");
    let mut a = ns_node("fast-stream", Impl::Fast, &d, &[&eq]);
    let mut b = ns_node("classic", Impl::Classic, &d, &[&format!("vde://{dir}")]);
    pair_talks(&mut a, &mut b, 25, &d, None);
}

#[test]
fn interop_classic_vde_plug_ptp_to_tap() {
    // vde_plug ptp://P tap://T in a host namespace of the test, vdens-fast on the other end.
    let d = TempDir::new("plugtap");
    let host = NetNs::new("plughost");
    let p = format!("ptp://{}", d.join("p").display());
    let sh = |s: &str| host.sh(s, 15);
    assert_eq!(sh("ip link set lo up && ip tuntap add t0 mode tap && ip addr add 10.26.0.254/24 dev t0 && ip link set t0 up").code, Some(0));
    let _plug = Daemon::start("vde_plug", {
        let mut c = host.cmd("vde_plug");
        c.args([&p, "tap://t0"]);
        c
    });
    assert!(wait_path(&d.join("p"), 10));
    let mut n = ns_node("fast", Impl::Fast, &d, &[&p]);
    n.up("vde0", "10.26.0.1/24", None);
    n.ping("10.26.0.254", 3, None);
    assert_eq!(sh("ping -n -q -c 3 -i 0.2 -w 10 10.26.0.1").code, Some(0));
}

#[test]
fn mtu_9000_across_ptp() {
    ptp_pair(Impl::Fast, Impl::Fast, 27, Some(9000));
}

#[test]
fn mtu_9000_across_vdeplug4_switch() {
    switch_pair(Impl::Fast, Impl::Fast, false, 28, Some(9000));
}

/// Classic against classic: proves the test scenarios themselves (a failure here is the
/// harness's, not vdens-fast's).
#[test]
fn harness_classic_baseline() {
    ptp_pair(Impl::Classic, Impl::Classic, 29, None);
    switch_pair(Impl::Classic, Impl::Classic, false, 30, None);
}
