//! `vde://DIR[...]` (and plain paths): a client port of a VDE switch, speaking the control
//! protocol of libvdeplug_vde.c 4.0.1 with vde-2's `vde_switch` and vdeplug4's
//! `switch://`/`hub://` nodes.
//!
//! 1. SOCK_STREAM to `DIR/<portgroup>` (when a named group is given) or `DIR/ctl`; with no
//!    DIR, `/var/run/vde.ctl/ctl` then `/tmp/vde.ctl/ctl`.
//! 2. A SOCK_DGRAM data socket bound at `DIR/.<pid5>-<seq5>` (or `vde.<pid5>-<seq5>` in
//!    /var/run, /var/tmp, /tmp when DIR refuses), permissions from `mode=`/`group=`.
//! 3. The request (wire::vde_ctl) goes on the stream; the switch answers with the address of its
//!    own data socket for this port; the data socket connects there and its file is unlinked.
//! 4. The stream stays open: its EOF means the switch is gone (the Link's `ctl`).
//!
//! Permissions are libvdeplug's: the data socket is 0700 (or `mode=`); when the switch belongs
//! to another (non-root) user, the socket is given the switch's group and 0770, or, when this
//! user is not in that group, made accessible to all (the switch must be able to send to it;
//! the file exists only during the handshake, and a socket connected to the switch takes
//! datagrams from no one else). Once connected, the switch's socket for this port is given
//! `mode` too where this user may (libvdeplug's chmod of the answered path).

use super::{Framing, Link, OpenError, SendTo};
use crate::vnl::{VdePort, VdeSpec, SUN_PATH_MAX};
use crate::wire::vde_ctl::{self, Request, RequestType, UnixAddr};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// libvdeplug's fallback switch directories when none is given.
const FALLBACK_SWITCHES: &[&str] = &["/var/run/vde.ctl", "/tmp/vde.ctl"];
/// libvdeplug's fallback directories for the data socket.
const FALLBACK_DATA_DIRS: &[&str] = &["/var/run", "/var/tmp", "/tmp"];
/// How long the switch gets to answer the request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connect to the control socket may wait: a switch whose listen backlog is full
/// (hung, or flooded with idle connections) would otherwise keep the client waiting for ever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A switch binds its `ctl` a moment before it listens on it, so a refused connection may be a
/// switch still starting (lab scripts start a switch and its clients together), not yet a stale
/// socket: the first join tries again for this long.
const STARTING: Duration = Duration::from_secs(1);

/// Data socket sequence numbers, shared by every vde:// link of this process.
static SOCK_SEQ: AtomicU32 = AtomicU32::new(0);

/// Removes the bound data socket file when the handshake ends, however it ends (libvdeplug
/// unlinks it once connected: the switch's socket stays connected to it).
struct Unlink(PathBuf);

impl Drop for Unlink {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

fn too_long(vnl: &str, what: &Path) -> OpenError {
    OpenError::protocol(
        vnl,
        "building the socket address",
        format!(
            "{} is {} bytes, longer than a socket address allows ({SUN_PATH_MAX})",
            what.display(),
            what.as_os_str().len()
        ),
        Some("use a shorter switch directory path".into()),
    )
}

fn connect_hint(e: &io::Error, sock: &Path, dir: &Path) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "{} does not exist: is a switch running there? (vde_switch -s {d} or vde_plug null:// switch://{d})",
            sock.display(),
            d = dir.display()
        ),
        Some(libc::ECONNREFUSED) => format!(
            "{} is a stale socket or not a socket: the switch is not running",
            sock.display()
        ),
        Some(libc::EPROTOTYPE) => format!("{} is not a switch control socket", sock.display()),
        Some(libc::ENOTDIR) => format!("{} is not a directory", dir.display()),
        Some(libc::EACCES) => format!(
            "no permission to use {}: ask the switch owner for access (vde_switch -m/-g)",
            sock.display()
        ),
        _ => format!("connecting to {}", sock.display()),
    }
}

