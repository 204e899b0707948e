//! Every node on the ring loop, on either driver (`ring.rs`): the nodes of `engine::node` (switches and hubs with the
//! VDE control protocol served on the node's listening socket, clients coming and going, a
//! forwarding decision per frame; vdeplug-fast's cables; seqpacket ptp ends in both roles; the
//! vxlan:// and vxvde:// overlays), with every frame received and sent through one ring.
//!
//! - A seqpacket ptp end is a cable from its tap to the peer while there is one: the listening
//!   socket is watched (through an epoll instance of the node's, so that no ring operation
//!   holds the socket, see `arm_ptp_listen`), connections are accepted and acked, a hang-up
//!   detaches the peer and leads to the next, all by the rules of `core::ptp`.
//! - An overlay is a cable from its tap to the network: a poll per socket; once one is
//!   readable, [`OverlayEp::recv`] (recvmmsg, and the overlay's rules for each datagram) takes a
//!   batch, each kept frame copied into a slot and forwarded; a
//!   sendmsg per frame (header and frame as two iovecs) to the remote [`OverlayEp::dest_of`]
//!   names. (A multishot recvmsg into the provided buffers would save the copy.)
//!
//! - Receiving: one multishot receive per datagram endpoint (a client's data socket, the node's
//!   own tap, a datagram link), all drawing from one shared provided-buffer ring; stream
//!   endpoints (`=cmd`, cmd://) read into their own buffer and their frames are reassembled
//!   into slots.
//! - Sending: a frame is sent from the buffer it arrived in, to one endpoint or (flooded) to
//!   every other one; a reference count per buffer hands it back to the kernel once every send
//!   completed. Every destination that sends (send, sendto, write: clients, links, taps, a
//!   port's ends) has one send queue ([`SendQ`]): its frames leave in linked chains at the end
//!   of the turn, and one the destination refuses (EAGAIN) waits, in order, until it has room.
//!   How many may wait is its [`Backpressure`]: all of them for a port's ends (the other end
//!   then stops receiving); for a node's endpoints at most `core::DEST_QCAP` once it is
//!   behind, and none while the node's buffers run low (then the frame is dropped and counted
//!   for it), so a stalled client never holds buffers the others need.
//!   Stream destinations get the frame copied, with its length header, into their output
//!   buffer, which one write at a time drains.
//! - The host's own tap, when opened with offload (switch:// or hub:// in vdens-fast): one
//!   read at a time into a 64 KiB buffer; a super-frame is cut into standard frames, each in a
//!   slot and through the forwarding decision on its own (client ports see standard frames
//!   only). Frames to that tap pass a GRO coalescer flushed once per completion drain and are
//!   written (writev, which a tap never blocks) behind their virtio-net header.
//! - Super-frames (`wire::superframe`), on a switch or hub that offers them: a client that
//!   negotiated them (`Joined::superframes`) is received into a second provided-buffer group
//!   of 64 big buffers (a tagged datagram holds up to 64 KiB), frame ids flagged apart. A
//!   tagged datagram from it is judged whole and forwarded on its frame's head: sent as it
//!   came, from its buffer, to every client that takes them; written header and frame to the
//!   host's offloading tap (after what its coalescer holds); and for every other destination
//!   cut once into standard frames in slots (or its partial checksum completed on a slot
//!   copy, never in the buffer others send from), each sent to all of them. Those cuts wait
//!   in order for free slots rather than drop (their datagrams then hold big buffers, which
//!   slows the senders' receives). A frame that looks tagged from any other endpoint is
//!   dropped: it would be read as tagged by the clients that take them.
//! - Control: the listening socket, joining clients and every endpoint's control connection
//!   are watched with poll operations on the same ring; the handshake itself is
//!   `Listener::answer`.
//!
//! - A datagram `ptp://` link that offered super-frames (a vdeplug-fast cable's; see
//!   `wire::superframe` and `core::pair`) answers or asks with the negotiation runts at once
//!   (a plain non-blocking send, not through the ring: they are rare and bounded); see
//!   [`DgPtp`]. A second opener asks (HELLO) while it sends and, answered, sends its
//!   super-frames whole; it reads its second socket R2 too (`Op::RxPair`, into the big
//!   buffers, its datagrams handled as the main socket's). A first opener answers (OFFER),
//!   is received into the big buffers (its peer then sends it tagged datagrams), pairs its
//!   second socket F2 with the peer's R2 and, paired, sends every frame on F2; any failed
//!   send there unpairs at once (standard frames by path from then on, the frame lost).
//!
//! An endpoint that leaves is detached at once (no more frames to it); its descriptors close
//! when the last operation that uses them has completed (cancelled first).

mod handover;

use super::ring::{Interval, Ring, Sqe};
use super::{is_retry, new_ring, BufRing, SetupError, UringTuning, MIN_BATCH, WAIT_BATCH};
use crate::engine::core::cut::{self, Cut, Whole};
use crate::engine::core::pair::{self, Pairing, Step};
use crate::engine::core::ptp;
use crate::engine::core::{
    admit, admit_stream, admit_to_queue, classify_rx_error, dispatch, send_verdict, single_send_drop, Admit,
    Backpressure, Control, EndpointError, Op, RxFault, Token, Verdict,
};
use crate::engine::node::{Endpoint, Node, NodeKind, NodeShared, MAX_PORTS};
use crate::engine::offload::{self, TapOffload, SUPER_READ};
use crate::engine::overlay::OverlayEp;
use crate::engine::port::{is_dgram, is_socket, send_buffer_full, set_nonblocking, Reconnector, MAX_FRAME};
use crate::engine::stats::{Counts, DropReason, Offload, PortStats, LINK_TO_TAP, TAP_TO_LINK};
use crate::engine::worker::{Cmd, NodeCtx, PortCtx, StartError};
use crate::engine::EngineKind;
use crate::switch::join::{Change, Joins, Ready};
use crate::switch::server::Listener;
use crate::switch::{Decision, Forwarder, MacTable, PortId};
use crate::sys::inet::HDR;
use crate::transport::{Framing, Hosted, Link, Overlay, PtpHost, Reconnect, SendTo};
use crate::wire::gro::{self, Coalescer};
use crate::wire::gso::Segmenter;
use crate::wire::stream::{self, Decoder};
use crate::wire::superframe::{
    is_tagged, needs_header, Runt, OFFER, PREFIX, RUNT_LEN, RUNT_MAX, TAG, TAG_LEN,
};
use crate::wire::vnet::{self, VnetHdr};
use crossbeam_channel::{Receiver, Sender};
use handover::Handover;
use io_uring::cqueue;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::socket::{recv, MsgFlags, SockaddrLike, SockaddrStorage, UnixAddr};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shared receive buffers (a power of two).
const NBUF: u16 = 1024;
/// Buffer size: larger than the largest frame, so a longer one shows up as oversize.
const BUF_SIZE: usize = 9472;
/// Room in front of each shared and big buffer's frame: an offloading tap's virtio-net header
/// goes there, so a frame passed through to the tap is one io_uring write from its buffer.
const HEADROOM: usize = 16;
/// Slots for frames reassembled from stream endpoints.
const SLOTS: usize = 256;
const SLOT_FLAG: u16 = 0x8000;
/// Read size of a stream endpoint.
const STREAM_IN: usize = 65536;
/// Bytes a stream endpoint may have waiting to be written (then frames to it are dropped).
const STREAM_OUT: usize = 256 * 1024;
/// A receive that ran out of buffers is re-armed once this many are back.
const REARM: u32 = NBUF as u32 / 8;
/// Receive buffers of the endpoints that take super-frames (a power of two), in their own
/// provided-buffer group: a tagged datagram (`wire::superframe`) holds up to 64 KiB.
const NBIG: u16 = 64;
/// Large enough for any tagged datagram, so a longer one shows up as oversize.
const BIG_SIZE: usize = HEADROOM + PREFIX + SUPER_READ;
const BIG_FLAG: u16 = 0x4000;
/// The provided-buffer group of a node's big buffers, after its shared one (node `k` of a
/// thread has groups `2k` and `2k + 1`): a multishot receive's token names its group.
const BIG_GROUP: u16 = 1;
const REARM_BIG: u32 = NBIG as u32 / 8;
/// Read buffers of the node's own offloading tap (see [`TapBufs`]).
const NTAP: u16 = 8;
/// A tap read lands so that its frame starts [`PREFIX`] bytes in: the tag and a 10-byte
/// virtio-net header fit in front, and the buffer is then a tagged datagram as it goes out.
const TAP_SIZE: usize = PREFIX + SUPER_READ;
const TAP_FLAG: u16 = 0x2000;

/// Where frame id `fid` lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fid {
    /// A shared receive buffer.
    Buf(u16),
    /// A big receive buffer (an endpoint that takes super-frames).
    Big(u16),
    /// A slot: a frame reassembled, cut or copied by the node.
    Slot(u16),
    /// A read buffer of the node's own offloading tap, holding a tagged datagram.
    Tap(u16),
}

impl Fid {
    #[inline]
    fn of(fid: u16) -> Fid {
        if fid & SLOT_FLAG != 0 {
            Fid::Slot(fid & !SLOT_FLAG)
        } else if fid & BIG_FLAG != 0 {
            Fid::Big(fid & !BIG_FLAG)
        } else if fid & TAP_FLAG != 0 {
            Fid::Tap(fid & !TAP_FLAG)
        } else {
            Fid::Buf(fid)
        }
    }
}

/// user_data of an operation (`fid`: a frame id; `len`: a send's length).
#[inline]
fn token(op: Op, ep: usize, gen: u16, fid: u16, len: usize) -> u64 {
    Token::new(op, ep).gen(gen).slot(fid).len(len).encode()
}

/// Datagrams an overlay takes per recvmmsg, and batches per readiness.
const OV_BATCH: usize = 32;
const OV_ROUNDS: usize = 8;
/// Frame ids, one record each where a send to an endpoint is remembered ([`rec_of`]).
const RECS: usize = NBUF as usize + SLOTS + NBIG as usize + NTAP as usize;

/// Holds the descriptors of an endpoint open while anything uses them.
#[allow(dead_code)]
enum Owner {
    Tap(OwnedFd),
    Link(Box<Link>),
    Client {
        data: OwnedFd,
        ctl: OwnedFd,
        path: PathBuf,
    },
    /// A vxlan:// or vxvde:// network: its sockets are held by its `Tx::Overlay`.
    Overlay,
}

impl Owner {
    /// The descriptor frames arrive on (none for an overlay: its sockets are its `Tx`'s).
    fn rx(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Owner::Tap(fd) => Some(fd.as_fd()),
            Owner::Client { data, .. } => Some(data.as_fd()),
            Owner::Link(l) => l.rx_fd(),
            Owner::Overlay => None,
        }
    }

    /// The descriptor frames leave on: the receiving one where there is no other.
    fn tx(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Owner::Link(l) => l.tx_fd(),
            o => o.rx(),
        }
    }

    /// The second socket of a datagram ptp link (F2 or R2, `transport::PairSocket`).
    fn pair(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Owner::Link(l) => l.pair.as_ref().map(|p| p.fd.as_fd()),
            _ => None,
        }
    }

    /// The control connection (a switch client's, a vde:// link's), watched for hang-up.
    fn ctl(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Owner::Client { ctl, .. } => Some(ctl.as_fd()),
            Owner::Link(l) => l.ctl.as_ref().map(|c| c.as_fd()),
            Owner::Tap(_) | Owner::Overlay => None,
        }
    }
}

/// Receiving from a vxlan:// / vxvde:// network: a poll per socket; once one is readable,
/// recvmmsg takes the datagrams (see `on_overlay_rx`).
struct OvRx {
    /// The group socket, then (vxvde) the unicast one.
    fds: [RawFd; 2],
    n: usize,
    armed: [bool; 2],
}

/// Sending to a vxlan:// / vxvde:// network: one sendmsg per frame (the header from the
/// endpoint, the frame from its buffer) to the remote learnt for its destination MAC or the
/// group. A frame goes to an endpoint at most once while it is held, so its message is the
/// one of its frame id.
struct OvTx {
    ep: OverlayEp,
    recs: Box<[SendRec]>,
}

struct SendRec {
    msg: libc::msghdr,
    iov: [libc::iovec; 2],
    addr: Option<SockaddrStorage>,
}

impl SendRec {
    fn new() -> SendRec {
        SendRec {
            // SAFETY: msghdr is plain data (pointers and lengths); all-zero is a valid, empty
            // value.
            msg: unsafe { std::mem::zeroed() },
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 2],
            addr: None,
        }
    }
}

/// The index of frame `fid`'s send message.
fn rec_of(fid: u16) -> usize {
    match Fid::of(fid) {
        Fid::Buf(b) => b as usize,
        Fid::Slot(s) => NBUF as usize + s as usize,
        Fid::Big(b) => NBUF as usize + SLOTS + b as usize,
        Fid::Tap(b) => NBUF as usize + SLOTS + NBIG as usize + b as usize,
    }
}

struct StreamIn {
    dec: Decoder,
    raw: Box<[u8]>,
    off: usize,
    len: usize,
    /// The slot the decoder is filling.
    cur: Option<u16>,
    /// A read is in flight.
    reading: bool,
}

/// Reading an offloading tap (the switch host's own): one read at a time into a tap buffer
/// ([`TapBufs`]), its frame [`PREFIX`] bytes in. A read that needs its header (a super-frame,
/// a partial checksum), on a node that offers super-frames, becomes a tagged datagram there
/// and goes on whole (`forward_whole`); any other is cut into standard frames, each in a
/// slot, before its forwarding decision.
struct VnetIn {
    hdr: usize,
    /// The tap buffer read into, or holding the read being cut.
    cur: Option<u16>,
    /// Bytes of the last read not yet fully cut (0: none).
    len: usize,
    /// Next segment of it to cut.
    next: usize,
    /// A read is in flight.
    reading: bool,
}

/// Writing an offloading tap: frames for it pass a coalescer, flushed once per completion
/// drain; each frame goes out behind its virtio-net header (a zero one when not coalesced).
struct VnetOut {
    hdr: usize,
    gro: Coalescer<Box<[u8]>>,
}

/// A tagged datagram (in a big buffer, held) on its way to the destinations that take
/// standard frames only: its super-frame cut once, piece by piece, each piece in a slot sent
/// to all of them; or its frame, the partial checksum completed, in one slot.
struct CutJob {
    fid: u16,
    len: usize,
    h: VnetHdr,
    /// Pieces, and the next one to cut.
    count: usize,
    next: usize,
    /// The destinations and their generations (one that left meanwhile is skipped).
    dests: Vec<(usize, u16)>,
}

enum Rx {
    None,
    Vnet(Box<VnetIn>),
    /// One frame per completion from the shared buffers (recv on a socket, read on a tap).
    Multi {
        socket: bool,
        eof_on_zero: bool,
    },
    Stream(Box<StreamIn>),
    Overlay(Box<OvRx>),
}

struct StreamOut {
    out: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes of the write in flight (0: none).
    writing: usize,
}

impl StreamOut {
    /// Whether `n` more bytes fit (moving what waits to the front when no write is in flight
    /// and that makes room).
    fn room(&mut self, n: usize) -> bool {
        if self.end + n > self.out.len() && self.start > 0 && self.writing == 0 {
            self.out.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.end + n <= self.out.len()
    }

    /// Appends frame `f` behind its 2-byte length (room checked by [`StreamOut::room`]).
    fn put(&mut self, f: &[u8]) {
        self.out[self.end..self.end + 2].copy_from_slice(&stream::header(f.len()));
        self.out[self.end + 2..self.end + 2 + f.len()].copy_from_slice(f);
        self.end += f.len() + 2;
    }
}

/// Sends of an endpoint in flight, as one linked chain (linked operations run in order, which
/// keeps the frame order across a wait). 64 holds the 46 segments of a 64 KiB TCP
/// super-frame at MSS 1448.
const CHAIN: usize = 64;
/// Wait before sending again datagrams refused with EAGAIN by a full receiver queue behind an
/// unconnected socket (which polls writable all along, see `port::send_buffer_full`).
const RETRY: Duration = Duration::from_millis(1);

/// The frames to an endpoint that sends (`Tx::Send`, `SendTo`, `Write`). They queue (held),
/// leave at the end of the turn in linked chains (one chain in flight; see [`UNode::kick`]),
/// and one the endpoint refuses (EAGAIN) goes again, in order, once it has room. How many may
/// wait is `bp`'s ([`admit_to_queue`]).
struct SendQ {
    bp: Backpressure,
    /// Frames waiting to be sent (frame id, length), held.
    queue: VecDeque<(u16, u32)>,
    /// The chain in flight, in order (completions of a linked chain come in order).
    chain: VecDeque<(u16, u32)>,
    /// Frames of the chain to send again, in order.
    retry: Vec<(u16, u32)>,
    /// A send of the chain met EAGAIN: wait before the next chain.
    again: bool,
    /// The endpoint refused a frame and has not taken everything that waited since.
    behind: bool,
    /// A POLLOUT poll or the retry timer is in flight.
    waiting: bool,
    /// A frame was offered to the endpoint since its last chain went (see [`UNode::kick`]).
    fresh: bool,
    timer: Box<Interval>,
    /// Frames the next chain may hold: after a refusal, as many as went in the chain that met
    /// it (at least one), doubling with every chain that goes whole, up to [`CHAIN`]; so that
    /// a destination that takes a few frames per wake-up is not sent a whole chain to cancel.
    /// (A node's endpoint on a connected socket is sent every frame that waits, up to
    /// [`CHAIN`], each time: see [`UNode::kick`].)
    burst: usize,
    /// Frames of the chain in flight that went.
    went: usize,
    /// The chain in flight goes on this F2 (a paired datagram ptp first opener's second
    /// socket), whose POLLOUT a wait then watches.
    chain_f2: Option<RawFd>,
    /// The chain in flight is written into the peer's tap of a port's tap handover
    /// ([`UNode::handover_tap`]), in independent writes: a failed one is dropped, never sent
    /// again.
    chain_ho: bool,
    /// A send of the chain in flight met a new peer: its tagged datagrams are dropped once
    /// the chain is over ([`UNode::purge_tagged`]).
    purge: bool,
}

impl SendQ {
    /// A queue with room for `cap` frames before it grows.
    fn new(bp: Backpressure, cap: usize) -> Box<SendQ> {
        Box::new(SendQ {
            bp,
            queue: VecDeque::with_capacity(cap),
            chain: VecDeque::with_capacity(CHAIN),
            retry: Vec::with_capacity(CHAIN),
            again: false,
            behind: false,
            waiting: false,
            fresh: false,
            timer: Box::new(Interval::new(RETRY)),
            burst: CHAIN,
            went: 0,
            chain_f2: None,
            chain_ho: false,
            purge: false,
        })
    }

    /// Nothing waits, nothing is in flight, nothing is to go again.
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.chain.is_empty() && self.retry.is_empty()
    }

    /// The frames held since the endpoint fell behind (0 while it takes what it is sent).
    fn backlog(&self) -> usize {
        if self.behind {
            self.queue.len() + self.chain.len() + self.retry.len()
        } else {
            0
        }
    }
}

enum Tx {
    Discard,
    /// send(2) on a connected socket, from the endpoint's [`SendQ`].
    Send,
    /// sendto(2) to this address, from the endpoint's [`SendQ`].
    SendTo(Box<UnixAddr>),
    /// write(2): a tap or another device, from the endpoint's [`SendQ`].
    Write,
    Stream(Box<StreamOut>),
    Vnet(Box<VnetOut>),
    Overlay(Box<OvTx>),
}

