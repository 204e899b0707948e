//! Negotiated super-frames through a vdens-fast switch (issue 13, item 1), on both drivers of
//! the node's loop: two clients that offered super-frames in their join request (made by hand
//! here: the vde:// handshake and tagged datagrams of `wire::superframe` on a bound datagram
//! socket), a classic `vdens` client in its own namespace, and the host's own tap.
//!
//! - a tagged 64 KiB TCP super-frame from one capable client reaches the other whole and
//!   byte-identical, unicast and flooded;
//! - flooded, the classic client's tap sees it only as standard frames (none over its MTU),
//!   every IP/TCP checksum valid; a frame with a partial UDP checksum arrives completed;
//! - sent to the host, its offloading tap takes the super-frame whole;
//! - the host's own tap sends its super-frames whole to a vdens-fast client (switch and hub,
//!   both drivers, IPv4 and IPv6 at MTU 9000) and cut to a classic one;
//! - the capable clients still get the classic client's plain frames;
//! - the host's stats say which ports negotiated super-frames and count what crossed whole.
//!
//! Everything runs inside namespaces these tests create, or on AF_UNIX sockets.

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vdens_fast::wire::superframe::{is_tagged, TAG};
use vdens_fast::wire::vde_ctl::{decode_sockaddr, sockaddr_marked, Request, RequestType, UnixAddr};
use vdens_fast::wire::vnet::{self, VnetHdr};

/// Prints vde0's MAC address (the namespace's /sys is the host's).
const MAC_OF_VDE0: &str = "ip -o link show vde0 | sed -n 's/.*link\\/ether \\([0-9a-f:]*\\).*/\\1/p'";
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0x0a, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0x0b, 1];
/// A destination nobody has: the switch floods frames to it.
const MAC_NONE: [u8; 6] = [2, 0, 0, 0, 0, 0x99];
/// TCP payload of the super-frame, and the MSS it is cut at.
const PAYLOAD: usize = 64000;
const MSS: usize = 1448;

/// A client joined by hand: its control connection and connected data socket.
struct Client {
    _ctl: UnixStream,
    data: UnixDatagram,
}

/// Joins the switch at `dir` offering super-frames; returns the client and whether the switch
/// answered the offer.
fn join(dir: &Path, tmp: &TempDir, name: &str) -> (Client, bool) {
    join_offering(dir, tmp, name, true)
}

fn join_offering(dir: &Path, tmp: &TempDir, name: &str, offer: bool) -> (Client, bool) {
    let mut ctl = UnixStream::connect(dir.join("ctl")).expect("connect to ctl");
    ctl.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mine = tmp.join(name);
    let data = UnixDatagram::bind(&mine).unwrap();
    let req = Request {
        kind: RequestType::NewControl,
        sock_path: mine.to_str().unwrap().as_bytes().to_vec(),
        description: name.as_bytes().to_vec(),
        superframes: offer,
    };
    ctl.write_all(&req.encode().unwrap()).unwrap();
    let mut ans = [0u8; 110];
    let n = ctl.read(&mut ans).expect("the switch's answer");
    let UnixAddr::Path(p) = decode_sockaddr(&ans[..n]).unwrap() else {
        panic!("abstract answer")
    };
    data.connect(std::str::from_utf8(&p).unwrap()).unwrap();
    data.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    data.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = std::fs::remove_file(&mine);
    (Client { _ctl: ctl, data }, sockaddr_marked(&ans[..n]))
}

impl Client {
    fn send(&self, d: &[u8]) {
        assert_eq!(self.data.send(d).expect("send to the switch"), d.len());
    }

    /// Receives until a datagram `want` says yes to (true) or `secs` pass (false).
    fn wait_for(&self, secs: u64, mut want: impl FnMut(&[u8]) -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut buf = vec![0u8; 70000];
        while Instant::now() < end {
            if let Ok(n) = self.data.recv(&mut buf) {
                if want(&buf[..n]) {
                    return true;
                }
            }
        }
        false
    }

    /// Drops whatever waits on the socket.
    fn drain(&self) {
        let mut buf = vec![0u8; 70000];
        self.data.set_nonblocking(true).unwrap();
        while self.data.recv(&mut buf).is_ok() {}
        self.data.set_nonblocking(false).unwrap();
    }
}

fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Ethernet + IPv4 (header checksum done) from 10.77.0.10 to 10.77.0.20, protocol `proto`,
/// and `l4` after it.
fn ipv4_frame(dst: [u8; 6], src: [u8; 6], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + l4.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let tot = (20 + l4.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&[10, 77, 0, 10]);
    ip[16..20].copy_from_slice(&[10, 77, 0, 20]);
    let c = !fold(sum16(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// The pseudo-header sum (folded, not complemented) a partial checksum field holds.
fn pseudo(proto: u8, l4_len: usize) -> u16 {
    fold(sum16(&[10, 77, 0, 10, 10, 77, 0, 20, 0, proto]) + l4_len as u32)
}

fn tagged(h: VnetHdr, frame: &[u8]) -> Vec<u8> {
    let mut d = TAG.to_vec();
    d.extend_from_slice(&h.to_bytes()[..vnet::LEN]);
    d.extend_from_slice(frame);
    d
}

/// A tagged TCPv4 super-frame of [`PAYLOAD`] bytes at MSS [`MSS`], its checksum partial (as a
/// tap hands one over).
fn tcp_super(dst: [u8; 6]) -> Vec<u8> {
    let mut tcp = vec![0u8; 20 + PAYLOAD];
    tcp[0..2].copy_from_slice(&5000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&6000u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    for (i, b) in tcp[20..].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    let p = pseudo(6, tcp.len());
    tcp[16..18].copy_from_slice(&p.to_be_bytes());
    let h = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: 54,
        gso_size: MSS as u16,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    tagged(h, &ipv4_frame(dst, MAC_A, 6, &tcp))
}

/// A tagged UDP frame whose checksum is partial (no super-frame).
fn udp_partial(dst: [u8; 6]) -> Vec<u8> {
    let mut udp = vec![0u8; 8 + 100];
    udp[0..2].copy_from_slice(&5001u16.to_be_bytes());
    udp[2..4].copy_from_slice(&7001u16.to_be_bytes());
    let ulen = udp.len() as u16;
    udp[4..6].copy_from_slice(&ulen.to_be_bytes());
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let p = pseudo(17, udp.len());
    udp[6..8].copy_from_slice(&p.to_be_bytes());
    let h = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..VnetHdr::default()
    };
    tagged(h, &ipv4_frame(dst, MAC_A, 17, &udp))
}

/// A plain broadcast frame from `src` (so that the switch learns it).
fn hello(src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(60, 0);
    f
}

/// The scenario on a `scheme://` node (switch or hub), on the driver `engine` names (None:
/// the default, io_uring).
fn scenario(scheme: &str, engine: Option<&str>, tag: &str) {
    // A hub floods every frame: the classic client sees the unicast super-frame cut too.
    let hub = scheme == "hub";
    let d = TempDir::new(tag);
    let extra: Vec<&str> = engine.map(|e| vec!["--engine", e]).unwrap_or_default();
    let (mut h, dir, stats) = node_host(&d, scheme, &extra);
    let vnl = format!("vde://{}", dir.display());
    let mut c = ns_node("classic", Impl::Classic, &d, &[&vnl]);
    let (a, a_ok) = join(&dir, &d, "a.sock");
    let (b, b_ok) = join(&dir, &d, "b.sock");
    assert!(a_ok && b_ok, "the switch did not answer the super-frame offer");
    h.up("vde0", "10.77.0.1/24", None);
    c.up("vde0", "10.77.0.2/24", None);
    let host_mac = h.sh(MAC_OF_VDE0, 5);
    let host_mac: Vec<u8> = host_mac
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    let host_mac: [u8; 6] = host_mac.try_into().expect("a MAC address");

    // The switch learns where A and B are.
    a.send(&hello(MAC_A));
    b.send(&hello(MAC_B));
    assert!(b.wait_for(5, |f| f == hello(MAC_A)), "B did not get A's hello");
    assert!(a.wait_for(5, |f| f == hello(MAC_B)), "A did not get B's hello");

    // (a) Unicast: B gets the super-frame whole, byte for byte; the classic client sees none
    // of it on a switch (its capture runs from here on).
    let cap_c = d.join("classic.txt");
    let t = capture(&mut c, "vde0", &cap_c, "");
    let to_b = tcp_super(MAC_B);
    a.send(&to_b);
    assert!(
        b.wait_for(5, |f| f == to_b.as_slice()),
        "B did not get A's super-frame whole; host stats: {}",
        std::fs::read_to_string(&stats).unwrap_or_default()
    );

    // (b) Flooded: B gets it whole again; the classic client gets it cut into standard
    // frames with valid checksums; so is a frame whose UDP checksum was partial.
    let flood = tcp_super(MAC_NONE);
    a.send(&flood);
    assert!(
        b.wait_for(5, |f| f == flood.as_slice()),
        "B did not get the flooded super-frame whole"
    );
    let udp = udp_partial(MAC_NONE);
    a.send(&udp);
    assert!(
        b.wait_for(5, |f| f == udp.as_slice()),
        "B did not get the partial-checksum frame whole"
    );
    let text = captured(t, &cap_c);
    let lens = frame_lengths(&text);
    assert!(
        lens.iter().all(|&l| l <= 1514),
        "the classic client saw a frame over its MTU: {lens:?}\n{text}"
    );
    assert!(
        !text.contains("incorrect") && !text.contains("bad cksum") && !text.contains("bad udp cksum"),
        "a bad checksum at the classic client:\n{text}"
    );
    let segs = PAYLOAD.div_ceil(MSS) * if hub { 2 } else { 1 };
    let full = format!(", length {}:", 54 + MSS);
    let last = format!(", length {}:", 54 + PAYLOAD % MSS);
    let tcp_seen = text
        .lines()
        .filter(|l| l.contains("02:00:00:00:0a:01 > "))
        .filter(|l| l.contains(&full) || l.contains(&last))
        .count();
    assert_eq!(
        tcp_seen, segs,
        "the classic client did not get the {segs} segments of the super-frames flooded to it:\n{text}"
    );
    assert_eq!(
        text.matches("(correct)").count(),
        segs,
        "every segment's TCP checksum is correct:\n{text}"
    );
    assert!(
        text.contains("udp sum ok"),
        "the partial UDP checksum was not completed:\n{text}"
    );
    let for_b = text.lines().filter(|l| l.contains("> 02:00:00:00:0b:01")).count();
    assert_eq!(
        for_b,
        if hub { segs / 2 } else { 0 },
        "frames for B at the classic client:\n{text}"
    );

    // The host's offloading tap takes a super-frame whole.
    let cap_h = d.join("host.txt");
    let t = capture(&mut h, "vde0", &cap_h, "tcp port 6000");
    a.send(&tcp_super(host_mac));
    let text = captured(t, &cap_h);
    assert!(
        frame_lengths(&text).contains(&(54 + PAYLOAD)),
        "the host's tap did not get the super-frame whole:\n{text}"
    );

    // (c) The capable clients get the classic client's plain frames.
    a.drain();
    let c_mac = c.sh(MAC_OF_VDE0, 5);
    let c_mac: Vec<u8> = c_mac
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    c.sh("ping -c 1 -W 1 10.77.0.99; true", 10);
    assert!(
        a.wait_for(5, |f| !is_tagged(f)
            && f.len() <= 1514
            && f[6..12] == c_mac[..]
            && f[12..14] == [0x08, 0x06]),
        "A did not get the classic client's ARP request"
    );

    // The stats: A and B negotiated (and the classic client did not), super-frames crossed
    // whole and were cut for the classic client.
    std::thread::sleep(Duration::from_millis(400));
    let j = std::fs::read_to_string(&stats).expect("host's stats");
    assert_eq!(
        j.matches("\"superframes\":\"negotiated\"").count(),
        2,
        "A and B, and only they, negotiated: {j}"
    );
    assert_eq!(
        j.matches("\"superframes\":\"offered\"").count(),
        1,
        "the classic client was offered super-frames: {j}"
    );
    // From A: to B, flooded, to the host; to B: two of them.
    assert!(stat_sum(&j, "wire_super") >= 3 + 2, "no super-frames whole: {j}");
    assert!(stat_sum(&j, "super_frames") >= 1, "no super-frame cut: {j}");
    drop(a);
    drop(b);
    drop(c);
    let o = h.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}

#[test]
fn super_frames_cross_a_switch_whole_and_cut_for_classic_clients() {
    scenario("switch", None, "sfsw");
}

#[test]
fn super_frames_cross_a_switch_on_the_epoll_driver() {
    scenario("switch", Some("poll"), "sfswp");
}

#[test]
fn super_frames_cross_a_hub_whole_and_cut_for_classic_clients() {
    scenario("hub", None, "sfhub");
}

/// Tagged datagrams from a client that did not negotiate super-frames (a switch run with
/// --no-offload, or a client that did not offer them) reach nobody: a port without them is
/// never sent one, whatever its peers send.
fn unnegotiated(host_args: &[&str], offer: bool, tag: &str) {
    let d = TempDir::new(tag);
    let (h, dir, stats) = node_host(&d, "switch", host_args);
    let (a, a_ok) = join_offering(&dir, &d, "a.sock", offer);
    let (b, b_ok) = join(&dir, &d, "b.sock");
    assert!(!a_ok, "super-frames negotiated with A");
    assert_eq!(b_ok, host_args.is_empty(), "B's negotiation");
    a.send(&hello(MAC_A));
    b.send(&hello(MAC_B));
    assert!(a.wait_for(5, |f| f == hello(MAC_B)), "A did not get B's hello");
    assert!(b.wait_for(5, |f| f == hello(MAC_A)), "B did not get A's hello");
    // A partial-checksum frame (small enough for a standard frame) and a super-frame, to B
    // and flooded; then a plain frame, which B must get with nothing tagged before it.
    for dst in [MAC_B, MAC_NONE] {
        a.send(&udp_partial(dst));
        a.send(&tcp_super(dst));
    }
    a.send(&hello(MAC_A));
    let mut tagged_seen = 0;
    assert!(
        b.wait_for(5, |f| {
            tagged_seen += usize::from(is_tagged(f));
            f == hello(MAC_A)
        }),
        "B did not get A's plain frame"
    );
    assert_eq!(tagged_seen, 0, "B was sent tagged datagrams from A");
    std::thread::sleep(Duration::from_millis(400));
    let j = std::fs::read_to_string(&stats).expect("host's stats");
    assert!(
        stat_sum(&j, "drop_framing") >= 2 && stat_sum(&j, "drop_oversize") >= 2,
        "A's tagged datagrams not dropped: {j}"
    );
    assert_eq!(stat_sum(&j, "wire_super"), 0, "{j}");
    let states =
        ["off", "offered", "negotiated"].map(|s| j.matches(&format!("\"superframes\":\"{s}\"")).count());
    let want = if host_args.is_empty() {
        // A offered nothing, B negotiated; the host's tap is no client.
        [1, 1, 1]
    } else {
        [3, 0, 0]
    };
    assert_eq!(states, want, "off/offered/negotiated: {j}");
    drop(a);
    drop(b);
    let o = h.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}

#[test]
fn no_offload_switch_negotiates_nothing_and_passes_no_tagged_datagram() {
    unnegotiated(&["--no-offload"], true, "sfnooff");
}

#[test]
fn a_client_that_did_not_offer_cannot_send_tagged_datagrams() {
    unnegotiated(&[], false, "sfnooffer");
}

/// The `link_to_tap` counters of the port whose "vnl" starts with `vnl`, in a stats line.
fn link_to_tap_of<'a>(json: &'a str, vnl: &str) -> &'a str {
    let at = json
        .find(&format!("\"vnl\":\"{vnl}"))
        .unwrap_or_else(|| panic!("no port {vnl} in {json}"));
    let p = &json[at..];
    let p = &p[..p.find("{\"name\"").unwrap_or(p.len())];
    &p[p.find("\"link_to_tap\"").expect("link_to_tap")..]
}

/// A burst of flooded super-frames needs far more standard frames for the classic client than
/// the node has slots: the cuts wait for slots instead of dropping, so every segment of every
/// super-frame is handed to the classic client's port, and every super-frame to the capable
/// one (whose socket may still refuse some when its reader falls behind: counted, as for any
/// destination; what was sent arrived whole).
#[test]
fn a_burst_of_super_frames_is_cut_without_running_out_of_slots() {
    const N: usize = 120;
    let d = TempDir::new("sfburst");
    let dir = d.join("sw");
    let stats = d.join("host.json");
    let node_vnl = format!("switch://{}", dir.display());
    let vnl = format!("vde://{}", dir.display());
    let args = [
        "--stats",
        stats.to_str().unwrap(),
        "--stats-interval",
        "100",
        &node_vnl,
        "sh",
        "-s",
    ];
    let mut h = Node::start("host", vdens_fast(Who::Root, &d, &args));
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    let mut c = ns_node("classic", Impl::Classic, &d, &[&vnl]);
    let (a, _) = join(&dir, &d, "a.sock");
    let (b, b_ok) = join(&dir, &d, "b.sock");
    assert!(b_ok, "B did not negotiate");
    h.up("vde0", "10.78.0.1/24", None);
    c.up("vde0", "10.78.0.2/24", None);
    // What the ports of the classic client and of B were handed ("received"), and B's whole
    // sends. Other traffic (the host's neighbour discovery) goes on, so "at least".
    let counts = || {
        let j = std::fs::read_to_string(&stats).unwrap_or_default();
        (j.contains("\"vnl\":\"vdens") && j.contains("\"vnl\":\"b.sock")).then(|| {
            let (lc, lb) = (link_to_tap_of(&j, "vdens"), link_to_tap_of(&j, "b.sock"));
            (
                stat_sum(lc, "received"),
                stat_sum(lb, "received"),
                stat_sum(lb, "wire_super"),
            )
        })
    };
    let end = Instant::now() + Duration::from_secs(10);
    let before = loop {
        if let Some(n) = counts() {
            break n;
        }
        assert!(Instant::now() < end, "no stats for the clients' ports");
        std::thread::sleep(Duration::from_millis(100));
    };
    // A's socket queues many super-frames (8 MiB, as root), so that the node takes a good
    // number of them in one turn: their cuts need many times its slots at once.
    nix::sys::socket::setsockopt(&a.data, nix::sys::socket::sockopt::SndBufForce, &(8 << 20))
        .expect("SO_SNDBUFFORCE");
    let flood = tcp_super(MAC_NONE);
    let got = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut got = 0;
            // Until N arrived, or the end of its input (shut down once the burst is over).
            b.wait_for(30, |f| {
                got += usize::from(f == flood.as_slice());
                got == N || f.is_empty()
            });
            got
        });
        for _ in 0..N {
            a.send(&flood);
        }
        std::thread::sleep(Duration::from_secs(2));
        b.data.shutdown(std::net::Shutdown::Read).ok();
        reader.join().expect("B's reader")
    });
    let segs = (N * PAYLOAD.div_ceil(MSS)) as u64;
    let end = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let n = counts().expect("stats");
        if n.0 >= before.0 + segs && n.1 >= before.1 + segs && n.2 - before.2 == got as u64 {
            break n;
        }
        assert!(
            Instant::now() < end,
            "not every piece was handed over: before {before:?}, now {n:?}, B got {got} of {N}: {}",
            std::fs::read_to_string(&stats).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(got > 0, "B got no super-frame whole: {after:?}");
    drop(a);
    drop(b);
    drop(c);
    let o = h.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}

