//! Stream framing: each frame preceded by its length as 2 bytes big-endian, on a byte stream
//! (vdens `=cmd`, `cmd://`, libvdestream). Pure: no I/O, no allocation.

/// The 2-byte big-endian length header for a frame of `len` bytes (`len` <= 65535).
pub fn header(len: usize) -> [u8; 2] {
    debug_assert!(len <= u16::MAX as usize);
    (len as u16).to_be_bytes()
}

/// Writes header + frame into `out`; returns the bytes written, or None if `out` is too short
/// or the frame cannot be described by a 2-byte length.
pub fn encode(frame: &[u8], out: &mut [u8]) -> Option<usize> {
    let n = frame.len();
    if n > u16::MAX as usize || out.len() < n + 2 {
        return None;
    }
    out[..2].copy_from_slice(&header(n));
    out[2..n + 2].copy_from_slice(frame);
    Some(n + 2)
}

/// What the decoder found after consuming some input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole frame of this length is now at the start of the destination buffer.
    Frame(usize),
    /// A frame of this length did not fit the destination; its bytes were (or are being)
    /// skipped.
    Oversize(usize),
    /// A zero-length frame: nothing to deliver.
    Empty,
}

/// Incremental reassembly: bytes arrive in arbitrary pieces; frames are copied into a
/// caller-owned destination buffer, which must stay the same until [`Event::Frame`] is returned.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    hdr: [u8; 2],
    hdr_have: u8,
    /// Length of the frame being read (valid when `hdr_have == 2`).
    len: usize,
    /// Bytes of that frame consumed so far.
    have: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// True when no frame is partially read (a clean boundary in the stream).
    pub fn is_idle(&self) -> bool {
        self.hdr_have == 0
    }

    /// Bytes of the current frame already consumed (0 at a frame boundary). A caller that
    /// moves its destination buffer mid-frame must move this many bytes along.
    pub fn partial(&self) -> usize {
        if self.hdr_have == 2 {
            self.have
        } else {
            0
        }
    }

    /// Consumes bytes from `input` until one frame completes or the input ends. Returns the
    /// bytes consumed and the event, if one happened. Frames longer than `dst` are skipped.
    pub fn feed(&mut self, input: &[u8], dst: &mut [u8]) -> (usize, Option<Event>) {
        let mut used = 0;
        while self.hdr_have < 2 {
            let Some(&b) = input.get(used) else {
                return (used, None);
            };
            self.hdr[self.hdr_have as usize] = b;
            self.hdr_have += 1;
            used += 1;
            if self.hdr_have == 2 {
                self.len = u16::from_be_bytes(self.hdr) as usize;
                self.have = 0;
                if self.len == 0 {
                    self.hdr_have = 0;
                    return (used, Some(Event::Empty));
                }
            }
        }
        let want = self.len - self.have;
        let take = want.min(input.len() - used);
        if self.len <= dst.len() {
            dst[self.have..self.have + take].copy_from_slice(&input[used..used + take]);
        }
        self.have += take;
        used += take;
        if self.have < self.len {
            return (used, None);
        }
        self.hdr_have = 0;
        let ev = if self.len <= dst.len() {
            Event::Frame(self.len)
        } else {
            Event::Oversize(self.len)
        };
        (used, Some(ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(stream: &[u8], chunk: usize, max: usize) -> Vec<Result<Vec<u8>, usize>> {
        let mut d = Decoder::new();
        let mut dst = vec![0u8; max];
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            let mut off = 0;
            while off < piece.len() {
                let (n, ev) = d.feed(&piece[off..], &mut dst);
                off += n;
                match ev {
                    Some(Event::Frame(l)) => out.push(Ok(dst[..l].to_vec())),
                    Some(Event::Oversize(l)) => out.push(Err(l)),
                    Some(Event::Empty) => out.push(Ok(Vec::new())),
                    None => assert_eq!(off, piece.len()),
                }
            }
        }
        out
    }

    #[test]
    fn header_is_big_endian() {
        assert_eq!(header(0x1234), [0x12, 0x34]);
        let mut out = [0u8; 8];
        assert_eq!(encode(&[1, 2, 3], &mut out), Some(5));
        assert_eq!(&out[..5], &[0, 3, 1, 2, 3]);
        assert_eq!(encode(&[0; 7], &mut out), None);
    }

    #[test]
    fn reassembles_any_split() {
        let frames: Vec<Vec<u8>> = (0..40u32)
            .map(|i| (0..(i * 37 % 300 + 1)).map(|b| (b ^ i) as u8).collect())
            .collect();
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend_from_slice(&header(f.len()));
            stream.extend_from_slice(f);
        }
        for chunk in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let got = decode_all(&stream, chunk, 400);
            let want: Vec<_> = frames.iter().cloned().map(Ok).collect();
            assert_eq!(got, want, "chunk {chunk}");
        }
    }

    #[test]
    fn oversize_is_skipped_and_stream_stays_in_sync() {
        let mut stream = Vec::new();
        for f in [vec![7u8; 10], vec![8u8; 50], vec![9u8; 3]] {
            stream.extend_from_slice(&header(f.len()));
            stream.extend_from_slice(&f);
        }
        for chunk in [1, 5, 100] {
            let got = decode_all(&stream, chunk, 20);
            assert_eq!(got, vec![Ok(vec![7u8; 10]), Err(50), Ok(vec![9u8; 3])]);
        }
    }

    #[test]
    fn empty_frame_is_reported() {
        let got = decode_all(&[0, 0, 0, 1, 5], 1, 10);
        assert_eq!(got, vec![Ok(vec![]), Ok(vec![5])]);
    }
}
