//! From a capture to one diagnosis per RDP connection.
//!
//! [`Analyzer`] takes the capture file's bytes (push, sans-IO), reads packets
//! ([`super::reader`]), decodes headers ([`super::link`]), reassembles each TCP connection
//! ([`super::reassembly`]), finds RDP in it, and feeds the same [`Session`] phase machine the
//! proxy uses: the verdict for a connection is the same whether it was seen live or in a
//! capture.
//!
//! Finding RDP does not rely on the port: a TPKT + X.224 Connection Request in the first bytes
//! of a client stream (possibly after a preamble such as a SOCKS exchange or an
//! RDP_PRECONNECTION_PDU, RDP-NEGOTIATION.md §1.3) makes a connection RDP; a connection to port
//! 3389 without one is still handed to the machine, which says what it is instead (not RDP,
//! malformed, direct TLS, connect refused).

use core::net::SocketAddr;
use std::collections::HashMap;

use serde::Serialize;

use super::link::{self, IpPacket, LinkError, TcpSegment, Transport};
use super::reader::{CaptureFormat, CaptureReader, LinkType, ReadError, ReaderConfig, Record};
use super::reassembly::{Flow, FlowEvent, Gap, GapReason, HalfStats, ReassemblyConfig};
use crate::session::{
    CloseKind, ConnectFailure, Direction, Event, Micros, Outcome, Phase, Session, SessionConfig,
    Side, Verdict,
};
use crate::wire::x224::{self, X224Pdu};

/// The standard RDP port.
pub const RDP_PORT: u16 = 3389;

/// Knobs of the analysis.
#[derive(Debug, Clone)]
pub struct AnalyzeConfig {
    pub reader: ReaderConfig,
    pub reassembly: ReassemblyConfig,
    /// Template for each connection's phase machine.
    pub session: SessionConfig,
    /// How far into a client stream an X.224 Connection Request is looked for (preambles).
    pub search_window: usize,
    /// Silences longer than this inside a connection are reported as stalls.
    pub stall_report: Micros,
    /// Most TCP connections tracked at once; more are counted and skipped.
    pub max_active_flows: usize,
    /// Keep each connection's event list in its report.
    pub keep_events: bool,
    /// Let the machine's clock run through silences inside a connection as the proxy's would
    /// (a silence longer than its stall timeout ends the diagnosis as a stall even if the
    /// capture shows the connection going on). When false, the machine only hears the time of
    /// the next event and, at the end, of the connection's last packet.
    pub live_stall_ticks: bool,
    /// Keep feeding a direction's bytes to the machine after a gap in it. The machine's framer
    /// cannot know bytes are missing, so what follows a gap is usually misframed; by default a
    /// direction is no longer decoded after its first gap (closes and timing still are).
    pub feed_after_gap: bool,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        Self {
            reader: ReaderConfig::default(),
            reassembly: ReassemblyConfig::default(),
            session: SessionConfig::default(),
            search_window: 1024,
            stall_report: Micros(2_000_000),
            max_active_flows: 100_000,
            keep_events: false,
            live_stall_ticks: true,
            feed_after_gap: false,
        }
    }
}

/// A hole in one direction of a connection, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapReport {
    pub dir: Direction,
    /// Stream offset of the first missing byte (from the start of the direction's stream).
    pub offset: u64,
    pub len: u64,
    /// Seconds since the connection's first packet.
    pub at_s: f64,
    pub reason: GapReason,
}

/// A silence with no new byte in either direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stall {
    /// Seconds since the connection's first packet when the silence began.
    pub from_s: f64,
    pub idle_s: f64,
    /// The phase the machine was in during the silence.
    pub phase: Phase,
    /// Who spoke first after it; none when the connection ended (or the capture did).
    pub resumed_by: Option<Side>,
}

/// Bytes one side sent that the other never acknowledged although it kept sending packets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unacknowledged {
    pub dir: Direction,
    pub bytes: u64,
    /// Stream offset up to which the receiver acknowledged.
    pub acked_up_to: u64,
    /// Seconds (since the connection's first packet) of the last byte sent and of the
    /// receiver's last packet.
    pub last_data_s: f64,
    pub receiver_last_packet_s: f64,
}

/// Bytes before the RDP negotiation in the same TCP stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preamble {
    /// socks5, socks4, http_connect, rdp_preconnection_pdu or unknown.
    pub kind: &'static str,
    /// What it says, when it can be read (e.g. the SOCKS CONNECT target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub client_bytes: u64,
    pub server_bytes: u64,
}

/// Retransmissions, reordering and loss seen in one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TcpDirStats {
    pub segments: u64,
    pub retransmitted_segments: u64,
    pub out_of_order_segments: u64,
    pub overlap_conflicts: u64,
    pub truncated_segments: u64,
    pub missing_bytes: u64,
}

impl From<&HalfStats> for TcpDirStats {
    fn from(s: &HalfStats) -> Self {
        Self {
            segments: s.segments,
            retransmitted_segments: s.retransmitted_segments,
            out_of_order_segments: s.out_of_order_segments,
            overlap_conflicts: s.overlap_conflicts,
            truncated_segments: s.truncated_segments,
            missing_bytes: s.missing_bytes,
        }
    }
}

/// The diagnosis of one RDP connection found in a capture.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionAnalysis {
    /// TCP conversation number, in order of first packet, counting every TCP connection of the
    /// capture from 0 (Wireshark's `tcp.stream`).
    pub stream: u32,
    pub client: SocketAddr,
    pub server: SocketAddr,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<u16>,
    /// RFC 3339 capture times of the first and last packet.
    pub first_seen: String,
    pub last_seen: String,
    pub duration_s: f64,
    pub packets: u64,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
    #[serde(flatten)]
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<GapReport>,
    pub missing_bytes: u64,
    pub tcp_client_to_server: TcpDirStats,
    pub tcp_server_to_client: TcpDirStats,
    /// Data the receiver never acknowledged: lost between the capture point and the receiver.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unacknowledged: Vec<Unacknowledged>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stalls: Vec<Stall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preamble: Option<Preamble>,
    /// The capture carries TLS secrets (a Decryption Secrets Block) for this connection's
    /// ClientHello random.
    pub tls_secrets: bool,
    /// The capture ends with the connection still open (no FIN or RST from both sides).
    pub capture_ended: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

/// A TCP connection that is not RDP, listed briefly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowSummary {
    pub stream: u32,
    /// The SYN sender when known, else the first sender.
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub first_seen: String,
    pub packets: u64,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
    /// refused, reset, closed, open, no_answer.
    pub state: &'static str,
    /// What the first client bytes look like, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub looks_like: Option<String>,
}

/// UDP traffic on the RDP port (MS-RDPEUDP), which rdpdiag does not analyse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UdpRdpFlow {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub datagrams: u64,
    pub bytes: u64,
    /// An RDPEUDP SYN datagram (snSourceAck = -1, RDPUDP_FLAG_SYN) was seen.
    pub rdpeudp_syn: bool,
}

/// Everything `analyze` learned from one capture.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisReport {
    #[serde(serialize_with = "ser_format")]
    pub format: Option<CaptureFormat>,
    pub gzip: bool,
    pub packets: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_packet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_packet: Option<String>,
    pub link_types: Vec<String>,
    pub connections: Vec<ConnectionAnalysis>,
    pub other_tcp: Vec<FlowSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rdp_udp: Vec<UdpRdpFlow>,
    /// Lines of TLS key log found in Decryption Secrets Blocks.
    pub tls_key_log_lines: usize,
    pub warnings: Vec<String>,
    /// Reading stopped at this error; everything before it was analysed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_error: Option<ReadError>,
}

fn ser_format<S: serde::Serializer>(f: &Option<CaptureFormat>, s: S) -> Result<S::Ok, S::Error> {
    match f {
        Some(f) => s.serialize_str(&f.to_string()),
        None => s.serialize_none(),
    }
}

impl AnalysisReport {
    /// True when some RDP connection failed.
    pub fn any_failed(&self) -> bool {
        self.connections
            .iter()
            .any(|c| c.verdict.outcome == Outcome::Failed)
    }
}

/// RFC 3339 text of a capture timestamp.
pub fn rfc3339(ts_ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts_ns))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{ts_ns}ns"))
}

fn secs(m: Micros) -> f64 {
    m.as_secs_f64()
}

