//! The catalog: one script per reset cause, run on real sockets.
//!
//! Each script drives both sides from one thread: sockets are created in
//! the client's or the server's namespace (a socket stays in the namespace
//! it was created in), then used step by step, so every run takes the same
//! path. What each application call returned is recorded in [`Saw`].

use crate::ns::{in_ns, Topology, CLIENT, SERVER};
use crate::sock::{self, Saw};
use anyhow::{bail, Result};
use rstscope_core::{Cause, Sender, Side, Verdict};
use socket2::{SockAddr, Socket, TcpKeepalive};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The port servers listen on inside the lab.
pub const PORT: u16 = 7001;
const T: Duration = Duration::from_secs(3);

/// Where a scenario runs: in the lab's namespaces, or on loopback
/// (unprivileged, no capture).
pub struct Env<'a> {
    /// The namespaces, `None` on loopback.
    pub topo: Option<&'a Topology>,
    /// IPv6 instead of IPv4.
    pub ipv6: bool,
}

impl Env<'_> {
    fn cli(&self) -> Option<&str> {
        self.topo.map(|t| t.cli.as_str())
    }
    fn srv(&self) -> Option<&str> {
        self.topo.map(|t| t.srv.as_str())
    }
    fn topo(&self) -> Result<&Topology> {
        self.topo
            .ok_or_else(|| anyhow::anyhow!("this scenario needs the lab's namespaces"))
    }
    fn server_ip(&self) -> IpAddr {
        match (self.topo.is_some(), self.ipv6) {
            (true, false) => SERVER.v4,
            (true, true) => SERVER.v6,
            (false, false) => IpAddr::from([127, 0, 0, 1]),
            (false, true) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        }
    }
    fn client_ip(&self) -> IpAddr {
        match (self.topo.is_some(), self.ipv6) {
            (true, false) => CLIENT.v4,
            (true, true) => CLIENT.v6,
            _ => self.server_ip(),
        }
    }
    /// A listener: port 7001 in the lab, an ephemeral port on loopback.
    fn listen(&self, backlog: i32) -> Result<(Socket, SocketAddr)> {
        let port = if self.topo.is_some() { PORT } else { 0 };
        let l = sock::listen(self.srv(), SocketAddr::new(self.server_ip(), port), backlog)?;
        let a = sock::local(&l)?;
        Ok((l, a))
    }
    /// A client socket bound to the client's address (so its port is known
    /// even when the connection fails).
    fn client_socket(&self, to: SocketAddr) -> Result<Socket> {
        let s = sock::tcp_socket(self.cli(), to)?;
        s.bind(&SockAddr::from(SocketAddr::new(self.client_ip(), 0)))?;
        Ok(s)
    }
    fn nft(&self, ns: &str, rules: &str) -> Result<()> {
        self.topo()?.nft(ns, rules)
    }
}

/// What one run produced.
pub struct Outcome {
    /// The client's calls.
    pub client: Saw,
    /// The server's calls.
    pub server: Saw,
    /// The connection under test, client side (the originator).
    pub orig: SocketAddr,
    /// The connection under test, server side (the responder).
    pub resp: SocketAddr,
    /// Sockets kept open until the captures stopped, so their teardown
    /// does not add packets to the capture.
    pub keep: Vec<Socket>,
}

/// One scenario of the catalog.
pub struct Scenario {
    /// Stable name (`rstscope lab run NAME`).
    pub name: &'static str,
    /// One line for `lab list`.
    pub summary: &'static str,
    /// What Linux really does, measured by this scenario.
    pub linux: &'static str,
    /// The verdict rstscope must reach.
    pub expected: Verdict,
    /// Who really emits the RST (ground truth of the lab).
    pub real_sender: &'static str,
    /// What the client must see (checked).
    pub expect_client: &'static [&'static str],
    /// What the server must see (checked).
    pub expect_server: &'static [&'static str],
    /// Runs on loopback without privileges.
    pub loopback: bool,
    /// Uses IPv6.
    pub ipv6: bool,
    /// Also capture on the server's link.
    pub capture_server: bool,
    /// The script.
    pub run: fn(&Env) -> Result<Outcome>,
}

