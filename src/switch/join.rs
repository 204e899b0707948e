//! Clients joining a switch or hub on its control socket, for both node drivers: accepted,
//! held until their request has arrived, then handed to the node to be answered with a port.
//!
//! Anyone allowed to connect to `ctl` can open connections and send nothing. So the number of
//! clients held before their request is bounded ([`MAX_PENDING`]: the oldest goes when a new
//! one comes and there is no room, and any older than [`HANDSHAKE`] goes at the next accept);
//! and when the process is out of descriptors (EMFILE, ENFILE) a spare descriptor is given up
//! to take the waiting connection off the backlog and close it, so the listening socket does
//! not stay readable for ever (a busy loop on epoll, a stalled accept on io_uring) and accepts
//! again as soon as descriptors are free.

use super::server::Joining;
use nix::errno::Errno;
use nix::sys::socket::{accept4, SockFlag};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Clients held at once before their request arrived.
pub const MAX_PENDING: usize = 32;
/// How long a client may take to send its request.
pub const HANDSHAKE: Duration = Duration::from_secs(5);

/// What the driver must do after [`Joins::accept`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Watch `fd` for input; report it with `slot` and `gen`.
    Watch { slot: usize, gen: u16, fd: RawFd },
    /// The client in `slot` (generation `gen`) was closed: stop watching it (io_uring cancels
    /// its poll; epoll forgot the descriptor when it closed).
    Unwatch { slot: usize, gen: u16 },
}

/// What a watched client's input brought.
pub enum Ready {
    /// The slot holds another client now (or none): a late report, ignore it.
    Stale,
    /// Not all of the request yet: watch again.
    Wait,
    /// The request is there (or the client went): answer it. The slot is free.
    Done(Joining),
}

struct Pending {
    joining: Joining,
    gen: u16,
    since: Instant,
    /// Order of arrival (clients accepted in one turn share `since`).
    seq: u64,
}

/// The clients of one node that have not joined yet.
pub struct Joins {
    slots: Vec<Option<Pending>>,
    gen: u16,
    seq: u64,
    /// Given up for a moment when accept(2) finds no descriptor left.
    spare: Option<OwnedFd>,
    max: usize,
    timeout: Duration,
    /// Said once: the process ran out of descriptors.
    warned: bool,
}

fn spare() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

impl Default for Joins {
    fn default() -> Self {
        Joins::new(MAX_PENDING, HANDSHAKE)
    }
}

impl Joins {
    pub fn new(max: usize, timeout: Duration) -> Joins {
        Joins {
            slots: Vec::new(),
            gen: 0,
            seq: 0,
            spare: spare(),
            max: max.max(1),
            timeout,
            warned: false,
        }
    }

    /// Clients held now.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Accepts every client waiting on `ctl` (`name`: the node, for the message when
    /// descriptors run out); returns what the driver must watch and stop watching.
    pub fn accept(&mut self, ctl: BorrowedFd<'_>, now: Instant, name: &str) -> Vec<Change> {
        let mut changes = Vec::new();
        self.expire(now, &mut changes);
        loop {
            match accept4(ctl, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK) {
                Ok(fd) => self.hold(fd, now, &mut changes),
                Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => {}
                Err(Errno::EMFILE) | Err(Errno::ENFILE) => {
                    if !self.warned {
                        crate::diag!(
                            "{name}: out of descriptors: clients are refused until some are free (raise ulimit -n)"
                        );
                        self.warned = true;
                    }
                    // Take the connection off the backlog and close it, with the spare.
                    let Some(s) = self.spare.take() else {
                        return changes;
                    };
                    drop(s);
                    drop(accept4(ctl, SockFlag::SOCK_CLOEXEC));
                    self.spare = spare();
                    if self.spare.is_none() {
                        return changes;
                    }
                }
                Err(_) => return changes,
            }
        }
    }

