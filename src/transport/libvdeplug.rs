//! The libvdeplug fallback: every scheme vdens-fast does not implement itself (slirp, pcap,
//! vlan, multi, bonding, agno, macvtap, ...) is opened by libvdeplug, loaded at run time
//! (`dlopen("libvdeplug.so.2")`, only when such a VNL is used), with
//! `vde_open_real(url, "vdens-fast", 1, NULL)`.
//!
//! Frames still move through the engine: the Link is one end of an AF_UNIX SOCK_SEQPACKET
//! socketpair (one frame per packet, EOF when the other end closes), and a bridge thread moves
//! frames between the other end and `vde_recv`/`vde_send`, polling `vde_datafd`, `vde_ctlfd`
//! (its hang-up means the network is gone) and a stop pipe. Frames that find the far side full
//! are dropped, as a network would.
//!
//! Threads make the process multithreaded before `unshare(CLONE_NEWUSER)`, which the kernel
//! refuses; vdens-fast then runs in clone mode (a child enters the namespaces) and the bridge
//! keeps running in the parent: [`super::Link::disown`] parks it until the parent exits. With
//! `-u` (unshare only) such a VNL cannot work.

use super::{Framing, Link, OpenError};
use crate::sys::dl::{VdeConn, VdePlug, LIBVDEPLUG_SONAME};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::pipe2;
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// Largest frame moved: VDE_ETHBUFSIZE (9216 + 14 + 4).
const BUF: usize = 9216 + 14 + 4;

const INSTALL: &str = "install libvdeplug2 / libvdeplug-slirp";

/// A running bridge thread between a libvdeplug connection and the socketpair end the engine
/// does not hold. Dropping it stops the thread, which then calls vde_close.
pub struct Bridge {
    /// The process that started the thread: a forked copy of this struct has no thread.
    owner: u32,
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge")
            .field("owner", &self.owner)
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let stop = self.stop.take();
        let Some(t) = self.thread.take() else { return };
        if std::process::id() != self.owner {
            // A forked copy: the thread exists only in the original process.
            std::mem::forget(t);
            return;
        }
        if let Some(s) = &stop {
            let _ = nix::unistd::write(s, &[1]);
        }
        let _ = t.join();
    }
}

/// Bridges handed over by [`park`]: they run until this process exits.
static PARKED: Mutex<Vec<Bridge>> = Mutex::new(Vec::new());

extern "C" fn stop_parked() {
    let v: Vec<Bridge> = match PARKED.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(_) => return,
    };
    drop(v);
}

/// Keeps `b` running until the process exits (for clone mode's parent, whose child holds the
/// engine side of the link); then it is stopped and its connection closed.
pub fn park(b: Bridge) {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        let _ = crate::sys::dl::at_exit(stop_parked);
    });
    if let Ok(mut g) = PARKED.lock() {
        g.push(b);
    }
}

/// Bridge-side socketpair ends, closed in every forked child (see [`crate::sys::dl::at_fork_child`]),
/// so that only the process running the bridge holds them and the engine side sees EOF when the
/// bridge ends.
static FORK_CLOSE: [AtomicI32; 32] = [const { AtomicI32::new(-1) }; 32];

extern "C" fn close_bridge_ends_in_child() {
    for s in &FORK_CLOSE {
        let fd = s.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            crate::sys::dl::close_raw(fd);
        }
    }
}

fn register_fork_close(fd: i32) -> Option<usize> {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        let _ = crate::sys::dl::at_fork_child(close_bridge_ends_in_child);
    });
    for (i, s) in FORK_CLOSE.iter().enumerate() {
        if s.compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return Some(i);
        }
    }
    None
}

// path_override is called by transport::open_described before it dispatches on the scheme
// (the call belongs to transport/mod.rs, which the lead merges); until then it is unused.

/// The scheme libvdeplug reads from a (resolved) VNL: what precedes the first `://`, or `vde`
/// for a plain path.
fn plugin_scheme(url: &[u8]) -> &[u8] {
    url.windows(3)
        .position(|w| w == b"://")
        .map_or(b"vde", |i| &url[..i])
}

/// The files libvdeplug tries, in order, for `scheme`'s plugin when `VDEPLUGIN_PATH` is
/// `dirs`: `DIR/libvdeplug_SCHEME.so` for each `:`-separated DIR (an empty one is `""`, i.e.
/// the root), the first that loads wins (libvdeplug.c, vde_open_dirlist). With the variable
/// set, these are the only places libvdeplug looks.
pub fn path_plugins(dirs: &[u8], scheme: &[u8]) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut rest = dirs;
    while !rest.is_empty() {
        let len = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
        let mut p = rest[..len].to_vec();
        p.extend_from_slice(b"/libvdeplug_");
        p.extend_from_slice(scheme);
        p.extend_from_slice(b".so");
        v.push(PathBuf::from(std::ffi::OsString::from_vec(p)));
        rest = &rest[(len + 1).min(rest.len())..];
    }
    v
}

