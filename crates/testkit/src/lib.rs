//! Test support shared by rstscope's crates.
//!
//! Tests that need root, network namespaces or tracefs call [`privileged`]
//! first. In CI (`CI=true`) a missing privilege is a failure, never a skip;
//! elsewhere the test is skipped with a message that says why.

use std::path::Path;

/// Whether the process runs with effective uid 0.
pub fn is_root() -> bool {
    // /proc/self/status "Uid: real effective saved fs"
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether we are running in CI (`CI=true`), where privileged tests must run.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Gate for a test that needs root (network namespaces, nftables, tracefs,
/// perf events). Returns `true` when the test may run. Without the privilege
/// it panics in CI and prints a skip message naming `test` elsewhere.
pub fn privileged(test: &str) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (effective uid 0)");
    }
    if !Path::new("/proc/self/ns/net").exists() {
        missing.push("network namespace support");
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "SKIPPED {test}: needs {}; run the tests as root (`sudo scripts/test`) to include it",
        missing.join(" and ")
    );
    if in_ci() {
        panic!("{msg} (CI=true requires it)");
    }
    eprintln!("{msg}");
    false
}

/// Whether an executable is on `PATH`.
pub fn have_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Gate for a test that needs an external program (e.g. `nft`, `tcpdump`).
/// `scripts/test` installs them; in CI a missing one is a failure.
pub fn require_program(test: &str, name: &str) -> bool {
    if have_program(name) {
        return true;
    }
    let msg = format!("SKIPPED {test}: `{name}` is not installed (`scripts/setup` installs it)");
    if in_ci() {
        panic!("{msg} (CI=true requires it)");
    }
    eprintln!("{msg}");
    false
}
