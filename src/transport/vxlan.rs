//! `vxlan://[GROUP][/OPTION...]`: Ethernet over VXLAN (RFC 7348), as libvdeplug_vxlan 4.0.1
//! speaks it, and interoperable with a Linux kernel vxlan device.
//!
//! Opening (in the host namespaces) creates one UDP socket bound to the wildcard address and
//! the port (default 4789) and joined to the group (default 239.0.0.1, or ff05:56de::1 with
//! `/v6`), with the plugin's socket options: multicast TTL/hops from `ttl=` (default 1),
//! multicast loop off, `rcvbuf=` as SO_RCVBUF, `if=` as the membership's and multicast
//! sending interface. The link is hosted ([`Hosted::Overlay`]): the engine runs it as a node
//! with the tap, because each frame needs its own destination (src/engine/overlay.rs):
//! - sending: the 8-byte header (flags 0x08, VNI) then the frame, to the address learnt for
//!   the destination MAC, else (group MACs, unknown or expired ones) to the group;
//! - receiving: on the same socket, multicast and unicast alike. A Linux vxlan device answers
//!   known destinations by unicast to the address it learnt, from a source port of its own
//!   choosing (a hash of the inner flow), so the learnt remote is the sender's address with
//!   the group port, where every VXLAN endpoint listens. Datagrams whose header lacks the I
//!   flag or carries another VNI are dropped and counted (drop_framing). The classic plugin
//!   reads senders with a zero address length, learns garbage and then fails every unicast
//!   with EDESTADDRREQ, so a classic peer only works with `hashsize=0` (always multicast).
//!
//! The same [`Overlay`] describes vxvde:// links (src/transport/vxvde.rs).

use super::{Hosted, Link, OpenError};
use crate::sys::inet;
use crate::vnl::overlay::{Family, Group, OverlaySpec};
use crate::wire::vxlan;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// An open vxlan:// or vxvde:// network: its sockets and what the engine needs to run it.
pub struct Overlay {
    /// The VNL, for messages.
    pub vnl: String,
    /// vxvde:// (else vxlan://).
    pub vxvde: bool,
    /// Joined to the group: receives multicast (vxlan: and unicast; vxlan also sends on it).
    pub multi: OwnedFd,
    /// vxvde: the socket every datagram leaves from, on a port of its own where peers send
    /// their unicast.
    pub uni: Option<OwnedFd>,
    /// Where frames for group MACs and unknown destinations go.
    pub group: SocketAddr,
    pub vni: u32,
    /// MAC learning table size (0: no learning) and entry lifetime in seconds.
    pub hashsize: usize,
    pub expire: u64,
    /// The port our datagrams leave from: a datagram from a local address and this port is
    /// our own multicast looped back.
    pub self_port: u16,
    /// The addresses of the namespace the sockets live in, when they were opened. The data
    /// plane runs in vdens-fast's own network namespace, where these are not visible; IPv4
    /// needs them only when IP_PKTINFO says nothing, IPv6 always.
    pub locals: Vec<IpAddr>,
    /// vxvde: say goodbye to the group when dropped. The process that runs the network drops
    /// it (in clone mode that is the child that got it across fork); the other one calls
    /// [`Overlay::release`].
    farewell: bool,
}

impl Overlay {
    /// The header of every datagram we send.
    pub fn header(&self) -> [u8; vxlan::HEADER_LEN] {
        vxlan::encode(self.vni)
    }

    /// Whether a received header belongs to our network. vxlan: the I flag and our VNI (other
    /// bits ignored, RFC 7348); vxvde: all eight bytes equal ours, as libvdeplug_vxvde checks.
    pub fn accepts(&self, h: &[u8; vxlan::HEADER_LEN]) -> bool {
        if self.vxvde {
            *h == self.header()
        } else {
            vxlan::vni_of(h) == Some(self.vni)
        }
    }

    /// The address to learn for a datagram's sender. vxlan: its IP at the group port (see the
    /// module comment); vxvde: the sender as it is, its unicast socket.
    pub fn remote_of(&self, from: SocketAddr) -> SocketAddr {
        if self.vxvde {
            from
        } else {
            SocketAddr::new(from.ip(), self.group.port())
        }
    }

