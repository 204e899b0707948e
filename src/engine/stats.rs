//! Per-port, per-direction counters. Each worker counts in plain integers and publishes them
//! to these atomics once per loop turn (single writer, relaxed stores): readers get a
//! lock-free snapshot that is at most one turn old.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The two directions of a port, in stats order.
pub const DIR_NAMES: [&str; 2] = ["tap_to_link", "link_to_tap"];
/// Index of the tap -> link direction.
pub const TAP_TO_LINK: usize = 0;
/// Index of the link -> tap direction.
pub const LINK_TO_TAP: usize = 1;

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// No buffer or queue room to hold it.
    NoBuffer,
    /// The send/write on the other side failed.
    SendError,
    /// Longer than the largest frame carried (9234 bytes).
    Oversize,
    /// Malformed on a stream link (zero length) or empty datagram.
    Framing,
    /// The link carries nothing (null://).
    NoLink,
}

/// Counters of one direction. Frames and bytes are counted as on the VDE wire: with a tap
/// opened with segmentation offload (`engine::offload`), a super-frame read from the tap
/// counts as the standard frames it was cut into (`received`, `frames`), and one written to
/// the tap as the frames it was built from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames taken from the source side (delivered + dropped once traffic is quiet).
    pub received: u64,
    /// Frames delivered to the other side.
    pub frames: u64,
    /// Bytes delivered (frame bytes, without stream headers or virtio-net headers).
    pub bytes: u64,
    pub no_buffer: u64,
    pub send_error: u64,
    pub oversize: u64,
    pub framing: u64,
    pub no_link: u64,
    /// Offloading taps only: super-frames read from the tap and cut (tap_to_link), or built
    /// and written to the tap (link_to_tap).
    pub super_frames: u64,
    /// The standard frames those super-frames were cut into or built from.
    pub segments: u64,
    /// Super-frames that crossed the VDE wire whole, tagged, between vdens-fast peers
    /// (`wire::superframe`): sent (tap_to_link) or received (link_to_tap).
    pub wire_super: u64,
}

impl Counts {
    #[inline]
    pub fn add_drop(&mut self, why: DropReason, n: u64) {
        match why {
            DropReason::NoBuffer => self.no_buffer += n,
            DropReason::SendError => self.send_error += n,
            DropReason::Oversize => self.oversize += n,
            DropReason::Framing => self.framing += n,
            DropReason::NoLink => self.no_link += n,
        }
    }

    /// Adds `o`'s counters to these (the ports that left a node, summed).
    pub fn add(&mut self, o: &Counts) {
        self.received += o.received;
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.no_buffer += o.no_buffer;
        self.send_error += o.send_error;
        self.oversize += o.oversize;
        self.framing += o.framing;
        self.no_link += o.no_link;
        self.super_frames += o.super_frames;
        self.segments += o.segments;
        self.wire_super += o.wire_super;
    }

    #[inline]
    pub fn sent(&mut self, len: usize) {
        self.frames += 1;
        self.bytes += len as u64;
    }

    /// `n` frames of `bytes` bytes in all delivered (the segments of one super-frame).
    #[inline]
    pub fn sent_many(&mut self, n: u64, bytes: u64) {
        self.frames += n;
        self.bytes += bytes;
    }

    /// One direction of a port run as a cable node, from its two endpoints' counters: `inn`
    /// what the source endpoint took in (received, dropped on arrival, cut), `out` what the
    /// destination endpoint sent on (delivered, dropped on sending, coalesced, whole). The
    /// frames that went from one to the other inside the node count once.
    pub fn cable(inn: &Counts, out: &Counts) -> Counts {
        Counts {
            received: inn.received,
            frames: out.frames,
            bytes: out.bytes,
            no_buffer: inn.no_buffer + out.no_buffer,
            send_error: inn.send_error + out.send_error,
            oversize: inn.oversize + out.oversize,
            framing: inn.framing + out.framing,
            no_link: inn.no_link + out.no_link,
            super_frames: inn.super_frames + out.super_frames,
            segments: inn.segments + out.segments,
            wire_super: inn.wire_super + out.wire_super,
        }
    }

