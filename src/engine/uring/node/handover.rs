//! The tap handover of a port whose link is a datagram `ptp://` end that offered super-frames
//! (the rules and the messages are `core::handover`'s): the connection at `PATH+fast3`, the
//! descriptors passed, and, while the peer's tap is ours, every frame read from the port's
//! tap written whole (virtio-net header and all) into the peer's tap, as a `tap://` link's
//! frames are written into its tap: no socket, no cutting.
//!
//! - The first opener watches its listening socket (a poll on the ring), accepts, and answers
//!   a second opener of its own user that asks with the nonce of the current pairing.
//! - The second opener connects once it echoed a PROBE (a nonce it has not tried yet).
//! - The connection is watched (POLLIN, POLLRDHUP) while it is open; its end, or a write that
//!   says the peer's tap is gone, closes the peer's tap at once (a write still in flight
//!   keeps it until it completes) and the port falls back to its socket as after a lost
//!   pairing: the second opener asks HELLO again, the first opener unpairs.
//! - The switch to the tap is made at a clean point: the first tap read once nothing waits
//!   for the link and no tap read waits to be cut.
//!
//! The writes are the link's: its send queue holds the frames and writes its chains into the
//! peer's tap while the handover is up (see [`UNode::handover_tap`]), so they are admitted,
//! completed and counted as every other frame that leaves the node. The handover's own
//! completions are the node's operations (generation 0): `Op::Ctl` for the polls (slot
//! [`LISTEN`] or [`CONN`], with the connection's generation as length) and the timer.

use super::Interval;
use super::{token, Op, Owner, Sqe, UNode, Whole, LINK_TO_TAP, PORT_LINK, PORT_TAP, TAP_TO_LINK};
use crate::engine::core::handover::{self, Act, Arrived, Phase};
use crate::engine::core::pair::PairState;
use crate::sys::fdpass;
use crate::wire::handover::{Msg, Tally, MAX_LEN};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Token slots of the handover's polls, and of the timer that sends the tally.
const LISTEN: u16 = 0;
const CONN: u16 = 1;
const TALLY: u16 = 2;
/// How long frames written into the peer's tap wait at most before they are told (`Count`).
const TALLY_EVERY: Duration = Duration::from_millis(10);

/// Sends message `m` on the connection, with descriptor `fd`.
fn send_msg(c: BorrowedFd<'_>, m: Msg, fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let mut b = [0u8; MAX_LEN];
    let n = m.write(&mut b);
    fdpass::send_with_fd(c, &b[..n], fd)
}

/// A port's tap handover (see the module's text).
pub(super) struct Handover {
    /// The first opener (listens), or the second (connects).
    first: bool,
    /// `PATH+fast3`.
    path: PathBuf,
    /// The first opener's listening socket, and whether its poll is armed.
    listen: Option<OwnedFd>,
    listen_armed: bool,
    /// The port's tap's virtio-net header size.
    pub(super) hdr: usize,
    /// The connection, its generation (in its poll's token) and phase.
    conn: Option<OwnedFd>,
    gen: u16,
    conn_armed: bool,
    phase: Phase,
    /// Connections closed while their poll was in flight: dropped when it completes.
    closing: Vec<(u16, OwnedFd)>,
    /// The peer's tap, written to while the handover is up.
    peer_tap: Option<OwnedFd>,
    /// Frames go to the peer's tap (the clean point was reached).
    active: bool,
    /// Writes in flight, and a peer tap closed while some were (kept until they complete).
    writes: u32,
    closed_tap: Option<OwnedFd>,
    /// The second opener: the nonce it connected with last (each pairing is tried once).
    tried: Option<u32>,
    euid: u32,
    /// Frames written into the peer's tap not told yet, and the timer that tells them.
    tally: Tally,
    tally_armed: bool,
    timer: Box<Interval>,
}

impl UNode {
    /// Looks for what a handover needs, once: a port whose link is a datagram ptp end with a
    /// pair socket and `PATH+fast3`, and whose tap has a virtio-net header. A first opener
    /// listens there (best effort: without it, no handover), the file removed with the link's.
    fn handover_find(&mut self) -> Option<Box<Handover>> {
        self.port.as_ref()?;
        let tap = self.eps.get(PORT_TAP)?.as_ref()?;
        let hdr = tap.port.as_ref()?.vnet_hdr;
        if hdr == 0 || !matches!(tap.owner, Owner::Tap(_)) {
            return None;
        }
        let link = self.eps.get_mut(PORT_LINK)?.as_mut()?;
        link.dg.as_ref()?;
        let Owner::Link(l) = &mut link.owner else {
            return None;
        };
        let p = l.pair.as_ref()?;
        let path = p.handover.clone()?;
        let first = p.first;
        let listen = if first {
            let fd = crate::transport::ptp_handover_listener(&path).ok()?;
            // Removed before the pair socket's and PATH's.
            l.cleanup.insert(0, path.clone());
            Some(fd)
        } else {
            None
        };
        Some(Box::new(Handover {
            first,
            path,
            listen,
            listen_armed: false,
            hdr,
            conn: None,
            gen: 0,
            conn_armed: false,
            phase: Phase::AwaitAsk,
            closing: Vec::new(),
            peer_tap: None,
            active: false,
            writes: 0,
            closed_tap: None,
            tried: None,
            euid: nix::unistd::geteuid().as_raw(),
            tally: Tally::default(),
            tally_armed: false,
            timer: Box::new(Interval::new(TALLY_EVERY)),
        }))
    }

