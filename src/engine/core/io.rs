//! What an errno from a receive or a send means for the direction that got it, decided once
//! for every driver (io_uring completions carry `-errno`, epoll's syscalls return it).

/// Why a receive brought no frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxEnd {
    /// End of file (a tap or stream closed, an empty message on a seqpacket socket).
    Eof,
    /// The receive failed with this errno.
    Failed(i32),
}

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

/// How a destination holds back frames it cannot take now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backpressure {
    /// Keep the frame and send it when the destination has room: a port's cable, whose source
    /// then stops reading so that the kernel queue behind it pushes back.
    Wait,
    /// Drop it: an endpoint of a switch, hub or cable node, where one slow destination must
    /// not stall the frames for every other one (as vde_switch does).
    Drop,
}

/// What becomes of a frame whose send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it and send it again (at once when interrupted, after a wait when blocked).
    Retry,
    /// Count it as dropped for this reason and let it go.
    Drop(crate::engine::stats::DropReason),
}

/// The one policy for a failed send, by the destination's backpressure.
pub fn send_verdict(errno: i32, bp: Backpressure) -> Verdict {
    use crate::engine::stats::DropReason;
    match (classify_send_error(errno), bp) {
        (SendFault::Interrupted, _) | (SendFault::WouldBlock, Backpressure::Wait) => Verdict::Retry,
        (SendFault::WouldBlock, Backpressure::Drop) | (SendFault::NoBuffer, _) => {
            Verdict::Drop(DropReason::NoBuffer)
        }
        (SendFault::PeerGone | SendFault::Failed, _) => Verdict::Drop(DropReason::SendError),
    }
}

/// Why a frame given one send only (a tap write, a stream buffer) is dropped when that send
/// failed: there is no second try, so even an interrupted one counts, as NoBuffer.
pub fn single_send_drop(errno: i32) -> crate::engine::stats::DropReason {
    match send_verdict(errno, Backpressure::Drop) {
        Verdict::Drop(why) => why,
        Verdict::Retry => crate::engine::stats::DropReason::NoBuffer,
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
    fn send_verdicts_by_backpressure() {
        use crate::engine::stats::DropReason::*;
        use Backpressure::*;
        assert_eq!(send_verdict(libc::EAGAIN, Wait), Verdict::Retry);
        assert_eq!(send_verdict(libc::EAGAIN, Drop), Verdict::Drop(NoBuffer));
        assert_eq!(send_verdict(libc::EINTR, Drop), Verdict::Retry);
        assert_eq!(send_verdict(libc::ENOBUFS, Wait), Verdict::Drop(NoBuffer));
        assert_eq!(send_verdict(libc::ECONNREFUSED, Wait), Verdict::Drop(SendError));
        assert_eq!(send_verdict(libc::EMSGSIZE, Drop), Verdict::Drop(SendError));
    }
}
