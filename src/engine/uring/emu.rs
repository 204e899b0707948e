//! The epoll driver: carries out the ring's operations ([`super::ring::Op`]) with plain
//! syscalls, for when io_uring cannot be used (`--engine poll`, io_uring disabled or missing
//! ops, no locked memory for a ring). It behaves as io_uring does towards the loops:
//!
//! - an operation is tried when submitted; one that would block waits, parked on its
//!   descriptor, until epoll says the descriptor is ready, and is tried again;
//! - a receive into a provided buffer takes the next buffer of the group's ring, reading the
//!   ring the loop publishes exactly as the kernel does, and says which in the completion's
//!   flags (`IORING_CQE_F_BUFFER`); none left is ENOBUFS;
//! - multishot receives post one completion per frame with `IORING_CQE_F_MORE`, and end on an
//!   error, end of file or ENOBUFS; multishot polls post one per readiness edge;
//! - linked operations run in order; a soft link's failure cancels the rest (-ECANCELED);
//! - sends with MSG_DONTWAIT complete with -EAGAIN instead of waiting;
//! - timeouts complete with -ETIME; cancels find parked operations and their chains.
//!
//! Level-triggered epoll, except for descriptors watched only by multishot polls
//! (edge-triggered, as io_uring's poll fires on wake-ups, not on a level). A descriptor epoll
//! refuses (a regular file) is always ready.

use super::ring::{Link, Op, Sqe};
use io_uring::types::BufRingEntry;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Completion flags, as the kernel's uapi has them (`io_uring::cqueue::more` and
/// `buffer_select` read them back; see the test).
const F_BUFFER: u32 = 1 << 0;
const F_MORE: u32 = 1 << 1;
const BUFFER_SHIFT: u32 = 16;
/// Receives of one multishot operation per readiness, before the other descriptors' turn.
const MULTI_BURST: usize = 64;
/// Datagrams sent with one sendmmsg(2), or received with one recvmmsg(2).
const SEND_BATCH: usize = 64;

/// A provided-buffer group, as registered.
struct Group {
    base: *mut BufRingEntry,
    mask: u16,
    /// Next entry to take (the kernel's head).
    head: u16,
}

/// An operation waiting for its descriptor, with the rest of its chain.
struct Parked {
    op: Op,
    rest: Vec<Op>,
}

struct FdState {
    ops: VecDeque<Parked>,
    /// Interest registered with epoll (empty: not registered).
    interest: EpollFlags,
    /// epoll refused it (a regular file): always ready.
    always: bool,
    /// SOCK_DGRAM, once asked (an empty datagram is not an end of file).
    dgram: Option<bool>,
    /// A socket, once asked (writes to it can go out with sendmmsg).
    socket: Option<bool>,
}

impl Default for FdState {
    fn default() -> Self {
        FdState {
            ops: VecDeque::new(),
            interest: EpollFlags::empty(),
            always: false,
            dgram: None,
            socket: None,
        }
    }
}

/// What trying an operation came to.
enum Step {
    /// Its (last) completion.
    Done(i32, u32),
    /// Wait until the descriptor is ready for it.
    Park,
    /// Posted later by the driver itself (a timeout).
    Later,
}

pub struct Emu {
    ep: Epoll,
    groups: Vec<Option<Group>>,
    sq: Vec<Op>,
    /// The other submission queue's memory, swapped in each turn.
    spare: Vec<Op>,
    cq: VecDeque<(u64, i32, u32)>,
    fds: HashMap<RawFd, FdState>,
    timers: Vec<(Instant, u64)>,
    events: Vec<EpollEvent>,
}

fn errno() -> i32 {
    Errno::last_raw()
}

/// The epoll events an operation waits for.
fn wants(sqe: &Sqe) -> EpollFlags {
    match sqe {
        Sqe::Read { .. } | Sqe::ReadMulti { .. } => EpollFlags::EPOLLIN,
        Sqe::Write { .. } | Sqe::Send { .. } | Sqe::SendMsg { .. } => EpollFlags::EPOLLOUT,
        Sqe::Poll { events, .. } => EpollFlags::from_bits_truncate(*events as i32),
        _ => EpollFlags::empty(),
    }
}

fn is_multi_poll(op: &Op) -> bool {
    matches!(op.sqe, Sqe::Poll { multi: true, .. })
}

impl Emu {
    pub fn new() -> io::Result<Emu> {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        Ok(Emu {
            ep,
            groups: Vec::new(),
            sq: Vec::new(),
            spare: Vec::new(),
            cq: VecDeque::new(),
            fds: HashMap::new(),
            timers: Vec::new(),
            events: vec![EpollEvent::empty(); 64],
        })
    }