/// A stream connect to `path` that waits at most `timeout` for room in the listener's
/// backlog (SO_SNDTIMEO bounds an AF_UNIX connect: it then fails with EAGAIN). The timeout
/// stays set, bounding the request's write too.
pub(crate) fn connect_stream_bounded(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    use nix::sys::socket::{connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as i64, timeout.subsec_micros() as i64);
    setsockopt(&fd, sockopt::SendTimeout, &tv)?;
    let addr = nix::sys::socket::UnixAddr::new(path)?;
    loop {
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => return Ok(UnixStream::from(fd)),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn connect_failed(vnl: &str, e: io::Error, sock: &Path, dir: &Path) -> OpenError {
    if e.raw_os_error() == Some(libc::EAGAIN) {
        return OpenError::protocol(
            vnl,
            "connecting to the switch",
            format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()),
            Some(format!(
                "is the switch alive? {} takes no connection: its backlog is full",
                sock.display()
            )),
        );
    }
    let hint = connect_hint(&e, sock, dir);
    OpenError::io(vnl, "connecting to the switch", e, Some(hint))
}

/// Connects the control stream. Returns it, the socket path used, and whether it is `ctl`
/// (a port number is carried in the request only then).
fn connect_ctl(
    vnl: &str,
    dir: &Path,
    spec: &VdeSpec,
    timeout: Duration,
) -> Result<(UnixStream, PathBuf, bool), OpenError> {
    if let (Some(pg), VdePort::Any) = (&spec.portgroup, spec.port) {
        let p = dir.join(pg);
        if p.as_os_str().len() <= SUN_PATH_MAX {
            match connect_stream_bounded(&p, timeout) {
                Ok(s) => return Ok((s, p, false)),
                // A port group socket that exists but takes no connection is not skipped
                // silently: that wait is already spent.
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    return Err(connect_failed(vnl, e, &p, dir))
                }
                Err(_) => {}
            }
        }
    }
    let ctl = dir.join("ctl");
    if ctl.as_os_str().len() > SUN_PATH_MAX {
        return Err(too_long(vnl, &ctl));
    }
    match connect_stream_bounded(&ctl, timeout) {
        Ok(s) => Ok((s, ctl, true)),
        Err(e) => Err(connect_failed(vnl, e, &ctl, dir)),
    }
}

