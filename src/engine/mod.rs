//! The data plane: worker threads moving frames between each port's tap and its link.
//!
//! One loop, two drivers under it. Nodes (`uring/node.rs`: every port as a cable of its tap and
//! its link, switches, hubs, vdeplug-fast's cables, ...: endpoints join and leave while they
//! run) submit typed ring operations (`uring/ring.rs`) and react to their completions. The io_uring driver hands the
//! operations to the kernel (the default); the epoll driver (`uring/emu.rs`) carries them out
//! with plain syscalls on readiness and posts the same completions, for when io_uring cannot be
//! used (setup refused with EPERM/ENOSYS, `kernel.io_uring_disabled`, missing ops, no locked
//! memory for a ring) or when `--engine poll` asks for it. So both engines run the same
//! per-frame code.
//!
//! What every loop decides the same way (frame admission, errno classes, send policy, command
//! dispatch, tokens, super-frame cutting) is in `core/`, written once and unit-tested.

pub mod core;
pub mod node;
pub mod offload;
mod overlay;
mod port;
pub mod stats;
#[allow(unsafe_code)]
pub mod uring;
mod worker;

use crate::transport::Link;
use crossbeam_channel::Sender;
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use core::EndpointError;
pub use node::{Endpoint, Node, NodeKind};
pub use offload::TapOffload;
pub use port::MAX_FRAME;
pub use stats::{Counts, PortSnapshot, LINK_TO_TAP, TAP_TO_LINK};
pub use uring::UringTuning;
pub use worker::StartError;
use worker::{Assigned, Cmd, NodeCtx, PortCtx, Ready};

/// A tap joined to a link.
pub struct Port {
    /// Interface name (`vde0`, ...), for messages and stats.
    pub name: String,
    pub tap: OwnedFd,
    pub link: Link,
    /// The tap's virtio-net header and offloads (`TapOffload::NONE` for a plain tap, or for a
    /// socket standing in for one).
    pub offload: TapOffload,
}

/// Which data-plane engine the user asked for (`--engine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// io_uring where the kernel offers it (probed once per process), else epoll.
    Auto,
    Uring,
    Poll,
}

impl EngineChoice {
    /// The engine this choice runs on here. `Auto` falls back to epoll when io_uring cannot be
    /// used; the caller says so once ([`Engine::start_nodes`] does).
    pub fn resolve(self) -> Result<EngineKind, EngineError> {
        match self {
            EngineChoice::Poll => Ok(EngineKind::Poll),
            EngineChoice::Uring => uring::probe()
                .map(|()| EngineKind::Uring)
                .map_err(EngineError::Uring),
            EngineChoice::Auto => Ok(match uring::probe() {
                Ok(()) => EngineKind::Uring,
                Err(_) => EngineKind::Poll,
            }),
        }
    }
}

/// The real-time priority the data-plane threads take (`--rt-priority`), and the helper that
/// sets it from the initial user namespace when the thread cannot ([`crate::sys::rt`]).
#[derive(Clone, Debug)]
pub struct Realtime {
    pub priority: u8,
    pub elevator: Option<Arc<crate::sys::rt::Elevator>>,
}

/// How the engine is to run.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub choice: EngineChoice,
    pub workers: Option<usize>,
    pub cpus: Option<Vec<usize>>,
    pub pin: bool,
    /// SCHED_FIFO for the data-plane threads (`--rt-priority`); None: the normal scheduler,
    /// as the command's own threads.
    pub realtime: Option<Realtime>,
    pub stats: Option<PathBuf>,
    pub stats_interval: Duration,
}

