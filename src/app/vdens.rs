//! vdens-fast's run: open the VNLs in the host namespaces, create and set up the namespaces,
//! open the taps, start the command and the data plane, supervise the command, and exit with
//! its status. The steps are `ns`'s, `tap`'s, `transport`'s and `engine`'s; this is the only
//! place that knows their order.

use crate::app::links::Links;
use crate::cli::{Config, NsMode};
use crate::engine::{Engine, EngineError, EngineOptions, Port};
use crate::ns::{self, child, Ids, NsError, NsSpec, Resolv};
use crate::sys::StepError;
use crate::tap::{self, TapReader};
use crate::transport::{self, CoprocWatch, Hosted, Link, OpenError};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

/// A step of the run that failed; each says what failed, why, and how to fix it.
#[derive(Debug)]
pub enum RunError {
    /// Opening a VNL (in the host namespaces).
    Open(OpenError),
    /// Creating or setting up the namespaces, opening a tap, or starting the command.
    Step(StepError),
    /// Starting the data plane.
    Engine(EngineError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Open(e) => write!(f, "{e}"),
            RunError::Step(e) => write!(f, "{e}"),
            RunError::Engine(e) => write!(f, "cannot start the data plane: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<StepError> for RunError {
    fn from(e: StepError) -> RunError {
        RunError::Step(e)
    }
}

/// The namespaces the command line asks for: -R's name servers win over -r's file.
pub fn ns_spec(cfg: &Config) -> NsSpec {
    let resolv = match (&cfg.resolvaddr, &cfg.resolvconf) {
        (Some(a), _) => Resolv::Text(crate::cli::resolv_conf_text(a.as_bytes())),
        (None, Some(f)) => Resolv::File(f.clone()),
        (None, None) => Resolv::Host,
    };
    NsSpec {
        hostname: cfg.hostname.clone(),
        resolv,
        sysadm: cfg.sysadm,
    }
}

/// Runs vdens-fast as configured; returns the process exit status.
pub fn run(cfg: &Config) -> i32 {
    match run_inner(cfg) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vdens-fast: {e}");
            1
        }
    }
}

fn run_inner(cfg: &Config) -> Result<i32, RunError> {
    let spec = ns_spec(cfg);
    spec.check_files()?;
    let links = open_links(cfg)?;
    let ids = Ids::caller();
    let el = elevator(cfg);
    let el = el.as_ref();
    match cfg.ns_mode {
        NsMode::Unshare => {
            ns::unshare(&spec)?;
            inside(cfg, &spec, links, ids, el)
        }
        NsMode::Auto => match ns::unshare(&spec) {
            Ok(()) => inside(cfg, &spec, links, ids, el),
            // unshare(CLONE_NEWUSER) refuses a multithreaded process (EINVAL); a fresh child
            // process is single-threaded. Any other refusal would hit the child too.
            Err(e) if e.errno == Some(libc::EINVAL) => clone_mode(cfg, &spec, links, ids, el),
            Err(e) => Err(e.into()),
        },
        NsMode::Clone => clone_mode(cfg, &spec, links, ids, el),
    }
}

/// With --rt-priority beyond what RLIMIT_RTPRIO allows the threads themselves: the helper
/// that sets it from the initial user namespace (root's CAP_SYS_NICE does not count in the
/// new one), forked now, while this process is single-threaded and still outside.
fn elevator(cfg: &Config) -> Option<std::sync::Arc<crate::sys::rt::Elevator>> {
    let p = cfg.rt_priority?;
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_RTPRIO)
        .map(|(soft, _)| soft)
        .unwrap_or(0);
    if cfg.vnls.is_empty() || limit >= p.into() {
        return None;
    }
    match crate::sys::rt::Elevator::start(p) {
        Ok(e) => Some(std::sync::Arc::new(e)),
        Err(e) => {
            eprintln!(
                "vdens-fast: --rt-priority: cannot fork the helper that sets it: {}",
                crate::sys::err_text(&e)
            );
            None
        }
    }
}

/// Opens every VNL here, in the host namespaces, before anything is unshared: udp and vxlan
/// need the host's network, `tap://x` names a host interface, vde and ptp paths are the host's.
fn open_links(cfg: &Config) -> Result<Vec<Link>, RunError> {
    let mut links = Vec::with_capacity(cfg.vnls.len());
    for v in &cfg.vnls {
        // A tap:// link's host tap gets the offloads of the port's own tap (a port's worker
        // always reads that one with offload unless --no-offload): frames cross whole.
        // A vde:// link keeps what it takes to join its switch again when it comes back.
        let how = transport::Opening {
            descr: std::ffi::OsStr::new("vdens-fast"),
            rejoin: true,
            offload: tap::offload_wanted(cfg.offload, TapReader::Port),
            superframe_nodes: cfg.offload,
        };
        links.push(transport::open_with(v, &how).map_err(RunError::Open)?);
    }
    Ok(links)
}