    pub fn dropped(&self) -> u64 {
        self.no_buffer + self.send_error + self.oversize + self.framing + self.no_link
    }

    fn fields(&self) -> [(&'static str, u64); NFIELDS] {
        [
            ("received", self.received),
            ("frames", self.frames),
            ("bytes", self.bytes),
            ("drop_no_buffer", self.no_buffer),
            ("drop_send_error", self.send_error),
            ("drop_oversize", self.oversize),
            ("drop_framing", self.framing),
            ("drop_no_link", self.no_link),
            ("super_frames", self.super_frames),
            ("segments", self.segments),
            ("wire_super", self.wire_super),
        ]
    }
}

/// The shared, lock-free copy of one direction's counters.
#[derive(Debug, Default)]
pub struct AtomicCounts([AtomicU64; NFIELDS]);

const NFIELDS: usize = 11;

impl AtomicCounts {
    /// Called by the one worker that owns the direction.
    #[inline]
    pub fn publish(&self, c: &Counts) {
        for (a, (_, v)) in self.0.iter().zip(c.fields()) {
            a.store(v, Relaxed);
        }
    }

    pub fn snapshot(&self) -> Counts {
        let v: Vec<u64> = self.0.iter().map(|a| a.load(Relaxed)).collect();
        Counts {
            received: v[0],
            frames: v[1],
            bytes: v[2],
            no_buffer: v[3],
            send_error: v[4],
            oversize: v[5],
            framing: v[6],
            no_link: v[7],
            super_frames: v[8],
            segments: v[9],
            wire_super: v[10],
        }
    }
}

/// The counters of one port, shared between its worker and the control thread.
#[derive(Debug)]
pub struct PortStats {
    pub name: String,
    pub vnl: String,
    pub dirs: [AtomicCounts; 2],
    /// How super-frames fare between the tap and the link.
    pub offload: Offload,
    /// The link offered its peer super-frames: whether the peer takes them now.
    pub superframes: Option<Arc<AtomicBool>>,
    /// The tap handover is up (`engine::core::handover`): this end writes its tap's frames
    /// straight into the peer's tap.
    pub handover: AtomicBool,
}

/// Whether a link carries super-frames whole (`wire::superframe`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Superframes {
    /// Not offered (a link that cannot, or --no-offload).
    #[default]
    Off,
    /// Offered; the peer does not take them (a classic one).
    Offered,
    /// Offered and taken: both ends are vdens-fast.
    Negotiated,
}

impl Superframes {
    pub fn name(self) -> &'static str {
        match self {
            Superframes::Off => "off",
            Superframes::Offered => "offered",
            Superframes::Negotiated => "negotiated",
        }
    }

    /// The state a link's `Link::superframes` flag stands for.
    pub fn of(flag: Option<&AtomicBool>) -> Superframes {
        match flag.map(|f| f.load(Relaxed)) {
            None => Superframes::Off,
            Some(false) => Superframes::Offered,
            Some(true) => Superframes::Negotiated,
        }
    }
}

/// What happens to the super-frames of a port's offloading tap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Offload {
    /// No super-frames: a plain tap.
    #[default]
    None,
    /// Cut into standard frames for the link, and coalesced from them for the tap.
    Cut,
    /// They cross the link whole (a tap:// link opened with the same virtio-net header).
    Whole,
}

impl Offload {
    pub fn name(self) -> &'static str {
        match self {
            Offload::None => "none",
            Offload::Cut => "cut",
            Offload::Whole => "whole",
        }
    }
}

impl PortStats {
    pub fn new(name: &str, vnl: &str) -> PortStats {
        PortStats {
            name: name.to_string(),
            vnl: vnl.to_string(),
            dirs: Default::default(),
            offload: Offload::None,
            superframes: None,
            handover: AtomicBool::new(false),
        }
    }
}

