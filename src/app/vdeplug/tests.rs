use super::*;

fn args(s: &[&str]) -> Vec<OsString> {
    std::iter::once("vdeplug-fast")
        .chain(s.iter().copied())
        .map(OsString::from)
        .collect()
}

fn run(s: &[&str]) -> Options {
    match parse(&args(s), false) {
        Ok(Parsed::Run(o)) => *o,
        other => panic!("{s:?}: {other:?}"),
    }
}

fn err(s: &[&str]) -> UsageError {
    match parse(&args(s), false) {
        Err(e) => e,
        other => panic!("{s:?}: {other:?}"),
    }
}

fn stream(v: &str) -> Plan {
    Plan::Stream { vnl: v.into() }
}

#[test]
fn forms_as_vde_plug_reads_them() {
    assert_eq!(run(&[]).plan, stream(""));
    assert_eq!(run(&["a"]).plan, stream("a"));
    assert_eq!(run(&["="]).plan, stream("="));
    assert_eq!(
        run(&["a", "b"]).plan,
        Plan::Cable {
            vnls: ["a".into(), "b".into()]
        }
    );
    // Two arguments, the second `=`: a cable to a VNL named `=` (vde_plug's switch(argc)).
    assert_eq!(
        run(&["a", "="]).plan,
        Plan::Cable {
            vnls: ["a".into(), "=".into()]
        }
    );
    assert_eq!(
        run(&["=", "cat"]).plan,
        Plan::Cmd {
            vnl: OsString::new(),
            argv: vec!["cat".into()]
        }
    );
    assert_eq!(
        run(&["v", "=", "ssh", "h", "vde_plug"]).plan,
        Plan::Cmd {
            vnl: "v".into(),
            argv: vec!["ssh".into(), "h".into(), "vde_plug".into()]
        }
    );
    assert!(matches!(err(&["a", "b", "c"]), UsageError::Arguments(_)));
    assert!(matches!(err(&["a", "b", "=", "c"]), UsageError::Arguments(_)));
}

#[test]
fn short_options_bundle_and_attach() {
    let o = run(&["-dpF", "v"]);
    assert!(o.daemon);
    assert_eq!(o.pidfile, Some("F".into()));
    let o = run(&["-dp", "F", "v"]);
    assert!(o.daemon);
    assert_eq!(o.pidfile, Some("F".into()));
    assert_eq!(o.plan, stream("v"));
    assert_eq!(run(&["-pF"]).pidfile, Some("F".into()));
    // A required value is the next word even when it looks like an option.
    assert_eq!(run(&["-p", "-d"]).pidfile, Some("-d".into()));
    assert!(!run(&["-p", "-d"]).daemon);
    assert_eq!(run(&["-Dx y"]).descr, "x y");
    // `-group g` is -g with the value "roup", then a VNL "g" (getopt_long, not _only).
    let o = run(&["-group", "g"]);
    assert_eq!(o.open_args[0].group, Some("roup".into()));
    assert_eq!(o.plan, stream("g"));
    assert_eq!(err(&["-x"]), UsageError::InvalidOption('x'));
    assert_eq!(err(&["-dx"]), UsageError::InvalidOption('x'));
    assert_eq!(err(&["-p"]), UsageError::ShortNeedsArgument('p'));
}

