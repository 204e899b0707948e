//! vxlan:// and vxvde:// against real peers: a Linux kernel vxlan device, Debian's classic
//! vdens (libvdeplug_vxlan / libvdeplug_vxvde 4.0.1) and vde_plug, and vdens-fast itself.
//!
//! Every UDP socket and multicast membership lives in two `ip netns` namespaces each test
//! creates ("lan" A and B, joined by a veth pair with addresses, links up and a multicast
//! route): vdens-fast, vdens and vde_plug are started inside them with `ip netns exec`, so
//! nothing joins a group or sends a datagram in the host's namespace. Namespaces, processes and
//! files are removed by guards even when a test fails.

mod common;
use common::*;
use std::time::Duration;

/// Two namespaces joined by a veth pair: `a` has 192.168.{net}.1 on `vx0`, `b` has .2 on
/// `vx1`; both route multicast (224.0.0.0/4) through the veth and have IPv6 addresses
/// fd{net}::1 / ::2 (no duplicate detection, so they are usable at once).
struct Lan {
    a: NetNs,
    b: NetNs,
    net: u8,
}

impl Lan {
    fn new(tag: &str, net: u8) -> Lan {
        let a = NetNs::new(&format!("{tag}a"));
        let b = NetNs::new(&format!("{tag}b"));
        // Created from inside `a`, its peer moved straight into `b`: the host's namespace never
        // holds either end.
        let o = a.sh(
            &format!("ip link add vx0 type veth peer name vx1 netns {}", b.0),
            10,
        );
        assert_eq!(o.code, Some(0), "veth: {o:#?}");
        for (ns, dev, host) in [(&a, "vx0", 1), (&b, "vx1", 2)] {
            let o = ns.sh(
                &format!(
                    "ip link set lo up && ip link set {dev} up && \
                     ip addr add 192.168.{net}.{host}/24 dev {dev} && \
                     ip -6 addr add fd{net}::{host}/64 dev {dev} nodad && \
                     ip route add 224.0.0.0/4 dev {dev}"
                ),
                10,
            );
            assert_eq!(o.code, Some(0), "{}: {o:#?}", ns.0);
        }
        Lan { a, b, net }
    }

    fn ip(&self, host: u8) -> String {
        format!("192.168.{}.{host}", self.net)
    }
}

/// Makes the kernel in a namespace finish the inner checksums of what its vxlan device `vxk`
/// sends, as a physical NIC would. Over veth, locally generated packets cross into the other
/// namespace with their checksum still "partial" (offloaded, never computed); a userspace
/// endpoint receives the encapsulated frame as bytes, so the inner TCP checksum it hands to
/// its tap is wrong and TCP drops the segment (ICMP is unaffected; classic vdens fails the
/// same way). Single-segment packets (no GSO) whose checksum the CHECKSUM target fills in
/// leave the device complete.
const COMPLETE_CHECKSUMS: &str = "ip link set vxk gso_max_segs 1 && \
     iptables -t mangle -A POSTROUTING -o vxk -j CHECKSUM --checksum-fill";

/// A shell running directly in `ns` (no vdens), driven like the other nodes.
fn ns_shell(ns: &NetNs, name: &str) -> Node {
    let mut c = ns.cmd("sh");
    c.arg("-s");
    Node::start(name, c)
}

/// Pings `addr` from `n`, expecting `count` replies.
fn ping(n: &mut Node, addr: &str, count: u32) {
    n.ping(addr, count, None);
}

/// Pings `addr` from `n` for about `secs` seconds, expecting no reply.
fn no_reply(n: &mut Node, addr: &str, secs: u32) {
    let (code, out) = n.try_sh(
        &format!("ping -n -q -c 3 -i 0.3 -w {secs} {addr}"),
        secs as u64 + 10,
    );
    assert_eq!(
        code,
        Some(1),
        "{}: {addr} answered (or ping failed oddly):\n{out}",
        n.name
    );
}