struct Ep {
    owner: Owner,
    gen: u16,
    rx_fd: RawFd,
    tx_fd: RawFd,
    ctl_fd: Option<RawFd>,
    rx: Rx,
    rx_armed: bool,
    rx_dead: bool,
    /// The multishot receive ended for want of buffers.
    rx_starved: bool,
    tx: Tx,
    /// Connects a datagram ptp second opener to its restarted first opener (see
    /// [`Ep::reconnect_after_failure`]); never for the rest.
    reconnect: Reconnector,
    /// Operations in flight that use this endpoint's descriptors.
    inflight: u32,
    /// A client that takes tagged datagrams (`switch::server::Joined::superframes`): it is
    /// received into the big buffers, and sent super-frames whole.
    superframes: bool,
    /// The endpoint takes tagged datagrams whole: a switch client or cable link as
    /// `superframes`; a seqpacket ptp peer once it sent [`OFFER`] on its connection; a
    /// datagram ptp link while its peer takes them (see [`Ep::refresh_whole`]).
    takes_whole: bool,
    /// A datagram ptp link that offered super-frames: its negotiation.
    dg: Option<Box<DgPtp>>,
    /// [TAP_TO_LINK] = from this endpoint into the node, [LINK_TO_TAP] = from the node to it.
    counts: [Counts; 2],
    stats: Arc<PortStats>,
    label: String,
    /// The frames waiting for it: every endpoint whose `tx` is Send, SendTo or Write, and a
    /// port's stream end (whose output has no room); None for the rest.
    sq: Option<Box<SendQ>>,
    /// An end of a port's cable (see [`PortEp`]); None for every other endpoint.
    port: Option<Box<PortEp>>,
}

impl Ep {
    fn new(owner: Owner, name: &str, vnl: &str, off: TapOffload, gen: u16) -> Result<Ep, EndpointError> {
        let label = format!("{name} ({vnl})");
        let fail = |what: &'static str, errno: Errno| EndpointError::Sys {
            label: label.clone(),
            what,
            errno,
        };
        let framing = match &owner {
            Owner::Tap(_) | Owner::Client { .. } => Framing::Datagram,
            Owner::Link(l) => l.framing,
            // Built by Ep::overlay, never here.
            Owner::Overlay => Framing::Null,
        };
        let (rx, txfd) = (owner.rx(), owner.tx());
        // (A tap's or a client's one descriptor both receives and sends: once is enough.)
        let own_tx = txfd.filter(|t| t.as_raw_fd() != raw(rx));
        for f in rx.into_iter().chain(own_tx) {
            set_nonblocking(f).map_err(|e| fail("cannot make it non-blocking", e))?;
        }
        let vnet = off.enabled() && matches!(owner, Owner::Tap(_));
        let rx_kind = rx_kind(rx, framing, vnet, &off).map_err(|(what, e)| fail(what, e))?;
        let tx_kind = tx_kind(txfd, &owner, framing, vnet, &off).map_err(|(what, e)| fail(what, e))?;
        let sq = matches!(tx_kind, Tx::Send | Tx::SendTo(_) | Tx::Write)
            .then(|| SendQ::new(Backpressure::Bounded, 0));
        let reconnect = Reconnector::new(match &owner {
            Owner::Link(l) => l.reconnect(),
            _ => Reconnect::Never,
        });
        let (rx_fd, tx_fd) = (raw(rx), raw(txfd));
        let ctl_fd = owner.ctl().map(|c| c.as_raw_fd());
        let mut stats = PortStats::new(name, vnl);
        if vnet {
            // Its super-frames go whole to the clients that take them, cut for the rest.
            stats.offload = Offload::Cut;
        }
        // A link that offered its peer super-frames (a vdeplug-fast cable's vde:// link): the
        // peer took them at the handshake, or never will (`wire::superframe`).
        stats.superframes = match &owner {
            Owner::Link(l) => l.superframes.clone(),
            _ => None,
        };
        let negotiated = stats
            .superframes
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed));
        let dg = match (&owner, &stats.superframes) {
            (Owner::Link(l), Some(flag)) if dgram_ptp_offer(l) => Some(DgPtp::new(l, flag.clone())),
            _ => None,
        };
        // A datagram ptp first opener may be sent tagged datagrams on its socket once it
        // answered a HELLO, so it is received into the big buffers; a second opener is sent
        // them on its R2 only (see `arm_r2`).
        let superframes = negotiated || dg.as_ref().is_some_and(|d| !d.second);
        Ok(Ep {
            gen,
            rx_fd,
            tx_fd,
            ctl_fd,
            rx_dead: matches!(rx_kind, Rx::None),
            rx: rx_kind,
            rx_armed: false,
            rx_starved: false,
            tx: tx_kind,
            sq,
            reconnect,
            inflight: 0,
            superframes,
            takes_whole: negotiated,
            dg,
            counts: [Counts::default(); 2],
            stats: Arc::new(stats),
            label,
            owner,
            port: None,
        })
    }

    /// The endpoint of a vxlan:// or vxvde:// network: a poll on each of its sockets (then
    /// recvmmsg), a sendmsg per frame from the one datagrams leave from.
    fn overlay(ov: Box<Overlay>, name: &str, gen: u16) -> Result<Ep, EndpointError> {
        let label = format!("{name} ({})", ov.vnl);
        for f in std::iter::once(ov.multi.as_fd()).chain(ov.uni.as_ref().map(|u| u.as_fd())) {
            set_nonblocking(f).map_err(|errno| EndpointError::Sys {
                label: label.clone(),
                what: "cannot make it non-blocking",
                errno,
            })?;
        }
        let o = OverlayEp::new(ov);
        let (group, uni) = o.sockets();
        let tx_fd = o.tx_raw_fd();
        let stats = Arc::new(PortStats::new(name, o.vnl()));
        Ok(Ep {
            owner: Owner::Overlay,
            gen,
            rx_fd: group,
            tx_fd,
            ctl_fd: None,
            rx: Rx::Overlay(Box::new(OvRx {
                fds: [group, uni.unwrap_or(-1)],
                n: 1 + usize::from(uni.is_some()),
                armed: [false; 2],
            })),
            rx_armed: false,
            rx_dead: false,
            rx_starved: false,
            tx: Tx::Overlay(Box::new(OvTx {
                ep: o,
                recs: (0..RECS).map(|_| SendRec::new()).collect(),
            })),
            sq: None,
            reconnect: Reconnector::new(Reconnect::Never),
            inflight: 0,
            superframes: false,
            takes_whole: false,
            dg: None,
            counts: [Counts::default(); 2],
            stats,
            label,
            port: None,
        })
    }

    fn publish(&self) {
        self.stats.dirs[TAP_TO_LINK].publish(&self.counts[TAP_TO_LINK]);
        self.stats.dirs[LINK_TO_TAP].publish(&self.counts[LINK_TO_TAP]);
    }
}

/// How an endpoint receives from `rx` (None: it does not): into the vnet reader (a tap with
/// offloads), the stream decoder, or a multishot receive; an error is what failed and why.
fn rx_kind(
    rx: Option<BorrowedFd<'_>>,
    framing: Framing,
    vnet: bool,
    off: &TapOffload,
) -> Result<Rx, (&'static str, Errno)> {
    let null = framing == Framing::Null;
    Ok(match rx {
        None => Rx::None,
        Some(_) if vnet => Rx::Vnet(Box::new(VnetIn {
            hdr: off.vnet_hdr,
            cur: None,
            len: 0,
            next: 0,
            reading: false,
        })),
        Some(_) if null => Rx::None,
        Some(_) if framing == Framing::Stream => Rx::Stream(Box::new(StreamIn {
            dec: Decoder::new(),
            raw: vec![0u8; STREAM_IN].into_boxed_slice(),
            off: 0,
            len: 0,
            cur: None,
            reading: false,
        })),
        Some(fd) => {
            let socket = is_socket(fd).map_err(|e| ("cannot inspect it", e))?;
            Rx::Multi {
                socket,
                eof_on_zero: !(socket && is_dgram(fd)),
            }
        }
    })
}

/// How an endpoint sends to `txfd` (None: it does not); an error is what failed and why.
fn tx_kind(
    txfd: Option<BorrowedFd<'_>>,
    owner: &Owner,
    framing: Framing,
    vnet: bool,
    off: &TapOffload,
) -> Result<Tx, (&'static str, Errno)> {
    let null = framing == Framing::Null;
    Ok(match (txfd, owner) {
        (None, _) => Tx::Discard,
        _ if null => Tx::Discard,
        (Some(_), Owner::Tap(_)) if vnet => Tx::Vnet(Box::new(VnetOut {
            hdr: off.vnet_hdr,
            gro: Coalescer::new(vec![0u8; gro::BUF_LEN].into_boxed_slice()),
        })),
        (Some(_), _) if framing == Framing::Stream => Tx::Stream(Box::new(StreamOut {
            out: vec![0u8; STREAM_OUT].into_boxed_slice(),
            start: 0,
            end: 0,
            writing: 0,
        })),
        (Some(fd), Owner::Link(l)) => match &l.send_to {
            SendTo::Unix(p) => Tx::SendTo(Box::new(
                UnixAddr::new(p.as_path()).map_err(|e| ("bad destination", e))?,
            )),
            SendTo::Connected if is_socket(fd).unwrap_or(false) => Tx::Send,
            SendTo::Connected => Tx::Write,
        },
        (Some(_), Owner::Client { .. }) => Tx::Send,
        (Some(_), Owner::Tap(_)) => Tx::Write,
        (Some(_), Owner::Overlay) => Tx::Discard,
    })
}

impl Ep {
    /// Arms a poll on each overlay socket not yet polled; None when the endpoint is no
    /// overlay.
    fn overlay_polls(&mut self, id: usize) -> Option<[Option<super::ring::Op>; 2]> {
        let Rx::Overlay(r) = &mut self.rx else { return None };
        // Readiness of each socket; its datagrams are then taken by recvmmsg in batches
        // (OverlayEp::recv, which judges and learns them).
        let mut sqes = [None, None];
        for (s, sqe) in sqes.iter_mut().enumerate().take(r.n) {
            if !r.armed[s] {
                r.armed[s] = true;
                self.inflight += 1;
                *sqe = Some(
                    Sqe::Poll {
                        fd: r.fds[s],
                        events: libc::POLLIN as u32,
                        multi: false,
                    }
                    .op(token(Op::Rx, id, self.gen, s as u16, 0)),
                );
            }
        }
        self.rx_armed = true;
        self.rx_starved = false;
        Some(sqes)
    }
}

impl StreamIn {
    /// The read that refills the raw input; None while one is in flight or input is left.
    #[inline]
    fn read(&mut self, fd: RawFd) -> Option<Sqe> {
        if self.reading || self.off < self.len {
            return None;
        }
        self.reading = true;
        // Offset -1: the file position, for a stream that is a regular file (a
        // recording replayed by vdeplug-fast); pipes and sockets ignore it.
        Some(Sqe::Read {
            fd,
            buf: self.raw.as_mut_ptr(),
            len: STREAM_IN as u32,
            socket: false,
        })
    }
}

impl VnetIn {
    /// The next read from the tap into a tap buffer; None while one is in flight, the last
    /// is still being cut, or every tap buffer is held.
    #[inline]
    fn read(&mut self, fd: RawFd, tap: &mut TapBufs) -> Option<Sqe> {
        if self.reading || self.len > 0 {
            return None;
        }
        let tb = match self.cur {
            Some(tb) => tb,
            None => {
                tap.ensure();
                // All held by sends and cuts: read again once one is back.
                let tb = tap.free.pop()?;
                self.cur = Some(tb);
                tb
            }
        };
        self.reading = true;
        Some(Sqe::Read {
            fd,
            buf: tap.buf_mut(tb)[PREFIX - self.hdr..].as_mut_ptr(),
            len: SUPER_READ as u32,
            socket: false,
        })
    }
}

impl VnetOut {
    /// A frame the coalescer would pass through as it is (nothing held, nothing to merge:
    /// UDP, ICMP, ARP, ...), in a shared or big buffer with room in front: the start of the
    /// all-zero header written there, in front of the frame at `ptr`. None for the rest.
    #[inline]
    fn zero_header(&self, fid: u16, f: &[u8], ptr: *const u8) -> Option<*mut u8> {
        if matches!(Fid::of(fid), Fid::Slot(_)) || self.gro.pending() || gro::candidate(f).is_some() {
            return None;
        }
        let hl = self.hdr;
        // SAFETY: a shared or big buffer has HEADROOM (>= hl) bytes in front of its frame,
        // part of the same buffer, which nothing else reads or writes: every
        // writer puts the same zero header there. The buffer is held until the
        // write completes (hold in send, release in on_tx).
        Some(unsafe {
            let h = ptr.cast_mut().sub(hl);
            std::ptr::write_bytes(h, 0, hl);
            h
        })
    }
}

impl OvTx {
    /// The sendmsg of frame `f` (id `fid`, at `ptr`) behind the overlay header, to the remote
    /// learnt for its destination MAC or the group; its message is the one of its frame id.
    #[inline]
    fn sendmsg(&mut self, f: &[u8], fid: u16, ptr: *const u8, fd: RawFd) -> Sqe {
        let dest = self.ep.dest_of(f, self.ep.now());
        let hdr = self.ep.header().as_ptr();
        let r = &mut self.recs[rec_of(fid)];
        let a = r.addr.insert(SockaddrStorage::from(dest));
        r.msg.msg_name = a.as_ptr().cast_mut().cast();
        r.msg.msg_namelen = a.len();
        r.iov[0].iov_base = hdr.cast_mut().cast();
        r.iov[0].iov_len = HDR;
        r.iov[1].iov_base = ptr.cast_mut().cast();
        r.iov[1].iov_len = f.len();
        r.msg.msg_iov = r.iov.as_mut_ptr();
        r.msg.msg_iovlen = 2;
        Sqe::SendMsg {
            fd,
            msg: &r.msg,
            flags: (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32,
        }
    }
}

impl Ep {
    /// How many of the frames queued for this chained endpoint go in the next chain, and
    /// whether its sends probe for room (a node's endpoint on a connected socket, bounded);
    /// None while a chain is in flight, nothing waits, or it waits for room.
    #[inline]
    fn chain_len(&mut self) -> Option<(usize, bool)> {
        if !self.chained() {
            return None;
        }
        let q = self.sq.as_mut().expect("chained");
        // A node's endpoint on a connected socket (see `UNode::kick`), not through a paired F2.
        let on_f2 = self
            .dg
            .as_ref()
            .and_then(|d| d.pair.as_ref())
            .is_some_and(|p| p.first && p.pairing.paired());
        let probe = q.bp == Backpressure::Bounded && matches!(self.tx, Tx::Send) && !on_f2;
        if !q.chain.is_empty() || q.queue.is_empty() || (q.waiting && !(probe && q.fresh)) {
            return None;
        }
        q.fresh = false;
        // (Every frame that waits is tried: the few that went before a refusal are no
        // measure of the room the reader makes by the next try; once it is behind, a refusal
        // stops the chain.)
        let n = q.queue.len().min(if probe { CHAIN } else { q.burst });
        Some((n, probe))
    }
}

/// The F2 descriptor a paired datagram ptp first opener (`dg`) sends the frames of `chain`
/// on, each remembered with its pairing round (a failed send of the current round unpairs, see
/// `Ep::f2_done`); None when it is not paired (or no such link).
#[inline]
fn f2_of_chain(dg: Option<&mut DgPtp>, chain: &[(u16, u32)]) -> Option<RawFd> {
    dg.and_then(DgPtp::on_f2).map(|f2| {
        let round = f2.pairing.round();
        for &(fid, _) in chain {
            f2.rounds[rec_of(fid)] = Some(round);
        }
        f2.fd
    })
}

impl SendQ {
    /// Records what became of `sent`, the chain's next send: it `went`, goes `again` (after
    /// EAGAIN: `eagain`), or its peer changed (`purge`); once the chain is over, what goes
    /// again is put back in front. The frames it overtook (to drop), and once the chain is
    /// over, whether to purge the tagged datagrams waiting and whether to wait for room.
    #[inline]
    fn settle(
        &mut self,
        sent: (u16, u32),
        went: bool,
        again: bool,
        eagain: bool,
        purge: bool,
    ) -> (Vec<(u16, u32)>, bool, bool) {
        // A frame went after earlier ones were refused (independent or hard-linked sends):
        // sent again they would arrive after it; they are dropped instead.
        let overtaken = if went && !self.retry.is_empty() {
            std::mem::take(&mut self.retry)
        } else {
            Vec::new()
        };
        if again {
            self.retry.push(sent);
            self.again |= eagain;
            self.behind |= eagain;
        }
        self.purge |= purge;
        self.went += usize::from(went);
        let over = self.chain.is_empty();
        if over {
            self.burst = if self.again {
                self.went.max(1)
            } else {
                (self.burst * 2).min(CHAIN)
            };
            self.went = 0;
            for x in self.retry.drain(..).rev() {
                self.queue.push_front(x);
            }
            // Caught up: everything that waited went.
            self.behind &= self.again || !self.queue.is_empty();
        }
        // (The rest of the chain is cancelled after a failed send: purged once it is over.)
        let purge = over && std::mem::take(&mut self.purge);
        let wait = over && std::mem::take(&mut self.again);
        (overtaken, purge, wait)
    }
}

/// The receive buffers of a node: the shared ones, and the big ones of the endpoints that
/// take super-frames (a switch or hub that offers them; None otherwise).
struct Bufs {
    shared: BufRing,
    big: Option<BufRing>,
    /// Where each big buffer's frame starts, in bytes in front of its data: a port's tap read
    /// made a tagged datagram in place (see `UNode::port_cut`); 0 for the rest.
    big_back: Box<[u8]>,
    tap: TapBufs,
}

/// The read buffers of the node's own offloading tap (allocated with its first read): a read
/// that goes on whole is sent from its buffer, held (`refs`) until every send completed,
/// while the next reads go to the others.
#[derive(Default)]
struct TapBufs {
    /// NTAP x TAP_SIZE, never moved once allocated.
    slab: Box<[u8]>,
    free: Vec<u16>,
    refs: Box<[u16]>,
    /// What each holds once judged: the standard frames it stands for.
    whole: Box<[Option<Whole>]>,
}

impl TapBufs {
    fn ensure(&mut self) {
        if self.slab.is_empty() {
            self.slab = vec![0u8; NTAP as usize * TAP_SIZE].into_boxed_slice();
            self.free = (0..NTAP).rev().collect();
            self.refs = vec![0u16; NTAP as usize].into_boxed_slice();
            self.whole = vec![None; NTAP as usize].into_boxed_slice();
        }
    }

    fn buf(&self, t: u16) -> &[u8] {
        let o = t as usize * TAP_SIZE;
        &self.slab[o..o + TAP_SIZE]
    }

    fn buf_mut(&mut self, t: u16) -> &mut [u8] {
        let o = t as usize * TAP_SIZE;
        &mut self.slab[o..o + TAP_SIZE]
    }
}

impl Bufs {
    /// `len` bytes of big buffer `b`'s frame (see `big_back`).
    fn big_data(&self, b: u16, len: usize) -> &[u8] {
        let big = self.big.as_ref().expect("big buffers");
        big.back(b, self.big_back[b as usize].into(), len)
    }

    /// Bytes of frame `fid` (a buffer, not a slot) the kernel filled and handed over (it
    /// cannot pick it again until it is pushed back).
    fn data(&self, fid: u16, len: usize) -> &[u8] {
        match Fid::of(fid) {
            Fid::Big(b) => self.big_data(b, len),
            Fid::Tap(t) => &self.tap.buf(t)[..len],
            _ => self.shared.data(fid, 0, len),
        }
    }

