//! Passive TLS decoding: the record layer, handshake reassembly, ClientHello, ServerHello,
//! Certificate and Alert (RFC 5246 TLS 1.2, RFC 8446 TLS 1.3; TLS 1.0/1.1 share the framing).
//!
//! In RDP the TLS records follow the X.224 Connection Confirm directly, without TPKT
//! (reference §2.7). Everything here reads **clear** records only: the caller stops feeding a
//! direction's handshake records to the [`HandshakeReassembler`] after that direction's
//! ChangeCipherSpec (TLS ≤ 1.2) or after the ServerHello (TLS 1.3), because what follows is
//! ciphertext that merely looks like handshake bytes.
//!
//! ```text
//! record:    type(1) | legacy_record_version(2) | length(2) | fragment(length)
//! handshake: msg_type(1) | length(3) | body(length)          (may span records)
//! ```
//!
//! Offsets in errors from the `parse_*` functions are relative to the start of the message
//! body; the reassembler reports stream offsets (see [`HandshakeMessage::offset`]).

use serde::{Serialize, Serializer};

use super::cursor::ReadCursor;
use super::{DecodeError, Decoded};

/// Largest record fragment accepted: 2^14 plaintext + 2048 expansion (RFC 5246 §6.2.3; RFC 8446
/// §5.2 allows less, 2^14 + 256, so this cap fits every version).
pub const MAX_RECORD_LEN: usize = 16384 + 2048;
/// Largest single handshake message reassembled (certificate chains of RDP hosts are a few KB;
/// 64 KiB leaves room for long chains without letting a lying length buffer megabytes).
pub const MAX_HANDSHAKE_LEN: usize = 65536;
/// Size of the record header (RFC 5246 §6.2.1, RFC 8446 §5.1).
pub const RECORD_HEADER_LEN: usize = 5;
/// Size of the handshake message header (RFC 5246 §7.4, RFC 8446 §4).
pub const HANDSHAKE_HEADER_LEN: usize = 4;

/// SSL 3.0 (RFC 6101).
pub const SSL3_0: u16 = 0x0300;
/// TLS 1.0 (RFC 2246).
pub const TLS1_0: u16 = 0x0301;
/// TLS 1.1 (RFC 4346).
pub const TLS1_1: u16 = 0x0302;
/// TLS 1.2 (RFC 5246).
pub const TLS1_2: u16 = 0x0303;
/// TLS 1.3 (RFC 8446).
pub const TLS1_3: u16 = 0x0304;

/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3).
pub const EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00ff;
/// TLS_FALLBACK_SCSV (RFC 7507 §2): the client retries with a lowered maximum version.
pub const FALLBACK_SCSV: u16 = 0x5600;

/// ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3).
pub const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// First 7 of the last 8 bytes of a downgrading TLS 1.3 server's random, "DOWNGRD"
/// (RFC 8446 §4.1.3); the 8th byte is 1 (TLS 1.2 negotiated) or 0 (TLS 1.1 or below).
const DOWNGRADE_PREFIX: [u8; 7] = *b"DOWNGRD";

/// Handshake message types (RFC 5246 §7.4, RFC 8446 §4, reference §2.7.2).
pub mod handshake_type {
    pub const HELLO_REQUEST: u8 = 0;
    pub const CLIENT_HELLO: u8 = 1;
    pub const SERVER_HELLO: u8 = 2;
    pub const NEW_SESSION_TICKET: u8 = 4;
    pub const END_OF_EARLY_DATA: u8 = 5;
    pub const ENCRYPTED_EXTENSIONS: u8 = 8;
    pub const CERTIFICATE: u8 = 11;
    pub const SERVER_KEY_EXCHANGE: u8 = 12;
    pub const CERTIFICATE_REQUEST: u8 = 13;
    pub const SERVER_HELLO_DONE: u8 = 14;
    pub const CERTIFICATE_VERIFY: u8 = 15;
    pub const CLIENT_KEY_EXCHANGE: u8 = 16;
    pub const FINISHED: u8 = 20;
    pub const CERTIFICATE_STATUS: u8 = 22;
    pub const KEY_UPDATE: u8 = 24;
    pub const MESSAGE_HASH: u8 = 254;
}

/// Extension types rdpdiag reads (IANA "TLS ExtensionType Values", reference §2.7.3).
pub mod extension_type {
    pub const SERVER_NAME: u16 = 0x0000;
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    pub const EC_POINT_FORMATS: u16 = 0x000b;
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    pub const ALPN: u16 = 0x0010;
    pub const EXTENDED_MASTER_SECRET: u16 = 0x0017;
    pub const SESSION_TICKET: u16 = 0x0023;
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
    pub const PSK_KEY_EXCHANGE_MODES: u16 = 0x002d;
    pub const KEY_SHARE: u16 = 0x0033;
    pub const RENEGOTIATION_INFO: u16 = 0xff01;
}

// ---------------------------------------------------------------------------------------------
// Record layer
// ---------------------------------------------------------------------------------------------

/// TLSPlaintext.type / ContentType (RFC 5246 §6.2.1, RFC 8446 §5.1). Open: unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentType(pub u8);

impl ContentType {
    pub const CHANGE_CIPHER_SPEC: ContentType = ContentType(20);
    pub const ALERT: ContentType = ContentType(21);
    pub const HANDSHAKE: ContentType = ContentType(22);
    pub const APPLICATION_DATA: ContentType = ContentType(23);
    pub const HEARTBEAT: ContentType = ContentType(24);

    /// `handshake`, `alert`, … or `unknown`.
    pub fn name(self) -> &'static str {
        match self.0 {
            20 => "change_cipher_spec",
            21 => "alert",
            22 => "handshake",
            23 => "application_data",
            24 => "heartbeat",
            _ => "unknown",
        }
    }

    /// One of the five types a record may carry (20..=24).
    pub fn is_known(self) -> bool {
        (20..=24).contains(&self.0)
    }
}

impl std::fmt::Display for ContentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl Serialize for ContentType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// The 5-byte record header (RFC 5246 §6.2.1, RFC 8446 §5.1; reference §2.7.1).
///
/// ```text
///  0        1                 3                 5
/// +--------+-----------------+-----------------+-----------
/// | type   | legacy_record_  | length (u16be)  | fragment ...
/// |        | version (u16be) |                 |
/// +--------+-----------------+-----------------+-----------
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecordHeader {
    /// `type`.
    pub content_type: ContentType,
    /// `legacy_record_version` (0x0301 is common on the first ClientHello even for TLS 1.3).
    pub version: u16,
    /// `length` of the fragment that follows the header.
    pub length: u16,
}

impl RecordHeader {
    /// Header plus fragment.
    pub fn total_len(&self) -> usize {
        RECORD_HEADER_LEN.saturating_add(usize::from(self.length))
    }
}

/// Does `buf` start like a TLS record? `None` when no byte is there yet; checks as much of
/// the header as is present (type 20..=24, version major 3).
pub fn looks_like_record(buf: &[u8]) -> Option<bool> {
    let first = *buf.first()?;
    let major_ok = buf.get(1).is_none_or(|&m| m == 3);
    Some(ContentType(first).is_known() && major_ok)
}

/// Reads the record header at the start of `buf`.
///
/// `Ok(None)`: fewer than 5 bytes. `Err`: content type not 20..=24 (offset 0), version major
/// not 3 (offset 1), or length above [`MAX_RECORD_LEN`] (offset 3).
pub fn decode_record_header(buf: &[u8]) -> Decoded<RecordHeader> {
    let Some(&[t, major, minor, l0, l1]) = buf.first_chunk::<RECORD_HEADER_LEN>() else {
        return Ok(None);
    };
    let content_type = ContentType(t);
    if !content_type.is_known() {
        return Err(DecodeError::new(
            0,
            "TLSPlaintext.type",
            "20..=24",
            t.to_string(),
        ));
    }
    if major != 3 {
        return Err(DecodeError::new(
            1,
            "TLSPlaintext.legacy_record_version",
            "major version 3",
            format!("{:#06x}", u16::from_be_bytes([major, minor])),
        ));
    }
    let length = u16::from_be_bytes([l0, l1]);
    if usize::from(length) > MAX_RECORD_LEN {
        return Err(DecodeError::new(
            3,
            "TLSPlaintext.length",
            format!("<= {MAX_RECORD_LEN}"),
            length.to_string(),
        ));
    }
    Ok(Some(RecordHeader {
        content_type,
        version: u16::from_be_bytes([major, minor]),
        length,
    }))
}

/// Splits one whole record off the front of `buf`: `Ok(Some((header, fragment)))`, `Ok(None)`
/// when the record is not all there yet, `Err` for a malformed header.
/// The record occupies `header.total_len()` bytes of `buf`.
pub fn split_record(buf: &[u8]) -> Decoded<(RecordHeader, &[u8])> {
    let Some(h) = decode_record_header(buf)? else {
        return Ok(None);
    };
    Ok(buf
        .get(RECORD_HEADER_LEN..h.total_len())
        .map(|payload| (h, payload)))
}

