//! [`Watcher`]: the kernel adapter. Opens the tracepoints on every CPU,
//! drains the rings, decodes, attributes processes and classifies, and
//! hands out [`ResetEvent`]s.

use crate::classify;
use crate::decode::{self, Formats, Record};
use crate::format::TraceFormat;
use crate::ftrace::Instance;
use crate::perf::{self, Item, Ring};
use crate::sockdiag::SockTable;
use rstscope_core::{Direction, ResetEvent, Sender, Source, Timestamp};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to report. Empty lists match everything.
#[derive(Clone, Debug, Default)]
pub struct WatchConfig {
    /// Keep resets whose local or remote port is one of these.
    pub ports: Vec<u16>,
    /// Keep resets whose local or remote address is one of these.
    pub hosts: Vec<IpAddr>,
    /// Keep resets attributed to one of these process ids.
    pub pids: Vec<u32>,
    /// Keep resets attributed to a process whose command name is one of these.
    pub comms: Vec<String>,
    /// Keep only this direction.
    pub direction: Option<Direction>,
    /// Ring buffer size per CPU in KiB (rounded up to a power-of-two
    /// number of pages); 0 means the default (8192).
    pub ring_kib: usize,
    /// tracefs mount point; `None` means `/sys/kernel/tracing`, mounted if absent.
    pub tracefs: Option<PathBuf>,
    /// How the tracepoints are read.
    pub backend: Backend,
}

impl WatchConfig {
    /// Whether `e` passes the filters.
    pub fn matches(&self, e: &ResetEvent) -> bool {
        if let Some(d) = self.direction {
            if e.direction != Some(d) {
                return false;
            }
        }
        if !self.ports.is_empty()
            && !self
                .ports
                .iter()
                .any(|p| *p == e.src.port() || *p == e.dst.port())
        {
            return false;
        }
        if !self.hosts.is_empty()
            && !self
                .hosts
                .iter()
                .any(|h| *h == e.src.ip() || *h == e.dst.ip())
        {
            return false;
        }
        if !self.pids.is_empty() && !e.pid.is_some_and(|p| self.pids.contains(&p)) {
            return false;
        }
        if !self.comms.is_empty()
            && !e
                .comm
                .as_deref()
                .is_some_and(|c| self.comms.iter().any(|x| x == c))
        {
            return false;
        }
        true
    }
}

/// Why the watcher cannot run.
#[derive(Debug)]
pub enum WatchError {
    /// A privilege is missing; the message says which and how to grant it.
    Permission(String),
    /// tracefs is absent and could not be mounted, or lacks the tracepoints.
    Tracefs(String),
    /// The kernel's tracepoint format is not one this decoder understands.
    Format(String),
    /// Any other system call failure.
    Io(String, std::io::Error),
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchError::Permission(m) | WatchError::Tracefs(m) | WatchError::Format(m) => {
                f.write_str(m)
            }
            WatchError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for WatchError {}

const DEFAULT_TRACEFS: &str = "/sys/kernel/tracing";

/// Finds (and if needed mounts) tracefs and reads the three format files.
pub fn load_formats(tracefs: Option<&Path>) -> Result<Formats, WatchError> {
    let root = tracefs
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TRACEFS));
    let events = root.join("events");
    match std::fs::metadata(&events) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(WatchError::Permission(format!(
                "cannot access {}: permission denied. rstscope watch needs root, or CAP_PERFMON \
                 plus read access to tracefs: `sudo setcap cap_perfmon,cap_dac_read_search+ep \
                 $(which rstscope)` (or mount tracefs with `-o mode=755`)",
                events.display()
            )))
        }
        Err(_) if tracefs.is_none() => mount_tracefs(&root)?,
        Err(e) => {
            return Err(WatchError::Tracefs(format!(
                "no tracefs at {}: {e}",
                root.display()
            )))
        }
    }
    let read = |rel: &str| -> Result<TraceFormat, WatchError> {
        let p = events.join(rel).join("format");
        let text = std::fs::read_to_string(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => WatchError::Permission(format!(
                "cannot read {}: permission denied. rstscope watch needs read access to tracefs \
                 (run as root, or `chmod -R o+rx {}` / mount tracefs with mode=755) and \
                 CAP_PERFMON (`sudo setcap cap_perfmon,cap_dac_read_search+ep $(which rstscope)`)",
                p.display(),
                root.display()
            )),
            std::io::ErrorKind::NotFound => WatchError::Tracefs(format!(
                "{} does not exist: this kernel has no {rel} tracepoint (tcp_send_reset needs \
                 Linux 4.16+, tcp_receive_reset 4.16+), or tracefs is not mounted at {}",
                p.display(),
                root.display()
            )),
            _ => WatchError::Io(format!("reading {}", p.display()), e),
        })?;
        TraceFormat::parse(&text).map_err(|e| WatchError::Format(format!("{}: {e}", p.display())))
    };
    let f = Formats {
        send: read("tcp/tcp_send_reset")?,
        receive: read("tcp/tcp_receive_reset")?,
        set_state: read("sock/inet_sock_set_state").ok(),
    };
    f.validate()
        .map_err(|e| WatchError::Format(format!("unsupported tracepoint layout: {e}")))?;
    Ok(f)
}

