//! The namespace control module end to end: options, capabilities, modes, exit statuses,
//! signals, descriptors and diagnostics, as root and as an unprivileged user.

mod common;
use common::*;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

#[test]
fn capabilities_inside() {
    for who in BOTH {
        let d = TempDir::new("caps");
        let o = vf(who, &d, &["-", "cat", "/proc/self/status"]);
        let st = &o.ok().stdout;
        for f in ["CapAmb:", "CapEff:", "CapPrm:"] {
            assert_eq!(cap_field(st, f) & NET_CAPS, NET_CAPS, "{who:?} {f}\n{st}");
            if who == Who::Nobody {
                assert_eq!(
                    cap_field(st, f) & SYS_ADMIN,
                    0,
                    "{who:?} {f} has SYS_ADMIN without -s"
                );
            }
        }
        assert_eq!(
            cap_field(st, "CapAmb:") & SYS_ADMIN,
            0,
            "{who:?}: SYS_ADMIN ambient without -s"
        );
        let o = vf(who, &d, &["-s", "-", "cat", "/proc/self/status"]);
        let st = &o.ok().stdout;
        for f in ["CapAmb:", "CapEff:"] {
            assert_eq!(
                cap_field(st, f) & (NET_CAPS | SYS_ADMIN),
                NET_CAPS | SYS_ADMIN,
                "{who:?} -s {f}\n{st}"
            );
        }
    }
}

#[test]
fn localhost_namespace_pings() {
    for who in BOTH {
        let d = TempDir::new("lo");
        let o = vf(
            who,
            &d,
            &[
                "-",
                "sh",
                "-c",
                "ip link set lo up && ping -c 1 -W 5 127.0.0.1 && ip -o link | wc -l",
            ],
        );
        o.ok();
        assert!(o.stdout.contains("1 received"), "{who:?}: {o:#?}");
        // Only lo: a fresh network namespace, not the host's.
        assert_eq!(o.stdout.lines().last(), Some("1"), "{who:?}: {o:#?}");
    }
}

#[test]
fn hostname_option() {
    for who in BOTH {
        let d = TempDir::new("host");
        let o = vf(who, &d, &["-H", "labnode1", "-", "hostname"]);
        assert_eq!(o.ok().stdout.trim(), "labnode1", "{who:?}");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "labnode1", "the host's name changed");
}

#[test]
fn resolvaddr_v4_and_v6() {
    let before = std::fs::read("/etc/resolv.conf").ok();
    for who in BOTH {
        let d = TempDir::new("resR");
        let o = vf(
            who,
            &d,
            &["-R", "192.0.2.53,2001:db8::53", "-", "cat", "/etc/resolv.conf"],
        );
        assert_eq!(
            o.ok().stdout,
            "nameserver 192.0.2.53\nnameserver 2001:db8::53\n",
            "{who:?}"
        );
        // -R wins over -r.
        let o = vf(
            who,
            &d,
            &[
                "-r",
                "/etc/hostname",
                "-R",
                "192.0.2.1",
                "-",
                "cat",
                "/etc/resolv.conf",
            ],
        );
        assert_eq!(o.ok().stdout, "nameserver 192.0.2.1\n", "{who:?}");
    }
    assert_eq!(
        std::fs::read("/etc/resolv.conf").ok(),
        before,
        "host resolv.conf changed"
    );
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("vdens-fast-resolv"))
        .collect();
    assert!(leftovers.is_empty(), "temp resolv files left: {leftovers:?}");
}