// ---------------------------------------------------------------------------------------------
// Handshake reassembly
// ---------------------------------------------------------------------------------------------

/// One handshake message (RFC 5246 §7.4, RFC 8446 §4), reassembled from one or more records.
///
/// ```text
///  0          1                       4
/// +----------+-----------------------+-----------
/// | msg_type | length (u24be)        | body ...
/// +----------+-----------------------+-----------
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandshakeMessage {
    /// `msg_type` (see [`handshake_type`]).
    pub msg_type: u8,
    /// The body (`length` bytes, header excluded).
    #[serde(serialize_with = "ser_len")]
    pub body: Vec<u8>,
    /// Stream offset of the 4-byte header.
    pub offset: u64,
}

impl HandshakeMessage {
    /// `client_hello`, `certificate`, …
    pub fn type_name(&self) -> &'static str {
        handshake_type_name(self.msg_type)
    }
}

fn ser_len<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{} byte(s)", b.len()))
}

/// Reassembles handshake messages across records, for one direction (RFC 5246 §6.2.1: "multiple
/// client messages of the same ContentType MAY be coalesced into a single TLSPlaintext record, or
/// a single message MAY be fragmented across several records").
///
/// Push the fragment of each clear handshake record, with the stream offset of that fragment
/// (record start + 5). Memory is bounded: a header claiming more than [`MAX_HANDSHAKE_LEN`] is an
/// error before anything is buffered for it. After an error the buffered bytes are dropped and
/// the next push is taken to start at a message boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeReassembler {
    /// Bytes of messages not yet complete.
    buf: Vec<u8>,
    /// `(position in buf, stream offset)` of each pushed fragment still in `buf`, ascending.
    segments: Vec<(usize, u64)>,
}

impl HandshakeReassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one record fragment; returns every message it completes, in order, or an error for
    /// a lying handshake length (field `Handshake.length`, stream offset of that field).
    pub fn push(
        &mut self,
        payload: &[u8],
        stream_offset: u64,
    ) -> Vec<Result<HandshakeMessage, DecodeError>> {
        if !payload.is_empty() {
            self.segments.push((self.buf.len(), stream_offset));
            self.buf.extend_from_slice(payload);
        }
        let mut out = Vec::new();
        let mut pos = 0usize;
        while let Some(&[msg_type, a, b, c]) = self
            .buf
            .get(pos..)
            .and_then(|r| r.first_chunk::<HANDSHAKE_HEADER_LEN>())
        {
            let len = u32::from_be_bytes([0, a, b, c]);
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > MAX_HANDSHAKE_LEN {
                let at = self.stream_offset_of(pos).saturating_add(1);
                out.push(Err(DecodeError::new(
                    usize::try_from(at).unwrap_or(usize::MAX),
                    "Handshake.length",
                    format!("<= {MAX_HANDSHAKE_LEN}"),
                    len.to_string(),
                )));
                self.reset();
                return out;
            }
            let start = pos.saturating_add(HANDSHAKE_HEADER_LEN);
            let end = start.saturating_add(len);
            let Some(body) = self.buf.get(start..end) else {
                break;
            };
            out.push(Ok(HandshakeMessage {
                msg_type,
                body: body.to_vec(),
                offset: self.stream_offset_of(pos),
            }));
            pos = end;
        }
        self.consume(pos);
        out
    }

    /// Bytes buffered for a message not yet complete. Non-zero when another content type
    /// arrives means the peer interleaved records inside a handshake message (RFC 8446 §5.1
    /// forbids it).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Drops whatever is buffered.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.segments.clear();
    }

    /// Stream offset of position `pos` of `buf`.
    fn stream_offset_of(&self, pos: usize) -> u64 {
        self.segments
            .iter()
            .rev()
            .find(|(start, _)| *start <= pos)
            .map_or(0, |&(start, off)| {
                off.saturating_add(u64::try_from(pos.saturating_sub(start)).unwrap_or(u64::MAX))
            })
    }

    /// Forgets the first `n` bytes of `buf`, keeping the offset map in step.
    fn consume(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let first_kept = self.segments.iter().rposition(|(start, _)| *start <= n);
        let new_origin = self.stream_offset_of(n);
        self.buf.drain(..n.min(self.buf.len()));
        if self.buf.is_empty() {
            self.segments.clear();
            return;
        }
        if let Some(i) = first_kept {
            self.segments.drain(..i);
        }
        for (k, seg) in self.segments.iter_mut().enumerate() {
            if k == 0 {
                *seg = (0, new_origin);
            } else {
                seg.0 = seg.0.saturating_sub(n);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hello messages
// ---------------------------------------------------------------------------------------------

fn ser_hex<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

/// ClientHello (RFC 5246 §7.4.1.2, RFC 8446 §4.1.2; reference §2.7.3).
///
/// ```text
/// legacy_version(2) | random(32) | session_id(u8 len) | cipher_suites(u16 len)
/// | compression_methods(u8 len) | [extensions(u16 len) { type(2) len(2) data }*]
/// ```
/// A broken extension is an entry in `anomalies`, not a failed parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientHello {
    /// `legacy_version` (the maximum version when `supported_versions` is absent).
    pub legacy_version: u16,
    /// `random`.
    #[serde(serialize_with = "ser_hex")]
    pub random: [u8; 32],
    /// Length of `legacy_session_id` (0..=32).
    pub session_id_len: u8,
    /// `cipher_suites`, in the client's order, GREASE and SCSVs included.
    pub cipher_suites: Vec<u16>,
    /// `legacy_compression_methods`.
    pub compression_methods: Vec<u8>,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
    /// `supported_versions` (0x002b) list, empty if absent.
    pub supported_versions: Vec<u16>,
    /// First `host_name` of `server_name` (0x0000).
    pub sni: Option<String>,
    /// `signature_algorithms` (0x000d).
    pub signature_algorithms: Vec<u16>,
    /// `supported_groups` (0x000a).
    pub supported_groups: Vec<u16>,
    /// Groups of the `key_share` (0x0033) entries.
    pub key_share_groups: Vec<u16>,
    /// `application_layer_protocol_negotiation` (0x0010) protocol names.
    pub alpn: Vec<String>,
    /// TLS_FALLBACK_SCSV (0x5600) is in `cipher_suites`.
    pub fallback_scsv: bool,
    /// What did not parse or breaks a rule, with offsets from the start of the body.
    pub anomalies: Vec<String>,
}

impl ClientHello {
    /// Versions the client offers, highest first: `supported_versions` without GREASE if present,
    /// else `legacy_version` and every version below it down to TLS 1.0.
    pub fn offered_versions(&self) -> Vec<u16> {
        let listed: Vec<u16> = self
            .supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .collect();
        if !listed.is_empty() {
            let mut v = listed;
            v.sort_unstable_by(|a, b| b.cmp(a));
            v.dedup();
            return v;
        }
        let [major, minor] = self.legacy_version.to_be_bytes();
        if major != 3 || minor == 0 {
            return vec![self.legacy_version];
        }
        let mut v = Vec::new();
        if minor > 4 {
            v.push(self.legacy_version);
        }
        v.extend((1..=minor.min(4)).rev().map(|m| u16::from_be_bytes([3, m])));
        v
    }

    /// The effective maximum version (reference §2.7.3).
    pub fn max_version(&self) -> u16 {
        self.offered_versions()
            .into_iter()
            .max()
            .unwrap_or(self.legacy_version)
    }

    /// Does the client offer `version`?
    pub fn offers_version(&self, version: u16) -> bool {
        self.offered_versions().contains(&version)
    }
}

/// ServerHello or HelloRetryRequest (RFC 5246 §7.4.1.3, RFC 8446 §4.1.3; reference §2.7.4).
///
/// ```text
/// legacy_version(2) | random(32) | session_id(u8 len) | cipher_suite(2)
/// | compression_method(1) | [extensions(u16 len) { type(2) len(2) data }*]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerHello {
    /// `legacy_version` (0x0303 for TLS 1.3; the real one is `selected_version`).
    pub legacy_version: u16,
    /// `random`.
    #[serde(serialize_with = "ser_hex")]
    pub random: [u8; 32],
    /// Length of `legacy_session_id_echo`.
    pub session_id_len: u8,
    /// `cipher_suite`.
    pub cipher_suite: u16,
    /// `legacy_compression_method` (0).
    pub compression_method: u8,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
    /// `supported_versions` (0x002b) selected version.
    pub selected_version: Option<u16>,
    /// Group of the `key_share` (0x0033) entry (for a HelloRetryRequest: the group asked for).
    pub key_share_group: Option<u16>,
    /// `random` is the HelloRetryRequest value.
    pub is_hello_retry_request: bool,
    /// Last byte of a "DOWNGRD" sentinel at the end of `random`: 1 = a TLS 1.3 server settled for
    /// TLS 1.2, 0 = for TLS 1.1 or below.
    pub downgrade_sentinel: Option<u8>,
    /// What did not parse or breaks a rule, with offsets from the start of the body.
    pub anomalies: Vec<String>,
}

impl ServerHello {
    /// Negotiated version: `selected_version` if present, else `legacy_version`.
    pub fn version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }

    /// TLS 1.3 (or a 1.3 draft) was negotiated: the rest of the handshake is encrypted.
    pub fn is_tls13(&self) -> bool {
        let v = self.version();
        v == TLS1_3 || (0x7f00..=0x7fff).contains(&v)
    }
}

