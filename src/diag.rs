//! One sink for the messages the library prints while it runs (the engine's, the
//! transports'): every line starts with the name of the program it runs in, `vdens-fast` or
//! `vdeplug-fast`, and goes to stderr in one write, so that lines from several threads never
//! mix.

use std::io::Write;
use std::sync::OnceLock;

static PROGRAM: OnceLock<String> = OnceLock::new();

/// Names the program for every later message (the first call wins; a binary calls it first
/// thing in `main`). Without it, messages say `vdens-fast`.
pub fn set_program(name: &str) {
    let _ = PROGRAM.set(name.to_string());
}

/// The program's name as messages give it.
pub fn program() -> &'static str {
    PROGRAM.get().map(String::as_str).unwrap_or("vdens-fast")
}

/// The line `PROGRAM: MESSAGE` (no newline).
pub fn line(args: std::fmt::Arguments<'_>) -> String {
    format!("{}: {args}", program())
}

/// Writes `PROGRAM: MESSAGE` and a newline to stderr.
pub fn say(args: std::fmt::Arguments<'_>) {
    let mut l = line(args);
    l.push('\n');
    let _ = std::io::stderr().lock().write_all(l.as_bytes());
}

/// `diag!("{}: end of file", label)` prints `vdens-fast: vde0: end of file` (or the name the
/// binary set with [`set_program`]).
#[macro_export]
macro_rules! diag {
    ($($t:tt)*) => {
        $crate::diag::say(format_args!($($t)*))
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_name_the_program() {
        // The unit tests never set a name: the default.
        assert_eq!(
            super::line(format_args!("vde0: end of file")),
            "vdens-fast: vde0: end of file"
        );
    }
}