const fn v(from: Side, sender: Sender, cause: Cause) -> Verdict {
    Verdict {
        from,
        sender,
        cause,
    }
}

/// Scenarios of the issue that the lab leaves out, with the reason.
pub const LEFT_OUT: &[(&str, &str)] = &[(
    "memory_pressure",
    "left out: the kernel resets orphans only when the host-global net.ipv4.tcp_mem or \
     net.ipv4.tcp_max_orphans limits are exceeded (tcp_check_oom); neither is per network \
     namespace on Linux 6.18 and memory-cgroup socket pressure does not trigger it, so it \
     cannot be produced without changing host-global settings",
)];

/// Every scenario, in the order of the issue.
pub fn catalog() -> Vec<Scenario> {
    use Cause::*;
    use Sender::*;
    use Side::*;
    vec![
        Scenario {
            name: "refused",
            summary: "connect to a port with no listener",
            linux: "The server's kernel answers the SYN with RST|ACK (seq 0, ack = SYN+1); connect() fails with ECONNREFUSED. No server process is involved.",
            expected: v(Responder, Endpoint, Refused),
            real_sender: "server kernel (no socket)",
            expect_client: &["connect: ECONNREFUSED"],
            expect_server: &["nothing: no socket listens on the port"],
            loopback: true,
            ipv6: false,
            capture_server: false,
            run: refused,
        },
        Scenario {
            name: "abortive_close",
            summary: "the server answers, then sets SO_LINGER {1,0} and closes (IPv6)",
            linux: "After answering the request, close() with SO_LINGER {1,0} sends RST|ACK instead of FIN and returns 0. The client's next recv() fails with ECONNRESET, the send() after it with EPIPE. Had the server closed this way without answering, the capture would look exactly like unread_data_close (only the kernel's reason, TCP_STATE vs TCP_ABORT_ON_CLOSE, tells them apart).",
            expected: v(Responder, Endpoint, AbortiveClose),
            real_sender: "server kernel (close with linger 0)",
            expect_client: &["connect: ok", "send: ok", "recv: 2 bytes", "recv: ECONNRESET", "send: EPIPE"],
            expect_server: &["recv: 5 bytes", "send: ok", "setsockopt SO_LINGER {1,0}, close: ok"],
            loopback: true,
            ipv6: true,
            capture_server: false,
            run: abortive_close,
        },
        Scenario {
            name: "unread_data_close",
            summary: "the server closes with unread data",
            linux: "close() with 5 bytes unread returns 0 and sends RST|ACK instead of FIN (RFC 2525 2.17); the unread bytes are discarded. The client's recv() fails with ECONNRESET, then send() with EPIPE.",
            expected: v(Responder, Endpoint, UnreadDataClose),
            real_sender: "server kernel (close with unread data)",
            expect_client: &["connect: ok", "send: ok", "recv: ECONNRESET", "send: EPIPE"],
            expect_server: &["close with 5 bytes unread: ok"],
            loopback: true,
            ipv6: false,
            capture_server: false,
            run: unread_data_close,
        },
        Scenario {
            name: "server_crash",
            summary: "the server process is killed with SIGKILL while client data is unread",
            linux: "When the process dies the kernel closes its sockets like close(): the 5 unread bytes turn the FIN into RST|ACK. The client's recv() fails with ECONNRESET, then send() with EPIPE. Had the data been read, the client would have seen a FIN (EOF) instead.",
            expected: v(Responder, Endpoint, UnreadDataClose),
            real_sender: "server kernel (process killed, socket closed with unread data)",
            expect_client: &["connect: ok", "send: ok", "recv: ECONNRESET", "send: EPIPE"],
            expect_server: &["process holding the socket killed with SIGKILL, 5 bytes unread"],
            loopback: true,
            ipv6: false,
            capture_server: false,
            run: server_crash,
        },
        Scenario {
            name: "data_after_close",
            summary: "the server reads once and closes; the client writes again, then reads",
            linux: "The article's example does NOT get ECONNRESET on Linux. The server's close() sends FIN; the client's second send() succeeds; the closed (orphaned, FIN_WAIT1/2) server socket answers that data with RST (no ACK flag; kernel reason TCP_ABORT_ON_DATA when the data meets the full socket, TCP_TIMEWAIT_SOCKET once it has become a time-wait socket). The RST lands in CLOSE_WAIT: the client's recv() returns EOF (0), and the next send() fails with EPIPE.",
            expected: v(Responder, Endpoint, DataAfterClose),
            real_sender: "server kernel (closed socket, FIN_WAIT1/2)",
            expect_client: &["connect: ok", "send: ok", "send: ok", "recv: EOF", "send: EPIPE"],
            expect_server: &["recv: 3 bytes", "close: ok"],
            loopback: true,
            ipv6: false,
            capture_server: false,
            run: data_after_close,
        },
        Scenario {
            name: "host_restart",
            summary: "the server's state is lost silently; the client's next segment meets the no-socket reply",
            linux: "The server host loses the connection while its output is dropped (nothing reaches the client). The client's next send() succeeds; the server's kernel has no socket and answers with a bare RST (seq = the segment's ACK). The client's recv() fails with ECONNRESET, then send() with EPIPE.",
            expected: v(Responder, Endpoint, UnknownConnection),
            real_sender: "server kernel (no socket)",
            expect_client: &["connect: ok", "send: ok", "send: ok", "recv: ECONNRESET", "send: EPIPE"],
            expect_server: &["recv: 3 bytes", "state lost: socket aborted while the host's output was dropped"],
            loopback: false,
            ipv6: false,
            capture_server: true,
            run: host_restart,
        },
        Scenario {
            name: "firewall_reject",
            summary: "the router rejects mid-stream with `reject with tcp reset`",
            linux: "nftables on the router forges an RST with the server's address (TTL 64 at the client, while the server's own packets arrive with 63). The client's recv() fails with ECONNRESET, then send() with EPIPE. The server never sees anything: its socket stays ESTABLISHED, half-open.",
            expected: v(Responder, Middlebox, FirewallReject),
            real_sender: "router (nftables reject with tcp reset)",
            expect_client: &["connect: ok", "send: ok", "send: ok", "recv: ECONNRESET", "send: EPIPE"],
            expect_server: &["recv: 3 bytes", "recv: EAGAIN (nothing within the timeout)", "state: ESTABLISHED"],
            loopback: false,
            ipv6: false,
            capture_server: true,
            run: firewall_reject,
        },
        Scenario {
            name: "nat_idle_expiry",
            summary: "the NAT router's conntrack entry expires while the connection is idle",
            linux: "What follows depends on the NAT. With Linux defaults (nf_conntrack_tcp_loose=1) conntrack picks the flow up again mid-stream and masquerade keeps the same port when it is free: nothing at all happens. With strict tracking (loose=0, as here) the client's next segment after the 1 s entry expired is INVALID, is not translated and leaks to the server with the client's real address; the server has no socket for that address and answers with RST, which reaches the client. The client's send() succeeds, recv() fails with ECONNRESET. The server's own socket (mapped to the NAT address) stays ESTABLISHED and never learns anything. A firewall that drops INVALID packets would instead leave the client retransmitting until ETIMEDOUT.",
            expected: v(Responder, Endpoint, IdleTimeout),
            real_sender: "server kernel (no socket for the untranslated client address)",
            expect_client: &["connect: ok", "send: ok", "recv: 2 bytes", "idle 2.5 s", "send: ok", "recv: ECONNRESET", "send: EPIPE"],
            expect_server: &["recv: 3 bytes", "send: ok", "state: ESTABLISHED"],
            loopback: false,
            ipv6: false,
            capture_server: true,
            run: nat_idle_expiry,
        },
        Scenario {
            name: "server_idle_timeout",
            summary: "the server aborts an idle client with RST after 1.5 s",
            linux: "The server waits 1.5 s for the next request, then closes with SO_LINGER {1,0} (like nginx reset_timedout_connection): RST|ACK after the idle gap. The client's recv() fails with ECONNRESET, then send() with EPIPE.",
            expected: v(Responder, Endpoint, IdleTimeout),
            real_sender: "server kernel (close with linger 0 after idle)",
            expect_client: &["connect: ok", "send: ok", "recv: 2 bytes", "recv: ECONNRESET", "send: EPIPE"],
            expect_server: &["recv: 3 bytes", "send: ok", "poll: idle 1.5 s", "setsockopt SO_LINGER {1,0}, close: ok"],
            loopback: true,
            ipv6: false,
            capture_server: false,
            run: server_idle_timeout,
        },
        Scenario {
            name: "lb_idle_timeout",
            summary: "a load balancer in the router (rstscope proxy, idle_reset 1.5 s) resets an idle client",
            linux: "The proxy terminates TCP: the client's connection ends at the router (198.18.1.1:7002), the proxy opens its own to the server. After 1.5 s without a byte either way, the proxy's idle_reset closes the client's socket with SO_LINGER {1,0}: RST|ACK from the load balancer's address, TTL 64 like every packet the client got from it. The client's recv() fails with ECONNRESET, then send() with EPIPE. Toward the server the proxy closes cleanly (FIN; both_sides=0): the server's recv() returns EOF and it never learns of the reset.",
            expected: v(Responder, Endpoint, IdleTimeout),
            real_sender: "load balancer in the router (rstscope proxy idle_reset)",
            expect_client: &["connect: ok", "send: ok", "recv: 2 bytes", "recv: ECONNRESET", "send: EPIPE"],
            expect_server: &["recv: 3 bytes", "send: ok", "recv: EOF"],
            loopback: false,
            ipv6: false,
            capture_server: true,
            run: lb_idle_timeout,
        },
        Scenario {
            name: "keepalive_timeout",
            summary: "the client's keepalive probes go unanswered (the router drops the server's replies)",
            linux: "With TCP_KEEPIDLE 1 s, TCP_KEEPINTVL 1 s, TCP_KEEPCNT 2 the client sends two probes (seq = snd_una-1), gets no answer, and its kernel sends RST and fails the blocked recv() with ETIMEDOUT. The server, still alive, answered the probes (dropped on the way back), receives the RST and its recv() fails with ECONNRESET.",
            expected: v(Originator, Endpoint, KeepaliveTimeout),
            real_sender: "client kernel (keepalive exhausted)",
            expect_client: &["connect: ok", "send: ok", "recv: 2 bytes", "recv: ETIMEDOUT", "send: EPIPE"],
            expect_server: &["recv: 3 bytes", "send: ok", "recv: ECONNRESET"],
            loopback: false,
            ipv6: false,
            capture_server: true,
            run: keepalive_timeout,
        },
        Scenario {
            name: "listen_overflow",
            summary: "tcp_abort_on_overflow=1 with a full accept queue",
            linux: "With a full accept queue Linux drops new SYNs, so the reset needs handshakes that started before the queue filled: listen(backlog 1) queues 2 connections; a third whose SYN was answered earlier completes its handshake when the queue is full, and with net.ipv4.tcp_abort_on_overflow=1 (set in the server's namespace) the server answers with RST. The client's connect() and send() succeed, recv() fails with ECONNRESET.",
            expected: v(Responder, Endpoint, ListenOverflow),
            real_sender: "server kernel (accept queue full, tcp_abort_on_overflow=1)",
            expect_client: &["connect: ok", "send: ok", "recv: ECONNRESET", "send: EPIPE"],
            expect_server: &["listen(backlog 1), accept() never called: 2 connections queued"],
            loopback: false,
            ipv6: false,
            capture_server: false,
            run: listen_overflow,
        },
        Scenario {
            name: "handshake_abort",
            summary: "the originator resets the SYN-ACK",
            linux: "The client gives up on a connect() whose SYN-ACK is late (the first one is dropped on the path) and closes the socket: no packet. The server's retransmitted SYN-ACK (1 s later) reaches a host with no socket, whose kernel answers RST. Nothing reaches either application: the server's accept() never returns a connection.",
            expected: v(Originator, Endpoint, HandshakeAbort),
            real_sender: "client kernel (no socket)",
            expect_client: &["connect: EINPROGRESS", "poll: no SYN-ACK within 300 ms, close: ok"],
            expect_server: &["accept: EAGAIN (nothing within the timeout)"],
            loopback: false,
            ipv6: false,
            capture_server: false,
            run: handshake_abort,
        },
    ]
}

