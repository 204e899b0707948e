//! Shared test harness: run vdens-fast (as root or as an unprivileged user) with a deadline,
//! capture its output, and clean up temp dirs and processes even when a test fails.
#![allow(dead_code)]
#![allow(unsafe_code)]

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

/// `prog` as `who`: itself as root, through setpriv as nobody (no groups).
pub fn as_who(who: Who, prog: impl AsRef<std::ffi::OsStr>) -> Command {
    match who {
        Who::Root => Command::new(prog),
        Who::Nobody => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"])
                .arg(prog);
            c
        }
    }
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
    clean_env(&mut c, dir);
    c
}

/// The clean, predictable environment every test run of vdens-fast (or of a classic peer in
/// its place) gets: a standard PATH, /bin/sh as SHELL, `dir` as HOME and working directory.
pub fn clean_env<'a>(c: &'a mut Command, dir: &TempDir) -> &'a mut Command {
    c.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("SHELL", "/bin/sh")
        .env("HOME", dir.path())
        .current_dir(dir.path())
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

/// Gives the program `cmd` starts the signal dispositions of a terminal's foreground caller:
/// SIGHUP, SIGINT and SIGQUIT to their defaults. A test runner started under `nohup` or as a
/// background job of a non-interactive shell has them ignored, and vdens-fast, vde_plug and
/// vdens leave a signal their caller ignored alone: the forwarding tests would then wait for
/// a signal that never comes. Tests that want a signal ignored set it themselves after this
/// (parity.rs's launch.pl).
pub fn default_signals(cmd: &mut Command) -> &mut Command {
    // SAFETY: signal(2) with SIG_DFL between fork and exec is async-signal-safe, allocates
    // nothing, and touches only the child's dispositions.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}

/// Spawns `cmd`, retrying on ETXTBSY: another test thread may be between fork and exec while
/// holding a descriptor inherited from the one-time copy of the binary; it goes away at that exec.
fn spawn_retrying(cmd: &mut Command, name: &str) -> Child {
    default_signals(cmd);
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{name}: spawn {cmd:?}: {e}"),
        }
    }
}