    /// Hands buffer `fid` back to the kernel (a tap buffer: to the next reads).
    fn push(&mut self, fid: u16) {
        match Fid::of(fid) {
            Fid::Big(b) => {
                self.big_back[b as usize] = 0;
                self.big.as_mut().expect("big buffers").push(b)
            }
            Fid::Tap(t) => self.tap.free.push(t),
            _ => self.shared.push(fid),
        }
    }
}

/// Bytes of frame `fid`: a buffer (see [`Bufs::data`]), or a slot.
fn frame_of<'a>(bufs: &'a Bufs, slots: &'a [u8], fid: u16, len: usize) -> &'a [u8] {
    match Fid::of(fid) {
        Fid::Slot(s) => {
            let s = s as usize * BUF_SIZE;
            &slots[s..s + len]
        }
        _ => bufs.data(fid, len),
    }
}

/// The tap an offloading endpoint (`Tx::Vnet`) writes to.
fn tap_fd(owner: &Owner) -> BorrowedFd<'_> {
    owner.tx().expect("an offloading endpoint is a tap")
}

/// Submits the tap writes queued on `ring` (`queued`: some are), so that a write made at once
/// after them reaches the tap after them.
/// The ring of a node thread, shared by the nodes it runs (one thread, so no lock: each use
/// borrows it for one call).
#[derive(Clone)]
struct RingRef(Rc<RefCell<Ring>>);

impl RingRef {
    /// Queues `op` (see [`Ring::push`]).
    ///
    /// # Safety
    /// As [`Ring::push`]: what `op` points to stays valid until its last completion.
    unsafe fn push(&self, op: &super::ring::Op) -> std::io::Result<()> {
        // SAFETY: per this function's contract.
        unsafe { self.0.borrow_mut().push(op) }
    }

    fn submit(&self) -> std::io::Result<usize> {
        self.0.borrow_mut().submit()
    }
}

/// The generations of the endpoints (and joining clients) of one thread's nodes. Each is
/// handed out once in 65535 and names its node, so a completion finds its node from its
/// token alone; 0 is never handed out: a token with generation 0 is a node's own operation
/// (its wake-up, listener, timers, cancels), with the node's index in place of an endpoint.
struct Gens {
    next: Cell<u16>,
    owner: Box<[Cell<u16>]>,
}

impl Gens {
    fn new() -> Gens {
        Gens {
            next: Cell::new(0),
            owner: (0..=u16::MAX).map(|_| Cell::new(0)).collect(),
        }
    }

    /// A new generation, for node `node`.
    fn take(&self, node: u16) -> u16 {
        let g = match self.next.get().wrapping_add(1) {
            0 => 1,
            g => g,
        };
        self.next.set(g);
        self.owner[g as usize].set(node);
        g
    }

    /// The node (its index in the thread) that operation `t` belongs to.
    fn node_of(&self, t: &Token) -> usize {
        match t.gen {
            0 => t.ep(),
            g => self.owner[g as usize].get() as usize,
        }
    }
}

fn submit_tap_writes(queued: &mut bool, ring: &RingRef) {
    if std::mem::take(queued) {
        let _ = ring.submit();
    }
}

/// The number of descriptor `f` (the rings name descriptors by number), -1 for none.
fn raw(f: Option<BorrowedFd<'_>>) -> RawFd {
    f.map_or(-1, |f| f.as_raw_fd())
}

struct UNode {
    name: String,
    /// The ring of the thread, shared by every node it runs.
    ring: RingRef,
    /// This node's place among the nodes of its thread: in the token of its own operations
    /// (with generation 0), and in its buffer groups.
    index: u16,
    /// The generations of the thread's endpoints, which tell whose a completion is.
    gens: Rc<Gens>,
    /// The commands of the control thread for this node.
    cmds: Receiver<Cmd>,
    bufs: Bufs,
    /// References to each shared buffer (sends in flight + the forwarding in progress).
    buf_refs: Box<[u16]>,
    /// References to each big buffer (as `buf_refs`, + a cut in progress), and what each
    /// holds: `Some` for a tagged datagram, judged (the standard frames it stands for).
    big_refs: Box<[u16]>,
    big_whole: Box<[Option<Whole>]>,
    /// Tagged datagrams being cut for the destinations that take standard frames only, in
    /// the order they arrived (see `forward_whole`).
    cuts: VecDeque<CutJob>,
    /// Destination lists of finished cuts, for the next ones (nothing allocated per frame).
    spare_dests: Vec<Vec<(usize, u16)>>,
    /// Where an overlay's batch is received before its frames go to slots (allocated with
    /// the first batch), and the batch's lengths.
    ov_slab: Vec<u8>,
    ov_lens: [usize; OV_BATCH],
    /// Stream frames: SLOTS x BUF_SIZE, never moved while the node runs.
    slots: Box<[u8]>,
    slot_refs: Box<[u16]>,
    free_slots: Vec<u16>,
    eps: Vec<Option<Ep>>,
    /// Endpoints detached while operations still used their descriptors.
    leaving: Vec<(usize, Ep)>,
    fwd: Forwarder,
    /// The switch's or hub's control socket (None for a cable).
    listener: Option<Listener>,
    /// A cable: the end of one endpoint's input ends the node's work (vdeplug-fast exits).
    cable: bool,
    listen_armed: bool,
    /// Clients that have not joined yet.
    joins: Joins,
    wake: Arc<OwnedFd>,
    wake_armed: bool,
    /// Operations in flight (all kinds), for the shutdown.
    outstanding: u64,
    /// A completion of this node was handled in this turn (the others skip `turn_end`).
    touched: bool,
    start: Instant,
    shared: Arc<NodeShared>,
    stopping: bool,
    /// Tap writes queued on the ring and not submitted yet: a write made at once (a
    /// coalesced super-frame) submits them first, so the tap gets the frames in order.
    tap_queued: bool,
    /// The seqpacket ptp end this node runs (its peer is endpoint `ptp_peer` while attached).
    ptp: Option<PtpHost>,
    ptp_peer: usize,
    ptp_armed: bool,
    /// A peer accepted while the attached one had hung up: acked and attached once that
    /// one's end of file is handled.
    ptp_waiting: Option<OwnedFd>,
    /// The epoll instance the ring watches the listening socket through, and that socket.
    ptp_watch: Option<(Epoll, RawFd)>,
    /// How long a held connection waits ([`ptp::HOLD`]), for the timeout operations.
    ptp_hold: Box<Interval>,
    /// The current wait of the held connection (earlier timers that end are ignored).
    ptp_hold_gen: u16,
    /// A port's cable: the port's counters, published from its two endpoints' (see
    /// [`Counts::cable`]).
    port: Option<Arc<PortStats>>,
    /// Datagram ptp links that offered super-frames attached so far (see [`DgPtp`]).
    dgs: usize,
    /// A port's datagram ptp link's tap handover (see [`Handover`]); looked for once.
    ho: Option<Box<Handover>>,
    ho_looked: bool,
}

/// The `slot` of the token of a held connection's timer (the listening socket's poll has 0).
const HOLD_TIMER: u16 = 1;

impl Control for UNode {
    fn publish(&mut self) {
        UNode::publish(self);
    }
    fn add_endpoint(&mut self, e: Endpoint) -> Result<u16, EndpointError> {
        UNode::add_endpoint(self, e)
    }
    fn remove_endpoint(&mut self, id: u16) {
        self.remove(id as usize);
    }
}

impl UNode {
    /// Watches `fd` for `events` (multishot: until cancelled), completing with `user_data`.
    fn poll(&mut self, fd: RawFd, events: i16, multi: bool, user_data: u64) {
        let sqe = Sqe::Poll {
            fd,
            events: events as u32,
            multi,
        }
        .op(user_data);
        self.push(&sqe);
    }

    fn push(&mut self, e: &super::ring::Op) {
        // SAFETY: operations reference only the shared buffer ring and slot memory (kept until
        // every operation is reaped, see `shutdown`), the stream buffers and addresses of
        // endpoints (kept, with their descriptors, until their operations are reaped: `leaving`)
        // and nothing on the stack.
        if let Err(e) = unsafe { self.ring.push(e) } {
            crate::diag!(
                "{}: io_uring submit failed: {}",
                self.name,
                crate::sys::err_text(&e)
            );
        }
        self.outstanding += 1;
    }

    fn frame_ptr(&self, fid: u16) -> *const u8 {
        match Fid::of(fid) {
            Fid::Slot(s) => self.slots[s as usize * BUF_SIZE..].as_ptr(),
            Fid::Buf(b) => self.bufs.shared.addr(b),
            Fid::Big(b) => self.bufs.big_data(b, 0).as_ptr(),
            Fid::Tap(t) => self.bufs.tap.buf(t).as_ptr(),
        }
    }

    fn refs(&mut self, fid: u16) -> &mut u16 {
        match Fid::of(fid) {
            Fid::Slot(s) => &mut self.slot_refs[s as usize],
            Fid::Buf(b) => &mut self.buf_refs[b as usize],
            Fid::Big(b) => &mut self.big_refs[b as usize],
            Fid::Tap(t) => &mut self.bufs.tap.refs[t as usize],
        }
    }

    fn hold(&mut self, fid: u16) {
        *self.refs(fid) += 1;
    }

    fn release(&mut self, fid: u16) {
        let r = self.refs(fid);
        *r -= 1;
        if *r > 0 {
            return;
        }
        match Fid::of(fid) {
            Fid::Slot(s) => self.free_slots.push(s),
            _ => self.bufs.push(fid),
        }
    }

    /// What big buffer `fid` holds, when it is a judged tagged datagram.
    fn whole_of(&self, fid: u16) -> Option<Whole> {
        match Fid::of(fid) {
            Fid::Big(b) => self.big_whole[b as usize],
            Fid::Tap(t) => self.bufs.tap.whole[t as usize],
            _ => None,
        }
    }

    /// Records what big or tap buffer `fid` holds.
    fn set_whole(&mut self, fid: u16, w: Option<Whole>) {
        match Fid::of(fid) {
            Fid::Big(b) => self.big_whole[b as usize] = w,
            Fid::Tap(t) => self.bufs.tap.whole[t as usize] = w,
            _ => {}
        }
    }

    /// The endpoint a completion belongs to: attached, or detached and waiting for its last
    /// operations.
    fn ep_of(&mut self, t: &Token) -> Option<&mut Ep> {
        if let Some(Some(e)) = self.eps.get(t.ep()) {
            if e.gen == t.gen {
                return self.eps[t.ep()].as_mut();
            }
        }
        self.leaving
            .iter_mut()
            .find(|(i, e)| *i == t.ep() && e.gen == t.gen)
            .map(|(_, e)| e)
    }

    fn live(&self, t: &Token) -> bool {
        matches!(self.eps.get(t.ep()), Some(Some(e)) if e.gen == t.gen)
    }

    /// One operation of endpoint `t` finished: a detached endpoint with none left is closed.
    fn op_done(&mut self, t: &Token) {
        if let Some(e) = self.ep_of(t) {
            e.inflight -= 1;
        }
        self.leaving.retain(|(_, e)| e.inflight > 0);
    }

    /// The token of an operation of the node's own (no endpoint's).
    fn own(&self, op: Op) -> u64 {
        token(op, self.index as usize, 0, 0, 0)
    }

    /// The node's provided-buffer groups: the shared one, and the big one.
    fn group(&self, big: bool) -> u16 {
        2 * self.index + u16::from(big)
    }

    fn arm_wake(&mut self) {
        self.poll(self.wake.as_raw_fd(), libc::POLLIN, true, self.own(Op::Wake));
        self.wake_armed = true;
    }

    fn arm_listen(&mut self) {
        let Some(fd) = self.listener.as_ref().map(|l| l.ctl.as_raw_fd()) else {
            return;
        };
        self.poll(fd, libc::POLLIN, true, self.own(Op::Listen));
        self.listen_armed = true;
    }

    fn arm_rx(&mut self, id: usize) {
        self.arm_r2(id);
        let Some(e) = self.eps[id].as_mut() else { return };
        let g = match &self.bufs.big {
            Some(b) if e.superframes => b.bgid(),
            _ => self.bufs.shared.bgid(),
        };
        if e.rx_armed || e.rx_dead || e.port.as_ref().is_some_and(|p| p.rx_paused) {
            return;
        }
        if let Some(polls) = e.overlay_polls(id) {
            for sqe in polls.into_iter().flatten() {
                self.push(&sqe);
            }
            return;
        }
        let fd = e.rx_fd;
        let sqe = match &mut e.rx {
            Rx::None | Rx::Overlay(_) => return,
            Rx::Multi { socket, .. } => Sqe::ReadMulti {
                fd,
                group: g,
                socket: *socket,
            },
            Rx::Stream(s) => match s.read(fd) {
                Some(sqe) => sqe,
                None => return,
            },
            Rx::Vnet(v) => match v.read(fd, &mut self.bufs.tap) {
                Some(sqe) => sqe,
                None => return,
            },
        };
        let kind = match e.rx {
            Rx::Stream(_) => Op::StreamRead,
            Rx::Vnet(_) => Op::VnetRead,
            _ => Op::Rx,
        };
        e.rx_armed = true;
        e.rx_starved = false;
        e.inflight += 1;
        // A multishot receive's token names its buffer group, so that a buffer it hands over
        // goes back to the right one even once the endpoint is gone.
        let group = if kind == Op::Rx { g } else { 0 };
        let sqe = sqe.op(token(kind, id, e.gen, group, 0));
        self.push(&sqe);
    }

    fn arm_ctl(&mut self, id: usize) {
        let Some(e) = self.eps[id].as_mut() else { return };
        let Some(c) = e.ctl_fd else { return };
        e.inflight += 1;
        let t = token(Op::Ctl, id, e.gen, 0, 0);
        self.poll(c, libc::POLLIN, false, t);
    }

    fn add(&mut self, id: usize, mut e: Ep) {
        if self.eps.len() <= id {
            self.eps.resize_with(id + 1, || None);
        }
        self.shared
            .stats
            .lock()
            .expect("stats lock")
            .push(e.stats.clone());
        if self.bufs.big.is_none() && e.dg.is_some() {
            // No big buffers to receive tagged datagrams into (an endpoint added after the
            // node was set up): the link takes standard frames only, as one that did not offer.
            e.dg = None;
            e.superframes = false;
        }
        self.dgs += usize::from(e.dg.is_some());
        self.eps[id] = Some(e);
        self.arm_rx(id);
        self.arm_ctl(id);
    }

    fn next_gen(&mut self) -> u16 {
        self.gens.take(self.index)
    }

    /// Detaches endpoint `id`: no frame goes to it any more; its descriptors close once
    /// its operations (cancelled here) are reaped.
    fn remove(&mut self, id: usize) {
        let Some(mut e) = self.eps.get_mut(id).and_then(Option::take) else {
            return;
        };
        self.drop_queued(&mut e);
        e.publish();
        if let Owner::Client { path, .. } = &e.owner {
            let _ = std::fs::remove_file(path);
        }
        self.fwd.port_closed(id as PortId);
        self.shared.retire(&self.name, &e.stats, &e.counts);
        if e.inflight == 0 {
            return;
        }
        let mut fds = vec![e.rx_fd, e.tx_fd];
        fds.extend(e.ctl_fd);
        fds.extend(e.owner.pair().map(|p| p.as_raw_fd()));
        if let Rx::Overlay(r) = &e.rx {
            fds.extend_from_slice(&r.fds[..r.n]);
        }
        fds.sort_unstable();
        fds.dedup();
        for fd in fds.into_iter().filter(|f| *f >= 0) {
            let c = Sqe::CancelFd { fd }.op(self.own(Op::Cancel));
            self.push(&c);
        }
        self.leaving.push((id, e));
    }

    /// Sends frame `fid` to endpoint `to`, or drops it (counted there): into its send queue
    /// ([`SendQ`], as its backpressure admits), its stream output, its offloading tap or its
    /// overlay network. A tagged datagram (a big buffer with [`Self::whole_of`]) goes only to
    /// a client that takes super-frames.
    fn send(&mut self, to: usize, fid: u16, len: usize) {
        let ptr = self.frame_ptr(fid);
        let n = self.whole_of(fid).map_or(1, |w| w.segs);
        let (free, pool) = self.pool_of(fid);
        let Some(e) = self.eps[to].as_mut() else { return };
        if e.dg.is_some() {
            e.ptp_ask();
        }
        let c = &mut e.counts[LINK_TO_TAP];
        c.received += n;
        if let Some(q) = e.sq.as_mut() {
            // A port's stream end queues only what its output has no room for (in order).
            let queued = match &mut e.tx {
                Tx::Send | Tx::SendTo(_) | Tx::Write => true,
                Tx::Stream(s) => !q.queue.is_empty() || !s.room(len + 2),
                _ => false,
            };
            if queued {
                q.fresh = true;
                if admit_to_queue(q.bp, q.backlog(), free, pool) == Admit::Drop {
                    c.add_drop(DropReason::NoBuffer, n);
                    return;
                }
                q.queue.push_back((fid, len as u32));
                let full = e.port.is_some() && q.queue.len() >= PORT_QCAP;
                self.hold(fid);
                if full {
                    self.pause_rx(PORT_TAP + PORT_LINK - to);
                }
                return;
            }
        }
        let fd = e.tx_fd;
        let sqe = match &mut e.tx {
            Tx::Discard => {
                c.add_drop(DropReason::NoLink, n);
                return;
            }
            Tx::Send | Tx::SendTo(_) | Tx::Write => unreachable!("sent from its SendQ"),
            Tx::Stream(s) => {
                if !s.room(len + 2) {
                    c.add_drop(DropReason::NoBuffer, 1);
                } else {
                    s.put(frame_of(&self.bufs, &self.slots, fid, len));
                    c.sent(len);
                }
                self.kick_stream(to);
                return;
            }
            Tx::Vnet(v) => {
                let f = frame_of(&self.bufs, &self.slots, fid, len);
                let hl = v.hdr;
                // A frame the coalescer would pass through as it is: one io_uring write,
                // batched with the rest.
                if let Some(h) = v.zero_header(fid, f, ptr) {
                    self.tap_queued = true;
                    Sqe::Write {
                        fd,
                        buf: h,
                        len: (len + hl) as u32,
                    }
                } else {
                    submit_tap_writes(&mut self.tap_queued, &self.ring);
                    let tfd = tap_fd(&e.owner);
                    v.gro.push(f, &mut |h, f| offload::vnet_write(tfd, hl, c, h, f));
                    return;
                }
            }
            Tx::Overlay(o) => o.sendmsg(frame_of(&self.bufs, &self.slots, fid, len), fid, ptr, fd),
        };
        e.inflight += 1;
        let sqe = sqe.op(token(Op::Tx, to, e.gen, fid, len));
        self.hold(fid);
        self.push(&sqe);
    }

    /// The free buffers of frame `fid`'s pool, and the pool's size.
    fn pool_of(&self, fid: u16) -> (usize, usize) {
        match Fid::of(fid) {
            Fid::Buf(_) => (self.bufs.shared.avail() as usize, NBUF as usize),
            Fid::Big(_) => (
                self.bufs.big.as_ref().map_or(0, |b| b.avail() as usize),
                NBIG as usize,
            ),
            Fid::Slot(_) => (self.free_slots.len(), SLOTS),
            Fid::Tap(_) => (self.bufs.tap.free.len(), NTAP as usize),
        }
    }

