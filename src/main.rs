use vdens_fast::cli::{self, CliError};
use vdens_fast::sys::caller;

fn main() {
    // What the caller handed over (descriptors, signal dispositions and mask) goes to the command
    // unchanged; see sys::caller.
    caller::record_inherited_fds();
    caller::own_signal_setup();
    let code = match cli::parse(std::env::args_os().skip(1), |k| std::env::var_os(k)) {
        Ok(cfg) => vdens_fast::app::vdens::run(&cfg),
        Err(CliError::Help(h)) | Err(CliError::Version(h)) => {
            print!("{h}");
            0
        }
        Err(CliError::Usage(m)) => {
            eprintln!("vdens-fast: {m}");
            1
        }
    };
    std::process::exit(code);
}
