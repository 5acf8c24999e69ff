use super::*;
use std::io::Write as _;

fn pcap(le: bool, nanos: bool, linktype: u32, pkts: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let w32 = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
    let w16 = |v: u16| if le { v.to_le_bytes() } else { v.to_be_bytes() };
    let mut f = Vec::new();
    f.extend_from_slice(&w32(if nanos { 0xa1b23c4d } else { 0xa1b2c3d4 }));
    f.extend_from_slice(&w16(2));
    f.extend_from_slice(&w16(4));
    f.extend_from_slice(&w32(0));
    f.extend_from_slice(&w32(0));
    f.extend_from_slice(&w32(65535));
    f.extend_from_slice(&w32(linktype));
    for (s, frac, data) in pkts {
        f.extend_from_slice(&w32(*s));
        f.extend_from_slice(&w32(*frac));
        f.extend_from_slice(&w32(data.len() as u32));
        f.extend_from_slice(&w32(data.len() as u32 + 10));
        f.extend_from_slice(data);
    }
    f
}

type ReadAll = (Vec<(i64, u32, Vec<u8>, u32)>, Option<String>);

fn read_all(bytes: Vec<u8>) -> ReadAll {
    let mut out = Vec::new();
    let mut r = match CaptureReader::from_reader(Box::new(io::Cursor::new(bytes))) {
        Ok(r) => r,
        Err(e) => return (out, Some(e.to_string())),
    };
    loop {
        match r.next_packet() {
            Ok(Some(p)) => out.push((p.ts.0, p.linktype, p.data.to_vec(), p.orig_len)),
            Ok(None) => return (out, None),
            Err(e) => {
                // The reader stays finished after an error.
                assert!(r.next_packet().unwrap().is_none());
                return (out, Some(e.to_string()));
            }
        }
    }
}

#[test]
fn pcap_all_magics() {
    for le in [true, false] {
        for nanos in [true, false] {
            let f = pcap(le, nanos, 1, &[(10, 5, b"abc"), (11, 999, b"defg")]);
            let (p, err) = read_all(f);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(p.len(), 2);
            let unit = if nanos { 1 } else { 1000 };
            assert_eq!(p[0].0, 10_000_000_000 + 5 * unit);
            assert_eq!(p[1].0, 11_000_000_000 + 999 * unit);
            assert_eq!(p[1].2, b"defg");
            assert_eq!(p[1].3, 14);
            assert_eq!(p[0].1, 1);
        }
    }
}

#[derive(Clone, Copy)]
struct Ng {
    le: bool,
}

impl Ng {
    fn w32(&self, v: u32) -> [u8; 4] {
        if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    }
    fn w16(&self, v: u16) -> [u8; 2] {
        if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    }
    fn block(&self, t: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = 12 + body.len() as u32;
        let mut b = self.w32(t).to_vec();
        b.extend_from_slice(&self.w32(len));
        b.extend_from_slice(&body);
        b.extend_from_slice(&self.w32(len));
        b
    }
    fn shb(&self) -> Vec<u8> {
        let mut body = self.w32(0x1a2b3c4d).to_vec();
        body.extend_from_slice(&self.w16(1));
        body.extend_from_slice(&self.w16(0));
        body.extend_from_slice(&(-1i64).to_le_bytes());
        self.block(0x0a0d0d0a, &body)
    }
    fn idb(&self, linktype: u16, tsresol: Option<u8>, snaplen: u32) -> Vec<u8> {
        let mut body = self.w16(linktype).to_vec();
        body.extend_from_slice(&self.w16(0));
        body.extend_from_slice(&self.w32(snaplen));
        if let Some(r) = tsresol {
            body.extend_from_slice(&self.w16(9));
            body.extend_from_slice(&self.w16(1));
            body.extend_from_slice(&[r, 0, 0, 0]);
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        self.block(1, &body)
    }
    fn epb(&self, iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let mut body = self.w32(iface).to_vec();
        body.extend_from_slice(&self.w32((ts >> 32) as u32));
        body.extend_from_slice(&self.w32(ts as u32));
        body.extend_from_slice(&self.w32(data.len() as u32));
        body.extend_from_slice(&self.w32(data.len() as u32));
        body.extend_from_slice(data);
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        // An option (opt_comment) after the data must be ignored.
        body.extend_from_slice(&self.w16(1));
        body.extend_from_slice(&self.w16(2));
        body.extend_from_slice(b"hi\0\0");
        self.block(6, &body)
    }
    fn spb(&self, data: &[u8]) -> Vec<u8> {
        let mut body = self.w32(data.len() as u32).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body)
    }
}

