//! A switch directory left behind by a host that died (a vdens-fast switch:// host or a vde2
//! vde_switch killed with SIGKILL) is taken over by the next switch:// on that path, as
//! vde_switch takes it over: nothing answers on its `ctl` socket. A switch that is running
//! there, a `ctl` that is not a socket, or another user's directory is refused in one line, and
//! nothing is removed.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// A vdens-fast switch:// host on `dir` and a classic vdens client on `vde://dir` ping each
/// other.
fn host_serves(d: &TempDir, dir: &Path, net: u8) -> Node {
    let mut h = ns_node("host", Impl::Fast, d, &[&format!("switch://{}", dir.display())]);
    let mut c = ns_node("client", Impl::Classic, d, &[&format!("vde://{}", dir.display())]);
    h.up("vde0", &format!("10.65.{net}.1/24"), None);
    c.up("vde0", &format!("10.65.{net}.2/24"), None);
    c.ping(&format!("10.65.{net}.1"), 3, None);
    h.ping(&format!("10.65.{net}.2"), 2, None);
    drop(c);
    h
}

fn sigkill(pid: i32) {
    unsafe_kill(pid, libc::SIGKILL);
    assert!(wait_gone(pid, 10), "{pid} survived SIGKILL");
}

/// One line, exit status 1, saying `needle`.
fn refused(o: &Out, needle: &str) {
    assert_eq!(o.code, Some(1), "{o:#?}");
    let e = o.stderr.trim_end();
    assert_eq!(e.lines().count(), 1, "{o:#?}");
    assert!(e.starts_with("vdens-fast: switch://"), "{e}");
    assert!(e.contains(needle), "{needle:?} missing: {e}");
    assert!(!o.stdout.contains("COMMAND-RAN"), "{o:#?}");
}

#[test]
fn killed_fast_host_is_replaced() {
    let d = TempDir::new("stalefast");
    let dir = d.join("sw");
    let h = host_serves(&d, &dir, 1);
    sigkill(h.pid());
    // Reaped, so every thread has exited and closed the node's descriptors (a killed
    // multithreaded process shows as a zombie while its other threads still exit).
    h.finish(10);
    assert!(dir.join("ctl").exists(), "a SIGKILLed host cannot clean up");
    let h = host_serves(&d, &dir, 2);
    h.finish(10);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn killed_vde_switch_is_replaced_and_its_files_are_kept() {
    let d = TempDir::new("stalevs");
    let dir = d.join("sw");
    let sw = Daemon::start("vde_switch", {
        let mut c = Command::new("vde_switch");
        c.arg("-s").arg(&dir);
        c
    });
    assert!(wait_path(&dir.join("ctl"), 10), "vde_switch made no ctl");
    // A client joined, so vde_switch's own data socket is in the directory too.
    let mut c = ns_node(
        "client",
        Impl::Classic,
        &d,
        &[&format!("vde://{}", dir.display())],
    );
    c.sh("ip link set vde0 up", 5);
    let foreign: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "ctl")
        .collect();
    assert!(!foreign.is_empty(), "vde_switch made no data socket");
    sigkill(sw.pid());
    drop(sw);
    drop(c);
    let h = host_serves(&d, &dir, 3);
    h.finish(10);
    // vde_switch's data sockets are not ours: they stay, and with them the directory.
    for n in &foreign {
        assert!(dir.join(n).exists(), "{n:?} was removed");
    }
    assert!(!dir.join("ctl").exists(), "our ctl left behind");
}

#[test]
fn running_fast_host_is_not_taken_over() {
    let d = TempDir::new("livefast");
    let dir = d.join("sw");
    let h = host_serves(&d, &dir, 4);
    let o = vf(
        Who::Root,
        &d,
        &[&format!("switch://{}", dir.display()), "echo", "COMMAND-RAN"],
    );
    refused(&o, "another switch is running on");
    // The first host still serves new clients.
    let h = {
        let mut h = h;
        let mut c = ns_node(
            "client2",
            Impl::Classic,
            &d,
            &[&format!("vde://{}", dir.display())],
        );
        c.up("vde0", "10.65.4.3/24", None);
        c.ping("10.65.4.1", 2, None);
        h.ping("10.65.4.3", 1, None);
        h
    };
    h.finish(10);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn running_vde_switch_is_not_taken_over() {
    let d = TempDir::new("livevs");
    let dir = d.join("sw");
    let _sw = Daemon::start("vde_switch", {
        let mut c = Command::new("vde_switch");
        c.arg("-s").arg(&dir);
        c
    });
    assert!(wait_path(&dir.join("ctl"), 10), "vde_switch made no ctl");
    let o = vf(
        Who::Root,
        &d,
        &[&format!("switch://{}", dir.display()), "echo", "COMMAND-RAN"],
    );
    refused(&o, "another switch is running on");
    assert!(dir.join("ctl").exists(), "the live switch's ctl was removed");
    // vde_switch still serves clients.
    let mut a = ns_node("a", Impl::Classic, &d, &[&format!("vde://{}", dir.display())]);
    let mut b = ns_node("b", Impl::Classic, &d, &[&format!("vde://{}", dir.display())]);
    a.up("vde0", "10.65.5.1/24", None);
    b.up("vde0", "10.65.5.2/24", None);
    a.ping("10.65.5.2", 2, None);
}

#[test]
fn ctl_that_is_not_a_socket_is_refused_and_kept() {
    let d = TempDir::new("notsock");
    let dir = d.join("sw");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("ctl"), b"mine").unwrap();
    let o = vf(
        Who::Root,
        &d,
        &[&format!("switch://{}", dir.display()), "echo", "COMMAND-RAN"],
    );
    refused(&o, "is not a socket");
    assert_eq!(std::fs::read(dir.join("ctl")).unwrap(), b"mine");
}

