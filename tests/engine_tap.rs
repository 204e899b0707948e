//! Through a real tap in a network namespace of the test's own: frames of every size the tap's
//! MTU allows cross both ways intact and in order, on both engines; and while the io_uring
//! engine carries that traffic, no io-wq worker thread (`iou-wrk-*`) ever exists.
//!
//! Needs root (CAP_SYS_ADMIN for the namespace, CAP_NET_ADMIN/CAP_NET_RAW in it), as in CI.

mod enginekit;
use enginekit as common;

use common::*;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Engine, Port, LINK_TO_TAP, TAP_TO_LINK};

/// MTU 9216 + Ethernet header: the largest frame a packet socket may transmit on the tap.
const MAX_TAP: usize = 9216 + 14;
const MIN: usize = 14;
/// Frames in flight per direction (the tap's queue holds 1000; the packet socket's receive
/// buffer a few hundred KiB).
const WINDOW: usize = 32;

/// A tap `name` (MTU 9216, up) in a new network namespace, and a packet socket on it for the
/// test's ethertype. The namespace lives as long as these descriptors.
fn tap_in_new_netns(name: &'static str) -> (OwnedFd, OwnedFd) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the real-tap test needs root (to create a network namespace and a tap in it); run the integration tests as root, as CI does"
    );
    std::thread::spawn(move || {
        // Only this thread enters the new namespace; commands it spawns inherit it.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) in the test thread");
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("open /dev/net/tun");
        let tun = OwnedFd::from(tun);
        vdens_fast::sys::tun_set_iff_tap(std::os::fd::AsFd::as_fd(&tun), name).expect("TUNSETIFF");
        let st = std::process::Command::new("ip")
            .args(["link", "set", "dev", name, "mtu", "9216", "up"])
            .status()
            .expect("run ip");
        assert!(st.success(), "ip link set {name} mtu 9216 up failed");
        let pkt = vdens_fast::sys::packet_socket(name, ETHERTYPE).expect("packet socket");
        nix::sys::socket::setsockopt(&pkt, nix::sys::socket::sockopt::RcvBufForce, &(16 << 20))
            .expect("SO_RCVBUFFORCE");
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        fcntl(&pkt, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        (tun, pkt)
    })
    .join()
    .expect("namespace thread")
}

/// Is this one of our frames with this salt (the other direction's frames and the kernel's own
/// traffic are skipped)?
fn ours(f: &[u8], salt: u8) -> bool {
    f.len() >= 14 && f[12..14] == ETHERTYPE.to_be_bytes() && f[11] == salt
}

/// Returns the frame count and both peers, which must stay open until the other direction is
/// done too: closing a seqpacket socket with unread data (here, the kernel's own frames) resets
/// the connection, and the engine would lose frames still queued towards it.
fn one_way(mut w: Writer, mut r: Reader, salt: u8, what: &'static str) -> (usize, Writer, Reader) {
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let sender = std::thread::spawn(move || {
        let mut buf = vec![0u8; 10000];
        for (seq, len) in (MIN..=MAX_TAP).enumerate() {
            let t0 = std::time::Instant::now();
            while seq - g.load(Ordering::Acquire) >= WINDOW {
                assert!(t0.elapsed() < STEP, "{what}: window never opened at frame {seq}");
                std::thread::sleep(Duration::from_micros(50));
            }
            make_frame(&mut buf, len, seq as u32, salt);
            w.send(&buf[..len]);
        }
        w
    });
    let mut buf = vec![0u8; 10000];
    for (seq, len) in (MIN..=MAX_TAP).enumerate() {
        loop {
            let n = r
                .recv(&mut buf, STEP)
                .unwrap_or_else(|| panic!("{what}: frame {seq} (len {len}) never arrived"));
            if ours(&buf[..n], salt) {
                check_frame(&buf[..n], len, seq as u32, salt, what);
                break;
            }
        }
        got.store(seq + 1, Ordering::Release);
    }
    let w = sender.join().expect("sender");
    ((MIN..=MAX_TAP).count(), w, r)
}

fn through_tap(choice: EngineChoice, name: &'static str) -> (usize, Vec<String>) {
    bounded(Duration::from_secs(120), "tap transfer", move || {
        let (tap, pkt) = tap_in_new_netns(name);
        let (l, link_w, link_r, _tmp) = link(LinkKind::Seqpacket);
        let engine = Engine::start(
            opts(choice),
            vec![Port {
                name: name.into(),
                tap,
                link: l,
                offload: vdens_fast::engine::TapOffload::NONE,
            }],
        )
        .expect("engine starts");
        let pkt = Arc::new(pkt);
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let sampler = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !d.load(Ordering::Relaxed) {
                for w in iou_workers() {
                    if !seen.contains(&w) {
                        seen.push(w);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        });
        let (pw, pr) = (Writer::Dgram(pkt.clone()), Reader::Dgram(pkt));
        let a = std::thread::spawn(move || one_way(pw, link_r, 1, "tap->link"));
        let b = std::thread::spawn(move || one_way(link_w, pr, 2, "link->tap"));
        let (ra, rb) = (a.join(), b.join());
        done.store(true, Ordering::Relaxed);
        let seen = sampler.join().unwrap();
        let kind = engine.kind();
        let stats = engine.stop();
        if ra.is_err() || rb.is_err() {
            eprintln!("{kind:?} engine counters at the failure: {stats:?}");
        }
        let (n, ..) = ra.unwrap_or_else(|e| std::panic::resume_unwind(e));
        rb.unwrap_or_else(|e| std::panic::resume_unwind(e));
        let (t2l, l2t) = (stats[0].dirs[TAP_TO_LINK], stats[0].dirs[LINK_TO_TAP]);
        // The kernel may send its own frames (IPv6 neighbour discovery) out of the tap too.
        assert!(
            t2l.frames >= n as u64 && t2l.dropped() == 0,
            "tap->link stats {t2l:?}"
        );
        assert_eq!(l2t.frames, n as u64, "link->tap stats {l2t:?}");
        assert_eq!(l2t.dropped(), 0, "link->tap stats {l2t:?}");
        (n, seen)
    })
}

#[test]
fn real_tap_every_size_both_engines_no_iowq() {
    let (n, seen) = through_tap(EngineChoice::Uring, "vfte0");
    assert_eq!(n, MAX_TAP - MIN + 1);
    assert!(
        seen.is_empty(),
        "io-wq workers appeared during the transfer: {seen:?}"
    );
    let (m, _) = through_tap(EngineChoice::Poll, "vfte1");
    assert_eq!(n, m);
}
