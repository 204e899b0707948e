//! Parity with Debian's vdens 0.2: the same argument vectors select the same command, the same
//! interfaces and the same options (resolv.conf, capabilities, mount namespace) in both.

mod common;
use common::*;
use std::process::Command;

const PROBE: &str = r#"#!/bin/sh
echo "argv: $*"
echo "ifaces: $(ip -o link | cut -d: -f2 | tr -d ' ' | tr '\n' ' ')"
echo "resolv: $(tr '\n' ';' < /etc/resolv.conf)"
echo "amb: $(awk '/^CapAmb:/{print $2}' /proc/self/status)"
if [ "$(readlink /proc/self/ns/mnt)" = "$HOSTMNT" ]; then echo "mntns: host"; else echo "mntns: own"; fi
"#;

fn with_env(mut c: Command, d: &TempDir, env: &[(&str, &str)]) -> Command {
    c.env("SHELL", d.join("probe"))
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", d.path().display()),
        )
        .env("HOSTMNT", std::fs::read_link("/proc/self/ns/mnt").unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

#[test]
fn same_argv_same_namespace_as_vdens() {
    let d = TempDir::new("parity");
    std::fs::write(d.join("probe"), PROBE).unwrap();
    std::fs::set_permissions(
        d.join("probe"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let rc = d.join("rc.conf");
    std::fs::write(&rc, "nameserver 192.0.2.9\n").unwrap();
    let rc = rc.to_str().unwrap().to_string();
    type Env<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Vec<&str>, Env)> = vec![
        (vec![], vec![]),
        (vec!["null://"], vec![]),
        (vec!["null://", "probe", "a", "-b"], vec![]),
        (vec!["-", "probe", "x"], vec![]),
        (vec!["no", "probe"], vec![]),
        (vec!["", "probe"], vec![]),
        (
            vec!["-m", "null://", "null://", "--", "probe", "-m", "--"],
            vec![],
        ),
        (vec!["--multi", "null://", "null://", "null://"], vec![]),
        (vec!["-m", "null://", "--"], vec![]),
        (vec!["-i", "eth", "null://", "probe"], vec![]),
        (
            vec!["--iface=lab", "-m", "null://", "null://", "--", "probe"],
            vec![],
        ),
        (vec!["-mieth", "null://", "--", "probe", "-i", "x"], vec![]),
        (vec!["-R", "192.0.2.1,2001:db8::1", "-", "probe"], vec![]),
        (vec!["-r", &rc, "-", "probe"], vec![]),
        (vec!["-r", &rc, "-R", "192.0.2.2", "-", "probe"], vec![]),
        (vec!["-", "probe"], vec![("VDE_RESOLVADDR", "192.0.2.3")]),
        (vec!["-", "probe"], vec![("VDE_RESOLVCONF", &rc)]),
        (vec!["-s", "-", "probe"], vec![]),
        (vec!["--sysadm", "null://"], vec![]),
        (vec!["-c", "null://", "probe"], vec![]),
        (vec!["-u", "null://", "probe"], vec![]),
        (vec!["-c", "-u", "-", "probe"], vec![]),
        (vec!["--", "null://", "probe", "--"], vec![]),
    ];
    let mut table = String::from("| argv | vdens | vdens-fast |\n|---|---|---|\n");
    let mut diffs = Vec::new();
    for who in BOTH {
        for (args, env) in &cases {
            let mut classic = match who {
                Who::Root => Command::new("vdens"),
                Who::Nobody => {
                    let mut c = Command::new("setpriv");
                    c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "vdens"]);
                    c
                }
            };
            classic.args(args).current_dir(d.path());
            let a = run(with_env(classic, &d, env), 20);
            let b = run(with_env(vdens_fast(who, &d, args), &d, env), 20);
            assert!(
                a.stdout.contains("argv:"),
                "vdens {args:?} did not run the probe: {a:#?}"
            );
            table.push_str(&format!(
                "| {who:?} {args:?} {env:?} | {:?} | {:?} |\n",
                a.stdout, b.stdout
            ));
            if a.stdout != b.stdout {
                diffs.push(format!(
                    "{who:?} {args:?} {env:?}:\n vdens:      {:?}\n vdens-fast: {:?} {}",
                    a.stdout, b.stdout, b.stderr
                ));
            }
        }
    }
    println!("{table}");
    assert!(diffs.is_empty(), "differences from vdens:\n{}", diffs.join("\n"));
}
