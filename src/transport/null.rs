//! `null://`: an interface that carries nothing (libvdeplug_null).

use super::{Link, OpenError};

pub fn open(vnl: &str, _rest: &str) -> Result<Link, OpenError> {
    Ok(Link::null(vnl))
}
