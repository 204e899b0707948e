//! The command line: vdens's own options, with getopt's `+` semantics (options stop at the first
//! non-option), plus long-only options of vdens-fast's own, grouped apart in `--help`.

use clap::{Arg, ArgAction, ArgMatches, Command};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// How the namespaces are created (vdens -c / -u).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsMode {
    /// unshare(2) in this process, falling back to a child process when that fails.
    Auto,
    /// A child process enters the namespaces; this one waits for it (one more process).
    Clone,
    /// unshare(2) in this process, no fallback.
    Unshare,
}

pub use crate::engine::EngineChoice;

/// Everything the command line asks for, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub multi: bool,
    /// Interface name prefix (-i), as bytes: vdens hands them to the kernel as given.
    pub iface_prefix: OsString,
    /// File bound over /etc/resolv.conf (-r, VDE_RESOLVCONF); ignored when `resolvaddr` is set.
    pub resolvconf: Option<PathBuf>,
    /// Name servers written to a private resolv.conf (-R, VDE_RESOLVADDR), as given: vdens writes
    /// each comma-separated item as a `nameserver` line without checking it (host names,
    /// zone-scoped IPv6 addresses and `''`, an empty file, all go through); see
    /// [`resolv_conf_text`]. Bytes, not only UTF-8, as vdens writes them.
    pub resolvaddr: Option<OsString>,
    /// Host name of the namespace (-H), the bytes sethostname(2) is given, as in vdens.
    pub hostname: Option<OsString>,
    pub sysadm: bool,
    pub ns_mode: NsMode,
    /// VNLs, one interface each, in order (`<prefix>0`, `<prefix>1`, ...).
    pub vnls: Vec<OsString>,
    /// The command and its arguments (never empty).
    pub cmd: Vec<OsString>,
    pub engine: EngineChoice,
    pub workers: Option<usize>,
    pub cpus: Option<Vec<usize>>,
    pub pin: bool,
    /// Open the taps with segmentation/checksum offload (IFF_VNET_HDR + TUNSETOFFLOAD).
    pub offload: bool,
    pub stats: Option<PathBuf>,
    pub stats_interval_ms: u64,
    /// Busy polling (--busy-poll): microseconds a data-plane thread spins for the next frame
    /// before it sleeps; 0 = off.
    pub busy_poll_us: u32,
    /// SCHED_FIFO priority of the data-plane threads (--rt-priority).
    pub rt_priority: Option<u8>,
}

/// A command-line problem: the message, and whether it is a request for help (exit 0).
#[derive(Debug)]
pub enum CliError {
    Help(String),
    Version(String),
    Usage(String),
}

const LONG_ABOUT: &str = "\
Start CMD (default $SHELL) in a new user + network namespace with tap interfaces \
<prefix>0, <prefix>1, ... wired to the VDE networks named by the VNLs, and the capabilities \
CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE, CAP_NET_BROADCAST to configure them. \
A drop-in replacement for vdens(1): the same options and VNLs, with frames moved by pinned \
io_uring workers. No interface is created when VNL is omitted, \"-\", \"no\" or empty.";

const AFTER_HELP: &str = "\
Exit status: that of CMD (128+N when it was killed by signal N); 127 when CMD cannot be \
executed; 1 when vdens-fast itself fails (one line on stderr says why and how to fix it). \
SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to vdens-fast are forwarded to CMD (unless the caller \
ignored or blocked them). CMD inherits the caller's descriptors, signal dispositions and mask; \
with no VNL it runs in vdens-fast's own process, as with vdens.

Environment: VDE_RESOLVCONF and VDE_RESOLVADDR give defaults for -r and -R.

ptp://PATH: a point-to-point cable; the same VNL at both ends, whichever starts first. A new \
PATH speaks vdeplug 4.0.1's datagram protocol; ptp://PATH[seqpacket] makes it a listener of \
the 2025 (SOCK_SEQPACKET) protocol instead: peers may come, go and come back while CMD runs. \
A seqpacket listener already at PATH is joined with or without [seqpacket].

Examples:
  vdens-fast                              # a shell in a namespace with no interface
  vdens-fast vde:///tmp/sw                # vde0 wired to a switch
  vdens-fast -m vde:///tmp/sw ptp:///tmp/p -- ip addr   # vde0 -> switch, vde1 -> ptp
  vdens-fast 'ptp:///tmp/p[seqpacket]'    # vde0 on a 2025-protocol ptp listener";

const FAST: &str = "vdens-fast options (long only)";

/// The clap definition (also used to generate the man page and the shell completions).
pub fn command() -> Command {
    version_option(fast_options(vdens_options(program())))
}

/// The program: name, texts of `--help`, usage, and getopt's rules.
fn program() -> Command {
    Command::new("vdens-fast")
        .version(env!("CARGO_PKG_VERSION"))
        .about("create a user + network namespace connected to VDE networks, fast")
        .long_about(LONG_ABOUT)
        .after_help(AFTER_HELP)
        .override_usage(
            "vdens-fast [OPTIONS] [VNL [CMD [ARGS...]]]\n       \
             vdens-fast -m|--multi [OPTIONS] VNL [VNL...] [-- CMD [ARGS...]]",
        )
        .disable_help_flag(true)
        .disable_version_flag(true)
        // getopt: a repeated option takes the last value. Abbreviations of long options are
        // expanded by `getopt_args` (with vdens's own options first), not by clap.
        .args_override_self(true)
}