/// The mixed case, end to end: a vdens-fast switch host, two vdens-fast clients (which
/// negotiate and send their taps' super-frames tagged) and a classic vdens client. TCP between
/// every pair is sha256-exact; the classic client's tap is never handed a frame over its MTU
/// nor a bad checksum (tcpdump -vv on what arrives there); the host's stats show the two
/// negotiated ports and super-frames that crossed whole.
fn mixed(engine: Option<&str>, tag: &str, net: u8) {
    let d = TempDir::new(tag);
    let extra: Vec<&str> = engine.map(|e| vec!["--engine", e]).unwrap_or_default();
    let (mut h, dir, stats) = node_host(&d, "switch", &extra);
    let vnl = format!("vde://{}", dir.display());
    let mut f1 = ns_node("fast1", Impl::Fast, &d, &[&vnl]);
    let mut f2 = ns_node("fast2", Impl::Fast, &d, &[&vnl]);
    let mut c = ns_node("classic", Impl::Classic, &d, &[&vnl]);
    let ip = |i: u8| format!("10.{net}.0.{i}");
    h.up("vde0", &format!("{}/24", ip(1)), None);
    f1.up("vde0", &format!("{}/24", ip(2)), None);
    f2.up("vde0", &format!("{}/24", ip(3)), None);
    c.up("vde0", &format!("{}/24", ip(4)), None);
    for n in [&mut f1, &mut f2, &mut c] {
        n.ping(&ip(1), 2, None);
    }
    let cap = d.join("classic.txt");
    let t = capture(&mut c, "vde0", &cap, "-Q in");
    let m = 4 << 20;
    tcp_transfer(&mut f1, &mut f2, &ip(3), &d, m);
    tcp_transfer(&mut f2, &mut f1, &ip(2), &d, m);
    tcp_transfer(&mut f1, &mut h, &ip(1), &d, m);
    tcp_transfer(&mut h, &mut f2, &ip(3), &d, m);
    tcp_transfer(&mut f1, &mut c, &ip(4), &d, 2 << 20);
    tcp_transfer(&mut c, &mut f2, &ip(3), &d, 2 << 20);
    tcp_transfer(&mut h, &mut c, &ip(4), &d, 2 << 20);
    let text = captured(t, &cap);
    assert_standard_frames(&text, 1500, 1000);
    std::thread::sleep(Duration::from_millis(400));
    let j = std::fs::read_to_string(&stats).expect("host's stats");
    assert_eq!(
        j.matches("\"superframes\":\"negotiated\"").count(),
        2,
        "the fast clients, and only they, negotiated: {j}"
    );
    assert!(
        stat_sum(&j, "wire_super") > 0,
        "no super-frame crossed the switch whole: {j}"
    );
    drop(f1);
    drop(f2);
    drop(c);
    let o = h.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}

