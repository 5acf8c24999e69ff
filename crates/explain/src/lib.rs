//! `rstscope explain`: turns an error message into what happened at the TCP
//! level, the likely causes (ids of `CAUSES.md`) and what to run next.
//!
//! The knowledge is data: [`table::RULES`] recognises the messages of the
//! runtimes and tools, and every cause is explained from the shared table
//! [`rstscope_core::cause::CAUSES`]. [`explain`] is a pure function that the
//! doctor, the analyzer and the watcher can call.
//!
//! Exit codes of the command: 0 recognised, 1 not recognised, 2 usage or
//! input error.

#![warn(missing_docs)]

pub mod table;

use rstscope_core::Cause;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use table::{Pat, Rule, RULES};

/// The POSIX errno values a reset-related message can stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// Connection reset by peer (Linux 104, Winsock 10054).
    Econnreset,
    /// Broken pipe (32).
    Epipe,
    /// Connection refused (Linux 111, Winsock 10061).
    Econnrefused,
    /// Connection timed out (Linux 110, Winsock 10060).
    Etimedout,
    /// Software caused connection abort (Linux 103, Winsock 10053).
    Econnaborted,
}

impl Errno {
    /// Every errno the explainer knows.
    pub const ALL: &'static [Errno] = &[
        Errno::Econnreset,
        Errno::Epipe,
        Errno::Econnrefused,
        Errno::Etimedout,
        Errno::Econnaborted,
    ];
    /// The POSIX name, e.g. `ECONNRESET`.
    pub fn name(self) -> &'static str {
        match self {
            Errno::Econnreset => "ECONNRESET",
            Errno::Epipe => "EPIPE",
            Errno::Econnrefused => "ECONNREFUSED",
            Errno::Etimedout => "ETIMEDOUT",
            Errno::Econnaborted => "ECONNABORTED",
        }
    }
    /// The number on Linux.
    pub fn linux(self) -> u32 {
        match self {
            Errno::Econnreset => 104,
            Errno::Epipe => 32,
            Errno::Econnrefused => 111,
            Errno::Etimedout => 110,
            Errno::Econnaborted => 103,
        }
    }
    /// The Winsock number (`WSAE...`), where there is one.
    pub fn winsock(self) -> Option<u32> {
        match self {
            Errno::Econnreset => Some(10054),
            Errno::Epipe => None,
            Errno::Econnrefused => Some(10061),
            Errno::Etimedout => Some(10060),
            Errno::Econnaborted => Some(10053),
        }
    }
}

impl Serialize for Errno {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What the peer really did, as far as the message tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// A TCP reset arrived.
    Rst,
    /// An orderly close (FIN) that the message makes look like a reset.
    Fin,
    /// Nothing arrived: a timer expired.
    Timeout,
    /// The message does not say.
    Unknown,
}

impl Signal {
    /// The stable id used in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Signal::Rst => "rst",
            Signal::Fin => "fin",
            Signal::Timeout => "timeout",
            Signal::Unknown => "unknown",
        }
    }
}

/// The answer for one message. Serializes to exactly
/// `{recognized, errno, signal, causes, explanation, next_steps}`.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// Whether a rule of the table matched.
    pub recognized: bool,
    /// The POSIX errno the message stands for.
    pub errno: Option<Errno>,
    /// What the peer really did.
    pub signal: Signal,
    /// Likely causes, most likely first.
    pub causes: Vec<Cause>,
    /// What happened at the TCP level.
    pub explanation: String,
    /// What to run or check next.
    pub next_steps: Vec<String>,
    /// The rule that matched (not part of the JSON).
    #[serde(skip)]
    pub rule: Option<&'static Rule>,
}

/// Longest input read from stdin; the rest is ignored (error messages and
/// stack traces are far shorter).
pub const MAX_INPUT: usize = 1 << 20;

/// Explains one message (any length; a stack trace is fine). Pure.
pub fn explain(text: &str) -> Explanation {
    let lower = text.to_lowercase();
    let nums = errno_numbers(text);
    let rule = RULES
        .iter()
        .find(|r| r.when.iter().any(|p| matches(p, text, &lower, &nums)));
    match rule {
        Some(r) => from_rule(r, text, &nums),
        None => Explanation {
            recognized: false,
            errno: None,
            signal: Signal::Unknown,
            causes: Vec::new(),
            explanation: "rstscope does not recognise this message as a reset-related error. It knows errno names and numbers (ECONNRESET/104, EPIPE/32, ECONNREFUSED/111, ETIMEDOUT/110, ECONNABORTED/103) and the messages of Java, Go, Python, Node.js, Rust, .NET, curl, nginx, HAProxy, PostgreSQL and Redis clients and OpenSSL.".to_string(),
            next_steps: vec![
                "paste the exact error line, including the errno or exception name".to_string(),
                "if a connection was cut, capture it (`tcpdump -i any -w rst.pcap 'tcp port PORT'`) and run `rstscope analyze rst.pcap`".to_string(),
            ],
            rule: None,
        },
    }
}

