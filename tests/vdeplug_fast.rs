//! vdeplug-fast: a switch hosted with `null:// switch://DIR` (classic and vdens-fast clients,
//! nothing left behind on exit), the cable form between two ptp links, and the stdio and
//! coprocess forms against a classic vde_plug. Every address lives inside namespaces these
//! tests create.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn vdeplug_fast(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"));
    c.args(args);
    c
}

fn pair(a: &mut Node, b: &mut Node, net: u8, d: &TempDir) {
    let (ia, ib) = (format!("10.{net}.0.1"), format!("10.{net}.0.2"));
    a.up("vde0", &format!("{ia}/24"), None);
    b.up("vde0", &format!("{ib}/24"), None);
    a.ping(&ib, 3, None);
    b.ping(&ia, 3, None);
    tcp_transfer(a, b, &ib, d, 2 << 20);
    tcp_transfer(b, a, &ia, d, 1 << 20);
}

fn wait_exit(dm: &mut Daemon, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if !dm.alive() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn hosted_switch_serves_clients_and_cleans_up() {
    hosted_switch_on("auto", 71);
}

#[test]
fn hosted_switch_on_the_epoll_node() {
    hosted_switch_on("poll", 73);
}

/// Descriptors of process `pid` that are io_uring instances.
fn io_urings(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|r| {
            r.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("io_uring"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// A vdeplug-fast switch with `--engine ENGINE` serves a classic and a vdens-fast client, frees
/// the port of one that leaves, and removes its directory on SIGTERM; it runs on io_uring
/// (one ring) by default and on the epoll node (no ring) with `--engine poll`.
fn hosted_switch_on(engine: &str, net: u8) {
    let d = TempDir::new("vfsw");
    let dir = d.join("sw");
    let sw = format!("switch://{}", dir.display());
    let mut dm = Daemon::start(
        "vdeplug-fast",
        vdeplug_fast(&["--engine", engine, "null://", &sw]),
    );
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    let rings = if engine == "poll" { 0 } else { 1 };
    // The control socket exists before the node thread has set its ring up (the engine
    // starts after the VNLs are open): wait for it, bounded.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while io_urings(dm.pid()) != rings && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        io_urings(dm.pid()),
        rings,
        "io_uring instances with --engine {engine}"
    );
    let vnl = format!("vde://{}", dir.display());
    {
        let mut a = ns_node("classic", Impl::Classic, &d, &[&vnl]);
        let mut b = ns_node("fast", Impl::Fast, &d, &[&vnl]);
        pair(&mut a, &mut b, net, &d);
        // A client that leaves frees its port (its data socket goes).
        b.finish(10);
        let end = Instant::now() + Duration::from_secs(5);
        let count = || std::fs::read_dir(&dir).map(|r| r.count()).unwrap_or(0);
        while count() > 2 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(count(), 2, "ctl and the remaining client's socket");
        drop(a);
    }
    unsafe_kill(dm.pid(), libc::SIGTERM);
    assert!(wait_exit(&mut dm, 10), "vdeplug-fast did not exit on SIGTERM");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn hosted_hub_and_sigint() {
    let d = TempDir::new("vfhub");
    let dir = d.join("hub");
    let mut dm = Daemon::start(
        "vdeplug-fast",
        vdeplug_fast(&["null://", &format!("hub://{}", dir.display())]),
    );
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    let vnl = format!("vde://{}", dir.display());
    let mut a = ns_node("fast", Impl::Fast, &d, &[&vnl]);
    let mut b = ns_node("classic", Impl::Classic, &d, &[&vnl]);
    pair(&mut a, &mut b, 72, &d);
    drop((a, b));
    unsafe_kill(dm.pid(), libc::SIGINT);
    assert!(wait_exit(&mut dm, 10), "vdeplug-fast did not exit on SIGINT");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn cable_between_two_ptp_links() {
    let d = TempDir::new("vfcable");
    let (pa, pb) = (
        format!("ptp://{}", d.join("a").display()),
        format!("ptp://{}", d.join("b").display()),
    );
    let mut a = ns_node("classic", Impl::Classic, &d, &[&pa]);
    let mut b = ns_node("fast", Impl::Fast, &d, &[&pb]);
    let _cable = Daemon::start("vdeplug-fast", vdeplug_fast(&[&pa, &pb]));
    pair(&mut a, &mut b, 73, &d);
}

#[test]
fn stdio_form_under_a_classic_vde_plug() {
    // Classic vde_plug runs vdeplug-fast as its coprocess: frames cross vdeplug-fast's
    // stdin/stdout as a 2-byte-length stream.
    let d = TempDir::new("vfstdio");
    let (pa, pb) = (
        format!("ptp://{}", d.join("a").display()),
        format!("ptp://{}", d.join("b").display()),
    );
    let mut a = ns_node("a", Impl::Classic, &d, &[&pa]);
    let mut b = ns_node("b", Impl::Fast, &d, &[&pb]);
    let _plug = Daemon::start("vde_plug", {
        let mut c = Command::new("vde_plug");
        c.args([&pa, "=", env!("CARGO_BIN_EXE_vdeplug-fast"), &pb]);
        c
    });
    pair(&mut a, &mut b, 74, &d);
}

#[test]
fn coprocess_form_with_a_classic_vde_plug() {
    // vdeplug-fast runs classic vde_plug (stdio form) as its coprocess.
    let d = TempDir::new("vfcoproc");
    let (pa, pb) = (
        format!("ptp://{}", d.join("a").display()),
        format!("ptp://{}", d.join("b").display()),
    );
    let mut a = ns_node("a", Impl::Fast, &d, &[&pa]);
    let mut b = ns_node("b", Impl::Classic, &d, &[&pb]);
    let mut dm = Daemon::start("vdeplug-fast", vdeplug_fast(&[&pa, "=", "vde_plug", &pb]));
    pair(&mut a, &mut b, 75, &d);
    unsafe_kill(dm.pid(), libc::SIGTERM);
    assert!(wait_exit(&mut dm, 10), "vdeplug-fast did not exit on SIGTERM");
}

#[test]
fn usage_and_errors() {
    let o = run(vdeplug_fast(&["--help"]), 10);
    assert_eq!(o.code, Some(0));
    assert!(o.stdout.contains("VNL1 VNL2"), "{}", o.stdout);
    // Usage errors end with vde_plug's status 255, in one line.
    let o = run(vdeplug_fast(&["-x"]), 10);
    assert_eq!(o.code, Some(255));
    assert_eq!(
        o.stderr.trim(),
        "vdeplug-fast: invalid option -- 'x' (see vdeplug-fast --help)"
    );
    let o = run(vdeplug_fast(&["--engine", "fast", "null://", "null://"]), 10);
    assert_eq!(o.code, Some(255));
    assert_eq!(
        o.stderr.trim(),
        "vdeplug-fast: --engine: unknown engine 'fast' (auto, uring or poll) (see vdeplug-fast --help)"
    );
    let o = run(vdeplug_fast(&["a", "b", "c"]), 10);
    assert_eq!(o.code, Some(255));
    let d = TempDir::new("vfbad");
    let o = run(
        vdeplug_fast(&["null://", &format!("switch://{}/no/such/sw", d.path().display())]),
        10,
    );
    assert_eq!(o.code, Some(1));
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(o.stderr.contains("must exist"), "{}", o.stderr);
}

/// Kills a daemonised process by pid on drop (the test cannot wait for it: not its child).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 0 && alive(self.0) {
            unsafe_kill(self.0, libc::SIGKILL);
        }
    }
}

#[test]
fn daemon_with_pidfile() {
    let d = TempDir::new("vfdaemon");
    let dir = d.join("sw");
    let pidfile = d.join("pid");
    let o = run(
        vdeplug_fast(&[
            "-d",
            "-p",
            pidfile.to_str().unwrap(),
            "null://",
            &format!("switch://{}", dir.display()),
        ]),
        10,
    );
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(wait_path(&pidfile, 10), "no pid file");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let mut guard = KillOnDrop(pid);
    assert!(wait_path(&dir.join("ctl"), 10), "ctl did not appear");
    let vnl = format!("vde://{}", dir.display());
    {
        let mut a = ns_node("a", Impl::Fast, &d, &[&vnl]);
        let mut b = ns_node("b", Impl::Classic, &d, &[&vnl]);
        a.up("vde0", "10.76.0.1/24", None);
        b.up("vde0", "10.76.0.2/24", None);
        a.ping("10.76.0.2", 3, None);
    }
    unsafe_kill(pid, libc::SIGTERM);
    assert!(wait_gone(pid, 10), "the daemon did not exit on SIGTERM");
    guard.0 = 0;
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!pidfile.exists(), "pid file left behind");
}

#[test]
fn exits_when_its_switch_goes_away() {
    // As vde_plug: the switch closing the control connection ends the cable.
    let d = TempDir::new("vfswgone");
    let dir = d.join("sw");
    let sw = Daemon::start("vde_switch", {
        let mut c = Command::new("vde_switch");
        c.args(["-s", dir.to_str().unwrap()]);
        c
    });
    assert!(wait_path(&dir.join("ctl"), 10), "vde_switch ctl did not appear");
    let mut dm = Daemon::start(
        "vdeplug-fast",
        vdeplug_fast(&[&format!("vde://{}", dir.display()), "null://"]),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(dm.alive(), "vdeplug-fast exited early");
    drop(sw);
    assert!(
        wait_exit(&mut dm, 10),
        "vdeplug-fast still runs without its switch"
    );
}

#[test]
fn description_reaches_the_switch() {
    // -D DESCR is what vde_switch's port/print shows for the connection, as with vde_plug.
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let d = TempDir::new("vpfdescr");
    let sw = d.join("sw");
    let mut switch = Command::new("vde_switch")
        .args(["-s", sw.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = switch.id() as i32;
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            unsafe_kill(self.0, libc::SIGKILL);
        }
    }
    let _k = Kill(pid);
    assert!(wait_path(&sw.join("ctl"), 10));
    let vnl = format!("vde://{}", sw.display());
    let _plug = Daemon::start(
        "vdeplug-fast",
        vdeplug_fast(&["-D", "lab-cable-7", &vnl, "null://"]),
    );
    let mut stdin = switch.stdin.take().unwrap();
    let out = switch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(15);
    let mut seen = String::new();
    while Instant::now() < end {
        let _ = stdin.write_all(b"port/print\n");
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
            seen.push_str(&l);
            seen.push('\n');
        }
        if seen.contains("lab-cable-7 user=") {
            break;
        }
    }
    assert!(
        seen.contains("lab-cable-7 user="),
        "port/print did not show the description:\n{seen}"
    );
    let _ = switch.kill();
    let _ = switch.wait();
}

#[test]
fn messages_carry_the_invoked_name() {
    // Installed under another name (a symlink, an alternative): its messages say that name.
    let d = TempDir::new("vfname");
    let link = d.join("my_plug");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vdeplug-fast"), &link).unwrap();
    let mut c = Command::new(&link);
    c.arg("-x");
    let o = run(c, 10);
    assert!(o.stderr.starts_with("my_plug: "), "{}", o.stderr);
    assert!(o.stderr.contains("see my_plug --help"), "{}", o.stderr);
    let mut c = Command::new(&link);
    c.args(["null://", &format!("switch://{}/no/such/sw", d.path().display())]);
    let o = run(c, 10);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.starts_with("my_plug: "), "{}", o.stderr);
    assert!(!o.stderr.contains("vdens-fast"), "{}", o.stderr);
    let mut c = Command::new(&link);
    c.arg("--help");
    let o = run(c, 10);
    assert!(o.stdout.contains("my_plug [ OPTIONS ] VNL1 VNL2"), "{}", o.stdout);
}

/// The engine's messages inside vdeplug-fast name vdeplug-fast (they said "vdens-fast"), on
/// both engines: a cable's switch going away.
#[test]
fn engine_messages_name_vdeplug_fast() {
    for engine in ["uring", "poll"] {
        let d = TempDir::new("vf-diag");
        let sw = d.join("sw");
        let host = Daemon::start("vde_plug switch", {
            let mut c = Command::new("vde_plug");
            c.arg("null://").arg(format!("switch://{}", sw.display()));
            c
        });
        assert!(wait_path(&sw.join("ctl"), 10), "the classic switch did not start");
        let mut c = vdeplug_fast(&["--engine", engine, &format!("vde://{}", sw.display()), "null://"]);
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("vdeplug-fast");
        std::thread::sleep(Duration::from_millis(500));
        drop(host);
        let end = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().expect("output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("vdeplug-fast: cable: ") && err.contains("the switch closed the control connection"),
            "{engine}: {err}"
        );
        assert!(!err.contains("vdens-fast"), "{engine}: {err}");
    }
}
