//! End-to-end: a real [`Watcher`] on the real kernel sees resets triggered on
//! real sockets inside a network namespace this test creates (loopback
//! only), and reports direction, addresses, reason, cause and process.
//!
//! Tracepoints are global (every namespace), so each test keeps only the
//! events of its own connections (port and 4-tuple).

use rstscope_core::{Cause, Direction, ResetEvent};
use rstscope_watch::{Backend, WatchConfig, Watcher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// A network namespace `rsw-<pid>-<n>`, deleted on drop (panics included),
/// which also removes its nftables state.
struct Netns(String);

static NEXT: AtomicU16 = AtomicU16::new(0);

impl Netns {
    fn new() -> Netns {
        let name = format!(
            "rsw-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        run(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        run(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread called `thread` that lives in this namespace;
    /// sockets it creates belong to the namespace.
    fn run<T: Send + 'static>(
        &self,
        thread: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> (T, u32) {
        let path = format!("/run/netns/{}", self.0);
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                let fd = std::fs::File::open(&path).expect("open netns");
                // SAFETY: setns on a valid namespace fd affects this thread only.
                let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() } as u32;
                (f(), tid)
            })
            .expect("spawn")
            .join()
            .expect("namespace thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(cmd: &[&str]) {
    let st = Command::new(cmd[0])
        .args(&cmd[1..])
        .status()
        .expect("spawn");
    assert!(st.success(), "{cmd:?} failed");
}

fn port(k: u16) -> u16 {
    40000 + (std::process::id() % 2000) as u16 * 8 + k
}

fn loopback(p: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), p)
}

fn setsockopt_i32(fd: i32, level: i32, opt: i32, v: i32) {
    // SAFETY: valid fd and pointer to an i32 of the given length.
    let r = unsafe { libc::setsockopt(fd, level, opt, &v as *const i32 as *const libc::c_void, 4) };
    assert_eq!(r, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// Polls until `want` matching events arrived or `secs` passed.
fn collect(
    w: &mut Watcher,
    secs: u64,
    want: usize,
    keep: impl Fn(&ResetEvent) -> bool,
) -> Vec<ResetEvent> {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    while Instant::now() < end && got.len() < want {
        for e in w.poll(Duration::from_millis(200)).expect("poll") {
            if keep(&e) {
                got.push(e);
            }
        }
    }
    got
}

fn start(p: u16) -> Option<Watcher> {
    let cfg = WatchConfig {
        ports: vec![p],
        ..Default::default()
    };
    Some(Watcher::start(&cfg).expect("Watcher::start"))
}

fn one(evs: &[ResetEvent], d: Direction) -> &ResetEvent {
    let v: Vec<_> = evs.iter().filter(|e| e.direction == Some(d)).collect();
    assert_eq!(v.len(), 1, "exactly one {d:?} event expected: {evs:#?}");
    v[0]
}

/// The test process's command name, as `/proc/PID/comm` shows it.
fn my_comm() -> Option<String> {
    std::fs::read_to_string("/proc/self/comm")
        .ok()
        .map(|s| s.trim_end().to_string())
}

fn me() -> Option<u32> {
    Some(std::process::id())
}

#[test]
fn closed_port_is_refused_both_ways() {
    if !rstscope_testkit::privileged("closed_port_is_refused_both_ways") {
        return;
    }
    let ns = Netns::new();
    let p = port(0);
    let mut w = start(p).unwrap();
    let (client, _) = ns.run("rsw-refused", move || {
        let s = socket2_connect_bound(loopback(p));
        s.expect_err("nothing listens").1
    });
    let evs = collect(&mut w, 10, 2, |e| e.src == client || e.dst == client);
    let s = one(&evs, Direction::Sent);
    assert_eq!(s.src, loopback(p));
    assert_eq!(s.dst, client);
    assert_eq!(s.reason.as_deref(), Some("NO_SOCKET"));
    assert_eq!(s.state, None);
    assert_eq!(s.cause, Cause::Refused);
    assert_eq!(
        (s.pid, s.comm.as_deref()),
        (None, None),
        "no socket, no process"
    );
    let r = one(&evs, Direction::Received);
    assert_eq!((r.src, r.dst), (loopback(p), client));
    assert_eq!(r.state.as_deref(), Some("TCP_SYN_SENT"));
    assert_eq!(r.reason, None);
    assert_eq!(r.cause, Cause::Refused);
    assert_eq!(r.pid, me());
    assert_eq!(r.comm.as_deref(), my_comm().as_deref());
}

/// Connects from an explicitly bound socket so the test knows its local
/// address even when the connection is refused.
fn socket2_connect_bound(to: SocketAddr) -> Result<TcpStream, (std::io::Error, SocketAddr)> {
    // SAFETY: plain socket syscalls on a descriptor we own; every pointer
    // is to a local sockaddr_in of the right length.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(
            libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len),
            0
        );
        let mut got: libc::sockaddr_in = std::mem::zeroed();
        let mut gl = len;
        libc::getsockname(fd, &mut got as *mut _ as *mut libc::sockaddr, &mut gl);
        let local = loopback(u16::from_be(got.sin_port));
        let mut dst: libc::sockaddr_in = std::mem::zeroed();
        dst.sin_family = libc::AF_INET as u16;
        dst.sin_port = to.port().to_be();
        dst.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        let r = libc::connect(fd, &dst as *const _ as *const libc::sockaddr, len);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r == 0 {
            panic!("unexpected connect success");
        }
        Err((err, local))
    }
}