/// -R's private resolv.conf: mode 0400 as vdens's, and no file in a shared directory that another
/// user could take first (vdens-fast once used $TMPDIR/vdens-fast-resolv.PID: a file of that name
/// made by another user made it fail) or that could be left behind.
#[test]
fn resolvaddr_file_is_private() {
    let d = TempDir::new("resRpriv");
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    // Root makes the file vdens-fast would have used ($$ stays the pid through both execs), then
    // vdens-fast runs as nobody in unshare mode, with that directory as TMPDIR.
    let script = r#"f="$TMPDIR/vdens-fast-resolv.$$"; echo taken > "$f" && chmod 0644 "$f" &&
        exec setpriv --reuid 65534 --regid 65534 --clear-groups "$VF" -u -R 192.0.2.7,dns.example - \
        sh -c 'stat -c "%a %U" /etc/resolv.conf; cat /etc/resolv.conf'"#;
    let mut c = Command::new("sh");
    c.args(["-c", script])
        .env("VF", binary())
        .env("TMPDIR", d.path())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir(d.path());
    let o = run(c, 20);
    assert_eq!(
        o.ok().stdout,
        "400 nobody\nnameserver 192.0.2.7\nnameserver dns.example\n",
        "{o:#?}"
    );
    let left: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "only the other user's file remains: {left:?}");
    assert!(left[0].starts_with("vdens-fast-resolv."), "{left:?}");
    for who in BOTH {
        let mut c = vdens_fast(
            who,
            &d,
            &[
                "-R",
                "192.0.2.8",
                "-c",
                "-",
                "stat",
                "-c",
                "%a",
                "/etc/resolv.conf",
            ],
        );
        c.env("TMPDIR", d.path());
        let o = run(c, 20);
        assert_eq!(o.ok().stdout, "400\n", "{who:?}");
    }
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "a file was left in TMPDIR"
    );
}

#[test]
fn resolvconf_file() {
    for who in BOTH {
        let d = TempDir::new("resr");
        let f = d.join("my-resolv.conf");
        std::fs::write(&f, "nameserver 198.51.100.7\nsearch lab\n").unwrap();
        let o = vf(
            who,
            &d,
            &["-r", f.to_str().unwrap(), "-", "cat", "/etc/resolv.conf"],
        );
        assert_eq!(o.ok().stdout, "nameserver 198.51.100.7\nsearch lab\n", "{who:?}");
    }
}

#[test]
fn resolv_environment_defaults() {
    for who in BOTH {
        let d = TempDir::new("resenv");
        let f = d.join("env-resolv.conf");
        std::fs::write(&f, "nameserver 198.51.100.8\n").unwrap();
        let mut c = vdens_fast(who, &d, &["-", "cat", "/etc/resolv.conf"]);
        c.env("VDE_RESOLVCONF", &f);
        assert_eq!(run(c, 20).ok().stdout, "nameserver 198.51.100.8\n", "{who:?}");
        let mut c = vdens_fast(who, &d, &["-", "cat", "/etc/resolv.conf"]);
        c.env("VDE_RESOLVADDR", "203.0.113.1,2001:db8::1");
        assert_eq!(
            run(c, 20).ok().stdout,
            "nameserver 203.0.113.1\nnameserver 2001:db8::1\n",
            "{who:?}"
        );
        // The option wins over the environment.
        let mut c = vdens_fast(who, &d, &["-R", "203.0.113.9", "-", "cat", "/etc/resolv.conf"]);
        c.env("VDE_RESOLVADDR", "203.0.113.1");
        assert_eq!(run(c, 20).ok().stdout, "nameserver 203.0.113.9\n", "{who:?}");
    }
}

#[test]
fn sysadm_allows_mounts() {
    for who in BOTH {
        let d = TempDir::new("sysadm");
        let o = vf(
            who,
            &d,
            &[
                "-s",
                "-",
                "sh",
                "-c",
                "mount -t tmpfs none /mnt && grep -c ' /mnt ' /proc/self/mounts",
            ],
        );
        assert_eq!(o.ok().stdout.trim(), "1", "{who:?}: {o:#?}");
        // Without -s there is no mount namespace and no CAP_SYS_ADMIN: the mount fails.
        let o = vf(
            who,
            &d,
            &["-", "sh", "-c", "mount -t tmpfs none /mnt 2>/dev/null; echo $?"],
        );
        assert_ne!(o.ok().stdout.trim(), "0", "{who:?}: mount worked without -s");
    }
}

fn iface_names(o: &Out) -> Vec<String> {
    // `ip -o link` lists by ifindex, i.e. creation order.
    o.stdout
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap().to_string())
        .collect()
}

#[test]
fn iface_prefix() {
    for who in BOTH {
        let d = TempDir::new("iface");
        let o = vf(who, &d, &["-i", "eth", "null://", "ip", "-o", "link"]);
        assert_eq!(iface_names(o.ok()), ["lo", "eth0"], "{who:?}");
    }
}

