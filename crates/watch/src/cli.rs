//! The `rstscope watch` command: flags, output, summary.

use crate::metrics::Metrics;
use crate::watcher::{local_remote, Backend, WatchConfig, WatchError, Watcher};
use rstscope_core::{Direction, ResetEvent};
use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One line per reset, for people.
    Human,
    /// One JSON object per line (NDJSON).
    Json,
}

/// Direction filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DirectionArg {
    /// Resets this host sent.
    Sent,
    /// Resets this host received.
    Received,
}

/// Which kernel interface reads the tracepoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// A private tracefs instance; perf_event_open when that is impossible.
    Auto,
    /// A private tracefs instance (ftrace ring buffers, `trace_pipe_raw`).
    Ftrace,
    /// perf_event_open ring buffers (misses resets handled while a CPU is
    /// idle on some kernels; those are counted as lost).
    Perf,
}

/// Command-line arguments of `rstscope watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutputFormat,
    /// Only resets whose local or remote port is PORT (repeatable).
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
    /// Only resets whose local or remote address is HOST (repeatable).
    #[arg(long, value_name = "IP")]
    pub host: Vec<IpAddr>,
    /// Only resets attributed to process PID (repeatable).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Only resets attributed to a process with this command name (repeatable).
    #[arg(long, value_name = "NAME")]
    pub comm: Vec<String>,
    /// Only resets sent, or only received, by this host.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// Stop after N resets (after filtering).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this long (`30s`, `5m`, `1h`, `500ms`; a bare number is seconds).
    #[arg(long, value_name = "T", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Serve Prometheus metrics on ADDR (e.g. `127.0.0.1:9464`).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Print no per-reset lines (summary and metrics only).
    #[arg(long)]
    pub quiet: bool,
    /// Ring buffer size per CPU, in KiB.
    #[arg(long, value_name = "KIB", default_value_t = 8192)]
    pub ring_kb: usize,
    /// How to read the tracepoints.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

/// Parses `30s`, `5m`, `1h`, `500ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 30s, 5m, 500ms)"))?;
    if !(v.is_finite() && v >= 0.0 && v * mul < 1e9) {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing an async-signal-safe handler (one atomic store);
        // no SA_RESTART so epoll_wait returns EINTR and the loop ends promptly.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Formats epoch nanoseconds as `HH:MM:SS.micros` UTC.
fn clock(ts: i64) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let micros = ts.rem_euclid(1_000_000_000) / 1000;
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        micros
    )
}

/// One human-readable line.
pub fn human_line(e: &ResetEvent) -> String {
    let (local, remote) = local_remote(e);
    let (dir, arrow) = match e.direction {
        Some(Direction::Received) => ("received", "<-"),
        _ => ("sent", "->"),
    };
    let process = match (e.pid, &e.comm) {
        (Some(p), Some(c)) => format!("{c}[{p}]"),
        (Some(p), None) => format!("pid {p}"),
        _ => "unknown".into(),
    };
    format!(
        "{} {:<8} {} {} {}  state={} reason={} cause={} process={}  # {}",
        clock(e.ts.0),
        dir,
        local,
        arrow,
        remote,
        e.state.as_deref().unwrap_or("-"),
        e.reason.as_deref().unwrap_or("-"),
        e.cause.id(),
        process,
        e.cause.info().summary,
    )
}

/// The NDJSON record, fields in this order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    ts: f64,
    direction: Option<&'static str>,
    local: String,
    remote: String,
    state: Option<&'a str>,
    reason: Option<&'a str>,
    cause: &'static str,
    confidence: f64,
    pid: Option<u32>,
    comm: Option<&'a str>,
    explanation: &'static str,
    evidence: &'a [String],
}

/// One NDJSON object.
pub fn json_line(e: &ResetEvent) -> String {
    let (local, remote) = local_remote(e);
    let j = JsonLine {
        ts: e.ts.as_secs_f64(),
        direction: e.direction.map(|d| d.id()),
        local: local.to_string(),
        remote: remote.to_string(),
        state: e.state.as_deref(),
        reason: e.reason.as_deref(),
        cause: e.cause.id(),
        confidence: (e.confidence as f64 * 100.0).round() / 100.0,
        pid: e.pid,
        comm: e.comm.as_deref(),
        explanation: e.cause.info().summary,
        evidence: &e.evidence,
    };
    serde_json::to_string(&j).unwrap_or_default()
}

/// Counts for the summary printed on exit.
#[derive(Default, Debug)]
pub struct Summary {
    /// Resets reported.
    pub total: u64,
    by_reason: HashMap<String, u64>,
    by_cause: HashMap<&'static str, u64>,
    by_remote: HashMap<IpAddr, u64>,
    by_process: HashMap<String, u64>,
    /// Reused to build a process key without allocating per reset.
    key: String,
}

/// Adds one to `m[k]`, allocating the key only the first time.
fn bump(m: &mut HashMap<String, u64>, k: &str) {
    match m.get_mut(k) {
        Some(v) => *v += 1,
        None => {
            m.insert(k.to_string(), 1);
        }
    }
}

