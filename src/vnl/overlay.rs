//! `vxlan://[GROUP][/OPTION...]` and `vxvde://[GROUP][/OPTION...]`, with the options and
//! defaults of libvdeplug_vxlan.c and libvdeplug_vxvde.c (4.0.1).
//!
//! Where the classic plugins read a value with atoi (vni, ttl, hashsize, expiretime) and so
//! take "abc" as 0 and "3x" as 3, or ignore a value they cannot use (an unknown `if=`
//! interface, a `vni=` group that does not exist), vdens-fast refuses it with a one-line error.
//! Names that need the system (a group address given as a host name, interface names,
//! group names for the vxvde VNI) are kept as written and resolved when the link is opened.

use super::params::{self, Parsed, VXLAN_KEYS, VXVDE_KEYS};
use super::{VnlError, IFNAME_MAX};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The classic plugins' default groups.
pub const DEFAULT_GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 0, 0, 1);
pub const DEFAULT_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff05, 0x56de, 0, 0, 0, 0, 0, 1);
/// Default port: IANA's VXLAN port, and vxvde's own.
pub const VXLAN_PORT: u16 = crate::wire::vxlan::VXLAN_PORT;
pub const VXVDE_PORT: u16 = crate::wire::vxlan::VXVDE_PORT;
/// Defaults shared by both plugins.
pub const STD_TTL: u32 = 1;
pub const STD_VNI: u32 = 1;
pub const STD_HASHSIZE: usize = 1024;
pub const STD_EXPIRE: u64 = 128;
/// Largest hash table vdens-fast allocates (entries).
pub const MAX_HASHSIZE: usize = 1 << 20;

/// Which address family the `/v4` and `/v6` options allow (both or neither: any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

/// The multicast group, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Group {
    /// A literal address, checked to be multicast.
    Ip(IpAddr),
    /// A host name, resolved (and checked) when the link is opened.
    Name(String),
}

/// A vxvde `vni=` or `grp=` value: a group of the system or a number (vde_grnam2gid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gid {
    /// Empty value: the effective group id.
    Egid,
    Number(u32),
    Name(String),
}

/// A parsed vxlan:// or vxvde:// VNL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlaySpec {
    /// vxvde:// (else vxlan://).
    pub vxvde: bool,
    pub group: Group,
    pub family: Family,
    pub port: u16,
    /// vxlan: the VNI (always a number); vxvde: `vni=` as written, if given.
    pub vni: Option<Gid>,
    /// vxvde `grp=`: sets the VNI (unless `vni=` does) and the group address's last 3 bytes.
    pub grp: Option<Gid>,
    pub ttl: u32,
    /// SO_RCVBUF in bytes, if given.
    pub rcvbuf: Option<u64>,
    /// MAC learning table size; 0 = no learning (everything to the group).
    pub hashsize: usize,
    /// Seconds a learnt MAC stays valid.
    pub expire: u64,
    /// `if=`: the interface multicast goes through.
    pub ifname: Option<String>,
    /// vxvde `bind=`: the local address of the unicast socket.
    pub bind: Option<String>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `what` of an error about option `key` of the scheme.
fn what(vxvde: bool, key: &str) -> &'static str {
    match (vxvde, key) {
        (false, "group") => "vxlan:// group",
        (true, "group") => "vxvde:// group",
        (false, "port") => "vxlan:// port",
        (true, "port") => "vxvde:// port",
        (false, "vni") => "vxlan:// vni",
        (true, "vni") => "vxvde:// vni",
        (true, "grp") => "vxvde:// grp",
        (false, "ttl") => "vxlan:// ttl",
        (true, "ttl") => "vxvde:// ttl",
        (false, "rcvbuf") => "vxlan:// rcvbuf",
        (true, "rcvbuf") => "vxvde:// rcvbuf",
        (false, "hashsize") => "vxlan:// hashsize",
        (true, "hashsize") => "vxvde:// hashsize",
        (false, "expiretime") => "vxlan:// expiretime",
        (true, "expiretime") => "vxvde:// expiretime",
        (false, "if") => "vxlan:// interface",
        (true, "if") => "vxvde:// interface",
        (_, _) => "vxvde:// bind address",
    }
}

