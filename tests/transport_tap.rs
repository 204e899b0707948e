//! tap:// inside a network namespace this test creates for one thread (unshare CLONE_NEWNET):
//! the host's network namespace is never touched.

use nix::net::if_::if_nametoindex;
use nix::sched::{unshare, CloneFlags};
use vdens_fast::transport::{self, Framing};

#[test]
fn tap_in_private_netns() {
    let name = format!("vft{}", std::process::id() % 100_000);
    let n2 = name.clone();
    let r = std::thread::spawn(move || -> Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        let link = transport::open(&format!("tap://{n2}")).map_err(|e| e.to_string())?;
        assert_eq!(link.framing, Framing::Datagram);
        assert!(link.rx.is_some());
        if_nametoindex(n2.as_str()).map_err(|e| format!("tap not created: {e}"))?;
        // Attached already: a second open is refused with a clear message.
        let e = transport::open(&format!("tap://{n2}")).unwrap_err().to_string();
        assert!(e.contains("is already attached to another process"), "{e}");
        // The kernel picks a name when none is given.
        let any = transport::open("tap://").map_err(|e| e.to_string())?;
        drop(any);
        drop(link);
        Ok(())
    })
    .join()
    .unwrap();
    r.unwrap();
    // The host namespace never saw it.
    assert!(if_nametoindex(name.as_str()).is_err());
    let e = transport::open("tap://a-name-much-too-long")
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a valid interface name"), "{e}");
}
