//! Negotiated super-frames on a datagram `ptp://` link (issue 13): a vdens-fast second opener
//! asks (HELLO), a vdens-fast first opener answers (OFFER), and from then on the second
//! opener's TCP super-frames cross whole, tagged; the first opener, which sends to a path,
//! pairs a second socket with one of the second opener's (PAIR, JOIN, PROBE, ECHO) and sends
//! its super-frames whole on it. Byte-exact TCP both ways, IPv6, UDP, ICMP, MTU 9000, both
//! engines. A classic vdens at either end never sees a tagged frame or one over its MTU on
//! its tap (tcpdump in its namespace), also when it takes the place of a vdens-fast end that
//! had negotiated while the survivor keeps running; a vdens-fast end taking the place of a
//! classic one negotiates again.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn port_field(json: &str, key: &str) -> String {
    port_str(json, "vde0", key)
}

/// wire_super of one direction of vde0.
fn wire_super(json: &str, dir: &str) -> u64 {
    let p = &json[json
        .find(&format!("\"{dir}\""))
        .unwrap_or_else(|| panic!("no {dir} in {json}"))..];
    let end = p.find('}').unwrap();
    stat_sum(&p[..end], "wire_super")
}

fn stats_of(n: &mut Node, file: &Path) -> String {
    fresh_stats(n, file, "vde0")
}

/// Starts a vdens-fast (with --stats) or a classic vdens on `vnl`.
fn start(d: &TempDir, name: &str, fast: bool, engine: &str, vnl: &str) -> (Node, PathBuf) {
    let stats = d.join(&format!("{name}.json"));
    let n = if fast {
        let args = [
            "--engine",
            engine,
            "--stats",
            stats.to_str().unwrap(),
            vnl,
            "sh",
            "-s",
        ];
        let mut c = vdens_fast(Who::Root, d, &args);
        // The tagged path on its own: no tap handover (tests/handover_ptp.rs has it).
        c.env("VDENS_FAST_HANDOVER", "0");
        Node::start(name, c)
    } else {
        ns_node(name, Impl::Classic, d, &[vnl])
    };
    (n, stats)
}

/// Captures what the tap hands the namespace (frames the forwarder wrote to it): tcpdump
/// `-e -vv` in the node's network namespace, started from outside it (`common::capture`).
struct Capture {
    file: PathBuf,
    tcpdump: Daemon,
}

impl Capture {
    fn start(n: &mut Node, d: &TempDir, tag: &str) -> Capture {
        let file = d.join(&format!("{tag}.txt"));
        let tcpdump = capture(n, "vde0", &file, "-Q in");
        Capture { file, tcpdump }
    }

    /// At least `min` frames, none over a standard frame at `mtu`, none tagged, every
    /// checksum correct (`common::assert_standard_frames`).
    fn check(self, mtu: usize, min: usize) {
        let text = captured(self.tcpdump, &self.file);
        assert_standard_frames(&text, mtu, min);
    }
}

fn fast_pair(engine: &str, mtu: usize, net: &str) {
    let d = TempDir::new(&format!("sfp{net}"));
    let vnl = format!("ptp://{}", d.join("p").display());
    let (mut a, fa) = start(&d, "a", true, engine, &vnl);
    let (mut b, fb) = start(&d, "b", true, engine, &vnl);
    wire_pair(&mut a, &mut b, net, mtu);
    pair_traffic(&mut a, &mut b, &d, net, mtu);
    tcp_transfer(&mut b, &mut a, &format!("fd{net}::1"), &d, 3 << 20);
    let (ja, jb) = (stats_of(&mut a, &fa), stats_of(&mut b, &fb));
    assert_eq!(port_field(&jb, "superframes"), "negotiated", "{jb}");
    assert_eq!(
        port_field(&ja, "superframes"),
        "negotiated",
        "the first opener paired: {ja}"
    );
    assert!(wire_super(&jb, "tap_to_link") > 0, "{jb}");
    assert!(wire_super(&ja, "link_to_tap") > 0, "{ja}");
    // The first opener's direction (tcp_transfer a -> b in `traffic`).
    assert!(wire_super(&ja, "tap_to_link") > 0, "{ja}");
    assert!(wire_super(&jb, "link_to_tap") > 0, "{jb}");
    // Both ends remove what they bound, the pair sockets too.
    b.finish(10);
    a.finish(10);
    for f in ["p", "p+", "p+fast1", "p+fast2"] {
        assert!(!d.join(f).exists(), "{f} left behind");
    }
}

#[test]
fn fast_ptp_negotiates_on_io_uring() {
    fast_pair("uring", 1500, "41");
}

#[test]
fn fast_ptp_negotiates_on_epoll() {
    fast_pair("poll", 1500, "42");
}

