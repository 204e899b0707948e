//! Installing like a Debian tool (issue 16): `-V`/`--version` on both programs, the man pages
//! and shell completions generated from the command-line definitions, the AppArmor profile, and
//! the package tools/mkdeb.sh builds: installed with dpkg into this system, used from
//! /usr/bin, then purged, leaving nothing behind (a Drop guard purges it when a check fails).

mod common;

#[path = "../examples/gendoc/docs.rs"]
#[allow(dead_code)]
mod docs;

use common::{run, Out, TempDir};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const VDENS_FAST: &str = env!("CARGO_BIN_EXE_vdens-fast");
const VDEPLUG_FAST: &str = env!("CARGO_BIN_EXE_vdeplug-fast");

fn sh(script: &str, secs: u64) -> Out {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    run(c, secs)
}

fn expected_engines() -> &'static str {
    match vdens_fast::engine::EngineChoice::Auto.resolve() {
        Ok(vdens_fast::engine::EngineKind::Uring) => "engines: uring (io_uring) and poll (epoll)",
        _ => "engines: poll (epoll) only",
    }
}

#[test]
fn dash_v_is_version_and_names_the_engines() {
    for (bin, name) in [(VDENS_FAST, "vdens-fast"), (VDEPLUG_FAST, "vdeplug-fast")] {
        let mut outs = Vec::new();
        for arg in ["-V", "--version"] {
            let mut c = Command::new(bin);
            c.arg(arg);
            let o = run(c, 20);
            o.ok();
            let lines: Vec<&str> = o.stdout.lines().collect();
            assert_eq!(lines.len(), 2, "{name} {arg}: {o:#?}");
            assert_eq!(lines[0], format!("{name} {}", env!("CARGO_PKG_VERSION")));
            assert!(
                lines[1].starts_with(expected_engines()),
                "{name} {arg}: {}",
                lines[1]
            );
            outs.push(o.stdout);
        }
        assert_eq!(outs[0], outs[1], "{name}: -V and --version differ");
    }
    // vdeplug-fast reads -V as getopt_long does: bundled, and --vers abbreviates --version.
    for args in [&["-lV"][..], &["--vers"]] {
        let mut c = Command::new(VDEPLUG_FAST);
        c.args(args);
        assert!(run(c, 20).ok().stdout.starts_with("vdeplug-fast "), "{args:?}");
    }
    // After the VNL, -V belongs to the command (vdens's + rule).
    let mut c = Command::new(VDENS_FAST);
    c.args(["--", "-", "echo", "-V"]).env("SHELL", "/bin/sh");
    assert_eq!(run(c, 20).ok().stdout, "-V\n");
}

/// The parser's option table and the documentation's keys are the same set, and the
/// documentation command has each option with the parser's names and arity.
#[test]
fn vdeplug_doc_command_follows_the_parser() {
    let table = vdens_fast::app::vdeplug::option_table();
    let keys: BTreeSet<String> = table.iter().map(|(s, l, _)| docs::vdeplug_key(*s, l)).collect();
    let documented: BTreeSet<String> = docs::VDEPLUG_DOCUMENTED.iter().map(|s| s.to_string()).collect();
    assert_eq!(keys, documented);
    let cmd = docs::vdeplug_command();
    for (short, longs, takes) in &table {
        let key = docs::vdeplug_key(*short, longs);
        let a = cmd
            .get_arguments()
            .find(|a| a.get_id().as_str() == key)
            .unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(a.get_short(), *short, "{key}");
        assert_eq!(a.get_long(), longs.first().copied(), "{key}");
        assert_eq!(a.get_action().takes_values(), *takes, "{key}");
    }
}

fn man_text(page: &Path) -> String {
    let mut c = Command::new("man");
    c.arg("-l")
        .arg(page)
        .env("MANWIDTH", "200")
        .env("MANPAGER", "cat");
    let o = run(c, 60);
    o.ok();
    o.stdout
}

const SECTIONS: &[&str] = &[
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "VIRTUAL NETWORK LOCATORS",
    "EXAMPLES",
    "ENVIRONMENT",
    "EXIT STATUS",
    "SIGNALS",
    "FILES",
    "PERFORMANCE",
    "SEE ALSO",
];

