//! Coprocess links (`=CMD ARGS`, `cmd://`): a classic `vde_plug vde://DIR` started by the
//! transport, carrying the 2-byte-length stream on its stdin/stdout, against a vde_switch.
//! Also: coprocess lifetime (killed and reaped on drop), seqpacket://FD. AF_UNIX only.

mod transport_common;

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use transport_common::*;
use vdens_fast::transport::{self, Framing};

#[test]
fn equals_vde_plug_through_switch() {
    let dir = TempDir::new("eqcmd");
    let sw = dir.join("sw");
    let _switch = vde_switch(&sw, &[]);
    let vnl = format!("=vde_plug vde://{}", sw.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(link.framing, Framing::Stream);
    assert!(link.rx.is_some() && link.tx.is_some());
    let pid = link.coproc.as_ref().and_then(|c| c.pid()).expect("a coprocess");
    let mut plug = StreamPlug::start(&[&format!("vde://{}", sw.display())]);
    exchange(&link, &mut plug, "eq");
    drop(link);
    assert!(!pid_exists(pid), "coprocess {pid} not reaped after drop");
}

#[test]
fn cmd_scheme_with_quotes() {
    let dir = TempDir::new("cmdq");
    let sw = dir.join("sw");
    let _switch = vde_switch(&sw, &[]);
    let vnl = format!("cmd://vde_plug 'vde://{}'", sw.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    let mut plug = StreamPlug::start(&[&format!("vde://{}", sw.display())]);
    exchange(&link, &mut plug, "cmd");
}

#[test]
fn coprocess_ignoring_eof_is_killed_and_reaped() {
    let link = transport::open("=sleep 60").unwrap_or_else(|e| panic!("{e}"));
    let pid = link.coproc.as_ref().and_then(|c| c.pid()).unwrap();
    assert!(pid_exists(pid));
    let t = Instant::now();
    drop(link);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "drop took {:?}",
        t.elapsed()
    );
    assert!(!pid_exists(pid), "coprocess {pid} left behind");
}

#[test]
fn disown_leaves_the_coprocess_running() {
    let link = transport::open("=sleep 60").unwrap_or_else(|e| panic!("{e}"));
    let pid = link.coproc.as_ref().and_then(|c| c.pid()).unwrap();
    link.disown();
    assert!(pid_exists(pid), "disown must not stop the coprocess");
    let p = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL).unwrap();
    nix::sys::wait::waitpid(p, None).unwrap();
}

#[test]
fn coprocess_errors() {
    let e = transport::open("=no-such-command-vft").unwrap_err().to_string();
    assert_eq!(
        e,
        "=no-such-command-vft: starting the coprocess: No such file or directory (is 'no-such-command-vft' installed and on PATH?)"
    );
    let e = transport::open("=").unwrap_err().to_string();
    assert!(e.contains("coprocess command is missing"), "{e}");
}

#[test]
fn seqpacket_fd() {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let link = transport::open(&format!("seqpacket://{}", a.as_raw_fd())).unwrap_or_else(|e| panic!("{e}"));
    drop(a);
    assert_eq!(link.framing, Framing::Datagram);
    let f = frame(3, b"over-seqpacket");
    send(b.as_raw_fd(), &f, MsgFlags::empty()).unwrap();
    assert_eq!(link_expect(&link, b"over-seqpacket"), f);
    let g = frame(4, b"back-seqpacket");
    link_send(&link, &g);
    let mut buf = [0u8; 2048];
    let n = recv(b.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    assert_eq!(&buf[..n], &g[..]);
}

#[test]
fn seqpacket_fd_errors() {
    let (s, _t) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let e = transport::open(&format!("seqpacket://{}", s.as_raw_fd()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a Stream socket"), "{e}");
    let e = transport::open("seqpacket://1000000").unwrap_err().to_string();
    assert!(
        e.contains("duplicating the inherited descriptor: Bad file number"),
        "{e}"
    );
    let e = transport::open("seqpacket://x").unwrap_err().to_string();
    assert!(e.contains("is not a number"), "{e}");
}