/// [`connect_ctl`], trying again for [`STARTING`] while the switch refuses the connection.
fn connect_ctl_starting(
    vnl: &str,
    dir: &Path,
    spec: &VdeSpec,
) -> Result<(UnixStream, PathBuf, bool), OpenError> {
    let end = std::time::Instant::now() + STARTING;
    loop {
        match connect_ctl(vnl, dir, spec, CONNECT_TIMEOUT) {
            Err(OpenError::Io { err, .. })
                if err.raw_os_error() == Some(libc::ECONNREFUSED) && std::time::Instant::now() < end =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// Binds the data socket, trying DIR first and then libvdeplug's fallback directories.
fn bind_data(vnl: &str, dir: &Path) -> Result<(UnixDatagram, PathBuf), OpenError> {
    let pid = std::process::id();
    let mut last: Option<(io::Error, PathBuf)> = None;
    let mut candidates: Vec<(PathBuf, &str)> = vec![(dir.to_path_buf(), ".")];
    candidates.extend(FALLBACK_DATA_DIRS.iter().map(|d| (PathBuf::from(d), "vde.")));
    for (d, prefix) in candidates {
        // Bounded: names left by other runs of this pid are skipped, not waited for forever.
        for _ in 0..1000 {
            let seq = SOCK_SEQ.fetch_add(1, Ordering::Relaxed) % 100_000;
            let p = d.join(format!("{prefix}{pid:05}-{seq:05}"));
            if p.as_os_str().len() > SUN_PATH_MAX {
                last = Some((io::Error::from_raw_os_error(libc::ENAMETOOLONG), p));
                break;
            }
            match UnixDatagram::bind(&p) {
                Ok(s) => return Ok((s, p)),
                Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => last = Some((e, p)),
                Err(e) => {
                    last = Some((e, p));
                    break;
                }
            }
        }
    }
    let (e, p) = last.expect("at least one candidate directory");
    Err(OpenError::io(
        vnl,
        "binding the data socket",
        e,
        Some(format!(
            "last tried {}; the switch directory and /var/run, /var/tmp, /tmp all refused",
            p.display()
        )),
    ))
}

/// The gid a `group=` (or vde_plug's -g) names: the group of that name, looked up by its
/// bytes as libvdeplug's getgrnam does (a name that is not UTF-8 names a group too), else a
/// number.
fn resolve_group(vnl: &str, g: &OsStr) -> Result<nix::unistd::Gid, OpenError> {
    if let Ok(Some(gid)) = crate::sys::group::gid_by_name(g.as_bytes()) {
        return Ok(nix::unistd::Gid::from_raw(gid));
    }
    let name = g.to_string_lossy();
    name.parse::<u32>().map(nix::unistd::Gid::from_raw).map_err(|_| {
        OpenError::protocol(
            vnl,
            "resolving the group",
            format!("no group named '{name}'"),
            Some("give an existing group name or a numeric gid".into()),
        )
    })
}

/// Sets the data socket's group and mode as libvdeplug does; the mode it got.
fn set_permissions(vnl: &str, spec: &VdeSpec, data: &Path, ctl: &Path) -> Result<u32, OpenError> {
    let mut mode = spec.mode.unwrap_or(0o700);
    if let Some(g) = &spec.group {
        let gid = resolve_group(vnl, g)?;
        nix::unistd::chown(data, None, Some(gid)).map_err(|e| {
            OpenError::io(
                vnl,
                "giving the data socket to the group",
                e.into(),
                Some(format!("this user must belong to group {}", g.to_string_lossy())),
            )
        })?;
    } else if mode & 0o077 == 0 {
        if let Ok(m) = std::fs::metadata(ctl) {
            let me = nix::unistd::geteuid().as_raw();
            if m.uid() != 0 && m.uid() != me {
                // The switch runs as another user: it must be able to send to our socket,
                // through its group when we are in it, else through the others' bits.
                let gid = nix::unistd::Gid::from_raw(m.gid());
                mode |= if nix::unistd::chown(data, None, Some(gid)).is_ok() {
                    0o070
                } else {
                    0o077
                };
            }
        }
    }
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(mode))
        .map_err(|e| OpenError::io(vnl, "setting data socket permissions", e, None))?;
    Ok(mode)
}

fn refusal_hint(spec: &VdeSpec) -> String {
    match spec.port {
        VdePort::Number(n) => format!(
            "the switch refused port {n}: it may be beyond its ports (vde_switch -n) or reserved; or this is not a VDE switch"
        ),
        _ => "the switch refused the request (full?), or this is not a VDE switch".into(),
    }
}

/// What the switch shows for this port: `DESCR user=NAME pid=N[ SSH=HOST]` (libvdeplug 4.0.1's
/// set_newdescr; DESCR is the program's name or vde_plug's -D). Bytes as given, UTF-8 or not:
/// DESCR and SSH_CLIENT's first word are copied, not decoded (the request cuts the whole to
/// 127 bytes, see `Request::encode`).
fn description(descr: &OsStr) -> Vec<u8> {
    let uid = nix::unistd::geteuid();
    let user = match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    };
    let mut d = descr.as_bytes().to_vec();
    d.extend_from_slice(format!(" user={user} pid={}", std::process::id()).as_bytes());
    if let Some(ssh) = std::env::var_os("SSH_CLIENT") {
        let host = ssh.as_bytes().split(|&c| c == b' ').next().unwrap_or(b"");
        d.extend_from_slice(b" SSH=");
        d.extend_from_slice(host);
    }
    d
}

/// The request this link sends: a new port (on the port group's socket, or port 0 or a
/// numbered port on `ctl`), where the switch is to send, and the description.
fn encode_request(
    vnl: &str,
    spec: &VdeSpec,
    is_ctl: bool,
    data_path: &Path,
    descr: &OsStr,
    superframes: bool,
) -> Result<Vec<u8>, OpenError> {
    let kind = match (is_ctl, spec.port) {
        (true, VdePort::Zero) => RequestType::NewPort0,
        (true, VdePort::Number(n)) => RequestType::Port(n),
        _ => RequestType::NewControl,
    };
    Request {
        kind,
        sock_path: data_path.as_os_str().as_bytes().to_vec(),
        description: description(descr),
        superframes,
    }
    .encode()
    .map_err(|e| OpenError::protocol(vnl, "encoding the request", e.to_string(), None))
}

/// Sends the request in one write (switches read it with a single read).
fn send_request(
    vnl: &str,
    spec: &VdeSpec,
    ctl: &mut UnixStream,
    ctl_path: &Path,
    req: &[u8],
) -> Result<(), OpenError> {
    let n = ctl.write(req).map_err(|e| match e.kind() {
        // The peer hung up before reading the request: the same refusal as EOF on the answer.
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => OpenError::protocol(
            vnl,
            "sending the request to the switch",
            format!("{} closed the connection without answering", ctl_path.display()),
            Some(refusal_hint(spec)),
        ),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => OpenError::protocol(
            vnl,
            "sending the request to the switch",
            format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()),
            Some(format!(
                "is the switch alive? {} reads nothing",
                ctl_path.display()
            )),
        ),
        _ => OpenError::io(vnl, "sending the request to the switch", e, None),
    })?;
    if n != req.len() {
        return Err(OpenError::protocol(
            vnl,
            "sending the request to the switch",
            format!("only {n} of {} bytes were taken", req.len()),
            None,
        ));
    }
    Ok(())
}