/// A snapshot of one port, as returned by `Engine::stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSnapshot {
    pub name: String,
    pub vnl: String,
    /// Indexed by [`TAP_TO_LINK`] and [`LINK_TO_TAP`].
    pub dirs: [Counts; 2],
    pub offload: Offload,
    pub superframes: Superframes,
    /// The tap handover is up (see [`PortStats::handover`]).
    pub handover: bool,
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One JSON object (one line) describing the engine and every port.
pub fn to_json(engine: &str, workers: usize, ports: &[PortSnapshot]) -> String {
    let mut out = String::new();
    out.push_str("{\"engine\":");
    json_str(&mut out, engine);
    let _ = write!(out, ",\"workers\":{workers},\"ports\":[");
    for (i, p) in ports.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_str(&mut out, &p.name);
        out.push_str(",\"vnl\":");
        json_str(&mut out, &p.vnl);
        let _ = write!(
            out,
            ",\"offload\":\"{}\",\"superframes\":\"{}\",\"handover\":{}",
            p.offload.name(),
            p.superframes.name(),
            p.handover
        );
        for (d, c) in p.dirs.iter().enumerate() {
            let _ = write!(out, ",\"{}\":{{", DIR_NAMES[d]);
            for (k, (name, v)) in c.fields().iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                let _ = write!(out, "\"{name}\":{v}");
            }
            out.push('}');
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let mut c = Counts {
            received: 3,
            ..Default::default()
        };
        c.sent(60);
        c.add_drop(DropReason::Oversize, 2);
        let p = PortSnapshot {
            name: "vde0".into(),
            vnl: "ptp:///tmp/a\"b".into(),
            dirs: [c, Counts::default()],
            offload: Offload::Whole,
            superframes: Superframes::Negotiated,
            handover: true,
        };
        let j = to_json("uring", 1, &[p]);
        assert!(j.starts_with("{\"engine\":\"uring\",\"workers\":1,\"ports\":[{\"name\":\"vde0\",\"vnl\":\"ptp:///tmp/a\\\"b\",\"offload\":\"whole\",\"superframes\":\"negotiated\",\"handover\":true,"), "{j}");
        assert!(j.contains("\"tap_to_link\":{\"received\":3,\"frames\":1,\"bytes\":60,\"drop_no_buffer\":0,\"drop_send_error\":0,\"drop_oversize\":2"), "{j}");
        assert!(
            j.ends_with("\"drop_no_link\":0,\"super_frames\":0,\"segments\":0,\"wire_super\":0}}]}"),
            "{j}"
        );
    }

    /// A cable's direction: received where the frame came in, delivered where it went out,
    /// drops and super-frames of both ends; what passed inside the node counts once.
    #[test]
    fn a_cable_direction_counts_each_frame_once() {
        let mut inn = Counts {
            received: 10,
            oversize: 1,
            super_frames: 1,
            segments: 4,
            ..Default::default()
        };
        // Passed on to the other endpoint: its "sent into the node", not a delivery.
        inn.sent_many(9, 900);
        let mut out = Counts {
            received: 9,
            wire_super: 1,
            ..Default::default()
        };
        out.sent_many(8, 800);
        out.add_drop(DropReason::NoBuffer, 1);
        let c = Counts::cable(&inn, &out);
        assert_eq!((c.received, c.frames, c.bytes), (10, 8, 800));
        assert_eq!((c.oversize, c.no_buffer, c.dropped()), (1, 1, 2));
        assert_eq!((c.super_frames, c.segments, c.wire_super), (1, 4, 1));
        assert_eq!(c.received, c.frames + c.dropped());
    }

    #[test]
    fn publish_roundtrip() {
        let a = AtomicCounts::default();
        let c = Counts {
            received: 1,
            frames: 2,
            bytes: 3,
            no_buffer: 4,
            send_error: 5,
            oversize: 6,
            framing: 7,
            no_link: 8,
            super_frames: 9,
            segments: 10,
            wire_super: 11,
        };
        a.publish(&c);
        assert_eq!(a.snapshot(), c);
    }
}
