//! Numbers in VNL values, read the way libvdeplug reads them (strtol/strtoull from C, and
//! parseparms.c's strtoullm for sizes), so a value means the same to vdens-fast as to vde_plug.

/// What C's strtoull/strtol saw: the magnitude, its sign, how many bytes were used, and
/// whether the magnitude overflowed u64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CNum {
    magnitude: u64,
    negative: bool,
    used: usize,
    overflow: bool,
}

fn c_isspace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The digits part of strtoul-like parsing in `base` (0 = C prefixes: `0x` hex, `0` octal).
fn c_parse(s: &[u8], base: u32) -> CNum {
    let mut i = 0;
    while i < s.len() && c_isspace(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let digit = |c: u8, b: u32| (c as char).to_digit(b);
    let mut base = base;
    let hex_prefix = s.get(i) == Some(&b'0')
        && matches!(s.get(i + 1), Some(b'x' | b'X'))
        && s.get(i + 2).and_then(|&c| digit(c, 16)).is_some();
    if (base == 0 || base == 16) && hex_prefix {
        base = 16;
        i += 2;
    } else if base == 0 {
        base = if s.get(i) == Some(&b'0') { 8 } else { 10 };
    }
    let start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while let Some(d) = s.get(i).and_then(|&c| digit(c, base)) {
        match magnitude
            .checked_mul(base as u64)
            .and_then(|m| m.checked_add(d as u64))
        {
            Some(m) => magnitude = m,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        // No digits: C leaves the end pointer at the very start of the string.
        return CNum {
            magnitude: 0,
            negative: false,
            used: 0,
            overflow: false,
        };
    }
    CNum {
        magnitude,
        negative,
        used: i,
        overflow,
    }
}

/// C's strtoull: returns the value and the bytes used (0 when there were no digits).
pub fn strtoull(s: &[u8], base: u32) -> (u64, usize) {
    let n = c_parse(s, base);
    let v = if n.overflow {
        u64::MAX
    } else if n.negative {
        n.magnitude.wrapping_neg()
    } else {
        n.magnitude
    };
    (v, n.used)
}

/// C's strtol on a 64-bit target: saturates at i64::MIN/MAX.
pub fn strtol(s: &[u8], base: u32) -> (i64, usize) {
    let n = c_parse(s, base);
    let v = if n.negative {
        if n.overflow || n.magnitude > i64::MAX as u64 + 1 {
            i64::MIN
        } else {
            (n.magnitude as i128).wrapping_neg() as i64
        }
    } else if n.overflow || n.magnitude > i64::MAX as u64 {
        i64::MAX
    } else {
        n.magnitude as i64
    };
    (v, n.used)
}

/// parseparms.c's strtoullm: strtoull with C prefixes, then every k/M/G/T (either case) in
/// the rest multiplies by 2^10/2^20/2^30/2^40 (other bytes are ignored, as libvdeplug does;
/// `1kk` is 1 MiB). Wraps on overflow like C unsigned arithmetic.
pub fn strtoullm(s: &[u8]) -> u64 {
    let (mut v, used) = strtoull(s, 0);
    for &c in &s[used..] {
        let m: u64 = match c {
            0 => break,
            b'k' | b'K' => 1 << 10,
            b'm' | b'M' => 1 << 20,
            b'g' | b'G' => 1 << 30,
            b't' | b'T' => 1 << 40,
            _ => 1,
        };
        v = v.wrapping_mul(m);
    }
    v
}

/// A size value for which vdens-fast wants the whole string to be meaningful: digits (with C
/// prefixes) followed only by size suffixes. `None` for anything libvdeplug would read as a
/// silent 0 or a truncated number.
pub fn strict_size(s: &[u8]) -> Option<u64> {
    let (_, used) = strtoull(s, 0);
    if used == 0 || s.first().is_some_and(|c| !c.is_ascii_digit()) {
        return None;
    }
    if !s[used..]
        .iter()
        .all(|c| matches!(c, b'k' | b'K' | b'm' | b'M' | b'g' | b'G' | b't' | b'T'))
    {
        return None;
    }
    let (base, _) = strtoull(s, 0);
    s[used..].iter().try_fold(base, |v, &c| {
        let shift = match c {
            b'k' | b'K' => 10,
            b'm' | b'M' => 20,
            b'g' | b'G' => 30,
            _ => 40,
        };
        v.checked_mul(1u64 << shift)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoullm_table() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("", 0),
            ("12", 12),
            ("1k", 1024),
            ("1K", 1024),
            ("2M", 2 << 20),
            ("3g", 3 << 30),
            ("1T", 1 << 40),
            ("1kk", 1 << 20),
            ("0x10", 16),
            ("010", 8),
            ("08", 0),
            ("0x", 0),
            ("12abc", 12),
            ("  7k", 7 << 10),
            ("k", 0),
            ("-1", u64::MAX),
            ("99999999999999999999", u64::MAX),
            ("16T1M", (16u64 << 40).wrapping_mul(1 << 20)),
            ("1k\0k", 1024),
        ];
        for (s, want) in cases {
            assert_eq!(strtoullm(s.as_bytes()), *want, "{s:?}");
        }
    }

    #[test]
    fn strict_size_table() {
        assert_eq!(strict_size(b"64k"), Some(65536));
        assert_eq!(strict_size(b"0x10"), Some(16));
        assert_eq!(strict_size(b"12abc"), None);
        assert_eq!(strict_size(b""), None);
        assert_eq!(strict_size(b"-1"), None);
        assert_eq!(strict_size(b" 1"), None);
        assert_eq!(strict_size(b"16777216T"), None);
    }

    #[test]
    fn strtol_table() {
        assert_eq!(strtol(b"770", 8), (0o770, 3));
        assert_eq!(strtol(b"778", 8), (0o77, 2));
        assert_eq!(strtol(b"x", 8), (0, 0));
        assert_eq!(strtol(b"12", 10), (12, 2));
        assert_eq!(strtol(b"-3", 10), (-3, 2));
        assert_eq!(strtol(b"99999999999999999999", 10), (i64::MAX, 20));
        assert_eq!(strtol(b"-99999999999999999999", 10), (i64::MIN, 21));
        assert_eq!(strtol(b"0x1f", 0), (31, 4));
        assert_eq!(strtol(b"017", 0), (15, 3));
        assert_eq!(strtol(b"0x", 0), (0, 1));
    }
}
