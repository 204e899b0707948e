//! Super-frames through a vdeplug-fast cable between two switches (issue 13): the cable's
//! vde:// links offer their switches super-frames, so between two vdens-fast switches a TCP
//! super-frame crosses the cable whole, both ways (the switches' stats count it on the cable's
//! port); with a classic vde_switch on one side, the cable cuts for that side and nothing
//! tagged, nothing over a standard frame and no bad checksum reaches it (tcpdump -vv on the
//! tap of a classic vdens client there). TCP sha256-exact across, both ways.
//!
//! Everything runs inside namespaces these tests create, or on AF_UNIX sockets.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The description the cable's links give their switches.
const CABLE: &str = "sfcable";

/// A vdens-fast as root hosting `switch://DIR` (DIR = `d/name`), with `--stats` every 100 ms
/// and the options `extra`: the node, DIR and the stats file.
fn switch_host(d: &TempDir, name: &str, extra: &[&str]) -> (Node, PathBuf, PathBuf) {
    let dir = d.join(name);
    let stats = d.join(&format!("{name}.json"));
    let node_vnl = format!("switch://{}", dir.display());
    let mut args: Vec<&str> = vec!["--stats", stats.to_str().unwrap(), "--stats-interval", "100"];
    args.extend(extra);
    args.extend([node_vnl.as_str(), "sh", "-s"]);
    let h = Node::start(name, vdens_fast(Who::Root, d, &args));
    assert!(wait_path(&dir.join("ctl"), 10), "{name}: ctl did not appear");
    (h, dir, stats)
}

/// `vdeplug-fast -D sfcable vde://A vde://B` (on the driver `engine` names).
fn cable(a: &Path, b: &Path, engine: Option<&str>) -> Daemon {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"));
    if let Some(e) = engine {
        c.args(["--engine", e]);
    }
    c.args(["-D", CABLE])
        .arg(format!("vde://{}", a.display()))
        .arg(format!("vde://{}", b.display()));
    Daemon::start("vdeplug-fast cable", c)
}

/// The cable's port in a stats line (its "vnl" is the description, then the user's).
fn cable_port(json: &str) -> &str {
    let at = json
        .find(&format!("\"vnl\":\"{CABLE} "))
        .unwrap_or_else(|| panic!("no cable port in {json}"));
    let p = &json[at..];
    &p[..p.find("{\"name\"").unwrap_or(p.len())]
}

/// The counters of the cable's port in direction `dir`, in a stats line.
fn cable_dir<'a>(json: &'a str, dir: &str) -> &'a str {
    let p = cable_port(json);
    let p = &p[p.find(&format!("\"{dir}\"")).expect("the direction")..];
    &p[..p.find('}').unwrap_or(p.len())]
}

