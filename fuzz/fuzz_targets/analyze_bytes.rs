//! Arbitrary bytes as a capture file: the reader, every link-layer and IP
//! decoder, the flow tracker and the classifier must neither panic nor hang;
//! the reader's fast paths (records lying whole in its buffer, or in the
//! window of a mapped file) must read a file, mapped, packet by packet or
//! in runs, exactly as its general path reads the same bytes trickling in
//! one at a time; and the
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
/// packets through `for_each_buffered` (as `rstscope analyze` reads; 0:
/// none), the others through `next_packet`.
fn read_all(r: Result<CaptureReader, rstscope_capture::Error>, run: usize) -> Read {
    let mut r = match r {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut out = Vec::new();
    loop {
        let n = r.for_each_buffered(run, |p| {
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

/// Hands out one byte per read: the reader then never holds a record whole
/// before its general path asks for it.
struct Trickle(Vec<u8>, usize);

impl Trickle {
    fn new(data: &[u8]) -> Self {
        Trickle(data.to_vec(), 0)
    }
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.get(self.1), buf.first_mut()) {
            (Some(&b), Some(slot)) => {
                *slot = b;
                self.1 += 1;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("rstscope-fuzz-{}", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let file = read_all(CaptureReader::open(&path), 0);
        let in_runs = read_all(CaptureReader::open(&path), 3);
        // A decompressor fed one byte at a time may report damage at
        // another offset of its output: compressed input is compared
        // whole instead.
        let compressed =
            data.starts_with(&[0x1f, 0x8b]) || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        let trickled = if compressed {
            read_all(
                CaptureReader::from_reader(Box::new(std::io::Cursor::new(data.to_vec()))),
                0,
            )
        } else {
            read_all(CaptureReader::from_reader(Box::new(Trickle::new(data))), 0)
        };
        let _ = std::fs::remove_file(&path);
        assert_eq!(file, trickled, "file and trickled reads differ");
        assert_eq!(
            in_runs, trickled,
            "file reads in runs and trickled reads differ"
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
