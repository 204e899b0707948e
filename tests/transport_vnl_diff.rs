//! Differential test of the VNL parameter parser against the real thing: a small C harness
//! linked with Debian's libvdeplug_mod (vdeplug4 4.0.1: vde_parsepathparms, vde_parseparms,
//! strtoullm) parses thousands of generated inputs, and vdens-fast must read every one the
//! same way: same path/address, same values, same errors. Needs gcc and libvdeplug-dev.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vdens_fast::vnl::{self, num, params};

const HARNESS: &str = r#"
#include <stdio.h>
#include <string.h>
#include <libvdeplug_mod.h>
static void hex(const char *s) {
    if (!s) { printf(" -"); return; }
    printf(" =");
    for (; *s; s++) printf("%02x", (unsigned char)*s);
}
int main(void) {
    static char line[8192], buf[4096], a[4096];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line), k = 0;
        if (n && line[n - 1] == '\n') line[--n] = 0;
        for (size_t i = 0; i + 1 < n; i += 2) { unsigned v; sscanf(line + i, "%2x", &v); buf[k++] = (char)v; }
        buf[k] = 0;
        char *pg = NULL, *group = NULL, *mode = NULL;
        struct vdeparms vde[] = {{"", &pg}, {"port", &pg}, {"portgroup", &pg}, {"group", &group},
                                 {"mode", &mode}, {NULL, NULL}};
        memcpy(a, buf, k + 1);
        int r = vde_parsepathparms(a, vde);
        printf("P %d", r);
        if (r == 0) { hex(a); hex(pg); hex(group); hex(mode); }
        printf("\n");
        char *port = NULL, *vni = NULL, *ttl = NULL, *other = NULL;
        struct vdeparms vx[] = {{"port", &port}, {"vni", &vni}, {"ttl", &ttl}, {"rcvbuf", &other},
                                {"v6", &other}, {"v4", &other}, {"hashsize", &other},
                                {"expiretime", &other}, {"if", &other}, {NULL, NULL}};
        memcpy(a, buf, k + 1);
        r = vde_parseparms(a, vx);
        printf("O %d", r);
        if (r == 0) { hex(a); hex(port); hex(vni); hex(ttl); }
        printf("\n");
        printf("N %llu\n", strtoullm(buf));
    }
    return 0;
}
"#;

fn hex(v: Option<&[u8]>) -> String {
    match v {
        None => " -".into(),
        Some(b) => format!(" ={}", b.iter().map(|c| format!("{c:02x}")).collect::<String>()),
    }
}

