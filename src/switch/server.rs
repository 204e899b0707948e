//! The server side of the VDE control protocol for the in-process switch:// and hub:// nodes:
//! the node's directory and listening `ctl` socket (created when the VNL is opened, in the host
//! namespaces, before any thread starts), and the per-client data socket.

use crate::vnl::num;
use crate::wire::vde_ctl::{encode_sockaddr_marked, Request, HEADER_LEN, MAX_DESCR};
use nix::sys::socket::{
    bind, connect, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use crate::vnl::{parse_netnode as parse, NodeSpec, STD_DIRMODE, STD_EXPIRE, STD_HASHSIZE, STD_MODE};

/// The default node directory: `/tmp/vdenode_<user>` (or `u<euid>` without a passwd entry).
pub fn default_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => PathBuf::from(format!("/tmp/vdenode_{}", u.name)),
        _ => PathBuf::from(format!("/tmp/vdenode_u{uid}")),
    }
}

/// The node's directory with its listening control socket. Dropping it removes the socket,
/// any data socket left in the directory, and the directory.
#[derive(Debug)]
pub struct Listener {
    pub spec: NodeSpec,
    pub dir: PathBuf,
    pub ctl: OwnedFd,
    /// The directory, open and flock'ed for the node's life: a second vdens-fast host on the
    /// same path sees it taken even in the instant before the first one listens.
    _lock: OwnedFd,
    gid: Option<u32>,
    /// Whether dropping removes the files (false in a process that handed the node to a child).
    remove: bool,
    /// Clients that offer super-frames are offered them in the answer (`wire::superframe`).
    pub superframes: bool,
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

type CreateError = (&'static str, io::Error, Option<String>);

const TAKING_OVER: &str = "taking over the existing node directory";

/// Makes `dir` the node's directory: creates it, or, when it exists, takes it over as
/// vde_switch does, provided it is a stale one: nothing answers on its `ctl` socket
/// (ECONNREFUSED: the host that made it died without removing it), and then the stale `ctl`
/// is removed. A switch that answers there, a `ctl` that is not a socket, or a directory of
/// another user is refused; nothing but a stale `ctl` socket is ever removed. Returns the
/// directory open and locked (flock).
fn take_dir(dir: &Path) -> Result<OwnedFd, CreateError> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let running = |dir: &Path| {
        Some(format!(
            "another switch is running on {}: stop it or use another path",
            dir.display()
        ))
    };
    // Created 0700 and given its mode (dirmode) once the group is set.
    let created = match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(("creating the node directory", e, None)),
    };
    let fd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        let hint = (e == nix::errno::Errno::ENOTDIR)
            .then(|| format!("{} exists and is not a directory", dir.display()));
        (TAKING_OVER, nix_io(e), hint)
    })?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| (TAKING_OVER, nix_io(e), None))?;
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return Err((
            TAKING_OVER,
            io::Error::from_raw_os_error(libc::EPERM),
            Some(format!(
                "{} belongs to uid {}, not to this user: use another path",
                dir.display(),
                st.st_uid
            )),
        ));
    }
    // flock, not an fcntl lock: it belongs to the open directory, so it stays with the process
    // that runs the node when clone mode forks, and goes when that process dies.
    #[allow(deprecated)]
    if let Err(e) = nix::fcntl::flock(fd.as_raw_fd(), nix::fcntl::FlockArg::LockExclusiveNonblock) {
        let why = if e == nix::errno::Errno::EWOULDBLOCK {
            io::Error::from_raw_os_error(libc::EADDRINUSE)
        } else {
            nix_io(e)
        };
        return Err((TAKING_OVER, why, running(dir)));
    }
    if !created {
        reclaim_ctl(dir).map_err(|(e, hint)| (TAKING_OVER, e, hint.or_else(|| running(dir))))?;
    }
    Ok(fd)
}

