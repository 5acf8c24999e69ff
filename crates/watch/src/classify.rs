//! From the kernel's reset reason and TCP state to a cause id of
//! `CAUSES.md` ("What Linux really does"), with evidence a person can check.
//! Pure.

use rstscope_core::Cause;

/// A cause with how sure it is and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The cause id.
    pub cause: Cause,
    /// 0.0 to 1.0.
    pub confidence: f32,
    /// One sentence saying what the kernel told us.
    pub evidence: String,
}

fn v(cause: Cause, confidence: f32, evidence: impl Into<String>) -> Verdict {
    Verdict {
        cause,
        confidence,
        evidence: evidence.into(),
    }
}

/// A reset the local host sent. `reason` is the kernel's `sk_rst_reason`
/// name (None before 6.10), `state` the socket's state name (None when no
/// socket matched the segment).
pub fn sent(reason: Option<&str>, state: Option<&str>) -> Verdict {
    let st = state.unwrap_or("no socket");
    let Some(reason) = reason else {
        return sent_without_reason(state);
    };
    let r = reason;
    match reason {
        "TCP_ABORT_ON_CLOSE" => v(
            Cause::UnreadDataClose,
            0.95,
            format!("kernel reason {r}: the application closed the socket with received data still unread"),
        ),
        "TCP_DISCONNECT_WITH_DATA" => v(
            Cause::UnreadDataClose,
            0.9,
            format!("kernel reason {r}: the socket was disconnected with received data still unread"),
        ),
        "TCP_STATE" | "TCP_ABORT_ON_LINGER" => v(
            Cause::AbortiveClose,
            0.9,
            format!("kernel reason {r} in state {st}: the socket was aborted (SO_LINGER 0 close, disconnect or SOCK_DESTROY)"),
        ),
        "TCP_ABORT_ON_MEMORY" => v(
            Cause::MemoryPressure,
            0.95,
            format!("kernel reason {r}: orphaned socket reset under TCP memory or orphan-count pressure"),
        ),
        "TCP_KEEPALIVE_TIMEOUT" => v(
            Cause::KeepaliveTimeout,
            0.95,
            format!("kernel reason {r}: keepalive probes went unanswered"),
        ),
        "TCP_TIMEWAIT_SOCKET" | "TCP_ABORT_ON_DATA" => v(
            Cause::DataAfterClose,
            0.9,
            format!("kernel reason {r} in state {st}: data arrived after the local side had closed"),
        ),
        "NO_SOCKET" => match state {
            None => v(
                Cause::Refused,
                0.7,
                "kernel reason NO_SOCKET and no socket, not even a listener, on the port: a SYN there is refused (a non-SYN segment would mean the connection's service went away: unknown_connection)",
            ),
            Some(s) => v(
                Cause::UnknownConnection,
                0.8,
                format!("kernel reason NO_SOCKET with a {s} socket: the segment belongs to no connection the host knows"),
            ),
        },
        "TCP_INVALID_ACK_SEQUENCE" | "TCP_RFC7323_PAWS" | "TCP_TOO_OLD_ACK"
        | "TCP_ACK_UNSENT_DATA" | "TCP_FLAGS" | "TCP_OLD_ACK" | "INVALID_SYN" => match state {
            Some("TCP_LISTEN") => v(
                Cause::UnknownConnection,
                0.7,
                format!("kernel reason {r} at a listener: a segment for a connection the listener does not know"),
            ),
            Some("TCP_SYN_SENT") => v(
                Cause::HandshakeAbort,
                0.7,
                format!("kernel reason {r} in TCP_SYN_SENT: the local side rejected the answer to its SYN"),
            ),
            _ => v(
                Cause::InvalidSegment,
                0.8,
                format!("kernel reason {r} in state {st}: the incoming segment was invalid"),
            ),
        },
        _ => v(
            Cause::Unknown,
            0.2,
            format!("kernel reason {r} in state {st} has no specific cause in rstscope's table"),
        ),
    }
}

