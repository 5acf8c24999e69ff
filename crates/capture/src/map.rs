//! Reading a capture file through a window mapped into memory.
//!
//! Why: `read(2)` makes the kernel copy every byte of the file, payload
//! included, into the reader's buffer, and that copy was a third of the
//! CPU time of `rstscope analyze` (it runs at the speed of `cat`). Mapped,
//! the bytes are read where the page cache holds them; the reader asks the
//! CPU for the lines ahead of the record it decodes
//! ([`Window::prefetch`]), so they stream in while it works instead of
//! stalling it one record at a time (without that, mapped reading was
//! slower than `read(2)`). Benchmark capture (1.79 GB, in the page cache),
//! Intel Xeon, 2 cores, 2026-12-08, `rstscope analyze --format json`, 9
//! interleaved runs (`scripts/ab`): 0.311 s with 16 MiB windows against
//! 0.338 s with `read(2)`. (An earlier mapped reader, on an AMD host, was
//! no faster than `read(2)` and was replaced by it; it prefetched less
//! far ahead and mapped through a pager thread.)
//!
//! Only a window of [`WINDOW`] bytes is mapped at a time and unmapped when
//! the reader moves on, so the resident size stays small whatever the
//! file's size (mapped pages count as resident).
//!
//! A mapped file that another process truncates would kill the reader with
//! `SIGBUS` when it touched a page past the new end. A process-wide
//! handler ([`on_sigbus`]) catches faults inside a registered window, puts
//! a page of zeros in place of the lost one and marks the window; the
//! reader checks the mark for every record ([`Window::intact`]) before it
//! hands the record on, so it stops with an error naming the offset and
//! the new size instead of crashing or decoding zeros. Faults anywhere
//! else go to the handler that was there before (Rust's own, or the
//! default action). One thing cannot be told: the kernel fills the rest of
//! the file's new last page with zeros, without a fault, so the one record
//! that ran past the new end within that page comes out with zeros at its
//! end (what follows it is recognised as lying past the end).
//!
//! A file still being written (a running `tcpdump -w`) is mapped up to the
//! size it has; at the end of that, the reader looks at the size again and
//! reads on, mapped or with `read(2)`.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Bytes mapped at a time (more when one record needs more). Benchmark
/// capture, 9 interleaved runs: 2 MiB windows 0.353 s, 8 to 128 MiB
/// 0.332–0.337 s; with the file half evicted from the page cache (every
/// other 4 MiB), 16 MiB windows read ahead ([`Window::read_ahead`]) took
/// 0.63–0.64 s, 32 MiB 0.69–0.74 s, `read(2)` 0.59–1.62 s over two series
/// of three. Mapped pages
/// count as resident: peak RSS 53 MB with 8 MiB, 59–62 MB with 16 MiB,
/// 75 MB with 32 MiB (55 MB with `read(2)`).
#[cfg(not(test))]
pub(crate) const WINDOW: usize = 16 << 20;
/// In the unit tests, small windows, so that small files cross many.
#[cfg(test)]
pub(crate) const WINDOW: usize = 64 << 10;
/// How far ahead of the record being decoded the reader asks for the
/// file's lines (into the second-level cache, see [`Window::prefetch`]).
/// Benchmark capture, 15 interleaved runs: 4 KiB 0.332 s, 8 KiB 0.342 s;
/// in another series of 13 (`T2`), 8 KiB 0.348 s, 16 KiB 0.354 s, 32 KiB
/// 0.380 s.
pub(crate) const PREFETCH: usize = 4 << 10;

/// A registered window: where it lies, and whether a fault past the end
/// of its file was caught in it.
struct Slot {
    used: AtomicBool,
    start: AtomicUsize,
    len: AtomicUsize,
    /// Where in the window the first lost page was ([`NONE`]: none).
    lost_at: AtomicUsize,
}

/// No page lost.
const NONE: usize = usize::MAX;

