//! Idle connections cost two sockets and a task, nothing more: no pipe
//! until the first byte arrives. Its own test binary, so no other test's
//! traffic adds pipes to this process while it counts them.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Pipes this process holds open.
fn pipes() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("pipe:"))
        .count()
}

#[test]
fn idle_connections_hold_no_pipe_until_data_flows() {
    const N: usize = 200;
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_h, addr) = common::one(up.local_addr().unwrap());
    let before = pipes();
    let clients: Vec<TcpStream> = (0..N).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut servers: Vec<TcpStream> = (0..N).map(|_| up.accept().unwrap().0).collect();
    // Every upstream connect has completed and reported its readiness.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pipes(), before, "{N} idle connections must not hold pipes");
    // First byte on one connection: it gets its pipe and the data arrives.
    let mut c = &clients[N / 2];
    c.write_all(b"ping").unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let mut got = None;
    while got.is_none() && Instant::now() < until {
        for s in servers.iter_mut() {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 4];
            if let Ok(4) = s.read(&mut b) {
                got = Some(b);
            }
        }
    }
    assert_eq!(got, Some(*b"ping"));
    assert_eq!(
        pipes(),
        before + 2,
        "one pipe (two descriptors) for the one busy direction"
    );
}
