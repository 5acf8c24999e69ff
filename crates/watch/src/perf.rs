//! Tracepoint events through `perf_event_open`: one ring buffer per CPU,
//! `PERF_SAMPLE_RAW` records, lost-record accounting.
//!
//! Written by hand over `perf-event-open-sys` (the kernel ABI) because the
//! reader is the hot path and small: every tracepoint of one CPU writes into
//! that CPU's single ring (`PERF_EVENT_IOC_SET_OUTPUT`), so records of
//! different tracepoints stay in the order the kernel wrote them, which the
//! watcher uses to pair a received reset with the state change that follows
//! it.

use perf_event_open_sys as sys;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use sys::bindings::{perf_event_attr, perf_event_header, perf_event_mmap_page};

/// One record read from a ring.
#[derive(Debug)]
pub enum Item<'a> {
    /// A `PERF_RECORD_SAMPLE`.
    Sample {
        /// Process id (tgid) of the task that was running.
        pid: u32,
        /// Thread id of that task.
        tid: u32,
        /// `CLOCK_MONOTONIC` nanoseconds.
        time: u64,
        /// The tracepoint's raw record (starts at `common_type`).
        raw: &'a [u8],
    },
    /// A `PERF_RECORD_LOST`: the ring was full and the kernel dropped records.
    Lost(u64),
}

