//! What a node is, as the engine is handed it and shares it while it runs: its kind (a cable,
//! a switch or hub served on its listener, a seqpacket ptp end, an overlay), its endpoints (taps
//! and links; switch clients join and leave at run time), and the counters it publishes. Every
//! node runs on the ring loop (`uring/node.rs`), on either driver.

use super::stats::{Counts, PortStats};
use crate::switch::server::Listener;
use crate::transport::{Hosted, Link, Overlay, PtpHost};
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Most ports a switch or hub serves.
pub const MAX_PORTS: usize = 1024;

/// An endpoint handed to a node.
pub enum Endpoint {
    /// A tap device (one frame per read/write). `offload`: the tap's virtio-net header and
    /// offloads (a switch's or hub's tap may have them; the node cuts and coalesces).
    Tap {
        name: String,
        fd: OwnedFd,
        offload: super::TapOffload,
    },
    /// A link opened by a transport.
    Link { name: String, link: Box<Link> },
}

/// What a node does with frames.
pub enum NodeKind {
    /// Two endpoints, each frame to the other one.
    Cable,
    /// A switch or hub served on this listener.
    Net(Listener),
    /// A 2025 (seqpacket) ptp end: a cable from the first endpoint to the peer, which is
    /// accepted (listening role) or found again (connecting role) after each hang-up.
    Ptp(PtpHost),
    /// A cable between the given endpoint (the tap) and a vxlan:// or vxvde:// network.
    Overlay(Box<Overlay>),
}

impl NodeKind {
    /// The node that runs what a link hosts.
    pub fn hosting(h: Hosted) -> NodeKind {
        match h {
            Hosted::Net(l) => NodeKind::Net(l),
            Hosted::Ptp(p) => NodeKind::Ptp(p),
            Hosted::Overlay(o) => NodeKind::Overlay(o),
        }
    }
}

/// A node to run.
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub endpoints: Vec<Endpoint>,
}

/// The node as the engine sees it while it runs.
pub struct NodeShared {
    /// Counters of every endpoint currently attached (clients come and go), then those of the
    /// endpoints that left, summed (see [`NodeShared::retire`]).
    pub stats: Mutex<Vec<Arc<PortStats>>>,
    /// The counters of the endpoints that left, summed, and their published copy (in `stats`
    /// once the first one left, as `NODE:left`).
    pub left: Mutex<([Counts; 2], Option<Arc<PortStats>>)>,
    /// A cable endpoint reached end of file (vdeplug-fast then exits).
    pub ended: AtomicBool,
    /// The node was to run on io_uring but had no memory for a ring: it runs on epoll.
    pub fell_back: AtomicBool,
}

impl NodeShared {
    pub fn new() -> NodeShared {
        NodeShared {
            stats: Mutex::new(Vec::new()),
            left: Mutex::new(([Counts::default(); 2], None)),
            ended: AtomicBool::new(false),
            fell_back: AtomicBool::new(false),
        }
    }

    /// An endpoint of node `node` left with these final counters: its own entry goes, and
    /// they are added to the node's `NODE:left` entry, so that a node's totals never go back.
    pub fn retire(&self, node: &str, stats: &Arc<PortStats>, counts: &[Counts; 2]) {
        let mut all = self.stats.lock().expect("stats lock");
        all.retain(|s| !Arc::ptr_eq(s, stats));
        let mut left = self.left.lock().expect("stats lock");
        left.0[0].add(&counts[0]);
        left.0[1].add(&counts[1]);
        let sum = left.0;
        let entry = left.1.get_or_insert_with(|| {
            let e = Arc::new(PortStats::new(&format!("{node}:left"), "(endpoints that left)"));
            all.push(e.clone());
            e
        });
        entry.dirs[0].publish(&sum[0]);
        entry.dirs[1].publish(&sum[1]);
    }
}

impl Default for NodeShared {
    fn default() -> Self {
        NodeShared::new()
    }
}
