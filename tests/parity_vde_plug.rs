//! vdeplug-fast side by side with Debian's vde_plug 4.0.1 on a table of cases: option spellings,
//! usage errors, the login-shell mode, the stream on files and /dev/null, exit statuses on
//! signals, the daemon's pid file, working directory and signal table. Each case runs both
//! programs on the same input and compares what can be observed; a case that differs on purpose
//! says why (README, "Differences from vde_plug").
//!
//! `VDEPLUG_FAST_UNDER_TEST=PATH` runs another vdeplug-fast binary (to see a case fail on an
//! older build).

mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fast_bin() -> PathBuf {
    std::env::var_os("VDEPLUG_FAST_UNDER_TEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vdeplug-fast")))
}

/// The two programs: (name as messages show it, binary).
fn both() -> [(&'static str, PathBuf); 2] {
    [
        ("vde_plug", PathBuf::from("vde_plug")),
        ("vdeplug-fast", fast_bin()),
    ]
}

fn cmd(bin: &Path, args: &[&str], dir: &TempDir) -> Command {
    let mut c = Command::new(bin);
    c.args(args).current_dir(dir.path()).env("HOME", dir.path());
    c
}

/// A daemon's pid read from its pid file; killed on drop if still there.
struct DaemonPid(i32);

impl Drop for DaemonPid {
    fn drop(&mut self) {
        if self.0 > 0 && alive(self.0) {
            unsafe_kill(self.0, libc::SIGKILL);
        }
    }
}

fn read_pid(p: &Path, secs: u64) -> i32 {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Ok(s) = std::fs::read_to_string(p) {
            if let Ok(pid) = s.trim().parse() {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no pid in {}", p.display());
}

/// Usage errors: getopt_long's verdict and vde_plug's exit status 255; for getopt's own errors
/// the same text after the program name (vdeplug-fast says it in one line with a hint, where
/// vde_plug adds its usage).
#[test]
fn usage_errors_as_getopt_long() {
    let d = TempDir::new("pvusage");
    let cases: &[(&[&str], bool)] = &[
        (&["-x"], true),
        (&["-dx"], true),
        (&["--nope"], true),
        (&["--d"], true),
        (&["--p", "x"], true),
        (&["--mo", "7"], true),
        (&["--pidfile"], true),
        (&["-p"], true),
        (&["--daemon=1"], true),
        (&["a", "b", "c"], false),
        (&["a", "b", "=", "c"], false),
        (&["--port", "0"], false),
        (&["--port2", "x"], false),
    ];
    for (args, same_text) in cases {
        let mut first_lines = Vec::new();
        for (name, bin) in both() {
            let o = run(cmd(&bin, args, &d), 10);
            assert_eq!(o.code, Some(255), "{name} {args:?}: {o:#?}");
            let line = o.stderr.lines().next().unwrap_or("").to_string();
            if name == "vdeplug-fast" {
                assert_eq!(o.stderr.lines().count(), 1, "{name} {args:?}: {}", o.stderr);
            }
            first_lines.push(line.strip_prefix(&format!("{name}: ")).map(str::to_string));
        }
        if *same_text {
            let classic = first_lines[0].clone().expect("vde_plug names itself");
            let fast = first_lines[1].clone().expect("vdeplug-fast names itself");
            assert!(fast.starts_with(&classic), "{args:?}: '{classic}' vs '{fast}'");
        }
    }
}

/// Differs on purpose: -h/--help prints the summary on stdout and exits 0 (vde_plug: stderr,
/// status 255), as asking for help is not an error.
#[test]
fn help_differs_on_purpose() {
    let d = TempDir::new("pvhelp");
    let [(_, classic), (_, fast)] = both();
    assert_eq!(run(cmd(&classic, &["-h"], &d), 10).code, Some(255));
    let o = run(cmd(&fast, &["--help"], &d), 10);
    assert_eq!(o.code, Some(0));
    assert!(o.stdout.contains("--pidfile"), "{}", o.stdout);
}

/// The login-shell mode: argv[0] starting with `-` (an interactive login) and `-c` with any
/// command but `vde_plug` are refused with status 255; `-c vde_plug` runs (here it finds no
/// default switch, and both end with status 1).
#[test]
fn login_shell_mode() {
    let d = TempDir::new("pvlogin");
    for (name, bin) in both() {
        let mut c = cmd(&bin, &[], &d);
        c.arg0("-vde_plug");
        let o = run(c, 10);
        assert_eq!(o.code, Some(255), "{name} as a login shell: {o:#?}");
        assert!(
            o.stderr.contains("only vde_plug can be executed"),
            "{name}: {}",
            o.stderr
        );
        for bad in ["ls", "vde_plug vde:///x"] {
            let o = run(cmd(&bin, &["-c", bad], &d), 10);
            assert_eq!(o.code, Some(255), "{name} -c {bad}: {o:#?}");
        }
        let mut c = cmd(&bin, &["-c", "vde_plug"], &d);
        c.stdin(Stdio::null());
        let o = run(c, 10);
        assert_eq!(
            o.code,
            Some(1),
            "{name} -c vde_plug without a default switch: {o:#?}"
        );
    }
}

/// Every spelling of the pid file option writes the pid (of the daemon with -d) and the file
/// goes at the end; --descr=, -D and the long abbreviations are accepted alike.
#[test]
fn option_spellings_take_effect() {
    let spellings: &[&[&str]] = &[
        &["--pidfile=PID"],
        &["--pidfile", "PID"],
        &["--pid", "PID"],
        &["-pPID"],
        &["-p", "PID"],
        &["-dpPID"],
        &["-dp", "PID"],
        &["--da", "--pid=PID", "--descr=D", "--de", "E", "-DF"],
    ];
    for (name, bin) in both() {
        for sp in spellings {
            let d = TempDir::new("pvspell");
            let pidfile = d.join("pid");
            let dir = d.join("hub");
            let args: Vec<String> = sp
                .iter()
                .map(|a| a.replace("PID", pidfile.to_str().unwrap()))
                .chain(["null://".to_string(), format!("hub://{}", dir.display())])
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let daemon = sp.iter().any(|a| a.starts_with("-d") || *a == "--da");
            let mut p = Proc::start(cmd(&bin, &args, &d));
            if daemon {
                assert_eq!(p.wait(10), Some((Some(0), None)), "{name} {sp:?}: the parent");
            }
            let pid = read_pid(&pidfile, 10);
            let _g = DaemonPid(pid);
            if !daemon {
                assert_eq!(pid, p.pid(), "{name} {sp:?}");
            }
            assert!(wait_path(&dir.join("ctl"), 10), "{name} {sp:?}: no hub");
            unsafe_kill(pid, libc::SIGTERM);
            assert!(wait_gone(pid, 10), "{name} {sp:?}: still runs after SIGTERM");
            assert!(!pidfile.exists(), "{name} {sp:?}: pid file left behind");
        }
    }
}

/// SIGTERM ends with status 0, SIGINT and SIGHUP end killed by them (vde_plug re-sends them to
/// its process group), each after removing the hosted hub's directory; the signals vde_plug
/// ignores do nothing.
#[test]
fn signals_in_the_foreground() {
    for (name, bin) in both() {
        let mut seen = Vec::new();
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            let d = TempDir::new("pvsig");
            let dir = d.join("hub");
            let mut p = Proc::start(cmd(&bin, &["null://", &format!("hub://{}", dir.display())], &d));
            assert!(wait_path(&dir.join("ctl"), 10), "{name}: no hub");
            unsafe_kill(p.pid(), libc::SIGUSR1);
            std::thread::sleep(Duration::from_millis(100));
            assert!(p.wait(0).is_none(), "{name} died of SIGUSR1");
            unsafe_kill(p.pid(), sig);
            let st = p
                .wait(10)
                .unwrap_or_else(|| panic!("{name}: still runs after {sig}"));
            assert!(!dir.exists(), "{name}: hub directory left after signal {sig}");
            seen.push(st);
        }
        assert_eq!(
            seen,
            vec![
                (Some(0), None),
                (None, Some(libc::SIGINT)),
                (None, Some(libc::SIGHUP))
            ],
            "{name}"
        );
    }
}

/// selfsighandler.c's table: a daemon ignores these; it ends cleanly (pid file and hub
/// directory removed) on SIGHUP, SIGINT and SIGTERM; it runs in / (daemon(3)).
#[test]
fn daemon_life_cycle_and_signal_table() {
    let ignored = [
        libc::SIGPIPE,
        libc::SIGALRM,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPROF,
        libc::SIGVTALRM,
        libc::SIGIO,
        libc::SIGSTKFLT,
        libc::SIGPWR,
    ];
    for (name, bin) in both() {
        for end in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
            let d = TempDir::new("pvdaemon");
            let pidfile = d.join("pid");
            let dir = d.join("hub");
            let args = [
                "-d",
                "-p",
                pidfile.to_str().unwrap(),
                "null://",
                &format!("hub://{}", dir.display()),
            ];
            let mut p = Proc::start(cmd(&bin, &args, &d));
            assert_eq!(p.wait(10), Some((Some(0), None)), "{name}: the parent");
            let pid = read_pid(&pidfile, 10);
            let _g = DaemonPid(pid);
            assert!(wait_path(&dir.join("ctl"), 10), "{name}: no hub");
            assert_eq!(
                std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
                PathBuf::from("/"),
                "{name}: the daemon's directory"
            );
            for s in ignored {
                unsafe_kill(pid, s);
            }
            std::thread::sleep(Duration::from_millis(200));
            assert!(alive(pid), "{name}: the daemon died of an ignored signal");
            assert!(pidfile.exists(), "{name}: pid file gone");
            unsafe_kill(pid, end);
            assert!(wait_gone(pid, 10), "{name}: still runs after signal {end}");
            assert!(!pidfile.exists(), "{name}: pid file left after signal {end}");
            assert!(!dir.exists(), "{name}: hub directory left after signal {end}");
        }
    }
}

/// Differs on purpose: a relative pid file is written where vdeplug-fast was started (vde_plug
/// writes it after chdir("/"), i.e. in /, where a script would not find it), and removed at the
/// end. The classic side is not run: it would write into /.
#[test]
fn relative_pidfile_is_made_absolute() {
    let d = TempDir::new("pvrel");
    let dir = d.join("hub");
    let mut p = Proc::start(cmd(
        &fast_bin(),
        &[
            "-d",
            "-p",
            "rel.pid",
            "null://",
            &format!("hub://{}", dir.display()),
        ],
        &d,
    ));
    assert_eq!(p.wait(10), Some((Some(0), None)));
    let pid = read_pid(&d.join("rel.pid"), 10);
    let _g = DaemonPid(pid);
    assert!(!Path::new("/rel.pid").exists());
    unsafe_kill(pid, libc::SIGTERM);
    assert!(wait_gone(pid, 10));
    assert!(!d.join("rel.pid").exists(), "pid file left behind");
}

const FRAMES: usize = 8;

/// FRAMES broadcast frames in the 2-byte-length stream, each with its own marker.
fn frame_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for k in 0..FRAMES {
        let mut f = vec![0xff; 6];
        f.extend([0x02, 0, 0, 0, 0, k as u8 + 1]);
        f.extend([0x88, 0xb5]);
        f.extend(format!("vdf-frame-{k:02}").as_bytes());
        f.resize(60, 0);
        s.extend((f.len() as u16).to_be_bytes());
        s.extend(f);
    }
    s
}

