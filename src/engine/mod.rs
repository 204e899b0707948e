//! The data plane. PLACEHOLDER of the foundation issue: it holds the ports (so the taps and links
//! stay open while the command runs) but moves no frames yet; the io_uring engine replaces it.

use crate::cli::EngineChoice;
use crate::transport::Link;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

/// A tap joined to a link.
pub struct Port {
    /// Interface name (`vde0`, ...), for messages and stats.
    pub name: String,
    pub tap: OwnedFd,
    pub link: Link,
}

/// How the engine is to run.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub choice: EngineChoice,
    pub workers: Option<usize>,
    pub cpus: Option<Vec<usize>>,
    pub pin: bool,
    pub stats: Option<PathBuf>,
    pub stats_interval: Duration,
}

#[derive(Debug)]
pub struct EngineError(pub String);

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Engine {
    _ports: Vec<Port>,
}

impl Engine {
    pub fn start(_opts: EngineOptions, ports: Vec<Port>) -> Result<Engine, EngineError> {
        Ok(Engine { _ports: ports })
    }

    /// Writes the statistics now (SIGUSR1).
    pub fn dump_stats(&self) {}

    /// Stops the workers and releases the ports.
    pub fn stop(self) {}
}
