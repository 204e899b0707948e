//! Pure VNL parsing (scheme, address, [params], /options, quoting, escapes): no I/O here.
//!
//! A VNL is read as libvdeplug 4.0.1 reads it (libvdeplug.c, parseparms.c): `scheme://rest`
//! where the scheme is everything before the first `://`; a string without `://` is a vde://
//! path; vdens' `=cmd args` is a coprocess. [`parse`] turns a VNL into a [`Spec`], the checked
//! description a transport opens. Where libvdeplug silently accepts a value it cannot use
//! (a `mode=` of junk read as 000, an over-long path cut to fit sun_path, a fd number of
//! "abc" read as 0), vdens-fast refuses it with a one-line error saying what to write instead.
//!
//! A VNL is bytes, as in C: [`parse_os`] and the path parsers (which take anything that is
//! `AsRef<OsStr>`: `&str`, `String`, `OsStr`, `OsString`) read bytes, so a socket path holding bytes that are not UTF-8
//! (`vde:///tmp/\xff`, which classic vdens accepts) reaches [`VdeSpec::dir`], the ptp path and
//! [`NodeSpec::dir`] unchanged.

pub mod argv;
pub mod num;
pub mod overlay;
pub mod params;
pub mod quote;
pub mod udp;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

pub use overlay::OverlaySpec;
pub use params::{Assign, Keys, Parsed, NETNODE_KEYS, PTP_KEYS, VDE_KEYS, VXLAN_KEYS, VXVDE_KEYS};
pub use udp::UdpSpec;

/// Longest socket path: sun_path is 108 bytes including the terminating NUL.
pub const SUN_PATH_MAX: usize = 107;
/// Longest interface name (IFNAMSIZ 16 including the NUL).
pub const IFNAME_MAX: usize = 15;

/// Why a VNL is malformed. Displayed as one line: `why (hint)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VnlError {
    /// A `[key=value]` or `/key=value` naming no key of the scheme (libvdeplug: EINVAL).
    UnknownKey {
        scheme: &'static str,
        key: String,
        accepted: &'static [&'static str],
    },
    /// A value vdens-fast cannot use.
    BadValue {
        what: &'static str,
        value: String,
        why: &'static str,
        hint: &'static str,
    },
    /// A required part is missing.
    Missing { what: &'static str, hint: &'static str },
}

impl fmt::Display for VnlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VnlError::UnknownKey {
                scheme,
                key,
                accepted,
            } => write!(
                f,
                "unknown parameter '{}' for {scheme}:// (accepted: {})",
                key.escape_debug(),
                accepted.join(", ")
            ),
            VnlError::BadValue {
                what,
                value,
                why,
                hint,
            } => write!(f, "{what} '{}' {why} ({hint})", value.escape_debug()),
            VnlError::Missing { what, hint } => write!(f, "{what} is missing ({hint})"),
        }
    }
}

impl std::error::Error for VnlError {}

/// How a VNL names its transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split<'a> {
    /// The scheme without `://`; `vde` for a plain path, `cmd` for `=cmd`.
    pub scheme: &'a str,
    pub rest: &'a str,
    /// `true` when the VNL had no `://` (plain path or `=cmd`).
    pub implicit: bool,
}

/// Splits a VNL into scheme and rest, as libvdeplug (first `://`) and vdens (`=cmd`) do.
pub fn split(vnl: &str) -> Split<'_> {
    if let Some(cmd) = vnl.strip_prefix('=') {
        return Split {
            scheme: "cmd",
            rest: cmd,
            implicit: true,
        };
    }
    match vnl.find("://") {
        Some(i) => Split {
            scheme: &vnl[..i],
            rest: &vnl[i + 3..],
            implicit: false,
        },
        None => Split {
            scheme: "vde",
            rest: vnl,
            implicit: true,
        },
    }
}

/// [`Split`] of a VNL given as bytes (which need not be UTF-8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitOs<'a> {
    /// The scheme without `://`; `vde` for a plain path, `cmd` for `=cmd`.
    pub scheme: &'a OsStr,
    pub rest: &'a OsStr,
    /// `true` when the VNL had no `://` (plain path or `=cmd`).
    pub implicit: bool,
}

