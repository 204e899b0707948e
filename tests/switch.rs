//! switch:// and hub:// hosted in-process by vdens-fast: classic vdens, classic vde_plug and
//! vdens-fast clients join; ping and checked TCP transfers; a learning switch keeps unicast
//! away from a third port while a hub delivers it everywhere; 802.1Q frames cross the switch.
//! Every address lives inside namespaces these tests create.

mod common;
use common::*;
use std::process::Command;

fn rx_packets(n: &mut Node) -> u64 {
    // /proc/net/dev is per network namespace (sysfs here shows the host's).
    n.sh("awk '/vde0:/ {print $3}' /proc/net/dev", 5)
        .trim()
        .parse()
        .expect("rx_packets is a number")
}

/// Host (vdens-fast, the node's own tap), two clients that talk (classic vdens and vdens-fast)
/// and a third client (classic vdens) that watches. Returns what the watcher received while
/// 1 MiB crossed from one client to the other, after every address was learnt.
fn node_scenario(scheme: &str, net: u8) -> u64 {
    let d = TempDir::new(scheme);
    let dir = d.join("node");
    let node_vnl = format!("{scheme}://{}", dir.display());
    let vnl = format!("vde://{}", dir.display());
    let mut h = ns_node("host", Impl::Fast, &d, &[&node_vnl]);
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    let mut a = ns_node("classic", Impl::Classic, &d, &[&vnl]);
    let mut b = ns_node("fast", Impl::Fast, &d, &[&vnl]);
    let mut c = ns_node("watcher", Impl::Classic, &d, &[&vnl]);
    let ip = |i: u8| format!("10.{net}.0.{i}");
    h.up("vde0", &format!("{}/24", ip(1)), None);
    a.up("vde0", &format!("{}/24", ip(2)), None);
    b.up("vde0", &format!("{}/24", ip(3)), None);
    c.up("vde0", &format!("{}/24", ip(4)), None);
    a.ping(&ip(1), 2, None);
    b.ping(&ip(1), 2, None);
    c.ping(&ip(1), 2, None);
    a.ping(&ip(3), 3, None);
    b.ping(&ip(2), 3, None);
    h.ping(&ip(2), 2, None);
    tcp_transfer(&mut h, &mut a, &ip(2), &d, 1 << 20);
    // Everyone has been seen as a source now: the switch knows every port.
    tcp_transfer(&mut a, &mut b, &ip(3), &d, 256 << 10);
    let before = rx_packets(&mut c);
    tcp_transfer(&mut a, &mut b, &ip(3), &d, 1 << 20);
    let after = rx_packets(&mut c);
    // A classic vde_plug client: a cable from the node to a ptp link, where a namespace sits.
    let p = format!("ptp://{}", d.join("p").display());
    let mut e = ns_node("behind-vde_plug", Impl::Classic, &d, &[&p]);
    let _plug = Daemon::start("vde_plug", {
        let mut cmd = Command::new("vde_plug");
        cmd.args([&vnl, &p]);
        cmd
    });
    e.up("vde0", &format!("{}/24", ip(5)), None);
    e.ping(&ip(1), 3, None);
    e.ping(&ip(3), 3, None);
    tcp_transfer(&mut e, &mut h, &ip(1), &d, 1 << 20);
    after - before
}

#[test]
fn switch_learns_and_isolates_unicast() {
    let seen = node_scenario("switch", 61);
    eprintln!("switch: the watcher received {seen} frames");
    // ~700 frames crossed (data and acks); only stray broadcasts (ARP) may reach the watcher.
    assert!(
        seen < 30,
        "the watcher received {seen} frames of unicast between two others"
    );
}

#[test]
fn hub_delivers_to_every_port() {
    let seen = node_scenario("hub", 62);
    eprintln!("hub: the watcher received {seen} frames");
    assert!(
        seen > 500,
        "the watcher received only {seen} frames through a hub"
    );
}