/// The MAC address of `dev` as the node sees it (its /sys belongs to the `ip netns`).
fn mac(n: &mut Node, dev: &str) -> String {
    n.sh(
        &format!("ip link show {dev} | awk '/link\\/ether/ {{print $2}}'"),
        5,
    )
    .trim()
    .to_string()
}

/// A node alone on its network receives nothing on vde0 while it sends broadcasts: its own
/// multicast, looped back by the kernel, is not delivered to it.
fn no_echo(n: &mut Node, bcast: &str) {
    let out = n.sh(
        &format!(
            "ping -n -q -b -c 4 -i 0.2 -w 2 {bcast} >/dev/null 2>&1; sleep 0.5; \
             ip -s link show vde0 | awk '/RX:/ {{ getline; print $2 }}'"
        ),
        15,
    );
    assert_eq!(out.trim(), "0", "{}: its own frames came back to vde0", n.name);
}

#[test]
fn kernel_vxlan_device_both_ways_then_unicast() {
    let d = TempDir::new("vxk");
    let lan = Lan::new("vxk", 81);
    let o = lan.b.sh(
        &format!(
            "ip link add vxk type vxlan id 1 group 239.0.0.1 dstport 4789 dev vx1 && \
             ip addr add 10.81.0.2/24 dev vxk && ip link set vxk up && {}",
            COMPLETE_CHECKSUMS
        ),
        10,
    );
    assert_eq!(o.code, Some(0), "kernel vxlan: {o:#?}");
    let mut fast = ns_node_in(&lan.a, "fast", Impl::Fast, &d, &[], &["vxlan://"]);
    let mut kernel = ns_shell(&lan.b, "kernel");
    fast.up("vde0", "10.81.0.1/24", None);
    ping(&mut fast, "10.81.0.2", 3);
    ping(&mut kernel, "10.81.0.1", 3);
    // The kernel has learnt where our MAC is: from now on it answers by unicast to A's
    // address (from a source port of its own choosing), which must keep working.
    let ours = mac(&mut fast, "vde0");
    let fdb = kernel.sh("bridge fdb show dev vxk", 5);
    assert!(
        fdb.lines()
            .any(|l| l.starts_with(&ours) && l.contains(&format!("dst {}", lan.ip(1)))),
        "kernel fdb has no unicast entry for {ours}:\n{fdb}"
    );
    // Unicast VXLAN each way, seen on the veth: the kernel's to A, ours (to the remote we
    // learnt for the kernel's MAC) to B.
    let capture = |ns: &NetNs, dev: &str, src: String, dst: String, file: &std::path::Path| {
        Daemon::start("tcpdump", {
            let mut c = ns.cmd("sh");
            c.args([
                "-c",
                &format!(
                    "exec timeout 20 tcpdump -l -n -i {dev} 'udp and src {src} and dst {dst} and dst port 4789' > {}",
                    file.display()
                ),
            ]);
            c
        })
    };
    let (to_a, to_b) = (d.join("uni-a.txt"), d.join("uni-b.txt"));
    let _ta = capture(&lan.a, "vx0", lan.ip(2), lan.ip(1), &to_a);
    let _tb = capture(&lan.b, "vx1", lan.ip(1), lan.ip(2), &to_b);
    std::thread::sleep(Duration::from_millis(800));
    for _ in 0..3 {
        ping(&mut fast, "10.81.0.2", 3);
        ping(&mut kernel, "10.81.0.1", 3);
    }
    tcp_transfer(&mut fast, &mut kernel, "10.81.0.2", &d, 2 << 20);
    tcp_transfer(&mut kernel, &mut fast, "10.81.0.1", &d, 2 << 20);
    for (file, what) in [
        (&to_a, "from the kernel device to A"),
        (&to_b, "from vdens-fast to B"),
    ] {
        let seen = std::fs::read_to_string(file).unwrap_or_default();
        assert!(seen.lines().count() >= 6, "no unicast VXLAN {what}:\n{seen}");
    }
    let o = fast.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
}

