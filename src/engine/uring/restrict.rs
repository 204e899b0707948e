//! io_uring restrictions (IORING_REGISTER_RESTRICTIONS): every data-plane ring is created
//! disabled (IORING_SETUP_R_DISABLED), given the allowlist below, then enabled, so that a bug in
//! frame handling reachable by a peer cannot make a ring do what the loops never do (open or
//! unlink files, connect or accept sockets, install descriptors, message other rings): any other
//! opcode or sqe flag completes with -EACCES, any other io_uring_register op fails with EACCES.
//! This is the io_uring half of the least privilege of `sys::isolate` (seccomp cannot see what
//! a ring does).
//!
//! The ring is enabled as soon as it is built (by the thread that will drive it: SINGLE_ISSUER
//! binds the ring to the task that enables it), so the registrations the loops make after
//! [`build_ring`](super::build_ring) (provided-buffer rings) are restricted too and are in the
//! list.

use super::NEEDED;
use io_uring::{opcode, register::Restriction, squeue::Flags, IoUring};
use std::io;

/// Opcodes the loops submit besides those a kernel is probed for (`NEEDED`): a kernel with the
/// NEEDED ones has these. The allowed opcodes are NEEDED plus these; a loop submitting an
/// opcode in neither gets -EACCES (and `loops_use_only_allowed_ops` below fails).
const EXTRA: &[(u8, &str)] = &[(opcode::Timeout::CODE, "TIMEOUT")];

/// io_uring_register ops (uapi numbers) the loops make once the ring is enabled.
const REGISTER_OPS: &[(u8, &str)] = &[(22, "REGISTER_PBUF_RING"), (23, "UNREGISTER_PBUF_RING")];

/// The sqe flags the loops set: linked send chains (a hard link where a short write must not
/// cut the chain), and buffer selection, which every multishot receive into a provided-buffer
/// group carries (`RecvMulti`/`ReadMulti` set it themselves).
fn sqe_flags() -> Flags {
    Flags::IO_LINK | Flags::IO_HARDLINK | Flags::BUFFER_SELECT
}

/// Every opcode a data-plane ring accepts.
fn sqe_ops() -> impl Iterator<Item = u8> {
    NEEDED.iter().chain(EXTRA).map(|&(c, _)| c)
}

fn allowlist() -> Vec<Restriction> {
    let mut v: Vec<Restriction> = sqe_ops().map(Restriction::sqe_op).collect();
    v.extend(REGISTER_OPS.iter().map(|&(op, _)| Restriction::register_op(op)));
    v.push(Restriction::sqe_flags_allowed(sqe_flags().bits()));
    v
}