fn mount_tracefs(root: &Path) -> Result<(), WatchError> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let target = c(&root.to_string_lossy());
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::mount(
            c("tracefs").as_ptr(),
            target.as_ptr(),
            c("tracefs").as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => WatchError::Permission(format!(
                "tracefs is not mounted at {} and mounting it needs CAP_SYS_ADMIN: run \
                 `sudo mount -t tracefs tracefs {}` once, or run rstscope watch as root",
                root.display(),
                root.display()
            )),
            _ => WatchError::Tracefs(format!(
                "tracefs is not mounted at {} and mounting it failed: {e} (is CONFIG_TRACING enabled?)",
                root.display()
            )),
        });
    }
    Ok(())
}

/// Who owns a socket, as learned from a process-context event.
#[derive(Clone, Copy, Debug)]
struct Owner {
    pid: u32,
    local: SocketAddr,
    remote: SocketAddr,
    /// Learned from close()/shutdown() (FIN_WAIT1), not connect().
    closed: bool,
}

/// Received resets waiting for the state change that follows them.
struct Pending {
    /// Drains this record has waited through.
    age: u8,
    /// When it was read.
    read_at: Instant,
    rec: decode::ReceivedReset,
    pid: Option<u32>,
    tid: u32,
    time: u64,
}

/// One record read from either reader.
struct Sample {
    /// Process id (tgid), when the reader knows it (perf does).
    pid: Option<u32>,
    /// Thread id of the task that was running.
    tid: u32,
    /// `CLOCK_MONOTONIC` nanoseconds.
    time: u64,
    rec: Result<Record, decode::DecodeError>,
}

const OWNER_CAP: usize = 1 << 18;
const COMM_TTL: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(100);
/// How long a received reset waits for the state change that follows it.
const PENDING_WAIT: Duration = Duration::from_millis(20);
/// How often the sock_diag table is re-read.
const SOCK_REFRESH: Duration = Duration::from_secs(2);

/// How the tracepoints are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// A private tracefs instance; perf when instances cannot be created.
    #[default]
    Auto,
    /// A private tracefs instance (`instances/rstscope-PID-N`), read
    /// through `per_cpu/cpuN/trace_pipe_raw`. Sees resets that fire while a
    /// CPU is idle, which perf misses on some kernels (see [`crate::ftrace`]).
    Ftrace,
    /// `perf_event_open` per-CPU ring buffers. Records the kernel counted
    /// but never wrote (the idle-CPU hole) are reported as lost.
    Perf,
}

/// The perf reader: one ring per CPU, and per ring the descriptors of
/// every event writing into it (to compare the kernel's count with the
/// records that arrived).
struct PerfReader {
    rings: Vec<Ring>,
    others: Vec<Vec<OwnedFd>>,
    /// Per ring: samples read, lost records reported, events counted at
    /// the previous drain, and records counted but never written.
    seen: Vec<u64>,
    lost_rec: Vec<u64>,
    counted_before: Vec<u64>,
    unsampled: Vec<u64>,
}

enum Reader {
    Perf(PerfReader),
    Ftrace(Instance),
}

