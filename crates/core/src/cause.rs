//! The shared vocabulary of `CAUSES.md`.
//!
//! Every part of rstscope answers three questions about a reset with the
//! words defined here: [`Side`] (`from`: whose address the RST carries),
//! [`Sender`] (who really emitted it) and [`Cause`] (why). The string ids
//! are public interface (JSON output, `--cause` filters, lab expectations):
//! never rename them.
//!
//! [`CauseInfo`] is the one knowledge table that the analyzer, the kernel
//! watcher, the doctor and the error explainer all use for their
//! explanations and next steps.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Whose address an RST carries, relative to the connection's originator
/// (the host that sent the SYN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The side that sent the SYN (Zeek's `orig`).
    Originator,
    /// The side that answered it (Zeek's `resp`).
    Responder,
}

impl Side {
    /// The stable id used in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Side::Originator => "originator",
            Side::Responder => "responder",
        }
    }
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Originator => Side::Responder,
            Side::Responder => Side::Originator,
        }
    }
}

/// Who really emitted an RST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    /// The host that owns the address the RST carries (a TCP-terminating
    /// proxy counts as an endpoint from its client's point of view).
    Endpoint,
    /// A firewall, load balancer, NAT or IPS forging the endpoint's address.
    Middlebox,
    /// Not enough evidence either way.
    Unknown,
}

impl Sender {
    /// The stable id used in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Sender::Endpoint => "endpoint",
            Sender::Middlebox => "middlebox",
            Sender::Unknown => "unknown",
        }
    }
}

/// Why a connection was reset. One variant per id of `CAUSES.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The SYN was answered by RST: nothing listens (or a firewall rejects the attempt).
    /// Wire: RST|ACK with seq 0 and ack = SYN.seq+1 right after a SYN.
    Refused,
    /// A side reset the connection during the three-way handshake.
    /// Wire: SYN, SYN-ACK, then RST from the originator.
    HandshakeAbort,
    /// The responder reset right after the handshake because its accept queue was full.
    /// Wire: handshake completes, the first ACK/data is answered by RST.
    ListenOverflow,
    /// An endpoint aborted an open connection without FIN and nothing shows unread data.
    /// Wire: RST|ACK from a live endpoint, no FIN before it.
    AbortiveClose,
    /// An endpoint closed while data it had received was still unread.
    /// Wire: the peer's data is acknowledged (or not) but never answered, then RST|ACK.
    UnreadDataClose,
    /// Data arrived at an endpoint that had already sent FIN.
    /// Wire: FIN from X, data from the peer afterwards, RST from X.
    DataAfterClose,
    /// The endpoint has no socket for this connection (no-state reset pattern).
    /// Wire: RST with seq = the segment's ACK, IP ID 0, after a non-idle segment.
    UnknownConnection,
    /// The connection sat idle, then was reset.
    IdleTimeout,
    /// Keepalive probes went unanswered and the prober reset the connection.
    KeepaliveTimeout,
    /// A device on the path reset an established connection by policy.
    FirewallReject,
    /// The RST answers a segment the endpoint considers invalid.
    InvalidSegment,
    /// The kernel reset orphaned sockets under memory or orphan pressure.
    MemoryPressure,
    /// Not enough evidence for any of the above.
    Unknown,
}

/// What rstscope knows about one cause: the single table every part uses
/// to explain itself.
#[derive(Debug)]
pub struct CauseInfo {
    /// The cause.
    pub cause: Cause,
    /// The stable id (`CAUSES.md`).
    pub id: &'static str,
    /// One line, for tables and live output.
    pub summary: &'static str,
    /// A few sentences: what happened at the TCP level.
    pub explanation: &'static str,
    /// Where it typically comes from.
    pub typical_origin: &'static str,
    /// What to check or run next.
    pub next_steps: &'static [&'static str],
}

