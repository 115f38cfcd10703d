//! Trace bundles (`proxy --record DIR`): what a support engineer opens without help.
//!
//! Sans-IO: [`write_bundle`] turns a [`Trace`] (one connection's bytes per leg, closes, the
//! session's events and verdict, optionally the TLS key log) into named files in memory; the
//! relay's writer (`relay/tap.rs`) puts them on disk. No sockets, files or clocks here: the
//! start time is passed in as unix microseconds.
//!
//! ```text
//! DIR/20261121T194343Z-192.0.2.10_50412-7/
//!   capture.pcapng   synthetic Ethernet/IP/TCP per leg, real times and endpoints, evidence
//!                    comments, a Decryption Secrets Block when TLS keys are known (0600)
//!   events.jsonl     {"schema_version":1,...} then one decoded event per line
//!   verdict.json     the object `proxy --json` prints
//!   report.txt       verdict, evidence, remedies, confirm commands, certificate, what the
//!                    bundle holds
//!   report.html      the same with a ladder diagram (inline SVG), self-contained
//!   host-cert.pem    the host's certificate chain, when one was seen
//! ```

pub mod jsonl;
pub mod pcapng;
pub mod redact;
pub mod report_html;
pub mod report_txt;

use core::net::SocketAddr;

use bytes::Bytes;
use serde::Serialize;

use crate::report::ConnectionReport;
use crate::session::{
    CloseKind, ConnectFailure, Direction, Event, EventKind, Micros, Side, Verdict,
};
use crate::wire::{mcs, tls, tpkt, x224, x509};
use redact::{NameKind, Redactor, RedactorBuilder};

/// Version of the `events.jsonl` layout (its first line says it).
pub const SCHEMA_VERSION: u32 = 1;

/// The hint every report prints: Wireshark dissects port 3389 as TPKT and does not switch to TLS
/// after the X.224 exchange (checked with tshark 4.0).
pub const DECODE_AS_HINT: &str = "Wireshark: Decode As... TCP port PORT as TLS to read the TLS handshake (and, with the embedded keys, the decrypted CredSSP and MCS); as TPKT to read the X.224 negotiation fields";

/// One of the two TCP connections rdpdiag stands between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    /// Client ↔ rdpdiag.
    Client,
    /// rdpdiag ↔ host.
    Host,
}

impl Leg {
    pub fn name(self) -> &'static str {
        match self {
            Leg::Client => "client",
            Leg::Host => "host",
        }
    }
}

/// Bytes read from one socket in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub at: Micros,
    pub dir: Direction,
    pub data: Bytes,
}

/// A side closed its connection (FIN), reset it, or rdpdiag ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Close {
    pub at: Micros,
    pub side: Side,
    pub kind: CloseKind,
}

/// How the connection to the host went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Connect {
    /// Not known (a trace built from a capture, or the client gave up first).
    Unknown,
    Connected {
        at: Micros,
    },
    Failed {
        at: Micros,
        failure: ConnectFailure,
    },
}

/// Why bytes are missing from the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReason {
    /// The recording queue was full: the relay went on without waiting for the writer.
    QueueFull,
    /// Past the per-connection recording limit (`--record-limit`): counted only.
    RecordLimit,
}

/// Bytes that crossed the relay but are not in the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Loss {
    pub leg: Leg,
    pub dir: Direction,
    /// When the first missing chunk was read.
    pub at: Micros,
    /// Offset of the first missing byte in that leg's direction.
    pub offset: u64,
    pub len: u64,
    pub reason: LossReason,
}

