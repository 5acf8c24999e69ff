//! `rstscope analyze`: explains every TCP reset in a capture.
//!
//! The adapter that joins the capture reader ([`rstscope_capture`]) to the
//! deterministic core ([`rstscope_core::wire`], [`rstscope_core::flow`],
//! [`rstscope_core::classify`]) and renders the result:
//!
//! - [`summary`]: turns a finished connection into a [`ConnSummary`] (the
//!   record every output format and the lab use);
//! - [`render`]: the human report, NDJSON and Zeek conn.log writers;
//! - [`analyze_file`]: the library entry point used by the lab.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the whole capture was read and analysed |
//! | 1 | the capture is truncated or corrupt: everything before the damage was reported, and the error names the byte offset |
//! | 2 | bad usage, or the input cannot be opened or is not a capture |

mod pipeline;
pub mod render;
pub mod summary;

use anyhow::Context as _;
use clap::ValueEnum;
use rstscope_capture::{CaptureReader, Packet};
use rstscope_core::classify;
use rstscope_core::flow::{Tracker, TrackerConfig};
use rstscope_core::wire::{self, Skip};
use rstscope_core::Cause;
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use summary::{ConnSummary, ResetDetail};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A report for people: summary by cause and sender, then the reset connections.
    Human,
    /// NDJSON: one object per connection with a reset (`--all`: every connection).
    Json,
    /// A Zeek conn.log (TSV with Zeek's header lines), plus rstscope's reset columns.
    Zeek,
}

/// Command-line arguments of `rstscope analyze`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 capture fully analysed; 1 capture truncated or corrupt \
(results up to the damage were printed, the error names the byte offset); 2 usage error or unreadable input."
)]
pub struct Args {
    /// Capture file (pcap or pcapng, optionally gzip- or zstd-compressed), or `-` for stdin.
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Report every connection, not only those with a reset (json and zeek formats).
    #[arg(long)]
    pub all: bool,
    /// Only connections with this endpoint address (repeatable).
    #[arg(long, value_name = "IP")]
    pub host: Vec<IpAddr>,
    /// Only connections with this port on either side (repeatable).
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
    /// Only resets with this cause id (repeatable, or comma-separated), e.g. `idle_timeout`.
    #[arg(long, value_name = "CAUSE", value_delimiter = ',')]
    pub cause: Vec<Cause>,
    /// Seconds of silence that count as idle before a reset. Default: adaptive
    /// (at least 1 s and 10 times the connection's longest earlier pause).
    #[arg(long, value_name = "SECONDS")]
    pub idle_threshold: Option<f64>,
    /// Retire a connection after this many seconds without packets.
    #[arg(long, value_name = "SECONDS", default_value_t = 7500.0)]
    pub conn_timeout: f64,
    /// Human format: how many reset connections to detail, the most telling
    /// first (at most 10,000).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Connection-tracking threads; 0 picks one per core plus one (at most
    /// 4; the reading thread comes on top), 1 keeps everything on one
    /// thread (output in a fixed order). Connections and verdicts are the
    /// same whatever the number; only the order of output lines varies.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar and no statistics line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Analysis settings for the library entry point.
#[derive(Clone, Debug)]
pub struct Options {
    /// See [`classify::Options::idle_threshold`].
    pub idle_threshold: Option<f64>,
    /// Retire connections after this many seconds without packets.
    pub conn_timeout: f64,
    /// Connection-tracking threads (1: everything on the calling thread, in
    /// a deterministic order).
    pub threads: usize,
    /// Hand only connections with an RST to the sink (the others are
    /// still tracked and counted in [`Stats`], but never summarized).
    pub resets_only: bool,
}

impl Options {
    /// The summary of a finished connection, if it is handed to the sink,
    /// written into strings recycled in `scratch`.
    fn summary(
        &self,
        c: &rstscope_core::flow::Conn,
        scratch: &mut classify::Scratch,
    ) -> Option<ConnSummary> {
        (c.resets > 0 || !self.resets_only).then(|| {
            let copts = classify::Options {
                idle_threshold: self.idle_threshold,
            };
            summary::summarize_with(c, &copts, scratch)
        })
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_threshold: None,
            conn_timeout: 7500.0,
            threads: 1,
            resets_only: false,
        }
    }
}