    /// Whether a datagram that came from `from` is our own multicast looped back: it left our
    /// sending port at an address of this host. `spec_dst` is IP_PKTINFO's local address for
    /// the sender (IPv4): the sender's own address exactly when the sender is this host, as
    /// libvdeplug_vxvde checks it; otherwise the addresses known at open time are used.
    pub fn is_own(&self, from: &SocketAddr, spec_dst: Option<IpAddr>) -> bool {
        from.port() == self.self_port
            && match spec_dst {
                Some(d) => d == from.ip(),
                None => self.locals.contains(&from.ip()),
            }
    }

    /// The socket datagrams are sent from.
    pub fn tx_fd(&self) -> BorrowedFd<'_> {
        self.uni.as_ref().unwrap_or(&self.multi).as_fd()
    }

    /// Forgets this copy without saying goodbye (another process runs the network now).
    pub fn release(mut self) {
        self.farewell = false;
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // libvdeplug_vxvde's close: a header with no frame tells the peers to forget every
        // address learnt behind our unicast socket.
        if self.farewell && self.vxvde {
            let _ = inet::send_to(self.tx_fd(), &self.header(), &[], &self.group);
        }
    }
}

impl fmt::Debug for Overlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overlay")
            .field("vnl", &self.vnl)
            .field("group", &self.group)
            .field("vni", &self.vni)
            .field("multi", &self.multi)
            .field("uni", &self.uni)
            .finish()
    }
}

fn scheme(spec: &OverlaySpec) -> &'static str {
    if spec.vxvde {
        "vxvde"
    } else {
        "vxlan"
    }
}

/// The group addresses to try, in order (getaddrinfo's for a host name), with the port.
pub(crate) fn group_addrs(vnl: &str, spec: &OverlaySpec) -> Result<Vec<SocketAddr>, OpenError> {
    let fits = |ip: &IpAddr| match spec.family {
        Family::Any => true,
        Family::V4 => ip.is_ipv4(),
        Family::V6 => ip.is_ipv6(),
    };
    let all: Vec<SocketAddr> = match &spec.group {
        Group::Ip(ip) => vec![SocketAddr::new(*ip, spec.port)],
        Group::Name(n) => match (n.as_str(), spec.port).to_socket_addrs() {
            Ok(it) => it.filter(|a| fits(&a.ip())).collect(),
            Err(e) => {
                return Err(OpenError::protocol(
                    vnl,
                    "resolving the group",
                    format!(
                        "cannot resolve '{n}': {}",
                        e.to_string()
                            .trim_start_matches("failed to lookup address information: ")
                    ),
                    Some("give a multicast address such as 239.0.0.1 or ff05:56de::1".into()),
                ))
            }
        },
    };
    let mcast: Vec<SocketAddr> = all.iter().copied().filter(|a| a.ip().is_multicast()).collect();
    if mcast.is_empty() {
        let why = match all.first() {
            Some(a) => format!("'{}' is {}, not a multicast address", group_name(spec), a.ip()),
            None => format!("'{}' has no address of the family asked for", group_name(spec)),
        };
        return Err(OpenError::protocol(
            vnl,
            "resolving the group",
            why,
            Some("groups are in 224.0.0.0/4 or ff00::/8, e.g. 239.0.0.1 or ff05:56de::1".into()),
        ));
    }
    Ok(mcast)
}

fn group_name(spec: &OverlaySpec) -> String {
    match &spec.group {
        Group::Ip(ip) => ip.to_string(),
        Group::Name(n) => n.clone(),
    }
}

/// The interface index of `if=`, or 0.
pub(crate) fn ifindex(vnl: &str, spec: &OverlaySpec) -> Result<u32, OpenError> {
    let Some(name) = &spec.ifname else { return Ok(0) };
    nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| {
        OpenError::io(
            vnl,
            "finding the interface",
            std::io::Error::from(e),
            Some(format!(
                "no interface '{name}' in this network namespace: name one `ip link` lists"
            )),
        )
    })
}

/// A setup step on a socket, with the error it maps to.
pub(crate) fn step(
    vnl: &str,
    what: &'static str,
    hint: &str,
    r: std::io::Result<()>,
) -> Result<(), OpenError> {
    r.map_err(|e| OpenError::io(vnl, what, e, Some(hint.to_string())))
}

/// The wildcard address of the group's family at `port`.
pub(crate) fn wildcard(group: &SocketAddr, port: u16) -> SocketAddr {
    if group.is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
    } else {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
    }
}

