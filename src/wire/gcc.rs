//! T.124 GCC Conference Create Request/Response as RDP uses them, and the RDP user-data blocks
//! they carry (MS-RDPBCGR 2.2.1.3 client data, 2.2.1.4 server data; reference §2.13–2.15, §3.11,
//! §3.12).
//!
//! ```text
//! MCS userData OCTET STRING
//! +-----------------------+----------+-------------------------+-----+-------+--------------+
//! | 00 05 00 14 7C 00 01  | PER len  | CCrq / CCrsp PER header | key | PER   | TS_UD blocks |
//! | t124Identifier (OID)  | connPDU  | (fixed bytes in practice)| (*) | len   |  ...         |
//! +-----------------------+----------+-------------------------+-----+-------+--------------+
//! (*) H.221 non-standard key: "Duca" (client to server) or "McDn" (server to client)
//!
//! TS_UD block: | type u16le | length u16le (header included) | body ... |
//! ```
//!
//! The PER wrapper is not decoded field by field: real encoders put wrong inner lengths there
//! (Windows writes a bogus connectPDU length, which the client must ignore, MS-RDPBCGR
//! 3.2.5.3.4), so the decoder locates the H.221 key and trusts the length that follows it and the
//! block headers. Inside a block, a length that does not fit is an anomaly, not an error: the
//! rest of the data still tells `session/` what it needs.
//!
//! Offsets in returned structs are relative to the start of the MCS PDU: callers pass the
//! position of the GCC bytes in it as `base`.

use serde::{Serialize, Serializer};

use super::DecodeError;
use super::cursor::ReadCursor;
use super::x224::Protocols;

/// CS_CORE (MS-RDPBCGR 2.2.1.3.2).
pub const CS_CORE: u16 = 0xC001;
/// CS_SECURITY (2.2.1.3.3).
pub const CS_SECURITY: u16 = 0xC002;
/// CS_NET (2.2.1.3.4).
pub const CS_NET: u16 = 0xC003;
/// CS_CLUSTER (2.2.1.3.5).
pub const CS_CLUSTER: u16 = 0xC004;
/// CS_MONITOR (2.2.1.3.6).
pub const CS_MONITOR: u16 = 0xC005;
/// CS_MCS_MSGCHANNEL (2.2.1.3.7).
pub const CS_MCS_MSGCHANNEL: u16 = 0xC006;
/// CS_MONITOR_EX (2.2.1.3.9).
pub const CS_MONITOR_EX: u16 = 0xC008;
/// CS_MULTITRANSPORT (2.2.1.3.8).
pub const CS_MULTITRANSPORT: u16 = 0xC00A;
/// CS_UNUSED1.
pub const CS_UNUSED1: u16 = 0xC00C;
/// SC_CORE (2.2.1.4.2).
pub const SC_CORE: u16 = 0x0C01;
/// SC_SECURITY (2.2.1.4.3).
pub const SC_SECURITY: u16 = 0x0C02;
/// SC_NET (2.2.1.4.4).
pub const SC_NET: u16 = 0x0C03;
/// SC_MCS_MSGCHANNEL (2.2.1.4.5).
pub const SC_MCS_MSGCHANNEL: u16 = 0x0C04;
/// SC_MULTITRANSPORT (2.2.1.4.6).
pub const SC_MULTITRANSPORT: u16 = 0x0C08;

/// H.221 non-standard key of the client's user data (T.124 via MS-RDPBCGR 2.2.1.3).
pub const KEY_CLIENT: &[u8; 4] = b"Duca";
/// H.221 non-standard key of the server's user data (MS-RDPBCGR 2.2.1.4).
pub const KEY_SERVER: &[u8; 4] = b"McDn";

/// t124Identifier: OBJECT IDENTIFIER 0.0.20.124.0.1, PER-encoded with its length.
const T124_OID: [u8; 7] = [0x00, 0x05, 0x00, 0x14, 0x7C, 0x00, 0x01];
/// How far into the GCC bytes the H.221 key may be: OID (7) + connectPDU length (2) + the
/// CCrq/CCrsp header (about 12) leaves a wide margin at 64.
const KEY_SEARCH_WINDOW: usize = 64;
/// Size of a TS_UD_HEADER: type u16le + length u16le.
const UD_HEADER_LEN: usize = 4;

/// encryptionMethod(s) (MS-RDPBCGR 2.2.1.3.3, 2.2.1.4.3; reference §3.11). The client sends a
/// bit set, the server picks one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EncryptionMethods(pub u32);

impl EncryptionMethods {
    /// ENCRYPTION_METHOD_NONE.
    pub const NONE: EncryptionMethods = EncryptionMethods(0);
    /// ENCRYPTION_METHOD_40BIT: RC4 with a 40-bit effective key.
    pub const BIT_40: EncryptionMethods = EncryptionMethods(0x1);
    /// ENCRYPTION_METHOD_128BIT: RC4 128-bit.
    pub const BIT_128: EncryptionMethods = EncryptionMethods(0x2);
    /// ENCRYPTION_METHOD_56BIT: RC4 with a 56-bit effective key.
    pub const BIT_56: EncryptionMethods = EncryptionMethods(0x8);
    /// ENCRYPTION_METHOD_FIPS: 3DES-CBC + SHA-1 HMAC.
    pub const FIPS: EncryptionMethods = EncryptionMethods(0x10);

    const NAMES: [(u32, &'static str); 4] = [
        (0x1, "40BIT"),
        (0x2, "128BIT"),
        (0x8, "56BIT"),
        (0x10, "FIPS"),
    ];

    pub fn contains(self, other: EncryptionMethods) -> bool {
        self.0 & other.0 == other.0
    }

    /// `40BIT|128BIT`, `NONE` for 0, unknown bits as hex.
    pub fn names(self) -> String {
        if self.0 == 0 {
            return "NONE".to_owned();
        }
        let mut parts: Vec<String> = Vec::new();
        let mut rest = self.0;
        for (bit, name) in Self::NAMES {
            if self.0 & bit != 0 {
                parts.push(name.to_owned());
                rest &= !bit;
            }
        }
        if rest != 0 {
            parts.push(format!("{rest:#x}"));
        }
        parts.join("|")
    }
}

impl std::fmt::Display for EncryptionMethods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({:#x})", self.names(), self.0)
    }
}

impl Serialize for EncryptionMethods {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// encryptionLevel of the server security data (MS-RDPBCGR 2.2.1.4.3; reference §3.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EncryptionLevel(pub u32);

impl EncryptionLevel {
    /// ENCRYPTION_LEVEL_NONE: required under TLS/NLA, "no encryption" under Standard RDP Security.
    pub const NONE: EncryptionLevel = EncryptionLevel(0);
    /// ENCRYPTION_LEVEL_LOW: client-to-server data only.
    pub const LOW: EncryptionLevel = EncryptionLevel(1);
    /// ENCRYPTION_LEVEL_CLIENT_COMPATIBLE: both ways, the client's strongest method.
    pub const CLIENT_COMPATIBLE: EncryptionLevel = EncryptionLevel(2);
    /// ENCRYPTION_LEVEL_HIGH: both ways, 128-bit only.
    pub const HIGH: EncryptionLevel = EncryptionLevel(3);
    /// ENCRYPTION_LEVEL_FIPS: both ways, FIPS only.
    pub const FIPS: EncryptionLevel = EncryptionLevel(4);

