//! Tap interfaces inside the namespace.

use super::NsError;
use crate::sys;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

const TUN: &str = "/dev/net/tun";

fn tun_hint(err: &std::io::Error) -> String {
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

/// Opens the tap `name` (IFF_TAP | IFF_NO_PI) in the current network namespace.
pub fn open_tap(name: &str) -> Result<OwnedFd, NsError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN)
        .map_err(|e| NsError::new(&format!("cannot open {TUN} for {name}"), &e, Some(tun_hint(&e))))?;
    let fd = OwnedFd::from(f);
    sys::tun_set_iff_tap(fd.as_fd(), name).map_err(|e| {
        NsError::new(
            &format!("cannot create tap interface {name}"),
            &e,
            Some("TUNSETIFF failed".into()),
        )
    })?;
    Ok(fd)
}
