//! A `=cmd` / `cmd://` coprocess that ends while its link is in use (issue 17, item 9): its
//! watch reaps it (no zombie left) and says once how it ended, waiting for the coprocess's own
//! pid only: another child of the process (the command, in vdens-fast) is never taken.

use std::path::Path;
use std::time::{Duration, Instant};
use vdens_fast::transport::{self, CoprocWatch};

/// Calls `reap` until it says something (5 s at most), as the supervising loop does after
/// each SIGCHLD.
fn reap_within(w: &mut CoprocWatch, what: &str) -> String {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(m) = w.reap() {
            return m;
        }
        assert!(
            Instant::now() < end,
            "{what}: the coprocess's end was never reported"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The state letter of /proc/PID/stat (Z for a zombie), None when the pid is gone.
fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].chars().next()
}

#[test]
fn exited_coprocess_is_reaped_and_reported_once() {
    let vnl = "=sh -c 'exit 7'";
    let link = transport::open(vnl).unwrap_or_else(|e| panic!("{e}"));
    let c = link.coproc.as_ref().expect("a coprocess");
    let pid = c.pid().unwrap();
    let mut w = c.watch().unwrap();
    assert_eq!(
        reap_within(&mut w, vnl),
        format!("{vnl}: coprocess exited with status 7")
    );
    assert_eq!(state(pid), None, "pid {pid} is left as {:?}", state(pid));
    assert!(w.is_done());
    assert_eq!(w.reap(), None, "reported twice");
    // Dropping the link afterwards neither waits nor signals anything.
    let t = Instant::now();
    drop(link);
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
}

#[test]
fn killed_coprocess_is_reported_with_its_signal() {
    let vnl = "cmd://sleep 30";
    let link = transport::open(vnl).unwrap_or_else(|e| panic!("{e}"));
    let c = link.coproc.as_ref().unwrap();
    let pid = c.pid().unwrap();
    let mut w = c.watch().unwrap();
    assert_eq!(w.reap(), None, "reported while running");
    assert_eq!(state(pid).map(|s| s != 'Z'), Some(true));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(
        reap_within(&mut w, vnl),
        format!("{vnl}: coprocess was killed by signal 9")
    );
    assert_eq!(state(pid), None);
}

/// Another child that ends first (the command, in vdens-fast) is left for its own waiter.
#[test]
fn watch_never_takes_another_child() {
    let mut other = std::process::Command::new("true").spawn().unwrap();
    let vnl = "=sh -c 'sleep 0.3; exit 4'";
    let link = transport::open(vnl).unwrap_or_else(|e| panic!("{e}"));
    let mut w = link.coproc.as_ref().unwrap().watch().unwrap();
    // `other` has ended (a zombie) well before the coprocess does.
    let end = Instant::now() + Duration::from_secs(5);
    while state(other.id()) != Some('Z') {
        assert!(Instant::now() < end, "`true` did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(w.reap(), None);
    assert_eq!(
        reap_within(&mut w, vnl),
        format!("{vnl}: coprocess exited with status 4")
    );
    // Its status is still there for its own waiter.
    assert_eq!(state(other.id()), Some('Z'));
    assert!(other.wait().unwrap().success());
}

/// A coprocess the link stops (EOF on its stdin at drop) is not reported.
#[test]
fn coprocess_stopped_by_its_link_is_not_reported() {
    let vnl = "=cat";
    let link = transport::open(vnl).unwrap_or_else(|e| panic!("{e}"));
    let pid = link.coproc.as_ref().unwrap().pid().unwrap();
    let mut w = link.coproc.as_ref().unwrap().watch().unwrap();
    assert_eq!(w.reap(), None);
    drop(link);
    assert_eq!(w.reap(), None);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "cat left behind");
}
