//! What an errno from a receive or a send means for the direction that got it, decided once
//! for every driver (io_uring completions carry `-errno`, epoll's syscalls return it).

/// What a failed receive means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxFault {
    /// The provided-buffer ring ran dry (ENOBUFS): the receive is re-armed once buffers come
    /// back; the kernel queue behind it holds the frames meanwhile.
    Starved,
    /// Nothing to read now, interrupted, or cancelled: read again on the next readiness.
    Again,
    /// A datagram socket reports the network's refusal of an earlier send (ICMP port or host
    /// unreachable on udp://, e.g. while the peer is not up yet). The socket clears the error
    /// once reported: the direction keeps receiving.
    Transient,
    /// The direction cannot receive any more (the message names the errno).
    Fatal,
}

/// Classifies a receive's errno.
pub fn classify_rx_error(errno: i32) -> RxFault {
    match errno {
        libc::ENOBUFS => RxFault::Starved,
        libc::EAGAIN | libc::EINTR | libc::ECANCELED => RxFault::Again,
        libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN | libc::ENETDOWN => {
            RxFault::Transient
        }
        _ => RxFault::Fatal,
    }
}

/// What a failed send means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFault {
    /// The destination's queue or our send buffer is full (EAGAIN): wait, keep the frame.
    WouldBlock,
    /// Interrupted before anything was sent: send again at once.
    Interrupted,
    /// No buffer memory (ENOBUFS): the frame is dropped as NoBuffer.
    NoBuffer,
    /// The peer is not there (yet, or any more): ENOENT or ECONNREFUSED to a path nobody
    /// listens on, ENOTCONN/ECONNRESET/EPIPE after it left. The frame is dropped as a send
    /// error; a link that can find its peer again may reconnect.
    PeerGone,
    /// Anything else: the frame is dropped as a send error.
    Failed,
}

/// Classifies a send's errno.
pub fn classify_send_error(errno: i32) -> SendFault {
    match errno {
        libc::EAGAIN => SendFault::WouldBlock,
        // ECANCELED: an io_uring chain link not run because an earlier one failed.
        libc::EINTR | libc::ECANCELED => SendFault::Interrupted,
        libc::ENOBUFS => SendFault::NoBuffer,
        libc::ENOENT | libc::ECONNREFUSED | libc::ENOTCONN | libc::ECONNRESET | libc::EPIPE => {
            SendFault::PeerGone
        }
        _ => SendFault::Failed,
    }
}

/// How a destination holds back frames it cannot take now. Either way a frame it refuses
/// (EAGAIN) is kept and sent again, in order, once it has room; they differ in how many may
/// wait ([`admit_to_queue`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backpressure {
    /// Every frame waits: a port's cable, whose source then stops reading so that the kernel
    /// queue behind it pushes back.
    Wait,
    /// At most [`DEST_QCAP`] frames wait, and none while the node's buffers run low: an
    /// endpoint of a switch, hub or cable node, where one slow destination must not hold the
    /// buffers every other one needs (a qdisc's limit: over it, a new frame is dropped).
    Bounded,
}

/// Frames a [`Backpressure::Bounded`] destination may have held once it is behind. A unix
/// datagram socket's own queue is short (`net.unix.max_dgram_qlen`, 10 by default, or a few
/// frames of send buffer): 64 more frames ride out a reader that is late by one burst (a 64 KiB
/// TCP super-frame is 46 frames at MSS 1448), while a dozen stalled clients still hold at most
/// 3/4 of a node's 1024 shared buffers; the buffer rule of [`admit_to_queue`] covers more.
pub const DEST_QCAP: usize = 64;

/// Whether a frame joins its destination's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Queue,
    /// Dropped and counted (NoBuffer) for the destination.
    Drop,
}

/// Whether one more frame joins the queue of a destination with backpressure `bp` that holds
/// `backlog` frames since it fell behind (0 while it takes what it is sent), when the frame's
/// buffer pool has `free` of its `pool` buffers free. A destination that is not behind takes
/// every frame (they go at the end of the loop's turn); one that is behind takes
/// [`DEST_QCAP`] at most, and none while less than a quarter of the pool is free.
pub fn admit_to_queue(bp: Backpressure, backlog: usize, free: usize, pool: usize) -> Admit {
    match bp {
        Backpressure::Bounded if backlog > 0 && (backlog >= DEST_QCAP || free * 4 < pool) => Admit::Drop,
        _ => Admit::Queue,
    }
}

/// What becomes of a frame whose send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it and send it again (at once when interrupted, after a wait when blocked).
    Retry,
    /// Count it as dropped for this reason and let it go.
    Drop(crate::engine::stats::DropReason),
}

