//! End-to-end: the lab on real sockets, and the recorded captures as
//! regression fixtures for the analyzer.

use rstscope_core::Verdict;
use rstscope_lab::{ns, report};
use std::path::Path;
use std::sync::Mutex;

// The tests below create namespaces and check that none is left: run them
// one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn full_lab_as_root_gives_every_expected_verdict() {
    if !rstscope_testkit::privileged("full_lab_as_root_gives_every_expected_verdict")
        || !rstscope_testkit::require_program("full_lab", "ip")
        || !rstscope_testkit::require_program("full_lab", "nft")
    {
        return;
    }
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("rstscope-lab-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = std::time::Instant::now();
    let (results, skipped) = report::run_scenarios(&[], Some(&dir), true).unwrap();
    let took = start.elapsed();
    eprint!("{}", report::render_table(&results));
    assert_eq!(
        results.len(),
        13,
        "every scenario of the issue but memory_pressure"
    );
    assert!(skipped.iter().any(|s| s.starts_with("memory_pressure")));
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.pass)
        .map(|r| {
            format!(
                "{}: verdict {:?}, expected {}, error {:?}",
                r.scenario, r.verdict, r.expected, r.error
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "failed scenarios:\n{}",
        failed.join("\n")
    );
    for r in &results {
        assert!(r.verdict_checked && r.saw_as_documented, "{}", r.scenario);
        let rst = r
            .rst
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no RST on the wire", r.scenario));
        // The RST carries the address of the side the verdict names.
        let want = match r.expected.from {
            rstscope_core::Side::Originator => r.orig,
            rstscope_core::Side::Responder => r.resp,
        };
        assert_eq!(Some(rst.addr), want, "{}", r.scenario);
        // --record kept the capture and a truth.json that round-trips.
        let sd = dir.join(&r.scenario);
        let truth: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sd.join("truth.json")).unwrap()).unwrap();
        let expected: Verdict = serde_json::from_value(truth["expected"].clone()).unwrap();
        assert_eq!(expected, r.expected);
        assert_eq!(
            truth["client_saw"],
            serde_json::to_value(&r.client_saw).unwrap()
        );
        assert!(std::fs::metadata(sd.join("client.pcap")).unwrap().len() > 24);
    }
    // The firewall's RST is forged: TTL 64 from the router, one hop closer
    // than the server's own packets (63).
    let fw = results
        .iter()
        .find(|r| r.scenario == "firewall_reject")
        .unwrap();
    assert_eq!(fw.rst.as_ref().unwrap().ttl, 64);
    kernel_reasons_and_processes_are_as_measured(&results);
    assert!(took.as_secs() < 60, "the catalog took {took:?}");
    assert!(
        ns::leftover_namespaces().is_empty(),
        "left: {:?}",
        ns::leftover_namespaces()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Who sent a scenario's reset, as `rstscope watch` must report it.
#[derive(Debug, PartialEq)]
enum Proc {
    /// No socket, or not the kernel's socket code: no process.
    None,
    /// This test process (the lab runs its sockets in-process).
    Lab,
    /// Another process, by command name.
    Named(&'static str),
}

/// The kernel reason (`tcp_send_reset`) and the process `rstscope watch`
/// reported for the RST on each scenario's wire, as measured on Linux 6.18.
/// Every scenario must have a row: a new scenario needs its own.
fn kernel_reasons_and_processes_are_as_measured(results: &[report::ScenarioResult]) {
    let table: &[(&str, &[&str], Proc)] = &[
        ("refused", &["NO_SOCKET"], Proc::None),
        ("abortive_close", &["TCP_STATE"], Proc::Lab),
        ("unread_data_close", &["TCP_ABORT_ON_CLOSE"], Proc::Lab),
        // The killed process's name, saved by the tracer as it died.
        (
            "server_crash",
            &["TCP_ABORT_ON_CLOSE"],
            Proc::Named("sleep"),
        ),
        // Full orphaned socket, or (later) its time-wait successor: the
        // scenario's own text documents both; the listener's process.
        (
            "data_after_close",
            &["TCP_ABORT_ON_DATA", "TCP_TIMEWAIT_SOCKET"],
            Proc::Lab,
        ),
        ("host_restart", &["NO_SOCKET"], Proc::None),
        // nft's reject on the router: no kernel socket code sent it.
        ("firewall_reject", &[], Proc::None),
        ("nat_idle_expiry", &["NO_SOCKET"], Proc::None),
        ("server_idle_timeout", &["TCP_STATE"], Proc::Lab),
        // rstscope proxy runs in-process (its own runtime threads, in the
        // router's namespace) and closes with SO_LINGER {1,0}.
        ("lb_idle_timeout", &["TCP_STATE"], Proc::Lab),
        // Sent from the keepalive timer (softirq, often on an idle CPU):
        // the owner learned at connect().
        ("keepalive_timeout", &["TCP_KEEPALIVE_TIMEOUT"], Proc::Lab),
        // Sent on behalf of the listener.
        ("listen_overflow", &["INVALID_SYN"], Proc::Lab),
        ("handshake_abort", &["NO_SOCKET"], Proc::None),
    ];
    let me = std::process::id();
    let my_comm = std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_string();
    let mut wrong = Vec::new();
    for r in results {
        let Some((_, reasons, proc_)) = table.iter().find(|(n, _, _)| *n == r.scenario) else {
            wrong.push(format!(
                "{}: no expected kernel reason in this test's table; add its row \
                 (measured: {:?}, process {:?})",
                r.scenario, r.kernel_reason, r.kernel_process
            ));
            continue;
        };
        let reason_ok = match r.kernel_reason.as_deref() {
            None => reasons.is_empty(),
            Some(k) => reasons.contains(&k),
        };
        let proc_ok = match proc_ {
            Proc::None => r.kernel_process.is_none() && r.kernel_pid.is_none(),
            Proc::Lab => {
                r.kernel_pid == Some(me) && r.kernel_process.as_deref() == Some(my_comm.as_str())
            }
            Proc::Named(n) => {
                r.kernel_process.as_deref() == Some(*n) && r.kernel_pid.is_some_and(|p| p != me)
            }
        };
        if !reason_ok || !proc_ok {
            wrong.push(format!(
                "{}: kernel reason {:?} (expected one of {:?}), process {:?}[{:?}] (expected {:?})",
                r.scenario, r.kernel_reason, reasons, r.kernel_process, r.kernel_pid, proc_
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn namespaces_are_removed_when_a_scenario_panics() {
    if !rstscope_testkit::privileged("namespaces_are_removed_when_a_scenario_panics") {
        return;
    }
    let _g = serial();
    let names = std::sync::Arc::new(Mutex::new(Vec::new()));
    let n2 = names.clone();
    let r = std::panic::catch_unwind(move || {
        let t = ns::Topology::create().unwrap();
        n2.lock()
            .unwrap()
            .extend([t.cli.clone(), t.rtr.clone(), t.srv.clone()]);
        assert!(Path::new(&format!("/run/netns/{}", t.cli)).exists());
        panic!("scenario failed");
    });
    assert!(r.is_err());
    let names = names.lock().unwrap();
    assert_eq!(names.len(), 3);
    for n in names.iter() {
        assert!(
            !Path::new(&format!("/run/netns/{n}")).exists(),
            "{n} left behind"
        );
    }
}

#[test]
fn loopback_scenarios_run_without_namespaces() {
    let _g = serial();
    let (results, skipped) = report::run_scenarios(&[], None, false).unwrap();
    let names: Vec<&str> = results.iter().map(|r| r.scenario.as_str()).collect();
    assert_eq!(
        names,
        [
            "refused",
            "abortive_close",
            "unread_data_close",
            "server_crash",
            "data_after_close",
            "server_idle_timeout"
        ]
    );
    assert_eq!(skipped.len(), 8, "{skipped:?}");
    for r in &results {
        assert!(!r.verdict_checked);
        assert!(
            r.saw_as_documented,
            "{}: client {:?} server {:?} ({:?})",
            r.scenario, r.client_saw, r.server_saw, r.error
        );
    }
    // The article's example: no ECONNRESET on Linux, but EOF then EPIPE.
    let d = results
        .iter()
        .find(|r| r.scenario == "data_after_close")
        .unwrap();
    assert_eq!(d.client_saw.0[3..], ["recv: EOF", "send: EPIPE"]);
}

#[test]
fn recorded_lab_captures_still_get_their_verdicts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let d = e.unwrap().path();
        let truth: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("truth.json")).unwrap()).unwrap();
        let expected: Verdict = serde_json::from_value(truth["expected"].clone()).unwrap();
        let orig = truth["orig"].as_str().unwrap().parse().unwrap();
        let resp = truth["resp"].as_str().unwrap().parse().unwrap();
        let got = report::diagnose(&d.join("client.pcap"), orig, resp)
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.from, got.sender, got.cause),
            (Some(expected.from), expected.sender, expected.cause),
            "{}: evidence {:?}",
            d.display(),
            got.evidence
        );
        n += 1;
    }
    assert_eq!(n, 13, "one fixture per scenario");
}