/// Before 6.10 the tracepoint has no reason and fires only for resets from
/// full sockets: infer from the state, and say so.
fn sent_without_reason(state: Option<&str>) -> Verdict {
    const NOTE: &str = "this kernel has no reset reason (before 6.10): inferred from the state";
    match state {
        Some("TCP_CLOSE") => v(
            Cause::AbortiveClose,
            0.4,
            format!("{NOTE}: reset while closing, either close() with unread data (unread_data_close) or SO_LINGER 0 (abortive_close)"),
        ),
        Some(s @ ("TCP_FIN_WAIT1" | "TCP_FIN_WAIT2" | "TCP_LAST_ACK" | "TCP_CLOSING" | "TCP_TIME_WAIT")) => v(
            Cause::DataAfterClose,
            0.5,
            format!("{NOTE}: reset from a socket already closing ({s}), so data arrived after the close"),
        ),
        Some("TCP_LISTEN") => v(
            Cause::UnknownConnection,
            0.5,
            format!("{NOTE}: a listener reset a segment of a connection it does not know"),
        ),
        Some(s) => v(
            Cause::Unknown,
            0.2,
            format!("{NOTE}: reset from a {s} socket: keepalive timeout, abort (ss -K) or an invalid segment"),
        ),
        None => v(Cause::Unknown, 0.1, format!("{NOTE}; state unknown")),
    }
}

/// A reset a local socket received, in state `state` (None when unknown).
/// From this side the cause is mostly unknown: the sender's host knows it.
pub fn received(state: Option<&str>) -> Verdict {
    match state {
        Some("TCP_SYN_SENT") => v(
            Cause::Refused,
            0.9,
            "reset received in TCP_SYN_SENT: the SYN was answered by RST (connect fails with ECONNREFUSED)",
        ),
        Some("TCP_CLOSE_WAIT") => v(
            Cause::DataAfterClose,
            0.6,
            "reset received in TCP_CLOSE_WAIT: the peer had closed (sent FIN) and reset the data written after it",
        ),
        Some(s) => v(
            Cause::Unknown,
            0.2,
            format!("reset received in {s}: only the sender knows why; run `rstscope watch` on the peer"),
        ),
        None => v(
            Cause::Unknown,
            0.1,
            "reset received; the socket's state was not seen; run `rstscope watch` on the peer",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_the_causes_of_causes_md() {
        let c = |r: &str, s: Option<&str>| sent(Some(r), s).cause;
        assert_eq!(
            c("TCP_ABORT_ON_CLOSE", Some("TCP_CLOSE")),
            Cause::UnreadDataClose
        );
        assert_eq!(c("TCP_STATE", Some("TCP_CLOSE")), Cause::AbortiveClose);
        assert_eq!(
            c("TCP_TIMEWAIT_SOCKET", Some("TCP_TIME_WAIT")),
            Cause::DataAfterClose
        );
        assert_eq!(c("NO_SOCKET", None), Cause::Refused);
        assert_eq!(c("NO_SOCKET", Some("TCP_LISTEN")), Cause::UnknownConnection);
        assert_eq!(
            c("TCP_KEEPALIVE_TIMEOUT", Some("TCP_ESTABLISHED")),
            Cause::KeepaliveTimeout
        );
        assert_eq!(
            c("TCP_ABORT_ON_MEMORY", Some("TCP_FIN_WAIT1")),
            Cause::MemoryPressure
        );
        assert_eq!(
            c("TCP_FLAGS", Some("TCP_ESTABLISHED")),
            Cause::InvalidSegment
        );
        assert_eq!(c("MPTCP_RST_EUNSPEC", None), Cause::Unknown);
        assert_eq!(received(Some("TCP_SYN_SENT")).cause, Cause::Refused);
        assert_eq!(
            received(Some("TCP_CLOSE_WAIT")).cause,
            Cause::DataAfterClose
        );
        assert_eq!(received(Some("TCP_ESTABLISHED")).cause, Cause::Unknown);
        assert_eq!(received(None).cause, Cause::Unknown);
    }

    #[test]
    fn without_reason_the_state_is_used_and_said() {
        let x = sent(None, Some("TCP_CLOSE"));
        assert_eq!(x.cause, Cause::AbortiveClose);
        assert!(x.evidence.contains("before 6.10"));
        assert!(x.confidence < 0.5);
        assert_eq!(
            sent(None, Some("TCP_FIN_WAIT2")).cause,
            Cause::DataAfterClose
        );
    }
}
