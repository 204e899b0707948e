//! Super-frames between vdens-fast peers: how a datagram says it carries a virtio-net header
//! (and so a TCP/UDP super-frame of up to 64 KiB, or a frame with a partial checksum), and how
//! two vdens-fast ends tell each other that they take such datagrams, invisibly to classic
//! VDE peers.
//!
//! **On the wire** a datagram is either a plain Ethernet frame, as every VDE peer sends, or
//! [`TAG`] + a 10-byte virtio-net header ([`super::vnet::LEN`]) + the frame. The tag is 12 bytes
//! where a frame has its destination and source MAC addresses; its source is a multicast
//! address, which no Ethernet frame has (IEEE 802.3 source addresses are individual, and
//! bridges drop such frames), so a frame is never taken for a tagged datagram. A sender tags
//! only what needs the header (a super-frame, a partial checksum); everything else crosses
//! plain, with nothing added. A receiver that offered super-frames reads every datagram by its
//! first bytes, so a change of mode needs no agreement on *when* it happens: frames in flight
//! from before are read right.
//!
//! **Who may be sent a tagged datagram**: only a peer that said it takes them on the very
//! socket the datagram goes to. On `vde://` the client says so in its join request and a
//! vdens-fast switch in its answer, each in the `struct sockaddr_un` they exchange anyway,
//! after the NUL that ends the path ([`MARK`]): every classic VDE program reads that address as
//! a C string (vde-2's `vde_switch` and libvdeplug 4.0.1 connect with it and chmod it), so
//! the bytes after the NUL are never seen. Classic switches leave stack bytes there, which is
//! why the mark is long and exact. A client and its switch port are connected datagram sockets,
//! so a tagged datagram cannot reach anyone but the port that answered: a new switch at the
//! same place is joined with a new handshake, which decides again.
//!
//! On a datagram `ptp://` link there is no handshake: the second opener, whose socket is
//! connected to the first opener's, sends [`HELLO`]; a vdens-fast first opener answers
//! [`OFFER`] ("I take tagged datagrams"). Both are 8-byte datagrams, shorter than an Ethernet
//! header: a classic `vde_plug` drops them, and a classic `vdens` writes them to its tap,
//! which refuses them (EINVAL), so nothing shows there. A connected datagram socket receives
//! only from its peer, so an OFFER the second opener receives comes from the very socket it
//! sends to; it sends tagged datagrams from then on, until it has to connect again (the first
//! opener restarted: a new socket at PATH, which decides again).
//!
//! The first opener sends to a path, and a path is no proof of who listens at it by the time
//! a datagram arrives (a classic peer may have taken the place of a vdens-fast one). So it
//! sends tagged datagrams only on a second socket of its own (F2, bound at `PATH+fast1`),
//! connected to a second socket of the second opener's (R2, at `PATH+fast2`): a connected
//! datagram socket sends to one socket *object*, whatever is bound at any path later, and
//! gets ECONNREFUSED once that object is gone. R2 starts connected to itself, so that nobody
//! can send to it before it is paired. The pairing, after HELLO and OFFER (every message a
//! runt under 14 bytes, see [`Runt`]):
//!
//! 1. the first opener disconnects F2 (so that a new R2 may connect to it) and sends
//!    [`Runt::Pair`] by path; the second opener's socket accepts datagrams only from the first
//!    opener's, so PAIR comes from the very first opener it is connected to;
//! 2. the second opener connects R2 to F2 (from then on R2 accepts datagrams from F2 only) and
//!    says [`Runt::Join`] on its main socket;
//! 3. the first opener connects F2 to R2 and sends [`Runt::Probe`] (a fresh nonce) on F2; the
//!    second opener answers a probe read on R2 with [`Runt::Echo`] on its main socket;
//! 4. an echo of the latest nonce proves that F2's peer is the second opener's R2: the first
//!    opener sends everything (tagged and plain, in one order) on F2 from then on.
//!
//! Any failed send on F2 (the peer is gone: ECONNREFUSED, then ENOTCONN) ends it at once: the
//! first opener sends standard frames by path again (tagged datagrams still queued are
//! dropped) until the next HELLO. A classic second opener never sends HELLO, so it is never
//! paired; the second opener reads R2 beside its main socket (which still carries the first
//! opener's runts, and its frames while unpaired).

use super::vnet;

/// Bytes in front of the virtio-net header of a tagged datagram.
pub const TAG_LEN: usize = 12;

