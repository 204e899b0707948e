//! Segmentation offload in userspace: a TCP super-frame read from a tap with IFF_VNET_HDR and
//! TSO enabled (up to 64 KiB, with a virtio-net header saying `gso_type`/`gso_size`) becomes
//! standard Ethernet frames of at most `gso_size` payload each, with every header and checksum
//! as the kernel's own TSO would write them (net/ipv4/tcp_offload.c `tcp_gso_segment`,
//! net/ipv4/af_inet.c `inet_gso_segment`): IPv4 id +1 per segment, TCP sequence advanced,
//! FIN/PSH only on the last segment, CWR only on the first, full IPv4 and TCP checksums.
//!
//! A frame without GSO but with NEEDS_CSUM (the tap's CHECKSUM_PARTIAL: UDP, ICMPv6, a small
//! TCP segment, anything) gets its checksum completed at `csum_start + csum_offset`.
//!
//! Handled: Ethernet, at most one 802.1Q tag, IPv4 with options or IPv6 without extension
//! headers, TCP with options; and UDP segmentation offload (USO, gso_type UDP_L4: datagrams of
//! `gso_size` payload, as `__udp_gso_segment` cuts them). UFO (gso_type UDP, IP fragments) is
//! refused with an error: Linux no longer produces it.

use super::csum;
use super::vnet::{self, VnetHdr};

pub const ETH_HLEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
const UDP_HLEN: usize = 8;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// Why a frame cannot be segmented or checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// The frame ends inside a header.
    Truncated { len: usize, need: usize },
    /// Not IPv4/IPv6 (after at most one VLAN tag).
    NotIp(u16),
    /// The IP version nibble disagrees with the EtherType.
    IpVersion(u8),
    /// IPv4 header length below 20 bytes.
    BadIpHeader(usize),
    /// IPv6 whose next header is not the expected protocol (an extension header, or another
    /// protocol).
    Ipv6NextHeader { want: u8, got: u8 },
    /// The IP protocol is not the expected one (TCP for TCP GSO, UDP for USO).
    Protocol { want: u8, got: u8 },
    /// A UDP length field that disagrees with the IP length.
    BadUdpLength { field: usize, ip: usize },
    /// A TCP data offset below 5 words.
    BadTcpHeader(usize),
    /// The IP length field disagrees with the frame (or is 0: an IPv6 jumbogram).
    BadIpLength { field: usize, frame: usize },
    /// A GSO frame with `gso_size` 0.
    ZeroGsoSize,
    /// `gso_type` says TCPv4 for an IPv6 packet or the other way round.
    GsoTypeMismatch(u8),
    /// A `gso_type` this module does not segment (UFO, USO, unknown).
    Unsupported(u8),
    /// `csum_start + csum_offset` leaves no room for a 16-bit checksum in the frame.
    CsumOutOfRange { start: u16, offset: u16, len: usize },
    /// A caller's buffer is too small for a segment.
    OutputTooSmall { need: usize, have: usize },
}

impl std::fmt::Display for GsoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use GsoError::*;
        match *self {
            Truncated { len, need } => {
                write!(f, "frame of {len} bytes ends inside its headers ({need} needed)")
            }
            NotIp(t) => write!(f, "EtherType {t:#06x} is not IPv4 or IPv6"),
            IpVersion(v) => write!(f, "IP version {v} disagrees with the EtherType"),
            BadIpHeader(n) => write!(f, "IPv4 header length {n} is below 20"),
            Ipv6NextHeader { want, got } => write!(
                f,
                "IPv6 next header {got} is not {} (extension headers are not segmented)",
                proto_name(want)
            ),
            Protocol { want, got } => {
                write!(f, "IP protocol {got} is not {}", proto_name(want))
            }
            BadUdpLength { field, ip } => write!(
                f,
                "UDP length field {field} disagrees with the {ip} bytes of IP payload"
            ),
            BadTcpHeader(n) => write!(f, "TCP header length {n} is below 20"),
            BadIpLength { field, frame } => write!(
                f,
                "IP length field {field} disagrees with the {frame} bytes that follow the IP header start"
            ),
            ZeroGsoSize => write!(f, "GSO frame with gso_size 0"),
            GsoTypeMismatch(t) => write!(f, "gso_type {t:#x} does not match the IP version"),
            Unsupported(t) => write!(
                f,
                "gso_type {t:#x} is not segmented (TCPv4, TCPv6 and UDP_L4 are; UFO is not)"
            ),
            CsumOutOfRange { start, offset, len } => write!(
                f,
                "checksum at {start}+{offset} lies outside the {len}-byte frame"
            ),
            OutputTooSmall { need, have } => {
                write!(f, "segment of {need} bytes does not fit the {have}-byte buffer")
            }
        }
    }
}