/// vdens's own options, in its order (`VDENS_LONG` lists their long names).
fn vdens_options(cmd: Command) -> Command {
    cmd
        .arg(Arg::new("help").short('h').long("help").action(ArgAction::Help).help("Print this help"))
        .arg(
            Arg::new("multi")
                .short('m')
                .long("multi")
                .action(ArgAction::SetTrue)
                .help("Connect one or more VDE networks: <prefix>N is wired to the N-th VNL; the command follows --"),
        )
        .arg(
            Arg::new("iface")
                .short('i')
                .long("iface")
                .value_name("PREFIX")
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(OsString))
                .help("Interface name prefix [default: vde]"),
        )
        .arg(
            Arg::new("resolvconf")
                .short('r')
                .long("resolvconf")
                .value_name("FILE")
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("File that appears as /etc/resolv.conf inside (ignored with -R)"),
        )
        .arg(
            Arg::new("resolvaddr")
                .short('R')
                .long("resolvaddr")
                .value_name("ADDR[,ADDR...]")
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(OsString))
                .help("Name servers written to a private /etc/resolv.conf, one `nameserver` line each, as given"),
        )
        .arg(
            Arg::new("hostname")
                .short('H')
                .long("hostname")
                .value_name("NAME")
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(OsString))
                .help("Host name of the namespace"),
        )
        .arg(
            Arg::new("sysadm")
                .short('s')
                .long("sysadm")
                .action(ArgAction::SetTrue)
                .help("Grant CAP_SYS_ADMIN too (bind mounts inside)"),
        )
        .arg(
            Arg::new("clone")
                .short('c')
                .long("clone")
                .action(ArgAction::SetTrue)
                .help("Enter the namespaces in a child process (one more process)"),
        )
        .arg(
            Arg::new("unshare")
                .short('u')
                .long("unshare")
                .action(ArgAction::SetTrue)
                .help("unshare(2) in this process, with no fallback [default: unshare, else clone]"),
        )
}

/// vdens-fast's own long-only options, grouped apart in `--help`.
fn fast_options(cmd: Command) -> Command {
    cmd
        .arg(
            Arg::new("engine")
                .long("engine")
                .value_name("ENGINE")
                .value_parser(["auto", "uring", "poll"])
                .default_value("auto")
                .help_heading(FAST)
                .help("Data plane: io_uring, epoll fallback, or auto (io_uring when usable)")
                .long_help(
                    "Data plane: uring (io_uring workers), poll (epoll workers, the fallback), or \
                     auto (io_uring when usable). On the 2-CPU machine of BENCHMARKS.md (two \
                     vdens-fast over ptp://, 3 interleaved rounds), io_uring forwarded 64-byte \
                     frames at 1.3x epoll's rate (201 against 153 kpps) for 0.77x the CPU per \
                     frame, with lower round trips (sockperf p99 174 against 240 us idle, 1.9 \
                     against 3.2 ms under a TCP stream); bulk TCP is the same within the noise.",
                ),
        )
        .arg(
            Arg::new("workers")
                .long("workers")
                .value_name("N")
                .value_parser(clap::value_parser!(usize))
                .help_heading(FAST)
                .help("Worker threads moving frames [default: one per CPU used, at most one per interface]"),
        )
        .arg(
            Arg::new("cpus")
                .long("cpus")
                .value_name("LIST")
                .help_heading(FAST)
                .help("Pin the workers to these CPUs, e.g. 0,2-3, each before it allocates its buffers [default: not pinned: separate vdens-fast instances cannot share out the CPUs among themselves]"),
        )
        .arg(
            Arg::new("no-pin")
                .long("no-pin")
                .action(ArgAction::SetTrue)
                .help_heading(FAST)
                .help("Do not pin worker threads, even with --cpus"),
        )
        .arg(
            Arg::new("busy-poll")
                .long("busy-poll")
                .value_name("USEC")
                .value_parser(clap::value_parser!(u32).range(0..=1_000_000))
                .default_value("0")
                .help_heading(FAST)
                .help("Spin up to USEC microseconds for the next frame before a worker sleeps (0 = off)")
                .long_help(
                    "Low-latency mode for dedicated CPUs: before a data-plane thread sleeps it spins \
                     up to USEC microseconds (at most 1000000) waiting for the next frame, so a \
                     frame that comes in that time is taken without a wake-up (on a VM a sleeping \
                     vCPU takes tens of microseconds to wake). Each busy thread keeps a CPU busy \
                     while traffic flows; with fewer CPUs than busy threads and the programs \
                     under test, it can cost more than it gives. 0 turns it off.",
                ),
        )
        .arg(
            Arg::new("rt-priority")
                .long("rt-priority")
                .value_name("PRIO")
                .value_parser(clap::value_parser!(u8).range(1..=99))
                .help_heading(FAST)
                .help("Run the data-plane threads under SCHED_FIFO at PRIO (1-99) [default: the normal scheduler]")
                .long_help(
                    "Run the data-plane threads (workers, hosted switches) under the SCHED_FIFO \
                     real-time policy at PRIO (1-99), so that a frame waits for no other program's \
                     time slice: with the programs under test and the forwarders sharing few CPUs, \
                     that wait is most of a round trip under load (BENCHMARKS.md). Needs \
                     `ulimit -r PRIO` or more, for root too (the threads run in the new user \
                     namespace, where CAP_SYS_NICE does not count); when refused, vdens-fast says so once and \
                     runs them under the normal scheduler. The command keeps the caller's policy. \
                     With --busy-poll, a real-time thread spins ahead of everything else on its CPU: \
                     give it a CPU of its own (--cpus).",
                ),
        )
        .arg(
            Arg::new("no-offload")
                .long("no-offload")
                .action(ArgAction::SetTrue)
                .help_heading(FAST)
                .help("Open the taps without segmentation offload: frames of at most the MTU, one read or write each, as classic vdens does [default: TCP/UDP super-frames up to 64 KiB are read from and written to the taps, and cut to / built from standard frames on the VDE side, or carried whole to a vdens-fast peer that takes them]"),
        )
        .arg(
            Arg::new("stats")
                .long("stats")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help_heading(FAST)
                .help("Write per-interface frame/byte/drop counters to FILE as JSON, periodically and at exit"),
        )
        .arg(
            Arg::new("stats-interval")
                .long("stats-interval")
                .value_name("MS")
                .value_parser(clap::value_parser!(u64).range(10..))
                .default_value("1000")
                .help_heading(FAST)
                .help("Milliseconds between --stats writes"),
        )
}