/// Why the engine could not start or do what it was asked.
#[derive(Debug)]
pub enum EngineError {
    /// `--engine uring` where io_uring cannot carry the data plane.
    Uring(uring::Unavailable),
    /// A data-plane thread's set-up failed (None: it gave no answer within 10 s).
    Setup(Option<StartError>),
    /// A data-plane thread could not be started: its name, and why.
    Thread(String, std::io::Error),
    /// The statistics thread could not be started.
    StatsThread(std::io::Error),
    /// The eventfd that wakes a `whose` (worker, node) could not be made.
    Eventfd(&'static str, nix::errno::Errno),
    /// A node did not take an endpoint (None: it gave no answer within 5 s).
    AddEndpoint(Option<EndpointError>),
    /// There is no node `.0`; the engine runs `.1`.
    NoNode(usize, usize),
    /// A port cannot be driven: the port (`NAME (VNL)`), and why.
    Port(String, PortFault),
}

/// Why a port cannot be driven ([`EngineError::Port`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortFault {
    /// A call on its descriptors failed: what was done, and the system's reason.
    Sys(&'static str, nix::errno::Errno),
    /// The link's tap reads a virtio-net header of `.0` bytes, the interface's `.1`.
    VnetHdr(usize, usize),
    /// The link has no descriptor to drive.
    NoDescriptor,
    /// The AF_UNIX path it sends to cannot be an address.
    BadDestination(PathBuf, nix::errno::Errno),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Uring(e) => write!(f, "cannot use io_uring: {e} (try --engine poll)"),
            EngineError::Setup(Some(e)) => write!(f, "worker setup failed: {e}"),
            EngineError::Setup(None) => f.write_str("worker setup failed: no answer within 10 s"),
            EngineError::Thread(name, e) => write!(f, "cannot start thread {name}: {}", crate::sys::err_text(e)),
            EngineError::StatsThread(e) => write!(f, "cannot start the stats thread: {}", crate::sys::err_text(e)),
            EngineError::Eventfd(whose, e) => write!(f, "cannot create a {whose}'s eventfd: {}", e.desc()),
            EngineError::AddEndpoint(Some(e)) => write!(f, "cannot add the endpoint: {e}"),
            EngineError::AddEndpoint(None) => f.write_str("cannot add the endpoint: the node did not answer within 5 s"),
            EngineError::NoNode(n, running) => write!(f, "no node {n} (the engine runs {running})"),
            EngineError::Port(port, PortFault::Sys(what, e)) => write!(f, "{port}: {what}: {}", e.desc()),
            EngineError::Port(port, PortFault::VnetHdr(link, tap)) => write!(
                f,
                "{port}: the link's tap reads a virtio-net header of {link} bytes, the interface's {tap} (open both with offload or neither)"
            ),
            EngineError::Port(port, PortFault::NoDescriptor) => {
                write!(f, "{port}: the link has no descriptor (transport bug)")
            }
            EngineError::Port(port, PortFault::BadDestination(path, e)) => {
                write!(f, "{port}: bad destination {}: {}", path.display(), e.desc())
            }
        }
    }
}

impl std::error::Error for EngineError {}

/// Which engine is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Uring,
    Poll,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Uring => "uring",
            EngineKind::Poll => "poll",
        }
    }
}

struct WorkerHandle {
    cmds: Sender<Cmd>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    fn send(&self, c: Cmd) {
        if self.cmds.send(c).is_ok() {
            let _ = nix::unistd::write(self.wake.as_fd(), &1u64.to_ne_bytes());
        }
    }
}

struct StatsWriter {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

pub struct Engine {
    kind: EngineKind,
    /// A handle per port's cable and per node (node handles after the ports', in node
    /// order; nodes share threads).
    workers: Vec<WorkerHandle>,
    /// Data-plane threads running.
    threads: usize,
    ports: Vec<Arc<stats::PortStats>>,
    /// Multi-endpoint nodes (switch, hub, cable), after the ports' cables.
    nodes: Vec<Arc<node::NodeShared>>,
    /// The driver each node runs on: the engine's, or epoll for a node that had no locked
    /// memory for an io_uring ring.
    node_kinds: Vec<EngineKind>,
    stats_file: Option<PathBuf>,
    /// A failed write of the stats file was said (once for the whole run, whoever writes).
    stats_warned: Arc<AtomicBool>,
    writer: Option<StatsWriter>,
}

/// Default number of workers: one per port, at most half the CPUs (at least one): one worker on
/// the 2-core development box. Measured there (benches/engine.rs, group `workers`: two ports
/// flooded with 1500-byte frames in batches of 64, seven runs on a box shared with other builds):
/// io_uring with one worker 114k-366k frames/s, with two 55k-390k; the two settings were within
/// the run-to-run noise, never clearly apart, while a second pinned worker takes the core the
/// frames' producers and consumers (the command in the namespace, the peer outside) run on.
/// With one port a second worker has nothing to do: a port's two directions share one ring.
fn default_workers(nports: usize) -> usize {
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    nports.min((ncpu / 2).max(1)).max(1)
}

impl Engine {
    pub fn start(opts: EngineOptions, ports: Vec<Port>) -> Result<Engine, EngineError> {
        Self::start_with(opts, UringTuning::default(), ports)
    }