/// Everything recorded about one connection.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Connection number since the proxy started.
    pub id: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// Where rdpdiag accepted the client (the client leg's server end).
    pub listen: SocketAddr,
    /// The target as given on the command line.
    pub target: String,
    /// The host's address, once known.
    pub host: Option<SocketAddr>,
    /// rdpdiag's own address on the host leg, when known.
    pub proxy_local: Option<SocketAddr>,
    /// When the client connection was accepted, unix microseconds (UTC).
    pub started_unix_micros: i64,
    /// The same instant as the proxy reported it (`started_at` of `--json`, RFC 3339); see
    /// [`rfc3339`].
    pub started_at: String,
    /// From accept to the end of the last direction.
    pub duration: Micros,
    /// What crossed the client leg, in order.
    pub client_leg: Vec<Chunk>,
    /// What crossed the host leg when it differs (TLS terminated by rdpdiag); `None`: the same
    /// bytes as the client leg.
    pub host_leg: Option<Vec<Chunk>>,
    pub connect: Connect,
    /// Closes, in the order they happened (at most one per side).
    pub closes: Vec<Close>,
    pub losses: Vec<Loss>,
    /// SSLKEYLOGFILE lines for the TLS sessions rdpdiag terminated.
    pub key_log: Option<String>,
    pub events: Vec<Event>,
    pub verdict: Verdict,
    /// Bytes delivered each way (the relay's counts, which include what was not recorded).
    pub bytes_client_to_host: u64,
    pub bytes_host_to_client: u64,
}

impl Trace {
    /// The chunks of one leg (the client leg's when the legs carry the same bytes).
    pub fn leg(&self, leg: Leg) -> &[Chunk] {
        match (leg, &self.host_leg) {
            (Leg::Host, Some(h)) => h,
            _ => &self.client_leg,
        }
    }

    /// True when the legs carry different bytes.
    pub fn legs_differ(&self) -> bool {
        self.host_leg.is_some()
    }

    /// One direction of a leg as one contiguous stream (lost bytes are not in it).
    pub fn stream(&self, leg: Leg, dir: Direction) -> Vec<u8> {
        let mut out = Vec::new();
        for c in self.leg(leg).iter().filter(|c| c.dir == dir) {
            out.extend_from_slice(&c.data);
        }
        out
    }
}

/// The closes the session recorded, in order.
pub fn closes_from_events(events: &[Event]) -> Vec<Close> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Closed { side, kind } => Some(Close {
                at: e.at,
                side,
                kind,
            }),
            EventKind::Stalled { .. } => Some(Close {
                at: e.at,
                side: Side::Proxy,
                kind: CloseKind::Timeout,
            }),
            _ => None,
        })
        .collect()
}

/// How the connection to the host went, from the session's events.
pub fn connect_from_events(events: &[Event]) -> Connect {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TcpConnected => Some(Connect::Connected { at: e.at }),
            EventKind::ConnectFailed { failure } => Some(Connect::Failed {
                at: e.at,
                failure: failure.clone(),
            }),
            _ => None,
        })
        .unwrap_or(Connect::Unknown)
}

/// What to put in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Replace personal names and addresses everywhere; implies no secrets.
    pub redact: bool,
    /// Embed the TLS key log (a Decryption Secrets Block) when there is one.
    pub secrets: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            redact: false,
            secrets: true,
        }
    }
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub name: &'static str,
    pub data: Vec<u8>,
    /// Holds secrets: write it readable by the owner only (0600).
    pub private: bool,
}

pub const CAPTURE_FILE: &str = "capture.pcapng";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const VERDICT_FILE: &str = "verdict.json";
pub const REPORT_TXT_FILE: &str = "report.txt";
pub const REPORT_HTML_FILE: &str = "report.html";
pub const CERT_FILE: &str = "host-cert.pem";

/// What a bundle holds, for the reports' "what this bundle contains" section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub redacted: bool,
    /// A Decryption Secrets Block is embedded.
    pub secrets: bool,
    /// A key log was available but left out (`--no-secrets` or `--redact`).
    pub secrets_withheld: bool,
    /// Personal data found (without `--redact`): what and the values' kinds.
    pub personal: Vec<String>,
    /// Packets and interfaces of capture.pcapng.
    pub packets: usize,
    pub interfaces: Vec<String>,
    /// Why capture.pcapng is missing, if it is.
    pub capture_error: Option<String>,
    pub certificates: usize,
}

