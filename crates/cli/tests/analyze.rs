//! End-to-end tests of `rstscope analyze`: the real binary on captures
//! written by the test, checked the way a user or a script reads the output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const S: u8 = 0x02;
const A: u8 = 0x10;
const F: u8 = 0x01;
const R: u8 = 0x04;
const P: u8 = 0x08;

/// Builds classic pcap files of Ethernet/IPv4/TCP packets.
struct Pcap {
    bytes: Vec<u8>,
    ids: [u16; 2],
}

struct Pkt {
    t: f64,
    from_client: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    len: usize,
    ttl: Option<u8>,
    ipid: Option<u16>,
}

fn pkt(t: f64, from_client: bool, flags: u8, seq: u32, ack: u32, len: usize) -> Pkt {
    Pkt {
        t,
        from_client,
        flags,
        seq,
        ack,
        len,
        ttl: None,
        ipid: None,
    }
}

impl Pcap {
    fn new() -> Self {
        let mut bytes = Vec::new();
        {
            let v = 0xa1b2c3d4u32;
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&65535u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        Pcap {
            bytes,
            ids: [100, 5000],
        }
    }

    /// One connection between 10.0.0.1:cport (client, TTL 64) and
    /// 198.18.0.5:80 (server, TTL 57).
    fn conn(&mut self, cport: u16, pkts: &[Pkt]) {
        for p in pkts {
            let (src, dst, sp, dp, ttl) = if p.from_client {
                ([10, 0, 0, 1], [198, 18, 0, 5], cport, 80u16, 64u8)
            } else {
                ([198, 18, 0, 5], [10, 0, 0, 1], 80u16, cport, 57u8)
            };
            let k = if p.from_client { 0 } else { 1 };
            self.ids[k] = self.ids[k].wrapping_add(1);
            let ipid = p.ipid.unwrap_or(self.ids[k]);
            let mut tcp = Vec::new();
            tcp.extend_from_slice(&sp.to_be_bytes());
            tcp.extend_from_slice(&dp.to_be_bytes());
            tcp.extend_from_slice(&p.seq.to_be_bytes());
            tcp.extend_from_slice(&p.ack.to_be_bytes());
            tcp.extend_from_slice(&[0x50, p.flags, 0x10, 0x00, 0, 0, 0, 0]);
            tcp.extend(std::iter::repeat_n(b'x', p.len));
            let total = 20 + tcp.len();
            let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
            f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8]);
            f.extend_from_slice(&ipid.to_be_bytes());
            f.extend_from_slice(&[0x40, 0, p.ttl.unwrap_or(ttl), 6, 0, 0]);
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
            f.extend_from_slice(&tcp);
            let sec = p.t.floor() as u32;
            let usec = ((p.t - p.t.floor()) * 1e6).round() as u32;
            self.bytes.extend_from_slice(&sec.to_le_bytes());
            self.bytes.extend_from_slice(&usec.to_le_bytes());
            self.bytes
                .extend_from_slice(&(f.len() as u32).to_le_bytes());
            self.bytes
                .extend_from_slice(&(f.len() as u32).to_le_bytes());
            self.bytes.extend_from_slice(&f);
        }
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.bytes).unwrap();
        p
    }
}

/// A connection from `t` on whose RST is forged: TTL 64 and IP ID 0 in the
/// server's name, then the server's real data.
fn forged(t: f64) -> Vec<Pkt> {
    vec![
        pkt(t, true, S, 1000, 0, 0),
        pkt(t + 0.01, false, S | A, 9000, 1001, 0),
        pkt(t + 0.02, true, A, 1001, 9001, 0),
        pkt(t + 0.03, true, P | A, 1001, 9001, 100),
        Pkt {
            ttl: Some(64),
            ipid: Some(0),
            ..pkt(t + 0.031, false, R | A, 9001, 1101, 0)
        },
        pkt(t + 0.05, false, P | A, 9001, 1101, 50),
    ]
}

