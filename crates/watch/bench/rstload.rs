//! Load generator for the `rstscope watch` benchmark: threads connecting in
//! a loop to a closed port on 127.0.0.1, so every attempt costs the kernel
//! one sent reset (NO_SOCKET) and one received reset (SYN_SENT). Bounded by
//! count and time; run it inside a network namespace (bench/run.sh does).
//!
//! `rstload --port 9 --count 2000000 --seconds 20 --threads 2`
//! prints `refused=<n> seconds=<t> rate=<n/s>`.

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let port = arg("--port", 9) as u16;
    let count = arg("--count", 2_000_000);
    let secs = arg("--seconds", 20).min(300);
    let threads = arg("--threads", 2).clamp(1, 64);
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let done = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (done, other) = (done.clone(), other.clone());
            std::thread::spawn(move || loop {
                // Claim a slot first so the total never exceeds --count.
                if done.fetch_add(1, Ordering::Relaxed) >= count || Instant::now() >= end {
                    done.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                match TcpStream::connect(addr) {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    _ => {
                        done.fetch_sub(1, Ordering::Relaxed);
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    let t = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "refused={n} other={} seconds={t:.2} rate={:.0}",
        other.load(Ordering::Relaxed),
        n as f64 / t
    );
}
