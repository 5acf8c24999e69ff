//! Packet capture for the lab: an `AF_PACKET` socket opened inside a
//! namespace, written as classic pcap (nanosecond timestamps, Ethernet).
//!
//! Written by hand because it is tiny and must not depend on libpcap or
//! tcpdump; a reader lives in rstscope-capture, this side only writes.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Classic pcap magic for nanosecond-resolution timestamps.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Most frames one capture keeps.
pub const MAX_FRAMES: usize = 100_000;
/// Snapshot length written in the header and applied to records.
pub const SNAPLEN: u32 = 65535;

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

/// Writes `frames` as a classic pcap stream.
pub fn write_pcap<W: Write>(mut w: W, frames: &[Frame]) -> std::io::Result<()> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&MAGIC_NANOS.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    h.extend_from_slice(&SNAPLEN.to_le_bytes());
    h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    w.write_all(&h)?;
    for f in frames {
        let incl = f.data.len().min(SNAPLEN as usize);
        let mut r = Vec::with_capacity(16 + incl);
        r.extend_from_slice(&((f.ts_ns / 1_000_000_000) as u32).to_le_bytes());
        r.extend_from_slice(&((f.ts_ns % 1_000_000_000) as u32).to_le_bytes());
        r.extend_from_slice(&(incl as u32).to_le_bytes());
        r.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
        r.extend_from_slice(&f.data[..incl]);
        w.write_all(&r)?;
    }
    w.flush()
}

/// A running capture on one interface of one namespace.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Frame>>>,
    /// Where the pcap is written when the capture stops.
    pub path: PathBuf,
}

impl Capture {
    /// Opens an `AF_PACKET` socket on `ifname` inside namespace `ns` and
    /// starts reading. Returns once the socket is bound, so every later
    /// packet is seen.
    pub fn start(ns: &str, ifname: &str, path: &Path) -> Result<Capture> {
        let ifname = ifname.to_string();
        let fd: OwnedFd = crate::ns::in_ns(Some(ns), move || open_packet_socket(&ifname))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || read_loop(fd, &stop2));
        Ok(Capture {
            stop,
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    /// Stops after a short settle (so in-flight packets are kept) and
    /// writes the pcap. Returns the frames.
    pub fn finish(mut self) -> Result<Vec<Frame>> {
        std::thread::sleep(std::time::Duration::from_millis(60));
        self.stop.store(true, Ordering::Relaxed);
        let frames = self
            .thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let f = std::fs::File::create(&self.path)
            .with_context(|| format!("create {}", self.path.display()))?;
        write_pcap(std::io::BufWriter::new(f), &frames)?;
        Ok(frames)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_packet_socket(ifname: &str) -> Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the fd is owned right after.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    };
    if raw < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh, valid fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let cname = std::ffi::CString::new(ifname)?;
    // SAFETY: valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {ifname}");
    }
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: bind with a correctly sized sockaddr_ll.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        bail!(
            "bind AF_PACKET to {ifname}: {}",
            std::io::Error::last_os_error()
        );
    }
    let one: libc::c_int = 1;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    // SAFETY: setsockopt with correctly sized option values.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one as *const _ as *const libc::c_void,
            4,
        );
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    Ok(fd)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn read_loop(fd: OwnedFd, stop: &AtomicBool) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut buf = vec![0u8; SNAPLEN as usize];
    let mut cbuf = [0u64; 16];
    while !stop.load(Ordering::Relaxed) {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: zeroed msghdr, then pointed at live buffers of the right sizes.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: recvmsg into the buffers above.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            continue; // timeout (EAGAIN) or EINTR: check the stop flag
        }
        let mut ts = now_ns();
        // SAFETY: walking the control messages the kernel wrote into cbuf.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                    let t: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                    ts = t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if frames.len() >= MAX_FRAMES {
            continue; // a scenario sends a few dozen; never grow without bound
        }
        let len = (n as usize).min(buf.len());
        frames.push(Frame {
            ts_ns: ts,
            data: buf[..len].to_vec(),
        });
    }
    frames
}