    /// Starts the write of a stream endpoint's waiting bytes, unless one is in flight.
    fn kick_stream(&mut self, id: usize) {
        let Some(e) = self.eps[id].as_mut() else { return };
        let Tx::Stream(s) = &mut e.tx else { return };
        if s.writing > 0 || s.start == s.end {
            return;
        }
        s.writing = s.end - s.start;
        let p = s.out[s.start..].as_ptr();
        let sqe = Sqe::Write {
            fd: e.tx_fd,
            buf: p,
            len: s.writing as u32,
        }
        .op(token(Op::StreamWrite, id, e.gen, 0, 0));
        e.inflight += 1;
        self.push(&sqe);
    }

    /// Forwards frame `fid` received on endpoint `from`.
    fn forward(&mut self, from: usize, fid: u16, len: usize, now: u64) {
        self.refresh_whole();
        let f = frame_of(&self.bufs, &self.slots, fid, len);
        // A frame that looks tagged but comes from where no tagged datagram may (a classic
        // client, a tap, a link) would be read as one by the clients that take them: its
        // source address is multicast, which no Ethernet frame has (see wire::superframe).
        // A cable passes anything on, as vde_plug does, unless its other link takes them.
        let forged = is_tagged(f) && (!self.cable || self.eps.iter().flatten().any(Ep::takes_whole));
        let mut d = self.fwd.decide(from as PortId, f, now);
        // A cable whose other side is not attached (a ptp end between peers) drops.
        if self.cable && !self.eps.iter().enumerate().any(|(k, e)| k != from && e.is_some()) {
            d = Decision::Drop;
        }
        let Some(e) = self.eps[from].as_mut() else { return };
        let c = &mut e.counts[TAP_TO_LINK];
        if forged {
            c.add_drop(DropReason::Framing, 1);
            return;
        }
        if matches!(d, Decision::Drop) {
            c.add_drop(DropReason::NoLink, 1);
            return;
        }
        c.sent(len);
        // The forwarding holds the frame until every send is queued.
        self.hold(fid);
        for k in dests(d, from, self.eps.len()) {
            if self.eps[k].is_some() {
                self.send(k, fid, len);
            }
        }
        self.release(fid);
    }

    /// Forwards the tagged datagram in big buffer `fid` (`len` bytes) received on endpoint
    /// `from`, a client that takes them: judged whole first (a bad one is dropped and counted),
    /// the decision made on the frame after its header. A client that takes super-frames is
    /// sent the datagram as it came, from its buffer; the node's own offloading tap is written
    /// header and frame (after what its coalescer holds, to keep the order); every other
    /// destination gets standard frames: a super-frame is cut once (a partial checksum
    /// completed once), into slots, and each piece sent to all of them (see [`CutJob`]).
    ///
    /// `fid` is a big buffer, or a tap buffer holding a read of the node's own offloading tap
    /// made a tagged datagram (see [`Self::take_whole`]).
    fn forward_whole(&mut self, from: usize, fid: u16, len: usize, now: u64) {
        self.refresh_whole();
        let full = match Fid::of(fid) {
            Fid::Big(_) => len >= BIG_SIZE,
            // A tap read that filled its buffer is never taken whole.
            Fid::Tap(_) => false,
            _ => return,
        };
        let d = self.bufs.data(fid, len);
        let judged = cut::judge_whole(&d[TAG_LEN..], vnet::LEN, full).and_then(|w| {
            VnetHdr::parse(&d[TAG_LEN..], vnet::LEN)
                .map(|h| (w, h))
                .map_err(|_| DropReason::Framing)
        });
        let (w, h) = match judged {
            Ok(x) => x,
            Err(why) => {
                if let Some(e) = self.eps[from].as_mut() {
                    e.counts[TAP_TO_LINK].received += 1;
                    e.counts[TAP_TO_LINK].add_drop(why, 1);
                }
                self.bufs.push(fid);
                return;
            }
        };
        // The decision reads the frame's addresses only, and takes no frame over the largest
        // standard one: a super-frame is judged by its head.
        let f = &d[PREFIX..];
        let decision = self.fwd.decide(from as PortId, &f[..f.len().min(MAX_FRAME)], now);
        self.set_whole(fid, Some(w));
        *self.refs(fid) = 1;
        let any = dests(decision, from, self.eps.len()).any(|k| self.eps[k].is_some());
        let Some(e) = self.eps[from].as_mut() else {
            self.release(fid);
            return;
        };
        let c = &mut e.counts[TAP_TO_LINK];
        c.received += w.segs;
        // (What the node's own tap hands over crossed no wire.)
        if w.segs > 1 && !matches!(e.rx, Rx::Vnet(_)) && !e.port.as_ref().is_some_and(|p| p.vnet_hdr > 0) {
            c.wire_super += 1;
        }
        if !any {
            c.add_drop(DropReason::NoLink, w.segs);
            self.release(fid);
            return;
        }
        c.sent_many(w.segs, w.wire);
        let mut classic = self.spare_dests.pop().unwrap_or_default();
        for k in dests(decision, from, self.eps.len()) {
            let Some(e) = self.eps[k].as_mut() else { continue };
            if e.takes_whole() {
                self.send(k, fid, len);
            } else if let Tx::Vnet(v) = &mut e.tx {
                submit_tap_writes(&mut self.tap_queued, &self.ring);
                let (tfd, hl) = (tap_fd(&e.owner), v.hdr);
                let c = &mut e.counts[LINK_TO_TAP];
                if v.gro.pending() {
                    v.gro.flush(&mut |h, f| offload::vnet_write(tfd, hl, c, h, f));
                }
                c.received += w.segs;
                offload::vnet_write(tfd, hl, c, &h, &self.bufs.data(fid, len)[PREFIX..]);
            } else {
                classic.push((k, e.gen));
            }
        }
        if classic.is_empty() {
            self.spare_dests.push(classic);
        } else {
            self.cut_for(classic, from, fid, len, h);
        }
        self.release(fid);
    }

    /// Queues tagged datagram `fid` (header `h`, from `from`) to be cut for the `classic`
    /// destinations, which take standard frames only, and cuts what it can now.
    fn cut_for(&mut self, classic: Vec<(usize, u16)>, from: usize, fid: u16, len: usize, h: VnetHdr) {
        let count = match h.gso_kind() {
            vnet::GSO_NONE => 1,
            // Judged whole by forward_whole: it is a super-frame the segmenter takes.
            _ => Segmenter::new(&h, &self.bufs.data(fid, len)[PREFIX..]).map_or(0, |s| s.count()),
        };
        if h.gso_kind() != vnet::GSO_NONE {
            let c = &mut self.eps[from].as_mut().expect("checked by forward_whole").counts[TAP_TO_LINK];
            c.super_frames += 1;
            c.segments += count as u64;
        }
        // The cut holds the datagram until its last piece is sent.
        self.hold(fid);
        self.cuts.push_back(CutJob {
            fid,
            len,
            h,
            count,
            next: 0,
            dests: classic,
        });
        self.pump_cuts();
    }

    /// Cuts the tagged datagrams waiting in `cuts`, in order, one standard frame at a time into
    /// a slot, each sent to every destination of its datagram that is still there; stops when
    /// no slot is free (then goes on at the end of the turn, once sends gave slots back; the
    /// datagrams wait in their big buffers, so a flood of them slows their senders' receives).
    fn pump_cuts(&mut self) {
        while let Some(job) = self.cuts.front_mut() {
            if job.next >= job.count {
                let mut job = self.cuts.pop_front().expect("front");
                self.release(job.fid);
                job.dests.clear();
                self.spare_dests.push(job.dests);
                continue;
            }
            let Some(slot) = self.free_slots.pop() else { return };
            let (h, i, fid, len) = (job.h, job.next, job.fid, job.len);
            job.next += 1;
            let dests = std::mem::take(&mut job.dests);
            let o = slot as usize * BUF_SIZE;
            let out = &mut self.slots[o..o + BUF_SIZE];
            // The virtio-net header and the frame.
            let hf = &self.bufs.data(fid, len)[TAG_LEN..];
            let got = if h.gso_kind() == vnet::GSO_NONE {
                // A partial checksum (or none): completed on a copy, never in the buffer the
                // datagram is sent whole from.
                if hf.len() > out.len() {
                    Err(DropReason::Oversize)
                } else {
                    out[..hf.len()].copy_from_slice(hf);
                    match cut::judge(&mut out[..hf.len()], vnet::LEN, false, MAX_FRAME) {
                        Ok(Cut::Plain(l)) => {
                            out.copy_within(vnet::LEN..vnet::LEN + l, 0);
                            Ok(l)
                        }
                        Ok(Cut::Super(..)) => Err(DropReason::Framing),
                        Err(why) => Err(why),
                    }
                }
            } else {
                cut::segment(&h, &hf[vnet::LEN..], i, out)
            };
            match got {
                Ok(l) => {
                    let sfid = slot | SLOT_FLAG;
                    self.slot_refs[slot as usize] = 1;
                    for &(k, gen) in &dests {
                        if matches!(self.eps.get(k), Some(Some(e)) if e.gen == gen) {
                            self.send(k, sfid, l);
                        }
                    }
                    self.release(sfid);
                }
                Err(why) => {
                    self.free_slots.push(slot);
                    for &(k, gen) in &dests {
                        if let Some(Some(e)) = self.eps.get_mut(k) {
                            if e.gen == gen {
                                e.counts[LINK_TO_TAP].received += 1;
                                e.counts[LINK_TO_TAP].add_drop(why, 1);
                            }
                        }
                    }
                }
            }
            if let Some(job) = self.cuts.front_mut() {
                job.dests = dests;
            }
        }
    }

    /// The buffer a multishot receive handed over goes back to its group (named by the
    /// receive's token).
    fn give_back(&mut self, t: &Token, bid: u16) {
        if t.slot == self.group(true) && self.bufs.big.is_some() {
            self.bufs.push(bid | BIG_FLAG);
        } else {
            self.bufs.push(bid);
        }
    }

    /// The start of a multishot receive's completion (`on_rx`, `on_rx_pair`): the buffer it
    /// took counted out of its group, the operation done once no more follow. Whether more
    /// follow and the buffer; None when the endpoint left or the node stops (the buffer given
    /// back).
    fn rx_taken(&mut self, t: &Token, flags: u32) -> Option<(bool, Option<u16>)> {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        let big = t.slot == self.group(true) && self.bufs.big.is_some();
        if bid.is_some() {
            match &mut self.bufs.big {
                Some(b) if big => b.taken(),
                _ => self.bufs.shared.taken(),
            }
        }
        if !more {
            self.op_done(t);
        }
        if !self.live(t) || self.stopping {
            if let Some(b) = bid {
                self.give_back(t, b);
            }
            return None;
        }
        Some((more, bid))
    }

    fn on_rx(&mut self, t: Token, res: i32, flags: u32) {
        let Some((more, bid)) = self.rx_taken(&t, flags) else {
            return;
        };
        let big = t.slot == self.group(true) && self.bufs.big.is_some();
        let now = self.start.elapsed().as_secs();
        let ptp_peer = self.ptp.is_some() && t.ep() == self.ptp_peer;
        let e = self.eps[t.ep()].as_mut().expect("live");
        if !more {
            e.rx_armed = false;
        }
        if let Rx::Overlay(r) = &mut e.rx {
            if !more {
                r.armed[t.slot as usize & 1] = false;
            }
        }
        if matches!(e.rx, Rx::Overlay(_)) {
            if let Some(b) = bid {
                self.give_back(&t, b);
            }
            self.on_overlay_rx(t, res, now);
            return;
        }
        let Rx::Multi { eof_on_zero, .. } = e.rx else {
            if let Some(b) = bid {
                self.give_back(&t, b);
            }
            return;
        };
        if res < 0 {
            if let Some(b) = bid {
                self.give_back(&t, b);
            }
            self.rx_failed(t.ep(), -res, ptp_peer);
            return;
        }
        if res == 0 && eof_on_zero && ptp_peer {
            // The peer hung up: not the end of the node (see ptp::after_hangup).
            if let Some(b) = bid {
                self.give_back(&t, b);
            }
            self.ptp_hangup();
            return;
        }
        if res == 0 {
            // An empty datagram may come without a buffer: counted all the same.
            if let Some(b) = bid {
                self.give_back(&t, b);
            }
            self.rx_empty(&t, eof_on_zero, more);
            return;
        }
        let Some(bid) = bid else { return };
        let len = res as usize;
        let fid = if big { bid | BIG_FLAG } else { bid };
        if ptp_peer && len == RUNT_LEN && self.bufs.data(fid, len) == OFFER {
            self.bufs.push(fid);
            self.ptp_offered();
            return;
        }
        if self.handover_whole(t.ep(), fid, len)
            || self.port_whole(t.ep(), fid, len)
            || self.port_vnet(t.ep(), fid, len)
        {
            return;
        }
        self.take_datagram(t.ep(), fid, len, now, false);
    }

    /// A receive on endpoint `id` failed with `errno`: out of buffers (the endpoint marked
    /// starved), one to retry, the ptp peer gone (hung up), or the endpoint's receiving dead.
    fn rx_failed(&mut self, id: usize, errno: i32, ptp_peer: bool) {
        let e = self.eps[id].as_mut().expect("live");
        match classify_rx_error(errno) {
            RxFault::Starved => e.rx_starved = true,
            RxFault::Again | RxFault::Transient => {}
            RxFault::Fatal if ptp_peer => self.ptp_hangup(),
            RxFault::Fatal => {
                e.rx_dead = true;
                crate::diag!(
                    "{}: {}: receive failed: {}",
                    self.name,
                    e.label,
                    Errno::from_raw(errno).desc()
                );
            }
        }
    }

    /// An empty receive (`t`): the end of a stream or seqpacket input (its multishot
    /// receive cancelled while `more` are to come), or an empty datagram, dropped as a
    /// framing error.
    fn rx_empty(&mut self, t: &Token, eof_on_zero: bool, more: bool) {
        let e = self.eps[t.ep()].as_mut().expect("live");
        if eof_on_zero {
            // End of file; a multishot recv on a closed seqpacket socket keeps posting
            // empty completions (6.18): cancel it.
            // A cable's input ending is the normal end of a vdeplug-fast run, about
            // which vde_plug says nothing.
            if !e.rx_dead && !self.cable {
                crate::diag!("{}: {}: end of file", self.name, e.label);
            } else if !e.rx_dead && self.port.is_some() {
                port_eof(e, t.ep());
            }
            e.rx_dead = true;
            if self.cable {
                self.shared.ended.store(true, Ordering::Release);
            }
            if more {
                let c = Sqe::Cancel {
                    user_data: token(Op::Rx, t.ep(), t.gen, t.slot, 0),
                }
                .op(self.own(Op::Cancel));
                self.push(&c);
            }
        } else {
            e.counts[TAP_TO_LINK].received += 1;
            e.counts[TAP_TO_LINK].add_drop(DropReason::Framing, 1);
        }
    }

    /// Datagram `fid` (`len` bytes, a shared or big buffer) received on endpoint `id`, on its
    /// main socket or its R2 (`on_r2`): a negotiation runt of a datagram ptp link is acted on
    /// ([`Ep::on_runt`]), a tagged datagram in a big buffer forwarded whole, anything else
    /// admitted and forwarded.
    fn take_datagram(&mut self, id: usize, fid: u16, len: usize, now: u64, on_r2: bool) {
        if len <= RUNT_MAX {
            if let Some(e) = self.eps[id].as_mut().filter(|e| e.dg.is_some()) {
                if let Some(r) = Runt::parse(self.bufs.data(fid, len)) {
                    self.bufs.push(fid);
                    e.on_runt(r, on_r2);
                    return;
                }
            }
        }
        let big = matches!(Fid::of(fid), Fid::Big(_));
        if big && is_tagged(self.bufs.data(fid, len)) {
            self.forward_whole(id, fid, len, now);
            return;
        }
        let e = self.eps[id].as_mut().expect("live");
        let c = &mut e.counts[TAP_TO_LINK];
        c.received += 1;
        if let Err(why) = admit(len) {
            c.add_drop(why, 1);
            self.bufs.push(fid);
            return;
        }
        match Fid::of(fid) {
            Fid::Big(b) => {
                self.big_whole[b as usize] = None;
                self.big_refs[b as usize] = 1;
            }
            _ => self.buf_refs[fid as usize] = 1,
        }
        self.forward(id, fid, len, now);
        self.release(fid);
    }

    /// A socket of a vxlan:// / vxvde:// network is readable (or its poll failed): its
    /// datagrams are taken in batches by recvmmsg ([`OverlayEp::recv`], which judges them and
    /// learns their senders, for both loops), each kept frame copied into a slot and forwarded.
    fn on_overlay_rx(&mut self, t: Token, res: i32, now: u64) {
        let id = t.ep();
        if res < 0 {
            let Some(e) = self.eps[id].as_mut() else { return };
            if classify_rx_error(-res) == RxFault::Fatal {
                e.rx_dead = true;
                crate::diag!(
                    "{}: {}: receive failed: {}",
                    self.name,
                    e.label,
                    Errno::from_raw(-res).desc()
                );
            }
            return;
        }
        if self.ov_slab.is_empty() {
            self.ov_slab = vec![0u8; OV_BATCH * BUF_SIZE];
        }
        for _ in 0..OV_ROUNDS {
            // Only as many as there are slots to forward them from (the rest waits for the
            // next readiness, at the end of the turn).
            let max = OV_BATCH.min(self.free_slots.len());
            if max == 0 {
                return;
            }
            let Some(e) = self.eps[id].as_mut() else { return };
            let Tx::Overlay(o) = &mut e.tx else { return };
            let c = &mut e.counts[TAP_TO_LINK];
            let n = match o
                .ep
                .recv(&mut self.ov_slab, BUF_SIZE, &mut self.ov_lens[..max], c)
            {
                Ok(n) => n,
                Err(x) => {
                    e.rx_dead = true;
                    crate::diag!("{}: {}: receive failed: {}", self.name, e.label, x.desc());
                    return;
                }
            };
            for k in 0..n {
                let slot = self.free_slots.pop().expect("one slot per frame of the batch");
                let (at, len) = (slot as usize * BUF_SIZE, self.ov_lens[k]);
                self.slots[at..at + len].copy_from_slice(&self.ov_slab[k * BUF_SIZE..k * BUF_SIZE + len]);
                let fid = slot | SLOT_FLAG;
                self.slot_refs[slot as usize] = 1;
                self.forward(id, fid, len, now);
                self.release(fid);
            }
            if n < max {
                return;
            }
        }
    }

    /// A send completed: one of a chain ([`Self::on_chain_tx`]), or a single one (a write to
    /// an offloading tap, a send to an overlay network), counted and done.
    fn on_tx(&mut self, t: Token, res: i32) {
        if self.ep_of(&t).is_some_and(|e| e.chained()) {
            self.on_chain_tx(t, res);
            return;
        }
        let whole = self.whole_of(t.slot);
        self.release(t.slot);
        if let Some(e) = self.ep_of(&t) {
            let c = &mut e.counts[LINK_TO_TAP];
            match res {
                r if r >= 0 => count_sent(c, whole, t.len as usize, None),
                r => c.add_drop(single_send_drop(-r), whole.map_or(1, |w| w.segs)),
            }
        }
        self.op_done(&t);
    }

