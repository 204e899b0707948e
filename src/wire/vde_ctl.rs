//! The request a vde:// client sends on a switch's control stream, and the switch's answer
//! (libvdeplug_vde.c v4.0.1 `struct request_v3`; vde-2 datasock.c; vdeplug4 netnode).
//!
//! Layout, packed, host byte order:
//! `u32 magic 0xfeedface | u32 version 3 | u32 type | struct sockaddr_un (u16 family + 108-byte
//! path) | description (at most 128 bytes, sent without padding or NUL)`. The type is
//! REQ_NEW_CONTROL (0) with the wanted port number in bits 8 and up, or REQ_NEW_PORT0 (1).
//! The switch answers with the `struct sockaddr_un` of its own data socket for this port.

use std::fmt;

pub const SWITCH_MAGIC: u32 = 0xfeed_face;
pub const VERSION: u32 = 3;
/// `sizeof(struct sockaddr_un)` on Linux.
pub const SOCKADDR_UN_LEN: usize = 110;
/// `sun_path` bytes, NUL included.
pub const SUN_PATH_LEN: usize = 108;
/// libvdeplug's MAXDESCR.
pub const MAX_DESCR: usize = 128;
/// Everything before the description.
pub const HEADER_LEN: usize = 12 + SOCKADDR_UN_LEN;
const AF_UNIX: u16 = 1;

/// What the client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    /// Any free port (REQ_NEW_CONTROL).
    NewControl,
    /// The switch's port 0 (REQ_NEW_PORT0, libvdeplug's `[0]`).
    NewPort0,
    /// A given port N > 0: REQ_NEW_CONTROL + (N << 8).
    Port(u32),
}

impl RequestType {
    pub fn code(self) -> u32 {
        match self {
            RequestType::NewControl => 0,
            RequestType::NewPort0 => 1,
            RequestType::Port(n) => n << 8,
        }
    }

    pub fn from_code(c: u32) -> RequestType {
        match (c & 0xff, c >> 8) {
            (1, _) => RequestType::NewPort0,
            (_, 0) => RequestType::NewControl,
            (_, n) => RequestType::Port(n),
        }
    }
}

/// A decoded or to-be-encoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: RequestType,
    /// Path of the client's bound data socket (no NUL).
    pub sock_path: Vec<u8>,
    pub description: Vec<u8>,
    /// The client takes super-frames on its data socket (`superframe::MARK` after the path).
    pub superframes: bool,
}

/// Why bytes are not a valid request or answer, or a request cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtlError {
    PathTooLong(usize),
    Short {
        len: usize,
        need: usize,
    },
    BadMagic(u32),
    BadVersion(u32),
    BadFamily(u16),
    /// The port does not fit the type field (N << 8 must fit a u32).
    PortTooLarge(u32),
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::PathTooLong(n) => {
                write!(f, "socket path of {n} bytes does not fit sun_path (107 at most)")
            }
            CtlError::Short { len, need } => write!(
                f,
                "message of {len} bytes is too short (at least {need} expected)"
            ),
            CtlError::BadMagic(m) => write!(f, "bad magic {m:#010x} (expected 0xfeedface)"),
            CtlError::BadVersion(v) => write!(f, "unsupported request version {v} (expected 3)"),
            CtlError::BadFamily(a) => write!(f, "address family {a} is not AF_UNIX"),
            CtlError::PortTooLarge(p) => write!(f, "port {p} does not fit the request"),
        }
    }
}

impl std::error::Error for CtlError {}

/// A `struct sockaddr_un` as bytes. Paths starting with NUL are abstract names.
pub fn encode_sockaddr(path: &[u8]) -> Result<[u8; SOCKADDR_UN_LEN], CtlError> {
    if path.len() >= SUN_PATH_LEN {
        return Err(CtlError::PathTooLong(path.len()));
    }
    let mut out = [0u8; SOCKADDR_UN_LEN];
    out[..2].copy_from_slice(&AF_UNIX.to_ne_bytes());
    out[2..2 + path.len()].copy_from_slice(path);
    Ok(out)
}