/// Removes `DIR/ctl` if it is a socket nothing listens on; Ok when it is gone (or was never
/// there). An error (with a hint, or None for "a switch is running there") otherwise.
fn reclaim_ctl(dir: &Path) -> Result<(), (io::Error, Option<String>)> {
    use std::os::unix::fs::FileTypeExt;
    let path = dir.join("ctl");
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((e, None)),
        Ok(m) if !m.file_type().is_socket() => {
            return Err((
                io::Error::from_raw_os_error(libc::EEXIST),
                Some(format!(
                    "{} is not a socket, so {} is not a switch directory: use another path",
                    path.display(),
                    dir.display()
                )),
            ))
        }
        Ok(_) => {}
    }
    let addr = UnixAddr::new(&path).map_err(|e| {
        (
            nix_io(e),
            Some("AF_UNIX paths hold 107 bytes: use a shorter path".into()),
        )
    })?;
    // A host that has just died may still answer for a few milliseconds: the io_uring of a
    // vdens-fast host is torn down after its process has gone (measured: 5-11 ms after it
    // was reaped), and its pending accept keeps the listening socket alive until then. No
    // vdens-fast host holds the directory's lock at this point, so only a classic switch
    // can be alive here: refusing it waits this long.
    let end = std::time::Instant::now() + STALE_GRACE;
    loop {
        let probe = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| {
            (
                nix_io(e),
                Some("creating a socket to probe the control socket".into()),
            )
        })?;
        match connect(probe.as_raw_fd(), &addr) {
            // Someone listens (a full backlog answers EAGAIN: someone listens too).
            Ok(()) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINPROGRESS) => {
                if std::time::Instant::now() >= end {
                    return Err((io::Error::from_raw_os_error(libc::EADDRINUSE), None));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(nix::errno::Errno::ECONNREFUSED) => {
                return match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err((e, Some(format!("removing the stale {}", path.display())))),
                }
            }
            Err(e) => return Err((nix_io(e), Some(format!("probing {}", path.display())))),
        }
    }
}

/// How long a control socket must keep answering to count as a running switch's.
const STALE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl Listener {
    /// Creates the directory, or takes over a stale one (see `take_dir`), and listens on
    /// `DIR/ctl`.
    pub fn create(spec: &NodeSpec) -> Result<Listener, (&'static str, io::Error, Option<String>)> {
        let dir = if spec.dir.as_os_str().is_empty() {
            default_dir()
        } else {
            let name = spec.dir.file_name().map(|n| n.to_owned()).unwrap_or_default();
            let parent = match spec.dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let parent = std::fs::canonicalize(&parent).map_err(|e| {
                (
                    "finding the node's parent directory",
                    e,
                    Some(format!("{} must exist", parent.display())),
                )
            })?;
            parent.join(name)
        };
        let gid = match &spec.grp {
            None => None,
            // The name's bytes, as libvdeplug's getgrnam_r (UTF-8 or not), else a number.
            Some(g) => match crate::sys::group::gid_by_name(g.as_bytes()) {
                Ok(Some(gid)) => Some(gid),
                _ => {
                    let (v, used) = num::strtol(g.as_bytes(), 0);
                    if used > 0 && g.as_bytes()[0].is_ascii_digit() {
                        Some(v as u32)
                    } else {
                        None
                    }
                }
            },
        };
        let ctl = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| ("creating the control socket", nix_io(e), None))?;
        let _ = setsockopt(&ctl, sockopt::ReuseAddr, &true);
        let lock = take_dir(&dir)?;
        let l = Listener {
            spec: spec.clone(),
            dir: dir.clone(),
            ctl,
            _lock: lock,
            gid,
            remove: true,
            superframes: false,
        };
        if let Some(g) = gid {
            std::os::unix::fs::chown(&dir, None, Some(g))
                .map_err(|e| ("changing the node directory's group", e, None))?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(spec.dirmode))
            .map_err(|e| ("setting the node directory's mode", e, None))?;
        let path = dir.join("ctl");
        let addr = UnixAddr::new(&path).map_err(|e| {
            (
                "naming the control socket",
                nix_io(e),
                Some("AF_UNIX paths hold 107 bytes: use a shorter path".into()),
            )
        })?;
        bind(l.ctl.as_raw_fd(), &addr).map_err(|e| ("binding the control socket", nix_io(e), None))?;
        l.own(&path)
            .map_err(|e| ("setting the control socket's mode", e, None))?;
        listen(&l.ctl, Backlog::new(15).expect("small backlog"))
            .map_err(|e| ("listening on the control socket", nix_io(e), None))?;
        Ok(l)
    }

    fn own(&self, path: &Path) -> io::Result<()> {
        if let Some(g) = self.gid {
            std::os::unix::fs::chown(path, None, Some(g))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(self.spec.mode))
    }

    /// Path of the data socket of port `id`.
    pub fn data_path(&self, id: u16) -> PathBuf {
        self.dir.join(format!("fd{id}"))
    }

    /// Creates port `id`'s data socket for `req`: bound in the directory, connected to the
    /// client's socket. Returns it and the answer to send on the control connection.
    pub fn open_port(&self, id: u16, req: &Request) -> io::Result<(OwnedFd, Vec<u8>)> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(nix_io)?;
        crate::transport::widen_sndbuf(&fd);
        let path = self.data_path(id);
        let _ = std::fs::remove_file(&path);
        let addr = UnixAddr::new(&path).map_err(nix_io)?;
        bind(fd.as_raw_fd(), &addr).map_err(nix_io)?;
        let r = (|| {
            // The mode only, as libvdeplug_switch does (conn_in): the group comes from the
            // directory when it is set-group-ID (the default dirmode 02700 and every dirmode
            // mode= makes). A chown would fail here: the node serves clients from inside the
            // user namespace, where the group given by grp= is not mapped (EINVAL), so a
            // [grp=G] switch turned every client away.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(self.spec.mode))?;
            let peer = if req.sock_path.first() == Some(&0) {
                UnixAddr::new_abstract(&req.sock_path[1..]).map_err(nix_io)?
            } else {
                UnixAddr::new(Path::new(std::ffi::OsStr::from_bytes(&req.sock_path))).map_err(nix_io)?
            };
            connect(fd.as_raw_fd(), &peer).map_err(nix_io)?;
            let (ans, _) =
                encode_sockaddr_marked(path.as_os_str().as_bytes(), self.superframes && req.superframes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            Ok(ans.to_vec())
        })();
        match r {
            Ok(a) => Ok((fd, a)),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }
}

