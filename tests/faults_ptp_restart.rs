//! One end of a 4.0.1 (datagram) `ptp://` link killed and restarted (issue 17, item 2), at the
//! transport level: a second opener that survives its first opener reaches the new one once
//! it connects again ([`Reconnect`], what the engine calls when a send fails), and a first
//! opener that survives its second opener needs nothing (it sends by path). Peers are raw
//! sockets, vdens-fast links and Debian's vde_plug; AF_UNIX in temp dirs only.

mod transport_common;

use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};
use transport_common::*;
use vdens_fast::transport::{self, Link, Reconnect, SendTo};

/// One send on the link's connected descriptor, as the engine makes it.
fn raw_send(link: &Link, f: &[u8]) -> Result<usize, Errno> {
    let fd = link.tx_fd().unwrap();
    send(fd.as_raw_fd(), f, MsgFlags::MSG_DONTWAIT)
}

/// What the engine is to do: a send that fails in a way [`Reconnect::wanted`] names is
/// followed by [`Reconnect::reconnect`] and, when that connected, the same send again.
fn engine_send(link: &Link, f: &[u8]) -> Result<usize, Errno> {
    match raw_send(link, f) {
        Err(e) if link.reconnect().wanted(e as i32) => {
            match link.reconnect().reconnect(link.tx_fd().unwrap()) {
                Ok(true) => raw_send(link, f),
                Ok(false) => Err(e),
                Err(re) => Err(Errno::from_raw(re.raw_os_error().unwrap_or(0))),
            }
        }
        r => r,
    }
}

/// Sends with [`engine_send`] until `got` returns the frame (frames sent while the peer is
/// away are lost, as on the wire).
fn engine_reaches(link: &Link, marker: &str, mut got: impl FnMut(Duration) -> Option<Vec<u8>>) {
    let f = frame(5, marker.as_bytes());
    let end = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < end, "{marker} never reached the restarted peer");
        let _ = engine_send(link, &f);
        if let Some(g) = got(Duration::from_millis(100)) {
            if contains(&g, marker.as_bytes()) {
                return;
            }
        }
    }
}

/// Whether a live datagram socket is bound at `p` (EPERM: live, connected to its own peer).
fn live(p: &Path) -> bool {
    match UnixDatagram::unbound().unwrap().connect(p) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// The second opener's socket is reached again after the first opener's socket at PATH is
/// replaced: its sends fail (ECONNREFUSED, then ENOTCONN), the new socket's sends to it fail
/// (EPERM) until it connects again; after [`Reconnect::reconnect`] both directions pass.
#[test]
fn replaced_first_socket_is_reached_after_reconnect() {
    let dir = TempDir::new("restart-raw");
    let p = dir.join("link");
    let plus = dir.join("link+");
    let old = UnixDatagram::bind(&p).unwrap();
    let vnl = format!("ptp://{}", p.display());
    let second = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(second.send_to, SendTo::Connected));
    assert_eq!(second.reconnect(), Reconnect::Unix(p.clone()));
    let f = frame(1, b"before");
    raw_send(&second, &f).unwrap();
    let mut buf = [0u8; 2048];
    old.set_read_timeout(Some(TIMEOUT)).unwrap();
    let n = old.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &f[..]);

    // The first opener dies (its file stays: SIGKILL) and a new one takes PATH.
    drop(old);
    // Gone for good once nothing holds it (a test thread forking meanwhile may, until exec).
    wait_for("the old socket to die", || !live(&p));
    std::fs::remove_file(&p).unwrap();
    let new = UnixDatagram::bind(&p).unwrap();
    new.set_read_timeout(Some(TIMEOUT)).unwrap();
    let back = frame(2, b"back");
    assert_eq!(
        new.send_to(&back, &plus).unwrap_err().raw_os_error(),
        Some(libc::EPERM),
        "the survivor is still connected to the dead socket"
    );
    let e = raw_send(&second, &f).unwrap_err();
    assert_eq!(e, Errno::ECONNREFUSED);
    assert!(second.reconnect().wanted(e as i32));
    let e = raw_send(&second, &f).unwrap_err();
    assert_eq!(e, Errno::ENOTCONN);
    assert!(second.reconnect().wanted(e as i32));
    assert!(!second.reconnect().wanted(libc::EAGAIN));

    assert!(second.reconnect().reconnect(second.tx_fd().unwrap()).unwrap());
    let f = frame(3, b"after");
    raw_send(&second, &f).unwrap();
    let n = new.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &f[..]);
    new.send_to(&back, &plus).unwrap();
    assert_eq!(link_expect(&second, b"back"), back);
}

/// While nobody is at PATH (the first opener restarting) a reconnect fails and says why;
/// once the new first opener binds, it succeeds.
#[test]
fn reconnect_fails_while_the_peer_is_away() {
    let dir = TempDir::new("restart-away");
    let p = dir.join("link");
    let old = UnixDatagram::bind(&p).unwrap();
    let second = transport::open(&format!("ptp://{}", p.display())).unwrap_or_else(|e| panic!("{e}"));
    let fd = second.tx_fd().unwrap();
    // Killed: its file stays, stale.
    drop(old);
    wait_for("the old socket to die", || !live(&p));
    let e = second.reconnect().reconnect(fd).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
    std::fs::remove_file(&p).unwrap();
    let e = second.reconnect().reconnect(fd).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    let _new = UnixDatagram::bind(&p).unwrap();
    assert!(second.reconnect().reconnect(fd).unwrap());
    // A first opener sends by path: nothing to reconnect.
    let dir2 = TempDir::new("restart-first");
    let first = transport::open(&format!("ptp://{}", dir2.join("link").display())).unwrap();
    assert_eq!(first.reconnect(), Reconnect::Never);
    assert!(!first.reconnect().wanted(libc::ECONNREFUSED));
    assert!(!first.reconnect().reconnect(first.tx_fd().unwrap()).unwrap());
}