/// The one policy for a failed send from a destination's queue.
pub fn send_verdict(errno: i32) -> Verdict {
    use crate::engine::stats::DropReason;
    match classify_send_error(errno) {
        SendFault::Interrupted | SendFault::WouldBlock => Verdict::Retry,
        SendFault::NoBuffer => Verdict::Drop(DropReason::NoBuffer),
        SendFault::PeerGone | SendFault::Failed => Verdict::Drop(DropReason::SendError),
    }
}

/// Why a frame given one send only (a tap write, a stream buffer) is dropped when that send
/// failed: there is no second try, so a full queue or an interrupted send counts as NoBuffer.
pub fn single_send_drop(errno: i32) -> crate::engine::stats::DropReason {
    use crate::engine::stats::DropReason;
    match send_verdict(errno) {
        Verdict::Drop(why) => why,
        Verdict::Retry => DropReason::NoBuffer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_errors() {
        assert_eq!(classify_rx_error(libc::ENOBUFS), RxFault::Starved);
        for e in [libc::EAGAIN, libc::EINTR, libc::ECANCELED] {
            assert_eq!(classify_rx_error(e), RxFault::Again);
        }
        assert_eq!(classify_rx_error(libc::ECONNREFUSED), RxFault::Transient);
        assert_eq!(classify_rx_error(libc::EHOSTUNREACH), RxFault::Transient);
        assert_eq!(classify_rx_error(libc::EBADF), RxFault::Fatal);
        assert_eq!(classify_rx_error(libc::EIO), RxFault::Fatal);
    }

    #[test]
    fn send_errors() {
        assert_eq!(classify_send_error(libc::EAGAIN), SendFault::WouldBlock);
        assert_eq!(classify_send_error(libc::EINTR), SendFault::Interrupted);
        assert_eq!(classify_send_error(libc::ENOBUFS), SendFault::NoBuffer);
        assert_eq!(classify_send_error(libc::ECONNREFUSED), SendFault::PeerGone);
        assert_eq!(classify_send_error(libc::ENOTCONN), SendFault::PeerGone);
        assert_eq!(classify_send_error(libc::EMSGSIZE), SendFault::Failed);
        assert_eq!(classify_send_error(libc::ECANCELED), SendFault::Interrupted);
    }

    #[test]
    fn send_verdicts() {
        use crate::engine::stats::DropReason::*;
        assert_eq!(send_verdict(libc::EAGAIN), Verdict::Retry);
        assert_eq!(send_verdict(libc::EINTR), Verdict::Retry);
        assert_eq!(send_verdict(libc::ECANCELED), Verdict::Retry);
        assert_eq!(send_verdict(libc::ENOBUFS), Verdict::Drop(NoBuffer));
        assert_eq!(send_verdict(libc::ECONNREFUSED), Verdict::Drop(SendError));
        assert_eq!(send_verdict(libc::EMSGSIZE), Verdict::Drop(SendError));
        assert_eq!(single_send_drop(libc::EAGAIN), NoBuffer);
        assert_eq!(single_send_drop(libc::EINTR), NoBuffer);
        assert_eq!(single_send_drop(libc::EPIPE), SendError);
    }

    #[test]
    fn a_port_queues_every_frame() {
        for (backlog, free) in [(0, 1024), (10_000, 0), (DEST_QCAP, 1024)] {
            assert_eq!(
                admit_to_queue(Backpressure::Wait, backlog, free, 1024),
                Admit::Queue
            );
        }
    }

    #[test]
    fn a_node_endpoint_waits_within_its_bound() {
        use Backpressure::Bounded;
        // Not behind: every frame of the turn goes, whatever the pool.
        assert_eq!(admit_to_queue(Bounded, 0, 0, 1024), Admit::Queue);
        // Behind: up to DEST_QCAP wait...
        assert_eq!(admit_to_queue(Bounded, 1, 1024, 1024), Admit::Queue);
        assert_eq!(admit_to_queue(Bounded, DEST_QCAP - 1, 256, 1024), Admit::Queue);
        // ...and no more.
        assert_eq!(admit_to_queue(Bounded, DEST_QCAP, 1024, 1024), Admit::Drop);
        assert_eq!(admit_to_queue(Bounded, 5 * DEST_QCAP, 1024, 1024), Admit::Drop);
        // Nothing more waits once less than a quarter of the frame's pool is free.
        assert_eq!(admit_to_queue(Bounded, 1, 255, 1024), Admit::Drop);
        assert_eq!(admit_to_queue(Bounded, 1, 15, 64), Admit::Drop);
        assert_eq!(admit_to_queue(Bounded, 1, 16, 64), Admit::Queue);
    }
}