/// Counters of what was read.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Packets read from the capture.
    pub packets: u64,
    /// TCP segments analysed.
    pub tcp: u64,
    /// Valid packets of other protocols.
    pub non_tcp: u64,
    /// Non-first IP fragments.
    pub fragments: u64,
    /// Packets that could not be decoded, by reason.
    pub malformed: BTreeMap<String, u64>,
    /// Packets of link types rstscope does not decode, by link type.
    pub unsupported_link: BTreeMap<u32, u64>,
    /// TCP connections.
    pub connections: u64,
    /// Connections with at least one RST.
    pub reset_connections: u64,
    /// Most connections open at once.
    pub peak_open: usize,
    /// First and last packet times.
    pub first_ts: Option<f64>,
    /// Last packet time.
    pub last_ts: Option<f64>,
}

impl Stats {
    fn skip(&mut self, s: Skip) {
        match s {
            Skip::NotTcp => self.non_tcp += 1,
            Skip::Fragment => self.fragments += 1,
            Skip::UnsupportedLink(l) => *self.unsupported_link.entry(l).or_default() += 1,
            Skip::Malformed(why) => *self.malformed.entry(why.to_string()).or_default() += 1,
        }
    }

    /// Total packets not analysed as TCP.
    pub fn skipped(&self) -> u64 {
        self.non_tcp
            + self.fragments
            + self.malformed.values().sum::<u64>()
            + self.unsupported_link.values().sum::<u64>()
    }
}

/// The result of [`analyze_file`].
#[derive(Debug)]
pub struct Analysis {
    /// Every connection, in the order they ended.
    pub connections: Vec<ConnSummary>,
    /// What was read.
    pub stats: Stats,
    /// The read error that stopped the analysis early, if any (results up to it are kept).
    pub error: Option<String>,
}

/// Streams a capture through the core, handing each finished connection to `sink`.
/// Returns the statistics and the read error, if the capture was damaged.
///
/// With `opts.threads > 1` the work is split: one thread reads and decodes
/// packets, `threads` trackers each own the connections whose flow hash
/// falls to them, and `sink` runs on the calling thread. Every connection
/// is analysed exactly as with one thread; only the order in which
/// connections from different trackers reach `sink` may vary.
pub fn stream(
    reader: CaptureReader,
    opts: &Options,
    mut sink: impl FnMut(ConnSummary) -> io::Result<()>,
    progress: impl FnMut(u64),
) -> io::Result<(Stats, Option<String>)> {
    stream_with(
        reader,
        opts,
        &Summaries,
        |group| group.into_iter().try_for_each(&mut sink),
        progress,
    )
}

/// How finished connections are gathered where they are summarized (on the
/// tracker threads when there are several) before they reach the calling
/// thread in groups. `rstscope analyze` renders JSON and Zeek lines there,
/// so the calling thread only writes bytes, and what a summary allocated is
/// freed by the thread that allocated it.
pub(crate) trait Collect: Sync {
    /// What the calling thread receives.
    type Group: Send;
    /// An empty group.
    fn group(&self) -> Self::Group;
    /// Adds one finished connection; what is not kept may go back to
    /// `scratch` (see [`summary::recycle`]).
    fn add(&self, group: &mut Self::Group, c: ConnSummary, scratch: &mut classify::Scratch);
    /// Whether nothing was added.
    fn is_empty(&self, group: &Self::Group) -> bool;
    /// Takes back a group that stayed empty (its memory may be reused).
    fn discard(&self, _group: Self::Group) {}
}

/// Hands on the summaries themselves.
struct Summaries;

impl Collect for Summaries {
    type Group = Vec<ConnSummary>;
    fn group(&self) -> Vec<ConnSummary> {
        Vec::new()
    }
    fn add(&self, group: &mut Vec<ConnSummary>, c: ConnSummary, _: &mut classify::Scratch) {
        group.push(c);
    }
    fn is_empty(&self, group: &Vec<ConnSummary>) -> bool {
        group.is_empty()
    }
}

/// [`stream`] with the gathering of connections chosen by the caller.
pub(crate) fn stream_with<C: Collect>(
    reader: CaptureReader,
    opts: &Options,
    collect: &C,
    sink: impl FnMut(C::Group) -> io::Result<()>,
    progress: impl FnMut(u64),
) -> io::Result<(Stats, Option<String>)> {
    if opts.threads <= 1 {
        stream_serial(reader, opts, collect, sink, progress)
    } else {
        pipeline::stream_parallel(reader, opts, collect, sink, progress)
    }
}

