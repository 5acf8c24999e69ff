//! The proxies, their listeners, and Toxiproxy's HTTP API over them.

use crate::conn::{self, Shared, Snapshot};
use crate::metrics::{Events, Metrics};
use crate::toxic::{ApiError, Kind, LimitMode, Toxic};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

/// Toxiproxy API level this server speaks, plus our own version.
pub const VERSION: &str = concat!("2.12.0-rstscope.", env!("CARGO_PKG_VERSION"));

/// One proxy as configured (Toxiproxy's JSON, with `toxics` allowed).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Unique name.
    pub name: String,
    /// Address to listen on (`host:port`, port 0 = any).
    pub listen: String,
    /// Address to connect to for every accepted connection.
    pub upstream: String,
    /// Whether it accepts connections.
    pub enabled: bool,
    /// Toxics present from the start.
    pub toxics: Vec<Toxic>,
}

impl ProxyConfig {
    /// Parses one proxy object. `enabled` defaults to true.
    pub fn from_json(v: &Value, index: Option<usize>) -> Result<ProxyConfig, ApiError> {
        let at = index
            .map(|i| format!(" at proxy {}", i + 1))
            .unwrap_or_default();
        let o = v
            .as_object()
            .ok_or_else(|| ApiError::bad_body(format!("a proxy must be a JSON object{at}")))?;
        let s = |k: &str| -> Result<String, ApiError> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(ApiError::bad_body(format!(
                    "field {k} must be a string{at}"
                ))),
            }
        };
        let (name, listen, upstream) = (s("name")?, s("listen")?, s("upstream")?);
        if name.is_empty() {
            return Err(ApiError::bad(format!("missing required field: name{at}")));
        }
        if upstream.is_empty() {
            return Err(ApiError::bad(format!(
                "missing required field: upstream{at}"
            )));
        }
        let enabled = match o.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ApiError::bad_body(format!(
                    "field enabled must be a boolean{at}"
                )))
            }
        };
        let mut toxics: Vec<Toxic> = Vec::new();
        match o.get("toxics") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for t in a {
                    let t = Toxic::from_json(t)?;
                    if toxics.iter().any(|x| x.name == t.name) {
                        return Err(ApiError::new(
                            409,
                            format!("toxic already exists: {}{at}", t.name),
                        ));
                    }
                    toxics.push(t);
                }
            }
            Some(_) => return Err(ApiError::bad_body(format!("toxics must be an array{at}"))),
        }
        Ok(ProxyConfig {
            name,
            listen: if listen.is_empty() {
                "127.0.0.1:0".into()
            } else {
                listen
            },
            upstream,
            enabled,
            toxics,
        })
    }
}

/// Parses a configuration file's text: Toxiproxy's JSON array of proxies.
pub fn parse_config(text: &str) -> Result<Vec<ProxyConfig>, ApiError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ApiError::bad_body(format!("{e}")))?;
    let a = v
        .as_array()
        .ok_or_else(|| ApiError::bad_body("expected a JSON array of proxies"))?;
    let mut out: Vec<ProxyConfig> = Vec::new();
    for (i, p) in a.iter().enumerate() {
        let p = ProxyConfig::from_json(p, Some(i))?;
        if out.iter().any(|x| x.name == p.name) {
            return Err(ApiError::bad(format!("duplicate proxy name {:?}", p.name)));
        }
        out.push(p);
    }
    Ok(out)
}

struct Entry {
    name: String,
    listen: String,
    upstream: String,
    enabled: bool,
    toxics: Vec<Arc<Toxic>>,
    running: Option<Running>,
}

impl Entry {
    /// A proxy as configured, not yet listening.
    fn stopped(cfg: ProxyConfig) -> Entry {
        Entry {
            name: cfg.name,
            listen: cfg.listen,
            upstream: cfg.upstream,
            enabled: cfg.enabled,
            toxics: cfg.toxics.into_iter().map(Arc::new).collect(),
            running: None,
        }
    }
}

struct Running {
    tx: watch::Sender<Arc<Snapshot>>,
    task: JoinHandle<()>,
}

