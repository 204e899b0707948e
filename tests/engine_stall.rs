//! A bidirectional flood with one side's reader stalled: the engine neither deadlocks nor grows
//! its memory (RSS stays bounded), the other direction keeps flowing during the stall, and the
//! stalled direction resumes when its reader does. Run on both engines, one after the other
//! (alone in this test binary, so that RSS is this test's own).

mod enginekit;
use enginekit as common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdens_fast::cli::EngineChoice;

const FRAME: usize = 1500;
const STALL: Duration = Duration::from_secs(2);

struct Flow {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    paused: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Floods `w` (dropping when it would block) and reads `r` unless paused, counting frames read.
fn flow(mut w: Writer, mut r: Reader, salt: u8, paused: bool) -> Flow {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let pause = Arc::new(AtomicBool::new(paused));
    let s = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut buf = vec![0u8; FRAME];
        let mut seq = 0;
        while !s.load(Ordering::Relaxed) {
            make_frame(&mut buf, FRAME, seq, salt);
            if w.try_send(&buf) {
                seq += 1;
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    });
    let (s, c, p) = (stop.clone(), count.clone(), pause.clone());
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 10000];
        while !s.load(Ordering::Relaxed) {
            if p.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            if let Some(n) = r.recv(&mut buf, Duration::from_millis(20)) {
                assert_eq!(n, FRAME);
                assert_eq!(buf[11], salt);
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Flow {
        stop,
        count,
        paused: pause,
        threads: vec![writer, reader],
    }
}

fn stall(choice: EngineChoice, stall_link_reader: bool) {
    let mut rig = rig(choice, LinkKind::Dgram);
    let engine = rig.engine.take().unwrap();
    let Rig {
        tap_w,
        tap_r,
        link_w,
        link_r,
        ..
    } = rig;
    // tap->link is read by the link peer; link->tap by the tap peer.
    let t2l = flow(tap_w, link_r, 1, stall_link_reader);
    let l2t = flow(link_w, tap_r, 2, !stall_link_reader);
    let (stalled, running) = if stall_link_reader {
        (&t2l, &l2t)
    } else {
        (&l2t, &t2l)
    };
    let t0 = Instant::now();
    std::thread::sleep(STALL / 4);
    let (rss0, n0) = (rss_kib(), running.count.load(Ordering::Relaxed));
    let mut rss_max = rss0;
    while t0.elapsed() < STALL {
        std::thread::sleep(Duration::from_millis(50));
        rss_max = rss_max.max(rss_kib());
    }
    let n1 = running.count.load(Ordering::Relaxed);
    assert!(
        n1 > n0 + 100,
        "{choice:?}: the other direction stopped during the stall ({n0} -> {n1} frames)"
    );
    assert!(
        rss_max < rss0 + 16 * 1024,
        "{choice:?}: memory grew during the stall: {rss0} KiB -> {rss_max} KiB"
    );
    eprintln!(
        "{choice:?} stall of the {} reader: other direction {n0} -> {n1} frames, RSS {rss0} -> max {rss_max} KiB",
        if stall_link_reader { "link" } else { "tap" }
    );
    // The stall ends: the stalled direction must flow again.
    stalled.paused.store(false, Ordering::Relaxed);
    let before = stalled.count.load(Ordering::Relaxed);
    let deadline = Instant::now() + STEP;
    while stalled.count.load(Ordering::Relaxed) < before + 1000 {
        assert!(
            Instant::now() < deadline,
            "{choice:?}: traffic did not resume after the stall ({} frames)",
            stalled.count.load(Ordering::Relaxed) - before
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Stop the peers (the engine still holds frames in flight), then the engine.
    for f in [t2l, l2t] {
        f.stop.store(true, Ordering::Relaxed);
        for h in f.threads {
            h.join().expect("peer thread");
        }
    }
    let t = Instant::now();
    let stats = engine.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "{choice:?}: stop took {:?}",
        t.elapsed()
    );
    for c in &stats[0].dirs {
        assert!(c.frames > 1000, "{choice:?}: {c:?}");
        assert_eq!(c.received, c.frames + c.dropped(), "{choice:?}: {c:?}");
    }
}

#[test]
fn stalled_reader_no_deadlock_bounded_memory() {
    bounded(Duration::from_secs(120), "stall", || {
        for choice in [EngineChoice::Uring, EngineChoice::Poll] {
            stall(choice, true);
            stall(choice, false);
        }
    });
}
