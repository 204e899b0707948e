//! vdens-fast: a drop-in replacement for VirtualSquare's vdens with an io_uring data plane.
//! See ARCHITECTURE in the README for the module map.

pub mod app;
pub mod cli;
pub mod diag;
pub mod engine;
pub mod ns;
pub mod switch;
#[allow(unsafe_code)]
pub mod sys;
pub mod tap;
pub mod transport;
pub mod vnl;
pub mod wire;

/// A fresh directory under the system's temp dir for a unit test, removed when dropped (also
/// when the test fails).
#[cfg(test)]
pub(crate) struct TestDir(pub std::path::PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new(tag: &str) -> TestDir {
        let p = std::env::temp_dir().join(format!("vdens-fast-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        TestDir(p)
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
