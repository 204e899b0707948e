//! Super-frames through a vdeplug-fast cable's datagram `ptp://` links (issue 13): the cable
//! (`vdeplug-fast ptp://A ptp://B`) negotiates with a vdens-fast end on each link as a
//! vdens-fast end does, in both roles. X is the first opener on A (the cable the second:
//! it asks, HELLO, and reads its R2 once X paired F2 with it); the cable is the first opener on
//! B (Y the second: the cable answers, OFFER, and pairs its F2 with Y's R2). TCP super-frames
//! then cross X -> cable -> Y and back whole (X's and Y's stats count them on both
//! directions: what the cable received whole from one went whole to the other), byte-exact,
//! IPv6, UDP, ICMP, MTU 9000, both engines. A classic vdens, or a vdens-fast with
//! `--no-offload`, on one link sees nothing tagged and nothing over its MTU on its tap, with
//! correct checksums (the cable cuts for it), also when it takes the place of a vdens-fast end
//! that had negotiated while the cable kept running. A ptp link and a `vde://` link to a vdens-fast
//! switch pass super-frames whole between them too.
//!
//! Everything runs inside namespaces these tests create, or on AF_UNIX sockets.

mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

/// wire_super of one direction of vde0 in a stats line.
fn wire_super(json: &str, dir: &str) -> u64 {
    let p = &json[json
        .find(&format!("\"{dir}\""))
        .unwrap_or_else(|| panic!("no {dir} in {json}"))..];
    let end = p.find('}').unwrap();
    stat_sum(&p[..end], "wire_super")
}

/// `vdeplug-fast ptp://A ptp://B` (on the driver `engine` names), started once it is the
/// first opener on B (B exists).
fn cable(d: &TempDir, engine: &str) -> Daemon {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"));
    c.args(["--engine", engine])
        .arg(format!("ptp://{}", d.join("a").display()))
        .arg(format!("ptp://{}", d.join("b").display()));
    let k = Daemon::start("vdeplug-fast cable", c);
    assert!(wait_path(&d.join("b"), 10), "the cable did not open B");
    k
}

fn vnl(d: &TempDir, end: &str) -> String {
    format!("ptp://{}", d.join(end).display())
}

/// Pings from `from` to `addr` until one comes back (a new end has another MAC address: the
/// neighbour entries are flushed first).
fn reach(from: &mut Node, addr: &str) {
    from.sh("ip neigh flush dev vde0", 5);
    let deadline = Instant::now() + Duration::from_secs(15);
    while from.try_sh(&format!("ping -c 1 -W 1 {addr}"), 5).0 != Some(0) {
        assert!(Instant::now() < deadline, "no ping to {addr}");
    }
}

/// X (vdens-fast, first opener on A), the cable, Y (vdens-fast, second opener on B):
/// negotiated on both links, super-frames whole both ways, traffic exact.
fn fast_cable(engine: &str, mtu: usize, net: &str) {
    let d = TempDir::new(&format!("sfcp{net}"));
    let e = ["--engine", engine];
    let (mut x, fx) = stats_end(&d, "x", true, &e, &vnl(&d, "a"));
    assert!(wait_path(&d.join("a"), 10), "X did not open A");
    let k = cable(&d, engine);
    let (mut y, fy) = stats_end(&d, "y", true, &e, &vnl(&d, "b"));
    wire_pair(&mut x, &mut y, net, mtu);
    pair_traffic(&mut x, &mut y, &d, net, mtu);
    tcp_transfer(&mut y, &mut x, &format!("fd{net}::1"), &d, 3 << 20);
    tcp_transfer(&mut x, &mut y, &format!("fd{net}::2"), &d, 3 << 20);
    let (jx, jy) = (fresh_stats(&mut x, &fx, "vde0"), fresh_stats(&mut y, &fy, "vde0"));
    // X paired its F2 with the cable's R2; Y was answered by the cable.
    assert_eq!(port_str(&jx, "vde0", "superframes"), "negotiated", "{jx}");
    assert_eq!(port_str(&jy, "vde0", "superframes"), "negotiated", "{jy}");
    for (j, who) in [(&jx, "X"), (&jy, "Y")] {
        // Sent whole to the cable, and received whole from it (what it took whole from the
        // other end).
        assert!(wire_super(j, "tap_to_link") > 0, "{who}: {j}");
        assert!(wire_super(j, "link_to_tap") > 0, "{who}: {j}");
        assert_eq!(
            stat_sum(j, "drop_framing") + stat_sum(j, "drop_oversize"),
            0,
            "{who}: {j}"
        );
    }
    y.finish(10);
    x.finish(10);
    drop(k);
    for f in ["a", "a+", "a+fast1", "a+fast2", "b", "b+", "b+fast1", "b+fast2"] {
        assert!(!d.join(f).exists(), "{f} left behind");
    }
}

#[test]
fn a_ptp_cable_between_fast_ends_negotiates_both_links() {
    fast_cable("uring", 1500, "61");
}