fn connect(env: &Env, to: SocketAddr, client: &mut Saw) -> Result<Socket> {
    let c = env.client_socket(to)?;
    let r = c.connect(&SockAddr::from(to)).map(|_| 0);
    client.call("connect", &r, false);
    r?;
    Ok(c)
}

fn send(s: &Socket, data: &[u8], saw: &mut Saw) {
    let r = sock::send(s, data);
    saw.call("send", &r, false);
}

fn recv(s: &Socket, t: Duration, saw: &mut Saw) {
    let r = sock::recv(s, t);
    saw.call("recv", &r, true);
}

/// Waits until the socket is closed by a reset (poll reports HUP/ERR).
fn wait_reset(s: &Socket) {
    sock::wait(s, 0, T);
}

/// Waits until `n` bytes are queued unread on `s`.
fn wait_unread(s: &Socket, n: usize) -> Result<()> {
    let until = std::time::Instant::now() + T;
    while sock::unread(s) < n {
        if std::time::Instant::now() > until {
            bail!("data did not arrive at the server");
        }
        sock::wait(s, libc::POLLIN, Duration::from_millis(10));
    }
    Ok(())
}

/// After the reset: the client reads, then writes.
fn after_reset(c: &Socket, client: &mut Saw) {
    wait_reset(c);
    recv(c, T, client);
    send(c, b"more", client);
}

