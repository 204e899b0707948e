//! The engine's switch and hub nodes driven directly: endpoints (datagram, seqpacket, stream
//! and ptp-style links) added and removed while the node runs, learning, flooding, unicast
//! isolation, and the cable node.

mod enginekit;
use enginekit::*;
use std::time::Duration;
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Endpoint, Engine, EngineKind};

const QUIET: Duration = Duration::from_millis(300);

fn frame(dst: u8, src: u8, tag: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src, 0x88, 0xb5];
    f.extend(std::iter::repeat(tag).take(60));
    f
}

fn bcast(src: u8, tag: u8) -> Vec<u8> {
    let mut f = frame(0, src, tag);
    f[..6].copy_from_slice(&[0xff; 6]);
    f
}

struct Peer {
    w: Writer,
    r: Reader,
    _tmp: Option<TempDir>,
}

impl Peer {
    fn expect(&mut self, want: &[u8], what: &str) {
        let mut buf = [0u8; 9500];
        let n = self
            .r
            .recv(&mut buf, STEP)
            .unwrap_or_else(|| panic!("{what}: nothing arrived"));
        assert_eq!(&buf[..n], want, "{what}");
    }
    fn expect_none(&mut self, what: &str) {
        let mut buf = [0u8; 9500];
        if let Some(n) = self.r.recv(&mut buf, QUIET) {
            panic!("{what}: a frame of {n} bytes arrived");
        }
    }
}

fn start(hub: bool, d: &TempDir, choice: EngineChoice) -> Engine {
    start_opts(hub, d, "", choice)
}

fn start_opts(hub: bool, d: &TempDir, opts_: &str, choice: EngineChoice) -> Engine {
    let e = net_node(
        hub,
        &format!("{}{opts_}", d.0.join("node").display()),
        "node",
        choice,
    );
    // Switches and hubs run on the engine asked for: io_uring, or the epoll node.
    let want = match choice {
        EngineChoice::Poll => EngineKind::Poll,
        _ => EngineKind::Uring,
    };
    assert_eq!(e.node_kinds(), [want], "the node runs on the engine asked for");
    e
}

both_engines!(switch_endpoints_come_and_go);
both_engines!(hub_delivers_unicast_everywhere);
both_engines!(learnt_addresses_expire);

fn join(e: &Engine, kind: LinkKind, name: &str) -> (u16, Peer) {
    let (link, w, r, tmp) = link(kind);
    let id = e
        .add_endpoint(
            0,
            Endpoint::Link {
                name: name.into(),
                link: Box::new(link),
            },
        )
        .unwrap();
    (id, Peer { w, r, _tmp: tmp })
}

fn switch_endpoints_come_and_go(choice: EngineChoice) {
    bounded(Duration::from_secs(60), "switch", move || {
        let d = TempDir::new("swengine");
        let e = start(false, &d, choice);
        let (ia, mut a) = join(&e, LinkKind::Dgram, "a");
        let (ib, mut b) = join(&e, LinkKind::Seqpacket, "b");
        let (_ic, mut c) = join(&e, LinkKind::Stream, "c");
        assert_eq!((ia, ib), (1, 2), "ports from 1 up");
        // Broadcast from A reaches everyone else.
        let f = bcast(0xa, 1);
        a.w.send(&f);
        b.expect(&f, "broadcast at b");
        c.expect(&f, "broadcast at c");
        a.expect_none("broadcast back at its sender");
        // B answers A: A is known, so only A gets it.
        let f = frame(0xa, 0xb, 2);
        b.w.send(&f);
        a.expect(&f, "unicast at a");
        c.expect_none("unicast b->a at c");
        let f = frame(0xb, 0xa, 3);
        a.w.send(&f);
        b.expect(&f, "unicast at b");
        c.expect_none("unicast a->b at c");
        // B leaves: what was learnt on its port goes, frames for it are flooded again.
        e.remove_endpoint(0, ib).unwrap();
        std::thread::sleep(QUIET);
        let f = frame(0xb, 0xa, 4);
        a.w.send(&f);
        c.expect(&f, "flooded after b left");
        // A newcomer takes the free port.
        let (id, mut n) = join(&e, LinkKind::Ptp, "newcomer");
        assert_eq!(id, ib, "the lowest free port");
        let f = bcast(0xc, 5);
        c.w.send(&f);
        n.expect(&f, "broadcast at the newcomer");
        a.expect(&f, "broadcast at a");
        let snap = e.stop();
        let names: Vec<&str> = snap.iter().map(|s| s.name.as_str()).collect();
        // b's counters stay, summed with any other that left, after the endpoints attached.
        assert_eq!(names, ["a", "c", "newcomer", "node:left"]);
        // Per endpoint: [0] = from its link into the node, [1] = from the node to its link.
        assert_eq!(snap[0].dirs[0].received, 3, "a sent three frames");
        assert_eq!(snap[0].dirs[1].frames, 2, "a was sent two frames");
        assert!(!d.0.join("node").exists(), "node directory left behind");
    });
}

