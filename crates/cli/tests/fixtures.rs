//! Captures of real Linux resets (recorded by `scripts/record-fixtures` on
//! a namespaced loopback, and by `rstscope lab run --record`): each must get
//! the verdict that matches what the kernel really did.

use std::path::Path;
use std::process::Command;

struct Case {
    file: &'static str,
    /// Which connection (by originator port), when the capture holds several.
    orig_port: Option<u16>,
    from: &'static str,
    sender: &'static str,
    cause: &'static str,
}

const CASES: &[Case] = &[
    Case {
        file: "refused",
        orig_port: None,
        from: "responder",
        sender: "endpoint",
        cause: "refused",
    },
    Case {
        file: "abortive_close",
        orig_port: None,
        from: "responder",
        sender: "endpoint",
        cause: "abortive_close",
    },
    Case {
        file: "unread_data_close",
        orig_port: None,
        from: "responder",
        sender: "endpoint",
        cause: "unread_data_close",
    },
    Case {
        file: "server_crash",
        orig_port: None,
        from: "responder",
        sender: "endpoint",
        cause: "unread_data_close",
    },
    Case {
        file: "data_after_close",
        orig_port: None,
        from: "responder",
        sender: "endpoint",
        cause: "data_after_close",
    },
    Case {
        file: "server_idle_timeout",
        orig_port: None,
        from: "responder",
        sender: "endpoint",
        cause: "idle_timeout",
    },
    Case {
        file: "keepalive_timeout",
        orig_port: None,
        from: "originator",
        sender: "endpoint",
        cause: "keepalive_timeout",
    },
    Case {
        file: "handshake_abort",
        orig_port: None,
        from: "originator",
        sender: "endpoint",
        cause: "handshake_abort",
    },
    Case {
        file: "listen_overflow",
        orig_port: Some(41000),
        from: "responder",
        sender: "endpoint",
        cause: "listen_overflow",
    },
];

#[test]
fn recorded_linux_resets_get_the_right_verdict() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../analyze/tests/fixtures");
    let mut wrong = Vec::new();
    for c in CASES {
        let f = dir.join(format!("{}.pcap", c.file));
        assert!(
            f.metadata().unwrap().len() <= 64 * 1024,
            "{} is over 64 KB",
            c.file
        );
        let out = Command::new(env!("CARGO_BIN_EXE_rstscope"))
            .args(["analyze", "--format", "json", "-q", f.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            c.file,
            String::from_utf8_lossy(&out.stderr)
        );
        let conns: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let conn = conns
            .iter()
            .find(|o| {
                c.orig_port
                    .is_none_or(|p| o["orig"].as_str().unwrap().ends_with(&format!(":{p}")))
            })
            .unwrap_or_else(|| panic!("{}: no reset connection found", c.file));
        let r = &conn["reset"];
        let got = (
            r["from"].as_str().unwrap(),
            r["sender"].as_str().unwrap(),
            r["cause"].as_str().unwrap(),
        );
        if got != (c.from, c.sender, c.cause) {
            wrong.push(format!(
                "{}: got {got:?}, want {:?}; evidence {}",
                c.file,
                (c.from, c.sender, c.cause),
                r["evidence"]
            ));
        }
        assert!(
            !r["evidence"].as_array().unwrap().is_empty(),
            "{}: no evidence",
            c.file
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Third-party captures in ../shared/corpora: a real injected RST and a load
/// balancer's cause text in an RST payload.
#[test]
fn third_party_injected_rst_and_payload_text() {
    let corp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora");
    if !corp.exists() {
        let msg = "SKIPPED third_party_injected_rst_and_payload_text: ../shared/corpora not found";
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{msg}");
        eprintln!("{msg}");
        return;
    }
    let run = |f: &str| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_rstscope"))
            .args([
                "analyze",
                "--format",
                "json",
                "-q",
                corp.join(f).to_str().unwrap(),
            ])
            .output()
            .unwrap();
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap()
    };
    let inj = run("zeek/traces/tcp_rst-inject-rae.pcap");
    assert_eq!(inj["reset"]["sender"], "middlebox", "{inj}");
    assert_eq!(inj["reset"]["cause"], "firewall_reject", "{inj}");
    let ev = inj["reset"]["evidence"].to_string();
    assert!(
        ev.contains("TTL 46, but every other packet from 1.2.0.3 arrived with TTL 49"),
        "{ev}"
    );
    assert!(ev.contains("still sent"), "{ev}");

    let f5 = run("tcpdump-tests/tcp_rst_data.pcap");
    assert!(
        f5["reset"]["evidence"].to_string().contains("BIG-IP"),
        "{f5}"
    );
}