fn check_vdens_page(text: &str) {
    for s in SECTIONS.iter().chain(&["DIFFERENCES FROM VDENS"]) {
        assert!(
            text.lines().any(|l| l == *s),
            "vdens-fast(1) has no section {s}:\n{text}"
        );
    }
    for a in vdens_fast::cli::command().get_arguments() {
        let l = format!("--{}", a.get_long().unwrap());
        assert!(text.contains(&l), "vdens-fast(1) does not document {l}");
    }
    for s in [
        "vdens-fast - sh -c",
        "switch:///tmp/mysw",
        "ptp:///tmp/myptp",
        "--multi",
        "tap://tap0",
        "MASQUERADE",
        "VDE_RESOLVCONF",
        "VDE_RESOLVADDR",
        "VDEPLUGIN_PATH",
        "/etc/apparmor.d/vdens-fast",
    ] {
        assert!(text.contains(s), "vdens-fast(1) lacks {s}");
    }
}

fn check_vdeplug_page(text: &str) {
    for s in SECTIONS.iter().chain(&["DIFFERENCES FROM VDE_PLUG"]) {
        assert!(
            text.lines().any(|l| l == *s),
            "vdeplug-fast(1) has no section {s}:\n{text}"
        );
    }
    for (short, longs, _) in vdens_fast::app::vdeplug::option_table() {
        for n in short
            .map(|c| format!("-{c}"))
            .into_iter()
            .chain(longs.iter().map(|l| format!("--{l}")))
        {
            assert!(text.contains(&n), "vdeplug-fast(1) does not document {n}");
        }
    }
}

#[test]
fn man_pages_render_with_their_sections() {
    let d = TempDir::new("gendoc");
    docs::write_all(d.path()).unwrap();
    check_vdens_page(&man_text(&d.join("man/vdens-fast.1")));
    check_vdeplug_page(&man_text(&d.join("man/vdeplug-fast.1")));
}

/// Sources a bash completion and asks it for the words after `line`.
fn bash_complete(file: &Path, func: &str, line: &str) -> String {
    let bin = line.split(' ').next().unwrap();
    let script = format!(
        "source {} || exit 9; complete -p {bin} || exit 8; COMP_WORDS=({line} ''); \
         COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); COMP_LINE='{line} '; COMP_POINT=${{#COMP_LINE}}; \
         {func} {bin} '' \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[*]}}\"",
        file.display(),
    );
    let mut c = Command::new("bash");
    c.args(["--norc", "-c", &script]);
    let o = run(c, 30);
    o.ok();
    o.stdout
}

#[test]
fn completions_load_and_offer_engines_and_schemes() {
    let d = TempDir::new("gencomp");
    docs::write_all(d.path()).unwrap();
    let vd = d.join("completions/bash/vdens-fast");
    let vp = d.join("completions/bash/vdeplug-fast");
    let out = bash_complete(&vd, "_vdens__fast", "vdens-fast --engine");
    assert!(
        out.contains("complete -o bashdefault -o default -o nosort -F _vdens__fast vdens-fast"),
        "{out}"
    );
    assert!(out.ends_with("auto uring poll\n"), "{out}");
    let out = bash_complete(&vd, "_vdens__fast", "vdens-fast -m");
    for w in [
        "--multi",
        "--engine",
        "-V",
        "vde://",
        "ptp://",
        "switch://",
        "tap://",
        "slirp://",
    ] {
        assert!(out.split_whitespace().any(|x| x == w), "{w} not offered: {out}");
    }
    let out = bash_complete(&vp, "_vdeplug__fast", "vdeplug-fast --engine");
    assert!(out.ends_with("auto uring poll\n"), "{out}");
    let out = bash_complete(&vp, "_vdeplug__fast", "vdeplug-fast -d");
    for w in ["--pidfile", "--iplog", "-V", "switch://", "vxvde://"] {
        assert!(out.split_whitespace().any(|x| x == w), "{w} not offered: {out}");
    }
    for f in [
        "zsh/_vdens-fast",
        "zsh/_vdeplug-fast",
        "fish/vdens-fast.fish",
        "fish/vdeplug-fast.fish",
    ] {
        let t = std::fs::read_to_string(d.join(&format!("completions/{f}"))).unwrap();
        assert!(
            t.contains("engine") && t.contains("auto") && t.contains("poll"),
            "{f}"
        );
    }
}

