//! Running the catalog, the verdict step, and the three renderings.

use crate::ns::{self, Topology};
use crate::pcap::{self, Capture, Frame};
use crate::scenario::{catalog, Env, Outcome, Scenario, LEFT_OUT};
use crate::sock::Saw;
use crate::{Format, RunArgs};
use anyhow::{Context, Result};
use rstscope_core::{Sender, Side, Verdict};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// rstscope's verdict on one capture, as the lab reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnosis {
    /// Whose address the RST carries (`None` if the analyzer could not tell).
    pub from: Option<Side>,
    /// Who really sent it.
    pub sender: Sender,
    /// Why.
    pub cause: rstscope_core::Cause,
    /// The analyzer's confidence.
    pub confidence: f32,
    /// The analyzer's evidence sentences.
    pub evidence: Vec<String>,
}

impl Diagnosis {
    fn matches(&self, v: &Verdict) -> bool {
        self.from == Some(v.from) && self.sender == v.sender && self.cause == v.cause
    }
    fn short(&self) -> String {
        format!(
            "{} {} {}",
            self.from.map(|s| s.id()).unwrap_or("?"),
            self.sender,
            self.cause
        )
    }
}

/// The verdict step: rstscope's analyzer on the client-side capture, for
/// the connection `orig` → `resp`. The one place the lab calls the analyzer.
pub fn diagnose(pcap: &Path, orig: SocketAddr, resp: SocketAddr) -> Result<Option<Diagnosis>> {
    // The analyzer's defaults, exactly as `rstscope analyze FILE` runs.
    let a = rstscope_analyze::analyze_file(pcap, &rstscope_analyze::Options::default())?;
    if let Some(e) = a.error {
        anyhow::bail!("the analyzer stopped reading {}: {e}", pcap.display());
    }
    let conn = a
        .connections
        .iter()
        .find(|c| c.orig == orig && c.resp == resp)
        .or_else(|| {
            a.connections
                .iter()
                .find(|c| c.orig == resp && c.resp == orig)
        });
    Ok(conn.and_then(|c| c.reset.as_ref()).map(|r| Diagnosis {
        from: r.event.from,
        sender: r.event.sender,
        cause: r.event.cause,
        confidence: r.event.confidence,
        evidence: r.event.evidence.clone(),
    }))
}

/// The first RST of the connection seen on the wire.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RstSeen {
    /// The address the RST carries.
    pub addr: SocketAddr,
    /// Its TTL / hop limit as captured.
    pub ttl: u8,
    /// Who really sent it (the lab's ground truth).
    pub real_sender: String,
}

/// One row of the lab's result.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// What the client saw, call by call.
    pub client_saw: Saw,
    /// What the server saw.
    pub server_saw: Saw,
    /// The connection under test (client side).
    pub orig: Option<SocketAddr>,
    /// The connection under test (server side).
    pub resp: Option<SocketAddr>,
    /// The RST on the client's link.
    pub rst: Option<RstSeen>,
    /// The kernel's reset reason, from `rstscope watch`'s tracepoints.
    pub kernel_reason: Option<String>,
    /// The process `rstscope watch` attributed that reset to (`comm`), when
    /// the kernel sent it on behalf of a socket a process owns.
    pub kernel_process: Option<String>,
    /// Its process id.
    pub kernel_pid: Option<u32>,
    /// The expected verdict.
    pub expected: Verdict,
    /// rstscope's verdict (`None` when not checked).
    pub verdict: Option<Diagnosis>,
    /// Whether the verdict was checked (needs a capture, so root).
    pub verdict_checked: bool,
    /// Whether both applications saw what the scenario documents.
    pub saw_as_documented: bool,
    /// Passed: verdict as expected (when checked) and applications as documented.
    pub pass: bool,
    /// What Linux really does here.
    pub linux: String,
    /// Captures written (kept under `--record`).
    pub captures: Vec<PathBuf>,
    /// Wall time of the scenario in milliseconds.
    pub duration_ms: u64,
    /// Why the verdict or the run failed, if it did.
    pub error: Option<String>,
}

