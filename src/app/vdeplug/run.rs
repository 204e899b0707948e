//! vdeplug-fast's run: open what the command line names, wire it into one engine node, run
//! until a signal or the end of the input, and clean up as vde_plug 4.0.1 does.
//!
//! Signals, after selfsighandler.c: SIGHUP, SIGINT and SIGTERM end the run cleanly (the node's
//! files and the pid file are removed); then SIGTERM exits 0, while SIGHUP and SIGINT are sent
//! again to the whole process group with their default action (the process ends killed by
//! them). SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2, SIGPROF, SIGVTALRM, SIGIO, SIGSTKFLT and SIGPWR
//! do nothing (vde_plug ignores them; here they are blocked and read from a signalfd, so a
//! coprocess started before still gets the caller's dispositions), except SIGUSR1 under
//! `--stats`: it writes the statistics file at once, as vdens-fast's SIGUSR1 does.

use super::{
    ip_source, iplog_message, parse, program_name, remote_address, syslog_datagram, wire, Logging, Options,
    Parsed, Plan, Role, Shape, IPLOG_GROUP,
};
use crate::app::links::{self, CableWatch};
use crate::engine::{Endpoint, Engine, EngineOptions, Node, NodeKind, UringTuning};
use crate::transport::{self, Framing, Hosted, Link};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Signals that end the run (selfsighandler.c's handled ones).
pub const ENDING: [Signal; 3] = [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM];

/// Signals vde_plug ignores (selfsighandler.c on Linux with glibc >= 2.26: SIGPOLL is SIGIO,
/// SIGUNUSED is not defined).
pub const IGNORED: [Signal; 9] = [
    Signal::SIGPIPE,
    Signal::SIGALRM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPROF,
    Signal::SIGVTALRM,
    Signal::SIGIO,
    Signal::SIGSTKFLT,
    Signal::SIGPWR,
];

const USAGE: &str = "Usage:
  PROG [ OPTIONS ] [VNL]              frames as a 2-byte-length stream on stdin/stdout
  PROG [ OPTIONS ] VNL1 VNL2          a cable between two networks
  PROG [ OPTIONS ] [VNL] = CMD [ARGS] the stream through a coprocess (options stop at '=')
  an omitted or empty VNL means the default VDE network, as for vde_plug;
  switch://PATH and hub://PATH are hosted in this process (PROG null:// switch:///tmp/sw)
Options (vde_plug's; short ones may be bundled, long ones abbreviated):
  -d | --daemon                 run in the background (in /, output to /dev/null)
  -p PIDFILE | --pidfile PIDFILE  write the pid to PIDFILE (removed on exit)
  -l | --log                    log START/STOP on syslog
  -L | --iplog                  -l plus the IP addresses on the stream (stdin or the coprocess)
  -g GROUP | --group GROUP      group of the data socket (vde:// first VNL)
  -G GROUP | --group2 GROUP     the same for the second VNL
  -m MODE | --mod MODE          octal permissions of the data socket (vde:// first VNL)
  -M MODE | --mod2 MODE         the same for the second VNL
  --port PORT | --port2 PORT    switch port to ask for (obsolete: write vde://PATH[PORT])
  -D DESCR | --descr DESCR      description a switch shows for the connection (default vdeplug:)
  -c vde_plug                   login-shell mode (sshd runs SHELL -c COMMAND)
  --engine auto|uring|poll      data plane of the cables and of a hosted switch or hub: io_uring,
                                epoll, or auto (io_uring when usable; the default)
  --busy-poll USEC              spin up to USEC microseconds for the next frame before the
                                data-plane thread sleeps (dedicated CPUs; 0, the default, is off)
  --rt-priority PRIO            run the data-plane thread under SCHED_FIFO at PRIO (1-99;
                                needs CAP_SYS_NICE or ulimit -r PRIO)
  --stats FILE                  write the data plane's counters to FILE as JSON (each link:
                                frames, drops, whether it negotiated super-frames, those sent
                                and received whole) every --stats-interval, on SIGUSR1 and at
                                the end
  --stats-interval MS           milliseconds between --stats writes (from 10; default 1000)
  -h | --help                   this summary
  -V | --version                the version and the data-plane engines this kernel allows
";

/// Runs vdeplug-fast with `argv` (`argv[0]` included); returns the exit status, or ends the
/// process by SIGHUP/SIGINT after cleaning up.
pub fn main(argv: Vec<OsString>) -> i32 {
    let prog = program_name(argv.first().map(OsString::as_os_str));
    // The engine's and the transports' messages name the invoked program too.
    crate::diag::set_program(&prog);
    let parsed = parse(&argv, std::env::var_os("POSIXLY_CORRECT").is_some());
    let o = match parsed {
        Ok(Parsed::Run(o)) => *o,
        Ok(Parsed::Help) => {
            print!("{}", USAGE.replace("PROG", &prog));
            return 0;
        }
        Ok(Parsed::Version) => {
            println!(
                "{prog} {}\n{}",
                env!("CARGO_PKG_VERSION"),
                crate::cli::engines_here()
            );
            return 0;
        }
        Ok(Parsed::NotAShell) => {
            let log = SessionLog::new(&prog);
            log.send(&format!("FAILED: user {} IP {}", log.user, log.remote));
            eprintln!(
                "{prog}: this is a Virtual Distributed Ethernet (vde) tunnel broker, not a login shell: only vde_plug can be executed"
            );
            return 255;
        }
        Err(e) => {
            eprintln!("{prog}: {e} (see {prog} --help)");
            return 255;
        }
    };
    let log = o.logging.sessions.then(|| SessionLog::new(&prog));
    if let Some(l) = &log {
        l.send(&format!("START: user {} IP {}", l.user, l.remote));
    }
    let code = Run::new(prog, o, log.clone()).go();
    if let Some(l) = &log {
        l.send(&format!("STOP: user {} IP {}", l.user, l.remote));
    }
    match code {
        Ended::Status(c) => c,
        Ended::Signal(s) => die_by(s),
    }
}

enum Ended {
    Status(i32),
    Signal(Signal),
}

/// Ends the process with `sig` as vde_plug's handler does: the whole process group gets it
/// with its default action (this process still blocks it until the end).
fn die_by(sig: Signal) -> i32 {
    let _ = std::io::stdout().flush();
    let _ = nix::sys::signal::killpg(nix::unistd::getpgrp(), sig);
    let mut set = SigSet::empty();
    set.add(sig);
    let _ = set.thread_unblock();
    // The signal arrives at the unblock; should it not (the group is gone), end as killed.
    128 + sig as i32
}

/// START/STOP and address messages to syslog (vde_plug_log.c), through /dev/log.
#[derive(Clone)]
struct SessionLog {
    ident: String,
    user: String,
    remote: String,
}

impl SessionLog {
    fn new(ident: &str) -> SessionLog {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        SessionLog {
            ident: ident.to_string(),
            user,
            remote: remote_address(std::env::var_os("SSH_CLIENT").as_deref()),
        }
    }

    /// Best effort, as syslog(3) without LOG_CONS: nothing happens when no daemon listens.
    fn send(&self, message: &str) {
        if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
            let _ = s.send_to(syslog_datagram(&self.ident, message).as_bytes(), "/dev/log");
        }
    }
}

/// True when the caller belongs to [`IPLOG_GROUP`] (vde_plug's checkuidgroup).
fn in_iplog_group() -> bool {
    let Ok(Some(g)) = nix::unistd::Group::from_name(IPLOG_GROUP) else {
        return false;
    };
    let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::getuid()) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(u.name.clone()) else {
        return false;
    };
    u.gid == g.gid || nix::unistd::getgrouplist(&name, u.gid).is_ok_and(|l| l.contains(&g.gid))
}

/// A failure of the run: one line, exit status 1.
struct Failed(String);

struct Run {
    prog: String,
    o: Options,
    log: Option<SessionLog>,
    /// The pid file as an absolute path (the daemon runs in /).
    pidfile: Option<PathBuf>,
    /// The --stats file as an absolute path (likewise).
    stats: Option<PathBuf>,
    /// Threads copying stdout from the engine's pipe, waited for at the end.
    pumps: Vec<JoinHandle<()>>,
    /// Set when stdin, copied by a thread, ends.
    stdin_ended: Option<Arc<AtomicBool>>,
    /// The datagram ptp second openers among the links, connected to a restarted first
    /// opener as soon as it is there (not only at their next failed send).
    watches: Vec<CableWatch>,
}

impl Run {
    fn new(prog: String, o: Options, log: Option<SessionLog>) -> Run {
        let absolute = |p: &OsString| {
            let p = PathBuf::from(p);
            std::path::absolute(&p).unwrap_or(p)
        };
        let pidfile = o.pidfile.as_ref().map(absolute);
        let stats = o.stats.as_ref().map(absolute);
        Run {
            prog,
            o,
            log,
            pidfile,
            stats,
            pumps: Vec::new(),
            stdin_ended: None,
            watches: Vec::new(),
        }
    }

    fn go(mut self) -> Ended {
        let mut ready = None;
        if self.o.daemon {
            match daemonize() {
                Ok(Some(r)) => ready = Some(r),
                Ok(None) => unreachable!("the parent exits in daemonize"),
                Err(e) => {
                    eprintln!("{}: cannot run in the background: {e}", self.prog);
                    return Ended::Status(1);
                }
            }
        }
        if let Some(p) = &self.pidfile {
            // As vde_plug: a pid file that cannot be written does not stop the run.
            if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
                eprintln!(
                    "{}: cannot write the pid file {}: {} (running without it)",
                    self.prog,
                    p.display(),
                    crate::sys::err_text(&e)
                );
                self.pidfile = None;
            }
        }
        // Before anything starts a thread: every thread inherits the mask.
        let sfd = match block_signals() {
            Ok(s) => s,
            Err(Failed(m)) => {
                eprintln!("{}: {m}", self.prog);
                return Ended::Status(1);
            }
        };
        let ended = match self.start() {
            Ok((engine, input)) => {
                if let Some(r) = ready.take() {
                    daemon_ready(r);
                }
                let dump = self.stats.is_some();
                let ended = wait(&engine, &sfd, input.as_deref(), &mut self.watches, dump);
                // With --stats, the final counters are written here.
                engine.stop();
                ended
            }
            Err(Failed(m)) => {
                eprintln!("{}: {m}", self.prog);
                Ended::Status(1)
            }
        };
        self.finish_pumps();
        if let Some(p) = &self.pidfile {
            let _ = std::fs::remove_file(p);
        }
        ended
    }

    /// Opens the links, wires them and starts the engine. Returns the engine, and the flag
    /// set when the input of a hosted node's stream endpoint ends (a cable's end is the
    /// engine's to see).
    fn start(&mut self) -> Result<(Engine, Option<Arc<AtomicBool>>), Failed> {
        let descr = self.o.descr.clone();
        // A cable's vde:// links offer their switches super-frames, and its datagram ptp://
        // links their peers: between two vdens-fast or vdeplug-fast switches, or vdens-fast
        // ptp ends, they then cross the cable whole (cut by the node for a link that did not
        // take them). Nothing else is opened with offload (a tap:// link would get a
        // virtio-net header).
        let cable = matches!(self.o.plan, Plan::Cable { .. });
        let open = |v: &OsStr, i: usize, o: &Options| -> Result<Link, Failed> {
            let v = super::with_open_args(&resolve_plain(v, &o.open_args[i])?, &o.open_args[i]);
            let how = transport::Opening {
                descr: &descr,
                rejoin: false,
                offload: cable && offers(&v),
                superframe_nodes: true,
            };
            transport::open_with(&v, &how).map_err(|e| Failed(e.to_string()))
        };
        let o = self.o.clone();
        let links = match &o.plan {
            Plan::Stream { vnl } => {
                let first = open(vnl, 0, &o)?;
                let hosted = role(&first).hosts();
                [first, self.stdio_link(hosted)?]
            }
            Plan::Cable { vnls } => {
                let first = open(&vnls[0], 0, &o)?;
                [first, open(&vnls[1], 1, &o)?]
            }
            Plan::Cmd { vnl, argv } => {
                let first = open(vnl, 0, &o)?;
                let shown = argv
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ");
                let start = || transport::open_cmd(&format!("={shown}"), argv);
                // A daemon's coprocess writes to /dev/null, as after daemon(3) in vde_plug
                // (holding the caller's stderr would keep e.g. `$(vdeplug-fast -d ...)` waiting).
                let cmd = if o.daemon {
                    with_stderr_on_dev_null(start)?
                } else {
                    start()
                };
                [first, cmd.map_err(|e| Failed(e.to_string()))?]
            }
        };
        let mut links = links;
        let w = wire([role(&links[0]), role(&links[1])]).map_err(|e| Failed(e.to_string()))?;
        // vde_plug ends when its stream input ends, also beside a switch or hub it hosts; the
        // node does not stop for an endpoint, so a thread copying that input tells.
        let hosted = match w.shape {
            Shape::Host { plug: Some(i), .. } if links[i].framing == Framing::Stream => Some(i),
            _ => None,
        };
        let input = match (&o.plan, hosted) {
            (Plan::Stream { .. }, Some(_)) => self.stdin_ended.clone(),
            // -L reads the frames from a coprocess too (vde_plug's plug2cmd is its stream form).
            (Plan::Cmd { .. }, _) => self.interpose_input(&mut links[1], hosted.is_some())?,
            (_, Some(i)) => self.interpose_input(&mut links[i], true)?,
            (_, None) => None,
        };
        self.watches = links.iter().filter_map(CableWatch::of).collect();
        let node = node_of(links, w);
        let opts = EngineOptions {
            choice: o.engine,
            workers: None,
            cpus: None,
            pin: false,
            // No user namespace here: CAP_SYS_NICE or RLIMIT_RTPRIO count for the thread.
            realtime: o.rt_priority.map(|priority| crate::engine::Realtime {
                priority,
                elevator: None,
            }),
            stats: self.stats.clone(),
            stats_interval: Duration::from_millis(o.stats_interval_ms),
        };
        let tuning = UringTuning {
            busy_poll_us: o.busy_poll_us,
            ..UringTuning::default()
        };
        let engine = Engine::start_nodes(opts, tuning, Vec::new(), vec![node])
            .map_err(|e| Failed(format!("cannot start the data plane: {e}")))?;
        Ok((engine, input))
    }

    /// The stream on stdin/stdout. A descriptor epoll refuses (a regular file, /dev/null) is
    /// always ready: a thread copies it through a pipe, blocking on the file as vde_plug's
    /// read/write do. With -L the stream from stdin always goes through that thread, which
    /// logs each new source address.
    fn stdio_link(&mut self, hosted: bool) -> Result<Link, Failed> {
        let dup = |fd: i32, what: &str| -> Result<OwnedFd, Failed> {
            crate::sys::dup_inherited(fd)
                .map_err(|e| Failed(format!("cannot use {what}: {}", crate::sys::err_text(&e))))
        };
        // A daemon's stdin and stdout are /dev/null, as after daemon(3) in vde_plug.
        let (stdin, stdout) = if self.o.daemon {
            let null = |w: bool| {
                std::fs::OpenOptions::new()
                    .read(!w)
                    .write(w)
                    .open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(|e| Failed(format!("cannot open /dev/null: {}", crate::sys::err_text(&e))))
            };
            (null(false)?, null(true)?)
        } else {
            (dup(0, "standard input")?, dup(1, "standard output")?)
        };
        let iplog = self.iplog();
        let rx = if iplog.is_some() || hosted || !pollable(&stdin) {
            let (r, ended) = interpose(stdin, iplog, hosted)?;
            self.stdin_ended = Some(ended);
            r
        } else {
            stdin
        };
        let tx = if pollable(&stdout) {
            stdout
        } else {
            let (r, w) = pipe()?;
            let to = File::from(stdout);
            self.pumps
                .push(std::thread::spawn(move || copy_out(File::from(r), to)));
            w
        };
        let mut l = Link::null("stdio");
        l.framing = Framing::Stream;
        l.rx = Some(rx);
        l.tx = Some(tx);
        Ok(l)
    }

    /// Puts a copying thread on `l`'s input when the run must see its end (`hosted`: the node
    /// will not) or -L must read it; returns the flag to end the run on, when `hosted`.
    fn interpose_input(&self, l: &mut Link, hosted: bool) -> Result<Option<Arc<AtomicBool>>, Failed> {
        let iplog = self.iplog();
        if !hosted && iplog.is_none() {
            return Ok(None);
        }
        let Some(rx) = l.rx.take() else {
            return Ok(None);
        };
        let (r, ended) = interpose(rx, iplog, hosted)?;
        l.rx = Some(r);
        Ok(hosted.then_some(ended))
    }

    /// The address log of -L (or of a login shell whose user is in vdeplug_iplog).
    fn iplog(&self) -> Option<IpLog> {
        let Logging { addresses, login, .. } = self.o.logging;
        let on = addresses || (login && in_iplog_group());
        let log = self.log.clone()?;
        on.then(|| IpLog {
            log,
            seen: HashSet::new(),
        })
    }

    /// Waits (bounded) for the stdio threads to write out what the engine left in their pipes.
    fn finish_pumps(&mut self) {
        let end = Instant::now() + Duration::from_secs(2);
        for p in self.pumps.drain(..) {
            while !p.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
            if p.is_finished() {
                let _ = p.join();
            }
        }
    }
}

/// The VNL that -m/-g/--port apply to: an empty or plain one resolved first (the user's default
/// switch, a VNL file) by the transport's own `resolve_plain`, as libvdeplug does.
fn resolve_plain(vnl: &OsStr, a: &super::OpenArgs) -> Result<OsString, Failed> {
    if *a == super::OpenArgs::default() {
        return Ok(vnl.to_os_string());
    }
    transport::resolve_plain(vnl).map_err(|e| Failed(e.to_string()))
}

/// Whether `vnl` opens a link that offers super-frames in a cable: `vde://` (a plain path, or
/// a VNL file naming one, too) or `ptp://` (its datagram ends; a seqpacket end is hosted and
/// offers nothing).
fn offers(vnl: &OsStr) -> bool {
    transport::resolve_plain(vnl)
        .ok()
        .and_then(|r| crate::vnl::parse_os(&r).ok())
        .is_some_and(|s| matches!(s, crate::vnl::Spec::Vde(_) | crate::vnl::Spec::Ptp { .. }))
}

/// The role of an opened link for [`wire`].
fn role(l: &Link) -> Role {
    match &l.node {
        None if l.framing == Framing::Null => Role::Null,
        None => Role::Plain,
        Some(Hosted::Overlay(_)) => Role::Overlay,
        Some(Hosted::Ptp(h)) if h.peer().is_some() => Role::PtpConnected,
        Some(_) => Role::Host,
    }
}

fn plug(name: &str, l: Link) -> Endpoint {
    Endpoint::Link {
        name: name.into(),
        link: Box::new(l),
    }
}

/// The engine node for two opened links, as [`wire`] says.
fn node_of(mut links: [Link; 2], w: super::Wiring) -> Node {
    if let Some(i) = w.demote {
        let l = &mut links[i];
        if let Some(Hosted::Ptp(h)) = l.node.as_mut() {
            let peer = h.take_peer().expect("a connected ptp end has its peer");
            *l = Link::single(&l.vnl.clone(), Framing::Datagram, peer);
        }
    }
    match w.shape {
        Shape::Cable => {
            let [a, b] = links;
            Node {
                name: "cable".into(),
                kind: NodeKind::Cable,
                endpoints: vec![plug("plug1", a), plug("plug2", b)],
            }
        }
        Shape::Host { host, plug: other } => {
            let hosted = links[host].node.take().expect("the host link hosts");
            let name = links[host].vnl.clone();
            let [a, b] = links;
            let rest = if host == 0 { b } else { a };
            Node {
                name,
                kind: NodeKind::hosting(hosted),
                endpoints: other.map(|_| plug("plug", rest)).into_iter().collect(),
            }
        }
    }
}

/// Blocks the ending and the ignored signals in this thread (the engine's threads inherit the
/// mask) and returns a signalfd for them.
fn block_signals() -> Result<SignalFd, Failed> {
    let mut set = SigSet::empty();
    for s in ENDING.iter().chain(IGNORED.iter()) {
        set.add(*s);
    }
    set.thread_block()
        .map_err(|e| Failed(format!("cannot block signals: {}", e.desc())))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Failed(format!("cannot create a signalfd: {}", e.desc())))
}

