//! End to end, in a network namespace this test creates: produce resets of
//! three kinds on real sockets while the doctor measures the namespace's
//! counters over an interval, and check that it attributes each change to
//! the right cause ids.

#[path = "doctor_common/mod.rs"]
mod common;

use common::Netns;
use rstscope_core::Cause;
use rstscope_doctor::report::{Report, Severity};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

fn change(r: &Report, counter: &str) -> Option<(i64, Vec<Cause>)> {
    r.changes
        .iter()
        .find(|c| c.counter == counter)
        .map(|c| (c.delta, c.causes.to_vec()))
}

/// Connect to a closed port; close with unread data; overflow a listener
/// that never accepts. Returns the overflowing listener, kept open so the
/// doctor sees its full accept queue, and a sender to release it.
fn workload() -> (TcpListener, Vec<TcpStream>) {
    // 1. refused: nothing listens on this port (bind then drop).
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let e = TcpStream::connect(closed).expect_err("connect to a closed port must fail");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);

    // 2. unread data close: the server closes with the client's bytes unread.
    let srv = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut cli = TcpStream::connect(srv.local_addr().unwrap()).unwrap();
    let (conn, _) = srv.accept().unwrap();
    cli.write_all(b"request the server never reads").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(conn);
    std::thread::sleep(Duration::from_millis(50));

    // 3. listen overflow: backlog 1, never accept, tcp_abort_on_overflow=1.
    let lst = listener_with_backlog(1);
    let addr = lst.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..6 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = (&s).write_all(b"x");
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    held.push(cli);
    (lst, held)
}

fn listener_with_backlog(backlog: i32) -> TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket/bind/listen on a fresh fd we own; the fd is
    // handed to TcpListener, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        let r = libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(r, 0);
        assert_eq!(libc::listen(fd, backlog), 0);
        TcpListener::from_raw_fd(fd)
    }
}

#[test]
fn doctor_attributes_counter_changes_in_a_namespace() {
    if !rstscope_testkit::privileged("doctor_attributes_counter_changes_in_a_namespace") {
        return;
    }
    let ns = Netns::new("e2e");
    ns.sysctl("net.ipv4.tcp_abort_on_overflow", "1");
    ns.sysctl("net.core.somaxconn", "77");

    // The workload starts after the doctor's first snapshot and ends well
    // before the interval does.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let work = ns.spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        let kept = workload();
        // Keep the full listener open until the doctor has looked.
        let _ = done_rx.recv_timeout(Duration::from_secs(20));
        drop(kept);
    });
    let report =
        rstscope_doctor::diagnose(Some(&ns.name), Some(Duration::from_secs(4))).expect("diagnose");
    let _ = done_tx.send(());
    work.join().expect("workload thread");

    let show = || serde_json::to_string_pretty(&report).unwrap();
    assert_eq!(report.netns.as_deref(), Some(ns.name.as_str()));

    // /proc/sys/net read after setns reflects the namespace, not the host.
    let setting = |k: &str| {
        report
            .settings
            .iter()
            .find(|s| s.name == k)
            .map(|s| s.value.clone())
    };
    assert_eq!(
        setting("net.core.somaxconn").as_deref(),
        Some("77"),
        "{}",
        show()
    );
    assert_eq!(
        setting("net.ipv4.tcp_abort_on_overflow").as_deref(),
        Some("1")
    );
    // Host-wide limits have no copy in the namespace: read from the host.
    assert!(setting("net.ipv4.tcp_max_orphans").is_some());
    assert!(report.live.tcp_mem_limits.is_some());
    assert!(report
        .findings
        .iter()
        .any(|f| f.title.contains("tcp_abort_on_overflow=1") && f.severity == Severity::Warning));

    // 1. connect to a closed port.
    let (d, causes) = change(&report, "TcpAttemptFails")
        .unwrap_or_else(|| panic!("no TcpAttemptFails change: {}", show()));
    assert!(d >= 1);
    assert_eq!(causes[0], Cause::Refused);
    let (d, _) = change(&report, "TcpOutRsts").expect("TcpOutRsts change");
    assert!(d >= 2, "refused + unread-data resets at least");

    // 2. close with unread data.
    let (d, causes) = change(&report, "TcpExtTCPAbortOnClose")
        .unwrap_or_else(|| panic!("no TCPAbortOnClose change: {}", show()));
    assert!(d >= 1);
    assert_eq!(causes, vec![Cause::UnreadDataClose]);

    // 3. accept queue overflow.
    let (d, causes) = change(&report, "TcpExtListenOverflows")
        .unwrap_or_else(|| panic!("no ListenOverflows change: {}", show()));
    assert!(d >= 1);
    assert_eq!(causes, vec![Cause::ListenOverflow]);
    let f = report
        .findings
        .iter()
        .find(|f| f.title.starts_with("TcpExtListenOverflows rose"))
        .expect("an overflow finding");
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.causes.contains(&Cause::ListenOverflow));

    // Live state: sock_diag in the namespace sees the full listener.
    let full: Vec<SocketAddr> = report
        .live
        .listeners_filling
        .iter()
        .map(|l| l.local)
        .collect();
    assert!(!full.is_empty(), "no full listener seen: {}", show());
    assert!(report
        .findings
        .iter()
        .any(|f| f.title.contains("accept queue") && f.causes == vec![Cause::ListenOverflow]));
    // Root finds the owning process (this test).
    let owner = report.live.listeners_filling[0]
        .owner
        .clone()
        .unwrap_or_default();
    assert!(
        owner.starts_with(&format!("{}/", std::process::id())),
        "owner {owner:?}"
    );

    // Findings are ordered by severity.
    assert!(report
        .findings
        .windows(2)
        .all(|w| w[0].severity <= w[1].severity));
}

#[test]
fn unknown_netns_is_a_clear_error() {
    let e = rstscope_doctor::diagnose(Some("rsd-no-such-namespace"), None).unwrap_err();
    assert!(e.to_string().contains("no network namespace"), "{e}");
    let e = rstscope_doctor::diagnose(Some("../etc"), None).unwrap_err();
    assert!(e.to_string().contains("no network namespace"), "{e}");
}
