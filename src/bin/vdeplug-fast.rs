//! vdeplug-fast: vde_plug 4.0.1 on the vdens-fast engine. The rules and the run are in
//! `vdens_fast::app::vdeplug`.

fn main() {
    std::process::exit(vdens_fast::app::vdeplug::run::main(std::env::args_os().collect()))
}