    /// [`Engine::start`] with io_uring features chosen one by one (for measurements).
    pub fn start_with(
        opts: EngineOptions,
        tuning: UringTuning,
        ports: Vec<Port>,
    ) -> Result<Engine, EngineError> {
        Self::start_nodes(opts, tuning, ports, Vec::new())
    }

    /// [`Engine::start_with`] plus multi-endpoint nodes. A port whose link hosts a switch or
    /// hub (switch://, hub://) or a seqpacket ptp end (`ptp://PATH[seqpacket]`, or a connection
    /// to a 2025 ptp listener) becomes such a node, with its tap as the node's first port.
    pub fn start_nodes(
        opts: EngineOptions,
        tuning: UringTuning,
        ports: Vec<Port>,
        mut nodes: Vec<Node>,
    ) -> Result<Engine, EngineError> {
        let ports = host_nodes(ports, &mut nodes);
        let kind = match opts.choice {
            // Nothing to move: no need to probe (nor to say anything about io_uring).
            EngineChoice::Auto if ports.is_empty() && nodes.is_empty() => EngineKind::Uring,
            c => c.resolve()?,
        };
        if kind == EngineKind::Poll && opts.choice == EngineChoice::Auto {
            if let Err(e) = uring::probe() {
                crate::diag!("io_uring unavailable ({e}); using the poll engine");
            }
        }
        let (stats_all, groups) = assign(&opts, ports)?;
        let mut engine = Engine {
            kind,
            workers: Vec::new(),
            threads: 0,
            ports: stats_all,
            nodes: Vec::new(),
            node_kinds: Vec::new(),
            stats_file: opts.stats.clone(),
            stats_warned: Arc::new(AtomicBool::new(false)),
            writer: None,
        };
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        // Data-plane threads that had no memory for io_uring and run on epoll instead.
        let fallbacks = Arc::new(AtomicUsize::new(0));
        let started = engine.spawn_ports(groups, &opts, tuning, &ready_tx, &fallbacks)?
            + engine.spawn_nodes(nodes, &opts.realtime, tuning, &ready_tx, &fallbacks)?;
        engine.await_ready(&ready_rx, started)?;
        engine.announce_fallbacks(fallbacks.load(Ordering::Relaxed), started);
        if let Some(path) = opts.stats.clone() {
            engine.writer = Some(engine.stats_writer(path, opts.stats_interval)?);
        }
        Ok(engine)
    }

    /// One thread per group of ports run as cables (see [`cable`]): the ports' nodes share
    /// the thread's ring, as the port workers' ports did; pinned and named as those were.
    fn spawn_ports(
        &mut self,
        groups: Vec<Vec<Assigned>>,
        opts: &EngineOptions,
        tuning: UringTuning,
        ready: &Sender<Ready>,
        fallbacks: &Arc<AtomicUsize>,
    ) -> Result<usize, EngineError> {
        let cpus = pinned_cpus(opts);
        let kind = self.kind;
        let mut started = 0;
        for (index, group) in groups.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let mut nodes = Vec::with_capacity(group.len());
            let first = self.workers.len();
            for a in group {
                let wake = new_wake("worker")?;
                let (ctx_tx, ctx_rx) = crossbeam_channel::unbounded();
                let (node, port) = cable(a);
                let ctx = NodeCtx {
                    cmds: ctx_rx,
                    wake: wake.clone(),
                    shared: Arc::new(node::NodeShared::new()),
                    port: Some(port),
                };
                nodes.push((node, ctx));
                self.workers.push(WorkerHandle {
                    cmds: ctx_tx,
                    wake,
                    thread: None,
                });
            }
            let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
            let (ready, fell_back, rt) = (ready.clone(), fallbacks.clone(), opts.realtime.clone());
            let thread = spawn_thread(format!("vdens-{}{index}", kind.name()), move || {
                // Pinned before the node allocates its buffers (see `worker::pin`).
                worker::pin(cpu);
                realtime(rt);
                uring::run_nodes(nodes, tuning, kind, &fell_back, ready)
            })?;
            self.workers[first].thread = Some(thread);
            started += 1;
            self.threads += 1;
        }
        Ok(started)
    }

