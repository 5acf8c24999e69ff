//! The multi-threaded form of [`crate::stream`].
//!
//! ```text
//!  rstscope-read            rstscope-track (by flow hash)        calling thread
//!  read + decode  --batch-->  Tracker + classify  --groups-->  sink (output)
//!                             (+ render, see Collect)
//! ```
//!
//! The trackers run at a lower priority than the reader, see [`yield_to_reader`].
//!
//! Segments cross threads in batches of compact records ([`Item`]), copied
//! out of the reader's buffer; of the payload only an RST's (evidence
//! text) is carried along, in a per-batch arena with IPv6 addresses. The
//! commonest frames become items straight from their bytes
//! ([`common_frame`]), every other one by way of [`wire::decode`].
//! Each tracker is told the whole capture's clock when it is ahead of its
//! own packets' (see [`CLOCK`]), so it reports what one tracker would.

use crate::{tracker_for, Collect, Next, Options, Stats};
use rstscope_capture::CaptureReader;
use rstscope_core::classify;
use rstscope_core::flow::{flow_hash, flow_hash_of, flow_key, TrackerStats};
use rstscope_core::wire::{self, flags, Addr, Segment};
use rstscope_core::Timestamp;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Segments per batch. Small enough that the batches in flight (queued,
/// being filled, being tracked: 196 KB each) stay in the caches between
/// the reading thread writing them and a tracker reading them; big enough
/// that hand-overs (a wake-up, and with more threads than cores a context
/// switch) stay rare. Benchmark capture, 2 cores, `scripts/ab` with 31
/// interleaved runs: 4,096 segments a batch with 16 queued took 0.224 s
/// against 0.238 s for 16,384 with 8 (5.5% fewer cycles, `perf stat`);
/// 2,048 with 32, and 4,096 with
/// 12 to 24, did as well within the noise; 8,192 with 8 less well. (With
/// only 2 queued, 16,384 had beaten 4,096: 0.315 s against 0.404 s.) A
/// paused live input is handed on at once whatever the size (see
/// `Input::Idle`). Per tracker at most [`QUEUED_BATCHES`] + 2 batches are
/// in use, and a few more may wait as spares: each is allocated (and its
/// pages faulted in) once, then reused.
const BATCH: usize = 4096;
/// Full batches that may wait for each tracker before the reading thread
/// waits for it. Too few, and the reading thread is often stopped by one
/// tracker's full queue while the others have run dry, leaving a core idle
/// (with 2 batches of 16,384, `perf sched`: 56–94 ms idle of the
/// 2 × 0.21 s, against 21–42 ms with 8); too many, and the batches in
/// flight no longer fit the caches (see [`BATCH`]). Peak RSS on the
/// benchmark capture: 56–63 MB over the day, against 60–64 MB with 8
/// batches of 16,384.
const QUEUED_BATCHES: usize = 16;
/// Most RST payload bytes carried to the tracker (the evidence text limit is lower).
const RST_PAYLOAD: usize = 512;

/// A segment as it crosses to a tracker, in 48 bytes (`repr(C)`: these
/// fields in this order, 2 bytes of padding at the end): batches are
/// written by the reading thread and read by a tracker through main
/// memory, so their size is memory traffic (a `Segment` plus its time took
/// 88 bytes).
/// IPv6 addresses and an RST's payload go to the batch's arena.
///
/// Filled field by field, each read exactly as wide as it is
/// ([`Item::push`]): copying a just-decoded `Segment` whole, or letting the
/// compiler merge neighbouring fields into one load, loads memory in wider
/// pieces than it was stored in, which the CPU cannot forward from its
/// store buffer. On the benchmark capture that was 6 stalled loads per
/// packet on the reading thread (32.6 M in all, counted with AMD's event
/// `r0224`; 8–10 M once the decoded segment was matched by reference and
/// copied field by field, and 5% fewer cycles in all; 9.5–9.8 M with the
/// reading loop as it is now).
#[repr(C)]
#[derive(Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Item {
    /// Capture time (ns); for a [`CLOCK`] item, the time to move the
    /// tracker's clock to.
    ts: i64,
    /// IPv4: source and destination address (low and high half). IPv6:
    /// unused, the two addresses lie in the arena at `at`.
    addrs: u64,
    seq: u32,
    sport: u16,
    dport: u16,
    ack: u32,
    window: u16,
    flags: u8,
    ttl: u8,
    payload_len: u32,
    ip_id: u16,
    /// RST payload bytes in the arena, after the addresses if IPv6.
    pay_len: u16,
    /// The [`flow_key`] of its flow, computed for sharding already, so the
    /// tracker does not hash the addresses again (1.1% of all instructions).
    /// (The items' data lie in the arena in the items' order, so where an
    /// item's starts is not stored: the tracker counts it.)
    key: u32,
    wscale: u8,
    /// [`V6`], [`HAS_IP_ID`], [`HAS_WSCALE`], [`CUT`], [`CLOCK`].
    bits: u8,
}

