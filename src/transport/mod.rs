//! Transports: one file per VNL scheme. `open()` performs the scheme's handshake in the host
//! namespaces and returns a [`Link`]: the descriptors the engine moves frames on, and how frames
//! are delimited there. Transports never move frames themselves; the engine owns the data path.

mod cmd;
mod libvdeplug;
mod null;
mod ptp;
pub use ptp::FIRST_RX_QLEN as PTP_FIRST_RX_QLEN;
mod seqpacket;
mod switch;
mod tap;
mod udp;
mod vde;
mod vxlan;
mod vxvde;

pub use cmd::{Coproc, CoprocWatch};
pub use libvdeplug::Bridge;
pub use ptp::{
    handover_listener as ptp_handover_listener, peer_alive as ptp_peer_alive, PtpHost, Reconnected,
};
pub use vde::{take_rejoin, Rejoin};
pub use vxlan::Overlay;

use crate::vnl::{self, Spec, VnlError};
use nix::sys::socket::{setsockopt, sockopt};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Send buffer asked for on a data socket whose sends are bounded only by it: the kernel
/// doubles it, capped by net.core.wmem_max (416 KiB where that is the usual 208 KiB).
/// - A connected AF_UNIX seqpacket sender (ptp:// master generation) may have only this much
///   queued at its peer; with the default (wmem_default, 208 KiB: about 90 full-size frames) a
///   node forwarding a TCP stream dropped about one frame in ten to EAGAIN.
/// - A switch port's datagram socket: the client's socket is connected to it, so the kernel
///   sets no queue limit at the client for it, and a send that does not fit is dropped
///   (MSG_DONTWAIT, so that a slow client holds up no one). Measured (vdens-fast switch host
///   sending TCP to a vdens-fast client, iperf3 -R, 3 alternating rounds): 3-8% of the frames
///   dropped and as many TCP retransmissions with the default buffer, 0-0.5% with this one; 4
///   clients (`fast-switch4`, tcp1r) 4.15-4.2 against 3.0-3.3 Gbit/s.
pub const WIDE_SNDBUF: usize = 1 << 20;

/// Asks for [`WIDE_SNDBUF`]; best effort (the default still works, with more drops).
pub(crate) fn widen_sndbuf(fd: &OwnedFd) {
    let _ = setsockopt(fd, sockopt::SndBuf, &WIDE_SNDBUF);
}

/// How frames are delimited on a link's descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One Ethernet frame per datagram, packet or read/write: vde, ptp, seqpacket, udp, tap.
    Datagram,
    /// A byte stream; each frame preceded by its length as 2 bytes big-endian (vdens `=cmd`,
    /// `cmd://`, libvdestream).
    Stream,
    /// Nothing is carried: frames sent are dropped, none arrive (`null://`).
    Null,
}

/// Where a datagram link sends when its socket cannot be connected in advance (ptp's first
/// opener sends to `PATH+` before the peer's socket exists).
#[derive(Clone, Debug)]
pub enum SendTo {
    /// The socket is connected, or the fd is not a socket: plain write/send.
    Connected,
    /// An AF_UNIX datagram destination path.
    Unix(PathBuf),
}

/// How a datagram link finds its peer again when the peer's socket was replaced: a 4.0.1 ptp
/// second opener is connected to PATH, and when the first opener restarts and binds PATH
/// anew, the survivor's sends fail (ECONNREFUSED once, the kernel then drops the connection:
/// ENOTCONN), and the new first opener's sends to it fail with EPERM until it connects to the
/// new socket. vdeplug4 4.0.1 connects again on such a failed send; so must the engine, by
/// calling [`Reconnect::reconnect`] (see [`Reconnect::wanted`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconnect {
    /// Nothing to do: the link sends by path, or its peer cannot come back at the same place.
    Never,
    /// Connect the send descriptor to this AF_UNIX datagram path again.
    Unix(PathBuf),
}

