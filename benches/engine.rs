//! Per-frame cost of the engines over socket pairs: a SOCK_SEQPACKET pair stands in for the
//! tap, another for the link; frames of 64, 1500 and 9000 bytes go tap -> link in batches of
//! 1, 8 and 64 (frames written back to back before the bench drains the other side). The io_uring
//! engine runs with its defaults and with one feature off at a time, to measure what each buys.
//!
//! Run: cargo bench --bench engine -- --quick   (or a filter such as `engine/uring/1500`)
//!
//! `cargo bench --bench engine -- flood` instead floods one port (tap -> link, sendmmsg and
//! recvmmsg on the bench side, pinned to CPU 1, worker pinned to CPU 0) for 2 s per variant
//! and prints frames/s and the worker thread's CPU time per frame (from /proc), which shows
//! the engine's own cost better than the wall-clock figures of the criterion groups.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Engine, EngineOptions, Port, UringTuning};
use vdens_fast::transport::{Framing, Link};

fn pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .unwrap();
    (a, b)
}

struct Bench {
    engine: Option<Engine>,
    tap_peer: OwnedFd,
    link_peer: OwnedFd,
}

/// A port over two socket pairs, and the bench's ends of them.
fn port(i: usize) -> (Port, OwnedFd, OwnedFd) {
    let (tap, tap_peer) = pair();
    let (l, link_peer) = pair();
    let link = Link::single("bench", Framing::Datagram, l);
    let p = Port {
        name: format!("bench{i}"),
        tap,
        link,
        offload: vdens_fast::engine::TapOffload::NONE,
    };
    (p, tap_peer, link_peer)
}

fn options(choice: EngineChoice, workers: Option<usize>) -> EngineOptions {
    EngineOptions {
        choice,
        workers,
        cpus: None,
        pin: true,
        realtime: None,
        stats: None,
        stats_interval: Duration::from_secs(3600),
    }
}

fn setup(choice: EngineChoice, tuning: UringTuning) -> Bench {
    let (p, tap_peer, link_peer) = port(0);
    let engine = Engine::start_with(options(choice, None), tuning, vec![p]).unwrap();
    Bench {
        engine: Some(engine),
        tap_peer,
        link_peer,
    }
}

/// Two busy ports on one worker or on two (the default worker count is chosen from this).
fn bench_workers(c: &mut Criterion) {
    let mut g = c.benchmark_group("workers");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let batch = 64;
    for choice in [EngineChoice::Uring, EngineChoice::Poll] {
        for workers in [1usize, 2] {
            let (p0, t0, l0) = port(0);
            let (p1, t1, l1) = port(1);
            let engine = Engine::start_with(
                options(choice, Some(workers)),
                UringTuning::default(),
                vec![p0, p1],
            )
            .unwrap();
            let b0 = Bench {
                engine: None,
                tap_peer: t0,
                link_peer: l0,
            };
            let b1 = Bench {
                engine: None,
                tap_peer: t1,
                link_peer: l1,
            };
            let frame = vec![0x5au8; 1500];
            g.throughput(Throughput::Elements(2 * batch as u64));
            let name = format!("{}/2ports-1500", engine.kind().name());
            g.bench_with_input(BenchmarkId::new(name, workers), &workers, |bn, _| {
                bn.iter_custom(|iters| {
                    let t = Instant::now();
                    std::thread::scope(|s| {
                        for b in [&b0, &b1] {
                            let f = &frame;
                            s.spawn(move || {
                                let mut sl = slabs(f);
                                for _ in 0..iters {
                                    transfer(b, &mut sl, batch);
                                }
                            });
                        }
                    });
                    t.elapsed()
                })
            });
            engine.stop();
        }
    }
    g.finish();
}

/// Bench-side buffers: `MAX_BATCH` copies of the frame, and room to receive as many.
struct Slabs {
    out: Vec<u8>,
    lens: Vec<usize>,
    inb: Vec<u8>,
    rlens: Vec<usize>,
}

const STRIDE: usize = 9216;

fn slabs(frame: &[u8]) -> Slabs {
    let n = vdens_fast::sys::MAX_BATCH;
    let mut out = vec![0u8; n * STRIDE];
    for i in 0..n {
        out[i * STRIDE..i * STRIDE + frame.len()].copy_from_slice(frame);
    }
    Slabs {
        out,
        lens: vec![frame.len(); n],
        inb: vec![0u8; n * STRIDE],
        rlens: vec![0; n],
    }
}