/// Reads `session_id` (u8 length, ≤ 32 by RFC 5246 §7.4.1.2) and returns its length.
fn read_session_id(
    c: &mut ReadCursor<'_>,
    field: &'static str,
    anomalies: &mut Vec<String>,
) -> Result<u8, DecodeError> {
    let at = c.pos();
    let n = c.read_u8(field)?;
    if n > 32 {
        anomalies.push(format!("{field} at offset {at}: length {n} above 32"));
    }
    c.skip(usize::from(n), field)?;
    Ok(n)
}

/// Walks an extension block; `on_ext(type, data, data_offset, anomalies)` reads one body
/// (`data_offset`: where `data` starts in the message body). Framing problems and the body
/// parser's errors (shifted to body offsets) become anomalies.
fn walk_extensions(
    c: &mut ReadCursor<'_>,
    anomalies: &mut Vec<String>,
    mut on_ext: impl FnMut(u16, &[u8], usize, &mut Vec<String>) -> Result<(), DecodeError>,
) -> Vec<u16> {
    let mut types = Vec::new();
    if c.remaining() == 0 {
        return types;
    }
    let base = c.pos();
    let Ok(declared) = c.read_u16_be("extensions length") else {
        anomalies.push(format!(
            "extensions at offset {base}: 1 stray byte where a 2-byte length belongs"
        ));
        return types;
    };
    let declared = usize::from(declared);
    let avail = c.remaining();
    if declared > avail {
        anomalies.push(format!(
            "extensions length at offset {base}: {declared} exceeds the {avail} byte(s) left"
        ));
    } else if declared < avail {
        anomalies.push(format!(
            "{} byte(s) after the extensions at offset {}",
            avail.saturating_sub(declared),
            c.pos().saturating_add(declared)
        ));
    }
    let start = c.pos();
    let block = c.rest().get(..declared.min(avail)).unwrap_or(&[]);
    let mut e = ReadCursor::new(block);
    while e.remaining() > 0 {
        let at = start.saturating_add(e.pos());
        let (Ok(ty), Ok(len)) = (e.read_u16_be("extension_type"), e.read_u16_be("length")) else {
            anomalies.push(format!("extension header at offset {at} is truncated"));
            break;
        };
        let data_at = start.saturating_add(e.pos());
        let Ok(data) = e.read_slice(usize::from(len), "extension_data") else {
            anomalies.push(format!(
                "extension {} at offset {at}: length {len} exceeds the {} byte(s) left",
                extension_name(ty),
                e.remaining()
            ));
            types.push(ty);
            break;
        };
        if types.contains(&ty) {
            anomalies.push(format!(
                "extension {} at offset {at} appears twice",
                extension_name(ty)
            ));
        }
        types.push(ty);
        if let Err(err) = on_ext(ty, data, data_at, anomalies) {
            let err = err.shifted(data_at);
            anomalies.push(format!("extension {}: {err}", extension_name(ty)));
        }
    }
    c.skip(declared.min(avail), "extensions").ok();
    types
}

/// Reads a list of `u16be` values whose byte length is given by a `u8` or `u16be` prefix.
fn read_u16_list(
    c: &mut ReadCursor<'_>,
    wide_len: bool,
    field: &'static str,
) -> Result<Vec<u16>, DecodeError> {
    let at = c.pos();
    let n = if wide_len {
        usize::from(c.read_u16_be(field)?)
    } else {
        usize::from(c.read_u8(field)?)
    };
    if n % 2 != 0 {
        return Err(DecodeError::new(
            at,
            field,
            "an even byte length",
            n.to_string(),
        ));
    }
    Ok(u16_list(c.read_slice(n, field)?))
}

fn u16_list(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .filter_map(|p| <[u8; 2]>::try_from(p).ok())
        .map(u16::from_be_bytes)
        .collect()
}

fn ascii_lossy(b: &[u8], what: &str, at: usize, anomalies: &mut Vec<String>) -> String {
    if !b.is_ascii() {
        anomalies.push(format!("{what} at offset {at} is not ASCII"));
    }
    String::from_utf8_lossy(b).into_owned()
}

/// Decodes a ClientHello body (the handshake message body, header excluded).
///
/// `Err` when the fixed part (version, random, session id, cipher suites, compression
/// methods) is cut or its lengths lie; extension trouble is recorded in `anomalies`.
pub fn parse_client_hello(body: &[u8]) -> Result<ClientHello, DecodeError> {
    let mut c = ReadCursor::new(body);
    let mut anomalies = Vec::new();
    let legacy_version = c.read_u16_be("ClientHello.legacy_version")?;
    let random = c.read_array::<32>("ClientHello.random")?;
    let session_id_len = read_session_id(&mut c, "ClientHello.legacy_session_id", &mut anomalies)?;
    let cs_at = c.pos();
    let cs_len = usize::from(c.read_u16_be("ClientHello.cipher_suites length")?);
    let cs = c
        .read_slice(cs_len, "ClientHello.cipher_suites")
        .map_err(|e| {
            DecodeError::new(
                cs_at,
                "ClientHello.cipher_suites length",
                e.expected,
                e.found,
            )
        })?;
    if cs_len % 2 != 0 {
        anomalies.push(format!(
            "ClientHello.cipher_suites length at offset {cs_at}: {cs_len} is odd"
        ));
    }
    if cs_len == 0 {
        anomalies.push(format!(
            "ClientHello.cipher_suites at offset {cs_at} is empty"
        ));
    }
    let cipher_suites = u16_list(cs);
    let cm_at = c.pos();
    let cm_len = usize::from(c.read_u8("ClientHello.legacy_compression_methods length")?);
    let compression_methods = c
        .read_slice(cm_len, "ClientHello.legacy_compression_methods")
        .map_err(|e| {
            DecodeError::new(
                cm_at,
                "ClientHello.legacy_compression_methods length",
                e.expected,
                e.found,
            )
        })?
        .to_vec();

    let mut ch = ClientHello {
        legacy_version,
        random,
        session_id_len,
        fallback_scsv: cipher_suites.contains(&FALLBACK_SCSV),
        cipher_suites,
        compression_methods,
        extensions: Vec::new(),
        supported_versions: Vec::new(),
        sni: None,
        signature_algorithms: Vec::new(),
        supported_groups: Vec::new(),
        key_share_groups: Vec::new(),
        alpn: Vec::new(),
        anomalies: Vec::new(),
    };
    let types = walk_extensions(&mut c, &mut anomalies, |ty, data, at, anomalies| {
        let mut d = ReadCursor::new(data);
        match ty {
            extension_type::SERVER_NAME => {
                let list_len = usize::from(d.read_u16_be("server_name_list length")?);
                let list = d.read_slice(list_len, "server_name_list")?;
                let mut l = ReadCursor::new(list);
                while l.remaining() > 0 {
                    let name_type = l.read_u8("name_type").map_err(|e| e.shifted(2))?;
                    let n =
                        usize::from(l.read_u16_be("HostName length").map_err(|e| e.shifted(2))?);
                    let name_at = at.saturating_add(2).saturating_add(l.pos());
                    let name = l.read_slice(n, "HostName").map_err(|e| e.shifted(2))?;
                    if name_type == 0 && ch.sni.is_none() {
                        ch.sni = Some(ascii_lossy(name, "server_name", name_at, anomalies));
                    }
                }
            }
            extension_type::SUPPORTED_GROUPS => {
                ch.supported_groups = read_u16_list(&mut d, true, "named_group_list")?;
            }
            extension_type::SIGNATURE_ALGORITHMS => {
                ch.signature_algorithms =
                    read_u16_list(&mut d, true, "supported_signature_algorithms")?;
            }
            extension_type::SUPPORTED_VERSIONS => {
                ch.supported_versions = read_u16_list(&mut d, false, "versions")?;
            }
            extension_type::ALPN => {
                let list_len = usize::from(d.read_u16_be("protocol_name_list length")?);
                let list = d.read_slice(list_len, "protocol_name_list")?;
                let mut l = ReadCursor::new(list);
                while l.remaining() > 0 {
                    let n =
                        usize::from(l.read_u8("ProtocolName length").map_err(|e| e.shifted(2))?);
                    let p_at = at.saturating_add(2).saturating_add(l.pos());
                    let p = l.read_slice(n, "ProtocolName").map_err(|e| e.shifted(2))?;
                    ch.alpn
                        .push(ascii_lossy(p, "ProtocolName", p_at, anomalies));
                }
            }
            extension_type::KEY_SHARE => {
                let list_len = usize::from(d.read_u16_be("client_shares length")?);
                let list = d.read_slice(list_len, "client_shares")?;
                let mut l = ReadCursor::new(list);
                while l.remaining() > 0 {
                    let g = l
                        .read_u16_be("KeyShareEntry.group")
                        .map_err(|e| e.shifted(2))?;
                    let n = usize::from(
                        l.read_u16_be("key_exchange length")
                            .map_err(|e| e.shifted(2))?,
                    );
                    l.skip(n, "key_exchange").map_err(|e| e.shifted(2))?;
                    ch.key_share_groups.push(g);
                }
            }
            _ => {}
        }
        Ok(())
    });
    ch.extensions = types;
    ch.anomalies = anomalies;
    Ok(ch)
}

