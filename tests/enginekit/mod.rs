//! Shared helpers of the engine integration tests: stand-ins for taps and links, peers that
//! write and read frames with timeouts, and a frame pattern that is checked byte for byte.
#![allow(dead_code)]

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, sendto, socket, socketpair, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use std::sync::Arc;
use std::time::{Duration, Instant};
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Engine, EngineOptions, Port, UringTuning};
use vdens_fast::transport::{Framing, Link, SendTo};
use vdens_fast::wire::stream::{self, Decoder, Event};

/// An engine running one switch (or hub, `hub`) node named `name`, listening at `spec` (a
/// path, with options after it as `switch://` takes them).
pub fn net_node(hub: bool, spec: &str, name: &str, choice: EngineChoice) -> Engine {
    use vdens_fast::engine::{Node, NodeKind};
    use vdens_fast::switch::server::{parse, Listener};
    let spec = parse(hub, spec).unwrap();
    let l = Listener::create(&spec).unwrap_or_else(|(s, e, _)| panic!("{s}: {e}"));
    let node = Node {
        name: name.into(),
        kind: NodeKind::Net(l),
        endpoints: Vec::new(),
    };
    Engine::start_nodes(opts(choice), UringTuning::default(), Vec::new(), vec![node]).unwrap()
}

/// Longest wait for any single frame or write in the tests.
pub const STEP: Duration = Duration::from_secs(20);
/// Experimental ethertype (IEEE 802 local experimental 1) carried by test frames.
pub const ETHERTYPE: u16 = 0x88b5;

pub fn opts(choice: EngineChoice) -> EngineOptions {
    EngineOptions {
        choice,
        workers: None,
        cpus: None,
        pin: true,
        realtime: None,
        stats: None,
        stats_interval: Duration::from_secs(1),
    }
}

/// The tests' one temp directory type (tests/common).
#[path = "../common/mod.rs"]
pub mod common;
pub use common::TempDir;

fn nonblock(fd: &OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
    fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK)).unwrap();
}

/// Waits until `fd` is ready for `ev`, at most `t`.
pub fn wait(fd: &OwnedFd, ev: PollFlags, t: Duration) -> bool {
    let mut p = [PollFd::new(fd.as_fd(), ev)];
    let ms = t.as_millis().min(i32::MAX as u128) as i32;
    matches!(poll(&mut p, PollTimeout::try_from(ms).unwrap()), Ok(n) if n > 0)
}

/// Writes frames into the engine.
pub enum Writer {
    /// One frame per write (socket pair end, packet socket).
    Dgram(Arc<OwnedFd>),
    /// One frame per datagram to this address.
    DgramTo(Arc<OwnedFd>, UnixAddr),
    /// Length-prefixed frames on a pipe.
    Stream(OwnedFd),
}

impl Writer {
    fn fd(&self) -> &OwnedFd {
        match self {
            Writer::Dgram(f) | Writer::DgramTo(f, _) => f,
            Writer::Stream(f) => f,
        }
    }

    /// Sends one frame, waiting for room at most [`STEP`]; panics when it cannot.
    pub fn send(&mut self, frame: &[u8]) {
        let deadline = Instant::now() + STEP;
        let mut buf;
        let data: &[u8] = match self {
            Writer::Stream(_) => {
                buf = vec![0u8; frame.len() + 2];
                stream::encode(frame, &mut buf).unwrap();
                &buf
            }
            _ => frame,
        };
        let mut off = 0;
        loop {
            let r = match self {
                Writer::Dgram(f) => nix::unistd::write(f.as_fd(), data),
                Writer::DgramTo(f, a) => sendto(
                    std::os::fd::AsRawFd::as_raw_fd(f.as_ref()),
                    data,
                    a,
                    MsgFlags::empty(),
                ),
                Writer::Stream(f) => nix::unistd::write(f.as_fd(), &data[off..]),
            };
            match r {
                Ok(n) => {
                    off += n;
                    if !matches!(self, Writer::Stream(_)) || off == data.len() {
                        return;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::ENOBUFS) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    assert!(!left.is_zero(), "test peer: no room to send for {STEP:?}");
                    wait(self.fd(), PollFlags::POLLOUT, left.min(Duration::from_millis(50)));
                }
                Err(e) => panic!("test peer: send failed: {}", e.desc()),
            }
        }
    }

    /// Sends one frame if there is room now; false when it would block.
    pub fn try_send(&mut self, frame: &[u8]) -> bool {
        match self {
            Writer::Dgram(f) => nix::unistd::write(f.as_fd(), frame).is_ok(),
            Writer::DgramTo(f, a) => sendto(
                std::os::fd::AsRawFd::as_raw_fd(f.as_ref()),
                frame,
                a,
                MsgFlags::empty(),
            )
            .is_ok(),
            Writer::Stream(_) => panic!("try_send on a stream"),
        }
    }
}

