//! Arbitrary bytes as a capture file: the reader, every link-layer and IP
//! decoder, the flow tracker and the classifier must neither panic nor hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rstscope_capture::CaptureReader;
use rstscope_core::classify::{classify, Options};
use rstscope_core::flow::{Tracker, TrackerConfig};
use rstscope_core::wire;

fuzz_target!(|data: &[u8]| {
    // Also decode the raw bytes as a frame of every supported link type.
    for lt in [0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 129, 178, 228, 229, 242, 276] {
        let _ = wire::decode(lt, data);
    }
    let Ok(mut r) = CaptureReader::from_reader(Box::new(std::io::Cursor::new(data.to_vec()))) else {
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
