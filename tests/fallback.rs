//! The libvdeplug fallback: schemes vdens-fast does not implement are opened by libvdeplug
//! (dlopen'd at run time) and bridged into the engine. slirp:// (Debian libvdeplug-slirp):
//! inside a vdens-fast namespace vde0 gets slirp's defaults (10.0.2.15/24, gateway 10.0.2.2)
//! and pings the slirp gateway 10.0.2.2 only: nothing goes beyond slirp itself. Also the
//! one-line errors (unknown plugin, -u, missing library or plugin) and --multi with native VNLs.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// Names of the threads of process `pid`.
fn threads(pid: i32) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("comm")) {
                v.push(c.trim().to_string());
            }
        }
    }
    v
}

/// Waits (5 s at most) until process `pid` has a thread named like the bridge (a thread
/// names itself once it first runs, which a loaded machine may delay).
fn wait_bridge_thread(pid: i32) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if threads(pid).iter().any(|c| c == "vdeplug-bridge") {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn slirp_node(name: &str, who: Who, d: &TempDir, vnls: &[&str]) -> Node {
    let mut args: Vec<&str> = Vec::new();
    if vnls.len() > 1 {
        args.push("-m");
        args.extend(vnls);
        args.push("--");
    } else {
        args.extend(vnls);
    }
    args.extend(["sh", "-s"]);
    Node::start(name, vdens_fast(who, d, &args))
}

fn ping_slirp_gateway(n: &mut Node, iface: &str) {
    n.up(iface, "10.0.2.15/24", None);
    n.ping("10.0.2.2", 3, None);
}

#[test]
fn slirp_gateway_answers_and_the_bridge_runs_in_the_parent() {
    let d = TempDir::new("slirp");
    let mut n = slirp_node("slirp", Who::Root, &d, &["slirp://"]);
    // A bridge thread made the process multithreaded, so vdens-fast ran in clone mode: the
    // process the test started keeps the bridge, a child holds the namespaces.
    assert!(
        wait_bridge_thread(n.pid()),
        "threads of the parent: {:?}",
        threads(n.pid())
    );
    let inside = n.sh("readlink /proc/self/ns/net", 5);
    let outside = std::fs::read_link(format!("/proc/{}/ns/net", n.pid())).unwrap();
    assert_ne!(
        inside.trim(),
        outside.to_str().unwrap(),
        "the parent must stay outside"
    );
    ping_slirp_gateway(&mut n, "vde0");
    let o = n.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
}

#[test]
fn slirp_as_an_unprivileged_user() {
    let d = TempDir::new("slirpnb");
    let mut n = slirp_node("slirp-nobody", Who::Nobody, &d, &["slirp://"]);
    ping_slirp_gateway(&mut n, "vde0");
    let o = n.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
}

#[test]
fn slirp_with_native_vnls_in_multi() {
    let d = TempDir::new("slirpm");
    let p = format!("ptp://{}", d.join("p").display());
    let mut peer = slirp_node("peer", Who::Root, &d, &[&p]);
    let mut n = slirp_node("multi", Who::Root, &d, &["null://", "slirp://", &p]);
    assert_eq!(
        n.sh("ip -o link | grep -c ' vde[0-9]'", 5).trim(),
        "3",
        "three interfaces"
    );
    ping_slirp_gateway(&mut n, "vde1");
    // The native ptp:// port next to it works too.
    n.up("vde2", "10.66.0.1/24", None);
    peer.up("vde0", "10.66.0.2/24", None);
    n.ping("10.66.0.2", 3, None);
    peer.ping("10.66.0.1", 3, None);
    let o = n.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
    let o = peer.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
}

#[test]
fn exit_status_comes_back_promptly() {
    // Signals must reach the supervising thread, not a bridge or plugin thread.
    let d = TempDir::new("slirpx");
    for opt in [None, Some("-c"), None] {
        let start = Instant::now();
        let mut args: Vec<&str> = opt.into_iter().collect();
        args.extend(["slirp://", "sh", "-c", "exit 7"]);
        let o = vf(Who::Root, &d, &args);
        assert_eq!(o.code, Some(7), "{o:#?}");
        assert!(start.elapsed() < Duration::from_secs(10), "slow exit");
    }
}

fn one_line_failure(o: &Out) -> String {
    assert_eq!(o.code, Some(1), "{o:#?}");
    let e = o.stderr.trim_end().to_string();
    assert_eq!(e.lines().count(), 1, "not one line: {e}");
    assert!(!e.contains("os error"), "{e}");
    e
}

#[test]
fn unknown_plugin_is_one_line() {
    let d = TempDir::new("fbunk");
    let e = one_line_failure(&vf(Who::Root, &d, &["nosuchplugin://x", "true"]));
    assert!(
        e.starts_with("vdens-fast: nosuchplugin://x: unknown VNL scheme 'nosuchplugin'")
            && e.contains("libvdeplug_nosuchplugin.so")
            && e.contains("install libvdeplug2 / libvdeplug-slirp"),
        "{e}"
    );
}

#[test]
fn unshare_only_refuses_with_a_clear_error() {
    let d = TempDir::new("fbu");
    let e = one_line_failure(&vf(Who::Root, &d, &["-u", "slirp://", "true"]));
    assert!(e.contains("multithreaded") && e.contains("-c"), "{e}");
}

#[test]
fn plugin_error_is_one_line() {
    // multi:// (always on the fallback) refuses a member switch that does not exist.
    let d = TempDir::new("fbbad");
    let vnl = format!("multi://{{{}}}", d.join("missing/sw").display());
    let e = one_line_failure(&vf(Who::Root, &d, &[&vnl, "true"]));
    assert!(
        e.ends_with(&format!(
            "{vnl}: opening through libvdeplug: No such file or directory \
             (libvdeplug_multi.so refused it: see man libvdeplug_multi)"
        )),
        "{e}"
    );
}

/// vdens-fast in a private mount namespace of the test where `hide` reads as an empty file.
fn with_hidden(hide: &str, vnl: &str) -> Out {
    let d = TempDir::new("fbhide");
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!(
            "mount --bind /dev/null {hide} && exec {} {vnl} true",
            binary().display()
        ),
    ])
    .current_dir(d.path());
    run(c, 20)
}

