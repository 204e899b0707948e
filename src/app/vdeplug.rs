//! vdeplug-fast's rules, as vde_plug 4.0.1 (srcvdeplug4/vde_plug.c) has them: the command line
//! (getopt_long over `c:hp:dm:M:g:G:lLD:` and its long options), what to open (one VNL and the
//! stream on stdin/stdout, two VNLs joined by a cable, or one VNL and a coprocess), and how the
//! opened links are wired into one engine node. Pure: no I/O; [`run`] does the I/O.
//!
//! Where vdeplug-fast differs on purpose (README, "Differences from vde_plug"):
//! - options stop at `=`: what follows is the command and its own options (vde_plug's getopt
//!   permutes them into its own, so `vde_plug = ssh -l u host vde_plug` reads `-l` as --log);
//! - `-h`/`--help` prints the summary on stdout and exits 0 (vde_plug: stderr, 255);
//! - `--engine`, `--busy-poll`, `--rt-priority`, `--stats`, `--stats-interval` are vdeplug-fast's
//!   own (with `--stats`, SIGUSR1 writes the statistics instead of being ignored).

pub mod run;

use crate::engine::EngineChoice;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::IpAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// vde_plug's description of its connections when `-D` is not given (DEFAULT_DESCRIPTION).
pub const DEFAULT_DESCR: &str = "vdeplug:";

/// The shortest --stats-interval, in milliseconds (as vdens-fast's).
pub const MIN_STATS_INTERVAL_MS: u64 = 10;

/// --stats-interval when not given, in milliseconds (as vdens-fast's).
pub const DEFAULT_STATS_INTERVAL_MS: u64 = 1000;

/// The one command a login shell runs (`ssh vdeuser@host vde_plug`: sshd runs `SHELL -c vde_plug`).
pub const LOGIN_COMMAND: &str = "vde_plug";

/// Members of this group have the IP addresses they use logged in login-shell mode.
pub const IPLOG_GROUP: &str = "vdeplug_iplog";

/// What vde_plug's open_args carry to the vde:// module (-m/-g/--port, -M/-G/--port2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenArgs {
    pub port: Option<u32>,
    pub group: Option<OsString>,
    pub mode: Option<u32>,
}

impl OpenArgs {
    fn is_empty(&self) -> bool {
        self.port.is_none() && self.group.is_none() && self.mode.is_none()
    }
}

/// What to open and join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// One network and the 2-byte-length stream on stdin/stdout. VNLs are bytes, as
    /// vde_plug's argv: a path in one need not be UTF-8.
    Stream { vnl: OsString },
    /// Two networks joined by a cable.
    Cable { vnls: [OsString; 2] },
    /// One network and a coprocess speaking the stream on its stdin/stdout.
    Cmd { vnl: OsString, argv: Vec<OsString> },
}

/// Which messages go to syslog (-l, -L, login-shell mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Logging {
    /// START at the beginning, STOP at the end (-l, -L, `-c vde_plug`).
    pub sessions: bool,
    /// Each new IP source address seen on the stream from stdin (-L).
    pub addresses: bool,
    /// `-c vde_plug`: also the addresses when the user is in [`IPLOG_GROUP`].
    pub login: bool,
}

/// A valid command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub daemon: bool,
    pub pidfile: Option<OsString>,
    /// -D: bytes, sent to a switch as given (UTF-8 or not), as vde_plug does.
    pub descr: OsString,
    pub engine: EngineChoice,
    /// --busy-poll: microseconds the data-plane thread spins before it sleeps (0: off).
    pub busy_poll_us: u32,
    /// --rt-priority: SCHED_FIFO priority of the data-plane thread.
    pub rt_priority: Option<u8>,
    /// --stats: the file the engine writes its counters to as JSON (every
    /// `stats_interval_ms`, on SIGUSR1, and at the end), as vdens-fast's --stats. Bytes, as
    /// given.
    pub stats: Option<OsString>,
    /// --stats-interval: milliseconds between those writes (at least [`MIN_STATS_INTERVAL_MS`]).
    pub stats_interval_ms: u64,
    pub logging: Logging,
    /// For the first VNL and for the second.
    pub open_args: [OpenArgs; 2],
    pub plan: Plan,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<Options>),
    /// -h, --help.
    Help,
    /// -V, --version (vdeplug-fast's own: vde_plug has neither).
    Version,
    /// A login shell asked for anything but `vde_plug` (`argv[0]` starting with `-`, or
    /// `-c OTHER`): vde_plug logs FAILED and refuses.
    NotAShell,
}

