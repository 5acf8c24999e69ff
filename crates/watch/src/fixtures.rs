//! Recorded tracepoint formats and raw samples (see the tests in decode).
/// `tcp_send_reset` format of Linux 6.18 (this machine).
pub const SEND_RESET_6_18: &str = r#"name: tcp_send_reset
ID: 2280
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skbaddr;	offset:8;	size:8;	signed:0;
	field:const void * skaddr;	offset:16;	size:8;	signed:0;
	field:int state;	offset:24;	size:4;	signed:1;
	field:enum sk_rst_reason reason;	offset:28;	size:4;	signed:0;
	field:__u8 saddr[28];	offset:32;	size:28;	signed:0;
	field:__u8 daddr[28];	offset:60;	size:28;	signed:0;

print fmt: "skbaddr=%p skaddr=%p src=%pISpc dest=%pISpc state=%s reason=%s", REC->skbaddr, REC->skaddr, REC->saddr, REC->daddr, REC->state ? __print_symbolic(REC->state, { TCP_ESTABLISHED, "TCP_ESTABLISHED" }, { TCP_SYN_SENT, "TCP_SYN_SENT" }, { TCP_SYN_RECV, "TCP_SYN_RECV" }, { TCP_FIN_WAIT1, "TCP_FIN_WAIT1" }, { TCP_FIN_WAIT2, "TCP_FIN_WAIT2" }, { TCP_TIME_WAIT, "TCP_TIME_WAIT" }, { TCP_CLOSE, "TCP_CLOSE" }, { TCP_CLOSE_WAIT, "TCP_CLOSE_WAIT" }, { TCP_LAST_ACK, "TCP_LAST_ACK" }, { TCP_LISTEN, "TCP_LISTEN" }, { TCP_CLOSING, "TCP_CLOSING" }, { TCP_NEW_SYN_RECV, "TCP_NEW_SYN_RECV" }) : "UNKNOWN", __print_symbolic(REC->reason, { 0, "NOT_SPECIFIED" }, { 1, "NO_SOCKET" }, { 2, "TCP_INVALID_ACK_SEQUENCE" }, { 3, "TCP_RFC7323_PAWS" }, { 4, "TCP_TOO_OLD_ACK" }, { 5, "TCP_ACK_UNSENT_DATA" }, { 6, "TCP_FLAGS" }, { 7, "TCP_OLD_ACK" }, { 8, "TCP_ABORT_ON_DATA" }, { 9, "TCP_TIMEWAIT_SOCKET" }, { 10, "INVALID_SYN" }, { 11, "TCP_ABORT_ON_CLOSE" }, { 12, "TCP_ABORT_ON_LINGER" }, { 13, "TCP_ABORT_ON_MEMORY" }, { 14, "TCP_STATE" }, { 15, "TCP_KEEPALIVE_TIMEOUT" }, { 16, "TCP_DISCONNECT_WITH_DATA" }, { 17, "MPTCP_RST_EUNSPEC" }, { 18, "MPTCP_RST_EMPTCP" }, { 19, "MPTCP_RST_ERESOURCE" }, { 20, "MPTCP_RST_EPROHIBIT" }, { 21, "MPTCP_RST_EWQ2BIG" }, { 22, "MPTCP_RST_EBADPERF" }, { 23, "MPTCP_RST_EMIDDLEBOX" }, { 24, "ERROR" }, { 25, "MAX" })"#;

/// `tcp_receive_reset` format of Linux 6.18.
pub const RECEIVE_RESET_6_18: &str = r#"name: tcp_receive_reset
ID: 2279
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skaddr;	offset:8;	size:8;	signed:0;
	field:__u16 sport;	offset:16;	size:2;	signed:0;
	field:__u16 dport;	offset:18;	size:2;	signed:0;
	field:__u16 family;	offset:20;	size:2;	signed:0;
	field:__u8 saddr[4];	offset:22;	size:4;	signed:0;
	field:__u8 daddr[4];	offset:26;	size:4;	signed:0;
	field:__u8 saddr_v6[16];	offset:30;	size:16;	signed:0;
	field:__u8 daddr_v6[16];	offset:46;	size:16;	signed:0;
	field:__u64 sock_cookie;	offset:64;	size:8;	signed:0;

