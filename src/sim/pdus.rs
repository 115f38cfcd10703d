//! Byte builders for what the simulated peers put on the wire.
//!
//! Everything here is built from the layouts and worked examples of
//! `reference/RDP-NEGOTIATION.md` §2 (the tests reproduce examples E1, E3–E5, E16, E17, E17t and
//! E18 byte for byte), so that the proxy decodes the simulated traffic exactly as it would decode
//! a real peer's. The CredSSP messages are opaque to a pass-through proxy; they are still shaped
//! like TSRequests (DER, version 6, NTLMSSP tokens) so that a TLS-terminating rdpdiag reads them
//! sensibly.

use crate::wire::x224::{FailureCode, Protocols};

/// A length as `u16be`, saturating (every PDU built here is far below 64 KiB).
fn be16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

fn le16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes()
}

/// Wraps an X.224 TPDU (header included) in a TPKT header (RFC 1006 §6).
pub fn tpkt(tpdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tpdu.len() + 4);
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&be16(tpdu.len() + 4));
    out.extend_from_slice(tpdu);
    out
}

/// `TPKT · X.224 DT (02 F0 80) · payload`: how every MCS PDU travels (§2.2).
pub fn x224_data(payload: &[u8]) -> Vec<u8> {
    let mut tpdu = Vec::with_capacity(payload.len() + 3);
    tpdu.extend_from_slice(&[0x02, 0xf0, 0x80]);
    tpdu.extend_from_slice(payload);
    tpkt(&tpdu)
}

/// Client X.224 Connection Request (MS-RDPBCGR 2.2.1.1, reference §2.3).
///
/// `neg`: `Some((flags, requestedProtocols))` adds an RDP_NEG_REQ; `None` is a legacy request
/// (Standard RDP Security, what `xfreerdp /sec:rdp` sends).
pub fn connection_request(cookie: Option<&str>, neg: Option<(u8, Protocols)>) -> Vec<u8> {
    let mut var = Vec::new();
    if let Some(c) = cookie {
        var.extend_from_slice(b"Cookie: mstshash=");
        var.extend_from_slice(c.as_bytes());
        var.extend_from_slice(b"\r\n");
    }
    if let Some((flags, protocols)) = neg {
        // RDP_NEG_REQ: type 0x01, flags, length 8 (u16le), requestedProtocols (u32le).
        var.extend_from_slice(&[0x01, flags, 0x08, 0x00]);
        var.extend_from_slice(&protocols.0.to_le_bytes());
    }
    // LI counts the header after itself: code(1) + DST-REF(2) + SRC-REF(2) + class(1) + var.
    let li = u8::try_from(6 + var.len()).unwrap_or(u8::MAX);
    let mut tpdu = vec![li, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00];
    tpdu.extend_from_slice(&var);
    tpkt(&tpdu)
}

/// What a Connection Confirm carries (MS-RDPBCGR 2.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CcNeg {
    /// RDP_NEG_RSP with flags and selectedProtocol.
    Response { flags: u8, selected: Protocols },
    /// RDP_NEG_FAILURE with failureCode.
    Failure(FailureCode),
    /// No rdpNegData (LI = 6): legacy, Standard RDP Security implied.
    Legacy,
}

/// Server X.224 Connection Confirm (reference §2.6; SRC-REF 0x1234 like Windows and xrdp).
pub fn connection_confirm(neg: CcNeg) -> Vec<u8> {
    let mut tpdu = vec![0x06, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00];
    let block = match neg {
        CcNeg::Response { flags, selected } => Some((0x02, flags, selected.0)),
        CcNeg::Failure(code) => Some((0x03, 0x00, code.0)),
        CcNeg::Legacy => None,
    };
    if let Some((ty, flags, value)) = block {
        tpdu[0] = 0x0e; // LI 14 = 6 + 8
        tpdu.extend_from_slice(&[ty, flags, 0x08, 0x00]);
        tpdu.extend_from_slice(&value.to_le_bytes());
    }
    tpkt(&tpdu)
}

/// MCS Disconnect-Provider-Ultimatum, reason rn-user-requested (reference §2.17).
/// xrdp sends it in clear where a ServerHello belongs when it cannot use its key.
pub const DISCONNECT_PROVIDER_ULTIMATUM: [u8; 9] =
    [0x03, 0x00, 0x00, 0x09, 0x02, 0xf0, 0x80, 0x21, 0x80];

// ---------------------------------------------------------------------------------------------
// TLS pieces built by hand (for hosts and clients that do what rustls never would).

/// A TLS record: type, legacy version, u16be length, fragment (RFC 5246 §6.2.1).
pub fn tls_record(content_type: u8, version: u16, fragment: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fragment.len() + 5);
    out.push(content_type);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&be16(fragment.len()));
    out.extend_from_slice(fragment);
    out
}

/// A clear fatal alert record (level 2) with the given description (reference §2.7.7, §3.5).
pub fn tls_fatal_alert(version: u16, description: u8) -> Vec<u8> {
    tls_record(0x15, version, &[0x02, description])
}

