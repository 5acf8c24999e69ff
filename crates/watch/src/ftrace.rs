//! Tracepoint events through a private tracefs instance: per-CPU ring
//! buffers read as raw pages from `per_cpu/cpuN/trace_pipe_raw`.
//!
//! Why this reader exists next to [`crate::perf`]: on some kernels perf
//! writes no sample at all while a CPU's idle task is current (measured on
//! this project's CI host, Linux 6.18 under Firecracker: `perf record -a`
//! gets zero samples of any event, `cpu-clock` included, from the idle task
//! of CPU 1, while `perf stat` counts them and ftrace records them). A reset
//! sent from a timer that fires on an idle CPU (keepalive timeout, SYN
//! retries exhausted) or received in a softirq on an idle CPU is then counted
//! by the kernel but never delivered to a perf reader. The ftrace ring
//! buffer has no such hole, and its records are the very same raw
//! tracepoint records, so [`crate::decode`] reads both.
//!
//! Written by hand because no maintained pure-Rust crate reads
//! `trace_pipe_raw`; the page format is small and documented in
//! `events/header_page` and `events/header_event`, and is parsed here with
//! every length bounded by the page.
//!
//! The instance is private (`instances/rstscope-<pid>-<n>`): the global
//! trace buffer and other users' instances are never touched, and the
//! instance is removed on drop. Instances left behind by an `rstscope`
//! process that no longer exists (killed with SIGKILL) are removed at the
//! next start.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// `type_len` values of a ring buffer event header (`header_event`).
const PADDING: u32 = 29;
const TIME_EXTEND: u32 = 30;
const TIME_STAMP: u32 = 31;
/// Bits of the commit word that flag missed events, not length.
const COMMIT_FLAGS: u64 = 0b11 << 30;
/// Absolute timestamps carry the low 59 bits.
const TS_MSB: u64 = !((1u64 << 59) - 1);

/// Where a sub-buffer page keeps its fields (from `events/header_page`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLayout {
    /// Offset of the commit word.
    pub commit_off: usize,
    /// Size of the commit word (8 on 64-bit kernels, 4 on 32-bit).
    pub commit_size: usize,
    /// Offset of the first event.
    pub data_off: usize,
}

impl Default for PageLayout {
    fn default() -> Self {
        PageLayout {
            commit_off: 8,
            commit_size: 8,
            data_off: 16,
        }
    }
}