fn tracker_for(opts: &Options) -> Tracker {
    Tracker::new(TrackerConfig {
        idle_retire: (opts.conn_timeout * 1e9) as i64,
    })
}

/// What [`read_segments`] hands on.
enum Input<'a, 'b> {
    /// A captured frame (time, link type, bytes), offered before it is
    /// decoded: a consumer with a faster way for common frames takes it
    /// ([`Next::Go`]); otherwise ([`Next::Decode`]) it comes again as a
    /// `Segment`, or is counted as skipped.
    Frame(rstscope_core::Timestamp, u32, &'b [u8]),
    /// A TCP segment captured at this time.
    Segment(rstscope_core::Timestamp, &'a wire::Segment<'b>),
    /// The input has nothing more for now (a live pipe): pass on what is
    /// batched, flush what is printed.
    Idle(u64),
    /// Every 65,536 packets: the bytes consumed so far.
    Progress(u64),
}

/// A consumer's answer to an [`Input`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Go on reading.
    Go,
    /// Stop reading.
    Stop,
    /// Decode this [`Input::Frame`] (to anything else: go on).
    Decode,
}

/// [`read_segments`]' work for one packet: counted, offered as a frame,
/// decoded if not taken, and handed on (`Ok(false)`: stop reading).
#[inline(always)]
fn one_packet(
    stats: &mut Stats,
    first: &mut Option<rstscope_core::Timestamp>,
    last: &mut Option<rstscope_core::Timestamp>,
    on: &mut impl FnMut(Input) -> io::Result<Next>,
    p: Packet,
) -> io::Result<bool> {
    stats.packets += 1;
    first.get_or_insert(p.ts);
    *last = Some(p.ts);
    match on(Input::Frame(p.ts, p.linktype, p.data))? {
        Next::Go => return Ok(true),
        Next::Stop => return Ok(false),
        Next::Decode => {}
    }
    // Matched by reference: moving the segment out of the result copied it
    // in wider pieces than the decoder had stored it in, which stalls (no
    // store forwarding).
    match &wire::decode(p.linktype, p.data) {
        Ok(seg) => Ok(on(Input::Segment(p.ts, seg))? != Next::Stop),
        Err(s) => {
            stats.skip(*s);
            Ok(true)
        }
    }
}