/// A handshake message: type, u24be length, body (RFC 5246 §7.4).
fn handshake_msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes();
    let mut out = vec![ty, len[1], len[2], len[3]];
    out.extend_from_slice(body);
    out
}

fn u24(n: usize) -> [u8; 3] {
    let b = u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    [b[1], b[2], b[3]]
}

/// The server flight of a TLS-1.0-only host (Windows 7 / 2008 R2 without KB3080079, or
/// testbed `xrdp-tls10-legacy`): ServerHello selecting TLS 1.0 with
/// TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA (0xC014), its Certificate and ServerHelloDone, in one
/// record of version 3.1. A client that does not accept TLS 1.0 answers with alert 70.
pub fn tls10_server_flight(cert_der: &[u8]) -> Vec<u8> {
    let mut hello = vec![0x03, 0x01]; // server_version TLS 1.0
    hello.extend((0u8..32).map(|i| i.wrapping_mul(7).wrapping_add(0x40))); // random
    hello.push(0); // session_id: empty
    hello.extend_from_slice(&[0xc0, 0x14]); // cipher_suite
    hello.push(0); // compression_method null
    let mut certs = Vec::new();
    certs.extend_from_slice(&u24(cert_der.len()));
    certs.extend_from_slice(cert_der);
    let mut cert_body = Vec::new();
    cert_body.extend_from_slice(&u24(certs.len()));
    cert_body.extend_from_slice(&certs);
    let mut flight = handshake_msg(2, &hello);
    flight.extend(handshake_msg(11, &cert_body));
    flight.extend(handshake_msg(14, &[]));
    tls_record(0x16, 0x0301, &flight)
}

// ---------------------------------------------------------------------------------------------
// CredSSP-shaped messages (MS-CSSP 2.2.1, reference §2.8): TSRequest ::= SEQUENCE {
//   version [0] INTEGER, negoTokens [1] NegoData OPTIONAL, authInfo [2] OCTET STRING OPTIONAL,
//   pubKeyAuth [3] OCTET STRING OPTIONAL, ... }

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = vec![tag];
    if n < 0x80 {
        out.push(u8::try_from(n).unwrap_or(0x7f));
    } else if n <= 0xff {
        out.extend_from_slice(&[0x81, u8::try_from(n).unwrap_or(0xff)]);
    } else {
        out.push(0x82);
        out.extend_from_slice(&be16(n));
    }
    out.extend_from_slice(content);
    out
}

/// Which TSRequest field carries the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsField {
    /// negoTokens `[1]`: an NTLM message of the given MessageType (1 NEGOTIATE, 2 CHALLENGE,
    /// 3 AUTHENTICATE).
    NegoToken(u32),
    /// authInfo `[2]`: the encrypted TSCredentials (C3).
    AuthInfo,
    /// pubKeyAuth `[3]`: the server's binding answer (S2).
    PubKeyAuth,
}

fn ts_request_with(field: TsField, payload_len: usize) -> Vec<u8> {
    let version = der(0xa0, &der(0x02, &[0x06]));
    let body = match field {
        TsField::NegoToken(ty) => {
            let mut token = b"NTLMSSP\0".to_vec();
            token.extend_from_slice(&ty.to_le_bytes());
            token.resize(payload_len.max(12), 0x00);
            // negoTokens [1] SEQUENCE OF SEQUENCE { negoToken [0] OCTET STRING }
            der(0xa1, &der(0x30, &der(0x30, &der(0xa0, &der(0x04, &token)))))
        }
        TsField::AuthInfo => der(0xa2, &der(0x04, &vec![0x5a; payload_len])),
        TsField::PubKeyAuth => der(0xa3, &der(0x04, &vec![0xa5; payload_len])),
    };
    let mut content = version;
    content.extend(body);
    der(0x30, &content)
}

/// A TSRequest of exactly `size` bytes (or the smallest possible one if `size` is too small).
pub fn ts_request(field: TsField, size: usize) -> Vec<u8> {
    // Walk the payload length down until the total fits (DER headers grow by steps).
    let mut payload = size;
    loop {
        let msg = ts_request_with(field, payload);
        if msg.len() <= size || payload == 0 {
            return msg;
        }
        payload -= 1;
    }
}

/// Early User Authorization Result PDU (MS-RDPBCGR 2.2.10.2, reference §2.11): 4 raw bytes.
pub fn early_user_auth_result(result: u32) -> [u8; 4] {
    result.to_le_bytes()
}

/// AUTHZ_SUCCESS.
pub const AUTHZ_SUCCESS: u32 = 0;
/// AUTHZ_ACCESS_DENIED.
pub const AUTHZ_ACCESS_DENIED: u32 = 5;

// ---------------------------------------------------------------------------------------------
// MCS Connect-Initial / Connect-Response (reference §2.13–§2.15).

/// Standard RDP Security encryption methods (reference §3.11).
pub mod enc {
    pub const NONE: u32 = 0x00;
    pub const BIT40: u32 = 0x01;
    pub const BIT128: u32 = 0x02;
    pub const BIT56: u32 = 0x08;
    pub const FIPS: u32 = 0x10;
    /// What mstsc and xfreerdp offer by default: 40 | 128 | 56 | FIPS.
    pub const ALL: u32 = 0x1b;

