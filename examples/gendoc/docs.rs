//! The man pages and shell completions of vdens-fast and vdeplug-fast. vdens-fast's come from
//! its clap definition (`cli::command`, the one that parses its command line and makes
//! `--help`); vdeplug-fast parses vde_plug's command line by hand (getopt_long), so its clap
//! [`Command`] here is made for documentation only, from the parser's own option table
//! (`app::vdeplug::option_table`): an option the parser gains without a text here stops the
//! generator (and the test that runs it).

use clap::{Arg, ArgAction, Command, ValueHint};
use clap_complete::Shell;
use std::io::Write;
use std::path::Path;

/// The VNL schemes completions offer (vdens-fast's own, then libvdeplug plugins' usual ones).
pub const SCHEMES: &[&str] = &[
    "vde://",
    "ptp://",
    "switch://",
    "hub://",
    "tap://",
    "udp://",
    "vxlan://",
    "vxvde://",
    "null://",
    "cmd://",
    "seqpacket://",
    "slirp://",
    "pcap://",
    "vlan://",
    "multi://",
    "bonding://",
];

/// A block of man page text.
pub enum B {
    /// A paragraph.
    P(&'static str),
    /// Lines shown as they are (commands).
    Ex(&'static str),
    /// A term and its description.
    Item(&'static str, &'static str),
}
use B::{Ex, Item, P};

type Section = (&'static str, &'static [B]);

/// Escapes text for roff: backslashes, hyphens (so that options copy as ASCII), and a control
/// character at the start of a line.
fn esc(s: &str) -> String {
    s.lines()
        .map(|l| {
            let t = l.replace('\\', "\\e").replace('-', "\\-");
            if t.starts_with('.') || t.starts_with('\'') {
                format!("\\&{t}")
            } else {
                t
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_sections(out: &mut Vec<u8>, sections: &[Section]) {
    for (title, blocks) in sections {
        out.extend(format!(".SH \"{title}\"\n").bytes());
        for b in *blocks {
            let t = match b {
                P(t) => format!(".PP\n{}\n", esc(t)),
                Ex(t) => format!(".PP\n.RS 4\n.nf\n{}\n.fi\n.RE\n", esc(t)),
                Item(term, t) => format!(".TP\n\\fB{}\\fR\n{}\n", esc(term), esc(t)),
            };
            out.extend(t.bytes());
        }
    }
}

fn synopsis(out: &mut Vec<u8>, lines: &[&str]) {
    out.extend(b".SH SYNOPSIS\n");
    for l in lines {
        out.extend(format!(".PP\n\\fB{}\\fR\n", esc(l)).bytes());
    }
}

/// Renders a page: title, name, synopsis, description and options from `cmd`, then `sections`.
fn man_page(cmd: Command, usage: &[&str], sections: &[Section]) -> std::io::Result<Vec<u8>> {
    let name = cmd.get_name().to_string();
    let man = clap_mangen::Man::new(cmd)
        .manual("User Commands")
        .source(format!("{name} {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    synopsis(&mut out, usage);
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    render_sections(&mut out, sections);
    Ok(out)
}

/// vdens-fast's command with its positionals, for the completions (its real parser reads the
/// positionals itself, with vdens's rules).
pub fn vdens_completion_command() -> Command {
    vdens_fast::cli::command()
        .arg(
            Arg::new("VNL")
                .value_parser(clap::builder::PossibleValuesParser::new(SCHEMES))
                .help("Virtual network locator"),
        )
        .arg(
            Arg::new("CMD")
                .num_args(0..)
                .trailing_var_arg(true)
                .value_hint(ValueHint::CommandWithArguments)
                .help("Command to run inside"),
        )
}

/// Value name and help of each option of vdeplug-fast, by its first long name (or its short
/// one when it has none). `None`: not documented here.
fn vdeplug_option_doc(key: &str) -> Option<(&'static str, &'static str)> {
    Some(match key {
        "c" => ("COMMAND", "Login-shell mode (sshd runs SHELL -c COMMAND): only -c vde_plug is accepted; the session is logged (START/STOP) and, for members of the group vdeplug_iplog, the IP addresses on the stream. Any other COMMAND, and an interactive login (argv[0] starting with -), is logged as FAILED and refused with status 255"),
        "pidfile" => ("FILE", "Write the pid (the daemon's with -d) to FILE, removed at the end. A relative FILE is taken from the directory vdeplug-fast was started in"),
        "daemon" => ("", "Run in the background: fork, new session, in /, stdin, stdout and stderr on /dev/null; the VNLs are opened after the fork. The parent returns once the daemon runs, or says why it could not start and exits 1"),
        "mod" => ("MODE", "Octal permissions of the data socket of the first VNL when it is a vde:// one (a mode= in the VNL wins)"),
        "mod2" => ("MODE", "The same for the second VNL"),
        "group" => ("GROUP", "Group of the data socket of the first VNL when it is a vde:// one (a group= in the VNL wins)"),
        "group2" => ("GROUP", "The same for the second VNL"),
        "port" => ("PORT", "Switch port to ask for on the first VNL when it is a vde:// one: a number from 1 (a port in the VNL wins; vde://PATH[PORT] is the modern spelling)"),
        "port2" => ("PORT", "The same for the second VNL"),
        "log" => ("", "Log START and STOP of the session to syslog (through /dev/log), with the user and the first word of SSH_CLIENT"),
        "iplog" => ("", "As -l, plus one message per new IPv4/IPv6 source address (and VLAN) on the stream from stdin or from the coprocess"),
        "descr" => ("DESCR", "Description a switch shows for the connection [default: vdeplug:]"),
        "help" => ("", "Print a summary of the usage on stdout and exit 0"),
        "engine" => ("ENGINE", "vdeplug-fast's own: the data plane of a switch:// or hub:// hosted in this process: uring (io_uring), poll (epoll), or auto (io_uring when usable; the default). Cables run on the epoll node"),
        "busy-poll" => ("USEC", "vdeplug-fast's own: before the data-plane thread sleeps it spins up to USEC microseconds (at most 1000000) for the next frame, taken then without a wake-up; it keeps a CPU busy while traffic flows: for dedicated CPUs. 0, the default, is off"),
        "rt-priority" => ("PRIO", "vdeplug-fast's own: run the data-plane thread under the SCHED_FIFO real-time policy at PRIO (1-99), so that a frame waits for no other program's time slice. Needs CAP_SYS_NICE or ulimit -r PRIO; when refused, one line says so and it runs under the normal scheduler"),
        "stats" => ("FILE", "vdeplug-fast's own, as vdens-fast's: write the data plane's counters to FILE as one JSON line, every --stats-interval, at once on SIGUSR1, and at the end. Each link (a cable's plug1 and plug2, a hosted switch's or hub's ports) is named with its VNL, says whether it negotiated super-frames with its peer (off, offered, negotiated) and counts per direction the frames, bytes, drops by reason and the super-frames that crossed its wire whole (wire_super: received from the link under tap_to_link, sent to it under link_to_tap). FILE is replaced whole (written to FILE.tmp, then renamed); a relative FILE is taken from the directory vdeplug-fast was started in; one that cannot be written is said in a line and does not stop the run"),
        "stats-interval" => ("MS", "vdeplug-fast's own: milliseconds between --stats writes, from 10 [default: 1000]"),
        "version" => ("", "Print the version and the data-plane engines this kernel allows, and exit 0"),
        _ => return None,
    })
}

/// The keys `vdeplug_option_doc` documents (a test checks them against the parser's table).
pub const VDEPLUG_DOCUMENTED: &[&str] = &[
    "c",
    "pidfile",
    "daemon",
    "mod",
    "mod2",
    "group",
    "group2",
    "port",
    "port2",
    "log",
    "iplog",
    "descr",
    "help",
    "engine",
    "busy-poll",
    "rt-priority",
    "stats",
    "stats-interval",
    "version",
];

/// The key of an entry of `option_table`: its first long name, else its short one.
pub fn vdeplug_key(short: Option<char>, longs: &[&'static str]) -> String {
    longs
        .first()
        .map(|l| l.to_string())
        .or_else(|| short.map(String::from))
        .unwrap_or_default()
}

/// vdeplug-fast's command line as a clap [`Command`], for the man page and the completions:
/// one argument per entry of the parser's option table.
pub fn vdeplug_command() -> Command {
    let mut cmd = Command::new("vdeplug-fast")
        .version(env!("CARGO_PKG_VERSION"))
        .about("plug VDE networks together, or a VDE network to a stream, fast")
        .long_about(
            "vdeplug-fast is vde_plug(1) on the vdens-fast engine: it joins two VDE networks \
             with a cable (VNL VNL), one network to its stdin/stdout as a stream of frames each \
             preceded by its length in 2 bytes, big-endian (VNL), or one network to a coprocess \
             speaking that stream ([VNL] = CMD [ARGS]). An omitted or empty VNL means the \
             default VDE network, as for vde_plug. switch://PATH and hub://PATH are hosted in \
             this process. Options are vde_plug's, read as getopt_long does (bundled short \
             options, --opt=value, unique abbreviations, permutation, POSIXLY_CORRECT), except \
             that they stop at =.",
        )
        .disable_help_flag(true)
        .disable_version_flag(true);
    for (short, longs, takes) in vdens_fast::app::vdeplug::option_table() {
        let key = vdeplug_key(short, &longs);
        let doc = VDEPLUG_DOCUMENTED
            .iter()
            .find(|k| **k == key)
            .and_then(|&id| Some((id, vdeplug_option_doc(id)?)));
        let Some((id, (value, help))) = doc else {
            panic!("vdeplug-fast's option {key} has no documentation in examples/gendoc/docs.rs")
        };
        let mut a = Arg::new(id).help(help);
        if let Some(c) = short {
            a = a.short(c);
        }
        if let Some((first, rest)) = longs.split_first() {
            a = a.long(*first).visible_aliases(rest.to_vec());
        }
        a = if takes {
            a.action(ArgAction::Set).value_name(value)
        } else {
            a.action(ArgAction::SetTrue)
        };
        a = match id {
            "engine" => a.value_parser(["auto", "uring", "poll"]),
            "pidfile" | "stats" => a.value_hint(ValueHint::FilePath),
            "c" => a.value_parser(["vde_plug"]),
            _ => a,
        };
        cmd = cmd.arg(a);
    }
    cmd.arg(
        Arg::new("VNL")
            .num_args(0..=2)
            .value_parser(clap::builder::PossibleValuesParser::new(SCHEMES))
            .help("Virtual network locator"),
    )
}

const VDENS_USAGE: &[&str] = &[
    "vdens-fast [OPTIONS] [VNL [CMD [ARGS...]]]",
    "vdens-fast -m|--multi [OPTIONS] VNL [VNL...] [-- CMD [ARGS...]]",
];

const VDEPLUG_USAGE: &[&str] = &[
    "vdeplug-fast [OPTIONS] [VNL]",
    "vdeplug-fast [OPTIONS] VNL1 VNL2",
    "vdeplug-fast [OPTIONS] [VNL] = CMD [ARGS...]",
];

const VNLS: &[B] = &[
    P("A VNL (virtual network locator) names a VDE network, as in vdeplug4. A VNL of -, no or the empty string, or no VNL at all, means no interface; a plain path is a vde:// path."),
    Item("vde://PATH[PORT|GROUP][mode=..,group=..]", "A port of a vde2 vde_switch or of a vdeplug4 switch:// or hub:// at PATH."),
    Item("ptp://PATH[seqpacket]", "A point-to-point cable: the same VNL at both ends, whichever starts first. A new PATH speaks vdeplug 4.0.1's datagram protocol; [seqpacket] makes this end a listener of the 2025 (SOCK_SEQPACKET) protocol, where peers may come, go and come back. A seqpacket listener already at PATH is joined with or without the option."),
    Item("switch://PATH, hub://PATH", "A switch or hub hosted in this process (default PATH /tmp/vdenode_USER); classic clients join with vde://PATH. Options mode=, dirmode=, grp=, hashsize=, expiretime=, hashseed=."),
    Item("tap://NAME", "A tap interface of the namespace vdens-fast starts in."),
    Item("udp://[SRC_ADDR:]SRC_PORT->DST_ADDR:DST_PORT", "A connected UDP socket (IPv4 or IPv6): only the named peer is heard; either end may start first."),
    Item("vxlan://[GROUP][/OPTION...], vxvde://[GROUP][/OPTION...]", "A VXLAN or vxvde network (options v4, v6, port=, vni=, ttl=, rcvbuf=, hashsize=, expiretime=, if=; vxvde also grp=, bind=)."),
    Item("=CMD ARGS, cmd://\"CMD ARGS\"", "The frames as a stream through a command's stdin/stdout (e.g. =ssh host vde_plug vde:///tmp/sw)."),
    Item("seqpacket://FD, null://", "An inherited SOCK_SEQPACKET descriptor; a network that carries nothing."),
    Item("slirp://, pcap://, vlan://, multi://, bonding://, ...", "Any other scheme is opened by libvdeplug (libvdeplug.so.2, loaded at run time, with the plugins of the packages vdeplug, libvdeplug-slirp, ...) and bridged into the data plane by a thread; vdens-fast then runs in clone mode."),
];

const VDENS_SECTIONS: &[Section] = &[
    ("VIRTUAL NETWORK LOCATORS", VNLS),
    ("EXAMPLES", &[
        P("A namespace with only a loopback interface:"),
        Ex("vdens-fast - sh -c 'ip link set lo up; ping -c 1 127.0.0.1'"),
        P("Two namespaces on a switch (hosted here by vdeplug-fast; vde_plug null:// switch:///tmp/mysw or vde2's vde_switch -s /tmp/mysw work too):"),
        Ex("vdeplug-fast null:// switch:///tmp/mysw &\nvdens-fast vde:///tmp/mysw   # ip addr add 10.0.0.1/24 dev vde0; ip link set vde0 up\nvdens-fast vde:///tmp/mysw   # ip addr add 10.0.0.2/24 dev vde0; ip link set vde0 up; ping 10.0.0.1"),
        P("A point-to-point cable to a virtual machine (qemu ... -nic vde,sock=ptp:///tmp/myptp, or any other ptp:// peer):"),
        Ex("vdens-fast ptp:///tmp/myptp"),
        P("Several networks at once: vde0 is wired to the first VNL, vde1 to the second:"),
        Ex("vdens-fast --multi vde:///tmp/mysw ptp:///tmp/myptp -- ip -br link"),
        P("A NAT router between a ptp network and a host tap (the host owns tap0, 10.0.0.254/24; run this in the namespace that owns tap0), and a client behind it:"),
        Ex("vdens-fast --multi ptp:///tmp/lan tap://tap0 -- sh -c '\n  ip addr add 192.168.1.1/24 dev vde0; ip link set vde0 up\n  ip addr add 10.0.0.1/24 dev vde1;   ip link set vde1 up\n  echo 1 > /proc/sys/net/ipv4/ip_forward\n  iptables -t nat -A POSTROUTING -o vde1 -j MASQUERADE\n  exec sh'\nvdens-fast ptp:///tmp/lan   # ip addr add 192.168.1.2/24 dev vde0; ip link set vde0 up;\n                            # ip route add default via 192.168.1.1"),
        P("A network through a classic plug over ssh:"),
        Ex("vdens-fast '=ssh otherhost vde_plug vde:///tmp/remote_sw'"),
    ]),
    ("ENVIRONMENT", &[
        Item("VDE_RESOLVCONF", "Default of -r: the file that appears as /etc/resolv.conf inside."),
        Item("VDE_RESOLVADDR", "Default of -R: comma-separated name server addresses (IPv4/IPv6) written to a private /etc/resolv.conf."),
        Item("VDEPLUGIN_PATH", "Colon-separated directories where libvdeplug looks for the plugins of the schemes vdens-fast does not implement itself."),
        Item("SHELL", "The command run when none is given."),
    ]),
    ("EXIT STATUS", &[
        P("The exit status of CMD; 128+N when CMD was killed by signal N; 127 when CMD cannot be executed; 1 when vdens-fast itself fails, after one line on stderr that names the cause and the fix (PROGRAM: what failed: why (hint)). --help and --version exit 0."),
    ]),
    ("SIGNALS", &[
        P("SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to vdens-fast are forwarded to CMD (signals from the terminal already reach it and are not sent twice). If vdens-fast is killed (SIGKILL), CMD is killed too. SIGUSR1 writes the data plane's counters at once (to the --stats file, or as one JSON line on stderr)."),
    ]),
    ("FILES", &[
        Item("/dev/net/tun", "Opened for the tap interfaces: it must be mode 0666 (as distributions ship it)."),
        Item("/etc/resolv.conf", "Replaced inside (in a mount namespace of its own) with -r or -R."),
        Item("/etc/apparmor.d/vdens-fast", "The AppArmor profile that lets vdens-fast and vdeplug-fast create user namespaces where kernel.apparmor_restrict_unprivileged_userns=1 (Ubuntu 23.10 and later); loaded by the package, or by hand with: sudo apparmor_parser -r /etc/apparmor.d/vdens-fast"),
        Item("~/.vdeplug/default, ~/.vde2/default.switch", "The default VDE network of an empty VNL, as for libvdeplug."),
        Item("/usr/share/doc/vdens-fast/README.md, BENCHMARKS.md", "The full description, the tutorial, and the measurements."),
    ]),
    ("PERFORMANCE", &[
        P("Frames between each tap and its network move through worker threads, each with its own io_uring (multishot receives into provided buffers, batched submissions), or the epoll engine where io_uring cannot be used (vdens-fast says so in one line; --version tells which engines this kernel allows). --workers sets their number (default: one per two CPUs, at most one per interface); --cpus pins them. The taps are opened with segmentation offload: the namespace hands vdens-fast TCP/UDP super-frames of up to 64 KiB, cut into standard frames for the network, and runs of a flow's frames are coalesced for the tap (--no-offload turns this off). The network only ever carries standard frames, so classic peers see nothing different. --stats FILE writes per-interface counters as JSON; every frame is either delivered or counted as dropped with its reason. Measurements against classic vdens: /usr/share/doc/vdens-fast/BENCHMARKS.md."),
    ]),
    ("DIFFERENCES FROM VDENS", &[
        P("The same command line, VNLs and wire protocols as vdens(1) 0.2; where vdens-fast differs, it does better:"),
        Item("exit status", "vdens-fast exits with the command's status (see EXIT STATUS); vdens always exits 0."),
        Item("signals", "SIGINT, SIGTERM, SIGHUP, SIGQUIT are forwarded to the command; the command does not outlive a killed vdens-fast."),
        Item("diagnostics", "A failed uid/gid map, a missing or mode-0600 /dev/net/tun, disabled or restricted user namespaces (kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0, kernel.apparmor_restrict_unprivileged_userns=1) each end in one line naming the cause and the fix."),
        Item("descriptors", "None of vdens-fast's descriptors leaks into the command beyond stdin, stdout and stderr."),
        Item("VNL -- CMD", "Accepted in single mode too (vdens would try to execute --)."),
        Item("-V, long-only options", "-V prints the version; --engine, --workers, --cpus, --no-pin, --no-offload, --busy-poll, --rt-priority, --stats, --stats-interval are vdens-fast's own."),
        P("The whole list: /usr/share/doc/vdens-fast/README.md."),
    ]),
    ("SEE ALSO", &[P("vdeplug-fast(1), vdens(1), vde_plug(1), vde_switch(1), user_namespaces(7), apparmor(7)")]),
];

const VDEPLUG_SECTIONS: &[Section] = &[
    ("VIRTUAL NETWORK LOCATORS", VNLS),
    ("EXAMPLES", &[
        P("A switch, hosted in this process, that vdens-fast, vdens, vde_plug and qemu join with vde:///tmp/mysw:"),
        Ex("vdeplug-fast null:// switch:///tmp/mysw"),
        P("A switch with a vxvde network on one port:"),
        Ex("vdeplug-fast vxvde:// switch:///tmp/mysw"),
        P("A cable between two switches, in the background, with a pid file:"),
        Ex("vdeplug-fast -d -p /tmp/cable.pid vde:///tmp/sw1 vde:///tmp/sw2"),
        P("Two switches on two hosts joined over ssh (options stop at =, so ssh keeps its own):"),
        Ex("vdeplug-fast vde:///tmp/mysw = ssh -l user otherhost vde_plug vde:///tmp/remote_sw"),
        P("Record a network to a file, replay it later:"),
        Ex("vdeplug-fast vde:///tmp/mysw > dump\nvdeplug-fast vde:///tmp/mysw < dump"),
    ]),
    ("ENVIRONMENT", &[
        Item("VDEPLUGIN_PATH", "Colon-separated directories where libvdeplug looks for the plugins of the schemes vdeplug-fast does not implement itself."),
        Item("SSH_CLIENT", "Its first word is the remote address logged by -l, -L and -c vde_plug."),
        Item("POSIXLY_CORRECT", "When set, options stop at the first non-option (no permutation)."),
        Item("HOME", "Where the default network of an empty VNL is looked up."),
    ]),
    ("EXIT STATUS", &[
        P("0 when the stream input ends (also beside a hosted switch or hub, and when the coprocess exits), on SIGTERM, and after --help and --version; 1 when a VNL cannot be opened or the daemon cannot start; 255 on a usage error and in login-shell mode for anything but vde_plug. Killed by SIGINT or SIGHUP (re-sent to its process group) after removing what it created."),
    ]),
    ("SIGNALS", &[
        P("SIGTERM ends the run with status 0; SIGINT and SIGHUP end it by the same signal after cleaning up (pid file, a hosted switch's directory). SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2, SIGPROF, SIGVTALRM, SIGIO, SIGSTKFLT and SIGPWR are ignored, except SIGUSR1 with --stats: it writes the --stats file at once. A coprocess (= CMD) runs in its own process group with default signal dispositions and is stopped when vdeplug-fast ends."),
    ]),
    ("FILES", &[
        Item("~/.vdeplug/default, ~/.vde2/default.switch", "The default VDE network of an empty VNL, as for vde_plug."),
        Item("/dev/log", "The syslog socket of -l, -L and -c vde_plug."),
        Item("/etc/apparmor.d/vdens-fast", "The AppArmor profile that lets vdeplug-fast create user namespaces where kernel.apparmor_restrict_unprivileged_userns=1."),
        Item("/usr/share/doc/vdens-fast/README.md", "The full description (\"Differences from vde_plug\")."),
    ]),
    ("PERFORMANCE", &[
        P("A switch:// or hub:// hosted here runs on io_uring by default (one ring for all its ports, a flooded frame sent to every port from its one buffer; --engine poll puts it on the epoll node); cables, streams and overlays run on the epoll node. A switch drops a frame for a client whose socket is full rather than wait for it, so one slow client holds up no one, as vde_switch does."),
    ]),
    ("DIFFERENCES FROM VDE_PLUG", &[
        P("The command line and forms of vde_plug(1) 4.0.1; where vdeplug-fast differs:"),
        Item("-d", "The parent returns once the daemon runs, and when the daemon cannot start it says why and exits 1 (vde_plug's parent has exited 0 already)."),
        Item("-p", "A relative FILE is taken from where vdeplug-fast was started (vde_plug writes it into /), and a file that cannot be written is said in one line."),
        Item("-l", "The syslog identifier is the name vdeplug-fast was invoked by, and a run ended by a signal is logged STOP too."),
        Item("-h", "The summary goes to stdout with status 0 (vde_plug: stderr, 255)."),
        Item("=", "Options stop at =, so the command keeps its own."),
        Item("-V, --version, --engine, --busy-poll, --rt-priority, --stats, --stats-interval", "vdeplug-fast's own (SIGUSR1 writes the --stats file; without --stats it is ignored, as by vde_plug)."),
        P("The whole list: /usr/share/doc/vdens-fast/README.md, section \"Differences from vde_plug\"."),
    ]),
    ("SEE ALSO", &[P("vdens-fast(1), vde_plug(1), vdens(1), vde_switch(1)")]),
];

/// vdens-fast(1).
pub fn vdens_man() -> std::io::Result<Vec<u8>> {
    man_page(vdens_fast::cli::command(), VDENS_USAGE, VDENS_SECTIONS)
}

/// vdeplug-fast(1).
pub fn vdeplug_man() -> std::io::Result<Vec<u8>> {
    man_page(vdeplug_command(), VDEPLUG_USAGE, VDEPLUG_SECTIONS)
}

/// Where each shell looks for completions in a Debian package, and the file name.
pub fn completion_path(shell: Shell, bin: &str) -> String {
    match shell {
        Shell::Bash => format!("bash/{bin}"),
        Shell::Zsh => format!("zsh/_{bin}"),
        Shell::Fish => format!("fish/{bin}.fish"),
        _ => unreachable!("only bash, zsh and fish are generated"),
    }
}

/// Writes OUT/man/*.1 and OUT/completions/{bash,zsh,fish}/*.
pub fn write_all(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    std::fs::write(man.join("vdens-fast.1"), vdens_man()?)?;
    std::fs::write(man.join("vdeplug-fast.1"), vdeplug_man()?)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        for (bin, mut cmd) in [
            ("vdens-fast", vdens_completion_command()),
            ("vdeplug-fast", vdeplug_command()),
        ] {
            let p = out.join("completions").join(completion_path(shell, bin));
            std::fs::create_dir_all(p.parent().expect("a completion file has a directory"))?;
            let mut f = std::fs::File::create(&p)?;
            clap_complete::generate(shell, &mut cmd, bin, &mut f);
            f.flush()?;
        }
    }
    Ok(())
}
