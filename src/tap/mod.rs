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
    open_bytes(name.as_bytes(), name, offload)
}

/// [`open_with`] for a name given as bytes, UTF-8 or not: they go to the kernel as given, as
/// vdens hands it its `-i` prefix's bytes. Returns the tap, its offloads, and its name as
/// messages and statistics show it (not UTF-8: escaped as Rust does, `\xFF0`, so it stays one
/// line and the bytes can be told).
pub fn open_named(name: &std::ffi::OsStr, offload: bool) -> Result<(OwnedFd, TapOffload, String), TapError> {
    use std::os::unix::ffi::OsStrExt;
    let shown = match name.to_str() {
        Some(n) => n.to_string(),
        None => format!("{name:?}").trim_matches('"').to_string(),
    };
    let (fd, off) = open_bytes(name.as_bytes(), &shown, offload)?;
    Ok((fd, off, shown))
}

/// [`open_with`] of the name's bytes; `shown` is the name in messages.
fn open_bytes(name: &[u8], shown: &str, offload: bool) -> Result<(OwnedFd, TapOffload), TapError> {
    if offload {
        open_offload_bytes(name, shown)
    } else {
        Ok((open_bytes_plain(name, shown)?, TapOffload::NONE))
    }
}

/// Opens the tap `name` (IFF_TAP | IFF_NO_PI) in the current network namespace.
pub fn open(name: &str) -> Result<OwnedFd, TapError> {
    open_bytes_plain(name.as_bytes(), name)
}

fn open_bytes_plain(name: &[u8], shown: &str) -> Result<OwnedFd, TapError> {
    let fd = open_tun(shown)?;
    sys::tun_set_iff_tap(fd.as_fd(), name).map_err(|e| iff_error(shown, &e))?;
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
    open_offload_bytes(name.as_bytes(), name)
}

fn open_offload_bytes(name: &[u8], shown: &str) -> Result<(OwnedFd, TapOffload), TapError> {
    let fd = open_tun(shown)?;
    if let Err(e) = sys::tun_set_iff_tap_vnet(fd.as_fd(), name) {
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(iff_error(shown, &e));
        }
        drop(fd);
        return Ok((open_bytes_plain(name, shown)?, TapOffload::NONE));
    }
    let off = configure_offload(fd.as_fd(), shown)?;
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