/// A decimal number (digits only) no larger than `max`.
fn decimal(
    vxvde: bool,
    key: &str,
    v: &[u8],
    min: u64,
    max: u64,
    hint: &'static str,
) -> Result<u64, VnlError> {
    let bad = |why| VnlError::BadValue {
        what: what(vxvde, key),
        value: lossy(v),
        why,
        hint,
    };
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad("is not a decimal number"));
    }
    match std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad("is out of range")),
    }
}

const VNI_HINT: &str = "VNIs are 24-bit numbers: 0 to 16777215";

fn gid(vxvde: bool, key: &str, v: &[u8]) -> Result<Gid, VnlError> {
    if v.is_empty() {
        return Ok(Gid::Egid);
    }
    if v.iter().all(u8::is_ascii_digit) {
        return Ok(Gid::Number(
            decimal(vxvde, key, v, 0, crate::wire::vxlan::MAX_VNI as u64, VNI_HINT)? as u32,
        ));
    }
    Ok(Gid::Name(lossy(v)))
}

/// Parses a group address as written: literal addresses must be multicast; anything else
/// (no ':' and not only digits and dots) is a host name.
fn group(vxvde: bool, a: &[u8], family: Family) -> Result<Group, VnlError> {
    let w = what(vxvde, "group");
    let s = lossy(a);
    let hint = "write a multicast group such as 239.0.0.1 or ff05:56de::1";
    let ip: IpAddr = if s.contains(':') {
        let inner = s
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(&s);
        match inner.parse::<Ipv6Addr>() {
            Ok(v6) => IpAddr::V6(v6),
            Err(_) => {
                return Err(VnlError::BadValue {
                    what: w,
                    value: s,
                    why: "is not an IPv6 address",
                    hint,
                })
            }
        }
    } else if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        match s.parse::<Ipv4Addr>() {
            Ok(v4) => IpAddr::V4(v4),
            Err(_) => {
                return Err(VnlError::BadValue {
                    what: w,
                    value: s,
                    why: "is not an IPv4 address",
                    hint,
                })
            }
        }
    } else {
        if s.bytes().any(|c| c == 0 || c.is_ascii_whitespace()) {
            return Err(VnlError::BadValue {
                what: w,
                value: s,
                why: "is not an address or a host name",
                hint,
            });
        }
        return Ok(Group::Name(s));
    };
    if !ip.is_multicast() {
        return Err(VnlError::BadValue {
            what: w,
            value: s,
            why: "is not a multicast address",
            hint: "groups are in 224.0.0.0/4 or ff00::/8, e.g. 239.0.0.1 or ff05:56de::1",
        });
    }
    match (family, ip) {
        (Family::V4, IpAddr::V6(_)) => Err(VnlError::BadValue {
            what: w,
            value: s,
            why: "is IPv6, but /v4 asks for IPv4",
            hint: "drop /v4 or give an IPv4 group",
        }),
        (Family::V6, IpAddr::V4(_)) => Err(VnlError::BadValue {
            what: w,
            value: s,
            why: "is IPv4, but /v6 asks for IPv6",
            hint: "drop /v6 or give an IPv6 group",
        }),
        _ => Ok(Group::Ip(ip)),
    }
}

/// Parses the part after `vxlan://` (`vxvde` false) or `vxvde://`.
pub fn parse_overlay(vxvde: bool, rest: &str) -> Result<OverlaySpec, VnlError> {
    let keys = if vxvde { &VXVDE_KEYS } else { &VXLAN_KEYS };
    let p: Parsed = params::options(rest.as_bytes(), keys)?;
    let (v4, v6) = (p.get("v4").is_some(), p.get("v6").is_some());
    let family = match (v4, v6) {
        (true, false) => Family::V4,
        (false, true) => Family::V6,
        _ => Family::Any,
    };
    let group = if p.address.is_empty() {
        // libvdeplug: the IPv6 default when /v6 is given (even with /v4), else the IPv4 one.
        Group::Ip(if v6 {
            IpAddr::V6(DEFAULT_GROUP_V6)
        } else {
            IpAddr::V4(DEFAULT_GROUP_V4)
        })
    } else {
        group(vxvde, &p.address, family)?
    };
    Ok(OverlaySpec {
        vxvde,
        group,
        family,
        port: port_of(vxvde, &p)?,
        vni: vni_of(vxvde, &p)?,
        grp: p.get("grp").map(|v| gid(true, "grp", v)).transpose()?,
        ttl: ttl_of(vxvde, &p)?,
        rcvbuf: rcvbuf_of(vxvde, &p)?,
        hashsize: hashsize_of(vxvde, &p)?,
        expire: expire_of(vxvde, &p)?,
        ifname: ifname_of(vxvde, &p)?,
        bind: p.get("bind").map(lossy),
    })
}