/// How many times each marker occurs in a recorded stream.
fn markers(rec: &Path) -> Vec<usize> {
    let b = std::fs::read(rec).unwrap_or_default();
    let mut n = vec![0; FRAMES];
    let mut i = 0;
    while i + 2 <= b.len() {
        let len = u16::from_be_bytes([b[i], b[i + 1]]) as usize;
        let Some(f) = b.get(i + 2..i + 2 + len) else { break };
        if let Some(m) = f.get(14..26) {
            if let Some(k) = std::str::from_utf8(m)
                .ok()
                .and_then(|s| s.strip_prefix("vdf-frame-"))
                .and_then(|s| s.parse::<usize>().ok())
            {
                if k < FRAMES {
                    n[k] += 1;
                }
            }
        }
        i += 2 + len;
    }
    n
}

fn wait_markers(rec: &Path, want: usize, secs: u64) -> Vec<usize> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let m = markers(rec);
        if m.iter().all(|&c| c >= want) || Instant::now() > end {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Recording a network to a file and replaying a file into it, over a ptp:// cable (its
/// datagrams queued at the recorder survive the replayer's exit, unlike a hub port's): each
/// program records what each replays, and stdin at /dev/null ends the run at once with
/// status 0, with stdout at /dev/null or a file.
#[test]
fn stream_on_regular_files_and_dev_null() {
    let d = TempDir::new("pvrec");
    let file = d.join("frames");
    std::fs::write(&file, frame_stream()).unwrap();
    for (rname, rbin) in both() {
        for (pname, pbin) in both() {
            let path = d.join(&format!("ptp-{rname}-{pname}"));
            let vnl = format!("ptp://{}", path.display());
            let rec = d.join(&format!("rec-{rname}-{pname}"));
            // The recorder: first opener, stdout a regular file, stdin a pipe held open.
            let mut c = cmd(&rbin, &[&vnl], &d);
            c.stdin(Stdio::piped())
                .stdout(std::fs::File::create(&rec).unwrap())
                .stderr(Stdio::null());
            let mut r = Proc::start(c);
            assert!(wait_path(&path, 10), "{rname}: no ptp socket");
            let mut c = cmd(&pbin, &[&vnl], &d);
            c.stdin(std::fs::File::open(&file).unwrap())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut p = Proc::start(c);
            assert_eq!(p.wait(10), Some((Some(0), None)), "{pname} replaying a file");
            let m = wait_markers(&rec, 1, 10);
            assert_eq!(
                m,
                vec![1; FRAMES],
                "{rname} recorded {m:?} of {pname}'s replay; recorder running: {}",
                r.wait(0).is_none()
            );
        }
    }
    for (name, bin) in both() {
        for out in ["null", "file"] {
            let err = d.join("stderr");
            let mut c = cmd(&bin, &["null://"], &d);
            c.stdin(Stdio::null())
                .stderr(std::fs::File::create(&err).unwrap());
            if out == "file" {
                c.stdout(std::fs::File::create(d.join("out")).unwrap());
            } else {
                c.stdout(Stdio::null());
            }
            let o = spawn_wait(c, 10);
            assert_eq!(o, (Some(0), None), "{name} </dev/null >{out}");
            let said = std::fs::read_to_string(&err).unwrap();
            assert_eq!(
                said, "",
                "{name} </dev/null >{out}: the end of the input is no error"
            );
        }
    }
}

fn spawn_wait(c: Command, secs: u64) -> (Option<i32>, Option<i32>) {
    Proc::start(c).wait(secs).expect("still runs")
}

/// The end of the stream input ends the run also when the VNL hosts the node (a switch or hub
/// served over stdin/stdout, or to a coprocess), removing its directory, with status 0.
#[test]
fn input_end_ends_a_hosted_node() {
    for (name, bin) in both() {
        let d = TempDir::new("pvhostend");
        let dir = d.join("sw");
        let mut c = cmd(&bin, &[&format!("switch://{}", dir.display())], &d);
        c.stdin(Stdio::null()).stdout(Stdio::null());
        assert_eq!(spawn_wait(c, 10), (Some(0), None), "{name} switch:// </dev/null");
        assert!(!dir.exists(), "{name}: switch directory left");
        let dir = d.join("hub");
        let mut c = cmd(
            &bin,
            &[&format!("hub://{}", dir.display()), "=", "sleep", "0.3"],
            &d,
        );
        c.stdin(Stdio::null()).stdout(Stdio::null());
        assert_eq!(spawn_wait(c, 10), (Some(0), None), "{name} hub:// = sleep 0.3");
        assert!(!dir.exists(), "{name}: hub directory left");
    }
}

/// -l, -L and the login-shell mode write to syslog: START/STOP, each new IP source address of
/// the stream from stdin or from the coprocess, FAILED for a refused login. The program runs in a mount namespace of
/// its own where /dev/log is the test's socket. The message texts are vde_plug's; the
/// identifier is the invoked name (vde_plug writes "vde_plug" whatever its name).
#[test]
fn syslog_messages() {
    use std::os::unix::net::UnixDatagram;
    let mut frames = Vec::new();
    for src in [[10, 1, 2, 3], [10, 1, 2, 4], [10, 1, 2, 3]] {
        let mut f = vec![0xff; 6];
        f.extend([2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45]);
        f.extend([0; 11]);
        f.extend(src);
        f.extend([10, 1, 2, 9]);
        f.resize(60, 0);
        frames.extend((f.len() as u16).to_be_bytes());
        frames.extend(f);
    }
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["-l", "null://"],
            &["START: user root IP 192.0.2.7", "STOP: user root IP 192.0.2.7"],
        ),
        (
            &["--iplog", "null://"],
            &[
                "START: user root IP 192.0.2.7",
                "user root Real-IP 192.0.2.7 has got VDE-IP4 10.1.2.3 on vlan 0",
                "user root Real-IP 192.0.2.7 has got VDE-IP4 10.1.2.4 on vlan 0",
                "STOP: user root IP 192.0.2.7",
            ],
        ),
        (
            // The coprocess stays a moment after its output: vde_plug ends as soon as its
            // coprocess does (SIGCHLD), whether or not it has read the pipe yet.
            // (feed: `cat frames; sleep 0.5`, written below; vde_plug would take a -c here.)
            &["-L", "null://", "=", "sh", "feed"],
            &[
                "START: user root IP 192.0.2.7",
                "user root Real-IP 192.0.2.7 has got VDE-IP4 10.1.2.3 on vlan 0",
                "user root Real-IP 192.0.2.7 has got VDE-IP4 10.1.2.4 on vlan 0",
                "STOP: user root IP 192.0.2.7",
            ],
        ),
        (&["-c", "ls"], &["FAILED: user root IP 192.0.2.7"]),
    ];
    // Differs on purpose: a session ended by a signal is logged STOP too (vde_plug's handler
    // ends the process without its atexit STOP).
    let signalled: &[&str] = &["-l", "null://", "hub://HUB"];
    let cases: Vec<(&[&str], &[&str], Option<i32>)> = cases
        .iter()
        .map(|(a, w)| (*a, *w, None))
        .chain([(
            signalled,
            &["START: user root IP 192.0.2.7"][..],
            Some(libc::SIGTERM),
        )])
        .collect();
    for (name, bin) in both() {
        for (args, want, signal) in &cases {
            let d = TempDir::new("pvlog");
            let hub = d.join("hub");
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("HUB", hub.to_str().unwrap()))
                .collect();
            let dev = d.join("dev");
            std::fs::create_dir(&dev).unwrap();
            let sock = UnixDatagram::bind(dev.join("log")).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            let input = d.join("frames");
            std::fs::write(&input, &frames).unwrap();
            std::fs::write(d.join("feed"), "cat frames; sleep 0.5\n").unwrap();
            let mut c = Command::new("unshare");
            c.args(["-m", "--propagation", "private", "sh", "-c"])
                .arg(
                    "touch \"$0/null\" && mount --bind /dev/null \"$0/null\" && \
                     mount --rbind \"$0\" /dev && exec \"$@\"",
                )
                .arg(&dev)
                .arg(&bin)
                .args(&args)
                .env("SSH_CLIENT", "192.0.2.7 5022 22")
                .current_dir(d.path())
                .stdin(std::fs::File::open(&input).unwrap())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let st = match signal {
                None => spawn_wait(c, 10),
                Some(sig) => {
                    let mut p = Proc::start(c);
                    assert!(wait_path(&hub.join("ctl"), 10), "{name}: no hub");
                    unsafe_kill(p.pid(), *sig);
                    p.wait(10).expect("still runs after the signal")
                }
            };
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let text = m
                    .split_once(&format!("{name}: "))
                    .map(|(_, t)| t.trim_end_matches('\n').to_string())
                    .unwrap_or_else(|| panic!("{name}: no identifier in {m:?}"));
                assert!(m.starts_with("<14>"), "{name}: priority of {m:?}");
                got.push(text);
            }
            let mut want: Vec<&str> = want.to_vec();
            if signal.is_some() && name == "vdeplug-fast" {
                want.push("STOP: user root IP 192.0.2.7");
            }
            assert_eq!(got, want, "{name} {args:?} (ended {st:?})");
        }
    }
}