fn two_section_pcapng() -> Vec<u8> {
    let a = Ng { le: true };
    let b = Ng { le: false };
    let mut f = a.shb();
    f.extend(a.idb(1, None, 0)); // Ethernet, microseconds
    f.extend(a.idb(113, Some(9), 0)); // SLL, nanoseconds
    f.extend(a.epb(0, 1_000_000, b"eth"));
    f.extend(a.block(5, b"stats")); // interface statistics: skipped
    f.extend(a.epb(1, 2_000_000_000, b"sll!"));
    f.extend(b.shb());
    f.extend(b.idb(101, Some(0x80 | 10), 4)); // raw IP, 2^-10 s units, snaplen 4
    f.extend(b.epb(0, 2048, b"raw"));
    f.extend(b.spb(b"simple-packet"));
    f
}

#[test]
fn pcapng_sections_interfaces_spb() {
    let (p, err) = read_all(two_section_pcapng());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(p.len(), 4);
    assert_eq!(
        (p[0].0, p[0].1, p[0].2.as_slice()),
        (1_000_000_000, 1, &b"eth"[..])
    );
    assert_eq!(
        (p[1].0, p[1].1, p[1].2.as_slice()),
        (2_000_000_000, 113, &b"sll!"[..])
    );
    assert_eq!((p[2].0, p[2].1), (2_000_000_000, 101));
    // SPB: captured length limited by the interface's snap length, timestamp reused.
    assert_eq!(p[3].2, b"simp");
    assert_eq!(p[3].3, 13);
    assert_eq!(p[3].0, 2_000_000_000);
}

#[test]
fn gzip_and_zstd_are_detected() {
    for plain in [
        pcap(true, false, 1, &[(1, 2, b"xyz")]),
        two_section_pcapng(),
    ] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zs = ruzstd::encoding::compress_to_vec(
            &plain[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let (want, e0) = read_all(plain);
        assert!(e0.is_none());
        for comp in [gz, zs] {
            let (got, err) = read_all(comp);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(got, want);
        }
    }
}

#[test]
fn truncation_at_every_byte_keeps_earlier_packets_and_names_the_offset() {
    for f in [
        pcap(true, true, 1, &[(1, 2, b"first"), (3, 4, b"second")]),
        two_section_pcapng(),
    ] {
        let (all, _) = read_all(f.clone());
        for cut in 1..f.len() {
            let (p, err) = read_all(f[..cut].to_vec());
            assert!(p.len() <= all.len());
            assert_eq!(p, all[..p.len()].to_vec(), "cut at {cut}");
            // A cut on a record boundary is a shorter valid capture; any
            // other cut must be reported with its offset.
            if let Some(e) = err {
                assert!(e.contains("at byte"), "{e}");
            } else if cut == f.len() - 1 {
                panic!("no error for a cut inside the last record");
            }
        }
    }
}

#[test]
fn huge_lengths_are_errors_not_allocations() {
    let mut f = pcap(true, false, 1, &[]);
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&u32::MAX.to_le_bytes()); // 4 GB caplen
    f.extend_from_slice(&u32::MAX.to_le_bytes());
    let (p, err) = read_all(f);
    assert!(p.is_empty());
    let e = err.unwrap();
    assert!(e.contains("at byte 24") && e.contains("4294967295"), "{e}");

    let a = Ng { le: true };
    let mut g = a.shb();
    g.extend_from_slice(&6u32.to_le_bytes());
    g.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    g.extend_from_slice(&[0u8; 8]);
    let (_, err) = read_all(g);
    assert!(err.unwrap().contains("limit"));
}

#[test]
fn garbage_is_a_clear_error() {
    let (_, err) = read_all(b"hello world, not a capture".to_vec());
    assert!(err.unwrap().contains("not a pcap or pcapng"));
    let (_, err) = read_all(Vec::new());
    assert_eq!(
        err.unwrap(),
        "the input is empty: not a pcap or pcapng capture"
    );
}

