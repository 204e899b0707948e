//! What the caller handed vdens-fast, recorded at start-up so that the command gets exactly that:
//! its descriptors, its signal dispositions (ignored or default), its signal mask, and its closed
//! standard descriptors.
//!
//! The Rust runtime changes some of these before `main` runs: it sets SIGPIPE to SIG_IGN and
//! opens /dev/null on a closed descriptor 0, 1 or 2. So the signal state and the standard
//! descriptors are read by [`record_at_load`], which the binary lists in `.init_array` (the C
//! library runs it before `main` and before the runtime's start-up code); the other descriptors
//! are listed by [`record_inherited_fds`] at the top of `main`.
//!
//! [`restore_in_child`] undoes vdens-fast's own changes in a forked child right before exec; it
//! only makes system calls (the parent may have threads).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

/// Run by the C library before `main` (see the module documentation). glibc calls `.init_array`
/// entries with (argc, argv, envp); in the C calling convention a function taking no arguments
/// may ignore them.
#[used]
#[link_section = ".init_array"]
static RECORD_AT_LOAD: extern "C" fn() = record_at_load;

/// Signals 1..=64 as bits 0..=63.
const NSIG: i32 = 64;

static RECORDED: AtomicBool = AtomicBool::new(false);
/// Bit n-1 set: signal n was SIG_IGN when vdens-fast started.
static IGNORED: AtomicU64 = AtomicU64::new(0);
/// Bit n-1 set: signal n was blocked when vdens-fast started.
static BLOCKED: AtomicU64 = AtomicU64::new(0);
/// Bit n set: descriptor n (0, 1, 2) was closed when vdens-fast started.
static STDIO_CLOSED: AtomicU8 = AtomicU8::new(0);
/// The descriptors from 3 up that the caller passed, ascending.
static INHERITED: OnceLock<Vec<i32>> = OnceLock::new();

fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Signals glibc keeps for itself (SIGCANCEL, SIGSETXID): sigaction and sigaddset refuse them.
fn settable(sig: i32) -> bool {
    !(sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == 32 || sig == 33)
}

/// Records the caller's signal dispositions and mask and which standard descriptors were closed.
/// Meant for `.init_array` (see the module documentation); later calls do nothing.
pub extern "C" fn record_at_load() {
    if RECORDED.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut ignored = 0u64;
    for sig in 1..=NSIG {
        if !settable(sig) {
            continue;
        }
        let mut old = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: sigaction with a null new action only writes the current one into `old`,
        // which is valid for writes.
        if unsafe { libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) } == 0 {
            // SAFETY: zero-initialised and, on success, filled by the kernel.
            if unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN {
                ignored |= bit(sig);
            }
        }
    }
    IGNORED.store(ignored, Ordering::SeqCst);
    let mut mask = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: a null new set only reads the current mask into `mask`, valid for writes.
    if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), mask.as_mut_ptr()) } == 0 {
        let mut blocked = 0u64;
        for sig in 1..=NSIG {
            // SAFETY: `mask` was zero-initialised and filled by pthread_sigmask.
            if unsafe { libc::sigismember(mask.as_ptr(), sig) } == 1 {
                blocked |= bit(sig);
            }
        }
        BLOCKED.store(blocked, Ordering::SeqCst);
    }
    let mut closed = 0u8;
    for fd in 0..3 {
        // SAFETY: F_GETFD on any integer only reports whether it is an open descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            closed |= 1 << fd;
        }
    }
    STDIO_CLOSED.store(closed, Ordering::SeqCst);
}

/// True when the caller had `sig` ignored (SIG_IGN).
pub fn ignored(sig: i32) -> bool {
    (1..=NSIG).contains(&sig) && IGNORED.load(Ordering::SeqCst) & bit(sig) != 0
}

/// True when the caller had `sig` blocked.
pub fn blocked(sig: i32) -> bool {
    (1..=NSIG).contains(&sig) && BLOCKED.load(Ordering::SeqCst) & bit(sig) != 0
}

