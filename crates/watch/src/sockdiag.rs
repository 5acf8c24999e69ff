//! Who owns a socket: `sock_diag` (`NETLINK_SOCK_DIAG`, `inet_diag`) dumps
//! of every network namespace in use, then the socket inode mapped to a
//! process through `/proc/PID/fd`.
//!
//! A received reset is usually handled in softirq, where the running task
//! is unrelated, and by the time the record is read the socket is closed
//! and no longer listed by `sock_diag`. So the table is refreshed ahead of
//! time ([`SockTable::refresh`], every few seconds): a reset on a socket
//! that existed at the last refresh is attributed through its cookie (the
//! `sock_cookie` of `tcp_receive_reset`) or its address pair, as long as the
//! process still holds the descriptor. Sockets opened and reset between two
//! refreshes stay unknown, and the watcher says so.
//!
//! The request is written by hand: it is two fixed kernel structs
//! (`inet_diag_req_v2` and `inet_diag_msg`), and the crates that wrap
//! netlink would bring a much larger dependency tree for it. Every length
//! read from the kernel is checked against the received buffer.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// `inet_diag_msg`: family, state, timer, retrans, sockid (48), expires,
/// rqueue, wqueue, uid, inode.
const DIAG_MSG_LEN: usize = 72;
/// At most this many sockets per namespace and refresh.
const MAX_SOCKETS: usize = 1 << 20;

/// One TCP socket as `sock_diag` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// The socket cookie (`SO_COOKIE`, `sock_cookie` of the tracepoints).
    pub cookie: u64,
    /// The socket's inode (0 for time-wait and request sockets).
    pub inode: u32,
}

/// Builds the dump request for one address family.
fn request(family: u8, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 56;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states, sockid.
    b.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    b.extend_from_slice(&u32::MAX.to_ne_bytes());
    b.resize(len, 0);
    b
}

/// Parses one `inet_diag_msg` (the payload of a netlink message).
pub fn parse_msg(m: &[u8]) -> Option<DiagSocket> {
    if m.len() < DIAG_MSG_LEN {
        return None;
    }
    let family = m[0];
    let id = &m[4..52];
    let sport = u16::from_be_bytes([id[0], id[1]]);
    let dport = u16::from_be_bytes([id[2], id[3]]);
    let addr = |b: &[u8]| -> Option<IpAddr> {
        match i32::from(family) {
            libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            libc::AF_INET6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[..16]);
                let v6 = Ipv6Addr::from(a);
                // A v4 peer of a dual-stack socket is reported as v4, as the
                // tracepoints do.
                Some(match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(v6),
                })
            }
            _ => None,
        }
    };
    let src = addr(&id[4..20])?;
    let dst = addr(&id[20..36])?;
    let c0 = u32::from_ne_bytes([id[40], id[41], id[42], id[43]]);
    let c1 = u32::from_ne_bytes([id[44], id[45], id[46], id[47]]);
    let inode = u32::from_ne_bytes([m[68], m[69], m[70], m[71]]);
    Some(DiagSocket {
        local: SocketAddr::new(src, sport),
        remote: SocketAddr::new(dst, dport),
        cookie: u64::from(c0) | (u64::from(c1) << 32),
        inode,
    })
}

/// Walks the netlink messages of one received datagram. Returns `Some(true)`
/// at the end of the dump, `None` on a kernel error.
pub fn parse_datagram(b: &[u8], seq: u32, out: &mut Vec<DiagSocket>) -> Option<bool> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= b.len() {
        let h = &b[off..off + NLMSG_HDRLEN];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let typ = u16::from_ne_bytes([h[4], h[5]]);
        let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        if len < NLMSG_HDRLEN || off + len > b.len() {
            return None;
        }
        if mseq == seq {
            match typ {
                NLMSG_DONE => return Some(true),
                NLMSG_ERROR => return None,
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(s) = parse_msg(&b[off + NLMSG_HDRLEN..off + len]) {
                        if out.len() < MAX_SOCKETS {
                            out.push(s);
                        }
                    }
                }
                _ => {}
            }
        }
        off += (len + 3) & !3;
    }
    Some(false)
}

/// A `NETLINK_SOCK_DIAG` socket, bound to the network namespace of the
/// thread that created it.
pub struct DiagSock(OwnedFd);

