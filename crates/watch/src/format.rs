//! Parser of a tracepoint's tracefs `format` file.
//!
//! The kernel describes each tracepoint's raw record in
//! `/sys/kernel/tracing/events/<group>/<name>/format`: its numeric id, one
//! line per field (`offset`, `size`, `signed`) and the `print fmt`, whose
//! `__print_symbolic(REC->field, { value, "NAME" }, ...)` parts are the only
//! place the running kernel publishes the number → name tables of
//! `enum sk_rst_reason` (renumbered in 6.11 and 6.12) and of TCP states.
//!
//! Pure: takes the file's text, never reads it.

use std::collections::HashMap;
use std::fmt;

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The C declaration's type part, e.g. `const void *` or `__u8`.
    pub ctype: String,
    /// The field name (array brackets removed).
    pub name: String,
    /// Byte offset in the raw record (from `common_type`).
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// Whether the kernel marks it signed.
    pub signed: bool,
}

/// A parsed `format` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFormat {
    /// Tracepoint name (`tcp_send_reset`).
    pub name: String,
    /// Numeric id: the `config` of a `PERF_TYPE_TRACEPOINT` event, and the
    /// value of `common_type` in every record of this tracepoint.
    pub id: u32,
    /// Fields, common ones included, in file order.
    pub fields: Vec<Field>,
    /// `__print_symbolic` tables by field name: value → name.
    pub symbols: HashMap<String, Vec<(i64, String)>>,
}

/// A `format` file that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tracepoint format: {}", self.0)
    }
}

impl std::error::Error for FormatError {}

/// The TCP state numbers of `include/net/tcp_states.h`. They have never
/// changed (they are visible to user space through `ss`/inet_diag), but some
/// format files print them by name only (`{ TCP_ESTABLISHED, "TCP_ESTABLISHED" }`),
/// so a symbolic table whose keys are identifiers is resolved through this.
pub const TCP_STATES: &[(i64, &str)] = &[
    (1, "TCP_ESTABLISHED"),
    (2, "TCP_SYN_SENT"),
    (3, "TCP_SYN_RECV"),
    (4, "TCP_FIN_WAIT1"),
    (5, "TCP_FIN_WAIT2"),
    (6, "TCP_TIME_WAIT"),
    (7, "TCP_CLOSE"),
    (8, "TCP_CLOSE_WAIT"),
    (9, "TCP_LAST_ACK"),
    (10, "TCP_LISTEN"),
    (11, "TCP_CLOSING"),
    (12, "TCP_NEW_SYN_RECV"),
];

/// Identifiers the format files use as keys of symbolic tables.
fn resolve_ident(s: &str) -> Option<i64> {
    TCP_STATES
        .iter()
        .find(|(_, n)| *n == s)
        .map(|(v, _)| *v)
        .or(match s {
            "AF_INET" => Some(2),
            "AF_INET6" => Some(10),
            "IPPROTO_TCP" => Some(6),
            _ => None,
        })
}

fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

impl TraceFormat {
    /// Parses the text of a `format` file.
    pub fn parse(text: &str) -> Result<TraceFormat, FormatError> {
        let mut tf = TraceFormat::default();
        let mut have_id = false;
        for line in text.lines() {
            let l = line.trim();
            if let Some(n) = l.strip_prefix("name:") {
                tf.name = n.trim().to_string();
            } else if let Some(i) = l.strip_prefix("ID:") {
                tf.id = i
                    .trim()
                    .parse()
                    .map_err(|_| FormatError(format!("bad ID line {l:?}")))?;
                have_id = true;
            } else if l.starts_with("field:") {
                tf.fields.push(parse_field(l)?);
            } else if let Some(p) = l.strip_prefix("print fmt:") {
                tf.symbols = parse_symbolic(p);
            }
        }
        if !have_id {
            return Err(FormatError("no ID line".into()));
        }
        if tf.fields.is_empty() {
            return Err(FormatError("no fields".into()));
        }
        Ok(tf)
    }

    /// The field called `name`, if any.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The name for `value` in the symbolic table of `field`.
    pub fn symbol(&self, field: &str, value: i64) -> Option<&str> {
        self.symbols
            .get(field)?
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, n)| n.as_str())
    }

    /// The value whose name is `name` in the symbolic table of `field`.
    pub fn symbol_value(&self, field: &str, name: &str) -> Option<i64> {
        self.symbols
            .get(field)?
            .iter()
            .find(|(_, n)| n == name)
            .map(|(v, _)| *v)
    }
}

