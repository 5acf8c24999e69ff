//! One proxied connection: two pumps (client→upstream, upstream→client)
//! and a controller for the timed reset toxics, all in one task.
//!
//! A pump splices (zero-copy) while no toxic on its stream needs the bytes,
//! and copies through userspace while one does; it re-decides whenever the
//! toxics change, after draining what it already moved, so no byte is lost
//! or reordered. EOF on one side becomes shutdown(SHUT_WR) on the other
//! (half-close). A reset is a close with SO_LINGER {1,0}, done only on the
//! side where the toxic fires; every other close is clean (FIN, after
//! draining what the peer still sends, so the kernel has no unread data to
//! turn into an RST).

use crate::metrics::{ConnMetrics, Events, Metrics};
use crate::splice::Pipe;
use crate::toxic::{Kind, Stream, Toxic};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstscope_core::{Cause, ResetEvent, Sender, Side, Source, Timestamp};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::sleep_until;

/// What every connection of a running proxy sees of it.
pub(crate) struct Snapshot {
    pub toxics: Vec<Arc<Toxic>>,
    /// The proxy was disabled or deleted: close cleanly.
    pub closing: bool,
}

/// Per running proxy instance.
pub(crate) struct Shared {
    pub name: String,
    pub upstream: String,
    pub rx: watch::Receiver<Arc<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<Events>,
    pub seed: u64,
    pub active: AtomicU64,
    pub slot_freed: Notify,
}

/// Connection-local state shared by the pumps and the controller.
pub(crate) struct Ctx {
    start: Instant,
    /// Bytes forwarded per stream (0 upstream, 1 downstream).
    bytes: [AtomicU64; 2],
    /// Nanoseconds since `start` of the last forwarded byte.
    last_activity: AtomicU64,
    rolls: Mutex<Rolls>,
    m: ConnMetrics,
}

struct Rolls {
    rng: StdRng,
    seen: Vec<Seen>,
}

#[derive(Clone, Copy)]
struct Seen {
    uid: u64,
    on: bool,
    at: Instant,
    bytes_at: [u64; 2],
}

fn si(s: Stream) -> usize {
    match s {
        Stream::Upstream => 0,
        Stream::Downstream => 1,
    }
}

/// splitmix64: spreads connection ids over the seed space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Ctx {
    pub fn new(sh: &Shared, id: u64) -> Self {
        Ctx {
            start: Instant::now(),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            last_activity: AtomicU64::new(0),
            rolls: Mutex::new(Rolls {
                rng: StdRng::seed_from_u64(sh.seed ^ mix(id)),
                seen: Vec::new(),
            }),
            m: sh.metrics.conn(&sh.name),
        }
    }

    /// The per-connection roll of `t` (made the first time this connection
    /// sees it), when it started to apply and the byte counts then.
    fn seen(&self, t: &Toxic) -> Seen {
        let mut r = self.rolls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = r.seen.iter().find(|s| s.uid == t.uid) {
            return *s;
        }
        let on = roll(&mut r.rng, t.toxicity);
        let s = Seen {
            uid: t.uid,
            on,
            at: Instant::now(),
            bytes_at: [
                self.bytes[0].load(Ordering::Relaxed),
                self.bytes[1].load(Ordering::Relaxed),
            ],
        };
        r.seen.push(s);
        s
    }

    /// A fresh roll (per-chunk toxicity).
    fn roll_now(&self, p: f32) -> bool {
        let mut r = self.rolls.lock().unwrap_or_else(|p| p.into_inner());
        roll(&mut r.rng, p)
    }

    fn rand_range(&self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let mut r = self.rolls.lock().unwrap_or_else(|p| p.into_inner());
        r.rng.gen_range(lo..=hi)
    }

    fn forget_removed(&self, snap: &Snapshot) {
        let mut r = self.rolls.lock().unwrap_or_else(|p| p.into_inner());
        r.seen
            .retain(|s| snap.toxics.iter().any(|t| t.uid == s.uid));
    }

    /// Whether toxic `t` applies to this connection (per-connection roll).
    pub fn applies(&self, t: &Toxic) -> bool {
        self.seen(t).on
    }

    fn moved(&self, s: usize, n: usize, copy: bool) {
        self.bytes[s].fetch_add(n as u64, Ordering::Relaxed);
        self.last_activity
            .store(self.start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.m.bytes[s][copy as usize].inc_by(n as u64);
    }

    fn used_since(&self, seen: &Seen, s: usize) -> u64 {
        self.bytes[s]
            .load(Ordering::Relaxed)
            .saturating_sub(seen.bytes_at[s])
    }
}

