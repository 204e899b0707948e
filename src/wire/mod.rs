//! Pure wire formats (Ethernet view, VDE stream framing, VDE control request, VXLAN header): no
//! I/O here, so everything is unit-tested and fuzzed without namespaces.

pub mod ether;
pub mod stream;
pub mod vde_ctl;
pub mod vxlan;