    /// At the end of a turn: the first opener's listening socket watched, the second opener
    /// connecting once it echoed a new nonce, the connection watched.
    pub(super) fn handover_tick(&mut self) {
        if self.port.is_none() || self.stopping {
            return;
        }
        if !self.ho_looked {
            self.ho_looked = true;
            self.ho = self.handover_find();
        }
        let Some(h) = self.ho.as_deref_mut() else { return };
        if !h.first && h.conn.is_none() {
            let echoed = self.eps[PORT_LINK]
                .as_ref()
                .and_then(|e| e.dg.as_ref())
                .and_then(|d| d.nonce);
            if let Some(n) = echoed.filter(|n| h.tried != Some(*n)) {
                h.tried = Some(n);
                Self::handover_ask(h, n);
            }
        }
        let index = self.index as usize;
        let mut polls = [None, None];
        if let Some(l) = h.listen.as_ref().filter(|_| !h.listen_armed) {
            h.listen_armed = true;
            polls[0] = Some((l.as_raw_fd(), libc::POLLIN, token(Op::Ctl, index, 0, LISTEN, 0)));
        }
        if let Some(c) = h.conn.as_ref().filter(|_| !h.conn_armed) {
            h.conn_armed = true;
            let ev = libc::POLLIN | libc::POLLRDHUP;
            polls[1] = Some((c.as_raw_fd(), ev, token(Op::Ctl, index, 0, CONN, h.gen as usize)));
        }
        let tally = (!h.tally.is_empty() && !h.tally_armed && h.conn.is_some()).then(|| {
            h.tally_armed = true;
            Sqe::Timeout { after: &*h.timer }.op(token(Op::Ctl, index, 0, TALLY, 0))
        });
        for (fd, events, t) in polls.into_iter().flatten() {
            self.poll(fd, events, false, t);
        }
        if let Some(sqe) = tally {
            self.push(&sqe);
        }
    }

    /// Tells the peer what was written into its tap since the last time (kept when the
    /// connection cannot take it now).
    fn handover_tell(&mut self) {
        let Some(h) = self.ho.as_deref_mut() else { return };
        let Some(c) = h
            .conn
            .as_ref()
            .filter(|_| h.phase == Phase::Up && !h.tally.is_empty())
        else {
            return;
        };
        if send_msg(c.as_fd(), Msg::Count(h.tally), None).is_ok() {
            h.tally = Tally::default();
        }
    }

    /// The second opener connects to `PATH+fast3` and asks with nonce `n` (a first opener of
    /// another user, or none there: no handover).
    fn handover_ask(h: &mut Handover, n: u32) {
        let Ok(c) = fdpass::seqpacket_connect(&h.path) else {
            return;
        };
        if !handover::same_user(fdpass::peer_uid(c.as_fd()).ok(), h.euid) {
            return;
        }
        if send_msg(c.as_fd(), Msg::Ask(n), None).is_err() {
            return;
        }
        h.conn = Some(c);
        h.gen = h.gen.wrapping_add(1);
        h.conn_armed = false;
        h.phase = Phase::AwaitGive(n);
    }

    /// A completion of the handover's: a poll or its timer (`Op::Ctl`).
    pub(super) fn on_handover(&mut self, t: super::Token, res: i32) {
        let stopping = self.stopping;
        let Some(h) = self.ho.as_deref_mut() else { return };
        if t.slot == TALLY {
            h.tally_armed = false;
            if !stopping {
                self.handover_tell();
            }
            return;
        }
        if t.slot == LISTEN {
            h.listen_armed = false;
            if !stopping && res >= 0 {
                self.handover_accept();
            }
            return;
        }
        if let Some(i) = h.closing.iter().position(|(g, _)| *g == t.len) {
            // Its poll is over: the connection closes now.
            h.closing.swap_remove(i);
            return;
        }
        if t.len != h.gen || h.conn.is_none() {
            return;
        }
        h.conn_armed = false;
        if stopping {
            return;
        }
        if res > 0 && res as i16 & libc::POLLIN != 0 {
            self.handover_read();
        }
        let h = self.ho.as_deref_mut().expect("looked");
        if h.gen == t.len && h.conn.is_some() && handover::conn_lost(res) {
            self.handover_down(None);
        }
    }