/// `port=`: the UDP port (default: the plugin's own).
fn port_of(vxvde: bool, p: &Parsed) -> Result<u16, VnlError> {
    Ok(match p.get("port") {
        None if vxvde => VXVDE_PORT,
        None => VXLAN_PORT,
        Some(v) => decimal(
            vxvde,
            "port",
            v,
            1,
            65535,
            "ports are decimal numbers from 1 to 65535",
        )? as u16,
    })
}

/// `vni=`: a number for vxlan (default 1); for vxvde a group of the system or a number
/// (default: none, the effective group).
fn vni_of(vxvde: bool, p: &Parsed) -> Result<Option<Gid>, VnlError> {
    Ok(match p.get("vni") {
        None if vxvde => None,
        None => Some(Gid::Number(STD_VNI)),
        Some(v) if vxvde => Some(gid(true, "vni", v)?),
        Some(v) => Some(Gid::Number(
            decimal(false, "vni", v, 0, crate::wire::vxlan::MAX_VNI as u64, VNI_HINT)? as u32,
        )),
    })
}

/// `ttl=`: the multicast TTL (default 1).
fn ttl_of(vxvde: bool, p: &Parsed) -> Result<u32, VnlError> {
    Ok(match p.get("ttl") {
        None => STD_TTL,
        Some(v) => decimal(
            vxvde,
            "ttl",
            v,
            0,
            255,
            "a TTL is 0 to 255; 1 keeps multicast on the local link",
        )? as u32,
    })
}

/// `rcvbuf=`: the socket's receive buffer, a size (default: the system's).
fn rcvbuf_of(vxvde: bool, p: &Parsed) -> Result<Option<u64>, VnlError> {
    let Some(v) = p.get("rcvbuf") else {
        return Ok(None);
    };
    match super::num::strict_size(v) {
        Some(n) if n > 0 && n <= i32::MAX as u64 => Ok(Some(n)),
        _ => Err(VnlError::BadValue {
            what: what(vxvde, "rcvbuf"),
            value: lossy(v),
            why: "is not a usable size",
            hint: "give a size in bytes such as rcvbuf=4M",
        }),
    }
}

/// `hashsize=`: entries of the learning table (0: no learning).
fn hashsize_of(vxvde: bool, p: &Parsed) -> Result<usize, VnlError> {
    Ok(match p.get("hashsize") {
        None => STD_HASHSIZE,
        Some(v) => decimal(
            vxvde,
            "hashsize",
            v,
            0,
            MAX_HASHSIZE as u64,
            "a table size up to 1048576 entries; 0 turns learning off",
        )? as usize,
    })
}

/// `expiretime=`: seconds a learnt address stays valid (libvdeplug: 0 means the default).
fn expire_of(vxvde: bool, p: &Parsed) -> Result<u64, VnlError> {
    let Some(v) = p.get("expiretime") else {
        return Ok(STD_EXPIRE);
    };
    Ok(
        match decimal(
            vxvde,
            "expiretime",
            v,
            0,
            u32::MAX as u64,
            "give the seconds a learnt address stays valid, e.g. expiretime=128",
        )? {
            0 => STD_EXPIRE,
            n => n,
        },
    )
}