#[test]
fn another_users_stale_directory_is_refused() {
    // root's switch died; nobody may not take its directory over (in a sticky /tmp-like
    // directory, as the default /tmp/vdenode_* lives).
    let d = TempDir::new("otheruser");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let dir = d.join("sw");
    let h = ns_node(
        "host",
        Impl::Fast,
        &d,
        &[&format!("switch://{}[mode=666]", dir.display())],
    );
    assert!(wait_path(&dir.join("ctl"), 10), "no ctl");
    sigkill(h.pid());
    // Reaped, so every thread has exited and closed the node's descriptors (a killed
    // multithreaded process shows as a zombie while its other threads still exit).
    h.finish(10);
    let o = vf(
        Who::Nobody,
        &d,
        &[&format!("switch://{}", dir.display()), "echo", "COMMAND-RAN"],
    );
    refused(&o, "belongs to uid 0");
    assert!(dir.join("ctl").exists(), "root's files were touched");
}

#[test]
fn unprivileged_host_replaces_its_own_killed_switch() {
    let d = TempDir::new("stalenb");
    let dir = d.join("sw");
    let vnl = format!("switch://{}", dir.display());
    let h = Node::start("host", vdens_fast(Who::Nobody, &d, &[&vnl, "sh", "-s"]));
    assert!(wait_path(&dir.join("ctl"), 10), "no ctl");
    sigkill(h.pid());
    // Reaped, so every thread has exited and closed the node's descriptors (a killed
    // multithreaded process shows as a zombie while its other threads still exit).
    h.finish(10);
    let mut h = Node::start("host2", vdens_fast(Who::Nobody, &d, &[&vnl, "sh", "-s"]));
    let mut c = Node::start(
        "client",
        vdens_fast(
            Who::Nobody,
            &d,
            &[&format!("vde://{}", dir.display()), "sh", "-s"],
        ),
    );
    h.up("vde0", "10.65.6.1/24", None);
    c.up("vde0", "10.65.6.2/24", None);
    c.ping("10.65.6.1", 2, None);
    drop(c);
    h.finish(10);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn simultaneous_hosts_on_one_path_leave_exactly_one_switch() {
    // Lab scripts start namespaces in parallel: of two hosts started at once on a fresh or a
    // stale path, one serves (its ctl answers) and the other refuses; never both, never a
    // host whose ctl the other removed.
    let d = TempDir::new("race");
    for round in 0..40 {
        let dir = d.join(&format!("sw{round}"));
        if round % 2 == 1 {
            // A stale directory: a ctl socket nothing listens on.
            std::fs::create_dir(&dir).unwrap();
            drop(std::os::unix::net::UnixListener::bind(dir.join("ctl")).unwrap());
        }
        let vnl = format!("switch://{}", dir.display());
        let script = "echo READY; exec sleep 20";
        let mut a = spawn(vdens_fast(Who::Root, &d, &[&vnl, "sh", "-c", script]));
        let mut b = spawn(vdens_fast(Who::Root, &d, &[&vnl, "sh", "-c", script]));
        let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let (loser, winner) = loop {
            if let Ok(Some(_)) = a.child.try_wait() {
                break (a, b);
            }
            if let Ok(Some(_)) = b.child.try_wait() {
                break (b, a);
            }
            assert!(
                std::time::Instant::now() < end,
                "round {round}: both hosts are running"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let o = loser.wait(5);
        refused(&o, "another switch is running on");
        let mut winner = winner;
        winner.expect_line(10, |l| l == "READY");
        assert!(alive(winner.pid()), "round {round}: no host left");
        std::os::unix::net::UnixStream::connect(dir.join("ctl"))
            .unwrap_or_else(|e| panic!("round {round}: the running host's ctl: {e}"));
        unsafe_kill(winner.pid(), libc::SIGTERM);
        let o = winner.wait(10);
        assert!(!dir.exists(), "round {round}: {o:#?}");
    }
}

#[test]
fn host_restarted_at_once_after_sigkill_takes_over() {
    // The moment after a SIGKILLed host is reaped its ctl may still answer (its io_uring is
    // torn down after the process is gone): a restart right then is not "another switch".
    let d = TempDir::new("restart");
    let dir = d.join("sw");
    let vnl = format!("switch://{}", dir.display());
    for round in 0..10 {
        let mut h = spawn(vdens_fast(
            Who::Root,
            &d,
            &[&vnl, "sh", "-c", "echo READY; exec sleep 20"],
        ));
        h.expect_line(15, |l| l == "READY");
        std::os::unix::net::UnixStream::connect(dir.join("ctl"))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        if round == 9 {
            unsafe_kill(h.pid(), libc::SIGTERM);
            let o = h.wait(10);
            assert!(!dir.exists(), "{o:#?}");
            break;
        }
        unsafe_kill(h.pid(), libc::SIGKILL);
        let o = h.wait(10);
        assert_eq!(o.signal, Some(libc::SIGKILL), "round {round}: {o:#?}");
    }
}
