//! From what was read to findings: pure functions over [`RawHost`].

use crate::counters::{self, Weight, COUNTERS};
use crate::diag::Listener;
use crate::host::{ProcFd, RawHost};
use crate::procfs::{self, Counters};
use rstscope_core::Cause;
use serde::Serialize;
use std::fmt::Write as _;

/// How urgent a finding is. Ordered: `Critical` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Connections are being reset or dropped by exhaustion now.
    Critical,
    /// A setting or state that causes resets under load.
    Warning,
    /// Worth knowing; often a default that bites in some environments.
    Notice,
    /// Background.
    Info,
}

impl Severity {
    /// The stable id.
    pub fn id(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
        }
    }
}

/// One finding: what, why we think so, what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// How urgent.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// The values that show it.
    pub evidence: Vec<String>,
    /// What to do or run next.
    pub next_step: String,
    /// The causes (CAUSES.md ids) it points to.
    pub causes: Vec<Cause>,
}

/// One counter row.
#[derive(Debug, Clone, Serialize)]
pub struct CounterRow {
    /// `nstat` name.
    pub name: &'static str,
    /// Value now (since boot or namespace creation).
    pub value: Option<i64>,
    /// Change over the interval.
    pub delta: Option<i64>,
    /// The change per second.
    pub per_sec: Option<f64>,
    /// Plain words.
    pub meaning: &'static str,
    /// Causes an increase points to.
    pub causes: &'static [Cause],
}

/// Live state of the namespace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Live {
    /// Listening TCP sockets found.
    pub listeners: Option<usize>,
    /// Listeners whose accept queue is at least 80% full.
    pub listeners_filling: Vec<Listener>,
    /// Orphaned TCP sockets now.
    pub orphans: Option<i64>,
    /// `tcp_max_orphans`.
    pub max_orphans: Option<i64>,
    /// TCP memory in use, pages.
    pub tcp_mem_pages: Option<i64>,
    /// `tcp_mem` (min, pressure, max), pages.
    pub tcp_mem_limits: Option<Vec<i64>>,
    /// TIME_WAIT sockets now.
    pub time_wait: Option<i64>,
    /// `tcp_max_tw_buckets`.
    pub max_tw_buckets: Option<i64>,
    /// Conntrack entries now (None: conntrack not loaded here).
    pub conntrack_count: Option<i64>,
    /// `nf_conntrack_max`.
    pub conntrack_max: Option<i64>,
    /// Processes whose descriptors were counted.
    pub processes_scanned: usize,
    /// Processes that could not be read.
    pub processes_unreadable: usize,
    /// Processes at 80% or more of their descriptor limit.
    pub processes_near_fd_limit: Vec<ProcFd>,
}

/// A counter that changed over the interval, with its causes: the
/// attribution scripts use.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `nstat` name.
    pub counter: &'static str,
    /// Increase over the interval.
    pub delta: i64,
    /// Causes it points to.
    pub causes: &'static [Cause],
}

/// One sysctl as read.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    /// Dotted name, e.g. `net.ipv4.tcp_keepalive_time`.
    pub name: String,
    /// Value, whitespace normalised.
    pub value: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Kernel release.
    pub kernel: String,
    /// Network namespace inspected (null: the doctor's own).
    pub netns: Option<String>,
    /// Whether it ran as root.
    pub privileged: bool,
    /// `--interval` in seconds.
    pub interval_secs: Option<f64>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Counters that changed over the interval, most important first.
    pub changes: Vec<Change>,
    /// Every counter of the table.
    pub counters: Vec<CounterRow>,
    /// The sysctls read, absent ones omitted.
    pub settings: Vec<Setting>,
    /// Live state.
    pub live: Live,
    /// What is not checked, and why (e.g. what root would add).
    pub not_checked: Vec<String>,
    /// Oddities met while parsing.
    pub warnings: Vec<String>,
}

/// Common load-balancer / NAT idle timers, seconds.
pub const IDLE_TIMERS: &[(u64, &str)] = &[
    (240, "Azure Load Balancer (4 min default)"),
    (350, "AWS NLB / NAT gateway (350 s)"),
    (600, "GCP load balancers and Cloud NAT (600 s)"),
];

fn sys(raw: &RawHost, k: &str) -> Option<i64> {
    raw.sysctls.get(k).and_then(|v| v.trim().parse().ok())
}

