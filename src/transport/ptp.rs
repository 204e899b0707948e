//! `ptp://PATH`: a point-to-point link over AF_UNIX, speaking both generations of vdeplug4.
//!
//! - 4.0.1 (Debian; what `vde_plug`/`vdens` here speak): SOCK_DGRAM. The first opener binds
//!   PATH and sends to `PATH+` (unconnected: the peer may not exist yet, so the Link says
//!   `SendTo::Unix(PATH+)`); the second binds `PATH+` and connects to PATH. A stale socket
//!   (connect gives ECONNREFUSED) is unlinked and reused. When the first opener restarts,
//!   the second's sends fail until it connects to the new socket: `Link::reconnect` gives
//!   `Reconnect::Unix(PATH)` for the engine to call on such a failure, as 4.0.1 reconnects
//!   in its send. The first opener needs nothing when the second restarts: it sends by path
//!   and stays connected to nobody, so a new second may connect to it.
//! - master (2025): one SOCK_SEQPACKET. The first opener binds and listens on PATH (backlog 1,
//!   no chmod); the second connects and reads a 1-byte ack (0 = accepted, else an errno:
//!   EISCONN while the listener has its peer). After a hang-up the listener accepts the next
//!   peer; the connecting side connects to PATH again, or, when PATH is gone, binds and
//!   listens there itself (the two swap roles).
//!
//! Master has no selector (it only speaks seqpacket, and takes the whole VNL rest as the
//! path). vdens-fast chooses by what sits at PATH: a live datagram socket → second opener,
//! datagram; a socket refusing datagrams with EPROTOTYPE → a seqpacket listener, connect to
//! it; nothing or a stale socket → first opener, datagram by default (the peers on these
//! machines run 4.0.1), or a seqpacket listener when the VNL ends in `[seqpacket]` (a
//! vdens-fast option). `[seqpacket]` at a live datagram PATH is an error.
//!
//! Both seqpacket roles are hosted ([`PtpHost`], `Hosted::Ptp`): the engine runs them as a
//! node (src/engine/node.rs) whose first endpoint is the tap and whose second is the peer
//! while there is one, so the command never waits for a peer, and peers come and go. The
//! listening socket and the first connection are made here, in the host namespaces, before any
//! thread starts; accepting, acking, and reconnecting happen on the node's thread.
//!
//! A datagram end that offers super-frames binds a second socket beside its own, at
//! `PATH+fast1` (first opener) or `PATH+fast2` (second opener), over which the first opener
//! sends to the second once they paired (`wire::superframe`).
//!
//! Files the datagram openers bind are removed when the Link drops; a seqpacket PATH is
//! removed when its node stops listening (the [`PtpHost`] is dropped or shut down).

use super::{Framing, Hosted, Link, OpenError, SendTo};
use nix::errno::Errno;
use nix::sys::socket::{
    accept4, bind, connect, listen, recv, send, setsockopt, socket, sockopt, AddressFamily, Backlog,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// How long a master-generation listener gets to accept and ack.
const ACK_TIMEOUT_S: i64 = 2;
/// How long a seqpacket end keeps trying to find its peer again after a hang-up, while the
/// socket at PATH keeps changing (a listener dying and another starting there).
const RECONNECT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);
/// What sits at a path.
enum Found {
    Nothing,
    /// A socket file nobody listens on.
    Stale,
    /// A live datagram socket, here already connected to.
    Datagram,
    /// A socket that refuses datagrams: a master-generation seqpacket listener (or a stream).
    NotDatagram,
    NotSocket,
    /// A refusing socket replaced by another one while being looked at.
    Changed,
}

/// How long a socket file must keep refusing connections to be taken for stale. bind(2)
/// creates the file before the socket can be found through it, so a live opener binding at
/// this very moment refuses for an instant (and classic 4.0.1 would remove its file then).
pub(super) const STALE_RECHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// What sits at `path`; a socket refusing connections is looked at again after
/// [`STALE_RECHECK`] and reported stale only when the same file still refuses.
fn probe(vnl: &str, path: &Path) -> Result<Found, OpenError> {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
    let before = ino(path);
    match probe_once(vnl, path)? {
        Found::Stale => {
            std::thread::sleep(STALE_RECHECK);
            match probe_once(vnl, path)? {
                Found::Stale if ino(path) == before => Ok(Found::Stale),
                // Another opener replaced it meanwhile: look at the new one once more.
                Found::Stale => Ok(Found::Changed),
                other => Ok(other),
            }
        }
        other => Ok(other),
    }
}

