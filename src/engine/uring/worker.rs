//! One io_uring worker: owns some ports, one ring, and per receiving descriptor one
//! provided-buffer ring. A frame received into a provided buffer is sent from that same buffer
//! on the other side and the buffer is handed back to the kernel when the send completes.
//!
//! Each direction owns its buffers, so a stalled output can exhaust only its own direction's
//! buffers: its multishot receive ends with ENOBUFS, the kernel queue behind it fills and
//! pushes back, and the other direction keeps going. A multi-port node (switch, hub) would
//! replace `Dir::queue` of the receiving direction by a forwarding decision that enqueues the
//! frame on the chosen directions' queues, with a per-buffer reference count.
//!
//! A tap opened with segmentation offload (`engine/offload.rs`) is read through a ring of its
//! own with buffers for whole super-frames: a plain frame is sent from its buffer as usual (its
//! checksum completed in place when partial), a super-frame is cut into private slots, and its
//! buffer goes back at once. Frames for such a tap pass a per-direction coalescer once per loop
//! turn (`gro_pass`): runs of one TCP flow become super-frames in buffers of the coalescer's
//! pool, everything else is written from its receive buffer behind a virtio-net header put in
//! the buffer's headroom, so nothing is copied but the merged payloads.
//!
//! A link that offered super-frames (`Link::superframes`, `wire::superframe`) reads every
//! datagram by its first bytes: a tagged one goes to the tap whole, its header already in the
//! buffer, after what the coalescer holds. While the peer takes them, a tap read that needs its
//! header (a super-frame, a partial checksum) is sent whole behind a tag put in the headroom;
//! the rest is cut as before. HELLO and OFFER (ptp) are 8-byte datagrams from static bytes.
//!
//! A datagram ptp first opener sends tagged datagrams only on its second socket (F2) once it
//! paired it with the second opener's (R2; `wire::superframe`): the port's [`Pair`], in the
//! tap-to-link direction, runs the exchange (runts of the direction's own bytes), and while
//! paired every frame of that direction goes on F2, in one order; any failed send there
//! unpairs at once. A second opener reads R2 beside its main socket: a second multishot
//! receive (`Op::RxPair`) into the same buffer group, whose frames are handled alike.

use super::ring::{Interval, Link, Ring, Sqe, Target};
use super::{is_retry, new_ring, BufRing, SetupError, UringTuning, MIN_BATCH, WAIT_BATCH};
use crate::engine::core::cut::{self, Cut};
use crate::engine::core::pair::{self, Pairing, Step};
use crate::engine::core::{
    admit, admit_stream, classify_rx_error, dispatch, send_verdict, Backpressure, Control, Op, RxFault,
    Token, Verdict,
};
use crate::engine::offload::{self, SUPER_READ};
use crate::engine::port::{send_buffer_full, DirPlan, PairPlan, Reconnector, TxPlan, MAX_FRAME};
use crate::engine::stats::{Counts, DropReason, PortStats, LINK_TO_TAP, TAP_TO_LINK};
use crate::engine::worker::{pin, Assigned, Cmd, WorkerCtx};
use crate::engine::EngineKind;
use crate::transport::Reconnect;
use crate::wire::gro::{self, Coalescer, Out};
use crate::wire::stream::{self, Decoder};
use crate::wire::superframe::{self, Runt, PREFIX, RUNT_MAX, TAG, TAG_LEN};
use crate::wire::vnet::{self, VnetHdr};
use crossbeam_channel::Sender;
use io_uring::cqueue;
use nix::sys::socket::{SockaddrLike, UnixAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buffers per receiving descriptor (a power of two). Bounds memory per direction.
const ENTRIES: u16 = 256;
/// Buffer size: larger than the largest frame, so that a longer one shows up as oversize
/// instead of being silently cut to size.
const BUF_SIZE: usize = 9472;
/// Sends in flight per sending descriptor, as one hard-linked chain: linked operations run in
/// order, which keeps the frame order; AF_UNIX datagram queues are short (max_dgram_qlen).
/// 64 holds the 46 segments of a 64 KiB TCP super-frame at MSS 1448 in one chain: with
/// offloading taps it moved TCP (vdens-fast <-> vdens-fast over ptp://, iperf3, 2 CPUs) at
/// 2.5-3.1 Gbit/s against 2.3-2.6 with 32, alternating runs.
const CHAIN: usize = 64;
/// Reassembly slots per stream link (frames copied out of the byte stream wait there for the
/// tap write).
const SLOTS: usize = 64;
/// Frames waiting to be sent, per direction: every one holds a buffer, a slot or a coalesced
/// super-frame buffer, so the queue never holds more than ENTRIES + SEG_SLOTS + SUPERS.
const QCAP: usize = 512;
const SLOT_FLAG: u16 = 0x8000;
/// Frame ids of the coalescer's super-frame buffers.
const SUPER_FLAG: u16 = 0x4000;
/// Frame ids of the negotiation runts (`wire::superframe`): HELLO, OFFER.
const RUNT_FLAG: u16 = 0x2000;
const RUNT_HELLO: u16 = RUNT_FLAG;
const RUNT_OFFER: u16 = RUNT_FLAG | 1;
/// The pairing runts (`Pair::runts`, in this order from index 0): PAIR or JOIN, PROBE or
/// ECHO (with a nonce).
const RUNT_PAIR: u16 = RUNT_FLAG | 2;
const RUNT_NONCE: u16 = RUNT_FLAG | 3;
/// Bytes kept free in front of every received frame (provided buffers and slots) for the
/// virtio-net header of a write to an offloading tap.
const HEADROOM: usize = 16;
/// Buffers of an offloading tap's receive ring, each for a whole super-frame.
const TAP_ENTRIES: u16 = 64;
/// Slots for the standard frames cut from an offloading tap's super-frames (a 64 KiB one at
/// MSS 1448 takes 46).
const SEG_SLOTS: usize = 256;
/// Coalesced super-frame buffers per offloading tap (written or waiting to be), besides the
/// one the coalescer fills.
const SUPERS: usize = 16;

/// Wait before re-sending datagrams refused with EAGAIN by a full receiver queue behind an
/// unconnected socket.
const RETRY_NS: u64 = 1_000_000;

/// user_data of an operation of direction `dir` (`slot`: a buffer id or chain slot).
#[inline]
fn token(op: Op, dir: usize, slot: usize) -> u64 {
    Token::new(op, dir).slot(slot as u16).encode()
}

#[derive(Clone, Copy, Default)]
struct Frame {
    /// Buffer id in the direction's ring, slot index | SLOT_FLAG, or super-frame buffer
    /// index | SUPER_FLAG.
    id: u16,
    /// VDE-wire frames it stands for (the segments of a coalesced super-frame; else 1).
    segs: u16,
    len: u32,
    /// VDE-wire bytes it stands for (see `offload::wire_count`).
    wire: u32,
    /// Where the bytes to send start, from the frame's place in its buffer: before it for a
    /// tag put in the headroom (a tagged datagram to send), after it for a tag and header
    /// received (a tagged datagram for the tap).
    skip: i16,
    /// The virtio-net header is in front of it already (a tagged datagram received): it goes
    /// to the tap as it is, past the coalescer.
    whole: bool,
    /// A tagged datagram (`wire::superframe`), sent or received.
    tagged: bool,
    /// Sent on the pair socket (F2) whatever the pairing's state (a PROBE).
    second: bool,
}

impl Frame {
    fn plain(id: u16, len: usize) -> Frame {
        Frame {
            id,
            segs: 1,
            len: len as u32,
            wire: len as u32,
            ..Frame::default()
        }
    }

    /// A negotiation runt (`RUNT_HELLO`, `RUNT_OFFER`, `RUNT_PAIR`, `RUNT_NONCE`) of `len`
    /// bytes: nothing to count.
    fn runt(id: u16, len: usize) -> Frame {
        Frame {
            id,
            len: len as u32,
            ..Frame::default()
        }
    }

    #[inline]
    fn is_runt(self) -> bool {
        self.id & RUNT_FLAG != 0 && self.id & (SLOT_FLAG | SUPER_FLAG) == 0
    }

    /// A tagged datagram of `len` bytes (`skip` as in [`Frame::skip`]).
    fn tagged(id: u16, len: usize, skip: isize, w: cut::Whole) -> Frame {
        Frame {
            id,
            segs: w.segs.min(u16::MAX as u64) as u16,
            len: len as u32,
            wire: w.wire.min(u32::MAX as u64) as u32,
            skip: skip as i16,
            whole: true,
            tagged: true,
            second: false,
        }
    }
}

/// Fixed-capacity FIFO; never allocates after creation.
struct Fifo<T: Copy + Default> {
    buf: Box<[T]>,
    head: usize,
    len: usize,
}

impl<T: Copy + Default> Fifo<T> {
    fn new(cap: usize) -> Self {
        Fifo {
            buf: vec![T::default(); cap].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }
    #[inline]
    fn push(&mut self, v: T) {
        assert!(self.len < self.buf.len(), "fifo overflow");
        let i = (self.head + self.len) % self.buf.len();
        self.buf[i] = v;
        self.len += 1;
    }
    #[inline]
    fn push_front(&mut self, v: T) {
        assert!(self.len < self.buf.len(), "fifo overflow");
        self.head = (self.head + self.buf.len() - 1) % self.buf.len();
        self.buf[self.head] = v;
        self.len += 1;
    }
    #[inline]
    fn front(&self) -> Option<T> {
        (self.len > 0).then(|| self.buf[self.head])
    }
    #[inline]
    fn pop(&mut self) -> Option<T> {
        let v = self.front()?;
        self.head = (self.head + 1) % self.buf.len();
        self.len -= 1;
        Some(v)
    }
}

struct StreamRx {
    dec: Decoder,
    /// Received byte buffers not yet fully decoded: (bid, len).
    raw: Fifo<(u16, u32)>,
    off: usize,
    cur: Option<u16>,
}

/// Reads of an offloading tap not yet fully cut into slots.
struct VnetRx {
    hdr: usize,
    /// (bid, len) of reads in arrival order.
    held: Fifo<(u16, u32)>,
    /// Next segment of the first one to cut.
    next: usize,
}

struct Rx {
    target: Target,
    socket: bool,
    eof_on_zero: bool,
    ring: BufRing,
    /// Offset of the frame in a received buffer's data (the virtio-net header of a tap read).
    data_off: usize,
    /// Frames cross whole, virtio-net header (this many bytes) and all: both ends are taps
    /// with the same header (a tap:// link); 0 otherwise.
    whole_hdr: usize,
    /// Datagrams may come tagged (`wire::superframe`): the link offered super-frames.
    tags: bool,
    /// Reads of the offloading tap that need a virtio-net header cross the link tagged,
    /// while this says the peer takes them (`Link::superframes`); the rest are cut.
    superframes: Option<Arc<AtomicBool>>,
    /// When this (ptp second opener) last asked its peer whether it takes them.
    hello_at: Option<Instant>,
    /// Tagged datagrams may be waiting in the queue (set when one is queued, cleared when
    /// the queue is purged of them).
    tagged_queued: bool,
    /// A ptp second opener's R2, read into the same buffers (`Op::RxPair`).
    second: Option<RxSecond>,
    armed: bool,
    paused: bool,
    dead: bool,
    stream: Option<StreamRx>,
    vnet: Option<VnetRx>,
    /// Free private slots (stream reassembly, or segments cut from super-frames).
    slots_free: Vec<u16>,
}

/// A second receive of a direction (a ptp second opener's R2).
struct RxSecond {
    target: Target,
    armed: bool,
    dead: bool,
}

/// A datagram ptp link's second socket and its pairing, in the tap-to-link direction.
struct Pair {
    target: Target,
    raw: RawFd,
    /// Where the peer's pair socket is bound.
    peer: UnixAddr,
    /// F2 (first opener: sends on it) or R2 (second opener: reads it, `RxSecond`).
    first: bool,
    /// The first opener's pairing (`core::pair`).
    pairing: Pairing,
    /// The bytes of `RUNT_PAIR` (PAIR or JOIN) and `RUNT_NONCE` (PROBE or ECHO), and their
    /// lengths. Boxed with the pair: a send may point into them.
    runts: [[u8; RUNT_MAX]; 2],
    lens: [usize; 2],
}

impl Pair {
    fn new(p: &PairPlan, target: Target) -> Pair {
        let mut runts = [[0u8; RUNT_MAX]; 2];
        let own = if p.first { Runt::Pair } else { Runt::Join };
        let n = own.write(&mut runts[0]);
        Pair {
            target,
            raw: p.fd,
            peer: p.peer,
            first: p.first,
            pairing: Pairing::fresh(),
            runts,
            lens: [n, 0],
        }
    }

    /// The frame of runt `id` (`RUNT_PAIR`, `RUNT_NONCE`).
    fn frame(&self, id: u16) -> Frame {
        Frame::runt(id, self.lens[(id & 1) as usize])
    }

    fn paired(&self) -> bool {
        self.first && self.pairing.paired()
    }
}

/// A coalesced super-frame buffer: HEADROOM bytes, then what the coalescer builds. The heap
/// block never moves, so a write may point into it while the box is held in `Gro::held`.
struct Sbuf {
    idx: u16,
    mem: Box<[u8]>,
}

impl AsRef<[u8]> for Sbuf {
    fn as_ref(&self) -> &[u8] {
        &self.mem[HEADROOM..]
    }
}

impl AsMut<[u8]> for Sbuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.mem[HEADROOM..]
    }
}

