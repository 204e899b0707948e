//! `tap://NAME`: a host tap interface, opened or created (libvdeplug_tap): IFF_TAP|IFF_NO_PI,
//! one raw Ethernet frame per read/write. An empty name lets the kernel pick `tapN`.
//!
//! Opened with `offload` (vdens-fast, for a port whose own tap has offloads): also IFF_VNET_HDR
//! and the same header size and offloads as the port's tap (`crate::tap`), so that super-frames
//! and partial checksums cross between the two taps whole. A kernel without the header gets a
//! plain tap.

use super::{Framing, Link, OpenError};
use std::os::fd::{AsFd, OwnedFd};

pub fn open(vnl: &str, name: &str, offload: bool) -> Result<Link, OpenError> {
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
    let vnet = offload
        && match crate::sys::tun_set_iff_tap_vnet(fd.as_fd(), name) {
            Ok(()) => true,
            // No virtio-net header here: a plain tap (TUNSETIFF left the descriptor unattached).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
            Err(e) => return Err(iff_error(vnl, name, e)),
        };
    if vnet {
        let mut link = Link::single(vnl, Framing::Datagram, fd);
        let fd = link.rx.as_ref().expect("single").as_fd();
        link.offload = crate::tap::configure_offload(fd, name).map_err(|e| {
            let err = std::io::Error::from_raw_os_error(e.errno.unwrap_or(libc::EIO));
            OpenError::io(vnl, "setting the tap's virtio-net header", err, e.hint)
        })?;
        return Ok(link);
    }
    crate::sys::tun_set_iff_tap(fd.as_fd(), name).map_err(|e| iff_error(vnl, name, e))?;
    Ok(Link::single(vnl, Framing::Datagram, fd))
}

fn iff_error(vnl: &str, name: &str, e: std::io::Error) -> OpenError {
    let hint = match e.raw_os_error() {
            Some(libc::EPERM) => format!(
                "creating a tap needs CAP_NET_ADMIN; or create it first: ip tuntap add {name} mode tap user $USER"
            ),
            Some(libc::EBUSY) => format!("{name} is already attached to another process"),
            Some(libc::EINVAL) => format!("{name} exists but is not a tap interface"),
            _ => format!("attaching to tap interface '{name}'"),
        };
    OpenError::io(vnl, "attaching the tap interface", e, Some(hint))
}