/// -V/--version: vdens-fast's own (vdens has none), listed last among the general options.
fn version_option(cmd: Command) -> Command {
    cmd.arg(
        Arg::new("version")
            .short('V')
            .long("version")
            .action(ArgAction::Version)
            .help("Print the version and the data-plane engines this kernel allows"),
    )
}

/// The text of `--help`.
pub fn help() -> String {
    command().render_long_help().to_string()
}

/// `--version`'s second line: the data-plane engines this kernel allows (probes io_uring).
pub fn engines_here() -> String {
    match EngineChoice::Uring.resolve() {
        Ok(_) => "engines: uring (io_uring) and poll (epoll); --engine auto uses uring".into(),
        Err(crate::engine::EngineError::Uring(u)) => {
            format!("engines: poll (epoll) only; --engine auto uses poll: cannot use io_uring: {u}")
        }
        Err(e) => format!("engines: poll (epoll) only; --engine auto uses poll: {e}"),
    }
}

/// True for the VNL spellings that mean "no interface" in vdens.
pub fn is_no_net<S: AsRef<std::ffi::OsStr> + ?Sized>(vnl: &S) -> bool {
    matches!(vnl.as_ref().as_encoded_bytes(), b"" | b"-" | b"no")
}

/// Parses the arguments (without `argv[0]`); `env` looks up environment variables and `shell` is
/// $SHELL.
pub fn parse<I, F>(args: I, env: F) -> Result<Config, CliError>
where
    I: IntoIterator<Item = OsString>,
    F: Fn(&str) -> Option<OsString>,
{
    let args: Vec<OsString> = args.into_iter().collect();
    let cmd = command();
    let (opts, pos_start) = getopt_args(&cmd, &args)?;
    let argv = std::iter::once(OsString::from("vdens-fast")).chain(opts);
    let positionals = &args[pos_start..];
    let m = match cmd.try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return Err(match e.kind() {
                ErrorKind::DisplayHelp => CliError::Help(e.to_string()),
                ErrorKind::DisplayVersion => CliError::Version(format!("{e}{}\n", engines_here())),
                ErrorKind::UnknownArgument => CliError::Usage(format!(
                    "unknown option {} (see vdens-fast --help)",
                    e.get(clap::error::ContextKind::InvalidArg)
                        .map_or(String::new(), |v| v.to_string())
                )),
                _ => CliError::Usage(first_line(&e.to_string())),
            });
        }
    };
    from_matches(&m, positionals, &env)
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("").trim();
    let l = l.strip_prefix("error: ").unwrap_or(l);
    format!("{l} (see vdens-fast --help)")
}

fn nonempty_env<F: Fn(&str) -> Option<OsString>>(env: &F, k: &str) -> Option<OsString> {
    env(k).filter(|v| !v.is_empty())
}

/// True for a byte the kernel takes in an interface name (dev_valid_name: not '/', ':', nor
/// white space as the kernel's isspace() has it, which counts the Latin-1 no-break space 0xa0).
pub fn ifname_byte_ok(b: u8) -> bool {
    !matches!(
        b,
        0 | b'/' | b':' | b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0
    )
}