fn open_pair(env: &Env, client: &mut Saw) -> Result<(Socket, Socket, SocketAddr, SocketAddr)> {
    let (l, resp) = env.listen(8)?;
    let c = connect(env, resp, client)?;
    let s = sock::accept(&l, T)?;
    let orig = sock::local(&c)?;
    Ok((c, s, orig, resp))
}

fn refused(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    // In the lab nothing listens on PORT; on loopback, hold a bound but
    // not listening port so no other program can take it meanwhile.
    let (hold, to) = if env.topo.is_some() {
        (None, SocketAddr::new(env.server_ip(), PORT))
    } else {
        let h = sock::tcp_socket(None, SocketAddr::new(env.server_ip(), 0))?;
        h.bind(&SockAddr::from(SocketAddr::new(env.server_ip(), 0)))?;
        let a = sock::local(&h)?;
        (Some(h), a)
    };
    let c = env.client_socket(to)?;
    let orig = sock::local(&c)?;
    let r = c.connect(&SockAddr::from(to)).map(|_| 0);
    client.call("connect", &r, false);
    server.push("nothing: no socket listens on the port");
    Ok(Outcome {
        client,
        server,
        orig,
        resp: to,
        keep: std::iter::once(c).chain(hold).collect(),
    })
}

fn abortive_close(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let (c, s, orig, resp) = open_pair(env, &mut client)?;
    send(&c, b"hello", &mut client);
    wait_unread(&s, 5)?;
    recv(&s, T, &mut server);
    send(&s, b"ok", &mut server);
    recv(&c, T, &mut client);
    s.set_linger(Some(Duration::ZERO))?;
    drop(s);
    server.push("setsockopt SO_LINGER {1,0}, close: ok");
    after_reset(&c, &mut client);
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c],
    })
}