/// [`split`] for a VNL that need not be UTF-8.
pub fn split_os<S: AsRef<OsStr> + ?Sized>(vnl: &S) -> SplitOs<'_> {
    let b = vnl.as_ref().as_bytes();
    let (scheme, rest, implicit): (&[u8], &[u8], bool) = if let Some(cmd) = b.strip_prefix(b"=") {
        (b"cmd", cmd, true)
    } else {
        match b.windows(3).position(|w| w == b"://") {
            Some(i) => (&b[..i], &b[i + 3..], false),
            None => (b"vde", b, true),
        }
    };
    SplitOs {
        scheme: OsStr::from_bytes(scheme),
        rest: OsStr::from_bytes(rest),
        implicit,
    }
}

/// `vde://DIR[port/portgroup/group=G/mode=M]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdeSpec {
    /// The switch directory as written; `None` = libvdeplug's fallbacks.
    pub dir: Option<PathBuf>,
    /// A named port group socket `DIR/<name>` to try before `DIR/ctl`.
    pub portgroup: Option<OsString>,
    /// Which port to ask for (`[N]`, `[port=N]`; a numeric port group is a port number).
    pub port: VdePort,
    /// Group owner for the data socket (name or number, resolved when opening).
    pub group: Option<OsString>,
    /// Permissions for the data socket; `None` = 0700, widened as libvdeplug does.
    pub mode: Option<u32>,
}

/// Which switch port a vde:// client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VdePort {
    /// The switch picks one.
    Any,
    /// `[0]`: the switch's port 0 (REQ_NEW_PORT0).
    Zero,
    /// `[N]`, N > 0.
    Number(u32),
}

/// A parsed VNL, ready to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Null,
    Vde(VdeSpec),
    /// `ptp://PATH` or `ptp://PATH[seqpacket]`. libvdeplug (4.0.1 and master) reads no
    /// parameters for ptp and takes the path whole; vdens-fast reads one trailing `[...]` as
    /// its options (`seqpacket`: speak the 2025 SOCK_SEQPACKET protocol, listening when PATH
    /// is new, instead of 4.0.1's datagrams).
    Ptp {
        path: PathBuf,
        seqpacket: bool,
    },
    /// `tap://NAME` (empty name: the kernel picks one).
    Tap {
        name: String,
    },
    /// `seqpacket://FD`: an inherited descriptor.
    Seqpacket {
        fd: i32,
    },
    /// `cmd://CMD ARGS` or `=CMD ARGS`: a coprocess speaking the 2-byte-length stream.
    Cmd {
        argv: Vec<OsString>,
    },
    /// `udp://[SRC_ADDR:]SRC_PORT->DST_ADDR:DST_PORT`.
    Udp(UdpSpec),
    /// `vxlan://[GROUP][/OPTION...]` or `vxvde://[GROUP][/OPTION...]`.
    Overlay(OverlaySpec),
    /// A scheme this module does not parse further (switch, slirp, ...).
    Other {
        scheme: String,
        rest: String,
    },
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// Parses the part after `vde://` (or a plain path).
pub fn parse_vde<S: AsRef<OsStr> + ?Sized>(rest: &S) -> Result<VdeSpec, VnlError> {
    let p = params::path_params(rest.as_ref().as_bytes(), &VDE_KEYS)?;
    let mut spec = VdeSpec {
        dir: (!p.address.is_empty()).then(|| PathBuf::from(os(&p.address))),
        portgroup: None,
        port: VdePort::Any,
        group: p.get("group").map(os),
        mode: None,
    };
    if let Some(pg) = p.last(&[None, Some("port"), Some("portgroup")]) {
        // libvdeplug: a port group starting with a digit and wholly numeric is a port number;
        // anything else (even "3abc") names a port group socket.
        let (n, used) = num::strtol(pg, 10);
        if pg.first().is_some_and(u8::is_ascii_digit) && used == pg.len() {
            spec.port = match n {
                0 => VdePort::Zero,
                // The request type carries the port shifted left by 8 in a u32.
                1..=0x00ff_ffff => VdePort::Number(n as u32),
                _ => {
                    return Err(VnlError::BadValue {
                        what: "vde:// port",
                        value: lossy(pg),
                        why: "is out of range",
                        hint: "switch ports are small numbers, e.g. [4]",
                    })
                }
            };
        } else if !pg.is_empty() {
            spec.portgroup = Some(os(pg));
        }
    }
    if let Some(m) = p.get("mode") {
        spec.mode = Some(parse_mode(m)?);
    }
    if let Some(g) = &spec.group {
        if g.is_empty() {
            return Err(VnlError::BadValue {
                what: "vde:// group",
                value: String::new(),
                why: "is empty",
                hint: "give a group name or number, e.g. [group=vde]",
            });
        }
    }
    Ok(spec)
}

