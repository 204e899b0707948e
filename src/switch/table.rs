//! The MAC learning table of the switch: (MAC, VLAN) -> port, with aging.
//!
//! Set-associative: a key hashes to a bucket of [`WAYS`] slots scanned linearly (one or two cache
//! lines), so a lookup costs a hash and a short scan, nothing is allocated after construction, and
//! two addresses that collide do not evict each other the way a direct-mapped table does (which
//! would turn their unicast into floods). A full bucket evicts its stalest entry.

/// Slots per bucket.
pub const WAYS: usize = 8;

/// A port number of the switch.
pub type PortId = u16;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// MAC (48 bits) | VLAN (12 bits) << 48 | 1 << 63 when the slot is in use.
    key: u64,
    port: PortId,
    /// Seconds (any monotonic clock) when last seen as a source.
    seen: u64,
}

const USED: u64 = 1 << 63;

fn key(mac: &[u8; 6], vlan: u16) -> u64 {
    let mut k = 0u64;
    for &b in mac {
        k = (k << 8) | b as u64;
    }
    k | ((vlan as u64 & 0x0fff) << 48) | USED
}

/// The learning table.
pub struct MacTable {
    slots: Box<[Slot]>,
    bucket_mask: usize,
    seed: u64,
    expire: u64,
}

impl MacTable {
    /// A table of at least `entries` slots (rounded up to whole power-of-two buckets) whose entries
    /// expire `expire_secs` after they were last seen; `seed` keys the hash (vdeplug4's `hashseed`).
    pub fn new(entries: usize, expire_secs: u64, seed: u64) -> MacTable {
        let buckets = entries.div_ceil(WAYS).max(1).next_power_of_two();
        MacTable {
            slots: vec![Slot::default(); buckets * WAYS].into_boxed_slice(),
            bucket_mask: buckets - 1,
            seed,
            expire: expire_secs,
        }
    }

    /// How many entries fit.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn bucket(&self, k: u64) -> &[Slot] {
        let b = self.index(k);
        &self.slots[b * WAYS..(b + 1) * WAYS]
    }

    fn index(&self, k: u64) -> usize {
        // A 64-bit finaliser (murmur3's fmix64) over the key and the seed.
        let mut h = k ^ self.seed;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h as usize & self.bucket_mask
    }

    fn fresh(&self, s: &Slot, now: u64) -> bool {
        s.key & USED != 0 && now.saturating_sub(s.seen) < self.expire
    }

    /// The port where `mac` on `vlan` was last seen, if not expired.
    pub fn lookup(&self, mac: &[u8; 6], vlan: u16, now: u64) -> Option<PortId> {
        let k = key(mac, vlan);
        self.bucket(k)
            .iter()
            .find(|s| s.key == k && self.fresh(s, now))
            .map(|s| s.port)
    }

    /// Records that `mac` on `vlan` is behind `port` (a frame from it arrived there).
    pub fn learn(&mut self, mac: &[u8; 6], vlan: u16, port: PortId, now: u64) {
        let k = key(mac, vlan);
        let b = self.index(k);
        let expire = self.expire;
        let bucket = &mut self.slots[b * WAYS..(b + 1) * WAYS];
        if let Some(s) = bucket.iter_mut().find(|s| s.key == k) {
            s.port = port;
            s.seen = now;
            return;
        }
        // A free or expired slot, else the stalest one.
        let victim = bucket
            .iter()
            .position(|s| s.key & USED == 0 || now.saturating_sub(s.seen) >= expire)
            .unwrap_or_else(|| {
                let mut best = 0;
                for (i, s) in bucket.iter().enumerate() {
                    if s.seen < bucket[best].seen {
                        best = i;
                    }
                }
                best
            });
        bucket[victim] = Slot {
            key: k,
            port,
            seen: now,
        };
    }

    /// Forgets every address learnt on `port` (the port was closed).
    pub fn forget_port(&mut self, port: PortId) {
        for s in self.slots.iter_mut().filter(|s| s.port == port) {
            *s = Slot::default();
        }
    }

    /// Entries in use and not expired (for stats and tests).
    pub fn live(&self, now: u64) -> usize {
        self.slots.iter().filter(|s| self.fresh(s, now)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u32) -> [u8; 6] {
        let b = i.to_be_bytes();
        [2, 0, b[0], b[1], b[2], b[3]]
    }

    #[test]
    fn learn_lookup_and_move() {
        let mut t = MacTable::new(256, 120, 0);
        assert_eq!(t.lookup(&mac(1), 0, 0), None);
        t.learn(&mac(1), 0, 3, 10);
        assert_eq!(t.lookup(&mac(1), 0, 10), Some(3));
        // The same MAC on another VLAN is another entry.
        assert_eq!(t.lookup(&mac(1), 5, 10), None);
        t.learn(&mac(1), 5, 4, 10);
        assert_eq!(t.lookup(&mac(1), 5, 10), Some(4));
        assert_eq!(t.lookup(&mac(1), 0, 10), Some(3));
        // A station that moves is found on its new port.
        t.learn(&mac(1), 0, 7, 11);
        assert_eq!(t.lookup(&mac(1), 0, 11), Some(7));
    }

    #[test]
    fn aging() {
        let mut t = MacTable::new(16, 120, 0);
        t.learn(&mac(9), 0, 1, 100);
        assert_eq!(t.lookup(&mac(9), 0, 219), Some(1));
        assert_eq!(t.lookup(&mac(9), 0, 220), None);
        assert_eq!(t.live(220), 0);
    }

    #[test]
    fn forget_port() {
        let mut t = MacTable::new(64, 120, 0);
        for i in 0..10 {
            t.learn(&mac(i), 0, (i % 2) as PortId + 1, 0);
        }
        t.forget_port(1);
        for i in 0..10 {
            let want = if i % 2 == 0 { None } else { Some(2) };
            assert_eq!(t.lookup(&mac(i), 0, 0), want, "{i}");
        }
    }

    #[test]
    fn full_table_keeps_working_and_evicts_the_stalest() {
        let mut t = MacTable::new(64, 1000, 42);
        let n = t.capacity() as u32 * 4;
        for i in 0..n {
            t.learn(&mac(i), 0, (i % 100) as PortId, i as u64);
        }
        assert!(t.live(n as u64) <= t.capacity());
        // The most recent addresses survive.
        let recent = (n - 8..n)
            .filter(|&i| t.lookup(&mac(i), 0, n as u64).is_some())
            .count();
        assert_eq!(recent, 8);
    }

    #[test]
    fn few_collisions_at_moderate_load() {
        // 200 stations in a 256-entry table: a direct-mapped table (vdeplug4's) keeps about
        // 256 * (1 - e^(-200/256)) = 139 of them; 8-way buckets keep nearly all.
        let mut t = MacTable::new(256, 120, 7);
        for i in 0..200 {
            t.learn(&mac(i * 7919), 0, 1, 0);
        }
        let found = (0..200)
            .filter(|&i| t.lookup(&mac(i * 7919), 0, 0).is_some())
            .count();
        assert!(found >= 180, "{found} of 200 resident");
    }
}