#[test]
fn long_options_values_and_abbreviations() {
    assert_eq!(run(&["--pidfile=F"]).pidfile, Some("F".into()));
    assert_eq!(run(&["--pidfile", "F"]).pidfile, Some("F".into()));
    assert_eq!(run(&["--pid", "F"]).pidfile, Some("F".into()));
    assert_eq!(run(&["--descr=D"]).descr, "D");
    assert_eq!(run(&["--de", "D"]).descr, "D");
    assert!(run(&["--da"]).daemon);
    assert_eq!(run(&["--port", "3"]).open_args[0].port, Some(3));
    assert_eq!(run(&["--port2=4"]).open_args[1].port, Some(4));
    assert_eq!(run(&["--mod", "770"]).open_args[0].mode, Some(0o770));
    assert_eq!(run(&["--mod2", "777"]).open_args[1].mode, Some(0o777));
    assert_eq!(run(&["--group2", "g"]).open_args[1].group, Some("g".into()));
    assert_eq!(run(&["--engine=poll"]).engine, EngineChoice::Poll);
    assert_eq!(run(&["--e", "uring"]).engine, EngineChoice::Uring);
    assert!(matches!(err(&["--d"]), UsageError::Ambiguous(_, _)));
    assert!(matches!(err(&["--p", "x"]), UsageError::Ambiguous(_, _)));
    assert!(matches!(err(&["--mo", "7"]), UsageError::Ambiguous(_, _)));
    assert!(matches!(err(&["--g", "x"]), UsageError::Ambiguous(_, _)));
    assert!(matches!(err(&["--por", "1"]), UsageError::Ambiguous(_, _)));
    assert_eq!(err(&["--daemon=1"]), UsageError::NoArgumentAllowed("daemon"));
    assert_eq!(err(&["--pidfile"]), UsageError::LongNeedsArgument("pidfile"));
    assert_eq!(err(&["--nope"]), UsageError::UnrecognizedOption("--nope".into()));
    assert!(matches!(err(&["--engine", "x"]), UsageError::BadEngine(_)));
    assert_eq!(run(&[]).busy_poll_us, 0);
    assert_eq!(run(&[]).rt_priority, None);
    assert_eq!(run(&["--busy-poll", "50"]).busy_poll_us, 50);
    assert_eq!(run(&["--rt-priority=7"]).rt_priority, Some(7));
    for bad in [
        &["--busy-poll", "x"][..],
        &["--busy-poll", "1000001"],
        &["--rt-priority", "0"],
        &["--rt-priority", "100"],
    ] {
        assert!(matches!(err(bad), UsageError::BadNumber(..)), "{bad:?}");
    }
    assert_eq!(
        err(&["--rt-priority", "0"]).to_string(),
        "--rt-priority '0': not a number from 1 to 99"
    );
    assert_eq!(
        err(&["--d"]).to_string(),
        "option '--d' is ambiguous; possibilities: '--daemon' '--descr'"
    );
}

/// vdeplug-fast's own --stats FILE and --stats-interval MS, read as getopt_long reads the
/// others: `=value` or the next word, unique abbreviations, permuted after the VNLs.
#[test]
fn stats_options() {
    let o = run(&[]);
    assert_eq!((o.stats, o.stats_interval_ms), (None, DEFAULT_STATS_INTERVAL_MS));
    assert_eq!(DEFAULT_STATS_INTERVAL_MS, 1000);
    let o = run(&["--stats", "s.json", "a", "b"]);
    assert_eq!(o.stats, Some("s.json".into()));
    assert_eq!(o.stats_interval_ms, 1000);
    assert_eq!(
        o.plan,
        Plan::Cable {
            vnls: ["a".into(), "b".into()]
        }
    );
    // The exact name wins over the longer one it starts.
    assert_eq!(run(&["--stats=F"]).stats, Some("F".into()));
    assert_eq!(run(&["--stats-interval", "50"]).stats_interval_ms, 50);
    assert_eq!(run(&["--stats-interval=10"]).stats_interval_ms, 10);
    assert_eq!(run(&["--stats-i", "50"]).stats_interval_ms, 50);
    assert_eq!(run(&["--stats-", "70"]).stats_interval_ms, 70);
    // After the VNLs (permuted), and with the other options.
    let o = run(&["a", "b", "--stats", "F", "-d", "--stats-int=200"]);
    assert!(o.daemon);
    assert_eq!((o.stats, o.stats_interval_ms), (Some("F".into()), 200));
    // A path's bytes as given, UTF-8 or not.
    let raw = OsString::from_vec(b"/tmp/s\xff.json".to_vec());
    let mut argv = args(&["--stats"]);
    argv.push(raw.clone());
    match parse(&argv, false) {
        Ok(Parsed::Run(o)) => assert_eq!(o.stats, Some(raw)),
        other => panic!("{other:?}"),
    }
    // `--stat` and `--st` may be either: ambiguous, as getopt_long says.
    for a in ["--stat", "--st", "--s"] {
        assert_eq!(
            err(&[a, "F"]),
            UsageError::Ambiguous(a.into(), vec!["stats", "stats-interval"]),
            "{a}"
        );
    }
    assert_eq!(
        err(&["--stat", "F"]).to_string(),
        "option '--stat' is ambiguous; possibilities: '--stats' '--stats-interval'"
    );
    assert_eq!(err(&["--stats"]), UsageError::LongNeedsArgument("stats"));
    assert_eq!(
        err(&["--stats-interval"]),
        UsageError::LongNeedsArgument("stats-interval")
    );
    assert_eq!(err(&["--stats", ""]), UsageError::Empty("stats"));
    assert_eq!(
        err(&["--stats="]).to_string(),
        "--stats '': the value may not be empty"
    );
    for bad in ["9", "0", "-5", "x", "", "1e3", "18446744073709551616"] {
        assert!(
            matches!(
                err(&["--stats-interval", bad]),
                UsageError::BadNumber("stats-interval", ..)
            ),
            "{bad}"
        );
    }
    assert_eq!(
        err(&["--stats-i", "5"]).to_string(),
        "--stats-interval '5': not a number from 10 up (milliseconds)"
    );
}

