//! Test support: a network namespace removed on every exit path, and a way
//! to run code inside it from a thread.

#![allow(dead_code)]

use std::process::Command;

/// A named network namespace (`ip netns add`), deleted on drop, so that a
/// failing or panicking test still cleans up. Only namespaces this test
/// created are ever deleted.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `rsd-<pid>-<tag>` with loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!("rsd-{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip")
            .success();
        assert!(ok, "ip netns add {name} failed");
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let ok = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .status()
            .expect("run ip")
            .success();
        assert!(ok, "ip -n {} {args:?} failed", self.name);
    }

    /// Sets a per-namespace sysctl inside the namespace only, by writing
    /// `/proc/sys/...` from a thread that joined it (no `sysctl` binary
    /// needed; /proc/sys/net follows the writing thread's namespace).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let v = value.to_string();
        let r = self
            .spawn(move || std::fs::write(&path, v))
            .join()
            .expect("sysctl thread");
        assert!(
            r.is_ok(),
            "sysctl {key}={value} in {} failed: {r:?}",
            self.name
        );
    }

    /// Runs `f` on a new thread that has joined this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: valid fd for the duration of the call; only this thread moves.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The `rstscope` binary Cargo built for these tests.
pub fn rstscope_bin(_test: &str) -> Option<std::path::PathBuf> {
    Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_rstscope")))
}
