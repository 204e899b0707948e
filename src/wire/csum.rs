//! The Internet checksum (RFC 1071) with incremental update (RFC 1624) and the TCP/UDP
//! pseudo-headers of IPv4 (RFC 793) and IPv6 (RFC 8200 section 8.1).
//!
//! Partial sums are `u32` values already folded to 16 bits, so they can be added with [`add`]
//! in any order; [`finish`] complements one into the value stored in a header.

/// Folds a wide one's-complement accumulator to 16 bits.
pub fn fold(mut x: u64) -> u16 {
    while x > 0xffff {
        x = (x & 0xffff) + (x >> 16);
    }
    x as u16
}

/// Adds two partial sums.
pub fn add(a: u32, b: u32) -> u32 {
    fold(a as u64 + b as u64) as u32
}

/// The one's-complement sum of `data` (big-endian 16-bit words, an odd last byte padded with
/// zero), added to `acc`.
pub fn partial(data: &[u8], acc: u32) -> u32 {
    // Summing 64-bit words with end-around carries is the same sum modulo 0xffff (2^16, 2^32,
    // 2^48 and 2^64 are all 1 modulo 0xffff), with a quarter of the additions; two accumulators
    // let consecutive additions run in parallel. Carries are counted, not folded, per word.
    #[inline(always)]
    fn word(c: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_be_bytes(w)
    }
    let (mut s0, mut s1, mut carry) = (acc as u64, 0u64, 0u64);
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        let (r0, o0) = s0.overflowing_add(word(&c[..8]));
        let (r1, o1) = s1.overflowing_add(word(&c[8..]));
        s0 = r0;
        s1 = r1;
        carry += o0 as u64 + o1 as u64;
    }
    let rest = chunks.remainder();
    let (a, b) = rest.split_at(rest.len().min(8));
    for w in [word(a), word(b)] {
        let (r, o) = s0.overflowing_add(w);
        s0 = r;
        carry += o as u64;
    }
    let (r, o) = s0.overflowing_add(s1);
    carry += o as u64;
    fold((r >> 32) + (r & 0xffff_ffff) + carry) as u32
}

/// The value to store in a checksum field: the complement of the folded sum.
pub fn finish(acc: u32) -> u16 {
    !fold(acc as u64)
}

/// The checksum of `data` alone (an IPv4 header with its checksum field zeroed).
pub fn checksum(data: &[u8]) -> u16 {
    finish(partial(data, 0))
}

/// True when `data` plus `acc` (a pseudo-header sum) checks: the sum including the stored
/// checksum is all ones.
pub fn verify(data: &[u8], acc: u32) -> bool {
    fold(partial(data, acc) as u64) == 0xffff
}

/// The IPv4 pseudo-header sum: addresses, protocol, and the upper-layer length.
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, len: u32) -> u32 {
    let s = partial(src, 0) as u64
        + partial(dst, 0) as u64
        + proto as u64
        + (len >> 16) as u64
        + (len & 0xffff) as u64;
    fold(s) as u32
}

/// The IPv6 pseudo-header sum: addresses, 32-bit upper-layer length, next header.
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u32 {
    let s = partial(src, 0) as u64
        + partial(dst, 0) as u64
        + proto as u64
        + (len >> 16) as u64
        + (len & 0xffff) as u64;
    fold(s) as u32
}

/// RFC 1624 eqn. 3: the checksum `check` after a 16-bit word of the covered data changes from
/// `old` to `new`: HC' = ~(~HC + ~m + m').
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    !fold(!check as u64 + !old as u64 + new as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook word-by-word sum, independent of the 32-bit trick above.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for i in (0..data.len()).step_by(2) {
            let hi = data[i] as u32;
            let lo = data.get(i + 1).copied().unwrap_or(0) as u32;
            s += (hi << 8) | lo;
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(partial(&d, 0), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn ipv4_header() {
        // A real header (Wikipedia's example), checksum 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verify(&h, 0));
    }

    #[test]
    fn matches_naive_on_all_lengths_and_alignments() {
        let data = crate::wire::test_bytes(12345, 300);
        for start in 0..9 {
            for end in start..data.len() {
                assert_eq!(checksum(&data[start..end]), naive(&data[start..end]));
            }
        }
        assert_eq!(checksum(&[0xff; 4000]), naive(&[0xff; 4000]));
    }

    #[test]
    fn incremental_equals_recomputed() {
        let mut d = [0x12u8, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x00, 0x01];
        let c = checksum(&d);
        for new in [0u16, 1, 0xffff, 0x1234, 0x8000] {
            let old = u16::from_be_bytes([d[4], d[5]]);
            let c1 = update(checksum(&d), old, new);
            d[4..6].copy_from_slice(&new.to_be_bytes());
            assert_eq!(c1, checksum(&d), "update to {new:#x} from {c:#x}");
        }
    }

    #[test]
    fn pseudo_headers() {
        let v4 = pseudo_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, 20);
        assert_eq!(v4, (0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 20) as u32);
        let mut a = [0u8; 16];
        a[15] = 1;
        let v6 = pseudo_v6(&a, &a, 17, 0x1_0002);
        assert_eq!(v6, 1 + 1 + 17 + 1 + 2);
    }
}
