//! The vxlan:// / vxvde:// endpoint of a node (the ring loop, src/engine/uring/node.rs, which
//! receives with [`OverlayEp::recv`] and sends through its ring, to [`OverlayEp::dest_of`]):
//! receives datagrams from the overlay's sockets, keeps those of our network
//! ([`OverlayEp::arrived`], the rule for one datagram), learns where their source MACs are, and
//! says where each frame goes: the remote learnt for its destination MAC, or the group.
//!
//! The header is received into, and sent from, a buffer of its own (two iovecs), so frames
//! stay where the node keeps them: no copy either way.

use super::core::{admit, classify_rx_error, RxFault};
use super::stats::{Counts, DropReason};
use crate::switch::remote::Remotes;
use crate::sys::inet::{self, Meta, HDR};
use crate::transport::Overlay;
use nix::errno::Errno;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;

/// Datagrams per receive or send call.
const BATCH: usize = 32;

/// An overlay endpoint's state: its sockets, learning table and scratch space.
pub struct OverlayEp {
    ov: Box<Overlay>,
    remotes: Remotes,
    header: [u8; HDR],
    start: Instant,
    /// Which socket to read first next time (vxvde has two; neither may starve the other).
    turn: usize,
    hdrs: [[u8; HDR]; BATCH],
    meta: [Meta; BATCH],
}

impl OverlayEp {
    pub fn new(ov: Box<Overlay>) -> OverlayEp {
        OverlayEp {
            remotes: Remotes::new(ov.hashsize, ov.expire),
            header: ov.header(),
            start: Instant::now(),
            turn: 0,
            hdrs: [[0; HDR]; BATCH],
            meta: [Meta::default(); BATCH],
            ov,
        }
    }

    pub fn vnl(&self) -> &str {
        &self.ov.vnl
    }

    /// The header every datagram we send starts with (kept at one address while the endpoint
    /// lives: a send in flight may point at it).
    pub fn header(&self) -> &[u8; HDR] {
        &self.header
    }

    /// The sockets: the group one, then (vxvde) the unicast one every datagram leaves from.
    pub fn sockets(&self) -> (RawFd, Option<RawFd>) {
        (
            self.ov.multi.as_raw_fd(),
            self.ov.uni.as_ref().map(|u| u.as_raw_fd()),
        )
    }

    /// The socket datagrams leave from.
    pub fn tx_raw_fd(&self) -> RawFd {
        self.ov.tx_fd().as_raw_fd()
    }

    /// Seconds since the endpoint started: the clock of its learning table.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// Judges one received datagram, whichever loop received it: `total` bytes long (header
    /// included; longer than what was kept when it was truncated), `hdr` its header, `frame`
    /// the bytes after the header that were kept, `meta` its sender, `group` whether it came
    /// in on the group socket. Learns where the frame's source MAC is and returns the frame's
    /// length when it is to be carried; counts it into `c` otherwise (our own looped-back
    /// multicast and a vxvde peer's goodbye are not counted: they are no frames).
    #[allow(clippy::too_many_arguments)]
    pub fn arrived(
        &mut self,
        group: bool,
        total: usize,
        hdr: &[u8; HDR],
        meta: &Meta,
        frame: &[u8],
        now: u64,
        c: &mut Counts,
    ) -> Option<usize> {
        let Some(from) = meta.from else {
            c.received += 1;
            c.add_drop(DropReason::Framing, 1);
            return None;
        };
        // Our own multicast, looped back to the group socket (vxvde keeps the loop on for the
        // other endpoints of this host).
        if group && self.ov.is_own(&from, meta.spec_dst) {
            return None;
        }
        if total == HDR && self.ov.vxvde && *hdr == self.header {
            // A vxvde peer leaves: forget where its stations were.
            self.remotes.forget(&from);
            return None;
        }
        c.received += 1;
        if total < HDR || !self.ov.accepts(hdr) {
            c.add_drop(DropReason::Framing, 1);
            return None;
        }
        let len = total - HDR;
        if let Err(why) = admit(len) {
            c.add_drop(why, 1);
            return None;
        }
        let mut src = [0u8; 6];
        src.copy_from_slice(&frame[6..12]);
        self.remotes.learn(&src, self.ov.remote_of(from), now);
        Some(len)
    }

    /// Where a frame goes: the remote learnt for its destination MAC, or the group.
    pub fn dest_of(&self, frame: &[u8], now: u64) -> SocketAddr {
        frame
            .get(..6)
            .and_then(|d| <&[u8; 6]>::try_from(d).ok())
            .and_then(|d| self.remotes.lookup(d, now))
            .unwrap_or(self.ov.group)
    }

    /// Receives what is waiting into the `stride`-byte pieces of `slab` (frames only, from
    /// piece 0 on, at most `lens.len()`), keeping frames of our network and learning their
    /// senders. Returns how many frames were kept; `Err` when a socket failed for good.
    pub fn recv(
        &mut self,
        slab: &mut [u8],
        stride: usize,
        lens: &mut [usize],
        c: &mut Counts,
    ) -> Result<usize, Errno> {
        let max = lens.len().min(BATCH).min(slab.len() / stride);
        let nsock = if self.ov.uni.is_some() { 2 } else { 1 };
        let now = self.now();
        let mut n = 0;
        let mut drained = [false; 2];
        // Alternate the sockets (vxvde's two must not starve each other), a few rounds, so a
        // batch made only of our own looped-back multicast does not end the turn while frames
        // wait behind it.
        self.turn = (self.turn + 1) % nsock;
        for round in 0..4 * nsock {
            let which = (self.turn + round) % nsock;
            if n == max || drained.iter().take(nsock).all(|d| *d) {
                break;
            }
            if drained[which] {
                continue;
            }
            let fd = match (which, &self.ov.uni) {
                (0, _) | (_, None) => self.ov.multi.as_fd(),
                (_, Some(u)) => u.as_fd(),
            };
            let got = match inet::recv_batch_from(
                fd,
                &mut self.hdrs[..max - n],
                &mut slab[n * stride..],
                stride,
                &mut lens[n..max],
                &mut self.meta[..max - n],
            ) {
                Ok(k) => k,
                Err(e) => match Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) {
                    e if classify_rx_error(e as i32) != RxFault::Fatal => 0,
                    e => return Err(e),
                },
            };
            if got == 0 {
                drained[which] = true;
                continue;
            }
            let mut kept = 0;
            for k in 0..got {
                let at = (n + k) * stride;
                let total = lens[n + k];
                let frame = &slab[at..at + total.saturating_sub(HDR).min(stride)];
                let (hdr, meta) = (self.hdrs[k], self.meta[k]);
                let Some(len) = self.arrived(which == 0, total, &hdr, &meta, frame, now, c) else {
                    continue;
                };
                let to = n + kept;
                if to != n + k {
                    slab.copy_within(at..at + len, to * stride);
                }
                lens[to] = len;
                kept += 1;
            }
            n += kept;
        }
        Ok(n)
    }
}
