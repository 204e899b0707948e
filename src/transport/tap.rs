//! `tap://NAME`: a host tap interface, opened or created (libvdeplug_tap): IFF_TAP|IFF_NO_PI,
//! one raw Ethernet frame per read/write. An empty name lets the kernel pick `tapN`.

use super::{Framing, Link, OpenError};
use std::os::fd::{AsFd, OwnedFd};

pub fn open(vnl: &str, name: &str) -> Result<Link, OpenError> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| {
            OpenError::io(
                vnl,
                "opening /dev/net/tun",
                e,
                Some("the tun module must be loaded and /dev/net/tun readable and writable".into()),
            )
        })?;
    let fd: OwnedFd = tun.into();
    crate::sys::tun_set_iff_tap(fd.as_fd(), name).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) => format!(
                "creating a tap needs CAP_NET_ADMIN; or create it first: ip tuntap add {name} mode tap user $USER"
            ),
            Some(libc::EBUSY) => format!("{name} is already attached to another process"),
            Some(libc::EINVAL) => format!("{name} exists but is not a tap interface"),
            _ => format!("attaching to tap interface '{name}'"),
        };
        OpenError::io(vnl, "attaching the tap interface", e, Some(hint))
    })?;
    Ok(Link::single(vnl, Framing::Datagram, fd))
}
