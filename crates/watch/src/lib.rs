//! `rstscope watch`: every TCP reset this host sends or receives, live,
//! with the kernel's own reason, the TCP state, the process, and a cause id
//! of `CAUSES.md`.
//!
//! - [`mod@format`]: parser of tracefs `format` files (fields, reason/state tables).
//! - [`decode`]: pure decoder of raw tracepoint samples (6.10+ and older layouts).
//! - [`classify`]: kernel reason and state → cause id, with evidence.
//! - [`ftrace`]: private tracefs instance, per-CPU `trace_pipe_raw` pages (default reader).
//! - [`perf`]: `perf_event_open` per-CPU ring buffers (`--backend perf`).
//! - [`sockdiag`]: socket owners through sock_diag and /proc/PID/fd.
//! - [`watcher`]: [`Watcher`], the library API the CLI, the lab and the tests use.
//! - [`cli`]: `rstscope watch` itself ([`Args`], [`run`]).

pub mod classify;
pub mod cli;
pub mod decode;
pub mod format;
pub mod ftrace;
pub mod metrics;
pub mod perf;
pub mod sockdiag;
pub mod watcher;

#[cfg(test)]
mod fixtures;

pub use cli::{run, Args};
pub use watcher::{Backend, WatchConfig, WatchError, Watcher};
