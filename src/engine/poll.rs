//! The epoll engine: the fallback when io_uring cannot be used, with the same ports and plans.
//! Level-triggered epoll; each ready direction is drained until EAGAIN in batches
//! (recvmmsg/sendmmsg on datagram sockets, read/write loops on taps, pipes and devices).
//! A direction whose output would block stops reading (its input stays in the kernel queue,
//! which pushes back) and waits for EPOLLOUT; the other direction is not affected.
//!
//! A tap opened with segmentation offload (`offload.rs`) is read into one big buffer, and each
//! super-frame is cut into the batch's slots (resumed in the next batch when it does not fit);
//! frames from the link are coalesced per batch and written to it with a virtio-net header.

use super::core::cut::{self, Cut};
use super::core::{
    admit, admit_stream, classify_rx_error, dispatch, send_verdict, Backpressure, Control, Op, RxEnd,
    RxFault, Token, Verdict,
};
use super::offload::{self, SUPER_READ};
use super::port::{send_buffer_full, DirPlan, Reconnector, RxPlan, TxPlan, MAX_FRAME};
use super::stats::{Counts, DropReason, PortStats, LINK_TO_TAP, TAP_TO_LINK};
use super::worker::{pin, Assigned, Cmd, WorkerCtx};
use crate::sys::{recv_batch, send_batch};
use crate::wire::gro::{self, Coalescer};
use crate::wire::stream::{self, Decoder};
use crate::wire::vnet::VnetHdr;
use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::UnixAddr;
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::Arc;

/// Frames per batch (a 64 KiB TCP super-frame at MSS 1448 makes 46).
const BATCH: usize = crate::sys::MAX_BATCH;
/// Per-frame buffer: larger than the largest frame, so a longer one shows up as oversize.
const STRIDE: usize = 9472;
/// Stream links: bytes read at once.
const RAW: usize = 65536;
/// Batches per direction per wake-up before giving the other descriptors a turn.
const ROUNDS: usize = 16;

struct StreamRx {
    dec: Decoder,
    raw: Box<[u8]>,
    off: usize,
    len: usize,
}

/// Reading an offloading tap: the last read, and how far its segments went.
struct VnetRx {
    hdr: usize,
    big: Box<[u8]>,
    /// Bytes of the read not yet fully cut (0: none).
    len: usize,
    /// Next segment of it to cut.
    next: usize,
}

/// Writing an offloading tap.
struct VnetTx {
    hdr: usize,
    gro: Coalescer<Box<[u8]>>,
}

struct PDir {
    rx: Option<RxPlan>,
    reconnect: Reconnector,
    vnet_rx: Option<VnetRx>,
    vnet_tx: Option<VnetTx>,
    tx: TxPlan,
    bufs: Box<[u8]>,
    lens: [usize; BATCH],
    /// Frames of the current batch; `sent` of them are done.
    n: usize,
    sent: usize,
    /// Stream output: bytes of frame `sent` (header included) already written.
    part: usize,
    blocked: bool,
    /// Blocked on a full receiver queue behind an unconnected socket (see
    /// [`send_buffer_full`]): retried on a timer, not on EPOLLOUT.
    peer_full: bool,
    rx_dead: bool,
    stream: Option<StreamRx>,
    counts: Counts,
    stats: Arc<PortStats>,
    d: usize,
    label: String,
}

/// The worker keeps descriptors by number; the ports that own them outlive every use.
fn fd<'a>(raw: RawFd) -> BorrowedFd<'a> {
    crate::sys::borrow_fd(raw)
}

fn tx_fd(t: &TxPlan) -> Option<RawFd> {
    match t {
        TxPlan::Write { fd, .. } | TxPlan::SendTo { fd, .. } | TxPlan::Stream { fd } => Some(*fd),
        TxPlan::Discard => None,
    }
}

