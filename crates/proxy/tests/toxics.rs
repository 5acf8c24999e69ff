//! Every toxic, checked on real loopback sockets: what the client and the
//! upstream applications see (EOF = FIN, ECONNRESET = RST) and byte counts.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(5);

fn rtt(c: &mut TcpStream) -> Duration {
    let t = Instant::now();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    t.elapsed()
}

#[test]
fn half_close_is_the_default() {
    // Upstream reads the request to EOF, then answers and closes.
    let up = server(|mut s| {
        let mut req = Vec::new();
        s.read_to_end(&mut req).unwrap();
        s.write_all(format!("got {} bytes", req.len()).as_bytes())
            .unwrap();
    });
    let (_h, p) = one(up);
    let mut c = TcpStream::connect(p).unwrap();
    c.write_all(&[7u8; 100_000]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let (o, got) = read_outcome(&mut c, S);
    assert_eq!(o, Outcome::Eof(got.len()));
    assert_eq!(String::from_utf8(got).unwrap(), "got 100000 bytes");
}

#[test]
fn latency_delays_each_chunk() {
    let (h, p) = one(echo_server());
    let mut c = TcpStream::connect(p).unwrap();
    assert!(rtt(&mut c) < Duration::from_millis(50));
    add_toxic(
        &h,
        "p",
        r#"{"type":"latency","attributes":{"latency":150,"jitter":20}}"#,
    );
    let d = rtt(&mut c);
    assert!(
        d >= Duration::from_millis(130) && d < Duration::from_millis(800),
        "{d:?}"
    );
    // upstream stream too: both ways add up
    add_toxic(
        &h,
        "p",
        r#"{"type":"latency","stream":"upstream","attributes":{"latency":100}}"#,
    );
    let d = rtt(&mut c);
    assert!(d >= Duration::from_millis(230), "{d:?}");
}

#[test]
fn bandwidth_limits_rate() {
    let (h, p) = one(echo_server());
    add_toxic(&h, "p", r#"{"type":"bandwidth","attributes":{"rate":200}}"#);
    let mut c = TcpStream::connect(p).unwrap();
    let t = Instant::now();
    let mut w = c.try_clone().unwrap();
    thread::spawn(move || w.write_all(&[1u8; 100_000]));
    let mut got = vec![0u8; 100_000];
    c.read_exact(&mut got).unwrap();
    // 100 KB at 200 KB/s: about 0.5 s.
    let d = t.elapsed();
    assert!(
        d >= Duration::from_millis(400) && d < Duration::from_secs(3),
        "{d:?}"
    );
}

#[test]
fn slow_close_delays_the_fin() {
    let up = server(|mut s| {
        s.write_all(b"bye").unwrap();
    });
    let (h, p) = one(up);
    add_toxic(
        &h,
        "p",
        r#"{"type":"slow_close","attributes":{"delay":300}}"#,
    );
    let t = Instant::now();
    let mut c = TcpStream::connect(p).unwrap();
    let (o, got) = read_outcome(&mut c, S);
    assert_eq!((o, got.as_slice()), (Outcome::Eof(3), &b"bye"[..]));
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn timeout_holds_data_then_closes_cleanly() {
    let (obs, rx) = observing_server();
    let (h, p) = one(obs);
    add_toxic(
        &h,
        "p",
        r#"{"type":"timeout","stream":"upstream","attributes":{"timeout":300}}"#,
    );
    let mut c = TcpStream::connect(p).unwrap();
    c.write_all(b"never delivered").unwrap();
    let t = Instant::now();
    let (o, _) = read_outcome(&mut c, S);
    assert_eq!(o, Outcome::Eof(0), "client sees a clean close");
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        rx.recv_timeout(S).unwrap(),
        Outcome::Eof(0),
        "upstream got nothing, then FIN"
    );
}

#[test]
fn timeout_zero_holds_until_removed_and_loses_nothing() {
    let (h, p) = one(echo_server());
    add_toxic(&h, "p", r#"{"type":"timeout","attributes":{"timeout":0}}"#);
    let mut c = TcpStream::connect(p).unwrap();
    c.write_all(b"held").unwrap();
    let mut b = [0u8; 4];
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(c.read(&mut b).is_err(), "nothing while the toxic is there");
    let (st, _) = http(
        h.api.unwrap(),
        "DELETE",
        "/proxies/p/toxics/timeout_downstream",
        "",
    );
    assert_eq!(st, 204);
    c.set_read_timeout(Some(S)).unwrap();
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"held");
}

#[test]
fn reset_peer_resets_idle_connection_and_closes_upstream_cleanly() {
    let (obs, rx) = observing_server();
    let (h, p) = one(obs);
    add_toxic(
        &h,
        "p",
        r#"{"type":"reset_peer","attributes":{"timeout":200}}"#,
    );
    let mut c = TcpStream::connect(p).unwrap();
    let t = Instant::now();
    // No byte is ever sent: Toxiproxy would never fire here.
    let (o, _) = read_outcome(&mut c, S);
    assert_eq!(o, Outcome::Reset(0), "client gets ECONNRESET");
    assert!(t.elapsed() >= Duration::from_millis(180));
    assert_eq!(
        rx.recv_timeout(S).unwrap(),
        Outcome::Eof(0),
        "upstream gets a FIN, not an RST"
    );
    let ev = h.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].cause, rstscope_core::Cause::AbortiveClose);
    assert_eq!(ev[0].source, rstscope_core::Source::Proxy);
    assert_eq!(ev[0].src, p);
}

