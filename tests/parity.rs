//! Parity with Debian's vdens 0.2: the same argument vectors select the same command, the same
//! interfaces and the same options (resolv.conf, capabilities, mount namespace) in both.

mod common;
use common::*;
use std::process::Command;

const PROBE: &str = r#"#!/bin/sh
echo "argv: $*"
echo "ifaces: $(ip -o link | cut -d: -f2 | tr -d ' ' | tr '\n' ' ')"
echo "resolv: $(tr '\n' ';' < /etc/resolv.conf) mode $(stat -L -c %a /etc/resolv.conf)"
echo "amb: $(awk '/^CapAmb:/{print $2}' /proc/self/status)"
if [ "$(readlink /proc/self/ns/mnt)" = "$HOSTMNT" ]; then echo "mntns: host"; else echo "mntns: own"; fi
echo "host: $(hostname)"
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
        // getopt: a repeated option takes the last value.
        (vec!["-i", "a", "-i", "b", "null://", "probe"], vec![]),
        (vec!["-R", "192.0.2.1", "-R", "192.0.2.2", "-", "probe"], vec![]),
        (vec!["-r", &rc, "-r", "/etc/hostname", "-", "probe"], vec![]),
        (vec!["-m", "-m", "null://", "--", "probe"], vec![]),
        (vec!["-s", "-s", "-c", "-c", "-u", "null://", "probe"], vec![]),
        // -R as given: host names, zone-scoped IPv6, '' (an empty file), odd commas, spaces.
        (vec!["-R", "fe80::1%vde0,dns.example", "-", "probe"], vec![]),
        (vec!["-R", "", "-", "probe"], vec![]),
        (vec!["-R", ",x, y,,z,", "-", "probe"], vec![]),
        (vec!["-R", " 192.0.2.1 ", "null://", "probe"], vec![]),
        // getopt's forms: attached, `=`, separate, abbreviated, a value that looks like an option.
        (vec!["-ieth0", "null://", "probe"], vec![]),
        (vec!["--iface", "x", "null://", "probe"], vec![]),
        (vec!["-i", "", "null://", "probe"], vec![]),
        (vec!["-i", "--", "null://", "probe"], vec![]),
        (vec!["-ui", "-m", "null://", "probe"], vec![]),
        (vec!["--mul", "null://", "--", "probe"], vec![]),
        (vec!["--resolva=192.0.2.5", "-", "probe"], vec![]),
        (vec!["--resolvc", &rc, "-", "probe"], vec![]),
        (vec!["--s", "--c", "--u", "null://", "probe"], vec![]),
        (vec!["--if=y", "--m", "null://", "null://", "--", "probe"], vec![]),
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

/// -H/--hostname is an option of vdens's master branch that Debian's vdens 0.2 lacks (it prints
/// its usage and exits 1): vdens-fast has it (deliberately), parsed as getopt would (the last of
/// repeated ones, attached, abbreviated; '' is an empty host name, as sethostname(2) allows).
#[test]
fn hostname_is_an_option_of_vdens_master() {
    let d = TempDir::new("parity-host");
    let o = run(
        {
            let mut c = Command::new("vdens");
            c.args(["-H", "x", "-", "hostname"]).current_dir(d.path());
            c
        },
        20,
    );
    assert_eq!(o.code, Some(1), "Debian's vdens 0.2 has no -H: {o:#?}");
    for who in BOTH {
        for (args, want) in [
            (&["-H", "a", "-H", "b"][..], "b"),
            (&["-Hc"], "c"),
            (&["--host=d"], "d"),
            (&["--hostname", "e", "-s"], "e"),
            (&["-H", ""], ""),
        ] {
            let mut all = args.to_vec();
            all.extend(["-", "sh", "-c", "echo \"[$(hostname)]\""]);
            let o = vf(who, &d, &all);
            assert_eq!(o.ok().stdout, format!("[{want}]\n"), "{who:?} {args:?}");
        }
    }
}