/// A capture with one connection per common cause.
fn sample() -> Pcap {
    let mut c = Pcap::new();
    let t = 1_700_000_000.0;
    // refused: SYN answered by RST|ACK.
    c.conn(
        40001,
        &[
            pkt(t, true, S, 1000, 0, 0),
            pkt(t + 0.001, false, R | A, 0, 1001, 0),
        ],
    );
    let hs = |t: f64| {
        vec![
            pkt(t, true, S, 1000, 0, 0),
            pkt(t + 0.01, false, S | A, 9000, 1001, 0),
            pkt(t + 0.02, true, A, 1001, 9001, 0),
        ]
    };
    // data after close: server FIN, client writes 0.5 s later, server RST.
    let mut v = hs(t + 1.0);
    v.extend([
        pkt(t + 1.03, true, P | A, 1001, 9001, 10),
        pkt(t + 1.04, false, P | A, 9001, 1011, 20),
        pkt(t + 1.05, false, F | A, 9021, 1011, 0),
        pkt(t + 1.06, true, A, 1011, 9022, 0),
        pkt(t + 1.56, true, P | A, 1011, 9022, 30),
        pkt(t + 1.57, false, R, 9022, 0, 0),
    ]);
    c.conn(40002, &v);
    c.conn(40003, &forged(t + 2.0));
    // idle: 400 s of silence, then the client's segment is answered by a no-state RST.
    let mut v = hs(t + 3.0);
    v.extend([
        pkt(t + 3.03, true, P | A, 1001, 9001, 10),
        pkt(t + 3.04, false, P | A, 9001, 1011, 10),
        pkt(t + 403.04, true, P | A, 1011, 9011, 10),
        pkt(t + 403.05, false, R, 9011, 0, 0),
    ]);
    c.conn(40004, &v);
    c
}