#[test]
fn reset_peer_added_at_run_time_applies_to_open_connection() {
    let (h, p) = one(echo_server());
    let mut c = TcpStream::connect(p).unwrap();
    assert!(rtt(&mut c) < Duration::from_secs(1));
    add_toxic(
        &h,
        "p",
        r#"{"type":"reset_peer","attributes":{"timeout":0}}"#,
    );
    let (o, _) = read_outcome(&mut c, S);
    assert_eq!(o, Outcome::Reset(0));
}

#[test]
fn reset_peer_upstream_stream_resets_upstream_only() {
    let (obs, rx) = observing_server();
    let (h, p) = one(obs);
    add_toxic(
        &h,
        "p",
        r#"{"type":"reset_peer","stream":"upstream","attributes":{"timeout":100}}"#,
    );
    let mut c = TcpStream::connect(p).unwrap();
    assert_eq!(
        rx.recv_timeout(S).unwrap(),
        Outcome::Reset(0),
        "upstream gets ECONNRESET"
    );
    assert_eq!(
        read_outcome(&mut c, S).0,
        Outcome::Eof(0),
        "client gets FIN"
    );
}

#[test]
fn toxicity_zero_never_resets_and_closes_are_fins() {
    let (h, p) = one(echo_server());
    add_toxic(
        &h,
        "p",
        r#"{"type":"reset_peer","toxicity":0,"attributes":{"timeout":0}}"#,
    );
    for _ in 0..5 {
        let mut c = TcpStream::connect(p).unwrap();
        assert!(rtt(&mut c) < Duration::from_secs(1));
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_outcome(&mut c, S).0, Outcome::Eof(0));
    }
    assert!(h.events().is_empty());
}

#[test]
fn slicer_cuts_into_small_segments() {
    let up = server(|mut s| {
        s.write_all(&[9u8; 1000]).unwrap();
    });
    let (h, p) = one(up);
    add_toxic(
        &h,
        "p",
        r#"{"type":"slicer","attributes":{"average_size":50,"size_variation":10,"delay":2000}}"#,
    );
    let mut c = TcpStream::connect(p).unwrap();
    let mut reads = 0;
    let mut total = 0;
    let mut max = 0;
    let mut b = [0u8; 4096];
    loop {
        let n = c.read(&mut b).unwrap();
        if n == 0 {
            break;
        }
        reads += 1;
        total += n;
        max = max.max(n);
    }
    assert_eq!(total, 1000);
    assert!(reads >= 10, "{reads} reads");
    assert!(max <= 120, "largest read {max}");
}