/// The reading loop shared by both forms of [`stream`]: reads every packet,
/// offers it to `on` as an [`Input::Frame`], decodes what `on` does not
/// take, counts what is skipped and the time span in `stats`, and hands each
/// TCP segment to `on` (which answers [`Next::Stop`] to stop), with
/// [`Input::Idle`] whenever the next read would wait for input and
/// [`Input::Progress`] now and then. Returns the read error that ended the
/// capture early, if any.
fn read_segments(
    reader: &mut CaptureReader,
    stats: &mut Stats,
    mut on: impl FnMut(Input) -> io::Result<Next>,
) -> io::Result<Option<String>> {
    let mut error = None;
    let (mut first, mut last) = (None, None);
    loop {
        // The records the reader holds whole, up to the next progress
        // report, in one inlined loop (see
        // `CaptureReader::for_each_buffered`); then one through the
        // general path, which reads more input when it must.
        let room = 0x10000 - (stats.packets & 0xffff) as usize;
        // `Ok(true)` once `on` asked to stop, `Err` if it failed.
        let mut ended = Ok(false);
        let n = reader.for_each_buffered(room, |p| {
            match one_packet(stats, &mut first, &mut last, &mut on, p) {
                Ok(true) => true,
                stop => {
                    ended = stop.map(|_| true);
                    false
                }
            }
        });
        if ended? {
            break;
        }
        if n == 0 {
            match reader.next_packet() {
                Ok(Some(p)) => {
                    if !one_packet(stats, &mut first, &mut last, &mut on, p)? {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        if stats.packets & 0xffff == 0 {
            on(Input::Progress(reader.bytes_consumed()))?;
        }
        // Before a read that may wait (a live pipe that has delivered
        // everything written so far), let the consumer pass on its batch.
        if !reader.next_record_buffered() && on(Input::Idle(reader.bytes_consumed()))? == Next::Stop
        {
            break;
        }
    }
    stats.first_ts = first.map(|t: rstscope_core::Timestamp| t.as_secs_f64());
    stats.last_ts = last.map(|t: rstscope_core::Timestamp| t.as_secs_f64());
    Ok(error)
}

fn stream_serial<C: Collect>(
    mut reader: CaptureReader,
    opts: &Options,
    collect: &C,
    mut sink: impl FnMut(C::Group) -> io::Result<()>,
    mut progress: impl FnMut(u64),
) -> io::Result<(Stats, Option<String>)> {
    let mut tracker = tracker_for(opts);
    let mut stats = Stats::default();
    let mut scratch = classify::Scratch::default();
    let error = read_segments(&mut reader, &mut stats, |input| match input {
        Input::Frame(..) => Ok(Next::Decode),
        Input::Segment(ts, seg) => {
            tracker.packet(ts, seg);
            let mut group = None;
            tracker.drain_finished(|c| {
                if let Some(s) = opts.summary(c, &mut scratch) {
                    collect.add(
                        group.get_or_insert_with(|| collect.group()),
                        s,
                        &mut scratch,
                    );
                }
            });
            group.map_or(Ok(()), &mut sink).map(|_| Next::Go)
        }
        Input::Idle(bytes) | Input::Progress(bytes) => {
            progress(bytes);
            Ok(Next::Go)
        }
    })?;
    let mut rest = collect.group();
    for c in tracker.finish() {
        if let Some(s) = opts.summary(&c, &mut scratch) {
            collect.add(&mut rest, s, &mut scratch);
        }
    }
    if !collect.is_empty(&rest) {
        sink(rest)?;
    }
    stats.tcp = tracker.stats.segments;
    stats.connections = tracker.stats.connections;
    stats.peak_open = tracker.stats.peak_open;
    Ok((stats, error))
}

/// Analyses a whole capture file into memory (the lab's entry point; for
/// large captures use [`stream`]).
pub fn analyze_file(path: &Path, opts: &Options) -> anyhow::Result<Analysis> {
    let reader =
        CaptureReader::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut conns = Vec::new();
    let (mut stats, error) = stream(
        reader,
        opts,
        |c| {
            conns.push(c);
            Ok(())
        },
        |_| {},
    )?;
    stats.reset_connections = conns.iter().filter(|c| c.resets > 0).count() as u64;
    Ok(Analysis {
        connections: conns,
        stats,
        error,
    })
}

struct Filter {
    hosts: Vec<IpAddr>,
    ports: Vec<u16>,
    causes: Vec<Cause>,
    all: bool,
}

impl Filter {
    fn keep(&self, c: &ConnSummary) -> bool {
        if !self.all && c.reset.is_none() {
            return false;
        }
        if !self.hosts.is_empty()
            && !self
                .hosts
                .iter()
                .any(|h| *h == c.orig.ip() || *h == c.resp.ip())
        {
            return false;
        }
        if !self.ports.is_empty()
            && !self
                .ports
                .iter()
                .any(|p| *p == c.orig.port() || *p == c.resp.port())
        {
            return false;
        }
        if !self.causes.is_empty()
            && !c
                .reset
                .as_ref()
                .is_some_and(|r| self.causes.contains(&r.event.cause))
        {
            return false;
        }
        true
    }
}

/// Renders JSON or Zeek lines where connections are summarized; a group is
/// the number of connections with a reset and the lines of those the
/// filter keeps.
struct Lines<'a> {
    filter: &'a Filter,
    zeek: bool,
    /// Written buffers, handed back to the trackers. Without it every group
    /// grew a fresh buffer (copies as it doubled), and the calling thread
    /// freed memory the trackers' arenas had allocated (2,000 more page
    /// faults on the benchmark capture, of 25,500).
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Written buffers kept for reuse, at most (the groups in flight are fewer).
const SPARE_BUFFERS: usize = 32;

impl Lines<'_> {
    /// Returns a written buffer for reuse.
    fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < SPARE_BUFFERS {
                spare.push(buf);
            }
        }
    }
}

/// Bytes a group's buffer can hold before it first grows: a batch's
/// lines on the benchmark capture average 64 KB. Buffers grew from
/// nothing before, copying themselves at each doubling (697 times per
/// tracker on the benchmark capture), and a group that stayed empty
/// dropped its recycled buffer; with both mended the trackers execute
/// 0.7% fewer instructions (callgrind).
const GROUP_BYTES: usize = 128 * 1024;

impl Collect for Lines<'_> {
    type Group = (u64, Vec<u8>);
    fn group(&self) -> (u64, Vec<u8>) {
        let mut buf = self
            .spare
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        // (Reserved, not touched: the pages are faulted in only when written.)
        buf.reserve(GROUP_BYTES);
        (0, buf)
    }
    fn discard(&self, group: (u64, Vec<u8>)) {
        self.give_back(group.1);
    }
    fn add(&self, group: &mut (u64, Vec<u8>), c: ConnSummary, scratch: &mut classify::Scratch) {
        group.0 += (c.resets > 0) as u64;
        if self.filter.keep(&c) {
            // Writing into memory cannot fail.
            let _ = if self.zeek {
                render::zeek_line(&mut group.1, &c)
            } else {
                render::json_into(&mut group.1, &c)
            };
        }
        summary::recycle(c, scratch);
    }
    fn is_empty(&self, group: &(u64, Vec<u8>)) -> bool {
        group.0 == 0 && group.1.is_empty()
    }
}

