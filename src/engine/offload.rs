//! Segmentation offload on a port's tap: reading and writing its frames, and the accounting both
//! engines share. Opening the tap (and deciding whether to open it with offload) is `crate::tap`'s.
//!
//! A tap opened with IFF_VNET_HDR and TUNSETOFFLOAD(CSUM|TSO*|USO*) hands the reader TCP/UDP
//! super-frames of up to 64 KiB and frames with partial checksums, each behind a virtio-net
//! header, and takes super-frames (and frames behind a zero header) on write. The engines cut
//! what they read into standard frames for the VDE side (`wire::gso`) and coalesce what they
//! receive from it (`wire::gro`): the VDE wire only ever carries standard frames of at most the
//! tap's MTU, so classic peers see nothing different. The kernel's TCP stack then makes one
//! trip per super-frame instead of one per frame.
//!
//! Statistics count frames as they are on the VDE wire: a super-frame read from the tap counts
//! as the segments it was cut into, a super-frame written to the tap as the segments it was
//! built from; `super_frames`/`segments` count the super-frames themselves.

use crate::engine::stats::Counts;
use crate::wire::vnet::{self, VnetHdr};
use std::io::IoSlice;
use std::os::fd::BorrowedFd;

/// How a port's tap frames its reads and writes (opened by `crate::tap`).
pub use crate::tap::TapOffload;

/// Largest read from an offloading tap: header + the largest super-frame (Ethernet with one
/// tag, IPv6 header, 65535 bytes of IP payload), rounded up.
pub const SUPER_READ: usize = 66 * 1024;

/// The VDE-wire frames and bytes a frame written to the tap with header `h` stands for: one
/// frame for a plain one; for a super-frame, the segments the kernel would cut it into (each
/// repeats the `hdr_len` bytes of headers).
pub fn wire_count(h: &VnetHdr, len: usize) -> (u64, u64) {
    if h.gso_kind() == vnet::GSO_NONE || h.gso_size == 0 {
        return (1, len as u64);
    }
    let hl = (h.hdr_len as usize).min(len);
    let n = (len - hl).div_ceil(h.gso_size as usize).max(1);
    (n as u64, (len + (n - 1) * hl) as u64)
}

/// Writes frame `f` to an offloading tap behind header `h` (`hl` bytes of it). A tap write
/// does not block (tun's send buffer is unlimited). Counted as the VDE-wire frames it stands
/// for.
pub fn vnet_write(fd: BorrowedFd<'_>, hl: usize, c: &mut Counts, h: &VnetHdr, f: &[u8]) {
    let hb = h.to_bytes();
    let (n, bytes) = wire_count(h, f.len());
    match nix::sys::uio::writev(fd, &[IoSlice::new(&hb[..hl]), IoSlice::new(f)]) {
        Ok(_) => {
            c.sent_many(n, bytes);
            if h.gso_kind() != vnet::GSO_NONE {
                c.super_frames += 1;
                c.segments += n;
            }
        }
        Err(e) => c.add_drop(crate::engine::core::single_send_drop(e as i32), n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_count_of_plain_and_super_frames() {
        assert_eq!(wire_count(&VnetHdr::default(), 60), (1, 60));
        let h = VnetHdr {
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            ..VnetHdr::default()
        };
        // 3 full segments and one of 100 bytes.
        let len = 54 + 3 * 1448 + 100;
        assert_eq!(wire_count(&h, len), (4, (len + 3 * 54) as u64));
        assert_eq!(wire_count(&h, 54 + 1448), (1, 54 + 1448));
    }
}
