//! Plugins that open another VNL themselves (libvdeplug_vlan, _multi, _bonding, ...): they call
//! libvdeplug's vde_open_real/vde_ctlfd & co, which the program must have made global, as a
//! program linked with -lvdeplug does. Each case runs with classic vdens in the same place as
//! well, so the scenario itself is checked against the original.

mod common;
use common::*;

fn vlan_vnl(d: &TempDir, vid: u16) -> String {
    format!("vlan://{vid}{{ptp://{}}}", d.join("p").display())
}

/// Two namespaces of `a` and `b` on `vlan://3{ptp://P}` ping each other.
fn vlan_pair(a: Impl, b: Impl) {
    let d = TempDir::new("vlanpair");
    let v = vlan_vnl(&d, 3);
    let mut na = ns_node("a", a, &d, &[&v]);
    let mut nb = ns_node("b", b, &d, &[&v]);
    na.up("vde0", "10.77.3.1/24", None);
    nb.up("vde0", "10.77.3.2/24", None);
    na.ping("10.77.3.2", 3, None);
    nb.ping("10.77.3.1", 3, None);
    for n in [na, nb] {
        let name = n.name.clone();
        let o = n.finish(10);
        assert!(o.code == Some(0) || o.code.is_none(), "{name}: {o:#?}");
    }
}

#[test]
fn vlan_over_ptp_fast_to_fast() {
    vlan_pair(Impl::Fast, Impl::Fast);
}

#[test]
fn vlan_over_ptp_fast_to_classic() {
    vlan_pair(Impl::Fast, Impl::Classic);
}

#[test]
fn vlan_over_ptp_classic_to_fast() {
    vlan_pair(Impl::Classic, Impl::Fast);
}

/// A classic `vde_plug ptp://P` in stream mode: frames as 2-byte big-endian length + frame on
/// its stdin/stdout, read by a thread.
struct Wire {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    frames: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Wire {
    fn start(vnl: &str, d: &TempDir) -> Wire {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let mut child = Command::new("vde_plug")
            .arg(vnl)
            .current_dir(d.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("vde_plug");
        let stdin = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let (tx, frames) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut len = [0u8; 2];
            if out.read_exact(&mut len).is_err() {
                return;
            }
            let mut f = vec![0u8; u16::from_be_bytes(len) as usize];
            if out.read_exact(&mut f).is_err() || tx.send(f).is_err() {
                return;
            }
        });
        Wire { child, stdin, frames }
    }

    fn send(&mut self, f: &[u8]) {
        use std::io::Write;
        let mut rec = (f.len() as u16).to_be_bytes().to_vec();
        rec.extend(f);
        self.stdin.write_all(&rec).unwrap();
        self.stdin.flush().unwrap();
    }

    /// The first frame within `secs` for which `f` holds.
    fn expect(&self, secs: u64, f: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.frames.recv_timeout(left) {
                Ok(fr) if f(&fr) => return Some(fr),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        unsafe_kill(-(self.child.id() as i32), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

const WIRE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x77, 0x01];

/// An ARP request from 10.77.3.1 (WIRE_MAC) for `target`, tagged with `vid`.
fn tagged_arp_request(vid: u16, target: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend([0xff; 6]);
    f.extend(WIRE_MAC);
    f.extend([0x81, 0x00]);
    f.extend(vid.to_be_bytes());
    f.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend(WIRE_MAC);
    f.extend([10, 77, 3, 1]);
    f.extend([0; 6]);
    f.extend(target);
    f.resize(64, 0);
    f
}

/// An ARP frame (`op` 1 request, 2 reply) tagged with `vid` whose sender IP is `sender`.
fn is_tagged_arp(f: &[u8], vid: u16, op: u8, sender: [u8; 4]) -> bool {
    f.len() >= 46
        && f[12..14] == [0x81, 0x00]
        && u16::from_be_bytes([f[14], f[15]]) & 0x0fff == vid
        && f[16..18] == [0x08, 0x06]
        && f[24..26] == [0, op]
        && f[32..36] == sender
}

/// The frames really carry the tag: the other end of the ptp cable is a classic vde_plug whose
/// frames the test reads and writes. The namespace's ARP request goes out tagged with VID 3; a
/// request tagged 3 is answered, tagged; one tagged 4 is not delivered.
fn vlan_tag_on_the_wire(imp: Impl) {
    let d = TempDir::new("vlantag");
    let p = d.join("p");
    let mut wire = Wire::start(&format!("ptp://{}", p.display()), &d);
    assert!(wait_path(&p, 10), "vde_plug did not create {}", p.display());
    let v = vlan_vnl(&d, 3);
    let mut tagged = ns_node("tagged", imp, &d, &[&v]);
    tagged.up("vde0", "10.77.3.2/24", None);
    // The namespace asks for 10.77.3.1 (its ping fails: nobody answers).
    let _ = tagged.try_sh("ping -n -q -c 1 -w 1 10.77.3.1", 5);
    assert!(
        wire.expect(5, |f| is_tagged_arp(f, 3, 1, [10, 77, 3, 2]))
            .is_some(),
        "no ARP request tagged 3 from the namespace"
    );
    // A request tagged 4 is not for vlan 3.
    wire.send(&tagged_arp_request(4, [10, 77, 3, 2]));
    assert!(
        wire.expect(2, |f| is_tagged_arp(f, 4, 2, [10, 77, 3, 2])
            || is_tagged_arp(f, 3, 2, [10, 77, 3, 2]))
            .is_none(),
        "a request tagged 4 reached vlan 3"
    );
    let mut answered = false;
    for _ in 0..10 {
        wire.send(&tagged_arp_request(3, [10, 77, 3, 2]));
        if wire
            .expect(1, |f| {
                is_tagged_arp(f, 3, 2, [10, 77, 3, 2]) && f[0..6] == WIRE_MAC
            })
            .is_some()
        {
            answered = true;
            break;
        }
    }
    assert!(answered, "no ARP reply tagged 3; stderr: {}", tagged.stderr());
    drop(tagged);
}

#[test]
fn vlan_tags_frames_like_classic_fast() {
    vlan_tag_on_the_wire(Impl::Fast);
}

#[test]
fn vlan_tags_frames_like_classic_classic() {
    vlan_tag_on_the_wire(Impl::Classic);
}

#[test]
fn nested_null_opens_as_unprivileged_user() {
    // The reproduction: `vlan://3{null://}` opens (it failed with "unknown VNL scheme"
    // while libvdeplug's symbols were not global). (multi:// and bonding:// refuse a null://
    // member in classic vdens too: it has no control descriptor.)
    let d = TempDir::new("nestnull");
    {
        let vnl = "vlan://3{null://}";
        for who in BOTH {
            let o = vf(who, &d, &[vnl, "sh", "-c", "ip -o link show vde0 >/dev/null"]);
            assert_eq!(o.code, Some(0), "{vnl} as {who:?}: {o:#?}");
            assert!(o.stderr.is_empty(), "{vnl} as {who:?}: {o:#?}");
        }
        let mut c = std::process::Command::new("vdens");
        c.args([
            vnl,
            "sh",
            "-c",
            "ip -o link show vde0 >/dev/null && echo CLASSIC-OK",
        ])
        .current_dir(d.path());
        let o = run(c, 20);
        assert!(o.stdout.contains("CLASSIC-OK"), "classic {vnl}: {o:#?}");
    }
}
