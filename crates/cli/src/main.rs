//! The `rstscope` binary: parses the command line and dispatches to the
//! library crate of each subcommand. Nothing else lives here.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Who reset my connection, and why?
#[derive(Debug, Parser)]
#[command(name = "rstscope", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Explain every TCP reset in a capture (pcap/pcapng, compressed, or `-` for stdin).
    Analyze(rstscope_analyze::Args),
    /// Reproduce every reset cause on real Linux sockets and check the diagnosis.
    Lab(rstscope_lab::Args),
    /// Report live every RST this host sends or receives, with the kernel's reason.
    Watch(rstscope_watch::Args),
    /// A Toxiproxy-compatible fault proxy that injects resets.
    Proxy(rstscope_proxy::Args),
    /// Report the host's reset-related counters, settings and live state.
    Doctor(rstscope_doctor::Args),
    /// Explain an error message ("connection reset by peer", EPIPE, ...).
    Explain(rstscope_explain::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(a) => rstscope_analyze::run(a),
        Command::Lab(a) => rstscope_lab::run(a),
        Command::Watch(a) => rstscope_watch::run(a),
        Command::Proxy(a) => rstscope_proxy::run(a),
        Command::Doctor(a) => rstscope_doctor::run(a),
        Command::Explain(a) => rstscope_explain::run(a),
    }
}
