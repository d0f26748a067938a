//! The `embgraft` binary: everything is in the library (`cli.rs`), so the Python package's
//! `embgraft` script runs the very same command.

fn main() {
    std::process::exit(embgraft::cli::main_with(std::env::args_os().collect()));
}