#[test]
fn classic_vdens_vxlan_both_ways() {
    let d = TempDir::new("vxc");
    let lan = Lan::new("vxc", 82);
    let mut fast = ns_node_in(&lan.a, "fast", Impl::Fast, &d, &[], &["vxlan://239.0.0.1/vni=7"]);
    // The classic plugin receives with a zero sender-address length, learns garbage and then
    // fails every unicast with EDESTADDRREQ (classic against classic cannot even answer an
    // ARP request); with hashsize=0 it has no table and sends everything to the group.
    let mut classic = ns_node_in(
        &lan.b,
        "classic",
        Impl::Classic,
        &d,
        &[],
        &["vxlan://239.0.0.1/vni=7/hashsize=0"],
    );
    fast.up("vde0", "10.82.0.1/24", None);
    classic.up("vde0", "10.82.0.2/24", None);
    ping(&mut fast, "10.82.0.2", 3);
    ping(&mut classic, "10.82.0.1", 3);
    tcp_transfer(&mut fast, &mut classic, "10.82.0.2", &d, 2 << 20);
    tcp_transfer(&mut classic, &mut fast, "10.82.0.1", &d, 2 << 20);
    let o = fast.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
}

#[test]
fn fast_fast_vxlan_ipv6_default_group_on_named_interface() {
    let d = TempDir::new("vx6");
    let lan = Lan::new("vx6", 83);
    // No IPv6 multicast route is needed: /if= names the interface for the membership and
    // for sending.
    let mut a = ns_node_in(&lan.a, "a", Impl::Fast, &d, &[], &["vxlan:///v6/if=vx0/vni=300"]);
    let mut b = ns_node_in(&lan.b, "b", Impl::Fast, &d, &[], &["vxlan:///v6/if=vx1/vni=300"]);
    a.up("vde0", "10.83.0.1/24", None);
    b.up("vde0", "10.83.0.2/24", None);
    ping(&mut a, "10.83.0.2", 3);
    ping(&mut b, "10.83.0.1", 3);
    tcp_transfer(&mut a, &mut b, "10.83.0.2", &d, 1 << 20);
}

#[test]
fn unprivileged_user_joins_vxlan_and_vxvde() {
    // No privilege is needed for either overlay: the UDP ports are above 1023 and joining a
    // group is allowed to anyone.
    let d = TempDir::new("vxn");
    let lan = Lan::new("vxn", 92);
    let nobody = |vnl: &str, name: &str| {
        let mut c = lan.a.cmd("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"])
            .arg(binary())
            .args([vnl, "sh", "-s"]);
        clean_env(&mut c, &d);
        Node::start(name, c)
    };
    let mut a1 = nobody("vxlan:///vni=9", "nobody-vxlan");
    let mut a2 = nobody("vxvde:///vni=9", "nobody-vxvde");
    let mut b1 = ns_node_in(&lan.b, "b-vxlan", Impl::Fast, &d, &[], &["vxlan:///vni=9"]);
    let mut b2 = ns_node_in(&lan.b, "b-vxvde", Impl::Classic, &d, &[], &["vxvde:///vni=9"]);
    a1.up("vde0", "10.92.1.1/24", None);
    a2.up("vde0", "10.92.2.1/24", None);
    b1.up("vde0", "10.92.1.2/24", None);
    b2.up("vde0", "10.92.2.2/24", None);
    ping(&mut a1, "10.92.1.2", 3);
    ping(&mut b1, "10.92.1.1", 3);
    ping(&mut a2, "10.92.2.2", 3);
    ping(&mut b2, "10.92.2.1", 3);
}

