//! Toxics: their JSON shape (Toxiproxy's), validation and defaults.
//!
//! A toxic as the API shows it:
//! `{"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":100,"jitter":0}}`.
//! Toxiproxy's toxics keep Toxiproxy's attribute names and units; the
//! reset toxics (`idle_reset`, `reset_after`, `refuse_when_down`,
//! `limit_connections`) are rstscope's own.

use serde_json::{Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which way the bytes a toxic acts on travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Client to upstream server.
    Upstream,
    /// Upstream server to client (Toxiproxy's default).
    Downstream,
}

impl Stream {
    /// The id used in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
    fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "upstream" => Ok(Stream::Upstream),
            "downstream" => Ok(Stream::Downstream),
            _ => Err(ApiError::bad(
                "stream was invalid, can be either upstream or downstream",
            )),
        }
    }
}

/// What `limit_connections` does with a connection over the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitMode {
    /// Accept it, then reset it at once (`tcp_abort_on_overflow=1`).
    Reset,
    /// Stop listening while at the limit: the kernel answers SYNs with RST
    /// and `connect()` fails with ECONNREFUSED.
    Refuse,
    /// Leave it in the kernel's accept queue until a slot frees up.
    Queue,
}

impl LimitMode {
    /// The id used in JSON.
    pub fn id(self) -> &'static str {
        match self {
            LimitMode::Reset => "reset",
            LimitMode::Refuse => "refuse",
            LimitMode::Queue => "queue",
        }
    }
}

/// A toxic's type and attributes. Times are milliseconds unless noted.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Delay every chunk by `latency` ± `jitter` ms.
    Latency {
        /// Base delay, ms.
        latency: u64,
        /// Random extra delay in `[-jitter, +jitter]`, ms.
        jitter: u64,
    },
    /// Limit the stream to `rate` KB/s (1 KB = 1000 bytes); 0 = unlimited.
    Bandwidth {
        /// KB per second.
        rate: u64,
    },
    /// Delay the close (EOF) by `delay` ms.
    SlowClose {
        /// ms.
        delay: u64,
    },
    /// Stop all data; close the connection after `timeout` ms (0 = never,
    /// data flows again when the toxic is removed).
    Timeout {
        /// ms.
        timeout: u64,
    },
    /// Reset the connection `timeout` ms after the toxic applies to it,
    /// whether data flows or not. RST toward the stream's receiver.
    ResetPeer {
        /// ms.
        timeout: u64,
    },
    /// Cut chunks into slices of `average_size` ± `size_variation` bytes,
    /// `delay` microseconds apart.
    Slicer {
        /// Bytes.
        average_size: u64,
        /// Bytes, less than `average_size`.
        size_variation: u64,
        /// Microseconds between slices.
        delay: u64,
    },
    /// Close the connection cleanly once `bytes` have passed.
    LimitData {
        /// Bytes.
        bytes: u64,
    },
    /// A load balancer's idle timer: reset after `timeout` ms without data
    /// in either direction, toward the client (and upstream if `both_sides`).
    IdleReset {
        /// ms.
        timeout: u64,
        /// Reset the upstream side too (else it gets a clean close).
        both_sides: bool,
    },
    /// Reset once `bytes` have passed on the stream or `ms` have gone by.
    ResetAfter {
        /// Byte budget, if any.
        bytes: Option<u64>,
        /// Time budget, if any.
        ms: Option<u64>,
    },
    /// When the upstream cannot be reached, reset the client instead of
    /// closing it cleanly.
    RefuseWhenDown,
    /// At most `max` connections at a time.
    LimitConnections {
        /// Connections.
        max: u64,
        /// What happens to the next one.
        mode: LimitMode,
    },
}

/// Every toxic type this proxy knows, in the order the docs list them.
pub const TYPES: &[&str] = &[
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "idle_reset",
    "reset_after",
    "refuse_when_down",
    "limit_connections",
];