fn hub_delivers_unicast_everywhere(choice: EngineChoice) {
    bounded(Duration::from_secs(60), "hub", move || {
        let d = TempDir::new("hubengine");
        let e = start(true, &d, choice);
        let (_, mut a) = join(&e, LinkKind::Dgram, "a");
        let (_, mut b) = join(&e, LinkKind::Dgram, "b");
        let (_, mut c) = join(&e, LinkKind::Dgram, "c");
        a.w.send(&bcast(0xa, 1));
        b.expect(&bcast(0xa, 1), "b");
        c.expect(&bcast(0xa, 1), "c");
        let f = frame(0xa, 0xb, 2);
        b.w.send(&f);
        a.expect(&f, "a");
        c.expect(&f, "unicast at c through a hub");
        e.stop();
    });
}

#[test]
fn cable_node_joins_two_links() {
    bounded(Duration::from_secs(60), "cable", || {
        let (l1, mut w1, mut r1, _t1) = link(LinkKind::Stream);
        let (l2, mut w2, mut r2, _t2) = link(LinkKind::Ptp);
        let e = cable(EngineChoice::Auto, l1, l2);
        let mut buf = [0u8; 9500];
        for len in [60usize, 1514, 9000] {
            let mut f = vec![0u8; len];
            make_frame(&mut f, len, len as u32, 7);
            w1.send(&f);
            let n = r2.recv(&mut buf, STEP).expect("one -> two");
            check_frame(&buf[..n], len, len as u32, 7, "one -> two");
            w2.send(&f);
            let n = r1.recv(&mut buf, STEP).expect("two -> one");
            check_frame(&buf[..n], len, len as u32, 7, "two -> one");
        }
        assert!(!e.cable_ended());
        e.stop();
    });
}

fn learnt_addresses_expire(choice: EngineChoice) {
    bounded(Duration::from_secs(60), "expire", move || {
        let d = TempDir::new("swexpire");
        let e = start_opts(false, &d, "[expiretime=1/hashsize=16/hashseed=99]", choice);
        let (_, mut a) = join(&e, LinkKind::Dgram, "a");
        let (_, mut b) = join(&e, LinkKind::Dgram, "b");
        let (_, mut c) = join(&e, LinkKind::Dgram, "c");
        a.w.send(&bcast(0xa, 1));
        b.expect(&bcast(0xa, 1), "b");
        c.expect(&bcast(0xa, 1), "c");
        let f = frame(0xa, 0xb, 2);
        b.w.send(&f);
        a.expect(&f, "a");
        c.expect_none("learnt: not at c");
        std::thread::sleep(Duration::from_millis(2500));
        let f = frame(0xa, 0xb, 3);
        b.w.send(&f);
        a.expect(&f, "a");
        c.expect(&f, "expired: flooded to c");
        e.stop();
    });
}

/// The length of flooded test frame `seq`: sizes from 60 to 1514 bytes.
fn flood_len(seq: u32) -> usize {
    60 + (seq as usize * 97) % 1455
}

/// Receives on `p` on a thread of its own until it is quiet for 1.5 s: every frame must be the
/// intact test frame of its sequence number, of length `len_of(seq)`, in increasing order.
/// Returns the sequence numbers that arrived.
fn drain_in_order(
    mut p: Peer,
    what: &'static str,
    len_of: fn(u32) -> usize,
) -> std::thread::JoinHandle<Vec<u32>> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 9500];
        let mut got: Vec<u32> = Vec::new();
        while let Some(n) = p.r.recv(&mut buf, Duration::from_millis(1500)) {
            let seq = u32::from_be_bytes(buf[14..18].try_into().unwrap());
            check_frame(&buf[..n], n, seq, 0xa, what);
            assert_eq!(n, len_of(seq), "{what}: frame {seq}: length");
            if let Some(&last) = got.last() {
                assert!(seq > last, "{what}: frame {seq} after {last}: out of order");
            }
            got.push(seq);
        }
        got
    })
}

both_engines!(flooded_frames_keep_their_order_and_count);

