//! An idle vdens-fast with one interface holds at most 4 MB resident (issue 17, item 6): an
//! NFV lab runs dozens of them. Buffers are allocated when traffic first uses them, not at
//! start (they were populated up front: 12.4 MB each before any frame).

mod common;
use common::*;
use std::time::{Duration, Instant};

fn status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn worker_started(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten().any(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("vdens-uring"))
            })
        })
        .unwrap_or(false)
}

#[test]
fn one_interface_idles_in_4_mb() {
    let d = TempDir::new("idle-rss");
    let vnl = format!("ptp://{}", d.join("p").display());
    let mut child = vdens_fast(Who::Nobody, &d, &[&vnl, "sleep", "20"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("vdens-fast");
    let pid = child.id();
    let end = Instant::now() + Duration::from_secs(10);
    // setpriv execs vdens-fast in the same process: wait for its io_uring worker.
    while !worker_started(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = worker_started(pid);
    std::thread::sleep(Duration::from_millis(300));
    let (rss, anon) = (status_kb(pid, "VmRSS:"), status_kb(pid, "RssAnon:"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "no io_uring worker appeared");
    assert!(
        rss <= 4096,
        "idle VmRSS {rss} kB (RssAnon {anon} kB): more than 4 MB"
    );
    assert!(
        anon <= 2048,
        "idle RssAnon {anon} kB: buffers are populated before use"
    );
}
