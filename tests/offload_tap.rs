//! Userspace TSO/GRO through real taps: two network namespaces of the test's own, each with a
//! tap opened with IFF_VNET_HDR and TUNSETOFFLOAD(CSUM|TSO4|TSO6|TSO_ECN|USO4|USO6), joined by a
//! forwarder that does what the engine will do: tap read -> `gso::segment` into standard frames
//! -> `gro::Coalescer` -> tap write (header + frame). A TCP transfer each way between the
//! namespaces' own stacks must arrive byte for byte, the kernel must have handed the forwarder
//! super-frames (gso_type != NONE), and it must have accepted coalesced super-frame writes.
//! UDP sent with UDP_SEGMENT must reach the kernel as USO super-frames and arrive as datagrams.
//!
//! Needs root (CAP_SYS_ADMIN for the namespaces, CAP_NET_ADMIN in them), as in CI.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vdens_fast::sys;
use vdens_fast::wire::gro::{Coalescer, BUF_LEN};
use vdens_fast::wire::gso;
use vdens_fast::wire::vnet::{self, VnetHdr};

const HDR: usize = vnet::LEN;
const STEP: Duration = Duration::from_secs(20);

fn bounded<T: Send + 'static>(t: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(t) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(_) => {
            if h.is_finished() {
                if let Err(e) = h.join() {
                    std::panic::resume_unwind(e);
                }
            }
            panic!("{what}: did not finish within {t:?}")
        }
    }
}

/// A tap with offloads, up with `addr`, in a new network namespace; and that namespace, which
/// lives as long as either descriptor.
struct Side {
    tap: OwnedFd,
    ns: OwnedFd,
}