/// A command line getopt_long (or vde_plug after it) refuses. vde_plug prints its usage and
/// exits with status 255 on each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageError {
    InvalidOption(char),
    UnrecognizedOption(String),
    ShortNeedsArgument(char),
    LongNeedsArgument(&'static str),
    NoArgumentAllowed(&'static str),
    Ambiguous(String, Vec<&'static str>),
    /// --port/--port2 must be a positive number.
    BadPort(&'static str, String),
    BadEngine(String),
    /// --busy-poll/--rt-priority/--stats-interval out of their range (the option, the value,
    /// the range).
    BadNumber(&'static str, String, &'static str),
    /// An option whose value may not be empty (--stats '').
    Empty(&'static str),
    /// The arguments left after the options fit none of the forms.
    Arguments(Vec<String>),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::InvalidOption(c) => write!(f, "invalid option -- '{c}'"),
            UsageError::UnrecognizedOption(s) => write!(f, "unrecognized option '{s}'"),
            UsageError::ShortNeedsArgument(c) => write!(f, "option requires an argument -- '{c}'"),
            UsageError::LongNeedsArgument(n) => write!(f, "option '--{n}' requires an argument"),
            UsageError::NoArgumentAllowed(n) => write!(f, "option '--{n}' doesn't allow an argument"),
            UsageError::Ambiguous(s, names) => {
                write!(f, "option '{s}' is ambiguous; possibilities:")?;
                for n in names {
                    write!(f, " '--{n}'")?;
                }
                Ok(())
            }
            UsageError::BadPort(n, v) => write!(f, "--{n} {v}: not a port number (a number from 1)"),
            UsageError::BadEngine(v) => write!(f, "--engine: unknown engine '{v}' (auto, uring or poll)"),
            UsageError::BadNumber(n, v, r) => write!(f, "--{n} '{v}': not a number from {r}"),
            UsageError::Empty(n) => write!(f, "--{n} '': the value may not be empty"),
            UsageError::Arguments(a) => write!(
                f,
                "cannot use the arguments {}: give VNL, VNL VNL, [VNL] = CMD [ARGS]",
                a.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(" ")
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Login,
    Help,
    Pidfile,
    Daemon,
    Mode(usize),
    Group(usize),
    Port(usize),
    Log,
    IpLog,
    Descr,
    Engine,
    BusyPoll,
    RtPriority,
    Stats,
    StatsInterval,
    Version,
}

/// vde_plug's short options, `c:hp:dm:M:g:G:lLD:`: the option and whether it takes a value.
const SHORT: &[(char, Opt, bool)] = &[
    ('c', Opt::Login, true),
    ('h', Opt::Help, false),
    ('p', Opt::Pidfile, true),
    ('d', Opt::Daemon, false),
    ('m', Opt::Mode(0), true),
    ('M', Opt::Mode(1), true),
    ('g', Opt::Group(0), true),
    ('G', Opt::Group(1), true),
    ('l', Opt::Log, false),
    ('L', Opt::IpLog, false),
    ('D', Opt::Descr, true),
    ('V', Opt::Version, false),
];

/// vde_plug's long options in its order, and vdeplug-fast's `--engine`, `--busy-poll`,
/// `--rt-priority`, `--stats`, `--stats-interval`.
const LONG: &[(&str, Opt, bool)] = &[
    ("pidfile", Opt::Pidfile, true),
    ("daemon", Opt::Daemon, false),
    ("port", Opt::Port(0), true),
    ("port2", Opt::Port(1), true),
    ("mod", Opt::Mode(0), true),
    ("mod2", Opt::Mode(1), true),
    ("group", Opt::Group(0), true),
    ("group2", Opt::Group(1), true),
    ("descr", Opt::Descr, true),
    ("log", Opt::Log, false),
    ("iplog", Opt::IpLog, false),
    ("help", Opt::Help, false),
    ("engine", Opt::Engine, true),
    ("busy-poll", Opt::BusyPoll, true),
    ("rt-priority", Opt::RtPriority, true),
    ("stats", Opt::Stats, true),
    ("stats-interval", Opt::StatsInterval, true),
    ("version", Opt::Version, false),
];

/// Every option as (short name, long names, takes a value), in the order of the tables above:
/// what the man page and the shell completions are generated from.
pub fn option_table() -> Vec<(Option<char>, Vec<&'static str>, bool)> {
    let mut v: Vec<(Opt, Option<char>, Vec<&'static str>, bool)> = Vec::new();
    for &(c, o, t) in SHORT {
        v.push((o, Some(c), Vec::new(), t));
    }
    for &(n, o, t) in LONG {
        match v.iter_mut().find(|e| e.0 == o) {
            Some(e) => e.2.push(n),
            None => v.push((o, None, vec![n], t)),
        }
    }
    v.into_iter().map(|(_, c, l, t)| (c, l, t)).collect()
}

/// getopt_long's match of `--name`: an exact name, else the one option `name` abbreviates
/// (several that start with it are ambiguous unless they are the same option).
fn long_option(name: &str, written: &str) -> Result<(&'static str, Opt, bool), UsageError> {
    if let Some(&(n, o, a)) = LONG.iter().find(|(n, _, _)| *n == name) {
        return Ok((n, o, a));
    }
    let found: Vec<_> = LONG.iter().filter(|(n, _, _)| n.starts_with(name)).collect();
    match found.as_slice() {
        [] => Err(UsageError::UnrecognizedOption(written.to_string())),
        [first, rest @ ..] if rest.iter().all(|o| o.1 == first.1 && o.2 == first.2) => {
            Ok((first.0, first.1, first.2))
        }
        _ => Err(UsageError::Ambiguous(
            written.to_string(),
            found.iter().map(|o| o.0).collect(),
        )),
    }
}

/// C's atoi: leading blanks, a sign, then decimal digits; anything else ends the number.
fn atoi(s: &[u8]) -> i64 {
    let mut i = s.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i64 = 0;
    for &c in s[i..].iter().take_while(|c| c.is_ascii_digit()) {
        v = (v * 10 + i64::from(c - b'0')).min(i64::from(u32::MAX) + 1);
    }
    if neg {
        -v
    } else {
        v
    }
}

/// `sscanf(s, "%o", &mode)`: leading blanks, an optional `+`, octal digits; `None` when no
/// digit is there (vde_plug then keeps the mode it had). Only permission bits are kept.
pub fn scan_octal(s: &[u8]) -> Option<u32> {
    let mut i = s.iter().take_while(|c| c.is_ascii_whitespace()).count();
    if s.get(i) == Some(&b'+') {
        i += 1;
    }
    let digits: Vec<u8> = s[i..]
        .iter()
        .take_while(|c| (b'0'..=b'7').contains(*c))
        .copied()
        .collect();
    if digits.is_empty() {
        return None;
    }
    let v = digits
        .iter()
        .fold(0u32, |v, &c| v.wrapping_mul(8).wrapping_add(u32::from(c - b'0')));
    Some(v & 0o777)
}

fn lossy(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

/// Reads vde_plug's command line (`argv[0]` included). `posixly_correct`: the environment has
/// POSIXLY_CORRECT, so getopt stops at the first non-option instead of permuting.
pub fn parse(argv: &[OsString], posixly_correct: bool) -> Result<Parsed, UsageError> {
    if argv.first().is_some_and(|a| a.as_bytes().first() == Some(&b'-')) {
        return Ok(Parsed::NotAShell);
    }
    let mut o = Options {
        daemon: false,
        pidfile: None,
        descr: OsString::from(DEFAULT_DESCR),
        engine: EngineChoice::Auto,
        busy_poll_us: 0,
        rt_priority: None,
        stats: None,
        stats_interval_ms: DEFAULT_STATS_INTERVAL_MS,
        logging: Logging::default(),
        open_args: [OpenArgs::default(), OpenArgs::default()],
        plan: Plan::Stream { vnl: OsString::new() },
    };
    let mut words: Vec<OsString> = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_bytes();
        i += 1;
        if a == b"--" {
            words.extend(argv[i..].iter().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix(b"--") {
            let (name, value) = match body.iter().position(|&c| c == b'=') {
                Some(e) => (&body[..e], Some(OsStr::from_bytes(&body[e + 1..]))),
                None => (body, None),
            };
            let written = String::from_utf8_lossy(a).into_owned();
            let (n, opt, takes) = long_option(&String::from_utf8_lossy(name), &written)?;
            let value = match (takes, value) {
                (false, Some(_)) => return Err(UsageError::NoArgumentAllowed(n)),
                (false, None) => None,
                (true, Some(v)) => Some(v.to_os_string()),
                (true, None) => {
                    let v = argv.get(i).ok_or(UsageError::LongNeedsArgument(n))?;
                    i += 1;
                    Some(v.clone())
                }
            };
            if let Some(done) = apply(&mut o, opt, value)? {
                return Ok(done);
            }
        } else if a.len() > 1 && a[0] == b'-' {
            let mut k = 1;
            while k < a.len() {
                let c = a[k] as char;
                k += 1;
                let Some(&(_, opt, takes)) = SHORT.iter().find(|s| s.0 == c) else {
                    return Err(UsageError::InvalidOption(c));
                };
                let value = if !takes {
                    None
                } else if k < a.len() {
                    let v = OsStr::from_bytes(&a[k..]).to_os_string();
                    k = a.len();
                    Some(v)
                } else {
                    let v = argv.get(i).ok_or(UsageError::ShortNeedsArgument(c))?;
                    i += 1;
                    Some(v.clone())
                };
                if let Some(done) = apply(&mut o, opt, value)? {
                    return Ok(done);
                }
            }
        } else if a == b"=" || posixly_correct {
            // What follows `=` is the command's, options included (a difference on purpose).
            words.extend(argv[i - 1..].iter().cloned());
            break;
        } else {
            words.push(argv[i - 1].clone());
        }
    }
    o.plan = plan(&words)?;
    Ok(Parsed::Run(Box::new(o)))
}

/// One option's effect; `Some` when it ends the parse (help, a refused login shell).
fn apply(o: &mut Options, opt: Opt, value: Option<OsString>) -> Result<Option<Parsed>, UsageError> {
    let v = value.unwrap_or_default();
    match opt {
        Opt::Login if v.as_bytes() == LOGIN_COMMAND.as_bytes() => {
            o.logging.sessions = true;
            o.logging.login = true;
        }
        Opt::Login => return Ok(Some(Parsed::NotAShell)),
        Opt::Help => return Ok(Some(Parsed::Help)),
        Opt::Version => return Ok(Some(Parsed::Version)),
        Opt::Pidfile => o.pidfile = Some(v),
        Opt::Daemon => o.daemon = true,
        Opt::Mode(n) => {
            if let Some(m) = scan_octal(v.as_bytes()) {
                o.open_args[n].mode = Some(m);
            }
        }
        Opt::Group(n) => o.open_args[n].group = Some(v),
        Opt::Port(n) => {
            let p = atoi(v.as_bytes());
            if p <= 0 || p > i64::from(u32::MAX) {
                return Err(UsageError::BadPort(
                    if n == 0 { "port" } else { "port2" },
                    lossy(&v),
                ));
            }
            o.open_args[n].port = Some(p as u32);
        }
        Opt::IpLog => {
            o.logging.sessions = true;
            o.logging.addresses = true;
        }
        Opt::Log => o.logging.sessions = true,
        Opt::Descr => {
            if !v.is_empty() {
                o.descr = v;
            }
        }
        Opt::Engine => {
            o.engine = match v.as_bytes() {
                b"auto" => EngineChoice::Auto,
                b"uring" => EngineChoice::Uring,
                b"poll" => EngineChoice::Poll,
                _ => return Err(UsageError::BadEngine(lossy(&v))),
            }
        }
        Opt::BusyPoll => {
            o.busy_poll_us = lossy(&v)
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 1_000_000)
                .ok_or_else(|| UsageError::BadNumber("busy-poll", lossy(&v), "0 to 1000000"))?;
        }
        Opt::RtPriority => {
            o.rt_priority = Some(
                lossy(&v)
                    .parse::<u8>()
                    .ok()
                    .filter(|n| (1..=99).contains(n))
                    .ok_or_else(|| UsageError::BadNumber("rt-priority", lossy(&v), "1 to 99"))?,
            );
        }
        Opt::Stats if v.is_empty() => return Err(UsageError::Empty("stats")),
        Opt::Stats => o.stats = Some(v),
        Opt::StatsInterval => {
            o.stats_interval_ms = lossy(&v)
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= MIN_STATS_INTERVAL_MS)
                .ok_or_else(|| UsageError::BadNumber("stats-interval", lossy(&v), "10 up (milliseconds)"))?;
        }
    }
    Ok(None)
}

/// vde_plug's reading of the arguments left after the options: none or one VNL (stream),
/// two (cable, even when the second is `=`), `= CMD...`, `VNL = CMD...`.
fn plan(w: &[OsString]) -> Result<Plan, UsageError> {
    let is_eq = |i: usize| w.get(i).is_some_and(|s| s.as_bytes() == b"=");
    let s = |i: usize| w[i].clone();
    Ok(match w.len() {
        0 => Plan::Stream { vnl: OsString::new() },
        1 => Plan::Stream { vnl: s(0) },
        2 if !is_eq(0) => Plan::Cable { vnls: [s(0), s(1)] },
        _ if is_eq(0) => Plan::Cmd {
            vnl: OsString::new(),
            argv: w[1..].to_vec(),
        },
        _ if is_eq(1) => Plan::Cmd {
            vnl: s(0),
            argv: w[2..].to_vec(),
        },
        _ => return Err(UsageError::Arguments(w.iter().map(|a| lossy(a)).collect())),
    })
}

/// Writes a vde:// parameter value so that the VNL parser reads it back unchanged (its bytes,
/// UTF-8 or not).
fn quote_param(v: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(v.len());
    for &c in v {
        match c {
            b'%' => s.extend_from_slice(b"%25"),
            b'/' | b'[' | b']' | b'\\' | b'\'' | b'"' => s.extend_from_slice(&[b'\\', c]),
            _ => s.push(c),
        }
    }
    s
}

/// The VNL with vde_plug's open_args applied: they reach only the vde:// module (an explicit
/// `vde://` or a plain path), and what the VNL itself says wins (libvdeplug_vde.c reads the
/// open_args first, then the VNL's parameters). They are written in front of the VNL's own
/// bracket parameters, where the last assignment wins. `vnl` is the VNL after the default and
/// the VNL-file lookups (an empty one is the default switch's fallbacks); its bytes, and the
/// group's, are kept as given, UTF-8 or not.
pub fn with_open_args<S: AsRef<OsStr> + ?Sized>(vnl: &S, a: &OpenArgs) -> OsString {
    let vnl = vnl.as_ref();
    if a.is_empty() {
        return vnl.to_os_string();
    }
    let sp = crate::vnl::split_os(vnl);
    if sp.scheme.as_bytes() != b"vde" || vnl.as_bytes().starts_with(b"=") {
        return vnl.to_os_string();
    }
    let mut front: Vec<Vec<u8>> = Vec::new();
    if let Some(p) = a.port {
        front.push(p.to_string().into_bytes());
    }
    if let Some(g) = &a.group {
        if !g.is_empty() {
            front.push([&b"group="[..], &quote_param(g.as_bytes())].concat());
        }
    }
    if let Some(m) = a.mode {
        front.push(format!("mode={m:o}").into_bytes());
    }
    let rest = sp.rest.as_bytes();
    let (_, after) = crate::vnl::quote::token(rest, b'[');
    let (path, params) = match after {
        Some(p) => (
            &rest[..rest.len() - p.len() - 1],
            crate::vnl::quote::before_last(p, b']'),
        ),
        None => (rest, &b""[..]),
    };
    let mut out = b"vde://".to_vec();
    out.extend_from_slice(path);
    out.push(b'[');
    out.extend_from_slice(&front.join(&b'/'));
    if !params.is_empty() {
        out.push(b'/');
        out.extend_from_slice(params);
    }
    out.push(b']');
    OsString::from_vec(out)
}

/// What an opened link is, for wiring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Frames to and from a descriptor pair (vde://, ptp://, tap://, the stream, a coprocess).
    Plain,
    /// null://: carries nothing.
    Null,
    /// Hosts a node here: switch://, hub://, a listening `ptp://PATH[seqpacket]`.
    Host,
    /// A `ptp://PATH[seqpacket]` end that connected to a listener: hosted (it reconnects after a
    /// hang-up), or a plain link when the other side hosts the node.
    PtpConnected,
    /// vxlan://, vxvde://: hosted, or an endpoint of the other side's node.
    Overlay,
}

impl Role {
    fn hosts(self) -> bool {
        !matches!(self, Role::Plain | Role::Null)
    }
}

/// How the two opened links become one engine node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wiring {
    /// A connected seqpacket ptp end to run as a plain link (its reconnection is given up).
    pub demote: Option<usize>,
    pub shape: Shape,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Neither hosts: a cable between the two.
    Cable,
    /// Link `host` runs the node; `plug` (if any) is its endpoint (a null:// one is left out).
    Host { host: usize, plug: Option<usize> },
}

/// The two links both host a node and neither is an overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BothHost;

impl fmt::Display for BothHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "both VNLs host a node (switch://, hub://, ptp://PATH[seqpacket] listening): give at \
             most one of them, or a vxlan:// or vxvde:// with one of them",
        )
    }
}

/// One node runs at most one hosted VNL: beside another host, a connected seqpacket ptp end is
/// a plain link; of two hosts, an overlay (the second one if both are) joins the other as an
/// endpoint; other pairs cannot be joined.
pub fn wire(mut roles: [Role; 2]) -> Result<Wiring, BothHost> {
    let mut demote = None;
    if roles.iter().all(|r| r.hosts()) {
        if let Some(i) = roles.iter().position(|&r| r == Role::PtpConnected) {
            demote = Some(i);
            roles[i] = Role::Plain;
        }
    }
    let hosts: Vec<usize> = (0..2).filter(|&i| roles[i].hosts()).collect();
    let shape = match hosts.as_slice() {
        [] => Shape::Cable,
        [h] => {
            let other = 1 - h;
            Shape::Host {
                host: *h,
                plug: (roles[other] != Role::Null).then_some(other),
            }
        }
        _ => {
            let o = (0..2)
                .rev()
                .find(|&i| roles[i] == Role::Overlay)
                .ok_or(BothHost)?;
            Shape::Host {
                host: 1 - o,
                plug: Some(o),
            }
        }
    };
    Ok(Wiring { demote, shape })
}

/// vde_ip_check (vde_plug_iplog.c): the IPv4 or IPv6 source address of a frame and its VLAN
/// (0 untagged), when the frame is one (IPv4 with a 20-byte header, IPv6).
pub fn ip_source(frame: &[u8]) -> Option<(IpAddr, u16)> {
    let mut proto = frame.get(12..14)?;
    let mut body = 14;
    let mut vlan = 0;
    if proto == [0x81, 0x00] {
        let tci = frame.get(14..16)?;
        vlan = u16::from_be_bytes([tci[0], tci[1]]) & 0xfff;
        proto = frame.get(16..18)?;
        body = 18;
    }
    let b = frame.get(body..)?;
    match (proto, b.first()) {
        ([0x08, 0x00], Some(0x45)) => {
            let a: [u8; 4] = b.get(12..16)?.try_into().ok()?;
            Some((IpAddr::from(a), vlan))
        }
        ([0x86, 0xdd], Some(0x60)) => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some((IpAddr::from(a), vlan))
        }
        _ => None,
    }
}

