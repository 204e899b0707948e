//! Writes the man pages and the shell completions of vdens-fast and vdeplug-fast into a
//! directory (`tools/mkdeb.sh` packages them):
//!
//! ```sh
//! cargo run --release --example gendoc -- OUTDIR
//! ```
//!
//! OUTDIR/man/{vdens-fast,vdeplug-fast}.1, OUTDIR/completions/{bash,zsh,fish}/...

mod docs;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("gendoc: usage: gendoc OUTDIR (writes OUTDIR/man and OUTDIR/completions)");
        std::process::exit(2);
    };
    if let Err(e) = docs::write_all(std::path::Path::new(&out)) {
        eprintln!("gendoc: cannot write into {}: {e}", out.to_string_lossy());
        std::process::exit(1);
    }
}
