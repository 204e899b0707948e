//! Passing a tap's descriptor to a peer over a unix seqpacket connection (the tap handover,
//! `engine::core::handover`), and what the kernel says about a descriptor that came: the
//! peer's credentials, SCM_RIGHTS both ways, fstat and the tun ioctls. Non-blocking calls,
//! made on a data-plane thread (the ioctls are on its seccomp list by their request number).

use crate::engine::core::handover::TunInfo;
use nix::sys::socket::{
    connect, getsockopt, sendmsg, socket, sockopt, AddressFamily, ControlMessage, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// TUNGETIFF: `_IOR('T', 210, unsigned int)`.
pub const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
/// TUNGETVNETHDRSZ: `_IOR('T', 215, int)`.
pub const TUNGETVNETHDRSZ: libc::c_ulong = 0x8004_54d7;

/// Descriptors taken from one message at most; more make the kernel cut the control data
/// (MSG_CTRUNC), and the ones it could not pass are closed by it.
const MAX_FDS: usize = 8;

/// The user id of the process at the other end of connected unix socket `fd` (as of its
/// connect(2) or listen(2)).
pub fn peer_uid(fd: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(getsockopt(&fd, sockopt::PeerCredentials)?.uid())
}

/// Accepts a connection waiting on listening socket `fd` (non-blocking, close-on-exec).
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(nix::sys::socket::accept4(
        fd,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?)
}

/// A non-blocking unix seqpacket connection to `path` (its listener's backlog full: EAGAIN).
pub fn seqpacket_connect(path: &Path) -> io::Result<OwnedFd> {
    let addr = UnixAddr::new(path)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    connect(fd.as_raw_fd(), &addr)?;
    Ok(fd)
}

/// Sends one message on `fd` (MSG_DONTWAIT), with descriptor `pass` when given (SCM_RIGHTS).
pub fn send_with_fd(fd: BorrowedFd<'_>, data: &[u8], pass: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let iov = [IoSlice::new(data)];
    let fds = pass.map(|p| [p.as_raw_fd()]);
    let cmsg: Vec<ControlMessage<'_>> = fds
        .as_ref()
        .map(|f| ControlMessage::ScmRights(f))
        .into_iter()
        .collect();
    let n = sendmsg::<()>(
        fd.as_raw_fd(),
        &iov,
        &cmsg,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if n != data.len() {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok(())
}

/// One message received on a seqpacket connection.
#[derive(Debug)]
pub struct Received {
    /// Its bytes (the first `buf.len()` of them).
    pub len: usize,
    /// The message was longer than the buffer (MSG_TRUNC).
    pub truncated: bool,
    /// Every descriptor that came with it, now ours (closed when dropped).
    pub fds: Vec<OwnedFd>,
    /// The kernel cut the control data (MSG_CTRUNC): some descriptors were lost.
    pub ctrunc: bool,
}

/// Receives one message on `fd` into `buf` (MSG_DONTWAIT; EAGAIN when there is none; a
/// length of 0 at the peer's end). Every descriptor that came is taken, whatever the control
/// data holds, so that none stays open unseen.
pub fn recv_with_fds(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    const SPACE: usize = 128;
    let mut cbuf = [0u64; SPACE / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no data, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    let want = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<libc::c_int>()) as u32) } as usize;
    msg.msg_controllen = want.min(SPACE) as _;
    // SAFETY: `msg` points at `iov` (over `buf`) and `cbuf`, both live for the call and of the
    // sizes given.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled at most `msg_controllen` bytes of `cbuf` with whole control
    // messages; CMSG_FIRSTHDR/NXTHDR stay within them, and each SCM_RIGHTS message's data
    // holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors newly installed in this process, which
    // nothing else owns.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let p = libc::CMSG_DATA(c).cast::<libc::c_int>();
                for i in 0..data / std::mem::size_of::<libc::c_int>() {
                    let f = std::ptr::read_unaligned(p.add(i));
                    if f >= 0 {
                        fds.push(OwnedFd::from_raw_fd(f));
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        len: (n as usize).min(buf.len()),
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        fds,
        ctrunc: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// What `fd` is, as a tap to write to: its device number, TUNGETIFF's flags and
/// TUNGETVNETHDRSZ (each None when the kernel says no).
pub fn tun_info(fd: BorrowedFd<'_>) -> TunInfo {
    let chr = nix::sys::stat::fstat(fd).ok().and_then(|st| {
        (st.st_mode & libc::S_IFMT == libc::S_IFCHR)
            .then(|| (libc::major(st.st_rdev), libc::minor(st.st_rdev)))
    });
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    // Only a tun device is asked (another device may give these numbers other meanings).
    if chr != Some(crate::engine::core::handover::TUN_DEV) {
        return TunInfo {
            chr,
            flags: None,
            vnet_hdr: None,
        };
    }
    // SAFETY: TUNGETIFF writes one struct ifreq (40 bytes), which IfReq is.
    let flags =
        (unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETIFF, &mut req) } == 0).then_some(req.flags as u16);
    let mut sz: libc::c_int = 0;
    // SAFETY: TUNGETVNETHDRSZ writes one int through the pointer, valid for the call.
    let vnet_hdr = (unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETVNETHDRSZ, &mut sz) } == 0).then_some(sz);
    TunInfo { chr, flags, vnet_hdr }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_pass_and_every_one_that_came_is_taken() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let (p, q) = nix::unistd::pipe().unwrap();
        send_with_fd(a.as_fd(), b"hello", Some(p.as_fd())).unwrap();
        let mut buf = [0u8; 16];
        let r = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(
            (&buf[..r.len], r.fds.len(), r.ctrunc, r.truncated),
            (&b"hello"[..], 1, false, false)
        );
        // Many at once: the kernel cuts them, and what came is still taken (and closed).
        let many: Vec<i32> = (0..40).map(|_| q.as_raw_fd()).collect();
        let iov = [IoSlice::new(b"x")];
        sendmsg::<()>(
            a.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&many)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let r = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert!(r.ctrunc, "{r:?}");
        assert!(r.fds.len() <= MAX_FDS, "{r:?}");
        // A long message is cut and says so.
        send_with_fd(a.as_fd(), &[7u8; 40], None).unwrap();
        let r = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert!(r.truncated);
    }

    #[test]
    fn a_pipe_is_no_tun() {
        let (p, _q) = nix::unistd::pipe().unwrap();
        let t = tun_info(p.as_fd());
        assert_eq!(t.chr, None);
        assert_eq!(t.flags, None);
        let null = std::fs::File::open("/dev/null").unwrap();
        let t = tun_info(null.as_fd());
        assert_eq!(t.chr, Some((1, 3)));
        assert_eq!(t.flags, None);
    }
}
