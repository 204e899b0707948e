//! `--rt-priority PRIO`: the data-plane threads run under SCHED_FIFO at PRIO, the rest of
//! vdens-fast and the command keep the caller's policy. The threads run in the new user
//! namespace, where root's CAP_SYS_NICE does not count: a helper forked before the unshare
//! sets it, and is gone once the data plane runs (in both namespace modes). An unprivileged
//! user without `ulimit -r` gets one line saying so, and traffic flows as without the option.

mod common;
use common::*;

/// (thread name, policy, rt priority) of every thread of `pid`, from /proc.
fn threads(pid: i32) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let name = stat[open + 1..close].to_string();
        // Fields after the name start at field 3; rt_priority is field 40, policy field 41.
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        out.push((name, f[41 - 3].parse().unwrap(), f[40 - 3].parse().unwrap()));
    }
    out
}

/// The children of process `pid` (all its threads').
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(c.split_whitespace().map(|p| p.parse::<i32>().unwrap()));
    }
    out
}

/// Two ends over ptp://, `a` asking for priority 7 (with `mode`: "-u" or "-c").
fn pair(who: Who, d: &TempDir, engine: &str, mode: &str) -> (Node, Node) {
    let p = format!("ptp://{}", d.join("p").display());
    let mut a = Node::start(
        "a",
        vdens_fast(
            who,
            d,
            &[mode, "--engine", engine, "--rt-priority", "7", &p, "sh", "-s"],
        ),
    );
    let mut b = Node::start("b", vdens_fast(who, d, &["--engine", engine, &p, "sh", "-s"]));
    a.up("vde0", "10.32.0.1/24", None);
    b.up("vde0", "10.32.0.2/24", None);
    b.ping("10.32.0.1", 3, None);
    (a, b)
}

#[test]
fn data_plane_threads_run_at_the_priority_asked_and_nothing_else() {
    for (engine, mode) in [("uring", "-u"), ("poll", "-u"), ("uring", "-c")] {
        let d = TempDir::new("rtprio");
        let (mut a, b) = pair(Who::Root, &d, engine, mode);
        // With -c the data plane runs in vdens-fast's child.
        let worker = format!("vdens-{engine}0");
        let dp = if mode == "-c" {
            let kids = children(a.pid());
            *kids
                .iter()
                .find(|&&k| threads(k).iter().any(|(n, _, _)| *n == worker))
                .unwrap_or_else(|| panic!("no data-plane child among {kids:?}"))
        } else {
            a.pid()
        };
        let all = threads(dp);
        assert!(
            all.iter()
                .any(|(n, pol, pr)| *n == worker && *pol == libc::SCHED_FIFO as u32 && *pr == 7),
            "{engine}: {all:?} {}",
            a.stderr()
        );
        for (n, pol, _) in &all {
            if *n != worker {
                assert_eq!(*pol, libc::SCHED_OTHER as u32, "{engine}: {n} in {all:?}");
            }
        }
        // The command keeps the caller's policy (field 41 of its own stat).
        let policy = a.sh("cut -d')' -f2 /proc/self/stat | cut -d' ' -f40", 10);
        assert_eq!(policy.trim(), "0", "{engine}: the command's policy");
        // The helper is gone: the data plane's process has the command as its one child,
        // and with -c vdens-fast's own process has the data plane's as its one (the helper
        // was its child too: reaped, not left a zombie until the end).
        let kids = children(dp);
        assert_eq!(kids.len(), 1, "{engine} {mode}: children {kids:?}");
        if mode == "-c" {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while children(a.pid()) != [dp] && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            assert_eq!(children(a.pid()), [dp], "{engine} {mode}: the helper was reaped");
        }
        // The peer did not ask: normal scheduler throughout.
        assert!(threads(b.pid())
            .iter()
            .all(|(_, pol, _)| *pol == libc::SCHED_OTHER as u32));
        assert!(!a.stderr().contains("real-time"), "{}", a.stderr());
        assert_eq!(b.finish(10).code, Some(0));
        assert_eq!(a.finish(10).code, Some(0));
    }
}

#[test]
fn refused_priority_is_said_once_and_traffic_flows() {
    let d = TempDir::new("rtprio-nobody");
    let (mut a, b) = pair(Who::Nobody, &d, "uring", "-u");
    a.ping("10.32.0.2", 3, None);
    let all = threads(a.pid());
    assert!(
        all.iter().all(|(_, pol, _)| *pol == libc::SCHED_OTHER as u32),
        "{all:?}"
    );
    let err = a.stderr();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("real-time priority 7"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("vdens-fast: cannot run the data-plane threads"),
        "{err}"
    );
    assert!(lines[0].contains("ulimit -r 7"), "{err}");
    assert_eq!(b.finish(10).code, Some(0));
    assert_eq!(a.finish(10).code, Some(0));
}

/// vdeplug-fast hosting a switch with `--rt-priority`: no user namespace there, so root's
/// CAP_SYS_NICE lets the node thread set it itself; traffic through it still flows.
#[test]
fn vdeplug_fast_node_runs_at_the_priority_asked() {
    let d = TempDir::new("rtprio-vdeplug");
    let sw = d.join("sw");
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"));
    c.args(["--rt-priority", "9", "null://"])
        .arg(format!("switch://{}", sw.display()));
    clean_env(&mut c, &d);
    let node = Daemon::start("vdeplug-fast", c);
    assert!(wait_path(&sw.join("ctl"), 10), "no switch");
    // ctl is there before the engine's threads start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut all = threads(node.pid());
    while !all.iter().any(|(n, _, _)| n.starts_with("vdens-node")) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        all = threads(node.pid());
    }
    assert!(
        all.iter()
            .any(|(n, pol, pr)| n.starts_with("vdens-node") && *pol == libc::SCHED_FIFO as u32 && *pr == 9),
        "{all:?}"
    );
    assert!(
        all.iter()
            .filter(|(n, _, _)| !n.starts_with("vdens-node"))
            .all(|(_, pol, _)| *pol == libc::SCHED_OTHER as u32),
        "{all:?}"
    );
    let vnl = format!("vde://{}", sw.display());
    let mut a = Node::start("a", vdens_fast(Who::Root, &d, &[&vnl, "sh", "-s"]));
    let mut b = Node::start("b", vdens_fast(Who::Root, &d, &[&vnl, "sh", "-s"]));
    a.up("vde0", "10.33.0.1/24", None);
    b.up("vde0", "10.33.0.2/24", None);
    b.ping("10.33.0.1", 3, None);
    assert_eq!(b.finish(10).code, Some(0));
    assert_eq!(a.finish(10).code, Some(0));
    drop(node);
}
