//! In-process switch and hub: the forwarding decision per frame (pure), on top of the MAC
//! learning table. The engine asks [`Forwarder::decide`] for each frame a multi-port node
//! receives.

pub mod join;
pub mod remote;
pub mod server;
pub mod table;

use crate::wire::ether::{is_group, Frame};
pub use table::{MacTable, PortId};

/// Where a frame received on a port goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// To one port.
    Unicast(PortId),
    /// To every port but the one it came from.
    Flood,
    /// Nowhere (its destination is behind the port it came from, or it is malformed).
    Drop,
}

/// The forwarding logic of a switch (learning) or a hub (flooding).
pub enum Forwarder {
    Switch(MacTable),
    Hub,
}

impl Forwarder {
    /// vdeplug4's defaults: hash size 256, entries expire after 120 s.
    pub fn switch_default(seed: u64) -> Forwarder {
        Forwarder::Switch(MacTable::new(256, 120, seed))
    }

    /// Decides the fate of `frame`, received on `port` at `now` (seconds), learning its source.
    pub fn decide(&mut self, port: PortId, frame: &[u8], now: u64) -> Decision {
        let Ok(f) = Frame::new_checked(frame) else {
            return Decision::Drop;
        };
        match self {
            Forwarder::Hub => Decision::Flood,
            Forwarder::Switch(table) => {
                let vlan = f.vlan();
                let src = f.src();
                if !is_group(&src) {
                    table.learn(&src, vlan, port, now);
                }
                let dst = f.dst();
                if is_group(&dst) {
                    return Decision::Flood;
                }
                match table.lookup(&dst, vlan, now) {
                    Some(p) if p == port => Decision::Drop,
                    Some(p) => Decision::Unicast(p),
                    None => Decision::Flood,
                }
            }
        }
    }

    /// A port left: forget what was learnt on it.
    pub fn port_closed(&mut self, port: PortId) {
        if let Forwarder::Switch(t) = self {
            t.forget_port(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(dst: u8, src: u8, vlan: Option<u16>) -> Vec<u8> {
        let mut v = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src];
        if let Some(id) = vlan {
            v.extend([0x81, 0x00]);
            v.extend(id.to_be_bytes());
        }
        v.extend([0x08, 0x00, 0x45, 0]);
        v
    }

    #[test]
    fn learning_switch() {
        let mut s = Forwarder::switch_default(1);
        assert_eq!(
            s.decide(1, &f(0xb, 0xa, None), 0),
            Decision::Flood,
            "unknown destination"
        );
        assert_eq!(
            s.decide(2, &f(0xa, 0xb, None), 0),
            Decision::Unicast(1),
            "learnt from the first frame"
        );
        assert_eq!(
            s.decide(1, &f(0xb, 0xa, None), 0),
            Decision::Unicast(2),
            "a third port is not involved"
        );
        assert_eq!(s.decide(3, &f(0xa, 0xc, None), 0), Decision::Unicast(1));
        assert_eq!(
            s.decide(1, &f(0xa, 0xd, None), 0),
            Decision::Drop,
            "destination behind the ingress port"
        );
        let mut bcast = f(0, 0xa, None);
        bcast[..6].copy_from_slice(&[0xff; 6]);
        assert_eq!(s.decide(1, &bcast, 0), Decision::Flood);
        s.port_closed(2);
        assert_eq!(
            s.decide(1, &f(0xb, 0xa, None), 0),
            Decision::Flood,
            "forgotten with its port"
        );
    }

    #[test]
    fn vlans_are_separate() {
        let mut s = Forwarder::switch_default(0);
        s.decide(1, &f(0xff, 0xa, Some(10)), 0);
        assert_eq!(s.decide(2, &f(0xa, 0xb, Some(10)), 0), Decision::Unicast(1));
        assert_eq!(
            s.decide(2, &f(0xa, 0xb, Some(20)), 0),
            Decision::Flood,
            "not learnt on VLAN 20"
        );
    }

    #[test]
    fn hub_floods_and_runts_drop() {
        let mut h = Forwarder::Hub;
        assert_eq!(h.decide(1, &f(0xb, 0xa, None), 0), Decision::Flood);
        assert_eq!(h.decide(1, &[0u8; 10], 0), Decision::Drop);
    }
}