/// One TCP segment decoded from an Ethernet frame (only what the lab needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// TTL or hop limit.
    pub ttl: u8,
    /// TCP flags byte.
    pub flags: u8,
}

/// TCP RST flag.
pub const RST: u8 = 0x04;

/// Decodes an Ethernet/IPv4|IPv6/TCP frame; `None` for anything else or
/// anything truncated (never panics).
pub fn tcp_segment(frame: &[u8]) -> Option<Segment> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(14..)?;
    let (src, dst, ttl, tcp) = match ethertype {
        0x0800 => {
            let ihl = ((*ip.first()? & 0x0f) as usize) * 4;
            if *ip.get(9)? != 6 || ihl < 20 {
                return None;
            }
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                *ip.get(8)?,
                ip.get(ihl..)?,
            )
        }
        0x86dd => {
            if *ip.get(6)? != 6 {
                return None; // extension headers are not used in the lab
            }
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                *ip.get(7)?,
                ip.get(40..)?,
            )
        }
        _ => return None,
    };
    let sp = u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]);
    let dp = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    Some(Segment {
        src: SocketAddr::new(src, sp),
        dst: SocketAddr::new(dst, dp),
        ttl,
        flags: *tcp.get(13)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_v4_rst() -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 63, 6, 0, 0, 198, 18, 2, 2, 198, 18, 1, 2,
        ];
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&7001u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = RST | 0x10;
        f.append(&mut ip);
        f.append(&mut tcp);
        f
    }

    #[test]
    fn pcap_header_and_records_round_trip() {
        let frames = vec![
            Frame {
                ts_ns: 1_700_000_000_123_456_789,
                data: frame_v4_rst(),
            },
            Frame {
                ts_ns: 1_700_000_001_000_000_001,
                data: vec![1, 2, 3],
            },
        ];
        let mut out = Vec::new();
        write_pcap(&mut out, &frames).unwrap();
        assert_eq!(
            u32::from_le_bytes(out[0..4].try_into().unwrap()),
            MAGIC_NANOS
        );
        assert_eq!(u16::from_le_bytes(out[4..6].try_into().unwrap()), 2);
        assert_eq!(
            u32::from_le_bytes(out[20..24].try_into().unwrap()),
            LINKTYPE_ETHERNET
        );
        // Parse the records back.
        let mut off = 24;
        for f in &frames {
            let sec = u32::from_le_bytes(out[off..off + 4].try_into().unwrap()) as u64;
            let ns = u32::from_le_bytes(out[off + 4..off + 8].try_into().unwrap()) as u64;
            let incl = u32::from_le_bytes(out[off + 8..off + 12].try_into().unwrap()) as usize;
            let orig = u32::from_le_bytes(out[off + 12..off + 16].try_into().unwrap()) as usize;
            assert_eq!(sec * 1_000_000_000 + ns, f.ts_ns);
            assert_eq!((incl, orig), (f.data.len(), f.data.len()));
            assert_eq!(&out[off + 16..off + 16 + incl], &f.data[..]);
            off += 16 + incl;
        }
        assert_eq!(off, out.len());
    }

    #[test]
    fn decodes_rst_and_rejects_truncated_frames() {
        let f = frame_v4_rst();
        let s = tcp_segment(&f).unwrap();
        assert_eq!(s.src, "198.18.2.2:7001".parse().unwrap());
        assert_eq!(s.dst, "198.18.1.2:40000".parse().unwrap());
        assert_eq!(s.ttl, 63);
        assert_ne!(s.flags & RST, 0);
        for cut in 0..f.len() - 6 {
            // Anything shorter than the TCP flags byte is refused, not a panic.
            if cut < 14 + 20 + 14 {
                assert!(tcp_segment(&f[..cut]).is_none(), "cut {cut}");
            }
        }
    }
}
