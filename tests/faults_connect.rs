//! Client paths with a bound on every wait (issue 17, item 4): a `vde://` client of a switch
//! whose control socket takes no connection (listen backlog full) or never answers, and a
//! `ptp://` client of a seqpacket listener with a full backlog, each fail within a few seconds
//! with one line saying what timed out. AF_UNIX sockets in temp dirs only.

mod transport_common;

use nix::sys::socket::{connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};
use transport_common::*;
use vdens_fast::transport;

/// A listening socket of `ty` at `path` that never accepts, its backlog filled with pending
/// connections (the fillers are returned: they must stay open).
fn full_listener(path: &Path, ty: SockType) -> (OwnedFd, Vec<OwnedFd>) {
    let l: OwnedFd = socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None).unwrap();
    nix::sys::socket::bind(l.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    listen(&l, Backlog::new(0).unwrap()).unwrap();
    let mut fill = Vec::new();
    for _ in 0..64 {
        let c: OwnedFd = socket(
            AddressFamily::Unix,
            ty,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match connect(c.as_raw_fd(), &UnixAddr::new(path).unwrap()) {
            Ok(()) => fill.push(c),
            Err(nix::errno::Errno::EAGAIN) => return (l, fill),
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    panic!("the backlog never filled");
}

/// Opens `vnl` in a thread; its error text and how long it took, failing the test after 20 s.
fn open_err(vnl: &str) -> (String, Duration) {
    let v = vnl.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        let r = transport::open(&v).map(|_| ()).map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Err(e)) => (e, t0.elapsed()),
        Ok(Ok(())) => panic!("{vnl}: opened against a socket that never accepts"),
        Err(_) => panic!("{vnl}: still waiting after 20 s (no timeout)"),
    }
}

#[test]
fn vde_client_of_a_full_backlog_times_out() {
    let dir = TempDir::new("conn-full");
    let sw = dir.join("sw");
    std::fs::create_dir(&sw).unwrap();
    let (_l, _fill) = full_listener(&sw.join("ctl"), SockType::Stream);
    let vnl = format!("vde://{}", sw.display());
    let (e, took) = open_err(&vnl);
    assert_eq!(
        e,
        format!(
            "{vnl}: connecting to the switch: timed out after 5 s (is the switch alive? {}/ctl takes no connection: its backlog is full)",
            sw.display()
        )
    );
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn vde_client_of_a_switch_that_never_answers_times_out() {
    let dir = TempDir::new("conn-mute");
    let sw = dir.join("sw");
    std::fs::create_dir(&sw).unwrap();
    // Listening with room in the backlog: the connect completes, nobody reads the request.
    let l: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    nix::sys::socket::bind(l.as_raw_fd(), &UnixAddr::new(&sw.join("ctl")).unwrap()).unwrap();
    listen(&l, Backlog::new(8).unwrap()).unwrap();
    let vnl = format!("vde://{}", sw.display());
    let (e, took) = open_err(&vnl);
    assert!(e.contains("reading the switch's answer: no answer from"), "{e}");
    assert!(e.contains("within 5 s"), "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn ptp_client_of_a_full_seqpacket_backlog_times_out() {
    let dir = TempDir::new("conn-ptp");
    let p = dir.join("link");
    let (_l, _fill) = full_listener(&p, SockType::SeqPacket);
    let vnl = format!("ptp://{}", p.display());
    let (e, took) = open_err(&vnl);
    assert_eq!(
        e,
        format!(
            "{vnl}: connecting to the ptp peer: timed out after 2 s (is the peer alive? the seqpacket ptp listener {} takes no connection: its backlog is full)",
            p.display()
        )
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// The same through the program: vdens-fast ends with status 1 and the one line.
#[test]
fn vdens_fast_against_a_full_switch_backlog_exits_1() {
    let dir = TempDir::new("conn-bin");
    let sw = dir.join("sw");
    std::fs::create_dir(&sw).unwrap();
    let (_l, _fill) = full_listener(&sw.join("ctl"), SockType::Stream);
    let vnl = format!("vde://{}", sw.display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vdens-fast"))
        .args([vnl.as_str(), "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vdens-fast still waits for the switch after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("connecting to the switch: timed out after 5 s (is the switch alive?"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
