//! The VXLAN header (RFC 7348), also used unchanged by VDE's vxvde: 8 bytes before the frame,
//! `flags(8) reserved(24) VNI(24) reserved(8)`, flags 0x08 = "VNI valid".

/// Bytes before the Ethernet frame in each datagram.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI field is valid.
pub const FLAG_VNI: u8 = 0x08;
/// IANA's VXLAN port; vxvde uses 14789.
pub const VXLAN_PORT: u16 = 4789;
pub const VXVDE_PORT: u16 = 14789;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VxlanError {
    /// Shorter than the header plus an Ethernet header.
    Truncated(usize),
    /// The I flag is not set.
    NoVni,
}

impl std::fmt::Display for VxlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VxlanError::Truncated(n) => write!(f, "VXLAN datagram of {n} bytes is too short"),
            VxlanError::NoVni => write!(f, "VXLAN header without the VNI flag"),
        }
    }
}

/// The header for `vni` (only its low 24 bits are used).
pub fn encode(vni: u32) -> [u8; HEADER_LEN] {
    let v = (vni & MAX_VNI).to_be_bytes();
    [FLAG_VNI, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// The VNI a header carries, when its I flag is set. Other flag bits and the reserved fields
/// are ignored, as RFC 7348 asks of receivers (a Linux vxlan device sends exactly
/// [`encode`]'s bytes). VDE's vxvde is stricter: it takes a datagram only when all eight
/// bytes equal its own header, which callers check by comparing with [`encode`].
pub fn vni_of(h: &[u8; HEADER_LEN]) -> Option<u32> {
    (h[0] & FLAG_VNI != 0).then(|| u32::from_be_bytes([0, h[4], h[5], h[6]]))
}

/// Splits a datagram into its VNI and the Ethernet frame it carries. Reserved bits are ignored,
/// as RFC 7348 asks of receivers.
pub fn decode(datagram: &[u8]) -> Result<(u32, &[u8]), VxlanError> {
    if datagram.len() < HEADER_LEN + crate::wire::ether::HEADER_LEN {
        return Err(VxlanError::Truncated(datagram.len()));
    }
    if datagram[0] & FLAG_VNI == 0 {
        return Err(VxlanError::NoVni);
    }
    let vni = u32::from_be_bytes([0, datagram[4], datagram[5], datagram[6]]);
    Ok((vni, &datagram[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for vni in [0, 1, 42, 0x123456, MAX_VNI] {
            let mut d = encode(vni).to_vec();
            d.extend([0xffu8; 14]);
            let (v, frame) = decode(&d).unwrap();
            assert_eq!(v, vni);
            assert_eq!(frame, &[0xff; 14]);
        }
        assert_eq!(
            encode(1),
            [0x08, 0, 0, 0, 0, 0, 1, 0],
            "the bytes a Linux vxlan device sends for id 1"
        );
        assert_eq!(encode(0x1_000001), encode(1), "VNI is 24 bits");
    }

    #[test]
    fn malformed() {
        assert_eq!(decode(&[0x08; 21]).unwrap_err(), VxlanError::Truncated(21));
        let mut d = vec![0u8; 22];
        assert_eq!(decode(&d).unwrap_err(), VxlanError::NoVni);
        d[0] = 0x08;
        d[1] = 0xff; // reserved bits set: ignored
        assert!(decode(&d).is_ok());
    }

    #[test]
    fn vni_of_header() {
        assert_eq!(vni_of(&encode(0xabcdef)), Some(0xabcdef));
        assert_eq!(
            vni_of(&[0x0c, 1, 2, 3, 0, 0, 7, 9]),
            Some(7),
            "reserved bits ignored"
        );
        assert_eq!(vni_of(&[0x00, 0, 0, 0, 0, 0, 7, 0]), None);
    }
}
