//! IPv4/IPv6 UDP pieces that std and nix lack, for the vxlan:// and vxvde:// overlays: socket
//! options by interface index (`ip_mreqn`, `ipv6_mreq`), and batched receive/send that keep
//! the 8-byte overlay header apart from the frame (two iovecs, so the frame lands in, or is
//! sent from, the engine's buffer with no copy) and carry each datagram's peer address.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{owned, MAX_BATCH};

/// Bytes of the header kept apart from the frame.
pub const HDR: usize = 8;

/// A new UDP socket of the family (close-on-exec, blocking until the engine changes that).
pub fn udp_socket(v6: bool) -> io::Result<OwnedFd> {
    let fam = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2) call; the result is wrapped at once.
    unsafe {
        owned(libc::socket(
            fam,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        ))
    }
}

fn setsockopt<T>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: the kernel reads size_of::<T>() bytes from a valid, initialised T borrowed for
    // the call; callers pass the type each option expects (int, ip_mreqn, ipv6_mreq).
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An `int` socket option (SO_REUSEADDR, SO_RCVBUF, IP_TTL, IP_MULTICAST_TTL/LOOP,
/// IPV6_MULTICAST_HOPS/LOOP, ...).
pub fn set_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, v: i32) -> io::Result<()> {
    setsockopt(fd, level, name, &v)
}

fn mreqn(group: Ipv4Addr, ifindex: u32) -> libc::ip_mreqn {
    libc::ip_mreqn {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from(group).to_be(),
        },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    }
}

/// IP_ADD_MEMBERSHIP of `group` on interface `ifindex` (0: the kernel picks by route).
pub fn join_v4(fd: BorrowedFd<'_>, group: Ipv4Addr, ifindex: u32) -> io::Result<()> {
    setsockopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_ADD_MEMBERSHIP,
        &mreqn(group, ifindex),
    )
}

/// IP_MULTICAST_IF: multicast sent on this socket leaves through interface `ifindex`.
pub fn multicast_if_v4(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    setsockopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_IF,
        &mreqn(Ipv4Addr::UNSPECIFIED, ifindex),
    )
}

/// IPV6_ADD_MEMBERSHIP (IPV6_JOIN_GROUP) of `group` on interface `ifindex` (0: by route).
pub fn join_v6(fd: BorrowedFd<'_>, group: Ipv6Addr, ifindex: u32) -> io::Result<()> {
    let m = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.octets(),
        },
        ipv6mr_interface: ifindex,
    };
    setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &m)
}

/// IPV6_MULTICAST_IF: multicast sent on this socket leaves through interface `ifindex`.
pub fn multicast_if_v6(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, ifindex as i32)
}

