//! Output formats: NDJSON, Zeek conn.log, and the human report.

use crate::summary::ConnSummary;
use crate::Stats;
use rstscope_core::{text, Cause, Sender};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, Write};

/// Writes one NDJSON line: the field names and order of
/// `--format json` (see the README), exactly as `serde_json` would write
/// them.
///
/// Written by hand because it is hot: serde's per-byte escaping of ~900
/// bytes of mostly plain text per line cost as much as tracking the
/// connection. Strings that may need escaping (history, evidence) still
/// go through `serde_json`, floats use its shortest-form formatter, and a
/// test compares every line with serde's output.
pub fn json_line(out: &mut impl Write, c: &ConnSummary) -> io::Result<()> {
    let mut b = Vec::with_capacity(1024);
    json_into(&mut b, c)?;
    out.write_all(&b)
}

/// [`json_line`] into a buffer: appends the line (with its newline) to `b`.
/// `rstscope analyze` renders lines this way on its tracking threads.
pub(crate) fn json_into(b: &mut Vec<u8>, c: &ConnSummary) -> io::Result<()> {
    let orig = text::socket_text(c.orig);
    let resp = text::socket_text(c.resp);
    b.extend_from_slice(b"{\"orig\":\"");
    b.extend_from_slice(orig.as_bytes());
    b.extend_from_slice(b"\",\"resp\":\"");
    b.extend_from_slice(resp.as_bytes());
    b.extend_from_slice(b"\",\"start\":");
    float(b, c.start.as_secs_f64());
    b.extend_from_slice(b",\"end\":");
    float(b, c.end.as_secs_f64());
    b.extend_from_slice(b",\"duration\":");
    float(b, c.duration);
    b.extend_from_slice(b",\"conn_state\":");
    id(b, c.conn_state);
    b.extend_from_slice(b",\"history\":");
    string(b, &c.history)?;
    for (k, v) in [
        (&b",\"orig_pkts\":"[..], c.orig_pkts),
        (b",\"resp_pkts\":", c.resp_pkts),
        (b",\"orig_bytes\":", c.orig_bytes),
        (b",\"resp_bytes\":", c.resp_bytes),
        (b",\"orig_wire_bytes\":", c.orig_wire_bytes),
        (b",\"resp_wire_bytes\":", c.resp_wire_bytes),
        (b",\"resets\":", c.resets as u64),
    ] {
        b.extend_from_slice(k);
        b.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
    b.extend_from_slice(b",\"reset\":");
    match &c.reset {
        None => b.extend_from_slice(b"null"),
        Some(r) => {
            b.extend_from_slice(b"{\"ts\":");
            float(b, r.event.ts.as_secs_f64());
            b.extend_from_slice(b",\"from\":");
            id(b, r.event.from.map(|s| s.id()).unwrap_or("unknown"));
            b.extend_from_slice(b",\"sender\":");
            id(b, r.event.sender.id());
            b.extend_from_slice(b",\"cause\":");
            id(b, r.event.cause.id());
            b.extend_from_slice(b",\"confidence\":");
            float(b, r.event.confidence);
            b.extend_from_slice(b",\"evidence\":[");
            for (k, e) in r.event.evidence.iter().enumerate() {
                if k > 0 {
                    b.push(b',');
                }
                string(b, e)?;
            }
            b.extend_from_slice(b"],\"idle_before_s\":");
            float(b, r.idle_before_s);
            b.extend_from_slice(b",\"ttl\":");
            b.extend_from_slice(itoa::Buffer::new().format(r.ttl).as_bytes());
            b.extend_from_slice(b",\"expected_ttl\":");
            match r.expected_ttl {
                Some(t) => b.extend_from_slice(itoa::Buffer::new().format(t).as_bytes()),
                None => b.extend_from_slice(b"null"),
            }
            for (k, a) in [
                (&b",\"src\":\""[..], r.event.src),
                (b",\"dst\":\"", r.event.dst),
            ] {
                b.extend_from_slice(k);
                if a == c.orig {
                    b.extend_from_slice(orig.as_bytes());
                } else if a == c.resp {
                    b.extend_from_slice(resp.as_bytes());
                } else {
                    b.extend_from_slice(text::socket_text(a).as_bytes());
                }
                b.push(b'"');
            }
            b.push(b'}');
        }
    }
    b.extend_from_slice(b"}\n");
    Ok(())
}

/// A JSON string: plain text is copied, anything else escaped by serde.
#[inline]
fn string(b: &mut Vec<u8>, s: &str) -> io::Result<()> {
    // A branch-free scan, which the compiler vectorizes.
    let special = s.bytes().fold(false, |acc, c| {
        acc | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if !special {
        b.push(b'"');
        b.extend_from_slice(s.as_bytes());
        b.push(b'"');
        Ok(())
    } else {
        Ok(serde_json::to_writer(b, s)?)
    }
}

/// One of rstscope's own identifiers (a cause, a sender, a Zeek state):
/// lower-case letters, digits and `_`, which JSON never escapes, so it is
/// copied without [`string`]'s scan.
#[inline]
fn id(b: &mut Vec<u8>, s: &'static str) {
    debug_assert!(s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
    b.push(b'"');
    b.extend_from_slice(s.as_bytes());
    b.push(b'"');
}

/// A JSON number as serde_json writes it: the shortest text that reads back
/// as the same float (serde_json writes it with `zmij` too), `null` when
/// not finite.
#[inline]
fn float<F: zmij::Float + Copy + IsFinite>(b: &mut Vec<u8>, f: F) {
    if f.finite() {
        b.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes());
    } else {
        b.extend_from_slice(b"null");
    }
}

/// `is_finite` for the two float types [`float`] writes.
trait IsFinite {
    fn finite(self) -> bool;
}
impl IsFinite for f64 {
    fn finite(self) -> bool {
        self.is_finite()
    }
}
impl IsFinite for f32 {
    fn finite(self) -> bool {
        self.is_finite()
    }
}

const ZEEK_FIELDS: &[(&str, &str)] = &[
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
    ("reset_from", "string"),
    ("reset_sender", "string"),
    ("reset_cause", "string"),
    ("reset_confidence", "double"),
];

/// Writes Zeek's log header lines.
pub fn zeek_header(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "#separator \\x09")?;
    writeln!(out, "#set_separator\t,")?;
    writeln!(out, "#empty_field\t(empty)")?;
    writeln!(out, "#unset_field\t-")?;
    writeln!(out, "#path\tconn")?;
    writeln!(out, "#open\t{}", zeek_time_now())?;
    let names: Vec<&str> = ZEEK_FIELDS.iter().map(|f| f.0).collect();
    let types: Vec<&str> = ZEEK_FIELDS.iter().map(|f| f.1).collect();
    writeln!(out, "#fields\t{}", names.join("\t"))?;
    writeln!(out, "#types\t{}", types.join("\t"))
}

/// Writes Zeek's closing line.
pub fn zeek_footer(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "#close\t{}", zeek_time_now())
}

fn zeek_time_now() -> String {
    // Zeek writes local wall-clock time here; the exact value carries no
    // meaning for readers, so UTC from the system clock is used.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}-{h:02}-{mi:02}-{s:02}")
}

/// Seconds since the epoch to (year, month, day, hour, minute, second), UTC.
pub fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86400);
    let rem = t.rem_euclid(86400);
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// A deterministic Zeek-style uid ("C" + 17 base62 characters) for a connection.
fn uid(c: &ConnSummary) -> String {
    // FNV-1a over the 4-tuple and start time: stable across runs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let key = format!("{}{}{}", c.orig, c.resp, c.start.0);
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut s = String::from("C");
    let mut x = h as u128 | ((h.rotate_left(29) as u128) << 64);
    for _ in 0..17 {
        s.push(A[(x % 62) as usize] as char);
        x /= 62;
    }
    s
}

