//! Reading the host: `/proc`, `/proc/sys`, sock_diag, per-process limits.
//! Everything read lands in [`RawHost`]; [`crate::report::analyze`] turns
//! it into findings without touching the system, so tests can feed it
//! recorded files.
//!
//! Namespaces: [`collect`] with a netns name runs the whole collection on a
//! fresh thread that first joins `/run/netns/NAME` with setns(2). After
//! setns only that thread is in the namespace, so the files are read
//! through `/proc/thread-self/net/...` (`/proc/net` follows the thread
//! group leader), and `/proc/sys/net` reflects the opening thread's
//! namespace (checked by the end-to-end test). The sock_diag socket is
//! created on that thread too, so it dumps that namespace's sockets.

use crate::diag::{self, Listener};
use crate::procfs;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// The sysctls the doctor reads, relative to `/proc/sys`.
pub const SYSCTLS: &[&str] = &[
    "net/ipv4/tcp_keepalive_time",
    "net/ipv4/tcp_keepalive_intvl",
    "net/ipv4/tcp_keepalive_probes",
    "net/ipv4/tcp_abort_on_overflow",
    "net/ipv4/tcp_fin_timeout",
    "net/ipv4/tcp_max_orphans",
    "net/ipv4/tcp_orphan_retries",
    "net/ipv4/tcp_mem",
    "net/ipv4/tcp_max_syn_backlog",
    "net/ipv4/tcp_syncookies",
    "net/ipv4/tcp_max_tw_buckets",
    "net/ipv4/tcp_retries2",
    "net/core/somaxconn",
    "net/netfilter/nf_conntrack_count",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_tcp_timeout_time_wait",
    "net/netfilter/nf_conntrack_tcp_loose",
    "net/netfilter/nf_conntrack_tcp_be_liberal",
    "net/netfilter/nf_conntrack_tcp_ignore_invalid_rst",
    "fs/file-nr",
    "fs/file-max",
];

/// Sysctls that are host-wide (no copy inside a network namespace on
/// Linux 6.18): `tcp_mem` and `tcp_max_orphans` limit the whole host, as do
/// the orphan count and TCP memory of `/proc/net/sockstat`.
pub const GLOBAL_SYSCTLS: &[&str] = &[
    "net/ipv4/tcp_mem",
    "net/ipv4/tcp_max_orphans",
    "fs/file-nr",
    "fs/file-max",
];

/// The counter files at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `/proc/net/snmp`.
    pub snmp: String,
    /// `/proc/net/netstat`.
    pub netstat: String,
}

/// A process's file-descriptor use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcFd {
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub comm: String,
    /// Open descriptors.
    pub open: u64,
    /// Soft `RLIMIT_NOFILE`.
    pub limit: u64,
}

/// What the process scan saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcScan {
    /// Processes whose descriptors could be counted.
    pub scanned: usize,
    /// Processes that could not be read (other users' when unprivileged).
    pub unreadable: usize,
    /// Processes using at least half of their descriptor limit.
    pub busy: Vec<ProcFd>,
}

/// Everything the doctor read, unanalysed.
#[derive(Debug, Clone)]
pub struct RawHost {
    /// Counters at the start.
    pub before: Snapshot,
    /// Counters after `--interval`.
    pub after: Option<Snapshot>,
    /// The interval, in seconds.
    pub interval_secs: Option<f64>,
    /// `/proc/net/sockstat`.
    pub sockstat: String,
    /// `/proc/net/sockstat6`.
    pub sockstat6: String,
    /// Sysctl values by path relative to `/proc/sys` (absent: not present).
    pub sysctls: BTreeMap<String, String>,
    /// Listening sockets, or why they could not be listed.
    pub listeners: Result<Vec<Listener>, String>,
    /// File-descriptor use of processes.
    pub processes: ProcScan,
    /// Whether the doctor ran as root.
    pub root: bool,
    /// The network namespace inspected (`None`: the doctor's own).
    pub netns: Option<String>,
    /// `uname -r`.
    pub kernel: String,
}

impl Default for RawHost {
    fn default() -> Self {
        RawHost {
            before: Snapshot::default(),
            after: None,
            interval_secs: None,
            sockstat: String::new(),
            sockstat6: String::new(),
            sysctls: BTreeMap::new(),
            listeners: Ok(Vec::new()),
            processes: ProcScan::default(),
            root: false,
            netns: None,
            kernel: String::new(),
        }
    }
}

/// Errors of the collection.
#[derive(Debug)]
pub enum Error {
    /// `--netns NAME` does not exist under /run/netns.
    NoSuchNetns(String),
    /// Joining the namespace failed (not root?).
    Setns(String, std::io::Error),
    /// A file every Linux has could not be read.
    Read(String, std::io::Error),
    /// The collecting thread died.
    Thread,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoSuchNetns(n) => write!(f, "no network namespace {n:?} (looked for /run/netns/{n}; `ip netns list` shows the names)"),
            Error::Setns(n, e) => write!(f, "cannot enter network namespace {n:?}: {e} (entering a namespace needs root or CAP_SYS_ADMIN)"),
            Error::Read(p, e) => write!(f, "cannot read {p}: {e}"),
            Error::Thread => write!(f, "the collecting thread panicked"),
        }
    }
}

impl std::error::Error for Error {}

