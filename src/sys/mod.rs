//! The few raw syscalls and ioctls nix lacks, each wrapped once. All `unsafe` of the control
//! module lives here; every block says why it is sound.

pub mod caller;
pub mod dl;
pub mod fdpass;
pub mod group;
pub mod inet;
pub mod isolate;
pub mod rt;

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Linux capability numbers used by vdens-fast (linux/capability.h).
pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_BROADCAST: u32 = 11;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_SYS_ADMIN: u32 = 21;

pub(crate) const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
pub(crate) struct CapHeader {
    pub(crate) version: u32,
    pub(crate) pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct CapData {
    pub(crate) effective: u32,
    pub(crate) permitted: u32,
    pub(crate) inheritable: u32,
}

/// Adds `caps` to this thread's inheritable set and raises them as ambient capabilities, so an
/// executed program keeps them (capabilities(7), "Ambient capability set").
pub fn raise_ambient(caps: &[u32]) -> io::Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes at most two CapData for version 3; both pointers are valid.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for &c in caps {
        data[(c / 32) as usize].inheritable |= 1 << (c % 32);
    }
    // SAFETY: capset reads the header and two CapData, all valid and initialised.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for &c in caps {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE,
                c as libc::c_ulong,
                0,
                0,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Asks the kernel to send `sig` to this process when its parent thread dies.
pub fn set_parent_death_signal(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor from `first` up (close_range(2), Linux 5.9).
pub fn close_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; callers do this right before exec, when no
    // Rust object of this process will use them again.
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Attaches the open `/dev/net/tun` descriptor to the tap interface `name` (created in the
/// opener's network namespace if missing), raw Ethernet frames with no packet-info header.
/// The name's bytes go to the kernel as given, UTF-8 or not (the kernel decides which it takes,
/// as for vdens's `-i`).
pub fn tun_set_iff_tap(tun: BorrowedFd<'_>, name: &(impl AsRef<[u8]> + ?Sized)) -> io::Result<()> {
    tun_set_iff(tun, name.as_ref(), IFF_TAP | IFF_NO_PI)
}

/// TUNSETIFF of the tap `name` with `flags`.
fn tun_set_iff(tun: BorrowedFd<'_>, name: &[u8], flags: libc::c_short) -> io::Result<()> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    if name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    req.name[..name.len()].copy_from_slice(name);
    // SAFETY: TUNSETIFF reads and writes one struct ifreq (40 bytes), which IfReq is.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wraps a descriptor returned by a syscall.
///
/// # Safety
/// `fd` must be a freshly returned, open descriptor that nothing else owns.
pub unsafe fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: per this function's contract.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Returns the strsignal-like name of a signal, for messages.
pub fn signal_name(sig: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string, valid until the next
    // call on this thread; it is copied at once.
    let p = unsafe { libc::strsignal(sig) };
    if p.is_null() {
        return format!("signal {sig}");
    }
    // SAFETY: non-null, NUL-terminated per strsignal(3).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Result of [`fork`].
pub enum Forked {
    Child,
    Parent(nix::unistd::Pid),
}

/// fork(2).
///
/// Callers fork while the process is single-threaded (before any worker thread starts), or
/// only call async-signal-safe code in the child, which is the condition fork(2) imposes.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: see the function documentation; every caller in this crate forks before spawning
    // threads (app::vdens::run starts the engine only after the command is forked).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Err(e) => Err(e.into()),
    }
}

/// Writes `msg` to stderr with a single write(2) and ends the process with `code` at once,
/// without running exit handlers (for a forked child whose exec failed).
pub fn die_now(msg: &[u8], code: i32) -> ! {
    // SAFETY: write(2) of a valid buffer to fd 2, then _exit(2); both async-signal-safe.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(code)
    }
}

/// A failed step of the set-up (a namespace, a mount, a tap, the command's start): what failed,
/// why (the errno's text), and how to fix it, shown as one line `WHAT: WHY (HINT)`.
#[derive(Debug)]
pub struct StepError {
    pub what: String,
    pub errno: Option<i32>,
    pub why: String,
    pub hint: Option<String>,
}

impl StepError {
    /// `what` failed with `err`.
    pub fn new(what: impl Into<String>, err: &io::Error, hint: Option<String>) -> StepError {
        StepError {
            what: what.into(),
            errno: err.raw_os_error(),
            why: err_text(err),
            hint,
        }
    }

    /// A failure that is not a system call's: the message says it all.
    pub fn msg(what: String) -> StepError {
        StepError {
            what,
            errno: None,
            why: String::new(),
            hint: None,
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)?;
        if !self.why.is_empty() {
            write!(f, ": {}", self.why)?;
        }
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for StepError {}

/// The text of an I/O error without Rust's "(os error N)" suffix, for one-line messages.
pub fn err_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// A close-on-exec duplicate of descriptor `fd`, which this process inherited or otherwise
/// holds under a number only (seqpacket://N). The original stays as it is.
pub fn dup_inherited(fd: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on any integer is sound: it fails with EBADF when `fd` is
    // not open, and otherwise returns a new descriptor that nothing else owns.
    unsafe { owned(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3)) }
}

/// Most messages [`recv_batch`] and [`send_batch`] move per call.
pub const MAX_BATCH: usize = 64;

/// recvmmsg(2) without waiting: receives up to `lens.len()` datagrams into consecutive
/// `stride`-byte pieces of `slab`, storing each length (truncated to `stride`) in `lens`.
/// Returns how many arrived.
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    slab: &mut [u8],
    stride: usize,
    lens: &mut [usize],
) -> io::Result<usize> {
    let n = lens.len().min(MAX_BATCH).min(slab.len() / stride.max(1));
    // SAFETY: iovec and mmsghdr are plain data; all-zero is a valid empty value.
    let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let base = slab.as_mut_ptr();
    for i in 0..n {
        // SAFETY: i * stride + stride <= slab.len() by the choice of n.
        iov[i].iov_base = unsafe { base.add(i * stride) }.cast();
        iov[i].iov_len = stride;
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each of the n mmsghdr points at one iovec inside `slab`, exclusively borrowed
    // for the call.
    let r = unsafe { recvmmsg_now(fd, &mut msgs[..n]) }?;
    for i in 0..r {
        lens[i] = msgs[i].msg_len as usize;
    }
    Ok(r)
}

/// recvmmsg(2) without waiting into `msgs`. Returns how many arrived.
///
/// # Safety
/// Every pointer in `msgs` (iovecs and their buffers, names, control buffers) is valid for
/// its length and not used by anything else during the call.
pub(crate) unsafe fn recvmmsg_now(fd: BorrowedFd<'_>, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: `msgs` is a valid slice of mmsghdr; what they point at is valid and the
    // caller's alone for the call (this function's contract).
    let r = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// sendmmsg(2) without waiting: sends `lens.len()` datagrams taken from consecutive
/// `stride`-byte pieces of `slab`, to `dest` when given. Returns how many were sent.
pub fn send_batch(
    fd: BorrowedFd<'_>,
    slab: &[u8],
    stride: usize,
    lens: &[usize],
    dest: Option<&nix::sys::socket::UnixAddr>,
) -> io::Result<usize> {
    use nix::sys::socket::SockaddrLike;
    let n = lens.len().min(MAX_BATCH).min(slab.len() / stride.max(1));
    // SAFETY: iovec and mmsghdr are plain data; all-zero is a valid empty value.
    let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let base = slab.as_ptr();
    for i in 0..n {
        // SAFETY: i * stride + lens[i] <= slab.len(): n bounds i, and lens are clamped.
        iov[i].iov_base = unsafe { base.add(i * stride) } as *mut libc::c_void;
        iov[i].iov_len = lens[i].min(stride);
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if let Some(a) = dest {
            msgs[i].msg_hdr.msg_name = a.as_ptr() as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = a.len();
        }
    }
    // SAFETY: n valid mmsghdr pointing at iovecs inside `slab` and at `dest`, both borrowed
    // for the call; the kernel only reads them.
    let r = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Makes io_uring_setup(2) fail with `errno` in this thread and every thread or process it
/// starts afterwards (a seccomp filter; sets no_new_privs first, as unprivileged seccomp
/// requires). For testing the fallback engine.
pub fn deny_io_uring_setup(errno: i32) -> io::Result<()> {
    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    let prog = [
        // A = seccomp_data.nr
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & 0xffff),
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel copies the filter program, which is valid for the call.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An AF_PACKET raw socket bound to interface `ifname` (in the calling thread's network
/// namespace), receiving only frames of `ethertype`; writes on it transmit raw Ethernet frames
/// out of that interface. Needs CAP_NET_RAW.
pub fn packet_socket(ifname: &str, ethertype: u16) -> io::Result<OwnedFd> {
    let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(io::Error::from)?;
    let proto = ethertype.to_be();
    // SAFETY: plain socket(2) call; the result is wrapped at once.
    let fd = unsafe {
        owned(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto as libc::c_int,
        ))?
    };
    // SAFETY: sockaddr_ll is plain data; all-zero is valid before the fields are set.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: bind reads one sockaddr_ll of the given size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;

/// TUNSETOFFLOAD flags (linux/if_tun.h): the reader completes partial checksums...
pub const TUN_F_CSUM: u32 = 0x01;
/// ...and segments TCPv4 super-frames...
pub const TUN_F_TSO4: u32 = 0x02;
/// ...and TCPv6 super-frames...
pub const TUN_F_TSO6: u32 = 0x04;
/// ...including ones with CWR (gso_type carries VIRTIO_NET_HDR_GSO_ECN).
pub const TUN_F_TSO_ECN: u32 = 0x08;

/// Like [`tun_set_iff_tap`], with IFF_VNET_HDR: every read from and write to the descriptor
/// starts with a virtio-net header (10 bytes unless [`tun_set_vnet_hdr_sz`] says otherwise).
pub fn tun_set_iff_tap_vnet(tun: BorrowedFd<'_>, name: &(impl AsRef<[u8]> + ?Sized)) -> io::Result<()> {
    tun_set_iff(tun, name.as_ref(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
}

/// Tells the tap which offloads its reader handles (TUN_F_* flags): with TSO the kernel hands
/// out TCP super-frames up to 64 KiB, with CSUM frames with partial checksums.
pub fn tun_set_offload(tun: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), no pointer.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;

/// Turns the tap's carrier on or off (TUNSETCARRIER): `ip link` shows NO-CARRIER and the
/// namespace's stack takes the link as down while the network behind it is gone.
pub fn tun_set_carrier(tun: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let v: libc::c_int = on.into();
    // SAFETY: TUNSETCARRIER reads one int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETCARRIER, &v as *const libc::c_int) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the virtio-net header size of an IFF_VNET_HDR tap (10, or 12 with num_buffers).
pub fn tun_set_vnet_hdr_sz(tun: BorrowedFd<'_>, size: i32) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETVNETHDRSZ, &size as *const i32) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETOFFLOAD flags (Linux 6.2): the reader segments USO (UDP_L4) super-frames of IPv4...
pub const TUN_F_USO4: u32 = 0x20;
/// ...and of IPv6.
pub const TUN_F_USO6: u32 = 0x40;

/// An AF_UNIX datagram socket (close-on-exec, not bound) whose receive queue holds up to `qlen`
/// datagrams from senders not connected back to it, instead of the system's
/// `net.unix.max_dgram_qlen` (10 by default).
///
/// The kernel copies that limit into a socket when it is created, from the network namespace
/// of the creating process, and offers no per-socket setting. So a child process makes the
/// socket in a throw-away user + network namespace of its own, where it may raise the limit,
/// and hands it back over a socket pair (SCM_RIGHTS). The host's namespaces are not touched;
/// the namespace lives on only as long as the socket. Pathname AF_UNIX sockets work across
/// network namespaces, so the socket is bound and used here as any other.
///
/// Fails (the caller falls back to a plain socket) when user namespaces are not available.
pub fn unix_dgram_with_qlen(qlen: u32) -> io::Result<OwnedFd> {
    // Everything the child needs is prepared here: after fork it only makes system calls.
    let text = format!("{qlen}\n");
    let mut pair = [0 as libc::c_int; 2];
    // SAFETY: socketpair(2) writes two descriptors into `pair` on success, owned from here.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    let pid = match fork()? {
        Forked::Child => qlen_child(theirs.as_raw_fd(), text.as_bytes()),
        Forked::Parent(pid) => pid,
    };
    drop(theirs);
    let got = recv_fd(ours.as_raw_fd());
    let _ = nix::sys::wait::waitpid(pid, None);
    match got? {
        Some(fd) => Ok(fd),
        None => Err(io::Error::other(
            "the helper could not make the socket (user namespaces unavailable?)",
        )),
    }
}

/// The child of [`unix_dgram_with_qlen`]: system calls only (the parent may have threads), then
/// `_exit`. Exits non-zero, sending nothing, on any failure.
fn qlen_child(chan: libc::c_int, text: &[u8]) -> ! {
    const SYSCTL: &CStr = c"/proc/sys/net/unix/max_dgram_qlen";
    // SAFETY: unshare, open, write, close, socket, sendmsg and _exit are async-signal-safe;
    // every pointer passed refers to memory that lives across the call (the stack, `text`).
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
            libc::_exit(1);
        }
        // Root of the new user namespace: allowed to set its network namespace's sysctls.
        let f = libc::open(SYSCTL.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if f < 0 || libc::write(f, text.as_ptr().cast(), text.len()) != text.len() as isize {
            libc::_exit(2);
        }
        libc::close(f);
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            libc::_exit(3);
        }
        let mut byte = 0u8;
        let mut iov = byte_iov(&mut byte);
        let mut cbuf = [0u64; 4];
        let mut msg = fd_msg(&mut iov, &mut cbuf);
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), s);
        if libc::sendmsg(chan, &msg, 0) != 1 {
            libc::_exit(4);
        }
        libc::_exit(0)
    }
}

/// An iovec over one byte (the payload an SCM_RIGHTS message rides on).
fn byte_iov(byte: &mut u8) -> libc::iovec {
    libc::iovec {
        iov_base: (byte as *mut u8).cast(),
        iov_len: 1,
    }
}

/// A msghdr with `iov` as its data and all of `cbuf` as control room, for passing one
/// descriptor; no allocation (the child of [`unix_dgram_with_qlen`] uses it after fork).
fn fd_msg(iov: &mut libc::iovec, cbuf: &mut [u64; 4]) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid (no name, no data, no control); the fields set below
    // point at the caller's buffers, which outlive every use of the returned value there.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(cbuf) as _;
    msg
}

/// Receives one descriptor sent with SCM_RIGHTS on `chan`; `None` when the sender closed
/// without sending one.
fn recv_fd(chan: libc::c_int) -> io::Result<Option<OwnedFd>> {
    let mut byte = 0u8;
    let mut iov = byte_iov(&mut byte);
    let mut cbuf = [0u64; 4];
    let mut msg = fd_msg(&mut iov, &mut cbuf);
    let n = loop {
        // SAFETY: `msg` points at live buffers of the sizes it states.
        let n = unsafe { libc::recvmsg(chan, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break n;
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `msg_control` (at most `msg_controllen` bytes); CMSG_FIRSTHDR
    // and CMSG_DATA stay within it, and an SCM_RIGHTS message of one int carries a descriptor
    // this process now owns.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if n == 1
            && !c.is_null()
            && (*c).cmsg_level == libc::SOL_SOCKET
            && (*c).cmsg_type == libc::SCM_RIGHTS
            && (*c).cmsg_len as usize == libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
            return Ok(Some(OwnedFd::from_raw_fd(fd)));
        }
    }
    Ok(None)
}

/// Disconnects AF_UNIX datagram socket `fd` (connect(2) to AF_UNSPEC): others may send to
/// it again. No blocking.
pub fn unix_dgram_disconnect(fd: BorrowedFd<'_>) -> io::Result<()> {
    let unspec = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: a valid sockaddr on the stack, of at least the length given; connect(2) only
    // reads it.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &unspec,
            std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