    pub fn register_group(&mut self, base: *mut BufRingEntry, entries: u16, bgid: u16) {
        let i = bgid as usize;
        if self.groups.len() <= i {
            self.groups.resize_with(i + 1, || None);
        }
        self.groups[i] = Some(Group {
            base,
            mask: entries - 1,
            head: 0,
        });
    }

    pub fn push(&mut self, op: Op) {
        self.sq.push(op);
    }

    pub fn completions(&mut self, out: &mut Vec<(u64, i32, u32)>) {
        out.extend(self.cq.drain(..));
    }

    fn target_of(&self, sqe: &Sqe) -> Option<RawFd> {
        match *sqe {
            Sqe::Read { fd, .. }
            | Sqe::ReadMulti { fd, .. }
            | Sqe::Write { fd, .. }
            | Sqe::Send { fd, .. }
            | Sqe::SendMsg { fd, .. }
            | Sqe::Poll { fd, .. } => Some(fd),
            _ => None,
        }
    }

    /// Runs what was pushed, then waits until `want` completions are there (at most
    /// `timeout`: ETIME when it ran out with fewer).
    pub fn submit_and_wait(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<usize> {
        let n = self.sq.len();
        self.run_submissions();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.run_always_ready();
            self.fire_timers();
            if self.cq.len() >= want {
                return Ok(n);
            }
            let now = Instant::now();
            let mut until = deadline;
            if let Some(t) = self.timers.iter().map(|(t, _)| *t).min() {
                until = Some(until.map_or(t, |u| u.min(t)));
            }
            let ms: Option<u64> = until.map(|u| {
                let d = u.saturating_duration_since(now);
                // Rounded up: a timer never fires early.
                (d.as_nanos() as u64).div_ceil(1_000_000)
            });
            if deadline.is_some_and(|d| d <= now) {
                return Err(io::Error::from_raw_os_error(libc::ETIME));
            }
            let always = self.fds.values().any(|s| s.always && !s.ops.is_empty());
            let wait = if always {
                EpollTimeout::ZERO
            } else {
                match ms {
                    None => EpollTimeout::NONE,
                    Some(ms) => EpollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(EpollTimeout::NONE),
                }
            };
            let k = match self.ep.wait(&mut self.events, wait) {
                Ok(k) => k,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for i in 0..k {
                let ev = self.events[i];
                self.ready(ev.data() as RawFd, ev.events());
            }
        }
    }

    /// Busy polling ([`super::ring::Ring::busy_wait`]): runs what is queued, then polls epoll
    /// with a zero timeout until a completion is there (true) or `deadline` passes (false).
    pub fn busy_wait(&mut self, deadline: Instant) -> io::Result<bool> {
        self.run_submissions();
        loop {
            self.run_always_ready();
            self.fire_timers();
            if !self.cq.is_empty() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            let k = match self.ep.wait(&mut self.events, EpollTimeout::ZERO) {
                Ok(k) => k,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for i in 0..k {
                let ev = self.events[i];
                self.ready(ev.data() as RawFd, ev.events());
            }
        }
    }

    fn run_submissions(&mut self) {
        // The queue's memory is kept for the next turn (no allocation per operation).
        let sq = std::mem::replace(&mut self.sq, std::mem::take(&mut self.spare));
        let mut i = 0;
        while i < sq.len() {
            let mut j = i;
            while sq[j].link != Link::None && j + 1 < sq.len() {
                j += 1;
            }
            self.run_chain(sq[i], &sq[i + 1..=j]);
            i = j + 1;
        }
        self.spare = sq;
        self.spare.clear();
    }

    fn post(&mut self, user_data: u64, res: i32, flags: u32) {
        self.cq.push_back((user_data, res, flags));
    }

    /// Runs a chain (`first`, then `rest`) until one operation has to wait (parked with what
    /// follows it). Runs of sends on one socket go out in one sendmmsg(2).
    fn run_chain(&mut self, first: Op, rest: &[Op]) {
        let at = |k: usize| if k == 0 { first } else { rest[k - 1] };
        let n = 1 + rest.len();
        let mut k = 0;
        while k < n {
            let op = at(k);
            let sent = self.send_run(k, n, &at);
            if sent > 0 {
                k += sent;
                continue;
            }
            match self.exec(&op) {
                Step::Done(res, flags) => {
                    self.post(op.user_data, res, flags);
                    if op.link == Link::Soft && res < 0 {
                        for j in k + 1..n {
                            self.post(at(j).user_data, -libc::ECANCELED, 0);
                        }
                        return;
                    }
                }
                Step::Park => {
                    let fd = self.target_of(&op.sqe).unwrap_or(-1);
                    let rest = (k + 1..n).map(at).collect();
                    self.park(fd, Parked { op, rest });
                    return;
                }
                Step::Later => {}
            }
            k += 1;
        }
    }

    /// Sends the run of datagrams from `at(k)` on (sendmsg, or write on a socket, to one
    /// descriptor with one set of flags, linked) with one sendmmsg(2); returns how many went
    /// (their completions posted), 0 when there is no run of two or the first did not go (it
    /// is then tried alone, which says why).
    fn send_run(&mut self, k: usize, n: usize, at: &impl Fn(usize) -> Op) -> usize {
        // (descriptor, flags) of a send that can join a batch.
        let key = |s: &mut Self, op: &Op| -> Option<(RawFd, i32)> {
            match op.sqe {
                Sqe::SendMsg { fd, flags, .. } => Some((fd, flags as i32)),
                Sqe::Write { fd, .. } => s.is_socket(fd).then_some((fd, 0)),
                _ => None,
            }
        };
        let Some(first) = key(self, &at(k)) else {
            return 0;
        };
        let mut m = k + 1;
        while m < n && m - k < SEND_BATCH && at(m - 1).link != Link::None && key(self, &at(m)) == Some(first)
        {
            m += 1;
        }
        if m - k < 2 {
            return 0;
        }
        // SAFETY: an all-zero mmsghdr is a valid empty value.
        let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: an all-zero iovec is a valid empty value.
        let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
        for (i, j) in (k..m).enumerate() {
            match at(j).sqe {
                // SAFETY: the loop keeps the msghdr (and what it points to) until the completion.
                Sqe::SendMsg { msg, .. } => msgs[i].msg_hdr = unsafe { *msg },
                Sqe::Write { buf, len, .. } => {
                    iovs[i] = libc::iovec {
                        iov_base: buf.cast_mut().cast(),
                        iov_len: len as usize,
                    };
                    msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                    msgs[i].msg_hdr.msg_iovlen = 1;
                }
                _ => unreachable!("a batch holds sends only"),
            }
        }
        let cnt = (m - k) as u32;
        let r = retry(|| {
            // SAFETY: `cnt` initialised headers whose buffers, iovecs and addresses the loop
            // keeps until the completions.
            let r = unsafe { libc::sendmmsg(first.0, msgs.as_mut_ptr(), cnt, first.1) };
            if r < 0 {
                Err(errno())
            } else {
                Ok(r as usize)
            }
        });
        let Ok(sent) = r else { return 0 };
        for (i, j) in (k..k + sent).enumerate() {
            self.post(at(j).user_data, msgs[i].msg_len as i32, 0);
        }
        sent
    }

    fn park(&mut self, fd: RawFd, p: Parked) {
        self.fds.entry(fd).or_default().ops.push_back(p);
        self.update_interest(fd);
    }

    /// Registers what the parked operations of `fd` wait for.
    fn update_interest(&mut self, fd: RawFd) {
        let Some(st) = self.fds.get_mut(&fd) else {
            return;
        };
        if st.always {
            return;
        }
        let mut want = EpollFlags::empty();
        for p in &st.ops {
            want |= wants(&p.op.sqe);
        }
        if !want.is_empty() && st.ops.iter().all(|p| is_multi_poll(&p.op)) {
            want |= EpollFlags::EPOLLET;
        }
        if want == st.interest {
            return;
        }
        // SAFETY: not unsafe; the descriptor belongs to the loop, which cancels its operations
        // before closing it.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut ev = EpollEvent::new(want, fd as u64);
        let r = if want.is_empty() {
            self.ep.delete(bfd)
        } else if st.interest.is_empty() {
            self.ep.add(bfd, ev).or_else(|e| match e {
                Errno::EEXIST => self.ep.modify(bfd, &mut ev),
                e => Err(e),
            })
        } else {
            self.ep.modify(bfd, &mut ev).or_else(|e| match e {
                Errno::ENOENT => self.ep.add(bfd, ev),
                e => Err(e),
            })
        };
        match r {
            Ok(()) => st.interest = want,
            // A regular file: never waits.
            Err(Errno::EPERM) => st.always = true,
            Err(_) => st.interest = EpollFlags::empty(),
        }
    }

    /// Descriptor `fd` has `got`: its parked operations that wait for it go on.
    fn ready(&mut self, fd: RawFd, got: EpollFlags) {
        let Some(st) = self.fds.get_mut(&fd) else {
            return;
        };
        let err = EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP;
        // Each operation parked now once; those that park again go to the back.
        for _ in 0..st.ops.len() {
            let Some(p) = self.fds.get_mut(&fd).and_then(|s| s.ops.pop_front()) else {
                break;
            };
            let w = wants(&p.op.sqe);
            if !got.intersects(w | err) {
                self.fds.entry(fd).or_default().ops.push_back(p);
                continue;
            }
            if let Sqe::Poll {
                events, multi: true, ..
            } = p.op.sqe
            {
                let mask = events | (libc::POLLERR | libc::POLLHUP) as u32;
                self.post(p.op.user_data, (got.bits() as u32 & mask) as i32, F_MORE);
                self.fds.entry(fd).or_default().ops.push_back(p);
                continue;
            }
            self.run_chain(p.op, &p.rest);
        }
        self.update_interest(fd);
    }

    fn run_always_ready(&mut self) {
        let fds: Vec<RawFd> = self
            .fds
            .iter()
            .filter(|(_, s)| s.always && !s.ops.is_empty())
            .map(|(f, _)| *f)
            .collect();
        for fd in fds {
            self.ready(fd, EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT);
        }
    }

    fn fire_timers(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut i = 0;
        while i < self.timers.len() {
            if self.timers[i].0 <= now {
                let (_, ud) = self.timers.swap_remove(i);
                self.post(ud, -libc::ETIME, 0);
            } else {
                i += 1;
            }
        }
    }

    fn is_socket(&mut self, fd: RawFd) -> bool {
        if fd < 0 {
            return false;
        }
        let st = self.fds.entry(fd).or_default();
        *st.socket.get_or_insert_with(|| {
            // SAFETY: the descriptor is the loop's, open while its operations run.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            crate::engine::port::is_socket(b).unwrap_or(false)
        })
    }

    fn is_dgram(&mut self, fd: RawFd) -> bool {
        let st = self.fds.entry(fd).or_default();
        *st.dgram.get_or_insert_with(|| {
            // SAFETY: the descriptor is the loop's, open while its operations run.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            crate::engine::port::is_dgram(b)
        })
    }

    /// The next buffer of group `g`: (address, length, id), not taken yet.
    fn peek_buf(&self, g: u16) -> Option<(*mut u8, u32, u16)> {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }];
        let mut bid = [0u16];
        (self.peek_bufs(g, &mut iov, &mut bid) == 1)
            .then(|| (iov[0].iov_base.cast(), iov[0].iov_len as u32, bid[0]))
    }

