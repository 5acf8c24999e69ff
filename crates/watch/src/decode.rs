//! The record decoder: a pure function from (parsed `format` files, raw
//! sample bytes) to a typed record. No I/O, so it is tested on recorded
//! samples of real kernels (see `fixtures`).
//!
//! Three tracepoints are decoded:
//! - `tcp:tcp_send_reset`: 6.10+ layout (`saddr`/`daddr` are whole
//!   `struct sockaddr_in6`, plus `reason`) and the older layout of the
//!   `tcp_event_sk_skb` class (`sport`, `dport`, `family`, `saddr[4]`,
//!   `saddr_v6[16]`, ..., no reason);
//! - `tcp:tcp_receive_reset`: the `tcp_event_sk` class (with `sock_cookie`
//!   since 5.x);
//! - `sock:inet_sock_set_state`: used to learn the state a socket was in
//!   when it received a reset, and which task opened it.
//!
//! Offsets always come from the format file; nothing is assumed but the
//! field names.

use crate::format::{Field, TraceFormat};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `common_flags` bits of a trace record (`TRACE_FLAG_*` of
/// `include/linux/trace_events.h`): the context the tracepoint fired in.
pub mod flags {
    /// Fired in hard-interrupt context.
    pub const HARDIRQ: u8 = 0x08;
    /// Fired while serving a softirq (packet receive, timers).
    pub const SOFTIRQ: u8 = 0x10;
    /// Fired in NMI context.
    pub const NMI: u8 = 0x40;
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Why a raw sample could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The sample is shorter than a field the format says it has.
    Truncated {
        /// The field that did not fit.
        field: String,
        /// The sample's length.
        len: usize,
    },
    /// The format file lacks a field this decoder needs.
    MissingField(&'static str),
    /// The record's `common_type` is none of the decoded tracepoints.
    UnknownType(u16),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { field, len } => {
                write!(f, "sample of {len} bytes too short for field {field}")
            }
            DecodeError::MissingField(n) => write!(f, "tracepoint format lacks field {n}"),
            DecodeError::UnknownType(t) => write!(f, "record of unknown tracepoint id {t}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The parsed formats of the tracepoints, as read from the running kernel.
#[derive(Clone, Debug)]
pub struct Formats {
    /// `tcp:tcp_send_reset`.
    pub send: TraceFormat,
    /// `tcp:tcp_receive_reset`.
    pub receive: TraceFormat,
    /// `sock:inet_sock_set_state`, when available.
    pub set_state: Option<TraceFormat>,
}

impl Formats {
    /// Whether the kernel's `tcp_send_reset` carries the reset reason (6.10+).
    pub fn has_reason(&self) -> bool {
        self.send.field("reason").is_some()
    }

    /// Checks that every field the decoder needs exists, so that a kernel
    /// with an unexpected layout fails at start, not on the first reset.
    pub fn validate(&self) -> Result<(), DecodeError> {
        for n in [
            "common_type",
            "common_flags",
            "common_pid",
            "skaddr",
            "state",
        ] {
            need(&self.send, n)?;
        }
        if self.send.field("saddr").map(|f| f.size) != Some(28) {
            for n in ["sport", "dport", "saddr", "daddr"] {
                need(&self.send, n)?;
            }
        }
        for n in ["skaddr", "sport", "dport", "saddr", "daddr"] {
            need(&self.receive, n)?;
        }
        if let Some(s) = &self.set_state {
            for n in ["skaddr", "oldstate", "newstate", "sport", "dport", "family"] {
                need(s, n)?;
            }
        }
        Ok(())
    }
}

fn need<'a>(tf: &'a TraceFormat, name: &'static str) -> Result<&'a Field, DecodeError> {
    tf.field(name).ok_or(DecodeError::MissingField(name))
}

/// Fields every trace record starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Common {
    /// `TRACE_FLAG_*` bits (see [`flags`]).
    pub flags: u8,
    /// The task that was running (thread id), 0 for the idle task.
    pub pid: i32,
}

impl Common {
    /// Whether the tracepoint fired in interrupt context (softirq, hardirq,
    /// NMI), where the running task is unrelated to the socket.
    pub fn in_interrupt(&self) -> bool {
        self.flags & (flags::HARDIRQ | flags::SOFTIRQ | flags::NMI) != 0
    }
}

/// A decoded `tcp_send_reset` record: the local host sent a reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentReset {
    /// Common fields.
    pub common: Common,
    /// The socket (0 when no socket matched the segment).
    pub skaddr: u64,
    /// The socket's state number (`None` when the kernel stored 0: no socket).
    pub state: Option<i32>,
    /// The state's name from the format file (`TCP_CLOSE`).
    pub state_name: Option<String>,
    /// The reason number, when the kernel has the field (6.10+).
    pub reason: Option<u32>,
    /// The reason's name from this kernel's table (`TCP_ABORT_ON_CLOSE`).
    pub reason_name: Option<String>,
    /// The RST's source: the local address.
    pub local: SocketAddr,
    /// The RST's destination: the remote address.
    pub remote: SocketAddr,
}

/// A decoded `tcp_receive_reset` record: a local socket received a reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedReset {
    /// Common fields.
    pub common: Common,
    /// The socket.
    pub skaddr: u64,
    /// The socket cookie (what sock_diag reports), when the kernel has it.
    pub cookie: Option<u64>,
    /// The socket's local address (the RST's destination).
    pub local: SocketAddr,
    /// The remote address (the RST's source).
    pub remote: SocketAddr,
}

/// A decoded `inet_sock_set_state` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// Common fields.
    pub common: Common,
    /// The socket.
    pub skaddr: u64,
    /// Old state number.
    pub old: i32,
    /// New state number.
    pub new: i32,
    /// Protocol (6 = TCP), when present.
    pub protocol: Option<u16>,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// `tcp_send_reset`.
    Sent(SentReset),
    /// `tcp_receive_reset`.
    Received(ReceivedReset),
    /// `inet_sock_set_state`.
    State(StateChange),
}

