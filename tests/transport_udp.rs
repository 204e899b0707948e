//! udp:// between vdens-fast and Debian's classic vdens (libvdeplug_udp 4.0.1), both ways,
//! IPv4 and IPv6, and vdens-fast with itself: ping and a sha256-checked TCP transfer. The UDP
//! endpoints are on the host's loopback (127.0.0.1 / ::1) with ports derived from the test
//! process id; everything else lives in namespaces the tests create. Also the one-line errors.

mod common;
use common::*;
use std::sync::atomic::{AtomicU16, Ordering};

/// Two unused-looking loopback UDP ports, unique per test process and call.
fn ports() -> (u16, u16) {
    static N: AtomicU16 = AtomicU16::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let base = 20000 + ((std::process::id() % 2000) as u16) * 16 + n * 2 % 16;
    (base, base + 1)
}

/// `udp://` VNLs for the two ends; `classic` ends use libvdeplug's bare-IPv6 form.
fn vnl(ip: &str, bracket: bool, src: u16, dst: u16) -> String {
    if bracket {
        format!("udp://[{ip}]:{src}->[{ip}]:{dst}")
    } else {
        format!("udp://{ip}:{src}->{ip}:{dst}")
    }
}

fn udp_pair(a_impl: Impl, b_impl: Impl, ip: &str, net: u8) {
    let d = TempDir::new("udp");
    let (pa, pb) = ports();
    let v6 = ip.contains(':');
    let va = vnl(ip, v6 && a_impl == Impl::Fast, pa, pb);
    let vb = vnl(ip, v6 && b_impl == Impl::Fast, pb, pa);
    // Both ends exist before either interface comes up (a late peer has its own test).
    let mut a = ns_node("a", a_impl, &d, &[&va]);
    let mut b = ns_node("b", b_impl, &d, &[&vb]);
    let (ia, ib) = (format!("10.{net}.0.1"), format!("10.{net}.0.2"));
    a.up("vde0", &format!("{ia}/24"), None);
    b.up("vde0", &format!("{ib}/24"), None);
    a.ping(&ib, 3, None);
    b.ping(&ia, 3, None);
    tcp_transfer(&mut a, &mut b, &ib, &d, 2 << 20);
    tcp_transfer(&mut b, &mut a, &ia, &d, 2 << 20);
    let oa = a.finish(10);
    let ob = b.finish(10);
    assert_eq!(oa.code, Some(0), "a: {oa:#?}");
    assert_eq!(ob.code, Some(0), "b: {ob:#?}");
}

#[test]
fn fast_fast_ipv4() {
    udp_pair(Impl::Fast, Impl::Fast, "127.0.0.1", 61);
}

#[test]
fn fast_to_classic_ipv4() {
    udp_pair(Impl::Fast, Impl::Classic, "127.0.0.1", 62);
}

#[test]
fn classic_to_fast_ipv4() {
    udp_pair(Impl::Classic, Impl::Fast, "127.0.0.1", 63);
}

#[test]
fn fast_to_classic_ipv6() {
    udp_pair(Impl::Fast, Impl::Classic, "::1", 64);
}

#[test]
fn fast_fast_ipv6_bare_form() {
    // libvdeplug's own spelling (split at the last ':') works on vdens-fast too.
    let d = TempDir::new("udp6");
    let (pa, pb) = ports();
    let mut a = ns_node("a", Impl::Fast, &d, &[&vnl("::1", false, pa, pb)]);
    let mut b = ns_node("b", Impl::Fast, &d, &[&vnl("::1", false, pb, pa)]);
    a.up("vde0", "10.65.0.1/24", None);
    b.up("vde0", "10.65.0.2/24", None);
    a.ping("10.65.0.2", 3, None);
    b.ping("10.65.0.1", 3, None);
}

fn fails(args: &[&str]) -> String {
    let d = TempDir::new("udperr");
    let o = vf(Who::Root, &d, args);
    assert_eq!(o.code, Some(1), "{args:?}: {o:#?}");
    let e = o.stderr.trim_end().to_string();
    assert_eq!(e.lines().count(), 1, "{args:?}: not one line: {e}");
    assert!(!e.contains("os error"), "{e}");
    e
}

#[test]
fn malformed_vnls_give_one_line_errors() {
    let e = fails(&["udp://5000", "true"]);
    assert!(
        e.contains("udp:// destination ('->DST_ADDR:DST_PORT') is missing"),
        "{e}"
    );
    let e = fails(&["udp://5000->127.0.0.1", "true"]);
    assert!(e.contains("udp:// destination '127.0.0.1' has no ':PORT'"), "{e}");
    let e = fails(&["udp://abc->127.0.0.1:5", "true"]);
    assert!(e.contains("udp:// source port 'abc' is not a port number"), "{e}");
    let e = fails(&["udp://5->127.0.0.1:99999", "true"]);
    assert!(
        e.contains("udp:// destination port '99999' is out of range"),
        "{e}"
    );
    let e = fails(&["udp://[::1:5->[::1]:6", "true"]);
    assert!(e.contains("has an unclosed '['"), "{e}");
    let e = fails(&["udp://127.0.0.1:5->[::1]:6", "true"]);
    assert!(e.contains("'127.0.0.1' has no IPv6 address"), "{e}");
}

#[test]
fn address_in_use_is_named() {
    let (p, q) = ports();
    let _holder = std::net::UdpSocket::bind(("127.0.0.1", p)).unwrap();
    let e = fails(&[&format!("udp://127.0.0.1:{p}->127.0.0.1:{q}"), "true"]);
    assert!(
        e.contains("binding the UDP socket: Address already in use")
            && e.contains(&format!("UDP port {p} is in use on 127.0.0.1")),
        "{e}"
    );
}

#[test]
fn unresolvable_name_is_named() {
    // Inside an empty network namespace of the test: the resolver cannot reach any server, so
    // no query leaves the machine.
    let ns = NetNs::new("udpres");
    let mut c = ns.cmd(binary().to_str().unwrap());
    c.args(["udp://40000->no-such-host.invalid:5", "true"]);
    let o = run(c, 30);
    assert_eq!(o.code, Some(1), "{o:#?}");
    let e = o.stderr.trim_end();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("resolving the destination: cannot resolve 'no-such-host.invalid'"),
        "{e}"
    );
}

#[test]
fn peer_started_late_is_reached() {
    // a sends (ARP, pings) while nobody holds b's port: its connected socket reports "Connection
    // refused" on receive; the direction keeps going, and once b is up traffic flows both ways.
    let d = TempDir::new("udplate");
    let (pa, pb) = ports();
    let mut a = ns_node("a", Impl::Fast, &d, &[&vnl("127.0.0.1", false, pa, pb)]);
    a.up("vde0", "10.65.0.1/24", None);
    let (code, _) = a.try_sh("ping -n -q -c 3 -i 0.2 -w 2 10.65.0.2", 10);
    assert_ne!(code, Some(0), "nobody should have answered yet");
    let mut b = ns_node("b", Impl::Classic, &d, &[&vnl("127.0.0.1", false, pb, pa)]);
    b.up("vde0", "10.65.0.2/24", None);
    a.ping("10.65.0.2", 3, None);
    b.ping("10.65.0.1", 3, None);
    assert!(!a.stderr().contains("this direction stops"), "{}", a.stderr());
}