fn src_path(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// The profile grants `userns,` to both programs, unconfined otherwise, and apparmor_parser
/// (package apparmor) accepts it: as it is where the parser knows AppArmor 4's abi (Ubuntu
/// 24.04, Debian 13), else (Debian 12's parser 3.0 knows neither the abi nor `userns,`) with
/// those two AppArmor 4 lines left out, which checks all the rest.
#[test]
fn apparmor_profile_parses() {
    let profile = src_path("packaging/apparmor/vdens-fast");
    let text = std::fs::read_to_string(&profile).unwrap();
    let rules: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules,
        [
            "abi <abi/4.0>,",
            "include <tunables/global>",
            "profile vdens-fast /usr/bin/vdens-fast flags=(unconfined) {",
            "userns,",
            "include if exists <local/vdens-fast>",
            "}",
            "profile vdeplug-fast /usr/bin/vdeplug-fast flags=(unconfined) {",
            "userns,",
            "include if exists <local/vdeplug-fast>",
            "}",
        ]
    );
    let parser = ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("apparmor_parser is missing: apt-get install apparmor (.ci/run does)");
    let d = TempDir::new("apparmor");
    let checked = if Path::new("/etc/apparmor.d/abi/4.0").exists() {
        profile
    } else {
        let p = d.join("vdens-fast");
        let older: String = text
            .lines()
            .filter(|l| !matches!(l.trim(), "abi <abi/4.0>," | "userns,"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&p, older).unwrap();
        p
    };
    let mut c = Command::new(parser);
    c.args(["-Q", "-T", "-K"]).arg(&checked);
    let o = run(c, 60);
    assert_eq!(
        o.code,
        Some(0),
        "apparmor_parser refuses {}: {o:#?}",
        checked.display()
    );
}

/// Purges the package when the test ends, whatever happened.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = sh("dpkg --purge vdens-fast >/dev/null 2>&1", 300);
    }
}