impl Reconnect {
    /// Whether a send that failed with `errno` calls for [`Reconnect::reconnect`]: the peer's
    /// socket is gone (ECONNREFUSED), the connection was dropped after that (ENOTCONN,
    /// EDESTADDRREQ), or the socket at the path belongs to someone else now (EPERM).
    pub fn wanted(&self, errno: i32) -> bool {
        !matches!(self, Reconnect::Never)
            && matches!(
                errno,
                libc::ECONNREFUSED | libc::ENOTCONN | libc::EDESTADDRREQ | libc::EPERM
            )
    }

    /// Connects `fd` (the link's send descriptor) to the path again: `Ok(true)` when connected
    /// (send the frame again), `Ok(false)` for [`Reconnect::Never`]; an error while no live
    /// peer is there yet (ENOENT, ECONNREFUSED: the peer is restarting; EPERM: the socket
    /// there is still connected to someone else). Then drop the frame and call again at a
    /// later failed send; one connect(2), no blocking, so it may run on a data-plane thread,
    /// at most once every few milliseconds per link while the peer is away.
    pub fn reconnect(&self, fd: BorrowedFd<'_>) -> std::io::Result<bool> {
        match self {
            Reconnect::Never => Ok(false),
            Reconnect::Unix(path) => {
                let addr = nix::sys::socket::UnixAddr::new(path.as_path())?;
                nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)?;
                Ok(true)
            }
        }
    }
}

/// What a link hosts in this process, run by the engine as a node (src/engine/node.rs) with the
/// link's tap as one endpoint.
#[derive(Debug)]
pub enum Hosted {
    /// switch:// or hub://: the node's directory and listening control socket.
    Net(crate::switch::server::Listener),
    /// `ptp://PATH[seqpacket]` (2025 protocol): the listening socket or the connected peer, and
    /// how to find a peer again after a hang-up.
    Ptp(PtpHost),
    /// vxlan:// or vxvde://: the overlay's sockets; the node sends each frame to the remote
    /// learnt for its destination MAC, or to the group.
    Overlay(Box<Overlay>),
}

impl Hosted {
    /// Forgets what this process would clean up (a child process now runs it: vdens -c).
    pub fn release(self) {
        match self {
            Hosted::Net(l) => l.release(),
            Hosted::Ptp(p) => p.release(),
            Hosted::Overlay(o) => o.release(),
        }
    }
}

/// What a transport hands the engine: owned descriptors plus their framing.
///
/// Drop order matters: `rx`/`tx` close before `ctl`, so a switch sees the data socket go before
/// the control connection; then a coprocess is stopped (it has seen EOF on its stdin by then);
/// files in `cleanup` are removed last.
pub struct Link {
    /// The VNL this link was opened from, for messages and stats.
    pub vnl: String,
    pub framing: Framing,
    /// Frames arrive from the network here (None for `null://`).
    pub rx: Option<OwnedFd>,
    /// Frames go to the network here; `None` with `rx` set means the same descriptor.
    pub tx: Option<OwnedFd>,
    /// Destination of sends on a datagram link.
    pub send_to: SendTo,
    /// A control connection whose EOF means the network is gone (vde:// ctl stream).
    pub ctl: Option<OwnedFd>,
    /// Files the transport created, removed when the link is dropped.
    pub cleanup: Vec<PathBuf>,
    /// The coprocess of `=cmd` / `cmd://` links: terminated and reaped when the link drops.
    pub coproc: Option<Coproc>,
    /// The bridge thread of a link opened through libvdeplug (the fallback for schemes not
    /// built in): stopped, and its libvdeplug connection closed, when the link drops, after
    /// `rx`/`tx` are closed.
    pub bridge: Option<Bridge>,
    /// A link run as a node of the engine instead of a plain tap<->link port (switch://,
    /// hub://, vxlan://, vxvde://): the engine runs it with this link's tap as one of the node's endpoints.
    pub node: Option<Hosted>,
    /// A `tap://` link opened with a virtio-net header and offloads (see
    /// [`open_with`]): frames cross between it and the port's tap whole, super-frames
    /// included. [`crate::tap::TapOffload::NONE`] for every other link.
    pub offload: crate::tap::TapOffload,
    /// A link that offered its peer super-frames (`wire::superframe`): whether the peer
    /// takes them now. Tagged datagrams are read from such a link whatever this says; they
    /// are sent only while it is true. The transport or the control thread changes it when
    /// the peer changes (a vde:// rejoin). `None`: plain frames only.
    pub superframes: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// A datagram `ptp://` link that offered super-frames: its second socket, over which the
    /// first opener sends to the second once they paired (`wire::superframe`).
    pub pair: Option<PairSocket>,
}