/// Sends or receives raw 802.1Q frames on vde0 through an AF_PACKET socket (this kernel has no
/// vlan device type to build sub-interfaces with).
const RAW_PY: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("vde0", 0))
mac = s.getsockname()[4]
if sys.argv[1] == "send":
    dst = bytes.fromhex(sys.argv[2].replace(":", ""))
    vlan = int(sys.argv[3])
    for i in range(5):
        f = dst + mac + struct.pack("!HHH", 0x8100, vlan, 0x88b5) + sys.argv[4].encode() + bytes(40)
        s.send(f)
        time.sleep(0.05)
else:
    s.settimeout(5)
    end = time.time() + 5
    while time.time() < end:
        try:
            d = s.recv(9300)
        except socket.timeout:
            break
        if sys.argv[2].encode() in d:
            print("got", sys.argv[2])
            sys.exit(0)
    sys.exit(1)
"#;

#[test]
fn vlan_tagged_frames_cross_the_switch() {
    let d = TempDir::new("swvlan");
    let dir = d.join("node");
    let node_vnl = format!("switch://{}", dir.display());
    let vnl = format!("vde://{}", dir.display());
    let py = d.join("raw.py");
    std::fs::write(&py, RAW_PY).unwrap();
    let _h = ns_node("host", Impl::Fast, &d, &[&node_vnl]);
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    let mut a = ns_node("classic", Impl::Classic, &d, &[&vnl]);
    let mut b = ns_node("fast", Impl::Fast, &d, &[&vnl]);
    let mac = |n: &mut Node| {
        n.sh(
            "ip link set vde0 up && ip -o link show vde0 | sed 's/.*link.ether \\([0-9a-f:]*\\).*/\\1/'",
            5,
        )
        .trim()
        .to_string()
    };
    let (ma, mb) = (mac(&mut a), mac(&mut b));
    let py = py.display();
    // Tagged broadcast from b (the switch learns b's MAC on VLAN 10), heard by a.
    a.sh(
        &format!("python3 {py} recv hello-vlan-10 > {py}.a & sleep 0.5; true"),
        5,
    );
    b.sh(
        &format!("python3 {py} send ff:ff:ff:ff:ff:ff 10 hello-vlan-10"),
        10,
    );
    a.sh(
        &format!("for i in $(seq 100); do grep -q got {py}.a && exit 0; sleep 0.1; done; exit 1"),
        10,
    );
    // Tagged unicast from a to b on VLAN 10.
    b.sh(
        &format!("python3 {py} recv unicast-vlan-10 > {py}.b & sleep 0.5; true"),
        5,
    );
    a.sh(&format!("python3 {py} send {mb} 10 unicast-vlan-10"), 10);
    b.sh(
        &format!("for i in $(seq 100); do grep -q got {py}.b && exit 0; sleep 0.1; done; exit 1"),
        10,
    );
    // And back, on VLAN 20 (learnt separately: flooded first, delivered all the same).
    a.sh(
        &format!("python3 {py} recv back-vlan-20 > {py}.c & sleep 0.5; true"),
        5,
    );
    b.sh(&format!("python3 {py} send {ma} 20 back-vlan-20"), 10);
    a.sh(
        &format!("for i in $(seq 100); do grep -q got {py}.c && exit 0; sleep 0.1; done; exit 1"),
        10,
    );
}

#[test]
fn directory_removed_when_the_host_exits() {
    let d = TempDir::new("swgone");
    let dir = d.join("node");
    let node_vnl = format!("switch://{}[mode=660]", dir.display());
    let h = ns_node("host", Impl::Fast, &d, &[&node_vnl]);
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(dir.join("ctl")).unwrap().permissions().mode() & 0o777;
    assert_eq!(m, 0o660, "mode= applies to the control socket");
    let dm = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(dm, 0o2770, "the directory's mode follows mode= as in libvdeplug");
    let mut a = ns_node(
        "client",
        Impl::Classic,
        &d,
        &[&format!("vde://{}", dir.display())],
    );
    a.sh("ip link set vde0 up", 5);
    // (The data socket's mode is not checked: a classic client chmods it to its own mode
    // once connected, as libvdeplug_vde.c does.)
    h.finish(10);
    assert!(!dir.exists(), "{} left behind", dir.display());
    drop(a);
}

