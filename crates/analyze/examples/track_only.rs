//! Reads, decodes and tracks every packet of a capture, without
//! classifying or printing: with `decode_only`, it splits the cost of
//! `rstscope analyze` into reading, tracking and reporting.
//! Usage: cargo run --release --example track_only FILE
//! (`AHEAD=N` prefetches each segment's connection N segments early, as the
//! pipeline does, to measure what prefetching buys).
use rstscope_capture::CaptureReader;
use rstscope_core::flow::{Tracker, TrackerConfig};
use rstscope_core::wire;

fn main() {
    let path = std::env::args().nth(1).expect("usage: track_only FILE");
    let mut r = CaptureReader::open(path.as_ref()).expect("open");
    let mut t = Tracker::new(TrackerConfig::default());
    let (mut n, mut conns, mut resets) = (0u64, 0u64, 0u64);
    // With AHEAD set, segments are processed in batches and each one's
    // connection is prefetched AHEAD segments early, as the pipeline does.
    let ahead: usize = std::env::var("AHEAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut batch: Vec<(rstscope_core::Timestamp, wire::Segment<'static>)> = Vec::new();
    let mut run =
        |t: &mut Tracker, batch: &mut Vec<(rstscope_core::Timestamp, wire::Segment<'static>)>| {
            for k in 0..batch.len() {
                if ahead > 0 {
                    if let Some((_, s)) = batch.get(k + ahead) {
                        t.prefetch(s);
                    }
                }
                t.packet(batch[k].0, &batch[k].1);
                t.drain_finished(|c| {
                    conns += 1;
                    resets += (c.resets > 0) as u64;
                });
            }
            batch.clear();
        };
    while let Some(p) = r.next_packet().expect("read") {
        n += 1;
        if let Ok(s) = wire::decode(p.linktype, p.data) {
            batch.push((p.ts, wire::Segment { payload: &[], ..s }));
            if batch.len() == 4096 {
                run(&mut t, &mut batch);
            }
        }
    }
    run(&mut t, &mut batch);
    for c in t.finish() {
        conns += 1;
        resets += (c.resets > 0) as u64;
    }
    println!("{n} packets, {conns} connections, {resets} with a reset");
}
