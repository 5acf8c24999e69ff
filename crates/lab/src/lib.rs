//! `rstscope lab`: reproduces every reset cause on real Linux sockets in
//! network namespaces the lab creates itself, captures the client's (and
//! where useful the server's) link, and checks rstscope's diagnosis of each
//! capture against the scenario's ground truth.
//!
//! - [`ns`]: the namespaces (client —veth— router —veth— server) and cleanup.
//! - [`pcap`]: `AF_PACKET` capture written as classic pcap.
//! - [`sock`]: socket helpers recording what each application call returned.
//! - [`scenario`]: the catalog, one script per cause.
//! - [`report`]: running the catalog, the verdict step, table/JSON/Markdown.

pub mod ns;
pub mod pcap;
pub mod report;
pub mod scenario;
pub mod sock;

use std::path::PathBuf;
use std::process::ExitCode;

/// Command-line arguments of `rstscope lab`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Print the scenarios, one line each.
    List,
    /// Run all scenarios, or those named, and check rstscope's verdicts.
    Run(RunArgs),
}

/// Output formats of `lab run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table, one row per scenario.
    Table,
    /// One JSON object per scenario (NDJSON).
    Json,
    /// The README section "What Linux really does".
    Markdown,
}

/// Arguments of `rstscope lab run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenarios to run (default: all).
    pub scenarios: Vec<String>,
    /// Keep, per scenario, the capture(s), truth.json and what each side saw.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Runs `rstscope lab`.
pub fn run(args: Args) -> ExitCode {
    match args.cmd {
        LabCommand::List => {
            print!("{}", report::list());
            eprintln!("[root]: needs root (namespaces, nftables, capture); the others also run unprivileged on loopback, without capture");
            ExitCode::SUCCESS
        }
        LabCommand::Run(a) => report::run_cli(a),
    }
}
