//! Table-driven test of `explain` on real error messages, each quoted from
//! the runtime's or tool's source or documentation (the comment says where;
//! log lines keep their real shape, with addresses and times as the tools
//! print them).

use rstscope_core::{Cause, CauseInfo};
use rstscope_explain::{explain, Signal};

use Signal::{Fin, Rst, Timeout, Unknown};

/// (message, where it comes from, rule id, errno, signal)
const CASES: &[(&str, &str, &str, Option<&str>, Signal)] = &[
    // ---- Java (OpenJDK)
    ("java.net.SocketException: Connection reset", "OpenJDK sun/nio/ch/NioSocketImpl.java: throw new SocketException(\"Connection reset\")", "java.connection_reset", Some("ECONNRESET"), Rst),
    ("java.net.SocketException: Connection reset by peer", "OpenJDK net_util_md.c: NET_ThrowByNameWithLastError -> strerror(ECONNRESET)", "java.connection_reset", Some("ECONNRESET"), Rst),
    ("java.io.IOException: Connection reset by peer\n\tat java.base/sun.nio.ch.SocketDispatcher.read0(Native Method)", "OpenJDK sun/nio/ch/SocketDispatcher.c (NIO channels)", "java.connection_reset", Some("ECONNRESET"), Rst),
    ("java.net.SocketException: Broken pipe (Write failed)", "OpenJDK <= 12 SocketOutputStream.c: \"Write failed\" suffix", "generic.broken_pipe", Some("EPIPE"), Fin),
    ("java.net.ConnectException: Connection refused", "OpenJDK sun/nio/ch/Net.c connect0 -> strerror(ECONNREFUSED)", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("java.net.SocketTimeoutException: Read timed out", "OpenJDK NioSocketImpl.java timedRead: \"Read timed out\"", "java.read_timed_out", Some("ETIMEDOUT"), Timeout),
    ("javax.net.ssl.SSLHandshakeException: Remote host terminated the handshake", "OpenJDK sun/security/ssl/SSLSocketImpl.java", "java.remote_host_terminated_handshake", None, Fin),
    ("java.io.IOException: HTTP/1.1 header parser received no bytes", "OpenJDK java.net.http Http1Response / Http1HeaderParser", "java.connection_closed_by_peer", None, Fin),
    ("java.io.EOFException: EOF reached while reading", "OpenJDK java.net.http Http1AsyncReceiver.Http1TubeSubscriber.onComplete", "java.connection_closed_by_peer", None, Fin),
    // ---- Go
    ("read tcp 10.0.0.2:52814->10.0.0.1:80: read: connection reset by peer", "Go net.OpError.Error + syscall ECONNRESET text (zerrors_linux_amd64.go)", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("write tcp 127.0.0.1:41822->127.0.0.1:8080: write: broken pipe", "Go net.OpError + syscall EPIPE \"broken pipe\"", "generic.broken_pipe", Some("EPIPE"), Fin),
    ("dial tcp 127.0.0.1:8080: connect: connection refused", "Go net.OpError + syscall ECONNREFUSED", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("unexpected EOF", "Go io.ErrUnexpectedEOF = errors.New(\"unexpected EOF\")", "generic.unexpected_eof", None, Fin),
    ("Get \"http://127.0.0.1:8080/\": http: server closed idle connection", "Go net/http transport.go errServerClosedIdle", "go.server_closed_idle", None, Fin),
    ("read tcp 10.0.0.2:52814->10.0.0.1:80: i/o timeout", "Go internal/poll ErrDeadlineExceeded \"i/o timeout\"", "go.io_timeout", Some("ETIMEDOUT"), Timeout),
    ("Post \"http://localhost:9411/api/v2/spans\": EOF", "Go net/http url.Error{Op, URL, Err: io.EOF} (Error() = Op + \" \" + quoted URL + \": \" + err)", "go.eof", None, Fin),
    ("dial tcp 10.0.0.1:443: connect: connection timed out", "Go net.OpError + syscall ETIMEDOUT", "generic.timed_out", Some("ETIMEDOUT"), Timeout),
    // ---- Python (CPython, requests/urllib3)
    ("ConnectionResetError: [Errno 104] Connection reset by peer", "CPython Objects/exceptions.c errno -> ConnectionResetError, strerror", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("BrokenPipeError: [Errno 32] Broken pipe", "CPython BrokenPipeError (EPIPE)", "generic.broken_pipe", Some("EPIPE"), Fin),
    ("ConnectionRefusedError: [Errno 111] Connection refused", "CPython ConnectionRefusedError (ECONNREFUSED)", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("ConnectionAbortedError: [Errno 103] Software caused connection abort", "CPython ConnectionAbortedError (ECONNABORTED)", "generic.connection_aborted", Some("ECONNABORTED"), Unknown),
    ("TimeoutError: [Errno 110] Connection timed out", "CPython TimeoutError (ETIMEDOUT)", "generic.timed_out", Some("ETIMEDOUT"), Timeout),
    ("http.client.RemoteDisconnected: Remote end closed connection without response", "CPython Lib/http/client.py HTTPResponse.begin", "python.remote_disconnected", None, Fin),
    ("requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))", "urllib3 connectionpool.py ProtocolError('Connection aborted.', err) via requests", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("ConnectionResetError(10054, 'An existing connection was forcibly closed by the remote host')", "CPython on Windows (WSAECONNRESET)", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("ssl.SSLEOFError: EOF occurred in violation of protocol (_ssl.c:2427)", "CPython Modules/_ssl.c PY_SSL_ERROR_EOF", "openssl.unexpected_eof", None, Fin),
    // ---- Node.js
    ("Error: read ECONNRESET", "Node.js lib/internal/errors.js errnoException(err, 'read')", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("Error: socket hang up", "Node.js lib/_http_client.js connResetException('socket hang up')", "node.socket_hang_up", Some("ECONNRESET"), Fin),
    ("Error: write EPIPE", "Node.js errnoException(err, 'write')", "generic.broken_pipe", Some("EPIPE"), Fin),
    ("Error: connect ECONNREFUSED 127.0.0.1:3000", "Node.js lib/net.js exceptionWithHostPort(err, 'connect', ...)", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("Error: read ETIMEDOUT", "Node.js errnoException(err, 'read')", "generic.timed_out", Some("ETIMEDOUT"), Timeout),
    ("Error: Client network socket disconnected before secure TLS connection was established", "Node.js lib/_tls_wrap.js onConnectEnd", "node.tls_disconnected", Some("ECONNRESET"), Unknown),
    ("SocketError: other side closed", "undici lib/dispatcher/client-h1.js onHttpSocketEnd (UND_ERR_SOCKET)", "node.undici_other_side_closed", None, Fin),
    // ---- Rust
    ("Connection reset by peer (os error 104)", "Rust std io::Error Display: strerror + \" (os error N)\"", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("Broken pipe (os error 32)", "Rust std io::Error Display", "generic.broken_pipe", Some("EPIPE"), Fin),
    ("Connection refused (os error 111)", "Rust std io::Error Display", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("hyper::Error(IncompleteMessage): connection closed before message completed", "hyper src/error.rs Kind::IncompleteMessage description", "hyper.incomplete_message", None, Fin),
    ("failed to fill whole buffer", "Rust std io::default_read_exact UnexpectedEof message", "generic.unexpected_eof", None, Fin),
    // ---- .NET
    ("System.Net.Sockets.SocketException (10054): An existing connection was forcibly closed by the remote host.", ".NET SocketException, Winsock WSAECONNRESET text", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("System.IO.IOException: Unable to read data from the transport connection: Connection reset by peer.", ".NET System.Net.Sockets NetworkStream (net_io_readfailure) on Linux", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("System.Net.Sockets.SocketException (10061): No connection could be made because the target machine actively refused it.", ".NET SocketException, WSAECONNREFUSED text", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("System.Net.Sockets.SocketException (10053): An established connection was aborted by the software in your host machine.", ".NET SocketException, WSAECONNABORTED text", "generic.connection_aborted", Some("ECONNABORTED"), Unknown),
    ("System.Net.Http.HttpIOException: The response ended prematurely. (ResponseEnded)", ".NET System.Net.Http SR.net_http_invalid_response_premature_eof", "dotnet.response_ended", None, Fin),
    ("System.Net.Sockets.SocketException (10060): A connection attempt failed because the connected party did not properly respond after a period of time, or established connection failed because connected host has failed to respond.", ".NET SocketException, WSAETIMEDOUT text", "dotnet.did_not_respond", Some("ETIMEDOUT"), Timeout),
    // ---- curl
    ("curl: (56) Recv failure: Connection reset by peer", "curl lib/cf-socket.c failf(data, \"Recv failure: %s\")", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("curl: (7) Failed to connect to 127.0.0.1 port 1: Connection refused", "curl 7.x lib/connect.c \"Failed to connect to %s port %u: %s\"", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("curl: (7) Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server", "curl 8.x lib/connect.c + curl_easy_strerror(CURLE_COULDNT_CONNECT)", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("curl: (52) Empty reply from server", "curl lib/http.c CURLE_GOT_NOTHING", "curl.empty_reply", None, Fin),
    ("curl: (55) Send failure: Broken pipe", "curl lib/cf-socket.c failf(data, \"Send failure: %s\")", "generic.broken_pipe", Some("EPIPE"), Fin),
    ("curl: (28) Operation timed out after 5001 milliseconds with 0 bytes received", "curl lib/multi.c CURLE_OPERATION_TIMEDOUT", "curl.operation_timed_out", Some("ETIMEDOUT"), Timeout),
    ("curl: (35) OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to example.com:443", "curl lib/vtls/openssl.c ossl_connect_step2", "openssl.ssl_error_syscall", None, Unknown),
    ("curl: (18) transfer closed with 1234 bytes remaining to read", "curl lib/transfer.c CURLE_PARTIAL_FILE", "curl.transfer_closed", None, Fin),
    // ---- nginx (error.log lines)
    ("2024/05/02 10:11:12 [error] 1234#1234: *5 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 127.0.0.1, server: _, request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8080/\", host: \"localhost\"", "nginx src/os/unix/ngx_recv.c ngx_connection_error(\"recv() failed\")", "nginx.upstream_reset", Some("ECONNRESET"), Rst),
    ("2016/10/16 01:36:34 [error] 26844#0: *7 upstream prematurely closed connection while reading response header from upstream, client: 192.168.1.1", "nginx src/http/ngx_http_upstream.c", "nginx.upstream_prematurely_closed", None, Fin),
    ("connect() failed (111: Connection refused) while connecting to upstream", "nginx src/event/ngx_event_connect.c", "nginx.upstream_refused", Some("ECONNREFUSED"), Rst),
    ("writev() failed (32: Broken pipe) while sending request to upstream", "nginx src/os/unix/ngx_writev_chain.c", "nginx.upstream_broken_pipe", Some("EPIPE"), Fin),
    ("upstream timed out (110: Connection timed out) while reading response header from upstream", "nginx ngx_http_upstream.c ngx_http_upstream_next(NGX_HTTP_UPSTREAM_FT_TIMEOUT)", "nginx.upstream_timed_out", Some("ETIMEDOUT"), Timeout),
    ("readv() failed (104: Connection reset by peer) while reading upstream", "nginx src/os/unix/ngx_readv_chain.c", "nginx.upstream_reset", Some("ECONNRESET"), Rst),
    ("epoll_wait() reported that client prematurely closed connection, so upstream connection is closed too while reading response header from upstream", "nginx ngx_http_upstream.c ngx_http_upstream_check_broken_connection", "nginx.client_prematurely_closed", None, Fin),
    // ---- HAProxy (log lines from haproxy/haproxy issue #1441; codes: configuration.txt 8.5)
    ("Nov  2 08:46:02 aphrodite haproxy[111996]: 10.0.0.1:41937 [02/Nov/2021:08:43:56.954] https~ app-1-tomcat0/app-1-tomcat0 1/0/0/5/125115 200 5606487 - - SD-- 750/750/18/17/0 0/0 \"GET https://example.org/a.js HTTP/2.0\"", "HAProxy httplog, termination state SD", "haproxy.SD", None, Unknown),
    ("Nov  2 08:46:02 aphrodite haproxy[111996]: 10.0.0.1:41168 [02/Nov/2021:08:45:35.191] https~ app-1-tomcat0/app-1-tomcat0 1/0/0/5/27161 200 1672581 - - CD-- 750/750/17/16/0 0/0 \"GET https://example.org/a.js HTTP/2.0\"", "HAProxy httplog, termination state CD", "haproxy.CD", None, Unknown),
    ("Nov  2 15:16:48 aphrodite haproxy[111996]: 10.0.0.1:50483 [02/Nov/2021:15:06:37.869] https~ app-8-tomcat0/app-8-tomcat0 1/0/1/36/610840 200 7709764 - - cD-- 6944/6944/106/106/0 0/0 \"GET https://example.org/a.js HTTP/2.0\"", "HAProxy httplog, termination state cD (client timeout)", "haproxy.sD", None, Timeout),
    ("SC", "HAProxy configuration.txt 8.5: SC = the server explicitly refused the TCP connection", "haproxy.SC", Some("ECONNREFUSED"), Rst),
    ("SH--", "HAProxy configuration.txt 8.5: SH = the server aborted before sending its full headers", "haproxy.SH", None, Unknown),
    // ---- PostgreSQL (libpq and server log)
    ("server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request.", "PostgreSQL src/interfaces/libpq/fe-misc.c pqReadData definitelyEOF", "postgres.server_closed", None, Fin),
    ("could not receive data from server: Connection reset by peer", "PostgreSQL libpq fe-secure.c pqsecure_raw_read", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("could not send data to server: Broken pipe", "PostgreSQL libpq fe-secure.c pqsecure_raw_write", "generic.broken_pipe", Some("EPIPE"), Fin),
    ("SSL SYSCALL error: EOF detected", "PostgreSQL libpq fe-secure-openssl.c pgtls_read", "postgres.ssl_eof", None, Fin),
    ("SSL SYSCALL error: Connection reset by peer", "PostgreSQL libpq fe-secure-openssl.c pgtls_read (SSL_ERROR_SYSCALL, errno)", "openssl.ssl_error_syscall_reset", Some("ECONNRESET"), Rst),
    ("psql: error: connection to server at \"localhost\" (127.0.0.1), port 5432 failed: Connection refused", "PostgreSQL libpq fe-connect.c (v14+ message shape)", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("LOG:  could not receive data from client: Connection reset by peer", "PostgreSQL server src/backend/libpq/be-secure.c / pqcomm.c", "generic.connection_reset", Some("ECONNRESET"), Rst),
    // ---- Redis clients
    ("redis.exceptions.ConnectionError: Error 104 while writing to socket. Connection reset by peer.", "redis-py connection.py \"Error %s while writing to socket. %s.\"", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("redis.exceptions.ConnectionError: Connection closed by server.", "redis-py connection.py SERVER_CLOSED_CONNECTION_ERROR", "redis.closed_by_server", None, Fin),
    ("redis.clients.jedis.exceptions.JedisConnectionException: Unexpected end of stream.", "Jedis RedisInputStream.ensureFill", "jedis.unexpected_end_of_stream", None, Fin),
    ("Could not connect to Redis at 127.0.0.1:6379: Connection refused", "redis-cli src/redis-cli.c cliConnect", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("SocketClosedUnexpectedlyError: Socket closed unexpectedly", "node-redis packages/client/lib/errors.ts", "redis.closed_by_server", None, Fin),
    // ---- OpenSSL
    ("error:0A000126:SSL routines::unexpected eof while reading", "OpenSSL 3 crypto/err/openssl.txt SSL_R_UNEXPECTED_EOF_WHILE_READING", "openssl.unexpected_eof", None, Fin),
    ("write:errno=104", "OpenSSL apps/s_client (BIO_printf \"write:errno=%d\")", "openssl.ssl_error_syscall_reset", Some("ECONNRESET"), Rst),
    ("SSL_ERROR_SYSCALL", "OpenSSL include/openssl/ssl.h SSL_get_error() result", "openssl.ssl_error_syscall", None, Unknown),
    // ---- errno names and numbers
    ("ECONNRESET", "POSIX errno name", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("104", "Linux errno number of ECONNRESET", "generic.connection_reset", Some("ECONNRESET"), Rst),
    ("EPIPE", "POSIX errno name", "generic.broken_pipe", Some("EPIPE"), Fin),
    ("32", "Linux errno number of EPIPE", "generic.broken_pipe", Some("EPIPE"), Fin),
    ("ECONNREFUSED", "POSIX errno name", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("111", "Linux errno number of ECONNREFUSED", "generic.connection_refused", Some("ECONNREFUSED"), Rst),
    ("ETIMEDOUT", "POSIX errno name", "generic.timed_out", Some("ETIMEDOUT"), Timeout),
    ("110", "Linux errno number of ETIMEDOUT", "generic.timed_out", Some("ETIMEDOUT"), Timeout),
    ("ECONNABORTED", "POSIX errno name", "generic.connection_aborted", Some("ECONNABORTED"), Unknown),
    ("103", "Linux errno number of ECONNABORTED", "generic.connection_aborted", Some("ECONNABORTED"), Unknown),
];

#[test]
fn real_messages_are_explained() {
    assert!(
        CASES.len() >= 40,
        "the issue asks for at least 40 real strings"
    );
    let mut failures = Vec::new();
    for (text, source, rule, errno, signal) in CASES {
        let e = explain(text);
        let got_rule = e.rule.map(|r| r.id).unwrap_or("(none)");
        let got_errno = e.errno.map(|e| e.name());
        if !e.recognized || got_rule != *rule || got_errno != *errno || e.signal != *signal {
            failures.push(format!(
                "{text:?} ({source}):\n   want rule {rule} errno {errno:?} signal {signal:?}\n   got  rule {got_rule} errno {got_errno:?} signal {:?}",
                e.signal
            ));
            continue;
        }
        // Every recognised message names causes and next steps that exist.
        assert!(!e.causes.is_empty(), "{text:?}: no causes");
        for c in &e.causes {
            let info: &CauseInfo = c.info();
            assert_eq!(info.cause, *c);
        }
        assert!(
            e.next_steps.iter().any(|s| s.contains("rstscope ")),
            "{text:?}: no rstscope command among the next steps"
        );
        assert!(!e.explanation.is_empty());
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn refused_means_refused_and_fin_is_never_called_a_reset_cause_only() {
    // The cause list of a refused connection is exactly `refused`.
    assert_eq!(
        explain("connect: connection refused").causes,
        vec![Cause::Refused]
    );
    // Orderly closes never claim a reset signal.
    for t in [
        "unexpected EOF",
        "Error: socket hang up",
        "curl: (52) Empty reply from server",
    ] {
        assert_eq!(explain(t).signal, Fin, "{t}");
    }
}

#[test]
fn unrelated_messages_are_not_recognised() {
    for t in [
        "use of closed network connection",
        "HTTP/1.1 404 Not Found",
        "permission denied",
        "No such file or directory (os error 2)",
        "listening on port 104",
        "the CD is in the drive",
    ] {
        let e = explain(t);
        assert!(
            !e.recognized,
            "{t:?} was recognised as {:?}",
            e.rule.map(|r| r.id)
        );
    }
}