fn unread_data_close(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let (c, s, orig, resp) = open_pair(env, &mut client)?;
    send(&c, b"hello", &mut client);
    wait_unread(&s, 5)?;
    let n = sock::unread(&s);
    drop(s);
    server.push(format!("close with {n} bytes unread: ok"));
    after_reset(&c, &mut client);
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c],
    })
}

fn server_crash(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let (c, s, orig, resp) = open_pair(env, &mut client)?;
    send(&c, b"hello", &mut client);
    wait_unread(&s, 5)?;
    let n = sock::unread(&s);
    // Hand the socket to a real process (as its stdin) and kill it: the
    // kernel closes the socket when the process dies.
    let mut child = crate::ns::ChildGuard::hold_fd(std::os::fd::OwnedFd::from(s))?;
    child.kill()?;
    server.push(format!(
        "process holding the socket killed with SIGKILL, {n} bytes unread"
    ));
    after_reset(&c, &mut client);
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c],
    })
}

fn data_after_close(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let (c, s, orig, resp) = open_pair(env, &mut client)?;
    send(&c, b"one", &mut client);
    wait_unread(&s, 3)?;
    recv(&s, T, &mut server);
    drop(s);
    server.push("close: ok");
    // The FIN has arrived when the socket reports RDHUP; do not read it.
    sock::wait(&c, libc::POLLRDHUP, T);
    send(&c, b"two", &mut client);
    after_reset(&c, &mut client);
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c],
    })
}