/// A socket permission value: octal digits only, some permission set, at most 0777.
pub fn parse_mode(m: &[u8]) -> Result<u32, VnlError> {
    let bad = |why| VnlError::BadValue {
        what: "mode",
        value: lossy(m),
        why,
        hint: "give octal permissions such as mode=700 or mode=770",
    };
    if m.is_empty() || !m.iter().all(|c| (b'0'..=b'7').contains(c)) {
        return Err(bad("is not an octal permission"));
    }
    let (v, _) = num::strtol(m, 8);
    if v > 0o777 {
        return Err(bad("is more than 777"));
    }
    if v == 0 {
        return Err(bad("grants no access, so the switch could not reach this port"));
    }
    Ok(v as u32)
}

/// A directory's permissions (`dirmode=`): octal, some permission set, at most 07777: the
/// set-group-ID bit (02000, which makes the sockets created in it take its group) and the
/// sticky bit are a directory's to have, as libvdeplug_switch and vde_switch's --dirmode take
/// them (`dirmode=2770`).
pub fn parse_dirmode(m: &[u8]) -> Result<u32, VnlError> {
    let bad = |why| VnlError::BadValue {
        what: "dirmode",
        value: lossy(m),
        why,
        hint: "give octal permissions such as dirmode=2770 or dirmode=700",
    };
    if m.is_empty() || !m.iter().all(|c| (b'0'..=b'7').contains(c)) {
        return Err(bad("is not an octal permission"));
    }
    let (v, _) = num::strtol(m, 8);
    if v > 0o7777 {
        return Err(bad("is more than 7777"));
    }
    if v & 0o777 == 0 {
        return Err(bad("grants no access, so no client could reach the switch"));
    }
    Ok(v as u32)
}

/// Parses `ptp://PATH[seqpacket]`: the path (taken literally, as libvdeplug does) and whether
/// the 2025 seqpacket protocol was asked for. Only a trailing `[...]` is read as options, so a
/// path holding brackets elsewhere still works; a path that itself ends in `[...]` is written
/// with empty options after it (`ptp:///tmp/p[x][]`), while `ptp:///tmp/p[x]` asks for an
/// option `x` (an error).
pub fn parse_ptp<S: AsRef<OsStr> + ?Sized>(rest: &S) -> Result<(PathBuf, bool), VnlError> {
    let rest = rest.as_ref().as_bytes();
    let (rest, seqpacket) = match rest.iter().rposition(|&c| c == b'[') {
        Some(i) if rest.ends_with(b"]") => {
            let p = params::path_params(&rest[i..], &PTP_KEYS)?;
            if let Some(v) = p.get("seqpacket").filter(|v| !v.is_empty()) {
                return Err(VnlError::BadValue {
                    what: "ptp:// option seqpacket",
                    value: lossy(v),
                    why: "takes no value",
                    hint: "write ptp:///tmp/mylink[seqpacket]",
                });
            }
            (&rest[..i], p.get("seqpacket").is_some())
        }
        _ => (rest, false),
    };
    if rest.is_empty() {
        return Err(VnlError::Missing {
            what: "ptp:// path",
            hint: "write ptp:///tmp/mylink",
        });
    }
    // The second opener binds PATH+, so PATH itself must leave room for one more byte.
    if rest.len() + 1 > SUN_PATH_MAX || rest.contains(&0) {
        return Err(VnlError::BadValue {
            what: "ptp:// path",
            value: lossy(rest),
            why: "does not fit a socket address",
            hint: "AF_UNIX paths hold 107 bytes and ptp appends '+': use a shorter path",
        });
    }
    Ok((PathBuf::from(os(rest)), seqpacket))
}

/// Parses `tap://NAME`.
pub fn parse_tap(rest: &str) -> Result<String, VnlError> {
    if rest.len() > IFNAME_MAX
        || rest
            .bytes()
            .any(|c| c == 0 || c == b'/' || c.is_ascii_whitespace())
    {
        return Err(VnlError::BadValue {
            what: "tap:// interface name",
            value: rest.to_string(),
            why: "is not a valid interface name",
            hint: "at most 15 bytes, no '/', no blanks",
        });
    }
    Ok(rest.to_string())
}

