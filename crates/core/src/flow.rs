//! The TCP connection tracker.
//!
//! [`Tracker::packet`] takes one decoded [`Segment`] and its capture time and
//! updates the connection it belongs to. Connection state follows Zeek's TCP
//! analyzer (`TCPSessionAdapter.cc`, `TCP_Endpoint.cc`, `TCP_Reassembler.cc`)
//! closely enough that `conn_state` and `history` agree with Zeek's logs:
//!
//! - endpoint states `INACTIVE`, `SYN_SENT`, `SYN_ACK_SENT`, `PARTIAL`,
//!   `ESTABLISHED`, `CLOSED`, `RESET` with Zeek's transitions;
//! - history letters (`S H A D F R T G W I Q ^`, upper case for the
//!   originator), with Zeek's repeat rules: `A D I Q` once per direction,
//!   `S H F R` again when the sequence number differs, `T G W` at 1, 10,
//!   100, ... occurrences;
//! - the originator is the host that sent the SYN; a connection first seen
//!   mid-stream is "flipped" when its source port looks like a server port
//!   (Zeek's `likely_server_ports` heuristic), recorded as `^`;
//! - port reuse: a new SYN on a closed connection (or with another initial
//!   sequence number) starts a new connection;
//! - connections are removed on Zeek's timers (5 s after a close or reset,
//!   5 s for an unanswered attempt), evaluated lazily in capture time.
//!
//! Deliberate difference from Zeek: Zeek expires connections idle for 5
//! minutes; rstscope keeps them for [`TrackerConfig::idle_retire`] (2 h 5 min
//! by default, longer than Linux's keepalive time) because a reset after a
//! long idle period is exactly what it must explain. Checksums are not
//! verified (like `zeek -C`): offloaded checksums are normal in captures.
//!
//! Alongside Zeek's state, every connection records the evidence the
//! [`crate::classify`] module needs: hop-count baselines, IP ID patterns,
//! FIN and data times, keepalive probes, the first RST and the segment it
//! answered, and packets that came after it.

use crate::time::Timestamp;
use crate::wire::{flags as F, Addr, Segment};
use hashbrown::HashTable;

const ORIG: usize = 0;
const RESP: usize = 1;
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;
const SEC: i64 = 1_000_000_000;
/// Zeek's `tcp_close_delay` and `tcp_reset_delay`.
const CLOSE_DELAY: i64 = 5 * SEC;
/// Zeek's `tcp_attempt_delay`.
const ATTEMPT_DELAY: i64 = 5 * SEC;
/// Longest RST payload kept as evidence.
const MAX_RST_TEXT: usize = 160;
/// Out-of-order blocks remembered per direction for gap detection.
const MAX_BLOCKS: usize = 16;

/// Ports Zeek's base scripts add to `likely_server_ports` (the analyzers'
/// well-known ports), used to orient connections first seen mid-stream.
pub const LIKELY_SERVER_PORTS: &[u16] = &[
    21, 22, 23, 25, 53, 80, 81, 88, 110, 111, 135, 139, 143, 389, 443, 445, 465, 502, 563, 585,
    587, 614, 631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2049, 2811, 3128, 3268, 3306,
    3389, 5060, 5222, 5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000,
];

/// Zeek's endpoint states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EpState {
    /// Nothing seen from this endpoint.
    #[default]
    Inactive,
    /// SYN sent.
    SynSent,
    /// SYN-ACK sent.
    SynAckSent,
    /// Data seen without a SYN (mid-stream).
    Partial,
    /// Handshake done.
    Established,
    /// FIN sent.
    Closed,
    /// RST sent.
    Reset,
}

/// A (count, next threshold) pair for Zeek's logarithmic history letters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Scaled {
    count: u32,
    thresh: u32,
}

impl Default for Scaled {
    fn default() -> Self {
        Scaled {
            count: 0,
            thresh: 1,
        }
    }
}

impl Scaled {
    /// Counts one more; true when the count reaches 1, 10, 100, ...
    fn hit(&mut self) -> bool {
        self.count = self.count.saturating_add(1);
        if self.count == self.thresh {
            self.thresh = self.thresh.saturating_mul(10);
            true
        } else {
            false
        }
    }
}

/// One direction of a connection: Zeek's endpoint state plus evidence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Endpoint {
    /// Address.
    pub addr: Addr,
    /// Port.
    pub port: u16,
    /// Zeek state.
    pub state: EpState,
    /// Zeek state before the last change.
    pub prev_state: EpState,
    start_seq: u32,
    last_seq: u32,
    ack_seq: u32,
    seq_wraps: u32,
    ack_wraps: u32,
    hist_last_syn: u64,
    hist_last_fin: u64,
    hist_last_rst: u64,
    fin_cnt: u32,
    fin_rel_seq: u64,
    did_close: bool,
    rxmit: Scaled,
    win0: Scaled,
    gap: Scaled,
    // Reassembly model for gap detection (relative sequence numbers).
    reassem_end: u64,
    trim_seq: u64,
    blocks: Vec<(u64, u64)>,

    /// Packets sent.
    pub pkts: u64,
    /// Payload bytes on the wire, retransmissions included.
    pub wire_payload: u64,
    /// Time of the last packet carrying payload.
    pub last_payload_ts: Option<Timestamp>,
    /// Time of the first FIN.
    pub fin_ts: Option<Timestamp>,
    /// Hop-count baseline: TTLs (or hop limits) of this side's non-RST packets.
    pub ttl: TtlBaseline,
    /// IP ID pattern of this side's non-RST IPv4 packets.
    pub ipid: IpIdPattern,
    /// Highest sequence number sent + segment length (absolute).
    pub snd_nxt: Option<u32>,
    /// Highest acknowledgment number sent (absolute).
    pub max_ack: Option<u32>,
    /// Keepalive probes sent since the peer last spoke.
    pub probes: u32,
    /// Time of the first of those probes.
    pub first_probe_ts: Option<Timestamp>,
    /// IP ID of the first packet (usually the SYN).
    pub first_ipid: Option<u16>,
}

/// TTL / hop-limit baseline of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TtlBaseline {
    /// Packets counted.
    pub n: u32,
    /// Lowest TTL seen.
    pub min: u8,
    /// Highest TTL seen.
    pub max: u8,
}

impl TtlBaseline {
    fn add(&mut self, ttl: u8) {
        if self.n == 0 {
            self.min = ttl;
            self.max = ttl;
        } else {
            self.min = self.min.min(ttl);
            self.max = self.max.max(ttl);
        }
        self.n = self.n.saturating_add(1);
    }
    /// Whether `ttl` lies within the baseline.
    pub fn fits(&self, ttl: u8) -> bool {
        self.n > 0 && ttl >= self.min && ttl <= self.max
    }
}

/// IP ID pattern of one endpoint's IPv4 packets.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IpIdPattern {
    /// Packets counted.
    pub n: u32,
    /// Packets with IP ID 0.
    pub zero: u32,
    /// Packets whose IP ID was the previous one plus 1..=64.
    pub sequential: u32,
    /// The last IP ID seen.
    pub last: Option<u16>,
}

impl IpIdPattern {
    fn add(&mut self, id: u16) {
        self.n = self.n.saturating_add(1);
        if id == 0 {
            self.zero += 1;
        }
        if let Some(prev) = self.last {
            let d = id.wrapping_sub(prev);
            if (1..=64).contains(&d) {
                self.sequential += 1;
            }
        }
        self.last = Some(id);
    }
}

/// A compact record of one packet, kept for the segment an RST answers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PacketNote {
    /// Capture time.
    pub ts: Timestamp,
    /// 0 = originator, 1 = responder (at the time it was recorded; flips update it).
    pub side: usize,
    /// TCP flags.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Payload length.
    pub len: u32,
    /// IP ID (IPv4).
    pub ip_id: Option<u16>,
    /// Time since the packet before it in the connection (ns), 0 for the first.
    pub gap_before: i64,
}

/// Everything known about the first RST of a connection at the moment it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct RstNote {
    /// The RST packet itself.
    pub pkt: PacketNote,
    /// Its TTL / hop limit.
    pub ttl: u8,
    /// Printable text carried in its payload, if any.
    pub text: Option<String>,
    /// The packet just before it in the connection (what it may answer).
    pub prev: Option<PacketNote>,
    /// Longest gap between packets before the RST (ns), excluding the gap
    /// just before `prev` and the gap before the RST itself.
    pub earlier_max_gap: i64,
    /// States of (originator, responder) just before the RST.
    pub states: [EpState; 2],
    /// Snapshot of the sender's endpoint just before the RST.
    pub sender: EndpointSnapshot,
    /// Snapshot of the peer's endpoint just before the RST.
    pub peer: EndpointSnapshot,
    /// Packets from the RST's sender after it (RSTs excluded).
    pub after_from_sender: u32,
    /// Of those, packets with payload.
    pub after_data_from_sender: u32,
    /// Of those, packets whose TTL fits the sender's earlier baseline.
    pub after_genuine_from_sender: u32,
    /// Time from the RST to the first later packet from the sender.
    pub after_first_gap: Option<i64>,
}