fn proto_name(p: u8) -> &'static str {
    if p == PROTO_UDP {
        "UDP"
    } else {
        "TCP"
    }
}

/// Where the headers of an Ethernet + IP + TCP (or UDP) frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the IP header (14, or 18 behind a VLAN tag).
    pub l3: usize,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
    /// Offset of the payload (= total header length).
    pub data: usize,
    /// End of the IP packet (frame bytes beyond it are Ethernet padding).
    pub end: usize,
    pub v6: bool,
    /// PROTO_TCP or PROTO_UDP.
    pub proto: u8,
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn need(f: &[u8], n: usize) -> Result<(), GsoError> {
    if f.len() < n {
        Err(GsoError::Truncated {
            len: f.len(),
            need: n,
        })
    } else {
        Ok(())
    }
}

/// The IP header offset and EtherType (after at most one 802.1Q tag).
pub fn l3_offset(f: &[u8]) -> Result<(usize, u16), GsoError> {
    need(f, ETH_HLEN)?;
    let t = be16(f, 12);
    if t == ETHERTYPE_VLAN {
        need(f, ETH_HLEN + 4)?;
        Ok((ETH_HLEN + 4, be16(f, 16)))
    } else {
        Ok((ETH_HLEN, t))
    }
}

impl Layout {
    /// Parses the headers of a TCP frame; afterwards every offset is inside `f` and
    /// `l3 < l4 < data <= end <= f.len()`.
    pub fn parse_tcp(f: &[u8]) -> Result<Layout, GsoError> {
        let (l3, l4, end, v6) = parse_ip(f, PROTO_TCP)?;
        if end < l4 + 20 {
            return Err(GsoError::Truncated {
                len: end,
                need: l4 + 20,
            });
        }
        let thl = (f[l4 + 12] >> 4) as usize * 4;
        if thl < 20 {
            return Err(GsoError::BadTcpHeader(thl));
        }
        if end < l4 + thl {
            return Err(GsoError::Truncated {
                len: end,
                need: l4 + thl,
            });
        }
        Ok(Layout {
            l3,
            l4,
            data: l4 + thl,
            end,
            v6,
            proto: PROTO_TCP,
        })
    }

    /// Parses the headers of a UDP frame, whose UDP length must match the IP length; the
    /// same guarantees as [`parse_tcp`](Self::parse_tcp).
    pub fn parse_udp(f: &[u8]) -> Result<Layout, GsoError> {
        let (l3, l4, end, v6) = parse_ip(f, PROTO_UDP)?;
        if end < l4 + UDP_HLEN {
            return Err(GsoError::Truncated {
                len: end,
                need: l4 + UDP_HLEN,
            });
        }
        let ulen = be16(f, l4 + 4) as usize;
        if ulen != end - l4 {
            return Err(GsoError::BadUdpLength {
                field: ulen,
                ip: end - l4,
            });
        }
        Ok(Layout {
            l3,
            l4,
            data: l4 + UDP_HLEN,
            end,
            v6,
            proto: PROTO_UDP,
        })
    }

    /// The pseudo-header sum for a segment of `l4_len` bytes (TCP/UDP header + payload) of
    /// frame `f`, which has this layout's headers.
    pub fn pseudo(&self, f: &[u8], l4_len: usize) -> u32 {
        let l3 = self.l3;
        if self.v6 {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&f[l3 + 8..l3 + 24]);
            d.copy_from_slice(&f[l3 + 24..l3 + 40]);
            csum::pseudo_v6(&s, &d, self.proto, l4_len as u32)
        } else {
            let mut s = [0u8; 4];
            let mut d = [0u8; 4];
            s.copy_from_slice(&f[l3 + 12..l3 + 16]);
            d.copy_from_slice(&f[l3 + 16..l3 + 20]);
            csum::pseudo_v4(&s, &d, self.proto, l4_len as u32)
        }
    }
}