/// Capture-time difference as Micros (0 when negative).
fn rel_micros(ts_ns: i64, origin_ns: i64) -> Micros {
    let d = ts_ns.saturating_sub(origin_ns).max(0);
    Micros(u64::try_from(d / 1000).unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// RDP detection

/// Where an X.224 Connection Request starts in a client stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    Found(usize),
    NeedMore,
    NotFound,
}

/// Looks for a TPKT + X.224 CR in the first `window` bytes of `buf`. `complete`: no more bytes
/// will come.
fn find_cr(buf: &[u8], window: usize, complete: bool) -> Search {
    let last = window.min(buf.len());
    for off in 0..=last {
        let Some(h) = buf.get(off..off.saturating_add(6)) else {
            return if complete || off >= window {
                Search::NotFound
            } else {
                Search::NeedMore
            };
        };
        // TPKT: version 3, reserved 0, length; X.224: LI, code 0xE0 (CR, CDT 0).
        let (v, r, len, li, code) = (
            h.first().copied(),
            h.get(1).copied(),
            h.get(2..4)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map(u16::from_be_bytes),
            h.get(4).copied(),
            h.get(5).copied(),
        );
        let (Some(3), Some(0), Some(len), Some(li), Some(code)) = (v, r, len, li, code) else {
            continue;
        };
        if code & 0xf0 != x224::CODE_CR {
            continue;
        }
        let len = usize::from(len);
        // A CR carries its RDP data inside the header: TPKT.length = 5 + LI (§2.2). At the very
        // start of the stream anything CR-like is RDP (malformed or not: the machine says which).
        if off > 0 && (len != usize::from(li) + 5 || len < 11) {
            continue;
        }
        let Some(pdu) = buf.get(off..off.saturating_add(len)) else {
            if complete {
                if off == 0 {
                    return Search::Found(0);
                }
                continue;
            }
            return Search::NeedMore;
        };
        match x224::decode(pdu) {
            Ok(X224Pdu::ConnectionRequest(_)) => return Search::Found(off),
            _ if off == 0 => return Search::Found(0),
            _ => continue,
        }
    }
    if complete || buf.len() > window {
        Search::NotFound
    } else {
        Search::NeedMore
    }
}

/// Finds the start of an X.224 Connection Confirm in `buf[from..]`, within `window` bytes.
fn find_cc(buf: &[u8], from: usize, window: usize) -> Option<usize> {
    let end = buf.len().min(from.saturating_add(window));
    (from..end).find(|&off| {
        let Some(h) = buf.get(off..off.saturating_add(6)) else {
            return false;
        };
        let len = h
            .get(2..4)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, |b| usize::from(u16::from_be_bytes(b)));
        h.first() == Some(&3)
            && h.get(1) == Some(&0)
            && h.get(5).is_some_and(|c| c & 0xf0 == x224::CODE_CC)
            && h.get(4).is_some_and(|li| len == usize::from(*li) + 5)
            && len >= 11
    })
}

/// Names the bytes before the Connection Request.
fn classify_preamble(client: &[u8], server_bytes: u64) -> Preamble {
    let client_bytes = client.len() as u64;
    let mk = |kind, detail| Preamble {
        kind,
        detail,
        client_bytes,
        server_bytes,
    };
    // SOCKS5 (RFC 1928): greeting 05 n methods..., then CONNECT 05 01 00 atyp addr port.
    if let (Some(5), Some(n)) = (client.first().copied(), client.get(1).copied()) {
        let req = client
            .get(2usize.saturating_add(usize::from(n))..)
            .unwrap_or_default();
        return mk("socks5", socks5_target(req));
    }
    // SOCKS4/4a: 04 01 port(2) ip(4) userid 00 [host 00].
    if client.first() == Some(&4) && client.get(1) == Some(&1) {
        let detail = match (client.get(2..4), client.get(4..8)) {
            (Some(p), Some(ip)) => {
                let port = u16::from_be_bytes([
                    p.first().copied().unwrap_or(0),
                    p.get(1).copied().unwrap_or(0),
                ]);
                let ip: [u8; 4] = ip.try_into().unwrap_or([0; 4]);
                Some(format!("CONNECT {}:{port}", core::net::Ipv4Addr::from(ip)))
            }
            _ => None,
        };
        return mk("socks4", detail);
    }
    if client.starts_with(b"CONNECT ") {
        let line = client
            .split(|b| *b == b'\r' || *b == b'\n')
            .next()
            .map(|l| String::from_utf8_lossy(l).into_owned());
        return mk("http_connect", line);
    }
    // RDP_PRECONNECTION_PDU (MS-RDPEPS 2.2.1): cbSize u32le, Flags 0, Version 1 or 2, Id.
    let u32le = |o: usize| {
        client
            .get(o..o + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
    };
    if let (Some(cb), Some(0), Some(ver), Some(id)) = (u32le(0), u32le(4), u32le(8), u32le(12))
        && ((ver == 1 && cb == 16) || (ver == 2 && cb >= 18))
    {
        return mk(
            "rdp_preconnection_pdu",
            Some(format!("version {ver}, Id {id}")),
        );
    }
    mk("unknown", None)
}

fn socks5_target(req: &[u8]) -> Option<String> {
    let (Some(5), Some(1)) = (req.first().copied(), req.get(1).copied()) else {
        return None;
    };
    let atyp = req.get(3).copied()?;
    let port_at = |o: usize| -> Option<u16> {
        let b: [u8; 2] = req.get(o..o + 2)?.try_into().ok()?;
        Some(u16::from_be_bytes(b))
    };
    match atyp {
        1 => {
            let ip: [u8; 4] = req.get(4..8)?.try_into().ok()?;
            Some(format!(
                "CONNECT {}:{}",
                core::net::Ipv4Addr::from(ip),
                port_at(8)?
            ))
        }
        3 => {
            let n = usize::from(req.get(4).copied()?);
            let name = req.get(5..5 + n)?;
            Some(format!(
                "CONNECT {}:{}",
                String::from_utf8_lossy(name),
                port_at(5 + n)?
            ))
        }
        4 => {
            let ip: [u8; 16] = req.get(4..20)?.try_into().ok()?;
            Some(format!(
                "CONNECT [{}]:{}",
                core::net::Ipv6Addr::from(ip),
                port_at(20)?
            ))
        }
        _ => None,
    }
}

/// A one-line guess at what a non-RDP stream carries.
fn looks_like(first: &[u8]) -> Option<String> {
    if first.is_empty() {
        return None;
    }
    let guess = match first {
        [0x16, 0x03, ..] => "TLS handshake".to_string(),
        [0x03, 0x00, ..] => "TPKT (not an X.224 Connection Request)".to_string(),
        [0x05, 0x00, 0x0b | 0x0c | 0x00, ..] => "DCE/RPC".to_string(),
        _ if first.starts_with(b"SSH-") => "SSH".to_string(),
        _ if first.starts_with(b"GET ")
            || first.starts_with(b"POST ")
            || first.starts_with(b"HEAD ")
            || first.starts_with(b"HTTP/") =>
        {
            "HTTP".to_string()
        }
        _ => format!(
            "first bytes {}",
            hex::encode(first.get(..8).unwrap_or(first))
        ),
    };
    Some(guess)
}

/// The client_random of the first TLS ClientHello in `client` (the client stream from the CR
/// on): after the CR's TPKT, a handshake record `16 03 xx`, handshake type 1 (RFC 8446 §4.1.2:
/// record header 5, handshake header 4, legacy_version 2, then 32 bytes of random).
fn client_random(client: &[u8]) -> Option<[u8; 32]> {
    let cr_len = client
        .get(2..4)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(|b| usize::from(u16::from_be_bytes(b)))?;
    let rec = client.get(cr_len..)?;
    if rec.first() != Some(&0x16) || rec.get(1) != Some(&0x03) || rec.get(5) != Some(&0x01) {
        return None;
    }
    rec.get(11..43)?.try_into().ok()
}

// ---------------------------------------------------------------------------------------------
// Per-connection state

#[derive(Debug)]
struct RdpState {
    session: Session,
    client: usize,
    /// Stream offsets where the RDP bytes start, per flow side.
    skip: [u64; 2],
    preamble: Option<Preamble>,
    connect_reported: bool,
    last_progress_ns: Option<i64>,
    stalls: Vec<Stall>,
    gaps: Vec<GapReport>,
    notes: Vec<String>,
    /// First bytes of the client stream from the CR on (to find the ClientHello random).
    client_head: Vec<u8>,
    machine_stall_at: Option<Micros>,
    /// Per flow side: decoding stopped at this stream offset because of a gap.
    stopped_at_gap: [Option<u64>; 2],
}

#[derive(Debug)]
enum ConnState {
    /// Looking for RDP; flow events are queued.
    Detecting,
    Rdp(Box<RdpState>),
    NotRdp,
}

#[derive(Debug)]
struct Conn {
    stream: u32,
    /// Side 0 = sender of the first packet seen.
    ends: [SocketAddr; 2],
    vlans: Vec<u16>,
    flow: Flow,
    state: ConnState,
    queue: Vec<FlowEvent>,
    queued_bytes: usize,
    /// First bytes of each side's stream, for detection.
    prefix: [Vec<u8>; 2],
    /// No more prefix bytes will come for that side (end, gap, cap).
    prefix_done: [bool; 2],
}

/// Bytes of detection queue per connection before deciding with what is there.
const QUEUE_CAP: usize = 64 * 1024;
/// Most key-log bytes kept from Decryption Secrets Blocks.
const KEYLOG_CAP: usize = 16 * 1024 * 1024;
/// Most warnings listed.
const WARNINGS_CAP: usize = 50;

#[derive(Debug, Default)]
struct Stats {
    packets: u64,
    first_ts: Option<i64>,
    last_ts: i64,
    link_types: Vec<LinkType>,
    truncated_packets: u64,
    smallest_snap: Option<usize>,
    link_errors: HashMap<String, u64>,
    fragments: u64,
    flows_dropped: u64,
}

/// The analysis state; see [`Analyzer`].
#[derive(Debug)]
struct State {
    cfg: AnalyzeConfig,
    stats: Stats,
    flows: HashMap<(SocketAddr, SocketAddr), Conn>,
    next_stream: u32,
    done_rdp: Vec<ConnectionAnalysis>,
    done_other: Vec<FlowSummary>,
    udp: HashMap<(SocketAddr, SocketAddr), UdpRdpFlow>,
    keylog: Vec<u8>,
    warnings: Vec<String>,
    scratch: Vec<FlowEvent>,
}

/// Push-based capture analysis. Feed the file with [`Analyzer::push`], then call
/// [`Analyzer::finish`].
#[derive(Debug)]
pub struct Analyzer {
    reader: CaptureReader,
    state: State,
    read_error: Option<ReadError>,
}

impl Analyzer {
    pub fn new(cfg: AnalyzeConfig) -> Self {
        Self {
            reader: CaptureReader::new(cfg.reader.clone()),
            state: State {
                cfg,
                stats: Stats::default(),
                flows: HashMap::new(),
                next_stream: 0,
                done_rdp: Vec::new(),
                done_other: Vec::new(),
                udp: HashMap::new(),
                keylog: Vec::new(),
                warnings: Vec::new(),
                scratch: Vec::new(),
            },
            read_error: None,
        }
    }

    /// Hands over the next bytes of the capture file.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.read_error.is_some() {
            return;
        }
        self.reader.push(bytes);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            match self.reader.next_record() {
                Ok(Some(rec)) => self.state.on_record(rec),
                Ok(None) => break,
                Err(e) => {
                    self.read_error = Some(e);
                    break;
                }
            }
        }
    }

    /// Packets read so far.
    pub fn packets(&self) -> u64 {
        self.state.stats.packets
    }

    /// End of the file: finishes every connection. Fails only when nothing at all could be read
    /// (not a capture, damaged header); damage later in the file is reported in
    /// [`AnalysisReport::read_error`].
    pub fn finish(mut self) -> Result<AnalysisReport, ReadError> {
        if self.read_error.is_none() {
            self.reader.finish();
            self.drain();
        }
        if let Some(e) = &self.read_error
            && (self.reader.format().is_none() || self.state.stats.packets == 0)
        {
            return Err(e.clone());
        }
        let format = self.reader.format();
        let gzip = self.reader.gzip();
        Ok(self.state.finish(format, gzip, self.read_error))
    }
}

