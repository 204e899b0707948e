//! The tap handover between two vdens-fast ends of a datagram `ptp://` link, as rules free of
//! I/O: the messages, what each one leads to in either role, which descriptor a peer may hand
//! over, and which events end a handover. The loop (`engine::uring::node`) does the sockets,
//! the descriptor passing and the writes.
//!
//! Once the two ends paired their second sockets (`core::pair`: the first opener F probed
//! with a nonce, the second opener S echoed it), S connects to F's unix seqpacket socket at
//! `PATH+fast3` and both check that the other runs as the same user (SO_PEERCRED). Then:
//!
//! 1. S → F `Ask(nonce)`: the nonce S echoed; no descriptor.
//! 2. F → S `Give(nonce)` and F's tap descriptor, only when the nonce is the one of F's
//!    current pairing (which ties the connection to the peer F verified on the ptp link).
//! 3. S → F `Take` and S's tap descriptor, once F's passed [`tap_ok`] (S learnt that the
//!    listener knows the nonce: it is F).
//!
//! From then on each end reads its own tap and writes its frames, whole with their virtio-net
//! header, into the other's tap (two copies per frame, as a `tap://` link), and tells the
//! other now and then what it wrote there (`Count`: the receiver's counters would not see
//! those frames otherwise); the connection stays open and is watched: its end ([`conn_lost`]) or a write that says the peer's tap is
//! gone ([`write_lost`]) ends the handover, and the link falls back to its socket. Anything
//! else (a wrong nonce, a message out of turn, a descriptor too many or of the wrong kind)
//! ends the connection without a handover.
//!
//! The messages' bytes are `wire::handover`'s.

use crate::wire::handover::{Msg, Tally};

/// Where one end's handover connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// F: accepted, waiting for S's `Ask`.
    AwaitAsk,
    /// S: connected, `Ask` with this nonce sent.
    AwaitGive(u32),
    /// F: `Give` sent, waiting for S's `Take`.
    AwaitTake,
    /// The peer's tap is ours to write to (F: S's; S: F's), or (S after `Take`) both.
    Up,
}

/// One message as it arrived: what it says (None: no message at all, or one that did not
/// parse or was cut), how many descriptors came with it, and whether the kernel had to cut
/// the control data (MSG_CTRUNC: descriptors were lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrived {
    pub msg: Option<Msg>,
    pub fds: usize,
    pub ctrunc: bool,
}

/// What an end does with a message ([`on_message`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Closes the connection (and every descriptor that came): no handover.
    Refuse,
    /// F: answers `Give(nonce)` with its own tap descriptor, then waits for `Take`.
    Give(u32),
    /// S: the descriptor that came is F's tap: once it passes [`tap_ok`], S writes to it,
    /// and answers `Take` with its own tap descriptor.
    TakeAndAnswer,
    /// F: the descriptor that came is S's tap: once it passes [`tap_ok`], F writes to it.
    Take,
    /// Up: the peer wrote these frames into this end's tap (counted as received from the
    /// link and delivered to the tap).
    Count(Tally),
}

/// What a message leads to, for an end in `phase`; `current`: F's pairing nonce now (the
/// one its latest PROBE carried), None when F is not paired or joined.
pub fn on_message(phase: Phase, a: Arrived, current: Option<u32>) -> Act {
    if a.ctrunc {
        return Act::Refuse;
    }
    match (phase, a.msg, a.fds) {
        (Phase::AwaitAsk, Some(Msg::Ask(n)), 0) if current == Some(n) => Act::Give(n),
        (Phase::AwaitGive(n), Some(Msg::Give(m)), 1) if n == m => Act::TakeAndAnswer,
        (Phase::AwaitTake, Some(Msg::Take), 1) => Act::Take,
        (Phase::Up, Some(Msg::Count(t)), 0) => Act::Count(t),
        _ => Act::Refuse,
    }
}

/// Whether a connection's peer may take part: it runs as our effective user.
pub fn same_user(peer_uid: Option<u32>, euid: u32) -> bool {
    peer_uid == Some(euid)
}