fn finding(
    sev: Severity,
    title: impl Into<String>,
    evidence: Vec<String>,
    next: impl Into<String>,
    causes: &[Cause],
) -> Finding {
    Finding {
        severity: sev,
        title: title.into(),
        evidence,
        next_step: next.into(),
        causes: causes.to_vec(),
    }
}

fn pct(a: i64, b: i64) -> f64 {
    if b <= 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

/// Analyses what was read. Pure.
pub fn analyze(raw: &RawHost) -> Report {
    let mut warnings = Vec::new();
    let mut findings = Vec::new();
    let mut not_checked = Vec::new();

    let parse = |s: &crate::host::Snapshot, w: &mut Vec<String>| {
        let mut c: Counters = procfs::parse_counters(&s.snmp);
        c.merge(procfs::parse_counters(&s.netstat));
        w.append(&mut c.warnings);
        c
    };
    let before = parse(&raw.before, &mut warnings);
    let after = raw.after.as_ref().map(|s| parse(s, &mut Vec::new()));
    let now = after.as_ref().unwrap_or(&before);
    let secs = raw.interval_secs.filter(|s| *s > 0.0);

    // ---- counters
    let mut rows = Vec::new();
    let mut changes = Vec::new();
    for ci in COUNTERS {
        let value = now.get(ci.name);
        let delta = after
            .as_ref()
            .and_then(|a| Some(a.get(ci.name)?.saturating_sub(before.get(ci.name)?)));
        let per_sec = match (delta, secs) {
            (Some(d), Some(s)) => Some(d as f64 / s),
            _ => None,
        };
        if value.is_none() {
            warnings.push(format!("counter {} is not present on this kernel", ci.name));
        }
        if let Some(d) = delta.filter(|d| *d > 0) {
            changes.push(Change {
                counter: ci.name,
                delta: d,
                causes: ci.causes,
            });
        }
        rows.push(CounterRow {
            name: ci.name,
            value,
            delta,
            per_sec,
            meaning: ci.meaning,
            causes: ci.causes,
        });
    }
    let weight = |n: &str| counters::info(n).map(|i| i.weight as u8).unwrap_or(9);
    changes.sort_by(|a, b| {
        weight(a.counter)
            .cmp(&weight(b.counter))
            .then(b.delta.cmp(&a.delta))
    });

    if let Some(s) = secs {
        let overflow_delta = changes
            .iter()
            .find(|c| c.counter == "TcpExtListenOverflows")
            .map(|c| c.delta);
        for ch in &changes {
            // ListenDrops includes ListenOverflows: no second finding for the same drops.
            if ch.counter == "TcpExtListenDrops" && Some(ch.delta) == overflow_delta {
                continue;
            }
            let Some(ci) = counters::info(ch.counter) else {
                continue;
            };
            let sev = match ci.weight {
                Weight::Exhaustion => Severity::Critical,
                Weight::Reset if ch.counter == "TcpOutRsts" || ch.counter == "TcpEstabResets" => {
                    Severity::Info
                }
                Weight::Reset => Severity::Warning,
                Weight::Context => continue,
            };
            findings.push(finding(
                sev,
                format!("{} rose by {} in {:.0} s", ch.counter, ch.delta, s),
                vec![
                    format!(
                        "{} = {} (+{}, {:.2}/s)",
                        ch.counter,
                        now.get(ch.counter).unwrap_or(0),
                        ch.delta,
                        ch.delta as f64 / s
                    ),
                    format!("meaning: {}", ci.meaning),
                ],
                next_for(ch.causes),
                ch.causes,
            ));
        }
    } else {
        // Since boot: only the exhaustion counters make a finding.
        for ci in COUNTERS.iter().filter(|c| c.weight == Weight::Exhaustion) {
            if let Some(v) = now.get(ci.name).filter(|v| *v > 0) {
                findings.push(finding(
                    Severity::Notice,
                    format!("{} is {} since boot", ci.name, v),
                    vec![format!("meaning: {}", ci.meaning)],
                    format!(
                        "run `rstscope doctor --interval 10` to see whether it is still rising; {}",
                        next_for(ci.causes)
                    ),
                    ci.causes,
                ));
            }
        }
    }

    // ---- settings
    let ka_time = sys(raw, "net/ipv4/tcp_keepalive_time");
    let ka_intvl = sys(raw, "net/ipv4/tcp_keepalive_intvl");
    let ka_probes = sys(raw, "net/ipv4/tcp_keepalive_probes");
    if let Some(t) = ka_time {
        let shorter: Vec<&str> = IDLE_TIMERS
            .iter()
            .filter(|(s, _)| (t as u64) >= *s)
            .map(|(_, n)| *n)
            .collect();
        if !shorter.is_empty() {
            let mut ev = vec![format!("net.ipv4.tcp_keepalive_time = {t} s")];
            if let (Some(i), Some(p)) = (ka_intvl, ka_probes) {
                ev.push(format!(
                    "a dead peer is detected after {} s (time + intvl {i} s x probes {p})",
                    t + i * p
                ));
            }
            ev.push(format!(
                "idle timers shorter than the first probe: {}",
                shorter.join(", ")
            ));
            findings.push(finding(
                Severity::Notice,
                "keepalive starts after the idle timers of common load balancers and NATs",
                ev,
                "for long-lived idle connections through a load balancer or NAT, set per-socket TCP_KEEPIDLE (or net.ipv4.tcp_keepalive_time) below the path's idle timer, e.g. 120 s; this only affects sockets that enable SO_KEEPALIVE",
                &[Cause::IdleTimeout, Cause::KeepaliveTimeout],
            ));
        }
    }
    if sys(raw, "net/ipv4/tcp_abort_on_overflow") == Some(1) {
        findings.push(finding(
            Severity::Warning,
            "tcp_abort_on_overflow=1: a full accept queue resets new connections",
            vec!["net.ipv4.tcp_abort_on_overflow = 1".into()],
            "set it back to 0 unless clients must fail fast: with 0 the client retransmits and usually gets in once the server catches up; then raise the listen backlog",
            &[Cause::ListenOverflow],
        ));
    }
    if let Some(f) = sys(raw, "net/ipv4/tcp_fin_timeout") {
        if f < 10 {
            findings.push(finding(
                Severity::Notice,
                "tcp_fin_timeout is very short",
                vec![format!("net.ipv4.tcp_fin_timeout = {f} s (default 60)")],
                "orphaned FIN_WAIT2 sockets vanish after this; a peer still sending later gets a no-socket reset. Keep it at 15 s or more",
                &[Cause::UnknownConnection, Cause::DataAfterClose],
            ));
        }
    }
    let somaxconn = sys(raw, "net/core/somaxconn");
    if let Some(s) = somaxconn {
        if s < 1024 {
            findings.push(finding(
                Severity::Notice,
                "net.core.somaxconn caps every listen backlog low",
                vec![format!("net.core.somaxconn = {s} (default 4096 since Linux 5.4)")],
                "raise net.core.somaxconn (and the server's listen backlog) if bursts of connections arrive",
                &[Cause::ListenOverflow],
            ));
        }
    }
    if sys(raw, "net/ipv4/tcp_syncookies") == Some(0) {
        findings.push(finding(
            Severity::Notice,
            "SYN cookies are off: a full SYN queue drops new connections",
            vec!["net.ipv4.tcp_syncookies = 0".into()],
            "set net.ipv4.tcp_syncookies=1 (the default)",
            &[Cause::ListenOverflow],
        ));
    }

    // ---- live: sockstat, orphans, memory, time-wait
    let mut ss = procfs::parse_sockstat(&raw.sockstat);
    warnings.append(&mut ss.warnings);
    let mut live = Live {
        orphans: ss.get("TCP.orphan"),
        max_orphans: sys(raw, "net/ipv4/tcp_max_orphans"),
        tcp_mem_pages: ss.get("TCP.mem"),
        tcp_mem_limits: raw
            .sysctls
            .get("net/ipv4/tcp_mem")
            .and_then(|v| procfs::parse_ints(v))
            .filter(|v| v.len() == 3),
        time_wait: ss.get("TCP.tw"),
        max_tw_buckets: sys(raw, "net/ipv4/tcp_max_tw_buckets"),
        conntrack_count: sys(raw, "net/netfilter/nf_conntrack_count"),
        conntrack_max: sys(raw, "net/netfilter/nf_conntrack_max"),
        processes_scanned: raw.processes.scanned,
        processes_unreadable: raw.processes.unreadable,
        ..Default::default()
    };
    if let (Some(o), Some(m)) = (live.orphans, live.max_orphans) {
        let p = pct(o, m);
        if p >= 50.0 {
            findings.push(finding(
                if p >= 90.0 { Severity::Critical } else { Severity::Warning },
                "orphaned TCP sockets are near tcp_max_orphans",
                vec![format!("orphans {o} of net.ipv4.tcp_max_orphans {m} ({p:.0}%)")],
                "past the limit the kernel resets orphans (TCPAbortOnMemory); find who closes so many connections with data in flight, or raise tcp_max_orphans",
                &[Cause::MemoryPressure],
            ));
        }
    }
    if let (Some(used), Some(lim)) = (live.tcp_mem_pages, &live.tcp_mem_limits) {
        let (pressure, max) = (lim[1], lim[2]);
        if used >= pressure {
            findings.push(finding(
                if used >= max { Severity::Critical } else { Severity::Warning },
                "TCP memory is past tcp_mem's pressure threshold",
                vec![format!("TCP memory {used} pages; net.ipv4.tcp_mem pressure {pressure}, max {max} pages")],
                "under pressure buffers shrink and orphans get reset; find the sockets holding memory (`ss -tm`) or raise tcp_mem",
                &[Cause::MemoryPressure],
            ));
        }
    }
    if let (Some(tw), Some(m)) = (live.time_wait, live.max_tw_buckets) {
        if m > 0 && pct(tw, m) >= 80.0 {
            findings.push(finding(
                Severity::Warning,
                "TIME_WAIT sockets are near tcp_max_tw_buckets",
                vec![format!("TIME_WAIT {tw} of net.ipv4.tcp_max_tw_buckets {m}")],
                "past the limit closing sockets skip TIME_WAIT (TCPTimeWaitOverflow) and late segments get resets; reuse connections (keep-alive, pools)",
                &[Cause::UnknownConnection],
            ));
        }
    }

    // ---- conntrack
    if let (Some(c), Some(m)) = (live.conntrack_count, live.conntrack_max) {
        let p = pct(c, m);
        if p >= 80.0 {
            findings.push(finding(
                if p >= 95.0 { Severity::Critical } else { Severity::Warning },
                "the conntrack table is nearly full",
                vec![format!("net.netfilter.nf_conntrack_count {c} of nf_conntrack_max {m} ({p:.0}%)")],
                "when full, new connections are dropped (clients retransmit SYNs, then time out); raise nf_conntrack_max or shorten timeouts",
                &[Cause::FirewallReject, Cause::IdleTimeout],
            ));
        }
        if let (Some(est), Some(ka)) = (
            sys(raw, "net/netfilter/nf_conntrack_tcp_timeout_established"),
            ka_time,
        ) {
            if est <= ka {
                findings.push(finding(
                    Severity::Warning,
                    "conntrack forgets idle established connections before keepalive probes them",
                    vec![format!("nf_conntrack_tcp_timeout_established = {est} s, tcp_keepalive_time = {ka} s")],
                    "after an idle gap the next packet is INVALID: dropped or answered with a reset; raise the conntrack timeout above keepalive, or lower keepalive",
                    &[Cause::IdleTimeout],
                ));
            }
        }
        if sys(raw, "net/netfilter/nf_conntrack_tcp_loose") == Some(0) {
            findings.push(finding(
                Severity::Notice,
                "conntrack will not pick up established connections it did not see open",
                vec!["net.netfilter.nf_conntrack_tcp_loose = 0".into()],
                "after a conntrack flush, restart or failover, existing connections become INVALID (dropped or reset); leave tcp_loose=1 unless a firewall policy needs 0",
                &[Cause::FirewallReject, Cause::UnknownConnection],
            ));
        }
        let mut ev = Vec::new();
        for k in ["established", "close", "close_wait", "time_wait"] {
            if let Some(v) = sys(raw, &format!("net/netfilter/nf_conntrack_tcp_timeout_{k}")) {
                ev.push(format!("nf_conntrack_tcp_timeout_{k} = {v} s"));
            }
        }
        for k in ["tcp_loose", "tcp_be_liberal", "tcp_ignore_invalid_rst"] {
            if let Some(v) = sys(raw, &format!("net/netfilter/nf_conntrack_{k}")) {
                ev.push(format!("nf_conntrack_{k} = {v}"));
            }
        }
        let be_liberal = sys(raw, "net/netfilter/nf_conntrack_tcp_be_liberal");
        findings.push(finding(
            Severity::Info,
            format!("conntrack is loaded: {c} of {m} entries"),
            ev,
            if be_liberal == Some(0) {
                "with tcp_be_liberal=0, out-of-window segments are INVALID; a rule dropping or rejecting INVALID then stalls or resets connections with window tracking problems"
            } else {
                "conntrack accepts out-of-window segments (tcp_be_liberal=1)"
            },
            &[Cause::InvalidSegment],
        ));
    } else {
        not_checked.push(
            "conntrack: not loaded in this namespace (no /proc/sys/net/netfilter/nf_conntrack_max)"
                .into(),
        );
    }

    // ---- listeners
    match &raw.listeners {
        Ok(ls) => {
            live.listeners = Some(ls.len());
            for l in ls {
                if l.backlog == 0 {
                    continue;
                }
                let p = pct(l.queue as i64, l.backlog as i64);
                if p < 80.0 {
                    continue;
                }
                live.listeners_filling.push(l.clone());
                let mut ev = vec![format!(
                    "accept queue {} of {} on {}",
                    l.queue, l.backlog, l.local
                )];
                if let Some(o) = &l.owner {
                    ev.push(format!("owned by {o}"));
                }
                if let Some(s) = somaxconn {
                    if l.backlog as i64 == s {
                        ev.push(format!("its backlog equals net.core.somaxconn = {s}: the application may have asked for more"));
                    }
                }
                findings.push(finding(
                    if l.queue >= l.backlog { Severity::Critical } else { Severity::Warning },
                    format!("listener {} has a {} accept queue", l.local, if l.queue >= l.backlog { "full" } else { "nearly full" }),
                    ev,
                    "the application is not calling accept() fast enough (stuck event loop, descriptor limit) or the backlog is too small for bursts; with tcp_abort_on_overflow=1 clients get resets",
                    &[Cause::ListenOverflow],
                ));
            }
        }
        Err(e) => not_checked.push(format!("listening sockets: {e}")),
    }

    // ---- descriptors
    for p in &raw.processes.busy {
        let r = pct(p.open as i64, p.limit as i64);
        if r < 80.0 {
            continue;
        }
        live.processes_near_fd_limit.push(p.clone());
        findings.push(finding(
            if r >= 95.0 { Severity::Critical } else { Severity::Warning },
            format!("process {} ({}) is near its file-descriptor limit", p.pid, p.comm),
            vec![format!("{} open of a soft limit of {} ({r:.0}%)", p.open, p.limit)],
            "at the limit accept() fails with EMFILE and the accept queue overflows; raise LimitNOFILE/ulimit -n or find the descriptor leak (`ls -l /proc/PID/fd`)",
            &[Cause::ListenOverflow],
        ));
    }
    if !raw.root {
        not_checked.push(format!(
            "descriptor use of other users' processes ({} unreadable) and the process owning each listening socket: run as root to include them",
            raw.processes.unreadable
        ));
    }
    if raw.interval_secs.is_none() {
        not_checked.push("counter changes: add `--interval 10` to see which counters are rising now (values since boot say little on a long-running host)".into());
    }

    findings.sort_by_key(|f| f.severity);
    let settings = crate::host::SYSCTLS
        .iter()
        .filter_map(|k| {
            raw.sysctls.get(*k).map(|v| Setting {
                name: k.replace('/', "."),
                value: v.split_whitespace().collect::<Vec<_>>().join(" "),
            })
        })
        .collect();
    Report {
        kernel: raw.kernel.clone(),
        netns: raw.netns.clone(),
        privileged: raw.root,
        interval_secs: raw.interval_secs,
        findings,
        changes,
        counters: rows,
        settings,
        live,
        not_checked,
        warnings,
    }
}

/// The first next step of the first cause (from the shared cause table)
/// that is not "run the doctor", which the reader is already doing.
fn next_for(causes: &[Cause]) -> String {
    causes
        .first()
        .and_then(|c| {
            let steps = c.info().next_steps;
            steps
                .iter()
                .find(|s| !s.contains("rstscope doctor"))
                .or(steps.first())
                .map(|s| format!("{}: {s}", c.id()))
        })
        .unwrap_or_else(|| "capture and run `rstscope analyze`".into())
}

/// The human report.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "rstscope doctor: Linux {}{}{}{}",
        r.kernel,
        r.netns
            .as_ref()
            .map(|n| format!(", netns {n}"))
            .unwrap_or_default(),
        if r.privileged {
            ", as root"
        } else {
            ", unprivileged"
        },
        r.interval_secs
            .map(|i| format!(", counter changes over {i:.0} s"))
            .unwrap_or_default()
    );
    let _ = writeln!(s);
    if r.findings.is_empty() {
        let _ = writeln!(s, "No findings.");
    } else {
        let _ = writeln!(s, "Findings ({}):", r.findings.len());
        for f in &r.findings {
            let causes: Vec<&str> = f.causes.iter().map(|c| c.id()).collect();
            let _ = writeln!(s, "  [{}] {}", f.severity.id(), f.title);
            for e in &f.evidence {
                let _ = writeln!(s, "      evidence: {e}");
            }
            if !causes.is_empty() {
                let _ = writeln!(s, "      causes:   {}", causes.join(", "));
            }
            let _ = writeln!(s, "      next:     {}", f.next_step);
        }
    }
    let _ = writeln!(s);
    if r.interval_secs.is_some() {
        let _ = writeln!(s, "Counters (value, change over the interval):");
    } else {
        let _ = writeln!(s, "Counters (since boot or namespace creation):");
    }
    for c in &r.counters {
        let Some(v) = c.value else { continue };
        let delta = c.delta.map(|d| format!("{d:+}")).unwrap_or_default();
        let causes: Vec<&str> = c.causes.iter().map(|c| c.id()).collect();
        let _ = writeln!(
            s,
            "  {:<28} {:>12} {:>7}  {}",
            c.name,
            v,
            delta,
            if causes.is_empty() {
                "-".to_string()
            } else {
                causes.join(",")
            }
        );
    }
    let _ = writeln!(
        s,
        "  (meanings: `rstscope doctor --format json` or the README)"
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "Live state:");
    let l = &r.live;
    // Orphans and TCP memory are counted for the whole host, not per namespace.
    let hostwide = if r.netns.is_some() {
        " (host-wide)"
    } else {
        ""
    };
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    let _ = writeln!(
        s,
        "  listening sockets: {} ({} with an accept queue 80% full or more)",
        l.listeners
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into()),
        l.listeners_filling.len()
    );
    let _ = writeln!(
        s,
        "  orphans: {} of tcp_max_orphans {}{}",
        opt(l.orphans),
        opt(l.max_orphans),
        hostwide
    );
    let _ = writeln!(
        s,
        "  TCP memory: {} pages (tcp_mem {}){}",
        opt(l.tcp_mem_pages),
        l.tcp_mem_limits
            .as_ref()
            .map(|v| format!("{} {} {}", v[0], v[1], v[2]))
            .unwrap_or_else(|| "?".into()),
        hostwide
    );
    let _ = writeln!(
        s,
        "  TIME_WAIT: {} of tcp_max_tw_buckets {}",
        opt(l.time_wait),
        opt(l.max_tw_buckets)
    );
    if l.conntrack_max.is_some() {
        let _ = writeln!(
            s,
            "  conntrack: {} of {}",
            opt(l.conntrack_count),
            opt(l.conntrack_max)
        );
    }
    let _ = writeln!(
        s,
        "  processes: {} scanned, {} unreadable, {} at 80% of their descriptor limit or more",
        l.processes_scanned,
        l.processes_unreadable,
        l.processes_near_fd_limit.len()
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "Settings:");
    for st in &r.settings {
        let _ = writeln!(s, "  {} = {}", st.name, st.value);
    }
    if !r.not_checked.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "Not checked:");
        for n in &r.not_checked {
            let _ = writeln!(s, "  - {n}");
        }
    }
    let parse_warn: Vec<_> = r
        .warnings
        .iter()
        .filter(|w| !w.contains("not present"))
        .collect();
    if !parse_warn.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "Parse warnings:");
        for w in parse_warn {
            let _ = writeln!(s, "  - {w}");
        }
    }
    s
}