    /// A single-shot read on endpoint `t` (a stream's input, an offloading tap) completed: the
    /// bytes read, or None when there is nothing to take (end of file and errors end the
    /// endpoint's receiving, with one line).
    fn read_done(&mut self, t: &Token, res: i32) -> Option<usize> {
        self.op_done(t);
        if !self.live(t) || self.stopping {
            return None;
        }
        let e = self.eps[t.ep()].as_mut().expect("live");
        e.rx_armed = false;
        match &mut e.rx {
            Rx::Stream(s) => s.reading = false,
            Rx::Vnet(v) => v.reading = false,
            _ => {}
        }
        match res {
            0 => {
                if self.port.is_some() {
                    port_eof(e, t.ep());
                }
                if self.cable {
                    self.shared.ended.store(true, Ordering::Release);
                } else {
                    crate::diag!("{}: {}: end of file", self.name, e.label);
                }
                e.rx_dead = true;
                None
            }
            r if r < 0 => {
                match classify_rx_error(-r) {
                    RxFault::Again | RxFault::Transient | RxFault::Starved => {}
                    RxFault::Fatal => {
                        let x = -r;
                        e.rx_dead = true;
                        crate::diag!(
                            "{}: {}: read failed: {}",
                            self.name,
                            e.label,
                            Errno::from_raw(x).desc()
                        );
                    }
                }
                None
            }
            r => Some(r as usize),
        }
    }

    fn on_stream_read(&mut self, t: Token, res: i32) {
        let Some(n) = self.read_done(&t, res) else { return };
        if let Some(Ep {
            rx: Rx::Stream(s), ..
        }) = self.eps[t.ep()].as_mut()
        {
            s.off = 0;
            s.len = n;
            self.decode(t.ep());
        }
    }

    /// Reassembles the frames waiting in stream endpoint `id`'s input and forwards them; stops
    /// when the input is used up or no slot is free (then goes on at the end of the turn).
    fn decode(&mut self, id: usize) {
        let now = self.start.elapsed().as_secs();
        loop {
            let Some(e) = self.eps[id].as_mut() else { return };
            let Rx::Stream(s) = &mut e.rx else { return };
            if s.off >= s.len {
                return;
            }
            let slot = match s.cur {
                Some(x) => x,
                None => match self.free_slots.pop() {
                    Some(x) => {
                        s.cur = Some(x);
                        x
                    }
                    None => return,
                },
            };
            let o = slot as usize * BUF_SIZE;
            let (k, ev) = s
                .dec
                .feed(&s.raw[s.off..s.len], &mut self.slots[o..o + MAX_FRAME]);
            s.off += k;
            let c = &mut e.counts[TAP_TO_LINK];
            if let Some(ev) = ev {
                c.received += 1;
                match admit_stream(ev) {
                    Ok(l) => {
                        s.cur = None;
                        let fid = slot | SLOT_FLAG;
                        self.slot_refs[slot as usize] = 1;
                        self.forward(id, fid, l, now);
                        self.release(fid);
                    }
                    // The slot stays this stream's for the next frame.
                    Err(why) => c.add_drop(why, 1),
                }
            }
        }
    }

    fn on_vnet_read(&mut self, t: Token, res: i32) {
        let Some(n) = self.read_done(&t, res) else { return };
        if let Some(Ep { rx: Rx::Vnet(v), .. }) = self.eps[t.ep()].as_mut() {
            v.len = n;
            v.next = 0;
            self.take_whole(t.ep());
            self.cut(t.ep());
        }
    }

    /// The read waiting on offloading tap endpoint `id` goes on whole when it needs its
    /// header (a super-frame, a partial checksum) and the node offers super-frames: the tag
    /// and a 10-byte virtio-net header are put in front of its frame, in its tap buffer, which
    /// is then a tagged datagram as a capable client sends one; `forward_whole` sends it as it
    /// is to the clients that take them and cuts it once for the rest. Anything else (a plain
    /// frame, a read that is no frame or filled its buffer) is left to [`Self::cut`].
    fn take_whole(&mut self, id: usize) {
        if self.bufs.big.is_none() {
            return;
        }
        let now = self.start.elapsed().as_secs();
        let Some(Ep { rx: Rx::Vnet(v), .. }) = self.eps[id].as_mut() else {
            return;
        };
        let (Some(tb), n, hl) = (v.cur, v.len, v.hdr) else {
            return;
        };
        if n == 0 || n >= SUPER_READ {
            return;
        }
        let buf = self.bufs.tap.buf_mut(tb);
        let read = &buf[PREFIX - hl..PREFIX - hl + n];
        let h = match VnetHdr::parse(read, hl) {
            Ok(h) if needs_header(&h) => h,
            _ => return,
        };
        buf[..TAG_LEN].copy_from_slice(&TAG);
        buf[TAG_LEN..PREFIX].copy_from_slice(&h.to_bytes()[..vnet::LEN]);
        v.cur = None;
        v.len = 0;
        self.forward_whole(id, tb | TAP_FLAG, PREFIX + n - hl, now);
    }

    /// Cuts the offloading tap read waiting on endpoint `id` into standard frames, each in a
    /// slot, and forwards them one by one; stops when the read is used up or no slot is free
    /// (then goes on at the end of the turn).
    fn cut(&mut self, id: usize) {
        let now = self.start.elapsed().as_secs();
        loop {
            let Some(e) = self.eps[id].as_mut() else { return };
            let Rx::Vnet(v) = &mut e.rx else { return };
            if v.len == 0 {
                return;
            }
            let Some(tb) = v.cur else { return };
            let c = &mut e.counts[TAP_TO_LINK];
            let full = v.len == SUPER_READ;
            let at = PREFIX - v.hdr;
            let read = &mut self.bufs.tap.buf_mut(tb)[at..at + v.len];
            let Some(slot) = self.free_slots.pop() else { return };
            let o = slot as usize * BUF_SIZE;
            let out = &mut self.slots[o..o + BUF_SIZE];
            c.received += 1;
            let piece = cut::piece(read, v.hdr, full, MAX_FRAME, &mut v.next, out);
            if let Some(n) = piece.first_of {
                c.super_frames += 1;
                c.segments += n as u64;
            }
            if piece.done {
                v.len = 0;
            }
            self.forward_piece(id, slot, piece.got, now);
        }
    }

    /// Forwards the frame cut from endpoint `id`'s tap read into `slot` (`got`: its length),
    /// or drops it, counted there, and frees the slot.
    fn forward_piece(&mut self, id: usize, slot: u16, got: Result<usize, DropReason>, now: u64) {
        match got {
            Ok(l) => {
                let fid = slot | SLOT_FLAG;
                self.slot_refs[slot as usize] = 1;
                self.forward(id, fid, l, now);
                self.release(fid);
            }
            Err(why) => {
                if let Some(e) = self.eps[id].as_mut() {
                    e.counts[TAP_TO_LINK].add_drop(why, 1);
                }
                self.free_slots.push(slot);
            }
        }
    }

    fn on_stream_write(&mut self, t: Token, res: i32) {
        self.op_done(&t);
        if !self.live(&t) || self.stopping {
            return;
        }
        let e = self.eps[t.ep()].as_mut().expect("live");
        let Tx::Stream(s) = &mut e.tx else { return };
        s.writing = 0;
        match res {
            r if r > 0 => {
                s.start += r as usize;
                if s.start == s.end {
                    s.start = 0;
                    s.end = 0;
                }
            }
            r if r == -libc::EINTR || r == -libc::EAGAIN => {}
            _ => {
                // The reader is gone: what waited is lost.
                e.counts[LINK_TO_TAP].add_drop(DropReason::SendError, 1);
                s.start = 0;
                s.end = 0;
            }
        }
        self.port_stream_fill(t.ep());
        self.kick_stream(t.ep());
    }

    fn on_ctl(&mut self, t: Token, res: i32) {
        self.op_done(&t);
        if !self.live(&t) || self.stopping || res == -libc::ECANCELED {
            return;
        }
        let e = self.eps[t.ep()].as_ref().expect("live");
        let Some(c) = e.ctl_fd else { return };
        let mut b = [0u8; 256];
        match recv(c, &mut b, MsgFlags::MSG_DONTWAIT) {
            Ok(n) if n > 0 => self.arm_ctl(t.ep()),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => self.arm_ctl(t.ep()),
            _ => {
                if let Owner::Link(l) = &e.owner {
                    crate::diag!(
                        "{}: {}: the switch closed the control connection",
                        self.name,
                        l.vnl
                    );
                    if self.cable {
                        self.shared.ended.store(true, Ordering::Release);
                    }
                }
                self.remove(t.ep());
            }
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let changes = self.joins.accept(l.ctl.as_fd(), Instant::now(), &self.name);
        for c in changes {
            match c {
                Change::Watch { slot, gen, fd } => self.arm_pending(slot, gen, fd),
                Change::Unwatch { slot, gen } => {
                    let e = Sqe::Cancel {
                        user_data: self.pending_token(slot, gen),
                    }
                    .op(self.own(Op::Cancel));
                    self.push(&e);
                }
            }
        }
    }

    /// The token of the poll on joining client `slot`'s request (its generation is the
    /// joins', so the token is the node's own).
    fn pending_token(&self, slot: usize, gen: u16) -> u64 {
        token(Op::Pending, self.index as usize, 0, slot as u16, gen.into())
    }

    fn arm_pending(&mut self, slot: usize, gen: u16, fd: RawFd) {
        self.poll(fd, libc::POLLIN, false, self.pending_token(slot, gen));
    }

    /// A joining client's request arrived (or part of it): answer it with a new port.
    fn pending_ready(&mut self, slot: usize, gen: u16) {
        let p = match self.joins.ready(slot, gen) {
            Ready::Stale => return,
            Ready::Wait => {
                if let Some(fd) = self.joins.fd(slot, gen) {
                    self.arm_pending(slot, gen, fd);
                }
                return;
            }
            Ready::Done(p) => p,
        };
        let taken = |i: usize| matches!(self.eps.get(i), Some(Some(_)));
        let Some(l) = &self.listener else { return };
        let Some(j) = l.answer(p.request(), p.fd.as_fd(), MAX_PORTS, taken) else {
            return;
        };
        let id = j.id as usize;
        // A node that offers super-frames (big buffers) answered the client's offer, if any.
        let offered = self.bufs.big.is_some();
        let superframes = j.superframes && offered;
        let owner = Owner::Client {
            data: j.data,
            ctl: p.fd,
            path: j.path,
        };
        let gen = self.next_gen();
        match Ep::new(
            owner,
            &format!("{}:{id}", self.name),
            &j.descr,
            TapOffload::NONE,
            gen,
        ) {
            Ok(mut e) => {
                e.superframes = superframes;
                e.takes_whole = superframes;
                if let Some(st) = Arc::get_mut(&mut e.stats) {
                    st.superframes = offered.then(|| Arc::new(AtomicBool::new(superframes)));
                }
                self.add(id, e);
            }
            Err(m) => crate::diag!("{m}"),
        }
    }

    /// Attaches an endpoint at the lowest free port from 1.
    fn add_endpoint(&mut self, e: Endpoint) -> Result<u16, EndpointError> {
        let id = (1..MAX_PORTS)
            .find(|&i| !matches!(self.eps.get(i), Some(Some(_))))
            .ok_or_else(|| EndpointError::NoFreePort {
                node: self.name.clone(),
            })?;
        let gen = self.next_gen();
        let ep = ep_of(e, &self.name, gen)?;
        self.add(id, ep);
        Ok(id as u16)
    }

    fn on_wake(&mut self, more: bool) -> bool {
        if !more {
            self.wake_armed = false;
        }
        let mut b = [0u8; 8];
        let _ = nix::unistd::read(self.wake.as_fd(), &mut b);
        let cmds = self.cmds.clone();
        dispatch(&cmds, self)
    }

    fn publish(&self) {
        if let Some(st) = &self.port {
            self.publish_port(st);
            return;
        }
        for e in self.eps.iter().flatten() {
            e.publish();
        }
    }

    /// Handles one completion of this node; true when Stop arrived.
    fn complete(&mut self, t: Token, res: i32, flags: u32) -> bool {
        let more = cqueue::more(flags);
        // A multishot operation goes on while its completions say "more".
        if !more {
            self.outstanding -= 1;
        }
        self.touched = true;
        match t.op {
            // (Generation 0: the node's own; a Ctl of its own is the handover's.)
            Op::Ctl if t.gen == 0 => self.on_handover(t, res),
            Op::Rx => self.on_rx(t, res, flags),
            Op::RxPair => self.on_rx_pair(t, res, flags),
            Op::Tx => self.on_tx(t, res),
            Op::StreamRead => self.on_stream_read(t, res),
            Op::VnetRead => self.on_vnet_read(t, res),
            Op::StreamWrite => self.on_stream_write(t, res),
            Op::Ctl => self.on_ctl(t, res),
            Op::Pending if !self.stopping => self.pending_ready(t.slot as usize, t.len),
            Op::Listen => {
                if !more {
                    self.listen_armed = false;
                }
                if !self.stopping && res >= 0 {
                    self.accept();
                }
            }
            Op::PtpListen if t.slot == HOLD_TIMER && !self.stopping => self.ptp_hold_over(t.len),
            Op::PtpListen if t.slot == HOLD_TIMER => {}
            Op::PtpListen => {
                if !more {
                    self.ptp_armed = false;
                }
                if !self.stopping && res >= 0 {
                    self.ptp_accept();
                }
            }
            Op::TxWait => self.on_tx_wait(t),
            Op::Wake if !self.stopping => return self.on_wake(more),
            Op::Wake if !more => self.wake_armed = false,
            _ => {}
        }
        false
    }

    /// Writes what the coalescers of offloading taps hold (once per completion drain).
    fn flush_coalesced(&mut self) {
        for e in self.eps.iter_mut().flatten() {
            let Tx::Vnet(v) = &mut e.tx else { continue };
            if v.gro.pending() {
                submit_tap_writes(&mut self.tap_queued, &self.ring);
                let (tfd, hl) = (tap_fd(&e.owner), v.hdr);
                let c = &mut e.counts[LINK_TO_TAP];
                v.gro.flush(&mut |h, f| offload::vnet_write(tfd, hl, c, h, f));
            }
        }
    }

    fn turn_end(&mut self) {
        for id in 0..self.eps.len() {
            match &self.eps[id] {
                Some(e) if matches!(e.rx, Rx::Stream(_)) => self.decode(id),
                Some(e) if matches!(e.rx, Rx::Vnet(_)) => self.cut(id),
                _ => {}
            }
        }
        self.pump_cuts();
        self.bufs.shared.publish();
        let avail = self.bufs.shared.avail();
        let avail_big = self.bufs.big.as_ref().map_or(0, |b| {
            b.publish();
            b.avail()
        });
        for id in 0..self.eps.len() {
            let Some(e) = self.eps[id].as_ref() else { continue };
            let enough = if e.superframes {
                avail_big >= REARM_BIG
            } else {
                avail >= REARM
            };
            if !e.rx_armed && !e.rx_dead && (!e.rx_starved || enough) {
                self.arm_rx(id);
            }
            if self.eps[id]
                .as_ref()
                .is_some_and(|e| e.r2_wants_arming(avail_big >= REARM_BIG))
            {
                self.arm_r2(id);
            }
        }
        if !self.wake_armed {
            self.arm_wake();
        }
        if !self.listen_armed {
            self.arm_listen();
        }
        self.arm_ptp_listen();
        self.handover_tick();
        self.flush_sends();
        self.publish();
    }

    /// Arms what the node waits for at its start.
    fn start(&mut self) {
        self.arm_wake();
        self.arm_listen();
        self.handover_tick();
        for id in 0..self.eps.len() {
            self.arm_rx(id);
        }
    }

    /// The node's part of the stop, before its operations are cancelled: PATH goes before
    /// the peer's connection does, so a peer looking for us again finds nothing there (and
    /// listens itself) instead of a listener about to close; bytes already waiting for a
    /// stream endpoint get one last chance to go out.
    fn begin_shutdown(&mut self) {
        self.stopping = true;
        if let Some(h) = self.ptp.as_mut() {
            h.shutdown();
        }
        self.ptp_waiting = None;
        for e in self.eps.iter_mut().flatten() {
            if let (Tx::Stream(s), Some(fd)) = (&mut e.tx, e.owner.tx()) {
                if s.writing == 0 {
                    let _ = nix::unistd::write(fd, &s.out[s.start..s.end]);
                }
            }
        }
    }

    /// The node's part of the stop once its operations were reaped (or not, in time: their
    /// memory is then leaked rather than freed under the kernel).
    fn end_shutdown(&mut self) {
        // The frames still waiting in send queues were never sent.
        for id in 0..self.eps.len() {
            if let Some(mut e) = self.eps[id].take() {
                self.drop_queued(&mut e);
                self.eps[id] = Some(e);
            }
        }
        self.publish();
        if self.outstanding > 0 {
            crate::diag!(
                "{}: {} io_uring operations did not finish at stop; their buffers are leaked",
                self.name,
                self.outstanding
            );
            std::mem::forget(std::mem::take(&mut self.eps));
            std::mem::forget(std::mem::take(&mut self.leaving));
            let slots = std::mem::take(&mut self.slots);
            std::mem::forget(slots);
            // (A tap read may still be in flight into one of these.)
            std::mem::forget(std::mem::take(&mut self.bufs.tap.slab));
        }
    }
}

/// The nodes one thread runs, on one ring: each completion goes to the node its token
/// names ([`Gens::node_of`]); a node whose completions came ends its turn.
struct Nodes {
    ring: RingRef,
    gens: Rc<Gens>,
    /// Busy polling: spin this long for a completion before sleeping (`--busy-poll`).
    busy: Option<Duration>,
    /// Batching wait in microseconds (`UringTuning::batch_wait_us`), for a thread of ports'
    /// cables, where the kernel has it.
    batch: Option<u32>,
    nodes: Vec<UNode>,
    /// The nodes that were told to stop (the thread stops once all were).
    stopped: Vec<bool>,
    cqes: Vec<(u64, i32, u32)>,
}

impl Nodes {
    /// Handles every completion ready, then lets the nodes that had any write what their
    /// coalescers hold.
    fn drain(&mut self) {
        self.cqes.clear();
        self.ring.0.borrow_mut().completions(&mut self.cqes);
        for &(ud, res, flags) in &self.cqes {
            let Some(t) = Token::decode(ud) else { continue };
            let k = self.gens.node_of(&t);
            let Some(n) = self.nodes.get_mut(k) else { continue };
            if n.complete(t, res, flags) {
                self.stopped[k] = true;
            }
        }
        for n in self.nodes.iter_mut().filter(|n| n.touched) {
            n.flush_coalesced();
        }
    }

    fn run(&mut self) {
        for n in &mut self.nodes {
            n.start();
        }
        // Completions to wait for (with a batching wait): as many as the last turn found (up
        // to WAIT_BATCH), and at least the ports' sends in flight, whose chain links after the
        // first are issued from task work inside io_uring_enter; a turn of fewer than
        // MIN_BATCH (a lone exchange) waits for the first only. As the port worker did (see
        // its measurements).
        let mut want = 1;
        while !self.stopped.iter().all(|s| *s) {
            let r = {
                let mut ring = self.ring.0.borrow_mut();
                match (self.busy, self.batch) {
                    (Some(budget), _) => ring.busy_wait(budget),
                    (None, Some(us)) if want >= MIN_BATCH => ring.submit_and_wait_batch(want, us),
                    _ => ring.submit_and_wait(1, None),
                }
            };
            match r {
                Ok(_) => {}
                // ETIME: the batching wait ended with what had arrived.
                Err(e) if is_retry(&e) || e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) => {
                    crate::diag!(
                        "{}: node stopped: io_uring_enter: {}",
                        self.nodes[0].name,
                        crate::sys::err_text(&e)
                    );
                    break;
                }
            }
            self.drain();
            for n in self.nodes.iter_mut().filter(|n| n.touched) {
                n.touched = false;
                n.turn_end();
            }
            want = match self.cqes.len() {
                // Nothing came within the batching wait: a chain is blocked on its peer.
                0 => 1,
                n => n.min(WAIT_BATCH).max(match self.batch {
                    Some(_) => self.nodes.iter().map(UNode::chained_sends).sum(),
                    None => 0,
                }),
            };
        }
        self.shutdown();
    }