    /// The node threads: one per node up to the CPUs there are, then nodes share them
    /// (round robin), each thread running its nodes on one ring. 200 `switch://` in one
    /// vdens-fast thus take 2 rings on 2 CPUs, not 200 (and their locked memory), while a
    /// node or two still get a CPU each. Returns the threads started.
    fn spawn_nodes(
        &mut self,
        nodes: Vec<Node>,
        rt: &Option<Realtime>,
        tuning: UringTuning,
        ready: &Sender<Ready>,
        fallbacks: &Arc<AtomicUsize>,
    ) -> Result<usize, EngineError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = node_threads(nodes.len(), cpus);
        let mut groups: Vec<Vec<(Node, NodeCtx)>> = (0..threads).map(|_| Vec::new()).collect();
        let mut handles = Vec::new();
        for (index, n) in nodes.into_iter().enumerate() {
            let wake = new_wake("node")?;
            let (ctx_tx, ctx_rx) = crossbeam_channel::unbounded();
            let shared = Arc::new(node::NodeShared::new());
            self.nodes.push(shared.clone());
            self.node_kinds.push(self.kind);
            let ctx = NodeCtx {
                cmds: ctx_rx,
                wake: wake.clone(),
                shared,
                port: None,
            };
            groups[index % threads].push((n, ctx));
            handles.push(WorkerHandle {
                cmds: ctx_tx,
                wake,
                thread: None,
            });
        }
        // The handles stay in node order (`node_worker`); a thread's goes with its first node.
        let first = self.workers.len();
        self.workers.extend(handles);
        for (index, group) in groups.into_iter().enumerate() {
            let ready = ready.clone();
            let (kind, fell_back, rt) = (self.kind, fallbacks.clone(), rt.clone());
            let thread = spawn_thread(format!("vdens-node{index}"), move || {
                realtime(rt);
                uring::run_nodes(group, tuning, kind, &fell_back, ready)
            })?;
            self.workers[first + index].thread = Some(thread);
            self.threads += 1;
        }
        Ok(threads)
    }

    /// Waits for every started thread to report its set-up; stops them all if one failed.
    fn await_ready(
        &mut self,
        ready: &crossbeam_channel::Receiver<Ready>,
        started: usize,
    ) -> Result<(), EngineError> {
        for _ in 0..started {
            let why = match ready.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => Some(e),
                Err(_) => None,
            };
            self.stop_workers();
            return Err(EngineError::Setup(why));
        }
        Ok(())
    }

    /// Says once how many threads run on epoll for want of locked memory for io_uring.
    fn announce_fallbacks(&mut self, fell_back: usize, started: usize) {
        if fell_back == 0 {
            return;
        }
        crate::diag!(
            "no memory for io_uring rings and buffers in {fell_back} of {started} data-plane threads (locked-memory limit {}): they run on the poll engine (raise it with ulimit -l to keep io_uring)",
            memlock_limit_text()
        );
        for (k, n) in self.node_kinds.iter_mut().zip(&self.nodes) {
            if n.fell_back.load(Ordering::Acquire) {
                *k = EngineKind::Poll;
            }
        }
    }

    /// The thread that writes the statistics to `path` every `interval`.
    fn stats_writer(&self, path: PathBuf, interval: Duration) -> Result<StatsWriter, EngineError> {
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let ports = self.ports.clone();
        let nodes = self.nodes.clone();
        let interval = interval.max(Duration::from_millis(10));
        let (kind, n) = (self.kind, self.threads);
        let warned = self.stats_warned.clone();
        let thread = std::thread::Builder::new()
            .name("vdens-stats".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval) {
                    let json = stats::to_json(kind.name(), n, &snapshot(&ports, &nodes));
                    write_stats(&path, &json, &warned);
                }
            })
            .map_err(EngineError::StatsThread)?;
        Ok(StatsWriter { stop, thread })
    }

    /// The engine each node runs on, in node order.
    pub fn node_kinds(&self) -> &[EngineKind] {
        &self.node_kinds
    }

    /// The engine that was chosen.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// Number of worker threads running.
    pub fn workers(&self) -> usize {
        self.threads
    }

    /// Current counters of every port (asks each worker to publish first, waiting at most
    /// 100 ms each; otherwise the counters are at most one loop turn old).
    pub fn stats(&self) -> Vec<PortSnapshot> {
        let mut acks = Vec::new();
        for w in &self.workers {
            let (tx, rx) = crossbeam_channel::bounded(1);
            w.send(Cmd::Publish(tx));
            acks.push(rx);
        }
        for a in acks {
            let _ = a.recv_timeout(Duration::from_millis(100));
        }
        snapshot(&self.ports, &self.nodes)
    }

    /// Attaches an endpoint to node `node` (in the order nodes were started: the ones given to
    /// [`Engine::start_nodes`], then the switch:// / hub:// ports) while it runs; returns its
    /// port number.
    pub fn add_endpoint(&self, node: usize, e: Endpoint) -> Result<u16, EngineError> {
        let w = self.node_worker(node)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        w.send(Cmd::AddEndpoint(e, tx));
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(r) => r.map_err(|e| EngineError::AddEndpoint(Some(e))),
            Err(_) => Err(EngineError::AddEndpoint(None)),
        }
    }

    /// Detaches the endpoint on port `id` of node `node` (its descriptors are closed).
    pub fn remove_endpoint(&self, node: usize, id: u16) -> Result<(), EngineError> {
        self.node_worker(node)?.send(Cmd::RemoveEndpoint(id));
        Ok(())
    }

    fn node_worker(&self, node: usize) -> Result<&WorkerHandle, EngineError> {
        let first = self.workers.len() - self.nodes.len();
        self.workers
            .get(first + node)
            .filter(|_| node < self.nodes.len())
            .ok_or(EngineError::NoNode(node, self.nodes.len()))
    }

    /// True once an endpoint of a cable node reached end of file (its input is closed).
    pub fn cable_ended(&self) -> bool {
        self.nodes.iter().any(|n| n.ended.load(Ordering::Acquire))
    }

    /// The statistics as one JSON line.
    pub fn stats_json(&self) -> String {
        stats::to_json(self.kind.name(), self.threads, &self.stats())
    }

    /// Writes the statistics now (SIGUSR1): to the --stats file, or one JSON line on stderr.
    pub fn dump_stats(&self) {
        let json = self.stats_json();
        match &self.stats_file {
            Some(p) => write_stats(p, &json, &self.stats_warned),
            None => eprintln!("{json}"),
        }
    }

    fn stop_workers(&mut self) {
        for w in &self.workers {
            w.send(Cmd::Stop);
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Stops the workers, writes the final statistics, and releases the ports. Returns the
    /// final counters.
    pub fn stop(mut self) -> Vec<PortSnapshot> {
        self.stop_workers();
        if let Some(w) = self.writer.take() {
            let _ = w.stop.send(());
            let _ = w.thread.join();
        }
        let snap = snapshot(&self.ports, &self.nodes);
        if let Some(p) = &self.stats_file {
            let json = stats::to_json(self.kind.name(), self.threads, &snap);
            write_stats(p, &json, &self.stats_warned);
        }
        snap
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_workers();
        if let Some(w) = self.writer.take() {
            let _ = w.stop.send(());
            let _ = w.thread.join();
        }
    }
}

/// Ports whose link hosts a node (switch://, hub://, seqpacket ptp) become that node, with their
/// tap as its first endpoint; returns the other ports.
fn host_nodes(ports: Vec<Port>, nodes: &mut Vec<Node>) -> Vec<Port> {
    let (hosted, ports): (Vec<Port>, Vec<Port>) = ports.into_iter().partition(|p| p.link.node.is_some());
    for mut p in hosted {
        let h = p.link.node.take().expect("partitioned on node");
        nodes.push(Node {
            name: p.link.vnl.clone(),
            kind: NodeKind::hosting(h),
            endpoints: vec![Endpoint::Tap {
                name: p.name.clone(),
                fd: p.tap,
                offload: p.offload,
            }],
        });
    }
    ports
}

/// Every port's counters, and the ports (with their plans) of each worker.
type Assignment = (Vec<Arc<stats::PortStats>>, Vec<Vec<Assigned>>);

/// Each port's plan and counters, and the ports dealt out to the workers in turn.
fn assign(opts: &EngineOptions, ports: Vec<Port>) -> Result<Assignment, EngineError> {
    let nworkers = opts
        .workers
        .unwrap_or_else(|| default_workers(ports.len()))
        .clamp(1, ports.len().max(1));
    let mut stats_all = Vec::with_capacity(ports.len());
    let mut groups: Vec<Vec<Assigned>> = (0..nworkers).map(|_| Vec::new()).collect();
    for (i, port) in ports.into_iter().enumerate() {
        port::prepare(&port)?;
        let mut st = stats::PortStats::new(&port.name, &port.link.vnl);
        st.offload = match (port.offload.enabled(), port.link.offload.enabled()) {
            (false, _) => stats::Offload::None,
            (true, false) => stats::Offload::Cut,
            (true, true) => stats::Offload::Whole,
        };
        // Super-frames pass only between an offloading tap that cuts (not a tap:// link's
        // whole path) and the wire's header size: otherwise the link's offer is moot. The
        // worker takes the flag from here.
        st.superframes =
            port.link.superframes.clone().filter(|_| {
                st.offload == stats::Offload::Cut && port.offload.vnet_hdr == crate::wire::vnet::LEN
            });
        let st = Arc::new(st);
        stats_all.push(st.clone());
        groups[i % nworkers].push(Assigned { port, stats: st });
    }
    Ok((stats_all, groups))
}

/// A port as a cable node: its tap (endpoint 1) and its link (endpoint 2), each frame to the
/// other one; with the counters `assign` made for it. A `tap://` link with offload gets the
/// tap's frames whole (virtio-net header and all), so the tap joins as a plain one.
fn cable(a: Assigned) -> (Node, PortCtx) {
    let Assigned { port, stats, .. } = a;
    let whole = stats.offload == stats::Offload::Whole;
    let node = Node {
        name: port.name.clone(),
        kind: NodeKind::Cable,
        endpoints: vec![
            Endpoint::Tap {
                name: port.name.clone(),
                fd: port.tap,
                offload: if whole { TapOffload::NONE } else { port.offload },
            },
            Endpoint::Link {
                name: port.name,
                link: Box::new(port.link),
            },
        ],
    };
    let ctx = PortCtx {
        stats,
        whole_hdr: if whole { port.offload.vnet_hdr } else { 0 },
    };
    (node, ctx)
}

/// The CPUs data-plane threads are pinned to (--cpus with --pin), in turn; none: unpinned.
fn pinned_cpus(opts: &EngineOptions) -> Vec<usize> {
    match (&opts.cpus, opts.pin) {
        (Some(c), true) => c.clone(),
        _ => Vec::new(),
    }
}

/// Confines the calling data-plane thread once its set-up is done (`sys::isolate`: no
/// capabilities, no_new_privs, a seccomp allowlist). Where the kernel refuses, said once; the
/// thread goes on unconfined.
pub(crate) fn confine() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Err(e) = crate::sys::isolate::confine_data_plane() {
        if !WARNED.swap(true, Ordering::Relaxed) {
            crate::diag!(
                "cannot confine the data-plane threads ({}): they keep the namespace's capabilities",
                crate::sys::err_text(&e)
            );
        }
    }
}