impl Kind {
    /// Toxiproxy's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Latency { .. } => "latency",
            Kind::Bandwidth { .. } => "bandwidth",
            Kind::SlowClose { .. } => "slow_close",
            Kind::Timeout { .. } => "timeout",
            Kind::ResetPeer { .. } => "reset_peer",
            Kind::Slicer { .. } => "slicer",
            Kind::LimitData { .. } => "limit_data",
            Kind::IdleReset { .. } => "idle_reset",
            Kind::ResetAfter { .. } => "reset_after",
            Kind::RefuseWhenDown => "refuse_when_down",
            Kind::LimitConnections { .. } => "limit_connections",
        }
    }

    /// Whether the toxic has to see the bytes (forces userspace copying on
    /// its stream instead of splice).
    pub fn needs_bytes(&self) -> bool {
        matches!(
            self,
            Kind::Latency { .. }
                | Kind::Bandwidth { .. }
                | Kind::Timeout { .. }
                | Kind::Slicer { .. }
                | Kind::LimitData { .. }
        )
    }

    fn attributes(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        match *self {
            Kind::Latency { latency, jitter } => {
                put("latency", latency.into());
                put("jitter", jitter.into());
            }
            Kind::Bandwidth { rate } => put("rate", rate.into()),
            Kind::SlowClose { delay } => put("delay", delay.into()),
            Kind::Timeout { timeout } => put("timeout", timeout.into()),
            Kind::ResetPeer { timeout } => put("timeout", timeout.into()),
            Kind::Slicer {
                average_size,
                size_variation,
                delay,
            } => {
                put("average_size", average_size.into());
                put("size_variation", size_variation.into());
                put("delay", delay.into());
            }
            Kind::LimitData { bytes } => put("bytes", bytes.into()),
            Kind::IdleReset {
                timeout,
                both_sides,
            } => {
                put("timeout", timeout.into());
                put("both_sides", both_sides.into());
            }
            Kind::ResetAfter { bytes, ms } => {
                if let Some(b) = bytes {
                    put("bytes", b.into());
                }
                if let Some(t) = ms {
                    put("ms", t.into());
                }
            }
            Kind::RefuseWhenDown => {}
            Kind::LimitConnections { max, mode } => {
                put("max", max.into());
                put("mode", mode.id().into());
            }
        }
        m
    }

    /// Builds a toxic of type `ty` from `attrs`, starting from `base` (the
    /// current values on update, zero values on create). Unknown attribute
    /// names and wrong types are errors.
    fn from_attrs(
        ty: &str,
        base: Option<&Kind>,
        attrs: &Map<String, Value>,
    ) -> Result<Kind, ApiError> {
        let allowed: &[&str] = match ty {
            "latency" => &["latency", "jitter"],
            "bandwidth" => &["rate"],
            "slow_close" => &["delay"],
            "timeout" | "reset_peer" => &["timeout"],
            "slicer" => &["average_size", "size_variation", "delay"],
            "limit_data" => &["bytes"],
            "idle_reset" => &["timeout", "both_sides"],
            "reset_after" => &["bytes", "ms"],
            "refuse_when_down" => &[],
            "limit_connections" => &["max", "mode"],
            _ => {
                return Err(ApiError::bad(format!(
                    "invalid toxic type: {ty:?} (known: {})",
                    TYPES.join(", ")
                )))
            }
        };
        for (k, _) in attrs.iter() {
            if k == PER_CHUNK {
                continue;
            }
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_body(format!(
                    "unknown attribute {k:?} for toxic type {ty} (known: {})",
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                )));
            }
        }
        let mut cur = base.map(|b| b.attributes()).unwrap_or_default();
        for (k, v) in attrs {
            cur.insert(k.clone(), v.clone());
        }
        let num = |k: &str| -> Result<u64, ApiError> { get_u64(&cur, k).map(|v| v.unwrap_or(0)) };
        let kind = match ty {
            "latency" => Kind::Latency {
                latency: num("latency")?,
                jitter: num("jitter")?,
            },
            "bandwidth" => Kind::Bandwidth { rate: num("rate")? },
            "slow_close" => Kind::SlowClose {
                delay: num("delay")?,
            },
            "timeout" => Kind::Timeout {
                timeout: num("timeout")?,
            },
            "reset_peer" => Kind::ResetPeer {
                timeout: num("timeout")?,
            },
            "slicer" => {
                let (a, v) = (num("average_size")?, num("size_variation")?);
                if a == 0 {
                    return Err(ApiError::bad_body("slicer average_size must be at least 1"));
                }
                if v >= a {
                    return Err(ApiError::bad_body(
                        "slicer size_variation must be less than average_size",
                    ));
                }
                Kind::Slicer {
                    average_size: a,
                    size_variation: v,
                    delay: num("delay")?,
                }
            }
            "limit_data" => Kind::LimitData {
                bytes: num("bytes")?,
            },
            "idle_reset" => {
                let t = num("timeout")?;
                if t == 0 {
                    return Err(ApiError::bad_body(
                        "idle_reset timeout must be at least 1 ms",
                    ));
                }
                Kind::IdleReset {
                    timeout: t,
                    both_sides: get_bool(&cur, "both_sides")?.unwrap_or(false),
                }
            }
            "reset_after" => {
                let (bytes, ms) = (get_u64(&cur, "bytes")?, get_u64(&cur, "ms")?);
                if bytes.is_none() && ms.is_none() {
                    return Err(ApiError::bad_body(
                        "reset_after needs attribute bytes or ms",
                    ));
                }
                Kind::ResetAfter { bytes, ms }
            }
            "refuse_when_down" => Kind::RefuseWhenDown,
            "limit_connections" => {
                let mode = match cur.get("mode") {
                    None | Some(Value::Null) => LimitMode::Reset,
                    Some(Value::String(s)) => match s.as_str() {
                        "reset" => LimitMode::Reset,
                        "refuse" => LimitMode::Refuse,
                        "queue" => LimitMode::Queue,
                        _ => {
                            return Err(ApiError::bad_body(format!(
                                "limit_connections mode {s:?} is not one of reset, refuse, queue"
                            )))
                        }
                    },
                    Some(_) => {
                        return Err(ApiError::bad_body(
                            "limit_connections mode must be a string: reset, refuse or queue",
                        ))
                    }
                };
                Kind::LimitConnections {
                    max: num("max")?,
                    mode,
                }
            }
            _ => unreachable!("checked above"),
        };
        Ok(kind)
    }
}