    /// The first opener accepts what waits on its listening socket: a connection of another
    /// user is closed at once; one that comes while a handover is up too.
    fn handover_accept(&mut self) {
        loop {
            let Some(h) = self.ho.as_deref_mut() else { return };
            let Some(r) = h.listen.as_ref().map(|l| fdpass::accept(l.as_fd())) else {
                return;
            };
            let fd = match r {
                Ok(fd) => fd,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::ECONNABORTED)) => continue,
                Err(_) => return,
            };
            if !handover::same_user(fdpass::peer_uid(fd.as_fd()).ok(), h.euid) {
                crate::diag!(
                    "{}: tap handover refused: the peer runs as another user",
                    self.name
                );
                continue;
            }
            if h.phase == Phase::Up {
                continue;
            }
            // A connection that did not finish its exchange gives way to the new one.
            self.handover_close_conn();
            let h = self.ho.as_deref_mut().expect("looked");
            h.conn = Some(fd);
            h.gen = h.gen.wrapping_add(1);
            h.conn_armed = false;
            h.phase = Phase::AwaitAsk;
        }
    }

    /// Reads one message on the connection and acts on it ([`handover::on_message`]).
    fn handover_read(&mut self) {
        let current = self.handover_nonce();
        let Some(h) = self.ho.as_deref_mut() else { return };
        let Some(c) = h.conn.as_ref() else { return };
        let mut buf = [0u8; 2 * MAX_LEN];
        let r = match fdpass::recv_with_fds(c.as_fd(), &mut buf) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return,
            Err(_) => return self.handover_down(None),
        };
        if r.len == 0 && r.fds.is_empty() && !r.truncated {
            // The peer's end of the connection.
            return self.handover_down(None);
        }
        let a = Arrived {
            msg: (!r.truncated).then(|| Msg::parse(&buf[..r.len])).flatten(),
            fds: r.fds.len(),
            ctrunc: r.ctrunc,
        };
        let mut fds = r.fds;
        match handover::on_message(h.phase, a, current) {
            Act::Count(t) => {
                // Frames the peer wrote into this end's tap: from the link, to the tap.
                if let Some(Some(l)) = self.eps.get_mut(PORT_LINK) {
                    l.counts[TAP_TO_LINK].received += u64::from(t.frames);
                }
                if let Some(Some(tap)) = self.eps.get_mut(PORT_TAP) {
                    let c = &mut tap.counts[LINK_TO_TAP];
                    c.sent_many(u64::from(t.frames), t.bytes);
                    c.super_frames += u64::from(t.super_frames);
                    c.segments += u64::from(t.segments);
                }
            }
            Act::Refuse => {
                drop(fds);
                self.handover_down(Some("the peer's message was refused"));
            }
            Act::Give(n) => {
                let tap = self.eps[PORT_TAP].as_ref().and_then(|e| e.owner.rx());
                if tap.is_some() && send_msg(c.as_fd(), Msg::Give(n), tap).is_ok() {
                    h.phase = Phase::AwaitTake;
                } else {
                    self.handover_down(None);
                }
            }
            act @ (Act::TakeAndAnswer | Act::Take) => {
                let fd = fds.pop().expect("one descriptor");
                if let Err(why) = handover::tap_ok(fdpass::tun_info(fd.as_fd()), h.hdr) {
                    drop(fd);
                    crate::diag!(
                        "{}: tap handover refused: the peer passed no usable tap ({why:?})",
                        self.name
                    );
                    return self.handover_down(None);
                }
                if act == Act::TakeAndAnswer {
                    let tap = self.eps[PORT_TAP].as_ref().and_then(|e| e.owner.rx());
                    if tap.is_none() || send_msg(c.as_fd(), Msg::Take, tap).is_err() {
                        return self.handover_down(None);
                    }
                }
                h.peer_tap = Some(fd);
                h.active = false;
                h.phase = Phase::Up;
                if let Some(st) = &self.port {
                    st.handover.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// The first opener's current pairing nonce: the latest PROBE's, while joined or paired.
    fn handover_nonce(&self) -> Option<u32> {
        let d = self.eps.get(PORT_LINK)?.as_ref()?.dg.as_deref()?;
        match d.pair.as_ref().filter(|p| p.first)?.pairing.state() {
            PairState::Joined(n) => Some(n),
            PairState::Paired => d.nonce,
            _ => None,
        }
    }

    /// Closes the connection (once its poll is over, when one is in flight: cancelled).
    fn handover_close_conn(&mut self) {
        let own = self.own(Op::Cancel);
        let Some(h) = self.ho.as_deref_mut() else { return };
        let Some(c) = h.conn.take() else { return };
        if h.conn_armed {
            h.conn_armed = false;
            let fd = c.as_raw_fd();
            h.closing.push((h.gen, c));
            let sqe = Sqe::CancelFd { fd }.op(own);
            self.push(&sqe);
        }
    }

    /// The handover ends (or never came): the connection closes, the peer's tap is closed
    /// (once the writes in flight complete), the whole tap frames still waiting for it are
    /// dropped (counted), and a port that was writing to it falls back to its socket as after
    /// a lost pairing: nothing tagged goes to whoever is there now before it answers again.
    /// `why`: said in one line.
    fn handover_down(&mut self, why: Option<&str>) {
        self.handover_tell();
        if let Some(h) = self.ho.as_deref_mut() {
            h.tally = Tally::default();
        }
        if let Some(why) = why {
            crate::diag!("{}: tap handover: {why}; frames go over the socket", self.name);
        }
        self.handover_close_conn();
        let Some(h) = self.ho.as_deref_mut() else { return };
        h.phase = Phase::AwaitAsk;
        let active = std::mem::take(&mut h.active);
        let Some(t) = h.peer_tap.take() else { return };
        if h.writes > 0 {
            h.closed_tap = Some(t);
        }
        let first = h.first;
        if let Some(st) = &self.port {
            st.handover.store(false, Ordering::Relaxed);
        }
        let Some(e) = self.eps.get_mut(PORT_LINK).and_then(Option::as_mut) else {
            return;
        };
        if first {
            e.unpair();
        } else if let Some(d) = e.dg.as_deref_mut() {
            d.flag.store(false, Ordering::Release);
            d.hello_at = None;
            e.takes_whole = false;
        }
        if active {
            self.purge_tagged(PORT_LINK);
        }
    }

    /// Frame `fid` (`len` bytes) read from the port's tap goes whole into the peer's tap while
    /// the handover is up (judged as a `tap://` link's, see `port_whole`): true when it took
    /// it. It waits in the link's send queue, whose chains are written into the peer's tap
    /// while the handover is up ([`Self::handover_tap`]). The first one waits for a clean
    /// point: nothing waiting for the link, no tap read waiting to be cut (those go their way
    /// first).
    pub(super) fn handover_whole(&mut self, from: usize, fid: u16, len: usize) -> bool {
        if from != PORT_TAP {
            return false;
        }
        let Some(h) = self.ho.as_deref_mut().filter(|h| h.peer_tap.is_some()) else {
            return false;
        };
        if !h.active {
            let link_idle = matches!(self.eps.get(PORT_LINK), Some(Some(e)) if !e.sq.as_deref().is_some_and(|q| !q.idle()));
            let tap_idle = matches!(self.eps.get(PORT_TAP), Some(Some(e)) if e.port.as_ref().is_some_and(|p| p.reads.is_empty() && p.next == 0));
            if !(link_idle && tap_idle) {
                return false;
            }
            h.active = true;
        }
        let hl = h.hdr;
        self.cross_whole(from, PORT_LINK, hl, fid, len);
        true
    }

    /// The peer's tap, while the handover is up: the link's send queue writes its chains
    /// there (the frames it holds then are all whole tap frames, see [`Self::handover_whole`]),
    /// and the number of bytes of virtio-net header they carry. Counts the `n` writes a chain
    /// puts in flight.
    pub(super) fn handover_tap(&mut self, n: usize) -> Option<(RawFd, usize)> {
        let h = self.ho.as_deref_mut().filter(|h| h.active)?;
        let fd = h.peer_tap.as_ref()?.as_raw_fd();
        h.writes += n as u32;
        Some((fd, h.hdr))
    }

    /// A write of the link's send queue into the peer's tap completed (counted there): told to
    /// the peer (a super-frame as its segments); one that says the peer's tap is gone ends the
    /// handover.
    pub(super) fn handover_wrote(&mut self, w: Option<Whole>, res: i32) {
        let Some(h) = self.ho.as_deref_mut() else { return };
        h.writes = h.writes.saturating_sub(1);
        if h.writes == 0 {
            h.closed_tap = None;
        }
        if res > 0 {
            let (n, bytes) = w.map_or((1, res as u64), |w| (w.segs, w.wire));
            h.tally.add(n, bytes);
        }
        if res < 0 && h.peer_tap.is_some() && handover::write_lost(-res) {
            self.handover_down(Some("the peer's tap is gone"));
        }
    }
}