macro_rules! causes {
    ($( $variant:ident => $id:literal {
        summary: $summary:expr,
        explanation: $expl:expr,
        origin: $origin:expr,
        next: [$($next:expr),* $(,)?] $(,)?
    } )*) => {
        /// The knowledge table, in the order of `CAUSES.md`.
        pub static CAUSES: &[CauseInfo] = &[
            $( CauseInfo {
                cause: Cause::$variant,
                id: $id,
                summary: $summary,
                explanation: $expl,
                typical_origin: $origin,
                next_steps: &[$($next),*],
            }, )*
        ];

        impl Cause {
            /// Every cause, in the order of `CAUSES.md`.
            pub const ALL: &'static [Cause] = &[$(Cause::$variant),*];

            /// The stable id (`CAUSES.md`).
            pub fn id(self) -> &'static str {
                match self { $(Cause::$variant => $id,)* }
            }
        }
    };
}

causes! {
    Refused => "refused" {
        summary: "the SYN was answered by RST: nothing listens on that port, or a firewall rejects the attempt",
        explanation: "The connection never opened. The host (or a firewall in front of it) answered the SYN with a reset, which the client sees as ECONNREFUSED.",
        origin: "server down or restarting, wrong port, a listener bound to another address, `reject with tcp reset` on SYN",
        next: [
            "check that the service listens on that address and port: `ss -ltnp`",
            "if it does, look for a firewall rule rejecting SYNs (`nft list ruleset`, security groups)",
            "capture the handshake and run `rstscope analyze` to see whether the RST's TTL matches the server's",
        ],
    }
    HandshakeAbort => "handshake_abort" {
        summary: "a side reset the connection during the three-way handshake",
        explanation: "The originator answered the SYN-ACK with a reset instead of completing the handshake: it no longer wanted, or no longer had, the connection.",
        origin: "half-open (SYN) scans, a client that gave up (connect timeout), a SYN-ACK for a socket the client no longer has",
        next: [
            "check client-side connect timeouts against the server's SYN-ACK latency",
            "look for port scanners if the originators are many and unknown",
        ],
    }
    ListenOverflow => "listen_overflow" {
        summary: "the server's accept queue was full and it reset the new connection",
        explanation: "The handshake completed, but the listening socket's accept queue was full. With net.ipv4.tcp_abort_on_overflow=1 Linux answers with a reset; with the default 0 it silently drops and the client retransmits.",
        origin: "`net.ipv4.tcp_abort_on_overflow=1`, an application that stopped calling accept() (fd exhaustion, stuck event loop), a backlog too small for bursts",
        next: [
            "check ListenOverflows/ListenDrops: `rstscope doctor --interval 10`",
            "compare the listen backlog with `net.core.somaxconn` and the burst rate: `ss -ltn` (Recv-Q vs Send-Q)",
            "check that the server keeps accepting (file-descriptor limit, event-loop stalls)",
        ],
    }
    AbortiveClose => "abortive_close" {
        summary: "an endpoint aborted the open connection without FIN",
        explanation: "An endpoint closed its socket abortively: it sent a reset instead of a FIN, and nothing shows it had unread data. The peer sees ECONNRESET.",
        origin: "`SO_LINGER {1,0}` then close(), abort(), a proxy's `nolinger`, `ss -K`",
        next: [
            "look for SO_LINGER with a zero timeout in the sender's code or proxy configuration",
            "check whether the sender's application logged an abort or a timeout at that time",
            "run `rstscope watch` on the sender to see the kernel's reason and the process",
        ],
    }
    UnreadDataClose => "unread_data_close" {
        summary: "an endpoint closed while data it had received was still unread",
        explanation: "An endpoint called close() (or its process died) while received data was still in its socket buffer. RFC 2525 (2.17) requires a reset in that case instead of a FIN, so the peer sees ECONNRESET, often losing the end of the response.",
        origin: "close() with unread data, a server that answers before reading the whole request, a process killed while the peer was sending",
        next: [
            "make the closing side read (drain) its input before close(), or shutdown(SHUT_WR) first and read until EOF",
            "check whether the closing process crashed or was killed (OOM killer, deploy)",
            "`rstscope watch` shows reason TCP_ABORT_ON_CLOSE and the process on the closing host",
        ],
    }
    DataAfterClose => "data_after_close" {
        summary: "data arrived after the endpoint had closed its side",
        explanation: "One side closed (sent FIN); the other kept writing. The closed socket answered the late data with a reset. On Linux the writer's first write succeeds, its next read returns EOF, and the following write fails with EPIPE.",
        origin: "the peer wrote after the server closed: keep-alive races (server idle timeout shorter than the client's pool timeout), half-close misuse",
        next: [
            "make the client's idle pool timeout shorter than the server's keep-alive timeout",
            "retry idempotent requests that fail on a reused connection",
            "check the FIN-to-data gap in `rstscope analyze` evidence",
        ],
    }
    UnknownConnection => "unknown_connection" {
        summary: "the endpoint had no socket for this connection",
        explanation: "The endpoint answered with the no-state reset: its kernel has no socket matching the segment, and nothing says the connection was idle. Its state was lost.",
        origin: "server process crashed and host restarted, failover to another host behind the same address, NAT rebinding",
        next: [
            "check the server host's uptime and restarts, and any failover at that time",
            "check NAT or load-balancer state changes between client and server",
        ],
    }
    IdleTimeout => "idle_timeout" {
        summary: "the connection sat idle, then was reset",
        explanation: "The connection was idle longer than some timer on the path or on the server, and was reset spontaneously or on the first segment after the idle gap.",
        origin: "load balancer / NAT / firewall idle timers (AWS NLB 350 s, Azure LB 4 min, GCP 600 s), server idle timeouts that reset",
        next: [
            "enable TCP keepalive (or application pings) with an interval shorter than the path's idle timer",
            "check load balancer and NAT idle timeouts; `rstscope doctor` compares them with the host's keepalive settings",
            "make client pools drop connections before the idle timer does",
        ],
    }
    KeepaliveTimeout => "keepalive_timeout" {
        summary: "keepalive probes went unanswered and the prober reset the connection",
        explanation: "The prober sent TCP keepalive probes that were never answered, gave up and reset the connection. The prober sees ETIMEDOUT; the peer, if still alive, sees ECONNRESET later.",
        origin: "`SO_KEEPALIVE` with a dead peer or a path that drops the flow (expired NAT or firewall state)",
        next: [
            "check whether the peer host was down or the path dropped the flow (firewall/NAT state expiry)",
            "compare keepalive time/interval/probes with the path's idle timers: `rstscope doctor`",
        ],
    }
    FirewallReject => "firewall_reject" {
        summary: "a device on the path reset the connection by policy",
        explanation: "A firewall, IPS or other middlebox forged a reset with an endpoint's address. The endpoint it impersonates never sent it and may keep a half-open connection.",
        origin: "nftables/iptables `reject with tcp reset`, IPS/DPI, censorship systems",
        next: [
            "find the device: the RST's TTL/hop limit tells how many hops away it was",
            "check firewall and IPS logs on the path at the RST's time",
            "run `rstscope analyze` on captures from both ends: the impersonated endpoint never sent the RST",
        ],
    }
    InvalidSegment => "invalid_segment" {
        summary: "the RST answers a segment the endpoint considered invalid",
        explanation: "The endpoint answered a segment outside its window, with odd flags or failing PAWS with a reset.",
        origin: "broken middleboxes rewriting sequence numbers, sequence desynchronisation, misbehaving stacks",
        next: [
            "compare sequence and ack numbers on both sides of any middlebox",
            "check for TCP timestamp or window-scaling rewriting on the path",
        ],
    }
    MemoryPressure => "memory_pressure" {
        summary: "the kernel reset sockets under TCP memory or orphan pressure",
        explanation: "The kernel ran out of TCP memory or exceeded the orphan limit and reset orphaned sockets. On the wire it looks like an abortive close.",
        origin: "`net.ipv4.tcp_mem`, `net.ipv4.tcp_max_orphans`",
        next: [
            "check TCPAbortOnMemory and orphan counts: `rstscope doctor`",
            "compare `net.ipv4.tcp_mem` and `tcp_max_orphans` with the load",
        ],
    }
    Unknown => "unknown" {
        summary: "not enough evidence for a specific cause",
        explanation: "rstscope could not tell why this reset was sent from what it saw.",
        origin: "",
        next: [
            "capture on both ends of the connection and run `rstscope analyze` on each",
            "run `rstscope watch` on the hosts involved to get the kernel's own reason",
        ],
    }
}