const _: () = assert!(std::mem::size_of::<Item>() == 48);

/// The addresses are IPv6, in the arena.
const V6: u8 = 1;
/// `ip_id` is set (IPv4).
const HAS_IP_ID: u8 = 2;
/// `wscale` is set.
const HAS_WSCALE: u8 = 4;
/// The snap length cut the payload (`caplen < payload_len`), which is all
/// the tracker asks of `caplen`.
const CUT: u8 = 8;
/// Not a segment: the whole capture's clock has reached `ts`, ahead of
/// this tracker's packets (time went backwards, or a live input paused).
/// Each tracker sees only its shard's packets; moving its clock with the
/// whole capture's keeps what it reports, and when, the same as with one
/// tracker.
const CLOCK: u8 = 16;

impl Item {
    /// Appends `s`, captured at `ts`, to `b`.
    #[inline(always)]
    fn push(b: &mut Batch, ts: Timestamp, s: &Segment, key: u32) {
        /// Reads one field exactly as wide as it is: the compiler would
        /// otherwise merge neighbouring fields into one wider load (see
        /// [`Item`]).
        #[inline(always)]
        fn get<T: Copy>(v: &T) -> T {
            // SAFETY: `v` is a valid, aligned reference to a `Copy` value.
            unsafe { std::ptr::read_volatile(v) }
        }
        let (src, dst) = (s.src, s.dst);
        let mut bits = 0;
        let addrs = if src.is_v4() && dst.is_v4() {
            let w = |a: Addr| u32::from_le_bytes([a.0[12], a.0[13], a.0[14], a.0[15]]) as u64;
            w(src) | (w(dst) << 32)
        } else {
            bits |= V6;
            b.arena.extend_from_slice(&src.0);
            b.arena.extend_from_slice(&dst.0);
            0
        };
        let fl = get(&s.flags);
        let mut pay_len = 0;
        if fl & flags::RST != 0 && !s.payload.is_empty() {
            let take = s.payload.len().min(RST_PAYLOAD);
            b.arena.extend_from_slice(&s.payload[..take]);
            pay_len = take as u16;
        }
        let ip_id = get(&s.ip_id);
        let wscale = get(&s.wscale);
        let payload_len = get(&s.payload_len);
        bits |= if ip_id.is_some() { HAS_IP_ID } else { 0 }
            | if wscale.is_some() { HAS_WSCALE } else { 0 }
            | if get(&s.caplen) < payload_len { CUT } else { 0 };
        b.items.push(Item {
            ts: ts.0,
            addrs,
            seq: get(&s.seq),
            sport: get(&s.sport),
            dport: get(&s.dport),
            ack: get(&s.ack),
            window: get(&s.window),
            flags: fl,
            ttl: get(&s.ttl),
            payload_len,
            ip_id: ip_id.unwrap_or(0),
            pay_len,
            key,
            wscale: wscale.unwrap_or(0),
            bits,
        });
    }

    /// Appends a [`CLOCK`] item to `b`.
    fn push_clock(b: &mut Batch, clock: Timestamp) {
        b.items.push(Item {
            ts: clock.0,
            bits: CLOCK,
            ..Default::default()
        });
    }