/// The second socket of a datagram `ptp://` end (`wire::superframe`): F2 of a first opener
/// (sends once paired), R2 of a second opener (receives what F2 sends), bound next to the
/// link's path; non-blocking.
#[derive(Debug)]
pub struct PairSocket {
    pub fd: OwnedFd,
    /// Where the peer's pair socket is bound (R2's path for F2, and the reverse).
    pub peer: PathBuf,
    /// F2 (a first opener's) or R2.
    pub first: bool,
    /// `PATH+fast3`, where the first opener listens for the tap handover
    /// (`engine::core::handover`; `ptp::handover_listener`); None: no handover
    /// (VDENS_FAST_HANDOVER=0).
    pub handover: Option<PathBuf>,
}

impl Link {
    /// A link that carries nothing.
    pub fn null(vnl: &str) -> Link {
        Link {
            vnl: vnl.to_string(),
            framing: Framing::Null,
            rx: None,
            tx: None,
            send_to: SendTo::Connected,
            ctl: None,
            cleanup: Vec::new(),
            coproc: None,
            bridge: None,
            node: None,
            offload: crate::tap::TapOffload::NONE,
            superframes: None,
            pair: None,
        }
    }

    /// A link with one descriptor, connected, and nothing else to hold.
    pub fn single(vnl: &str, framing: Framing, fd: OwnedFd) -> Link {
        let mut l = Link::null(vnl);
        l.framing = framing;
        l.rx = Some(fd);
        l
    }

    /// The descriptor frames arrive on.
    pub fn rx_fd(&self) -> Option<BorrowedFd<'_>> {
        self.rx.as_ref().map(|f| f.as_fd())
    }

    /// The descriptor frames are sent on (the rx one when the link has a single descriptor).
    pub fn tx_fd(&self) -> Option<BorrowedFd<'_>> {
        self.tx.as_ref().or(self.rx.as_ref()).map(|f| f.as_fd())
    }

    /// How this link finds its peer again when a send fails (see [`Reconnect`]); for the
    /// engine to ask once, when it sets the port up. A 4.0.1 ptp second opener is the link
    /// whose connected datagram socket is bound at `PATH+` (the protocol's own naming): it
    /// reconnects to PATH. Every other link: [`Reconnect::Never`].
    pub fn reconnect(&self) -> Reconnect {
        use nix::sys::socket::{getsockname, UnixAddr};
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let (Framing::Datagram, SendTo::Connected, None, Some(fd)) =
            (self.framing, &self.send_to, &self.node, self.tx_fd())
        else {
            return Reconnect::Never;
        };
        let Some(bound) = getsockname::<UnixAddr>(fd.as_raw_fd())
            .ok()
            .and_then(|a| a.path().map(Path::to_path_buf))
        else {
            return Reconnect::Never;
        };
        match bound.as_os_str().as_bytes().strip_suffix(b"+") {
            Some(p) if !p.is_empty() => Reconnect::Unix(PathBuf::from(std::ffi::OsStr::from_bytes(p))),
            _ => Reconnect::Never,
        }
    }
}

impl Link {
    /// Whether this is a datagram `ptp://` end (4.0.1): a first opener sends to `PATH+`, a
    /// second opener is bound at `PATH+` and connected to PATH ([`Link::reconnect`]). A
    /// vde:// link, connected to its switch, is not one: negotiation runts must never be
    /// relayed between the clients of a switch that did not answer the offer.
    pub fn is_dgram_ptp(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        if self.framing != Framing::Datagram || self.node.is_some() {
            return false;
        }
        match &self.send_to {
            SendTo::Unix(p) => p.as_os_str().as_bytes().ends_with(b"+"),
            SendTo::Connected => matches!(self.reconnect(), Reconnect::Unix(_)),
        }
    }

