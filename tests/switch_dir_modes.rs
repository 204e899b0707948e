//! The files of a hosted switch's directory (the directory, `ctl`, a joined client's data
//! socket): mode, set-group-ID bit and group, side by side with classic vdeplug4's
//! `vde_plug null:// switch://DIR[...]`, for each option that sets them (mode=, dirmode=, grp=)
//! and two umasks; a classic client joins each switch.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// `prog ARGS` under `umask`, in its own process group (killed with it).
fn with_umask(umask: &str, prog: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(prog)
        .args(args);
    c
}

/// (name with the data socket's number left out, mode with the file type bits, gid) of the
/// directory and what it holds.
fn files(dir: &Path) -> Vec<(String, u32, u32)> {
    let m = std::fs::metadata(dir).unwrap();
    let mut v = vec![("DIR".to_string(), m.mode(), m.gid())];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let n = if n.starts_with("fd") { "fdN".into() } else { n };
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        v.push((n, m.mode(), m.gid()));
    }
    v.sort();
    v
}

/// Waits until a client has joined: its data socket (fdN) is in `dir`, and its own socket
/// (`.PID-N`, bound there while it joins; it chmods fdN, then removes it) is gone.
fn wait_data_socket(dir: &Path) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if names.iter().any(|n| n.starts_with("fd")) && !names.iter().any(|n| n.starts_with('.')) {
                return true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

fn which(prog: &str) -> std::path::PathBuf {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .unwrap();
    std::path::PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

/// The files of a `kind://DIR OPTS` hosted by classic vde_plug and by vdens-fast, each with a
/// classic client joined.
fn compare(d: &TempDir, kind: &str, opts: &str, umask: &str, case: usize) {
    let vde_plug = which("vde_plug");
    let mut seen = Vec::new();
    for fast in [false, true] {
        let dir = d.join(&format!("{case}-{fast}"));
        let vnl = format!("{kind}://{}{opts}", dir.display());
        let _host = if fast {
            Daemon::start("fast host", with_umask(umask, binary(), &[&vnl, "sleep", "30"]))
        } else {
            Daemon::start("classic host", with_umask(umask, &vde_plug, &["null://", &vnl]))
        };
        assert!(wait_path(&dir.join("ctl"), 10), "{vnl} (fast: {fast}): no ctl");
        let client = format!("vde://{}", dir.display());
        let _client = Daemon::start("client", with_umask(umask, &vde_plug, &[&client, "null://"]));
        assert!(
            wait_data_socket(&dir),
            "{vnl} (fast: {fast}, umask {umask}): the client did not join: {:?}",
            files(&dir)
        );
        seen.push(files(&dir));
    }
    assert_eq!(
        seen[1], seen[0],
        "{kind}://DIR{opts} umask {umask}: vdens-fast (left) differs from vde_plug (right)"
    );
}

#[test]
fn switch_directory_files_match_classic() {
    let d = TempDir::new("swmodes");
    let cases = [
        ("switch", ""),
        ("switch", "[mode=660]"),
        ("switch", "[mode=666]"),
        ("switch", "[dirmode=750]"),
        ("switch", "[grp=nogroup]"),
        ("switch", "[mode=660/grp=nogroup]"),
        ("switch", "[mode=640/dirmode=2755]"),
        ("switch", "[dirmode=2770/grp=nogroup]"),
        ("hub", "[mode=660/grp=nogroup]"),
    ];
    let mut n = 0;
    for (kind, opts) in cases {
        for umask in ["022", "077"] {
            compare(&d, kind, opts, umask, n);
            n += 1;
        }
    }
}
