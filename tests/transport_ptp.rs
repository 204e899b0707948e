//! ptp:// against Debian's vde_plug (vdeplug4 4.0.1, datagram generation) as first and as
//! second opener, stale sockets, a master-generation (SOCK_SEQPACKET) listener played by the
//! test, and vdens-fast's own seqpacket listener (`ptp://PATH[seqpacket]`, run by the engine
//! as a node) against raw SOCK_SEQPACKET clients: the exact ack bytes, refusal, reconnection,
//! frames dropped while no peer is attached. AF_UNIX only.

mod transport_common;

use nix::sys::socket::{
    accept, bind, connect, listen, recv, send, socket, AddressFamily, Backlog, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use std::os::fd::{AsRawFd, OwnedFd};
use transport_common::*;
use vdens_fast::transport::{self, Framing, Hosted, Link, SendTo};

#[test]
fn vde_plug_first_we_second() {
    let dir = TempDir::new("ptp1");
    let p = dir.join("link");
    let vnl = format!("ptp://{}", p.display());
    let mut plug = StreamPlug::start(&[&vnl]);
    wait_for("vde_plug to bind the ptp path", || p.exists());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(link.framing, Framing::Datagram);
    assert!(matches!(link.send_to, SendTo::Connected));
    let plus = dir.join("link+");
    assert_eq!(link.cleanup, vec![plus.clone()]);
    exchange(&link, &mut plug, "ptp-second");
    drop(link);
    assert!(!plus.exists(), "PATH+ left behind");
    assert!(p.exists(), "the peer's PATH must stay");
}

#[test]
fn we_first_vde_plug_second() {
    let dir = TempDir::new("ptp2");
    let p = dir.join("link");
    let vnl = format!("ptp://{}", p.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    let plus = dir.join("link+");
    match &link.send_to {
        SendTo::Unix(to) => assert_eq!(to, &plus),
        other => panic!("first opener must send to PATH+, got {other:?}"),
    }
    assert_eq!(link.cleanup, vec![p.clone()]);
    let mut plug = StreamPlug::start(&[&vnl]);
    wait_for("vde_plug to bind PATH+", || plus.exists());
    exchange(&link, &mut plug, "ptp-first");
    drop(link);
    assert!(!p.exists(), "PATH left behind");
}

#[test]
fn stale_socket_is_reused_and_third_opener_refused() {
    let dir = TempDir::new("ptp3");
    let p = dir.join("link");
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixDatagram::bind(&p).unwrap());
    assert!(p.exists());
    let vnl = format!("ptp://{}", p.display());
    let first = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(first.send_to, SendTo::Unix(_)));
    // A stale PATH+ too.
    drop(std::os::unix::net::UnixDatagram::bind(dir.join("link+")).unwrap());
    let second = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(second.send_to, SendTo::Connected));
    // Frames between two vdens-fast ends.
    let f = frame(7, b"between-two-ends");
    link_send(&second, &f);
    assert_eq!(link_expect(&first, b"between-two-ends"), f);
    let g = frame(8, b"and-back");
    link_send(&first, &g);
    assert_eq!(link_expect(&second, b"and-back"), g);
    let e = transport::open(&vnl).unwrap_err().to_string();
    assert!(e.contains("both ends are taken"), "{e}");
    assert!(!e.contains("os error"), "{e}");
}

