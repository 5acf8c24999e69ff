//! [`ResetEvent`]: the one reset-event type shared by every part.
//!
//! The capture analyzer emits one per connection-ending RST, the kernel
//! watcher one per `tcp_send_reset`/`tcp_receive_reset` tracepoint hit, the
//! lab compares them with its ground truth and the proxy logs the ones it
//! injects. Fields a source cannot know stay `None`.

use crate::cause::{Cause, Sender, Side};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// What observed the reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A packet capture (file or live stream).
    Capture,
    /// The kernel's `tcp_send_reset` / `tcp_receive_reset` tracepoints.
    Kernel,
    /// The fault proxy, which injected it.
    Proxy,
}

/// Whether the local host sent or received the reset (kernel view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The local host emitted the RST.
    Sent,
    /// The local host received the RST.
    Received,
}

impl Direction {
    /// The stable id used in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// One TCP reset, explained as far as its source allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResetEvent {
    /// When the RST was seen.
    pub ts: Timestamp,
    /// What observed it.
    pub source: Source,
    /// The RST's source address (whose address it carries).
    pub src: SocketAddr,
    /// The RST's destination address.
    pub dst: SocketAddr,
    /// Whose address the RST carries, relative to the connection's
    /// originator, when the connection's opening is known.
    pub from: Option<Side>,
    /// Who really sent it.
    pub sender: Sender,
    /// Why.
    pub cause: Cause,
    /// How sure the verdict is, 0.0 to 1.0.
    pub confidence: f32,
    /// Sentences a person can check against the capture or the host.
    pub evidence: Vec<String>,
    /// Kernel view: sent or received by the local host.
    pub direction: Option<Direction>,
    /// Kernel view: the socket's TCP state name (e.g. `TCP_ESTABLISHED`).
    pub state: Option<String>,
    /// Kernel view: the `sk_rst_reason` name (e.g. `TCP_ABORT_ON_CLOSE`).
    pub reason: Option<String>,
    /// The process involved, when known.
    pub pid: Option<u32>,
    /// The process's command name, when known.
    pub comm: Option<String>,
}

impl ResetEvent {
    /// A reset with only the addresses known; callers fill in the rest.
    pub fn new(ts: Timestamp, source: Source, src: SocketAddr, dst: SocketAddr) -> Self {
        ResetEvent {
            ts,
            source,
            src,
            dst,
            from: None,
            sender: Sender::Unknown,
            cause: Cause::Unknown,
            confidence: 0.0,
            evidence: Vec::new(),
            direction: None,
            state: None,
            reason: None,
            pid: None,
            comm: None,
        }
    }
}
