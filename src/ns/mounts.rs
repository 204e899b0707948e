//! Host name and resolv.conf inside the namespaces (vdens -H, -r, -R).

use super::NsError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const RESOLV: &str = "/etc/resolv.conf";

/// Sets the host name to `name`'s bytes, UTF-8 or not (vdens: sethostname(argv's bytes)).
pub fn set_hostname(name: &std::ffi::OsStr) -> Result<(), NsError> {
    nix::unistd::sethostname(name)
        .map_err(|e| NsError::new(format!("cannot set host name {name:?}"), &e.into(), None))
}

/// Makes every mount a slave of the caller's, as in vdens: mounts made here do not propagate
/// back to the caller's mount namespace, and mounts the caller makes later on a shared mount
/// still show up here. (The kernel already turns the shared mounts of a mount namespace copied
/// into a less privileged user namespace into slaves, mount_namespaces(7), which is all vdens
/// relies on; MS_SLAVE leaves slave and private mounts as they are, so this only says it.)
pub fn make_slave() -> Result<(), NsError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| NsError::new("cannot make the mounts slaves of the caller's", &e.into(), None))
}

fn bind(src: &Path) -> Result<(), NsError> {
    mount(Some(src), RESOLV, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        NsError::new(
            format!("cannot bind {} over {RESOLV}", src.display()),
            &e.into(),
            Some("the file must exist on both sides".into()),
        )
    })
}

/// Binds `file` over /etc/resolv.conf.
pub fn bind_resolvconf(file: &Path) -> Result<(), NsError> {
    bind(file)
}

/// Directories a scratch tmpfs may cover for a moment (the first that exists and does not hold
/// the file /etc/resolv.conf leads to).
fn scratch_dirs() -> Vec<PathBuf> {
    vec![
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/mnt"),
    ]
}

/// Binds a file holding `text` (the `nameserver` lines of -R) over /etc/resolv.conf, with mode
/// 0400 as vdens's. The file is on a tmpfs of this mount namespace that no path shows: it is
/// mounted over a scratch directory, the file is written and bound, and the tmpfs is detached
/// at once (the bind keeps it alive). Nothing is ever written to a shared directory, so no
/// other user can get in the way (vdens's /tmp/vdensmountXXXXXX, an earlier
/// $TMPDIR/vdens-fast-resolv.PID), and nothing is left behind however vdens-fast ends. Only
/// this single-threaded set-up process is in the new mount namespace while the directory is
/// covered, and mounts made here do not propagate out of it.
pub fn write_resolvaddr(text: &[u8]) -> Result<(), NsError> {
    let target = std::fs::canonicalize(RESOLV).unwrap_or_else(|_| PathBuf::from(RESOLV));
    let dir = scratch_dirs()
        .into_iter()
        .find(|d| d.is_dir() && !target.starts_with(d))
        .ok_or_else(|| {
            NsError::msg("-R: no directory to mount a scratch tmpfs on (/tmp is missing)".into())
        })?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("vdens-fast"),
        &dir,
        Some("tmpfs"),
        flags,
        Some("mode=0700,size=64k"),
    )
    .map_err(|e| {
        NsError::new(
            format!("-R: cannot mount a scratch tmpfs on {}", dir.display()),
            &e.into(),
            None,
        )
    })?;
    let file = dir.join("resolv.conf");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&file)
        .and_then(|mut f| f.write_all(text));
    let r = match written {
        Ok(()) => bind(&file),
        Err(e) => Err(NsError::new("-R: cannot write the private resolv.conf", &e, None)),
    };
    let _ = umount2(&dir, MntFlags::MNT_DETACH);
    r
}