#[test]
fn fast_ptp_negotiates_at_mtu_9000() {
    fast_pair("uring", 9000, "43");
}

/// A classic vdens at one end, vdens-fast at the other (both roles): nothing tagged, nothing
/// over the MTU reaches the classic tap; traffic as usual.
#[test]
fn a_classic_peer_sees_standard_frames_only() {
    for (first_fast, net) in [(false, "44"), (true, "45")] {
        let d = TempDir::new(&format!("sfm{net}"));
        let vnl = format!("ptp://{}", d.join("p").display());
        let (mut a, fa) = start(&d, "a", first_fast, "uring", &vnl);
        let (mut b, fb) = start(&d, "b", !first_fast, "uring", &vnl);
        wire_pair(&mut a, &mut b, net, 1500);
        let (classic, _) = if first_fast { (&mut b, &fb) } else { (&mut a, &fa) };
        let cap = Capture::start(classic, &d, "classic");
        pair_traffic(&mut a, &mut b, &d, net, 1500);
        // Tagged or oversized frames on the classic tap (first opener fast: first_fast)?
        cap.check(1500, 1000);
        let (fast, f) = if first_fast { (&mut a, &fa) } else { (&mut b, &fb) };
        let j = stats_of(fast, f);
        assert_eq!(port_field(&j, "superframes"), "offered", "{j}");
        assert_eq!(wire_super(&j, "tap_to_link"), 0, "{j}");
    }
}

/// The first opener is replaced while the second (vdens-fast) keeps running: vdens-fast by
/// classic vdens (which must see nothing tagged though the survivor was sending super-frames
/// whole a moment before), then classic by vdens-fast (negotiated again).
#[test]
fn a_replaced_first_opener_is_asked_again() {
    let d = TempDir::new("sfrp");
    let vnl = format!("ptp://{}", d.join("p").display());
    let (a, fa) = start(&d, "a", true, "uring", &vnl);
    let (mut b, fb) = start(&d, "b", true, "uring", &vnl);
    let mut a = a;
    wire_pair(&mut a, &mut b, "46", 1500);
    tcp_transfer(&mut b, &mut a, "10.46.0.1", &d, 4 << 20);
    let jb = stats_of(&mut b, &fb);
    assert_eq!(port_field(&jb, "superframes"), "negotiated", "{jb}");
    let before = wire_super(&jb, "tap_to_link");
    assert!(before > 0, "{jb}");
    for (fast, net) in [(false, "46"), (true, "46")] {
        // Ended as a user ends it (classic vdens cannot start where a SIGKILLed first opener
        // left its socket file while the second opener lives: it finds both paths taken).
        a.finish(10);
        let (mut n, fnew) = start(&d, if fast { "a3" } else { "a2" }, fast, "uring", &vnl);
        n.up("vde0", &format!("10.{net}.0.1/24"), None);
        // The new end has another MAC address.
        b.sh("ip neigh flush dev vde0", 5);
        let deadline = Instant::now() + Duration::from_secs(15);
        while b.try_sh(&format!("ping -c 1 -W 1 10.{net}.0.1"), 5).0 != Some(0) {
            assert!(Instant::now() < deadline, "no ping to the new first opener");
        }
        let cap = (!fast).then(|| Capture::start(&mut n, &d, "replaced"));
        tcp_transfer(&mut b, &mut n, &format!("10.{net}.0.1"), &d, 8 << 20);
        tcp_transfer(&mut n, &mut b, &format!("10.{net}.0.2"), &d, 2 << 20);
        let jb = stats_of(&mut b, &fb);
        if let Some(cap) = cap {
            // Nothing tagged or oversized reached the classic first opener.
            cap.check(1500, 1000);
            assert_eq!(port_field(&jb, "superframes"), "offered", "{jb}");
        } else {
            assert_eq!(port_field(&jb, "superframes"), "negotiated", "{jb}");
            assert!(
                wire_super(&jb, "tap_to_link") > before,
                "super-frames again: {jb}"
            );
            // The survivor's pair socket was connected to the old first opener's: the new
            // one pairs with it again, and sends its super-frames whole.
            let jn = stats_of(&mut n, &fnew);
            assert_eq!(port_field(&jn, "superframes"), "negotiated", "{jn}");
            assert!(wire_super(&jn, "tap_to_link") > 0, "{jn}");
            assert!(wire_super(&jb, "link_to_tap") > 0, "{jb}");
        }
        a = n;
    }
    let _ = fa;
    drop(a);
    drop(b);
}

