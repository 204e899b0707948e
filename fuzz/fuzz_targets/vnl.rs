//! Every VNL parsing path on arbitrary bytes: must never panic; errors are one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdens_fast::vnl::{self, argv, num, params, quote};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Err(e) = vnl::parse(&s) {
        let m = e.to_string();
        assert!(!m.contains('\n') && !m.is_empty());
    }
    let (t, rest) = quote::token(data, b'/');
    assert!(t.len() <= data.len());
    if let Some(r) = rest {
        assert!(r.len() < data.len());
    }
    let _ = quote::before_last(data, b']');
    let _ = params::path_params(data, &vnl::VDE_KEYS);
    let _ = params::path_params(data, &vnl::NETNODE_KEYS);
    let _ = params::options(data, &vnl::VXLAN_KEYS);
    let _ = num::strtoullm(data);
    let _ = num::strict_size(data);
    let _ = num::strtol(data, 0);
    let _ = argv::split(data);
});
