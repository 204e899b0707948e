//! Many nodes in one vdens-fast under the default locked-memory limit: `--multi` with 200
//! `switch://` hosts. Unprivileged io_uring rings and their pinned buffers count against
//! RLIMIT_MEMLOCK (8 MiB here and on Debian by default); about 37 switch nodes fit. The rest
//! run on the epoll node, said once on stderr, and carry frames like the others, their host
//! taps (opened with offload for io_uring) included. Before that fall-back vdens-fast ended
//! with "io_uring_setup: Out of memory" after about 40, where classic vdens runs 200.

mod common;
use common::*;
use std::process::Command;

const SWITCHES: usize = 200;
const MEMLOCK: &str = "--memlock=8388608:8388608";

/// `c` run under prlimit with the memlock limit above (only for that process tree).
fn with_memlock(c: &Command) -> Command {
    let mut p = Command::new("prlimit");
    p.arg(MEMLOCK).arg("--").arg(c.get_program()).args(c.get_args());
    p.env_clear();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            p.env(k, v);
        }
    }
    if let Some(d) = c.get_current_dir() {
        p.current_dir(d);
    }
    p
}

#[test]
fn two_hundred_switches_under_the_default_memlock_limit() {
    let d = TempDir::new("many-sw");
    let vnls: Vec<String> = (0..SWITCHES)
        .map(|i| format!("switch://{}", d.join(&format!("s{i}")).display()))
        .collect();
    let mut args: Vec<&str> = vec!["-m"];
    args.extend(vnls.iter().map(|s| s.as_str()));
    args.extend(["--", "sh", "-s"]);
    let mut host = Node::start("host", with_memlock(&vdens_fast(Who::Nobody, &d, &args)));
    let last = SWITCHES - 1;
    assert!(
        wait_path(&d.join(&format!("s{last}")).join("ctl"), 20),
        "the last switch did not appear; stderr: {}",
        host.stderr()
    );
    let links = host.sh("ip -o link | grep -c ': vde'", 10);
    assert_eq!(links.trim(), SWITCHES.to_string(), "one tap per switch");
    // The first switch (on io_uring) and the last (beyond the memory: on epoll) both carry
    // frames between the host's tap and a client.
    for (k, i) in [0usize, last].into_iter().enumerate() {
        let vnl = format!("vde://{}", d.join(&format!("s{i}")).display());
        let mut client = ns_node(&format!("client{i}"), Impl::Fast, &d, &[&vnl]);
        let net = 60 + k;
        host.up(&format!("vde{i}"), &format!("10.{net}.0.1/24"), None);
        client.up("vde0", &format!("10.{net}.0.2/24"), None);
        client.ping(&format!("10.{net}.0.1"), 3, None);
        // A TCP transfer from the host's tap: super-frames from the offloading tap are cut
        // on whichever engine runs the node.
        tcp_transfer(&mut host, &mut client, &format!("10.{net}.0.2"), &d, 1 << 20);
    }
    let err = host.stderr();
    assert!(
        err.contains("run on the poll engine") && err.contains("8192 KiB"),
        "the fall-back is announced once, with the limit; stderr: {err}"
    );
    assert_eq!(
        err.matches("no memory for io_uring").count(),
        1,
        "said once: {err}"
    );
}