/// Analyses a whole in-memory capture.
pub fn analyze_bytes(bytes: &[u8], cfg: AnalyzeConfig) -> Result<AnalysisReport, ReadError> {
    let mut a = Analyzer::new(cfg);
    for chunk in bytes.chunks(256 * 1024) {
        a.push(chunk);
    }
    a.finish()
}

impl State {
    fn warn(&mut self, w: String) {
        if self.warnings.len() < WARNINGS_CAP && !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    fn on_record(&mut self, rec: Record<'_>) {
        match rec {
            Record::Packet(p) => {
                self.stats.packets = self.stats.packets.saturating_add(1);
                if self.stats.first_ts.is_none() {
                    self.stats.first_ts = Some(p.ts_ns);
                }
                self.stats.last_ts = self.stats.last_ts.max(p.ts_ns);
                if !self.stats.link_types.contains(&p.link) {
                    self.stats.link_types.push(p.link);
                }
                let truncated = p.truncated();
                match link::decode(p.link, p.data) {
                    Ok(ip) => {
                        if truncated {
                            self.stats.truncated_packets =
                                self.stats.truncated_packets.saturating_add(1);
                            let snap = p.data.len();
                            self.stats.smallest_snap =
                                Some(self.stats.smallest_snap.map_or(snap, |s| s.min(snap)));
                        }
                        self.on_ip(&ip, p.ts_ns);
                    }
                    Err(LinkError::Fragment) => {
                        self.stats.fragments = self.stats.fragments.saturating_add(1);
                    }
                    Err(LinkError::NotIp(_)) => {}
                    Err(e) => {
                        let key = match &e {
                            LinkError::UnsupportedLinkType(_) => e.to_string(),
                            LinkError::Malformed { layer, .. } => {
                                format!("malformed {layer} header")
                            }
                            _ => e.to_string(),
                        };
                        let n = self.stats.link_errors.entry(key).or_insert(0);
                        *n = n.saturating_add(1);
                    }
                }
            }
            Record::TlsKeyLog(text) => {
                let room = KEYLOG_CAP.saturating_sub(self.keylog.len());
                self.keylog
                    .extend_from_slice(text.get(..room.min(text.len())).unwrap_or_default());
                if !self.keylog.ends_with(b"\n") {
                    self.keylog.push(b'\n');
                }
            }
            Record::Warning(w) => self.warn(w),
        }
    }

    fn on_ip(&mut self, ip: &IpPacket<'_>, ts_ns: i64) {
        match &ip.transport {
            Transport::Tcp(seg) => {
                let src = SocketAddr::new(ip.src, seg.src_port);
                let dst = SocketAddr::new(ip.dst, seg.dst_port);
                self.on_tcp(src, dst, &ip.vlans, seg, ts_ns);
            }
            Transport::Udp(d) => {
                if d.src_port != RDP_PORT && d.dst_port != RDP_PORT {
                    return;
                }
                let src = SocketAddr::new(ip.src, d.src_port);
                let dst = SocketAddr::new(ip.dst, d.dst_port);
                let (client, server) = if d.dst_port == RDP_PORT {
                    (src, dst)
                } else {
                    (dst, src)
                };
                let f = self
                    .udp
                    .entry((client, server))
                    .or_insert_with(|| UdpRdpFlow {
                        client,
                        server,
                        datagrams: 0,
                        bytes: 0,
                        rdpeudp_syn: false,
                    });
                f.datagrams = f.datagrams.saturating_add(1);
                f.bytes = f.bytes.saturating_add(d.payload.len() as u64);
                // RDP_UDP_FEC_HEADER (MS-RDPEUDP 2.2.2.1): snSourceAck u32 (-1 in a SYN),
                // uReceiveWindowSize u16, uFlags u16 with RDPUDP_FLAG_SYN = 0x0001.
                if d.payload.get(..4) == Some(&[0xff, 0xff, 0xff, 0xff][..])
                    && d.payload.get(7).is_some_and(|f| f & 0x01 != 0)
                {
                    f.rdpeudp_syn = true;
                }
            }
            Transport::Other(_) => {}
        }
    }

    fn on_tcp(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        vlans: &[u16],
        seg: &TcpSegment<'_>,
        ts_ns: i64,
    ) {
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let restart = self.flows.get(&key).is_some_and(|c| {
            let from = usize::from(c.ends[0] != src);
            c.flow.starts_new_connection(from, seg)
        });
        if restart && let Some(old) = self.flows.remove(&key) {
            self.finish_conn(old);
        }
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= self.cfg.max_active_flows {
                self.stats.flows_dropped = self.stats.flows_dropped.saturating_add(1);
                return;
            }
            let conn = Conn {
                stream: self.next_stream,
                ends: [src, dst],
                vlans: vlans.to_vec(),
                flow: Flow::new(&self.cfg.reassembly, ts_ns),
                state: ConnState::Detecting,
                queue: Vec::new(),
                queued_bytes: 0,
                prefix: [Vec::new(), Vec::new()],
                prefix_done: [false, false],
            };
            self.next_stream = self.next_stream.saturating_add(1);
            self.flows.insert(key, conn);
        }
        let mut events = std::mem::take(&mut self.scratch);
        events.clear();
        if let Some(conn) = self.flows.get_mut(&key) {
            let from = usize::from(conn.ends[0] != src);
            conn.flow.on_segment(from, seg, ts_ns, &mut events);
            conn.on_events(&self.cfg, &mut events, false);
        }
        self.scratch = events;
        // Connections over for a while are finished now, to keep memory bounded.
        if self.stats.packets.is_multiple_of(4096) {
            self.sweep(ts_ns);
        }
    }

