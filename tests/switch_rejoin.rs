//! A `vde://` interface whose switch goes away joins the switch that appears again at the same
//! path (issue 17, item 7, "self-healing links"; classic vdens never does): its carrier goes
//! off when the switch goes, comes back once joined again, and two such clients ping each
//! other again through the new switch. With a classic vde_switch and a vdens-fast `switch://`
//! host, each SIGKILLed (nothing cleaned up) and started again on the same directory; both
//! engines; as root and as `nobody` (everyone, switch included, runs as that user).

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Host {
    /// vde-2's vde_switch.
    Classic,
    /// vdeplug4's `vde_plug null:// switch://DIR`.
    Plug,
    /// vdens-fast hosting `switch://DIR`.
    Fast,
}

fn start_switch(host: Host, who: Who, d: &TempDir, sw: &Path) -> Daemon {
    let c = match host {
        Host::Classic => {
            let mut c = as_who(who, Path::new("/usr/bin/vde_switch"));
            c.arg("-s").arg(sw);
            c
        }
        Host::Plug => {
            let mut c = as_who(who, Path::new("/usr/bin/vde_plug"));
            c.arg("null://").arg(format!("switch://{}", sw.display()));
            c
        }
        Host::Fast => {
            let mut c = as_who(who, binary());
            c.arg(format!("switch://{}", sw.display())).args(["sleep", "600"]);
            clean_env(&mut c, d);
            c
        }
    };
    let s = Daemon::start("switch", c);
    let end = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(sw.join("ctl")).is_err() {
        assert!(
            Instant::now() < end,
            "{host:?} switch did not start at {}",
            sw.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

/// Stops the switch and waits for it to be gone: SIGKILL (nothing cleaned up), except
/// vde_plug's `switch://`, which starts only where no directory is: SIGTERM, and it removes
/// its directory (which the clients' kept data sockets must not keep from going).
fn kill_switch(host: Host, s: Daemon, sw: &Path) {
    match host {
        Host::Plug => {
            unsafe_kill(-s.pid(), libc::SIGTERM);
            assert!(wait_gone(s.pid(), 10), "vde_plug did not stop");
            assert!(
                !sw.exists(),
                "vde_plug left its directory: {:?}",
                std::fs::read_dir(sw).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            );
        }
        _ => unsafe_kill(-s.pid(), libc::SIGKILL),
    }
    drop(s);
}

fn rejoin(host: Host, engine: &str, who: Who) {
    let d = TempDir::new("rejoin");
    let sw = d.join("sw");
    let s = start_switch(host, who, &d, &sw);
    let vnl = format!("vde://{}", sw.display());
    let client = |name: &str| Node::start(name, vdens_fast(who, &d, &["--engine", engine, &vnl, "sh", "-s"]));
    let mut a = client("a");
    let mut b = client("b");
    a.up("vde0", "10.0.0.1/24", None);
    b.up("vde0", "10.0.0.2/24", None);
    a.ping("10.0.0.2", 2, None);
    kill_switch(host, s, &sw);
    wait_carrier(&mut a, false, 10, "the switch was killed");
    wait_carrier(&mut b, false, 10, "the switch was killed");
    // Away for a while: the clients keep trying.
    std::thread::sleep(Duration::from_millis(1500));
    let _s = start_switch(host, who, &d, &sw);
    wait_carrier(&mut a, true, 10, "a switch is back");
    wait_carrier(&mut b, true, 10, "a switch is back");
    a.ping("10.0.0.2", 2, None);
    b.ping("10.0.0.1", 2, None);
    let pids = [a.pid(), b.pid()];
    for n in [a, b] {
        let e = n.stderr();
        assert_eq!(e.matches("rejoined").count(), 1, "{}: {e}", n.name);
        assert!(
            e.contains("the switch closed the control connection"),
            "{}: {e}",
            n.name
        );
        n.finish(10);
    }
    // The clients' data sockets, kept in the switch directory for joining again, are gone
    // with them.
    let left: Vec<_> = std::fs::read_dir(&sw)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        left.is_empty(),
        "{host:?}: left in the switch directory: {left:?}"
    );
    // Nor where they were moved out of the switch directory (libvdeplug's fallback places).
    for (pid, d) in pids
        .iter()
        .flat_map(|p| ["/var/run", "/var/tmp", "/tmp"].map(|d| (p, d)))
    {
        let kept = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("vde.{pid:05}-")))
            .collect::<Vec<_>>();
        assert!(kept.is_empty(), "{host:?}: left in {d}: {kept:?}");
    }
}

#[test]
fn vde_clients_rejoin_a_restarted_classic_switch() {
    for engine in ["uring", "poll"] {
        rejoin(Host::Classic, engine, Who::Root);
    }
}

#[test]
fn vde_clients_rejoin_a_restarted_classic_switch_as_nobody() {
    rejoin(Host::Classic, "uring", Who::Nobody);
}

#[test]
fn vde_clients_rejoin_a_restarted_vde_plug_switch() {
    rejoin(Host::Plug, "uring", Who::Root);
}

#[test]
fn vde_clients_rejoin_a_restarted_fast_switch() {
    for engine in ["uring", "poll"] {
        rejoin(Host::Fast, engine, Who::Root);
    }
    rejoin(Host::Fast, "uring", Who::Nobody);
}
