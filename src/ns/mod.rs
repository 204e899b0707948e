//! The control module: opens the VNLs in the host namespaces, creates the namespaces, sets them
//! up (host name, resolv.conf, taps, capabilities), runs the command and the data plane, and
//! exits with the command's status.

pub mod child;
pub mod mounts;
pub mod tap;
pub mod userns;

use crate::cli::{Config, NsMode};
use crate::engine::{Engine, EngineOptions, Port, TapOffload};
use crate::sys;
use crate::transport::{self, Link};
use std::fmt;
use std::io;
use std::os::fd::AsFd;

/// A failed step of the set-up: what failed, why (errno text), and how to fix it.
#[derive(Debug)]
pub struct NsError {
    pub what: String,
    pub errno: Option<i32>,
    pub why: String,
    pub hint: Option<String>,
}

impl NsError {
    pub fn new(what: &str, err: &io::Error, hint: Option<String>) -> NsError {
        NsError {
            what: what.into(),
            errno: err.raw_os_error(),
            why: sys::err_text(err),
            hint,
        }
    }
    pub fn msg(what: String) -> NsError {
        NsError {
            what,
            errno: None,
            why: String::new(),
            hint: None,
        }
    }
}

impl fmt::Display for NsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)?;
        if !self.why.is_empty() {
            write!(f, ": {}", self.why)?;
        }
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Capabilities the command receives as ambient capabilities (vdens's set).
pub fn command_caps(sysadm: bool) -> Vec<u32> {
    let mut v = vec![
        sys::CAP_NET_ADMIN,
        sys::CAP_NET_RAW,
        sys::CAP_NET_BIND_SERVICE,
        sys::CAP_NET_BROADCAST,
    ];
    if sysadm {
        v.push(sys::CAP_SYS_ADMIN);
    }
    v
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

fn needs_mount_ns(cfg: &Config) -> bool {
    cfg.sysadm || cfg.resolvconf.is_some() || cfg.resolvaddr.is_some()
}

fn run_inner(cfg: &Config) -> Result<i32, NsError> {
    if cfg.resolvaddr.is_none() {
        if let Some(f) = &cfg.resolvconf {
            std::fs::File::open(f).map_err(|e| {
                NsError::new(
                    &format!("-r {}: cannot read the resolv.conf file", f.display()),
                    &e,
                    Some("give an existing, readable file, or use -R ADDR".into()),
                )
            })?;
        }
    }
    // Every VNL is opened here, in the host namespaces, before anything is unshared.
    let mut links = Vec::with_capacity(cfg.vnls.len());
    for v in &cfg.vnls {
        links.push(transport::open_rejoinable_os(v).map_err(|e| NsError::msg(e.to_string()))?);
    }
    // The caller's ids, read before unshare: afterwards getuid() shows the overflow id until
    // the maps are written.
    let ids = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let mount = needs_mount_ns(cfg);
    match cfg.ns_mode {
        NsMode::Unshare => {
            userns::unshare_all(mount)?;
            inside(cfg, links, ids)
        }
        NsMode::Auto => match userns::unshare_all(mount) {
            Ok(()) => inside(cfg, links, ids),
            // unshare(CLONE_NEWUSER) refuses a multithreaded process (EINVAL); a fresh child
            // process is single-threaded. Any other refusal would hit the child too.
            Err(e) if e.errno == Some(libc::EINVAL) => clone_mode(cfg, links, ids),
            Err(e) => Err(e),
        },
        NsMode::Clone => clone_mode(cfg, links, ids),
    }
}

/// vdens -c: a child process enters the namespaces and does everything; this process forwards
/// signals to it and exits with its status.
fn clone_mode(cfg: &Config, links: Vec<Link>, ids: (u32, u32)) -> Result<i32, NsError> {
    let mut sfd = child::signal_fd()?;
    let me = nix::unistd::getpid();
    match sys::fork().map_err(|e| NsError::new("cannot fork", &e, None))? {
        sys::Forked::Child => {
            drop(sfd);
            child::child_common(me);
            let code = match userns::unshare_all(needs_mount_ns(cfg)).and_then(|_| inside(cfg, links, ids)) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("vdens-fast: {e}");
                    1
                }
            };
            std::process::exit(code)
        }
        sys::Forked::Parent(pid) => {
            // A coprocess is this process's child: reaped (and its end reported) here.
            let mut coprocs = coproc_watches(&links);
            // The child owns the links now: close our copies without removing their files.
            links.into_iter().for_each(Link::disown);
            Ok(child::supervise(&mut sfd, pid, &[], None, |ev| {
                if let child::Event::Child = ev {
                    reap_coprocs(&mut coprocs);
                }
                true
            }))
        }
    }
}