/// Everything the renderers share.
#[derive(Debug)]
pub struct Bundle<'a> {
    pub trace: &'a Trace,
    pub redactor: Redactor,
    /// DER certificates the host sent (TLS Certificate message, or the X.509 chain of a
    /// Standard RDP Security Connect-Response), leaf first.
    pub certs: Vec<Vec<u8>>,
    pub contents: Contents,
}

/// Builds every file of the bundle.
pub fn write_bundle(trace: &Trace, opts: &Options) -> Vec<BundleFile> {
    let certs = host_certificates(trace);
    let redactor = if opts.redact {
        redactor_for(trace, &certs)
    } else {
        Redactor::none()
    };
    let with_secrets = opts.secrets && !opts.redact && trace.key_log.is_some();
    let mut contents = Contents {
        redacted: opts.redact,
        secrets: with_secrets,
        secrets_withheld: trace.key_log.is_some() && !with_secrets,
        personal: if opts.redact {
            Vec::new()
        } else {
            personal_data(trace, &certs)
        },
        certificates: certs.len(),
        ..Contents::default()
    };
    let capture = pcapng::capture(trace, &redactor, with_secrets);
    let mut files = Vec::new();
    match capture {
        Ok(c) => {
            contents.packets = c.packets;
            contents.interfaces = c.interfaces;
            files.push(BundleFile {
                name: CAPTURE_FILE,
                data: c.data,
                private: with_secrets,
            });
        }
        Err(e) => contents.capture_error = Some(e.to_string()),
    }
    let bundle = Bundle {
        trace,
        redactor,
        certs,
        contents,
    };
    files.push(BundleFile {
        name: EVENTS_FILE,
        data: jsonl::events(&bundle),
        private: false,
    });
    files.push(BundleFile {
        name: VERDICT_FILE,
        data: verdict_json(&bundle),
        private: false,
    });
    files.push(BundleFile {
        name: REPORT_TXT_FILE,
        data: report_txt::render(&bundle).into_bytes(),
        private: false,
    });
    files.push(BundleFile {
        name: REPORT_HTML_FILE,
        data: report_html::render(&bundle).into_bytes(),
        private: false,
    });
    if !bundle.certs.is_empty() {
        files.push(BundleFile {
            name: CERT_FILE,
            data: certs_pem(&bundle).into_bytes(),
            private: false,
        });
    }
    files
}

/// The bundle's directory name: `<YYYYmmddTHHMMSSZ>-<client ip_port>-<id>` (the client address
/// redacted under `--redact`; `:` and `[]` avoided for Windows file systems).
pub fn bundle_dir_name(trace: &Trace, opts: &Options) -> String {
    let ip = if opts.redact {
        let certs = host_certificates(trace);
        redactor_for(trace, &certs).ip(trace.client.ip())
    } else {
        trace.client.ip()
    };
    let ip = ip.to_string().replace(':', "-");
    let stamp =
        time::OffsetDateTime::from_unix_timestamp(trace.started_unix_micros.div_euclid(1_000_000))
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!(
                    "[year][month][day]T[hour][minute][second]Z"
                ))
                .ok()
            })
            .unwrap_or_else(|| "19700101T000000Z".to_owned());
    format!("{stamp}-{ip}_{}-{}", trace.client.port(), trace.id)
}

impl Trace {
    /// The connection's report as `proxy --json` prints it (events not included).
    pub fn connection_report(&self) -> ConnectionReport {
        ConnectionReport {
            id: self.id,
            client: self.client.to_string(),
            target: self.target.clone(),
            host_addr: self.host.map(|h| h.to_string()),
            started_at: self.started_at.clone(),
            duration_ms: self.duration.0 / 1000,
            bytes_client_to_host: self.bytes_client_to_host,
            bytes_host_to_client: self.bytes_host_to_client,
            verdict: self.verdict.clone(),
            events: Vec::new(),
            tls_keylog: None,
        }
    }
}