fn side(name: &'static str, addr: &'static str) -> Side {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the offload tap test needs root (to create network namespaces and taps); run the integration tests as root, as CI does"
    );
    std::thread::spawn(move || {
        // Only this thread enters the new namespace; the `ip` commands it runs inherit it.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) in the test thread");
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("open /dev/net/tun");
        let tap = OwnedFd::from(tun);
        sys::tun_set_iff_tap_vnet(tap.as_fd(), name).expect("TUNSETIFF with IFF_VNET_HDR");
        sys::tun_set_vnet_hdr_sz(tap.as_fd(), HDR as i32).expect("TUNSETVNETHDRSZ");
        sys::tun_set_offload(
            tap.as_fd(),
            sys::TUN_F_CSUM
                | sys::TUN_F_TSO4
                | sys::TUN_F_TSO6
                | sys::TUN_F_TSO_ECN
                | sys::TUN_F_USO4
                | sys::TUN_F_USO6,
        )
        .expect("TUNSETOFFLOAD");
        let mut add = vec!["addr", "add", addr, "dev", name];
        if addr.contains(':') {
            add.push("nodad");
        }
        for args in [vec!["link", "set", "dev", name, "up"], add] {
            let st = std::process::Command::new("ip")
                .args(&args)
                .status()
                .expect("run ip");
            assert!(st.success(), "ip {args:?} failed");
        }
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        fcntl(&tap, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("O_NONBLOCK");
        let ns = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("open own netns"));
        Side { tap, ns }
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

#[derive(Default)]
struct Counters {
    /// Per direction (0: a->b, 1: b->a).
    gso_reads: [AtomicU64; 2],
    /// Reads without GSO but with a partial checksum, which `segment` completes.
    csum_reads: [AtomicU64; 2],
    reads: [AtomicU64; 2],
    frames: [AtomicU64; 2],
    super_writes: [AtomicU64; 2],
    writes: [AtomicU64; 2],
    failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Counters {
    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_failure.lock().unwrap();
        if f.is_none() {
            *f = Some(what);
        }
    }
}

/// What the engine will do per direction: read a batch from one tap, segment every read into
/// standard frames (the VDE wire), coalesce them, write the results to the other tap.
fn forward(taps: [OwnedFd; 2], stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let mut rbuf = vec![0u8; HDR + 70_000];
    let mut scratch = vec![0u8; 70_000];
    let mut gro = [
        Coalescer::new(vec![0u8; BUF_LEN]),
        Coalescer::new(vec![0u8; BUF_LEN]),
    ];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [
            PollFd::new(taps[0].as_fd(), PollFlags::POLLIN),
            PollFd::new(taps[1].as_fd(), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::from(50u16)).is_err() {
            continue;
        }
        let ready = [
            fds[0].revents().is_some_and(|r| !r.is_empty()),
            fds[1].revents().is_some_and(|r| !r.is_empty()),
        ];
        for dir in 0..2 {
            if !ready[dir] {
                continue;
            }
            let (src, dst) = (&taps[dir], &taps[1 - dir]);
            let co = &mut gro[dir];
            let cc = &c;
            let mut emit = |h: &VnetHdr, f: &[u8]| {
                let hb = h.to_bytes();
                let iov = [IoSlice::new(&hb[..HDR]), IoSlice::new(f)];
                match nix::sys::uio::writev(dst.as_fd(), &iov) {
                    Ok(n) if n == HDR + f.len() => {
                        cc.writes[dir].fetch_add(1, Ordering::Relaxed);
                        if h.gso_kind() != vnet::GSO_NONE {
                            cc.super_writes[dir].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(n) => cc.fail(format!("short tap write {n} of {}", HDR + f.len())),
                    Err(e) => cc.fail(format!("tap write of {h:?} len {}: {e}", f.len())),
                }
            };
            for _ in 0..64 {
                let n = match nix::unistd::read(src, &mut rbuf) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => {
                        c.fail(format!("tap read: {e}"));
                        break;
                    }
                };
                let h = match VnetHdr::parse(&rbuf[..n], HDR) {
                    Ok(h) => h,
                    Err(e) => {
                        c.fail(format!("tap read: {e}"));
                        continue;
                    }
                };
                c.reads[dir].fetch_add(1, Ordering::Relaxed);
                if h.gso_kind() != vnet::GSO_NONE {
                    c.gso_reads[dir].fetch_add(1, Ordering::Relaxed);
                } else if h.flags & vnet::F_NEEDS_CSUM != 0 {
                    c.csum_reads[dir].fetch_add(1, Ordering::Relaxed);
                }
                let r = gso::segment(&h, &rbuf[HDR..n], &mut scratch, |seg| {
                    assert!(seg.len() <= 1514, "segment of {} bytes", seg.len());
                    c.frames[dir].fetch_add(1, Ordering::Relaxed);
                    co.push(seg, &mut emit);
                });
                if let Err(e) = r {
                    c.fail(format!("segment {h:?}: {e}"));
                }
            }
            co.flush(&mut emit);
        }
    }
}

fn pat(i: u64) -> u8 {
    (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (i as u8)
}

fn send_pattern(s: &mut TcpStream, n: u64) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    while off < n {
        let k = (n - off).min(buf.len() as u64) as usize;
        for (j, b) in buf[..k].iter_mut().enumerate() {
            *b = pat(off + j as u64);
        }
        s.write_all(&buf[..k]).expect("send");
        off += k as u64;
    }
}

fn recv_pattern(s: &mut TcpStream, n: u64, what: &str) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    while off < n {
        let k = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{what}: read at {off}: {e}"));
        assert!(k > 0, "{what}: connection closed at {off} of {n}");
        for (j, &b) in buf[..k].iter().enumerate() {
            let i = off + j as u64;
            assert_eq!(b, pat(i), "{what}: byte {i} differs");
        }
        off += k as u64;
    }
}

/// Stops and joins the forwarder even when the test fails; the taps (and so the namespaces)
/// go with it.
struct Forwarder {
    stop: Arc<AtomicBool>,
    h: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.h.take() {
            let _ = h.join();
        }
    }
}

/// Addresses of one run: a's and b's (with prefix, for `ip addr add`) and b's server address.
#[derive(Clone, Copy)]
struct Net {
    a: &'static str,
    b: &'static str,
    server: &'static str,
}

#[test]
fn tcp_v4_through_segment_and_coalesce_between_two_taps() {
    transfer(Net {
        a: "10.77.0.1/24",
        b: "10.77.0.2/24",
        server: "10.77.0.2:5001",
    });
}

#[test]
fn tcp_v6_through_segment_and_coalesce_between_two_taps() {
    // nodad: the addresses are usable at once instead of after duplicate address detection.
    transfer(Net {
        a: "fd77::1/64",
        b: "fd77::2/64",
        server: "[fd77::2]:5001",
    });
}

/// Two sides joined by a running forwarder; returns their namespaces.
fn joined(net: Net) -> (OwnedFd, OwnedFd, Forwarder, Arc<Counters>) {
    let a = side("gsoa0", net.a);
    let b = side("gsob0", net.b);
    let c = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, c2) = (stop.clone(), c.clone());
    let taps = [a.tap, b.tap];
    let fwd = Forwarder {
        stop,
        h: Some(std::thread::spawn(move || forward(taps, s2, c2))),
    };
    (a.ns, b.ns, fwd, c)
}

