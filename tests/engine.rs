//! Frames of every size cross the engine intact both ways, in order, with matching stats; the
//! same suite runs on the io_uring and the poll engine, which must give identical counters.

mod enginekit;
use enginekit as common;

use common::*;
use std::time::Duration;
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Counts, PortSnapshot, UringTuning, LINK_TO_TAP, MAX_FRAME, TAP_TO_LINK};

const MIN: usize = 14;
/// Oversize frames sent after the sweep: dropped and counted.
const OVERSIZE: [usize; 2] = [MAX_FRAME + 1, 9999];
/// A last frame after the oversize ones shows the direction still works.
const LAST: usize = 60;

/// Sends the sweep on `w` and expects it on `r`.
fn one_way(mut w: Writer, mut r: Reader, salt: u8, what: &'static str) -> (Writer, Reader) {
    let sender = std::thread::spawn(move || {
        let mut buf = vec![0u8; 10000];
        let mut seq = 0u32;
        for len in MIN..=MAX_FRAME {
            make_frame(&mut buf, len, seq, salt);
            w.send(&buf[..len]);
            seq += 1;
        }
        for len in OVERSIZE {
            make_frame(&mut buf, len, seq, salt);
            w.send(&buf[..len]);
            seq += 1;
        }
        make_frame(&mut buf, LAST, seq, salt);
        w.send(&buf[..LAST]);
        w
    });
    let mut buf = vec![0u8; 10000];
    let mut seq = 0u32;
    for len in MIN..=MAX_FRAME {
        let n = r
            .recv(&mut buf, STEP)
            .unwrap_or_else(|| panic!("{what}: frame {seq} (len {len}) never arrived"));
        check_frame(&buf[..n], len, seq, salt, what);
        seq += 1;
    }
    seq += OVERSIZE.len() as u32;
    let n = r
        .recv(&mut buf, STEP)
        .unwrap_or_else(|| panic!("{what}: the frame after the oversize ones never arrived"));
    check_frame(&buf[..n], LAST, seq, salt, what);
    (sender.join().expect("sender"), r)
}

fn expected() -> Counts {
    let sweep = (MIN..=MAX_FRAME).count() as u64;
    Counts {
        received: sweep + OVERSIZE.len() as u64 + 1,
        frames: sweep + 1,
        bytes: (MIN..=MAX_FRAME).map(|l| l as u64).sum::<u64>() + LAST as u64,
        oversize: OVERSIZE.len() as u64,
        ..Default::default()
    }
}

fn sweep(choice: EngineChoice, kind: LinkKind) -> Vec<PortSnapshot> {
    sweep_tuned(choice, UringTuning::default(), kind)
}

fn sweep_tuned(choice: EngineChoice, t: UringTuning, kind: LinkKind) -> Vec<PortSnapshot> {
    bounded(Duration::from_secs(120), "sweep", move || {
        let mut rig = rig_tuned(opts(choice), t, kind);
        let engine = rig.engine.take().unwrap();
        let want_kind = match choice {
            EngineChoice::Poll => "poll",
            _ => "uring",
        };
        assert_eq!(engine.kind().name(), want_kind);
        let Rig {
            tap_w,
            tap_r,
            link_w,
            link_r,
            tmp,
            ..
        } = rig;
        let a = std::thread::spawn(move || one_way(tap_w, link_r, 1, "tap->link"));
        let b = std::thread::spawn(move || one_way(link_w, tap_r, 2, "link->tap"));
        let ra = a.join();
        let rb = b.join();
        let stats = engine.stop();
        drop(tmp);
        if let Err(e) = ra {
            std::panic::resume_unwind(e);
        }
        if let Err(e) = rb {
            std::panic::resume_unwind(e);
        }
        stats
    })
}

fn check(kind: LinkKind) {
    let u = sweep(EngineChoice::Uring, kind);
    let p = sweep(EngineChoice::Poll, kind);
    let want = expected();
    assert_eq!(u[0].dirs[TAP_TO_LINK], want, "uring {kind:?} tap->link");
    assert_eq!(u[0].dirs[LINK_TO_TAP], want, "uring {kind:?} link->tap");
    assert_eq!(u, p, "uring and poll counters differ ({kind:?})");
}