impl PageLayout {
    /// Parses `events/header_page`; missing fields keep the 64-bit defaults.
    pub fn parse(text: &str) -> PageLayout {
        let mut l = PageLayout::default();
        for line in text.lines() {
            let get = |key: &str| -> Option<usize> {
                let i = line.find(key)? + key.len();
                line[i..].split(';').next()?.trim().parse().ok()
            };
            let (Some(off), Some(size)) = (get("offset:"), get("size:")) else {
                continue;
            };
            if line.contains(" commit;") && (size == 4 || size == 8) {
                l.commit_off = off;
                l.commit_size = size;
            } else if line.contains(" data;") {
                l.data_off = off;
            }
        }
        l
    }
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    let s = b.get(o..o.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    let s = b.get(o..o.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_ne_bytes(a))
}

/// Calls `f(timestamp, record)` for every data event of one page read
/// from `trace_pipe_raw`, oldest first. Timestamps are in the instance's
/// trace clock. Returns the number of events, or `None` when the page is
/// malformed (the events before the damage were still delivered).
pub fn parse_page(page: &[u8], l: &PageLayout, mut f: impl FnMut(u64, &[u8])) -> Option<usize> {
    let mut ts = u64_at(page, 0)?;
    let commit = match l.commit_size {
        4 => u64::from(u32_at(page, l.commit_off)?),
        _ => u64_at(page, l.commit_off)?,
    };
    let len = usize::try_from(commit & !COMMIT_FLAGS).ok()?;
    let end = l.data_off.checked_add(len)?;
    if end > page.len() {
        return None;
    }
    let mut off = l.data_off;
    let mut n = 0;
    while off + 4 <= end {
        let hdr = u32_at(page, off)?;
        let type_len = hdr & 0x1f;
        let delta = u64::from(hdr >> 5);
        let (data, total) = match type_len {
            PADDING => {
                if delta == 0 {
                    // The rest of the page is unused.
                    break;
                }
                // A discarded event: skipped, time unchanged.
                (None, 4usize.checked_add(u32_at(page, off + 4)? as usize)?)
            }
            TIME_EXTEND => {
                ts = ts.wrapping_add((u64::from(u32_at(page, off + 4)?) << 27) + delta);
                (None, 8)
            }
            TIME_STAMP => {
                let mut abs = (u64::from(u32_at(page, off + 4)?) << 27) + delta;
                if ts & TS_MSB != 0 {
                    abs |= ts & TS_MSB;
                    if abs < ts {
                        abs = abs.wrapping_add(1 << 59);
                    }
                }
                ts = abs;
                (None, 8)
            }
            0 => {
                // array[0] holds the length of itself plus the data.
                let l0 = u32_at(page, off + 4)? as usize;
                let dlen = l0.checked_sub(4)?;
                ts = ts.wrapping_add(delta);
                (Some((off + 8, dlen)), 4usize.checked_add(l0)?)
            }
            t => {
                ts = ts.wrapping_add(delta);
                let dlen = t as usize * 4;
                (Some((off + 4, dlen)), 4 + dlen)
            }
        };
        let next = off.checked_add(total)?;
        if next > end || total < 4 {
            return None;
        }
        if let Some((d, dl)) = data {
            f(ts, page.get(d..d + dl)?);
            n += 1;
        }
        off = next;
    }
    Some(n)
}

/// One CPU's raw pipe.
struct CpuPipe {
    cpu: i32,
    file: std::fs::File,
}

/// A private tracefs instance recording some tracepoints on every CPU.
pub struct Instance {
    dir: PathBuf,
    pipes: Vec<CpuPipe>,
    layout: PageLayout,
    page: Vec<u8>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);
const PREFIX: &str = "rstscope-";

fn write(p: &Path, v: &str) -> io::Result<()> {
    std::fs::write(p, v).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
}

/// Removes instances named `rstscope-<pid>-<n>` whose process is gone.
fn reap_stale(instances: &Path) {
    let Ok(rd) = std::fs::read_dir(instances) else {
        return;
    };
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(ent.path());
        }
    }
}

