use vdens_fast::cli::{self, CliError};

fn main() {
    let code = match cli::parse(std::env::args_os().skip(1), |k| std::env::var_os(k)) {
        Ok(cfg) => vdens_fast::ns::run(&cfg),
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