/// Waits until the stats file shows the cable's port.
fn cable_joined(stats: &Path) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let j = std::fs::read_to_string(stats).unwrap_or_default();
        if j.contains(&format!("\"vnl\":\"{CABLE} ")) {
            return j;
        }
        assert!(Instant::now() < end, "the cable did not join: {j}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fast_cable_between_fast_switches(engine: Option<&str>, tag: &str, net: u8) {
    let d = TempDir::new(tag);
    let extra: Vec<&str> = engine.map(|e| vec!["--engine", e]).unwrap_or_default();
    let (mut h1, sw1, st1) = switch_host(&d, "sw1", &extra);
    let (mut h2, sw2, st2) = switch_host(&d, "sw2", &extra);
    let _cable = cable(&sw1, &sw2, engine);
    for st in [&st1, &st2] {
        let j = cable_joined(st);
        assert!(
            cable_port(&j).contains("\"superframes\":\"negotiated\""),
            "the cable did not negotiate super-frames: {j}"
        );
    }
    let mut c1 = ns_node("c1", Impl::Fast, &d, &[&format!("vde://{}", sw1.display())]);
    let mut c2 = ns_node("c2", Impl::Fast, &d, &[&format!("vde://{}", sw2.display())]);
    let ip = |i: u8| format!("10.{net}.0.{i}");
    h1.up("vde0", &format!("{}/24", ip(1)), None);
    h2.up("vde0", &format!("{}/24", ip(2)), None);
    c1.up("vde0", &format!("{}/24", ip(3)), None);
    c2.up("vde0", &format!("{}/24", ip(4)), None);
    c1.ping(&ip(4), 2, None);
    h1.ping(&ip(2), 1, None);
    tcp_transfer(&mut c1, &mut c2, &ip(4), &d, 8 << 20);
    tcp_transfer(&mut c2, &mut c1, &ip(3), &d, 8 << 20);
    // The hosts' own taps, across the cable too.
    tcp_transfer(&mut h1, &mut h2, &ip(2), &d, 4 << 20);
    std::thread::sleep(Duration::from_millis(400));
    for st in [&st1, &st2] {
        let j = std::fs::read_to_string(st).expect("stats");
        for dir in ["tap_to_link", "link_to_tap"] {
            assert!(
                stat_sum(cable_dir(&j, dir), "wire_super") > 10,
                "no super-frame crossed the cable whole ({dir}): {j}"
            );
        }
        assert_eq!(
            stat_sum(&j, "drop_framing") + stat_sum(&j, "drop_oversize"),
            0,
            "{j}"
        );
    }
    drop(c1);
    drop(c2);
    for h in [h1, h2] {
        let o = h.finish(20);
        assert_eq!(o.code, Some(0), "host: {}", o.stderr);
    }
}

#[test]
fn a_cable_between_fast_switches_carries_super_frames_whole() {
    fast_cable_between_fast_switches(None, "sfcab", 147);
}

#[test]
fn a_cable_between_fast_switches_on_the_epoll_driver() {
    fast_cable_between_fast_switches(Some("poll"), "sfcabp", 148);
}

/// A vdens-fast switch with a vdens-fast client on one side of the cable, a classic
/// vde_switch with a classic vdens client on the other: the cable takes super-frames whole
/// from the first and cuts them for the second, whose tap sees nothing tagged, nothing over
/// its MTU and no bad checksum; TCP sha256-exact both ways.
#[test]
fn a_cable_to_a_classic_switch_cuts_for_it() {
    let d = TempDir::new("sfcabcl");
    let (mut h1, sw1, st1) = switch_host(&d, "sw1", &[]);
    let sw2 = d.join("sw2");
    let _vs = vde_switch(&sw2, false);
    let _cable = cable(&sw1, &sw2, None);
    let j = cable_joined(&st1);
    assert!(
        cable_port(&j).contains("\"superframes\":\"negotiated\""),
        "the cable did not negotiate with the vdens-fast switch: {j}"
    );
    let mut c1 = ns_node("c1", Impl::Fast, &d, &[&format!("vde://{}", sw1.display())]);
    let mut c2 = ns_node("c2", Impl::Classic, &d, &[&format!("vde://{}", sw2.display())]);
    h1.up("vde0", "10.149.0.1/24", None);
    c1.up("vde0", "10.149.0.3/24", None);
    c2.up("vde0", "10.149.0.4/24", None);
    c1.ping("10.149.0.4", 2, None);
    let cap = d.join("classic.txt");
    let t = capture(&mut c2, "vde0", &cap, "-Q in");
    tcp_transfer(&mut c1, &mut c2, "10.149.0.4", &d, 8 << 20);
    tcp_transfer(&mut h1, &mut c2, "10.149.0.4", &d, 4 << 20);
    tcp_transfer(&mut c2, &mut c1, "10.149.0.3", &d, 4 << 20);
    let text = captured(t, &cap);
    assert_standard_frames(&text, 1500, 1000);
    std::thread::sleep(Duration::from_millis(400));
    let j = std::fs::read_to_string(&st1).expect("stats");
    assert!(
        stat_sum(cable_dir(&j, "link_to_tap"), "wire_super") > 10,
        "the vdens-fast switch sent the cable no super-frame whole: {j}"
    );
    drop(c1);
    drop(c2);
    let o = h1.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}

