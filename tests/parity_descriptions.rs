//! What a switch learns about a client, as bytes, side by side with the classic tools: group
//! names that are not UTF-8 (the data socket's `group=`/`-g` and a hosted switch's `grp=`,
//! looked up by their bytes as libvdeplug's getgrnam does), descriptions that are not UTF-8
//! (kept as they came, shown escaped in the JSON statistics where vde_switch shows the bytes),
//! and what vdens-fast calls itself at a switch.
//!
//! The groups live in a copy of /etc/group bound over the real one in a mount namespace of
//! the run's own (`unshare -m`): the host's group database is never changed.

mod common;
use common::*;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A group name that is not UTF-8, and what a lossy reading makes of it (U+FFFD for each bad
/// byte): both are groups in the private /etc/group, so a lossy lookup finds the wrong one.
const NAME: &[u8] = b"vdf\xff\xfe";
const LOSSY: &[u8] = "vdf\u{fffd}\u{fffd}".as_bytes();

/// Two gids that no group of the host has.
fn free_gids() -> (u32, u32) {
    let text = std::fs::read("/etc/group").unwrap();
    let used: Vec<u32> = text
        .split(|&c| c == b'\n')
        .filter_map(|l| l.split(|&c| c == b':').nth(2))
        .filter_map(|g| std::str::from_utf8(g).ok()?.parse().ok())
        .collect();
    let mut free = (4242..).filter(|g| !used.contains(g));
    (free.next().unwrap(), free.next().unwrap())
}

/// A copy of /etc/group in `d` with the groups NAME (`gid`) and LOSSY (`decoy`) added.
fn group_file(d: &TempDir, gid: u32, decoy: u32) -> PathBuf {
    let mut text = std::fs::read("/etc/group").unwrap();
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    for (name, id) in [(NAME, gid), (LOSSY, decoy)] {
        text.extend_from_slice(name);
        text.extend_from_slice(format!(":x:{id}:\n").as_bytes());
    }
    let p = d.join("group");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    p
}

/// `prog args` in a mount namespace of its own (unshare -m, private propagation) where
/// `groups` is bound over /etc/group; as nobody with the supplementary group `in_group` when
/// that is given. In `d`, with `d` as HOME and no SSH_CLIENT.
fn with_groups(
    d: &TempDir,
    groups: &Path,
    in_group: Option<u32>,
    prog: &OsStr,
    args: &[OsString],
) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"]);
    let then = match in_group {
        None => String::new(),
        Some(g) => format!("setpriv --reuid=65534 --regid=65534 --groups=65534,{g} -- "),
    };
    c.arg(format!(r#"mount --bind "$0" /etc/group && exec {then}"$@""#))
        .arg(groups)
        .arg(prog)
        .args(args)
        .current_dir(d.path())
        .env("HOME", d.path())
        .env_remove("SSH_CLIENT");
    c
}

/// `bin` copied where the unprivileged user can run it (the build tree may be closed to it).
fn runnable(bin: &Path, d: &TempDir) -> PathBuf {
    let to = d.join("bin");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let to = to.join(bin.file_name().unwrap());
    std::fs::copy(bin, &to).unwrap();
    to
}

fn bytes(parts: &[&[u8]]) -> OsString {
    OsString::from_vec(parts.concat())
}

/// A `vde://` data socket's group named by bytes that are not UTF-8, with `-g`/`-G` and with
/// `[group=]`, from vdeplug-fast and vdens-fast: the group of that name, as vde_plug and vdens
/// find it (getgrnam on the bytes), as root and as an unprivileged member of the group. A
/// lossy lookup finds the decoy group named with U+FFFD instead.
#[test]
fn data_socket_group_named_by_bytes() {
    let (gid, decoy) = free_gids();
    for in_group in [None, Some(gid)] {
        // (classic, fast, arguments; the switch directory is `@` in them)
        let cases: &[(&str, &str, &[&[u8]])] = &[
            (
                "vde_plug",
                "vdeplug-fast",
                &[b"-g", NAME, b"-m", b"770", b"vde://@"],
            ),
            (
                "vde_plug",
                "vdeplug-fast",
                &[b"-G", NAME, b"-M", b"770", b"null://", b"vde://@"],
            ),
            (
                "vde_plug",
                "vdeplug-fast",
                &[&[b"vde://@[group=", NAME, b"/mode=770]"].concat()],
            ),
            (
                "vdens",
                "vdens-fast",
                &[&[b"vde://@[group=", NAME, b"/mode=770]"].concat(), b"true"],
            ),
        ];
        for (classic, fast, args) in cases {
            let mut seen = Vec::new();
            for prog in [classic, fast] {
                let d = TempDir::new("pdgroup");
                let groups = group_file(&d, gid, decoy);
                let dir = d.join("sw");
                let bin = match *prog {
                    "vdeplug-fast" => runnable(Path::new(env!("CARGO_BIN_EXE_vdeplug-fast")), &d),
                    "vdens-fast" => binary().to_path_buf(),
                    p => PathBuf::from(p),
                };
                let args: Vec<OsString> = args
                    .iter()
                    .map(|a| {
                        let at = a.iter().position(|&c| c == b'@');
                        match at {
                            Some(i) => bytes(&[&a[..i], dir.as_os_str().as_bytes(), &a[i + 1..]]),
                            None => bytes(&[a]),
                        }
                    })
                    .collect();
                let (req, out) =
                    record_request(&dir, with_groups(&d, &groups, in_group, bin.as_os_str(), &args));
                seen.push((req.map(|r| (r.mode, r.gid)), out.code, out.stderr));
            }
            let args: Vec<String> = args.iter().map(|a| a.escape_ascii().to_string()).collect();
            let who = if in_group.is_some() { "nobody" } else { "root" };
            let what = format!("{args:?} as {who}: {seen:#?}");
            assert_eq!(seen[0].0, Some((0o770, gid)), "{classic}: {what}");
            assert_eq!(
                (seen[1].0, seen[1].1),
                (seen[0].0, seen[0].1),
                "{fast} (left), {classic} (right): {what}"
            );
        }
    }
}

/// A hosted `switch://DIR[grp=NAME]` with a name that is not UTF-8: the directory and its
/// `ctl` go to the group of that name in vdeplug-fast as in vde_plug (libvdeplug_netnode's
/// getgrnam_r), as root and as an unprivileged member of the group.
#[test]
fn hosted_switch_group_named_by_bytes() {
    let (gid, decoy) = free_gids();
    for in_group in [None, Some(gid)] {
        let mut seen = Vec::new();
        for prog in ["vde_plug", "vdeplug-fast"] {
            let d = TempDir::new("pdgrp");
            let groups = group_file(&d, gid, decoy);
            let dir = d.join("sw");
            let bin = match prog {
                "vdeplug-fast" => runnable(Path::new(env!("CARGO_BIN_EXE_vdeplug-fast")), &d),
                p => PathBuf::from(p),
            };
            let vnl = bytes(&[b"switch://", dir.as_os_str().as_bytes(), b"[grp=", NAME, b"]"]);
            let mut c = with_groups(&d, &groups, in_group, bin.as_os_str(), &["null://".into(), vnl]);
            c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let mut p = Proc::start(c);
            let up = wait_path(&dir.join("ctl"), 10);
            let gids = up.then(|| {
                let g = |p: &Path| std::fs::metadata(p).map(|m| m.gid()).ok();
                (g(&dir), g(&dir.join("ctl")))
            });
            seen.push((gids, p.wait(0)));
        }
        let what = format!(
            "as {}: {seen:?}",
            if in_group.is_some() { "nobody" } else { "root" }
        );
        assert_eq!(seen[0].0, Some((Some(gid), Some(gid))), "vde_plug: {what}");
        assert_eq!(seen[1], seen[0], "vdeplug-fast (left), vde_plug (right): {what}");
    }
}

/// The JSON string value of `"key":` in the object of the port whose name starts with
/// `prefix`, unescaped (`\\`, `\"`, `\uXXXX` and the one-letter escapes).
fn port_json_str(json: &str, prefix: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"name\":\"{prefix}"))?;
    let p = &json[at..];
    let start = p.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut it = p[start..].chars();
    while let Some(c) = it.next() {
        match c {
            '"' => return Some(out),
            '\\' => match it.next()? {
                'u' => {
                    let hex: String = it.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
    None
}

/// Waits (10 s at most) until a client, `who`, has joined the vde_switch at `dir`: its first
/// port's data socket (`001.*`) is there.
fn wait_joined(dir: &Path, who: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    let joined = || {
        std::fs::read_dir(dir)
            .is_ok_and(|r| r.flatten().any(|e| e.file_name().as_bytes().starts_with(b"001.")))
    };
    while !joined() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(joined(), "{who} never joined vde_switch");
}

/// A description that is not UTF-8 (`-D` of a classic vde_plug) at a vdens-fast switch: kept
/// as it came and shown escaped in its `--stats` JSON (whose strings can hold nothing else),
/// `\xFF` for each byte as Rust writes it, so the bytes can be told apart; vde_switch's
/// `port/print` shows the same bytes raw. A lossy reading made U+FFFD of every such byte.
#[test]
fn description_bytes_at_a_vdens_fast_switch() {
    let descr: &[u8] = b"a\xff\xfeb\"\\";
    let client = |dir: &Path, d: &TempDir| {
        let mut c = Command::new("vde_plug");
        c.arg("-D")
            .arg(OsStr::from_bytes(descr))
            .arg(format!("vde://{}", dir.display()));
        clean_env(&mut c, d);
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Proc::start(c)
    };

    // vde_switch: the bytes, raw.
    let d = TempDir::new("pddescrc");
    let dir = d.join("sw");
    let mut sw = vde_switch(&dir, true);
    let _plug = client(&dir, &d);
    wait_joined(&dir, "vde_plug");
    let classic = port_print_endpoints(&mut sw);
    let want: &[u8] = b"a\xff\xfeb\"\\ user=root pid=N";
    assert_eq!(
        classic
            .iter()
            .map(|l| l.escape_ascii().to_string())
            .collect::<Vec<_>>(),
        [want.escape_ascii().to_string()],
        "vde_switch's port/print"
    );

    // A vdens-fast switch: the same bytes, escaped as Rust writes bytes that are not UTF-8.
    let d = TempDir::new("pddescrf");
    let (_host, dir, stats) = node_host(&d, "switch", &[]);
    let _plug = client(&dir, &d);
    let port = format!("switch://{}:", dir.display());
    let end = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let j = std::fs::read_to_string(&stats).unwrap_or_default();
        if let Some(v) = port_json_str(&j, &port, "vnl") {
            break v;
        }
        assert!(Instant::now() < end, "no client port in the stats: {j}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let shown = String::from_utf8(without_pid(shown.as_bytes())).unwrap();
    assert_eq!(
        shown, r#"a\xFF\xFEb\"\\ user=root pid=N"#,
        "the vdens-fast switch's stats"
    );
    let debug = format!("{:?}", OsStr::from_bytes(want));
    assert_eq!(
        shown,
        debug[1..debug.len() - 1],
        "vde_switch's bytes, escaped as Rust does"
    );
}

/// vdens-fast joins a switch as `vdens-fast user=NAME pid=N`, where classic vdens is `vdens
/// user=NAME pid=N` (vdens.c: vde_open(..., "vdens", ...); libvdeplug appends the rest): a
/// different name on purpose (README, "Differences from vdens"), so a switch's operator can
/// tell which one holds a port; a script looking for "vdens" in `port/print` (`grep vdens`,
/// `grep -w vdens`) finds both.
#[test]
fn vdens_fast_describes_itself_as_vdens_fast() {
    let mut seen = Vec::new();
    for (name, prog) in [
        ("vdens", PathBuf::from("vdens")),
        ("vdens-fast", binary().to_path_buf()),
    ] {
        let d = TempDir::new("pdvdens");
        let dir = d.join("sw");
        let mut sw = vde_switch(&dir, true);
        let mut c = Command::new(&prog);
        c.arg(format!("vde://{}", dir.display())).args(["sleep", "30"]);
        clean_env(&mut c, &d);
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let _v = Proc::start(c);
        wait_joined(&dir, name);
        let lines: Vec<String> = port_print_endpoints(&mut sw)
            .iter()
            .map(|l| l.escape_ascii().to_string())
            .collect();
        seen.push(lines);
    }
    assert_eq!(seen[0], ["vdens user=root pid=N"], "classic vdens");
    assert_eq!(seen[1], ["vdens-fast user=root pid=N"], "vdens-fast");
    for l in seen.iter().flatten() {
        let word = l
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == "vdens");
        assert!(word, "`grep -w vdens` finds {l}");
    }
}