/// Parses `seqpacket://FD` (libvdeplug reads it with strtol base 0: `0x10` and `010` work).
pub fn parse_seqpacket(rest: &str) -> Result<i32, VnlError> {
    let (v, used) = num::strtol(rest.as_bytes(), 0);
    if used == 0 || used != rest.len() || !rest.as_bytes()[0].is_ascii_digit() {
        return Err(VnlError::BadValue {
            what: "seqpacket:// descriptor",
            value: rest.to_string(),
            why: "is not a number",
            hint: "give the number of an inherited SOCK_SEQPACKET descriptor, e.g. seqpacket://3",
        });
    }
    i32::try_from(v).map_err(|_| VnlError::BadValue {
        what: "seqpacket:// descriptor",
        value: rest.to_string(),
        why: "is out of range",
        hint: "descriptor numbers are small non-negative integers",
    })
}

/// Parses a coprocess command (`=CMD ARGS`, `cmd://CMD ARGS`).
pub fn parse_cmd(rest: &str) -> Result<Vec<OsString>, VnlError> {
    parse_cmd_bytes(rest.as_bytes())
}

/// [`parse_cmd`] of bytes (arguments need not be UTF-8).
pub fn parse_cmd_bytes(rest: &[u8]) -> Result<Vec<OsString>, VnlError> {
    let argv: Vec<OsString> = argv::split(rest).into_iter().map(OsString::from_vec).collect();
    if argv.first().map_or(true, |a| a.is_empty()) {
        return Err(VnlError::Missing {
            what: "coprocess command",
            hint: "write =vde_plug vde:///tmp/sw or cmd://'vde_plug vde:///tmp/sw'",
        });
    }
    Ok(argv)
}

/// libvdeplug netnode defaults.
pub const STD_MODE: u32 = 0o600;
pub const STD_DIRMODE: u32 = 0o2700;
pub const STD_HASHSIZE: usize = 256;
pub const STD_EXPIRE: u64 = 120;

/// A parsed `switch://DIR[...]` or `hub://DIR[...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub hub: bool,
    /// Empty: the default `/tmp/vdenode_<user>`.
    pub dir: PathBuf,
    pub mode: u32,
    pub dirmode: u32,
    pub grp: Option<OsString>,
    pub hashsize: usize,
    pub expire: u64,
    pub seed: u64,
}

/// Parses the part after `switch://` or `hub://` (options as libvdeplug_netnode.c reads them).
pub fn parse_netnode<S: AsRef<OsStr> + ?Sized>(hub: bool, rest: &S) -> Result<NodeSpec, VnlError> {
    let p = params::path_params(rest.as_ref().as_bytes(), &NETNODE_KEYS)?;
    let mut s = NodeSpec {
        hub,
        dir: PathBuf::from(os(&p.address)),
        mode: STD_MODE,
        dirmode: STD_DIRMODE,
        grp: p.get("grp").map(os),
        hashsize: STD_HASHSIZE,
        expire: STD_EXPIRE,
        seed: 0,
    };
    if let Some(m) = p.get("mode") {
        s.mode = parse_mode(m)? & !0o111;
        s.dirmode = 0o2000 | s.mode | (s.mode & 0o444) >> 2 | (s.mode & 0o222) >> 1;
    }
    if let Some(m) = p.get("dirmode") {
        s.dirmode = parse_dirmode(m)?;
    }
    if let Some(h) = p.get("hashsize") {
        s.hashsize = (num::strtoullm(h) as usize).clamp(1, 1 << 20);
    }
    if let Some(e) = p.get("expiretime") {
        s.expire = num::strtoullm(e);
    }
    if let Some(e) = p.get("hashseed") {
        s.seed = num::strtoullm(e);
    }
    Ok(s)
}

/// Parses a VNL into what a transport needs, with no I/O ([`parse_os`] of a VNL that is text).
pub fn parse(vnl: &str) -> Result<Spec, VnlError> {
    parse_os(OsStr::new(vnl))
}

