//! The io_uring engine: ring setup and probing, the registered buffer memory, and the one
//! submission path. All `unsafe` of the engine lives in this folder.

mod emu;
mod node;
mod restrict;
mod ring;

pub use node::run_nodes;

use io_uring::{opcode, types::BufRingEntry, IoUring, Probe};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// How a node thread's loop waits for completions (`uring::node`'s `Nodes::run`), on either
/// driver where a knob applies. vdens-fast and vdeplug-fast take the defaults but for
/// `busy_poll_us` (`--busy-poll`); `benches/engine.rs` turns one off at a time to measure what
/// it buys.
#[derive(Clone, Copy, Debug)]
pub struct UringTuning {
    /// io_uring: the ring is set up with IORING_SETUP_SINGLE_ISSUER |
    /// IORING_SETUP_DEFER_TASKRUN (completions run only when the thread waits), falling back
    /// to COOP_TASKRUN, then to a plain ring, when the kernel refuses; off: COOP_TASKRUN
    /// first. The epoll driver has no such set-up.
    pub defer_taskrun: bool,
    /// io_uring, on a thread that runs only ports' cables, when the kernel has the batching
    /// wait (IORING_FEAT_MIN_TIMEOUT, 6.12+): after a turn of at least [`MIN_BATCH`]
    /// completions the loop waits for as many as that turn brought (at most [`WAIT_BATCH`],
    /// at least the sends of its chains in flight), but at most this many microseconds once
    /// the first is there. 0, or any other thread: it returns at the first completion.
    pub batch_wait_us: u32,
    /// Busy polling (`--busy-poll USEC`), on either driver: before a loop sleeps it spins this
    /// many microseconds on its completion queue (io_uring, which then flags pending task work
    /// in the shared ring: IORING_SETUP_TASKRUN_FLAG) or on epoll, so a frame that comes within
    /// that time is taken without a wake-up (on a VM a sleeping vCPU's wake-up costs tens of
    /// microseconds). It replaces the batching wait. 0 = off. Costs a CPU while traffic flows:
    /// for dedicated cores.
    pub busy_poll_us: u32,
}

/// Completions a worker waits for per loop turn when batching (one send chain's worth).
pub const WAIT_BATCH: usize = 32;

/// Fewest completions in the last turn that make the next wait a batching wait. A ping
/// exchange gives turns of two (a tap write's completion and the reply the kernel made during
/// that write); with the batching wait from two on, the worker slept on a 20-us timer after
/// sending the reply, and on one CPU that timer fired in the middle of the peer's turn (seen
/// with `perf record -e sched:sched_switch,sched:sched_wakeup`). Measured (two vdens-fast over
/// ptp://, `ping -f`, alternating runs): on one CPU (taskset) 0.046-0.048 ms per round trip
/// from two on, 0.026-0.027 from four (classic vdens 0.024-0.025); on two CPUs 0.049-0.054
/// against 0.055-0.057, with iperf3 TCP, UDP 64 B and UDP 1400 B within the noise of each
/// other (three alternating rounds).
pub const MIN_BATCH: usize = 4;

impl Default for UringTuning {
    fn default() -> Self {
        UringTuning {
            defer_taskrun: true,
            // Measured (`cargo bench --bench engine -- flood`, 64-byte frames): returning at
            // the first completion gave 2.2 completions per turn with DEFER_TASKRUN (one frame
            // per io_uring_enter) and 2.9-4.0 us of worker CPU per frame; this batching wait
            // (with the adaptive count of `Nodes::run`) 1.9-3.2 us. A lone frame waits at most
            // this long.
            batch_wait_us: 20,
            busy_poll_us: 0,
        }
    }
}

/// The opcodes the worker uses; a kernel missing one gets the poll engine.
const NEEDED: &[(u8, &str)] = &[
    (opcode::ReadMulti::CODE, "READ_MULTISHOT"),
    (opcode::RecvMulti::CODE, "RECV (multishot)"),
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Send::CODE, "SEND"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
];