    fn sweep(&mut self, now_ns: i64) {
        let idle_ns: i64 = 60_000_000_000;
        let done: Vec<_> = self
            .flows
            .iter()
            .filter(|(_, c)| {
                c.flow.is_closed() && now_ns.saturating_sub(c.flow.last_ts_ns) > idle_ns
            })
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            if let Some(c) = self.flows.remove(&k) {
                self.finish_conn(c);
            }
        }
    }

    fn finish_conn(&mut self, mut conn: Conn) {
        let capture_end = self.stats.last_ts;
        let mut events = Vec::new();
        conn.flow.finish(&mut events);
        conn.on_events(&self.cfg, &mut events, true);
        match conn.finalize(&self.cfg, &self.keylog, capture_end) {
            Finished::Rdp(a) => self.done_rdp.push(*a),
            Finished::Other(s) => self.done_other.push(s),
        }
    }

    fn finish(
        mut self,
        format: Option<CaptureFormat>,
        gzip: bool,
        read_error: Option<ReadError>,
    ) -> AnalysisReport {
        let mut keys: Vec<_> = self.flows.keys().copied().collect();
        keys.sort_by_key(|k| self.flows.get(k).map_or(0, |c| c.stream));
        for k in keys {
            if let Some(c) = self.flows.remove(&k) {
                self.finish_conn(c);
            }
        }
        self.done_rdp.sort_by_key(|c| c.stream);
        self.done_other.sort_by_key(|c| c.stream);
        if self.stats.truncated_packets > 0 {
            let snap = self.stats.smallest_snap.unwrap_or(0);
            self.warn(format!(
                "{} packets were cut short by the capture's snap length (as short as {snap} \
                 bytes): payload is missing. pktmon captures default to 128 bytes: re-run with \
                 --pkt-size 0 (tcpdump: -s 0)",
                self.stats.truncated_packets
            ));
        }
        if self.stats.fragments > 0 {
            self.warn(format!(
                "{} IP fragments were skipped (rdpdiag does not reassemble IP fragments)",
                self.stats.fragments
            ));
        }
        let mut errs: Vec<_> = self.stats.link_errors.iter().collect();
        errs.sort();
        let errs: Vec<String> = errs
            .into_iter()
            .map(|(k, n)| format!("{n} packets not decoded: {k}"))
            .collect();
        for e in errs {
            self.warn(e);
        }
        if self.stats.flows_dropped > 0 {
            self.warn(format!(
                "{} packets of TCP connections beyond the {}-connection limit were skipped",
                self.stats.flows_dropped, self.cfg.max_active_flows
            ));
        }
        let mut udp: Vec<UdpRdpFlow> = std::mem::take(&mut self.udp).into_values().collect();
        udp.sort_by_key(|u| (u.client, u.server));
        if !udp.is_empty() {
            let w = format!(
                "RDP over UDP seen (MS-RDPEUDP, {} flows), not analysed{}",
                udp.len(),
                if self.done_rdp.is_empty() {
                    "; no RDP over TCP in this capture"
                } else {
                    ""
                }
            );
            if self.warnings.len() < WARNINGS_CAP {
                self.warnings.push(w);
            }
        }
        if let Some(e) = &read_error {
            let w = format!("reading stopped early: {e}; the packets before it were analysed");
            self.warn(w);
        }
        let key_lines = keylog_lines(&self.keylog);
        AnalysisReport {
            format,
            gzip,
            packets: self.stats.packets,
            first_packet: self.stats.first_ts.map(rfc3339),
            last_packet: self.stats.first_ts.map(|_| rfc3339(self.stats.last_ts)),
            link_types: self
                .stats
                .link_types
                .iter()
                .map(ToString::to_string)
                .collect(),
            connections: self.done_rdp,
            other_tcp: self.done_other,
            rdp_udp: udp,
            tls_key_log_lines: key_lines,
            warnings: self.warnings,
            read_error,
        }
    }
}

fn keylog_lines(k: &[u8]) -> usize {
    k.split(|b| *b == b'\n')
        .filter(|l| {
            let l = l.trim_ascii();
            !l.is_empty() && !l.starts_with(b"#")
        })
        .count()
}

/// Does the key log have a line for this client_random?
fn keylog_has(keylog: &[u8], random: &[u8; 32]) -> bool {
    let want = hex::encode(random);
    keylog.split(|b| *b == b'\n').any(|line| {
        let mut parts = line.split(|b| *b == b' ');
        let (_, Some(r)) = (parts.next(), parts.next()) else {
            return false;
        };
        r.eq_ignore_ascii_case(want.as_bytes())
    })
}

enum Finished {
    Rdp(Box<ConnectionAnalysis>),
    Other(FlowSummary),
}

/// How a detection attempt ended.
enum Decision {
    Wait,
    Rdp { client: usize, skip: [u64; 2] },
    NotRdp,
}

impl Conn {
    fn side_of_port(&self, port: u16) -> Option<usize> {
        self.ends.iter().position(|e| e.port() == port)
    }

    /// Handles the reassembly's events: queue them while detecting, feed them once RDP.
    fn on_events(&mut self, cfg: &AnalyzeConfig, events: &mut Vec<FlowEvent>, at_end: bool) {
        for ev in events.drain(..) {
            match &mut self.state {
                ConnState::Detecting => {
                    self.note_prefix(&ev, cfg.search_window);
                    if let FlowEvent::Data { data, .. } = &ev {
                        self.queued_bytes = self.queued_bytes.saturating_add(data.len());
                    }
                    self.queue.push(ev);
                }
                ConnState::Rdp(rdp) => {
                    rdp.feed(cfg, &self.flow, ev);
                }
                // Only counted (by the reassembly).
                ConnState::NotRdp => {}
            }
        }
        if matches!(self.state, ConnState::Detecting) {
            match self.decide(cfg, at_end) {
                Decision::Wait => {}
                Decision::NotRdp => {
                    self.state = ConnState::NotRdp;
                    self.queue.clear();
                    self.queued_bytes = 0;
                }
                Decision::Rdp { client, skip } => self.start_rdp(cfg, client, skip),
            }
        }
        // Nothing more will be decoded: count the bulk instead of copying it.
        let settled = match &self.state {
            ConnState::NotRdp => true,
            ConnState::Rdp(rdp) => rdp.session.inspection_done(),
            ConnState::Detecting => false,
        };
        if settled {
            self.flow.set_count_only();
        }
    }

    fn note_prefix(&mut self, ev: &FlowEvent, window: usize) {
        // Enough for a preamble, then a CR (in practice < 512 bytes).
        let cap = window.saturating_add(4096);
        match ev {
            FlowEvent::Data {
                from, offset, data, ..
            } => {
                let (Some(p), Some(done)) =
                    (self.prefix.get_mut(*from), self.prefix_done.get_mut(*from))
                else {
                    return;
                };
                if *done || *offset != p.len() as u64 {
                    *done = true;
                    return;
                }
                let room = cap.saturating_sub(p.len());
                p.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
                if p.len() >= cap {
                    *done = true;
                }
            }
            FlowEvent::Gap { from, .. } | FlowEvent::Fin { from, .. } => {
                if let Some(d) = self.prefix_done.get_mut(*from) {
                    *d = true;
                }
            }
            FlowEvent::Rst { .. } => self.prefix_done = [true, true],
            FlowEvent::Syn { .. } | FlowEvent::SynAck { .. } => {}
        }
    }