/// What `fstat` and the tun ioctls say about a descriptor a peer passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunInfo {
    /// A character device, with this (major, minor).
    pub chr: Option<(u32, u32)>,
    /// TUNGETIFF's flags (None: the ioctl failed: not a tun, or not attached).
    pub flags: Option<u16>,
    /// TUNGETVNETHDRSZ (None: it failed).
    pub vnet_hdr: Option<i32>,
}

/// /dev/net/tun.
pub const TUN_DEV: (u32, u32) = (10, 200);
pub const IFF_TUN: u16 = 0x0001;
pub const IFF_TAP: u16 = 0x0002;
pub const IFF_VNET_HDR: u16 = 0x4000;

/// Why a passed descriptor is not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadTap {
    NotTunDevice,
    NotAttached,
    NotTap,
    NoVnetHdr,
    OtherHeaderSize,
}

/// Whether a passed descriptor is a tap this end may write whole frames to: /dev/net/tun,
/// attached to a tap (not a tun) with a virtio-net header of `our_hdr` bytes.
pub fn tap_ok(t: TunInfo, our_hdr: usize) -> Result<(), BadTap> {
    if t.chr != Some(TUN_DEV) {
        return Err(BadTap::NotTunDevice);
    }
    let Some(f) = t.flags else {
        return Err(BadTap::NotAttached);
    };
    if f & IFF_TAP == 0 || f & IFF_TUN != 0 {
        return Err(BadTap::NotTap);
    }
    if f & IFF_VNET_HDR == 0 {
        return Err(BadTap::NoVnetHdr);
    }
    if t.vnet_hdr.and_then(|h| usize::try_from(h).ok()) != Some(our_hdr) {
        return Err(BadTap::OtherHeaderSize);
    }
    Ok(())
}