impl PDir {
    fn new(a: &Assigned, d: usize, plan: &DirPlan) -> PDir {
        let label = format!(
            "{} ({}) {}",
            a.port.name,
            a.port.link.vnl,
            super::stats::DIR_NAMES[d]
        );
        let off = a.port.offload;
        PDir {
            rx: plan.rx,
            reconnect: Reconnector::new(plan.reconnect.clone()),
            vnet_rx: (off.enabled() && d == TAP_TO_LINK).then(|| VnetRx {
                hdr: off.vnet_hdr,
                big: vec![0u8; SUPER_READ].into_boxed_slice(),
                len: 0,
                next: 0,
            }),
            vnet_tx: (off.enabled() && d == LINK_TO_TAP).then(|| VnetTx {
                hdr: off.vnet_hdr,
                gro: Coalescer::new(vec![0u8; gro::BUF_LEN].into_boxed_slice()),
            }),
            tx: plan.tx.clone(),
            bufs: vec![0u8; BATCH * STRIDE].into_boxed_slice(),
            lens: [0; BATCH],
            n: 0,
            sent: 0,
            part: 0,
            blocked: false,
            peer_full: false,
            rx_dead: plan.rx.is_none(),
            stream: plan.rx.filter(|r| r.stream).map(|_| StreamRx {
                dec: Decoder::new(),
                raw: vec![0u8; RAW].into_boxed_slice(),
                off: 0,
                len: 0,
            }),
            counts: Counts::default(),
            stats: a.stats.clone(),
            d,
            label,
        }
    }

    /// Sends what is pending; false when the output would block.
    fn flush(&mut self) -> bool {
        if self.vnet_tx.is_some() {
            return self.flush_coalesced();
        }
        // One immediate retry after EAGAIN on an unconnected socket that polls writable: its
        // send buffer may have drained between the send and the check.
        let mut retried = false;
        while self.sent < self.n {
            let len = self.lens[self.sent];
            if len == usize::MAX {
                // dropped while receiving
                self.sent += 1;
                continue;
            }
            let r = match &self.tx {
                TxPlan::Discard => {
                    self.counts.add_drop(DropReason::NoLink, 1);
                    self.sent += 1;
                    continue;
                }
                TxPlan::Write { fd: f, socket: true } => self.send_run(*f, None),
                TxPlan::SendTo { fd: f, addr } => {
                    let a = *addr;
                    self.send_run(*f, Some(&a))
                }
                TxPlan::Write { fd: f, socket: false } => {
                    let off = self.sent * STRIDE;
                    match nix::unistd::write(fd(*f), &self.bufs[off..off + len]) {
                        Ok(_) => Ok(1),
                        Err(e) => Err(e),
                    }
                }
                TxPlan::Stream { fd: f } => self.stream_write(*f),
            };
            match r {
                Ok(k) => {
                    for _ in 0..k {
                        let l = self.lens[self.sent];
                        self.counts.sent(l);
                        self.sent += 1;
                    }
                }
                Err(Errno::EAGAIN) => {
                    if let TxPlan::SendTo { fd: f, .. } = &self.tx {
                        self.peer_full = !send_buffer_full(fd(*f));
                        if self.peer_full && !retried {
                            retried = true;
                            continue;
                        }
                    }
                    self.blocked = true;
                    return false;
                }
                Err(e)
                    if tx_fd(&self.tx)
                        .is_some_and(|f| self.reconnect.after_failure(fd(f), e as i32, &self.label)) => {}
                Err(e) => match send_verdict(e as i32, Backpressure::Wait) {
                    Verdict::Retry => {}
                    // ENOENT/ECONNREFUSED on an unconnected ptp socket mean no peer yet.
                    Verdict::Drop(why) => {
                        self.counts.add_drop(why, 1);
                        self.sent += 1;
                        self.part = 0;
                    }
                },
            }
        }
        self.blocked = false;
        true
    }

    /// Writes the batch to an offloading tap: runs of one TCP flow's segments as super-frames,
    /// everything else behind a zero header, in the order received. A tap write does not
    /// block (tun's send buffer is unlimited), so the whole batch goes out at once.
    fn flush_coalesced(&mut self) -> bool {
        let Some(v) = self.vnet_tx.as_mut() else {
            return true;
        };
        let TxPlan::Write { fd: tfd, .. } = self.tx else {
            unreachable!("an offloading tap is written with write(2)");
        };
        let counts = &mut self.counts;
        let hl = v.hdr;
        let mut emit = |h: &VnetHdr, f: &[u8]| offload::vnet_write(tfd, hl, counts, h, f);
        for i in self.sent..self.n {
            let len = self.lens[i];
            if len != usize::MAX {
                v.gro.push(&self.bufs[i * STRIDE..i * STRIDE + len], &mut emit);
            }
        }
        v.gro.flush(&mut emit);
        self.sent = self.n;
        self.blocked = false;
        true
    }

