//! `VDEPLUGIN_PATH`: libvdeplug looks for `libvdeplug_SCHEME.so` in these directories only
//! (the first that loads wins), as classic vdens does. A tiny plugin, built here with gcc,
//! logs its open, every frame sent and its close to the file its VNL names; each case runs
//! with classic vdens too, so the original's behaviour is checked next to vdens-fast's.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop-back plugin: frames sent come back; open/send/close logged (with TAG) to the file
/// named by the VNL's argument.
const PLUGIN_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
#include <libvdeplug_mod.h>
struct c { void *handle; struct vdeplug_module *module; int fd[2]; char path[4096]; };
static void note(struct c *c, const char *what, long n) {
	FILE *f = fopen(c->path, "a");
	if (f) { fprintf(f, "%s %s %ld\n", TAG, what, n); fclose(f); }
}
static VDECONN *op(char *url, char *descr, int v, struct vde_open_args *a) {
	struct c *c = calloc(1, sizeof *c);
	(void)descr; (void)v; (void)a;
	if (!c) return NULL;
	snprintf(c->path, sizeof c->path, "%s", url);
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, c->fd) < 0) { free(c); return NULL; }
	note(c, "open", 0);
	return (VDECONN *)c;
}
static ssize_t rc(VDECONN *k, void *b, size_t l, int f) { return recv(((struct c *)k)->fd[1], b, l, f); }
static ssize_t sn(VDECONN *k, const void *b, size_t l, int f) {
	note((struct c *)k, "send", l);
	return send(((struct c *)k)->fd[0], b, l, f | MSG_DONTWAIT);
}
static int df(VDECONN *k) { return ((struct c *)k)->fd[1]; }
static int cf(VDECONN *k) { (void)k; return -1; }
static int cl(VDECONN *k) {
	struct c *c = (struct c *)k;
	note(c, "close", 0); close(c->fd[0]); close(c->fd[1]); free(c);
	return 0;
}
struct vdeplug_module vdeplug_ops = {
	.vde_open_real = op, .vde_recv = rc, .vde_send = sn,
	.vde_datafd = df, .vde_ctlfd = cf, .vde_close = cl,
};
"#;

/// Builds the plugin as `dir/libvdeplug_SCHEME.so`, logging with `tag`.
fn build_plugin(d: &TempDir, dir: &Path, scheme: &str, tag: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let src = d.join(&format!("plugin-{tag}.c"));
    std::fs::write(&src, PLUGIN_C).unwrap();
    let so = dir.join(format!("libvdeplug_{scheme}.so"));
    let mut c = Command::new("gcc");
    c.args(["-shared", "-fPIC", "-Wall", "-o"])
        .arg(&so)
        .arg(format!("-DTAG=\"{tag}\""))
        .arg(&src);
    let o = run(c, 60);
    assert_eq!(o.code, Some(0), "gcc: {o:#?}");
}

#[derive(Clone, Copy, Debug)]
enum Prog {
    Fast,
    Classic,
}

const PROGS: [Prog; 2] = [Prog::Fast, Prog::Classic];

/// Runs `prog VNL sh -c SCRIPT` with VDEPLUGIN_PATH=`path` (as root).
fn run_with(prog: Prog, d: &TempDir, path: &str, vnl: &str, script: &str) -> Out {
    let mut c = match prog {
        Prog::Fast => vdens_fast(Who::Root, d, &[vnl, "sh", "-c", script]),
        Prog::Classic => {
            let mut c = Command::new("vdens");
            c.args([vnl, "sh", "-c", script])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("SHELL", "/bin/sh")
                .current_dir(d.path());
            c
        }
    };
    c.env("VDEPLUGIN_PATH", path);
    run(c, 30)
}

/// Makes frames leave vde0: ARP requests for a neighbour nobody answers.
const SEND_FRAMES: &str = "ip link set lo up && ip addr add 10.78.0.1/24 dev vde0 && \
     ip link set vde0 up && ping -c 2 -i 0.2 -w 2 10.78.0.2 >/dev/null; echo RAN";

/// The plugin's log: open, at least one frame sent, close, all from `tag`.
fn check_log(log: &Path, tag: &str, what: &str) {
    // The close may come just after the program exits (classic vdens closes at exit).
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let t = std::fs::read_to_string(log).unwrap_or_default();
        if t.contains(" close ") || std::time::Instant::now() > end {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty(), "{what}: the plugin did not run");
    assert!(
        lines.iter().all(|l| l.starts_with(&format!("{tag} "))),
        "{what}: another plugin ran: {text}"
    );
    assert_eq!(lines.first(), Some(&&*format!("{tag} open 0")), "{what}: {text}");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{tag} send "))),
        "{what}: no frame reached the plugin: {text}"
    );
    assert_eq!(lines.last(), Some(&&*format!("{tag} close 0")), "{what}: {text}");
}

fn log_path(d: &TempDir, prog: Prog, case: &str) -> PathBuf {
    d.join(&format!("{case}-{prog:?}.log"))
}

