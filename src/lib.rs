//! rdpdiag: a TLS/NLA-aware diagnostic proxy for Remote Desktop negotiation failures.
//!
//! The core (`wire`, `session`) is sans-IO: it never touches sockets, files or clocks.
//! `relay` (tokio) and `cli` are the I/O shell.

#[forbid(unsafe_code)]
#[warn(clippy::indexing_slicing)]
pub mod wire;

#[forbid(unsafe_code)]
#[warn(clippy::indexing_slicing)]
pub mod session;

#[forbid(unsafe_code)]
#[warn(clippy::indexing_slicing)]
pub mod capture;

#[forbid(unsafe_code)]
#[warn(clippy::indexing_slicing)]
pub mod record;

pub mod cli;
#[forbid(unsafe_code)]
#[warn(clippy::indexing_slicing)]
pub mod nla;
#[forbid(unsafe_code)]
#[warn(clippy::indexing_slicing)]
pub mod probe;
pub mod relay;
#[forbid(unsafe_code)]
pub mod report;

/// Simulated RDP hosts and clients, the scenario table and `rdpdiag demo` (I/O shell).
pub mod sim;
pub mod tls;
