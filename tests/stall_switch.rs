//! The stall seen once in tools/bench.py (BENCHMARKS.md, "A stall seen once"), reproduced and
//! fixed: four vdens-fast clients of a `vdeplug-fast null:// switch://` host, trafgen floods
//! from b and d to MACs the switch does not know (as once a receiver's learnt address expired,
//! after 120 s of silence), so that every frame reaches the three others, the flooders among
//! them. The switch queued a burst for a client that still kept up; that client refused it
//! whole (its socket full) and the burst went back to its queue unchecked, holding the
//! switch's receive buffers for super-frame clients (64), so the switch stopped reading from
//! everyone; that client's own frames waited for the switch to read, its tap reads held its
//! buffers, so it never read its link again: both waited for good, every process alive. Now
//! a queue that falls behind keeps only what it would admit (`core::admit_to_queue`).
//!
//! Also: one client that never reads (a stopped process) does not stop the switch. Both
//! engines.

mod enginekit;
use enginekit::common;
use enginekit::*;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdens_fast::cli::EngineChoice;
use vdens_fast::transport::{Link, Opening};

/// Test frame `seq` from `src` to `dst` (the last byte of each MAC), 64 bytes.
fn wire_frame(dst: u8, src: u8, seq: u32) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src, 0x88, 0xb5];
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(64, src ^ (seq as u8));
    f
}

/// A `vde://` link joined to the switch at `sw`, offering super-frames (as vdens-fast's): the
/// test's own end of it, its data socket, non-blocking.
fn raw_client(sw: &str, name: &str) -> (UnixDatagram, Link) {
    let how = Opening {
        descr: std::ffi::OsStr::new(name),
        rejoin: false,
        offload: true,
        superframe_nodes: true,
    };
    let vnl = format!("vde://{sw}");
    // (A signal the engine's threads get may interrupt the wait for the switch's answer.)
    let mut link = (0..3)
        .find_map(|_| vdens_fast::transport::open_with(std::ffi::OsStr::new(&vnl), &how).ok())
        .unwrap_or_else(|| panic!("{vnl}: cannot join"));
    let s = UnixDatagram::from(link.rx.take().unwrap());
    s.set_nonblocking(true).unwrap();
    (s, link)
}

/// One client of the switch never reads (a stopped process): frames flooded to it fill its
/// socket, then wait in its queue, then are dropped, but the switch goes on reading and
/// forwarding for the others. (Its queue held every receive buffer of the switch once: a
/// burst queued while the client still kept up, all refused at once, kept for it; the switch
/// then stopped reading until that client read.)
fn one_client_never_reads(choice: EngineChoice) {
    let d = TempDir::new("stall1");
    let sw = d.0.join("sw").display().to_string();
    let switch = net_node(false, &sw, "sw", choice);
    let (a, _la) = raw_client(&sw, "a");
    let (b, _lb) = raw_client(&sw, "b");
    let (c, _lc) = raw_client(&sw, "c");
    for (i, s) in [&a, &b, &c].into_iter().enumerate() {
        s.send(&wire_frame(0xff, 0xa + i as u8, 0)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = vec![0u8; 70000];
    while b.recv(&mut buf).is_ok() {}
    // a floods to a MAC nobody has: every frame goes to b and c; b reads, c never does.
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let (s, g) = (stop.clone(), got.clone());
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 70000];
        while !s.load(Ordering::Relaxed) {
            match b.recv(&mut buf) {
                Ok(_) => {
                    g.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => std::thread::sleep(Duration::from_micros(100)),
            }
        }
        b
    });
    let s = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut seq = 1;
        while !s.load(Ordering::Relaxed) {
            if a.send(&wire_frame(0x5e, 0xa, seq)).is_ok() {
                seq += 1;
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        a
    });
    // Long enough for c's socket to fill and its queue to be refused.
    let mut seen = Vec::new();
    for _ in 0..6 {
        let n0 = got.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
        seen.push(got.load(Ordering::Relaxed) - n0);
    }
    stop.store(true, Ordering::Relaxed);
    let (a, b) = (writer.join().unwrap(), reader.join().unwrap());
    eprintln!("{choice:?}: b received per half second: {seen:?}");
    // Whatever c's state, a frame from a to b still passes.
    while b.recv(&mut buf).is_ok() {}
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut passed = false;
    let mut seq = 0xf000_0000;
    while Instant::now() < deadline && !passed {
        let _ = a.send(&wire_frame(0xb, 0xa, seq));
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
        while let Ok(n) = b.recv(&mut buf) {
            passed |= n == 64 && buf[11] == 0xa && buf[14] == 0xf0;
        }
    }
    drop(c);
    switch.stop();
    assert!(
        passed && seen[3..].iter().all(|&n| n > 0),
        "{choice:?}: the switch stopped forwarding while c did not read (b received per half second: {seen:?})"
    );
}