    /// The segment again, borrowing from `arena`, where its data (if any)
    /// start at `*at`; moves `*at` past them.
    #[inline(always)]
    fn segment<'a>(&self, arena: &'a [u8], at: &mut usize) -> Segment<'a> {
        let start = *at;
        let (src, dst, pay_at) = if self.bits & V6 == 0 {
            let a = |w: u64| Addr::v4((w as u32).to_le_bytes());
            (a(self.addrs), a(self.addrs >> 32), start)
        } else {
            let a = |k: usize| {
                let b = arena.get(k..k + 16).and_then(|b| b.try_into().ok());
                Addr(b.unwrap_or([0; 16]))
            };
            (a(start), a(start + 16), start + 32)
        };
        *at = pay_at + self.pay_len as usize;
        Segment {
            src,
            dst,
            sport: self.sport,
            dport: self.dport,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            payload_len: self.payload_len,
            payload: arena
                .get(pay_at..pay_at + self.pay_len as usize)
                .unwrap_or(&[]),
            caplen: if self.bits & CUT != 0 {
                0
            } else {
                self.payload_len
            },
            ttl: self.ttl,
            ip_id: (self.bits & HAS_IP_ID != 0).then_some(self.ip_id),
            wscale: (self.bits & HAS_WSCALE != 0).then_some(self.wscale),
        }
    }
}

#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    arena: Vec<u8>,
}

impl Batch {
    fn with_capacity() -> Self {
        Batch {
            items: Vec::with_capacity(BATCH),
            arena: Vec::new(),
        }
    }
}

/// The commonest frame, decoded straight from its bytes by [`common_frame`].
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Common<'a> {
    item: Item,
    /// The [`flow_hash`] of its flow.
    hash: u64,
    /// IPv6: the source and destination address (32 bytes of the frame),
    /// which go to the batch's arena ([`V6`] is set in the item).
    v6: Option<&'a [u8]>,
}

/// The commonest frame as an item, decoded straight from its bytes:
/// Ethernet (untagged or with one 802.1Q tag), IPv4 (with or without
/// options) or IPv6 without extension headers, and TCP without SYN or RST.
/// `None` for anything else, which takes the general way
/// ([`wire::decode`] and [`Item::push`]).
///
/// Why a second decoder: on the reading thread, building a [`Segment`] and
/// copying it into an item cost about a third of the instructions, and the
/// reading thread shares the two cores with the trackers (benchmark capture,
/// 21 interleaved runs: 4.07 G against 3.85 G instructions, 0.266 s against
/// 0.256 s; IPv6, 18% of the benchmark's packets, took the general way
/// until later: 1.24 G against 1.14 G instructions on the reading thread,
/// callgrind). It accepts only what `wire::decode` decodes the same way,
/// and its items (and arena bytes) are exactly those `Item::push` makes of
/// `wire::decode`'s segment: a test checks this on every cut of many
/// frames, and the fuzz target compares one tracking thread (which does
/// not use it) with three.
///
/// [`wire::decode`]: rstscope_core::wire::decode
#[inline(always)]
fn common_frame(ts: Timestamp, linktype: u32, f: &[u8]) -> Option<Common<'_>> {
    if linktype != wire::linktype::ETHERNET {
        return None;
    }
    let be16 = |b: &[u8], at: usize| Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
    let mut at = 12;
    let mut et = be16(f, at)?;
    if et == 0x8100 {
        at += 4;
        et = be16(f, at)?;
    }
    let ip = f.get(at + 2..)?;
    match et {
        0x0800 => common_v4(ts, ip),
        0x86dd => common_v6(ts, ip),
        // (Another tag, or anything but IP.)
        _ => None,
    }
}

/// [`common_frame`]'s IPv4 packet (with or without options), from its IP header.
#[inline(always)]
fn common_v4(ts: Timestamp, ip: &[u8]) -> Option<Common<'_>> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = match u16::from_be_bytes([ip[2], ip[3]]) as usize {
        0 => ip.len(),
        t => t,
    };
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if ihl < 20 || ip.len() < ihl || total < ihl || frag & 0x1fff != 0 || ip[9] != 6 {
        return None;
    }
    let t = common_tcp(&ip[ihl..ip.len().min(total)], total - ihl)?;
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let dst = [ip[16], ip[17], ip[18], ip[19]];
    let hash = flow_hash_of(&Addr::v4(src), t.sport, &Addr::v4(dst), t.dport);
    let addrs = u32::from_le_bytes(src) as u64 | (u32::from_le_bytes(dst) as u64) << 32;
    let ip_id = u16::from_be_bytes([ip[4], ip[5]]);
    let item = t.item(ts, addrs, ip[8], ip_id, flow_key(hash), HAS_IP_ID);
    Some(Common {
        item,
        hash,
        v6: None,
    })
}