fn probe_once(vnl: &str, path: &Path) -> Result<Found, OpenError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => {
            return Err(OpenError::io(
                vnl,
                "looking at the ptp path",
                e,
                Some(format!("checking {}", path.display())),
            ))
        }
        Ok(m) if !m.file_type().is_socket() => return Ok(Found::NotSocket),
        Ok(_) => {}
    }
    let s = UnixDatagram::unbound().map_err(|e| OpenError::io(vnl, "creating a socket", e, None))?;
    match s.connect(path) {
        Ok(()) => Ok(Found::Datagram),
        Err(e) => match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Ok(Found::Stale),
            // A live datagram socket already connected to its own peer refuses others.
            Some(libc::EPERM) => Ok(Found::Datagram),
            Some(libc::ENOENT) => Ok(Found::Nothing),
            Some(libc::EPROTOTYPE) => Ok(Found::NotDatagram),
            _ => Err(OpenError::io(
                vnl,
                "probing the ptp socket",
                e,
                Some(format!("connecting to {}", path.display())),
            )),
        },
    }
}

/// Whether a live 4.0.1 (datagram) ptp end is bound at `path` (the peer's address: `PATH+`
/// for a first opener, PATH for a second): one connect of a throwaway socket, which the peer
/// does not see. For the control thread, which turns a ptp interface's carrier off while its
/// peer is away (the data plane cannot tell: with the carrier off, nothing is sent).
pub fn peer_alive(path: &Path) -> bool {
    matches!(probe_once("", path), Ok(Found::Datagram))
}

fn plus(path: &Path) -> PathBuf {
    let mut p = OsString::from(path.as_os_str());
    p.push("+");
    PathBuf::from(p)
}

fn unlink_stale(vnl: &str, path: &Path) -> Result<(), OpenError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OpenError::io(
            vnl,
            "removing a stale ptp socket",
            e,
            Some(format!("{} is left from an earlier run", path.display())),
        )),
    }
}

fn chmod_0700(vnl: &str, path: &Path) -> Result<(), OpenError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| OpenError::io(vnl, "setting ptp socket permissions", e, None))
}

fn bind_hint(e: &io::Error, path: &Path) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => format!("{} was taken meanwhile: try again", path.display()),
        Some(libc::ENOENT) => format!("the directory of {} does not exist", path.display()),
        Some(libc::EACCES) => format!("no permission to create {}", path.display()),
        _ => format!("binding {}", path.display()),
    }
}

/// Datagrams the first opener's socket queues from its peer. The peer (the second opener)
/// is connected to PATH but PATH is not connected back, so the kernel holds the peer's sends
/// to this many queued datagrams (net.unix.max_dgram_qlen, 10 by default) and makes it wait
/// for room after every few frames. Measured (two vdens-fast over ptp://, iperf3 from the
/// second opener to the first, 2 CPUs, two runs each, queue of 10 / 64 / 256 / 1024): TCP
/// 2.3-3.1 / 4.1 / 3.8-3.9 / 3.4-3.5 Gbit/s, UDP 64 B 89-108 / 145-151 / 166-177 / 147-167
/// kpps. Beyond the queue, what the peer may have in flight stays bounded by its send buffer.
pub const FIRST_RX_QLEN: u32 = 256;

/// The first opener's socket: one that queues [`FIRST_RX_QLEN`] datagrams when a helper
/// process can make it ([`crate::sys::unix_dgram_with_qlen`]), else a plain one.
fn first_socket() -> io::Result<OwnedFd> {
    crate::sys::unix_dgram_with_qlen(FIRST_RX_QLEN).or_else(|_| {
        socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io::Error::from)
    })
}

/// One role decision's outcome: done (a link or a failure), or `Again` when another opener
/// changed PATH between the look and the bind or connect (two ends started together), so
/// the decision is taken again from the start, as 4.0.1 falls back from first to second
/// opener when its bind fails.
#[allow(clippy::large_enum_variant)] // one per role decision, moved once
enum Try {
    Done(Result<Link, OpenError>),
    Again(OpenError),
}

/// Binding `path` failed with `e`: EADDRINUSE means another opener bound it since we looked
/// (the role decision is made again); anything else ends the open.
fn bind_failed(vnl: &str, e: io::Error, path: &Path) -> Try {
    let raced = e.raw_os_error() == Some(libc::EADDRINUSE);
    let hint = bind_hint(&e, path);
    let err = OpenError::io(vnl, "binding the ptp socket", e, Some(hint));
    if raced {
        Try::Again(err)
    } else {
        Try::Done(Err(err))
    }
}

