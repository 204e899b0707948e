//! A node of N endpoints (taps and links) on one worker thread: a cable (two endpoints, each
//! the fixed "other side" of the other), a learning switch or a hub (a forwarding decision per
//! frame, [`Forwarder::decide`]). Switch and hub nodes also serve the VDE control protocol on
//! their listening socket: clients join and leave at run time, each one an endpoint with its
//! own connected datagram socket. A seqpacket ptp node (2025 protocol) is a cable from its tap
//! to a peer that comes and goes: accepted on the listening socket (one at a time; others get
//! the EISCONN ack), or connected again after a hang-up (see `PtpHost::reconnect`).
//!
//! Readiness-based (epoll), non-blocking everywhere: a frame whose destination cannot take it
//! now (socket queue full, stream buffer full) is dropped and counted for that destination,
//! so a stalled client never stalls the others, and nothing queues without bound. A flooded
//! frame is sent from the one receive buffer to every destination in turn (no copy). Buffers
//! are allocated when an endpoint is added, never per frame.
//!
//! A vxlan:// or vxvde:// link is a cable between the tap and an overlay endpoint
//! (src/engine/overlay.rs) that chooses each frame's destination itself.

use super::core::cut::{self, Cut};
use super::core::ptp;
use super::core::{
    admit, admit_stream, classify_rx_error, dispatch, send_verdict, single_send_drop, Backpressure, Control,
    Op, RxFault, Token, Verdict,
};
use super::join::{Change, Joins, Ready};
use super::offload::SUPER_READ;
use super::overlay::OverlayEp;
use super::port::MAX_FRAME;
use super::stats::{Counts, DropReason, PortStats, LINK_TO_TAP, TAP_TO_LINK};
use super::worker::Cmd;
use crate::switch::server::Listener;
use crate::switch::{Decision, Forwarder, PortId};
use crate::sys::{borrow_fd, recv_batch, send_batch};
use crate::transport::{Framing, Hosted, Link, Overlay, PtpHost, SendTo};
use crate::wire::stream::{self, Decoder};
use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{recv, send, sendto, MsgFlags, UnixAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Frames per receive batch.
const BATCH: usize = 32;
/// Per-frame buffer: larger than the largest frame, so a longer one shows up as oversize.
const STRIDE: usize = 9472;
/// Batches per endpoint per wake-up before the others get a turn.
const ROUNDS: usize = 8;
/// Bytes a stream endpoint may have waiting to be written (then frames to it are dropped).
const STREAM_OUT: usize = 256 * 1024;
/// Most ports a switch or hub serves.
pub const MAX_PORTS: usize = 1024;

const DROP: u32 = u32::MAX;
const FLOOD: u32 = u32::MAX - 1;

/// An endpoint handed to a node.
pub enum Endpoint {
    /// A tap device (one frame per read/write).
    /// `offload`: the tap's virtio-net header and offloads (only the io_uring switch/hub node
    /// takes a tap with a header; everything else needs `TapOffload::NONE`).
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

enum Tx {
    Write {
        fd: RawFd,
        socket: bool,
    },
    SendTo {
        fd: RawFd,
        addr: UnixAddr,
    },
    Stream {
        fd: RawFd,
        out: Box<[u8]>,
        start: usize,
        end: usize,
    },
    /// A vxlan:// / vxvde:// network: a destination per frame, chosen by the endpoint.
    Overlay(Box<OverlayEp>),
    /// A tap opened with a virtio-net header of `hdr` bytes: each frame written behind a
    /// header that asks for nothing (this node does not coalesce; the io_uring node does).
    VnetTap {
        fd: RawFd,
        hdr: usize,
    },
    Discard,
}

/// Reading a tap opened with a virtio-net header: the last read, and how far its segments
/// went (a super-frame is cut into the batch, resumed in the next when it does not fit).
struct VnetRx {
    hdr: usize,
    big: Box<[u8]>,
    /// Bytes of the read not yet fully cut (0: none).
    len: usize,
    /// Next segment of it to cut.
    next: usize,
}

struct StreamRx {
    dec: Decoder,
    raw: Box<[u8]>,
    off: usize,
    len: usize,
}

/// Holds the descriptors of an endpoint open while it is attached.
#[allow(dead_code)]
enum Owner {
    /// A tap, with the length of its virtio-net header (0: a plain tap).
    Tap(OwnedFd, usize),
    Link(Box<Link>),
    Client {
        data: OwnedFd,
        ctl: OwnedFd,
        path: PathBuf,
    },
    /// An overlay endpoint: its sockets are held by its `Tx::Overlay`.
    Overlay,
}

struct Ep {
    owner: Owner,
    rx: Option<RawFd>,
    rx_socket: bool,
    eof_on_zero: bool,
    rx_stream: Option<Box<StreamRx>>,
    rx_vnet: Option<Box<VnetRx>>,
    rx_dead: bool,
    tx: Tx,
    /// Registered in epoll: the rx fd (or the tx fd when there is no rx), and the tx fd when
    /// different and a stream.
    reg: Vec<RawFd>,
    /// [TAP_TO_LINK] = from this endpoint into the node, [LINK_TO_TAP] = from the node to it.
    counts: [Counts; 2],
    stats: Arc<PortStats>,
    label: String,
}

fn fdb<'a>(f: RawFd) -> std::os::fd::BorrowedFd<'a> {
    borrow_fd(f)
}

fn errno_of(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn is_socket(f: RawFd) -> bool {
    use nix::sys::stat::{fstat, SFlag};
    fstat(fdb(f)).is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
}

fn is_dgram(f: RawFd) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::SockType, SockType as T};
    matches!(getsockopt(&fdb(f), SockType), Ok(T::Datagram))
}

fn set_nonblocking(f: RawFd) -> Result<(), Errno> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fl = OFlag::from_bits_truncate(fcntl(fdb(f), FcntlArg::F_GETFL)?);
    fcntl(fdb(f), FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl Ep {
    fn new(owner: Owner, name: &str, vnl: &str) -> Result<Ep, String> {
        let label = format!("{name} ({vnl})");
        let fail = |what: &str, e: Errno| format!("{label}: {what}: {}", e.desc());
        let (rx, tx, stream) = match &owner {
            Owner::Tap(fd, _) => (Some(fd.as_raw_fd()), None, false),
            Owner::Client { data, .. } => (Some(data.as_raw_fd()), None, false),
            // Built by Ep::overlay, never here.
            Owner::Overlay => (None, None, false),
            Owner::Link(l) => (
                l.rx_fd().map(|f| f.as_raw_fd()),
                l.tx_fd().map(|f| f.as_raw_fd()),
                l.framing == Framing::Stream,
            ),
        };
        let txfd = tx.or(rx);
        let null = matches!(&owner, Owner::Link(l) if l.framing == Framing::Null);
        for f in rx.iter().chain(tx.iter()) {
            set_nonblocking(*f).map_err(|e| fail("cannot make it non-blocking", e))?;
        }
        let rx_socket = rx.is_some_and(is_socket);
        let tx = match (txfd, &owner) {
            _ if null => Tx::Discard,
            (None, _) => Tx::Discard,
            (Some(fd), _) if stream => Tx::Stream {
                fd,
                out: vec![0u8; STREAM_OUT].into_boxed_slice(),
                start: 0,
                end: 0,
            },
            (Some(fd), Owner::Link(l)) => match &l.send_to {
                SendTo::Unix(p) => Tx::SendTo {
                    fd,
                    addr: UnixAddr::new(p.as_path()).map_err(|e| fail("bad destination", e))?,
                },
                SendTo::Connected => Tx::Write {
                    fd,
                    socket: is_socket(fd),
                },
            },
            (Some(fd), Owner::Client { .. }) => Tx::Write { fd, socket: true },
            (Some(fd), Owner::Tap(_, hdr)) if *hdr > 0 => Tx::VnetTap { fd, hdr: *hdr },
            (Some(fd), Owner::Tap(..)) => Tx::Write { fd, socket: false },
            (Some(_), Owner::Overlay) => Tx::Discard,
        };
        let mut reg: Vec<RawFd> = rx.into_iter().collect();
        if let Tx::Stream { fd, .. } = tx {
            if !reg.contains(&fd) {
                reg.push(fd);
            }
        }
        Ok(Ep {
            rx: if null { None } else { rx },
            rx_socket,
            eof_on_zero: !(rx_socket && rx.is_some_and(is_dgram)),
            rx_stream: (stream && !null).then(|| {
                Box::new(StreamRx {
                    dec: Decoder::new(),
                    raw: vec![0u8; 65536].into_boxed_slice(),
                    off: 0,
                    len: 0,
                })
            }),
            rx_dead: rx.is_none() || null,
            rx_vnet: match &tx {
                Tx::VnetTap { hdr, .. } => Some(Box::new(VnetRx {
                    hdr: *hdr,
                    big: vec![0u8; SUPER_READ].into_boxed_slice(),
                    len: 0,
                    next: 0,
                })),
                _ => None,
            },
            tx,
            reg: if null { Vec::new() } else { reg },
            counts: [Counts::default(); 2],
            stats: Arc::new(PortStats::new(name, vnl)),
            label,
            owner,
        })
    }

    /// The endpoint of a vxlan:// or vxvde:// network: both its sockets are watched for input.
    fn overlay(ov: Box<Overlay>, name: &str) -> Result<Ep, String> {
        let o = OverlayEp::new(ov);
        let vnl = o.vnl().to_string();
        let label = format!("{name} ({vnl})");
        let reg = o.rx_fds();
        for f in &reg {
            set_nonblocking(*f).map_err(|e| format!("{label}: cannot make it non-blocking: {}", e.desc()))?;
        }
        Ok(Ep {
            owner: Owner::Overlay,
            rx: reg.first().copied(),
            rx_socket: true,
            eof_on_zero: false,
            rx_stream: None,
            rx_vnet: None,
            rx_dead: false,
            tx: Tx::Overlay(Box::new(o)),
            reg,
            counts: [Counts::default(); 2],
            stats: Arc::new(PortStats::new(name, &vnl)),
            label,
        })
    }

    fn publish(&self) {
        self.stats.dirs[0].publish(&self.counts[0]);
        self.stats.dirs[1].publish(&self.counts[1]);
    }

    fn stream_pending(&self) -> bool {
        matches!(self.tx, Tx::Stream { start, end, .. } if start < end)
    }

    /// Writes what waits in a stream endpoint's buffer.
    fn flush_stream(&mut self) {
        if let Tx::Stream { fd, out, start, end } = &mut self.tx {
            while *start < *end {
                match nix::unistd::write(fdb(*fd), &out[*start..*end]) {
                    Ok(k) => *start += k,
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => return,
                    Err(_) => {
                        self.counts[LINK_TO_TAP].add_drop(DropReason::SendError, 1);
                        *start = *end;
                    }
                }
            }
            *start = 0;
            *end = 0;
        }
    }

    /// Sends frames `i..j` of the slab to this endpoint now, or drops them.
    fn send_run(&mut self, slab: &[u8], lens: &[usize], mut i: usize, j: usize) {
        if let Tx::Overlay(o) = &mut self.tx {
            o.send_run(slab, STRIDE, lens, i, j, &mut self.counts[LINK_TO_TAP]);
            return;
        }
        let dest = match &self.tx {
            Tx::Write { socket: true, fd } => (*fd, None),
            Tx::SendTo { fd, addr } => (*fd, Some(*addr)),
            _ => {
                for k in i..j {
                    self.send(&slab[k * STRIDE..k * STRIDE + lens[k]]);
                }
                return;
            }
        };
        let c = &mut self.counts[LINK_TO_TAP];
        c.received += (j - i) as u64;
        while i < j {
            match send_batch(
                fdb(dest.0),
                &slab[i * STRIDE..],
                STRIDE,
                &lens[i..j],
                dest.1.as_ref(),
            ) {
                Ok(k) if k > 0 => {
                    for l in &lens[i..i + k] {
                        c.sent(*l);
                    }
                    i += k;
                }
                Ok(_) => {
                    c.add_drop(DropReason::NoBuffer, (j - i) as u64);
                    return;
                }
                Err(e) => match send_verdict(errno_of(e) as i32, Backpressure::Drop) {
                    Verdict::Retry => {}
                    // The destination is full: the rest of the run goes too.
                    Verdict::Drop(DropReason::NoBuffer) => {
                        c.add_drop(DropReason::NoBuffer, (j - i) as u64);
                        return;
                    }
                    Verdict::Drop(why) => {
                        c.add_drop(why, 1);
                        i += 1;
                    }
                },
            }
        }
    }

    /// Sends one frame to this endpoint now, or drops it.
    fn send(&mut self, frame: &[u8]) {
        if let Tx::Overlay(o) = &mut self.tx {
            o.send_one(frame, &mut self.counts[LINK_TO_TAP]);
            return;
        }
        let c = &mut self.counts[LINK_TO_TAP];
        c.received += 1;
        let r = match &mut self.tx {
            Tx::Discard => {
                c.add_drop(DropReason::NoLink, 1);
                return;
            }
            // Sent above.
            Tx::Overlay(_) => return,
            Tx::Write { fd, socket: true } => send(*fd, frame, MsgFlags::MSG_DONTWAIT).map(|_| ()),
            Tx::Write { fd, socket: false } => nix::unistd::write(fdb(*fd), frame).map(|_| ()),
            Tx::VnetTap { fd, hdr } => {
                let zero = [0u8; 12];
                nix::sys::uio::writev(
                    fdb(*fd),
                    &[std::io::IoSlice::new(&zero[..*hdr]), std::io::IoSlice::new(frame)],
                )
                .map(|_| ())
            }
            Tx::SendTo { fd, addr } => sendto(*fd, frame, addr, MsgFlags::MSG_DONTWAIT).map(|_| ()),
            Tx::Stream { out, start, end, .. } => {
                if *end + frame.len() + 2 > out.len() && *start > 0 {
                    out.copy_within(*start..*end, 0);
                    *end -= *start;
                    *start = 0;
                }
                if *end + frame.len() + 2 > out.len() {
                    Err(Errno::EAGAIN)
                } else {
                    out[*end..*end + 2].copy_from_slice(&stream::header(frame.len()));
                    out[*end + 2..*end + 2 + frame.len()].copy_from_slice(frame);
                    *end += frame.len() + 2;
                    Ok(())
                }
            }
        };
        match r {
            Ok(()) => c.sent(frame.len()),
            Err(e) => c.add_drop(single_send_drop(e as i32), 1),
        }
    }
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

/// What forwards frames between the endpoints.
enum Fwd {
    Cable,
    Net(Forwarder),
}

struct NodeWorker {
    name: String,
    ep: Epoll,
    eps: Vec<Option<Ep>>,
    fwd: Fwd,
    listener: Option<Listener>,
    /// Clients that have not joined yet.
    joins: Joins,
    slab: Box<[u8]>,
    lens: [usize; BATCH],
    /// Per frame of the batch: the destination endpoint, [`FLOOD`] or [`DROP`].
    dests: [u32; BATCH],
    start: Instant,
    shared: Arc<NodeShared>,
    /// The seqpacket ptp end this node runs (its peer is endpoint [`PTP_PEER`]).
    ptp: Option<PtpHost>,
}

fn token(op: Op, idx: usize) -> u64 {
    Token::new(op, idx).encode()
}

impl Control for NodeWorker {
    fn publish(&mut self) {
        NodeWorker::publish(self);
    }
    fn add_endpoint(&mut self, e: Endpoint) -> Result<u16, String> {
        NodeWorker::add_endpoint(self, e)
    }
    fn remove_endpoint(&mut self, id: u16) {
        self.remove(id as usize);
    }
}

impl NodeWorker {
    fn register(&mut self, id: usize) -> Result<(), Errno> {
        let e = self.eps[id].as_ref().expect("endpoint");
        let overlay = matches!(e.tx, Tx::Overlay(_));
        for (k, f) in e.reg.iter().enumerate() {
            let flags = if (k == 0 && e.rx.is_some()) || overlay {
                EpollFlags::EPOLLIN
            } else {
                EpollFlags::empty()
            };
            let kind = if k == 0 { Op::Rx } else { Op::Tx };
            self.ep.add(fdb(*f), EpollEvent::new(flags, token(kind, id)))?;
        }
        if let Some(ctl) = ctl_of(&e.owner) {
            self.ep
                .add(ctl, EpollEvent::new(EpollFlags::EPOLLIN, token(Op::Ctl, id)))?;
        }
        Ok(())
    }

    fn add(&mut self, id: usize, e: Ep) -> Result<(), String> {
        if self.eps.len() <= id {
            self.eps.resize_with(id + 1, || None);
        }
        self.shared
            .stats
            .lock()
            .expect("stats lock")
            .push(e.stats.clone());
        let label = e.label.clone();
        self.eps[id] = Some(e);
        self.register(id)
            .map_err(|err| format!("{label}: cannot watch it: epoll_ctl: {}", err.desc()))
    }

    fn remove(&mut self, id: usize) {
        let Some(e) = self.eps.get_mut(id).and_then(Option::take) else {
            return;
        };
        e.publish();
        for f in &e.reg {
            let _ = self.ep.delete(fdb(*f));
        }
        if let Some(ctl) = ctl_of(&e.owner) {
            let _ = self.ep.delete(ctl);
        }
        if let Owner::Client { path, .. } = &e.owner {
            let _ = std::fs::remove_file(path);
        }
        if let Fwd::Net(f) = &mut self.fwd {
            f.port_closed(id as PortId);
        }
        self.shared.retire(&self.name, &e.stats, &e.counts);
    }

    fn interest(&mut self, id: usize) {
        let Some(e) = self.eps[id].as_ref() else { return };
        let pending = e.stream_pending();
        let Tx::Stream { fd: txfd, .. } = e.tx else { return };
        for (k, f) in e.reg.iter().enumerate() {
            let mut fl = EpollFlags::empty();
            if Some(*f) == e.rx && !e.rx_dead {
                fl |= EpollFlags::EPOLLIN;
            }
            if *f == txfd && pending {
                fl |= EpollFlags::EPOLLOUT;
            }
            let kind = if k == 0 { Op::Rx } else { Op::Tx };
            let _ = self.ep.modify(fdb(*f), &mut EpollEvent::new(fl, token(kind, id)));
        }
    }

    /// Forwards the `n` frames of the slab received on endpoint `from`: decides each one,
    /// then sends every run of consecutive frames with the same fate in one batch per
    /// destination (one sendmmsg on datagram sockets).
    fn forward(&mut self, from: usize, n: usize, now: u64) {
        // A cable whose other side is not attached (a ptp node between peers) drops.
        let other = (from == 0) as usize;
        let cable_to = if matches!(self.eps.get(other), Some(Some(_))) {
            other as u32
        } else {
            DROP
        };
        let c = &mut self.eps[from].as_mut().expect("endpoint").counts[TAP_TO_LINK];
        for i in 0..n {
            let len = self.lens[i];
            let frame = &self.slab[i * STRIDE..i * STRIDE + len];
            self.dests[i] = match &mut self.fwd {
                Fwd::Cable => cable_to,
                Fwd::Net(f) => match f.decide(from as PortId, frame, now) {
                    Decision::Drop => DROP,
                    Decision::Unicast(p) => p as u32,
                    Decision::Flood => FLOOD,
                },
            };
            if self.dests[i] == DROP {
                c.add_drop(DropReason::NoLink, 1);
            } else {
                c.sent(len);
            }
        }
        let mut i = 0;
        while i < n {
            let d = self.dests[i];
            let mut j = i + 1;
            while j < n && self.dests[j] == d {
                j += 1;
            }
            match d {
                DROP => {}
                FLOOD => {
                    for (k, e) in self.eps.iter_mut().enumerate() {
                        if k != from {
                            if let Some(e) = e {
                                e.send_run(&self.slab, &self.lens, i, j);
                            }
                        }
                    }
                }
                t => {
                    if let Some(Some(e)) = self.eps.get_mut(t as usize) {
                        e.send_run(&self.slab, &self.lens, i, j);
                    }
                }
            }
            i = j;
        }
    }

    /// Receives a batch from endpoint `id` into the slab; returns how many frames.
    fn fill(&mut self, id: usize) -> usize {
        let e = self.eps[id].as_mut().expect("endpoint");
        if e.rx_dead {
            return 0;
        }
        let rx = e.rx.expect("a live endpoint receives");
        let c = &mut e.counts[TAP_TO_LINK];
        if let Tx::Overlay(o) = &mut e.tx {
            return match o.recv(&mut self.slab, STRIDE, &mut self.lens, c) {
                Ok(n) => n,
                Err(_) => {
                    e.rx_dead = true;
                    0
                }
            };
        }
        if let Some(v) = e.rx_vnet.as_mut() {
            return fill_vnet(v, rx, &mut self.slab, &mut self.lens, c, &mut e.rx_dead);
        }
        if let Some(s) = e.rx_stream.as_mut() {
            let mut n = 0;
            loop {
                while s.off < s.len && n < BATCH {
                    let dst = &mut self.slab[n * STRIDE..n * STRIDE + MAX_FRAME];
                    let (k, ev) = s.dec.feed(&s.raw[s.off..s.len], dst);
                    s.off += k;
                    if let Some(ev) = ev {
                        c.received += 1;
                        match admit_stream(ev) {
                            Ok(l) => {
                                self.lens[n] = l;
                                n += 1;
                            }
                            Err(why) => c.add_drop(why, 1),
                        }
                    }
                }
                if n == BATCH {
                    return n;
                }
                match nix::unistd::read(fdb(rx), &mut s.raw) {
                    Ok(0) => {
                        e.rx_dead = true;
                        return n;
                    }
                    Ok(k) => {
                        s.off = 0;
                        s.len = k;
                    }
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => return n,
                    Err(_) => {
                        e.rx_dead = true;
                        return n;
                    }
                }
            }
        }
        let got = if e.rx_socket {
            recv_batch(fdb(rx), &mut self.slab, STRIDE, &mut self.lens).map_err(errno_of)
        } else {
            match nix::unistd::read(fdb(rx), &mut self.slab[..STRIDE]) {
                Ok(l) => {
                    self.lens[0] = l;
                    if l == 0 {
                        Ok(0)
                    } else {
                        Ok(1)
                    }
                }
                Err(e) => Err(e),
            }
        };
        match got {
            Ok(0) if e.eof_on_zero => {
                e.rx_dead = true;
                0
            }
            Ok(k) => {
                let mut n = 0;
                for i in 0..k {
                    c.received += 1;
                    let l = self.lens[i];
                    if l == 0 && e.eof_on_zero {
                        e.rx_dead = true;
                        break;
                    }
                    if let Err(why) = admit(l) {
                        c.add_drop(why, 1);
                    } else {
                        if n != i {
                            self.slab.copy_within(i * STRIDE..i * STRIDE + l, n * STRIDE);
                        }
                        self.lens[n] = l;
                        n += 1;
                    }
                }
                n
            }
            Err(err) if classify_rx_error(err as i32) != RxFault::Fatal => 0,
            Err(_) => {
                e.rx_dead = true;
                0
            }
        }
    }

    fn pump(&mut self, id: usize) {
        if !matches!(self.eps.get(id), Some(Some(_))) {
            return;
        }
        self.eps[id].as_mut().expect("endpoint").flush_stream();
        let now = self.start.elapsed().as_secs();
        for _ in 0..ROUNDS {
            let n = self.fill(id);
            self.forward(id, n, now);
            if n == 0 {
                break;
            }
        }
        let dead = self.eps[id].as_ref().is_some_and(|e| e.rx_dead && e.rx.is_some());
        // A ptp peer hanging up is not the end: the node waits for or looks for the next.
        let hangup = dead && self.ptp.is_some() && id == PTP_PEER;
        let dead = dead && !hangup;
        if dead {
            let e = self.eps[id].as_mut().expect("endpoint");
            e.rx = None;
            // A cable's input ending is the normal end of a vdeplug-fast run, about which
            // vde_plug says nothing.
            if matches!(self.fwd, Fwd::Cable) {
                self.shared.ended.store(true, Ordering::Release);
            } else {
                crate::diag!("{}: {}: end of file", self.name, e.label);
            }
        }
        // Destinations with bytes waiting get a write now, and EPOLLOUT if still blocked.
        for j in 0..self.eps.len() {
            if self.eps[j].as_ref().is_some_and(Ep::stream_pending) {
                self.eps[j].as_mut().expect("endpoint").flush_stream();
            }
            self.interest(j);
        }
        if dead {
            let e = self.eps[id].as_ref().expect("endpoint");
            // An overlay watches all its sockets for input; others only the first descriptor.
            let watched = if matches!(e.tx, Tx::Overlay(_)) {
                e.reg.len()
            } else {
                1
            };
            for (k, f) in e.reg.iter().take(watched).enumerate() {
                if !matches!(e.tx, Tx::Stream { .. }) {
                    let kind = if k == 0 { Op::Rx } else { Op::Tx };
                    let _ = self.ep.modify(
                        fdb(*f),
                        &mut EpollEvent::new(EpollFlags::empty(), token(kind, id)),
                    );
                }
            }
        }
        if hangup {
            self.ptp_hangup();
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        for c in self.joins.accept(l.ctl.as_fd(), Instant::now(), &self.name) {
            // A closed client left epoll with its descriptor (Unwatch).
            if let Change::Watch { slot, gen, fd } = c {
                let t = Token::new(Op::Pending, slot).gen(gen).encode();
                let _ = self.ep.add(fdb(fd), EpollEvent::new(EpollFlags::EPOLLIN, t));
            }
        }
    }

    /// Reads a joining client's request; answers it with a new port.
    fn pending_ready(&mut self, slot: usize, gen: u16) {
        let Ready::Done(p) = self.joins.ready(slot, gen) else {
            return;
        };
        let _ = self.ep.delete(p.fd.as_fd());
        let l = self.listener.as_ref().expect("listener");
        let taken = |i: usize| matches!(self.eps.get(i), Some(Some(_)));
        let Some(j) = l.answer(p.request(), p.fd.as_fd(), MAX_PORTS, taken) else {
            return;
        };
        let (id, descr) = (j.id as usize, j.descr);
        let owner = Owner::Client {
            data: j.data,
            ctl: p.fd,
            path: j.path,
        };
        match Ep::new(owner, &format!("{}:{id}", self.name), &descr) {
            Ok(e) => {
                if let Err(m) = self.add(id, e) {
                    crate::diag!("{m}");
                    self.remove(id);
                }
            }
            Err(m) => crate::diag!("{m}"),
        }
    }

    /// Attaches an endpoint at the lowest free port (from 1 on a switch or hub; a cable has
    /// its two).
    fn add_endpoint(&mut self, e: Endpoint) -> Result<u16, String> {
        let free = |eps: &Vec<Option<Ep>>, i: usize| !matches!(eps.get(i), Some(Some(_)));
        let first = if self.listener.is_some() { 1 } else { 0 };
        let last = if self.listener.is_some() { MAX_PORTS } else { 2 };
        let id = (first..last)
            .find(|&i| free(&self.eps, i))
            .ok_or_else(|| format!("{}: no free port", self.name))?;
        let ep = ep_of(e, &self.name)?;
        if let Err(m) = self.add(id, ep) {
            self.remove(id);
            return Err(m);
        }
        self.pump(id);
        Ok(id as u16)
    }

    /// The control connection of client `id` has something: EOF or an error frees its port.
    /// A vde:// link endpoint's switch closing it ends a cable (vde_plug exits then too) and
    /// detaches the endpoint from a switch or hub.
    fn ctl_ready(&mut self, id: usize) {
        let Some(Some(e)) = self.eps.get(id) else { return };
        let Some(ctl) = ctl_of(&e.owner) else { return };
        let mut b = [0u8; 256];
        match recv(ctl.as_raw_fd(), &mut b, MsgFlags::MSG_DONTWAIT) {
            Ok(n) if n > 0 => {}
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            _ => {
                if let Owner::Link(l) = &e.owner {
                    crate::diag!(
                        "{}: {}: the switch closed the control connection",
                        self.name,
                        l.vnl
                    );
                    if matches!(self.fwd, Fwd::Cable) {
                        self.shared.ended.store(true, Ordering::Release);
                    }
                }
                self.remove(id)
            }
        }
    }

    fn publish(&self) {
        for e in self.eps.iter().flatten() {
            e.publish();
        }
    }

    fn run(&mut self, cmds: &Receiver<Cmd>, wake: RawFd) {
        let mut events = [EpollEvent::empty(); 64];
        for id in 0..self.eps.len() {
            self.pump(id);
        }
        loop {
            self.publish();
            let n = match self.ep.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    crate::diag!("{}: node stopped: epoll_wait: {}", self.name, e.desc());
                    break;
                }
            };
            let mut stop = false;
            for ev in &events[..n] {
                let Some(t) = Token::decode(ev.data()) else {
                    continue;
                };
                match t.op {
                    Op::Wake => {
                        let mut b = [0u8; 8];
                        let _ = nix::unistd::read(fdb(wake), &mut b);
                        stop |= dispatch(cmds, self);
                    }
                    Op::Listen => self.accept(),
                    Op::PtpListen => self.ptp_accept(),
                    Op::Rx | Op::Tx => self.pump(t.ep()),
                    Op::Ctl => self.ctl_ready(t.ep()),
                    Op::Pending => self.pending_ready(t.ep(), t.gen),
                    _ => {}
                }
            }
            if stop {
                break;
            }
        }
        // PATH goes before the peer's connection does, so a peer looking for us again finds
        // nothing there (and listens itself) instead of a listener about to close.
        if let Some(h) = self.ptp.as_mut() {
            h.shutdown();
        }
        for id in 0..self.eps.len() {
            if let Some(e) = self.eps[id].as_mut() {
                e.flush_stream();
            }
        }
        self.publish();
    }
}

/// The control connection whose end means the endpoint is gone: a client's, or a vde:// link's.
fn ctl_of(o: &Owner) -> Option<std::os::fd::BorrowedFd<'_>> {
    match o {
        Owner::Client { ctl, .. } => Some(ctl.as_fd()),
        Owner::Link(l) => l.ctl.as_ref().map(|c| c.as_fd()),
        Owner::Tap(..) | Owner::Overlay => None,
    }
}

/// Cuts reads of a tap with a virtio-net header into the batch (`slab`, `lens`) until it is
/// full or the tap is empty; returns how many frames the batch holds.
fn fill_vnet(
    v: &mut VnetRx,
    rx: RawFd,
    slab: &mut [u8],
    lens: &mut [usize],
    c: &mut Counts,
    dead: &mut bool,
) -> usize {
    let mut n = 0;
    while n < BATCH {
        if v.len == 0 {
            match nix::unistd::read(fdb(rx), &mut v.big) {
                Ok(0) => {
                    *dead = true;
                    return n;
                }
                Ok(l) => {
                    v.len = l;
                    v.next = 0;
                }
                Err(e) => {
                    if classify_rx_error(e as i32) == RxFault::Fatal {
                        *dead = true;
                    }
                    return n;
                }
            }
        }
        let full = v.len == SUPER_READ;
        let read = &mut v.big[..v.len];
        match cut::judge(read, v.hdr, full, STRIDE) {
            Err(why) => {
                c.received += 1;
                c.add_drop(why, 1);
                v.len = 0;
            }
            Ok(Cut::Plain(len)) => {
                c.received += 1;
                v.len = 0;
                slab[n * STRIDE..n * STRIDE + len].copy_from_slice(&read[v.hdr..v.hdr + len]);
                lens[n] = len;
                n += 1;
            }
            Ok(Cut::Super(h, count)) => {
                if v.next == 0 {
                    c.super_frames += 1;
                    c.segments += count as u64;
                }
                while v.next < count && n < BATCH {
                    c.received += 1;
                    match cut::segment(
                        &h,
                        &read[v.hdr..],
                        v.next,
                        &mut slab[n * STRIDE..(n + 1) * STRIDE],
                    ) {
                        Ok(l) => {
                            lens[n] = l;
                            n += 1;
                        }
                        Err(why) => c.add_drop(why, 1),
                    }
                    v.next += 1;
                }
                if v.next == count {
                    v.len = 0;
                }
            }
        }
    }
    n
}

/// The endpoint for `e`. A link hosting a vxlan:// or vxvde:// network joins as that network
/// (vdeplug-fast's `vxvde:// switch:///tmp/sw`: the overlay is a port of the switch).
fn ep_of(mut e: Endpoint, node: &str) -> Result<Ep, String> {
    if let Endpoint::Link { name, link } = &mut e {
        if matches!(link.node, Some(Hosted::Overlay(_))) {
            if let Some(Hosted::Overlay(o)) = link.node.take() {
                return Ep::overlay(o, name);
            }
        }
    }
    let (owner, name, vnl) = owner_of(e, node);
    Ep::new(owner, &name, &vnl)
}

fn owner_of(e: Endpoint, node: &str) -> (Owner, String, String) {
    match e {
        Endpoint::Tap { name, fd, offload } => (Owner::Tap(fd, offload.vnet_hdr), name, node.to_string()),
        Endpoint::Link { name, link } => {
            let v = link.vnl.clone();
            (Owner::Link(link), name, v)
        }
    }
}

/// Runs a node until Stop. `ready` gets Ok once it is set up.
pub fn run(
    node: Node,
    cmds: Receiver<Cmd>,
    wake: Arc<OwnedFd>,
    shared: Arc<NodeShared>,
    ready: Sender<Result<String, String>>,
) {
    let setup = (|| -> Result<NodeWorker, String> {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("epoll_create1: {}", e.desc()))?;
        let mut ptp = None;
        let (fwd, listener, overlay) = match node.kind {
            NodeKind::Cable => (Fwd::Cable, None, None),
            NodeKind::Ptp(h) => {
                ptp = Some(h);
                (Fwd::Cable, None, None)
            }
            NodeKind::Overlay(o) => (Fwd::Cable, None, Some(o)),
            NodeKind::Net(l) => {
                let f = if l.spec.hub {
                    Forwarder::Hub
                } else {
                    Forwarder::Switch(crate::switch::MacTable::new(
                        l.spec.hashsize,
                        l.spec.expire,
                        l.spec.seed,
                    ))
                };
                (Fwd::Net(f), Some(l), None)
            }
        };
        let mut w = NodeWorker {
            name: node.name.clone(),
            ep,
            eps: Vec::new(),
            fwd,
            listener,
            joins: Joins::default(),
            slab: vec![0u8; BATCH * STRIDE].into_boxed_slice(),
            lens: [0; BATCH],
            dests: [0; BATCH],
            start: Instant::now(),
            shared,
            ptp,
        };
        w.ep.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, token(Op::Wake, 0)),
        )
        .map_err(|e| format!("epoll_ctl: {}", e.desc()))?;
        if let Some(l) = &w.listener {
            w.ep.add(
                l.ctl.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, token(Op::Listen, 0)),
            )
            .map_err(|e| format!("epoll_ctl: {}", e.desc()))?;
        }
        // A cable's endpoints are 0 and 1; a switch's own endpoints start at 1 (0 is the port
        // a client asks for with [0]).
        let first = if w.listener.is_some() { 1 } else { 0 };
        for (k, e) in node.endpoints.into_iter().enumerate() {
            let ep = ep_of(e, &node.name)?;
            w.add(first + k, ep)?;
        }
        // The overlay is the cable's other end: after the tap (or vdeplug-fast's other link).
        if let Some(o) = overlay {
            let name = if o.vxvde { "vxvde" } else { "vxlan" };
            let id = w.eps.len();
            let ep = Ep::overlay(o, name)?;
            w.add(id, ep)?;
        }
        w.ptp_start()?;
        Ok(w)
    })();
    match setup {
        Ok(mut w) => {
            super::confine();
            let _ = ready.send(Ok("node".into()));
            w.run(&cmds, wake.as_raw_fd());
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// The endpoint a ptp node's peer occupies (the tap, or vdeplug-fast's other plug, is 0).
const PTP_PEER: usize = 1;

/// The seqpacket ptp node: the listening socket, the one peer, hang-ups and reconnection.
impl NodeWorker {
    fn ptp_vnl(&self) -> String {
        self.ptp.as_ref().map(|h| h.vnl.clone()).unwrap_or_default()
    }

    /// Watches the listening socket, and attaches the peer the link was opened with.
    fn ptp_start(&mut self) -> Result<(), String> {
        let Some(h) = self.ptp.as_mut() else { return Ok(()) };
        let peer = h.take_peer();
        self.ptp_watch_listener()?;
        if let Some(fd) = peer {
            self.ptp_attach(fd)?;
        }
        Ok(())
    }

    fn ptp_watch_listener(&mut self) -> Result<(), String> {
        let Some(l) = self.ptp.as_ref().and_then(PtpHost::listener) else {
            return Ok(());
        };
        self.ep
            .add(l, EpollEvent::new(EpollFlags::EPOLLIN, token(Op::PtpListen, 0)))
            .map_err(|e| {
                format!(
                    "{}: cannot watch the ptp socket: epoll_ctl: {}",
                    self.name,
                    e.desc()
                )
            })
    }

    /// Makes a connected (and acked) peer the node's second endpoint.
    fn ptp_attach(&mut self, fd: OwnedFd) -> Result<(), String> {
        let vnl = self.ptp_vnl();
        let link = Link::single(&vnl, Framing::Datagram, fd);
        let ep = Ep::new(Owner::Link(Box::new(link)), &format!("{}:peer", self.name), &vnl)?;
        if let Err(m) = self.add(PTP_PEER, ep) {
            self.remove(PTP_PEER);
            return Err(m);
        }
        self.pump(PTP_PEER);
        Ok(())
    }

    /// True when the attached peer has hung up (its EOF may still wait behind frames).
    fn ptp_peer_hung_up(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let Some(Some(e)) = self.eps.get(PTP_PEER) else {
            return false;
        };
        let Some(rx) = e.rx else { return true };
        // POLLHUP and POLLERR are reported whatever is asked for.
        let mut p = [PollFd::new(fdb(rx), PollFlags::empty())];
        matches!(poll(&mut p, PollTimeout::ZERO), Ok(1))
            && p[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
    }

    /// The attached peer as a new connection finds it.
    fn ptp_peer(&self) -> ptp::Peer {
        if self.ptp_peer_hung_up() {
            ptp::Peer::HungUp
        } else if matches!(self.eps.get(PTP_PEER), Some(Some(_))) {
            ptp::Peer::Attached
        } else {
            ptp::Peer::Absent
        }
    }

    /// Accepts waiting peers: the first while none is attached gets ack 0 and carries the
    /// traffic; any other gets EISCONN and is closed, as master does (see [`ptp::arrival`]).
    fn ptp_accept(&mut self) {
        loop {
            let Some(h) = self.ptp.as_ref() else { return };
            let fd = match h.accept() {
                Ok(Some(fd)) => fd,
                Ok(None) => return,
                Err(e) => {
                    crate::diag!("{}: accepting a ptp peer: {}", self.name, e.desc());
                    return;
                }
            };
            let mut peer = self.ptp_peer();
            if ptp::arrival(peer, false) == ptp::Arrival::AfterHangup {
                // Whatever order epoll reported the two in: the hung-up one first.
                self.pump(PTP_PEER);
                peer = match self.eps.get(PTP_PEER) {
                    Some(Some(_)) => ptp::Peer::Attached,
                    _ => ptp::Peer::Absent,
                };
            }
            // The epoll node does not hold a connection (Hold): it refuses at once.
            if ptp::arrival(peer, false) != ptp::Arrival::Accept {
                PtpHost::ack(&fd, ptp::REFUSE_ACK);
                continue;
            }
            if !PtpHost::ack(&fd, 0) {
                continue;
            }
            if let Err(m) = self.ptp_attach(fd) {
                crate::diag!("{m}");
            }
        }
    }

    /// The peer hung up: a listener waits for the next; a connecting end connects again or
    /// becomes the listener (see [`ptp::after_hangup`]).
    fn ptp_hangup(&mut self) {
        self.remove(PTP_PEER);
        let Some(h) = self.ptp.as_mut() else { return };
        match ptp::after_hangup(h) {
            ptp::AfterHangup::Wait | ptp::AfterHangup::Down => {}
            ptp::AfterHangup::Attach(fd) => {
                if let Err(m) = self.ptp_attach(fd) {
                    crate::diag!("{m}");
                }
            }
            ptp::AfterHangup::Listen => {
                if let Err(m) = self.ptp_watch_listener() {
                    crate::diag!("{m}");
                }
            }
        }
    }
}
