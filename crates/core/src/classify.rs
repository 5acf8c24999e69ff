//! The reset classifier: who sent a connection's first RST, and why.
//!
//! [`classify`] is a pure function of a finished [`Conn`] (which carries the
//! RST, the segment it answered, snapshots of both endpoints at that moment
//! and what came after) and [`Options`]. It returns a [`ResetVerdict`] with
//! the `from`/`sender`/`cause` answers of `CAUSES.md`, a confidence, and
//! evidence sentences a person can check in the capture. [`classify_with`]
//! does the same, writing the sentences into strings recycled from earlier
//! verdicts ([`Scratch`]), for callers that explain many connections.
//!
//! # Sender: endpoint or middlebox
//!
//! A forged RST carries an endpoint's address but is emitted elsewhere.
//! The evidence weighed, strongest first:
//!
//! 1. **Hop count.** Every packet of one endpoint crosses the same hops, so
//!    its TTL (IPv6 hop limit) is constant. An RST whose TTL lies outside the
//!    range of every other packet from that address was built by another
//!    device (weight 1.0).
//! 2. **Race.** After sending an RST an endpoint has no connection left. If
//!    packets from that address, with its usual TTL, keep coming after the
//!    RST, the endpoint never sent it (weight 1.0).
//! 3. **IP ID.** Linux numbers a flow's packets sequentially, and uses 0 for
//!    resets sent without a socket (so 0 proves nothing). An RST whose IP ID
//!    copies the peer's IP ID (the packet that triggered an injector) is
//!    suspicious (weight 0.6).
//! 4. **Sequence state.** An RST that acknowledges less than the endpoint
//!    had already acknowledged does not come from that endpoint's TCP
//!    (weight 0.6).
//!
//! A total of 1.0 or more makes the sender a middlebox. With no baseline at
//! all (the endpoint sent nothing else) the sender is taken to be the
//! endpoint, at lower confidence; but when the capture holds nothing of the
//! connection before the RST and nothing from that address after it, the
//! sender is `unknown`.
//!
//! # Cause
//!
//! In order, the first rule that matches wins:
//!
//! 1. Handshake: RST to a bare SYN → `refused`; originator RSTs the SYN-ACK
//!    → `handshake_abort`; responder resets right after the handshake with a
//!    reply-style RST (no ACK bit, seq = the ACK's ack) having sent nothing →
//!    `listen_overflow`.
//! 2. A middlebox sender: after an idle gap → `idle_timeout`, else
//!    `firewall_reject`.
//! 3. The sender's keepalive probes went unanswered → `keepalive_timeout`.
//! 4. The sender had sent FIN and the peer sent data afterwards →
//!    `data_after_close`.
//! 5. An idle gap before the RST, or before the segment it answers →
//!    `idle_timeout` (see [`Options::idle_threshold`]).
//! 6. Nothing of the connection before the RST in the capture → `unknown`.
//!    (The rules above need earlier packets, except a middlebox shown by
//!    the sender's later packets and RST text naming a timeout.)
//! 7. A reply-style RST (no ACK bit, seq = the answered segment's ack):
//!    the answered segment acknowledged data never sent → `invalid_segment`,
//!    else `unknown_connection` (the host has no socket for it).
//! 8. An RST|ACK from a socket: the peer's data arrived after the sender's
//!    last data (so it was never answered, likely unread) →
//!    `unread_data_close`, else `abortive_close`.
//! 9. Otherwise `unknown`, with a sentence saying what the RST was.
//!
//! Text in the RST's payload is quoted as evidence; text naming a timeout
//! or idleness turns an otherwise unexplained reset into `idle_timeout`.

use crate::cause::{Cause, Sender, Side};
use crate::flow::{Conn, EpState, PacketNote, RstNote};
use crate::text;
use crate::wire::flags as F;
use std::fmt::Write as _;

const SEC: i64 = 1_000_000_000;