/// The parts of an [`Endpoint`] the classifier needs, frozen at RST time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EndpointSnapshot {
    /// Packets sent before the RST.
    pub pkts: u64,
    /// Payload bytes sent before the RST.
    pub wire_payload: u64,
    /// Time of its last packet with payload.
    pub last_payload_ts: Option<Timestamp>,
    /// Time of its first FIN.
    pub fin_ts: Option<Timestamp>,
    /// Highest seq + len sent.
    pub snd_nxt: Option<u32>,
    /// Highest ack sent.
    pub max_ack: Option<u32>,
    /// TTL baseline.
    pub ttl: TtlBaseline,
    /// IP ID pattern.
    pub ipid: IpIdPattern,
    /// Unanswered keepalive probes just before the RST.
    pub probes: u32,
    /// Time of the first of them.
    pub first_probe_ts: Option<Timestamp>,
    /// IP ID of its first packet.
    pub first_ipid: Option<u16>,
    /// Whether it sent a SYN-ACK (responder) / completed the handshake.
    pub state: EpState,
}

impl Endpoint {
    /// IP-level bytes sent: the headers are not known exactly, so payload
    /// plus 40 a packet.
    pub fn ip_bytes(&self) -> u64 {
        self.wire_payload + 40 * self.pkts
    }

    fn snapshot(&self) -> EndpointSnapshot {
        EndpointSnapshot {
            pkts: self.pkts,
            wire_payload: self.wire_payload,
            last_payload_ts: self.last_payload_ts,
            fin_ts: self.fin_ts,
            snd_nxt: self.snd_nxt,
            max_ack: self.max_ack,
            ttl: self.ttl,
            ipid: self.ipid,
            probes: self.probes,
            first_probe_ts: self.first_probe_ts,
            first_ipid: self.first_ipid,
            state: self.state,
        }
    }

    fn full(seq: u32, wraps: u32) -> u64 {
        ((wraps as u64) << 32) | seq as u64
    }

    fn rel(&self, seq: u32, wraps: u32) -> u64 {
        Self::full(seq, wraps).wrapping_sub(self.start_seq as u64)
    }

    fn init_start(&mut self, s: u32) {
        self.start_seq = s;
    }

    fn update_last_seq(&mut self, s: u32) {
        if s < self.last_seq {
            self.seq_wraps += 1;
        }
        self.last_seq = s;
    }

    fn update_ack_seq(&mut self, s: u32) {
        if s < self.ack_seq {
            self.ack_wraps += 1;
        }
        self.ack_seq = s;
    }

    /// The peer's ACK of `ack` into this endpoint's (not inactive) stream:
    /// the acknowledged point relative to its start (0 if before it), and,
    /// with `update` (not for an RST), the highest ACK moves on.
    #[inline(always)]
    fn acked(&mut self, ack: u32, update: bool) -> u64 {
        let (r, under) = get_relative_seq(self, ack, self.ack_seq, self.ack_wraps);
        if under {
            return 0;
        }
        if update {
            let d = seq_delta(ack, self.ack_seq);
            if !(ack == 0 && d > TOO_LARGE_SEQ_DELTA) && d > 0 {
                self.update_ack_seq(ack);
            }
        }
        r
    }

    fn no_data_acked(&self) -> bool {
        self.ack_wraps == 0
            && (self.ack_seq == self.start_seq || self.ack_seq == self.start_seq.wrapping_add(1))
    }

    /// Zeek's `TCP_Endpoint::Size()`: bytes sent, from sequence numbers.
    pub fn size(&self, peer_state: EpState) -> u64 {
        if self.prev_state == EpState::SynSent
            && self.state == EpState::Reset
            && peer_state == EpState::Inactive
            && !self.no_data_acked()
        {
            return 0;
        }
        let last = Self::full(self.last_seq, self.seq_wraps);
        let ack = Self::full(self.ack_seq, self.ack_wraps);
        let top = last.max(ack);
        let mut size = top.wrapping_sub(self.start_seq as u64);
        if size > (1u64 << 48) {
            // start above top: nonsense sequence numbers; Zeek would print a
            // huge unsigned value, we report 0.
            return 0;
        }
        size = size.saturating_sub(1);
        if self.fin_cnt > 0 && size != 0 {
            size -= 1;
        }
        size
    }

    fn set_state(&mut self, s: EpState) {
        if s != self.state {
            self.prev_state = self.state;
            self.state = s;
        }
    }

    fn is_clean(&self) -> bool {
        self.state == EpState::Established
            || (self.state == EpState::Closed && self.prev_state == EpState::Established)
    }
}

#[inline]
fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// One TCP connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Conn {
    /// Originator (index 0) and responder (index 1).
    pub ep: [Endpoint; 2],
    /// First packet.
    pub start: Timestamp,
    /// Zeek's `LastTime()`: the last packet before both sides closed.
    pub last_time: Timestamp,
    /// The last packet of any kind.
    pub last_pkt: Timestamp,
    /// Zeek's history string.
    pub history: String,
    hist_seen: u32,
    is_partial: bool,
    first_packet_seen: u8,
    /// RST packets seen.
    pub resets: u32,
    /// The first RST and its context.
    pub rst: Option<Box<RstNote>>,
    prev: Option<PacketNote>,
    prev_gap: i64,
    max_gap_before_prev: i64,
    delete_at: Option<i64>,
    attempt_at: Option<i64>,
}

const HIST_SYN: u32 = 0x1;
const HIST_FIN: u32 = 0x2;
const HIST_RST: u32 = 0x4;
const HIST_FIN_RST: u32 = 0x8;
const HIST_DATA: u32 = 0x10;
const HIST_ACK: u32 = 0x20;
const HIST_MULTI: u32 = 0x40;

impl Conn {
    fn new(ts: Timestamp, seg: &Segment, flip: bool) -> Conn {
        let mut c = Conn::placeholder();
        c.start_over(ts, seg, flip);
        c
    }

    /// Makes this slot a fresh connection whose first packet is `seg`,
    /// keeping the history's allocation. Field by field, in place: building
    /// a new `Conn` and moving it into its slot copied its 680 bytes several
    /// times per connection.
    fn start_over(&mut self, ts: Timestamp, seg: &Segment, flip: bool) {
        for (e, addr, port) in [(0, seg.src, seg.sport), (1, seg.dst, seg.dport)] {
            let e = &mut self.ep[e];
            let mut blocks = std::mem::take(&mut e.blocks);
            blocks.clear();
            *e = Endpoint {
                addr,
                port,
                reassem_end: 1,
                trim_seq: 1,
                blocks,
                ..Default::default()
            };
        }
        // Every field named (no `..`), so a field added later cannot be
        // left with the previous connection's value.
        let Conn {
            ep: _,
            start,
            last_time,
            last_pkt,
            history,
            hist_seen,
            is_partial,
            first_packet_seen,
            resets,
            rst,
            prev,
            prev_gap,
            max_gap_before_prev,
            delete_at,
            attempt_at,
        } = self;
        *start = ts;
        *last_time = ts;
        *last_pkt = ts;
        history.clear();
        *hist_seen = 0;
        *is_partial = false;
        *first_packet_seen = 0;
        *resets = 0;
        *rst = None;
        *prev = None;
        *prev_gap = 0;
        *max_gap_before_prev = 0;
        *delete_at = None;
        *attempt_at = Some(ts.0.saturating_add(ATTEMPT_DELAY));
        if flip {
            self.flip_roles();
        }
    }