#[test]
fn multi_gives_interfaces_in_order() {
    for who in BOTH {
        let d = TempDir::new("multi");
        let o = vf(
            who,
            &d,
            &[
                "--multi", "null://", "null://", "null://", "--", "ip", "-o", "link",
            ],
        );
        assert_eq!(iface_names(o.ok()), ["lo", "vde0", "vde1", "vde2"], "{who:?}");
        // The tap type, as vdens makes it.
        let o = vf(
            who,
            &d,
            &["-m", "null://", "--", "ip", "-d", "link", "show", "vde0"],
        );
        assert!(o.ok().stdout.contains("tun type tap pi off"), "{who:?}: {o:#?}");
    }
}

/// Prints the command's pid, its parent, and its grandparent, as seen in /proc.
const FAMILY: &str = "echo $$ $PPID $(awk '/^PPid:/{print $2}' /proc/$PPID/status)";

#[test]
fn clone_and_unshare_modes() {
    for who in BOTH {
        let d = TempDir::new("modes");
        for (flag, extra_process) in [("-u", false), ("-c", true), ("", false)] {
            let mut args = vec![];
            if !flag.is_empty() {
                args.push(flag);
            }
            args.extend(["null://", "sh", "-c", FAMILY]);
            let r = spawn(vdens_fast(who, &d, &args));
            let pid = r.pid();
            let o = r.wait(20);
            o.ok();
            let f: Vec<i32> = o.stdout.split_whitespace().map(|x| x.parse().unwrap()).collect();
            if extra_process {
                assert_ne!(
                    f[1], pid,
                    "{who:?} {flag}: the command's parent should be a child of vdens-fast"
                );
                assert_eq!(f[2], pid, "{who:?} {flag}: {f:?}");
            } else {
                assert_eq!(
                    f[1], pid,
                    "{who:?} {flag}: the command's parent should be vdens-fast: {f:?}"
                );
            }
        }
    }
}

#[test]
fn exit_statuses() {
    for who in BOTH {
        let d = TempDir::new("exit");
        assert_eq!(vf(who, &d, &["-", "true"]).code, Some(0));
        assert_eq!(vf(who, &d, &["-", "sh", "-c", "exit 42"]).code, Some(42));
        let o = vf(who, &d, &["-", "/nonexistent/command-xyz"]);
        assert_eq!(o.code, Some(127), "{o:#?}");
        assert!(
            o.stderr.contains("cannot execute /nonexistent/command-xyz"),
            "{o:#?}"
        );
        assert_eq!(o.stderr.lines().count(), 1, "{o:#?}");
        // With no network the command takes vdens-fast's place (as in vdens): its death by a
        // signal is the caller's child's; with a network, vdens-fast exits with 128+N.
        let o = vf(who, &d, &["-", "sh", "-c", "kill -9 $$"]);
        assert_eq!(o.signal, Some(9), "{o:#?}");
        let o = vf(who, &d, &["null://", "sh", "-c", "kill -9 $$"]);
        assert_eq!(o.code, Some(137), "{o:#?}");
        for mode in ["-c", "-u"] {
            assert_eq!(
                vf(who, &d, &[mode, "null://", "sh", "-c", "exit 42"]).code,
                Some(42),
                "{mode}"
            );
            assert_eq!(
                vf(who, &d, &[mode, "null://", "sh", "-c", "kill -TERM $$"]).code,
                Some(143),
                "{mode}"
            );
        }
    }
}

#[test]
fn sigterm_is_forwarded() {
    for who in BOTH {
        for mode in ["-u", "-c"] {
            let d = TempDir::new("term");
            let script = "trap 'echo got-TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
            let mut r = spawn(vdens_fast(who, &d, &[mode, "null://", "sh", "-c", script]));
            r.expect_line(20, |l| l == "ready");
            unsafe_kill(r.pid(), libc::SIGTERM);
            let o = r.wait(20);
            assert_eq!(o.code, Some(7), "{who:?} {mode}: {o:#?}");
            assert!(o.stdout.contains("got-TERM"), "{who:?} {mode}: {o:#?}");
        }
    }
}

#[test]
fn other_forwarded_signals() {
    let d = TempDir::new("sigs");
    for (sig, name) in [
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGQUIT, "QUIT"),
    ] {
        let script =
            format!("trap 'echo got-{name}; exit 9' {name}; echo ready; while :; do sleep 0.05; done");
        let mut r = spawn(vdens_fast(Who::Nobody, &d, &["null://", "sh", "-c", &script]));
        r.expect_line(20, |l| l == "ready");
        unsafe_kill(r.pid(), sig);
        let o = r.wait(20);
        assert_eq!(o.code, Some(9), "{name}: {o:#?}");
    }
}

