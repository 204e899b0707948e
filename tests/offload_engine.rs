//! The engine with offloading taps (IFF_VNET_HDR + TUNSETOFFLOAD, opened by
//! `tap::open_offload` as vdens-fast opens them), on both engines: two network
//! namespaces of the test's own, each with such a tap and an engine, joined by a relay that
//! stands for the VDE wire and records every frame's length. TCP both ways at once must
//! arrive intact (sha256 of what was sent and what arrived), the wire must carry only standard
//! frames (at most MTU + 14 + 4 bytes), the engines must have cut super-frames read from the
//! taps and written coalesced ones, and UDP (plain and UDP_SEGMENT) and ICMP must pass.
//!
//! The binary's side: `--no-offload` opens plain taps, the default opens offloading ones, and a
//! classic vdens peer over ptp:// still exchanges data with an offloading vdens-fast.
//!
//! Needs root (CAP_SYS_ADMIN for the namespaces, CAP_NET_ADMIN in them), as in CI.

mod enginekit;

use enginekit::common::{self, has_vnet_hdr, ns_node, stat_sum, tcp_transfer, vdens_fast, Impl, Node, Who};
use enginekit::{bounded, opts, TempDir, STEP};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Engine, Port, PortSnapshot, TapOffload, LINK_TO_TAP, TAP_TO_LINK};
use vdens_fast::transport::{Framing, Link};

/// A namespace of the test's own with an offloading tap `vde0` (up, `addr`, `mtu`).
struct Side {
    tap: OwnedFd,
    offload: TapOffload,
    ns: OwnedFd,
}

fn side(addr: &'static str, mtu: u32) -> Side {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the offload engine test needs root (to create network namespaces and taps); run the integration tests as root, as CI does"
    );
    std::thread::spawn(move || {
        // Only this thread enters the new namespace; the commands it runs inherit it.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) in the test thread");
        let (tap, offload) = vdens_fast::tap::open_offload("vde0").expect("open an offloading tap");
        let mtu = mtu.to_string();
        for args in [
            vec!["link", "set", "dev", "lo", "up"],
            vec!["link", "set", "dev", "vde0", "mtu", &mtu, "up"],
            vec!["addr", "add", addr, "dev", "vde0"],
        ] {
            let st = std::process::Command::new("ip")
                .args(&args)
                .status()
                .expect("run ip");
            assert!(st.success(), "ip {args:?} failed");
        }
        let ns = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("open own netns"));
        Side { tap, offload, ns }
    })
    .join()
    .expect("namespace thread")
}

/// Runs `f` in a new thread inside network namespace `ns`.
fn in_ns<T: Send + 'static>(
    ns: &OwnedFd,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.try_clone().expect("dup netns fd");
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// What the relay saw, per direction (0: a -> b, 1: b -> a).
#[derive(Default)]
struct Wire {
    frames: [AtomicU64; 2],
    longest: [AtomicUsize; 2],
}

/// The VDE wire between the two engines: forwards datagrams between two socket pairs and
/// records their lengths. Stopped and joined on drop.
struct Relay {
    stop: Arc<AtomicBool>,
    h: Option<std::thread::JoinHandle<()>>,
    wire: Arc<Wire>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.h.take() {
            let _ = h.join();
        }
    }
}

fn dgram_pair() -> (OwnedFd, OwnedFd) {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair")
}