/// The scheme of `url` (a resolved VNL) when `VDEPLUGIN_PATH` holds a plugin for it: then
/// libvdeplug must open it even for a scheme vdens-fast implements, as classic vdens (which
/// opens everything through libvdeplug) uses the user's `libvdeplug_ptp.so` for `ptp://`.
///
/// Where `VDEPLUGIN_PATH` holds no plugin for a built-in scheme, the built-in transport stays:
/// classic fails there ("Protocol not supported", since the variable replaces libvdeplug's
/// whole search path), vdens-fast deliberately does not. Other schemes always go to
/// libvdeplug, which then searches only `VDEPLUGIN_PATH`, as classic does.
pub fn path_override<S: AsRef<OsStr> + ?Sized>(url: &S) -> Option<String> {
    let url = url.as_ref().as_bytes();
    if url.starts_with(b"=") {
        // vdens's coprocess VNL: never libvdeplug's.
        return None;
    }
    let dirs = std::env::var_os("VDEPLUGIN_PATH")?;
    let scheme = plugin_scheme(url);
    path_plugins(dirs.as_bytes(), scheme)
        .iter()
        .any(|p| p.is_file())
        .then(|| String::from_utf8_lossy(scheme).into_owned())
}

/// Opens `url` (the resolved VNL, bytes as in C) through libvdeplug, with the description
/// `descr` (vde_plug's -D; the plugin adds user and pid as for any client); `vnl` names it
/// in messages.
pub fn open<S: AsRef<OsStr> + ?Sized>(
    vnl: &str,
    url: &S,
    scheme: &str,
    descr: &OsStr,
) -> Result<Link, OpenError> {
    let url = url.as_ref().as_bytes();
    let lib = VdePlug::get().map_err(|why| {
        OpenError::protocol(
            vnl,
            "loading libvdeplug",
            why.to_string(),
            Some(format!(
                "{scheme}:// is opened through libvdeplug plugins ({LIBVDEPLUG_SONAME}): {INSTALL}"
            )),
        )
    })?;
    // Threads started from here on (the plugin's own, e.g. slirp's, and the bridge) inherit a
    // mask blocking every signal, so process-directed signals (SIGCHLD, SIGTERM...) reach the
    // main thread's signalfd instead of being taken, and lost, by one of them.
    let _mask = BlockAll::new();
    let conn = lib.open(url, descr.as_bytes()).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) {
            OpenError::UnknownScheme {
                vnl: vnl.to_string(),
                scheme: scheme.to_string(),
            }
        } else {
            OpenError::io(
                vnl,
                "opening through libvdeplug",
                e,
                Some(format!(
                    "libvdeplug_{scheme}.so refused it: see man libvdeplug_{scheme}"
                )),
            )
        }
    })?;
    if conn.datafd() < 0 {
        return Err(OpenError::protocol(
            vnl,
            "opening through libvdeplug",
            format!("libvdeplug_{scheme}.so gave no data descriptor"),
            Some("vdens-fast needs a descriptor to poll for arriving frames".into()),
        ));
    }
    let io = |step: &'static str, e: nix::Error| OpenError::io(vnl, step, e.into(), None);
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| io("creating the bridge socketpair", e))?;
    let (stop_rx, stop_tx) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io("creating the bridge stop pipe", e))?;
    let slot = register_fork_close(theirs.as_raw_fd());
    let label = vnl.to_string();
    let thread = std::thread::Builder::new()
        .name("vdeplug-bridge".into())
        .spawn(move || {
            run(label, conn, &theirs, stop_rx);
            // Forget the number before closing it, so no fork closes a reused descriptor.
            if let Some(s) = slot {
                FORK_CLOSE[s].store(-1, Ordering::Relaxed);
            }
            drop(theirs);
        })
        .map_err(|e| OpenError::io(vnl, "starting the bridge thread", e, None))?;
    let mut link = Link::single(vnl, Framing::Datagram, mine);
    link.bridge = Some(Bridge {
        owner: std::process::id(),
        stop: Some(stop_tx),
        thread: Some(thread),
    });
    Ok(link)
}

/// Blocks every signal in the calling thread until dropped, then restores the mask.
struct BlockAll(Option<SigSet>);