/// The second opener is replaced while the first (vdens-fast, sending super-frames whole on
/// its paired socket) keeps running: vdens-fast by classic vdens, which must see nothing
/// tagged and nothing over its MTU while the survivor sends TCP to it; then classic by
/// vdens-fast, with which the first opener pairs again.
#[test]
fn a_replaced_second_opener_is_asked_again() {
    let d = TempDir::new("sfrs");
    let vnl = format!("ptp://{}", d.join("p").display());
    let (mut a, fa) = start(&d, "a", true, "uring", &vnl);
    let (b, _) = start(&d, "b", true, "uring", &vnl);
    let mut b = b;
    wire_pair(&mut a, &mut b, "47", 1500);
    tcp_transfer(&mut a, &mut b, "10.47.0.2", &d, 8 << 20);
    let ja = stats_of(&mut a, &fa);
    assert_eq!(port_field(&ja, "superframes"), "negotiated", "{ja}");
    let before = wire_super(&ja, "tap_to_link");
    assert!(before > 0, "{ja}");
    for (fast, net) in [(false, "47"), (true, "47")] {
        if !fast {
            // The first opener is sending super-frames whole on its pair socket when its peer
            // goes: a TCP stream to b, which the new end answers with resets.
            b.sh(
                "(timeout 20 nc -l 5999 >/dev/null 2>&1 &) ; \
                 for i in $(seq 100); do ss -ltn | grep -q ':5999 ' && exit 0; sleep 0.05; done; exit 1",
                10,
            );
            a.sh(
                &format!(
                    "(timeout 20 sh -c 'head -c 4000000000 /dev/zero | nc -N -w 5 10.{net}.0.2 5999' \
                     >/dev/null 2>&1 &) ; sleep 1"
                ),
                10,
            );
            let ja = stats_of(&mut a, &fa);
            assert!(wire_super(&ja, "tap_to_link") > before, "streaming whole: {ja}");
        }
        b.finish(10);
        let name = if fast { "b3" } else { "b2" };
        let (mut n, fnew) = start(&d, name, fast, "uring", &vnl);
        n.up("vde0", &format!("10.{net}.0.2/24"), None);
        a.sh("ip neigh flush dev vde0", 5);
        let deadline = Instant::now() + Duration::from_secs(15);
        while a.try_sh(&format!("ping -c 1 -W 1 10.{net}.0.2"), 5).0 != Some(0) {
            assert!(Instant::now() < deadline, "no ping to the new second opener");
        }
        let cap = (!fast).then(|| Capture::start(&mut n, &d, "replaced2"));
        // The first opener's direction first: it had been sending super-frames whole.
        tcp_transfer(&mut a, &mut n, &format!("10.{net}.0.2"), &d, 8 << 20);
        tcp_transfer(&mut n, &mut a, &format!("10.{net}.0.1"), &d, 2 << 20);
        let ja = stats_of(&mut a, &fa);
        if let Some(cap) = cap {
            // Nothing tagged or oversized reached the classic second opener.
            cap.check(1500, 1000);
            assert_eq!(port_field(&ja, "superframes"), "offered", "{ja}");
        } else {
            assert_eq!(port_field(&ja, "superframes"), "negotiated", "{ja}");
            assert!(
                wire_super(&ja, "tap_to_link") > before,
                "super-frames again: {ja}"
            );
            let jn = stats_of(&mut n, &fnew);
            assert!(wire_super(&jn, "link_to_tap") > 0, "{jn}");
        }
        b = n;
    }
    drop(b);
    drop(a);
}

/// The two ends in different network namespaces (as the NAT router of the tutorial, started in
/// the namespace of the host tap it forwards to): they still pair, and the first opener's
/// super-frames cross whole (abstract socket names would not reach across).
#[test]
fn ends_in_different_network_namespaces_pair() {
    let d = TempDir::new("sfns");
    let ns = NetNs::new("sfns");
    let vnl = format!("ptp://{}", d.join("p").display());
    let fa = d.join("a.json");
    let mut a = ns_node_in(
        &ns,
        "a",
        Impl::Fast,
        &d,
        &["--stats", fa.to_str().unwrap()],
        &[&vnl],
    );
    assert!(wait_path(&d.join("p"), 10), "the first opener is up");
    let (mut b, fb) = start(&d, "b", true, "uring", &vnl);
    wire_pair(&mut a, &mut b, "48", 1500);
    tcp_transfer(&mut a, &mut b, "10.48.0.2", &d, 8 << 20);
    tcp_transfer(&mut b, &mut a, "10.48.0.1", &d, 2 << 20);
    let (ja, jb) = (stats_of(&mut a, &fa), stats_of(&mut b, &fb));
    assert_eq!(port_field(&ja, "superframes"), "negotiated", "{ja}");
    assert!(wire_super(&ja, "tap_to_link") > 0, "{ja}");
    assert!(wire_super(&jb, "link_to_tap") > 0, "{jb}");
    assert!(wire_super(&jb, "tap_to_link") > 0, "{jb}");
    drop(b);
    drop(a);
}