    pub const LEVEL_NONE: u32 = 0;
    pub const LEVEL_LOW: u32 = 1;
    pub const LEVEL_CLIENT_COMPATIBLE: u32 = 2;
    pub const LEVEL_HIGH: u32 = 3;
    pub const LEVEL_FIPS: u32 = 4;
}

/// BER length in the long form Windows uses for these PDUs (`82 hi lo`), short form below 0x80.
fn ber_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![u8::try_from(n).unwrap_or(0x7f)]
    } else {
        let b = be16(n);
        vec![0x82, b[0], b[1]]
    }
}

/// PER length determinant (T.124 aligned): 1 byte below 0x80, else `0x8000 | len` (u16be).
fn per_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![u8::try_from(n).unwrap_or(0x7f)]
    } else {
        be16(n | 0x8000).to_vec()
    }
}

/// What the client puts into its Connect-Initial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMcs {
    /// CS_CORE clientName (≤ 15 characters).
    pub client_name: String,
    /// CS_CORE clientBuild.
    pub client_build: u32,
    /// CS_CORE serverSelectedProtocol: the CC's selectedProtocol (0 when legacy).
    pub server_selected_protocol: u32,
    /// CS_SECURITY encryptionMethods.
    pub encryption_methods: u32,
    /// Static virtual channels in CS_NET (names ≤ 7 ASCII characters).
    pub channels: Vec<String>,
    /// Add a CS_CLUSTER block (mstsc does).
    pub cluster: bool,
}

impl ClientMcs {
    /// Example E16: PROTOCOL_RDP, methods 0x1B, no channels, no cluster block (368 bytes).
    pub fn e16() -> Self {
        Self {
            client_name: "WKS01".to_owned(),
            client_build: 19041,
            server_selected_protocol: 0,
            encryption_methods: enc::ALL,
            channels: Vec::new(),
            cluster: false,
        }
    }

