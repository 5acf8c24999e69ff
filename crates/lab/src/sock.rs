//! Socket helpers: record what the application saw at each call.

use anyhow::Result;
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The calls one side made and what each returned, e.g.
/// `["connect: ok", "send: ok", "recv: ECONNRESET"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Saw(pub Vec<String>);

impl Saw {
    /// Records one call.
    pub fn push(&mut self, s: impl Into<String>) {
        self.0.push(s.into());
    }
    /// Records a call's result (`ok`, `EOF`, `N bytes` or the errno name).
    pub fn call(&mut self, name: &str, r: &io::Result<usize>, is_read: bool) {
        let v = match r {
            Ok(0) if is_read => "EOF".to_string(),
            Ok(n) if is_read => format!("{n} bytes"),
            Ok(_) => "ok".to_string(),
            Err(e) => errno_name(e),
        };
        self.0.push(format!("{name}: {v}"));
    }
    /// One line for tables.
    pub fn line(&self) -> String {
        if self.0.is_empty() {
            "—".into()
        } else {
            self.0.join(", ")
        }
    }
}

/// The errno name of an I/O error (`ECONNRESET`, `EPIPE`, ...).
pub fn errno_name(e: &io::Error) -> String {
    let n = match e.raw_os_error() {
        Some(libc::ECONNRESET) => "ECONNRESET",
        Some(libc::EPIPE) => "EPIPE",
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::ECONNABORTED) => "ECONNABORTED",
        Some(libc::EAGAIN) => "EAGAIN (nothing within the timeout)",
        Some(libc::EINPROGRESS) => "EINPROGRESS",
        Some(libc::ENOTCONN) => "ENOTCONN",
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH",
        _ => return e.to_string(),
    };
    n.to_string()
}

/// A TCP socket of the family of `addr`, created in namespace `ns`.
pub fn tcp_socket(ns: Option<&str>, addr: SocketAddr) -> Result<Socket> {
    crate::ns::in_ns(ns, move || {
        Ok(Socket::new(
            Domain::for_address(addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?)
    })
}

/// A listener on `addr` in namespace `ns`.
pub fn listen(ns: Option<&str>, addr: SocketAddr, backlog: i32) -> Result<Socket> {
    let s = tcp_socket(ns, addr)?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(backlog)?;
    Ok(s)
}

/// Accepts one connection within `timeout`.
pub fn accept(l: &Socket, timeout: Duration) -> Result<Socket> {
    if !wait(l, libc::POLLIN, timeout) {
        anyhow::bail!("no connection to accept within {timeout:?}");
    }
    Ok(l.accept()?.0)
}

/// Waits until `events` (poll(2) bits) are ready on `s`, or an error or
/// hang-up is; returns whether anything happened within `timeout`.
pub fn wait(s: &Socket, events: i16, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: poll(2) on one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    n > 0
}

/// Waits until a RST (or anything making the socket readable) arrived.
pub fn wait_input(s: &Socket, timeout: Duration) -> bool {
    wait(s, libc::POLLIN | libc::POLLRDHUP, timeout)
}

/// `send(2)` with MSG_NOSIGNAL (EPIPE instead of SIGPIPE).
pub fn send(s: &Socket, data: &[u8]) -> io::Result<usize> {
    s.send_with_flags(data, libc::MSG_NOSIGNAL)
}

/// `recv(2)` with a timeout.
pub fn recv(s: &Socket, timeout: Duration) -> io::Result<usize> {
    s.set_read_timeout(Some(timeout))?;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    s.recv(&mut buf)
}

/// Bytes waiting unread in the receive queue (FIONREAD).
pub fn unread(s: &Socket) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    n.max(0) as usize
}

/// The kernel's TCP state name of the socket (from TCP_INFO).
pub fn tcp_state(s: &Socket) -> String {
    // SAFETY: zeroed tcp_info is valid; getsockopt fills at most its size.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: as above.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return "unknown".into();
    }
    const NAMES: [&str; 12] = [
        "?",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    NAMES
        .get(info.tcpi_state as usize)
        .copied()
        .unwrap_or("?")
        .to_string()
}

/// The socket's local address.
pub fn local(s: &Socket) -> Result<SocketAddr> {
    s.local_addr()?
        .as_socket()
        .ok_or_else(|| anyhow::anyhow!("not an inet socket"))
}