/// Decodes a ServerHello (or HelloRetryRequest) body.
///
/// `Err` when the fixed part (version, random, session id, suite, compression) is cut;
/// extension trouble is recorded in `anomalies`.
pub fn parse_server_hello(body: &[u8]) -> Result<ServerHello, DecodeError> {
    let mut c = ReadCursor::new(body);
    let mut anomalies = Vec::new();
    let legacy_version = c.read_u16_be("ServerHello.legacy_version")?;
    let random = c.read_array::<32>("ServerHello.random")?;
    let session_id_len =
        read_session_id(&mut c, "ServerHello.legacy_session_id_echo", &mut anomalies)?;
    let cipher_suite = c.read_u16_be("ServerHello.cipher_suite")?;
    let compression_method = c.read_u8("ServerHello.legacy_compression_method")?;
    let is_hello_retry_request = random == HELLO_RETRY_REQUEST_RANDOM;
    let downgrade_sentinel = match random.last_chunk::<8>() {
        Some(&[a, b, c2, d, e, f, g, last])
            if [a, b, c2, d, e, f, g] == DOWNGRADE_PREFIX && last <= 1 =>
        {
            Some(last)
        }
        _ => None,
    };
    let mut selected_version = None;
    let mut key_share_group = None;
    let extensions = walk_extensions(&mut c, &mut anomalies, |ty, data, _, _| {
        let mut d = ReadCursor::new(data);
        match ty {
            extension_type::SUPPORTED_VERSIONS => {
                selected_version = Some(d.read_u16_be("selected_version")?);
            }
            extension_type::KEY_SHARE => {
                key_share_group = Some(d.read_u16_be("KeyShareEntry.group")?);
                if !is_hello_retry_request {
                    let n = usize::from(d.read_u16_be("key_exchange length")?);
                    d.skip(n, "key_exchange")?;
                }
            }
            _ => {}
        }
        Ok(())
    });
    if compression_method != 0 {
        anomalies.push(format!(
            "ServerHello.legacy_compression_method is {compression_method}, not 0"
        ));
    }
    Ok(ServerHello {
        legacy_version,
        random,
        session_id_len,
        cipher_suite,
        compression_method,
        extensions,
        selected_version,
        key_share_group,
        is_hello_retry_request,
        downgrade_sentinel,
        anomalies,
    })
}

// ---------------------------------------------------------------------------------------------
// Certificate
// ---------------------------------------------------------------------------------------------

/// Decodes a Certificate message body into DER certificates, leaf first
/// (RFC 5246 §7.4.2; RFC 8446 §4.4.2 when `tls13`; reference §2.7.5).
///
/// ```text
/// TLS <= 1.2: certificate_list(u24 len) { cert(u24 len) }*
/// TLS 1.3:    certificate_request_context(u8 len) | certificate_list(u24 len)
///             { cert_data(u24 len) | extensions(u16 len) }*
/// ```
/// Bytes after the list are ignored. A list or entry length beyond the bytes present, or an
/// empty entry, is an error naming the field.
pub fn parse_certificate(body: &[u8], tls13: bool) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut c = ReadCursor::new(body);
    if tls13 {
        let n = usize::from(c.read_u8("Certificate.certificate_request_context length")?);
        c.skip(n, "Certificate.certificate_request_context")?;
    }
    let list_at = c.pos();
    let list_len = c.read_u24_be("Certificate.certificate_list length")?;
    let list_len = usize::try_from(list_len).unwrap_or(usize::MAX);
    let list = c
        .read_slice(list_len, "Certificate.certificate_list")
        .map_err(|e| {
            DecodeError::new(
                list_at,
                "Certificate.certificate_list length",
                e.expected,
                e.found,
            )
        })?;
    let base = list_at.saturating_add(3);
    let mut l = ReadCursor::new(list);
    let mut certs = Vec::new();
    while l.remaining() > 0 {
        let at = base.saturating_add(l.pos());
        let n = l
            .read_u24_be("Certificate.cert_data length")
            .map_err(|e| e.shifted(base))?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n == 0 {
            return Err(DecodeError::new(
                at,
                "Certificate.cert_data length",
                ">= 1",
                "0",
            ));
        }
        let der = l.read_slice(n, "Certificate.cert_data").map_err(|e| {
            DecodeError::new(at, "Certificate.cert_data length", e.expected, e.found)
        })?;
        certs.push(der.to_vec());
        if tls13 {
            let ext_at = base.saturating_add(l.pos());
            let e = usize::from(
                l.read_u16_be("CertificateEntry.extensions length")
                    .map_err(|e| e.shifted(base))?,
            );
            l.skip(e, "CertificateEntry.extensions").map_err(|e| {
                DecodeError::new(
                    ext_at,
                    "CertificateEntry.extensions length",
                    e.expected,
                    e.found,
                )
            })?;
        }
    }
    Ok(certs)
}

// ---------------------------------------------------------------------------------------------
// Alert
// ---------------------------------------------------------------------------------------------

/// A clear Alert (RFC 5246 §7.2, RFC 8446 §6; reference §2.7.7, §3.5).
///
/// ```text
/// level(1: 1 warning, 2 fatal) | description(1)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// `level`.
    pub level: u8,
    /// `description`.
    pub description: u8,
}

impl Alert {
    pub const WARNING: u8 = 1;
    pub const FATAL: u8 = 2;

    pub fn is_fatal(&self) -> bool {
        self.level == Self::FATAL
    }

    /// `warning`, `fatal` or `unknown`.
    pub fn level_name(&self) -> &'static str {
        match self.level {
            1 => "warning",
            2 => "fatal",
            _ => "unknown",
        }
    }

    /// See [`alert_name`].
    pub fn name(&self) -> &'static str {
        alert_name(self.description)
    }
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}({})",
            self.level_name(),
            self.name(),
            self.description
        )
    }
}

/// The alert in a clear alert record's fragment: exactly 2 bytes. Anything else (an encrypted
/// alert is 2 + AEAD overhead bytes) is `None`.
pub fn parse_alert(payload: &[u8]) -> Option<Alert> {
    match payload {
        &[level, description] => Some(Alert { level, description }),
        _ => None,
    }
}

/// AlertDescription name (RFC 5246 §7.2, RFC 8446 §6, IANA registry), `unknown` otherwise.
pub fn alert_name(description: u8) -> &'static str {
    match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// HandshakeType name (reference §2.7.2), `unknown` otherwise.
pub fn handshake_type_name(t: u8) -> &'static str {
    match t {
        0 => "hello_request",
        1 => "client_hello",
        2 => "server_hello",
        3 => "hello_verify_request",
        4 => "new_session_ticket",
        5 => "end_of_early_data",
        6 => "hello_retry_request",
        8 => "encrypted_extensions",
        11 => "certificate",
        12 => "server_key_exchange",
        13 => "certificate_request",
        14 => "server_hello_done",
        15 => "certificate_verify",
        16 => "client_key_exchange",
        20 => "finished",
        21 => "certificate_url",
        22 => "certificate_status",
        23 => "supplemental_data",
        24 => "key_update",
        25 => "compressed_certificate",
        254 => "message_hash",
        _ => "unknown",
    }
}

/// GREASE value (RFC 8701): 0x0a0a, 0x1a1a, … 0xfafa. Ignore when judging offers.
pub fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

/// `TLS 1.2`, `SSL 3.0`, `GREASE 0x0a0a`, or the number as `0x7f1c`.
pub fn version_name(v: u16) -> String {
    match v {
        0x0002 => "SSL 2.0".to_owned(),
        SSL3_0 => "SSL 3.0".to_owned(),
        TLS1_0 => "TLS 1.0".to_owned(),
        TLS1_1 => "TLS 1.1".to_owned(),
        TLS1_2 => "TLS 1.2".to_owned(),
        TLS1_3 => "TLS 1.3".to_owned(),
        _ if is_grease(v) => format!("GREASE {v:#06x}"),
        _ => format!("{v:#06x}"),
    }
}

/// IANA cipher-suite name (tls-parser's copy of the registry), or the number as `0x1234`.
pub fn cipher_suite_name(id: u16) -> String {
    match tls_parser::TlsCipherSuite::from_id(id) {
        Some(cs) => cs.name.to_owned(),
        None if is_grease(id) => format!("GREASE {id:#06x}"),
        None => format!("{id:#06x}"),
    }
}