/// `verdict.json`: the object `proxy --json` prints, pretty.
fn verdict_json(b: &Bundle<'_>) -> Vec<u8> {
    let json = serde_json::to_string_pretty(&b.trace.connection_report()).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("unserializable: {e}") }).to_string()
    });
    let mut out = b.redactor.text(&json).into_bytes();
    out.push(b'\n');
    out
}

fn certs_pem(b: &Bundle<'_>) -> String {
    let mut out = String::new();
    for der in &b.certs {
        let der = b.redactor.bytes(der);
        out.push_str(&pem("CERTIFICATE", &der));
    }
    out
}

/// PEM armour (RFC 7468): base64 in 64-character lines.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| -> char {
        let i = usize::try_from(v & 63).unwrap_or(0);
        ALPHABET.get(i).map_or('A', |&b| char::from(b))
    };
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = |i: usize| u32::from(group.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if group.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if group.len() > 2 { sym(n) } else { '=' });
    }
    out
}

/// RFC 3339 UTC with microseconds, for [`Trace::started_at`].
pub fn rfc3339(unix_micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Most bytes of the host's stream scanned for certificates (a chain fits in far less).
const CERT_SCAN_LIMIT: usize = 256 * 1024;

/// The certificates the host sent, re-read from the recorded bytes (so events stay small): the
/// TLS Certificate message (TLS 1.2 and older; TLS 1.3 encrypts it), or the X.509 chain in the
/// Server Security Data of a clear MCS Connect-Response.
pub fn host_certificates(trace: &Trace) -> Vec<Vec<u8>> {
    let mut stream = trace.stream(Leg::Host, Direction::HostToClient);
    stream.truncate(CERT_SCAN_LIMIT);
    let mut reassembler = tls::HandshakeReassembler::new();
    let mut pos = 0usize;
    while let Some(rest) = stream.get(pos..).filter(|r| !r.is_empty()) {
        if tpkt::looks_like_tpkt(rest) == Some(true) {
            let Ok(Some(pdu)) = tpkt::split_pdu(rest) else {
                break;
            };
            if let Some(chain) = mcs_certificates(pdu) {
                return chain;
            }
            pos = pos.saturating_add(pdu.len().max(1));
        } else if tls::looks_like_record(rest) == Some(true) {
            let Ok(Some((header, fragment))) = tls::split_record(rest) else {
                break;
            };
            match header.content_type {
                tls::ContentType::HANDSHAKE => {
                    let offset = u64::try_from(pos).unwrap_or(u64::MAX);
                    for msg in reassembler
                        .push(fragment, offset.saturating_add(5))
                        .into_iter()
                        .flatten()
                    {
                        if msg.msg_type == tls::handshake_type::CERTIFICATE {
                            return tls::parse_certificate(&msg.body, false).unwrap_or_default();
                        }
                    }
                }
                tls::ContentType::ALERT => {}
                // Encrypted from here on.
                _ => break,
            }
            pos = pos.saturating_add(header.total_len());
        } else {
            break;
        }
    }
    Vec::new()
}

fn mcs_certificates(pdu: &[u8]) -> Option<Vec<Vec<u8>>> {
    let x224::X224Pdu::Data { payload_offset } = x224::decode(pdu).ok()? else {
        return None;
    };
    let body = pdu.get(payload_offset..)?;
    let mcs::McsPdu::ConnectResponse(resp) = mcs::decode(body).ok()? else {
        return None;
    };
    let chain: Vec<Vec<u8>> = resp
        .server_security?
        .x509_chain
        .iter()
        .filter_map(|s| body.get(s.offset..s.offset.saturating_add(s.len)))
        .map(<[u8]>::to_vec)
        .collect();
    // The chain in Server Security Data ends with the leaf; TLS sends the leaf first.
    let mut chain = chain;
    chain.reverse();
    (!chain.is_empty()).then_some(chain)
}

/// JSON keys (in events and the verdict) whose string values are personal, by kind.
const PERSONAL_KEYS: &[(&str, NameKind)] = &[
    ("cookie", NameKind::User),
    ("account", NameKind::User),
    ("logon", NameKind::User),
    ("user", NameKind::User),
    ("user_name", NameKind::User),
    ("username", NameKind::User),
    ("routing_token", NameKind::Token),
    ("sni", NameKind::Host),
    ("client_name", NameKind::Host),
    ("workstation", NameKind::Host),
    ("host_name", NameKind::Host),
    ("computer_name", NameKind::Host),
    ("subject_cn", NameKind::Host),
    ("netbios_computer_name", NameKind::Host),
    ("dns_computer_name", NameKind::Host),
    ("target_name", NameKind::Domain),
    ("domain", NameKind::Domain),
    ("domain_name", NameKind::Domain),
    ("netbios_domain_name", NameKind::Domain),
    ("dns_domain_name", NameKind::Domain),
    ("dns_tree_name", NameKind::Domain),
];

/// Every personal value of the trace: addresses, the target, names in events and the verdict
/// (cookie, SNI, GCC client name, NTLM names, certificate names), names in the certificates.
pub fn redactor_for(trace: &Trace, certs: &[Vec<u8>]) -> Redactor {
    let mut b = RedactorBuilder::new();
    for addr in [
        Some(trace.client),
        Some(trace.listen),
        trace.host,
        trace.proxy_local,
    ]
    .into_iter()
    .flatten()
    {
        b.add_ip(addr.ip());
    }
    let target = crate_target_host(&trace.target);
    b.add(NameKind::Host, &target);
    for e in &trace.events {
        if let Ok(v) = serde_json::to_value(e) {
            collect_json(&mut b, &v);
        }
    }
    if let Ok(v) = serde_json::to_value(&trace.verdict) {
        collect_json(&mut b, &v);
    }
    for der in certs {
        collect_cert(&mut b, der);
    }
    b.build()
}

/// `HOST[:PORT]` → `HOST`.
fn crate_target_host(target: &str) -> String {
    let t = target.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return sa.ip().to_string();
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|r| r.split_once(']')) {
        return inner.0.to_owned();
    }
    match t.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => h.to_owned(),
        _ => t.to_owned(),
    }
}