    /// Cancels everything in flight and reaps it, so that no buffer or descriptor goes while
    /// the kernel may still use it; then the endpoints close.
    fn shutdown(&mut self) {
        for n in &mut self.nodes {
            n.begin_shutdown();
        }
        // Counted by the first node (the wait is for all of them).
        let cancel = Sqe::CancelAll.op(self.nodes[0].own(Op::Cancel));
        self.nodes[0].push(&cancel);
        let deadline = Instant::now() + Duration::from_secs(2);
        let tick = Interval::new(Duration::from_millis(50));
        let outstanding = |ns: &[UNode]| ns.iter().map(|n| n.outstanding).sum::<u64>();
        while outstanding(&self.nodes) > 0 && Instant::now() < deadline {
            let _ = self.ring.0.borrow_mut().submit_and_wait(1, Some(&tick));
            self.drain();
            if outstanding(&self.nodes) > 0 {
                self.nodes[0].push(&cancel);
            }
        }
        for n in &mut self.nodes {
            n.end_shutdown();
        }
    }
}

/// The seqpacket ptp end: the listening socket, the one peer, hang-ups and reconnection; the
/// rules are `core::ptp`'s.
impl UNode {
    /// Watches the listening socket, and attaches the peer the link was opened with.
    fn ptp_start(&mut self) -> Result<(), EndpointError> {
        let Some(h) = self.ptp.as_mut() else { return Ok(()) };
        let peer = h.take_peer();
        self.arm_ptp_listen();
        if let Some(fd) = peer {
            self.ptp_attach(fd)?;
        }
        Ok(())
    }

    fn arm_ptp_listen(&mut self) {
        if self.ptp_armed || self.stopping {
            return;
        }
        let Some(l) = self.ptp.as_ref().and_then(PtpHost::listener) else {
            return;
        };
        // The ring watches the listening socket through an epoll instance of its own: an
        // operation on the socket itself would hold its file, and when this process is killed
        // (SIGKILL) the ring's teardown, after the process is gone, would keep PATH listening
        // a moment longer, accepting connections it then resets. Epoll holds no reference.
        // (Made at set-up: the confined thread cannot create one.)
        let Some((ep, watched)) = self.ptp_watch.as_mut() else {
            return;
        };
        if *watched != l.as_raw_fd() {
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, 0);
            if let Err(e) = ep.add(l, ev) {
                crate::diag!(
                    "{}: cannot watch the ptp socket: epoll_ctl: {}",
                    self.name,
                    e.desc()
                );
                return;
            }
            *watched = l.as_raw_fd();
        }
        let fd = ep.0.as_raw_fd();
        self.poll(fd, libc::POLLIN, false, self.own(Op::PtpListen));
        self.ptp_armed = true;
    }

    /// Makes a connected (and acked) peer the node's peer endpoint. When the node takes
    /// super-frames (its tap has offload), it says so on the new connection with [`OFFER`]
    /// and receives the peer into its big buffers; it sends its own whole once the peer said
    /// the same ([`Self::ptp_offered`]). A connection reaches one peer, so an OFFER on it
    /// comes from the very end that will receive them; a classic peer never sends one, and
    /// the 8 bytes of ours are under an Ethernet header: it drops them (its tap refuses them).
    fn ptp_attach(&mut self, fd: OwnedFd) -> Result<(), EndpointError> {
        let vnl = self.ptp.as_ref().map(|h| h.vnl.clone()).unwrap_or_default();
        let offer = self.bufs.big.is_some()
            && nix::sys::socket::send(fd.as_raw_fd(), &OFFER, MsgFlags::MSG_DONTWAIT).is_ok();
        let mut link = Link::single(&vnl, Framing::Datagram, fd);
        if offer {
            link.superframes = Some(Arc::new(AtomicBool::new(false)));
        }
        let gen = self.next_gen();
        let mut ep = Ep::new(
            Owner::Link(Box::new(link)),
            &format!("{}:peer", self.name),
            &vnl,
            TapOffload::NONE,
            gen,
        )?;
        ep.superframes = offer;
        self.add(self.ptp_peer, ep);
        if let Some(h) = &self.ptp {
            h.set_present(true);
        }
        Ok(())
    }

    /// The attached peer sent [`OFFER`]: it takes tagged datagrams, so the node's
    /// super-frames go to it whole from now on (when the node offered too).
    fn ptp_offered(&mut self) {
        let Some(e) = self.eps.get_mut(self.ptp_peer).and_then(Option::as_mut) else {
            return;
        };
        if !e.superframes {
            return;
        }
        e.takes_whole = true;
        if let Some(f) = &e.stats.superframes {
            f.store(true, Ordering::Release);
        }
    }

    /// Acks a new peer with 0 and attaches it.
    fn ptp_take(&mut self, fd: OwnedFd) {
        if !PtpHost::ack(&fd, 0) {
            return;
        }
        if let Err(m) = self.ptp_attach(fd) {
            crate::diag!("{m}");
        }
    }

    /// The attached peer as a new connection finds it (POLLHUP and POLLERR are reported
    /// whatever is asked for; its end of file may still wait behind frames in the ring).
    fn ptp_peer_state(&self) -> ptp::Peer {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let Some(Some(e)) = self.eps.get(self.ptp_peer) else {
            return ptp::Peer::Absent;
        };
        // A peer is a link, which always has a receiving descriptor.
        let hup = e.owner.rx().is_some_and(|fd| {
            let mut p = [PollFd::new(fd, PollFlags::empty())];
            matches!(poll(&mut p, PollTimeout::ZERO), Ok(1))
                && p[0]
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
        });
        if hup {
            ptp::Peer::HungUp
        } else {
            ptp::Peer::Attached
        }
    }

    /// Accepts waiting peers (see [`ptp::arrival`]): the first while none is attached gets ack
    /// 0 and carries the traffic; one arriving just after the attached peer hung up waits for
    /// that peer's end of file to be handled; any other gets EISCONN and is closed.
    fn ptp_accept(&mut self) {
        if self.ptp_peer_state() == ptp::Peer::Absent {
            if let Some(fd) = self.ptp_waiting.take() {
                self.ptp_take(fd);
            }
        }
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
            match ptp::arrival(self.ptp_peer_state(), self.ptp_waiting.is_some()) {
                ptp::Arrival::Accept => self.ptp_take(fd),
                ptp::Arrival::AfterHangup | ptp::Arrival::Hold => {
                    self.ptp_waiting = Some(fd);
                    self.arm_ptp_hold();
                }
                ptp::Arrival::Refuse => {
                    PtpHost::ack(&fd, ptp::REFUSE_ACK);
                }
            }
        }
    }

    /// Starts the wait of the connection held in `ptp_waiting` (see [`ptp::Arrival::Hold`]).
    fn arm_ptp_hold(&mut self) {
        self.ptp_hold_gen = self.ptp_hold_gen.wrapping_add(1);
        let sqe = Sqe::Timeout {
            after: &*self.ptp_hold,
        }
        .op(token(
            Op::PtpListen,
            self.index as usize,
            0,
            HOLD_TIMER,
            self.ptp_hold_gen as usize,
        ));
        self.push(&sqe);
    }

    /// The wait of the held connection ended: taken if the peer is gone, held on while its
    /// end of file is on its way, refused if the peer is still there.
    fn ptp_hold_over(&mut self, gen: u16) {
        if gen != self.ptp_hold_gen || self.ptp_waiting.is_none() {
            return;
        }
        match self.ptp_peer_state() {
            ptp::Peer::Absent => {
                if let Some(fd) = self.ptp_waiting.take() {
                    self.ptp_take(fd);
                }
            }
            ptp::Peer::HungUp => self.arm_ptp_hold(),
            ptp::Peer::Attached => {
                if let Some(fd) = self.ptp_waiting.take() {
                    PtpHost::ack(&fd, ptp::REFUSE_ACK);
                }
            }
        }
    }

    /// The peer hung up (end of file or a failed receive): it is detached, and the node
    /// waits for, or looks for, the next (see [`ptp::after_hangup`]).
    fn ptp_hangup(&mut self) {
        self.remove(self.ptp_peer);
        let Some(h) = self.ptp.as_mut() else { return };
        h.set_present(false);
        match ptp::after_hangup(h) {
            ptp::AfterHangup::Wait => {
                if let Some(fd) = self.ptp_waiting.take() {
                    self.ptp_take(fd);
                }
            }
            ptp::AfterHangup::Down => {}
            ptp::AfterHangup::Attach(fd) => {
                if let Err(m) = self.ptp_attach(fd) {
                    crate::diag!("{m}");
                }
            }
            ptp::AfterHangup::Listen => self.arm_ptp_listen(),
        }
    }
}

/// The endpoints (of `n`) that a frame from `from` goes to by decision `d`: the one it names,
/// or every other one when it floods (the caller skips the empty places).
fn dests(d: Decision, from: usize, n: usize) -> impl Iterator<Item = usize> {
    let r = match d {
        Decision::Unicast(p) => (p as usize).min(n)..(p as usize + 1).min(n),
        Decision::Flood => 0..n,
        Decision::Drop => 0..0,
    };
    r.filter(move |&k| k != from)
}

/// Counts a frame sent to an endpoint: standard (`len` bytes), or whole (a super-frame counts
/// as its segments, and as one tagged on the wire unless a port sends it tap to tap);
/// `whole_hdr` is a port endpoint's (whose super-frames and segments are counted too).
fn count_sent(c: &mut Counts, whole: Option<Whole>, len: usize, whole_hdr: Option<usize>) {
    let Some(w) = whole else {
        c.sent(len);
        return;
    };
    c.sent_many(w.segs, w.wire);
    if w.segs > 1 {
        c.wire_super += u64::from(whole_hdr.unwrap_or(0) == 0);
        if whole_hdr.is_some() {
            c.super_frames += 1;
            c.segments += w.segs;
        }
    }
}

/// The send queues ([`SendQ`]): chains, their completions, waits for room.
impl UNode {
    /// Sends the next chain of every endpoint that has frames waiting and none in flight
    /// (once per turn; a port's tap reads are cut first).
    fn flush_sends(&mut self) {
        if self.port.is_some() {
            self.refresh_whole();
            self.port_cut(PORT_TAP);
        }
        for id in 0..self.eps.len() {
            self.kick(id);
        }
    }

    /// The endpoints' chained sends in flight.
    fn chained_sends(&self) -> usize {
        let chain = |e: &Ep| e.sq.as_ref().map_or(0, |q| q.chain.len());
        self.eps.iter().flatten().map(chain).sum()
    }

    /// Sends the frames waiting for endpoint `id` as one linked chain, unless a chain is in
    /// flight or it waits for room. Unconnected sockets (and F2) are sent with MSG_DONTWAIT
    /// (EAGAIN comes back to us) and soft links, which stop at a refusal so that the order
    /// survives the retry; connected sockets and devices are written (the kernel waits for
    /// room), with hard links (a failed write is counted as a drop and the chain goes on).
    /// A node's endpoint on a connected socket is sent with MSG_DONTWAIT too: independent
    /// sends, all issued at once (a chain's links after the first wait for the kernel's task
    /// work), while it keeps up (one that a later frame overtook is dropped,
    /// [`Self::drop_overtaken`]); soft links once it is behind. A refused frame and those after
    /// it go again, in order, at the end of the next turn that brought it a frame, or once its
    /// POLLOUT came. A port's link whose tap handover is up writes into the peer's tap instead,
    /// in independent writes.
    fn kick(&mut self, id: usize) {
        let Some(e) = self.eps.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let Some((n, probe)) = e.chain_len() else { return };
        // A port's link while its tap handover is up: written into the peer's tap.
        let ho = if id == PORT_LINK {
            self.handover_tap(n)
        } else {
            None
        };
        let Some(e) = self.eps[id].as_mut() else { return };
        let q = e.sq.as_mut().expect("chained");
        q.chain.extend(q.queue.drain(..n));
        e.inflight += n as u32;
        let mut chain = [(0u16, 0u32); CHAIN];
        chain[..n].copy_from_slice(&q.chain.make_contiguous()[..n]);
        // A paired datagram ptp first opener sends every frame on F2, each remembered with
        // its pairing round (a failed send of the current round unpairs, see `Ep::f2_done`).
        let f2 = f2_of_chain(e.dg.as_deref_mut().filter(|_| ho.is_none()), &chain[..n]);
        q.chain_f2 = f2;
        q.chain_ho = ho.is_some();
        // A node's endpoint on a connected socket is sent with MSG_DONTWAIT: in independent
        // sends that all go at once while it keeps up; once it is behind (see
        // `admit_to_queue`), in a soft-linked chain, which stops at its first refusal (the
        // rest is cancelled, not tried; no frame overtakes another). Not written (the kernel
        // waiting for room): each frame it took would then cost a wake-up of ours, its queue
        // holding about 10 datagrams. What it refuses goes again, in order, at the end of the
        // next turn that brought it a frame (often, under load) or once its POLLOUT came.
        debug_assert!(!probe || f2.is_none());
        // The peer's tap of a handover takes every write at once (tun's queue has no limit):
        // independent writes, as the handover made them before it shared this queue.
        let independent = (probe && !q.behind) || ho.is_some();
        let gen = e.gen;
        let (fd, dontwait, dest) = match (&e.tx, f2) {
            _ if ho.is_some() => (ho.expect("some").0, false, None),
            (_, Some(f2)) => (f2, true, None),
            (Tx::SendTo(a), None) => (
                e.tx_fd,
                true,
                Some((a.as_ptr().cast::<libc::sockaddr>(), a.len())),
            ),
            (Tx::Send, None) => (e.tx_fd, probe, None),
            _ => (e.tx_fd, false, None),
        };
        // The chain goes in one submission: a link does not span two.
        let room = self.ring.0.borrow_mut().sq_room();
        if room < n {
            let _ = self.ring.submit();
        }
        for (i, &(fid, len)) in chain[..n].iter().enumerate() {
            let buf = self.frame_ptr(fid);
            let sqe = if dontwait {
                // (A kernel retry of a unix datagram send may send an empty datagram: we send
                // again ourselves.)
                Sqe::Send {
                    fd,
                    buf,
                    len,
                    flags: libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    dest,
                }
            } else {
                Sqe::Write { fd, buf, len }
            };
            let link = match (i + 1 == n || independent, dontwait) {
                (true, _) => super::ring::Link::None,
                (false, true) => super::ring::Link::Soft,
                (false, false) => super::ring::Link::Hard,
            };
            let op = sqe.op(token(Op::Tx, id, gen, fid, len as usize)).link(link);
            self.hold(fid);
            self.push(&op);
        }
        // (The queue's own hold of each frame passed to the chain's sends.)
        for &(fid, _) in &chain[..n] {
            self.release(fid);
        }
    }

    /// A chained send of endpoint `t` completed: counted, dropped, or kept to go again (see
    /// [`send_verdict`]); once the chain is over, what goes again is put back in front, and
    /// after a refusal the endpoint waits for room. Frames of an endpoint that left go.
    fn on_chain_tx(&mut self, t: Token, res: i32) {
        let fid = t.slot;
        let whole = self.whole_of(fid);
        let stopping = self.stopping;
        let live = self.live(&t);
        let ho_hdr = self.ho.as_ref().map(|h| h.hdr);
        let Some(e) = self.ep_of(&t) else { return };
        let ho = e.sq.as_ref().is_some_and(|q| q.chain_ho);
        let on_f2 = !ho && e.f2_done(fid, res);
        // (Frames written into the peer's tap of a handover cross tap to tap, as a port's.)
        let whole_hdr = if ho {
            ho_hdr
        } else {
            e.port.as_ref().map(|p| p.whole_hdr)
        };
        let q = e.sq.as_mut().expect("chained");
        let (cfid, len) = q.chain.pop_front().expect("a chain in flight");
        debug_assert_eq!(cfid, fid);
        let segs = whole.map_or(1, |w| w.segs);
        // What became of it: sent, to go again (after EAGAIN: once writable), or dropped.
        let mut again = false;
        let mut eagain = false;
        // Reconnected to a new peer, or F2's peer gone (unpaired): no tagged datagram waiting
        // here may reach whoever is there now.
        let mut purge = false;
        let went = res > 0 || (res == 0 && len == 0);
        if went {
            count_sent(&mut e.counts[LINK_TO_TAP], whole, len as usize, whole_hdr);
        } else if stopping || !live || ho {
            e.counts[LINK_TO_TAP].add_drop(DropReason::SendError, segs);
        } else {
            // A zero-byte send of a non-empty frame: nothing went; as a failure.
            let errno = if res < 0 { -res } else { libc::EIO };
            // F2's peer gone: the frame is dropped (the pairing ended in `f2_done`; the next
            // ones go by path, plain until a peer answers).
            let lost = on_f2 && pair::f2_lost(errno);
            let back = !on_f2 && e.reconnect_after_failure(errno);
            purge = lost || back;
            let c = &mut e.counts[LINK_TO_TAP];
            match send_verdict(errno) {
                _ if lost || (back && whole.is_some()) => c.add_drop(DropReason::SendError, segs),
                _ if back => again = true,
                Verdict::Retry => again = true,
                Verdict::Drop(why) => c.add_drop(why, segs),
            }
            eagain = again && errno == libc::EAGAIN;
        }
        let q = e.sq.as_mut().expect("chained");
        let (overtaken, purge, wait) = q.settle((fid, len), went, again, eagain, purge);
        if !again {
            self.release(fid);
        }
        self.op_done(&t);
        if ho {
            self.handover_wrote(whole, res);
        }
        if !overtaken.is_empty() {
            self.drop_overtaken(&t, overtaken);
        }
        if purge {
            self.purge_tagged(t.ep());
        }
        if wait {
            self.trim_behind(t.ep());
            self.tx_wait(t.ep());
        }
        self.port_drained(t.ep());
    }

    /// Drops (counted as NoBuffer), newest first, the frames waiting for endpoint `id` that
    /// its queue would not admit now that it fell behind ([`admit_to_queue`]). A burst queued
    /// while it kept up and then refused whole came back to its queue unchecked, and could
    /// hold every receive buffer of the node: the node then read from nobody until that
    /// endpoint read, which a vdens-fast client whose own frames wait for this node to read
    /// never did (two floods through a switch of four vdens-fast clients stopped for good).
    fn trim_behind(&mut self, id: usize) {
        let mut dropped = 0;
        loop {
            let Some(q) = self.sq_mut(id) else { return };
            let Some(&(fid, len)) = q.queue.back().filter(|_| q.behind) else {
                break;
            };
            let (bp, queued) = (q.bp, q.backlog() - 1);
            let (free, pool) = self.pool_of(fid);
            if admit_to_queue(bp, queued, free, pool) == Admit::Queue {
                break;
            }
            if let Some(q) = self.sq_mut(id) {
                q.queue.pop_back();
            }
            dropped += self.let_go(&[(fid, len)]);
        }
        if let Some(e) = self.eps[id].as_mut() {
            e.counts[LINK_TO_TAP].add_drop(DropReason::NoBuffer, dropped);
        }
    }

    /// The send queue of endpoint `id`, when it is live and sends.
    fn sq_mut(&mut self, id: usize) -> Option<&mut SendQ> {
        self.eps.get_mut(id)?.as_mut()?.sq.as_deref_mut()
    }