/// A VNL that cannot be opened ends the run with status 1 and a message naming it.
#[test]
fn open_failures_end_with_status_1() {
    let d = TempDir::new("pvopen");
    for v in ["vde:///no/such", "ptp:///no/such/p", "bogus://x", "=", "udp://x"] {
        for (name, bin) in both() {
            let o = run(cmd(&bin, &[v], &d), 10);
            assert_eq!(o.code, Some(1), "{name} {v}: {o:#?}");
            assert!(o.stderr.contains(v), "{name} {v}: {}", o.stderr);
        }
    }
}

/// A daemon in stream mode reads /dev/null (daemon(3)), so it ends at once, removing its pid
/// file. Differs on purpose: when the daemon cannot open its VNL, vdeplug-fast's parent says
/// why and exits 1 (vde_plug's parent has already exited 0, and the message goes to
/// /dev/null).
#[test]
fn daemon_in_stream_mode_and_a_failing_daemon() {
    for (name, bin) in both() {
        let d = TempDir::new("pvdstream");
        let pidfile = d.join("pid");
        let o = run(
            cmd(&bin, &["-d", "-p", pidfile.to_str().unwrap(), "null://"], &d),
            10,
        );
        assert_eq!(o.code, Some(0), "{name}: {o:#?}");
        let end = Instant::now() + Duration::from_secs(10);
        while pidfile.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!pidfile.exists(), "{name}: the daemon still runs on /dev/null");
        let o = run(cmd(&bin, &["-d", "vde:///no/such"], &d), 10);
        let want = if name == "vde_plug" { 0 } else { 1 };
        assert_eq!(o.code, Some(want), "{name}: {o:#?}");
    }
}

