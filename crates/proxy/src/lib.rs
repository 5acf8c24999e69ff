//! `rstscope proxy`: a fault proxy that speaks Toxiproxy's HTTP API and
//! injects resets properly.
//!
//! - [`toxic`]: toxics, their JSON and validation;
//! - [`server`]: proxies, listeners and the HTTP API;
//! - `conn`: one connection (splice while clean, userspace copy while a
//!   toxic needs the bytes, RST only where a toxic fires);
//! - [`spawn`]: run a whole server in-process (for the lab and tests).

mod conn;
pub mod metrics;
pub mod server;
mod splice;
pub mod toxic;

pub use server::{parse_config, ProxyConfig, Server, VERSION};
pub use toxic::{parse_cli_toxic, ApiError, Kind, LimitMode, Stream, Toxic};

use rstscope_core::ResetEvent;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// Command-line arguments of `rstscope proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the Toxiproxy-compatible control API. Loopback unless you
    /// say otherwise.
    #[arg(long, default_value = "127.0.0.1:8474", value_name = "ADDR")]
    pub api: SocketAddr,
    /// Proxies to create at start: Toxiproxy's JSON array
    /// (`[{"name","listen","upstream","enabled"}]`), each may carry `toxics`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Listen address of a single proxy given on the command line.
    #[arg(long, value_name = "ADDR", requires = "upstream")]
    pub listen: Option<String>,
    /// Upstream address of the single proxy.
    #[arg(long, value_name = "ADDR", requires = "listen")]
    pub upstream: Option<String>,
    /// Name of the single proxy.
    #[arg(long, default_value = "proxy")]
    pub name: String,
    /// A toxic for the single proxy: `type,key=value,...` (attributes plus
    /// name, stream, toxicity) or a JSON object. Repeatable.
    #[arg(long, value_name = "TOXIC", requires = "listen")]
    pub toxic: Vec<String>,
    /// Seed for toxicity, jitter and slicer randomness, so runs repeat.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not print injected resets (JSON `ResetEvent` lines) on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Everything a server starts with.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// API address; `None` runs the proxies without an API.
    pub api: Option<SocketAddr>,
    /// Proxies to create.
    pub proxies: Vec<ProxyConfig>,
    /// Randomness seed (`None`: from the clock).
    pub seed: Option<u64>,
    /// Print injected resets on stderr.
    pub log_resets: bool,
}

/// Runs `rstscope proxy`.
pub fn run(args: Args) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rstscope proxy: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_inner(args: Args) -> anyhow::Result<()> {
    let mut proxies = Vec::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        proxies = parse_config(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
    }
    if let (Some(listen), Some(upstream)) = (&args.listen, &args.upstream) {
        let mut toxics: Vec<Toxic> = Vec::new();
        for t in &args.toxic {
            let t =
                parse_cli_toxic(t).map_err(|e| anyhow::anyhow!("--toxic {t:?}: {}", e.message))?;
            if toxics.iter().any(|x| x.name == t.name) {
                anyhow::bail!(
                    "--toxic: two toxics named {:?} (give one a name=...)",
                    t.name
                );
            }
            toxics.push(t);
        }
        proxies.push(ProxyConfig {
            name: args.name.clone(),
            listen: listen.clone(),
            upstream: upstream.clone(),
            enabled: true,
            toxics,
        });
    }
    raise_nofile();
    let cfg = Config {
        api: Some(args.api),
        proxies,
        seed: args.seed,
        log_resets: !args.quiet,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (server, api) = start(cfg).await?;
        if let Some(a) = api {
            eprintln!("rstscope proxy: API on http://{a} (Toxiproxy {VERSION})");
        }
        for (name, addr) in server.listening().await {
            eprintln!("rstscope proxy: proxy {name} listening on {addr}");
        }
        tokio::signal::ctrl_c().await?;
        eprintln!("rstscope proxy: interrupted, closing");
        Ok(())
    })
}