/// The live reader of the kernel's reset tracepoints.
pub struct Watcher {
    cfg: WatchConfig,
    formats: Formats,
    reader: Reader,
    notes: Vec<String>,
    /// Received resets whose state change has not been read yet.
    pending: Vec<Pending>,
    epoll: OwnedFd,
    decode_errors: u64,
    mono_to_real: i64,
    owners: HashMap<u64, Owner>,
    comms: HashMap<u32, (Option<String>, Instant)>,
    tgids: HashMap<u32, (u32, Instant)>,
    /// Sockets and their owners from sock_diag, refreshed every
    /// [`SOCK_REFRESH`].
    socks: SockTable,
    socks_at: Instant,
    state_close: i32,
    state_syn_sent: i32,
    state_listen: i32,
    state_fin_wait1: i32,
    /// Listening sockets seen being created: skaddr → (pid, local address).
    listeners: HashMap<u64, (u32, SocketAddr)>,
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> WatchError + '_ {
    move |e| match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => WatchError::Permission(format!(
            "{what}: {e}. rstscope watch needs CAP_PERFMON (or root) to open tracepoint perf \
             events on all CPUs: run it with sudo, or grant it once with \
             `sudo setcap cap_perfmon,cap_dac_read_search+ep $(which rstscope)` \
             (kernel.perf_event_paranoid is {})",
            std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unreadable".into())
        )),
        _ => WatchError::Io(what.to_string(), e),
    }
}

fn now_offset() -> i64 {
    let get = |clk| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid out-pointer.
        unsafe { libc::clock_gettime(clk, &mut ts) };
        #[allow(clippy::useless_conversion)] // time_t and c_long are 32-bit on some targets
        let (s, ns) = (i64::from(ts.tv_sec), i64::from(ts.tv_nsec));
        s * 1_000_000_000 + ns
    };
    get(libc::CLOCK_REALTIME) - get(libc::CLOCK_MONOTONIC)
}

fn epoll_add(epoll: &OwnedFd, fd: std::os::fd::RawFd, tag: u64) -> Result<(), WatchError> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: tag,
    };
    // SAFETY: valid epoll fd, descriptor and event pointer.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(WatchError::Io(
            "epoll_ctl".into(),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The kernel's count of an event (the value `read(2)` returns).