/// Reads the switch's answer (one read): its data socket, and whether it takes super-frames
/// there (`wire::superframe::MARK`); `Ok(None)` when a non-blocking stream has nothing yet.
fn read_answer(
    vnl: &str,
    spec: &VdeSpec,
    ctl: &mut UnixStream,
    ctl_path: &Path,
) -> Result<Option<(UnixAddr, bool)>, OpenError> {
    let mut answer = [0u8; vde_ctl::SOCKADDR_UN_LEN];
    let read = match ctl.read(&mut answer) {
        // A reset (the switch closed with our request unread) is a refusal like EOF.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
        r => r,
    };
    let got = match read {
        Ok(0) => {
            return Err(OpenError::protocol(
                vnl,
                "reading the switch's answer",
                format!("{} closed the connection without answering", ctl_path.display()),
                Some(refusal_hint(spec)),
            ));
        }
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
        // vde_switch leaves a refused request (a port beyond its ports) unanswered.
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            if ctl.read_timeout().ok().flatten().is_none() {
                return Ok(None);
            }
            return Err(OpenError::protocol(
                vnl,
                "reading the switch's answer",
                format!(
                    "no answer from {} within {} s",
                    ctl_path.display(),
                    ANSWER_TIMEOUT.as_secs()
                ),
                Some(refusal_hint(spec)),
            ));
        }
        Err(e) => return Err(OpenError::io(vnl, "reading the switch's answer", e, None)),
    };
    let marked = vde_ctl::sockaddr_marked(&answer[..got]);
    vde_ctl::decode_sockaddr(&answer[..got])
        .map(|a| Some((a, marked)))
        .map_err(|e| {
            OpenError::protocol(
                vnl,
                "reading the switch's answer",
                e.to_string(),
                Some("is it a VDE switch control socket?".into()),
            )
        })
}

/// Connects the data socket to the switch's socket for this port (the answer), and gives that
/// socket `mode` as libvdeplug does, where this user may change it (a switch of another user
/// keeps its own).
fn connect_data(vnl: &str, data: BorrowedFd<'_>, addr: &UnixAddr, mode: u32) -> Result<(), OpenError> {
    let to = match addr {
        UnixAddr::Path(p) => nix::sys::socket::UnixAddr::new(OsStr::from_bytes(p)),
        UnixAddr::Abstract(name) => nix::sys::socket::UnixAddr::new_abstract(name),
    };
    to.and_then(|a| nix::sys::socket::connect(data.as_raw_fd(), &a))
        .map_err(|e| {
            let shown = match addr {
                UnixAddr::Path(p) => String::from_utf8_lossy(p).into_owned(),
                UnixAddr::Abstract(n) => format!("@{}", String::from_utf8_lossy(n).trim_end_matches('\0')),
            };
            OpenError::io(
                vnl,
                "connecting to the switch's data socket",
                e.into(),
                Some(format!("the switch answered {shown}")),
            )
        })?;
    if let UnixAddr::Path(p) = addr {
        let _ = std::fs::set_permissions(OsStr::from_bytes(p), std::fs::Permissions::from_mode(mode));
    }
    Ok(())
}

