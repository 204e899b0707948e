//! The namespace control module: creates the user, network, UTS (and mount) namespaces, writes
//! the id maps, sets the host name and resolv.conf, and runs the command in them with its
//! ambient capabilities (spawn or exec, signal forwarding, exit status). It knows nothing of
//! VNLs, taps or the data plane: `app::vdens` hands it an [`NsSpec`].

pub mod child;
pub mod mounts;
pub mod userns;

use crate::sys;
use std::path::PathBuf;

/// A failed step of the set-up: what failed, why (errno text), and how to fix it.
pub use crate::sys::StepError as NsError;

/// What /etc/resolv.conf is inside the namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolv {
    /// The caller's (no mount namespace is needed for it).
    Host,
    /// This file, bound over it (vdens -r).
    File(PathBuf),
    /// A private file with these bytes (vdens -R: the `nameserver` lines).
    Text(Vec<u8>),
}

/// How the namespaces are to be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsSpec {
    /// Host name of the UTS namespace (vdens -H), as bytes; unchanged when `None`.
    pub hostname: Option<std::ffi::OsString>,
    pub resolv: Resolv,
    /// The command gets CAP_SYS_ADMIN too, and a mount namespace (vdens -s).
    pub sysadm: bool,
}

impl NsSpec {
    /// True when a mount namespace is needed: for resolv.conf, or for the command's own mounts.
    pub fn needs_mount_ns(&self) -> bool {
        self.sysadm || self.resolv != Resolv::Host
    }

    /// Capabilities the command receives as ambient capabilities (vdens's set).
    pub fn command_caps(&self) -> Vec<u32> {
        let mut v = vec![
            sys::CAP_NET_ADMIN,
            sys::CAP_NET_RAW,
            sys::CAP_NET_BIND_SERVICE,
            sys::CAP_NET_BROADCAST,
        ];
        if self.sysadm {
            v.push(sys::CAP_SYS_ADMIN);
        }
        v
    }

    /// Checks, before anything is opened or unshared, that a resolv.conf file to bind can be
    /// read.
    pub fn check_files(&self) -> Result<(), NsError> {
        if let Resolv::File(f) = &self.resolv {
            std::fs::File::open(f).map_err(|e| {
                NsError::new(
                    format!("-r {}: cannot read the resolv.conf file", f.display()),
                    &e,
                    Some("give an existing, readable file, or use -R ADDR".into()),
                )
            })?;
        }
        Ok(())
    }
}

/// The caller's user and group ids, mapped to themselves inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

impl Ids {
    /// This process's effective ids. Read before unshare: afterwards getuid() shows the
    /// overflow id until the maps are written.
    pub fn caller() -> Ids {
        Ids {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }
}

/// Creates the namespaces `spec` asks for in this (single-threaded) process.
pub fn unshare(spec: &NsSpec) -> Result<(), NsError> {
    userns::unshare_all(spec.needs_mount_ns())
}

/// In the new namespaces: the id maps of `ids`, the host name and resolv.conf.
pub fn set_up(spec: &NsSpec, ids: Ids) -> Result<(), NsError> {
    userns::write_own_maps(ids.uid, ids.gid)?;
    if let Some(h) = &spec.hostname {
        mounts::set_hostname(h)?;
    }
    if spec.needs_mount_ns() {
        mounts::make_slave()?;
        match &spec.resolv {
            Resolv::Text(t) => mounts::write_resolvaddr(t)?,
            Resolv::File(f) => mounts::bind_resolvconf(f)?,
            Resolv::Host => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resolv: Resolv, sysadm: bool) -> NsSpec {
        NsSpec {
            hostname: None,
            resolv,
            sysadm,
        }
    }

    #[test]
    fn mount_ns_for_resolv_conf_or_sysadm_only() {
        assert!(!spec(Resolv::Host, false).needs_mount_ns());
        assert!(spec(Resolv::Host, true).needs_mount_ns());
        assert!(spec(Resolv::File("/x".into()), false).needs_mount_ns());
        assert!(spec(Resolv::Text(Vec::new()), false).needs_mount_ns());
    }

    #[test]
    fn sysadm_adds_cap_sys_admin() {
        let net = spec(Resolv::Host, false).command_caps();
        assert_eq!(net.len(), 4);
        assert!(!net.contains(&sys::CAP_SYS_ADMIN));
        let all = spec(Resolv::Host, true).command_caps();
        assert_eq!(&all[..4], &net[..]);
        assert_eq!(all[4], sys::CAP_SYS_ADMIN);
    }
}