/// Whether a poll on the connection that completed with `res` (revents, or -errno) ends it:
/// an error, a hang-up (POLLHUP, POLLRDHUP), or a descriptor gone. POLLIN alone: a message
/// to read. A cancelled poll ends nothing (it is armed again, or the node stops).
pub fn conn_lost(res: i32) -> bool {
    if res < 0 {
        return res != -libc::ECANCELED;
    }
    let ev = res as i16;
    ev & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Whether a write into the peer's tap that failed with `errno` says that its device is gone
/// (the tap was detached: EBADFD; no such device): the handover ends. A tap that is merely
/// down (EIO), or a frame the kernel refused (EINVAL), drops that frame only.
pub fn write_lost(errno: i32) -> bool {
    matches!(errno, libc::EBADFD | libc::ENODEV | libc::ENXIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(msg: Option<Msg>, fds: usize) -> Arrived {
        Arrived {
            msg,
            fds,
            ctrunc: false,
        }
    }

    #[test]
    fn the_first_opener_gives_only_for_its_current_nonce() {
        let ask = |n| got(Some(Msg::Ask(n)), 0);
        assert_eq!(on_message(Phase::AwaitAsk, ask(9), Some(9)), Act::Give(9));
        assert_eq!(on_message(Phase::AwaitAsk, ask(8), Some(9)), Act::Refuse);
        assert_eq!(on_message(Phase::AwaitAsk, ask(9), None), Act::Refuse);
        // An Ask with a descriptor, or a cut one, is refused.
        assert_eq!(
            on_message(Phase::AwaitAsk, got(Some(Msg::Ask(9)), 1), Some(9)),
            Act::Refuse
        );
        let cut = Arrived {
            msg: Some(Msg::Ask(9)),
            fds: 0,
            ctrunc: true,
        };
        assert_eq!(on_message(Phase::AwaitAsk, cut, Some(9)), Act::Refuse);
    }

    #[test]
    fn each_step_takes_exactly_one_descriptor() {
        assert_eq!(
            on_message(Phase::AwaitGive(4), got(Some(Msg::Give(4)), 1), None),
            Act::TakeAndAnswer
        );
        assert_eq!(
            on_message(Phase::AwaitGive(4), got(Some(Msg::Give(5)), 1), None),
            Act::Refuse
        );
        for n in [0, 2, 3] {
            assert_eq!(
                on_message(Phase::AwaitGive(4), got(Some(Msg::Give(4)), n), None),
                Act::Refuse
            );
            assert_eq!(
                on_message(Phase::AwaitTake, got(Some(Msg::Take), n), Some(1)),
                Act::Refuse
            );
        }
        assert_eq!(
            on_message(Phase::AwaitTake, got(Some(Msg::Take), 1), Some(1)),
            Act::Take
        );
        let cut = Arrived {
            msg: Some(Msg::Take),
            fds: 1,
            ctrunc: true,
        };
        assert_eq!(on_message(Phase::AwaitTake, cut, Some(1)), Act::Refuse);
    }

    #[test]
    fn messages_out_of_turn_are_refused() {
        let t = Tally {
            frames: 1,
            bytes: 60,
            ..Tally::default()
        };
        for phase in [Phase::AwaitAsk, Phase::AwaitGive(1), Phase::AwaitTake, Phase::Up] {
            for m in [
                None,
                Some(Msg::Ask(1)),
                Some(Msg::Give(1)),
                Some(Msg::Take),
                Some(Msg::Count(t)),
            ] {
                for fds in 0..2 {
                    let act = on_message(phase, got(m, fds), Some(1));
                    let expected = match (phase, m, fds) {
                        (Phase::AwaitAsk, Some(Msg::Ask(1)), 0) => Act::Give(1),
                        (Phase::AwaitGive(1), Some(Msg::Give(1)), 1) => Act::TakeAndAnswer,
                        (Phase::AwaitTake, Some(Msg::Take), 1) => Act::Take,
                        (Phase::Up, Some(Msg::Count(t)), 0) => Act::Count(t),
                        _ => Act::Refuse,
                    };
                    assert_eq!(act, expected, "{phase:?} {m:?} {fds}");
                }
            }
        }
    }

    #[test]
    fn only_the_same_user_takes_part() {
        assert!(same_user(Some(1000), 1000));
        assert!(!same_user(Some(0), 1000));
        assert!(!same_user(Some(1000), 0));
        assert!(!same_user(None, 0));
    }

    #[test]
    fn only_a_tap_with_our_header_is_taken() {
        let good = TunInfo {
            chr: Some(TUN_DEV),
            flags: Some(IFF_TAP | IFF_VNET_HDR | 0x1000),
            vnet_hdr: Some(10),
        };
        assert_eq!(tap_ok(good, 10), Ok(()));
        assert_eq!(tap_ok(good, 12), Err(BadTap::OtherHeaderSize));
        let t = |f: fn(&mut TunInfo)| {
            let mut x = good;
            f(&mut x);
            tap_ok(x, 10)
        };
        assert_eq!(t(|x| x.chr = None), Err(BadTap::NotTunDevice));
        assert_eq!(t(|x| x.chr = Some((1, 3))), Err(BadTap::NotTunDevice));
        assert_eq!(t(|x| x.flags = None), Err(BadTap::NotAttached));
        assert_eq!(t(|x| x.flags = Some(IFF_TUN | IFF_VNET_HDR)), Err(BadTap::NotTap));
        assert_eq!(
            t(|x| x.flags = Some(IFF_TUN | IFF_TAP | IFF_VNET_HDR)),
            Err(BadTap::NotTap)
        );
        assert_eq!(t(|x| x.flags = Some(IFF_TAP)), Err(BadTap::NoVnetHdr));
        assert_eq!(t(|x| x.vnet_hdr = None), Err(BadTap::OtherHeaderSize));
        assert_eq!(t(|x| x.vnet_hdr = Some(-1)), Err(BadTap::OtherHeaderSize));
    }

    #[test]
    fn a_hang_up_or_an_error_ends_the_connection() {
        assert!(!conn_lost(libc::POLLIN as i32));
        assert!(conn_lost((libc::POLLIN | libc::POLLRDHUP) as i32));
        assert!(conn_lost(libc::POLLHUP as i32));
        assert!(conn_lost(libc::POLLERR as i32));
        assert!(conn_lost(libc::POLLNVAL as i32));
        assert!(conn_lost(-libc::EBADF));
        assert!(!conn_lost(-libc::ECANCELED));
    }

    #[test]
    fn only_a_gone_device_ends_the_handover() {
        assert!(write_lost(libc::EBADFD));
        assert!(write_lost(libc::ENODEV));
        assert!(!write_lost(libc::EIO));
        assert!(!write_lost(libc::EINVAL));
        assert!(!write_lost(libc::EAGAIN));
    }
}
