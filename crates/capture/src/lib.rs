//! Capture-file adapter: classic pcap, pcapng, gzip/zstd, stdin.
//!
//! [`CaptureReader`] streams packets out of any [`Read`] (a pipe, a
//! decompressor) without knowing its size in advance: packets are borrowed
//! from one buffer of [`READ_CHUNK`] bytes that is refilled in place (no
//! per-packet allocation, no per-packet system call), so reading runs near
//! the speed of `cat`. The reader only ever waits for the bytes of the
//! record it is decoding, so a live `tcpdump -w - | rstscope analyze -`
//! sees each packet as soon as it is complete. A regular file is read
//! through a window mapped into memory instead (the `map` module), which
//! spares the copy into the buffer; the packets, errors and offsets are
//! the same either way.
//!
//! Untrusted lengths never decide an allocation on their own: a record may
//! claim at most [`MAX_PACKET`] bytes (pcap) or [`MAX_BLOCK`] bytes (pcapng
//! block), and the buffer only grows as real bytes arrive. Damage stops the
//! reader with an [`Error`] naming the byte offset; every packet before it
//! has already been returned.
//!
//! Hand-written rather than built on `pcap-parser` because this loop is the
//! hottest of `rstscope analyze` and needs zero-copy packets borrowed from a
//! reusable buffer together with streaming refills from pipes.

use rstscope_core::Timestamp;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest packet record accepted (Wireshark's limit for ordinary link types).
pub const MAX_PACKET: usize = 262_144;
/// Largest pcapng block accepted.
pub const MAX_BLOCK: usize = 16 * 1024 * 1024;
/// Bytes asked of the input per read (pipes, decompressors, and files that
/// cannot be mapped).
///
/// Small enough that the copy `read(2)` makes stays in the reading core's
/// second-level cache until the packets in it are decoded, big enough that
/// the system calls do not count. Measured on the benchmark capture (that
/// of `scripts/bench-analyze`; 2 cores, file in the page cache, `rstscope
/// analyze` under `perf stat` in interleaved runs), on an AMD host on
/// 2026-11-21, against the memory-mapped reading of the time (a pager
/// thread, no read-ahead of the next window): 256 KiB chunks 12% less
/// time (0.218 s against 0.249 s, 11 interleaved runs) when the page cache
/// holds the file in large folios, as right after it was written or read
/// back; with 4 KiB folios once 2–4% more (0.291–0.297 s against 0.285 s),
/// once 8% less (0.221 s against 0.240 s, 15 runs, with 8 queued batches
/// in the analysis). 1 MiB chunks, which overflow that cache with the
/// trackers' data, gained only 5%; 64–512 KiB all did as well as 256 KiB.
/// (On the Intel host of 2026-12-08 the mapped window of today's `map`
/// module is 7–9% faster than these chunks; see its documentation.)
pub const READ_CHUNK: usize = 256 << 10;

/// One captured packet, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// Link type (`LINKTYPE_*`) of the interface it was captured on.
    pub linktype: u32,
    /// Captured bytes.
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
    /// Byte offset of its record in the (decompressed) stream.
    pub offset: u64,
}

/// Container format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap.
    Pcap {
        /// Nanosecond timestamps (magic a1b23c4d).
        nanos: bool,
        /// Written big-endian.
        big_endian: bool,
    },
    /// pcapng.
    Pcapng,
}

/// Compression wrapped around the capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// None.
    None,
    /// gzip.
    Gzip,
    /// Zstandard.
    Zstd,
}

/// What went wrong, and where.
#[derive(Debug)]
pub enum Error {
    /// The file could not be opened.
    Open {
        /// Why.
        source: io::Error,
    },
    /// The underlying read failed.
    Io {
        /// Byte offset (decompressed stream) where it happened.
        offset: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// The stream ended in the middle of a header or record.
    Truncated {
        /// Offset of the incomplete record.
        offset: u64,
        /// What was being read.
        what: &'static str,
        /// Bytes it needed.
        needed: u64,
        /// Bytes that remained.
        available: u64,
    },
    /// A header or record is inconsistent.
    Corrupt {
        /// Offset of the bad record.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The first bytes are not a known capture format.
    UnknownFormat {
        /// The first four bytes.
        magic: [u8; 4],
    },
    /// The input holds no bytes at all (an empty file, or a pipe whose
    /// writer produced nothing).
    Empty,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Open { source } => write!(f, "{source}"),
            Error::Io { offset, source } => write!(f, "read error at byte {offset}: {source}"),
            Error::Truncated {
                offset,
                what,
                needed,
                available,
            } => write!(
                f,
                "truncated {what} at byte {offset}: needs {needed} bytes, only {available} remain"
            ),
            Error::Corrupt { offset, what } => {
                write!(f, "corrupt capture at byte {offset}: {what}")
            }
            Error::UnknownFormat { magic } => write!(
                f,
                "not a pcap or pcapng capture (first bytes {:02x} {:02x} {:02x} {:02x})",
                magic[0], magic[1], magic[2], magic[3]
            ),
            Error::Empty => write!(f, "the input is empty: not a pcap or pcapng capture"),
        }
    }
}

