//! Arbitrary bytes as a capture file: the reader, every link-layer and IP
//! decoder, the flow tracker and the classifier must neither panic nor hang;
//! the reader must read a mapped file (with its fast paths) exactly as it
//! reads the same bytes from a stream, packet by packet or in runs; and the
//! analysis must say the same on one thread as on several (segments then
//! cross threads in a compact form, common frames decoded straight into it,
//! each tracker sees only its share, and capture time may jump).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rstscope_capture::CaptureReader;
use rstscope_core::classify::{classify, Options};
use rstscope_core::flow::{Tracker, TrackerConfig};
use rstscope_core::wire;

type Read = (Vec<(i64, u32, Vec<u8>, u32, u64)>, Option<String>);

/// Every packet and the error that ends the capture: in runs of up to `run`
/// packets through `for_each_mapped` (as `rstscope analyze` reads a mapped
/// file; 0: none), the others through `next_packet`.
fn read_all(r: Result<CaptureReader, rstscope_capture::Error>, run: usize) -> Read {
    let mut r = match r {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut out = Vec::new();
    loop {
        let n = r.for_each_mapped(run, |p| {
            out.push((p.ts.0, p.linktype, p.data.to_vec(), p.orig_len, p.offset));
            true
        });
        if n > 0 {
            continue;
        }
        match r.next_packet() {
            Ok(Some(p)) => out.push((p.ts.0, p.linktype, p.data.to_vec(), p.orig_len, p.offset)),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("rstscope-fuzz-{}", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let mapped = read_all(CaptureReader::open(&path), 0);
        let in_runs = read_all(CaptureReader::open(&path), 3);
        let streamed = read_all(
            CaptureReader::from_reader(Box::new(std::io::Cursor::new(data.to_vec()))),
            0,
        );
        let _ = std::fs::remove_file(&path);
        assert_eq!(mapped, streamed, "mapped and streamed reads differ");
        assert_eq!(
            in_runs, streamed,
            "mapped reads in runs and streamed reads differ"
        );
    }
    // Also decode the raw bytes as a frame of every supported link type.
    for lt in [
        0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 129, 178, 228, 229, 242, 276,
    ] {
        let _ = wire::decode(lt, data);
    }
    let analyze = |threads: usize| {
        let r = CaptureReader::from_reader(Box::new(std::io::Cursor::new(data.to_vec()))).ok()?;
        let opts = rstscope_analyze::Options {
            threads,
            ..Default::default()
        };
        let mut conns = Vec::new();
        let (s, error) = rstscope_analyze::stream(
            r,
            &opts,
            |c| {
                conns.push(format!("{c:?}"));
                Ok(())
            },
            |_| {},
        )
        .ok()?;
        conns.sort();
        // Everything but the peak of open connections (each tracker
        // counts its own).
        let counts = (s.packets, s.tcp, s.non_tcp, s.fragments, s.connections);
        Some((conns, counts, s.malformed, s.first_ts, s.last_ts, error))
    };
    assert_eq!(analyze(1), analyze(3), "one thread and three differ");
    let Ok(mut r) = CaptureReader::from_reader(Box::new(std::io::Cursor::new(data.to_vec())))
    else {
        return;
    };
    let mut t = Tracker::new(TrackerConfig::default());
    while let Ok(Some(p)) = r.next_packet() {
        if let Ok(seg) = wire::decode(p.linktype, p.data) {
            t.packet(p.ts, &seg);
        }
    }
    for c in t.finish() {
        let _ = c.conn_state();
        let _ = classify(&c, &Options::default());
    }
});