#[test]
fn a_ptp_cable_negotiates_on_the_epoll_driver() {
    fast_cable("poll", 1500, "62");
}

#[test]
fn a_ptp_cable_negotiates_at_mtu_9000() {
    fast_cable("uring", 9000, "63");
}

/// A classic vdens (first opener on A, or second opener on B), or a vdens-fast with
/// `--no-offload` on B, at one end; vdens-fast at the other: the cable cuts what the fast end
/// sends whole, and nothing tagged, nothing over the MTU, no bad checksum reaches the tap of
/// the end that did not negotiate. Traffic exact both ways.
#[test]
fn a_ptp_cable_cuts_for_an_end_that_did_not_negotiate() {
    // X classic; Y classic; Y with --no-offload.
    for (case, net) in [(0, "64"), (1, "65"), (2, "66")] {
        let d = TempDir::new(&format!("sfcpc{net}"));
        let (mut x, fx) = stats_end(&d, "x", case != 0, &[], &vnl(&d, "a"));
        assert!(wait_path(&d.join("a"), 10), "X did not open A");
        let k = cable(&d, "uring");
        let y_extra: &[&str] = if case == 2 { &["--no-offload"] } else { &[] };
        let (mut y, fy) = stats_end(&d, "y", case != 1, y_extra, &vnl(&d, "b"));
        wire_pair(&mut x, &mut y, net, 1500);
        {
            let (plain, fast, ffast, name, to) = if case == 0 {
                (&mut x, &mut y, &fy, "Y", format!("10.{net}.0.1"))
            } else {
                (&mut y, &mut x, &fx, "X", format!("10.{net}.0.2"))
            };
            let file = d.join("plain.txt");
            let cap = capture(plain, "vde0", &file, "-Q in");
            // The fast end sends TCP super-frames towards the plain one.
            tcp_transfer(fast, plain, &to, &d, 8 << 20);
            assert_standard_frames(&captured(cap, &file), 1500, 1000);
            let j = fresh_stats(fast, ffast, "vde0");
            // The fast end negotiated with the cable, and sent it super-frames whole.
            assert_eq!(port_str(&j, "vde0", "superframes"), "negotiated", "{name}: {j}");
            assert!(wire_super(&j, "tap_to_link") > 0, "{name}: {j}");
        }
        pair_traffic(&mut x, &mut y, &d, net, 1500);
        drop(x);
        drop(y);
        drop(k);
    }
}

/// The cable keeps running while the vdens-fast end of a link that had negotiated is
/// replaced by a classic vdens: Y killed (the cable had paired its F2 with Y's R2 and sent
/// its super-frames whole there) and a classic second opener started on B; then a vdens-fast
/// again there, which negotiates anew; then X ended (the cable's HELLO had been answered by X,
/// which it sent whole to) and a classic first opener started on A. Nothing tagged or over
/// the MTU reaches a classic tap while the vdens-fast end at the other side sends TCP to it
/// whole; traffic resumes, exact.
#[test]
fn a_ptp_cable_end_replaced_by_classic_vdens_gets_standard_frames() {
    let d = TempDir::new("sfcpr");
    let (mut x, fx) = stats_end(&d, "x", true, &[], &vnl(&d, "a"));
    assert!(wait_path(&d.join("a"), 10), "X did not open A");
    let _k = cable(&d, "uring");
    let (mut y, fy) = stats_end(&d, "y", true, &[], &vnl(&d, "b"));
    wire_pair(&mut x, &mut y, "67", 1500);
    tcp_transfer(&mut x, &mut y, "10.67.0.2", &d, 8 << 20);
    tcp_transfer(&mut y, &mut x, "10.67.0.1", &d, 8 << 20);
    let (jx, jy) = (fresh_stats(&mut x, &fx, "vde0"), fresh_stats(&mut y, &fy, "vde0"));
    assert!(
        wire_super(&jx, "link_to_tap") > 0,
        "the cable sent whole to X: {jx}"
    );
    assert!(
        wire_super(&jy, "link_to_tap") > 0,
        "the cable sent whole to Y: {jy}"
    );
    // Y killed; a classic vdens takes its place on B while X and the cable run.
    drop(y);
    let (mut y2, _) = stats_end(&d, "y2", false, &[], &vnl(&d, "b"));
    y2.up("vde0", "10.67.0.2/24", None);
    reach(&mut x, "10.67.0.2");
    let file = d.join("y2.txt");
    let cap = capture(&mut y2, "vde0", &file, "-Q in");
    tcp_transfer(&mut x, &mut y2, "10.67.0.2", &d, 8 << 20);
    tcp_transfer(&mut y2, &mut x, "10.67.0.1", &d, 2 << 20);
    assert_standard_frames(&captured(cap, &file), 1500, 1000);
    let jx2 = fresh_stats(&mut x, &fx, "vde0");
    assert!(
        wire_super(&jx2, "tap_to_link") > wire_super(&jx, "tap_to_link"),
        "X went on sending whole to the cable, which cut for Y2: {jx2}"
    );
    // A vdens-fast on B again: negotiated with the cable anew.
    y2.finish(10);
    let (mut y3, fy3) = stats_end(&d, "y3", true, &[], &vnl(&d, "b"));
    y3.up("vde0", "10.67.0.2/24", None);
    reach(&mut x, "10.67.0.2");
    tcp_transfer(&mut x, &mut y3, "10.67.0.2", &d, 8 << 20);
    tcp_transfer(&mut y3, &mut x, "10.67.0.1", &d, 8 << 20);
    let jy3 = fresh_stats(&mut y3, &fy3, "vde0");
    assert_eq!(port_str(&jy3, "vde0", "superframes"), "negotiated", "{jy3}");
    assert!(
        wire_super(&jy3, "link_to_tap") > 0,
        "the cable sent whole to Y3: {jy3}"
    );
    // X ended; a classic vdens takes its place on A (the cable connects to it), while Y3
    // sends whole to the cable.
    x.finish(10);
    let (mut x2, _) = stats_end(&d, "x2", false, &[], &vnl(&d, "a"));
    x2.up("vde0", "10.67.0.1/24", None);
    reach(&mut y3, "10.67.0.1");
    let file = d.join("x2.txt");
    let cap = capture(&mut x2, "vde0", &file, "-Q in");
    tcp_transfer(&mut y3, &mut x2, "10.67.0.1", &d, 8 << 20);
    tcp_transfer(&mut x2, &mut y3, "10.67.0.2", &d, 2 << 20);
    assert_standard_frames(&captured(cap, &file), 1500, 1000);
    let jy4 = fresh_stats(&mut y3, &fy3, "vde0");
    assert!(
        wire_super(&jy4, "tap_to_link") > wire_super(&jy3, "tap_to_link"),
        "Y3 went on sending whole to the cable, which cut for X2: {jy4}"
    );
    drop(x2);
    drop(y3);
}

