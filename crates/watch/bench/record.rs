//! Prints the raw tracepoint samples the kernel delivers, as hex, to make
//! decoder fixtures: `cargo run -p rstscope-watch --example record -- 5`
//! (seconds), then trigger resets.

use rstscope_watch::perf::{self, Item, Ring};
use rstscope_watch::watcher::load_formats;

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let f = load_formats(None).expect("formats");
    let mut rings = Vec::new();
    let mut keep = Vec::new();
    for cpu in perf::online_cpus().expect("cpus") {
        let fd = perf::open_tracepoint(f.send.id, cpu, 1).expect("open");
        let ring = Ring::new(fd, 16, cpu).expect("mmap");
        let r = perf::open_tracepoint(f.receive.id, cpu, 1).expect("open");
        perf::set_output(&r, ring.fd()).expect("output");
        if let Some(s) = &f.set_state {
            let x = perf::open_tracepoint(s.id, cpu, 1).expect("open");
            perf::set_filter(&x, "newstate == 7 || newstate == 2").expect("filter");
            perf::set_output(&x, ring.fd()).expect("output");
            perf::enable(&x).unwrap();
            keep.push(x);
        }
        perf::enable(&r).unwrap();
        perf::enable(ring.fd()).unwrap();
        keep.push(r);
        rings.push(ring);
    }
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(50));
        for r in rings.iter_mut() {
            r.drain(|it| {
                if let Item::Sample { raw, .. } = it {
                    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                    let rec = rstscope_watch::decode::decode(&f, raw);
                    println!("{hex}\n  {rec:?}");
                }
            });
        }
    }
}