/// The stream on a socket (as under inetd or socat): frames from the network come out of it,
/// frames written to it go to the network; each program against a classic peer over ptp://.
#[test]
fn stream_on_a_socket() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let frames = frame_stream();
    for (name, bin) in both() {
        let d = TempDir::new("pvsock");
        // Network to socket: the program is the ptp's first opener.
        let (mine, theirs) = UnixStream::pair().unwrap();
        let path = d.join("in");
        let vnl = format!("ptp://{}", path.display());
        let mut c = cmd(&bin, &[&vnl], &d);
        c.stdin(std::os::fd::OwnedFd::from(theirs.try_clone().unwrap()))
            .stdout(std::os::fd::OwnedFd::from(theirs))
            .stderr(Stdio::null());
        let mut p = Proc::start(c);
        assert!(wait_path(&path, 10), "{name}: no ptp socket");
        let file = d.join("frames");
        std::fs::write(&file, &frames).unwrap();
        let mut replay = Command::new("vde_plug");
        replay
            .arg(&vnl)
            .stdin(std::fs::File::open(&file).unwrap())
            .stdout(Stdio::null());
        assert_eq!(spawn_wait(replay, 10), (Some(0), None), "classic replay");
        mine.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = vec![0u8; frames.len()];
        let mut r = &mine;
        r.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("{name}: frames from the network: {e}"));
        assert_eq!(got, frames, "{name}: frames out of the socket");
        // Closing the socket is the end of the input.
        drop(mine);
        assert_eq!(p.wait(10), Some((Some(0), None)), "{name}: the end of the socket");
        // Socket to network: a classic recorder is the first opener.
        let path = d.join("out");
        let vnl = format!("ptp://{}", path.display());
        let rec = d.join("rec");
        let mut c = Command::new("vde_plug");
        c.arg(&vnl)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&rec).unwrap());
        let _recorder = Proc::start(c);
        assert!(wait_path(&path, 10), "classic: no ptp socket");
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        let mut c = cmd(&bin, &[&vnl], &d);
        c.stdin(std::os::fd::OwnedFd::from(theirs.try_clone().unwrap()))
            .stdout(std::os::fd::OwnedFd::from(theirs))
            .stderr(Stdio::null());
        let _p = Proc::start(c);
        std::thread::sleep(Duration::from_millis(300));
        mine.write_all(&frames).unwrap();
        let m = wait_markers(&rec, 1, 10);
        assert_eq!(
            m,
            vec![1; FRAMES],
            "{name}: frames written to the socket reached the network"
        );
    }
}

