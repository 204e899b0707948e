use super::*;

#[test]
fn split_table() {
    let cases: &[(&str, &str, &str, bool)] = &[
        ("/tmp/sw", "vde", "/tmp/sw", true),
        ("", "vde", "", true),
        ("vde:///tmp/sw", "vde", "/tmp/sw", false),
        ("ptp:///tmp/p", "ptp", "/tmp/p", false),
        ("null://", "null", "", false),
        ("=vde_plug x", "cmd", "vde_plug x", true),
        ("cmd://vde_plug x", "cmd", "vde_plug x", false),
        // libvdeplug looks for the first "://" anywhere.
        ("/tmp/a://b", "/tmp/a", "b", false),
        ("://x", "", "x", false),
    ];
    for (vnl, scheme, rest, implicit) in cases {
        let s = split(vnl);
        assert_eq!(
            (s.scheme, s.rest, s.implicit),
            (*scheme, *rest, *implicit),
            "{vnl}"
        );
    }
}

fn vde(dir: Option<&str>) -> VdeSpec {
    VdeSpec {
        dir: dir.map(PathBuf::from),
        portgroup: None,
        port: VdePort::Any,
        group: None,
        mode: None,
    }
}

#[test]
fn parse_ok_table() {
    let cases: Vec<(&str, Spec)> = vec![
        ("null://", Spec::Null),
        ("null://anything", Spec::Null),
        ("/tmp/sw", Spec::Vde(vde(Some("/tmp/sw")))),
        ("vde://", Spec::Vde(vde(None))),
        (
            "vde:///tmp/sw[4]",
            Spec::Vde(VdeSpec {
                port: VdePort::Number(4),
                ..vde(Some("/tmp/sw"))
            }),
        ),
        (
            "vde:///tmp/sw[0]",
            Spec::Vde(VdeSpec {
                port: VdePort::Zero,
                ..vde(Some("/tmp/sw"))
            }),
        ),
        (
            "vde:///tmp/sw[port=07]",
            Spec::Vde(VdeSpec {
                port: VdePort::Number(7),
                ..vde(Some("/tmp/sw"))
            }),
        ),
        (
            "vde:///tmp/sw[blue]",
            Spec::Vde(VdeSpec {
                portgroup: Some("blue".into()),
                ..vde(Some("/tmp/sw"))
            }),
        ),
        (
            "vde:///tmp/sw[3abc]",
            Spec::Vde(VdeSpec {
                portgroup: Some("3abc".into()),
                ..vde(Some("/tmp/sw"))
            }),
        ),
        (
            "/tmp/sw[mode=770/group=vde]",
            Spec::Vde(VdeSpec {
                mode: Some(0o770),
                group: Some("vde".into()),
                ..vde(Some("/tmp/sw"))
            }),
        ),
        ("vde://'/tmp/my sw'", Spec::Vde(vde(Some("/tmp/my sw")))),
        ("vde:///tmp/my%20sw", Spec::Vde(vde(Some("/tmp/my sw")))),
        (
            "ptp:///tmp/p",
            Spec::Ptp {
                path: "/tmp/p".into(),
                seqpacket: false,
            },
        ),
        // Only a trailing [...] holds options; other brackets belong to the path, as in
        // libvdeplug, which takes the path whole.
        (
            "ptp:///tmp/p[x]y",
            Spec::Ptp {
                path: "/tmp/p[x]y".into(),
                seqpacket: false,
            },
        ),
        (
            "ptp:///tmp/p[x",
            Spec::Ptp {
                path: "/tmp/p[x".into(),
                seqpacket: false,
            },
        ),
        (
            "ptp:///tmp/p[seqpacket]",
            Spec::Ptp {
                path: "/tmp/p".into(),
                seqpacket: true,
            },
        ),
        (
            "ptp:///tmp/a[b]/p[s]",
            Spec::Ptp {
                path: "/tmp/a[b]/p".into(),
                seqpacket: true,
            },
        ),
        (
            "ptp:///tmp/p[x][]",
            Spec::Ptp {
                path: "/tmp/p[x]".into(),
                seqpacket: false,
            },
        ),
        (
            "ptp:///tmp/p[]",
            Spec::Ptp {
                path: "/tmp/p".into(),
                seqpacket: false,
            },
        ),
        // Taken literally: no quote or %xx processing in the path, as libvdeplug.
        (
            "ptp:///tmp/my%20p[seqpacket]",
            Spec::Ptp {
                path: "/tmp/my%20p".into(),
                seqpacket: true,
            },
        ),
        ("tap://tap0", Spec::Tap { name: "tap0".into() }),
        ("tap://", Spec::Tap { name: "".into() }),
        ("seqpacket://3", Spec::Seqpacket { fd: 3 }),
        ("seqpacket://0x10", Spec::Seqpacket { fd: 16 }),
        ("seqpacket://010", Spec::Seqpacket { fd: 8 }),
        (
            "=vde_plug vde:///tmp/sw",
            Spec::Cmd {
                argv: vec!["vde_plug".into(), "vde:///tmp/sw".into()],
            },
        ),
        (
            "cmd://'vde_plug' \"a b\"",
            Spec::Cmd {
                argv: vec!["vde_plug".into(), "a b".into()],
            },
        ),
        (
            "vxlan://239.0.0.1/vni=3",
            Spec::Overlay(overlay::OverlaySpec {
                vni: Some(overlay::Gid::Number(3)),
                ..overlay::parse_overlay(false, "").unwrap()
            }),
        ),
        (
            "switch:///tmp/s[mode=770]",
            Spec::Other {
                scheme: "switch".into(),
                rest: "/tmp/s[mode=770]".into(),
            },
        ),
        (
            "bogus://x",
            Spec::Other {
                scheme: "bogus".into(),
                rest: "x".into(),
            },
        ),
    ];
    for (vnl, want) in cases {
        assert_eq!(parse(vnl).unwrap_or_else(|e| panic!("{vnl}: {e}")), want, "{vnl}");
    }
}

