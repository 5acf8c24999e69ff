//! The lab's network: client —veth— router —veth— server, each in its own
//! network namespace (`rsl-<pid>-<n>-{cli,rtr,srv}`), and the cleanup that
//! removes them on every exit path (Drop, Ctrl-C, panic unwinding).

use anyhow::{bail, Context, Result};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Everything the lab created and must remove: namespaces and child PIDs.
#[derive(Default)]
struct Registry {
    netns: Vec<String>,
    pids: Vec<u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    netns: Vec::new(),
    pids: Vec::new(),
});
static SEQ: AtomicU32 = AtomicU32::new(0);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remembers a child process so that Ctrl-C kills it.
pub fn register_pid(pid: u32) {
    registry().pids.push(pid);
}

/// Forgets a child process that was reaped.
pub fn unregister_pid(pid: u32) {
    registry().pids.retain(|p| *p != pid);
}

/// Kills the registered children (SIGKILL, by PID) and deletes the
/// registered namespaces. Used by the Ctrl-C handler; Drop guards do the
/// same for their own resources.
pub fn cleanup_all() {
    let mut r = registry();
    for pid in r.pids.drain(..) {
        // SAFETY: kill(2) on a PID this process spawned and has not reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    for ns in r.netns.drain(..) {
        let _ = quiet(Command::new("ip").args(["netns", "del", &ns]));
    }
}

/// Installs a Ctrl-C/SIGTERM handler that cleans up and exits with 130.
pub fn install_signal_cleanup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            eprintln!("rstscope lab: interrupted, removing namespaces and processes");
            cleanup_all();
            std::process::exit(130);
        });
    });
}

fn quiet(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    cmd.stdin(Stdio::null()).output()
}

/// Runs a program, failing with its stderr.
pub fn run_cmd(prog: &str, args: &[&str]) -> Result<()> {
    let out = quiet(Command::new(prog).args(args)).with_context(|| {
        format!("cannot run `{prog}` (is it installed? scripts/setup installs it)")
    })?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a program with `input` on stdin.
pub fn run_cmd_input(prog: &str, args: &[&str], input: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("cannot run `{prog}` (is it installed? scripts/setup installs it)")
        })?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed: {}\ninput:\n{input}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `f` on a fresh thread that first joined network namespace `ns`
/// (or stays in the current one when `ns` is `None`). Sockets created by
/// `f` belong to that namespace for their whole life, whatever thread uses
/// them afterwards.
pub fn in_ns<T: Send + 'static>(
    ns: Option<&str>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = ns.map(str::to_string);
    std::thread::spawn(move || -> Result<T> {
        if let Some(ns) = ns {
            let file = std::fs::File::open(format!("/run/netns/{ns}"))
                .with_context(|| format!("namespace {ns}"))?;
            // SAFETY: setns(2) on a valid namespace fd; it changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                bail!("setns({ns}): {}", std::io::Error::last_os_error());
            }
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// Writes a sysctl of the namespace `ns` (never the host's).
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let value = value.to_string();
    in_ns(Some(ns), move || {
        std::fs::write(&path, value).with_context(|| format!("write {path}"))
    })
}

/// Addresses of one side of the lab.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    /// IPv4.
    pub v4: IpAddr,
    /// IPv6.
    pub v6: IpAddr,
}

/// Client addresses (198.18.0.0/15 benchmarking range, ULA fd00::/8).
pub const CLIENT: Addrs = Addrs {
    v4: IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 2)),
    v6: IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0x5253, 1, 0, 0, 0, 0, 2)),
};
/// Server addresses.
pub const SERVER: Addrs = Addrs {
    v4: IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 2, 2)),
    v6: IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0x5253, 2, 0, 0, 0, 0, 2)),
};
/// The router's address on the client's link (the client's gateway).
pub const ROUTER_CLI_V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 1));
/// The router's address on the server's link (the NAT address).
pub const ROUTER_SRV_V4: &str = "198.18.2.1";

/// The three namespaces of one scenario, removed on Drop.
pub struct Topology {
    /// Client namespace name.
    pub cli: String,
    /// Router namespace name.
    pub rtr: String,
    /// Server namespace name.
    pub srv: String,
    /// The namespaces this process created (removed on Drop).
    created: Vec<String>,
}

