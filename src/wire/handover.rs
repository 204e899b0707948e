//! The messages of the tap handover between two vdens-fast ends of a datagram `ptp://` link,
//! on their unix seqpacket connection at `PATH+fast3` (the exchange and what each message
//! leads to are `engine::core::handover`'s): `VFHO`, a version byte (1), a kind byte, then
//! either a nonce (`Ask`, `Give`, `Take`: [`MSG_LEN`] bytes) or the counts of a `Count`
//! ([`COUNT_LEN`] bytes), big endian. A tap descriptor travels beside `Give` and `Take` as
//! SCM_RIGHTS. Pure: no I/O.

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

#[cfg(test)]
mod tests {
    use super::*;

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
        let bytes = crate::wire::test_bytes(0x1234_5678, (0..64).sum());
        let mut at = 0;
        for len in 0..64 {
            let _ = Msg::parse(&bytes[at..at + len]);
            at += len;
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
}