print fmt: "family=%s sport=%hu dport=%hu saddr=%pI4 daddr=%pI4 saddrv6=%pI6c daddrv6=%pI6c sock_cookie=%llx", __print_symbolic(REC->family, { 2, "AF_INET" }, { 10, "AF_INET6" }), REC->sport, REC->dport, REC->saddr, REC->daddr, REC->saddr_v6, REC->daddr_v6, REC->sock_cookie"#;

/// `inet_sock_set_state` format of Linux 6.18.
pub const SET_STATE_6_18: &str = r#"name: inet_sock_set_state
ID: 2287
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skaddr;	offset:8;	size:8;	signed:0;
	field:int oldstate;	offset:16;	size:4;	signed:1;
	field:int newstate;	offset:20;	size:4;	signed:1;
	field:__u16 sport;	offset:24;	size:2;	signed:0;
	field:__u16 dport;	offset:26;	size:2;	signed:0;
	field:__u16 family;	offset:28;	size:2;	signed:0;
	field:__u16 protocol;	offset:30;	size:2;	signed:0;
	field:__u8 saddr[4];	offset:32;	size:4;	signed:0;
	field:__u8 daddr[4];	offset:36;	size:4;	signed:0;
	field:__u8 saddr_v6[16];	offset:40;	size:16;	signed:0;
	field:__u8 daddr_v6[16];	offset:56;	size:16;	signed:0;

print fmt: "family=%s protocol=%s sport=%hu dport=%hu saddr=%pI4 daddr=%pI4 saddrv6=%pI6c daddrv6=%pI6c oldstate=%s newstate=%s", __print_symbolic(REC->family, { 2, "AF_INET" }, { 10, "AF_INET6" }), __print_symbolic(REC->protocol, { 6, "IPPROTO_TCP" }, { 132, "IPPROTO_SCTP" }, { 262, "IPPROTO_MPTCP" }), REC->sport, REC->dport, REC->saddr, REC->daddr, REC->saddr_v6, REC->daddr_v6, __print_symbolic(REC->oldstate, { 1, "TCP_ESTABLISHED" }, { 2, "TCP_SYN_SENT" }, { 3, "TCP_SYN_RECV" }, { 4, "TCP_FIN_WAIT1" }, { 5, "TCP_FIN_WAIT2" }, { 6, "TCP_TIME_WAIT" }, { 7, "TCP_CLOSE" }, { 8, "TCP_CLOSE_WAIT" }, { 9, "TCP_LAST_ACK" }, { 10, "TCP_LISTEN" }, { 11, "TCP_CLOSING" }, { 12, "TCP_NEW_SYN_RECV" }), __print_symbolic(REC->newstate, { 1, "TCP_ESTABLISHED" }, { 2, "TCP_SYN_SENT" }, { 3, "TCP_SYN_RECV" }, { 4, "TCP_FIN_WAIT1" }, { 5, "TCP_FIN_WAIT2" }, { 6, "TCP_TIME_WAIT" }, { 7, "TCP_CLOSE" }, { 8, "TCP_CLOSE_WAIT" }, { 9, "TCP_LAST_ACK" }, { 10, "TCP_LISTEN" }, { 11, "TCP_CLOSING" }, { 12, "TCP_NEW_SYN_RECV" })"#;

/// `tcp_send_reset` format of the `tcp_event_sk_skb` class, as kernels
/// 5.x to 6.9 print it (hand-built from include/trace/events/tcp.h of those
/// kernels: no `reason`, ports and addresses as separate fields).
pub const SEND_RESET_PRE_6_10: &str = "name: tcp_send_reset
ID: 1419
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int state;\toffset:24;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:32;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:34;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:38;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:42;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:58;\tsize:16;\tsigned:0;