#[test]
fn package_installs_works_and_purges_clean() {
    assert!(
        sh("dpkg -s vdens-fast >/dev/null 2>&1", 30).code != Some(0),
        "the vdens-fast package is installed already: this test installs and purges it; \
         remove it first (dpkg --purge vdens-fast)"
    );
    let d = TempDir::new("deb");
    docs::write_all(&d.join("gen")).unwrap();
    let bindir = Path::new(VDENS_FAST).parent().unwrap();
    let mut c = Command::new(src_path("tools/mkdeb.sh"));
    c.arg("--prebuilt")
        .arg(bindir)
        .arg("--docs")
        .arg(d.join("gen"))
        .arg(d.join("out"));
    let o = run(c, 300);
    o.ok();
    let deb = PathBuf::from(o.stdout.trim());
    assert!(deb.starts_with(d.path()) && deb.exists(), "{o:#?}");

    let o = sh(
        &format!("dpkg-deb -f {} Package Version Recommends Depends", deb.display()),
        30,
    );
    o.ok();
    assert!(
        o.stdout.contains("Package: vdens-fast") && o.stdout.contains("Recommends: vdeplug"),
        "{}",
        o.stdout
    );

    let _purge = Purge;
    let o = sh(&format!("dpkg -i {}", deb.display()), 300);
    o.ok();
    let listed = sh("dpkg -L vdens-fast", 30);
    listed.ok();
    let files: Vec<PathBuf> = listed
        .stdout
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    for f in [
        "/usr/bin/vdens-fast",
        "/usr/bin/vdeplug-fast",
        "/usr/share/man/man1/vdens-fast.1.gz",
        "/usr/share/man/man1/vdeplug-fast.1.gz",
        "/usr/share/bash-completion/completions/vdens-fast",
        "/usr/share/zsh/vendor-completions/_vdeplug-fast",
        "/usr/share/fish/vendor_completions.d/vdens-fast.fish",
        "/usr/share/doc/vdens-fast/README.md",
        "/usr/share/doc/vdens-fast/BENCHMARKS.md",
        "/usr/share/vdens-fast/apparmor/vdens-fast",
    ] {
        assert!(
            files.contains(&PathBuf::from(f)),
            "{f} not installed: {}",
            listed.stdout
        );
    }

    // From the installed path, as a new user would run it.
    let mut c = Command::new("/usr/bin/vdens-fast");
    c.args(["null://", "ip", "-o", "link"]).env("SHELL", "/bin/sh");
    let o = run(c, 60);
    o.ok();
    assert!(
        o.stdout.contains(": vde0:") && o.stdout.contains(": lo:"),
        "{o:#?}"
    );
    let o = sh("/usr/bin/vdeplug-fast -V", 30);
    assert!(o.ok().stdout.starts_with("vdeplug-fast "), "{o:#?}");

    let o = sh("MANWIDTH=200 MANPAGER=cat man vdens-fast", 60);
    check_vdens_page(&o.ok().stdout);
    let o = sh("MANWIDTH=200 MANPAGER=cat man vdeplug-fast", 60);
    check_vdeplug_page(&o.ok().stdout);
    let out = bash_complete(
        Path::new("/usr/share/bash-completion/completions/vdens-fast"),
        "_vdens__fast",
        "vdens-fast --engine",
    );
    assert!(out.ends_with("auto uring poll\n"), "{out}");

    // The profile goes to /etc/apparmor.d exactly where this system's parser takes it.
    let takes = sh(
        "command -v apparmor_parser >/dev/null && \
         apparmor_parser -Q -T -K /usr/share/vdens-fast/apparmor/vdens-fast >/dev/null 2>&1",
        60,
    )
    .code
        == Some(0);
    assert_eq!(Path::new("/etc/apparmor.d/vdens-fast").exists(), takes);

    let o = sh("dpkg --purge vdens-fast", 300);
    o.ok();
    assert_ne!(
        sh("dpkg -L vdens-fast >/dev/null 2>&1", 30).code,
        Some(0),
        "dpkg still lists vdens-fast"
    );
    for f in files.iter().map(PathBuf::as_path).chain([
        Path::new("/etc/apparmor.d/vdens-fast"),
        Path::new("/usr/share/vdens-fast"),
        Path::new("/usr/share/doc/vdens-fast"),
    ]) {
        assert!(!f.exists(), "{} is left after the purge", f.display());
    }
    let o = sh(
        "ls /var/cache/apparmor/*/vdens-fast /var/cache/apparmor/*/vdeplug-fast 2>/dev/null",
        30,
    );
    assert_eq!(o.stdout, "", "AppArmor cache left");

    // Where the parser takes the profile (AppArmor 4: Ubuntu 24.04, Debian 13), postinst installs
    // it in /etc/apparmor.d and loads it, postrm unloads and removes it: here with a stand-in
    // apparmor_parser that accepts everything and logs its calls.
    let fake = d.join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    let log = d.join("parser.log");
    std::fs::write(
        fake.join("apparmor_parser"),
        format!("#!/bin/sh\necho \"$*\" >>{}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        fake.join("apparmor_parser"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        fake.display()
    );
    let o = sh(&format!("PATH={path} dpkg -i {}", deb.display()), 300);
    o.ok();
    assert_eq!(
        std::fs::read_to_string("/etc/apparmor.d/vdens-fast").ok(),
        Some(text_of("packaging/apparmor/vdens-fast")),
        "postinst did not install the profile its parser accepts"
    );
    let o = sh(&format!("PATH={path} dpkg --purge vdens-fast"), 300);
    o.ok();
    assert!(
        !Path::new("/etc/apparmor.d/vdens-fast").exists(),
        "the profile is left after the purge"
    );
    assert_ne!(sh("dpkg -L vdens-fast >/dev/null 2>&1", 30).code, Some(0));
    let calls = std::fs::read_to_string(&log).unwrap();
    let mut want = vec!["-Q -T -K /usr/share/vdens-fast/apparmor/vdens-fast"];
    if Path::new("/sys/kernel/security/apparmor").is_dir() {
        want.extend([
            "-r -T /etc/apparmor.d/vdens-fast",
            "-R /etc/apparmor.d/vdens-fast",
        ]);
    }
    assert_eq!(calls.lines().collect::<Vec<_>>(), want);
}

fn text_of(p: &str) -> String {
    std::fs::read_to_string(src_path(p)).unwrap()
}
