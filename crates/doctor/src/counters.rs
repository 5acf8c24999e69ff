//! The kernel counters that matter for resets, in plain words, each tied to
//! the cause ids of `CAUSES.md`. Data, read top to bottom.
//!
//! Names are `nstat`'s: the `/proc/net/snmp` or `/proc/net/netstat` prefix
//! followed by the field (`TcpOutRsts`, `TcpExtListenOverflows`). All of
//! them exist on Linux 6.18 (checked against the recorded
//! `tests/fixtures/netstat`); `TCPResetsSent` does not exist on any kernel.

use rstscope_core::Cause::{self, *};

/// How much a change of the counter matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Resources ran out: the kernel dropped or reset connections by itself.
    Exhaustion,
    /// Resets sent or received.
    Reset,
    /// Background: explains other counters, no finding of its own.
    Context,
}

/// One counter of the table.
#[derive(Debug)]
pub struct CounterInfo {
    /// `nstat` name.
    pub name: &'static str,
    /// What an increase means, in plain words.
    pub meaning: &'static str,
    /// The causes an increase points to, most likely first.
    pub causes: &'static [Cause],
    /// How much it matters.
    pub weight: Weight,
}

use Weight::*;

/// The counters, in the order the report lists them.
pub static COUNTERS: &[CounterInfo] = &[
    CounterInfo {
        name: "TcpOutRsts",
        meaning: "segments this host sent with the RST flag: every reset it emitted, for any reason",
        causes: &[Refused, UnreadDataClose, AbortiveClose, DataAfterClose, UnknownConnection],
        weight: Reset,
    },
    CounterInfo {
        name: "TcpEstabResets",
        meaning: "connections that went from ESTABLISHED or CLOSE_WAIT straight to CLOSED: reset by the peer, or aborted here",
        causes: &[UnreadDataClose, AbortiveClose, DataAfterClose, FirewallReject, IdleTimeout],
        weight: Reset,
    },
    CounterInfo {
        name: "TcpAttemptFails",
        meaning: "connection attempts that failed: a SYN-SENT socket got a reset (refused), or a SYN-RECV connection was reset",
        causes: &[Refused, HandshakeAbort],
        weight: Reset,
    },
    CounterInfo {
        name: "TcpExtTCPAbortOnClose",
        meaning: "resets sent because an application closed a socket that still had unread received data (RFC 2525 2.17)",
        causes: &[UnreadDataClose],
        weight: Reset,
    },
    CounterInfo {
        name: "TcpExtTCPAbortOnData",
        meaning: "resets sent because data arrived on a socket the application had already closed, or because a socket was closed with SO_LINGER {1,0}",
        causes: &[DataAfterClose, AbortiveClose],
        weight: Reset,
    },
    CounterInfo {
        name: "TcpExtTCPAbortOnLinger",
        meaning: "resets sent by orphaned FIN_WAIT2 sockets whose TCP_LINGER2 was negative",
        causes: &[AbortiveClose],
        weight: Reset,
    },
    CounterInfo {
        name: "TcpExtTCPAbortOnTimeout",
        meaning: "connections killed because retransmissions, keepalive probes or TCP_USER_TIMEOUT ran out (keepalive sends one reset; retransmission timeouts none)",
        causes: &[KeepaliveTimeout, IdleTimeout],
        weight: Reset,
    },
    CounterInfo {
        name: "TcpExtTCPAbortOnMemory",
        meaning: "orphaned sockets reset because TCP memory (tcp_mem) or the orphan limit (tcp_max_orphans) was exceeded",
        causes: &[MemoryPressure],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtTCPAbortFailed",
        meaning: "resets the kernel wanted to send but could not (no memory for the segment): the peer never learns the connection is gone",
        causes: &[MemoryPressure],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtListenOverflows",
        meaning: "completed handshakes that found the listener's accept queue full (reset when tcp_abort_on_overflow=1, else dropped and retransmitted)",
        causes: &[ListenOverflow],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtListenDrops",
        meaning: "SYNs and handshake ACKs dropped at listening sockets, overflows included",
        causes: &[ListenOverflow],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtTCPReqQFullDrop",
        meaning: "SYNs dropped because the SYN queue was full and SYN cookies were off",
        causes: &[ListenOverflow],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtTCPReqQFullDoCookies",
        meaning: "SYN queue full: the listener answered with SYN cookies (a SYN flood or a burst larger than tcp_max_syn_backlog)",
        causes: &[ListenOverflow],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtTCPMemoryPressures",
        meaning: "times TCP entered memory pressure (tcp_mem's middle value): buffers shrink and orphans get reset",
        causes: &[MemoryPressure],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtTCPTimeWaitOverflow",
        meaning: "TIME_WAIT sockets not created because tcp_max_tw_buckets was reached: late segments then meet no socket and are answered with resets",
        causes: &[UnknownConnection, DataAfterClose],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtTCPBacklogDrop",
        meaning: "segments dropped because a busy socket's backlog exceeded its buffer limits (receive-side memory)",
        causes: &[MemoryPressure],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtTCPRcvQDrop",
        meaning: "segments dropped because the socket's receive memory was exhausted",
        causes: &[MemoryPressure],
        weight: Exhaustion,
    },
    CounterInfo {
        name: "TcpExtEmbryonicRsts",
        meaning: "resets received for connections still in SYN-RECV (the client gave up on the handshake)",
        causes: &[HandshakeAbort],
        weight: Reset,
    },
    CounterInfo {
        name: "TcpExtTCPChallengeACK",
        meaning: "challenge ACKs sent (RFC 5961) for resets or SYNs whose sequence number was in the window but not exact: forged or stale resets",
        causes: &[InvalidSegment, FirewallReject],
        weight: Reset,
    },
    CounterInfo {
        name: "TcpExtTCPSYNChallenge",
        meaning: "challenge ACKs sent for SYNs received on established connections",
        causes: &[InvalidSegment, UnknownConnection],
        weight: Context,
    },
    CounterInfo {
        name: "TcpExtPAWSEstab",
        meaning: "segments dropped by PAWS (old timestamps) on established connections",
        causes: &[InvalidSegment],
        weight: Context,
    },
    CounterInfo {
        name: "TcpInErrs",
        meaning: "TCP segments received with errors (bad checksum, bad header)",
        causes: &[InvalidSegment],
        weight: Context,
    },
    CounterInfo {
        name: "TcpExtTCPSynRetrans",
        meaning: "SYN and SYN-ACK retransmissions: handshakes that got no answer (a silent drop, a full queue with tcp_abort_on_overflow=0, a firewall that drops)",
        causes: &[ListenOverflow, FirewallReject],
        weight: Context,
    },
    CounterInfo {
        name: "TcpExtTCPKeepAlive",
        meaning: "keepalive probes sent",
        causes: &[KeepaliveTimeout],
        weight: Context,
    },
    CounterInfo {
        name: "TcpExtTCPTimeouts",
        meaning: "retransmission timeouts (RTO) fired",
        causes: &[IdleTimeout, KeepaliveTimeout],
        weight: Context,
    },
    CounterInfo {
        name: "TcpRetransSegs",
        meaning: "segments retransmitted",
        causes: &[Cause::Unknown],
        weight: Context,
    },
    CounterInfo {
        name: "TcpActiveOpens",
        meaning: "connections this host opened (SYN sent): the base for the rates above",
        causes: &[],
        weight: Context,
    },
    CounterInfo {
        name: "TcpPassiveOpens",
        meaning: "connections this host accepted (SYN received): the base for the rates above",
        causes: &[],
        weight: Context,
    },
];

/// The table entry for a counter name.
pub fn info(name: &str) -> Option<&'static CounterInfo> {
    COUNTERS.iter().find(|c| c.name == name)
}