print fmt: \"skbaddr=%p skaddr=%p family=%s sport=%hu dport=%hu saddr=%pI4 daddr=%pI4 saddrv6=%pI6c daddrv6=%pI6c state=%s\", REC->skbaddr, REC->skaddr, __print_symbolic(REC->family, { 2, \"AF_INET\" }, { 10, \"AF_INET6\" }), REC->sport, REC->dport, REC->saddr, REC->daddr, REC->saddr_v6, REC->daddr_v6, __print_symbolic(REC->state, { 1, \"TCP_ESTABLISHED\" }, { 2, \"TCP_SYN_SENT\" }, { 3, \"TCP_SYN_RECV\" }, { 4, \"TCP_FIN_WAIT1\" }, { 5, \"TCP_FIN_WAIT2\" }, { 6, \"TCP_TIME_WAIT\" }, { 7, \"TCP_CLOSE\" }, { 8, \"TCP_CLOSE_WAIT\" }, { 9, \"TCP_LAST_ACK\" }, { 10, \"TCP_LISTEN\" }, { 11, \"TCP_CLOSING\" }, { 12, \"TCP_NEW_SYN_RECV\" })
";

/// Raw samples recorded on Linux 6.18 (x86_64) with `bench/record.rs`,
/// as hex of the `PERF_SAMPLE_RAW` payload.
pub mod raw618 {
    /// SYN to a closed port 127.0.0.1:42319: NO_SOCKET, no socket (softirq).
    pub const SENT_NO_SOCKET_V4: &str = "e8081002836f0000e0dc645a8288ffff000000000000000000000000010000000200a54f7f00000100000000000000000000000000000000000000000200bee07f000001000000000000000000000000000000000000000000000000";
    /// close() with unread data on [::1]:47005: TCP_ABORT_ON_CLOSE, TCP_CLOSE, process context.
    pub const SENT_ABORT_ON_CLOSE_V6: &str = "e8080001936f0000000000000000000000f5851d8188ffff070000000b0000000a00b79d0000000000000000000000000000000000000001000000000a00a0a200000000000000000000000000000000000000010000000000000000";
    /// SO_LINGER {1,0} close on 127.0.0.1:43365: TCP_STATE, TCP_CLOSE.
    pub const SENT_LINGER0_V4: &str = "e80800019b6f0000000000000000000040d390058388ffff070000000e0000000200a9657f00000100000000000000000000000000000000000000000200a4087f000001000000000000000000000000000000000000000000000000";
    /// Data after close at 198.18.2.2:7001 (a namespace): TCP_ABORT_ON_DATA (softirq).
    pub const SENT_ABORT_ON_DATA_V4: &str = "e808100368700000e0d0645a8288ffff80dc90058388ffff070000000800000002001b59c612020200000000000000000000000000000000000000000200d691c6120102000000000000000000000000000000000000000000000000";
    /// The refused client 127.0.0.1:48864 receiving the RST (process context, cookie 3).
    pub const RECEIVED_V4: &str = "e7080001836f0000c0650aac8188ffffe0be4fa502007f0000017f00000100000000000000000000ffff7f00000100000000000000000000ffff7f0000010000030000000000000000000000";
    /// The client [::1]:41122 receiving the unread-data RST (softirq, cookie 13).
    pub const RECEIVED_V6: &str = "e7081003936f000040eb851d8188ffffa2a09db70a000000000000000000000000000000000000000000000000010000000000000000000000000000000100000d0000000000000000000000";
    /// The same refused client socket going SYN_SENT -> CLOSE.
    pub const STATE_SYN_SENT_TO_CLOSE: &str = "ef080001836f0000c0650aac8188ffff0200000007000000e0be4fa5020006007f0000017f00000100000000000000000000ffff7f00000100000000000000000000ffff7f00000100000000";
}

/// Hex to bytes (test helper).
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The formats of this 6.18 machine.
pub fn formats_618() -> crate::decode::Formats {
    use crate::format::TraceFormat;
    crate::decode::Formats {
        send: TraceFormat::parse(SEND_RESET_6_18).unwrap(),
        receive: TraceFormat::parse(RECEIVE_RESET_6_18).unwrap(),
        set_state: Some(TraceFormat::parse(SET_STATE_6_18).unwrap()),
    }
}