    /// `CLIENT_COMPATIBLE` etc.; `None` for a value the spec does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NONE",
            1 => "LOW",
            2 => "CLIENT_COMPATIBLE",
            3 => "HIGH",
            4 => "FIPS",
            _ => return None,
        })
    }
}

impl std::fmt::Display for EncryptionLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({})", self.0),
            None => write!(f, "unknown({:#x})", self.0),
        }
    }
}

impl Serialize for EncryptionLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Kind of the server certificate in SC_SECURITY: the low 31 bits of dwVersion
/// (MS-RDPBCGR 2.2.1.4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    /// CERT_CHAIN_VERSION_1: proprietary certificate (2.2.1.4.3.1.1).
    Proprietary,
    /// CERT_CHAIN_VERSION_2: X.509 chain (2.2.1.4.3.1 / 2.2.1.4.3.2).
    X509,
    /// Any other version value, kept.
    Unknown(u32),
}

/// A stretch of bytes, offset relative to the start of the MCS PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteSpan {
    pub offset: usize,
    pub len: usize,
}

/// CS_CORE, Client Core Data (MS-RDPBCGR 2.2.1.3.2). Only the fields a diagnosis needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCore {
    /// version: 0x00080001 RDP 4.0, 0x00080004 RDP 5.0+, ... (reference §3.12).
    pub version: u32,
    /// desktopWidth.
    pub desktop_width: u16,
    /// desktopHeight.
    pub desktop_height: u16,
    /// keyboardLayout (0x409 = en-US).
    pub keyboard_layout: u32,
    /// clientBuild: the client's OS/application build.
    pub client_build: u32,
    /// clientName, UTF-16LE up to the first NUL (personal data: the client's computer name).
    pub client_name: String,
    /// serverSelectedProtocol: the client's echo of the CC's selectedProtocol; absent in old
    /// clients' shorter blocks.
    pub server_selected_protocol: Option<Protocols>,
    /// Offset of serverSelectedProtocol relative to the MCS start, for patching the echo.
    pub server_selected_protocol_offset: Option<usize>,
    /// earlyCapabilityFlags (RNS_UD_CS_*, reference §3.12).
    pub early_capability_flags: Option<u16>,
}

/// CS_SECURITY, Client Security Data (MS-RDPBCGR 2.2.1.3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientSecurity {
    /// encryptionMethods: what the client supports for Standard RDP Security.
    pub encryption_methods: EncryptionMethods,
    /// extEncryptionMethods: French-locale clients put their set here instead.
    pub ext_encryption_methods: u32,
}

impl ClientSecurity {
    /// The methods the client offers: the OR of both fields, as the spec says to read them.
    pub fn offered(&self) -> EncryptionMethods {
        EncryptionMethods(self.encryption_methods.0 | self.ext_encryption_methods)
    }
}

/// SC_CORE, Server Core Data (MS-RDPBCGR 2.2.1.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerCore {
    /// version (reference §3.12).
    pub version: u32,
    /// clientRequestedProtocols: the requestedProtocols the server received in the CR.
    pub client_requested_protocols: Option<Protocols>,
    /// offset relative to the MCS start, for patching the echo
    pub client_requested_protocols_offset: Option<usize>,
    /// earlyCapabilityFlags (RNS_UD_SC_*, reference §3.12).
    pub early_capability_flags: Option<u32>,
}

/// SC_SECURITY, Server Security Data (MS-RDPBCGR 2.2.1.4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerSecurity {
    /// encryptionMethod: one value, 0 under TLS/NLA.
    pub encryption_method: EncryptionMethods,
    /// encryptionLevel: 0 under TLS/NLA.
    pub encryption_level: EncryptionLevel,
    /// serverRandomLen (0 when absent).
    pub server_random_len: u32,
    /// serverCertLen (0 when absent).
    pub server_cert_len: u32,
    /// From the certificate's dwVersion.
    pub cert_kind: Option<CertKind>,
    /// dwVersion bit 31: the certificate is temporary.
    pub cert_temporary: bool,
    /// The serverCertificate bytes, when they fit in the block.
    pub cert: Option<ByteSpan>,
    /// Proprietary certificate: the RSA key's bit length (RSA1 blob bitlen).
    pub proprietary_key_bits: Option<u32>,
    /// X.509 chain: each DER certificate, in order (the last one carries the server key).
    pub x509_chain: Vec<ByteSpan>,
}

/// SC_NET, Server Network Data (MS-RDPBCGR 2.2.1.4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerNet {
    /// MCSChannelId: the I/O channel (normally 1003).
    pub io_channel: u16,
    /// channelIdArray: the IDs of the client's static channels, in CS_NET order.
    pub channel_ids: Vec<u16>,
}

/// The client data blocks of a Conference Create Request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ClientData {
    pub core: Option<ClientCore>,
    pub security: Option<ClientSecurity>,
    /// CS_NET channel names.
    pub channels: Vec<String>,
    /// CS_CLUSTER Flags (redirection support, session ID valid ...).
    pub cluster_flags: Option<u32>,
    /// CS_MULTITRANSPORT flags: the client may open UDP side channels.
    pub multitransport_flags: Option<u32>,
    pub anomalies: Vec<String>,
}

/// The server data blocks of a Conference Create Response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ServerData {
    /// ConferenceCreateResponse.result (0 success), when the PER header has the usual shape.
    pub gcc_result: Option<u8>,
    pub core: Option<ServerCore>,
    pub security: Option<ServerSecurity>,
    pub net: Option<ServerNet>,
    /// SC_MULTITRANSPORT flags: the server offers UDP transports.
    pub multitransport_flags: Option<u32>,
    pub anomalies: Vec<String>,
}

/// Decodes the GCC ConnectData + ConferenceCreateRequest (the userData of an MCS
/// Connect-Initial, reference §2.13) and the client blocks in it. `base` is the offset of `gcc`
/// in the MCS PDU.
///
/// Errors only when the user-data length after the "Duca" key claims more than is present or
/// cannot be read; every other oddity is an anomaly.
pub fn decode_conference_create_request(
    gcc: &[u8],
    base: usize,
) -> Result<ClientData, DecodeError> {
    let mut anomalies = Vec::new();
    let blocks = locate_user_data(gcc, base, KEY_CLIENT, true, &mut anomalies)?;
    let mut data = match blocks {
        Some((start, bytes)) => decode_client_blocks(bytes, start),
        None => ClientData::default(),
    };
    anomalies.append(&mut data.anomalies);
    data.anomalies = anomalies;
    Ok(data)
}

