//! The multi-threaded form of [`crate::stream`].
//!
//! ```text
//!  rstscope-read            rstscope-track (by flow hash)        calling thread
//!  read + decode  --batch-->  Tracker + classify  --groups-->  sink (output)
//!                             (+ render, see Collect)
//! ```
//!
//! (Mapped files add the capture reader's `rstscope-pager` thread.) The
//! trackers run at a lower priority than the reader, see [`yield_to_reader`].
//!
//! Segments cross threads in batches, copied out of the reader's buffer;
//! only RST payloads (evidence text) are carried along, in a per-batch
//! arena, since nothing else of the payload is used.

use crate::{summary, tracker_for, Collect, Options, Stats};
use rstscope_capture::CaptureReader;
use rstscope_core::classify;
use rstscope_core::flow::TrackerStats;
use rstscope_core::wire::{flags, Segment};
use rstscope_core::Timestamp;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Segments per batch. Large, because every hand-over costs a wake-up and,
/// with more threads than cores, a context switch that evicts the cache:
/// on 2 cores sharing memory with other machines, 16,384 took 0.315 s
/// against 0.404 s for 4,096 (medians of 9 interleaved runs); on a quiet
/// machine the two were alike. A paused live input is handed on at once
/// whatever the size (see `Input::Idle`). Per tracker at most 4 batches
/// of 1.6 MB are in use (two queued, one being tracked, one being filled),
/// and as many may wait as spares: each is allocated (and its pages faulted
/// in) once, then reused.
const BATCH: usize = 16384;
/// Most RST payload bytes carried to the tracker (the evidence text limit is lower).
const RST_PAYLOAD: usize = 512;

struct Item {
    ts: Timestamp,
    seg: Segment<'static>,
    pay: (u32, u32),
}

#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    arena: Vec<u8>,
    /// Capture time the whole capture has reached (sent when the input
    /// pauses, so every tracker's clock moves on, not only the one whose
    /// flows are active).
    tick: Option<Timestamp>,
}

impl Batch {
    fn with_capacity() -> Self {
        Batch {
            items: Vec::with_capacity(BATCH),
            arena: Vec::new(),
            tick: None,
        }
    }
}

/// A shard for a flow: symmetric in the two endpoints so both directions
/// of a connection land on the same tracker.
fn shard(seg: &Segment, n: usize) -> usize {
    let fold = |a: &[u8; 16], p: u16| -> u64 {
        let v = u128::from_le_bytes(*a);
        (v as u64 ^ ((v >> 64) as u64).rotate_left(17) ^ p as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
    };
    let h = fold(&seg.src.0, seg.sport).wrapping_add(fold(&seg.dst.0, seg.dport));
    // Multiply-shift instead of `%`: no division in the per-packet path.
    (((h >> 32) * n as u64) >> 32) as usize
}

/// How much lower than the reading thread's the trackers' scheduling
/// priority is (a `nice` increment).
const TRACKER_NICE: i32 = 5;

/// Lowers the calling (tracker) thread's priority below the reading thread's.
///
/// The reading thread feeds every tracker, so when there are more threads
/// than cores it is the one that must not wait: at equal priority the
/// scheduler gives each of the four threads the same share, the reader
/// falls behind, and the trackers then idle on empty queues. Measured on
/// 2 cores (benchmark capture, 15 interleaved runs each): 0.276 s against
/// 0.283 s. Any thread may lower its own priority; failure changes nothing
/// but speed.
fn yield_to_reader() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread (`who` 0 under
    // PRIO_PROCESS names the calling thread on Linux); no memory is shared.
    unsafe {
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        if *libc::__errno_location() == 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, (now + TRACKER_NICE).min(19));
        }
    }
}