/// Reads frames out of the engine.
pub enum Reader {
    Dgram(Arc<OwnedFd>),
    Stream {
        fd: OwnedFd,
        dec: Decoder,
        raw: Vec<u8>,
        off: usize,
        len: usize,
    },
}

impl Reader {
    pub fn stream(fd: OwnedFd) -> Reader {
        Reader::Stream {
            fd,
            dec: Decoder::new(),
            raw: vec![0u8; 65536],
            off: 0,
            len: 0,
        }
    }

    /// Next frame into `out`, waiting at most `t`; None on timeout.
    pub fn recv(&mut self, out: &mut [u8], t: Duration) -> Option<usize> {
        let deadline = Instant::now() + t;
        loop {
            match self {
                Reader::Dgram(f) => match nix::unistd::read(f.as_fd(), out) {
                    Ok(n) => return Some(n),
                    Err(nix::errno::Errno::EAGAIN) => {}
                    Err(e) => panic!("test peer: read failed: {}", e.desc()),
                },
                Reader::Stream {
                    fd,
                    dec,
                    raw,
                    off,
                    len,
                } => {
                    while *off < *len {
                        let (n, ev) = dec.feed(&raw[*off..*len], out);
                        *off += n;
                        match ev {
                            Some(Event::Frame(l)) => return Some(l),
                            Some(e) => panic!("test peer: bad stream frame {e:?}"),
                            None => {}
                        }
                    }
                    match nix::unistd::read(fd.as_fd(), raw) {
                        Ok(0) => panic!("test peer: stream closed"),
                        Ok(n) => {
                            *off = 0;
                            *len = n;
                            continue;
                        }
                        Err(nix::errno::Errno::EAGAIN) => {}
                        Err(e) => panic!("test peer: read failed: {}", e.desc()),
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let fd: &OwnedFd = match &*self {
                Reader::Dgram(f) => f,
                Reader::Stream { fd, .. } => fd,
            };
            wait(fd, PollFlags::POLLIN, left.min(Duration::from_millis(50)));
        }
    }
}

/// How the link of a test port is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A SOCK_SEQPACKET socket pair.
    Seqpacket,
    /// A SOCK_DGRAM socket pair.
    Dgram,
    /// Two pipes, length-prefixed frames.
    Stream,
    /// Unconnected AF_UNIX datagram sockets bound to paths, sending with an address (ptp).
    Ptp,
    /// The same, with the test's socket connected to the engine's, as a 4.0.1 ptp second
    /// opener is: the engine's sends are then bounded by its own send buffer, not by a queue
    /// limit at the receiver.
    PtpPeer,
}

/// One port whose tap is a SOCK_SEQPACKET socket pair end, and the peers on both sides.
pub struct Rig {
    pub engine: Option<Engine>,
    pub tap_w: Writer,
    pub tap_r: Reader,
    pub link_w: Writer,
    pub link_r: Reader,
    pub tmp: Option<TempDir>,
}

fn pair(t: SockType) -> (OwnedFd, OwnedFd) {
    socketpair(AddressFamily::Unix, t, None, SockFlag::SOCK_CLOEXEC).unwrap()
}

/// A link of `kind` and the test's two ends of it.
pub fn link(kind: LinkKind) -> (Link, Writer, Reader, Option<TempDir>) {
    let mk = |framing, rx, tx, send_to| {
        let mut l = Link::null(&format!("test-{kind:?}"));
        l.framing = framing;
        l.rx = Some(rx);
        l.tx = tx;
        l.send_to = send_to;
        l
    };
    match kind {
        LinkKind::Seqpacket | LinkKind::Dgram => {
            let t = if kind == LinkKind::Dgram {
                SockType::Datagram
            } else {
                SockType::SeqPacket
            };
            let (e, p) = pair(t);
            nonblock(&p);
            let p = Arc::new(p);
            (
                mk(Framing::Datagram, e, None, SendTo::Connected),
                Writer::Dgram(p.clone()),
                Reader::Dgram(p),
                None,
            )
        }
        LinkKind::Stream => {
            let (r1, w1) = nix::unistd::pipe().unwrap();
            let (r2, w2) = nix::unistd::pipe().unwrap();
            nonblock(&w1);
            nonblock(&r2);
            (
                mk(Framing::Stream, r1, Some(w2), SendTo::Connected),
                Writer::Stream(w1),
                Reader::stream(r2),
                None,
            )
        }
        LinkKind::Ptp | LinkKind::PtpPeer => {
            let dir = TempDir::new("ptp");
            let (a, b) = (dir.0.join("a"), dir.0.join("b"));
            let mk_sock = |p: &PathBuf| {
                let s = socket(
                    AddressFamily::Unix,
                    SockType::Datagram,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )
                .unwrap();
                bind(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    &UnixAddr::new(p.as_path()).unwrap(),
                )
                .unwrap();
                s
            };
            let e = mk_sock(&a);
            let p = mk_sock(&b);
            nonblock(&p);
            let to_a = UnixAddr::new(a.as_path()).unwrap();
            let w = if kind == LinkKind::PtpPeer {
                nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&p), &to_a).unwrap();
                let p = Arc::new(p);
                (Writer::Dgram(p.clone()), p)
            } else {
                let p = Arc::new(p);
                (Writer::DgramTo(p.clone(), to_a), p)
            };
            (
                mk(Framing::Datagram, e, None, SendTo::Unix(b)),
                w.0,
                Reader::Dgram(w.1),
                Some(dir),
            )
        }
    }
}

