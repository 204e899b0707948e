//! vde:// data socket permissions as libvdeplug 4.0.1 sets them (issue 15): a switch run by
//! another user is joined even when this user is not in the switch's group (libvdeplug then
//! opens the data socket to all), and `[mode=0777]` gives the switch's socket for the port
//! that mode. Side by side with Debian's vde_plug; the switch is vde-2's vde_switch, run as
//! root or as `daemon`; clients run as `nobody`. AF_UNIX sockets in temp dirs only.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A child killed with its process group and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        common::unsafe_kill(-(self.0.id() as i32), libc::SIGKILL);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cmd` run as uid/gid `id` (no supplementary groups), or as root with None.
fn as_user(id: Option<u32>, prog: &str) -> Command {
    match id {
        None => Command::new(prog),
        Some(id) => {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                &id.to_string(),
                "--regid",
                &id.to_string(),
                "--clear-groups",
                "--",
                prog,
            ]);
            c
        }
    }
}

/// vde-2's vde_switch on `dir` as `user`, ctl and directory open to all; its console on a pipe.
fn switch(dir: &Path, user: Option<u32>) -> Guard {
    use std::os::unix::process::CommandExt;
    let mut c = as_user(user, "vde_switch");
    c.arg("-s")
        .arg(dir)
        .args(["-m", "0777", "--dirmode", "0777"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let g = Guard(c.spawn().expect("vde_switch (vde2) must be installed"));
    let end = Instant::now() + TIMEOUT;
    while std::os::unix::net::UnixStream::connect(dir.join("ctl")).is_err() {
        assert!(Instant::now() < end, "vde_switch did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    g
}

/// A plug in stream mode (frames on stdin/stdout).
struct Plug {
    _child: Guard,
    stdin: ChildStdin,
    rx: mpsc::Receiver<Vec<u8>>,
    err: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Plug {
    fn start(mut c: Command) -> Plug {
        use std::os::unix::process::CommandExt;
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = c.spawn().expect("spawn a plug");
        let stdin = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut errp = child.stderr.take().unwrap();
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let e2 = err.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = errp.read_to_string(&mut s);
            e2.lock().unwrap().push_str(&s);
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while buf.len() >= 2 {
                    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
                    if buf.len() < 2 + len {
                        break;
                    }
                    let f: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
                    if tx.send(f).is_err() {
                        return;
                    }
                }
            }
        });
        Plug {
            _child: Guard(child),
            stdin,
            rx,
            err,
        }
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Sends a broadcast frame carrying `marker` until `to` sees it.
    fn reaches(&mut self, to: &Plug, marker: &str) {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0x5e, 0x10, 0x20, 0x30, 0x88, 0xb5]);
        f.extend_from_slice(marker.as_bytes());
        f.resize(60, 0);
        let mut rec = (f.len() as u16).to_be_bytes().to_vec();
        rec.extend_from_slice(&f);
        let end = Instant::now() + TIMEOUT;
        loop {
            assert!(
                Instant::now() < end,
                "{marker} never crossed; stderr: {} / {}",
                self.stderr(),
                to.stderr()
            );
            let _ = self.stdin.write_all(&rec);
            let _ = self.stdin.flush();
            if let Ok(g) = to.rx.recv_timeout(Duration::from_millis(100)) {
                if g.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                    return;
                }
            }
        }
    }
}

fn plug(user: Option<u32>, prog: &str, vnl: &str) -> Plug {
    let mut c = as_user(user, prog);
    c.arg(vnl);
    Plug::start(c)
}

/// Frames cross both ways between a vdeplug-fast and a classic vde_plug, both as `nobody`.
fn frames_cross(sw: &Path, tag: &str) {
    let vnl = format!("vde://{}", sw.display());
    let mut fast = plug(Some(common::NOBODY), env!("CARGO_BIN_EXE_vdeplug-fast"), &vnl);
    let mut classic = plug(Some(common::NOBODY), "vde_plug", &vnl);
    fast.reaches(&classic, &format!("{tag}-fast-to-classic"));
    classic.reaches(&fast, &format!("{tag}-classic-to-fast"));
}

/// vdens-fast as nobody joins the switch and runs its command (status 0).
fn vdens_fast_joins(sw: &Path, dir: &common::TempDir) {
    let vnl = format!("vde://{}", sw.display());
    let out = common::vf(common::Who::Nobody, dir, &[&vnl, "true"]);
    assert_eq!(out.code, Some(0), "vdens-fast as nobody did not join: {out:#?}");
}

#[test]
fn switch_of_another_user_is_joined_by_nobody() {
    let dir = common::TempDir::new("perm-other");
    let sw = dir.join("sw");
    // The switch runs as `daemon`: nobody is not in its group.
    let _s = switch(&sw, Some(1));
    vdens_fast_joins(&sw, &dir);
    frames_cross(&sw, "daemon");
}

#[test]
fn switch_of_root_is_joined_by_nobody() {
    let dir = common::TempDir::new("perm-root");
    let sw = dir.join("sw");
    let _s = switch(&sw, None);
    vdens_fast_joins(&sw, &dir);
    frames_cross(&sw, "root");
}

/// Sockets in `dir` other than `ctl`, with their modes.
fn port_sockets(dir: &Path) -> Vec<(PathBuf, u32)> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "ctl")
        .filter(|e| e.file_type().map(|t| t.is_socket()).unwrap_or(false))
        .map(|e| (e.path(), e.metadata().unwrap().permissions().mode() & 0o7777))
        .collect()
}

/// With `[mode=0777]` the switch's socket for the port gets that mode, as with vde_plug.
#[test]
fn mode_param_sets_the_port_socket_mode() {
    let dir = common::TempDir::new("perm-mode");
    let mut n = 0;
    for prog in ["vde_plug", env!("CARGO_BIN_EXE_vdeplug-fast")] {
        for (param, want) in [("[mode=0777]", 0o777), ("[mode=0750]", 0o750)] {
            // A switch of its own for each case: what vde_switch leaves of a port is no concern.
            n += 1;
            let sw = dir.join(&format!("sw{n}"));
            let _s = switch(&sw, None);
            let vnl = format!("vde://{}{param}", sw.display());
            let p = plug(None, prog, &vnl);
            // The handshake is over when the client's own socket (`.PID-SEQ`) is gone: both
            // implementations chmod the switch's socket before they unlink theirs.
            let end = Instant::now() + TIMEOUT;
            let socks = loop {
                let s = port_sockets(&sw);
                let client_left = s.iter().any(|(p, _)| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                });
                if (!s.is_empty() && !client_left) || Instant::now() > end {
                    break s;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            assert_eq!(
                socks.len(),
                1,
                "{prog} {param}: {socks:?}; stderr: {}",
                p.stderr()
            );
            assert_eq!(
                socks[0].1,
                want,
                "{prog} {param}: {} has mode {:o}",
                socks[0].0.display(),
                socks[0].1
            );
        }
    }
}
