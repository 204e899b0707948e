//! A port's descriptors made ready for the loop (non-blocking, checked), and what a link's
//! sends need from the system: reconnecting a ptp second opener, telling a full send buffer
//! from a full receiver queue.

use super::{EngineError, Port};
use crate::transport::{Framing, Reconnect, SendTo};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::UnixAddr;
use nix::sys::stat::{fstat, SFlag};
use std::os::fd::{AsFd, BorrowedFd};

pub use super::core::MAX_FRAME;

/// Reconnecting a direction's destination, at most every [`RECONNECT_EVERY`] while the peer is
/// away.
#[derive(Debug)]
pub struct Reconnector {
    how: Reconnect,
    last: Option<std::time::Instant>,
    /// Said once per outage: the peer went away.
    down: bool,
}

/// How often a send that failed for want of the peer tries to connect again.
pub const RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

impl Reconnector {
    pub fn new(how: Reconnect) -> Reconnector {
        Reconnector {
            how,
            last: None,
            down: false,
        }
    }

    /// After a send on `fd` failed with `errno`: true when the destination was connected
    /// again, so the frame is to be sent again; false to drop it as usual.
    pub fn after_failure(&mut self, fd: BorrowedFd<'_>, errno: i32, label: &str) -> bool {
        if !self.how.wanted(errno) {
            return false;
        }
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < RECONNECT_EVERY) {
            return false;
        }
        self.last = Some(now);
        match self.how.reconnect(fd) {
            Ok(true) => {
                crate::diag!("{label}: the peer is back: connected again");
                self.down = false;
                true
            }
            Ok(false) => false,
            Err(_) => {
                if !self.down {
                    crate::diag!("{label}: the peer went away; connecting again as soon as it is back");
                    self.down = true;
                }
                false
            }
        }
    }
}

pub(crate) fn is_socket(fd: BorrowedFd<'_>) -> Result<bool, nix::Error> {
    let st = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
}

pub(crate) fn is_dgram(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::SockType, SockType as T};
    matches!(getsockopt(&fd, SockType), Ok(T::Datagram))
}

/// After EAGAIN on an unconnected AF_UNIX datagram socket (a `SendTo` link): true when the
/// socket's own send buffer is what is full. It then polls writable again once the receiver
/// has taken enough, so waiting for POLLOUT is right. Otherwise the receiver's queue is full
/// (net.unix.max_dgram_qlen), which an unconnected sender is never woken for (it polls
/// writable all along), so the sender retries on a timer. A ptp:// first opener meets only the
/// first kind: its peer is connected to it, and the kernel does not limit a connected
/// receiver's queue for its own peer. Measured (vdens-fast first opener sending TCP to a
/// classic vdens over ptp://, iperf3 -R): the 1-ms timer for both kinds left the link idle
/// and moved 1.38 Gbit/s, 0.92x classic vdens to classic vdens.
pub(crate) fn send_buffer_full(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
    matches!(poll(&mut p, PollTimeout::ZERO), Ok(0))
}

pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), nix::Error> {
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok(())
}

use crate::engine::PortFault;

fn label(port: &Port) -> String {
    format!("{} ({})", port.name, port.link.vnl)
}

fn err(port: &Port, what: &'static str, e: nix::Error) -> EngineError {
    EngineError::Port(label(port), PortFault::Sys(what, e))
}

/// Makes the port's descriptors non-blocking (io_uring then polls them in the kernel instead
/// of handing blocking reads to io-wq threads; epoll needs it to drain until EAGAIN) and
/// checks that the port can be driven: a link with descriptors, addresses that can be sent
/// to, and a `tap://` link's header the size of the tap's.
pub fn prepare(port: &Port) -> Result<(), EngineError> {
    if port.link.offload.enabled() && port.link.offload.vnet_hdr != port.offload.vnet_hdr {
        return Err(EngineError::Port(
            label(port),
            PortFault::VnetHdr(port.link.offload.vnet_hdr, port.offload.vnet_hdr),
        ));
    }
    set_nonblocking(port.tap.as_fd()).map_err(|e| err(port, "cannot make the tap non-blocking", e))?;
    let link = &port.link;
    if link.framing == Framing::Null {
        return Ok(());
    }
    let (Some(rx), Some(tx)) = (link.rx_fd(), link.tx_fd()) else {
        return Err(EngineError::Port(label(port), PortFault::NoDescriptor));
    };
    let nonblocking = |fd| set_nonblocking(fd).map_err(|e| err(port, "cannot make the link non-blocking", e));
    nonblocking(rx)?;
    nonblocking(tx)?;
    let address = |path: &std::path::PathBuf| {
        UnixAddr::new(path.as_path())
            .map(|_| ())
            .map_err(|e| EngineError::Port(label(port), PortFault::BadDestination(path.clone(), e)))
    };
    if let Some(p) = &link.pair {
        nonblocking(p.fd.as_fd())?;
        address(&p.peer)?;
    }
    match &link.send_to {
        SendTo::Unix(path) if link.framing != Framing::Stream => address(path),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::send_buffer_full;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    /// Sends 1400-byte datagrams to `to` until EAGAIN (never more than `cap`).
    fn fill(s: &UnixDatagram, to: &std::path::Path, cap: usize) -> usize {
        s.set_nonblocking(true).unwrap();
        let frame = [0u8; 1400];
        for n in 0..cap {
            match s.send_to(&frame, to) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return n,
                Err(e) => panic!("send_to: {e}"),
            }
        }
        panic!("no EAGAIN after {cap} datagrams");
    }

    /// The two causes of EAGAIN on an unconnected AF_UNIX datagram sender, told apart.
    #[test]
    fn send_buffer_full_tells_own_buffer_from_peer_queue() {
        let d = crate::TestDir::new("port-sbf");
        // As on ptp://: the receiver is connected to the sender, so its queue is not limited
        // for it; the sender's own send buffer fills.
        let (a, b) = (d.0.join("a"), d.0.join("b"));
        let sender = UnixDatagram::bind(&a).unwrap();
        let receiver = UnixDatagram::bind(&b).unwrap();
        receiver.connect(&a).unwrap();
        assert!(!send_buffer_full(sender.as_fd()), "an empty socket is writable");
        fill(&sender, &b, 100_000);
        assert!(send_buffer_full(sender.as_fd()), "own send buffer full");
        // Draining the receiver frees the sender's buffer.
        receiver.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        while receiver.recv(&mut buf).is_ok() {}
        assert!(
            !send_buffer_full(sender.as_fd()),
            "writable again once the peer read"
        );

        // A receiver not connected to the sender, with a queue of 4 (whatever the system's
        // net.unix.max_dgram_qlen): its queue stops the sender, whose buffer is nearly empty.
        let (c, e) = (d.0.join("c"), d.0.join("e"));
        let sender2 = UnixDatagram::bind(&c).unwrap();
        let receiver2 = crate::sys::unix_dgram_with_qlen(4).expect("queue helper");
        let addr = nix::sys::socket::UnixAddr::new(&e).unwrap();
        nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&receiver2), &addr).unwrap();
        assert_eq!(
            fill(&sender2, &e, 100_000),
            5,
            "the kernel takes one more than the limit"
        );
        assert!(
            !send_buffer_full(sender2.as_fd()),
            "peer queue full, own buffer not"
        );
    }
}