/// What a vde:// link needs to join a switch again at the same place after the one it was
/// joined to went away: the switch directory and VNL parameters, and the path of its data
/// socket, whose file is kept for this (see `open`). Used from the control thread, which
/// owns a duplicate of the data socket (the engine keeps sending and receiving on it).
#[derive(Debug)]
pub struct Rejoin {
    vnl: String,
    spec: VdeSpec,
    dir: PathBuf,
    data_path: PathBuf,
    /// The data socket file's mode while a switch joins it (libvdeplug's, see
    /// [`set_permissions`]); [`KEPT_MODE`] the rest of the time.
    mode: u32,
    descr: std::ffi::OsString,
    /// The link's `Link::superframes`, when it offers them.
    superframes: Option<Arc<AtomicBool>>,
}

/// The [`Rejoin`] of each rejoinable link opened, by the inode of its data socket, until
/// [`take_rejoin`] takes it. Kept aside, not in the Link: the Link goes to the engine, the
/// Rejoin to the control thread.
static KEPT: std::sync::Mutex<Vec<(u64, Rejoin)>> = std::sync::Mutex::new(Vec::new());

/// The [`Rejoin`] of a vde:// link opened rejoinable (`super::Opening::rejoin`); once.
pub fn take_rejoin(link: &Link) -> Option<Rejoin> {
    let st = nix::sys::stat::fstat(link.rx.as_ref()?).ok()?;
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let i = kept.iter().position(|(ino, _)| *ino == st.st_ino)?;
    Some(kept.swap_remove(i).1)
}

/// The mode of a kept data socket file between handshakes: once connected, the socket takes
/// datagrams only from the switch's socket; while no switch is there (after its socket
/// closed), only this user may send to it.
const KEPT_MODE: u32 = 0o700;
/// How long a rejoin attempt may wait for room in the switch's listen backlog, and to send
/// the request: the control thread tries again later.
const REJOIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
/// Makes the data socket forget the old switch's socket it is still connected to: a datagram
/// socket connected to a peer takes no connection from anyone else (the new switch's connect
/// to it would fail with EPERM), and the kernel drops a dead peer only at the next send to it,
/// which fails (ECONNREFUSED). This is that send, empty; it fails with ENOTCONN when a send of
/// the engine has already met the dead peer.
fn forget_dead_peer(data: BorrowedFd<'_>) {
    use nix::sys::socket::{send, MsgFlags};
    let _ = send(
        data.as_raw_fd(),
        &[],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    );
}

impl Rejoin {
    /// How long a rejoin attempt waits for the answer before trying again.
    pub const ANSWER_WITHIN: Duration = ANSWER_TIMEOUT;

    /// The first step of a rejoin: connects to the switch's control socket (waiting at most
    /// `REJOIN_CONNECT_TIMEOUT`) and sends the request with the kept data socket's path.
    /// The returned stream is non-blocking: poll it readable, then call [`Rejoin::answer`].
    /// `data` is the link's data socket.
    pub fn request(&self, data: BorrowedFd<'_>) -> Result<UnixStream, OpenError> {
        let vnl = &self.vnl;
        let (mut ctl, ctl_path, is_ctl) = connect_ctl(vnl, &self.dir, &self.spec, REJOIN_CONNECT_TIMEOUT)?;
        forget_dead_peer(data);
        std::fs::set_permissions(&self.data_path, std::fs::Permissions::from_mode(self.mode)).map_err(
            |e| {
                OpenError::io(
                    vnl,
                    "setting data socket permissions",
                    e,
                    Some(format!("{} was removed?", self.data_path.display())),
                )
            },
        )?;
        // Until the new switch says it takes super-frames, the engine sends plain frames: the
        // data socket is connected to the new switch's port before the answer is read.
        if let Some(s) = &self.superframes {
            s.store(false, Ordering::Release);
        }
        let sent = encode_request(
            vnl,
            &self.spec,
            is_ctl,
            &self.data_path,
            &self.descr,
            self.superframes.is_some(),
        )
        .and_then(|req| send_request(vnl, &self.spec, &mut ctl, &ctl_path, &req));
        if let Err(e) = sent {
            self.abandon();
            return Err(e);
        }
        ctl.set_nonblocking(true)
            .and_then(|_| ctl.set_write_timeout(None))
            .map_err(|e| {
                self.abandon();
                OpenError::io(vnl, "setting up the control stream", e, None)
            })?;
        Ok(ctl)
    }