    /// A mstsc-sized request (≈ 430 bytes): E16 plus CS_CLUSTER and four static channels.
    pub fn typical(server_selected_protocol: u32, encryption_methods: u32) -> Self {
        Self {
            server_selected_protocol,
            encryption_methods,
            channels: ["rdpdr", "rdpsnd", "cliprdr", "drdynvc"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            cluster: true,
            ..Self::e16()
        }
    }
}

/// CS_CORE (0xC001), 216 bytes, fields as in E16 (reference §2.14).
fn cs_core(m: &ClientMcs) -> Vec<u8> {
    let mut b = vec![0x01, 0xc0, 0xd8, 0x00];
    b.extend_from_slice(&0x0008_0004u32.to_le_bytes()); // version RDP 5.0+
    b.extend_from_slice(&1920u16.to_le_bytes()); // desktopWidth
    b.extend_from_slice(&1080u16.to_le_bytes()); // desktopHeight
    b.extend_from_slice(&0xca01u16.to_le_bytes()); // colorDepth 8 bpp
    b.extend_from_slice(&0xaa03u16.to_le_bytes()); // SASSequence
    b.extend_from_slice(&0x409u32.to_le_bytes()); // keyboardLayout en-US
    b.extend_from_slice(&m.client_build.to_le_bytes()); // clientBuild
    let mut name = [0u8; 32]; // clientName, UTF-16LE, NUL-padded, ≤ 15 characters
    for (slot, unit) in name
        .chunks_exact_mut(2)
        .zip(m.client_name.encode_utf16().take(15))
    {
        slot.copy_from_slice(&unit.to_le_bytes());
    }
    b.extend_from_slice(&name);
    b.extend_from_slice(&4u32.to_le_bytes()); // keyboardType IBM enhanced
    b.extend_from_slice(&0u32.to_le_bytes()); // keyboardSubType
    b.extend_from_slice(&12u32.to_le_bytes()); // keyboardFunctionKey
    b.extend_from_slice(&[0u8; 64]); // imeFileName
    b.extend_from_slice(&0xca01u16.to_le_bytes()); // postBeta2ColorDepth
    b.extend_from_slice(&1u16.to_le_bytes()); // clientProductId
    b.extend_from_slice(&0u32.to_le_bytes()); // serialNumber
    b.extend_from_slice(&0x18u16.to_le_bytes()); // highColorDepth 24 bpp
    b.extend_from_slice(&0x0fu16.to_le_bytes()); // supportedColorDepths
    b.extend_from_slice(&0x07afu16.to_le_bytes()); // earlyCapabilityFlags
    b.extend_from_slice(&[0u8; 64]); // clientDigProductId
    b.push(6); // connectionType LAN
    b.push(0); // pad1octet
    b.extend_from_slice(&m.server_selected_protocol.to_le_bytes()); // serverSelectedProtocol
    b
}

/// Client MCS Connect-Initial with its GCC Conference Create Request (reference §2.13).
pub fn connect_initial(m: &ClientMcs) -> Vec<u8> {
    // Client data blocks.
    let mut blocks = cs_core(m);
    // CS_SECURITY: encryptionMethods, extEncryptionMethods 0.
    blocks.extend_from_slice(&[0x02, 0xc0, 0x0c, 0x00]);
    blocks.extend_from_slice(&m.encryption_methods.to_le_bytes());
    blocks.extend_from_slice(&0u32.to_le_bytes());
    // CS_NET: channelCount + CHANNEL_DEF (8-byte name, u32le options) each.
    let mut net = Vec::new();
    net.extend_from_slice(&u32::try_from(m.channels.len()).unwrap_or(0).to_le_bytes());
    for ch in &m.channels {
        let mut name = [0u8; 8];
        for (slot, byte) in name.iter_mut().zip(ch.bytes().take(7)) {
            *slot = byte;
        }
        net.extend_from_slice(&name);
        net.extend_from_slice(&0x8080_0000u32.to_le_bytes()); // INITIALIZED | COMPRESS_RDP
    }
    blocks.extend_from_slice(&[0x03, 0xc0]);
    blocks.extend_from_slice(&le16(net.len() + 4));
    blocks.extend_from_slice(&net);
    if m.cluster {
        // CS_CLUSTER: REDIRECTION_SUPPORTED | version 4 << 2, no session id.
        blocks.extend_from_slice(&[0x04, 0xc0, 0x0c, 0x00, 0x11, 0, 0, 0, 0, 0, 0, 0]);
    }

    // GCC ConnectData (PER): OID, connectPDU length, ConferenceCreateRequest, "Duca" blocks.
    let mut ccr = vec![
        0x00, 0x08, 0x00, 0x10, 0x00, 0x01, 0xc0, 0x00, 0x44, 0x75, 0x63, 0x61,
    ];
    ccr.extend(per_len(blocks.len()));
    ccr.extend_from_slice(&blocks);
    let mut gcc = vec![0x00, 0x05, 0x00, 0x14, 0x7c, 0x00, 0x01];
    gcc.extend(per_len(ccr.len()));
    gcc.extend_from_slice(&ccr);

    // MCS Connect-Initial (BER).
    let mut body = vec![0x04, 0x01, 0x01, 0x04, 0x01, 0x01, 0x01, 0x01, 0xff];
    body.extend_from_slice(&[
        0x30, 0x19, 0x02, 0x01, 0x22, 0x02, 0x01, 0x02, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01, 0x02,
        0x01, 0x00, 0x02, 0x01, 0x01, 0x02, 0x02, 0xff, 0xff, 0x02, 0x01, 0x02,
    ]); // targetParameters
    body.extend_from_slice(&[
        0x30, 0x19, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02,
        0x01, 0x00, 0x02, 0x01, 0x01, 0x02, 0x02, 0x04, 0x20, 0x02, 0x01, 0x02,
    ]); // minimumParameters
    body.extend_from_slice(&[
        0x30, 0x1c, 0x02, 0x02, 0xff, 0xff, 0x02, 0x02, 0xfc, 0x17, 0x02, 0x02, 0xff, 0xff, 0x02,
        0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01, 0x02, 0x02, 0xff, 0xff, 0x02, 0x01, 0x02,
    ]); // maximumParameters
    body.push(0x04); // userData OCTET STRING
    body.extend(ber_len(gcc.len()));
    body.extend_from_slice(&gcc);
    let mut mcs = vec![0x7f, 0x65];
    mcs.extend(ber_len(body.len()));
    mcs.extend_from_slice(&body);
    x224_data(&mcs)
}

/// What the host puts into its Connect-Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMcs {
    /// SC_CORE clientRequestedProtocols: the requestedProtocols of the CR (0 when legacy).
    pub client_requested_protocols: u32,
    /// SC_SECURITY encryptionMethod (one value or 0).
    pub encryption_method: u32,
    /// SC_SECURITY encryptionLevel.
    pub encryption_level: u32,
    /// Static channels to confirm in SC_NET (1004, 1005, ...).
    pub channel_count: u16,
}

impl HostMcs {
    /// Example E17: Standard RDP Security, 128-bit RC4, CLIENT_COMPATIBLE.
    pub fn e17() -> Self {
        Self {
            client_requested_protocols: 0,
            encryption_method: enc::BIT128,
            encryption_level: enc::LEVEL_CLIENT_COMPATIBLE,
            channel_count: 0,
        }
    }

    /// Example E17t: inside TLS (method and level 0, as MS-RDPBCGR 2.2.1.4.3 requires).
    pub fn e17t(client_requested_protocols: u32) -> Self {
        Self {
            client_requested_protocols,
            encryption_method: enc::NONE,
            encryption_level: enc::LEVEL_NONE,
            channel_count: 0,
        }
    }
}

