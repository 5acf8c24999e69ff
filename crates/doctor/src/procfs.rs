//! Pure parsers for the `/proc` files the doctor reads.
//!
//! Written by hand rather than with the `procfs` crate: these formats are a
//! few lines of whitespace-separated text, the doctor must read them from a
//! namespace-switched thread (`/proc/thread-self/net/...`) and from recorded
//! fixtures, and it must survive kernels that add, drop or reorder fields.
//! Every function takes the file's text and never panics; anything odd is
//! reported in the returned warnings instead of failing.

use std::collections::BTreeMap;

/// Counters of `/proc/net/snmp` or `/proc/net/netstat`, keyed the way
/// `nstat` names them: prefix plus field (`TcpOutRsts`,
/// `TcpExtListenOverflows`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Counter values. Signed: `TcpMaxConn` is -1.
    pub values: BTreeMap<String, i64>,
    /// Lines that did not parse, with the reason.
    pub warnings: Vec<String>,
}

impl Counters {
    /// The value of one counter, if the kernel has it.
    pub fn get(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied()
    }
    /// Adds another file's counters (snmp + netstat).
    pub fn merge(&mut self, other: Counters) {
        self.values.extend(other.values);
        self.warnings.extend(other.warnings);
    }
}

/// Parses the header/value line pairs of `/proc/net/snmp` and
/// `/proc/net/netstat`:
///
/// ```text
/// Tcp: RtoAlgorithm RtoMin ... OutRsts InCsumErrors
/// Tcp: 1 200 ... 9 0
/// ```
///
/// A header line is followed by a value line with the same prefix. A
/// missing value line, a count mismatch (the shorter list wins) or a
/// non-numeric value is reported as a warning.
pub fn parse_counters(text: &str) -> Counters {
    let mut out = Counters::default();
    let mut pending: Option<(&str, Vec<&str>)> = None;
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((prefix, rest)) = line.split_once(':') else {
            out.warnings
                .push(format!("line {}: no `Prefix:` ignored", lineno + 1));
            continue;
        };
        let prefix = prefix.trim();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let is_header = fields
            .first()
            .is_some_and(|f| f.chars().next().is_some_and(|c| c.is_ascii_alphabetic()));
        match pending.take() {
            // The line after a header with the same prefix is its value line,
            // whatever it holds.
            Some((p, names)) if p == prefix => {
                if names.len() != fields.len() {
                    out.warnings.push(format!(
                        "{prefix}: {} names but {} values; using the first {}",
                        names.len(),
                        fields.len(),
                        names.len().min(fields.len())
                    ));
                }
                for (n, v) in names.iter().zip(fields.iter()) {
                    match v.parse::<i64>() {
                        Ok(v) => {
                            out.values.insert(format!("{prefix}{n}"), v);
                        }
                        Err(_) => match v.parse::<u64>() {
                            // Counters above i64::MAX: clamp rather than drop.
                            Ok(_) => {
                                out.values.insert(format!("{prefix}{n}"), i64::MAX);
                            }
                            Err(_) => out
                                .warnings
                                .push(format!("{prefix}{n}: value {v:?} is not a number")),
                        },
                    }
                }
            }
            Some((p, _)) => {
                out.warnings
                    .push(format!("{p}: header line without a value line"));
                if is_header {
                    pending = Some((prefix, fields));
                } else {
                    out.warnings
                        .push(format!("{prefix}: value line without a header line"));
                }
            }
            None => {
                if is_header {
                    pending = Some((prefix, fields));
                } else {
                    out.warnings
                        .push(format!("{prefix}: value line without a header line"));
                }
            }
        }
    }
    if let Some((p, _)) = pending {
        out.warnings
            .push(format!("{p}: header line without a value line"));
    }
    out
}

