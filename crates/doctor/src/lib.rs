//! `rstscope doctor`: not built yet (see the issue tracker).

use std::process::ExitCode;

/// Command-line arguments of `rstscope doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `rstscope doctor`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("rstscope doctor: not implemented yet");
    ExitCode::from(2)
}
