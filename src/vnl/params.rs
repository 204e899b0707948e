//! `path[key=value/key/...]` (vde_parsepathparms) and `address/key=value/...` (vde_parseparms),
//! as libvdeplug 4.0.1 reads them.
//!
//! Facts of the reference parser kept here on purpose:
//! - a key may be abbreviated: `[m=770]` sets `mode`; the first key of the scheme's list that
//!   starts with what was written wins;
//! - a key written without `=` gets the empty value;
//! - in brackets, an element with no `=` that names no key is the positional value (the vde
//!   port or port group), when the scheme has one; the last assignment wins;
//! - everything after the last unquoted `]` is ignored, and a missing `]` is accepted;
//! - empty elements (`[/port=1//]`, `[=x]`) are ignored;
//! - an unknown key is the one error (EINVAL in libvdeplug).

use super::quote::{before_last, token};
use super::VnlError;

/// Which keys a scheme accepts, in libvdeplug's order (order decides abbreviations).
#[derive(Clone, Copy, Debug)]
pub struct Keys {
    pub scheme: &'static str,
    /// A bare element that names no key is the positional value (vde's `[N]` / `[group]`).
    pub positional: bool,
    pub keys: &'static [&'static str],
}

/// vde:// (libvdeplug_vde.c): positional port/portgroup, then these keys.
pub const VDE_KEYS: Keys = Keys {
    scheme: "vde",
    positional: true,
    keys: &["port", "portgroup", "group", "mode"],
};
/// switch:// and hub:// (libvdeplug_netnode.c).
pub const NETNODE_KEYS: Keys = Keys {
    scheme: "switch",
    positional: false,
    keys: &["mode", "dirmode", "grp", "hashsize", "hashseed", "expiretime"],
};
/// ptp:// options: a vdens-fast extension (libvdeplug takes a ptp path whole), read only
/// from a trailing `[...]`.
pub const PTP_KEYS: Keys = Keys {
    scheme: "ptp",
    positional: false,
    keys: &["seqpacket"],
};
/// vxlan:// options (libvdeplug_vxlan.c).
pub const VXLAN_KEYS: Keys = Keys {
    scheme: "vxlan",
    positional: false,
    keys: &[
        "port",
        "vni",
        "ttl",
        "rcvbuf",
        "v6",
        "v4",
        "hashsize",
        "expiretime",
        "if",
    ],
};
/// vxvde:// options (libvdeplug_vxvde.c).
pub const VXVDE_KEYS: Keys = Keys {
    scheme: "vxvde",
    positional: false,
    keys: &[
        "port",
        "vni",
        "grp",
        "ttl",
        "rcvbuf",
        "v6",
        "v4",
        "hashsize",
        "expiretime",
        "if",
        "bind",
    ],
};

/// One assignment, in the order written. `key` is `None` for the positional value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assign {
    pub key: Option<&'static str>,
    pub value: Vec<u8>,
}

/// The result of parsing: the address/path part, quotes and escapes removed, and the
/// assignments in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub address: Vec<u8>,
    pub assigns: Vec<Assign>,
}

impl Parsed {
    /// The value last assigned to any of `keys` (`None` in `keys` = the positional value), as
    /// libvdeplug stores several keys into one variable (vde's `""`, `port`, `portgroup`).
    pub fn last(&self, keys: &[Option<&str>]) -> Option<&[u8]> {
        self.assigns
            .iter()
            .rev()
            .find(|a| keys.contains(&a.key))
            .map(|a| a.value.as_slice())
    }

    /// The value last assigned to `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.last(&[Some(key)])
    }
}

fn assign(elem: Vec<u8>, keys: &Keys, out: &mut Vec<Assign>) -> Result<(), VnlError> {
    let eq = elem.iter().position(|&b| b == b'=');
    let taglen = eq.unwrap_or(elem.len());
    if taglen == 0 {
        return Ok(());
    }
    let tag = &elem[..taglen];
    let found = keys
        .keys
        .iter()
        .find(|k| k.len() >= taglen && &k.as_bytes()[..taglen] == tag);
    match (found, eq) {
        (Some(k), Some(e)) => out.push(Assign {
            key: Some(k),
            value: elem[e + 1..].to_vec(),
        }),
        (Some(k), None) => out.push(Assign {
            key: Some(k),
            value: Vec::new(),
        }),
        (None, None) if keys.positional => out.push(Assign {
            key: None,
            value: elem,
        }),
        (None, _) => {
            return Err(VnlError::UnknownKey {
                scheme: keys.scheme,
                key: String::from_utf8_lossy(tag).into_owned(),
                accepted: keys.keys,
            })
        }
    }
    Ok(())
}

/// `path[param/key=value]` (vde_parsepathparms): vde://, switch://, hub://.
pub fn path_params(s: &[u8], keys: &Keys) -> Result<Parsed, VnlError> {
    let (address, rest) = token(s, b'[');
    let mut parsed = Parsed {
        address,
        assigns: Vec::new(),
    };
    if let Some(rest) = rest {
        let mut next = Some(before_last(rest, b']'));
        while let Some(s) = next {
            let (elem, r) = token(s, b'/');
            assign(elem, keys, &mut parsed.assigns)?;
            next = r;
        }
    }
    Ok(parsed)
}