    /// Closes this copy of the link's descriptors without removing its files or stopping its
    /// coprocess: for a process that handed the link to a child (vdens -c). A libvdeplug
    /// bridge keeps running in this process until it exits.
    pub fn disown(mut self) {
        self.cleanup.clear();
        if let Some(c) = self.coproc.take() {
            c.release();
        }
        // The child process holds the engine side; the bridge keeps running here until this
        // process exits.
        if let Some(b) = self.bridge.take() {
            libvdeplug::park(b);
        }
        if let Some(n) = self.node.take() {
            n.release();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.rx.take();
        self.tx.take();
        self.pair.take();
        self.ctl.take();
        self.coproc.take();
        self.bridge.take();
        self.node.take();
        for p in &self.cleanup {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("vnl", &self.vnl)
            .field("framing", &self.framing)
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("send_to", &self.send_to)
            .field("ctl", &self.ctl)
            .field("cleanup", &self.cleanup)
            .field("coproc", &self.coproc)
            .field("bridge", &self.bridge)
            .field("node", &self.node)
            .field("pair", &self.pair)
            .finish()
    }
}

/// Why a VNL could not be opened. Displayed as one line: `VNL: step: why (hint)`.
#[derive(Debug)]
pub enum OpenError {
    /// The scheme is not one vdens-fast knows.
    UnknownScheme { vnl: String, scheme: String },
    /// The VNL is malformed (see [`VnlError`]).
    Vnl { vnl: String, err: VnlError },
    /// The scheme is known but the VNL is malformed.
    Invalid { vnl: String, why: String },
    /// A system call failed during the handshake.
    Io {
        vnl: String,
        step: &'static str,
        err: std::io::Error,
        hint: Option<String>,
    },
    /// The peer answered something the protocol does not allow, or nothing.
    Protocol {
        vnl: String,
        step: &'static str,
        why: String,
        hint: Option<String>,
    },
}

impl OpenError {
    pub(crate) fn io(vnl: &str, step: &'static str, err: std::io::Error, hint: Option<String>) -> OpenError {
        OpenError::Io {
            vnl: vnl.to_string(),
            step,
            err,
            hint,
        }
    }

    pub(crate) fn protocol(vnl: &str, step: &'static str, why: String, hint: Option<String>) -> OpenError {
        OpenError::Protocol {
            vnl: vnl.to_string(),
            step,
            why,
            hint,
        }
    }

    /// The errno of an I/O failure, for callers and tests.
    pub fn errno(&self) -> Option<i32> {
        match self {
            OpenError::Io { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (vnl, step, why, hint) = match self {
            OpenError::UnknownScheme { vnl, scheme } => {
                return write!(
                    f,
                    "{vnl}: unknown VNL scheme '{scheme}': libvdeplug has no plugin for it \
                     (built in: {}; other schemes need libvdeplug_{scheme}.so: install \
                     libvdeplug2 / libvdeplug-slirp or the package providing it)",
                    SCHEMES.join(", ")
                )
            }
            OpenError::Vnl { vnl, err } => return write!(f, "{vnl}: {err}"),
            OpenError::Invalid { vnl, why } => return write!(f, "{vnl}: {why}"),
            OpenError::Io { vnl, step, err, hint } => (vnl, step, crate::sys::err_text(err), hint),
            OpenError::Protocol { vnl, step, why, hint } => (vnl, step, why.clone(), hint),
        };
        write!(f, "{vnl}: {step}: {why}")?;
        if let Some(h) = hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OpenError {}

/// Schemes this build can open.
pub const SCHEMES: &[&str] = &[
    "vde://",
    "ptp://",
    "tap://",
    "seqpacket://",
    "cmd://",
    "=CMD",
    "switch://",
    "hub://",
    "null://",
    "udp://",
    "vxlan://",
    "vxvde://",
];

/// Splits `scheme://rest`; a string without `://` is a `vde://` path, as in libvdeplug.
pub fn split_scheme(vnl: &str) -> (&str, &str) {
    match vnl.find("://") {
        Some(i) => (&vnl[..i], &vnl[i + 3..]),
        None => ("vde", vnl),
    }
}

/// libvdeplug's defaults for a VNL with no scheme: an empty VNL means the user's default
/// switch (`~/.vdeplug/default`, then `~/.vde2/default.switch`, when they exist), and a path
/// naming a regular file means the VNL written on that file's first line. Bytes throughout,
/// as in libvdeplug: a path need not be UTF-8.
pub fn resolve_plain(vnl: &OsStr) -> Result<OsString, OpenError> {
    let b = vnl.as_bytes();
    if b.windows(3).any(|w| w == b"://") || b.starts_with(b"=") {
        return Ok(vnl.to_owned());
    }
    let mut path = vnl.to_owned();
    if path.is_empty() {
        if let Some(home) = std::env::var_os("HOME") {
            for d in ["/.vdeplug/default", "/.vde2/default.switch"] {
                let mut p = home.clone();
                p.push(d);
                if std::fs::symlink_metadata(&p).is_ok() {
                    path = p;
                    break;
                }
            }
        }
    }
    // A bracketed suffix is not part of the file name: libvdeplug stats the whole string,
    // so "/tmp/sw[3]" is a file only if a file of that name exists.
    match std::fs::metadata(Path::new(&path)) {
        Ok(m) if m.is_file() => {
            let text = std::fs::read(&path).map_err(|e| {
                OpenError::io(
                    &vnl.to_string_lossy(),
                    "reading the VNL file",
                    e,
                    Some(format!(
                        "{} names a regular file, read for a VNL as libvdeplug does",
                        Path::new(&path).display()
                    )),
                )
            })?;
            let line = text.split(|&c| c == b'\n').next().unwrap_or(b"");
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Ok(OsStr::from_bytes(line).to_owned())
        }
        _ => Ok(path),
    }
}

/// Starts `argv` as a coprocess speaking the 2-byte-length stream on its stdin/stdout (what
/// `=CMD ARGS` opens, with the command line already split).
pub fn open_cmd(vnl: &str, argv: &[std::ffi::OsString]) -> Result<Link, OpenError> {
    cmd::open(vnl, argv)
}

/// Opens a VNL in the current (host) namespaces.
///
/// Blocking, bounded: a handshake that gets no answer fails after a few seconds.
pub fn open(vnl: &str) -> Result<Link, OpenError> {
    open_described_os(OsStr::new(vnl), OsStr::new("vdens-fast"))
}

/// [`open`] of a VNL given as bytes (a path in it need not be UTF-8).
pub fn open_os(vnl: &OsStr) -> Result<Link, OpenError> {
    open_described_os(vnl, OsStr::new("vdens-fast"))
}

/// [`open`], with the description a switch shows for this connection (vde_plug's -D).
pub fn open_described(vnl: &str, descr: &str) -> Result<Link, OpenError> {
    open_described_os(OsStr::new(vnl), OsStr::new(descr))
}

/// [`open_described`] of a VNL and a description given as bytes (either need not be UTF-8:
/// vde_plug's -D reaches the switch as given).
pub fn open_described_os(vnl_bytes: &OsStr, descr: &OsStr) -> Result<Link, OpenError> {
    let how = Opening {
        descr,
        rejoin: false,
        offload: false,
        superframe_nodes: true,
    };
    open_with(vnl_bytes, &how)
}

/// How [`open_with`] opens a VNL, beyond the VNL itself.
#[derive(Clone, Copy, Debug)]
pub struct Opening<'a> {
    /// What a switch shows for this connection (vde_plug's -D): bytes, sent as given.
    pub descr: &'a OsStr,
    /// A `vde://` link keeps what it needs to join a switch that appears again at the same
    /// place after its own went away ([`take_rejoin`]; its data socket's file stays until the
    /// link drops).
    pub rejoin: bool,
    /// The port reads its own tap with offload (no --no-offload), so the link may carry
    /// super-frames where its peer can: a `tap://` VNL's host tap is opened with a
    /// virtio-net header and offloads where the kernel has them (frames cross whole, see
    /// `Link::offload`); a `vde://` link offers super-frames to its switch, and a
    /// `switch://` or `hub://` node to its clients (see `wire::superframe`).
    pub offload: bool,
    /// A `switch://` or `hub://` node hosted here offers its clients super-frames: it passes
    /// them whole between clients that take them and cuts them for the rest, with or without
    /// a tap of its own (vdeplug-fast's nodes have none). vdens-fast: as `offload`.
    pub superframe_nodes: bool,
}

/// Opens a VNL given as bytes, as `how` says.
pub fn open_with(vnl_bytes: &OsStr, how: &Opening<'_>) -> Result<Link, OpenError> {
    let (descr, rejoin, offload) = (how.descr, how.rejoin, how.offload);
    // The VNL as messages and statistics name it.
    let label = vnl_bytes.to_string_lossy();
    let vnl = &*label;
    let resolved = resolve_plain(vnl_bytes)?;
    // A plugin for the scheme in VDEPLUGIN_PATH wins over the built-in transport, as in
    // classic vdens and vde_plug (which open every VNL through libvdeplug).
    if let Some(scheme) = libvdeplug::path_override(&resolved) {
        return libvdeplug::open(vnl, &resolved, &scheme, descr);
    }
    let spec = vnl::parse_os(&resolved).map_err(|err| OpenError::Vnl {
        vnl: vnl.to_string(),
        err,
    })?;
    match spec {
        Spec::Null => null::open(vnl, ""),
        Spec::Vde(s) => vde::open(vnl, &s, descr, rejoin, offload),
        Spec::Ptp { path, seqpacket } => ptp::open(vnl, &path, seqpacket, offload),
        Spec::Tap { name } => tap::open(vnl, &name, offload),
        Spec::Seqpacket { fd } => seqpacket::open(vnl, fd),
        Spec::Cmd { argv } => cmd::open(vnl, &argv),
        Spec::Udp(s) => udp::open(vnl, &s),
        Spec::Overlay(s) if s.vxvde => vxvde::open(vnl, &s),
        Spec::Overlay(s) => vxlan::open(vnl, &s),
        Spec::Other { scheme, .. } if scheme == "switch" || scheme == "hub" => switch::open(
            vnl,
            scheme == "hub",
            vnl::split_os(&resolved).rest,
            how.superframe_nodes,
        ),
        Spec::Other { scheme, .. } => libvdeplug::open(vnl, &resolved, &scheme, descr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_path_is_vde() {
        assert_eq!(split_scheme("/tmp/sw"), ("vde", "/tmp/sw"));
        assert_eq!(split_scheme("ptp:///tmp/p"), ("ptp", "/tmp/p"));
        assert_eq!(split_scheme("null://"), ("null", ""));
    }

    #[test]
    fn unknown_scheme_is_named() {
        let e = open("bogus://x").unwrap_err().to_string();
        assert!(e.contains("unknown VNL scheme 'bogus'"), "{e}");
    }

    #[test]
    fn regular_file_holds_the_vnl() {
        let p = std::env::temp_dir().join(format!("vft-vnlfile-{}", std::process::id()));
        std::fs::write(&p, "null://\nignored second line\n").unwrap();
        let l = open(p.to_str().unwrap());
        let _ = std::fs::remove_file(&p);
        let l = l.unwrap();
        assert_eq!(l.framing, Framing::Null);
        assert_eq!(l.vnl, p.to_str().unwrap());
    }

    #[test]
    fn errors_are_one_line_without_errno_numbers() {
        let e = open("vde:///nonexistent-vft/sw").unwrap_err().to_string();
        assert_eq!(
            e,
            "vde:///nonexistent-vft/sw: finding the switch: No such file or directory (no switch directory /nonexistent-vft/sw: start one with vde_switch -s /nonexistent-vft/sw or vde_plug null:// switch:///nonexistent-vft/sw)"
        );
        let e = open("ptp://").unwrap_err().to_string();
        assert_eq!(e, "ptp://: ptp:// path is missing (write ptp:///tmp/mylink)");
    }

    #[test]
    fn null_opens() {
        let l = open("null://").unwrap();
        assert_eq!(l.framing, Framing::Null);
        assert!(l.rx_fd().is_none() && l.tx_fd().is_none());
    }
}