/// Joins `fd` to `group` (on `ifindex`, 0 = by route).
pub(crate) fn join(vnl: &str, fd: BorrowedFd<'_>, group: &SocketAddr, ifindex: u32) -> Result<(), OpenError> {
    let r = match group.ip() {
        IpAddr::V4(g) => inet::join_v4(fd, g, ifindex),
        IpAddr::V6(g) => inet::join_v6(fd, g, ifindex),
    };
    r.map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::ENODEV) => format!(
                "no route for {} in this network namespace: add one (ip route add 224.0.0.0/4 dev IF) or name the interface with /if=IF",
                group.ip()
            ),
            _ => format!("joining {}", group.ip()),
        };
        OpenError::io(vnl, "joining the multicast group", e, Some(hint))
    })
}

/// The hint for a failed bind.
pub(crate) fn bind_hint(a: &SocketAddr, e: &std::io::Error, scheme: &str) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => format!(
            "UDP port {} is in use in this network namespace (another {scheme}:// link or a kernel vxlan device on it?): stop it or choose another /port=",
            a.port()
        ),
        Some(libc::EADDRNOTAVAIL) => format!("{} is not an address of this host", a.ip()),
        Some(libc::EACCES) => format!("binding UDP port {} needs privileges", a.port()),
        _ => format!("binding {a}"),
    }
}

/// Sets the receive buffer `rcvbuf=` asks for, if it does.
pub(crate) fn rcvbuf(vnl: &str, fd: BorrowedFd<'_>, spec: &OverlaySpec) -> Result<(), OpenError> {
    let Some(b) = spec.rcvbuf else {
        return Ok(());
    };
    step(
        vnl,
        "setting the receive buffer",
        "check rcvbuf=: a size in bytes",
        inet::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, b as i32),
    )
}

/// Sends multicast through interface `ifindex` (`if=`; 0: the system's choice).
pub(crate) fn multicast_if(vnl: &str, fd: BorrowedFd<'_>, v6: bool, ifindex: u32) -> Result<(), OpenError> {
    if ifindex == 0 {
        return Ok(());
    }
    let r = if v6 {
        inet::multicast_if_v6(fd, ifindex)
    } else {
        inet::multicast_if_v4(fd, ifindex)
    };
    step(
        vnl,
        "choosing the multicast interface",
        "check if=: the interface multicast goes through",
        r,
    )
}

/// Makes the link that hands `ov` to the engine.
pub(crate) fn hosted(vnl: &str, ov: Overlay) -> Link {
    let mut link = Link::null(vnl);
    link.node = Some(Hosted::Overlay(Box::new(ov)));
    link
}

/// Opens `vxlan://...` as libvdeplug_vxlan does: the first group address whose port can be
/// bound wins.
pub fn open(vnl: &str, spec: &OverlaySpec) -> Result<Link, OpenError> {
    let groups = group_addrs(vnl, spec)?;
    let ifindex = ifindex(vnl, spec)?;
    let vni = match spec.vni {
        Some(crate::vnl::overlay::Gid::Number(n)) => n,
        _ => crate::vnl::overlay::STD_VNI,
    };
    let mut last_err = None;
    for g in groups {
        let v6 = g.is_ipv6();
        let fd = inet::udp_socket(v6).map_err(|e| OpenError::io(vnl, "creating the UDP socket", e, None))?;
        let s = fd.as_fd();
        rcvbuf(vnl, s, spec)?;
        let ttl = spec.ttl as i32;
        let (lvl, ttl_opt, loop_opt) = if v6 {
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_HOPS,
                libc::IPV6_MULTICAST_LOOP,
            )
        } else {
            (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, libc::IP_MULTICAST_LOOP)
        };
        step(
            vnl,
            "setting the multicast TTL",
            "check ttl=: 0 to 255",
            inet::set_int(s, lvl, ttl_opt, ttl),
        )?;
        // Our own multicast must not come back to us (nor to anyone else on this host: only
        // one vxlan endpoint per port and namespace can exist anyway).
        step(
            vnl,
            "turning multicast loop off",
            "IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP",
            inet::set_int(s, lvl, loop_opt, 0),
        )?;
        if !v6 {
            let pktinfo = inet::set_int(s, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
            step(vnl, "asking for packet information", "IP_PKTINFO", pktinfo)?;
        }
        let local = wildcard(&g, g.port());
        if let Err(e) = inet::bind(s, &local) {
            let hint = bind_hint(&local, &e, "vxlan");
            last_err = Some(OpenError::io(vnl, "binding the UDP socket", e, Some(hint)));
            continue;
        }
        join(vnl, s, &g, ifindex)?;
        multicast_if(vnl, s, v6, ifindex)?;
        let port = g.port();
        let ov = overlay(vnl, false, fd, None, g, vni, spec, port);
        return Ok(hosted(vnl, ov));
    }
    Err(last_err.unwrap_or_else(|| {
        OpenError::protocol(
            vnl,
            "opening the vxlan socket",
            format!("no usable address for {}", scheme(spec)),
            None,
        )
    }))
}