/// `address/key=value/key` (vde_parseparms): vxlan://, vxvde://.
pub fn options(s: &[u8], keys: &Keys) -> Result<Parsed, VnlError> {
    let (address, mut next) = token(s, b'/');
    let mut parsed = Parsed {
        address,
        assigns: Vec::new(),
    };
    while let Some(s) = next {
        let (elem, r) = token(s, b'/');
        assign(elem, keys, &mut parsed.assigns)?;
        next = r;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(key: Option<&'static str>, v: &str) -> Assign {
        Assign {
            key,
            value: v.as_bytes().to_vec(),
        }
    }

    #[test]
    fn vde_path_params_table() {
        let p = |s: &str| path_params(s.as_bytes(), &VDE_KEYS);
        let ok: &[(&str, &str, Vec<Assign>)] = &[
            ("/tmp/sw", "/tmp/sw", vec![]),
            ("", "", vec![]),
            ("/tmp/sw[3]", "/tmp/sw", vec![a(None, "3")]),
            ("/tmp/sw[]", "/tmp/sw", vec![]),
            ("/tmp/sw[3", "/tmp/sw", vec![a(None, "3")]),
            ("/tmp/sw[3]junk", "/tmp/sw", vec![a(None, "3")]),
            ("/tmp/sw[blue]", "/tmp/sw", vec![a(None, "blue")]),
            (
                "/tmp/sw[port=4/mode=770]",
                "/tmp/sw",
                vec![a(Some("port"), "4"), a(Some("mode"), "770")],
            ),
            ("/tmp/sw[m=770]", "/tmp/sw", vec![a(Some("mode"), "770")]),
            ("/tmp/sw[g]", "/tmp/sw", vec![a(Some("group"), "")]),
            ("/tmp/sw[p=1]", "/tmp/sw", vec![a(Some("port"), "1")]),
            ("/tmp/sw[portg=x]", "/tmp/sw", vec![a(Some("portgroup"), "x")]),
            ("/tmp/sw[//3//]", "/tmp/sw", vec![a(None, "3")]),
            ("/tmp/sw[=x]", "/tmp/sw", vec![]),
            ("'/tmp/a[b'[2]", "/tmp/a[b", vec![a(None, "2")]),
            ("/tmp/a\\[b[2]", "/tmp/a[b", vec![a(None, "2")]),
            ("/tmp/%41[mode=%37%37%30]", "/tmp/A", vec![a(Some("mode"), "770")]),
            ("/tmp/sw[group='a/b']", "/tmp/sw", vec![a(Some("group"), "a/b")]),
            ("/tmp/sw[mode=7=7]", "/tmp/sw", vec![a(Some("mode"), "7=7")]),
            ("/tmp/sw[a]b]", "/tmp/sw", vec![a(None, "a]b")]),
            ("/tmp/sw[m%3d1]", "/tmp/sw", vec![a(Some("mode"), "1")]),
        ];
        for (input, addr, assigns) in ok {
            let got = p(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.address, addr.as_bytes(), "{input}");
            assert_eq!(&got.assigns, assigns, "{input}");
        }
        let bad: &[(&str, &str)] = &[
            ("/tmp/sw[colour=red]", "colour"),
            ("/tmp/sw[portx=1]", "portx"),
            ("/tmp/sw[modes=1]", "modes"),
            ("/tmp/sw[3/x=1]", "x"),
        ];
        for (input, key) in bad {
            let e = p(input).unwrap_err();
            assert_eq!(
                e,
                VnlError::UnknownKey {
                    scheme: "vde",
                    key: key.to_string(),
                    accepted: VDE_KEYS.keys
                },
                "{input}"
            );
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains(&format!("unknown parameter '{key}'")), "{msg}");
        }
    }

    #[test]
    fn last_assignment_wins_across_aliases() {
        let p = path_params(b"/s[3/portgroup=blue/mode=1/m=2]", &VDE_KEYS).unwrap();
        assert_eq!(
            p.last(&[None, Some("port"), Some("portgroup")]),
            Some(&b"blue"[..])
        );
        assert_eq!(p.get("mode"), Some(&b"2"[..]));
        assert_eq!(p.get("group"), None);
    }

    #[test]
    fn netnode_has_no_positional() {
        let e = path_params(b"/tmp/sw[3]", &NETNODE_KEYS).unwrap_err();
        assert!(e.to_string().contains("unknown parameter '3'"), "{e}");
        let p = path_params(b"/tmp/sw[hashs=64k/e=30]", &NETNODE_KEYS).unwrap();
        assert_eq!(p.get("hashsize"), Some(&b"64k"[..]));
        assert_eq!(p.get("expiretime"), Some(&b"30"[..]));
    }

    #[test]
    fn options_table() {
        let p = options(b"239.0.0.1/vni=3/port=%34789/v6", &VXLAN_KEYS).unwrap();
        assert_eq!(p.address, b"239.0.0.1");
        assert_eq!(p.get("vni"), Some(&b"3"[..]));
        assert_eq!(p.get("port"), Some(&b"4789"[..]));
        assert_eq!(p.get("v6"), Some(&b""[..]));
        let p = options(b"", &VXLAN_KEYS).unwrap();
        assert_eq!(p, Parsed::default());
        let p = options(b"'a/b'//ttl=2/", &VXVDE_KEYS).unwrap();
        assert_eq!(p.address, b"a/b");
        assert_eq!(p.get("ttl"), Some(&b"2"[..]));
        // vxvde: "v" abbreviates "vni", the first key starting with "v".
        let p = options(b"x/v=9", &VXVDE_KEYS).unwrap();
        assert_eq!(p.get("vni"), Some(&b"9"[..]));
        let e = options(b"x/vnix=1", &VXLAN_KEYS).unwrap_err();
        assert!(e.to_string().contains("unknown parameter 'vnix'"), "{e}");
        let e = options(b"x/3", &VXLAN_KEYS).unwrap_err();
        assert!(e.to_string().contains("unknown parameter '3'"), "{e}");
    }
}
