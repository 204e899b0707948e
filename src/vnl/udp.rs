//! `udp://[SRC_ADDR:]SRC_PORT->DST_ADDR:DST_PORT` (libvdeplug_udp).
//!
//! libvdeplug 4.0.1 splits at the first `->`, then each side at its *last* `:`, so a bare IPv6
//! address works (`udp://::1:5000->::1:5001`); vdens-fast also accepts the bracketed form
//! (`udp://[::1]:5000->[::1]:5001`), which libvdeplug would hand to getaddrinfo unchanged and
//! fail on. Ports are decimal numbers here (libvdeplug would also take service names).

use super::VnlError;

/// A parsed udp:// VNL; names are resolved when the link is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpSpec {
    /// Local address to bind; `None` = the wildcard of the destination's family.
    pub src_addr: Option<String>,
    /// Local port; 0 = any (the kernel picks one).
    pub src_port: u16,
    pub dst_addr: String,
    pub dst_port: u16,
}

const SYNTAX: &str = "write udp://[SRC_ADDR:]SRC_PORT->DST_ADDR:DST_PORT, e.g. udp://5000->192.0.2.7:5001";

fn port(what: &'static str, s: &str, zero_ok: bool) -> Result<u16, VnlError> {
    let bad = |why| VnlError::BadValue {
        what,
        value: s.to_string(),
        why,
        hint: "ports are decimal numbers from 1 to 65535",
    };
    if s.is_empty() {
        return Err(VnlError::Missing { what, hint: SYNTAX });
    }
    if !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("is not a port number"));
    }
    match s.parse::<u32>() {
        Ok(0) if !zero_ok => Err(bad("is not a usable destination port")),
        Ok(v) if v <= 65535 => Ok(v as u16),
        _ => Err(bad("is out of range")),
    }
}

/// Splits `[ADDR]:PORT`, `ADDR:PORT` (at the last colon) or, when `port_only_ok`, `PORT`.
fn endpoint<'a>(
    side: &'static str,
    s: &'a str,
    port_only_ok: bool,
) -> Result<(Option<&'a str>, &'a str), VnlError> {
    if let Some(inner) = s.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return Err(VnlError::BadValue {
                what: side,
                value: s.to_string(),
                why: "has an unclosed '['",
                hint: "write a bracketed IPv6 address as [::1]:5000",
            });
        };
        let addr = &inner[..end];
        let Some(p) = inner[end + 1..].strip_prefix(':') else {
            return Err(VnlError::BadValue {
                what: side,
                value: s.to_string(),
                why: "has no ':PORT' after the address",
                hint: "write a bracketed IPv6 address as [::1]:5000",
            });
        };
        return Ok(((!addr.is_empty()).then_some(addr), p));
    }
    match s.rfind(':') {
        Some(i) => {
            let addr = &s[..i];
            Ok(((!addr.is_empty()).then_some(addr), &s[i + 1..]))
        }
        None if port_only_ok => Ok((None, s)),
        None => Err(VnlError::BadValue {
            what: side,
            value: s.to_string(),
            why: "has no ':PORT'",
            hint: SYNTAX,
        }),
    }
}

/// Parses the part after `udp://`.
pub fn parse_udp(rest: &str) -> Result<UdpSpec, VnlError> {
    if rest.contains('\0') {
        return Err(VnlError::BadValue {
            what: "udp:// VNL",
            value: rest.to_string(),
            why: "contains a NUL byte",
            hint: SYNTAX,
        });
    }
    let Some(arrow) = rest.find("->") else {
        return Err(VnlError::Missing {
            what: "udp:// destination ('->DST_ADDR:DST_PORT')",
            hint: SYNTAX,
        });
    };
    let (src, dst) = (&rest[..arrow], &rest[arrow + 2..]);
    let (src_addr, src_port) = endpoint("udp:// source", src, true)?;
    let (dst_addr, dst_port) = endpoint("udp:// destination", dst, false)?;
    let Some(dst_addr) = dst_addr else {
        return Err(VnlError::Missing {
            what: "udp:// destination address",
            hint: SYNTAX,
        });
    };
    Ok(UdpSpec {
        src_addr: src_addr.map(str::to_string),
        src_port: port("udp:// source port", src_port, true)?,
        dst_addr: dst_addr.to_string(),
        dst_port: port("udp:// destination port", dst_port, false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> UdpSpec {
        parse_udp(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn spec(src: Option<&str>, sp: u16, dst: &str, dp: u16) -> UdpSpec {
        UdpSpec {
            src_addr: src.map(str::to_string),
            src_port: sp,
            dst_addr: dst.into(),
            dst_port: dp,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            ok("2000->host_b.example:3000"),
            spec(None, 2000, "host_b.example", 3000)
        );
        assert_eq!(ok(":2000->10.0.0.1:3000"), spec(None, 2000, "10.0.0.1", 3000));
        assert_eq!(
            ok("127.0.0.1:2000->127.0.0.2:3000"),
            spec(Some("127.0.0.1"), 2000, "127.0.0.2", 3000)
        );
        assert_eq!(ok("::1:2000->::1:3000"), spec(Some("::1"), 2000, "::1", 3000));
        assert_eq!(ok("[::1]:2000->[::1]:3000"), spec(Some("::1"), 2000, "::1", 3000));
        assert_eq!(
            ok("2000->[fe80::1%lo]:3000"),
            spec(None, 2000, "fe80::1%lo", 3000)
        );
        assert_eq!(ok("0->h:1"), spec(None, 0, "h", 1));
    }

    #[test]
    fn errors_are_one_line() {
        let cases = [
            ("2000", "udp:// destination ('->DST_ADDR:DST_PORT') is missing"),
            ("2000->host", "udp:// destination 'host' has no ':PORT'"),
            ("2000->:3000", "udp:// destination address is missing"),
            ("x->h:3000", "udp:// source port 'x' is not a port number"),
            ("2000->h:70000", "udp:// destination port '70000' is out of range"),
            (
                "2000->h:0",
                "udp:// destination port '0' is not a usable destination port",
            ),
            ("2000->h:", "udp:// destination port is missing"),
            ("->h:1", "udp:// source port is missing"),
            ("[::1:2000->h:1", "udp:// source '[::1:2000' has an unclosed '['"),
            (
                "2000->[::1]3000",
                "udp:// destination '[::1]3000' has no ':PORT' after the address",
            ),
        ];
        for (s, want) in cases {
            let e = parse_udp(s).unwrap_err().to_string();
            assert!(e.starts_with(want), "{s}: {e}");
            assert!(!e.contains('\n'), "{s}: {e}");
        }
    }
}
