//! Least privilege for the data-plane threads, once their rings, buffers and descriptors are
//! set up (as passt's isolation does): a frame from a peer is handled by code that can then no
//! longer use the namespace's capabilities, gain privileges by exec, or make any system call
//! outside the short list the data plane needs.
//!
//! Each call works on the calling thread only (capabilities, no_new_privs and a seccomp filter
//! installed without TSYNC are per thread): the main thread keeps what it needs to supervise
//! the command and clean up.

use super::{CapData, CapHeader, LINUX_CAPABILITY_VERSION_3};
use std::io;

/// The system calls a data-plane thread makes after its set-up: moving frames (io_uring,
/// epoll and the socket calls of both engines), accepting and answering clients of a hosted
/// switch (sockets, their files and modes), reconnecting a ptp link, messages on stderr,
/// memory, time, and ending (thread exit, an abort).
const ALLOWED: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_epoll_ctl,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_recvmmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_sendmmsg,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_socket,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_shutdown,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_fcntl,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_unlinkat,
    libc::SYS_openat,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // A hosted switch's files: each client's data socket (mode), and the directory's removal
    // when the node ends (read, unlink, rmdir), by the node's own thread.
    libc::SYS_getdents64,
    libc::SYS_mkdirat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlinkat,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_fstatfs,
    libc::SYS_prlimit64,
    libc::SYS_getcwd,
    libc::SYS_uname,
    libc::SYS_sched_getaffinity,
];

/// The same for the system calls x86_64 has besides their `*at` forms (glibc uses them for
/// unlink(3), chmod(3), rmdir(3), ...).
#[cfg(target_arch = "x86_64")]
const ALLOWED_LEGACY: &[libc::c_long] = &[
    libc::SYS_open,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_unlink,
    libc::SYS_rmdir,
    libc::SYS_mkdir,
    libc::SYS_rename,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_readlink,
    libc::SYS_dup2,
    libc::SYS_pipe,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_LEGACY: &[libc::c_long] = &[];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

// Classic BPF, as seccomp(2) reads it.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 1 << 2;
/// Offsets in struct seccomp_data.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// The low 32 bits of the second argument (little endian): an ioctl's request.
#[cfg(target_endian = "little")]
const ARG1_OFFSET: u32 = 24;
#[cfg(target_endian = "big")]
const ARG1_OFFSET: u32 = 28;
/// The ioctls a data-plane thread may make: what a descriptor a ptp peer passed is (the tap
/// handover, `engine::core::handover`). They only read.
const IOCTLS: [libc::c_ulong; 2] = [super::fdpass::TUNGETIFF, super::fdpass::TUNGETVNETHDRSZ];

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter: the right architecture, then each allowed number returns ALLOW, and ioctl with
/// one of [`IOCTLS`]; anything else fails with EPERM (not a kill: an unforeseen call on a rare
/// path becomes an error the thread reports, not a lost data plane).
fn program(allowed: &[libc::c_long]) -> Vec<libc::sock_filter> {
    let deny = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut p = vec![
        op(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
        op(BPF_JEQ_K, 1, 0, AUDIT_ARCH),
        op(BPF_RET_K, 0, 0, deny),
        op(BPF_LD_W_ABS, 0, 0, NR_OFFSET),
    ];
    for &nr in allowed {
        p.push(op(BPF_JEQ_K, 0, 1, nr as u32));
        p.push(op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    }
    p.push(op(BPF_JEQ_K, 0, 4, libc::SYS_ioctl as u32));
    p.push(op(BPF_LD_W_ABS, 0, 0, ARG1_OFFSET));
    p.push(op(BPF_JEQ_K, 1, 0, IOCTLS[0] as u32));
    p.push(op(BPF_JEQ_K, 0, 1, IOCTLS[1] as u32));
    p.push(op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    p.push(op(BPF_RET_K, 0, 0, deny));
    p
}

/// Drops every capability of the calling thread (effective, permitted, inheritable; ambient
/// go with permitted).
pub fn drop_caps() -> io::Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads the header and two CapData, all valid and initialised.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Confines the calling data-plane thread: no capabilities, no_new_privs, and the seccomp
/// allowlist above; and makes the process non-dumpable (no core file with frames in it, no
/// ptrace by the namespace's other processes).
pub fn confine_data_plane() -> io::Result<()> {
    drop_caps()?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let all: Vec<libc::c_long> = ALLOWED.iter().chain(ALLOWED_LEGACY).copied().collect();
    let mut prog = program(&all);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER, SPEC_ALLOW, prog): the kernel copies the
    // program, which stays valid for the call; without TSYNC it applies to this thread only.
    // SPEC_ALLOW: installing a filter otherwise turns on the speculative store bypass
    // mitigation for the thread (spec_store_bypass_disable=seccomp), which slows every frame;
    // the filter is about what a thread may call, not about side channels.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_allows_the_list_and_denies_the_rest() {
        let p = program(&[1, 2]);
        assert_eq!(p.len(), 4 + 2 * 2 + 5 + 1);
        assert_eq!(p[1].k, AUDIT_ARCH);
        assert_eq!((p[4].code, p[4].k, p[4].jf), (BPF_JEQ_K, 1, 1));
        assert_eq!(p[5].k, SECCOMP_RET_ALLOW);
        assert_eq!(p.last().unwrap().k, SECCOMP_RET_ERRNO | libc::EPERM as u32);
    }

    /// In a thread of its own (the filter is per thread): allowed calls work, others fail
    /// with EPERM, and the thread shows it in /proc.
    #[test]
    fn a_confined_thread_can_move_frames_but_not_exec() {
        std::thread::spawn(|| {
            // Descriptors are made during set-up, before the thread is confined.
            let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
            confine_data_plane().expect("confine");
            a.send(b"frame").unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(b.recv(&mut buf).unwrap(), 5);
            let st = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            assert!(st.contains("NoNewPrivs:\t1"), "{st}");
            assert!(st.contains("Seccomp:\t2"), "{st}");
            assert!(st.contains("CapEff:\t0000000000000000"), "{st}");
            // execve is not on the list.
            let e = std::process::Command::new("/bin/true").status().unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
            // The tun ioctls of the handover are (on a socket: ENOTTY, the kernel's answer),
            // no other ioctl is.
            let info = crate::sys::fdpass::tun_info(std::os::fd::AsFd::as_fd(&a));
            assert_eq!(info.chr, None);
            let mut n: libc::c_int = 0;
            for (req, want) in [
                (crate::sys::fdpass::TUNGETIFF, libc::ENOTTY),
                (crate::sys::fdpass::TUNGETVNETHDRSZ, libc::ENOTTY),
                (libc::FIONREAD, libc::EPERM),
                (libc::TIOCGWINSZ, libc::EPERM),
            ] {
                let mut room = [0u64; 8];
                // SAFETY: each request writes at most 64 bytes through the pointer (room has
                // them), valid for the call.
                let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&a), req, room.as_mut_ptr()) };
                let e = std::io::Error::last_os_error().raw_os_error();
                assert_eq!((r, e), (-1, Some(want)), "ioctl {req:#x}");
                n += 1;
            }
            assert_eq!(n, 4);
        })
        .join()
        .unwrap();
    }
}
