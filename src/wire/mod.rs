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