/// A reader that hands out one byte at a time, like a slow pipe.
#[test]
fn trickling_pipe_yields_the_same_packets() {
    let f = two_section_pcapng();
    let (want, _) = read_all(f.clone());
    let mut r = CaptureReader::from_reader(Box::new(Chunky(io::Cursor::new(f), 1))).unwrap();
    let mut got = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        got.push((p.ts.0, p.linktype, p.data.to_vec(), p.orig_len));
    }
    assert_eq!(got, want);
}

/// Hands out its bytes at most `.1` at a time, like a pipe written in
/// small pieces: records then often lie only partly in the reader's buffer.
struct Chunky(io::Cursor<Vec<u8>>, usize);

impl Read for Chunky {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.1);
        self.0.read(&mut buf[..n])
    }
}

/// Reads as `rstscope analyze` does: runs of packets through
/// [`CaptureReader::for_each_buffered`] (here of 1 to 4 packets, sometimes
/// cut short by the callback), each other one through `next_packet`.
fn read_runs(r: Result<CaptureReader, crate::Error>) -> ReadAll {
    let mut out = Vec::new();
    let mut r = match r {
        Ok(r) => r,
        Err(e) => return (out, Some(e.to_string())),
    };
    for round in 0usize.. {
        let n = r.for_each_buffered(round % 4 + 1, |p| {
            out.push((p.ts.0, p.linktype, p.data.to_vec(), p.orig_len));
            out.len() % 7 != 0
        });
        if n > 0 {
            continue;
        }
        match r.next_packet() {
            Ok(Some(p)) => out.push((p.ts.0, p.linktype, p.data.to_vec(), p.orig_len)),
            Ok(None) => return (out, None),
            Err(e) => {
                // Finished for good after an error, on either path.
                assert_eq!(r.for_each_buffered(9, |_| true), 0);
                return (out, Some(e.to_string()));
            }
        }
    }
    unreachable!()
}

/// A file path in the temporary directory, removed when dropped (also when
/// the test fails).
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let file = format!("rstscope-capture-{name}-{}", std::process::id());
        TempFile(std::env::temp_dir().join(file))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The fast path (records lying whole in the buffer) and the general one
/// give the same packets and the same errors, with their offsets: for
/// files, and for input arriving in pieces of any size, whole and cut at
/// every byte. A reader fed one byte at a time never holds a record whole
/// before the general path asks for it, so it is the reference.
#[test]
fn fast_and_general_paths_read_alike() {
    let tmp = TempFile::new("file");
    let path = tmp.0.clone();
    for f in [
        pcap(true, true, 1, &[(1, 2, b"first"), (3, 4, b"second")]),
        pcap(false, false, 101, &[(5, 6, b"big-endian")]),
        two_section_pcapng(),
    ] {
        for cut in 0..=f.len() {
            let bytes = f[..cut].to_vec();
            let general = {
                let mut out = Vec::new();
                let err = match CaptureReader::from_reader(Box::new(Chunky(
                    io::Cursor::new(bytes.clone()),
                    1,
                ))) {
                    Err(e) => Some(e.to_string()),
                    Ok(mut r) => loop {
                        match r.next_packet() {
                            Ok(Some(p)) => {
                                out.push((p.ts.0, p.linktype, p.data.to_vec(), p.orig_len))
                            }
                            Ok(None) => break None,
                            Err(e) => break Some(e.to_string()),
                        }
                    },
                };
                (out, err)
            };
            assert_eq!(read_all(bytes.clone()), general, "whole, cut at {cut}");
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                read_runs(CaptureReader::open(&path)),
                general,
                "file, cut at {cut}"
            );
            for piece in [2, 3, 5, 16, 29] {
                let r = CaptureReader::from_reader(Box::new(Chunky(
                    io::Cursor::new(bytes.clone()),
                    piece,
                )));
                assert_eq!(read_runs(r), general, "pieces of {piece}, cut at {cut}");
            }
        }
        std::fs::write(&path, &f).unwrap();
        let mut r = CaptureReader::open(&path).unwrap();
        while r.next_packet().unwrap().is_some() {}
        assert_eq!(
            r.bytes_consumed(),
            f.len() as u64,
            "progress reaches the end"
        );
    }
}