/// Why io_uring cannot carry the data plane here ([`probe`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// kernel.io_uring_disabled = 2.
    Disabled,
    /// A step of the probe failed: the step, and the system's reason.
    Step(&'static str, String),
    /// The kernel lacks operations the loops use.
    MissingOps(Vec<&'static str>),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Disabled => write!(f, "io_uring is disabled (kernel.io_uring_disabled = 2)"),
            Unavailable::Step(step, why) => write!(f, "{step}: {why}"),
            Unavailable::MissingOps(ops) => write!(f, "the kernel lacks io_uring ops {}", ops.join(", ")),
        }
    }
}

impl std::error::Error for Unavailable {}

/// Says why io_uring cannot carry the data plane here, or Ok if it can: ring setup, the ops the
/// worker needs (IORING_REGISTER_PROBE), and a provided-buffer ring registration. Probed once
/// per process: the tap set-up (offload or not) and the engine start ask the same question.
pub fn probe() -> Result<(), Unavailable> {
    static PROBED: std::sync::OnceLock<Result<(), Unavailable>> = std::sync::OnceLock::new();
    PROBED.get_or_init(probe_now).clone()
}

fn probe_now() -> Result<(), Unavailable> {
    let step = |what: &'static str| move |e: io::Error| Unavailable::Step(what, crate::sys::err_text(&e));
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if s.trim() == "2" {
            return Err(Unavailable::Disabled);
        }
    }
    let ring: IoUring = IoUring::new(8).map_err(step("io_uring_setup"))?;
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(step("IORING_REGISTER_PROBE"))?;
    let missing: Vec<&'static str> = NEEDED
        .iter()
        .filter(|(c, _)| !p.is_supported(*c))
        .map(|(_, n)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(Unavailable::MissingOps(missing));
    }
    let mut br = BufRing::new(8, 64, 0).map_err(step("buffer ring memory"))?;
    br.register(&ring).map_err(step("IORING_REGISTER_PBUF_RING"))?;
    let _ = ring.submitter().unregister_buf_ring(0);
    Ok(())
}

/// Why a ring or its buffers could not be set up.
#[derive(Debug)]
pub struct SetupError {
    pub msg: String,
    /// ENOMEM: no memory for a ring or for pinned buffers (unprivileged rings and pinned
    /// buffers count against RLIMIT_MEMLOCK): the thread can run on the epoll engine instead.
    pub memory: bool,
}

impl SetupError {
    /// `what` failed with `e`.
    pub fn io(what: &str, e: &io::Error) -> SetupError {
        SetupError {
            msg: format!("{what}: {}", crate::sys::err_text(e)),
            memory: e.raw_os_error() == Some(libc::ENOMEM),
        }
    }
}

/// Builds a worker's ring, with SINGLE_ISSUER + DEFER_TASKRUN when asked and the kernel accepts
/// them (completions then run only when this thread waits: no IPIs, no task-work interrupts),
/// else COOP_TASKRUN, else plain; restricted to the operations the loops use (`restrict`) and
/// enabled by this thread. With `busy` (busy polling) the kernel also flags pending task work
/// in the shared ring (IORING_SETUP_TASKRUN_FLAG), so a spinning loop sees it without a
/// syscall. Returns the ring and the setup used, for messages.
fn build_ring(entries: u32, cq: u32, defer: bool, busy: bool) -> io::Result<(IoUring, &'static str)> {
    let built = || {
        if defer {
            let mut b = IoUring::builder();
            b.setup_r_disabled()
                .setup_cqsize(cq)
                .setup_clamp()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_submit_all();
            if busy {
                b.setup_taskrun_flag();
            }
            if let Ok(r) = b.build(entries) {
                return Ok((r, "defer_taskrun"));
            }
        }
        let mut b = IoUring::builder();
        b.setup_r_disabled()
            .setup_cqsize(cq)
            .setup_coop_taskrun()
            .setup_submit_all();
        if busy {
            b.setup_taskrun_flag();
        }
        if let Ok(r) = b.build(entries) {
            return Ok((r, "coop_taskrun"));
        }
        IoUring::builder()
            .setup_r_disabled()
            .setup_cqsize(cq)
            .setup_clamp()
            .build(entries)
            .map(|r| (r, "plain"))
    };
    let (ring, mode) = built()?;
    Ok((restrict::enable(ring)?, mode))
}