impl DiagSock {
    /// Opens one in the calling thread's network namespace.
    pub fn open() -> io::Result<DiagSock> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: valid fd and timeval of the given size; a receive timeout
        // so a silent kernel cannot block the watcher.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(DiagSock(fd))
    }

    /// Dumps the TCP sockets of the network namespace `ns` (an open
    /// `/proc/PID/ns/net`) from a short-lived thread, so the caller's
    /// namespace never changes. The netlink socket is closed before this
    /// returns: holding one would keep a deleted namespace (and its
    /// interfaces) alive.
    pub fn dump_in(ns: std::fs::File) -> io::Result<Vec<DiagSocket>> {
        std::thread::spawn(move || {
            // SAFETY: setns on a namespace fd affects this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            drop(ns);
            DiagSock::open()?.dump()
        })
        .join()
        .map_err(|_| io::Error::other("sock_diag thread panicked"))?
    }

    /// Every TCP socket (IPv4 and IPv6) of the namespace.
    pub fn dump(&self) -> io::Result<Vec<DiagSocket>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        for (i, fam) in [libc::AF_INET as u8, libc::AF_INET6 as u8]
            .into_iter()
            .enumerate()
        {
            let seq = 0x7273_0000 + i as u32;
            let req = request(fam, seq);
            // SAFETY: sockaddr_nl zeroed is the kernel as destination.
            let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            sa.nl_family = libc::AF_NETLINK as u16;
            // SAFETY: valid fd, buffer and address of the given lengths.
            let r = unsafe {
                libc::sendto(
                    self.0.as_raw_fd(),
                    req.as_ptr() as *const libc::c_void,
                    req.len(),
                    0,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as u32,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            loop {
                // SAFETY: buf is a valid writable buffer of its length.
                let n = unsafe {
                    libc::recv(
                        self.0.as_raw_fd(),
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        0,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if n == 0 {
                    break;
                }
                match parse_datagram(&buf[..n as usize], seq, &mut out) {
                    Some(true) => break,
                    Some(false) => {}
                    // IPv6 disabled, or no inet_diag for it: keep the rest.
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

/// Sockets by cookie and address pair, refreshed ahead of the resets, and
/// socket inodes mapped to processes on demand.
#[derive(Default)]
pub struct SockTable {
    by_cookie: HashMap<u64, u32>,
    /// `None`: the pair names more than one socket (the same addresses in
    /// several network namespaces), so it identifies none.
    by_pair: HashMap<(SocketAddr, SocketAddr), Option<u32>>,
    /// Socket inode → owning pid (None: searched, not found).
    owners: HashMap<u32, Option<u32>>,
    /// Failures met (for the user's notes), at most a few.
    pub errors: Vec<String>,
}

/// The inode of a `/proc/PID/ns/net` link (`net:[4026531840]`).
fn ns_inode(pid: &str) -> Option<u64> {
    let l = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let s = l.to_str()?;
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn pids() -> Vec<String> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.bytes().all(|c| c.is_ascii_digit()))
                .collect()
        })
        .unwrap_or_default()
}

impl SockTable {
    /// Re-reads every TCP socket of every network namespace a process is
    /// in. Forgets what it knew before (closed sockets' inodes included).
    pub fn refresh(&mut self) {
        // Namespace inode → a path that opens it: the namespaces processes
        // are in, and those `ip netns add` keeps without any process.
        let mut seen = HashMap::new();
        for pid in pids() {
            if let Some(ino) = ns_inode(&pid) {
                seen.entry(ino).or_insert(format!("/proc/{pid}/ns/net"));
            }
        }
        if let Ok(rd) = std::fs::read_dir("/run/netns") {
            use std::os::unix::fs::MetadataExt;
            for e in rd.flatten() {
                if let Ok(m) = std::fs::metadata(e.path()) {
                    seen.entry(m.ino())
                        .or_insert(e.path().to_string_lossy().into_owned());
                }
            }
        }
        self.by_cookie.clear();
        self.by_pair.clear();
        for (ino, path) in &seen {
            let list = match std::fs::File::open(path).and_then(DiagSock::dump_in) {
                Ok(l) => l,
                Err(e) => {
                    if self.errors.len() < 4 {
                        self.errors
                            .push(format!("sock_diag in network namespace {ino}: {e}"));
                    }
                    continue;
                }
            };
            for d in list {
                self.add(d);
            }
        }
        // Inodes are not reused while a socket lives, but forget the
        // owners of sockets that are gone.
        let live: std::collections::HashSet<u32> = self.by_cookie.values().copied().collect();
        self.owners.retain(|i, _| live.contains(i));
    }

    /// Records one listed socket (time-wait and request sockets, which have
    /// no inode and no owner, are skipped).
    fn add(&mut self, d: DiagSocket) {
        if d.inode == 0 {
            return;
        }
        self.by_cookie.insert(d.cookie, d.inode);
        self.by_pair
            .entry((d.local, d.remote))
            .and_modify(|i| {
                if *i != Some(d.inode) {
                    *i = None
                }
            })
            .or_insert(Some(d.inode));
    }

    /// Sockets known from the last refresh.
    pub fn len(&self) -> usize {
        self.by_cookie.len()
    }

    /// Whether no socket is known.
    pub fn is_empty(&self) -> bool {
        self.by_cookie.is_empty()
    }

    /// The inode of the socket with this cookie (unique on the host), else
    /// with this address pair when exactly one socket had it, as of the last
    /// refresh.
    pub fn inode(&self, cookie: Option<u64>, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
        match cookie.and_then(|c| self.by_cookie.get(&c)) {
            Some(i) => Some(*i),
            None => self.by_pair.get(&(local, remote)).copied().flatten(),
        }
    }

    /// The process holding socket `inode` open (`/proc/PID/fd/N` →
    /// `socket:[inode]`), searched once per inode.
    pub fn owner(&mut self, inode: u32) -> Option<u32> {
        if let Some(o) = self.owners.get(&inode) {
            return *o;
        }
        let want = format!("socket:[{inode}]");
        let found = pids().into_iter().find_map(|pid| {
            let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
            rd.flatten()
                .any(|e| {
                    std::fs::read_link(e.path())
                        .map(|l| l.as_os_str() == want.as_str())
                        .unwrap_or(false)
                })
                .then(|| pid.parse().ok())
                .flatten()
        });
        if self.owners.len() > 1 << 16 {
            self.owners.clear();
        }
        self.owners.insert(inode, found);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(family: u8, sport: u16, dport: u16, cookie: u64, inode: u32) -> Vec<u8> {
        let mut m = vec![0u8; DIAG_MSG_LEN];
        m[0] = family;
        m[1] = 1; // ESTABLISHED
        m[4..6].copy_from_slice(&sport.to_be_bytes());
        m[6..8].copy_from_slice(&dport.to_be_bytes());
        m[8..12].copy_from_slice(&[10, 0, 0, 1]);
        m[24..28].copy_from_slice(&[10, 0, 0, 2]);
        m[44..48].copy_from_slice(&(cookie as u32).to_ne_bytes());
        m[48..52].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        m[68..72].copy_from_slice(&inode.to_ne_bytes());
        m
    }

    fn nl(typ: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&typ.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(payload);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    #[test]
    fn parses_a_dump() {
        let mut d = nl(
            SOCK_DIAG_BY_FAMILY,
            7,
            &msg(2, 443, 50000, 0x1_0000_0002, 99),
        );
        d.extend(nl(SOCK_DIAG_BY_FAMILY, 7, &msg(2, 80, 1, 3, 0)));
        let mut out = Vec::new();
        assert_eq!(parse_datagram(&d, 7, &mut out), Some(false));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].local, "10.0.0.1:443".parse().unwrap());
        assert_eq!(out[0].remote, "10.0.0.2:50000".parse().unwrap());
        assert_eq!(out[0].cookie, 0x1_0000_0002);
        assert_eq!(out[0].inode, 99);
        let done = nl(NLMSG_DONE, 7, &[0; 4]);
        assert_eq!(parse_datagram(&done, 7, &mut out), Some(true));
        assert_eq!(
            parse_datagram(&nl(NLMSG_ERROR, 7, &[0; 20]), 7, &mut out),
            None
        );
    }

    #[test]
    fn a_pair_seen_twice_identifies_nothing() {
        let a = "10.0.0.1:80".parse().unwrap();
        let b = "10.0.0.2:5000".parse().unwrap();
        let d = |cookie, inode| DiagSocket {
            local: a,
            remote: b,
            cookie,
            inode,
        };
        let mut t = SockTable::default();
        t.add(d(1, 11));
        assert_eq!(t.inode(None, a, b), Some(11));
        // The same addresses in another network namespace.
        t.add(d(2, 12));
        assert_eq!(t.inode(None, a, b), None);
        assert_eq!(t.inode(Some(2), a, b), Some(12));
        t.add(d(3, 0));
        assert_eq!(t.inode(Some(3), a, b), None, "time-wait: no inode");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn bad_lengths_never_panic() {
        let mut d = nl(SOCK_DIAG_BY_FAMILY, 1, &msg(2, 1, 2, 3, 4));
        d[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(parse_datagram(&d, 1, &mut Vec::new()), None);
        d[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parse_datagram(&d, 1, &mut Vec::new()), None);
        assert!(parse_msg(&[2; 10]).is_none());
        assert!(parse_msg(&msg(99, 1, 2, 3, 4)).is_none());
        for cut in 0..d.len() {
            let _ = parse_datagram(&d[..cut], 1, &mut Vec::new());
        }
    }

    #[test]
    fn finds_this_process_socket_by_cookie() {
        // Unprivileged: sock_diag of one's own namespace needs no capability.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let s = DiagSock::open().unwrap();
        let all = s.dump().unwrap();
        let local = c.local_addr().unwrap();
        let me = all
            .iter()
            .find(|d| d.local == local && d.remote == l.local_addr().unwrap())
            .expect("own socket listed");
        let mut cookie = 0u64;
        let mut len = 8u32;
        // SAFETY: valid fd and an 8-byte out buffer.
        unsafe {
            libc::getsockopt(
                c.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                &mut cookie as *mut u64 as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(me.cookie, cookie);
        let mut t = SockTable::default();
        // A table with only this namespace, no refresh of all namespaces.
        for d in all {
            t.add(d);
        }
        let ino = t
            .inode(Some(cookie), local, l.local_addr().unwrap())
            .unwrap();
        assert_eq!(t.owner(ino), Some(std::process::id()));
    }
}
