//! Receive coalescing in userspace (GRO): consecutive in-order TCP segments of one flow arriving
//! from the network become one super-frame, written to the tap with a virtio-net header
//! (gso_type TCPV4/TCPV6, gso_size = MSS, NEEDS_CSUM), so the namespace's TCP stack takes one
//! trip for up to ~44 segments instead of one each.
//!
//! The merge rules follow the kernel's (net/ipv4/tcp_offload.c `tcp_gro_receive`,
//! net/ipv4/af_inet.c `inet_gro_receive`, net/ipv6/ip6_offload.c `ipv6_gro_receive`): same
//! Ethernet header, addresses and ports; IPv4 without options or fragmentation, same TOS, TTL
//! and DF, the IP id +1 per segment unless DF is set; IPv6 without extension headers, same
//! traffic class, flow label and hop limit; TCP sequence == the previous end, same ACK number,
//! data offset, window and option bytes (timestamps included: the kernel compares every option
//! word), flags equal except PSH, no CWR after the first segment, no SYN/RST/URG/FIN; every
//! merged payload equal to the first one's (the MSS) except a shorter last one, after which, or
//! after a PSH, the super-frame is closed. The IP length stays within 65535.
//!
//! One pending flow, not a table: a frame that does not extend the pending super-frame flushes
//! it first, so the output order is exactly the input order (no frame of any flow overtakes
//! another). A bulk TCP stream arrives as runs of back-to-back segments of one flow within a
//! batch, which one slot catches; interleaved flows fall back to pass-through, which is correct,
//! just not faster. Segments with a bad checksum are passed unchanged (with a zero header) for
//! the kernel to drop; a lone segment goes out with DATA_VALID since its checksum was verified.

use super::csum;
use super::gso::{Layout, PROTO_TCP, TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG};
use super::vnet::{self, VnetHdr};

/// A buffer this large holds every super-frame the coalescer builds: Ethernet with one tag (18)
/// + IPv6 header (40) + the largest IP payload (65535).
pub const BUF_LEN: usize = 18 + 40 + 65535;

/// Counters of what the coalescer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroStats {
    /// Super-frames emitted (two segments or more).
    pub super_frames: u64,
    /// Segments that went into those super-frames.
    pub merged_segments: u64,
    /// Frames emitted as they came (other protocols, lone segments, bad checksums).
    pub passed: u64,
}

/// A frame the coalescer hands out.
pub enum Out<'a, B> {
    /// The frame given to `push_out`, unchanged.
    Input(&'a [u8]),
    /// The first `len` bytes of the coalescer's buffer. The receiver may replace the buffer
    /// (`std::mem::replace`) by another at least as long, and write the frame from the old one.
    Buffer(&'a mut B, usize),
}

impl<B: AsRef<[u8]>> Out<'_, B> {
    /// The frame's bytes.
    pub fn frame(&self) -> &[u8] {
        match self {
            Out::Input(f) => f,
            Out::Buffer(b, n) => &b.as_ref()[..*n],
        }
    }
}