fn top<K: std::fmt::Display>(m: &HashMap<K, u64>, n: usize) -> String {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| {
        b.1.cmp(a.1)
            .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
    });
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .take(n)
        .map(|(k, c)| format!("{k}={c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Summary {
    /// Counts one reset.
    pub fn add(&mut self, e: &ResetEvent) {
        self.total += 1;
        bump(&mut self.by_reason, e.reason.as_deref().unwrap_or("none"));
        *self.by_cause.entry(e.cause.id()).or_default() += 1;
        *self.by_remote.entry(local_remote(e).1.ip()).or_default() += 1;
        use std::fmt::Write as _;
        self.key.clear();
        let _ = match (e.pid, &e.comm) {
            (Some(p), Some(c)) => write!(self.key, "{c}[{p}]"),
            (Some(p), None) => write!(self.key, "pid{p}"),
            _ => write!(self.key, "unknown"),
        };
        bump(&mut self.by_process, &self.key);
    }

    /// The summary text.
    pub fn render(&self, lost: u64, elapsed: Duration) -> String {
        format!(
            "rstscope watch: {} resets in {:.1}s, {} lost samples\n  by reason:  {}\n  by cause:   {}\n  top remote: {}\n  top process: {}\n",
            self.total,
            elapsed.as_secs_f64(),
            lost,
            top(&self.by_reason, 20),
            top(&self.by_cause, 20),
            top(&self.by_remote, 5),
            top(&self.by_process, 5),
        )
    }
}

/// Runs `rstscope watch`.
pub fn run(args: Args) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rstscope watch: {e}");
            ExitCode::from(match e {
                WatchError::Permission(_) => 77,
                _ => 1,
            })
        }
    }
}

/// How far [`emit`] got.
enum Emitted {
    All,
    CountReached,
    BrokenPipe,
}

/// Counts, serves and prints `events`, stopping at `--count`.
fn emit(
    args: &Args,
    events: &[ResetEvent],
    summary: &mut Summary,
    metrics: &mut Metrics,
    out: &mut impl Write,
) -> Emitted {
    for e in events {
        if args.count.is_some_and(|c| summary.total >= c) {
            return Emitted::CountReached;
        }
        summary.add(e);
        if args.metrics.is_some() {
            metrics.observe(e);
        }
        if !args.quiet {
            let line = match args.format {
                OutputFormat::Human => human_line(e),
                OutputFormat::Json => json_line(e),
            };
            if writeln!(out, "{line}").is_err() {
                // Broken pipe (e.g. `| head`): a quiet exit.
                return Emitted::BrokenPipe;
            }
        }
        if args.count.is_some_and(|c| summary.total >= c) {
            return Emitted::CountReached;
        }
    }
    Emitted::All
}

fn run_inner(args: Args) -> Result<(), WatchError> {
    let cfg = WatchConfig {
        ports: args.port.clone(),
        hosts: args.host.clone(),
        pids: args.pid.clone(),
        comms: args.comm.clone(),
        direction: args.direction.map(|d| match d {
            DirectionArg::Sent => Direction::Sent,
            DirectionArg::Received => Direction::Received,
        }),
        ring_kib: args.ring_kb,
        tracefs: None,
        backend: match args.backend {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Ftrace => Backend::Ftrace,
            BackendArg::Perf => Backend::Perf,
        },
    };
    let mut w = Watcher::start(&cfg)?;
    install_signals();
    let mut metrics = Metrics::new();
    if let Some(addr) = &args.metrics {
        let bound = metrics
            .serve(addr)
            .map_err(|m| WatchError::Io(m, std::io::Error::other("metrics")))?;
        eprintln!("rstscope watch: metrics on http://{bound}/metrics");
    }
    for n in w.notes() {
        eprintln!("rstscope watch: note: {n}");
    }
    if !w.kernel_has_reason() {
        eprintln!(
            "rstscope watch: this kernel's tcp_send_reset has no reason field (Linux < 6.10): \
             causes are inferred from the TCP state"
        );
    }
    eprintln!(
        "rstscope watch: watching tcp_send_reset and tcp_receive_reset through {} (Ctrl-C to stop)",
        w.backend()
    );
    let start = Instant::now();
    let mut summary = Summary::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut reported_lost = 0;
    let mut count_reached = false;
    'main: loop {
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        let mut timeout = Duration::from_millis(500);
        if let Some(d) = args.duration {
            let left = d.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            timeout = timeout.min(left);
        }
        let events = w.poll(timeout)?;
        match emit(&args, &events, &mut summary, &mut metrics, &mut out) {
            Emitted::All => {}
            Emitted::CountReached => {
                count_reached = true;
                break 'main;
            }
            Emitted::BrokenPipe => return Ok(()),
        }
        if out.flush().is_err() {
            return Ok(());
        }
        if w.lost() > reported_lost {
            eprintln!(
                "rstscope watch: WARNING {} resets lost so far (buffer full, or not delivered by \
                 the kernel): use --ring-kb to enlarge",
                w.lost()
            );
            reported_lost = w.lost();
        }
        metrics.set_lost(w.lost());
    }
    if !count_reached {
        // What was read but not yet reported (a received reset waiting for
        // its state change), and what the kernel wrote since the last poll.
        let rest = w.finish();
        if let Emitted::BrokenPipe = emit(&args, &rest, &mut summary, &mut metrics, &mut out) {
            return Ok(());
        }
    }
    let _ = out.flush();
    eprint!("{}", summary.render(w.lost(), start.elapsed()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstscope_core::{Cause, Source, Timestamp};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut e = ResetEvent::new(
            Timestamp(1_700_000_000_000_000_000),
            Source::Kernel,
            "[::1]:443".parse().unwrap(),
            "[::1]:50000".parse().unwrap(),
        );
        e.direction = Some(Direction::Received);
        e.cause = Cause::Refused;
        let v: serde_json::Value = serde_json::from_str(&json_line(&e)).unwrap();
        assert_eq!(v["direction"], "received");
        assert_eq!(v["local"], "[::1]:50000");
        assert_eq!(v["remote"], "[::1]:443");
        assert!(v["reason"].is_null() && v["comm"].is_null() && v["pid"].is_null());
        assert_eq!(v["cause"], "refused");
        assert_eq!(v["explanation"], Cause::Refused.info().summary);
        assert!(human_line(&e).contains("[::1]:50000 <- [::1]:443"));
    }
}
