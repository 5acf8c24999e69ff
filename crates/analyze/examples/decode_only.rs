//! Reads and decodes every packet of a capture without tracking: the floor
//! that `rstscope analyze`'s reader thread puts under the whole analysis.
//! Usage: cargo run --release --example decode_only FILE
use rstscope_capture::CaptureReader;
use rstscope_core::wire;

fn main() {
    let path = std::env::args().nth(1).expect("usage: decode_only FILE");
    let mut r = CaptureReader::open(path.as_ref()).expect("open");
    let (mut n, mut tcp, mut bytes) = (0u64, 0u64, 0u64);
    while let Some(p) = r.next_packet().expect("read") {
        n += 1;
        if let Ok(s) = wire::decode(p.linktype, p.data) {
            tcp += 1;
            bytes += s.payload_len as u64;
        }
    }
    println!("{n} packets, {tcp} TCP, {bytes} payload bytes");
}