/// `lab list`.
pub fn list() -> String {
    let mut out = String::new();
    for s in catalog() {
        let tag = if s.loopback { "" } else { " [root]" };
        out.push_str(&format!("{:<20} {}{tag}\n", s.name, s.summary));
    }
    for (name, why) in LEFT_OUT {
        out.push_str(&format!("{name:<20} {why}\n"));
    }
    out
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Removes a temporary directory on Drop.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the named scenarios (all when empty) and returns their results.
/// `record` keeps captures and truth files; `privileged` selects the
/// namespace lab (true) or the unprivileged loopback subset.
pub fn run_scenarios(
    names: &[String],
    record: Option<&Path>,
    privileged: bool,
) -> Result<(Vec<ScenarioResult>, Vec<String>)> {
    let all = catalog();
    let mut skipped = Vec::new();
    let mut chosen: Vec<&Scenario> = Vec::new();
    if names.is_empty() {
        chosen = all.iter().collect();
        for (n, why) in LEFT_OUT {
            skipped.push(format!("{n}: {why}"));
        }
    } else {
        for n in names {
            if let Some(s) = all.iter().find(|s| s.name == n) {
                chosen.push(s);
            } else if let Some((_, why)) = LEFT_OUT.iter().find(|(l, _)| l == n) {
                skipped.push(format!("{n}: {why}"));
            } else {
                anyhow::bail!("no scenario {n:?}; `rstscope lab list` shows them");
            }
        }
    }
    if !privileged {
        chosen.retain(|s| {
            if s.loopback {
                true
            } else {
                skipped.push(format!(
                    "{}: needs root (network namespaces, nftables, packet capture)",
                    s.name
                ));
                false
            }
        });
    }
    ns::install_signal_cleanup();
    let tmp;
    let base = match record {
        Some(d) => d.to_path_buf(),
        None => {
            let p = std::env::temp_dir().join(format!("rstscope-lab-{}", std::process::id()));
            tmp = TempDir(p.clone());
            tmp.0.clone()
        }
    };
    let mut results = Vec::new();
    for s in chosen {
        let dir = base.join(s.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let r = run_one(s, &dir, privileged);
        let mut r = r;
        if record.is_some() {
            write_truth(&dir, s, &r)?;
        } else {
            r.captures.clear(); // removed with the temporary directory
        }
        results.push(r);
    }
    Ok((results, skipped))
}

fn run_one(s: &Scenario, dir: &Path, privileged: bool) -> ScenarioResult {
    let start = std::time::Instant::now();
    let mut r = ScenarioResult {
        scenario: s.name.into(),
        client_saw: Saw::default(),
        server_saw: Saw::default(),
        orig: None,
        resp: None,
        rst: None,
        kernel_reason: None,
        kernel_process: None,
        kernel_pid: None,
        expected: s.expected,
        verdict: None,
        verdict_checked: false,
        saw_as_documented: false,
        pass: false,
        linux: s.linux.into(),
        captures: Vec::new(),
        duration_ms: 0,
        error: None,
    };
    let res = if privileged {
        run_in_lab(s, dir)
    } else {
        // Hosts (and containers) without IPv6 on loopback run it over IPv4.
        let ipv6 = s.ipv6 && ipv6_loopback();
        (s.run)(&Env { topo: None, ipv6 }).map(|o| (o, Vec::new(), Vec::new(), Vec::new()))
    };
    match res {
        Ok((o, caps, frames, kernel)) => {
            r.saw_as_documented = o.client.0 == s.expect_client && o.server.0 == s.expect_server;
            let first = first_rst(&frames, o.orig, o.resp);
            let rst_ts = first.map(|(_, _, ts)| ts).unwrap_or(0);
            r.rst = first.map(|(addr, ttl, _)| RstSeen {
                addr,
                ttl,
                real_sender: s.real_sender.into(),
            });
            // The kernel's reason for the RST on the wire: a tcp_send_reset
            // with the same source and destination. None when no kernel
            // socket code sent it (a router's nft reject) or without tracefs.
            if std::env::var_os("RSTSCOPE_LAB_DEBUG").is_some() {
                for e in &kernel {
                    eprintln!(
                        "{}: kernel {} -> {} {:?} {:?} {:?}[{:?}] ts {}",
                        s.name, e.src, e.dst, e.reason, e.state, e.comm, e.pid, e.ts
                    );
                }
            }
            if let Some(rst) = &r.rst {
                let peer = if rst.addr == o.orig { o.resp } else { o.orig };
                // Several resets may share the pair (host_restart's first one
                // was dropped on the way): take the one closest in time. A
                // reset sent on behalf of a listener carries the listener's
                // unspecified peer.
                let rst_ts = rst_ts as i64;
                let sent = kernel
                    .iter()
                    .filter(|e| e.src == rst.addr && (e.dst == peer || e.dst.ip().is_unspecified()))
                    .min_by_key(|e| (e.dst != peer, (e.ts.0 - rst_ts).unsigned_abs()));
                r.kernel_reason = sent.map(|e| {
                    e.reason
                        .clone()
                        .unwrap_or_else(|| "(no reason on this kernel)".into())
                });
                r.kernel_process = sent.and_then(|e| e.comm.clone());
                r.kernel_pid = sent.and_then(|e| e.pid);
            }
            if privileged {
                r.verdict_checked = true;
                match caps.first().map(|c| diagnose(c, o.orig, o.resp)) {
                    Some(Ok(Some(d))) => r.verdict = Some(d),
                    Some(Ok(None)) => {
                        r.error = Some("the analyzer reported no reset for this connection".into())
                    }
                    Some(Err(e)) => r.error = Some(format!("{e:#}")),
                    None => r.error = Some("no capture".into()),
                }
            }
            r.pass = r.saw_as_documented
                && (!r.verdict_checked
                    || r.verdict.as_ref().is_some_and(|d| d.matches(&s.expected)));
            if !r.saw_as_documented && r.error.is_none() {
                r.error = Some(format!(
                    "Linux behaved differently than documented: expected client {:?}, server {:?}",
                    s.expect_client, s.expect_server
                ));
            }
            r.client_saw = o.client;
            r.server_saw = o.server;
            r.orig = Some(o.orig);
            r.resp = Some(o.resp);
            r.captures = caps;
        }
        Err(e) => r.error = Some(format!("{e:#}")),
    }
    r.duration_ms = start.elapsed().as_millis() as u64;
    r
}

fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

type LabRun = (
    Outcome,
    Vec<PathBuf>,
    Vec<Frame>,
    Vec<rstscope_core::ResetEvent>,
);

/// The kernel's own reset events (tcp_send_reset) while one scenario runs,
/// through `rstscope watch`'s library. Tracepoints are host-wide, so events
/// are kept only for the lab's addresses and matched by exact address pair.
struct KernelWatch(Option<rstscope_watch::Watcher>);

impl KernelWatch {
    fn start() -> KernelWatch {
        let cfg = rstscope_watch::WatchConfig {
            hosts: vec![ns::CLIENT.v4, ns::CLIENT.v6, ns::SERVER.v4, ns::SERVER.v6],
            direction: Some(rstscope_core::Direction::Sent),
            ring_kib: 256,
            ..Default::default()
        };
        match rstscope_watch::Watcher::start(&cfg) {
            Ok(w) => KernelWatch(Some(w)),
            Err(e) => {
                static NOTE: std::sync::Once = std::sync::Once::new();
                NOTE.call_once(|| eprintln!("rstscope lab: no kernel reasons ({e})"));
                KernelWatch(None)
            }
        }
    }
    fn drain(&mut self) -> Vec<rstscope_core::ResetEvent> {
        let mut all = Vec::new();
        if let Some(w) = &mut self.0 {
            while let Ok(ev) = w.poll(std::time::Duration::from_millis(30)) {
                if ev.is_empty() || all.len() > 10_000 {
                    break;
                }
                all.extend(ev);
            }
        }
        all
    }
}

fn run_in_lab(s: &Scenario, dir: &Path) -> Result<LabRun> {
    let mut kw = KernelWatch::start();
    let topo = Topology::create()?;
    let cap_c = Capture::start(&topo.cli, "eth0", &dir.join("client.pcap"))?;
    let cap_s = if s.capture_server {
        Some(Capture::start(&topo.srv, "eth0", &dir.join("server.pcap"))?)
    } else {
        None
    };
    let out = (s.run)(&Env {
        topo: Some(&topo),
        ipv6: s.ipv6,
    });
    let mut caps = vec![cap_c.path.clone()];
    let frames = cap_c.finish()?;
    if let Some(c) = cap_s {
        caps.push(c.path.clone());
        c.finish()?;
    }
    drop(topo);
    let kernel = kw.drain();
    Ok((out?, caps, frames, kernel))
}

/// The first RST between `orig` and `resp` in the frames: its source, TTL
/// and capture time (ns since the epoch).
pub fn first_rst(
    frames: &[Frame],
    orig: SocketAddr,
    resp: SocketAddr,
) -> Option<(SocketAddr, u8, u64)> {
    frames.iter().find_map(|f| {
        let seg = pcap::tcp_segment(&f.data)?;
        let ours = (seg.src == orig && seg.dst == resp) || (seg.src == resp && seg.dst == orig);
        (ours && seg.flags & pcap::RST != 0).then_some((seg.src, seg.ttl, f.ts_ns))
    })
}

fn write_truth(dir: &Path, s: &Scenario, r: &ScenarioResult) -> Result<()> {
    let truth = serde_json::json!({
        "scenario": s.name,
        "expected": s.expected,
        "real_sender": s.real_sender,
        "orig": r.orig,
        "resp": r.resp,
        "client_saw": r.client_saw,
        "server_saw": r.server_saw,
        "rst_on_wire": r.rst,
        "kernel_reason": r.kernel_reason,
        "linux": s.linux,
        "captures": r.captures.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>(),
        "verdict": r.verdict,
        "pass": r.pass,
    });
    let p = dir.join("truth.json");
    std::fs::write(&p, serde_json::to_string_pretty(&truth)? + "\n")
        .with_context(|| format!("write {}", p.display()))
}

fn tail(saw: &Saw, n: usize) -> String {
    let k = saw.0.len();
    if k == 0 {
        return "—".into();
    }
    let mut s = if k > n {
        "… ".to_string()
    } else {
        String::new()
    };
    s.push_str(&saw.0[k.saturating_sub(n)..].join(", "));
    s
}

fn rst_cell(r: &ScenarioResult) -> String {
    match &r.rst {
        Some(x) => format!(
            "{} ttl {} ({})",
            x.addr,
            x.ttl,
            short_sender(&x.real_sender)
        ),
        None if r.verdict_checked => "none seen".into(),
        None => "— (no capture)".into(),
    }
}

fn short_sender(s: &str) -> &str {
    s.split(" (").next().unwrap_or(s)
}

fn verdict_cell(r: &ScenarioResult) -> String {
    match (&r.verdict, r.verdict_checked) {
        (Some(d), _) => d.short(),
        (None, true) => "error".into(),
        (None, false) => "— (not checked)".into(),
    }
}

/// Renders the results as a text table.
pub fn render_table(results: &[ScenarioResult]) -> String {
    let head = [
        "scenario",
        "client saw",
        "server saw",
        "RST from (real sender)",
        "kernel reason",
        "rstscope verdict",
        "",
    ];
    let rows: Vec<[String; 7]> = results
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                tail(&r.client_saw, 3),
                tail(&r.server_saw, 2),
                rst_cell(r),
                r.kernel_reason.clone().unwrap_or_else(|| "—".into()),
                verdict_cell(r),
                if r.pass { "✓".into() } else { "✗".into() },
            ]
        })
        .collect();
    let mut w = head.map(|h| h.chars().count());
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w[i] - c.chars().count()));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&head.map(String::from));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// Renders the results as the README section "What Linux really does".
pub fn render_markdown(results: &[ScenarioResult]) -> String {
    let mut out = String::from(
        "## What Linux really does\n\n\
         Generated by `rstscope lab run --format markdown` (real sockets in network namespaces; \
         client 198.18.1.2, router, server 198.18.2.2:7001).\n\n\
         | scenario | what the client saw | what the server saw | RST on the client's link (real sender) | kernel reason | rstscope verdict | |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.client_saw.0.join(", "),
            r.server_saw.0.join(", "),
            match &r.rst {
                Some(x) => format!("{}, TTL {}: {}", x.addr, x.ttl, x.real_sender),
                None => "—".into(),
            },
            r.kernel_reason.as_deref().unwrap_or("—"),
            verdict_cell(r),
            if r.pass { "✓" } else { "✗" }
        ));
    }
    out.push('\n');
    for r in results {
        out.push_str(&format!("- **`{}`**: {}\n", r.scenario, r.linux));
    }
    for (n, why) in LEFT_OUT {
        out.push_str(&format!("- **`{n}`**: {why}.\n"));
    }
    out
}

