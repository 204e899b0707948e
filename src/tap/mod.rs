//! Tap interfaces in the current network namespace, in one place: opened plain (IFF_TAP |
//! IFF_NO_PI) or with a virtio-net header and segmentation offload, and their carrier.

mod offload;

pub use offload::{wanted as offload_wanted, TapOffload, TapReader};

use crate::sys;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

const TUN: &str = "/dev/net/tun";

/// A tap that could not be opened: what failed, why (errno text), and how to fix it.
pub use crate::sys::StepError as TapError;

/// `what` failed with `err`; `hint` says how to fix it.
fn tap_error(what: String, err: &io::Error, hint: String) -> TapError {
    TapError::new(what, err, Some(hint))
}

fn tun_hint(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            "the tun driver is missing: as root, modprobe tun, or mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun".into()
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            let mode = std::fs::metadata(TUN).map(|m| format!("{:04o}", m.permissions().mode() & 0o7777));
            format!(
                "{TUN} has mode {}; distributions ship it 0666: as root, chmod 0666 {TUN}",
                mode.unwrap_or_else(|_| "?".into())
            )
        }
        _ => "see tuntap in the kernel documentation".into(),
    }
}

/// Opens the tap `name`, with offload when `offload` is true ([`open_offload`]), plain
/// otherwise ([`open`]).
pub fn open_with(name: &str, offload: bool) -> Result<(OwnedFd, TapOffload), TapError> {
    if offload {
        open_offload(name)
    } else {
        Ok((open(name)?, TapOffload::NONE))
    }
}

/// [`open_with`] for a name given as bytes, UTF-8 or not (vdens hands its `-i` prefix's bytes
/// to the kernel). A name that is not UTF-8 is given to a tap created under a stand-in name,
/// renamed at once through rtnetlink (the namespace is vdens-fast's own, so nothing sees the
/// stand-in). Returns the tap, its offloads, and its name as messages and statistics show it.
pub fn open_named(
    name: &std::ffi::OsStr,
    stand_in: &str,
    offload: bool,
) -> Result<(OwnedFd, TapOffload, String), TapError> {
    use std::os::unix::ffi::OsStrExt;
    if let Some(n) = name.to_str() {
        let (fd, off) = open_with(n, offload)?;
        return Ok((fd, off, n.to_string()));
    }
    // As Rust escapes it (`\xFF`), without the quotes: one line, and the bytes can be told.
    let shown = format!("{name:?}").trim_matches('"').to_string();
    let (fd, off) = open_with(stand_in, offload)?;
    let renamed = nix::net::if_::if_nametoindex(stand_in)
        .map_err(io::Error::from)
        .and_then(|index| rename_link(index, name.as_bytes()));
    if let Err(e) = renamed {
        return Err(tap_error(
            format!("cannot create tap interface {shown}"),
            &e,
            "the kernel refused the name".into(),
        ));
    }
    Ok((fd, off, shown))
}

/// Renames the interface `index` to `name` (RTM_NEWLINK with IFLA_IFNAME, as `ip link set
/// dev X name Y`); the interface must be down.
fn rename_link(index: libc::c_uint, name: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr};
    use nix::sys::socket::{SockFlag, SockProtocol, SockType};
    use std::os::fd::AsRawFd;
    if name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let msg = rename_request(index, name);
    sendto(sock.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
    let mut buf = [0u8; 512];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    match ack_errno(&buf[..n]) {
        Some(0) => Ok(()),
        Some(e) => Err(io::Error::from_raw_os_error(e)),
        None => Err(io::Error::from_raw_os_error(libc::EPROTO)),
    }
}

/// The rtnetlink request renaming interface `index` to `name`: nlmsghdr, ifinfomsg, and the
/// IFLA_IFNAME attribute (NUL-terminated, padded to 4 bytes).
fn rename_request(index: libc::c_uint, name: &[u8]) -> Vec<u8> {
    let rta_len = 4 + name.len() + 1;
    let total = 16 + 16 + rta_len.next_multiple_of(4);
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    m.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // family, pad, type
    m.extend_from_slice(&(index as i32).to_ne_bytes());
    m.extend_from_slice(&[0; 8]); // flags, change
    m.extend_from_slice(&(rta_len as u16).to_ne_bytes());
    m.extend_from_slice(&libc::IFLA_IFNAME.to_ne_bytes());
    m.extend_from_slice(name);
    m.resize(total, 0);
    m
}

