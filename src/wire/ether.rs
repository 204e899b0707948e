//! A zero-copy view of an Ethernet frame: addresses, EtherType and the 802.1Q VLAN tag.

/// Shortest frame vdens-fast handles: two addresses and an EtherType.
pub const HEADER_LEN: usize = 14;
/// Longest frame on a VDE network: VDE_MAXMTU 9216 + Ethernet header 14 + an 802.1Q tag 4
/// (libvdeplug.h VDE_ETHBUFSIZE).
pub const MAX_FRAME: usize = 9216 + 14 + 4;

const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

/// Why bytes are not an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherError {
    /// Shorter than the 14-byte header.
    Truncated(usize),
    /// Longer than [`MAX_FRAME`].
    Oversize(usize),
}

impl std::fmt::Display for EtherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtherError::Truncated(n) => write!(f, "frame of {n} bytes is shorter than an Ethernet header"),
            EtherError::Oversize(n) => write!(f, "frame of {n} bytes exceeds the VDE maximum of {MAX_FRAME}"),
        }
    }
}

/// A checked view: after [`Frame::new_checked`] no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_checked(buf: T) -> Result<Frame<T>, EtherError> {
        let n = buf.as_ref().len();
        if n < HEADER_LEN {
            return Err(EtherError::Truncated(n));
        }
        if n > MAX_FRAME {
            return Err(EtherError::Oversize(n));
        }
        Ok(Frame { buf })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    pub fn dst(&self) -> [u8; 6] {
        self.b()[0..6].try_into().unwrap_or([0; 6])
    }

    pub fn src(&self) -> [u8; 6] {
        self.b()[6..12].try_into().unwrap_or([0; 6])
    }

    /// The outer EtherType or TPID.
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.b()[12], self.b()[13]])
    }

    /// The VLAN id of an 802.1Q (or 802.1ad outer) tag, 0 for untagged frames (and for a tag
    /// cut short).
    pub fn vlan(&self) -> u16 {
        let t = self.ethertype();
        if (t == TPID_8021Q || t == TPID_8021AD) && self.b().len() >= HEADER_LEN + 4 {
            u16::from_be_bytes([self.b()[14], self.b()[15]]) & 0x0fff
        } else {
            0
        }
    }

    pub fn len(&self) -> usize {
        self.b().len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// True for group (multicast and broadcast) addresses: the I/G bit of the first octet.
pub fn is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6], rest: &[u8]) -> Vec<u8> {
        let mut v = dst.to_vec();
        v.extend(src);
        v.extend(rest);
        v
    }

    #[test]
    fn untagged() {
        let f = frame([0xff; 6], [2, 0, 0, 0, 0, 1], &[0x08, 0x06, 0, 1]);
        let f = Frame::new_checked(&f[..]).unwrap();
        assert_eq!(f.dst(), [0xff; 6]);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), 0x0806);
        assert_eq!(f.vlan(), 0);
        assert!(is_group(&f.dst()) && !is_group(&f.src()));
    }

    #[test]
    fn tagged() {
        let f = frame(
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            &[0x81, 0x00, 0xa0, 0x64, 0x08, 0x00],
        );
        let f = Frame::new_checked(f).unwrap();
        assert_eq!(f.vlan(), 100, "PCP bits are not part of the VLAN id");
        // A tag cut short reads as untagged rather than panicking.
        let short = frame([2; 6], [4; 6], &[0x81, 0x00]);
        assert_eq!(Frame::new_checked(short).unwrap().vlan(), 0);
    }

    #[test]
    fn bounds() {
        assert_eq!(
            Frame::new_checked(&[0u8; 13][..]).unwrap_err(),
            EtherError::Truncated(13)
        );
        assert!(Frame::new_checked(vec![0u8; MAX_FRAME]).is_ok());
        assert_eq!(
            Frame::new_checked(vec![0u8; MAX_FRAME + 1]).unwrap_err(),
            EtherError::Oversize(MAX_FRAME + 1)
        );
    }
}
