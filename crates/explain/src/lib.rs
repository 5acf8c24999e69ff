//! `rstscope explain`: not built yet (see the issue tracker).

use std::process::ExitCode;

/// Command-line arguments of `rstscope explain`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `rstscope explain`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("rstscope explain: not implemented yet");
    ExitCode::from(2)
}