fn read_count(fd: &OwnedFd) -> u64 {
    let mut v = 0u64;
    // SAFETY: reading 8 bytes into a u64 we own from a perf event fd
    // (read_format 0: the value alone).
    let r = unsafe { libc::read(fd.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
    if r == 8 {
        v
    } else {
        0
    }
}

impl Watcher {
    /// Reads the tracepoint formats, starts recording on every online CPU
    /// (see [`Backend`]) and returns. Fails at once, naming the missing
    /// privilege, when it cannot.
    pub fn start(cfg: &WatchConfig) -> Result<Watcher, WatchError> {
        let formats = load_formats(cfg.tracefs.as_deref())?;
        let cpus = perf::online_cpus().map_err(io_err("reading /sys/devices/system/cpu/online"))?;
        // SAFETY: epoll_create1 has no pointer arguments.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(WatchError::Io(
                "epoll_create1".into(),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fresh descriptor we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut notes = Vec::new();
        let state_filter = formats.set_state.as_ref().map(|s| {
            let close = s.symbol_value("newstate", "TCP_CLOSE").unwrap_or(7);
            let syn = s.symbol_value("newstate", "TCP_SYN_SENT").unwrap_or(2);
            let listen = s.symbol_value("newstate", "TCP_LISTEN").unwrap_or(10);
            let fin1 = s.symbol_value("newstate", "TCP_FIN_WAIT1").unwrap_or(4);
            // SYN_SENT: connect() runs in the owner's context (who owns it);
            // LISTEN: so does listen() (who serves a port);
            // FIN_WAIT1: so does close()/shutdown() of the side closing
            // first (who owns the orphan that later answers data with RST);
            // -> CLOSE: the state a socket was in when a reset closed it.
            // One or two records per connection; ESTABLISHED and the other
            // FIN states are not recorded.
            let mut f = format!(
                "(newstate == {syn} || newstate == {listen} || newstate == {fin1} || \
                 newstate == {close})"
            );
            if s.field("protocol").is_some() {
                f.push_str(" && protocol == 6");
            }
            f
        });
        let kib = if cfg.ring_kib == 0 {
            2048
        } else {
            cfg.ring_kib
        };
        let root = cfg
            .tracefs
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TRACEFS));
        let reader = match cfg.backend {
            Backend::Perf => Reader::Perf(Self::open_perf(
                &formats,
                &cpus,
                kib,
                state_filter.as_deref(),
                &epoll,
                &mut notes,
            )?),
            Backend::Ftrace | Backend::Auto => {
                let mut events: Vec<(&str, Option<&str>)> = vec![
                    ("tcp/tcp_send_reset", None),
                    ("tcp/tcp_receive_reset", None),
                ];
                if formats.set_state.is_some() {
                    events.push(("sock/inet_sock_set_state", state_filter.as_deref()));
                }
                match Instance::create(&root, &cpus, kib, &events) {
                    Ok(inst) => {
                        for (cpu, fd) in inst.fds() {
                            epoll_add(&epoll, fd, cpu as u64)?;
                        }
                        Reader::Ftrace(inst)
                    }
                    Err(e) if cfg.backend == Backend::Auto => {
                        notes.push(format!(
                            "reading through perf_event_open: no private tracefs instance ({e}); \
                             resets handled while a CPU is idle may be missed on some kernels \
                             (counted as lost)"
                        ));
                        Reader::Perf(Self::open_perf(
                            &formats,
                            &cpus,
                            kib,
                            state_filter.as_deref(),
                            &epoll,
                            &mut notes,
                        )?)
                    }
                    Err(e) => {
                        return Err(match e.kind() {
                            std::io::ErrorKind::PermissionDenied => {
                                WatchError::Permission(format!(
                                "cannot create a tracefs instance: {e}. rstscope watch needs root \
                                 (or write access to {}/instances); or use the perf backend \
                                 with CAP_PERFMON",
                                root.display()
                            ))
                            }
                            _ => WatchError::Tracefs(format!(
                                "cannot create a tracefs instance: {e}"
                            )),
                        })
                    }
                }
            }
        };
        let mut socks = SockTable::default();
        socks.refresh();
        notes.append(&mut socks.errors);
        let st = formats.set_state.as_ref();
        Ok(Watcher {
            cfg: cfg.clone(),
            state_close: st
                .and_then(|s| s.symbol_value("newstate", "TCP_CLOSE"))
                .unwrap_or(7) as i32,
            state_syn_sent: st
                .and_then(|s| s.symbol_value("newstate", "TCP_SYN_SENT"))
                .unwrap_or(2) as i32,
            state_listen: st
                .and_then(|s| s.symbol_value("newstate", "TCP_LISTEN"))
                .unwrap_or(10) as i32,
            state_fin_wait1: st
                .and_then(|s| s.symbol_value("newstate", "TCP_FIN_WAIT1"))
                .unwrap_or(4) as i32,
            listeners: HashMap::new(),
            formats,
            notes,
            pending: Vec::new(),
            reader,
            epoll,
            decode_errors: 0,
            mono_to_real: now_offset(),
            owners: HashMap::new(),
            comms: HashMap::new(),
            tgids: HashMap::new(),
            socks,
            socks_at: Instant::now(),
        })
    }

    fn open_perf(
        formats: &Formats,
        cpus: &[i32],
        kib: usize,
        state_filter: Option<&str>,
        epoll: &OwnedFd,
        notes: &mut Vec<String>,
    ) -> Result<PerfReader, WatchError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let pages = (kib * 1024).div_ceil(page).next_power_of_two().max(1);
        let wakeup = ((pages * page) / 8).max(page) as u32;
        let mut rings = Vec::new();
        let mut others = Vec::new();
        for &cpu in cpus {
            let what = format!("perf_event_open(tcp:tcp_send_reset, cpu {cpu})");
            let fd = match perf::open_tracepoint(formats.send.id, cpu, wakeup) {
                Ok(fd) => fd,
                // A CPU that went offline since we read the list.
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => continue,
                Err(e) => return Err(io_err(&what)(e)),
            };
            let (ring, got) = Ring::new_shrinking(fd, pages, 8, cpu).map_err(|e| {
                WatchError::Io(
                    format!(
                        "mmap of a {} KiB ring on cpu {cpu} (lower --ring-kb, or raise \
                         kernel.perf_event_mlock_kb)",
                        pages * page / 1024
                    ),
                    e,
                )
            })?;
            if got < pages {
                notes.push(format!(
                    "cpu {cpu}: ring reduced to {} KiB by the locked-memory limit \
                     (kernel.perf_event_mlock_kb / RLIMIT_MEMLOCK): bursts may lose samples",
                    got * page / 1024
                ));
            }
            let mut mine = Vec::new();
            let rfd = perf::open_tracepoint(formats.receive.id, cpu, wakeup)
                .map_err(io_err("perf_event_open(tcp:tcp_receive_reset)"))?;
            perf::set_output(&rfd, ring.fd()).map_err(io_err("PERF_EVENT_IOC_SET_OUTPUT"))?;
            mine.push(rfd);
            if let (Some(s), Some(filt)) = (&formats.set_state, state_filter) {
                let sfd = perf::open_tracepoint(s.id, cpu, wakeup)
                    .map_err(io_err("perf_event_open(sock:inet_sock_set_state)"))?;
                perf::set_filter(&sfd, filt).map_err(io_err("PERF_EVENT_IOC_SET_FILTER"))?;
                perf::set_output(&sfd, ring.fd()).map_err(io_err("PERF_EVENT_IOC_SET_OUTPUT"))?;
                mine.push(sfd);
            }
            epoll_add(epoll, ring.raw_fd(), rings.len() as u64)?;
            rings.push(ring);
            others.push(mine);
        }
        if rings.is_empty() {
            return Err(WatchError::Tracefs("no online CPU could be watched".into()));
        }
        for fd in others.iter().flatten().chain(rings.iter().map(|r| r.fd())) {
            perf::enable(fd).map_err(io_err("PERF_EVENT_IOC_ENABLE"))?;
        }
        let n = rings.len();
        Ok(PerfReader {
            rings,
            others,
            seen: vec![0; n],
            lost_rec: vec![0; n],
            counted_before: vec![0; n],
            unsampled: vec![0; n],
        })
    }

    /// Things the user should know about how the watcher runs (e.g. rings
    /// smaller than asked for).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Which reader is in use: `"ftrace"` or `"perf"`.
    pub fn backend(&self) -> &'static str {
        match self.reader {
            Reader::Ftrace(_) => "ftrace",
            Reader::Perf(_) => "perf",
        }
    }

    /// Records the kernel did not deliver, so far: the buffer was full, or
    /// (perf) the kernel counted the event but wrote no sample.
    pub fn lost(&self) -> u64 {
        match &self.reader {
            Reader::Ftrace(i) => i.lost(),
            Reader::Perf(p) => p.lost_rec.iter().sum::<u64>() + p.unsampled.iter().sum::<u64>(),
        }
    }

    /// Samples that could not be decoded, so far (should stay 0).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Whether this kernel's `tcp_send_reset` carries the reset reason.
    pub fn kernel_has_reason(&self) -> bool {
        self.formats.has_reason()
    }

    /// The parsed tracepoint formats of the running kernel.
    pub fn formats(&self) -> &Formats {
        &self.formats
    }

    /// Waits up to `timeout` for resets and returns those that pass the
    /// filters (possibly none). Sleeps in epoll between short drain ticks;
    /// never spins.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ResetEvent>, WatchError> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            self.drain_all(&mut out);
            let now = Instant::now();
            if !out.is_empty() || now >= deadline {
                out.sort_by_key(|e| e.ts);
                return Ok(out);
            }
            let wait = (deadline - now).min(TICK);
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
            // SAFETY: evs is a valid buffer of 16 events.
            let r = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    evs.as_mut_ptr(),
                    evs.len() as i32,
                    wait.as_millis().max(1) as i32,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    self.drain_all(&mut out);
                    return Ok(out);
                }
                return Err(WatchError::Io("epoll_wait".into(), e));
            }
        }
    }

    /// Reads what is left in the kernel's buffers and returns it with every
    /// received reset still waiting for its state change (without state):
    /// call before exiting so nothing read is dropped.
    pub fn finish(&mut self) -> Vec<ResetEvent> {
        let mut out = Vec::new();
        self.drain_all(&mut out);
        for p in std::mem::take(&mut self.pending) {
            let e = self.received_event(p, None);
            self.push(e, &mut out);
        }
        out.sort_by_key(|e| e.ts);
        out
    }

    /// Everything waiting in the kernel's buffers, decoded, in time order.
    fn read_samples(&mut self) -> Vec<Sample> {
        let formats = &self.formats;
        let mut items = Vec::new();
        match &mut self.reader {
            Reader::Ftrace(inst) => {
                let bad = inst.drain(|_cpu, time, raw| {
                    let rec = decode::decode(formats, raw);
                    let tid = match &rec {
                        Ok(Record::Sent(s)) => s.common.pid,
                        Ok(Record::Received(r)) => r.common.pid,
                        Ok(Record::State(s)) => s.common.pid,
                        Err(_) => 0,
                    };
                    items.push(Sample {
                        pid: None,
                        tid: tid.max(0) as u32,
                        time,
                        rec,
                    });
                });
                self.decode_errors += bad;
            }
            Reader::Perf(p) => {
                for (ri, ring) in p.rings.iter_mut().enumerate() {
                    // Counted by the kernel at the previous drain: written
                    // by now, or never (see `crate::ftrace`).
                    let counted: u64 =
                        read_count(ring.fd()) + p.others[ri].iter().map(read_count).sum::<u64>();
                    let (mut seen, mut lost) = (0u64, 0u64);
                    ring.drain(|it| match it {
                        Item::Sample {
                            pid,
                            tid,
                            time,
                            raw,
                        } => {
                            seen += 1;
                            items.push(Sample {
                                pid: Some(pid),
                                tid,
                                time,
                                rec: decode::decode(formats, raw),
                            })
                        }
                        Item::Lost(n) => lost += n,
                    });
                    p.seen[ri] += seen;
                    p.lost_rec[ri] += lost;
                    let missing = p.counted_before[ri].saturating_sub(p.seen[ri] + p.lost_rec[ri]);
                    p.unsampled[ri] = p.unsampled[ri].max(missing);
                    p.counted_before[ri] = counted;
                }
            }
        }
        // Per-CPU buffers: merge into time order (stable, so one CPU's
        // records keep the order the kernel wrote them in).
        items.sort_by_key(|s| s.time);
        items
    }

    fn drain_all(&mut self, out: &mut Vec<ResetEvent>) {
        let items = self.read_samples();
        if self.socks_at.elapsed() >= SOCK_REFRESH {
            // After this drain's records: their sockets, now closed, stay
            // in the table read before they were reset.
            self.socks_at = Instant::now();
            let mut socks = std::mem::take(&mut self.socks);
            self.process(items, out);
            socks.refresh();
            self.socks = socks;
            return;
        }
        self.process(items, out);
    }

    fn process(&mut self, items: Vec<Sample>, out: &mut Vec<ResetEvent>) {
        // The state change follows its reset on the same CPU, but the
        // kernel may not have written it when we drained: a received reset
        // waits for one more drain before going out without state.
        let mut pending = std::mem::take(&mut self.pending);
        let mut closed_listeners = Vec::new();
        for Sample {
            pid,
            tid,
            time,
            rec,
        } in items
        {
            match rec {
                Ok(Record::Sent(s)) => {
                    let e = self.sent_event(s, pid, tid, time);
                    self.push(e, out);
                }
                Ok(Record::Received(r)) => pending.push(Pending {
                    age: 0,
                    read_at: Instant::now(),
                    rec: r,
                    pid,
                    tid,
                    time,
                }),
                Ok(Record::State(s)) => {
                    if s.new == self.state_close {
                        if let Some(i) = pending.iter().position(|p| p.rec.skaddr == s.skaddr) {
                            let p = pending.remove(i);
                            let e = self.received_event(p, Some(s.old));
                            self.push(e, out);
                        }
                        self.owners.remove(&s.skaddr);
                        if s.old == self.state_listen {
                            // Forgotten after this drain: resets read from
                            // other CPUs' buffers may predate the close.
                            closed_listeners.push(s.skaddr);
                        }
                    } else if s.new == self.state_listen && !s.common.in_interrupt() {
                        if self.listeners.len() >= OWNER_CAP {
                            self.listeners.clear();
                        }
                        let pid = self.tgid(tid, pid);
                        self.listeners.insert(s.skaddr, (pid, s.local));
                    } else if (s.new == self.state_syn_sent || s.new == self.state_fin_wait1)
                        && !s.common.in_interrupt()
                    {
                        if self.owners.len() >= OWNER_CAP {
                            self.owners.clear();
                        }
                        let pid = self.tgid(tid, pid);
                        self.owners.insert(
                            s.skaddr,
                            Owner {
                                pid,
                                local: s.local,
                                remote: s.remote,
                                closed: s.new == self.state_fin_wait1,
                            },
                        );
                    }
                }
                Err(_) => self.decode_errors += 1,
            }
        }
        let mut keep = Vec::new();
        for mut p in pending {
            // Written microseconds after the reset on the same CPU: one
            // more drain, at least PENDING_WAIT later, is enough.
            if p.age >= 1 && p.read_at.elapsed() >= PENDING_WAIT {
                let e = self.received_event(p, None);
                self.push(e, out);
            } else {
                p.age += 1;
                keep.push(p);
            }
        }
        self.pending = keep;
        for l in closed_listeners {
            self.listeners.remove(&l);
        }
    }

    /// The process (thread group) of thread `tid`: known from perf, else
    /// from `/proc/TID/status` (cached; the thread itself when gone).
    fn tgid(&mut self, tid: u32, known: Option<u32>) -> u32 {
        if let Some(p) = known {
            return p;
        }
        if tid == 0 {
            return 0;
        }
        if let Some((p, at)) = self.tgids.get(&tid) {
            if at.elapsed() < COMM_TTL {
                return *p;
            }
        }
        if self.tgids.len() > 1 << 16 {
            self.tgids.clear();
        }
        let now = Instant::now();
        let p = std::fs::read_to_string(format!("/proc/{tid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Tgid:"))
                    .and_then(|v| v.trim().parse().ok())
            });
        let p = match (p, &self.reader) {
            (Some(p), _) => p,
            // The thread is gone: the kernel's own record of it.
            (None, Reader::Ftrace(inst)) => {
                for (t, g) in inst.saved_tgids() {
                    self.tgids.insert(t, (g, now));
                }
                self.tgids.get(&tid).map(|(g, _)| *g).unwrap_or(tid)
            }
            (None, Reader::Perf(_)) => tid,
        };
        self.tgids.insert(tid, (p, now));
        p
    }
    fn push(&mut self, e: ResetEvent, out: &mut Vec<ResetEvent>) {
        if self.cfg.matches(&e) {
            out.push(e);
        }
    }

    fn ts(&self, mono: u64) -> Timestamp {
        Timestamp((mono as i64).saturating_add(self.mono_to_real))
    }

    /// The process's command name (`/proc/PID/comm`; the thread may be
    /// gone by the time the sample is read, the process usually is not).
    fn comm(&mut self, pid: u32) -> Option<String> {
        if let Some((c, at)) = self.comms.get(&pid) {
            if at.elapsed() < COMM_TTL {
                return c.clone();
            }
        }
        let c = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| s.trim_end_matches('\n').to_string())
            .or_else(|| match &self.reader {
                // The process is gone (a killed server closing its sockets
                // as it dies): the name the tracer saved when it recorded it.
                Reader::Ftrace(inst) => inst.saved_comm(pid),
                Reader::Perf(_) => None,
            });
        if self.comms.len() > 4096 {
            self.comms.clear();
        }
        self.comms.insert(pid, (c.clone(), Instant::now()));
        c
    }

    /// The owner learned at connect() time, if the 4-tuple still matches.
    fn cached_owner(&self, skaddr: u64, local: SocketAddr, remote: SocketAddr) -> Option<Owner> {
        self.owners
            .get(&skaddr)
            // At connect() the kernel enters SYN_SENT before it picks the
            // local port (and, unbound, the local address): those may be 0.
            .filter(|o| {
                o.remote == remote
                    && (o.local.port() == 0 || o.local.port() == local.port())
                    && (o.local.ip().is_unspecified() || o.local.ip() == local.ip())
            })
            .copied()
    }

    /// The process that listens on `local`'s port, if exactly one was seen
    /// calling listen() (a server's accepted sockets usually belong to it).
    fn listener_owner(&self, local: SocketAddr) -> Option<u32> {
        let mut pids = self.listeners.values().filter(|(_, l)| {
            l.port() == local.port() && (l.ip().is_unspecified() || l.ip() == local.ip())
        });
        let first = pids.next()?.0;
        pids.all(|(p, _)| *p == first).then_some(first)
    }

    fn attribute(
        &mut self,
        e: &mut ResetEvent,
        (skaddr, local, remote, cookie): (u64, SocketAddr, SocketAddr, Option<u64>),
        process_ctx: Option<(u32, u32)>,
        cached: Option<Owner>,
    ) {
        // A reset sent on behalf of a listener (INVALID_SYN): the listener
        // itself was seen entering LISTEN.
        let listener = self.listeners.get(&skaddr).map(|(p, _)| *p);
        let diag = if process_ctx.is_none() && cached.is_none() && listener.is_none() {
            self.socks
                .inode(cookie, local, remote)
                .and_then(|ino| Some((ino, self.socks.owner(ino)?)))
        } else {
            None
        };
        let (pid, how) = if let Some((pid, _tid)) = process_ctx {
            (
                pid,
                "the task that ran the kernel path (process context)".to_string(),
            )
        } else if let Some(o) = cached {
            (
                o.pid,
                if o.closed {
                    "the task that closed (or shut down) this socket".to_string()
                } else {
                    "the task that called connect() on this socket".to_string()
                },
            )
        } else if let Some(pid) = listener {
            (
                pid,
                "the task that called listen() on this socket".to_string(),
            )
        } else if let Some((ino, pid)) = diag {
            (
                pid,
                format!(
                    "the process holding the socket open (sock_diag: socket inode {ino}, \
                     found in /proc/{pid}/fd)"
                ),
            )
        } else if let Some(pid) = self.listener_owner(local) {
            (
                pid,
                format!(
                    "the process listening on port {} (owner of the listener the \
                     connection was accepted from; the socket itself was not seen)",
                    local.port()
                ),
            )
        } else {
            e.evidence.push(
                "process unknown: the kernel handled this reset in interrupt context, the \
                 socket's connect() or listen() was not seen, and sock_diag did not list it at \
                 its last refresh (opened and reset in between, or its process is gone)"
                    .into(),
            );
            return;
        };
        if pid == 0 {
            return;
        }
        e.pid = Some(pid);
        e.comm = self.comm(pid);
        e.evidence.push(format!("process: {how}"));
    }

    fn sent_event(
        &mut self,
        s: decode::SentReset,
        pid: Option<u32>,
        tid: u32,
        time: u64,
    ) -> ResetEvent {
        let mut e = ResetEvent::new(self.ts(time), Source::Kernel, s.local, s.remote);
        e.direction = Some(Direction::Sent);
        e.sender = Sender::Endpoint;
        let v = classify::sent(s.reason_name.as_deref(), s.state_name.as_deref());
        e.cause = v.cause;
        e.confidence = v.confidence;
        e.evidence.push(v.evidence);
        e.state = s.state_name.clone();
        e.reason = s.reason_name.clone();
        let has_socket = s.skaddr != 0 && s.state.is_some();
        let process_ctx =
            (!s.common.in_interrupt() && has_socket).then(|| (self.tgid(tid, pid), tid));
        let cached = has_socket
            .then(|| self.cached_owner(s.skaddr, s.local, s.remote))
            .flatten();
        if has_socket {
            self.attribute(
                &mut e,
                (s.skaddr, s.local, s.remote, None),
                process_ctx,
                cached,
            );
        } else {
            e.evidence
                .push("no process: no socket matched the segment".into());
        }
        e
    }

    fn received_event(&mut self, p: Pending, old_state: Option<i32>) -> ResetEvent {
        let r = p.rec;
        let mut e = ResetEvent::new(self.ts(p.time), Source::Kernel, r.remote, r.local);
        e.direction = Some(Direction::Received);
        let state = old_state.map(|s| {
            self.formats
                .set_state
                .as_ref()
                .and_then(|f| f.symbol("oldstate", s as i64))
                .or_else(|| decode::state_name(s))
                .map(str::to_string)
                .unwrap_or_else(|| format!("STATE_{s}"))
        });
        let v = classify::received(state.as_deref());
        e.cause = v.cause;
        e.confidence = v.confidence;
        e.evidence.push(v.evidence);
        if let Some(c) = r.cookie {
            e.evidence.push(format!("socket cookie {c:#x}"));
        }
        e.state = state;
        let process_ctx = (!r.common.in_interrupt()).then(|| (self.tgid(p.tid, p.pid), p.tid));
        let cached = self.cached_owner(r.skaddr, r.local, r.remote);
        self.attribute(
            &mut e,
            (r.skaddr, r.local, r.remote, r.cookie),
            process_ctx,
            cached,
        );
        e
    }
}

/// The local and remote address of an event, from the local host's view.
pub fn local_remote(e: &ResetEvent) -> (SocketAddr, SocketAddr) {
    match e.direction {
        Some(Direction::Received) => (e.dst, e.src),
        _ => (e.src, e.dst),
    }
}
