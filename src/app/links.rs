//! Self-healing links, watched by vdens-fast's control thread while the command runs: a tap's
//! carrier follows its link, and a `vde://` interface joins again a switch that appears at the
//! same place after its own went away (classic vdens does neither).
//!
//! - `vde://`: the switch's control connection ending means the switch is gone: the carrier
//!   goes off and, on a timer, the link asks the switch directory for a new port again
//!   ([`Rejoin`]: connect to `ctl`, the request with the link's own data socket, the answer),
//!   every [`RETRY_MIN`]..[`RETRY_MAX`] while the command runs; joined, the data socket (the
//!   very one the engine moves frames on) is connected to the new port and the carrier comes
//!   back. Each step is bounded: a connect waits at most 100 ms, the answer is awaited through
//!   the epoll set, never by blocking.
//! - datagram `ptp://`: every [`TICK`], a throwaway connect to the peer's address tells
//!   whether a live peer is bound there; the carrier goes off when it goes, and comes back
//!   when it is back (a second opener connecting its socket to the new first opener first).
//!   The data plane cannot tell this itself: with the carrier off the kernel hands the tap's
//!   frames to no one, so no send fails or succeeds.
//! - seqpacket `ptp://` (`[seqpacket]`, both roles): its node says whether it has a peer
//!   attached (`PtpHost::presence`, set on each attach and hang-up), looked at every [`TICK`]
//!   with the same rule: the carrier goes off while no peer is attached, once one had been.
//!
//! The control thread owns duplicates of the taps (TUNSETCARRIER) and of the data sockets
//! (connect): the engine's descriptors and data plane stay as they are.

use crate::transport::{self, Link, Reconnect, Rejoin, SendTo};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the links are looked at (supervise's tick) when some are watched.
pub const TICK: Duration = Duration::from_millis(200);
/// The first wait before joining a switch again, and the longest one.
pub const RETRY_MIN: Duration = Duration::from_millis(200);
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// Where a vde:// link stands with its switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Joined: its control connection is watched.
    Up,
    /// No switch: the next try is due at `next`, after a wait of `wait`.
    Away { next: Instant, wait: Duration },
    /// A request was sent; its answer is awaited until `deadline`.
    Asking { deadline: Instant, wait: Duration },
}

impl Join {
    /// The switch closed the control connection: try again soon.
    pub fn lost(now: Instant) -> Join {
        Join::Away {
            next: now + RETRY_MIN,
            wait: RETRY_MIN,
        }
    }

    /// Whether a try is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        matches!(self, Join::Away { next, .. } if now >= *next)
    }

    /// A request went out at `now`.
    pub fn asked(&self, now: Instant, answer_within: Duration) -> Join {
        Join::Asking {
            deadline: now + answer_within,
            wait: self.wait(),
        }
    }

    /// Whether the awaited answer is overdue at `now`.
    pub fn overdue(&self, now: Instant) -> bool {
        matches!(self, Join::Asking { deadline, .. } if now >= *deadline)
    }

    /// A try failed at `now`: the next one after twice the wait, at most [`RETRY_MAX`].
    pub fn failed(&self, now: Instant) -> Join {
        let wait = (self.wait() * 2).min(RETRY_MAX);
        Join::Away {
            next: now + wait,
            wait,
        }
    }

    fn wait(&self) -> Duration {
        match *self {
            Join::Up => RETRY_MIN,
            Join::Away { wait, .. } | Join::Asking { wait, .. } => wait,
        }
    }
}

/// What the control thread knows of a ptp peer: the carrier follows it once the peer has
/// been seen (a first opener waiting for its first peer keeps the carrier it started with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    NotYetSeen,
    Present,
    Away,
}

impl Peer {
    /// After a probe: the new state, and the carrier to set when it changes.
    pub fn probed(self, alive: bool) -> (Peer, Option<bool>) {
        match (self, alive) {
            (Peer::NotYetSeen, false) => (Peer::NotYetSeen, None),
            (Peer::Away, false) => (Peer::Away, None),
            (Peer::Present, true) | (Peer::NotYetSeen, true) => (Peer::Present, None),
            (Peer::Present, false) => (Peer::Away, Some(false)),
            (Peer::Away, true) => (Peer::Present, Some(true)),
        }
    }
}

struct VdeLink {
    vnl: String,
    ifname: String,
    tap: Option<OwnedFd>,
    data: Option<OwnedFd>,
    rejoin: Option<Rejoin>,
    /// The control connection while joined, or the one awaiting an answer.
    ctl: Option<UnixStream>,
    state: Join,
    /// Whether the link can join again (it has what it takes), or only says it is gone.
    gone: bool,
}

