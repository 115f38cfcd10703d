//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, nothing fetched).
//!
//! The verdict's headline, then a ladder diagram client ↔ rdpdiag ↔ host as inline SVG (each
//! message an arrow, the phases as bands, the failure point in red), then the verdict's
//! evidence, the certificate(s), the remedies, the commands that confirm it, how to open the
//! capture and what the bundle holds. Every text goes through the redactor, then is
//! HTML-escaped.

use std::fmt::Write as _;

use super::{
    Bundle, Lane, LossReason, certificate_summaries, decode_as_hint, event_label, event_lane,
    failure_event, fmt_time, report_txt, tshark_commands,
};
use crate::session::{Event, EventKind, Outcome, Phase};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1000px;color:#1d2330;line-height:1.45;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #d0d5dd;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#555}.verdict{padding:.8em 1em;border-radius:6px;border-left:6px solid #888;background:#f4f5f7}
.verdict.failed{border-color:#c62828;background:#fdecea}.verdict.healthy{border-color:#2e7d32;background:#e8f5e9}
.verdict .cause{font-weight:600;font-size:1.1em}code,pre{font-family:ui-monospace,Consolas,monospace;font-size:.92em}
pre{background:#f4f5f7;padding:.6em .8em;border-radius:4px;overflow-x:auto}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #e3e6ea;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f5f7}#evidence td:nth-child(-n+2){white-space:nowrap}.problem{color:#c62828}.notice{padding:.6em 1em;border-radius:6px;background:#fff8e1;border-left:6px solid #f9a825}
.notice.secret{background:#fdecea;border-color:#c62828}svg{max-width:100%;height:auto;border:1px solid #e3e6ea;border-radius:4px}
svg text{font-family:system-ui,'Segoe UI',sans-serif;font-size:12px}svg .time{fill:#666;font-size:11px}
svg .lane-title{font-weight:600;font-size:13px}svg .phase-title{fill:#555;font-style:italic;font-size:11px}
svg .msg{stroke:#37474f;stroke-width:1.4}svg .close{stroke-dasharray:5 3}svg .fail{stroke:#c62828;stroke-width:2.4}
svg .fail-text{fill:#c62828;font-weight:600}svg .lifeline{stroke:#90a4ae;stroke-width:1;stroke-dasharray:2 3}
";

/// Geometry of the ladder.
const W: u32 = 960;
const X_TIME: u32 = 8;
const X_CLIENT: u32 = 210;
const X_PROXY: u32 = 480;
const X_HOST: u32 = 750;
const TOP: u32 = 78;
const ROW: u32 = 26;
/// Most rows drawn; the rest are in events.jsonl.
const MAX_ROWS: usize = 400;
const MAX_LABEL: usize = 92;

/// One drawn row.
struct Row {
    at: String,
    lane: Lane,
    label: String,
    detail: String,
    phase: Phase,
    close: bool,
    failure: bool,
}

/// Consecutive encrypted records with the same role are one row (`×N`).
fn rows(b: &Bundle<'_>) -> (Vec<Row>, usize) {
    let t = b.trace;
    let failure = failure_event(t);
    let mut rows: Vec<Row> = Vec::new();
    let mut run: Option<(String, u32, u64)> = None;
    for (i, e) in t.events.iter().enumerate() {
        if let EventKind::Phase { .. } = e.kind {
            continue;
        }
        let lane = event_lane(e);
        let is_failure = failure == Some(i);
        if let EventKind::TlsRecord { role, len, .. } = &e.kind
            && !is_failure
        {
            let key = format!("{lane:?}{}", role.as_deref().unwrap_or("application data"));
            if let (Some((k, n, total)), Some(last)) = (&mut run, rows.last_mut())
                && *k == key
                && last.lane == lane
            {
                *n += 1;
                *total += u64::from(*len);
                last.label = format!(
                    "{} ×{n} ({total} B, TLS)",
                    role.as_deref().unwrap_or("TLS application data")
                );
                continue;
            }
            run = Some((key, 1, u64::from(*len)));
        } else {
            run = None;
        }
        rows.push(row(e, lane, is_failure));
    }
    let hidden = rows.len().saturating_sub(MAX_ROWS);
    rows.truncate(MAX_ROWS);
    (rows, hidden)
}

fn row(e: &Event, lane: Lane, failure: bool) -> Row {
    let place = match (e.dir, e.offset) {
        (Some(d), Some(o)) => format!("{} stream offset {o}", d.arrow()),
        _ => String::new(),
    };
    Row {
        at: fmt_time(e.at),
        lane,
        label: event_label(e),
        detail: format!("{} {} {place}", fmt_time(e.at), e.phase.title()),
        phase: e.phase,
        close: matches!(e.kind, EventKind::Closed { .. }),
        failure,
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The ladder as inline SVG.
fn ladder(b: &Bundle<'_>) -> String {
    let t = b.trace;
    let txt = |s: &str| escape(&b.redactor.text(s));
    let (rows, hidden) = rows(b);
    let n = u32::try_from(rows.len() + usize::from(hidden > 0)).unwrap_or(u32::MAX);
    let height = TOP.saturating_add(n.saturating_mul(ROW)).saturating_add(24);
    let mut s = String::new();
    // Writing into a String cannot fail: the results are dropped with `ok()`.
    writeln!(
        s,
        "<svg id=\"ladder-svg\" viewBox=\"0 0 {W} {height}\" width=\"{W}\" height=\"{height}\" \
         role=\"img\" aria-label=\"ladder diagram: client, rdpdiag and host\">"
    )
    .ok();
    s.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" \
         fill=\"#37474f\"/></marker><marker id=\"arrow-fail\" viewBox=\"0 0 10 10\" refX=\"10\" \
         refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path \
         d=\"M0,0 L10,5 L0,10 z\" fill=\"#c62828\"/></marker></defs>\n",
    );

    // Phase bands.
    let mut start = 0usize;
    let mut band = 0u32;
    while let Some(first) = rows.get(start) {
        let end = rows
            .iter()
            .skip(start)
            .position(|r| r.phase != first.phase)
            .map_or(rows.len(), |p| start + p);
        let y = TOP + u32::try_from(start).unwrap_or(0) * ROW - ROW / 2 - 4;
        let h = u32::try_from(end - start).unwrap_or(0) * ROW;
        let fill = if band.is_multiple_of(2) {
            "#f3f6fb"
        } else {
            "#fbf7ef"
        };
        writeln!(
            s,
            "<g class=\"phase\"><rect x=\"0\" y=\"{y}\" width=\"{W}\" height=\"{h}\" fill=\"{fill}\"/>\
             <text class=\"phase-title\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></g>",
            W - 6,
            y + 12,
            escape(first.phase.title())
        )
        .ok();
        band += 1;
        start = end;
    }

    // Lanes.
    let host = t.host.map_or_else(|| t.target.clone(), |h| h.to_string());
    for (x, title, addr) in [
        (X_CLIENT, "client", t.client.to_string()),
        (X_PROXY, "rdpdiag", t.listen.to_string()),
        (X_HOST, "host", host),
    ] {
        writeln!(
            s,
            "<g class=\"lane\"><rect x=\"{}\" y=\"8\" width=\"180\" height=\"40\" rx=\"5\" \
             fill=\"#eceff1\" stroke=\"#90a4ae\"/><text class=\"lane-title\" x=\"{x}\" y=\"25\" \
             text-anchor=\"middle\">{title}</text><text x=\"{x}\" y=\"41\" \
             text-anchor=\"middle\">{}</text><line class=\"lifeline\" x1=\"{x}\" y1=\"48\" \
             x2=\"{x}\" y2=\"{}\"/></g>",
            x - 90,
            txt(&addr),
            height - 8
        )
        .ok();
    }

    for (i, r) in rows.iter().enumerate() {
        let y = TOP + u32::try_from(i).unwrap_or(0) * ROW;
        let mut class = String::from("msg");
        if r.close {
            class.push_str(" close");
        }
        if r.failure {
            class.push_str(" fail");
        }
        let marker = if r.failure { "arrow-fail" } else { "arrow" };
        let (x1, x2) = match r.lane {
            Lane::ClientToHost => (X_CLIENT, X_HOST),
            Lane::HostToClient => (X_HOST, X_CLIENT),
            Lane::ProxyToHost => (X_PROXY, X_HOST),
            Lane::Proxy => (X_PROXY, X_PROXY),
        };
        let label = txt(&cut(&r.label, MAX_LABEL));
        let text_class = if r.failure {
            " class=\"fail-text\""
        } else {
            ""
        };
        writeln!(
            s,
            "<g class=\"row{}\"><title>{}</title><text class=\"time\" x=\"{X_TIME}\" y=\"{}\">{}</text>",
            if r.failure { " failure" } else { "" },
            txt(&format!("{} — {}", r.label, r.detail)),
            y + 4,
            escape(&r.at)
        )
        .ok();
        if x1 == x2 {
            // Something rdpdiag saw or did: a diamond on its lifeline, the text beside it.
            writeln!(
                s,
                "<path d=\"M{x1},{} l6,6 l-6,6 l-6,-6 z\" fill=\"{}\"/>\
                 <text{text_class} x=\"{}\" y=\"{}\">{label}</text>",
                y - 6,
                if r.failure { "#c62828" } else { "#607d8b" },
                x1 + 12,
                y + 4
            )
            .ok();
        } else {
            writeln!(
                s,
                "<line class=\"{class}\" x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" \
                 marker-end=\"url(#{marker})\"/>",
            )
            .ok();
            if matches!(r.lane, Lane::ClientToHost | Lane::HostToClient) {
                // Relayed through rdpdiag.
                writeln!(
                    s,
                    "<circle cx=\"{X_PROXY}\" cy=\"{y}\" r=\"2.5\" fill=\"#37474f\"/>"
                )
                .ok();
            }
            writeln!(
                s,
                "<text{text_class} x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}{label}</text>",
                (x1 + x2) / 2,
                y - 5,
                if r.failure { "✖ " } else { "" }
            )
            .ok();
        }
        s.push_str("</g>\n");
    }
    if hidden > 0 {
        let y = TOP + u32::try_from(rows.len()).unwrap_or(0) * ROW;
        writeln!(
            s,
            "<text x=\"{X_PROXY}\" y=\"{y}\" text-anchor=\"middle\">… {hidden} more events in events.jsonl</text>"
        )
        .ok();
    }
    s.push_str("</svg>\n");
    s
}

/// The whole page.
pub fn render(b: &Bundle<'_>) -> String {
    let t = b.trace;
    let v = &t.verdict;
    let txt = |s: &str| escape(&b.redactor.text(s));
    let mut h = String::new();
    let outcome_class = match v.outcome {
        Outcome::Healthy => "healthy",
        Outcome::Failed => "failed",
        Outcome::Unknown => "unknown",
    };
    writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>rdpdiag: connection #{} {} {}</title>\n<style>{CSS}</style>\n</head>\n<body>",
        t.id,
        escape(&v.outcome.name().to_uppercase()),
        escape(v.cause)
    )
    .ok();
    writeln!(h, "<h1>rdpdiag trace of connection #{}</h1>", t.id).ok();
    writeln!(
        h,
        "<p class=\"meta\">client <code>{}</code> → rdpdiag <code>{}</code> → host <code>{}</code> \
         (target <code>{}</code>)<br>started {}, lasted {:.3} s; {} B client→host, {} B host→client</p>",
        txt(&t.client.to_string()),
        txt(&t.listen.to_string()),
        txt(&t.host.map_or_else(|| "not connected".to_owned(), |a| a.to_string())),
        txt(&t.target),
        escape(&t.started_at.clone()),
        t.duration.as_secs_f64(),
        t.bytes_client_to_host,
        t.bytes_host_to_client
    )
    .ok();

    // Headline.
    let closed = match (v.closed_by, v.close_kind) {
        (Some(by), Some(kind)) => format!("closed by {} with {}", by.name(), kind.name()),
        (Some(by), None) => format!("closed by {}", by.name()),
        (None, Some(kind)) => format!("ended with {}", kind.name()),
        (None, None) => "close not seen".to_owned(),
    };
    writeln!(
        h,
        "<section id=\"verdict\" class=\"verdict {outcome_class}\"><div class=\"cause\">{}: \
         <code>{}</code></div><p>{}{}</p><p>Last phase reached: <b>{}</b>; {}.</p></section>",
        escape(&v.outcome.name().to_uppercase()),
        escape(v.cause),
        txt(&v.summary),
        if v.inferred {
            " <i>(inferred from record sizes and timing)</i>"
        } else {
            ""
        },
        escape(v.phase_reached.title()),
        escape(&closed)
    )
    .ok();

    writeln!(
        h,
        "<section id=\"ladder\"><h2>Ladder</h2><p class=\"meta\">Each arrow is a message or a \
         close as rdpdiag relayed it (the dot on rdpdiag's line); bands are the connection \
         phases; the failure point is red. Times since the client connected.</p>"
    )
    .ok();
    h.push_str(&ladder(b));
    h.push_str("</section>\n");

    if !v.evidence.is_empty() {
        h.push_str(
            "<section id=\"evidence\"><h2>Evidence</h2><table><tr><th>time</th><th>where</th>\
             <th>field</th><th>value</th></tr>\n",
        );
        for e in &v.evidence {
            let place = match (e.dir, e.offset) {
                (Some(d), Some(o)) => format!("{} @{o}", d.arrow()),
                (Some(d), None) => d.arrow().to_owned(),
                (None, Some(o)) => format!("@{o}"),
                (None, None) => "tcp".to_owned(),
            };
            writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&fmt_time(e.at)),
                escape(&place),
                txt(&e.field),
                txt(&e.value)
            )
            .ok();
        }
        h.push_str("</table></section>\n");
    }

    if let Some(x) = &v.experiment {
        h.push_str("<section id=\"experiment\"><h2>Experiment</h2><table>\n");
        let mut rows: Vec<(String, String)> = vec![("kind".to_owned(), x.kind.clone())];
        if let Some(o) = &x.offered_original {
            rows.push(("client offered".to_owned(), o.clone()));
        }
        if let Some(r) = &x.offered_rewritten {
            rows.push(("rdpdiag offered".to_owned(), r.clone()));
        }
        if let Some(sel) = &x.host_selected {
            rows.push(("host selected".to_owned(), sel.clone()));
        }
        rows.push(("got to".to_owned(), x.phase_reached.title().to_owned()));
        for n in &x.notes {
            rows.push(("note".to_owned(), n.clone()));
        }
        if let Some(n) = &x.nla {
            rows.push(("NLA account".to_owned(), n.account.clone()));
            rows.push((
                "client leg (rdpdiag as CredSSP server)".to_owned(),
                crate::report::nla_leg(&n.client_leg),
            ));
            rows.push((
                "host leg (rdpdiag as CredSSP client)".to_owned(),
                crate::report::nla_leg(&n.host_leg),
            ));
        }
        rows.push(("conclusion".to_owned(), x.conclusion.clone()));
        for (k, val) in rows {
            writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", txt(&k), txt(&val)).ok();
        }
        h.push_str("</table></section>\n");
    }

    let certs = certificate_summaries(b);
    if !certs.is_empty() {
        h.push_str("<section id=\"certificates\"><h2>Host certificate</h2>\n");
        for (i, (c, problems)) in certs.iter().enumerate() {
            let role = if i == 0 { "leaf" } else { "chain" };
            writeln!(h, "<h3>[{i}] {role}</h3><table>").ok();
            let validity = c.one_line();
            let eku = if c.eku_present {
                c.ekus.join(", ")
            } else {
                "none (any purpose)".to_owned()
            };
            let key = format!("{} {}", c.key_type, c.key_bits);
            let rows: [(&str, &str); 9] = [
                ("subject", &c.subject),
                ("issuer", &c.issuer),
                ("summary", &validity),
                ("names", &c.sans.join(", ")),
                ("key", &key),
                ("signature", &c.signature_algorithm),
                ("EKU", &eku),
                ("SHA-1 thumbprint", &c.sha1_fingerprint),
                ("SHA-256", &c.sha256_fingerprint),
            ];
            for (k, val) in rows {
                writeln!(h, "<tr><th>{k}</th><td>{}</td></tr>", txt(val)).ok();
            }
            for p in problems {
                writeln!(
                    h,
                    "<tr><th>problem</th><td class=\"problem\">{}</td></tr>",
                    txt(p)
                )
                .ok();
            }
            h.push_str("</table>\n");
        }
        h.push_str("<p>The chain is in <code>host-cert.pem</code>.</p></section>\n");
    }

    if !v.remedies.is_empty() || !v.likely_causes.is_empty() {
        h.push_str("<section id=\"remedies\"><h2>Remedies</h2>");
        if !v.likely_causes.is_empty() {
            h.push_str("<h3>Likely causes on the Windows side</h3><ul>");
            for c in &v.likely_causes {
                writeln!(h, "<li>{}</li>", txt(c)).ok();
            }
            h.push_str("</ul>");
        }
        if !v.remedies.is_empty() {
            h.push_str("<h3>In the order to try them</h3><ol>");
            for r in &v.remedies {
                writeln!(h, "<li>{}</li>", txt(r)).ok();
            }
            h.push_str("</ol>");
        }
        h.push_str("</section>\n");
    }
    if !v.confirm_with.is_empty() {
        h.push_str("<section id=\"confirm\"><h2>Confirm with</h2><pre>");
        for c in &v.confirm_with {
            writeln!(h, "$ {}", txt(c)).ok();
        }
        h.push_str("</pre></section>\n");
    }

    h.push_str("<section id=\"capture\"><h2>Opening the capture</h2>");
    if let Some(err) = &b.contents.capture_error {
        writeln!(
            h,
            "<p class=\"problem\">capture.pcapng could not be written: {}</p>",
            txt(err)
        )
        .ok();
    } else {
        writeln!(
            h,
            "<p><code>capture.pcapng</code>: {} packets on {} interface(s): {}. The bytes and \
             times are real; the TCP headers are made up around them. {}.</p><pre>",
            b.contents.packets,
            b.contents.interfaces.len(),
            b.contents
                .interfaces
                .iter()
                .map(|i| txt(i))
                .collect::<Vec<_>>()
                .join("; "),
            txt(&decode_as_hint(t))
        )
        .ok();
        for c in tshark_commands(t) {
            writeln!(h, "$ {}", escape(&c)).ok();
        }
        h.push_str("</pre>");
    }
    for l in &t.losses {
        let why = match l.reason {
            LossReason::QueueFull => "the recording queue was full (the relay never waits for it)",
            LossReason::RecordLimit => "past the recording limit (--record-limit)",
        };
        writeln!(
            h,
            "<p class=\"problem\">Not recorded: {} B {} on the {} leg from offset {} at {}: {}</p>",
            l.len,
            escape(l.dir.arrow()),
            l.leg.name(),
            l.offset,
            escape(&fmt_time(l.at)),
            why
        )
        .ok();
    }
    h.push_str("</section>\n");

    h.push_str("<section id=\"bundle\"><h2>What this bundle holds</h2>");
    let secret = b.contents.secrets;
    let notice = report_txt::notice(b);
    let mut items = notice.iter().peekable();
    while let Some(line) = items.next() {
        let class = if secret && line.starts_with("SECRETS") {
            "notice secret"
        } else {
            "notice"
        };
        writeln!(h, "<p class=\"{class}\">{}</p>", txt(line)).ok();
        let mut sub = Vec::new();
        while let Some(next) = items.peek() {
            match next.strip_prefix("  - ") {
                Some(item) => {
                    sub.push(item.to_owned());
                    items.next();
                }
                None => break,
            }
        }
        if !sub.is_empty() {
            h.push_str("<ul>");
            for item in sub {
                writeln!(h, "<li>{}</li>", txt(&item)).ok();
            }
            h.push_str("</ul>");
        }
    }
    h.push_str("</section>\n");
    writeln!(
        h,
        "<p class=\"meta\">Written by rdpdiag {}. The decoded events are in \
         <code>events.jsonl</code>, the verdict in <code>verdict.json</code>.</p>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    )
    .ok();
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn cuts_long_labels() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
