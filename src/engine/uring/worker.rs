//! One io_uring worker: owns some ports, one ring, and per receiving descriptor one
//! provided-buffer ring. A frame received into a provided buffer is sent from that same buffer
//! on the other side and the buffer is handed back to the kernel when the send completes.
//!
//! Each direction owns its buffers, so a stalled output can exhaust only its own direction's
//! buffers: its multishot receive ends with ENOBUFS, the kernel queue behind it fills and
//! pushes back, and the other direction keeps going. A multi-port node (switch, hub) would
//! replace `Dir::queue` of the receiving direction by a forwarding decision that enqueues the
//! frame on the chosen directions' queues, with a per-buffer reference count.

use super::{build_ring, is_retry, push, BufRing, UringTuning, WAIT_BATCH};
use crate::engine::port::{DirPlan, TxPlan, MAX_FRAME};
use crate::engine::stats::{Counts, Drop as Why, PortStats};
use crate::engine::worker::{pin, Assigned, Cmd, WorkerCtx};
use crate::wire::stream::{self, Decoder, Event};
use crossbeam_channel::Sender;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::sys::socket::{SockaddrLike, UnixAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buffers per receiving descriptor (a power of two). Bounds memory per direction.
const ENTRIES: u16 = 256;
/// Buffer size: larger than the largest frame, so that a longer one shows up as oversize
/// instead of being silently cut to size.
const BUF_SIZE: usize = 9472;
/// Sends in flight per sending descriptor, as one hard-linked chain: linked operations run in
/// order, which keeps the frame order; AF_UNIX datagram queues are short (max_dgram_qlen).
const CHAIN: usize = 32;
/// Reassembly slots per stream link (frames copied out of the byte stream wait there for the
/// tap write).
const SLOTS: usize = 64;
/// Frames waiting to be sent, per direction: every one holds a buffer or a slot.
const QCAP: usize = 512;
const SLOT_FLAG: u16 = 0x8000;
/// A paused receive is re-armed once this many buffers are back.
const REARM: u32 = ENTRIES as u32 / 8;

const K_RX: u64 = 1;
const K_TX: u64 = 2;
const K_WAKE: u64 = 3;
const K_CANCEL: u64 = 4;
const K_TIMER: u64 = 5;
/// Wait before re-sending datagrams refused with EAGAIN on an unconnected socket.
const RETRY_NS: u32 = 1_000_000;

#[inline]
fn token(kind: u64, dir: usize, idx: usize) -> u64 {
    kind | (dir as u64) << 8 | (idx as u64) << 32
}

#[derive(Clone, Copy, Default)]
struct Frame {
    /// Buffer id in the direction's ring, or slot index | SLOT_FLAG.
    id: u16,
    len: u32,
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

#[derive(Clone, Copy)]
enum Target {
    Fd(RawFd),
    Fixed(u32),
}

/// Builds an op on a plain or a fixed descriptor.
macro_rules! on {
    ($t:expr, $f:ident => $e:expr) => {
        match $t {
            Target::Fd(fd) => {
                let $f = types::Fd(fd);
                $e
            }
            Target::Fixed(i) => {
                let $f = types::Fixed(i);
                $e
            }
        }
    };
}

struct StreamRx {
    dec: Decoder,
    /// Received byte buffers not yet fully decoded: (bid, len).
    raw: Fifo<(u16, u32)>,
    off: usize,
    cur: Option<u16>,
    free: Vec<u16>,
}

struct Rx {
    target: Target,
    socket: bool,
    eof_on_zero: bool,
    ring: BufRing,
    armed: bool,
    paused: bool,
    dead: bool,
    stream: Option<StreamRx>,
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
    iov: libc::iovec,
    msg: libc::msghdr,
}

struct Tx {
    kind: TxKind,
    target: Target,
    addr: Box<Option<UnixAddr>>,
    inflight: usize,
    /// A send of the current chain met EAGAIN.
    again: bool,
    /// A retry timer is armed; no new chain until it fires.
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
    counts: Counts,
    stats: Arc<PortStats>,
    d: usize,
    label: String,
}

/// Field order is drop order: the ring goes first (after every operation was reaped), then the
/// buffer memory, then the ports' descriptors.
struct Worker {
    ring: IoUring,
    dirs: Vec<Dir>,
    wake_buf: Box<u64>,
    wake: Target,
    retry_ts: Box<types::Timespec>,
    cqes: Vec<(u64, i32, u32)>,
    outstanding: usize,
    multishot: bool,
    pbuf: bool,
    /// Batching wait in microseconds, when the kernel supports it.
    batch_wait: Option<u32>,
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
                iov: iov_empty(),
                msg: msg_empty(),
            })
            .collect();
        Tx {
            kind,
            target,
            addr: Box::new(addr),
            inflight: 0,
            again: false,
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

/// Runs a worker until Stop. Reports setup success or failure on `ready` first.
pub fn run(ctx: WorkerCtx, tuning: UringTuning, ready: Sender<Result<String, String>>) {
    // Pin before allocating: the buffers are then populated by (and local to) this core.
    pin(ctx.cpu);
    let mut w = match Worker::new(ctx.ports, &ctx.wake, tuning) {
        Ok((w, mode)) => {
            let _ = ready.send(Ok(mode.to_string()));
            w
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    w.run(&ctx.cmds);
}

impl Worker {
    fn new(
        ports: Vec<Assigned>,
        wake: &Arc<std::os::fd::OwnedFd>,
        tuning: UringTuning,
    ) -> Result<(Worker, &'static str), String> {
        let nrx = ports
            .iter()
            .map(|a| a.plan.iter().filter(|d| d.rx.is_some()).count())
            .sum::<usize>();
        let cq = ((nrx * ENTRIES as usize + 2 * ports.len() * CHAIN) * 2)
            .next_power_of_two()
            .max(1024) as u32;
        let (ring, mode) = build_ring(1024, cq, tuning.defer_taskrun)
            .map_err(|e| format!("io_uring_setup: {}", crate::sys::err_text(&e)))?;
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
        for a in &ports {
            for (d, plan) in a.plan.iter().enumerate() {
                dirs.push(Self::dir(
                    a,
                    d,
                    plan,
                    &mut bgid,
                    &mut fixed,
                    tuning.provided_buffers.then_some(&ring),
                )?);
            }
        }
        // Only with multishot receives: with one single-shot receive per descriptor a turn
        // never has a batch to wait for.
        let batch_wait = (tuning.batch_wait_us > 0
            && tuning.multishot
            && tuning.provided_buffers
            && ring.params().is_feature_min_timeout())
        .then_some(tuning.batch_wait_us);
        if tuning.fixed_files {
            ring.submitter()
                .register_files(&fds)
                .map_err(|e| format!("IORING_REGISTER_FILES: {}", crate::sys::err_text(&e)))?;
        }
        Ok((
            Worker {
                ring,
                dirs,
                wake_buf: Box::new(0),
                retry_ts: Box::new(types::Timespec::new().nsec(RETRY_NS)),
                wake: wake_t,
                cqes: Vec::with_capacity(cq as usize),
                outstanding: 0,
                multishot: tuning.multishot && tuning.provided_buffers,
                pbuf: tuning.provided_buffers,
                batch_wait,
                stopping: false,
                _ports: ports,
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
        ring: Option<&IoUring>,
    ) -> Result<Dir, String> {
        let label = format!(
            "{} ({}) {}",
            a.port.name,
            a.port.link.vnl,
            crate::engine::stats::DIR_NAMES[d]
        );
        let rx = match &plan.rx {
            None => None,
            Some(r) => {
                let extra = if r.stream { SLOTS * BUF_SIZE } else { 0 };
                let mut br = BufRing::new(ENTRIES, BUF_SIZE, extra)
                    .map_err(|e| format!("{label}: buffer memory: {}", crate::sys::err_text(&e)))?;
                if let Some(ring) = ring {
                    br.register_as(ring, *bgid).map_err(|e| {
                        format!("{label}: IORING_REGISTER_PBUF_RING: {}", crate::sys::err_text(&e))
                    })?;
                }
                *bgid += 1;
                Some(Rx {
                    target: fixed(r.fd),
                    socket: r.socket,
                    eof_on_zero: r.eof_on_zero,
                    ring: br,
                    armed: false,
                    paused: false,
                    dead: false,
                    stream: r.stream.then(|| StreamRx {
                        dec: Decoder::new(),
                        raw: Fifo::new(ENTRIES as usize),
                        off: 0,
                        cur: None,
                        free: (0..SLOTS as u16).rev().collect(),
                    }),
                })
            }
        };
        let tx = match &plan.tx {
            TxPlan::Discard => Tx::new(TxKind::Discard, Target::Fd(-1), None),
            TxPlan::Write { fd, .. } => Tx::new(TxKind::Write, fixed(*fd), None),
            TxPlan::SendTo { fd, addr } => Tx::new(TxKind::SendTo, fixed(*fd), Some(*addr)),
            TxPlan::Stream { fd } => Tx::new(TxKind::Stream, fixed(*fd), None),
        };
        Ok(Dir {
            rx,
            tx,
            queue: Fifo::new(QCAP),
            counts: Counts::default(),
            stats: a.stats.clone(),
            d,
            label,
        })
    }

    fn push(&mut self, e: &squeue::Entry) {
        // SAFETY: entries reference only the worker's buffer rings, its boxed chain slots,
        // iovecs, headers, addresses and wake buffer, all kept until every operation is reaped
        // (see `shutdown`).
        if let Err(e) = unsafe { push(&mut self.ring, e) } {
            eprintln!("vdens-fast: io_uring submit failed: {}", crate::sys::err_text(&e));
        }
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let e =
            on!(self.wake, f => opcode::Read::new(f, buf.cast(), 8).build()).user_data(token(K_WAKE, 0, 0));
        self.push(&e);
        self.outstanding += 1;
    }

    fn arm_rx(&mut self, di: usize) {
        let (multishot, pbuf) = (self.multishot, self.pbuf);
        let Some(rx) = self.dirs[di].rx.as_mut() else {
            return;
        };
        let g = rx.ring.bgid();
        let mut idx = 0;
        let e = if !pbuf {
            let Some(bid) = rx.ring.pop_local() else {
                rx.paused = true;
                return;
            };
            idx = bid as usize;
            let p = rx.ring.addr(bid).cast_mut();
            if rx.socket && rx.stream.is_none() {
                on!(rx.target, f => opcode::Recv::new(f, p, BUF_SIZE as u32).build())
            } else {
                on!(rx.target, f => opcode::Read::new(f, p, BUF_SIZE as u32).build())
            }
        } else if multishot {
            if rx.socket && rx.stream.is_none() {
                on!(rx.target, f => opcode::RecvMulti::new(f, g).build())
            } else {
                on!(rx.target, f => opcode::ReadMulti::new(f, 0, g).build())
            }
        } else if rx.socket {
            on!(rx.target, f => opcode::Recv::new(f, std::ptr::null_mut(), BUF_SIZE as u32)
                .buf_group(g)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT))
        } else {
            on!(rx.target, f => opcode::Read::new(f, std::ptr::null_mut(), BUF_SIZE as u32)
                .buf_group(g)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT))
        };
        rx.armed = true;
        rx.paused = false;
        let e = e.user_data(token(K_RX, di, idx));
        self.push(&e);
        self.outstanding += 1;
    }

    fn run(&mut self, cmds: &crossbeam_channel::Receiver<Cmd>) {
        self.arm_wake();
        for di in 0..self.dirs.len() {
            self.arm_rx(di);
        }
        // Completions to wait for: as many as the last turn found (up to WAIT_BATCH). Asking
        // for more than can come (the sender blocked on a full queue that only this worker
        // drains) would just sit out the whole batching wait every turn.
        let mut want = 1;
        loop {
            let r = match self.batch_wait {
                Some(us) if want > 1 => {
                    let args = types::SubmitArgs::new().min_wait_usec(us);
                    self.ring.submitter().submit_with_args(want, &args)
                }
                _ => self.ring.submit_and_wait(1),
            };
            match r {
                Ok(_) => {}
                // ETIME: the batching wait ended with what had arrived.
                Err(e) if is_retry(&e) || e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) => {
                    eprintln!(
                        "vdens-fast: io_uring worker stopped: io_uring_enter: {}",
                        crate::sys::err_text(&e)
                    );
                    break;
                }
            }
            if self.drain(cmds) {
                break;
            }
            want = self.cqes.len().clamp(1, WAIT_BATCH);
            self.turn_end();
        }
        self.shutdown();
    }

    /// Handles every completion ready; true when Stop arrived.
    fn drain(&mut self, cmds: &crossbeam_channel::Receiver<Cmd>) -> bool {
        self.cqes.clear();
        for c in self.ring.completion() {
            self.cqes.push((c.user_data(), c.result(), c.flags()));
        }
        let mut stop = false;
        for i in 0..self.cqes.len() {
            let (ud, res, flags) = self.cqes[i];
            let di = ((ud >> 8) & 0xff_ffff) as usize;
            match ud & 0xff {
                K_RX => self.on_rx(di, (ud >> 32) as u16, res, flags),
                K_TX => self.on_tx(di, (ud >> 32) as usize, res),
                K_TIMER => {
                    self.outstanding -= 1;
                    self.dirs[di].tx.waiting = false;
                }
                K_WAKE => {
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
        let mut stop = false;
        while let Ok(c) = cmds.try_recv() {
            match c {
                Cmd::Publish(ack) => {
                    self.publish_stats();
                    let _ = ack.send(());
                }
                Cmd::Stop => stop = true,
                // Plain ports have a fixed set of endpoints.
                Cmd::AddEndpoint(_, ack) => {
                    let _ = ack.send(Err("not a switch or hub node".into()));
                }
                Cmd::RemoveEndpoint(_) => {}
            }
        }
        if !stop {
            self.arm_wake();
        }
        stop
    }

    fn on_rx(&mut self, di: usize, idx: u16, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.outstanding -= 1;
        }
        let dir = &mut self.dirs[di];
        let Some(rx) = dir.rx.as_mut() else {
            return;
        };
        if !more {
            rx.armed = false;
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
        if res < 0 {
            match -res {
                libc::ENOBUFS => rx.paused = true,
                libc::EINTR | libc::EAGAIN | libc::ECANCELED => {}
                // Not armed any more (the multishot ended with the error): turn_end re-arms.
                e if crate::engine::port::is_transient_receive_error(e) => {}
                e => {
                    rx.dead = true;
                    eprintln!(
                        "vdens-fast: {}: receive failed: {}; this direction stops",
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
                    eprintln!("vdens-fast: {}: end of file; this direction stops", dir.label);
                }
                rx.dead = true;
                if more {
                    let e = opcode::AsyncCancel::new(token(K_RX, di, 0))
                        .build()
                        .user_data(token(K_CANCEL, 0, 0));
                    self.push(&e);
                }
            } else if bid.is_some() && rx.stream.is_none() {
                dir.counts.received += 1;
                dir.counts.drop(Why::Framing, 1);
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
        dir.counts.received += 1;
        if len > MAX_FRAME {
            dir.counts.drop(Why::Oversize, 1);
            rx.ring.push(bid);
        } else if dir.tx.kind == TxKind::Discard {
            dir.counts.drop(Why::NoLink, 1);
            rx.ring.push(bid);
        } else {
            dir.queue.push(Frame {
                id: bid,
                len: len as u32,
            });
        }
    }

    fn release(dir: &mut Dir, f: Frame) {
        let rx = dir.rx.as_mut().expect("frames come from a receiving direction");
        if f.id & SLOT_FLAG != 0 {
            rx.stream
                .as_mut()
                .expect("slots are stream")
                .free
                .push(f.id & !SLOT_FLAG);
        } else {
            rx.ring.push(f.id);
        }
    }

    fn frame_addr(dir: &Dir, f: Frame) -> *const u8 {
        let rx = dir.rx.as_ref().expect("frames come from a receiving direction");
        if f.id & SLOT_FLAG != 0 {
            rx.ring.slot_ptr((f.id & !SLOT_FLAG) as usize, BUF_SIZE)
        } else {
            rx.ring.addr(f.id)
        }
    }

    fn on_tx(&mut self, di: usize, idx: usize, res: i32) {
        self.outstanding -= 1;
        let dir = &mut self.dirs[di];
        dir.tx.inflight -= 1;
        if dir.tx.kind != TxKind::Stream {
            let f = dir.tx.chain[idx].frame;
            let again = matches!(-res, libc::EAGAIN | libc::EINTR | libc::ECANCELED);
            if res > 0 {
                dir.counts.sent(f.len as usize);
                Self::release(dir, f);
            } else if again && !self.stopping {
                // An unconnected AF_UNIX datagram socket polls writable even when the
                // receiver's queue is full, so the kernel cannot wait for room: retry later.
                dir.tx.chain[idx].retry = true;
                dir.tx.again |= res == -libc::EAGAIN;
            } else {
                // ENOENT/ECONNREFUSED on an unconnected ptp socket mean no peer yet.
                dir.counts.drop(Why::SendError, 1);
                Self::release(dir, f);
            }
            if dir.tx.inflight == 0 {
                for i in (0..dir.tx.chain_len).rev() {
                    if dir.tx.chain[i].retry {
                        dir.tx.chain[i].retry = false;
                        let f = dir.tx.chain[i].frame;
                        dir.queue.push_front(f);
                    }
                }
                dir.tx.chain_len = 0;
                if std::mem::take(&mut dir.tx.again) {
                    dir.tx.waiting = true;
                    let ts: *const types::Timespec = &*self.retry_ts;
                    let e = opcode::Timeout::new(ts).build().user_data(token(K_TIMER, di, 0));
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
                dir.counts.sent(f.len as usize);
            } else {
                dir.counts.drop(Why::SendError, 1);
            }
            Self::release(dir, f);
        }
        dir.tx.chain_len = 0;
    }

    fn submit_stream(&mut self, di: usize) {
        let tx = &mut self.dirs[di].tx;
        let start = tx.iov_start;
        let n = 2 * tx.chain_len - start;
        let p = tx.iov[start..].as_ptr();
        let e =
            on!(tx.target, f => opcode::Writev::new(f, p, n as u32).build()).user_data(token(K_TX, di, 0));
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
                None => match s.free.pop() {
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
            let (n, ev) = s.dec.feed(input, &mut dst[..MAX_FRAME]);
            s.off += n;
            if s.off == len as usize {
                s.raw.pop();
                s.off = 0;
                rx.ring.push(bid);
            }
            match ev {
                Some(Event::Frame(l)) => {
                    dir.counts.received += 1;
                    dir.queue.push(Frame {
                        id: slot | SLOT_FLAG,
                        len: l as u32,
                    });
                    s.cur = None;
                }
                Some(Event::Oversize(_)) => {
                    dir.counts.received += 1;
                    dir.counts.drop(Why::Oversize, 1);
                }
                Some(Event::Empty) => {
                    dir.counts.received += 1;
                    dir.counts.drop(Why::Framing, 1);
                }
                None => {}
            }
        }
    }

    /// Starts the next send chain of a direction whose previous one is done.
    fn kick_tx(&mut self, di: usize) {
        let dir = &mut self.dirs[di];
        if dir.tx.inflight > 0 || dir.tx.waiting || dir.queue.len == 0 {
            return;
        }
        let n = dir.queue.len.min(CHAIN);
        {
            let sq = self.ring.submission();
            let room = sq.capacity() - sq.len();
            drop(sq);
            if room < n {
                let _ = self.ring.submit();
            }
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
            let slot = &mut tx.chain[i];
            slot.frame = f;
            let e = match tx.kind {
                TxKind::SendTo => {
                    let addr = tx.addr.as_ref().as_ref().expect("SendTo has an address");
                    slot.iov = libc::iovec {
                        iov_base: a as *mut libc::c_void,
                        iov_len: f.len as usize,
                    };
                    slot.msg.msg_name = addr.as_ptr() as *mut libc::c_void;
                    slot.msg.msg_namelen = addr.len();
                    slot.msg.msg_iov = &mut slot.iov;
                    slot.msg.msg_iovlen = 1;
                    let m: *const libc::msghdr = &slot.msg;
                    // MSG_DONTWAIT: EAGAIN comes back to us instead of a kernel retry, which
                    // on a unix datagram socket resumes from an already consumed iterator and
                    // sends an empty datagram (seen on 6.18); we resend from scratch.
                    on!(tx.target, fd => opcode::SendMsg::new(fd, m)
                        .flags(libc::MSG_DONTWAIT as u32)
                        .build())
                }
                _ => on!(tx.target, fd => opcode::Write::new(fd, a, f.len).build()),
            };
            // Linked: run in order. Hard links go on after a failed send (counted as a drop);
            // on an unconnected socket a soft link stops at EAGAIN so that order survives the
            // retry.
            let e = if i + 1 == n {
                e
            } else if tx.kind == TxKind::SendTo {
                e.flags(squeue::Flags::IO_LINK)
            } else {
                e.flags(squeue::Flags::IO_HARDLINK)
            };
            tx.inflight += 1;
            let e = e.user_data(token(K_TX, di, i));
            self.push(&e);
            self.outstanding += 1;
        }
    }

    fn turn_end(&mut self) {
        for di in 0..self.dirs.len() {
            Self::decode_stream(&mut self.dirs[di]);
            self.kick_tx(di);
        }
        for di in 0..self.dirs.len() {
            let Some(rx) = self.dirs[di].rx.as_mut() else {
                continue;
            };
            rx.ring.publish();
            if !rx.armed && !rx.dead && (!rx.paused || rx.ring.avail() >= REARM) {
                self.arm_rx(di);
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
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(token(K_CANCEL, 0, 0));
        self.push(&e);
        let deadline = Instant::now() + Duration::from_secs(2);
        let ts = types::Timespec::new().nsec(50_000_000);
        let args = types::SubmitArgs::new().timespec(&ts);
        let (_, rx_dummy) = crossbeam_channel::bounded::<Cmd>(0);
        while self.outstanding > 0 && Instant::now() < deadline {
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.drain(&rx_dummy);
            if self.outstanding > 0 {
                // Cancel again what was issued after the first cancel (re-queued sends).
                let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(token(K_CANCEL, 0, 0));
                self.push(&e);
            }
        }
        for dir in &mut self.dirs {
            // Frames still queued were never sent: the engine stopped.
            let left = dir.queue.len as u64;
            dir.counts.drop(Why::SendError, left);
        }
        self.publish_stats();
        if self.outstanding > 0 {
            eprintln!(
                "vdens-fast: io_uring worker: {} operations did not finish at stop; their buffers are leaked",
                self.outstanding
            );
            let dirs = std::mem::take(&mut self.dirs);
            std::mem::forget(dirs);
        }
    }
}