/// Choices a Windows administrator should hear about (reference §3.6, §6.3): no forward
/// secrecy (RSA or static DH key exchange), CBC, RC4, DES/3DES, NULL, EXPORT, anonymous, MD5.
/// Empty for sound suites, signalling values and unknown numbers.
pub fn cipher_suite_weaknesses(id: u16) -> Vec<&'static str> {
    use tls_parser::{TlsCipherAu as Au, TlsCipherEnc as Enc, TlsCipherEncMode as Mode};
    use tls_parser::{TlsCipherKx as Kx, TlsCipherMac as Mac};
    let Some(cs) = tls_parser::TlsCipherSuite::from_id(id) else {
        return Vec::new();
    };
    if cs.name.ends_with("_SCSV") {
        return Vec::new();
    }
    let mut w = Vec::new();
    match cs.kx {
        Kx::Rsa => w.push("RSA key exchange (no forward secrecy)"),
        Kx::Dh | Kx::Ecdh => w.push("static Diffie-Hellman key exchange (no forward secrecy)"),
        _ => {}
    }
    if cs.kx == Kx::Aecdh || (cs.au == Au::Null && cs.kx != Kx::Null) || cs.name.contains("_anon_")
    {
        w.push("anonymous (no server authentication)");
    }
    if cs.name.contains("EXPORT") {
        w.push("EXPORT grade");
    }
    match cs.enc {
        Enc::Null => w.push("NULL encryption"),
        Enc::Rc4 => w.push("RC4"),
        Enc::Des => w.push("DES"),
        Enc::TripleDes => w.push("3DES"),
        Enc::Rc2 => w.push("RC2"),
        _ => {}
    }
    if cs.enc_mode == Mode::Cbc {
        w.push("CBC mode");
    }
    if cs.mac == Mac::HmacMd5 {
        w.push("MD5 MAC");
    }
    w
}

/// SignatureScheme name (RFC 8446 §4.2.3, reference §3.6), or the number.
pub fn signature_scheme_name(v: u16) -> String {
    let s = match v {
        0x0201 => "rsa_pkcs1_sha1",
        0x0203 => "ecdsa_sha1",
        0x0401 => "rsa_pkcs1_sha256",
        0x0501 => "rsa_pkcs1_sha384",
        0x0601 => "rsa_pkcs1_sha512",
        0x0403 => "ecdsa_secp256r1_sha256",
        0x0503 => "ecdsa_secp384r1_sha384",
        0x0603 => "ecdsa_secp521r1_sha512",
        0x0804 => "rsa_pss_rsae_sha256",
        0x0805 => "rsa_pss_rsae_sha384",
        0x0806 => "rsa_pss_rsae_sha512",
        0x0807 => "ed25519",
        0x0808 => "ed448",
        0x0809 => "rsa_pss_pss_sha256",
        0x080a => "rsa_pss_pss_sha384",
        0x080b => "rsa_pss_pss_sha512",
        0x0202 => "dsa_sha1",
        0x0301 => "rsa_sha224",
        0x0303 => "ecdsa_sha224",
        _ if is_grease(v) => return format!("GREASE {v:#06x}"),
        _ => return format!("{v:#06x}"),
    };
    s.to_owned()
}

/// NamedGroup name (RFC 8446 §4.2.7, reference §2.7.3), or the number.
pub fn group_name(v: u16) -> String {
    let s = match v {
        0x0017 => "secp256r1",
        0x0018 => "secp384r1",
        0x0019 => "secp521r1",
        0x001d => "x25519",
        0x001e => "x448",
        0x0100 => "ffdhe2048",
        0x0101 => "ffdhe3072",
        0x0102 => "ffdhe4096",
        0x0103 => "ffdhe6144",
        0x0104 => "ffdhe8192",
        0x11ec => "X25519MLKEM768",
        _ if is_grease(v) => return format!("GREASE {v:#06x}"),
        _ => return format!("{v:#06x}"),
    };
    s.to_owned()
}

