//! The seam between the loops and the kernel: the operations the io_uring loops submit, typed,
//! and the two drivers that carry them out. [`Ring::Kernel`] hands them to io_uring;
//! [`Ring::Emulated`] (`emu.rs`) does each one with the plain syscall when epoll says its
//! descriptor is ready, and posts the same completion io_uring would (result, `MORE`, the
//! provided buffer it picked). The loop (`node.rs`) is written once against this interface,
//! so `--engine poll` runs the very same per-frame code as the default.

use super::emu::Emu;
use super::{is_retry, BufRing};
use io_uring::{opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// How an operation is tied to the next one pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    None,
    /// The next one runs after this one; a failure (result < 0) cancels the rest of the chain.
    Soft,
    /// The next one runs after this one, whatever its result.
    Hard,
}

/// A relative time, as the kernel and the emulation each need it. Kept (boxed) by the loop
/// for as long as a timeout that points to it is in flight.
pub struct Interval {
    ts: types::Timespec,
    pub dur: Duration,
}

impl Interval {
    pub fn new(dur: Duration) -> Interval {
        Interval {
            ts: types::Timespec::from(dur),
            dur,
        }
    }
}

/// One operation. Pointers must stay valid and unmoved until its last completion is reaped.
#[derive(Clone, Copy, Debug)]
pub enum Sqe {
    /// read(2) (`socket`: recv(2)) of at most `len` bytes into `buf`, at the file position.
    Read {
        fd: RawFd,
        buf: *mut u8,
        len: u32,
        socket: bool,
    },
    /// Multishot read(2)/recv(2): one completion (with `MORE`) per read, each into a buffer
    /// of `group`, until an error, end of file or no buffer left (ENOBUFS).
    ReadMulti { fd: RawFd, group: u16, socket: bool },
    /// write(2) at the file position.
    Write { fd: RawFd, buf: *const u8, len: u32 },
    /// send(2), or sendto(2) with `dest`. With MSG_DONTWAIT in `flags`, EAGAIN is the result
    /// instead of a wait for room.
    Send {
        fd: RawFd,
        buf: *const u8,
        len: u32,
        flags: i32,
        dest: Option<(*const libc::sockaddr, libc::socklen_t)>,
    },
    SendMsg {
        fd: RawFd,
        msg: *const libc::msghdr,
        flags: u32,
    },
    /// Completes with the poll events once `events` are ready; `multi`: again every time.
    Poll { fd: RawFd, events: u32, multi: bool },
    /// Completes with -ETIME after the interval.
    Timeout { after: *const Interval },
    /// Cancels the operation with this user_data.
    Cancel { user_data: u64 },
    /// Cancels every operation on the descriptor.
    CancelFd { fd: RawFd },
    /// Cancels everything in flight.
    CancelAll,
}

/// An operation with its user_data and its link to the next one.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    pub sqe: Sqe,
    pub user_data: u64,
    pub link: Link,
}

impl Sqe {
    /// As an operation with `user_data`, unlinked.
    pub fn op(self, user_data: u64) -> Op {
        Op {
            sqe: self,
            user_data,
            link: Link::None,
        }
    }
}

impl Op {
    pub fn link(mut self, link: Link) -> Op {
        self.link = link;
        self
    }

    /// The io_uring entry for this operation.
    fn entry(&self) -> squeue::Entry {
        let e = match self.sqe {
            Sqe::Read {
                fd,
                buf,
                len,
                socket: true,
            } => opcode::Recv::new(types::Fd(fd), buf, len).build(),
            // Offset -1: the file position (a regular file is read on from where it is;
            // pipes, sockets and devices ignore it).
            Sqe::Read { fd, buf, len, .. } => opcode::Read::new(types::Fd(fd), buf, len)
                .offset(u64::MAX)
                .build(),
            Sqe::ReadMulti {
                fd,
                group,
                socket: true,
            } => opcode::RecvMulti::new(types::Fd(fd), group).build(),
            Sqe::ReadMulti { fd, group, .. } => opcode::ReadMulti::new(types::Fd(fd), 0, group).build(),
            Sqe::Write { fd, buf, len } => opcode::Write::new(types::Fd(fd), buf, len)
                .offset(u64::MAX)
                .build(),
            Sqe::Send {
                fd,
                buf,
                len,
                flags,
                dest,
            } => {
                // No address: null and 0, as for a plain send(2).
                let (a, alen) = dest.unwrap_or((std::ptr::null(), 0));
                opcode::Send::new(types::Fd(fd), buf, len)
                    .flags(flags)
                    .dest_addr(a)
                    .dest_addr_len(alen)
                    .build()
            }
            Sqe::SendMsg { fd, msg, flags } => opcode::SendMsg::new(types::Fd(fd), msg).flags(flags).build(),
            Sqe::Poll { fd, events, multi } => {
                opcode::PollAdd::new(types::Fd(fd), events).multi(multi).build()
            }
            Sqe::Timeout { after } => {
                // SAFETY: the caller keeps the interval until the timeout completes (the
                // pointer is only read here, to hand the kernel its timespec).
                let ts: *const types::Timespec = unsafe { &(*after).ts };
                opcode::Timeout::new(ts).build()
            }
            Sqe::Cancel { user_data } => opcode::AsyncCancel::new(user_data).build(),
            Sqe::CancelFd { fd } => {
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all()).build()
            }
            Sqe::CancelAll => opcode::AsyncCancel2::new(types::CancelBuilder::any()).build(),
        };
        let e = e.user_data(self.user_data);
        match self.link {
            Link::None => e,
            Link::Soft => e.flags(squeue::Flags::IO_LINK),
            Link::Hard => e.flags(squeue::Flags::IO_HARDLINK),
        }
    }
}

