//! Commands from the control thread to a data-plane thread, and their dispatch, written once
//! for every loop: a loop says what it can do ([`Control`]), [`dispatch`] does the rest.

use crate::engine::node::Endpoint;
use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use std::fmt;

/// Control thread -> data-plane thread.
pub enum Cmd {
    /// Publish the counters now, then acknowledge.
    Publish(Sender<()>),
    /// Finish: cancel what is in flight, publish the final counters, release the ports.
    Stop,
    /// Nodes only: attach an endpoint, answer its port number.
    AddEndpoint(Endpoint, Sender<Result<u16, EndpointError>>),
    /// Nodes only: detach the endpoint on this port (its descriptors close).
    RemoveEndpoint(u16),
}

/// Why an endpoint could not be attached to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    /// Every port of node `node` is taken.
    NoFreePort { node: String },
    /// A call on the endpoint's descriptors failed: the endpoint (`NAME (VNL)`), what was
    /// done, and the system's reason.
    Sys {
        label: String,
        what: &'static str,
        errno: Errno,
    },
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::NoFreePort { node } => write!(f, "{node}: no free port"),
            EndpointError::Sys { label, what, errno } => write!(f, "{label}: {what}: {}", errno.desc()),
        }
    }
}

impl std::error::Error for EndpointError {}

/// What a data-plane loop does for the commands.
pub trait Control {
    /// Publishes the counters to the shared atomics.
    fn publish(&mut self);
    /// Attaches an endpoint; its port number.
    fn add_endpoint(&mut self, e: Endpoint) -> Result<u16, EndpointError>;
    /// Detaches the endpoint on port `id`.
    fn remove_endpoint(&mut self, id: u16);
}

/// Carries out every command queued; true when one of them was Stop (the others queued with
/// it are still carried out, so a Publish sent just before Stop is answered).
pub fn dispatch(cmds: &Receiver<Cmd>, c: &mut impl Control) -> bool {
    let mut stop = false;
    while let Ok(cmd) = cmds.try_recv() {
        match cmd {
            Cmd::Publish(ack) => {
                c.publish();
                let _ = ack.send(());
            }
            Cmd::Stop => stop = true,
            Cmd::AddEndpoint(e, ack) => {
                let _ = ack.send(c.add_endpoint(e));
            }
            Cmd::RemoveEndpoint(id) => c.remove_endpoint(id),
        }
    }
    stop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen {
        published: usize,
        removed: Vec<u16>,
    }

    impl Control for Seen {
        fn publish(&mut self) {
            self.published += 1;
        }
        fn add_endpoint(&mut self, _e: Endpoint) -> Result<u16, EndpointError> {
            Ok(7)
        }
        fn remove_endpoint(&mut self, id: u16) {
            self.removed.push(id);
        }
    }

    #[test]
    fn every_command_is_carried_out_and_stop_reported() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        tx.send(Cmd::RemoveEndpoint(3)).unwrap();
        tx.send(Cmd::Stop).unwrap();
        tx.send(Cmd::Publish(ack_tx)).unwrap();
        let mut s = Seen::default();
        assert!(dispatch(&rx, &mut s));
        assert_eq!(s.published, 1);
        assert_eq!(s.removed, vec![3]);
        assert!(ack_rx.try_recv().is_ok(), "publish acknowledged");
        assert!(!dispatch(&rx, &mut s), "nothing left");
    }

    #[test]
    fn an_endpoint_added_is_answered() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        let e = Endpoint::Tap {
            name: "t".into(),
            fd: std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").unwrap()),
            offload: crate::engine::TapOffload::NONE,
        };
        tx.send(Cmd::AddEndpoint(e, ack_tx)).unwrap();
        assert!(!dispatch(&rx, &mut Seen::default()));
        assert_eq!(ack_rx.try_recv().unwrap(), Ok(7));
    }

    /// The texts users see (after "cannot add the endpoint: " or "worker setup failed: ").
    #[test]
    fn endpoint_errors_read_as_one_line() {
        let full = EndpointError::NoFreePort { node: "sw".into() };
        assert_eq!(full.to_string(), "sw: no free port");
        let sys = EndpointError::Sys {
            label: "vde0 (vde:///tmp/sw)".into(),
            what: "cannot make it non-blocking",
            errno: Errno::EBADF,
        };
        assert_eq!(
            sys.to_string(),
            format!(
                "vde0 (vde:///tmp/sw): cannot make it non-blocking: {}",
                Errno::EBADF.desc()
            )
        );
    }
}
