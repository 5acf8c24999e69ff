//! Listening TCP sockets and their accept queues, via sock_diag
//! (`NETLINK_SOCK_DIAG`, inet_diag). For a listener the kernel reports the
//! current accept-queue length in `idiag_rqueue` and the backlog limit in
//! `idiag_wqueue`, which `/proc/net/tcp` does not show. Works unprivileged.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};
use serde::Serialize;
use std::io;
use std::net::SocketAddr as IpSocketAddr;

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    /// Local address and port.
    pub local: IpSocketAddr,
    /// Connections waiting in the accept queue now.
    pub queue: u32,
    /// The accept queue's limit (the listen() backlog, capped by somaxconn).
    pub backlog: u32,
    /// Socket inode, to find the owning process.
    pub inode: u32,
    /// Owning process `pid/comm`, when it could be found (root).
    pub owner: Option<String>,
}

/// Most sockets a dump may return before the doctor stops reading (a
/// bound on memory whatever the kernel sends).
pub const MAX_SOCKETS: usize = 1_000_000;

/// Lists the listening TCP sockets (IPv4 and IPv6) of the calling thread's
/// network namespace.
pub fn listeners() -> io::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        dump(family, &mut out)?;
    }
    Ok(out)
}

fn dump(family: u8, out: &mut Vec<Listener>) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        hdr,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    socket.send(&buf, 0)?;

    let mut rx = vec![0u8; 1 << 16];
    loop {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        if n == 0 {
            return Ok(());
        }
        let mut off = 0;
        while off < n {
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&rx[off..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(match e.code {
                        Some(c) => {
                            io::Error::from_raw_os_error(c.get().checked_neg().unwrap_or(libc::EIO))
                        }
                        None => io::Error::other("sock_diag error"),
                    })
                }
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r))
                    if out.len() < MAX_SOCKETS =>
                {
                    out.push(Listener {
                        local: IpSocketAddr::new(
                            r.header.socket_id.source_address,
                            r.header.socket_id.source_port,
                        ),
                        queue: r.header.recv_queue,
                        backlog: r.header.send_queue,
                        inode: r.header.inode,
                        owner: None,
                    });
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            // Netlink messages are 4-byte aligned.
            off += (len + 3) & !3;
        }
    }
}
