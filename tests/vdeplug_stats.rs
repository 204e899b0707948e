//! vdeplug-fast's `--stats FILE` and `--stats-interval MS` (issue 13, item 3): a cable
//! (`vdeplug-fast ptp://A ptp://B` between a vdens-fast end X, first opener on A, and one Y,
//! second opener on B) writes the engine's JSON as vdens-fast does: each link named with its
//! VNL, whether it negotiated super-frames, and the super-frames that crossed its wire whole
//! per direction. The file is written every interval, at once on SIGUSR1, and at the end (the
//! final counters), replaced whole (nothing else left behind); a relative FILE is taken from
//! where vdeplug-fast was started, also with `-d`; a FILE that cannot be written is said in a
//! line and the run goes on. Without `--stats`, SIGUSR1 is ignored as vde_plug ignores it
//! (side by side with vde_plug).
//!
//! Everything runs inside namespaces these tests create, or on AF_UNIX sockets in their temp
//! directories.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VDEPLUG_FAST: &str = env!("CARGO_BIN_EXE_vdeplug-fast");

fn vnl(d: &TempDir, end: &str) -> String {
    format!("ptp://{}", d.join(end).display())
}

/// `vdeplug-fast OPTS ptp://A ptp://B` started in `cwd`, its stderr in `err`; returned once
/// it is the first opener on B (B exists).
fn cable(d: &TempDir, opts: &[&str], cwd: &Path, err: &Path) -> Proc {
    let mut c = Command::new(VDEPLUG_FAST);
    c.args(opts)
        .arg(vnl(d, "a"))
        .arg(vnl(d, "b"))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(err).unwrap());
    let k = Proc::start(c);
    assert!(wait_path(&d.join("b"), 10), "the cable did not open B");
    k
}

/// The JSON object of port `name` in a stats line (up to the next port).
fn port<'a>(json: &'a str, name: &str) -> &'a str {
    let at = json
        .find(&format!("{{\"name\":\"{name}\""))
        .unwrap_or_else(|| panic!("no port {name} in {json}"));
    let p = &json[at + 1..];
    &json[at..at + 1 + p.find("{\"name\"").unwrap_or(p.len())]
}

/// `"key":N` of direction `dir` of port `name`.
fn count(json: &str, name: &str, dir: &str, key: &str) -> u64 {
    let p = port(json, name);
    let d = &p[p
        .find(&format!("\"{dir}\":{{"))
        .unwrap_or_else(|| panic!("no {dir} in {p}"))..];
    stat_sum(&d[..d.find('}').unwrap()], key)
}

/// Sends SIGUSR1 to `pid` with `file` removed, and waits (5 s at most) for it to be written
/// again; returns its content (empty when it was not).
fn usr1(pid: i32, file: &Path) -> String {
    let _ = std::fs::remove_file(file);
    unsafe_kill(pid, libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(j) = std::fs::read_to_string(file) {
            if j.ends_with("}\n") {
                return j;
            }
        }
    }
    String::new()
}

