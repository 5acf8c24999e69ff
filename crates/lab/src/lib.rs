//! `rstscope lab`: not built yet (see the issue tracker).

use std::process::ExitCode;

/// Command-line arguments of `rstscope lab`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `rstscope lab`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("rstscope lab: not implemented yet");
    ExitCode::from(2)
}
