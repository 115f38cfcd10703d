//! `report.txt`: the verdict, its evidence, the remedies and the commands to confirm, the
//! certificate, the timeline, how to open the capture, and what the bundle holds.

use std::fmt::Write as _;

use super::{
    Bundle, LossReason, certificate_summaries, decode_as_hint, event_label, failure_event,
    fmt_time, tshark_commands,
};
use crate::session::EventKind;

/// The readable report (names and addresses redacted when the bundle is).
pub fn render(b: &Bundle<'_>) -> String {
    let t = b.trace;
    let v = &t.verdict;
    let mut o = String::new();
    // Writing into a String cannot fail: the results are dropped with `ok()`.
    let title = format!("rdpdiag trace of connection #{}", t.id);
    writeln!(o, "{title}\n{}", "=".repeat(title.len())).ok();
    writeln!(
        o,
        "client {} -> rdpdiag {} -> host {} (target {})",
        t.client,
        t.listen,
        t.host
            .map_or_else(|| "not connected".to_owned(), |h| h.to_string()),
        t.target
    )
    .ok();
    writeln!(
        o,
        "started {}, lasted {:.3} s; {} B client->host, {} B host->client",
        t.started_at.clone(),
        t.duration.as_secs_f64(),
        t.bytes_client_to_host,
        t.bytes_host_to_client
    )
    .ok();

    section(&mut o, "Verdict");
    writeln!(o, "  {}: {}", v.outcome.name().to_uppercase(), v.cause).ok();
    let closed = match (v.closed_by, v.close_kind) {
        (Some(by), Some(kind)) => format!("closed by {} with {}", by.name(), kind.name()),
        (Some(by), None) => format!("closed by {}", by.name()),
        (None, Some(kind)) => format!("ended with {}", kind.name()),
        (None, None) => "close not seen".to_owned(),
    };
    writeln!(
        o,
        "  last phase reached: {}; {closed}",
        v.phase_reached.title()
    )
    .ok();
    if !v.summary.is_empty() {
        let inferred = if v.inferred {
            " (inferred from record sizes and timing)"
        } else {
            ""
        };
        writeln!(o, "  {}{inferred}", v.summary).ok();
    }

    if !v.evidence.is_empty() {
        section(&mut o, "Evidence");
        for e in &v.evidence {
            let place = match (e.dir, e.offset) {
                (Some(d), Some(off)) => format!("{} @{off}", d.arrow()),
                (Some(d), None) => d.arrow().to_owned(),
                (None, Some(off)) => format!("@{off}"),
                (None, None) => "tcp".to_owned(),
            };
            writeln!(o, "  {} {place}  {} = {}", fmt_time(e.at), e.field, e.value).ok();
        }
    }
    let facts = serde_json::to_value(&v.facts).ok();
    if let Some(serde_json::Value::Object(map)) = facts
        && !map.is_empty()
    {
        section(&mut o, "Facts");
        for (k, val) in map {
            let val = match val {
                serde_json::Value::String(s) => s,
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            writeln!(o, "  {k}: {val}").ok();
        }
    }
    list(
        &mut o,
        "Likely causes on the Windows side",
        &v.likely_causes,
        "-",
    );
    if !v.remedies.is_empty() {
        section(&mut o, "Remedies, in the order to try them");
        for (i, r) in v.remedies.iter().enumerate() {
            writeln!(o, "  {}. {r}", i + 1).ok();
        }
    }
    list(&mut o, "Confirm with", &v.confirm_with, "$");

    let certs = certificate_summaries(b);
    if !certs.is_empty() {
        section(&mut o, "Host certificate (host-cert.pem)");
        for (i, (c, problems)) in certs.iter().enumerate() {
            let role = if i == 0 { "leaf" } else { "chain" };
            writeln!(o, "  [{i}] {role}: {}", c.one_line()).ok();
            if !c.sans.is_empty() {
                writeln!(o, "      names: {}", c.sans.join(", ")).ok();
            }
            let eku = if c.eku_present {
                c.ekus.join(", ")
            } else {
                "none (any purpose)".to_owned()
            };
            writeln!(o, "      EKU: {eku}").ok();
            writeln!(
                o,
                "      SHA-1 thumbprint {}  SHA-256 {}",
                c.sha1_fingerprint, c.sha256_fingerprint
            )
            .ok();
            for p in problems {
                writeln!(o, "      ! {p}").ok();
            }
        }
    }

    section(&mut o, "Timeline");
    let failure = failure_event(t);
    for (i, e) in t.events.iter().enumerate() {
        if let EventKind::Phase { .. } = e.kind {
            writeln!(o, "  {:>14}  -- {} --", fmt_time(e.at), event_label(e)).ok();
            continue;
        }
        let place = match (e.dir, e.offset) {
            (Some(d), Some(off)) => format!("{} @{off}", d.arrow()),
            (Some(d), None) => d.arrow().to_owned(),
            _ => String::new(),
        };
        let mark = if failure == Some(i) {
            "  <== failure point"
        } else {
            ""
        };
        writeln!(
            o,
            "  {:>14}  {:<14} {}{mark}",
            fmt_time(e.at),
            place,
            event_label(e)
        )
        .ok();
    }

    section(&mut o, "Opening capture.pcapng");
    if let Some(err) = &b.contents.capture_error {
        writeln!(o, "  capture.pcapng could not be written: {err}").ok();
    } else {
        writeln!(
            o,
            "  {} packets on {} interface(s):",
            b.contents.packets,
            b.contents.interfaces.len()
        )
        .ok();
        for i in &b.contents.interfaces {
            writeln!(o, "    - {i}").ok();
        }
        writeln!(
            o,
            "  The packets are synthetic (rdpdiag relays byte streams): the bytes and times are\n  \
             real, the TCP headers are made up around them."
        )
        .ok();
        writeln!(o, "  {}.", decode_as_hint(t)).ok();
        for c in tshark_commands(t) {
            writeln!(o, "  $ {c}").ok();
        }
    }
    for l in &t.losses {
        let why = match l.reason {
            LossReason::QueueFull => "the recording queue was full (the relay never waits for it)",
            LossReason::RecordLimit => "past the recording limit (--record-limit)",
        };
        writeln!(
            o,
            "  NOT RECORDED: {} B {} on the {} leg from offset {} at {}: {why}",
            l.len,
            l.dir.arrow(),
            l.leg.name(),
            l.offset,
            fmt_time(l.at)
        )
        .ok();
    }

    section(&mut o, "What this bundle holds");
    for line in notice(b) {
        writeln!(o, "  {line}").ok();
    }
    b.redactor.text(&o)
}

fn section(o: &mut String, title: &str) {
    writeln!(o, "\n{title}\n{}", "-".repeat(title.len())).ok();
}

fn list(o: &mut String, title: &str, items: &[String], bullet: &str) {
    if items.is_empty() {
        return;
    }
    section(o, title);
    for i in items {
        writeln!(o, "  {bullet} {i}").ok();
    }
}

/// Plain statements of what personal data and secrets the bundle holds (the same in both
/// reports).
pub fn notice(b: &Bundle<'_>) -> Vec<String> {
    let c = &b.contents;
    let mut out = Vec::new();
    if c.secrets {
        out.push(
            "SECRETS: capture.pcapng embeds the TLS session keys (a Decryption Secrets Block). \
             With this file anyone can decrypt everything that crossed TLS, including the \
             CredSSP (NLA) exchange: the NTLM or Kerberos messages with the user and domain \
             names and the user's encrypted credentials. The file is readable by its owner \
             only; share it only with someone you would trust with those. To share it without \
             the keys: editcap --discard-all-secrets capture.pcapng shareable.pcapng."
                .to_owned(),
        );
    } else if c.secrets_withheld {
        out.push(
            "No secrets: a TLS key log was available but is not written (--no-secrets or \
             --redact); the TLS payload stays encrypted in the capture."
                .to_owned(),
        );
    } else {
        out.push(
            "No secrets: rdpdiag did not terminate TLS, so it has no keys; whatever crossed \
             TLS stays encrypted in the capture."
                .to_owned(),
        );
    }
    if c.redacted {
        out.push(
            "Redacted: user, host, domain and certificate names and IP addresses are replaced \
             by tokens (user-1, host-1, domain-1, org-1, 10.255.0.1) consistently in every \
             file. In the capture the replacements keep their lengths (padded with '-'), so \
             the packets still dissect; certificate signatures no longer verify. Kept: \
             loopback addresses, ports, times, certificate serial numbers and fingerprints \
             (of the original certificate: they identify it on the host)."
                .to_owned(),
        );
    } else {
        out.push(
            "Personal data (not redacted; re-record with --redact to replace it with tokens):"
                .to_owned(),
        );
        for p in &c.personal {
            out.push(format!("  - {p}"));
        }
    }
    out
}