fn roll(rng: &mut StdRng, p: f32) -> bool {
    if p >= 1.0 {
        true
    } else if p <= 0.0 {
        false
    } else {
        rng.gen::<f32>() < p
    }
}

/// Where a reset goes, and which toxic asked for it.
pub(crate) struct ResetReq {
    pub client: bool,
    pub upstream: bool,
    pub toxic: Arc<Toxic>,
}

impl ResetReq {
    fn toward(t: &Arc<Toxic>) -> ResetReq {
        ResetReq {
            client: t.stream == Stream::Downstream,
            upstream: t.stream == Stream::Upstream,
            toxic: t.clone(),
        }
    }
}

pub(crate) enum End {
    /// Both directions reached EOF and were half-closed.
    Done,
    /// Close both sides cleanly.
    Close,
    /// Inject a reset.
    Reset(ResetReq),
    /// A socket failed (the peer reset or vanished). `client` says which.
    Failed { client: bool },
}

enum PumpEnd {
    Eof,
    End(End),
}

enum Step {
    Again,
    Eof,
    End(End),
}

const COPY_BUF: usize = 64 * 1024;
const SPLICE_MAX: usize = 1 << 20;

/// Runs one connection to its end. `client` is the accepted socket.
pub(crate) async fn run(sh: Arc<Shared>, client: TcpStream, id: u64) {
    let ctx = Ctx::new(&sh, id);
    ctx.m.active.inc();
    let _ = client.set_nodelay(true);
    let snap = sh.rx.borrow().clone();
    let upstream = match tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect(sh.upstream.as_str()),
    )
    .await
    {
        Ok(Ok(u)) => u,
        _ => {
            let refuse = snap
                .toxics
                .iter()
                .find(|t| matches!(t.kind, Kind::RefuseWhenDown) && ctx.applies(t));
            match refuse {
                Some(t) => {
                    record(
                        &sh,
                        &client,
                        t,
                        Cause::Refused,
                        Side::Responder,
                        "client",
                        "the upstream could not be reached".into(),
                    );
                    abort(client);
                }
                None => graceful_close(&client).await,
            }
            ctx.m.active.dec();
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let end = {
        let a = pump(&ctx, &client, &upstream, Stream::Upstream, sh.rx.clone());
        let b = pump(&ctx, &upstream, &client, Stream::Downstream, sh.rx.clone());
        let c = controller(&ctx, sh.rx.clone());
        tokio::pin!(a, b, c);
        let (mut a_done, mut b_done) = (false, false);
        loop {
            // `biased`: a reset toxic that is due wins over the pumps; with
            // tokio's random branch order a fast close could otherwise slip
            // in first (seen as a FIN where the seeded roll said RST).
            tokio::select! {
                biased;
                e = &mut c => break e,
                r = &mut a, if !a_done => match r {
                    PumpEnd::Eof => { a_done = true; if b_done { break End::Done } }
                    PumpEnd::End(e) => break e,
                },
                r = &mut b, if !b_done => match r {
                    PumpEnd::Eof => { b_done = true; if a_done { break End::Done } }
                    PumpEnd::End(e) => break e,
                },
            }
        }
    };
    match end {
        End::Done => {}
        End::Close => {
            tokio::join!(graceful_close(&client), graceful_close(&upstream));
        }
        End::Reset(req) => {
            let why = reset_why(&ctx, &req.toxic);
            let cause = match req.toxic.kind {
                Kind::IdleReset { .. } => Cause::IdleTimeout,
                _ => Cause::AbortiveClose,
            };
            if req.client {
                record(
                    &sh,
                    &client,
                    &req.toxic,
                    cause,
                    Side::Responder,
                    "client",
                    why.clone(),
                );
            }
            if req.upstream {
                record(
                    &sh,
                    &upstream,
                    &req.toxic,
                    cause,
                    Side::Originator,
                    "upstream",
                    why,
                );
            }
            match (req.client, req.upstream) {
                (true, true) => {
                    abort(client);
                    abort(upstream);
                }
                (true, false) => {
                    abort(client);
                    graceful_close(&upstream).await;
                }
                (false, true) => {
                    abort(upstream);
                    graceful_close(&client).await;
                }
                (false, false) => {}
            }
        }
        End::Failed { client: c } => {
            // Pass the failure on as what it was: a reset stays a reset.
            if c {
                abort(upstream);
            } else {
                abort(client);
            }
        }
    }
    ctx.m.active.dec();
}

fn reset_why(ctx: &Ctx, t: &Toxic) -> String {
    let age = ctx.start.elapsed().as_millis();
    match t.kind {
        Kind::IdleReset { timeout, .. } => {
            format!("idle for {timeout} ms (connection age {age} ms)")
        }
        Kind::ResetPeer { timeout } => {
            format!("reset_peer timeout {timeout} ms elapsed (connection age {age} ms)")
        }
        Kind::ResetAfter { bytes, ms } => format!(
            "reset_after budget reached (bytes {:?}, ms {:?}; up {} down {} bytes forwarded)",
            bytes,
            ms,
            ctx.bytes[0].load(Ordering::Relaxed),
            ctx.bytes[1].load(Ordering::Relaxed)
        ),
        _ => format!("toxic fired after {age} ms"),
    }
}

/// Logs an injected reset as a [`ResetEvent`] and counts it.
pub(crate) fn record(
    sh: &Shared,
    s: &TcpStream,
    t: &Toxic,
    cause: Cause,
    from: Side,
    side: &str,
    why: String,
) {
    sh.metrics.reset(&sh.name, t.kind.type_name(), side);
    let (Ok(src), Ok(dst)) = (s.local_addr(), s.peer_addr()) else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut e = ResetEvent::new(
        Timestamp::from_parts(now.as_secs() as i64, now.subsec_nanos()),
        Source::Proxy,
        src,
        dst,
    );
    e.from = Some(from);
    e.sender = Sender::Endpoint;
    e.cause = cause;
    e.confidence = 1.0;
    e.evidence = vec![format!(
        "rstscope proxy {:?} injected this RST toward the {side}: toxic {:?} ({}), {why}",
        sh.name,
        t.name,
        t.kind.type_name()
    )];
    e.comm = Some("rstscope-proxy".into());
    e.pid = Some(std::process::id());
    sh.events.push(e);
}

/// Closes with SO_LINGER {1,0}: the kernel sends RST and drops any queue.
pub(crate) fn abort(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Clean close: FIN, then read and discard what the peer still sends (for a
/// bounded time) so that the final close() finds no unread data.
pub(crate) async fn graceful_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write);
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1000);
    loop {
        tokio::select! {
            r = s.readable() => if r.is_err() { return },
            _ = sleep_until(deadline) => return,
        }
        match s.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Watches the timed reset toxics: `reset_peer`, `reset_after {ms}`,
/// `idle_reset`. They fire whether data flows or not, and on connections
/// already open when the toxic is added (the toxic's clock starts then).
async fn controller(ctx: &Ctx, mut rx: watch::Receiver<Arc<Snapshot>>) -> End {
    loop {
        let snap = rx.borrow_and_update().clone();
        if snap.closing {
            return End::Close;
        }
        ctx.forget_removed(&snap);
        let mut next: Option<Instant> = None;
        for t in &snap.toxics {
            let (deadline, req) = match t.kind {
                Kind::ResetPeer { timeout: ms } | Kind::ResetAfter { ms: Some(ms), .. } => {
                    let s = ctx.seen(t);
                    if !s.on {
                        continue;
                    }
                    (s.at + Duration::from_millis(ms), ResetReq::toward(t))
                }
                Kind::IdleReset {
                    timeout,
                    both_sides,
                } => {
                    let s = ctx.seen(t);
                    if !s.on {
                        continue;
                    }
                    let last =
                        ctx.start + Duration::from_nanos(ctx.last_activity.load(Ordering::Relaxed));
                    (
                        last.max(s.at) + Duration::from_millis(timeout),
                        ResetReq {
                            client: true,
                            upstream: both_sides,
                            toxic: t.clone(),
                        },
                    )
                }
                _ => continue,
            };
            if deadline <= Instant::now() {
                return End::Reset(req);
            }
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
        }
        match next {
            Some(n) => tokio::select! {
                _ = sleep_until(n.into()) => {}
                r = rx.changed() => if r.is_err() { return End::Close },
            },
            None => {
                if rx.changed().await.is_err() {
                    return End::Close;
                }
            }
        }
    }
}

/// Forwards one direction until EOF (then half-closes) or an end.
async fn pump(
    ctx: &Ctx,
    src: &TcpStream,
    dst: &TcpStream,
    stream: Stream,
    mut rx: watch::Receiver<Arc<Snapshot>>,
) -> PumpEnd {
    let s = si(stream);
    let mut pipe: Option<Pipe> = None;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let snap = rx.borrow_and_update().clone();
        if snap.closing {
            return PumpEnd::End(End::Close);
        }
        let mut limit = u64::MAX;
        let mut data: Vec<Arc<Toxic>> = Vec::new();
        for t in snap.toxics.iter().filter(|t| t.stream == stream) {
            match t.kind {
                Kind::ResetAfter { bytes: Some(b), .. } => {
                    let seen = ctx.seen(t);
                    if seen.on {
                        let left = b.saturating_sub(ctx.used_since(&seen, s));
                        if left == 0 {
                            return PumpEnd::End(End::Reset(ResetReq::toward(t)));
                        }
                        limit = limit.min(left);
                    }
                }
                Kind::LimitData { bytes } => {
                    let seen = ctx.seen(t);
                    if seen.on {
                        let left = bytes.saturating_sub(ctx.used_since(&seen, s));
                        if left == 0 {
                            return PumpEnd::End(End::Close);
                        }
                        limit = limit.min(left);
                        data.push(t.clone());
                    }
                }
                ref k if k.needs_bytes() && (t.per_chunk || ctx.applies(t)) => {
                    data.push(t.clone());
                }
                _ => {}
            }
        }
        let step = if data.is_empty() {
            splice_phase(ctx, src, dst, s, &mut pipe, &mut rx, limit).await
        } else {
            copy_phase(ctx, src, dst, s, &data, &mut buf, &mut rx, limit).await
        };
        match step {
            Step::Again => {}
            Step::End(e) => return PumpEnd::End(e),
            Step::Eof => {
                let slow = snap.toxics.iter().find_map(|t| match t.kind {
                    Kind::SlowClose { delay } if t.stream == stream && ctx.applies(t) => {
                        Some(delay)
                    }
                    _ => None,
                });
                if let Some(d) = slow {
                    tokio::time::sleep(Duration::from_millis(d)).await;
                }
                let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                return PumpEnd::Eof;
            }
        }
    }
}

fn failed(client: bool) -> Step {
    Step::End(End::Failed { client })
}

#[allow(clippy::too_many_arguments)]
async fn splice_phase(
    ctx: &Ctx,
    src: &TcpStream,
    dst: &TcpStream,
    s: usize,
    pipe: &mut Option<Pipe>,
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    limit: u64,
) -> Step {
    let src_client = s == 0;
    let (sfd, dfd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut moved = 0u64;
    let mut wait = true;
    loop {
        // Hot path: while data keeps coming, only a cheap check for toxic
        // changes; wait (with the change as a wake-up) only when drained.
        match rx.has_changed() {
            Ok(false) => {}
            Ok(true) => return Step::Again,
            Err(_) => return Step::End(End::Close),
        }
        if wait {
            tokio::select! {
                biased;
                r = rx.changed() => return if r.is_err() { Step::End(End::Close) } else { Step::Again },
                r = src.readable() => if r.is_err() { return failed(src_client) },
            }
        }
        if pipe.is_none() {
            // Created on first data, so idle connections hold no pipe (a
            // readiness report can come with nothing to read: a socket
            // whose connect just completed wakes its reader once).
            match src.try_io(Interest::READABLE, || peek(sfd)) {
                Ok(true) => {}
                Ok(false) => return Step::Eof,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait = true;
                    continue;
                }
                Err(_) => return failed(src_client),
            }
            match Pipe::new() {
                Ok(p) => *pipe = Some(p),
                Err(_) => return failed(src_client),
            }
        }
        let p = pipe.as_ref().expect("just created");
        let want = (limit - moved).min(SPLICE_MAX as u64) as usize;
        let mut n = match src.try_io(Interest::READABLE, || p.fill(sfd, want)) {
            Ok(0) => return Step::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait = true;
                continue;
            }
            Err(_) => return failed(src_client),
        };
        wait = false;
        let total = n;
        while n > 0 {
            match dst.try_io(Interest::WRITABLE, || p.drain(dfd, n)) {
                Ok(k) => n -= k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if dst.writable().await.is_err() {
                        return failed(!src_client);
                    }
                }
                Err(_) => return failed(!src_client),
            }
        }
        ctx.moved(s, total, false);
        moved += total as u64;
        if moved >= limit {
            return Step::Again;
        }
    }
}