impl Topology {
    /// Creates client —veth— router —veth— server with IPv4 and IPv6,
    /// forwarding on in the router only.
    pub fn create() -> Result<Topology> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("rsl-{}-{n}", std::process::id());
        let mut t = Topology {
            cli: format!("{base}-cli"),
            rtr: format!("{base}-rtr"),
            srv: format!("{base}-srv"),
            created: Vec::new(),
        };
        for ns in [t.cli.clone(), t.rtr.clone(), t.srv.clone()] {
            // Only what this process created is ever removed.
            run_cmd("ip", &["netns", "add", &ns])?;
            registry().netns.push(ns.clone());
            t.created.push(ns.clone());
            let ns = &ns;
            // No duplicate address detection on the lab's links: it would
            // hold IPv6 traffic for a second after the links come up.
            // Containers often disable IPv6 by default; the lab's own
            // namespaces need it.
            sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "0")?;
            sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "0")?;
            sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")?;
            sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")?;
        }
        let (c, r, s) = (t.cli.as_str(), t.rtr.as_str(), t.srv.as_str());
        let ip = |args: &[&str]| run_cmd("ip", args);
        ip(&[
            "-n", r, "link", "add", "c", "type", "veth", "peer", "name", "eth0", "netns", c,
        ])?;
        ip(&[
            "-n", r, "link", "add", "s", "type", "veth", "peer", "name", "eth0", "netns", s,
        ])?;
        for (ns, dev, a4, a6) in [
            (c, "eth0", "198.18.1.2/24", "fd00:5253:1::2/64"),
            (r, "c", "198.18.1.1/24", "fd00:5253:1::1/64"),
            (r, "s", "198.18.2.1/24", "fd00:5253:2::1/64"),
            (s, "eth0", "198.18.2.2/24", "fd00:5253:2::2/64"),
        ] {
            ip(&["-n", ns, "addr", "add", a4, "dev", dev])?;
            ip(&["-n", ns, "addr", "add", a6, "dev", dev, "nodad"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        for ns in [c, r, s] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", c, "route", "add", "default", "via", "198.18.1.1"])?;
        ip(&[
            "-n",
            c,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:5253:1::1",
        ])?;
        ip(&["-n", s, "route", "add", "default", "via", "198.18.2.1"])?;
        ip(&[
            "-n",
            s,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:5253:2::1",
        ])?;
        sysctl(r, "net.ipv4.ip_forward", "1")?;
        sysctl(r, "net.ipv6.conf.all.forwarding", "1")?;
        // The kernel's link watcher attaches the veths' queues (and sets
        // them operationally up) up to a second after carrier; packets sent
        // before are dropped. Wait for it, so no scenario starts with a loss.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for (ns, dev) in [(c, "eth0"), (r, "c"), (r, "s"), (s, "eth0")] {
            loop {
                let out =
                    quiet(Command::new("ip").args(["-n", ns, "-o", "link", "show", "dev", dev]))?;
                if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                    break;
                }
                if std::time::Instant::now() > until {
                    bail!("{dev} in {ns} did not come up");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Ok(t)
    }

    /// Loads an nftables ruleset inside namespace `ns`.
    pub fn nft(&self, ns: &str, ruleset: &str) -> Result<()> {
        run_cmd_input("ip", &["netns", "exec", ns, "nft", "-f", "-"], ruleset)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.drain(..) {
            let _ = quiet(Command::new("ip").args(["netns", "del", &ns]));
            registry().netns.retain(|n| *n != ns);
        }
    }
}

/// A child process killed by PID on Drop (and by the Ctrl-C handler).
pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    /// Spawns `sleep 60` holding `fd` as its standard input: a real process
    /// that owns the socket, so SIGKILL makes the kernel close it.
    pub fn hold_fd(fd: OwnedFd) -> Result<ChildGuard> {
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::from(fd))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn sleep")?;
        register_pid(child.id());
        Ok(ChildGuard(Some(child)))
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.0.take() {
            c.kill()?;
            c.wait()?;
            unregister_pid(c.id());
        }
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Names of `rsl-` namespaces of this process that still exist (for tests).
pub fn leftover_namespaces() -> Vec<String> {
    let prefix = format!("rsl-{}-", std::process::id());
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}