#[test]
fn vni_isolation() {
    let d = TempDir::new("vxi");
    let lan = Lan::new("vxi", 84);
    // Two kernel devices on B, one per VNI, on separate subnets; vdens-fast (VNI 1) has an
    // address in each.
    let o = lan.b.sh(
        "ip link add vn1 type vxlan id 1 group 239.0.0.1 dstport 4789 dev vx1 && \
         ip link add vn2 type vxlan id 2 group 239.0.0.1 dstport 4789 dev vx1 && \
         ip addr add 10.84.1.2/24 dev vn1 && ip addr add 10.84.2.2/24 dev vn2 && \
         ip link set vn1 up && ip link set vn2 up",
        10,
    );
    assert_eq!(o.code, Some(0), "kernel vxlan: {o:#?}");
    let stats = d.join("stats.json");
    let st = stats.display().to_string();
    let mut fast = ns_node_in(
        &lan.a,
        "fast",
        Impl::Fast,
        &d,
        &["--stats", &st, "--stats-interval", "100"],
        &["vxlan://"],
    );
    let mut kernel = ns_shell(&lan.b, "kernel");
    fast.up("vde0", "10.84.1.1/24", None);
    fast.sh("ip addr add 10.84.2.1/24 dev vde0", 5);
    // The same VNI works...
    ping(&mut fast, "10.84.1.2", 2);
    ping(&mut kernel, "10.84.1.1", 2);
    // ...the other one sees nothing, either way.
    no_reply(&mut fast, "10.84.2.2", 3);
    no_reply(&mut kernel, "10.84.2.1", 3);
    // VNI 2's datagrams reached vdens-fast and were dropped, counted as framing drops of the
    // network side.
    std::thread::sleep(Duration::from_millis(300));
    let json = std::fs::read_to_string(&stats).unwrap_or_default();
    let net = json
        .split("{\"name\":\"vxlan\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no vxlan endpoint in the stats: {json}"));
    let framing: u64 = net
        .split("\"drop_framing\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(framing > 0, "no datagram of VNI 2 counted as dropped: {json}");
}

#[test]
fn vxvde_with_classic_vde_plug_and_vdens_on_ptp() {
    let d = TempDir::new("vvp");
    let lan = Lan::new("vvp", 85);
    let p = format!("ptp://{}", d.join("p").display());
    let _plug = Daemon::start("vde_plug", {
        let mut c = lan.b.cmd("vde_plug");
        c.args(["vxvde:///vni=12", &p]);
        c
    });
    assert!(
        wait_path(&d.join("p"), 10),
        "vde_plug did not create the ptp socket"
    );
    let mut classic = ns_node("classic", Impl::Classic, &d, &[&p]);
    let mut fast = ns_node_in(&lan.a, "fast", Impl::Fast, &d, &[], &["vxvde:///vni=12"]);
    fast.up("vde0", "10.85.0.1/24", None);
    classic.up("vde0", "10.85.0.2/24", None);
    ping(&mut fast, "10.85.0.2", 3);
    ping(&mut classic, "10.85.0.1", 3);
    tcp_transfer(&mut fast, &mut classic, "10.85.0.2", &d, 2 << 20);
    tcp_transfer(&mut classic, &mut fast, "10.85.0.1", &d, 2 << 20);
    let o = fast.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
}

#[test]
fn vxvde_with_classic_vdens_grp_option() {
    let d = TempDir::new("vvg");
    let lan = Lan::new("vvg", 86);
    // grp=300: VNI 300 and group 239.0.1.44 on both sides.
    let vnl = "vxvde://239.0.0.1/grp=300";
    // bind=: our unicast socket on A's veth address.
    let ours = format!("{vnl}/bind={}", lan.ip(1));
    let mut fast = ns_node_in(&lan.a, "fast", Impl::Fast, &d, &[], &[&ours]);
    let mut classic = ns_node_in(&lan.b, "classic", Impl::Classic, &d, &[], &[vnl]);
    fast.up("vde0", "10.86.0.1/24", None);
    classic.up("vde0", "10.86.0.2/24", None);
    ping(&mut fast, "10.86.0.2", 3);
    ping(&mut classic, "10.86.0.1", 3);
    tcp_transfer(&mut classic, &mut fast, "10.86.0.1", &d, 1 << 20);
    let groups = lan.a.sh("ip maddr show dev vx0", 5);
    assert!(groups.stdout.contains("239.0.1.44"), "{groups:#?}");
}

