//! The coalescer on arbitrary frame sequences (the input split at 0xff 0xfe 0xfd markers):
//! must never panic, accounts for every frame, and every super-frame it emits parses as
//! Ethernet + IP + TCP. Each chunk is also segmented as a TCPv4 and a TCPv6 super-frame with
//! gso_size from the first two input bytes, so the coalescer sees frames whose checksums are
//! right and reaches its merge rules, not only its checksum rejection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdens_fast::wire::gro::{Coalescer, BUF_LEN};
use vdens_fast::wire::gso::{self, Layout};
use vdens_fast::wire::vnet::{self, VnetHdr};

fuzz_target!(|data: &[u8]| {
    let mut co = Coalescer::new(vec![0u8; BUF_LEN]);
    let mut emitted = 0usize;
    let mut emit = |h: &VnetHdr, f: &[u8]| {
        emitted += 1;
        if h.gso_kind() != vnet::GSO_NONE {
            let lay = Layout::parse_tcp(f).expect("a super-frame parses");
            assert!(h.gso_size > 0 && lay.end == f.len());
        }
    };
    let mss = u16::from_le_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]);
    let mut scratch = vec![0u8; 70_000];
    let mut frames = 0usize;
    let mut rest = data;
    loop {
        let cut = rest.windows(3).position(|w| w == [0xff, 0xfe, 0xfd]);
        let (f, next) = match cut {
            Some(i) => (&rest[..i], Some(&rest[i + 3..])),
            None => (rest, None),
        };
        co.push(f, &mut emit);
        frames += 1;
        for t in [vnet::GSO_TCPV4, vnet::GSO_TCPV6] {
            let h = VnetHdr {
                gso_type: t,
                gso_size: mss.max(1),
                ..VnetHdr::default()
            };
            let _ = gso::segment(&h, f, &mut scratch, |s| {
                co.push(s, &mut emit);
                frames += 1;
            });
        }
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    co.flush(&mut emit);
    let st = co.stats();
    assert!(emitted <= frames);
    assert_eq!(st.passed + st.merged_segments, frames as u64);
});