/// The E17 server random (32 bytes) and proprietary certificate (184 bytes; toy 512-bit key,
/// signature placeholder).
fn proprietary_cert_and_random() -> Vec<u8> {
    let mut b: Vec<u8> = (0x20u8..0x40).collect(); // serverRandom
    b.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]); // dwVersion, dwSigAlgId, dwKeyAlgId
    b.extend_from_slice(&[0x06, 0x00, 0x5c, 0x00]); // BB_RSA_KEY_BLOB, 92 bytes
    b.extend_from_slice(b"RSA1");
    b.extend_from_slice(&72u32.to_le_bytes()); // keylen
    b.extend_from_slice(&512u32.to_le_bytes()); // bitlen
    b.extend_from_slice(&63u32.to_le_bytes()); // datalen
    b.extend_from_slice(&65537u32.to_le_bytes()); // pubExp
    b.extend((1u8..=0x40).chain([0u8; 8])); // modulus, little-endian, + 8 zero bytes
    b.extend_from_slice(&[0x08, 0x00, 0x48, 0x00]); // BB_RSA_SIGNATURE_BLOB, 72 bytes
    b.extend([0xa5u8; 64].into_iter().chain([0u8; 8]));
    b
}

/// Server MCS Connect-Response with its GCC Conference Create Response (reference §2.15).
pub fn connect_response(m: &HostMcs) -> Vec<u8> {
    let mut blocks = vec![0x01, 0x0c, 0x10, 0x00]; // SC_CORE, 16 bytes
    blocks.extend_from_slice(&0x0008_000du32.to_le_bytes()); // version RDP 10.8
    blocks.extend_from_slice(&m.client_requested_protocols.to_le_bytes());
    blocks.extend_from_slice(&0x0fu32.to_le_bytes()); // earlyCapabilityFlags
    // SC_NET: MCSChannelId 1003, channelCount, channel ids, pad to 4 bytes.
    let mut net = Vec::new();
    net.extend_from_slice(&1003u16.to_le_bytes());
    net.extend_from_slice(&m.channel_count.to_le_bytes());
    for i in 0..m.channel_count {
        net.extend_from_slice(&1004u16.saturating_add(i).to_le_bytes());
    }
    if m.channel_count % 2 == 1 {
        net.extend_from_slice(&[0, 0]);
    }
    blocks.extend_from_slice(&[0x03, 0x0c]);
    blocks.extend_from_slice(&le16(net.len() + 4));
    blocks.extend_from_slice(&net);
    // SC_SECURITY: method, level, and with Standard RDP Security the random and certificate.
    let mut sec = Vec::new();
    sec.extend_from_slice(&m.encryption_method.to_le_bytes());
    sec.extend_from_slice(&m.encryption_level.to_le_bytes());
    if m.encryption_method != 0 || m.encryption_level != 0 {
        let rest = proprietary_cert_and_random();
        sec.extend_from_slice(&32u32.to_le_bytes()); // serverRandomLen
        sec.extend_from_slice(&u32::try_from(rest.len() - 32).unwrap_or(0).to_le_bytes());
        sec.extend_from_slice(&rest);
    }
    blocks.extend_from_slice(&[0x02, 0x0c]);
    blocks.extend_from_slice(&le16(sec.len() + 4));
    blocks.extend_from_slice(&sec);

    // GCC: OID, a bogus connectPDU length (0x2a, like Windows; clients ignore it),
    // ConferenceCreateResponse, "McDn", blocks.
    let mut gcc = vec![
        0x00, 0x05, 0x00, 0x14, 0x7c, 0x00, 0x01, 0x2a, 0x14, 0x76, 0x0a, 0x01, 0x01, 0x00, 0x01,
        0xc0, 0x00, 0x4d, 0x63, 0x44, 0x6e,
    ];
    gcc.extend(per_len(blocks.len()));
    gcc.extend_from_slice(&blocks);

    // Long-form BER lengths throughout (E17t shows Windows' non-minimal `82 00 60`).
    let long = |n: usize| {
        let b = be16(n);
        [0x82, b[0], b[1]]
    };
    let mut body = vec![0x0a, 0x01, 0x00, 0x02, 0x01, 0x00]; // result, calledConnectId
    body.extend_from_slice(&[
        0x30, 0x1a, 0x02, 0x01, 0x22, 0x02, 0x01, 0x03, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01, 0x02,
        0x01, 0x00, 0x02, 0x01, 0x01, 0x02, 0x03, 0x00, 0xff, 0xf8, 0x02, 0x01, 0x02,
    ]); // domainParameters
    body.push(0x04);
    body.extend_from_slice(&long(gcc.len()));
    body.extend_from_slice(&gcc);
    let mut mcs = vec![0x7f, 0x66];
    mcs.extend_from_slice(&long(body.len()));
    mcs.extend_from_slice(&body);
    x224_data(&mcs)
}

