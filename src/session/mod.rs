//! The diagnosis core: per-direction framing → events → phase machine → [`Verdict`].
//!
//! Drivers (the proxy, `analyze`, `probe`, tests) feed it the same way:
//! [`Session::feed`] with the bytes of one direction and a timestamp, [`Session::on_close`] /
//! [`Session::on_connect_result`] for what the transport saw, [`Session::tick`] to let time pass.
//! Time is passed in as [`Micros`] since the start of the connection; this module never reads a
//! clock, a socket or a file.

pub mod causes;
pub mod events;
mod framer;
mod machine;
pub mod verdict;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use causes::{CAUSES, Cause, CauseId};
pub use events::{Event, EventKind};
pub use machine::{
    Echo, ExperimentSetup, HostTls, MAX_EVENTS, NlaLeg, NlaReport, Session, SessionConfig,
    TlsLegError,
};
pub use verdict::{Evidence, Experiment, Facts, Outcome, Verdict};

/// Microseconds since the start of the connection (the driver's clock, passed in).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub u64);

impl Micros {
    pub const ZERO: Micros = Micros(0);

    pub fn from_secs_f64(s: f64) -> Self {
        // Saturating float → int conversion (Rust's `as` saturates); negative and NaN become 0.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Micros((s * 1e6).max(0.0) as u64)
    }

    pub fn from_millis(ms: u64) -> Self {
        Micros(ms.saturating_mul(1000))
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    pub fn saturating_sub(self, other: Micros) -> Micros {
        Micros(self.0.saturating_sub(other.0))
    }
}

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Client → host.
    #[serde(rename = "c2s")]
    ClientToHost,
    /// Host → client.
    #[serde(rename = "s2c")]
    HostToClient,
}

impl Direction {
    pub fn sender(self) -> Side {
        match self {
            Direction::ClientToHost => Side::Client,
            Direction::HostToClient => Side::Host,
        }
    }

    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToHost => Direction::HostToClient,
            Direction::HostToClient => Direction::ClientToHost,
        }
    }

    pub fn arrow(self) -> &'static str {
        match self {
            Direction::ClientToHost => "C->S",
            Direction::HostToClient => "S->C",
        }
    }
}

/// A party of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Client,
    Host,
    /// rdpdiag itself (stall timeout, inspection cap, shutdown).
    Proxy,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Host => "host",
            Side::Proxy => "proxy",
        }
    }
}

/// How a connection (or one direction of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseKind {
    /// Orderly TCP close.
    Fin,
    /// TCP reset (or an I/O error that ended the stream).
    Rst,
    /// A TLS alert followed by a close.
    Alert,
    /// No progress before a deadline.
    Timeout,
    /// The TCP connection to the host could not be made.
    ConnectError,
}

impl CloseKind {
    pub fn name(self) -> &'static str {
        match self {
            CloseKind::Fin => "fin",
            CloseKind::Rst => "rst",
            CloseKind::Alert => "alert",
            CloseKind::Timeout => "timeout",
            CloseKind::ConnectError => "connect_error",
        }
    }
}

/// Why the TCP connection to the host failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum ConnectFailure {
    /// RST to our SYN: nothing listens, or a firewall rejects.
    Refused,
    /// No answer before the connect timeout.
    Timeout,
    /// Host or network unreachable (ICMP), name resolution, anything else.
    Other(String),
}

/// Connection establishment phases, in order (MS-RDPBCGR 1.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    TcpConnect,
    X224,
    TlsHandshake,
    Credssp,
    EarlyUserAuth,
    Mcs,
    Licensing,
    Active,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::TcpConnect => "tcp_connect",
            Phase::X224 => "x224",
            Phase::TlsHandshake => "tls_handshake",
            Phase::Credssp => "credssp",
            Phase::EarlyUserAuth => "early_user_auth",
            Phase::Mcs => "mcs",
            Phase::Licensing => "licensing",
            Phase::Active => "active",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Phase::TcpConnect => "TCP connect",
            Phase::X224 => "X.224 negotiation",
            Phase::TlsHandshake => "TLS handshake",
            Phase::Credssp => "CredSSP (NLA)",
            Phase::EarlyUserAuth => "Early User Authorization",
            Phase::Mcs => "MCS/GCC connect",
            Phase::Licensing => "licensing / capabilities",
            Phase::Active => "active session",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