/// Runs until an ending signal or the end of the input (a cable's, or `input`); looks at the
/// `watches` every [`links::TICK`]. `dump` (--stats): SIGUSR1 writes the statistics file;
/// otherwise it is ignored, as vde_plug does.
fn wait(
    engine: &Engine,
    sfd: &SignalFd,
    input: Option<&AtomicBool>,
    watches: &mut [CableWatch],
    dump: bool,
) -> Ended {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let tick = links::TICK.as_millis() as u16;
    let mut next = Instant::now();
    loop {
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(tick));
        if Instant::now() >= next {
            watches.iter_mut().for_each(CableWatch::tick);
            next = Instant::now() + links::TICK;
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM) => return Ended::Status(0),
                Ok(s) if ENDING.contains(&s) => return Ended::Signal(s),
                Ok(Signal::SIGUSR1) if dump => engine.dump_stats(),
                _ => {}
            }
        }
        if engine.cable_ended() {
            return Ended::Status(0);
        }
        if input.is_some_and(|f| f.load(Ordering::Acquire)) {
            // The copying thread has written all but at most a pipe's worth, which the node
            // reads at once: let it.
            std::thread::sleep(Duration::from_millis(100));
            return Ended::Status(0);
        }
    }
}

/// True when epoll accepts `fd` (it refuses regular files and /dev/null with EPERM: they are
/// always ready).
fn pollable(fd: &OwnedFd) -> bool {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    let Ok(ep) = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) else {
        return true;
    };
    ep.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 0)).is_ok()
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Failed> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Failed(format!("cannot create a pipe: {}", e.desc())))
}