/// A pid file that cannot be written does not stop the run; vdeplug-fast says so in one line.
#[test]
fn unwritable_pidfile_does_not_stop_the_run() {
    for (name, bin) in both() {
        let d = TempDir::new("pvnopid");
        let dir = d.join("hub");
        let mut c = cmd(
            &bin,
            &[
                "-p",
                "/no/such/dir/pid",
                "null://",
                &format!("hub://{}", dir.display()),
            ],
            &d,
        );
        let err = d.join("stderr");
        c.stderr(std::fs::File::create(&err).unwrap());
        let mut p = Proc::start(c);
        assert!(wait_path(&dir.join("ctl"), 10), "{name}: no hub");
        unsafe_kill(p.pid(), libc::SIGTERM);
        assert_eq!(p.wait(10), Some((Some(0), None)), "{name}");
        let said = std::fs::read_to_string(&err).unwrap();
        if name == "vdeplug-fast" {
            assert_eq!(said.lines().count(), 1, "{said}");
            assert!(said.contains("/no/such/dir/pid"), "{said}");
        }
    }
}

/// The switch going away ends the run with status 0, in the stream form and in a cable.
/// (vdeplug-fast also says so on stderr, through the engine's own message.)
#[test]
fn switch_going_away_ends_the_run() {
    for (name, bin) in both() {
        for cable in [false, true] {
            let d = TempDir::new("pvswgone");
            let dir = d.join("sw");
            let sw = vde_switch(&dir, false);
            let vnl = format!("vde://{}", dir.display());
            let args: Vec<&str> = if cable { vec![&vnl, "null://"] } else { vec![&vnl] };
            let mut c = cmd(&bin, &args, &d);
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let mut p = Proc::start(c);
            std::thread::sleep(Duration::from_millis(300));
            assert!(p.wait(0).is_none(), "{name}: ended early");
            drop(sw);
            assert_eq!(p.wait(10), Some((Some(0), None)), "{name} cable={cable}");
        }
    }
}

