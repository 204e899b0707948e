//! The control connections of vde:// links: a switch that closes one has let the interface go,
//! so the interface loses its carrier and the namespace sees it down.

use crate::tap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// One vde:// link's control connection.
struct Conn {
    /// The VNL, as messages name it.
    vnl: String,
    /// The interface wired to it.
    ifname: String,
    ctl: OwnedFd,
    /// A second descriptor of the interface's tap, whose carrier goes when the switch does.
    tap: Option<OwnedFd>,
}

/// The control connections to watch while the command runs.
#[derive(Default)]
pub struct SwitchWatch {
    conns: Vec<Conn>,
}

impl SwitchWatch {
    /// Watches `ctl`, the control connection of `vnl`, wired to interface `ifname` on `tap`.
    pub fn add(&mut self, vnl: String, ifname: String, ctl: OwnedFd, tap: &OwnedFd) {
        self.conns.push(Conn {
            vnl,
            ifname,
            ctl,
            tap: tap.try_clone().ok(),
        });
    }

    /// The connections to poll, in order: [`SwitchWatch::on_ready`] takes an index of this list.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.conns.iter().map(|c| c.ctl.as_fd()).collect()
    }

    /// Connection `i` became readable or hung up: says whether to keep watching it. Whatever
    /// the switch sends is read and ignored; at its end (or an error) the interface is
    /// disconnected and loses its carrier.
    pub fn on_ready(&self, i: usize) -> bool {
        let c = &self.conns[i];
        let mut buf = [0u8; 256];
        match nix::unistd::read(&c.ctl, &mut buf) {
            Ok(n) if n > 0 => true,
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => true,
            _ => {
                eprintln!(
                    "vdens-fast: {}: the switch closed the control connection; {} is disconnected",
                    c.vnl, c.ifname
                );
                // The namespace sees it too: the interface loses its carrier.
                if let Some(t) = &c.tap {
                    let _ = tap::set_carrier(t.as_fd(), false);
                }
                false
            }
        }
    }
}