pub fn spawn(mut cmd: Command) -> Running {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = spawn_retrying(&mut cmd, "");
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

/// A shell (`sh -s`) running inside a namespace (vdens-fast's, classic vdens's or an `ip netns`),
/// driven line by line from the test through its stdin.
pub struct Node {
    pub name: String,
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

static DONE_SEQ: AtomicUsize = AtomicUsize::new(0);

impl Node {
    /// Starts `cmd`, whose last arguments must be `sh -s`; waits until the shell answers.
    pub fn start(name: &str, mut cmd: Command) -> Node {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = spawn_retrying(&mut cmd, name);
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let e2 = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e2.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        let mut n = Node {
            name: name.into(),
            child,
            stdin,
            lines: rx,
            stderr,
        };
        let (code, _) = n.try_sh("true", 20);
        assert_eq!(
            code,
            Some(0),
            "{name}: the shell did not start; stderr: {}",
            n.stderr()
        );
        n
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Runs `script` in the node's shell; returns its exit status (None on time-out or if the
    /// node died) and its output (stdout and stderr).
    pub fn try_sh(&mut self, script: &str, secs: u64) -> (Option<i32>, String) {
        use std::io::Write;
        let tag = format!("__vdf_done_{}__", DONE_SEQ.fetch_add(1, Ordering::Relaxed));
        // A subshell, so `exit` in a script ends the script, not the node.
        let text = format!("(\n{script}\n) </dev/null 2>&1; echo \"{tag} $?\"\n");
        let Some(stdin) = self.stdin.as_mut() else {
            return (None, String::new());
        };
        if stdin
            .write_all(text.as_bytes())
            .and_then(|_| stdin.flush())
            .is_err()
        {
            return (
                None,
                format!("<{}: shell gone; stderr: {}>", self.name, self.stderr()),
            );
        }
        let end = Instant::now() + Duration::from_secs(secs);
        let mut out = String::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(&tag) {
                        return (rest.trim().parse().ok(), out);
                    }
                    out.push_str(&l);
                    out.push('\n');
                }
                Err(_) => {
                    out.push_str(&format!(
                        "<{}: no answer within {secs}s; stderr: {}>",
                        self.name,
                        self.stderr()
                    ));
                    return (None, out);
                }
            }
        }
    }

    /// Runs `script` and asserts it succeeds; returns its output.
    pub fn sh(&mut self, script: &str, secs: u64) -> String {
        let (code, out) = self.try_sh(script, secs);
        assert_eq!(
            code,
            Some(0),
            "{}: `{script}` failed:\n{out}\nstderr: {}",
            self.name,
            self.stderr()
        );
        out
    }

    /// Brings `lo` and `iface` up with `cidr` (and an optional MTU).
    pub fn up(&mut self, iface: &str, cidr: &str, mtu: Option<u32>) {
        let mtu = mtu
            .map(|m| format!("ip link set {iface} mtu {m} && "))
            .unwrap_or_default();
        self.sh(
            &format!("ip link set lo up && {mtu}ip addr add {cidr} dev {iface} && ip link set {iface} up"),
            10,
        );
    }

    /// Pings `addr` until `count` replies arrive (10 s at most).
    pub fn ping(&mut self, addr: &str, count: u32, size: Option<u32>) -> String {
        let size = size.map(|s| format!("-s {s} -M do ")).unwrap_or_default();
        self.sh(&format!("ping -n -q -c {count} -i 0.2 -w 10 {size}{addr}"), 15)
    }

    /// Ends the shell (EOF on stdin) and waits for the process, killing its group on time-out.
    pub fn finish(mut self, secs: u64) -> Out {
        self.stdin.take();
        let end = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > end {
                unsafe_kill(-self.pid(), libc::SIGKILL);
                panic!("{}: did not exit within {secs}s after its shell ended", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        use std::os::unix::process::ExitStatusExt;
        Out {
            code: status.code(),
            signal: status.signal(),
            stdout: String::new(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            unsafe_kill(-self.pid(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Which implementation plays a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    Fast,
    Classic,
}

/// A namespace node running `sh -s`, wired to `vnls` (with --multi when more than one).
pub fn ns_node(name: &str, imp: Impl, dir: &TempDir, vnls: &[&str]) -> Node {
    let mut args: Vec<&str> = Vec::new();
    if vnls.len() > 1 {
        args.push("-m");
        args.extend(vnls);
        args.push("--");
    } else {
        args.push(vnls.first().copied().unwrap_or("-"));
    }
    args.extend(["sh", "-s"]);
    // VDF_FAST_AS_CLASSIC=1 plays every vdens-fast node with classic vdens: a check of the
    // scenarios themselves, for whoever changes this harness.
    let classic_only = std::env::var_os("VDF_FAST_AS_CLASSIC").is_some();
    let cmd = match imp {
        Impl::Fast if !classic_only => vdens_fast(Who::Root, dir, &args),
        _ => {
            let mut c = Command::new("vdens");
            c.args(&args).current_dir(dir.path()).env("SHELL", "/bin/sh");
            c
        }
    };
    Node::start(name, cmd)
}

/// A background helper process (a switch, a vde_plug cable), killed with its group on drop.
/// Its stdin stays open (vde_switch's console ends the switch on EOF).
pub struct Daemon {
    pub name: String,
    child: Child,
    _stdin: Option<std::process::ChildStdin>,
}

impl Daemon {
    pub fn start(name: &str, mut cmd: Command) -> Daemon {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = default_signals(&mut cmd)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stdin = child.stdin.take();
        Daemon {
            name: name.into(),
            child,
            _stdin: stdin,
        }
    }
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe_kill(-self.pid(), libc::SIGTERM);
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            unsafe_kill(-self.pid(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Waits up to `secs` for `path` to exist.
pub fn wait_path(path: &Path, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    path.exists()
}

/// An `ip netns` namespace of the test, deleted on drop.
pub struct NetNs(pub String);

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "vdf-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let o = run(
            {
                let mut c = Command::new("ip");
                c.args(["netns", "add", &name]);
                c
            },
            10,
        );
        assert_eq!(o.code, Some(0), "ip netns add {name}: {o:#?}");
        NetNs(name)
    }
    /// Runs `sh -c script` inside this namespace (as root) with a deadline.
    pub fn sh(&self, script: &str, secs: u64) -> Out {
        let mut c = self.cmd("sh");
        c.args(["-c", script]);
        run(c, secs)
    }

    /// A command run inside this namespace (as root).
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, prog]);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Sends `bytes` random bytes over TCP from `from` to `to_addr` (where `to` listens) and checks
/// the sha256 of what arrived.
pub fn tcp_transfer(from: &mut Node, to: &mut Node, to_addr: &str, dir: &TempDir, bytes: usize) {
    static PORT: AtomicUsize = AtomicUsize::new(0);
    let port = 5001 + PORT.fetch_add(1, Ordering::Relaxed) % 1000;
    let src = dir.join(&format!("tx-{port}.bin"));
    let dst = dir.join(&format!("rx-{port}.bin"));
    let mut data = vec![0u8; bytes];
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ bytes as u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    // nc listens on IPv4 only unless told.
    let six = if to_addr.contains(':') { "-6 " } else { "" };
    std::fs::write(&src, &data).unwrap();
    to.sh(
        &format!(
            "(timeout 60 nc {six}-l {port} > {} ; echo rx-exit $? > {}.done) >/dev/null 2>&1 & \
             for i in $(seq 100); do ss -ltn | grep -q ':{port} ' && exit 0; sleep 0.05; done; exit 1",
            dst.display(),
            dst.display()
        ),
        15,
    );
    from.sh(
        &format!("timeout 60 nc -N -w 10 {to_addr} {port} < {}", src.display()),
        70,
    );
    let done = dst.with_extension("bin.done");
    assert!(wait_path(&done, 20), "receiver did not finish");
    let sha = |p: &Path| {
        let o = std::process::Command::new("sha256sum").arg(p).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let got = std::fs::read(&dst).unwrap();
    assert_eq!(got.len(), data.len(), "{} -> {}: length", from.name, to.name);
    assert_eq!(
        sha(&dst),
        sha(&src),
        "{} -> {}: sha256 differs",
        from.name,
        to.name
    );
}

/// Like [`ns_node`], but vdens-fast (or classic vdens) is started inside the `ip netns` `ns`,
/// so its VNLs are opened there (udp/vxlan/vxvde sockets and multicast memberships stay in
/// the test's namespaces). `extra` options go before the VNLs (e.g. `--stats PATH`).
pub fn ns_node_in(ns: &NetNs, name: &str, imp: Impl, dir: &TempDir, extra: &[&str], vnls: &[&str]) -> Node {
    let mut args: Vec<&str> = extra.to_vec();
    if vnls.len() > 1 {
        args.push("-m");
        args.extend(vnls);
        args.push("--");
    } else {
        args.push(vnls.first().copied().unwrap_or("-"));
    }
    args.extend(["sh", "-s"]);
    let classic_only = std::env::var_os("VDF_FAST_AS_CLASSIC").is_some();
    let prog = match imp {
        Impl::Fast if !classic_only => binary().display().to_string(),
        _ => "vdens".to_string(),
    };
    let mut c = ns.cmd(&prog);
    c.args(&args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("SHELL", "/bin/sh")
        .env("HOME", dir.path())
        .current_dir(dir.path());
    Node::start(name, c)
}

/// A vdens-fast as root hosting `scheme://DIR` (switch or hub) in `d`, with `--stats FILE`
/// every 100 ms and the options `extra`, started once its control socket is there: the node
/// (running `sh -s`), DIR and FILE.
pub fn node_host(d: &TempDir, scheme: &str, extra: &[&str]) -> (Node, PathBuf, PathBuf) {
    let dir = d.join("sw");
    let stats = d.join("host.json");
    let node_vnl = format!("{scheme}://{}", dir.display());
    let mut args: Vec<&str> = vec!["--stats", stats.to_str().unwrap(), "--stats-interval", "100"];
    args.extend(extra);
    args.extend([node_vnl.as_str(), "sh", "-s"]);
    let h = Node::start("host", vdens_fast(Who::Root, d, &args));
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    (h, dir, stats)
}

/// `"key":"value"` of port `name` in a --stats JSON line.
pub fn port_str(json: &str, name: &str, key: &str) -> String {
    let at = json
        .find(&format!("\"name\":\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    let p = &json[at..];
    let i = p
        .find(&format!("\"{key}\":\""))
        .unwrap_or_else(|| panic!("no {key} in {p}"))
        + key.len()
        + 4;
    p[i..].chars().take_while(|c| *c != '"').collect()
}

/// The --stats line of the vdens-fast running node `n` (its `--stats FILE`), written afresh
/// (SIGUSR1 to vdens-fast, the shell's parent) and waited for until it names `port`.
pub fn fresh_stats(n: &mut Node, file: &Path, port: &str) -> String {
    let _ = std::fs::remove_file(file);
    n.sh("kill -USR1 $PPID", 5);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let j = std::fs::read_to_string(file).unwrap_or_default();
        if j.contains(&format!("\"{port}\"")) || Instant::now() > deadline {
            return j;
        }
    }
}

/// `"key":N` of every port direction in a --stats JSON line, summed.
pub fn stat_sum(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    json.match_indices(&pat)
        .map(|(i, _)| {
            json[i + pat.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum()
}

/// IFF_VNET_HDR on the tap (`ip -d link` says "vnet_hdr on").
pub fn has_vnet_hdr(n: &mut Node) -> bool {
    let out = n.sh("ip -d link show vde0", 5);
    assert!(out.contains("vnet_hdr "), "no tun details in: {out}");
    out.contains("vnet_hdr on")
}

/// The io_uring instances process `pid` holds (its data plane's rings).
pub fn rings(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:[io_uring]")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Asserts that the vdens-fast of `n` runs its `what` on io_uring (`uring`) or on the epoll
/// driver (it then holds no ring).
pub fn assert_driver(n: &Node, uring: bool, what: &str) {
    let on = if uring {
        "epoll, not io_uring"
    } else {
        "io_uring, not epoll"
    };
    assert_eq!(rings(n.pid()) > 0, uring, "{}: the {what} runs on {on}", n.name);
}

/// Whether vde0 of `n`'s namespace has its carrier, and the `ip -o link` line that says so.
pub fn has_carrier(n: &mut Node) -> (bool, String) {
    let l = n.sh("ip -o link show vde0", 5);
    (l.contains("LOWER_UP") && !l.contains("NO-CARRIER"), l)
}

/// Waits at most `secs` for vde0 of `n` to have (`want`) or lack its carrier.
pub fn wait_carrier(n: &mut Node, want: bool, secs: u64, what: &str) {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let (c, l) = has_carrier(n);
        if c == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "{}: {what}: carrier still {} after {secs} s: {l}\nstderr: {}",
            n.name,
            !want,
            n.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// What a switch learns from a client's join request, and what vde_switch shows of it. The
// same helpers as in tests/parity_vde_plug.rs (whose own copies shadow these there), here so
// other parity tests can use them.

/// A process in its own process group (vde_plug sends SIGINT/SIGHUP to its whole group),
/// killed with its group on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn start(mut c: Command) -> Proc {
        c.process_group(0);
        default_signals(&mut c);
        Proc(c.spawn().unwrap_or_else(|e| panic!("{c:?}: {e}")))
    }
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    /// (exit code, killing signal), or None if it still runs after `secs`.
    pub fn wait(&mut self, secs: u64) -> Option<(Option<i32>, Option<i32>)> {
        use std::os::unix::process::ExitStatusExt;
        let end = Instant::now() + Duration::from_secs(secs);
        // Looked at once at least: wait(0) says whether it has ended now.
        loop {
            if let Ok(Some(st)) = self.0.try_wait() {
                return Some((st.code(), st.signal()));
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            unsafe_kill(-self.pid(), libc::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// A vde2 vde_switch at `dir`, its console on stdin (it ends at EOF) and, with `console_out`,
/// on a pipe to read; waited for until its control socket is there.
pub fn vde_switch(dir: &Path, console_out: bool) -> Proc {
    let mut c = Command::new("vde_switch");
    c.arg("-s")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(if console_out {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::null());
    let sw = Proc::start(c);
    assert!(wait_path(&dir.join("ctl"), 10), "no vde_switch");
    sw
}

/// What a switch learns from a vde:// client's request: the description it sent, and the mode
/// and group of the data socket the request names (as they are when the request arrives).
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub descr: Vec<u8>,
    pub mode: u32,
    pub gid: u32,
}

/// `pid=DIGITS` made `pid=N`: the two programs' pids differ.
pub fn without_pid(d: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.len());
    let mut i = 0;
    while i < d.len() {
        if d[i..].starts_with(b"pid=") {
            out.extend_from_slice(b"pid=N");
            i += 4;
            while i < d.len() && d[i].is_ascii_digit() {
                i += 1;
            }
        } else {
            out.push(d[i]);
            i += 1;
        }
    }
    out
}

/// A stand-in for a switch at `dir` (made here, open to every user): runs `client`, accepts
/// its connection on `dir/ctl`, reads its request and notes what [`Request`] holds, then hangs
/// up without answering, so the client ends (status 1 in vde_plug, vdeplug-fast, vdens and
/// vdens-fast). `None` when the client sent no request (it failed before). Bounded: 10 s for
/// the connection, 5 s for the request, 10 s for the client to end.
pub fn record_request(dir: &Path, client: Command) -> (Option<Request>, Out) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ctl = dir.join("ctl");
    let _ = std::fs::remove_file(&ctl);
    let l = std::os::unix::net::UnixListener::bind(&ctl).unwrap();
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o777)).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut p = spawn(client);
    let end = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match l.accept() {
            Ok((s, _)) => break Some(s),
            Err(_) if Instant::now() > end => break None,
            Err(_) if !matches!(p.child.try_wait(), Ok(None)) => {
                // Ended: a connection it made is still queued.
                break l.accept().ok().map(|(s, _)| s);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let mut seen = None;
    if let Some(mut s) = conn {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = vec![0u8; 4096];
        let n = s.read(&mut b).unwrap_or(0);
        // magic, version, type (12 bytes), sockaddr_un (2 + 108), the description.
        if n >= 122 && b[..4] == 0xfeed_faceu32.to_ne_bytes() {
            let path = &b[14..122];
            let path = &path[..path.iter().position(|&c| c == 0).unwrap_or(path.len())];
            let st = std::fs::metadata(std::ffi::OsStr::from_bytes(path)).unwrap();
            seen = Some(Request {
                descr: without_pid(&b[122..n]),
                mode: st.mode() & 0o7777,
                gid: st.gid(),
            });
        }
    }
    let out = p.wait(10);
    (seen, out)
}

/// The descriptions in the `-- endpoint` lines of vde_switch's `port/print` on its console
/// (stdin/stdout), as bytes, pids made `pid=N`; read until `1000 Success` or 5 s.
pub fn port_print_endpoints(sw: &mut Proc) -> Vec<Vec<u8>> {
    use std::io::Write;
    let mut stdin = sw.0.stdin.take().unwrap();
    let mut out = sw.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = out.read(&mut b) {
            if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    stdin.write_all(b"port/print\n").unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut all = Vec::new();
    while !all.windows(12).any(|w| w == b"1000 Success") {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => all.extend_from_slice(&b),
            Err(_) => break,
        }
    }
    // `  -- endpoint ID 0003 module unix prog   : DESCRIPTION`: the description only (the
    // endpoint numbers are the switch's).
    all.split(|&c| c == b'\n')
        .filter(|l| l.windows(11).any(|w| w == b"-- endpoint"))
        .map(|l| {
            let at = l.windows(6).position(|w| w == b"prog  ").unwrap_or(0);
            let colon = l[at..]
                .windows(2)
                .position(|w| w == b": ")
                .map_or(0, |c| at + c + 2);
            without_pid(l[colon..].trim_ascii_end())
        })
        .collect()
}

/// The source address of a tagged datagram read as a frame (`wire::superframe::TAG`).
pub const TAG_SRC: &str = "2b:66:61:73:74:01";

/// Captures what the tap hands the namespace (frames the forwarder wrote to it): tcpdump
/// `-e -vv` in the node's network namespace, started from outside it (`common::capture`).
pub struct Capture {
    file: PathBuf,
    tcpdump: Daemon,
}

impl Capture {
    pub fn start(n: &mut Node, d: &TempDir, tag: &str) -> Capture {
        let file = d.join(&format!("{tag}.txt"));
        let tcpdump = capture(n, "vde0", &file, "-Q in");
        Capture { file, tcpdump }
    }

    /// At least `min` frames, none over a standard frame at `mtu`, none tagged, every
    /// checksum correct (`common::assert_standard_frames`).
    pub fn check(self, mtu: usize, min: usize) {
        let text = captured(self.tcpdump, &self.file);
        assert_standard_frames(&text, mtu, min);
    }
}

/// tcpdump on `iface` in the network namespace of `n`'s shell, its `-e -vv` text in `file`,
/// whole frames (run from outside: in a user namespace, as classic vdens makes, tcpdump cannot
/// drop its privileges); `filter` goes on its command line. Waits until it listens.
pub fn capture(n: &mut Node, iface: &str, file: &Path, filter: &str) -> Daemon {
    let pid = n.sh("echo $$", 5).trim().to_string();
    let mut c = Command::new("nsenter");
    c.args(["-t", &pid, "-n", "sh", "-c"]).arg(format!(
        "exec timeout 120 tcpdump -i {iface} -n -e -vv -l {filter} > {} 2>&1",
        file.display()
    ));
    let t = Daemon::start("tcpdump", c);
    let end = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(file)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(
            Instant::now() < end,
            "tcpdump did not start: {}",
            std::fs::read_to_string(file).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t
}

/// Ends capture `t` (after a second for its last frames) and returns its text.
pub fn captured(t: Daemon, file: &Path) -> String {
    std::thread::sleep(Duration::from_secs(1));
    drop(t);
    std::fs::read_to_string(file).expect("capture text")
}

/// The length of every frame in a capture's text.
pub fn frame_lengths(text: &str) -> Vec<usize> {
    text.lines()
        .filter(|l| l.contains("ethertype"))
        .filter_map(|l| {
            let i = l.find(", length ")? + ", length ".len();
            l[i..].split(':').next()?.parse().ok()
        })
        .collect()
}

/// What a peer that takes no super-frames (a classic one) must see on its tap, from the
/// capture text of what the tap handed its namespace: at least `min` frames, none over a
/// standard frame at `mtu` (+ 14 bytes of Ethernet header), none tagged, and every checksum
/// tcpdump checked correct (at least one TCP checksum checked).
pub fn assert_standard_frames(text: &str, mtu: usize, min: usize) {
    let lens = frame_lengths(text);
    assert!(lens.len() >= min, "the capture is short: {} frames", lens.len());
    let over: Vec<usize> = lens.iter().copied().filter(|&l| l > mtu + 14).collect();
    assert!(over.is_empty(), "frames over the MTU {mtu}: {over:?}");
    assert!(!text.contains(TAG_SRC), "a tagged datagram reached the tap");
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("incorrect") || l.contains("bad cksum") || l.contains("bad udp cksum"))
        .take(5)
        .collect();
    assert!(bad.is_empty(), "bad checksums: {bad:?}");
    assert!(text.contains("(correct)"), "tcpdump checked no TCP checksum");
}

/// Addresses (IPv4 10.NET.0.x/24, IPv6 fdNET::x/64), MTU and a first ping between two nodes
/// on one link (vde0 of each).
pub fn wire_pair(a: &mut Node, b: &mut Node, net: &str, mtu: usize) {
    let m = Some(mtu as u32).filter(|&m| m != 1500);
    a.up("vde0", &format!("10.{net}.0.1/24"), m);
    b.up("vde0", &format!("10.{net}.0.2/24"), m);
    a.sh(&format!("ip -6 addr add fd{net}::1/64 dev vde0 nodad"), 5);
    b.sh(&format!("ip -6 addr add fd{net}::2/64 dev vde0 nodad"), 5);
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.try_sh(&format!("ping -c 1 -W 1 10.{net}.0.1"), 5).0 != Some(0) {
        assert!(Instant::now() < deadline, "no ping over the link");
    }
}

/// Between nodes joined by [`wire_pair`]: ICMP at the MTU, TCP both ways (sha256-exact),
/// and a UDP datagram.
pub fn pair_traffic(a: &mut Node, b: &mut Node, d: &TempDir, net: &str, mtu: usize) {
    b.ping(&format!("10.{net}.0.1"), 2, Some((mtu - 28) as u32));
    tcp_transfer(b, a, &format!("10.{net}.0.1"), d, 8 << 20);
    tcp_transfer(a, b, &format!("10.{net}.0.2"), d, 4 << 20);
    a.sh(
        "rm -f udp.out; (timeout 10 nc -u -l 7777 > udp.out &) ; sleep 0.3",
        5,
    );
    b.sh(
        &format!("echo datagram | timeout 5 nc -u -w 1 10.{net}.0.1 7777"),
        10,
    );
    let got = a.sh("sleep 0.3; cat udp.out", 5);
    assert!(got.contains("datagram"), "UDP crossed: {got:?}");
}

/// A vdens-fast end (as root) with `--stats DIR/NAME.json` (and `extra`) on `vnl`, running
/// `sh -s`, or a classic vdens there (`fast` false); and the stats file's path.
pub fn stats_end(d: &TempDir, name: &str, fast: bool, extra: &[&str], vnl: &str) -> (Node, PathBuf) {
    let stats = d.join(&format!("{name}.json"));
    if !fast {
        return (ns_node(name, Impl::Classic, d, &[vnl]), stats);
    }
    let mut args: Vec<&str> = vec!["--stats", stats.to_str().unwrap()];
    args.extend(extra);
    args.extend([vnl, "sh", "-s"]);
    (Node::start(name, vdens_fast(Who::Root, d, &args)), stats)
}