#[test]
fn parse_error_table() {
    let long = format!("ptp:///tmp/{}", "x".repeat(110));
    let longtap = format!("tap://{}", "t".repeat(16));
    let mut cases: Vec<(&str, &str)> = MALFORMED.to_vec();
    cases.push((&long, "does not fit a socket address"));
    cases.push((&longtap, "is not a valid interface name"));
    for (vnl, want) in cases {
        let e = parse(vnl).expect_err(vnl).to_string();
        assert!(e.contains(want), "{vnl}: {e}");
        assert!(!e.contains('\n'), "{vnl}: {e}");
    }
}

/// xorshift64*: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "vde:///tmp/sw[3/mode=770/group=vde]",
    "/tmp/sw[port=4]",
    "ptp:///tmp/p",
    "tap://tap0",
    "seqpacket://0x10",
    "=vde_plug 'a b' \"c\\\"d\" $X;y",
    "vxlan://239.0.0.1/vni=3/port=4789/rcvbuf=1M",
    "switch:///tmp/s[mode=770/hashsize=64k]",
    "vde://'/tmp/a[b'[%41]",
];
const ALPHABET: &[u8] = b"[]/=%'\"\\:;$ 0123456789abcdefABCDEFxkMGTmodeportgroup\t\n\0";

/// Never panics, whatever the input; errors stay one line; the byte-level pieces too.
#[test]
fn random_inputs_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..20_000 {
        let mut bytes: Vec<u8> = if round % 2 == 0 {
            SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec()
        } else {
            Vec::new()
        };
        let edits = 1 + rng.below(8);
        for _ in 0..edits {
            let pick = rng.below(10);
            let c = if pick < 8 {
                ALPHABET[rng.below(ALPHABET.len())]
            } else {
                rng.next() as u8
            };
            match rng.below(3) {
                0 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len());
                    bytes[i] = c;
                }
                1 if !bytes.is_empty() => {
                    bytes.remove(rng.below(bytes.len()));
                }
                _ => {
                    let i = rng.below(bytes.len() + 1);
                    bytes.insert(i, c);
                }
            }
        }
        check_one(&bytes);
    }
}