#[test]
fn vxvde_endpoints_sharing_a_namespace_hear_each_other_not_themselves() {
    let d = TempDir::new("vvs");
    let lan = Lan::new("vvs", 87);
    let mut fast = ns_node_in(&lan.a, "fast", Impl::Fast, &d, &[], &["vxvde://"]);
    fast.up("vde0", "10.87.0.1/24", None);
    // Multicast loop is on (the others on this host must hear us): our own broadcasts come
    // back to our group socket and must not reach our tap.
    no_echo(&mut fast, "10.87.0.255");
    let mut classic = ns_node_in(&lan.a, "classic", Impl::Classic, &d, &[], &["vxvde://"]);
    let mut other = ns_node_in(&lan.a, "fast2", Impl::Fast, &d, &[], &["vxvde://"]);
    classic.up("vde0", "10.87.0.2/24", None);
    other.up("vde0", "10.87.0.3/24", None);
    ping(&mut fast, "10.87.0.2", 3);
    ping(&mut classic, "10.87.0.1", 3);
    ping(&mut fast, "10.87.0.3", 3);
    ping(&mut other, "10.87.0.1", 3);
    tcp_transfer(&mut fast, &mut other, "10.87.0.3", &d, 1 << 20);
}

#[test]
fn vxvde_ipv6_no_echo_then_classic_peer() {
    let d = TempDir::new("vv6");
    let lan = Lan::new("vv6", 90);
    let mut fast = ns_node_in(&lan.a, "fast", Impl::Fast, &d, &[], &["vxvde:///v6/if=vx0"]);
    fast.up("vde0", "10.90.0.1/24", None);
    // IPv6 has no IP_PKTINFO answer for this: the addresses of A, read when the link was
    // opened, recognise our own looped-back multicast.
    no_echo(&mut fast, "10.90.0.255");
    let mut classic = ns_node_in(&lan.b, "classic", Impl::Classic, &d, &[], &["vxvde:///v6/if=vx1"]);
    classic.up("vde0", "10.90.0.2/24", None);
    ping(&mut fast, "10.90.0.2", 3);
    ping(&mut classic, "10.90.0.1", 3);
}

