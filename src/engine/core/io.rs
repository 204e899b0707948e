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
        libc::EINTR => SendFault::Interrupted,
        libc::ENOBUFS => SendFault::NoBuffer,
        libc::ENOENT | libc::ECONNREFUSED | libc::ENOTCONN | libc::ECONNRESET | libc::EPIPE => {
            SendFault::PeerGone
        }
        _ => SendFault::Failed,
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
    }
}
