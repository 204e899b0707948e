//! Every diagnostic that can be provoked here ends in exit status 1 and one line on stderr that
//! names the cause and the fix, before the command runs.

mod common;
use common::*;
use std::process::Command;

/// Runs `sh -c SCRIPT` as root in a mount namespace of its own (so the test can hide or replace
/// files such as /dev/net/tun without touching the host), with $VF set to the binary.
fn in_private_mounts(script: &str, d: &TempDir) -> Out {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("VF", binary())
        .env("SHELL", "/bin/sh")
        .current_dir(d.path());
    run(c, 20)
}

fn assert_diag(o: &Out, needles: &[&str]) {
    assert_eq!(o.code, Some(1), "{o:#?}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {o:#?}");
    assert!(lines[0].starts_with("vdens-fast: "), "{o:#?}");
    for n in needles {
        assert!(lines[0].contains(n), "missing {n:?} in {:?}", lines[0]);
    }
    assert!(!lines[0].contains("os error"), "bare errno text: {:?}", lines[0]);
    assert!(!o.stdout.contains("COMMAND-RAN"), "the command ran: {o:#?}");
}

const RAN: &str = "echo COMMAND-RAN";

#[test]
fn tun_missing() {
    let d = TempDir::new("tunmissing");
    let o = in_private_mounts(
        &format!("mount -t tmpfs none /dev/net && exec \"$VF\" null:// sh -c '{RAN}'"),
        &d,
    );
    assert_diag(&o, &["/dev/net/tun", "No such file", "modprobe tun"]);
}

#[test]
fn tun_mode_0600_for_unprivileged_user() {
    let d = TempDir::new("tun0600");
    let o = in_private_mounts(
        &format!(
            "mount -t tmpfs none /dev/net && mknod /dev/net/tun c 10 200 && chmod 0600 /dev/net/tun && \
             exec setpriv --reuid 65534 --regid 65534 --clear-groups \"$VF\" null:// sh -c '{RAN}'"
        ),
        &d,
    );
    assert_diag(
        &o,
        &[
            "/dev/net/tun",
            "Permission denied",
            "mode 0600",
            "chmod 0666 /dev/net/tun",
        ],
    );
}

#[test]
fn user_namespaces_disabled() {
    // user.max_user_namespaces is per user namespace: setting it to 0 inside a namespace of the
    // test disables nested ones there only.
    let d = TempDir::new("nouserns");
    let mut c = Command::new("unshare");
    c.args(["--user", "--map-root-user", "sh", "-c"])
        .arg(format!(
            "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$VF\" - sh -c '{RAN}'"
        ))
        .env("VF", binary())
        .current_dir(d.path());
    let o = run(c, 20);
    assert_diag(
        &o,
        &[
            "cannot create user namespace",
            "user.max_user_namespaces=0",
            "sysctl -w",
        ],
    );
}

#[test]
fn uid_not_mapped() {
    let d = TempDir::new("unmapped");
    let mut c = Command::new("unshare");
    c.args(["--user", "sh", "-c"])
        .arg(format!("exec \"$VF\" - sh -c '{RAN}'"))
        .env("VF", binary())
        .current_dir(d.path());
    let o = run(c, 20);
    assert_diag(&o, &["cannot create user namespace", "not mapped"]);
}

#[test]
fn uid_map_refused() {
    // vdens ignores a failed uid_map write; vdens-fast stops and says why.
    let d = TempDir::new("mapro");
    let o = in_private_mounts(
        &format!("mount -o remount,bind,ro /proc && exec \"$VF\" - sh -c '{RAN}'"),
        &d,
    );
    assert_diag(
        &o,
        &["cannot write /proc/self/uid_map", "Read-only", "writable /proc"],
    );
}

#[test]
fn bad_options_and_arguments() {
    let d = TempDir::new("badargs");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["-r", "/nonexistent/resolv.conf", "-", "sh", "-c", RAN],
            &["-r /nonexistent/resolv.conf", "No such file"],
        ),
        (&["-x", "-", "sh", "-c", RAN], &["unknown option -x", "--help"]),
        (
            &["--frobnicate", "-", "sh", "-c", RAN],
            &["unknown option --frobnicate"],
        ),
        (
            &["bogus://x", "sh", "-c", RAN],
            &["bogus://x", "unknown VNL scheme 'bogus'"],
        ),
        (
            &["-i", "averyverylongpfx", "null://", "sh", "-c", RAN],
            &["longer than 15 characters"],
        ),
        (
            &[
                "-i",
                "abcdefghijklmn",
                "-m",
                "null://",
                "null://",
                "null://",
                "null://",
                "null://",
                "null://",
                "null://",
                "null://",
                "null://",
                "null://",
                "null://",
                "--",
                "sh",
                "-c",
                RAN,
            ],
            &["\"abcdefghijklmn10\"", "longer than 15 characters"],
        ),
        (&["--workers", "0", "-", "sh", "-c", RAN], &["--workers 0"]),
        (&["--cpus", "x", "-", "sh", "-c", RAN], &["--cpus"]),
        (
            &["-H", &"h".repeat(65), "-", "sh", "-c", RAN],
            &["-H", "at most 64"],
        ),
    ];
    for who in BOTH {
        for (args, needles) in cases {
            let o = vf(who, &d, args);
            assert_diag(&o, needles);
        }
    }
}