/// The text of the -L message for a new address (vde_plug_iplog.c's printlogv4/v6).
pub fn iplog_message(user: &str, remote: &str, addr: IpAddr, vlan: u16) -> String {
    let v = if addr.is_ipv4() { 4 } else { 6 };
    format!("user {user} Real-IP {remote} has got VDE-IP{v} {addr} on vlan {vlan}")
}

/// The caller's address as vde_plug logs it: SSH_CLIENT's first word (at most 255 bytes), or
/// UNKNOWN_IP_ADDRESS.
pub fn remote_address(ssh_client: Option<&OsStr>) -> String {
    match ssh_client {
        Some(s) => {
            let w: Vec<u8> = s
                .as_bytes()
                .iter()
                .take_while(|c| !c.is_ascii_whitespace())
                .take(255)
                .copied()
                .collect();
            String::from_utf8_lossy(&w).into_owned()
        }
        None => "UNKNOWN_IP_ADDRESS".into(),
    }
}

/// A syslog datagram for /dev/log: facility user, severity info (`<14>`), as syslog(3) sends
/// it after openlog(ident, 0, LOG_USER) (the receiving daemon stamps the time).
pub fn syslog_datagram(ident: &str, message: &str) -> String {
    format!("<14>{ident}: {message}")
}

/// The program name messages carry: `argv[0]`'s last path component.
pub fn program_name(argv0: Option<&OsStr>) -> String {
    let b = argv0.map(OsStr::as_bytes).unwrap_or(b"vdeplug-fast");
    let base = b.rsplit(|&c| c == b'/').next().unwrap_or(b);
    let base = if base.is_empty() { b"vdeplug-fast" } else { base };
    String::from_utf8_lossy(base).into_owned()
}

#[cfg(test)]
mod tests;