/// How long the role decision is retried while other openers keep changing PATH.
const ROLE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// First opener, 4.0.1: bind PATH, send to PATH+.
fn first(vnl: &str, path: &Path) -> Try {
    let sock = match first_socket() {
        Ok(s) => s,
        Err(e) => return Try::Done(Err(OpenError::io(vnl, "creating a socket", e, None))),
    };
    let addr = match UnixAddr::new(path) {
        Ok(a) => a,
        Err(e) => return Try::Done(Err(OpenError::io(vnl, "binding the ptp socket", e.into(), None))),
    };
    if let Err(e) = bind(sock.as_raw_fd(), &addr) {
        return bind_failed(vnl, io::Error::from(e), path);
    }
    let mut link = Link::null(vnl);
    link.framing = Framing::Datagram;
    link.rx = Some(sock);
    link.send_to = SendTo::Unix(plus(path));
    link.cleanup = vec![path.to_path_buf()];
    Try::Done(chmod_0700(vnl, path).map(|_| link))
}

/// Makes PATH+ free for this second opener (nothing there, or a stale socket removed: None);
/// else the [`Try`] to return (a live peer there: try again; something else: give up).
fn free_plus(vnl: &str, path: &Path, out: &Path) -> Option<Try> {
    let found = match probe(vnl, out) {
        Ok(f) => f,
        Err(e) => return Some(Try::Done(Err(e))),
    };
    match found {
        Found::Nothing => None,
        Found::Stale => unlink_stale(vnl, out).err().map(|e| Try::Done(Err(e))),
        Found::Changed => Some(Try::Again(OpenError::protocol(
            vnl,
            "joining the ptp link",
            format!("{} kept changing", out.display()),
            Some("is a third program using this path?".into()),
        ))),
        Found::Datagram => {
            // Both ends live, or PATH's end has just died: a killed vdens-fast's socket lives
            // on while the kernel tears down its io_uring (which holds the socket for its
            // pending receives), so a restart at once finds it still answering. Looked at
            // again until ROLE_DEADLINE; a third opener is refused then.
            Some(Try::Again(OpenError::io(
                vnl,
                "joining the ptp link",
                io::Error::from_raw_os_error(libc::EADDRINUSE),
                Some(format!(
                    "both ends are taken: {} and {} are in use",
                    path.display(),
                    out.display()
                )),
            )))
        }
        Found::NotDatagram | Found::NotSocket => Some(Try::Done(Err(OpenError::protocol(
            vnl,
            "joining the ptp link",
            format!("{} exists and is not a ptp datagram socket", out.display()),
            Some("remove it or choose another path".into()),
        )))),
    }
}

/// Second opener, 4.0.1: bind PATH+, connected to PATH.
fn second(vnl: &str, path: &Path) -> Try {
    let out = plus(path);
    if let Some(t) = free_plus(vnl, path, &out) {
        return t;
    }
    let sock = match UnixDatagram::bind(&out) {
        Ok(s) => s,
        Err(e) => return bind_failed(vnl, e, &out),
    };
    // From here the Link owns PATH+ and removes it on any failure.
    let mut link = Link::null(vnl);
    link.framing = Framing::Datagram;
    link.cleanup = vec![out.clone()];
    if let Err(e) = sock.connect(path) {
        // The first opener went away since we looked (gone: we may be the first now), or
        // its socket is still connected back to a peer that died (EPERM until it next sends).
        let raced = matches!(
            e.raw_os_error(),
            Some(libc::ECONNREFUSED) | Some(libc::ENOENT) | Some(libc::EPERM)
        );
        let err = OpenError::io(
            vnl,
            "connecting to the ptp peer",
            e,
            Some(format!("{} went away meanwhile", path.display())),
        );
        return if raced {
            Try::Again(err)
        } else {
            Try::Done(Err(err))
        };
    }
    // When the first opener restarts, the engine connects to its new socket at PATH
    // (`Link::reconnect` finds PATH from the bound PATH+).
    link.rx = Some(sock.into());
    Try::Done(chmod_0700(vnl, &out).map(|_| link))
}