/// The message of an [`Error`] already ends with the I/O error's own (so
/// that the partial-result warning, which keeps only the message, names
/// it), so the I/O error is not also given as the source: printed with its
/// chain (`{:#}` of anyhow), it would appear twice.
impl std::error::Error for Error {}

/// Reading statistics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Packets returned.
    pub packets: u64,
    /// pcapng blocks skipped (statistics, name resolution, unknown types...).
    pub skipped_blocks: u64,
    /// pcapng sections seen.
    pub sections: u64,
    /// Packets whose captured length exceeded the interface snap length.
    pub oversized: u64,
}

#[derive(Clone, Copy, Debug)]
struct Iface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp unit: (is power of two, exponent).
    resol: (bool, u8),
    offset_s: i64,
    /// Nanoseconds per timestamp unit when the unit is a whole decimal
    /// fraction of a second and there is no offset (the usual case, which
    /// [`CaptureReader::next_whole_epb`] converts with one multiplication
    /// instead of a power and a multiplication per packet); 0 otherwise.
    unit_ns: i64,
}

impl Iface {
    /// Sets [`Iface::unit_ns`] from the resolution and the offset.
    fn with_unit(mut self) -> Self {
        self.unit_ns = match self.resol {
            (false, e) if e <= 9 && self.offset_s == 0 => 10i64.pow(9 - e as u32),
            _ => 0,
        };
        self
    }
}

enum State {
    Pcap {
        le: bool,
        nanos: bool,
        linktype: u32,
    },
    Pcapng {
        le: bool,
        ifaces: Vec<Iface>,
        last_ts: Timestamp,
    },
}

struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Streams packets out of a capture.
pub struct CaptureReader {
    src: Box<dyn Read + Send>,
    /// The bytes packets are borrowed from, refilled in place (unless the
    /// file is mapped, see `map`).
    buf: Vec<u8>,
    /// A regular file is read through a mapped window instead: then the
    /// bytes are the window's, and `base`, `pos` and `end` refer to it.
    #[cfg(unix)]
    map: Option<map::Window>,
    /// How far into the window the reader has asked for the file's lines.
    #[cfg(unix)]
    prefetched: usize,
    /// Start of unread data in `buf`.
    pos: usize,
    /// End of valid data in `buf`.
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    failed: bool,
    state: State,
    format: Format,
    compression: Compression,
    raw_count: Arc<AtomicU64>,
    file_size: Option<u64>,
    stats: Stats,
    /// The file descriptor the input comes from, when known: asked whether
    /// it has more right now (see [`CaptureReader::next_record_buffered`]).
    #[cfg(unix)]
    input_fd: Option<i32>,
}