/// Opens a connection inside the namespace: (client, accepted server
/// side, listener). Keep the listener to keep serving the port.
fn pair(p: u16) -> (TcpStream, TcpStream, TcpListener) {
    let l = TcpListener::bind(loopback(p)).expect("bind");
    let c = TcpStream::connect(loopback(p)).expect("connect");
    let (a, _) = l.accept().expect("accept");
    (c, a, l)
}

#[test]
fn unread_data_close_and_linger0_close() {
    if !rstscope_testkit::privileged("unread_data_close_and_linger0_close") {
        return;
    }
    let ns = Netns::new();
    for (k, linger, thread, reason, cause) in [
        (
            1,
            false,
            "rsw-unread",
            "TCP_ABORT_ON_CLOSE",
            Cause::UnreadDataClose,
        ),
        (2, true, "rsw-linger0", "TCP_STATE", Cause::AbortiveClose),
    ] {
        let p = port(k);
        let mut w = start(p).unwrap();
        let ((client, server), tid) = ns.run(thread, move || {
            let (mut c, a, _) = pair(p);
            let client = c.local_addr().unwrap();
            if linger {
                linger0(&a);
            } else {
                c.write_all(b"request the server never reads").unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
            let server = a.local_addr().unwrap();
            drop(a);
            // The client sees the reset.
            let mut buf = [0u8; 16];
            let e = c.read(&mut buf).expect_err("reset expected");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
            (client, server)
        });
        assert!(tid > 0);
        let evs = collect(&mut w, 10, 2, |e| e.src == client || e.dst == client);
        let s = one(&evs, Direction::Sent);
        assert_eq!((s.src, s.dst), (server, client));
        assert_eq!(s.reason.as_deref(), Some(reason));
        assert_eq!(s.state.as_deref(), Some("TCP_CLOSE"));
        assert_eq!(s.cause, cause);
        assert_eq!(s.pid, me());
        assert_eq!(s.comm, my_comm(), "{s:#?}");
        let r = one(&evs, Direction::Received);
        assert_eq!((r.src, r.dst), (server, client));
        assert_eq!(r.state.as_deref(), Some("TCP_ESTABLISHED"));
        assert_eq!(r.reason, None);
        assert_eq!(r.cause, Cause::Unknown);
        assert_eq!(r.pid, me(), "{r:#?}");
        assert_eq!(r.comm, my_comm(), "{r:#?}");
    }
}

#[test]
fn data_after_close() {
    if !rstscope_testkit::privileged("data_after_close") {
        return;
    }
    let ns = Netns::new();
    let p = port(3);
    let mut w = start(p).unwrap();
    let ((client, server), _) = ns.run("rsw-late", move || {
        let (mut c, a, _l) = pair(p);
        let client = c.local_addr().unwrap();
        let server = a.local_addr().unwrap();
        drop(a); // FIN, nothing unread
        std::thread::sleep(Duration::from_millis(50));
        c.write_all(b"late").expect("the first write succeeds");
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = [0u8; 8];
        // After the RST in CLOSE_WAIT: EOF, not ECONNRESET.
        assert_eq!(c.read(&mut buf).unwrap(), 0);
        (client, server)
    });
    let evs = collect(&mut w, 10, 2, |e| e.src == client || e.dst == client);
    let s = one(&evs, Direction::Sent);
    assert_eq!((s.src, s.dst), (server, client));
    assert_eq!(s.reason.as_deref(), Some("TCP_TIMEWAIT_SOCKET"));
    assert_eq!(s.state.as_deref(), Some("TCP_TIME_WAIT"));
    assert_eq!(s.cause, Cause::DataAfterClose);
    // The time-wait socket has no owner any more: the process is the one
    // that listens on the port, and the evidence says so.
    assert_eq!(s.pid, me());
    assert_eq!(s.comm, my_comm());
    assert!(
        s.evidence.iter().any(|x| x.contains("listening on port")),
        "{s:#?}"
    );
    let r = one(&evs, Direction::Received);
    assert_eq!((r.src, r.dst), (server, client));
    assert_eq!(r.reason, None);
    assert_eq!(r.state.as_deref(), Some("TCP_CLOSE_WAIT"));
    assert_eq!(r.cause, Cause::DataAfterClose);
    assert_eq!(r.comm.as_deref(), my_comm().as_deref());
    assert_eq!(r.pid, me());
}

/// The keepalive timer fires in softirq, often on an idle CPU: the case perf
/// misses on some kernels (see `rstscope_watch::ftrace`).
#[test]
fn keepalive_timeout() {
    if !rstscope_testkit::privileged("keepalive_timeout")
        || !rstscope_testkit::require_program("keepalive_timeout", "nft")
    {
        return;
    }
    let ns = Netns::new();
    let p = port(4);
    let mut w = start(p).unwrap();
    // The perf reader side by side: it may miss the timer's reset (idle
    // CPU), but then it must say so in its lost count, never silently.
    let mut wp = Watcher::start(&WatchConfig {
        ports: vec![p],
        backend: Backend::Perf,
        ..Default::default()
    })
    .expect("perf watcher");
    let name = ns.0.clone();
    let ((client, server, a), _) = ns.run("rsw-keepalive", move || {
        let (c, a, _l) = pair(p);
        let fd = c.as_raw_fd();
        setsockopt_i32(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
        setsockopt_i32(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 1);
        setsockopt_i32(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 1);
        setsockopt_i32(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 1);
        // The server's answers to the probes vanish (inside this namespace only).
        let rules = format!(
            "table inet rsw {{\n chain rsw_input {{\n  type filter hook input priority 0;\n  tcp sport {p} drop\n }}\n}}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft {rules}");
        let client = c.local_addr().unwrap();
        let server = a.local_addr().unwrap();
        let mut c = c;
        let mut buf = [0u8; 8];
        let e = c.read(&mut buf).expect_err("keepalive must time out");
        assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT));
        // The server's socket stays open until the reset reached it (the
        // timer's softirq may deliver it after the client already woke).
        (client, server, a)
    });
    let evs = collect(&mut w, 10, 2, |e| e.src == client || e.dst == client);
    drop(a);
    assert_eq!(w.backend(), "ftrace");
    assert_eq!(w.lost(), 0);
    std::thread::sleep(Duration::from_millis(250));
    let perf = collect(&mut wp, 1, 2, |e| e.src == client || e.dst == client);
    let perf_sent = perf
        .iter()
        .filter(|e| e.direction == Some(Direction::Sent))
        .count();
    eprintln!(
        "keepalive: perf reader got {perf_sent} sent reset(s), lost {}",
        wp.lost()
    );
    assert!(
        perf_sent == 1 || wp.lost() > 0,
        "perf reader lost the reset silently: {perf:#?}"
    );
    let s = one(&evs, Direction::Sent);
    assert_eq!((s.src, s.dst), (client, server));
    assert_eq!(s.reason.as_deref(), Some("TCP_KEEPALIVE_TIMEOUT"));
    assert_eq!(s.state.as_deref(), Some("TCP_ESTABLISHED"));
    assert_eq!(s.cause, Cause::KeepaliveTimeout);
    // Fired from the keepalive timer: the owner comes from connect().
    assert_eq!(s.pid, me());
    assert_eq!(s.comm.as_deref(), my_comm().as_deref());
    // The server's accepted socket received it (in softirq): attributed to
    // the process holding it (sock_diag) or listening on the port: this one.
    let r = one(&evs, Direction::Received);
    assert_eq!((r.src, r.dst), (client, server));
    assert_eq!(r.state.as_deref(), Some("TCP_ESTABLISHED"));
    assert_eq!(r.reason, None);
    assert_eq!(r.cause, Cause::Unknown);
    assert_eq!(r.pid, me());
    assert_eq!(r.comm, my_comm());
}

