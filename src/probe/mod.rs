//! `rdpdiag probe HOST[:PORT]`: ask the host itself what it accepts, and which clients it will
//! fail.
//!
//! Split in two, like the rest of rdpdiag:
//!
//! * sans-IO planners and interpreters — [`nego`], [`legacy_tls`], [`tls`], [`ntlm`],
//!   [`rdp_sec`], [`verdict`]: what to send on each connection, what the answer means, and
//!   which client configurations fail. Each exchange is a [`Dialogue`]: it gives the bytes to
//!   send, is fed the bytes that come back, and is told how the reading ended. Unit tests drive
//!   them with bytes only.
//! * a thin tokio [`driver`]: connects (one TCP connection per question, each step bounded by a
//!   timeout), runs dialogues with limited concurrency, performs the rustls handshakes, reads
//!   the clock once and assembles the [`ProbeReport`].
//!
//! Nothing here prints: `cli/probe.rs` renders the report.

pub mod driver;
pub mod legacy_tls;
pub mod nego;
pub mod ntlm;
pub mod rdp_sec;
pub mod tls;
pub mod verdict;

use serde::Serialize;

use crate::session::ConnectFailure;

pub use driver::{ProbeOptions, run};

/// The default RDP port.
pub const DEFAULT_PORT: u16 = 3389;

/// The `Cookie: mstshash=` identifier the probe sends, so a host's logs name the tool.
pub const COOKIE: &str = "rdpdiag";

/// How reading an answer stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum End {
    /// The host closed its side (FIN, or a TLS close).
    Closed,
    /// The host reset the connection (RST, or an I/O error that ended the stream).
    Reset,
    /// Nothing (more) came within the timeout.
    Timeout,
    /// Another I/O error.
    Error(String),
}

impl End {
    /// `closed`, `reset`, `timeout`, or the error.
    pub fn describe(&self) -> String {
        match self {
            End::Closed => "the host closed the connection".to_owned(),
            End::Reset => "the host reset the connection".to_owned(),
            End::Timeout => "no answer before the timeout".to_owned(),
            End::Error(e) => format!("I/O error: {e}"),
        }
    }
}

/// What a [`Dialogue`] wants after a chunk of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    Read,
    /// Send these bytes, then read again (a new step, with a new timeout).
    Send(Vec<u8>),
    /// Finished: the driver closes the connection (or upgrades it, see [`driver`]).
    Done,
}

/// One sans-IO exchange over one connection.
pub trait Dialogue {
    /// The bytes to send first.
    fn opening(&mut self) -> Vec<u8>;
    /// The next chunk received from the host.
    fn on_data(&mut self, data: &[u8]) -> Step;
    /// Reading ended before the dialogue was done.
    fn on_end(&mut self, end: End);
    /// The TCP connection could not be made (nothing was sent).
    fn on_connect_failed(&mut self, failure: ConnectFailure);
}

/// A host and port as the user gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The host name or IP literal as given (without IPv6 brackets): the name a client would
    /// use, hence the name the certificate must carry.
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a `HOST[:PORT]` argument is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("empty host")]
    EmptyHost,
    #[error("invalid port {0:?} (expected 1-65535)")]
    BadPort(String),
    #[error("unterminated IPv6 literal {0:?} (expected [ADDR]:PORT)")]
    BadBracket(String),
}

impl std::str::FromStr for Target {
    type Err = TargetError;

    /// `host`, `host:port`, `1.2.3.4:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| TargetError::BadPort(p.to_owned()))
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| TargetError::BadBracket(s.to_owned()))?;
            match after.strip_prefix(':') {
                Some(p) => (h, port(p)?),
                None if after.is_empty() => (h, DEFAULT_PORT),
                None => return Err(TargetError::BadBracket(s.to_owned())),
            }
        } else if s.matches(':').count() > 1 {
            (s, DEFAULT_PORT)
        } else if let Some((h, p)) = s.split_once(':') {
            (h, port(p)?)
        } else {
            (s, DEFAULT_PORT)
        };
        if host.is_empty() {
            return Err(TargetError::EmptyHost);
        }
        Ok(Target {
            host: host.to_owned(),
            port,
        })
    }
}

/// Was the host reachable at all?
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Reachability {
    /// At least one TCP connection was accepted.
    Reachable { address: String },
    /// The name did not resolve, or every connection failed.
    Unreachable(ConnectFailure),
}

impl Reachability {
    pub fn is_reachable(&self) -> bool {
        matches!(self, Reachability::Reachable { .. })
    }
}

/// The cause id of a failed TCP connect.
pub fn connect_cause(f: &ConnectFailure) -> &'static str {
    match f {
        ConnectFailure::Refused => "tcp.connect_refused",
        ConnectFailure::Timeout => "tcp.connect_timeout",
        ConnectFailure::Other(_) => "tcp.connect_failed",
    }
}

/// A readable sentence for a failed TCP connect.
pub fn describe_connect_failure(f: &ConnectFailure) -> String {
    match f {
        ConnectFailure::Refused => {
            "connection refused (nothing listens, or a firewall rejects)".to_owned()
        }
        ConnectFailure::Timeout => {
            "no answer to the TCP connection (host down or filtered)".to_owned()
        }
        ConnectFailure::Other(e) => format!("connection failed: {e}"),
    }
}

/// Everything the probe found, and the verdict. Serialized as the `--json` object.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub target: Target,
    /// This machine's clock when the probe started (unix seconds).
    pub started_unix: i64,
    /// Wall time of the whole probe.
    pub elapsed_ms: u64,
    /// TCP connections made.
    pub connections: u32,
    pub reachability: Reachability,
    /// One line per connection request.
    pub protocols: Vec<nego::NegoResult>,
    pub protocol_summary: nego::NegoSummary,
    /// TLS versions, when the host selected a TLS-based protocol for some request.
    pub tls: Option<tls::TlsSummary>,
    pub certificate: Option<tls::CertReport>,
    pub ntlm: Option<ntlm::NtlmReport>,
    pub rdp_security: Option<rdp_sec::RdpSecSummary>,
    pub verdict: verdict::ProbeVerdict,
}

impl ProbeReport {
    /// 0: nothing fails for a current client; 1: something does; 2: the host cannot be
    /// reached at all.
    pub fn exit_code(&self) -> u8 {
        self.verdict.exit_code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |s: &str| s.parse::<Target>();
        assert_eq!(
            t("host").unwrap(),
            Target {
                host: "host".into(),
                port: 3389
            }
        );
        assert_eq!(t("10.0.0.1:3390").unwrap().port, 3390);
        assert_eq!(
            t("[::1]:25000").unwrap(),
            Target {
                host: "::1".into(),
                port: 25000
            }
        );
        assert_eq!(t("[::1]").unwrap().port, 3389);
        assert_eq!(t("fe80::1").unwrap().host, "fe80::1");
        assert_eq!(t("h:0"), Err(TargetError::BadPort("0".into())));
        assert_eq!(t("h:x"), Err(TargetError::BadPort("x".into())));
        assert_eq!(t(":3389"), Err(TargetError::EmptyHost));
        assert!(matches!(t("[::1"), Err(TargetError::BadBracket(_))));
        assert_eq!(t("[::1]:25000").unwrap().to_string(), "[::1]:25000");
    }
}