#[test]
fn every_size_both_ways_seqpacket() {
    check(LinkKind::Seqpacket);
}

#[test]
fn every_size_both_ways_dgram() {
    check(LinkKind::Dgram);
}

#[test]
fn every_size_both_ways_stream() {
    check(LinkKind::Stream);
}

#[test]
fn every_size_both_ways_ptp_sendto() {
    check(LinkKind::Ptp);
}

/// A ptp link whose peer socket does not exist yet: sends fail with ENOENT, which is counted
/// as a drop, never fatal; the other direction keeps working.
fn no_peer(choice: EngineChoice) -> Counts {
    bounded(Duration::from_secs(60), "no_peer", move || {
        let mut rig = rig(choice, LinkKind::Ptp);
        let tmp = rig.tmp.take().unwrap();
        std::fs::remove_file(tmp.0.join("b")).unwrap();
        let mut buf = vec![0u8; 100];
        for seq in 0..10 {
            make_frame(&mut buf, 60, seq, 1);
            rig.tap_w.send(&buf[..60]);
        }
        make_frame(&mut buf, 70, 0, 2);
        rig.link_w.send(&buf[..70]);
        let n = rig.tap_r.recv(&mut buf, STEP).expect("link->tap still works");
        check_frame(&buf[..n], 70, 0, 2, "link->tap");
        let engine = rig.engine.take().unwrap();
        let deadline = std::time::Instant::now() + STEP;
        loop {
            let s = engine.stats();
            if s[0].dirs[TAP_TO_LINK].received == 10 || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let s = engine.stop();
        drop(tmp);
        s[0].dirs[TAP_TO_LINK]
    })
}

#[test]
fn missing_ptp_peer_counts_send_errors() {
    let want = Counts {
        received: 10,
        send_error: 10,
        ..Default::default()
    };
    assert_eq!(no_peer(EngineChoice::Uring), want, "uring");
    assert_eq!(no_peer(EngineChoice::Poll), want, "poll");
}

/// --stats FILE: written every interval (FILE.tmp renamed over FILE), on dump_stats, and with
/// the final counters at stop.
fn stats_file(choice: EngineChoice) {
    let dir = TempDir::new("stats");
    let path = dir.0.join("stats.json");
    let mut o = opts(choice);
    o.stats = Some(path.clone());
    o.stats_interval = Duration::from_millis(50);
    let mut rig = rig_with(o, LinkKind::Seqpacket);
    let engine = rig.engine.take().unwrap();
    let mut buf = vec![0u8; 100];
    for seq in 0..10 {
        make_frame(&mut buf, 64, seq, 1);
        rig.tap_w.send(&buf[..64]);
        rig.link_r.recv(&mut buf, STEP).expect("frame");
    }
    let want = "\"tap_to_link\":{\"received\":10,\"frames\":10,\"bytes\":640,";
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let s = std::fs::read_to_string(&path).unwrap_or_default();
        if s.contains(want) {
            assert!(
                s.starts_with(&format!("{{\"engine\":\"{}\"", engine.kind().name())),
                "{s}"
            );
            assert!(s.ends_with("]}\n"), "{s}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stats file never showed the frames: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&path).unwrap();
    engine.dump_stats();
    assert!(std::fs::read_to_string(&path).unwrap().contains(want));
    make_frame(&mut buf, 64, 10, 1);
    rig.tap_w.send(&buf[..64]);
    rig.link_r.recv(&mut buf, STEP).expect("frame");
    engine.stop();
    let s = std::fs::read_to_string(&path).unwrap();
    assert!(
        s.contains("\"tap_to_link\":{\"received\":11,\"frames\":11,"),
        "{s}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the stats file remains: {left:?}");
}

#[test]
fn stats_file_written_periodically_on_dump_and_at_stop() {
    bounded(Duration::from_secs(60), "stats", || {
        stats_file(EngineChoice::Uring);
        stats_file(EngineChoice::Poll);
    });
}

/// The io_uring variants the benchmark compares (one feature off at a time) move the same
/// frames with the same counters.
#[test]
fn every_size_both_ways_uring_variants() {
    let d = UringTuning::default();
    let variants = [
        UringTuning {
            batch_wait_us: 0,
            ..d
        },
        UringTuning {
            defer_taskrun: false,
            ..d
        },
        UringTuning {
            busy_poll_us: 50,
            ..d
        },
    ];
    let want = expected();
    for t in variants {
        for kind in [LinkKind::Seqpacket, LinkKind::Stream, LinkKind::Ptp] {
            let s = sweep_tuned(EngineChoice::Uring, t, kind);
            assert_eq!(s[0].dirs[TAP_TO_LINK], want, "{t:?} {kind:?} tap->link");
            assert_eq!(s[0].dirs[LINK_TO_TAP], want, "{t:?} {kind:?} link->tap");
        }
    }
}

/// The epoll driver busy polling (`--busy-poll`) moves the same frames with the same counters.
#[test]
fn every_size_both_ways_poll_busy() {
    let t = UringTuning {
        busy_poll_us: 50,
        ..UringTuning::default()
    };
    let want = expected();
    for kind in [LinkKind::Seqpacket, LinkKind::Stream, LinkKind::Ptp] {
        let s = sweep_tuned(EngineChoice::Poll, t, kind);
        assert_eq!(s[0].dirs[TAP_TO_LINK], want, "{kind:?} tap->link");
        assert_eq!(s[0].dirs[LINK_TO_TAP], want, "{kind:?} link->tap");
    }
}

/// Several ports spread over several pinned workers (`--workers 2 --cpus 0,1`), and unpinned:
/// each port carries its own frames, counted on its own.
fn multi_port(choice: EngineChoice, workers: usize, pin: bool) {
    let mut o = opts(choice);
    o.workers = Some(workers);
    o.pin = pin;
    o.cpus = pin.then(|| vec![0, 1]);
    let mut peers = Vec::new();
    let mut ports = Vec::new();
    for i in 0..3 {
        let (tap, tp) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let kind = [LinkKind::Seqpacket, LinkKind::Stream, LinkKind::Dgram][i];
        let (l, lw, lr, tmp) = link(kind);
        ports.push(vdens_fast::engine::Port {
            name: format!("vde{i}"),
            tap,
            link: l,
            offload: vdens_fast::engine::TapOffload::NONE,
        });
        peers.push((tp, lw, lr, tmp));
    }
    let engine = vdens_fast::engine::Engine::start(o, ports).expect("engine starts");
    assert_eq!(engine.workers(), workers.min(3));
    let mut buf = vec![0u8; 2000];
    for (i, (tp, lw, lr, _)) in peers.iter_mut().enumerate() {
        nix::fcntl::fcntl(&*tp, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
        let tp = std::sync::Arc::new(tp.try_clone().unwrap());
        let (mut tw, mut tr) = (Writer::Dgram(tp.clone()), Reader::Dgram(tp));
        for seq in 0..100u32 {
            let len = 60 + i * 100 + seq as usize;
            make_frame(&mut buf, len, seq, 10 + i as u8);
            tw.send(&buf[..len]);
            let n = lr.recv(&mut buf, STEP).expect("tap->link");
            check_frame(&buf[..n], len, seq, 10 + i as u8, "tap->link");
            make_frame(&mut buf, len, seq, 20 + i as u8);
            lw.send(&buf[..len]);
            let n = tr.recv(&mut buf, STEP).expect("link->tap");
            check_frame(&buf[..n], len, seq, 20 + i as u8, "link->tap");
        }
    }
    let s = engine.stop();
    for (i, p) in s.iter().enumerate() {
        assert_eq!(p.name, format!("vde{i}"));
        for c in &p.dirs {
            assert_eq!(c.frames, 100, "{p:?}");
            assert_eq!(c.dropped(), 0, "{p:?}");
        }
    }
}

#[test]
fn several_ports_over_several_workers() {
    bounded(Duration::from_secs(60), "multi-port", || {
        for choice in [EngineChoice::Uring, EngineChoice::Poll] {
            multi_port(choice, 2, true);
            multi_port(choice, 1, false);
            multi_port(choice, 4, false);
        }
    });
}
