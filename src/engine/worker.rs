//! What both engines' worker threads share: the ports they are handed, the commands from the
//! control thread, and CPU pinning.

use super::core::EndpointError;
use super::stats::PortStats;
use super::uring::SetupError;
use super::Port;
use crossbeam_channel::Receiver;
use nix::errno::Errno;
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// A port as dealt to a thread: the descriptors (kept open for as long as its cable runs),
/// and where its counters are published.
pub struct Assigned {
    pub port: Port,
    pub stats: Arc<PortStats>,
}

pub use super::core::Cmd;

/// Everything a node's thread starts with, besides the node.
pub struct NodeCtx {
    pub cmds: Receiver<Cmd>,
    /// Non-blocking eventfd the control thread writes after queueing a command.
    pub wake: Arc<OwnedFd>,
    /// What the node shares with the control thread (counters, state).
    pub shared: Arc<super::node::NodeShared>,
    /// The node is a port's cable (`engine::cable`): its tap is endpoint 1, its link 2.
    pub port: Option<PortCtx>,
}

/// What a node that runs a port (tap <-> link) needs besides its endpoints.
pub struct PortCtx {
    /// The port's counters, one entry in both directions as the port's (`PortStats::new(NAME,
    /// VNL)`, with its offload and super-frame flags as `assign` set them).
    pub stats: Arc<PortStats>,
    /// Frames cross tap to tap whole behind a virtio-net header of this many bytes (a tap://
    /// link with offload, `stats::Offload::Whole`); 0 otherwise.
    pub whole_hdr: usize,
}

impl PortCtx {
    /// Whether the node needs its big receive buffers: whole tap reads, reads of an offloading
    /// tap, or tagged datagrams (`wire::superframe`) that may come from a link that offered
    /// them.
    pub fn big(&self) -> bool {
        self.whole_hdr > 0
            || self.stats.superframes.is_some()
            || self.stats.offload == super::stats::Offload::Cut
    }
}

/// What a worker or node thread reports once it is set up: the set-up it runs with (the ring's
/// mode, or which node loop), or why it could not start.
pub type Ready = Result<&'static str, StartError>;

/// Why a worker or node thread could not start.
#[derive(Debug)]
pub enum StartError {
    /// Its ring or the ring's buffers.
    Ring(SetupError),
    /// One of the endpoints a node starts with.
    Endpoint(EndpointError),
    /// The epoll instance through which a ptp node watches its listening socket.
    Epoll { node: String, errno: Errno },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Ring(e) => f.write_str(&e.msg),
            StartError::Endpoint(e) => fmt::Display::fmt(e, f),
            StartError::Epoll { node, errno } => write!(f, "{node}: epoll_create1: {}", errno.desc()),
        }
    }
}

impl std::error::Error for StartError {}

impl From<SetupError> for StartError {
    fn from(e: SetupError) -> StartError {
        StartError::Ring(e)
    }
}

impl From<EndpointError> for StartError {
    fn from(e: EndpointError) -> StartError {
        StartError::Endpoint(e)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts users see after "worker setup failed: ".
    #[test]
    fn start_errors_read_as_one_line() {
        let ring = SetupError::io("io_uring_setup", &std::io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(
            StartError::from(ring).to_string(),
            "io_uring_setup: Operation not permitted"
        );
        let full = EndpointError::NoFreePort { node: "sw".into() };
        assert_eq!(StartError::from(full).to_string(), "sw: no free port");
        let epoll = StartError::Epoll {
            node: "ptp".into(),
            errno: Errno::EMFILE,
        };
        assert_eq!(epoll.to_string(), "ptp: epoll_create1: Too many open files");
    }
}