/// Builds an [`Overlay`] (for vxvde.rs, which sets the sockets up its own way).
#[allow(clippy::too_many_arguments)]
pub(crate) fn overlay(
    vnl: &str,
    vxvde: bool,
    multi: OwnedFd,
    uni: Option<OwnedFd>,
    group: SocketAddr,
    vni: u32,
    spec: &OverlaySpec,
    self_port: u16,
) -> Overlay {
    Overlay {
        vnl: vnl.to_string(),
        vxvde,
        multi,
        uni,
        group,
        vni,
        hashsize: spec.hashsize,
        expire: spec.expire,
        self_port,
        locals: inet::local_addresses(),
        farewell: vxvde,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An overlay on an unbound socket that never sends anything (no farewell).
    fn ov(vxvde: bool, vni: u32, self_port: u16, locals: &[&str]) -> Overlay {
        Overlay {
            vnl: "test".into(),
            vxvde,
            multi: inet::udp_socket(false).unwrap(),
            uni: None,
            group: "239.0.0.1:4789".parse().unwrap(),
            vni,
            hashsize: 16,
            expire: 10,
            self_port,
            locals: locals.iter().map(|a| a.parse().unwrap()).collect(),
            farewell: false,
        }
    }

    #[test]
    fn which_headers_are_ours() {
        let x = ov(false, 7, 4789, &[]);
        assert!(x.accepts(&vxlan::encode(7)));
        assert!(
            x.accepts(&[0x0c, 0xff, 0, 0, 0, 0, 7, 0xff]),
            "RFC 7348: other bits ignored"
        );
        assert!(!x.accepts(&vxlan::encode(8)));
        assert!(!x.accepts(&[0, 0, 0, 0, 0, 0, 7, 0]), "no I flag");
        let v = ov(true, 7, 40000, &[]);
        assert!(v.accepts(&vxlan::encode(7)));
        assert!(
            !v.accepts(&[0x0c, 0, 0, 0, 0, 0, 7, 0]),
            "vxvde wants all eight bytes"
        );
        assert!(!v.accepts(&[0x08, 0, 0, 0, 0, 0, 7, 1]));
    }

    #[test]
    fn learnt_remotes() {
        let from: SocketAddr = "192.0.2.9:51234".parse().unwrap();
        // vxlan: a kernel device sends from a port of its own but listens on the group port.
        assert_eq!(
            ov(false, 1, 4789, &[]).remote_of(from),
            "192.0.2.9:4789".parse().unwrap()
        );
        // vxvde: the peer's unicast socket, as it is.
        assert_eq!(ov(true, 1, 40000, &[]).remote_of(from), from);
    }

    #[test]
    fn own_looped_back_multicast() {
        let v = ov(true, 1, 40000, &["192.0.2.1", "fd00::1"]);
        let me: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let peer: SocketAddr = "192.0.2.2:40000".parse().unwrap();
        let me_ip = Some(me.ip());
        // IPv4 with IP_PKTINFO: the answer address equals the sender only for ourselves.
        assert!(v.is_own(&me, me_ip));
        assert!(!v.is_own(&peer, me_ip));
        assert!(
            !v.is_own(&"192.0.2.1:40001".parse().unwrap(), me_ip),
            "another port"
        );
        // Without it (IPv6): the addresses of the namespace the link was opened in.
        assert!(v.is_own(&"[fd00::1]:40000".parse().unwrap(), None));
        assert!(!v.is_own(&"[fd00::2]:40000".parse().unwrap(), None));
    }
}