/// Parses a VNL given as bytes, which need not be UTF-8, as libvdeplug and vdens take it.
///
/// Paths are kept as the bytes given. [`Spec::Other`] carries its scheme and rest as text
/// (bytes that are not UTF-8 replaced): a hosted `switch://`/`hub://` with such a path is
/// parsed from the bytes with [`split_os`] and [`parse_netnode`].
pub fn parse_os(vnl: &OsStr) -> Result<Spec, VnlError> {
    let s = split_os(vnl);
    let rest = s.rest.as_bytes();
    let text = || lossy(rest);
    Ok(match s.scheme.as_bytes() {
        b"null" => Spec::Null,
        b"vde" => Spec::Vde(parse_vde(s.rest)?),
        b"ptp" => {
            let (path, seqpacket) = parse_ptp(s.rest)?;
            Spec::Ptp { path, seqpacket }
        }
        b"tap" => Spec::Tap {
            name: parse_tap(&text())?,
        },
        b"seqpacket" => Spec::Seqpacket {
            fd: parse_seqpacket(&text())?,
        },
        b"cmd" => Spec::Cmd {
            argv: parse_cmd_bytes(rest)?,
        },
        b"udp" => Spec::Udp(udp::parse_udp(&text())?),
        b"switch" | b"hub" => {
            params::path_params(rest, &NETNODE_KEYS)?;
            Spec::Other {
                scheme: lossy(s.scheme.as_bytes()),
                rest: text(),
            }
        }
        b"vxlan" => Spec::Overlay(overlay::parse_overlay(false, &text())?),
        b"vxvde" => Spec::Overlay(overlay::parse_overlay(true, &text())?),
        _ => Spec::Other {
            scheme: lossy(s.scheme.as_bytes()),
            rest: text(),
        },
    })
}

#[cfg(test)]
mod tests;

/// Malformed VNLs and a part of the one-line error each must give: the unit tests check the
/// parser with it, and tests/bad_vnl.rs checks that vdens-fast stops on each before it creates
/// any namespace.
#[doc(hidden)]
pub const MALFORMED: &[(&str, &str)] = &[
    (
        "vde:///tmp/sw[colour=red]",
        "unknown parameter 'colour' for vde:// (accepted: port, portgroup, group, mode)",
    ),
    (
        "/tmp/sw[mode=abc]",
        "mode 'abc' is not an octal permission (give octal permissions such as mode=700 or mode=770)",
    ),
    ("/tmp/sw[mode=]", "mode '' is not an octal permission"),
    ("/tmp/sw[m]", "mode '' is not an octal permission"),
    ("/tmp/sw[mode=000]", "mode '000' grants no access"),
    ("/tmp/sw[mode=1777]", "mode '1777' is more than 777"),
    ("/tmp/sw[mode=789]", "is not an octal permission"),
    (
        "/tmp/sw[99999999999]",
        "vde:// port '99999999999' is out of range",
    ),
    ("/tmp/sw[group=]", "vde:// group '' is empty"),
    ("/tmp/sw[g]", "vde:// group '' is empty"),
    ("ptp://", "ptp:// path is missing (write ptp:///tmp/mylink)"),
    ("ptp://[seqpacket]", "ptp:// path is missing"),
    (
        "ptp:///tmp/p[x]",
        "unknown parameter 'x' for ptp:// (accepted: seqpacket)",
    ),
    (
        "ptp:///tmp/p[seqpacket=yes]",
        "ptp:// option seqpacket 'yes' takes no value",
    ),
    ("tap://a/b", "is not a valid interface name"),
    ("tap://a b", "is not a valid interface name"),
    ("seqpacket://", "seqpacket:// descriptor '' is not a number"),
    ("seqpacket://3x", "is not a number"),
    ("seqpacket://-1", "is not a number"),
    ("seqpacket:// 3", "is not a number"),
    ("seqpacket://99999999999", "is out of range"),
    ("=", "coprocess command is missing"),
    ("cmd://", "coprocess command is missing"),
    ("cmd://   ", "coprocess command is missing"),
    ("=''", "coprocess command is missing"),
    ("switch:///tmp/s[3]", "unknown parameter '3' for switch://"),
    (
        "vxlan://239.0.0.1/colour=1",
        "unknown parameter 'colour' for vxlan://",
    ),
    ("vxvde://239.0.0.1/x", "unknown parameter 'x' for vxvde://"),
    (
        "vxlan://10.1.2.3",
        "vxlan:// group '10.1.2.3' is not a multicast address",
    ),
    (
        "vxlan://239.0.0.999",
        "vxlan:// group '239.0.0.999' is not an IPv4 address",
    ),
    ("vxlan:///vni=16777216", "vxlan:// vni '16777216' is out of range"),
    ("vxlan:///port=0", "vxlan:// port '0' is out of range"),
    ("vxvde:///port=99999", "vxvde:// port '99999' is out of range"),
    (
        "vxvde://224.1.1.1/vni=x1/ttl=300",
        "vxvde:// ttl '300' is out of range",
    ),
];