/// Restricts and enables a ring built with IORING_SETUP_R_DISABLED, on the thread that will
/// drive it. Where the kernel refuses the restrictions, the ring is enabled unrestricted, said
/// once per process.
pub(super) fn enable(ring: IoUring) -> io::Result<IoUring> {
    let s = ring.submitter();
    if let Err(e) = s.register_restrictions(&mut allowlist()) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            crate::diag!(
                "cannot restrict the io_uring rings to the operations they use (IORING_REGISTER_RESTRICTIONS: {}): they run unrestricted",
                crate::sys::err_text(&e)
            );
        }
    }
    s.register_enable_rings()?;
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::super::build_ring;
    use super::*;
    use io_uring::{squeue, types};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    /// Submits `e` alone and returns its completion's result.
    fn run_one(ring: &mut IoUring, e: squeue::Entry) -> i32 {
        // SAFETY: the entry's buffers (if any) outlive the wait below, which reaps its completion.
        unsafe { ring.submission().push(&e.user_data(7)) }.unwrap();
        ring.submit_and_wait(1).unwrap();
        let c = ring.completion().next().expect("a completion");
        assert_eq!(c.user_data(), 7);
        c.result()
    }

    /// A ring from build_ring (every setup it tries) runs the loops' operations and refuses
    /// anything else: an opcode, an sqe flag, a register op.
    #[test]
    fn build_ring_refuses_what_the_loops_do_not_use() {
        for defer in [true, false] {
            let (mut ring, mode) = build_ring(8, 16, defer, false).unwrap();
            // Not in the list: NOP, OPENAT.
            assert_eq!(
                run_one(&mut ring, opcode::Nop::new().build()),
                -libc::EACCES,
                "{mode}: NOP"
            );
            let path = c"/etc/passwd";
            let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr()).build();
            assert_eq!(run_one(&mut ring, open), -libc::EACCES, "{mode}: OPENAT");
            // Allowed: a send and a receive.
            let (a, b) = UnixDatagram::pair().unwrap();
            let msg = b"frame";
            let send = opcode::Send::new(types::Fd(a.as_raw_fd()), msg.as_ptr(), msg.len() as u32).build();
            assert_eq!(run_one(&mut ring, send), 5, "{mode}: SEND");
            let mut buf = [0u8; 16];
            let recv = opcode::Recv::new(types::Fd(b.as_raw_fd()), buf.as_mut_ptr(), 16).build();
            assert_eq!(run_one(&mut ring, recv), 5, "{mode}: RECV");
            assert_eq!(&buf[..5], msg);
            // An allowed opcode with a flag the loops never set (IO_DRAIN).
            let send = opcode::Send::new(types::Fd(a.as_raw_fd()), msg.as_ptr(), 5)
                .build()
                .flags(Flags::IO_DRAIN);
            assert_eq!(run_one(&mut ring, send), -libc::EACCES, "{mode}: IO_DRAIN");
            // An allowed opcode on a fixed file (the loops use none).
            let send = opcode::Send::new(types::Fixed(0), msg.as_ptr(), 5).build();
            assert_eq!(run_one(&mut ring, send), -libc::EACCES, "{mode}: FIXED_FILE");
            // Register ops the loops never make.
            let mut p = io_uring::Probe::new();
            let e = ring.submitter().register_probe(&mut p).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{mode}: REGISTER_PROBE");
            let e = ring
                .submitter()
                .register_files(&[a.as_raw_fd(), b.as_raw_fd()])
                .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{mode}: REGISTER_FILES");
        }
    }

    /// What the loops' sources use (`opcode::X`, `squeue::Flags::X`, a fixed file, a register
    /// call) is in the allowlist: adding an opcode to a loop without adding it to NEEDED or
    /// EXTRA fails here, not on a peer's frame.
    #[test]
    fn loops_use_only_allowed_ops() {
        macro_rules! codes {
            ($($op:ident),* $(,)?) => { &[$((stringify!($op), opcode::$op::CODE)),*] };
        }
        let known: &[(&str, u8)] = codes!(
            Nop,
            Readv,
            Writev,
            Fsync,
            ReadFixed,
            WriteFixed,
            PollAdd,
            PollRemove,
            SendMsg,
            RecvMsg,
            RecvMsgMulti,
            Timeout,
            TimeoutRemove,
            TimeoutUpdate,
            Accept,
            AsyncCancel,
            AsyncCancel2,
            LinkTimeout,
            Connect,
            OpenAt,
            Close,
            FilesUpdate,
            Read,
            Write,
            Send,
            Recv,
            RecvMulti,
            EpollCtl,
            Splice,
            ProvideBuffers,
            RemoveBuffers,
            Tee,
            Shutdown,
            MsgRingData,
            Socket,
            AcceptMulti,
            SendZc,
            SendMsgZc,
            ReadMulti,
            SendBundle,
            RecvBundle,
            RecvMultiBundle,
            ReadvFixed,
            WritevFixed,
            FutexWait,
            FutexWake,
        );
        let flags: &[(&str, Flags)] = &[
            ("FIXED_FILE", Flags::FIXED_FILE),
            ("IO_DRAIN", Flags::IO_DRAIN),
            ("IO_LINK", Flags::IO_LINK),
            ("IO_HARDLINK", Flags::IO_HARDLINK),
            ("ASYNC", Flags::ASYNC),
            ("BUFFER_SELECT", Flags::BUFFER_SELECT),
            ("SKIP_SUCCESS", Flags::SKIP_SUCCESS),
        ];
        // Register calls: the Submitter's and BufRing's (mod.rs).
        let regs: &[(&str, u8)] = &[
            ("register_files", 2),
            ("unregister_files", 3),
            ("register_files_update", 6),
            ("register_files_sparse", 13),
            ("register_buffers", 0),
            ("register_eventfd", 4),
            ("register_probe", 8),
            ("register_buf_ring", 22),
            ("register_buf_ring_with_flags", 22),
            ("register_as", 22),
            ("register", 22),
            ("unregister_buf_ring", 23),
            // The epoll driver's counterpart of register_buf_ring (ring.rs, emu.rs).
            ("register_group", 22),
        ];
        let ops: Vec<u8> = sqe_ops().collect();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/engine/uring");
        let mut seen = 0;
        for f in std::fs::read_dir(dir).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            // This file holds the list and tests refused ops; mod.rs holds NEEDED and the
            // probe, which runs on a ring of its own.
            if !name.ends_with(".rs") || name == "restrict.rs" {
                continue;
            }
            let src = std::fs::read_to_string(f.path()).unwrap();
            for id in idents_after(&src, "opcode::") {
                let code = known
                    .iter()
                    .find(|k| k.0 == id)
                    .unwrap_or_else(|| panic!("{name}: opcode::{id}: add it to `known` here"))
                    .1;
                assert!(
                    ops.contains(&code),
                    "{name}: opcode::{id} is not in NEEDED nor EXTRA"
                );
                seen += 1;
            }
            for id in idents_after(&src, "squeue::Flags::") {
                let fl = flags
                    .iter()
                    .find(|k| k.0 == id)
                    .unwrap_or_else(|| panic!("{name}: squeue::Flags::{id}: add it here"))
                    .1;
                assert!(sqe_flags().contains(fl), "{name}: sqe flag {id} is not allowed");
            }
            // Multishot receives into a buffer group carry IOSQE_BUFFER_SELECT, set by the
            // opcode's builder, not named in the loop's source.
            if src.contains("opcode::RecvMulti::") || src.contains("opcode::ReadMulti::") {
                assert!(
                    sqe_flags().contains(Flags::BUFFER_SELECT),
                    "{name}: multishot receives need BUFFER_SELECT"
                );
            }
            if src.contains("types::Fixed(") {
                assert!(sqe_flags().contains(Flags::FIXED_FILE), "{name}: fixed files");
            }
            if name == "mod.rs" {
                continue;
            }
            for pre in [".register", ".unregister"] {
                for id in idents_after(&src, pre) {
                    let id = format!("{}{id}", &pre[1..]);
                    let op = regs
                        .iter()
                        .find(|k| k.0 == id)
                        .unwrap_or_else(|| panic!("{name}: .{id}(): add it to `regs` here"))
                        .1;
                    assert!(
                        REGISTER_OPS.iter().any(|r| r.0 == op),
                        "{name}: .{id}() needs register op {op}, not in REGISTER_OPS"
                    );
                }
            }
        }
        assert!(seen >= 10, "the loops' sources were not found in {dir}");
    }

    /// The identifiers (possibly empty) right after each `pre` in `src`.
    fn idents_after<'a>(src: &'a str, pre: &str) -> Vec<&'a str> {
        src.match_indices(pre)
            .map(|(i, _)| {
                let rest = &src[i + pre.len()..];
                let n = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..n]
            })
            .collect()
    }
}