#[test]
fn limit_data_passes_exactly_n_bytes_then_fin() {
    let up = server(|mut s| {
        let _ = s.write_all(&[5u8; 10_000]);
        thread::sleep(Duration::from_secs(2));
    });
    let (h, p) = one(up);
    add_toxic(
        &h,
        "p",
        r#"{"type":"limit_data","attributes":{"bytes":1234}}"#,
    );
    let mut c = TcpStream::connect(p).unwrap();
    assert_eq!(read_outcome(&mut c, S).0, Outcome::Eof(1234));
}

#[test]
fn idle_reset_spares_busy_connections_and_resets_idle_ones() {
    let (obs, rx) = observing_server();
    let (h, p) = one(obs);
    add_toxic(
        &h,
        "p",
        r#"{"type":"idle_reset","attributes":{"timeout":250}}"#,
    );
    let mut c = TcpStream::connect(p).unwrap();
    for _ in 0..8 {
        c.write_all(b"x").unwrap();
        thread::sleep(Duration::from_millis(80));
    }
    let t = Instant::now();
    let (o, _) = read_outcome(&mut c, S);
    assert_eq!(o, Outcome::Reset(0), "busy 640 ms, then reset after idling");
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        rx.recv_timeout(S).unwrap(),
        Outcome::Eof(8),
        "upstream: FIN without both_sides"
    );
    assert_eq!(h.events()[0].cause, rstscope_core::Cause::IdleTimeout);
}

#[test]
fn idle_reset_both_sides() {
    let (obs, rx) = observing_server();
    let (h, p) = one(obs);
    add_toxic(
        &h,
        "p",
        r#"{"type":"idle_reset","attributes":{"timeout":150,"both_sides":true}}"#,
    );
    let mut c = TcpStream::connect(p).unwrap();
    assert_eq!(read_outcome(&mut c, S).0, Outcome::Reset(0));
    assert_eq!(rx.recv_timeout(S).unwrap(), Outcome::Reset(0));
}

#[test]
fn reset_after_bytes() {
    let up = server(|mut s| {
        let _ = s.write_all(&[3u8; 50_000]);
        thread::sleep(Duration::from_secs(2));
    });
    let (h, p) = one(up);
    add_toxic(
        &h,
        "p",
        r#"{"type":"reset_after","attributes":{"bytes":10000}}"#,
    );
    let mut c = TcpStream::connect(p).unwrap();
    // Read slowly enough that the RST does not overtake unread data.
    let (o, _) = read_outcome(&mut c, S);
    match o {
        Outcome::Reset(n) => assert!(n <= 10_000, "{n}"),
        o => panic!("{o:?}"),
    }
    let m = http(h.api.unwrap(), "GET", "/metrics", "").1;
    assert!(
        m.contains(
            r#"rstscope_proxy_resets_injected_total{proxy="p",toxic="reset_after",side="client"} 1"#
        ),
        "{m}"
    );
}

