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
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a coprocess gets to exit after its stdin closed, then after SIGTERM.
const GRACE: Duration = Duration::from_millis(1500);

/// A running coprocess, stopped and reaped on drop.
pub struct Coproc {
    child: Option<Child>,
    name: String,
}

impl Coproc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Forgets the process without stopping it (its owner is another process now).
    pub fn release(mut self) {
        self.child.take();
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
        let Some(mut child) = self.child.take() else {
            return;
        };
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
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(|e| {
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
        child: Some(child),
        name,
    });
    Ok(link)
}