/// --port and --port2 choose the switch port of a vde:// VNL (vde2's vde_switch names the
/// port's socket after it: `005.N`), and a connection without -D shows vde_plug's default
/// description `vdeplug:` in the switch's port/print.
#[test]
fn switch_port_options_and_default_description() {
    use std::io::{BufRead, BufReader, Write};
    for (name, bin) in both() {
        for second in [false, true] {
            let d = TempDir::new("pvport");
            let dir = d.join("sw");
            let mut sw = vde_switch(&dir, true);
            let vnl = format!("vde://{}", dir.display());
            let args: Vec<&str> = if second {
                vec!["--port2=6", "null://", &vnl]
            } else {
                vec!["--port", "5", &vnl]
            };
            let mut c = cmd(&bin, &args, &d);
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let _p = Proc::start(c);
            let want = if second { "006." } else { "005." };
            let end = Instant::now() + Duration::from_secs(10);
            let has_port = || {
                std::fs::read_dir(&dir)
                    .map(|r| {
                        r.flatten()
                            .any(|e| e.file_name().to_string_lossy().starts_with(want))
                    })
                    .unwrap_or(false)
            };
            while !has_port() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(has_port(), "{name} {args:?}: no port socket {want}*");
            let mut stdin = sw.0.stdin.take().unwrap();
            let out = sw.0.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
            stdin.write_all(b"port/print\n").unwrap();
            let mut seen = String::new();
            while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
                seen.push_str(&l);
                seen.push('\n');
            }
            assert!(seen.contains(": vdeplug: user="), "{name}: port/print:\n{seen}");
        }
    }
}

/// A daemon's coprocess does not hold the caller's stderr (daemon(3) put it on /dev/null
/// before vde_plug starts it): `$(vde_plug -d ... = CMD 2>&1)` returns at once.
#[test]
fn daemon_coprocess_leaves_the_callers_output() {
    for (name, bin) in both() {
        let d = TempDir::new("pvdcmd");
        let pidfile = d.join("pid");
        let t = Instant::now();
        let o = run(
            cmd(
                &bin,
                &[
                    "-d",
                    "-p",
                    pidfile.to_str().unwrap(),
                    "null://",
                    "=",
                    "sleep",
                    "30",
                ],
                &d,
            ),
            10,
        );
        let pid = read_pid(&pidfile, 10);
        let _g = DaemonPid(pid);
        assert_eq!(o.code, Some(0), "{name}: {o:#?}");
        assert_ne!(
            o.stderr, "<stderr still open>",
            "{name}: the coprocess holds stderr"
        );
        assert!(t.elapsed() < Duration::from_secs(4), "{name}: {:?}", t.elapsed());
        unsafe_kill(pid, libc::SIGTERM);
        assert!(wait_gone(pid, 10), "{name}: the daemon still runs");
    }
}

/// Every file under `dir`, as bytes relative to it, sorted (a name need not be UTF-8).
fn listing(dir: &Path) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let path = e.path();
            let rel = path.strip_prefix(dir).unwrap().as_os_str().as_bytes().to_vec();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            }
            out.push(rel);
        }
    }
    out.sort();
    out
}