/// Coalescing of the frames for an offloading tap.
struct Gro {
    hdr: usize,
    co: Coalescer<Sbuf>,
    free: Vec<Sbuf>,
    /// Buffers queued or being written, by index.
    held: Vec<Option<Sbuf>>,
    /// Frames received, waiting for the coalescer.
    inq: Fifo<Frame>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TxKind {
    Discard,
    Write,
    SendTo,
    Stream,
}

struct ChainSlot {
    frame: Frame,
    /// Not sent, to be sent again (EAGAIN, or cancelled by an earlier failure in the chain).
    retry: bool,
    /// Sent on the pair socket (F2), in this pairing (`Pair::round`).
    via_pair: bool,
    round: u32,
    iov: libc::iovec,
    msg: libc::msghdr,
}

struct Tx {
    kind: TxKind,
    target: Target,
    /// Finding the destination again when its socket was replaced (ptp second opener).
    reconnect: Reconnector,
    /// Virtio-net header bytes in front of every frame written (an offloading tap; else 0).
    vnet_hdr: usize,
    addr: Box<Option<UnixAddr>>,
    inflight: usize,
    /// A send of the current chain met EAGAIN.
    again: bool,
    /// ... on the pair socket (F2): its send buffer is the one to wait for.
    again_pair: bool,
    /// A ptp link's second socket and pairing (`wire::superframe`).
    pair: Option<Box<Pair>>,
    /// The last chain met EAGAIN with the socket writable and goes again at once; a second
    /// time waits for the timer.
    retried: bool,
    /// Waiting out a full receiver queue: the next chain is a single frame, so that each retry
    /// costs one send, not a chain of sends cancelled after the first.
    probe: bool,
    /// The descriptor itself (`target` may be its fixed-file index).
    raw: RawFd,
    /// A retry timer or a POLLOUT wait is armed; no new chain until it completes.
    waiting: bool,
    chain: Box<[ChainSlot]>,
    chain_len: usize,
    /// Stream writes: [hdr0, frame0, hdr1, frame1, ...], headers, progress.
    iov: Box<[libc::iovec]>,
    hdr: Box<[[u8; 2]]>,
    iov_start: usize,
    total: usize,
    done: usize,
}

struct Dir {
    rx: Option<Rx>,
    tx: Tx,
    queue: Fifo<Frame>,
    gro: Option<Gro>,
    counts: Counts,
    stats: Arc<PortStats>,
    d: usize,
    label: String,
}

/// Field order is drop order: the ring goes first (after every operation was reaped), then the
/// buffer memory, then the ports' descriptors.
struct Worker {
    ring: Ring,
    dirs: Vec<Dir>,
    wake_buf: Box<u64>,
    wake: Target,
    retry_ts: Box<Interval>,
    cqes: Vec<(u64, i32, u32)>,
    outstanding: usize,
    multishot: bool,
    pbuf: bool,
    /// Batching wait in microseconds, when the kernel supports it.
    batch_wait: Option<u32>,
    /// Busy polling: spin this long for a completion before sleeping.
    busy: Option<Duration>,
    stopping: bool,
    _ports: Vec<Assigned>,
}

fn iov_empty() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn msg_empty() -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is a valid empty header (null pointers, 0 lengths).
    unsafe { std::mem::zeroed() }
}

impl Tx {
    fn new(kind: TxKind, target: Target, addr: Option<UnixAddr>) -> Tx {
        let chain = (0..CHAIN)
            .map(|_| ChainSlot {
                frame: Frame::default(),
                retry: false,
                via_pair: false,
                round: 0,
                iov: iov_empty(),
                msg: msg_empty(),
            })
            .collect();
        Tx {
            kind,
            target,
            vnet_hdr: 0,
            addr: Box::new(addr),
            inflight: 0,
            again: false,
            again_pair: false,
            pair: None,
            retried: false,
            probe: false,
            raw: -1,
            reconnect: Reconnector::new(Reconnect::Never),
            waiting: false,
            chain,
            chain_len: 0,
            iov: vec![iov_empty(); 2 * CHAIN].into_boxed_slice(),
            hdr: vec![[0u8; 2]; CHAIN].into_boxed_slice(),
            iov_start: 0,
            total: 0,
            done: 0,
        }
    }
}

