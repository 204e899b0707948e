//! The tap handover between two vdens-fast ends of a datagram `ptp://` link (issue 13): once
//! they paired, each passes the other its tap (PATH+fast3, SCM_RIGHTS) and writes the frames
//! it reads from its own tap whole into the peer's. Up on both ends (stats), the frames no
//! longer cross the socket, TCP byte-exact both ways (IPv4, IPv6), ICMP and UDP, MTU 1500
//! and 9000, both engines, unprivileged; a dead peer's tap is closed at once and the survivor
//! falls back (a classic peer taking the place sees standard frames only), a new vdens-fast
//! peer gets the handover back; `--no-offload` has none; a hostile connection to PATH+fast3 is
//! refused without a descriptor leaking.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Starts a vdens-fast with --stats (every 100 ms) on `vnl` as `who`.
fn start(d: &TempDir, name: &str, who: Who, engine: &str, vnl: &str, extra: &[&str]) -> (Node, PathBuf) {
    let stats = d.join(&format!("{name}.json"));
    let mut args = vec![
        "--engine",
        engine,
        "--stats",
        stats.to_str().unwrap(),
        "--stats-interval",
        "100",
    ];
    args.extend(extra);
    args.extend([vnl, "sh", "-s"]);
    (Node::start(name, vdens_fast(who, d, &args)), stats)
}

/// Whether the --stats line says the handover of vde0 is up.
fn handover(json: &str) -> bool {
    let at = json
        .find("\"name\":\"vde0\"")
        .unwrap_or_else(|| panic!("no vde0 in {json}"));
    let p = &json[at..];
    let i = p
        .find("\"handover\":")
        .unwrap_or_else(|| panic!("no handover in {p}"))
        + 11;
    p[i..].starts_with("true")
}

/// A counter of one direction of vde0.
fn dir_stat(json: &str, dir: &str, key: &str) -> u64 {
    let p = &json[json
        .find(&format!("\"{dir}\""))
        .unwrap_or_else(|| panic!("no {dir} in {json}"))..];
    let end = p.find('}').unwrap();
    stat_sum(&p[..end], key)
}