    /// Cuts offloading tap reads into the batch's slots until it is full or the tap is empty.
    /// Returns how many frames the batch holds, or why it holds none.
    fn fill_vnet(&mut self, rfd: RawFd) -> Result<usize, RxEnd> {
        let v = self.vnet_rx.as_mut().expect("an offloading tap");
        while self.n < BATCH {
            if v.len == 0 {
                match nix::unistd::read(fd(rfd), &mut v.big) {
                    Ok(0) => return if self.n == 0 { Err(RxEnd::Eof) } else { Ok(self.n) },
                    Ok(l) => {
                        v.len = l;
                        v.next = 0;
                    }
                    Err(e) => {
                        return if self.n == 0 {
                            Err(RxEnd::Failed(e as i32))
                        } else {
                            Ok(self.n)
                        }
                    }
                }
            }
            let full = v.len == SUPER_READ;
            let read = &mut v.big[..v.len];
            match cut::judge(read, v.hdr, full, STRIDE) {
                Err(why) => {
                    self.counts.received += 1;
                    self.counts.add_drop(why, 1);
                    v.len = 0;
                }
                Ok(Cut::Plain(len)) => {
                    self.counts.received += 1;
                    v.len = 0;
                    let k = self.n;
                    self.bufs[k * STRIDE..k * STRIDE + len].copy_from_slice(&read[v.hdr..v.hdr + len]);
                    self.lens[k] = len;
                    self.n += 1;
                }
                Ok(Cut::Super(h, count)) => {
                    if v.next == 0 {
                        self.counts.super_frames += 1;
                        self.counts.segments += count as u64;
                    }
                    while v.next < count && self.n < BATCH {
                        let k = self.n;
                        let out = &mut self.bufs[k * STRIDE..(k + 1) * STRIDE];
                        self.counts.received += 1;
                        match cut::segment(&h, &read[v.hdr..], v.next, out) {
                            Ok(l) => {
                                self.lens[k] = l;
                                self.n += 1;
                            }
                            Err(why) => self.counts.add_drop(why, 1),
                        }
                        v.next += 1;
                    }
                    if v.next == count {
                        v.len = 0;
                    }
                }
            }
        }
        Ok(self.n)
    }

    /// sendmmsg of the run of frames from `sent` that were not dropped.
    fn send_run(&mut self, f: RawFd, dest: Option<&UnixAddr>) -> Result<usize, Errno> {
        let start = self.sent;
        let mut end = start;
        while end < self.n && self.lens[end] != usize::MAX {
            end += 1;
        }
        send_batch(
            fd(f),
            &self.bufs[start * STRIDE..],
            STRIDE,
            &self.lens[start..end],
            dest,
        )
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }

    /// Writes header + frame `sent`, resuming after a short write; Ok(1) when it is all out.
    fn stream_write(&mut self, f: RawFd) -> Result<usize, Errno> {
        let len = self.lens[self.sent];
        let off = self.sent * STRIDE;
        let hdr = stream::header(len);
        loop {
            let frame = &self.bufs[off..off + len];
            let r = if self.part < 2 {
                nix::sys::uio::writev(fd(f), &[IoSlice::new(&hdr[self.part..]), IoSlice::new(frame)])
            } else {
                nix::unistd::write(fd(f), &frame[self.part - 2..])
            };
            match r {
                Ok(k) => {
                    self.part += k;
                    if self.part == len + 2 {
                        self.part = 0;
                        return Ok(1);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a new batch; false when nothing more is to be read now.
    fn fill(&mut self) -> bool {
        if let Some(s) = &self.stream {
            // A frame cut by the end of the last read sits after that batch: move its start
            // to the first buffer, where decoding goes on.
            let part = s.dec.partial().min(MAX_FRAME);
            if part > 0 && self.n > 0 {
                let from = self.n * STRIDE;
                self.bufs.copy_within(from..from + part, 0);
            }
        }
        self.n = 0;
        self.sent = 0;
        if self.rx_dead {
            return false;
        }
        let rx = self.rx.expect("a live direction receives");
        if self.stream.is_some() {
            return self.fill_stream(rx.fd);
        }
        let got = if self.vnet_rx.is_some() {
            // Counted (and oversize frames dropped) as they were cut.
            return match self.fill_vnet(rx.fd) {
                Ok(k) => k > 0,
                Err(e) => self.rx_error(e),
            };
        } else if rx.socket {
            match recv_batch(fd(rx.fd), &mut self.bufs, STRIDE, &mut self.lens) {
                // An empty message on a seqpacket or stream socket is the peer's end.
                Ok(k) if rx.eof_on_zero && (k == 0 || self.lens[..k].contains(&0)) => {
                    match self.lens[..k].iter().position(|&l| l == 0) {
                        Some(0) | None => Err(RxEnd::Eof),
                        Some(i) => {
                            self.rx_dead = true;
                            crate::diag!("{}: end of file; this direction stops", self.label);
                            Ok(i)
                        }
                    }
                }
                Ok(k) => Ok(k),
                Err(e) => Err(RxEnd::Failed(e.raw_os_error().unwrap_or(libc::EIO))),
            }
        } else {
            let mut k = 0;
            let mut res = Ok(0);
            while k < BATCH {
                match nix::unistd::read(fd(rx.fd), &mut self.bufs[k * STRIDE..(k + 1) * STRIDE]) {
                    Ok(0) => {
                        res = if k == 0 { Err(RxEnd::Eof) } else { Ok(k) };
                        break;
                    }
                    Ok(l) => {
                        self.lens[k] = l;
                        k += 1;
                        res = Ok(k);
                    }
                    Err(e) => {
                        res = if k == 0 {
                            Err(RxEnd::Failed(e as i32))
                        } else {
                            Ok(k)
                        };
                        break;
                    }
                }
            }
            res
        };
        match got {
            Ok(k) => {
                self.n = k;
                for i in 0..k {
                    self.counts.received += 1;
                    if let Err(why) = admit(self.lens[i]) {
                        self.counts.add_drop(why, 1);
                        self.lens[i] = usize::MAX;
                    }
                }
                k > 0
            }
            Err(e) => self.rx_error(e),
        }
    }

    /// Why a receive brought no frames; false (nothing more to read now).
    fn rx_error(&mut self, e: RxEnd) -> bool {
        match e {
            RxEnd::Eof => crate::diag!("{}: end of file; this direction stops", self.label),
            RxEnd::Failed(errno) => {
                if classify_rx_error(errno) != RxFault::Fatal {
                    return false;
                }
                crate::diag!(
                    "{}: receive failed: {}; this direction stops",
                    self.label,
                    Errno::from_raw(errno).desc()
                );
            }
        }
        self.rx_dead = true;
        false
    }

    fn fill_stream(&mut self, rfd: RawFd) -> bool {
        let s = self.stream.as_mut().expect("stream");
        loop {
            while s.off < s.len && self.n < BATCH {
                let dst = &mut self.bufs[self.n * STRIDE..self.n * STRIDE + MAX_FRAME];
                let (k, ev) = s.dec.feed(&s.raw[s.off..s.len], dst);
                s.off += k;
                if let Some(ev) = ev {
                    self.counts.received += 1;
                    match admit_stream(ev) {
                        Ok(l) => {
                            self.lens[self.n] = l;
                            self.n += 1;
                        }
                        Err(why) => self.counts.add_drop(why, 1),
                    }
                }
            }
            if self.n == BATCH {
                return true;
            }
            match nix::unistd::read(fd(rfd), &mut s.raw) {
                Ok(0) => {
                    self.rx_dead = true;
                    crate::diag!("{}: end of file; this direction stops", self.label);
                    return self.n > 0;
                }
                Ok(k) => {
                    s.off = 0;
                    s.len = k;
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => return self.n > 0,
                Err(e) => {
                    self.rx_dead = true;
                    crate::diag!(
                        "{}: receive failed: {}; this direction stops",
                        self.label,
                        e.desc()
                    );
                    return self.n > 0;
                }
            }
        }
    }

    /// Blocked on an unconnected AF_UNIX datagram socket by a full receiver queue, which it
    /// polls writable through: retried on a short timer instead of waiting for EPOLLOUT.
    fn retry_later(&self) -> bool {
        self.blocked && self.peer_full && matches!(self.tx, TxPlan::SendTo { .. })
    }

    fn pump(&mut self) {
        for _ in 0..ROUNDS {
            if !self.flush() || !self.fill() {
                return;
            }
        }
        self.flush();
    }
}

/// Runs a poll worker until Stop.
pub fn run(ctx: WorkerCtx, ready: Sender<Result<String, String>>) {
    // Pin before allocating: the buffers are then first touched by (and local to) this core.
    pin(ctx.cpu);
    let ep = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(format!("epoll_create1: {}", e.desc())));
            return;
        }
    };
    let mut dirs: Vec<PDir> = Vec::new();
    for a in &ctx.ports {
        for (d, plan) in a.plan.iter().enumerate() {
            dirs.push(PDir::new(a, d, plan));
        }
    }
    // Every descriptor once, with its current interest.
    let mut fds: Vec<(RawFd, EpollFlags)> = Vec::new();
    for d in &dirs {
        for f in d.rx.map(|r| r.fd).into_iter().chain(tx_fd(&d.tx)) {
            if !fds.iter().any(|(x, _)| *x == f) {
                fds.push((f, EpollFlags::empty()));
            }
        }
    }
    let wake = ctx.wake.clone();
    let r = ep
        .add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, Token::new(Op::Wake, 0).encode()),
        )
        .and_then(|_| {
            for (i, (f, _)) in fds.iter().enumerate() {
                ep.add(fd(*f), EpollEvent::new(EpollFlags::empty(), fd_token(i)))?;
            }
            Ok(())
        });
    if let Err(e) = r {
        let _ = ready.send(Err(format!("epoll_ctl: {}", e.desc())));
        return;
    }
    super::confine();
    let _ = ready.send(Ok("epoll".into()));
    let mut w = PollWorker { ep, dirs, fds };
    w.run(&ctx.cmds, wake.as_fd());
    drop(w);
    drop(ctx.ports);
}

struct PollWorker {
    ep: Epoll,
    dirs: Vec<PDir>,
    fds: Vec<(RawFd, EpollFlags)>,
}

/// The token of descriptor `i` of the worker's table (readable or writable: the worker pumps
/// every direction that uses it).
fn fd_token(i: usize) -> u64 {
    Token::new(Op::Rx, i).encode()
}

impl Control for PollWorker {
    fn publish(&mut self) {
        PollWorker::publish(self);
    }
}

impl PollWorker {
    fn interest(&mut self) {
        for (i, (f, cur)) in self.fds.iter_mut().enumerate() {
            let mut want = EpollFlags::empty();
            for d in &self.dirs {
                if !d.rx_dead && !d.blocked && d.rx.map(|r| r.fd) == Some(*f) {
                    want |= EpollFlags::EPOLLIN;
                }
                if d.blocked && !d.retry_later() && tx_fd(&d.tx) == Some(*f) {
                    want |= EpollFlags::EPOLLOUT;
                }
            }
            if want != *cur {
                let _ = self.ep.modify(fd(*f), &mut EpollEvent::new(want, fd_token(i)));
                *cur = want;
            }
        }
    }

