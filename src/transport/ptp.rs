//! `ptp://PATH`: a point-to-point link over AF_UNIX, speaking both generations of vdeplug4.
//!
//! - 4.0.1 (Debian; what `vde_plug`/`vdens` here speak): SOCK_DGRAM. The first opener binds
//!   PATH and sends to `PATH+` (unconnected: the peer may not exist yet, so the Link says
//!   `SendTo::Unix(PATH+)`); the second binds `PATH+` and connects to PATH. A stale socket
//!   (connect gives ECONNREFUSED) is unlinked and reused.
//! - master (2025): one SOCK_SEQPACKET. The first opener binds and listens on PATH; the second
//!   connects and reads a 1-byte ack (0 = accepted, else an errno).
//!
//! What sits at PATH decides: nothing or a stale socket → first opener, datagram (the default
//! for a new PATH, since the peers on these machines run 4.0.1); a live datagram socket →
//! second opener, datagram; a socket refusing datagrams with EPROTOTYPE → a master listener,
//! so connect with SOCK_SEQPACKET and hand the engine the connected descriptor.
//!
//! vdens-fast never *listens* with SOCK_SEQPACKET. A listener gets its peer at some later
//! time, but a Link must carry a connected descriptor when the engine starts: blocking the
//! start until a peer comes would hold the command back indefinitely, and a background accept
//! thread would make the process multi-threaded before `unshare(CLONE_NEWUSER)`, which the
//! kernel refuses. So with a master-generation peer, start that peer first. Likewise, when a
//! master peer hangs up, the link ends (EOF on rx); it is not reconnected.
//!
//! Files this opener binds are removed when the Link drops.

use super::{Framing, Link, OpenError, SendTo};
use nix::sys::socket::{
    connect, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// How long a master-generation listener gets to accept and ack.
const ACK_TIMEOUT_S: i64 = 2;

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
}

fn probe(vnl: &str, path: &Path) -> Result<Found, OpenError> {
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

/// First opener, 4.0.1: bind PATH, send to PATH+.
fn first(vnl: &str, path: &Path) -> Result<Link, OpenError> {
    let sock = UnixDatagram::bind(path).map_err(|e| {
        let hint = bind_hint(&e, path);
        OpenError::io(vnl, "binding the ptp socket", e, Some(hint))
    })?;
    let mut link = Link::null(vnl);
    link.framing = Framing::Datagram;
    link.rx = Some(sock.into());
    link.send_to = SendTo::Unix(plus(path));
    link.cleanup = vec![path.to_path_buf()];
    chmod_0700(vnl, path)?;
    Ok(link)
}

/// Second opener, 4.0.1: bind PATH+, connected to PATH.
fn second(vnl: &str, path: &Path) -> Result<Link, OpenError> {
    let out = plus(path);
    match probe(vnl, &out)? {
        Found::Nothing => {}
        Found::Stale => unlink_stale(vnl, &out)?,
        Found::Datagram => {
            return Err(OpenError::io(
                vnl,
                "joining the ptp link",
                io::Error::from_raw_os_error(libc::EADDRINUSE),
                Some(format!(
                    "both ends are taken: {} and {} are in use",
                    path.display(),
                    out.display()
                )),
            ))
        }
        Found::NotDatagram | Found::NotSocket => {
            return Err(OpenError::protocol(
                vnl,
                "joining the ptp link",
                format!("{} exists and is not a ptp datagram socket", out.display()),
                Some("remove it or choose another path".into()),
            ))
        }
    }
    let sock = UnixDatagram::bind(&out).map_err(|e| {
        let hint = bind_hint(&e, &out);
        OpenError::io(vnl, "binding the ptp socket", e, Some(hint))
    })?;
    // From here the Link owns PATH+ and removes it on any failure.
    let mut link = Link::null(vnl);
    link.framing = Framing::Datagram;
    link.cleanup = vec![out.clone()];
    sock.connect(path).map_err(|e| {
        OpenError::io(
            vnl,
            "connecting to the ptp peer",
            e,
            Some(format!("{} went away meanwhile", path.display())),
        )
    })?;
    link.rx = Some(sock.into());
    chmod_0700(vnl, &out)?;
    Ok(link)
}

/// Second opener, master generation: SOCK_SEQPACKET connect plus the 1-byte ack.
fn seqpacket(vnl: &str, path: &Path) -> Result<Link, OpenError> {
    let io_err =
        |step: &'static str, e: nix::Error, hint: Option<String>| OpenError::io(vnl, step, e.into(), hint);
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io_err("creating a seqpacket socket", e, None))?;
    let timeout = TimeVal::new(ACK_TIMEOUT_S, 0);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)
        .and_then(|_| setsockopt(&fd, sockopt::SendTimeout, &timeout))
        .map_err(|e| io_err("setting socket timeouts", e, None))?;
    let addr = UnixAddr::new(path).map_err(|e| io_err("building the socket address", e, None))?;
    connect(fd.as_raw_fd(), &addr).map_err(|e| {
        let hint = match e {
            nix::errno::Errno::EPROTOTYPE => format!(
                "{} is a stream socket, neither kind of ptp endpoint",
                path.display()
            ),
            _ => format!("connecting to the seqpacket ptp listener {}", path.display()),
        };
        io_err("connecting to the ptp peer", e, Some(hint))
    })?;
    let mut ack = [0u8; 1];
    match recv(fd.as_raw_fd(), &mut ack, MsgFlags::empty()) {
        Ok(1) if ack[0] == 0 => {}
        Ok(1) => {
            let e = io::Error::from_raw_os_error(ack[0] as i32);
            let hint = if ack[0] as i32 == libc::EISCONN {
                "the listener already has its peer".to_string()
            } else {
                "the ptp listener refused the connection".to_string()
            };
            return Err(OpenError::io(vnl, "reading the ptp ack", e, Some(hint)));
        }
        Ok(_) => {
            return Err(OpenError::protocol(
                vnl,
                "reading the ptp ack",
                "the listener hung up without an ack".into(),
                None,
            ))
        }
        Err(nix::errno::Errno::EAGAIN) => {
            return Err(OpenError::protocol(
                vnl,
                "reading the ptp ack",
                format!("no ack within {ACK_TIMEOUT_S} s"),
                Some(format!("is {} a vdeplug4 ptp listener?", path.display())),
            ))
        }
        Err(e) => return Err(io_err("reading the ptp ack", e, None)),
    }
    let zero = TimeVal::new(0, 0);
    setsockopt(&fd, sockopt::ReceiveTimeout, &zero)
        .and_then(|_| setsockopt(&fd, sockopt::SendTimeout, &zero))
        .map_err(|e| io_err("clearing socket timeouts", e, None))?;
    Ok(Link::single(vnl, Framing::Datagram, fd))
}

pub fn open(vnl: &str, path: &Path) -> Result<Link, OpenError> {
    match probe(vnl, path)? {
        Found::Nothing => first(vnl, path),
        Found::Stale => {
            unlink_stale(vnl, path)?;
            first(vnl, path)
        }
        Found::Datagram => second(vnl, path),
        Found::NotDatagram => seqpacket(vnl, path),
        Found::NotSocket => Err(OpenError::protocol(
            vnl,
            "opening the ptp link",
            format!("{} exists and is not a socket", path.display()),
            Some("choose a path that does not exist yet".into()),
        )),
    }
}
