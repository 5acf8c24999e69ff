//! `rstscope doctor`: the host's reset-related counters, settings and live
//! state, as findings ordered by severity, each with evidence, the causes
//! (ids of `CAUSES.md`) it points to and a next step.
//!
//! - [`procfs`]: pure parsers of `/proc/net/snmp`, `/proc/net/netstat`,
//!   `/proc/net/sockstat`, `/proc/PID/limits`.
//! - [`counters`]: the counter table (plain words, cause ids).
//! - [`diag`]: listening sockets and accept queues via sock_diag.
//! - [`host`]: reads everything into [`host::RawHost`], optionally inside a
//!   named network namespace.
//! - [`report`]: pure analysis of a `RawHost` into a [`report::Report`].
//!
//! Exit codes: 0 no critical or warning finding, 1 at least one warning,
//! 3 at least one critical finding, 2 usage or read error.

#![warn(missing_docs)]

pub mod counters;
pub mod diag;
pub mod host;
pub mod procfs;
pub mod report;

use report::Severity;
use std::process::ExitCode;
use std::time::Duration;

/// Command-line arguments of `rstscope doctor`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 no warning, 1 warnings, 3 critical findings, 2 error.")]
pub struct Args {
    /// Measure counter changes over this many seconds (e.g. 10, 2.5).
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Inspect the named network namespace (`ip netns` name, /run/netns/NAME). Needs root.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A report for people.
    Human,
    /// The whole report as one JSON object.
    Json,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v > 0.0 && v <= 3600.0) {
        return Err("the interval must be more than 0 and at most 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(v))
}

/// Collects and analyses in one call: the library equivalent of the command.
pub fn diagnose(
    netns: Option<&str>,
    interval: Option<Duration>,
) -> Result<report::Report, host::Error> {
    let raw = host::collect(netns, interval)?;
    Ok(report::analyze(&raw))
}

/// Runs `rstscope doctor`.
pub fn run(args: Args) -> ExitCode {
    if let Some(d) = args.interval {
        if args.format == Format::Human {
            eprintln!(
                "rstscope doctor: measuring counters for {:.1} s ...",
                d.as_secs_f64()
            );
        }
    }
    let r = match diagnose(args.netns.as_deref(), args.interval) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rstscope doctor: {e}");
            return ExitCode::from(2);
        }
    };
    let out = match args.format {
        Format::Human => report::render(&r),
        Format::Json => match serde_json::to_string_pretty(&r) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("rstscope doctor: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if let Err(e) = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("rstscope doctor: {e}");
            return ExitCode::from(2);
        }
    }
    match r.findings.first().map(|f| f.severity) {
        Some(Severity::Critical) => ExitCode::from(3),
        Some(Severity::Warning) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}
