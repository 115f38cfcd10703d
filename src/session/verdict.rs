//! The verdict a connection ends with.

use serde::Serialize;

use super::{CloseKind, Direction, Micros, Phase, Side};

/// Overall outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Healthy,
    Failed,
    Unknown,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Healthy => "healthy",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }
}

/// One piece of evidence: which bytes, which field, which value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// Direction of the bytes (none for transport facts such as a refused connect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<Direction>,
    /// Offset in that direction's byte stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// When it was seen.
    pub at: Micros,
    /// The field (spec name) or observation.
    pub field: String,
    /// Its value.
    pub value: String,
}

/// Facts about the connection that every verdict carries when they are known.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Facts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_protocols: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neg_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tls_versions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificate: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificate_problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_build: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// Application-data records seen after the TLS handshake (client, host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_records: Option<(u32, u32)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
}

/// How a connection ended and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub phase_reached: Phase,
    pub closed_by: Option<Side>,
    pub close_kind: Option<CloseKind>,
    /// Stable cause id (see [`super::causes`]).
    pub cause: &'static str,
    /// One readable sentence.
    pub summary: String,
    /// True when the cause was inferred from record sizes and timing rather than read.
    pub inferred: bool,
    pub evidence: Vec<Evidence>,
    /// Likely causes on the Windows side.
    pub likely_causes: Vec<String>,
    /// Remedies, in the order an admin should try them.
    pub remedies: Vec<String>,
    /// The rdpdiag experiment that confirms it.
    pub confirm_with: Vec<String>,
    pub facts: Facts,
    /// The experiment rdpdiag ran on this connection (`proxy --security`, `--fresh-cert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Experiment>,
}

/// What an experiment changed and what it proved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    /// `security`, `fresh_cert`, or `security+fresh_cert`.
    pub kind: String,
    /// requestedProtocols as the client sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_original: Option<String>,
    /// requestedProtocols as the host received it (absent when not rewritten).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_rewritten: Option<String>,
    /// What the host selected (or its RDP_NEG_FAILURE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_selected: Option<String>,
    /// How far the connection got.
    pub phase_reached: Phase,
    /// What became of the host's echo of requestedProtocols (SC_CORE.clientRequestedProtocols).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo: Option<String>,
    /// rdpdiag terminated TLS on both legs.
    pub tls_terminated: bool,
    /// Warnings and impossible requests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// One sentence: what the experiment proved.
    pub conclusion: String,
    /// `--nla-user`: both CredSSP legs rdpdiag ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nla: Option<super::NlaReport>,
}