    /// Zeek's `conn_state` for this connection as it stands.
    pub fn conn_state(&self) -> &'static str {
        use EpState::*;
        let os = self.ep[ORIG].state;
        let rs = self.ep[RESP].state;
        let o_inactive = matches!(os, Inactive | Partial);
        let r_inactive = matches!(rs, Inactive | Partial);
        if rs == Reset {
            if matches!(os, SynSent | SynAckSent)
                || (os == Reset && self.orig_bytes() == 0 && self.resp_bytes() == 0)
            {
                "REJ"
            } else if o_inactive {
                "RSTRH"
            } else {
                "RSTR"
            }
        } else if os == Reset {
            if r_inactive {
                if rstos0_history(&self.history) {
                    "RSTOS0"
                } else {
                    "OTH"
                }
            } else {
                "RSTO"
            }
        } else if rs == Closed && os == Closed {
            "SF"
        } else if os == Closed {
            if r_inactive {
                "SH"
            } else {
                "S2"
            }
        } else if rs == Closed {
            if o_inactive {
                "SHR"
            } else {
                "S3"
            }
        } else if os == SynSent && rs == Inactive {
            "S0"
        } else if os == Established && rs == Established {
            "S1"
        } else {
            "OTH"
        }
    }

    /// Zeek's `orig_bytes` (from sequence numbers).
    pub fn orig_bytes(&self) -> u64 {
        self.ep[ORIG].size(self.ep[RESP].state)
    }

    /// Zeek's `resp_bytes` (from sequence numbers).
    pub fn resp_bytes(&self) -> u64 {
        self.ep[RESP].size(self.ep[ORIG].state)
    }

    fn add_history(&mut self, is_orig: bool, code: u8) {
        let c = if is_orig {
            code
        } else {
            code.to_ascii_lowercase()
        };
        self.history.push(c as char);
    }

    /// Zeek's `CheckHistory`: records the letter the first time; returns
    /// true if it had been seen before.
    fn check_history(&mut self, is_orig: bool, mask: u32, code: u8) -> bool {
        let mask = if is_orig { mask } else { mask << 16 };
        if self.hist_seen & mask == 0 {
            self.hist_seen |= mask;
            self.add_history(is_orig, code);
            false
        } else {
            true
        }
    }

    fn flip_roles(&mut self) {
        self.ep.swap(0, 1);
        self.first_packet_seen =
            ((self.first_packet_seen & 1) << 1) | ((self.first_packet_seen & 2) >> 1);
        self.is_partial = false;
        self.history.push('^');
        if let Some(p) = self.prev.as_mut() {
            p.side ^= 1;
        }
        if let Some(r) = self.rst.as_mut() {
            r.pkt.side ^= 1;
            r.states.swap(0, 1);
            if let Some(p) = r.prev.as_mut() {
                p.side ^= 1;
            }
        }
    }

    /// Where the tracker's index files it: the [`key_hash`] of its
    /// packets' [`flow_key`].
    fn index_hash(&self) -> u64 {
        let (a, b) = (&self.ep[ORIG], &self.ep[RESP]);
        key_hash(flow_key(flow_hash_of(&a.addr, a.port, &b.addr, b.port)))
    }

    /// Whether `seg` travels between this connection's two endpoints
    /// (in either direction).
    #[inline]
    fn same_flow(&self, seg: &Segment) -> bool {
        let (a, b) = (&self.ep[ORIG], &self.ep[RESP]);
        (seg.sport == a.port && seg.dport == b.port && seg.src == a.addr && seg.dst == b.addr)
            || (seg.sport == b.port
                && seg.dport == a.port
                && seg.src == b.addr
                && seg.dst == a.addr)
    }

    /// The earliest time after `now` at which [`Conn::expired`] may turn
    /// true (an attempt timer already past `now` no longer applies).
    fn next_deadline(&self, now: i64, idle_retire: i64) -> i64 {
        let mut at = self.last_pkt.0.saturating_add(idle_retire);
        if let Some(d) = self.delete_at {
            at = at.min(d);
        }
        if let Some(a) = self.attempt_at.filter(|&a| a > now) {
            at = at.min(a);
        }
        at
    }

    /// Whether Zeek would have removed this connection by time `t`.
    fn expired(&self, t: i64, idle_retire: i64) -> bool {
        if let Some(d) = self.delete_at {
            if t >= d {
                return true;
            }
        }
        if let Some(a) = self.attempt_at {
            if t >= a
                && matches!(self.ep[ORIG].state, EpState::SynSent | EpState::SynAckSent)
                && self.ep[RESP].state == EpState::Inactive
            {
                return true;
            }
        }
        t.saturating_sub(self.last_pkt.0) >= idle_retire
    }

    fn is_closed(&self) -> bool {
        self.ep[ORIG].did_close || self.ep[RESP].did_close
    }

    /// Zeek's `IsReuse`: does this SYN start a new connection?
    fn is_reuse(&self, seg: &Segment) -> bool {
        if !seg.has(F::SYN) {
            return false;
        }
        let mut conn_orig = ORIG;
        if seg.has(F::ACK) {
            if self.ep[ORIG].state != EpState::Inactive {
                return false;
            }
            conn_orig = RESP;
        }
        if !self.is_closed() {
            let o = &self.ep[conn_orig];
            if seg.seq == o.start_seq {
                return false;
            }
            if !seg.has(F::ACK)
                && o.state == EpState::SynAckSent
                && self.ep[RESP].state == EpState::Inactive
                && seg.seq == self.ep[RESP].start_seq
            {
                return false;
            }
        }
        true
    }

    /// Zeek's processing of `seg` ([`Conn::process`]) and its evidence
    /// ([`Conn::note`]), for any segment. Returns the connection's deletion
    /// time if `seg` changed it (its timer must then be set).
    #[inline(always)]
    fn general(&mut self, ts: Timestamp, is_orig: bool, seg: &Segment) -> Option<i64> {
        let before = [self.ep[ORIG].state, self.ep[RESP].state];
        let delete_before = self.delete_at;
        let flipped = self.process(ts, is_orig, seg);
        let now_orig = is_orig != flipped;
        let before = if flipped {
            [before[1], before[0]]
        } else {
            before
        };
        self.note(ts, if now_orig { ORIG } else { RESP }, seg, before);
        if self.delete_at != delete_before {
            self.delete_at
        } else {
            None
        }
    }

    /// [`Conn::process`] and [`Conn::note`] for the commonest segment, if
    /// `seg` is one: an ACK without SYN, FIN or RST, with an open window and
    /// its payload captured whole, on a connection established both ways
    /// (or seen only from the middle, Zeek's `PARTIAL`, which Zeek treats
    /// alike for such segments), whose two sides have both sent something,
    /// with no RST yet. Returns false, having changed nothing, for every
    /// other segment.
    ///
    /// Why a second way through: for these segments most of what the
    /// general way asks (flags, states, first packets, history letters,
    /// the state machine, timers) has a known answer, and they are most of
    /// the packets of a capture. This does only what is left, in the same
    /// order, through the same helpers: each step below is the general
    /// way's, in the general way's words. In builds with debug assertions
    /// (the fuzz target's, say) and in this crate's unit tests, every
    /// segment it takes is also run the general way on a copy of the
    /// connection, and the two must agree in every field (see
    /// [`Tracker::packet_keyed`]).
    #[inline(always)]
    fn common(&mut self, ts: Timestamp, is_orig: bool, seg: &Segment) -> bool {
        let me = if is_orig { ORIG } else { RESP };
        let other = 1 - me;
        let len = seg.payload_len;
        let open = |s: EpState| matches!(s, EpState::Established | EpState::Partial);
        if seg.flags & (F::SYN | F::FIN | F::RST | F::ACK) != F::ACK
            || !open(self.ep[me].state)
            || !open(self.ep[other].state)
            || self.first_packet_seen != 3
            || seg.window == 0
            || seg.caplen < len
            || self.rst.is_some()
        {
            return false;
        }
        let (seq, ack) = (seg.seq, seg.ack);
        let seq_one_past = seq.wrapping_add(len);
        // process(): SetPartialStatus, init_endpoint and update_window
        // change nothing here.
        let (rel_seq, seq_underflow) = {
            let e = &self.ep[me];
            get_relative_seq(e, seq, e.last_seq, e.seq_wraps)
        };
        // update_history
        if len > 0 {
            self.check_history(is_orig, HIST_DATA, b'D');
        } else {
            self.check_history(is_orig, HIST_ACK, b'A');
        }
        if !self.ep[ORIG].did_close || !self.ep[RESP].did_close {
            self.last_time = ts;
        }
        let rel_ack = self.ep[other].acked(ack, true);
        // update_last_seq
        let e = &mut self.ep[me];
        if seq_delta(seq_one_past, e.last_seq) > 0 {
            e.update_last_seq(seq_one_past);
        } else if len > 0 && e.rxmit.hit() {
            self.add_history(is_orig, b'T');
        }
        // The state machine: nothing to do for an established or partial
        // endpoint without SYN, FIN or RST.
        self.ack_received(other, rel_ack);
        if len > 0 && !seq_underflow {
            self.data_sent(me, rel_seq, len as u64);
        }
        // note(), without an RST before or now.
        let (gap, note) = self.packet_note(ts, me, seg);
        self.record(ts, me, seg, false, gap, note);
        true
    }

    /// Zeek's processing of one segment; returns whether the roles of
    /// originator and responder were swapped.
    fn process(&mut self, ts: Timestamp, is_orig: bool, seg: &Segment) -> bool {
        let me = if is_orig { ORIG } else { RESP };
        let other = 1 - me;
        let fl = seg.flags;
        let syn = fl & F::SYN != 0;
        let fin = fl & F::FIN != 0;
        let rst = fl & F::RST != 0;
        let ackf = fl & F::ACK != 0;
        let len = seg.payload_len;
        let base_seq = seg.seq;
        let ack_seq = seg.ack;

        // SetPartialStatus
        if is_orig {
            if self.first_packet_seen & 1 == 0 {
                self.is_partial = !syn || ackf;
            }
        } else if self.first_packet_seen & 2 == 0 && !self.is_partial {
            self.is_partial = !syn;
        }

        let mut seg_len = len as i64 + syn as i64 + fin as i64;
        if rst {
            seg_len -= len as i64;
        }
        let seq_one_past = base_seq.wrapping_add(seg_len as u32);

        // init_endpoint
        {
            let e = &mut self.ep[me];
            match e.state {
                EpState::Inactive => {
                    let mut last = seq_one_past;
                    if syn {
                        e.ack_seq = base_seq;
                        e.init_start(base_seq);
                    } else {
                        e.ack_seq = base_seq.wrapping_sub(1);
                        e.init_start(base_seq.wrapping_sub(1));
                        last = base_seq;
                    }
                    e.last_seq = last;
                }
                EpState::SynSent | EpState::SynAckSent => {
                    if syn && base_seq != e.start_seq {
                        e.init_start(base_seq);
                        e.ack_seq = base_seq;
                        e.last_seq = seq_one_past;
                    }
                }
                EpState::Established | EpState::Partial => {
                    if syn {
                        e.init_start(base_seq);
                        e.ack_seq = base_seq;
                        e.last_seq = seq_one_past;
                    }
                }
                EpState::Reset => {
                    if syn && e.prev_state == EpState::Inactive {
                        e.init_start(base_seq);
                        e.ack_seq = base_seq;
                        e.last_seq = seq_one_past;
                    }
                }
                EpState::Closed => {}
            }
        }

        let (rel_seq, seq_underflow) = get_relative_seq(
            &self.ep[me],
            base_seq,
            self.ep[me].last_seq,
            self.ep[me].seq_wraps,
        );

        // update_history
        let bits = syn as u8 + fin as u8 + rst as u8;
        if bits > 1 {
            if fin && rst {
                self.check_history(is_orig, HIST_FIN_RST, b'I');
            } else {
                self.check_history(is_orig, HIST_MULTI, b'Q');
            }
        } else if bits == 1 {
            if syn {
                let code = if ackf { b'H' } else { b'S' };
                if self.check_history(is_orig, HIST_SYN, code)
                    && rel_seq != self.ep[me].hist_last_syn
                {
                    self.add_history(is_orig, code);
                }
                self.ep[me].hist_last_syn = rel_seq;
            }
            if fin {
                let v = rel_seq.wrapping_add(len as u64);
                if self.check_history(is_orig, HIST_FIN, b'F') && v != self.ep[me].hist_last_fin {
                    self.add_history(is_orig, b'F');
                }
                self.ep[me].hist_last_fin = v;
            }
            if rst {
                if self.check_history(is_orig, HIST_RST, b'R')
                    && rel_seq != self.ep[me].hist_last_rst
                {
                    self.add_history(is_orig, b'R');
                }
                self.ep[me].hist_last_rst = rel_seq;
            }
        } else if len > 0 {
            self.check_history(is_orig, HIST_DATA, b'D');
        } else if ackf {
            self.check_history(is_orig, HIST_ACK, b'A');
        }

        // update_window: only the zero-window history letter matters here.
        if seg.window == 0
            && !rst
            && self.ep[other].state != EpState::Closed
            && self.ep[me].state != EpState::Reset
            && self.ep[me].win0.hit()
        {
            self.add_history(is_orig, b'W');
        }

        if !self.ep[ORIG].did_close || !self.ep[RESP].did_close {
            self.last_time = ts;
        }

        if fin {
            self.ep[me].fin_cnt += 1;
            self.ep[me].fin_rel_seq = rel_seq.wrapping_add(seg_len as u64);
        }

        let mut rel_ack: u64 = 0;
        if ackf {
            if self.ep[other].state == EpState::Inactive {
                rel_ack = 1;
                let p = &mut self.ep[other];
                let s = ack_seq.wrapping_sub(1);
                p.init_start(s);
                p.ack_seq = s;
                p.last_seq = s;
            } else {
                rel_ack = self.ep[other].acked(ack_seq, !rst);
            }
        }

        // update_last_seq
        let delta_last;
        {
            let e = &mut self.ep[me];
            delta_last = seq_delta(seq_one_past, e.last_seq);
            if (syn || rst) && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta_last) {
            } else if fin && e.last_seq == e.start_seq.wrapping_add(1) {
                e.update_last_seq(seq_one_past);
            } else if e.state == EpState::Reset {
            } else if delta_last > 0 {
                e.update_last_seq(seq_one_past);
            } else if len > 0 && e.rxmit.hit() {
                self.add_history(is_orig, b'T');
            }
        }

        let (do_close, _gen_event, flipped) = self.update_state_machine(me, is_orig, seg);
        let (me, other, is_orig) = if flipped {
            (other, me, !is_orig)
        } else {
            (me, other, is_orig)
        };

        if ackf {
            self.ack_received(other, rel_ack);
        }

        // Zeek hands payload to its reassembler only when it was captured
        // whole: in snapped captures the peer's ACKs then reveal "gaps".
        if len > 0 && !rst && !seq_underflow && seg.caplen >= len {
            let rel_data = if syn { rel_seq + 1 } else { rel_seq };
            self.data_sent(me, rel_data, len as u64);
        }

        // CheckPIA_FirstPacket
        self.first_packet_seen |= if is_orig { 1 } else { 2 };

        if do_close {
            self.connection_closed(me);
        }
        flipped
    }

    /// Returns (do_close, gen_event, flipped).
    fn update_state_machine(
        &mut self,
        me: usize,
        is_orig: bool,
        seg: &Segment,
    ) -> (bool, bool, bool) {
        use EpState::*;
        let other = 1 - me;
        let fl = seg.flags;
        let syn = fl & F::SYN != 0;
        let fin = fl & F::FIN != 0;
        let rst = fl & F::RST != 0;
        let ackf = fl & F::ACK != 0;
        let len = seg.payload_len;
        let mut do_close = false;
        let mut gen_event = false;
        match self.ep[me].state {
            Inactive => {
                if syn {
                    if is_orig {
                        // A SYN from the originator: attempt (SYN-ACK from the originator is odd but allowed).
                        self.ep[me].set_state(if ackf { SynAckSent } else { SynSent });
                    } else {
                        if ackf {
                            // SYN-ACK from the responder: nothing else to check.
                        } else if self.ep[other].state == SynAckSent
                            && seg.seq == self.ep[me].start_seq
                        {
                            // SYN/SYN-ACK seen in reverse order: flip and
                            // establish. After the swap this packet's
                            // endpoint sits in slot `other`.
                            self.is_partial = false;
                            self.flip_roles();
                            self.ep[me].set_state(Established);
                            self.first_packet_seen |= 1;
                            self.ep[other].set_state(Established);
                            return (false, false, true);
                        }
                        if self.ep[other].state == SynSent {
                            self.ep[other].set_state(Established);
                        }
                        self.ep[me].set_state(Established);
                    }
                }
                if fin {
                    // FIN with no handshake seen.
                    self.ep[me].set_state(Closed);
                    do_close = true;
                    gen_event = true;
                }
                if rst {
                    // RST as the first packet from this side.
                    self.ep[me].set_state(Reset);
                    let is_reject = if is_orig {
                        self.ep[other].state == Established
                    } else {
                        matches!(self.ep[other].state, SynSent | SynAckSent)
                    };
                    do_close = true;
                    gen_event = !is_reject;
                }
                if self.ep[me].state == Inactive {
                    if !is_orig && len == 0 && self.ep[ORIG].state == SynSent {
                        // A bare ACK of the SYN before the SYN-ACK: not a partial connection.
                    } else if ackf && self.ep[other].state == Established {
                        // Missed the originator's SYN but saw the SYN-ACK: establish.
                        self.ep[me].set_state(Established);
                        self.is_partial = false;
                        self.first_packet_seen |= if is_orig { 1 } else { 2 };
                    } else {
                        // Mid-stream traffic.
                        self.ep[me].set_state(Partial);
                    }
                }
            }
            SynSent | SynAckSent => {
                if fin {
                    // FIN while the handshake is incomplete.
                    self.ep[me].set_state(Closed);
                    do_close = true;
                    gen_event = true;
                }
                if rst {
                    // RST while the handshake is incomplete.
                    self.ep[me].set_state(Reset);
                    do_close = true;
                }
            }
            Established | Partial => {
                if syn && self.ep[me].state == Partial && self.ep[other].state == Inactive && !ackf
                {
                    // A SYN after mid-stream data: treat as a new attempt.
                    self.ep[me].set_state(SynSent);
                }
                if fin && !rst {
                    // Orderly close of this direction.
                    self.ep[me].set_state(Closed);
                    if self.ep[other].state == Reset && self.ep[other].prev_state == Closed {
                        // The peer's FIN then RST was a normal termination after all.
                        self.ep[other].set_state(Closed);
                    }
                    do_close = true;
                    gen_event = true;
                }
                if rst {
                    // Abort of an open connection.
                    self.ep[me].set_state(Reset);
                    do_close = true;
                }
            }
            Closed => {
                if rst && self.ep[other].state != Closed {
                    // RST after our FIN while the peer is still open.
                    self.ep[me].set_state(Reset);
                    if !self.ep[me].did_close {
                        do_close = true;
                    }
                    // Zeek's ResetTimer removes the connection 5 s later.
                    let d = self.last_pkt.0.saturating_add(CLOSE_DELAY);
                    self.delete_at = Some(self.delete_at.map_or(d, |x| x.min(d)));
                }
            }
            Reset => {}
        }
        (do_close, gen_event, false)
    }

    /// Zeek's `ConnectionClosed` without application analyzers.
    fn connection_closed(&mut self, me: usize) {
        let other = 1 - me;
        if self.ep[me].did_close {
            return;
        }
        self.ep[me].did_close = true;
        let complete = self.ep[me].state == EpState::Reset
            || self.ep[other].did_close
            || self.ep[other].state == EpState::Inactive;
        if complete {
            // CancelTimers + ConnDeleteTimer at LastTime + tcp_close_delay.
            self.attempt_at = None;
            self.delete_at = Some(self.last_time.0.saturating_add(CLOSE_DELAY));
        }
    }

    /// The peer acknowledged `me`'s stream up to relative sequence `seq`.
    fn ack_received(&mut self, me: usize, seq: u64) {
        let other = 1 - me;
        let mut seq = seq;
        let e = &self.ep[me];
        if e.fin_cnt > 0 && seq >= e.fin_rel_seq {
            seq = e.fin_rel_seq.saturating_sub(1);
        }
        if seq <= e.trim_seq {
            return;
        }
        self.ep[me].trim_seq = seq;
        if seq > self.ep[me].reassem_end {
            self.undelivered(me, other, seq);
        }
        if !self.ep[me].blocks.is_empty() {
            self.ep[me].blocks.retain(|b| b.1 > seq);
        }
    }

    fn undelivered(&mut self, me: usize, other: usize, up_to: u64) {
        if up_to <= 2 && self.is_partial {
            return;
        }
        let clean = self.ep[me].is_clean() && self.ep[other].is_clean();
        let is_orig = me == ORIG;
        // Deliver buffered blocks below up_to, with a gap before each hole.
        self.ep[me].blocks.sort_unstable();
        let blocks = std::mem::take(&mut self.ep[me].blocks);
        let mut keep = Vec::new();
        for (s, e) in blocks {
            if e <= self.ep[me].reassem_end {
                continue;
            }
            if s >= up_to {
                keep.push((s, e));
                continue;
            }
            if s > self.ep[me].reassem_end && clean && self.ep[me].gap.hit() {
                self.add_history(is_orig, b'G');
            }
            self.ep[me].reassem_end = self.ep[me].reassem_end.max(e);
        }
        self.ep[me].blocks = keep;
        if up_to > self.ep[me].reassem_end {
            if clean && self.ep[me].gap.hit() {
                self.add_history(is_orig, b'G');
            }
            self.ep[me].reassem_end = up_to;
        }
    }

    fn data_sent(&mut self, me: usize, seq: u64, len: u64) {
        let e = &mut self.ep[me];
        let ack = e.rel(e.ack_seq, e.ack_wraps);
        let mut seq = seq;
        let upper = seq + len;
        if seq < ack {
            if upper <= ack {
                return;
            }
            seq = ack;
        }
        if seq <= e.reassem_end {
            if upper > e.reassem_end {
                e.reassem_end = upper;
                // Deliver buffered blocks that are now contiguous.
                loop {
                    let end = e.reassem_end;
                    let mut advanced = false;
                    for b in e.blocks.iter() {
                        if b.0 <= end && b.1 > end {
                            e.reassem_end = b.1;
                            advanced = true;
                        }
                    }
                    if !advanced {
                        break;
                    }
                }
                let end = e.reassem_end;
                e.blocks.retain(|b| b.1 > end);
            }
        } else if e.blocks.len() < MAX_BLOCKS {
            e.blocks.push((seq, upper));
        }
    }

    /// Records evidence for the classifier; called for every packet after
    /// Zeek's processing.
    /// `before` holds the Zeek states of (originator, responder) before this packet.
    fn note(&mut self, ts: Timestamp, me: usize, seg: &Segment, before: [EpState; 2]) {
        let rst = seg.has(F::RST);
        let (gap, note) = self.packet_note(ts, me, seg);

        if rst {
            self.resets = self.resets.saturating_add(1);
            if self.rst.is_none() {
                let text = rst_text(seg.payload);
                self.rst = Some(Box::new(RstNote {
                    pkt: note,
                    ttl: seg.ttl,
                    text,
                    prev: self.prev,
                    earlier_max_gap: self.max_gap_before_prev,
                    states: before,
                    sender: self.ep[me].snapshot(),
                    peer: self.ep[1 - me].snapshot(),
                    after_from_sender: 0,
                    after_data_from_sender: 0,
                    after_genuine_from_sender: 0,
                    after_first_gap: None,
                }));
            }
        } else if let Some(r) = self.rst.as_mut() {
            if r.pkt.side == me {
                r.after_from_sender += 1;
                if seg.payload_len > 0 {
                    r.after_data_from_sender += 1;
                }
                // Genuine: it arrived like the sender's own earlier packets,
                // or at least unlike the RST (the sender may have sent
                // nothing before, e.g. an RST injected against a SYN).
                if r.sender.ttl.fits(seg.ttl) || (r.sender.ttl.n == 0 && seg.ttl != r.ttl) {
                    r.after_genuine_from_sender += 1;
                }
                if r.after_first_gap.is_none() {
                    r.after_first_gap = Some(ts.0 - r.pkt.ts.0);
                }
            }
        }
        self.record(ts, me, seg, rst, gap, note);
    }

    /// The [`PacketNote`] of `seg`, from `me`, and the time since the
    /// connection's previous packet (0 for its first).
    #[inline(always)]
    fn packet_note(&self, ts: Timestamp, me: usize, seg: &Segment) -> (i64, PacketNote) {
        let gap = if self.ep[ORIG].pkts + self.ep[RESP].pkts == 0 {
            0
        } else {
            ts.0 - self.last_pkt.0
        };
        let note = PacketNote {
            ts,
            side: me,
            flags: seg.flags,
            seq: seg.seq,
            ack: seg.ack,
            len: seg.payload_len,
            ip_id: seg.ip_id,
            gap_before: gap,
        };
        (gap, note)
    }

    /// The evidence every packet adds, RST or not (`rst`: whether `seg` is
    /// one): the sender's counts, baselines and sequence space, and the
    /// connection's last packet.
    #[inline(always)]
    fn record(
        &mut self,
        ts: Timestamp,
        me: usize,
        seg: &Segment,
        rst: bool,
        gap: i64,
        note: PacketNote,
    ) {
        let e = &mut self.ep[me];
        if e.pkts == 0 {
            e.first_ipid = seg.ip_id;
        }
        e.pkts += 1;
        e.wire_payload += seg.payload_len as u64;
        if !rst {
            // Keepalive probe: seq one below what it already sent, 0 or 1
            // byte, after a pause.
            let is_probe = !seg.has(F::SYN)
                && !seg.has(F::FIN)
                && seg.payload_len <= 1
                && e.snd_nxt.is_some_and(|n| seg.seq == n.wrapping_sub(1))
                && gap >= SEC / 2;
            if is_probe {
                if e.probes == 0 {
                    e.first_probe_ts = Some(ts);
                }
                e.probes += 1;
            }
            e.ttl.add(seg.ttl);
            if let Some(id) = seg.ip_id {
                e.ipid.add(id);
            }
            let end = seg
                .seq
                .wrapping_add(seg.payload_len)
                .wrapping_add(seg.has(F::SYN) as u32 + seg.has(F::FIN) as u32);
            e.snd_nxt = Some(match e.snd_nxt {
                Some(n) if seq_delta(end, n) <= 0 => n,
                _ => end,
            });
            if seg.has(F::ACK) {
                e.max_ack = Some(match e.max_ack {
                    Some(a) if seq_delta(seg.ack, a) <= 0 => a,
                    _ => seg.ack,
                });
            }
            if seg.has(F::FIN) && e.fin_ts.is_none() {
                e.fin_ts = Some(ts);
            }
            if seg.payload_len > 0 {
                e.last_payload_ts = Some(ts);
            }
        }
        // Any packet from the peer answers this side's probes... and this
        // side speaking means the peer's probes were answered.
        let peer = &mut self.ep[1 - me];
        if !rst {
            peer.probes = 0;
            peer.first_probe_ts = None;
        }

        self.max_gap_before_prev = self.max_gap_before_prev.max(self.prev_gap);
        self.prev_gap = gap;
        self.prev = Some(note);
        self.last_pkt = ts;
    }
}

