//! Simulated RDP peers on loopback: hosts and clients that fail (or succeed) the way real ones do.
//!
//! - [`host`]: a host that answers the X.224 Connection Request in a chosen way, serves TLS
//!   (rustls) with a chosen certificate or aborts / alerts / stalls at a chosen point, plays a
//!   CredSSP-shaped exchange with realistic record sizes that can fail at a chosen step, Early
//!   User Authorization, and MCS (clear under Standard RDP Security), then a session.
//! - [`client`]: a client that requests chosen protocols, refuses a selection it did not ask
//!   for (like xfreerdp), does TLS with chosen versions and certificate checks (rustls alert,
//!   or xfreerdp's "complete the handshake, then close_notify"), or sends a chosen alert; then
//!   plays its part and holds the session.
//! - [`certs`]: the test PKI (rcgen, RSA-2048, generated at runtime).
//! - [`scenarios`]: DESIGN.md's failure table as data, each with the verdict it must produce.
//! - [`demo`]: every scenario through the real proxy (`rdpdiag demo`).
//!
//! What each behaviour imitates is taken from `testbed/README.md` (real xrdp, FreeRDP and
//! xfreerdp on loopback) and the reference's failure taxonomy (§4).
//!
//! This is I/O shell code (tokio, sockets, clocks), not part of the sans-IO core.

pub mod certs;
pub mod client;
pub mod demo;
pub mod host;
mod io;
pub mod pdus;
pub mod scenarios;
pub mod targets;

pub use client::{ClientConfig, ClientEnd, ClientOutcome, ClientTls};
pub use host::{HostConfig, HostLog, HostTls, X224Answer};
pub use io::CloseStyle;
pub use scenarios::{Expect, Scenario};

/// Which TLS versions a simulated peer enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersions {
    /// TLS 1.2 only (the certificate travels in clear).
    Tls12,
    /// TLS 1.3 only.
    Tls13,
    /// Both (rustls prefers 1.3).
    #[default]
    Both,
}

impl TlsVersions {
    pub(crate) fn rustls(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static V12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        static V13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        match self {
            TlsVersions::Tls12 => &V12,
            TlsVersions::Tls13 => &V13,
            TlsVersions::Both => &BOTH,
        }
    }
}

/// Plaintext sizes of the CredSSP-shaped messages (reference §2.8.7; testbed (g) records
/// 110/179/444/112/131 bytes under TLS 1.3 are these plus 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredsspSizes {
    /// Client NEGOTIATE (C1), ≈ 60–90.
    pub c1: usize,
    /// Host CHALLENGE (S1), ≈ 160–300.
    pub s1: usize,
    /// Client AUTHENTICATE + pubKeyAuth (C2), ≈ 400–600.
    pub c2: usize,
    /// Host pubKeyAuth (S2), ≈ 60–100.
    pub s2: usize,
    /// Client TSCredentials (C3), ≈ 100–130.
    pub c3: usize,
}

impl Default for CredsspSizes {
    fn default() -> Self {
        Self {
            c1: 86,
            s1: 210,
            c2: 450,
            s2: 95,
            c3: 114,
        }
    }
}