/// A file many buffers long: every packet, with its offset, comes out the
/// same read in runs of up to 65,536 packets as the analysis reads it,
/// packet by packet, and from a pipe delivering odd-sized pieces (records
/// across every buffer boundary), up to the damage at the end.
#[test]
fn big_files_read_alike_in_runs_and_in_pieces() {
    let tmp = TempFile::new("big");
    let path = tmp.0.clone();
    for le in [true, false] {
        let w32 = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let mut f = pcap(le, false, 1, &[]);
        let mut i = 0u32;
        while f.len() < 12 << 20 {
            let len = 60 + (i.wrapping_mul(2_654_435_761) % 1441) as usize;
            f.extend_from_slice(&w32(1_700_000_000 + i / 1000));
            f.extend_from_slice(&w32((i % 1000) * 997));
            f.extend_from_slice(&w32(len as u32));
            f.extend_from_slice(&w32(len as u32));
            f.extend((0..len).map(|k| (k as u32 ^ i) as u8));
            i += 1;
        }
        // Damage at the end: a record header claiming more than is left.
        f.extend_from_slice(&w32(1));
        f.extend_from_slice(&w32(2));
        f.extend_from_slice(&w32(100));
        f.extend_from_slice(&w32(100));
        f.extend_from_slice(b"short");
        std::fs::write(&path, &f).unwrap();

        // Runs of up to `batch` packets through `for_each_buffered` (0:
        // none), the rest through `next_packet`.
        let digest = |r: &mut CaptureReader, batch: usize| {
            let (mut n, mut h) = (0u64, 0u64);
            let mut add = |p: crate::Packet| {
                n += 1;
                for v in [
                    p.ts.0 as u64,
                    p.orig_len as u64,
                    p.offset,
                    p.data.len() as u64,
                ]
                .into_iter()
                .chain(p.data.iter().map(|&b| b as u64))
                {
                    h = (h ^ v).wrapping_mul(0x100_0000_01b3);
                }
            };
            let err = loop {
                if r.for_each_buffered(batch, |p| {
                    add(p);
                    true
                }) > 0
                {
                    continue;
                }
                match r.next_packet() {
                    Ok(Some(p)) => add(p),
                    Ok(None) => break None,
                    Err(e) => break Some(e.to_string()),
                }
            };
            (n, h, err)
        };
        let got = digest(&mut CaptureReader::open(&path).unwrap(), 65536);
        assert_eq!(
            digest(&mut CaptureReader::open(&path).unwrap(), 0),
            got,
            "packet by packet, le {le}"
        );
        let pipe = Chunky(io::Cursor::new(f.clone()), 4093);
        let mut piecewise = CaptureReader::from_reader(Box::new(pipe)).unwrap();
        assert_eq!(digest(&mut piecewise, 65536), got, "in pieces, le {le}");
        assert_eq!(got.0, i as u64);
        let at = format!("at byte {}", f.len() - 21);
        let err = got.2.as_deref().unwrap_or("");
        assert!(err.contains("truncated") && err.contains(&at), "{got:?}");
    }
}

/// A classic pcap of `n` records of varied sizes (one of 200 KiB, larger
/// than a test window), and the packets in it.
fn varied_pcap(n: u32) -> (Vec<u8>, Vec<Vec<u8>>) {
    let data: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let len = if i == n / 3 {
                200 << 10
            } else {
                1 + (i.wrapping_mul(2_654_435_761) % 1500) as usize
            };
            (0..len)
                .map(|k| (k as u32 ^ i.wrapping_mul(31)) as u8)
                .collect()
        })
        .collect();
    let recs: Vec<(u32, u32, &[u8])> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (1_700_000_000 + i as u32, i as u32, &d[..]))
        .collect();
    (pcap(true, false, 1, &recs), data)
}