/// `field:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;`
fn parse_field(l: &str) -> Result<Field, FormatError> {
    let bad = || FormatError(format!("bad field line {l:?}"));
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for part in l.split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d.trim());
        } else if let Some(o) = part.strip_prefix("offset:") {
            offset = o.trim().parse::<usize>().ok();
        } else if let Some(s) = part.strip_prefix("size:") {
            size = s.trim().parse::<usize>().ok();
        } else if let Some(s) = part.strip_prefix("signed:") {
            signed = s.trim() == "1";
        }
    }
    let decl = decl.ok_or_else(bad)?;
    // The name is the last identifier of the declaration, before any `[N]`.
    let base = decl.split('[').next().unwrap_or(decl).trim_end();
    let split = base
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(|i| i + 1)
        .unwrap_or(0);
    let name = &base[split..];
    if name.is_empty() {
        return Err(bad());
    }
    Ok(Field {
        ctype: base[..split].trim().to_string(),
        name: name.to_string(),
        offset: offset.ok_or_else(bad)?,
        size: size.ok_or_else(bad)?,
        signed,
    })
}

/// Finds every `__print_symbolic(REC->field, { v, "NAME" }, ...)` in a
/// print fmt. Keys that are neither numbers nor known identifiers are
/// skipped (never guessed).
fn parse_symbolic(p: &str) -> HashMap<String, Vec<(i64, String)>> {
    const KEY: &str = "__print_symbolic(";
    let mut out: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    let mut rest = p;
    while let Some(i) = rest.find(KEY) {
        rest = &rest[i + KEY.len()..];
        let Some(comma) = rest.find(',') else { break };
        let target = rest[..comma].trim();
        let field = target
            .strip_prefix("REC->")
            .unwrap_or(target)
            .trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace())
            .to_string();
        rest = &rest[comma + 1..];
        let mut table = Vec::new();
        // Entries `{ key, "NAME" }` until the closing parenthesis of the call.
        loop {
            let t = rest.trim_start();
            if !t.starts_with('{') {
                break;
            }
            let Some(close) = t.find('}') else { break };
            let entry = &t[1..close];
            rest = t[close + 1..].trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
            let Some((k, v)) = entry.split_once(',') else {
                continue;
            };
            let name = v.trim().trim_matches('"').to_string();
            let key = parse_int(k).or_else(|| resolve_ident(k.trim()));
            if let Some(key) = key {
                table.push((key, name));
            }
        }
        if !table.is_empty() {
            out.entry(field).or_default().extend(table);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_symbols_of_the_618_format() {
        let f = TraceFormat::parse(crate::fixtures::SEND_RESET_6_18).unwrap();
        assert_eq!(f.name, "tcp_send_reset");
        assert_eq!(f.id, 2280);
        let r = f.field("reason").unwrap();
        assert_eq!(
            (r.offset, r.size, r.ctype.as_str()),
            (28, 4, "enum sk_rst_reason")
        );
        let s = f.field("saddr").unwrap();
        assert_eq!((s.offset, s.size), (32, 28));
        assert_eq!(f.symbol("reason", 11), Some("TCP_ABORT_ON_CLOSE"));
        assert_eq!(f.symbol("reason", 15), Some("TCP_KEEPALIVE_TIMEOUT"));
        assert_eq!(f.symbol_value("reason", "NO_SOCKET"), Some(1));
        // State names are identifiers in this file, resolved by tcp_states.h.
        assert_eq!(f.symbol("state", 7), Some("TCP_CLOSE"));
        assert_eq!(f.symbol("state", 6), Some("TCP_TIME_WAIT"));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(TraceFormat::parse("").is_err());
        assert!(TraceFormat::parse("ID: x\n").is_err());
        assert!(TraceFormat::parse("ID: 1\nfield:int;\n").is_err());
        assert!(TraceFormat::parse("ID: 1\nfield:int a;\toffset:zz;\tsize:4;\n").is_err());
        // Unterminated symbolic tables are tolerated.
        let t = "ID: 3\nfield:int a;\toffset:8;\tsize:4;\tsigned:1;\nprint fmt: \"%s\", __print_symbolic(REC->a, { 1, \"X\" }, { 2";
        let f = TraceFormat::parse(t).unwrap();
        assert_eq!(f.symbol("a", 1), Some("X"));
        assert_eq!(f.symbol("a", 2), None);
    }
}
