//! vdens-fast: a drop-in replacement for VirtualSquare's vdens with an io_uring data plane.
//! See ARCHITECTURE in the README for the module map.

pub mod cli;
pub mod engine;
pub mod ns;
pub mod switch;
pub mod sys;
pub mod transport;
pub mod vnl;
pub mod wire;