/// The attribute that switches toxicity from per connection to per chunk:
/// `"per_chunk": 1` (or `true`). Absent or 0: Toxiproxy's behaviour, one
/// roll per connection.
pub const PER_CHUNK: &str = "per_chunk";

fn get_u64(m: &Map<String, Value>, k: &str) -> Result<Option<u64>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => Ok(Some(v)),
            None => Err(ApiError::bad_body(format!(
                "attribute {k} must be a non-negative integer, got {n}"
            ))),
        },
        Some(v) => Err(ApiError::bad_body(format!(
            "attribute {k} must be a non-negative integer, got {v}"
        ))),
    }
}

fn get_bool(m: &Map<String, Value>, k: &str) -> Result<Option<bool>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(v) => Err(ApiError::bad_body(format!(
            "attribute {k} must be true/false or 0/1, got {v}"
        ))),
    }
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// One toxic on a proxy.
#[derive(Clone, Debug)]
pub struct Toxic {
    /// Unique within the proxy; defaults to `<type>_<stream>`.
    pub name: String,
    /// Type and attributes.
    pub kind: Kind,
    /// Which way it acts.
    pub stream: Stream,
    /// Probability it applies, 0.0 to 1.0.
    pub toxicity: f32,
    /// Roll toxicity for every chunk instead of once per connection.
    pub per_chunk: bool,
    /// Changes on every create/update, so connections roll again.
    pub uid: u64,
}

