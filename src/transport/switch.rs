//! switch:// and hub://: a node hosted in this process. Opening creates the node's directory and
//! listening control socket (in the host namespaces, before unshare); the engine serves clients
//! and forwards frames once it starts. The link itself carries nothing: the node's ports are
//! this process's tap and the clients that join.

use super::{Hosted, Link, OpenError};
use crate::switch::server::{self, Listener};

/// `offload`: the node offers super-frames to the clients that offer them (see
/// `wire::superframe`).
pub fn open(vnl: &str, hub: bool, rest: &std::ffi::OsStr, offload: bool) -> Result<Link, OpenError> {
    let spec = server::parse(hub, rest).map_err(|err| OpenError::Vnl {
        vnl: vnl.to_string(),
        err,
    })?;
    let mut l = Listener::create(&spec).map_err(|(step, e, hint)| OpenError::io(vnl, step, e, hint))?;
    l.superframes = offload;
    let mut link = Link::null(vnl);
    link.node = Some(Hosted::Net(l));
    Ok(link)
}