#[test]
fn options_are_permuted_until_dashdash_or_equals() {
    let o = run(&["v", "-d"]);
    assert!(o.daemon);
    assert_eq!(o.plan, stream("v"));
    let o = run(&["--", "-d"]);
    assert!(!o.daemon);
    assert_eq!(o.plan, stream("-d"));
    // After `=` everything is the command's (vde_plug would take -l as its own --log).
    let o = run(&["=", "ssh", "-l", "u", "h", "vde_plug"]);
    assert!(!o.logging.sessions);
    assert_eq!(
        o.plan,
        Plan::Cmd {
            vnl: OsString::new(),
            argv: ["ssh", "-l", "u", "h", "vde_plug"]
                .iter()
                .map(OsString::from)
                .collect()
        }
    );
    // POSIXLY_CORRECT: getopt stops at the first non-option.
    let Ok(Parsed::Run(o)) = parse(&args(&["v", "-d"]), true) else {
        panic!()
    };
    assert!(!o.daemon);
    assert!(matches!(o.plan, Plan::Cable { .. }));
}

#[test]
fn values_as_vde_plug_reads_them() {
    // --port: atoi, and not above zero is a usage error.
    assert_eq!(run(&["--port", "12abc"]).open_args[0].port, Some(12));
    assert!(matches!(err(&["--port", "0"]), UsageError::BadPort("port", _)));
    assert!(matches!(err(&["--port2", "x"]), UsageError::BadPort("port2", _)));
    // -m: sscanf %o; no octal digit keeps the default.
    assert_eq!(run(&["-m", " 0777"]).open_args[0].mode, Some(0o777));
    assert_eq!(run(&["-m", "78"]).open_args[0].mode, Some(0o7));
    assert_eq!(run(&["-m", "x"]).open_args[0].mode, None);
    assert_eq!(run(&["-M", "660"]).open_args[1].mode, Some(0o660));
    // -D '' keeps the default description.
    assert_eq!(run(&["-D", ""]).descr, DEFAULT_DESCR);
    assert_eq!(run(&[]).descr, "vdeplug:");
    // -D's bytes are kept as given, UTF-8 or not (vde_plug sends them so).
    let mut a = args(&[]);
    a.push(OsString::from_vec(b"-Da\xff\xfe".to_vec()));
    match parse(&a, false) {
        Ok(Parsed::Run(o)) => assert_eq!(o.descr.as_bytes(), b"a\xff\xfe"),
        other => panic!("{other:?}"),
    }
    // -L is -l plus the addresses.
    let o = run(&["-L"]).logging;
    assert!(o.sessions && o.addresses && !o.login);
    let o = run(&["-l"]).logging;
    assert!(o.sessions && !o.addresses);
}