/// Decodes the GCC ConnectData + ConferenceCreateResponse (the userData of an MCS
/// Connect-Response, reference §2.15) and the server blocks in it. `base` is the offset of `gcc`
/// in the MCS PDU.
///
/// The connectPDU length is ignored, as MS-RDPBCGR 3.2.5.3.4 requires of a client.
pub fn decode_conference_create_response(
    gcc: &[u8],
    base: usize,
) -> Result<ServerData, DecodeError> {
    let mut anomalies = Vec::new();
    let gcc_result = response_result(gcc);
    if let Some(r) = gcc_result.filter(|&r| r != 0) {
        anomalies.push(format!(
            "gcc ConferenceCreateResponse result {r} ({})",
            gcc_result_name(r)
        ));
    }
    let blocks = locate_user_data(gcc, base, KEY_SERVER, false, &mut anomalies)?;
    let mut data = match blocks {
        Some((start, bytes)) => decode_server_blocks(bytes, start),
        None => ServerData::default(),
    };
    data.gcc_result = gcc_result;
    anomalies.append(&mut data.anomalies);
    data.anomalies = anomalies;
    Ok(data)
}

/// T.124 ConferenceCreateResponse result names.
pub fn gcc_result_name(result: u8) -> &'static str {
    match result {
        0 => "success",
        1 => "userRejected",
        2 => "resourcesNotAvailable",
        3 => "rejectedForSymmetryBreaking",
        4 => "lockedConferenceNotSupported",
        _ => "unknown",
    }
}

/// Finds the H.221 key and returns (offset in the MCS PDU, bytes) of the user data after it.
///
/// `Ok(None)` (with an anomaly) when there is no key: the data is not RDP's, but the MCS PDU
/// around it is still worth reporting.
fn locate_user_data<'a>(
    gcc: &'a [u8],
    base: usize,
    key: &[u8; 4],
    is_request: bool,
    anomalies: &mut Vec<String>,
) -> Result<Option<(usize, &'a [u8])>, DecodeError> {
    let mut c = ReadCursor::new(gcc);
    if gcc.starts_with(&T124_OID) {
        c.skip(T124_OID.len(), "t124Identifier")?;
        if is_request {
            let at = c.pos();
            match read_per_length(&mut c, "connectPDU length") {
                Ok(len) if len != c.remaining() => anomalies.push(format!(
                    "gcc connectPDU length {len} at offset {}, but {} byte(s) follow",
                    base + at,
                    c.remaining()
                )),
                Ok(_) => {}
                Err(e) => anomalies.push(format!("gcc {}", e.shifted(base))),
            }
        }
    } else {
        anomalies.push(format!(
            "gcc t124Identifier at offset {base} is not 0.0.20.124.0.1"
        ));
    }
    let window = gcc.get(..KEY_SEARCH_WINDOW.min(gcc.len())).unwrap_or(gcc);
    let Some(key_at) = window.windows(key.len()).position(|w| w == key) else {
        anomalies.push(format!(
            "gcc user data at offset {base} has no H.221 key {:?}",
            String::from_utf8_lossy(key)
        ));
        return Ok(None);
    };
    let mut c = ReadCursor::new(gcc);
    c.skip(key_at + key.len(), "H.221 key")?;
    let len_at = c.pos();
    let field = if is_request {
        "ConferenceCreateRequest.userData.length"
    } else {
        "ConferenceCreateResponse.userData.length"
    };
    let len = read_per_length(&mut c, field).map_err(|e| e.shifted(base))?;
    if len > c.remaining() {
        return Err(DecodeError::new(
            base + len_at,
            field,
            format!("<= {} (bytes present)", c.remaining()),
            len.to_string(),
        ));
    }
    if len < c.remaining() {
        anomalies.push(format!(
            "{} trailing byte(s) after the gcc user data at offset {}",
            c.remaining() - len,
            base + c.pos() + len
        ));
    }
    let start = c.pos();
    let bytes = c.read_slice(len, field)?;
    Ok(Some((base + start, bytes)))
}

/// The ConferenceCreateResponse result when the PER header has the shape every RDP server
/// emits: `14` choice, nodeID (2), tag (PER integer), result (1).
fn response_result(gcc: &[u8]) -> Option<u8> {
    let mut c = ReadCursor::new(gcc.strip_prefix(&T124_OID)?);
    read_per_length(&mut c, "connectPDU length").ok()?;
    // ConnectGCCPDU choice 1 (conferenceCreateResponse) << 4, no extension bit.
    if c.read_u8("ConnectGCCPDU").ok()? != 0x14 {
        return None;
    }
    c.skip(2, "nodeID").ok()?;
    let tag_len = c.read_u8("tag length").ok()?;
    c.skip(usize::from(tag_len), "tag").ok()?;
    c.read_u8("result").ok()
}

/// PER length determinant (X.691 10.9, aligned): `0xxxxxxx` or `10xxxxxx xxxxxxxx`.
/// Fragmented lengths (`11xxxxxx`) never occur in RDP's connect PDUs and are refused.
pub(crate) fn read_per_length(
    c: &mut ReadCursor<'_>,
    field: &'static str,
) -> Result<usize, DecodeError> {
    let at = c.pos();
    let b = c.read_u8(field)?;
    match b {
        0x00..=0x7F => Ok(usize::from(b)),
        0x80..=0xBF => {
            let lo = c.read_u8(field)?;
            Ok(usize::from(b & 0x3F) << 8 | usize::from(lo))
        }
        _ => Err(DecodeError::new(
            at,
            field,
            "a PER length below 16384",
            format!("fragmented length byte {b:#04x}"),
        )),
    }
}

/// One TS_UD block: its type, the offset of its header in the MCS PDU, and its whole bytes
/// (header included).
struct Block<'a> {
    kind: u16,
    at: usize,
    bytes: &'a [u8],
}

/// Walks TS_UD blocks (reference §2.14): stops, with an anomaly, at a length below 4 or past the
/// end.
fn walk_blocks<'a>(blocks: &'a [u8], base: usize, anomalies: &mut Vec<String>) -> Vec<Block<'a>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < blocks.len() {
        let rest = blocks.get(pos..).unwrap_or_default();
        let at = base + pos;
        let (Some(kind), Some(len)) = (u16_at(rest, 0), u16_at(rest, 2)) else {
            anomalies.push(format!(
                "{} stray byte(s) at offset {at} after the user-data blocks",
                rest.len()
            ));
            break;
        };
        let len = usize::from(len);
        if len < UD_HEADER_LEN || len > rest.len() {
            anomalies.push(format!(
                "user-data block {kind:#06x} at offset {at}: length {len} (field at offset {}) \
                 does not fit the {} byte(s) left",
                at + 2,
                rest.len()
            ));
            break;
        }
        out.push(Block {
            kind,
            at,
            bytes: rest.get(..len).unwrap_or_default(),
        });
        pos += len;
    }
    out
}