impl Toxic {
    /// Parses a toxic from Toxiproxy's JSON (create).
    pub fn from_json(v: &Value) -> Result<Toxic, ApiError> {
        let o = v
            .as_object()
            .ok_or_else(|| ApiError::bad_body("a toxic must be a JSON object"))?;
        let ty = match o.get("type") {
            Some(Value::String(s)) => s.as_str(),
            None | Some(Value::Null) => {
                return Err(ApiError::bad(format!(
                    "invalid toxic type: missing field \"type\" (known: {})",
                    TYPES.join(", ")
                )))
            }
            Some(_) => return Err(ApiError::bad_body("field type must be a string")),
        };
        let stream = match o.get("stream") {
            None | Some(Value::Null) => Stream::Downstream,
            Some(Value::String(s)) if s.is_empty() => Stream::Downstream,
            Some(Value::String(s)) => Stream::parse(s)?,
            Some(_) => return Err(ApiError::bad_body("field stream must be a string")),
        };
        let toxicity = get_toxicity(o)?.unwrap_or(1.0);
        let empty = Map::new();
        let attrs = match o.get("attributes") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(ApiError::bad_body("attributes must be a JSON object")),
        };
        let kind = Kind::from_attrs(ty, None, attrs)?;
        let name = match o.get("name") {
            None | Some(Value::Null) => format!("{ty}_{}", stream.id()),
            Some(Value::String(s)) if s.is_empty() => format!("{ty}_{}", stream.id()),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ApiError::bad_body("field name must be a string")),
        };
        Ok(Toxic {
            name,
            kind,
            stream,
            toxicity,
            per_chunk: get_bool(attrs, PER_CHUNK)?.unwrap_or(false),
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Applies an update body (`{"attributes":{..},"toxicity":..}`) and
    /// returns the new toxic; `self` is untouched on error.
    pub fn updated(&self, v: &Value) -> Result<Toxic, ApiError> {
        let o = v
            .as_object()
            .ok_or_else(|| ApiError::bad_body("a toxic must be a JSON object"))?;
        let empty = Map::new();
        let attrs = match o.get("attributes") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(ApiError::bad_body("attributes must be a JSON object")),
        };
        let kind = Kind::from_attrs(self.kind.type_name(), Some(&self.kind), attrs)?;
        Ok(Toxic {
            name: self.name.clone(),
            kind,
            stream: self.stream,
            toxicity: get_toxicity(o)?.unwrap_or(self.toxicity),
            per_chunk: get_bool(attrs, PER_CHUNK)?.unwrap_or(self.per_chunk),
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Toxiproxy's JSON shape.
    pub fn to_json(&self) -> Value {
        let mut attrs = self.kind.attributes();
        if self.per_chunk {
            attrs.insert(PER_CHUNK.into(), 1.into());
        }
        serde_json::json!({
            "attributes": attrs,
            "name": self.name,
            "type": self.kind.type_name(),
            "stream": self.stream.id(),
            "toxicity": self.toxicity,
        })
    }
}

fn get_toxicity(o: &Map<String, Value>) -> Result<Option<f32>, ApiError> {
    match o.get("toxicity") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => Ok(Some(t as f32)),
            _ => Err(ApiError::bad_body(format!(
                "toxicity must be between 0 and 1, got {n}"
            ))),
        },
        Some(v) => Err(ApiError::bad_body(format!(
            "toxicity must be a number, got {v}"
        ))),
    }
}

/// An API error: Toxiproxy's `{"error": "...", "status": N}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The message, as a configuration file or the command line reports it.
    pub message: String,
    /// The HTTP status code.
    pub status: u16,
    /// The request body was at fault: the API then puts "bad request
    /// body: " in front of the message, as Toxiproxy does.
    pub body: bool,
}

impl ApiError {
    /// A 400 Bad Request.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::new(400, msg)
    }
    /// A 400 Bad Request for a body (a proxy or a toxic) that does not
    /// parse or holds a bad value.
    pub fn bad_body(msg: impl Into<String>) -> Self {
        ApiError {
            body: true,
            ..ApiError::bad(msg)
        }
    }
    /// Any status.
    pub fn new(status: u16, msg: impl Into<String>) -> Self {
        ApiError {
            message: msg.into(),
            status,
            body: false,
        }
    }
    /// The message as the HTTP API gives it.
    pub fn api_message(&self) -> String {
        if self.body {
            format!("bad request body: {}", self.message)
        } else {
            self.message.clone()
        }
    }
    /// The JSON body.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"error": self.api_message(), "status": self.status})
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.api_message(), self.status)
    }
}

