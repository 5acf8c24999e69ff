//! The real `rstscope` binary: `doctor` as root, unprivileged and in a
//! namespace, and `explain` (this crate's tests cover both commands of the
//! README section they share).

#[path = "doctor_common/mod.rs"]
mod common;

use common::{rstscope_bin, Netns};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run rstscope");
    eprintln!(
        "$ {cmd:?}\nexit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

#[test]
fn doctor_json_has_the_report_shape() {
    let Some(bin) = rstscope_bin("doctor_json_has_the_report_shape") else {
        return;
    };
    let out = run(Command::new(&bin).args(["doctor", "--format", "json"]));
    assert!(matches!(out.status.code(), Some(0 | 1 | 3)));
    let v = json(&out);
    for k in [
        "kernel",
        "netns",
        "privileged",
        "findings",
        "changes",
        "counters",
        "settings",
        "live",
        "not_checked",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    let counters = v["counters"].as_array().unwrap();
    let lo = counters
        .iter()
        .find(|c| c["name"] == "TcpExtListenOverflows")
        .expect("ListenOverflows row");
    assert_eq!(lo["causes"][0], "listen_overflow");
    assert!(lo["value"].as_i64().is_some());
    assert!(v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "net.ipv4.tcp_keepalive_time" && s["value"].is_string()));
    // Human output starts with the report header and lists findings first.
    let out = run(Command::new(&bin).args(["doctor"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("rstscope doctor: Linux "));
    assert!(
        text.find("Counters").unwrap()
            > text.find("No findings").or(text.find("Findings")).unwrap()
    );
}

#[test]
fn doctor_runs_unprivileged_and_says_what_root_would_add() {
    if !rstscope_testkit::privileged("doctor_runs_unprivileged_and_says_what_root_would_add") {
        return;
    }
    let Some(bin) = rstscope_bin("doctor_runs_unprivileged") else {
        return;
    };
    // Drop to nobody for the child only.
    let out = run(Command::new(&bin)
        .args(["doctor", "--format", "json"])
        .uid(65534)
        .gid(65534));
    assert!(
        matches!(out.status.code(), Some(0 | 1 | 3)),
        "unprivileged doctor failed"
    );
    let v = json(&out);
    assert_eq!(v["privileged"], false);
    assert!(v["not_checked"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("run as root")));
    assert!(
        v["live"]["listeners"].as_u64().is_some(),
        "sock_diag works unprivileged"
    );
    assert!(v["live"]["processes_unreadable"].as_u64().unwrap() > 0);
    // --netns needs root: a clear error, exit 2.
    let ns = Netns::new("cliu");
    let out = run(Command::new(&bin)
        .args(["doctor", "--netns", &ns.name])
        .uid(65534)
        .gid(65534));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs root"));
}

#[test]
fn doctor_netns_interval_attributes_refused_connections() {
    if !rstscope_testkit::privileged("doctor_netns_interval_attributes_refused_connections") {
        return;
    }
    let Some(bin) = rstscope_bin("doctor_netns_interval") else {
        return;
    };
    let ns = Netns::new("cli");
    let child = Command::new(&bin)
        .args([
            "doctor",
            "--netns",
            &ns.name,
            "--interval",
            "3",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn doctor");
    let refused = ns
        .spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(1000));
            let mut n = 0;
            for _ in 0..5 {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap();
                if std::net::TcpStream::connect(port).is_err() {
                    n += 1;
                }
            }
            n
        })
        .join()
        .unwrap();
    assert_eq!(refused, 5);
    let out = child.wait_with_output().unwrap();
    eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    assert_eq!(v["netns"], ns.name.as_str());
    let ch = v["changes"].as_array().unwrap();
    let af = ch
        .iter()
        .find(|c| c["counter"] == "TcpAttemptFails")
        .expect("TcpAttemptFails changed");
    assert_eq!(af["delta"], 5);
    assert_eq!(af["causes"][0], "refused");
    let rs = ch
        .iter()
        .find(|c| c["counter"] == "TcpOutRsts")
        .expect("TcpOutRsts changed");
    assert_eq!(rs["delta"], 5);
}

#[test]
fn explain_cli_json_and_exit_codes() {
    let Some(bin) = rstscope_bin("explain_cli_json_and_exit_codes") else {
        return;
    };
    let out = run(Command::new(&bin).args([
        "explain",
        "--format",
        "json",
        "recv() failed (104: Connection reset by peer) while reading response header from upstream",
    ]));
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
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
    assert_eq!(v["recognized"], true);
    assert_eq!(v["errno"], "ECONNRESET");
    assert_eq!(v["signal"], "rst");
    assert!(v["causes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "unread_data_close"));

    // Several words are joined; FIN mistaken for a reset.
    let out = run(Command::new(&bin).args([
        "explain", "--format", "json", "Error:", "socket", "hang", "up",
    ]));
    let v = json(&out);
    assert_eq!(v["signal"], "fin");

    // Unrecognised: exit 1, honest JSON.
    let out = run(Command::new(&bin).args(["explain", "--format", "json", "everything is fine"]));
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["recognized"], false);
    assert_eq!(v["errno"], serde_json::Value::Null);
    assert_eq!(v["signal"], "unknown");
    assert_eq!(v["causes"].as_array().unwrap().len(), 0);

    // Standard input, with `-` and without TEXT.
    for args in [vec!["explain", "-"], vec!["explain"]] {
        let mut child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"Traceback (most recent call last):\n  File \"x.py\", line 1\nBrokenPipeError: [Errno 32] Broken pipe\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("errno:      EPIPE"), "{text}");
        assert!(text.contains("data_after_close"));
    }

    // Empty input: usage error.
    let out = run(Command::new(&bin).args(["explain", ""]));
    assert_eq!(out.status.code(), Some(2));
}
