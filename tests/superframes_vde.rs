//! Negotiated super-frames on `vde://` (issue 13), from the client's side: two vdens-fast
//! clients joined to a switch written here, which relays every datagram from one port to the
//! other as it came and records what crossed. When the switch answers the clients' offer
//! (`wire::superframe::MARK` after its socket path), TCP super-frames cross tagged, whole, both
//! ways, byte-exact, over IPv4 and IPv6 and at MTU 9000; ICMP and UDP cross as before. When it
//! does not (as a classic switch), no tagged datagram and nothing over a standard frame
//! leaves a client. `--no-offload` offers nothing.

mod common;
use common::*;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vdens_fast::wire::superframe::{is_tagged, PREFIX};
use vdens_fast::wire::vde_ctl::{encode_sockaddr_marked, Request};

/// What crossed the relay.
#[derive(Default)]
struct Seen {
    /// Requests that offered super-frames.
    offers: AtomicU64,
    tagged: AtomicU64,
    /// Tagged datagrams longer than a standard frame (super-frames).
    tagged_big: AtomicU64,
    /// Untagged datagrams longer than 1514 + 4 bytes at MTU 1500 (9018 at 9000).
    plain_big: AtomicU64,
    plain: AtomicU64,
}

/// A two-port switch at `dir`: answers the offer when `answer_offer`, then relays datagrams
/// between its two ports until dropped.
struct Relay {
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    threads: Vec<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl Relay {
    fn start(dir: &Path, answer_offer: bool, mtu: usize) -> Relay {
        std::fs::create_dir_all(dir).unwrap();
        let ctl = UnixListener::bind(dir.join("ctl")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let ports: Arc<Mutex<Vec<Arc<UnixDatagram>>>> = Arc::default();
        let mut threads = Vec::new();
        {
            let (stop, seen, ports, dir) = (stop.clone(), seen.clone(), ports.clone(), dir.to_path_buf());
            threads.push(std::thread::spawn(move || {
                ctl.set_nonblocking(true).unwrap();
                let mut ctls = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut c, _)) = ctl.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut b = [0u8; 512];
                    let n = std::io::Read::read(&mut c, &mut b).unwrap();
                    let req = Request::decode(&b[..n]).unwrap();
                    if req.superframes {
                        seen.offers.fetch_add(1, Ordering::Relaxed);
                    }
                    let id = ports.lock().unwrap().len();
                    let path = dir.join(format!("fd{id}"));
                    let s = UnixDatagram::bind(&path).unwrap();
                    s.connect(Path::new(std::ffi::OsStr::from_bytes(&req.sock_path)))
                        .unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let (ans, _) =
                        encode_sockaddr_marked(path.as_os_str().as_bytes(), answer_offer && req.superframes)
                            .unwrap();
                    std::io::Write::write_all(&mut c, &ans).unwrap();
                    ports.lock().unwrap().push(Arc::new(s));
                    ctls.push(c);
                }
            }));
        }
        for from in 0..2usize {
            let (stop, seen, ports) = (stop.clone(), seen.clone(), ports.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 70_000];
                while !stop.load(Ordering::Relaxed) {
                    let pair = {
                        let p = ports.lock().unwrap();
                        (p.len() == 2).then(|| (p[from].clone(), p[1 - from].clone()))
                    };
                    let Some((rx, tx)) = pair else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let Ok(n) = rx.recv(&mut buf) else { continue };
                    let d = &buf[..n];
                    if is_tagged(d) {
                        seen.tagged.fetch_add(1, Ordering::Relaxed);
                        if n > PREFIX + mtu + 18 {
                            seen.tagged_big.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        seen.plain.fetch_add(1, Ordering::Relaxed);
                        if n > mtu + 18 {
                            seen.plain_big.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Blocking send: the relay never drops.
                    let _ = nix::sys::socket::send(tx.as_raw_fd(), d, nix::sys::socket::MsgFlags::empty());
                }
            }));
        }
        Relay {
            stop,
            seen,
            threads,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn port_field(json: &str, key: &str) -> String {
    port_str(json, "vde0", key)
}

fn stats_of(n: &mut Node, file: &Path) -> String {
    fresh_stats(n, file, "vde0")
}

struct Case {
    engine: &'static str,
    offload: bool,
    answer_offer: bool,
    mtu: usize,
}

fn run(tag: &str, c: Case) {
    let d = TempDir::new(tag);
    let relay = Relay::start(&d.join("sw"), c.answer_offer, c.mtu);
    let vnl = format!("vde://{}", d.join("sw").display());
    let mut nodes: Vec<(Node, PathBuf)> = (0..2)
        .map(|i| {
            let stats = d.join(&format!("stats{i}.json"));
            let mut args = vec!["--engine", c.engine, "--stats", stats.to_str().unwrap()];
            if !c.offload {
                args.push("--no-offload");
            }
            args.extend([vnl.as_str(), "sh", "-s"]);
            (
                Node::start(&format!("n{i}"), vdens_fast(Who::Root, &d, &args)),
                stats,
            )
        })
        .collect();
    let mtu = Some(c.mtu as u32).filter(|&m| m != 1500);
    for (i, (n, _)) in nodes.iter_mut().enumerate() {
        n.up("vde0", &format!("10.31.0.{}/24", i + 1), mtu);
        n.sh(&format!("ip -6 addr add fd31::{}/64 dev vde0 nodad", i + 1), 5);
    }
    let (a, b) = nodes.split_at_mut(1);
    let (a, b) = (&mut a[0].0, &mut b[0].0);
    a.ping("10.31.0.2", 2, None);
    // ICMP of every size, and UDP, are not super-frames.
    a.ping("10.31.0.2", 2, Some((c.mtu - 28) as u32));
    b.sh("(timeout 10 nc -u -l 7777 > udp.out &) ; sleep 0.3", 5);
    a.sh("echo datagram | timeout 5 nc -u -w 1 10.31.0.2 7777", 10);
    tcp_transfer(a, b, "10.31.0.2", &d, 8 << 20);
    tcp_transfer(b, a, "10.31.0.1", &d, 8 << 20);
    tcp_transfer(a, b, "fd31::2", &d, 4 << 20);
    let got = b.sh("cat udp.out", 5);
    assert!(got.contains("datagram"), "UDP crossed: {got:?}");
    let s = &relay.seen;
    let (offers, tagged, tagged_big, plain_big) = (
        s.offers.load(Ordering::Relaxed),
        s.tagged.load(Ordering::Relaxed),
        s.tagged_big.load(Ordering::Relaxed),
        s.plain_big.load(Ordering::Relaxed),
    );
    assert_eq!(plain_big, 0, "no untagged datagram over a frame");
    let jsons: Vec<String> = nodes.iter_mut().map(|(n, f)| stats_of(n, f)).collect();
    if !c.offload {
        assert_eq!(offers, 0, "--no-offload offers nothing");
        assert_eq!(tagged, 0);
        for j in &jsons {
            assert_eq!(port_field(j, "superframes"), "off", "{j}");
        }
    } else if !c.answer_offer {
        assert_eq!(offers, 2, "each client offers");
        assert_eq!(
            tagged, 0,
            "nothing tagged to a switch that did not answer the offer"
        );
        for j in &jsons {
            assert_eq!(port_field(j, "superframes"), "offered", "{j}");
            assert_eq!(stat_sum(j, "wire_super"), 0, "{j}");
        }
    } else {
        assert_eq!(offers, 2);
        assert!(tagged_big > 0, "super-frames crossed whole ({tagged} tagged)");
        let (mut all_sent, mut all_got) = (0, 0);
        for j in &jsons {
            assert_eq!(port_field(j, "superframes"), "negotiated", "{j}");
            let sent = stat_sum(
                &j[j.find("tap_to_link").unwrap()..j.find("link_to_tap").unwrap()],
                "wire_super",
            );
            let got = stat_sum(&j[j.find("link_to_tap").unwrap()..], "wire_super");
            assert!(sent > 0 && got > 0, "super-frames sent and received: {j}");
            (all_sent, all_got) = (all_sent + sent, all_got + got);
        }
        // The relay loses nothing: every super-frame sent whole is counted once where it
        // arrives, and the relay saw each of them.
        assert_eq!(all_sent, all_got, "{jsons:?}");
        assert_eq!(all_sent, tagged_big, "{jsons:?}");
    }
    drop(nodes);
    drop(relay);
}

#[test]
fn negotiated_super_frames_cross_whole_on_io_uring() {
    run(
        "sfu",
        Case {
            engine: "uring",
            offload: true,
            answer_offer: true,
            mtu: 1500,
        },
    );
}

#[test]
fn negotiated_super_frames_cross_whole_on_epoll() {
    run(
        "sfp",
        Case {
            engine: "poll",
            offload: true,
            answer_offer: true,
            mtu: 1500,
        },
    );
}

#[test]
fn negotiated_super_frames_at_mtu_9000() {
    run(
        "sf9",
        Case {
            engine: "uring",
            offload: true,
            answer_offer: true,
            mtu: 9000,
        },
    );
}

#[test]
fn a_switch_that_does_not_answer_gets_standard_frames() {
    run(
        "sfc",
        Case {
            engine: "uring",
            offload: true,
            answer_offer: false,
            mtu: 1500,
        },
    );
}

#[test]
fn no_offload_offers_nothing() {
    run(
        "sfn",
        Case {
            engine: "uring",
            offload: false,
            answer_offer: true,
            mtu: 1500,
        },
    );
}

/// Waits until vde0's "superframes" says `want` (the control thread rejoins a switch that
/// appears again at the same place).
fn wait_superframes(n: &mut Node, file: &Path, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let j = stats_of(n, file);
        if j.contains("\"vde0\"") && port_field(&j, "superframes") == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: superframes never {want}: {j}",
            n.name
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The switch at the clients' path is replaced by one that does not answer the offer, then by
/// one that does: each rejoin decides again, and the switch that did not answer is never sent
/// a tagged datagram, though the clients were sending super-frames whole a moment before.
#[test]
fn a_rejoin_negotiates_again() {
    let d = TempDir::new("sfr");
    let sw = d.join("sw");
    let vnl = format!("vde://{}", sw.display());
    let mut relay = Relay::start(&sw, true, 1500);
    let mut nodes: Vec<(Node, PathBuf)> = (0..2)
        .map(|i| {
            let stats = d.join(&format!("stats{i}.json"));
            let args = ["--stats", stats.to_str().unwrap(), vnl.as_str(), "sh", "-s"];
            (
                Node::start(&format!("n{i}"), vdens_fast(Who::Root, &d, &args)),
                stats,
            )
        })
        .collect();
    for (i, (n, _)) in nodes.iter_mut().enumerate() {
        n.up("vde0", &format!("10.32.0.{}/24", i + 1), None);
    }
    for round in [false, true] {
        let (a, b) = nodes.split_at_mut(1);
        let ((a, fa), (b, fb)) = ((&mut a[0].0, &a[0].1), (&mut b[0].0, &b[0].1));
        a.ping("10.32.0.2", 1, None);
        tcp_transfer(a, b, "10.32.0.2", &d, 4 << 20);
        let before = relay.seen.tagged_big.load(Ordering::Relaxed);
        drop(relay);
        relay = Relay::start(&sw, round, 1500);
        let want = if round { "negotiated" } else { "offered" };
        wait_superframes(a, fa, want);
        wait_superframes(b, fb, want);
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.try_sh("ping -c 1 -W 1 10.32.0.2", 5).0 != Some(0) {
            assert!(Instant::now() < deadline, "no ping through the new switch");
        }
        tcp_transfer(a, b, "10.32.0.2", &d, 4 << 20);
        tcp_transfer(b, a, "10.32.0.1", &d, 4 << 20);
        let s = &relay.seen;
        assert_eq!(s.plain_big.load(Ordering::Relaxed), 0);
        if round {
            assert!(
                s.tagged_big.load(Ordering::Relaxed) > 0,
                "super-frames again after the rejoin"
            );
        } else {
            assert!(before > 0, "super-frames crossed the first switch whole");
            assert_eq!(
                s.tagged.load(Ordering::Relaxed),
                0,
                "a switch that did not answer the offer got tagged datagrams"
            );
        }
    }
    drop(nodes);
    drop(relay);
}