    /// Drops (counted) the tagged datagrams waiting for endpoint `id`: its peer changed (see
    /// [`Self::on_chain_tx`]); the standard frames among them still go, in order.
    fn purge_tagged(&mut self, id: usize) {
        let Some(q) = self.sq_mut(id) else { return };
        let queued = std::mem::take(&mut q.queue);
        let (tagged, keep): (Vec<_>, Vec<_>) = queued
            .into_iter()
            .partition(|&(fid, _)| self.whole_of(fid).is_some());
        let dropped = self.let_go(&tagged);
        if let Some(e) = self.eps[id].as_mut() {
            e.sq.as_mut().expect("queued").queue = keep.into();
            e.counts[LINK_TO_TAP].add_drop(DropReason::SendError, dropped);
        }
    }

    /// Drops (counted as NoBuffer) the frames refused by endpoint `t` that a later frame
    /// overtook; the retry list gets its memory back.
    fn drop_overtaken(&mut self, t: &Token, mut frames: Vec<(u16, u32)>) {
        let n = self.let_go(&frames);
        if let Some(e) = self.ep_of(t) {
            e.counts[LINK_TO_TAP].add_drop(DropReason::NoBuffer, n);
            if let Some(q) = e.sq.as_mut().filter(|q| q.retry.is_empty()) {
                frames.clear();
                q.retry = frames;
            }
        }
    }

    /// Waits until endpoint `id` can take frames again: POLLOUT on its descriptor, or the
    /// retry timer for an unconnected socket whose own send buffer is not what is full.
    fn tx_wait(&mut self, id: usize) {
        let Some(e) = self.eps.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let Some(q) = e.sq.as_mut().filter(|q| !q.waiting) else {
            return;
        };
        // F2 is connected: its POLLOUT says when the peer's R2 has room again.
        let timer = q.chain_f2.is_none()
            && matches!(e.tx, Tx::SendTo(_))
            && !e.owner.tx().is_some_and(send_buffer_full);
        let sqe = if timer {
            Sqe::Timeout { after: &*q.timer }
        } else {
            Sqe::Poll {
                fd: q.chain_f2.unwrap_or(e.tx_fd),
                events: libc::POLLOUT as u32,
                multi: false,
            }
        };
        q.waiting = true;
        e.inflight += 1;
        let op = sqe.op(token(Op::TxWait, id, e.gen, 0, 0));
        self.push(&op);
    }

    /// The wait of endpoint `t` ended: its next chain goes at the end of the turn.
    fn on_tx_wait(&mut self, t: Token) {
        if let Some(q) = self.ep_of(&t).and_then(|e| e.sq.as_mut()) {
            q.waiting = false;
        }
        self.op_done(&t);
    }

    /// Lets go of the frames waiting for endpoint `e` (which left, or the node stopped), counted
    /// as never sent.
    fn drop_queued(&mut self, e: &mut Ep) {
        let Some(q) = e.sq.as_mut() else { return };
        let left: Vec<(u16, u32)> = q.queue.drain(..).chain(q.retry.drain(..)).collect();
        let n = self.let_go(&left);
        e.counts[LINK_TO_TAP].add_drop(DropReason::SendError, n);
    }

    /// Lets go of `frames` (held by a send queue); returns the frames they stand for (a
    /// super-frame as its segments), to be counted as dropped.
    fn let_go(&mut self, frames: &[(u16, u32)]) -> u64 {
        let mut n = 0;
        for &(fid, _) in frames {
            n += self.whole_of(fid).map_or(1, |w| w.segs);
            self.release(fid);
        }
        n
    }
}

/// A port's cable (`engine::cable`): endpoint [`PORT_TAP`] is its tap, [`PORT_LINK`] its link.
const PORT_TAP: usize = 1;
const PORT_LINK: usize = 2;
/// Frames a port endpoint may have waiting before the other endpoint stops receiving (and
/// the kernel queue behind it pushes back): the node's buffers are shared by both
/// directions, so that a stalled one never takes the other's.
const PORT_QCAP: usize = NBUF as usize / 4;

/// An end of a port's cable. Frames to it wait rather than drop when it cannot take them
/// (`Backpressure::Wait`, in its [`SendQ`]); while too many wait, the other end does not
/// receive.
struct PortEp {
    /// Receiving is paused: the other end has [`PORT_QCAP`] frames waiting.
    rx_paused: bool,
    /// Frames cross tap to tap whole, behind a virtio-net header of this many bytes.
    whole_hdr: usize,
    /// The link offered its peer super-frames: whether the peer takes them now (it changes
    /// when a vde:// link joins a switch again).
    superframes: Option<Arc<AtomicBool>>,
    /// An offloading tap (virtio-net header of this many bytes; 0: none) read by a multishot
    /// read into the big buffers, many reads per turn (see [`UNode::port_cut`]).
    vnet_hdr: usize,
    /// Its reads (big buffer, length) not yet cut, in order, and the next piece of the first.
    reads: VecDeque<(u16, u32)>,
    next: usize,
}

impl Ep {
    /// A send to this endpoint failed with `errno`: connects to its peer's new socket if that
    /// is what it takes (a ptp second opener whose first opener restarted; see
    /// [`Reconnector`]), and says whether it did. The new peer is asked afresh: nothing
    /// tagged goes there before it answers. An overlay has no descriptor here.
    fn reconnect_after_failure(&mut self, errno: i32) -> bool {
        let Some(fd) = self.owner.tx() else { return false };
        if !self.reconnect.after_failure(fd, errno, &self.label) {
            return false;
        }
        if let Some(d) = self.dg.as_deref_mut() {
            d.flag.store(false, Ordering::Release);
            d.hello_at = None;
            self.takes_whole = false;
        }
        true
    }

    /// Whether the endpoint is sent tagged datagrams whole.
    fn takes_whole(&self) -> bool {
        self.takes_whole
            || self
                .port
                .as_ref()
                .and_then(|p| p.superframes.as_ref())
                .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Sends frames in linked chains, from its [`SendQ`].
    fn chained(&self) -> bool {
        self.sq.is_some() && matches!(self.tx, Tx::Send | Tx::SendTo(_) | Tx::Write)
    }
}

/// Makes endpoint `id` of a port's cable one end of it: its control connection (a vde://
/// link's) stays the control thread's (`app::links`); whole tap reads and tagged datagrams
/// arrive in the big buffers.
fn port_ep(e: &mut Ep, id: usize, p: &PortCtx) {
    let superframes = if id == PORT_LINK {
        p.stats.superframes.clone()
    } else {
        None
    };
    e.ctl_fd = None;
    e.superframes = p.whole_hdr > 0 || superframes.is_some();
    e.takes_whole = false;
    let vnet_hdr = match &e.rx {
        Rx::Vnet(v) => v.hdr,
        _ => 0,
    };
    if vnet_hdr > 0 {
        e.rx = Rx::Multi {
            socket: false,
            eof_on_zero: true,
        };
        e.superframes = true;
    }
    if e.sq.is_some() || matches!(e.tx, Tx::Stream(_)) {
        e.sq = Some(SendQ::new(Backpressure::Wait, PORT_QCAP + CHAIN));
    }
    e.port = Some(Box::new(PortEp {
        rx_paused: false,
        whole_hdr: p.whole_hdr,
        superframes,
        vnet_hdr,
        reads: VecDeque::with_capacity(NBIG as usize),
        next: 0,
    }));
}

/// Says that port endpoint `id`'s input ended, as the port's direction.
fn port_eof(e: &Ep, id: usize) {
    let dir = crate::engine::stats::DIR_NAMES[if id == PORT_TAP { TAP_TO_LINK } else { LINK_TO_TAP }];
    crate::diag!("{} {dir}: end of file; this direction stops", e.label);
}

/// A port's cable: its endpoints' sends with backpressure, whole tap frames, its counters.
impl UNode {
    /// Stops receiving on port endpoint `id` (the other end has too many frames waiting): a
    /// multishot receive is cancelled, a single read is not made again.
    fn pause_rx(&mut self, id: usize) {
        let shared = self.bufs.shared.bgid();
        let big = self.bufs.big.as_ref().map(BufRing::bgid);
        let Some(e) = self.eps.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let Some(p) = e.port.as_mut() else { return };
        if std::mem::replace(&mut p.rx_paused, true) || !e.rx_armed || !matches!(e.rx, Rx::Multi { .. }) {
            return;
        }
        let g = match big {
            Some(b) if e.superframes => b,
            _ => shared,
        };
        let c = Sqe::Cancel {
            user_data: token(Op::Rx, id, e.gen, g, 0),
        }
        .op(self.own(Op::Cancel));
        self.push(&c);
    }

    /// Lets the other end of port endpoint `id` receive again once few frames wait here.
    fn port_drained(&mut self, id: usize) {
        let low = |e: &Ep| e.port.is_some() && e.sq.as_ref().is_some_and(|q| q.queue.len() <= PORT_QCAP / 2);
        if !matches!(self.eps.get(id), Some(Some(e)) if low(e)) {
            return;
        }
        if let Some(Some(o)) = self.eps.get_mut(PORT_TAP + PORT_LINK - id) {
            if let Some(p) = o.port.as_mut() {
                // Armed again at the end of the turn.
                p.rx_paused = false;
            }
        }
    }

    /// Copies the frames waiting for stream port endpoint `id` into its output while there is
    /// room.
    fn port_stream_fill(&mut self, id: usize) {
        loop {
            let Some(Some(e)) = self.eps.get_mut(id) else {
                return;
            };
            let (Tx::Stream(s), Some(q)) = (&mut e.tx, e.sq.as_mut()) else {
                return;
            };
            let Some(&(fid, len)) = q.queue.front() else { break };
            let len = len as usize;
            if !s.room(len + 2) {
                break;
            }
            s.put(frame_of(&self.bufs, &self.slots, fid, len));
            q.queue.pop_front();
            e.counts[LINK_TO_TAP].sent(len);
            self.release(fid);
        }
        self.port_drained(id);
    }

    /// Frame `fid` (`len` bytes) of port endpoint `from` crosses to the other end whole, when
    /// the port is tap to tap (a tap:// link with offload; see [`Self::cross_whole`]).
    fn port_whole(&mut self, from: usize, fid: u16, len: usize) -> bool {
        let hl = match self.eps.get(from) {
            Some(Some(e)) => e.port.as_ref().map_or(0, |p| p.whole_hdr),
            _ => 0,
        };
        if hl == 0 {
            return false;
        }
        self.cross_whole(from, PORT_TAP + PORT_LINK - from, hl, fid, len);
        true
    }

    /// Frame `fid` (`len` bytes, read from a tap behind an `hl`-byte virtio-net header) of
    /// endpoint `from` goes to endpoint `to` whole, to be written into another tap: judged (a
    /// super-frame counts as the frames the kernel would cut it into), then sent from its
    /// buffer as it came.
    fn cross_whole(&mut self, from: usize, to: usize, hl: usize, fid: u16, len: usize) {
        let full = match &self.bufs.big {
            Some(b) if matches!(Fid::of(fid), Fid::Big(_)) => len >= b.data_len(),
            _ => len >= BUF_SIZE - HEADROOM,
        };
        let Some(e) = self.eps.get_mut(from).and_then(Option::as_mut) else {
            self.bufs.push(fid);
            return;
        };
        let c = &mut e.counts[TAP_TO_LINK];
        match cut::judge_whole(self.bufs.data(fid, len), hl, full) {
            Ok(w) => {
                c.received += w.segs;
                c.sent_many(w.segs, w.wire);
                self.set_whole(fid, Some(w));
                *self.refs(fid) = 1;
                self.send(to, fid, len);
                self.release(fid);
            }
            Err(why) => {
                c.received += 1;
                c.add_drop(why, 1);
                self.bufs.push(fid);
            }
        }
    }

    /// A read of port endpoint `from`, when it is an offloading tap: queued, and cut at once.
    fn port_vnet(&mut self, from: usize, fid: u16, len: usize) -> bool {
        let Some(p) = self
            .eps
            .get_mut(from)
            .and_then(Option::as_mut)
            .and_then(|e| e.port.as_mut())
        else {
            return false;
        };
        if p.vnet_hdr == 0 {
            return false;
        }
        p.reads.push_back((fid, len as u32));
        self.port_cut(from);
        true
    }

    /// Cuts the reads waiting on port endpoint `id` (an offloading tap), in order: one that
    /// needs its header goes on whole while the link takes super-frames (copied behind a tag
    /// into a tap buffer, see [`Self::take_whole`]); any other is cut into standard frames,
    /// each copied into a slot (a plain frame, its partial checksum completed, is one), and
    /// forwarded. Stops when no slot is free (then goes on at the end of the turn).
    fn port_cut(&mut self, id: usize) {
        let now = self.start.elapsed().as_secs();
        let whole_ok = matches!(self.eps.get(PORT_LINK), Some(Some(l)) if l.takes_whole());
        let big_len = self.bufs.big.as_ref().map_or(0, BufRing::data_len);
        loop {
            let Some(Some(e)) = self.eps.get_mut(id) else {
                return;
            };
            let Some(p) = e.port.as_mut() else { return };
            let Some(&(fid, len)) = p.reads.front() else {
                return;
            };
            let (len, hl) = (len as usize, p.vnet_hdr);
            let Fid::Big(b) = Fid::of(fid) else { return };
            let full = len >= big_len;
            let Some(big) = self.bufs.big.as_mut() else { return };
            let read = big.data_mut(b, 0, len);
            if p.next == 0 && whole_ok && !full && len > hl && hl <= PREFIX && PREFIX - hl <= HEADROOM {
                if let Some(h) = VnetHdr::parse(read, hl).ok().filter(needs_header) {
                    // The tag and a 10-byte header go right in front of the frame, partly in
                    // the headroom: the buffer is then a tagged datagram as a capable peer
                    // sends one, sent from where it was read.
                    let back = PREFIX - hl;
                    let buf = self.bufs.big.as_mut().expect("big").back_mut(b, back, PREFIX);
                    buf[..TAG_LEN].copy_from_slice(&TAG);
                    buf[TAG_LEN..].copy_from_slice(&h.to_bytes()[..vnet::LEN]);
                    self.bufs.big_back[b as usize] = back as u8;
                    p.reads.pop_front();
                    self.forward_whole(id, fid, len + back, now);
                    continue;
                }
            }
            let Some(slot) = self.free_slots.pop() else { return };
            let Some(e) = self.eps[id].as_mut() else { return };
            let p = e.port.as_mut().expect("a port endpoint");
            let read = self.bufs.big.as_mut().expect("big").data_mut(b, 0, len);
            let c = &mut e.counts[TAP_TO_LINK];
            let o = slot as usize * BUF_SIZE;
            let out = &mut self.slots[o..o + BUF_SIZE];
            c.received += 1;
            let piece = cut::piece(read, hl, full, MAX_FRAME, &mut p.next, out);
            if let Some(n) = piece.first_of {
                c.super_frames += 1;
                c.segments += n as u64;
            }
            if piece.done {
                p.reads.pop_front();
                self.bufs.push(fid);
            }
            self.forward_piece(id, slot, piece.got, now);
        }
    }

    /// Publishes the port's counters: each direction from its source's and its destination's.
    fn publish_port(&self, st: &PortStats) {
        let (Some(Some(tap)), Some(Some(link))) = (self.eps.get(PORT_TAP), self.eps.get(PORT_LINK)) else {
            return;
        };
        st.dirs[TAP_TO_LINK].publish(&Counts::cable(
            &tap.counts[TAP_TO_LINK],
            &link.counts[LINK_TO_TAP],
        ));
        st.dirs[LINK_TO_TAP].publish(&Counts::cable(
            &link.counts[TAP_TO_LINK],
            &tap.counts[LINK_TO_TAP],
        ));
    }
}

/// The endpoint for `e`. A link hosting a vxlan:// or vxvde:// network joins as that network
/// (vdeplug-fast's `vxvde:// switch:///tmp/sw`: the overlay is a port of the switch).
fn ep_of(mut e: Endpoint, node: &str, gen: u16) -> Result<Ep, EndpointError> {
    if let Endpoint::Link { name, link } = &mut e {
        if let Some(Hosted::Overlay(o)) = link.node.take_if(|h| matches!(h, Hosted::Overlay(_))) {
            return Ep::overlay(o, name, gen);
        }
    }
    let (owner, name, vnl, off) = owner_of(e, node);
    Ep::new(owner, &name, &vnl, off, gen)
}

fn owner_of(e: Endpoint, node: &str) -> (Owner, String, String, TapOffload) {
    match e {
        Endpoint::Tap { name, fd, offload } => (Owner::Tap(fd), name, node.to_string(), offload),
        Endpoint::Link { name, link } => {
            let v = link.vnl.clone();
            (Owner::Link(link), name, v, TapOffload::NONE)
        }
    }
}

/// Whether node `n` takes super-frames (`wire::superframe`), and so needs the big buffers: a
/// switch or hub that offers them to its clients, a seqpacket ptp end with an offloading tap,
/// or a node with a link that negotiated them (a vdeplug-fast cable's vde:// link to a
/// vdens-fast switch).
fn offers_superframes(n: &Node) -> bool {
    let negotiated = |e: &Endpoint| match e {
        Endpoint::Link { link, .. } => {
            link.superframes
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Relaxed))
                || dgram_ptp_offer(link)
        }
        Endpoint::Tap { .. } => false,
    };
    // A seqpacket ptp end whose tap has offload offers them on each connection.
    let offloading_tap = |e: &Endpoint| matches!(e, Endpoint::Tap { offload, .. } if offload.vnet_hdr > 0);
    matches!(&n.kind, NodeKind::Net(l) if l.superframes)
        || (matches!(&n.kind, NodeKind::Ptp(_)) && n.endpoints.iter().any(offloading_tap))
        || n.endpoints.iter().any(negotiated)
}

/// The buffers of a node: the big ones too when it takes super-frames (`big`), registered
/// with `ring` as node `index`'s groups.
fn node_bufs(ring: &mut Ring, index: u16, big: bool) -> Result<Bufs, SetupError> {
    let mut group = |n: u16, size: usize, g: u16| {
        let mut b = BufRing::new(n, size, HEADROOM).map_err(|e| SetupError::io("buffer memory", &e))?;
        ring.register_buf_ring(&mut b, 2 * index + g)
            .map_err(|e| SetupError::io("IORING_REGISTER_PBUF_RING", &e))?;
        Ok(b)
    };
    Ok(Bufs {
        shared: group(NBUF, BUF_SIZE, 0)?,
        big: if big {
            Some(group(NBIG, BIG_SIZE, BIG_GROUP)?)
        } else {
            None
        },
        big_back: vec![0u8; NBIG as usize].into_boxed_slice(),
        tap: TapBufs::default(),
    })
}

/// The batching wait of a thread that runs ports' cables only (see `Nodes::run`), when the
/// tuning asks for one and the ring has it.
fn batch_wait(ring: &RingRef, tuning: &UringTuning, nodes: &[UNode]) -> Option<u32> {
    let ports = !nodes.is_empty() && nodes.iter().all(|n| n.port.is_some());
    (ports && tuning.batch_wait_us > 0 && ring.0.borrow().min_timeout()).then_some(tuning.batch_wait_us)
}

