//! Toxiproxy API compatibility (driven by a real client library from
//! crates.io, `toxiproxy_rust`, and by raw HTTP for status codes and error
//! bodies), plus robustness: bad input, concurrent toxic changes under
//! traffic, file descriptors after 100,000 connections.

mod common;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

const S: Duration = Duration::from_secs(5);

#[test]
fn toxiproxy_rust_client_drives_the_proxy() {
    let up = echo_server();
    let h = proxy(vec![]);
    let api = h.api.unwrap();
    let client = Client::new(api);
    assert!(client.is_running());
    assert!(client.version().unwrap().contains("rstscope"));
    let listen = dead_port(); // a free port for the proxy to take
    let proxies = client
        .populate(vec![ProxyPack::new(
            "redis".into(),
            listen.to_string(),
            up.to_string(),
        )])
        .expect("populate");
    assert_eq!(proxies.len(), 1);
    let p = client.find_and_reset_proxy("redis").expect("find");
    assert_eq!(p.proxy_pack.upstream, up.to_string());
    assert!(client.all().unwrap().contains_key("redis"));

    let ping = || -> std::io::Result<Duration> {
        let mut c = TcpStream::connect(listen)?;
        c.set_read_timeout(Some(S))?;
        let t = Instant::now();
        c.write_all(b"hi")?;
        let mut b = [0u8; 2];
        c.read_exact(&mut b)?;
        Ok(t.elapsed())
    };
    assert!(ping().unwrap() < Duration::from_millis(100));

    // with_latency + apply: the toxic acts inside, is removed after.
    p.with_latency("downstream".into(), 200, 0, 1.0)
        .apply(|| {
            let d = ping().unwrap();
            assert!(d >= Duration::from_millis(190), "{d:?}");
        })
        .unwrap();
    assert!(p.toxics().unwrap().is_empty());
    assert!(ping().unwrap() < Duration::from_millis(100));

    // limit_data via the client: exactly 2 bytes then EOF.
    p.with_limit_data("downstream".into(), 2, 1.0);
    let t = p.toxics().unwrap();
    assert_eq!(
        (t[0].name.as_str(), t[0].r#type.as_str()),
        ("limit_data_downstream", "limit_data")
    );
    let mut c = TcpStream::connect(listen).unwrap();
    c.write_all(b"hello").unwrap();
    assert_eq!(read_outcome(&mut c, S).0, Outcome::Eof(2));
    p.delete_all_toxics().unwrap();

    // with_down: disabled proxies refuse connections.
    p.with_down(|| {
        let e = TcpStream::connect(listen).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    })
    .unwrap();
    assert!(ping().is_ok());
    p.disable().unwrap();
    client.reset().unwrap(); // re-enables every proxy, removes toxics
    assert!(ping().is_ok());
    p.delete().unwrap();
    assert!(client.find_proxy("redis").is_err());
}

#[test]
fn status_codes_and_shapes_match_toxiproxy() {
    let up = echo_server();
    let h = proxy(vec![]);
    let api = h.api.unwrap();
    let body = json!({"name":"a","listen":"127.0.0.1:0","upstream":up.to_string()}).to_string();
    let (st, v) = api_json(api, "POST", "/proxies", &body);
    assert_eq!(st, 201);
    assert_eq!(v["name"], "a");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["toxics"], json!([]));
    let listen = v["listen"].as_str().unwrap().to_string();
    assert_ne!(listen, "127.0.0.1:0", "the bound address is reported");
    assert_eq!(
        api_json(api, "POST", "/proxies", &body),
        (409, json!({"error":"proxy already exists","status":409}))
    );
    assert_eq!(
        api_json(api, "GET", "/proxies/zz", ""),
        (404, json!({"error":"proxy not found","status":404}))
    );
    assert_eq!(api_json(api, "POST", "/proxies", r#"{"name":"b"}"#).0, 400);
    let (st, v) = api_json(api, "POST", "/proxies", "{nope");
    assert_eq!(st, 400);
    assert!(
        v["error"].as_str().unwrap().starts_with("bad request body"),
        "{v}"
    );
    assert_eq!(v["status"], 400);

    // toxics
    let t = r#"{"type":"latency","attributes":{"latency":10}}"#;
    let (st, v) = api_json(api, "POST", "/proxies/a/toxics", t);
    assert_eq!(st, 200);
    assert_eq!(
        v,
        json!({"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1.0,"attributes":{"latency":10,"jitter":0}})
    );
    assert_eq!(api_json(api, "POST", "/proxies/a/toxics", t).0, 409);
    assert_eq!(
        api_json(api, "GET", "/proxies/a/toxics/latency_downstream", "").1,
        v
    );
    let (st, v) = api_json(
        api,
        "PATCH",
        "/proxies/a/toxics/latency_downstream",
        r#"{"attributes":{"jitter":3},"toxicity":0.5}"#,
    );
    assert_eq!(st, 200);
    assert_eq!(
        (
            v["attributes"]["latency"].clone(),
            v["attributes"]["jitter"].clone(),
            v["toxicity"].clone()
        ),
        (json!(10), json!(3), json!(0.5))
    );
    assert_eq!(
        api_json(
            api,
            "POST",
            "/proxies/a/toxics/latency_downstream",
            r#"{"toxicity":1}"#
        )
        .0,
        200
    );
    assert_eq!(
        api_json(api, "GET", "/proxies/a/toxics/zz", "").1,
        json!({"error":"toxic not found","status":404})
    );

    // bad toxics: 400 and nothing changes
    let before = api_json(api, "GET", "/proxies/a/toxics", "").1;
    for bad in [
        r#"{"type":"nonsense"}"#,
        r#"{"type":"latency","stream":"sideways"}"#,
        r#"{"type":"latency","attributes":{"latency":"slow"}}"#,
        r#"{"type":"latency","name":"x","attributes":{"latenccy":1}}"#,
        r#"{"type":"latency","name":"y","toxicity":7}"#,
        "[]",
        "",
    ] {
        let (st, v) = api_json(api, "POST", "/proxies/a/toxics", bad);
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        api_json(
            api,
            "PATCH",
            "/proxies/a/toxics/latency_downstream",
            r#"{"attributes":{"latency":-5}}"#
        )
        .0,
        400
    );
    assert_eq!(api_json(api, "GET", "/proxies/a/toxics", "").1, before);

    // index, update, delete
    let (st, v) = api_json(api, "GET", "/proxies", "");
    assert_eq!(st, 200);
    assert_eq!(v["a"]["toxics"].as_array().unwrap().len(), 1);
    assert_eq!(
        http(api, "DELETE", "/proxies/a/toxics/latency_downstream", "").0,
        204
    );
    assert_eq!(
        http(api, "DELETE", "/proxies/a/toxics/latency_downstream", "").0,
        404
    );
    let (st, v) = api_json(api, "PATCH", "/proxies/a", r#"{"enabled":false}"#);
    assert_eq!((st, v["enabled"].clone()), (200, json!(false)));
    assert_eq!(
        TcpStream::connect(listen.as_str()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused,
        "enabled:false refuses connections"
    );
    let (st, v) = api_json(api, "POST", "/proxies/a", r#"{"enabled":true}"#);
    assert_eq!((st, v["enabled"].clone()), (200, json!(true)));
    TcpStream::connect(listen.as_str()).unwrap();

    // populate (with the toxics extension), reset, version, metrics
    let pop = json!([
        {"name":"a","listen":listen,"upstream":up.to_string()},
        {"name":"c","listen":"127.0.0.1:0","upstream":up.to_string(),"toxics":[{"type":"reset_peer","attributes":{"timeout":1000}}]}
    ]);
    let (st, v) = api_json(api, "POST", "/populate", &pop.to_string());
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["proxies"].as_array().unwrap().len(), 2);
    assert_eq!(v["proxies"][1]["toxics"][0]["type"], "reset_peer");
    assert_eq!(
        api_json(api, "POST", "/populate", r#"[{"name":"d"}]"#).0,
        400
    );
    assert!(
        api_json(api, "GET", "/proxies/d", "").0 == 404,
        "a failed populate changes nothing"
    );
    assert_eq!(http(api, "POST", "/reset", "").0, 204);
    assert_eq!(api_json(api, "GET", "/proxies/c/toxics", "").1, json!([]));
    let (st, v) = api_json(api, "GET", "/version", "");
    assert_eq!(st, 200);
    assert!(v["version"].as_str().unwrap().starts_with("2."));
    let (st, m) = http(api, "GET", "/metrics", "");
    assert_eq!(st, 200);
    assert!(
        m.contains("rstscope_proxy_connections_total{proxy=\"a\"}"),
        "{m}"
    );
    assert_eq!(http(api, "DELETE", "/proxies/a", "").0, 204);
    assert_eq!(http(api, "DELETE", "/proxies/a", "").0, 404);
}

/// A deterministic byte pattern so reordering or loss shows.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

#[test]
fn toxics_churn_under_heavy_traffic_loses_no_bytes() {
    let up = echo_server();
    let (h, p) = one(up);
    let api = h.api.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Toxic changes made so far: the writers wait for some halfway, so the
    // churn overlaps the transfer however fast the machine is.
    let made = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let churn = {
        let stop = stop.clone();
        let made = made.clone();
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (stream, ty, attrs) = match n % 4 {
                    0 => ("downstream", "latency", json!({"latency":1})),
                    1 => (
                        "upstream",
                        "slicer",
                        json!({"average_size":1000,"size_variation":100,"delay":0}),
                    ),
                    2 => ("downstream", "bandwidth", json!({"rate":1_000_000})),
                    _ => ("upstream", "reset_peer", json!({"timeout":0})),
                };
                // reset_peer with toxicity 0: present, never fires.
                let tox = if ty == "reset_peer" { 0.0 } else { 1.0 };
                let body =
                    json!({"name":"t","type":ty,"stream":stream,"toxicity":tox,"attributes":attrs});
                assert_eq!(
                    http(api, "POST", "/proxies/p/toxics", &body.to_string()).0,
                    200
                );
                thread::sleep(Duration::from_millis(5));
                assert_eq!(http(api, "DELETE", "/proxies/p/toxics/t", "").0, 204);
                thread::sleep(Duration::from_millis(5));
                n += 1;
                made.store(n, Ordering::Relaxed);
            }
            n
        })
    };
    const PER: u64 = 16 << 20;
    let conns: Vec<_> = (0..4)
        .map(|_| {
            let made = made.clone();
            thread::spawn(move || {
                let mut c = TcpStream::connect(p).unwrap();
                let mut w = c.try_clone().unwrap();
                let writer = thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    let mut off = 0u64;
                    while off < PER {
                        if off == PER / 2 {
                            let t0 = std::time::Instant::now();
                            while made.load(Ordering::Relaxed) < 6
                                && t0.elapsed() < Duration::from_secs(10)
                            {
                                thread::sleep(Duration::from_millis(5));
                            }
                        }
                        for (j, b) in buf.iter_mut().enumerate() {
                            *b = pattern(off + j as u64);
                        }
                        w.write_all(&buf).unwrap();
                        off += buf.len() as u64;
                    }
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let mut got = 0u64;
                let mut buf = vec![0u8; 65536];
                c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                loop {
                    let n = c.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    for (j, b) in buf[..n].iter().enumerate() {
                        assert_eq!(
                            *b,
                            pattern(got + j as u64),
                            "byte {} differs",
                            got + j as u64
                        );
                    }
                    got += n as u64;
                }
                writer.join().unwrap();
                got
            })
        })
        .collect();
    for c in conns {
        assert_eq!(c.join().unwrap(), PER);
    }
    stop.store(true, Ordering::Relaxed);
    let changes = churn.join().unwrap();
    assert!(
        changes >= 4,
        "only {changes} toxic changes happened during the transfer"
    );
    let m = http(api, "GET", "/metrics", "").1;
    let val = |needle: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let splice =
        val(r#"rstscope_proxy_bytes_total{proxy="p",direction="downstream",mode="splice"}"#);
    let copy = val(r#"rstscope_proxy_bytes_total{proxy="p",direction="downstream",mode="copy"}"#);
    assert_eq!(splice + copy, 4 * PER, "{m}");
    assert!(
        splice > 0 && copy > 0,
        "connections switched between splice and copy: {splice} {copy}"
    );
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn no_fd_leak_after_100k_connections() {
    let n: usize = std::env::var("RSP_FD_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let up = echo_server();
    let (h, p) = one(up);
    // warm up so lazily created runtime fds exist before counting
    for _ in 0..100 {
        let mut c = TcpStream::connect(p).unwrap();
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    let before = open_fds();
    let threads = 8;
    let t0 = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            thread::spawn(move || {
                for k in 0..n / threads {
                    let mut c = TcpStream::connect(p).unwrap();
                    match k % 4 {
                        // plain exchange and clean close by the client
                        0 | 1 => {
                            c.write_all(b"x").unwrap();
                            let mut b = [0u8; 1];
                            c.read_exact(&mut b).unwrap();
                        }
                        // close right away
                        2 => {}
                        // client aborts with RST
                        _ => {
                            let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
                        }
                    }
                    let _ = i;
                }
            })
        })
        .collect();
    for t in hs {
        t.join().unwrap();
    }
    let took = t0.elapsed();
    // connections drain asynchronously (graceful close waits up to 1 s)
    let idle = r#"rstscope_proxy_connections_active{proxy="p"} 0"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    // A few fds of slack: the API's own connection of the metrics request
    // may still be closing; a leak would show thousands.
    while (open_fds() > before + 4 || !http(h.api.unwrap(), "GET", "/metrics", "").1.contains(idle))
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(100));
    }
    let after = open_fds();
    assert!(
        after <= before + 4,
        "fds before {before}, after {n} connections {after}"
    );
    let m = http(h.api.unwrap(), "GET", "/metrics", "").1;
    assert!(m.contains(idle), "{m}");
    eprintln!("{n} connections in {took:?}; fds {before} -> {after}");
}
