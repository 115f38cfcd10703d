//! What the proxy says about one connection when it ends: a [`ConnectionReport`] (the JSON
//! object of `--json`) and its readable rendering.
//!
//! No I/O here: the relay fills the report, `cli/` prints it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::session::{Event, Verdict};

/// One connection, as seen by the proxy, with the session's verdict.
///
/// Serialised flat: the verdict's fields (`outcome`, `phase_reached`, `closed_by`, `close_kind`,
/// `cause`, `summary`, `inferred`, `evidence`, `likely_causes`, `remedies`, `confirm_with`,
/// `facts`) sit beside the transport fields.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// Connection number since the proxy started, from 1.
    pub id: u64,
    /// The client's address (`ip:port`).
    pub client: String,
    /// The target as given on the command line.
    pub target: String,
    /// The host address the proxy connected to, when the connection was made.
    pub host_addr: Option<String>,
    /// When the client connection was accepted (RFC 3339, UTC).
    pub started_at: String,
    /// From accept to the end of the last direction.
    pub duration_ms: u64,
    /// Bytes delivered to the host.
    pub bytes_client_to_host: u64,
    /// Bytes delivered to the client.
    pub bytes_host_to_client: u64,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The session's event stream (not part of the JSON line: `record/` writes event logs).
    #[serde(skip)]
    pub events: Vec<Event>,
    /// SSLKEYLOGFILE lines of both TLS legs when rdpdiag terminated TLS (`--fresh-cert`): for
    /// `--keylog` and the recorder's Decryption Secrets Block. Secrets: never serialised.
    #[serde(skip)]
    pub tls_keylog: Option<String>,
}

/// A short readable block for one connection, ending with a newline.
///
/// ```text
/// #1 127.0.0.1:50412 -> rds01: FAILED nego.hybrid_required_by_server (x224 reached, closed by host with fin)
///   The host requires NLA ...
///   evidence:
///     S->C @11 RDP_NEG_FAILURE.failureCode = HYBRID_REQUIRED_BY_SERVER (0x05)
///   likely causes:
///     - ...
///   remedies:
///     1. ...
///   confirm with:
///     $ rdpdiag proxy --security nla --target rds01
///   19 B client->host, 19 B host->client in 12 ms (host 10.0.0.5:3389, started 2026-11-21T19:43:43Z)
/// ```
pub fn render_text(r: &ConnectionReport) -> String {
    let v = &r.verdict;
    let mut out = String::new();
    let closed = match (v.closed_by, v.close_kind) {
        (Some(by), Some(kind)) => format!("closed by {} with {}", by.name(), kind.name()),
        (Some(by), None) => format!("closed by {}", by.name()),
        (None, Some(kind)) => format!("ended with {}", kind.name()),
        (None, None) => "close not seen".to_owned(),
    };
    // Writing into a String cannot fail; the results are ignored through `ok()` below.
    writeln!(
        out,
        "#{} {} -> {}: {} {} ({} reached, {})",
        r.id,
        r.client,
        r.target,
        v.outcome.name().to_uppercase(),
        v.cause,
        v.phase_reached.name(),
        closed
    )
    .ok();
    if !v.summary.is_empty() {
        let inferred = if v.inferred { " (inferred)" } else { "" };
        writeln!(out, "  {}{inferred}", v.summary).ok();
    }
    let facts = fact_lines(v);
    if !facts.is_empty() {
        writeln!(out, "  facts: {}", facts.join("; ")).ok();
    }
    if !v.evidence.is_empty() {
        writeln!(out, "  evidence:").ok();
        for e in &v.evidence {
            let place = match (e.dir, e.offset) {
                (Some(d), Some(o)) => format!("{} @{o}", d.arrow()),
                (Some(d), None) => d.arrow().to_owned(),
                (None, Some(o)) => format!("@{o}"),
                (None, None) => "tcp".to_owned(),
            };
            writeln!(out, "    {place} {} = {}", e.field, e.value).ok();
        }
    }
    if let Some(x) = &v.experiment {
        writeln!(out, "  experiment ({}):", x.kind).ok();
        match (&x.offered_original, &x.offered_rewritten) {
            (Some(o), Some(r)) => {
                writeln!(out, "    offered: {r} (rewritten from the client's {o})").ok()
            }
            (Some(o), None) => {
                writeln!(out, "    offered: {o} (the client's request, unchanged)").ok()
            }
            _ => None,
        };
        if let Some(s) = &x.host_selected {
            writeln!(out, "    host selected: {s}").ok();
        }
        writeln!(out, "    got to: {}", x.phase_reached.title()).ok();
        if let Some(e) = &x.echo {
            writeln!(out, "    echo: {e}").ok();
        }
        if x.tls_terminated {
            writeln!(out, "    TLS terminated by rdpdiag on both legs").ok();
        }
        for n in &x.notes {
            writeln!(out, "    note: {n}").ok();
        }
        if let Some(n) = &x.nla {
            writeln!(out, "    NLA brokered by rdpdiag as {}:", n.account).ok();
            writeln!(
                out,
                "      client leg (rdpdiag as CredSSP server): {}",
                nla_leg(&n.client_leg)
            )
            .ok();
            writeln!(
                out,
                "      host leg (rdpdiag as CredSSP client): {}",
                nla_leg(&n.host_leg)
            )
            .ok();
        }
        writeln!(out, "    conclusion: {}", x.conclusion).ok();
    }
    if !v.likely_causes.is_empty() {
        writeln!(out, "  likely causes:").ok();
        for c in &v.likely_causes {
            writeln!(out, "    - {c}").ok();
        }
    }
    if !v.remedies.is_empty() {
        writeln!(out, "  remedies:").ok();
        for (i, m) in v.remedies.iter().enumerate() {
            writeln!(out, "    {}. {m}", i + 1).ok();
        }
    }
    if !v.confirm_with.is_empty() {
        writeln!(out, "  confirm with:").ok();
        for c in &v.confirm_with {
            writeln!(out, "    $ {c}").ok();
        }
    }
    let host = r.host_addr.as_deref().unwrap_or("not connected");
    writeln!(
        out,
        "  {} B client->host, {} B host->client in {} ms (host {host}, started {})",
        r.bytes_client_to_host, r.bytes_host_to_client, r.duration_ms, r.started_at
    )
    .ok();
    out
}

