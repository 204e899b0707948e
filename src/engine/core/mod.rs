//! The engine's core: what a frame, a completion or a command means, decided once and free of
//! I/O, so that the loop (on either driver) and the overlays apply
//! the same rules and each rule is unit-tested without sockets.
//!
//! A driver owns descriptors, buffers and submission; it turns what the kernel said (a length,
//! an errno, a stream's bytes) into the core's terms with these functions and acts on the
//! answer. See the README's ARCHITECTURE notes for where the seam is and why.

pub mod control;
pub mod cut;
pub mod frame;
pub mod handover;
pub mod io;
pub mod pair;
pub mod ptp;
pub mod token;

pub use control::{dispatch, Cmd, Control, EndpointError};
pub use frame::{admit, admit_stream, MAX_FRAME};
pub use io::{
    admit_to_queue, classify_rx_error, send_verdict, single_send_drop, Admit, Backpressure, RxFault, Verdict,
    DEST_QCAP,
};
pub use token::{Op, Token};
