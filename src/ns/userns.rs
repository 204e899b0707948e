//! Creating the user, network, UTS (and mount) namespaces, and the one-line id maps.

use super::NsError;
use nix::sched::{unshare, CloneFlags};
use std::fs;
use std::io;

/// Reads a sysctl under /proc/sys as a number, when it exists.
fn sysctl(path: &str) -> Option<i64> {
    fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Explains why the kernel refused a user namespace, from the knobs distributions use.
pub fn userns_hint(err: &io::Error) -> String {
    if sysctl("kernel/unprivileged_userns_clone") == Some(0) {
        return "unprivileged user namespaces are disabled: kernel.unprivileged_userns_clone=0; \
                as root: sysctl -w kernel.unprivileged_userns_clone=1"
            .into();
    }
    if sysctl("user/max_user_namespaces") == Some(0) {
        return "user namespaces are disabled: user.max_user_namespaces=0; \
                as root: sysctl -w user.max_user_namespaces=15000"
            .into();
    }
    if sysctl("kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return "AppArmor restricts unprivileged user namespaces: \
                kernel.apparmor_restrict_unprivileged_userns=1; load vdens-fast's profile (its \
                package installs it for /usr/bin/vdens-fast and /usr/bin/vdeplug-fast): \
                sudo apparmor_parser -r /etc/apparmor.d/vdens-fast, or as root: \
                sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
            .into();
    }
    match err.raw_os_error() {
        Some(libc::ENOSPC) => format!(
            "the limit of nested or per-user user namespaces is reached: user.max_user_namespaces={}; \
             raise it with sysctl, or leave some namespaces",
            sysctl("user/max_user_namespaces").map_or("?".into(), |v| v.to_string())
        ),
        Some(libc::EPERM) if nix::unistd::geteuid().as_raw() == overflow_uid() => {
            "your user id is not mapped in the current user namespace; run vdens-fast from a \
             namespace that maps your uid"
                .into()
        }
        Some(libc::EPERM) => "the kernel or a seccomp filter, such as a container's default profile, \
                              forbids creating user namespaces here"
            .into(),
        Some(libc::EINVAL) => {
            "the process is multithreaded: VNLs opened through libvdeplug, such as slirp://, start \
             threads; use -c/--clone, or neither -c nor -u"
                .into()
        }
        _ => "see user_namespaces(7)".into(),
    }
}

fn overflow_uid() -> u32 {
    sysctl("kernel/overflowuid").map_or(65534, |v| v as u32)
}

/// unshare(2) of user + net + UTS (+ mount) namespaces in the calling (single-threaded) process.
pub fn unshare_all(mount: bool) -> Result<(), NsError> {
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    if mount {
        flags |= CloneFlags::CLONE_NEWNS;
    }
    unshare(flags).map_err(|e| {
        let err = io::Error::from(e);
        NsError::new("cannot create user namespace", &err, Some(userns_hint(&err)))
    })
}

/// Writes the one-line uid/gid maps of the caller's own ids (outside ids = inside ids) for this
/// process, after it unshared its user namespace; `setgroups` is denied first, as the kernel
/// requires of an unprivileged gid_map writer.
pub fn write_own_maps(uid: u32, gid: u32) -> Result<(), NsError> {
    let w = |file: &str, text: String| -> Result<(), NsError> {
        fs::write(format!("/proc/self/{file}"), text.as_bytes()).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                if sysctl("kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
                    userns_hint(&e)
                } else {
                    format!(
                        "the kernel refused mapping id {} to itself; see user_namespaces(7)",
                        if file == "uid_map" { uid } else { gid }
                    )
                }
            } else if e.raw_os_error() == Some(libc::EROFS) {
                "/proc is mounted read-only here; the id maps need a writable /proc".into()
            } else {
                "see user_namespaces(7)".into()
            };
            NsError::new(format!("cannot write /proc/self/{file}"), &e, Some(hint))
        })
    };
    w("uid_map", format!("{uid} {uid} 1\n"))?;
    // setgroups may be missing on very old kernels; a failure here shows up on gid_map.
    let _ = fs::write("/proc/self/setgroups", b"deny\n");
    w("gid_map", format!("{gid} {gid} 1\n"))?;
    Ok(())
}
