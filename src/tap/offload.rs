//! What a tap is opened with, and when it is worth opening one with offload.
//!
//! A tap opened with IFF_VNET_HDR and TUNSETOFFLOAD(CSUM|TSO*|USO*) hands the reader TCP/UDP
//! super-frames of up to 64 KiB and frames with partial checksums, each behind a virtio-net
//! header, and takes super-frames (and frames behind a zero header) on write. Whoever reads it
//! must cut what it reads into standard frames for the VDE side and coalesce what it receives
//! from it (`engine::offload`), so a tap is opened so only for a reader that does.

/// How a tap frames its reads and writes.
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

/// Who moves the frames of a tap, as far as its offload goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapReader {
    /// A port's worker (either engine): it cuts and coalesces.
    Port,
    /// A switch's, hub's or seqpacket ptp end's node (switch://, hub://, `ptp://...[seqpacket]`):
    /// it cuts and coalesces on the host's tap, on either driver, and sends its super-frames
    /// whole where the other end took them.
    Node,
    /// Any other hosted node (overlays): plain frames.
    Overlay,
}

/// Whether the tap read by `reader` is to be opened with offload: only when offload is
/// `asked` for (no --no-offload) and the reader cuts and coalesces.
pub fn wanted(asked: bool, reader: TapReader) -> bool {
    let cuts = match reader {
        TapReader::Port | TapReader::Node => true,
        TapReader::Overlay => false,
    };
    asked && cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_only_where_the_reader_cuts_and_coalesces() {
        assert!(wanted(true, TapReader::Port));
        assert!(!wanted(false, TapReader::Port));
        assert!(!wanted(false, TapReader::Node));
        assert!(!wanted(true, TapReader::Overlay));
        assert!(wanted(true, TapReader::Node));
    }

    #[test]
    fn none_has_no_header() {
        assert!(!TapOffload::NONE.enabled());
        assert!(TapOffload {
            vnet_hdr: 10,
            flags: 0
        }
        .enabled());
    }
}
