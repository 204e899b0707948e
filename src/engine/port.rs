//! What each engine needs to know about a port: per direction, where frames come from, how
//! they are delimited there, and how they leave. Both engines build the same plan, so they
//! treat every link kind the same way; a multi-port node (switch, hub) would replace the fixed
//! "other side" of a direction with a forwarding decision per frame at [`TxPlan`].

use super::stats::{LINK_TO_TAP, TAP_TO_LINK};
use super::{EngineError, Port};
use crate::transport::{Framing, Reconnect, SendTo};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::UnixAddr;
use nix::sys::stat::{fstat, SFlag};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

pub use super::core::MAX_FRAME;

/// How a direction receives.
#[derive(Clone, Copy, Debug)]
pub struct RxPlan {
    pub fd: RawFd,
    /// recv(2) family applies (multishot recv, recvmmsg); otherwise read(2).
    pub socket: bool,
    /// The bytes are a 2-byte-length-prefixed stream to reassemble.
    pub stream: bool,
    /// A zero-length read means end of file (everything but datagram sockets, where it is an
    /// empty datagram).
    pub eof_on_zero: bool,
}

/// How a direction sends.
#[derive(Clone, Debug)]
pub enum TxPlan {
    /// One frame per write/send on `fd` (tap, connected socket, tap:// device).
    Write { fd: RawFd, socket: bool },
    /// One frame per datagram to this address on an unconnected AF_UNIX datagram socket.
    SendTo { fd: RawFd, addr: UnixAddr },
    /// Length-prefixed frames on a byte stream.
    Stream { fd: RawFd },
    /// Nothing to send to (null://): count and drop.
    Discard,
}

#[derive(Clone, Debug)]
pub struct DirPlan {
    /// None when nothing ever arrives (link side of null://).
    pub rx: Option<RxPlan>,
    pub tx: TxPlan,
    /// How the destination is found again when its socket was replaced (a ptp second opener
    /// whose first opener restarted); [`Reconnect::Never`] for the rest.
    pub reconnect: Reconnect,
    /// A datagram ptp link's second socket (`wire::superframe`, `transport::PairSocket`):
    /// in both directions' plans; the worker sends on it (F2) or reads it (R2).
    pub pair: Option<PairPlan>,
}

/// A datagram ptp link's second socket, for the worker.
#[derive(Clone, Copy, Debug)]
pub struct PairPlan {
    pub fd: RawFd,
    /// Where the peer's pair socket is bound.
    pub peer: UnixAddr,
    /// F2 (the first opener's, sends) or R2 (the second opener's, receives).
    pub first: bool,
}

/// Reconnecting a direction's destination, at most every [`RECONNECT_EVERY`] while the peer is
/// away, for both port workers.
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
    /// Whether the destination is found again by path (a ptp second opener).
    pub fn active(&self) -> bool {
        !matches!(self.how, Reconnect::Never)
    }

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

/// After EAGAIN on an unconnected AF_UNIX datagram socket ([`TxPlan::SendTo`]): true when the
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
/// describes its two directions.
pub fn plan(port: &Port) -> Result<[DirPlan; 2], EngineError> {
    if port.link.offload.enabled() && port.link.offload.vnet_hdr != port.offload.vnet_hdr {
        return Err(EngineError::Port(
            label(port),
            PortFault::VnetHdr(port.link.offload.vnet_hdr, port.offload.vnet_hdr),
        ));
    }
    let tap = port.tap.as_fd();
    set_nonblocking(tap).map_err(|e| err(port, "cannot make the tap non-blocking", e))?;
    let tap_fd = tap.as_raw_fd();
    let link = &port.link;
    let mut dirs: [DirPlan; 2] = [
        DirPlan {
            rx: Some(RxPlan {
                fd: tap_fd,
                socket: false,
                stream: false,
                eof_on_zero: true,
            }),
            tx: TxPlan::Discard,
            reconnect: Reconnect::Never,
            pair: None,
        },
        DirPlan {
            rx: None,
            tx: TxPlan::Write {
                fd: tap_fd,
                socket: false,
            },
            reconnect: Reconnect::Never,
            pair: None,
        },
    ];
    if link.framing == Framing::Null {
        return Ok(dirs);
    }
    let (Some(rx), Some(tx)) = (link.rx_fd(), link.tx_fd()) else {
        return Err(EngineError::Port(label(port), PortFault::NoDescriptor));
    };
    set_nonblocking(rx).map_err(|e| err(port, "cannot make the link non-blocking", e))?;
    set_nonblocking(tx).map_err(|e| err(port, "cannot make the link non-blocking", e))?;
    let rx_sock = is_socket(rx).map_err(|e| err(port, "cannot inspect the link", e))?;
    let tx_sock = is_socket(tx).map_err(|e| err(port, "cannot inspect the link", e))?;
    let stream = link.framing == Framing::Stream;
    dirs[LINK_TO_TAP].rx = Some(RxPlan {
        fd: rx.as_raw_fd(),
        socket: rx_sock,
        stream,
        eof_on_zero: !(rx_sock && is_dgram(rx)),
    });
    dirs[TAP_TO_LINK].reconnect = link.reconnect();
    if let Some(p) = &link.pair {
        set_nonblocking(p.fd.as_fd()).map_err(|e| err(port, "cannot make the link non-blocking", e))?;
        let peer = UnixAddr::new(p.peer.as_path())
            .map_err(|e| EngineError::Port(label(port), PortFault::BadDestination(p.peer.clone(), e)))?;
        let pair = Some(PairPlan {
            fd: p.fd.as_raw_fd(),
            peer,
            first: p.first,
        });
        dirs[TAP_TO_LINK].pair = pair;
        dirs[LINK_TO_TAP].pair = pair;
    }
    dirs[TAP_TO_LINK].tx = match (&link.framing, &link.send_to) {
        (Framing::Stream, _) => TxPlan::Stream { fd: tx.as_raw_fd() },
        (_, SendTo::Unix(path)) => TxPlan::SendTo {
            fd: tx.as_raw_fd(),
            addr: UnixAddr::new(path.as_path())
                .map_err(|e| EngineError::Port(label(port), PortFault::BadDestination(path.clone(), e)))?,
        },
        _ => TxPlan::Write {
            fd: tx.as_raw_fd(),
            socket: tx_sock,
        },
    };
    Ok(dirs)
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
