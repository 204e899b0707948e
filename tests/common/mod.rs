//! Shared test harness: run vdens-fast (as root or as an unprivileged user) with a deadline,
//! capture its output, and clean up temp dirs and processes even when a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const NOBODY: u32 = 65534;

/// Who runs vdens-fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Root,
    Nobody,
}

pub const BOTH: [Who; 2] = [Who::Root, Who::Nobody];

/// A temp directory readable by the unprivileged user, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vdf-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The vdens-fast binary, copied once per test process into a world-readable directory so the
/// unprivileged user can execute it wherever the build tree lives (e.g. under /root). The copy
/// is removed when the test process exits.
pub fn binary() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vdf-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dst = dir.join("vdens-fast");
        std::fs::copy(env!("CARGO_BIN_EXE_vdens-fast"), &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        extern "C" fn remove_copy() {
            let dir = std::env::temp_dir().join(format!("vdf-bin-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(dir);
        }
        // SAFETY: atexit with a plain extern "C" function.
        unsafe { libc::atexit(remove_copy) };
        dst
    })
}

/// A Command running vdens-fast `args` as `who`, with a clean, predictable environment.
pub fn vdens_fast(who: Who, dir: &TempDir, args: &[&str]) -> Command {
    let bin = binary();
    let mut c = match who {
        Who::Root => Command::new(bin),
        Who::Nobody => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"])
                .arg(bin);
            c
        }
    };
    c.args(args);
    c.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("SHELL", "/bin/sh")
        .env("HOME", dir.path())
        .current_dir(dir.path());
    c
}

/// The result of a finished run.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }
}

/// A running process (in its own process group) whose stdout lines arrive over a channel.
pub struct Running {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    stdout_all: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<String>>,
    stdout_reader: Option<std::thread::JoinHandle<()>>,
}

pub fn spawn(mut cmd: Command) -> Running {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // ETXTBSY: another test thread may be between fork and exec while holding a descriptor
    // inherited from the one-time copy of the binary; it goes away at that exec.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("spawn {cmd:?}: {e}"),
        }
    };
    let (tx, rx) = mpsc::channel();
    let all = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let all2 = all.clone();
    let out = child.stdout.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            all2.lock().unwrap().push_str(&line);
            all2.lock().unwrap().push('\n');
            let _ = tx.send(line);
        }
    });
    let mut err = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Running {
        child,
        lines: rx,
        stdout_all: all,
        stderr_reader: Some(stderr_reader),
        stdout_reader: Some(stdout_reader),
    }
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a stdout line satisfying `f`, up to `secs`.
    pub fn expect_line(&mut self, secs: u64, f: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if f(&l) => return l,
                Ok(_) => continue,
                Err(_) => panic!(
                    "no expected line within {secs}s; stdout so far: {:?}",
                    self.stdout_all.lock().unwrap()
                ),
            }
        }
    }

    /// Waits for the process to end, up to `secs`; kills its process group and panics on time-out.
    pub fn wait(mut self, secs: u64) -> Out {
        let end = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > end {
                self.kill_group();
                let _ = self.child.wait();
                panic!("timed out after {secs}s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // Readers end when every holder of the pipes is gone; bound that too.
        let h = self.stdout_reader.take().unwrap();
        let e = self.stderr_reader.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(h.is_finished() && e.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stderr = if e.is_finished() {
            e.join().unwrap()
        } else {
            String::from("<stderr still open>")
        };
        let stdout = self.stdout_all.lock().unwrap().clone();
        use std::os::unix::process::ExitStatusExt;
        Out {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
        }
    }

    pub fn kill_group(&self) {
        unsafe_kill(-self.pid(), libc::SIGKILL);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_group();
            let _ = self.child.wait();
        }
    }
}

/// kill(2).
pub fn unsafe_kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) with integer arguments has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Runs to completion with a deadline.
pub fn run(cmd: Command, secs: u64) -> Out {
    spawn(cmd).wait(secs)
}

/// vdens-fast as `who` with `args`, to completion within 20 s.
pub fn vf(who: Who, dir: &TempDir, args: &[&str]) -> Out {
    run(vdens_fast(who, dir, args), 20)
}

/// True while a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Waits up to `secs` for `pid` to be gone.
pub fn wait_gone(pid: i32, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

/// Parses a `CapXxx:` hex field of /proc/PID/status text.
pub fn cap_field(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

pub const NET_CAPS: u64 = (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13);
pub const SYS_ADMIN: u64 = 1 << 21;
