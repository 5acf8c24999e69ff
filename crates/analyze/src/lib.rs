//! `rstscope analyze`.

use std::process::ExitCode;

/// Command-line arguments of `rstscope analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `rstscope analyze`.
pub fn run(_args: Args) -> ExitCode {
    ExitCode::from(2)
}
