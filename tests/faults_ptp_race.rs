//! Both ends of a `ptp://` link started at the same instant (issue 17, item 1): both may find
//! PATH absent and race to bind it; the loser must become the second opener, as vdeplug4 4.0.1
//! does, so that every attempt links. Each case starts the two ends at a barrier, in a loop,
//! and checks that frames cross; all AF_UNIX in temp dirs, or namespaces the test creates.

mod transport_common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use transport_common::*;
use vdens_fast::transport::{self, Link};

/// Leaves a stale socket file at `p` (as a killed end does), once no forked child of another
/// test thread holds the socket any more.
fn make_stale(p: &std::path::Path) {
    drop(std::os::unix::net::UnixDatagram::bind(p).unwrap());
    let end = Instant::now() + TIMEOUT;
    while std::os::unix::net::UnixDatagram::unbound()
        .unwrap()
        .connect(p)
        .is_ok()
    {
        assert!(Instant::now() < end, "{} stays live", p.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Opens `vnl` from two threads released together; both links, or the first error.
fn open_pair(vnl: &str) -> (Result<Link, String>, Result<Link, String>) {
    let b = Arc::new(Barrier::new(2));
    let t = {
        let (b, v) = (b.clone(), vnl.to_string());
        std::thread::spawn(move || {
            b.wait();
            transport::open(&v).map_err(|e| e.to_string())
        })
    };
    b.wait();
    let mine = transport::open(vnl).map_err(|e| e.to_string());
    (mine, t.join().unwrap())
}

/// Library level: 100 simultaneous opens, each pair exchanges a frame each way. A third of
/// the rounds find a stale PATH left by a killed run, another third stale PATH and PATH+.
#[test]
fn simultaneous_opens_always_link() {
    let end = Instant::now() + Duration::from_secs(60);
    for i in 0..100 {
        assert!(Instant::now() < end, "100 rounds took over 60 s");
        let dir = TempDir::new("race-lib");
        let vnl = format!("ptp://{}", dir.join("link").display());
        if i % 3 >= 1 {
            make_stale(&dir.join("link"));
        }
        if i % 3 == 2 {
            make_stale(&dir.join("link+"));
        }
        let (a, b) = open_pair(&vnl);
        let a = a.unwrap_or_else(|e| panic!("round {i}: {e}"));
        let b = b.unwrap_or_else(|e| panic!("round {i}: {e}"));
        let fa = frame(1, format!("a-to-b-{i}").as_bytes());
        let fb = frame(2, format!("b-to-a-{i}").as_bytes());
        link_send(&a, &fa);
        assert_eq!(link_expect(&b, format!("a-to-b-{i}").as_bytes()), fa);
        link_send(&b, &fb);
        assert_eq!(link_expect(&a, format!("b-to-a-{i}").as_bytes()), fb);
    }
}

/// Starts a command at the barrier; its exit status within `secs`, or None (killed).
fn run_at(b: Arc<Barrier>, mut c: Command, secs: u64) -> std::thread::JoinHandle<(Option<i32>, String)> {
    std::thread::spawn(move || {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        b.wait();
        let child = c.spawn().expect("spawn");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(secs)) {
            Ok(Ok(o)) => (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned()),
            _ => {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
                (None, "timed out".into())
            }
        }
    })
}

/// A namespace end: brings vde0 up with `addr`, then either pings `peer` (and touches `done`)
/// or waits for `done` to appear.
fn ns_end(prog: &str, vnl: &str, addr: &str, peer: Option<&str>, done: &std::path::Path) -> Command {
    let up = format!("ip link set lo up && ip addr add {addr}/24 dev vde0 && ip link set vde0 up");
    let script = match peer {
        // The ping's status goes to `done` itself: classic vdens exits 0 whatever its
        // command returned.
        Some(p) => format!(
            "{up} && ping -n -q -c 1 -i 0.2 -w 8 {p} >/dev/null; r=$?; echo $r >{d}.tmp; mv {d}.tmp {d}; exit $r",
            d = done.display()
        ),
        None => format!(
            "{up} && i=0; while [ ! -e {} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done",
            done.display()
        ),
    };
    let mut c = Command::new(prog);
    c.arg(vnl).args(["sh", "-c", &script]).env("SHELL", "/bin/sh");
    c
}

fn namespace_rounds(rounds: usize, second: &str, opt: &str) {
    let fast = env!("CARGO_BIN_EXE_vdens-fast");
    let end = Instant::now() + Duration::from_secs(150);
    for i in 0..rounds {
        assert!(Instant::now() < end, "{rounds} rounds took over 150 s");
        let dir = TempDir::new("race-ns");
        let vnl = format!("ptp://{}{opt}", dir.join("link").display());
        let done = dir.join("done");
        let b = Arc::new(Barrier::new(2));
        // Alternate which one pings, so either may be first or second opener.
        let (pa, pb) = if i % 2 == 0 {
            (Some("10.9.0.2"), None)
        } else {
            (None, Some("10.9.0.1"))
        };
        // Classic vdens may never exit once its command has ended (it loses a SIGCHLD that
        // arrives while it is outside ppoll, vdens.c plug2tap): it gets less time, and only
        // the ping's result and vdens-fast's status count for it.
        let classic = !second.ends_with("vdens-fast");
        let tb_secs = if classic { 12 } else { 20 };
        let ta = run_at(b.clone(), ns_end(fast, &vnl, "10.9.0.1", pa, &done), 20);
        let tb = run_at(b, ns_end(second, &vnl, "10.9.0.2", pb, &done), tb_secs);
        let (ra, ea) = ta.join().unwrap();
        let (rb, eb) = tb.join().unwrap();
        let ping = std::fs::read_to_string(&done).unwrap_or_default();
        assert!(
            ping.trim() == "0" && ra == Some(0) && (classic || rb == Some(0)),
            "round {i} (vdens-fast + {second}): ping status {ping:?}, exit statuses {ra:?} / {rb:?}; stderr: {ea} / {eb}"
        );
    }
}

/// vdens-fast at both ends, started together, 30 times: every round pings across.
#[test]
fn simultaneous_vdens_fast_pair_always_links() {
    namespace_rounds(30, env!("CARGO_BIN_EXE_vdens-fast"), "");
}

/// The same with vdens-fast's seqpacket ends (`[seqpacket]`): one listens, the other connects.
#[test]
fn simultaneous_seqpacket_pair_always_links() {
    namespace_rounds(20, env!("CARGO_BIN_EXE_vdens-fast"), "[seqpacket]");
}

/// vdens-fast and classic vdens started together, 30 times: every round pings across.
#[test]
fn simultaneous_vdens_fast_and_classic_always_link() {
    namespace_rounds(30, "vdens", "");
}

/// A plug (vde_plug or vdeplug-fast) in stream mode: frames on its stdin/stdout.
struct Plug {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Plug {
    fn start(prog: &str, vnl: &str) -> Plug {
        use std::io::Read;
        let mut child = Command::new(prog)
            .arg(vnl)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a plug");
        let stdin = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut dec = StreamDecoder::default();
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for f in dec.push(&buf[..n]) {
                    if tx.send(f).is_err() {
                        return;
                    }
                }
            }
        });
        Plug { child, stdin, rx }
    }

    /// Sends `marker` until `to` sees it (frames sent before both ends are up may be lost).
    fn reaches(&mut self, to: &Plug, marker: &str, what: &str) {
        use std::io::Write;
        let f = frame(3, marker.as_bytes());
        let end = Instant::now() + TIMEOUT;
        loop {
            assert!(Instant::now() < end, "{what}: {marker} never crossed");
            let _ = self.stdin.write_all(&encode_stream(&f));
            let _ = self.stdin.flush();
            if let Ok(g) = to.rx.recv_timeout(Duration::from_millis(100)) {
                if contains(&g, marker.as_bytes()) {
                    return;
                }
            }
        }
    }
}

impl Drop for Plug {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// vdeplug-fast against vde_plug (stream mode), started together, 50 times (every other
/// round finding stale PATH and PATH+ left by a killed pair): frames cross.
#[test]
fn simultaneous_vdeplug_fast_and_vde_plug_always_link() {
    let end = Instant::now() + Duration::from_secs(120);
    for i in 0..50 {
        assert!(Instant::now() < end, "50 rounds took over 120 s");
        let dir = TempDir::new("race-plug");
        let vnl = format!("ptp://{}", dir.join("link").display());
        if i % 2 == 1 {
            make_stale(&dir.join("link"));
            make_stale(&dir.join("link+"));
        }
        let b = Arc::new(Barrier::new(2));
        let t = {
            let (b, v) = (b.clone(), vnl.clone());
            std::thread::spawn(move || {
                b.wait();
                Plug::start(env!("CARGO_BIN_EXE_vdeplug-fast"), &v)
            })
        };
        b.wait();
        let mut classic = Plug::start("vde_plug", &vnl);
        let mut fast = t.join().unwrap();
        let what = format!("round {i}");
        fast.reaches(&classic, &format!("fast-to-classic-{i}"), &what);
        classic.reaches(&fast, &format!("classic-to-fast-{i}"), &what);
    }
}