impl Cause {
    /// The knowledge-table entry for this cause.
    pub fn info(self) -> &'static CauseInfo {
        // CAUSES is written in the same order as the enum.
        &CAUSES[self as usize]
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// An unknown id was given where a cause, side or sender was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownId {
    /// What was given.
    pub given: String,
    /// The ids that would have been accepted.
    pub known: Vec<&'static str>,
}

impl fmt::Display for UnknownId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown id {:?} (known: {})",
            self.given,
            self.known.join(", ")
        )
    }
}

impl std::error::Error for UnknownId {}

impl FromStr for Cause {
    type Err = UnknownId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cause::ALL
            .iter()
            .copied()
            .find(|c| c.id() == s)
            .ok_or_else(|| UnknownId {
                given: s.to_string(),
                known: Cause::ALL.iter().map(|c| c.id()).collect(),
            })
    }
}

impl FromStr for Side {
    type Err = UnknownId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "originator" => Ok(Side::Originator),
            "responder" => Ok(Side::Responder),
            _ => Err(UnknownId {
                given: s.to_string(),
                known: vec!["originator", "responder"],
            }),
        }
    }
}

impl FromStr for Sender {
    type Err = UnknownId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "endpoint" => Ok(Sender::Endpoint),
            "middlebox" => Ok(Sender::Middlebox),
            "unknown" => Ok(Sender::Unknown),
            _ => Err(UnknownId {
                given: s.to_string(),
                known: vec!["endpoint", "middlebox", "unknown"],
            }),
        }
    }
}

