//! [`ConnSummary`]: one finished connection as every output format sees it.

use rstscope_core::classify::{self, ResetVerdict, Scratch};
use rstscope_core::flow::Conn;
use rstscope_core::{ResetEvent, Source, Timestamp};
use std::net::SocketAddr;

/// The first RST of a connection: the shared [`ResetEvent`] plus what only a
/// capture can tell.
#[derive(Clone, Debug)]
pub struct ResetDetail {
    /// from, sender, cause, confidence, evidence, addresses.
    pub event: ResetEvent,
    /// Idle seconds before the RST (or before the segment it answers).
    pub idle_before_s: f64,
    /// The RST's TTL / hop limit.
    pub ttl: u8,
    /// The lowest TTL of the sender's other packets, if it sent any.
    pub expected_ttl: Option<u8>,
}

/// One connection, with Zeek's fields and rstscope's verdict.
#[derive(Clone, Debug)]
pub struct ConnSummary {
    /// Originator address.
    pub orig: SocketAddr,
    /// Responder address.
    pub resp: SocketAddr,
    /// First packet.
    pub start: Timestamp,
    /// Last packet.
    pub end: Timestamp,
    /// Zeek's duration (until both sides closed).
    pub duration: f64,
    /// Zeek's `conn_state`.
    pub conn_state: &'static str,
    /// Zeek's `history`.
    pub history: String,
    /// Packets from the originator.
    pub orig_pkts: u64,
    /// Packets from the responder.
    pub resp_pkts: u64,
    /// Payload bytes from the originator (Zeek's definition, from sequence numbers).
    pub orig_bytes: u64,
    /// Payload bytes from the responder.
    pub resp_bytes: u64,
    /// Payload bytes the originator put on the wire (retransmissions counted).
    pub orig_wire_bytes: u64,
    /// Payload bytes the responder put on the wire.
    pub resp_wire_bytes: u64,
    /// IP-level bytes (payload plus 40 per packet).
    pub orig_ip_bytes: u64,
    /// IP-level bytes from the responder.
    pub resp_ip_bytes: u64,
    /// RST packets.
    pub resets: u32,
    /// The first RST, explained.
    pub reset: Option<ResetDetail>,
}

/// Builds the summary of a finished connection, classifying its first RST.
pub fn summarize(c: &Conn, opts: &classify::Options) -> ConnSummary {
    summarize_with(c, opts, &mut Scratch::default())
}

/// Hands a summary's strings back to `scratch`, for the next
/// [`summarize_with`] to write into.
pub fn recycle(s: ConnSummary, scratch: &mut Scratch) {
    scratch.give(s.history);
    if let Some(r) = s.reset {
        scratch.recycle(r.event.evidence);
    }
}

/// [`summarize`], writing into strings recycled with [`recycle`].
pub fn summarize_with(c: &Conn, opts: &classify::Options, scratch: &mut Scratch) -> ConnSummary {
    let o = &c.ep[0];
    let r = &c.ep[1];
    let orig = SocketAddr::new(o.addr.to_ip(), o.port);
    let resp = SocketAddr::new(r.addr.to_ip(), r.port);
    let reset = classify::classify_with(c, opts, scratch).map(|v: ResetVerdict| {
        let note = c.rst.as_ref().expect("classify returned a verdict");
        let (src, dst) = if note.pkt.side == 0 {
            (orig, resp)
        } else {
            (resp, orig)
        };
        let mut ev = ResetEvent::new(note.pkt.ts, Source::Capture, src, dst);
        ev.from = Some(v.from);
        ev.sender = v.sender;
        ev.cause = v.cause;
        ev.confidence = v.confidence;
        ev.evidence = v.evidence;
        ResetDetail {
            event: ev,
            idle_before_s: v.idle_before_s,
            ttl: v.ttl,
            expected_ttl: v.expected_ttl,
        }
    });
    ConnSummary {
        orig,
        resp,
        start: c.start,
        end: c.last_pkt,
        duration: c.last_time.secs_since(c.start),
        conn_state: c.conn_state(),
        history: {
            let mut h = scratch.string();
            h.push_str(&c.history);
            h
        },
        orig_pkts: o.pkts,
        resp_pkts: r.pkts,
        orig_bytes: c.orig_bytes(),
        resp_bytes: c.resp_bytes(),
        orig_wire_bytes: o.wire_payload,
        resp_wire_bytes: r.wire_payload,
        orig_ip_bytes: o.ip_bytes(),
        resp_ip_bytes: r.ip_bytes(),
        resets: c.resets,
        reset,
    }
}