/// Like [`encode_sockaddr`], with `superframe::MARK` after the path when `mark` and it fits;
/// the second value says whether it was put there.
pub fn encode_sockaddr_marked(path: &[u8], mark: bool) -> Result<([u8; SOCKADDR_UN_LEN], bool), CtlError> {
    let mut out = encode_sockaddr(path)?;
    let marked = mark && super::superframe::mark_path(&mut out[2..], path.len());
    Ok((out, marked))
}

/// Whether a `struct sockaddr_un` (an answer, or a request's) offers super-frames.
pub fn sockaddr_marked(b: &[u8]) -> bool {
    b.len() > 2 && super::superframe::path_marked(&b[2..b.len().min(SOCKADDR_UN_LEN)])
}

/// An address from a switch's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnixAddr {
    /// A filesystem path (up to the first NUL).
    Path(Vec<u8>),
    /// An abstract name: every byte after the leading NUL, as C passes the whole structure.
    Abstract(Vec<u8>),
}

/// Decodes a `struct sockaddr_un` (the switch's answer may be shorter than 110 bytes; the
/// path then ends with the message).
pub fn decode_sockaddr(b: &[u8]) -> Result<UnixAddr, CtlError> {
    if b.len() < 3 {
        return Err(CtlError::Short {
            len: b.len(),
            need: 3,
        });
    }
    let fam = u16::from_ne_bytes([b[0], b[1]]);
    if fam != AF_UNIX {
        return Err(CtlError::BadFamily(fam));
    }
    let path = &b[2..b.len().min(SOCKADDR_UN_LEN)];
    if path[0] == 0 {
        return Ok(UnixAddr::Abstract(path[1..].to_vec()));
    }
    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
    Ok(UnixAddr::Path(path[..end].to_vec()))
}

impl Request {
    /// The bytes to send: header plus the description (cut to 127 bytes, no NUL), as
    /// libvdeplug sends `sizeof(req) - MAXDESCR + strlen(description)`.
    pub fn encode(&self) -> Result<Vec<u8>, CtlError> {
        if let RequestType::Port(n) = self.kind {
            if n > u32::MAX >> 8 {
                return Err(CtlError::PortTooLarge(n));
            }
        }
        let (addr, _) = encode_sockaddr_marked(&self.sock_path, self.superframes)?;
        let descr = &self.description[..self.description.len().min(MAX_DESCR - 1)];
        let descr = &descr[..descr.iter().position(|&c| c == 0).unwrap_or(descr.len())];
        let mut out = Vec::with_capacity(HEADER_LEN + descr.len());
        out.extend_from_slice(&SWITCH_MAGIC.to_ne_bytes());
        out.extend_from_slice(&VERSION.to_ne_bytes());
        out.extend_from_slice(&self.kind.code().to_ne_bytes());
        out.extend_from_slice(&addr);
        out.extend_from_slice(descr);
        Ok(out)
    }