#[test]
fn vxvde_says_goodbye_on_exit() {
    // libvdeplug_vxvde's close: our header and no frame, to the group, so the peers forget
    // the stations learnt behind us.
    let d = TempDir::new("vvb");
    let lan = Lan::new("vvb", 91);
    let cap = d.join("bye.txt");
    let _tcpdump = Daemon::start("tcpdump", {
        let mut c = lan.a.cmd("sh");
        c.args([
            "-c",
            &format!(
                "exec timeout 20 tcpdump -l -n -x -i vx0 'udp and dst 239.0.0.1 and dst port 14789 and udp[4:2] = 16' > {}",
                cap.display()
            ),
        ]);
        c
    });
    std::thread::sleep(Duration::from_millis(800));
    let mut fast = ns_node_in(&lan.a, "fast", Impl::Fast, &d, &[], &["vxvde:///vni=77"]);
    fast.up("vde0", "10.91.0.1/24", None);
    let o = fast.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
    // The hex dump's bytes, joined: the datagram ends with our header, flags 0x08 and
    // VNI 77 (0x4d), and nothing after it.
    let hex = |text: &str| -> String {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("0x").and_then(|r| r.split_once(':')))
            .flat_map(|(_, b)| b.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    let mut seen = String::new();
    for _ in 0..50 {
        seen = std::fs::read_to_string(&cap).unwrap_or_default();
        if hex(&seen).ends_with("0800000000004d00") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        hex(&seen).ends_with("0800000000004d00"),
        "no farewell datagram seen:\n{seen}"
    );
}

#[test]
fn vdeplug_fast_cable_vxvde_to_ptp() {
    let d = TempDir::new("vvc");
    let lan = Lan::new("vvc", 88);
    let p = format!("ptp://{}", d.join("p").display());
    let _plug = Daemon::start("vdeplug-fast", {
        let mut c = lan.b.cmd(env!("CARGO_BIN_EXE_vdeplug-fast"));
        c.args(["vxvde://", &p]);
        c
    });
    assert!(
        wait_path(&d.join("p"), 10),
        "vdeplug-fast did not create the ptp socket"
    );
    let mut on_ptp = ns_node("on-ptp", Impl::Classic, &d, &[&p]);
    let mut classic = ns_node_in(&lan.a, "classic", Impl::Classic, &d, &[], &["vxvde://"]);
    on_ptp.up("vde0", "10.88.0.1/24", None);
    classic.up("vde0", "10.88.0.2/24", None);
    ping(&mut on_ptp, "10.88.0.2", 3);
    ping(&mut classic, "10.88.0.1", 3);
    tcp_transfer(&mut classic, &mut on_ptp, "10.88.0.1", &d, 1 << 20);
}

#[test]
fn vdeplug_fast_switch_joined_to_vxvde() {
    // vde_plug's `vxvde:// switch://DIR`: the overlay is one port of the hosted switch.
    let d = TempDir::new("vvw");
    let lan = Lan::new("vvw", 89);
    let dir = d.join("sw");
    let sw = format!("switch://{}", dir.display());
    let _plug = Daemon::start("vdeplug-fast", {
        let mut c = lan.b.cmd(env!("CARGO_BIN_EXE_vdeplug-fast"));
        c.args(["vxvde:///vni=5", &sw]);
        c
    });
    assert!(wait_path(&dir.join("ctl"), 10), "the switch did not appear");
    let vde = format!("vde://{}", dir.display());
    let mut c1 = ns_node("on-switch-classic", Impl::Classic, &d, &[&vde]);
    let mut c2 = ns_node("on-switch-fast", Impl::Fast, &d, &[&vde]);
    let mut far = ns_node_in(&lan.a, "far", Impl::Classic, &d, &[], &["vxvde:///vni=5"]);
    c1.up("vde0", "10.89.0.1/24", None);
    c2.up("vde0", "10.89.0.2/24", None);
    far.up("vde0", "10.89.0.3/24", None);
    ping(&mut c1, "10.89.0.3", 3);
    ping(&mut c2, "10.89.0.3", 3);
    ping(&mut far, "10.89.0.1", 3);
    ping(&mut far, "10.89.0.2", 3);
    ping(&mut c1, "10.89.0.2", 3);
    tcp_transfer(&mut far, &mut c2, "10.89.0.2", &d, 1 << 20);
}

/// Runs vdens-fast `args` inside a fresh, empty namespace of the test; expects exit 1 and a
/// one-line error, which it returns.
fn fails(args: &[&str]) -> String {
    let ns = NetNs::new("vxerr");
    let mut c = ns.cmd(binary().to_str().unwrap());
    c.args(args);
    let o = run(c, 20);
    assert_eq!(o.code, Some(1), "{args:?}: {o:#?}");
    let e = o.stderr.trim_end().to_string();
    assert_eq!(e.lines().count(), 1, "{args:?}: not one line: {e}");
    assert!(!e.contains("os error"), "{e}");
    e
}

#[test]
fn bad_vnls_give_one_line_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "vxlan://10.1.2.3",
            "vxlan:// group '10.1.2.3' is not a multicast address (groups are in 224.0.0.0/4 or ff00::/8",
        ),
        (
            "vxlan://239.0.0.300",
            "vxlan:// group '239.0.0.300' is not an IPv4 address",
        ),
        (
            "vxvde://ff05::zz",
            "vxvde:// group 'ff05::zz' is not an IPv6 address",
        ),
        (
            "vxlan:///vni=16777216",
            "vxlan:// vni '16777216' is out of range (VNIs are 24-bit numbers: 0 to 16777215)",
        ),
        ("vxlan:///vni=x", "vxlan:// vni 'x' is not a decimal number"),
        ("vxvde:///vni=99999999", "vxvde:// vni '99999999' is out of range"),
        (
            "vxlan:///port=0",
            "vxlan:// port '0' is out of range (ports are decimal numbers from 1 to 65535)",
        ),
        ("vxvde:///port=65536", "vxvde:// port '65536' is out of range"),
        (
            "vxlan:///port=vxlan",
            "vxlan:// port 'vxlan' is not a decimal number",
        ),
        ("vxlan:///ttl=256", "vxlan:// ttl '256' is out of range"),
        (
            "vxlan://239.0.0.1/v6",
            "vxlan:// group '239.0.0.1' is IPv4, but /v6 asks for IPv6",
        ),
        ("vxlan:///colour=red", "unknown parameter 'colour' for vxlan://"),
        (
            "vxvde:///vni=no-such-group-vdf",
            "vxvde:// vni 'no-such-group-vdf' is neither a number nor a group of this system",
        ),
        (
            "vxlan://no-such-host.invalid",
            "vxlan://no-such-host.invalid: resolving the group: cannot resolve 'no-such-host.invalid'",
        ),
        (
            "vxlan:///if=nosuchif0",
            "finding the interface: No such device (no interface 'nosuchif0' in this network namespace",
        ),
        // An empty namespace has no route for the group.
        (
            "vxlan://",
            "vxlan://: joining the multicast group: No such device (no route for 239.0.0.1",
        ),
    ];
    for (vnl, want) in cases {
        let e = fails(&[vnl, "true"]);
        assert!(e.contains(want), "{vnl}: {e}");
        assert!(e.starts_with("vdens-fast: "), "{vnl}: {e}");
    }
}