/// Joins the switch at `dir` by hand as a client that offers nothing: its control connection
/// and its data socket, connected to its port.
fn join_plain(dir: &Path, me: &Path) -> (std::os::unix::net::UnixStream, std::os::unix::net::UnixDatagram) {
    use std::io::{Read, Write};
    use vdens_fast::wire::vde_ctl::{decode_sockaddr, Request, RequestType, UnixAddr};
    let mut ctl = std::os::unix::net::UnixStream::connect(dir.join("ctl")).expect("connect to ctl");
    ctl.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let data = std::os::unix::net::UnixDatagram::bind(me).unwrap();
    let req = Request {
        kind: RequestType::NewControl,
        sock_path: me.to_str().unwrap().as_bytes().to_vec(),
        description: b"forger".to_vec(),
        superframes: false,
    };
    ctl.write_all(&req.encode().unwrap()).unwrap();
    let mut ans = [0u8; 110];
    let n = ctl.read(&mut ans).expect("the switch's answer");
    let UnixAddr::Path(p) = decode_sockaddr(&ans[..n]).unwrap() else {
        panic!("abstract answer")
    };
    data.connect(std::str::from_utf8(&p).unwrap()).unwrap();
    (ctl, data)
}

/// A tagged TCPv4 super-frame of 3 segments (small enough for a classic switch to pass on
/// whole), flooded.
fn small_tagged_super() -> Vec<u8> {
    use vdens_fast::wire::superframe::TAG;
    use vdens_fast::wire::vnet::{self, VnetHdr};
    let payload = 3000;
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0x0f, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 150, 0, 9]);
    ip[16..20].copy_from_slice(&[10, 150, 0, 1]);
    ip[32] = 5 << 4;
    ip[33] = 0x18;
    let h = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1000,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    let mut d = TAG.to_vec();
    d.extend_from_slice(&h.to_bytes()[..vnet::LEN]);
    d.extend_from_slice(&f);
    d
}

/// A datagram that looks tagged, sent by a client of a classic vde_switch (which floods it:
/// its destination is a group address), is dropped by a cable whose other link negotiated
/// super-frames: it would be taken there as a super-frame whole. Plain frames from it still
/// cross.
#[test]
fn a_cable_drops_tagged_datagrams_from_a_link_that_did_not_negotiate() {
    let d = TempDir::new("sfcabforge");
    let (h1, sw1, st1) = switch_host(&d, "sw1", &[]);
    let sw2 = d.join("sw2");
    let _vs = vde_switch(&sw2, false);
    let _cable = cable(&sw1, &sw2, None);
    cable_joined(&st1);
    let (_ctl, data) = join_plain(&sw2, &d.join("forger.sock"));
    let mut plain = vec![0xffu8; 6];
    plain.extend_from_slice(&[2, 0, 0, 0, 0x0f, 1, 0x88, 0xb5]);
    plain.resize(60, 0);
    let received = || {
        stat_sum(
            cable_dir(&std::fs::read_to_string(&st1).unwrap_or_default(), "tap_to_link"),
            "received",
        )
    };
    let before = received();
    for _ in 0..5 {
        data.send(&small_tagged_super())
            .expect("send the tagged datagram");
    }
    data.send(&plain).expect("send the plain frame");
    let end = Instant::now() + Duration::from_secs(10);
    while received() < before + 1 {
        assert!(Instant::now() < end, "the plain frame did not cross the cable");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let j = std::fs::read_to_string(&st1).expect("stats");
    let from_cable = cable_dir(&j, "tap_to_link");
    assert_eq!(
        stat_sum(from_cable, "wire_super") + stat_sum(from_cable, "drop_framing"),
        0,
        "a tagged datagram from the classic side crossed the cable: {j}"
    );
    assert_eq!(stat_sum(from_cable, "received"), before + 1, "{j}");
    let o = h1.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}
