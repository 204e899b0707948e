//! Socket paths that are not UTF-8 (here with bytes 0xff, 0xfe), which classic vdens takes as
//! the C bytes they are: a switch:// hosted by vdens-fast in such a directory, a vde:// client
//! of a classic switch there, and a ptp:// cable there, each with a classic peer, as classic
//! vdens does the same.

mod common;
use common::*;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `d/NAME\xff\xfe`.
fn odd_path(d: &TempDir, name: &str) -> PathBuf {
    let mut b = d.path().as_os_str().as_bytes().to_vec();
    b.push(b'/');
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\xff\xfe");
    PathBuf::from(OsString::from_vec(b))
}

fn vnl(scheme: &str, p: &Path) -> OsString {
    let mut v = OsString::from(scheme);
    v.push(p.as_os_str());
    v
}

/// A namespace of `imp` wired to `v` (bytes), running `sh -s`.
fn node(name: &str, imp: Impl, d: &TempDir, v: &OsStr) -> Node {
    let cmd = match imp {
        Impl::Fast => {
            let mut c = vdens_fast(Who::Root, d, &[]);
            c.arg(v).args(["sh", "-s"]);
            c
        }
        Impl::Classic => {
            let mut c = Command::new("vdens");
            c.arg(v)
                .args(["sh", "-s"])
                .current_dir(d.path())
                .env("SHELL", "/bin/sh");
            c
        }
    };
    Node::start(name, cmd)
}

fn pair(a: &mut Node, b: &mut Node, net: u8) {
    a.up("vde0", &format!("10.79.{net}.1/24"), None);
    b.up("vde0", &format!("10.79.{net}.2/24"), None);
    a.ping(&format!("10.79.{net}.2"), 2, None);
    b.ping(&format!("10.79.{net}.1"), 2, None);
}

#[test]
fn hosted_switch_in_a_directory_that_is_not_utf8() {
    let d = TempDir::new("u8sw");
    let dir = odd_path(&d, "sw");
    for (i, host) in [Impl::Fast, Impl::Classic].into_iter().enumerate() {
        let mut h = node("host", host, &d, &vnl("switch://", &dir));
        assert!(wait_path(&dir.join("ctl"), 10), "{host:?}: no ctl in {dir:?}");
        let mut c = node("client", Impl::Classic, &d, &vnl("vde://", &dir));
        pair(&mut h, &mut c, 1 + i as u8);
        drop(c);
        h.finish(10);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn vde_client_of_a_switch_whose_path_is_not_utf8() {
    let d = TempDir::new("u8vde");
    let dir = odd_path(&d, "sw");
    let _sw = Daemon::start("vde_switch", {
        let mut c = Command::new("vde_switch");
        c.arg("-s").arg(&dir);
        c
    });
    assert!(wait_path(&dir.join("ctl"), 10), "vde_switch made no ctl");
    for (i, imp) in [Impl::Fast, Impl::Classic].into_iter().enumerate() {
        let mut a = node("a", imp, &d, &vnl("vde://", &dir));
        // A plain path is a vde:// one.
        let mut b = node("b", Impl::Classic, &d, dir.as_os_str());
        pair(&mut a, &mut b, 3 + i as u8);
    }
}

#[test]
fn ptp_cable_whose_path_is_not_utf8() {
    let d = TempDir::new("u8ptp");
    for (i, (first, second)) in [
        (Impl::Fast, Impl::Classic),
        (Impl::Classic, Impl::Fast),
        (Impl::Classic, Impl::Classic),
    ]
    .into_iter()
    .enumerate()
    {
        let p = odd_path(&d, &format!("p{i}"));
        let mut a = node("first", first, &d, &vnl("ptp://", &p));
        let mut b = node("second", second, &d, &vnl("ptp://", &p));
        pair(&mut a, &mut b, 5 + i as u8);
    }
}