fn bytes<'a>(raw: &'a [u8], f: &Field) -> Result<&'a [u8], DecodeError> {
    raw.get(f.offset..f.offset.saturating_add(f.size))
        .filter(|b| b.len() == f.size)
        .ok_or_else(|| DecodeError::Truncated {
            field: f.name.clone(),
            len: raw.len(),
        })
}

/// Reads an unsigned integer field of 1, 2, 4 or 8 bytes in the machine's
/// byte order (trace buffers are written in native order).
fn uint(raw: &[u8], f: &Field) -> Result<u64, DecodeError> {
    let b = bytes(raw, f)?;
    Ok(match b.len() {
        1 => b[0] as u64,
        2 => u16::from_ne_bytes([b[0], b[1]]) as u64,
        4 => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as u64,
        8 => u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        _ => {
            return Err(DecodeError::Truncated {
                field: f.name.clone(),
                len: raw.len(),
            })
        }
    })
}

fn sint(raw: &[u8], f: &Field) -> Result<i64, DecodeError> {
    let v = uint(raw, f)?;
    Ok(if f.signed {
        match f.size {
            1 => v as u8 as i8 as i64,
            2 => v as u16 as i16 as i64,
            4 => v as u32 as i32 as i64,
            _ => v as i64,
        }
    } else {
        v as i64
    })
}

fn get(tf: &TraceFormat, raw: &[u8], name: &'static str) -> Result<u64, DecodeError> {
    uint(raw, need(tf, name)?)
}

fn common(tf: &TraceFormat, raw: &[u8]) -> Result<Common, DecodeError> {
    Ok(Common {
        flags: get(tf, raw, "common_flags")? as u8,
        pid: sint(raw, need(tf, "common_pid")?)? as i32,
    })
}

/// Decodes a `struct sockaddr_in`/`sockaddr_in6` stored whole in the
/// record (6.10+ `tcp_send_reset`). Family 0 (nothing stored) gives
/// `0.0.0.0:0`.
pub fn sockaddr(b: &[u8]) -> SocketAddr {
    let fam = if b.len() >= 2 {
        u16::from_ne_bytes([b[0], b[1]])
    } else {
        0
    };
    let port = if b.len() >= 4 {
        u16::from_be_bytes([b[2], b[3]])
    } else {
        0
    };
    match fam {
        AF_INET6 if b.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            SocketAddr::new(canonical(Ipv6Addr::from(a)), port)
        }
        AF_INET if b.len() >= 8 => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7])), port)
        }
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) are shown as IPv4.
fn canonical(a: Ipv6Addr) -> IpAddr {
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(a),
    }
}