/// `if=`: the interface multicast goes through, checked to be a possible name.
fn ifname_of(vxvde: bool, p: &Parsed) -> Result<Option<String>, VnlError> {
    let Some(v) = p.get("if") else {
        return Ok(None);
    };
    let s = lossy(v);
    if s.is_empty()
        || s.len() > IFNAME_MAX
        || s.bytes().any(|c| c == 0 || c == b'/' || c.is_ascii_whitespace())
    {
        return Err(VnlError::BadValue {
            what: what(vxvde, "if"),
            value: s,
            why: "is not a valid interface name",
            hint: "name the interface multicast goes through, e.g. if=eth0",
        });
    }
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(vxvde: bool, s: &str) -> OverlaySpec {
        parse_overlay(vxvde, s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn defaults() {
        let s = ok(false, "");
        assert_eq!(s.group, Group::Ip("239.0.0.1".parse().unwrap()));
        assert_eq!((s.port, s.ttl, s.hashsize, s.expire), (4789, 1, 1024, 128));
        assert_eq!(s.vni, Some(Gid::Number(1)));
        assert_eq!(s.family, Family::Any);
        let s = ok(true, "");
        assert_eq!(s.port, 14789);
        assert_eq!(s.vni, None);
        let s = ok(false, "/v6");
        assert_eq!(s.group, Group::Ip("ff05:56de::1".parse().unwrap()));
        assert_eq!(s.family, Family::V6);
        let s = ok(true, "/v4/v6");
        assert_eq!(s.group, Group::Ip("ff05:56de::1".parse().unwrap()));
        assert_eq!(s.family, Family::Any);
    }

    #[test]
    fn options() {
        let s = ok(
            false,
            "239.1.2.3/vni=42/port=5000/ttl=4/rcvbuf=1M/hashsize=0/expiretime=0/if=veth0",
        );
        assert_eq!(s.group, Group::Ip("239.1.2.3".parse().unwrap()));
        assert_eq!(s.vni, Some(Gid::Number(42)));
        assert_eq!((s.port, s.ttl, s.hashsize, s.expire), (5000, 4, 0, 128));
        assert_eq!(s.rcvbuf, Some(1 << 20));
        assert_eq!(s.ifname.as_deref(), Some("veth0"));
        let s = ok(false, "[ff15::3]/port=12345/vni=16777215");
        assert_eq!(s.group, Group::Ip("ff15::3".parse().unwrap()));
        assert_eq!(s.vni, Some(Gid::Number(0xffffff)));
        let s = ok(false, "mcast.example");
        assert_eq!(s.group, Group::Name("mcast.example".into()));
        let s = ok(true, "ff05::9/vni=staff/grp=/bind=10.0.0.1");
        assert_eq!(s.vni, Some(Gid::Name("staff".into())));
        assert_eq!(s.grp, Some(Gid::Egid));
        assert_eq!(s.bind.as_deref(), Some("10.0.0.1"));
        let s = ok(true, "/grp=300");
        assert_eq!(s.grp, Some(Gid::Number(300)));
    }

    #[test]
    fn errors_are_one_line() {
        let cases: &[(bool, &str, &str)] = &[
            (
                false,
                "239.0.0.999",
                "vxlan:// group '239.0.0.999' is not an IPv4 address",
            ),
            (
                false,
                "10.1.2.3",
                "vxlan:// group '10.1.2.3' is not a multicast address",
            ),
            (
                true,
                "fe80::1",
                "vxvde:// group 'fe80::1' is not a multicast address",
            ),
            (
                false,
                "ff05::zz",
                "vxlan:// group 'ff05::zz' is not an IPv6 address",
            ),
            (false, "239.0.0.1/v6", "is IPv4, but /v6 asks for IPv6"),
            (false, "ff05::1/v4", "is IPv6, but /v4 asks for IPv4"),
            (
                false,
                "/vni=16777216",
                "vxlan:// vni '16777216' is out of range (VNIs are 24-bit",
            ),
            (false, "/vni=abc", "vxlan:// vni 'abc' is not a decimal number"),
            (false, "/vni=-1", "vxlan:// vni '-1' is not a decimal number"),
            (false, "/vni=", "vxlan:// vni '' is not a decimal number"),
            (true, "/vni=99999999", "vxvde:// vni '99999999' is out of range"),
            (false, "/port=0", "vxlan:// port '0' is out of range"),
            (true, "/port=65536", "vxvde:// port '65536' is out of range"),
            (
                false,
                "/port=http",
                "vxlan:// port 'http' is not a decimal number",
            ),
            (false, "/ttl=256", "vxlan:// ttl '256' is out of range"),
            (
                false,
                "/rcvbuf=lots",
                "vxlan:// rcvbuf 'lots' is not a usable size",
            ),
            (
                false,
                "/hashsize=9999999",
                "vxlan:// hashsize '9999999' is out of range",
            ),
            (
                false,
                "/expiretime=soon",
                "vxlan:// expiretime 'soon' is not a decimal number",
            ),
            (
                false,
                "/if=",
                "vxlan:// interface '' is not a valid interface name",
            ),
            (false, "/grp=1", "unknown parameter 'grp' for vxlan://"),
            (false, "/bind=1.2.3.4", "unknown parameter 'bind' for vxlan://"),
        ];
        for (vxvde, s, want) in cases {
            let e = parse_overlay(*vxvde, s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
            assert!(!e.contains('\n'), "{s}: {e}");
        }
    }
}
