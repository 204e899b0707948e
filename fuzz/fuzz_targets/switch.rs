//! The Ethernet view, the VXLAN header decoder and the switch's forwarding decision on arbitrary
//! bytes: nothing panics, a decision never sends a frame back where it came from, and a
//! re-encoded VXLAN header decodes to the same VNI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdens_fast::switch::{Decision, Forwarder, MacTable};
use vdens_fast::wire::{ether::Frame, vxlan};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::new_checked(data) {
        let _ = (f.dst(), f.src(), f.ethertype(), f.vlan());
    }
    if let Ok((vni, frame)) = vxlan::decode(data) {
        let mut again = vxlan::encode(vni).to_vec();
        again.extend_from_slice(frame);
        assert_eq!(vxlan::decode(&again).map(|(v, _)| v), Ok(vni));
    }
    // Replay the input as a sequence of frames arriving on ports 0..7 of a small switch.
    let mut sw = Forwarder::Switch(MacTable::new(16, 5, 1));
    for (i, chunk) in data.chunks(64).enumerate() {
        let port = (chunk.first().copied().unwrap_or(0) % 8) as u16;
        let now = i as u64;
        if let Decision::Unicast(p) = sw.decide(port, chunk, now) {
            assert_ne!(p, port);
        }
        if chunk.len() == 1 {
            sw.port_closed(port);
        }
    }
});