struct PtpLink {
    vnl: String,
    ifname: String,
    tap: OwnedFd,
    /// The peer's address.
    peer: PathBuf,
    /// A second opener: its data socket, connected again to the new first opener.
    reconnect: Option<(OwnedFd, Reconnect)>,
    /// A seqpacket end: whether its node has a peer attached (instead of a probe of `peer`).
    present: Option<Arc<AtomicBool>>,
    /// The link's `Link::superframes`: the peer that took them went away, so whoever is there
    /// next is asked again (before a second opener connects to it).
    superframes: Option<Arc<AtomicBool>>,
    state: Peer,
}

/// The links the control thread watches; one epoll descriptor for `supervise` to poll.
pub struct Links {
    epoll: Epoll,
    vde: Vec<VdeLink>,
    ptp: Vec<PtpLink>,
}

fn say(m: std::fmt::Arguments<'_>) {
    eprintln!("vdens-fast: {m}");
}

fn set_carrier(tap: &OwnedFd, on: bool) {
    let _ = crate::sys::tun_set_carrier(tap.as_fd(), on);
}

impl Links {
    pub fn new() -> std::io::Result<Links> {
        Ok(Links {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            vde: Vec::new(),
            ptp: Vec::new(),
        })
    }

    /// Takes from `link` (interface `ifname` on `tap`) what watching it needs, before the
    /// engine gets it: a vde:// link's control connection and rejoin, a datagram ptp link's
    /// peer address; duplicates of the tap and data socket.
    pub fn add(&mut self, ifname: &str, tap: &OwnedFd, link: &mut Link) {
        if let Some(ctl) = link.ctl.take() {
            let i = self.vde.len();
            let ctl = UnixStream::from(ctl);
            let _ = self
                .epoll
                .add(&ctl, EpollEvent::new(EpollFlags::EPOLLIN, i as u64));
            let rejoin = transport::take_rejoin(link);
            let data = link.rx.as_ref().and_then(|d| d.try_clone().ok());
            self.vde.push(VdeLink {
                vnl: link.vnl.clone(),
                ifname: ifname.to_string(),
                tap: tap.try_clone().ok(),
                gone: rejoin.is_none() || data.is_none(),
                data,
                rejoin,
                ctl: Some(ctl),
                state: Join::Up,
            });
            return;
        }
        if let Some(transport::Hosted::Ptp(h)) = &link.node {
            let Ok(tap) = tap.try_clone() else { return };
            self.ptp.push(PtpLink {
                vnl: link.vnl.clone(),
                ifname: ifname.to_string(),
                tap,
                peer: h.path.clone(),
                reconnect: None,
                present: Some(h.presence()),
                superframes: None,
                state: Peer::NotYetSeen,
            });
            return;
        }
        if link.node.is_some() || link.framing != transport::Framing::Datagram {
            return;
        }
        let reconnect = link.reconnect();
        let (peer, reconnect) = match (&link.send_to, &reconnect) {
            // A 4.0.1 ptp first opener (the one link that sends by path): its peer is at PATH+.
            (SendTo::Unix(p), _) => (p.clone(), None),
            // A second opener: its peer is at PATH.
            (SendTo::Connected, Reconnect::Unix(p)) => {
                let Some(fd) = link.tx_fd().and_then(|f| f.try_clone_to_owned().ok()) else {
                    return;
                };
                (p.clone(), Some((fd, reconnect.clone())))
            }
            _ => return,
        };
        let Ok(tap) = tap.try_clone() else { return };
        self.ptp.push(PtpLink {
            vnl: link.vnl.clone(),
            ifname: ifname.to_string(),
            tap,
            peer,
            reconnect,
            present: None,
            superframes: link.superframes.clone(),
            state: Peer::NotYetSeen,
        });
    }

    /// The descriptor `supervise` polls (a duplicate: the caller keeps it while it lends
    /// these links to the event handler): readable when a watched control connection is.
    pub fn fd(&self) -> std::io::Result<OwnedFd> {
        self.epoll.0.try_clone()
    }

    /// How often `supervise` calls [`Links::on_tick`]; None when nothing needs a timer.
    pub fn tick(&self) -> Option<Duration> {
        (!self.vde.is_empty() || !self.ptp.is_empty()).then_some(TICK)
    }

    /// [`Links::fd`] is readable: handles each ready control connection.
    pub fn on_ready(&mut self) {
        let mut events = [EpollEvent::empty(); 16];
        let n = self.epoll.wait(&mut events, 0u8).unwrap_or(0);
        let now = Instant::now();
        for ev in &events[..n] {
            let i = ev.data() as usize;
            if i < self.vde.len() {
                self.vde_ready(i, now);
            }
        }
    }

