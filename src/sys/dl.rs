//! Run-time loading of libvdeplug (dlopen, no link-time dependency) and the few calls of its
//! public API the libvdeplug fallback transport uses (libvdeplug.h, interface version 1).
//! All `unsafe` of that FFI lives here.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::os::fd::{BorrowedFd, RawFd};

/// `LIBVDEPLUG_INTERFACE_VERSION` of libvdeplug.h.
pub const LIBVDEPLUG_INTERFACE_VERSION: c_int = 1;
/// The shared object loaded (Debian package libvdeplug2).
pub const LIBVDEPLUG_SONAME: &str = "libvdeplug.so.2";

type OpenFn = unsafe extern "C" fn(*mut c_char, *mut c_char, c_int, *mut c_void) -> *mut c_void;
type RecvFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, c_int) -> isize;
type SendFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int) -> isize;
type FdFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// libvdeplug, loaded once per process and never unloaded (its plugins may run threads).
pub struct VdePlug {
    open: OpenFn,
    recv: RecvFn,
    send: SendFn,
    datafd: FdFn,
    ctlfd: FdFn,
    close: CloseFn,
}

fn dlerror_text() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl* call on
    // this thread; it is copied at once.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        return "unknown dynamic loader error".into();
    }
    // SAFETY: non-null and NUL-terminated per dlerror(3).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

static LIB: std::sync::OnceLock<Result<VdePlug, LoadError>> = std::sync::OnceLock::new();

/// Why libvdeplug could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// dlopen failed: the dynamic loader's message.
    Open(String),
    /// The library lacks a function vdens-fast calls.
    Symbol(&'static str),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Open(why) => f.write_str(why),
            LoadError::Symbol(s) => write!(f, "{LIBVDEPLUG_SONAME} has no symbol {s}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl VdePlug {
    /// Loads libvdeplug.so.2 (RTLD_NOW | RTLD_GLOBAL) on first use; the dynamic loader's
    /// message on failure.
    ///
    /// Global, because plugins that open another VNL (vlan, multi, bonding, agno, ...) call
    /// vde_open_real, vde_ctlfd & co without linking libvdeplug.so themselves: they expect the
    /// program to have brought those symbols into the global scope, as a program linked with
    /// -lvdeplug (vde_plug, vdens) does. With RTLD_LOCAL their dlopen fails ("undefined
    /// symbol: vde_ctlfd") and libvdeplug reports the scheme as unknown.
    pub fn get() -> Result<&'static VdePlug, LoadError> {
        LIB.get_or_init(Self::load).as_ref().map_err(Clone::clone)
    }

    fn load() -> Result<VdePlug, LoadError> {
        let name = CString::new(LIBVDEPLUG_SONAME).expect("no NUL");
        // SAFETY: dlopen of a NUL-terminated name; the handle is kept for the process's life
        // (never dlclosed), so symbols taken from it stay valid.
        let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if h.is_null() {
            return Err(LoadError::Open(dlerror_text()));
        }
        let sym = |s: &'static str| -> Result<*mut c_void, LoadError> {
            let c = CString::new(s).expect("no NUL");
            // SAFETY: dlsym on a live handle with a NUL-terminated name.
            let p = unsafe { libc::dlsym(h, c.as_ptr()) };
            if p.is_null() {
                Err(LoadError::Symbol(s))
            } else {
                Ok(p)
            }
        };
        // SAFETY: (all six transmutes) each symbol is the function of that name declared in
        // libvdeplug.h, whose C signature the matching fn type reproduces; the handle is never
        // closed, so the pointers stay valid.
        unsafe {
            Ok(VdePlug {
                open: std::mem::transmute::<*mut c_void, OpenFn>(sym("vde_open_real")?),
                recv: std::mem::transmute::<*mut c_void, RecvFn>(sym("vde_recv")?),
                send: std::mem::transmute::<*mut c_void, SendFn>(sym("vde_send")?),
                datafd: std::mem::transmute::<*mut c_void, FdFn>(sym("vde_datafd")?),
                ctlfd: std::mem::transmute::<*mut c_void, FdFn>(sym("vde_ctlfd")?),
                close: std::mem::transmute::<*mut c_void, CloseFn>(sym("vde_close")?),
            })
        }
    }

    /// vde_open_real(url, descr, LIBVDEPLUG_INTERFACE_VERSION, NULL). The URL is bytes, as in
    /// C: a path in it need not be UTF-8.
    pub fn open(&'static self, url: &[u8], descr: &[u8]) -> io::Result<VdeConn> {
        let bad = |_| io::Error::from_raw_os_error(libc::EINVAL);
        let mut url = CString::new(url).map_err(bad)?.into_bytes_with_nul();
        let mut descr = CString::new(descr).map_err(bad)?.into_bytes_with_nul();
        // SAFETY: both buffers are NUL-terminated, writable and live for the call (libvdeplug
        // takes `char *` and some plugins edit the string in place); NULL open_args is allowed.
        let c = unsafe {
            (self.open)(
                url.as_mut_ptr().cast(),
                descr.as_mut_ptr().cast(),
                LIBVDEPLUG_INTERFACE_VERSION,
                std::ptr::null_mut(),
            )
        };
        if c.is_null() {
            let e = io::Error::last_os_error();
            // A plugin failing without setting errno leaves whatever was there; never report
            // "Success".
            return Err(match e.raw_os_error() {
                Some(0) | None => io::Error::from_raw_os_error(libc::EIO),
                _ => e,
            });
        }
        Ok(VdeConn { lib: self, conn: c })
    }
}