/// The errno of an rtnetlink acknowledgement (NLMSG_ERROR; 0 for success), or `None` when the
/// answer is something else.
fn ack_errno(ans: &[u8]) -> Option<i32> {
    let ty = u16::from_ne_bytes(ans.get(4..6)?.try_into().ok()?);
    if i32::from(ty) != libc::NLMSG_ERROR {
        return None;
    }
    let e = i32::from_ne_bytes(ans.get(16..20)?.try_into().ok()?);
    Some(-e)
}

/// Opens the tap `name` (IFF_TAP | IFF_NO_PI) in the current network namespace.
pub fn open(name: &str) -> Result<OwnedFd, TapError> {
    let fd = open_tun(name)?;
    sys::tun_set_iff_tap(fd.as_fd(), name).map_err(|e| iff_error(name, &e))?;
    Ok(fd)
}

/// Header size asked of an offloading tap: the plain `struct virtio_net_hdr`.
const VNET_HDR: usize = crate::wire::vnet::LEN;

/// The offloads asked of a tap: partial checksums, TCP super-frames (v4, v6, with CWR), and
/// UDP ones (USO, Linux 6.2).
const OFFLOADS: u32 = sys::TUN_F_CSUM
    | sys::TUN_F_TSO4
    | sys::TUN_F_TSO6
    | sys::TUN_F_TSO_ECN
    | sys::TUN_F_USO4
    | sys::TUN_F_USO6;

/// Opens the tap `name` with a virtio-net header and segmentation offload (see
/// `engine::offload`), for a port whose engine cuts super-frames into standard frames. A kernel
/// that refuses USO (before 6.2: EINVAL) gets the TCP offloads only; one that refuses
/// TUNSETOFFLOAD altogether gets plain frames behind the header; one that refuses the header
/// gets a plain tap. Every outcome is correct; the returned `TapOffload` says which it is.
pub fn open_offload(name: &str) -> Result<(OwnedFd, TapOffload), TapError> {
    let fd = open_tun(name)?;
    if let Err(e) = sys::tun_set_iff_tap_vnet(fd.as_fd(), name) {
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(iff_error(name, &e));
        }
        drop(fd);
        return Ok((open(name)?, TapOffload::NONE));
    }
    let off = configure_offload(fd.as_fd(), name)?;
    Ok((fd, off))
}

/// The header size and offloads of a tap attached with IFF_VNET_HDR (see [`open_offload`]).
pub fn configure_offload(fd: BorrowedFd<'_>, name: &str) -> Result<TapOffload, TapError> {
    sys::tun_set_vnet_hdr_sz(fd, VNET_HDR as i32).map_err(|e| {
        tap_error(
            format!("cannot set the virtio-net header size of tap interface {name}"),
            &e,
            "TUNSETVNETHDRSZ failed; --no-offload opens the taps without it".into(),
        )
    })?;
    let mut flags = OFFLOADS;
    let no_uso = OFFLOADS & !(sys::TUN_F_USO4 | sys::TUN_F_USO6);
    if let Err(e) = sys::tun_set_offload(fd, flags) {
        flags = 0;
        if e.raw_os_error() == Some(libc::EINVAL) && sys::tun_set_offload(fd, no_uso).is_ok() {
            flags = no_uso;
        }
    }
    Ok(TapOffload {
        vnet_hdr: VNET_HDR,
        flags,
    })
}

/// Turns the carrier of the tap behind `tap` on or off (TUNSETCARRIER): the namespace sees its
/// interface go down or come back up.
pub fn set_carrier(tap: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    sys::tun_set_carrier(tap, on)
}

fn iff_error(name: &str, e: &io::Error) -> TapError {
    tap_error(
        format!("cannot create tap interface {name}"),
        e,
        "TUNSETIFF failed".into(),
    )
}

fn open_tun(name: &str) -> Result<OwnedFd, TapError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN)
        .map_err(|e| tap_error(format!("cannot open {TUN} for {name}"), &e, tun_hint(&e)))?;
    Ok(OwnedFd::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_request_layout() {
        let m = rename_request(7, b"a\xff0");
        // 16 (nlmsghdr) + 16 (ifinfomsg) + 4 + 4 bytes of name and NUL = 40.
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), libc::RTM_NEWLINK);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(m[32..34].try_into().unwrap()), 8);
        assert_eq!(
            u16::from_ne_bytes(m[34..36].try_into().unwrap()),
            libc::IFLA_IFNAME
        );
        assert_eq!(&m[36..40], b"a\xff0\0");
        assert_eq!(rename_request(1, b"abcd").len(), 16 + 16 + 12);
    }

    #[test]
    fn acknowledgements() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(0));
        ack[16..20].copy_from_slice(&(-libc::EINVAL).to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(libc::EINVAL));
        assert_eq!(ack_errno(&[0; 8]), None);
    }
}