    /// The second step, once `ctl` is readable: reads the answer and connects `data` (the
    /// link's data socket) there. `Ok(false)`: nothing to read yet. `Ok(true)`: joined; `ctl`
    /// is the link's control connection from now on.
    pub fn answer(&self, ctl: &mut UnixStream, data: BorrowedFd<'_>) -> Result<bool, OpenError> {
        let r = match read_answer(&self.vnl, &self.spec, ctl, &self.dir.join("ctl")) {
            Ok(None) => return Ok(false),
            Ok(Some((addr, marked))) => connect_data(&self.vnl, data, &addr, self.mode).map(|()| {
                if let Some(s) = &self.superframes {
                    s.store(marked, Ordering::Release);
                }
            }),
            Err(e) => Err(e),
        };
        self.abandon();
        r.map(|_| true)
    }

    /// Ends a rejoin attempt (answered or not): the kept data socket file is this user's only
    /// again.
    pub fn abandon(&self) {
        let _ = std::fs::set_permissions(&self.data_path, std::fs::Permissions::from_mode(KEPT_MODE));
    }
}

/// Moves a kept data socket file out of the switch directory, to one of libvdeplug's fallback
/// directories (`vde.<pid>-<seq>`) on the same file system: the switch would otherwise find
/// the directory not empty when it stops, and vdeplug4's `switch://` neither removes such a
/// directory nor starts again on it ("File exists"). A socket is found through any name of
/// its file. Where no such directory is on the same file system, the file stays where it is.
/// Returns where the file is.
fn move_out(bound: PathBuf, dir: &Path) -> PathBuf {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    if bound.parent() != Some(dir) {
        return bound;
    }
    let pid = std::process::id();
    for d in FALLBACK_DATA_DIRS {
        for _ in 0..100 {
            let seq = SOCK_SEQ.fetch_add(1, Ordering::Relaxed) % 100_000;
            let to = Path::new(d).join(format!("vde.{pid:05}-{seq:05}"));
            match renameat2(AT_FDCWD, &bound, AT_FDCWD, &to, RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => return to,
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(_) => break,
            }
        }
    }
    bound
}

/// Whether `name` is one libvdeplug gives a data socket: `prefix`, digits, `-`, digits (the
/// pid and a sequence number, `%05d` each, longer for larger pids).
fn is_data_sock_name(name: &[u8], prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix.as_bytes()) else {
        return false;
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    match rest.iter().position(|&b| b == b'-') {
        Some(i) => digits(&rest[..i]) && digits(&rest[i + 1..]),
        None => false,
    }
}

/// Whether nothing takes connections on the socket file `p` (its socket was closed: its
/// process is gone).
fn refuses(p: &Path) -> bool {
    UnixDatagram::unbound()
        .and_then(|s| s.connect(p))
        .is_err_and(|e| e.raw_os_error() == Some(libc::ECONNREFUSED))
}