#[test]
fn fast_and_classic_clients_mixed_on_a_switch() {
    mixed(None, "sfmix", 141);
}

#[test]
fn fast_and_classic_clients_mixed_on_a_switch_on_the_epoll_driver() {
    mixed(Some("poll"), "sfmixp", 142);
}

/// vdeplug-fast's `switch://` (a node with no tap of its own) offers super-frames too: two
/// vdens-fast clients negotiate and pass them whole to each other, byte-exact both ways.
#[test]
fn a_vdeplug_fast_switch_passes_super_frames_between_its_clients() {
    let d = TempDir::new("sfvpf");
    let dir = d.join("sw");
    let vnl = format!("vde://{}", dir.display());
    let mut c = Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"));
    c.arg("null://").arg(format!("switch://{}", dir.display()));
    let _sw = Daemon::start("vdeplug-fast switch", c);
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    let mut nodes: Vec<(Node, std::path::PathBuf)> = (0..2)
        .map(|i| {
            let stats = d.join(&format!("c{i}.json"));
            let args = ["--stats", stats.to_str().unwrap(), vnl.as_str(), "sh", "-s"];
            (
                Node::start(&format!("c{i}"), vdens_fast(Who::Root, &d, &args)),
                stats,
            )
        })
        .collect();
    for (i, (n, _)) in nodes.iter_mut().enumerate() {
        n.up("vde0", &format!("10.143.0.{}/24", i + 1), None);
    }
    let (a, b) = nodes.split_at_mut(1);
    let ((a, fa), (b, fb)) = ((&mut a[0].0, &a[0].1), (&mut b[0].0, &b[0].1));
    a.ping("10.143.0.2", 2, None);
    tcp_transfer(a, b, "10.143.0.2", &d, 8 << 20);
    tcp_transfer(b, a, "10.143.0.1", &d, 8 << 20);
    for (n, f) in [(a, fa), (b, fb)] {
        let j = fresh_stats(n, f, "vde0");
        assert_eq!(port_str(&j, "vde0", "superframes"), "negotiated", "{j}");
        assert!(stat_sum(&j, "wire_super") > 0, "{j}");
    }
}