/// ExtensionType name (IANA), or the number.
pub fn extension_name(v: u16) -> String {
    let s = match v {
        0x0000 => "server_name",
        0x0005 => "status_request",
        0x000a => "supported_groups",
        0x000b => "ec_point_formats",
        0x000d => "signature_algorithms",
        0x0010 => "application_layer_protocol_negotiation",
        0x0012 => "signed_certificate_timestamp",
        0x0015 => "padding",
        0x0016 => "encrypt_then_mac",
        0x0017 => "extended_master_secret",
        0x001b => "compress_certificate",
        0x0023 => "session_ticket",
        0x0029 => "pre_shared_key",
        0x002a => "early_data",
        0x002b => "supported_versions",
        0x002d => "psk_key_exchange_modes",
        0x0031 => "post_handshake_auth",
        0x0032 => "signature_algorithms_cert",
        0x0033 => "key_share",
        0xff01 => "renegotiation_info",
        _ if is_grease(v) => return format!("GREASE {v:#06x}"),
        _ => return format!("{v:#06x}"),
    };
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference §2.7.3 worked example E6: a ClientHello offering TLS 1.3 and 1.2 (199 bytes).
    #[rustfmt::skip]
    const E6: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0xc2,                   // record: handshake, 0x0301, length 194
        0x01, 0x00, 0x00, 0xbe,                         // ClientHello, length 190
        0x03, 0x03,                                     // legacy_version TLS 1.2
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, // random 00..1f
        0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
        0x00,                                           // session_id length 0
        0x00, 0x10,                                     // cipher_suites length 16 (8 suites)
        0xc0, 0x2c, 0xc0, 0x2b, 0xc0, 0x30, 0xc0, 0x2f, //   ECDHE-ECDSA/RSA-AES-GCM
        0x13, 0x02, 0x13, 0x01,                         //   TLS 1.3 suites
        0x00, 0x9d, 0x00, 0x9c,                         //   RSA-AES-GCM
        0x01, 0x00,                                     // compression: null only
        0x00, 0x85,                                     // extensions length 133
        0x00, 0x00, 0x00, 0x1b, 0x00, 0x19, 0x00, 0x00, // server_name, 27; list 25; host_name
        0x16,                                           //   name length 22
        b'r', b'd', b's', b'0', b'1', b'.', b'c', b'o', //   "rds01.corp.example.com"
        b'r', b'p', b'.', b'e', b'x', b'a', b'm', b'p',
        b'l', b'e', b'.', b'c', b'o', b'm',
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06,             // supported_groups, 8; list 6
        0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,             //   x25519, P-256, P-384
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,             // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x14, 0x00, 0x12,             // signature_algorithms, 20; list 18
        0x08, 0x04, 0x04, 0x01, 0x04, 0x03, 0x08, 0x05, //   9 schemes ...
        0x05, 0x01, 0x05, 0x03, 0x08, 0x06, 0x06, 0x01,
        0x02, 0x01,                                     //   ... last rsa_pkcs1_sha1
        0x00, 0x17, 0x00, 0x00,                         // extended_master_secret
        0xff, 0x01, 0x00, 0x01, 0x00,                   // renegotiation_info (empty)
        0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, // supported_versions: TLS 1.3,
        0x03,                                           //   TLS 1.2
        0x00, 0x33, 0x00, 0x26, 0x00, 0x24,             // key_share, 38; list 36
        0x00, 0x1d, 0x00, 0x20,                         //   x25519, 32-byte key
        0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
        0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f,
        0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f,
    ];
    /// Where the extensions begin in E6's ClientHello body (record 5 + handshake 4 = 9).
    const E6_EXT_IN_BODY: usize = 0x40 - 9;

    /// Reference §2.7.4 worked example E8: a TLS 1.3 ServerHello (95 bytes).
    #[rustfmt::skip]
    const E8: &[u8] = &[
        0x16, 0x03, 0x03, 0x00, 0x5a,                   // record: handshake, 0x0303, length 90
        0x02, 0x00, 0x00, 0x56,                         // ServerHello, length 86
        0x03, 0x03,                                     // legacy_version 0x0303
        0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, // random 40..5f
        0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f,
        0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57,
        0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f,
        0x00,                                           // session_id echo length 0
        0x13, 0x02,                                     // TLS_AES_256_GCM_SHA384
        0x00,                                           // compression null
        0x00, 0x2e,                                     // extensions length 46
        0x00, 0x2b, 0x00, 0x02, 0x03, 0x04,             // supported_versions: TLS 1.3
        0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, // key_share x25519, 32-byte key
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
        0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
        0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
    ];
    /// Reference §2.7.7 E9a: fatal handshake_failure, record version 0x0303.
    const E9A: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
    /// Reference §2.7.7 E9b: fatal protocol_version, record version 0x0301.
    const E9B: &[u8] = &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46];

    fn one_message(record: &[u8]) -> HandshakeMessage {
        let (h, payload) = split_record(record).unwrap().unwrap();
        assert_eq!(h.content_type, ContentType::HANDSHAKE);
        let mut r = HandshakeReassembler::new();
        let mut msgs = r.push(payload, 5);
        assert_eq!(msgs.len(), 1);
        assert_eq!(r.pending(), 0);
        msgs.remove(0).unwrap()
    }

    #[test]
    fn e6_client_hello() {
        assert_eq!(E6.len(), 199);
        let h = decode_record_header(E6).unwrap().unwrap();
        assert_eq!(
            h,
            RecordHeader {
                content_type: ContentType::HANDSHAKE,
                version: TLS1_0,
                length: 194
            }
        );
        let m = one_message(E6);
        assert_eq!((m.msg_type, m.body.len(), m.offset), (1, 190, 5));
        assert_eq!(m.type_name(), "client_hello");
        let ch = parse_client_hello(&m.body).unwrap();
        assert_eq!(ch.legacy_version, TLS1_2);
        assert_eq!(
            ch.random,
            core::array::from_fn(|i| u8::try_from(i).unwrap())
        );
        assert_eq!(ch.session_id_len, 0);
        assert_eq!(
            ch.cipher_suites,
            [
                0xc02c, 0xc02b, 0xc030, 0xc02f, 0x1302, 0x1301, 0x009d, 0x009c
            ]
        );
        assert_eq!(ch.compression_methods, [0]);
        assert_eq!(ch.sni.as_deref(), Some("rds01.corp.example.com"));
        assert_eq!(ch.supported_groups, [0x001d, 0x0017, 0x0018]);
        assert_eq!(ch.signature_algorithms.len(), 9);
        assert_eq!(ch.signature_algorithms.last(), Some(&0x0201));
        assert_eq!(ch.supported_versions, [TLS1_3, TLS1_2]);
        assert_eq!(ch.key_share_groups, [0x001d]);
        assert_eq!(
            ch.extensions,
            [
                0x0000, 0x000a, 0x000b, 0x000d, 0x0017, 0xff01, 0x002b, 0x0033
            ]
        );
        assert!(!ch.fallback_scsv);
        assert!(ch.anomalies.is_empty(), "{:?}", ch.anomalies);
        assert_eq!(ch.offered_versions(), [TLS1_3, TLS1_2]);
        assert_eq!(ch.max_version(), TLS1_3);
        assert!(!ch.offers_version(TLS1_0));
        let json = serde_json::to_value(&ch).unwrap();
        assert_eq!(
            json["random"],
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
    }

    #[test]
    fn e8_server_hello() {
        assert_eq!(E8.len(), 95);
        let m = one_message(E8);
        assert_eq!((m.msg_type, m.body.len()), (2, 86));
        let sh = parse_server_hello(&m.body).unwrap();
        assert_eq!(sh.legacy_version, TLS1_2);
        assert_eq!(sh.random[0], 0x40);
        assert_eq!(sh.cipher_suite, 0x1302);
        assert_eq!(sh.selected_version, Some(TLS1_3));
        assert_eq!(sh.version(), TLS1_3);
        assert!(sh.is_tls13());
        assert_eq!(sh.key_share_group, Some(0x001d));
        assert!(!sh.is_hello_retry_request);
        assert_eq!(sh.downgrade_sentinel, None);
        assert_eq!(sh.extensions, [0x002b, 0x0033]);
        assert!(sh.anomalies.is_empty(), "{:?}", sh.anomalies);
        assert_eq!(cipher_suite_name(sh.cipher_suite), "TLS_AES_256_GCM_SHA384");
    }

    #[test]
    fn hello_retry_request_and_downgrade_sentinel() {
        let mut body = E8[9..].to_vec();
        body[2..34].copy_from_slice(&HELLO_RETRY_REQUEST_RANDOM);
        // An HRR key_share is just the group; rewrite the 40-byte entry as `00 33 00 02 00 1d`.
        body.truncate(body.len() - 40);
        body.extend_from_slice(&[0x00, 0x33, 0x00, 0x02, 0x00, 0x1d]);
        let ext_len = u16::try_from(body.len() - 40).unwrap();
        body[38..40].copy_from_slice(&ext_len.to_be_bytes());
        let sh = parse_server_hello(&body).unwrap();
        assert!(sh.is_hello_retry_request);
        assert_eq!(sh.key_share_group, Some(0x001d));
        assert!(sh.anomalies.is_empty(), "{:?}", sh.anomalies);

        let mut body = E8[9..].to_vec();
        body[26..34].copy_from_slice(b"DOWNGRD\x01");
        body[38..40].copy_from_slice(&[0, 0]);
        body.truncate(40);
        body[0..2].copy_from_slice(&TLS1_2.to_be_bytes());
        let sh = parse_server_hello(&body).unwrap();
        assert_eq!(sh.downgrade_sentinel, Some(1));
        assert_eq!(sh.version(), TLS1_2);
        assert!(!sh.is_tls13());
    }

    #[test]
    fn e9_alerts() {
        let (h, p) = split_record(E9A).unwrap().unwrap();
        assert_eq!(
            (h.content_type, h.version, h.length),
            (ContentType::ALERT, TLS1_2, 2)
        );
        let a = parse_alert(p).unwrap();
        assert_eq!(
            a,
            Alert {
                level: 2,
                description: 40
            }
        );
        assert!(a.is_fatal());
        assert_eq!(a.to_string(), "fatal handshake_failure(40)");
        let (h, p) = split_record(E9B).unwrap().unwrap();
        assert_eq!(h.version, TLS1_0);
        let a = parse_alert(p).unwrap();
        assert_eq!((a.level_name(), a.name()), ("fatal", "protocol_version"));
        // Encrypted alerts are longer than 2 bytes and are not read.
        assert_eq!(parse_alert(&[0u8; 26]), None);
        assert_eq!(parse_alert(&[2]), None);
    }

    #[test]
    fn every_cut_of_a_record_needs_more_bytes() {
        for rec in [E6, E8, E9A, E9B] {
            for n in 0..rec.len() {
                assert_eq!(split_record(&rec[..n]), Ok(None), "cut at {n}");
            }
            let (h, p) = split_record(rec).unwrap().unwrap();
            assert_eq!(h.total_len(), rec.len());
            assert_eq!(p.len(), rec.len() - 5);
        }
    }

    #[test]
    fn every_cut_of_a_client_hello_body_is_an_error_or_an_anomaly() {
        let body = &E6[9..];
        for n in 0..body.len() {
            let r = parse_client_hello(&body[..n]);
            match n.cmp(&E6_EXT_IN_BODY) {
                std::cmp::Ordering::Less => assert!(r.is_err(), "cut at {n}: {r:?}"),
                // Exactly the fixed part: a legal ClientHello without extensions.
                std::cmp::Ordering::Equal => {
                    let ch = r.unwrap();
                    assert!(ch.extensions.is_empty() && ch.anomalies.is_empty());
                }
                std::cmp::Ordering::Greater => {
                    let ch = r.unwrap();
                    assert!(!ch.anomalies.is_empty(), "cut at {n}");
                }
            }
        }
    }

    #[test]
    fn every_cut_of_a_server_hello_body_is_an_error_or_an_anomaly() {
        let body = &E8[9..];
        let fixed = 2 + 32 + 1 + 2 + 1;
        for n in 0..body.len() {
            let r = parse_server_hello(&body[..n]);
            if n < fixed {
                assert!(r.is_err(), "cut at {n}");
            } else if n == fixed {
                assert!(r.unwrap().anomalies.is_empty());
            } else {
                assert!(!r.unwrap().anomalies.is_empty(), "cut at {n}");
            }
        }
    }

    #[test]
    fn fixed_field_errors_name_the_field_and_offset() {
        let e = parse_client_hello(&E6[9..9 + 20]).unwrap_err();
        assert_eq!((e.field, e.offset), ("ClientHello.random", 2));
        // cipher_suites length 0xfff0: more than is there.
        let mut body = E6[9..].to_vec();
        body[35..37].copy_from_slice(&[0xff, 0xf0]);
        let e = parse_client_hello(&body).unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("ClientHello.cipher_suites length", 35)
        );
    }

    #[test]
    fn broken_extension_is_an_anomaly_not_a_failure() {
        // supported_versions list length 5 (odd): the extension is recorded as broken.
        let mut body = E6[9..].to_vec();
        let sv = 0x94 - 9 + 4; // the u8 list length of supported_versions
        assert_eq!(body[sv], 4);
        body[sv] = 3;
        let ch = parse_client_hello(&body).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("rds01.corp.example.com"));
        assert!(ch.supported_versions.is_empty());
        assert_eq!(ch.anomalies.len(), 1, "{:?}", ch.anomalies);
        assert!(ch.anomalies[0].contains("supported_versions"));
        assert!(
            ch.anomalies[0].contains(&format!("offset {sv}")),
            "{}",
            ch.anomalies[0]
        );
        // Falls back to legacy_version when the list is unusable.
        assert_eq!(ch.offered_versions(), [TLS1_2, TLS1_1, TLS1_0]);
    }

    #[test]
    fn lying_record_header_fields() {
        let e = decode_record_header(&[0x16, 0x03, 0x03, 0x48, 0x01]).unwrap_err();
        assert_eq!((e.field, e.offset), ("TLSPlaintext.length", 3));
        assert_eq!(e.found, "18433");
        assert!(
            decode_record_header(&[0x17, 0x03, 0x03, 0x48, 0x00])
                .unwrap()
                .is_some()
        );
        let e = decode_record_header(&[0x03, 0x00, 0x00, 0x13, 0x0e]).unwrap_err();
        assert_eq!((e.field, e.offset), ("TLSPlaintext.type", 0));
        let e = decode_record_header(&[0x16, 0x02, 0x00, 0x00, 0x01]).unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("TLSPlaintext.legacy_record_version", 1)
        );
        assert_eq!(looks_like_record(&[0x03]), Some(false));
        assert_eq!(looks_like_record(&[0x16]), Some(true));
        assert_eq!(looks_like_record(&[0x16, 0x02]), Some(false));
        assert_eq!(looks_like_record(&[]), None);
    }

    #[test]
    fn lying_handshake_length_is_an_error_without_buffering() {
        let mut r = HandshakeReassembler::new();
        // A certificate claiming 16 MiB - 1, at stream offset 100.
        let out = r.push(&[0x0b, 0xff, 0xff, 0xff, 0x00, 0x00], 100);
        assert_eq!(out.len(), 1);
        let e = out[0].clone().unwrap_err();
        assert_eq!((e.field, e.offset), ("Handshake.length", 101));
        assert_eq!(e.found, "16777215");
        assert_eq!(r.pending(), 0);
        // Exactly the cap is allowed (and waited for).
        let cap = u32::try_from(MAX_HANDSHAKE_LEN).unwrap().to_be_bytes();
        assert!(r.push(&[0x0b, cap[1], cap[2], cap[3]], 0).is_empty());
        assert_eq!(r.pending(), 4);
    }

    #[test]
    fn message_split_over_records_and_coalesced_messages() {
        let body = &E6[5..];
        for cut in 0..=body.len() {
            let mut r = HandshakeReassembler::new();
            // Record 1 at stream 1000 carries body[..cut]; record 2 (after a 5-byte header)
            // carries the rest.
            let mut msgs = r.push(&body[..cut], 1005);
            let off2 = 1005 + u64::try_from(cut).unwrap() + 5;
            msgs.extend(r.push(&body[cut..], off2));
            assert_eq!(msgs.len(), 1, "cut {cut}");
            let m = msgs[0].clone().unwrap();
            assert_eq!(m.body, E6[9..]);
            // The header is in record 1 unless the cut put it wholly in record 2.
            assert_eq!(m.offset, if cut == 0 { off2 } else { 1005 }, "cut {cut}");
            assert_eq!(r.pending(), 0);
        }
        // Three messages split over three records, the second header straddling records.
        let flight: Vec<u8> = [
            &[0x02, 0x00, 0x00, 0x03, 0xaa, 0xbb, 0xcc][..], // server_hello (3)
            &[0x0b, 0x00, 0x00, 0x02, 0x11, 0x22],           // certificate (2)
            &[0x0e, 0x00, 0x00, 0x00],                       // server_hello_done
        ]
        .concat();
        let mut r = HandshakeReassembler::new();
        let mut got = r.push(&flight[..9], 5);
        assert_eq!(r.pending(), 2);
        got.extend(r.push(&flight[9..12], 5 + 9 + 5));
        got.extend(r.push(&flight[12..], 5 + 9 + 5 + 3 + 5));
        let got: Vec<(u8, Vec<u8>, u64)> = got
            .into_iter()
            .map(|m| m.map(|m| (m.msg_type, m.body, m.offset)).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                (2, vec![0xaa, 0xbb, 0xcc], 5),
                (11, vec![0x11, 0x22], 12),
                (14, vec![], 5 + 9 + 5 + 3 + 5 + 1),
            ]
        );
        // All three in one record.
        let mut r = HandshakeReassembler::new();
        let got = r.push(&flight, 5);
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].as_ref().unwrap().offset, 5 + 13);
    }

    #[test]
    fn certificate_bodies() {
        // TLS 1.2: list 13 = (3 + 4 "AAAA") + (3 + 3 "BBB").
        let body = [0, 0, 13, 0, 0, 4, 1, 2, 3, 4, 0, 0, 3, 5, 6, 7];
        assert_eq!(
            parse_certificate(&body, false).unwrap(),
            [vec![1, 2, 3, 4], vec![5, 6, 7]]
        );
        // TLS 1.3: empty context, list 9 = 3 + 4 + 2 (no extensions).
        let body13 = [0, 0, 0, 9, 0, 0, 4, 1, 2, 3, 4, 0, 0];
        assert_eq!(
            parse_certificate(&body13, true).unwrap(),
            [vec![1, 2, 3, 4]]
        );
        // Read as TLS 1.2, the empty context byte and the list length's first 2 bytes form an
        // empty list; what follows is ignored.
        assert_eq!(
            parse_certificate(&body13, false).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        // Empty list (a client with no certificate).
        assert_eq!(
            parse_certificate(&[0, 0, 0], false).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        // Lying lengths.
        let e = parse_certificate(&[0, 0xff, 0xff, 0, 0], false).unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("Certificate.certificate_list length", 0)
        );
        let e = parse_certificate(&[0, 0, 5, 0, 0, 9, 1, 2], false).unwrap_err();
        assert_eq!((e.field, e.offset), ("Certificate.cert_data length", 3));
        let e = parse_certificate(&[0, 0, 3, 0, 0, 0], false).unwrap_err();
        assert_eq!((e.field, e.offset), ("Certificate.cert_data length", 3));
        for n in 0..body.len() {
            assert!(parse_certificate(&body[..n], false).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(version_name(0x0303), "TLS 1.2");
        assert_eq!(version_name(0x0300), "SSL 3.0");
        assert_eq!(version_name(0x0304), "TLS 1.3");
        assert_eq!(version_name(0x7f1c), "0x7f1c");
        assert_eq!(version_name(0x3a3a), "GREASE 0x3a3a");
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a1a) && !is_grease(0x0303));
        assert_eq!(cipher_suite_name(0x009d), "TLS_RSA_WITH_AES_256_GCM_SHA384");
        assert_eq!(
            cipher_suite_name(0xc030),
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        );
        assert_eq!(cipher_suite_name(0x5600), "TLS_FALLBACK_SCSV");
        assert_eq!(cipher_suite_name(0x1234), "0x1234");
        assert_eq!(alert_name(70), "protocol_version");
        assert_eq!(alert_name(46), "certificate_unknown");
        assert_eq!(alert_name(200), "unknown");
        assert_eq!(handshake_type_name(11), "certificate");
        assert_eq!(handshake_type_name(99), "unknown");
        assert_eq!(signature_scheme_name(0x0804), "rsa_pss_rsae_sha256");
        assert_eq!(group_name(0x001d), "x25519");
        assert_eq!(extension_name(0x002b), "supported_versions");
        assert_eq!(ContentType(22).to_string(), "handshake(22)");
        assert_eq!(ContentType(99).name(), "unknown");
    }

    #[test]
    fn weaknesses() {
        assert_eq!(
            cipher_suite_weaknesses(0x009d),
            ["RSA key exchange (no forward secrecy)"]
        );
        assert_eq!(
            cipher_suite_weaknesses(0x002f),
            ["RSA key exchange (no forward secrecy)", "CBC mode"]
        );
        assert!(cipher_suite_weaknesses(0xc030).is_empty());
        assert!(cipher_suite_weaknesses(0x1301).is_empty());
        assert!(cipher_suite_weaknesses(0xc013).contains(&"CBC mode"));
        assert!(cipher_suite_weaknesses(0x0005).contains(&"RC4"));
        assert!(cipher_suite_weaknesses(0x000a).contains(&"3DES"));
        assert!(cipher_suite_weaknesses(0x0003).contains(&"EXPORT grade"));
        assert!(cipher_suite_weaknesses(0x0002).contains(&"NULL encryption"));
        assert!(cipher_suite_weaknesses(0x0004).contains(&"MD5 MAC"));
        assert!(cipher_suite_weaknesses(0x0018).contains(&"anonymous (no server authentication)"));
        assert!(cipher_suite_weaknesses(0x5600).is_empty());
        assert!(cipher_suite_weaknesses(0x00ff).is_empty());
        assert!(cipher_suite_weaknesses(0x1234).is_empty());
    }

    #[test]
    fn offered_versions_without_supported_versions() {
        let mut body = E6[9..].to_vec();
        body.truncate(E6_EXT_IN_BODY);
        body[0..2].copy_from_slice(&TLS1_0.to_be_bytes());
        let ch = parse_client_hello(&body).unwrap();
        assert_eq!(ch.offered_versions(), [TLS1_0]);
        assert_eq!(ch.max_version(), TLS1_0);
        body[0..2].copy_from_slice(&SSL3_0.to_be_bytes());
        assert_eq!(
            parse_client_hello(&body).unwrap().offered_versions(),
            [SSL3_0]
        );
    }

    #[test]
    fn fallback_scsv_and_grease() {
        let mut body = E6[9..].to_vec();
        // Replace suite 0x009c with TLS_FALLBACK_SCSV and TLS 1.3 in supported_versions with GREASE.
        let last_suite = 35 + 2 + 14;
        body[last_suite..last_suite + 2].copy_from_slice(&[0x56, 0x00]);
        let sv = 0x94 - 9 + 5;
        body[sv..sv + 2].copy_from_slice(&[0x4a, 0x4a]);
        let ch = parse_client_hello(&body).unwrap();
        assert!(ch.fallback_scsv);
        assert_eq!(ch.supported_versions, [0x4a4a, TLS1_2]);
        assert_eq!(ch.offered_versions(), [TLS1_2]);
        assert_eq!(ch.max_version(), TLS1_2);
    }

    // --- real captures (tests/fixtures/tls/*.bin, made by extract.sh there) ---

    /// Records of one direction: (header, fragment, stream offset of the fragment).
    fn records(stream: &[u8]) -> Vec<(RecordHeader, &[u8], u64)> {
        let mut out = Vec::new();
        let mut pos = 0usize;
        while let Some((h, p)) = split_record(&stream[pos..]).unwrap() {
            out.push((h, p, u64::try_from(pos + 5).unwrap()));
            pos += h.total_len();
        }
        assert_eq!(pos, stream.len(), "the fixture ends on a record boundary");
        out
    }

    /// Clear handshake messages of one direction: stop at its ChangeCipherSpec.
    fn clear_handshake(stream: &[u8]) -> Vec<HandshakeMessage> {
        let mut r = HandshakeReassembler::new();
        let mut msgs = Vec::new();
        for (h, p, off) in records(stream) {
            if h.content_type == ContentType::CHANGE_CIPHER_SPEC {
                break;
            }
            if h.content_type == ContentType::HANDSHAKE {
                msgs.extend(r.push(p, off).into_iter().map(Result::unwrap));
            }
        }
        assert_eq!(r.pending(), 0);
        msgs
    }

    fn fixture(name: &str) -> Vec<u8> {
        let p = format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn zeek_no_cookie_capture() {
        let client = fixture("zeek_no_cookie.client.bin");
        let server = fixture("zeek_no_cookie.server.bin");
        let c = clear_handshake(&client);
        let types: Vec<u8> = c.iter().map(|m| m.msg_type).collect();
        assert_eq!(types, [1, 16]);
        let ch = parse_client_hello(&c[0].body).unwrap();
        assert_eq!(ch.legacy_version, TLS1_2);
        assert_eq!(ch.sni, None);
        assert_eq!(ch.offered_versions(), [TLS1_2, TLS1_1, TLS1_0]);
        assert!(ch.cipher_suites.contains(&0x009d));
        assert!(ch.anomalies.is_empty(), "{:?}", ch.anomalies);

        let s = clear_handshake(&server);
        let types: Vec<u8> = s.iter().map(|m| m.msg_type).collect();
        // RSA key exchange: no ServerKeyExchange.
        assert_eq!(types, [2, 11, 14]);
        assert_eq!(s[0].offset, 5);
        let sh = parse_server_hello(&s[0].body).unwrap();
        assert_eq!((sh.version(), sh.cipher_suite), (TLS1_2, 0x009d));
        assert_eq!(
            cipher_suite_weaknesses(sh.cipher_suite),
            ["RSA key exchange (no forward secrecy)"]
        );
        let certs = parse_certificate(&s[1].body, false).unwrap();
        assert_eq!(certs.len(), 1);
        let sum = crate::wire::x509::summarize(&certs[0]).unwrap();
        assert_eq!(
            sum.subject_cn.as_deref(),
            Some("CLK-456040-D.one.phoenix.gov")
        );
        // Zeek ssl.log fingerprint of this certificate.
        assert_eq!(
            sum.sha256_fingerprint,
            "2f24fa5efe1c62447b32aa41af38c4176d03a62ca9c3c8d491946ed283b86cca"
        );
        // Both directions end with CCS + an encrypted Finished in a handshake record.
        let last: Vec<ContentType> = records(&server).iter().map(|r| r.0.content_type).collect();
        assert_eq!(
            last[last.len() - 2..],
            [ContentType::CHANGE_CIPHER_SPEC, ContentType::HANDSHAKE]
        );
    }

    #[test]
    fn ndpi_rdp_capture() {
        let client = fixture("ndpi_rdp.client.bin");
        let server = fixture("ndpi_rdp.server.bin");
        let recs = records(&client);
        assert_eq!(recs[0].0.version, TLS1_0);
        let c = clear_handshake(&client);
        let ch = parse_client_hello(&c[0].body).unwrap();
        assert_eq!(ch.legacy_version, TLS1_2);
        assert_eq!(ch.sni.as_deref(), Some("192.168.2.142"));
        assert!(ch.anomalies.is_empty(), "{:?}", ch.anomalies);
        assert_eq!(c[1].msg_type, handshake_type::CLIENT_KEY_EXCHANGE);

        let s = clear_handshake(&server);
        let types: Vec<u8> = s.iter().map(|m| m.msg_type).collect();
        assert_eq!(types, [2, 11, 12, 14]);
        let sh = parse_server_hello(&s[0].body).unwrap();
        assert_eq!((sh.version(), sh.cipher_suite), (TLS1_2, 0xc030));
        assert!(cipher_suite_weaknesses(sh.cipher_suite).is_empty());
        let certs = parse_certificate(&s[1].body, false).unwrap();
        let sum = crate::wire::x509::summarize(&certs[0]).unwrap();
        assert_eq!(sum.subject_cn.as_deref(), Some("OFFICE-WIN10-VM"));
        // After the handshake only application data (CredSSP, then the 4-byte EUA result).
        let recs = records(&server);
        let last = recs.last().unwrap();
        assert_eq!(
            (last.0.content_type, last.0.length),
            (ContentType::APPLICATION_DATA, 28)
        );
    }

    // --- no panic on any input ---

    proptest! {
        #[test]
        fn split_record_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some((h, p))) = split_record(&buf) {
                prop_assert_eq!(p.len(), usize::from(h.length));
                prop_assert!(usize::from(h.length) <= MAX_RECORD_LEN);
            }
        }

        #[test]
        fn parsers_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_client_hello(&buf);
            let _ = parse_server_hello(&buf);
            let _ = parse_certificate(&buf, false);
            let _ = parse_certificate(&buf, true);
            let _ = parse_alert(&buf);
        }

        #[test]
        fn mutated_hellos_never_panic(i in 0usize..199, v in any::<u8>()) {
            let mut rec = E6.to_vec();
            rec[i] = v;
            let _ = parse_client_hello(&rec[9..]);
            let mut rec = E8.to_vec();
            let j = i % E8.len();
            rec[j] = v;
            let _ = parse_server_hello(&rec[9..]);
        }

        #[test]
        fn reassembler_never_panics(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 0..8)) {
            let mut r = HandshakeReassembler::new();
            let mut off = 0u64;
            for c in &chunks {
                for m in r.push(c, off).into_iter().flatten() {
                    prop_assert!(m.body.len() <= MAX_HANDSHAKE_LEN);
                    // A completed message's header was pushed before the end of this fragment.
                    prop_assert!(m.offset < off + u64::try_from(c.len()).unwrap());
                }
                off += u64::try_from(c.len()).unwrap() + 5;
            }
        }

        /// However a run of messages is cut into records, the same messages come out, with the
        /// header offsets they have in the stream.
        #[test]
        fn same_messages_however_split(
            msgs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..50)), 1..5),
            cuts in proptest::collection::vec(1usize..40, 0..10),
        ) {
            let mut flight = Vec::new();
            for (t, b) in &msgs {
                flight.push(*t);
                flight.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes()[1..]);
                flight.extend_from_slice(b);
            }
            // Stream: records of the cut sizes (each with a 5-byte header before it).
            let mut r = HandshakeReassembler::new();
            let mut got = Vec::new();
            let (mut pos, mut stream_off) = (0usize, 0u64);
            // flight position -> stream offset, to check the reported header offsets.
            let mut map = vec![0u64; flight.len()];
            let mut sizes = cuts.clone();
            sizes.push(flight.len());
            for size in sizes {
                if pos >= flight.len() { break; }
                let end = (pos + size).min(flight.len());
                let frag_off = stream_off + 5;
                for (k, slot) in map[pos..end].iter_mut().enumerate() {
                    *slot = frag_off + u64::try_from(k).unwrap();
                }
                got.extend(r.push(&flight[pos..end], frag_off).into_iter().map(Result::unwrap));
                stream_off = frag_off + u64::try_from(end - pos).unwrap();
                pos = end;
            }
            prop_assert_eq!(r.pending(), 0);
            prop_assert_eq!(got.len(), msgs.len());
            let mut at = 0usize;
            for (m, (t, b)) in got.iter().zip(&msgs) {
                prop_assert_eq!(m.msg_type, *t);
                prop_assert_eq!(&m.body, b);
                prop_assert_eq!(m.offset, map[at]);
                at += 4 + b.len();
            }
        }
    }
}