/// Connects a SOCK_SEQPACKET socket to `path` (bounded by the socket timeouts set here);
/// the connect errno on failure, so callers can tell a missing path or a stale socket.
fn connect_seqpacket(path: &Path) -> Result<OwnedFd, Errno> {
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let timeout = TimeVal::new(ACK_TIMEOUT_S, 0);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
    setsockopt(&fd, sockopt::SendTimeout, &timeout)?;
    let addr = UnixAddr::new(path)?;
    connect(fd.as_raw_fd(), &addr)?;
    super::widen_sndbuf(&fd);
    Ok(fd)
}

fn connect_error(vnl: &str, path: &Path, e: Errno) -> OpenError {
    let hint = match e {
        Errno::EPROTOTYPE => format!(
            "{} is a stream socket, neither kind of ptp endpoint",
            path.display()
        ),
        Errno::EAGAIN => {
            return OpenError::protocol(
                vnl,
                "connecting to the ptp peer",
                format!("timed out after {ACK_TIMEOUT_S} s"),
                Some(format!(
                "is the peer alive? the seqpacket ptp listener {} takes no connection: its backlog is full",
                path.display()
            )),
            )
        }
        _ => format!("connecting to the seqpacket ptp listener {}", path.display()),
    };
    OpenError::io(vnl, "connecting to the ptp peer", e.into(), Some(hint))
}

/// What a freshly connected seqpacket socket got instead of, or as, its ack.
enum Ack {
    Accepted,
    Refused(u8),
    /// EOF or ECONNRESET: the listener closed the connection unacked. A listener killed
    /// with SIGKILL does this to whoever connected while its process was being torn down.
    HungUp(Option<Errno>),
    Silent,
    Failed(Errno),
}

/// Waits for the ack (within the receive timeout [`connect_seqpacket`] set).
fn recv_ack(fd: &OwnedFd) -> Ack {
    let mut ack = [0u8; 1];
    match recv(fd.as_raw_fd(), &mut ack, MsgFlags::empty()) {
        Ok(1) if ack[0] == 0 => Ack::Accepted,
        Ok(1) => Ack::Refused(ack[0]),
        Ok(_) => Ack::HungUp(None),
        Err(Errno::ECONNRESET) => Ack::HungUp(Some(Errno::ECONNRESET)),
        Err(Errno::EAGAIN) => Ack::Silent,
        Err(e) => Ack::Failed(e),
    }
}

/// The error an unaccepted ack makes.
fn ack_error(vnl: &str, path: &Path, ack: Ack) -> OpenError {
    let step = "reading the ptp ack";
    match ack {
        Ack::Accepted => unreachable!("an accepted ack is no error"),
        Ack::Refused(code) => {
            let e = io::Error::from_raw_os_error(code as i32);
            let hint = if code as i32 == libc::EISCONN {
                "the listener already has its peer".to_string()
            } else {
                "the ptp listener refused the connection".to_string()
            };
            OpenError::io(vnl, step, e, Some(hint))
        }
        Ack::HungUp(Some(e)) => OpenError::io(vnl, step, e.into(), None),
        Ack::HungUp(None) => {
            OpenError::protocol(vnl, step, "the listener hung up without an ack".into(), None)
        }
        Ack::Silent => OpenError::protocol(
            vnl,
            step,
            format!("no ack within {ACK_TIMEOUT_S} s"),
            Some(format!("is {} a vdeplug4 ptp listener?", path.display())),
        ),
        Ack::Failed(e) => OpenError::io(vnl, step, e.into(), None),
    }
}

/// Clears the timeouts [`connect_seqpacket`] set, once the ack is in.
fn clear_timeouts(vnl: &str, fd: &OwnedFd) -> Result<(), OpenError> {
    let zero = TimeVal::new(0, 0);
    setsockopt(fd, sockopt::ReceiveTimeout, &zero)
        .and_then(|_| setsockopt(fd, sockopt::SendTimeout, &zero))
        .map_err(|e| OpenError::io(vnl, "clearing socket timeouts", e.into(), None))
}

/// Reads the listener's 1-byte ack on a freshly connected socket, then clears the timeouts.
fn read_ack(vnl: &str, path: &Path, fd: &OwnedFd) -> Result<(), OpenError> {
    match recv_ack(fd) {
        Ack::Accepted => clear_timeouts(vnl, fd),
        other => Err(ack_error(vnl, path, other)),
    }
}