#[test]
fn not_a_socket_and_bad_paths() {
    let dir = TempDir::new("ptp4");
    let f = dir.join("file");
    std::fs::write(&f, b"x").unwrap();
    let e = transport::open(&format!("ptp://{}", f.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("exists and is not a socket"), "{e}");
    let e = transport::open(&format!("ptp://{}/no/such/dir/x", dir.0.display()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("binding the ptp socket: No such file or directory"),
        "{e}"
    );
    let long = format!("ptp:///tmp/{}", "l".repeat(120));
    let e = transport::open(&long).unwrap_err().to_string();
    assert!(e.contains("does not fit a socket address"), "{e}");
}

/// A master-generation (2025) ptp listener: SOCK_SEQPACKET, accept, 1-byte ack 0, then echo
/// one packet back with its marker changed.
#[test]
fn seqpacket_master_listener() {
    let dir = TempDir::new("ptp5");
    let p = dir.join("link");
    let lfd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(lfd.as_raw_fd(), &UnixAddr::new(&p).unwrap()).unwrap();
    listen(&lfd, Backlog::new(1).unwrap()).unwrap();
    let t = std::thread::spawn(move || {
        let c: OwnedFd = accept(&lfd).unwrap();
        send(c.as_raw_fd(), &[0u8], MsgFlags::empty()).unwrap();
        let mut buf = [0u8; 2048];
        let n = recv(c.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        let mut reply = buf[..n].to_vec();
        let at = reply.windows(4).position(|w| w == b"ping").unwrap();
        reply[at..at + 4].copy_from_slice(b"pong");
        send(c.as_raw_fd(), &reply, MsgFlags::empty()).unwrap();
        // Stay until the test side closes.
        let _ = recv(c.as_raw_fd(), &mut buf, MsgFlags::empty());
    });
    let vnl = format!("ptp://{}", p.display());
    let mut hosted = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert!(hosted.cleanup.is_empty(), "the connecting side creates no file");
    assert!(hosted.rx.is_none(), "the peer belongs to the hosted node");
    // The connecting end is run as a node (it reconnects after a hang-up), holding the
    // connected, acked peer.
    let Some(Hosted::Ptp(h)) = hosted.node.as_mut() else {
        panic!("a seqpacket connector must be hosted: {hosted:?}")
    };
    assert_eq!(h.path, p);
    assert!(h.listener().is_none());
    let link = Link::single(&vnl, Framing::Datagram, h.take_peer().expect("connected peer"));
    drop(hosted);
    let f = frame(9, b"ping-seq");
    link_send(&link, &f);
    let got = link_expect(&link, b"pong-seq");
    assert_eq!(got.len(), f.len());
    drop(link);
    t.join().unwrap();
}

/// A listener that refuses with an errno ack (EISCONN: it already has a peer).
#[test]
fn seqpacket_listener_refuses() {
    let dir = TempDir::new("ptp6");
    let p = dir.join("link");
    let lfd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(lfd.as_raw_fd(), &UnixAddr::new(&p).unwrap()).unwrap();
    listen(&lfd, Backlog::new(1).unwrap()).unwrap();
    let t = std::thread::spawn(move || {
        let c: OwnedFd = accept(&lfd).unwrap();
        send(c.as_raw_fd(), &[libc::EISCONN as u8], MsgFlags::empty()).unwrap();
    });
    let e = transport::open(&format!("ptp://{}", p.display()))
        .unwrap_err()
        .to_string();
    t.join().unwrap();
    assert!(e.contains("the listener already has its peer"), "{e}");
}

// ---- vdens-fast's own seqpacket listener, driven by raw clients ----

mod raw {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{
        connect, recv, send, socket, socketpair, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
    };
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// Longest wait for one packet.
    pub const STEP: Duration = Duration::from_secs(10);

    /// Waits for one packet on `fd` (at most STEP); its bytes, empty at EOF.
    pub fn recv_one(fd: &OwnedFd) -> Option<Vec<u8>> {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut p, PollTimeout::from(STEP.as_millis() as u16)), Ok(n) if n > 0) {
            return None;
        }
        let mut buf = vec![0u8; 16384];
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(nix::errno::Errno::ECONNRESET) => Some(Vec::new()),
            Err(e) => panic!("recv: {e}"),
        }
    }

    /// Receives until a packet carries `marker` (others are skipped); panics after STEP.
    pub fn expect(fd: &OwnedFd, marker: &[u8], what: &str) -> Vec<u8> {
        let end = Instant::now() + STEP;
        while Instant::now() < end {
            match recv_one(fd) {
                Some(f) if f.windows(marker.len()).any(|w| w == marker) => return f,
                Some(f) if f.is_empty() => panic!("{what}: EOF before {marker:?}"),
                _ => {}
            }
        }
        panic!("{what}: no packet with {marker:?} within {STEP:?}")
    }

    /// A raw SOCK_SEQPACKET client: connect, then read the listener's ack.
    pub fn client(path: &Path) -> (OwnedFd, Vec<u8>) {
        let fd: OwnedFd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        let ack = recv_one(&fd).expect("an ack within the time limit");
        (fd, ack)
    }

    pub fn send_frame(fd: &OwnedFd, f: &[u8]) {
        assert_eq!(send(fd.as_raw_fd(), f, MsgFlags::empty()).unwrap(), f.len());
    }

    /// A datagram socket pair standing in for a tap: (engine side, test side).
    pub fn fake_tap() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }
}