fn transfer(net: Net) {
    const UP: u64 = 64 << 20;
    const DOWN: u64 = 16 << 20;
    let c = bounded(Duration::from_secs(150), "offload transfer", move || {
        let (a_ns, b_ns, _fwd, c) = joined(net);
        let listener = in_ns(&b_ns, move || {
            let l = TcpListener::bind(net.server).expect("bind in namespace b");
            l.set_nonblocking(true).unwrap();
            l
        })
        .join()
        .expect("listener thread");
        let server = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut s = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(t0.elapsed() < STEP, "no connection arrived");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(STEP)).unwrap();
            s.set_write_timeout(Some(STEP)).unwrap();
            recv_pattern(&mut s, UP, "a->b");
            send_pattern(&mut s, DOWN);
            s.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let client = in_ns(&a_ns, move || {
            let to: SocketAddr = net.server.parse().unwrap();
            let mut s = TcpStream::connect_timeout(&to, STEP).expect("connect from namespace a");
            s.set_read_timeout(Some(STEP)).unwrap();
            s.set_write_timeout(Some(STEP)).unwrap();
            let t0 = Instant::now();
            send_pattern(&mut s, UP);
            recv_pattern(&mut s, DOWN, "b->a");
            let mut rest = [0u8; 1];
            assert_eq!(s.read(&mut rest).expect("read to the end"), 0);
            // Information only (never asserted): includes generating and checking every byte.
            let t = t0.elapsed();
            eprintln!(
                "{}: {} MiB in {t:.2?} ({:.0} Mbit/s, one forwarder thread)",
                net.server,
                (UP + DOWN) >> 20,
                (UP + DOWN) as f64 * 8.0 / t.as_secs_f64() / 1e6
            );
        });
        let (rc, rs) = (client.join(), server.join());
        if rc.is_err() || rs.is_err() {
            eprintln!(
                "forwarder failures {}: {:?}",
                c.failures.load(Ordering::Relaxed),
                c.first_failure.lock().unwrap()
            );
        }
        rc.unwrap_or_else(|e| std::panic::resume_unwind(e));
        rs.unwrap_or_else(|e| std::panic::resume_unwind(e));
        c
    });
    let g = |a: &[AtomicU64; 2], d: usize| a[d].load(Ordering::Relaxed);
    for (d, what) in [(0, "a->b"), (1, "b->a")] {
        eprintln!(
            "{}: {what}: {} tap reads ({} super-frames, {} partial checksums) -> {} frames -> {} tap writes ({} super-frames)",
            net.server,
            g(&c.reads, d),
            g(&c.gso_reads, d),
            g(&c.csum_reads, d),
            g(&c.frames, d),
            g(&c.writes, d),
            g(&c.super_writes, d)
        );
        assert!(
            g(&c.gso_reads, d) > 0,
            "{what}: the kernel never handed out a super-frame"
        );
        assert!(
            g(&c.super_writes, d) > 0,
            "{what}: no coalesced super-frame was written"
        );
    }
    assert_eq!(
        c.failures.load(Ordering::Relaxed),
        0,
        "forwarder: {:?}",
        c.first_failure.lock().unwrap()
    );
}

#[test]
fn udp_gso_through_segment_between_two_taps() {
    const SEG: usize = 1200;
    const PER: usize = 40;
    const SENDS: u32 = 100;
    let c = bounded(Duration::from_secs(90), "USO transfer", || {
        let net = Net {
            a: "10.78.0.1/24",
            b: "10.78.0.2/24",
            server: "10.78.0.2:5002",
        };
        let (a_ns, b_ns, _fwd, c) = joined(net);
        let rx = in_ns(&b_ns, move || {
            std::net::UdpSocket::bind(net.server).expect("bind UDP in namespace b")
        })
        .join()
        .expect("receiver socket");
        rx.set_read_timeout(Some(STEP)).unwrap();
        let tx = in_ns(&a_ns, move || {
            let s = std::net::UdpSocket::bind("10.78.0.1:0").expect("bind UDP in namespace a");
            s.connect(net.server).expect("connect UDP");
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::UdpGsoSegment, &(SEG as i32))
                .expect("UDP_SEGMENT");
            s
        })
        .join()
        .expect("sender socket");
        // One send of PER datagrams (the last one shorter) per round; each round is received
        // in full before the next, so no receive queue overflows.
        let dgram = |k: u32, d: usize| -> Vec<u8> {
            let n = if d + 1 == PER { SEG / 2 + 7 } else { SEG };
            let mut v = vec![0u8; n];
            v[..4].copy_from_slice(&k.to_be_bytes());
            v[4..6].copy_from_slice(&(d as u16).to_be_bytes());
            for (j, b) in v[6..].iter_mut().enumerate() {
                *b = pat((k as u64) << 20 | (d as u64) << 11 | j as u64);
            }
            v
        };
        let mut buf = vec![0u8; 2048];
        for k in 0..SENDS {
            let all: Vec<u8> = (0..PER).flat_map(|d| dgram(k, d)).collect();
            assert_eq!(tx.send(&all).expect("send with UDP_SEGMENT"), all.len());
            for d in 0..PER {
                let n = rx
                    .recv(&mut buf)
                    .unwrap_or_else(|e| panic!("datagram {d} of send {k} never arrived: {e}"));
                assert_eq!(buf[..n], dgram(k, d)[..], "datagram {d} of send {k}");
            }
        }
        c
    });
    let g = |a: &[AtomicU64; 2]| a[0].load(Ordering::Relaxed);
    eprintln!(
        "USO a->b: {} tap reads ({} super-frames) -> {} frames -> {} tap writes",
        g(&c.reads),
        g(&c.gso_reads),
        g(&c.frames),
        g(&c.writes)
    );
    assert!(
        g(&c.gso_reads) > 0,
        "the kernel never handed out a USO super-frame"
    );
    assert!(g(&c.frames) >= (PER as u64) * (SENDS as u64));
    assert_eq!(
        c.failures.load(Ordering::Relaxed),
        0,
        "forwarder: {:?}",
        c.first_failure.lock().unwrap()
    );
}