#[test]
fn filters_and_lost_counter() {
    if !rstscope_testkit::privileged("filters_and_lost_counter") {
        return;
    }
    let ns = Netns::new();
    let p = port(5);
    let cfg = WatchConfig {
        ports: vec![p],
        direction: Some(Direction::Received),
        comms: my_comm().into_iter().collect(),
        ..Default::default()
    };
    let mut w = Watcher::start(&cfg).unwrap();
    ns.run("rsw-filter", move || {
        for _ in 0..3 {
            let _ = TcpStream::connect(loopback(p));
        }
    });
    let evs = collect(&mut w, 3, 100, |_| true);
    assert_eq!(evs.len(), 3, "{evs:#?}");
    assert!(evs.iter().all(|e| e.direction == Some(Direction::Received)
        && e.comm == my_comm()
        && e.cause == Cause::Refused));
    assert_eq!(w.lost(), 0);
    assert_eq!(w.decode_errors(), 0);

    // The same events, scraped over HTTP in Prometheus text format.
    let mut m = rstscope_watch::metrics::Metrics::new();
    for e in &evs {
        m.observe(e);
    }
    let addr = m.serve("127.0.0.1:0").expect("serve");
    let mut c = TcpStream::connect(addr).expect("connect to metrics");
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1."), "{body}");
    assert!(
        body.contains(
            "rstscope_resets_total{direction=\"received\",cause=\"refused\",reason=\"none\",local_port=\"ephemeral\"} 3"
        ),
        "{body}"
    );
    assert!(body.contains("rstscope_lost_samples_total 0"), "{body}");
}

