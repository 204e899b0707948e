//! Every malformed VNL of the parser's table, and VNLs that name no network (a directory that is
//! not a switch, a ptp path in a missing directory, a path longer than sun_path), end in exit
//! status 1 and one line on stderr, before any namespace exists and before the command runs.

mod common;
use common::*;
use std::process::Command;

const RAN: &str = "echo COMMAND-RAN";

/// Runs vdens-fast with `args` inside a user namespace of the test where creating a further user
/// namespace is refused (user.max_user_namespaces=0): had vdens-fast got as far as unsharing, it
/// would report that refusal instead of the VNL's error.
fn before_any_namespace(d: &TempDir, args: &[&str]) -> Out {
    let mut c = Command::new("unshare");
    c.args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"")
        .arg("sh")
        .arg(binary())
        .args(args)
        .current_dir(d.path());
    run(c, 20)
}

fn check(o: &Out, what: &str, needle: &str) {
    assert_eq!(o.code, Some(1), "{what}: {o:#?}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line expected: {o:#?}");
    assert!(lines[0].starts_with("vdens-fast: "), "{what}: {o:#?}");
    assert!(
        lines[0].contains(needle),
        "{what}: {needle:?} missing in {:?}",
        lines[0]
    );
    assert!(
        !lines[0].contains("user namespace"),
        "{what}: got as far as the namespace: {:?}",
        lines[0]
    );
    assert!(!o.stdout.contains("COMMAND-RAN"), "{what}: the command ran");
}

#[test]
fn malformed_vnls_of_the_parser_table() {
    let d = TempDir::new("badvnl");
    let long = format!("ptp:///tmp/{}", "x".repeat(110));
    let longtap = format!("tap://{}", "t".repeat(16));
    let mut cases: Vec<(&str, &str)> = vdens_fast::vnl::MALFORMED.to_vec();
    cases.push((&long, "does not fit a socket address"));
    cases.push((&longtap, "is not a valid interface name"));
    for (vnl, want) in cases {
        let o = before_any_namespace(&d, &[vnl, "sh", "-c", RAN]);
        check(&o, vnl, want);
        // The same in --multi, behind a good VNL.
        let o = before_any_namespace(&d, &["-m", "null://", vnl, "--", "sh", "-c", RAN]);
        check(&o, vnl, want);
    }
}

#[test]
fn vnls_that_name_no_network() {
    let d = TempDir::new("nonet");
    let not_a_switch = d.join("just-a-dir");
    std::fs::create_dir(&not_a_switch).unwrap();
    let sw = format!("vde://{}", not_a_switch.display());
    let missing = format!("ptp://{}", d.join("missing/dir/p").display());
    let long_dir = d.join(&"y".repeat(110));
    std::fs::create_dir(&long_dir).unwrap();
    let long_vde = format!("vde://{}", long_dir.display());
    for (vnl, needle) in [
        (sw.as_str(), sw.as_str()),
        (missing.as_str(), missing.as_str()),
        (long_vde.as_str(), "socket address"),
    ] {
        let o = before_any_namespace(&d, &[vnl, "sh", "-c", RAN]);
        check(&o, vnl, needle);
    }
    // Nothing was left in the directory that is not a switch.
    assert_eq!(std::fs::read_dir(&not_a_switch).unwrap().count(), 0);
}
