//! vdeplug-fast: vde_plug's main forms on the vdens-fast engine.
//!
//! `vdeplug-fast VNL1 VNL2` joins two networks with a cable; `vdeplug-fast VNL` carries frames
//! as a 2-byte-length stream on stdin/stdout; `vdeplug-fast VNL = CMD ARGS` does so through a
//! coprocess. A switch:// or hub:// VNL is hosted here (`vdeplug-fast null:// switch:///tmp/sw`
//! runs a switch that clients join). Stops on SIGINT, SIGTERM or SIGHUP, or when a cable's input
//! ends, removing what it created.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::exit;
use std::time::Duration;
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Endpoint, Engine, EngineOptions, Node, NodeKind, UringTuning};
use vdens_fast::transport::{self, Framing, Hosted, Link};

const USAGE: &str = "Usage:
  vdeplug-fast [ OPTIONS ] VNL                 frames as a 2-byte-length stream on stdin/stdout
  vdeplug-fast [ OPTIONS ] VNL1 VNL2           a cable between two networks
  vdeplug-fast [ OPTIONS ] [VNL] = CMD [ARGS]  the stream through a coprocess
  an omitted or empty VNL means the default VDE network, as for vde_plug;
  switch://PATH and hub://PATH are hosted in this process (vdeplug-fast null:// switch:///tmp/sw)
Options:
  -d | --daemon                 run in the background
  -p PIDFILE | --pidfile PIDFILE  write the pid to PIDFILE (removed on exit)
  -D DESCR | --descr DESCR      description a switch shows for the connection (default vdeplug-fast)
  --engine auto|uring|poll      data plane of a hosted switch or hub: io_uring, the epoll node, or
                                auto (io_uring when usable; the default); cables use the epoll node
  -h | --help                   this summary
";

struct Args {
    daemon: bool,
    pidfile: Option<PathBuf>,
    vnls: Vec<String>,
    cmd: Option<Vec<OsString>>,
    /// What a switch shows for our connection (-D), like vde_plug's.
    descr: String,
    engine: EngineChoice,
}

fn fail(msg: &str) -> ! {
    eprintln!("vdeplug-fast: {msg}");
    exit(1)
}

fn parse() -> Args {
    let mut a = Args {
        daemon: false,
        pidfile: None,
        vnls: Vec::new(),
        cmd: None,
        descr: "vdeplug-fast".into(),
        engine: EngineChoice::Auto,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let s = arg.to_string_lossy().into_owned();
        match s.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                exit(0)
            }
            "-d" | "--daemon" => a.daemon = true,
            "-p" | "--pidfile" => {
                a.pidfile =
                    Some(PathBuf::from(it.next().unwrap_or_else(|| {
                        fail("-p needs a file name (write -p /run/vdeplug.pid)")
                    })))
            }
            "--engine" => {
                let v = it
                    .next()
                    .unwrap_or_else(|| fail("--engine needs a value (auto, uring or poll)"));
                a.engine = match v.to_string_lossy().as_ref() {
                    "auto" => EngineChoice::Auto,
                    "uring" => EngineChoice::Uring,
                    "poll" => EngineChoice::Poll,
                    x => fail(&format!("--engine: unknown engine '{x}' (auto, uring or poll)")),
                };
            }
            "-D" | "--descr" => {
                a.descr = it
                    .next()
                    .unwrap_or_else(|| fail("-D needs a description (write -D 'my link')"))
                    .to_string_lossy()
                    .into_owned();
            }
            "=" => {
                let argv: Vec<OsString> = it.by_ref().collect();
                if argv.is_empty() {
                    fail("'=' needs a command after it (write VNL = vde_plug vde:///tmp/sw)");
                }
                a.cmd = Some(argv);
            }
            _ if s.starts_with('-') && s.len() > 1 => {
                fail(&format!("unknown option '{s}' (see vdeplug-fast --help)"))
            }
            _ => a.vnls.push(s),
        }
    }
    let most = if a.cmd.is_some() { 1 } else { 2 };
    if a.vnls.len() > most {
        fail(&format!(
            "too many VNLs: {} (see vdeplug-fast --help)",
            a.vnls.join(" ")
        ));
    }
    if a.vnls.is_empty() {
        a.vnls.push(String::new());
    }
    a
}

fn stdio_link() -> Link {
    let dup = |fd: i32, what: &str| -> OwnedFd {
        vdens_fast::sys::dup_inherited(fd)
            .unwrap_or_else(|e| fail(&format!("cannot use {what}: {}", vdens_fast::sys::err_text(&e))))
    };
    let mut l = Link::null("stdio");
    l.framing = Framing::Stream;
    l.rx = Some(dup(0, "standard input"));
    l.tx = Some(dup(1, "standard output"));
    l
}