/// Windows that can be mapped at once in the process (one per open
/// reader); a reader that finds none free reads with `read(2)`.
const SLOTS: usize = 64;

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    used: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    lost_at: AtomicUsize::new(NONE),
};
static REGISTRY: [Slot; SLOTS] = [FREE; SLOTS];

/// The `SIGBUS` action that was in place before ours (set before ours is
/// installed; reading it is an atomic load, safe in the handler).
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
static PAGE: AtomicUsize = AtomicUsize::new(4096);

fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: sysconf and sigaction with valid arguments.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            let mut prev: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut prev) != 0 {
                return;
            }
            let _ = PREVIOUS.set(prev);
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_sigbus as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut()) == 0 {
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
    INSTALLED.load(Ordering::Acquire)
}

/// Catches a fault in a registered window (its file shrank): maps a page
/// of zeros where the lost page was and marks the window, so the load
/// that faulted reads zeros and the reader, seeing the mark, stops. Any
/// other fault goes to the previous action.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for s in &REGISTRY {
        if !s.used.load(Ordering::Acquire) {
            continue;
        }
        let (start, len) = (
            s.start.load(Ordering::Acquire),
            s.len.load(Ordering::Acquire),
        );
        if addr >= start && addr < start + len {
            // SAFETY: replaces one page of our own read-only file mapping
            // (it lies within the registered window) with anonymous zeros;
            // mmap is a plain system call, safe in a signal handler.
            let p = unsafe {
                libc::mmap(
                    (addr & !(page - 1)) as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                // The first loss is kept.
                let _ = s.lost_at.compare_exchange(
                    NONE,
                    addr - start,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                return;
            }
        }
    }
    // Not ours: hand it to the previous action, or let the default one
    // end the process (the fault repeats when this returns).
    // SAFETY: calls the previous handler as the kernel would have, or
    // restores the default action.
    unsafe {
        let (h, flags) = PREVIOUS
            .get()
            .map_or((libc::SIG_DFL, 0), |p| (p.sa_sigaction, p.sa_flags));
        if h == libc::SIG_DFL || h == libc::SIG_IGN {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
        } else if flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
            f(sig);
        }
    }
}

/// A window of a capture file mapped into memory.
pub(crate) struct Window {
    map: memmap2::Mmap,
    /// File offset of the window's first byte.
    base: u64,
    file: File,
    /// The file's size when last looked at.
    size: u64,
    slot: &'static Slot,
}

impl Window {
    /// Maps the start of `file`, a regular file of `size` bytes. Gives the
    /// file back when it cannot be mapped (empty, a file system without
    /// mapping, no free slot, no handler): it is then read with `read(2)`.
    pub(crate) fn open(file: File, size: u64) -> Result<Window, File> {
        if size == 0 || !install() {
            return Err(file);
        }
        let Some(slot) = REGISTRY.iter().find(|s| {
            s.used
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }) else {
            return Err(file);
        };
        slot.lost_at.store(NONE, Ordering::Release);
        let len = (size as usize).min(WINDOW);
        match map(&file, 0, len, slot) {
            Ok(map) => {
                let w = Window {
                    map,
                    base: 0,
                    file,
                    size,
                    slot,
                };
                w.read_ahead();
                Ok(w)
            }
            Err(_) => {
                slot.used.store(false, Ordering::Release);
                Err(file)
            }
        }
    }

    /// The mapped bytes.
    #[inline(always)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// File offset of [`Window::bytes`]'s first byte.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Asks the CPU for the line at `at` in the window (a hint: never
    /// faults, whatever `at` is), into the second-level cache rather than
    /// the first (`T1`): benchmark capture, 15 interleaved runs with 8 KiB
    /// ahead, 0.342 s against 0.344 s; 13 runs, 0.348 s against 0.354 s;
    /// non-temporal (`NTA`) 0.394 s.
    #[inline(always)]
    pub(crate) fn prefetch(&self, at: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch only hints the cache; the address is not
        // dereferenced.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                self.map.as_ptr().wrapping_add(at) as *const i8,
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }

