//! Real-time scheduling for the data-plane threads (`--rt-priority`).
//!
//! A thread may put itself under SCHED_FIFO when its RLIMIT_RTPRIO allows the priority, or
//! with CAP_SYS_NICE in the initial user namespace. vdens-fast's threads run in the user
//! namespace it creates, where capabilities count only for that namespace, so for root the
//! capability is lost with the unshare. The [`Elevator`] keeps it: a small helper process
//! forked before the unshare, still in the initial user namespace, sets the policy of the
//! threads vdens-fast names to it and nothing else, and ends when vdens-fast closes its socket
//! (once the data plane has started).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

/// Puts the calling thread under SCHED_FIFO at `priority` (1-99): it then runs before every
/// normal thread of the machine that wants its CPU. Needs an RLIMIT_RTPRIO of at least
/// `priority` or CAP_SYS_NICE in the initial user namespace (EPERM otherwise).
pub fn set_realtime(priority: u8) -> io::Result<()> {
    set_fifo(0, priority)
}

fn set_fifo(tid: libc::pid_t, priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority.into(),
    };
    // SAFETY: `param` is a valid sched_param for the call's duration; `tid` is a thread id
    // (0: the calling thread).
    if unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's id.
pub fn gettid() -> libc::pid_t {
    nix::unistd::gettid().as_raw()
}

/// The helper that sets SCHED_FIFO on vdens-fast's threads from the initial user namespace.
#[derive(Debug)]
pub struct Elevator {
    sock: Mutex<Option<OwnedFd>>,
    pid: nix::unistd::Pid,
    /// The process that forked the helper: the one that reaps it.
    owner: nix::unistd::Pid,
    reaped: std::sync::atomic::AtomicBool,
}

impl Elevator {
    /// Forks the helper. Call it while the process is single-threaded and still in the
    /// initial user namespace; the helper keeps `priority` and serves the threads of this
    /// process and of its children (vdens -c runs the data plane in a child).
    pub fn start(priority: u8) -> io::Result<Elevator> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let owner = nix::unistd::getpid();
        match super::fork()? {
            super::Forked::Child => {
                drop(mine);
                serve(theirs, owner.as_raw(), priority)
            }
            super::Forked::Parent(pid) => Ok(Elevator {
                sock: Mutex::new(Some(mine)),
                pid,
                owner,
                reaped: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Asks the helper to put thread `tid` under SCHED_FIFO at its priority.
    pub fn raise(&self, tid: libc::pid_t) -> io::Result<()> {
        let guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sock) = guard.as_ref() else {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        };
        nix::unistd::write(sock, &tid.to_ne_bytes())?;
        let mut answer = [0u8; 4];
        match nix::unistd::read(sock, &mut answer)? {
            4 => match i32::from_ne_bytes(answer) {
                0 => Ok(()),
                e => Err(io::Error::from_raw_os_error(e)),
            },
            _ => Err(io::Error::from_raw_os_error(libc::ESRCH)),
        }
    }

    /// Closes this process's end: the helper ends once every copy is closed (a vdens -c
    /// child keeps its own until its data plane has started).
    pub fn close(&self) {
        self.sock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Closes this process's end and waits for the helper to end, when it is this process's
    /// child (in a vdens -c child it is not: its parent reaps it when it ends).
    pub fn finish(&self) {
        self.close();
        if nix::unistd::getpid() != self.owner || self.reaped.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

impl Elevator {
    /// Reaps the helper if it has ended (this process being its parent), without waiting: a
    /// vdens -c parent calls it on SIGCHLD, so the helper is no zombie while the command runs.
    pub fn reap_if_ended(&self) {
        use std::sync::atomic::Ordering;
        if nix::unistd::getpid() != self.owner || self.reaped.load(Ordering::Relaxed) {
            return;
        }
        match nix::sys::wait::waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => {}
            // Ended (or no longer ours to wait for): nothing left to reap.
            _ => self.reaped.store(true, Ordering::Relaxed),
        }
    }
}

impl Drop for Elevator {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Whether thread `tid` belongs to process `owner` or to a child of it.
fn ours(tid: libc::pid_t, owner: libc::pid_t) -> bool {
    let Some(tgid) = status_field(tid, "Tgid:") else {
        return false;
    };
    tgid == owner || status_field(tgid, "PPid:") == Some(owner)
}

/// A process id field (`Tgid:`, `PPid:`) of /proc/`pid`/status.
fn status_field(pid: libc::pid_t, key: &str) -> Option<libc::pid_t> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// The helper's life: one thread id in, an errno out (0: done), until the socket closes.
fn serve(sock: OwnedFd, owner: libc::pid_t, priority: u8) -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) with a signal number; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // Hold nothing of vdens-fast's but the socket (and the standard streams).
    let fd = sock.as_raw_fd();
    // SAFETY: dup2 onto 3 and close_range above it only touch descriptors; the helper uses
    // none of the closed ones again (it owns the socket through fd 3 from here on).
    unsafe {
        if fd != 3 && libc::dup2(fd, 3) < 0 {
            libc::_exit(1);
        }
        libc::close_range(4, u32::MAX, 0);
    }
    std::mem::forget(sock);
    let mut buf = [0u8; 4];
    loop {
        // SAFETY: read(2) into a valid 4-byte buffer from fd 3.
        let n = unsafe { libc::read(3, buf.as_mut_ptr().cast(), 4) };
        if n != 4 {
            // SAFETY: _exit(2) ends the helper without running the parent's exit handlers.
            unsafe { libc::_exit(0) };
        }
        let tid = i32::from_ne_bytes(buf);
        let errno = if tid <= 0 || !ours(tid, owner) {
            libc::EPERM
        } else {
            match set_fifo(tid, priority) {
                Ok(()) => 0,
                Err(e) => e.raw_os_error().unwrap_or(libc::EPERM),
            }
        };
        // SAFETY: write(2) of a valid 4-byte buffer to fd 3.
        unsafe { libc::write(3, errno.to_ne_bytes().as_ptr().cast(), 4) };
    }
}