/// vdens -c: a child process enters the namespaces and does everything; this process forwards
/// signals to it and exits with its status.
fn clone_mode(
    cfg: &Config,
    spec: &NsSpec,
    links: Vec<Link>,
    ids: Ids,
    el: Option<&std::sync::Arc<crate::sys::rt::Elevator>>,
) -> Result<i32, RunError> {
    let mut sfd = child::signal_fd()?;
    let me = nix::unistd::getpid();
    match crate::sys::fork().map_err(|e| NsError::new("cannot fork", &e, None))? {
        crate::sys::Forked::Child => {
            drop(sfd);
            child::child_common(me);
            let entered = ns::unshare(spec).map_err(RunError::from);
            let code = match entered.and_then(|_| inside(cfg, spec, links, ids, el)) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("vdens-fast: {e}");
                    1
                }
            };
            std::process::exit(code)
        }
        crate::sys::Forked::Parent(pid) => {
            // The child asks the --rt-priority helper, through its own copy of the socket.
            if let Some(e) = el {
                e.close();
            }
            // A coprocess is this process's child: reaped (and its end reported) here.
            let mut coprocs = coproc_watches(&links);
            // The child owns the links now: close our copies without removing their files.
            links.into_iter().for_each(Link::disown);
            Ok(child::supervise(&mut sfd, pid, &[], None, |ev| {
                if let child::Event::Child = ev {
                    reap_coprocs(&mut coprocs);
                    if let Some(e) = el {
                        e.reap_if_ended();
                    }
                }
                true
            }))
        }
    }
}

/// Watches that reap the links' coprocesses when they end on their own.
fn coproc_watches(links: &[Link]) -> Vec<CoprocWatch> {
    links.iter().filter_map(|l| l.coproc.as_ref()?.watch()).collect()
}

/// Reaps the coprocesses that ended (each waited for by its own pid: the command's status is
/// left for supervise) and says how each ended, once.
fn reap_coprocs(watches: &mut [CoprocWatch]) {
    for w in watches {
        if let Some(m) = w.reap() {
            eprintln!("vdens-fast: {m}");
        }
    }
}

/// In the new namespaces: maps, host name, resolv.conf, taps, the command and the data plane.
fn inside(
    cfg: &Config,
    spec: &NsSpec,
    links: Vec<Link>,
    ids: Ids,
    el: Option<&std::sync::Arc<crate::sys::rt::Elevator>>,
) -> Result<i32, RunError> {
    ns::set_up(spec, ids)?;
    if links.is_empty() {
        // No network, no data plane: the command takes this process's place, as in vdens.
        let cmd = child::Command::new(&cfg.cmd)?;
        return Err(cmd.exec_here(&spec.command_caps()).into());
    }
    let mut coprocs = coproc_watches(&links);
    let (ports, mut watched) = open_taps(cfg, links)?;
    let cmd = child::Command::new(&cfg.cmd)?;
    let mut sfd = child::signal_fd()?;
    let pid = cmd.spawn(&spec.command_caps())?;
    let engine = start_engine(cfg, ports, pid, el)?;
    // Every data-plane thread has its priority: the helper may end.
    if let Some(e) = el {
        e.finish();
    }
    let code = supervise(&mut sfd, pid, &engine, &mut coprocs, &mut watched);
    engine.stop();
    drop(watched);
    Ok(code)
}

/// Opens the tap `<prefix>N` of the N-th link, with offload where the link's reader cuts and
/// coalesces, and collects the vde:// control connections to watch.
fn open_taps(cfg: &Config, links: Vec<Link>) -> Result<(Vec<Port>, Links), RunError> {
    let mut ports = Vec::with_capacity(links.len());
    // Links whose tap's carrier follows them, and vde:// links that join their switch again.
    let mut watched = Links::new().map_err(|e| NsError::new("cannot create an epoll set", &e, None))?;
    for (i, mut link) in links.into_iter().enumerate() {
        let mut name = cfg.iface_prefix.clone();
        name.push(i.to_string());
        let offload = tap::offload_wanted(cfg.offload, tap_reader(&link));
        let (tap, offload, name) = tap::open_named(&name, offload)?;
        watched.add(&name, &tap, &mut link);
        ports.push(Port {
            name,
            tap,
            link,
            offload,
        });
    }
    Ok((ports, watched))
}

