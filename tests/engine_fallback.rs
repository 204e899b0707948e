//! io_uring made unavailable (a seccomp filter makes io_uring_setup fail with ENOSYS or EPERM,
//! in a re-executed copy of this test binary): the engine falls back to poll by itself, says
//! so once on stderr, and carries traffic; `--engine uring` then fails with a clear message.
//! Forcing poll (`EngineChoice::Poll`) is covered by every suite in tests/engine.rs.

mod enginekit;
use enginekit as common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vdens_fast::cli::EngineChoice;
use vdens_fast::engine::{Engine, EngineKind, LINK_TO_TAP, TAP_TO_LINK};

const CHILD_ENV: &str = "VDENS_ENGINE_TEST_DENY_URING";
const TEST: &str = "io_uring_unavailable_falls_back_to_poll";
const FRAMES: u32 = 1000;

/// In the re-executed child: deny io_uring, then use the engine.
fn child(errno: i32) {
    vdens_fast::sys::deny_io_uring_setup(errno).expect("install the seccomp filter");
    let (l, _w, _r, _t) = link(LinkKind::Seqpacket);
    let (tap, _tp) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let port = vdens_fast::engine::Port {
        name: "vde0".into(),
        tap,
        link: l,
        offload: vdens_fast::engine::TapOffload::NONE,
    };
    let e = Engine::start(opts(EngineChoice::Uring), vec![port])
        .err()
        .expect("--engine uring must fail without io_uring");
    eprintln!("forced uring: {e}");

    let mut rig = rig(EngineChoice::Auto, LinkKind::Seqpacket);
    let engine = rig.engine.take().unwrap();
    assert_eq!(engine.kind(), EngineKind::Poll);
    let mut buf = vec![0u8; 2000];
    for seq in 0..FRAMES {
        let len = 60 + seq as usize;
        make_frame(&mut buf, len, seq, 1);
        rig.tap_w.send(&buf[..len]);
        let n = rig.link_r.recv(&mut buf, STEP).expect("tap->link frame");
        check_frame(&buf[..n], len, seq, 1, "tap->link");
        make_frame(&mut buf, len, seq, 2);
        rig.link_w.send(&buf[..len]);
        let n = rig.tap_r.recv(&mut buf, STEP).expect("link->tap frame");
        check_frame(&buf[..n], len, seq, 2, "link->tap");
    }
    let s = engine.stop();
    assert_eq!(s[0].dirs[TAP_TO_LINK].frames, FRAMES as u64);
    assert_eq!(s[0].dirs[LINK_TO_TAP].frames, FRAMES as u64);
    eprintln!("child carried {FRAMES} frames each way");
}

fn run_child(errno: i32) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new(exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, errno.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("re-execute the test binary");
    let mut err = c.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("child (errno {errno}) did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap();
    assert!(
        status.success(),
        "child (errno {errno}) failed: {status}\n{stderr}"
    );
    stderr
}

#[test]
fn io_uring_unavailable_falls_back_to_poll() {
    if let Ok(v) = std::env::var(CHILD_ENV) {
        child(v.parse().unwrap());
        return;
    }
    for (errno, text) in [
        (libc::ENOSYS, "Function not implemented"),
        (libc::EPERM, "Operation not permitted"),
    ] {
        let err = run_child(errno);
        let notes: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("io_uring unavailable"))
            .collect();
        assert_eq!(notes.len(), 1, "one fallback line expected:\n{err}");
        assert_eq!(
            notes[0],
            format!("vdens-fast: io_uring unavailable (io_uring_setup: {text}); using the poll engine"),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "forced uring: cannot use io_uring: io_uring_setup: {text} (try --engine poll)"
            )),
            "{err}"
        );
        assert!(err.contains("child carried"), "{err}");
    }
}