/// Sets up the process state a caller hands over, then executes `PROG ARGS` (Perl: it changes
/// no signal disposition or mask of its own, unlike sh, which clears the mask, or Python).
/// `launch.pl OPTION... -- PROG ARGS`, OPTION: ign=SIG,.. blk=SIG,.. umask=OCT cwd=DIR
/// open=FD:PATH close=FD env=NAME:VALUE
const LAUNCH: &str = r#"
use strict; use POSIX ();
while (@ARGV && $ARGV[0] ne '--') {
  my ($k, $v) = split /=/, shift(@ARGV), 2;
  if ($k eq 'ign') { $SIG{$_} = 'IGNORE' for split /,/, $v }
  elsif ($k eq 'blk') {
    my @s = map { my $n = eval "POSIX::SIG$_()"; die "SIG$_?" unless $n; $n } split /,/, $v;
    POSIX::sigprocmask(POSIX::SIG_BLOCK(), POSIX::SigSet->new(@s)) or die "sigprocmask: $!";
  }
  elsif ($k eq 'umask') { umask oct $v }
  elsif ($k eq 'cwd') { chdir $v or die "chdir $v: $!" }
  elsif ($k eq 'open') {
    my ($fd, $p) = split /:/, $v, 2;
    my $f = POSIX::open($p, POSIX::O_RDONLY()) // die "open $p: $!";
    if ($f != $fd) { POSIX::dup2($f, $fd) // die "dup2: $!"; POSIX::close($f) }
  }
  elsif ($k eq 'close') { POSIX::close($v) }
  elsif ($k eq 'env') { my ($n, $x) = split /:/, $v, 2; $ENV{$n} = $x }
  else { die "launch.pl: unknown option $k" }
}
shift @ARGV;
exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!";
"#;

/// What the command received: signal dispositions and mask, umask, VDF_* environment, descriptors
/// (files by path, others by kind) and working directory; exits with `code`. In awk (mawk): it
/// changes no signal state of its own before reading /proc/self/status (perl ignores SIGFPE and
/// resets SIGCHLD; sh clears the mask).
const PROBE_AWK: &str = r#"
BEGIN {
  getline st < "/proc/self/stat"; close("/proc/self/stat")
  split(st, f, " "); pid = f[1]
  while ((getline l < "/proc/self/status") > 0) if (l ~ /^(SigIgn|SigBlk|Umask):/) print l
  close("/proc/self/status")
  printf "env:"; for (k in ENVIRON) if (k ~ /^VDF_/) printf " %s=%s", k, ENVIRON[k]; print ""
  printf "fds: "; fflush()
  system("cd /proc/" pid "/fd && for f in *; do t=$(readlink $f); printf '%s=%s ' $f ${t%%:*}; done; echo; echo cwd: $(readlink /proc/" pid "/cwd)")
  exit code
}
"#;

/// `IMPL ARGS` started through launch.pl with `setup`, as `who`, in a clean environment.
fn launched(who: Who, classic: bool, d: &TempDir, setup: &[&str], args: &[String]) -> Command {
    let imp = if classic {
        "vdens".to_string()
    } else {
        binary().display().to_string()
    };
    let mut c = as_who(who, "perl");
    c.arg(d.join("launch.pl"))
        .args(setup)
        .arg("--")
        .arg(imp)
        .args(args);
    clean_env(&mut c, d);
    c
}

/// A row of the process-state table: what the caller sets up, vdens's arguments (PROBE stands
/// for the probe command), and, for a deliberate difference, why.
struct Case {
    setup: &'static [&'static str],
    args: &'static [&'static str],
    /// Some(reason): vdens-fast differs on purpose; `fast_ok` then checks vdens-fast's output.
    differs: Option<&'static str>,
    fast_ok: fn(&Out) -> bool,
}

const PROBE_ARGS: &str = "PROBE";

/// The probe's SigIgn mask.
fn sig_ign(o: &Out) -> u64 {
    cap_field(&o.stdout, "SigIgn:")
}

fn any(_: &Out) -> bool {
    true
}

