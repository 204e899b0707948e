//! vde:// against real switches: vde-2's vde_switch and vdeplug4's switch:// and hub://
//! nodes (run by `vde_plug null:// switch:///DIR`), with a classic `vde_plug vde://DIR` on the
//! other port. AF_UNIX only.

mod transport_common;

use transport_common::*;
use vdens_fast::transport::{self, Framing, SendTo};

#[test]
fn vde_switch_vde2_both_ways() {
    let dir = TempDir::new("vde2");
    let sw = dir.join("sw");
    let _switch = vde_switch(&sw, &[]);
    let vnl = format!("vde://{}", sw.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(link.framing, Framing::Datagram);
    assert!(matches!(link.send_to, SendTo::Connected));
    assert!(link.ctl.is_some());
    let mut plug = StreamPlug::start(&[&vnl]);
    exchange(&link, &mut plug, "vde2");
    // The data socket file was unlinked after the handshake, as libvdeplug does.
    let leftovers: Vec<_> = std::fs::read_dir(&sw)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!(".{:05}-", std::process::id()))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn vde_switch_plain_path_and_port_number() {
    let dir = TempDir::new("vde2port");
    let sw = dir.join("sw");
    let _switch = vde_switch(&sw, &[]);
    // A plain path is vde://; [5] asks for port 5.
    let vnl = format!("{}[5]", sw.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    let mut plug = StreamPlug::start(&[&format!("vde://{}", sw.display())]);
    exchange(&link, &mut plug, "port5");
    // A named port group with no socket of its own falls back to DIR/ctl, as in libvdeplug.
    let grouped = transport::open(&format!("vde://{}[blue]", sw.display())).unwrap_or_else(|e| panic!("{e}"));
    exchange(&grouped, &mut plug, "portgroup");
    // vde_switch has 32 ports by default: port 99 is refused with a clear error.
    let e = transport::open(&format!("{}[99]", sw.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no answer from"), "{e}");
    assert!(
        e.contains("the switch refused port 99: it may be beyond its ports"),
        "{e}"
    );
}

#[test]
fn ctl_eof_when_switch_dies() {
    let dir = TempDir::new("vde2eof");
    let sw = dir.join("sw");
    let switch = vde_switch(&sw, &[]);
    let link = transport::open(&format!("vde://{}", sw.display())).unwrap_or_else(|e| panic!("{e}"));
    drop(switch);
    let ctl = link.ctl.as_ref().unwrap();
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(ctl),
        nix::poll::PollFlags::POLLIN,
    )];
    let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
    assert_eq!(n, 1, "ctl did not become readable after the switch died");
    let mut b = [0u8; 16];
    let r = nix::unistd::read(ctl, &mut b);
    assert!(matches!(r, Ok(0) | Err(nix::errno::Errno::ECONNRESET)), "{r:?}");
}

fn vdeplug4_node(kind: &str) {
    let dir = TempDir::new(kind);
    let sw = dir.join("sw");
    let node = format!("{kind}://{}", sw.display());
    let _node = Proc {
        child: std::process::Command::new("vde_plug")
            .args(["null://", &node])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        name: node.clone(),
    };
    wait_listening(&sw.join("ctl"));
    let vnl = format!("vde://{}", sw.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    let mut plug = StreamPlug::start(&[&vnl]);
    exchange(&link, &mut plug, kind);
}

#[test]
fn vdeplug4_switch_node() {
    vdeplug4_node("switch");
}

#[test]
fn vdeplug4_hub_node() {
    vdeplug4_node("hub");
}

#[test]
fn data_socket_mode_and_group() {
    let dir = TempDir::new("vde2mode");
    let sw = dir.join("sw");
    let _switch = vde_switch(&sw, &[]);
    let gid = nix::unistd::getegid().as_raw();
    let vnl = format!("vde://{}[mode=770/group={gid}]", sw.display());
    let link = transport::open(&vnl).unwrap_or_else(|e| panic!("{e}"));
    let mut plug = StreamPlug::start(&[&format!("vde://{}", sw.display())]);
    exchange(&link, &mut plug, "mode");
    let e = transport::open(&format!("vde://{}[group=no-such-group-vft]", sw.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no group named 'no-such-group-vft'"), "{e}");
}

#[test]
fn bad_switch_paths() {
    let dir = TempDir::new("vdebad");
    // Missing directory.
    let missing = dir.join("nope");
    let e = transport::open(&format!("vde://{}", missing.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("finding the switch: No such file or directory"), "{e}");
    assert!(e.contains("vde_switch -s"), "{e}");
    assert!(!e.contains("os error"), "{e}");
    // A directory that holds no switch.
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = transport::open(&format!("vde://{}", empty.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("connecting to the switch"), "{e}");
    assert!(e.contains("ctl does not exist"), "{e}");
    // A ctl that is a plain file.
    let file = dir.join("file");
    std::fs::create_dir(&file).unwrap();
    std::fs::write(file.join("ctl"), b"x").unwrap();
    let e = transport::open(&format!("vde://{}", file.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("Connection refused"), "{e}");
    // A ctl that is a stream socket but closes without answering.
    let fake = dir.join("fake");
    std::fs::create_dir(&fake).unwrap();
    let l = std::os::unix::net::UnixListener::bind(fake.join("ctl")).unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        drop(s);
    });
    let e = transport::open(&format!("vde://{}", fake.display()))
        .unwrap_err()
        .to_string();
    t.join().unwrap();
    assert!(e.contains("closed the connection without answering"), "{e}");
    // A ctl that answers garbage.
    let junk = dir.join("junk");
    std::fs::create_dir(&junk).unwrap();
    let l = std::os::unix::net::UnixListener::bind(junk.join("ctl")).unwrap();
    let t = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 512];
        let _ = s.read(&mut b);
        let _ = s.write_all(&[9, 9, 9, 9]);
        std::thread::sleep(std::time::Duration::from_millis(200));
    });
    let e = transport::open(&format!("vde://{}", junk.display()))
        .unwrap_err()
        .to_string();
    t.join().unwrap();
    assert!(e.contains("is not AF_UNIX"), "{e}");
    // A path longer than sun_path.
    let mut long = dir.0.clone();
    while long.as_os_str().len() < 110 {
        long.push("d".repeat(20));
    }
    std::fs::create_dir_all(&long).unwrap();
    let e = transport::open(&format!("vde://{}", long.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than a socket address allows"), "{e}");
    // A malformed parameter.
    let e = transport::open(&format!("vde://{}[colour=red]", empty.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown parameter 'colour'"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}
