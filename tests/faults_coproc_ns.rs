//! vdens-fast with a `=cmd` coprocess that ends while the command runs (issue 17, item 9): no
//! zombie child of vdens-fast remains, and its end is reported once, in both namespace modes
//! and as root and nobody.

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Pids of the children of `pid` (every thread's), with their state letters.
fn children(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        for c in list.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{c}/stat")) {
                if let Some(st) = s.rfind(')').and_then(|i| s[i + 2..].chars().next()) {
                    out.push((c, st));
                }
            }
        }
    }
    out
}

fn case(who: Who, extra: &[&str]) {
    let dir = TempDir::new("coproc-ns");
    let vnl = "=sh -c 'exit 3'";
    let mut args: Vec<&str> = extra.to_vec();
    args.extend([vnl, "sleep", "2"]);
    let mut c = vdens_fast(who, &dir, &args);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let r = spawn(c);
    let pid = r.pid() as u32;
    std::thread::sleep(Duration::from_millis(1200));
    let zombies: Vec<_> = children(pid).into_iter().filter(|&(_, s)| s == 'Z').collect();
    let t = Instant::now();
    let out = r.wait(10);
    assert!(
        zombies.is_empty(),
        "{who:?} {extra:?}: zombie children of vdens-fast {zombies:?}; {out:#?}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    let line = format!("vdens-fast: {vnl}: coprocess exited with status 3");
    assert_eq!(
        out.stderr.matches(&line).count(),
        1,
        "{who:?} {extra:?}: {out:#?}"
    );
    assert_eq!(out.code, Some(0), "{who:?} {extra:?}: {out:#?}");
}

#[test]
fn ended_coprocess_is_reaped_and_reported() {
    for who in BOTH {
        case(who, &[]);
        case(who, &["-c"]);
    }
}