/// The counters of the one port of a stats line whose super-frames are "negotiated", in
/// direction `dir` (`tap_to_link`: from it into the node, `link_to_tap`: to it).
fn negotiated_port<'a>(json: &'a str, dir: &str) -> &'a str {
    let ports: Vec<&str> = json
        .split("{\"name\"")
        .filter(|p| p.contains("\"superframes\":\"negotiated\""))
        .collect();
    assert_eq!(ports.len(), 1, "one negotiated port: {json}");
    let p = ports[0];
    let at = p.find(&format!("\"{dir}\"")).expect("the direction");
    let rest = &p[at..];
    &rest[..rest.find('}').unwrap_or(rest.len())]
}

/// The host's own offloading tap to a vdens-fast client (issue 13): its TCP super-frames cross
/// to the client whole (tagged), IPv4 and IPv6 at MTU 9000, sha256-exact, and the host's
/// stats count them as sent whole to the client's port.
fn host_tap_to_capable_client(scheme: &str, engine: Option<&str>, tag: &str, net: u8) {
    let d = TempDir::new(tag);
    let extra: Vec<&str> = engine.map(|e| vec!["--engine", e]).unwrap_or_default();
    let (mut h, dir, stats) = node_host(&d, scheme, &extra);
    let vnl = format!("vde://{}", dir.display());
    let mut f = ns_node("fast", Impl::Fast, &d, &[&vnl]);
    h.up("vde0", &format!("10.{net}.0.1/24"), Some(9000));
    f.up("vde0", &format!("10.{net}.0.2/24"), Some(9000));
    h.sh(&format!("ip -6 addr add fd00:{net}::1/64 dev vde0 nodad"), 5);
    f.sh(&format!("ip -6 addr add fd00:{net}::2/64 dev vde0 nodad"), 5);
    h.ping(&format!("10.{net}.0.2"), 1, None);
    h.ping(&format!("fd00:{net}::2"), 1, None);
    std::thread::sleep(Duration::from_millis(300));
    let before = stat_sum(
        negotiated_port(
            &std::fs::read_to_string(&stats).expect("host's stats"),
            "link_to_tap",
        ),
        "wire_super",
    );
    tcp_transfer(&mut h, &mut f, &format!("10.{net}.0.2"), &d, 8 << 20);
    tcp_transfer(&mut h, &mut f, &format!("fd00:{net}::2"), &d, 8 << 20);
    // The other way still works (the client's super-frames to the host's tap).
    tcp_transfer(&mut f, &mut h, &format!("10.{net}.0.1"), &d, 2 << 20);
    std::thread::sleep(Duration::from_millis(400));
    let j = std::fs::read_to_string(&stats).expect("host's stats");
    let to_client = negotiated_port(&j, "link_to_tap");
    assert!(
        stat_sum(to_client, "wire_super") > before + 20,
        "the host's super-frames did not go whole to the client ({before} before): {j}"
    );
    assert_eq!(port_str(&j, "vde0", "offload"), "cut", "the host's tap: {j}");
    drop(f);
    let o = h.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}