    /// Reads a request as a switch does (for the in-process switch and tests).
    pub fn decode(b: &[u8]) -> Result<Request, CtlError> {
        if b.len() < HEADER_LEN {
            return Err(CtlError::Short {
                len: b.len(),
                need: HEADER_LEN,
            });
        }
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if u32_at(0) != SWITCH_MAGIC {
            return Err(CtlError::BadMagic(u32_at(0)));
        }
        if u32_at(4) != VERSION {
            return Err(CtlError::BadVersion(u32_at(4)));
        }
        let sock_path = match decode_sockaddr(&b[12..HEADER_LEN])? {
            UnixAddr::Path(p) => p,
            UnixAddr::Abstract(mut a) => {
                a.insert(0, 0);
                a
            }
        };
        let d = &b[HEADER_LEN..b.len().min(HEADER_LEN + MAX_DESCR)];
        let d = &d[..d.iter().position(|&c| c == 0).unwrap_or(d.len())];
        Ok(Request {
            kind: RequestType::from_code(u32_at(8)),
            sock_path,
            description: d.to_vec(),
            superframes: sockaddr_marked(&b[12..HEADER_LEN]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let r = Request {
            kind: RequestType::Port(5),
            sock_path: b"/tmp/sw/.01234-00000".to_vec(),
            description: b"vdens-fast user=u pid=1".to_vec(),
            superframes: false,
        };
        let b = r.encode().unwrap();
        assert_eq!(b.len(), 122 + 23);
        assert_eq!(&b[0..4], &0xfeedfaceu32.to_ne_bytes());
        assert_eq!(&b[4..8], &3u32.to_ne_bytes());
        assert_eq!(&b[8..12], &(5u32 << 8).to_ne_bytes());
        assert_eq!(&b[12..14], &1u16.to_ne_bytes());
        assert_eq!(&b[14..34], b"/tmp/sw/.01234-00000");
        assert!(b[34..122].iter().all(|&c| c == 0));
        assert_eq!(&b[122..], b"vdens-fast user=u pid=1");
        assert_eq!(Request::decode(&b).unwrap(), r);
    }

    #[test]
    fn request_types() {
        for (k, code) in [
            (RequestType::NewControl, 0u32),
            (RequestType::NewPort0, 1),
            (RequestType::Port(1), 0x100),
            (RequestType::Port(0xff_ffff), 0xffff_ff00),
        ] {
            assert_eq!(k.code(), code);
            assert_eq!(RequestType::from_code(code), k);
        }
        let r = Request {
            kind: RequestType::Port(1 << 24),
            sock_path: b"/x".to_vec(),
            description: vec![],
            superframes: false,
        };
        assert_eq!(r.encode(), Err(CtlError::PortTooLarge(1 << 24)));
    }

    #[test]
    fn description_is_cut() {
        let r = Request {
            kind: RequestType::NewControl,
            sock_path: b"/x".to_vec(),
            description: vec![b'd'; 300],
            superframes: false,
        };
        let b = r.encode().unwrap();
        assert_eq!(b.len(), HEADER_LEN + 127);
        let r = Request {
            description: b"ab\0cd".to_vec(),
            ..r
        };
        assert_eq!(r.encode().unwrap().len(), HEADER_LEN + 2);
    }

    #[test]
    fn bad_requests() {
        let good = Request {
            kind: RequestType::NewControl,
            sock_path: b"/x".to_vec(),
            description: vec![],
            superframes: false,
        }
        .encode()
        .unwrap();
        assert_eq!(
            Request::decode(&good[..100]),
            Err(CtlError::Short { len: 100, need: 122 })
        );
        let mut m = good.clone();
        m[0] ^= 1;
        assert!(matches!(Request::decode(&m), Err(CtlError::BadMagic(_))));
        let mut v = good.clone();
        v[4..8].copy_from_slice(&2u32.to_ne_bytes());
        assert_eq!(Request::decode(&v), Err(CtlError::BadVersion(2)));
        let long = Request {
            sock_path: vec![b'p'; 108],
            ..Request::decode(&good).unwrap()
        };
        assert_eq!(long.encode(), Err(CtlError::PathTooLong(108)));
        let max = Request {
            sock_path: vec![b'p'; 107],
            ..Request::decode(&good).unwrap()
        };
        assert_eq!(Request::decode(&max.encode().unwrap()).unwrap(), max);
    }

    #[test]
    fn answers() {
        let a = encode_sockaddr(b"/tmp/sw/fd3").unwrap();
        assert_eq!(decode_sockaddr(&a), Ok(UnixAddr::Path(b"/tmp/sw/fd3".to_vec())));
        assert_eq!(
            decode_sockaddr(&a[..13]),
            Ok(UnixAddr::Path(b"/tmp/sw/fd3".to_vec()))
        );
        assert_eq!(decode_sockaddr(&a[..2]), Err(CtlError::Short { len: 2, need: 3 }));
        let mut ab = [0u8; SOCKADDR_UN_LEN];
        ab[..2].copy_from_slice(&1u16.to_ne_bytes());
        ab[3] = b'z';
        match decode_sockaddr(&ab).unwrap() {
            UnixAddr::Abstract(n) => {
                assert_eq!(n.len(), 107);
                assert_eq!(n[0], b'z');
            }
            other => panic!("{other:?}"),
        }
        let mut bad = a;
        bad[..2].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(decode_sockaddr(&bad), Err(CtlError::BadFamily(2)));
    }
}