/// Opens one tracepoint event on one CPU (all tasks).
pub fn open_tracepoint(id: u32, cpu: i32, wakeup_bytes: u32) -> io::Result<OwnedFd> {
    let mut attr = perf_event_attr {
        size: std::mem::size_of::<perf_event_attr>() as u32,
        type_: sys::bindings::PERF_TYPE_TRACEPOINT,
        config: id as u64,
        sample_type: (sys::bindings::PERF_SAMPLE_TID
            | sys::bindings::PERF_SAMPLE_TIME
            | sys::bindings::PERF_SAMPLE_RAW) as u64,
        clockid: libc::CLOCK_MONOTONIC,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_period = 1;
    // Wake the reader when this many bytes are waiting; the reader also
    // drains on a short timer, so a quiet host still sees events promptly
    // and a busy one is not woken for every record.
    attr.__bindgen_anon_2.wakeup_watermark = wakeup_bytes;
    attr.set_watermark(1);
    attr.set_use_clockid(1);
    attr.set_disabled(1);
    // SAFETY: attr is a valid, fully initialised perf_event_attr whose size
    // field matches the struct; the kernel only reads it.
    let fd = unsafe {
        sys::perf_event_open(
            &mut attr,
            -1,
            cpu,
            -1,
            sys::bindings::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends the records of `fd` into the ring of `target` (same CPU).
pub fn set_output(fd: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    // SAFETY: both are perf event descriptors we own.
    let r = unsafe { sys::ioctls::SET_OUTPUT(fd.as_raw_fd(), target.as_raw_fd()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs an ftrace filter expression on a tracepoint event.
pub fn set_filter(fd: &OwnedFd, filter: &str) -> io::Result<()> {
    let c = std::ffi::CString::new(filter)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in filter"))?;
    // SAFETY: c is a NUL-terminated string that outlives the call; the
    // kernel copies it.
    let r = unsafe { sys::ioctls::SET_FILTER(fd.as_raw_fd(), c.as_ptr() as *mut libc::c_char) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Enables a perf event.
pub fn enable(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fd is a perf event descriptor we own.
    let r = unsafe { sys::ioctls::ENABLE(fd.as_raw_fd(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The mmap'ed ring buffer of one CPU.
pub struct Ring {
    fd: OwnedFd,
    base: *mut u8,
    map_len: usize,
    data_off: usize,
    data_size: usize,
    scratch: Vec<u8>,
    /// The CPU this ring belongs to.
    pub cpu: i32,
}

// SAFETY: the mapping is owned by this value and only accessed through
// &mut self; moving it to another thread is fine.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps a ring of `pages` data pages (a power of two) over `fd`. When
    /// the locked-memory limit refuses it (EPERM, non-root users), halves the
    /// size down to `min_pages`. Returns the ring and its data pages.
    pub fn new_shrinking(
        fd: OwnedFd,
        mut pages: usize,
        min_pages: usize,
        cpu: i32,
    ) -> io::Result<(Ring, usize)> {
        loop {
            match Ring::map(&fd, pages) {
                Ok((base, map_len)) => {
                    return Ok((Ring::from_map(fd, base, map_len, pages, cpu), pages))
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM) && pages / 2 >= min_pages.max(1) =>
                {
                    pages /= 2
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Maps a ring of exactly `pages` data pages.
    pub fn new(fd: OwnedFd, pages: usize, cpu: i32) -> io::Result<Ring> {
        let (base, map_len) = Ring::map(&fd, pages)?;
        Ok(Ring::from_map(fd, base, map_len, pages, cpu))
    }

    fn map(fd: &OwnedFd, pages: usize) -> io::Result<(*mut libc::c_void, usize)> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let map_len = page * (pages + 1);
        // SAFETY: mapping a perf event fd as documented in
        // perf_event_open(2): one metadata page plus 2^n data pages.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok((base, map_len))
    }

    fn from_map(
        fd: OwnedFd,
        base: *mut libc::c_void,
        map_len: usize,
        pages: usize,
        cpu: i32,
    ) -> Ring {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let meta = base as *const perf_event_mmap_page;
        // SAFETY: the first page is the metadata page; data_offset and
        // data_size are set by the kernel before mmap returns (kernel >= 4.1).
        let (mut data_off, mut data_size) = unsafe {
            (
                std::ptr::read_volatile(&(*meta).data_offset) as usize,
                std::ptr::read_volatile(&(*meta).data_size) as usize,
            )
        };
        if data_size == 0 {
            data_off = page;
            data_size = page * pages;
        }
        Ring {
            fd,
            base: base as *mut u8,
            map_len,
            data_off,
            data_size,
            scratch: Vec::new(),
            cpu,
        }
    }

    /// The descriptor (for epoll and `SET_OUTPUT`).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Raw descriptor.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every record waiting in the ring, oldest first, and frees their
    /// space. Records that wrap around the end of the ring are copied into a
    /// scratch buffer; the others are read in place. Returns how many
    /// records were read.
    pub fn drain(&mut self, mut f: impl FnMut(Item<'_>)) -> usize {
        let meta = self.base as *mut perf_event_mmap_page;
        // SAFETY: meta points at the mapped metadata page; data_head is
        // written by the kernel, read with a volatile load and then an
        // acquire fence as perf_event_open(2) requires.
        let head = unsafe { std::ptr::read_volatile(&(*meta).data_head) };
        fence(Ordering::Acquire);
        // SAFETY: data_tail is ours to read and write.
        let mut tail = unsafe { std::ptr::read_volatile(&(*meta).data_tail) };
        let size = self.data_size as u64;
        // SAFETY: data_off..data_off+data_size is inside the mapping.
        let data =
            unsafe { std::slice::from_raw_parts(self.base.add(self.data_off), self.data_size) };
        let mut n = 0;
        const HDR: usize = std::mem::size_of::<perf_event_header>();
        while head.wrapping_sub(tail) >= HDR as u64 {
            let avail = head.wrapping_sub(tail);
            let off = (tail % size) as usize;
            let mut hb = [0u8; HDR];
            copy_wrapped(data, off, &mut hb);
            let typ = u32::from_ne_bytes([hb[0], hb[1], hb[2], hb[3]]);
            let len = u16::from_ne_bytes([hb[6], hb[7]]) as usize;
            if len < HDR || len as u64 > avail {
                // Corrupt or partial record: skip everything to stay in sync.
                tail = head;
                break;
            }
            let rec: &[u8] = if off + len <= data.len() {
                &data[off..off + len]
            } else {
                self.scratch.resize(len, 0);
                copy_wrapped(data, off, &mut self.scratch);
                &self.scratch
            };
            match typ {
                sys::bindings::PERF_RECORD_SAMPLE => {
                    if let Some(item) = parse_sample(&rec[HDR..]) {
                        f(item);
                    }
                }
                sys::bindings::PERF_RECORD_LOST => {
                    // struct { header; u64 id; u64 lost; }
                    if let Some(b) = rec.get(HDR + 8..HDR + 16) {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        f(Item::Lost(u64::from_ne_bytes(a)));
                    }
                }
                _ => {}
            }
            tail = tail.wrapping_add(len as u64);
            n += 1;
        }
        fence(Ordering::Release);
        // SAFETY: publishing how far we have read; the kernel reads data_tail.
        unsafe { std::ptr::write_volatile(&mut (*meta).data_tail, tail) };
        n
    }
}

/// Copies `out.len()` bytes from the ring starting at `off`, wrapping.
fn copy_wrapped(data: &[u8], off: usize, out: &mut [u8]) {
    let first = (data.len() - off).min(out.len());
    out[..first].copy_from_slice(&data[off..off + first]);
    let rest = out.len() - first;
    if rest > 0 {
        out[first..].copy_from_slice(&data[..rest]);
    }
}

/// Body of a sample with `PERF_SAMPLE_TID | TIME | RAW`:
/// `u32 pid, u32 tid; u64 time; u32 size; u8 raw[size]`.
pub fn parse_sample(b: &[u8]) -> Option<Item<'_>> {
    let u32_at = |o: usize| -> Option<u32> {
        let s = b.get(o..o + 4)?;
        Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    let pid = u32_at(0)?;
    let tid = u32_at(4)?;
    let t = b.get(8..16)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(t);
    let time = u64::from_ne_bytes(a);
    let size = u32_at(16)? as usize;
    let raw = b.get(20..20usize.checked_add(size)?)?;
    Some(Item::Sample {
        pid,
        tid,
        time,
        raw,
    })
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped; the fd closes after.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.map_len);
        }
    }
}

/// The online CPUs, from `/sys/devices/system/cpu/online` (`0-3,6`).
pub fn online_cpus() -> io::Result<Vec<i32>> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    Ok(parse_cpu_list(&s))
}

/// Parses a kernel CPU list (`0-3,6`).
pub fn parse_cpu_list(s: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    if b >= a && b - a < 65536 {
                        out.extend(a..=b);
                    }
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6\n"), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("0"), vec![0]);
        assert_eq!(parse_cpu_list("x,3-1"), Vec::<i32>::new());
    }

    #[test]
    fn wrapped_copy_and_sample_bounds() {
        let data = [1u8, 2, 3, 4, 5];
        let mut out = [0u8; 4];
        copy_wrapped(&data, 3, &mut out);
        assert_eq!(out, [4, 5, 1, 2]);
        // A raw size larger than the record is rejected, not trusted.
        let mut s = vec![0u8; 20];
        s[16..20].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_sample(&s).is_none());
        assert!(parse_sample(&[0u8; 3]).is_none());
    }
}
