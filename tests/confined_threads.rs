//! After set-up, vdens-fast's data-plane threads run with no capabilities, no_new_privs and a
//! seccomp filter (issue 17, item 8), on both engines, for port workers and for a hosted
//! switch's node; frames still cross, clients still join (the rest of the suite runs every
//! path under the filter).

mod common;
use common::*;

/// (thread name, NoNewPrivs, Seccomp, CapEff) of every thread of `pid`.
fn threads(pid: i32) -> Vec<(String, String, String, String)> {
    let mut v = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let st = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let field = |k: &str| {
            st.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("")
                .to_string()
        };
        v.push((
            field("Name:"),
            field("NoNewPrivs:"),
            field("Seccomp:"),
            field("CapEff:"),
        ));
    }
    v
}

fn confined(engine: &str) {
    let d = TempDir::new(&format!("confined-{engine}"));
    let sw = format!("switch://{}", d.join("sw").display());
    let p = format!("ptp://{}", d.join("p").display());
    let vde = format!("vde://{}", d.join("sw").display());
    // As root, like the peers: a ptp first opener as nobody could not send to a peer's socket
    // file that root made.
    let host = vdens_fast(
        Who::Root,
        &d,
        &["--engine", engine, "-m", &sw, &p, "--", "sh", "-s"],
    );
    let mut h = Node::start("host", host);
    let mut peer = ns_node("peer", Impl::Fast, &d, &[&p]);
    let mut client = ns_node("client", Impl::Fast, &d, &[&vde]);
    h.up("vde0", "10.47.0.1/24", None);
    h.up("vde1", "10.47.1.1/24", None);
    client.up("vde0", "10.47.0.2/24", None);
    peer.up("vde0", "10.47.1.2/24", None);
    client.ping("10.47.0.1", 2, None);
    peer.ping("10.47.1.1", 2, None);
    let all = threads(h.pid());
    // The main thread (vdens-fast) keeps what it needs to supervise the command.
    let data: Vec<_> = all
        .iter()
        .filter(|t| {
            ["vdens-uring", "vdens-poll", "vdens-node"]
                .iter()
                .any(|p| t.0.starts_with(p))
        })
        .collect();
    assert!(
        data.iter().any(|t| t.0.starts_with("vdens-node")) && data.len() >= 2,
        "{engine}: a port worker and a node: {all:?}"
    );
    // The io_uring restrictions (IORING_REGISTER_RESTRICTIONS, engine::uring::restrict) are
    // not visible from outside: /proc/PID/fdinfo of a ring shows no field for them, and a ring
    // fd taken with pidfd_getfd answers EEXIST (SINGLE_ISSUER) before the kernel looks at the
    // restrictions. The unit tests in restrict.rs show that a ring refuses what is not in the
    // list; here, no ring fell back to running unrestricted.
    for (n, e) in [
        ("host", h.stderr()),
        ("peer", peer.stderr()),
        ("client", client.stderr()),
    ] {
        assert!(
            !e.contains("cannot restrict"),
            "{engine}: {n}'s rings run unrestricted: {e}"
        );
    }
    for t in &data {
        assert_eq!(
            (t.1.as_str(), t.2.as_str(), t.3.as_str()),
            ("1", "2", "0000000000000000"),
            "{engine}: thread {} is not confined: {all:?}",
            t.0
        );
    }
}

#[test]
fn data_plane_threads_are_confined_uring() {
    confined("uring");
}

#[test]
fn data_plane_threads_are_confined_poll() {
    confined("poll");
}