#[test]
fn port_in_use_is_named() {
    let ns = NetNs::new("vxuse");
    assert_eq!(
        ns.sh("ip link set lo up && ip route add 224.0.0.0/4 dev lo", 10)
            .code,
        Some(0)
    );
    let mut c = ns.cmd("sh");
    c.args([
        "-c",
        &format!(
            "timeout 20 nc -u -l 4789 </dev/null >/dev/null 2>&1 & p=$!; \
             for i in $(seq 50); do ss -lun | grep -q ':4789 ' && break; sleep 0.1; done; \
             {} vxlan:// true; r=$?; kill $p; exit $r",
            binary().display()
        ),
    ]);
    let o = run(c, 30);
    assert_eq!(o.code, Some(1), "{o:#?}");
    let e = o.stderr.trim_end();
    assert!(
        e.contains("binding the UDP socket: Address already in use (UDP port 4789 is in use"),
        "{e}"
    );
}

/// vxlan:// and vxvde:// between two vdens-fast on the engine `extra` asks for (io_uring by
/// default): ping and a TCP transfer each way, checked byte for byte.
fn overlays_on(extra: &[&str], uring: bool, tag: &str, net: u8) {
    let d = TempDir::new(tag);
    let lan = Lan::new(tag, net);
    for (k, scheme) in ["vxlan", "vxvde"].into_iter().enumerate() {
        let vnl = format!("{scheme}:///vni={}", 40 + k);
        let mut a = ns_node_in(&lan.a, &format!("a-{scheme}"), Impl::Fast, &d, extra, &[&vnl]);
        let mut b = ns_node_in(&lan.b, &format!("b-{scheme}"), Impl::Fast, &d, extra, &[&vnl]);
        let (ia, ib) = (format!("10.{net}.{k}.1"), format!("10.{net}.{k}.2"));
        a.up("vde0", &format!("{ia}/24"), None);
        b.up("vde0", &format!("{ib}/24"), None);
        ping(&mut a, &ib, 3);
        ping(&mut b, &ia, 3);
        tcp_transfer(&mut a, &mut b, &ib, &d, 1 << 20);
        tcp_transfer(&mut b, &mut a, &ia, &d, 1 << 20);
        for n in [&a, &b] {
            assert_driver(n, uring, "overlay node");
        }
    }
}

#[test]
fn overlays_run_on_io_uring_by_default() {
    overlays_on(&[], true, "vxu", 93);
}

#[test]
fn overlays_run_on_epoll_with_engine_poll() {
    overlays_on(&["--engine", "poll"], false, "vxp", 94);
}