/// A client connected to the control socket whose request has not fully arrived.
pub struct Joining {
    pub fd: OwnedFd,
    buf: Vec<u8>,
}

impl Joining {
    pub fn new(fd: OwnedFd) -> Joining {
        Joining {
            fd,
            buf: Vec::with_capacity(HEADER_LEN + MAX_DESCR),
        }
    }

    /// Reads what the client sent (non-blocking); true once the request is there, or the
    /// client hung up or failed (then [`Listener::answer`] refuses it).
    pub fn read(&mut self) -> bool {
        use nix::sys::socket::{recv, MsgFlags};
        let mut b = [0u8; HEADER_LEN + MAX_DESCR];
        match recv(self.fd.as_raw_fd(), &mut b, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => true,
            Ok(k) => {
                let room = HEADER_LEN + MAX_DESCR - self.buf.len();
                self.buf.extend_from_slice(&b[..k.min(room)]);
                self.buf.len() >= HEADER_LEN
            }
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => false,
            Err(_) => true,
        }
    }

    /// The request bytes read so far.
    pub fn request(&self) -> &[u8] {
        &self.buf
    }
}

/// A client that joined: its port, data socket (bound at `path`, connected to the client) and
/// the description it gave.
pub struct Joined {
    pub id: u16,
    pub data: OwnedFd,
    pub path: PathBuf,
    /// The description as the client sent it (up to its first NUL), bytes kept as they came,
    /// UTF-8 or not, as vde_switch keeps them (its `port/print` shows them unchanged).
    pub descr_bytes: Vec<u8>,
    /// The same as the statistics (JSON) and messages show it: [`shown`].
    pub descr: String,
    /// The client and this node take super-frames from each other on this port.
    pub superframes: bool,
}