impl std::error::Error for ApiError {}

/// Parses the command line's `--toxic` value: either a JSON object, or
/// `type[,key=value...]` where the keys are attributes plus `name`,
/// `stream` and `toxicity` (e.g. `reset_peer,timeout=500,stream=upstream`).
pub fn parse_cli_toxic(s: &str) -> Result<Toxic, ApiError> {
    let s = s.trim();
    if s.starts_with('{') {
        let v: Value =
            serde_json::from_str(s).map_err(|e| ApiError::bad(format!("bad --toxic JSON: {e}")))?;
        return Toxic::from_json(&v);
    }
    let mut parts = s.split(',');
    let ty = parts.next().unwrap_or("").trim();
    let mut obj = Map::new();
    let mut attrs = Map::new();
    obj.insert("type".into(), ty.into());
    for p in parts {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| ApiError::bad(format!("bad --toxic part {p:?}: expected key=value")))?;
        let (k, v) = (k.trim(), v.trim());
        let val: Value = if let Ok(n) = v.parse::<u64>() {
            n.into()
        } else if let Ok(f) = v.parse::<f64>() {
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        } else if v == "true" || v == "false" {
            (v == "true").into()
        } else {
            v.into()
        };
        match k {
            "name" | "stream" => {
                obj.insert(k.into(), v.into());
            }
            "toxicity" => {
                obj.insert(k.into(), val);
            }
            _ => {
                attrs.insert(k.into(), val);
            }
        }
    }
    obj.insert("attributes".into(), Value::Object(attrs));
    Toxic::from_json(&Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_toxiproxy() {
        let t = Toxic::from_json(&json!({"type":"latency","attributes":{"latency":100}})).unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(t.stream, Stream::Downstream);
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(
            t.to_json(),
            json!({"attributes":{"latency":100,"jitter":0},"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1.0})
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            json!({"type":"nope"}),
            json!({}),
            json!({"type":"latency","stream":"sideways"}),
            json!({"type":"latency","attributes":{"latency":-1}}),
            json!({"type":"latency","attributes":{"latncy":1}}),
            json!({"type":"latency","toxicity":2}),
            json!({"type":"slicer","attributes":{"average_size":10,"size_variation":10}}),
            json!({"type":"reset_after"}),
            json!({"type":"limit_connections","attributes":{"max":1,"mode":"drop"}}),
            json!([1]),
        ] {
            let e = Toxic::from_json(&bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }

    #[test]
    fn update_merges() {
        let t =
            Toxic::from_json(&json!({"type":"latency","attributes":{"latency":100,"jitter":5}}))
                .unwrap();
        let u = t.updated(&json!({"attributes":{"latency":7}})).unwrap();
        assert_eq!(
            u.kind,
            Kind::Latency {
                latency: 7,
                jitter: 5
            }
        );
        assert_ne!(u.uid, t.uid);
        assert!(t.updated(&json!({"toxicity":"x"})).is_err());
    }

    #[test]
    fn cli_form() {
        let t =
            parse_cli_toxic("idle_reset,timeout=300,both_sides=true,stream=upstream,toxicity=0.5")
                .unwrap();
        assert_eq!(
            t.kind,
            Kind::IdleReset {
                timeout: 300,
                both_sides: true
            }
        );
        assert_eq!(t.stream, Stream::Upstream);
        assert_eq!(t.toxicity, 0.5);
        let t = parse_cli_toxic("limit_connections,max=2,mode=queue").unwrap();
        assert_eq!(
            t.kind,
            Kind::LimitConnections {
                max: 2,
                mode: LimitMode::Queue
            }
        );
        assert!(parse_cli_toxic("latency,oops").is_err());
    }
}
