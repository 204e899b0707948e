//! Segmentation offload on a port's tap: what the tap was opened with, and the accounting both
//! engines share.
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
use crate::engine::{EngineChoice, EngineKind};
use crate::transport::{Hosted, Link};
use crate::wire::vnet::{self, VnetHdr};
use std::io::IoSlice;
use std::os::fd::RawFd;

/// How a port's tap frames its reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapOffload {
    /// Bytes of virtio-net header in front of every frame (0: a plain tap, or a socket standing
    /// in for one; 10 or 12 otherwise).
    pub vnet_hdr: usize,
    /// The TUNSETOFFLOAD flags the tap accepted (`sys::TUN_F_*`; 0 with a header means plain
    /// frames behind a zero header).
    pub flags: u32,
}

impl TapOffload {
    /// A tap without a virtio-net header.
    pub const NONE: TapOffload = TapOffload {
        vnet_hdr: 0,
        flags: 0,
    };

    /// True when the tap reads and writes a virtio-net header.
    pub fn enabled(&self) -> bool {
        self.vnet_hdr > 0
    }
}

/// Whether the tap of a port whose link hosts a node is to be opened with offload: only a
/// switch or hub (switch://, hub://), and only when the engine will run it on io_uring (the
/// io_uring node cuts and coalesces on the host's tap; the epoll node moves plain frames).
/// Uses the engine's own resolution of the choice (the io_uring probe runs once per process).
pub fn hosted_tap_offload(choice: EngineChoice, link: &Link) -> bool {
    matches!(link.node, Some(Hosted::Net(_))) && matches!(choice.resolve(), Ok(EngineKind::Uring))
}

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
pub fn vnet_write(fd: RawFd, hl: usize, c: &mut Counts, h: &VnetHdr, f: &[u8]) {
    let hb = h.to_bytes();
    let (n, bytes) = wire_count(h, f.len());
    match nix::sys::uio::writev(
        crate::sys::borrow_fd(fd),
        &[IoSlice::new(&hb[..hl]), IoSlice::new(f)],
    ) {
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