/// Sends SIGTERM and waits for the exit status (10 s at most).
fn term(k: &mut Proc) -> Option<i32> {
    unsafe_kill(k.pid(), libc::SIGTERM);
    k.wait(10).expect("the cable did not end on SIGTERM").0
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// X and Y vdens-fast, both links of the cable negotiated: its stats file (relative to where
/// it was started) names each with its VNL as `negotiated`, and after TCP both ways counts
/// super-frames received whole from each link and sent whole to each. The 10-minute interval
/// leaves the writes to SIGUSR1 (each one afresh, with the counters grown by the traffic in
/// between) and to the end (the final counters); the cable's directory then holds the stats
/// file only.
#[test]
fn a_cable_reports_both_links_negotiated_and_the_super_frames_on_each() {
    let d = TempDir::new("vpst");
    let (mut x, _) = stats_end(&d, "x", true, &[], &vnl(&d, "a"));
    assert!(wait_path(&d.join("a"), 10), "X did not open A");
    let cwd = d.join("cable");
    std::fs::create_dir(&cwd).unwrap();
    let file = cwd.join("cable.json");
    let err = d.join("cable.err");
    let mut k = cable(&d, &["--stats", "cable.json", "--stats-i", "600000"], &cwd, &err);
    let (mut y, _) = stats_end(&d, "y", true, &[], &vnl(&d, "b"));
    wire_pair(&mut x, &mut y, "71", 1500);
    tcp_transfer(&mut x, &mut y, "10.71.0.2", &d, 8 << 20);
    tcp_transfer(&mut y, &mut x, "10.71.0.1", &d, 8 << 20);
    assert!(!file.exists(), "written before its interval");
    let j = usr1(k.pid(), &file);
    assert!(!j.is_empty(), "SIGUSR1 did not write {}", file.display());
    assert_eq!(j.lines().count(), 1, "{j}");
    for (plug, end) in [("plug1", "a"), ("plug2", "b")] {
        assert_eq!(port_str(&j, plug, "vnl"), vnl(&d, end), "{j}");
        assert_eq!(port_str(&j, plug, "superframes"), "negotiated", "{plug}: {j}");
        // Received whole from the link (tap_to_link: into the cable), sent whole to it.
        for dir in ["tap_to_link", "link_to_tap"] {
            assert!(count(&j, plug, dir, "wire_super") > 0, "{plug} {dir}: {j}");
        }
        assert_eq!(
            count(&j, plug, "tap_to_link", "drop_framing") + count(&j, plug, "tap_to_link", "drop_oversize"),
            0,
            "{plug}: {j}"
        );
    }
    // What one link took whole went whole to the other.
    assert!(
        count(&j, "plug2", "link_to_tap", "frames") >= 8 << 20 >> 16,
        "{j}"
    );
    // Again, after more traffic: written afresh, the counters grown.
    x.ping("10.71.0.2", 3, None);
    let j2 = usr1(k.pid(), &file);
    assert!(!j2.is_empty(), "the second SIGUSR1 did not write the file");
    for plug in ["plug1", "plug2"] {
        for dir in ["tap_to_link", "link_to_tap"] {
            assert!(
                count(&j2, plug, dir, "received") > count(&j, plug, dir, "received"),
                "{plug} {dir}: {j} then {j2}"
            );
        }
    }
    // At the end: the final counters, and nothing else left in the cable's directory.
    x.ping("10.71.0.2", 2, None);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(term(&mut k), Some(0));
    let last = std::fs::read_to_string(&file).expect("no stats written at the end");
    assert!(
        count(&last, "plug1", "tap_to_link", "received") > count(&j2, "plug1", "tap_to_link", "received"),
        "{j2} then {last}"
    );
    assert_eq!(port_str(&last, "plug1", "superframes"), "negotiated", "{last}");
    assert_eq!(names(&cwd), ["cable.json"]);
    let e = std::fs::read_to_string(&err).unwrap();
    assert!(e.is_empty(), "the cable said: {e}");
    y.finish(10);
    x.finish(10);
    for f in ["a", "a+", "a+fast1", "a+fast2", "b", "b+", "b+fast1", "b+fast2"] {
        assert!(!d.join(f).exists(), "{f} left behind");
    }
}

/// A link whose peer does not take super-frames shows `offered`, not `negotiated`, and
/// carried none whole; the cable's other link, to a vdens-fast end, shows `negotiated` and
/// the super-frames that end sent it whole. X a classic vdens (A), then Y a vdens-fast with
/// `--no-offload` (B). The stats are the periodic writes (every 100 ms).
#[test]
fn a_link_to_a_classic_or_no_offload_end_is_not_negotiated() {
    for (case, net) in [(0, "72"), (1, "73")] {
        let d = TempDir::new(&format!("vpsc{net}"));
        let (mut x, _) = stats_end(&d, "x", case != 0, &[], &vnl(&d, "a"));
        assert!(wait_path(&d.join("a"), 10), "X did not open A");
        let file = d.join("cable.json");
        let err = d.join("cable.err");
        let opts = ["--stats", file.to_str().unwrap(), "--stats-interval=100"];
        let mut k = cable(&d, &opts, d.path(), &err);
        let y_extra: &[&str] = if case == 1 { &["--no-offload"] } else { &[] };
        let (mut y, _) = stats_end(&d, "y", true, y_extra, &vnl(&d, "b"));
        wire_pair(&mut x, &mut y, net, 1500);
        // The fast end sends TCP super-frames to the cable, which cuts them for the other.
        let (plain, fast) = if case == 0 {
            ("plug1", "plug2")
        } else {
            ("plug2", "plug1")
        };
        if case == 0 {
            tcp_transfer(&mut y, &mut x, &format!("10.{net}.0.1"), &d, 8 << 20);
        } else {
            tcp_transfer(&mut x, &mut y, &format!("10.{net}.0.2"), &d, 8 << 20);
        }
        std::thread::sleep(Duration::from_millis(400));
        let j = std::fs::read_to_string(&file).expect("no periodic stats");
        assert_eq!(port_str(&j, plain, "superframes"), "offered", "{plain}: {j}");
        assert_eq!(port_str(&j, fast, "superframes"), "negotiated", "{fast}: {j}");
        for dir in ["tap_to_link", "link_to_tap"] {
            assert_eq!(count(&j, plain, dir, "wire_super"), 0, "{plain} {dir}: {j}");
        }
        assert!(count(&j, fast, "tap_to_link", "wire_super") > 0, "{fast}: {j}");
        // The cut frames went out on the plain link.
        assert!(count(&j, plain, "link_to_tap", "frames") > 5000, "{plain}: {j}");
        // The cable first: an end gone before it would be said (the peer went away).
        assert_eq!(term(&mut k), Some(0));
        drop(x);
        drop(y);
        let e = std::fs::read_to_string(&err).unwrap();
        assert!(e.is_empty(), "the cable said: {e}");
    }
}

/// Without --stats, SIGUSR1 does nothing, as for vde_plug: side by side, each cable keeps
/// running, says nothing, writes nothing, and still ends with status 0 on SIGTERM.
#[test]
fn without_stats_sigusr1_is_ignored_as_by_vde_plug() {
    for prog in ["vde_plug", VDEPLUG_FAST] {
        let d = TempDir::new("vpsu");
        let cwd = d.join("cwd");
        std::fs::create_dir(&cwd).unwrap();
        let err = d.join("err");
        let mut c = Command::new(prog);
        c.arg(vnl(&d, "a"))
            .arg(vnl(&d, "b"))
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("out")).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let mut k = Proc::start(c);
        assert!(wait_path(&d.join("b"), 10), "{prog}: did not open B");
        for _ in 0..3 {
            unsafe_kill(k.pid(), libc::SIGUSR1);
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(alive(k.pid()), "{prog}: ended by SIGUSR1");
        assert_eq!(term(&mut k), Some(0), "{prog}");
        for f in ["err", "out"] {
            let t = std::fs::read_to_string(d.join(f)).unwrap();
            assert!(t.is_empty(), "{prog} wrote on {f}: {t}");
        }
        assert!(names(&cwd).is_empty(), "{prog}: {:?}", names(&cwd));
    }
}

/// Kills the daemon named by a pid file, and removes what a wrong directory would have got.
struct DaemonGuard(PathBuf, PathBuf);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Ok(p) = std::fs::read_to_string(&self.0) {
            if let Ok(pid) = p.trim().parse::<i32>() {
                unsafe_kill(pid, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(&self.1);
    }
}

/// A relative --stats FILE is taken from where vdeplug-fast was started, also by a daemon
/// (which runs in /); it is written every --stats-interval. One that cannot be written is said
/// in a line (the message vdens-fast gives) and the cable runs on.
#[test]
fn a_relative_file_stays_where_the_daemon_started_and_a_bad_one_is_said() {
    let d = TempDir::new("vpsd");
    let name = format!("vdf-vpsd-{}.json", std::process::id());
    let pidfile = d.join("pid");
    let _g = DaemonGuard(pidfile.clone(), Path::new("/").join(&name));
    let o = run(
        {
            let mut c = Command::new(VDEPLUG_FAST);
            c.args(["-d", "-p", "pid", "--stats", &name, "--stats-interval", "50"])
                .arg(vnl(&d, "a"))
                .arg(vnl(&d, "b"))
                .current_dir(d.path());
            c
        },
        20,
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let file = d.join(&name);
    assert!(
        wait_path(&file, 5),
        "no {} (in /: {})",
        file.display(),
        Path::new("/").join(&name).exists()
    );
    let j = std::fs::read_to_string(&file).unwrap();
    assert!(j.contains("\"name\":\"plug1\""), "{j}");
    // Written again within an interval or so.
    std::fs::remove_file(&file).unwrap();
    assert!(wait_path(&file, 2), "not written again");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    unsafe_kill(pid, libc::SIGTERM);
    assert!(wait_gone(pid, 10), "the daemon did not end");
    assert!(!pidfile.exists());
    assert!(file.exists(), "the final write is missing");

    let err = d.join("bad.err");
    let bad = d.join("no-such-dir").join("s.json");
    let opts = ["--stats", bad.to_str().unwrap(), "--stats-interval", "50"];
    let mut k = cable(&d, &opts, d.path(), &err);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        alive(k.pid()),
        "the cable ended: {}",
        std::fs::read_to_string(&err).unwrap()
    );
    unsafe_kill(k.pid(), libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(k.pid()), "the cable ended on SIGUSR1");
    assert_eq!(term(&mut k), Some(0));
    let e = std::fs::read_to_string(&err).unwrap();
    let want = format!(
        "vdeplug-fast: cannot write statistics to {}: No such file or directory (check the directory exists and is writable)",
        bad.display()
    );
    // Said once for the run: the stats thread's writes, SIGUSR1's and the final one share it.
    assert_eq!(e.lines().collect::<Vec<_>>(), vec![want.as_str()], "{e}");
}

/// A cable's `vde://` links: the one to a vdeplug-fast `switch://` negotiated (and the
/// switch's own --stats shows the cable's port so), the one to a classic vde_switch offered
/// only. Read from the periodic writes (no namespace needed).
#[test]
fn a_cable_reports_its_vde_links_negotiated_with_a_fast_switch_offered_to_vde_switch() {
    let d = TempDir::new("vpsv");
    let fsw = d.join("fsw");
    let vsw = d.join("vsw");
    let sw_stats = d.join("sw.json");
    let mut c = Command::new(VDEPLUG_FAST);
    c.args([
        "--stats",
        sw_stats.to_str().unwrap(),
        "--stats-interval",
        "50",
        "null://",
    ])
    .arg(format!("switch://{}", fsw.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut s = Proc::start(c);
    assert!(wait_path(&fsw.join("ctl"), 10), "no vdeplug-fast switch");
    let _v = vde_switch(&vsw, false);
    let file = d.join("cable.json");
    let err = d.join("cable.err");
    let mut c = Command::new(VDEPLUG_FAST);
    c.args([
        "--stats",
        file.to_str().unwrap(),
        "--stats-interval",
        "50",
        "-D",
        "vpsv",
    ])
    .arg(format!("vde://{}", fsw.display()))
    .arg(format!("vde://{}", vsw.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&err).unwrap());
    let mut k = Proc::start(c);
    assert!(wait_path(&file, 10), "no stats from the cable");
    let j = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        port_str(&j, "plug1", "vnl"),
        format!("vde://{}", fsw.display()),
        "{j}"
    );
    assert_eq!(port_str(&j, "plug1", "superframes"), "negotiated", "{j}");
    assert_eq!(
        port_str(&j, "plug2", "vnl"),
        format!("vde://{}", vsw.display()),
        "{j}"
    );
    assert_eq!(port_str(&j, "plug2", "superframes"), "offered", "{j}");
    std::thread::sleep(Duration::from_millis(200));
    let js = std::fs::read_to_string(&sw_stats).unwrap();
    assert!(js.contains("\"vnl\":\"vpsv user="), "{js}");
    assert_eq!(
        port_str(&js, &format!("switch://{}:1", fsw.display()), "superframes"),
        "negotiated",
        "{js}"
    );
    assert_eq!(term(&mut k), Some(0));
    assert_eq!(term(&mut s), Some(0));
    let e = std::fs::read_to_string(&err).unwrap();
    assert!(e.is_empty(), "the cable said: {e}");
}