impl BlockAll {
    fn new() -> BlockAll {
        let mut old = SigSet::empty();
        let ok = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut old));
        BlockAll(ok.is_ok().then_some(old))
    }
}

impl Drop for BlockAll {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old), None);
        }
    }
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ENOBUFS)
    )
}

/// The bridge loop; returns (closing the connection; the caller then closes `end`) when stopped,
/// when the engine side closes, or when the network is gone.
fn run(vnl: String, mut conn: VdeConn, end: &OwnedFd, stop: OwnedFd) {
    let mut buf = vec![0u8; BUF];
    let gone = |why: &str| crate::diag!("{vnl}: {why}; this link stops");
    loop {
        let ev = match wait(&conn, end, &stop) {
            Ok(ev) => ev,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                gone(&format!("bridge poll failed: {}", e.desc()));
                return;
            }
        };
        if !ev[0].is_empty() {
            return;
        }
        let any = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
        if ev[1].intersects(any) {
            match recv(end.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                // The engine side closed.
                Ok(0) => return,
                Ok(n) => {
                    // A full or failing network drops the frame, as a wire would.
                    let _ = conn.send(&buf[..n]);
                }
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
        if ev[2].intersects(any) {
            match conn.recv(&mut buf) {
                Ok(0) if ev[2].contains(PollFlags::POLLHUP) => {
                    gone("the network closed its data connection");
                    return;
                }
                // Some plugins consume a control message and return no frame.
                Ok(0) => {}
                Ok(n) => match send(end.as_raw_fd(), &buf[..n.min(BUF)], MsgFlags::MSG_DONTWAIT) {
                    Ok(_) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::ENOBUFS) => {}
                    Err(nix::errno::Errno::EINTR) => {}
                    // The engine side closed.
                    Err(_) => return,
                },
                Err(e) if transient(&e) => {}
                Err(e) => {
                    gone(&format!("receive failed: {}", crate::sys::err_text(&e)));
                    return;
                }
            }
        }
        if ev[3].intersects(rdhup() | PollFlags::POLLHUP | PollFlags::POLLERR) {
            gone("the network closed its control connection");
            return;
        }
    }
}

/// Waits until the bridge has something to do; returns what happened on the stop pipe, the
/// engine's end, the connection's data descriptor and its control descriptor (watched for
/// hang-up only: its data belongs to the plugin), in that order. The connection's descriptors
/// are borrowed for the wait only: sending and receiving take the connection mutably.
fn wait(conn: &VdeConn, end: &OwnedFd, stop: &OwnedFd) -> nix::Result<[PollFlags; 4]> {
    // Checked when the link was opened.
    let data = conn.data_fd().ok_or(nix::errno::Errno::EBADF)?;
    let ctl = conn.ctl_fd().filter(|c| c.as_raw_fd() != data.as_raw_fd());
    let mut fds = [
        PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        PollFd::new(end.as_fd(), PollFlags::POLLIN),
        PollFd::new(data, PollFlags::POLLIN),
        PollFd::new(ctl.unwrap_or(data), rdhup()),
    ];
    let n = if ctl.is_some() { 4 } else { 3 };
    poll(&mut fds[..n], PollTimeout::NONE)?;
    let mut ev = [PollFlags::empty(); 4];
    for (e, f) in ev.iter_mut().zip(&fds[..n]) {
        *e = f.revents().unwrap_or(PollFlags::empty());
    }
    Ok(ev)
}

/// POLLRDHUP (nix does not name it): the peer closed its end of a stream.
fn rdhup() -> PollFlags {
    PollFlags::from_bits_retain(libc::POLLRDHUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dirs: &str, scheme: &str) -> Vec<String> {
        path_plugins(dirs.as_bytes(), scheme.as_bytes())
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn plugin_search_follows_libvdeplug() {
        assert_eq!(
            names("/a:/b", "ptp"),
            ["/a/libvdeplug_ptp.so", "/b/libvdeplug_ptp.so"]
        );
        // An empty element is the root directory; a trailing ':' adds nothing.
        assert_eq!(names(":/b:", "x"), ["/libvdeplug_x.so", "/b/libvdeplug_x.so"]);
        assert_eq!(
            names("a::b", "x"),
            ["a/libvdeplug_x.so", "/libvdeplug_x.so", "b/libvdeplug_x.so"]
        );
        assert!(names("", "x").is_empty(), "an empty variable names no directory");
        assert_eq!(plugin_scheme(b"/tmp/sw"), b"vde");
        assert_eq!(plugin_scheme(b"ptp:///tmp/\xff"), b"ptp");
        assert_eq!(plugin_scheme(b"vlan://3{ptp:///x}"), b"vlan");
    }
}