fn collect_json(b: &mut RedactorBuilder, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map {
                if let Some((_, kind)) = PERSONAL_KEYS.iter().find(|(key, _)| key == k)
                    && let Some(s) = val.as_str()
                {
                    b.add(*kind, s);
                }
                if k == "sans"
                    && let Some(items) = val.as_array()
                {
                    for s in items.iter().filter_map(|i| i.as_str()) {
                        add_san(b, s);
                    }
                }
                if (k == "subject" || k == "issuer")
                    && let Some(s) = val.as_str()
                {
                    add_dn(b, s);
                }
                collect_json(b, val);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_json(b, i)),
        _ => {}
    }
}

/// `DNS:x`, `IP:x`, `email:x` as written by [`x509::CertSummary`].
fn add_san(b: &mut RedactorBuilder, s: &str) {
    match s.split_once(':') {
        Some(("DNS", v)) => {
            b.add(NameKind::Host, v);
        }
        Some(("IP", v)) => {
            b.add(NameKind::Host, v);
        }
        Some(("email", v)) => {
            b.add(NameKind::User, v);
        }
        _ => {}
    }
}

/// The names in an RFC 4514-style DN: CN, O, OU, DC (long enough to be a name), e-mail.
fn add_dn(b: &mut RedactorBuilder, dn: &str) {
    for part in dn.split([',', '+']) {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_uppercase().as_str() {
            "CN" => {
                b.add(NameKind::Host, v);
            }
            "O" | "OU" => {
                b.add(NameKind::Org, v);
            }
            // `DC=corp,DC=example,DC=com`: `com` is not personal.
            "DC" if v.len() > 3 => {
                b.add(NameKind::Domain, v);
            }
            "EMAILADDRESS" | "E" => {
                b.add(NameKind::User, v);
            }
            _ => {}
        }
    }
}