/// A loop's ring on the driver `kind` names (see [`build_ring`] for io_uring's set-up), and
/// the set-up used, for messages.
fn new_ring(
    kind: crate::engine::EngineKind,
    entries: u32,
    cq: u32,
    tuning: &UringTuning,
) -> Result<(ring::Ring, &'static str), SetupError> {
    match kind {
        crate::engine::EngineKind::Uring => {
            let (r, mode) = build_ring(entries, cq, tuning.defer_taskrun, tuning.busy_poll_us > 0)
                .map_err(|e| SetupError::io("io_uring_setup", &e))?;
            Ok((ring::Ring::Kernel(r), mode))
        }
        crate::engine::EngineKind::Poll => Ok((
            ring::Ring::emulated().map_err(|e| SetupError::io("epoll_create1", &e))?,
            "epoll",
        )),
    }
}

/// EINTR/EAGAIN/EBUSY from io_uring_enter mean "try again later".
fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
    )
}

/// Anonymous memory for buffers, page-aligned, unmapped on drop. Not populated up front: a
/// page is allocated when the kernel first receives into it (on the node of the CPU that does,
/// the worker's own when it is pinned), so an idle vdens-fast holds only the pages its traffic
/// has used. Populating every buffer at start made each one-interface vdens-fast hold 12.4 MB
/// resident before any frame (about 3.4 MB without), which an NFV lab of 64 namespaces pays 64
/// times.
struct Arena {
    ptr: NonNull<u8>,
    len: usize,
}

impl Arena {
    pub fn new(len: usize) -> io::Result<Arena> {
        // SAFETY: anonymous private mapping at a kernel-chosen address; no existing memory is
        // affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Arena {
            ptr: NonNull::new(p.cast()).expect("mmap returned NULL"),
            len,
        })
    }

    pub fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by mmap with this length; the worker drops arenas only
        // when no operation can still use them.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

const PAGE: usize = 4096;

/// A provided-buffer ring (IORING_REGISTER_PBUF_RING): `entries` buffers of `size` bytes the
/// kernel picks from for each receive. The
/// kernel gets each buffer after its first `headroom` bytes, which stay free for a header to
/// be put in front of the received data (the virtio-net header of a tap write).
struct BufRing {
    mem: Arena,
    entries: u16,
    size: usize,
    headroom: usize,
    bgid: u16,
    /// Local tail; published to the kernel by [`BufRing::publish`].
    tail: u16,
    /// Buffers in the ring (available to the kernel, published or not).
    avail: u32,
    /// Bytes of the mapping: the ring of entries (page-rounded), then the buffers.
    total_len: usize,
}