/// Reads SC_SECURITY (encryptionMethod, encryptionLevel) back out of a Connect-Response built
/// by [`connect_response`] or sent by a peer that follows the same layout: finds the "McDn" key,
/// skips the PER length and walks the server data blocks.
pub fn parse_server_security(pdu: &[u8]) -> Option<(u32, u32)> {
    let key = pdu.windows(4).position(|w| w == b"McDn")? + 4;
    let first = *pdu.get(key)?;
    let mut at = key + if first & 0x80 != 0 { 2 } else { 1 };
    while let Some(h) = pdu.get(at..at + 4) {
        let ty = u16::from_le_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
        if len < 4 {
            return None;
        }
        if ty == 0x0c02 {
            let b = pdu.get(at + 4..at + 12)?;
            return Some((
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            ));
        }
        at += len;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// After the Connect-Response: channel connection, security exchange, licensing, capabilities,
// finalization and an active session (reference §2.16, §2.17).

/// Who sends a scripted PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Host,
}

/// MCS Send Data Request (client) / Indication (host) on the I/O channel 1003 with a payload
/// of `len` bytes starting with `security_flags` (u16le) + flagsHi 0 when given.
fn send_data(from: Sender, security_flags: Option<u16>, len: usize, fill: u8) -> Vec<u8> {
    let choice = match from {
        Sender::Client => 0x64, // SDrq
        Sender::Host => 0x68,   // SDin
    };
    let mut payload = Vec::with_capacity(len);
    if let Some(f) = security_flags {
        payload.extend_from_slice(&f.to_le_bytes());
        payload.extend_from_slice(&[0, 0]);
    }
    payload.resize(len.max(payload.len()), fill);
    let mut mcs = vec![choice, 0x00, 0x06, 0x03, 0xeb, 0x70]; // initiator 1007, channel 1003
    mcs.extend(per_len(payload.len()));
    mcs.extend_from_slice(&payload);
    x224_data(&mcs)
}

/// Security Exchange PDU with a 512-bit key's encrypted client random (example E18, 94 bytes).
pub fn security_exchange() -> Vec<u8> {
    let mut payload = vec![0x01, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00];
    payload.extend(0x80u8..0xc0);
    payload.extend_from_slice(&[0u8; 8]);
    let mut mcs = vec![0x64, 0x00, 0x06, 0x03, 0xeb, 0x70];
    mcs.extend(per_len(payload.len()));
    mcs.extend_from_slice(&payload);
    x224_data(&mcs)
}

/// The PDUs that follow the Connect-Response, in order, with their sender: at least 20 each way
/// plus `active_rounds` host updates / client inputs of varying sizes.
///
/// `standard_security`: add the Security Exchange PDU and mark PDUs SEC_ENCRYPT (Standard RDP
/// Security); otherwise they carry the basic header only where TLS sessions do.
pub fn session_script(standard_security: bool, active_rounds: usize) -> Vec<(Sender, Vec<u8>)> {
    use Sender::{Client, Host};
    let mut s: Vec<(Sender, Vec<u8>)> = vec![
        (Client, x224_data(&[0x04, 0x01, 0x00, 0x01, 0x00])), // Erect Domain Request
        (Client, x224_data(&[0x28])),                         // Attach User Request
        (Host, x224_data(&[0x2e, 0x00, 0x00, 0x06])),         // Attach User Confirm 1007
        (Client, x224_data(&[0x38, 0x00, 0x06, 0x03, 0xef])), // Channel Join Request 1007
        (
            Host,
            x224_data(&[0x3e, 0x00, 0x00, 0x06, 0x03, 0xef, 0x03, 0xef]),
        ),
        (Client, x224_data(&[0x38, 0x00, 0x06, 0x03, 0xeb])), // Channel Join Request 1003
        (
            Host,
            x224_data(&[0x3e, 0x00, 0x00, 0x06, 0x03, 0xeb, 0x03, 0xeb]),
        ),
    ];
    let enc = |flags: u16| {
        if standard_security {
            flags | 0x0008
        } else {
            flags
        }
    };
    if standard_security {
        s.push((Client, security_exchange()));
    }
    // Client Info PDU (SEC_INFO_PKT).
    s.push((Client, send_data(Client, Some(enc(0x0040)), 342, 0x11)));
    // License Error PDU "valid client" (SEC_LICENSE_PKT; preamble FF 03 10 00, code 7, state 2).
    let mut lic = vec![0x80, 0x00, 0x00, 0x00, 0xff, 0x03, 0x10, 0x00];
    lic.extend_from_slice(&[7, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0]);
    s.push((Host, {
        let mut mcs = vec![0x68, 0x00, 0x06, 0x03, 0xeb, 0x70];
        mcs.extend(per_len(lic.len()));
        mcs.extend_from_slice(&lic);
        x224_data(&mcs)
    }));
    // Capabilities: Demand Active, Confirm Active.
    s.push((
        Host,
        send_data(Host, standard_security.then_some(0x0008), 386, 0x22),
    ));
    s.push((
        Client,
        send_data(Client, standard_security.then_some(0x0008), 478, 0x33),
    ));
    // Finalization: Synchronize, Control Cooperate, Control Request/Granted, Font List/Map.
    for (i, len) in [22usize, 26, 26, 32].into_iter().enumerate() {
        let fill = 0x40 + u8::try_from(i).unwrap_or(0);
        s.push((
            Client,
            send_data(Client, standard_security.then_some(0x0008), len, fill),
        ));
    }
    for (i, len) in [22usize, 26, 26, 30].into_iter().enumerate() {
        let fill = 0x50 + u8::try_from(i).unwrap_or(0);
        s.push((
            Host,
            send_data(Host, standard_security.then_some(0x0008), len, fill),
        ));
    }
    // Active session: host graphics updates of varying size, client input events.
    for i in 0..active_rounds {
        let host_len = 180 + (i * 977) % 5200;
        let client_len = 18 + (i * 13) % 48;
        let fill = u8::try_from(i % 200).unwrap_or(0);
        s.push((
            Host,
            send_data(Host, standard_security.then_some(0x0008), host_len, fill),
        ));
        s.push((
            Client,
            send_data(
                Client,
                standard_security.then_some(0x0008),
                client_len,
                fill,
            ),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let clean: String = s.split_whitespace().collect();
        hex::decode(clean).unwrap()
    }

    /// Drops the offset column of a reference hex dump.
    fn dump(s: &str) -> Vec<u8> {
        let body: String = s
            .lines()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(|l| l.split_once("  ").map_or(l, |(_, rest)| rest).to_owned() + " ")
            .collect();
        unhex(&body)
    }

    #[test]
    fn e1_connection_request() {
        let cr = connection_request(Some("alice"), Some((0, Protocols(0x0b))));
        assert_eq!(
            cr,
            dump(
                "0000  03 00 00 2b 26 e0 00 00 00 00 00 43 6f 6f 6b 69
                 0010  65 3a 20 6d 73 74 73 68 61 73 68 3d 61 6c 69 63
                 0020  65 0d 0a 01 00 08 00 0b 00 00 00"
            )
        );
    }

    #[test]
    fn spec_example_cr_rdp() {
        let cr = connection_request(Some("eltons"), Some((0, Protocols::RDP)));
        assert_eq!(
            cr,
            unhex(
                "0300002c27e00000000000436f6f6b69653a206d737473686173683d656c746f6e730d0a0100080000000000"
            )
        );
    }

    #[test]
    fn e3_e4_e5_connection_confirms() {
        let e3 = connection_confirm(CcNeg::Response {
            flags: 0x1f,
            selected: Protocols::HYBRID_EX,
        });
        assert_eq!(e3, unhex("030000130ed00000123400021f080008000000"));
        let e4 = connection_confirm(CcNeg::Failure(FailureCode::HYBRID_REQUIRED_BY_SERVER));
        assert_eq!(e4, unhex("030000130ed000001234000300080005000000"));
        assert_eq!(
            connection_confirm(CcNeg::Legacy),
            unhex("0300000b06d00000123400")
        );
    }

    const E16: &str = "
0000  03 00 01 70 02 f0 80 7f 65 82 01 64 04 01 01 04
0010  01 01 01 01 ff 30 19 02 01 22 02 01 02 02 01 00
0020  02 01 01 02 01 00 02 01 01 02 02 ff ff 02 01 02
0030  30 19 02 01 01 02 01 01 02 01 01 02 01 01 02 01
0040  00 02 01 01 02 02 04 20 02 01 02 30 1c 02 02 ff
0050  ff 02 02 fc 17 02 02 ff ff 02 01 01 02 01 00 02
0060  01 01 02 02 ff ff 02 01 02 04 82 01 03 00 05 00
0070  14 7c 00 01 80 fa 00 08 00 10 00 01 c0 00 44 75
0080  63 61 80 ec 01 c0 d8 00 04 00 08 00 80 07 38 04
0090  01 ca 03 aa 09 04 00 00 61 4a 00 00 57 00 4b 00
00a0  53 00 30 00 31 00 00 00 00 00 00 00 00 00 00 00
00b0  00 00 00 00 00 00 00 00 00 00 00 00 04 00 00 00
00c0  00 00 00 00 0c 00 00 00 00 00 00 00 00 00 00 00
00d0  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00e0  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00f0  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0100  00 00 00 00 00 00 00 00 01 ca 01 00 00 00 00 00
0110  18 00 0f 00 af 07 00 00 00 00 00 00 00 00 00 00
0120  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0130  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0140  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0150  00 00 00 00 00 00 06 00 00 00 00 00 02 c0 0c 00
0160  1b 00 00 00 00 00 00 00 03 c0 08 00 00 00 00 00";

    const E17: &str = "
0000  03 00 01 4d 02 f0 80 7f 66 82 01 41 0a 01 00 02
0010  01 00 30 1a 02 01 22 02 01 03 02 01 00 02 01 01
0020  02 01 00 02 01 01 02 03 00 ff f8 02 01 02 04 82
0030  01 1b 00 05 00 14 7c 00 01 2a 14 76 0a 01 01 00
0040  01 c0 00 4d 63 44 6e 81 04 01 0c 10 00 0d 00 08
0050  00 00 00 00 00 0f 00 00 00 03 0c 08 00 eb 03 00
0060  00 02 0c ec 00 02 00 00 00 02 00 00 00 20 00 00
0070  00 b8 00 00 00 20 21 22 23 24 25 26 27 28 29 2a
0080  2b 2c 2d 2e 2f 30 31 32 33 34 35 36 37 38 39 3a
0090  3b 3c 3d 3e 3f 01 00 00 00 01 00 00 00 01 00 00
00a0  00 06 00 5c 00 52 53 41 31 48 00 00 00 00 02 00
00b0  00 3f 00 00 00 01 00 01 00 01 02 03 04 05 06 07
00c0  08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17
00d0  18 19 1a 1b 1c 1d 1e 1f 20 21 22 23 24 25 26 27
00e0  28 29 2a 2b 2c 2d 2e 2f 30 31 32 33 34 35 36 37
00f0  38 39 3a 3b 3c 3d 3e 3f 40 00 00 00 00 00 00 00
0100  00 08 00 48 00 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5
0110  a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5
0120  a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5
0130  a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5
0140  a5 a5 a5 a5 a5 00 00 00 00 00 00 00 00";

    const E17T: &str = "
0000  03 00 00 6c 02 f0 80 7f 66 82 00 60 0a 01 00 02
0010  01 00 30 1a 02 01 22 02 01 03 02 01 00 02 01 01
0020  02 01 00 02 01 01 02 03 00 ff f8 02 01 02 04 82
0030  00 3a 00 05 00 14 7c 00 01 2a 14 76 0a 01 01 00
0040  01 c0 00 4d 63 44 6e 24 01 0c 10 00 0d 00 08 00
0050  0b 00 00 00 0f 00 00 00 03 0c 08 00 eb 03 00 00
0060  02 0c 0c 00 00 00 00 00 00 00 00 00";

    #[test]
    fn e16_connect_initial() {
        assert_eq!(connect_initial(&ClientMcs::e16()), dump(E16));
    }

    #[test]
    fn typical_connect_initial_is_mstsc_sized_and_patched() {
        let ci = connect_initial(&ClientMcs::typical(1, enc::BIT128));
        assert!((400..=500).contains(&ci.len()), "{}", ci.len());
        // TPKT length matches, CS_SECURITY carries the methods, serverSelectedProtocol is 1.
        assert_eq!(usize::from(u16::from_be_bytes([ci[2], ci[3]])), ci.len());
        let sec = ci
            .windows(4)
            .position(|w| w == [0x02, 0xc0, 0x0c, 0x00])
            .unwrap();
        assert_eq!(&ci[sec + 4..sec + 8], &[2, 0, 0, 0]);
        assert_eq!(&ci[sec - 4..sec], &[1, 0, 0, 0]);
    }

    #[test]
    fn e17_e17t_connect_responses() {
        let e17 = connect_response(&HostMcs::e17());
        assert_eq!(e17, dump(E17));
        assert_eq!(
            parse_server_security(&e17),
            Some((enc::BIT128, enc::LEVEL_CLIENT_COMPATIBLE))
        );
        let e17t = connect_response(&HostMcs::e17t(0x0b));
        assert_eq!(e17t, dump(E17T));
        assert_eq!(parse_server_security(&e17t), Some((0, 0)));
        let fips = connect_response(&HostMcs {
            encryption_method: enc::FIPS,
            encryption_level: enc::LEVEL_FIPS,
            ..HostMcs::e17()
        });
        assert_eq!(
            parse_server_security(&fips),
            Some((enc::FIPS, enc::LEVEL_FIPS))
        );
    }

    #[test]
    fn e18_security_exchange() {
        let e18 = dump(
            "0000  03 00 00 5e 02 f0 80 64 00 06 03 eb 70 50 01 00
             0010  00 00 48 00 00 00 80 81 82 83 84 85 86 87 88 89
             0020  8a 8b 8c 8d 8e 8f 90 91 92 93 94 95 96 97 98 99
             0030  9a 9b 9c 9d 9e 9f a0 a1 a2 a3 a4 a5 a6 a7 a8 a9
             0040  aa ab ac ad ae af b0 b1 b2 b3 b4 b5 b6 b7 b8 b9
             0050  ba bb bc bd be bf 00 00 00 00 00 00 00 00",
        );
        assert_eq!(security_exchange(), e18);
    }

    #[test]
    fn ts_requests_hit_their_sizes_and_are_der() {
        for (field, size) in [
            (TsField::NegoToken(1), 86),
            (TsField::NegoToken(2), 210),
            (TsField::NegoToken(3), 450),
            (TsField::PubKeyAuth, 95),
            (TsField::AuthInfo, 114),
        ] {
            let m = ts_request(field, size);
            assert_eq!(m.len(), size, "{field:?}");
            assert_eq!(m[0], 0x30);
            // The outer DER length covers the rest exactly.
            let (hdr, len) = match m[1] {
                n if n < 0x80 => (2, usize::from(n)),
                0x81 => (3, usize::from(m[2])),
                _ => (4, usize::from(u16::from_be_bytes([m[2], m[3]]))),
            };
            assert_eq!(hdr + len, m.len(), "{field:?}");
        }
    }

    #[test]
    fn script_has_twenty_records_each_way() {
        for std_sec in [false, true] {
            let s = session_script(std_sec, 12);
            let c = s.iter().filter(|(f, _)| *f == Sender::Client).count();
            let h = s.len() - c;
            assert!(c >= 20 && h >= 20, "{c} {h}");
            for (_, pdu) in &s {
                assert_eq!(usize::from(u16::from_be_bytes([pdu[2], pdu[3]])), pdu.len());
            }
        }
    }
}
