//! ptp:// (4.0.1 datagram) first opener killed and restarted at once, end to end (issue 17,
//! item 2): the restarted vdens-fast starts (a killed vdens-fast's socket lingers while the
//! kernel tears down its io_uring; the new end waits for it instead of finding "both ends
//! taken"), and the surviving second opener keeps running.

mod common;
use common::*;

fn kill(n: Node) {
    unsafe_kill(-n.pid(), libc::SIGKILL);
    assert!(wait_gone(n.pid(), 10), "{} did not die", n.name);
    drop(n);
}

#[test]
fn killed_first_opener_restarts_at_once() {
    for round in 0..3 {
        let d = TempDir::new("ptp-restart-ns");
        let v = format!("ptp://{}", d.join("p").display());
        let mut a = ns_node("first", Impl::Fast, &d, &[&v]);
        a.up("vde0", "10.45.0.1/24", None);
        let mut b = ns_node("second", Impl::Fast, &d, &[&v]);
        b.up("vde0", "10.45.0.2/24", None);
        b.ping("10.45.0.1", 1, None);
        kill(a);
        // Node::start fails the test if vdens-fast exits instead of starting its shell.
        let mut a = ns_node("first-again", Impl::Fast, &d, &[&v]);
        a.sh("ip link show vde0 >/dev/null", 5);
        let (code, _) = b.try_sh("true", 5);
        assert_eq!(code, Some(0), "round {round}: the survivor died: {}", b.stderr());
    }
}