/// The soft RLIMIT_MEMLOCK, for messages ("8192 KiB", "unlimited").
fn memlock_limit_text() -> String {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _)) if soft == RLIM_INFINITY => "unlimited".into(),
        Ok((soft, _)) => format!("{} KiB", soft / 1024),
        Err(e) => format!("unknown: {}", e.desc()),
    }
}

/// The eventfd through which the main thread wakes a worker or node thread.
fn new_wake(whose: &'static str) -> Result<Arc<OwnedFd>, EngineError> {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
        .map(|e| Arc::new(OwnedFd::from(e)))
        .map_err(|e| EngineError::Eventfd(whose, e))
}

/// Starts a named data-plane thread.
/// Puts the calling data-plane thread under SCHED_FIFO at `priority`, if one was asked for
/// (`--rt-priority`): by itself when its RLIMIT_RTPRIO allows it, else through the elevator
/// (root's CAP_SYS_NICE does not count in the new user namespace). When both are refused, says so once per process and goes on under the
/// normal scheduler, as a refused --cpus pin does.
fn realtime(rt: Option<Realtime>) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Some(Realtime {
        priority: p,
        elevator,
    }) = rt
    else {
        return;
    };
    let done = crate::sys::rt::set_realtime(p).or_else(|e| match &elevator {
        Some(el) => el.raise(crate::sys::rt::gettid()),
        None => Err(e),
    });
    if let Err(e) = done {
        if !SAID.swap(true, Ordering::Relaxed) {
            crate::diag!(
                "cannot run the data-plane threads at real-time priority {p}: sched_setscheduler: {} (needs CAP_SYS_NICE or ulimit -r {p}); they run under the normal scheduler",
                crate::sys::err_text(&e)
            );
        }
    }
}