fn daemonize() {
    match vdens_fast::sys::fork() {
        Ok(vdens_fast::sys::Forked::Parent(_)) => exit(0),
        Ok(vdens_fast::sys::Forked::Child) => {}
        Err(e) => fail(&format!("cannot fork: {}", vdens_fast::sys::err_text(&e))),
    }
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

fn main() {
    let args = parse();
    let open = |v: &str| transport::open_described(v, &args.descr).unwrap_or_else(|e| fail(&e.to_string()));
    let first = open(&args.vnls[0]);
    let second = match (&args.cmd, args.vnls.get(1)) {
        (Some(argv), _) => {
            let shown = argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ");
            transport::open_cmd(&format!("={shown}"), argv).unwrap_or_else(|e| fail(&e.to_string()))
        }
        (None, Some(v)) => open(v),
        (None, None) => stdio_link(),
    };
    let mut links = [first, second];
    // One node runs at most one hosted VNL. Beside a switch:// or hub://, a connection to a
    // seqpacket ptp listener runs as a plain link (it is not reconnected after a hang-up).
    if links.iter().all(|l| l.node.is_some()) {
        if let Some(l) = links
            .iter_mut()
            .find(|l| matches!(&l.node, Some(Hosted::Ptp(h)) if h.peer().is_some()))
        {
            if let Some(Hosted::Ptp(h)) = l.node.as_mut() {
                let peer = h.take_peer().expect("checked above");
                *l = Link::single(&l.vnl.clone(), Framing::Datagram, peer);
            }
        }
    }
    let hosts: Vec<usize> = (0..2).filter(|&i| links[i].node.is_some()).collect();
    let node = match hosts.as_slice() {
        [] => {
            let [a, b] = links;
            Node {
                name: "cable".into(),
                kind: NodeKind::Cable,
                endpoints: vec![
                    Endpoint::Link {
                        name: "plug1".into(),
                        link: Box::new(a),
                    },
                    Endpoint::Link {
                        name: "plug2".into(),
                        link: Box::new(b),
                    },
                ],
            }
        }
        [h] => {
            let hosted = links[*h].node.take().expect("hosted");
            let name = links[*h].vnl.clone();
            let [a, b] = links;
            let other = if *h == 0 { b } else { a };
            let endpoints = if other.framing == Framing::Null {
                Vec::new()
            } else {
                vec![Endpoint::Link {
                    name: "plug".into(),
                    link: Box::new(other),
                }]
            };
            Node {
                name,
                kind: NodeKind::hosting(hosted),
                endpoints,
            }
        }
        // Two hosted networks: a vxlan:// or vxvde:// one joins the other (a switch, a hub, a
        // ptp end or another overlay) as an endpoint; other pairs cannot be joined.
        _ => {
            let is_overlay = |l: &Link| matches!(l.node, Some(Hosted::Overlay(_)));
            let Some(o) = (0..2).rev().find(|&i| is_overlay(&links[i])) else {
                fail("both VNLs host a node (switch://, hub://, ptp://PATH[seqpacket] listening): give at most one of them, or a vxlan:// or vxvde:// with one of them")
            };
            let h = 1 - o;
            let hosted = links[h].node.take().expect("hosted");
            let name = links[h].vnl.clone();
            let [a, b] = links;
            let other = if h == 0 { b } else { a };
            Node {
                name,
                kind: NodeKind::hosting(hosted),
                endpoints: vec![Endpoint::Link {
                    name: "plug".into(),
                    link: Box::new(other),
                }],
            }
        }
    };
    if args.daemon {
        daemonize();
    }
    if let Some(p) = &args.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            fail(&format!(
                "cannot write the pid file {}: {} (check the directory exists and is writable)",
                p.display(),
                vdens_fast::sys::err_text(&e)
            ));
        }
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        fail(&format!("cannot block signals: {}", e.desc()));
    }
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .unwrap_or_else(|e| fail(&format!("cannot create signalfd: {}", e.desc())));
    let opts = EngineOptions {
        choice: args.engine,
        workers: None,
        cpus: None,
        pin: false,
        stats: None,
        stats_interval: Duration::from_secs(1),
    };
    let engine = Engine::start_nodes(opts, UringTuning::default(), Vec::new(), vec![node])
        .unwrap_or_else(|e| fail(&format!("cannot start the data plane: {e}")));
    loop {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(200u16));
        if let Ok(Some(_)) = sfd.read_signal() {
            break;
        }
        if engine.cable_ended() {
            break;
        }
    }
    engine.stop();
    if let Some(p) = &args.pidfile {
        let _ = std::fs::remove_file(p);
    }
}
