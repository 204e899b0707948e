//! Data socket files left by SIGKILLed `vde://` clients are removed by the next client that
//! joins (issue 17, leftovers): a vdens-fast client keeps its data socket's file for joining a
//! restarted switch again (moved out of the switch directory to libvdeplug's fallback places
//! as `vde.<pid>-<seq>`), and nothing can remove it when the client is SIGKILLed; libvdeplug's
//! `.<pid>-<seq>` in the switch directory stays behind an opener killed mid-handshake. The next
//! client of the same user sweeps such files that are sockets of its own and stale; a live
//! client's file and another user's stale files stay. A classic vde_switch; as root and as
//! `nobody` (switch and clients alike).

mod common;
use common::*;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FALLBACK: [&str; 3] = ["/var/run", "/var/tmp", "/tmp"];

/// The data socket file of the vde:// client `pid`: `vde.<pid>-<seq>` in a fallback place
/// or `.<pid>-<seq>` in the switch directory.
fn data_file(pid: i32, sw: &Path) -> Option<PathBuf> {
    let find = |d: &Path, prefix: String| {
        std::fs::read_dir(d).ok()?.flatten().find_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix).then(|| e.path())
        })
    };
    FALLBACK
        .iter()
        .find_map(|d| find(Path::new(d), format!("vde.{pid:05}-")))
        .or_else(|| find(sw, format!(".{pid:05}-")))
}

fn wait_data_file(pid: i32, sw: &Path, what: &str) -> PathBuf {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = data_file(pid, sw) {
            return p;
        }
        assert!(Instant::now() < end, "{what}: no data socket file of pid {pid}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a connect to the socket file `p` is refused (nothing bound: stale).
fn refuses(p: &Path) -> bool {
    UnixDatagram::unbound()
        .unwrap()
        .connect(p)
        .is_err_and(|e| e.raw_os_error() == Some(libc::ECONNREFUSED))
}

/// Socket files this test made (stale ones, as a killed client leaves), removed on drop
/// whatever happens, with any data socket file the listed clients left.
struct Made(Vec<PathBuf>, Vec<i32>, PathBuf);

impl Made {
    /// A stale socket file at `p` owned by `uid`.
    fn stale(&mut self, p: PathBuf, uid: u32) -> PathBuf {
        drop(UnixDatagram::bind(&p).unwrap());
        std::os::unix::fs::lchown(&p, Some(uid), Some(uid)).unwrap();
        assert!(refuses(&p));
        self.0.push(p.clone());
        p
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
        for pid in &self.1 {
            while let Some(p) = data_file(*pid, &self.2) {
                if std::fs::remove_file(p).is_err() {
                    break;
                }
            }
        }
    }
}

fn sweep(who: Who) {
    let d = TempDir::new("stale-socks");
    let sw = d.join("sw");
    let mut c = as_who(who, "/usr/bin/vde_switch");
    c.arg("-s").arg(&sw);
    let _switch = Daemon::start("vde_switch", c);
    let end = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(sw.join("ctl")).is_err() {
        assert!(Instant::now() < end, "vde_switch did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The other user: nobody for root; for nobody, daemon (1), not root: clients run as root
    // meanwhile (the other case, other tests) would rightly sweep a stale socket of root's.
    let (me, other) = match who {
        Who::Root => (0, NOBODY),
        Who::Nobody => (NOBODY, 1),
    };
    let vnl = format!("vde://{}", sw.display());
    let client = |name: &str| Node::start(name, vdens_fast(who, &d, &[&vnl, "sh", "-s"]));
    let mut made = Made(Vec::new(), Vec::new(), sw.clone());

    let live = client("live");
    made.1.push(live.pid());
    let live_file = wait_data_file(live.pid(), &sw, "the live client");
    let killed = client("killed");
    made.1.push(killed.pid());
    let killed_file = wait_data_file(killed.pid(), &sw, "the client to kill");
    let kept_dir = killed_file.parent().unwrap().to_path_buf();
    assert_ne!(
        kept_dir, sw,
        "kept data sockets are moved out of the switch directory"
    );

    // Stale files as other killed clients leave: the kept name and libvdeplug's name in the
    // switch directory (an opener killed mid-handshake), of this user and of the other one.
    // Names of this test's pid: no client of the test has it.
    let t = std::process::id();
    let mine_in_sw = made.stale(sw.join(format!(".{t:05}-99990")), me);
    let foreign_in_sw = made.stale(sw.join(format!(".{t:05}-99991")), other);
    let foreign_kept = made.stale(kept_dir.join(format!("vde.{t:05}-99992")), other);
    // Not a libvdeplug name: left alone even when stale and this user's.
    let other_name = made.stale(sw.join(format!(".{t:05}-x")), me);

    unsafe_kill(-killed.pid(), libc::SIGKILL);
    assert!(wait_gone(killed.pid(), 10), "the client did not die");
    let end = Instant::now() + Duration::from_secs(10);
    while !refuses(&killed_file) {
        assert!(Instant::now() < end, "the killed client's socket stays alive");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(killed);
    assert!(killed_file.exists(), "SIGKILL left nothing to clean up?");

    let next = client("next");
    made.1.push(next.pid());
    wait_data_file(next.pid(), &sw, "the next client");
    // The next client has joined (its shell runs only once its links are open).
    assert!(
        !killed_file.exists(),
        "{who:?}: the killed client's {} stays",
        killed_file.display()
    );
    assert!(
        !mine_in_sw.exists(),
        "{who:?}: a stale {} of this user stays",
        mine_in_sw.display()
    );
    for (p, what) in [
        (&live_file, "the live client's data socket"),
        (&foreign_in_sw, "another user's stale socket"),
        (&foreign_kept, "another user's stale socket"),
        (&other_name, "a stale socket of another name"),
    ] {
        assert!(p.exists(), "{who:?}: {what} {} was removed", p.display());
    }
    assert!(!refuses(&live_file), "the live client's socket");
    live.finish(10);
    next.finish(10);
}

#[test]
fn the_next_client_removes_stale_data_sockets() {
    sweep(Who::Root);
}

#[test]
fn the_next_client_removes_stale_data_sockets_as_nobody() {
    sweep(Who::Nobody);
}
