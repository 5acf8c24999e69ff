//! Prometheus metrics (`GET /metrics`) and the log of injected resets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rstscope_core::ResetEvent;
use std::collections::VecDeque;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabel {
    proxy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabel {
    proxy: String,
    direction: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResetLabel {
    proxy: String,
    toxic: String,
    side: String,
}

/// All metrics of one server.
pub struct Metrics {
    registry: Registry,
    conns: Family<ProxyLabel, Counter>,
    active: Family<ProxyLabel, Gauge>,
    bytes: Family<BytesLabel, Counter>,
    resets: Family<ResetLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let conns = Family::<ProxyLabel, Counter>::default();
        let active = Family::<ProxyLabel, Gauge>::default();
        let bytes = Family::<BytesLabel, Counter>::default();
        let resets = Family::<ResetLabel, Counter>::default();
        registry.register(
            "rstscope_proxy_connections",
            "Connections accepted by a proxy",
            conns.clone(),
        );
        registry.register(
            "rstscope_proxy_connections_active",
            "Connections currently open through a proxy",
            active.clone(),
        );
        registry.register(
            "rstscope_proxy_bytes",
            "Bytes forwarded, by direction (upstream = client to server) and mode (splice = zero-copy, copy = through userspace for a toxic)",
            bytes.clone(),
        );
        registry.register(
            "rstscope_proxy_resets_injected",
            "RSTs the proxy sent on purpose, by toxic and side (client or upstream)",
            resets.clone(),
        );
        Metrics {
            registry,
            conns,
            active,
            bytes,
            resets,
        }
    }
}

/// The counters one connection updates, looked up once per connection.
#[derive(Clone)]
pub(crate) struct ConnMetrics {
    /// [stream index: 0 upstream, 1 downstream][0 splice, 1 copy].
    pub bytes: [[Counter; 2]; 2],
    pub active: Gauge,
}

impl Metrics {
    pub(crate) fn conn(&self, proxy: &str) -> ConnMetrics {
        self.conns
            .get_or_create(&ProxyLabel {
                proxy: proxy.into(),
            })
            .inc();
        let b = |d: &str, m: &str| {
            self.bytes
                .get_or_create(&BytesLabel {
                    proxy: proxy.into(),
                    direction: d.into(),
                    mode: m.into(),
                })
                .clone()
        };
        ConnMetrics {
            bytes: [
                [b("upstream", "splice"), b("upstream", "copy")],
                [b("downstream", "splice"), b("downstream", "copy")],
            ],
            active: self
                .active
                .get_or_create(&ProxyLabel {
                    proxy: proxy.into(),
                })
                .clone(),
        }
    }

    pub(crate) fn reset(&self, proxy: &str, toxic: &str, side: &str) {
        self.resets
            .get_or_create(&ResetLabel {
                proxy: proxy.into(),
                toxic: toxic.into(),
                side: side.into(),
            })
            .inc();
    }

    /// The OpenMetrics/Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// The most recent injected resets, as [`ResetEvent`]s (source `proxy`).
#[derive(Default)]
pub struct Events {
    ring: Mutex<VecDeque<ResetEvent>>,
    log: bool,
}

/// How many events are kept.
const KEEP: usize = 1000;

impl Events {
    pub(crate) fn new(log: bool) -> Self {
        Events {
            ring: Mutex::new(VecDeque::new()),
            log,
        }
    }
    pub(crate) fn push(&self, e: ResetEvent) {
        if self.log {
            if let Ok(line) = serde_json::to_string(&e) {
                eprintln!("{line}");
            }
        }
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() == KEEP {
            r.pop_front();
        }
        r.push_back(e);
    }
    /// A copy of the kept events, oldest first.
    pub fn snapshot(&self) -> Vec<ResetEvent> {
        let r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().cloned().collect()
    }
}