/// The facts worth one line in the readable block.
fn fact_lines(v: &Verdict) -> Vec<String> {
    let f = &v.facts;
    let named: [(&str, &Option<String>); 6] = [
        ("cookie", &f.cookie),
        ("requested", &f.requested_protocols),
        ("selected", &f.selected_protocol),
        ("neg failure", &f.neg_failure),
        ("tls", &f.tls_version),
        ("cipher", &f.tls_cipher),
    ];
    let mut lines: Vec<String> = named
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name} {v}")))
        .collect();
    if !f.certificate_problems.is_empty() {
        lines.push(format!(
            "certificate problems: {}",
            f.certificate_problems.join(", ")
        ));
    }
    lines
}

/// One CredSSP leg in a line: `CredSSP v6; NTLM 0x...; ...; result`.
pub(crate) fn nla_leg(l: &crate::session::NlaLeg) -> String {
    let mut parts = Vec::new();
    if let Some(v) = l.credssp_version {
        parts.push(format!("CredSSP v{v}"));
    }
    if let Some(f) = &l.ntlm_flags {
        parts.push(format!("NTLM flags {f}"));
    }
    let names: Vec<&str> = [
        &l.netbios_domain_name,
        &l.netbios_computer_name,
        &l.dns_computer_name,
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
    .collect();
    if !names.is_empty() {
        parts.push(format!("names {}", names.join(" / ")));
    }
    if let Some(o) = &l.os_version {
        parts.push(format!("OS {o}"));
    }
    if let Some(s) = l.clock_skew_secs {
        parts.push(format!("clock {s:+} s from rdpdiag's"));
    }
    if let Some(u) = &l.logon {
        parts.push(format!("logon {u}"));
    }
    if let Some(w) = &l.workstation {
        parts.push(format!("workstation {w}"));
    }
    if let Some(e) = &l.error_code {
        parts.push(format!("errorCode {e}"));
    }
    if let Some(e) = &l.early_user_auth {
        parts.push(format!("Early User Authorization {e}"));
    }
    parts.push(l.result.clone());
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{
        CloseKind, Direction, Evidence, Facts, Micros, Outcome, Phase, Side, Verdict,
    };

    fn sample() -> ConnectionReport {
        ConnectionReport {
            id: 7,
            client: "127.0.0.1:50412".into(),
            target: "rds01".into(),
            host_addr: Some("10.0.0.5:3389".into()),
            started_at: "2026-11-21T19:43:43Z".into(),
            duration_ms: 12,
            bytes_client_to_host: 43,
            bytes_host_to_client: 19,
            verdict: Verdict {
                outcome: Outcome::Failed,
                phase_reached: Phase::X224,
                closed_by: Some(Side::Host),
                close_kind: Some(CloseKind::Fin),
                cause: "nego.hybrid_required_by_server",
                summary: "The host requires NLA".into(),
                inferred: false,
                evidence: vec![Evidence {
                    dir: Some(Direction::HostToClient),
                    offset: Some(11),
                    at: Micros(900),
                    field: "RDP_NEG_FAILURE.failureCode".into(),
                    value: "HYBRID_REQUIRED_BY_SERVER (0x05)".into(),
                }],
                likely_causes: vec!["NLA required by policy".into()],
                remedies: vec!["enable NLA on the client".into(), "second".into()],
                confirm_with: vec!["rdpdiag proxy --security nla --target rds01".into()],
                facts: Facts {
                    cookie: Some("mstshash=alice".into()),
                    ..Facts::default()
                },
                experiment: None,
            },
            events: Vec::new(),
            tls_keylog: None,
        }
    }

    #[test]
    fn text_block_has_headline_evidence_and_numbered_remedies() {
        let text = render_text(&sample());
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "#7 127.0.0.1:50412 -> rds01: FAILED nego.hybrid_required_by_server \
             (x224 reached, closed by host with fin)"
        );
        assert!(
            text.contains("    S->C @11 RDP_NEG_FAILURE.failureCode = HYBRID_REQUIRED_BY_SERVER")
        );
        assert!(text.contains("    1. enable NLA on the client\n    2. second\n"));
        assert!(text.contains("    $ rdpdiag proxy --security nla --target rds01"));
        assert!(text.contains("cookie mstshash=alice"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn json_is_flat_with_the_contract_fields() {
        let json = serde_json::to_value(sample()).unwrap();
        let obj = json.as_object().unwrap();
        for key in [
            "id",
            "client",
            "target",
            "host_addr",
            "started_at",
            "duration_ms",
            "bytes_client_to_host",
            "bytes_host_to_client",
            "outcome",
            "phase_reached",
            "closed_by",
            "close_kind",
            "cause",
            "evidence",
            "remedies",
            "confirm_with",
        ] {
            assert!(obj.contains_key(key), "missing {key}");
        }
        assert!(!obj.contains_key("events"));
        assert_eq!(obj["outcome"], "failed");
        assert_eq!(obj["closed_by"], "host");
        assert_eq!(obj["close_kind"], "fin");
        assert_eq!(obj["evidence"][0]["dir"], "s2c");
    }
}