/// Two links for the engines and the relay between them.
fn relay() -> (Link, Link, Relay) {
    let (la, ra) = dgram_pair();
    let (lb, rb) = dgram_pair();
    for f in [&ra, &rb] {
        nix::sys::socket::setsockopt(f, nix::sys::socket::sockopt::SndBuf, &(4 << 20)).unwrap();
        nix::sys::socket::setsockopt(f, nix::sys::socket::sockopt::RcvBuf, &(4 << 20)).unwrap();
        let tv = nix::sys::time::TimeVal::new(1, 0);
        nix::sys::socket::setsockopt(f, nix::sys::socket::sockopt::SendTimeout, &tv).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let wire = Arc::new(Wire::default());
    let (s, w) = (stop.clone(), wire.clone());
    let h = std::thread::spawn(move || {
        let fds = [ra, rb];
        let mut buf = vec![0u8; 70_000];
        while !s.load(Ordering::Relaxed) {
            let mut p = [
                PollFd::new(fds[0].as_fd(), PollFlags::POLLIN),
                PollFd::new(fds[1].as_fd(), PollFlags::POLLIN),
            ];
            if poll(&mut p, PollTimeout::from(50u16)).is_err() {
                continue;
            }
            let ready = [0, 1].map(|i| p[i].revents().is_some_and(|r| !r.is_empty()));
            for d in 0..2 {
                if !ready[d] {
                    continue;
                }
                for _ in 0..64 {
                    let n = match nix::sys::socket::recv(
                        std::os::fd::AsRawFd::as_raw_fd(&fds[d]),
                        &mut buf,
                        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                    ) {
                        Ok(n) => n,
                        Err(_) => break,
                    };
                    w.frames[d].fetch_add(1, Ordering::Relaxed);
                    w.longest[d].fetch_max(n, Ordering::Relaxed);
                    // Blocks while the engine's queue is full (at most 1 s: SO_SNDTIMEO).
                    let _ = nix::unistd::write(&fds[1 - d], &buf[..n]);
                }
            }
        }
    });
    (
        Link::single("relay-a", Framing::Datagram, la),
        Link::single("relay-b", Framing::Datagram, lb),
        Relay {
            stop,
            h: Some(h),
            wire,
        },
    )
}

/// Deterministic bytes, different per seed.
fn data(seed: u64, n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.0.join(name);
    std::fs::write(&p, bytes).expect("write transfer file");
    let o = std::process::Command::new("sha256sum")
        .arg(&p)
        .output()
        .expect("run sha256sum");
    let s = String::from_utf8_lossy(&o.stdout);
    s.split_whitespace().next().unwrap_or("").to_string()
}

fn read_all(s: &mut TcpStream, n: usize, what: &str) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut off = 0;
    while off < n {
        let k = s
            .read(&mut v[off..])
            .unwrap_or_else(|e| panic!("{what}: read at {off} of {n}: {e}"));
        assert!(k > 0, "{what}: connection closed at {off} of {n}");
        off += k;
    }
    v
}

/// TCP both ways at once on one connection from a to b; checks the sha256 of each direction.
fn tcp_both_ways(a: &Side, b: &Side, server: &'static str, bytes: usize, dir: &TempDir) {
    let listener = in_ns(&b.ns, move || {
        let l = TcpListener::bind(server).expect("bind in namespace b");
        l.set_nonblocking(true).unwrap();
        l
    })
    .join()
    .expect("listener thread");
    let up = Arc::new(data(1, bytes));
    let down = Arc::new(data(2, bytes));
    let (up2, down2) = (up.clone(), down.clone());
    let srv = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(t0.elapsed() < STEP, "no connection arrived");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(STEP)).unwrap();
        s.set_write_timeout(Some(STEP)).unwrap();
        let mut w = s.try_clone().unwrap();
        let tx = std::thread::spawn(move || w.write_all(&down2).expect("b sends"));
        let got = read_all(&mut s, up2.len(), "a->b");
        tx.join().expect("b's sender");
        got
    });
    let cli = in_ns(&a.ns, move || {
        let to: SocketAddr = server.parse().unwrap();
        let mut s = TcpStream::connect_timeout(&to, STEP).expect("connect from namespace a");
        s.set_read_timeout(Some(STEP)).unwrap();
        s.set_write_timeout(Some(STEP)).unwrap();
        let mut w = s.try_clone().unwrap();
        let tx = std::thread::spawn(move || w.write_all(&up).expect("a sends"));
        let got = read_all(&mut s, bytes, "b->a");
        tx.join().expect("a's sender");
        got
    });
    let (rc, rs) = (cli.join(), srv.join());
    let got_down = rc.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let got_up = rs.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_eq!(
        sha256(dir, "up-rx", &got_up),
        sha256(dir, "up-tx", &data(1, bytes)),
        "a->b: sha256 of what arrived differs"
    );
    assert_eq!(
        sha256(dir, "down-rx", &got_down),
        sha256(dir, "down-tx", &data(2, bytes)),
        "b->a: sha256 of what arrived differs"
    );
}

/// UDP datagrams of many sizes both ways, and UDP_SEGMENT sends (USO super-frames) from a.
fn udp_both_ways(a: &Side, b: &Side, addr_a: &'static str, addr_b: &'static str, mtu: u32) {
    let sa = in_ns(&a.ns, move || UdpSocket::bind(addr_a).expect("bind UDP in a"))
        .join()
        .unwrap();
    let sb = in_ns(&b.ns, move || UdpSocket::bind(addr_b).expect("bind UDP in b"))
        .join()
        .unwrap();
    for s in [&sa, &sb] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    sa.connect(addr_b).unwrap();
    sb.connect(addr_a).unwrap();
    let max = mtu as usize - 28;
    let mut buf = vec![0u8; 65536];
    let sizes = [0usize, 1, 17, 100, 512, 1000, 1400, max - 1, max];
    for (from, to, what) in [(&sa, &sb, "a->b"), (&sb, &sa, "b->a")] {
        for (i, &n) in sizes.iter().enumerate() {
            let d = data(100 + i as u64, n);
            from.send(&d).expect("UDP send");
            let k = to
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("{what}: UDP datagram of {n} bytes never arrived: {e}"));
            assert_eq!(buf[..k], d[..], "{what}: UDP datagram of {n} bytes");
        }
    }
    // USO: one send of 20 datagrams of 1000 bytes (the last one shorter).
    nix::sys::socket::setsockopt(&sa, nix::sys::socket::sockopt::UdpGsoSegment, &1000).expect("UDP_SEGMENT");
    for round in 0..5u64 {
        let all = data(200 + round, 19 * 1000 + 321);
        assert_eq!(sa.send(&all).expect("send with UDP_SEGMENT"), all.len());
        for (i, want) in all.chunks(1000).enumerate() {
            let k = sb
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("USO round {round}: datagram {i} never arrived: {e}"));
            assert_eq!(buf[..k], want[..], "USO round {round}: datagram {i}");
        }
    }
}

