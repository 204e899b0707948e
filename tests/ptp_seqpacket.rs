//! ptp:// with the 2025 seqpacket protocol (`ptp://PATH[seqpacket]`) between vdens-fast
//! namespaces: the listener starts alone, a connector joins, traffic both ways; a second
//! connector is refused while the first keeps working; a killed connector is replaced and
//! traffic flows again; the listener leaving removes PATH, and its connector then listens
//! there itself (as master's connecting side does) for the next vdens-fast; a listener
//! SIGKILLed and started again is joined again; vdeplug-fast with a seqpacket end beside a
//! switch, and hosting a listener.

mod common;
use common::*;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

fn vnl(d: &TempDir) -> (String, std::path::PathBuf) {
    let p = d.join("p");
    (format!("ptp://{}[seqpacket]", p.display()), p)
}

fn is_socket(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// Kills a node's whole process group and waits for it.
fn kill(n: Node) {
    unsafe_kill(-n.pid(), libc::SIGKILL);
    assert!(wait_gone(n.pid(), 10), "{} did not die", n.name);
    drop(n);
}

#[test]
fn listener_and_connector_talk_and_a_second_connector_is_refused() {
    let d = TempDir::new("sp1");
    let (v, p) = vnl(&d);
    // The listener's command starts with no peer anywhere.
    let mut a = ns_node("listener", Impl::Fast, &d, &[&v]);
    assert!(is_socket(&p), "the listener did not create {}", p.display());
    a.up("vde0", "10.41.0.1/24", None);
    let mut b = ns_node("connector", Impl::Fast, &d, &[&v]);
    b.up("vde0", "10.41.0.2/24", None);
    b.ping("10.41.0.1", 3, None);
    a.ping("10.41.0.2", 3, None);
    tcp_transfer(&mut b, &mut a, "10.41.0.1", &d, 2 << 20);
    tcp_transfer(&mut a, &mut b, "10.41.0.2", &d, 2 << 20);

    // A second connector while the first is attached: one-line error, status 1.
    let o = vf(Who::Root, &d, &[&v, "true"]);
    assert_eq!(o.code, Some(1), "{o:#?}");
    let err = o.stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "{o:#?}");
    assert!(
        err.contains("reading the ptp ack: Transport endpoint is already connected (the listener already has its peer)"),
        "{o:#?}"
    );
    assert!(!err.contains("os error"), "{o:#?}");
    // The first pair keeps working.
    b.ping("10.41.0.1", 2, None);
    a.ping("10.41.0.2", 2, None);

    let o = b.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
    let o = a.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(!p.exists(), "the listener left {} behind", p.display());
}

#[test]
fn killed_connector_is_replaced_and_traffic_flows_again() {
    let d = TempDir::new("sp2");
    let (v, p) = vnl(&d);
    let mut a = ns_node("listener", Impl::Fast, &d, &[&v]);
    a.up("vde0", "10.42.0.1/24", None);
    let mut b = ns_node("connector", Impl::Fast, &d, &[&v]);
    b.up("vde0", "10.42.0.2/24", None);
    b.ping("10.42.0.1", 2, None);
    kill(b);
    // The listener keeps running without a peer, then takes the next one.
    let mut c = ns_node("connector2", Impl::Fast, &d, &[&v]);
    c.up("vde0", "10.42.0.3/24", None);
    c.ping("10.42.0.1", 3, None);
    a.ping("10.42.0.3", 3, None);
    // And once more, this time with a clean exit of the connector.
    c.finish(10).ok();
    let mut e = ns_node("connector3", Impl::Fast, &d, &[&v]);
    e.up("vde0", "10.42.0.4/24", None);
    e.ping("10.42.0.1", 2, None);
    a.ping("10.42.0.4", 2, None);
    e.finish(10).ok();
    let o = a.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(
        o.stderr
            .contains("the ptp peer hung up; waiting for the next one"),
        "{o:#?}"
    );
    assert!(!p.exists(), "the listener left {} behind", p.display());
}

#[test]
fn listener_leaves_path_removed_and_its_connector_listens_instead() {
    let d = TempDir::new("sp3");
    let (v, p) = vnl(&d);
    let mut a = ns_node("listener", Impl::Fast, &d, &[&v]);
    a.up("vde0", "10.43.0.1/24", None);
    // The connector on the poll engine: a ptp node runs the same whatever --engine says.
    let args = ["--engine", "poll", v.as_str(), "sh", "-s"];
    let mut b = Node::start("connector", vdens_fast(Who::Root, &d, &args));
    b.up("vde0", "10.43.0.2/24", None);
    b.ping("10.43.0.1", 2, None);
    let o = a.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
    // Master's connecting side, after its listener went away (PATH removed), binds and
    // listens on PATH itself.
    assert!(
        wait_path(&p, 10),
        "the connector did not take over {}",
        p.display()
    );
    assert!(is_socket(&p));
    let mut c = ns_node("newcomer", Impl::Fast, &d, &[&v]);
    c.up("vde0", "10.43.0.3/24", None);
    c.ping("10.43.0.2", 3, None);
    b.ping("10.43.0.3", 3, None);
    c.finish(10).ok();
    let o = b.finish(10);
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(
        o.stderr.contains("the ptp listener went away; now listening on"),
        "{o:#?}"
    );
    assert!(
        !p.exists(),
        "the connector-turned-listener left {} behind",
        p.display()
    );
}

