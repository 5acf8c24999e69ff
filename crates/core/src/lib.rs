//! rstscope's deterministic core.
//!
//! Nothing in this crate touches the operating system: no files, no sockets,
//! no clocks. Every input arrives as bytes and every time arrives as a
//! [`Timestamp`] argument, so the same input always gives the same verdict.
//! Adapters around it (capture files, kernel tracepoints, sockets, `/proc`,
//! HTTP) live in the other crates of the workspace.
//!
//! - [`cause`]: the shared vocabulary of `CAUSES.md`: cause ids, `from`, `sender`,
//!   and the one knowledge table every part uses for explanations.
//! - [`event`]: [`ResetEvent`], the one reset-event type every part produces
//!   and consumes (capture analysis, kernel watch, lab, proxy).
//! - [`wire`]: zero-copy packet views (link layers, IPv4, IPv6, TCP).
//! - [`flow`]: the TCP connection tracker (Zeek-compatible `conn_state` and `history`).
//! - [`classify`]: the reset classifier: who sent each RST and why.
//! - [`text`]: fast address text (`ip:port`) for reports.

pub mod cause;
pub mod classify;
pub mod event;
pub mod flow;
pub mod text;
pub mod time;
pub mod wire;

pub use cause::{Cause, CauseInfo, Sender, Side, Verdict};
pub use event::{Direction, ResetEvent, Source};
pub use time::Timestamp;