#[test]
fn one_client_never_reads_uring() {
    bounded(Duration::from_secs(60), "uring", || {
        one_client_never_reads(EngineChoice::Uring)
    });
}

#[test]
fn one_client_never_reads_poll() {
    bounded(Duration::from_secs(60), "poll", || {
        one_client_never_reads(EngineChoice::Poll)
    });
}

/// Frames a vdens-fast namespace's `vde0` received so far.
fn rx_packets(n: &mut common::Node) -> u64 {
    n.sh("sed -n 's/^ *vde0:/ /p' /proc/net/dev | awk '{print $2}'", 10)
        .trim()
        .parse()
        .unwrap()
}

/// The bench's two floods (b and d, 64-byte frames at full rate) to MACs the switch never
/// learnt, through `vdeplug-fast null:// switch://` and four vdens-fast clients (`extra`: their
/// options): a and c must go on receiving, and, the floods over, a ping must pass.
fn floods_to_unknown_macs(extra: &[&str]) {
    let has_trafgen = std::process::Command::new("trafgen")
        .arg("--version")
        .output()
        .is_ok();
    assert!(has_trafgen, "trafgen not found (apt-get install netsniff-ng)");
    use common::{ns_node_in, Daemon, Impl, NetNs};
    let d = TempDir::new("stall-ns");
    let sw = d.0.join("sw");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"));
    cmd.args(extra);
    cmd.arg("null://").arg(format!("switch://{}", sw.display()));
    let _switch = Daemon::start("switch", cmd);
    assert!(common::wait_path(&sw.join("ctl"), 10), "the switch did not start");
    let vnl = format!("vde://{}", sw.display());
    let ns = NetNs::new("stall");
    let mut nodes: Vec<common::Node> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| ns_node_in(&ns, n, Impl::Fast, &d, extra, &[&vnl]))
        .collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.up("vde0", &format!("10.77.0.{}/24", i + 1), None);
    }
    // Everyone known to the switch, and the links warm.
    nodes[1].ping("10.77.0.1", 1, None);
    nodes[3].ping("10.77.0.3", 1, None);
    for (k, dst) in [(1usize, "02:00:00:00:00:5a"), (3, "02:00:00:00:00:5c")] {
        let cfg = d.0.join(format!("flood{k}.cfg"));
        std::fs::write(
            &cfg,
            format!("{{ eth(da={dst}), ipv4(sa=10.77.0.{}, da=10.77.0.99, ttl=64), udp(sp=9, dp=9), fill(0x00, 18) }}\n", k + 1),
        )
        .unwrap();
        nodes[k].sh(
            &format!(
                "(timeout -s INT {} trafgen -o vde0 -i {} -P 1 --no-sock-mem -Q >/dev/null 2>&1 &)",
                FLOODS.as_secs() + 2,
                cfg.display()
            ),
            10,
        );
    }
    // a and c receive the floods (flooded to them) all along.
    let t0 = Instant::now();
    let mut last = [rx_packets(&mut nodes[0]), rx_packets(&mut nodes[2])];
    let mut idle = Duration::ZERO;
    while t0.elapsed() < FLOODS {
        std::thread::sleep(Duration::from_millis(500));
        let now = [rx_packets(&mut nodes[0]), rx_packets(&mut nodes[2])];
        if now[0] == last[0] || now[1] == last[1] {
            idle += Duration::from_millis(500);
        } else {
            idle = Duration::ZERO;
        }
        assert!(
            idle < STALLED,
            "{extra:?}: a or c received nothing for {idle:?} during the floods, after {:?} ({last:?} -> {now:?}): the switch or a client stopped",
            t0.elapsed()
        );
        last = now;
    }
    for n in nodes.iter_mut() {
        n.sh("pkill trafgen; true", 10);
    }
    let (code, out) = nodes[1].try_sh("ping -n -q -c 1 -w 5 10.77.0.1", 10);
    assert_eq!(
        code,
        Some(0),
        "{extra:?}: b cannot reach a after the floods: {out}"
    );
    let (code, out) = nodes[3].try_sh("ping -n -q -c 1 -w 5 10.77.0.3", 10);
    assert_eq!(
        code,
        Some(0),
        "{extra:?}: d cannot reach c after the floods: {out}"
    );
}

/// How long the namespace test floods, and how long a receiver may see nothing.
const FLOODS: Duration = Duration::from_secs(12);
const STALLED: Duration = Duration::from_secs(3);

#[test]
fn floods_to_unknown_macs_never_stall_the_switch_uring() {
    bounded(Duration::from_secs(60), "uring", || floods_to_unknown_macs(&[]));
}

#[test]
fn floods_to_unknown_macs_never_stall_the_switch_poll() {
    bounded(Duration::from_secs(60), "poll", || {
        floods_to_unknown_macs(&["--engine", "poll"])
    });
}
