//! Which received frames are carried: one rule for every path (datagram, tap read, stream,
//! overlay payload), so that a frame is never forwarded by one loop and dropped by another.

use crate::engine::stats::DropReason;
use crate::wire::stream::Event;

/// Largest Ethernet frame carried: 9216 bytes of MTU + 14 of header + 4 of VLAN tag.
pub const MAX_FRAME: usize = 9216 + 14 + 4;

/// Shortest frame carried: an Ethernet header (destination, source, type). Anything shorter
/// (an empty datagram, a runt from a broken peer) cannot be forwarded or delivered to a tap
/// meaningfully; it is counted as a framing error and dropped, as classic vde_switch never
/// learns or forwards it either.
pub const MIN_FRAME: usize = crate::wire::ether::HEADER_LEN;

/// Whether a received frame of `len` bytes is carried, or why it is dropped.
#[inline]
pub fn admit(len: usize) -> Result<(), DropReason> {
    if len > MAX_FRAME {
        Err(DropReason::Oversize)
    } else if len < MIN_FRAME {
        Err(DropReason::Framing)
    } else {
        Ok(())
    }
}

/// A stream decoder's event, judged by the same rule: `Ok(len)` for a frame to carry (its
/// bytes are at the start of the decoder's destination).
#[inline]
pub fn admit_stream(ev: Event) -> Result<usize, DropReason> {
    match ev {
        Event::Frame(len) => admit(len).map(|()| len),
        Event::Oversize(_) => Err(DropReason::Oversize),
        Event::Empty => Err(DropReason::Framing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_lengths() {
        assert_eq!(admit(0), Err(DropReason::Framing));
        assert_eq!(admit(1), Err(DropReason::Framing));
        assert_eq!(admit(MIN_FRAME - 1), Err(DropReason::Framing));
        assert_eq!(admit(MIN_FRAME), Ok(()));
        assert_eq!(admit(1500), Ok(()));
        assert_eq!(admit(MAX_FRAME), Ok(()));
        assert_eq!(admit(MAX_FRAME + 1), Err(DropReason::Oversize));
    }

    #[test]
    fn streams_follow_the_same_rule() {
        assert_eq!(admit_stream(Event::Frame(60)), Ok(60));
        assert_eq!(admit_stream(Event::Frame(13)), Err(DropReason::Framing));
        assert_eq!(admit_stream(Event::Empty), Err(DropReason::Framing));
        assert_eq!(admit_stream(Event::Oversize(20000)), Err(DropReason::Oversize));
    }
}
