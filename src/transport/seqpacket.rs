//! `seqpacket://FD`: an inherited socket descriptor carrying one frame per packet
//! (libvdeplug_seqpacket). The descriptor is duplicated (close-on-exec) rather than adopted:
//! the number came from outside, so nothing proves no other owner will close it.

use super::{Framing, Link, OpenError};
use nix::sys::socket::{getsockopt, sockopt, SockType};

pub fn open(vnl: &str, fd: i32) -> Result<Link, OpenError> {
    let owned = crate::sys::dup_inherited(fd).map_err(|e| {
        OpenError::io(
            vnl,
            "duplicating the inherited descriptor",
            e,
            Some(format!("descriptor {fd} must be open in this process")),
        )
    })?;
    match getsockopt(&owned, sockopt::SockType) {
        Ok(SockType::SeqPacket) | Ok(SockType::Datagram) => {}
        Ok(t) => return Err(OpenError::protocol(
            vnl,
            "checking the descriptor",
            format!("descriptor {fd} is a {t:?} socket"),
            Some(
                "seqpacket:// needs a SOCK_SEQPACKET (or SOCK_DGRAM) socket, which keeps frame boundaries"
                    .into(),
            ),
        )),
        Err(e) => {
            return Err(OpenError::io(
                vnl,
                "checking the descriptor",
                e.into(),
                Some(format!("descriptor {fd} must be a SOCK_SEQPACKET socket")),
            ))
        }
    }
    Ok(Link::single(vnl, Framing::Datagram, owned))
}