/// Classifier settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// A gap of at least this many seconds before an RST (or before the
    /// segment it answers) counts as idleness. `None` (the default) is
    /// adaptive: a gap counts when it is at least 1 s and at least 10 times
    /// the longest earlier gap of the same connection, which catches
    /// application timeouts of a few seconds on chatty connections as well
    /// as load-balancer timers of minutes.
    pub idle_threshold: Option<f64>,
}

/// The classifier's answer for one connection's first RST.
#[derive(Clone, Debug, PartialEq)]
pub struct ResetVerdict {
    /// Whose address the RST carries.
    pub from: Side,
    /// Who really sent it.
    pub sender: Sender,
    /// Why.
    pub cause: Cause,
    /// 0.0 to 1.0.
    pub confidence: f32,
    /// Sentences a person can check.
    pub evidence: Vec<String>,
    /// Idle time before the RST or the segment it answers, when that was
    /// the longest quiet period before it (seconds).
    pub idle_before_s: f64,
    /// The RST's TTL / hop limit.
    pub ttl: u8,
    /// The TTL the sender's other packets arrived with (lowest), if any.
    pub expected_ttl: Option<u8>,
}

fn side_of(i: usize) -> Side {
    if i == 0 {
        Side::Originator
    } else {
        Side::Responder
    }
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// Classifies the first RST of `c`; `None` if it has none.
pub fn classify(c: &Conn, opts: &Options) -> Option<ResetVerdict> {
    classify_with(c, opts, &mut Scratch::default())
}

/// Strings to write the next verdicts into: those of earlier verdicts,
/// handed back with [`Scratch::recycle`]. Classifying one connection after
/// another then allocates next to nothing; allocating and freeing the
/// sentences had been about a third of the cost of explaining a reset.
#[derive(Debug, Default)]
pub struct Scratch {
    strings: Vec<String>,
    lists: Vec<Vec<String>>,
}

/// Spare strings (and lists) a [`Scratch`] keeps at most.
const SPARE: usize = 64;

impl Scratch {
    /// An empty string: a recycled one when there is one.
    pub fn string(&mut self) -> String {
        self.strings.pop().unwrap_or_default()
    }

    /// Takes a string back for reuse.
    pub fn give(&mut self, mut s: String) {
        if self.strings.len() < SPARE {
            s.clear();
            self.strings.push(s);
        }
    }

    /// Takes back a verdict's evidence (or any list of strings) for reuse.
    pub fn recycle(&mut self, mut list: Vec<String>) {
        for s in list.drain(..) {
            self.give(s);
        }
        if self.lists.len() < SPARE {
            self.lists.push(list);
        }
    }

    fn list(&mut self) -> Vec<String> {
        self.lists.pop().unwrap_or_default()
    }

    /// The parts, joined, in a recycled string.
    fn joined(&mut self, parts: &[&str]) -> String {
        let mut s = self.string();
        for p in parts {
            s.push_str(p);
        }
        s
    }
}

/// [`classify`], writing the verdict into recycled memory (see [`Scratch`]).
pub fn classify_with(c: &Conn, opts: &Options, scratch: &mut Scratch) -> Option<ResetVerdict> {
    let r: &RstNote = c.rst.as_deref()?;
    let me = r.pkt.side;
    let peer = 1 - me;
    let from = side_of(me);
    // Endpoints are named by address; by address and port when both share
    // one address (loopback, a host talking to itself).
    let mut name = |i: usize| -> String {
        let ip = c.ep[i].addr.to_ip();
        let mut s = scratch.string();
        if c.ep[0].addr == c.ep[1].addr {
            text::push_socket(&mut s, std::net::SocketAddr::new(ip, c.ep[i].port));
        } else {
            text::push_ip(&mut s, ip);
        }
        s
    };
    let me_ip = name(me);
    let peer_ip = name(peer);
    let mut ev: Vec<String> = scratch.list();
    // A sentence written with `format!`'s syntax into a recycled string.
    macro_rules! say {
        ($($arg:tt)*) => {{
            let mut e = scratch.string();
            let _ = write!(e, $($arg)*);
            ev.push(e);
        }};
    }
    let has_ack = r.pkt.flags & F::ACK != 0;

    // ---- sender ----
    let mut mb = 0.0f32; // middlebox weight
    let mut ep_support = 0.0f32;
    let base = r.sender.ttl;
    // Baseline over every non-RST packet of the sender, before and after.
    let all_ttl = c.ep[me].ttl;
    if all_ttl.n > 0 {
        if !all_ttl.fits(r.ttl) {
            mb += 1.0;
            let mut e = scratch.string();
            let _ = write!(
                e,
                "TTL {}, but every other packet from {} arrived with TTL {}",
                r.ttl, me_ip, all_ttl.min
            );
            if all_ttl.min != all_ttl.max {
                let _ = write!(e, " to {}", all_ttl.max);
            }
            push_ttl_hops_note(&mut e, r.ttl, all_ttl.min);
            ev.push(e);
        } else {
            ep_support += 0.5;
            // Frequent sentences, here and below, are built without
            // `format!` (the first two: 1.4% fewer instructions for the
            // benchmark capture).
            let mut e = scratch.string();
            e.push_str("TTL ");
            text::push_u32(&mut e, r.ttl as u32);
            e.push_str(" matches the ");
            text::push_u32(&mut e, all_ttl.n);
            e.push_str(if all_ttl.n == 1 {
                " other packet from "
            } else {
                " other packets from "
            });
            e.push_str(&me_ip);
            ev.push(e);
        }
    }
    if r.after_genuine_from_sender > 0 {
        mb += 1.0;
        let mut e = scratch.string();
        e.push_str(&me_ip);
        e.push_str(" still sent ");
        text::push_u32(&mut e, r.after_genuine_from_sender);
        e.push_str(if r.after_genuine_from_sender == 1 {
            " packet ("
        } else {
            " packets ("
        });
        text::push_u32(&mut e, r.after_data_from_sender);
        e.push_str(" with data) ");
        text::push_secs(&mut e, r.after_first_gap.unwrap_or(0), 3);
        e.push_str(" s after the RST: it still had the connection");
        ev.push(e);
    }
    if let Some(id) = r.pkt.ip_id {
        let peer_ids = [
            r.prev.filter(|p| p.side == peer).and_then(|p| p.ip_id),
            r.peer.first_ipid,
            r.peer.ipid.last,
        ];
        if id != 0 && peer_ids.contains(&Some(id)) && r.sender.ipid.last != Some(id) {
            mb += 0.6;
            say!("IP ID {id} copies the IP ID of a packet from {peer_ip}, as injectors do");
        } else if id == 0 && r.sender.ipid.n > 0 && r.sender.ipid.zero == 0 {
            say!(
                "IP ID 0 while {me_ip}'s other packets had non-zero IDs (Linux uses 0 for resets sent without a socket)"
            );
        } else if id != 0 && r.sender.ipid.n >= 2 && r.sender.ipid.sequential + 1 >= r.sender.ipid.n
        {
            if let Some(last) = r.sender.ipid.last {
                let d = id.wrapping_sub(last);
                if (1..=64).contains(&d) {
                    ep_support += 0.3;
                    let mut e = scratch.string();
                    e.push_str("IP ID ");
                    text::push_u32(&mut e, id as u32);
                    e.push_str(" continues ");
                    e.push_str(&me_ip);
                    e.push_str("'s own sequence (last ");
                    text::push_u32(&mut e, last as u32);
                    e.push(')');
                    ev.push(e);
                }
            }
        }
    }
    if has_ack {
        if let Some(prev_ack) = r.sender.max_ack {
            let behind = prev_ack.wrapping_sub(r.pkt.ack) as i32;
            if behind > 0 && behind < (1 << 30) {
                mb += 0.6;
                say!(
                    "the RST acknowledges {} but {} had already acknowledged {} ({} byte{} more)",
                    r.pkt.ack,
                    me_ip,
                    prev_ack,
                    behind,
                    if behind == 1 { "" } else { "s" }
                );
            }
        }
    }
    // Nothing of the connection before the RST is in the capture (it began
    // before the capture did, or its packets went another way): no state to
    // weigh the RST against.
    let no_context = r.sender.pkts == 0 && r.peer.pkts == 0;
    let sender = if mb >= 1.0 {
        Sender::Middlebox
    } else if no_context && all_ttl.n == 0 {
        // Not even a later packet from that address to compare it with.
        Sender::Unknown
    } else {
        Sender::Endpoint
    };
    let sender_conf: f32 = if mb >= 1.0 {
        (0.6 + 0.2 * mb).min(0.97)
    } else if base.n == 0 && all_ttl.n == 0 {
        0.6
    } else {
        (0.75 + 0.2 * ep_support - 0.3 * mb).clamp(0.3, 0.95)
    };

    // ---- timing ----
    let gap_rst = r.pkt.gap_before;
    let prev = r.prev;
    let answers_peer = prev.is_some_and(|p| p.side == peer);
    let gap_trigger = prev.map(|p| p.gap_before).unwrap_or(0);
    let idle = idle_check(opts, gap_rst, gap_trigger, r.earlier_max_gap, answers_peer);
    let idle_before_s = secs(gap_rst.max(if answers_peer { gap_trigger } else { 0 }));

    if let Some(t) = &r.text {
        say!("the RST carries text: \"{t}\"");
    }

    // ---- cause ----
    let [os, rs] = r.states;
    let (cause, base_conf): (Cause, f32) = 'cause: {
        // 1. Handshake.
        if me == 1
            && matches!(os, EpState::SynSent | EpState::SynAckSent)
            && rs == EpState::Inactive
        {
            ev.push(scratch.joined(&[
                "the SYN from ",
                &peer_ip,
                if has_ack {
                    " was answered by RST|ACK in "
                } else {
                    " was answered by RST in "
                },
                &me_ip,
                "'s name",
            ]));
            if sender == Sender::Middlebox && r.after_genuine_from_sender > 0 {
                // The real responder answered after all: the reset was injected.
                say!("{me_ip} itself went on with the handshake: the RST was injected on the path");
                break 'cause (Cause::FirewallReject, 0.85);
            }
            break 'cause (Cause::Refused, 0.95);
        }
        // Zeek marks both sides established at the SYN-ACK; the originator
        // never having sent an ACK is what shows the handshake was not done.
        if me == 0
            && r.sender.pkts > 0
            && r.sender.max_ack.is_none()
            && r.sender.wire_payload == 0
            && r.peer.pkts > 0
            && r.peer.state == EpState::Established
        {
            ev.push(scratch.joined(&[
                &me_ip,
                " reset the connection instead of acknowledging the SYN-ACK",
            ]));
            break 'cause (Cause::HandshakeAbort, 0.9);
        }
        if me == 0 && rs == EpState::Established && os == EpState::Inactive {
            // SYN-ACK seen without the SYN, then RST from the originator.
            say!("{me_ip} reset the connection in answer to a SYN-ACK");
            break 'cause (Cause::HandshakeAbort, 0.8);
        }
        if me == 1
            && !has_ack
            && r.sender.wire_payload == 0
            && r.sender.fin_ts.is_none()
            && r.sender.pkts <= 2
            && answers_peer
            && prev.is_some_and(|p| p.ack == r.pkt.seq)
            && gap_rst < SEC
            && r.peer.pkts <= 3
        {
            let mut e = scratch.string();
            e.push_str(&me_ip);
            e.push_str(" reset the connection ");
            text::push_secs(&mut e, gap_rst, 3);
            e.push_str(" s after the handshake completed, having sent nothing but the SYN-ACK (accept queue full, tcp_abort_on_overflow)");
            ev.push(e);
            break 'cause (Cause::ListenOverflow, 0.7);
        }

        // 2. Middlebox.
        if sender == Sender::Middlebox {
            if let Some(i) = idle {
                let mut e = scratch.string();
                i.sentence(&mut e, &peer_ip);
                ev.push(e);
                break 'cause (Cause::IdleTimeout, 0.75);
            }
            ev.push(scratch.joined(&[
                "a device on the path reset an active connection in ",
                &me_ip,
                "'s name",
            ]));
            break 'cause (Cause::FirewallReject, 0.85);
        }

        // 3. Keepalive.
        if r.sender.probes >= 1 {
            let since = r.sender.first_probe_ts.map(|t| r.pkt.ts.0 - t.0);
            let mut e = scratch.string();
            text::push_u32(&mut e, r.sender.probes);
            e.push_str(if r.sender.probes == 1 {
                " keepalive probe from "
            } else {
                " keepalive probes from "
            });
            e.push_str(&me_ip);
            e.push_str(" went unanswered for ");
            text::push_secs(&mut e, since.unwrap_or(0), 1);
            e.push_str(" s before the RST");
            ev.push(e);
            break 'cause (
                Cause::KeepaliveTimeout,
                if r.sender.probes >= 2 { 0.9 } else { 0.7 },
            );
        }

        // 4. Data after close.
        if let Some(fin) = r.sender.fin_ts {
            if let Some(pd) = r.peer.last_payload_ts {
                if pd > fin {
                    let mut e = scratch.string();
                    e.push_str("RST answers data sent ");
                    text::push_secs(&mut e, pd.0 - fin.0, 2);
                    e.push_str(" s after ");
                    e.push_str(&me_ip);
                    e.push_str(" closed with FIN");
                    ev.push(e);
                    break 'cause (Cause::DataAfterClose, 0.9);
                }
            }
        }

        // 5. Idle.
        if let Some(i) = idle {
            let mut e = scratch.string();
            i.sentence(&mut e, &peer_ip);
            ev.push(e);
            break 'cause (Cause::IdleTimeout, 0.8);
        }
        if let Some(t) = &r.text {
            let l = t.to_ascii_lowercase();
            if l.contains("idle") || l.contains("timeout") || l.contains("timed out") {
                ev.push(scratch.joined(&["the RST's text names a timeout"]));
                break 'cause (Cause::IdleTimeout, 0.7);
            }
        }

        if no_context {
            ev.push(scratch.joined(&["the capture holds no earlier packet of this connection (it began before the capture, or its packets were not captured): nothing to weigh the RST against"]));
            break 'cause (Cause::Unknown, 0.3);
        }

        // 7. Reply-style RST: no socket, or an invalid segment.
        if !has_ack {
            if let Some(p) =
                prev.filter(|p| p.side == peer && p.flags & F::ACK != 0 && p.ack == r.pkt.seq)
            {
                if let Some(nxt) = r.sender.snd_nxt {
                    let ahead = p.ack.wrapping_sub(nxt) as i32;
                    if ahead > 0 {
                        say!(
                            "the segment it answers acknowledges {ahead} bytes {me_ip} never sent"
                        );
                        break 'cause (Cause::InvalidSegment, 0.6);
                    }
                }
                say!(
                    "reply-style RST (no ACK, seq = the answered segment's ack {}): {} had no socket for this connection",
                    p.ack, me_ip
                );
                if r.pkt.ip_id == Some(0) {
                    ev.push(
                        scratch
                            .joined(&["IP ID 0, as Linux uses for resets sent without a socket"]),
                    );
                }
                break 'cause (Cause::UnknownConnection, 0.7);
            }
        }

        // 8. Reset from a live socket.
        if has_ack {
            let fits = r.sender.snd_nxt.map(|n| n == r.pkt.seq);
            if fits == Some(true) {
                let mut e = scratch.string();
                e.push_str("RST|ACK with seq ");
                text::push_u32(&mut e, r.pkt.seq);
                e.push_str(" = ");
                e.push_str(&me_ip);
                e.push_str("'s next sequence number: sent by its socket");
                ev.push(e);
            }
            let peer_last = r.peer.last_payload_ts;
            let me_last = r.sender.last_payload_ts;
            let unread = match (peer_last, me_last) {
                (Some(p), Some(m)) => p > m,
                (Some(_), None) => true,
                _ => false,
            };
            if unread {
                let p = peer_last.expect("checked");
                let mut e = scratch.string();
                e.push_str(&peer_ip);
                e.push_str(" sent data ");
                text::push_secs(&mut e, r.pkt.ts.0 - p.0, 3);
                e.push_str(" s before the RST that ");
                e.push_str(&me_ip);
                e.push_str(" never answered (unread when it closed)");
                ev.push(e);
                break 'cause (Cause::UnreadDataClose, 0.75);
            }
            ev.push(scratch.joined(&[
                &me_ip,
                " aborted the connection without FIN; nothing it received was left unanswered",
            ]));
            break 'cause (Cause::AbortiveClose, 0.7);
        }
        // An RST without ACK that is no reply to the peer's last segment:
        // say what it is, since no rule explains it.
        let mut e = scratch.string();
        e.push_str("no rule fits: an RST without ACK, seq ");
        text::push_u32(&mut e, r.pkt.seq);
        if r.sender.snd_nxt == Some(r.pkt.seq) {
            e.push_str(" (");
            e.push_str(&me_ip);
            e.push_str("'s next sequence number), answering no segment from ");
        } else {
            e.push_str(", answering no segment from ");
        }
        e.push_str(&peer_ip);
        e.push_str(" in the capture");
        ev.push(e);
        (Cause::Unknown, 0.3)
    };

    // An endpoint verdict keeps at least 0.5 of sender certainty (it is the
    // default explanation); a middlebox verdict is only as sure as its evidence.
    let floor = if sender == Sender::Middlebox {
        0.0
    } else {
        0.5
    };
    let confidence = base_conf.min(sender_conf.max(floor));
    let confidence = (confidence * 100.0).round() / 100.0;
    scratch.give(me_ip);
    scratch.give(peer_ip);
    Some(ResetVerdict {
        from,
        sender,
        cause,
        confidence,
        evidence: ev,
        idle_before_s: (idle_before_s * 1000.0).round() / 1000.0,
        ttl: r.ttl,
        expected_ttl: if all_ttl.n > 0 {
            Some(all_ttl.min)
        } else {
            None
        },
    })
}