pub fn rig(choice: EngineChoice, kind: LinkKind) -> Rig {
    rig_with(opts(choice), kind)
}

pub fn rig_with(o: EngineOptions, kind: LinkKind) -> Rig {
    rig_tuned(o, UringTuning::default(), kind)
}

pub fn rig_tuned(o: EngineOptions, t: UringTuning, kind: LinkKind) -> Rig {
    let (tap, tp) = pair(SockType::SeqPacket);
    nonblock(&tp);
    let tp = Arc::new(tp);
    let (l, link_w, link_r, tmp) = link(kind);
    let port = Port {
        name: "vde0".into(),
        tap,
        link: l,
        offload: vdens_fast::engine::TapOffload::NONE,
    };
    let engine = Engine::start_with(o, t, vec![port]).expect("engine starts");
    Rig {
        engine: Some(engine),
        tap_w: Writer::Dgram(tp.clone()),
        tap_r: Reader::Dgram(tp),
        link_w,
        link_r,
        tmp,
    }
}

/// Fills a test frame: broadcast destination, a source MAC naming the direction, the test
/// ethertype, then a pattern of the sequence number and size.
pub fn make_frame(buf: &mut [u8], len: usize, seq: u32, salt: u8) {
    buf[..6].fill(0xff);
    buf[6..12].copy_from_slice(&[2, 0, 0, 0, 0, salt]);
    buf[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    for (j, b) in buf[14..len].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_mul(31) ^ (j as u8) ^ ((j >> 8) as u8) ^ salt;
    }
    if len >= 18 {
        buf[14..18].copy_from_slice(&seq.to_be_bytes());
    }
}

/// Panics with the first difference when `got` is not the frame `make_frame` would build.
pub fn check_frame(got: &[u8], len: usize, seq: u32, salt: u8, what: &str) {
    assert_eq!(got.len(), len, "{what}: frame {seq}: wrong length");
    let mut want = vec![0u8; len];
    make_frame(&mut want, len, seq, salt);
    if got != want.as_slice() {
        let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap();
        panic!("{what}: frame {seq} (len {len}) differs at byte {i}");
    }
}

/// Runs `f` on a thread and waits at most `t` for it; panics on timeout or panic.
pub fn bounded<T: Send + 'static>(t: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(t) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(_) => {
            if h.is_finished() {
                if let Err(e) = h.join() {
                    std::panic::resume_unwind(e);
                }
            }
            panic!("{what}: did not finish within {t:?}")
        }
    }
}

/// Resident set size of this process, in KiB.
pub fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Names of this process's threads that are io_uring io-wq workers.
pub fn iou_workers() -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            if let Ok(c) = std::fs::read_to_string(e.path().join("comm")) {
                if c.starts_with("iou-wrk") {
                    v.push(c.trim().to_string());
                }
            }
        }
    }
    v
}

/// A cable node between `one` and `two` (endpoints named so), on the engine `choice` picks.
pub fn cable(choice: EngineChoice, one: Link, two: Link) -> Engine {
    use vdens_fast::engine::{Endpoint, Node, NodeKind};
    let node = Node {
        name: "cable".into(),
        kind: NodeKind::Cable,
        endpoints: vec![
            Endpoint::Link {
                name: "one".into(),
                link: Box::new(one),
            },
            Endpoint::Link {
                name: "two".into(),
                link: Box::new(two),
            },
        ],
    };
    Engine::start_nodes(opts(choice), UringTuning::default(), Vec::new(), vec![node])
        .expect("cable node starts")
}

/// Runs a test function (taking the `EngineChoice` of the file's scope) once on each node
/// engine: `both_engines!(name)` makes `name::uring` and `name::poll`.
#[allow(unused_macros)]
macro_rules! both_engines {
    ($name:ident) => {
        mod $name {
            #[test]
            fn uring() {
                super::$name(super::EngineChoice::Uring)
            }
            #[test]
            fn poll() {
                super::$name(super::EngineChoice::Poll)
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_engines;
