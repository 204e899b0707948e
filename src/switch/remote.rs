//! MAC -> remote address learning for the vxlan:// and vxvde:// overlays: the inner source
//! MAC of a datagram of our network is behind the address it came from, so later frames to
//! that MAC are sent there by unicast instead of to the multicast group.
//!
//! Built on the switch's [`MacTable`]: the table maps a MAC to a small index, and the index
//! names a remote in a bounded list of known remotes. Nothing is allocated once the list has
//! reached its bound; when it is full, the remote heard from least recently is forgotten
//! together with every MAC learnt behind it.

use super::table::{MacTable, PortId};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Most remotes remembered at once.
pub const MAX_REMOTES: usize = 4096;

/// The learning table of an overlay.
pub struct Remotes {
    /// `None` when learning is off (`hashsize=0`: every frame goes to the group).
    macs: Option<MacTable>,
    addrs: Vec<SocketAddr>,
    seen: Vec<u64>,
    index: HashMap<SocketAddr, PortId>,
    /// The remote of the previous datagram: consecutive datagrams mostly come from one peer.
    last: Option<(SocketAddr, PortId)>,
    cap: usize,
}

impl Remotes {
    /// A table of `hashsize` MAC entries (0: no learning) expiring after `expire` seconds.
    pub fn new(hashsize: usize, expire: u64) -> Remotes {
        Self::with_capacity(hashsize, expire, MAX_REMOTES)
    }

    fn with_capacity(hashsize: usize, expire: u64, cap: usize) -> Remotes {
        let cap = cap.clamp(1, PortId::MAX as usize);
        Remotes {
            macs: (hashsize > 0).then(|| MacTable::new(hashsize, expire, 0)),
            addrs: Vec::with_capacity(cap.min(64)),
            seen: Vec::with_capacity(cap.min(64)),
            index: HashMap::with_capacity(cap.min(64)),
            last: None,
            cap,
        }
    }

    /// Whether this table learns at all.
    pub fn learning(&self) -> bool {
        self.macs.is_some()
    }

    fn remote_id(&mut self, addr: SocketAddr, now: u64) -> PortId {
        if let Some((a, id)) = self.last {
            if a == addr {
                self.seen[id as usize] = now;
                return id;
            }
        }
        let id = match self.index.get(&addr) {
            Some(&id) => id,
            None if self.addrs.len() < self.cap => {
                let id = self.addrs.len() as PortId;
                self.addrs.push(addr);
                self.seen.push(now);
                self.index.insert(addr, id);
                id
            }
            None => {
                // Full: the remote heard from least recently makes room.
                let mut old = 0;
                for (i, s) in self.seen.iter().enumerate() {
                    if *s < self.seen[old] {
                        old = i;
                    }
                }
                let id = old as PortId;
                self.index.remove(&self.addrs[old]);
                if let Some(m) = self.macs.as_mut() {
                    m.forget_port(id);
                }
                self.addrs[old] = addr;
                self.index.insert(addr, id);
                id
            }
        };
        self.seen[id as usize] = now;
        self.last = Some((addr, id));
        id
    }

    /// Records that `src` (a unicast MAC) is behind `addr`, as of `now` (seconds).
    pub fn learn(&mut self, src: &[u8; 6], addr: SocketAddr, now: u64) {
        if self.macs.is_none() || src[0] & 1 != 0 {
            return;
        }
        let id = self.remote_id(addr, now);
        if let Some(m) = self.macs.as_mut() {
            m.learn(src, 0, id, now);
        }
    }

    /// Where to send a frame for `dst`: the remote it was learnt behind, or `None` (the
    /// group) for a group address, an unknown or an expired one.
    pub fn lookup(&self, dst: &[u8; 6], now: u64) -> Option<SocketAddr> {
        if dst[0] & 1 != 0 {
            return None;
        }
        let id = self.macs.as_ref()?.lookup(dst, 0, now)?;
        self.addrs.get(id as usize).copied()
    }

