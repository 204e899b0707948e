//! `udp://[SRC_ADDR:]SRC_PORT->DST_ADDR:DST_PORT`: one Ethernet frame per UDP datagram, no
//! header (libvdeplug_udp), IPv4 or IPv6. Opened in the host namespaces.
//!
//! The Link is one UDP socket bound to the source and *connected* to the destination, so the
//! engine uses plain send/recv (multishot recv, sendmmsg without addresses). Differences from
//! the classic plugin, which binds the same way but sends with sendto and receives with
//! recvfrom on an unconnected socket:
//! - Datagrams from any address other than DST_ADDR:DST_PORT are discarded by the kernel (the
//!   classic plugin accepts frames from anyone who can reach SRC_PORT). Peers must therefore
//!   send from the port the other end names as its destination, which both vdens-fast and the
//!   classic plugin do (each sends from its bound SRC_PORT).
//! - A connected UDP socket learns about ICMP errors: when DST_PORT is closed (the peer is not
//!   running yet) and a frame is sent, the kernel stores ECONNREFUSED on the socket and the
//!   next receive returns it (once). The engines take such errors as transient
//!   (`engine::port::is_transient_receive_error`) and keep receiving, so either end may start
//!   first (tests/transport_udp.rs `peer_started_late_is_reached`).
//!
//! The destination is the first address getaddrinfo gives; the source is resolved in the same
//! family (the wildcard address of that family when SRC_ADDR is omitted), as libvdeplug does.

use super::{Framing, Link, OpenError};
use crate::vnl::UdpSpec;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

fn resolve(vnl: &str, what: &'static str, host: &str, port: u16) -> Result<Vec<SocketAddr>, OpenError> {
    let host_trim = host.trim_start_matches('[').trim_end_matches(']');
    match (host_trim, port).to_socket_addrs() {
        Ok(it) => {
            let v: Vec<SocketAddr> = it.collect();
            if v.is_empty() {
                return Err(OpenError::protocol(
                    vnl,
                    what,
                    format!("'{host}' has no address"),
                    Some("give an IPv4/IPv6 address or a resolvable host name".into()),
                ));
            }
            Ok(v)
        }
        Err(e) => Err(OpenError::protocol(
            vnl,
            what,
            format!(
                "cannot resolve '{host}': {}",
                e.to_string()
                    .trim_start_matches("failed to lookup address information: ")
            ),
            Some("give an IPv4/IPv6 address or a resolvable host name".into()),
        )),
    }
}

pub fn open(vnl: &str, spec: &UdpSpec) -> Result<Link, OpenError> {
    let dst = resolve(vnl, "resolving the destination", &spec.dst_addr, spec.dst_port)?[0];
    let src = match &spec.src_addr {
        None => SocketAddr::new(
            if dst.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            },
            spec.src_port,
        ),
        Some(h) => {
            let all = resolve(vnl, "resolving the source", h, spec.src_port)?;
            let Some(a) = all.iter().find(|a| a.is_ipv4() == dst.is_ipv4()) else {
                let fam = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
                return Err(OpenError::protocol(
                    vnl,
                    "resolving the source",
                    format!(
                        "'{h}' has no {} address, and the destination {dst} is {}",
                        fam(dst.is_ipv4()),
                        fam(dst.is_ipv4())
                    ),
                    Some("use addresses of one family on both sides of '->'".into()),
                ));
            };
            *a
        }
    };
    let sock = UdpSocket::bind(src).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EADDRINUSE) => format!(
                "UDP port {} is in use on {}: stop the program holding it or choose another source port",
                src.port(),
                src.ip()
            ),
            Some(libc::EADDRNOTAVAIL) => {
                format!("{} is not an address of this host", src.ip())
            }
            Some(libc::EACCES) => format!("binding UDP port {} needs privileges", src.port()),
            _ => format!("binding {src}"),
        };
        OpenError::io(vnl, "binding the UDP socket", e, Some(hint))
    })?;
    sock.connect(dst).map_err(|e: io::Error| {
        let hint = match e.raw_os_error() {
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => {
                format!("no route to {} from this network namespace", dst.ip())
            }
            _ => format!("connecting to {dst}"),
        };
        OpenError::io(vnl, "connecting the UDP socket", e, Some(hint))
    })?;
    Ok(Link::single(vnl, Framing::Datagram, sock.into()))
}