impl BufRing {
    /// `entries` must be a power of two (kernel rule).
    pub fn new(entries: u16, size: usize, headroom: usize) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two() && headroom < size);
        let ring_bytes = (entries as usize * std::mem::size_of::<BufRingEntry>()).div_ceil(PAGE) * PAGE;
        let total_len = ring_bytes + entries as usize * size;
        let mem = Arena::new(total_len)?;
        let mut r = BufRing {
            mem,
            entries,
            size,
            headroom,
            bgid: 0,
            tail: 0,
            avail: 0,
            total_len,
        };
        let base = r.ring_base();
        // SAFETY: the ring header is 16 bytes at the start of the page-aligned mapping; the
        // kernel reads the tail only after registration.
        unsafe { (*BufRingEntry::tail(base).cast_mut()) = 0 };
        for bid in 0..entries {
            r.push(bid);
        }
        Ok(r)
    }

    pub(super) fn ring_base(&self) -> *mut BufRingEntry {
        self.mem.base().cast()
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        let ring_bytes = self.total_len - self.entries as usize * self.size;
        // SAFETY: bid < entries, so the offset stays inside the mapping.
        unsafe { self.mem.base().add(ring_bytes + bid as usize * self.size) }
    }

    /// Registers the ring with `ring` under group `bgid`, publishing every buffer.
    pub fn register(&mut self, ring: &IoUring) -> io::Result<()> {
        self.register_as(ring, 0)
    }

    pub fn register_as(&mut self, ring: &IoUring, bgid: u16) -> io::Result<()> {
        self.bgid = bgid;
        // SAFETY: the ring memory is page-aligned, `entries` entries long, and lives in `mem`,
        // which the worker keeps until the io_uring instance is gone.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(self.mem.base() as u64, self.entries, bgid, 0)?
        };
        self.publish();
        Ok(())
    }

    /// Names the group of a ring the epoll driver reads (not registered with a kernel ring).
    pub(super) fn set_group(&mut self, bgid: u16) {
        self.bgid = bgid;
    }

    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Hands buffer `bid` back to the kernel (visible after the next publish).
    #[inline]
    pub fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries; the entry at the local tail is not owned by the kernel until
        // the tail is published.
        let e = unsafe { &mut *self.ring_base().add(idx) };
        e.set_addr(self.addr(bid) as u64);
        e.set_len(self.data_len() as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.avail += 1;
    }

    /// Makes pushed buffers visible to the kernel (one release store per loop turn).
    #[inline]
    pub fn publish(&self) {
        // SAFETY: the tail field is a naturally aligned u16 inside the mapping, shared with the
        // kernel, which reads it with acquire semantics.
        let tail = unsafe { &*BufRingEntry::tail(self.ring_base()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Records that the kernel used one buffer for a completion.
    #[inline]
    pub fn taken(&mut self) {
        self.avail -= 1;
    }

    pub fn avail(&self) -> u32 {
        self.avail
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Bytes a receive may fill in one buffer (after the headroom).
    #[inline]
    pub fn data_len(&self) -> usize {
        self.size - self.headroom
    }

    /// Address of the data of buffer `bid` (after the headroom), for a send.
    #[inline]
    pub fn addr(&self, bid: u16) -> *const u8 {
        // SAFETY: headroom < size, so the address stays inside buffer `bid`.
        unsafe { self.buf_ptr(bid).add(self.headroom) }
    }

    /// Data bytes `from..len` of buffer `bid`, which a completion handed to userspace.
    #[inline]
    pub fn data(&self, bid: u16, from: usize, len: usize) -> &[u8] {
        assert!(bid < self.entries && from <= len && len <= self.data_len());
        // SAFETY: in bounds (checked); the kernel finished writing the buffer (its completion
        // was reaped) and cannot pick it again until it is pushed back.
        unsafe { std::slice::from_raw_parts(self.addr(bid).add(from), len - from) }
    }

    /// Data bytes `from..len` of buffer `bid`, which a completion handed to userspace, to
    /// change in place (a checksum completed before the send).
    #[inline]
    pub fn data_mut(&mut self, bid: u16, from: usize, len: usize) -> &mut [u8] {
        assert!(bid < self.entries && from <= len && len <= self.data_len());
        // SAFETY: in bounds (checked); the kernel finished writing the buffer (its completion
        // was reaped) and cannot pick it again until it is pushed back, and no send of it is
        // in flight yet (callers change a buffer before queueing it); &mut self: no other
        // userspace view.
        unsafe { std::slice::from_raw_parts_mut(self.addr(bid).cast_mut().add(from), len - from) }
    }

    /// `len` bytes of buffer `bid` from `back` bytes in front of its data (in the headroom,
    /// `back <= headroom`): a header put in front of what a completion handed over.
    #[inline]
    pub fn back(&self, bid: u16, back: usize, len: usize) -> &[u8] {
        assert!(bid < self.entries && back <= self.headroom && len <= back + self.data_len());
        // SAFETY: in bounds (checked): from inside the headroom to at most the end of the
        // buffer; the buffer is in userspace's hands (see data).
        unsafe { std::slice::from_raw_parts(self.addr(bid).sub(back), len) }
    }

    /// [`BufRing::back`], to change in place before the buffer is sent.
    #[inline]
    pub fn back_mut(&mut self, bid: u16, back: usize, len: usize) -> &mut [u8] {
        assert!(bid < self.entries && back <= self.headroom && len <= back + self.data_len());
        // SAFETY: in bounds (checked); the buffer is in userspace's hands and not being sent
        // (see data_mut); &mut self: no other userspace view.
        unsafe { std::slice::from_raw_parts_mut(self.addr(bid).cast_mut().sub(back), len) }
    }
}