/// Where a frame's MAC addresses are: destination `2b:76:64:65:6e:73` ("+vdens", a locally
/// administered multicast address), source `2b:66:61:73:74:01` ("+fast", version 1), a
/// multicast source no frame can have.
pub const TAG: [u8; TAG_LEN] = [
    0x2b, b'v', b'd', b'e', b'n', b's', 0x2b, b'f', b'a', b's', b't', 0x01,
];

/// The length of [`HELLO`] and [`OFFER`] (under an Ethernet header's 14).
pub const RUNT_LEN: usize = 8;
/// What every runt starts with: "+vdfs", version 1.
const RUNT_MAGIC: [u8; 6] = [0x2b, b'v', b'd', b'f', b's', 0x01];
/// "Do you take tagged datagrams?" (a ptp second opener to its first opener).
pub const HELLO: [u8; RUNT_LEN] = [0x2b, b'v', b'd', b'f', b's', 0x01, b'?', 0];
/// "I take tagged datagrams" (the answer to [`HELLO`]).
pub const OFFER: [u8; RUNT_LEN] = [0x2b, b'v', b'd', b'f', b's', 0x01, b'!', 0];
/// The longest runt (PROBE, ECHO).
pub const RUNT_MAX: usize = RUNT_MAGIC.len() + 1 + 4;

/// A negotiation datagram of a datagram `ptp://` link (see the module's text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runt {
    Hello,
    Offer,
    /// First opener to second, by path: "connect your R2 to my F2".
    Pair,
    /// Second opener to first, on its main socket: "R2 is connected to your F2".
    Join,
    /// First opener to second, on F2: "echo this".
    Probe(u32),
    /// Second opener to first, on its main socket: the nonce of a probe read on R2.
    Echo(u32),
}

impl Runt {
    /// Writes the runt into `out`; its length.
    pub fn write(self, out: &mut [u8; RUNT_MAX]) -> usize {
        let m = RUNT_MAGIC.len();
        out[..m].copy_from_slice(&RUNT_MAGIC);
        let mut put = |kind: u8, rest: &[u8]| {
            out[m] = kind;
            out[m + 1..m + 1 + rest.len()].copy_from_slice(rest);
            m + 1 + rest.len()
        };
        match self {
            Runt::Hello => put(b'?', &[0]),
            Runt::Offer => put(b'!', &[0]),
            Runt::Pair => put(b'p', &[0]),
            Runt::Join => put(b'j', &[0]),
            Runt::Probe(x) => put(b'n', &x.to_le_bytes()),
            Runt::Echo(x) => put(b'e', &x.to_le_bytes()),
        }
    }

    /// The runt `d` is, if it is one.
    pub fn parse(d: &[u8]) -> Option<Runt> {
        let m = RUNT_MAGIC.len();
        if d.len() <= m || d.len() > RUNT_MAX || d[..m] != RUNT_MAGIC {
            return None;
        }
        let rest = &d[m + 1..];
        let nonce = || <[u8; 4]>::try_from(rest).ok().map(u32::from_le_bytes);
        match d[m] {
            b'?' if rest == [0] => Some(Runt::Hello),
            b'!' if rest == [0] => Some(Runt::Offer),
            b'p' if rest == [0] => Some(Runt::Pair),
            b'j' if rest == [0] => Some(Runt::Join),
            b'n' => nonce().map(Runt::Probe),
            b'e' => nonce().map(Runt::Echo),
            _ => None,
        }
    }
}

/// Tag and header: what a tagged datagram carries in front of its frame.
pub const PREFIX: usize = TAG_LEN + vnet::LEN;

/// After the NUL of a socket path in a join request or answer: "I take tagged datagrams on
/// this socket".
pub const MARK: &[u8] = b"vdens-fast superframes 1\0";

/// True when `datagram` is tagged (and long enough for its header).
#[inline]
pub fn is_tagged(datagram: &[u8]) -> bool {
    datagram.len() >= PREFIX && datagram[..TAG_LEN] == TAG
}

/// Whether a frame read behind virtio-net header `h` needs the header to cross (a super-frame
/// or a partial checksum); otherwise it crosses plain.
#[inline]
pub fn needs_header(h: &vnet::VnetHdr) -> bool {
    h.gso_kind() != vnet::GSO_NONE || h.flags & vnet::F_NEEDS_CSUM != 0
}