/// Decodes the client data blocks (the bytes after the "Duca" key and its length). `base` is
/// their offset in the MCS PDU. Never fails: problems are anomalies.
pub fn decode_client_blocks(blocks: &[u8], base: usize) -> ClientData {
    let mut data = ClientData::default();
    for b in walk_blocks(blocks, base, &mut data.anomalies) {
        let dup = match b.kind {
            CS_CORE => {
                let core = client_core(&b, &mut data.anomalies);
                replace(&mut data.core, core)
            }
            CS_SECURITY => {
                let sec = client_security(&b, &mut data.anomalies);
                replace(&mut data.security, sec)
            }
            CS_NET => {
                let dup = !data.channels.is_empty();
                data.channels = client_net(&b, &mut data.anomalies);
                dup
            }
            CS_CLUSTER => {
                let flags = body_u32(&b, 0, "CS_CLUSTER.Flags", &mut data.anomalies);
                replace(&mut data.cluster_flags, flags)
            }
            CS_MULTITRANSPORT => {
                let flags = body_u32(&b, 0, "CS_MULTITRANSPORT.flags", &mut data.anomalies);
                replace(&mut data.multitransport_flags, flags)
            }
            // Recognised and not needed for a diagnosis; unknown types are skipped as well.
            _ => false,
        };
        if dup {
            data.anomalies.push(format!(
                "block {:#06x} at offset {} repeats an earlier one; the last one is kept",
                b.kind, b.at
            ));
        }
    }
    data
}

/// Decodes the server data blocks (the bytes after the "McDn" key and its length). `base` is
/// their offset in the MCS PDU. Never fails: problems are anomalies.
pub fn decode_server_blocks(blocks: &[u8], base: usize) -> ServerData {
    let mut data = ServerData::default();
    for b in walk_blocks(blocks, base, &mut data.anomalies) {
        let dup = match b.kind {
            SC_CORE => {
                let core = server_core(&b, &mut data.anomalies);
                replace(&mut data.core, core)
            }
            SC_SECURITY => {
                let sec = server_security(&b, &mut data.anomalies);
                replace(&mut data.security, sec)
            }
            SC_NET => {
                let net = server_net(&b, &mut data.anomalies);
                replace(&mut data.net, net)
            }
            SC_MULTITRANSPORT => {
                let flags = body_u32(&b, 0, "SC_MULTITRANSPORT.flags", &mut data.anomalies);
                replace(&mut data.multitransport_flags, flags)
            }
            _ => false,
        };
        if dup {
            data.anomalies.push(format!(
                "block {:#06x} at offset {} repeats an earlier one; the last one is kept",
                b.kind, b.at
            ));
        }
    }
    data
}