/// Binds and listens on `path` with SOCK_SEQPACKET (non-blocking, backlog 1 as master). The
/// socket file gets the permissions the umask leaves, as master's (no chmod).
fn listen_seqpacket(vnl: &str, path: &Path) -> Result<OwnedFd, OpenError> {
    let io_err =
        |step: &'static str, e: Errno, hint: Option<String>| OpenError::io(vnl, step, e.into(), hint);
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| io_err("creating a seqpacket socket", e, None))?;
    let addr = UnixAddr::new(path).map_err(|e| io_err("building the socket address", e, None))?;
    bind(fd.as_raw_fd(), &addr).map_err(|e| {
        let e: io::Error = e.into();
        let hint = bind_hint(&e, path);
        OpenError::io(vnl, "binding the ptp socket", e, Some(hint))
    })?;
    if let Err(e) = listen(&fd, Backlog::new(1).expect("backlog 1")) {
        let _ = std::fs::remove_file(path);
        return Err(io_err("listening on the ptp socket", e, None));
    }
    Ok(fd)
}

/// A 2025 (seqpacket) ptp end, run by the engine as a node ([`super::Hosted::Ptp`]) with the
/// tap as its first endpoint and the peer, while there is one, as its second.
///
/// - Listening (first opener): peers are accepted at any time and acked with 0; one arriving
///   while a peer is attached gets `EISCONN` and is closed; after a hang-up the next peer is
///   accepted. PATH is removed when the node ends.
/// - Connecting: when the listener hangs up, [`PtpHost::reconnect`] does what master's plugin
///   does: connect again to PATH (a new listener there is acked as usual), or, when PATH is
///   gone, bind and listen there, so this end becomes the listener the other one reconnects
///   to. (Master's plugin then returns -1 from that one recv, so `vde_plug` in its two-VNL
///   form ends there, while its stream form, qemu and other callers that ignore a failed recv
///   go on listening; vdens-fast goes on listening.)
#[derive(Debug)]
pub struct PtpHost {
    pub vnl: String,
    pub path: PathBuf,
    /// The listening socket, while this end is the listener.
    listen: Option<OwnedFd>,
    /// The connected peer the node starts with (connecting role), until the node takes it.
    peer: Option<OwnedFd>,
    /// Whether PATH is removed when this end stops listening (false in a process that handed
    /// the link to a child: vdens -c).
    remove: bool,
    /// Whether the node has a peer attached (set by the node, see [`PtpHost::set_present`]):
    /// the control thread's view, for the tap's carrier ([`PtpHost::presence`]).
    present: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What [`PtpHost::reconnect`] found.
#[derive(Debug)]
pub enum Reconnected {
    /// Connected and acked: the new peer.
    Peer(OwnedFd),
    /// PATH was free: this end now listens there.
    Listening,
}

impl PtpHost {
    /// The listening socket, while this end listens.
    pub fn listener(&self) -> Option<BorrowedFd<'_>> {
        self.listen.as_ref().map(|f| f.as_fd())
    }