    fn hold(&mut self, fd: OwnedFd, now: Instant, changes: &mut Vec<Change>) {
        if self.len() >= self.max {
            // No room: the client that has waited longest goes.
            let oldest = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.as_ref().map(|p| (i, (p.since, p.seq))))
                .min_by_key(|&(_, t)| t)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                self.close(i, changes);
            }
        }
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.gen = self.gen.wrapping_add(1);
        self.seq += 1;
        let raw = fd.as_raw_fd();
        self.slots[slot] = Some(Pending {
            joining: Joining::new(fd),
            gen: self.gen,
            since: now,
            seq: self.seq,
        });
        changes.push(Change::Watch {
            slot,
            gen: self.gen,
            fd: raw,
        });
    }

    fn close(&mut self, slot: usize, changes: &mut Vec<Change>) {
        if let Some(p) = self.slots[slot].take() {
            changes.push(Change::Unwatch { slot, gen: p.gen });
        }
    }

    /// Closes the clients that had their time.
    fn expire(&mut self, now: Instant, changes: &mut Vec<Change>) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .as_ref()
                .is_some_and(|p| now.duration_since(p.since) >= self.timeout)
            {
                self.close(i, changes);
            }
        }
    }

    /// The client in `slot` (generation `gen`) has input: reads it.
    pub fn ready(&mut self, slot: usize, gen: u16) -> Ready {
        let Some(Some(p)) = self.slots.get_mut(slot) else {
            return Ready::Stale;
        };
        if p.gen != gen {
            return Ready::Stale;
        }
        if !p.joining.read() {
            return Ready::Wait;
        }
        let p = self.slots[slot].take().expect("checked above");
        Ready::Done(p.joining)
    }

    /// The descriptor of the client in `slot`, if it is still generation `gen`.
    pub fn fd(&self, slot: usize, gen: u16) -> Option<RawFd> {
        match self.slots.get(slot) {
            Some(Some(p)) if p.gen == gen => Some(p.joining.fd.as_raw_fd()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn listener(d: &crate::TestDir) -> (UnixListener, std::path::PathBuf) {
        let p = d.0.join("ctl");
        let l = UnixListener::bind(&p).unwrap();
        l.set_nonblocking(true).unwrap();
        (l, p)
    }

    #[test]
    fn idle_clients_are_bounded_oldest_first() {
        let d = crate::TestDir::new("joins-bound");
        let (l, p) = listener(&d);
        let mut j = Joins::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let clients: Vec<UnixStream> = (0..5).map(|_| UnixStream::connect(&p).unwrap()).collect();
        let ch = j.accept(l.as_fd(), t0, "sw");
        assert_eq!(j.len(), 3, "never more than the bound");
        let watched = ch.iter().filter(|c| matches!(c, Change::Watch { .. })).count();
        let closed = ch.iter().filter(|c| matches!(c, Change::Unwatch { .. })).count();
        assert_eq!((watched, closed), (5, 2));
        // The two first clients were closed: they read end of file.
        let mut b = [0u8; 1];
        for c in &clients[..2] {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(std::io::Read::read(&mut &*c, &mut b).unwrap(), 0);
        }
    }

    #[test]
    fn slow_clients_expire_and_late_reports_are_stale() {
        let d = crate::TestDir::new("joins-expire");
        let (l, p) = listener(&d);
        let mut j = Joins::new(8, Duration::from_millis(100));
        let t0 = Instant::now();
        let _a = UnixStream::connect(&p).unwrap();
        let ch = j.accept(l.as_fd(), t0, "sw");
        let Change::Watch { slot, gen, .. } = ch[0] else {
            panic!("{ch:?}")
        };
        assert!(matches!(j.ready(slot, gen), Ready::Wait), "nothing sent yet");
        let _b = UnixStream::connect(&p).unwrap();
        let ch = j.accept(l.as_fd(), t0 + Duration::from_millis(200), "sw");
        assert!(ch.contains(&Change::Unwatch { slot, gen }), "{ch:?}");
        assert_eq!(j.len(), 1);
        assert!(
            matches!(j.ready(slot, gen), Ready::Stale),
            "the old generation is gone"
        );
    }

    #[test]
    fn a_request_completes_the_join() {
        let d = crate::TestDir::new("joins-done");
        let (l, p) = listener(&d);
        let mut j = Joins::default();
        let mut c = UnixStream::connect(&p).unwrap();
        let ch = j.accept(l.as_fd(), Instant::now(), "sw");
        let Change::Watch { slot, gen, .. } = ch[0] else {
            panic!("{ch:?}")
        };
        std::io::Write::write_all(&mut c, &[0u8; 200]).unwrap();
        assert!(matches!(j.ready(slot, gen), Ready::Done(_)));
        assert!(j.is_empty());
    }
}