/// Lists the descriptors from 3 up that are open now: call first thing in `main`, when every
/// open descriptor is one the caller passed. Also records the signal state if `.init_array`
/// did not (then a SIGPIPE the caller ignored is not known: the runtime already ignores it).
pub fn record_inherited_fds() {
    // A use of the `.init_array` entry: the object holding it cannot be left out of the link.
    std::hint::black_box(&RECORD_AT_LOAD);
    record_at_load();
    let mut fds = Vec::new();
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => {
            fds.extend(
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                    .filter(|&fd| fd >= 3),
            );
            // The listing held a descriptor of its own, closed by now: keep the open ones.
        }
        Err(_) => {
            // No /proc: probe every number below the limit (bounded).
            let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map_or(1024, |(soft, _)| soft.min(1 << 16)) as i32;
            fds.extend(3..limit);
        }
    }
    // SAFETY: F_GETFD on any integer only reports whether it is an open descriptor.
    fds.retain(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0);
    fds.sort_unstable();
    let _ = INHERITED.set(fds);
}

/// Makes vdens-fast's own signal handling work whatever the caller left: a SIGCHLD the caller
/// ignored would make the kernel reap the command by itself (and waitpid fail), so it is set
/// back to the default here; [`restore_in_child`] ignores it again for the command.
pub fn own_signal_setup() {
    if ignored(libc::SIGCHLD) {
        set_disposition(libc::SIGCHLD, libc::SIG_DFL);
    }
}

fn set_disposition(sig: i32, handler: libc::sighandler_t) {
    let mut sa = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: an all-zero sigaction is valid (no flags, empty mask); the handler is set to
    // SIG_IGN or SIG_DFL, neither of which is a function the kernel calls.
    unsafe {
        let p = sa.as_mut_ptr();
        (*p).sa_sigaction = handler;
        libc::sigemptyset(&mut (*p).sa_mask);
        libc::sigaction(sig, p, std::ptr::null_mut());
    }
}

/// In a forked child right before exec: every signal back to the caller's disposition (ignored
/// or default), the caller's signal mask, and only the caller's descriptors open (vdens-fast's
/// own are closed even if one lacks close-on-exec, e.g. a libvdeplug plugin's). System calls
/// only, no allocation.
pub fn restore_in_child() {
    restore_signals();
    let closed = STDIO_CLOSED.load(Ordering::SeqCst);
    for fd in 0..3 {
        if closed & (1 << fd) != 0 {
            // SAFETY: the runtime put /dev/null there; nothing in this child uses it.
            unsafe { libc::close(fd) };
        }
    }
    close_not_inherited();
}

/// Makes `cmd`, when spawned, start as a program the caller started would, beside the
/// standard descriptors `cmd` sets up: the caller's signal dispositions and mask, and of the
/// other descriptors only the caller's. For a coprocess (`=cmd`), which libvdeplug forks from
/// vdens with the caller's state.
pub fn spawn_as_the_caller(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child right before exec (after the standard library
    // reset the mask and SIGPIPE, which it then sets to the caller's) and only makes system
    // calls: sigaction, pthread_sigmask, close_range.
    unsafe {
        cmd.pre_exec(|| {
            restore_signals();
            close_not_inherited();
            Ok(())
        })
    };
}

/// Every signal back to the caller's disposition (ignored or default), and the caller's mask.
fn restore_signals() {
    let ignored = IGNORED.load(Ordering::SeqCst);
    for sig in (1..=NSIG).filter(|&s| settable(s)) {
        let h = if ignored & bit(sig) != 0 {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        set_disposition(sig, h);
    }
    let blocked = BLOCKED.load(Ordering::SeqCst);
    let mut mask = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigemptyset/sigaddset initialise and edit the set in place; pthread_sigmask reads
    // it. Signals glibc keeps for itself are refused by sigaddset and never blocked anyway.
    unsafe {
        libc::sigemptyset(mask.as_mut_ptr());
        for sig in 1..=NSIG {
            if blocked & bit(sig) != 0 {
                libc::sigaddset(mask.as_mut_ptr(), sig);
            }
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, mask.as_ptr(), std::ptr::null_mut());
    }
}

/// Closes every descriptor from 3 up that the caller did not pass.
fn close_not_inherited() {
    // Not recorded (a program that does not call record_inherited_fds): nothing is known to
    // be ours, so nothing is closed.
    let Some(inherited) = INHERITED.get() else {
        return;
    };
    // Close the gaps between the inherited descriptors: [3, a), (a, b), ..., (z, max].
    let mut from: u32 = 3;
    for &fd in inherited {
        let fd = fd as u32;
        if fd > from {
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range only closes descriptors; in a child about to exec, no Rust object of
    // this process uses them again.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        assert_eq!(bit(1), 1);
        assert_eq!(bit(64), 1 << 63);
        assert!(!settable(libc::SIGKILL) && !settable(32) && settable(libc::SIGPIPE));
        assert!(!ignored(0) && !ignored(65) && !blocked(-1));
    }
}