    /// Forgets every MAC learnt behind `addr` (a vxvde peer said it leaves).
    pub fn forget(&mut self, addr: &SocketAddr) {
        if let (Some(&id), Some(m)) = (self.index.get(addr), self.macs.as_mut()) {
            m.forget_port(id);
        }
    }

    /// Remotes currently remembered (for tests).
    pub fn remotes(&self) -> usize {
        self.addrs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u16) -> [u8; 6] {
        let b = i.to_be_bytes();
        [2, 0, 0, 0, b[0], b[1]]
    }

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, (i % 250) as u8], 4789 + i / 250))
    }

    #[test]
    fn learns_and_expires() {
        let mut r = Remotes::new(1024, 128);
        assert_eq!(r.lookup(&mac(1), 0), None);
        r.learn(&mac(1), addr(1), 10);
        r.learn(&mac(2), addr(2), 10);
        r.learn(&mac(3), addr(1), 10);
        assert_eq!(r.lookup(&mac(1), 11), Some(addr(1)));
        assert_eq!(r.lookup(&mac(2), 11), Some(addr(2)));
        assert_eq!(r.lookup(&mac(3), 11), Some(addr(1)));
        assert_eq!(r.remotes(), 2);
        // A station that moves is found at its new remote.
        r.learn(&mac(1), addr(2), 12);
        assert_eq!(r.lookup(&mac(1), 12), Some(addr(2)));
        assert_eq!(r.lookup(&mac(3), 10 + 128), None, "expired");
    }

    #[test]
    fn group_addresses_are_neither_learnt_nor_found() {
        let mut r = Remotes::new(64, 128);
        let bcast = [0xff; 6];
        let mcast = [0x01, 0x00, 0x5e, 0, 0, 1];
        r.learn(&mcast, addr(1), 0);
        assert_eq!(r.remotes(), 0);
        assert_eq!(r.lookup(&bcast, 0), None);
        assert_eq!(r.lookup(&mcast, 0), None);
    }

    #[test]
    fn hashsize_zero_never_learns() {
        let mut r = Remotes::new(0, 128);
        assert!(!r.learning());
        r.learn(&mac(1), addr(1), 0);
        assert_eq!(r.lookup(&mac(1), 0), None);
    }

    #[test]
    fn forget_a_remote() {
        let mut r = Remotes::new(64, 128);
        r.learn(&mac(1), addr(1), 0);
        r.learn(&mac(2), addr(2), 0);
        r.forget(&addr(1));
        assert_eq!(r.lookup(&mac(1), 0), None);
        assert_eq!(r.lookup(&mac(2), 0), Some(addr(2)));
        // Heard from again: learnt again.
        r.learn(&mac(1), addr(1), 1);
        assert_eq!(r.lookup(&mac(1), 1), Some(addr(1)));
    }

    #[test]
    fn bounded_remotes_evict_the_stalest_with_its_macs() {
        let mut r = Remotes::with_capacity(1024, 1000, 4);
        for i in 0..4 {
            r.learn(&mac(i), addr(i), i as u64);
        }
        r.learn(&mac(0), addr(0), 10); // addr(0) is fresh again; addr(1) is now the stalest
        r.learn(&mac(9), addr(9), 11);
        assert_eq!(r.remotes(), 4);
        assert_eq!(r.lookup(&mac(1), 11), None, "evicted with its remote");
        assert_eq!(r.lookup(&mac(9), 11), Some(addr(9)));
        assert_eq!(r.lookup(&mac(0), 11), Some(addr(0)));
        assert_eq!(r.lookup(&mac(2), 11), Some(addr(2)));
        for i in 100..400 {
            r.learn(&mac(i), addr(i), 20 + i as u64);
        }
        assert_eq!(r.remotes(), 4);
        assert_eq!(r.lookup(&mac(399), 500), Some(addr(399)));
    }
}