    fn forget_ctl(&mut self, i: usize) {
        if let Some(c) = self.vde[i].ctl.take() {
            let _ = self.epoll.delete(&c);
        }
    }

    fn vde_ready(&mut self, i: usize, now: Instant) {
        let l = &mut self.vde[i];
        let Some(ctl) = l.ctl.as_mut() else { return };
        match l.state {
            Join::Up => {
                let mut buf = [0u8; 256];
                match ctl.read(&mut buf) {
                    Ok(n) if n > 0 => return,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        return
                    }
                    _ => {}
                }
                let again = if l.gone {
                    ""
                } else {
                    "; joining again when a switch is back there"
                };
                say(format_args!(
                    "{}: the switch closed the control connection; {} is disconnected{again}",
                    l.vnl, l.ifname
                ));
                // The namespace sees it too: the interface loses its carrier.
                if let Some(t) = &l.tap {
                    set_carrier(t, false);
                }
                l.state = Join::lost(now);
                self.forget_ctl(i);
            }
            Join::Asking { .. } => {
                let (Some(r), Some(data)) = (&l.rejoin, &l.data) else {
                    return;
                };
                match r.answer(ctl, data.as_fd()) {
                    Ok(false) => {}
                    Ok(true) => {
                        l.state = Join::Up;
                        if let Some(t) = &l.tap {
                            set_carrier(t, true);
                        }
                        say(format_args!("{}: {} rejoined the switch", l.vnl, l.ifname));
                    }
                    Err(_) => {
                        l.state = l.state.failed(now);
                        self.forget_ctl(i);
                    }
                }
            }
            Join::Away { .. } => {}
        }
    }

    /// The timer: tries to join again the switches that are due, gives up waiting for
    /// overdue answers, and probes the ptp peers.
    pub fn on_tick(&mut self) {
        let now = Instant::now();
        for i in 0..self.vde.len() {
            self.vde_tick(i, now);
        }
        for l in &mut self.ptp {
            ptp_tick(l);
        }
    }

    fn vde_tick(&mut self, i: usize, now: Instant) {
        let l = &mut self.vde[i];
        if l.gone {
            return;
        }
        if l.state.overdue(now) {
            if let Some(r) = &l.rejoin {
                r.abandon();
            }
            l.state = l.state.failed(now);
            self.forget_ctl(i);
            return;
        }
        if !l.state.due(now) {
            return;
        }
        let (Some(r), Some(data)) = (&l.rejoin, &l.data) else {
            return;
        };
        match r.request(data.as_fd()) {
            Ok(ctl) => {
                if self
                    .epoll
                    .add(&ctl, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                    .is_err()
                {
                    l.state = l.state.failed(now);
                    return;
                }
                l.state = l.state.asked(now, Rejoin::ANSWER_WITHIN);
                l.ctl = Some(ctl);
            }
            Err(_) => l.state = l.state.failed(now),
        }
    }
}

fn ptp_tick(l: &mut PtpLink) {
    let alive = match &l.present {
        Some(p) => p.load(Ordering::Acquire),
        None => transport::ptp_peer_alive(&l.peer),
    };
    let (state, carrier) = l.state.probed(alive);
    match carrier {
        Some(true) => {
            // A second opener connects to the new first opener before it says it is back.
            if let Some((fd, how)) = &l.reconnect {
                if !matches!(how.reconnect(fd.as_fd()), Ok(true)) {
                    return;
                }
            }
            set_carrier(&l.tap, true);
            say(format_args!(
                "{}: the peer is back; {} has its carrier again",
                l.vnl, l.ifname
            ));
        }
        Some(false) => {
            if let Some(s) = &l.superframes {
                s.store(false, Ordering::Release);
            }
            set_carrier(&l.tap, false);
            say(format_args!(
                "{}: the peer went away; {} has no carrier until it is back",
                l.vnl, l.ifname
            ));
        }
        None => {}
    }
    l.state = state;
}

/// A vdeplug-fast cable's datagram `ptp://` second opener, watched from the main thread: when
/// the socket at PATH is a new one (its first opener restarted), the link's socket connects
/// to it at once. Without this it would do so only at its next failed send (as classic
/// vde_plug does), and until then the kernel refuses what the new first opener sends to it
/// (EPERM: the link is still connected to the dead socket), so a cable with nothing to send
/// would never hear from it again. PATH's inode tells a new socket from the old one, also
/// after a restart quicker than a tick: its inode number and modification time (the freed
/// inode number is often given to the new file at once; the time is the bind's, and no
/// chmod changes it).
pub struct CableWatch {
    vnl: String,
    path: PathBuf,
    /// A duplicate of the link's data socket (a connect on it is the link's).
    fd: OwnedFd,
    how: Reconnect,
    /// The socket file at PATH the link is connected to, as far as the watch knows.
    ino: Option<SocketId>,
    superframes: Option<Arc<AtomicBool>>,
}

