//! Groups looked up by the bytes of their name, as libvdeplug does (getgrnam on a C string):
//! nix's `Group::from_name` takes a `&str`, so a name that is not UTF-8 could not be found.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;

/// Where glibc's buffer for one group entry starts, and how far it may grow (an entry with
/// many members needs more; ERANGE asks for it).
const FIRST_BUF: usize = 1024;
const MAX_BUF: usize = 1 << 20;

/// The gid of the group named `name`, its bytes as given (UTF-8 or not): `Ok(None)` when no
/// group has that name (a name holding a NUL byte names none), an error when the group
/// database could not be read.
pub fn gid_by_name(name: &[u8]) -> io::Result<Option<u32>> {
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    let mut buf: Vec<u8> = vec![0; FIRST_BUF];
    loop {
        let mut grp = MaybeUninit::<libc::group>::uninit();
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: the name is a NUL-terminated string, grp and found are valid for writes and
        // buf is valid for buf.len() bytes; getgrnam_r writes the entry's strings into buf
        // and nothing outlives this call but the gid copied out below.
        let r = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                grp.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match r {
            0 if found.is_null() => return Ok(None),
            // SAFETY: a non-null result points at grp, which getgrnam_r has filled in.
            0 => return Ok(Some(unsafe { (*found).gr_gid })),
            libc::ERANGE if buf.len() < MAX_BUF => buf.resize(buf.len() * 2, 0),
            // getgrnam_r(3): these too mean "no such group" in some NSS modules.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_groups_by_their_bytes() {
        assert_eq!(gid_by_name(b"root").unwrap(), Some(0));
        let nogroup = nix::unistd::Group::from_name("nogroup")
            .unwrap()
            .map(|g| g.gid.as_raw());
        assert_eq!(gid_by_name(b"nogroup").unwrap(), nogroup);
        assert_eq!(gid_by_name(b"no such group \xff").unwrap(), None);
        assert_eq!(gid_by_name(b"").unwrap(), None);
        assert_eq!(gid_by_name(b"root\0x").unwrap(), None);
    }
}
