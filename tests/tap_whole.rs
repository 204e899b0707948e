//! A `tap://` link between two taps with offloads: TCP super-frames cross whole (nothing cut,
//! nothing coalesced), byte-exact both ways, on both engines; `--no-offload` moves standard
//! frames. The host side is a network namespace the test creates.

mod common;
use common::*;

/// The statistics line of port `name`: (its "offload" mode, the super-frames sent each way).
fn port_stats(json: &str, name: &str) -> (String, u64, u64) {
    let at = json
        .find(&format!("\"name\":\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    let p = &json[at..];
    let field = |s: &str, key: &str| -> String {
        let i = s
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("no {key} in {s}"))
            + key.len()
            + 3;
        s[i..]
            .chars()
            .take_while(|c| *c != ',' && *c != '}')
            .collect::<String>()
            .trim_matches('"')
            .to_string()
    };
    let t2l = &p[p.find("\"tap_to_link\"").expect("tap_to_link")..];
    let l2t = &p[p.find("\"link_to_tap\"").expect("link_to_tap")..];
    (
        field(p, "offload"),
        field(t2l, "super_frames").parse().unwrap(),
        field(l2t, "super_frames").parse().unwrap(),
    )
}

fn run(engine: &str, offload: bool) {
    let tag = format!("tw{}{}", &engine[..1], offload as u8);
    let d = TempDir::new(&tag);
    let host = NetNs::new(&tag);
    let tap = format!("{tag}t");
    let made = host.sh(&format!("ip link set lo up && ip tuntap add {tap} mode tap"), 10);
    assert_eq!(made.code, Some(0), "{made:?}");
    let stats = d.join("stats.json");
    let mut ns = Node::start("ns", {
        let mut c = host.cmd(binary().to_str().unwrap());
        c.args(["--engine", engine, "--stats", stats.to_str().unwrap()]);
        if !offload {
            c.arg("--no-offload");
        }
        c.args([&format!("tap://{tap}"), "--", "sh", "-s"])
            .env("SHELL", "/bin/sh");
        c
    });
    let mut h = Node::start("host", {
        let mut c = host.cmd("sh");
        c.arg("-s");
        c
    });
    ns.up("vde0", "10.16.0.1/24", None);
    h.sh(
        &format!("ip addr add 10.16.0.254/24 dev {tap} && ip link set {tap} up"),
        5,
    );
    ns.ping("10.16.0.254", 2, None);
    tcp_transfer(&mut h, &mut ns, "10.16.0.1", &d, 8 << 20);
    tcp_transfer(&mut ns, &mut h, "10.16.0.254", &d, 8 << 20);
    let json = fresh_stats(&mut ns, &stats, "vde0");
    let (mode, out, inn) = port_stats(&json, "vde0");
    if offload {
        assert_eq!(mode, "whole", "{json}");
        assert!(out > 0 && inn > 0, "super-frames each way: {json}");
    } else {
        assert_eq!(mode, "none", "{json}");
        assert_eq!((out, inn), (0, 0), "{json}");
    }
}

#[test]
fn tap_links_pass_super_frames_whole_on_io_uring() {
    run("uring", true);
}

#[test]
fn tap_links_pass_super_frames_whole_on_epoll() {
    run("poll", true);
}

#[test]
fn tap_links_without_offload_move_standard_frames() {
    run("uring", false);
}