/// Runs a worker on the driver `kind` names until Stop. Reports setup success or failure on
/// `ready` first. When there is no memory for an io_uring ring or its buffers, the worker runs
/// on the epoll driver instead, and counts itself in `fell_back` before it reports (the
/// engine says so once).
pub fn run(
    mut ctx: WorkerCtx,
    tuning: UringTuning,
    kind: EngineKind,
    fell_back: &AtomicUsize,
    ready: Sender<crate::engine::worker::Ready>,
) {
    // Pin before allocating: the buffers are then populated by (and local to) this core.
    pin(ctx.cpu);
    let ports = std::mem::take(&mut ctx.ports);
    let built = match Worker::new(ports, &ctx.wake, tuning, kind) {
        Err((e, ports)) if e.memory && kind == EngineKind::Uring => {
            fell_back.fetch_add(1, AtomicOrdering::Relaxed);
            Worker::new(ports, &ctx.wake, tuning, EngineKind::Poll)
        }
        r => r,
    };
    let mut w = match built {
        Ok((w, mode)) => {
            crate::engine::confine();
            let _ = ready.send(Ok(mode));
            w
        }
        Err((e, _)) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    w.run(&ctx.cmds);
}

impl Control for Worker {
    fn publish(&mut self) {
        self.publish_stats();
    }
}

impl Worker {
    /// The worker for `ports`, or why not (with the ports, untouched).
    fn new(
        ports: Vec<Assigned>,
        wake: &Arc<std::os::fd::OwnedFd>,
        tuning: UringTuning,
        kind: EngineKind,
    ) -> Result<(Worker, &'static str), (SetupError, Vec<Assigned>)> {
        match Self::build(&ports, wake, tuning, kind) {
            Ok((mut w, mode)) => {
                w._ports = ports;
                Ok((w, mode))
            }
            Err(e) => Err((e, ports)),
        }
    }

    fn build(
        ports: &[Assigned],
        wake: &Arc<std::os::fd::OwnedFd>,
        tuning: UringTuning,
        kind: EngineKind,
    ) -> Result<(Worker, &'static str), SetupError> {
        let nrx = ports
            .iter()
            .map(|a| a.plan.iter().filter(|d| d.rx.is_some()).count())
            .sum::<usize>();
        let cq = ((nrx * ENTRIES as usize + 2 * ports.len() * CHAIN) * 2)
            .next_power_of_two()
            .max(1024) as u32;
        let (mut ring, mode) = new_ring(kind, 1024, cq, &tuning)?;
        // Fixed files: index by registration order.
        let mut fds: Vec<RawFd> = vec![wake.as_raw_fd()];
        let mut fixed = |fd: RawFd| -> Target {
            if !tuning.fixed_files {
                return Target::Fd(fd);
            }
            match fds.iter().position(|&f| f == fd) {
                Some(i) => Target::Fixed(i as u32),
                None => {
                    fds.push(fd);
                    Target::Fixed(fds.len() as u32 - 1)
                }
            }
        };
        let wake_t = fixed(wake.as_raw_fd());
        let mut dirs = Vec::new();
        let mut bgid = 0u16;
        for a in ports {
            for (d, plan) in a.plan.iter().enumerate() {
                dirs.push(Self::dir(
                    a,
                    d,
                    plan,
                    &mut bgid,
                    &mut fixed,
                    tuning.provided_buffers.then_some(&mut ring),
                )?);
            }
        }
        // Only with multishot receives: with one single-shot receive per descriptor a turn
        // never has a batch to wait for.
        let batch_wait =
            (tuning.batch_wait_us > 0 && tuning.multishot && tuning.provided_buffers && ring.min_timeout())
                .then_some(tuning.batch_wait_us);
        if tuning.fixed_files {
            ring.register_files(&fds)
                .map_err(|e| SetupError::io("IORING_REGISTER_FILES", &e))?;
        }
        Ok((
            Worker {
                ring,
                dirs,
                wake_buf: Box::new(0),
                retry_ts: Box::new(Interval::new(Duration::from_nanos(RETRY_NS))),
                wake: wake_t,
                cqes: Vec::with_capacity(cq as usize),
                outstanding: 0,
                multishot: tuning.multishot && tuning.provided_buffers,
                pbuf: tuning.provided_buffers,
                batch_wait,
                busy: (tuning.busy_poll_us > 0).then(|| Duration::from_micros(tuning.busy_poll_us.into())),
                stopping: false,
                _ports: Vec::new(),
            },
            mode,
        ))
    }

    fn dir(
        a: &Assigned,
        d: usize,
        plan: &DirPlan,
        bgid: &mut u16,
        fixed: &mut impl FnMut(RawFd) -> Target,
        ring: Option<&mut Ring>,
    ) -> Result<Dir, SetupError> {
        let label = format!(
            "{} ({}) {}",
            a.port.name,
            a.port.link.vnl,
            crate::engine::stats::DIR_NAMES[d]
        );
        let off = a.port.offload;
        // Tap to tap (tap:// with offload): nothing is cut or coalesced.
        let whole = off.enabled() && a.port.link.offload.vnet_hdr == off.vnet_hdr;
        let vnet_rx = off.enabled() && d == TAP_TO_LINK && !whole;
        // A link that offered super-frames, where they can pass (decided once, in the stats).
        let sf = a.stats.superframes.clone();
        let tags = sf.is_some() && d == LINK_TO_TAP;
        let rx = match &plan.rx {
            None => None,
            Some(r) => {
                let (entries, size, nslots) = if vnet_rx {
                    (TAP_ENTRIES, HEADROOM + SUPER_READ, SEG_SLOTS)
                } else if whole {
                    (TAP_ENTRIES, HEADROOM + SUPER_READ, 0)
                } else if tags {
                    (TAP_ENTRIES, HEADROOM + TAG_LEN + SUPER_READ, 0)
                } else if r.stream {
                    (ENTRIES, BUF_SIZE, SLOTS)
                } else {
                    (ENTRIES, BUF_SIZE, 0)
                };
                let mut br = BufRing::new(entries, size, nslots * BUF_SIZE, HEADROOM)
                    .map_err(|e| SetupError::io(&format!("{label}: buffer memory"), &e))?;
                if let Some(ring) = ring {
                    ring.register_buf_ring(&mut br, *bgid)
                        .map_err(|e| SetupError::io(&format!("{label}: IORING_REGISTER_PBUF_RING"), &e))?;
                }
                *bgid += 1;
                Some(Rx {
                    target: fixed(r.fd),
                    socket: r.socket,
                    eof_on_zero: r.eof_on_zero,
                    ring: br,
                    data_off: if vnet_rx { off.vnet_hdr } else { 0 },
                    whole_hdr: if whole { off.vnet_hdr } else { 0 },
                    tags,
                    superframes: sf.clone().filter(|_| vnet_rx),
                    hello_at: None,
                    tagged_queued: false,
                    second: plan.pair.filter(|p| tags && !p.first).map(|p| RxSecond {
                        target: fixed(p.fd),
                        armed: false,
                        dead: false,
                    }),
                    armed: false,
                    paused: false,
                    dead: false,
                    stream: r.stream.then(|| StreamRx {
                        dec: Decoder::new(),
                        raw: Fifo::new(ENTRIES as usize),
                        off: 0,
                        cur: None,
                    }),
                    vnet: vnet_rx.then(|| VnetRx {
                        hdr: off.vnet_hdr,
                        held: Fifo::new(TAP_ENTRIES as usize),
                        next: 0,
                    }),
                    slots_free: (0..nslots as u16).rev().collect(),
                })
            }
        };
        let mut tx = match &plan.tx {
            TxPlan::Discard => Tx::new(TxKind::Discard, Target::Fd(-1), None),
            TxPlan::Write { fd, .. } => {
                let mut t = Tx::new(TxKind::Write, fixed(*fd), None);
                t.raw = *fd;
                t
            }
            TxPlan::SendTo { fd, addr } => {
                let mut t = Tx::new(TxKind::SendTo, fixed(*fd), Some(*addr));
                t.raw = *fd;
                t
            }
            TxPlan::Stream { fd } => Tx::new(TxKind::Stream, fixed(*fd), None),
        };
        tx.reconnect = Reconnector::new(plan.reconnect.clone());
        if let Some(p) = plan.pair.filter(|_| sf.is_some() && d == TAP_TO_LINK && vnet_rx) {
            let t = fixed(p.fd);
            tx.pair = Some(Box::new(Pair::new(&p, t)));
        }
        let gro = (off.enabled() && d == LINK_TO_TAP && rx.is_some() && !whole).then(|| {
            tx.vnet_hdr = off.vnet_hdr;
            let mut all: Vec<Sbuf> = (0..=SUPERS as u16)
                .map(|idx| Sbuf {
                    idx,
                    mem: vec![0u8; HEADROOM + gro::BUF_LEN].into_boxed_slice(),
                })
                .collect();
            let first = all.pop().expect("SUPERS + 1 buffers");
            Gro {
                hdr: off.vnet_hdr,
                co: Coalescer::new(first),
                free: all,
                held: (0..=SUPERS).map(|_| None).collect(),
                inq: Fifo::new(QCAP),
            }
        });
        Ok(Dir {
            rx,
            tx,
            gro,
            queue: Fifo::new(QCAP),
            counts: Counts::default(),
            stats: a.stats.clone(),
            d,
            label,
        })
    }

    fn push(&mut self, op: &super::ring::Op) {
        // SAFETY: operations reference only the worker's buffer rings, its boxed chain slots,
        // iovecs, headers, addresses, retry interval and wake buffer, all kept until every
        // operation is reaped (see `shutdown`).
        if let Err(e) = unsafe { self.ring.push(op) } {
            crate::diag!("io_uring submit failed: {}", crate::sys::err_text(&e));
        }
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let e = Sqe::Read {
            fd: self.wake,
            buf: buf.cast(),
            len: 8,
            socket: false,
        }
        .op(token(Op::Wake, 0, 0));
        self.push(&e);
        self.outstanding += 1;
    }

    fn arm_rx(&mut self, di: usize) {
        let (multishot, pbuf) = (self.multishot, self.pbuf);
        let Some(rx) = self.dirs[di].rx.as_mut() else {
            return;
        };
        let socket = (rx.socket && rx.stream.is_none(), rx.socket);
        let Some((e, idx)) = receive_sqe(&mut rx.ring, rx.target, socket, pbuf, multishot) else {
            rx.paused = true;
            return;
        };
        rx.armed = true;
        rx.paused = false;
        let e = e.op(token(Op::Rx, di, idx));
        self.push(&e);
        self.outstanding += 1;
    }

    /// Arms the second receive of direction `di` (R2), into the direction's buffers.
    fn arm_second(&mut self, di: usize) {
        let (multishot, pbuf) = (self.multishot, self.pbuf);
        let Some(rx) = self.dirs[di].rx.as_mut() else {
            return;
        };
        let Some(target) = rx.second.as_ref().map(|s| s.target) else {
            return;
        };
        let Some((e, idx)) = receive_sqe(&mut rx.ring, target, (true, true), pbuf, multishot) else {
            rx.paused = true;
            return;
        };
        if let Some(sec) = rx.second.as_mut() {
            sec.armed = true;
        }
        let e = e.op(token(Op::RxPair, di, idx));
        self.push(&e);
        self.outstanding += 1;
    }

    fn run(&mut self, cmds: &crossbeam_channel::Receiver<Cmd>) {
        self.arm_wake();
        for di in 0..self.dirs.len() {
            self.arm_rx(di);
            self.arm_second(di);
        }
        // Completions to wait for: as many as the last turn found (up to WAIT_BATCH), and at
        // least the sends in flight. Asking for more than can come (the sender blocked on a
        // full queue that only this worker drains) would just sit out the whole batching wait
        // every turn. Turns of fewer than MIN_BATCH completions (a lone exchange, not a
        // stream) wait for the first one only.
        //
        // The sends in flight: a send chain's links after the first are issued from task
        // work, which with DEFER_TASKRUN runs only inside io_uring_enter. Returning once the
        // last turn's count had come (often mostly receives) left the rest of a chain waiting
        // for the next turn, and no new chain starts before the last one is done. Waiting for
        // the chain too (still within the batching wait's bound), measured with two
        // vdens-fast over ptp://, iperf3, 2 CPUs, two sets of 4-5 alternating rounds, medians
        // against before: TCP 4.65 / 4.26 Gbit/s against 3.48 / 3.33 (poll engine 4.48 /
        // 3.83), 4 streams 3.95 against 3.36, UDP 1400 B 133 against 113 kpps; UDP 64 B
        // within the noise (161 against 145, 142 against 154 kpps).
        let mut want = 1;
        loop {
            let r = match (self.busy, self.batch_wait) {
                // Busy polling takes what comes first, without a batching wait.
                (Some(budget), _) => self.ring.busy_wait(budget),
                (None, Some(us)) if want >= MIN_BATCH => self.ring.submit_and_wait_batch(want, us),
                _ => self.ring.submit_and_wait(1, None),
            };
            match r {
                Ok(_) => {}
                // ETIME: the batching wait ended with what had arrived.
                Err(e) if is_retry(&e) || e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) => {
                    crate::diag!(
                        "io_uring worker stopped: io_uring_enter: {}",
                        crate::sys::err_text(&e)
                    );
                    break;
                }
            }
            if self.drain(cmds) {
                break;
            }
            let seen = self.cqes.len();
            self.turn_end();
            want = match seen {
                // The batching wait ran out with nothing: a send chain still in flight is
                // blocked on its peer, so sleep until something comes.
                0 => 1,
                n => n.min(WAIT_BATCH).max(self.sends_in_flight()),
            };
        }
        self.shutdown();
    }

    /// Sends (chain links or stream writes) submitted or about to be, not yet completed.
    fn sends_in_flight(&self) -> usize {
        self.dirs.iter().map(|d| d.tx.inflight).sum()
    }

    /// Handles every completion ready; true when Stop arrived.
    fn drain(&mut self, cmds: &crossbeam_channel::Receiver<Cmd>) -> bool {
        self.cqes.clear();
        self.ring.completions(&mut self.cqes);
        let mut stop = false;
        for i in 0..self.cqes.len() {
            let (ud, res, flags) = self.cqes[i];
            let Some(t) = Token::decode(ud) else { continue };
            let di = t.ep();
            match t.op {
                Op::Rx => self.on_rx(di, t.slot, res, flags, false),
                Op::RxPair => self.on_rx(di, t.slot, res, flags, true),
                Op::Tx => self.on_tx(di, t.slot as usize, res),
                Op::TxWait => {
                    self.outstanding -= 1;
                    self.dirs[di].tx.waiting = false;
                }
                Op::Wake => {
                    self.outstanding -= 1;
                    if !self.stopping {
                        stop |= self.on_wake(cmds);
                    }
                }
                _ => {}
            }
        }
        stop
    }

    fn on_wake(&mut self, cmds: &crossbeam_channel::Receiver<Cmd>) -> bool {
        let stop = dispatch(cmds, self);
        if !stop {
            self.arm_wake();
        }
        stop
    }

    /// A receive of direction `di` completed: its main one, or its `second` (R2).
    fn on_rx(&mut self, di: usize, idx: u16, res: i32, flags: u32, second: bool) {
        let more = cqueue::more(flags);
        if !more {
            self.outstanding -= 1;
        }
        let dir = &mut self.dirs[di];
        let Some(rx) = dir.rx.as_mut() else {
            return;
        };
        if !more {
            match rx.second.as_mut() {
                Some(s) if second => s.armed = false,
                _ => rx.armed = false,
            }
        }
        let bid = if self.pbuf {
            let b = cqueue::buffer_select(flags);
            if b.is_some() {
                rx.ring.taken();
            }
            b
        } else {
            Some(idx)
        };
        if let Some(bid) = bid {
            if res <= 0 || self.stopping {
                rx.ring.push(bid);
            }
        }
        if self.stopping {
            return;
        }
        if res < 0 && second {
            match classify_rx_error(-res) {
                RxFault::Starved => rx.paused = true,
                // ECONNRESET: F2 disconnected from R2 with datagrams queued at F2 (a new
                // pairing); R2 reads on.
                RxFault::Fatal if -res != libc::ECONNRESET => {
                    if let Some(s) = rx.second.as_mut() {
                        s.dead = true;
                    }
                    crate::diag!(
                        "{}: receive on the pair socket failed: {}; it stops",
                        dir.label,
                        nix::errno::Errno::from_raw(-res).desc()
                    );
                }
                _ => {}
            }
            return;
        }
        if res < 0 {
            match classify_rx_error(-res) {
                RxFault::Starved => rx.paused = true,
                // Not armed any more (the multishot ended with the error): turn_end re-arms.
                RxFault::Again | RxFault::Transient => {}
                RxFault::Fatal => {
                    let e = -res;
                    rx.dead = true;
                    crate::diag!(
                        "{}: receive failed: {}; this direction stops",
                        dir.label,
                        nix::errno::Errno::from_raw(e).desc()
                    );
                }
            }
            return;
        }
        if res == 0 {
            if rx.eof_on_zero {
                // End of file. A multishot recv on a seqpacket socket keeps posting empty
                // completions after the peer closed (6.18): cancel it.
                if !rx.dead {
                    crate::diag!("{}: end of file; this direction stops", dir.label);
                }
                rx.dead = true;
                if more {
                    let e = Sqe::Cancel {
                        user_data: token(Op::Rx, di, 0),
                    }
                    .op(token(Op::Cancel, 0, 0));
                    self.push(&e);
                }
            } else if rx.stream.is_none() {
                // An empty datagram: it comes without a buffer from a multishot receive.
                dir.counts.received += 1;
                dir.counts.add_drop(DropReason::Framing, 1);
            }
            return;
        }
        let Some(bid) = bid else {
            return;
        };
        let len = res as usize;
        if let Some(s) = rx.stream.as_mut() {
            s.raw.push((bid, len as u32));
            return;
        }
        if rx.whole_hdr > 0 && dir.tx.kind != TxKind::Discard {
            let full = len == rx.ring.data_len();
            match cut::judge_whole(rx.ring.data(bid, 0, len), rx.whole_hdr, full) {
                Ok(w) => {
                    dir.counts.received += w.segs;
                    Self::enqueue(
                        dir,
                        Frame {
                            id: bid,
                            segs: w.segs.min(u16::MAX as u64) as u16,
                            len: len as u32,
                            wire: w.wire.min(u32::MAX as u64) as u32,
                            ..Frame::default()
                        },
                    );
                }
                Err(why) => {
                    dir.counts.received += 1;
                    dir.counts.add_drop(why, 1);
                    rx.ring.push(bid);
                }
            }
            return;
        }
        if rx.tags && len <= RUNT_MAX {
            if let Some(r) = Runt::parse(rx.ring.data(bid, 0, len)) {
                rx.ring.push(bid);
                self.on_runt(di ^ 1, r, second);
                return;
            }
        }
        if rx.tags && dir.tx.kind != TxKind::Discard && superframe::is_tagged(rx.ring.data(bid, 0, len)) {
            // Tag and header in front: the frame goes to the tap whole, behind its header.
            let full = len == rx.ring.data_len();
            match cut::judge_whole(rx.ring.data(bid, TAG_LEN, len), vnet::LEN, full) {
                Ok(w) => {
                    // Counted in wire_super once written to the tap (count_sent).
                    dir.counts.received += w.segs;
                    Self::enqueue(dir, Frame::tagged(bid, len - PREFIX, PREFIX as isize, w));
                }
                Err(why) => {
                    dir.counts.received += 1;
                    dir.counts.add_drop(why, 1);
                    rx.ring.push(bid);
                }
            }
            return;
        }
        if dir.tx.kind != TxKind::Discard {
            if let Some(v) = rx.vnet.as_mut() {
                // Counted as the frames it makes, in `cut_tap_reads`.
                v.held.push((bid, len as u32));
                return;
            }
        }
        dir.counts.received += 1;
        if let Err(why) = admit(len) {
            dir.counts.add_drop(why, 1);
            rx.ring.push(bid);
        } else if dir.tx.kind == TxKind::Discard {
            dir.counts.add_drop(DropReason::NoLink, 1);
            rx.ring.push(bid);
        } else {
            Self::enqueue(dir, Frame::plain(bid, len));
        }
    }

    /// A negotiation runt arrived for the port whose sending direction is `out`, on the
    /// direction's main socket or (`second`) on its pair socket R2 (`wire::superframe`):
    /// - a HELLO is answered with an OFFER, and a first opener with a pair socket starts
    ///   pairing (PAIR);
    /// - an OFFER lets a ptp second opener send tagged datagrams (its socket is connected:
    ///   the OFFER came from the very socket it sends to);
    /// - a PAIR (main socket of a second opener: from its first opener's socket) connects R2
    ///   to F2 (`PATH+fast1`), then JOIN says so;
    /// - a JOIN connects F2 to R2 (`PATH+fast2`) and sends a PROBE on F2;
    /// - a PROBE read on R2 is echoed (ECHO) on the main socket;
    /// - an ECHO of the latest probe's nonce pairs: F2's peer is the second opener's R2.
    fn on_runt(&mut self, out: usize, r: Runt, second: bool) {
        let dir = &mut self.dirs[out];
        let role = dir.tx.pair.as_ref().map(|p| p.first);
        let room = dir.tx.kind != TxKind::Discard && dir.queue.len < QCAP;
        match pair::step(r, second, role) {
            Step::Offer { pair } => {
                if room {
                    dir.queue.push(Frame::runt(RUNT_OFFER, superframe::RUNT_LEN));
                }
                if pair {
                    Self::ask_pair(dir);
                }
            }
            Step::Offered => {
                if let Some(sf) = dir.rx.as_ref().and_then(|r| r.superframes.as_ref()) {
                    if dir.tx.reconnect.active() {
                        sf.store(true, AtomicOrdering::Release);
                    }
                }
            }
            Step::ConnectR2 if room => {
                let p = dir.tx.pair.as_ref().expect("role");
                if nix::sys::socket::connect(p.raw, &p.peer).is_ok() {
                    let f = p.frame(RUNT_PAIR);
                    dir.queue.push(f);
                }
            }
            Step::ConnectF2 if room => {
                let p = dir.tx.pair.as_mut().expect("role");
                if !p.pairing.joinable() || nix::sys::socket::connect(p.raw, &p.peer).is_err() {
                    return;
                }
                let nonce = p.pairing.joined();
                p.lens[1] = Runt::Probe(nonce).write(&mut p.runts[1]);
                let mut f = p.frame(RUNT_NONCE);
                f.second = true;
                dir.queue.push(f);
            }
            Step::Echo(nonce) if room => {
                let p = dir.tx.pair.as_mut().expect("role");
                p.lens[1] = Runt::Echo(nonce).write(&mut p.runts[1]);
                let f = p.frame(RUNT_NONCE);
                dir.queue.push(f);
            }
            Step::Echoed(nonce) => {
                let p = dir.tx.pair.as_mut().expect("role");
                if p.pairing.echo(nonce) {
                    if let Some(sf) = dir.rx.as_ref().and_then(|r| r.superframes.as_ref()) {
                        sf.store(true, AtomicOrdering::Release);
                    }
                }
            }
            _ => {}
        }
    }

    /// A vdens-fast second opener said HELLO to this first opener: pairing starts over.
    /// F2 is disconnected (so the new R2 may connect to it) and PAIR sent by path.
    fn ask_pair(dir: &mut Dir) {
        Self::unpair(dir);
        let Some(p) = dir.tx.pair.as_mut() else { return };
        // SAFETY: `raw` is the pair socket of one of this worker's ports, which it holds
        // (`_ports`) until it ends.
        let _ = crate::sys::unix_dgram_disconnect(unsafe { crate::sys::borrow_fd(p.raw) });
        p.pairing.hello();
        Self::send_pair(dir);
    }

    /// Queues PAIR (first opener, asked, not paired yet) when `core::pair` says it is due.
    fn send_pair(dir: &mut Dir) {
        let Some(p) = dir.tx.pair.as_mut() else { return };
        if !p.first || dir.queue.len >= QCAP || !p.pairing.pair_due(Instant::now()) {
            return;
        }
        let f = p.frame(RUNT_PAIR);
        dir.queue.push(f);
    }

    /// A first opener stops sending on F2 (its peer is gone, or a new one asked): standard
    /// frames by path from now on; tagged ones still queued are dropped.
    fn unpair(dir: &mut Dir) {
        let Some(p) = dir.tx.pair.as_mut().filter(|p| p.first) else {
            return;
        };
        p.pairing.unpair();
        if let Some(sf) = dir.rx.as_ref().and_then(|r| r.superframes.as_ref()) {
            sf.store(false, AtomicOrdering::Release);
        }
        Self::purge_tagged(dir);
    }

    /// Whether the direction may send tagged datagrams now.
    fn tags_allowed(dir: &Dir) -> bool {
        dir.rx
            .as_ref()
            .and_then(|r| r.superframes.as_ref())
            .is_some_and(|s| s.load(AtomicOrdering::Acquire))
    }

    /// Drops the tagged datagrams waiting to be sent (the peer that took them is gone).
    fn purge_tagged(dir: &mut Dir) {
        if let Some(r) = dir.rx.as_mut() {
            r.tagged_queued = false;
        }
        for _ in 0..dir.queue.len {
            let f = dir.queue.pop().expect("counted");
            if f.tagged {
                dir.counts.add_drop(DropReason::SendError, f.segs as u64);
                Self::release(dir, f);
            } else {
                dir.queue.push(f);
            }
        }
    }

    /// Queues a received frame for sending (through the coalescer for an offloading tap).
    #[inline]
    fn enqueue(dir: &mut Dir, f: Frame) {
        match dir.gro.as_mut() {
            Some(g) => g.inq.push(f),
            None => dir.queue.push(f),
        }
    }

    fn release(dir: &mut Dir, f: Frame) {
        if f.is_runt() {
            return;
        }
        if f.id & SUPER_FLAG != 0 {
            let g = dir.gro.as_mut().expect("super-frames come from the coalescer");
            let b = g.held[(f.id & !SUPER_FLAG) as usize]
                .take()
                .expect("a queued super-frame holds its buffer");
            g.free.push(b);
            return;
        }
        let rx = dir.rx.as_mut().expect("frames come from a receiving direction");
        if f.id & SLOT_FLAG != 0 {
            rx.slots_free.push(f.id & !SLOT_FLAG);
        } else {
            rx.ring.push(f.id);
        }
    }

    fn frame_addr(dir: &Dir, f: Frame) -> *const u8 {
        if f.is_runt() {
            return match f.id {
                RUNT_HELLO => superframe::HELLO.as_ptr(),
                RUNT_OFFER => superframe::OFFER.as_ptr(),
                id => {
                    let p = dir.tx.pair.as_ref().expect("pairing runts come with a pair");
                    p.runts[(id & 1) as usize].as_ptr()
                }
            };
        }
        if f.id & SUPER_FLAG != 0 {
            let g = dir.gro.as_ref().expect("super-frames come from the coalescer");
            let b = g.held[(f.id & !SUPER_FLAG) as usize]
                .as_ref()
                .expect("a queued super-frame holds its buffer");
            return b.as_ref().as_ptr();
        }
        let rx = dir.rx.as_ref().expect("frames come from a receiving direction");
        if f.id & SLOT_FLAG != 0 {
            let p = rx.ring.slot_ptr((f.id & !SLOT_FLAG) as usize, BUF_SIZE);
            // SAFETY: HEADROOM < BUF_SIZE: inside the slot.
            unsafe { p.add(HEADROOM) }
        } else {
            // SAFETY: data_off (a virtio-net header) is inside the received data; `skip`
            // moves at most TAG_LEN + the header before it (into the headroom, HEADROOM >=
            // TAG_LEN) or past a received tag and header, inside the datagram.
            unsafe { rx.ring.addr(f.id).add(rx.data_off).offset(f.skip as isize) }
        }
    }

    /// The virtio-net header space in front of a queued frame (HEADROOM bytes are kept there
    /// in every buffer and slot).
    fn header_room(dir: &mut Dir, f: Frame, n: usize) -> &mut [u8] {
        if f.id & SUPER_FLAG != 0 {
            let g = dir.gro.as_mut().expect("super-frames come from the coalescer");
            let b = g.held[(f.id & !SUPER_FLAG) as usize]
                .as_mut()
                .expect("a queued super-frame holds its buffer");
            return &mut b.mem[HEADROOM - n..HEADROOM];
        }
        let rx = dir.rx.as_mut().expect("frames come from a receiving direction");
        if f.id & SLOT_FLAG != 0 {
            let s = rx.ring.slot_mut((f.id & !SLOT_FLAG) as usize, BUF_SIZE);
            &mut s[HEADROOM - n..HEADROOM]
        } else {
            rx.ring.headroom_mut(f.id, n)
        }
    }

    /// Cuts the reads of an offloading tap into standard frames, in order: a plain frame is
    /// queued from its buffer (its partial checksum completed in place), a super-frame is cut
    /// into free slots and its buffer handed back; when slots run out, the rest waits.
    fn cut_tap_reads(dir: &mut Dir) {
        let Some(rx) = dir.rx.as_mut() else { return };
        let Some(v) = rx.vnet.as_mut() else { return };
        // A ptp second opener that offered asks its peer, at most every `pair::HELLO_EVERY`
        // while it sends, until the peer answers.
        if v.held.len > 0
            && dir.tx.reconnect.active()
            && rx
                .superframes
                .as_ref()
                .is_some_and(|s| !s.load(AtomicOrdering::Acquire))
            && dir.queue.len < QCAP
            && pair::hello_due(&mut rx.hello_at, Instant::now())
        {
            dir.queue.push(Frame::runt(RUNT_HELLO, superframe::RUNT_LEN));
        }
        // A first opener asked, not paired yet: PAIR again now and then while it sends.
        if v.held.len > 0 {
            Self::send_pair(dir);
        }
        let Some(rx) = dir.rx.as_mut() else { return };
        let Some(v) = rx.vnet.as_mut() else { return };
        while let Some((bid, len)) = v.held.front() {
            let len = len as usize;
            let full = len == rx.ring.data_len();
            // The peer takes super-frames: what needs its header crosses whole, tagged (the
            // tag goes into the headroom in front of the header).
            if v.next == 0
                && rx
                    .superframes
                    .as_ref()
                    .is_some_and(|s| s.load(AtomicOrdering::Acquire))
            {
                let read = rx.ring.data(bid, 0, len);
                if VnetHdr::parse(read, v.hdr).is_ok_and(|h| superframe::needs_header(&h)) {
                    v.held.pop();
                    match cut::judge_whole(read, v.hdr, full) {
                        Ok(w) => {
                            rx.ring.headroom_mut(bid, TAG_LEN).copy_from_slice(&TAG);
                            rx.tagged_queued = true;
                            dir.counts.received += w.segs;
                            let skip = -((TAG_LEN + v.hdr) as isize);
                            dir.queue.push(Frame::tagged(bid, len + TAG_LEN, skip, w));
                        }
                        Err(why) => {
                            dir.counts.received += 1;
                            dir.counts.add_drop(why, 1);
                            rx.ring.push(bid);
                        }
                    }
                    continue;
                }
            }
            let (h, count) = match cut::judge(rx.ring.data_mut(bid, 0, len), v.hdr, full, BUF_SIZE - HEADROOM)
            {
                Err(why) => {
                    dir.counts.received += 1;
                    dir.counts.add_drop(why, 1);
                    v.held.pop();
                    rx.ring.push(bid);
                    continue;
                }
                Ok(Cut::Plain(flen)) => {
                    v.held.pop();
                    dir.counts.received += 1;
                    dir.queue.push(Frame::plain(bid, flen));
                    continue;
                }
                Ok(Cut::Super(h, count)) => (h, count),
            };
            if v.next == 0 && !rx.slots_free.is_empty() {
                dir.counts.super_frames += 1;
                dir.counts.segments += count as u64;
            }
            while v.next < count {
                let Some(slot) = rx.slots_free.pop() else { break };
                let (pkt, out) = rx.ring.data_and_slot(bid, v.hdr, len, slot as usize, BUF_SIZE);
                let got = cut::segment(&h, pkt, v.next, &mut out[HEADROOM..]);
                dir.counts.received += 1;
                v.next += 1;
                match got {
                    Ok(n) => dir.queue.push(Frame::plain(slot | SLOT_FLAG, n)),
                    Err(why) => {
                        dir.counts.add_drop(why, 1);
                        rx.slots_free.push(slot);
                    }
                }
            }
            if v.next < count {
                return;
            }
            v.next = 0;
            v.held.pop();
            rx.ring.push(bid);
        }
    }

    /// Passes the frames received for an offloading tap through its coalescer and queues what
    /// comes out, with the virtio-net header in front; flushes the coalescer at the end, so a
    /// frame waits at most until the end of its loop turn. Stops (leaving frames in `inq`,
    /// whose buffers then push back on the receive) while no spare super-frame buffer is free.
    fn gro_pass(dir: &mut Dir) {
        loop {
            let Some(g) = dir.gro.as_ref() else { return };
            // One push emits at most two super-frames (a flush, and the new one at once on
            // PSH) and the frame itself.
            if g.free.len() < 2 || dir.queue.len + 3 > QCAP {
                break;
            }
            let Some(f) = g.inq.front() else { break };
            if f.whole {
                // Its header came with it: after what the coalescer holds, as it is.
                dir.gro.as_mut().expect("checked above").inq.pop();
                Self::gro_flush(dir);
                dir.queue.push(f);
                continue;
            }
            let p = Self::frame_addr(dir, f);
            let g = dir.gro.as_mut().expect("checked above");
            g.inq.pop();
            let hl = g.hdr;
            // SAFETY: the frame lies in a receive buffer or slot that is in userspace's hands
            // (reaped, not pushed back, no send of it in flight) and nothing writes it while
            // the coalescer reads it (its header goes into the headroom afterwards).
            let bytes = unsafe { std::slice::from_raw_parts(p, f.len as usize) };
            let mut input: Option<VnetHdr> = None;
            let queue = &mut dir.queue;
            let (free, held) = (&mut g.free, &mut g.held);
            g.co.push_out(bytes, &mut |h: &VnetHdr, o: Out<'_, Sbuf>| match o {
                // Always the last output of a push.
                Out::Input(_) => input = Some(*h),
                Out::Buffer(b, n) => Self::queue_super(queue, free, held, hl, h, b, n),
            });
            match input {
                Some(h) => {
                    let _ = h.emit(Self::header_room(dir, f, hl), hl);
                    dir.queue.push(f);
                }
                // Copied into the coalescer's buffer.
                None => Self::release(dir, f),
            }
        }
        Self::gro_flush(dir);
    }

    /// Queues what the coalescer holds (when there is room for it).
    fn gro_flush(dir: &mut Dir) {
        let Some(g) = dir.gro.as_mut() else { return };
        if !g.co.pending() || g.free.is_empty() || dir.queue.len + 1 > QCAP {
            return;
        }
        let hl = g.hdr;
        let queue = &mut dir.queue;
        let (free, held) = (&mut g.free, &mut g.held);
        g.co.flush_out(&mut |h: &VnetHdr, o: Out<'_, Sbuf>| {
            if let Out::Buffer(b, n) = o {
                Self::queue_super(queue, free, held, hl, h, b, n);
            }
        });
    }

    /// Queues a frame the coalescer built in `b` (a super-frame, or a lone segment), with its
    /// header in the buffer's headroom, and gives the coalescer a spare buffer instead.
    fn queue_super(
        queue: &mut Fifo<Frame>,
        free: &mut Vec<Sbuf>,
        held: &mut [Option<Sbuf>],
        hl: usize,
        h: &VnetHdr,
        b: &mut Sbuf,
        n: usize,
    ) {
        let spare = free
            .pop()
            .expect("a spare super-frame buffer (checked before the push)");
        let mut full = std::mem::replace(b, spare);
        let _ = h.emit(&mut full.mem[HEADROOM - hl..HEADROOM], hl);
        let (segs, wire) = offload::wire_count(h, n);
        let idx = full.idx;
        held[idx as usize] = Some(full);
        queue.push(Frame {
            id: idx | SUPER_FLAG,
            segs: segs as u16,
            len: n as u32,
            wire: wire as u32,
            ..Frame::default()
        });
    }

    fn on_tx(&mut self, di: usize, idx: usize, res: i32) {
        self.outstanding -= 1;
        let dir = &mut self.dirs[di];
        dir.tx.inflight -= 1;
        if dir.tx.kind != TxKind::Stream {
            let f = dir.tx.chain[idx].frame;
            let via_pair = dir.tx.chain[idx].via_pair;
            let this_round = dir
                .tx
                .pair
                .as_ref()
                .is_some_and(|p| p.pairing.failed(dir.tx.chain[idx].round));
            let verdict = if res > 0 {
                None
            } else if self.stopping {
                Some(Verdict::Drop(DropReason::SendError))
            } else if res < 0 && via_pair && pair::f2_lost(-res) {
                // F2's peer is gone (ECONNREFUSED, then ENOTCONN), or F2 was disconnected for
                // a new pairing: standard frames by path from now on.
                // (The control thread says that the peer went away.)
                if this_round {
                    Self::unpair(dir);
                }
                if f.tagged || f.is_runt() {
                    Some(Verdict::Drop(DropReason::SendError))
                } else {
                    Some(Verdict::Retry)
                }
            } else if res < 0
                && dir.tx.raw >= 0
                && dir.tx.reconnect.after_failure(
                    // SAFETY: `raw` (>= 0) is a descriptor of one of this worker's ports,
                    // which it holds (`_ports`) until it ends.
                    unsafe { crate::sys::borrow_fd(dir.tx.raw) },
                    -res,
                    &dir.label,
                )
            {
                // Connected to the peer's new socket, which is asked again: nothing tagged
                // goes there before it answers.
                if let Some(sf) = dir.rx.as_ref().and_then(|r| r.superframes.as_ref()) {
                    sf.store(false, AtomicOrdering::Release);
                    if let Some(r) = dir.rx.as_mut() {
                        r.hello_at = None;
                    }
                    Self::purge_tagged(dir);
                }
                if f.tagged {
                    Some(Verdict::Drop(DropReason::SendError))
                } else {
                    // This frame goes again.
                    Some(Verdict::Retry)
                }
            } else {
                // A zero-byte send of a non-empty frame: nothing went; as a failure.
                Some(send_verdict(
                    if res < 0 { -res } else { libc::EIO },
                    Backpressure::Wait,
                ))
            };
            match verdict {
                None => {
                    Self::count_sent(&mut dir.counts, f);
                    Self::release(dir, f);
                }
                Some(Verdict::Retry) => {
                    // An unconnected AF_UNIX datagram socket polls writable even when the
                    // receiver's queue is full, so the kernel cannot wait for room: retry later.
                    dir.tx.chain[idx].retry = true;
                    dir.tx.again |= res == -libc::EAGAIN;
                    dir.tx.again_pair |= via_pair && res == -libc::EAGAIN;
                }
                Some(Verdict::Drop(why)) => {
                    // ENOENT/ECONNREFUSED on an unconnected ptp socket mean no peer yet.
                    dir.counts.add_drop(why, f.segs as u64);
                    Self::release(dir, f);
                }
            }
            if dir.tx.inflight == 0 {
                for i in (0..dir.tx.chain_len).rev() {
                    if dir.tx.chain[i].retry {
                        dir.tx.chain[i].retry = false;
                        let f = dir.tx.chain[i].frame;
                        if f.tagged {
                            if let Some(r) = dir.rx.as_mut() {
                                r.tagged_queued = true;
                            }
                        }
                        dir.queue.push_front(f);
                    }
                }
                dir.tx.chain_len = 0;
                // EAGAIN on F2 (connected to R2, which is connected back: no receiver queue
                // limit) is its own send buffer.
                let (raw, target) = match dir.tx.pair.as_ref() {
                    Some(p) if std::mem::take(&mut dir.tx.again_pair) => (p.raw, p.target),
                    _ => (dir.tx.raw, dir.tx.target),
                };
                if !std::mem::take(&mut dir.tx.again) {
                    dir.tx.retried = false;
                    dir.tx.probe = false;
                } else if send_buffer_full(
                    // SAFETY: `raw` is a descriptor of one of this worker's ports, which it
                    // holds (`_ports`) until it ends.
                    unsafe { crate::sys::borrow_fd(raw) },
                ) {
                    // Our own send buffer: wait until it polls writable.
                    dir.tx.retried = false;
                    dir.tx.waiting = true;
                    let e = Sqe::Poll {
                        fd: target,
                        events: libc::POLLOUT as u32,
                        multi: false,
                    }
                    .op(token(Op::TxWait, di, 0));
                    self.push(&e);
                    self.outstanding += 1;
                } else if !dir.tx.retried {
                    // It may have drained between the send and the check: once at once.
                    dir.tx.retried = true;
                } else {
                    // The receiver's queue: a timer (see `send_buffer_full`).
                    dir.tx.waiting = true;
                    dir.tx.probe = true;
                    let e = Sqe::Timeout {
                        after: &*self.retry_ts,
                    }
                    .op(token(Op::TxWait, di, 0));
                    self.push(&e);
                    self.outstanding += 1;
                }
            }
            return;
        }
        let tx = &mut dir.tx;
        if res > 0 && !self.stopping {
            tx.done += res as usize;
            if tx.done < tx.total {
                // Short write on a pipe: send the rest before anything else.
                let mut skip = res as usize;
                while skip >= tx.iov[tx.iov_start].iov_len {
                    skip -= tx.iov[tx.iov_start].iov_len;
                    tx.iov_start += 1;
                }
                let v = &mut tx.iov[tx.iov_start];
                v.iov_base = (v.iov_base as usize + skip) as *mut libc::c_void;
                v.iov_len -= skip;
                self.submit_stream(di);
                return;
            }
        } else if (res == -libc::EINTR || res == -libc::EAGAIN) && !self.stopping {
            self.submit_stream(di);
            return;
        }
        let ok = res > 0;
        let dir = &mut self.dirs[di];
        for i in 0..dir.tx.chain_len {
            let f = dir.tx.chain[i].frame;
            if ok {
                Self::count_sent(&mut dir.counts, f);
            } else {
                dir.counts.add_drop(DropReason::SendError, f.segs as u64);
            }
            Self::release(dir, f);
        }
        dir.tx.chain_len = 0;
    }

    /// Counts a frame delivered, as the VDE-wire frames it stands for.
    #[inline]
    fn count_sent(c: &mut Counts, f: Frame) {
        c.sent_many(f.segs as u64, f.wire as u64);
        if f.segs > 1 {
            c.super_frames += 1;
            c.segments += f.segs as u64;
            if f.tagged {
                c.wire_super += 1;
            }
        }
    }

    fn submit_stream(&mut self, di: usize) {
        let tx = &mut self.dirs[di].tx;
        let start = tx.iov_start;
        let n = 2 * tx.chain_len - start;
        let p = tx.iov[start..].as_ptr();
        let e = Sqe::Writev {
            fd: tx.target,
            iov: p,
            n: n as u32,
        }
        .op(token(Op::Tx, di, 0));
        tx.inflight += 1;
        self.push(&e);
        self.outstanding += 1;
    }

    /// Decodes received stream bytes into slots, queueing whole frames.
    fn decode_stream(dir: &mut Dir) {
        let Some(rx) = dir.rx.as_mut() else { return };
        let Some(s) = rx.stream.as_mut() else { return };
        while let Some((bid, len)) = s.raw.front() {
            let slot = match s.cur {
                Some(x) => x,
                None => match rx.slots_free.pop() {
                    Some(x) => {
                        s.cur = Some(x);
                        x
                    }
                    None => break,
                },
            };
            let (input, dst) = rx
                .ring
                .data_and_slot(bid, s.off, len as usize, slot as usize, BUF_SIZE);
            let (n, ev) = s.dec.feed(input, &mut dst[HEADROOM..HEADROOM + MAX_FRAME]);
            s.off += n;
            if s.off == len as usize {
                s.raw.pop();
                s.off = 0;
                rx.ring.push(bid);
            }
            if let Some(ev) = ev {
                dir.counts.received += 1;
                match admit_stream(ev) {
                    Ok(l) => {
                        let f = Frame::plain(slot | SLOT_FLAG, l);
                        match dir.gro.as_mut() {
                            Some(g) => g.inq.push(f),
                            None => dir.queue.push(f),
                        }
                        s.cur = None;
                    }
                    // The slot stays this stream's for the next frame.
                    Err(why) => dir.counts.add_drop(why, 1),
                }
            }
        }
    }

    /// Starts the next send chain of a direction whose previous one is done.
    fn kick_tx(&mut self, di: usize) {
        let dir = &mut self.dirs[di];
        if dir.tx.inflight > 0 || dir.tx.waiting || dir.queue.len == 0 {
            return;
        }
        // A first opener's peer went away (the control thread saw it): unpaired.
        if dir.tx.pair.as_ref().is_some_and(|p| p.paired()) && !Self::tags_allowed(dir) {
            Self::unpair(dir);
        }
        // Tagged datagrams queued while the peer took them, which it no longer does (the
        // control thread saw it go): none is sent. A first opener sends them only on F2.
        let paired = dir.tx.pair.as_ref().is_some_and(|p| p.paired());
        let tags_ok = Self::tags_allowed(dir) && (paired || dir.tx.kind != TxKind::SendTo);
        if dir.rx.as_ref().is_some_and(|r| r.tagged_queued) && !tags_ok {
            Self::purge_tagged(dir);
            if dir.queue.len == 0 {
                return;
            }
        }
        let n = if dir.tx.probe { 1 } else { dir.queue.len.min(CHAIN) };
        if self.ring.sq_room() < n {
            let _ = self.ring.submit();
        }
        let dir = &mut self.dirs[di];
        dir.tx.chain_len = n;
        if dir.tx.kind == TxKind::Stream {
            for i in 0..n {
                let f = dir.queue.pop().expect("queued");
                let a = Self::frame_addr(dir, f);
                let tx = &mut dir.tx;
                tx.chain[i].frame = f;
                tx.hdr[i] = stream::header(f.len as usize);
                tx.iov[2 * i] = libc::iovec {
                    iov_base: tx.hdr[i].as_mut_ptr().cast(),
                    iov_len: 2,
                };
                tx.iov[2 * i + 1] = libc::iovec {
                    iov_base: a as *mut libc::c_void,
                    iov_len: f.len as usize,
                };
            }
            let tx = &mut dir.tx;
            tx.iov_start = 0;
            tx.done = 0;
            tx.total = tx.chain[..n].iter().map(|c| c.frame.len as usize + 2).sum();
            self.submit_stream(di);
            return;
        }
        for i in 0..n {
            let dir = &mut self.dirs[di];
            let f = dir.queue.pop().expect("queued");
            let a = Self::frame_addr(dir, f);
            let tx = &mut dir.tx;
            // A first opener's PROBE, and while paired every frame but the by-path runts
            // (OFFER, PAIR), go on F2.
            let pair = tx.pair.as_ref().filter(|_| f.second || (paired && !f.is_runt()));
            debug_assert!(!f.tagged || pair.is_some() || tx.kind != TxKind::SendTo);
            let slot = &mut tx.chain[i];
            slot.frame = f;
            slot.via_pair = pair.is_some();
            slot.round = pair.map_or(0, |p| p.pairing.round());
            let e = match tx.kind {
                TxKind::SendTo => {
                    slot.iov = libc::iovec {
                        iov_base: a as *mut libc::c_void,
                        iov_len: f.len as usize,
                    };
                    let fd = match pair {
                        Some(p) => {
                            slot.msg.msg_name = std::ptr::null_mut();
                            slot.msg.msg_namelen = 0;
                            p.target
                        }
                        None => {
                            let addr = tx.addr.as_ref().as_ref().expect("SendTo has an address");
                            slot.msg.msg_name = addr.as_ptr() as *mut libc::c_void;
                            slot.msg.msg_namelen = addr.len();
                            tx.target
                        }
                    };
                    slot.msg.msg_iov = &mut slot.iov;
                    slot.msg.msg_iovlen = 1;
                    let m: *const libc::msghdr = &slot.msg;
                    // MSG_DONTWAIT: EAGAIN comes back to us instead of a kernel retry, which
                    // on a unix datagram socket resumes from an already consumed iterator and
                    // sends an empty datagram (seen on 6.18); we resend from scratch.
                    Sqe::SendMsg {
                        fd,
                        msg: m,
                        flags: libc::MSG_DONTWAIT as u32,
                    }
                }
                // An offloading tap: the virtio-net header was put in the headroom in front.
                _ if tx.vnet_hdr > 0 => {
                    let hl = tx.vnet_hdr;
                    // SAFETY: every frame for an offloading tap has HEADROOM >= hl bytes of
                    // its own buffer in front (header_room, queue_super).
                    let h = unsafe { a.sub(hl) };
                    Sqe::Write {
                        fd: tx.target,
                        buf: h,
                        len: f.len + hl as u32,
                    }
                }
                _ => Sqe::Write {
                    fd: tx.target,
                    buf: a,
                    len: f.len,
                },
            };
            // Linked: run in order. Hard links go on after a failed send (counted as a drop);
            // on an unconnected socket a soft link stops at EAGAIN so that order survives the
            // retry.
            let link = if i + 1 == n {
                Link::None
            } else if tx.kind == TxKind::SendTo {
                Link::Soft
            } else {
                Link::Hard
            };
            tx.inflight += 1;
            let e = e.op(token(Op::Tx, di, i)).link(link);
            self.push(&e);
            self.outstanding += 1;
        }
    }

    fn turn_end(&mut self) {
        for di in 0..self.dirs.len() {
            let dir = &mut self.dirs[di];
            Self::decode_stream(dir);
            Self::cut_tap_reads(dir);
            Self::gro_pass(dir);
            self.kick_tx(di);
        }
        for di in 0..self.dirs.len() {
            let Some(rx) = self.dirs[di].rx.as_mut() else {
                continue;
            };
            rx.ring.publish();
            // A paused receive is re-armed once an eighth of its buffers are back.
            let rearm = rx.ring.entries() as u32 / 8;
            let room = !rx.paused || rx.ring.avail() >= rearm;
            let second = rx.second.as_ref().is_some_and(|s| !s.armed && !s.dead);
            if !rx.armed && !rx.dead && room {
                self.arm_rx(di);
            }
            if second && room {
                self.arm_second(di);
            }
        }
        self.publish_stats();
    }

    fn publish_stats(&self) {
        for dir in &self.dirs {
            dir.stats.dirs[dir.d].publish(&dir.counts);
        }
    }

    /// Cancels everything in flight and reaps it, so that no buffer is dropped while the kernel
    /// may still use it.
    fn shutdown(&mut self) {
        self.stopping = true;
        let cancel = Sqe::CancelAll.op(token(Op::Cancel, 0, 0));
        self.push(&cancel);
        let deadline = Instant::now() + Duration::from_secs(2);
        let tick = Interval::new(Duration::from_millis(50));
        let (_, rx_dummy) = crossbeam_channel::bounded::<Cmd>(0);
        while self.outstanding > 0 && Instant::now() < deadline {
            let _ = self.ring.submit_and_wait(1, Some(&tick));
            self.drain(&rx_dummy);
            if self.outstanding > 0 {
                // Cancel again what was issued after the first cancel (re-queued sends).
                self.push(&cancel);
            }
        }
        for dir in &mut self.dirs {
            // Frames still queued were never sent: the engine stopped.
            let mut left = dir.queue.len as u64;
            if let Some(g) = &dir.gro {
                left += g.inq.len as u64;
            }
            dir.counts.add_drop(DropReason::SendError, left);
        }
        self.publish_stats();
        if self.outstanding > 0 {
            crate::diag!(
                "io_uring worker: {} operations did not finish at stop; their buffers are leaked",
                self.outstanding
            );
            let dirs = std::mem::take(&mut self.dirs);
            std::mem::forget(dirs);
        }
    }
}

/// The receive into direction buffers `ring` from `fd`, as the worker's tuning says: without
/// provided buffers (`pbuf`) a read into a buffer it picks (its id returned), else a
/// multishot or a single buffer-select receive. `socket`: the socket flag of a read or
/// multishot receive, and of a buffer-select one. None when no buffer is left for a read.
fn receive_sqe(
    ring: &mut BufRing,
    fd: Target,
    socket: (bool, bool),
    pbuf: bool,
    multishot: bool,
) -> Option<(Sqe, usize)> {
    if !pbuf {
        let bid = ring.pop_local()?;
        let e = Sqe::Read {
            fd,
            buf: ring.addr(bid).cast_mut(),
            len: ring.data_len() as u32,
            socket: socket.0,
        };
        return Some((e, bid as usize));
    }
    let e = if multishot {
        Sqe::ReadMulti {
            fd,
            group: ring.bgid(),
            socket: socket.0,
        }
    } else {
        Sqe::ReadSelect {
            fd,
            group: ring.bgid(),
            len: ring.data_len() as u32,
            socket: socket.1,
        }
    };
    Some((e, 0))
}