fn host_restart(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let t = env.topo()?;
    let (l, resp) = env.listen(8)?;
    let c = connect(env, resp, &mut client)?;
    let s = sock::accept(&l, T)?;
    let orig = sock::local(&c)?;
    send(&c, b"one", &mut client);
    wait_unread(&s, 3)?;
    recv(&s, T, &mut server);
    // The host dies: nothing leaves it any more, its sockets vanish.
    env.nft(&t.srv, "table inet rsl_host {\n chain out {\n  type filter hook output priority 0; policy drop;\n }\n}\n")?;
    s.set_linger(Some(Duration::ZERO))?;
    drop(s);
    drop(l);
    server.push("state lost: socket aborted while the host's output was dropped");
    env.nft(&t.srv, "delete table inet rsl_host")?;
    send(&c, b"two", &mut client);
    after_reset(&c, &mut client);
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c],
    })
}

fn firewall_reject(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let t = env.topo()?;
    let (c, s, orig, resp) = open_pair(env, &mut client)?;
    send(&c, b"one", &mut client);
    wait_unread(&s, 3)?;
    recv(&s, T, &mut server);
    env.nft(
        &t.rtr,
        &format!(
            "table inet rsl_fw {{\n chain f {{\n  type filter hook forward priority 0;\n  ip saddr {} tcp dport {} reject with tcp reset\n }}\n}}\n",
            orig.ip(),
            resp.port()
        ),
    )?;
    send(&c, b"two", &mut client);
    after_reset(&c, &mut client);
    recv(&s, Duration::from_millis(300), &mut server);
    server.push(format!("state: {}", sock::tcp_state(&s)));
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c, s],
    })
}