/// Creates the server and its proxies, binds the API (serving in the
/// background) and returns the bound API address.
pub async fn start(cfg: Config) -> anyhow::Result<(Arc<Server>, Option<SocketAddr>)> {
    let seed = cfg.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let server = Server::new(seed, cfg.log_resets);
    for p in cfg.proxies {
        let name = p.name.clone();
        server
            .add(p)
            .await
            .map_err(|e| anyhow::anyhow!("proxy {name}: {}", e.message))?;
    }
    let api = match cfg.api {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| anyhow::anyhow!("API address {a}: {e}"))?;
            let bound = l.local_addr()?;
            let router = server.router();
            tokio::spawn(async move {
                let _ = axum::serve(l, router).await;
            });
            Some(bound)
        }
        None => None,
    };
    Ok((server, api))
}

impl Server {
    /// Every running proxy's name and bound address.
    pub async fn listening(&self) -> Vec<(String, SocketAddr)> {
        let mut out = Vec::new();
        for name in self.names().await {
            if let Some(a) = self.listen_addr(&name).await {
                out.push((name, a));
            }
        }
        out
    }
}

/// A server running on its own thread and tokio runtime; dropping it (or
/// [`Handle::shutdown`]) stops everything.
///
/// Sockets are created by threads spawned from the calling thread, so a
/// caller that entered a network namespace (setns) gets its proxies there.
pub struct Handle {
    /// The API address, if one was asked for.
    pub api: Option<SocketAddr>,
    /// Name and bound address of each running proxy.
    pub proxies: Vec<(String, SocketAddr)>,
    server: Arc<Server>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// The bound address of proxy `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.proxies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }
    /// The resets injected so far (most recent 1000).
    pub fn events(&self) -> Vec<ResetEvent> {
        self.server.events.snapshot()
    }
    /// The server, for direct control without HTTP.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }
    /// Stops the server and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }
    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts a server on a new thread with its own runtime (2 workers).
pub fn spawn(cfg: Config) -> anyhow::Result<Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("rstscope-proxy".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!("tokio runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                match start(cfg).await {
                    Ok((server, api)) => {
                        let proxies = server.listening().await;
                        let _ = tx.send(Ok((server.clone(), api, proxies)));
                        let _ = stop_rx.await;
                        server.clear().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        })?;
    let (server, api, proxies) = rx
        .recv()
        .map_err(|_| anyhow::anyhow!("proxy thread died"))??;
    Ok(Handle {
        api,
        proxies,
        server,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit (and, with the
/// privilege, the hard limit to `fs.nr_open`): each proxied connection
/// holds two sockets and, while busy, a pipe.
pub fn raise_nofile() {
    let want: libc::rlim_t = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20);
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        let up = libc::rlimit {
            rlim_cur: want.max(r.rlim_max),
            rlim_max: want.max(r.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &up) != 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_cli_toxic, parse_config};

    #[test]
    fn file_and_argument_errors_do_not_speak_of_a_request_body() {
        let e = parse_config("[{\"name\":\"x\"").unwrap_err();
        assert!(
            e.to_json()["error"]
                .as_str()
                .unwrap()
                .starts_with("bad request body: "),
            "{e}"
        );
        assert!(e.message.starts_with("EOF while parsing"), "{}", e.message);
        let e = parse_config("{}").unwrap_err();
        assert_eq!(e.message, "expected a JSON array of proxies");
        let e = parse_cli_toxic("reset_peer,nosuch=1").unwrap_err();
        assert!(e.message.starts_with("unknown attribute"), "{}", e.message);
        let e = parse_config(r#"[{"name":"a","listen":"127.0.0.1:1","upstream":"127.0.0.1:2"},{"name":"a","listen":"127.0.0.1:3","upstream":"127.0.0.1:4"}]"#).unwrap_err();
        assert_eq!(e.message, "duplicate proxy name \"a\"");
        assert_eq!(e.to_json()["error"], "duplicate proxy name \"a\"");
    }
}