/// [`common_frame`]'s IPv6 packet (extension headers take the general
/// way), from its IP header.
#[inline(always)]
fn common_v6(ts: Timestamp, ip: &[u8]) -> Option<Common<'_>> {
    if ip.len() < 40 || ip[0] >> 4 != 6 || ip[6] != 6 {
        return None;
    }
    let wire_end = match u16::from_be_bytes([ip[4], ip[5]]) as usize {
        0 => ip.len(),
        plen => 40 + plen,
    };
    let t = common_tcp(&ip[40..ip.len().min(wire_end)], wire_end - 40)?;
    let addrs = &ip[8..40];
    let a = |k: usize| Addr(addrs[k..k + 16].try_into().unwrap_or([0; 16]));
    let (src, dst) = (a(0), a(16));
    // Mapped IPv4 addresses on both sides make an IPv4 item
    // (`Item::push`): the general way.
    if src.is_v4() && dst.is_v4() {
        return None;
    }
    let hash = flow_hash_of(&src, t.sport, &dst, t.dport);
    let item = t.item(ts, 0, ip[7], 0, flow_key(hash), V6);
    Some(Common {
        item,
        hash,
        v6: Some(addrs),
    })
}

/// The TCP header fields of a [`common_frame`].
struct CommonTcp {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    window: u16,
    flags: u8,
    payload_len: u32,
    cut: bool,
}

/// The TCP header of a [`common_frame`], from `t`, the segment as captured,
/// `wire_len` bytes long on the wire: `None` if it takes the general way
/// (SYN, RST, or a header that does not fit).
#[inline(always)]
fn common_tcp(t: &[u8], wire_len: usize) -> Option<CommonTcp> {
    if t.len() < 20 {
        return None;
    }
    let doff = ((t[12] >> 4) as usize) * 4;
    let fl = t[13];
    if doff < 20 || doff > wire_len || fl & (flags::SYN | flags::RST) != 0 {
        return None;
    }
    let payload_len = (wire_len - doff) as u32;
    let caplen = t.len().saturating_sub(doff).min(wire_len - doff) as u32;
    Some(CommonTcp {
        sport: u16::from_be_bytes([t[0], t[1]]),
        dport: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        window: u16::from_be_bytes([t[14], t[15]]),
        flags: fl,
        payload_len,
        cut: caplen < payload_len,
    })
}

impl CommonTcp {
    /// The item, with the IP layer's fields and `bits` ([`V6`] or [`HAS_IP_ID`]).
    #[inline(always)]
    fn item(&self, ts: Timestamp, addrs: u64, ttl: u8, ip_id: u16, key: u32, bits: u8) -> Item {
        Item {
            ts: ts.0,
            addrs,
            seq: self.seq,
            sport: self.sport,
            dport: self.dport,
            ack: self.ack,
            window: self.window,
            flags: self.flags,
            ttl,
            payload_len: self.payload_len,
            ip_id,
            pay_len: 0,
            key,
            wscale: 0,
            bits: bits | if self.cut { CUT } else { 0 },
        }
    }
}