#[test]
fn missing_library_names_the_package() {
    let o = with_hidden("/usr/lib/x86_64-linux-gnu/libvdeplug.so.2", "slirp://");
    let e = one_line_failure(&o);
    assert!(
        e.contains("slirp://: loading libvdeplug: ") && e.contains("install libvdeplug2 / libvdeplug-slirp"),
        "{e}"
    );
}

#[test]
fn missing_plugin_names_the_package() {
    let o = with_hidden(
        "/usr/lib/x86_64-linux-gnu/vdeplug/libvdeplug_slirp.so",
        "slirp://",
    );
    let e = one_line_failure(&o);
    assert!(
        e.contains("libvdeplug_slirp.so") && e.contains("install libvdeplug2 / libvdeplug-slirp"),
        "{e}"
    );
}

#[test]
fn link_bridges_frames_and_stops_on_drop() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{recv, send, MsgFlags};
    use std::os::fd::AsRawFd;
    let me = std::process::id() as i32;
    let link = vdens_fast::transport::open("slirp://").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(link.framing, vdens_fast::transport::Framing::Datagram);
    assert!(wait_bridge_thread(me), "{:?}", threads(me));
    let fd = link.rx_fd().unwrap();
    // An ARP request from 10.0.2.15 for slirp's own address 10.0.2.2.
    let mac = [0x02, 0, 0, 0, 0, 0x15];
    let mut f = Vec::new();
    f.extend([0xff; 6]);
    f.extend(mac);
    f.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend(mac);
    f.extend([10, 0, 2, 15]);
    f.extend([0; 6]);
    f.extend([10, 0, 2, 2]);
    f.resize(60, 0);
    let end = Instant::now() + Duration::from_secs(10);
    let mut answered = false;
    'outer: while Instant::now() < end {
        send(fd.as_raw_fd(), &f, MsgFlags::empty()).unwrap();
        let stop = Instant::now() + Duration::from_millis(500);
        while Instant::now() < stop {
            let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
            if poll(&mut p, PollTimeout::from(100u16)).unwrap() == 0 {
                continue;
            }
            let mut buf = [0u8; 9300];
            let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
            let r = &buf[..n];
            // ARP reply (op 2) from 10.0.2.2 to our MAC.
            if n >= 42
                && r[..6] == mac
                && r[12..14] == [8, 6]
                && r[20..22] == [0, 2]
                && r[28..32] == [10, 0, 2, 2]
            {
                answered = true;
                break 'outer;
            }
        }
    }
    assert!(
        answered,
        "slirp did not answer the ARP request through the bridge"
    );
    drop(link);
    let end = Instant::now() + Duration::from_secs(5);
    while threads(me).iter().any(|c| c == "vdeplug-bridge") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !threads(me).iter().any(|c| c == "vdeplug-bridge"),
        "the bridge thread survived the link"
    );
}