#[test]
fn help_and_login_shell() {
    assert_eq!(parse(&args(&["-h", "-x"]), false), Ok(Parsed::Help));
    assert_eq!(parse(&args(&["--he"]), false), Ok(Parsed::Help));
    // An option before -h that is wrong is reported first, as getopt goes in order.
    assert_eq!(
        parse(&args(&["-x", "-h"]), false),
        Err(UsageError::InvalidOption('x'))
    );
    let o = run(&["-c", "vde_plug"]);
    assert!(o.logging.login && o.logging.sessions);
    assert_eq!(o.plan, stream(""));
    assert_eq!(parse(&args(&["-c", "ls"]), false), Ok(Parsed::NotAShell));
    assert_eq!(parse(&args(&["-c", "vde_plug x"]), false), Ok(Parsed::NotAShell));
    let login: Vec<OsString> = ["-vde_plug"].iter().map(OsString::from).collect();
    assert_eq!(parse(&login, false), Ok(Parsed::NotAShell));
}

#[test]
fn open_args_reach_only_vde_and_the_vnl_wins() {
    let a = OpenArgs {
        port: Some(3),
        group: Some("vde net".into()),
        mode: Some(0o770),
    };
    assert_eq!(
        with_open_args("/tmp/sw", &a),
        "vde:///tmp/sw[3/group=vde net/mode=770]"
    );
    assert_eq!(
        with_open_args("vde:///tmp/sw[5/mode=700]junk", &a),
        "vde:///tmp/sw[3/group=vde net/mode=770/5/mode=700]"
    );
    assert_eq!(with_open_args("", &a), "vde://[3/group=vde net/mode=770]");
    assert_eq!(with_open_args("ptp:///tmp/p", &a), "ptp:///tmp/p");
    assert_eq!(with_open_args("=cat", &a), "=cat");
    assert_eq!(with_open_args("/tmp/sw", &OpenArgs::default()), "/tmp/sw");
    let g = OpenArgs {
        group: Some("a/b]%".into()),
        ..OpenArgs::default()
    };
    let v = with_open_args("/tmp/sw", &g);
    let spec = crate::vnl::parse_os(&v).unwrap();
    let crate::vnl::Spec::Vde(s) = spec else {
        panic!("{v:?}")
    };
    assert_eq!(s.group, Some("a/b]%".into()), "{v:?}");
    assert_eq!(s.dir, Some("/tmp/sw".into()));
    // What the VNL says wins over the options.
    let v = with_open_args("vde:///tmp/sw[mode=700/9]", &a);
    let crate::vnl::Spec::Vde(s) = crate::vnl::parse_os(&v).unwrap() else {
        panic!()
    };
    assert_eq!(s.mode, Some(0o700));
    assert_eq!(s.port, crate::vnl::VdePort::Number(9));
}

#[test]
fn wiring_table() {
    use Role::*;
    let w = |a, b| wire([a, b]);
    let host = |host, plug| {
        Ok(Wiring {
            demote: None,
            shape: Shape::Host { host, plug },
        })
    };
    assert_eq!(
        w(Plain, Plain),
        Ok(Wiring {
            demote: None,
            shape: Shape::Cable
        })
    );
    assert_eq!(
        w(Null, Plain),
        Ok(Wiring {
            demote: None,
            shape: Shape::Cable
        })
    );
    assert_eq!(w(Null, Host), host(1, None));
    assert_eq!(w(Host, Plain), host(0, Some(1)));
    assert_eq!(w(Plain, PtpConnected), host(1, Some(0)));
    assert_eq!(w(Overlay, Host), host(1, Some(0)));
    assert_eq!(w(Host, Overlay), host(0, Some(1)));
    assert_eq!(w(Overlay, Overlay), host(0, Some(1)));
    assert_eq!(w(Host, Host), Err(BothHost));
    assert_eq!(
        w(PtpConnected, Host),
        Ok(Wiring {
            demote: Some(0),
            shape: Shape::Host {
                host: 1,
                plug: Some(0)
            }
        })
    );
    assert_eq!(
        w(PtpConnected, PtpConnected),
        Ok(Wiring {
            demote: Some(0),
            shape: Shape::Host {
                host: 1,
                plug: Some(0)
            }
        })
    );
}

