//! The message-recognition table: error messages of runtimes and tools →
//! errno, what the peer really did, cause ids, explanation, next steps.
//!
//! This is data, read top to bottom: the first rule with a matching pattern
//! wins, so specific messages (a runtime's own words) come before the
//! generic `strerror` texts and errno names, which come before bare errno
//! numbers. The per-cause knowledge (summary, typical origin, next steps)
//! is not repeated here: it lives in [`rstscope_core::cause::CAUSES`].
//!
//! Fragments in [`Pat::Seq`] are lowercase (a test checks it): matching is
//! case-insensitive.

use crate::{Errno, Signal};
use rstscope_core::Cause::{self, *};

/// One way a message can match a rule.
#[derive(Debug, Clone, Copy)]
pub enum Pat {
    /// All fragments, in this order, case-insensitively, anywhere in the text.
    Seq(&'static [&'static str]),
    /// A whole word, case-sensitively (`ECONNRESET` but not `XECONNRESETY`).
    Word(&'static str),
    /// An errno number in an errno context (`[Errno 104]`, `(104: `,
    /// `os error 104`, `errno=104`, `Error 104 while`, `(10054)`, ...) or
    /// the whole text being that number.
    Num(u32),
    /// A HAProxy termination state (`SD`, `CD`, ...): a 4-character log
    /// token `SD--`/`SDNN`, or the bare 2-character code when the text
    /// mentions haproxy or is only that code.
    Haproxy(&'static str),
}

/// A rule of the table.
#[derive(Debug)]
pub struct Rule {
    /// Stable rule id, `runtime.what` (shown in human output and tests).
    pub id: &'static str,
    /// Who prints this message.
    pub source: &'static str,
    /// Any of these patterns matches.
    pub when: &'static [Pat],
    /// The POSIX errno the message stands for.
    pub errno: Option<Errno>,
    /// What the peer really did.
    pub signal: Signal,
    /// Likely causes, most likely first (ids of CAUSES.md).
    pub causes: &'static [Cause],
    /// What happened at the TCP level.
    pub tcp: &'static str,
    /// What to run next (rstscope commands first).
    pub next: &'static [&'static str],
}

use Errno::*;
use Pat::*;

const NEXT_RST: &[&str] = &[
    "on the host that got the error, run `rstscope watch` while it recurs: it shows every reset sent or received with the kernel's reason and the process",
    "capture both ends (`tcpdump -i any -w rst.pcap 'tcp port PORT'`) and run `rstscope analyze rst.pcap`: it tells the peer's reset from a middlebox's",
    "on the peer, run `rstscope doctor --interval 10`: its counters say which kind of reset the kernel is sending",
];
const NEXT_FIN: &[&str] = &[
    "capture the connection (`tcpdump -i any -w close.pcap 'tcp port PORT'`) and run `rstscope analyze close.pcap`: it shows who sent FIN first and how long the connection was idle",
    "compare the client's idle/pool timeout with the server's keep-alive timeout: the client's must be shorter",
    "retry idempotent requests that fail on a reused (pooled) connection",
];
const NEXT_REFUSED: &[&str] = &[
    "check that something listens on that address and port on the server: `ss -ltnp`",
    "run `rstscope doctor` on the server: a full accept queue or a firewall shows up there",
    "capture the handshake and run `rstscope analyze`: a reset with the wrong TTL comes from a firewall, not the server",
];
const NEXT_TIMEOUT: &[&str] = &[
    "run `rstscope doctor` on both hosts: it compares keepalive settings with common load-balancer idle timers and shows conntrack limits",
    "capture and run `rstscope analyze`: retransmissions without answers mean the path drops the flow, a reset after idleness means an idle timer",
];
const NEXT_PROXY: &[&str] = &[
    "run `rstscope watch` on the upstream (backend) host while it recurs: it shows the process and the kernel's reason for each reset",
    "compare the proxy's upstream keep-alive timeout with the backend's idle timeout: the proxy's must be shorter",
    "capture between proxy and backend and run `rstscope analyze`",
];

