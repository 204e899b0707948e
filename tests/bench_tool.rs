//! The side-by-side benchmark's own checks (`tools/bench.py --self-test`: its iperf3, ping,
//! trafgen, sockperf and /proc/net/dev parsers, the trafgen frame configs, the zero-loss rate
//! search, statistics, ratios, JSON/CSV/Markdown outputs and the SVG chart, on canned data; the
//! agent's control channel run directly; no namespaces, no traffic), so that CI catches a broken
//! benchmark tool before anyone runs it.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn bench_tool_self_test_passes() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("python3")
        .args(["tools/bench.py", "--self-test"])
        .current_dir(root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (the benchmark tool needs Python 3.11)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench.py --self-test did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "bench.py --self-test failed:\n{text}");
    assert!(
        text.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "no summary line:\n{text}"
    );
}
