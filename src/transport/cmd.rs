//! `=CMD ARGS` (vdens) and `cmd://CMD ARGS` (libvdeplug_cmd): a coprocess whose stdin and
//! stdout carry the VDE stream (2-byte big-endian length, then the frame). The command line is
//! split like libexecs' coprocsp does (see `vnl::argv`), with no shell.
//!
//! The coprocess runs in its own process group, so a Ctrl-C at the terminal reaches vdens-fast
//! (which stops cleanly) and not the coprocess directly; it stops when its stdin closes (the
//! link dropped) or, failing that, on SIGTERM and then SIGKILL from [`Coproc`]'s drop.

use super::{Framing, Link, OpenError, SendTo};
use std::ffi::OsString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a coprocess gets to exit after its stdin closed, then after SIGTERM.
const GRACE: Duration = Duration::from_millis(1500);

/// The coprocess, shared by its [`Coproc`] (which stops it) and its [`CoprocWatch`] (which
/// reaps it when it ends on its own). Every wait goes through the one `Child`, which keeps
/// the status once reaped: its pid is never waited for again, so a pid reused later (by the
/// command or anyone) is never taken for it.
struct Shared {
    child: Mutex<Child>,
    /// Set when the link is stopping it: its end is then expected, not reported.
    stopping: AtomicBool,
}

impl Shared {
    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running coprocess, stopped and reaped on drop.
pub struct Coproc {
    shared: Option<Arc<Shared>>,
    name: String,
    vnl: String,
}

/// Reaps a coprocess that ended while its link was in use, and says so once: for the loop
/// that waits for the command, to call after each SIGCHLD. It waits for the coprocess's own
/// pid only (never -1), so the command's status is left for its waiter.
pub struct CoprocWatch {
    shared: Arc<Shared>,
    vnl: String,
    done: bool,
}

impl CoprocWatch {
    /// Reaps the coprocess if it has ended: the one line to show the first time (`VNL:
    /// coprocess exited with status N`, or `... was killed by signal N`), None while it runs,
    /// after it was reported, or when the link itself is stopping it.
    pub fn reap(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        // Locked only while the link stops it (its drop): that end is not reported.
        let mut child = match self.shared.child.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let st = match child.try_wait() {
            Ok(Some(st)) => st,
            Ok(None) => return None,
            // ECHILD: not a child of this process (a vdens -c parent's copy).
            Err(_) => {
                self.done = true;
                return None;
            }
        };
        self.done = true;
        if self.shared.stopping.load(Ordering::Relaxed) {
            return None;
        }
        Some(match (st.code(), st.signal()) {
            (Some(c), _) => format!("{}: coprocess exited with status {c}", self.vnl),
            (None, Some(s)) => format!("{}: coprocess was killed by signal {s}", self.vnl),
            _ => format!("{}: coprocess ended ({st})", self.vnl),
        })
    }

    /// Whether [`CoprocWatch::reap`] has nothing more to say.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl Coproc {
    pub fn pid(&self) -> Option<u32> {
        self.shared.as_ref().map(|s| s.child().id())
    }

    /// A watch that reaps the coprocess when it ends on its own, for the loop that waits for
    /// the command (see [`CoprocWatch`]); the coprocess is still stopped by this drop.
    pub fn watch(&self) -> Option<CoprocWatch> {
        self.shared.as_ref().map(|s| CoprocWatch {
            shared: s.clone(),
            vnl: self.vnl.clone(),
            done: false,
        })
    }

    /// Forgets the process without stopping it (its owner is another process now).
    pub fn release(mut self) {
        self.shared.take();
    }

    fn wait_until(child: &mut Child, deadline: Instant) -> bool {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return true,
                // ECHILD: not our child (a vdens -c child holding its parent's links).
                Err(_) => return true,
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

impl Drop for Coproc {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        shared.stopping.store(true, Ordering::Relaxed);
        let mut child = shared.child();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        // The link's pipes are closed before this runs: a VDE stream peer exits on EOF.
        if Self::wait_until(&mut child, Instant::now() + GRACE) {
            return;
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if Self::wait_until(&mut child, Instant::now() + GRACE) {
            return;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl fmt::Debug for Coproc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Coproc({} pid {:?})", self.name, self.pid())
    }
}

pub fn open(vnl: &str, argv: &[OsString]) -> Result<Link, OpenError> {
    let name = argv[0].to_string_lossy().into_owned();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    // As libvdeplug forks it from vdens: with the caller's signal state and descriptors.
    crate::sys::caller::spawn_as_the_caller(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::ENOENT) => format!("is '{name}' installed and on PATH?"),
            Some(libc::EACCES) => format!("'{name}' is not executable"),
            _ => format!("the command line was split into {argv:?}"),
        };
        OpenError::io(vnl, "starting the coprocess", e, Some(hint))
    })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        unreachable!("both pipes were requested");
    };
    let rx: OwnedFd = stdout.into();
    let tx: OwnedFd = stdin.into();
    let mut link = Link::null(vnl);
    link.framing = Framing::Stream;
    link.rx = Some(rx);
    link.tx = Some(tx);
    link.send_to = SendTo::Connected;
    link.coproc = Some(Coproc {
        shared: Some(Arc::new(Shared {
            child: Mutex::new(child),
            stopping: AtomicBool::new(false),
        })),
        name,
        vnl: vnl.to_string(),
    });
    Ok(link)
}