/// The coalescer; `buf` (caller-provided, normally [`BUF_LEN`] bytes) holds the pending
/// super-frame. Frames longer than `buf` pass through.
pub struct Coalescer<B: AsRef<[u8]> + AsMut<[u8]>> {
    buf: B,
    len: usize,
    lay: Layout,
    mss: usize,
    segs: usize,
    next_seq: u32,
    next_id: u16,
    stats: GroStats,
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The layout of a frame that may be merged: a verified, unfragmented TCP segment with data,
/// ACK and no flag that ends or resets the stream, IPv4 without options, no Ethernet padding.
pub fn candidate(f: &[u8]) -> Option<Layout> {
    let lay = Layout::parse_tcp(f).ok()?;
    if lay.end != f.len() || lay.data == lay.end {
        return None;
    }
    if !lay.v6 {
        if lay.l4 - lay.l3 != 20 || be16(f, lay.l3 + 6) & 0x3fff != 0 {
            return None;
        }
        if !csum::verify(&f[lay.l3..lay.l4], 0) {
            return None;
        }
    }
    let fl = f[lay.l4 + 13];
    if fl & (TCP_SYN | TCP_RST | TCP_URG | TCP_FIN) != 0 || fl & TCP_ACK == 0 {
        return None;
    }
    if !csum::verify(&f[lay.l4..], lay.pseudo(f, lay.end - lay.l4)) {
        return None;
    }
    Some(lay)
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Coalescer<B> {
    pub fn new(buf: B) -> Coalescer<B> {
        Coalescer {
            buf,
            len: 0,
            lay: Layout {
                l3: 0,
                l4: 0,
                data: 0,
                end: 0,
                v6: false,
                proto: PROTO_TCP,
            },
            mss: 0,
            segs: 0,
            next_seq: 0,
            next_id: 0,
            stats: GroStats::default(),
        }
    }

    pub fn stats(&self) -> GroStats {
        self.stats
    }

    /// True when a super-frame is pending (call [`flush`](Self::flush) at the end of a batch).
    pub fn pending(&self) -> bool {
        self.len > 0
    }

    /// Takes one frame from the network; whatever becomes ready goes to `emit` as a virtio-net
    /// header and an Ethernet frame (write both, header first, to the tap in one writev).
    pub fn push<F: FnMut(&VnetHdr, &[u8])>(&mut self, frame: &[u8], emit: &mut F) {
        self.push_out(frame, &mut |h: &VnetHdr, o: Out<'_, B>| emit(h, o.frame()));
    }

    /// Emits the pending super-frame (or lone segment), if any.
    pub fn flush<F: FnMut(&VnetHdr, &[u8])>(&mut self, emit: &mut F) {
        self.flush_out(&mut |h: &VnetHdr, o: Out<'_, B>| emit(h, o.frame()));
    }

    /// [`push`](Self::push) for asynchronous writers (io_uring): a frame built in the
    /// coalescer's buffer comes as [`Out::Buffer`], so `emit` may swap in a free buffer of the
    /// same size and keep the filled one until its write completes; a frame passed through
    /// comes as [`Out::Input`], the caller's own `frame`.
    pub fn push_out<F: FnMut(&VnetHdr, Out<'_, B>)>(&mut self, frame: &[u8], emit: &mut F) {
        let Some(c) = candidate(frame) else {
            self.flush_out(emit);
            self.stats.passed += 1;
            emit(&VnetHdr::default(), Out::Input(frame));
            return;
        };
        let plen = c.end - c.data;
        let fl = frame[c.l4 + 13];
        if self.len > 0 && self.mergeable(frame, &c) {
            let end = self.len + plen;
            self.buf.as_mut()[self.len..end].copy_from_slice(&frame[c.data..]);
            self.len = end;
            self.segs += 1;
            self.next_seq = self.next_seq.wrapping_add(plen as u32);
            self.next_id = self.next_id.wrapping_add(1);
            if fl & TCP_PSH != 0 {
                let l4 = self.lay.l4;
                self.buf.as_mut()[l4 + 13] |= TCP_PSH;
            }
            if plen < self.mss || fl & TCP_PSH != 0 {
                self.flush_out(emit);
            }
            return;
        }
        self.flush_out(emit);
        if frame.len() > self.buf.as_ref().len() {
            self.stats.passed += 1;
            emit(&VnetHdr::default(), Out::Input(frame));
            return;
        }
        self.buf.as_mut()[..frame.len()].copy_from_slice(frame);
        self.len = frame.len();
        self.lay = c;
        self.mss = plen;
        self.segs = 1;
        self.next_seq = be32(frame, c.l4 + 4).wrapping_add(plen as u32);
        self.next_id = be16(frame, c.l3 + 4).wrapping_add(1);
        if fl & TCP_PSH != 0 {
            self.flush_out(emit);
        }
    }

    fn mergeable(&self, f: &[u8], c: &Layout) -> bool {
        let p = &self.buf.as_ref()[..self.len];
        let l = self.lay;
        if c.l3 != l.l3 || c.l4 != l.l4 || c.data != l.data || c.v6 != l.v6 {
            return false;
        }
        let (l3, l4) = (l.l3, l.l4);
        if f[..l3] != p[..l3] {
            return false;
        }
        if l.v6 {
            // Version, traffic class, flow label; hop limit; addresses.
            if f[l3..l3 + 4] != p[l3..l3 + 4] || f[l3 + 7] != p[l3 + 7] {
                return false;
            }
            if f[l3 + 8..l3 + 40] != p[l3 + 8..l3 + 40] {
                return false;
            }
        } else {
            let df = 0x40;
            if f[l3 + 1] != p[l3 + 1]
                || f[l3 + 8] != p[l3 + 8]
                || f[l3 + 6] & df != p[l3 + 6] & df
                || f[l3 + 12..l3 + 20] != p[l3 + 12..l3 + 20]
            {
                return false;
            }
            // With DF the id carries nothing (RFC 6864) and the kernel accepts any; without
            // it, only the next one.
            if f[l3 + 6] & df == 0 && be16(f, l3 + 4) != self.next_id {
                return false;
            }
        }
        let (fl, pl) = (f[l4 + 13], p[l4 + 13]);
        if f[l4..l4 + 4] != p[l4..l4 + 4]
            || be32(f, l4 + 4) != self.next_seq
            || f[l4 + 8..l4 + 13] != p[l4 + 8..l4 + 13]
            || fl & TCP_CWR != 0
            || fl & !TCP_PSH != pl & !(TCP_PSH | TCP_CWR)
            || f[l4 + 14..l4 + 16] != p[l4 + 14..l4 + 16]
            || f[l4 + 20..c.data] != p[l4 + 20..l.data]
        {
            return false;
        }
        let plen = c.end - c.data;
        let ip_len = if l.v6 { self.len - l4 } else { self.len - l3 };
        plen <= self.mss && ip_len + plen <= 65535 && self.len + plen <= self.buf.as_ref().len()
    }

    /// [`flush`](Self::flush) for asynchronous writers, as [`push_out`](Self::push_out).
    pub fn flush_out<F: FnMut(&VnetHdr, Out<'_, B>)>(&mut self, emit: &mut F) {
        if self.len == 0 {
            return;
        }
        let len = self.len;
        self.len = 0;
        let l = self.lay;
        let f = &mut self.buf.as_mut()[..len];
        if self.segs == 1 {
            self.stats.passed += 1;
            let h = VnetHdr {
                flags: vnet::F_DATA_VALID,
                ..VnetHdr::default()
            };
            emit(&h, Out::Buffer(&mut self.buf, len));
            return;
        }
        if l.v6 {
            f[l.l3 + 4..l.l3 + 6].copy_from_slice(&((len - l.l4) as u16).to_be_bytes());
        } else {
            f[l.l3 + 2..l.l3 + 4].copy_from_slice(&((len - l.l3) as u16).to_be_bytes());
            f[l.l3 + 10..l.l3 + 12].copy_from_slice(&[0, 0]);
            let c = csum::checksum(&f[l.l3..l.l4]);
            f[l.l3 + 10..l.l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, uncomplemented
        // (what `tcp_v4_send_check`/`__tcp_v6_send_check` leave for the device).
        let ph = csum::fold(l.pseudo(f, len - l.l4) as u64);
        f[l.l4 + 16..l.l4 + 18].copy_from_slice(&ph.to_be_bytes());
        let ecn = if f[l.l4 + 13] & TCP_CWR != 0 {
            vnet::GSO_ECN
        } else {
            0
        };
        let h = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: if l.v6 { vnet::GSO_TCPV6 } else { vnet::GSO_TCPV4 } | ecn,
            hdr_len: l.data as u16,
            gso_size: self.mss as u16,
            csum_start: l.l4 as u16,
            csum_offset: 16,
            num_buffers: 0,
        };
        self.stats.super_frames += 1;
        self.stats.merged_segments += self.segs as u64;
        emit(&h, Out::Buffer(&mut self.buf, len));
    }
}

#[cfg(test)]
mod tests {
    //! Property tests: random flows are segmented, every frame is checked with an independent
    //! checksum, the frames are coalesced back, and re-segmenting the output must give exactly
    //! the same frames (order, headers, payload, checksums). Malformed input never panics.
    use super::*;
    use crate::wire::gso::{segment, segment_to_slab, Segmenter, TCP_ECE};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        fn bytes(&mut self, out: &mut [u8]) {
            for b in out {
                *b = self.next() as u8;
            }
        }
    }

    /// Textbook checksum, word by word, independent of `csum`.
    fn naive_sum(parts: &[&[u8]]) -> u16 {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(p);
            if v.len() % 2 == 1 && !std::ptr::eq(*p, *parts.last().unwrap()) {
                panic!("odd part in the middle");
            }
        }
        let mut s: u32 = 0;
        for i in (0..v.len()).step_by(2) {
            s += ((v[i] as u32) << 8) | v.get(i + 1).copied().unwrap_or(0) as u32;
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// Checks one standard frame on its own: lengths, IPv4 header checksum, TCP checksum.
    fn check_frame(f: &[u8], v6: bool, l3: usize) {
        if v6 {
            let pl = be16(f, l3 + 4) as usize;
            assert_eq!(l3 + 40 + pl, f.len(), "IPv6 payload length");
            let tcp_len = (pl as u32).to_be_bytes();
            let ph = [&f[l3 + 8..l3 + 40], &tcp_len[..], &[0, 0, 0, 6]].concat();
            assert_eq!(naive_sum(&[&ph, &f[l3 + 40..]]), 0xffff, "TCP checksum (v6)");
        } else {
            let ihl = (f[l3] & 15) as usize * 4;
            assert_eq!(be16(f, l3 + 2) as usize + l3, f.len(), "IPv4 total length");
            assert_eq!(naive_sum(&[&f[l3..l3 + ihl]]), 0xffff, "IPv4 header checksum");
            let tcp_len = ((f.len() - l3 - ihl) as u16).to_be_bytes();
            let ph = [&f[l3 + 12..l3 + 20], &[0, 6], &tcp_len[..]].concat();
            assert_eq!(naive_sum(&[&ph, &f[l3 + ihl..]]), 0xffff, "TCP checksum (v4)");
        }
    }

    struct Flow {
        v6: bool,
        l3: usize,
        l4: usize,
        data: usize,
        ipopts: bool,
        mss: usize,
        seq: u32,
        id: u16,
        df: bool,
        flags: u8,
    }

    /// A random TCP super-frame as a tap with TSO hands it out, with its virtio-net header.
    fn super_frame(r: &mut Rng) -> (Flow, VnetHdr, Vec<u8>) {
        let v6 = r.chance(50);
        let vlan = r.chance(30);
        let l3 = if vlan { 18 } else { 14 };
        let ipopt = if !v6 && r.chance(20) {
            4 * (1 + r.below(10) as usize)
        } else {
            0
        };
        let tcpopt = if r.chance(60) { 4 * r.below(11) as usize } else { 0 };
        let iphl = if v6 { 40 } else { 20 + ipopt };
        let l4 = l3 + iphl;
        let data = l4 + 20 + tcpopt;
        let mss = match r.below(4) {
            0 => 1 + r.below(8) as usize,
            1 => 1448,
            2 => 536,
            _ => 1 + r.below(9000) as usize,
        };
        let max_payload = (65535 - (iphl - if v6 { 40 } else { 0 }) - 20 - tcpopt).min(mss * 120);
        let payload = if r.chance(5) {
            0
        } else {
            r.below(max_payload as u64 + 1) as usize
        };
        let mut f = vec![0u8; data + payload];
        r.bytes(&mut f);
        f[0] &= 0xfe;
        if vlan {
            f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
            f[16..18].copy_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
        } else {
            f[12..14].copy_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
        }
        let df = r.chance(70);
        if v6 {
            f[l3] = 0x60 | (f[l3] & 0x0f);
            let pl = (f.len() - l4) as u16;
            f[l3 + 4..l3 + 6].copy_from_slice(&pl.to_be_bytes());
            f[l3 + 6] = 6;
        } else {
            f[l3] = 0x40 | (iphl / 4) as u8;
            let tot = (f.len() - l3) as u16;
            f[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
            f[l3 + 6] = if df { 0x40 } else { 0 };
            f[l3 + 7] = 0;
            f[l3 + 9] = 6;
        }
        f[l4 + 12] = (((20 + tcpopt) / 4) as u8) << 4;
        let mut flags = TCP_ACK;
        for (bit, pct) in [(TCP_PSH, 40), (TCP_FIN, 10), (TCP_CWR, 20), (TCP_ECE, 10)] {
            if r.chance(pct) {
                flags |= bit;
            }
        }
        f[l4 + 13] = flags;
        f[l4 + 18..l4 + 20].copy_from_slice(&[0, 0]);
        let lay = Layout::parse_tcp(&f).expect("generated frame parses");
        let ph = csum::fold(lay.pseudo(&f, f.len() - l4) as u64);
        f[l4 + 16..l4 + 18].copy_from_slice(&ph.to_be_bytes());
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: if v6 { vnet::GSO_TCPV6 } else { vnet::GSO_TCPV4 }
                | if flags & TCP_CWR != 0 { vnet::GSO_ECN } else { 0 },
            hdr_len: data as u16,
            gso_size: mss as u16,
            csum_start: l4 as u16,
            csum_offset: 16,
            num_buffers: 0,
        };
        let flow = Flow {
            v6,
            l3,
            l4,
            data,
            ipopts: ipopt > 0,
            mss,
            seq: be32(&f, l4 + 4),
            id: be16(&f, l3 + 4),
            df,
            flags,
        };
        (flow, hdr, f)
    }

    fn seg_all(hdr: &VnetHdr, f: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut scratch = vec![0u8; 70000];
        segment(hdr, f, &mut scratch, |s| out.push(s.to_vec())).expect("segment");
        out
    }

    fn coalesce_all(frames: &[Vec<u8>]) -> (Vec<(VnetHdr, Vec<u8>)>, GroStats) {
        let mut c = Coalescer::new(vec![0u8; BUF_LEN]);
        let mut out = Vec::new();
        let mut emit = |h: &VnetHdr, f: &[u8]| out.push((*h, f.to_vec()));
        for f in frames {
            c.push(f, &mut emit);
        }
        c.flush(&mut emit);
        assert!(!c.pending());
        let st = c.stats();
        (out, st)
    }

    #[test]
    fn segment_then_coalesce_round_trips() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut supers = 0;
        for iter in 0..400 {
            let (fl, hdr, f) = super_frame(&mut r);
            let frames = seg_all(&hdr, &f);
            let payload = f.len() - fl.data;
            let n = payload.div_ceil(fl.mss).max(1);
            assert_eq!(frames.len(), n, "iter {iter}: segment count");
            // The slab variant writes the same frames.
            let stride = fl.data + fl.mss.min(payload);
            let mut slab = vec![0u8; stride * n];
            let mut lens = vec![0usize; n];
            assert_eq!(segment_to_slab(&hdr, &f, &mut slab, stride, &mut lens), Ok(n));
            let mut joined = Vec::new();
            for (i, s) in frames.iter().enumerate() {
                assert_eq!(&slab[i * stride..i * stride + lens[i]], &s[..]);
                check_frame(s, fl.v6, fl.l3);
                assert!(s.len() - fl.data <= fl.mss);
                assert_eq!(s[..fl.l3], f[..fl.l3]);
                assert_eq!(s[fl.l4 + 20..fl.data], f[fl.l4 + 20..fl.data], "TCP options kept");
                let seq = fl.seq.wrapping_add((i * fl.mss) as u32);
                assert_eq!(be32(s, fl.l4 + 4), seq, "iter {iter} seg {i}: seq");
                if !fl.v6 {
                    assert_eq!(be16(s, fl.l3 + 4), fl.id.wrapping_add(i as u16), "IPv4 id");
                }
                let sf = s[fl.l4 + 13];
                let last = i + 1 == n;
                let mut want = fl.flags;
                if !last {
                    want &= !(TCP_FIN | TCP_PSH);
                }
                if i > 0 {
                    want &= !TCP_CWR;
                }
                assert_eq!(sf, want, "iter {iter} seg {i}/{n}: flags");
                joined.extend_from_slice(&s[fl.data..]);
            }
            assert_eq!(joined, f[fl.data..], "iter {iter}: payload");

            let (out, st) = coalesce_all(&frames);
            let mut again = Vec::new();
            for (h, o) in &out {
                if h.gso_kind() == vnet::GSO_NONE {
                    assert_eq!(h.flags & vnet::F_NEEDS_CSUM, 0);
                    again.push(o.clone());
                    continue;
                }
                supers += 1;
                assert_eq!(h.gso_size as usize, fl.mss);
                assert_eq!(h.hdr_len as usize, fl.data);
                assert_eq!(h.csum_start as usize, fl.l4);
                assert_eq!(h.flags, vnet::F_NEEDS_CSUM);
                assert_eq!(h.gso_type & vnet::GSO_ECN != 0, fl.flags & TCP_CWR != 0);
                // The NEEDS_CSUM contract: completing the partial checksum the way a device
                // (or `complete_csum`) does gives a valid TCP checksum over the whole
                // super-frame, whose IP length and header checksum are right too.
                let mut done = o.clone();
                crate::wire::gso::complete_csum(h, &mut done).expect("csum in range");
                check_frame(&done, fl.v6, fl.l3);
                again.extend(seg_all(h, o));
            }
            assert_eq!(again, frames, "iter {iter}: coalesce then segment changed frames");
            let mergeable = payload > 0 && !fl.ipopts;
            let fin = fl.flags & TCP_FIN != 0;
            let expect_outputs = if !mergeable {
                n
            } else {
                usize::from(n > usize::from(fin)) + usize::from(fin)
            };
            assert_eq!(out.len(), expect_outputs, "iter {iter}: outputs {st:?}");
            let _ = fl.df;
        }
        assert!(supers > 100, "only {supers} super-frames in the run");
    }

    /// A random USO super-frame (UDP, gso_type UDP_L4) as a tap with TUN_F_USO4/6 hands it out.
    fn udp_super_frame(r: &mut Rng) -> (bool, usize, usize, VnetHdr, Vec<u8>) {
        let v6 = r.chance(50);
        let l3 = if r.chance(30) { 18 } else { 14 };
        let ipopt = if !v6 && r.chance(20) {
            4 * (1 + r.below(10) as usize)
        } else {
            0
        };
        let iphl = if v6 { 40 } else { 20 + ipopt };
        let l4 = l3 + iphl;
        let big = r.chance(50);
        let mss = 1 + r.below(if big { 1472 } else { 30 }) as usize;
        let max = (65535 - 8 - if v6 { 0 } else { iphl }).min(mss * 100);
        let payload = r.below(max as u64 + 1) as usize;
        let mut f = vec![0u8; l4 + 8 + payload];
        r.bytes(&mut f);
        let et: u16 = if v6 { 0x86dd } else { 0x0800 };
        if l3 == 18 {
            f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        }
        f[l3 - 2..l3].copy_from_slice(&et.to_be_bytes());
        if v6 {
            f[l3] = 0x60;
            let pl = (f.len() - l4) as u16;
            f[l3 + 4..l3 + 6].copy_from_slice(&pl.to_be_bytes());
            f[l3 + 6] = 17;
        } else {
            f[l3] = 0x40 | (iphl / 4) as u8;
            let tot = (f.len() - l3) as u16;
            f[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
            f[l3 + 6] &= 0x40;
            f[l3 + 7] = 0;
            f[l3 + 9] = 17;
        }
        let ul = (f.len() - l4) as u16;
        f[l4 + 4..l4 + 6].copy_from_slice(&ul.to_be_bytes());
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_UDP_L4,
            hdr_len: (l4 + 8) as u16,
            gso_size: mss as u16,
            csum_start: l4 as u16,
            csum_offset: 6,
            num_buffers: 0,
        };
        (v6, l3, mss, hdr, f)
    }

    #[test]
    fn uso_segments_are_valid_datagrams_and_pass_the_coalescer() {
        let mut r = Rng(0x1234_5678);
        for iter in 0..300 {
            let (v6, l3, mss, hdr, f) = udp_super_frame(&mut r);
            let lay = Layout::parse_udp(&f).expect("generated UDP frame parses");
            let (l4, data) = (lay.l4, lay.data);
            let frames = seg_all(&hdr, &f);
            let payload = f.len() - data;
            assert_eq!(frames.len(), payload.div_ceil(mss).max(1), "iter {iter}");
            let mut joined = Vec::new();
            for (i, s) in frames.iter().enumerate() {
                assert!(s.len() - data <= mss);
                assert_eq!(s[..l4], {
                    // Only the IP length, id and header checksum may differ from the original.
                    let mut h = f[..l4].to_vec();
                    h[l3..l4].copy_from_slice(&s[l3..l4]);
                    h
                });
                if v6 {
                    assert_eq!(be16(s, l3 + 4) as usize, s.len() - l4);
                } else {
                    let ihl = l4 - l3;
                    assert_eq!(be16(s, l3 + 2) as usize, s.len() - l3);
                    assert_eq!(be16(s, l3 + 4), be16(&f, l3 + 4).wrapping_add(i as u16));
                    assert_eq!(naive_sum(&[&s[l3..l3 + ihl]]), 0xffff, "IPv4 header checksum");
                }
                assert_eq!(s[l4..l4 + 4], f[l4..l4 + 4], "ports");
                let ulen = be16(s, l4 + 4);
                assert_eq!(ulen as usize, s.len() - l4, "UDP length");
                assert_ne!(be16(s, l4 + 6), 0, "UDP checksum present");
                let ph = if v6 {
                    [
                        &s[l3 + 8..l3 + 40],
                        &(ulen as u32).to_be_bytes()[..],
                        &[0, 0, 0, 17],
                    ]
                    .concat()
                } else {
                    [&s[l3 + 12..l3 + 20], &[0, 17], &ulen.to_be_bytes()[..]].concat()
                };
                assert_eq!(
                    naive_sum(&[&ph, &s[l4..]]),
                    0xffff,
                    "iter {iter} seg {i}: UDP sum"
                );
                joined.extend_from_slice(&s[data..]);
            }
            assert_eq!(joined, f[data..], "iter {iter}: payload");
            let (out, st) = coalesce_all(&frames);
            assert_eq!(st.super_frames, 0);
            assert!(out.iter().all(|(h, _)| *h == VnetHdr::default()));
            let passed: Vec<Vec<u8>> = out.into_iter().map(|(_, o)| o).collect();
            assert_eq!(passed, frames);
        }
    }

    #[test]
    fn push_out_with_swapped_buffers_matches_push() {
        // An asynchronous writer: every buffered output takes the coalescer's buffer away (as
        // an in-flight write would) and leaves a fresh one; the bytes must equal push()'s.
        let mut r = Rng(99);
        for _ in 0..40 {
            let (_, ha, a) = super_frame(&mut r);
            let (_, hb, b) = super_frame(&mut r);
            let mut frames = seg_all(&ha, &a);
            frames.extend(seg_all(&hb, &b));
            let (want, _) = coalesce_all(&frames);
            let mut co = Coalescer::new(vec![0u8; BUF_LEN].into_boxed_slice());
            let mut in_flight: Vec<(VnetHdr, Box<[u8]>, usize)> = Vec::new();
            let mut got = Vec::new();
            let mut emit = |h: &VnetHdr, o: Out<'_, Box<[u8]>>| match o {
                Out::Input(f) => got.push((*h, f.to_vec())),
                Out::Buffer(buf, n) => {
                    let old = std::mem::replace(buf, vec![0xa5u8; BUF_LEN].into_boxed_slice());
                    in_flight.push((*h, old, n));
                    got.push((*h, Vec::new()));
                }
            };
            for f in &frames {
                co.push_out(f, &mut emit);
            }
            co.flush_out(&mut emit);
            let mut done = in_flight.into_iter();
            for g in got.iter_mut() {
                if g.1.is_empty() {
                    let (h, b, n) = done.next().expect("one buffer per buffered output");
                    assert_eq!(h, g.0);
                    g.1 = b[..n].to_vec();
                }
            }
            assert_eq!(got, want);
        }
    }

    #[test]
    fn interleaved_flows_and_bad_checksums_keep_order() {
        let mut r = Rng(77);
        for _ in 0..50 {
            let (_, ha, a) = super_frame(&mut r);
            let (_, hb, b) = super_frame(&mut r);
            let fa = seg_all(&ha, &a);
            let fb = seg_all(&hb, &b);
            let mut mixed = Vec::new();
            let (mut i, mut j) = (0, 0);
            while i < fa.len() || j < fb.len() {
                if j >= fb.len() || (i < fa.len() && r.chance(50)) {
                    mixed.push(fa[i].clone());
                    i += 1;
                } else {
                    mixed.push(fb[j].clone());
                    j += 1;
                }
            }
            // Corrupt one frame's payload: it must come out unchanged, with no header.
            let k = r.below(mixed.len() as u64) as usize;
            let last = mixed[k].len() - 1;
            mixed[k][last] ^= 0x5a;
            let bad = mixed[k].clone();
            let (out, _) = coalesce_all(&mixed);
            let mut again = Vec::new();
            for (h, o) in &out {
                if h.gso_kind() == vnet::GSO_NONE {
                    if *o == bad {
                        assert_eq!(*h, VnetHdr::default(), "bad checksum passed with a header");
                    }
                    again.push(o.clone());
                } else {
                    again.extend(seg_all(h, o));
                }
            }
            assert_eq!(again, mixed);
        }
    }

    #[test]
    fn ipv4_id_and_header_rules_stop_merging() {
        let mut r = Rng(5);
        let mut done = 0;
        while done < 20 {
            let (fl, hdr, f) = super_frame(&mut r);
            if fl.v6 || fl.ipopts || fl.df || f.len() - fl.data < 3 * fl.mss {
                continue;
            }
            done += 1;
            let mut frames = seg_all(&hdr, &f);
            // A jump in the IPv4 id (without DF) ends the super-frame at that segment, as
            // does a changed TTL.
            let l3 = fl.l3;
            let fix = |s: &mut Vec<u8>| {
                s[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
                let c = csum::checksum(&s[l3..l3 + 20]);
                s[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            };
            let id = be16(&frames[1], l3 + 4).wrapping_add(7);
            frames[1][l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
            fix(&mut frames[1]);
            frames[2][l3 + 8] ^= 1;
            fix(&mut frames[2]);
            let (out, _) = coalesce_all(&frames);
            assert_eq!(
                out[0].0,
                VnetHdr {
                    flags: vnet::F_DATA_VALID,
                    ..VnetHdr::default()
                }
            );
            assert_eq!(out[0].1, frames[0]);
            assert!(out.len() >= 3);
        }
    }

    #[test]
    fn complete_csum_udp_and_none() {
        // A UDP/IPv4 frame as tun hands it with CHECKSUM_PARTIAL.
        let mut f = vec![0u8; 14 + 20 + 8 + 33];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        let tot = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
        f[23] = 17;
        f[26..34].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        let ulen = (f.len() - 34) as u16;
        f[38..40].copy_from_slice(&ulen.to_be_bytes());
        for (i, b) in f[42..].iter_mut().enumerate() {
            *b = i as u8 * 7;
        }
        let ph = csum::pseudo_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, ulen as u32);
        f[40..42].copy_from_slice(&csum::fold(ph as u64).to_be_bytes());
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let mut scratch = [0u8; 200];
        let mut got = Vec::new();
        assert_eq!(segment(&hdr, &f, &mut scratch, |s| got = s.to_vec()), Ok(1));
        let ph = [&f[26..34], &[0, 17], &ulen.to_be_bytes()[..]].concat();
        assert_eq!(naive_sum(&[&ph, &got[34..]]), 0xffff);
        // Without NEEDS_CSUM the frame is handed out as it is.
        let mut same = Vec::new();
        segment(&VnetHdr::default(), &f, &mut [], |s| same = s.to_vec()).unwrap();
        assert_eq!(same, f);
        let bad = VnetHdr {
            csum_start: 70,
            csum_offset: 6,
            ..hdr
        };
        assert!(matches!(
            segment(&bad, &f, &mut scratch, |_| ()),
            Err(crate::wire::gso::GsoError::CsumOutOfRange { .. })
        ));
    }

    #[test]
    fn segment_errors_are_one_line() {
        let mut r = Rng(3);
        let (_, hdr, f) = super_frame(&mut r);
        let cases = [
            VnetHdr { gso_size: 0, ..hdr },
            VnetHdr {
                gso_type: vnet::GSO_UDP_L4,
                ..hdr
            },
            VnetHdr {
                gso_type: vnet::GSO_UDP,
                ..hdr
            },
        ];
        for h in cases {
            let e = Segmenter::new(&h, &f).unwrap_err();
            let m = e.to_string();
            assert!(
                !m.is_empty() && !m.contains('\n') && !m.contains("os error"),
                "{m}"
            );
        }
        let e = segment(&hdr, &f, &mut [0u8; 10], |_| ()).unwrap_err();
        assert!(matches!(e, crate::wire::gso::GsoError::OutputTooSmall { .. }));
    }

    #[test]
    fn malformed_input_never_panics() {
        let mut r = Rng(0xdead_beef);
        let mut scratch = vec![0u8; 70000];
        let mut c = Coalescer::new(vec![0u8; BUF_LEN]);
        let mut small = Coalescer::new([0u8; 128]);
        for _ in 0..3000 {
            let (_, mut hdr, mut f) = super_frame(&mut r);
            match r.below(4) {
                0 => {
                    let n = r.below(f.len() as u64 + 1) as usize;
                    f.truncate(n);
                }
                1 => {
                    for _ in 0..1 + r.below(6) {
                        let k = r.below(f.len().min(120) as u64) as usize;
                        if k < f.len() {
                            f[k] = r.next() as u8;
                        }
                    }
                }
                2 => {
                    let mut b = [0u8; 12];
                    r.bytes(&mut b);
                    hdr = VnetHdr::parse(&b, 12).unwrap();
                }
                _ => {
                    let n = r.below(200) as usize;
                    f.resize(n, 0);
                    r.bytes(&mut f);
                }
            }
            let mut frames = Vec::new();
            let _ = segment(&hdr, &f, &mut scratch, |s| frames.push(s.to_vec()));
            let mut lens = [0usize; 8];
            let _ = segment_to_slab(&hdr, &f, &mut scratch[..4000], 500, &mut lens);
            frames.push(f);
            let mut emit = |h: &VnetHdr, o: &[u8]| {
                if h.gso_kind() != vnet::GSO_NONE {
                    Layout::parse_tcp(o).expect("emitted super-frames parse");
                }
            };
            for s in &frames {
                c.push(s, &mut emit);
                small.push(s, &mut emit);
            }
            if r.chance(30) {
                c.flush(&mut emit);
            }
        }
    }
}
