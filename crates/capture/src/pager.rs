//! Page-table upkeep for memory-mapped captures, on a helper thread.
//!
//! Reading a mapped file costs the kernel two things per 4 KiB page: mapping
//! it (a fault, or `MADV_POPULATE_READ` ahead of time) and unmapping it once
//! read (`MADV_DONTNEED`, which keeps the resident size small however big the
//! file is). On the benchmark capture that is about a third of the reading
//! thread's time, and the reading thread is the one every other thread waits
//! for. A [`Pager`] does both on its own thread: the reader only publishes
//! how far it got and wakes the pager every [`KICK_EVERY`] bytes (and gives
//! pages back itself should the pager fall [`MAX_LAG`] bytes behind, so the
//! resident size stays bounded on a busy machine).
//!
//! Nothing here affects what is read: if the pager falls behind, the reader
//! faults pages in itself, and a page given back is simply read again from
//! the page cache if touched.

use memmap2::{Mmap, UncheckedAdvice};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Map this many bytes ahead of the reader.
const AHEAD: usize = 4 << 20;
/// ...in steps of this many bytes.
const POPULATE_STEP: usize = 2 << 20;
/// Give pages back once this many bytes behind the reader have accumulated.
const RELEASE_EVERY: usize = 8 << 20;
/// Page size multiple used for releasing (64 KiB covers every Linux page size).
const RELEASE_ALIGN: usize = 64 << 10;
/// The reader wakes the pager each time it has moved on this far.
pub(crate) const KICK_EVERY: usize = 1 << 20;
/// Files up to this size are mapped in whole at once, without a thread.
const SMALL: usize = 2 * AHEAD;
/// If the pager falls this far behind (its thread starved of CPU), the
/// reader gives pages back itself, so the resident size stays bounded.
const MAX_LAG: usize = 16 << 20;

struct Shared {
    /// The reader's position: every byte below it has been read for good.
    pos: AtomicUsize,
    /// Everything below this has been given back.
    released: AtomicUsize,
    stop: AtomicBool,
}

/// Keeps a mapping's pages mapped ahead of the reader and released behind it.
pub(crate) struct Pager {
    shared: Arc<Shared>,
    map: Arc<Mmap>,
    thread: Option<JoinHandle<()>>,
}

impl Pager {
    /// Starts upkeep of `map`. `None` when no thread can be started (the
    /// caller then reads the file instead of mapping it). Small files are
    /// mapped in whole here and need no thread.
    pub(crate) fn start(map: &Arc<Mmap>) -> Option<Pager> {
        let shared = Arc::new(Shared {
            pos: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        if map.len() <= SMALL {
            let _ = map.advise(memmap2::Advice::PopulateRead);
            return Some(Pager {
                shared,
                map: map.clone(),
                thread: None,
            });
        }
        let (m, s) = (map.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("rstscope-pager".into())
            .spawn(move || run(&m, &s))
            .ok()?;
        Some(Pager {
            shared,
            map: map.clone(),
            thread: Some(thread),
        })
    }

    /// The reader has read everything below `pos` for good.
    #[inline]
    pub(crate) fn reached(&self, pos: usize) {
        if let Some(t) = &self.thread {
            self.shared.pos.store(pos, Ordering::Release);
            t.thread().unpark();
            if pos - self.shared.released.load(Ordering::Acquire).min(pos) > MAX_LAG {
                release(&self.map, &self.shared, pos);
            }
        }
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.stop.store(true, Ordering::Release);
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn run(map: &Mmap, s: &Shared) {
    let len = map.len();
    let mut populated = 0usize;
    while !s.stop.load(Ordering::Acquire) {
        let pos = s.pos.load(Ordering::Acquire).min(len);
        // Map ahead first: that is what the reader may be about to wait for.
        let target = pos.saturating_add(AHEAD).min(len);
        populated = populated.max(pos & !(RELEASE_ALIGN - 1));
        while populated < target && !s.stop.load(Ordering::Relaxed) {
            let n = POPULATE_STEP.min(len - populated);
            let _ = map.advise_range(memmap2::Advice::PopulateRead, populated, n);
            populated += n;
        }
        if pos - s.released.load(Ordering::Acquire).min(pos) >= RELEASE_EVERY {
            release(map, s, pos);
        }
        std::thread::park();
    }
}

/// Gives back the pages below `pos` (rounded down) not given back yet.
/// Either thread may call it; a range given back twice is harmless.
fn release(map: &Mmap, s: &Shared, pos: usize) {
    let upto = pos & !(RELEASE_ALIGN - 1);
    let from = s.released.load(Ordering::Acquire);
    if upto <= from {
        return;
    }
    // SAFETY: a read-only file mapping. The reader has moved past `upto`
    // for good (no packet borrowed from below it is alive), and touching a
    // released page again would only read the file anew, never fault.
    let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, from, upto - from) };
    s.released.fetch_max(upto, Ordering::AcqRel);
}