fn nat_idle_expiry(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let t = env.topo()?;
    env.nft(
        &t.rtr,
        "table ip rsl_nat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname \"s\" masquerade\n }\n}\n",
    )?;
    crate::ns::sysctl(
        &t.rtr,
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        "1",
    )?;
    // Strict tracking: a mid-stream segment without an entry is INVALID
    // instead of being picked up as a new flow.
    crate::ns::sysctl(&t.rtr, "net.netfilter.nf_conntrack_tcp_loose", "0")?;
    let (c, s, orig, resp) = open_pair(env, &mut client)?;
    send(&c, b"one", &mut client);
    wait_unread(&s, 3)?;
    recv(&s, T, &mut server);
    send(&s, b"ok", &mut server);
    recv(&c, T, &mut client);
    std::thread::sleep(Duration::from_millis(2500));
    client.push("idle 2.5 s");
    send(&c, b"two", &mut client);
    after_reset(&c, &mut client);
    server.push(format!("state: {}", sock::tcp_state(&s)));
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c, s],
    })
}

fn server_idle_timeout(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let (c, s, orig, resp) = open_pair(env, &mut client)?;
    send(&c, b"one", &mut client);
    wait_unread(&s, 3)?;
    recv(&s, T, &mut server);
    send(&s, b"ok", &mut server);
    recv(&c, T, &mut client);
    // 1.5 s: clearly above the analyzer's smallest idle threshold (1 s).
    if sock::wait(&s, libc::POLLIN, Duration::from_millis(1500)) {
        bail!("the client was not idle");
    }
    server.push("poll: idle 1.5 s");
    s.set_linger(Some(Duration::ZERO))?;
    drop(s);
    server.push("setsockopt SO_LINGER {1,0}, close: ok");
    after_reset(&c, &mut client);
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c],
    })
}

fn keepalive_timeout(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let t = env.topo()?;
    let (l, resp) = env.listen(8)?;
    let c = env.client_socket(resp)?;
    c.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(Duration::from_secs(1))
            .with_interval(Duration::from_secs(1))
            .with_retries(2),
    )?;
    let r = c.connect(&SockAddr::from(resp)).map(|_| 0);
    client.call("connect", &r, false);
    r?;
    let s = sock::accept(&l, T)?;
    let orig = sock::local(&c)?;
    send(&c, b"one", &mut client);
    wait_unread(&s, 3)?;
    recv(&s, T, &mut server);
    send(&s, b"ok", &mut server);
    recv(&c, T, &mut client);
    // The path drops everything the server sends back to the client.
    env.nft(
        &t.rtr,
        &format!(
            "table inet rsl_ka {{\n chain f {{\n  type filter hook forward priority 0;\n  ip saddr {} tcp sport {} drop\n }}\n}}\n",
            resp.ip(),
            resp.port()
        ),
    )?;
    recv(&c, Duration::from_secs(8), &mut client);
    send(&c, b"x", &mut client);
    wait_reset(&s);
    recv(&s, T, &mut server);
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c, s, l],
    })
}

/// The load balancer's listening port in the router.
const LB_PORT: u16 = 7002;

fn lb_idle_timeout(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let t = env.topo()?;
    let (l, upstream) = env.listen(8)?;
    let lb = SocketAddr::new(crate::ns::ROUTER_CLI_V4, LB_PORT);
    let toxic = rstscope_proxy::parse_cli_toxic("idle_reset,timeout=1500")
        .map_err(|e| anyhow::anyhow!("idle_reset toxic: {}", e.message))?;
    let cfg = rstscope_proxy::Config {
        api: None,
        proxies: vec![rstscope_proxy::ProxyConfig {
            name: "lb".into(),
            listen: lb.to_string(),
            upstream: upstream.to_string(),
            enabled: true,
            toxics: vec![toxic],
        }],
        seed: Some(1),
        log_resets: false,
    };
    // Spawned from a thread inside the router's namespace: the proxy's
    // runtime threads, hence its sockets, live there.
    let proxy = crate::ns::in_ns(Some(&t.rtr), move || rstscope_proxy::spawn(cfg))?;
    let c = connect(env, lb, &mut client)?;
    let orig = sock::local(&c)?;
    let s = sock::accept(&l, T)?;
    send(&c, b"one", &mut client);
    wait_unread(&s, 3)?;
    recv(&s, T, &mut server);
    send(&s, b"ok", &mut server);
    recv(&c, T, &mut client);
    // Both sides now stay silent until the load balancer gives up.
    after_reset(&c, &mut client);
    recv(&s, T, &mut server);
    if !proxy
        .events()
        .iter()
        .any(|e| e.cause == Cause::IdleTimeout && e.dst == orig)
    {
        bail!("the proxy did not report an idle_reset toward the client");
    }
    proxy.shutdown();
    Ok(Outcome {
        client,
        server,
        orig,
        resp: lb,
        keep: vec![c, s, l],
    })
}