/// Reads the host (or the named network namespace) now, and again after
/// `interval` for the counters.
pub fn collect(netns: Option<&str>, interval: Option<Duration>) -> Result<RawHost, Error> {
    let ns = netns.map(str::to_string);
    let ns_path = match &ns {
        Some(n) => {
            if n.contains('/') || n.is_empty() || n == "." || n == ".." {
                return Err(Error::NoSuchNetns(n.clone()));
            }
            let p = Path::new("/run/netns").join(n);
            if !p.exists() {
                return Err(Error::NoSuchNetns(n.clone()));
            }
            Some(p)
        }
        None => None,
    };
    let handle = std::thread::Builder::new()
        .name("rstscope-doctor".into())
        .spawn(move || -> Result<RawHost, Error> {
            // Host-wide settings have no per-namespace copy under
            // /proc/sys/net: read them before joining the namespace.
            let global: BTreeMap<&str, String> = GLOBAL_SYSCTLS
                .iter()
                .filter_map(|k| Some((*k, read_opt(&format!("/proc/sys/{k}"))?)))
                .collect();
            let mut ns_ino = None;
            if let (Some(p), Some(n)) = (&ns_path, &ns) {
                enter_netns(p).map_err(|e| Error::Setns(n.clone(), e))?;
                ns_ino = fs::metadata(p).ok().map(|m| m.ino());
            }
            let mut raw = RawHost {
                netns: ns.clone(),
                root: rstscope_root(),
                kernel: read_opt("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
                ..Default::default()
            };
            raw.before = snapshot()?;
            if let Some(d) = interval {
                std::thread::sleep(d);
                raw.after = Some(snapshot()?);
                raw.interval_secs = Some(d.as_secs_f64());
            }
            raw.sockstat = read("/proc/thread-self/net/sockstat")?;
            raw.sockstat6 = read_opt("/proc/thread-self/net/sockstat6").unwrap_or_default();
            for s in SYSCTLS {
                let v = read_opt(&format!("/proc/sys/{s}")).or_else(|| global.get(s).cloned());
                if let Some(v) = v {
                    raw.sysctls.insert(s.to_string(), v.trim().to_string());
                }
            }
            raw.listeners = diag::listeners().map_err(|e| format!("sock_diag: {e}"));
            let want_owner: Vec<u32> = match &raw.listeners {
                Ok(l) => l
                    .iter()
                    .filter(|l| l.backlog > 0 && l.queue * 10 >= l.backlog * 8)
                    .map(|l| l.inode)
                    .collect(),
                Err(_) => Vec::new(),
            };
            let (scan, owners) = scan_processes(ns_ino, &want_owner);
            raw.processes = scan;
            if let Ok(ls) = &mut raw.listeners {
                for l in ls.iter_mut() {
                    l.owner = owners.get(&l.inode).cloned();
                }
            }
            Ok(raw)
        })
        .map_err(|_| Error::Thread)?;
    handle.join().map_err(|_| Error::Thread)?
}

fn snapshot() -> Result<Snapshot, Error> {
    Ok(Snapshot {
        snmp: read("/proc/thread-self/net/snmp")?,
        netstat: read("/proc/thread-self/net/netstat")?,
    })
}

fn read(p: &str) -> Result<String, Error> {
    fs::read_to_string(p).map_err(|e| Error::Read(p.to_string(), e))
}

fn read_opt(p: &str) -> Option<String> {
    fs::read_to_string(p).ok()
}

fn rstscope_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter_netns(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path)?;
    // SAFETY: `f` is an open file descriptor for the whole call; setns only
    // changes the calling thread's namespace membership.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Most processes the scan looks at (a bound on time on huge hosts).
const MAX_PROCS: usize = 100_000;

/// Counts open descriptors of every readable process (only those in the
/// namespace `ns_ino` when given) against their soft limit, and finds the
/// owners of the socket inodes in `want`.
fn scan_processes(ns_ino: Option<u64>, want: &[u32]) -> (ProcScan, BTreeMap<u32, String>) {
    let mut scan = ProcScan::default();
    let mut owners = BTreeMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return (scan, owners);
    };
    for ent in dir.flatten().take(MAX_PROCS) {
        let name = ent.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = format!("/proc/{pid}");
        // A process can hold sockets of a namespace it is not in (this
        // very program does after setns on a thread), so owners are looked
        // for everywhere; descriptor limits only for the namespace's own.
        let in_ns = match ns_ino {
            Some(ino) => fs::metadata(format!("{base}/ns/net")).is_ok_and(|m| m.ino() == ino),
            None => true,
        };
        if !in_ns && want.is_empty() {
            continue;
        }
        let Ok(fds) = fs::read_dir(format!("{base}/fd")) else {
            if in_ns {
                scan.unreadable += 1;
            }
            continue;
        };
        let mut open = 0u64;
        for fd in fds.flatten() {
            open += 1;
            if !want.is_empty() {
                if let Ok(target) = fs::read_link(fd.path()) {
                    let t = target.to_string_lossy();
                    if let Some(ino) = t
                        .strip_prefix("socket:[")
                        .and_then(|s| s.strip_suffix(']'))
                        .and_then(|s| s.parse::<u32>().ok())
                    {
                        if want.contains(&ino) {
                            let comm = read_opt(&format!("{base}/comm")).unwrap_or_default();
                            owners
                                .entry(ino)
                                .or_insert_with(|| format!("{pid}/{}", comm.trim()));
                        }
                    }
                }
            }
        }
        if !in_ns {
            continue;
        }
        scan.scanned += 1;
        let limit = read_opt(&format!("{base}/limits")).and_then(|l| procfs::parse_nofile_soft(&l));
        if let Some(limit) = limit {
            if limit > 0 && limit != u64::MAX && open.saturating_mul(2) >= limit {
                let comm = read_opt(&format!("{base}/stat"))
                    .and_then(|s| procfs::comm_from_stat(&s))
                    .unwrap_or_default();
                scan.busy.push(ProcFd {
                    pid,
                    comm,
                    open,
                    limit,
                });
            }
        }
    }
    scan.busy
        .sort_by_key(|p| std::cmp::Reverse(p.open.saturating_mul(1000) / p.limit.max(1)));
    (scan, owners)
}
