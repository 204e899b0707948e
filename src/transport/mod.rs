//! Transports: one file per VNL scheme. `open()` performs the scheme's handshake in the host
//! namespaces and returns a [`Link`]: the descriptors the engine moves frames on, and how frames
//! are delimited there. Transports never move frames themselves; the engine owns the data path.

mod null;

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

/// How frames are delimited on a link's descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One Ethernet frame per datagram, packet or read/write: vde, ptp, seqpacket, udp, tap.
    Datagram,
    /// A byte stream; each frame preceded by its length as 2 bytes big-endian (vdens `=cmd`,
    /// `cmd://`, libvdestream).
    Stream,
    /// Nothing is carried: frames sent are dropped, none arrive (`null://`).
    Null,
}

/// Where a datagram link sends when its socket cannot be connected in advance (ptp's first
/// opener sends to `PATH+` before the peer's socket exists).
#[derive(Clone, Debug)]
pub enum SendTo {
    /// The socket is connected, or the fd is not a socket: plain write/send.
    Connected,
    /// An AF_UNIX datagram destination path.
    Unix(PathBuf),
}

/// What a transport hands the engine: owned descriptors plus their framing.
///
/// Drop order matters: `rx`/`tx` close before `ctl`, so a switch sees the data socket go before
/// the control connection; files in `cleanup` are removed last.
pub struct Link {
    /// The VNL this link was opened from, for messages and stats.
    pub vnl: String,
    pub framing: Framing,
    /// Frames arrive from the network here (None for `null://`).
    pub rx: Option<OwnedFd>,
    /// Frames go to the network here; `None` with `rx` set means the same descriptor.
    pub tx: Option<OwnedFd>,
    /// Destination of sends on a datagram link.
    pub send_to: SendTo,
    /// A control connection whose EOF means the network is gone (vde:// ctl stream).
    pub ctl: Option<OwnedFd>,
    /// Files the transport created, removed when the link is dropped.
    pub cleanup: Vec<PathBuf>,
}

impl Link {
    /// A link that carries nothing.
    pub fn null(vnl: &str) -> Link {
        Link {
            vnl: vnl.to_string(),
            framing: Framing::Null,
            rx: None,
            tx: None,
            send_to: SendTo::Connected,
            ctl: None,
            cleanup: Vec::new(),
        }
    }

    /// The descriptor frames arrive on.
    pub fn rx_fd(&self) -> Option<BorrowedFd<'_>> {
        self.rx.as_ref().map(|f| f.as_fd())
    }

    /// The descriptor frames are sent on (the rx one when the link has a single descriptor).
    pub fn tx_fd(&self) -> Option<BorrowedFd<'_>> {
        self.tx.as_ref().or(self.rx.as_ref()).map(|f| f.as_fd())
    }
}

impl Link {
    /// Closes this copy of the link's descriptors without removing its files: for a process
    /// that handed the link to a child (vdens -c).
    pub fn disown(mut self) {
        self.cleanup.clear();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.rx.take();
        self.tx.take();
        self.ctl.take();
        for p in &self.cleanup {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("vnl", &self.vnl)
            .field("framing", &self.framing)
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("send_to", &self.send_to)
            .finish()
    }
}

/// Why a VNL could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The scheme is not one vdens-fast knows.
    UnknownScheme { vnl: String, scheme: String },
    /// The scheme is known but the VNL is malformed.
    Invalid { vnl: String, why: String },
    /// A system call failed during the handshake.
    Io {
        vnl: String,
        step: &'static str,
        err: std::io::Error,
        hint: Option<String>,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::UnknownScheme { vnl, scheme } => write!(
                f,
                "{vnl}: unknown VNL scheme '{scheme}' (supported: {})",
                SCHEMES.join(", ")
            ),
            OpenError::Invalid { vnl, why } => write!(f, "{vnl}: {why}"),
            OpenError::Io { vnl, step, err, hint } => {
                write!(f, "{vnl}: {step}: {err}")?;
                if let Some(h) = hint {
                    write!(f, " ({h})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// Schemes this build can open.
pub const SCHEMES: &[&str] = &["null://"];

/// Splits `scheme://rest`; a string without `://` is a `vde://` path, as in libvdeplug.
pub fn split_scheme(vnl: &str) -> (&str, &str) {
    match vnl.find("://") {
        Some(i) => (&vnl[..i], &vnl[i + 3..]),
        None => ("vde", vnl),
    }
}

/// Opens a VNL in the current (host) namespaces.
pub fn open(vnl: &str) -> Result<Link, OpenError> {
    let (scheme, rest) = split_scheme(vnl);
    match scheme {
        "null" => null::open(vnl, rest),
        _ => Err(OpenError::UnknownScheme {
            vnl: vnl.to_string(),
            scheme: scheme.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_path_is_vde() {
        assert_eq!(split_scheme("/tmp/sw"), ("vde", "/tmp/sw"));
        assert_eq!(split_scheme("ptp:///tmp/p"), ("ptp", "/tmp/p"));
        assert_eq!(split_scheme("null://"), ("null", ""));
    }

    #[test]
    fn unknown_scheme_is_named() {
        let e = open("bogus://x").unwrap_err().to_string();
        assert!(e.contains("unknown VNL scheme 'bogus'"), "{e}");
    }

    #[test]
    fn null_opens() {
        let l = open("null://").unwrap();
        assert_eq!(l.framing, Framing::Null);
        assert!(l.rx_fd().is_none() && l.tx_fd().is_none());
    }
}