/// The IP header of an Ethernet frame carrying `proto`: (l3, l4, end of the IP packet, v6).
fn parse_ip(f: &[u8], proto: u8) -> Result<(usize, usize, usize, bool), GsoError> {
    let (l3, et) = l3_offset(f)?;
    let (l4, end, v6) = match et {
        ETHERTYPE_IPV4 => {
            need(f, l3 + 20)?;
            if f[l3] >> 4 != 4 {
                return Err(GsoError::IpVersion(f[l3] >> 4));
            }
            let ihl = (f[l3] & 0x0f) as usize * 4;
            if ihl < 20 {
                return Err(GsoError::BadIpHeader(ihl));
            }
            need(f, l3 + ihl)?;
            if f[l3 + 9] != proto {
                return Err(GsoError::Protocol {
                    want: proto,
                    got: f[l3 + 9],
                });
            }
            let tot = be16(f, l3 + 2) as usize;
            if tot < ihl || l3 + tot > f.len() {
                return Err(GsoError::BadIpLength {
                    field: tot,
                    frame: f.len() - l3,
                });
            }
            (l3 + ihl, l3 + tot, false)
        }
        ETHERTYPE_IPV6 => {
            need(f, l3 + 40)?;
            if f[l3] >> 4 != 6 {
                return Err(GsoError::IpVersion(f[l3] >> 4));
            }
            if f[l3 + 6] != proto {
                return Err(GsoError::Ipv6NextHeader {
                    want: proto,
                    got: f[l3 + 6],
                });
            }
            let pl = be16(f, l3 + 4) as usize;
            if pl == 0 || l3 + 40 + pl > f.len() {
                return Err(GsoError::BadIpLength {
                    field: pl,
                    frame: f.len() - l3 - 40,
                });
            }
            (l3 + 40, l3 + 40 + pl, true)
        }
        t => return Err(GsoError::NotIp(t)),
    };
    Ok((l3, l4, end, v6))
}

/// A TCP (or USO UDP) super-frame split into segments on demand: the caller picks where each
/// one goes (a scratch buffer, a slot of a send slab), so nothing is allocated.
#[derive(Debug, Clone, Copy)]
pub struct Segmenter<'a> {
    pkt: &'a [u8],
    lay: Layout,
    mss: usize,
    count: usize,
}