/// A vdens-fast second opener survives Debian's vde_plug as first opener being SIGKILLed
/// and started again (it finds PATH stale and binds it anew): frames cross both ways again.
#[test]
fn second_survives_classic_first_restart() {
    let dir = TempDir::new("restart-classic1");
    let p = dir.join("link");
    let vnl = format!("ptp://{}", p.display());
    let mut plug = StreamPlug::start(&[&vnl]);
    wait_for("vde_plug to bind PATH", || live(&p));
    let second = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    exchange(&second, &mut plug, "before");
    drop(plug); // SIGKILL and reap: PATH stays, stale.
    assert!(p.exists() && !live(&p));
    let mut plug = StreamPlug::start(&[&vnl]);
    wait_for("the new vde_plug to bind PATH", || live(&p));
    // The new first opener is bound: the first send fails, reconnects and goes through.
    let f = frame(5, b"to-new-first");
    engine_send(&second, &f).unwrap();
    assert_eq!(plug.expect(b"to-new-first"), f);
    let f = frame(6, b"from-new-first");
    plug.send(&f);
    assert_eq!(link_expect(&second, b"from-new-first"), f);
}

/// Two vdens-fast ends: the first closes and a new first opens PATH; the second reaches it.
#[test]
fn second_survives_fast_first_restart() {
    let dir = TempDir::new("restart-fast1");
    let p = dir.join("link");
    let vnl = format!("ptp://{}", p.display());
    let first = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    let second = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    link_send(&second, &frame(1, b"one"));
    link_expect(&first, b"one");
    drop(first);
    let first = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(first.send_to, SendTo::Unix(_)),
        "the new end must be a first opener"
    );
    engine_reaches(&second, "two", |t| {
        let fd = first.rx_fd().unwrap();
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        let ms = nix::poll::PollTimeout::from(t.as_millis() as u16);
        if !matches!(nix::poll::poll(&mut fds, ms), Ok(n) if n > 0) {
            return None;
        }
        let mut buf = vec![0u8; 2048];
        let n = nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).ok()?;
        Some(buf[..n].to_vec())
    });
    let f = frame(2, b"three");
    link_send(&first, &f);
    assert_eq!(link_expect(&second, b"three"), f);
}

/// A vdens-fast first opener survives its second opener (vde_plug) being SIGKILLed and
/// started again with no reconnect: it sends by path (PATH+), and the new second connects to
/// it (its socket is connected to nobody, so any new second may).
#[test]
fn first_survives_classic_second_restart() {
    let dir = TempDir::new("restart-classic2");
    let p = dir.join("link");
    let plus = dir.join("link+");
    let vnl = format!("ptp://{}", p.display());
    let first = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.reconnect(), Reconnect::Never);
    let mut plug = StreamPlug::start(&[&vnl]);
    wait_for("vde_plug to bind PATH+", || live(&plus));
    exchange(&first, &mut plug, "before");
    drop(plug);
    assert!(plus.exists() && !live(&plus));
    let mut plug = StreamPlug::start(&[&vnl]);
    wait_for("the new vde_plug to bind PATH+", || live(&plus));
    exchange(&first, &mut plug, "after");
}

/// Only a ptp second opener reconnects: not a switch port, a coprocess stream, null, nor a
/// connected datagram socket bound at a path that does not end in `+`.
#[test]
fn only_a_ptp_second_opener_reconnects() {
    let dir = TempDir::new("restart-others");
    let sw = dir.join("sw");
    let _switch = vde_switch(&sw, &[]);
    let vde = transport::open(&format!("vde://{}", sw.display())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(vde.reconnect(), Reconnect::Never);
    let cat = transport::open("=cat").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cat.reconnect(), Reconnect::Never);
    assert_eq!(transport::open("null://").unwrap().reconnect(), Reconnect::Never);
    // A connected datagram socket bound at a plain path (e.g. a seqpacket://FD of a DGRAM).
    let a = UnixDatagram::bind(dir.join("a")).unwrap();
    let b = UnixDatagram::bind(dir.join("b")).unwrap();
    a.connect(dir.join("b")).unwrap();
    let l = Link::single("x", vdens_fast::transport::Framing::Datagram, a.into());
    assert_eq!(l.reconnect(), Reconnect::Never);
    drop(b);
}

/// A first opener restarted while its dead predecessor's socket still answers (a killed
/// vdens-fast's socket lives on while the kernel tears down its io_uring) waits for it to go,
/// then takes PATH, instead of finding "both ends taken".
#[test]
fn restart_waits_for_the_dead_ends_socket() {
    let dir = TempDir::new("restart-linger");
    let p = dir.join("link");
    let vnl = format!("ptp://{}", p.display());
    let old = UnixDatagram::bind(&p).unwrap();
    let second = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(old);
    });
    let t0 = Instant::now();
    let first = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    t.join().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(250), "{:?}", t0.elapsed());
    assert!(matches!(first.send_to, SendTo::Unix(_)), "{first:?}");
    let f = frame(9, b"to-the-new-first");
    engine_send(&second, &f).unwrap();
    assert_eq!(link_expect(&first, b"to-the-new-first"), f);
    let g = frame(10, b"from-the-new-first");
    link_send(&first, &g);
    assert_eq!(link_expect(&second, b"from-the-new-first"), g);
    // Both ends live for good: a third opener is refused (after the wait).
    let e = transport::open(&vnl).unwrap_err().to_string();
    assert!(e.contains("both ends are taken"), "{e}");
}