fn collect_cert(b: &mut RedactorBuilder, der: &[u8]) {
    let Ok(summary) = x509::summarize(der) else {
        return;
    };
    add_dn(b, &summary.subject);
    add_dn(b, &summary.issuer);
    if let Some(cn) = &summary.subject_cn {
        b.add(NameKind::Host, cn);
    }
    for san in &summary.sans {
        add_san(b, san);
    }
}

/// What personal data the trace holds (the reports say it when not redacted).
fn personal_data(trace: &Trace, certs: &[Vec<u8>]) -> Vec<String> {
    let mut out = vec![format!(
        "IP addresses and ports: client {}, host {}",
        trace.client,
        trace
            .host
            .map_or_else(|| trace.target.clone(), |h| h.to_string())
    )];
    let facts = &trace.verdict.facts;
    if let Some(c) = &facts.cookie {
        out.push(format!("the user name in the mstshash cookie ({c})"));
    }
    if let Some(s) = &facts.sni {
        out.push(format!("the host name the client asked for (TLS SNI {s})"));
    }
    if let Some(c) = &facts.client_name {
        out.push(format!("the client computer's name ({c})"));
    }
    out.push(format!("the target as given ({})", trace.target));
    if !certs.is_empty() {
        out.push(
            "certificate subject, issuer and alternative names (host and domain names)".to_owned(),
        );
    }
    out
}

/// Where an event sits in the ladder: who sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A message from the client to the host.
    ClientToHost,
    /// A message from the host to the client.
    HostToClient,
    /// rdpdiag's own connection to the host (connect, connect failure).
    ProxyToHost,
    /// Something rdpdiag saw or did (stall, note, phase change).
    Proxy,
}