/// vde_plug's arguments are byte strings: VNLs whose paths are not UTF-8 (a cable from a
/// ptp:// end to a hosted switch, a vde_switch joined by a plain path or by `vde://` with -m's
/// open args), the pid file's path, and a coprocess's command and arguments reach the system as
/// given, in both programs.
#[test]
fn arguments_that_are_not_utf8() {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let under = |d: &TempDir, pre: &[u8], name: &[u8]| -> OsString {
        let mut v = pre.to_vec();
        v.extend_from_slice(d.path().as_os_str().as_bytes());
        v.push(b'/');
        v.extend_from_slice(name);
        OsString::from_vec(v)
    };
    // A cable: the files made while it runs, its end, and what is left.
    let mut seen = Vec::new();
    for (name, bin) in both() {
        let d = TempDir::new("pvbytes");
        let mut c = Command::new(&bin);
        c.arg("-p")
            .arg(under(&d, b"", b"pid\xfd"))
            .arg(under(&d, b"ptp://", b"a\xff"))
            .arg(under(&d, b"switch://", b"s\xfe"))
            .current_dir(d.path())
            .env("HOME", d.path())
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        let mut p = Proc::start(c);
        let ctl = d.path().join(OsStr::from_bytes(b"s\xfe/ctl"));
        let up = wait_path(&ctl, 10);
        // vdeplug-fast's datagram ptp end also binds its pair socket next to PATH (PATH+fast1
        // or PATH+fast2, README "Data plane": super-frames with a vdens-fast peer), which
        // vde_plug has no use for; removed at the end as PATH is.
        let pair = |n: &Vec<u8>| n.ends_with(b"+fast1") || n.ends_with(b"+fast2");
        let during: Vec<Vec<u8>> = listing(d.path()).into_iter().filter(|n| !pair(n)).collect();
        unsafe_kill(p.pid(), libc::SIGTERM);
        let st = p.wait(10);
        seen.push((up, during, st, listing(d.path())));
        let _ = name;
    }
    assert_eq!(seen[0], seen[1], "vde_plug, then vdeplug-fast");
    assert!(seen[0].0, "no switch at the path: {:?}", seen[0]);

    // A vde_switch at a path that is not UTF-8, joined by a plain path and by vde:// with -m.
    let d = TempDir::new("pvbytesw");
    let dir = d.path().join(OsStr::from_bytes(b"sw\xff"));
    let _sw = vde_switch(&dir, false);
    for args in [
        vec![under(&d, b"", b"sw\xff")],
        vec!["-m".into(), "777".into(), under(&d, b"vde://", b"sw\xff")],
    ] {
        let mut codes = Vec::new();
        for (name, bin) in both() {
            let mut c = Command::new(&bin);
            c.args(&args).current_dir(d.path()).env("HOME", d.path());
            let o = run(c, 10);
            codes.push((o.code, o.stderr.lines().count() <= 1, name));
        }
        assert_eq!((codes[0].0, codes[0].1), (Some(0), true), "{args:?}: {codes:?}");
        assert_eq!(
            (codes[1].0, codes[1].1),
            (codes[0].0, true),
            "{args:?}: {codes:?}"
        );
    }

    // A coprocess at a path that is not UTF-8, with such an argument.
    let mut outs = Vec::new();
    for (_, bin) in both() {
        let d = TempDir::new("pvbytecmd");
        let script = d.path().join(OsStr::from_bytes(b"run\xfc"));
        std::fs::write(&script, "#!/bin/sh\nprintf %s \"$1\" > \"$0.out\"\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut c = Command::new(&bin);
        c.args(["null://", "="])
            .arg(&script)
            .arg(OsStr::from_bytes(b"x\xfb"))
            .current_dir(d.path())
            .env("HOME", d.path());
        let o = run(c, 10);
        let mut out = script.into_os_string();
        out.push(".out");
        outs.push((o.code, std::fs::read(out).ok()));
    }
    assert_eq!(outs[0], (Some(0), Some(b"x\xfb".to_vec())), "vde_plug");
    assert_eq!(outs[1], outs[0], "vdeplug-fast");
}

/// `bin` copied where the unprivileged user can run it (the build tree may be closed to it).
fn runnable(bin: &Path, d: &TempDir) -> PathBuf {
    if bin.is_relative() {
        return bin.to_path_buf();
    }
    let to = d.join("bin");
    std::fs::create_dir_all(&to).unwrap();
    let to = to.join(bin.file_name().unwrap());
    std::fs::copy(bin, &to).unwrap();
    to
}

/// The same through libvdeplug (a `vde` plugin found in VDEPLUGIN_PATH is used instead of
/// the built-in transport, as in vde_plug): -D's bytes reach the plugin.
#[test]
fn description_bytes_reach_the_switch_through_libvdeplug() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let plugins = "/usr/lib/x86_64-linux-gnu/vdeplug";
    assert!(
        Path::new(plugins).join("libvdeplug_vde.so").exists(),
        "libvdeplug's vde plugin"
    );
    let mut seen = Vec::new();
    for (name, bin) in both() {
        let d = TempDir::new("pvdescrlib");
        let dir = d.join("sw");
        let mut c = Command::new(&bin);
        c.arg("-D")
            .arg(OsString::from_vec(b"lib\xff".to_vec()))
            .arg(format!("vde://{}", dir.display()))
            .current_dir(d.path())
            .env("HOME", d.path())
            .env("VDEPLUGIN_PATH", plugins)
            .env_remove("SSH_CLIENT");
        let (req, out) = record_request(&dir, c);
        let req = req.unwrap_or_else(|| panic!("{name}: no request: {out:#?}"));
        seen.push(req.descr);
    }
    assert!(
        seen[0].starts_with(b"lib\xff user="),
        "{}",
        seen[0].escape_ascii()
    );
    assert_eq!(
        seen[1].escape_ascii().to_string(),
        seen[0].escape_ascii().to_string(),
        "vdeplug-fast (left), vde_plug (right)"
    );
}

/// -D's bytes reach the switch as given, UTF-8 or not, in vde_plug's form `DESCR user=NAME
/// pid=N[ SSH=HOST]` cut to 127 bytes (libvdeplug's set_newdescr and MAXDESCR): the same
/// request from both programs, byte for byte but the pid, to a stand-in switch; and the same
/// line in a vde2 vde_switch's port/print.
#[test]
fn description_bytes_reach_the_switch_as_given() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let long_utf8: Vec<u8> = "é".repeat(70).into_bytes(); // cut inside a character
    let cases: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
        (b"a\xff\xfeb".to_vec(), None),
        (b"x".to_vec(), Some(b"192.0.2.1\xfd 5022 22".to_vec())),
        (long_utf8, None),
        (vec![b'd'; 115], None), // `user=root` whole, ` pid` cut
        (b"\xc3".to_vec(), None),
        (Vec::new(), None), // -D '' keeps `vdeplug:`
    ];
    for (descr, ssh) in &cases {
        let mut seen = Vec::new();
        for (name, bin) in both() {
            let d = TempDir::new("pvdescr");
            let dir = d.join("sw");
            let mut c = Command::new(&bin);
            c.arg("-D")
                .arg(OsString::from_vec(descr.clone()))
                .arg(format!("vde://{}", dir.display()))
                .current_dir(d.path())
                .env("HOME", d.path())
                .env_remove("SSH_CLIENT");
            if let Some(s) = ssh {
                c.env("SSH_CLIENT", OsString::from_vec(s.clone()));
            }
            let (req, out) = record_request(&dir, c);
            assert_eq!(out.code, Some(1), "{name}: {out:#?}");
            let req = req.unwrap_or_else(|| panic!("{name}: no request: {out:#?}"));
            seen.push(req.descr);
        }
        assert_eq!(
            seen[1].escape_ascii().to_string(),
            seen[0].escape_ascii().to_string(),
            "-D '{}' SSH_CLIENT {:?}: vdeplug-fast (left), vde_plug (right)",
            descr.escape_ascii(),
            ssh.as_ref().map(|s| s.escape_ascii().to_string())
        );
        assert!(seen[0].len() <= 127, "{:?}", seen[0]);
    }

    // The same in vde_switch's port/print, read as bytes.
    let mut lines = Vec::new();
    for (name, bin) in both() {
        let d = TempDir::new("pvdescrsw");
        let dir = d.join("sw");
        let mut sw = vde_switch(&dir, true);
        let mut c = Command::new(&bin);
        c.arg("-D")
            .arg(OsString::from_vec(b"a\xff\xfeb".to_vec()))
            .arg(format!("vde://{}", dir.display()))
            .current_dir(d.path())
            .env("HOME", d.path())
            .env_remove("SSH_CLIENT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let _plug = Proc::start(c);
        let end = Instant::now() + Duration::from_secs(10);
        let joined = || {
            std::fs::read_dir(&dir).is_ok_and(|r| {
                r.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("001."))
            })
        };
        while !joined() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(joined(), "{name}: never joined vde_switch");
        lines.push(port_print_endpoints(&mut sw));
    }
    let shown = |v: &[Vec<u8>]| v.iter().map(|l| l.escape_ascii().to_string()).collect::<Vec<_>>();
    assert!(
        lines[0].iter().any(|l| l == b"a\xff\xfeb user=root pid=N"),
        "vde_plug: {:?}",
        shown(&lines[0])
    );
    assert_eq!(
        shown(&lines[1]),
        shown(&lines[0]),
        "vdeplug-fast (left), vde_plug (right)"
    );
}