/// Decodes the `sport/dport/family/saddr/daddr/saddr_v6/daddr_v6` group of
/// the `tcp_event_sk*` classes and `inet_sock_set_state`. `sport` is the
/// socket's local port (stored in host order). Returns (local, remote).
fn split_addrs(tf: &TraceFormat, raw: &[u8]) -> Result<(SocketAddr, SocketAddr), DecodeError> {
    let sport = get(tf, raw, "sport")? as u16;
    let dport = get(tf, raw, "dport")? as u16;
    let s4 = bytes(raw, need(tf, "saddr")?)?;
    let d4 = bytes(raw, need(tf, "daddr")?)?;
    let v6 = |name: &'static str| -> Result<Option<Ipv6Addr>, DecodeError> {
        match tf.field(name) {
            Some(f) if f.size == 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(bytes(raw, f)?);
                Ok(Some(Ipv6Addr::from(a)))
            }
            _ => Ok(None),
        }
    };
    let family = match tf.field("family") {
        Some(f) => Some(uint(raw, f)? as u16),
        None => None,
    };
    let v4 = |b: &[u8]| -> IpAddr {
        if b.len() >= 4 {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    };
    let (s6, d6) = (v6("saddr_v6")?, v6("daddr_v6")?);
    // Kernels without `family` store v4 sockets as v4-mapped in the v6 fields.
    let use_v6 = match family {
        Some(f) => f == AF_INET6,
        None => s6.is_some_and(|a| a.to_ipv4_mapped().is_none() && !a.is_unspecified()),
    };
    let (ls, rs) = match (use_v6, s6, d6) {
        (true, Some(s), Some(d)) => (canonical(s), canonical(d)),
        _ => (v4(s4), v4(d4)),
    };
    Ok((SocketAddr::new(ls, sport), SocketAddr::new(rs, dport)))
}

fn decode_sent(tf: &TraceFormat, raw: &[u8]) -> Result<SentReset, DecodeError> {
    let common = common(tf, raw)?;
    let skaddr = get(tf, raw, "skaddr")?;
    let state_raw = sint(raw, need(tf, "state")?)? as i32;
    let state = (state_raw != 0).then_some(state_raw);
    let state_name = state.map(|s| {
        tf.symbol("state", s as i64)
            .map(str::to_string)
            .unwrap_or_else(|| format!("STATE_{s}"))
    });
    let (reason, reason_name) = match tf.field("reason") {
        Some(f) => {
            let r = uint(raw, f)? as u32;
            let name = tf
                .symbol("reason", r as i64)
                .map(str::to_string)
                .unwrap_or_else(|| format!("REASON_{r}"));
            (Some(r), Some(name))
        }
        None => (None, None),
    };
    let (local, remote) = match tf.field("saddr") {
        Some(f) if f.size == 28 => {
            let s = bytes(raw, f)?;
            let d = bytes(raw, need(tf, "daddr")?)?;
            (sockaddr(s), sockaddr(d))
        }
        _ => split_addrs(tf, raw)?,
    };
    Ok(SentReset {
        common,
        skaddr,
        state,
        state_name,
        reason,
        reason_name,
        local,
        remote,
    })
}

fn decode_received(tf: &TraceFormat, raw: &[u8]) -> Result<ReceivedReset, DecodeError> {
    let (local, remote) = split_addrs(tf, raw)?;
    Ok(ReceivedReset {
        common: common(tf, raw)?,
        skaddr: get(tf, raw, "skaddr")?,
        cookie: match tf.field("sock_cookie") {
            Some(f) => Some(uint(raw, f)?),
            None => None,
        },
        local,
        remote,
    })
}