/// Writes one conn.log line.
pub fn zeek_line(out: &mut impl Write, c: &ConnSummary) -> io::Result<()> {
    let (rf, rs, rc, rconf) = match &c.reset {
        Some(r) => (
            r.event.from.map(|s| s.id()).unwrap_or("-"),
            r.event.sender.id(),
            r.event.cause.id(),
            format!("{:.2}", r.event.confidence),
        ),
        None => ("-", "-", "-", "-".to_string()),
    };
    let hist = if c.history.is_empty() {
        "-"
    } else {
        c.history.as_str()
    };
    writeln!(
        out,
        "{:.6}\t{}\t{}\t{}\t{}\t{}\ttcp\t-\t{:.6}\t{}\t{}\t{}\t-\t-\t0\t{}\t{}\t{}\t{}\t{}\t-\t{}\t{}\t{}\t{}",
        c.start.as_secs_f64(),
        uid(c),
        c.orig.ip(),
        c.orig.port(),
        c.resp.ip(),
        c.resp.port(),
        c.duration,
        c.orig_bytes,
        c.resp_bytes,
        c.conn_state,
        hist,
        c.orig_pkts,
        c.orig_ip_bytes,
        c.resp_pkts,
        c.resp_ip_bytes,
        rf,
        rs,
        rc,
        rconf
    )
}

