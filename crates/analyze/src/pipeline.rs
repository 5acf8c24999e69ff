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
use rstscope_core::flow::{flow_hash, TrackerStats};
use rstscope_core::wire::{flags, Addr, Segment};
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

/// A segment as it crosses to a tracker: [`Segment`]'s fields, copied one
/// by one, plus where an RST's payload lies in the batch's arena.
///
/// Laid out by hand (`repr(C)`) so that fields stored next to each other by
/// the decoder are not next to each other here: copying a just-decoded
/// `Segment` whole, or neighbouring fields together, loads memory in wider
/// pieces than it was stored in, which the CPU cannot forward from its
/// store buffer. On the benchmark capture that was 6 stalled loads per
/// packet on the reading thread (32.6 M in all, counted with AMD's event
/// `r0224`; 9.8 M once the decoder is inlined and the copy goes field by
/// field, and 5% fewer cycles in all).
#[repr(C)]
struct Item {
    ts: Timestamp,
    /// The latest capture time of any packet so far (`ts`, unless time
    /// went backwards): the tracker's clock. Each tracker sees only its
    /// shard's packets; moving its clock by the whole capture's keeps what
    /// it reports the same as with one tracker when timestamps jump about.
    clock: Timestamp,
    src: Addr,
    dst: Addr,
    seq: u32,
    sport: u16,
    dport: u16,
    ack: u32,
    window: u16,
    flags: u8,
    ttl: u8,
    payload_len: u32,
    ip_id: Option<u16>,
    caplen: u32,
    wscale: Option<u8>,
    pay: (u32, u32),
}

impl Item {
    #[inline(always)]
    fn new(ts: Timestamp, clock: Timestamp, s: &Segment, pay: (u32, u32)) -> Item {
        /// Reads one field exactly as wide as it is: the compiler would
        /// otherwise merge neighbouring fields into one wider load (see
        /// [`Item`]). The addresses are stored whole by the decoder (see
        /// `Addr::v4`) and copied plainly.
        #[inline(always)]
        fn get<T: Copy>(v: &T) -> T {
            // SAFETY: `v` is a valid, aligned reference to a `Copy` value.
            unsafe { std::ptr::read_volatile(v) }
        }
        Item {
            ts,
            clock,
            src: s.src,
            dst: s.dst,
            seq: get(&s.seq),
            ack: get(&s.ack),
            payload_len: get(&s.payload_len),
            caplen: get(&s.caplen),
            sport: get(&s.sport),
            dport: get(&s.dport),
            window: get(&s.window),
            ip_id: get(&s.ip_id),
            flags: get(&s.flags),
            ttl: get(&s.ttl),
            wscale: get(&s.wscale),
            pay,
        }
    }

    #[inline(always)]
    fn segment<'a>(&self, payload: &'a [u8]) -> Segment<'a> {
        Segment {
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            payload_len: self.payload_len,
            payload,
            caplen: self.caplen,
            ttl: self.ttl,
            ip_id: self.ip_id,
            wscale: self.wscale,
        }
    }
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

/// The shard of a flow with `flow_hash` `hash` (the same in both
/// directions, so both directions of a connection land on the same
/// tracker). It takes the hash's middle bits, which the trackers' index
/// uses least (the low bits choose a bucket, the top ones tag it).
fn shard(hash: u64, n: usize) -> usize {
    // Multiply-shift instead of `%`: no division in the per-packet path.
    (((hash >> 16) as u32 as u64 * n as u64) >> 32) as usize
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
                        let payload = if it.pay.1 == 0 {
                            &[][..]
                        } else {
                            &batch.arena[it.pay.0 as usize..(it.pay.0 + it.pay.1) as usize]
                        };
                        if it.clock > it.ts {
                            tracker.advance(it.clock);
                        }
                        tracker.packet(it.ts, &it.segment(payload));
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
            // The latest capture time so far (see `Item::clock`).
            let mut now: Option<Timestamp> = None;
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
                let clock = now.map_or(ts, |c| c.max(ts));
                now = Some(clock);
                let k = if n == 1 { 0 } else { shard(flow_hash(seg), n) };
                let b = &mut batches[k];
                let pay = if seg.flags & flags::RST != 0 && !seg.payload.is_empty() {
                    let take = seg.payload.len().min(RST_PAYLOAD);
                    let off = b.arena.len() as u32;
                    b.arena.extend_from_slice(&seg.payload[..take]);
                    (off, take as u32)
                } else {
                    (0, 0)
                };
                b.items.push(Item::new(ts, clock, seg, pay));
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
