//! The virtio-net header a tap with IFF_VNET_HDR puts in front of every frame it hands out and
//! expects in front of every frame written to it (linux/virtio_net.h `struct virtio_net_hdr`,
//! 10 bytes; 12 with `num_buffers` when TUNSETVNETHDRSZ says so).
//!
//! Byte order: tun uses little-endian unless TUNSETVNETBE was called on a big-endian host
//! (drivers/net/tun.c `tun_is_little_endian`: TUN_VNET_LE or `virtio_legacy_is_little_endian()`,
//! which is the host's own order); vdens-fast never sets either, so fields are host order.

/// The header tun uses by default.
pub const LEN: usize = 10;
/// With the `num_buffers` field (virtio_net_hdr_mrg_rxbuf), after TUNSETVNETHDRSZ 12.
pub const LEN_MRG: usize = 12;

/// `flags`: the frame carries a partial checksum: complete it over `[csum_start..]` and store it
/// at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksums of the frame were verified already.
pub const F_DATA_VALID: u8 = 2;

/// `gso_type` values: no segmentation.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
/// UDP fragmentation offload (UFO), which Linux no longer generates.
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
/// UDP segmentation offload (USO).
pub const GSO_UDP_L4: u8 = 5;
/// Or-ed into `gso_type`: the TCP super-frame carries CWR (on its first segment only).
pub const GSO_ECN: u8 = 0x80;

/// Why bytes are not a virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VnetError {
    /// Fewer bytes than the header size in use.
    Truncated { have: usize, need: usize },
    /// A header size other than 10 or 12.
    BadSize(usize),
}

impl std::fmt::Display for VnetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VnetError::Truncated { have, need } => {
                write!(f, "virtio-net header truncated: {have} bytes, need {need}")
            }
            VnetError::BadSize(n) => write!(
                f,
                "virtio-net header size {n} unsupported (tun uses 10, or 12 with num_buffers)"
            ),
        }
    }
}

/// A parsed virtio-net header (the smoltcp "Repr" shape: it is small and `Copy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers (Ethernet to TCP). tun fills it with the skb's linear length, so
    /// readers must parse the headers rather than trust it.
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS for TCP).
    pub gso_size: u16,
    /// Offset from the start of the Ethernet frame where checksumming starts.
    pub csum_start: u16,
    /// Offset from `csum_start` of the 16-bit checksum field.
    pub csum_offset: u16,
    /// Only present in the 12-byte form; 0 otherwise.
    pub num_buffers: u16,
}

impl VnetHdr {
    /// Checks a header size: 10 or 12.
    pub fn check_size(size: usize) -> Result<(), VnetError> {
        if size == LEN || size == LEN_MRG {
            Ok(())
        } else {
            Err(VnetError::BadSize(size))
        }
    }

    /// Parses the first `size` (10 or 12) bytes of `buf`.
    pub fn parse(buf: &[u8], size: usize) -> Result<VnetHdr, VnetError> {
        Self::check_size(size)?;
        if buf.len() < size {
            return Err(VnetError::Truncated {
                have: buf.len(),
                need: size,
            });
        }
        let u = |i: usize| u16::from_ne_bytes([buf[i], buf[i + 1]]);
        Ok(VnetHdr {
            flags: buf[0],
            gso_type: buf[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            num_buffers: if size == LEN_MRG { u(10) } else { 0 },
        })
    }

    /// Writes the header in `size` (10 or 12) bytes at the start of `out`; returns `size`.
    pub fn emit(&self, out: &mut [u8], size: usize) -> Result<usize, VnetError> {
        Self::check_size(size)?;
        if out.len() < size {
            return Err(VnetError::Truncated {
                have: out.len(),
                need: size,
            });
        }
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        if size == LEN_MRG {
            out[10..12].copy_from_slice(&self.num_buffers.to_ne_bytes());
        }
        Ok(size)
    }

    /// The gso type without the ECN bit.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// The header as `size` bytes, for a write of header + frame.
    pub fn to_bytes(&self) -> [u8; LEN_MRG] {
        let mut b = [0u8; LEN_MRG];
        // Cannot fail: 12 bytes for a 12-byte header.
        let _ = self.emit(&mut b, LEN_MRG);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_sizes() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 1,
        };
        let mut b = [0u8; 12];
        assert_eq!(h.emit(&mut b, LEN_MRG), Ok(12));
        assert_eq!(VnetHdr::parse(&b, LEN_MRG), Ok(h));
        let mut b10 = [0u8; 10];
        assert_eq!(h.emit(&mut b10, LEN), Ok(10));
        assert_eq!(VnetHdr::parse(&b10, LEN), Ok(VnetHdr { num_buffers: 0, ..h }));
        assert_eq!(h.gso_kind(), GSO_TCPV4);
        assert_eq!(b[..10], h.to_bytes()[..10]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            VnetHdr::parse(&[0; 9], LEN),
            Err(VnetError::Truncated { have: 9, need: 10 })
        );
        assert_eq!(VnetHdr::parse(&[0; 20], 11), Err(VnetError::BadSize(11)));
        assert!(!VnetError::BadSize(3).to_string().contains('\n'));
    }
}
