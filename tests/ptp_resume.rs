//! ptp:// (4.0.1 datagram protocol): when the first opener is killed and started again, a
//! vdens-fast second opener carries traffic again by itself, as classic vdens does (it connects
//! to the new socket at PATH on the first send that fails), on both engines, whether the new
//! first opener is vdens-fast or classic vdens. Before, the survivor never resumed: it only
//! counted send errors (issue 17, item 2).

mod common;
use common::*;

fn kill(n: Node) {
    unsafe_kill(-n.pid(), libc::SIGKILL);
    assert!(wait_gone(n.pid(), 10), "{} did not die", n.name);
    drop(n);
}

fn second_opener(d: &TempDir, engine: &str, vnl: &str) -> Node {
    let c = vdens_fast(Who::Root, d, &["--engine", engine, vnl, "sh", "-s"]);
    Node::start(&format!("second ({engine})"), c)
}

fn survivor_resumes(engine: &str, restarted: Impl) {
    let d = TempDir::new(&format!("ptp-resume-{engine}"));
    let v = format!("ptp://{}", d.join("p").display());
    let mut a = ns_node("first", Impl::Fast, &d, &[&v]);
    a.up("vde0", "10.46.0.1/24", None);
    let mut b = second_opener(&d, engine, &v);
    b.up("vde0", "10.46.0.2/24", None);
    b.ping("10.46.0.1", 2, None);
    kill(a);
    if restarted == Impl::Classic {
        // Classic vdens cannot take over a stale PATH (it says "Address already in use"):
        // the killed end's socket file goes first, as a lab script's clean-up would do.
        let _ = std::fs::remove_file(d.join("p"));
    }
    let mut a = ns_node("first again", restarted, &d, &[&v]);
    a.up("vde0", "10.46.0.1/24", None);
    // ping -w 10 from the new end (its ARP request is new; the survivor's neighbour entry
    // still has the old end's MAC): the survivor has 10 s to find the new first opener.
    let (code, out) = a.try_sh("ping -n -q -c 2 -i 0.2 -w 10 10.46.0.2", 15);
    assert_eq!(
        code,
        Some(0),
        "{engine} survivor, {restarted:?} first opener restarted: no traffic again: {out}; survivor: {}; first: {}",
        b.stderr(),
        a.stderr()
    );
}

#[test]
fn uring_survivor_resumes_with_a_restarted_vdens_fast() {
    survivor_resumes("uring", Impl::Fast);
}

#[test]
fn poll_survivor_resumes_with_a_restarted_vdens_fast() {
    survivor_resumes("poll", Impl::Fast);
}

#[test]
fn uring_survivor_resumes_with_a_restarted_classic_vdens() {
    survivor_resumes("uring", Impl::Classic);
}
