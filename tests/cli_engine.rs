//! The engine through the command line: `--engine poll|uring`, `--stats FILE` and SIGUSR1, with
//! traffic between two namespaces over ptp://.

mod common;
use common::*;

/// Reads a counter `"key":N` of a direction from the stats JSON.
fn counter(json: &str, dir: &str, key: &str) -> u64 {
    let d = json
        .find(&format!("\"{dir}\":{{"))
        .unwrap_or_else(|| panic!("{dir} missing in {json}"));
    let rest = &json[d..];
    let k = rest
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} missing in {json}"));
    rest[k + key.len() + 3..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

fn pair_with(engine: &str) {
    pair_with_args(engine, &[]);
}

/// [`pair_with`], both ends given `extra` options too.
fn pair_with_args(engine: &str, extra: &[&str]) {
    let d = TempDir::new("clieng");
    let p = format!("ptp://{}", d.join("p").display());
    let stats = d.join("stats.json");
    let st = stats.to_str().unwrap();
    let mut a = Node::start(
        "a",
        vdens_fast(
            Who::Nobody,
            &d,
            &[
                &["--engine", engine, "--stats", st, "--stats-interval", "100"],
                extra,
                &[&p, "sh", "-s"],
            ]
            .concat(),
        ),
    );
    // Both as the unprivileged user: the ptp socket is private to its owner (mode 0700).
    let mut b = Node::start(
        "b",
        vdens_fast(
            Who::Nobody,
            &d,
            &[&["--engine", engine], extra, &[&p, "sh", "-s"]].concat(),
        ),
    );
    a.up("vde0", "10.31.0.1/24", None);
    b.up("vde0", "10.31.0.2/24", None);
    b.ping("10.31.0.1", 5, None);
    a.ping("10.31.0.2", 5, None);
    // The periodic file shows the engine asked for and the frames that crossed.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let json = std::fs::read_to_string(&stats).unwrap();
    assert!(json.contains(&format!("\"engine\":\"{engine}\"")), "{json}");
    assert!(json.contains("\"name\":\"vde0\""), "{json}");
    assert!(counter(&json, "tap_to_link", "frames") >= 10, "{json}");
    assert!(counter(&json, "link_to_tap", "frames") >= 10, "{json}");
    // SIGUSR1 to b (no --stats file): one JSON line on stderr.
    unsafe_kill(b.pid(), libc::SIGUSR1);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !b.stderr().contains("\"ports\"") && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let line = b.stderr();
    let line = line
        .lines()
        .find(|l| l.contains("\"ports\""))
        .unwrap_or_else(|| panic!("no stats line: {line}"));
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(counter(line, "link_to_tap", "frames") >= 10, "{line}");
    let ob = b.finish(10);
    assert_eq!(ob.code, Some(0), "{ob:#?}");
    let oa = a.finish(10);
    assert_eq!(oa.code, Some(0), "{oa:#?}");
    // Written once more at exit: the final counters.
    let last = std::fs::read_to_string(&stats).unwrap();
    assert!(counter(&last, "tap_to_link", "frames") >= counter(&json, "tap_to_link", "frames"));
    assert!(!stats.with_extension("json.tmp").exists());
}

#[test]
fn poll_engine_carries_traffic_and_reports_stats() {
    pair_with("poll");
}

#[test]
fn uring_engine_carries_traffic_and_reports_stats() {
    pair_with("uring");
}

/// `--busy-poll` (low-latency mode) on both drivers: the same traffic and statistics.
#[test]
fn busy_polling_ends_carry_traffic_on_both_engines() {
    pair_with_args("uring", &["--busy-poll", "100"]);
    pair_with_args("poll", &["--busy-poll", "100"]);
}
