//! `events.jsonl`: a header line with `schema_version` and the connection's metadata, then
//! every session event, one JSON object per line, in order.
//!
//! ```text
//! {"schema_version":1,"kind":"rdpdiag.trace","id":7,"client":"192.0.2.10:50412",...}
//! {"at":0,"phase":"tcp_connect","event":"tcp_connected"}
//! {"at":812,"dir":"c2s","offset":0,"phase":"x224","event":"connection_request","pdu":{...},"len":47}
//! ```
//!
//! `at` is microseconds since the client connection was accepted (`started_unix_micros` in the
//! header), `dir` `c2s`/`s2c`, `offset` the byte offset in that direction's stream.

use serde::Serialize;

use super::{Bundle, Close, Connect, Loss, SCHEMA_VERSION};

/// The first line.
#[derive(Debug, Serialize)]
struct Header<'a> {
    schema_version: u32,
    kind: &'static str,
    generator: String,
    id: u64,
    client: String,
    listen: String,
    target: &'a str,
    host: Option<String>,
    proxy_local: Option<String>,
    started_at: String,
    started_unix_micros: i64,
    duration_us: u64,
    /// `same`: both legs carried the same bytes; `different`: rdpdiag terminated TLS.
    legs: &'static str,
    connect: &'a Connect,
    closes: &'a [Close],
    bytes_client_to_host: u64,
    bytes_host_to_client: u64,
    /// Bytes that crossed the relay but are not in capture.pcapng.
    losses: &'a [Loss],
    redacted: bool,
    /// capture.pcapng embeds TLS keys (a Decryption Secrets Block).
    secrets_embedded: bool,
    events: usize,
}

/// The file's bytes.
pub fn events(b: &Bundle<'_>) -> Vec<u8> {
    let t = b.trace;
    let header = Header {
        schema_version: SCHEMA_VERSION,
        kind: "rdpdiag.trace",
        generator: format!("rdpdiag {}", env!("CARGO_PKG_VERSION")),
        id: t.id,
        client: t.client.to_string(),
        listen: t.listen.to_string(),
        target: &t.target,
        host: t.host.map(|h| h.to_string()),
        proxy_local: t.proxy_local.map(|h| h.to_string()),
        started_at: t.started_at.clone(),
        started_unix_micros: t.started_unix_micros,
        duration_us: t.duration.0,
        legs: if t.legs_differ() { "different" } else { "same" },
        connect: &t.connect,
        closes: &t.closes,
        bytes_client_to_host: t.bytes_client_to_host,
        bytes_host_to_client: t.bytes_host_to_client,
        losses: &t.losses,
        redacted: b.contents.redacted,
        secrets_embedded: b.contents.secrets,
        events: t.events.len(),
    };
    let mut out = String::new();
    push_line(&mut out, &header, b);
    for e in &t.events {
        push_line(&mut out, e, b);
    }
    out.into_bytes()
}

fn push_line(out: &mut String, value: &impl Serialize, b: &Bundle<'_>) {
    let line = serde_json::to_string(value).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("unserializable: {e}") }).to_string()
    });
    out.push_str(&b.redactor.text(&line));
    out.push('\n');
}