/// `n` and the noun, in the plural unless `n` is 1 ("1 connection", "2 connections").
fn counted(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// One line of statistics (packets, TCP, skipped, connections).
pub fn stats_line(s: &Stats) -> String {
    let mut line = format!(
        "{}, {}, {} ({} with a reset)",
        counted(s.packets, "packet"),
        counted(s.tcp, "TCP segment"),
        counted(s.connections, "connection"),
        s.reset_connections
    );
    let skipped = s.skipped();
    if skipped > 0 {
        let mut parts = Vec::new();
        if s.non_tcp > 0 {
            parts.push(format!("{} not TCP", s.non_tcp));
        }
        if s.fragments > 0 {
            parts.push(format!("{} IP fragments", s.fragments));
        }
        let bad: u64 = s.malformed.values().sum();
        if bad > 0 {
            let why: Vec<String> = s
                .malformed
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            parts.push(format!("{bad} unparseable ({})", why.join(", ")));
        }
        for (lt, n) in &s.unsupported_link {
            parts.push(format!("{n} of unsupported link type {lt}"));
        }
        line.push_str(&format!("; skipped {skipped}: {}", parts.join(", ")));
    }
    line
}

/// Collects reset connections and prints the human report.
pub struct HumanReport {
    limit: usize,
    by_cause: BTreeMap<Cause, u64>,
    by_sender: BTreeMap<Sender, u64>,
    /// The most telling connections so far, the least telling on top (so it
    /// is the one to drop), at most `min(limit, KEEP)`.
    shown: BinaryHeap<Reverse<Telling>>,
    total: u64,
}

/// Most connections kept in memory for the detailed list; the summary
/// counts every one.
const KEEP: usize = 10_000;

/// A reset connection ordered by how telling it is (greater: more):
/// middlebox verdicts first, then by confidence, then the earlier RST, then
/// by addresses, so that which connections are shown does not depend on the
/// order they arrive in (with several tracking threads it varies).
struct Telling(ConnSummary);

impl Ord for Telling {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.0, &other.0);
        let (ra, rb) = (
            &a.reset.as_ref().expect("only reset connections").event,
            &b.reset.as_ref().expect("only reset connections").event,
        );
        let ma = ra.sender == Sender::Middlebox;
        let mb = rb.sender == Sender::Middlebox;
        ma.cmp(&mb)
            .then(ra.confidence.total_cmp(&rb.confidence))
            .then(rb.ts.cmp(&ra.ts))
            .then(b.orig.cmp(&a.orig))
            .then(b.resp.cmp(&a.resp))
            .then(b.start.cmp(&a.start))
    }
}

impl PartialOrd for Telling {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Telling {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Telling {}

impl HumanReport {
    /// A report that details at most `limit` connections.
    pub fn new(limit: usize) -> Self {
        HumanReport {
            limit,
            by_cause: BTreeMap::new(),
            by_sender: BTreeMap::new(),
            shown: BinaryHeap::new(),
            total: 0,
        }
    }

