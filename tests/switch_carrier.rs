//! When the switch a `vde://` interface is joined to goes away, the interface loses its carrier
//! (issue 17, item 7): the namespace's routing and the user see the link down (`ip link`:
//! NO-CARRIER) instead of a healthy-looking interface whose frames go nowhere. Before, the
//! interface kept LOWER_UP.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_vde_interface_loses_carrier_when_its_switch_goes() {
    let d = TempDir::new("carrier");
    let sw = d.join("sw");
    let host = Daemon::start("vde_plug switch", {
        let mut c = Command::new("vde_plug");
        c.arg("null://").arg(format!("switch://{}", sw.display()));
        c
    });
    assert!(wait_path(&sw.join("ctl"), 10), "the classic switch did not start");
    let vnl = format!("vde://{}", sw.display());
    let mut n = ns_node("client", Impl::Fast, &d, &[&vnl]);
    n.sh("ip link set vde0 up", 5);
    let before = n.sh("ip -o link show vde0", 5);
    assert!(before.contains("LOWER_UP"), "carrier while joined: {before}");
    drop(host);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let now = n.sh("ip -o link show vde0", 5);
        if now.contains("NO-CARRIER") && !now.contains("LOWER_UP") {
            break;
        }
        assert!(
            Instant::now() < end,
            "still a carrier 10 s after the switch went: {now}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        n.stderr().contains("the switch closed the control connection"),
        "{}",
        n.stderr()
    );
}