    /// Whether the bytes of the window up to `end` are the file's: touches
    /// the byte before `end` (a fault there, past the end of a file that
    /// shrank, is caught and marks the window) and looks at the mark. The
    /// file shrinks from its end, so if that byte is intact, so is every
    /// byte before it.
    #[inline(always)]
    pub(crate) fn intact(&self, end: usize) -> bool {
        if let Some(b) = end.checked_sub(1).and_then(|k| self.map.get(k)) {
            // SAFETY: a valid reference into the mapping.
            unsafe { std::ptr::read_volatile(b) };
        }
        !self.lost()
    }

    /// Whether a fault past the end of the file was caught in the window.
    pub(crate) fn lost(&self) -> bool {
        self.slot.lost_at.load(Ordering::Acquire) != NONE
    }

    /// The file's size now (after it shrank, say).
    pub(crate) fn size_now(&self) -> Option<u64> {
        self.file.metadata().ok().map(|m| m.len())
    }

    /// The file offset of the first page found lost, if one was.
    pub(crate) fn lost_at(&self) -> Option<u64> {
        match self.slot.lost_at.load(Ordering::Acquire) {
            NONE => None,
            at => Some(self.base + at as u64),
        }
    }

    /// Maps the window on from file offset `from` so that it holds at
    /// least `need` bytes from there (more, up to [`WINDOW`], when the
    /// file has them). `Ok(false)` when the file, looked at again, ends
    /// before `from + need`: the caller reads the rest with `read(2)`.
    pub(crate) fn advance(&mut self, from: u64, need: usize) -> io::Result<bool> {
        if from + need as u64 > self.size {
            self.size = self.file.metadata()?.len();
            if from + need as u64 > self.size {
                return Ok(false);
            }
        }
        let page = PAGE.load(Ordering::Relaxed) as u64;
        let start = from & !(page - 1);
        let len = ((from - start) as usize + need)
            .max(WINDOW)
            .min((self.size - start) as usize);
        self.slot.len.store(0, Ordering::Release);
        self.map = map(&self.file, start, len, self.slot)?;
        self.base = start;
        self.read_ahead();
        Ok(true)
    }

    /// Asks the kernel to read the next window's bytes from disk now, if
    /// they are not in the page cache, so that they are there when the
    /// reader gets to them: a fault in a mapping reads only a little
    /// around the page it needs, and waits for it (the benchmark capture
    /// half evicted, 32 MiB windows: 0.87–0.90 s without, 0.69–0.74 s
    /// with; `read(2)` reads ahead by itself). Only a hint.
    fn read_ahead(&self) {
        use std::os::fd::AsRawFd;
        let from = self.base + self.map.len() as u64;
        if from < self.size {
            // SAFETY: a valid descriptor, owned by `self.file`.
            unsafe {
                libc::posix_fadvise(
                    self.file.as_raw_fd(),
                    from as libc::off_t,
                    WINDOW as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                )
            };
        }
    }

    /// Gives up the mapping: the file, at offset `at`, to read on from.
    pub(crate) fn into_file(self, at: u64) -> io::Result<File> {
        use std::io::Seek;
        let mut f = self.file.try_clone()?;
        f.seek(io::SeekFrom::Start(at))?;
        Ok(f)
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        self.slot.len.store(0, Ordering::Release);
        self.slot.start.store(0, Ordering::Release);
        self.slot.used.store(false, Ordering::Release);
    }
}

/// Maps `len` bytes of `file` from `offset` (page-aligned) read-only and
/// registers them in `slot`.
fn map(file: &File, offset: u64, len: usize, slot: &Slot) -> io::Result<memmap2::Mmap> {
    // SAFETY: a read-only private mapping. The file may change underneath
    // (its pages are then what another process wrote, as with read(2)) or
    // shrink (a fault past its end is caught, see `on_sigbus`).
    let m = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)?
    };
    slot.start.store(m.as_ptr() as usize, Ordering::Release);
    slot.len.store(m.len(), Ordering::Release);
    Ok(m)
}