/// `/\^?S[^HAFGIQ]*R.*/`, Zeek's RSTOS0 history test.
fn rstos0_history(h: &str) -> bool {
    let b = h.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'^') {
        i = 1;
    }
    if b.get(i) != Some(&b'S') {
        return false;
    }
    for &c in &b[i + 1..] {
        if c == b'R' {
            return true;
        }
        if b"HAFGIQ".contains(&c) {
            return false;
        }
    }
    false
}

fn get_relative_seq(e: &Endpoint, cur: u32, last: u32, wraps: u32) -> (u64, bool) {
    let delta = seq_delta(cur, last);
    let mut wraps = wraps;
    if delta < 0 {
        if wraps > 0 && cur > last {
            wraps -= 1;
        }
    } else if delta > 0 && cur < last {
        wraps += 1;
    }
    if wraps == 0 {
        let d = seq_delta(cur, e.start_seq);
        return (d as i64 as u64, d < 0);
    }
    (e.rel(cur, wraps), false)
}

/// Printable text from an RST payload (load balancers' cause text, RFC 1122
/// diagnostics), or `None` when it carries no readable text.
fn rst_text(payload: &[u8]) -> Option<String> {
    if payload.is_empty() {
        return None;
    }
    let s: String = payload
        .iter()
        .take(MAX_RST_TEXT * 2)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                ' '
            }
        })
        .collect();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let letters = s.chars().filter(|c| c.is_ascii_alphabetic()).count();
    if letters < 4 {
        return None;
    }
    Some(s.chars().take(MAX_RST_TEXT).collect())
}