/// One line describing an event, for the timelines and the ladder.
pub fn event_label(e: &Event) -> String {
    use crate::wire::x224::NegData;
    match &e.kind {
        EventKind::TcpConnected => "TCP connected to the host".to_owned(),
        EventKind::ConnectFailed { failure } => match failure {
            ConnectFailure::Refused => "TCP connect refused (RST)".to_owned(),
            ConnectFailure::Timeout => "TCP connect timed out (no SYN-ACK)".to_owned(),
            ConnectFailure::Other(s) => format!("TCP connect failed: {s}"),
        },
        EventKind::ConnectionRequest { pdu, .. } => {
            let cookie = pdu
                .cookie
                .as_ref()
                .map(|c| format!(", cookie {c}"))
                .unwrap_or_default();
            format!(
                "X.224 Connection Request (requested {}{cookie})",
                pdu.requested().names()
            )
        }
        EventKind::ConnectionConfirm { pdu, .. } => match &pdu.neg {
            Some(NegData::Response { selected, .. }) => {
                format!("X.224 Connection Confirm (selected {})", selected.names())
            }
            Some(NegData::Failure { code, .. }) => {
                format!("X.224 Connection Confirm: RDP_NEG_FAILURE {code}")
            }
            None => "X.224 Connection Confirm (legacy: Standard RDP Security)".to_owned(),
        },
        EventKind::Phase { to, .. } => format!("phase: {}", to.title()),
        EventKind::TlsClientHello { hello, versions } => {
            let sni = hello
                .sni
                .as_ref()
                .map(|s| format!(", SNI {s}"))
                .unwrap_or_default();
            format!("TLS ClientHello ({}{sni})", versions.join(", "))
        }
        EventKind::TlsServerHello {
            version, cipher, ..
        } => format!("TLS ServerHello ({version}, {cipher})"),
        EventKind::TlsCertificate { chain } => {
            let leaf = chain
                .first()
                .map(|c| c.subject.clone())
                .unwrap_or_else(|| "empty".to_owned());
            format!("TLS Certificate ({leaf}; {} in chain)", chain.len())
        }
        EventKind::TlsHandshake { message } => format!("TLS {message}"),
        EventKind::TlsChangeCipherSpec => "TLS ChangeCipherSpec".to_owned(),
        EventKind::TlsAlert { level, name, .. } => {
            let level = if *level == 2 { "fatal" } else { "warning" };
            format!("TLS Alert {level} {name}")
        }
        EventKind::TlsEncryptedAlert { len, inferred } => {
            if *inferred {
                format!("TLS encrypted record, inferred alert ({len} B)")
            } else {
                format!("TLS encrypted alert ({len} B)")
            }
        }
        EventKind::TlsHandshakeDone => "TLS handshake done".to_owned(),
        EventKind::TlsRecord {
            content_type,
            len,
            role,
            ..
        } => match role {
            Some(r) => format!("{r} ({len} B, TLS)"),
            None => format!(
                "TLS {} record ({len} B)",
                tls::ContentType(*content_type).name()
            ),
        },
        EventKind::Mcs { pdu } => match &**pdu {
            mcs::McsPdu::ConnectInitial(ci) => {
                let name = ci
                    .client_core
                    .as_ref()
                    .map(|c| format!(", client {}", c.client_name))
                    .unwrap_or_default();
                format!("MCS Connect-Initial{name}")
            }
            mcs::McsPdu::ConnectResponse(cr) => {
                format!("MCS Connect-Response ({})", mcs::result_name(cr.result))
            }
            other => format!("MCS {}", other.name()),
        },
        EventKind::Malformed { error } => format!("malformed: {error}"),
        EventKind::Closed { side, kind } => {
            let how = match kind {
                CloseKind::Fin => "FIN",
                CloseKind::Rst => "RST",
                CloseKind::Alert => "alert + close",
                CloseKind::Timeout => "timeout",
                CloseKind::ConnectError => "connect error",
            };
            format!("{} closes ({how})", side.name())
        }
        EventKind::Stalled { idle } => {
            format!("stalled: no progress for {:.1} s", idle.as_secs_f64())
        }
        EventKind::Note { text } => text.clone(),
    }
}

/// Who an event goes from and to, in the ladder.
pub fn event_lane(e: &Event) -> Lane {
    match (&e.kind, e.dir) {
        (EventKind::TcpConnected | EventKind::ConnectFailed { .. }, _) => Lane::ProxyToHost,
        (EventKind::Closed { side, .. }, _) => match side {
            Side::Client => Lane::ClientToHost,
            Side::Host => Lane::HostToClient,
            Side::Proxy => Lane::Proxy,
        },
        (_, Some(Direction::ClientToHost)) => Lane::ClientToHost,
        (_, Some(Direction::HostToClient)) => Lane::HostToClient,
        (_, None) => Lane::Proxy,
    }
}

/// "+12.345 ms" since the start of the connection.
pub fn fmt_time(at: Micros) -> String {
    let ms = at.0 / 1000;
    let us = at.0 % 1000;
    format!("+{ms}.{us:03} ms")
}