impl CaptureReader {
    /// Opens a file, or stdin for `-`. Compression is detected from the content.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if path.as_os_str() == "-" {
            let mut r = Self::from_reader(Box::new(io::stdin()))?;
            #[cfg(unix)]
            {
                r.input_fd = Some(0);
            }
            return Ok(r);
        }
        let f = File::open(path).map_err(|e| Error::Open { source: e })?;
        let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        #[cfg(unix)]
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        #[cfg(target_os = "linux")]
        if size.is_some() {
            // Read from start to end: let the kernel read ahead further
            // when the file is not in the page cache. Only a hint.
            // SAFETY: a valid descriptor, owned by `f`.
            unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
        }
        #[cfg(unix)]
        let (f, fd) = match size {
            Some(len) => match map::Window::open(f, len) {
                Ok(w) => {
                    let head = w.bytes();
                    if !head.starts_with(&[0x1f, 0x8b])
                        && !head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
                    {
                        return Self::mapped(w, len);
                    }
                    // Compressed: decompressed as a stream.
                    let f = w.into_file(0).map_err(|e| Error::Open { source: e })?;
                    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
                    (f, fd)
                }
                Err(f) => (f, fd),
            },
            None => (f, fd),
        };
        let mut r = Self::from_reader(Box::new(f))?;
        #[cfg(unix)]
        {
            // Valid as long as the reader (which owns the file) lives.
            r.input_fd = Some(fd);
        }
        r.file_size = size;
        Ok(r)
    }

    /// A reader of the file mapped in `w` (see [`map`]).
    #[cfg(unix)]
    fn mapped(w: map::Window, size: u64) -> Result<Self, Error> {
        let count = Arc::new(AtomicU64::new(0));
        let mut r = CaptureReader::bare(Box::new(io::empty()), count);
        r.end = w.bytes().len();
        r.raw_count.store(r.end as u64, Ordering::Relaxed);
        r.map = Some(w);
        r.file_size = Some(size);
        r.start()?;
        Ok(r)
    }

    /// Reads from any byte stream. Compression is detected from the content.
    pub fn from_reader(r: Box<dyn Read + Send>) -> Result<Self, Error> {
        let count = Arc::new(AtomicU64::new(0));
        let mut raw = CaptureReader::bare(
            Box::new(Counting {
                inner: r,
                count: count.clone(),
            }),
            count.clone(),
        );
        raw.fill(4)?;
        let head = raw.avail();
        let (compression, src): (Compression, Box<dyn Read + Send>) = if head
            .starts_with(&[0x1f, 0x8b])
        {
            (
                Compression::Gzip,
                Box::new(flate2::read::MultiGzDecoder::new(raw.into_stream())),
            )
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let dec = ruzstd::decoding::StreamingDecoder::new(raw.into_stream()).map_err(|e| {
                Error::Corrupt {
                    offset: 0,
                    what: format!("zstd: {e}"),
                }
            })?;
            (Compression::Zstd, Box::new(dec))
        } else {
            (Compression::None, raw.into_stream())
        };
        let mut r = CaptureReader::bare(src, count);
        r.compression = compression;
        r.start()?;
        Ok(r)
    }

    fn bare(src: Box<dyn Read + Send>, raw_count: Arc<AtomicU64>) -> Self {
        CaptureReader {
            src,
            buf: Vec::new(),
            #[cfg(unix)]
            map: None,
            #[cfg(unix)]
            prefetched: 0,
            pos: 0,
            end: 0,
            base: 0,
            eof: false,
            failed: false,
            state: State::Pcap {
                le: true,
                nanos: false,
                linktype: 0,
            },
            format: Format::Pcapng,
            compression: Compression::None,
            raw_count,
            file_size: None,
            stats: Stats::default(),
            #[cfg(unix)]
            input_fd: None,
        }
    }

    /// The bytes already buffered followed by the rest of the source.
    fn into_stream(self) -> Box<dyn Read + Send> {
        let head = self.avail().to_vec();
        Box::new(io::Cursor::new(head).chain(self.src))
    }

    /// Container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Compression detected.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Bytes consumed from the underlying file or pipe (compressed bytes
    /// for compressed input), for progress reporting.
    pub fn bytes_consumed(&self) -> u64 {
        self.raw_count.load(Ordering::Relaxed)
    }

    /// Size of the underlying file, when it is a regular file.
    pub fn file_size(&self) -> Option<u64> {
        self.file_size
    }

    /// Whether the next record (or the end of the input) is already at
    /// hand, so that [`CaptureReader::next_packet`] will not wait for input.
    /// False while a live pipe has delivered everything written so far:
    /// the moment for a consumer to pass on what it has batched.
    #[inline]
    pub fn next_record_buffered(&self) -> bool {
        if self.eof || self.failed {
            return true;
        }
        self.next_record_buffered_slow()
    }

    #[inline(never)]
    fn next_record_buffered_slow(&self) -> bool {
        if self.file_size.is_some() {
            // A regular file never makes a read wait for its writer.
            return true;
        }
        let b = self.avail();
        let whole = match self.state {
            State::Pcap { le, linktype, .. } => {
                let hdr = if linktype & 0x8000_0000 != 0 { 24 } else { 16 };
                b.len() >= hdr && b.len() >= hdr + rd32(b, 8, le) as usize
            }
            State::Pcapng { le, .. } => {
                // A section header may switch the byte order: any length
                // read either way is still only a hint here.
                b.len() >= 8 && b.len() >= rd32(b, 4, le) as usize
            }
        };
        whole || self.input_ready()
    }

    /// Whether the input has bytes waiting (a read would not block).
    /// Unknown inputs count as not ready.
    fn input_ready(&self) -> bool {
        #[cfg(unix)]
        if let Some(fd) = self.input_fd {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout; `fd` belongs to the
            // input this reader owns (or to stdin).
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            return n > 0 && p.revents & libc::POLLIN != 0;
        }
        false
    }

    /// Reading statistics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The bytes at hand: the buffer, or the mapped window.
    #[inline(always)]
    fn data(&self) -> &[u8] {
        #[cfg(unix)]
        if let Some(w) = &self.map {
            return w.bytes();
        }
        &self.buf
    }

    /// Whether the record ending at `end` (in [`CaptureReader::data`])
    /// is the file's own: always, unless a mapped file shrank under it
    /// (see [`map::Window::intact`]).
    #[inline(always)]
    fn intact(&self, end: usize) -> bool {
        #[cfg(unix)]
        if let Some(w) = &self.map {
            return w.intact(end);
        }
        let _ = end;
        true
    }

    /// Where a mapped file's first lost page was, if one was.
    fn lost_at(&self) -> Option<u64> {
        #[cfg(unix)]
        if let Some(w) = &self.map {
            return w.lost_at();
        }
        None
    }

    /// The size of a mapped file now.
    fn size_now(&self) -> Option<u64> {
        #[cfg(unix)]
        if let Some(w) = &self.map {
            return w.size_now();
        }
        None
    }

    fn avail(&self) -> &[u8] {
        &self.data()[self.pos..self.end]
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Makes at least `n` unread bytes available, unless the stream ends first.
    /// Returns the number available (may be less than `n` only at EOF).
    #[inline]
    fn fill(&mut self, n: usize) -> Result<usize, Error> {
        if self.end - self.pos >= n {
            return Ok(self.end - self.pos);
        }
        self.refill(n)
    }

    #[cold]
    fn refill(&mut self, n: usize) -> Result<usize, Error> {
        #[cfg(unix)]
        if let Some(w) = &mut self.map {
            let from = self.base + self.pos as u64;
            if w.lost() {
                return Err(shrank(from, w.size_now(), w.lost_at()));
            }
            match w.advance(from, n) {
                Ok(true) => {
                    self.base = w.base();
                    self.pos = (from - self.base) as usize;
                    self.end = w.bytes().len();
                    self.prefetched = self.pos;
                    self.raw_count
                        .store(self.base + self.end as u64, Ordering::Relaxed);
                    return Ok(self.end - self.pos);
                }
                Ok(false) => {
                    // The file ends first (as it stands now): read on as a
                    // stream from the end of the window.
                    let rest = self.avail().to_vec();
                    let at = self.base + self.end as u64;
                    if let Some(w) = self.map.take() {
                        let file = w.into_file(at).map_err(|e| Error::Io {
                            offset: at,
                            source: e,
                        })?;
                        self.src = Box::new(Counting {
                            inner: file,
                            count: self.raw_count.clone(),
                        });
                    }
                    self.raw_count.store(at, Ordering::Relaxed);
                    self.buf = rest;
                    self.base = from;
                    self.pos = 0;
                    self.end = self.buf.len();
                }
                Err(e) => {
                    return Err(Error::Io {
                        offset: from,
                        source: e,
                    })
                }
            }
        }
        let buf = &mut self.buf;
        if self.pos > 0 {
            buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        // Grow only towards what is needed now (n is bounded by callers).
        let want = n.max(READ_CHUNK);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        while self.end < n && !self.eof {
            match self.src.read(&mut buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Io {
                        offset: self.base + self.end as u64,
                        source: e,
                    })
                }
            }
        }
        Ok(self.end - self.pos)
    }

    fn need(&mut self, n: usize, what: &'static str) -> Result<(), Error> {
        let have = self.fill(n)?;
        if have < n {
            return Err(Error::Truncated {
                offset: self.offset(),
                what,
                needed: n as u64,
                available: have as u64,
            });
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), Error> {
        let have = self.fill(4)?;
        if have == 0 {
            self.failed = true;
            return Err(Error::Empty);
        }
        if have < 4 {
            self.failed = true;
            return Err(Error::Truncated {
                offset: 0,
                what: "capture file header",
                needed: 4,
                available: have as u64,
            });
        }
        let mut magic = [0u8; 4];
        magic[..have.min(4)].copy_from_slice(&self.avail()[..have.min(4)]);
        let m_le = u32::from_le_bytes(magic);
        match m_le {
            0xa1b2c3d4 | 0xa1b23c4d | 0xa1b2cd34 | 0xd4c3b2a1 | 0x4d3cb2a1 | 0x34cdb2a1 => {
                self.need(24, "pcap file header")?;
                let le = matches!(m_le, 0xa1b2c3d4 | 0xa1b23c4d | 0xa1b2cd34);
                let h = &self.data()[self.pos..self.pos + 24];
                let nanos = matches!(m_le, 0xa1b23c4d | 0x4d3cb2a1);
                let lt = rd32(h, 20, le);
                // The upper bits of the link-type field carry FCS information.
                let linktype = lt & 0x0fff_ffff;
                let modified = matches!(m_le, 0xa1b2cd34 | 0x34cdb2a1);
                self.pos += 24;
                self.state = State::Pcap {
                    le,
                    nanos,
                    linktype,
                };
                self.format = Format::Pcap {
                    nanos,
                    big_endian: !le,
                };
                if modified {
                    // Modified pcap (Alexey Kuznetsov's) has 8 extra bytes per record.
                    self.state = State::Pcap {
                        le,
                        nanos,
                        linktype: linktype | 0x8000_0000,
                    };
                }
                Ok(())
            }
            0x0a0d0d0a => {
                self.format = Format::Pcapng;
                self.state = State::Pcapng {
                    le: true,
                    ifaces: Vec::new(),
                    last_ts: Timestamp(0),
                };
                Ok(())
            }
            _ => {
                self.failed = true;
                Err(Error::UnknownFormat { magic })
            }
        }
    }

    /// The next packet, `Ok(None)` at the end of the capture. After an
    /// error, further calls return `Ok(None)`.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        if self.failed {
            return Ok(None);
        }
        let fast = match self.state {
            State::Pcap { .. } => self.next_whole_pcap(),
            State::Pcapng { .. } => self.next_whole_epb(),
        };
        if let Some((start, len, ts, linktype, orig_len, offset)) = fast {
            return Ok(Some(Packet {
                ts,
                linktype,
                data: &self.data()[start..start + len],
                orig_len,
                offset,
            }));
        }
        self.next_packet_slow()
    }

    /// Hands `f` the packets that follow, one by one, for as long as they
    /// take [`CaptureReader::next_packet`]'s fast path (classic pcap records
    /// or pcapng packet blocks lying whole in the buffer): at most `max` of
    /// them, and none after `f` returns `false`. Returns how many it handed
    /// over; 0 means the next one needs `next_packet` (a record the buffer
    /// holds only part of, another block, the end of the input, damage, or
    /// `max` 0).
    ///
    /// The same packets, in the same order and leaving the reader in the
    /// same state, as that many calls to `next_packet`; but one loop with
    /// `f` inlined, which the compiler keeps in registers, instead of a
    /// call, a `Result` and the dispatch on the container per packet.
    #[inline]
    pub fn for_each_buffered(
        &mut self,
        max: usize,
        mut f: impl FnMut(Packet<'_>) -> bool,
    ) -> usize {
        if self.failed {
            return 0;
        }
        let mut n = 0;
        while n < max {
            #[cfg(unix)]
            self.prefetch_ahead();
            let fast = match self.state {
                State::Pcap { .. } => self.next_whole_pcap(),
                State::Pcapng { .. } => self.next_whole_epb(),
            };
            let Some((start, len, ts, linktype, orig_len, offset)) = fast else {
                break;
            };
            n += 1;
            let go = f(Packet {
                ts,
                linktype,
                data: &self.data()[start..start + len],
                orig_len,
                offset,
            });
            if !go {
                break;
            }
        }
        n
    }

    /// In a mapped window, asks the CPU for the lines up to
    /// [`map::PREFETCH`] bytes ahead of the next record.
    #[cfg(unix)]
    #[inline(always)]
    fn prefetch_ahead(&mut self) {
        if let Some(w) = &self.map {
            let want = (self.pos + map::PREFETCH).min(self.end);
            let mut at = self.prefetched.max(self.pos);
            while at < want {
                w.prefetch(at);
                at += 64;
            }
            self.prefetched = at;
        }
    }

    /// The common case, kept small and branch-light: a classic pcap record
    /// lying whole in the buffer. `None` sends everything else (pcapng, a
    /// record not yet read in whole, the end of the input, damage) the
    /// general way.
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    fn next_whole_pcap(&mut self) -> Option<(usize, usize, Timestamp, u32, u32, u64)> {
        let State::Pcap {
            le,
            nanos,
            linktype,
        } = self.state
        else {
            return None;
        };
        let m: &[u8] = &self.data()[..self.end];
        let pos = self.pos;
        // Modified pcap (24-byte records) has the top bit set: general path.
        let h: &[u8; 16] = m.get(pos..pos + 16)?.try_into().ok()?;
        let word = |i: usize| rd32(h, i, le);
        let caplen = word(8) as usize;
        let start = pos + 16;
        // (Empty records too: see `next_pcap`.)
        if linktype & 0x8000_0000 != 0
            || caplen > MAX_PACKET
            || caplen == 0
            || m.len() - start < caplen
            || !self.intact(start + caplen)
        {
            return None;
        }
        let frac = word(4);
        let ns = if nanos {
            frac.min(999_999_999)
        } else {
            frac.min(999_999) * 1000
        };
        let ts = Timestamp::from_parts(word(0) as i64, ns);
        let orig_len = word(12);
        self.pos = start + caplen;
        self.stats.packets += 1;
        Some((
            start,
            caplen,
            ts,
            linktype,
            orig_len,
            self.base + pos as u64,
        ))
    }

    /// The pcapng counterpart of [`CaptureReader::next_whole_pcap`]: an
    /// enhanced packet block lying whole in the buffer, with the checks of
    /// the general path (which takes every other block, and every block it
    /// declines here).
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    fn next_whole_epb(&mut self) -> Option<(usize, usize, Timestamp, u32, u32, u64)> {
        let State::Pcapng { le, .. } = self.state else {
            return None;
        };
        let m: &[u8] = &self.data()[..self.end];
        let pos = self.pos;
        // Block type and length, then the EPB's interface, time and lengths.
        let h: &[u8; 28] = m.get(pos..pos + 28)?.try_into().ok()?;
        let word = |i: usize| rd32(h, i, le);
        let blen = word(4) as usize;
        if word(0) != 6
            || blen < 32
            || !blen.is_multiple_of(4)
            || blen > MAX_BLOCK
            || m.len() - pos < blen
        {
            return None;
        }
        let trailer = rd32(&m[pos + blen - 4..pos + blen], 0, le);
        let caplen = word(20) as usize;
        if trailer as usize != blen || caplen > blen - 32 || !self.intact(pos + blen) {
            return None;
        }
        let (ifid, units, orig_len) = (
            word(8) as usize,
            ((word(12) as u64) << 32) | word(16) as u64,
            word(24),
        );
        let State::Pcapng {
            ifaces, last_ts, ..
        } = &mut self.state
        else {
            return None;
        };
        let iface = *ifaces.get(ifid)?;
        // Whole decimal units without overflow (the usual case), else the
        // general conversion.
        let ts = match (units as i64).checked_mul(iface.unit_ns) {
            Some(ns) if iface.unit_ns != 0 && units <= i64::MAX as u64 => Timestamp(ns),
            _ => ts_of(units, iface),
        };
        *last_ts = ts;
        self.pos = pos + blen;
        self.stats.packets += 1;
        Some((
            pos + 28,
            caplen,
            ts,
            iface.linktype,
            orig_len,
            self.base + pos as u64,
        ))
    }

    #[inline(never)]
    fn next_packet_slow(&mut self) -> Result<Option<Packet<'_>>, Error> {
        let r = match self.state {
            State::Pcap { .. } => self.next_pcap(),
            State::Pcapng { .. } => self.next_pcapng(),
        };
        let r = match r {
            Ok(Some((start, len, _, _, _, offset))) if !self.intact(start + len) => {
                Err(shrank(offset, self.size_now(), self.lost_at()))
            }
            // A mapped file that shrank: a fault past its end was caught,
            // or the bytes at hand lie past its end now.
            #[cfg(unix)]
            Err(_)
                if self.map.as_ref().is_some_and(|w| w.lost())
                    || self.size_now().is_some_and(|s| self.offset() >= s) =>
            {
                Err(shrank(self.offset(), self.size_now(), self.lost_at()))
            }
            r => r,
        };
        match r {
            Ok(Some((start, len, ts, linktype, orig_len, offset))) => {
                self.stats.packets += 1;
                Ok(Some(Packet {
                    ts,
                    linktype,
                    data: &self.data()[start..start + len],
                    orig_len,
                    offset,
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn next_pcap(&mut self) -> Result<Option<(usize, usize, Timestamp, u32, u32, u64)>, Error> {
        let State::Pcap {
            le,
            nanos,
            linktype,
        } = self.state
        else {
            unreachable!("pcap state")
        };
        let modified = linktype & 0x8000_0000 != 0;
        let linktype = linktype & 0x0fff_ffff;
        let hdr = if modified { 24 } else { 16 };
        let have = self.fill(hdr)?;
        if have == 0 {
            return Ok(None);
        }
        if have < hdr {
            return Err(Error::Truncated {
                offset: self.offset(),
                what: "packet record header",
                needed: hdr as u64,
                available: have as u64,
            });
        }
        let h = &self.data()[self.pos..self.pos + 16];
        let sec = rd32(h, 0, le);
        let frac = rd32(h, 4, le);
        let caplen = rd32(h, 8, le) as usize;
        let orig_len = rd32(h, 12, le);
        let offset = self.offset();
        if h == [0; 16] && self.size_now().is_some_and(|s| offset + 16 > s) {
            // Zeros past the end of a mapped file that shrank (the kernel
            // fills the rest of its last page with them), not a record.
            return Err(shrank(offset, self.size_now(), None));
        }
        if caplen > MAX_PACKET {
            return Err(Error::Corrupt {
                offset,
                what: format!("packet record claims {caplen} captured bytes (limit {MAX_PACKET})"),
            });
        }
        let have = self.fill(hdr + caplen)?;
        if have < hdr + caplen {
            return Err(Error::Truncated {
                offset,
                what: "packet record",
                needed: (hdr + caplen) as u64,
                available: have as u64,
            });
        }
        let ns = if nanos {
            frac.min(999_999_999)
        } else {
            frac.min(999_999).saturating_mul(1000)
        };
        let ts = Timestamp::from_parts(sec as i64, ns);
        let start = self.pos + hdr;
        self.pos += hdr + caplen;
        Ok(Some((start, caplen, ts, linktype, orig_len, offset)))
    }

    #[allow(clippy::type_complexity)]
    fn next_pcapng(&mut self) -> Result<Option<(usize, usize, Timestamp, u32, u32, u64)>, Error> {
        loop {
            let have = self.fill(12)?;
            if have == 0 {
                return Ok(None);
            }
            let offset = self.offset();
            if have < 12 {
                return Err(Error::Truncated {
                    offset,
                    what: "pcapng block header",
                    needed: 12,
                    available: have as u64,
                });
            }
            let State::Pcapng { le, .. } = self.state else {
                unreachable!("pcapng state")
            };
            let h = &self.data()[self.pos..self.pos + 12];
            let btype_raw = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let mut le = le;
            if btype_raw == 0x0a0d0d0a {
                // Section header: its byte-order magic sets the endianness.
                match u32::from_le_bytes([h[8], h[9], h[10], h[11]]) {
                    0x1a2b3c4d => le = true,
                    0x4d3c2b1a => le = false,
                    m => {
                        return Err(Error::Corrupt {
                            offset,
                            what: format!("section header with bad byte-order magic {m:#010x}"),
                        })
                    }
                }
            }
            let btype = rd32(h, 0, le);
            let blen = rd32(h, 4, le) as usize;
            if blen < 12 || !blen.is_multiple_of(4) {
                return Err(Error::Corrupt {
                    offset,
                    what: format!("block length {blen} is not a multiple of 4 of at least 12"),
                });
            }
            if blen > MAX_BLOCK {
                return Err(Error::Corrupt {
                    offset,
                    what: format!("block claims {blen} bytes (limit {MAX_BLOCK})"),
                });
            }
            let have = self.fill(blen)?;
            if have < blen {
                return Err(Error::Truncated {
                    offset,
                    what: "pcapng block",
                    needed: blen as u64,
                    available: have as u64,
                });
            }
            let p = self.pos;
            let trailer = rd32(&self.data()[p + blen - 4..p + blen], 0, le) as usize;
            if trailer != blen {
                return Err(Error::Corrupt {
                    offset,
                    what: format!("block length {blen} does not match its trailing copy {trailer}"),
                });
            }
            self.pos += blen;
            let body = p + 8..p + blen - 4;
            match btype {
                0x0a0d0d0a => {
                    self.stats.sections += 1;
                    self.state = State::Pcapng {
                        le,
                        ifaces: Vec::new(),
                        last_ts: Timestamp(0),
                    };
                }
                1 => {
                    let b = &self.data()[body];
                    if b.len() < 8 {
                        return Err(Error::Corrupt {
                            offset,
                            what: "interface description block too short".into(),
                        });
                    }
                    let mut iface = Iface {
                        linktype: rd16(b, 0, le) as u32,
                        snaplen: rd32(b, 4, le),
                        resol: (false, 6),
                        offset_s: 0,
                        unit_ns: 0,
                    };
                    for (code, val) in Options::new(&b[8..], le) {
                        match code {
                            9 if !val.is_empty() => {
                                iface.resol = (val[0] & 0x80 != 0, val[0] & 0x7f)
                            }
                            14 if val.len() >= 8 => iface.offset_s = rd64(val, 0, le) as i64,
                            _ => {}
                        }
                    }
                    if let State::Pcapng { ifaces, .. } = &mut self.state {
                        if ifaces.len() < 65_536 {
                            ifaces.push(iface.with_unit());
                        }
                    }
                }
                6 | 2 => {
                    let b = &self.data()[body.clone()];
                    let min = 20;
                    if b.len() < min {
                        return Err(Error::Corrupt {
                            offset,
                            what: "packet block too short".into(),
                        });
                    }
                    let (ifid, tsh, tsl, caplen, olen) = if btype == 6 {
                        (
                            rd32(b, 0, le) as usize,
                            rd32(b, 4, le),
                            rd32(b, 8, le),
                            rd32(b, 12, le) as usize,
                            rd32(b, 16, le),
                        )
                    } else {
                        (
                            rd16(b, 0, le) as usize,
                            rd32(b, 4, le),
                            rd32(b, 8, le),
                            rd32(b, 12, le) as usize,
                            rd32(b, 16, le),
                        )
                    };
                    if caplen > b.len() - 20 {
                        return Err(Error::Corrupt {
                            offset,
                            what: format!(
                                "packet claims {caplen} bytes but its block holds {}",
                                b.len() - 20
                            ),
                        });
                    }
                    let State::Pcapng {
                        ifaces, last_ts, ..
                    } = &mut self.state
                    else {
                        unreachable!()
                    };
                    let Some(iface) = ifaces.get(ifid).copied() else {
                        return Err(Error::Corrupt {
                            offset,
                            what: format!("packet for undeclared interface {ifid}"),
                        });
                    };
                    let ts = ts_of(((tsh as u64) << 32) | tsl as u64, iface);
                    *last_ts = ts;
                    return Ok(Some((
                        body.start + 20,
                        caplen,
                        ts,
                        iface.linktype,
                        olen,
                        offset,
                    )));
                }
                3 => {
                    let b = &self.data()[body.clone()];
                    if b.len() < 4 {
                        return Err(Error::Corrupt {
                            offset,
                            what: "simple packet block too short".into(),
                        });
                    }
                    let olen = rd32(b, 0, le);
                    let State::Pcapng {
                        ifaces, last_ts, ..
                    } = &self.state
                    else {
                        unreachable!()
                    };
                    let Some(iface) = ifaces.first().copied() else {
                        return Err(Error::Corrupt {
                            offset,
                            what: "simple packet block before any interface".into(),
                        });
                    };
                    let snap = if iface.snaplen == 0 {
                        u32::MAX
                    } else {
                        iface.snaplen
                    };
                    let caplen = (olen.min(snap) as usize).min(b.len() - 4);
                    // SPBs carry no timestamp: reuse the previous packet's.
                    return Ok(Some((
                        body.start + 4,
                        caplen,
                        *last_ts,
                        iface.linktype,
                        olen,
                        offset,
                    )));
                }
                _ => self.stats.skipped_blocks += 1,
            }
        }
    }
}

/// The error of a mapped file whose bytes were lost under the reader, for
/// the record at `offset`. `size` is the file's size now and `lost` where
/// the first lost page was (if known). Usually the file shrank; if the lost
/// page still lies within it, that page could not be read (the kernel
/// signals a disk's read error the same way).
fn shrank(offset: u64, size: Option<u64>, lost: Option<u64>) -> Error {
    let what = match (size, lost) {
        (Some(s), Some(at)) if at < s => format!(
            "the file's bytes at {at} could not be read (a read error, or the \
             file was cut and written again; it has {s} bytes now)"
        ),
        (Some(s), _) => format!("the file shrank to {s} bytes while it was being read"),
        (None, _) => "the file shrank while it was being read".to_string(),
    };
    Error::Io {
        offset,
        source: io::Error::new(io::ErrorKind::UnexpectedEof, what),
    }
}

fn ts_of(units: u64, iface: Iface) -> Timestamp {
    let (pow2, e) = iface.resol;
    let ns: i128 = if pow2 {
        let e = e.min(63);
        ((units as i128) * 1_000_000_000) >> e
    } else if e <= 9 {
        (units as i128) * 10i128.pow(9 - e as u32)
    } else {
        (units as i128) / 10i128.pow((e.min(38) - 9) as u32)
    };
    let ns = ns + (iface.offset_s as i128) * 1_000_000_000;
    Timestamp(ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

#[inline]
fn rd16(b: &[u8], at: usize, le: bool) -> u16 {
    let v = [b[at], b[at + 1]];
    if le {
        u16::from_le_bytes(v)
    } else {
        u16::from_be_bytes(v)
    }
}

#[inline]
fn rd32(b: &[u8], at: usize, le: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if le {
        u32::from_le_bytes(v)
    } else {
        u32::from_be_bytes(v)
    }
}

fn rd64(b: &[u8], at: usize, le: bool) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    if le {
        u64::from_le_bytes(v)
    } else {
        u64::from_be_bytes(v)
    }
}

/// pcapng options (code, value) of a block body, stopping at opt_endofopt
/// or at the first option that does not fit.
struct Options<'a> {
    b: &'a [u8],
    le: bool,
}

impl<'a> Options<'a> {
    fn new(b: &'a [u8], le: bool) -> Self {
        Options { b, le }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.b.len() < 4 {
            return None;
        }
        let code = rd16(self.b, 0, self.le);
        let len = rd16(self.b, 2, self.le) as usize;
        if code == 0 || 4 + len > self.b.len() {
            return None;
        }
        let val = &self.b[4..4 + len];
        let step = (4 + len + 3) & !3;
        self.b = &self.b[step.min(self.b.len())..];
        Some((code, val))
    }
}

#[cfg(unix)]
mod map;
#[cfg(test)]
mod tests;
