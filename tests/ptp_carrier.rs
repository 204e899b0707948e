//! A datagram `ptp://` interface's carrier follows its peer (issue 17, "self-healing links";
//! classic vdens keeps the carrier whatever happens): when the peer is SIGKILLed, the
//! survivor's `vde0` shows NO-CARRIER; when a peer is started again in the same role, the
//! carrier comes back and traffic flows. The survivor is vdens-fast in either role (first
//! opener: its peer's socket is at PATH+; second opener: it also connects to the new first
//! opener), on both engines; the peer is vdens-fast or classic vdens; and everyone as `nobody`.

mod common;
use common::*;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    First,
    Second,
}

fn node(name: &str, imp: Impl, who: Who, engine: &str, d: &TempDir, vnl: &str) -> Node {
    match (imp, who) {
        (Impl::Classic, _) => ns_node(name, Impl::Classic, d, &[vnl]),
        (Impl::Fast, who) => Node::start(name, vdens_fast(who, d, &["--engine", engine, vnl, "sh", "-s"])),
    }
}

fn kill(n: Node) {
    unsafe_kill(-n.pid(), libc::SIGKILL);
    assert!(wait_gone(n.pid(), 10), "{} did not die", n.name);
    drop(n);
}

fn carrier_follows_peer(survivor: Role, engine: &str, peer: Impl, who: Who) {
    let d = TempDir::new("ptp-carrier");
    let p = d.join("p");
    let v = format!("ptp://{}", p.display());
    let tag = format!("{survivor:?} survivor ({engine}, {who:?}), {peer:?} peer");
    let (mut s, b) = if survivor == Role::First {
        let s = node("survivor", Impl::Fast, who, engine, &d, &v);
        (s, node("peer", peer, who, engine, &d, &v))
    } else {
        let b = node("peer", peer, who, engine, &d, &v);
        (node("survivor", Impl::Fast, who, engine, &d, &v), b)
    };
    let mut b = b;
    s.up("vde0", "10.47.0.1/24", None);
    b.up("vde0", "10.47.0.2/24", None);
    s.ping("10.47.0.2", 2, None);
    kill(b);
    wait_carrier(&mut s, false, 10, &format!("{tag}: the peer was killed"));
    if peer == Impl::Classic {
        // Classic vdens cannot take over a stale socket file: a lab script's clean-up.
        let stale = if survivor == Role::First {
            d.join("p+")
        } else {
            p.clone()
        };
        let _ = std::fs::remove_file(stale);
    }
    std::thread::sleep(Duration::from_millis(600));
    let mut b = node("peer again", peer, who, engine, &d, &v);
    b.up("vde0", "10.47.0.2/24", None);
    wait_carrier(&mut s, true, 10, &format!("{tag}: the peer is back"));
    let (code, out) = b.try_sh("ping -n -q -c 2 -i 0.2 -w 10 10.47.0.1", 15);
    assert_eq!(
        code,
        Some(0),
        "{tag}: no traffic again: {out}; survivor: {}",
        s.stderr()
    );
    s.ping("10.47.0.2", 2, None);
    let e = s.stderr();
    assert!(e.contains("the peer went away"), "{tag}: {e}");
    assert!(e.contains("the peer is back"), "{tag}: {e}");
}

#[test]
fn first_opener_carrier_follows_its_peer() {
    for engine in ["uring", "poll"] {
        carrier_follows_peer(Role::First, engine, Impl::Fast, Who::Root);
        carrier_follows_peer(Role::First, engine, Impl::Classic, Who::Root);
    }
    carrier_follows_peer(Role::First, "uring", Impl::Fast, Who::Nobody);
}

#[test]
fn second_opener_carrier_follows_its_peer() {
    for engine in ["uring", "poll"] {
        carrier_follows_peer(Role::Second, engine, Impl::Fast, Who::Root);
        carrier_follows_peer(Role::Second, engine, Impl::Classic, Who::Root);
    }
    carrier_follows_peer(Role::Second, "uring", Impl::Fast, Who::Nobody);
}

/// A seqpacket end's role (`ptp://PATH[seqpacket]`, the 2025 protocol; vdens-fast both ends).
#[derive(Clone, Copy, Debug, PartialEq)]
enum SeqRole {
    Listener,
    Connector,
}

/// A seqpacket `ptp://` interface's carrier follows its peer too: off once the peer is
/// SIGKILLed (a listener waits for the next; a connector whose listener died listens at PATH
/// itself), on again once a peer is attached, and traffic flows.
fn seqpacket_carrier_follows_peer(survivor: SeqRole, engine: &str, who: Who) {
    let d = TempDir::new("ptp-sp-carrier");
    let v = format!("ptp://{}[seqpacket]", d.join("p").display());
    let tag = format!("seqpacket {survivor:?} survivor ({engine}, {who:?})");
    let start = |name: &str| node(name, Impl::Fast, who, engine, &d, &v);
    let (mut s, mut b) = if survivor == SeqRole::Listener {
        let s = start("survivor");
        (s, start("peer"))
    } else {
        let b = start("peer");
        (start("survivor"), b)
    };
    s.up("vde0", "10.48.0.1/24", None);
    b.up("vde0", "10.48.0.2/24", None);
    s.ping("10.48.0.2", 2, None);
    kill(b);
    wait_carrier(&mut s, false, 10, &format!("{tag}: the peer was killed"));
    std::thread::sleep(Duration::from_millis(600));
    let mut b = start("peer again");
    b.up("vde0", "10.48.0.2/24", None);
    wait_carrier(&mut s, true, 10, &format!("{tag}: the peer is back"));
    let (code, out) = b.try_sh("ping -n -q -c 2 -i 0.2 -w 10 10.48.0.1", 15);
    assert_eq!(
        code,
        Some(0),
        "{tag}: no traffic again: {out}; survivor: {}",
        s.stderr()
    );
    s.ping("10.48.0.2", 2, None);
    let e = s.stderr();
    assert!(e.contains("the peer went away"), "{tag}: {e}");
    assert!(e.contains("the peer is back"), "{tag}: {e}");
}

#[test]
fn seqpacket_carrier_follows_its_peer() {
    for engine in ["uring", "poll"] {
        seqpacket_carrier_follows_peer(SeqRole::Listener, engine, Who::Root);
        seqpacket_carrier_follows_peer(SeqRole::Connector, engine, Who::Root);
    }
    seqpacket_carrier_follows_peer(SeqRole::Listener, "uring", Who::Nobody);
    seqpacket_carrier_follows_peer(SeqRole::Connector, "uring", Who::Nobody);
}