/// Which driver carries the operations out. One per loop thread, never moved on the hot path
/// (hence no box around the bigger variant).
#[allow(clippy::large_enum_variant)]
pub enum Ring {
    Kernel(IoUring),
    Emulated(Box<Emu>),
}

impl Ring {
    /// The epoll driver.
    pub fn emulated() -> io::Result<Ring> {
        Ok(Ring::Emulated(Box::new(Emu::new()?)))
    }

    /// Queues `op`; when the submission queue is full, submits what is queued first.
    ///
    /// # Safety
    /// Every buffer, iovec, msghdr, address and interval `op` points to must stay valid and
    /// unmoved until its last completion is reaped.
    pub unsafe fn push(&mut self, op: &Op) -> io::Result<()> {
        match self {
            Ring::Kernel(r) => {
                let e = op.entry();
                loop {
                    // SAFETY: per this function's contract.
                    if unsafe { r.submission().push(&e) }.is_ok() {
                        return Ok(());
                    }
                    match r.submit() {
                        Ok(_) => {}
                        Err(err) if is_retry(&err) => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            Ring::Emulated(e) => {
                e.push(*op);
                Ok(())
            }
        }
    }

    /// Free room in the submission queue (unbounded for the emulation).
    pub fn sq_room(&mut self) -> usize {
        match self {
            Ring::Kernel(r) => {
                let sq = r.submission();
                sq.capacity() - sq.len()
            }
            Ring::Emulated(_) => usize::MAX,
        }
    }

    /// Submits what is queued.
    pub fn submit(&mut self) -> io::Result<usize> {
        match self {
            Ring::Kernel(r) => r.submit(),
            Ring::Emulated(e) => e.submit_and_wait(0, None),
        }
    }

    /// Submits what is queued and waits for at least `want` completions, at most `timeout`
    /// (ETIME when it ran out).
    pub fn submit_and_wait(&mut self, want: usize, timeout: Option<&Interval>) -> io::Result<usize> {
        match self {
            Ring::Kernel(r) => match timeout {
                None => r.submit_and_wait(want),
                Some(iv) => {
                    let args = types::SubmitArgs::new().timespec(&iv.ts);
                    r.submitter().submit_with_args(want, &args)
                }
            },
            Ring::Emulated(e) => e.submit_and_wait(want, timeout.map(|iv| iv.dur)),
        }
    }

    /// Submits and waits for `want` completions, but at most `us` microseconds once the first
    /// is there (the kernel's batching wait; only when [`Ring::min_timeout`]).
    pub fn submit_and_wait_batch(&mut self, want: usize, us: u32) -> io::Result<usize> {
        match self {
            Ring::Kernel(r) => {
                let args = types::SubmitArgs::new().min_wait_usec(us);
                r.submitter().submit_with_args(want, &args)
            }
            Ring::Emulated(e) => e.submit_and_wait(1, None),
        }
    }

    /// Busy polling: submits what is queued, then spins until a completion is there or `budget`
    /// has passed with none, and then sleeps until one comes. On io_uring the
    /// spin reads the shared ring only: task work the kernel queued for this thread (a
    /// DEFER_TASKRUN receive whose data came) is flagged there (IORING_SETUP_TASKRUN_FLAG, set
    /// up for busy loops) and run by one io_uring_enter. The epoll driver polls epoll with a
    /// zero timeout.
    pub fn busy_wait(&mut self, budget: Duration) -> io::Result<usize> {
        if self.spin(budget)? {
            return Ok(0);
        }
        self.submit_and_wait(1, None)
    }

    /// The spin of [`Ring::busy_wait`]: true when a completion came within `budget`.
    fn spin(&mut self, budget: Duration) -> io::Result<bool> {
        let start = Instant::now();
        match self {
            Ring::Kernel(r) => loop {
                let (queued, work) = {
                    let sq = r.submission();
                    (!sq.is_empty(), sq.taskrun())
                };
                if queued || work {
                    // GETEVENTS is added by the crate when the task-run flag is up.
                    r.submit_and_wait(0)?;
                }
                if !r.completion().is_empty() {
                    return Ok(true);
                }
                if start.elapsed() >= budget {
                    return Ok(false);
                }
                std::hint::spin_loop();
            },
            Ring::Emulated(e) => e.busy_wait(start + budget),
        }
    }

    /// The kernel has the batching wait (IORING_FEAT_MIN_TIMEOUT).
    pub fn min_timeout(&self) -> bool {
        match self {
            Ring::Kernel(r) => r.params().is_feature_min_timeout(),
            Ring::Emulated(_) => false,
        }
    }

    /// Appends every completion ready to `out` as (user_data, result, flags).
    pub fn completions(&mut self, out: &mut Vec<(u64, i32, u32)>) {
        match self {
            Ring::Kernel(r) => {
                for c in r.completion() {
                    out.push((c.user_data(), c.result(), c.flags()));
                }
            }
            Ring::Emulated(e) => e.completions(out),
        }
    }

    /// Registers `br` as provided-buffer group `bgid`, publishing every buffer.
    pub fn register_buf_ring(&mut self, br: &mut BufRing, bgid: u16) -> io::Result<()> {
        match self {
            Ring::Kernel(r) => br.register_as(r, bgid),
            Ring::Emulated(e) => {
                br.set_group(bgid);
                e.register_group(br.ring_base(), br.entries(), bgid);
                br.publish();
                Ok(())
            }
        }
    }
}