/// ping from a to b (default size and a full-size frame with DF).
fn ping(a: &Side, to: &'static str, mtu: u32) {
    in_ns(&a.ns, move || {
        for size in [56, mtu - 28] {
            let o = std::process::Command::new("ping")
                .args(["-n", "-q", "-c", "3", "-i", "0.2", "-w", "10", "-M", "do", "-s"])
                .arg(size.to_string())
                .arg(to)
                .output()
                .expect("run ping");
            assert!(
                o.status.success(),
                "ping -s {size} {to} failed: {}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    })
    .join()
    .expect("ping thread");
}

fn counts(s: &[PortSnapshot]) -> String {
    format!("{s:?}")
}

/// Two offloading taps, one engine each (`ca`, `cb`), over the recording relay.
fn through_engines(ca: EngineChoice, cb: EngineChoice, mtu: u32, net: u8) {
    bounded(Duration::from_secs(240), "offload engines", move || {
        let dir = TempDir::new("offload-engine");
        let addr = |h: u8| -> &'static str { Box::leak(format!("10.{net}.0.{h}").into_boxed_str()) };
        let cidr = |h: u8| -> &'static str { Box::leak(format!("10.{net}.0.{h}/24").into_boxed_str()) };
        let a = side(cidr(1), mtu);
        let b = side(cidr(2), mtu);
        assert!(
            a.offload.enabled() && a.offload.flags != 0,
            "offloads refused: {:?}",
            a.offload
        );
        let (la, lb, relay) = relay();
        let port = |s: &Side, l: Link| Port {
            name: "vde0".into(),
            tap: s.tap.try_clone().expect("dup tap"),
            link: l,
            offload: s.offload,
        };
        let ea = Engine::start(opts(ca), vec![port(&a, la)]).expect("engine a starts");
        let eb = Engine::start(opts(cb), vec![port(&b, lb)]).expect("engine b starts");
        ping(&a, addr(2), mtu);
        let server: &'static str = Box::leak(format!("{}:5001", addr(2)).into_boxed_str());
        tcp_both_ways(&a, &b, server, 24 << 20, &dir);
        let ua: &'static str = Box::leak(format!("{}:6001", addr(1)).into_boxed_str());
        let ub: &'static str = Box::leak(format!("{}:6002", addr(2)).into_boxed_str());
        udp_both_ways(&a, &b, ua, ub, mtu);
        let (sa, sb) = (ea.stop(), eb.stop());
        let wire = relay.wire.clone();
        drop(relay);
        let limit = mtu as usize + 14 + 4;
        for (d, what) in [(0, "a->b"), (1, "b->a")] {
            let longest = wire.longest[d].load(Ordering::Relaxed);
            eprintln!(
                "{what}: {} frames on the wire, longest {longest} bytes",
                wire.frames[d].load(Ordering::Relaxed)
            );
            assert!(
                longest <= limit,
                "{what}: a {longest}-byte frame on the VDE wire (MTU {mtu})"
            );
            assert!(
                longest > limit - 4 - 100,
                "{what}: no full-size frame on the wire ({longest})"
            );
        }
        eprintln!("engine a ({ca:?}): {}", counts(&sa));
        eprintln!("engine b ({cb:?}): {}", counts(&sb));
        for (s, other, what) in [(&sa, &sb, "a->b"), (&sb, &sa, "b->a")] {
            let (t2l, l2t) = (s[0].dirs[TAP_TO_LINK], other[0].dirs[LINK_TO_TAP]);
            assert!(
                t2l.super_frames > 0,
                "{what}: no super-frame was read and cut: {t2l:?}"
            );
            assert!(t2l.segments >= 2 * t2l.super_frames, "{what}: {t2l:?}");
            assert!(
                l2t.super_frames > 0,
                "{what}: no coalesced super-frame was written: {l2t:?}"
            );
            assert_eq!(t2l.dropped(), 0, "{what}: tap->link drops: {t2l:?}");
            assert_eq!(l2t.dropped(), 0, "{what}: link->tap drops: {l2t:?}");
        }
    });
}

#[test]
fn tcp_udp_icmp_through_offloading_taps_uring() {
    through_engines(EngineChoice::Uring, EngineChoice::Uring, 1500, 81);
}

#[test]
fn tcp_udp_icmp_through_offloading_taps_poll() {
    through_engines(EngineChoice::Poll, EngineChoice::Poll, 1500, 82);
}

#[test]
fn offloading_taps_uring_to_poll() {
    through_engines(EngineChoice::Uring, EngineChoice::Poll, 1500, 83);
}

#[test]
fn offloading_taps_mtu_9000_uring() {
    through_engines(EngineChoice::Uring, EngineChoice::Uring, 9000, 84);
}

#[test]
fn offloading_taps_mtu_9000_poll() {
    through_engines(EngineChoice::Poll, EngineChoice::Poll, 9000, 85);
}

// ------------------------------------------------------------------------------------------
// The binary: vdens-fast with and without --no-offload, and with a classic peer.

fn fast_node(name: &str, dir: &common::TempDir, vnl: &str, stats: &str, no_offload: bool) -> Node {
    let mut args = vec!["--stats", stats, "--stats-interval", "100"];
    if no_offload {
        args.push("--no-offload");
    }
    args.extend([vnl, "sh", "-s"]);
    Node::start(name, vdens_fast(Who::Root, dir, &args))
}

fn fast_pair(no_offload: bool, net: u8) -> (u64, u64) {
    let d = common::TempDir::new("offload-cli");
    let p = format!("ptp://{}", d.join("p").display());
    let (sa, sb) = (d.join("a.json"), d.join("b.json"));
    let mut a = fast_node("a", &d, &p, sa.to_str().unwrap(), no_offload);
    let mut b = fast_node("b", &d, &p, sb.to_str().unwrap(), no_offload);
    let (ia, ib) = (format!("10.{net}.0.1"), format!("10.{net}.0.2"));
    a.up("vde0", &format!("{ia}/24"), None);
    b.up("vde0", &format!("{ib}/24"), None);
    assert_eq!(has_vnet_hdr(&mut a), !no_offload, "a's tap flags");
    assert_eq!(has_vnet_hdr(&mut b), !no_offload, "b's tap flags");
    a.ping(&ib, 3, None);
    tcp_transfer(&mut a, &mut b, &ib, &d, 8 << 20);
    tcp_transfer(&mut b, &mut a, &ia, &d, 8 << 20);
    for n in [a, b] {
        let name = n.name.clone();
        let o = n.finish(20);
        assert_eq!(o.code, Some(0), "{name}: {}", o.stderr);
    }
    let ja = std::fs::read_to_string(&sa).expect("a's stats");
    let jb = std::fs::read_to_string(&sb).expect("b's stats");
    (
        stat_sum(&ja, "super_frames") + stat_sum(&jb, "super_frames"),
        stat_sum(&ja, "segments") + stat_sum(&jb, "segments"),
    )
}

#[test]
fn binary_offloads_by_default() {
    let (supers, segs) = fast_pair(false, 86);
    assert!(
        supers > 0 && segs > supers,
        "no offload seen: {supers} super-frames, {segs} segments"
    );
}

#[test]
fn binary_no_offload_gives_plain_taps() {
    let (supers, segs) = fast_pair(true, 87);
    assert_eq!((supers, segs), (0, 0), "--no-offload still offloaded");
}

#[test]
fn offloading_fast_and_classic_peer_over_ptp() {
    let d = common::TempDir::new("offload-classic");
    let p = format!("ptp://{}", d.join("p").display());
    let sf = d.join("fast.json");
    let mut f = fast_node("fast", &d, &p, sf.to_str().unwrap(), false);
    let mut c = ns_node("classic", Impl::Classic, &d, &[&p]);
    f.up("vde0", "10.88.0.1/24", Some(9000));
    c.up("vde0", "10.88.0.2/24", Some(9000));
    f.ping("10.88.0.2", 2, Some(9000 - 28));
    tcp_transfer(&mut f, &mut c, "10.88.0.2", &d, 16 << 20);
    tcp_transfer(&mut c, &mut f, "10.88.0.1", &d, 16 << 20);
    let o = f.finish(20);
    assert_eq!(o.code, Some(0), "fast: {}", o.stderr);
    drop(c);
    let j = std::fs::read_to_string(&sf).expect("fast's stats");
    assert!(
        stat_sum(&j, "super_frames") > 0,
        "no offload with a classic peer: {j}"
    );
}
