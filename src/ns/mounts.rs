//! Host name and resolv.conf inside the namespaces (vdens -H, -r, -R).

use super::NsError;
use nix::mount::{mount, MsFlags};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const RESOLV: &str = "/etc/resolv.conf";

pub fn set_hostname(name: &str) -> Result<(), NsError> {
    nix::unistd::sethostname(name)
        .map_err(|e| NsError::new(&format!("cannot set host name {name:?}"), &e.into(), None))
}

/// Keeps mounts made here from propagating back to the host's mount namespace.
pub fn make_private() -> Result<(), NsError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| NsError::new("cannot make mounts private", &e.into(), None))
}

fn bind(src: &Path) -> Result<(), NsError> {
    mount(Some(src), RESOLV, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        NsError::new(
            &format!("cannot bind {} over {RESOLV}", src.display()),
            &e.into(),
            Some("the file must exist on both sides".into()),
        )
    })
}

/// Binds `file` over /etc/resolv.conf.
pub fn bind_resolvconf(file: &Path) -> Result<(), NsError> {
    bind(file)
}

/// Writes `text` (the `nameserver` lines of -R) to a private file and binds it over
/// /etc/resolv.conf; the file is unlinked at once, so nothing is left behind.
pub fn write_resolvaddr(text: &str) -> Result<(), NsError> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("vdens-fast-resolv.{}", std::process::id()));
    let make = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        Ok(())
    };
    if let Err(e) = make() {
        let _ = std::fs::remove_file(&path);
        return Err(NsError::new(
            &format!("cannot write {}", path.display()),
            &e,
            None,
        ));
    }
    let r = bind(&path);
    let _ = std::fs::remove_file(&path);
    r
}
