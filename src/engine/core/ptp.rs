//! The seqpacket ptp end's rules (`ptp://PATH[seqpacket]`, both roles), for both node loops:
//! what a new connection on the listening socket gets, and what a hang-up of the peer leads
//! to. The decisions are pure ([`arrival`]); [`after_hangup`] applies the hang-up rule with
//! the transport's [`PtpHost`] (which does the connecting and listening) and says it in one
//! line, so that both loops say the same.

use crate::transport::{PtpHost, Reconnected};
use std::os::fd::OwnedFd;
use std::time::Duration;

/// The node's peer endpoint, as a new connection finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// No peer attached.
    Absent,
    /// A peer attached and still connected.
    Attached,
    /// A peer attached that has hung up, its end of file not yet handled (frames may still
    /// wait before it).
    HungUp,
}

/// What a connection accepted on the listening socket gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Ack 0 and attach it as the peer.
    Accept,
    /// Finish the peer that hung up first (its frames, its hang-up), then ack and attach the
    /// new one: a peer that hung up just before the next came is not a reason to refuse it.
    AfterHangup,
    /// A peer is attached and connected: hold the new connection for at most [`HOLD`], and
    /// refuse it then unless the attached peer hung up meanwhile (then as `AfterHangup`). A
    /// peer killed with SIGKILL while its connection was in io_uring operations keeps its
    /// socket until its ring is torn down, a few milliseconds after its process is gone: its
    /// replacement, started at once, must not be refused for that. A loop that cannot wait
    /// refuses at once.
    Hold,
    /// Ack [`libc::EISCONN`] and close it: a peer is attached (as master does).
    Refuse,
}

/// The ack byte that refuses a connection while a peer is attached.
pub const REFUSE_ACK: u8 = libc::EISCONN as u8;

/// How long a connection arriving while a peer is attached waits for that peer's hang-up.
pub const HOLD: Duration = Duration::from_millis(500);

/// What a new connection gets, given the peer and whether one is already waiting for the
/// hung-up peer to be finished (only one waits; later ones are refused).
pub fn arrival(peer: Peer, waiting: bool) -> Arrival {
    match (peer, waiting) {
        (_, true) => Arrival::Refuse,
        (Peer::Attached, false) => Arrival::Hold,
        (Peer::HungUp, false) => Arrival::AfterHangup,
        (Peer::Absent, false) => Arrival::Accept,
    }
}

/// What the node does after its peer hung up (the peer endpoint is already detached).
#[derive(Debug)]
pub enum AfterHangup {
    /// The listening end: wait for the next peer on the listening socket.
    Wait,
    /// The connecting end found a listener again: attach this peer.
    Attach(OwnedFd),
    /// The connecting end found PATH free and listens there now: watch the listening socket.
    Listen,
    /// Neither worked: the link stays down (frames to it are dropped).
    Down,
}

/// The peer hung up: a listener waits for the next; a connecting end connects again or
/// becomes the listener (see [`PtpHost::reconnect`], which may block for a bounded time, on
/// either loop alike). Says what happened in one line.
pub fn after_hangup(h: &mut PtpHost) -> AfterHangup {
    if h.listener().is_some() {
        crate::diag!(
            "{}: the ptp peer hung up; waiting for the next one on {}",
            h.vnl,
            h.path.display()
        );
        return AfterHangup::Wait;
    }
    match h.reconnect() {
        Ok(Reconnected::Peer(fd)) => {
            crate::diag!(
                "{}: the ptp listener hung up; connected again to {}",
                h.vnl,
                h.path.display()
            );
            AfterHangup::Attach(fd)
        }
        Ok(Reconnected::Listening) => {
            crate::diag!(
                "{}: the ptp listener went away; now listening on {} for the next peer",
                h.vnl,
                h.path.display()
            );
            AfterHangup::Listen
        }
        Err(e) => {
            crate::diag!("{e} (the ptp link stays down; frames to it are dropped)");
            AfterHangup::Down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals() {
        assert_eq!(arrival(Peer::Absent, false), Arrival::Accept);
        assert_eq!(arrival(Peer::Attached, false), Arrival::Hold);
        assert_eq!(arrival(Peer::HungUp, false), Arrival::AfterHangup);
        // One waits for the hung-up peer to be finished; the next is refused.
        for p in [Peer::Absent, Peer::Attached, Peer::HungUp] {
            assert_eq!(arrival(p, true), Arrival::Refuse);
        }
        assert_eq!(REFUSE_ACK as i32, libc::EISCONN);
    }
}