/// Watches that reap the links' coprocesses when they end on their own.
fn coproc_watches(links: &[Link]) -> Vec<transport::CoprocWatch> {
    links.iter().filter_map(|l| l.coproc.as_ref()?.watch()).collect()
}

/// Reaps the coprocesses that ended (each waited for by its own pid: the command's status is
/// left for supervise) and says how each ended, once.
fn reap_coprocs(watches: &mut [transport::CoprocWatch]) {
    for w in watches {
        if let Some(m) = w.reap() {
            eprintln!("vdens-fast: {m}");
        }
    }
}

/// In the new namespaces: maps, host name, resolv.conf, taps, the command and the data plane.
fn inside(cfg: &Config, links: Vec<Link>, ids: (u32, u32)) -> Result<i32, NsError> {
    userns::write_own_maps(ids.0, ids.1)?;
    if let Some(h) = &cfg.hostname {
        mounts::set_hostname(h)?;
    }
    if needs_mount_ns(cfg) {
        mounts::make_slave()?;
        if let Some(a) = &cfg.resolvaddr {
            mounts::write_resolvaddr(&crate::cli::resolv_conf_text(a))?;
        } else if let Some(f) = &cfg.resolvconf {
            mounts::bind_resolvconf(f)?;
        }
    }
    if links.is_empty() {
        // No network, no data plane: the command takes this process's place, as in vdens.
        let cmd = child::Command::new(&cfg.cmd)?;
        return Err(cmd.exec_here(&command_caps(cfg.sysadm)));
    }
    let mut coprocs = coproc_watches(&links);
    let mut ports = Vec::with_capacity(links.len());
    // Links whose tap's carrier follows them, and vde:// links that join their switch again.
    let mut watched =
        crate::app::links::Links::new().map_err(|e| NsError::new("cannot create an epoll set", &e, None))?;
    for (i, mut link) in links.into_iter().enumerate() {
        let name = format!("{}{}", cfg.iface_prefix, i);
        // Taps of hosted nodes stay plain, except a switch's or hub's when the io_uring node
        // runs it (it cuts and coalesces like a port's worker).
        let offload_ok = link.node.is_none() || crate::engine::offload::hosted_tap_offload(cfg.engine, &link);
        let (tap, offload) = if cfg.offload && offload_ok {
            tap::open_tap_offload(&name)?
        } else {
            (tap::open_tap(&name)?, TapOffload::NONE)
        };
        watched.add(&name, &tap, &mut link);
        ports.push(Port {
            name,
            tap,
            link,
            offload,
        });
    }
    let wfd = watched
        .fd()
        .map_err(|e| NsError::new("cannot duplicate the epoll set", &e, None))?;
    let cmd = child::Command::new(&cfg.cmd)?;
    let mut sfd = child::signal_fd()?;
    let pid = cmd.spawn(&command_caps(cfg.sysadm))?;
    let opts = EngineOptions {
        choice: cfg.engine,
        workers: cfg.workers,
        cpus: cfg.cpus.clone(),
        pin: cfg.pin,
        stats: cfg.stats.clone(),
        stats_interval: std::time::Duration::from_millis(cfg.stats_interval_ms),
    };
    let engine = match Engine::start(opts, ports) {
        Ok(e) => e,
        Err(e) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            return Err(NsError::msg(format!("cannot start the data plane: {e}")));
        }
    };
    let code = child::supervise(&mut sfd, pid, &[wfd.as_fd()], watched.tick(), |ev| match ev {
        child::Event::Usr1 => {
            engine.dump_stats();
            true
        }
        child::Event::Child => {
            reap_coprocs(&mut coprocs);
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
    });
    engine.stop();
    drop(watched);
    Ok(code)
}