/// Waits until the handover of node `n` (stats `f`) is `want`; returns the stats line.
fn wait_handover(n: &mut Node, f: &Path, want: bool, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let j = fresh_stats(n, f, "vde0");
        if handover(&j) == want {
            return j;
        }
        assert!(Instant::now() < deadline, "{what}: handover never {want}: {j}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pid of the vdens-fast running node `n` (its shell's parent).
fn vdens_pid(n: &mut Node) -> i32 {
    n.sh("echo $PPID", 5).trim().parse().expect("a pid")
}

/// Descriptors of process `pid`, and those of /dev/net/tun (its tap, and a peer's).
fn fds(pid: i32) -> (usize, usize) {
    let mut all = 0;
    let mut tun = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        all += 1;
        if std::fs::read_link(e.path()).is_ok_and(|l| l == Path::new("/dev/net/tun")) {
            tun += 1;
        }
    }
    (all, tun)
}

/// Waits until process `pid` holds `want` tun descriptors.
fn wait_tun_fds(pid: i32, want: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds(pid).1 != want {
        assert!(
            Instant::now() < deadline,
            "{what}: {} tun descriptors, not {want}",
            fds(pid).1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Captures what the tap hands the namespace (tcpdump in the node's network namespace).
struct Capture {
    file: PathBuf,
    tcpdump: Daemon,
}

impl Capture {
    fn start(n: &mut Node, d: &TempDir, tag: &str) -> Capture {
        let file = d.join(&format!("{tag}.txt"));
        let tcpdump = capture(n, "vde0", &file, "-Q in");
        Capture { file, tcpdump }
    }

    fn check(self, mtu: usize, min: usize) {
        let text = captured(self.tcpdump, &self.file);
        assert_standard_frames(&text, mtu, min);
    }
}

/// Two vdens-fast ends: the handover comes up on both, every kind of traffic crosses, and
/// the frames go tap to tap (each end's link receives almost nothing on its socket).
fn fast_pair(engine: &str, mtu: usize, net: &str, who: Who) {
    let d = TempDir::new(&format!("hop{net}"));
    let vnl = format!("ptp://{}", d.join("p").display());
    let (mut a, fa) = start(&d, "a", who, engine, &vnl, &[]);
    let (mut b, fb) = start(&d, "b", who, engine, &vnl, &[]);
    wire_pair(&mut a, &mut b, net, mtu);
    wait_handover(&mut a, &fa, true, "first opener");
    wait_handover(&mut b, &fb, true, "second opener");
    pair_traffic(&mut a, &mut b, &d, net, mtu);
    tcp_transfer(&mut b, &mut a, &format!("fd{net}::1"), &d, 4 << 20);
    tcp_transfer(&mut a, &mut b, &format!("fd{net}::2"), &d, 4 << 20);
    for a_sends in [true, false] {
        // 8 MiB or more each way went into the peer's tap, super-frames whole, none on the
        // wire; the receiver counts what the sender told it it wrote there (within 10 ms).
        let (x, fx, y, fy) = if a_sends {
            (&mut a, &fa, &mut b, &fb)
        } else {
            (&mut b, &fb, &mut a, &fa)
        };
        let j = wait_handover(x, fx, true, "after traffic");
        std::thread::sleep(Duration::from_millis(100));
        let other = wait_handover(y, fy, true, "after traffic");
        let sent = dir_stat(&j, "tap_to_link", "bytes");
        assert!(sent > 8_000_000, "{j}");
        assert!(dir_stat(&j, "tap_to_link", "super_frames") > 0, "{j}");
        assert_eq!(dir_stat(&j, "tap_to_link", "wire_super"), 0, "{j}");
        let frames = dir_stat(&j, "tap_to_link", "frames");
        let got = dir_stat(&other, "link_to_tap", "frames");
        assert!(got >= frames * 99 / 100, "told {got} of {frames}: {j} {other}");
        assert!(dir_stat(&other, "link_to_tap", "super_frames") > 0, "{other}");
        assert_eq!(dir_stat(&other, "link_to_tap", "wire_super"), 0, "{other}");
    }
    // Each holds its own tap and the peer's.
    if matches!(who, Who::Root) {
        let (pa, pb) = (vdens_pid(&mut a), vdens_pid(&mut b));
        assert!(fds(pa).1 >= 2 && fds(pb).1 >= 2, "{:?} {:?}", fds(pa), fds(pb));
    }
    b.finish(10);
    a.finish(10);
    for f in ["p", "p+", "p+fast1", "p+fast2", "p+fast3"] {
        assert!(!d.join(f).exists(), "{f} left behind");
    }
}

#[test]
fn handover_on_io_uring() {
    fast_pair("uring", 1500, "61", Who::Root);
}

#[test]
fn handover_on_epoll() {
    fast_pair("poll", 1500, "62", Who::Root);
}

#[test]
fn handover_at_mtu_9000() {
    fast_pair("uring", 9000, "63", Who::Root);
}

#[test]
fn handover_unprivileged() {
    fast_pair("uring", 1500, "64", Who::Nobody);
}

/// The second opener is SIGKILLed while the handover is up: the survivor closes its tap at
/// once; a classic vdens taking its place sees standard frames only (no vnet header, nothing
/// over its MTU) and traffic resumes; a vdens-fast taking the classic one's place gets the
/// handover back.
#[test]
fn a_killed_second_opener_is_let_go() {
    for engine in ["uring", "poll"] {
        let net = if engine == "uring" { "65" } else { "66" };
        let d = TempDir::new(&format!("hok{net}"));
        let vnl = format!("ptp://{}", d.join("p").display());
        let (mut a, fa) = start(&d, "a", Who::Root, engine, &vnl, &[]);
        let (mut b, fb) = start(&d, "b", Who::Root, engine, &vnl, &[]);
        wire_pair(&mut a, &mut b, net, 1500);
        wait_handover(&mut a, &fa, true, "first opener");
        wait_handover(&mut b, &fb, true, "second opener");
        tcp_transfer(&mut a, &mut b, &format!("10.{net}.0.2"), &d, 4 << 20);
        let pa = vdens_pid(&mut a);
        let up = fds(pa).1;
        assert!(up >= 2, "the peer's tap is held: {up}");
        unsafe_kill(-b.pid(), libc::SIGKILL);
        drop(b);
        wait_tun_fds(pa, up - 1, "the dead peer's tap closed");
        wait_handover(&mut a, &fa, false, "peer killed");
        // (A user removes what a killed vdens-fast left behind; the first opener still owns PATH.)
        for f in ["p+", "p+fast2"] {
            let _ = std::fs::remove_file(d.join(f));
        }
        let mut c = ns_node("c", Impl::Classic, &d, &[&vnl]);
        c.up("vde0", &format!("10.{net}.0.2/24"), None);
        a.sh("ip neigh flush dev vde0", 5);
        let deadline = Instant::now() + Duration::from_secs(15);
        while a.try_sh(&format!("ping -c 1 -W 1 10.{net}.0.2"), 5).0 != Some(0) {
            assert!(Instant::now() < deadline, "no ping to the classic peer");
        }
        let cap = Capture::start(&mut c, &d, "classic");
        tcp_transfer(&mut a, &mut c, &format!("10.{net}.0.2"), &d, 8 << 20);
        tcp_transfer(&mut c, &mut a, &format!("10.{net}.0.1"), &d, 2 << 20);
        cap.check(1500, 1000);
        let ja = fresh_stats(&mut a, &fa, "vde0");
        assert!(!handover(&ja), "{ja}");
        assert_eq!(fds(pa).1, up - 1);
        c.finish(10);
        // The classic one replaced by vdens-fast: the handover comes back.
        let (mut n, fnew) = start(&d, "n", Who::Root, engine, &vnl, &[]);
        n.up("vde0", &format!("10.{net}.0.2/24"), None);
        a.sh("ip neigh flush dev vde0", 5);
        let deadline = Instant::now() + Duration::from_secs(15);
        while a.try_sh(&format!("ping -c 1 -W 1 10.{net}.0.2"), 5).0 != Some(0) {
            assert!(Instant::now() < deadline, "no ping to the new peer");
        }
        wait_handover(&mut n, &fnew, true, "new second opener");
        wait_handover(&mut a, &fa, true, "first opener again");
        tcp_transfer(&mut a, &mut n, &format!("10.{net}.0.2"), &d, 4 << 20);
        tcp_transfer(&mut n, &mut a, &format!("10.{net}.0.1"), &d, 4 << 20);
        assert_eq!(fds(pa).1, up);
        drop(n);
        drop(a);
    }
}

/// The first opener is SIGKILLed while the handover is up: the second opener closes its tap
/// at once and asks again; a new vdens-fast first opener pairs and hands over again.
#[test]
fn a_killed_first_opener_is_let_go() {
    let net = "67";
    let d = TempDir::new("hokf");
    let vnl = format!("ptp://{}", d.join("p").display());
    let (mut a, fa) = start(&d, "a", Who::Root, "uring", &vnl, &[]);
    let (mut b, fb) = start(&d, "b", Who::Root, "uring", &vnl, &[]);
    wire_pair(&mut a, &mut b, net, 1500);
    wait_handover(&mut a, &fa, true, "first opener");
    wait_handover(&mut b, &fb, true, "second opener");
    let pb = vdens_pid(&mut b);
    let up = fds(pb).1;
    assert!(up >= 2, "the peer's tap is held: {up}");
    unsafe_kill(-a.pid(), libc::SIGKILL);
    drop(a);
    wait_tun_fds(pb, up - 1, "the dead peer's tap closed");
    wait_handover(&mut b, &fb, false, "peer killed");
    let (mut n, fnew) = start(&d, "n", Who::Root, "uring", &vnl, &[]);
    n.up("vde0", &format!("10.{net}.0.1/24"), None);
    b.sh("ip neigh flush dev vde0", 5);
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.try_sh(&format!("ping -c 1 -W 1 10.{net}.0.1"), 5).0 != Some(0) {
        assert!(Instant::now() < deadline, "no ping to the new first opener");
    }
    wait_handover(&mut b, &fb, true, "second opener again");
    wait_handover(&mut n, &fnew, true, "new first opener");
    tcp_transfer(&mut b, &mut n, &format!("10.{net}.0.1"), &d, 4 << 20);
    tcp_transfer(&mut n, &mut b, &format!("10.{net}.0.2"), &d, 4 << 20);
    assert_eq!(fds(pb).1, up);
}

/// `--no-offload` at either end: no handover (a first opener with it has no PATH+fast3),
/// traffic as usual.
#[test]
fn no_offload_has_no_handover() {
    for (first_plain, net) in [(true, "68"), (false, "69")] {
        let d = TempDir::new(&format!("hon{net}"));
        let vnl = format!("ptp://{}", d.join("p").display());
        let plain: &[&str] = &["--no-offload"];
        let (mut a, fa) = start(
            &d,
            "a",
            Who::Root,
            "uring",
            &vnl,
            if first_plain { plain } else { &[] },
        );
        assert!(wait_path(&d.join("p"), 10));
        let (mut b, fb) = start(
            &d,
            "b",
            Who::Root,
            "uring",
            &vnl,
            if first_plain { &[] } else { plain },
        );
        wire_pair(&mut a, &mut b, net, 1500);
        tcp_transfer(&mut a, &mut b, &format!("10.{net}.0.2"), &d, 4 << 20);
        tcp_transfer(&mut b, &mut a, &format!("10.{net}.0.1"), &d, 4 << 20);
        if first_plain {
            assert!(!d.join("p+fast3").exists(), "a --no-offload first opener listens");
        }
        for (n, f) in [(&mut a, &fa), (&mut b, &fb)] {
            let j = fresh_stats(n, f, "vde0");
            assert!(!handover(&j), "{j}");
        }
    }
}

/// Hostile connections to PATH+fast3 (no pairing, so no nonce is right; a descriptor with the
/// question, two of them, a pipe, garbage, a flood of descriptors): each refused (the
/// connection closed), the first opener holds no descriptor more than before, and a real peer
/// then gets the handover.
#[test]
fn hostile_connections_are_refused() {
    use nix::sys::socket::{
        connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
    };
    use std::io::IoSlice;
    use std::os::fd::{AsRawFd, OwnedFd};
    let net = "70";
    let d = TempDir::new("hoh");
    let vnl = format!("ptp://{}", d.join("p").display());
    let (mut a, fa) = start(&d, "a", Who::Root, "uring", &vnl, &[]);
    let path = d.join("p+fast3");
    assert!(wait_path(&path, 10), "PATH+fast3 is there");
    let pa = vdens_pid(&mut a);
    // (Once its set-up is over: the same count twice in a row.)
    let mut before = fds(pa);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(200));
        let now = fds(pa);
        if now == before {
            break;
        }
        before = now;
    }
    let listing = |pid: i32| {
        let ls = std::process::Command::new("ls")
            .arg("-l")
            .arg(format!("/proc/{pid}/fd"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&ls.stdout).into_owned()
    };
    let before_ls = listing(pa);
    let (pr, pw) = nix::unistd::pipe().unwrap();
    let ask = |n: u32| {
        let mut m = b"VFHO\x01\x01".to_vec();
        m.extend_from_slice(&n.to_be_bytes());
        m
    };
    let mut take = b"VFHO\x01\x03".to_vec();
    take.extend_from_slice(&[0; 4]);
    let tries: Vec<(&str, Vec<u8>, Vec<i32>)> = vec![
        ("an unknown nonce", ask(7), vec![]),
        ("a question with a pipe", ask(7), vec![pr.as_raw_fd()]),
        ("a take with a pipe", take.clone(), vec![pw.as_raw_fd()]),
        (
            "a take with two pipes",
            take.clone(),
            vec![pr.as_raw_fd(), pw.as_raw_fd()],
        ),
        ("garbage", b"hello, world".to_vec(), vec![pr.as_raw_fd()]),
        ("a flood of descriptors", take, vec![pr.as_raw_fd(); 200]),
    ];
    for (what, msg, pass) in tries {
        let s: OwnedFd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(s.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        let cm = [ControlMessage::ScmRights(&pass)];
        let cmsgs: &[ControlMessage] = if pass.is_empty() { &[] } else { &cm };
        sendmsg::<()>(
            s.as_raw_fd(),
            &[IoSlice::new(&msg)],
            cmsgs,
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        // Refused: the first opener closes the connection (no answer, no descriptor).
        let mut p = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&s),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut p, nix::poll::PollTimeout::from(5000u16)).unwrap();
        assert_eq!(n, 1, "{what}: no answer in 5 s");
        let mut buf = [0u8; 64];
        let got = nix::sys::socket::recv(s.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT);
        assert!(matches!(got, Ok(0)), "{what}: {got:?}");
    }
    // Nothing kept: the first opener's descriptors as before (give it a moment to close).
    let deadline = Instant::now() + Duration::from_secs(5);
    while fds(pa) != before {
        assert!(
            Instant::now() < deadline,
            "descriptors leaked: {:?} then {:?}: {before_ls} then {}",
            before,
            fds(pa),
            listing(pa)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        a.stderr().contains("tap handover"),
        "refusals are said: {}",
        a.stderr()
    );
    // A real peer: handover, traffic.
    let (mut b, fb) = start(&d, "b", Who::Root, "uring", &vnl, &[]);
    wire_pair(&mut a, &mut b, net, 1500);
    wait_handover(&mut a, &fa, true, "first opener");
    wait_handover(&mut b, &fb, true, "second opener");
    tcp_transfer(&mut a, &mut b, &format!("10.{net}.0.2"), &d, 4 << 20);
    tcp_transfer(&mut b, &mut a, &format!("10.{net}.0.1"), &d, 4 << 20);
}
