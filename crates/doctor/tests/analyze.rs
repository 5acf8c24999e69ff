//! The analysis on recorded `/proc` files from this machine (Linux 6.18)
//! and on hand-made states: no system access.

use rstscope_core::Cause;
use rstscope_doctor::diag::Listener;
use rstscope_doctor::host::{ProcFd, ProcScan, RawHost, Snapshot};
use rstscope_doctor::report::{analyze, render, Severity};

const SNMP: &str = include_str!("fixtures/snmp");
const NETSTAT: &str = include_str!("fixtures/netstat");
const SOCKSTAT: &str = include_str!("fixtures/sockstat");

fn recorded() -> RawHost {
    let mut raw = RawHost {
        before: Snapshot {
            snmp: SNMP.into(),
            netstat: NETSTAT.into(),
        },
        sockstat: SOCKSTAT.into(),
        kernel: "6.18.44".into(),
        root: true,
        ..Default::default()
    };
    for (k, v) in [
        ("net/ipv4/tcp_keepalive_time", "7200"),
        ("net/ipv4/tcp_keepalive_intvl", "75"),
        ("net/ipv4/tcp_keepalive_probes", "9"),
        ("net/ipv4/tcp_abort_on_overflow", "0"),
        ("net/ipv4/tcp_fin_timeout", "60"),
        ("net/ipv4/tcp_max_orphans", "131072"),
        ("net/ipv4/tcp_mem", "287901\t383869\t575802"),
        ("net/ipv4/tcp_max_tw_buckets", "131072"),
        ("net/ipv4/tcp_syncookies", "1"),
        ("net/core/somaxconn", "4096"),
    ] {
        raw.sysctls.insert(k.into(), v.into());
    }
    raw
}

/// Replaces one counter's value in a recorded file.
fn bump(text: &str, prefix: &str, field: &str, by: i64) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.starts_with(&format!("{prefix}:")) && i + 1 < lines.len() {
            let names: Vec<&str> = l.split_whitespace().collect();
            let mut vals: Vec<String> = lines[i + 1].split_whitespace().map(String::from).collect();
            if let Some(pos) = names.iter().position(|n| *n == field) {
                let v: i64 = vals[pos].parse().unwrap();
                vals[pos] = (v + by).to_string();
            }
            out.push(l.to_string());
            out.push(vals.join(" "));
            i += 2;
        } else {
            out.push(l.to_string());
            i += 1;
        }
    }
    out.join("\n") + "\n"
}