#[test]
fn clone_mode_hosts_the_switch_in_the_child() {
    // vdens -c: the parent hands the node to its child and must not remove the directory.
    let d = TempDir::new("swclone");
    let dir = d.join("node");
    let node_vnl = format!("switch://{}", dir.display());
    let mut h = Node::start(
        "host-c",
        vdens_fast(Who::Root, &d, &["-c", &node_vnl, "sh", "-s"]),
    );
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    let mut a = ns_node(
        "client",
        Impl::Classic,
        &d,
        &[&format!("vde://{}", dir.display())],
    );
    h.up("vde0", "10.64.0.1/24", None);
    a.up("vde0", "10.64.0.2/24", None);
    a.ping("10.64.0.1", 3, None);
    drop(a);
    h.finish(10);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// A client that joins `dir` and never reads its data socket.
struct Stalled {
    _ctl: std::os::unix::net::UnixStream,
    _data: std::os::unix::net::UnixDatagram,
}

fn stalled_client(dir: &std::path::Path, tmp: &TempDir) -> Stalled {
    use std::io::{Read, Write};
    use vdens_fast::wire::vde_ctl::{decode_sockaddr, Request, RequestType, UnixAddr};
    let mut ctl = std::os::unix::net::UnixStream::connect(dir.join("ctl")).unwrap();
    ctl.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mine = tmp.join("stalled.sock");
    let data = std::os::unix::net::UnixDatagram::bind(&mine).unwrap();
    let req = Request {
        kind: RequestType::NewControl,
        sock_path: mine.to_str().unwrap().as_bytes().to_vec(),
        description: b"stalled-client".to_vec(),
        superframes: false,
    };
    ctl.write_all(&req.encode().unwrap()).unwrap();
    let mut ans = [0u8; 110];
    let n = ctl.read(&mut ans).unwrap();
    let UnixAddr::Path(p) = decode_sockaddr(&ans[..n]).unwrap() else {
        panic!("abstract answer")
    };
    data.connect(std::str::from_utf8(&p).unwrap()).unwrap();
    let _ = std::fs::remove_file(&mine);
    Stalled {
        _ctl: ctl,
        _data: data,
    }
}

#[test]
fn a_stalled_client_does_not_stall_the_hub() {
    // Every frame is flooded to a client that never reads: its queue fills, its frames are
    // dropped and counted, and the others go on at full speed.
    let d = TempDir::new("hubstall");
    let dir = d.join("node");
    let stats = d.join("stats.json");
    let node_vnl = format!("hub://{}", dir.display());
    let vnl = format!("vde://{}", dir.display());
    let mut h = Node::start(
        "host",
        vdens_fast(
            Who::Root,
            &d,
            &["--stats", stats.to_str().unwrap(), &node_vnl, "sh", "-s"],
        ),
    );
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    let stalled = stalled_client(&dir, &d);
    let mut a = ns_node("classic", Impl::Classic, &d, &[&vnl]);
    h.up("vde0", "10.65.0.1/24", None);
    a.up("vde0", "10.65.0.2/24", None);
    a.ping("10.65.0.1", 3, None);
    tcp_transfer(&mut a, &mut h, "10.65.0.1", &d, 4 << 20);
    tcp_transfer(&mut h, &mut a, "10.65.0.2", &d, 4 << 20);
    drop(a);
    h.finish(10);
    drop(stalled);
    let json = std::fs::read_to_string(&stats).unwrap();
    let at = json
        .find("\"vnl\":\"stalled-client\"")
        .unwrap_or_else(|| panic!("no stalled client in {json}"));
    let out = &json[at..];
    let out = &out[out.find("\"link_to_tap\"").unwrap()..];
    let field = |name: &str| -> u64 {
        let i = out.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
        out[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(field("received") > 1000, "{out}");
    assert!(field("drop_no_buffer") > 500, "drops not counted: {out}");
}
