//! One send queue per destination, with per-destination backpressure (`core::admit_to_queue`):
//! a switch client that does not read for a while (its socket's queue full: the engine's end
//! has a small send buffer) loses no frame while what waits for it stays within its bound
//! (`core::DEST_QCAP`), and gets them all, in order, once it reads; over the bound the excess
//! is dropped and counted for it alone, while the other clients keep receiving. A cable node
//! (vdeplug-fast's) waits for a late link the same way. Both engines.

mod enginekit;
use enginekit::*;
use nix::sys::socket::{setsockopt, sockopt};
use std::time::Duration;
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Counts, Endpoint, Engine, PortSnapshot, LINK_TO_TAP};

/// The bound of `core::DEST_QCAP`.
const BOUND: usize = vdens_fast::engine::core::DEST_QCAP;
const LEN: usize = 200;
const QUIET: Duration = Duration::from_millis(400);

/// Test frame `seq` from `src` to `dst` (the last byte of each MAC).
fn frame(dst: u8, src: u8, seq: u32) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src, 0x88, 0xb5];
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((18..LEN).map(|j| (j as u8) ^ (seq as u8) ^ src));
    f
}

/// The sequence number of a test frame, checked whole (from `src` to `dst`).
fn seq_of(got: &[u8], dst: u8, src: u8, what: &str) -> u32 {
    let seq = u32::from_be_bytes(got[14..18].try_into().unwrap());
    assert_eq!(
        got,
        frame(dst, src, seq).as_slice(),
        "{what}: frame {seq} not intact"
    );
    seq
}

struct Peer {
    w: Writer,
    r: Reader,
}

impl Peer {
    fn recv(&mut self, t: Duration) -> Option<Vec<u8>> {
        let mut buf = [0u8; 9500];
        self.r.recv(&mut buf, t).map(|n| buf[..n].to_vec())
    }
}

fn start(d: &TempDir, choice: EngineChoice) -> Engine {
    net_node(false, &d.0.join("sw").display().to_string(), "sw", choice)
}

/// Joins a datagram client `name`; `small`: the engine's end of it gets the smallest send
/// buffer, so that a few frames not read fill it and the next send meets EAGAIN.
fn join(e: &Engine, name: &str, small: bool) -> Peer {
    let (link, w, r, _) = link(LinkKind::Dgram);
    if small {
        setsockopt(link.rx.as_ref().unwrap(), sockopt::SndBuf, &1024).unwrap();
    }
    e.add_endpoint(
        0,
        Endpoint::Link {
            name: name.into(),
            link: Box::new(link),
        },
    )
    .unwrap();
    Peer { w, r }
}

/// A switch with clients a, b (small send buffer) and c; b and c learnt by a broadcast each.
fn setup(choice: EngineChoice) -> (TempDir, Engine, Peer, Peer, Peer) {
    let d = TempDir::new("sendq");
    let e = start(&d, choice);
    let mut a = join(&e, "a", false);
    let mut b = join(&e, "b", true);
    let mut c = join(&e, "c", false);
    for (src, p) in [(0xb, &mut b), (0xc, &mut c)] {
        p.w.send(&frame(0xff, src, 0));
    }
    // Each broadcast reaches the two others.
    for (p, n) in [(&mut a, 2), (&mut b, 1), (&mut c, 1)] {
        for _ in 0..n {
            p.recv(STEP).expect("a broadcast");
        }
    }
    (d, e, a, b, c)
}

/// The counters towards client `name`, in the stopped engine's last ones.
fn towards(snap: &[PortSnapshot], name: &str) -> Counts {
    snap.iter().find(|s| s.name == name).unwrap().dirs[LINK_TO_TAP]
}

both_engines!(a_late_reader_gets_every_frame_within_the_bound);

