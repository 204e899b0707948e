//! Cutting what an offloading tap reads (a virtio-net header, then a frame or a TCP/UDP
//! super-frame of up to 64 KiB) into standard frames for the wire: one judgement per read and
//! one segment writer, for every loop that reads such a tap. Counting stays with the caller
//! (the conventions are in [`Cut`]).

use super::frame::admit;
use crate::engine::stats::DropReason;
use crate::wire::gso::{self, Segmenter};
use crate::wire::vnet::{self, VnetHdr};

/// What one read holds. The caller counts: a bad read or a plain frame as one frame received
/// (and dropped, for a bad one); a super-frame once in `super_frames` and `segments` (when
/// its first segment is cut), and each segment as one frame received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// A standard frame of this length right after the header, its checksum completed.
    Plain(usize),
    /// A super-frame of this many segments: write them with [`segment`].
    Super(VnetHdr, usize),
}

/// Judges one read of `hdr_len` header bytes and a frame. `full`: the read filled the whole
/// buffer, so the frame may have been cut short. `max_seg`: the room for one segment.
pub fn judge(read: &mut [u8], hdr_len: usize, full: bool, max_seg: usize) -> Result<Cut, DropReason> {
    let h = VnetHdr::parse(read, hdr_len).map_err(|_| DropReason::Framing)?;
    let pkt = &mut read[hdr_len..];
    if h.gso_kind() == vnet::GSO_NONE {
        if full {
            return Err(DropReason::Oversize);
        }
        admit(pkt.len())?;
        if h.flags & vnet::F_NEEDS_CSUM != 0 {
            gso::complete_csum(&h, pkt).map_err(|_| DropReason::Framing)?;
        }
        return Ok(Cut::Plain(pkt.len()));
    }
    match Segmenter::new(&h, pkt) {
        Ok(s) if s.max_len() <= max_seg => Ok(Cut::Super(h, s.count())),
        _ => Err(DropReason::Framing),
    }
}

/// One standard frame cut from a read ([`piece`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The frame's length in `out`, or why it is dropped.
    pub got: Result<usize, DropReason>,
    /// The first segment of a super-frame of this many segments (for the caller's
    /// `super_frames`/`segments` counts).
    pub first_of: Option<usize>,
    /// The read is used up (`next` is back to 0).
    pub done: bool,
}

/// The next standard frame of `read` (`hdr_len` header bytes and a frame; `full` and
/// `max_seg` as for [`judge`]) into `out`: the plain frame, or segment `*next` of a
/// super-frame, `*next` then moving on. Each call is one frame received, as [`Cut`] says.
pub fn piece(
    read: &mut [u8],
    hdr_len: usize,
    full: bool,
    max_seg: usize,
    next: &mut usize,
    out: &mut [u8],
) -> Piece {
    let (got, first_of, done) = match judge(read, hdr_len, full, max_seg) {
        Err(why) => (Err(why), None, true),
        Ok(Cut::Plain(len)) => {
            out[..len].copy_from_slice(&read[hdr_len..hdr_len + len]);
            (Ok(len), None, true)
        }
        Ok(Cut::Super(h, count)) => {
            let first_of = (*next == 0).then_some(count);
            let r = segment(&h, &read[hdr_len..], *next, out);
            *next += 1;
            (r, first_of, *next >= count)
        }
    };
    if done {
        *next = 0;
    }
    Piece { got, first_of, done }
}

/// Writes segment `i` of the super-frame `pkt` (the read after its header), judged as
/// [`Cut::Super`] with header `h`, into `out`; returns its length.
pub fn segment(h: &VnetHdr, pkt: &[u8], i: usize, out: &mut [u8]) -> Result<usize, DropReason> {
    let n = Segmenter::new(h, pkt)
        .and_then(|s| s.write(i, out))
        .map_err(|_| DropReason::Framing)?;
    admit(n).map(|()| n)
}

/// A read that crosses whole, from an offloading tap to another one (a `tap://` link opened
/// with the same virtio-net header): nothing is cut, the receiving tap's kernel takes the
/// super-frame (or completes the partial checksum) itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Whole {
    /// The standard frames it stands for on a wire (1 for a plain frame).
    pub segs: u64,
    /// Their bytes (the headers repeated in every segment).
    pub wire: u64,
}