#[test]
fn ip_sources_as_vde_ip_check() {
    let mut f = vec![0xffu8; 12];
    f.extend([0x08, 0x00, 0x45]);
    f.extend([0; 11]);
    f.extend([10, 1, 2, 3, 10, 1, 2, 4]);
    assert_eq!(ip_source(&f), Some(("10.1.2.3".parse().unwrap(), 0)));
    // Tagged: the VLAN id, then the same.
    let mut t = f[..12].to_vec();
    t.extend([0x81, 0x00, 0x20, 0x05]);
    t.extend(&f[12..]);
    assert_eq!(ip_source(&t), Some(("10.1.2.3".parse().unwrap(), 5)));
    // IPv4 with options (0x46) is not looked at, as in vde_plug.
    let mut o = f.clone();
    o[14] = 0x46;
    assert_eq!(ip_source(&o), None);
    let mut six = vec![0u8; 12];
    six.extend([0x86, 0xdd, 0x60]);
    six.extend([0; 7]);
    let a: std::net::Ipv6Addr = "fe80::1".parse().unwrap();
    six.extend(a.octets());
    six.extend([0; 16]);
    assert_eq!(ip_source(&six), Some((IpAddr::V6(a), 0)));
    assert_eq!(ip_source(&six[..30]), None);
    assert_eq!(ip_source(&[0; 10]), None);
    assert_eq!(
        iplog_message("u", "1.2.3.4", "10.1.2.3".parse().unwrap(), 5),
        "user u Real-IP 1.2.3.4 has got VDE-IP4 10.1.2.3 on vlan 5"
    );
}

#[test]
fn names_and_log_lines() {
    assert_eq!(program_name(Some(OsStr::new("/usr/bin/vde_plug"))), "vde_plug");
    assert_eq!(program_name(Some(OsStr::new("vdeplug-fast"))), "vdeplug-fast");
    assert_eq!(program_name(None), "vdeplug-fast");
    assert_eq!(remote_address(None), "UNKNOWN_IP_ADDRESS");
    assert_eq!(remote_address(Some(OsStr::new("192.0.2.7 5022 22"))), "192.0.2.7");
    assert_eq!(
        syslog_datagram("vde_plug", "START: user u IP x"),
        "<14>vde_plug: START: user u IP x"
    );
}

#[test]
fn vnls_and_open_args_keep_their_bytes() {
    use std::os::unix::ffi::OsStringExt;
    let b = |v: &[u8]| OsString::from_vec(v.to_vec());
    let argv = [
        &b"vde_plug"[..],
        b"-D",
        b"d",
        b"ptp:///tmp/a\xff",
        b"=",
        b"cat",
        b"\xfe",
    ]
    .map(b);
    match parse(&argv, false) {
        Ok(Parsed::Run(o)) => assert_eq!(
            o.plan,
            Plan::Cmd {
                vnl: b(b"ptp:///tmp/a\xff"),
                argv: vec![b(b"cat"), b(b"\xfe")]
            }
        ),
        other => panic!("{other:?}"),
    }
    let argv = [&b"vde_plug"[..], b"/tmp/\xff", b"switch:///tmp/\xfe"].map(b);
    match parse(&argv, false) {
        Ok(Parsed::Run(o)) => assert_eq!(
            o.plan,
            Plan::Cable {
                vnls: [b(b"/tmp/\xff"), b(b"switch:///tmp/\xfe")]
            }
        ),
        other => panic!("{other:?}"),
    }
    let g = OpenArgs {
        group: Some(b(b"g\xfe")),
        ..OpenArgs::default()
    };
    let v = with_open_args(&b(b"/tmp/sw\xff"), &g);
    assert_eq!(v.as_bytes(), b"vde:///tmp/sw\xff[group=g\xfe]");
    let crate::vnl::Spec::Vde(s) = crate::vnl::parse_os(&v).unwrap() else {
        panic!("{v:?}")
    };
    assert_eq!(s.group, Some(b(b"g\xfe")));
}