#[test]
fn sigkill_leaves_nothing_behind() {
    for who in BOTH {
        for mode in ["-u", "-c"] {
            let d = TempDir::new("kill");
            let mut r = spawn(vdens_fast(
                who,
                &d,
                &[mode, "null://", "sh", "-c", "echo pid $$; exec sleep 1000"],
            ));
            let l = r.expect_line(20, |l| l.starts_with("pid "));
            let cmd_pid: i32 = l[4..].trim().parse().unwrap();
            assert!(alive(cmd_pid));
            // SIGKILL to vdens-fast alone, not to its process group.
            unsafe_kill(r.pid(), libc::SIGKILL);
            let o = r.wait(20);
            assert_eq!(o.signal, Some(libc::SIGKILL));
            assert!(
                wait_gone(cmd_pid, 10),
                "{who:?} {mode}: command {cmd_pid} still alive"
            );
        }
    }
}

/// The caller's descriptors reach the command (as with vdens and unshare(1)); none of
/// vdens-fast's own does (taps, sockets, signalfd, eventfds, io_uring, a hosted switch, the
/// libvdeplug bridge), whatever the VNLs and the mode.
#[test]
fn only_the_callers_descriptors_reach_the_command() {
    let slirp = std::path::Path::new("/usr/lib/x86_64-linux-gnu/vdeplug/libvdeplug_slirp.so").exists();
    for who in BOTH {
        let d = TempDir::new("fds");
        let sw = format!("switch://{}", d.join("sw").display());
        let mut cases: Vec<Vec<&str>> = vec![
            vec!["-"],
            vec!["-m", "null://", "null://", "--"],
            vec!["-c", "-m", "null://", &sw, "--"],
            vec!["-u", "-s", "-R", "192.0.2.1", "null://", "--"],
            vec!["--engine", "poll", "null://"],
        ];
        if slirp {
            cases.push(vec!["-m", "slirp://", "null://", "--"]);
        }
        for args in cases {
            // A descriptor the caller passes to vdens-fast (no close-on-exec) reaches the command.
            let passed = std::fs::File::open("/etc/hostname").unwrap();
            let raw = passed.as_raw_fd();
            let mut all = args.clone();
            all.extend(["sh", "-c", "ls /proc/$$/fd; cat <&9"]);
            let mut c = vdens_fast(who, &d, &all);
            // SAFETY: dup2, fcntl and close_range between fork and exec are async-signal-safe.
            #[allow(unsafe_code)]
            unsafe {
                c.pre_exec(move || {
                    if libc::dup2(raw, 9) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The file was opened close-on-exec, and dup2 does nothing when `raw` is
                    // already 9 (it depends on what the other test threads hold open): clear the
                    // flag on 9 itself.
                    if libc::fcntl(9, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Only 0, 1, 2 and 9: not what the test runner itself inherited.
                    libc::syscall(libc::SYS_close_range, 3u32, 8u32, 0u32);
                    libc::syscall(libc::SYS_close_range, 10u32, u32::MAX, 0u32);
                    Ok(())
                });
            }
            let o = run(c, 20);
            let host = std::fs::read_to_string("/etc/hostname").unwrap();
            let out = o
                .ok()
                .stdout
                .strip_suffix(host.as_str())
                .unwrap_or("")
                .to_string();
            let fds: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(fds, ["0", "1", "2", "9"], "{who:?} {args:?}: {o:#?}");
        }
    }
}

#[test]
fn shell_is_the_default_command() {
    let d = TempDir::new("shell");
    let script = d.join("myshell");
    std::fs::write(&script, "#!/bin/sh\necho shell-ran \"$@\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for args in [&[][..], &["null://"], &["-m", "null://", "--"]] {
        let mut c = vdens_fast(Who::Nobody, &d, args);
        c.env("SHELL", &script);
        assert_eq!(run(c, 20).ok().stdout, "shell-ran\n", "{args:?}");
    }
    let mut c = vdens_fast(Who::Nobody, &d, &[]);
    c.env_remove("SHELL");
    let o = run(c, 20);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("$SHELL is not set"), "{o:#?}");
}