    /// Adds a connection (only those with a reset count).
    pub fn add(&mut self, c: ConnSummary) {
        let Some(r) = &c.reset else { return };
        self.total += 1;
        *self.by_cause.entry(r.event.cause).or_default() += 1;
        *self.by_sender.entry(r.event.sender).or_default() += 1;
        let c = Telling(c);
        if self.shown.len() < self.limit.min(KEEP) {
            self.shown.push(Reverse(c));
        } else if let Some(mut least) = self.shown.peek_mut() {
            if c > least.0 {
                *least = Reverse(c);
            }
        }
    }

    /// Writes the report.
    pub fn write(
        &mut self,
        out: &mut impl Write,
        name: &str,
        stats: &Stats,
        error: Option<&str>,
    ) -> io::Result<()> {
        let span = match (stats.first_ts, stats.last_ts) {
            (Some(a), Some(b)) => format!(", {:.1} s of traffic", b - a),
            _ => String::new(),
        };
        writeln!(out, "rstscope analyze {name}{span}")?;
        writeln!(out, "  {}", stats_line(stats))?;
        if let Some(e) = error {
            writeln!(
                out,
                "  warning: {e}; only the packets before it were analysed"
            )?;
        }
        writeln!(out)?;
        if self.total == 0 {
            writeln!(out, "No TCP resets in this capture.")?;
            return Ok(());
        }
        writeln!(
            out,
            "Resets by cause ({}):",
            counted(self.total, "connection")
        )?;
        let mut causes: Vec<_> = self.by_cause.iter().collect();
        causes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (c, n) in causes {
            writeln!(out, "  {:<19} {:>7}  {}", c.id(), n, c.info().summary)?;
        }
        writeln!(out, "By sender:")?;
        for (s, n) in &self.by_sender {
            let what = match s {
                Sender::Endpoint => "the host whose address the RST carries",
                Sender::Middlebox => "a device on the path, forging an endpoint's address",
                Sender::Unknown => "not enough evidence",
            };
            writeln!(out, "  {:<19} {:>7}  {}", s.id(), n, what)?;
        }
        writeln!(out)?;

        // Most telling first (see `Telling`); `into_sorted_vec` sorts
        // ascending, which for `Reverse` is the most telling first.
        let shown: Vec<ConnSummary> = std::mem::take(&mut self.shown)
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(Telling(c))| c)
            .collect();
        let n = shown.len();
        writeln!(out, "Reset connections, most telling first:")?;
        for c in &shown {
            let r = c.reset.as_ref().expect("kept");
            let e = &r.event;
            let (y, mo, d, h, mi, s) = civil(e.ts.0.div_euclid(1_000_000_000));
            let frac = e.ts.0.rem_euclid(1_000_000_000) / 1000;
            writeln!(out)?;
            writeln!(
                out,
                "  {} -> {}  {} {}  RST at {y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{frac:06} UTC",
                c.orig, c.resp, c.conn_state, c.history
            )?;
            writeln!(
                out,
                "    {}: RST from the {} ({}), sent by {}, confidence {:.2}",
                e.cause,
                e.from.map(|f| f.id()).unwrap_or("unknown side"),
                e.src,
                match e.sender {
                    Sender::Endpoint => "the endpoint itself",
                    Sender::Middlebox => "a middlebox",
                    Sender::Unknown =>
                        "the endpoint or a device on the path (not enough evidence to tell)",
                },
                e.confidence
            )?;
            for line in &e.evidence {
                writeln!(out, "    - {line}")?;
            }
            if let Some(step) = e.cause.info().next_steps.first() {
                writeln!(out, "    next: {step}")?;
            }
        }
        if self.total as usize > n {
            writeln!(out)?;
            writeln!(
                out,
                "... and {} more (--limit N to show more, --format json for all)",
                self.total as usize - n
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::civil;
    use crate::ConnSummary;
    use rstscope_core::text;
    use std::io::{self, Write};

    #[derive(serde::Serialize)]
    struct JsonReset<'a> {
        ts: f64,
        from: &'static str,
        sender: &'static str,
        cause: &'static str,
        confidence: f32,
        evidence: &'a [String],
        idle_before_s: f64,
        ttl: u8,
        expected_ttl: Option<u8>,
        src: String,
        dst: String,
    }

    #[derive(serde::Serialize)]
    struct JsonConn<'a> {
        orig: String,
        resp: String,
        start: f64,
        end: f64,
        duration: f64,
        conn_state: &'static str,
        history: &'a str,
        orig_pkts: u64,
        resp_pkts: u64,
        orig_bytes: u64,
        resp_bytes: u64,
        orig_wire_bytes: u64,
        resp_wire_bytes: u64,
        resets: u32,
        reset: Option<JsonReset<'a>>,
    }