/// The three answers for one reset, as the lab writes them in `truth.json`
/// and compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Verdict {
    /// Whose address the RST carries.
    pub from: Side,
    /// Who really sent it.
    pub sender: Sender,
    /// Why.
    pub cause: Cause,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.from, self.sender, self.cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_enum_order_and_ids_round_trip() {
        assert_eq!(CAUSES.len(), Cause::ALL.len());
        for (i, c) in Cause::ALL.iter().enumerate() {
            assert_eq!(CAUSES[i].cause, *c);
            assert_eq!(c.info().id, c.id());
            assert_eq!(c.id().parse::<Cause>().unwrap(), *c);
            let json = serde_json_like(*c);
            assert_eq!(json, c.id());
        }
        let e = "nope".parse::<Cause>().unwrap_err().to_string();
        assert!(
            e.starts_with("unknown id \"nope\" (known: refused, handshake_abort, "),
            "{e}"
        );
        let e = "nope".parse::<Sender>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown id \"nope\" (known: endpoint, middlebox, unknown)"
        );
    }

    // serde's rename_all must agree with the hand-written ids.
    fn serde_json_like(c: Cause) -> String {
        format!("{c:?}")
            .chars()
            .enumerate()
            .flat_map(|(i, ch)| {
                if ch.is_uppercase() && i > 0 {
                    vec!['_', ch.to_ascii_lowercase()]
                } else {
                    vec![ch.to_ascii_lowercase()]
                }
            })
            .collect()
    }

    #[test]
    fn ids_are_the_public_ones_of_causes_md() {
        let ids: Vec<_> = Cause::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(
            ids,
            [
                "refused",
                "handshake_abort",
                "listen_overflow",
                "abortive_close",
                "unread_data_close",
                "data_after_close",
                "unknown_connection",
                "idle_timeout",
                "keepalive_timeout",
                "firewall_reject",
                "invalid_segment",
                "memory_pressure",
                "unknown"
            ]
        );
    }
}