/// Judges one read to be passed on whole: the header must parse, a plain frame must be a
/// frame ([`admit`]) and not cut short (`full`), a super-frame must be one the kernel could
/// segment. Read-only: the frame goes on exactly as it came.
pub fn judge_whole(read: &[u8], hdr_len: usize, full: bool) -> Result<Whole, DropReason> {
    let h = VnetHdr::parse(read, hdr_len).map_err(|_| DropReason::Framing)?;
    let pkt = &read[hdr_len..];
    if full {
        return Err(DropReason::Oversize);
    }
    if h.gso_kind() == vnet::GSO_NONE {
        admit(pkt.len())?;
        return Ok(Whole {
            segs: 1,
            wire: pkt.len() as u64,
        });
    }
    Segmenter::new(&h, pkt).map_err(|_| DropReason::Framing)?;
    let (segs, wire) = crate::engine::offload::wire_count(&h, pkt.len());
    Ok(Whole { segs, wire })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HL: usize = 12;

    /// An Ethernet + IPv4 + TCP frame with `payload` bytes, behind a header `h`.
    fn read_of(h: VnetHdr, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; HL + 14 + 20 + 20 + payload];
        f[..HL].copy_from_slice(&h.to_bytes()[..HL]);
        let e = &mut f[HL..];
        e[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        e[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        e[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut e[14..];
        ip[0] = 0x45;
        let tot = (20 + 20 + payload) as u16;
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let tcp = &mut ip[20..];
        tcp[12] = 5 << 4;
        tcp[13] = 0x10;
        f
    }

    #[test]
    fn plain_frames_and_their_limits() {
        let mut r = read_of(VnetHdr::default(), 10);
        assert_eq!(judge(&mut r, HL, false, 9500), Ok(Cut::Plain(64)));
        assert_eq!(judge(&mut r, HL, true, 9500), Err(DropReason::Oversize));
        let mut runt = vec![0u8; HL + 10];
        assert_eq!(judge(&mut runt, HL, false, 9500), Err(DropReason::Framing));
        let mut short = vec![0u8; HL - 1];
        assert_eq!(judge(&mut short, HL, false, 9500), Err(DropReason::Framing));
    }

    #[test]
    fn super_frames_are_cut_into_segments() {
        let h = VnetHdr {
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        let mut r = read_of(h, 2500);
        let Ok(Cut::Super(h, 3)) = judge(&mut r, HL, false, 9500) else {
            panic!("a 2500-byte payload at MSS 1000 is 3 segments");
        };
        let mut out = [0u8; 9500];
        let lens: Vec<usize> = (0..3)
            .map(|i| segment(&h, &r[HL..], i, &mut out).unwrap())
            .collect();
        assert_eq!(lens, vec![1054, 1054, 554]);
        assert_eq!(
            judge(&mut r, HL, false, 1000),
            Err(DropReason::Framing),
            "no room"
        );
    }

    #[test]
    fn pieces_walk_a_read_frame_by_frame() {
        let mut out = [0u8; 9500];
        let mut next = 0;
        let mut plain = read_of(VnetHdr::default(), 10);
        let p = piece(&mut plain, HL, false, 9500, &mut next, &mut out);
        assert_eq!((p.got, p.first_of, p.done, next), (Ok(64), None, true, 0));
        assert_eq!(&out[..64], &plain[HL..]);
        let h = VnetHdr {
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        let mut sup = read_of(h, 2500);
        let walk: Vec<_> = (0..3)
            .map(|_| {
                let p = piece(&mut sup, HL, false, 9500, &mut next, &mut out);
                (p.got, p.first_of, p.done)
            })
            .collect();
        assert_eq!(
            walk,
            vec![
                (Ok(1054), Some(3), false),
                (Ok(1054), None, false),
                (Ok(554), None, true)
            ]
        );
        assert_eq!(next, 0, "a used-up read starts over");
        let mut runt = vec![0u8; HL + 10];
        let p = piece(&mut runt, HL, false, 9500, &mut next, &mut out);
        assert_eq!((p.got, p.done), (Err(DropReason::Framing), true));
    }

    #[test]
    fn whole_reads_are_judged_without_change() {
        let plain = read_of(VnetHdr::default(), 10);
        assert_eq!(judge_whole(&plain, HL, false), Ok(Whole { segs: 1, wire: 64 }));
        assert_eq!(judge_whole(&plain, HL, true), Err(DropReason::Oversize));
        assert_eq!(
            judge_whole(&plain[..HL + 10], HL, false),
            Err(DropReason::Framing)
        );
        assert_eq!(judge_whole(&plain[..4], HL, false), Err(DropReason::Framing));
        let h = VnetHdr {
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        let sup = read_of(h, 2500);
        let before = sup.clone();
        // 2500 bytes of payload: three segments, each with the 54 bytes of headers.
        assert_eq!(
            judge_whole(&sup, HL, false),
            Ok(Whole {
                segs: 3,
                wire: 54 * 3 + 2500
            })
        );
        assert_eq!(sup, before, "read-only");
        let bad = VnetHdr { gso_size: 0, ..h };
        assert_eq!(
            judge_whole(&read_of(bad, 2500), HL, false),
            Err(DropReason::Framing)
        );
    }
}