/// Appends how far away the device that built the RST was, from its TTL,
/// when that TTL is above the endpoint's.
fn push_ttl_hops_note(s: &mut String, rst: u8, base: u8) {
    if rst > base {
        let initial = [32u16, 64, 128, 255]
            .into_iter()
            .find(|&i| i >= rst as u16)
            .unwrap_or(255);
        let d = initial.saturating_sub(rst as u16);
        let _ = write!(
            s,
            " (the RST came from {d} hop{} away)",
            if d == 1 { "" } else { "s" }
        );
    }
}

#[derive(Clone, Copy)]
struct Idle {
    gap: i64,
    before_trigger: bool,
    threshold: f64,
    /// The threshold in ns when it was derived from the capture (adaptive).
    auto: Option<i64>,
}

impl Idle {
    fn sentence(&self, s: &mut String, peer: &str) {
        text::push_secs(s, self.gap, 1);
        if self.before_trigger {
            s.push_str(" s idle before ");
            s.push_str(peer);
            s.push_str("'s segment that the RST answers");
        } else {
            s.push_str(" s idle before the RST");
        }
        match self.auto {
            Some(ns) => {
                s.push_str(" (at least 10 times any earlier pause; threshold ");
                text::push_secs_of(s, ns, 1, self.threshold);
                s.push_str(" s)");
            }
            None => {
                let _ = write!(s, " (threshold {:.1} s)", self.threshold);
            }
        }
    }
}