/// A connection opened before the watcher started: neither its connect()
/// nor its listen() was seen, and the reset it receives is handled in
/// softirq. Its owner comes from sock_diag (socket inode → /proc/PID/fd).
#[test]
fn received_reset_owner_from_sock_diag() {
    if !rstscope_testkit::privileged("received_reset_owner_from_sock_diag") {
        return;
    }
    let ns = Netns::new();
    let p = port(6);
    let ((c, a, l), _) = ns.run("rsw-diag-open", move || pair(p));
    let client = c.local_addr().unwrap();
    let server = a.local_addr().unwrap();
    let mut w = start(p).unwrap();
    drop(l);
    linger0(&a);
    drop(a);
    let evs = collect(&mut w, 10, 2, |e| e.src == client || e.dst == client);
    let r = one(&evs, Direction::Received);
    assert_eq!((r.src, r.dst), (server, client));
    assert_eq!(r.state.as_deref(), Some("TCP_ESTABLISHED"));
    assert_eq!(r.pid, me(), "{r:#?}");
    assert_eq!(r.comm, my_comm());
    assert!(r.evidence.iter().any(|x| x.contains("sock_diag")), "{r:#?}");
    let s = one(&evs, Direction::Sent);
    assert_eq!((s.src, s.dst), (server, client));
    assert_eq!(s.reason.as_deref(), Some("TCP_STATE"));
    assert_eq!(s.cause, Cause::AbortiveClose);
    assert_eq!(s.pid, me());
    drop(c);
}

/// SO_LINGER {on, 0}: the next close() sends RST instead of FIN.
fn linger0(s: &std::net::TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("SO_LINGER");
}
