//! Prometheus metrics of `rstscope watch --metrics ADDR`: counters by
//! direction, cause, reason and local port, plus lost samples, in the
//! Prometheus client library's exposition format, served by a tiny HTTP
//! server on its own thread.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rstscope_core::ResetEvent;
use std::collections::HashSet;
use std::sync::Arc;

/// Label set of `rstscope_resets_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResetLabels {
    /// `sent` or `received`.
    pub direction: String,
    /// Cause id.
    pub cause: String,
    /// Kernel reason name, `none` when the kernel gives none.
    pub reason: String,
    /// Local port; `ephemeral` for a received reset on a port of the
    /// host's ephemeral range (a client socket); `other` once [`MAX_PORTS`]
    /// distinct ports were seen.
    pub local_port: String,
}

/// Distinct local ports labelled before the rest are counted as `other`
/// (received resets on ephemeral ports would otherwise grow without bound).
pub const MAX_PORTS: usize = 1000;

/// The counters, shared with the HTTP thread.
pub struct Metrics {
    resets: Family<ResetLabels, Counter>,
    lost: Counter,
    registry: Arc<Registry>,
    ports: HashSet<u16>,
    ephemeral: (u16, u16),
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the registry and its counters.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rstscope");
        let resets = Family::<ResetLabels, Counter>::default();
        registry.register(
            "resets",
            "TCP resets sent or received by this host, by kernel reason and rstscope cause",
            resets.clone(),
        );
        let lost = Counter::default();
        registry.register(
            "lost_samples",
            "Tracepoint records the kernel did not deliver to rstscope: its buffer was full, or (perf backend) the kernel counted the event but wrote no sample",
            lost.clone(),
        );
        Metrics {
            resets,
            lost,
            registry: Arc::new(registry),
            ports: HashSet::new(),
            ephemeral: std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
                .ok()
                .and_then(|s| {
                    let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
                    Some((it.next()??, it.next()??))
                })
                .unwrap_or((32768, 60999)),
        }
    }

    /// Counts one reset.
    pub fn observe(&mut self, e: &ResetEvent) {
        let (local, _) = crate::watcher::local_remote(e);
        let port = local.port();
        let client_side = e.direction == Some(rstscope_core::Direction::Received)
            && (self.ephemeral.0..=self.ephemeral.1).contains(&port);
        let local_port = if client_side {
            "ephemeral".to_string()
        } else if self.ports.contains(&port) || self.ports.len() < MAX_PORTS {
            self.ports.insert(port);
            port.to_string()
        } else {
            "other".to_string()
        };
        self.resets
            .get_or_create(&ResetLabels {
                direction: e.direction.map(|d| d.id()).unwrap_or("unknown").into(),
                cause: e.cause.id().into(),
                reason: e.reason.clone().unwrap_or_else(|| "none".into()),
                local_port,
            })
            .inc();
    }

    /// Sets the lost-sample counter to the watcher's running total.
    pub fn set_lost(&self, total: u64) {
        let now = self.lost.get();
        if total > now {
            self.lost.inc_by(total - now);
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }

    /// Serves `GET /metrics` (any path) on `addr` from a background thread.
    pub fn serve(&self, addr: &str) -> Result<std::net::SocketAddr, String> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| format!("cannot listen on {addr} for --metrics: {e}"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("--metrics {addr}: not an IP address"))?;
        let reg = self.registry.clone();
        std::thread::Builder::new()
            .name("rstscope-metrics".into())
            .spawn(move || {
                for req in server.incoming_requests() {
                    let body = encode(&reg);
                    let ct = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    )
                    .expect("static header");
                    let _ = req.respond(tiny_http::Response::from_string(body).with_header(ct));
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok(bound)
    }
}

fn encode(reg: &Registry) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut s, reg);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstscope_core::{Cause, Direction, Source, Timestamp};

    #[test]
    fn counts_by_labels() {
        let mut m = Metrics::new();
        let mut e = ResetEvent::new(
            Timestamp(0),
            Source::Kernel,
            "127.0.0.1:80".parse().unwrap(),
            "127.0.0.1:5555".parse().unwrap(),
        );
        e.direction = Some(Direction::Sent);
        e.cause = Cause::UnreadDataClose;
        e.reason = Some("TCP_ABORT_ON_CLOSE".into());
        m.observe(&e);
        m.observe(&e);
        m.set_lost(3);
        let t = m.encode();
        assert!(
            t.contains("rstscope_resets_total{direction=\"sent\",cause=\"unread_data_close\",reason=\"TCP_ABORT_ON_CLOSE\",local_port=\"80\"} 2"),
            "{t}"
        );
        assert!(t.contains("rstscope_lost_samples_total 3"), "{t}");
        // A client socket's ephemeral port is not a label value of its own.
        let mut r = e.clone();
        r.direction = Some(Direction::Received);
        (r.src, r.dst) = (e.dst, e.src);
        r.dst.set_port(m.ephemeral.0);
        m.observe(&r);
        assert!(m.encode().contains("local_port=\"ephemeral\"} 1"));
    }
}