    fn decide(&self, cfg: &AnalyzeConfig, at_end: bool) -> Decision {
        let window = cfg.search_window;
        let candidates: Vec<usize> = match self.flow.syn_from {
            Some(c) => vec![c],
            None => vec![0, 1],
        };
        let over_cap = self.queued_bytes >= QUEUE_CAP;
        let mut waiting = false;
        for &c in &candidates {
            let server = 1 - c;
            let (Some(cp), Some(sp)) = (self.prefix.get(c), self.prefix.get(server)) else {
                continue;
            };
            let complete = at_end || over_cap || self.prefix_done.get(c).copied().unwrap_or(true);
            // A client that waits for answers to its preamble: once the server has said more
            // than the window, a CR after it is not plausible.
            let complete = complete || sp.len() > window;
            match find_cr(cp, window, complete) {
                Search::Found(off) => {
                    let server_pos = self.server_offset_at(c, off as u64);
                    let server_done =
                        at_end || over_cap || self.prefix_done.get(server).copied().unwrap_or(true);
                    let from = usize::try_from(server_pos).unwrap_or(usize::MAX);
                    let server_skip = match find_cc(sp, from, window) {
                        Some(cc) => cc as u64,
                        None if server_done || sp.len() >= from.saturating_add(window) => {
                            server_pos
                        }
                        // The server's answer may still come: wait for it.
                        None => return Decision::Wait,
                    };
                    let mut skip = [0u64; 2];
                    if let Some(s) = skip.get_mut(c) {
                        *s = off as u64;
                    }
                    if let Some(s) = skip.get_mut(server) {
                        *s = server_skip;
                    }
                    return Decision::Rdp { client: c, skip };
                }
                Search::NeedMore => waiting = true,
                Search::NotFound => {}
            }
        }
        if waiting && !at_end && !over_cap {
            return Decision::Wait;
        }
        // No CR: a connection to the RDP port is still an RDP attempt (refused, not RDP, direct
        // TLS...); the machine says which.
        if let Some(server) = self.side_of_port(RDP_PORT) {
            let client = match self.flow.syn_from {
                Some(c) => c,
                None if self.ends.iter().all(|e| e.port() == RDP_PORT) => 0,
                None => 1 - server,
            };
            let has_anything =
                self.flow.syn_from.is_some() || self.prefix.iter().any(|p| !p.is_empty());
            if has_anything {
                return Decision::Rdp {
                    client,
                    skip: [0, 0],
                };
            }
        }
        Decision::NotRdp
    }

    /// Bytes the server had sent when the client's stream reached `client_off`.
    fn server_offset_at(&self, client: usize, client_off: u64) -> u64 {
        let mut server = 0u64;
        for ev in &self.queue {
            if let FlowEvent::Data {
                from, offset, data, ..
            } = ev
            {
                let end = offset.saturating_add(data.len() as u64);
                if *from == client {
                    if end > client_off {
                        break;
                    }
                } else {
                    server = server.max(end);
                }
            }
        }
        server
    }