/// The ring of a node thread on the driver `kind` names, and the buffers of each of its
/// nodes (`bigs`: which of them offer super-frames).
fn nodes_ring(kind: EngineKind, tuning: UringTuning, bigs: &[bool]) -> Result<(Ring, Vec<Bufs>), SetupError> {
    let (mut ring, _) = new_ring(kind, 1024, 8192, &tuning)?;
    let mut bufs = Vec::with_capacity(bigs.len());
    for (k, big) in bigs.iter().enumerate() {
        bufs.push(node_bufs(&mut ring, k as u16, *big)?);
    }
    Ok((ring, bufs))
}

/// Runs nodes on one thread and one ring, on the driver `kind` names, until each was told to
/// stop. `ready` gets Ok once all are set up, or the first set-up error. When there is no
/// memory for an io_uring ring or its buffers, the nodes run on the epoll driver instead, and
/// say so in their `fell_back`, and the thread counts itself in `fell_back` before it reports
/// (the engine says so once).
pub fn run_nodes(
    nodes: Vec<(Node, NodeCtx)>,
    tuning: UringTuning,
    kind: EngineKind,
    fell_back: &AtomicUsize,
    ready: Sender<crate::engine::worker::Ready>,
) {
    let bigs: Vec<bool> = nodes
        .iter()
        .map(|(n, c)| offers_superframes(n) || c.port.as_ref().is_some_and(PortCtx::big))
        .collect();
    let parts = match nodes_ring(kind, tuning, &bigs) {
        Err(e) if e.memory && kind == EngineKind::Uring => {
            fell_back.fetch_add(1, Ordering::Relaxed);
            for (_, c) in &nodes {
                c.shared.fell_back.store(true, Ordering::Release);
            }
            nodes_ring(EngineKind::Poll, tuning, &bigs)
        }
        r => r,
    };
    let (ring, bufs) = match parts {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let mode = if matches!(ring, Ring::Kernel(_)) {
        "uring node"
    } else {
        "epoll node"
    };
    let ring = RingRef(Rc::new(RefCell::new(ring)));
    let gens = Rc::new(Gens::new());
    let setup = nodes
        .into_iter()
        .zip(bufs)
        .enumerate()
        .map(|(k, ((n, ctx), b))| UNode::new(n, ctx, ring.clone(), k as u16, gens.clone(), b))
        .collect::<Result<Vec<UNode>, StartError>>();
    match setup {
        Ok(nodes) => {
            crate::engine::confine();
            let _ = ready.send(Ok(mode));
            let batch = batch_wait(&ring, &tuning, &nodes);
            let mut all = Nodes {
                ring,
                gens,
                busy: (tuning.busy_poll_us > 0).then(|| Duration::from_micros(tuning.busy_poll_us.into())),
                batch,
                stopped: vec![false; nodes.len()],
                nodes,
                cqes: Vec::with_capacity(8192),
            };
            all.run();
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// What a node of `kind` forwards with, and its listener (a switch or hub), ptp host or
/// overlay.
fn roles_of(kind: NodeKind) -> (Forwarder, Option<Listener>, Option<PtpHost>, Option<Box<Overlay>>) {
    let (mut ptp, mut overlay) = (None, None);
    let (listener, fwd) = match kind {
        NodeKind::Net(l) if l.spec.hub => (Some(l), Forwarder::Hub),
        NodeKind::Net(l) => {
            let t = MacTable::new(l.spec.hashsize, l.spec.expire, l.spec.seed);
            (Some(l), Forwarder::Switch(t))
        }
        // A cable is a hub of two: each frame goes to the other endpoint; so are a ptp
        // end (the tap and the peer) and an overlay (the tap and the network).
        NodeKind::Cable => (None, Forwarder::Hub),
        NodeKind::Ptp(h) => {
            ptp = Some(h);
            (None, Forwarder::Hub)
        }
        NodeKind::Overlay(o) => {
            overlay = Some(o);
            (None, Forwarder::Hub)
        }
    };
    (fwd, listener, ptp, overlay)
}

impl UNode {
    /// Node `node`, the `index`th of its thread's, on `ring` with its buffers `bufs`.
    fn new(
        node: Node,
        ctx: NodeCtx,
        ring: RingRef,
        index: u16,
        gens: Rc<Gens>,
        bufs: Bufs,
    ) -> Result<UNode, StartError> {
        let NodeCtx {
            cmds,
            wake,
            shared,
            port,
        } = ctx;
        let (fwd, listener, ptp, overlay) = roles_of(node.kind);
        let cable = listener.is_none();
        let mut w = UNode {
            name: node.name.clone(),
            ring,
            index,
            gens,
            cmds,
            bufs,
            buf_refs: vec![0u16; NBUF as usize].into_boxed_slice(),
            big_refs: vec![0u16; NBIG as usize].into_boxed_slice(),
            big_whole: vec![None; NBIG as usize].into_boxed_slice(),
            cuts: VecDeque::new(),
            spare_dests: Vec::new(),
            ov_slab: Vec::new(),
            ov_lens: [0; OV_BATCH],
            slots: vec![0u8; SLOTS * BUF_SIZE].into_boxed_slice(),
            slot_refs: vec![0u16; SLOTS].into_boxed_slice(),
            free_slots: (0..SLOTS as u16).rev().collect(),
            eps: Vec::new(),
            leaving: Vec::new(),
            fwd,
            listener,
            cable,
            listen_armed: false,
            joins: Joins::default(),
            wake,
            wake_armed: false,
            outstanding: 0,
            touched: false,
            start: Instant::now(),
            shared,
            stopping: false,
            tap_queued: false,
            ptp_peer: 1 + node.endpoints.len(),
            ptp,
            ptp_armed: false,
            ptp_waiting: None,
            ptp_watch: None,
            ptp_hold: Box::new(Interval::new(ptp::HOLD)),
            ptp_hold_gen: 0,
            port: None,
            dgs: 0,
            ho: None,
            ho_looked: false,
        };
        if w.ptp.is_some() {
            let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|errno| StartError::Epoll {
                node: w.name.clone(),
                errno,
            })?;
            w.ptp_watch = Some((ep, -1));
        }
        w.add_own(node.endpoints, &node.name, port.as_ref())?;
        w.port = port.map(|p| p.stats);
        // The overlay is the cable's other end: after the tap (or vdeplug-fast's other link).
        if let Some(o) = overlay {
            let name = if o.vxvde { "vxvde" } else { "vxlan" };
            let gen = w.next_gen();
            let ep = Ep::overlay(o, name, gen)?;
            w.add(w.eps.len().max(1), ep);
        }
        w.ptp_start()?;
        Ok(w)
    }

    /// Adds node `name`'s own `endpoints` (a port's two ends when `port`).
    fn add_own(
        &mut self,
        endpoints: Vec<Endpoint>,
        name: &str,
        port: Option<&PortCtx>,
    ) -> Result<(), StartError> {
        // A switch's own endpoints start at 1 (0 is the port a client asks for with [0]).
        for (k, e) in endpoints.into_iter().enumerate() {
            let gen = self.next_gen();
            let mut ep = ep_of(e, name, gen)?;
            if let Some(p) = port {
                port_ep(&mut ep, 1 + k, p);
            }
            self.add(1 + k, ep);
        }
        Ok(())
    }
}

/// Whether link `l` is a datagram `ptp://` link that offered super-frames (a `vde://` link
/// offers them too, but negotiated at its join: its control connection may be the control
/// thread's by now, so the link is told apart by its addresses, see `Link::is_dgram_ptp`).
fn dgram_ptp_offer(l: &Link) -> bool {
    l.superframes.is_some() && l.is_dgram_ptp()
}

/// Sends runt `r` at once on `fd` (MSG_DONTWAIT), to `to` or to the connected peer. One that
/// does not go (a full queue) is made up for by the exchange itself: HELLO and PAIR are sent
/// again, and a lost JOIN, PROBE or ECHO leaves the pairing to the next PAIR.
fn send_runt(fd: RawFd, r: Runt, to: Option<&UnixAddr>) {
    let mut b = [0u8; RUNT_MAX];
    let n = r.write(&mut b);
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    let _ = match to {
        Some(a) => nix::sys::socket::sendto(fd, &b[..n], a, flags),
        None => nix::sys::socket::send(fd, &b[..n], flags),
    };
}

/// A datagram `ptp://` link that offered super-frames (`wire::superframe`): its negotiation,
/// the rules of which are `core::pair`'s.
struct DgPtp {
    /// The link's `superframes`: its peer takes tagged datagrams now (a second opener's peer
    /// said OFFER; a first opener paired). Shared with the stats and with the control thread,
    /// which clears it when the peer goes (vdeplug-fast's `CableWatch`).
    flag: Arc<AtomicBool>,
    /// A second opener (its socket connected to the first opener's): it asks, HELLO.
    second: bool,
    /// When it last asked.
    hello_at: Option<Instant>,
    /// Its second socket: F2 (first opener) or R2.
    pair: Option<PairSock>,
    /// The nonce of the latest PROBE: sent on F2 (first opener), echoed (second opener);
    /// what ties a tap handover to this pairing (see [`Handover`]).
    nonce: Option<u32>,
}

/// The second socket of a datagram ptp link (held open by its `Link`).
struct PairSock {
    fd: RawFd,
    /// Where the peer's pair socket is bound.
    peer: UnixAddr,
    /// F2 (the first opener's, which sends on it once paired) or R2 (received).
    first: bool,
    /// The first opener's pairing.
    pairing: Pairing,
    /// F2: the pairing round of each send in flight on it, by frame ([`rec_of`]; a frame
    /// goes to an endpoint at most once while it is held). Empty for R2.
    rounds: Box<[Option<u32>]>,
    /// R2's multishot receive is armed, ended for want of buffers, or failed for good.
    armed: bool,
    starved: bool,
    dead: bool,
}

impl DgPtp {
    fn new(l: &Link, flag: Arc<AtomicBool>) -> Box<DgPtp> {
        let pair = l.pair.as_ref().and_then(|p| {
            Some(PairSock {
                fd: p.fd.as_raw_fd(),
                peer: UnixAddr::new(p.peer.as_path()).ok()?,
                first: p.first,
                pairing: Pairing::fresh(),
                rounds: if p.first {
                    vec![None; RECS].into_boxed_slice()
                } else {
                    Box::default()
                },
                armed: false,
                starved: false,
                dead: false,
            })
        });
        Box::new(DgPtp {
            flag,
            second: matches!(l.send_to, SendTo::Connected),
            hello_at: None,
            pair,
            nonce: None,
        })
    }

    /// F2, when every frame goes on it (a paired first opener).
    fn on_f2(&mut self) -> Option<&mut PairSock> {
        self.pair.as_mut().filter(|p| p.first && p.pairing.paired())
    }
}

impl Ep {
    /// Sends runt `r` on the link's main socket: by path for a first opener, to the peer for
    /// a second opener.
    fn runt_main(&self, r: Runt) {
        let to = match &self.tx {
            Tx::SendTo(a) => Some(&**a),
            _ => None,
        };
        send_runt(self.tx_fd, r, to);
    }

    /// A negotiation runt arrived on this datagram ptp link's main socket or its R2
    /// (`on_r2`): acted on as [`pair::step`] says.
    fn on_runt(&mut self, r: Runt, on_r2: bool) {
        let Some(d) = self.dg.as_deref() else { return };
        match pair::step(r, on_r2, d.pair.as_ref().map(|p| p.first)) {
            Step::Offer { pair } => {
                self.runt_main(Runt::Offer);
                if pair {
                    self.ask_pair();
                }
            }
            Step::Offered => {
                let d = self.dg.as_deref_mut().expect("checked");
                if d.second {
                    d.flag.store(true, Ordering::Release);
                    self.takes_whole = true;
                }
            }
            Step::ConnectR2 => {
                let p = d.pair.as_ref().expect("R2");
                if nix::sys::socket::connect(p.fd, &p.peer).is_ok() {
                    self.runt_main(Runt::Join);
                }
            }
            Step::ConnectF2 => {
                let p = self.dg.as_deref_mut().and_then(|d| d.pair.as_mut()).expect("F2");
                if p.pairing.joinable() && nix::sys::socket::connect(p.fd, &p.peer).is_ok() {
                    let nonce = p.pairing.joined();
                    send_runt(p.fd, Runt::Probe(nonce), None);
                    self.dg.as_deref_mut().expect("checked").nonce = Some(nonce);
                }
            }
            Step::Echo(nonce) => {
                self.runt_main(Runt::Echo(nonce));
                self.dg.as_deref_mut().expect("checked").nonce = Some(nonce);
            }
            Step::Echoed(nonce) => {
                let d = self.dg.as_deref_mut().expect("checked");
                let p = d.pair.as_mut().expect("F2");
                if p.pairing.echo(nonce) {
                    d.flag.store(true, Ordering::Release);
                    self.takes_whole = true;
                }
            }
            Step::Nothing => {}
        }
    }

    /// A vdens-fast second opener said HELLO to this first opener: pairing starts over. F2 is
    /// disconnected (so that the new R2 may connect to it) and PAIR sent by path.
    fn ask_pair(&mut self) {
        self.unpair();
        if let Some(f2) = self.owner.pair() {
            let _ = crate::sys::unix_dgram_disconnect(f2);
        }
        let Some(p) = self.dg.as_deref_mut().and_then(|d| d.pair.as_mut()) else {
            return;
        };
        p.pairing.hello();
        if p.pairing.pair_due(Instant::now()) {
            self.runt_main(Runt::Pair);
        }
    }

    /// A first opener stops sending on F2 (its peer is gone, or a new one asked): standard
    /// frames by path from now on.
    fn unpair(&mut self) {
        let Some(d) = self.dg.as_deref_mut() else { return };
        let Some(p) = d.pair.as_mut().filter(|p| p.first) else {
            return;
        };
        p.pairing.unpair();
        d.flag.store(false, Ordering::Release);
        self.takes_whole = false;
    }

    /// Before a frame is sent to this datagram ptp link: a second opener not answered asks
    /// (at most every [`pair::HELLO_EVERY`]), a first opener asked and not paired yet sends
    /// PAIR again now and then ([`Pairing::pair_due`]).
    fn ptp_ask(&mut self) {
        let Some(d) = self.dg.as_deref_mut() else { return };
        let second = d.second;
        let ask = if second {
            !d.flag.load(Ordering::Relaxed) && pair::hello_due(&mut d.hello_at, Instant::now())
        } else {
            d.pair.as_mut().is_some_and(|p| {
                !p.pairing.paired()
                    && p.pairing.state() != pair::PairState::Idle
                    && p.pairing.pair_due(Instant::now())
            })
        };
        if ask {
            self.runt_main(if second { Runt::Hello } else { Runt::Pair });
        }
    }

    /// Whether this datagram ptp link takes tagged datagrams now, from its flag (which the
    /// control thread may have cleared: a first opener paired with a peer that went away
    /// unpairs).
    fn refresh_whole(&mut self) {
        let Some(d) = self.dg.as_deref_mut() else { return };
        let on = d.flag.load(Ordering::Acquire);
        let paired = match d.pair.as_mut().filter(|p| p.first) {
            Some(p) if p.pairing.paired() && !on => {
                p.pairing.unpair();
                false
            }
            Some(p) => p.pairing.paired(),
            None => false,
        };
        self.takes_whole = on && (d.second || paired);
    }

    /// A send of frame `fid` to this endpoint completed with `res`: true when it went on F2,
    /// and then a failure that says F2's peer is gone ends the pairing it was sent in.
    fn f2_done(&mut self, fid: u16, res: i32) -> bool {
        let Some(p) = self.dg.as_deref_mut().and_then(|d| d.pair.as_mut()) else {
            return false;
        };
        let Some(round) = p.rounds.get_mut(rec_of(fid)).and_then(Option::take) else {
            return false;
        };
        if res < 0 && pair::f2_lost(-res) && p.pairing.failed(round) {
            self.unpair();
        }
        true
    }

    /// Whether R2 (a second opener's) is to be armed: not armed, not failed for good, and not
    /// waiting for big buffers (`enough`: enough are back).
    fn r2_wants_arming(&self, enough: bool) -> bool {
        self.dg
            .as_deref()
            .and_then(|d| d.pair.as_ref())
            .is_some_and(|p| !p.first && !p.armed && !p.dead && (!p.starved || enough))
    }
}

impl UNode {
    /// Every datagram ptp link's `takes_whole` as its flag says now (see
    /// [`Ep::refresh_whole`]): before a forwarding decision looks at it.
    fn refresh_whole(&mut self) {
        if self.dgs == 0 {
            return;
        }
        for e in self.eps.iter_mut().flatten() {
            e.refresh_whole();
        }
    }

    /// Arms the multishot receive of endpoint `id`'s R2 (a datagram ptp second opener's),
    /// into the big buffers.
    fn arm_r2(&mut self, id: usize) {
        let Some(group) = self.bufs.big.as_ref().map(BufRing::bgid) else {
            return;
        };
        let Some(e) = self.eps[id].as_mut() else { return };
        let gen = e.gen;
        let Some(p) = e.dg.as_deref_mut().and_then(|d| d.pair.as_mut()) else {
            return;
        };
        if p.first || p.armed || p.dead {
            return;
        }
        p.armed = true;
        p.starved = false;
        let sqe = Sqe::ReadMulti {
            fd: p.fd,
            group,
            socket: true,
        }
        .op(token(Op::RxPair, id, gen, group, 0));
        e.inflight += 1;
        self.push(&sqe);
    }

    /// A receive on R2 of endpoint `t` completed: its datagrams are taken as the main
    /// socket's ([`Self::take_datagram`]).
    fn on_rx_pair(&mut self, t: Token, res: i32, flags: u32) {
        let Some((more, bid)) = self.rx_taken(&t, flags) else {
            return;
        };
        if res <= 0 {
            if let Some(b) = bid {
                self.give_back(&t, b);
            }
        }
        let e = self.eps[t.ep()].as_mut().expect("live");
        let Some(p) = e.dg.as_deref_mut().and_then(|d| d.pair.as_mut()) else {
            return;
        };
        if !more {
            p.armed = false;
        }
        if res == 0 {
            // An empty datagram (it may come without a buffer).
            e.counts[TAP_TO_LINK].received += 1;
            e.counts[TAP_TO_LINK].add_drop(DropReason::Framing, 1);
            return;
        }
        if res < 0 {
            match classify_rx_error(-res) {
                RxFault::Starved => p.starved = true,
                // ECONNRESET: F2 was disconnected from R2 with datagrams queued (a new
                // pairing); R2 reads on.
                RxFault::Fatal if -res != libc::ECONNRESET => {
                    p.dead = true;
                    crate::diag!(
                        "{}: {}: receive on the pair socket failed: {}; it stops",
                        self.name,
                        e.label,
                        Errno::from_raw(-res).desc()
                    );
                }
                _ => {}
            }
            return;
        }
        let Some(bid) = bid else { return };
        let now = self.start.elapsed().as_secs();
        self.take_datagram(t.ep(), bid | BIG_FLAG, res as usize, now, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_names_its_node_and_zero_is_a_nodes_own() {
        let g = Gens::new();
        let a = g.take(3);
        let b = g.take(7);
        assert_ne!(a, b);
        assert_eq!(g.node_of(&Token::new(Op::Rx, 12).gen(a)), 3);
        assert_eq!(g.node_of(&Token::new(Op::Tx, 1).gen(b)), 7);
        // A node's own operation: generation 0, the node in place of the endpoint.
        assert_eq!(g.node_of(&Token::new(Op::Wake, 5)), 5);
        // Generation 0 is never handed out, also when the counter wraps.
        for _ in 0..u16::MAX as usize * 2 {
            assert_ne!(g.take(1), 0);
        }
        assert_eq!(
            g.node_of(&Token::new(Op::Rx, 2).gen(b)),
            1,
            "taken again: now node 1's"
        );
    }
}