    fn publish(&self) {
        for d in &self.dirs {
            d.stats.dirs[d.d].publish(&d.counts);
        }
    }

    fn run(&mut self, cmds: &Receiver<Cmd>, wake: BorrowedFd<'_>) {
        let mut events = [EpollEvent::empty(); 64];
        for d in &mut self.dirs {
            d.pump();
        }
        loop {
            self.interest();
            self.publish();
            let timeout = if self.dirs.iter().any(|d| d.retry_later()) {
                EpollTimeout::from(1u8)
            } else {
                EpollTimeout::NONE
            };
            let n = match self.ep.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    crate::diag!("poll worker stopped: epoll_wait: {}", e.desc());
                    break;
                }
            };
            let mut stop = false;
            for d in &mut self.dirs {
                if d.retry_later() {
                    d.pump();
                }
            }
            for ev in &events[..n] {
                let Some(t) = Token::decode(ev.data()) else {
                    continue;
                };
                if t.op == Op::Wake {
                    let mut b = [0u8; 8];
                    let _ = nix::unistd::read(wake, &mut b);
                    stop |= dispatch(cmds, self);
                    continue;
                }
                let f = self.fds[t.ep()].0;
                for d in &mut self.dirs {
                    if d.rx.map(|r| r.fd) == Some(f) || tx_fd(&d.tx) == Some(f) {
                        d.pump();
                    }
                }
            }
            if stop {
                break;
            }
        }
        for d in &mut self.dirs {
            // Frames still pending were never sent: the engine stopped.
            let left = (d.sent..d.n).filter(|&i| d.lens[i] != usize::MAX).count();
            d.counts.add_drop(DropReason::SendError, left as u64);
            d.n = 0;
        }
        self.publish();
    }
}