#[test]
fn reset_after_ms() {
    let (h, p) = one(echo_server());
    add_toxic(&h, "p", r#"{"type":"reset_after","attributes":{"ms":200}}"#);
    let mut c = TcpStream::connect(p).unwrap();
    assert!(rtt(&mut c) < Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(read_outcome(&mut c, S).0, Outcome::Reset(0));
    assert!(t.elapsed() >= Duration::from_millis(30));
}

#[test]
fn refuse_when_down() {
    let dead = dead_port();
    let (h, p) = one(dead);
    let mut c = TcpStream::connect(p).unwrap();
    assert_eq!(
        read_outcome(&mut c, S).0,
        Outcome::Eof(0),
        "default: accept then FIN"
    );
    add_toxic(&h, "p", r#"{"type":"refuse_when_down"}"#);
    let mut c = TcpStream::connect(p).unwrap();
    assert_eq!(
        read_outcome(&mut c, S).0,
        Outcome::Reset(0),
        "with the toxic: RST"
    );
    assert_eq!(h.events()[0].cause, rstscope_core::Cause::Refused);
}

#[test]
fn limit_connections_reset() {
    let (h, p) = one(echo_server());
    add_toxic(
        &h,
        "p",
        r#"{"type":"limit_connections","attributes":{"max":1,"mode":"reset"}}"#,
    );
    let mut a = TcpStream::connect(p).unwrap();
    assert!(rtt(&mut a) < Duration::from_secs(1));
    let mut b = TcpStream::connect(p).unwrap();
    assert_eq!(read_outcome(&mut b, S).0, Outcome::Reset(0));
    assert!(
        rtt(&mut a) < Duration::from_secs(1),
        "the first one is untouched"
    );
}

#[test]
fn limit_connections_refuse() {
    let (h, p) = one(echo_server());
    add_toxic(
        &h,
        "p",
        r#"{"type":"limit_connections","attributes":{"max":1,"mode":"refuse"}}"#,
    );
    let mut a = TcpStream::connect(p).unwrap();
    assert!(rtt(&mut a) < Duration::from_secs(1));
    thread::sleep(Duration::from_millis(100));
    let e = TcpStream::connect(p).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    drop(a);
    // The slot frees up: listening again.
    let t = Instant::now();
    loop {
        if let Ok(mut b) = TcpStream::connect(p) {
            assert!(rtt(&mut b) < Duration::from_secs(1));
            break;
        }
        assert!(t.elapsed() < S, "never listened again");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn limit_connections_queue() {
    let (h, p) = one(echo_server());
    add_toxic(
        &h,
        "p",
        r#"{"type":"limit_connections","attributes":{"max":1,"mode":"queue"}}"#,
    );
    let mut a = TcpStream::connect(p).unwrap();
    assert!(rtt(&mut a) < Duration::from_secs(1));
    let mut b = TcpStream::connect(p).unwrap(); // the kernel completes it
    b.write_all(b"wait").unwrap();
    let mut buf = [0u8; 4];
    b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(b.read(&mut buf).is_err(), "queued: no service yet");
    a.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_outcome(&mut a, S).0, Outcome::Eof(0));
    drop(a);
    b.set_read_timeout(Some(S)).unwrap();
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"wait");
}

/// Which of `n` sequential connections got reset by a 50% reset_peer.
fn reset_pattern(n: usize) -> Vec<bool> {
    let (h, p) = one(echo_server());
    add_toxic(
        &h,
        "p",
        r#"{"type":"reset_peer","toxicity":0.5,"attributes":{"timeout":0}}"#,
    );
    (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(p).unwrap();
            // May already be reset (ENOTCONN): the read below tells.
            let _ = c.shutdown(Shutdown::Write);
            match read_outcome(&mut c, S).0 {
                Outcome::Reset(_) => true,
                Outcome::Eof(_) => false,
                o => panic!("{o:?}"),
            }
        })
        .collect()
}

#[test]
fn toxicity_per_connection_is_seeded() {
    let a = reset_pattern(30);
    let b = reset_pattern(30);
    let resets = a.iter().filter(|x| **x).count();
    assert!((5..=25).contains(&resets), "{resets} of 30");
    assert_eq!(a, b, "same seed, same rolls");
}

#[test]
fn toxicity_per_chunk() {
    let (h, p) = one(echo_server());
    add_toxic(
        &h,
        "p",
        r#"{"type":"latency","toxicity":0.5,"attributes":{"latency":60,"per_chunk":1}}"#,
    );
    let mut c = TcpStream::connect(p).unwrap();
    let slow = (0..20)
        .filter(|_| rtt(&mut c) >= Duration::from_millis(55))
        .count();
    assert!((3..=17).contains(&slow), "{slow} of 20 chunks delayed");
}
