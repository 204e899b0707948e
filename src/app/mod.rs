//! Orchestration of the programs: what a command line asks for and how it is run.

pub mod links;
pub mod vdens;
pub mod vdeplug;