/// Stores `new` when it is `Some`; says whether a value was there already.
fn replace<T>(slot: &mut Option<T>, new: Option<T>) -> bool {
    let had = slot.is_some();
    if new.is_some() {
        *slot = new;
    }
    had
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// A u32le at `off` from the start of the block body, or an anomaly naming the field.
fn body_u32(b: &Block<'_>, off: usize, field: &str, anomalies: &mut Vec<String>) -> Option<u32> {
    let v = u32_at(b.bytes, UD_HEADER_LEN + off);
    if v.is_none() {
        anomalies.push(format!(
            "{field} at offset {}: block of {} byte(s) is too short",
            b.at + UD_HEADER_LEN + off,
            b.bytes.len()
        ));
    }
    v
}

/// UTF-16LE up to the first NUL; unpaired surrogates become U+FFFD.
fn utf16z(b: &[u8]) -> String {
    let units = b
        .chunks_exact(2)
        .map(|p| u16_at(p, 0).unwrap_or(0))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// CS_CORE offsets from the block header (reference §2.14).
mod cs_core {
    pub(super) const VERSION: usize = 4;
    pub(super) const DESKTOP_WIDTH: usize = 8;
    pub(super) const DESKTOP_HEIGHT: usize = 10;
    pub(super) const KEYBOARD_LAYOUT: usize = 16;
    pub(super) const CLIENT_BUILD: usize = 20;
    pub(super) const CLIENT_NAME: usize = 24;
    pub(super) const CLIENT_NAME_LEN: usize = 32;
    /// End of the mandatory fields (after imeFileName).
    pub(super) const MANDATORY_END: usize = 132;
    pub(super) const EARLY_CAPABILITY_FLAGS: usize = 144;
    pub(super) const SERVER_SELECTED_PROTOCOL: usize = 212;
}

fn client_core(b: &Block<'_>, anomalies: &mut Vec<String>) -> Option<ClientCore> {
    use cs_core::*;
    let bytes = b.bytes;
    let name_end = CLIENT_NAME + CLIENT_NAME_LEN;
    let (Some(version), Some(w), Some(h), Some(kbd), Some(build), Some(name)) = (
        u32_at(bytes, VERSION),
        u16_at(bytes, DESKTOP_WIDTH),
        u16_at(bytes, DESKTOP_HEIGHT),
        u32_at(bytes, KEYBOARD_LAYOUT),
        u32_at(bytes, CLIENT_BUILD),
        bytes.get(CLIENT_NAME..name_end),
    ) else {
        anomalies.push(format!(
            "CS_CORE at offset {}: {} byte(s), too short for clientName (needs {name_end})",
            b.at,
            bytes.len()
        ));
        return None;
    };
    if bytes.len() < MANDATORY_END {
        anomalies.push(format!(
            "CS_CORE at offset {}: {} byte(s), shorter than its {MANDATORY_END} mandatory bytes",
            b.at,
            bytes.len()
        ));
    }
    let selected = u32_at(bytes, SERVER_SELECTED_PROTOCOL);
    Some(ClientCore {
        version,
        desktop_width: w,
        desktop_height: h,
        keyboard_layout: kbd,
        client_build: build,
        client_name: utf16z(name),
        server_selected_protocol: selected.map(Protocols),
        server_selected_protocol_offset: selected.map(|_| b.at + SERVER_SELECTED_PROTOCOL),
        early_capability_flags: u16_at(bytes, EARLY_CAPABILITY_FLAGS),
    })
}

fn client_security(b: &Block<'_>, anomalies: &mut Vec<String>) -> Option<ClientSecurity> {
    let methods = body_u32(b, 0, "CS_SECURITY.encryptionMethods", anomalies)?;
    let ext = body_u32(b, 4, "CS_SECURITY.extEncryptionMethods", anomalies).unwrap_or(0);
    Some(ClientSecurity {
        encryption_methods: EncryptionMethods(methods),
        ext_encryption_methods: ext,
    })
}

/// Channel names of CS_NET: channelCount × CHANNEL_DEF { name[8], options u32le }.
fn client_net(b: &Block<'_>, anomalies: &mut Vec<String>) -> Vec<String> {
    const CHANNEL_DEF_LEN: usize = 12;
    /// MS-RDPBCGR 2.2.1.3.4: at most 31 static channels.
    const MAX_CHANNELS: u32 = 31;
    let Some(count) = body_u32(b, 0, "CS_NET.channelCount", anomalies) else {
        return Vec::new();
    };
    if count > MAX_CHANNELS {
        anomalies.push(format!(
            "CS_NET.channelCount at offset {} is {count}, above the limit of {MAX_CHANNELS}",
            b.at + UD_HEADER_LEN
        ));
    }
    let defs = b.bytes.get(UD_HEADER_LEN + 4..).unwrap_or_default();
    let present = defs.len() / CHANNEL_DEF_LEN;
    let wanted = usize::try_from(count).unwrap_or(usize::MAX);
    if wanted > present {
        anomalies.push(format!(
            "CS_NET.channelCount at offset {} is {count}, but the block holds {present}",
            b.at + UD_HEADER_LEN
        ));
    }
    // Never more than the bytes hold, whatever channelCount claims.
    defs.chunks_exact(CHANNEL_DEF_LEN)
        .take(wanted)
        .map(|d| {
            let name = d.get(..8).unwrap_or_default();
            let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            String::from_utf8_lossy(name.get(..end).unwrap_or_default()).into_owned()
        })
        .collect()
}

fn server_core(b: &Block<'_>, anomalies: &mut Vec<String>) -> Option<ServerCore> {
    let version = body_u32(b, 0, "SC_CORE.version", anomalies)?;
    let requested = u32_at(b.bytes, 8);
    Some(ServerCore {
        version,
        client_requested_protocols: requested.map(Protocols),
        client_requested_protocols_offset: requested.map(|_| b.at + 8),
        early_capability_flags: u32_at(b.bytes, 12),
    })
}

fn server_net(b: &Block<'_>, anomalies: &mut Vec<String>) -> Option<ServerNet> {
    let (Some(io_channel), Some(count)) = (u16_at(b.bytes, 4), u16_at(b.bytes, 6)) else {
        anomalies.push(format!(
            "SC_NET at offset {}: {} byte(s), too short for MCSChannelId and channelCount",
            b.at,
            b.bytes.len()
        ));
        return None;
    };
    let ids = b.bytes.get(8..).unwrap_or_default();
    let present = ids.len() / 2;
    if usize::from(count) > present {
        anomalies.push(format!(
            "SC_NET.channelCount at offset {} is {count}, but the block holds {present}",
            b.at + 6
        ));
    }
    let channel_ids = ids
        .chunks_exact(2)
        .take(usize::from(count))
        .map(|p| u16_at(p, 0).unwrap_or(0))
        .collect();
    Some(ServerNet {
        io_channel,
        channel_ids,
    })
}

fn server_security(b: &Block<'_>, anomalies: &mut Vec<String>) -> Option<ServerSecurity> {
    let method = body_u32(b, 0, "SC_SECURITY.encryptionMethod", anomalies)?;
    let level = body_u32(b, 4, "SC_SECURITY.encryptionLevel", anomalies)?;
    let mut sec = ServerSecurity {
        encryption_method: EncryptionMethods(method),
        encryption_level: EncryptionLevel(level),
        server_random_len: 0,
        server_cert_len: 0,
        cert_kind: None,
        cert_temporary: false,
        cert: None,
        proprietary_key_bits: None,
        x509_chain: Vec::new(),
    };
    // MS-RDPBCGR 2.2.1.4.3: the random and the certificate follow only when method or level
    // is not 0.
    if method == 0 && level == 0 {
        return Some(sec);
    }
    let (Some(random_len), Some(cert_len)) = (u32_at(b.bytes, 12), u32_at(b.bytes, 16)) else {
        anomalies.push(format!(
            "SC_SECURITY at offset {}: encryption is on but serverRandomLen/serverCertLen \
             are missing",
            b.at
        ));
        return Some(sec);
    };
    sec.server_random_len = random_len;
    sec.server_cert_len = cert_len;
    let rest = b.bytes.get(20..).unwrap_or_default();
    let random = usize::try_from(random_len).unwrap_or(usize::MAX);
    let cert = usize::try_from(cert_len).unwrap_or(usize::MAX);
    if random.saturating_add(cert) > rest.len() {
        anomalies.push(format!(
            "SC_SECURITY serverRandomLen {random_len} + serverCertLen {cert_len} \
             (fields at offset {}) exceed the {} byte(s) left in the block",
            b.at + 12,
            rest.len()
        ));
        return Some(sec);
    }
    if random_len != 32 {
        anomalies.push(format!(
            "SC_SECURITY.serverRandomLen at offset {} is {random_len}, not 32",
            b.at + 12
        ));
    }
    let cert_at = b.at + 20 + random;
    let Some(cert_bytes) = rest.get(random..random + cert) else {
        return Some(sec);
    };
    sec.cert = Some(ByteSpan {
        offset: cert_at,
        len: cert,
    });
    server_certificate(cert_bytes, cert_at, &mut sec, anomalies);
    Some(sec)
}

/// Reads the server certificate's kind and key size (MS-RDPBCGR 2.2.1.4.3.1).
fn server_certificate(
    cert: &[u8],
    at: usize,
    sec: &mut ServerSecurity,
    anomalies: &mut Vec<String>,
) {
    let Some(version) = u32_at(cert, 0) else {
        if !cert.is_empty() {
            anomalies.push(format!(
                "serverCertificate at offset {at}: {} byte(s), too short for dwVersion",
                cert.len()
            ));
        }
        return;
    };
    sec.cert_temporary = version & 0x8000_0000 != 0;
    let kind = match version & 0x7FFF_FFFF {
        1 => CertKind::Proprietary,
        2 => CertKind::X509,
        other => CertKind::Unknown(other),
    };
    sec.cert_kind = Some(kind);
    match kind {
        CertKind::Proprietary => {
            // dwSigAlgId(4) dwKeyAlgId(4) wPublicKeyBlobType(2) wPublicKeyBlobLen(2), then the
            // RSA1 blob: magic(4) keylen(4) bitlen(4) ...
            const RSA1: u32 = 0x3141_5352;
            if u32_at(cert, 16) == Some(RSA1) {
                sec.proprietary_key_bits = u32_at(cert, 24);
            } else {
                anomalies.push(format!(
                    "proprietary certificate at offset {at}: no RSA1 public key blob at offset {}",
                    at + 16
                ));
            }
        }
        CertKind::X509 => x509_chain(cert, at, sec, anomalies),
        CertKind::Unknown(v) => anomalies.push(format!(
            "serverCertificate.dwVersion at offset {at} is {v:#x}, neither 1 nor 2"
        )),
    }
}

/// X.509 chain: NumCertBlobs u32le, then per blob cbCert u32le + DER (2.2.1.4.3.2).
fn x509_chain(cert: &[u8], at: usize, sec: &mut ServerSecurity, anomalies: &mut Vec<String>) {
    let Some(count) = u32_at(cert, 4) else {
        anomalies.push(format!(
            "X.509 certificate chain at offset {at}: too short for NumCertBlobs"
        ));
        return;
    };
    if !(1..=6).contains(&count) {
        anomalies.push(format!(
            "X.509 certificate chain at offset {}: NumCertBlobs is {count}, expected 2..6",
            at + 4
        ));
    }
    let mut pos = 8usize;
    // Each round consumes at least 4 bytes, so the loop ends with the bytes whatever count says.
    for i in 0..count {
        let Some(len) = u32_at(cert, pos) else {
            anomalies.push(format!(
                "X.509 certificate chain: blob {i} of {count} at offset {} is missing",
                at + pos
            ));
            return;
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let start = pos + 4;
        if len > cert.len().saturating_sub(start) {
            anomalies.push(format!(
                "X.509 certificate chain: cbCert {len} at offset {} runs past the certificate",
                at + pos
            ));
            return;
        }
        sec.x509_chain.push(ByteSpan {
            offset: at + start,
            len,
        });
        pos = start + len;
    }
}

/// Writes `value` as u32le at `offset` of `mcs` (SC_CORE.clientRequestedProtocols, offset from
/// [`ServerCore::client_requested_protocols_offset`]). `false`, and nothing written, when the
/// four bytes are not all inside `mcs`.
pub fn patch_client_requested_protocols(mcs: &mut [u8], offset: usize, value: Protocols) -> bool {
    patch_u32_le(mcs, offset, value.0)
}

/// Writes `value` as u32le at `offset` of `mcs` (CS_CORE.serverSelectedProtocol, offset from
/// [`ClientCore::server_selected_protocol_offset`]). `false` when out of bounds.
pub fn patch_server_selected_protocol(mcs: &mut [u8], offset: usize, value: Protocols) -> bool {
    patch_u32_le(mcs, offset, value.0)
}

fn patch_u32_le(buf: &mut [u8], offset: usize, value: u32) -> bool {
    let Some(end) = offset.checked_add(4) else {
        return false;
    };
    match buf.get_mut(offset..end) {
        Some(dst) => {
            dst.copy_from_slice(&value.to_le_bytes());
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TS_UD block: type, length (header included), body.
    fn block(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = u16::try_from(body.len() + 4).unwrap();
        [&kind.to_le_bytes()[..], &len.to_le_bytes(), body].concat()
    }

    /// A CS_CORE body (after the header) of `len` bytes with recognisable values.
    fn cs_core_body(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let put = |b: &mut Vec<u8>, at: usize, v: &[u8]| {
            if at + v.len() <= b.len() {
                b[at..at + v.len()].copy_from_slice(v);
            }
        };
        // Offsets here are from the block start minus the 4-byte header.
        put(&mut b, 0, &0x0008_0004u32.to_le_bytes()); // version
        put(&mut b, 4, &800u16.to_le_bytes()); // desktopWidth
        put(&mut b, 6, &600u16.to_le_bytes()); // desktopHeight
        put(&mut b, 12, &0x0407u32.to_le_bytes()); // keyboardLayout de-DE
        put(&mut b, 16, &26100u32.to_le_bytes()); // clientBuild
        put(&mut b, 20, &[0x3d, 0xd8, 0x00, 0xde, b'X', 0]); // clientName: U+1F600, "X"
        put(&mut b, 140, &0x0001u16.to_le_bytes()); // earlyCapabilityFlags
        put(&mut b, 208, &0x0000_0002u32.to_le_bytes()); // serverSelectedProtocol HYBRID
        b
    }

    const OID_AND_CCRQ: [u8; 21] = [
        0x00, 0x05, 0x00, 0x14, 0x7c, 0x00, 0x01, // t124Identifier
        0x00, // connectPDU length: patched by `wrap_request`
        0x00, 0x08, 0x00, 0x10, 0x00, 0x01, 0xc0, // CCrq header up to the key
        0x00, b'D', b'u', b'c', b'a', // H.221 key
        0x00, // user data length: patched by `wrap_request`
    ];

    /// A ConnectData + ConferenceCreateRequest around `blocks` (under 128 bytes).
    fn wrap_request(blocks: &[u8]) -> Vec<u8> {
        let mut v = OID_AND_CCRQ.to_vec();
        v[7] = u8::try_from(13 + blocks.len()).unwrap();
        v[20] = u8::try_from(blocks.len()).unwrap();
        v.extend_from_slice(blocks);
        v
    }

    #[test]
    fn encryption_methods_read_as_names() {
        assert_eq!(EncryptionMethods(0).to_string(), "NONE(0x0)");
        assert_eq!(
            EncryptionMethods(0x1b).to_string(),
            "40BIT|128BIT|56BIT|FIPS(0x1b)"
        );
        assert_eq!(EncryptionMethods(0x22).to_string(), "128BIT|0x20(0x22)");
        assert!(EncryptionMethods(0x0b).contains(EncryptionMethods::BIT_128));
        assert!(!EncryptionMethods(0x0b).contains(EncryptionMethods::FIPS));
        assert_eq!(
            serde_json::to_string(&EncryptionMethods::BIT_128).unwrap(),
            "\"128BIT(0x2)\""
        );
    }

    #[test]
    fn encryption_levels_read_as_names() {
        assert_eq!(EncryptionLevel::FIPS.name(), Some("FIPS"));
        assert_eq!(EncryptionLevel(2).to_string(), "CLIENT_COMPATIBLE(2)");
        assert_eq!(EncryptionLevel(9).name(), None);
        assert_eq!(EncryptionLevel(9).to_string(), "unknown(0x9)");
        assert_eq!(
            serde_json::to_string(&EncryptionLevel::NONE).unwrap(),
            "\"NONE(0)\""
        );
    }

    #[test]
    fn client_blocks_with_offsets_from_base() {
        let blocks = [
            block(CS_CORE, &cs_core_body(212)),
            block(CS_SECURITY, &[0, 0, 0, 0, 0x02, 0, 0, 0]), // French locale: ext only
            block(0xC0FF, &[1, 2, 3]),                        // unknown type: skipped
            block(CS_MULTITRANSPORT, &0x0305u32.to_le_bytes()),
        ]
        .concat();
        let d = decode_client_blocks(&blocks, 100);
        assert!(d.anomalies.is_empty(), "{:?}", d.anomalies);
        let core = d.core.unwrap();
        assert_eq!(core.version, 0x0008_0004);
        assert_eq!((core.desktop_width, core.desktop_height), (800, 600));
        assert_eq!(core.keyboard_layout, 0x0407);
        assert_eq!(core.client_build, 26100);
        assert_eq!(core.client_name, "\u{1F600}X");
        assert_eq!(core.early_capability_flags, Some(1));
        assert_eq!(core.server_selected_protocol, Some(Protocols::HYBRID));
        // base 100 + header 4 + body offset 208.
        assert_eq!(core.server_selected_protocol_offset, Some(312));
        let sec = d.security.unwrap();
        assert_eq!(sec.encryption_methods, EncryptionMethods::NONE);
        assert_eq!(sec.offered(), EncryptionMethods::BIT_128);
        assert_eq!(d.multitransport_flags, Some(0x0305));
        assert_eq!(d.cluster_flags, None);

        let mut patched = vec![0u8; 100];
        patched.extend_from_slice(&blocks);
        assert!(patch_server_selected_protocol(
            &mut patched,
            312,
            Protocols::SSL
        ));
        let again = decode_client_blocks(&patched[100..], 100);
        assert_eq!(
            again.core.unwrap().server_selected_protocol,
            Some(Protocols::SSL)
        );
    }

    #[test]
    fn short_cs_core_blocks() {
        // Mandatory part only (132 bytes with header): no optional fields, no anomaly.
        let d = decode_client_blocks(&block(CS_CORE, &cs_core_body(128)), 0);
        let core = d.core.unwrap();
        assert_eq!(core.early_capability_flags, None);
        assert_eq!(core.server_selected_protocol, None);
        assert!(d.anomalies.is_empty(), "{:?}", d.anomalies);
        // Shorter than the mandatory part but with clientName: decoded, with an anomaly.
        let d = decode_client_blocks(&block(CS_CORE, &cs_core_body(60)), 0);
        assert_eq!(d.core.unwrap().client_build, 26100);
        assert_eq!(d.anomalies.len(), 1, "{:?}", d.anomalies);
        // Too short for clientName: no core.
        let d = decode_client_blocks(&block(CS_CORE, &cs_core_body(40)), 7);
        assert_eq!(d.core, None);
        assert!(d.anomalies[0].contains("offset 7"), "{:?}", d.anomalies);
    }

    #[test]
    fn broken_block_walks_stop_with_anomalies() {
        // Length 2 (< header): stop there, earlier blocks kept.
        let mut blocks = block(CS_CLUSTER, &[0x0d, 0, 0, 0, 0, 0, 0, 0]);
        blocks.extend_from_slice(&[0x02, 0xc0, 0x02, 0x00, 0xff, 0xff]);
        let d = decode_client_blocks(&blocks, 10);
        assert_eq!(d.cluster_flags, Some(0x0d));
        assert_eq!(d.anomalies.len(), 1);
        assert!(d.anomalies[0].contains("offset 22"), "{:?}", d.anomalies);
        // Three stray bytes after the last block.
        let mut blocks = block(CS_CLUSTER, &[1, 0, 0, 0, 0, 0, 0, 0]);
        blocks.extend_from_slice(&[1, 2, 3]);
        let d = decode_client_blocks(&blocks, 0);
        assert!(d.anomalies[0].contains("3 stray byte(s) at offset 12"));
        // The same block twice: the second wins, and it is reported.
        let blocks = [
            block(CS_SECURITY, &[0x01, 0, 0, 0, 0, 0, 0, 0]),
            block(CS_SECURITY, &[0x02, 0, 0, 0, 0, 0, 0, 0]),
        ]
        .concat();
        let d = decode_client_blocks(&blocks, 0);
        assert_eq!(
            d.security.unwrap().encryption_methods,
            EncryptionMethods::BIT_128
        );
        assert!(d.anomalies[0].contains("repeats"), "{:?}", d.anomalies);
        // CS_SECURITY too short for encryptionMethods.
        let d = decode_client_blocks(&block(CS_SECURITY, &[1, 0]), 0);
        assert_eq!(d.security, None);
        assert!(d.anomalies[0].contains("CS_SECURITY.encryptionMethods at offset 4"));
    }

    #[test]
    fn cs_net_count_never_outruns_the_bytes() {
        let mut body = 40u32.to_le_bytes().to_vec(); // channelCount 40: above 31, and a lie
        body.extend_from_slice(b"rdpdr\0\0\0");
        body.extend_from_slice(&0x8080_0000u32.to_le_bytes());
        body.extend_from_slice(b"drdynvc\0");
        body.extend_from_slice(&0xc080_0000u32.to_le_bytes());
        let d = decode_client_blocks(&block(CS_NET, &body), 0);
        assert_eq!(d.channels, ["rdpdr", "drdynvc"]);
        assert_eq!(d.anomalies.len(), 2, "{:?}", d.anomalies);
        // u32::MAX channels with none present.
        let d = decode_client_blocks(&block(CS_NET, &u32::MAX.to_le_bytes()), 0);
        assert!(d.channels.is_empty());
    }

    #[test]
    fn server_blocks_and_certificates() {
        // Encryption on, but no lengths: method and level kept, anomaly.
        let d = decode_server_blocks(&block(SC_SECURITY, &[1, 0, 0, 0, 1, 0, 0, 0]), 0);
        let sec = d.security.unwrap();
        assert_eq!(sec.encryption_method, EncryptionMethods::BIT_40);
        assert_eq!(sec.encryption_level, EncryptionLevel::LOW);
        assert_eq!(d.anomalies.len(), 1);

        // X.509 chain: 3 blobs announced, the second one's cbCert lies.
        let mut cert = 0x8000_0002u32.to_le_bytes().to_vec(); // X.509, temporary
        cert.extend_from_slice(&3u32.to_le_bytes()); // NumCertBlobs
        cert.extend_from_slice(&2u32.to_le_bytes()); // cbCert
        cert.extend_from_slice(&[0x30, 0x00]); // a tiny DER
        cert.extend_from_slice(&1000u32.to_le_bytes()); // cbCert: too long
        cert.extend_from_slice(&[0x30, 0x00]);
        let mut body = vec![2, 0, 0, 0, 2, 0, 0, 0]; // 128-bit, client compatible
        body.extend_from_slice(&32u32.to_le_bytes());
        body.extend_from_slice(&u32::try_from(cert.len()).unwrap().to_le_bytes());
        body.extend_from_slice(&[0xaa; 32]);
        body.extend_from_slice(&cert);
        let d = decode_server_blocks(&block(SC_SECURITY, &body), 50);
        let sec = d.security.unwrap();
        assert_eq!(sec.cert_kind, Some(CertKind::X509));
        assert!(sec.cert_temporary);
        // base 50 + header 4 + 16 fixed bytes + 32 random.
        let cert_at = 50 + 4 + 16 + 32;
        assert_eq!(
            sec.cert,
            Some(ByteSpan {
                offset: cert_at,
                len: cert.len()
            })
        );
        assert_eq!(
            sec.x509_chain,
            [ByteSpan {
                offset: cert_at + 12,
                len: 2
            }]
        );
        assert_eq!(d.anomalies.len(), 1, "{:?}", d.anomalies);
        assert!(d.anomalies[0].contains("cbCert 1000"));

        // An unknown certificate version is kept.
        let mut body = vec![2, 0, 0, 0, 3, 0, 0, 0];
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&7u32.to_le_bytes());
        let d = decode_server_blocks(&block(SC_SECURITY, &body), 0);
        assert_eq!(d.security.unwrap().cert_kind, Some(CertKind::Unknown(7)));
        assert!(d.anomalies.iter().any(|a| a.contains("serverRandomLen")));

        // SC_NET whose channelCount claims more IDs than present; SC_CORE of 8 bytes.
        let blocks = [
            block(SC_CORE, &0x0008_0001u32.to_le_bytes()),
            block(SC_NET, &[0xeb, 0x03, 0x05, 0x00, 0xec, 0x03]),
            block(SC_MULTITRANSPORT, &0x101u32.to_le_bytes()),
        ]
        .concat();
        let d = decode_server_blocks(&blocks, 0);
        let core = d.core.unwrap();
        assert_eq!(
            (core.version, core.client_requested_protocols),
            (0x0008_0001, None)
        );
        assert_eq!(core.client_requested_protocols_offset, None);
        assert_eq!(
            d.net,
            Some(ServerNet {
                io_channel: 1003,
                channel_ids: vec![1004]
            })
        );
        assert_eq!(d.multitransport_flags, Some(0x101));
        assert_eq!(d.anomalies.len(), 1, "{:?}", d.anomalies);
    }

    #[test]
    fn request_wrapper_oddities() {
        let blocks = block(CS_SECURITY, &[0x03, 0, 0, 0, 0, 0, 0, 0]);
        let gcc = wrap_request(&blocks);
        let d = decode_conference_create_request(&gcc, 0).unwrap();
        assert_eq!(
            d.security.as_ref().unwrap().encryption_methods,
            EncryptionMethods(3)
        );
        assert!(d.anomalies.is_empty(), "{:?}", d.anomalies);

        // connectPDU length off by one: an anomaly naming its offset.
        let mut g = gcc.clone();
        g[7] += 1;
        let d = decode_conference_create_request(&g, 1000).unwrap();
        assert!(d.security.is_some());
        assert!(d.anomalies[0].contains("offset 1007"), "{:?}", d.anomalies);

        // Another OID: still decoded, with an anomaly.
        let mut g = gcc.clone();
        g[4] = 0x7d;
        let d = decode_conference_create_request(&g, 0).unwrap();
        assert!(d.security.is_some());
        assert_eq!(d.anomalies.len(), 1, "{:?}", d.anomalies);

        // No "Duca": nothing decoded, one anomaly, no error.
        let mut g = gcc.clone();
        g[16] = b'X';
        let d = decode_conference_create_request(&g, 0).unwrap();
        assert_eq!(d.security, None);
        assert!(d.anomalies[0].contains("Duca"), "{:?}", d.anomalies);

        // A fragmented PER length after the key is refused.
        let mut g = gcc.clone();
        g[20] = 0xc1;
        let e = decode_conference_create_request(&g, 5).unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("ConferenceCreateRequest.userData.length", 25)
        );
        // Cut inside the user data length: an error, not a panic.
        let e = decode_conference_create_request(&gcc[..20], 0).unwrap_err();
        assert_eq!(e.offset, 20);
    }

    #[test]
    fn response_with_a_gcc_failure() {
        let blocks = block(SC_CORE, &[4, 0, 8, 0, 3, 0, 0, 0]);
        let mut gcc = vec![
            0x00, 0x05, 0x00, 0x14, 0x7c, 0x00, 0x01, // t124Identifier
            0x2a, // connectPDU length (ignored)
            0x14, 0x76, 0x0a, 0x01, 0x01, // CCrsp, nodeID, tag 1
            0x01, // result userRejected
            0x01, 0xc0, 0x00, b'M', b'c', b'D', b'n', // key
        ];
        gcc.push(u8::try_from(blocks.len()).unwrap());
        gcc.extend_from_slice(&blocks);
        let d = decode_conference_create_response(&gcc, 0).unwrap();
        assert_eq!(d.gcc_result, Some(1));
        assert_eq!(gcc_result_name(1), "userRejected");
        assert_eq!(
            d.core.unwrap().client_requested_protocols,
            Some(Protocols(3))
        );
        assert_eq!(d.anomalies.len(), 1, "{:?}", d.anomalies);
        assert!(d.anomalies[0].contains("userRejected"));
    }

    #[test]
    fn every_cut_of_the_blocks_is_safe() {
        let blocks = [
            block(CS_CORE, &cs_core_body(230)),
            block(CS_SECURITY, &[0x1b, 0, 0, 0, 0, 0, 0, 0]),
            block(
                CS_NET,
                &[
                    1, 0, 0, 0, b'r', b'a', b'i', b'l', 0, 0, 0, 0, 0, 0, 0, 0x80,
                ],
            ),
        ]
        .concat();
        let whole = decode_client_blocks(&blocks, 0);
        assert!(whole.anomalies.is_empty(), "{:?}", whole.anomalies);
        assert_eq!(whole.channels, ["rail"]);
        for n in 0..blocks.len() {
            let d = decode_client_blocks(&blocks[..n], 0);
            // A cut always leaves a trace: a missing block or an anomaly.
            assert!(!d.anomalies.is_empty() || d != whole, "cut at {n}");
            // Only a cut between blocks (CS_CORE is 234 bytes, CS_SECURITY 12) leaves none.
            let between_blocks = [0, 234, 246].contains(&n);
            assert_eq!(d.anomalies.is_empty(), between_blocks, "cut at {n}");
            if let Some(off) = d.core.and_then(|c| c.server_selected_protocol_offset) {
                assert!(off + 4 <= n);
            }
            let gcc = wrap_request(&blocks[..n.min(127)]);
            let _ = decode_conference_create_request(&gcc[..n.min(gcc.len())], 0);
        }
    }

    proptest! {
        #[test]
        fn blocks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let c = decode_client_blocks(&bytes, 3);
            let s = decode_server_blocks(&bytes, 3);
            // Every span points inside the input (shifted by base).
            if let Some(sec) = s.security {
                for span in sec.cert.iter().chain(sec.x509_chain.iter()) {
                    prop_assert!(span.offset >= 3 && span.offset - 3 + span.len <= bytes.len());
                }
            }
            if let Some(off) = c.core.and_then(|c| c.server_selected_protocol_offset) {
                prop_assert!(off - 3 + 4 <= bytes.len());
            }
            let _ = decode_conference_create_request(&bytes, 0);
            let _ = decode_conference_create_response(&bytes, 0);
        }

        #[test]
        fn patch_never_panics(len in 0usize..16, off in any::<usize>(), v in any::<u32>()) {
            let mut buf = vec![0u8; len];
            let ok = patch_client_requested_protocols(&mut buf, off, Protocols(v));
            prop_assert_eq!(ok, off.checked_add(4).is_some_and(|e| e <= len));
        }
    }
}
