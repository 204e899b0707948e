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

/// Length of the exchange's messages: magic (4), version (1), kind (1), nonce (4, big endian).
pub const MSG_LEN: usize = 10;
/// Length of a `Count`: magic, version, kind, then frames (4), bytes (8), super-frames (4),
/// segments (4), big endian.
pub const COUNT_LEN: usize = 26;
/// The longest message.
pub const MAX_LEN: usize = COUNT_LEN;
const MAGIC: [u8; 4] = *b"VFHO";
const VERSION: u8 = 1;

/// A message on the handover connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// S → F: the nonce of the pairing S echoed.
    Ask(u32),
    /// F → S, with F's tap descriptor: the nonce S asked with.
    Give(u32),
    /// S → F, with S's tap descriptor.
    Take,
    /// Either way while up: frames written into the receiver's tap since the last `Count`.
    Count(Tally),
}

/// Frames written into the peer's tap (counted as the frames a super-frame stands for).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub frames: u32,
    pub bytes: u64,
    pub super_frames: u32,
    pub segments: u32,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        *self == Tally::default()
    }

    /// One write of `frames` frames (`bytes` bytes); a super-frame when `frames` > 1.
    pub fn add(&mut self, frames: u64, bytes: u64) {
        self.frames = self.frames.saturating_add(frames as u32);
        self.bytes = self.bytes.saturating_add(bytes);
        if frames > 1 {
            self.super_frames = self.super_frames.saturating_add(1);
            self.segments = self.segments.saturating_add(frames as u32);
        }
    }
}

impl Msg {
    /// The message's bytes in `b`; returns their length.
    pub fn write(self, b: &mut [u8; MAX_LEN]) -> usize {
        b[..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        let (kind, nonce) = match self {
            Msg::Ask(n) => (1, n),
            Msg::Give(n) => (2, n),
            Msg::Take => (3, 0),
            Msg::Count(t) => {
                b[5] = 4;
                b[6..10].copy_from_slice(&t.frames.to_be_bytes());
                b[10..18].copy_from_slice(&t.bytes.to_be_bytes());
                b[18..22].copy_from_slice(&t.super_frames.to_be_bytes());
                b[22..26].copy_from_slice(&t.segments.to_be_bytes());
                return COUNT_LEN;
            }
        };
        b[5] = kind;
        b[6..10].copy_from_slice(&nonce.to_be_bytes());
        MSG_LEN
    }

    /// The message `b` holds; None for anything else (any length, any bytes).
    pub fn parse(b: &[u8]) -> Option<Msg> {
        if b.len() < MSG_LEN || b[..4] != MAGIC || b[4] != VERSION {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if b[5] == 4 {
            if b.len() != COUNT_LEN {
                return None;
            }
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&b[10..18]);
            return Some(Msg::Count(Tally {
                frames: u32_at(6),
                bytes: u64::from_be_bytes(bytes),
                super_frames: u32_at(18),
                segments: u32_at(22),
            }));
        }
        if b.len() != MSG_LEN {
            return None;
        }
        match (b[5], u32_at(6)) {
            (1, n) => Some(Msg::Ask(n)),
            (2, n) => Some(Msg::Give(n)),
            (3, 0) => Some(Msg::Take),
            _ => None,
        }
    }
}

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
    fn messages_round_trip() {
        let t = Tally {
            frames: 46,
            bytes: 1 << 40,
            super_frames: 1,
            segments: 45,
        };
        for m in [
            Msg::Ask(0),
            Msg::Ask(u32::MAX),
            Msg::Give(7),
            Msg::Take,
            Msg::Count(t),
        ] {
            let mut b = [0u8; MAX_LEN];
            let n = m.write(&mut b);
            assert_eq!(Msg::parse(&b[..n]), Some(m));
        }
    }

    #[test]
    fn any_other_bytes_are_no_message() {
        let enc = |m: Msg| {
            let mut b = [0u8; MAX_LEN];
            let n = m.write(&mut b);
            b[..n].to_vec()
        };
        let ok: [u8; MSG_LEN] = enc(Msg::Ask(5)).try_into().unwrap();
        assert_eq!(Msg::parse(&[]), None);
        assert_eq!(Msg::parse(&ok[..MSG_LEN - 1]), None);
        let mut long = ok.to_vec();
        long.push(0);
        assert_eq!(Msg::parse(&long), None);
        for i in 0..6 {
            let mut b = ok;
            b[i] ^= 0x40;
            assert_eq!(Msg::parse(&b), None, "byte {i}");
        }
        let mut take = enc(Msg::Take);
        take[9] = 1;
        assert_eq!(Msg::parse(&take), None, "Take carries no nonce");
        let count = enc(Msg::Count(Tally::default()));
        assert_eq!(Msg::parse(&count[..MSG_LEN]), None, "a cut Count");
        let mut long = count.clone();
        long.push(0);
        assert_eq!(Msg::parse(&long), None);
        // Every short input, and pseudo-random ones, parse without panicking.
        let mut x = 0x1234_5678u32;
        for len in 0..64 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = Msg::parse(&b);
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
    fn a_tally_counts_super_frames_as_their_segments() {
        let mut t = Tally::default();
        assert!(t.is_empty());
        t.add(1, 60);
        t.add(45, 65_000);
        assert_eq!(
            t,
            Tally {
                frames: 46,
                bytes: 65_060,
                super_frames: 1,
                segments: 45
            }
        );
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