/// Puts [`MARK`] after the path that ends at `path_end` (the index of its NUL) in `sun_path`;
/// false when it does not fit (the path is then too long to offer super-frames) or the address
/// is abstract (`path_end` 0).
pub fn mark_path(sun_path: &mut [u8], path_end: usize) -> bool {
    if path_end == 0 || path_end + 1 + MARK.len() > sun_path.len() {
        return false;
    }
    sun_path[path_end + 1..path_end + 1 + MARK.len()].copy_from_slice(MARK);
    true
}

/// Whether `sun_path` (as received, possibly shorter than 108 bytes) carries [`MARK`] right
/// after the NUL that ends its path.
pub fn path_marked(sun_path: &[u8]) -> bool {
    match sun_path.iter().position(|&c| c == 0) {
        Some(0) | None => false,
        Some(end) => sun_path[end + 1..].starts_with(MARK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_no_frame() {
        // The source address is multicast (bit 0 of its first byte): no frame has one.
        assert_eq!(TAG[6] & 1, 1);
        // The destination is a locally administered group address.
        assert_eq!(TAG[0] & 3, 3);
        let mut d = TAG.to_vec();
        d.extend_from_slice(&[0u8; vnet::LEN]);
        assert!(is_tagged(&d));
        assert!(!is_tagged(&d[..PREFIX - 1]), "too short for the header");
        let mut frame = d.clone();
        frame[11] = 0x00;
        assert!(!is_tagged(&frame), "another version");
        let broadcast = [0xffu8; 64];
        assert!(!is_tagged(&broadcast));
    }

    #[test]
    fn runts_are_no_frames() {
        // Shorter than an Ethernet header: classic peers drop them.
        const { assert!(RUNT_LEN < 14 && RUNT_MAX < 14) };
        assert_ne!(HELLO, OFFER);
        assert!(!is_tagged(&HELLO) && !is_tagged(&OFFER));
    }

    #[test]
    fn runts_read_back() {
        let mut b = [0u8; RUNT_MAX];
        let n = Runt::Hello.write(&mut b);
        assert_eq!(&b[..n], &HELLO);
        let n = Runt::Offer.write(&mut b);
        assert_eq!(&b[..n], &OFFER);
        for r in [
            Runt::Hello,
            Runt::Offer,
            Runt::Pair,
            Runt::Join,
            Runt::Probe(0xdead_beef),
            Runt::Echo(7),
        ] {
            let n = r.write(&mut b);
            assert!(n < 14, "{r:?} is a runt");
            assert_eq!(Runt::parse(&b[..n]), Some(r));
            assert_eq!(Runt::parse(&b[..n - 1]), None, "{r:?} cut short");
        }
        assert_eq!(Runt::parse(&[0xffu8; 12]), None);
        let mut frame = [0u8; 60];
        frame[..8].copy_from_slice(&HELLO);
        assert_eq!(Runt::parse(&frame), None, "a frame is no runt");
    }

    #[test]
    fn what_needs_the_header() {
        let mut h = vnet::VnetHdr::default();
        assert!(!needs_header(&h), "a plain frame crosses plain");
        h.flags = vnet::F_DATA_VALID;
        assert!(!needs_header(&h));
        h.flags = vnet::F_NEEDS_CSUM;
        assert!(needs_header(&h));
        h.flags = 0;
        h.gso_type = vnet::GSO_TCPV4;
        assert!(needs_header(&h));
    }

    #[test]
    fn mark_after_the_path() {
        let mut sp = [0u8; 108];
        let p = b"/tmp/sw/.01234-00001";
        sp[..p.len()].copy_from_slice(p);
        assert!(!path_marked(&sp));
        assert!(mark_path(&mut sp, p.len()));
        assert!(path_marked(&sp));
        // The path a C program sees is unchanged.
        assert_eq!(sp.iter().position(|&c| c == 0), Some(p.len()));
        // A short answer (the mark cut off) is no offer.
        assert!(!path_marked(&sp[..p.len() + 5]));
        // Stack garbage after the NUL is no offer.
        let mut g = [0x55u8; 108];
        g[..p.len()].copy_from_slice(p);
        g[p.len()] = 0;
        assert!(!path_marked(&g));
        // No room: a path of 90 bytes leaves 17 after its NUL.
        let mut long = [b'a'; 108];
        long[90] = 0;
        assert!(!mark_path(&mut long, 90));
        // Abstract names are not marked.
        let mut abs = [0u8; 108];
        assert!(!mark_path(&mut abs, 0));
        assert!(!path_marked(&abs));
    }
}
