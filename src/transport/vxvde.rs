//! `vxvde://[GROUP][/OPTION...]`: VDE's distributed Ethernet (libvdeplug_vxvde 4.0.1), with no
//! switch process: every endpoint joins a multicast group and learns where the others are.
//!
//! What goes on the wire, as the classic plugin does it:
//! - two UDP sockets per endpoint: one bound to the group address itself and its port
//!   (default 14789), SO_REUSEADDR so several endpoints on one host share it, joined to the
//!   group; and a unicast one bound to `bind=` (default the wildcard) at a port the kernel
//!   picks. Everything is sent from the unicast socket, so peers learn that socket;
//! - the header is VXLAN's (flags 0x08, 24-bit VNI), and a datagram is taken only when all
//!   its eight header bytes equal ours;
//! - `vni=` and `grp=` are group names or numbers (an empty value: our effective gid);
//!   `grp=` also writes the group id into the last three bytes of the multicast address, and
//!   is the VNI unless `vni=` is given (default 1);
//! - `ttl=` (default 1) is IPv4's unicast and multicast TTL (IP_TTL and IP_MULTICAST_TTL), or
//!   IPv6's multicast hops, on the unicast socket; `rcvbuf=` is its SO_RCVBUF;
//!   `if=` is the interface of the membership and of multicast sends;
//! - multicast loop stays on (other endpoints on this host must hear us), so our own
//!   multicast comes back: a datagram on the group socket from a local address and our
//!   unicast port is ours and is dropped;
//! - the learnt remote of a source MAC is the sender's address as it is (its unicast
//!   socket); a datagram of our header and no frame means that sender leaves: every MAC
//!   learnt behind it is forgotten. We send one to the group when the link closes.
//!
//! Where the classic plugin silently falls back (a `vni=` group that does not exist becomes
//! the default VNI), vdens-fast refuses with a one-line error.

use super::vxlan::{
    bind_hint, group_addrs, hosted, ifindex, join, multicast_if, overlay, rcvbuf, step, wildcard,
};
use super::{Link, OpenError};
use crate::sys::inet;
use crate::vnl::overlay::{Gid, OverlaySpec, STD_VNI};
use crate::wire::vxlan::MAX_VNI;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};

/// vde_grnam2gid, refusing what it would silently map to "no value".
fn resolve_gid(vnl: &str, key: &str, g: &Gid) -> Result<u32, OpenError> {
    let gid = match g {
        Gid::Egid => nix::unistd::getegid().as_raw(),
        Gid::Number(n) => *n,
        Gid::Name(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(gr)) => gr.gid.as_raw(),
            _ => {
                return Err(OpenError::Invalid {
                    vnl: vnl.to_string(),
                    why: format!(
                        "vxvde:// {key} '{name}' is neither a number nor a group of this system (give a number, e.g. {key}=42, or a group name getent group lists)"
                    ),
                })
            }
        },
    };
    if gid > MAX_VNI {
        return Err(OpenError::Invalid {
            vnl: vnl.to_string(),
            why: format!(
                "vxvde:// {key} is group id {gid}, more than 24 bits (VNIs are 0 to 16777215: give a number)"
            ),
        });
    }
    Ok(gid)
}

/// grpsetaddr: the group id in the last three bytes of the address.
fn with_grp(a: SocketAddr, gid: u32) -> SocketAddr {
    let b = gid.to_be_bytes();
    let ip = match a.ip() {
        IpAddr::V4(v4) => {
            let mut o = v4.octets();
            o[1..].copy_from_slice(&b[1..]);
            IpAddr::from(o)
        }
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[13..].copy_from_slice(&b[1..]);
            IpAddr::from(o)
        }
    };
    SocketAddr::new(ip, a.port())
}

/// The local address of the unicast socket: `bind=` (resolved in the group's family) or the
/// wildcard, at a port the kernel picks.
fn bind_addr(vnl: &str, spec: &OverlaySpec, group: &SocketAddr) -> Result<SocketAddr, OpenError> {
    let Some(b) = &spec.bind else {
        return Ok(wildcard(group, 0));
    };
    let host = b.trim_start_matches('[').trim_end_matches(']');
    let found = (host, 0u16)
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.find(|a| a.is_ipv4() == group.is_ipv4()));
    found.ok_or_else(|| {
        OpenError::protocol(
            vnl,
            "resolving the bind address",
            format!(
                "'{b}' has no {} address",
                if group.is_ipv4() { "IPv4" } else { "IPv6" }
            ),
            Some(format!(
                "give an address of this host in the group's family ({})",
                group.ip()
            )),
        )
    })
}

