//! What both engines' worker threads share: the ports they are handed, the commands from the
//! control thread, and CPU pinning.

use super::port::DirPlan;
use super::stats::PortStats;
use super::Port;
use crossbeam_channel::Receiver;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// A port as handed to a worker: the descriptors (kept open for as long as the worker runs),
/// its plan, and where its counters are published.
pub struct Assigned {
    pub port: Port,
    pub plan: [DirPlan; 2],
    pub stats: Arc<PortStats>,
}

pub use super::core::Cmd;

/// Everything a worker thread starts with.
pub struct WorkerCtx {
    pub index: usize,
    pub ports: Vec<Assigned>,
    pub cmds: Receiver<Cmd>,
    /// Non-blocking eventfd the control thread writes after queueing a command.
    pub wake: Arc<OwnedFd>,
    pub cpu: Option<usize>,
}

/// Everything a node's thread starts with, besides the node.
pub struct NodeCtx {
    pub cmds: Receiver<Cmd>,
    /// Non-blocking eventfd the control thread writes after queueing a command.
    pub wake: Arc<OwnedFd>,
    /// What the node shares with the control thread (counters, state).
    pub shared: Arc<super::node::NodeShared>,
}

/// Pins the calling thread to `cpu`. Called first thing in a worker, before it allocates its
/// buffers: Linux places an anonymous page on the NUMA node of the CPU that first touches it,
/// so buffers touched after pinning are local to the core that will use them.
pub fn pin(cpu: Option<usize>) {
    if let Some(id) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            crate::diag!("cannot pin a worker to CPU {id}: sched_setaffinity refused (check --cpus); the worker runs unpinned");
        }
    }
}