/// Removes the data socket files that clients of this user killed with SIGKILL left (nothing
/// runs then: a kept one is removed only when its Link drops, and libvdeplug's, or one of an
/// opener killed mid-handshake, only once connected): `.<pid>-<seq>` in the switch directory
/// `dir` and `vde.<pid>-<seq>` in libvdeplug's fallback directories, each a socket owned by
/// this user on which a connect is refused, and still refused, by the same file, after
/// [`super::ptp::STALE_RECHECK`] (bind(2) creates the file an instant before the socket can
/// be reached through it: an opener binding right now is not taken). A live socket never
/// refuses (one connected to its switch answers EPERM), and another user's files are left to
/// that user. `own` is this link's data socket, left alone.
fn sweep_stale_data_sockets(dir: &Path, own: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let me = nix::unistd::geteuid().as_raw();
    let places =
        std::iter::once((dir, ".")).chain(FALLBACK_DATA_DIRS.iter().map(|d| (Path::new(*d), "vde.")));
    let mut refusing = Vec::new();
    for (d, prefix) in places {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries.flatten() {
            if !is_data_sock_name(e.file_name().as_bytes(), prefix) {
                continue;
            }
            let p = e.path();
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_socket() && m.uid() == me && p != own && refuses(&p) => {
                    refusing.push((p, m.ino()))
                }
                _ => {}
            }
        }
    }
    if refusing.is_empty() {
        return;
    }
    std::thread::sleep(super::ptp::STALE_RECHECK);
    for (p, ino) in refusing {
        let same = std::fs::symlink_metadata(&p).is_ok_and(|m| m.ino() == ino);
        if same && refuses(&p) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// The handshake once the control stream is connected. With `rejoin`, the data socket's file
/// is kept (moved out of the switch directory where it can be, see [`move_out`], and removed
/// when the Link drops) instead of removed as libvdeplug does: a switch finds a client's
/// socket only through a file, and a socket is bound once, so joining a new switch with the
/// same socket (the one the engine uses) needs this file.
#[allow(clippy::too_many_arguments)]
fn handshake(
    vnl: &str,
    spec: &VdeSpec,
    dir: &Path,
    mut ctl: UnixStream,
    ctl_path: &Path,
    is_ctl: bool,
    descr: &OsStr,
    rejoin: bool,
    offer: bool,
) -> Result<Link, OpenError> {
    let (data, data_path) = bind_data(vnl, dir)?;
    let mut unlink = Unlink(data_path.clone());
    let mode = set_permissions(vnl, spec, &data_path, ctl_path)?;
    let req = encode_request(vnl, spec, is_ctl, &data_path, descr, offer)?;
    send_request(vnl, spec, &mut ctl, ctl_path, &req)?;
    ctl.set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| OpenError::io(vnl, "setting a timeout on the control stream", e, None))?;
    let (addr, marked) = read_answer(vnl, spec, &mut ctl, ctl_path)?
        .ok_or_else(|| OpenError::protocol(vnl, "reading the switch's answer", "interrupted".into(), None))?;
    connect_data(vnl, data.as_fd(), &addr, mode)?;
    ctl.set_read_timeout(None)
        .and_then(|_| ctl.set_write_timeout(None))
        .map_err(|e| OpenError::io(vnl, "clearing the control stream timeout", e, None))?;
    sweep_stale_data_sockets(dir, &data_path);
    let mut link = Link::null(vnl);
    link.superframes = offer.then(|| Arc::new(AtomicBool::new(marked)));
    if rejoin {
        std::fs::set_permissions(&data_path, std::fs::Permissions::from_mode(KEPT_MODE))
            .map_err(|e| OpenError::io(vnl, "setting data socket permissions", e, None))?;
        unlink.0 = PathBuf::new();
        let data_path = move_out(data_path, dir);
        link.cleanup.push(data_path.clone());
        if let Ok(st) = nix::sys::stat::fstat(&data) {
            let r = Rejoin {
                vnl: vnl.to_string(),
                spec: spec.clone(),
                dir: dir.to_path_buf(),
                data_path,
                mode,
                descr: descr.to_os_string(),
                superframes: link.superframes.clone(),
            };
            KEPT.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((st.st_ino, r));
        }
    }
    let data: OwnedFd = data.into();
    let ctl: OwnedFd = ctl.into();
    link.framing = Framing::Datagram;
    link.rx = Some(data);
    link.send_to = SendTo::Connected;
    link.ctl = Some(ctl);
    Ok(link)
}

