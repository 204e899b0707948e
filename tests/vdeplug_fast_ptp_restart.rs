//! A `vdeplug-fast` cable whose one end is a 4.0.1 (datagram) `ptp://` second opener (bound at
//! PATH+, connected to PATH) reaches its first opener again after that one is SIGKILLed and
//! started again (issue 17, item 2, for cables: vdens-fast's ports already reconnect). The
//! restarted first opener is Debian's `vde_plug ptp://PATH` on a 2-byte-length stream; the
//! cable's other end is a datagram socket of the test's (the first opener of a second ptp
//! path). Both drivers of the node loop; AF_UNIX in temp dirs only. A cable with nothing to
//! send hears the restarted first opener too (beyond classic, which waits for its next send).

mod transport_common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport_common::*;

/// Whether a live datagram socket is bound at `p` (EPERM: live, connected to its own peer).
fn live(p: &Path) -> bool {
    match UnixDatagram::unbound().unwrap().connect(p) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// Sends `f` from `sock` to `to` every 20 ms until dropped (frames sent while the peer is away
/// are lost, as on the wire; the cable's first failed send after the restart is what makes it
/// connect again).
struct Repeat(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Repeat {
    fn start(sock: &UnixDatagram, to: &Path, f: Vec<u8>) -> Repeat {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, to, st) = (sock.try_clone().unwrap(), to.to_path_buf(), stop.clone());
        let h = std::thread::spawn(move || {
            let end = Instant::now() + 3 * TIMEOUT;
            while !st.load(Ordering::Relaxed) && Instant::now() < end {
                let _ = s.send_to(&f, &to);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Repeat(stop, Some(h))
    }
}

impl Drop for Repeat {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

/// The next frame on `sock` carrying `marker`, at most TIMEOUT.
fn expect_on(sock: &UnixDatagram, marker: &[u8]) -> Vec<u8> {
    let end = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 2048];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no frame with marker {marker:?} on the test socket"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            if contains(&buf[..n], marker) {
                return buf[..n].to_vec();
            }
        }
    }
}

/// The scene: Debian's vde_plug as the first opener of `d/p`; the test's datagram socket as
/// the first opener of `d/q` (the far end); the vdeplug-fast cable between (the second
/// opener of both), its stderr in the returned file. Returns p's VNL, the far socket, the
/// vde_plug, the cable and its log.
fn setup(d: &TempDir, engine: &str) -> (String, UnixDatagram, StreamPlug, Proc, std::path::PathBuf) {
    let (p, q) = (d.join("p"), d.join("q"));
    let (vp, vq) = (format!("ptp://{}", p.display()), format!("ptp://{}", q.display()));
    let far = UnixDatagram::bind(&q).unwrap();
    let plug = StreamPlug::start(&[&vp]);
    wait_for("vde_plug to bind p", || live(&p));
    let log = d.join("cable.err");
    let cable = Proc {
        child: Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"))
            .args(["--engine", engine, &vp, &vq])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        name: "vdeplug-fast".into(),
    };
    wait_for("the cable to bind p+ and q+", || {
        live(&d.join("p+")) && live(&d.join("q+"))
    });
    (vp, far, plug, cable, log)
}

fn cable_survives_first_opener_restart(engine: &str) {
    let d = TempDir::new("vf-ptp-restart");
    let p = d.join("p");
    let (vp, far, mut plug, _cable, log) = setup(&d, engine);
    let qplus = d.join("q+");
    let err = || std::fs::read_to_string(&log).unwrap_or_default();
    {
        let _r = Repeat::start(&far, &qplus, frame(1, b"before"));
        plug.expect(b"before");
    }
    let f = frame(2, b"back-before");
    plug.send(&f);
    assert_eq!(expect_on(&far, b"back-before"), f, "{}", err());

    // SIGKILL and reap: p stays, stale; the new vde_plug unlinks it and binds p anew.
    drop(plug);
    assert!(p.exists() && !live(&p));
    let mut plug = StreamPlug::start(&[&vp]);
    wait_for("the new vde_plug to bind p", || live(&p));
    {
        let _r = Repeat::start(&far, &qplus, frame(3, b"after"));
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plug.expect(b"after")));
        assert!(
            got.is_ok(),
            "--engine {engine}: nothing reached the restarted first opener; vdeplug-fast said: {}",
            err()
        );
    }
    let f = frame(4, b"back-after");
    plug.send(&f);
    assert_eq!(expect_on(&far, b"back-after"), f, "{}", err());
    assert!(
        err().contains("connected again"),
        "--engine {engine}: the reconnect is said: {}",
        err()
    );
}

#[test]
fn cable_reaches_a_restarted_classic_first_opener() {
    cable_survives_first_opener_restart("uring");
}

#[test]
fn cable_reaches_a_restarted_classic_first_opener_on_epoll() {
    cable_survives_first_opener_restart("poll");
}

/// After the restart only the first opener sends: the cable, which has nothing to send, must
/// still connect to it (vdeplug-fast watches PATH; classic vde_plug would stay connected to
/// the dead socket and the kernel would refuse the new one's frames with EPERM for ever).
fn cable_hears_a_restarted_first_opener_without_sending(engine: &str) {
    let d = TempDir::new("vf-ptp-quiet");
    let p = d.join("p");
    let (vp, far, plug, _cable, log) = setup(&d, engine);
    let err = || std::fs::read_to_string(&log).unwrap_or_default();
    drop(plug);
    let mut plug = StreamPlug::start(&[&vp]);
    wait_for("the new vde_plug to bind p", || live(&p));
    // Nothing is sent into the cable from the far side from here on.
    let f = frame(5, b"only-from-first");
    let end = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 2048];
    far.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    loop {
        assert!(
            Instant::now() < end,
            "--engine {engine}: the restarted first opener was never heard; vdeplug-fast said: {}",
            err()
        );
        plug.send(&f);
        if let Ok(n) = far.recv(&mut buf) {
            if contains(&buf[..n], b"only-from-first") {
                assert_eq!(&buf[..n], &f[..]);
                break;
            }
        }
    }
    assert!(err().contains("connected again"), "{}", err());
}

#[test]
fn quiet_cable_hears_a_restarted_classic_first_opener() {
    cable_hears_a_restarted_first_opener_without_sending("uring");
}

#[test]
fn quiet_cable_hears_a_restarted_classic_first_opener_on_epoll() {
    cable_hears_a_restarted_first_opener_without_sending("poll");
}
