//! `rstscope watch`: not built yet (see the issue tracker).

use std::process::ExitCode;

/// Command-line arguments of `rstscope watch`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `rstscope watch`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("rstscope watch: not implemented yet");
    ExitCode::from(2)
}
