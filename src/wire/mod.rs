//! Pure wire formats (Ethernet view, VDE stream framing, VDE control request, VXLAN header,
//! virtio-net header, Internet checksum, TCP segmentation and coalescing offload): no I/O here,
//! so everything is unit-tested and fuzzed without namespaces.

pub mod csum;
pub mod ether;
pub mod gro;
pub mod gso;
pub mod handover;
pub mod stream;
pub mod superframe;
pub mod vde_ctl;
pub mod vnet;
pub mod vxlan;

/// `n` pseudo-random bytes (xorshift32 from `seed`): test input for the codecs.
#[cfg(test)]
pub(crate) fn test_bytes(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