    fn start_rdp(&mut self, cfg: &AnalyzeConfig, client: usize, skip: [u64; 2]) {
        let server = 1 - client;
        let client_skip = skip.get(client).copied().unwrap_or(0);
        let server_skip = skip.get(server).copied().unwrap_or(0);
        let preamble = (client_skip > 0 || server_skip > 0).then(|| {
            let cp = self
                .prefix
                .get(client)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let n = usize::try_from(client_skip)
                .unwrap_or(usize::MAX)
                .min(cp.len());
            classify_preamble(cp.get(..n).unwrap_or_default(), server_skip)
        });
        let mut notes = Vec::new();
        if let Some(p) = &preamble {
            notes.push(format!(
                "the RDP negotiation starts after a {} preamble ({} bytes from the client, {} \
                 from the server){}",
                p.kind,
                p.client_bytes,
                p.server_bytes,
                p.detail
                    .as_ref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
        }
        let server_port = self.ends.get(server).map_or(0, SocketAddr::port);
        if server_port != RDP_PORT {
            notes.push(format!(
                "RDP found on TCP port {server_port} (not 3389) from its first bytes"
            ));
        }
        if self.flow.syn_from.is_none() {
            notes.push(
                "the connection's start (SYN) is not in the capture: analysed from the first \
                 bytes seen"
                    .into(),
            );
        }
        let mut session_cfg = cfg.session.clone();
        // Certificate validity is judged at capture time, not today.
        session_cfg.now_unix = Some(self.flow.first_ts_ns.div_euclid(1_000_000_000));
        let rdp = RdpState {
            session: Session::new(session_cfg),
            client,
            skip,
            preamble,
            connect_reported: false,
            last_progress_ns: None,
            stalls: Vec::new(),
            gaps: Vec::new(),
            notes,
            client_head: Vec::new(),
            machine_stall_at: None,
            stopped_at_gap: [None, None],
        };
        self.state = ConnState::Rdp(Box::new(rdp));
        self.prefix = [Vec::new(), Vec::new()];
        let queue = std::mem::take(&mut self.queue);
        self.queued_bytes = 0;
        if let ConnState::Rdp(rdp) = &mut self.state {
            for ev in queue {
                rdp.feed(cfg, &self.flow, ev);
            }
        }
    }

    fn finalize(mut self, cfg: &AnalyzeConfig, keylog: &[u8], capture_end_ns: i64) -> Finished {
        if matches!(self.state, ConnState::Detecting) {
            let mut none = Vec::new();
            self.on_events(cfg, &mut none, true);
        }
        let state = std::mem::replace(&mut self.state, ConnState::NotRdp);
        match state {
            ConnState::Rdp(rdp) => {
                Finished::Rdp(Box::new(rdp.finalize(cfg, &self, keylog, capture_end_ns)))
            }
            _ => Finished::Other(self.summary()),
        }
    }

    fn summary(&self) -> FlowSummary {
        let client = self.flow.syn_from.unwrap_or(0);
        let server = 1 - client;
        let f = &self.flow;
        let bytes = |i: usize| f.halves.get(i).map_or(0, |h| h.stats.delivered_bytes);
        let state = if f.synack_ts_ns.is_none()
            && f.syn_from.is_some()
            && f.rst_ts_ns.get(server).is_some_and(Option::is_some)
        {
            "refused"
        } else if f.rst_ts_ns.iter().any(Option::is_some) {
            "reset"
        } else if f.halves.iter().all(|h| h.fin_emitted()) {
            "closed"
        } else if f.syn_from.is_some() && f.synack_ts_ns.is_none() {
            "no_answer"
        } else {
            "open"
        };
        FlowSummary {
            stream: self.stream,
            client: self.ends.get(client).copied().unwrap_or(self.ends[0]),
            server: self.ends.get(server).copied().unwrap_or(self.ends[1]),
            first_seen: rfc3339(f.first_ts_ns),
            packets: f.packets,
            bytes_client_to_server: bytes(client),
            bytes_server_to_client: bytes(server),
            state,
            looks_like: self.prefix.get(client).and_then(|p| looks_like(p)),
        }
    }
}

impl RdpState {
    fn dir_of(&self, from: usize) -> Direction {
        if from == self.client {
            Direction::ClientToHost
        } else {
            Direction::HostToClient
        }
    }

    fn side_of(&self, from: usize) -> Side {
        self.dir_of(from).sender()
    }

    /// Lets the machine's clock run up to `at`, honouring its deadlines (only at the end when
    /// `live` is false).
    fn advance(&mut self, at: Micros, live: bool) {
        // Before the TCP connection is up the machine has no phase clock to run (a slow
        // SYN/ACK is the connect timeout's business, not a stall).
        if !live || !self.connect_reported {
            return;
        }
        for _ in 0..64 {
            match self.session.next_deadline() {
                Some(d) if d <= at => {
                    if self.session.tick(d) && self.machine_stall_at.is_none() {
                        self.machine_stall_at = Some(d);
                    }
                }
                _ => break,
            }
        }
        if self.session.tick(at) && self.machine_stall_at.is_none() {
            self.machine_stall_at = Some(at);
        }
    }

    fn ensure_connected(&mut self, at: Micros) {
        if !self.connect_reported {
            self.connect_reported = true;
            self.session.on_connect_result(Ok(()), at);
        }
    }

    fn feed(&mut self, cfg: &AnalyzeConfig, flow: &Flow, ev: FlowEvent) {
        let origin = flow.first_ts_ns;
        match ev {
            FlowEvent::Syn { .. } => {}
            FlowEvent::SynAck { ts_ns, .. } => {
                let at = rel_micros(ts_ns, origin);
                self.advance(at, cfg.live_stall_ticks);
                self.ensure_connected(at);
            }
            FlowEvent::Data {
                from,
                offset,
                data,
                ts_ns,
            } => {
                let skip = self.skip.get(from).copied().unwrap_or(0);
                let end = offset.saturating_add(data.len() as u64);
                if end <= skip {
                    return;
                }
                let cut = usize::try_from(skip.saturating_sub(offset)).unwrap_or(usize::MAX);
                let bytes = data.get(cut..).unwrap_or_default();
                if bytes.is_empty() {
                    return;
                }
                let at = rel_micros(ts_ns, origin);
                self.advance(at, cfg.live_stall_ticks);
                self.ensure_connected(at);
                let dir = self.dir_of(from);
                if let Some(last) = self.last_progress_ns {
                    let idle = rel_micros(ts_ns, last);
                    if idle >= cfg.stall_report {
                        self.stalls.push(Stall {
                            from_s: secs(rel_micros(last, origin)),
                            idle_s: secs(idle),
                            phase: self.session.phase(),
                            resumed_by: Some(dir.sender()),
                        });
                    }
                }
                self.last_progress_ns = Some(ts_ns);
                if dir == Direction::ClientToHost && self.client_head.len() < 4096 {
                    let room = 4096 - self.client_head.len();
                    self.client_head
                        .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
                }
                let stopped = self.stopped_at_gap.get(from).copied().flatten().is_some();
                if !self.session.inspection_done() && !stopped {
                    self.session.feed(dir, bytes, at);
                }
            }
            FlowEvent::Gap { from, gap } => {
                let dir = self.dir_of(from);
                let Gap {
                    offset,
                    len,
                    at_ns,
                    reason,
                } = gap;
                self.gaps.push(GapReport {
                    dir,
                    offset,
                    len,
                    at_s: secs(rel_micros(at_ns, origin)),
                    reason,
                });
                let skip = self.skip.get(from).copied().unwrap_or(0);
                if !cfg.feed_after_gap
                    && offset.saturating_add(len) > skip
                    && let Some(slot @ None) = self.stopped_at_gap.get_mut(from)
                {
                    *slot = Some(offset);
                    self.notes.push(format!(
                        "the {} stream was decoded up to offset {offset} only: the capture \
                             misses {len} bytes there ({}), and what follows cannot be framed",
                        dir.arrow(),
                        match reason {
                            GapReason::AckedNotCaptured => "acknowledged by the peer",
                            GapReason::Truncated => "cut by the snap length",
                            GapReason::BufferCap => "too much data waiting behind the hole",
                            GapReason::End => "never retransmitted",
                        }
                    ));
                }
            }
            FlowEvent::Fin { from, ts_ns } => {
                let at = rel_micros(ts_ns, origin);
                self.advance(at, cfg.live_stall_ticks);
                self.ensure_connected(at);
                self.session
                    .on_close(self.side_of(from), CloseKind::Fin, at);
            }
            FlowEvent::Rst { from, ts_ns } => {
                let at = rel_micros(ts_ns, origin);
                self.advance(at, cfg.live_stall_ticks);
                // A reset from the host answering the client's SYN: connect refused.
                let refused = !self.connect_reported
                    && flow.synack_ts_ns.is_none()
                    && flow.syn_from == Some(self.client)
                    && from != self.client;
                let aborted = !self.connect_reported
                    && flow.synack_ts_ns.is_none()
                    && flow.syn_from == Some(self.client)
                    && from == self.client;
                if refused {
                    self.connect_reported = true;
                    self.session
                        .on_connect_result(Err(ConnectFailure::Refused), at);
                } else if aborted {
                    self.connect_reported = true;
                    self.session.on_connect_result(
                        Err(ConnectFailure::Other(
                            "the client reset its connection attempt before the host answered"
                                .into(),
                        )),
                        at,
                    );
                } else {
                    self.ensure_connected(at);
                    self.session
                        .on_close(self.side_of(from), CloseKind::Rst, at);
                }
            }
        }
    }

    fn finalize(
        mut self,
        cfg: &AnalyzeConfig,
        conn: &Conn,
        keylog: &[u8],
        capture_end_ns: i64,
    ) -> ConnectionAnalysis {
        let flow = &conn.flow;
        let origin = flow.first_ts_ns;
        let last = rel_micros(flow.last_ts_ns, origin);
        if !self.connect_reported
            && let Some(syn_ts) = flow.syn_ts_ns
        {
            // A SYN with no answer: retransmitted, or the capture went on for a while.
            let waited = rel_micros(capture_end_ns, syn_ts);
            if flow.syn_count >= 2 || waited >= Micros(3_000_000) {
                self.connect_reported = true;
                let at = rel_micros(capture_end_ns.max(flow.last_ts_ns), origin);
                self.session
                    .on_connect_result(Err(ConnectFailure::Timeout), at);
                self.notes.push(format!(
                    "no answer to the SYN ({} sent, {:.1} s of capture after the first)",
                    flow.syn_count,
                    secs(waited)
                ));
            } else {
                self.notes
                    .push("the capture ends while the TCP connection is being set up".into());
            }
        }
        // Long silences at the end become stalls for the machine too.
        self.advance(last, true);
        let client = self.client;
        let server = 1 - client;
        if let Some(lp) = self.last_progress_ns {
            let idle = rel_micros(flow.last_ts_ns, lp);
            if idle >= cfg.stall_report {
                self.stalls.push(Stall {
                    from_s: secs(rel_micros(lp, origin)),
                    idle_s: secs(idle),
                    phase: self.session.phase(),
                    resumed_by: None,
                });
            }
        }
        let open = !flow.is_closed();
        if open && self.connect_reported {
            self.notes.push(
                "the capture ends with the connection still open (no FIN or RST): the outcome is \
                 what was seen until then"
                    .into(),
            );
        }
        if let Some(at) = self.machine_stall_at {
            self.notes.push(format!(
                "the phase machine saw no progress for its stall timeout at {:.1} s",
                secs(at)
            ));
        }
        let missing: u64 = flow.halves.iter().map(|h| h.stats.missing_bytes).sum();
        if missing > 0 {
            self.notes.push(format!(
                "{missing} bytes are missing from the capture ({} gaps)",
                flow.halves.iter().map(|h| h.stats.gaps).sum::<u64>()
            ));
        }
        let half = |i: usize| flow.halves.get(i);
        let mut unacknowledged = Vec::new();
        for (from, h) in flow.halves.iter().enumerate() {
            let receiver_last = flow.last_ts_side.get(1 - from).copied().flatten();
            let (Some(data_at), Some(rx_at)) = (h.last_data_ns(), receiver_last) else {
                continue;
            };
            // The receiver kept sending for half a second after the data (more than a delayed
            // ACK) without acknowledging it.
            if h.delivered() > h.acked() && rx_at.saturating_sub(data_at) >= 500_000_000 {
                let u = Unacknowledged {
                    dir: self.dir_of(from),
                    bytes: h.delivered() - h.acked(),
                    acked_up_to: h.acked(),
                    last_data_s: secs(rel_micros(data_at, origin)),
                    receiver_last_packet_s: secs(rel_micros(rx_at, origin)),
                };
                self.notes.push(format!(
                    "the {} never acknowledged the last {} bytes the {} sent (its last packet, \
                     {:.1} s later, still acknowledges only {} bytes): they were lost between \
                     the capture point and the {}",
                    u.dir.reverse().sender().name(),
                    u.bytes,
                    u.dir.sender().name(),
                    u.receiver_last_packet_s - u.last_data_s,
                    u.acked_up_to,
                    u.dir.reverse().sender().name(),
                ));
                unacknowledged.push(u);
            }
        }
        let tls_secrets = client_random(&self.client_head).is_some_and(|r| keylog_has(keylog, &r));
        let events = if cfg.keep_events {
            self.session.events().to_vec()
        } else {
            Vec::new()
        };
        ConnectionAnalysis {
            stream: conn.stream,
            client: conn.ends.get(client).copied().unwrap_or(conn.ends[0]),
            server: conn.ends.get(server).copied().unwrap_or(conn.ends[1]),
            vlans: conn.vlans.clone(),
            first_seen: rfc3339(flow.first_ts_ns),
            last_seen: rfc3339(flow.last_ts_ns),
            duration_s: secs(last),
            packets: flow.packets,
            bytes_client_to_server: half(client).map_or(0, |h| h.stats.delivered_bytes),
            bytes_server_to_client: half(server).map_or(0, |h| h.stats.delivered_bytes),
            verdict: self.session.verdict(),
            gaps: self.gaps,
            missing_bytes: missing,
            tcp_client_to_server: half(client).map(|h| (&h.stats).into()).unwrap_or_default(),
            tcp_server_to_client: half(server).map(|h| (&h.stats).into()).unwrap_or_default(),
            unacknowledged,
            stalls: self.stalls,
            preamble: self.preamble,
            tls_secrets,
            capture_ended: open,
            notes: self.notes,
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    #![allow(clippy::cast_possible_truncation)]

    use super::*;
    use crate::capture::synth::{self, Conv, Frame, Framing, Ng};

    fn run(file: &[u8]) -> AnalysisReport {
        analyze_bytes(file, AnalyzeConfig::default()).unwrap()
    }

    fn pcap_of(c: &Conv) -> Vec<u8> {
        synth::pcap(false, false, c.framing.link_type(), &c.frames)
    }

    fn assert_neg_failure(r: &AnalysisReport) {
        assert_eq!(r.connections.len(), 1, "{r:#?}");
        let c = &r.connections[0];
        assert_eq!(c.client.to_string(), "10.0.0.1:50000");
        assert_eq!(c.server.to_string(), "10.0.0.2:3389");
        assert_eq!(
            c.verdict.cause, "nego.ssl_not_allowed_by_server",
            "{:#?}",
            c.verdict
        );
        assert_eq!(c.verdict.phase_reached, Phase::X224);
        assert_eq!(c.verdict.closed_by, Some(Side::Client));
        assert_eq!(c.verdict.close_kind, Some(CloseKind::Fin));
        assert_eq!(c.verdict.facts.cookie.as_deref(), Some("tester"));
        assert_eq!(c.bytes_client_to_server, synth::cr(1).len() as u64);
        assert_eq!(c.bytes_server_to_client, 19);
        assert!(!c.capture_ended);
        assert!(c.gaps.is_empty() && c.preamble.is_none());
        assert_eq!(c.first_seen, "2024-01-01T00:00:00Z");
    }

    #[test]
    fn same_verdict_whatever_the_container_and_link() {
        for framing in [
            Framing::Ethernet,
            Framing::Vlan(vec![100, 200]),
            Framing::RawIp,
            Framing::Null,
            Framing::Sll,
            Framing::Sll2,
        ] {
            let c = synth::neg_failure_conv(framing.clone(), 3389);
            let link = framing.link_type();
            let r = run(&synth::pcap(false, false, link, &c.frames));
            assert_neg_failure(&r);
            if let Framing::Vlan(v) = &framing {
                assert_eq!(&r.connections[0].vlans, v, "QinQ tags");
            }
            // Nanosecond and big-endian pcap.
            assert_neg_failure(&run(&synth::pcap(false, true, link, &c.frames)));
            assert_neg_failure(&run(&synth::pcap(true, false, link, &c.frames)));
        }
    }

    #[test]
    fn pcapng_with_two_link_types_and_gzip() {
        // Client packets on an Ethernet interface, host packets on a raw-IP one (as netsh trace
        // conversions do with one IDB per Windows interface).
        let eth = synth::neg_failure_conv(Framing::Ethernet, 3389);
        let raw = synth::neg_failure_conv(Framing::RawIp, 3389);
        let mut ng = Ng::new();
        ng.shb(false);
        ng.idb(1, None);
        ng.idb(101, Some(9));
        for (i, (e, r)) in eth.frames.iter().zip(&raw.frames).enumerate() {
            // Packets 1, 4, 5 of the script are the host's (SYN/ACK, CC, FIN).
            if [1, 4, 6].contains(&i) {
                ng.epb(1, r.ts_ns as u64, &r.data, None);
            } else {
                ng.epb(0, (e.ts_ns / 1000) as u64, &e.data, None);
            }
        }
        let r = run(&ng.out);
        assert_neg_failure(&r);
        assert_eq!(r.link_types.len(), 2, "{:?}", r.link_types);

        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&ng.out).unwrap();
        let r = run(&enc.finish().unwrap());
        assert!(r.gzip);
        assert_neg_failure(&r);
    }

    /// Out-of-order, duplicated and overlapping segments, and a hole the receiver acknowledged.
    #[test]
    fn messy_tcp_gives_the_same_diagnosis_and_reports_the_gap() {
        let mut c = Conv::new(Framing::Ethernet, 3389);
        c.handshake();
        let cr = synth::cr(1);
        let base = c.cseq;
        let s = |i: usize| base.wrapping_add(i as u32);
        // The CR in three pieces: last first, a duplicate, an overlap.
        c.raw(true, s(20), synth::ACK, &cr[20..]);
        c.raw(true, s(0), synth::ACK, &cr[..12]);
        c.raw(true, s(20), synth::ACK, &cr[20..]);
        c.raw(true, s(8), synth::ACK, &cr[8..24]);
        c.cseq = s(cr.len());
        c.send(false, &synth::cc_failure(2));
        // The host sends 100 more bytes; the capture misses the first 40, the client ACKs all.
        let junk = [0x17u8; 100];
        c.raw(false, c.sseq.wrapping_add(40), synth::ACK, &junk[40..]);
        c.sseq = c.sseq.wrapping_add(100);
        c.raw(true, c.cseq, synth::ACK, &[]);
        c.fin(true);
        c.fin(false);
        let r = run(&pcap_of(&c));
        let a = &r.connections[0];
        assert_eq!(
            a.verdict.cause, "nego.ssl_not_allowed_by_server",
            "{:#?}",
            a.verdict
        );
        assert_eq!(a.bytes_client_to_server, cr.len() as u64);
        assert_eq!(a.gaps.len(), 1, "{:?}", a.gaps);
        assert_eq!(a.gaps[0].dir, Direction::HostToClient);
        assert_eq!((a.gaps[0].offset, a.gaps[0].len), (19, 40));
        assert_eq!(a.gaps[0].reason, GapReason::AckedNotCaptured);
        assert_eq!(a.missing_bytes, 40);
        assert!(a.tcp_client_to_server.retransmitted_segments >= 1);
        assert!(a.tcp_client_to_server.out_of_order_segments >= 1);
        assert!(a.notes.iter().any(|n| n.contains("40 bytes are missing")));
    }

    #[test]
    fn socks5_preamble_on_an_odd_port() {
        let mut c = Conv::new(Framing::Ethernet, 1080);
        c.handshake();
        c.send(true, &[5, 1, 0]);
        c.send(false, &[5, 0]);
        c.send(true, &[5, 1, 0, 1, 10, 0, 0, 9, 0x0d, 0x3d]);
        c.send(false, &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        c.send(true, &synth::cr(0));
        c.send(false, &synth::cc_selected(0));
        let r = run(&pcap_of(&c));
        assert_eq!(r.connections.len(), 1, "{r:#?}");
        let a = &r.connections[0];
        let p = a.preamble.as_ref().unwrap();
        assert_eq!((p.kind, p.client_bytes, p.server_bytes), ("socks5", 13, 12));
        assert_eq!(p.detail.as_deref(), Some("CONNECT 10.0.0.9:3389"));
        assert_eq!(
            a.verdict.facts.selected_protocol.as_deref(),
            Some("RDP(0x0)")
        );
        assert_eq!(a.verdict.outcome, Outcome::Unknown);
        assert!(a.capture_ended);
        assert!(a.notes.iter().any(|n| n.contains("port 1080")));
    }

    #[test]
    fn preconnection_pdu_preamble() {
        let mut c = Conv::new(Framing::Ethernet, 2179);
        c.handshake();
        let mut pdu = Vec::new();
        for v in [16u32, 0, 1, 42] {
            pdu.extend_from_slice(&v.to_le_bytes());
        }
        pdu.extend_from_slice(&synth::cr(3));
        c.send(true, &pdu);
        c.send(false, &synth::cc_failure(5));
        c.rst(false);
        let r = run(&pcap_of(&c));
        let a = &r.connections[0];
        let p = a.preamble.as_ref().unwrap();
        assert_eq!(p.kind, "rdp_preconnection_pdu");
        assert_eq!(p.detail.as_deref(), Some("version 1, Id 42"));
        assert_eq!(a.verdict.cause, "nego.hybrid_required_by_server");
    }

    #[test]
    fn refused_timeout_and_not_rdp() {
        let mut c = Conv::new(Framing::Ethernet, 3389);
        c.raw(true, 1, synth::SYN, &[]);
        c.raw(false, 0, synth::RSTACK, &[]);
        let r = run(&pcap_of(&c));
        assert_eq!(r.connections[0].verdict.cause, "tcp.connect_refused");

        let mut c = Conv::new(Framing::Ethernet, 3389);
        c.raw(true, 1, synth::SYN, &[]);
        c.wait_ms(3000);
        c.raw(true, 1, synth::SYN, &[]);
        let r = run(&pcap_of(&c));
        let a = &r.connections[0];
        assert_eq!(a.verdict.cause, "tcp.connect_timeout", "{:#?}", a.verdict);
        assert!(a.notes.iter().any(|n| n.contains("2 sent")));

        // The client gives up before any answer.
        let mut c = Conv::new(Framing::Ethernet, 3389);
        c.raw(true, 1, synth::SYN, &[]);
        c.wait_ms(500);
        c.raw(true, 2, synth::RSTACK, &[]);
        let r = run(&pcap_of(&c));
        assert_eq!(r.connections[0].verdict.cause, "tcp.connect_failed");

        // The same on another port is not RDP: listed only.
        let mut c = Conv::new(Framing::Ethernet, 445);
        c.raw(true, 1, synth::SYN, &[]);
        c.raw(false, 0, synth::RSTACK, &[]);
        let mut h = Conv::new(Framing::Ethernet, 80);
        h.client.1 = 50001;
        h.handshake();
        h.send(true, b"GET / HTTP/1.1\r\n\r\n");
        h.send(false, b"HTTP/1.1 200 OK\r\n\r\n");
        let mut frames = c.frames.clone();
        frames.extend(h.frames);
        let r = run(&synth::pcap(false, false, 1, &frames));
        assert!(r.connections.is_empty());
        assert_eq!(r.other_tcp.len(), 2);
        assert_eq!(r.other_tcp[0].state, "refused");
        assert_eq!(r.other_tcp[1].looks_like.as_deref(), Some("HTTP"));
        assert_eq!(r.other_tcp[1].stream, 1);
    }

    #[test]
    fn port_reuse_makes_two_connections() {
        let a = synth::neg_failure_conv(Framing::Ethernet, 3389);
        let mut b = synth::neg_failure_conv(Framing::Ethernet, 3389);
        for f in &mut b.frames {
            f.ts_ns += 5_000_000_000;
        }
        // Another ISN for the second connection.
        let mut b2 = Conv::new(Framing::Ethernet, 3389);
        b2.cseq = 777_777;
        b2.ts_ns += 5_000_000_000;
        b2.handshake();
        b2.send(true, &synth::cr(0));
        b2.send(false, &synth::cc_selected(0));
        b2.fin(true);
        b2.fin(false);
        let mut frames = a.frames.clone();
        frames.extend(b2.frames);
        let r = run(&synth::pcap(false, false, 1, &frames));
        assert_eq!(r.connections.len(), 2, "{r:#?}");
        assert_eq!(
            r.connections[0].verdict.cause,
            "nego.ssl_not_allowed_by_server"
        );
        assert_eq!(r.connections[1].stream, 1);
        assert_eq!(
            r.connections[1]
                .verdict
                .facts
                .requested_protocols
                .as_deref(),
            Some("RDP(0x0)")
        );
    }

    #[test]
    fn capture_starting_mid_connection() {
        let mut c = Conv::new(Framing::Ethernet, 3389);
        // No handshake; the host's packet comes first (side 0 is the host).
        c.raw(false, c.sseq, synth::ACK, &[]);
        c.send(true, &synth::cr(1));
        c.send(false, &synth::cc_failure(2));
        c.fin(true);
        c.fin(false);
        let r = run(&pcap_of(&c));
        let a = &r.connections[0];
        assert_eq!(a.client.to_string(), "10.0.0.1:50000");
        assert_eq!(a.verdict.cause, "nego.ssl_not_allowed_by_server");
        assert!(a.notes.iter().any(|n| n.contains("not in the capture")));
    }

    #[test]
    fn silences_are_reported_as_stalls() {
        let mut c = Conv::new(Framing::Ethernet, 3389);
        c.handshake();
        c.send(true, &synth::cr(1));
        c.wait_ms(10_000);
        c.send(false, &synth::cc_failure(2));
        c.fin(true);
        c.fin(false);
        let r = run(&pcap_of(&c));
        let s = &r.connections[0].stalls;
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].phase, Phase::X224);
        assert_eq!(s[0].resumed_by, Some(Side::Host));
        assert!(s[0].idle_s > 9.9 && s[0].idle_s < 10.1);
    }

    #[test]
    fn udp_rdp_is_reported_not_analysed() {
        // RDPEUDP SYN: snSourceAck -1, window, flags SYN (MS-RDPEUDP 2.2.2.1).
        let syn = [0xff, 0xff, 0xff, 0xff, 0x00, 0x40, 0x00, 0x01];
        let d = synth::udp_packet(([10, 0, 0, 1], 55555), ([10, 0, 0, 2], 3389), &syn);
        let r = run(&synth::pcap(
            false,
            false,
            1,
            &[Frame {
                ts_ns: synth::T0,
                data: d,
                orig_len: None,
            }],
        ));
        assert!(r.connections.is_empty());
        assert_eq!(r.rdp_udp.len(), 1);
        assert!(r.rdp_udp[0].rdpeudp_syn);
        assert!(r.warnings.iter().any(|w| w.contains("MS-RDPEUDP")));
    }

    #[test]
    fn truncated_packets_give_the_pktmon_hint() {
        let mut c = synth::neg_failure_conv(Framing::Ethernet, 3389);
        for f in &mut c.frames {
            if f.data.len() > 64 {
                f.orig_len = Some(f.data.len() as u32);
                f.data.truncate(64);
            }
        }
        let r = run(&pcap_of(&c));
        assert!(
            r.warnings.iter().any(|w| w.contains("--pkt-size 0")),
            "{:?}",
            r.warnings
        );
        assert!(r.connections[0].missing_bytes > 0);
    }

    #[test]
    fn key_log_for_the_client_hello_is_found() {
        let random = [0x42u8; 32];
        let mut hello = vec![
            0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03,
        ];
        hello.extend_from_slice(&random);
        hello.extend_from_slice(&[0x00, 0x00, 0x02, 0x00, 0x2f, 0x01, 0x00]);
        let mut c = Conv::new(Framing::Ethernet, 3389);
        c.handshake();
        c.send(true, &synth::cr(1));
        c.send(false, &synth::cc_selected(1));
        c.send(true, &hello);
        let keylog = format!(
            "CLIENT_RANDOM {} {}\n",
            hex::encode(random),
            "ab".repeat(48)
        );
        for (log, expect) in [(keylog.as_str(), true), ("CLIENT_RANDOM 00 11\n", false)] {
            let mut ng = Ng::new();
            ng.shb(false);
            ng.idb(1, Some(9));
            ng.dsb_tls(log.as_bytes());
            for f in &c.frames {
                ng.epb(0, f.ts_ns as u64, &f.data, None);
            }
            let r = run(&ng.out);
            assert_eq!(r.tls_key_log_lines, 1);
            assert_eq!(r.connections[0].tls_secrets, expect);
        }
    }

    #[test]
    fn report_serialises_with_the_verdict_flattened() {
        let r = run(&pcap_of(&synth::neg_failure_conv(Framing::Ethernet, 3389)));
        let v = serde_json::to_value(&r.connections[0]).unwrap();
        assert_eq!(v["cause"], "nego.ssl_not_allowed_by_server");
        assert_eq!(v["client"], "10.0.0.1:50000");
        assert_eq!(v["tls_secrets"], false);
        let whole = serde_json::to_value(&r).unwrap();
        assert_eq!(whole["format"], "pcap (little-endian, microseconds)");
    }

    #[test]
    fn detection_helpers() {
        let cr = synth::cr(1);
        assert_eq!(find_cr(&cr, 1024, false), Search::Found(0));
        assert_eq!(find_cr(&cr[..5], 1024, false), Search::NeedMore);
        let mut pre = b"junk".to_vec();
        pre.extend_from_slice(&cr);
        assert_eq!(find_cr(&pre, 1024, true), Search::Found(4));
        assert_eq!(find_cr(b"GET / HTTP/1.1\r\n", 1024, true), Search::NotFound);
        assert_eq!(find_cr(&[0u8; 2000], 1024, false), Search::NotFound);
        assert_eq!(find_cc(&synth::cc_failure(2), 0, 100), Some(0));
        assert_eq!(looks_like(b"SSH-2.0-x").as_deref(), Some("SSH"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_payloads(
            payloads in proptest::collection::vec(
                (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..120)),
                0..12),
            port in proptest::sample::select(vec![3389u16, 1080]),
        ) {
            let mut c = Conv::new(Framing::Ethernet, port);
            c.handshake();
            c.send(true, &synth::cr(3));
            for (from_client, p) in &payloads {
                c.send(*from_client, p);
            }
            let _ = run(&pcap_of(&c));
        }

        #[test]
        fn never_panics_on_arbitrary_files(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = analyze_bytes(&bytes, AnalyzeConfig::default());
            let mut file = synth::pcap(false, false, 1, &[]);
            file.extend_from_slice(&bytes);
            let _ = analyze_bytes(&file, AnalyzeConfig::default());
        }
    }
}