#[test]
fn seqpacket_on_a_datagram_path_is_refused_and_plain_ptp_joins_a_seqpacket_listener() {
    let d = TempDir::new("sp4");
    let (v, p) = vnl(&d);
    // A 4.0.1 datagram end at PATH: [seqpacket] refuses to mix.
    let plain = format!("ptp://{}", p.display());
    let a = ns_node("datagram", Impl::Fast, &d, &[&plain]);
    let o = vf(Who::Root, &d, &[&v, "true"]);
    assert_eq!(o.code, Some(1), "{o:#?}");
    assert!(
        o.stderr
            .contains("is a 4.0.1 (datagram) ptp endpoint, but [seqpacket] was asked for"),
        "{o:#?}"
    );
    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{o:#?}");
    a.finish(10).ok();
    assert!(!p.exists());
    // A seqpacket listener is found by a plain ptp:// VNL too (what sits at PATH decides).
    let mut l = ns_node("listener", Impl::Fast, &d, &[&v]);
    l.up("vde0", "10.44.0.1/24", None);
    let mut c = ns_node("plain", Impl::Fast, &d, &[&plain]);
    c.up("vde0", "10.44.0.2/24", None);
    c.ping("10.44.0.1", 2, None);
    c.finish(10).ok();
    l.finish(10).ok();
    assert!(!p.exists());
}

/// vdeplug-fast with seqpacket ptp ends: beside its switch:// a connection to a vdens-fast
/// listener (run as a plain link: one node hosts one VNL), and a hosted `[seqpacket]` listener
/// cabled to that switch, joined by a third vdens-fast.
#[test]
fn vdeplug_fast_with_seqpacket_ends() {
    let d = TempDir::new("sp5");
    let (v, _) = vnl(&d);
    let sw = d.join("sw");
    let p2 = d.join("p2");
    let mut a = ns_node("listener", Impl::Fast, &d, &[&v]);
    a.up("vde0", "10.45.0.1/24", None);
    let plug = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vdeplug-fast"));
        c.args(args);
        c
    };
    let plain = format!("ptp://{}", d.join("p").display());
    let _sw = Daemon::start(
        "vdeplug-fast switch",
        plug(&[&format!("switch://{}", sw.display()), &plain]),
    );
    assert!(wait_path(&sw.join("ctl"), 10), "switch ctl did not appear");
    let _l = Daemon::start(
        "vdeplug-fast listener",
        plug(&[
            &format!("ptp://{}[seqpacket]", p2.display()),
            &format!("vde://{}", sw.display()),
        ]),
    );
    assert!(
        wait_path(&p2, 10),
        "the hosted listener did not create {}",
        p2.display()
    );
    let mut c = ns_node("via-p2", Impl::Fast, &d, &[&format!("ptp://{}", p2.display())]);
    c.up("vde0", "10.45.0.3/24", None);
    let mut b = ns_node("on-switch", Impl::Fast, &d, &[&format!("vde://{}", sw.display())]);
    b.up("vde0", "10.45.0.2/24", None);
    b.ping("10.45.0.1", 2, None);
    b.ping("10.45.0.3", 2, None);
    a.ping("10.45.0.3", 2, None);
    c.finish(10).ok();
    b.finish(10).ok();
    a.finish(10).ok();
}

/// The listener SIGKILLed and started again at once (issue 17): its connector may connect
/// to the dying socket (refused with ECONNRESET, or EOF, instead of an ack); it tries again
/// and joins whichever end holds PATH then, and traffic flows with the restarted end.
#[test]
fn killed_listener_restarted_is_joined_again() {
    for round in 0..5 {
        let d = TempDir::new("sp-kill");
        let (v, _p) = vnl(&d);
        let mut a = ns_node("listener", Impl::Fast, &d, &[&v]);
        a.up("vde0", "10.44.0.1/24", None);
        let mut b = ns_node("connector", Impl::Fast, &d, &[&v]);
        b.up("vde0", "10.44.0.2/24", None);
        b.ping("10.44.0.1", 1, None);
        kill(a);
        let mut c = ns_node("listener2", Impl::Fast, &d, &[&v]);
        c.up("vde0", "10.44.0.3/24", None);
        let (code, out) = b.try_sh("ping -n -q -c 1 -i 0.2 -w 10 10.44.0.3", 15);
        assert_eq!(
            code,
            Some(0),
            "round {round}: {out}\nconnector: {}\nlistener2: {}",
            b.stderr(),
            c.stderr()
        );
        c.ping("10.44.0.2", 1, None);
        assert!(
            !b.stderr().contains("stays down"),
            "round {round}: {}",
            b.stderr()
        );
    }
}

/// Both seqpacket roles on the engine `engine` asks for (io_uring by default): ping and a
/// TCP transfer each way, checked byte for byte.
fn seqpacket_ends_on(engine: &[&str], uring: bool, net: u8) {
    let d = TempDir::new("sp-eng");
    let (v, _p) = vnl(&d);
    let start = |name: &str| {
        let mut args = engine.to_vec();
        args.extend([v.as_str(), "sh", "-s"]);
        Node::start(name, vdens_fast(Who::Root, &d, &args))
    };
    let mut a = start("listener");
    a.up("vde0", &format!("10.{net}.0.1/24"), None);
    let mut b = start("connector");
    b.up("vde0", &format!("10.{net}.0.2/24"), None);
    let (ia, ib) = (format!("10.{net}.0.1"), format!("10.{net}.0.2"));
    b.ping(&ia, 3, None);
    a.ping(&ib, 3, None);
    tcp_transfer(&mut b, &mut a, &ia, &d, 2 << 20);
    tcp_transfer(&mut a, &mut b, &ib, &d, 2 << 20);
    for n in [&a, &b] {
        assert_driver(n, uring, "ptp node");
    }
}

#[test]
fn seqpacket_ends_run_on_io_uring_by_default() {
    seqpacket_ends_on(&[], true, 46);
}

#[test]
fn seqpacket_ends_run_on_epoll_with_engine_poll() {
    seqpacket_ends_on(&["--engine", "poll"], false, 47);
}