/// Everything a fuzz input goes through (also used by fuzz/fuzz_targets/vnl.rs).
pub(crate) fn check_one(bytes: &[u8]) {
    let s = String::from_utf8_lossy(bytes);
    if let Err(e) = parse(&s) {
        let m = e.to_string();
        assert!(!m.contains('\n') && !m.is_empty(), "{s:?}: {m:?}");
    }
    if let Err(e) = parse_os(OsStr::from_bytes(bytes)) {
        let m = e.to_string();
        assert!(!m.contains('\n') && !m.is_empty(), "{s:?}: {m:?}");
    }
    let (t, rest) = quote::token(bytes, b'/');
    assert!(t.len() <= bytes.len());
    if let Some(r) = rest {
        assert!(r.len() < bytes.len());
    }
    let _ = quote::before_last(bytes, b']');
    let _ = params::path_params(bytes, &VDE_KEYS);
    let _ = params::options(bytes, &VXVDE_KEYS);
    let _ = num::strtoullm(bytes);
    let _ = num::strict_size(bytes);
    let _ = num::strtol(bytes, 0);
    let _ = argv::split(bytes);
}

fn osb(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

#[test]
fn paths_that_are_not_utf8_keep_their_bytes() {
    let s = split_os(osb(b"ptp:///tmp/\xff[x]"));
    assert_eq!(
        (s.scheme.as_bytes(), s.rest.as_bytes(), s.implicit),
        (&b"ptp"[..], &b"/tmp/\xff[x]"[..], false)
    );
    let s = split_os(osb(b"/tmp/\xff"));
    assert_eq!((s.scheme.as_bytes(), s.implicit), (&b"vde"[..], true));
    let s = split_os(osb(b"=\xff a"));
    assert_eq!(
        (s.scheme.as_bytes(), s.rest.as_bytes()),
        (&b"cmd"[..], &b"\xff a"[..])
    );

    let dir = |b: &[u8]| Some(PathBuf::from(osb(b)));
    assert_eq!(
        parse_os(osb(b"/tmp/\xff")),
        Ok(Spec::Vde(VdeSpec {
            dir: dir(b"/tmp/\xff"),
            ..vde(None)
        }))
    );
    assert_eq!(
        parse_os(osb(b"vde:///tmp/\xfe\xff[4/mode=660/group=\xff]")),
        Ok(Spec::Vde(VdeSpec {
            dir: dir(b"/tmp/\xfe\xff"),
            port: VdePort::Number(4),
            mode: Some(0o660),
            group: Some(osb(b"\xff").to_owned()),
            ..vde(None)
        }))
    );
    assert_eq!(
        parse_os(osb(b"ptp:///tmp/\xff")),
        Ok(Spec::Ptp {
            path: PathBuf::from(osb(b"/tmp/\xff")),
            seqpacket: false
        })
    );
    assert_eq!(
        parse_os(osb(b"ptp:///tmp/\xff[seqpacket]")),
        Ok(Spec::Ptp {
            path: PathBuf::from(osb(b"/tmp/\xff")),
            seqpacket: true
        })
    );
    assert_eq!(
        parse_os(osb(b"=vde_plug vde:///tmp/\xff")),
        Ok(Spec::Cmd {
            argv: vec![OsString::from("vde_plug"), osb(b"vde:///tmp/\xff").to_owned()]
        })
    );
    let n = parse_netnode(false, osb(b"/tmp/\xff[mode=660]")).unwrap();
    assert_eq!((n.dir.as_os_str().as_bytes(), n.mode), (&b"/tmp/\xff"[..], 0o660));
    // A hosted switch is parsed (checked) here and named as text in Spec::Other.
    assert!(matches!(
        parse_os(osb(b"switch:///tmp/\xff")),
        Ok(Spec::Other { .. })
    ));
    assert!(parse_os(osb(b"switch:///tmp/\xff[bogus]")).is_err());
    // Text and bytes parse alike.
    for (v, _) in MALFORMED {
        assert_eq!(parse(v), parse_os(OsStr::new(v)), "{v}");
    }
}