impl Instance {
    /// Creates the instance under `tracefs/instances`, sizes its per-CPU
    /// buffers to `kib`, sets the monotonic trace clock (the same clock
    /// perf samples use), enables `events` (`"tcp/tcp_send_reset"`, with
    /// an optional filter expression) and opens the raw pipe of each CPU of
    /// `cpus`. Nothing is recorded before this returns.
    pub fn create(
        tracefs: &Path,
        cpus: &[i32],
        kib: usize,
        events: &[(&str, Option<&str>)],
    ) -> io::Result<Instance> {
        let instances = tracefs.join("instances");
        reap_stale(&instances);
        let dir = instances.join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", dir.display())))?;
        let mut inst = Instance {
            dir,
            pipes: Vec::new(),
            layout: PageLayout::default(),
            page: Vec::new(),
        };
        let d = inst.dir.clone();
        write(&d.join("tracing_on"), "0")?;
        // Keep what was recorded when the buffer is full (new events are
        // dropped and counted), as perf does, instead of overwriting.
        write(&d.join("options/overwrite"), "0")?;
        write(&d.join("trace_clock"), "mono")?;
        write(&d.join("buffer_size_kb"), &kib.max(4).to_string())?;
        // Wake a sleeping reader when an eighth of the buffer is used; the
        // reader also drains on its own short timer.
        let _ = write(&d.join("buffer_percent"), "12");
        // Keep each recorded thread's process id in the kernel's
        // `saved_tgids` map: a thread may be gone before its record is read.
        let _ = write(&d.join("options/record-tgid"), "1");
        for (ev, filter) in events {
            let e = d.join("events").join(ev);
            if let Some(f) = filter {
                write(&e.join("filter"), f)?;
            }
            write(&e.join("enable"), "1")?;
        }
        inst.layout = std::fs::read_to_string(tracefs.join("events/header_page"))
            .map(|t| PageLayout::parse(&t))
            .unwrap_or_default();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let sub = std::fs::read_to_string(d.join("buffer_subbuf_size_kb"))
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .map(|k| k * 1024)
            .unwrap_or(page)
            .clamp(page, 1 << 20);
        inst.page = vec![0u8; sub];
        for &cpu in cpus {
            let p = d.join(format!("per_cpu/cpu{cpu}/trace_pipe_raw"));
            let file = match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&p)
            {
                Ok(f) => f,
                // A CPU that went offline since the list was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
            };
            inst.pipes.push(CpuPipe { cpu, file });
        }
        write(&d.join("tracing_on"), "1")?;
        Ok(inst)
    }

    /// Thread id → process id of the threads the kernel recorded events for
    /// (`saved_tgids`, kept because the instance sets `record-tgid`).
    pub fn saved_tgids(&self) -> Vec<(u32, u32)> {
        let Some(root) = self.dir.parent().and_then(Path::parent) else {
            return Vec::new();
        };
        std::fs::read_to_string(root.join("saved_tgids"))
            .map(|s| {
                s.lines()
                    .filter_map(|l| {
                        let (a, b) = l.split_once(' ')?;
                        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The command name the tracer saved for thread `tid` when it recorded
    /// one of its events (`saved_cmdlines`), if still there.
    pub fn saved_comm(&self, tid: u32) -> Option<String> {
        let root = self.dir.parent().and_then(Path::parent)?;
        let text = std::fs::read_to_string(root.join("saved_cmdlines")).ok()?;
        text.lines().find_map(|l| {
            let (a, b) = l.split_once(' ')?;
            (a.trim().parse::<u32>().ok()? == tid).then(|| b.trim_end().to_string())
        })
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The raw pipe descriptors with their CPU (for epoll).
    pub fn fds(&self) -> impl Iterator<Item = (i32, RawFd)> + '_ {
        self.pipes.iter().map(|p| (p.cpu, p.file.as_raw_fd()))
    }

    /// Reads every record waiting on every CPU: `f(cpu, timestamp, record)`.
    /// Returns the number of malformed pages skipped (should stay 0).
    pub fn drain(&mut self, mut f: impl FnMut(i32, u64, &[u8])) -> u64 {
        let mut bad = 0;
        for p in &mut self.pipes {
            // Bounded: at most the whole buffer, then the next tick.
            for _ in 0..4096 {
                match p.file.read(&mut self.page) {
                    Ok(0) => break,
                    Ok(n) => {
                        let cpu = p.cpu;
                        if parse_page(&self.page[..n], &self.layout, |t, r| f(cpu, t, r)).is_none()
                        {
                            bad += 1;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break, // EAGAIN: empty
                }
            }
        }
        bad
    }

    /// Events the kernel could not record because a CPU's buffer was full,
    /// so far (sum of `overrun` and `dropped events` of `per_cpu/*/stats`).
    pub fn lost(&self) -> u64 {
        let mut n = 0;
        for p in &self.pipes {
            let path = self.dir.join(format!("per_cpu/cpu{}/stats", p.cpu));
            if let Ok(s) = std::fs::read_to_string(path) {
                n += parse_lost(&s);
            }
        }
        n
    }
}

/// Sums the loss counters of a `per_cpu/cpuN/stats` file.
pub fn parse_lost(stats: &str) -> u64 {
    stats
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "overrun" | "dropped events")
                .then(|| v.trim().parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

use std::os::unix::fs::OpenOptionsExt;

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("tracing_on"), "0");
        // The pipes must be closed before the instance can be removed.
        self.pipes.clear();
        if std::fs::remove_dir(&self.dir).is_err() {
            // A reader still blocked in the kernel: try once more.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(type_len: u32, delta: u32) -> [u8; 4] {
        (type_len | (delta << 5)).to_ne_bytes()
    }

    /// A page as `trace_pipe_raw` returns it.
    fn page(ts: u64, body: &[u8], flags: u64) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&ts.to_ne_bytes());
        p.extend_from_slice(&(body.len() as u64 | flags).to_ne_bytes());
        p.extend_from_slice(body);
        p.resize(4096, 0);
        p
    }

    #[test]
    fn events_lengths_and_times() {
        let mut b = Vec::new();
        // Small data event: type_len 2 = 8 bytes, delta 5.
        b.extend_from_slice(&hdr(2, 5));
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        // Time extend: +(1 << 27) + 3.
        b.extend_from_slice(&hdr(TIME_EXTEND, 3));
        b.extend_from_slice(&1u32.to_ne_bytes());
        // Discarded event (padding whose array[0] counts itself and the
        // rest of the old event): skipped.
        b.extend_from_slice(&hdr(PADDING, 1));
        b.extend_from_slice(&8u32.to_ne_bytes());
        b.extend_from_slice(&[0xee; 4]);
        // Large form: type_len 0, array[0] = 4 + 12.
        b.extend_from_slice(&hdr(0, 7));
        b.extend_from_slice(&16u32.to_ne_bytes());
        b.extend_from_slice(&[9; 12]);
        // Null padding: end of data.
        b.extend_from_slice(&hdr(PADDING, 0));
        b.extend_from_slice(&[0; 4]);
        let p = page(1000, &b, 1 << 31);
        let mut got = Vec::new();
        let n = parse_page(&p, &PageLayout::default(), |t, r| got.push((t, r.to_vec())));
        assert_eq!(n, Some(2));
        assert_eq!(got[0], (1005, vec![1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(got[1], (1005 + (1 << 27) + 3 + 7, vec![9; 12]));
    }

    #[test]
    fn absolute_timestamp_keeps_high_bits() {
        let mut b = Vec::new();
        b.extend_from_slice(&hdr(TIME_STAMP, 2));
        b.extend_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&hdr(1, 0));
        b.extend_from_slice(&[7; 4]);
        let base = 1u64 << 60;
        let p = page(base, &b, 0);
        let mut got = Vec::new();
        parse_page(&p, &PageLayout::default(), |t, _| got.push(t)).unwrap();
        assert_eq!(got, vec![base + (1 << 27) + 2]);
    }

    #[test]
    fn malformed_pages_never_panic() {
        // Commit longer than the page.
        let mut p = page(0, &[], 0);
        p[8..16].copy_from_slice(&100_000u64.to_ne_bytes());
        assert_eq!(parse_page(&p, &PageLayout::default(), |_, _| {}), None);
        // An event whose length runs past the commit.
        let mut b = hdr(0, 0).to_vec();
        b.extend_from_slice(&4000u32.to_ne_bytes());
        let p = page(0, &b, 0);
        assert_eq!(parse_page(&p, &PageLayout::default(), |_, _| {}), None);
        // array[0] below its own size.
        let mut b = hdr(0, 0).to_vec();
        b.extend_from_slice(&2u32.to_ne_bytes());
        let p = page(0, &b, 0);
        assert_eq!(parse_page(&p, &PageLayout::default(), |_, _| {}), None);
        assert_eq!(
            parse_page(&[1, 2, 3], &PageLayout::default(), |_, _| {}),
            None
        );
        // Every truncation of a good page is handled.
        let mut b = hdr(2, 1).to_vec();
        b.extend_from_slice(&[1; 8]);
        let p = page(0, &b, 0);
        for cut in 0..40 {
            let _ = parse_page(&p[..cut], &PageLayout::default(), |_, _| {});
        }
    }

    #[test]
    fn header_page_and_stats() {
        let hp = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
                  \tfield: local_t commit;\toffset:8;\tsize:4;\tsigned:1;\n\
                  \tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\
                  \tfield: char data;\toffset:12;\tsize:4084;\tsigned:0;\n";
        assert_eq!(
            PageLayout::parse(hp),
            PageLayout {
                commit_off: 8,
                commit_size: 4,
                data_off: 12
            }
        );
        let st = "entries: 1123\noverrun: 2\ncommit overrun: 0\nbytes: 17968\n\
                  oldest event ts:  9569.635524\nnow ts:  9622.099990\ndropped events: 5\nread events: 0\n";
        assert_eq!(parse_lost(st), 7);
    }
}