impl Entry {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": self.toxics.iter().map(|t| t.to_json()).collect::<Vec<_>>(),
        })
    }

    fn publish(&self) {
        if let Some(r) = &self.running {
            r.tx.send_replace(Arc::new(Snapshot {
                toxics: self.toxics.clone(),
                closing: false,
            }));
        }
    }

    /// Stops listening and closes connections; the returned handle
    /// completes once the listener is closed.
    fn stop(&mut self) -> Option<JoinHandle<()>> {
        let r = self.running.take()?;
        r.task.abort();
        r.tx.send_replace(Arc::new(Snapshot {
            toxics: Vec::new(),
            closing: true,
        }));
        Some(r.task)
    }

    /// `stop`, waiting until the port is closed (so a client that connects
    /// after the API answered is refused).
    async fn stop_wait(&mut self) {
        if let Some(t) = self.stop() {
            let _ = t.await;
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A set of proxies plus the API state: what `rstscope proxy` runs.
pub struct Server {
    proxies: Mutex<BTreeMap<String, Entry>>,
    /// Metrics for `GET /metrics`.
    pub metrics: Arc<Metrics>,
    /// Injected resets.
    pub events: Arc<Events>,
    seed: u64,
    next_conn: AtomicU64,
}

impl Server {
    /// A server with no proxies. `seed` makes toxicity and jitter rolls
    /// repeat; `log_resets` prints each injected reset as a JSON line on stderr.
    pub fn new(seed: u64, log_resets: bool) -> Arc<Server> {
        Arc::new(Server {
            proxies: Mutex::new(BTreeMap::new()),
            metrics: Arc::new(Metrics::default()),
            events: Arc::new(Events::new(log_resets)),
            seed,
            next_conn: AtomicU64::new(0),
        })
    }

    /// Adds a proxy (409 if the name exists) and starts it if enabled.
    /// Returns its JSON (with the listen address actually bound).
    pub async fn add(self: &Arc<Self>, cfg: ProxyConfig) -> Result<Value, ApiError> {
        let mut map = self.proxies.lock().await;
        if map.contains_key(&cfg.name) {
            return Err(ApiError::new(409, "proxy already exists"));
        }
        let mut e = Entry::stopped(cfg);
        if e.enabled {
            self.start(&mut e).await?;
        }
        let v = e.to_json();
        map.insert(e.name.clone(), e);
        Ok(v)
    }

    /// The address a proxy listens on, when it runs.
    pub async fn listen_addr(&self, name: &str) -> Option<SocketAddr> {
        let map = self.proxies.lock().await;
        map.get(name)
            .filter(|e| e.running.is_some())
            .and_then(|e| e.listen.parse().ok())
    }

    async fn start(self: &Arc<Self>, e: &mut Entry) -> Result<(), ApiError> {
        let listener = TcpListener::bind(e.listen.as_str())
            .await
            .map_err(|err| ApiError::new(500, format!("listen {}: {err}", e.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|err| ApiError::new(500, format!("listen {}: {err}", e.listen)))?;
        e.listen = addr.to_string();
        let (tx, rx) = watch::channel(Arc::new(Snapshot {
            toxics: e.toxics.clone(),
            closing: false,
        }));
        let sh = Arc::new(Shared {
            name: e.name.clone(),
            upstream: e.upstream.clone(),
            rx,
            metrics: self.metrics.clone(),
            events: self.events.clone(),
            seed: self.seed,
            active: AtomicU64::new(0),
            slot_freed: tokio::sync::Notify::new(),
        });
        let me = self.clone();
        let task = tokio::spawn(async move { me.accept_loop(sh, listener, addr).await });
        e.running = Some(Running { tx, task });
        Ok(())
    }

    async fn accept_loop(
        self: Arc<Self>,
        sh: Arc<Shared>,
        listener: TcpListener,
        addr: SocketAddr,
    ) {
        let mut rx = sh.rx.clone();
        let mut listener = Some(listener);
        loop {
            let snap = rx.borrow_and_update().clone();
            let limit = snap.toxics.iter().find_map(|t| match t.kind {
                Kind::LimitConnections { max, mode } => Some((max, mode, t.clone())),
                _ => None,
            });
            let over = limit
                .as_ref()
                .map(|(max, _, _)| sh.active.load(Ordering::SeqCst) >= *max)
                .unwrap_or(false);
            if over {
                let (_, mode, _) = limit.as_ref().expect("over implies limit");
                match mode {
                    LimitMode::Queue | LimitMode::Refuse => {
                        if *mode == LimitMode::Refuse {
                            // Not listening: the kernel answers SYNs with RST.
                            listener = None;
                        }
                        tokio::select! {
                            _ = sh.slot_freed.notified() => {}
                            _ = rx.changed() => {}
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                        continue;
                    }
                    LimitMode::Reset => {}
                }
            }
            if listener.is_none() {
                match TcpListener::bind(addr).await {
                    Ok(l) => listener = Some(l),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
            let l = listener.as_ref().expect("bound above");
            let (sock, _) = tokio::select! {
                r = l.accept() => match r {
                    Ok(x) => x,
                    Err(_) => {
                        // EMFILE and friends: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = rx.changed() => continue,
            };
            let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            if over {
                let (_, _, t) = limit.as_ref().expect("over implies limit");
                conn::record(
                    &sh,
                    &sock,
                    t,
                    rstscope_core::Cause::ListenOverflow,
                    rstscope_core::Side::Responder,
                    "client",
                    format!(
                        "limit_connections max {} reached",
                        sh.active.load(Ordering::SeqCst)
                    ),
                );
                conn::abort(sock);
                continue;
            }
            sh.active.fetch_add(1, Ordering::SeqCst);
            let sh2 = sh.clone();
            tokio::spawn(async move {
                conn::run(sh2.clone(), sock, id).await;
                sh2.active.fetch_sub(1, Ordering::SeqCst);
                sh2.slot_freed.notify_waiters();
            });
        }
    }

    /// Toxiproxy's HTTP API as an axum router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/reset", post(reset))
            .route("/version", get(version))
            .route("/metrics", get(metrics))
            .route("/events", get(events))
            .route("/populate", post(populate))
            .route("/proxies", get(proxy_index).post(proxy_create))
            .route(
                "/proxies/:proxy",
                get(proxy_show)
                    .post(proxy_update)
                    .patch(proxy_update)
                    .delete(proxy_delete),
            )
            .route(
                "/proxies/:proxy/toxics",
                get(toxic_index).post(toxic_create),
            )
            .route(
                "/proxies/:proxy/toxics/:toxic",
                get(toxic_show)
                    .post(toxic_update)
                    .patch(toxic_update)
                    .delete(toxic_delete),
            )
            .fallback(|| async { err(ApiError::new(404, "not found")) })
            .with_state(self.clone())
    }
}

type S = State<Arc<Server>>;

fn ok(status: u16, v: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn err(e: ApiError) -> Response {
    ok(e.status, e.to_json())
}

fn body_json(b: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError::bad_body(format!("{e}")))
}

fn not_found() -> ApiError {
    ApiError::new(404, "proxy not found")
}

async fn version() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        format!("{{\"version\": \"{VERSION}\"}}\n"),
    )
        .into_response()
}

async fn metrics(State(s): S) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn events(State(s): S) -> Response {
    ok(
        200,
        serde_json::to_value(s.events.snapshot()).unwrap_or(Value::Null),
    )
}

async fn reset(State(s): S) -> Response {
    let mut map = s.proxies.lock().await;
    for e in map.values_mut() {
        e.toxics.clear();
        if e.running.is_none() {
            e.enabled = true;
            if let Err(x) = s.start(e).await {
                return err(x);
            }
        } else {
            e.publish();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn proxy_index(State(s): S) -> Response {
    let map = s.proxies.lock().await;
    let m: serde_json::Map<String, Value> =
        map.iter().map(|(k, e)| (k.clone(), e.to_json())).collect();
    ok(200, Value::Object(m))
}

async fn proxy_create(State(s): S, b: Bytes) -> Response {
    let r = async {
        let cfg = ProxyConfig::from_json(&body_json(&b)?, None)?;
        s.add(cfg).await
    }
    .await;
    match r {
        Ok(v) => ok(201, v),
        Err(e) => err(e),
    }
}

async fn populate(State(s): S, b: Bytes) -> Response {
    let cfgs = match body_json(&b).and_then(|v| parse_config(&v.to_string())) {
        Ok(c) => c,
        Err(e) => return err(e),
    };
    let mut map = s.proxies.lock().await;
    let mut out = Vec::new();
    for cfg in cfgs {
        if let Some(e) = map.get_mut(&cfg.name) {
            let same_listen = e.listen == cfg.listen
                || e.listen.parse::<SocketAddr>().ok() == cfg.listen.parse::<SocketAddr>().ok()
                    && cfg.listen.parse::<SocketAddr>().is_ok();
            if same_listen && e.upstream == cfg.upstream {
                if !cfg.toxics.is_empty() {
                    e.toxics = cfg.toxics.into_iter().map(Arc::new).collect();
                    e.publish();
                }
                out.push(e.to_json());
                continue;
            }
            if let Some(mut old) = map.remove(&cfg.name) {
                old.stop_wait().await;
            }
        }
        let mut e = Entry::stopped(cfg);
        if e.enabled {
            if let Err(x) = s.start(&mut e).await {
                return ok(
                    x.status,
                    json!({"error": x.api_message(), "status": x.status, "proxies": out}),
                );
            }
        }
        out.push(e.to_json());
        map.insert(e.name.clone(), e);
    }
    ok(201, json!({ "proxies": out }))
}

async fn proxy_show(State(s): S, Path(name): Path<String>) -> Response {
    let map = s.proxies.lock().await;
    match map.get(&name) {
        Some(e) => ok(200, e.to_json()),
        None => err(not_found()),
    }
}

async fn proxy_update(State(s): S, Path(name): Path<String>, b: Bytes) -> Response {
    let mut map = s.proxies.lock().await;
    let Some(e) = map.get_mut(&name) else {
        return err(not_found());
    };
    let v = match body_json(&b) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return err(ApiError::bad_body("expected a JSON object")),
        Err(x) => return err(x),
    };
    let get_s = |k: &str, cur: &str| -> Result<String, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(cur.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Ok(cur.to_string()),
            Some(_) => Err(ApiError::bad_body(format!("field {k} must be a string"))),
        }
    };
    let (listen, upstream) = match (get_s("listen", &e.listen), get_s("upstream", &e.upstream)) {
        (Ok(l), Ok(u)) => (l, u),
        (Err(x), _) | (_, Err(x)) => return err(x),
    };
    let enabled = match v.get("enabled") {
        None | Some(Value::Null) => e.enabled,
        Some(Value::Bool(b)) => *b,
        Some(_) => return err(ApiError::bad_body("field enabled must be a boolean")),
    };
    let changed = listen != e.listen || upstream != e.upstream;
    if changed || !enabled {
        e.stop_wait().await;
    }
    e.listen = listen;
    e.upstream = upstream;
    e.enabled = enabled;
    if enabled && e.running.is_none() {
        if let Err(x) = s.start(e).await {
            e.enabled = false;
            return err(x);
        }
    }
    ok(200, e.to_json())
}

async fn proxy_delete(State(s): S, Path(name): Path<String>) -> Response {
    let mut map = s.proxies.lock().await;
    match map.remove(&name) {
        Some(mut e) => {
            e.stop_wait().await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => err(not_found()),
    }
}

async fn toxic_index(State(s): S, Path(name): Path<String>) -> Response {
    let map = s.proxies.lock().await;
    match map.get(&name) {
        Some(e) => ok(
            200,
            Value::Array(e.toxics.iter().map(|t| t.to_json()).collect()),
        ),
        None => err(not_found()),
    }
}

async fn toxic_create(State(s): S, Path(name): Path<String>, b: Bytes) -> Response {
    let mut map = s.proxies.lock().await;
    let Some(e) = map.get_mut(&name) else {
        return err(not_found());
    };
    let t = match body_json(&b).and_then(|v| Toxic::from_json(&v)) {
        Ok(t) => t,
        Err(x) => return err(x),
    };
    if e.toxics.iter().any(|x| x.name == t.name) {
        return err(ApiError::new(409, "toxic already exists"));
    }
    let v = t.to_json();
    e.toxics.push(Arc::new(t));
    e.publish();
    ok(200, v)
}

async fn toxic_show(State(s): S, Path((name, toxic)): Path<(String, String)>) -> Response {
    let map = s.proxies.lock().await;
    let Some(e) = map.get(&name) else {
        return err(not_found());
    };
    match e.toxics.iter().find(|t| t.name == toxic) {
        Some(t) => ok(200, t.to_json()),
        None => err(ApiError::new(404, "toxic not found")),
    }
}

async fn toxic_update(
    State(s): S,
    Path((name, toxic)): Path<(String, String)>,
    b: Bytes,
) -> Response {
    let mut map = s.proxies.lock().await;
    let Some(e) = map.get_mut(&name) else {
        return err(not_found());
    };
    let Some(i) = e.toxics.iter().position(|t| t.name == toxic) else {
        return err(ApiError::new(404, "toxic not found"));
    };
    match body_json(&b).and_then(|v| e.toxics[i].updated(&v)) {
        Ok(t) => {
            let v = t.to_json();
            e.toxics[i] = Arc::new(t);
            e.publish();
            ok(200, v)
        }
        Err(x) => err(x),
    }
}

async fn toxic_delete(State(s): S, Path((name, toxic)): Path<(String, String)>) -> Response {
    let mut map = s.proxies.lock().await;
    let Some(e) = map.get_mut(&name) else {
        return err(not_found());
    };
    let Some(i) = e.toxics.iter().position(|t| t.name == toxic) else {
        return err(ApiError::new(404, "toxic not found"));
    };
    e.toxics.remove(i);
    e.publish();
    StatusCode::NO_CONTENT.into_response()
}

impl Server {
    /// Names of all proxies.
    pub async fn names(&self) -> Vec<String> {
        self.proxies.lock().await.keys().cloned().collect()
    }

    /// Stops and removes every proxy (their connections close cleanly).
    pub async fn clear(&self) {
        let mut map = self.proxies.lock().await;
        for e in map.values_mut() {
            e.stop_wait().await;
        }
        map.clear();
    }
}