/// `lab run` with its output and exit code.
pub fn run_cli(a: RunArgs) -> ExitCode {
    let privileged = is_root();
    if !privileged {
        eprintln!(
            "rstscope lab: not running as root, so no network namespaces, nftables or packet capture \
             (they need CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW); nothing on this host is changed. \
             Running the scenarios that work on loopback, without capture and without checking verdicts."
        );
    }
    let refused: Vec<&str> = if privileged {
        Vec::new()
    } else {
        catalog()
            .iter()
            .filter(|s| !s.loopback && a.scenarios.iter().any(|n| n == s.name))
            .map(|s| s.name)
            .collect()
    };
    let (results, skipped) = match run_scenarios(&a.scenarios, a.record.as_deref(), privileged) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("rstscope lab: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut out = String::new();
    match a.format {
        _ if results.is_empty() => {}
        Format::Table => out.push_str(&render_table(&results)),
        Format::Json => {
            for r in &results {
                out.push_str(&serde_json::to_string(r).unwrap_or_default());
                out.push('\n');
            }
        }
        Format::Markdown => out.push_str(&render_markdown(&results)),
    }
    use std::io::Write;
    let _ = std::io::stdout().write_all(out.as_bytes());
    for r in results.iter().filter(|r| r.error.is_some()) {
        eprintln!("{}: {}", r.scenario, r.error.as_deref().unwrap_or(""));
    }
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    if let Some(d) = &a.record {
        eprintln!("recorded under {}", d.display());
    }
    let total: u64 = results.iter().map(|r| r.duration_ms).sum();
    let passed = results.iter().filter(|r| r.pass).count();
    eprintln!(
        "{passed}/{} passed in {:.1} s",
        results.len(),
        total as f64 / 1000.0
    );
    if !refused.is_empty() {
        eprintln!(
            "rstscope lab: refused {}: run as root (e.g. `sudo rstscope lab run {}`)",
            refused.join(", "),
            refused.join(" ")
        );
        return ExitCode::from(2);
    }
    if results.iter().all(|r| r.pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstscope_core::Cause;

    fn result(name: &str, pass: bool, verdict: Option<Diagnosis>) -> ScenarioResult {
        ScenarioResult {
            scenario: name.into(),
            client_saw: Saw(vec![
                "connect: ok".into(),
                "send: ok".into(),
                "recv: ECONNRESET".into(),
                "send: EPIPE".into(),
            ]),
            server_saw: Saw(vec!["close with 5 bytes unread: ok".into()]),
            orig: Some("198.18.1.2:40000".parse().unwrap()),
            resp: Some("198.18.2.2:7001".parse().unwrap()),
            rst: Some(RstSeen {
                addr: "198.18.2.2:7001".parse().unwrap(),
                ttl: 63,
                real_sender: "server kernel (close)".into(),
            }),
            kernel_reason: None,
            kernel_process: None,
            kernel_pid: None,
            expected: Verdict {
                from: Side::Responder,
                sender: Sender::Endpoint,
                cause: Cause::UnreadDataClose,
            },
            verdict_checked: verdict.is_some(),
            verdict,
            saw_as_documented: true,
            pass,
            linux: "text".into(),
            captures: vec![],
            duration_ms: 1,
            error: None,
        }
    }

    fn diag(cause: Cause) -> Diagnosis {
        Diagnosis {
            from: Some(Side::Responder),
            sender: Sender::Endpoint,
            cause,
            confidence: 0.9,
            evidence: vec![],
        }
    }

    #[test]
    fn table_aligns_columns_and_marks_pass_and_fail() {
        let rs = vec![
            result(
                "unread_data_close",
                true,
                Some(diag(Cause::UnreadDataClose)),
            ),
            result("x", false, Some(diag(Cause::AbortiveClose))),
            result("loop", true, None),
        ];
        let t = render_table(&rs);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("scenario "));
        // Every column starts at the same character offset in every row.
        let col = |l: &str, needle: &str| {
            l.chars().count() - l[l.find(needle).unwrap()..].chars().count()
        };
        assert_eq!(col(lines[1], "… send: ok"), col(lines[0], "client saw"));
        assert_eq!(col(lines[2], "… send: ok"), col(lines[0], "client saw"));
        assert_eq!(
            col(lines[1], "198.18.2.2:7001 ttl 63 (server kernel)"),
            col(lines[0], "RST from")
        );
        assert!(
            lines[1].ends_with("responder endpoint unread_data_close  ✓"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with("responder endpoint abortive_close     ✗"),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains("— (not checked)") && lines[3].ends_with('✓'));
        // The last three calls only, with an ellipsis for the rest.
        assert!(lines[1].contains("… send: ok, recv: ECONNRESET, send: EPIPE"));
    }

    #[test]
    fn markdown_has_one_row_per_scenario_and_the_left_out_ones() {
        let rs = vec![result(
            "unread_data_close",
            true,
            Some(diag(Cause::UnreadDataClose)),
        )];
        let m = render_markdown(&rs);
        assert!(m.starts_with("## What Linux really does\n"));
        assert!(m.contains("| `unread_data_close` | connect: ok, send: ok, recv: ECONNRESET, send: EPIPE | close with 5 bytes unread: ok | 198.18.2.2:7001, TTL 63: server kernel (close) | — | responder endpoint unread_data_close | ✓ |"), "{m}");
        assert!(m.contains("**`memory_pressure`**"));
    }

    #[test]
    fn list_names_every_scenario_of_the_issue() {
        let l = list();
        for n in [
            "refused",
            "abortive_close",
            "unread_data_close",
            "server_crash",
            "data_after_close",
            "host_restart",
            "firewall_reject",
            "nat_idle_expiry",
            "server_idle_timeout",
            "keepalive_timeout",
            "listen_overflow",
            "handshake_abort",
            "memory_pressure",
        ] {
            assert!(
                l.lines().any(|x| x.starts_with(&format!("{n} "))),
                "{n} missing from:\n{l}"
            );
        }
    }

    #[test]
    fn unknown_scenario_is_an_error_not_a_panic() {
        let e = run_scenarios(&["nope".into()], None, false).unwrap_err();
        assert!(e.to_string().contains("no scenario \"nope\""));
    }
}