/// Tracker settings.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// Retire a connection after this long without packets (ns of capture time).
    pub idle_retire: i64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            idle_retire: 7500 * SEC,
        }
    }
}

/// The part of an index hash ([`key_hash`]) the index keeps beside each slot.
#[inline]
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The 32 bits of a [`flow_hash`] a [`Tracker`] files connections by (its
/// middle bits). A caller that computed the flow hash already, to shard
/// segments across trackers, hands this to [`Tracker::packet_keyed`] with
/// each segment, so the tracker does not hash the addresses again.
#[inline]
pub fn flow_key(hash: u64) -> u32 {
    (hash >> 16) as u32
}

/// The index's hash of a [`flow_key`]: multiplied out to 64 bits, so the
/// bucket (low bits) and the [`tag`] (high bits) are both spread.
#[inline(always)]
fn key_hash(key: u32) -> u64 {
    (key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A hash of a segment's two endpoints that is the same in both
/// directions (the two endpoints' hashes are added), so a connection is
/// found from either side's packets without ordering the endpoints first.
///
/// Written by hand for the per-packet path: one multiply per endpoint, and
/// the same value serves the index ([`Tracker`]) and a caller that shards
/// segments across trackers by flow.
#[inline]
pub fn flow_hash(seg: &Segment) -> u64 {
    flow_hash_of(&seg.src, seg.sport, &seg.dst, seg.dport)
}

/// [`flow_hash`] of a segment from `src`:`sport` to `dst`:`dport`, for a
/// caller that has not built the [`Segment`].
#[inline]
pub fn flow_hash_of(src: &Addr, sport: u16, dst: &Addr, dport: u16) -> u64 {
    pair_hash(end_hash(src, sport), end_hash(dst, dport))
}

/// One endpoint's share of a [`flow_hash`].
#[inline(always)]
fn end_hash(a: &Addr, p: u16) -> u64 {
    let v = u128::from_le_bytes(a.0);
    ((v as u64) ^ ((v >> 64) as u64).rotate_left(23) ^ p as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Combines the two endpoints' shares, in either order.
#[inline(always)]
fn pair_hash(x: u64, y: u64) -> u64 {
    let h = x.wrapping_add(y);
    // The high bits of a product are the well-mixed ones: move some down,
    // where the table takes its bucket from.
    h ^ (h >> 29)
}

/// Counters of the tracker's work.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackerStats {
    /// TCP segments processed.
    pub segments: u64,
    /// Of those, segments that took the common way (an ACK on an
    /// established connection, see `Conn::common`).
    pub common: u64,
    /// Connections started.
    pub connections: u64,
    /// Connections started because a SYN reused a closed connection's ports.
    pub reused: u64,
    /// Most connections open at once.
    pub peak_open: usize,
}

/// How many due timer entries ahead [`Tracker::expire`] asks for the
/// connection's memory.
const PREFETCH_DUE: usize = 6;

/// Asks the CPU to load the parts of slot `i`'s connection that a timer
/// looks at ([`Conn::expired`], [`Conn::flow_hash`]): a connection comes
/// due seconds of capture after its last packet, long out of the cache,
/// and a second's worth come due together (benchmark capture, perf
/// record: `Tracker::expire` went from 5.3% to 3.1% of all cycles).
#[inline(always)]
fn prefetch_conn(slab: &[Conn], i: u32) {
    #[cfg(target_arch = "x86_64")]
    if let Some(c) = slab.get(i as usize) {
        let at = |p: *const u8| {
            // SAFETY: a prefetch only hints the cache and never faults.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p as *const i8,
                )
            }
        };
        at((&c.ep[ORIG].addr as *const Addr).cast());
        at((&c.ep[RESP].addr as *const Addr).cast());
        at((&c.last_pkt as *const Timestamp).cast());
        at((&c.delete_at as *const Option<i64>).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slab, i);
}

/// Buckets of the timer wheel: one per second of capture time.
const WHEEL_SLOTS: i64 = 64;

/// A timing wheel of (slot, generation) entries in one-second buckets.
///
/// Written here because it is hot and tiny: a binary heap cost a cache
/// miss per level for every timer, while a bucket is appended to and
/// drained in order. Entries come due at the end of their deadline's
/// second (up to a second late, which only delays when a connection is
/// reported, never what is reported: a packet for a connection whose timer
/// ran out still finds it expired). Deadlines more than [`WHEEL_SLOTS`]
/// seconds ahead wait in `far`, which is looked at once per turn.
struct Wheel {
    /// The next second to come due; every earlier second has been handed out.
    cursor: i64,
    /// The first capture time (ns) in a second after `cursor`'s: before it
    /// nothing can come due, which the per-packet check tests without a
    /// division.
    wake_at: i64,
    buckets: Vec<Vec<(u32, u32)>>,
    far: Vec<(i64, u32, u32)>,
    /// Reused buffer for due entries.
    due: Vec<(u32, u32)>,
    started: bool,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            cursor: i64::MIN,
            wake_at: i64::MIN,
            buckets: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            far: Vec::new(),
            due: Vec::new(),
            started: false,
        }
    }
}

impl Wheel {
    fn insert(&mut self, at: i64, slot: u32, gen: u32) {
        let sec = at.div_euclid(SEC);
        if !self.started {
            self.started = true;
            self.cursor = sec;
            self.wake_at = sec.saturating_add(1).saturating_mul(SEC);
        }
        let sec = sec.max(self.cursor);
        if sec - self.cursor >= WHEEL_SLOTS {
            self.far.push((sec, slot, gen));
        } else {
            self.buckets[sec.rem_euclid(WHEEL_SLOTS) as usize].push((slot, gen));
        }
    }

    /// Moves the entries of every second before `now`'s into `due`.
    fn advance(&mut self, now: i64, due: &mut Vec<(u32, u32)>) {
        let target = now.div_euclid(SEC);
        if !self.started {
            // Nothing is filed yet: the clock starts here. (Started by the
            // first entry instead, a tracker that sees one shard's packets
            // but the whole capture's clock would start earlier than one
            // that sees every packet, and later deadlines would come due
            // differently.)
            self.started = true;
            self.cursor = target;
            self.wake_at = target.saturating_add(1).saturating_mul(SEC);
            return;
        }
        while self.cursor < target {
            if target - self.cursor > WHEEL_SLOTS && self.buckets.iter().all(Vec::is_empty) {
                // A jump in time over empty buckets.
                self.cursor = target - 1;
                self.pull_far();
            }
            let b = &mut self.buckets[self.cursor.rem_euclid(WHEEL_SLOTS) as usize];
            due.append(b);
            self.cursor += 1;
            if self.cursor.rem_euclid(WHEEL_SLOTS) == 0 {
                self.pull_far();
            }
        }
        self.wake_at = self.cursor.saturating_add(1).saturating_mul(SEC);
    }

    /// Drops every entry (all stale: no connection is open) and the
    /// memory they held, keeping the clock: restarted at a later packet's
    /// time instead, the wheel would run differently with one tracker than
    /// with several when capture time goes backwards.
    fn empty(&mut self) {
        for b in &mut self.buckets {
            *b = Vec::new();
        }
        self.far = Vec::new();
    }

    /// Files the far entries that now fall within the wheel's span.
    fn pull_far(&mut self) {
        let horizon = self.cursor.saturating_add(WHEEL_SLOTS);
        let mut k = 0;
        while k < self.far.len() {
            let (sec, slot, gen) = self.far[k];
            if sec < horizon {
                self.far.swap_remove(k);
                let sec = sec.max(self.cursor);
                self.buckets[sec.rem_euclid(WHEEL_SLOTS) as usize].push((slot, gen));
            } else {
                k += 1;
            }
        }
    }
}

/// Tracks every TCP connection of a packet stream, in capture time.
///
/// Connections live in a slab (`Vec<Conn>`) behind a small hash-to-slot
/// index, so the index stays dense enough for the cache and a finished
/// connection's slot is reused by the next one. (Prefetching connections a
/// few packets ahead was tried twice, through the index and through a
/// table of last-used slots, and measured: 1.5% fewer cycles for 2-6% more
/// instructions, no faster.)
///
/// Zeek's timers live in a timing wheel of one-second buckets, so a connection
/// is only looked at again when one of its timers may have run out (no
/// periodic sweep over every open connection). Entries are lazy: a
/// connection whose deadline moved on is filed again, and entries of a
/// recycled slot are told apart by the slot's generation.
pub struct Tracker {
    /// Slab slots of the open connections, filed by the [`key_hash`] of
    /// their [`flow_key`], each with [`tag`] of that hash: 8 bytes an
    /// entry (the endpoints are compared in the slab, and only when the
    /// tags agree), so the index stays small enough for the cache.
    index: HashTable<(u32, u32)>,
    slab: Vec<Conn>,
    /// Generation of each slot, bumped when its connection is retired.
    gens: Vec<u32>,
    free: Vec<u32>,
    cfg: TrackerConfig,
    /// Slots of retired connections not yet handed out.
    finished: Vec<u32>,
    timers: Wheel,
    /// Work counters.
    pub stats: TrackerStats,
}

impl Tracker {
    /// A tracker with the given settings.
    pub fn new(cfg: TrackerConfig) -> Tracker {
        Tracker {
            index: HashTable::new(),
            slab: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            cfg,
            finished: Vec::new(),
            timers: Wheel::default(),
            stats: TrackerStats::default(),
        }
    }

    /// Connections currently open (not yet retired).
    pub fn open(&self) -> usize {
        self.index.len()
    }

    /// Removes the connection in slot `i` (already out of the index) and
    /// queues it for [`Tracker::drain_finished`].
    fn retire(&mut self, i: u32) {
        self.gens[i as usize] = self.gens[i as usize].wrapping_add(1);
        self.finished.push(i);
    }

    /// Takes slot `i`, filed under `hash`, out of the index.
    fn unindex(&mut self, hash: u64, i: u32) {
        if let Ok(e) = self.index.find_entry(hash, |&(j, _)| j == i) {
            e.remove();
        }
    }

    fn arm(&mut self, at: i64, i: u32) {
        self.timers.insert(at, i, self.gens[i as usize]);
    }

    /// Retires every connection whose timer ran out before `now`'s second.
    /// Called for every packet, and almost always with nothing due: only
    /// that test is inlined (as one function, the register saves of the
    /// work below ran for every packet, a third of its cost).
    #[inline(always)]
    fn expire(&mut self, now: i64) {
        if now >= self.timers.wake_at {
            self.expire_due(now);
        }
    }

    #[inline(never)]
    fn expire_due(&mut self, now: i64) {
        let idle = self.cfg.idle_retire;
        let mut due = std::mem::take(&mut self.timers.due);
        self.timers.advance(now, &mut due);
        for (k, &(i, gen)) in due.iter().enumerate() {
            if let Some(&(ahead, _)) = due.get(k + PREFETCH_DUE) {
                prefetch_conn(&self.slab, ahead);
            }
            if self.gens[i as usize] != gen {
                continue; // the slot was recycled since
            }
            let c = &self.slab[i as usize];
            if c.expired(now, idle) {
                let h = c.index_hash();
                self.unindex(h, i);
                self.retire(i);
            } else {
                let next = c.next_deadline(now, idle);
                self.arm(next, i);
            }
        }
        due.clear();
        self.timers.due = due;
    }

    /// Moves capture time on to `ts` without a packet: retires what Zeek
    /// would have removed by then. For a tracker that sees only a share of
    /// the packets (one shard of several), so that its connections are
    /// reported when the capture's clock says, not when its next packet comes.
    pub fn advance(&mut self, ts: Timestamp) {
        self.expire(ts.0);
    }

    /// Processes one segment captured at `ts`.
    #[inline]
    pub fn packet(&mut self, ts: Timestamp, seg: &Segment) {
        self.packet_keyed(ts, seg, flow_key(flow_hash(seg)));
    }

    /// [`Tracker::packet`] for a caller that has the segment's
    /// [`flow_key`] already (`key` must be `flow_key(flow_hash(seg))`).
    pub fn packet_keyed(&mut self, ts: Timestamp, seg: &Segment, key: u32) {
        debug_assert_eq!(key, flow_key(flow_hash(seg)));
        self.stats.segments += 1;
        self.expire(ts.0);
        let hash = key_hash(key);
        let idle = self.cfg.idle_retire;
        let slab = &self.slab;
        let mut slot = self
            .index
            .find(hash, |&(j, t)| {
                t == tag(hash) && slab[j as usize].same_flow(seg)
            })
            .map(|&(j, _)| j);
        if let Some(i) = slot {
            let c = &self.slab[i as usize];
            let expired = c.expired(ts.0, idle);
            let reuse = !expired && c.is_reuse(seg);
            if reuse || expired {
                self.stats.reused += reuse as u64;
                self.unindex(hash, i);
                self.retire(i);
                slot = None;
            }
        }
        let i = match slot {
            Some(i) => i,
            None => {
                let flip = want_flip(seg);
                self.stats.connections += 1;
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slab[i as usize].start_over(ts, seg, flip);
                        i
                    }
                    None => {
                        self.slab.push(Conn::new(ts, seg, flip));
                        self.gens.push(0);
                        (self.slab.len() - 1) as u32
                    }
                };
                let first = self.slab[i as usize].next_deadline(ts.0, idle);
                let slab = &self.slab;
                self.index.insert_unique(hash, (i, tag(hash)), |&(j, _)| {
                    slab[j as usize].index_hash()
                });
                self.stats.peak_open = self.stats.peak_open.max(self.index.len());
                self.arm(first, i);
                i
            }
        };
        let c = &mut self.slab[i as usize];
        let is_orig = seg.src == c.ep[ORIG].addr && seg.sport == c.ep[ORIG].port;
        #[cfg(any(debug_assertions, test))]
        let general = {
            let mut copy = c.clone();
            copy.general(ts, is_orig, seg);
            copy
        };
        if c.common(ts, is_orig, seg) {
            self.stats.common += 1;
            #[cfg(any(debug_assertions, test))]
            assert_eq!(*c, general, "the common way disagrees with the general way");
            return;
        }
        if let Some(d) = c.general(ts, is_orig, seg) {
            self.arm(d, i);
        }
    }

    /// Hands every connection retired so far to `f`, oldest retirement first.
    pub fn drain_finished(&mut self, mut f: impl FnMut(&Conn)) {
        for &i in &self.finished {
            f(&self.slab[i as usize]);
        }
        self.free.extend_from_slice(&self.finished);
        self.finished.clear();
        // Give memory back after a burst of connections has ended.
        if self.index.is_empty() {
            self.slab.clear();
            self.gens.clear();
            self.free.clear();
            self.timers.empty();
        }
    }

    /// Ends the capture: retires every open connection, in order of start time.
    pub fn finish(&mut self) -> Vec<Conn> {
        let slab = &mut self.slab;
        let mut all: Vec<Conn> = self
            .finished
            .drain(..)
            .map(|i| std::mem::replace(&mut slab[i as usize], Conn::placeholder()))
            .collect();
        // Slots sorted, not connections: a stable sort of the 680-byte
        // connections themselves moved each many times (benchmark capture:
        // the 10,000s still open at the end).
        let mut rest: Vec<u32> = self.index.drain().map(|(i, _)| i).collect();
        rest.sort_by_key(|&i| slab[i as usize].start);
        all.extend(
            rest.into_iter()
                .map(|i| std::mem::replace(&mut slab[i as usize], Conn::placeholder())),
        );
        self.slab.clear();
        self.gens.clear();
        self.free.clear();
        self.timers = Wheel::default();
        all
    }
}