    /// The peer this end connected to when it was opened (connecting role), not yet taken.
    pub fn peer(&self) -> Option<BorrowedFd<'_>> {
        self.peer.as_ref().map(|f| f.as_fd())
    }

    /// Takes the peer this end connected to when it was opened.
    pub fn take_peer(&mut self) -> Option<OwnedFd> {
        self.peer.take()
    }

    /// Accepts one waiting connection (non-blocking): `Ok(None)` when none waits.
    pub fn accept(&self) -> Result<Option<OwnedFd>, Errno> {
        let Some(l) = &self.listen else { return Ok(None) };
        loop {
            match accept4(l, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK) {
                Ok(fd) => {
                    super::widen_sndbuf(&fd);
                    return Ok(Some(fd));
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) | Err(Errno::ECONNABORTED) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the 1-byte ack on an accepted connection: 0 accepts, an errno refuses. False
    /// when the connection is already gone.
    pub fn ack(fd: &OwnedFd, code: u8) -> bool {
        matches!(
            send(
                fd.as_raw_fd(),
                &[code],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL
            ),
            Ok(1)
        )
    }

    /// After the listener hung up (connecting role), as master does: connect to PATH again,
    /// or listen there when nothing does. A stale socket at PATH (its listener died without
    /// removing it) is removed and PATH listened on (master means to, but its check sits
    /// where it is never reached, so master gives up there). Blocking, as master's: a connect
    /// to a full queue and the ack wait are each bounded by 2 s, the whole by
    /// `RECONNECT_DEADLINE`.
    ///
    /// A listener killed with SIGKILL keeps its socket for a moment while its process is torn
    /// down: a connect then succeeds and the ack read gets ECONNRESET or EOF, so that is tried
    /// again. A socket refusing connections is taken for stale only when the same file still
    /// refuses `STALE_RECHECK` later (a listener restarting there has bound but not yet
    /// called listen(2), and refuses for that instant).
    pub fn reconnect(&mut self) -> Result<Reconnected, OpenError> {
        use std::os::unix::fs::MetadataExt;
        let (vnl, path) = (self.vnl.as_str(), self.path.as_path());
        let end = std::time::Instant::now() + RECONNECT_DEADLINE;
        let ino = || std::fs::metadata(path).map(|m| m.ino()).ok();
        let mut refused: Option<Option<u64>> = None;
        let mut last: Option<OpenError> = None;
        while std::time::Instant::now() < end {
            match connect_seqpacket(path) {
                Ok(fd) => match recv_ack(&fd) {
                    Ack::Accepted => {
                        clear_timeouts(vnl, &fd)?;
                        return Ok(Reconnected::Peer(fd));
                    }
                    a @ Ack::HungUp(_) => {
                        last = Some(ack_error(vnl, path, a));
                        std::thread::sleep(STALE_RECHECK);
                        continue;
                    }
                    a => return Err(ack_error(vnl, path, a)),
                },
                Err(Errno::ENOENT) => {}
                Err(Errno::ECONNREFUSED) => {
                    let now = ino();
                    if refused != Some(now) {
                        // Refused once: look again before taking it for stale.
                        refused = Some(now);
                        std::thread::sleep(STALE_RECHECK);
                        continue;
                    }
                    unlink_stale(vnl, path)?;
                }
                Err(e) => return Err(connect_error(vnl, path, e)),
            }
            match listen_seqpacket(vnl, path) {
                Ok(fd) => {
                    self.listen = Some(fd);
                    self.remove = true;
                    return Ok(Reconnected::Listening);
                }
                // Someone else bound PATH meanwhile: connect to it.
                Err(e) if e.errno() == Some(libc::EADDRINUSE) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            OpenError::protocol(
                vnl,
                "finding the ptp peer again",
                format!("{} keeps changing between connect and bind", path.display()),
                Some("is a third program using this path?".into()),
            )
        }))
    }

    /// The node attached a peer (true) or detached it (false).
    pub fn set_present(&self, present: bool) {
        self.present.store(present, std::sync::atomic::Ordering::Release);
    }

    /// Whether a peer is attached, as the node last said, for another thread to look at.
    pub fn presence(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.present.clone()
    }

    /// Stops listening: removes PATH (when this process is to) and closes the socket.
    pub fn shutdown(&mut self) {
        if let Some(l) = self.listen.take() {
            if self.remove {
                let _ = std::fs::remove_file(&self.path);
            }
            drop(l);
        }
    }

    /// Forgets PATH without removing it (a child process runs the link now: vdens -c).
    pub fn release(mut self) {
        self.remove = false;
    }
}

impl Drop for PtpHost {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn hosted(vnl: &str, path: &Path, listen: Option<OwnedFd>, peer: Option<OwnedFd>) -> Link {
    let mut link = Link::null(vnl);
    link.framing = Framing::Datagram;
    link.node = Some(Hosted::Ptp(PtpHost {
        vnl: vnl.to_string(),
        path: path.to_path_buf(),
        remove: listen.is_some(),
        listen,
        peer,
        present: Default::default(),
    }));
    link
}

/// Second opener, master generation: SOCK_SEQPACKET connect plus the 1-byte ack.
fn seqpacket(vnl: &str, path: &Path) -> Try {
    let fd = match connect_seqpacket(path) {
        Ok(fd) => fd,
        // Bound but not listening yet (a listener starting this instant), or gone since we
        // looked: look again.
        Err(e @ (Errno::ECONNREFUSED | Errno::ENOENT)) => return Try::Again(connect_error(vnl, path, e)),
        Err(e) => return Try::Done(Err(connect_error(vnl, path, e))),
    };
    Try::Done(read_ack(vnl, path, &fd).map(|_| hosted(vnl, path, None, Some(fd))))
}

/// First opener, master generation (`[seqpacket]`): listen on PATH; the engine accepts.
fn seqpacket_first(vnl: &str, path: &Path) -> Try {
    match listen_seqpacket(vnl, path) {
        Ok(fd) => Try::Done(Ok(hosted(vnl, path, Some(fd), None))),
        // Another opener bound PATH since we looked: connect to it.
        Err(e) if e.errno() == Some(libc::EADDRINUSE) => Try::Again(e),
        Err(e) => Try::Done(Err(e)),
    }
}

/// Where a datagram end's pair socket is bound (`wire::superframe`): the first opener's F2
/// and the second opener's R2, next to PATH and PATH+.
fn pair_path(path: &Path, first: bool) -> PathBuf {
    let mut p = OsString::from(path.as_os_str());
    p.push(if first { "+fast1" } else { "+fast2" });
    PathBuf::from(p)
}

/// The second socket of a datagram end that offered super-frames (`wire::superframe`), bound
/// at [`pair_path`] (a socket file left there by an earlier run is replaced: this end owns
/// PATH or PATH+, so it owns that name too) with the permissions of PATH: F2 (`first`)
/// unconnected so that the peer's R2 can connect to it, R2 connected to itself so that nobody
/// can send to it before it is paired. Pathnames, not abstract names: those are per network
/// namespace, and ptp ends often live in different ones (the NAT router of the tutorial).
fn pair_socket(path: &Path, first: bool) -> io::Result<super::PairSocket> {
    let own = pair_path(path, first);
    let peer = pair_path(path, !first);
    let addr = UnixAddr::new(own.as_path())?;
    UnixAddr::new(peer.as_path())?;
    let fd = bind_own(&own, SockType::Datagram, |fd| {
        if first {
            super::widen_sndbuf(fd);
            Ok(())
        } else {
            connect(fd.as_raw_fd(), &addr).map_err(io::Error::from)
        }
    })?;
    Ok(super::PairSocket {
        fd,
        peer,
        first,
        handover: None,
    })
}

/// `PATH+fast3`: the first opener's listening socket for the tap handover.
fn handover_path(path: &Path) -> PathBuf {
    let mut p = OsString::from(path.as_os_str());
    p.push("+fast3");
    PathBuf::from(p)
}

/// Whether the tap handover is offered (`VDENS_FAST_HANDOVER=0` turns it off, so that the
/// tagged path between two vdens-fast ends can be tried on its own).
fn handover_wanted() -> bool {
    std::env::var_os("VDENS_FAST_HANDOVER").map_or(true, |v| v != "0")
}

/// The first opener's listening unix seqpacket socket at `own` (`PATH+fast3`; non-blocking,
/// mode 0700; a socket file left there by an earlier run is replaced, as the pair socket's
/// is). Made by the port running the link, which adds `own` to the link's files to remove.
pub fn handover_listener(own: &Path) -> io::Result<OwnedFd> {
    bind_own(own, SockType::SeqPacket, |fd| {
        listen(fd, Backlog::new(4).map_err(io::Error::from)?).map_err(io::Error::from)
    })
}

/// A non-blocking unix socket of type `ty` bound at `own`, a name this end owns (a socket file
/// left there by an earlier run is replaced; anything else there is EEXIST), mode 0700, then
/// `then` done on it; on a failure after the bind the file is removed again.
fn bind_own(own: &Path, ty: SockType, then: impl FnOnce(&OwnedFd) -> io::Result<()>) -> io::Result<OwnedFd> {
    let addr = UnixAddr::new(own)?;
    match std::fs::symlink_metadata(own) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(own)?,
        Ok(_) => return Err(io::Error::from_raw_os_error(libc::EEXIST)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let fd = socket(
        AddressFamily::Unix,
        ty,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    bind(fd.as_raw_fd(), &addr)?;
    let done = std::fs::set_permissions(own, std::fs::Permissions::from_mode(0o700)).and_then(|_| then(&fd));
    if let Err(e) = done {
        let _ = std::fs::remove_file(own);
        return Err(e);
    }
    Ok(fd)
}

/// Opens `ptp://PATH`; `seqpacket` (`[seqpacket]`) makes a new PATH a seqpacket listener.
///
/// Two ends started at the same instant both find PATH free and race to bind it: the loser
/// takes the decision again and becomes the second opener (4.0.1 does the same by falling
/// back from its first-opener attempt). Retried for [`ROLE_DEADLINE`] at most.
///
/// `offer`: a datagram link reads tagged datagrams, and its second opener asks for them
/// (`wire::superframe`; `Link::superframes`).
pub fn open(vnl: &str, path: &Path, seqpacket_asked: bool, offer: bool) -> Result<Link, OpenError> {
    let end = std::time::Instant::now() + ROLE_DEADLINE;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match open_once(vnl, path, seqpacket_asked) {
            Try::Done(Ok(mut link)) => {
                if offer && link.node.is_none() {
                    link.superframes = Some(Default::default());
                    let first = matches!(link.send_to, SendTo::Unix(_));
                    // Best effort: without it, the first opener sends standard frames.
                    if let Ok(mut p) = pair_socket(path, first) {
                        // Removed before PATH (PATH+): a new end binds it only after that.
                        link.cleanup.insert(0, pair_path(path, first));
                        // The first opener's listening socket there is made by the port that
                        // runs the link ([`handover_listener`]): vdeplug-fast has none.
                        if handover_wanted() {
                            p.handover = Some(handover_path(path));
                        }
                        link.pair = Some(p);
                    }
                }
                return Ok(link);
            }
            Try::Done(r) => return r,
            Try::Again(e) if std::time::Instant::now() >= end => return Err(e),
            Try::Again(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
        }
    }
}

fn open_once(vnl: &str, path: &Path, seqpacket_asked: bool) -> Try {
    let found = match probe(vnl, path) {
        Ok(f) => f,
        Err(e) => return Try::Done(Err(e)),
    };
    match found {
        Found::Nothing if seqpacket_asked => seqpacket_first(vnl, path),
        Found::Nothing => first(vnl, path),
        Found::Stale => {
            if let Err(e) = unlink_stale(vnl, path) {
                return Try::Done(Err(e));
            }
            if seqpacket_asked {
                seqpacket_first(vnl, path)
            } else {
                first(vnl, path)
            }
        }
        Found::Changed => Try::Again(OpenError::protocol(
            vnl,
            "opening the ptp link",
            format!("{} kept changing", path.display()),
            Some("is a third program using this path?".into()),
        )),
        Found::Datagram if seqpacket_asked => Try::Done(Err(OpenError::protocol(
            vnl,
            "opening the ptp link",
            format!(
                "{} is a 4.0.1 (datagram) ptp endpoint, but [seqpacket] was asked for",
                path.display()
            ),
            Some("drop [seqpacket] to join it, or choose another path".into()),
        ))),
        Found::Datagram => second(vnl, path),
        Found::NotDatagram => seqpacket(vnl, path),
        Found::NotSocket => Try::Done(Err(OpenError::protocol(
            vnl,
            "opening the ptp link",
            format!("{} exists and is not a socket", path.display()),
            Some("choose a path that does not exist yet".into()),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two pair sockets as the kernel treats them: R2 takes nothing before it is paired,
    /// then only what F2 sends; F2's sends fail once R2 is gone; a stale file is replaced.
    #[test]
    fn pair_sockets_take_only_from_each_other() {
        let d = crate::TestDir::new("ptp-pair");
        let path = d.0.join("p");
        let f2 = pair_socket(&path, true).expect("F2");
        let r2 = pair_socket(&path, false).expect("R2");
        assert_eq!(f2.peer, d.0.join("p+fast2"));
        assert_eq!(r2.peer, d.0.join("p+fast1"));
        let third = UnixDatagram::unbound().unwrap();
        let refused = third.send_to(b"frame", &f2.peer).unwrap_err();
        assert_eq!(
            refused.raw_os_error(),
            Some(libc::EPERM),
            "R2 is locked until paired"
        );
        // As the worker does: R2 to F2 (PAIR), then F2 to R2 (JOIN).
        connect(r2.fd.as_raw_fd(), &UnixAddr::new(&r2.peer).unwrap()).unwrap();
        connect(f2.fd.as_raw_fd(), &UnixAddr::new(&f2.peer).unwrap()).unwrap();
        let big = vec![7u8; 65_000];
        assert_eq!(send(f2.fd.as_raw_fd(), &big, MsgFlags::empty()), Ok(big.len()));
        let mut got = vec![0u8; 70_000];
        assert_eq!(
            recv(r2.fd.as_raw_fd(), &mut got, MsgFlags::empty()),
            Ok(big.len())
        );
        let refused = third.send_to(b"frame", &f2.peer).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EPERM), "R2 takes F2's only");
        // R2's end goes (its file too); a new R2 replaces a stale file.
        drop(r2);
        assert_eq!(
            send(f2.fd.as_raw_fd(), b"x", MsgFlags::empty()),
            Err(Errno::ECONNREFUSED)
        );
        let again = pair_socket(&path, false).expect("R2 over the stale file");
        drop(again);
        // Something that is not a socket is left alone.
        std::fs::remove_file(d.0.join("p+fast2")).unwrap();
        std::fs::write(d.0.join("p+fast2"), b"").unwrap();
        assert!(pair_socket(&path, false).is_err());
    }
}