/// Which socket file a path holds: inode number and modification time (seconds, nanoseconds).
type SocketId = (u64, i64, i64);

/// The socket file at `p`, if one is there.
fn socket_ino(p: &std::path::Path) -> Option<SocketId> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.file_type().is_socket())
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

/// What the watch does on a tick, given the inode it knew and the one at PATH now.
#[derive(Debug, PartialEq, Eq)]
enum CableStep {
    Nothing,
    /// The socket went away: what negotiated with it ends.
    Gone,
    /// A new socket is there: connect to it.
    Connect,
}

fn cable_step(known: Option<SocketId>, now: Option<SocketId>) -> CableStep {
    match (known, now) {
        (k, n) if k == n => CableStep::Nothing,
        (_, None) => CableStep::Gone,
        (_, Some(_)) => CableStep::Connect,
    }
}

impl CableWatch {
    /// The watch for `link`, when it is a datagram ptp second opener (None otherwise).
    pub fn of(link: &Link) -> Option<CableWatch> {
        if link.node.is_some() || link.framing != transport::Framing::Datagram {
            return None;
        }
        let how = link.reconnect();
        let Reconnect::Unix(path) = &how else { return None };
        let fd = link.tx_fd()?.try_clone_to_owned().ok()?;
        Some(CableWatch {
            vnl: link.vnl.clone(),
            ino: socket_ino(path),
            path: path.clone(),
            fd,
            how: how.clone(),
            superframes: link.superframes.clone(),
        })
    }

    /// Looks at PATH once (a stat), connecting the link to a new socket found there.
    pub fn tick(&mut self) {
        let now = socket_ino(&self.path);
        match cable_step(self.ino, now) {
            CableStep::Nothing => {}
            CableStep::Gone => {
                if let Some(s) = &self.superframes {
                    s.store(false, Ordering::Release);
                }
                self.ino = None;
            }
            CableStep::Connect => {
                if let Some(s) = &self.superframes {
                    s.store(false, Ordering::Release);
                }
                // Not yet listening (or still someone else's): the next tick tries again.
                if matches!(self.how.reconnect(self.fd.as_fd()), Ok(true)) {
                    self.ino = now;
                    crate::diag!(
                        "{}: a new first opener at {}: connected again",
                        self.vnl,
                        self.path.display()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cable_connects_when_the_socket_at_path_is_new() {
        use super::{cable_step, CableStep::*};
        let (a, b) = ((5, 100, 1), (5, 100, 2));
        assert_eq!(cable_step(Some(a), Some(a)), Nothing);
        assert_eq!(cable_step(None, None), Nothing);
        assert_eq!(cable_step(Some(a), None), Gone);
        assert_eq!(
            cable_step(Some(a), Some(b)),
            Connect,
            "the same inode number, bound later"
        );
        assert_eq!(cable_step(None, Some(b)), Connect);
    }

    use super::*;

    #[test]
    fn join_tries_again_with_a_growing_bounded_wait() {
        let t0 = Instant::now();
        let s = Join::lost(t0);
        assert!(!s.due(t0));
        assert!(s.due(t0 + RETRY_MIN));
        let s = s.asked(t0 + RETRY_MIN, Duration::from_secs(5));
        assert!(!s.due(t0 + Duration::from_secs(100)), "asking is not a try due");
        assert!(!s.overdue(t0 + Duration::from_secs(1)));
        assert!(s.overdue(t0 + RETRY_MIN + Duration::from_secs(5)));
        let s = s.failed(t0);
        assert_eq!(
            s,
            Join::Away {
                next: t0 + RETRY_MIN * 2,
                wait: RETRY_MIN * 2
            }
        );
        let mut s = s;
        for _ in 0..10 {
            s = s.failed(t0);
        }
        assert_eq!(
            s,
            Join::Away {
                next: t0 + RETRY_MAX,
                wait: RETRY_MAX
            }
        );
        assert!(!Join::Up.due(t0 + Duration::from_secs(100)));
        assert!(!Join::Up.overdue(t0 + Duration::from_secs(100)));
    }

    #[test]
    fn carrier_follows_a_peer_once_seen() {
        use Peer::*;
        assert_eq!(NotYetSeen.probed(false), (NotYetSeen, None));
        assert_eq!(NotYetSeen.probed(true), (Present, None));
        assert_eq!(Present.probed(true), (Present, None));
        assert_eq!(Present.probed(false), (Away, Some(false)));
        assert_eq!(Away.probed(false), (Away, None));
        assert_eq!(Away.probed(true), (Present, Some(true)));
    }
}