fn spawn_thread(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, EngineError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| EngineError::Thread(name, e))
}

fn snapshot(ports: &[Arc<stats::PortStats>], nodes: &[Arc<node::NodeShared>]) -> Vec<PortSnapshot> {
    let mut all: Vec<Arc<stats::PortStats>> = ports.to_vec();
    for n in nodes {
        // The endpoints attached now, then the sum of those that left.
        let left = n.left.lock().expect("stats lock").1.clone();
        let is_left = |s: &Arc<stats::PortStats>| left.as_ref().is_some_and(|l| Arc::ptr_eq(l, s));
        let st = n.stats.lock().expect("stats lock");
        all.extend(st.iter().filter(|s| !is_left(s)).cloned());
        all.extend(left);
    }
    all.iter()
        .map(|p| PortSnapshot {
            name: p.name.clone(),
            vnl: p.vnl.clone(),
            offload: p.offload,
            superframes: stats::Superframes::of(p.superframes.as_deref()),
            handover: p.handover.load(Ordering::Relaxed),
            dirs: [p.dirs[0].snapshot(), p.dirs[1].snapshot()],
        })
        .collect()
}

/// Writes FILE.tmp then renames it over FILE, so readers never see a partial file.
/// A failure is said once per run (`warned`).
fn write_stats(path: &Path, json: &str, warned: &AtomicBool) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let r = std::fs::write(&tmp, format!("{json}\n")).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        if !warned.swap(true, Ordering::Relaxed) {
            crate::diag!(
                "cannot write statistics to {}: {} (check the directory exists and is writable)",
                path.display(),
                crate::sys::err_text(&e)
            );
        }
    }
}