/// The TTL (IPv4: unicast and multicast) or multicast hops (IPv6) of the unicast socket.
fn ttl(vnl: &str, u: BorrowedFd<'_>, v6: bool, ttl: i32) -> Result<(), OpenError> {
    const HINT: &str = "check ttl=: 0 to 255";
    if v6 {
        let r = inet::set_int(u, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, ttl);
        return step(vnl, "setting the multicast hops", HINT, r);
    }
    step(
        vnl,
        "setting the TTL",
        HINT,
        inet::set_int(u, libc::IPPROTO_IP, libc::IP_TTL, ttl),
    )?;
    let r = inet::set_int(u, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, ttl);
    step(vnl, "setting the multicast TTL", HINT, r)
}

pub fn open(vnl: &str, spec: &OverlaySpec) -> Result<Link, OpenError> {
    let grp = spec
        .grp
        .as_ref()
        .map(|g| resolve_gid(vnl, "grp", g))
        .transpose()?;
    let vni = match &spec.vni {
        Some(g) => resolve_gid(vnl, "vni", g)?,
        None => grp.unwrap_or(STD_VNI),
    };
    let groups = group_addrs(vnl, spec)?;
    let ifindex = ifindex(vnl, spec)?;
    let mut last_err = None;
    for g in groups {
        let g = match grp {
            Some(gid) => with_grp(g, gid),
            None => g,
        };
        let v6 = g.is_ipv6();
        let sock = |what| inet::udp_socket(v6).map_err(|e| OpenError::io(vnl, what, e, None));
        let multi = sock("creating the multicast socket")?;
        let uni = sock("creating the unicast socket")?;
        let (m, u) = (multi.as_fd(), uni.as_fd());
        rcvbuf(vnl, u, spec)?;
        ttl(vnl, u, v6, spec.ttl as i32)?;
        step(
            vnl,
            "sharing the group port",
            "SO_REUSEADDR",
            inet::set_int(m, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1),
        )?;
        if !v6 {
            // As the classic plugin: the local address for each sender tells our own
            // looped-back multicast apart.
            let pktinfo = inet::set_int(m, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
            step(vnl, "asking for packet information", "IP_PKTINFO", pktinfo)?;
        }
        if let Err(e) = inet::bind(m, &g) {
            let hint = bind_hint(&g, &e, "vxvde");
            last_err = Some(OpenError::io(vnl, "binding the multicast socket", e, Some(hint)));
            continue;
        }
        join(vnl, m, &g, ifindex)?;
        let local = bind_addr(vnl, spec, &g)?;
        if let Err(e) = inet::bind(u, &local) {
            let hint = bind_hint(&local, &e, "vxvde");
            last_err = Some(OpenError::io(vnl, "binding the unicast socket", e, Some(hint)));
            continue;
        }
        multicast_if(vnl, u, v6, ifindex)?;
        let uniport = inet::local_addr(u)
            .map_err(|e| OpenError::io(vnl, "reading the unicast port", e, None))?
            .port();
        let ov = overlay(vnl, true, multi, Some(uni), g, vni, spec, uniport);
        return Ok(hosted(vnl, ov));
    }
    Err(last_err.unwrap_or_else(|| {
        OpenError::protocol(
            vnl,
            "opening the vxvde sockets",
            "no usable group address".into(),
            None,
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grp_sets_the_last_three_bytes() {
        let a: SocketAddr = "239.0.0.1:14789".parse().unwrap();
        assert_eq!(with_grp(a, 300), "239.0.1.44:14789".parse().unwrap());
        assert_eq!(with_grp(a, 0x123456), "239.18.52.86:14789".parse().unwrap());
        let a: SocketAddr = "[ff05:56de::1]:14789".parse().unwrap();
        assert_eq!(with_grp(a, 0x010203), "[ff05:56de::1:203]:14789".parse().unwrap());
    }

    #[test]
    fn gids() {
        assert_eq!(resolve_gid("v", "vni", &Gid::Number(7)).unwrap(), 7);
        assert_eq!(
            resolve_gid("v", "vni", &Gid::Egid).unwrap(),
            nix::unistd::getegid().as_raw()
        );
        assert_eq!(resolve_gid("v", "grp", &Gid::Name("root".into())).unwrap(), 0);
        let e = resolve_gid("v", "vni", &Gid::Name("no-such-group-vdf".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'no-such-group-vdf' is neither a number nor a group"),
            "{e}"
        );
    }
}