    /// A multishot receive on a datagram socket: recvmmsg(2) into as many of the group's
    /// buffers as it has (up to [`SEND_BATCH`]), until the socket is empty, the buffers run out
    /// (ENOBUFS, the end of the operation) or the burst is spent. Each datagram is one
    /// completion with its buffer, an empty one too (the loop hands that buffer back).
    fn recv_batches(&mut self, user_data: u64, f: RawFd, group: u16) -> Step {
        let mut done = 0;
        while done < MULTI_BURST {
            // SAFETY: an all-zero mmsghdr is a valid empty value.
            let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: an all-zero iovec is a valid empty value.
            let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
            let mut bids = [0u16; SEND_BATCH];
            let k = self.peek_bufs(group, &mut iovs, &mut bids);
            if k == 0 {
                return no_buffer(f);
            }
            for i in 0..k {
                msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            let r = retry(|| {
                // SAFETY: `k` headers, each with one iovec on a provided buffer that nothing
                // else uses until its completion is reaped.
                let r = unsafe {
                    libc::recvmmsg(
                        f,
                        msgs.as_mut_ptr(),
                        k as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if r < 0 {
                    Err(errno())
                } else {
                    Ok(r as usize)
                }
            });
            match r {
                Ok(got) => {
                    for i in 0..got {
                        self.take_buf(group);
                        let flags = F_MORE | F_BUFFER | (bids[i] as u32) << BUFFER_SHIFT;
                        self.post(user_data, msgs[i].msg_len as i32, flags);
                    }
                    done += got;
                    if got < k {
                        // The socket is empty now.
                        return Step::Park;
                    }
                }
                Err(libc::EAGAIN) => return Step::Park,
                Err(e) => return Step::Done(-e, 0),
            }
        }
        Step::Park
    }

    /// The next buffers of group `g`, not taken yet, into `iovs` and `bids`; how many.
    fn peek_bufs(&self, g: u16, iovs: &mut [libc::iovec], bids: &mut [u16]) -> usize {
        let Some(Some(grp)) = self.groups.get(g as usize) else {
            return 0;
        };
        // SAFETY: the ring header was registered by the loop, which keeps its memory for as
        // long as the driver lives; the tail is a naturally aligned u16 the loop publishes
        // with release stores.
        let tail = unsafe { &*BufRingEntry::tail(grp.base).cast::<AtomicU16>() }.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(grp.head) as usize;
        let k = avail.min(iovs.len());
        for i in 0..k {
            let idx = grp.head.wrapping_add(i as u16) & grp.mask;
            // SAFETY: idx < entries: inside the ring; the entry was published (before the
            // tail) and is not rewritten until the loop gets the buffer back from a completion.
            let e = unsafe { &*grp.base.add(idx as usize) };
            iovs[i] = libc::iovec {
                iov_base: e.addr() as *mut libc::c_void,
                iov_len: e.len() as usize,
            };
            bids[i] = e.bid();
        }
        k
    }

    fn take_buf(&mut self, g: u16) {
        if let Some(Some(grp)) = self.groups.get_mut(g as usize) {
            grp.head = grp.head.wrapping_add(1);
        }
    }

    /// Tries `op` once (a multishot one until it has to wait or ends).
    fn exec(&mut self, op: &Op) -> Step {
        match op.sqe {
            Sqe::Read {
                fd: f,
                buf,
                len,
                socket,
            } => done(retry(|| read_into(f, buf, len as usize, socket))),
            Sqe::ReadMulti { fd: f, group, socket } => self.read_multi(op.user_data, f, group, socket),
            Sqe::Write { fd: f, buf, len } => {
                // SAFETY: the loop keeps `buf` (len bytes) until the completion.
                done(retry(|| res(unsafe { libc::write(f, buf.cast(), len as usize) })))
            }
            Sqe::Send {
                fd: f,
                buf,
                len,
                flags,
                dest,
            } => {
                let (a, alen) = dest.unwrap_or((std::ptr::null(), 0));
                // SAFETY: the loop keeps the frame and the address until the completion.
                let r = retry(|| res(unsafe { libc::sendto(f, buf.cast(), len as usize, flags, a, alen) }));
                if flags & libc::MSG_DONTWAIT != 0 {
                    return Step::Done(r.map_or_else(|e| -e, |n| n as i32), 0);
                }
                done(r)
            }
            Sqe::SendMsg { fd: f, msg, flags } => {
                // SAFETY: the loop keeps the msghdr and what it points to until the completion.
                let r = retry(|| res(unsafe { libc::sendmsg(f, msg, flags as i32) }));
                if flags as i32 & libc::MSG_DONTWAIT != 0 {
                    return Step::Done(r.map_or_else(|e| -e, |n| n as i32), 0);
                }
                done(r)
            }
            Sqe::Poll { fd: f, events, multi } => poll_once(f, events, multi),
            Sqe::Timeout { after } => {
                // SAFETY: the loop keeps the interval until the timeout completes.
                let dur = unsafe { (*after).dur };
                self.timers.push((Instant::now() + dur, op.user_data));
                Step::Later
            }
            Sqe::Cancel { user_data } => {
                let n = self.cancel(|ud| ud == user_data);
                Step::Done(if n > 0 { 0 } else { -libc::ENOENT }, 0)
            }
            Sqe::CancelFd { fd } => {
                let n = self.cancel_fd(fd);
                Step::Done(if n > 0 { n as i32 } else { -libc::ENOENT }, 0)
            }
            Sqe::CancelAll => {
                let n = self.cancel(|_| true);
                Step::Done(if n > 0 { n as i32 } else { -libc::ENOENT }, 0)
            }
        }
    }

    /// A multishot read from `f` into buffers of `group`: a datagram socket's in batches
    /// (`recv_batches`), anything else one read per buffer, a burst at most, each posted.
    fn read_multi(&mut self, ud: u64, f: RawFd, group: u16, socket: bool) -> Step {
        let dgram = socket && self.is_dgram(f);
        if dgram {
            return self.recv_batches(ud, f, group);
        }
        for _ in 0..MULTI_BURST {
            let Some((p, blen, bid)) = self.peek_buf(group) else {
                return no_buffer(f);
            };
            match retry(|| read_into(f, p, blen as usize, socket)) {
                Ok(0) if dgram => self.post(ud, 0, F_MORE),
                Ok(0) => return Step::Done(0, 0),
                Ok(n) => {
                    self.take_buf(group);
                    let flags = F_MORE | F_BUFFER | (bid as u32) << BUFFER_SHIFT;
                    self.post(ud, n as i32, flags);
                }
                Err(libc::EAGAIN) => return Step::Park,
                Err(e) => return Step::Done(-e, 0),
            }
        }
        Step::Park
    }

    /// Cancels the parked operations (and timers) that `pick` chooses, with their chains.
    fn cancel(&mut self, pick: impl Fn(u64) -> bool) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.timers.len() {
            let ud = self.timers[i].1;
            if pick(ud) {
                self.timers.swap_remove(i);
                self.post(ud, -libc::ECANCELED, 0);
                n += 1;
            } else {
                i += 1;
            }
        }
        let fds: Vec<RawFd> = self.fds.keys().copied().collect();
        for fd in fds {
            let Some(st) = self.fds.get_mut(&fd) else { continue };
            let ops = std::mem::take(&mut st.ops);
            let mut keep = VecDeque::new();
            for p in ops {
                if pick(p.op.user_data) {
                    n += 1;
                    self.post(p.op.user_data, -libc::ECANCELED, 0);
                    for o in p.rest {
                        self.post(o.user_data, -libc::ECANCELED, 0);
                    }
                } else {
                    keep.push_back(p);
                }
            }
            if let Some(st) = self.fds.get_mut(&fd) {
                st.ops = keep;
            }
            self.update_interest(fd);
        }
        n
    }

    fn cancel_fd(&mut self, fd: RawFd) -> usize {
        let Some(st) = self.fds.get_mut(&fd) else {
            return 0;
        };
        let ops = std::mem::take(&mut st.ops);
        let n = ops.len();
        for p in ops {
            self.post(p.op.user_data, -libc::ECANCELED, 0);
            for o in p.rest {
                self.post(o.user_data, -libc::ECANCELED, 0);
            }
        }
        self.update_interest(fd);
        // A closed descriptor's number may come back as another file: forget what was
        // learnt of this one.
        self.fds.remove(&fd);
        n
    }
}

/// One result of a syscall: Ok(n) or Err(errno).
fn res(r: isize) -> Result<usize, i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

/// The step a syscall's result makes: done, or parked on EAGAIN.
fn done(r: Result<usize, i32>) -> Step {
    match r {
        Ok(n) => Step::Done(n as i32, 0),
        Err(libc::EAGAIN) => Step::Park,
        Err(e) => Step::Done(-e, 0),
    }
}

/// A one-shot poll of `f` for `events`, without waiting: done with the events that came, or
/// parked (a multishot poll is always parked).
fn poll_once(f: RawFd, events: u32, multi: bool) -> Step {
    if multi {
        return Step::Park;
    }
    let mut p = libc::pollfd {
        fd: f,
        events: events as i16,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack, zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    if r > 0 {
        Step::Done(p.revents as u16 as i32, 0)
    } else {
        Step::Park
    }
}

/// A multishot receive with no buffer left: as io_uring, ENOBUFS (the end of the operation)
/// only when something waits to be received; otherwise it stays armed.
fn no_buffer(fd: RawFd) -> Step {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack, zero timeout.
    if unsafe { libc::poll(&mut p, 1, 0) } > 0 {
        Step::Done(-libc::ENOBUFS, 0)
    } else {
        Step::Park
    }
}

/// Retries a syscall interrupted by a signal.
fn retry(mut f: impl FnMut() -> Result<usize, i32>) -> Result<usize, i32> {
    loop {
        match f() {
            Err(libc::EINTR) => {}
            r => return r,
        }
    }
}

/// read(2), or recv(2) on a socket, of at most `len` bytes into `p`.
fn read_into(fd: RawFd, p: *mut u8, len: usize, socket: bool) -> Result<usize, i32> {
    // SAFETY: `p` is a loop buffer (given, or a provided buffer of `len` bytes or more) that
    // nothing else uses until its completion is reaped.
    let r = unsafe {
        if socket {
            libc::recv(fd, p.cast(), len, 0)
        } else {
            libc::read(fd, p.cast(), len)
        }
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ring::{Interval, Link, Ring, Sqe};
    use super::super::BufRing;
    use io_uring::cqueue;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    fn ring() -> Ring {
        Ring::emulated().expect("epoll")
    }

    fn wait(r: &mut Ring, want: usize) -> Vec<(u64, i32, u32)> {
        let tick = Interval::new(Duration::from_millis(500));
        let _ = r.submit_and_wait(want, Some(&tick));
        let mut out = Vec::new();
        r.completions(&mut out);
        out
    }

    /// The flags the driver posts read back as io_uring's would.
    #[test]
    fn multishot_receive_posts_buffers_then_enobufs() {
        let (a, b) = UnixDatagram::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut br = BufRing::new(2, 256, 16).unwrap();
        let mut r = ring();
        r.register_buf_ring(&mut br, 3).unwrap();
        let op = Sqe::ReadMulti {
            fd: b.as_raw_fd(),
            group: 3,
            socket: true,
        }
        .op(7);
        // SAFETY: the buffer ring outlives every completion of the test.
        unsafe { r.push(&op) }.unwrap();
        let c = wait(&mut r, 0);
        assert!(c.is_empty(), "nothing to read yet: parked, {c:?}");
        a.send(b"first").unwrap();
        a.send(b"").unwrap();
        a.send(b"second").unwrap();
        a.send(b"third").unwrap();
        let c = wait(&mut r, 3);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!((c[0].0, c[0].1), (7, 5));
        assert!(cqueue::more(c[0].2));
        let b0 = cqueue::buffer_select(c[0].2).expect("a buffer");
        assert_eq!(br.data(b0, 0, 5), b"first");
        // An empty datagram comes with its buffer (received by recvmmsg with the others), which
        // the loop hands back; the second buffer is then the last one: the third datagram ends
        // the multishot with ENOBUFS.
        assert_eq!(c[1].1, 0);
        assert!(cqueue::more(c[1].2));
        let b1 = cqueue::buffer_select(c[1].2).expect("a buffer");
        assert_ne!(b0, b1);
        assert_eq!(c[2].1, -libc::ENOBUFS);
        assert!(!cqueue::more(c[2].2));
        // Handed back, the buffer takes the rest when the receive is armed again.
        br.push(b1);
        br.push(b0);
        br.publish();
        // SAFETY: as above.
        unsafe { r.push(&op) }.unwrap();
        let c = wait(&mut r, 2);
        // Nothing left to receive: no ENOBUFS although the buffers ran out again.
        assert_eq!(c.len(), 2, "{c:?}");
        let b2 = cqueue::buffer_select(c[0].2).expect("a buffer");
        assert_eq!(br.data(b2, 0, 6), b"second");
        let b3 = cqueue::buffer_select(c[1].2).expect("a buffer");
        assert_eq!(br.data(b3, 0, 5), b"third");
    }

    #[test]
    fn a_failed_soft_link_cancels_the_rest_of_its_chain() {
        let (a, _b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let frame = [1u8; 32];
        let mut r = ring();
        let bad = Sqe::Write {
            fd: -1,
            buf: frame.as_ptr(),
            len: 32,
        };
        let good = Sqe::Write {
            fd: a.as_raw_fd(),
            buf: frame.as_ptr(),
            len: 32,
        };
        // SAFETY: `frame` outlives the completions (all come before the test ends).
        unsafe {
            r.push(&bad.op(1).link(Link::Soft)).unwrap();
            r.push(&good.op(2).link(Link::Soft)).unwrap();
            r.push(&good.op(3)).unwrap();
            r.push(&bad.op(4).link(Link::Hard)).unwrap();
            r.push(&good.op(5)).unwrap();
        }
        let c = wait(&mut r, 5);
        assert_eq!(
            c,
            vec![
                (1, -libc::EBADF, 0),
                (2, -libc::ECANCELED, 0),
                (3, -libc::ECANCELED, 0),
                (4, -libc::EBADF, 0),
                (5, 32, 0)
            ]
        );
    }

    #[test]
    fn dontwait_sends_say_eagain_and_timeouts_and_cancels_complete() {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let frame = [0u8; 1024];
        let mut r = ring();
        let send = Sqe::Send {
            fd: a.as_raw_fd(),
            buf: frame.as_ptr(),
            len: 1024,
            flags: libc::MSG_DONTWAIT,
            dest: None,
        };
        let mut got = Vec::new();
        for i in 0..100_000u64 {
            // SAFETY: `frame` outlives the completion, reaped right away.
            unsafe { r.push(&send.op(i)) }.unwrap();
            got = wait(&mut r, 1);
            if got[0].1 < 0 {
                break;
            }
        }
        assert_eq!(got[0].1, -libc::EAGAIN, "a full queue says EAGAIN");
        // Without MSG_DONTWAIT the send waits for room, and goes once the peer reads.
        let wait_send = Sqe::Send {
            fd: a.as_raw_fd(),
            buf: frame.as_ptr(),
            len: 1024,
            flags: 0,
            dest: None,
        };
        let ms = Interval::new(Duration::from_millis(20));
        // SAFETY: as above; the interval outlives the timeout.
        unsafe {
            r.push(&wait_send.op(100)).unwrap();
            r.push(&Sqe::Timeout { after: &ms }.op(200)).unwrap();
        }
        assert_eq!(wait(&mut r, 1), vec![(200, -libc::ETIME, 0)]);
        let mut buf = [0u8; 2048];
        b.set_nonblocking(true).unwrap();
        while b.recv(&mut buf).is_ok() {}
        assert_eq!(wait(&mut r, 1), vec![(100, 1024, 0)]);
        // A parked receive is cancelled by its user_data; the cancel says 0.
        let (_c, d) = UnixDatagram::pair().unwrap();
        d.set_nonblocking(true).unwrap();
        let recv = Sqe::Read {
            fd: d.as_raw_fd(),
            buf: buf.as_mut_ptr(),
            len: 2048,
            socket: true,
        };
        // SAFETY: `buf` outlives the completion.
        unsafe {
            r.push(&recv.op(300)).unwrap();
            r.push(&Sqe::Cancel { user_data: 300 }.op(301)).unwrap();
            r.push(&Sqe::Cancel { user_data: 999 }.op(302)).unwrap();
        }
        assert_eq!(
            wait(&mut r, 3),
            vec![(300, -libc::ECANCELED, 0), (301, 0, 0), (302, -libc::ENOENT, 0)]
        );
    }

    /// A multishot poll fires once per readiness edge (as io_uring's does on each wake-up), not
    /// on every wait while the descriptor stays readable, so a loop that leaves work pending
    /// (a full set of joining clients) does not spin.
    #[test]
    fn a_multishot_poll_fires_per_edge_until_cancelled() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let mut r = ring();
        let poll = Sqe::Poll {
            fd: b.as_raw_fd(),
            events: libc::POLLIN as u32,
            multi: true,
        };
        // SAFETY: no memory is referenced.
        unsafe { r.push(&poll.op(9)) }.unwrap();
        assert!(wait(&mut r, 0).is_empty());
        a.send(b"x").unwrap();
        let c = wait(&mut r, 1);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].0, c[0].1 & libc::POLLIN as i32), (9, libc::POLLIN as i32));
        assert!(cqueue::more(c[0].2));
        // Still readable, nothing new: no second completion.
        let tick = Interval::new(Duration::from_millis(30));
        assert!(r.submit_and_wait(1, Some(&tick)).is_err(), "ETIME");
        let mut out = Vec::new();
        r.completions(&mut out);
        assert!(out.is_empty(), "{out:?}");
        // A new datagram is a new edge.
        a.send(b"y").unwrap();
        assert_eq!(wait(&mut r, 1).len(), 1);
        // SAFETY: as above.
        unsafe { r.push(&Sqe::CancelFd { fd: b.as_raw_fd() }.op(10)) }.unwrap();
        let c = wait(&mut r, 2);
        assert_eq!(c, vec![(9, -libc::ECANCELED, 0), (10, 1, 0)]);
    }

    /// A linked run of sends to one socket goes out in one sendmmsg, in order, each with its
    /// own completion; a run that meets a full queue sends what fits and the rest waits.
    #[test]
    fn linked_sends_go_out_together_in_order() {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let frames: Vec<[u8; 3]> = (0..5u8).map(|i| [i; 3]).collect();
        let mut r = ring();
        // SAFETY: `frames` outlives the completions, all reaped below.
        unsafe {
            for (i, f) in frames.iter().enumerate() {
                let link = if i + 1 < frames.len() {
                    Link::Hard
                } else {
                    Link::None
                };
                let w = Sqe::Write {
                    fd: a.as_raw_fd(),
                    buf: f.as_ptr(),
                    len: 3,
                };
                r.push(&w.op(i as u64).link(link)).unwrap();
            }
        }
        let c = wait(&mut r, 5);
        assert_eq!(c, (0..5u64).map(|i| (i, 3, 0)).collect::<Vec<_>>());
        let mut buf = [0u8; 8];
        for i in 0..5u8 {
            assert_eq!(b.recv(&mut buf).unwrap(), 3);
            assert_eq!(buf[0], i);
        }
    }
}