fn listener_engine(choice: vdens_fast::cli::EngineChoice, tag: &str) {
    use std::time::{Duration, Instant};
    use vdens_fast::engine::{Engine, EngineOptions, Port, UringTuning, TAP_TO_LINK};
    let dir = TempDir::new(tag);
    let p = dir.join("link");
    let vnl = format!("ptp://{}[seqpacket]", p.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    // A new PATH with [seqpacket]: a listening SOCK_SEQPACKET socket there, no peer needed.
    let Some(Hosted::Ptp(h)) = link.node.as_ref() else {
        panic!("the seqpacket listener must be hosted: {link:?}")
    };
    assert!(h.listener().is_some() && h.peer().is_none());
    let probe = std::os::unix::net::UnixDatagram::unbound().unwrap();
    assert_eq!(
        probe.connect(&p).unwrap_err().raw_os_error(),
        Some(libc::EPROTOTYPE),
        "PATH must be a seqpacket socket"
    );
    let (tap, tap_peer) = raw::fake_tap();
    let opts = EngineOptions {
        choice,
        workers: None,
        cpus: None,
        pin: false,
        realtime: None,
        stats: None,
        stats_interval: Duration::from_secs(1),
    };
    let ports = vec![Port {
        name: "vde0".into(),
        tap,
        link,
        offload: vdens_fast::engine::TapOffload::NONE,
    }];
    let engine = Engine::start_nodes(opts, UringTuning::default(), ports, Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let vde0 = |e: &Engine| {
        e.stats()
            .into_iter()
            .find(|s| s.name == "vde0")
            .expect("vde0 in the stats")
    };

    // No peer yet: frames from the tap are dropped and counted as NoLink.
    for i in 0..3u8 {
        raw::send_frame(&tap_peer, &frame(i, b"nobody-there"));
    }
    let end = Instant::now() + raw::STEP;
    while vde0(&engine).dirs[TAP_TO_LINK].no_link < 3 {
        assert!(
            Instant::now() < end,
            "no_link never reached 3: {:?}",
            vde0(&engine)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(vde0(&engine).dirs[TAP_TO_LINK].frames, 0);

    // The first peer: ack is exactly one byte 0; frames flow both ways unchanged.
    let (a, ack) = raw::client(&p);
    assert_eq!(ack, vec![0u8], "accept ack");
    let f = frame(1, b"from-peer-a");
    raw::send_frame(&a, &f);
    assert_eq!(raw::expect(&tap_peer, b"from-peer-a", "tap"), f);
    let g = frame(2, b"from-tap-to-a");
    raw::send_frame(&tap_peer, &g);
    assert_eq!(raw::expect(&a, b"from-tap-to-a", "peer a"), g);

    // A second peer while the first is attached: exactly one byte EISCONN, then EOF.
    let (b, ack) = raw::client(&p);
    assert_eq!(ack, vec![libc::EISCONN as u8], "refusal ack");
    assert_eq!(raw::recv_one(&b), Some(Vec::new()), "refused peer must be closed");
    drop(b);
    // The first one is unaffected.
    let g = frame(3, b"still-to-a");
    raw::send_frame(&tap_peer, &g);
    assert_eq!(raw::expect(&a, b"still-to-a", "peer a"), g);

    // The first peer hangs up; the next one is accepted and carries the traffic.
    drop(a);
    let end = Instant::now() + raw::STEP;
    let (c, ack) = loop {
        let (c, ack) = raw::client(&p);
        // A refusal here can only mean the hang-up was not seen yet: try again shortly.
        if ack == [0u8] || Instant::now() > end {
            break (c, ack);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ack, vec![0u8], "ack after the hang-up");
    let f = frame(4, b"from-peer-c");
    raw::send_frame(&c, &f);
    assert_eq!(raw::expect(&tap_peer, b"from-peer-c", "tap"), f);
    let g = frame(5, b"from-tap-to-c");
    raw::send_frame(&tap_peer, &g);
    assert_eq!(raw::expect(&c, b"from-tap-to-c", "peer c"), g);
    // Packets shorter than an Ethernet header are not carried (master's send drops them
    // too): the next packet the tap gets is the frame sent after it.
    raw::send_frame(&c, b"short");
    let f = frame(6, b"after-short");
    raw::send_frame(&c, &f);
    assert_eq!(raw::recv_one(&tap_peer), Some(f));
    let st = vde0(&engine);
    assert_eq!(st.dirs[TAP_TO_LINK].no_link, 3, "{st:?}");

    engine.stop();
    assert!(!p.exists(), "PATH left behind");
    // The peer sees the end.
    assert_eq!(raw::recv_one(&c), Some(Vec::new()));
}

#[test]
fn seqpacket_listener_raw_clients_poll_engine() {
    listener_engine(vdens_fast::cli::EngineChoice::Poll, "ptp7");
}

#[test]
fn seqpacket_listener_raw_clients_uring_engine() {
    listener_engine(vdens_fast::cli::EngineChoice::Uring, "ptp8");
}

/// A seqpacket connector whose listener goes away (PATH removed) listens on PATH itself, as
/// master's connecting side does; one whose listener dies leaving a stale socket does too.
#[test]
fn seqpacket_connector_becomes_listener_after_hang_up() {
    use std::time::Duration;
    use vdens_fast::engine::{Engine, EngineOptions, Port, UringTuning};
    for stale in [false, true] {
        let dir = TempDir::new("ptp9");
        let p = dir.join("link");
        let lfd: OwnedFd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(lfd.as_raw_fd(), &UnixAddr::new(&p).unwrap()).unwrap();
        listen(&lfd, Backlog::new(1).unwrap()).unwrap();
        let t = std::thread::spawn(move || {
            let c: OwnedFd = accept(&lfd).unwrap();
            send(c.as_raw_fd(), &[0u8], MsgFlags::empty()).unwrap();
            (lfd, c)
        });
        let vnl = format!("ptp://{}", p.display());
        let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
        let (lfd, c) = t.join().unwrap();
        let (tap, tap_peer) = raw::fake_tap();
        let opts = EngineOptions {
            choice: vdens_fast::cli::EngineChoice::Poll,
            workers: None,
            cpus: None,
            pin: false,
            realtime: None,
            stats: None,
            stats_interval: Duration::from_secs(1),
        };
        let engine = Engine::start_nodes(
            opts,
            UringTuning::default(),
            vec![Port {
                name: "vde0".into(),
                tap,
                link,
                offload: vdens_fast::engine::TapOffload::NONE,
            }],
            Vec::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let f = frame(1, b"before-hang-up");
        raw::send_frame(&tap_peer, &f);
        assert_eq!(raw::expect(&c, b"before-hang-up", "listener"), f);
        // The listener leaves: cleanly (PATH removed first, as master's close does) or by
        // dying (PATH left as a stale socket).
        if !stale {
            std::fs::remove_file(&p).unwrap();
        }
        drop(lfd);
        drop(c);
        let end = std::time::Instant::now() + raw::STEP;
        let (n, ack) = loop {
            if let Ok(fd) = socket(
                AddressFamily::Unix,
                SockType::SeqPacket,
                SockFlag::SOCK_CLOEXEC,
                None,
            ) {
                if connect(fd.as_raw_fd(), &UnixAddr::new(&p).unwrap()).is_ok() {
                    let ack = raw::recv_one(&fd).expect("ack");
                    break (fd, ack);
                }
            }
            assert!(
                std::time::Instant::now() < end,
                "the connector never listened on PATH"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(ack, vec![0u8], "stale={stale}");
        let g = frame(2, b"after-role-swap");
        raw::send_frame(&n, &g);
        assert_eq!(raw::expect(&tap_peer, b"after-role-swap", "tap"), g);
        engine.stop();
        assert!(
            !p.exists(),
            "stale={stale}: the connector-turned-listener left PATH"
        );
    }
}

/// `[seqpacket]` on a stale socket (its listener died without removing it) listens there; a
/// third vdens-fast end finds the listener and connects without the option.
#[test]
fn seqpacket_listener_reuses_a_stale_path() {
    let dir = TempDir::new("ptp10");
    let p = dir.join("link");
    let dead: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(dead.as_raw_fd(), &UnixAddr::new(&p).unwrap()).unwrap();
    drop(dead);
    assert!(p.exists());
    let link =
        transport::open(&format!("ptp://{}[seqpacket]", p.display())).unwrap_or_else(|e| panic!("{e}"));
    let Some(Hosted::Ptp(h)) = link.node.as_ref() else {
        panic!("{link:?}")
    };
    assert!(h.listener().is_some());
    // Nobody accepts here (no engine runs): the connector's ack wait is bounded and says so.
    let e = transport::open(&format!("ptp://{}", p.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("reading the ptp ack: no ack within 2 s"), "{e}");
    drop(link);
    assert!(!p.exists(), "the listener's PATH must go with it");
}

/// Sends 64-byte datagrams to `path` without waiting until the kernel refuses one; how many
/// went (at most `cap`). The receiver reads nothing meanwhile.
fn fill_unread(path: &std::path::Path, cap: usize) -> usize {
    let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
    // Room for `cap` small datagrams on the sender's side, so only the receiver's queue limit
    // can stop it (the kernel doubles the value and caps it at net.core.wmem_max).
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::SndBuf, &(1usize << 20));
    s.connect(path).unwrap();
    s.set_nonblocking(true).unwrap();
    let frame = [0x5au8; 64];
    for n in 0..cap {
        match s.send(&frame) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return n,
            Err(e) => panic!("send: {e}"),
        }
    }
    cap
}

fn system_dgram_qlen() -> usize {
    std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The helper's socket queues exactly the asked number of datagrams from an unconnected
/// sender (the kernel takes one more than the limit), whatever the system's default.
#[test]
fn deep_queue_socket_holds_what_was_asked() {
    let dir = TempDir::new("ptpq1");
    let p = dir.join("deep");
    let fd = vdens_fast::sys::unix_dgram_with_qlen(40).unwrap_or_else(|e| panic!("helper: {e}"));
    bind(fd.as_raw_fd(), &UnixAddr::new(&p).unwrap()).unwrap();
    assert_eq!(fill_unread(&p, 200), 41);
    // Nothing changed here: a socket made in this namespace keeps the system's limit.
    let q = dir.join("plain");
    let plain = std::os::unix::net::UnixDatagram::bind(&q).unwrap();
    assert_eq!(fill_unread(&q, 200), system_dgram_qlen().min(199) + 1);
    drop(plain);
}

/// The first opener of a 4.0.1 ptp link takes up to FIRST_RX_QLEN frames from its peer (which
/// sends to PATH unconnected) before the peer has to wait, not the system's 10.
#[test]
fn first_opener_queues_its_peer_deeply() {
    let dir = TempDir::new("ptpq2");
    let p = dir.join("link");
    let vnl = format!("ptp://{}", p.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(link.send_to, SendTo::Unix(_)));
    let want = transport::PTP_FIRST_RX_QLEN as usize + 1;
    assert!(
        system_dgram_qlen() + 1 < want,
        "the system's own limit is already this deep: nothing to show"
    );
    assert_eq!(fill_unread(&p, want + 50), want);
    drop(link);
}
