//! One token type for every loop: what an io_uring completion's user_data or an epoll event's
//! data stands for. Encoded into the 64 bits both carry, decoded back with no sentinel values:
//! an unknown operation decodes to `None`.

/// What an operation (io_uring) or a readiness (epoll) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Frames (or stream bytes) received on an endpoint; on epoll, its input is readable.
    Rx = 1,
    /// A send or write completed; on epoll, the output is writable again.
    Tx = 2,
    /// The control thread's eventfd.
    Wake = 3,
    /// An AsyncCancel completed.
    Cancel = 4,
    /// A direction's wait after EAGAIN (POLLOUT or the retry timer) ended.
    TxWait = 5,
    /// A switch's or hub's control socket has a client to accept.
    Listen = 6,
    /// A client's control connection is readable before it joined (its request).
    Pending = 7,
    /// A joined client's control connection is readable (it left, or sent something).
    Ctl = 8,
    /// A read of a stream endpoint (`=cmd`) completed.
    StreamRead = 9,
    /// A write to a stream endpoint completed.
    StreamWrite = 10,
    /// A read of a tap with a virtio-net header completed.
    VnetRead = 11,
    /// A seqpacket ptp listener has a peer to accept.
    PtpListen = 12,
    /// Frames received on a direction's second socket (a datagram ptp second opener's R2,
    /// `wire::superframe`), into the same buffers as its `Rx`.
    RxPair = 13,
}

impl Op {
    const ALL: [Op; 13] = [
        Op::Rx,
        Op::Tx,
        Op::Wake,
        Op::Cancel,
        Op::TxWait,
        Op::Listen,
        Op::Pending,
        Op::Ctl,
        Op::StreamRead,
        Op::StreamWrite,
        Op::VnetRead,
        Op::PtpListen,
        Op::RxPair,
    ];

    fn from_bits(b: u64) -> Option<Op> {
        Op::ALL.iter().copied().find(|o| *o as u64 == b)
    }
}

/// Largest endpoint (or direction) index a token carries: 12 bits.
pub const MAX_ENDPOINT: usize = 0xfff;

/// An operation and what it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub op: Op,
    /// Endpoint of a node (at most [`MAX_ENDPOINT`]).
    pub endpoint: u16,
    /// The endpoint's generation, so a completion for an endpoint that left (and whose index
    /// was taken again) is recognised.
    pub gen: u16,
    /// A buffer id, a chain slot, or a frame id.
    pub slot: u16,
    /// The length a send was asked for (bytes modulo 2^16).
    pub len: u16,
}

impl Token {
    /// A token for `op` on endpoint (or direction) `endpoint`, everything else 0.
    #[inline]
    pub fn new(op: Op, endpoint: usize) -> Token {
        debug_assert!(
            endpoint <= MAX_ENDPOINT,
            "endpoint index {endpoint} too large for a token"
        );
        Token {
            op,
            endpoint: (endpoint & MAX_ENDPOINT) as u16,
            gen: 0,
            slot: 0,
            len: 0,
        }
    }

    #[inline]
    pub fn gen(self, gen: u16) -> Token {
        Token { gen, ..self }
    }

    #[inline]
    pub fn slot(self, slot: u16) -> Token {
        Token { slot, ..self }
    }

    /// The send length, kept modulo 2^16 (a frame's length always fits).
    #[inline]
    pub fn len(self, len: usize) -> Token {
        Token {
            len: (len & 0xffff) as u16,
            ..self
        }
    }

    /// Layout: op (4 bits) | endpoint (12) | generation (16) | slot (16) | length (16).
    #[inline]
    pub fn encode(self) -> u64 {
        self.op as u64
            | (self.endpoint as u64) << 4
            | (self.gen as u64) << 16
            | (self.slot as u64) << 32
            | (self.len as u64) << 48
    }

    #[inline]
    pub fn decode(v: u64) -> Option<Token> {
        Some(Token {
            op: Op::from_bits(v & 0xf)?,
            endpoint: ((v >> 4) & MAX_ENDPOINT as u64) as u16,
            gen: (v >> 16) as u16,
            slot: (v >> 32) as u16,
            len: (v >> 48) as u16,
        })
    }

    #[inline]
    pub fn ep(self) -> usize {
        self.endpoint as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for op in Op::ALL {
            for (ep, gen, slot, len) in [
                (0, 0, 0, 0),
                (MAX_ENDPOINT, u16::MAX, u16::MAX, u16::MAX as usize),
                (7, 3, 0x8001, 1514),
                (4095, 1, 63, 9234),
            ] {
                let t = Token::new(op, ep).gen(gen).slot(slot).len(len);
                assert_eq!(Token::decode(t.encode()), Some(t), "{t:?}");
                assert_eq!(t.ep(), ep);
                assert_eq!(t.op, op);
            }
        }
    }

    #[test]
    fn unknown_ops_decode_to_none() {
        assert_eq!(Token::decode(0), None);
        assert_eq!(Token::decode(0xf), None);
        assert_eq!(Token::decode(u64::MAX), None);
    }

    #[test]
    fn fields_do_not_overlap() {
        let t = Token::new(Op::Tx, 1).gen(2).slot(3).len(4).encode();
        assert_eq!(t, 2 | 1 << 4 | 2 << 16 | 3 << 32 | 4 << 48);
    }
}