fn ours(b: &[u8]) -> String {
    let mut out = String::new();
    match params::path_params(b, &vnl::VDE_KEYS) {
        Ok(p) => {
            out += &format!(
                "P 0{}{}{}{}\n",
                hex(Some(&p.address)),
                hex(p.last(&[None, Some("port"), Some("portgroup")])),
                hex(p.get("group")),
                hex(p.get("mode"))
            )
        }
        Err(_) => out += "P -1\n",
    }
    match params::options(b, &vnl::VXLAN_KEYS) {
        Ok(p) => {
            out += &format!(
                "O 0{}{}{}{}\n",
                hex(Some(&p.address)),
                hex(p.get("port")),
                hex(p.get("vni")),
                hex(p.get("ttl"))
            )
        }
        Err(_) => out += "O -1\n",
    }
    out += &format!("N {}\n", num::strtoullm(b));
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn inputs() -> Vec<Vec<u8>> {
    const SEEDS: &[&[u8]] = &[
        b"/tmp/sw[3/mode=770/group=vde]",
        b"239.0.0.1/vni=3/port=%34789/v6",
        b"'/a[b'[%41]",
        b"/x[p=1/po=2/portg=x]",
        b"a/t=1/tt/v",
        b"0x10k",
        b"12M3g",
    ];
    const ALPHA: &[u8] = b"[]/=%'\"\\ abcdefABCDEF0123456789portgmdevnitlxkMGT";
    let mut rng = Rng(0x0dd5_eed5_1234_5678);
    let mut v = Vec::new();
    for i in 0..5000 {
        let mut s: Vec<u8> = if i % 2 == 1 {
            SEEDS[rng.below(SEEDS.len())].to_vec()
        } else {
            Vec::new()
        };
        for _ in 0..1 + rng.below(10) {
            let c = if rng.below(10) < 9 {
                ALPHA[rng.below(ALPHA.len())]
            } else {
                1 + rng.below(255) as u8
            };
            match rng.below(3) {
                0 if !s.is_empty() => {
                    let i = rng.below(s.len());
                    s[i] = c;
                }
                1 if !s.is_empty() => {
                    s.remove(rng.below(s.len()));
                }
                _ => {
                    let i = rng.below(s.len() + 1);
                    s.insert(i, c);
                }
            }
        }
        v.push(s);
    }
    v
}

/// A temp directory removed on drop.
struct Rm(std::path::PathBuf);

impl Drop for Rm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles the C `source` against `lib` (a -l flag or a library path) with gcc; returns the
/// directory guard and the binary.
fn compile(tag: &str, source: &str, lib: &str, package: &str) -> (Rm, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("vft-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let guard = Rm(dir.clone());
    let src = dir.join("h.c");
    let bin = dir.join("h");
    std::fs::write(&src, source).unwrap();
    let st = Command::new("gcc")
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .arg(lib)
        .status()
        .expect("gcc is needed for this test");
    assert!(
        st.success(),
        "compiling the {tag} harness failed (is {package} installed?)"
    );
    (guard, bin)
}

#[test]
fn params_match_libvdeplug() {
    let (_dir, bin) = compile("vnldiff", HARNESS, "-lvdeplug_mod", "libvdeplug-dev");
    let inputs = inputs();
    let text: String = inputs
        .iter()
        .map(|s| s.iter().map(|c| format!("{c:02x}")).collect::<String>() + "\n")
        .collect();
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(start.elapsed() < Duration::from_secs(60));
    let theirs = String::from_utf8(out.stdout).unwrap();
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(theirs.len(), inputs.len() * 3, "harness output is incomplete");
    for (i, input) in inputs.iter().enumerate() {
        let mine = ours(input);
        let mine: Vec<&str> = mine.lines().collect();
        assert_eq!(
            mine,
            theirs[i * 3..i * 3 + 3],
            "input {:?} parsed differently from libvdeplug",
            String::from_utf8_lossy(input)
        );
    }
}

const ARGV_HARNESS: &str = r#"
#include <stdio.h>
#include <string.h>
char **s2argv(const char *args);
int main(void) {
    static char line[8192], buf[4096];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line), k = 0;
        if (n && line[n - 1] == '\n') line[--n] = 0;
        for (size_t i = 0; i + 1 < n; i += 2) { unsigned v; sscanf(line + i, "%2x", &v); buf[k++] = (char)v; }
        buf[k] = 0;
        char **argv = s2argv(buf);
        printf("A");
        for (int i = 0; argv && argv[i]; i++) {
            printf(" =");
            for (char *s = argv[i]; *s; s++) printf("%02x", (unsigned char)*s);
        }
        printf("\n");
    }
    return 0;
}
"#;

/// The coprocess command splitter against Debian's libexecs0 s2argv (what vdens' coprocsp and
/// libvdeplug_cmd use).
#[test]
fn argv_matches_libexecs() {
    let (_dir, bin) = compile(
        "argvdiff",
        ARGV_HARNESS,
        "/usr/lib/x86_64-linux-gnu/libexecs.so.0",
        "libexecs0",
    );
    const ALPHA: &[u8] = b" \t'\"\\;$abcXY=/";
    let mut rng = Rng(0xa5a5_0123_4567_89ab);
    let inputs: Vec<Vec<u8>> = (0..3000)
        .map(|_| {
            (0..rng.below(14))
                .map(|_| ALPHA[rng.below(ALPHA.len())])
                .collect()
        })
        .collect();
    let text: String = inputs
        .iter()
        .map(|s| s.iter().map(|c| format!("{c:02x}")).collect::<String>() + "\n")
        .collect();
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let theirs = String::from_utf8(out.stdout).unwrap();
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(theirs.len(), inputs.len(), "harness output is incomplete");
    for (input, t) in inputs.iter().zip(theirs) {
        let mine: String = std::iter::once("A".to_string())
            .chain(
                vnl::argv::split(input)
                    .iter()
                    .map(|a| hex(Some(a)).trim_start().to_string()),
            )
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            mine,
            t,
            "command {:?} split differently from libexecs",
            String::from_utf8_lossy(input)
        );
    }
}
