//! One framing rule on every path: a frame shorter than an Ethernet header (a runt, 1 to 13
//! bytes) is counted as received and as a framing drop, and never delivered; the frame after
//! it goes through. Checked on the port workers (io_uring and epoll; datagram, ptp and stream
//! links, both directions), the switch node on both engines, and the cable node. Before the
//! engine's core decided this once, the port workers forwarded runts while the nodes dropped
//! them.

mod enginekit;
use enginekit::*;
use std::time::Duration;
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Counts, Endpoint, Engine, EngineKind, PortSnapshot, LINK_TO_TAP, TAP_TO_LINK};

const RUNTS: std::ops::RangeInclusive<usize> = 1..=13;
const GOOD: usize = 60;

/// Sends every runt, then one good frame, on `w`; the good frame is the first thing `r` gets.
/// With `empty`, an empty datagram first (a runt of 0 bytes, where the link has datagrams that
/// can be empty: not a seqpacket socket, where it means the end).
fn runts_then_good_from(w: &mut Writer, r: &mut Reader, empty: bool, what: &str) {
    let mut f = vec![0u8; GOOD];
    make_frame(&mut f, GOOD, 99, 3);
    if empty {
        w.send(&[]);
    }
    // The first bytes of the good frame: a broadcast destination cut short.
    for len in RUNTS {
        w.send(&f[..len]);
    }
    w.send(&f);
    let mut buf = [0u8; 9500];
    let n = r
        .recv(&mut buf, STEP)
        .unwrap_or_else(|| panic!("{what}: the frame after the runts never arrived"));
    check_frame(&buf[..n], GOOD, 99, 3, what);
}

fn runts_then_good(w: &mut Writer, r: &mut Reader, what: &str) {
    runts_then_good_from(w, r, false, what)
}

fn runt_counts() -> Counts {
    runt_counts_with(0)
}

/// The counters after the runts, `empty` empty datagrams and the good frame.
fn runt_counts_with(empty: u64) -> Counts {
    let runts = RUNTS.count() as u64 + empty;
    Counts {
        received: runts + 1,
        frames: 1,
        bytes: GOOD as u64,
        framing: runts,
        ..Default::default()
    }
}

fn port(choice: EngineChoice, kind: LinkKind) {
    bounded(Duration::from_secs(60), "runts on a port", move || {
        let mut rig = rig(choice, kind);
        let engine = rig.engine.take().unwrap();
        // Empty datagrams: the rig's tap is a seqpacket socket (empty = end); datagram and
        // ptp links can carry them.
        let empty = matches!(kind, LinkKind::Dgram | LinkKind::Ptp);
        runts_then_good(&mut rig.tap_w, &mut rig.link_r, "tap->link");
        runts_then_good_from(&mut rig.link_w, &mut rig.tap_r, empty, "link->tap");
        let s: Vec<PortSnapshot> = engine.stop();
        let what = format!("{choice:?} {kind:?}");
        assert_eq!(s[0].dirs[TAP_TO_LINK], runt_counts(), "{what} tap->link");
        assert_eq!(
            s[0].dirs[LINK_TO_TAP],
            runt_counts_with(empty as u64),
            "{what} link->tap"
        );
    })
}

#[test]
fn port_workers_drop_runts() {
    for choice in [EngineChoice::Uring, EngineChoice::Poll] {
        for kind in [LinkKind::Dgram, LinkKind::Ptp, LinkKind::Stream] {
            port(choice, kind);
        }
    }
}

fn add(e: &Engine, kind: LinkKind, name: &str) -> (Writer, Reader, Option<TempDir>) {
    let (link, w, r, tmp) = link(kind);
    let ep = Endpoint::Link {
        name: name.into(),
        link: Box::new(link),
    };
    e.add_endpoint(0, ep).unwrap();
    (w, r, tmp)
}

fn by_name<'a>(s: &'a [PortSnapshot], name: &str) -> &'a PortSnapshot {
    s.iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no endpoint {name} in {s:?}"))
}

fn switch(choice: EngineChoice, kind: LinkKind) {
    bounded(Duration::from_secs(60), "runts into a switch", move || {
        let d = TempDir::new("runt-sw");
        let e = net_node(false, &d.0.join("sw").display().to_string(), "sw", choice);
        let (mut wa, _ra, _ta) = add(&e, kind, "a");
        let (_wb, mut rb, _tb) = add(&e, LinkKind::Dgram, "b");
        // Broadcast frames (make_frame's destination), so b gets the good one unlearnt.
        let empty = kind == LinkKind::Dgram;
        runts_then_good_from(&mut wa, &mut rb, empty, "a->b");
        let s = e.stop();
        let got = by_name(&s, "a").dirs[TAP_TO_LINK];
        let want = runt_counts_with(empty as u64);
        assert_eq!(
            (got.received, got.framing),
            (want.received, want.framing),
            "{choice:?} {kind:?} into a switch"
        );
    })
}

#[test]
fn switch_nodes_drop_runts() {
    for choice in [EngineChoice::Uring, EngineChoice::Poll] {
        for kind in [LinkKind::Dgram, LinkKind::Stream] {
            switch(choice, kind);
        }
    }
}

#[test]
fn cable_node_drops_runts() {
    bounded(Duration::from_secs(60), "runts on a cable", || {
        let (l1, mut w1, mut r1, _t1) = link(LinkKind::Stream);
        let (l2, mut w2, mut r2, _t2) = link(LinkKind::Dgram);
        let e = cable(EngineChoice::Auto, l1, l2);
        assert_eq!(e.node_kinds(), [EngineKind::Uring], "a cable runs on io_uring");
        runts_then_good(&mut w1, &mut r2, "one->two");
        runts_then_good(&mut w2, &mut r1, "two->one");
        let s = e.stop();
        for name in ["one", "two"] {
            let got = by_name(&s, name).dirs[TAP_TO_LINK];
            assert_eq!(
                (got.received, got.framing),
                (RUNTS.count() as u64 + 1, RUNTS.count() as u64),
                "cable endpoint {name}"
            );
        }
    })
}