/// The table, most specific first.
pub static RULES: &[Rule] = &[
    // ---------------------------------------------------------------- nginx
    Rule {
        id: "nginx.upstream_prematurely_closed",
        source: "nginx (ngx_http_upstream.c)",
        when: &[Seq(&["upstream prematurely closed connection"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[DataAfterClose, UnreadDataClose, IdleTimeout],
        tcp: "The upstream (backend) closed the connection with a FIN before sending a complete response. No reset was needed for this message: the backend ended the connection in an orderly way, usually because it crashed, restarted, or closed a keep-alive connection that nginx was about to reuse.",
        next: NEXT_PROXY,
    },
    Rule {
        id: "nginx.client_prematurely_closed",
        source: "nginx (ngx_http_request.c, ngx_http_upstream.c)",
        when: &[
            Seq(&["client prematurely closed connection"]),
            Seq(&["client closed prematurely connection"]),
        ],
        errno: None,
        signal: Signal::Fin,
        causes: &[Cause::Unknown],
        tcp: "The client closed its side (FIN) before nginx finished: the user cancelled, the client timed out first, or a load balancer in front of nginx closed the connection. nginx did nothing wrong.",
        next: &[
            "compare the client's (or front load balancer's) timeout with the request's duration in the access log ($request_time)",
            "capture on the nginx host and run `rstscope analyze` to see who closed first",
        ],
    },
    Rule {
        id: "nginx.upstream_reset",
        source: "nginx (ngx_recv.c, ngx_readv_chain.c: \"recv() failed (104: ...)\")",
        when: &[
            Seq(&["failed (104:", "upstream"]),
            Seq(&["failed (10054:", "upstream"]),
        ],
        errno: Some(Econnreset),
        signal: Signal::Rst,
        causes: &[UnreadDataClose, DataAfterClose, AbortiveClose, IdleTimeout],
        tcp: "nginx's socket to the upstream (backend) received a TCP reset: the backend, or a device between them, aborted the connection. On a reused keep-alive connection the classic cause is the backend closing an idle connection just as nginx sent the next request.",
        next: NEXT_PROXY,
    },
    Rule {
        id: "nginx.upstream_refused",
        source: "nginx (ngx_event_connect.c: \"connect() failed (111: ...)\")",
        when: &[Seq(&["connect() failed (111:"]), Seq(&["connect() failed (10061:"])],
        errno: Some(Econnrefused),
        signal: Signal::Rst,
        causes: &[Refused],
        tcp: "nginx's SYN to the upstream was answered with a reset: nothing listens on that address and port, or a firewall rejected it.",
        next: NEXT_REFUSED,
    },
    Rule {
        id: "nginx.upstream_timed_out",
        source: "nginx (ngx_http_upstream.c: \"upstream timed out (110: ...)\")",
        when: &[Seq(&["upstream timed out"])],
        errno: Some(Etimedout),
        signal: Signal::Timeout,
        causes: &[Cause::Unknown, IdleTimeout],
        tcp: "No reset: nginx's own proxy_connect/read/send timeout expired while the upstream stayed silent. The backend was slow or the path dropped packets.",
        next: &[
            "compare proxy_read_timeout with the backend's response time",
            "run `rstscope doctor` on the backend: accept-queue overflows and SYN retransmissions show up there",
        ],
    },
    Rule {
        id: "nginx.upstream_broken_pipe",
        source: "nginx (ngx_writev_chain.c: \"writev() failed (32: Broken pipe)\")",
        when: &[Seq(&["failed (32: broken pipe)"])],
        errno: Some(Epipe),
        signal: Signal::Fin,
        causes: &[DataAfterClose, UnreadDataClose],
        tcp: "nginx wrote to a connection the other side had already closed: the peer sent FIN, nginx kept sending, the peer's kernel answered with a reset, and the next write failed with EPIPE.",
        next: NEXT_PROXY,
    },
    // -------------------------------------------------------------- HAProxy
    Rule {
        id: "haproxy.SC",
        source: "HAProxy log termination state SC (configuration.txt, 8.5)",
        when: &[Haproxy("SC")],
        errno: Some(Econnrefused),
        signal: Signal::Rst,
        causes: &[Refused],
        tcp: "HAProxy's connection attempt to the server was refused: the server (or a device in front of it) answered the SYN with a reset, or an ICMP error came back.",
        next: NEXT_REFUSED,
    },
    Rule {
        id: "haproxy.SH",
        source: "HAProxy log termination state SH (configuration.txt, 8.5)",
        when: &[Haproxy("SH")],
        errno: None,
        signal: Signal::Unknown,
        causes: &[UnreadDataClose, DataAfterClose, UnknownConnection],
        tcp: "The server aborted (reset or closed) the connection before sending complete response headers: it crashed, restarted, or closed a reused keep-alive connection.",
        next: NEXT_PROXY,
    },
    Rule {
        id: "haproxy.SD",
        source: "HAProxy log termination state SD (configuration.txt, 8.5)",
        when: &[Haproxy("SD")],
        errno: None,
        signal: Signal::Unknown,
        causes: &[UnreadDataClose, AbortiveClose, FirewallReject],
        tcp: "The connection to the server died with an error (a reset, or a close before the announced length) during the data transfer.",
        next: NEXT_PROXY,
    },
    Rule {
        id: "haproxy.CD",
        source: "HAProxy log termination state CD (configuration.txt, 8.5)",
        when: &[Haproxy("CD"), Haproxy("CH"), Haproxy("CR")],
        errno: None,
        signal: Signal::Unknown,
        causes: &[Cause::Unknown, AbortiveClose, FirewallReject],
        tcp: "The client aborted the connection (reset or early close) before the transfer finished: the user cancelled, the client timed out, or a device in front of HAProxy cut the connection.",
        next: &[
            "capture on the HAProxy host and run `rstscope analyze`: it tells a client's reset from a middlebox's",
            "compare client timeouts with the response time logged by HAProxy (Tr/Tt)",
        ],
    },
    Rule {
        id: "haproxy.sD",
        source: "HAProxy log termination state sD (configuration.txt, 8.5)",
        when: &[Haproxy("sD"), Haproxy("sH"), Haproxy("cD")],
        errno: None,
        signal: Signal::Timeout,
        causes: &[IdleTimeout],
        tcp: "No reset from a peer: HAProxy's own server or client timeout (`timeout server` / `timeout client`) expired while the other side stayed silent, and HAProxy closed the connection.",
        next: &[
            "compare HAProxy's `timeout client`/`timeout server`/`timeout tunnel` with how long the application keeps connections idle",
            "run `rstscope doctor`: keepalive settings shorter than the idle timers keep long-lived connections alive",
        ],
    },
    // ----------------------------------------------------------- PostgreSQL
    Rule {
        id: "postgres.server_closed",
        source: "PostgreSQL libpq (fe-misc.c pqReadData)",
        when: &[Seq(&["server closed the connection unexpectedly"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[IdleTimeout, UnknownConnection, Cause::Unknown],
        tcp: "libpq read end-of-file: the server side closed the connection (FIN) while a query was expected or running. The backend process ended (crash, restart, `idle_session_timeout`, pg_terminate_backend) or a proxy/pooler/load balancer closed an idle connection.",
        next: &[
            "check the PostgreSQL server log at that time for the backend's exit (crash, termination, idle timeout)",
            "check idle timeouts of any pooler or load balancer between client and server; enable TCP keepalive on the client (keepalives_idle) below them",
            "run `rstscope doctor` on the client: it compares the keepalive settings with common idle timers",
        ],
    },
    Rule {
        id: "postgres.ssl_eof",
        source: "PostgreSQL libpq (fe-secure-openssl.c: \"SSL SYSCALL error: EOF detected\")",
        when: &[Seq(&["ssl syscall error: eof detected"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[IdleTimeout, UnknownConnection],
        tcp: "The TLS connection ended with a plain TCP close (FIN) and no TLS close_notify: the server process or a device on the path closed the connection under TLS.",
        next: NEXT_FIN,
    },
    // ---------------------------------------------------------------- Redis
    Rule {
        id: "redis.closed_by_server",
        source: "redis-py (connection.py SERVER_CLOSED_CONNECTION_ERROR), hiredis/redis-cli",
        when: &[
            Seq(&["connection closed by server"]),
            Seq(&["server closed the connection"]),
            Seq(&["socket closed unexpectedly"]),
        ],
        errno: None,
        signal: Signal::Fin,
        causes: &[IdleTimeout, DataAfterClose],
        tcp: "The Redis server closed the connection (FIN): its `timeout` setting closed an idle client, `CLIENT KILL`, maxclients, an output-buffer limit, or a restart.",
        next: &[
            "check the Redis `timeout` and `client-output-buffer-limit` settings and the server log",
            "make the client's pool drop idle connections before the server's timeout, or enable TCP keepalive",
            "capture the connection and run `rstscope analyze`: it shows which side closed first and after how long idle",
        ],
    },
    Rule {
        id: "jedis.unexpected_end_of_stream",
        source: "Jedis (RedisInputStream: \"Unexpected end of stream.\")",
        when: &[Seq(&["unexpected end of stream"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[IdleTimeout, DataAfterClose],
        tcp: "The Java Redis client read end-of-file: the server closed the connection (FIN) while the client expected a reply.",
        next: NEXT_FIN,
    },
    // -------------------------------------------------------------- OpenSSL
    Rule {
        id: "openssl.unexpected_eof",
        source: "OpenSSL 3 (SSL_R_UNEXPECTED_EOF_WHILE_READING, error:0A000126)",
        when: &[
            Seq(&["unexpected eof while reading"]),
            Seq(&["eof occurred in violation of protocol"]),
            Seq(&["ssl peer shut down incorrectly"]),
        ],
        errno: None,
        signal: Signal::Fin,
        causes: &[IdleTimeout, DataAfterClose, Cause::Unknown],
        tcp: "The peer closed the TCP connection (FIN) without sending a TLS close_notify first: an orderly TCP close under an unfinished TLS session, not a reset.",
        next: NEXT_FIN,
    },
    Rule {
        id: "openssl.ssl_error_syscall_reset",
        source: "OpenSSL SSL_ERROR_SYSCALL with errno ECONNRESET (curl, libpq, s_client \"errno=104\")",
        when: &[
            Seq(&["ssl_error_syscall", "reset by peer"]),
            Seq(&["ssl syscall error: connection reset"]),
            Seq(&["errno=104"]),
        ],
        errno: Some(Econnreset),
        signal: Signal::Rst,
        causes: &[UnreadDataClose, AbortiveClose, FirewallReject],
        tcp: "A TLS read or write failed because the TCP connection underneath received a reset.",
        next: NEXT_RST,
    },
    Rule {
        id: "openssl.ssl_error_syscall",
        source: "OpenSSL SSL_get_error() == SSL_ERROR_SYSCALL (curl \"OpenSSL SSL_connect: SSL_ERROR_SYSCALL\")",
        when: &[Seq(&["ssl_error_syscall"])],
        errno: None,
        signal: Signal::Unknown,
        causes: &[FirewallReject, Refused, Cause::Unknown],
        tcp: "The TLS layer hit a socket-level error or an unexpected end of the TCP connection (reset or FIN) with nothing in OpenSSL's error queue. During the handshake this often means a middlebox or the server cut the connection on seeing the ClientHello.",
        next: NEXT_RST,
    },
    // ----------------------------------------------------------------- curl
    Rule {
        id: "curl.empty_reply",
        source: "curl CURLE_GOT_NOTHING (52) \"Empty reply from server\"",
        when: &[Seq(&["empty reply from server"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[UnreadDataClose, DataAfterClose, Cause::Unknown],
        tcp: "The server accepted the connection and closed it (FIN) without sending a single byte of response.",
        next: NEXT_FIN,
    },
    Rule {
        id: "curl.transfer_closed",
        source: "curl CURLE_PARTIAL_FILE (18) \"transfer closed with N bytes remaining to read\"",
        when: &[Seq(&["transfer closed with", "remaining"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[Cause::Unknown, IdleTimeout],
        tcp: "The server closed the connection (FIN) before sending the body length it had announced.",
        next: NEXT_FIN,
    },
    Rule {
        id: "curl.operation_timed_out",
        source: "curl CURLE_OPERATION_TIMEDOUT (28)",
        when: &[Seq(&["(28)", "timed out"]), Seq(&["operation timed out after"])],
        errno: Some(Etimedout),
        signal: Signal::Timeout,
        causes: &[Cause::Unknown],
        tcp: "No reset: curl's own --max-time/--connect-timeout expired. The server was slow or the path dropped packets silently.",
        next: NEXT_TIMEOUT,
    },
    // ------------------------------------------------------------------- Go
    Rule {
        id: "go.server_closed_idle",
        source: "Go net/http transport.go errServerClosedIdle",
        when: &[Seq(&["server closed idle connection"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[DataAfterClose, IdleTimeout],
        tcp: "Go's HTTP client picked a pooled keep-alive connection that the server had just closed (FIN): the keep-alive race. The request was never processed.",
        next: NEXT_FIN,
    },
    Rule {
        id: "go.io_timeout",
        source: "Go net (os.ErrDeadlineExceeded: \"i/o timeout\")",
        when: &[Seq(&["i/o timeout"])],
        errno: Some(Etimedout),
        signal: Signal::Timeout,
        causes: &[Cause::Unknown],
        tcp: "No reset: a deadline set by the Go program (SetDeadline, Client.Timeout, Dialer.Timeout) expired while the peer stayed silent.",
        next: NEXT_TIMEOUT,
    },
    // ----------------------------------------------------------------- Java
    Rule {
        id: "java.remote_host_terminated_handshake",
        source: "OpenJDK SSLSocketImpl (SSLHandshakeException \"Remote host terminated the handshake\")",
        when: &[Seq(&["remote host terminated the handshake"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[FirewallReject, Cause::Unknown],
        tcp: "The server (or a TLS-inspecting middlebox) closed the TCP connection (FIN) during the TLS handshake, without a TLS alert: typically a protocol/cipher mismatch, SNI filtering or a proxy cutting TLS.",
        next: NEXT_FIN,
    },
    Rule {
        id: "java.connection_closed_by_peer",
        source: "OpenJDK / HTTP client: \"Connection closed by peer\", java.io.EOFException",
        when: &[
            Seq(&["connection closed by peer"]),
            Seq(&["eofexception"]),
            Seq(&["received no bytes"]),
        ],
        errno: None,
        signal: Signal::Fin,
        causes: &[DataAfterClose, IdleTimeout],
        tcp: "The peer closed the connection in an orderly way (FIN) and the Java code read end-of-stream where it expected data. No reset was involved.",
        next: NEXT_FIN,
    },
    Rule {
        id: "java.connection_reset",
        source: "OpenJDK NioSocketImpl (SocketException \"Connection reset\")",
        when: &[
            Seq(&["socketexception: connection reset"]),
            Seq(&["sslexception: connection reset"]),
            Seq(&["ioexception: connection reset"]),
        ],
        errno: Some(Econnreset),
        signal: Signal::Rst,
        causes: &[UnreadDataClose, DataAfterClose, AbortiveClose, IdleTimeout, FirewallReject],
        tcp: "The Java socket received a TCP reset from the peer (or from a device using the peer's address): the kernel reported ECONNRESET on read.",
        next: NEXT_RST,
    },
    Rule {
        id: "java.read_timed_out",
        source: "OpenJDK SocketTimeoutException \"Read timed out\" / \"Connect timed out\"",
        when: &[Seq(&["sockettimeoutexception"]), Seq(&["read timed out"])],
        errno: Some(Etimedout),
        signal: Signal::Timeout,
        causes: &[Cause::Unknown],
        tcp: "No reset: the socket's SO_TIMEOUT (or connect timeout) set by the program expired while the peer stayed silent.",
        next: NEXT_TIMEOUT,
    },
    // --------------------------------------------------------------- Python
    Rule {
        id: "python.remote_disconnected",
        source: "CPython http.client RemoteDisconnected",
        when: &[
            Seq(&["remote end closed connection without response"]),
            Seq(&["remotedisconnected"]),
        ],
        errno: None,
        signal: Signal::Fin,
        causes: &[DataAfterClose, IdleTimeout],
        tcp: "Python's HTTP client sent a request on a connection the server closed (FIN) without any response: usually the keep-alive race on a pooled connection.",
        next: NEXT_FIN,
    },
    // -------------------------------------------------------------- Node.js
    Rule {
        id: "node.socket_hang_up",
        source: "Node.js http client (connResetException(\"socket hang up\"), code ECONNRESET)",
        when: &[Seq(&["socket hang up"])],
        errno: Some(Econnreset),
        signal: Signal::Fin,
        causes: &[DataAfterClose, IdleTimeout],
        tcp: "The socket closed before any response arrived. Node labels it ECONNRESET, but it is usually an orderly close (FIN) of a reused keep-alive connection by the server; a real reset would have shown \"read ECONNRESET\".",
        next: NEXT_FIN,
    },
    Rule {
        id: "node.undici_other_side_closed",
        source: "undici / Node.js fetch (SocketError \"other side closed\", UND_ERR_SOCKET)",
        when: &[Seq(&["other side closed"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[DataAfterClose, IdleTimeout],
        tcp: "The server closed the connection (FIN) while undici still expected a response.",
        next: NEXT_FIN,
    },
    Rule {
        id: "node.tls_disconnected",
        source: "Node.js tls (\"Client network socket disconnected before secure TLS connection was established\")",
        when: &[Seq(&["disconnected before secure tls connection was established"])],
        errno: Some(Econnreset),
        signal: Signal::Unknown,
        causes: &[FirewallReject, Cause::Unknown],
        tcp: "The TCP connection ended (FIN or reset) during the TLS handshake: the server or a middlebox refused the ClientHello.",
        next: NEXT_RST,
    },
    // ----------------------------------------------------------------- Rust
    Rule {
        id: "hyper.incomplete_message",
        source: "hyper (IncompleteMessage: \"connection closed before message completed\")",
        when: &[Seq(&["connection closed before message completed"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[DataAfterClose, IdleTimeout],
        tcp: "hyper's connection was closed (FIN) by the server before a complete response arrived: on a pooled connection, the keep-alive race.",
        next: NEXT_FIN,
    },
    // ----------------------------------------------------------------- .NET
    Rule {
        id: "dotnet.response_ended",
        source: ".NET HttpClient (HttpRequestError.ResponseEnded \"The response ended prematurely\")",
        when: &[Seq(&["response ended prematurely"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[DataAfterClose, IdleTimeout],
        tcp: "The server closed the connection (FIN) before the complete response arrived; on a pooled connection, the keep-alive race.",
        next: NEXT_FIN,
    },
    Rule {
        id: "dotnet.did_not_respond",
        source: "Windows WSAETIMEDOUT (10060) text, .NET SocketException",
        when: &[Seq(&["did not properly respond after a period of time"])],
        errno: Some(Etimedout),
        signal: Signal::Timeout,
        causes: &[Cause::Unknown],
        tcp: "No reset: the connection attempt or the connection got no answer until the stack gave up.",
        next: NEXT_TIMEOUT,
    },
    // --------------------------------------------- generic: EPIPE / reset / ...
    Rule {
        id: "generic.broken_pipe",
        source: "strerror(EPIPE) \"Broken pipe\" (Go \"write: broken pipe\", Python BrokenPipeError, Rust os error 32, curl (55))",
        when: &[
            Seq(&["broken pipe"]),
            Word("EPIPE"),
            Seq(&["brokenpipeerror"]),
            Num(32),
        ],
        errno: Some(Epipe),
        signal: Signal::Fin,
        causes: &[DataAfterClose, UnreadDataClose],
        tcp: "The program wrote to a connection that was already closed for writing. On Linux the classic sequence is: the peer closed (FIN), this side kept writing, the peer's kernel answered that data with a reset, and the next write failed with EPIPE. If the peer had unread data when it closed, the reset came first (ECONNRESET) and EPIPE follows.",
        next: NEXT_FIN,
    },
    Rule {
        id: "generic.connection_refused",
        source: "strerror(ECONNREFUSED), Windows WSAECONNREFUSED (10061) text",
        when: &[
            Seq(&["connection refused"]),
            Seq(&["actively refused"]),
            Seq(&["connectionrefused"]),
            Seq(&["couldn't connect to server"]),
            Word("ECONNREFUSED"),
            Num(111),
            Num(10061),
        ],
        errno: Some(Econnrefused),
        signal: Signal::Rst,
        causes: &[Refused],
        tcp: "The connection never opened: the SYN was answered with a reset (RST|ACK), because nothing listens on that address and port, or a firewall rejects the attempt with a reset.",
        next: NEXT_REFUSED,
    },
    Rule {
        id: "generic.connection_reset",
        source: "strerror(ECONNRESET) \"Connection reset by peer\", Windows WSAECONNRESET (10054) text",
        when: &[
            Seq(&["connection reset"]),
            Seq(&["forcibly closed by the remote host"]),
            Seq(&["connectionreset"]),
            Word("ECONNRESET"),
            Word("WSAECONNRESET"),
            Num(104),
            Num(10054),
        ],
        errno: Some(Econnreset),
        signal: Signal::Rst,
        causes: &[UnreadDataClose, DataAfterClose, AbortiveClose, IdleTimeout, FirewallReject, UnknownConnection],
        tcp: "The connection was open and a TCP reset arrived for it: the peer's kernel (or a device on the path using the peer's address) aborted the connection, and the next read or write here failed with ECONNRESET. Data in flight may be lost.",
        next: NEXT_RST,
    },
    Rule {
        id: "generic.connection_aborted",
        source: "strerror(ECONNABORTED) \"Software caused connection abort\", Windows WSAECONNABORTED (10053) text",
        when: &[
            Seq(&["software caused connection abort"]),
            Seq(&["aborted by the software in your host machine"]),
            Seq(&["connectionaborted"]),
            Word("ECONNABORTED"),
            Num(103),
            Num(10053),
        ],
        errno: Some(Econnaborted),
        signal: Signal::Unknown,
        causes: &[KeepaliveTimeout, AbortiveClose, HandshakeAbort],
        tcp: "The local stack aborted the connection. On Linux: accept() returns it for a connection reset while still in the accept queue, and a socket destroyed with `ss -K` reports it. On Windows: the local stack gave up after retransmission or keepalive timeouts.",
        next: &[
            "run `rstscope watch` on this host: it shows which process's socket was reset or destroyed and the kernel's reason",
            "run `rstscope doctor`: TCPAbortOnTimeout and keepalive settings show stack-side aborts",
        ],
    },
    Rule {
        id: "generic.timed_out",
        source: "strerror(ETIMEDOUT) \"Connection timed out\"",
        when: &[
            Seq(&["connection timed out"]),
            Word("ETIMEDOUT"),
            Seq(&["timeouterror"]),
            Num(110),
            Num(10060),
        ],
        errno: Some(Etimedout),
        signal: Signal::Timeout,
        causes: &[KeepaliveTimeout, IdleTimeout, Cause::Unknown],
        tcp: "The kernel gave up on the connection: the SYN was never answered (connect), or retransmissions or keepalive probes went unanswered. A keepalive timeout sends one reset to the peer; retransmission timeouts send none. The path (firewall/NAT state expiry) or the peer host went silent.",
        next: NEXT_TIMEOUT,
    },
    Rule {
        id: "generic.unexpected_eof",
        source: "Go io.ErrUnexpectedEOF \"unexpected EOF\", Rust ErrorKind::UnexpectedEof",
        when: &[
            Seq(&["unexpected eof"]),
            Seq(&["failed to fill whole buffer"]),
            Seq(&["unexpectedeof"]),
        ],
        errno: None,
        signal: Signal::Fin,
        causes: &[DataAfterClose, IdleTimeout, Cause::Unknown],
        tcp: "The reader got end-of-stream (the peer's FIN) in the middle of a message: an orderly TCP close at the wrong moment, not a reset.",
        next: NEXT_FIN,
    },
    Rule {
        id: "go.eof",
        source: "Go net/http url.Error wrapping io.EOF (`Get \"URL\": EOF`)",
        when: &[Seq(&["\": eof"])],
        errno: None,
        signal: Signal::Fin,
        causes: &[DataAfterClose, IdleTimeout],
        tcp: "Go's HTTP client read end-of-file where a response should start: the server closed the connection (FIN), typically a pooled keep-alive connection it had just timed out.",
        next: NEXT_FIN,
    },
];