#[test]
fn recorded_host_gives_counters_settings_and_no_alarm() {
    let r = analyze(&recorded());
    // Every counter of the table exists on 6.18.
    assert!(
        r.counters.iter().all(|c| c.value.is_some()),
        "{:?}",
        r.warnings
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let out_rsts = r.counters.iter().find(|c| c.name == "TcpOutRsts").unwrap();
    // The value recorded in the fixture, read by the same table row.
    let recorded = rstscope_doctor::procfs::parse_counters(SNMP).get("TcpOutRsts");
    assert!(recorded.is_some_and(|v| v > 0));
    assert_eq!(out_rsts.value, recorded);
    // Default keepalive against LB idle timers is a notice, nothing worse.
    assert!(r.findings.iter().all(|f| f.severity >= Severity::Notice));
    let ka = r
        .findings
        .iter()
        .find(|f| f.title.contains("keepalive"))
        .expect("keepalive finding");
    assert!(ka.evidence.iter().any(|e| e.contains("7875 s")));
    assert!(ka.evidence.iter().any(|e| e.contains("350 s")));
    // No conntrack sysctls in this RawHost: said so.
    assert!(r.not_checked.iter().any(|n| n.contains("conntrack")));
    assert!(r.not_checked.iter().any(|n| n.contains("--interval")));
    let text = render(&r);
    assert!(text.contains("TcpExtListenOverflows"));
    assert!(text.contains("net.ipv4.tcp_mem = 287901 383869 575802"));
}

#[test]
fn interval_changes_are_attributed_and_ranked() {
    let mut raw = recorded();
    let mut netstat = bump(NETSTAT, "TcpExt", "ListenOverflows", 12);
    netstat = bump(&netstat, "TcpExt", "TCPAbortOnClose", 3);
    let snmp = bump(SNMP, "Tcp", "OutRsts", 15);
    raw.after = Some(Snapshot { snmp, netstat });
    raw.interval_secs = Some(5.0);
    let r = analyze(&raw);
    let names: Vec<&str> = r.changes.iter().map(|c| c.counter).collect();
    assert_eq!(
        names,
        [
            "TcpExtListenOverflows",
            "TcpOutRsts",
            "TcpExtTCPAbortOnClose"
        ]
    );
    assert_eq!(r.changes[0].delta, 12);
    assert_eq!(r.changes[0].causes, &[Cause::ListenOverflow]);
    assert_eq!(r.changes[2].causes, &[Cause::UnreadDataClose]);
    let lo = &r.findings[0];
    assert_eq!(lo.severity, Severity::Critical);
    assert!(lo.title.starts_with("TcpExtListenOverflows rose by 12"));
    assert!(lo.evidence[0].contains("2.40/s"));
    let ac = r
        .findings
        .iter()
        .find(|f| f.title.starts_with("TcpExtTCPAbortOnClose"))
        .unwrap();
    assert_eq!(ac.severity, Severity::Warning);
    let row = r.counters.iter().find(|c| c.name == "TcpOutRsts").unwrap();
    let base = rstscope_doctor::procfs::parse_counters(SNMP)
        .get("TcpOutRsts")
        .unwrap();
    assert_eq!((row.value, row.delta), (Some(base + 15), Some(15)));
}

#[test]
fn risky_settings_are_flagged() {
    let mut raw = recorded();
    for (k, v) in [
        ("net/ipv4/tcp_abort_on_overflow", "1"),
        ("net/ipv4/tcp_fin_timeout", "3"),
        ("net/core/somaxconn", "128"),
        ("net/ipv4/tcp_syncookies", "0"),
        ("net/ipv4/tcp_keepalive_time", "60"),
        ("net/netfilter/nf_conntrack_count", "255000"),
        ("net/netfilter/nf_conntrack_max", "262144"),
        ("net/netfilter/nf_conntrack_tcp_timeout_established", "30"),
        ("net/netfilter/nf_conntrack_tcp_loose", "0"),
        ("net/netfilter/nf_conntrack_tcp_be_liberal", "0"),
    ] {
        raw.sysctls.insert(k.into(), v.into());
    }
    let r = analyze(&raw);
    let has = |needle: &str, sev: Severity| {
        r.findings
            .iter()
            .any(|f| f.title.contains(needle) && f.severity == sev)
    };
    assert!(has("tcp_abort_on_overflow=1", Severity::Warning));
    assert!(has("tcp_fin_timeout", Severity::Notice));
    assert!(has("somaxconn", Severity::Notice));
    assert!(has("SYN cookies", Severity::Notice));
    assert!(has("conntrack table is nearly full", Severity::Critical));
    assert!(has("conntrack forgets idle", Severity::Warning));
    assert!(has("tcp_loose", Severity::Notice) || has("will not pick up", Severity::Notice));
    // keepalive 60 s is below every idle timer: no keepalive finding.
    assert!(!r
        .findings
        .iter()
        .any(|f| f.title.contains("keepalive starts")));
    assert!(!r.not_checked.iter().any(|n| n.contains("conntrack")));
    assert!(r
        .findings
        .windows(2)
        .all(|w| w[0].severity <= w[1].severity));
}

#[test]
fn live_state_limits() {
    let mut raw = recorded();
    raw.sockstat =
        "sockets: used 9\nTCP: inuse 5 orphan 130000 tw 120000 alloc 6 mem 400000\n".into();
    raw.listeners = Ok(vec![
        Listener {
            local: "127.0.0.1:8080".parse().unwrap(),
            queue: 128,
            backlog: 128,
            inode: 1,
            owner: Some("42/server".into()),
        },
        Listener {
            local: "[::]:22".parse().unwrap(),
            queue: 0,
            backlog: 4096,
            inode: 2,
            owner: None,
        },
    ]);
    raw.processes = ProcScan {
        scanned: 10,
        unreadable: 0,
        busy: vec![
            ProcFd {
                pid: 42,
                comm: "server".into(),
                open: 1020,
                limit: 1024,
            },
            ProcFd {
                pid: 43,
                comm: "half".into(),
                open: 600,
                limit: 1024,
            },
        ],
    };
    let r = analyze(&raw);
    let sev = |needle: &str| {
        r.findings
            .iter()
            .find(|f| f.title.contains(needle))
            .map(|f| f.severity)
    };
    assert_eq!(
        sev("127.0.0.1:8080 has a full accept queue"),
        Some(Severity::Critical)
    );
    assert_eq!(sev("[::]:22"), None);
    assert_eq!(sev("orphaned TCP sockets"), Some(Severity::Critical));
    assert_eq!(sev("TCP memory"), Some(Severity::Warning));
    assert_eq!(sev("TIME_WAIT"), Some(Severity::Warning));
    assert_eq!(sev("process 42 (server)"), Some(Severity::Critical));
    assert_eq!(sev("process 43"), None);
    assert_eq!(r.live.listeners, Some(2));
    assert_eq!(r.live.listeners_filling.len(), 1);
    let f = r
        .findings
        .iter()
        .find(|f| f.title.contains("8080"))
        .unwrap();
    assert!(f.evidence.iter().any(|e| e.contains("42/server")));
}

#[test]
fn unprivileged_and_broken_inputs_degrade_gracefully() {
    let mut raw = recorded();
    raw.root = false;
    raw.processes.unreadable = 57;
    raw.listeners = Err("sock_diag: Permission denied".into());
    raw.before = Snapshot {
        snmp: "Tcp: OutRsts\n".into(),
        netstat: "garbage\n\u{0}".into(),
    };
    raw.sockstat = "TCP: inuse x".into();
    raw.sysctls.insert("net/ipv4/tcp_mem".into(), "1 2".into());
    let r = analyze(&raw);
    assert!(r
        .not_checked
        .iter()
        .any(|n| n.contains("run as root") && n.contains("57 unreadable")));
    assert!(r
        .not_checked
        .iter()
        .any(|n| n.contains("Permission denied")));
    assert!(r.counters.iter().all(|c| c.value.is_none()));
    assert!(r.warnings.iter().any(|w| w.contains("not present")));
    assert!(r.live.tcp_mem_limits.is_none());
    let _ = render(&r);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["privileged"], false);
}
