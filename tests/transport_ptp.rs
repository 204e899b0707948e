//! ptp:// against Debian's vde_plug (vdeplug4 4.0.1, datagram generation) as first and as
//! second opener, stale sockets, and a master-generation (SOCK_SEQPACKET) listener played by
//! the test. AF_UNIX only.

mod transport_common;

use nix::sys::socket::{
    accept, bind, listen, recv, send, socket, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsRawFd, OwnedFd};
use transport_common::*;
use vdens_fast::transport::{self, Framing, SendTo};

#[test]
fn vde_plug_first_we_second() {
    let dir = TempDir::new("ptp1");
    let p = dir.path("link");
    let vnl = format!("ptp://{}", p.display());
    let mut plug = StreamPlug::start(&[&vnl]);
    wait_for("vde_plug to bind the ptp path", || p.exists());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(link.framing, Framing::Datagram);
    assert!(matches!(link.send_to, SendTo::Connected));
    let plus = dir.path("link+");
    assert_eq!(link.cleanup, vec![plus.clone()]);
    exchange(&link, &mut plug, "ptp-second");
    drop(link);
    assert!(!plus.exists(), "PATH+ left behind");
    assert!(p.exists(), "the peer's PATH must stay");
}

#[test]
fn we_first_vde_plug_second() {
    let dir = TempDir::new("ptp2");
    let p = dir.path("link");
    let vnl = format!("ptp://{}", p.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    let plus = dir.path("link+");
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
    let p = dir.path("link");
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixDatagram::bind(&p).unwrap());
    assert!(p.exists());
    let vnl = format!("ptp://{}", p.display());
    let first = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(first.send_to, SendTo::Unix(_)));
    // A stale PATH+ too.
    drop(std::os::unix::net::UnixDatagram::bind(dir.path("link+")).unwrap());
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
    let f = dir.path("file");
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
    let p = dir.path("link");
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
    let link = transport::open(&format!("ptp://{}", p.display())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(link.framing, Framing::Datagram);
    assert!(matches!(link.send_to, SendTo::Connected));
    assert!(link.cleanup.is_empty(), "the connecting side creates no file");
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
    let p = dir.path("link");
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
