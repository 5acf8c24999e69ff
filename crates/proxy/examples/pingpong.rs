//! Benchmark helper for `bench/run.sh` (loopback only).
//!
//! - `pingpong server ADDR`: echo server for small messages;
//! - `pingpong client ADDR N`: N round trips of 32 bytes, prints p50/p99/max in µs;
//! - `pingpong hold ADDR`: accepts connections and keeps them open, idle;
//! - `pingpong idle ADDR N SECS`: opens N connections, keeps them SECS seconds.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit struct for get/setrlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        let want = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: 1 << 20,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: pingpong server ADDR | client ADDR N | hold ADDR | idle ADDR N SECS";
    let (Some(mode), Some(addr)) = (a.get(1), a.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let num = |i: usize, d: u64| a.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    raise_nofile();
    match mode.as_str() {
        "server" => {
            let l = TcpListener::bind(addr).expect("bind");
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let _ = s.set_nodelay(true);
                    let mut b = [0u8; 4096];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        "client" => {
            let n = num(3, 20000) as usize;
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).unwrap();
            let msg = [7u8; 32];
            let mut b = [0u8; 32];
            let mut t = Vec::with_capacity(n);
            for i in 0..n + 1000 {
                let t0 = Instant::now();
                s.write_all(&msg).unwrap();
                s.read_exact(&mut b).unwrap();
                if i >= 1000 {
                    t.push(t0.elapsed().as_nanos() as u64);
                }
            }
            t.sort_unstable();
            let p = |q: f64| t[((t.len() as f64 * q) as usize).min(t.len() - 1)] as f64 / 1000.0;
            println!(
                "p50_us={:.1} p99_us={:.1} max_us={:.1} n={n}",
                p(0.5),
                p(0.99),
                p(1.0)
            );
        }
        "hold" => {
            let l = TcpListener::bind(addr).expect("bind");
            let mut keep = Vec::new();
            for s in l.incoming().flatten() {
                keep.push(s);
            }
        }
        "idle" => {
            let n = num(3, 10000) as usize;
            let secs = num(4, 10);
            let mut keep = Vec::with_capacity(n);
            for i in 0..n {
                match TcpStream::connect(addr) {
                    Ok(s) => keep.push(s),
                    Err(e) => {
                        eprintln!("connection {i}: {e}");
                        std::process::exit(1);
                    }
                }
            }
            println!("open={}", keep.len());
            std::thread::sleep(Duration::from_secs(secs));
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
