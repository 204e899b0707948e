//! Helpers shared by the transport interop tests: temp dirs (tests/common's), child process guards,
//! classic VDE peers (vde_switch, vde_plug on a 2-byte-length stream), frame I/O with timeouts.
//! Everything is AF_UNIX in temp dirs: no network namespace is touched.
#![allow(dead_code)]

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, send, sendto, MsgFlags, UnixAddr};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vdens_fast::transport::{Framing, Link, SendTo};

pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The tests' one temp directory type (tests/common).
#[path = "../common/mod.rs"]
mod common;
pub use common::TempDir;

/// A child process killed and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `f` holds, at most TIMEOUT.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `sock` accepts stream connections (the file appears at bind, before listen).
pub fn wait_listening(sock: &Path) {
    wait_for("a listening control socket", || {
        std::os::unix::net::UnixStream::connect(sock).is_ok()
    });
}

/// vde-2's vde_switch on `dir`, its console on a pipe we keep open (EOF on stdin stops it).
pub fn vde_switch(dir: &Path, extra: &[&str]) -> Proc {
    let child = Command::new("vde_switch")
        .arg("-s")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vde_switch (vde2) must be installed");
    wait_listening(&dir.join("ctl"));
    Proc {
        child,
        name: "vde_switch".into(),
    }
}

/// A vde_plug whose stdin/stdout carry the VDE stream; frames it emits arrive on `rx`.
pub struct StreamPlug {
    pub proc: Proc,
    stdin: ChildStdin,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl StreamPlug {
    pub fn start(args: &[&str]) -> StreamPlug {
        let mut child = Command::new("vde_plug")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vde_plug must be installed");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut dec = StreamDecoder::default();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for f in dec.push(&buf[..n]) {
                    if tx.send(f).is_err() {
                        return;
                    }
                }
            }
        });
        StreamPlug {
            proc: Proc {
                child,
                name: format!("vde_plug {args:?}"),
            },
            stdin,
            rx,
        }
    }

    pub fn send(&mut self, frame: &[u8]) {
        self.stdin.write_all(&encode_stream(frame)).unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next frame carrying `marker`, skipping others (switches flood STP etc.).
    pub fn expect(&self, marker: &[u8]) -> Vec<u8> {
        let end = Instant::now() + TIMEOUT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let f = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{}: no frame with marker {marker:?}", self.proc.name));
            if contains(&f, marker) {
                return f;
            }
        }
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// 2-byte big-endian length, then the frame.
pub fn encode_stream(frame: &[u8]) -> Vec<u8> {
    let mut v = (frame.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(frame);
    v
}

#[derive(Default)]
pub struct StreamDecoder {
    buf: Vec<u8>,
}

impl StreamDecoder {
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 2 {
                return out;
            }
            let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
            if self.buf.len() < 2 + len {
                return out;
            }
            let f: Vec<u8> = self.buf.drain(..2 + len).skip(2).collect();
            if len > 0 {
                out.push(f);
            }
        }
    }
}

/// A broadcast Ethernet frame (so switches flood it) with a local-experimental EtherType and
/// `marker` in its payload.
pub fn frame(src_last: u8, marker: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0x00, 0x5e, 0x10, 0x20, src_last]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(marker);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

fn wait_readable(fd: BorrowedFd<'_>, until: Instant) -> bool {
    let left = until.saturating_duration_since(Instant::now());
    let ms = left.as_millis().min(u16::MAX as u128) as u16;
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

/// Sends one frame on a link the way the engine would (framing and send_to honoured).
pub fn link_send(link: &Link, f: &[u8]) {
    let fd = link.tx_fd().expect("link has a tx descriptor");
    match link.framing {
        Framing::Datagram => match &link.send_to {
            SendTo::Connected => {
                send(fd.as_raw_fd(), f, MsgFlags::empty()).unwrap();
            }
            SendTo::Unix(p) => {
                let a = UnixAddr::new(p).unwrap();
                sendto(fd.as_raw_fd(), f, &a, MsgFlags::empty()).unwrap();
            }
        },
        Framing::Stream => {
            let b = encode_stream(f);
            let n = nix::unistd::write(fd, &b).unwrap();
            assert_eq!(n, b.len());
        }
        Framing::Null => {}
    }
}

/// Receives frames from a link until one carries `marker`, at most TIMEOUT.
pub fn link_expect(link: &Link, marker: &[u8]) -> Vec<u8> {
    let fd = link.rx_fd().expect("link has an rx descriptor");
    let end = Instant::now() + TIMEOUT;
    let mut dec = StreamDecoder::default();
    let mut buf = vec![0u8; 65536];
    loop {
        assert!(
            wait_readable(fd.as_fd(), end),
            "{}: no frame with marker {marker:?}",
            link.vnl
        );
        let frames = match link.framing {
            Framing::Datagram => {
                let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
                vec![buf[..n].to_vec()]
            }
            Framing::Stream => {
                let n = nix::unistd::read(fd, &mut buf).unwrap();
                assert!(n > 0, "{}: EOF on the stream", link.vnl);
                dec.push(&buf[..n])
            }
            Framing::Null => vec![],
        };
        if let Some(f) = frames.into_iter().find(|f| contains(f, marker)) {
            return f;
        }
    }
}

/// Sends frames both ways between a link and a stream plug, checking content.
pub fn exchange(link: &Link, plug: &mut StreamPlug, tag: &str) {
    // A few tries: a fresh port may drop the very first frames while it comes up.
    let m1 = format!("to-plug-{tag}");
    let f1 = frame(1, m1.as_bytes());
    let end = Instant::now() + TIMEOUT;
    let got = loop {
        link_send(link, &f1);
        match plug.rx.recv_timeout(Duration::from_millis(200)) {
            Ok(f) if contains(&f, m1.as_bytes()) => break f,
            _ => assert!(Instant::now() < end, "{tag}: frame never reached the plug"),
        }
    };
    assert_eq!(got, f1, "{tag}: frame altered on the way to the plug");
    let m2 = format!("to-link-{tag}");
    let f2 = frame(2, m2.as_bytes());
    plug.send(&f2);
    let got = link_expect(link, m2.as_bytes());
    assert_eq!(got, f2, "{tag}: frame altered on the way to the link");
}

/// Whether process `pid` still exists (a zombie counts as existing).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