/// Thousands of broadcast frames of mixed sizes from one client, flooded to two others that
/// drain them on their own threads: every frame that arrives is intact and in order (the io_uring
/// node sends one buffer to several destinations), and each destination's counters account for
/// every frame offered to it (delivered, or dropped because its queue was full).
fn flooded_frames_keep_their_order_and_count(choice: EngineChoice) {
    const N: u32 = 3000;
    bounded(Duration::from_secs(120), "order", move || {
        let d = TempDir::new("sworder");
        let e = start(false, &d, choice);
        let (_, mut a) = join(&e, LinkKind::Dgram, "a");
        let (_, b) = join(&e, LinkKind::Dgram, "b");
        let (_, c) = join(&e, LinkKind::Seqpacket, "c");
        let tb = drain_in_order(b, "b", flood_len);
        let tc = drain_in_order(c, "c", flood_len);
        let mut f = vec![0u8; 1600];
        for seq in 0..N {
            let l = flood_len(seq);
            make_frame(&mut f, l, seq, 0xa);
            a.w.send(&f[..l]);
        }
        let (gb, gc) = (tb.join().unwrap(), tc.join().unwrap());
        assert!(!gb.is_empty() && !gc.is_empty(), "nothing flooded");
        let snap = e.stop();
        let st = |n: &str| snap.iter().find(|s| s.name == n).unwrap().clone();
        assert_eq!(st("a").dirs[0].received, N as u64, "a: frames taken in");
        for (name, got) in [("b", &gb), ("c", &gc)] {
            let out = st(name).dirs[1];
            eprintln!("{choice:?}: {name}: {} of {N} delivered", got.len());
            assert_eq!(out.received, N as u64, "{name}: frames offered");
            assert_eq!(out.frames, got.len() as u64, "{name}: delivered = arrived");
            assert_eq!(
                out.frames + out.dropped(),
                N as u64,
                "{name}: every frame accounted for"
            );
        }
    });
}

both_engines!(a_client_leaving_mid_flood);

/// A client detached while frames are being flooded to it (sends in flight on the io_uring
/// node): everyone keeps receiving in order, a newcomer on the freed port works, and the node
/// stops cleanly with the departed client's counters gone.
fn a_client_leaving_mid_flood(choice: EngineChoice) {
    const N: u32 = 4000;
    bounded(Duration::from_secs(120), "leaving", move || {
        let d = TempDir::new("swleave");
        let e = std::sync::Arc::new(start(false, &d, choice));
        let (_, mut a) = join(&e, LinkKind::Dgram, "a");
        let (ib, b) = join(&e, LinkKind::Dgram, "b");
        let (_, c) = join(&e, LinkKind::Stream, "c");
        let tb = drain_in_order(b, "b", flood_len);
        let tc = drain_in_order(c, "c", flood_len);
        let mut f = vec![0u8; 1600];
        for seq in 0..N {
            if seq == N / 2 {
                e.remove_endpoint(0, ib).unwrap();
            }
            let l = flood_len(seq);
            make_frame(&mut f, l, seq, 0xa);
            a.w.send(&f[..l]);
        }
        // The removal is asynchronous: b may still get frames a sent after the call, never
        // out of order (checked while draining).
        let (gb, gc) = (tb.join().unwrap().len(), tc.join().unwrap().len());
        assert!(gb > 0 && gc > 0, "b got {gb}, c got {gc}");
        // Once the flood is over, a newcomer takes b's port and gets nothing of it.
        let (id, mut n) = join(&e, LinkKind::Dgram, "newcomer");
        assert_eq!(id, ib, "b's port is free again");
        n.expect_none("frames of the flood at the newcomer");
        let f = bcast(0xc, 9);
        a.w.send(&f);
        n.expect(&f, "a broadcast after it joined");
        let e = std::sync::Arc::into_inner(e).expect("one engine handle");
        let snap = e.stop();
        let names: Vec<&str> = snap.iter().map(|s| s.name.as_str()).collect();
        // b's counters stay, summed with any other that left, after the endpoints attached.
        assert_eq!(names, ["a", "c", "newcomer", "node:left"]);
        assert!(!d.0.join("node").exists(), "node directory left behind");
    });
}

/// A port that leaves keeps counting in the node's totals: its counters go to `NODE:left`
/// (they used to vanish with it, so a node's totals went back).
fn counters_of_a_port_that_left(choice: EngineChoice) {
    bounded(
        Duration::from_secs(60),
        "counters of a port that left",
        move || {
            let d = TempDir::new("sw-left");
            let e = start(false, &d, choice);
            let (ida, mut a) = join(&e, LinkKind::Dgram, "a");
            let (_idb, mut b) = join(&e, LinkKind::Dgram, "b");
            for tag in 0..3 {
                a.w.send(&bcast(1, tag));
                b.expect(&bcast(1, tag), "a -> b");
            }
            e.remove_endpoint(0, ida).unwrap();
            // The removal is asynchronous: wait for it to show.
            let end = std::time::Instant::now() + Duration::from_secs(10);
            let left = loop {
                let s = e.stats();
                if let Some(l) = s.iter().find(|p| p.name == "node:left") {
                    assert!(s.iter().all(|p| p.name != "a"), "a is gone: {s:?}");
                    break l.clone();
                }
                assert!(std::time::Instant::now() < end, "no node:left entry: {s:?}");
                std::thread::sleep(Duration::from_millis(20));
            };
            assert_eq!(left.dirs[vdens_fast::engine::TAP_TO_LINK].received, 3, "{left:?}");
            assert_eq!(left.dirs[vdens_fast::engine::TAP_TO_LINK].frames, 3, "{left:?}");
            e.stop();
        },
    )
}

both_engines!(counters_of_a_port_that_left);