/// How many threads `nodes` nodes run on, with `cpus` CPUs: one each up to the CPUs.
fn node_threads(nodes: usize, cpus: usize) -> usize {
    nodes.min(cpus.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn nodes_get_a_thread_each_up_to_the_cpus() {
        assert_eq!(node_threads(1, 8), 1);
        assert_eq!(node_threads(2, 2), 2);
        assert_eq!(node_threads(200, 2), 2);
        assert_eq!(node_threads(3, 0), 1);
        assert_eq!(node_threads(0, 4), 0);
    }

    /// The texts users see, case by case (they were strings before the cases).
    #[test]
    fn engine_errors_read_as_one_line() {
        let port = || "vde0 (ptp:///tmp/p)".to_string();
        let cases: Vec<(EngineError, String)> = vec![
            (
                EngineError::Uring(uring::Unavailable::Disabled),
                "cannot use io_uring: io_uring is disabled (kernel.io_uring_disabled = 2) (try --engine poll)".into(),
            ),
            (EngineError::Setup(None), "worker setup failed: no answer within 10 s".into()),
            (
                EngineError::Setup(Some(StartError::Endpoint(EndpointError::NoFreePort { node: "sw".into() }))),
                "worker setup failed: sw: no free port".into(),
            ),
            (
                EngineError::Thread("vdens-uring0".into(), std::io::Error::from_raw_os_error(libc::EAGAIN)),
                format!("cannot start thread vdens-uring0: {}", Errno::EAGAIN.desc()),
            ),
            (
                EngineError::Eventfd("worker", Errno::EMFILE),
                format!("cannot create a worker's eventfd: {}", Errno::EMFILE.desc()),
            ),
            (
                EngineError::AddEndpoint(None),
                "cannot add the endpoint: the node did not answer within 5 s".into(),
            ),
            (
                EngineError::AddEndpoint(Some(EndpointError::NoFreePort { node: "sw".into() })),
                "cannot add the endpoint: sw: no free port".into(),
            ),
            (EngineError::NoNode(3, 1), "no node 3 (the engine runs 1)".into()),
            (
                EngineError::Port(port(), PortFault::Sys("cannot make the tap non-blocking", Errno::EBADF)),
                format!("vde0 (ptp:///tmp/p): cannot make the tap non-blocking: {}", Errno::EBADF.desc()),
            ),
            (
                EngineError::Port(port(), PortFault::VnetHdr(12, 10)),
                "vde0 (ptp:///tmp/p): the link's tap reads a virtio-net header of 12 bytes, the interface's 10 (open both with offload or neither)".into(),
            ),
            (
                EngineError::Port(port(), PortFault::NoDescriptor),
                "vde0 (ptp:///tmp/p): the link has no descriptor (transport bug)".into(),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
            assert_eq!(e.to_string().lines().count(), 1);
        }
    }
}