#[test]
fn the_host_tap_sends_super_frames_whole_to_a_capable_client() {
    host_tap_to_capable_client("switch", None, "sfhost", 144);
}

#[test]
fn the_hub_host_tap_sends_super_frames_whole_to_a_capable_client() {
    host_tap_to_capable_client("hub", None, "sfhosthub", 150);
}

#[test]
fn the_host_tap_sends_super_frames_whole_on_the_epoll_driver() {
    host_tap_to_capable_client("switch", Some("poll"), "sfhostp", 145);
}

/// The host's tap to a vdens-fast and a classic vdens client at once: whole to the first
/// (counted), cut for the second, whose tap never sees a frame over its MTU nor a bad
/// checksum; TCP sha256-exact to both.
#[test]
fn the_host_tap_sends_whole_to_a_capable_client_and_cut_to_a_classic_one() {
    let d = TempDir::new("sfhostmix");
    let (mut h, dir, stats) = node_host(&d, "switch", &[]);
    let vnl = format!("vde://{}", dir.display());
    let mut f = ns_node("fast", Impl::Fast, &d, &[&vnl]);
    let mut c = ns_node("classic", Impl::Classic, &d, &[&vnl]);
    h.up("vde0", "10.146.0.1/24", None);
    f.up("vde0", "10.146.0.2/24", None);
    c.up("vde0", "10.146.0.3/24", None);
    h.ping("10.146.0.2", 1, None);
    h.ping("10.146.0.3", 1, None);
    let cap = d.join("classic.txt");
    let t = capture(&mut c, "vde0", &cap, "-Q in");
    tcp_transfer(&mut h, &mut f, "10.146.0.2", &d, 4 << 20);
    tcp_transfer(&mut h, &mut c, "10.146.0.3", &d, 4 << 20);
    let text = captured(t, &cap);
    assert_standard_frames(&text, 1500, 1000);
    std::thread::sleep(Duration::from_millis(400));
    let j = std::fs::read_to_string(&stats).expect("host's stats");
    assert!(
        stat_sum(negotiated_port(&j, "link_to_tap"), "wire_super") > 20,
        "no super-frame went whole to the capable client: {j}"
    );
    assert!(
        stat_sum(&j, "super_frames") > 20,
        "no super-frame cut for the classic client: {j}"
    );
    drop(f);
    drop(c);
    let o = h.finish(20);
    assert_eq!(o.code, Some(0), "host: {}", o.stderr);
}