/// A mapped file is read window after window (64 KiB windows in the unit
/// tests), records across their ends and a record larger than a window
/// included: the same packets, offsets and progress as from a pipe.
#[cfg(unix)]
#[test]
fn mapped_files_read_as_streams() {
    let tmp = TempFile::new("mapped");
    let (f, data) = varied_pcap(600);
    assert!(f.len() > 10 * map::WINDOW);
    std::fs::write(&tmp.0, &f).unwrap();
    let mut r = CaptureReader::open(&tmp.0).unwrap();
    assert!(r.map.is_some(), "a regular file is mapped");
    let piecewise = CaptureReader::from_reader(Box::new(Chunky(io::Cursor::new(f.clone()), 777)));
    assert_eq!(read_runs(CaptureReader::open(&tmp.0)), read_runs(piecewise));
    let mut n = 0;
    while let Some(p) = r.next_packet().unwrap() {
        assert_eq!(p.data, &data[n][..], "packet {n}");
        n += 1;
    }
    assert_eq!(n, data.len());
    assert_eq!(r.bytes_consumed(), f.len() as u64);
    drop(r);
    // Readers give their window (and its descriptor) back when dropped:
    // many more readers than there are windows, one after the other, are
    // all mapped, and no descriptor is left open.
    let fds = || std::fs::read_dir("/proc/self/fd").map(|d| d.count()).ok();
    let before = fds();
    for k in 0..300 {
        let mut r = CaptureReader::open(&tmp.0).unwrap();
        assert!(r.map.is_some(), "reader {k} is mapped");
        assert!(r.next_packet().unwrap().is_some());
    }
    // (Other tests open files meanwhile: a leak would be 300.)
    if let (Some(b), Some(a)) = (before, fds()) {
        assert!(a < b + 50, "descriptors left open: {b} before, {a} after");
    }
}

/// A file that grows while it is read (a running `tcpdump -w`) is read to
/// the end it has when the reader gets there.
#[cfg(unix)]
#[test]
fn mapped_files_are_read_as_they_grow() {
    let tmp = TempFile::new("growing");
    let (f, data) = varied_pcap(300);
    let half = f.len() / 2;
    std::fs::write(&tmp.0, &f[..half]).unwrap();
    let mut r = CaptureReader::open(&tmp.0).unwrap();
    assert!(r.map.is_some());
    let first = r.next_packet().unwrap().unwrap().data.to_vec();
    assert_eq!(first, data[0]);
    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .open(&tmp.0)
        .unwrap();
    w.write_all(&f[half..]).unwrap();
    drop(w);
    let mut n = 1;
    while let Some(p) = r.next_packet().unwrap() {
        assert_eq!(p.data, &data[n][..], "packet {n}");
        n += 1;
    }
    assert_eq!(n, data.len());
}

/// A mapped file that another process truncates under the reader does not
/// kill it (`SIGBUS`): the reader returns the packets that were there,
/// then an error naming the offset and the new size. Truncated inside the
/// mapped window (the fault is caught) and beyond it (seen when the
/// reader maps on).
#[cfg(unix)]
#[test]
fn mapped_files_that_shrink_are_an_error_not_a_crash() {
    let (f, data) = varied_pcap(600);
    // Record ends, to know which packets lie wholly before a cut.
    let mut ends = Vec::new();
    let mut at = 24;
    for d in &data {
        at += 16 + d.len();
        ends.push(at);
    }
    for (name, read_first, cut) in [
        ("inside", 40, 100_000),
        ("page", 40, 98_304),
        ("beyond", 10, 300_000),
        ("start", 0, 30),
    ] {
        let tmp = TempFile::new(&format!("shrink-{name}"));
        std::fs::write(&tmp.0, &f).unwrap();
        let mut r = CaptureReader::open(&tmp.0).unwrap();
        let mut got = Vec::new();
        for _ in 0..read_first {
            got.push(r.next_packet().unwrap().unwrap().data.to_vec());
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&tmp.0)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        let err = loop {
            let n = r.for_each_buffered(1000, |p| {
                got.push(p.data.to_vec());
                true
            });
            if n > 0 {
                continue;
            }
            match r.next_packet() {
                Ok(Some(p)) => got.push(p.data.to_vec()),
                Ok(None) => panic!("{name}: no error after the file shrank"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(
            err.contains("shrank to") || err.contains("truncated"),
            "{name}: {err}"
        );
        // Every packet that ended before the cut is intact. Past it, the
        // kernel fills the rest of the file's last page with zeros, and a
        // packet ending there may be returned with zeros at its end; none
        // lying further on was returned.
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        let in_last_page = ends.iter().filter(|&&e| e <= (cut + 4095) & !4095).count();
        assert!(
            got.len() >= whole.max(read_first),
            "{name}: {} packets",
            got.len()
        );
        assert!(
            got.len() <= in_last_page.max(read_first),
            "{name}: {} packets, {whole} before the cut",
            got.len()
        );
        for (k, p) in got.iter().enumerate().take(whole.max(read_first)) {
            assert_eq!(p, &data[k], "{name}: packet {k}");
        }
        assert_eq!(r.next_packet().unwrap().map(|p| p.data.len()), None);
    }
}