/// The event at the failure point, for the ladder and the timeline: among the events the
/// verdict's evidence points at (the last event of that direction at or before the evidence's
/// offset), the first that is a failure in itself (a negotiation failure, an alert, a
/// disconnect, malformed bytes, a failed connect, a stall); else the close of the side that
/// closed; else the last event the evidence points at. None for a healthy connection.
pub fn failure_event(trace: &Trace) -> Option<usize> {
    let v = &trace.verdict;
    if v.outcome == crate::session::Outcome::Healthy {
        return None;
    }
    let events = &trace.events;
    let is_pdu = |e: &Event| {
        !matches!(
            e.kind,
            EventKind::Note { .. } | EventKind::Phase { .. } | EventKind::Closed { .. }
        )
    };
    let located: Vec<usize> = v
        .evidence
        .iter()
        .filter(|ev| ev.field != "close")
        .filter_map(|ev| {
            let (d, o) = (ev.dir?, ev.offset?);
            events
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.dir == Some(d) && e.offset.is_some_and(|eo| eo <= o) && is_pdu(e)
                })
                .max_by_key(|(_, e)| e.offset)
                .map(|(i, _)| i)
        })
        .collect();
    let failure_kind = |e: &Event| match &e.kind {
        EventKind::ConnectionConfirm { pdu, .. } => {
            matches!(pdu.neg, Some(crate::wire::x224::NegData::Failure { .. }))
        }
        EventKind::Mcs { pdu } => {
            matches!(&**pdu, mcs::McsPdu::DisconnectProviderUltimatum { .. })
        }
        EventKind::TlsAlert { .. }
        | EventKind::TlsEncryptedAlert { .. }
        | EventKind::Malformed { .. }
        | EventKind::ConnectFailed { .. }
        | EventKind::Stalled { .. } => true,
        _ => false,
    };
    let mut sorted = located.clone();
    sorted.sort_unstable();
    sorted
        .iter()
        .copied()
        .find(|&i| events.get(i).is_some_and(failure_kind))
        .or_else(|| events.iter().position(failure_kind))
        .or_else(|| {
            let side = v.closed_by?;
            events.iter().position(|e| match e.kind {
                EventKind::Closed { side: s, .. } => s == side,
                _ => false,
            })
        })
        .or_else(|| sorted.last().copied())
}

/// Certificates with their problems as seen at the start of the connection.
pub fn certificate_summaries(b: &Bundle<'_>) -> Vec<(x509::CertSummary, Vec<String>)> {
    let now = b.trace.started_unix_micros.div_euclid(1_000_000);
    b.certs
        .iter()
        .filter_map(|der| x509::summarize(der).ok())
        .map(|s| {
            let problems = x509::problems(&s, now, None)
                .iter()
                .map(ToString::to_string)
                .collect();
            (s, problems)
        })
        .collect()
}

/// The Decode As hint with the ports of this trace.
pub fn decode_as_hint(trace: &Trace) -> String {
    let mut ports = vec![trace.listen.port()];
    if let Some(h) = trace.host
        && !ports.contains(&h.port())
    {
        ports.push(h.port());
    }
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    DECODE_AS_HINT.replace("PORT", &ports.join(" and "))
}

/// The tshark command lines that open the capture.
pub fn tshark_commands(trace: &Trace) -> Vec<String> {
    let port = trace.host.map_or(trace.listen.port(), |h| h.port());
    vec![
        format!("tshark -r {CAPTURE_FILE} -d tcp.port=={port},tpkt -Y rdp"),
        format!("tshark -r {CAPTURE_FILE} -d tcp.port=={port},tls -Y tls"),
        format!("editcap --discard-all-secrets {CAPTURE_FILE} shareable.pcapng"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn targets() {
        assert_eq!(crate_target_host("rds01:3390"), "rds01");
        assert_eq!(crate_target_host("rds01"), "rds01");
        assert_eq!(crate_target_host("10.1.2.3:3389"), "10.1.2.3");
        assert_eq!(crate_target_host("[2001:db8::1]:3389"), "2001:db8::1");
        assert_eq!(crate_target_host("2001:db8::1"), "2001:db8::1");
    }

    #[test]
    fn pem_lines() {
        let p = pem("CERTIFICATE", &[0u8; 100]);
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.get(1).map(|l| l.len()), Some(64));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
    }
}
