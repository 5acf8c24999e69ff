//! `rstscope proxy`: not built yet (see the issue tracker).

use std::process::ExitCode;

/// Command-line arguments of `rstscope proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `rstscope proxy`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("rstscope proxy: not implemented yet");
    ExitCode::from(2)
}