/// Who moves the frames of a link's tap: a port's worker, or the node the link hosts.
fn tap_reader(link: &Link) -> TapReader {
    match link.node {
        None => TapReader::Port,
        Some(Hosted::Net(_) | Hosted::Ptp(_)) => TapReader::Node,
        Some(_) => TapReader::Overlay,
    }
}

/// Starts the data plane on `ports`; when it cannot start, the command `pid` (already running)
/// is killed and reaped.
fn start_engine(
    cfg: &Config,
    ports: Vec<Port>,
    pid: Pid,
    elevator: Option<&std::sync::Arc<crate::sys::rt::Elevator>>,
) -> Result<Engine, RunError> {
    let opts = EngineOptions {
        choice: cfg.engine,
        workers: cfg.workers,
        cpus: cfg.cpus.clone(),
        pin: cfg.pin,
        realtime: cfg.rt_priority.map(|priority| crate::engine::Realtime {
            priority,
            elevator: elevator.cloned(),
        }),
        stats: cfg.stats.clone(),
        stats_interval: std::time::Duration::from_millis(cfg.stats_interval_ms),
    };
    let tuning = crate::engine::UringTuning {
        busy_poll_us: cfg.busy_poll_us,
        ..Default::default()
    };
    Engine::start_with(opts, tuning, ports).map_err(|e| {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        RunError::Engine(e)
    })
}

/// Waits for the command `pid` and returns its exit code, meanwhile: SIGUSR1 dumps the
/// statistics, ended coprocesses are reaped, and the switches' control connections watched.
fn supervise(
    sfd: &mut SignalFd,
    pid: Pid,
    engine: &Engine,
    coprocs: &mut [CoprocWatch],
    watched: &mut Links,
) -> i32 {
    let Ok(wfd) = watched.fd() else {
        crate::diag!("cannot watch the links (no descriptor left): their carrier stays as it is");
        return child::supervise(sfd, pid, &[], None, |ev| {
            match ev {
                child::Event::Usr1 => engine.dump_stats(),
                child::Event::Child => reap_coprocs(coprocs),
                _ => {}
            }
            true
        });
    };
    let tick = watched.tick();
    child::supervise(sfd, pid, &[wfd.as_fd()], tick, |ev| match ev {
        child::Event::Usr1 => {
            engine.dump_stats();
            true
        }
        child::Event::Child => {
            reap_coprocs(coprocs);
            true
        }
        child::Event::Ready(_) => {
            watched.on_ready();
            true
        }
        child::Event::Tick => {
            watched.on_tick();
            true
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str], env: &[(&str, &str)]) -> Config {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| std::ffi::OsString::from(v))
                .or_else(|| (k == "SHELL").then(|| "/bin/sh".into()))
        };
        match crate::cli::parse(args.iter().map(std::ffi::OsString::from), lookup) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {e:?}"),
        }
    }

    #[test]
    fn ns_spec_of_the_command_line() {
        let s = ns_spec(&cfg(&[], &[]));
        assert_eq!(
            s,
            NsSpec {
                hostname: None,
                resolv: Resolv::Host,
                sysadm: false
            }
        );
        assert!(!s.needs_mount_ns());
        let s = ns_spec(&cfg(&["-H", "box", "-s"], &[]));
        assert_eq!(s.hostname.as_deref(), Some(std::ffi::OsStr::new("box")));
        assert!(s.sysadm && s.needs_mount_ns());
        let s = ns_spec(&cfg(&["-r", "/etc/hosts"], &[]));
        assert_eq!(s.resolv, Resolv::File("/etc/hosts".into()));
        assert!(s.needs_mount_ns());
    }

    #[test]
    fn ns_spec_resolvaddr_wins_over_resolvconf() {
        let text = crate::cli::resolv_conf_text(b"10.0.0.1");
        let s = ns_spec(&cfg(&["-r", "/etc/hosts", "-R", "10.0.0.1"], &[]));
        assert_eq!(s.resolv, Resolv::Text(text.clone()));
        let s = ns_spec(&cfg(&["-r", "/etc/hosts"], &[("VDE_RESOLVADDR", "10.0.0.1")]));
        assert_eq!(s.resolv, Resolv::Text(text));
    }
}