/// Long options of vdens itself: an abbreviation that fits one of these and options of
/// vdens-fast's own means the vdens option, so that vdens's abbreviations keep working
/// (`--s` is `--sysadm`, `--c` is `--clone`).
const VDENS_LONG: [&str; 9] = [
    "help",
    "multi",
    "iface",
    "sysadm",
    "unshare",
    "clone",
    "resolvconf",
    "resolvaddr",
    "hostname",
];

/// The long option `name` stands for: itself, the one option it abbreviates, or the one vdens
/// option it abbreviates; ambiguous and unknown names are errors (as getopt_long's).
fn long_name<'c>(cmd: &'c Command, name: &str) -> Result<&'c Arg, CliError> {
    let longs = || cmd.get_arguments().filter(|a| a.get_long().is_some());
    if let Some(a) = longs().find(|a| a.get_long() == Some(name)) {
        return Ok(a);
    }
    let cands: Vec<&Arg> = longs()
        .filter(|a| a.get_long().is_some_and(|l| l.starts_with(name)))
        .collect();
    let vdens: Vec<&Arg> = cands
        .iter()
        .copied()
        .filter(|a| a.get_long().is_some_and(|l| VDENS_LONG.contains(&l)))
        .collect();
    match (cands.as_slice(), vdens.as_slice()) {
        ([a], _) | (_, [a]) => Ok(a),
        ([], _) => Err(CliError::Usage(format!(
            "unknown option --{name} (see vdens-fast --help)"
        ))),
        _ => Err(CliError::Usage(format!(
            "option --{name} is ambiguous: {} (see vdens-fast --help)",
            cands
                .iter()
                .map(|a| format!("--{}", a.get_long().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// getopt_long with `+`, as vdens parses its command line: options stop at the first
/// non-option (or after a `--`, which is consumed); short options bundle (`-msi eth`) and take
/// their value attached or as the next argument (`-ieth`, `-i eth`, even `-i --`); long options
/// take `--name=value` or `--name value` and may be abbreviated. Every option comes out in one
/// form, `-x` or `--name[=value]`, for clap to read (a repeated option: the last wins). Returns
/// those and where the positionals start. Which options take a value comes from the clap
/// definition, so the two cannot disagree; an unknown short option is left for clap to report.
fn getopt_args(cmd: &Command, args: &[OsString]) -> Result<(Vec<OsString>, usize), CliError> {
    let takes_value = |a: &Arg| a.get_action().takes_values();
    let with_value = |a: &Arg, v: Option<&std::ffi::OsStr>| {
        let mut o = OsString::from(format!("--{}", a.get_long().unwrap_or("")));
        if let Some(v) = v {
            o.push("=");
            o.push(v);
        }
        o
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let raw = args[i].as_bytes();
        if raw == b"--" {
            return Ok((out, i + 1));
        }
        if let Some(long) = raw.strip_prefix(b"--") {
            let (name, value) = match long.iter().position(|&b| b == b'=') {
                Some(k) => (&long[..k], Some(std::ffi::OsStr::from_bytes(&long[k + 1..]))),
                None => (long, None),
            };
            let a = long_name(cmd, &String::from_utf8_lossy(name))?;
            if takes_value(a) && value.is_none() {
                // `--name value`; a missing value is left for clap to report.
                i += 1;
                out.push(with_value(a, args.get(i).map(OsString::as_os_str)));
            } else {
                out.push(with_value(a, value));
            }
        } else if let Some(cluster) = raw.strip_prefix(b"-").filter(|c| !c.is_empty()) {
            // Byte by byte, as getopt: every short option is ASCII, and the value attached to
            // one is the rest of the argument's bytes, UTF-8 or not.
            for (k, &b) in cluster.iter().enumerate() {
                let c = char::from(b);
                let a = cmd
                    .get_arguments()
                    .find(|a| b.is_ascii() && a.get_short() == Some(c));
                match a {
                    Some(a) if takes_value(a) => {
                        let rest = &cluster[k + 1..];
                        if rest.is_empty() {
                            i += 1;
                            out.push(with_value(a, args.get(i).map(OsString::as_os_str)));
                        } else {
                            out.push(with_value(a, Some(std::ffi::OsStr::from_bytes(rest))));
                        }
                        break;
                    }
                    _ => out.push(OsString::from(format!("-{c}"))),
                }
            }
        } else {
            return Ok((out, i));
        }
        i += 1;
    }
    Ok((out, args.len()))
}

/// `-i PREFIX` (default `vde`). An empty prefix is vdens's too: interfaces 0, 1, ... Any
/// other byte the kernel takes in an interface name goes through as given, UTF-8 or not
/// (vdens passes its argv's bytes).
fn iface_prefix_of(m: &ArgMatches) -> Result<OsString, CliError> {
    let prefix = m
        .get_one::<OsString>("iface")
        .cloned()
        .unwrap_or_else(|| "vde".into());
    if let Some(&b) = prefix.as_bytes().iter().find(|&&b| !ifname_byte_ok(b)) {
        return Err(CliError::Usage(format!(
            "-i {prefix:?}: an interface name cannot hold {:?} (the kernel refuses '/', ':' and white space)",
            OsStr::from_bytes(&[b])
        )));
    }
    Ok(prefix)
}

/// `-H NAME`, at most 64 bytes (the kernel's limit).
fn hostname_of(m: &ArgMatches) -> Result<Option<OsString>, CliError> {
    let hostname = m.get_one::<OsString>("hostname").cloned();
    match &hostname {
        Some(h) if h.len() > 64 => Err(CliError::Usage(format!(
            "-H {h:?}: a host name has at most 64 bytes"
        ))),
        _ => Ok(hostname),
    }
}

/// The command to run: the one given, else `$SHELL`.
fn command_or_shell<F: Fn(&str) -> Option<OsString>>(
    cmd: Vec<OsString>,
    env: &F,
) -> Result<Vec<OsString>, CliError> {
    if !cmd.is_empty() {
        return Ok(cmd);
    }
    match env("SHELL").filter(|s| !s.is_empty()) {
        Some(sh) => Ok(vec![sh]),
        None => Err(CliError::Usage(
            "no command given and $SHELL is not set (name a command, or set SHELL=/bin/sh)".into(),
        )),
    }
}

/// The last interface name (`PREFIX` and the highest number) fits IFNAMSIZ-1 = 15 bytes.
fn check_last_ifname(prefix: &OsStr, networks: usize) -> Result<(), CliError> {
    if networks == 0 {
        return Ok(());
    }
    let mut last = prefix.to_os_string();
    last.push((networks - 1).to_string());
    if last.len() > 15 {
        return Err(CliError::Usage(format!(
            "interface name {last:?} is longer than 15 characters (bytes: use a shorter -i prefix or fewer networks)"
        )));
    }
    Ok(())
}

fn from_matches<F: Fn(&str) -> Option<OsString>>(
    m: &ArgMatches,
    args: &[OsString],
    env: &F,
) -> Result<Config, CliError> {
    let multi = m.get_flag("multi");
    let iface_prefix = iface_prefix_of(m)?;
    let resolvconf = match m.get_one::<PathBuf>("resolvconf") {
        Some(p) => Some(p.clone()),
        None => nonempty_env(env, "VDE_RESOLVCONF").map(PathBuf::from),
    };
    let resolvaddr = m
        .get_one::<OsString>("resolvaddr")
        .cloned()
        .or_else(|| nonempty_env(env, "VDE_RESOLVADDR"));
    let hostname = hostname_of(m)?;
    let ns_mode = if m.get_flag("clone") {
        NsMode::Clone // vdens: with both -c and -u, clone wins
    } else if m.get_flag("unshare") {
        NsMode::Unshare
    } else {
        NsMode::Auto
    };

    let (vnls, cmd) = split_positionals(multi, args)?;
    let cmd = command_or_shell(cmd, env)?;
    check_last_ifname(&iface_prefix, vnls.len())?;

    let cpus = match m.get_one::<String>("cpus") {
        Some(s) => Some(parse_cpu_list(s).map_err(|e| CliError::Usage(format!("--cpus {s:?}: {e}")))?),
        None => None,
    };
    let workers = m.get_one::<usize>("workers").copied();
    if workers == Some(0) {
        return Err(CliError::Usage(
            "--workers 0: at least one worker is needed".into(),
        ));
    }
    let engine = match m.get_one::<String>("engine").map(String::as_str) {
        Some("uring") => EngineChoice::Uring,
        Some("poll") => EngineChoice::Poll,
        _ => EngineChoice::Auto,
    };
    Ok(Config {
        multi,
        iface_prefix,
        resolvconf,
        resolvaddr,
        hostname,
        sysadm: m.get_flag("sysadm"),
        ns_mode,
        vnls,
        cmd,
        engine,
        workers,
        cpus,
        pin: !m.get_flag("no-pin"),
        offload: !m.get_flag("no-offload"),
        stats: m.get_one::<PathBuf>("stats").cloned(),
        stats_interval_ms: *m.get_one::<u64>("stats-interval").unwrap_or(&1000),
        busy_poll_us: *m.get_one::<u32>("busy-poll").unwrap_or(&0),
        rt_priority: m.get_one::<u8>("rt-priority").copied(),
    })
}

/// vdens's positional rules: single mode `[VNL [CMD ARGS...]]`; multi mode `VNL... [-- CMD ARGS...]`
/// (with no positional at all, multi mode means no network, like vdens).
fn split_positionals(multi: bool, args: &[OsString]) -> Result<(Vec<OsString>, Vec<OsString>), CliError> {
    if multi && !args.is_empty() {
        let dd = args.iter().position(|a| a == "--").unwrap_or(args.len());
        // vdens scans for "--" from the second positional on: the first is always a VNL.
        let dd = if dd == 0 {
            args[1..]
                .iter()
                .position(|a| a == "--")
                .map_or(args.len(), |p| p + 1)
        } else {
            dd
        };
        let mut vnls = Vec::new();
        for v in &args[..dd] {
            let v = v.clone();
            if is_no_net(&v) {
                return Err(CliError::Usage(format!(
                    "--multi: {v:?} is not a network (every VNL of --multi gives an interface)"
                )));
            }
            vnls.push(v);
        }
        let cmd = if dd < args.len() {
            args[dd + 1..].to_vec()
        } else {
            Vec::new()
        };
        return Ok((vnls, cmd));
    }
    match args.split_first() {
        None => Ok((Vec::new(), Vec::new())),
        Some((vnl, cmd)) => {
            let vnls = if is_no_net(vnl) {
                Vec::new()
            } else {
                vec![vnl.clone()]
            };
            // `VNL -- CMD`: vdens would try to execute "--" and fail; vdens-fast reads it as the
            // separator --multi uses, so the two forms agree.
            let cmd = match cmd.split_first() {
                Some((dd, rest)) if dd == "--" => rest,
                _ => cmd,
            };
            Ok((vnls, cmd.to_vec()))
        }
    }
}

/// The /etc/resolv.conf that `-R LIST` gives, as vdens writes it: one `nameserver ITEM` line per
/// item of LIST, items ending at a comma and a run of commas separating two items (so only a
/// leading comma gives an empty item); nothing is checked or trimmed, and the bytes need not be
/// UTF-8. `-R ''` is an empty file.
pub fn resolv_conf_text(list: &[u8]) -> Vec<u8> {
    let mut text = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
        text.extend_from_slice(b"nameserver ");
        text.extend_from_slice(&rest[..end]);
        text.push(b'\n');
        rest = &rest[end..];
        while let [b',', tail @ ..] = rest {
            rest = tail;
        }
    }
    text
}

/// An item of a CPU list that is not a CPU number or an ascending range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCpuItem(pub String);

impl std::fmt::Display for BadCpuItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a CPU number or range (e.g. 0,2-3)", self.0)
    }
}

impl std::error::Error for BadCpuItem {}

/// Parses a CPU list such as `0,2-3`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, BadCpuItem> {
    let mut v = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        let bad = || BadCpuItem(item.to_string());
        if let Some((a, b)) = item.split_once('-') {
            let a: usize = a.parse().map_err(|_| bad())?;
            let b: usize = b.parse().map_err(|_| bad())?;
            if a > b {
                return Err(bad());
            }
            v.extend(a..=b);
        } else {
            v.push(item.parse().map_err(|_| bad())?);
        }
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Config, CliError> {
        parse(args.iter().map(OsString::from), |k| match k {
            "SHELL" => Some("/bin/sh".into()),
            _ => None,
        })
    }

    fn ok(args: &[&str]) -> Config {
        match p(args) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {e:?}"),
        }
    }

    /// resolv_conf_text of a UTF-8 list, as text.
    fn rc(list: &str) -> String {
        String::from_utf8(resolv_conf_text(list.as_bytes())).unwrap()
    }

    fn cmd(c: &Config) -> Vec<&str> {
        c.cmd.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn defaults() {
        let c = ok(&[]);
        assert!(c.vnls.is_empty());
        assert_eq!(cmd(&c), ["/bin/sh"]);
        assert_eq!(c.iface_prefix, "vde");
        assert_eq!(c.ns_mode, NsMode::Auto);
        assert!(c.offload);
        assert!(!ok(&["--no-offload", "null://"]).offload);
    }

    #[test]
    fn options_stop_at_first_non_option() {
        let c = ok(&["-i", "eth", "null://", "ls", "-l", "-i", "x"]);
        assert_eq!(c.vnls, ["null://"]);
        assert_eq!(cmd(&c), ["ls", "-l", "-i", "x"]);
        assert_eq!(c.iface_prefix, "eth");
    }

    #[test]
    fn no_net_spellings() {
        for v in ["-", "no", ""] {
            let c = ok(&[v, "true"]);
            assert!(c.vnls.is_empty(), "{v}");
            assert_eq!(cmd(&c), ["true"]);
        }
        assert_eq!(cmd(&ok(&["no"])), ["/bin/sh"]);
    }

    #[test]
    fn multi() {
        let c = ok(&["-m", "null://", "a", "b", "--", "echo", "-n", "--", "x"]);
        assert_eq!(c.vnls, ["null://", "a", "b"]);
        assert_eq!(cmd(&c), ["echo", "-n", "--", "x"]);
        let c = ok(&["--multi", "null://", "null://"]);
        assert_eq!(c.vnls.len(), 2);
        assert_eq!(cmd(&c), ["/bin/sh"]);
        let c = ok(&["-m", "null://", "--"]);
        assert_eq!(cmd(&c), ["/bin/sh"]);
        let c = ok(&["-m"]);
        assert!(c.vnls.is_empty());
    }

    #[test]
    fn bundled_and_long_forms() {
        let c = ok(&["-msieth", "null://"]);
        assert!(c.multi && c.sysadm);
        assert_eq!(c.iface_prefix, "eth");
        let c = ok(&["--iface=x", "--mul", "--hostname", "h1", "null://"]);
        assert_eq!(c.iface_prefix, "x");
        assert!(c.multi);
        assert_eq!(c.hostname.as_deref().and_then(OsStr::to_str), Some("h1"));
    }

    #[test]
    fn clone_wins_over_unshare() {
        assert_eq!(ok(&["-u", "-c"]).ns_mode, NsMode::Clone);
        assert_eq!(ok(&["-u"]).ns_mode, NsMode::Unshare);
        assert_eq!(ok(&["-c"]).ns_mode, NsMode::Clone);
    }

    #[test]
    fn resolv_env_defaults_and_precedence() {
        let env = |k: &str| match k {
            "SHELL" => Some(OsString::from("/bin/sh")),
            "VDE_RESOLVADDR" => Some(OsString::from("9.9.9.9,2620:fe::fe")),
            "VDE_RESOLVCONF" => Some(OsString::from("/etc/hosts")),
            _ => None,
        };
        let c = parse(Vec::<OsString>::new(), env).unwrap();
        assert_eq!(c.resolvaddr.unwrap(), "9.9.9.9,2620:fe::fe");
        assert_eq!(c.resolvconf.unwrap(), PathBuf::from("/etc/hosts"));
        let c = parse(["-R", "1.1.1.1"].map(OsString::from), env).unwrap();
        assert_eq!(c.resolvaddr.unwrap(), "1.1.1.1");
    }

    #[test]
    fn errors_are_one_line() {
        for args in [
            &["-x"][..],
            &["--bogus"],
            &["-i"],
            &["--r", "x"],
            &["--h"],
            &["--multi=1"],
            &["-i", "averylongprefix", "null://"],
            &["--workers", "0"],
            &["--cpus", "3-1"],
            &["--busy-poll", "1000001", "-"],
            &["--busy-poll", "-1", "-"],
            &["--busy-poll", "soon", "-"],
            &["--rt-priority", "0", "-"],
            &["--rt-priority", "100", "-"],
            &["-m", "null://", "-", "--", "true"],
        ] {
            match p(args) {
                Err(CliError::Usage(m)) => assert_eq!(m.lines().count(), 1, "{args:?}: {m}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ifname_length_limit() {
        // 14-char prefix + "0" = 15 bytes: fine; with 11 interfaces "...10" is 16: too long.
        assert!(p(&["-i", "abcdefghijklmn", "null://"]).is_ok());
        assert!(p(&["-i", "abcdefghijklmno", "null://"]).is_err());
        let mut a = vec!["-i", "abcdefghijklmn", "-m"];
        a.extend(std::iter::repeat_n("null://", 11));
        assert!(p(&a).is_err());
    }

    #[test]
    fn shell_unset_is_explained() {
        match parse(Vec::<OsString>::new(), |_| None) {
            Err(CliError::Usage(m)) => assert!(m.contains("SHELL"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_groups_fast_options_apart() {
        let h = help();
        let vd = h.find("--resolvaddr").unwrap();
        let grp = h.find(FAST).unwrap();
        assert!(vd < grp && h.find("--engine").unwrap() > grp, "{h}");
        assert!(matches!(p(&["-h"]), Err(CliError::Help(_))));
    }

    #[test]
    fn leading_double_dash_and_dash_vnl() {
        let c = ok(&["-i", "x", "--", "-", "ls", "-l"]);
        assert!(c.vnls.is_empty());
        assert_eq!(cmd(&c), ["ls", "-l"]);
        // vdens would execute "--" (and fail); vdens-fast takes it as a separator.
        let c = ok(&["-", "--", "x"]);
        assert_eq!(cmd(&c), ["x"]);
        let c = ok(&["-R", "1.1.1.1", "null://", "--help"]);
        assert_eq!(cmd(&c), ["--help"]);
        let c = ok(&["--iface", "-m", "null://"]);
        assert_eq!(c.iface_prefix, "-m");
        assert!(!c.multi);
    }

    #[test]
    fn single_mode_separator() {
        let c = ok(&["null://", "--", "ip", "link"]);
        assert_eq!(cmd(&c), ["ip", "link"]);
        let c = ok(&["null://", "--"]);
        assert_eq!(cmd(&c), ["/bin/sh"]);
        let c = ok(&["null://", "ip", "--"]);
        assert_eq!(cmd(&c), ["ip", "--"]);
    }

    #[test]
    fn repeated_options_take_the_last() {
        let c = ok(&["-i", "a", "-i", "b", "-R", "x", "-R", "y", "-r", "/a", "-r", "/b"]);
        assert_eq!(c.iface_prefix, "b");
        assert_eq!(c.resolvaddr.as_deref().and_then(OsStr::to_str), Some("y"));
        assert_eq!(c.resolvconf, Some(PathBuf::from("/b")));
        let c = ok(&["-m", "-m", "-H", "a", "--hostname=b", "-s", "-s", "null://"]);
        assert!(c.multi && c.sysadm);
        assert_eq!(c.hostname.as_deref().and_then(OsStr::to_str), Some("b"));
        let c = ok(&["-c", "--clone", "-u", "-u", "-"]);
        assert_eq!(c.ns_mode, NsMode::Clone);
    }

    #[test]
    fn getopt_forms() {
        // Attached, separate, `=`, abbreviated, a value that looks like an option.
        for args in [
            &["-ieth", "null://"][..],
            &["-i", "eth", "null://"],
            &["--iface=eth", "null://"],
            &["--iface", "eth", "null://"],
            &["--if", "eth", "null://"],
            &["--i=eth", "null://"],
            &["-smieth", "null://"],
        ] {
            assert_eq!(ok(args).iface_prefix, "eth", "{args:?}");
        }
        assert_eq!(ok(&["-i", "--", "null://"]).iface_prefix, "--");
        assert_eq!(ok(&["-i", "-", "-"]).iface_prefix, "-");
        assert_eq!(ok(&["-i", "", "-"]).iface_prefix, "");
        // vdens's abbreviations keep their meaning beside vdens-fast's own options.
        assert!(ok(&["--s", "-"]).sysadm);
        assert_eq!(ok(&["--c", "-"]).ns_mode, NsMode::Clone);
        assert_eq!(ok(&["--u", "-"]).ns_mode, NsMode::Unshare);
        assert!(ok(&["--m", "null://"]).multi);
        assert_eq!(
            ok(&["--resolva", "1.2.3.4", "-"])
                .resolvaddr
                .as_deref()
                .and_then(OsStr::to_str),
            Some("1.2.3.4")
        );
        assert_eq!(
            ok(&["--ho", "h", "-"])
                .hostname
                .as_deref()
                .and_then(OsStr::to_str),
            Some("h")
        );
        assert_eq!(ok(&["--cp", "0", "-"]).cpus, Some(vec![0]));
        assert_eq!(ok(&["--stats-i", "50", "-"]).stats_interval_ms, 50);
        assert!(!ok(&["--no-o", "-"]).offload);
        assert_eq!(ok(&["-"]).busy_poll_us, 0);
        assert_eq!(ok(&["--busy-poll", "50", "-"]).busy_poll_us, 50);
        assert_eq!(ok(&["--busy", "1000000", "-"]).busy_poll_us, 1_000_000);
        assert_eq!(ok(&["-"]).rt_priority, None);
        assert_eq!(ok(&["--rt-priority", "99", "-"]).rt_priority, Some(99));
        // -R and -H take what vdens takes.
        for v in ["fe80::1%vde0", "dns.example", "", " 1.1.1.1", ",x"] {
            assert_eq!(
                ok(&["-R", v, "-"]).resolvaddr.as_deref().and_then(OsStr::to_str),
                Some(v)
            );
        }
        assert_eq!(
            ok(&["-H", "", "-"]).hostname.as_deref().and_then(OsStr::to_str),
            Some("")
        );
    }

    #[test]
    fn option_values_are_bytes() {
        use std::os::unix::ffi::OsStringExt;
        let b = |v: &[u8]| OsString::from_vec(v.to_vec());
        let env = |k: &str| (k == "SHELL").then(|| OsString::from("/bin/sh"));
        let args = [
            &b"-i\xff"[..],
            b"-R",
            b"\xfe,a\xc3",
            b"--hostname=h\xff",
            b"null://",
        ];
        let c = parse(args.map(b), env).unwrap();
        assert_eq!(c.iface_prefix.as_bytes(), b"\xff");
        assert_eq!(
            c.resolvaddr.as_deref().map(OsStr::as_bytes),
            Some(&b"\xfe,a\xc3"[..])
        );
        assert_eq!(c.hostname.as_deref().map(OsStr::as_bytes), Some(&b"h\xff"[..]));
        assert_eq!(
            resolv_conf_text(b"\xfe,a\xc3"),
            b"nameserver \xfe\nnameserver a\xc3\n"
        );
        // What the kernel refuses in an interface name is refused here, in one line.
        for bad in [&b"a\xa0"[..], b"a b", b"a/b", b"a:b", b"a\tb", b"a\rb"] {
            match parse([&b"-i"[..], bad, b"null://"].map(b), env) {
                Err(CliError::Usage(m)) => assert_eq!(m.lines().count(), 1, "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // 15 bytes, not characters.
        assert!(parse([&b"-i"[..], &[0xff; 14], b"null://"].map(b), env).is_ok());
        assert!(parse([&b"-i"[..], &[0xff; 15], b"null://"].map(b), env).is_err());
    }

    #[test]
    fn resolv_conf_as_vdens_writes_it() {
        assert_eq!(rc(""), "");
        assert_eq!(rc("1.1.1.1"), "nameserver 1.1.1.1\n");
        assert_eq!(
            rc("1.1.1.1,,2001:db8::1,"),
            "nameserver 1.1.1.1\nnameserver 2001:db8::1\n"
        );
        assert_eq!(rc(",x"), "nameserver \nnameserver x\n");
        assert_eq!(
            rc(" a ,fe80::1%vde0"),
            "nameserver  a \nnameserver fe80::1%vde0\n"
        );
    }

    #[test]
    fn cpu_list() {
        assert_eq!(parse_cpu_list("0,2-3,2").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_cpu_list("a"), Err(BadCpuItem("a".into())));
        assert_eq!(
            parse_cpu_list("0, 3-1").unwrap_err().to_string(),
            "\"3-1\" is not a CPU number or range (e.g. 0,2-3)"
        );
    }
}