/// A client's description as text (the `--stats` JSON, whose strings cannot hold other
/// bytes, and messages): UTF-8 as it is; otherwise escaped as Rust does (`a\xFF\xFEb`, with
/// `\\`, `\"` and control characters escaped too), as tap names that are not UTF-8 are
/// shown, so the bytes can be told apart. A lossy conversion would turn every such byte into
/// the same U+FFFD.
pub fn shown(descr: &[u8]) -> String {
    match std::str::from_utf8(descr) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let q = format!("{:?}", std::ffi::OsStr::from_bytes(descr));
            // Debug quotes it: exactly one quote off each end.
            q[1..q.len() - 1].to_string()
        }
    }
}

impl Listener {
    /// Serves a complete join request `buf` read from the control connection `ctl`: picks the
    /// port it asks for (a free one for a new port; `[N]` only when free; ports below `max`,
    /// `taken` says which are in use), creates the data socket and sends the answer. `None`
    /// when the request is malformed, its port is taken, or the answer cannot be sent: the
    /// caller then closes the connection, which is what the client sees.
    pub fn answer(
        &self,
        buf: &[u8],
        ctl: BorrowedFd<'_>,
        max: usize,
        taken: impl Fn(usize) -> bool,
    ) -> Option<Joined> {
        use crate::wire::vde_ctl::RequestType as R;
        use nix::sys::socket::{send, MsgFlags};
        let req = Request::decode(buf).ok()?;
        let id = match req.kind {
            R::NewPort0 => (!taken(0)).then_some(0),
            R::Port(n) if (n as usize) < max => (!taken(n as usize)).then_some(n as usize),
            R::Port(_) => None,
            R::NewControl => (1..max).find(|&i| !taken(i)),
        }? as u16;
        let (data, answer) = self.open_port(id, &req).ok()?;
        let path = self.data_path(id);
        if !matches!(send(ctl.as_raw_fd(), &answer, MsgFlags::MSG_DONTWAIT), Ok(n) if n == answer.len()) {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(Joined {
            id,
            data,
            path,
            descr: shown(&req.description),
            descr_bytes: req.description,
            superframes: self.superframes && req.superframes,
        })
    }

    /// Closes this copy of the listening socket, leaving the directory to the process that
    /// runs the node (vdens -c: the child).
    pub fn release(mut self) {
        self.remove = false;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.remove {
            return;
        }
        let _ = std::fs::remove_file(self.dir.join("ctl"));
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let n = e.file_name();
                let n = n.as_bytes();
                if n.starts_with(b"fd") && n[2..].iter().all(u8::is_ascii_digit) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port's data socket gets a send buffer above the system's default.
    #[test]
    fn port_socket_has_a_wide_send_buffer() {
        let d = crate::TestDir::new("srv-sndbuf");
        let base = &d.0;
        let spec = parse(false, base.join("sw").to_str().unwrap()).unwrap();
        let l = Listener::create(&spec)
            .map_err(|(w, e, _)| format!("{w}: {e}"))
            .unwrap();
        let client = base.join("client");
        let _c = std::os::unix::net::UnixDatagram::bind(&client).unwrap();
        let req = Request {
            kind: crate::wire::vde_ctl::RequestType::NewControl,
            sock_path: client.as_os_str().as_bytes().to_vec(),
            description: b"test".to_vec(),
            superframes: false,
        };
        let (fd, _) = l.open_port(1, &req).unwrap();
        let got = nix::sys::socket::getsockopt(&fd, sockopt::SndBuf).unwrap();
        let default: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(got > default, "send buffer {got}, system default {default}");
    }

    /// A directory name that is not UTF-8 is used byte for byte, as libvdeplug does.
    #[test]
    fn directory_name_that_is_not_utf8() {
        let d = crate::TestDir::new("srv-bytes");
        let mut b = d.0.as_os_str().as_bytes().to_vec();
        b.extend_from_slice(b"/sw\xff\xfe");
        let dir = PathBuf::from(std::ffi::OsStr::from_bytes(&b));
        let mut text = b.clone();
        text.extend_from_slice(b"[mode=660]");
        let spec = parse(false, std::ffi::OsStr::from_bytes(&text)).unwrap();
        let l = Listener::create(&spec)
            .map_err(|(w, e, _)| format!("{w}: {e}"))
            .unwrap();
        assert_eq!(l.dir, dir);
        let m = std::fs::metadata(dir.join("ctl")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o660);
        let _c = std::os::unix::net::UnixStream::connect(dir.join("ctl")).unwrap();
        let client = d.0.join("client\u{e9}");
        let _s = std::os::unix::net::UnixDatagram::bind(&client).unwrap();
        let req = Request {
            kind: crate::wire::vde_ctl::RequestType::NewControl,
            sock_path: client.as_os_str().as_bytes().to_vec(),
            description: b"test".to_vec(),
            superframes: false,
        };
        let (_fd, answer) = l.open_port(1, &req).unwrap();
        assert!(
            answer.windows(b.len()).any(|w| w == &b[..]),
            "the answer names the data socket in the directory"
        );
        drop(l);
        assert!(!dir.exists(), "removed on drop");
    }

    /// A description that is not UTF-8 is kept as it came, and shown escaped (not lossily:
    /// `\xFF` and `\xFE` stay apart).
    #[test]
    fn description_bytes_kept_as_they_came() {
        use std::os::fd::AsFd;
        let d = crate::TestDir::new("srv-descr");
        let spec = parse(false, d.0.join("sw").to_str().unwrap()).unwrap();
        let l = Listener::create(&spec)
            .map_err(|(w, e, _)| format!("{w}: {e}"))
            .unwrap();
        let client = d.0.join("client");
        let _c = std::os::unix::net::UnixDatagram::bind(&client).unwrap();
        let (ctl, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let descr = b"a\xff\xfeb \\\" user=root pid=7".to_vec();
        let req = Request {
            kind: crate::wire::vde_ctl::RequestType::NewControl,
            sock_path: client.as_os_str().as_bytes().to_vec(),
            description: descr.clone(),
            superframes: false,
        };
        let j = l
            .answer(&req.encode().unwrap(), ctl.as_fd(), 4, |_| false)
            .unwrap();
        assert_eq!(j.descr_bytes, descr);
        assert_eq!(j.descr, r#"a\xFF\xFEb \\\" user=root pid=7"#);
    }

    #[test]
    fn shown_descriptions() {
        assert_eq!(shown(b"vdeplug: user=root pid=1"), "vdeplug: user=root pid=1");
        assert_eq!(shown("\u{e9}\"\\".as_bytes()), "\u{e9}\"\\", "UTF-8 as it is");
        assert_eq!(shown(b"\xff"), r"\xFF");
        assert_eq!(shown(b"\xfe\""), r#"\xFE\""#, "one quote off each end, no more");
        assert_eq!(shown(b"\xc3\n"), r"\xC3\n");
        assert_ne!(shown(b"\xff"), shown(b"\xfe"));
    }

    #[test]
    fn options() {
        let s = parse(false, "/tmp/x[mode=660/hashsize=1k/expiretime=30/hashseed=7]").unwrap();
        assert_eq!(s.mode, 0o660);
        assert_eq!(s.dirmode, 0o2000 | 0o660 | 0o110);
        assert_eq!((s.hashsize, s.expire, s.seed), (1024, 30, 7));
        let s = parse(true, "").unwrap();
        assert!(s.hub && s.dir.as_os_str().is_empty());
        assert_eq!((s.mode, s.dirmode), (STD_MODE, STD_DIRMODE));
        assert!(parse(false, "/tmp/x[bogus=1]").is_err());
        // dirmode= takes a directory's set-group-ID and sticky bits, as libvdeplug does.
        assert_eq!(parse(false, "/tmp/x[dirmode=2770]").unwrap().dirmode, 0o2770);
        assert_eq!(parse(false, "/tmp/x[dirmode=3777]").unwrap().dirmode, 0o3777);
        assert!(parse(false, "/tmp/x[dirmode=17777]").is_err());
        assert!(parse(false, "/tmp/x[dirmode=2000]").is_err());
        assert!(parse(false, "/tmp/x[dirmode=x]").is_err());
    }
}