/// -L: the source addresses already logged.
struct IpLog {
    log: SessionLog,
    seen: HashSet<(std::net::IpAddr, u16)>,
}

impl IpLog {
    fn frame(&mut self, f: &[u8]) {
        if let Some((a, vlan)) = ip_source(f) {
            if self.seen.insert((a, vlan)) {
                let m = iplog_message(&self.log.user, &self.log.remote, a, vlan);
                self.log.send(&m);
            }
        }
    }
}

/// Puts a thread copying `rx` between it and the engine (see [`copy_in`]); returns the
/// engine's end and the flag the thread sets when `rx` ends. `hold`: keep the engine's pipe
/// open after that (a hosted node's endpoint: the run ends on the flag, and the node would
/// only report the end of file). The thread is not waited for at the end: it may be blocked
/// reading a terminal.
fn interpose(rx: OwnedFd, iplog: Option<IpLog>, hold: bool) -> Result<(OwnedFd, Arc<AtomicBool>), Failed> {
    let (r, w) = pipe()?;
    let ended = Arc::new(AtomicBool::new(false));
    let flag = ended.clone();
    let from = File::from(rx);
    std::thread::spawn(move || {
        let to = copy_in(from, File::from(w), iplog);
        flag.store(true, Ordering::Release);
        if hold {
            // Until the process exits.
            let _open = to;
            loop {
                std::thread::park();
            }
        }
    });
    Ok((r, ended))
}