fn idle_check(
    opts: &Options,
    gap_rst: i64,
    gap_trigger: i64,
    earlier_max: i64,
    answers_peer: bool,
) -> Option<Idle> {
    let decide = |gap: i64, earlier: i64| -> Option<(f64, Option<i64>)> {
        match opts.idle_threshold {
            Some(t) => (secs(gap) >= t).then_some((t, None)),
            None => {
                let t = 1.0f64.max(10.0 * secs(earlier));
                let t_ns = SEC.max(earlier.saturating_mul(10));
                (secs(gap) >= t).then_some((t, Some(t_ns)))
            }
        }
    };
    // Spontaneous: the RST itself follows the quiet period.
    if let Some((t, auto)) = decide(gap_rst, earlier_max.max(gap_trigger)) {
        return Some(Idle {
            gap: gap_rst,
            before_trigger: false,
            threshold: t,
            auto,
        });
    }
    // On the first segment after the quiet period, answered at once.
    if answers_peer && gap_rst < SEC {
        if let Some((t, auto)) = decide(gap_trigger, earlier_max) {
            return Some(Idle {
                gap: gap_trigger,
                before_trigger: true,
                threshold: t,
                auto,
            });
        }
    }
    None
}

/// The segment an RST answers, for display.
pub fn describe_packet(p: &PacketNote) -> String {
    let mut f = String::new();
    for (bit, name) in [
        (F::SYN, "SYN"),
        (F::FIN, "FIN"),
        (F::RST, "RST"),
        (F::PSH, "PSH"),
        (F::ACK, "ACK"),
    ] {
        if p.flags & bit != 0 {
            if !f.is_empty() {
                f.push('|');
            }
            f.push_str(name);
        }
    }
    format!("{f} seq {} ack {} len {}", p.seq, p.ack, p.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Tracker, TrackerConfig};
    use crate::time::Timestamp;
    use crate::wire::Segment;
    use F::*;

    /// A segment of the connection between 10.0.0.1:`sport` (TTL 64) and
    /// 10.0.0.2:80 (TTL 57), without IP IDs.
    fn seg(
        from_client: bool,
        sport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        len: u32,
    ) -> Segment<'static> {
        let s = if from_client {
            crate::flow::tests::seg(1, sport, 2, 80, flags, seq, ack, len)
        } else {
            crate::flow::tests::seg(2, 80, 1, sport, flags, seq, ack, len)
        };
        Segment {
            ttl: if from_client { 64 } else { 57 },
            ip_id: None,
            ..s
        }
    }

    /// Verdicts written into recycled strings read exactly as fresh ones,
    /// whatever the previous verdict left behind.
    #[test]
    fn recycled_strings_give_the_same_verdicts() {
        let mut t = Tracker::new(TrackerConfig::default());
        let mut at = 0.0;
        let mut feed = |gap: f64, pkts: &[Segment<'static>]| {
            at += gap;
            for s in pkts {
                at += 0.01;
                t.packet(Timestamp::from_secs_f64(at), s);
            }
        };
        let hs = |p: u16| {
            [
                seg(true, p, SYN, 100, 0, 0),
                seg(false, p, SYN | ACK, 900, 101, 0),
                seg(true, p, ACK, 101, 901, 0),
            ]
        };
        // refused; an abort with unread data; an RST alone; idle, then an RST.
        feed(
            0.0,
            &[
                seg(true, 1000, SYN, 1, 0, 0),
                seg(false, 1000, RST | ACK, 0, 2, 0),
            ],
        );
        feed(0.0, &hs(1001));
        feed(
            0.0,
            &[
                seg(true, 1001, PSH | ACK, 101, 901, 10),
                seg(false, 1001, RST | ACK, 901, 111, 0),
            ],
        );
        feed(0.0, &[seg(false, 1002, RST | ACK, 5, 7, 0)]);
        feed(0.0, &hs(1003));
        feed(
            400.0,
            &[
                seg(true, 1003, PSH | ACK, 101, 901, 10),
                seg(false, 1003, RST, 901, 0, 0),
            ],
        );
        let conns = t.finish();
        assert_eq!(conns.len(), 4);
        let opts = Options::default();
        let mut scratch = Scratch::default();
        // Twice over, so every connection is also classified after each other.
        for c in conns.iter().chain(conns.iter().rev()) {
            let fresh = classify(c, &opts).expect("a reset");
            let reused = classify_with(c, &opts, &mut scratch).expect("a reset");
            assert_eq!(reused, fresh);
            assert!(!fresh.evidence.is_empty());
            scratch.recycle(reused.evidence);
        }
        assert!(!scratch.strings.is_empty(), "strings came back for reuse");
    }
}
