//! The VDE control request/answer decoders on arbitrary bytes; a decoded request re-encodes
//! to bytes that decode to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdens_fast::wire::vde_ctl::{decode_sockaddr, Request, MAX_DESCR};

fuzz_target!(|data: &[u8]| {
    let _ = decode_sockaddr(data);
    // A 128-byte description is cut to 127 when encoding (no room for C's NUL), so only
    // shorter ones round-trip.
    if let Ok(r) = Request::decode(data).map_err(drop).and_then(|r| {
        if r.description.len() < MAX_DESCR {
            Ok(r)
        } else {
            Err(())
        }
    }) {
        if let Ok(b) = r.encode() {
            assert_eq!(Request::decode(&b).as_ref(), Ok(&r));
        }
    }
});