    /// The NDJSON line as serde writes it: the reference the fast writer must match.
    pub(crate) fn json_line_serde(out: &mut impl Write, c: &ConnSummary) -> io::Result<()> {
        let orig = text::socket_string(c.orig);
        let resp = text::socket_string(c.resp);
        let name = |a: std::net::SocketAddr| {
            if a == c.orig {
                orig.clone()
            } else if a == c.resp {
                resp.clone()
            } else {
                text::socket_string(a)
            }
        };
        let reset = c.reset.as_ref().map(|r| JsonReset {
            ts: r.event.ts.as_secs_f64(),
            from: r.event.from.map(|s| s.id()).unwrap_or("unknown"),
            sender: r.event.sender.id(),
            cause: r.event.cause.id(),
            confidence: r.event.confidence,
            evidence: &r.event.evidence,
            idle_before_s: r.idle_before_s,
            ttl: r.ttl,
            expected_ttl: r.expected_ttl,
            src: name(r.event.src),
            dst: name(r.event.dst),
        });
        let j = JsonConn {
            orig,
            resp,
            start: c.start.as_secs_f64(),
            end: c.end.as_secs_f64(),
            duration: c.duration,
            conn_state: c.conn_state,
            history: &c.history,
            orig_pkts: c.orig_pkts,
            resp_pkts: c.resp_pkts,
            orig_bytes: c.orig_bytes,
            resp_bytes: c.resp_bytes,
            orig_wire_bytes: c.orig_wire_bytes,
            resp_wire_bytes: c.resp_wire_bytes,
            resets: c.resets,
            reset,
        };
        serde_json::to_writer(&mut *out, &j)?;
        out.write_all(b"\n")
    }

    /// The fast writer's lines are byte for byte serde's, for every
    /// connection of the repository's real captures and for text that needs
    /// escaping.
    #[test]
    fn json_lines_equal_serde() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut conns: Vec<ConnSummary> = Vec::new();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let r = rstscope_capture::CaptureReader::open(&f).unwrap();
            crate::stream(
                r,
                &crate::Options::default(),
                |c| {
                    conns.push(c);
                    Ok(())
                },
                |_| {},
            )
            .unwrap();
        }
        assert!(conns.iter().filter(|c| c.reset.is_some()).count() >= 9);
        let mut odd = conns.iter().find(|c| c.reset.is_some()).unwrap().clone();
        odd.history = "Sh\"\\\u{1}é".into();
        if let Some(r) = odd.reset.as_mut() {
            r.event
                .evidence
                .push("the RST carries text: \"a\\b\tc\"".into());
            r.expected_ttl = None;
            r.idle_before_s = f64::NAN;
        }
        conns.push(odd);
        for c in &conns {
            let mut fast = Vec::new();
            super::json_line(&mut fast, c).unwrap();
            let mut reference = Vec::new();
            json_line_serde(&mut reference, c).unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(reference).unwrap()
            );
        }
    }

    #[test]
    fn counts_read_in_the_singular_and_the_plural() {
        let mut s = crate::Stats {
            packets: 1,
            tcp: 1,
            connections: 1,
            reset_connections: 1,
            ..Default::default()
        };
        assert_eq!(
            super::stats_line(&s),
            "1 packet, 1 TCP segment, 1 connection (1 with a reset)"
        );
        s.packets = 2;
        s.tcp = 0;
        s.connections = 10;
        assert_eq!(
            super::stats_line(&s),
            "2 packets, 0 TCP segments, 10 connections (1 with a reset)"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
    }
}