/// Copies a stream's input into the engine's pipe until either ends; with `iplog`, reads the
/// frames too.
fn copy_in(mut from: File, mut to: File, mut iplog: Option<IpLog>) -> File {
    let mut buf = vec![0u8; 1 << 16];
    let mut dec = crate::wire::stream::Decoder::new();
    let mut frame = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return to,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return to,
        };
        if let Some(l) = iplog.as_mut() {
            let mut at = 0;
            while at < n {
                let (used, ev) = dec.feed(&buf[at..n], &mut frame);
                at += used;
                if let Some(crate::wire::stream::Event::Frame(len)) = ev {
                    l.frame(&frame[..len]);
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            return to;
        }
    }
}

/// Copies the engine's stream to stdout until the engine closes its end.
fn copy_out(mut from: File, mut to: File) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    // As vde_plug (its writes to a closed stdout fail quietly): drain on.
                    continue;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// daemon(3), with the parent waiting until the child is running (or has failed): the parent
/// exits 0 once the child's pid file is written and its data plane started, 1 when it failed
/// (the child has said why on the terminal). Returns, in the child, the pipe to report on.
fn daemonize() -> std::io::Result<Option<OwnedFd>> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match crate::sys::fork()? {
        crate::sys::Forked::Parent(_) => {
            drop(w);
            let mut b = [0u8; 1];
            let ok = matches!(File::from(r).read(&mut b), Ok(1));
            std::process::exit(if ok { 0 } else { 1 })
        }
        crate::sys::Forked::Child => {
            drop(r);
            nix::unistd::setsid()?;
            std::env::set_current_dir("/")?;
            Ok(Some(w))
        }
    }
}

/// Runs `f` with stderr on /dev/null, then puts it back.
fn with_stderr_on_dev_null<T>(f: impl FnOnce() -> T) -> Result<T, Failed> {
    let fail = |e: std::io::Error| Failed(format!("cannot redirect stderr: {}", crate::sys::err_text(&e)));
    let saved = std::io::stderr().as_fd().try_clone_to_owned().map_err(fail)?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(fail)?;
    nix::unistd::dup2_stderr(&null).map_err(|e| fail(e.into()))?;
    let r = f();
    nix::unistd::dup2_stderr(&saved).map_err(|e| fail(e.into()))?;
    Ok(r)
}

/// Tells the waiting parent the daemon runs, and detaches from the terminal.
fn daemon_ready(w: OwnedFd) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let _ = File::from(w).write_all(b"1");
}