pub(crate) fn stream_parallel<C: Collect>(
    mut reader: CaptureReader,
    opts: &Options,
    collect: &C,
    mut sink: impl FnMut(C::Group) -> io::Result<()>,
    mut progress: impl FnMut(u64),
) -> io::Result<(Stats, Option<String>)> {
    let n = opts.threads.max(1);
    let consumed = AtomicU64::new(0);
    let copts = classify::Options {
        idle_threshold: opts.idle_threshold,
    };
    std::thread::scope(|scope| {
        let (out_tx, out_rx) = sync_channel::<C::Group>(4 * n);
        // Emptied batches go back to the reader, so their memory is reused
        // rather than allocated (and faulted in) afresh for every batch.
        let (spare_tx, spare_rx) = sync_channel::<Batch>(4 * n);
        let mut txs = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..n {
            let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(2);
            txs.push(tx);
            let out = out_tx.clone();
            let spare = spare_tx.clone();
            let named = std::thread::Builder::new().name("rstscope-track".into());
            workers.push(named.spawn_scoped(scope, move || -> TrackerStats {
                yield_to_reader();
                let mut tracker = tracker_for(opts);
                for mut batch in rx {
                    for it in &batch.items {
                        if it.pay.1 == 0 {
                            tracker.packet(it.ts, &it.seg);
                        } else {
                            let payload =
                                &batch.arena[it.pay.0 as usize..(it.pay.0 + it.pay.1) as usize];
                            tracker.packet(it.ts, &Segment { payload, ..it.seg });
                        }
                    }
                    if let Some(t) = batch.tick.take() {
                        tracker.advance(t);
                    }
                    let mut done = collect.group();
                    tracker.drain_finished(|c| {
                        if opts.wants(c) {
                            collect.add(&mut done, summary::summarize(c, &copts));
                        }
                    });
                    batch.items.clear();
                    batch.arena.clear();
                    let _ = spare.try_send(batch);
                    if !collect.is_empty(&done) && out.send(done).is_err() {
                        break;
                    }
                }
                let mut rest = collect.group();
                for c in tracker.finish().iter().filter(|c| opts.wants(c)) {
                    collect.add(&mut rest, summary::summarize(c, &copts));
                }
                let _ = out.send(rest);
                tracker.stats
            })?);
        }
        drop(out_tx);
        drop(spare_tx);

        let consumed_ref = &consumed;
        let named = std::thread::Builder::new().name("rstscope-read".into());
        let read = named.spawn_scoped(scope, move || -> (Stats, Option<String>) {
            let mut stats = Stats::default();
            let mut batches: Vec<Batch> = (0..n).map(|_| Batch::with_capacity()).collect();
            let mut now = None;
            let error = crate::read_segments(&mut reader, &mut stats, |input| {
                let (ts, seg) = match input {
                    crate::Input::Segment(ts, seg) => (ts, seg),
                    crate::Input::Progress(bytes) => {
                        consumed_ref.store(bytes, Ordering::Relaxed);
                        return Ok(true);
                    }
                    crate::Input::Idle(bytes) => {
                        // A live pipe paused: hand on what is batched now
                        // rather than when a batch fills up, with the time
                        // reached, to every tracker.
                        consumed_ref.store(bytes, Ordering::Relaxed);
                        if now.is_none() {
                            return Ok(true);
                        }
                        for (k, b) in batches.iter_mut().enumerate() {
                            let fresh = spare_rx.try_recv().unwrap_or_default();
                            let mut full = std::mem::replace(b, fresh);
                            full.tick = now;
                            if txs[k].send(full).is_err() {
                                return Ok(false);
                            }
                        }
                        return Ok(true);
                    }
                };
                now = Some(ts);
                let k = if n == 1 { 0 } else { shard(seg, n) };
                let b = &mut batches[k];
                let pay = if seg.flags & flags::RST != 0 && !seg.payload.is_empty() {
                    let take = seg.payload.len().min(RST_PAYLOAD);
                    let off = b.arena.len() as u32;
                    b.arena.extend_from_slice(&seg.payload[..take]);
                    (off, take as u32)
                } else {
                    (0, 0)
                };
                b.items.push(Item {
                    ts,
                    seg: Segment {
                        payload: &[],
                        ..*seg
                    },
                    pay,
                });
                if b.items.len() >= BATCH {
                    let fresh = spare_rx
                        .try_recv()
                        .unwrap_or_else(|_| Batch::with_capacity());
                    let full = std::mem::replace(b, fresh);
                    // A tracker gone (the output side stopped): stop reading.
                    return Ok(txs[k].send(full).is_ok());
                }
                Ok(true)
            })
            .unwrap_or_else(|e| Some(e.to_string()));
            for (k, b) in batches.into_iter().enumerate() {
                if !b.items.is_empty() {
                    let _ = txs[k].send(b);
                }
            }
            drop(txs);
            (stats, error)
        })?;

        // The calling thread hands each group to the sink; on an output
        // error, stop reading.
        let mut result = Ok(());
        for done in out_rx.iter() {
            if result.is_ok() {
                result = sink(done);
                progress(consumed.load(Ordering::Relaxed));
            }
            // After an error keep draining so the workers can finish.
        }
        let (mut stats, error) = read.join().expect("reader thread panicked");
        for w in workers {
            let t = w.join().expect("tracker thread panicked");
            stats.tcp += t.segments;
            stats.connections += t.connections;
            stats.peak_open += t.peak_open;
        }
        result.map(|_| (stats, error))
    })
}