/// -g/-G give the data socket of a `vde://` VNL (first, second) to a group, as vde_plug does:
/// the same mode and group at the switch, or the same failure (status 1, no request), as root
/// and as an unprivileged user in the groups nogroup and daemon; a `group=` in the VNL wins.
/// Differs on purpose: a name that is no group (and not a number) is refused in one line
/// naming it; vde_plug reads it with atoi, so as root its socket silently goes to group 0
/// (`-g nosuch`) or 12 (`-g 12abc`), and an empty `-g ''` is no group for vdeplug-fast (the
/// default), gid 0 for vde_plug (the same for root; refused for another user).
#[test]
fn group_options_as_vde_plug() {
    const SAME: u8 = 0;
    const REFUSED_ON_PURPOSE: u8 = 1;
    const EMPTY_ON_PURPOSE: u8 = 2;
    // (options before the VNLs, VNL-file suffix, second VNL?, how the two compare as root)
    let cases: &[(&[&str], &str, bool, u8)] = &[
        (&["-g", "daemon"], "", false, SAME),
        (&["-g", "daemon", "-m", "770"], "", false, SAME),
        (&["--group=1", "-m", "0660"], "", false, SAME),
        (&["-g", "nogroup", "-m", "777"], "", false, SAME),
        (&["-g", "root", "-m", "770"], "", false, SAME),
        (&["-g", "daemon", "-m", "770"], "[group=nogroup]", false, SAME),
        (&["-G", "daemon", "-M", "750"], "", true, SAME),
        (&["--group2=daemon", "-g", "nogroup"], "", true, SAME),
        (&["-g", "nosuchgroup", "-m", "770"], "", false, REFUSED_ON_PURPOSE),
        (&["-g", "12abc", "-m", "770"], "", false, REFUSED_ON_PURPOSE),
        (&["-g", "", "-m", "770"], "", false, EMPTY_ON_PURPOSE),
    ];
    for (args, suffix, second, how) in cases {
        for nobody in [false, true] {
            let mut seen = Vec::new();
            for (name, bin) in both() {
                let d = TempDir::new("pvgroup");
                let dir = d.join("sw");
                let bin = runnable(&bin, &d);
                let mut c = if nobody {
                    let mut c = Command::new("setpriv");
                    c.args(["--reuid=65534", "--regid=65534", "--groups=65534,1", "--"])
                        .arg(&bin);
                    c
                } else {
                    Command::new(&bin)
                };
                c.args(*args);
                let vnl = format!("vde://{}{suffix}", dir.display());
                if *second {
                    c.arg("null://");
                }
                c.arg(&vnl).current_dir(d.path()).env("HOME", d.path());
                let (req, out) = record_request(&dir, c);
                if name == "vdeplug-fast" && req.is_none() {
                    assert_eq!(out.stderr.lines().count(), 1, "{name} {args:?}: {}", out.stderr);
                }
                seen.push((req.map(|r| (r.mode, r.gid)), out.code, out.stderr));
            }
            let what = format!("{args:?} {suffix} nobody={nobody}: {seen:#?}");
            let (classic, fast) = (&seen[0], &seen[1]);
            // Each ends with status 1 (the stand-in switch hangs up, or the group fails).
            assert_eq!((classic.1, fast.1), (Some(1), Some(1)), "{what}");
            match (how, nobody) {
                (&SAME, _) | (&REFUSED_ON_PURPOSE, true) => assert_eq!(fast.0, classic.0, "{what}"),
                (&REFUSED_ON_PURPOSE, false) => {
                    assert!(classic.0.is_some(), "{what}");
                    assert_eq!(fast.0, None, "{what}");
                    assert!(fast.2.contains("no group named"), "{what}");
                }
                (_, false) => assert_eq!(fast.0, classic.0, "{what}"),
                (_, true) => {
                    assert_eq!(classic.0, None, "{what}");
                    assert_eq!(fast.0, Some((0o770, 65534)), "{what}");
                }
            }
        }
    }
}
