//! Helpers shared by the proxy's end-to-end tests: real loopback sockets,
//! a minimal HTTP client for the API, and upstream servers.
#![allow(dead_code)]

use rstscope_proxy::{spawn, Config, Handle, ProxyConfig};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Starts a server with an API on 127.0.0.1:0 and the given proxies.
pub fn proxy(proxies: Vec<ProxyConfig>) -> Handle {
    spawn(Config {
        api: Some("127.0.0.1:0".parse().unwrap()),
        proxies,
        seed: Some(42),
        log_resets: false,
    })
    .expect("proxy starts")
}

/// One proxy to `upstream`, no toxics.
pub fn one(upstream: SocketAddr) -> (Handle, SocketAddr) {
    let h = proxy(vec![ProxyConfig {
        name: "p".into(),
        listen: "127.0.0.1:0".into(),
        upstream: upstream.to_string(),
        enabled: true,
        toxics: vec![],
    }]);
    let a = h.addr("p").unwrap();
    (h, a)
}

/// An HTTP request to the API; returns (status, body).
pub fn http(api: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// `http` and parse the body as JSON.
pub fn api_json(api: SocketAddr, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (st, b) = http(api, method, path, body);
    (
        st,
        serde_json::from_str(&b).unwrap_or(serde_json::Value::Null),
    )
}

/// An upstream that echoes everything, one thread per connection; when the
/// client half-closes it half-closes too.
pub fn echo_server() -> SocketAddr {
    server(|mut s| {
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = s.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// An upstream running `f` on each accepted connection (in a thread).
pub fn server<F>(f: F) -> SocketAddr
where
    F: Fn(TcpStream) + Send + Sync + Clone + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let f = f.clone();
            thread::spawn(move || f(s));
        }
    });
    a
}

/// A port nothing listens on.
pub fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// How a read loop ended, as the application sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// read() returned 0 after this many bytes: a FIN.
    Eof(usize),
    /// read() failed with ECONNRESET after this many bytes: an RST.
    Reset(usize),
    /// Nothing happened within the time limit.
    Timeout(usize),
    /// Another error.
    Other(usize, String),
}

/// Reads until EOF, error, or `limit`.
pub fn read_outcome(s: &mut TcpStream, limit: Duration) -> (Outcome, Vec<u8>) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (Outcome::Timeout(got.len()), got);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (Outcome::Eof(got.len()), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return (Outcome::Reset(got.len()), got)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return (Outcome::Timeout(got.len()), got)
            }
            Err(e) => return (Outcome::Other(got.len(), e.to_string()), got),
        }
    }
}

/// Adds a toxic through the API and checks it was accepted.
pub fn add_toxic(h: &Handle, proxy: &str, json: &str) {
    let (st, b) = http(
        h.api.unwrap(),
        "POST",
        &format!("/proxies/{proxy}/toxics"),
        json,
    );
    assert_eq!(st, 200, "adding toxic {json}: {b}");
}

/// An upstream that records how its connection ended (what the server
/// application saw) and reports it on the channel.
pub fn observing_server() -> (SocketAddr, std::sync::mpsc::Receiver<Outcome>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(tx));
    let a = server(move |mut s| {
        let (o, _) = read_outcome(&mut s, Duration::from_secs(5));
        let _ = tx.lock().unwrap().send(o);
    });
    (a, rx)
}