fn from_rule(r: &'static Rule, text: &str, nums: &[u32]) -> Explanation {
    // A rule without its own errno takes one the message names.
    let errno = r.errno.or_else(|| {
        Errno::ALL.iter().copied().find(|e| {
            has_word(text, e.name())
                || nums.contains(&e.linux())
                || e.winsock().is_some_and(|w| nums.contains(&w))
        })
    });
    let mut next: Vec<String> = r.next.iter().map(|s| s.to_string()).collect();
    // One step per likely cause, from the shared cause table.
    for c in r.causes {
        if let Some(step) = c.info().next_steps.first() {
            let step = format!("if {}: {}", c.id(), step);
            if !next.contains(&step) {
                next.push(step);
            }
        }
    }
    Explanation {
        recognized: true,
        errno,
        signal: r.signal,
        causes: r.causes.to_vec(),
        explanation: r.tcp.to_string(),
        next_steps: next,
        rule: Some(r),
    }
}

fn matches(p: &Pat, text: &str, lower: &str, nums: &[u32]) -> bool {
    match *p {
        Pat::Seq(frags) => {
            let mut at = 0;
            for f in frags {
                match lower[at..].find(f) {
                    Some(i) => at += i + f.len(),
                    None => return false,
                }
            }
            true
        }
        Pat::Word(w) => has_word(text, w),
        Pat::Num(n) => nums.contains(&n),
        Pat::Haproxy(code) => haproxy_state(text, lower, code),
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `w` occurs in `text` with no word character on either side.
fn has_word(text: &str, w: &str) -> bool {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(w) {
        let s = from + i;
        let e = s + w.len();
        let before_ok = s == 0 || !is_word_byte(b[s - 1]);
        let after_ok = e == b.len() || !is_word_byte(b[e]);
        if before_ok && after_ok {
            return true;
        }
        from = s + 1;
        while !text.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

/// HAProxy termination states: `SD--`-style 4-character tokens of HTTP
/// logs anywhere; the bare 2-character code only when the text mentions
/// haproxy or is just that code (TCP logs), so "CD" in prose is not taken.
fn haproxy_state(text: &str, lower: &str, code: &str) -> bool {
    let t = text.trim();
    if t == code {
        return true;
    }
    let haproxy = lower.contains("haproxy");
    t.split_whitespace().any(|tok| {
        if tok.len() == 4 && tok.is_ascii() && tok.starts_with(code) {
            let b = tok.as_bytes();
            // 3rd char: persistence cookie state, 4th: cookie operation.
            b"-NIDVEOU".contains(&b[2]) && b"-NIUPRD".contains(&b[3])
        } else {
            haproxy && tok == code
        }
    })
}

/// Numbers that appear in an errno context: `[Errno 104]`, `errno 104`,
/// `errno=104`, `(104: ` (nginx), `os error 104` (Rust), `Error 104 while`
/// (redis-py), `(10054)`/`(104,` (Windows, Python tuples), `code 104`, or
/// the whole text being a number.
pub fn errno_numbers(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let t = text.trim();
    if !t.is_empty() && t.len() <= 6 && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = t.parse() {
            out.push(n);
        }
    }
    let lower = text.to_ascii_lowercase();
    let b = lower.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &lower[start..i];
        if digits.len() > 6 {
            continue;
        }
        let Ok(n) = digits.parse::<u32>() else {
            continue;
        };
        let before = lower[..start].trim_end_matches([' ', '=', ':']);
        let after = &lower[i..];
        let ctx_before = before.ends_with("errno")
            || before.ends_with("os error")
            || before.ends_with("error")
            || before.ends_with("code")
            || before.ends_with("socketexception (")
            || before.ends_with("[errno");
        let paren = start > 0 && b[start - 1] == b'(';
        let ctx_paren =
            paren && (after.starts_with(": ") || after.starts_with(')') || after.starts_with(", "));
        if (ctx_before || ctx_paren) && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Command-line arguments of `rstscope explain`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when the message is recognised, 1 when it is not, 2 on a usage or input error."
)]
pub struct Args {
    /// The error message (several words are joined with spaces). Absent or
    /// `-`: read it from standard input.
    #[arg(value_name = "TEXT")]
    pub text: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A report for people.
    Human,
    /// `{recognized, errno, signal, causes, explanation, next_steps}`.
    Json,
}

/// Runs `rstscope explain`.
pub fn run(args: Args) -> ExitCode {
    let text = if args.text.is_empty() || (args.text.len() == 1 && args.text[0] == "-") {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("rstscope explain: reading the message from standard input (Ctrl-D to end)");
        }
        let mut buf = Vec::new();
        if let Err(e) = stdin.lock().take(MAX_INPUT as u64).read_to_end(&mut buf) {
            eprintln!("rstscope explain: cannot read standard input: {e}");
            return ExitCode::from(2);
        }
        String::from_utf8_lossy(&buf).into_owned()
    } else {
        args.text.join(" ")
    };
    if text.trim().is_empty() {
        eprintln!("rstscope explain: no message given (pass TEXT or pipe it on standard input)");
        return ExitCode::from(2);
    }
    let ex = explain(&text);
    let out = match args.format {
        Format::Json => match serde_json::to_string_pretty(&ex) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("rstscope explain: {e}");
                return ExitCode::from(2);
            }
        },
        Format::Human => render(&ex),
    };
    if let Err(e) = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("rstscope explain: {e}");
            return ExitCode::from(2);
        }
    }
    if ex.recognized {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The human report for one explanation.
pub fn render(ex: &Explanation) -> String {
    let mut s = String::new();
    let Some(rule) = ex.rule else {
        let _ = writeln!(s, "not recognised.\n\n{}\n\nNext:", ex.explanation);
        for n in &ex.next_steps {
            let _ = writeln!(s, "  - {n}");
        }
        return s;
    };
    let _ = writeln!(s, "recognised as: {} [rule {}]", rule.source, rule.id);
    match ex.errno {
        Some(e) => {
            let _ = writeln!(s, "errno:      {} ({} on Linux)", e.name(), e.linux());
        }
        None => {
            let _ = writeln!(s, "errno:      none");
        }
    }
    let what = match ex.signal {
        Signal::Rst => "the peer, or a device using its address, sent a TCP reset",
        Signal::Fin => "an orderly close (FIN), not a reset, is behind this message",
        Signal::Timeout => "nothing came back: a timer expired",
        Signal::Unknown => "the message does not say whether a reset or a FIN arrived",
    };
    let _ = writeln!(s, "signal:     {}: {what}", ex.signal.id());
    let _ = writeln!(s, "\nWhat happened at the TCP level:\n  {}", ex.explanation);
    if !ex.causes.is_empty() {
        let _ = writeln!(s, "\nLikely causes:");
        for c in &ex.causes {
            let info = c.info();
            let _ = writeln!(s, "  {:<19} {}", c.id(), info.summary);
            if !info.typical_origin.is_empty() {
                let _ = writeln!(s, "  {:<19} typically: {}", "", info.typical_origin);
            }
        }
    }
    let _ = writeln!(s, "\nNext:");
    for n in &ex.next_steps {
        let _ = writeln!(s, "  - {n}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fragments_are_lowercase_and_rules_unique() {
        let mut ids = std::collections::HashSet::new();
        for r in RULES {
            assert!(ids.insert(r.id), "duplicate rule id {}", r.id);
            assert!(!r.when.is_empty(), "{} has no pattern", r.id);
            for p in r.when {
                if let Pat::Seq(f) = p {
                    for frag in *f {
                        assert_eq!(*frag, frag.to_lowercase(), "{}: {frag:?}", r.id);
                        assert!(!frag.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn errno_numbers_need_context() {
        assert_eq!(
            errno_numbers("[Errno 104] Connection reset by peer"),
            vec![104]
        );
        assert_eq!(
            errno_numbers("recv() failed (104: Connection reset by peer)"),
            vec![104]
        );
        assert_eq!(errno_numbers("Broken pipe (os error 32)"), vec![32]);
        assert_eq!(errno_numbers("104"), vec![104]);
        assert!(errno_numbers("listening on port 104 since 1999").is_empty());
        assert!(errno_numbers("HTTP/1.1 200 OK, 104 bytes").is_empty());
        assert_eq!(
            errno_numbers("ConnectionResetError(10054, 'x')"),
            vec![10054]
        );
        // Long digit runs never overflow.
        assert!(errno_numbers("errno 99999999999999999999999").is_empty());
    }

    #[test]
    fn haproxy_codes_need_log_context() {
        assert!(explain("SD--").recognized);
        assert!(!explain("CD player").recognized);
        assert!(explain("haproxy[1]: 10.0.0.1:5 fe be/s 0/0/0 1 SD 1/1/0/0/0 0/0").recognized);
        assert!(!explain("we shipped the SDK").recognized);
    }

    #[test]
    fn words_respect_boundaries() {
        assert!(has_word("Error: read ECONNRESET", "ECONNRESET"));
        assert!(!has_word("XECONNRESETS", "ECONNRESET"));
        assert!(has_word("é ECONNRESET é", "ECONNRESET"));
    }

    #[test]
    fn garbage_and_empty_are_not_recognised() {
        for t in [
            "",
            "   ",
            "hello world",
            "\u{0}\u{1}\u{fffd}",
            "404 Not Found",
        ] {
            let e = explain(t);
            assert!(!e.recognized, "{t:?}");
            assert!(e.causes.is_empty());
            assert_eq!(e.signal, Signal::Unknown);
        }
    }

    #[test]
    fn json_has_exactly_the_documented_keys() {
        let v = serde_json::to_value(explain("read: connection reset by peer")).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "causes",
                "errno",
                "explanation",
                "next_steps",
                "recognized",
                "signal"
            ]
        );
        assert_eq!(v["errno"], "ECONNRESET");
        assert_eq!(v["signal"], "rst");
        assert_eq!(v["causes"][0], "unread_data_close");
    }
}