/// An open VDECONN, closed (vde_close) on drop. Used by one thread at a time.
pub struct VdeConn {
    lib: &'static VdePlug,
    conn: *mut c_void,
}

// SAFETY: a VDECONN is not tied to the thread that opened it; VdeConn is not Sync, so only
// one thread uses it at a time (libvdeplug's own users, e.g. vde_plug, do the same).
unsafe impl Send for VdeConn {}

impl VdeConn {
    /// vde_recv: one frame into `buf`.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the connection is open; buf is valid for writes of buf.len() bytes.
        let r = unsafe { (self.lib.recv)(self.conn, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// vde_send: one frame.
    pub fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the connection is open; buf is valid for reads of buf.len() bytes.
        let r = unsafe { (self.lib.send)(self.conn, buf.as_ptr().cast(), buf.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// vde_datafd: readable when a frame can be received (owned by the connection).
    pub fn datafd(&self) -> RawFd {
        // SAFETY: the connection is open.
        unsafe { (self.lib.datafd)(self.conn) }
    }

    /// vde_ctlfd: -1 when the plugin has none (owned by the connection).
    pub fn ctlfd(&self) -> RawFd {
        // SAFETY: the connection is open.
        unsafe { (self.lib.ctlfd)(self.conn) }
    }

    /// [`VdeConn::datafd`], borrowed from the connection (None when the plugin gives none).
    pub fn data_fd(&self) -> Option<BorrowedFd<'_>> {
        self.lend(self.datafd())
    }

    /// [`VdeConn::ctlfd`], borrowed from the connection (None when the plugin has none).
    pub fn ctl_fd(&self) -> Option<BorrowedFd<'_>> {
        self.lend(self.ctlfd())
    }

    fn lend(&self, fd: RawFd) -> Option<BorrowedFd<'_>> {
        // SAFETY: the plugin owns the connection's descriptors and keeps them open until
        // vde_close, which runs on drop; the borrow holds `&self`, so neither the drop nor a
        // call taking `&mut self` (which could act on them) happens while it lives.
        (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// Forgets the connection without closing it: for a forked copy of this process, where
    /// the plugin's threads do not exist and closing could act on the original's state.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for VdeConn {
    fn drop(&mut self) {
        // SAFETY: the connection is open and is closed exactly once, here; nothing uses it
        // afterwards.
        unsafe { (self.lib.close)(self.conn) };
    }
}

/// Registers `f` to run at process exit (atexit(3)), e.g. from std::process::exit.
pub fn at_exit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: atexit stores a function pointer with static lifetime.
    if unsafe { libc::atexit(f) } != 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOMEM));
    }
    Ok(())
}

/// Registers `f` to run in the child after every fork(2) of this process (pthread_atfork).
/// `f` must be async-signal-safe.
pub fn at_fork_child(f: unsafe extern "C" fn()) -> io::Result<()> {
    // SAFETY: pthread_atfork stores function pointers with static lifetime.
    let r = unsafe { libc::pthread_atfork(None, None, Some(f)) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// close(2) of a descriptor number the caller owns and no Rust object refers to in this
/// process (async-signal-safe; for fork handlers).
pub fn close_raw(fd: RawFd) {
    // SAFETY: closing a number only affects that descriptor; callers own it (see above).
    unsafe { libc::close(fd) };
}
