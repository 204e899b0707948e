//! Pure wire formats (Ethernet view, VDE stream framing, VDE control request, VXLAN header): no I/O here.

pub mod stream;