/// Opens a vde:// link; with `rejoin`, the link can join a new switch at the same place later
/// ([`take_rejoin`]).
/// With `offer`, the link offers the switch super-frames (`Link::superframes`).
pub fn open(vnl: &str, spec: &VdeSpec, descr: &OsStr, rejoin: bool, offer: bool) -> Result<Link, OpenError> {
    match &spec.dir {
        Some(given) => {
            // The switch needs an absolute path for our data socket (it does not know our cwd).
            let dir = std::fs::canonicalize(given).map_err(|e| {
                let hint = match e.raw_os_error() {
                    Some(libc::ENOENT) => format!(
                        "no switch directory {}: start one with vde_switch -s {d} or vde_plug null:// switch://{d}",
                        given.display(),
                        d = given.display()
                    ),
                    _ => format!("resolving {}", given.display()),
                };
                OpenError::io(vnl, "finding the switch", e, Some(hint))
            })?;
            let (ctl, ctl_path, is_ctl) = connect_ctl_starting(vnl, &dir, spec)?;
            handshake(vnl, spec, &dir, ctl, &ctl_path, is_ctl, descr, rejoin, offer)
        }
        None => {
            for d in FALLBACK_SWITCHES {
                if let Ok((ctl, ctl_path, is_ctl)) = connect_ctl(vnl, Path::new(d), spec, CONNECT_TIMEOUT) {
                    return handshake(
                        vnl,
                        spec,
                        Path::new(d),
                        ctl,
                        &ctl_path,
                        is_ctl,
                        descr,
                        rejoin,
                        offer,
                    );
                }
            }
            Err(OpenError::protocol(
                vnl,
                "finding the default switch",
                format!("no switch answers at {}", FALLBACK_SWITCHES.join(" or ")),
                Some("name the switch directory, e.g. vde:///tmp/myswitch".into()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept data socket moved out of the switch directory is still found through its new
    /// name (as a switch joining it does), and its old name is gone.
    #[test]
    fn a_moved_data_socket_is_reached_at_its_new_path() {
        let d = crate::TestDir::new("vde-move-out");
        let sw = d.0.join("sw");
        std::fs::create_dir(&sw).unwrap();
        let (data, bound) = bind_data("vde://test", &sw).unwrap();
        let kept = move_out(bound.clone(), &sw);
        struct Rm(PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let _rm = Rm(kept.clone());
        // The test directory is in /tmp: /tmp at least takes it.
        assert_ne!(kept, bound, "moved out");
        assert!(!bound.exists());
        assert!(
            std::fs::read_dir(&sw).unwrap().next().is_none(),
            "the switch directory is empty"
        );
        let peer = UnixDatagram::unbound().unwrap();
        peer.connect(&kept).unwrap();
        peer.send(b"frame").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(data.recv(&mut buf).unwrap(), 5);
    }

    /// libvdeplug's data socket names, and only those, are looked at by the sweep.
    #[test]
    fn data_socket_names() {
        for n in [".00042-00001", ".4194303-99999", ".1-2"] {
            assert!(is_data_sock_name(n.as_bytes(), "."), "{n}");
        }
        assert!(is_data_sock_name(b"vde.01234-00007", "vde."));
        for n in [
            "ctl",
            ".00042-",
            ".-00001",
            ".00042",
            ".00042-0x",
            "..00042-00001",
            "fd3",
            "001.3",
        ] {
            assert!(!is_data_sock_name(n.as_bytes(), "."), "{n}");
        }
        assert!(!is_data_sock_name(b".00042-00001", "vde."));
    }

    /// In a switch directory, a stale data socket of this user goes; a live one, a file that
    /// is not a socket, and this link's own socket stay.
    #[test]
    fn the_sweep_takes_only_stale_sockets() {
        let d = crate::TestDir::new("vde-sweep");
        let stale = d.0.join(".99999-00001");
        drop(UnixDatagram::bind(&stale).unwrap());
        let live = d.0.join(".99999-00002");
        let _live = UnixDatagram::bind(&live).unwrap();
        let plain = d.0.join(".99999-00003");
        std::fs::write(&plain, b"").unwrap();
        let own = d.0.join(".99999-00004");
        drop(UnixDatagram::bind(&own).unwrap());
        sweep_stale_data_sockets(&d.0, &own);
        assert!(!stale.exists());
        assert!(live.exists() && plain.exists() && own.exists());
    }

    /// A switch that has bound its ctl but does not listen yet (starting) is waited for; one
    /// that never listens (a stale socket) fails with the stale-socket hint after the grace.
    #[test]
    fn a_starting_switch_is_waited_for_a_stale_one_is_not() {
        use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType};
        let d = crate::TestDir::new("vde-starting");
        let ctl = d.0.join("ctl");
        let mk = || {
            let fd = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            bind(fd.as_raw_fd(), &nix::sys::socket::UnixAddr::new(&ctl).unwrap()).unwrap();
            fd
        };
        let spec = VdeSpec {
            dir: Some(d.0.clone()),
            portgroup: None,
            port: VdePort::Any,
            group: None,
            mode: None,
        };
        let fd = mk();
        let later = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            listen(&fd, Backlog::new(4).unwrap()).unwrap();
            fd
        });
        let got = connect_ctl_starting("vde://x", &d.0, &spec);
        let _fd = later.join().unwrap();
        assert!(got.is_ok(), "{:?}", got.err().map(|e| e.to_string()));
        drop(_fd);
        let _ = std::fs::remove_file(&ctl);
        let _stale = mk();
        let t = std::time::Instant::now();
        let e = connect_ctl_starting("vde://x", &d.0, &spec)
            .unwrap_err()
            .to_string();
        assert!(t.elapsed() >= STARTING, "{:?}", t.elapsed());
        assert!(e.contains("stale socket"), "{e}");
    }
}