/// The shard of a flow with `flow_hash` `hash` (the same in both
/// directions, so both directions of a connection land on the same
/// tracker). It takes the top bits of the hash's [`flow_key`]; the
/// trackers' index spreads the key by a multiplication, and its bucket
/// comes from the key's low bits.
fn shard(hash: u64, n: usize) -> usize {
    // Multiply-shift instead of `%`: no division in the per-packet path.
    ((flow_key(hash) as u64 * n as u64) >> 32) as usize
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
    std::thread::scope(|scope| {
        let (out_tx, out_rx) = sync_channel::<C::Group>(4 * n);
        // Emptied batches go back to the reader, so their memory is reused
        // rather than allocated (and faulted in) afresh for every batch.
        let (spare_tx, spare_rx) = sync_channel::<Batch>(4 * n);
        let mut txs = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..n {
            let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(QUEUED_BATCHES);
            txs.push(tx);
            let out = out_tx.clone();
            let spare = spare_tx.clone();
            let named = std::thread::Builder::new().name("rstscope-track".into());
            workers.push(named.spawn_scoped(scope, move || -> TrackerStats {
                yield_to_reader();
                let mut tracker = tracker_for(opts);
                let mut scratch = classify::Scratch::default();
                for mut batch in rx {
                    let mut at = 0;
                    for it in &batch.items {
                        if it.bits & CLOCK != 0 {
                            tracker.advance(Timestamp(it.ts));
                        } else {
                            let seg = it.segment(&batch.arena, &mut at);
                            tracker.packet_keyed(Timestamp(it.ts), &seg, it.key);
                        }
                    }
                    let mut done = collect.group();
                    tracker.drain_finished(|c| {
                        if let Some(s) = opts.summary(c, &mut scratch) {
                            collect.add(&mut done, s, &mut scratch);
                        }
                    });
                    batch.items.clear();
                    batch.arena.clear();
                    let _ = spare.try_send(batch);
                    if collect.is_empty(&done) {
                        collect.discard(done);
                    } else if out.send(done).is_err() {
                        break;
                    }
                }
                let mut rest = collect.group();
                for c in tracker.finish() {
                    if let Some(s) = opts.summary(&c, &mut scratch) {
                        collect.add(&mut rest, s, &mut scratch);
                    }
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
            // The latest capture time so far (see `CLOCK`).
            let mut now: Option<Timestamp> = None;
            // The latest time each tracker has been given.
            let mut told = vec![Timestamp(i64::MIN); n];
            let error = crate::read_segments(
                &mut reader,
                &mut stats,
                // Inlined into the reading loop, as the decoder is: the
                // whole per-packet path is then one function (see
                // `CaptureReader::for_each_buffered`).
                #[inline(always)]
                |input| {
                    // The segment as an item already, or to be made one.
                    let (ts, hash, item) = match input {
                        crate::Input::Frame(ts, linktype, frame) => {
                            match common_frame(ts, linktype, frame) {
                                Some(c) => (ts, c.hash, Ok((c.item, c.v6))),
                                None => return Ok(Next::Decode),
                            }
                        }
                        crate::Input::Segment(ts, seg) => (ts, flow_hash(seg), Err(seg)),
                        crate::Input::Progress(bytes) => {
                            consumed_ref.store(bytes, Ordering::Relaxed);
                            return Ok(Next::Go);
                        }
                        crate::Input::Idle(bytes) => {
                            // A live pipe paused: hand on what is batched now
                            // rather than when a batch fills up, with the time
                            // reached, to every tracker (so each retires what
                            // it should by then, not only the one whose flows
                            // are active).
                            consumed_ref.store(bytes, Ordering::Relaxed);
                            let Some(clock) = now else {
                                return Ok(Next::Go);
                            };
                            for (k, b) in batches.iter_mut().enumerate() {
                                Item::push_clock(b, clock);
                                told[k] = clock;
                                let fresh = spare_rx.try_recv().unwrap_or_default();
                                if txs[k].send(std::mem::replace(b, fresh)).is_err() {
                                    return Ok(Next::Stop);
                                }
                            }
                            return Ok(Next::Go);
                        }
                    };
                    let k = if n == 1 { 0 } else { shard(hash, n) };
                    let b = &mut batches[k];
                    match now {
                        Some(clock) if clock > ts => {
                            if told[k] < clock {
                                Item::push_clock(b, clock);
                                told[k] = clock;
                            }
                        }
                        _ => {
                            now = Some(ts);
                            told[k] = ts;
                        }
                    }
                    match item {
                        Ok((item, v6)) => {
                            if let Some(a) = v6 {
                                b.arena.extend_from_slice(a);
                            }
                            b.items.push(item)
                        }
                        Err(seg) => Item::push(b, ts, seg, flow_key(hash)),
                    }
                    if b.items.len() >= BATCH {
                        let fresh = spare_rx
                            .try_recv()
                            .unwrap_or_else(|_| Batch::with_capacity());
                        let full = std::mem::replace(b, fresh);
                        // A tracker gone (the output side stopped): stop reading.
                        if txs[k].send(full).is_err() {
                            return Ok(Next::Stop);
                        }
                    }
                    Ok(Next::Go)
                },
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstscope_core::wire::linktype::ETHERNET;

    /// An Ethernet frame with IPv4 and TCP, as [`frame`] builds it.
    #[derive(Clone, Copy)]
    struct Spec {
        /// 802.1Q (or other) tags.
        tags: &'static [u16],
        /// Bytes of IP options.
        ip_opts: usize,
        /// TCP flags.
        fl: u8,
        /// Bytes of TCP options.
        tcp_opts: usize,
        /// Payload bytes.
        pay: usize,
        /// The IP total length field (`None`: the right one).
        total: Option<u16>,
        /// The IP flags and fragment offset field.
        frag: u16,
        /// The IP protocol (IPv6: the next header).
        proto: u8,
        /// IPv6 instead of IPv4 (`ip_opts`: bytes of hop-by-hop options
        /// header, a multiple of 8; `frag` unused).
        v6: bool,
        /// The addresses (IPv4: the last 4 bytes of each).
        src: [u8; 16],
        dst: [u8; 16],
    }

    const ACK: Spec = Spec {
        tags: &[],
        ip_opts: 0,
        fl: flags::ACK,
        tcp_opts: 0,
        pay: 0,
        total: None,
        frag: 0x4000,
        proto: 6,
        v6: false,
        src: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 10, 1, 2, 3],
        dst: [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2, 0, 0, 0, 0, 198, 18, 0, 5,
        ],
    };

    /// `s` over IPv6.
    fn v6(s: Spec) -> Spec {
        Spec { v6: true, ..s }
    }

    fn frame(s: Spec) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        for &t in s.tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&[0, 100]);
        }
        let ihl = if s.v6 { 40 } else { 20 } + s.ip_opts;
        let doff = 20 + s.tcp_opts;
        if s.v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            let len = s.total.unwrap_or((ihl - 40 + doff + s.pay) as u16);
            f.extend_from_slice(&len.to_be_bytes());
            let next = if s.ip_opts > 0 { 0 } else { s.proto };
            f.extend_from_slice(&[next, 57]); // next header, hop limit
            f.extend_from_slice(&s.src);
            f.extend_from_slice(&s.dst);
            if s.ip_opts > 0 {
                // Hop-by-hop options (PadN).
                f.extend_from_slice(&[s.proto, (s.ip_opts / 8 - 1) as u8, 1]);
                f.push((s.ip_opts - 4) as u8);
                f.extend((4..s.ip_opts).map(|_| 0u8));
            }
        } else {
            f.extend_from_slice(&[0x08, 0x00]);
            let len = s.total.unwrap_or((ihl + doff + s.pay) as u16);
            f.push(0x40 | (ihl / 4) as u8);
            f.push(0);
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34]); // IP ID
            f.extend_from_slice(&s.frag.to_be_bytes());
            f.extend_from_slice(&[57, s.proto, 0, 0]); // TTL, protocol, checksum
            f.extend_from_slice(&s.src[12..]);
            f.extend_from_slice(&s.dst[12..]);
            f.extend((0..s.ip_opts).map(|_| 1u8));
        }
        f.extend_from_slice(&[0xc0, 0x01, 0x01, 0xbb]); // 49153 -> 443
        f.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        f.push(((doff / 4) as u8) << 4);
        f.push(s.fl);
        f.extend_from_slice(&[0x01, 0xf6, 0, 0, 0, 0]);
        f.extend((0..s.tcp_opts).map(|_| 1u8));
        f.extend((0..s.pay).map(|k| b'a' + (k % 26) as u8));
        f
    }

    /// What the general way makes of `f`: `wire::decode`, then
    /// `Item::push`; the item, its flow hash and the arena's bytes.
    fn general(ts: Timestamp, f: &[u8]) -> Option<(Item, u64, Vec<u8>)> {
        let seg = wire::decode(ETHERNET, f).ok()?;
        let mut b = Batch::default();
        let hash = flow_hash(&seg);
        Item::push(&mut b, ts, &seg, flow_key(hash));
        Some((b.items.pop()?, hash, b.arena))
    }

    /// Checks `common_frame` against the general way on `f`; whether it took it.
    fn agrees(f: &[u8]) -> bool {
        let ts = Timestamp(1_700_000_000_123_456_789);
        match common_frame(ts, ETHERNET, f) {
            Some(c) => {
                let arena = c.v6.map(|a| a.to_vec()).unwrap_or_default();
                assert_eq!(
                    Some((c.item, c.hash, arena)),
                    general(ts, f),
                    "frame {f:02x?}"
                );
                true
            }
            None => false,
        }
    }

    #[test]
    fn common_frames_decode_as_the_general_way() {
        let (a, p, fin) = (flags::ACK, flags::PSH, flags::FIN);
        let mut frames = Vec::new();
        for tags in [&[][..], &[0x8100], &[0x8100, 0x8100], &[0x88a8]] {
            for (v6, ip_opts, tcp_opts) in [
                (false, 0, 0),
                (false, 4, 12),
                (false, 40, 40),
                (true, 0, 0),
                (true, 0, 12),
                (true, 8, 12),
                (true, 16, 40),
            ] {
                for fl in [a, a | p, a | fin, flags::SYN, a | flags::RST, 0] {
                    for pay in [0, 1, 100] {
                        frames.push(frame(Spec {
                            tags,
                            ip_opts,
                            fl,
                            tcp_opts,
                            pay,
                            v6,
                            ..ACK
                        }));
                    }
                }
            }
        }
        // Odd IP headers: offload (total 0), total shorter or longer than
        // the frame, a fragment, another protocol.
        for total in [Some(0), Some(30), Some(60), Some(1500)] {
            frames.push(frame(Spec {
                total,
                pay: 50,
                ..ACK
            }));
        }
        frames.push(frame(Spec {
            frag: 0x2001,
            pay: 50,
            ..ACK
        }));
        frames.push(frame(Spec {
            proto: 17,
            pay: 50,
            ..ACK
        }));
        // The same over IPv6, and mapped IPv4 addresses on one side or both.
        for total in [Some(0), Some(10), Some(60), Some(1500)] {
            frames.push(frame(v6(Spec {
                total,
                pay: 50,
                ..ACK
            })));
        }
        frames.push(frame(v6(Spec {
            proto: 17,
            pay: 50,
            ..ACK
        })));
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3];
        frames.push(frame(v6(Spec {
            src: mapped,
            pay: 5,
            ..ACK
        })));
        frames.push(frame(v6(Spec {
            src: mapped,
            dst: mapped,
            pay: 5,
            ..ACK
        })));

        // Every frame cut at every byte (a snap length); the whole frames
        // of the common kind must be taken.
        let mut taken = 0;
        for f in &frames {
            for cut in 0..=f.len() {
                taken += agrees(&f[..cut]) as usize;
            }
        }
        let common = frame(Spec {
            tags: &[0x8100],
            ip_opts: 4,
            fl: a | p,
            tcp_opts: 12,
            pay: 100,
            ..ACK
        });
        assert!(agrees(&common) && agrees(&frame(ACK)));
        assert!(agrees(&frame(v6(Spec { pay: 100, ..ACK }))));
        assert!(agrees(&frame(v6(Spec {
            tags: &[0x8100],
            tcp_opts: 12,
            ..ACK
        }))));
        assert!(
            !agrees(&frame(v6(Spec { ip_opts: 8, ..ACK }))),
            "extension headers take the general way"
        );
        let syn = frame(Spec {
            fl: flags::SYN,
            ..ACK
        });
        assert!(!agrees(&syn), "SYNs take the general way (window scale)");
        assert!(taken > 1000, "only {taken} cuts taken");

        // Random damage to the headers.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let mut f = frames[next() as usize % frames.len()].clone();
            for _ in 0..1 + next() % 3 {
                let at = next() as usize % f.len().min(80);
                f[at] ^= 1 << (next() % 8);
            }
            let cut = f.len() - next() as usize % 8;
            agrees(&f[..cut.min(f.len())]);
        }
    }
}