/// A socket address in the kernel's form, with its length.
fn to_raw(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address the kernel wrote, if it is an IPv4 or IPv6 one.
fn from_raw(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, fully written (len).
            let s: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)),
                u16::from_be(s.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, fully written (len).
            let s: &libc::sockaddr_in6 = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(s.sin6_addr.s6_addr),
                u16::from_be(s.sin6_port),
                u32::from_be(s.sin6_flowinfo),
                s.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// bind(2) to an IPv4/IPv6 address.
pub fn bind(fd: BorrowedFd<'_>, a: &SocketAddr) -> io::Result<()> {
    let (ss, len) = to_raw(a);
    // SAFETY: bind reads `len` bytes of a valid sockaddr borrowed for the call.
    let r = unsafe { libc::bind(fd.as_raw_fd(), (&ss as *const libc::sockaddr_storage).cast(), len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// getsockname(2) of an IPv4/IPv6 socket.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into the storage, which is exclusively
    // borrowed for the call, and updates `len`.
    let r = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    from_raw(&ss, len).ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

/// sendto(2) of one datagram made of `hdr` and `payload` to `dest`, without waiting.
pub fn send_to(fd: BorrowedFd<'_>, hdr: &[u8], payload: &[u8], dest: &SocketAddr) -> io::Result<usize> {
    send_batch_to(fd, hdr, &[payload], std::slice::from_ref(dest))
}

/// Room for one IP_PKTINFO control message.
const CMSG_ROOM: usize = 64;

/// The local address IP_PKTINFO reports for a datagram (`ipi_spec_dst`: the address this host
/// would answer it from), when the control data carries one.
fn pktinfo_spec_dst(msg: &libc::msghdr) -> Option<IpAddr> {
    // SAFETY: `msg` was filled by recvmmsg: msg_control points at its control buffer and
    // msg_controllen says how much of it the kernel wrote; CMSG_FIRSTHDR/NXTHDR stay within it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP
                && (*c).cmsg_type == libc::IP_PKTINFO
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize
            {
                let pi: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_spec_dst.s_addr))));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// One received datagram's metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct Meta {
    /// The sender (None for a non-IP sender).
    pub from: Option<SocketAddr>,
    /// IPv4 with IP_PKTINFO on: the local address the kernel would answer the sender from,
    /// which equals the sender's address exactly when the sender is this host.
    pub spec_dst: Option<IpAddr>,
}

/// recvmmsg(2) without waiting: receives up to `lens.len()` datagrams, the first [`HDR`] bytes
/// of each into `hdrs[i]` and the rest into the `stride`-byte piece `i` of `slab`. `lens[i]`
/// gets the datagram's whole length (header included, truncated to `HDR + stride`) and
/// `meta[i]` its sender. Returns how many arrived.
pub fn recv_batch_from(
    fd: BorrowedFd<'_>,
    hdrs: &mut [[u8; HDR]],
    slab: &mut [u8],
    stride: usize,
    lens: &mut [usize],
    meta: &mut [Meta],
) -> io::Result<usize> {
    let n = lens
        .len()
        .min(hdrs.len())
        .min(meta.len())
        .min(MAX_BATCH)
        .min(slab.len() / stride.max(1));
    // SAFETY: iovec, mmsghdr and sockaddr_storage are plain data; all-zero is valid.
    let mut iov: [[libc::iovec; 2]; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut names: [libc::sockaddr_storage; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // u64 elements: control buffers must be aligned for cmsghdr.
    let mut ctl = [[0u64; CMSG_ROOM / 8]; MAX_BATCH];
    let base = slab.as_mut_ptr();
    for i in 0..n {
        iov[i][0].iov_base = hdrs[i].as_mut_ptr().cast();
        iov[i][0].iov_len = HDR;
        // SAFETY: i * stride + stride <= slab.len() by the choice of n.
        iov[i][1].iov_base = unsafe { base.add(i * stride) }.cast();
        iov[i][1].iov_len = stride;
        msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 2;
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_control = ctl[i].as_mut_ptr().cast();
        msgs[i].msg_hdr.msg_controllen = CMSG_ROOM as _;
    }
    // SAFETY: each of the n mmsghdr points at two iovecs inside `hdrs[i]` and `slab` (both
    // exclusively borrowed for the call), at its own sockaddr_storage and control buffer on
    // this stack frame.
    let r = unsafe { super::recvmmsg_now(fd, &mut msgs[..n]) }?;
    for i in 0..r {
        lens[i] = msgs[i].msg_len as usize;
        meta[i] = Meta {
            from: from_raw(&names[i], msgs[i].msg_hdr.msg_namelen),
            spec_dst: pktinfo_spec_dst(&msgs[i].msg_hdr),
        };
    }
    Ok(r)
}

/// sendmmsg(2) without waiting: datagram `i` is `hdr` followed by `frames[i]`, sent to
/// `dests[i]`. Returns how many were sent (from the first; an error on the first is `Err`).
pub fn send_batch_to(
    fd: BorrowedFd<'_>,
    hdr: &[u8],
    frames: &[&[u8]],
    dests: &[SocketAddr],
) -> io::Result<usize> {
    let n = frames.len().min(dests.len()).min(MAX_BATCH);
    // SAFETY: iovec, mmsghdr and sockaddr_storage are plain data; all-zero is valid.
    let mut iov: [[libc::iovec; 2]; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut names: [libc::sockaddr_storage; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let (ss, len) = to_raw(&dests[i]);
        names[i] = ss;
        iov[i][0].iov_base = hdr.as_ptr() as *mut libc::c_void;
        iov[i][0].iov_len = hdr.len();
        iov[i][1].iov_base = frames[i].as_ptr() as *mut libc::c_void;
        iov[i][1].iov_len = frames[i].len();
        msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 2;
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen = len;
    }
    // SAFETY: n valid mmsghdr pointing at iovecs over `hdr` and `frames[i]` and at addresses
    // on this stack frame, all alive for the call; the kernel only reads them.
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

/// The addresses of the interfaces of this network namespace.
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for ifa in addrs {
        let Some(a) = ifa.address else { continue };
        if let Some(s) = a.as_sockaddr_in() {
            v.push(IpAddr::V4(s.ip()));
        } else if let Some(s) = a.as_sockaddr_in6() {
            v.push(IpAddr::V6(s.ip()));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addresses_round_trip() {
        for a in [
            "192.0.2.7:4789".parse::<SocketAddr>().unwrap(),
            "[ff05:56de::1]:14789".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 0, 3)),
        ] {
            let (ss, len) = to_raw(&a);
            assert_eq!(from_raw(&ss, len), Some(a));
        }
    }

    #[test]
    fn loopback_batch_with_headers() {
        let a = udp_socket(false).unwrap();
        let b = udp_socket(false).unwrap();
        use std::os::fd::AsFd;
        bind(a.as_fd(), &"127.0.0.1:0".parse().unwrap()).unwrap();
        bind(b.as_fd(), &"127.0.0.1:0".parse().unwrap()).unwrap();
        let (aa, ba) = (local_addr(a.as_fd()).unwrap(), local_addr(b.as_fd()).unwrap());
        set_int(b.as_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1).unwrap();
        let frames: [&[u8]; 2] = [&[1u8; 20], &[2u8; 30]];
        let n = send_batch_to(a.as_fd(), &[8, 0, 0, 0, 0, 0, 1, 0], &frames, &[ba, ba]).unwrap();
        assert_eq!(n, 2);
        let mut hdrs = [[0u8; HDR]; 4];
        let mut slab = vec![0u8; 4 * 64];
        let mut lens = [0usize; 4];
        let mut meta = [Meta::default(); 4];
        let mut got = 0;
        for _ in 0..100 {
            got += recv_batch_from(
                b.as_fd(),
                &mut hdrs[got..],
                &mut slab[got * 64..],
                64,
                &mut lens[got..],
                &mut meta[got..],
            )
            .unwrap_or(0);
            if got == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, 2);
        assert_eq!(lens[..2], [28, 38]);
        assert_eq!(hdrs[0], [8, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&slab[..20], &[1u8; 20]);
        assert_eq!(&slab[64..94], &[2u8; 30]);
        assert_eq!(meta[0].from, Some(aa));
        // From this host: the address we would answer from is the sender's own.
        assert_eq!(meta[0].spec_dst, Some(aa.ip()));
        assert!(local_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }
}