/// Descriptors, signal dispositions and mask, umask, cwd and environment reach the command as the
/// caller set them, as with vdens; the exit status is the command's (vdens: always 0).
#[test]
fn process_state_passes_through_as_in_vdens() {
    let d = TempDir::new("parity-proc");
    std::fs::write(d.join("launch.pl"), LAUNCH).unwrap();
    std::fs::write(d.join("probe.awk"), PROBE_AWK).unwrap();
    let probe = |code: &str| {
        vec![
            "awk".to_string(),
            "-v".into(),
            format!("code={code}"),
            "-f".into(),
            d.join("probe.awk").display().to_string(),
        ]
    };
    const ALL_FWD: &str = "ign=INT,HUP,QUIT,TERM,PIPE,USR1,TSTP,TTOU";
    let cases: Vec<Case> = vec![
        Case { setup: &[], args: &["-", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["open=5:/etc/hostname"], args: &["-", "sh", "-c", "cat <&5"], differs: None, fast_ok: any },
        Case { setup: &["open=5:/etc/hostname"], args: &["null://", "sh", "-c", "cat <&5"], differs: None, fast_ok: any },
        Case { setup: &["open=5:/etc/hostname", "open=9:/dev/null"], args: &["-", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["open=5:/etc/hostname", "open=9:/dev/null"], args: &["null://", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["open=7:/etc/hostname"], args: &["-c", "null://", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["open=7:/etc/hostname"], args: &["-u", "-m", "null://", "null://", "--", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["open=7:/etc/hostname"], args: &["-s", "-R", "192.0.2.1", "null://", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["close=0"], args: &["null://", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["close=0"], args: &["-c", "-", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &[ALL_FWD], args: &["-", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &[ALL_FWD], args: &["null://", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &[ALL_FWD], args: &["-c", "-r", "/etc/hostname", "null://", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["blk=USR2,TERM,INT,CHLD,ALRM"], args: &["null://", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["blk=HUP,QUIT,USR1", "ign=PIPE"], args: &["-c", "-", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["umask=027", "cwd=/usr", "env=VDF_X:a b=c"], args: &["null://", PROBE_ARGS], differs: None, fast_ok: any },
        Case { setup: &["umask=0", "cwd=/", "env=VDF_Y:"], args: &["-s", "-", PROBE_ARGS], differs: None, fast_ok: any },
        // SIGPIPE at its default in the command: `yes` dies of it, silently.
        Case { setup: &[], args: &["-", "sh", "-c", "(yes; echo $? >&2) | head -1"], differs: None, fast_ok: any },
        Case { setup: &[], args: &["null://", "sh", "-c", "(yes; echo $? >&2) | head -1"], differs: None, fast_ok: any },
        Case { setup: &["ign=PIPE"], args: &["null://", "sh", "-c", "(yes; echo $? >&2) | head -1"], differs: None, fast_ok: any },
        Case {
            setup: &["ign=CHLD,HUP"],
            args: &["-", PROBE_ARGS],
            differs: Some("a caller that ignores SIGCHLD: vdens fails (`unshare waitpid: No child processes`, or hangs with -c); vdens-fast runs the command with SIGCHLD ignored"),
            fast_ok: |o| o.code == Some(0) && sig_ign(o) & 0x10001 == 0x10001,
        },
        Case {
            setup: &["ign=CHLD"],
            args: &["-c", "null://", "PROBE3"],
            differs: Some("as above, in clone mode"),
            fast_ok: |o| o.code == Some(3) && sig_ign(o) & 0x10000 == 0x10000,
        },
    ];
    let mut table = String::from("| who | setup | argv | same |\n|---|---|---|---|\n");
    let mut diffs = Vec::new();
    for who in BOTH {
        for case in &cases {
            let args: Vec<String> = case
                .args
                .iter()
                .flat_map(|a| match a.strip_prefix(PROBE_ARGS) {
                    Some(code) => probe(if code.is_empty() { "0" } else { code }),
                    None => vec![a.to_string()],
                })
                .collect();
            let b = run(launched(who, false, &d, case.setup, &args), 20);
            let what = format!("{who:?} {:?} {:?}", case.setup, case.args);
            if let Some(reason) = case.differs {
                table.push_str(&format!("| {what} | differs: {reason} |\n"));
                if !(case.fast_ok)(&b) {
                    diffs.push(format!("{what}: vdens-fast: {b:#?}"));
                }
                continue;
            }
            let a = run(launched(who, true, &d, case.setup, &args), 20);
            // vdens exits 0 whatever the command does (with no network it executes the command
            // itself); vdens-fast exits with the command's status: compared apart, below.
            let same = a.stdout == b.stdout && a.stderr == b.stderr;
            table.push_str(&format!("| {what} | {same} |\n"));
            if !same {
                diffs.push(format!(
                    "{what}:\n vdens:      {:?} {:?}\n vdens-fast: {:?} {:?}",
                    a.stdout, a.stderr, b.stdout, b.stderr
                ));
            }
            let probe_exit: i32 = if case.args.last() == Some(&PROBE_ARGS) {
                0
            } else {
                b.code.unwrap_or(-1)
            };
            if b.code != Some(probe_exit) || (a.code != Some(0) && a.code != b.code) {
                diffs.push(format!(
                    "{what}: exit status: vdens {:?}, vdens-fast {:?}",
                    a.code, b.code
                ));
            }
        }
    }
    println!("{table}");
    assert!(diffs.is_empty(), "differences from vdens:\n{}", diffs.join("\n"));
}

/// A `=cmd` coprocess: prints its signal dispositions and mask to stderr, then reads the
/// stream until vdens ends it.
const COPROC_AWK: &str = r#"
BEGIN {
  while ((getline l < "/proc/self/status") > 0) if (l ~ /^(SigIgn|SigBlk):/) print "coproc " l > "/dev/stderr"
  close("/proc/self/status")
  while ((getline l) > 0) {}
}
"#;

/// A `=cmd` coprocess starts with the caller's signal dispositions and mask, as libvdeplug
/// forks it from vdens (vdens-fast's own runtime state, e.g. Rust's, does not reach it).
#[test]
fn a_coprocess_starts_with_the_callers_signal_state() {
    let d = TempDir::new("parity-coproc");
    std::fs::write(d.join("launch.pl"), LAUNCH).unwrap();
    std::fs::write(d.join("coproc.awk"), COPROC_AWK).unwrap();
    let vnl = format!("=awk -f {}", d.join("coproc.awk").display());
    let args: Vec<String> = vec![vnl, "sh".into(), "-c".into(), "sleep 0.3".into()];
    let lines = |o: &Out| -> Vec<String> {
        o.stderr
            .lines()
            .filter(|l| l.starts_with("coproc "))
            .map(String::from)
            .collect()
    };
    for setup in [&[][..], &["ign=HUP,USR2,PIPE", "blk=USR1,ALRM,TERM"][..]] {
        let a = run(launched(Who::Root, true, &d, setup, &args), 20);
        let b = run(launched(Who::Root, false, &d, setup, &args), 20);
        assert_eq!(lines(&a).len(), 2, "classic vdens: {a:#?}");
        assert_eq!(
            lines(&a),
            lines(&b),
            "{setup:?}\n vdens: {a:#?}\n vdens-fast: {b:#?}"
        );
    }
}

/// The propagation check, run as root in a mount namespace of its own (all private first, so
/// nothing reaches the host's): a tmpfs made shared plays the caller's shared mount. `$@` (vdens
/// or vdens-fast with options, as some user) runs a command that waits for a file the outer side
/// mounts later under that tmpfs, then tries a mount of its own there; the outer side then says
/// whether that one leaked out.
const PROPAGATION: &str = r#"
set -e
D=$1; shift
mkdir -p $D/shared && mount -t tmpfs outer $D/shared && mount --make-shared $D/shared
mkdir $D/shared/later $D/shared/inner
"$@" sh -c "touch $D/ready; i=0
  while [ ! -e $D/shared/later/f ] && [ \$i -lt 100 ]; do sleep 0.05; i=\$((i+1)); done
  cat $D/shared/later/f 2>/dev/null || echo 'outer mount: missing'
  mount -t tmpfs inner $D/shared/inner 2>/dev/null && echo 'inner mount: made' || echo 'inner mount: refused'" &
i=0; while [ ! -e $D/ready ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
mount -t tmpfs later $D/shared/later && echo 'outer mount: seen' > $D/shared/later/f
wait
mountpoint -q $D/shared/inner && echo 'inner mount: leaked out' || echo 'inner mount: stays inside'
"#;

/// With -s, -r or -R (a mount namespace of its own) the caller's shared mounts are slaves inside,
/// as with vdens: a mount the caller makes later on a shared mount shows up inside, and one made
/// inside stays inside.
#[test]
fn mount_propagation_as_in_vdens() {
    let mut diffs = Vec::new();
    for who in BOTH {
        for opts in [
            &["-s"][..],
            &["-R", "192.0.2.1"],
            &["-c", "-r", "/etc/hostname"],
            &["-u", "-s"],
        ] {
            let mut outs = Vec::new();
            for classic in [true, false] {
                let d = TempDir::new("prop");
                let imp = if classic {
                    "vdens".to_string()
                } else {
                    binary().display().to_string()
                };
                let mut c = Command::new("unshare");
                c.args(["-m", "--propagation", "private", "sh", "-c", PROPAGATION, "sh"])
                    .arg(d.path());
                if who == Who::Nobody {
                    c.args([
                        "setpriv",
                        "--reuid",
                        "65534",
                        "--regid",
                        "65534",
                        "--clear-groups",
                    ]);
                }
                c.arg(imp)
                    .args(opts)
                    .arg("-")
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
                outs.push(run(c, 30));
            }
            let (a, b) = (&outs[0], &outs[1]);
            assert!(
                a.stdout.contains("outer mount: seen"),
                "vdens {who:?} {opts:?}: {a:#?}"
            );
            assert!(
                a.stdout.contains("inner mount: stays inside"),
                "vdens {who:?} {opts:?}: {a:#?}"
            );
            if a.stdout != b.stdout || b.code != Some(0) {
                diffs.push(format!(
                    "{who:?} {opts:?}:\n vdens:      {:?}\n vdens-fast: {:?} {}",
                    a.stdout, b.stdout, b.stderr
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "differences from vdens:\n{}", diffs.join("\n"));
}

/// Exit statuses and the process the command runs in, vdens and vdens-fast side by side. With
/// no network both execute the command in their own process (its status, its death by a signal,
/// its parent are the caller's to see). Rows marked with a reason differ on purpose: vdens exits
/// 0 whatever the command did once it forked it (a network, or -c), and 1 when the command
/// cannot be executed; vdens-fast exits with the command's status (128+N when killed by signal
/// N) and 127, as shells do.
#[test]
fn exit_statuses_as_vdens_or_better() {
    type Row = (&'static [&'static str], Option<(&'static str, i32)>);
    let rows: &[Row] = &[
        (&["-", "sh", "-c", "exit 3"], None),
        (&["-", "sh", "-c", "kill -TERM $$"], None),
        (&["-", "sh", "-c", "kill -KILL $$"], None),
        (&["-u", "-s", "-", "sh", "-c", "exit 5"], None),
        (
            &["-", "sh", "-c", "[ $PPID = $CALLER ] && echo parent: the caller"],
            None,
        ),
        (
            &["null://", "sh", "-c", "exit 3"],
            Some(("vdens exits 0 after a forked command", 3)),
        ),
        (
            &["null://", "sh", "-c", "kill -TERM $$"],
            Some(("vdens exits 0 after a forked command", 143)),
        ),
        (&["-c", "-", "sh", "-c", "exit 4"], Some(("vdens -c exits 0", 4))),
        (
            &["-m", "null://", "--", "sh", "-c", "exit 6"],
            Some(("vdens exits 0 after a forked command", 6)),
        ),
        (
            &["-", "/nonexistent/cmd"],
            Some(("vdens exits 1 when execvp fails; vdens-fast 127", 127)),
        ),
        (&["--bogus", "-", "true"], None),
        (&["--r", "192.0.2.1", "-", "true"], None),
        (&["-i"], None),
        (
            &["-h"],
            Some((
                "help is no error: on stdout, exit 0 (vdens: usage on stderr, exit 1)",
                0,
            )),
        ),
    ];
    let d = TempDir::new("parity-exit");
    std::fs::write(d.join("launch.pl"), LAUNCH).unwrap();
    let mut diffs = Vec::new();
    for who in BOTH {
        for (args, differs) in rows {
            let mut outs = Vec::new();
            for classic in [true, false] {
                let mut c = launched(
                    who,
                    classic,
                    &d,
                    &[],
                    &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                );
                c.env("CALLER", std::process::id().to_string());
                // The caller is the test process: launch.pl, setpriv and the program all exec.
                outs.push(run(c, 20));
            }
            let (a, b) = (&outs[0], &outs[1]);
            // vdens's own failures (a bad option, a failed exec) say so on stderr.
            let vdens_fails = args.contains(&"/nonexistent/cmd") || a.code == Some(1);
            assert!(a.stderr.is_empty() || vdens_fails, "{a:#?}");
            if args.iter().any(|a| a.contains("CALLER")) {
                assert_eq!(a.stdout, "parent: the caller\n", "{who:?} {args:?}: {a:#?}");
            }
            match differs {
                None => {
                    if (a.code, a.signal, &a.stdout) != (b.code, b.signal, &b.stdout) {
                        diffs.push(format!(
                            "{who:?} {args:?}:\n vdens:      {a:?}\n vdens-fast: {b:?}"
                        ));
                    }
                }
                Some((why, code)) => {
                    if b.code != Some(*code) {
                        diffs.push(format!(
                            "{who:?} {args:?} ({why}): vdens-fast should exit {code}: {b:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(diffs.is_empty(), "differences from vdens:\n{}", diffs.join("\n"));
}

/// A signal the caller ignored (nohup) or blocked is not passed on to the command by vdens-fast,
/// as vdens (which ignores or holds it) does not: the command, which catches it, never sees it;
/// nor does vdens-fast act on it itself (SIGUSR1).
#[test]
fn ignored_or_blocked_signals_are_not_forwarded() {
    let d = TempDir::new("parity-nofwd");
    std::fs::write(d.join("launch.pl"), LAUNCH).unwrap();
    let py = "import signal, sys, time\n\
              for s in (signal.SIGHUP, signal.SIGTERM):\n    signal.signal(s, lambda n, f: (print('got', n, flush=True), sys.exit(7)))\n\
              print('ready', flush=True)\ntime.sleep(1.5)\nprint('done', flush=True)";
    let mut diffs = Vec::new();
    for who in BOTH {
        for (setup, sig) in [
            ("ign=HUP", libc::SIGHUP),
            ("blk=TERM", libc::SIGTERM),
            // vdens-fast's statistics dump: none (on stderr) when the caller ignores SIGUSR1.
            ("ign=USR1", libc::SIGUSR1),
        ] {
            for classic in [true, false] {
                let args: Vec<String> = ["null://", "/usr/bin/python3", "-c", py]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let mut r = spawn(launched(who, classic, &d, &[setup], &args));
                r.expect_line(20, |l| l == "ready");
                // launch.pl, setpriv and vdens(-fast) exec one another: the same pid.
                unsafe_kill(r.pid(), sig);
                let o = r.wait(20);
                if o.stdout != "ready\ndone\n" || !o.stderr.is_empty() {
                    let imp = if classic { "vdens" } else { "vdens-fast" };
                    diffs.push(format!("{imp} {who:?} {setup}: {o:?}"));
                }
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "the command saw a signal the caller ignored or blocked:\n{}",
        diffs.join("\n")
    );
}

/// vdens is a C program: its option values are byte strings. `-i`, `-R` and `-r` take bytes that
/// are not UTF-8 and hand them on as given (to the kernel as interface names, into resolv.conf,
/// to mount(2)), and so does vdens-fast, as root and as nobody; a name the kernel refuses
/// (Latin-1's no-break space 0xa0 is white space to it) fails both with status 1. (A prefix
/// that makes a name longer than 15 bytes differs on purpose: vdens cuts it, vdens-fast says so.)
#[test]
fn non_utf8_option_values_as_in_vdens() {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let d = TempDir::new("parity-bytes");
    let rc = d.path().join(std::ffi::OsStr::from_bytes(b"rc\xff.conf"));
    std::fs::write(&rc, "nameserver 192.0.2.7\n").unwrap();
    let rc = rc.into_os_string().into_vec();
    let show = "ip -o link | cut -d: -f2 | tr -d ' ' | od -An -c; od -An -c /etc/resolv.conf";
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![b"-i", b"\xff", b"null://"],
        vec![b"-i\xfe", b"null://"],
        vec![b"--iface=a\xc3", b"-m", b"null://", b"null://", b"--"],
        vec![
            b"-i",
            b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2",
            b"null://",
        ],
        vec![b"-R", b"192.0.2.1,\xff\xfe,a\xc3", b"-"],
        vec![b"--resolvaddr=\xff", b"null://"],
        vec![b"-r", &rc, b"-"],
        vec![b"-i", b"\xa0", b"null://"],
    ];
    let mut diffs = Vec::new();
    for who in BOTH {
        for args in &cases {
            let args: Vec<OsString> = args.iter().map(|a| OsString::from_vec(a.to_vec())).collect();
            let mut classic = match who {
                Who::Root => Command::new("vdens"),
                Who::Nobody => {
                    let mut c = Command::new("setpriv");
                    c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "vdens"]);
                    c
                }
            };
            classic.args(&args).args(["sh", "-c", show]);
            clean_env(&mut classic, &d);
            let mut fast = vdens_fast(who, &d, &[]);
            fast.args(&args).args(["sh", "-c", show]);
            let a = run(classic, 20);
            let b = run(fast, 20);
            if a.code != b.code || a.stdout != b.stdout {
                diffs.push(format!(
                    "{who:?} {args:?}:\n vdens:      {:?} {:?} {:?}\n vdens-fast: {:?} {:?} {:?}",
                    a.code, a.stdout, a.stderr, b.code, b.stdout, b.stderr
                ));
            }
            if b.code != Some(0) {
                assert_eq!(b.stderr.lines().count(), 1, "{who:?} {args:?}: {b:#?}");
            }
        }
    }
    assert!(diffs.is_empty(), "differences from vdens:\n{}", diffs.join("\n"));
}

/// vdens's master branch sets `-H`'s bytes as the host name (sethostname(2) of the argument as
/// given, UTF-8 or not); Debian's 0.2 has no `-H` (nor a UTS namespace), so the reference is the
/// bytes themselves: /proc/sys/kernel/hostname shows them, as root and as nobody.
#[test]
fn hostname_bytes_as_vdens_master_sets_them() {
    use std::os::unix::ffi::OsStrExt;
    let d = TempDir::new("parity-hostbytes");
    for who in BOTH {
        for name in [&b"h\xff"[..], b"\xc3", b"a\xfe b"] {
            let want = d.join("want");
            std::fs::write(&want, [name, b"\n"].concat()).unwrap();
            let mut od = Command::new("od");
            od.args(["-An", "-c"]).arg(&want);
            let a = run(od, 20);
            let name = std::ffi::OsStr::from_bytes(name);
            let mut fast = vdens_fast(who, &d, &["-H"]);
            fast.arg(name)
                .args(["-", "od", "-An", "-c", "/proc/sys/kernel/hostname"]);
            let b = run(fast, 20);
            assert_eq!(
                (b.code, &b.stdout),
                (Some(0), &a.stdout),
                "{who:?} {name:?}: {b:#?}"
            );
        }
    }
}
