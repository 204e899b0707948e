//! Super-frames on a seqpacket `ptp://` connection (issue 13): each vdens-fast end, its tap
//! opened with offload, says OFFER on every new connection, and sends its TCP super-frames
//! whole, tagged, once the other end said the same; a connection reaches one peer, so the
//! OFFER comes from the very end that receives them. Byte-exact TCP both ways, IPv6, UDP,
//! ICMP, both engines, MTU 9000; a reconnecting peer negotiates again. A peer that never
//! offers (vdeplug-fast's cable to a classic vde_switch, with a classic vdens behind it) gets
//! standard frames only: its tap never sees a tagged frame or one over its MTU.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// The node's entry for its attached peer (`VNL:peer`).
fn peer(vnl: &str) -> String {
    format!("{vnl}:peer")
}

/// wire_super of direction `dir` of entry `name`.
fn wire_super(json: &str, name: &str, dir: &str) -> u64 {
    let at = json
        .find(&format!("\"name\":\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    let p = &json[at..];
    let p = &p[p.find(&format!("\"{dir}\"")).unwrap()..];
    stat_sum(&p[..p.find('}').unwrap()], "wire_super")
}

/// A vdens-fast on `vnl` with --stats.
fn start(d: &TempDir, name: &str, engine: &str, vnl: &str) -> (Node, PathBuf) {
    let stats = d.join(&format!("{name}.json"));
    let args = [
        "--engine",
        engine,
        "--stats",
        stats.to_str().unwrap(),
        vnl,
        "sh",
        "-s",
    ];
    (Node::start(name, vdens_fast(Who::Root, d, &args)), stats)
}

/// Both ends' peer entries say negotiated and sent super-frames whole.
fn assert_negotiated(a: &mut Node, fa: &Path, va: &str, b: &mut Node, fb: &Path, vb: &str) {
    let (ja, jb) = (fresh_stats(a, fa, &peer(va)), fresh_stats(b, fb, &peer(vb)));
    assert_eq!(port_str(&ja, &peer(va), "superframes"), "negotiated", "{ja}");
    assert_eq!(port_str(&jb, &peer(vb), "superframes"), "negotiated", "{jb}");
    // A peer entry's tap_to_link is what went to the peer.
    assert!(wire_super(&ja, &peer(va), "tap_to_link") > 0, "{ja}");
    assert!(wire_super(&jb, &peer(vb), "tap_to_link") > 0, "{jb}");
}

fn fast_pair(engine: &str, mtu: usize, net: &str) {
    let d = TempDir::new(&format!("sfs{net}"));
    let listen = format!("ptp://{}[seqpacket]", d.join("p").display());
    let connect = format!("ptp://{}", d.join("p").display());
    let (mut a, fa) = start(&d, "a", engine, &listen);
    let (mut b, fb) = start(&d, "b", engine, &connect);
    wire_pair(&mut a, &mut b, net, mtu);
    pair_traffic(&mut a, &mut b, &d, net, mtu);
    tcp_transfer(&mut b, &mut a, &format!("fd{net}::1"), &d, 3 << 20);
    assert_negotiated(&mut a, &fa, &listen, &mut b, &fb, &connect);
    // The connecting end goes and comes back: the new connection negotiates again.
    assert_eq!(b.finish(10).code, Some(0));
    let (mut b, fb) = start(&d, "b2", engine, &connect);
    b.up(
        "vde0",
        &format!("10.{net}.0.2/24"),
        Some(mtu as u32).filter(|&m| m != 1500),
    );
    b.ping(&format!("10.{net}.0.1"), 2, None);
    tcp_transfer(&mut a, &mut b, &format!("10.{net}.0.2"), &d, 4 << 20);
    tcp_transfer(&mut b, &mut a, &format!("10.{net}.0.1"), &d, 4 << 20);
    assert_negotiated(&mut a, &fa, &listen, &mut b, &fb, &connect);
}

#[test]
fn seqpacket_pair_negotiates_on_io_uring() {
    fast_pair("uring", 1500, "51");
}

#[test]
fn seqpacket_pair_negotiates_on_epoll() {
    fast_pair("poll", 1500, "52");
}

#[test]
fn seqpacket_pair_negotiates_at_mtu_9000() {
    fast_pair("uring", 9000, "53");
}

/// vdens-fast listening; connected to it, a vdeplug-fast cable to a classic vde_switch with a
/// classic vdens on it: the cable never offers, so the classic tap gets standard frames.
#[test]
fn a_peer_that_does_not_offer_gets_standard_frames() {
    let net = "54";
    let d = TempDir::new("sfs-mixed");
    let listen = format!("ptp://{}[seqpacket]", d.join("p").display());
    let connect = format!("ptp://{}", d.join("p").display());
    let (mut a, fa) = start(&d, "a", "uring", &listen);
    let sw = d.join("sw");
    let _switch = vde_switch(&sw, false);
    let mut cable = std::process::Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"));
    cable.arg(&connect).arg(format!("vde://{}", sw.display()));
    clean_env(&mut cable, &d);
    let _cable = Daemon::start("vdeplug-fast", cable);
    let mut c = ns_node("c", Impl::Classic, &d, &[&format!("vde://{}", sw.display())]);
    wire_pair(&mut a, &mut c, net, 1500);
    let cap = d.join("classic.txt");
    let t = capture(&mut c, "vde0", &cap, "-Q in");
    pair_traffic(&mut a, &mut c, &d, net, 1500);
    assert_standard_frames(&captured(t, &cap), 1500, 1000);
    let ja = fresh_stats(&mut a, &fa, &peer(&listen));
    assert_eq!(port_str(&ja, &peer(&listen), "superframes"), "offered", "{ja}");
    assert_eq!(wire_super(&ja, &peer(&listen), "tap_to_link"), 0, "{ja}");
}
