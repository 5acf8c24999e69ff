//! Reads, decodes and tracks every packet of a capture, without
//! classifying or printing: with `decode_only`, it splits the cost of
//! `rstscope analyze` into reading, tracking and reporting.
//! Usage: cargo run --release --example track_only FILE
use rstscope_capture::CaptureReader;
use rstscope_core::flow::{Tracker, TrackerConfig};
use rstscope_core::wire;

fn main() {
    let path = std::env::args().nth(1).expect("usage: track_only FILE");
    let mut r = CaptureReader::open(path.as_ref()).expect("open");
    let mut t = Tracker::new(TrackerConfig::default());
    let (mut n, mut conns, mut resets) = (0u64, 0u64, 0u64);
    while let Some(p) = r.next_packet().expect("read") {
        n += 1;
        if let Ok(s) = wire::decode(p.linktype, p.data) {
            t.packet(p.ts, &s);
            t.drain_finished(|c| {
                conns += 1;
                resets += (c.resets > 0) as u64;
            });
        }
    }
    for c in t.finish() {
        conns += 1;
        resets += (c.resets > 0) as u64;
    }
    println!("{n} packets, {conns} connections, {resets} with a reset");
}