/// K frames to b while b does not read, K more than its socket holds but within the bound:
/// once b reads, all K arrive, in order, and none was dropped.
fn a_late_reader_gets_every_frame_within_the_bound(choice: EngineChoice) {
    const K: u32 = 40;
    bounded(Duration::from_secs(60), "within the bound", move || {
        let (_d, e, mut a, mut b, _c) = setup(choice);
        for seq in 0..K {
            a.w.send(&frame(0xb, 0xa, seq));
        }
        // Long enough for the engine to meet the full socket and wait.
        std::thread::sleep(QUIET);
        for want in 0..K {
            let f = b
                .recv(STEP)
                .unwrap_or_else(|| panic!("frame {want} of {K} never came"));
            assert_eq!(seq_of(&f, 0xb, 0xa, "b"), want, "in order");
        }
        assert!(b.recv(QUIET).is_none(), "more than was sent");
        let out = towards(&e.stop(), "b");
        assert_eq!(out.dropped(), 0, "nothing dropped for b: {out:?}");
        assert_eq!(
            out.frames,
            K as u64 + 1,
            "every frame sent (and c's broadcast): {out:?}"
        );
    });
}

both_engines!(a_stalled_client_over_the_bound_loses_the_excess_alone);

/// N frames to b (not reading) interleaved with N to c (reading): c gets each of them meanwhile;
/// b, once it reads, the first ones in order (its socket's few and the bound's), the rest
/// dropped and counted for b as NoBuffer.
fn a_stalled_client_over_the_bound_loses_the_excess_alone(choice: EngineChoice) {
    const N: u32 = 400;
    bounded(Duration::from_secs(60), "over the bound", move || {
        let (_d, e, mut a, mut b, mut c) = setup(choice);
        // In lockstep: c has each of its frames before the next pair goes.
        for seq in 0..N {
            a.w.send(&frame(0xb, 0xa, seq));
            a.w.send(&frame(0xc, 0xa, seq));
            let f = c
                .recv(STEP)
                .unwrap_or_else(|| panic!("c: frame {seq} never came"));
            assert_eq!(seq_of(&f, 0xc, 0xa, "c"), seq, "c: in order");
        }
        std::thread::sleep(QUIET);
        let mut got = 0;
        while let Some(f) = b.recv(QUIET) {
            assert_eq!(seq_of(&f, 0xb, 0xa, "b"), got, "b: the first frames, in order");
            got += 1;
        }
        assert!(
            got as usize >= BOUND && got < N,
            "b got {got} of {N}: the bound's {BOUND} and its socket's few"
        );
        let snap = e.stop();
        let out = towards(&snap, "b");
        assert_eq!(out.frames, got as u64 + 1, "{out:?}");
        assert_eq!(out.no_buffer, (N - got) as u64, "the excess counted: {out:?}");
        assert_eq!(out.dropped(), out.no_buffer, "{out:?}");
        assert_eq!(towards(&snap, "c").dropped(), 0, "nothing dropped for c");
    });
}

both_engines!(a_cable_waits_for_a_late_link);

/// The same on a cable node (vdeplug-fast's): K frames from link one to link two while two's
/// peer does not read; once it reads, all K arrive in order, none dropped.
fn a_cable_waits_for_a_late_link(choice: EngineChoice) {
    const K: u32 = 40;
    bounded(Duration::from_secs(60), "cable", move || {
        let (one, mut w, _r1, _t1) = link(LinkKind::Dgram);
        let (two, _w2, mut r, _t2) = link(LinkKind::Dgram);
        setsockopt(two.rx.as_ref().unwrap(), sockopt::SndBuf, &1024).unwrap();
        let e = cable(choice, one, two);
        for seq in 0..K {
            w.send(&frame(0xb, 0xa, seq));
        }
        std::thread::sleep(QUIET);
        let mut buf = [0u8; 9500];
        for want in 0..K {
            let n = r
                .recv(&mut buf, STEP)
                .unwrap_or_else(|| panic!("frame {want} of {K} never came"));
            assert_eq!(seq_of(&buf[..n], 0xb, 0xa, "two"), want, "in order");
        }
        let out = towards(&e.stop(), "two");
        assert_eq!((out.frames, out.dropped()), (K as u64, 0), "{out:?}");
    });
}