impl<'a> Segmenter<'a> {
    /// Checks `hdr` (a TCPv4/TCPv6 gso_type, with or without ECN, or UDP_L4 for either IP
    /// version) against the headers of `pkt` (the Ethernet frame after the virtio-net header).
    pub fn new(hdr: &VnetHdr, pkt: &'a [u8]) -> Result<Segmenter<'a>, GsoError> {
        let kind = hdr.gso_kind();
        if kind != vnet::GSO_TCPV4 && kind != vnet::GSO_TCPV6 && kind != vnet::GSO_UDP_L4 {
            return Err(GsoError::Unsupported(hdr.gso_type));
        }
        if hdr.gso_size == 0 {
            return Err(GsoError::ZeroGsoSize);
        }
        let lay = if kind == vnet::GSO_UDP_L4 {
            Layout::parse_udp(pkt)?
        } else {
            let lay = Layout::parse_tcp(pkt)?;
            if lay.v6 != (kind == vnet::GSO_TCPV6) {
                return Err(GsoError::GsoTypeMismatch(hdr.gso_type));
            }
            lay
        };
        let mss = hdr.gso_size as usize;
        let payload = lay.end - lay.data;
        Ok(Segmenter {
            pkt,
            lay,
            mss,
            count: payload.div_ceil(mss).max(1),
        })
    }

    /// How many segments the super-frame makes (1 for a payload within `gso_size`, and for an
    /// empty one).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The length of the largest segment (the first).
    pub fn max_len(&self) -> usize {
        self.lay.data + self.mss.min(self.lay.end - self.lay.data)
    }

    pub fn layout(&self) -> Layout {
        self.lay
    }

    /// Writes segment `i` (< [`count`](Self::count)) at the start of `out`; returns its length.
    pub fn write(&self, i: usize, out: &mut [u8]) -> Result<usize, GsoError> {
        let Layout {
            l3,
            l4,
            data,
            end,
            v6,
            proto,
        } = self.lay;
        let p = self.pkt;
        let start = (data + i.saturating_mul(self.mss)).min(end);
        let plen = self.mss.min(end - start);
        let len = data + plen;
        if out.len() < len {
            return Err(GsoError::OutputTooSmall {
                need: len,
                have: out.len(),
            });
        }
        let out = &mut out[..len];
        out[..data].copy_from_slice(&p[..data]);
        out[data..].copy_from_slice(&p[start..start + plen]);
        let last = i + 1 >= self.count;
        if v6 {
            out[l3 + 4..l3 + 6].copy_from_slice(&((len - l4) as u16).to_be_bytes());
        } else {
            out[l3 + 2..l3 + 4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
            let id = be16(p, l3 + 4).wrapping_add(i as u16);
            out[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
            out[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let c = csum::checksum(&out[l3..l4]);
            out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        if proto == PROTO_UDP {
            // USO (net/ipv4/udp_offload.c `__udp_gso_segment`): every datagram gets its own
            // length and full checksum; a computed 0 is sent as 0xffff (RFC 768).
            out[l4 + 4..l4 + 6].copy_from_slice(&((len - l4) as u16).to_be_bytes());
            out[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
            let c = csum::finish(csum::partial(&out[l4..], self.lay.pseudo(out, len - l4)));
            let c = if c == 0 { 0xffff } else { c };
            out[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
            return Ok(len);
        }
        let seq = be32(p, l4 + 4).wrapping_add((i.wrapping_mul(self.mss)) as u32);
        out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut fl = p[l4 + 13];
        if !last {
            fl &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            fl &= !TCP_CWR;
        }
        out[l4 + 13] = fl;
        out[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
        let c = csum::finish(csum::partial(&out[l4..], self.lay.pseudo(out, len - l4)));
        out[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        Ok(len)
    }
}

/// Completes a partial checksum in place: the 16-bit field at `csum_start + csum_offset` holds
/// the pseudo-header sum (CHECKSUM_PARTIAL); the result covers `[csum_start..]`.
///
/// For UDP a computed 0 is sent as 0xffff (RFC 768), which the kernel's own transmit path does
/// too (`udp4_hwcsum` / CSUM_MANGLED_0); for any other protocol 0 and 0xffff are the same sum.
pub fn complete_csum(hdr: &VnetHdr, f: &mut [u8]) -> Result<(), GsoError> {
    let (start, off) = (hdr.csum_start as usize, hdr.csum_offset as usize);
    if start + off + 2 > f.len() {
        return Err(GsoError::CsumOutOfRange {
            start: hdr.csum_start,
            offset: hdr.csum_offset,
            len: f.len(),
        });
    }
    let c = csum::finish(csum::partial(&f[start..], 0));
    let c = if c == 0 { 0xffff } else { c };
    f[start + off..start + off + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Turns one tap read (`hdr` + `pkt`) into standard frames, each handed to `sink`:
/// - no GSO, no NEEDS_CSUM: `pkt` itself (no copy);
/// - no GSO, NEEDS_CSUM: a copy in `scratch` with the checksum completed;
/// - TCPv4/TCPv6/UDP_L4 GSO: each segment built in `scratch`, which needs
///   `Segmenter::max_len` bytes (the headers + `gso_size`; 1514 + 4 at MTU 1500 with a tag).
///
/// Returns how many frames went to `sink`. On an error nothing has been handed out, except
/// for an undersized `scratch`, found before the first segment too.
pub fn segment<F: FnMut(&[u8])>(
    hdr: &VnetHdr,
    pkt: &[u8],
    scratch: &mut [u8],
    mut sink: F,
) -> Result<usize, GsoError> {
    if hdr.gso_kind() == vnet::GSO_NONE {
        if hdr.flags & vnet::F_NEEDS_CSUM == 0 {
            sink(pkt);
            return Ok(1);
        }
        if scratch.len() < pkt.len() {
            return Err(GsoError::OutputTooSmall {
                need: pkt.len(),
                have: scratch.len(),
            });
        }
        let out = &mut scratch[..pkt.len()];
        out.copy_from_slice(pkt);
        complete_csum(hdr, out)?;
        sink(out);
        return Ok(1);
    }
    let s = Segmenter::new(hdr, pkt)?;
    if scratch.len() < s.max_len() {
        return Err(GsoError::OutputTooSmall {
            need: s.max_len(),
            have: scratch.len(),
        });
    }
    for i in 0..s.count() {
        let n = s.write(i, scratch)?;
        sink(&scratch[..n]);
    }
    Ok(s.count())
}

/// Like [`segment`], into consecutive `stride`-byte slots of `slab` with their lengths in
/// `lens` (the shape `sys::send_batch` takes). Returns how many slots were filled; errors with
/// `OutputTooSmall` when the frames do not fit the slab, the slots or the stride.
pub fn segment_to_slab(
    hdr: &VnetHdr,
    pkt: &[u8],
    slab: &mut [u8],
    stride: usize,
    lens: &mut [usize],
) -> Result<usize, GsoError> {
    let slots = lens.len().min(slab.len() / stride.max(1));
    if hdr.gso_kind() == vnet::GSO_NONE {
        if slots == 0 || stride < pkt.len() {
            return Err(GsoError::OutputTooSmall {
                need: pkt.len(),
                have: if slots == 0 { 0 } else { stride },
            });
        }
        slab[..pkt.len()].copy_from_slice(pkt);
        if hdr.flags & vnet::F_NEEDS_CSUM != 0 {
            complete_csum(hdr, &mut slab[..pkt.len()])?;
        }
        lens[0] = pkt.len();
        return Ok(1);
    }
    let s = Segmenter::new(hdr, pkt)?;
    if s.count() > slots || stride < s.max_len() {
        return Err(GsoError::OutputTooSmall {
            need: s.count() * s.max_len(),
            have: slots * stride,
        });
    }
    for i in 0..s.count() {
        lens[i] = s.write(i, &mut slab[i * stride..(i + 1) * stride])?;
    }
    Ok(s.count())
}
