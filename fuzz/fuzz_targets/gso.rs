//! Segmentation and checksum completion on arbitrary virtio-net headers and frames: must never
//! panic; every segment of a TCP super-frame stays within the headers + gso_size, and errors
//! are one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdens_fast::wire::gso::{self, Segmenter};
use vdens_fast::wire::vnet::{self, VnetHdr};

fuzz_target!(|data: &[u8]| {
    let Ok(hdr) = VnetHdr::parse(data, vnet::LEN) else {
        return;
    };
    let pkt = &data[vnet::LEN..];
    let mut scratch = vec![0u8; 70_000];
    match gso::segment(&hdr, pkt, &mut scratch, |s| assert!(s.len() <= 70_000)) {
        Ok(n) => assert!(n >= 1),
        Err(e) => {
            let m = e.to_string();
            assert!(!m.is_empty() && !m.contains('\n'));
        }
    }
    if let Ok(s) = Segmenter::new(&hdr, pkt) {
        let lay = s.layout();
        for i in 0..s.count().min(64) {
            let n = s.write(i, &mut scratch).expect("scratch holds any segment");
            assert!(n <= lay.data + hdr.gso_size as usize);
        }
    }
    let mut lens = [0usize; 16];
    let _ = gso::segment_to_slab(&hdr, pkt, &mut scratch[..16 * 1600], 1600, &mut lens);
});