/// Writes `n` frames into the tap side and reads them all from the link side, interleaving
/// so that neither side's queue can fill up. The bench side uses sendmmsg/recvmmsg, so that
/// its own cost per frame stays small next to the engine's.
fn transfer(b: &Bench, s: &mut Slabs, n: usize) {
    use vdens_fast::sys::{recv_batch, send_batch};
    let (mut w, mut r) = (0, 0);
    while r < n {
        let mut progress = false;
        if w < n {
            if let Ok(k) = send_batch(b.tap_peer.as_fd(), &s.out, STRIDE, &s.lens[..n - w], None) {
                w += k;
                progress = k > 0;
            }
        }
        if r < w {
            if let Ok(k) = recv_batch(b.link_peer.as_fd(), &mut s.inb, STRIDE, &mut s.rlens[..w - r]) {
                r += k;
                progress |= k > 0;
            }
        }
        if !progress && r < n {
            let mut fds = [
                PollFd::new(b.link_peer.as_fd(), PollFlags::POLLIN),
                PollFd::new(b.tap_peer.as_fd(), PollFlags::POLLOUT),
            ];
            let ev = if w < n { 2 } else { 1 };
            let got = poll(&mut fds[..ev], PollTimeout::from(5000u16)).unwrap();
            assert!(got > 0, "no progress for 5 s ({r}/{n} frames)");
        }
    }
}

fn variants() -> Vec<(&'static str, EngineChoice, UringTuning)> {
    let d = UringTuning::default();
    vec![
        ("uring", EngineChoice::Uring, d),
        (
            "uring-no-batch-wait",
            EngineChoice::Uring,
            UringTuning {
                batch_wait_us: 0,
                ..d
            },
        ),
        (
            "uring-no-defer-taskrun",
            EngineChoice::Uring,
            UringTuning {
                defer_taskrun: false,
                ..d
            },
        ),
        ("poll", EngineChoice::Poll, d),
    ]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (name, choice, tuning) in variants() {
        let mut b = setup(choice, tuning);
        for size in [64usize, 1500, 9000] {
            let frame = vec![0x5au8; size];
            let mut sl = slabs(&frame);
            for batch in [1usize, 8, 64] {
                g.throughput(Throughput::Elements(batch as u64));
                g.bench_with_input(
                    BenchmarkId::new(format!("{name}/{size}"), batch),
                    &batch,
                    |bn, &batch| {
                        bn.iter_custom(|iters| {
                            let t = Instant::now();
                            for _ in 0..iters {
                                transfer(&b, &mut sl, batch);
                            }
                            t.elapsed()
                        })
                    },
                );
            }
        }
        b.engine.take().unwrap().stop();
    }
    g.finish();
}

criterion_group!(benches, bench, bench_workers);

/// CPU seconds used so far by this process's thread named `name`.
fn thread_cpu(name: &str) -> f64 {
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let st = std::fs::read_to_string(e.path().join("stat")).unwrap();
            let f: Vec<&str> = st[st.rfind(')').unwrap() + 2..].split(' ').collect();
            let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
            return ticks / 100.0;
        }
    }
    panic!("no thread named {name}")
}

fn flood(name: &str, choice: EngineChoice, tuning: UringTuning, size: usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use vdens_fast::sys::{recv_batch, send_batch, MAX_BATCH};
    let (p, tap_peer, link_peer) = port(0);
    let mut o = options(choice, None);
    o.cpus = Some(vec![0]);
    let engine = Engine::start_with(o, tuning, vec![p]).unwrap();
    let worker = format!("vdens-{}0", engine.kind().name());
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let writer = std::thread::spawn(move || {
        let _ = core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
        let out = vec![0x5au8; MAX_BATCH * STRIDE];
        let lens = vec![size; MAX_BATCH];
        while !st.load(Ordering::Relaxed) {
            if send_batch(tap_peer.as_fd(), &out, STRIDE, &lens, None).is_err() {
                let mut f = [PollFd::new(tap_peer.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut f, PollTimeout::from(10u8));
            }
        }
    });
    let st = stop.clone();
    let reader = std::thread::spawn(move || {
        let _ = core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
        let mut inb = vec![0u8; MAX_BATCH * STRIDE];
        let mut lens = vec![0usize; MAX_BATCH];
        while !st.load(Ordering::Relaxed) {
            if recv_batch(link_peer.as_fd(), &mut inb, STRIDE, &mut lens).is_err() {
                let mut f = [PollFd::new(link_peer.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut f, PollTimeout::from(10u8));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let (c0, f0, t0) = (
        thread_cpu(&worker),
        engine.stats()[0].dirs[0].frames,
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (c1, f1, dt) = (
        thread_cpu(&worker),
        engine.stats()[0].dirs[0].frames,
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = (writer.join(), reader.join());
    engine.stop();
    let frames = (f1 - f0) as f64;
    println!(
        "flood {name:26} {size:5} B: {:8.0} frames/s, worker CPU {:5.1}%, {:5.2} us CPU/frame",
        frames / dt,
        (c1 - c0) / dt * 100.0,
        (c1 - c0) / frames * 1e6
    );
}

fn main() {
    if std::env::args().any(|a| a == "flood") {
        for size in [64usize, 1500, 9000] {
            for (name, choice, tuning) in variants() {
                flood(name, choice, tuning, size);
            }
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