fn wait_acked(s: &Socket) {
    let until = std::time::Instant::now() + T;
    loop {
        // SAFETY: zeroed tcp_info; getsockopt fills at most its size.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: as above.
        let rc = unsafe {
            libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(s),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                &mut info as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if rc != 0 || info.tcpi_unacked == 0 || std::time::Instant::now() > until {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn listen_overflow(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let t = env.topo()?;
    crate::ns::sysctl(&t.srv, "net.ipv4.tcp_abort_on_overflow", "1")?;
    let (l, resp) = env.listen(1)?;
    let mut scratch = Saw::default();
    // c1 fills one slot of the accept queue normally.
    let c1 = connect(env, resp, &mut scratch)?;
    // c2 and c3 get their SYN-ACK while the queue still has room, but their
    // final ACK is held back by the router.
    env.nft(
        &t.rtr,
        &format!(
            "table inet rsl_lo {{\n chain f {{\n  type filter hook forward priority 0;\n  ip daddr {} tcp dport {} tcp flags == ack drop\n }}\n}}\n",
            resp.ip(),
            resp.port()
        ),
    )?;
    let c2 = connect(env, resp, &mut scratch)?;
    let c3 = connect(env, resp, &mut client)?;
    env.nft(&t.rtr, "delete table inet rsl_lo")?;
    // c2's data completes its handshake: the queue is now full (2 > backlog 1).
    send(&c2, b"two", &mut scratch);
    wait_acked(&c2);
    let orig = sock::local(&c3)?;
    send(&c3, b"three", &mut client);
    after_reset(&c3, &mut client);
    server.push("listen(backlog 1), accept() never called: 2 connections queued");
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![c1, c2, c3, l],
    })
}

fn handshake_abort(env: &Env) -> Result<Outcome> {
    let (mut client, mut server) = (Saw::default(), Saw::default());
    let t = env.topo()?;
    let (l, resp) = env.listen(8)?;
    env.nft(
        &t.rtr,
        &format!(
            "table inet rsl_hs {{\n chain f {{\n  type filter hook forward priority 0;\n  ip saddr {} tcp sport {} tcp flags & (syn|ack) == syn|ack drop\n }}\n}}\n",
            resp.ip(),
            resp.port()
        ),
    )?;
    let c = env.client_socket(resp)?;
    let orig = sock::local(&c)?;
    c.set_nonblocking(true)?;
    let r = c.connect(&SockAddr::from(resp)).map(|_| 0);
    client.call("connect", &r, false);
    if sock::wait(&c, libc::POLLOUT, Duration::from_millis(300)) {
        bail!("the SYN-ACK was not dropped");
    }
    drop(c);
    client.push("poll: no SYN-ACK within 300 ms, close: ok");
    env.nft(&t.rtr, "delete table inet rsl_hs")?;
    // The server retransmits its SYN-ACK after 1 s (TCP_TIMEOUT_INIT).
    std::thread::sleep(Duration::from_millis(1500));
    l.set_nonblocking(true)?;
    let r = l.accept().map(|_| 0);
    server.call("accept", &r, false);
    Ok(Outcome {
        client,
        server,
        orig,
        resp,
        keep: vec![l],
    })
}

/// Runs `f` in namespace `ns` (re-exported for tests).
pub fn run_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    in_ns(Some(ns), f)
}