/// Whether socket `fd` has a byte to read (`false`: end of stream),
/// without taking it; `WouldBlock` when nothing has arrived.
fn peek(fd: std::os::fd::RawFd) -> io::Result<bool> {
    let mut b = 0u8;
    // SAFETY: one-byte buffer owned by this frame; MSG_PEEK leaves the
    // data queued.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Ok(false),
        _ => Ok(true),
    }
}

async fn write_all(dst: &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        dst.writable().await?;
        match dst.try_write(b) {
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn copy_phase(
    ctx: &Ctx,
    src: &TcpStream,
    dst: &TcpStream,
    s: usize,
    data: &[Arc<Toxic>],
    buf: &mut Vec<u8>,
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    limit: u64,
) -> Step {
    let src_client = s == 0;
    // `timeout` holds the stream: nothing is read (so nothing is lost when
    // the toxic goes away); after `timeout` ms the connection is closed.
    if let Some(t) = data.iter().find(|t| matches!(t.kind, Kind::Timeout { .. })) {
        let Kind::Timeout { timeout } = t.kind else {
            unreachable!()
        };
        let at = ctx.seen(t).at;
        return tokio::select! {
            r = rx.changed() => if r.is_err() { Step::End(End::Close) } else { Step::Again },
            _ = async {
                if timeout == 0 { std::future::pending::<()>().await }
                sleep_until((at + Duration::from_millis(timeout)).into()).await
            } => Step::End(End::Close),
        };
    }
    tokio::select! {
        biased;
        r = rx.changed() => return if r.is_err() { Step::End(End::Close) } else { Step::Again },
        r = src.readable() => if r.is_err() { return failed(src_client) },
    }
    if buf.is_empty() {
        buf.resize(COPY_BUF, 0);
    }
    let cap = (buf.len() as u64).min(limit) as usize;
    let n = match src.try_read(&mut buf[..cap]) {
        Ok(0) => return Step::Eof,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Again,
        Err(_) => return failed(src_client),
    };
    let arrived = Instant::now();
    let mut delay_ms: i64 = 0;
    let mut slicer = None;
    let mut rate = 0u64;
    for t in data {
        if t.per_chunk && !ctx.roll_now(t.toxicity) {
            continue;
        }
        match t.kind {
            Kind::Latency { latency, jitter } => {
                let j = jitter.min(i64::MAX as u64 / 2) as i64;
                delay_ms += latency.min(i64::MAX as u64 / 4) as i64 + ctx.rand_range(-j, j);
            }
            Kind::Slicer { .. } => slicer = Some(t.kind.clone()),
            Kind::Bandwidth { rate: r } if r > 0 => rate = r,
            _ => {}
        }
    }
    if delay_ms > 0 {
        sleep_until((arrived + Duration::from_millis(delay_ms as u64)).into()).await;
    }
    let chunk = &buf[..n];
    // Pieces: slicer sizes, or 100 ms worth of bandwidth, or all at once.
    let mut off = 0;
    while off < n {
        let piece = match slicer {
            Some(Kind::Slicer {
                average_size,
                size_variation,
                ..
            }) => {
                let v = size_variation as i64;
                (average_size as i64 + ctx.rand_range(-v, v)).max(1) as usize
            }
            _ if rate > 0 => ((rate * 100) as usize).max(1),
            _ => n,
        }
        .min(n - off);
        if write_all(dst, &chunk[off..off + piece]).await.is_err() {
            return failed(!src_client);
        }
        ctx.moved(s, piece, true);
        off += piece;
        if let Some(us) = (piece as u64 * 1000).checked_div(rate) {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        if let Some(Kind::Slicer { delay, .. }) = slicer {
            if off < n && delay > 0 {
                tokio::time::sleep(Duration::from_micros(delay)).await;
            }
        }
    }
    Step::Again
}