impl Conn {
    fn placeholder() -> Conn {
        Conn {
            ep: [Endpoint::default(), Endpoint::default()],
            start: Timestamp(0),
            last_time: Timestamp(0),
            last_pkt: Timestamp(0),
            history: String::new(),
            hist_seen: 0,
            is_partial: false,
            first_packet_seen: 0,
            resets: 0,
            rst: None,
            prev: None,
            prev_gap: 0,
            max_gap_before_prev: 0,
            delete_at: None,
            attempt_at: None,
        }
    }
}

/// Zeek's `WantConnection` flip heuristic for a connection's first packet.
fn want_flip(seg: &Segment) -> bool {
    let syn = seg.has(F::SYN);
    let ack = seg.has(F::ACK);
    if syn && !ack {
        return false;
    }
    let likely = |p: u16| LIKELY_SERVER_PORTS.binary_search(&p).is_ok();
    if likely(seg.sport) {
        if likely(seg.dport) {
            !syn && seg.sport < seg.dport
        } else {
            true
        }
    } else {
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A segment between 10.0.0.`src` and 10.0.0.`dst` (TTL 64, IP ID 1).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn seg(
        src: u8,
        sport: u16,
        dst: u8,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        len: u32,
    ) -> Segment<'static> {
        Segment {
            src: Addr::v4([10, 0, 0, src]),
            dst: Addr::v4([10, 0, 0, dst]),
            sport,
            dport,
            seq,
            ack,
            flags,
            window: 1000,
            payload_len: len,
            payload: &[],
            caplen: len,
            ttl: 64,
            ip_id: Some(1),
            wscale: None,
        }
    }

    fn run(pkts: &[(f64, Segment<'static>)]) -> Vec<Conn> {
        let mut t = Tracker::new(TrackerConfig::default());
        for (ts, s) in pkts {
            t.packet(Timestamp::from_secs_f64(*ts), s);
        }
        t.finish()
    }

    /// The common way and the general way agree (checked for every segment
    /// the common way takes, in unit tests even in release builds, by
    /// `Tracker::packet_keyed`) on connections with retransmissions, gaps,
    /// reordering, wrapping sequence numbers, zero windows, keepalive
    /// probes, snapped payloads, and connections seen from the middle.
    #[test]
    fn common_way_agrees_with_the_general_way() {
        let mut x = 0x853c_49e6_748f_ea9bu64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = Tracker::new(TrackerConfig::default());
        let mut ts = 1_700_000_000.0;
        for c in 0..300u32 {
            let (cp, sp) = (1024 + c as u16, 443);
            // Initial sequence numbers near the top, so some wrap.
            let (mut cs, mut ss) = (u32::MAX - (next() % 400_000) as u32, next() as u32);
            let partial = c % 5 == 0;
            if !partial {
                t.packet(
                    Timestamp::from_secs_f64(ts),
                    &seg(1, cp, 2, sp, F::SYN, cs, 0, 0),
                );
                t.packet(
                    Timestamp::from_secs_f64(ts + 0.001),
                    &seg(2, sp, 1, cp, F::SYN | F::ACK, ss, cs.wrapping_add(1), 0),
                );
                cs = cs.wrapping_add(1);
                ss = ss.wrapping_add(1);
            }
            for _ in 0..40 {
                ts += if next() % 20 == 0 { 0.7 } else { 0.001 };
                let from_client = next() % 2 == 0;
                let len = [0, 0, 1, 100, 1448][next() as usize % 5];
                let (mut sq, mut ak) = if from_client { (cs, ss) } else { (ss, cs) };
                match next() % 12 {
                    0 => sq = sq.wrapping_sub(len.max(1)), // retransmission or probe
                    1 => sq = sq.wrapping_add(2000),       // a gap
                    2 => ak = ak.wrapping_sub(500),        // an old ACK
                    3 => ak = ak.wrapping_add(3000),       // ACK of unseen data
                    _ => {}
                }
                let (src, sport, dst, dport) = if from_client {
                    (1, cp, 2, sp)
                } else {
                    (2, sp, 1, cp)
                };
                let mut s = seg(src, sport, dst, dport, F::ACK | F::PSH, sq, ak, len);
                s.ttl = if from_client { 64 } else { 57 };
                s.ip_id = Some(next() as u16);
                if next() % 25 == 0 {
                    s.window = 0;
                }
                if next() % 25 == 0 {
                    s.caplen = 0;
                }
                t.packet(Timestamp::from_secs_f64(ts), &s);
                if sq == (if from_client { cs } else { ss }) {
                    let end = sq.wrapping_add(len);
                    if from_client {
                        cs = end;
                    } else {
                        ss = end;
                    }
                }
            }
            if c % 7 == 0 {
                t.packet(
                    Timestamp::from_secs_f64(ts),
                    &seg(2, sp, 1, cp, F::RST | F::ACK, ss, cs, 0),
                );
                t.packet(
                    Timestamp::from_secs_f64(ts + 0.01),
                    &seg(1, cp, 2, sp, F::ACK, cs, ss, 10),
                );
            }
        }
        let s = t.stats;
        assert!(
            s.common > s.segments / 2 && s.common < s.segments,
            "{} of {} segments took the common way",
            s.common,
            s.segments
        );
        let conns = t.finish();
        assert_eq!(conns.len(), 300);
        // The history letters that only the general way writes after the
        // connection's start, and those the common way writes too.
        let all: String = conns.iter().map(|c| c.history.as_str()).collect();
        for letter in ['T', 't', 'G', 'g', 'W', 'w', '^', 'r', 'D', 'd'] {
            assert!(all.contains(letter), "no {letter} in any history");
        }
    }

    #[test]
    fn ports_list_is_sorted_for_binary_search() {
        assert!(LIKELY_SERVER_PORTS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn full_close_is_sf() {
        use F::*;
        let c = run(&[
            (0.0, seg(1, 5000, 2, 80, SYN, 100, 0, 0)),
            (0.1, seg(2, 80, 1, 5000, SYN | ACK, 900, 101, 0)),
            (0.2, seg(1, 5000, 2, 80, ACK, 101, 901, 0)),
            (0.3, seg(1, 5000, 2, 80, ACK | PSH, 101, 901, 10)),
            (0.4, seg(2, 80, 1, 5000, ACK | PSH, 901, 111, 20)),
            (0.5, seg(1, 5000, 2, 80, FIN | ACK, 111, 921, 0)),
            (0.6, seg(2, 80, 1, 5000, FIN | ACK, 921, 112, 0)),
            (0.7, seg(1, 5000, 2, 80, ACK, 112, 922, 0)),
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].conn_state(), "SF");
        assert_eq!(c[0].history, "ShADdFf");
        assert_eq!((c[0].orig_bytes(), c[0].resp_bytes()), (10, 20));
    }

    #[test]
    fn refused_is_rej_and_retry_is_a_new_connection() {
        use F::*;
        let c = run(&[
            (0.0, seg(1, 5000, 2, 110, SYN, 100, 0, 0)),
            (0.0, seg(2, 110, 1, 5000, RST | ACK, 0, 101, 0)),
            (0.5, seg(1, 5000, 2, 110, SYN, 100, 0, 0)),
            (0.5, seg(2, 110, 1, 5000, RST | ACK, 0, 101, 0)),
        ]);
        assert_eq!(c.len(), 2);
        for x in &c {
            assert_eq!(x.conn_state(), "REJ");
            assert_eq!(x.history, "Sr");
        }
    }

    #[test]
    fn both_directions_share_a_hash_and_colliding_flows_stay_apart() {
        let a = seg(1, 40000, 2, 80, F::SYN, 100, 0, 0);
        let b = seg(2, 80, 1, 40000, F::SYN | F::ACK, 500, 101, 0);
        assert_eq!(flow_hash(&a), flow_hash(&b));
        // Two different flows with the same hash (and so the same tag in
        // the index): on 1.0.0.5 the address leaves the port's bits of the
        // hash alone, so the ports' sums decide, and 1000 + 2000 = 1500 +
        // 1500.
        let on = |sport, dport, fl, s| Segment {
            src: Addr::v4([1, 0, 0, 5]),
            dst: Addr::v4([1, 0, 0, 5]),
            sport,
            dport,
            ..seg(0, 0, 0, 0, fl, s, 0, 0)
        };
        let (x, y) = (on(1000, 2000, F::SYN, 7), on(1500, 1500, F::SYN, 9));
        assert_eq!(
            flow_hash(&x),
            flow_hash(&y),
            "not a collision: test is void"
        );
        let mut t = Tracker::new(TrackerConfig::default());
        let x_back = on(2000, 1000, F::SYN | F::ACK, 50);
        for (i, s) in [x, y, x_back].iter().enumerate() {
            t.packet(Timestamp::from_parts(1, i as u32), s);
        }
        let mut conns = t.finish();
        conns.sort_by_key(|c| c.ep[0].port);
        assert_eq!(conns.len(), 2);
        assert_eq!(
            (conns[0].ep[0].port, conns[0].history.as_str()),
            (1000, "Sh")
        );
        assert_eq!(
            (conns[1].ep[0].port, conns[1].history.as_str()),
            (1500, "S")
        );
    }

    #[test]
    fn midstream_server_fin_is_flipped() {
        use F::*;
        let c = run(&[
            (0.0, seg(2, 80, 1, 1576, FIN | ACK, 5, 7, 0)),
            (0.1, seg(1, 1576, 2, 80, ACK, 7, 6, 0)),
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].history, "^fA");
        assert_eq!(c[0].conn_state(), "SHR");
        assert_eq!(c[0].ep[ORIG].port, 1576);
    }

    #[test]
    fn rstos0_regex() {
        assert!(rstos0_history("SR"));
        assert!(rstos0_history("^SaR"));
        assert!(!rstos0_history("SaFR"));
        assert!(!rstos0_history("R"));
    }
}