#[test]
fn a_scheme_found_in_vdeplugin_path() {
    let d = TempDir::new("ppath");
    let plugs = d.join("plugs");
    build_plugin(&d, &plugs, "tst", "P");
    for prog in PROGS {
        let log = log_path(&d, prog, "tst");
        let o = run_with(
            prog,
            &d,
            plugs.to_str().unwrap(),
            &format!("tst://{}", log.display()),
            SEND_FRAMES,
        );
        assert!(o.stdout.contains("RAN"), "{prog:?}: {o:#?}");
        check_log(&log, "P", &format!("{prog:?}"));
    }
}

#[test]
fn the_first_directory_that_has_the_plugin_wins() {
    let d = TempDir::new("pfirst");
    build_plugin(&d, &d.join("a"), "tst", "A");
    build_plugin(&d, &d.join("b"), "tst", "B");
    let path = format!(
        "{}:{}:{}",
        d.join("missing").display(),
        d.join("a").display(),
        d.join("b").display()
    );
    for prog in PROGS {
        let log = log_path(&d, prog, "first");
        let o = run_with(prog, &d, &path, &format!("tst://{}", log.display()), SEND_FRAMES);
        assert!(o.stdout.contains("RAN"), "{prog:?}: {o:#?}");
        check_log(&log, "A", &format!("{prog:?}"));
    }
}

#[test]
fn the_variable_replaces_the_standard_plugin_directory() {
    // Set, VDEPLUGIN_PATH is the whole search path: vlan:// is not found in a directory that
    // holds only tst, by classic or fast; with the standard directory added, a vlan:// from
    // there opens a nested tst:// from the user's directory.
    let d = TempDir::new("preplace");
    let plugs = d.join("plugs");
    build_plugin(&d, &plugs, "tst", "P");
    for prog in PROGS {
        let o = run_with(prog, &d, plugs.to_str().unwrap(), "vlan://3{null://}", "echo RAN");
        assert!(!o.stdout.contains("RAN"), "{prog:?}: {o:#?}");
        assert_eq!(o.code, Some(1), "{prog:?}: {o:#?}");
        if let Prog::Fast = prog {
            assert!(
                o.stderr.contains("unknown VNL scheme 'vlan'") && o.stderr.lines().count() == 1,
                "{o:#?}"
            );
        }
    }
    let path = format!("{}:/usr/lib/x86_64-linux-gnu/vdeplug", plugs.display());
    for prog in PROGS {
        let log = log_path(&d, prog, "nested");
        let o = run_with(
            prog,
            &d,
            &path,
            &format!("vlan://3{{tst://{}}}", log.display()),
            SEND_FRAMES,
        );
        assert!(o.stdout.contains("RAN"), "{prog:?}: {o:#?}");
        check_log(&log, "P", &format!("{prog:?}"));
        // vlan:// tagged what it passed on: 4 bytes more than the 42-byte ARP request.
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("P send 46"), "{prog:?}: {text}");
    }
}

#[test]
fn a_plugin_in_vdeplugin_path_overrides_a_builtin_scheme() {
    // Classic vdens opens every VNL through libvdeplug, so a user's libvdeplug_ptp.so in
    // VDEPLUGIN_PATH serves ptp://; vdens-fast hands such a scheme to libvdeplug too.
    let d = TempDir::new("pbuiltin");
    let plugs = d.join("plugs");
    for scheme in ["ptp", "vde", "switch", "null", "tap", "udp"] {
        build_plugin(&d, &plugs, scheme, scheme);
    }
    let cases: Vec<(&str, String)> = ["ptp", "vde", "switch", "null", "tap", "udp"]
        .iter()
        .map(|s| (*s, format!("{s}://")))
        // A plain path is a vde:// one.
        .chain([("vde", String::new())])
        .collect();
    for (i, (scheme, prefix)) in cases.iter().enumerate() {
        for prog in PROGS {
            let log = log_path(&d, prog, &format!("{i}-{scheme}"));
            let vnl = format!("{prefix}{}", log.display());
            let o = run_with(prog, &d, plugs.to_str().unwrap(), &vnl, SEND_FRAMES);
            assert!(o.stdout.contains("RAN"), "{vnl} {prog:?}: {o:#?}");
            check_log(&log, scheme, &format!("{vnl} {prog:?}"));
        }
    }
}

#[test]
fn without_a_plugin_there_builtin_schemes_stay() {
    // Deliberately better than classic: with VDEPLUGIN_PATH set (even empty) and no plugin for
    // a scheme vdens-fast implements, classic vdens fails ("Protocol not supported": the
    // variable is libvdeplug's whole search path); vdens-fast uses its own transport.
    let d = TempDir::new("pkeep");
    let plugs = d.join("plugs");
    build_plugin(&d, &plugs, "tst", "P");
    for path in [plugs.to_str().unwrap(), ""] {
        let ptp = format!("ptp://{}", d.join("p").display());
        for vnl in ["null://", ptp.as_str()] {
            let o = run_with(Prog::Classic, &d, path, vnl, "echo RAN");
            assert!(!o.stdout.contains("RAN"), "classic {vnl} with {path:?}: {o:#?}");
            let o = run_with(Prog::Fast, &d, path, vnl, "echo RAN");
            assert_eq!(o.code, Some(0), "fast {vnl} with {path:?}: {o:#?}");
            assert!(o.stdout.contains("RAN"), "fast {vnl} with {path:?}: {o:#?}");
        }
    }
}