/// Runs `rstscope analyze`.
pub fn run(args: Args) -> ExitCode {
    match run_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("rstscope analyze: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(t) = args.idle_threshold {
        anyhow::ensure!(
            t.is_finite() && t > 0.0,
            "--idle-threshold must be a positive number of seconds"
        );
    }
    anyhow::ensure!(args.conn_timeout > 0.0, "--conn-timeout must be positive");
    let name = args.file.display().to_string();
    let reader = CaptureReader::open(&args.file).with_context(|| format!("cannot read {name}"))?;
    let threads = match args.threads {
        // One more tracker than cores: with the reading thread beside them
        // the cores stay busy (measured on 2 cores: 0.306 s against 0.314 s
        // with two trackers on the benchmark capture).
        0 => match std::thread::available_parallelism().map(|n| n.get()) {
            Ok(1) | Err(_) => 1,
            Ok(n) => (n + 1).min(4),
        },
        n => n,
    };
    let filter = Filter {
        hosts: args.host.clone(),
        ports: args.port.clone(),
        causes: args.cause.clone(),
        all: args.all && args.format != Format::Human,
    };
    let opts = Options {
        idle_threshold: args.idle_threshold,
        conn_timeout: args.conn_timeout,
        threads,
        resets_only: !filter.all,
    };

    let bar = match reader.file_size() {
        Some(size) if !args.quiet && io::stderr().is_terminal() && name != "-" => {
            let b = indicatif::ProgressBar::new(size);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Some(b)
        }
        _ => None,
    };

    // A pipe (`tcpdump -w - | rstscope analyze -`) is followed live: what
    // is printed is flushed whenever the input pauses or results arrive.
    let live = reader.file_size().is_none();
    let stdout = io::stdout();
    let out = std::cell::RefCell::new(io::BufWriter::with_capacity(1 << 16, stdout.lock()));
    let mut human = render::HumanReport::new(args.limit);
    let mut reset_conns = 0u64;
    if args.format == Format::Zeek {
        render::zeek_header(&mut *out.borrow_mut())?;
    }
    let progress = |pos| {
        if let Some(b) = &bar {
            b.set_position(pos);
        }
        if live {
            // An error here shows again at the final flush.
            let _ = out.borrow_mut().flush();
        }
    };
    let result = match args.format {
        Format::Human => stream(
            reader,
            &opts,
            |c| {
                if c.resets > 0 {
                    reset_conns += 1;
                }
                if filter.keep(&c) {
                    human.add(c);
                }
                Ok(())
            },
            progress,
        ),
        Format::Json | Format::Zeek => {
            let lines = Lines {
                filter: &filter,
                zeek: args.format == Format::Zeek,
                spare: Default::default(),
            };
            stream_with(
                reader,
                &opts,
                &lines,
                |(resets, bytes)| {
                    reset_conns += resets;
                    let written = out.borrow_mut().write_all(&bytes);
                    lines.give_back(bytes);
                    written
                },
                progress,
            )
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let (mut stats, error) = result?;
    stats.reset_connections = reset_conns;
    let mut out = out.into_inner();
    match args.format {
        Format::Human => human.write(&mut out, &name, &stats, error.as_deref())?,
        Format::Zeek => render::zeek_footer(&mut out)?,
        Format::Json => {}
    }
    out.flush()?;
    drop(out);
    if !args.quiet && args.format != Format::Human {
        eprintln!("rstscope analyze: {}", render::stats_line(&stats));
    }
    if let Some(e) = error {
        eprintln!("rstscope analyze: {name}: {e}; results up to that point were reported");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