fn rstscope(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rstscope"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap();
    if let Some(data) = stdin {
        let mut i = child.stdin.take().unwrap();
        i.write_all(data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "$ rstscope {}\nexit {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_port(lines: &[serde_json::Value], port: u16) -> serde_json::Value {
    lines
        .iter()
        .find(|l| l["orig"].as_str().unwrap().ends_with(&format!(":{port}")))
        .unwrap_or_else(|| panic!("no connection from port {port}"))
        .clone()
}

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "rstscope-cli-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn json_verdicts_and_stable_fields() {
    let d = tmp();
    let f = sample().write(&d, "s.pcap");
    let out = rstscope(&["analyze", "--format", "json", f.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0));
    let l = json_lines(&out);
    assert_eq!(l.len(), 4, "one line per reset connection");
    for o in &l {
        for k in [
            "orig",
            "resp",
            "start",
            "end",
            "conn_state",
            "history",
            "orig_pkts",
            "resp_pkts",
            "orig_bytes",
            "resp_bytes",
            "resets",
            "reset",
        ] {
            assert!(o.get(k).is_some(), "missing {k} in {o}");
        }
        for k in [
            "ts",
            "from",
            "sender",
            "cause",
            "confidence",
            "evidence",
            "idle_before_s",
            "ttl",
            "expected_ttl",
        ] {
            assert!(o["reset"].get(k).is_some(), "missing reset.{k} in {o}");
        }
    }
    let r = by_port(&l, 40001);
    assert_eq!(
        (r["conn_state"].as_str(), r["history"].as_str()),
        (Some("REJ"), Some("Sr"))
    );
    assert_eq!(r["reset"]["cause"], "refused");
    assert_eq!(r["reset"]["from"], "responder");
    assert_eq!(r["orig"], "10.0.0.1:40001");

    let d2 = by_port(&l, 40002);
    assert_eq!(d2["reset"]["cause"], "data_after_close");
    assert_eq!(d2["reset"]["sender"], "endpoint");
    let ev = d2["reset"]["evidence"].to_string();
    assert!(
        ev.contains("RST answers data sent 0.51 s after 198.18.0.5 closed with FIN"),
        "{ev}"
    );

    let fo = by_port(&l, 40003);
    assert_eq!(fo["reset"]["sender"], "middlebox");
    assert_eq!(fo["reset"]["cause"], "firewall_reject");
    assert_eq!(fo["reset"]["ttl"], 64);
    assert_eq!(fo["reset"]["expected_ttl"], 57);
    let ev = fo["reset"]["evidence"].to_string();
    assert!(
        ev.contains("TTL 64, but every other packet from 198.18.0.5 arrived with TTL 57"),
        "{ev}"
    );

    let idle = by_port(&l, 40004);
    assert_eq!(idle["reset"]["cause"], "idle_timeout");
    assert!((idle["reset"]["idle_before_s"].as_f64().unwrap() - 400.0).abs() < 0.01);
    assert!(idle["reset"]["evidence"]
        .to_string()
        .contains("400.0 s idle"));

    // --all adds the connections without resets (none here) and keeps these.
    let all = json_lines(&rstscope(
        &["analyze", "--format", "json", "--all", f.to_str().unwrap()],
        None,
    ));
    assert_eq!(all.len(), 4);
}

/// A capture that begins with a connection's RST says nothing about its
/// cause or its sender: the verdict says so instead of guessing, unless a
/// later packet from the RST's address shows who sent it.
#[test]
fn an_rst_with_nothing_before_it_is_unknown() {
    let d = tmp();
    let mut c = Pcap::new();
    let t = 1_700_000_000.0;
    // Only the server's RST|ACK.
    c.conn(40011, &[pkt(t, false, R | A, 9001, 1101, 0)]);
    // The server's RST|ACK, then the server still sending with another TTL:
    // the RST was forged, whatever the cause.
    c.conn(
        40012,
        &[
            Pkt {
                ttl: Some(64),
                ..pkt(t + 1.0, false, R | A, 9001, 1101, 0)
            },
            pkt(t + 1.2, false, P | A, 9001, 1101, 50),
        ],
    );
    // A SYN, then an RST without ACK from the same side, nothing from the
    // server: no rule explains it, and the evidence says what it is.
    c.conn(
        40013,
        &[
            pkt(t + 2.0, true, S, 1000, 0, 0),
            pkt(t + 2.5, true, R, 1001, 0, 0),
        ],
    );
    let f = c.write(&d, "lone.pcap");
    let l = json_lines(&rstscope(
        &["analyze", "--format", "json", f.to_str().unwrap()],
        None,
    ));
    let lone = &by_port(&l, 40011)["reset"];
    assert_eq!(lone["cause"], "unknown", "{lone}");
    assert_eq!(lone["sender"], "unknown", "{lone}");
    assert_eq!(lone["from"], "responder");
    assert!(lone["confidence"].as_f64().unwrap() <= 0.3, "{lone}");
    assert!(
        lone["evidence"]
            .to_string()
            .contains("the capture holds no earlier packet of this connection"),
        "{lone}"
    );
    let raced = &by_port(&l, 40012)["reset"];
    assert_eq!(raced["sender"], "middlebox", "{raced}");
    assert_eq!(raced["cause"], "firewall_reject", "{raced}");

    let odd = &by_port(&l, 40013)["reset"];
    assert_eq!(odd["cause"], "unknown", "{odd}");
    assert!(
        odd["evidence"].to_string().contains(
            "no rule fits: an RST without ACK, seq 1001 (10.0.0.1's next sequence number), answering no segment from 198.18.0.5 in the capture"
        ),
        "{odd}"
    );

    let human = rstscope(&["analyze", f.to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("sent by the endpoint or a device on the path (not enough evidence to tell)"),
        "{text}"
    );
}

#[test]
fn idle_threshold_option_changes_the_verdict() {
    let d = tmp();
    let f = sample().write(&d, "s.pcap");
    let out = rstscope(
        &[
            "analyze",
            "--format",
            "json",
            "--idle-threshold",
            "500",
            f.to_str().unwrap(),
        ],
        None,
    );
    let idle = by_port(&json_lines(&out), 40004);
    assert_eq!(
        idle["reset"]["cause"], "unknown_connection",
        "400 s is below a 500 s threshold"
    );
}

#[test]
fn filters_select_connections() {
    let d = tmp();
    let f = sample().write(&d, "s.pcap");
    let f = f.to_str().unwrap();
    let l = json_lines(&rstscope(
        &[
            "analyze",
            "--format",
            "json",
            "--cause",
            "refused,idle_timeout",
            f,
        ],
        None,
    ));
    assert_eq!(l.len(), 2);
    let l = json_lines(&rstscope(
        &["analyze", "--format", "json", "--port", "40003", f],
        None,
    ));
    assert_eq!(l.len(), 1);
    let l = json_lines(&rstscope(
        &["analyze", "--format", "json", "--host", "10.9.9.9", f],
        None,
    ));
    assert!(l.is_empty());
    let bad = rstscope(&["analyze", "--cause", "nonsense", f], None);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn truncated_capture_reports_what_came_before_and_exits_1() {
    let d = tmp();
    let s = sample();
    let cut = s.bytes.len() - 7;
    let p = d.join("cut.pcap");
    std::fs::write(&p, &s.bytes[..cut]).unwrap();
    let out = rstscope(&["analyze", "--format", "json", p.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated packet record at byte"), "{err}");
    let l = json_lines(&out);
    assert_eq!(
        by_port(&l, 40001)["reset"]["cause"],
        "refused",
        "earlier results are kept"
    );
}

#[test]
fn stdin_gzip_and_garbage() {
    let d = tmp();
    let s = sample();
    let out = rstscope(&["analyze", "--format", "json", "-"], Some(&s.bytes));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_lines(&out).len(), 4);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&s.bytes).unwrap();
    let p = d.join("s.pcap.gz");
    std::fs::write(&p, gz.finish().unwrap()).unwrap();
    assert_eq!(
        json_lines(&rstscope(
            &["analyze", "--format", "json", p.to_str().unwrap()],
            None
        ))
        .len(),
        4
    );

    let g = d.join("junk.pcap");
    std::fs::write(&g, b"this is not a capture at all").unwrap();
    let out = rstscope(&["analyze", g.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng"));
    let missing = d.join("missing.pcap");
    let out = rstscope(&["analyze", missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    // The file and the system's reason, said once, without a byte offset
    // (nothing was read).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot read {}: ", missing.display())),
        "{err}"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("at byte"), "{err}");
}

#[test]
fn zeek_conn_log_format() {
    let d = tmp();
    let f = sample().write(&d, "s.pcap");
    let out = rstscope(&["analyze", "--format", "zeek", f.to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#separator \\x09");
    let fields: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("#fields"))
        .unwrap()
        .split('\t')
        .skip(1)
        .collect();
    let types: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("#types"))
        .unwrap()
        .split('\t')
        .skip(1)
        .collect();
    assert_eq!(fields.len(), types.len());
    assert_eq!(
        &fields[..6],
        [
            "ts",
            "uid",
            "id.orig_h",
            "id.orig_p",
            "id.resp_h",
            "id.resp_p"
        ]
    );
    let state = fields.iter().position(|f| *f == "conn_state").unwrap();
    let hist = fields.iter().position(|f| *f == "history").unwrap();
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r.len(), fields.len());
    }
    let refused = rows.iter().find(|r| r[3] == "40001").unwrap();
    assert_eq!((refused[state], refused[hist]), ("REJ", "Sr"));
    assert!(lines.last().unwrap().starts_with("#close"));
}

#[test]
fn human_report_opens_with_the_summary() {
    let d = tmp();
    let f = sample().write(&d, "s.pcap");
    let out = rstscope(&["analyze", f.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0));
    let t = String::from_utf8_lossy(&out.stdout);
    let cause = t.find("Resets by cause").unwrap();
    let sender = t.find("By sender").unwrap();
    let list = t.find("Reset connections, most telling first").unwrap();
    assert!(cause < sender && sender < list);
    // The middlebox verdict is the most telling: it comes first.
    let first = &t[list..];
    assert!(first.find("firewall_reject").unwrap() < first.find("refused").unwrap());
}

/// The detailed list holds the most telling connections of the whole
/// capture, not of its first few thousand resets: a forged RST after
/// 12,000 refused connections still comes first, on any number of threads.
#[test]
fn the_most_telling_reset_is_shown_however_late_it_comes() {
    let d = tmp();
    let mut c = Pcap::new();
    let t = 1_700_000_000.0;
    for i in 0..12_000u32 {
        let at = t + i as f64 * 0.001;
        c.conn(
            (20_000 + i) as u16,
            &[
                pkt(at, true, S, 1000, 0, 0),
                pkt(at + 0.0005, false, R | A, 0, 1001, 0),
            ],
        );
    }
    c.conn(40099, &forged(t + 20.0));
    let f = c.write(&d, "late.pcap");
    let mut reports = Vec::new();
    for threads in ["1", "3"] {
        let out = rstscope(
            &[
                "analyze",
                "--threads",
                threads,
                "--limit",
                "3",
                f.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0));
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        let list = &t[t.find("Reset connections, most telling first").unwrap()..];
        let first = list.lines().nth(2).unwrap_or_default();
        assert!(
            first.contains("10.0.0.1:40099 -> 198.18.0.5:80"),
            "{threads} threads: the forged RST should come first:\n{t}"
        );
        assert!(t.contains("... and 11998 more"), "{t}");
        reports.push(t);
    }
    assert_eq!(reports[0], reports[1], "the same report on 1 and 3 threads");
}

/// Zeek's own conn.log baselines (../shared/corpora/zeek): every expected
/// connection must be found with Zeek's conn_state and history. Rows with
/// the same 4-tuple are matched in order (port reuse gives several).
#[test]
fn agrees_with_zeek_baselines() {
    let corp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/zeek");
    if !corp.join("expected.jsonl").exists() {
        let msg = format!("SKIPPED agrees_with_zeek_baselines: {} not found (it sits beside the repo as ../shared)", corp.display());
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("{msg}");
        return;
    }
    let mut cache: std::collections::HashMap<String, Vec<serde_json::Value>> = Default::default();
    let mut used: std::collections::HashSet<(String, usize)> = Default::default();
    let (mut n, mut ok) = (0, 0);
    let mut bad = Vec::new();
    for line in std::fs::read_to_string(corp.join("expected.jsonl"))
        .unwrap()
        .lines()
    {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["tunneled"] == true {
            continue;
        }
        n += 1;
        let tr = row["trace"].as_str().unwrap().to_string();
        let conns = cache.entry(tr.clone()).or_insert_with(|| {
            let p = corp.join("traces").join(&tr);
            json_lines(&rstscope(
                &[
                    "analyze",
                    "--format",
                    "json",
                    "--all",
                    "--threads",
                    "1",
                    "-q",
                    p.to_str().unwrap(),
                ],
                None,
            ))
        });
        let hit = conns.iter().enumerate().find(|(i, c)| {
            !used.contains(&(tr.clone(), *i))
                && (row["orig"].is_null() || (c["orig"] == row["orig"] && c["resp"] == row["resp"]))
                && c["conn_state"] == row["conn_state"]
                && c["history"] == row["history"]
        });
        match hit {
            Some((i, _)) => {
                used.insert((tr, i));
                ok += 1;
            }
            None => bad.push(format!(
                "{tr} {} {} {} {}",
                row["orig"], row["resp"], row["conn_state"], row["history"]
            )),
        }
    }
    assert!(n >= 40);
    assert_eq!(ok, n, "not matched: {bad:#?}");
}

/// `tcpdump -w - | rstscope analyze -`: results come out while the pipe is
/// still open, as soon as capture time has retired the connection, not
/// when the input ends. Both with the multi-threaded pipeline and on one
/// thread.
#[test]
fn a_live_pipe_is_followed() {
    use std::io::BufRead;
    for threads in ["0", "1"] {
        let mut c = Pcap::new();
        let t = 1_700_000_000.0;
        c.conn(
            40001,
            &[
                pkt(t, true, S, 1000, 0, 0),
                pkt(t + 0.001, false, R | A, 0, 1001, 0),
            ],
        );
        // A later packet of another connection moves capture time past
        // the refused connection's 5 s close delay.
        c.conn(40002, &[pkt(t + 30.0, true, S, 5000, 0, 0)]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_rstscope"))
            .args(["analyze", "--format", "json", "--threads", threads, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&c.bytes).unwrap();
        stdin.flush().unwrap();
        // Read the first line on another thread, so a hang fails the test
        // instead of blocking it; stdin stays open meanwhile.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(20));
        drop(stdin);
        let _ = child.kill();
        let _ = child.wait();
        let line = got.unwrap_or_else(|_| {
            panic!("--threads {threads}: no result within 20 s while the pipe was open")
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["reset"]["cause"], "refused",
            "--threads {threads}: {line}"
        );
    }
}

/// Captures merged from machines whose clocks disagree jump back and forth
/// in time. Whatever the number of tracking threads (each sees only its
/// share of the connections), the connections and verdicts are the same
/// as with one.
#[test]
fn time_jumps_give_the_same_result_on_any_number_of_threads() {
    let d = tmp();
    let mut c = Pcap::new();
    let t = 1_700_000_000.0;
    let later = t + 2_000_000.0; // 23 days on, the other machine's clock
    c.conn(50000, &[pkt(t, true, A, 1, 1, 0)]);
    c.conn(50001, &[pkt(later, true, A, 1, 1, 0)]);
    // Connections first seen after the jump, back at the earlier time; then
    // other connections at the later time (on trackers that had not seen
    // it yet); then each earlier connection's second packet.
    for port in 50100..50120 {
        c.conn(port, &[pkt(t + 0.5, true, A, 1, 1, 0)]);
    }
    for port in 50200..50220 {
        c.conn(port, &[pkt(later, true, A, 1, 1, 0)]);
    }
    for port in 50100..50120 {
        c.conn(port, &[pkt(t + 0.5, true, A, 1, 1, 0)]);
    }
    let f = c.write(&d, "jumps.pcap");
    let sorted = |threads: &str| {
        let out = rstscope(
            &[
                "analyze",
                "--format",
                "json",
                "--all",
                "--threads",
                threads,
                f.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0));
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        lines.sort();
        (lines, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let one = sorted("1");
    for threads in ["2", "3", "4", "8"] {
        assert_eq!(
            sorted(threads),
            one,
            "--threads {threads} against --threads 1"
        );
    }
}