fn decode_state(tf: &TraceFormat, raw: &[u8]) -> Result<StateChange, DecodeError> {
    let (local, remote) = split_addrs(tf, raw)?;
    Ok(StateChange {
        common: common(tf, raw)?,
        skaddr: get(tf, raw, "skaddr")?,
        old: sint(raw, need(tf, "oldstate")?)? as i32,
        new: sint(raw, need(tf, "newstate")?)? as i32,
        protocol: match tf.field("protocol") {
            Some(f) => Some(uint(raw, f)? as u16),
            None => None,
        },
        local,
        remote,
    })
}

/// The tracepoint id (`common_type`) of a raw record.
pub fn record_type(raw: &[u8]) -> Option<u16> {
    raw.get(0..2).map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

/// Decodes one raw sample (the `PERF_SAMPLE_RAW` payload, which starts at
/// `common_type`). Never panics on short or odd input.
pub fn decode(f: &Formats, raw: &[u8]) -> Result<Record, DecodeError> {
    let t = record_type(raw).ok_or(DecodeError::Truncated {
        field: "common_type".into(),
        len: raw.len(),
    })?;
    if t as u32 == f.send.id {
        decode_sent(&f.send, raw).map(Record::Sent)
    } else if t as u32 == f.receive.id {
        decode_received(&f.receive, raw).map(Record::Received)
    } else if let Some(s) = f.set_state.as_ref().filter(|s| s.id == t as u32) {
        decode_state(s, raw).map(Record::State)
    } else {
        Err(DecodeError::UnknownType(t))
    }
}

/// The name of TCP state `n` (`TCP_SYN_SENT`), from `tcp_states.h`.
pub fn state_name(n: i32) -> Option<&'static str> {
    crate::format::TCP_STATES
        .iter()
        .find(|(v, _)| *v == n as i64)
        .map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{formats_618, hex, raw618};

    fn sent(f: &Formats, h: &str) -> SentReset {
        match decode(f, &hex(h)).unwrap() {
            Record::Sent(s) => s,
            r => panic!("not a sent reset: {r:?}"),
        }
    }

    #[test]
    fn decodes_618_sent_resets() {
        let f = formats_618();
        f.validate().unwrap();
        assert!(f.has_reason());
        let s = sent(&f, raw618::SENT_NO_SOCKET_V4);
        assert_eq!(s.reason_name.as_deref(), Some("NO_SOCKET"));
        assert_eq!((s.state, s.skaddr), (None, 0));
        assert!(s.common.in_interrupt());
        assert_eq!(s.local, "127.0.0.1:42319".parse().unwrap());
        assert_eq!(s.remote, "127.0.0.1:48864".parse().unwrap());

        let s = sent(&f, raw618::SENT_ABORT_ON_CLOSE_V6);
        assert_eq!(s.reason, Some(11));
        assert_eq!(s.reason_name.as_deref(), Some("TCP_ABORT_ON_CLOSE"));
        assert_eq!(s.state_name.as_deref(), Some("TCP_CLOSE"));
        assert!(!s.common.in_interrupt());
        assert_eq!(s.common.pid, 0x6f93);
        assert_eq!(s.local, "[::1]:47005".parse().unwrap());
        assert_eq!(s.remote, "[::1]:41122".parse().unwrap());

        let s = sent(&f, raw618::SENT_LINGER0_V4);
        assert_eq!(s.reason_name.as_deref(), Some("TCP_STATE"));
        assert_eq!(s.local, "127.0.0.1:43365".parse().unwrap());

        let s = sent(&f, raw618::SENT_ABORT_ON_DATA_V4);
        assert_eq!(s.reason_name.as_deref(), Some("TCP_ABORT_ON_DATA"));
        assert_eq!(s.local, "198.18.2.2:7001".parse().unwrap());
        assert_eq!(s.remote, "198.18.1.2:54929".parse().unwrap());
    }

    #[test]
    fn decodes_618_received_resets_and_state_changes() {
        let f = formats_618();
        let Record::Received(r) = decode(&f, &hex(raw618::RECEIVED_V4)).unwrap() else {
            panic!()
        };
        assert_eq!(r.local, "127.0.0.1:48864".parse().unwrap());
        assert_eq!(r.remote, "127.0.0.1:42319".parse().unwrap());
        assert_eq!(r.cookie, Some(3));
        let Record::Received(r6) = decode(&f, &hex(raw618::RECEIVED_V6)).unwrap() else {
            panic!()
        };
        assert_eq!(r6.local, "[::1]:41122".parse().unwrap());
        assert_eq!(r6.remote, "[::1]:47005".parse().unwrap());
        let Record::State(s) = decode(&f, &hex(raw618::STATE_SYN_SENT_TO_CLOSE)).unwrap() else {
            panic!()
        };
        assert_eq!((s.old, s.new, s.skaddr), (2, 7, r.skaddr));
        assert_eq!(s.local, r.local);
    }

    #[test]
    fn a_different_reason_table_gives_different_names() {
        // 6.10 numbered TCP_ABORT_ON_CLOSE differently: the name comes from
        // the format file, never from a built-in table.
        let mut f = formats_618();
        let t = f.send.symbols.get_mut("reason").unwrap();
        for (v, n) in t.iter_mut() {
            if *v == 11 {
                *n = "SOMETHING_ELSE".into();
            }
        }
        let s = sent(&f, raw618::SENT_ABORT_ON_CLOSE_V6);
        assert_eq!(s.reason_name.as_deref(), Some("SOMETHING_ELSE"));
    }

    /// Builds a pre-6.10 `tcp_send_reset` record as the kernel writes it.
    fn pre610_sample(id: u16) -> Vec<u8> {
        let mut b = vec![0u8; 76];
        b[0..2].copy_from_slice(&id.to_ne_bytes());
        b[2] = 0; // process context
        b[4..8].copy_from_slice(&4242i32.to_ne_bytes());
        b[8..16].copy_from_slice(&0xffff_8881_0000_1000u64.to_ne_bytes());
        b[16..24].copy_from_slice(&0xffff_8881_0000_2000u64.to_ne_bytes());
        b[24..28].copy_from_slice(&7i32.to_ne_bytes()); // TCP_CLOSE
        b[28..30].copy_from_slice(&8080u16.to_ne_bytes());
        b[30..32].copy_from_slice(&5555u16.to_ne_bytes());
        b[32..34].copy_from_slice(&2u16.to_ne_bytes());
        b[34..38].copy_from_slice(&[10, 0, 0, 1]);
        b[38..42].copy_from_slice(&[10, 0, 0, 2]);
        b[42..58].copy_from_slice(&"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
        b[58..74].copy_from_slice(&"::ffff:10.0.0.2".parse::<Ipv6Addr>().unwrap().octets());
        b
    }

    #[test]
    fn decodes_the_pre_610_layout() {
        let mut f = formats_618();
        f.send = TraceFormat::parse(crate::fixtures::SEND_RESET_PRE_6_10).unwrap();
        f.validate().unwrap();
        assert!(!f.has_reason());
        let s = sent(
            &f,
            &pre610_sample(1419)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
        assert_eq!(s.reason, None);
        assert_eq!(s.state_name.as_deref(), Some("TCP_CLOSE"));
        assert_eq!(s.local, "10.0.0.1:8080".parse().unwrap());
        assert_eq!(s.remote, "10.0.0.2:5555".parse().unwrap());
        assert_eq!(s.common.pid, 4242);
        // IPv6 socket in the old layout.
        let mut b = pre610_sample(1419);
        b[32..34].copy_from_slice(&10u16.to_ne_bytes());
        b[42..58].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        b[58..74].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        let Record::Sent(s) = decode(&f, &b).unwrap() else {
            panic!()
        };
        assert_eq!(s.local, "[2001:db8::1]:8080".parse().unwrap());
        let v = crate::classify::sent(s.reason_name.as_deref(), s.state_name.as_deref());
        assert!(v.evidence.contains("no reset reason"));
    }

    #[test]
    fn truncated_and_unknown_records_are_errors_not_panics() {
        let f = formats_618();
        let full = hex(raw618::SENT_ABORT_ON_CLOSE_V6);
        for n in 0..60 {
            assert!(decode(&f, &full[..n]).is_err(), "len {n}");
        }
        assert_eq!(decode(&f, &[1, 0, 0, 0]), Err(DecodeError::UnknownType(1)));
        let recv = hex(raw618::RECEIVED_V4);
        for n in 0..recv.len().min(70) {
            let _ = decode(&f, &recv[..n]);
        }
    }
}