/// A cable between a datagram ptp link and a vdens-fast switch (`vde://`): X (vdens-fast,
/// first opener on A) <-> `vdeplug-fast ptp://A vde://SW` <-> a vdens-fast client C of the
/// switch. Super-frames cross whole ptp -> vde and vde -> ptp (X's stats both ways, the
/// switch's on the cable's port); TCP exact both ways.
#[test]
fn a_cable_between_a_ptp_link_and_a_fast_switch_passes_super_frames_whole() {
    let d = TempDir::new("sfcpv");
    let (mut x, fx) = stats_end(&d, "x", true, &[], &vnl(&d, "a"));
    assert!(wait_path(&d.join("a"), 10), "X did not open A");
    let sw = d.join("sw");
    let fh = d.join("host.json");
    let node_vnl = format!("switch://{}", sw.display());
    let h = Node::start(
        "host",
        vdens_fast(
            Who::Root,
            &d,
            &[
                "--stats",
                fh.to_str().unwrap(),
                "--stats-interval",
                "100",
                &node_vnl,
                "sh",
                "-s",
            ],
        ),
    );
    assert!(wait_path(&sw.join("ctl"), 10), "the switch did not start");
    let mut c = Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"));
    c.args(["-D", "sfcable"])
        .arg(vnl(&d, "a"))
        .arg(format!("vde://{}", sw.display()));
    let _k = Daemon::start("vdeplug-fast cable", c);
    let (mut y, fy) = stats_end(&d, "c", true, &[], &format!("vde://{}", sw.display()));
    wire_pair(&mut x, &mut y, "68", 1500);
    tcp_transfer(&mut x, &mut y, "10.68.0.2", &d, 8 << 20);
    tcp_transfer(&mut y, &mut x, "10.68.0.1", &d, 8 << 20);
    let (jx, jy) = (fresh_stats(&mut x, &fx, "vde0"), fresh_stats(&mut y, &fy, "vde0"));
    assert_eq!(port_str(&jx, "vde0", "superframes"), "negotiated", "{jx}");
    assert_eq!(port_str(&jy, "vde0", "superframes"), "negotiated", "{jy}");
    for (j, who) in [(&jx, "X"), (&jy, "C")] {
        assert!(wire_super(j, "tap_to_link") > 0, "{who}: {j}");
        assert!(wire_super(j, "link_to_tap") > 0, "{who}: {j}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let jh = std::fs::read_to_string(&fh).expect("the switch's stats");
    let at = jh
        .find("\"vnl\":\"sfcable ")
        .unwrap_or_else(|| panic!("no cable port: {jh}"));
    let port = &jh[at..];
    let port = &port[..port.find("{\"name\"").unwrap_or(port.len())];
    assert!(port.contains("\"superframes\":\"negotiated\""), "{port}");
    assert!(stat_sum(port, "wire_super") > 0, "{port}");
    drop(y);
    drop(x);
    let o = h.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}