/// `/proc/net/sockstat` (and `sockstat6`): `PROTO: key value key value`.
/// Keys are `PROTO.key` (`TCP.orphan`, `TCP.mem`, `sockets.used`).
pub fn parse_sockstat(text: &str) -> Counters {
    let mut out = Counters::default();
    for (lineno, line) in text.lines().enumerate() {
        let Some((proto, rest)) = line.split_once(':') else {
            if !line.trim().is_empty() {
                out.warnings
                    .push(format!("sockstat line {}: no `PROTO:`", lineno + 1));
            }
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() & 1 == 1 {
            out.warnings.push(format!(
                "sockstat {proto}: odd number of fields; the last is ignored"
            ));
        }
        for kv in f.chunks_exact(2) {
            match kv[1].parse::<i64>() {
                Ok(v) => {
                    out.values.insert(format!("{}.{}", proto.trim(), kv[0]), v);
                }
                Err(_) => out.warnings.push(format!(
                    "sockstat {}.{}: {:?} is not a number",
                    proto.trim(),
                    kv[0],
                    kv[1]
                )),
            }
        }
    }
    out
}

/// A list of integers such as `tcp_mem` (`min pressure max`). `None` if any
/// field is not a number or the list is empty.
pub fn parse_ints(text: &str) -> Option<Vec<i64>> {
    let v: Result<Vec<i64>, _> = text.split_whitespace().map(str::parse).collect();
    v.ok().filter(|v| !v.is_empty())
}

/// The soft limit of "Max open files" in `/proc/PID/limits`; `None` when
/// absent, and `Some(u64::MAX)` for `unlimited`.
pub fn parse_nofile_soft(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// The command name in `/proc/PID/stat`'s second field (between the first
/// `(` and the last `)`), or from `/proc/PID/comm`.
pub fn comm_from_stat(stat: &str) -> Option<String> {
    let s = stat.find('(')?;
    let e = stat.rfind(')')?;
    (e > s).then(|| stat[s + 1..e].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = include_str!("../tests/fixtures/snmp");
    const NETSTAT: &str = include_str!("../tests/fixtures/netstat");
    const SOCKSTAT: &str = include_str!("../tests/fixtures/sockstat");

    #[test]
    fn recorded_snmp_parses() {
        let c = parse_counters(SNMP);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.get("TcpMaxConn"), Some(-1));
        assert_eq!(c.get("TcpRtoMin"), Some(200));
        assert!(c.get("TcpOutRsts").is_some());
        assert!(c.get("TcpEstabResets").is_some());
        assert!(c.get("TcpAttemptFails").is_some());
        assert!(c.get("UdpInDatagrams").is_some());
        assert!(c.get("IcmpMsgInType3").is_some());
    }

    #[test]
    fn recorded_netstat_parses_and_has_the_counters_the_doctor_explains() {
        let c = parse_counters(NETSTAT);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        for n in [
            "TcpExtListenOverflows",
            "TcpExtListenDrops",
            "TcpExtTCPAbortOnData",
            "TcpExtTCPAbortOnClose",
            "TcpExtTCPAbortOnMemory",
            "TcpExtTCPAbortOnTimeout",
            "TcpExtTCPAbortOnLinger",
            "TcpExtTCPAbortFailed",
            "TcpExtTCPSynRetrans",
            "TcpExtTCPReqQFullDrop",
            "TcpExtTCPBacklogDrop",
            "TcpExtTCPRcvQDrop",
            "TcpExtTCPMemoryPressures",
            "TcpExtTCPTimeWaitOverflow",
            "MPTcpExtMPRstTx",
        ] {
            assert!(c.get(n).is_some(), "{n} missing");
        }
        // Not a counter of 6.18 (the issue asked to check).
        assert!(c.get("TcpExtTCPResetsSent").is_none());
    }

    #[test]
    fn recorded_sockstat_parses() {
        let s = parse_sockstat(SOCKSTAT);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert!(s.get("TCP.orphan").is_some());
        assert!(s.get("TCP.mem").is_some());
        assert!(s.get("TCP.tw").is_some());
        assert!(s.get("sockets.used").is_some());
        assert!(s.get("FRAG.memory").is_some());
    }

    #[test]
    fn missing_value_line_is_a_warning_not_a_panic() {
        let c = parse_counters("Tcp: A B C\nUdp: X Y\nUdp: 1 2\n");
        assert_eq!(c.get("UdpX"), Some(1));
        assert!(c.get("TcpA").is_none());
        assert!(c.warnings.iter().any(|w| w.contains("Tcp")));
        let c = parse_counters("Tcp: A B C");
        assert_eq!(c.values.len(), 0);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn mismatched_header_and_values_keep_the_common_part() {
        let c = parse_counters("Tcp: A B C\nTcp: 1 2\n");
        assert_eq!(c.get("TcpA"), Some(1));
        assert_eq!(c.get("TcpB"), Some(2));
        assert!(c.get("TcpC").is_none());
        assert_eq!(c.warnings.len(), 1);
        let c = parse_counters("Tcp: A\nTcp: 1 2 3\n");
        assert_eq!(c.get("TcpA"), Some(1));
        assert_eq!(c.values.len(), 1);
    }

    #[test]
    fn extra_fields_from_a_newer_kernel_are_kept() {
        let c = parse_counters("TcpExt: ListenOverflows TCPFutureCounter\nTcpExt: 5 7\n");
        assert_eq!(c.get("TcpExtListenOverflows"), Some(5));
        assert_eq!(c.get("TcpExtTCPFutureCounter"), Some(7));
    }

    #[test]
    fn garbage_never_panics() {
        for g in [
            "",
            "\n\n",
            "garbage",
            ":",
            "Tcp:",
            "Tcp:\nTcp:\n",
            "Tcp: A\nTcp: x\n",
            "Tcp: 1 2\n",
            "\u{0}\u{ffff}: \u{1}",
            "Tcp: A\nUdp: 1\n",
            "Tcp: A B\nTcp: 99999999999999999999 -5\n",
        ] {
            let _ = parse_counters(g);
            let _ = parse_sockstat(g);
            let _ = parse_ints(g);
            let _ = parse_nofile_soft(g);
            let _ = comm_from_stat(g);
        }
        let c = parse_counters("Tcp: A B C\nTcp: 18446744073709551615 -5 99999999999999999999\n");
        assert_eq!(c.get("TcpA"), Some(i64::MAX));
        assert_eq!(c.get("TcpB"), Some(-5));
        assert_eq!(c.get("TcpC"), None);
        assert_eq!(c.warnings.len(), 1);
        let c = parse_counters("Tcp: A\nTcp: x\n");
        assert!(c.get("TcpA").is_none());
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn sockstat_edge_cases() {
        let s = parse_sockstat("TCP: inuse 1 orphan\nUDP: inuse x\nnonsense\n");
        assert_eq!(s.get("TCP.inuse"), Some(1));
        assert!(s.get("TCP.orphan").is_none());
        assert_eq!(s.warnings.len(), 3);
    }

    #[test]
    fn limits_and_ints() {
        let l = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n";
        assert_eq!(parse_nofile_soft(l), Some(1024));
        assert_eq!(
            parse_nofile_soft(
                "Max open files            unlimited            unlimited            files"
            ),
            Some(u64::MAX)
        );
        assert_eq!(parse_nofile_soft("Max processes 5 5"), None);
        assert_eq!(
            parse_ints("287901\t383869\t575802\n"),
            Some(vec![287901, 383869, 575802])
        );
        assert_eq!(parse_ints("1 x"), None);
        assert_eq!(parse_ints(""), None);
        assert_eq!(
            comm_from_stat("12 (my (odd) prog) S 1"),
            Some("my (odd) prog".into())
        );
    }
}
